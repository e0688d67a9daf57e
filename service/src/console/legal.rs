//! The legal view: the escalation queue, a case's evidence (the only page showing a raw number; every read is
//! audited) with its audit trail, and approve / reject / revert with a required reason. A decision that lost to
//! another reviewer's shows theirs. Pages are built with maud, which escapes everything interpolated.

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup};
use saring_models::ladder::Rung;
use serde::Deserialize;

use super::i18n::{self, local_time, Lang};
use super::session::Session;
use super::{lang, layout, Console, Shared};
use crate::auth::Role;
use crate::cases::audit::AuditEntry;
use crate::cases::{CaseError, CaseEvidence, CaseFilter, CaseState, CaseSummary, Decision, TimelineEntry};
use crate::store::HistoryStore;

const STATES: [CaseState; 5] =
    [CaseState::Proposed, CaseState::Approved, CaseState::Rejected, CaseState::Actioned, CaseState::Reverted];

#[derive(Deserialize)]
pub(super) struct QueueQuery {
    state: Option<String>,
    rung: Option<String>,
    region: Option<String>,
    before: Option<String>,
}

/// A filter's drop-down: "all" (the empty value) and `options` (value, label), `chosen` selected.
fn select(name: &str, id: &str, all: &str, options: &[(&str, &str)], chosen: Option<&str>) -> Markup {
    html! {
        select name=(name) id=(id) {
            option value="" { (all) }
            @for &(option, label) in options {
                option value=(option) selected[chosen == Some(option)] { (label) }
            }
        }
    }
}

/// A case's state as a badge.
fn state_badge(lang: Lang, state: CaseState) -> Markup {
    html! { span class={ "state state-" (state.as_str()) } { (i18n::state(lang, state)) } }
}

/// A timeline entry's corrections, for its disposition cell: was, now, who, when, why.
fn corrections(lang: Lang, entry: &TimelineEntry) -> Markup {
    html! {
        @for correction in &entry.corrections {
            div.correction {
                (lang.t("corrected")) ": " (correction.from.as_str()) " → " (correction.to.as_str())
                " (" (correction.by) ", " (local_time(correction.at_ms, &entry.region)) "): " (correction.reason)
            }
        }
    }
}

fn error_page(lang: Lang, session: &Session, status: StatusCode, message: &str) -> Response {
    let body = html! { p.error { (message) } };
    (status, Html(layout(lang, lang.t("legal_view"), Some(session), body))).into_response()
}

fn case_error(lang: Lang, session: &Session, error: CaseError) -> Response {
    match error {
        CaseError::NotFound(_) => error_page(lang, session, StatusCode::NOT_FOUND, lang.t("not_found")),
        other => {
            tracing::warn!(error = %other, "console: case database");
            error_page(lang, session, StatusCode::SERVICE_UNAVAILABLE, lang.t("unavailable"))
        }
    }
}

