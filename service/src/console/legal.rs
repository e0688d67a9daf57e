//! The legal view: the escalation queue, a case's evidence (the only page showing a raw number; every read is
//! audited) with its audit trail, and approve / reject / revert with a required reason. A decision that lost to
//! another reviewer's shows theirs.

use std::fmt::Write as _;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use saring_models::ladder::Rung;
use serde::Deserialize;

use super::i18n::{self, local_time, Lang};
use super::session::Session;
use super::{escape, lang, layout, Console, Shared};
use crate::auth::Role;
use crate::cases::audit::AuditEntry;
use crate::cases::{CaseError, CaseEvidence, CaseFilter, CaseState, CaseSummary, Decision};
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

fn select(name: &str, id: &str, all: &str, options: &[(&str, &str)], chosen: Option<&str>) -> String {
    let mut html = format!("<select name=\"{name}\" id=\"{id}\"><option value=\"\">{all}</option>");
    for (option, label) in options {
        let selected = if chosen == Some(option) { " selected" } else { "" };
        let _ = write!(html, "<option value=\"{option}\"{selected}>{label}</option>");
    }
    html.push_str("</select>");
    html
}

/// A timeline entry's corrections, for its disposition cell: was, now, who, when, why.
fn corrections(lang: Lang, entry: &crate::cases::TimelineEntry) -> String {
    entry
        .corrections
        .iter()
        .map(|correction| {
            format!(
                "<div class=\"correction\">{}: {} → {} ({}, {}): {}</div>",
                lang.t("corrected"),
                correction.from.as_str(),
                correction.to.as_str(),
                escape(&correction.by),
                local_time(correction.at_ms, &entry.region),
                escape(&correction.reason)
            )
        })
        .collect()
}

fn error_page(lang: Lang, session: &Session, status: StatusCode, message: &str) -> Response {
    let body = format!("<p class=\"error\">{}</p>", escape(message));
    (status, Html(layout(lang, lang.t("legal_view"), Some(session), &body))).into_response()
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
            Ok((cases, _)) => inbox(lang, &cases, crate::cases::system_clock()()),
            Err(error) => return case_error(lang, &session, error),
        }
    } else {
        String::new()
    };
    let state_names: Vec<(&str, &str)> =
        STATES.iter().map(|state| (state.as_str(), i18n::state(lang, *state))).collect();
    let rung_keys: Vec<(&str, &str)> = Rung::ALL.iter().map(|rung| (rung.key(), i18n::rung(lang, *rung))).collect();
    let mut body = inbox;
    let _ = write!(
        body,
        "<h1>{queue}</h1><form method=\"get\" action=\"/legal\" class=\"filters\">\
         <label>{state_label} {states}</label><label>{rung_label} {rungs}</label>\
         <label>{region_label} <input name=\"region\" id=\"queue-region\" value=\"{region}\"></label>\
         <button type=\"submit\" id=\"queue-filter\">{filter}</button></form>\
         <table class=\"queue\"><thead><tr><th>{case}</th><th>{state_label}</th><th>{rung_label}</th>\
         <th>{region_label}</th><th>{incidents}</th><th>{created}</th></tr></thead><tbody>",
        queue = lang.t("queue"),
        state_label = lang.t("state"),
        states = select("state", "queue-state", lang.t("all"), &state_names, state.map(CaseState::as_str)),
        rung_label = lang.t("rung"),
        rungs = select("rung", "queue-rung", lang.t("all"), &rung_keys, rung.map(Rung::key)),
        region_label = lang.t("region"),
        region = escape(region.as_deref().unwrap_or("")),
        filter = lang.t("filter"),
        case = lang.t("case"),
        incidents = lang.t("incidents"),
        created = lang.t("created"),
    );
    for case in &cases {
        let _ = write!(
            body,
            "<tr class=\"case-row\"><td><a href=\"/legal/cases/{id}\">{id}</a></td><td><span class=\"state state-{state}\">{state_words}</span></td>\
             <td>{rung}</td><td>{region}</td><td>{incidents}</td><td>{created}</td></tr>",
            id = escape(&case.case_id),
            state = case.state.as_str(),
            state_words = i18n::state(lang, case.state),
            rung = i18n::rung(lang, case.rung),
            region = escape(&case.region),
            incidents = case.incidents,
            created = local_time(case.created_ms, &case.region),
        );
    }
    body.push_str("</tbody></table>");
    if let Some((created, case_id)) = next {
        let mut link = format!("/legal?before={created}:{}", escape(&case_id));
        for (key, value) in [("state", state.map(CaseState::as_str)), ("rung", rung.map(Rung::key))] {
            if let Some(value) = value {
                let _ = write!(link, "&amp;{key}={value}");
            }
        }
        let _ = write!(body, "<p><a href=\"{link}\">→</a></p>");
    }
    Html(layout(lang, lang.t("queue"), Some(&session), &body)).into_response()
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
fn inbox(lang: Lang, proposed: &[CaseSummary], now_ms: i64) -> String {
    let mut html = format!("<h1>{}</h1>", lang.t("inbox"));
    if proposed.is_empty() {
        let _ = write!(html, "<p id=\"inbox-empty\">{}</p>", lang.t("inbox_empty"));
        return html;
    }
    // `proposed` is oldest first, so callers come in the order their oldest case arrived.
    let mut callers: Vec<(&str, Vec<&CaseSummary>)> = Vec::new();
    for case in proposed {
        match callers.iter_mut().find(|(caller, _)| *caller == case.caller_ref) {
            Some((_, cases)) => cases.push(case),
            None => callers.push((&case.caller_ref, vec![case])),
        }
    }
    let _ = write!(
        html,
        "<table class=\"queue\" id=\"inbox\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        lang.t("caller"),
        lang.t("case"),
        lang.t("rung"),
        lang.t("region"),
        lang.t("waiting"),
    );
    for (caller, cases) in callers {
        for (index, case) in cases.iter().enumerate() {
            let caller_cell = if index == 0 {
                format!(
                    "<td rowspan=\"{}\" class=\"caller-ref\" title=\"{}\">{}…</td>",
                    cases.len(),
                    escape(caller),
                    escape(&caller[..caller.len().min(12)])
                )
            } else {
                String::new()
            };
            let _ = write!(
                html,
                "<tr class=\"inbox-row\">{caller_cell}<td><a href=\"/legal/cases/{id}\">{id}</a></td><td>{rung}</td>\
                 <td>{region}</td><td title=\"{created}\">{waited}</td></tr>",
                id = escape(&case.case_id),
                rung = i18n::rung(lang, case.rung),
                region = escape(&case.region),
                created = local_time(case.created_ms, &case.region),
                waited = waited(lang, case.created_ms, now_ms),
            );
        }
    }
    html.push_str("</tbody></table>");
    html
}

