//! The operator view: the live feed of scored contacts (server-sent events from the same broadcast as gRPC
//! `WatchScores`), a caller's history on click, and the disposition form (the same path as RecordOutcome).

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use maud::html;
use saring_models::ladder::Rung;
use saring_models::Disposition;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::i18n::{self, local_parts, local_time_at, Lang};
use super::{lang, layout, Console, Shared};
use crate::auth::Role;
use crate::cases::CaseState;
use crate::error::{Error, Violation};
use crate::grpc::now_ms;
use crate::screening::{follow_scores, Delivery, OutcomeReport, ReasonOut, ScoredContact};
use crate::store::HistoryStore;

/// Dispositions an operator can choose, in the form's order.
const DISPOSITIONS: [Disposition; 8] = [
    Disposition::GenuineEmergency,
    Disposition::NonEmergency,
    Disposition::Prank,
    Disposition::Abusive,
    Disposition::Silent,
    Disposition::Accidental,
    Disposition::Test,
    Disposition::Unknown,
];

#[derive(Deserialize)]
pub(super) struct RegionQuery {
    region: Option<String>,
}

/// The live feed page: the region filter, the feed's controls, the feed table (filled by the page's script from
/// the server-sent events) and the detail pane with the disposition form and, when offered, the correction.
pub(super) async fn page<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Query(query): Query<RegionQuery>,
) -> Response {
    let session = match console.session(&headers, &[Role::Operator]) {
        Ok(session) => session,
        Err(denied) => return denied.into_response(),
    };
    let lang = lang(&headers);
    let region = query.region.unwrap_or_default();
    let body = html! {
        h1 { (lang.t("live_feed")) }
        form.filters method="get" action="/operator" {
            label { (lang.t("region_filter")) " " input name="region" #region value=(region); }
            button type="submit" { (lang.t("filter")) }
        }
        div.feed-controls {
            label {
                (lang.t("band_filter")) " "
                select #band-filter {
                    option value="" { (lang.t("band_all")) }
                    option value="elevated" { (lang.t("band_elevated_up")) }
                    option value="high" { (lang.t("band_high_only")) }
                }
            }
            button type="button" #pause data-pause=(lang.t("pause")) data-resume=(lang.t("resume")) {
                (lang.t("pause"))
            }
            span.queued.hidden #queued data-label=(lang.t("queued")) data-high=(lang.t("queued_high")) {}
            label { input type="checkbox" #high-sound; " " (lang.t("high_sound")) }
        }
        div.operator {
            table.feed {
                thead {
                    tr {
                        th { (lang.t("time")) }
                        th { (lang.t("risk")) }
                        th { (lang.t("channel")) }
                        th { (lang.t("region")) }
                        th { (lang.t("reasons")) }
                        th { (lang.t("standing")) }
                        th { (lang.t("contact")) }
                    }
                }
                tbody #feed
                    data-region=(region)
                    data-min-band=""
                    data-raises=(lang.t("raises"))
                    data-lowers=(lang.t("lowers"))
                    data-withheld=(lang.t("withheld")) {}
            }
            aside #detail {
                h2 { (lang.t("history")) }
                p #detail-hint { (lang.t("select_contact")) }
                div #history {}
                form.hidden #disposition-form {
                    input type="hidden" #contact-id name="contact_id";
                    label {
                        (lang.t("disposition")) " "
                        select #disposition name="disposition" {
                            @for disposition in DISPOSITIONS {
                                option value=(disposition.as_str()) { (i18n::disposition(lang, disposition)) }
                            }
                        }
                    }
                    label { input type="checkbox" #answered name="answered" checked; " " (lang.t("answered")) }
                    label {
                        (lang.t("talk_s")) " "
                        input type="number" #talk-s name="talk_s" min="0" max="86400" value="0";
                    }
                    button type="submit" #record { (lang.t("record")) }
                    p #record-result data-ok=(lang.t("recorded")) data-duplicate=(lang.t("duplicate")) {}
                    div.hidden #correction {
                        label {
                            (lang.t("correction_reason")) " "
                            textarea #correction-reason name="reason" maxlength="2000" rows="2" {}
                        }
                        button type="button" #correct { (lang.t("correct")) }
                        p #correction-result {}
                    }
                }
            }
        }
    };
    Html(layout(lang, lang.t("operator_view"), Some(&session), body)).into_response()
}

/// The most reasons a feed row shows.
const REASONS_ON_ROW: usize = 3;

