//! The operator view: the live feed of scored contacts (server-sent events from the same broadcast as gRPC
//! `WatchScores`), a caller's history on click, and the disposition form (the same path as RecordOutcome).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use saring_models::Disposition;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::i18n::local_time_at;
use super::{escape, lang, layout, Shared};
use crate::auth::Role;
use crate::error::{Error, Violation};
use crate::grpc::now_ms;
use crate::screening::{follow_scores, Delivery, OutcomeReport, ScoredContact};
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
    let options: String = DISPOSITIONS
        .iter()
        .map(|disposition| format!("<option value=\"{0}\">{0}</option>", disposition.as_str()))
        .collect();
    let body = format!(
        "<h1>{live}</h1>\
         <form method=\"get\" action=\"/operator\" class=\"filters\"><label>{region_label} \
         <input name=\"region\" id=\"region\" value=\"{region}\"></label><button type=\"submit\">{filter}</button></form>\
         <div class=\"operator\"><table class=\"feed\"><thead><tr><th>{time}</th><th>{risk}</th><th>{channel}</th>\
         <th>{region_h}</th><th>{reasons}</th><th>{contact}</th></tr></thead>\
         <tbody id=\"feed\" data-region=\"{region}\"></tbody></table>\
         <aside id=\"detail\"><h2>{history}</h2><p id=\"detail-hint\">{hint}</p><div id=\"history\"></div>\
         <form id=\"disposition-form\" class=\"hidden\"><input type=\"hidden\" id=\"contact-id\" name=\"contact_id\">\
         <label>{disposition} <select id=\"disposition\" name=\"disposition\">{options}</select></label>\
         <label><input type=\"checkbox\" id=\"answered\" name=\"answered\" checked> {answered}</label>\
         <label>{talk} <input type=\"number\" id=\"talk-s\" name=\"talk_s\" min=\"0\" max=\"86400\" value=\"0\"></label>\
         <button type=\"submit\" id=\"record\">{record}</button><p id=\"record-result\" data-ok=\"{recorded}\"></p>\
         <div id=\"correction\" class=\"hidden\"><label>{correction_reason} <textarea id=\"correction-reason\" \
         name=\"reason\" maxlength=\"2000\" rows=\"2\"></textarea></label>\
         <button type=\"button\" id=\"correct\">{correct}</button><p id=\"correction-result\"></p></div>\
         </form></aside></div>",
        live = lang.t("live_feed"),
        region_label = lang.t("region_filter"),
        region = escape(&region),
        filter = lang.t("filter"),
        time = lang.t("time"),
        risk = lang.t("risk"),
        channel = lang.t("channel"),
        region_h = lang.t("region"),
        reasons = lang.t("reasons"),
        contact = lang.t("contact"),
        history = lang.t("history"),
        hint = lang.t("select_contact"),
        disposition = lang.t("disposition"),
        answered = lang.t("answered"),
        talk = lang.t("talk_s"),
        record = lang.t("record"),
        recorded = lang.t("recorded"),
        correction_reason = lang.t("correction_reason"),
        correct = lang.t("correct"),
    );
    Html(layout(lang, lang.t("operator_view"), Some(&session), &body)).into_response()
}

/// One feed entry as the page's script reads it.
#[derive(Serialize)]
struct FeedEntry<'a> {
    contact_id: &'a str,
    time: String,
    region: &'a str,
    channel: &'a str,
    withheld: bool,
    likelihood: f64,
    band: &'a str,
    reasons: Vec<&'a str>,
    degraded: bool,
    skipped: u64,
}

fn feed_entry(scored: &ScoredContact, skipped: u64) -> String {
    let assessment = &scored.assessment;
    let entry = FeedEntry {
        contact_id: &scored.contact_id,
        time: local_time_at(scored.received_at_ms, scored.utc_offset_s),
        region: &scored.region,
        channel: scored.channel.as_str(),
        withheld: scored.withheld,
        likelihood: assessment.likelihood,
        band: assessment.band.map_or("none", |band| band.as_str()),
        reasons: assessment.reasons.iter().take(3).map(|reason| reason.sentence.as_str()).collect(),
        degraded: !assessment.degraded_reasons.is_empty(),
        skipped,
    };
    serde_json::to_string(&entry).expect("a feed entry serialises")
}

/// The SSE stream.
pub(super) struct Feed(mpsc::Receiver<Result<Event, Infallible>>);

impl futures_core::Stream for Feed {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(context)
    }
}

pub(super) async fn feed<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Query(query): Query<RegionQuery>,
) -> Response {
    if let Err(denied) = console.session(&headers, &[Role::Operator]) {
        return denied.into_response();
    }
    let wanted = query.region.filter(|region| !region.trim().is_empty());
    let scores = console.app.screener.watch_scores();
    let (sender, receiver) = mpsc::channel(1024);
    tokio::spawn(async move {
        follow_scores(scores, wanted.as_deref(), sender.closed(), |scored, skipped| {
            let event = Event::default().event("contact").data(feed_entry(scored, skipped));
            match sender.try_send(Ok(event)) {
                Ok(()) => Delivery::Taken,
                Err(mpsc::error::TrySendError::Full(_)) => Delivery::Full,
                Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Gone,
            }
        })
        .await;
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
    let Some(contact) = console.app.screener.recent_contact(&contact_id) else {
        return failure(StatusCode::NOT_FOUND, "this contact was not scored here recently");
    };
    let Some(number) = contact.caller else {
        return Json(History {
            contact_id,
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
        })
        .into_response();
    };
    match console.app.caller_standing(&number, now_ms()).await {
        Ok(standing) => {
            let profile = standing.profile;
            let when = |ms: Option<i64>| ms.map(|ms| local_time_at(ms, contact.utc_offset_s));
            Json(History {
                contact_id,
                withheld: false,
                known: profile.known,
                total_contacts: profile.summary.total_contacts,
                contacts_day: profile.summary.contacts_day,
                misuse_month: profile.summary.misuse_month,
                first_seen: when(profile.summary.first_seen_ms),
                last_seen: when(profile.summary.last_seen_ms),
                dispositions_month: profile
                    .dispositions_month
                    .into_iter()
                    .filter(|(_, count)| *count >= 0.05)
                    .map(|(disposition, count)| (disposition.as_str().to_owned(), count))
                    .collect(),
                rung: standing.rung.map(|delivered| delivered.rung.key().to_owned()),
                open_case: standing.open_case.map(|case| format!("{} {}", case.rung.key(), case.state.as_str())),
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