/// The queue's next page: after the case created at `created` with id `case_id`, under the same `filters` (name,
/// value when set), every value URL-encoded (a region is free text).
fn next_page(created: i64, case_id: &str, filters: &[(&str, Option<&str>)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("before", &format!("{created}:{case_id}"));
    for (key, value) in filters {
        if let Some(value) = value {
            query.append_pair(key, value);
        }
    }
    format!("/legal?{}", query.finish())
}

pub(super) async fn queue<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Query(query): Query<QueueQuery>,
) -> Response {
    let session = match console.session(&headers, &[Role::Legal]) {
        Ok(session) => session,
        Err(denied) => return denied.into_response(),
    };
    let lang = lang(&headers);
    let nonempty =
        |value: &Option<String>| value.as_deref().map(str::trim).filter(|value| !value.is_empty()).map(str::to_owned);
    let state = nonempty(&query.state).and_then(|name| CaseState::from_name(&name));
    let rung = nonempty(&query.rung).and_then(|key| Rung::from_key(&key));
    let region = nonempty(&query.region);
    let after = nonempty(&query.before).and_then(|cursor| {
        let (created, case_id) = cursor.split_once(':')?;
        Some((created.parse().ok()?, case_id.to_owned()))
    });
    let filter = CaseFilter {
        states: state.into_iter().collect(),
        rungs: rung.into_iter().collect(),
        region: region.clone(),
        page_size: 100,
        after,
        ..CaseFilter::default()
    };
    let (cases, next) = match console.app.escalator.list(&filter).await {
        Ok(page) => page,
        Err(error) => return case_error(lang, &session, error),
    };
    let inbox = if state.is_none() && rung.is_none() && region.is_none() && filter.after.is_none() {
        let proposed = CaseFilter {
            states: vec![CaseState::Proposed],
            page_size: 500,
            oldest_first: true,
            ..CaseFilter::default()
        };
        match console.app.escalator.list(&proposed).await {
            Ok((cases, _)) => Some(inbox(lang, &cases, crate::cases::system_clock()())),
            Err(error) => return case_error(lang, &session, error),
        }
    } else {
        None
    };
    let state_names: Vec<(&str, &str)> =
        STATES.iter().map(|state| (state.as_str(), i18n::state(lang, *state))).collect();
    let rung_keys: Vec<(&str, &str)> = Rung::ALL.iter().map(|rung| (rung.key(), i18n::rung(lang, *rung))).collect();
    let filters =
        [("state", state.map(CaseState::as_str)), ("rung", rung.map(Rung::key)), ("region", region.as_deref())];
    let next_link = next.map(|(created, case_id)| next_page(created, &case_id, &filters));
    let body = html! {
        @if let Some(inbox) = inbox { (inbox) }
        h1 { (lang.t("queue")) }
        form.filters method="get" action="/legal" {
            label {
                (lang.t("state")) " "
                (select("state", "queue-state", lang.t("all"), &state_names, state.map(CaseState::as_str)))
            }
            label {
                (lang.t("rung")) " "
                (select("rung", "queue-rung", lang.t("all"), &rung_keys, rung.map(Rung::key)))
            }
            label { (lang.t("region")) " " input name="region" #queue-region value=(region.as_deref().unwrap_or("")); }
            button type="submit" #queue-filter { (lang.t("filter")) }
        }
        table.queue {
            thead {
                tr {
                    th { (lang.t("case")) }
                    th { (lang.t("state")) }
                    th { (lang.t("rung")) }
                    th { (lang.t("region")) }
                    th { (lang.t("incidents")) }
                    th { (lang.t("created")) }
                }
            }
            tbody {
                @for case in &cases {
                    tr.case-row {
                        td { a href={ "/legal/cases/" (case.case_id) } { (case.case_id) } }
                        td { (state_badge(lang, case.state)) }
                        td { (i18n::rung(lang, case.rung)) }
                        td { (case.region) }
                        td { (case.incidents) }
                        td { (local_time(case.created_ms, &case.region)) }
                    }
                }
            }
        }
        @if let Some(link) = next_link { p { a href=(link) { "→" } } }
    };
    Html(layout(lang, lang.t("queue"), Some(&session), body)).into_response()
}

/// How long something has waited, in the largest whole unit (minutes, hours, days).
fn waited(lang: Lang, since_ms: i64, now_ms: i64) -> String {
    let minutes = (now_ms - since_ms).max(0) / 60_000;
    match minutes {
        0..=59 => format!("{minutes} {}", lang.t("minutes")),
        60..=2879 => format!("{} {}", minutes / 60, lang.t("hours")),
        _ => format!("{} {}", minutes / 1440, lang.t("days")),
    }
}

/// The reviewer's inbox: cases awaiting a decision, grouped by caller, the caller who has waited longest first,
/// each case with how long it has waited.
fn inbox(lang: Lang, proposed: &[CaseSummary], now_ms: i64) -> Markup {
    // `proposed` is oldest first, so callers come in the order their oldest case arrived.
    let mut callers: Vec<(&str, Vec<&CaseSummary>)> = Vec::new();
    for case in proposed {
        match callers.iter_mut().find(|(caller, _)| *caller == case.caller_ref) {
            Some((_, cases)) => cases.push(case),
            None => callers.push((&case.caller_ref, vec![case])),
        }
    }
    html! {
        h1 { (lang.t("inbox")) }
        @if proposed.is_empty() {
            p #inbox-empty { (lang.t("inbox_empty")) }
        } @else {
            table.queue #inbox {
                thead {
                    tr {
                        th { (lang.t("caller")) }
                        th { (lang.t("case")) }
                        th { (lang.t("rung")) }
                        th { (lang.t("region")) }
                        th { (lang.t("waiting")) }
                    }
                }
                tbody {
                    @for (caller, cases) in &callers {
                        @for (index, case) in cases.iter().enumerate() {
                            tr.inbox-row {
                                @if index == 0 {
                                    td.caller-ref rowspan=(cases.len()) title=(caller) {
                                        (&caller[..caller.len().min(12)]) "…"
                                    }
                                }
                                td { a href={ "/legal/cases/" (case.case_id) } { (case.case_id) } }
                                td { (i18n::rung(lang, case.rung)) }
                                td { (case.region) }
                                td title=(local_time(case.created_ms, &case.region)) {
                                    (waited(lang, case.created_ms, now_ms))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The case's facts: the caller's raw number, then the summary's rows.
fn facts(lang: Lang, evidence: &CaseEvidence) -> Markup {
    html! {
        table.facts {
            tr { th { (lang.t("caller_number")) } td #caller-number { (evidence.caller_number) } }
            (summary_rows(lang, &evidence.summary))
        }
    }
}

fn summary_rows(lang: Lang, case: &CaseSummary) -> Markup {
    let row = |label: &str, value: Markup| html! { tr { th { (label) } td { (value) } } };
    let region = case.region.as_str();
    html! {
        (row(lang.t("state"), html! {
            span class={ "state state-" (case.state.as_str()) } #case-state { (i18n::state(lang, case.state)) }
        }))
        (row(lang.t("rung"), html! { (i18n::rung(lang, case.rung)) }))
        (row(lang.t("region"), html! { (region) }))
        (row(lang.t("rule"), html! { (i18n::rule_text(lang, &case.rule)) }))
        (row(lang.t("policy_version"), html! { (case.policy_version) }))
        (row(lang.t("model_version"), html! { (case.model_version) }))
        (row(lang.t("created"), html! { (local_time(case.created_ms, region)) }))
        @if let (Some(by), Some(at)) = (&case.decided_by, case.decided_ms) {
            @let reason = i18n::rule_text(lang, case.decision_reason.as_deref().unwrap_or(""));
            (row(lang.t("decision"), html! { (by) " — " (local_time(at, region)) " — " (reason) }))
        }
        @if let (Some(by), Some(at)) = (&case.claimed_by, case.claimed_ms) {
            (row(lang.t("claimed_by"), html! { span #case-claim { (by) " — " (local_time(at, region)) } }))
        }
        @match (case.delivered_ms, case.delivery_channel) {
            (Some(at), channel) => {
                @let channel = channel.map_or("—", |channel| super::dispatch::channel_name(lang, channel));
                (row(lang.t("delivery"), html! {
                    span #case-delivery {
                        (channel) " — " (local_time(at, region))
                        " — " (case.actioned_by.as_deref().unwrap_or(""))
                        " — " (case.action_note.as_deref().unwrap_or(""))
                    }
                }))
            }
            (None, _) if case.state == CaseState::Approved => {
                (row(lang.t("delivery"), html! { span #case-delivery { (lang.t("not_delivered")) } }))
            }
            _ => {}
        }
        @if let (Some(by), Some(at)) = (&case.reverted_by, case.reverted_ms) {
            @let reason = case.revert_reason.as_deref().unwrap_or("");
            (row(lang.t("revert"), html! { (by) " — " (local_time(at, region)) " — " (reason) }))
        }
    }
}

/// The evidence of a case for this session's reviewer: the read is audited the first time in the session, and
/// not again at every later page view (the audit log says who read which case, not how often they reloaded it).
async fn read_once<S: HistoryStore>(
    console: &Console<S>,
    session: &Session,
    case_id: &str,
) -> Result<CaseEvidence, CaseError> {
    let sessions = &console.sessions;
    if sessions.has_read(&session.id, case_id) {
        return console.app.escalator.read(case_id, &session.principal, None).await;
    }
    let evidence = console.app.escalator.read(case_id, &session.principal, Some("case evidence read")).await?;
    sessions.mark_read(&session.id, case_id);
    Ok(evidence)
}

/// The caller's other cases: what the rule depends on (the previous rung, when and how it was delivered).
fn other_cases(lang: Lang, case: &CaseSummary, all: &[CaseSummary], links: bool) -> Markup {
    let others: Vec<&CaseSummary> = all.iter().filter(|other| other.case_id != case.case_id).collect();
    html! {
        h2 { (lang.t("other_cases")) }
        @if others.is_empty() {
            p #other-cases { (lang.t("no_other_cases")) }
        } @else {
            table.queue #other-cases {
                thead {
                    tr {
                        th { (lang.t("case")) }
                        th { (lang.t("rung")) }
                        th { (lang.t("state")) }
                        th { (lang.t("created")) }
                        th { (lang.t("delivery")) }
                    }
                }
                tbody {
                    @for other in &others {
                        tr.other-case {
                            td {
                                @if links {
                                    a href={ "/legal/cases/" (other.case_id) } { (other.case_id) }
                                } @else {
                                    (other.case_id)
                                }
                            }
                            td { (i18n::rung(lang, other.rung)) }
                            td { (state_badge(lang, other.state)) }
                            td { (local_time(other.created_ms, &other.region)) }
                            td {
                                @if let Some(at) = other.delivered_ms {
                                    @let channel = other
                                        .delivery_channel
                                        .map_or("—", |channel| super::dispatch::channel_name(lang, channel));
                                    (local_time(at, &other.region)) " — " (channel)
                                    " — " (other.action_note.as_deref().unwrap_or(""))
                                } @else {
                                    "—"
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn timeline_table(lang: Lang, evidence: &CaseEvidence) -> Markup {
    html! {
        h2 { (lang.t("timeline")) }
        table.timeline #timeline {
            thead {
                tr {
                    th { (lang.t("time")) }
                    th { (lang.t("contact_id")) }
                    th { (lang.t("channel")) }
                    th { (lang.t("region")) }
                    th { (lang.t("disposition")) }
                    th { (lang.t("operator")) }
                    th { (lang.t("likelihood_then")) }
                    th { (lang.t("answered")) }
                    th { (lang.t("talk_s")) }
                    th { (lang.t("counts")) }
                }
            }
            tbody {
                @for entry in &evidence.timeline {
                    tr.counted[entry.counted] {
                        td { (local_time(entry.at_ms, &entry.region)) }
                        td.contact-id { (entry.contact_id) }
                        td { (i18n::channel(lang, entry.channel)) }
                        td { (entry.region) }
                        td { (i18n::disposition(lang, entry.disposition)) (corrections(lang, entry)) }
                        td { (entry.operator_id.as_deref().unwrap_or("—")) }
                        td {
                            @if let Some(likelihood) = entry.likelihood {
                                (format!("{:.0}%", likelihood * 100.0)) " "
                                small { (entry.model_version.as_deref().unwrap_or("")) }
                            } @else {
                                "—"
                            }
                        }
                        td { (if entry.answered { lang.t("yes") } else { lang.t("no") }) }
                        td { (format!("{:.0}", entry.talk_s)) }
                        td { @if entry.counted { "✓" } }
                    }
                }
            }
        }
    }
}

fn audit_table(lang: Lang, case: &CaseSummary, audit: &[AuditEntry]) -> Markup {
    html! {
        h2 { (lang.t("audit")) }
        table.audit #audit {
            thead {
                tr {
                    th { "#" }
                    th { (lang.t("time")) }
                    th { (lang.t("actor")) }
                    th { (lang.t("action")) }
                    th { (lang.t("state")) }
                    th { (lang.t("why")) }
                }
            }
            tbody {
                @for entry in audit {
                    tr class={ "audit-" (entry.action) } {
                        td { (entry.seq) }
                        td { (local_time(entry.at_ms, &case.region)) }
                        td { (entry.actor) " (" (entry.role) ")" }
                        td { (i18n::action(lang, &entry.action)) }
                        td { (i18n::state_name(lang, entry.state.as_deref().unwrap_or(""))) }
                        td { (i18n::rule_text(lang, &entry.reason)) }
                    }
                }
            }
        }
    }
}

/// A form that changes the case (`action`: decide or revert) with a required reason, the session's CSRF token and
/// the case version it was shown at, then `buttons`.
fn change_form(lang: Lang, session: &Session, case: &CaseSummary, action: &str, buttons: Markup) -> Markup {
    html! {
        form.decision method="post" action={ "/legal/cases/" (case.case_id) "/" (action) } {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="version" value=(case.version);
            label {
                (lang.t("reason")) " "
                textarea name="reason" id={ (action) "-reason" } required minlength="3" {}
            }
            (buttons)
        }
    }
}

async fn render_case<S: HistoryStore>(
    console: &Console<S>,
    lang: Lang,
    session: &Session,
    case_id: &str,
    notice: Option<(bool, String)>,
) -> Response {
    let evidence = match read_once(console, session, case_id).await {
        Ok(evidence) => evidence,
        Err(error) => return case_error(lang, session, error),
    };
    let (audit, all) = match around(console, &evidence).await {
        Ok(both) => both,
        Err(error) => return case_error(lang, session, error),
    };
    let case = &evidence.summary;
    let body = html! {
        h1 { (lang.t("case")) " " (case.case_id) }
        p { a href={ "/legal/cases/" (case.case_id) "/file" } #case-file { (lang.t("case_file_link")) } }
        @if let Some((ok, message)) = &notice {
            // A shorthand class, which maud writes before the id: tests read `class="error" id="notice"` raw.
            p.(if *ok { "notice" } else { "error" }) #notice {
                strong { @if !ok { (lang.t("conflict")) } } " " (message)
            }
        }
        (facts(lang, &evidence))
        (other_cases(lang, case, &all, true))
        (timeline_table(lang, &evidence))
        @match case.state {
            CaseState::Proposed => {
                (change_form(lang, session, case, "decide", html! {
                    button type="submit" name="decision" value="approve" #approve { (lang.t("approve")) }
                    button type="submit" name="decision" value="reject" #reject { (lang.t("reject")) }
                }))
            }
            CaseState::Approved | CaseState::Actioned => {
                (change_form(lang, session, case, "revert", html! {
                    button type="submit" #revert { (lang.t("revert")) }
                }))
            }
            CaseState::Rejected | CaseState::Reverted => {}
        }
        (audit_table(lang, case, &audit))
    };
    let status = match notice {
        Some((false, _)) => StatusCode::CONFLICT,
        _ => StatusCode::OK,
    };
    (status, Html(layout(lang, lang.t("case"), Some(session), body))).into_response()
}

/// What a case page shows around the evidence: the case's audit trail and every case of its caller.
async fn around<S: HistoryStore>(
    console: &Console<S>,
    evidence: &CaseEvidence,
) -> Result<(Vec<AuditEntry>, Vec<CaseSummary>), CaseError> {
    let escalator = &console.app.escalator;
    tokio::try_join!(
        escalator.store().audit_of(&evidence.summary.case_id),
        escalator.cases_of_caller(&evidence.summary.caller_ref)
    )
}

/// The case file for a referral: everything on the case page and the caller's other cases, on one printable page.
/// An export leaves the system, so every one is audited.
pub(super) async fn case_file<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
) -> Response {
    let session = match console.session(&headers, &[Role::Legal]) {
        Ok(session) => session,
        Err(denied) => return denied.into_response(),
    };
    let lang = lang(&headers);
    let escalator = &console.app.escalator;
    let evidence = match escalator.read(&case_id, &session.principal, Some("case file exported")).await {
        Ok(evidence) => evidence,
        Err(error) => return case_error(lang, &session, error),
    };
    console.sessions.mark_read(&session.id, &case_id);
    let (audit, all) = match around(&console, &evidence).await {
        Ok(both) => both,
        Err(error) => return case_error(lang, &session, error),
    };
    let case = &evidence.summary;
    let now = crate::cases::system_clock()();
    let body = html! {
        article.case-file #case-file-page {
            h1 { (lang.t("case_file")) " " (case.case_id) }
            p.meta { (lang.t("exported_by")) " " (session.principal.name) " — " (local_time(now, &case.region)) }
            p.no-print {
                button type="button" #print { (lang.t("print")) } " "
                a href={ "/legal/cases/" (case.case_id) } { (lang.t("back_to_case")) }
            }
            (facts(lang, &evidence))
            (other_cases(lang, case, &all, false))
            (timeline_table(lang, &evidence))
            (audit_table(lang, case, &audit))
        }
    };
    Html(layout(lang, lang.t("case_file"), Some(&session), body)).into_response()
}

#[derive(Deserialize)]
pub(super) struct DoneQuery {
    done: Option<String>,
}

pub(super) async fn case_page<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
    Query(done): Query<DoneQuery>,
) -> Response {
    let session = match console.session(&headers, &[Role::Legal]) {
        Ok(session) => session,
        Err(denied) => return denied.into_response(),
    };
    let lang = lang(&headers);
    let notice = done.done.map(|_| (true, lang.t("decided").to_owned()));
    render_case(&console, lang, &session, &case_id, notice).await
}

#[derive(Deserialize)]
pub(super) struct DecisionForm {
    csrf: String,
    version: i64,
    reason: String,
    decision: Option<String>,
}

async fn change<S: HistoryStore>(
    console: &Console<S>,
    headers: &HeaderMap,
    case_id: &str,
    form: &DecisionForm,
    revert: bool,
) -> Response {
    let session = match console.session_for_change(headers, &[Role::Legal], Some(&form.csrf)) {
        Ok(session) => session,
        Err(denied) => return denied.into_response(),
    };
    let lang = lang(headers);
    // The same rule as Escalations.Decide and Revert (the core's), so no door takes what another refuses.
    let reason = match crate::cases::check_reason(&form.reason, true) {
        Ok(reason) => reason,
        Err(problem) => {
            let message = format!("{} ({problem})", lang.t("reason_required"));
            return render_case(console, lang, &session, case_id, Some((false, message))).await;
        }
    };
    let reason = reason.as_str();
    let escalator = &console.app.escalator;
    let result = if revert {
        escalator.revert(case_id, form.version, reason, &session.principal).await
    } else {
        let decision = match form.decision.as_deref() {
            Some("approve") => Decision::Approve,
            Some("reject") => Decision::Reject,
            _ => return (StatusCode::BAD_REQUEST, "decision must be approve or reject").into_response(),
        };
        escalator.decide(case_id, form.version, decision, reason, &session.principal).await
    };
    match result {
        Ok(_) => Redirect::to(&format!("/legal/cases/{case_id}?done=1")).into_response(),
        Err(CaseError::Conflict { current, stale, .. }) => {
            render_case(console, lang, &session, case_id, Some((false, i18n::conflict(lang, &current, stale)))).await
        }
        Err(error) => case_error(lang, &session, error),
    }
}

pub(super) async fn decide<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Response {
    change(&console, &headers, &case_id, &form, false).await
}

pub(super) async fn revert<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Response {
    change(&console, &headers, &case_id, &form, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_keeps_every_filter_encoded() {
        let filters = [("state", Some("proposed")), ("rung", None), ("region", Some("Jawa Barat & <Banten>"))];
        let link = next_page(1_772_323_200_000, "case-7", &filters);
        let query = link.strip_prefix("/legal?").unwrap();
        assert!(!query.contains(' ') && !query.contains('<'), "{link}");
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let expected = [("before", "1772323200000:case-7"), ("state", "proposed"), ("region", "Jawa Barat & <Banten>")];
        let expected: Vec<(String, String)> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(pairs, expected);
    }
}