/// One reason on a feed row.
#[derive(Serialize)]
struct RowReason {
    text: String,
    /// It raises the score (else it lowers it).
    up: bool,
}

/// One feed entry as the page's script reads it, every word in the page's language.
#[derive(Serialize)]
struct FeedEntry<'a> {
    contact_id: &'a str,
    date: String,
    clock: String,
    zone: &'static str,
    region: &'a str,
    channel: &'static str,
    withheld: bool,
    likelihood: f64,
    percent: String,
    band: &'static str,
    band_word: &'static str,
    reasons: Vec<RowReason>,
    degraded: bool,
    degraded_text: String,
    rung: Option<&'static str>,
    open_case: Option<String>,
    skipped: u64,
}

/// The reasons a feed row shows: at most [`REASONS_ON_ROW`], strongest first, only those that moved the score
/// materially and are not routine (`ReasonOut::worth_showing`), each sentence once.
fn row_reasons(lang: Lang, reasons: &[ReasonOut]) -> Vec<RowReason> {
    let mut shown: Vec<RowReason> = Vec::with_capacity(REASONS_ON_ROW);
    for reason in reasons.iter().filter(|reason| reason.worth_showing()) {
        let text = reason.sentence(lang.language());
        if shown.iter().any(|other| other.text == text) {
            continue;
        }
        shown.push(RowReason { text, up: reason.contribution > 0.0 });
        if shown.len() == REASONS_ON_ROW {
            break;
        }
    }
    shown
}

fn feed_entry(lang: Lang, scored: &ScoredContact, standing: &Standing, skipped: u64) -> String {
    let assessment = &scored.assessment;
    let (date, clock, zone) = local_parts(scored.received_at_ms, scored.utc_offset_s);
    let degraded_text: Vec<&str> = assessment.degraded_reasons.iter().map(|code| i18n::degraded(lang, code)).collect();
    let entry = FeedEntry {
        contact_id: &scored.contact_id,
        date,
        clock,
        zone,
        region: &scored.region,
        channel: i18n::channel(lang, scored.channel),
        withheld: scored.withheld,
        likelihood: assessment.likelihood,
        percent: format!("{:.0}%", assessment.likelihood * 100.0),
        band: assessment.band.map_or("none", |band| band.as_str()),
        band_word: i18n::band(lang, assessment.band),
        reasons: row_reasons(lang, &assessment.reasons),
        degraded: !assessment.degraded_reasons.is_empty(),
        degraded_text: degraded_text.join("; "),
        rung: standing.rung.map(|rung| i18n::rung(lang, rung)),
        open_case: standing
            .open_case
            .map(|(rung, state)| format!("{} ({})", i18n::rung(lang, rung), i18n::state(lang, state))),
        skipped,
    };
    serde_json::to_string(&entry).expect("a feed entry serialises")
}

/// A caller's place on the ladder, as a feed row shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Standing {
    /// The rung the caller holds.
    rung: Option<Rung>,
    /// The open case's rung and state.
    open_case: Option<(Rung, CaseState)>,
}

/// How long a feed remembers a caller's standing: a burst from one number costs one case-database read.
const STANDING_TTL: Duration = Duration::from_secs(5);
/// The most callers a feed remembers (then it forgets them all and starts again).
const STANDING_CACHE: usize = 2_000;
/// The longest a feed row waits for the case database; a row without a standing beats a stalled feed.
const STANDING_BUDGET: Duration = Duration::from_millis(300);

/// The standings one feed has read recently, by the caller's keyed hash.
struct Standings(HashMap<String, (Instant, Standing)>);

impl Standings {
    async fn of<S: HistoryStore>(&mut self, console: &Console<S>, scored: &ScoredContact) -> Standing {
        if scored.withheld {
            return Standing::default();
        }
        let Some(number) = console.app.screener.recent_contact(&scored.contact_id).and_then(|contact| contact.caller)
        else {
            return Standing::default();
        };
        let caller_ref = console.app.screener.number_key(&number).to_hex();
        if let Some((read_at, standing)) = self.0.get(&caller_ref) {
            if read_at.elapsed() < STANDING_TTL {
                return *standing;
            }
        }
        let read = console.app.escalator.caller_ladder(&caller_ref, now_ms());
        let standing = match tokio::time::timeout(STANDING_BUDGET, read).await {
            Ok(Ok((rung, open_case))) => Standing {
                rung: rung.map(|delivered| delivered.rung),
                open_case: open_case.map(|case| (case.rung, case.state)),
            },
            Ok(Err(error)) => {
                tracing::debug!(%error, "console feed: a caller's standing");
                return Standing::default();
            }
            Err(_) => return Standing::default(),
        };
        if self.0.len() >= STANDING_CACHE {
            self.0.clear();
        }
        self.0.insert(caller_ref, (Instant::now(), standing));
        standing
    }
}