fn summary_rows(lang: Lang, case: &CaseSummary) -> String {
    let mut rows = String::new();
    let mut row = |label: &str, value: String| {
        let _ = write!(rows, "<tr><th>{label}</th><td>{value}</td></tr>");
    };
    row(
        lang.t("state"),
        format!(
            "<span class=\"state state-{}\" id=\"case-state\">{}</span>",
            case.state.as_str(),
            i18n::state(lang, case.state)
        ),
    );
    row(lang.t("rung"), i18n::rung(lang, case.rung).to_owned());
    row(lang.t("region"), escape(&case.region));
    row(lang.t("rule"), escape(&i18n::rule_text(lang, &case.rule)));
    row(lang.t("policy_version"), escape(&case.policy_version));
    row(lang.t("model_version"), escape(&case.model_version));
    row(lang.t("created"), local_time(case.created_ms, &case.region));
    if let (Some(by), Some(at)) = (&case.decided_by, case.decided_ms) {
        row(
            lang.t("decision"),
            format!(
                "{} — {} — {}",
                escape(by),
                local_time(at, &case.region),
                escape(&i18n::rule_text(lang, case.decision_reason.as_deref().unwrap_or("")))
            ),
        );
    }
    if let (Some(by), Some(at)) = (&case.claimed_by, case.claimed_ms) {
        row(
            lang.t("claimed_by"),
            format!("<span id=\"case-claim\">{} — {}</span>", escape(by), local_time(at, &case.region)),
        );
    }
    match (case.delivered_ms, case.delivery_channel) {
        (Some(at), channel) => row(
            lang.t("delivery"),
            format!(
                "<span id=\"case-delivery\">{} — {} — {} — {}</span>",
                channel.map_or("—", |channel| super::dispatch::channel_name(lang, channel)),
                local_time(at, &case.region),
                escape(case.actioned_by.as_deref().unwrap_or("")),
                escape(case.action_note.as_deref().unwrap_or(""))
            ),
        ),
        (None, _) if case.state == CaseState::Approved => {
            row(lang.t("delivery"), format!("<span id=\"case-delivery\">{}</span>", lang.t("not_delivered")))
        }
        _ => {}
    }
    if let (Some(by), Some(at)) = (&case.reverted_by, case.reverted_ms) {
        row(
            lang.t("revert"),
            format!(
                "{} — {} — {}",
                escape(by),
                local_time(at, &case.region),
                escape(case.revert_reason.as_deref().unwrap_or(""))
            ),
        );
    }
    rows
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
fn other_cases(lang: Lang, case: &CaseSummary, all: &[CaseSummary], links: bool) -> String {
    let others: Vec<&CaseSummary> = all.iter().filter(|other| other.case_id != case.case_id).collect();
    let mut html = format!("<h2>{}</h2>", lang.t("other_cases"));
    if others.is_empty() {
        let _ = write!(html, "<p id=\"other-cases\">{}</p>", lang.t("no_other_cases"));
        return html;
    }
    let _ = write!(
        html,
        "<table class=\"queue\" id=\"other-cases\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         </tr></thead><tbody>",
        lang.t("case"),
        lang.t("rung"),
        lang.t("state"),
        lang.t("created"),
        lang.t("delivery"),
    );
    for other in others {
        let id = escape(&other.case_id);
        let label = if links { format!("<a href=\"/legal/cases/{id}\">{id}</a>") } else { id };
        let delivery = match other.delivered_ms {
            Some(at) => format!(
                "{} — {} — {}",
                local_time(at, &other.region),
                other.delivery_channel.map_or("—", |channel| super::dispatch::channel_name(lang, channel)),
                escape(other.action_note.as_deref().unwrap_or(""))
            ),
            None => "—".to_owned(),
        };
        let _ = write!(
            html,
            "<tr class=\"other-case\"><td>{label}</td><td>{rung}</td><td><span class=\"state state-{state}\">{state_words}</span></td>\
             <td>{created}</td><td>{delivery}</td></tr>",
            rung = i18n::rung(lang, other.rung),
            state = other.state.as_str(),
            state_words = i18n::state(lang, other.state),
            created = local_time(other.created_ms, &other.region),
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn timeline_table(lang: Lang, evidence: &CaseEvidence) -> String {
    let mut body = format!(
        "<h2>{}</h2><table class=\"timeline\" id=\"timeline\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        lang.t("timeline"),
        lang.t("time"),
        lang.t("contact_id"),
        lang.t("channel"),
        lang.t("region"),
        lang.t("disposition"),
        lang.t("operator"),
        lang.t("likelihood_then"),
        lang.t("answered"),
        lang.t("talk_s"),
        lang.t("counts"),
    );
    for entry in &evidence.timeline {
        let likelihood = entry.likelihood.map_or("—".to_owned(), |likelihood| {
            format!(
                "{:.0}% <small>{}</small>",
                likelihood * 100.0,
                escape(entry.model_version.as_deref().unwrap_or(""))
            )
        });
        let _ = write!(
            body,
            "<tr class=\"{counted}\"><td>{time}</td><td class=\"contact-id\">{contact}</td><td>{channel}</td><td>{region}</td>\
             <td>{disposition}{corrections}</td><td>{operator}</td><td>{likelihood}</td><td>{answered}</td><td>{talk:.0}</td><td>{counts}</td></tr>",
            counted = if entry.counted { "counted" } else { "" },
            time = local_time(entry.at_ms, &entry.region),
            contact = escape(&entry.contact_id),
            channel = i18n::channel(lang, entry.channel),
            region = escape(&entry.region),
            disposition = i18n::disposition(lang, entry.disposition),
            corrections = corrections(lang, entry),
            operator = escape(entry.operator_id.as_deref().unwrap_or("—")),
            answered = if entry.answered { lang.t("yes") } else { lang.t("no") },
            talk = entry.talk_s,
            counts = if entry.counted { "✓" } else { "" },
        );
    }
    body.push_str("</tbody></table>");
    body
}

fn audit_table(lang: Lang, case: &CaseSummary, audit: &[AuditEntry]) -> String {
    let mut body = format!(
        "<h2>{}</h2><table class=\"audit\" id=\"audit\"><thead><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th></tr></thead><tbody>",
        lang.t("audit"),
        lang.t("time"),
        lang.t("actor"),
        lang.t("action"),
        lang.t("state"),
        lang.t("why"),
    );
    for entry in audit {
        let _ = write!(
            body,
            "<tr class=\"audit-{action}\"><td>{seq}</td><td>{time}</td><td>{actor} ({role})</td><td>{action_words}</td><td>{state}</td><td>{reason}</td></tr>",
            seq = entry.seq,
            time = local_time(entry.at_ms, &case.region),
            actor = escape(&entry.actor),
            role = escape(&entry.role),
            action = escape(&entry.action),
            action_words = escape(i18n::action(lang, &entry.action)),
            state = escape(i18n::state_name(lang, entry.state.as_deref().unwrap_or(""))),
            reason = escape(&i18n::rule_text(lang, &entry.reason)),
        );
    }
    body.push_str("</tbody></table>");
    body
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
    let mut body = format!(
        "<h1>{} {}</h1><p><a href=\"/legal/cases/{id}/file\" id=\"case-file\">{}</a></p>",
        lang.t("case"),
        escape(&case.case_id),
        lang.t("case_file_link"),
        id = escape(&case.case_id),
    );
    if let Some((ok, message)) = &notice {
        let class = if *ok { "notice" } else { "error" };
        let title = if *ok { "" } else { lang.t("conflict") };
        let _ = write!(body, "<p class=\"{class}\" id=\"notice\"><strong>{title}</strong> {}</p>", escape(message));
    }
    let _ = write!(
        body,
        "<table class=\"facts\"><tr><th>{}</th><td id=\"caller-number\">{}</td></tr>{}</table>",
        lang.t("caller_number"),
        escape(&evidence.caller_number),
        summary_rows(lang, case)
    );
    body.push_str(&other_cases(lang, case, &all, true));
    body.push_str(&timeline_table(lang, &evidence));
    let form = |action: &str, buttons: &str| {
        format!(
            "<form method=\"post\" action=\"/legal/cases/{id}/{action}\" class=\"decision\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"version\" value=\"{version}\">\
             <label>{reason} <textarea name=\"reason\" id=\"{action}-reason\" required minlength=\"3\"></textarea></label>{buttons}</form>",
            id = escape(&case.case_id),
            csrf = session.csrf,
            version = case.version,
            reason = lang.t("reason"),
        )
    };
    match case.state {
        CaseState::Proposed => body.push_str(&form(
            "decide",
            &format!(
                "<button type=\"submit\" name=\"decision\" value=\"approve\" id=\"approve\">{}</button>\
                 <button type=\"submit\" name=\"decision\" value=\"reject\" id=\"reject\">{}</button>",
                lang.t("approve"),
                lang.t("reject")
            ),
        )),
        CaseState::Approved | CaseState::Actioned => body
            .push_str(&form("revert", &format!("<button type=\"submit\" id=\"revert\">{}</button>", lang.t("revert")))),
        CaseState::Rejected | CaseState::Reverted => {}
    }
    body.push_str(&audit_table(lang, case, &audit));
    let status = match notice {
        Some((false, _)) => StatusCode::CONFLICT,
        _ => StatusCode::OK,
    };
    (status, Html(layout(lang, lang.t("case"), Some(session), &body))).into_response()
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
    let mut body = format!(
        "<article class=\"case-file\" id=\"case-file-page\"><h1>{title} {id}</h1>\
         <p class=\"meta\">{exported} {who} — {when}</p>\
         <p class=\"no-print\"><button type=\"button\" id=\"print\">{print}</button> \
         <a href=\"/legal/cases/{id}\">{back}</a></p>",
        title = lang.t("case_file"),
        id = escape(&case.case_id),
        exported = lang.t("exported_by"),
        who = escape(&session.principal.name),
        when = local_time(now, &case.region),
        print = lang.t("print"),
        back = lang.t("back_to_case"),
    );
    let _ = write!(
        body,
        "<table class=\"facts\"><tr><th>{}</th><td id=\"caller-number\">{}</td></tr>{}</table>",
        lang.t("caller_number"),
        escape(&evidence.caller_number),
        summary_rows(lang, case)
    );
    body.push_str(&other_cases(lang, case, &all, false));
    body.push_str(&timeline_table(lang, &evidence));
    body.push_str(&audit_table(lang, case, &audit));
    body.push_str("</article>");
    Html(layout(lang, lang.t("case_file"), Some(&session), &body)).into_response()
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
