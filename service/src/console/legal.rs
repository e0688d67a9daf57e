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
use crate::cases::{CaseError, CaseFilter, CaseState, CaseSummary, Decision};
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
    let state_names: Vec<(&str, &str)> =
        STATES.iter().map(|state| (state.as_str(), i18n::state(lang, *state))).collect();
    let rung_keys: Vec<(&str, &str)> = Rung::ALL.iter().map(|rung| (rung.key(), i18n::rung(lang, *rung))).collect();
    let mut body = format!(
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
            lang.t("decided"),
            format!(
                "{} — {} — {}",
                escape(by),
                local_time(at, &case.region),
                escape(&i18n::rule_text(lang, case.decision_reason.as_deref().unwrap_or("")))
            ),
        );
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

async fn render_case<S: HistoryStore>(
    console: &Console<S>,
    lang: Lang,
    session: &Session,
    case_id: &str,
    notice: Option<(bool, String)>,
) -> Response {
    let evidence = match console.app.escalator.get(case_id, &session.principal).await {
        Ok(evidence) => evidence,
        Err(error) => return case_error(lang, session, error),
    };
    let audit = match console.app.escalator.store().audit_of(case_id).await {
        Ok(audit) => audit,
        Err(error) => return case_error(lang, session, error),
    };
    let case = &evidence.summary;
    let mut body = format!("<h1>{} {}</h1>", lang.t("case"), escape(&case.case_id));
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
    let _ = write!(
        body,
        "<h2>{}</h2><table class=\"timeline\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        lang.t("timeline"),
        lang.t("time"),
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
            "<tr class=\"{counted}\"><td>{time}</td><td>{channel}</td><td>{region}</td><td>{disposition}</td>\
             <td>{operator}</td><td>{likelihood}</td><td>{answered}</td><td>{talk:.0}</td><td>{counts}</td></tr>",
            counted = if entry.counted { "counted" } else { "" },
            time = local_time(entry.at_ms, &entry.region),
            channel = i18n::channel(lang, entry.channel),
            region = escape(&entry.region),
            disposition = i18n::disposition(lang, entry.disposition),
            operator = escape(entry.operator_id.as_deref().unwrap_or("—")),
            answered = if entry.answered { lang.t("yes") } else { lang.t("no") },
            talk = entry.talk_s,
            counts = if entry.counted { "✓" } else { "" },
        );
    }
    body.push_str("</tbody></table>");
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
    let _ = write!(
        body,
        "<h2>{}</h2><table class=\"audit\" id=\"audit\"><thead><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th></tr></thead><tbody>",
        lang.t("audit"),
        lang.t("time"),
        lang.t("actor"),
        lang.t("action"),
        lang.t("state"),
        lang.t("why"),
    );
    for entry in &audit {
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
    let status = match notice {
        Some((false, _)) => StatusCode::CONFLICT,
        _ => StatusCode::OK,
    };
    (status, Html(layout(lang, lang.t("case"), Some(session), &body))).into_response()
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