/// The SSE stream.
pub(super) struct Feed(mpsc::Receiver<Result<Event, Infallible>>);

impl futures_core::Stream for Feed {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(context)
    }
}

/// The live feed: the scoring broadcast is followed into a queue (a full queue skips, counted, and never holds
/// scoring back), and a second task words each contact in the page's language with its caller's standing on
/// the ladder (one case-database read per caller per few seconds) and sends it to the browser.
pub(super) async fn feed<S: HistoryStore + 'static>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Query(query): Query<RegionQuery>,
) -> Response {
    if let Err(denied) = console.session(&headers, &[Role::Operator]) {
        return denied.into_response();
    }
    let lang = lang(&headers);
    let wanted = query.region.filter(|region| !region.trim().is_empty());
    let scores = console.app.screener.watch_scores();
    let (followed, mut to_word) = mpsc::channel::<(Arc<ScoredContact>, u64)>(1024);
    tokio::spawn(async move {
        follow_scores(scores, wanted.as_deref(), followed.closed(), |scored, skipped| {
            match followed.try_send((Arc::clone(scored), skipped)) {
                Ok(()) => Delivery::Taken,
                Err(mpsc::error::TrySendError::Full(_)) => Delivery::Full,
                Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Gone,
            }
        })
        .await;
    });
    let (sender, receiver) = mpsc::channel(256);
    tokio::spawn(async move {
        let mut standings = Standings(HashMap::new());
        loop {
            let next = tokio::select! {
                next = to_word.recv() => next,
                () = sender.closed() => None,
            };
            let Some((scored, skipped)) = next else { return };
            let standing = standings.of(&console, &scored).await;
            let event = Event::default().event("contact").data(feed_entry(lang, &scored, &standing, skipped));
            if sender.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(Feed(receiver)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

#[derive(Serialize)]
struct History {
    contact_id: String,
    withheld: bool,
    known: bool,
    total_contacts: u64,
    contacts_day: f64,
    misuse_month: f64,
    first_seen: Option<String>,
    last_seen: Option<String>,
    dispositions_month: Vec<(String, f64)>,
    rung: Option<String>,
    open_case: Option<String>,
    /// What the detail pane shows, label and value, in the page's language.
    lines: Vec<(String, String)>,
}

fn failure(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn error_response(error: Error) -> Response {
    match error {
        Error::InvalidArgument(violations) => failure(
            StatusCode::BAD_REQUEST,
            violations
                .iter()
                .map(|violation| format!("{}: {}", violation.field, violation.description))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Error::AlreadyExists(message) => failure(StatusCode::CONFLICT, message),
        other => {
            let status = tonic::Status::from(other);
            failure(StatusCode::SERVICE_UNAVAILABLE, status.message().to_owned())
        }
    }
}

/// A contact's caller history (never the number) and ladder standing, for the detail pane.
pub(super) async fn contact<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Path(contact_id): Path<String>,
) -> Response {
    if let Err(denied) = console.session(&headers, &[Role::Operator]) {
        return denied.into_response();
    }
    let lang = lang(&headers);
    let Some(contact) = console.app.screener.recent_contact(&contact_id) else {
        return failure(StatusCode::NOT_FOUND, lang.t("not_scored_here"));
    };
    let Some(number) = contact.caller else {
        return Json(History {
            withheld: true,
            known: false,
            total_contacts: 0,
            contacts_day: 0.0,
            misuse_month: 0.0,
            first_seen: None,
            last_seen: None,
            dispositions_month: Vec::new(),
            rung: None,
            open_case: None,
            lines: vec![
                (lang.t("contact").to_owned(), contact_id.clone()),
                (String::new(), lang.t("withheld_history").to_owned()),
            ],
            contact_id,
        })
        .into_response();
    };
    match console.app.caller_standing(&number, now_ms()).await {
        Ok(standing) => {
            let profile = standing.profile;
            let when = |ms: Option<i64>| ms.map(|ms| local_time_at(ms, contact.utc_offset_s));
            let dispositions: Vec<(Disposition, f64)> =
                profile.dispositions_month.into_iter().filter(|(_, count)| *count >= 0.05).collect();
            let rung = standing.rung.map(|delivered| delivered.rung);
            let open_case = standing.open_case.map(|case| (case.rung, case.state));
            let (first_seen, last_seen) = (when(profile.summary.first_seen_ms), when(profile.summary.last_seen_ms));
            let mut lines = vec![
                (lang.t("contact").to_owned(), contact_id.clone()),
                (lang.t("total_contacts").to_owned(), profile.summary.total_contacts.to_string()),
                (lang.t("contacts_24h").to_owned(), format!("{:.1}", profile.summary.contacts_day)),
                (lang.t("misuse_30d").to_owned(), format!("{:.1}", profile.summary.misuse_month)),
            ];
            lines.extend(first_seen.iter().map(|at| (lang.t("first_seen").to_owned(), at.clone())));
            lines.extend(last_seen.iter().map(|at| (lang.t("last_seen").to_owned(), at.clone())));
            lines.extend(
                dispositions.iter().map(|(disposition, count)| {
                    (i18n::disposition(lang, *disposition).to_owned(), format!("{count:.1}"))
                }),
            );
            lines.extend(rung.map(|rung| (lang.t("rung").to_owned(), i18n::rung(lang, rung).to_owned())));
            lines.extend(open_case.map(|(rung, state)| {
                (lang.t("open_case").to_owned(), format!("{} ({})", i18n::rung(lang, rung), i18n::state(lang, state)))
            }));
            Json(History {
                contact_id,
                withheld: false,
                known: profile.known,
                total_contacts: profile.summary.total_contacts,
                contacts_day: profile.summary.contacts_day,
                misuse_month: profile.summary.misuse_month,
                first_seen,
                last_seen,
                dispositions_month: dispositions
                    .into_iter()
                    .map(|(disposition, count)| (disposition.as_str().to_owned(), count))
                    .collect(),
                rung: rung.map(|rung| rung.key().to_owned()),
                open_case: open_case.map(|(rung, state)| format!("{} {}", rung.key(), state.as_str())),
                lines,
            })
            .into_response()
        }
        Err(error) => error_response(error),
    }
}

#[derive(Deserialize)]
pub(super) struct OutcomeForm {
    disposition: String,
    answered: bool,
    talk_s: f64,
}

/// The refusal of an outcome that breaks the core's rules: the violations as the gRPC door names them (field and
/// description), after a sentence in the page's language.
fn outcome_refused(lang: super::i18n::Lang, violations: &[Violation]) -> Response {
    let named: Vec<String> =
        violations.iter().map(|violation| format!("{}: {}", violation.field, violation.description)).collect();
    let fields: Vec<serde_json::Value> = violations
        .iter()
        .map(|violation| serde_json::json!({ "field": violation.field, "description": violation.description }))
        .collect();
    let body = serde_json::json!({
        "error": format!("{}: {}", lang.t("outcome_refused"), named.join("; ")),
        "fields": fields,
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// Records the operator's disposition of a contact through `App::record_outcome_by`, as RecordOutcome does, under
/// the same rules. The operator does not see the ring time: `ring_s` is 0, "not measured", as for a gRPC client
/// that leaves it out.
pub(super) async fn outcome<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Path(contact_id): Path<String>,
    Json(form): Json<OutcomeForm>,
) -> Response {
    let session = match console.session_for_change(&headers, &[Role::Operator], None) {
        Ok(session) => session,
        Err(denied) => return denied.into_response(),
    };
    let lang = lang(&headers);
    let Some(disposition) = Disposition::from_name(&form.disposition) else {
        let violation = Violation::new("disposition", format!("{:?} is not a disposition", form.disposition));
        return outcome_refused(lang, &[violation]);
    };
    let report = OutcomeReport {
        contact_id: contact_id.clone(),
        contact: None,
        answered: form.answered,
        ring_s: 0.0,
        talk_s: form.talk_s,
        disposition,
        category: None,
        operator_id: None,
    };
    match console.app.record_outcome_by(&session.principal, report).await {
        Ok(result) => {
            tracing::info!(%contact_id, actor = %session.principal.name, disposition = disposition.as_str(), "disposition recorded from the console");
            let ladder_change = result.ladder.as_ref().map(|ladder| format!("{:?}", ladder.change));
            Json(serde_json::json!({
                "contact_id": contact_id,
                "duplicate": result.duplicate(),
                "ladder_change": ladder_change,
            }))
            .into_response()
        }
        Err(Error::InvalidArgument(violations)) => outcome_refused(lang, &violations),
        // Recorded with another disposition: offer the correction instead of refusing.
        Err(error @ Error::AlreadyExists(_)) => {
            match super::correction::offer(&console, lang, &contact_id, disposition).await {
                Some(offer) => offer,
                None => error_response(error),
            }
        }
        Err(error) => error_response(error),
    }
}

#[cfg(test)]
mod tests {
    use saring_models::reason_text::{Fact, Form};
    use saring_models::reasons::REASONS;
    use saring_models::{Band, Channel};

    use super::*;
    use crate::screening::Assessment;

    fn reason(code: &str, form: Form, contribution: f64, material: bool, routine: bool) -> ReasonOut {
        let index = REASONS.iter().position(|reason| reason.code == code).unwrap();
        ReasonOut {
            reason: index,
            code: REASONS[index].code,
            fact: Fact { form, value: 0.0 },
            contribution,
            material,
            routine,
        }
    }

    #[test]
    fn a_row_shows_at_most_three_material_reasons_that_are_not_routine_each_once() {
        let reasons = [
            reason("caller_known", Form::First, 1.2, true, false),
            reason("withheld", Form::No, -0.9, true, true),
            reason("night", Form::Yes, 0.5, true, false),
            reason("caller_contacts_1h", Form::Count, 0.02, false, false),
            reason("caller_log_seconds_since_last", Form::First, -0.4, true, false),
            reason("sim_less", Form::Yes, 0.3, true, false),
        ];
        let shown = row_reasons(Lang::Id, &reasons);
        let texts: Vec<(&str, bool)> = shown.iter().map(|reason| (reason.text.as_str(), reason.up)).collect();
        assert_eq!(
            texts,
            [
                ("kontak pertama dari nomor ini", true),
                ("masuk malam hari (22.00-06.00 waktu setempat)", true),
                ("belum ada kontak sebelumnya dari nomor ini", false),
            ]
        );
        let english = row_reasons(Lang::En, &reasons[..1]);
        assert_eq!(english[0].text, "first contact from this number");
        let repeated = [
            reason("has_location", Form::No, 0.5, true, false),
            reason("location_accuracy_log", Form::No, 0.4, true, false),
        ];
        assert_eq!(row_reasons(Lang::En, &repeated).len(), 1, "one sentence is shown once");
    }

    #[test]
    fn a_degraded_answer_says_so_in_the_page_language_and_a_row_carries_the_callers_standing() {
        let scored = ScoredContact {
            contact_id: "c-1".into(),
            received_at_ms: 1_772_323_200_000,
            region: "ntt.kupang".into(),
            utc_offset_s: 28_800,
            channel: Channel::Voice,
            withheld: false,
            assessment: Assessment {
                likelihood: 0.52,
                band: Some(Band::Low),
                reasons: Vec::new(),
                model_version: "m".into(),
                degraded_reasons: vec!["history_timeout"],
                caller_history: None,
                device_history: None,
            },
        };
        let standing =
            Standing { rung: Some(Rung::Warning), open_case: Some((Rung::VirtualPoliceMessage, CaseState::Proposed)) };
        let entry: serde_json::Value = serde_json::from_str(&feed_entry(Lang::Id, &scored, &standing, 0)).unwrap();
        assert_eq!(entry["degraded"], true);
        assert_eq!(entry["degraded_text"], "riwayat tidak terbaca tepat waktu");
        assert_eq!(entry["band_word"], "RENDAH");
        assert_eq!(entry["percent"], "52%");
        assert_eq!((entry["clock"].as_str(), entry["zone"].as_str()), (Some("08:00:00"), Some("WITA")));
        assert_eq!(entry["channel"], "telepon");
        assert_eq!(entry["rung"], "teguran");
        assert_eq!(entry["open_case"], "pesan Polisi Virtual (diusulkan)");
        let english: serde_json::Value =
            serde_json::from_str(&feed_entry(Lang::En, &scored, &Standing::default(), 0)).unwrap();
        assert_eq!(english["degraded_text"], "history not read in time");
        assert_eq!(english["band_word"], "LOW");
        assert!(english["rung"].is_null() && english["open_case"].is_null());
    }
}
