//! The dispatch view: approved cases awaiting delivery (oldest first, who holds a claim), a claim that shows the
//! caller's number once — on the claim's own answer, never on a page that can be reloaded or listed — with the
//! delivery form (channel, time in the region's zone, note) and the release form. The rules are the core's
//! (`Escalator::claim`, `record_action`, `release_claim`): the console only translates.

use std::fmt::Write as _;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::i18n::{local_time, zone_name, Lang};
use super::session::Session;
use super::{escape, lang, layout, Console, Shared};
use crate::auth::Role;
use crate::cases::{CaseError, CaseFilter, CaseState, ClaimedCase, Delivery, DeliveryChannel};
use crate::store::HistoryStore;

fn page(lang: Lang, session: &Session, status: StatusCode, body: &str) -> Response {
    (status, Html(layout(lang, lang.t("dispatch_view"), Some(session), body))).into_response()
}

fn problem(lang: Lang, session: &Session, error: CaseError) -> Response {
    let (status, message) = match error {
        CaseError::NotFound(_) => (StatusCode::NOT_FOUND, lang.t("not_found").to_owned()),
        CaseError::Conflict { message, .. } => (StatusCode::CONFLICT, message),
        CaseError::Invalid { field, description } => (StatusCode::BAD_REQUEST, format!("{field}: {description}")),
        other => {
            tracing::warn!(error = %other, "console: case database");
            (StatusCode::SERVICE_UNAVAILABLE, lang.t("unavailable").to_owned())
        }
    };
    let body = format!(
        "<p class=\"error\" id=\"notice\"><strong>{}</strong> {}</p><p><a href=\"/dispatch\">{}</a></p>",
        lang.t("not_applied"),
        escape(&message),
        lang.t("back_to_deliveries")
    );
    page(lang, session, status, &body)
}

/// The words for a delivery channel.
pub(super) fn channel_name(lang: Lang, channel: DeliveryChannel) -> &'static str {
    lang.t(match channel {
        DeliveryChannel::Sms => "delivery_sms",
        DeliveryChannel::WhatsApp => "delivery_whatsapp",
        DeliveryChannel::Call => "delivery_call",
        DeliveryChannel::InPerson => "delivery_in_person",
        DeliveryChannel::Filed => "delivery_filed",
    })
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    done: Option<String>,
}

pub(super) async fn list<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let session = match console.session(&headers, &[Role::Dispatch]) {
        Ok(session) => session,
        Err(denied) => return denied.into_response(),
    };
    let lang = lang(&headers);
    let filter =
        CaseFilter { states: vec![CaseState::Approved], page_size: 200, oldest_first: true, ..Default::default() };
    let (cases, _) = match console.app.escalator.list(&filter).await {
        Ok(page) => page,
        Err(error) => return problem(lang, &session, error),
    };
    let mut body = format!("<h1>{}</h1>", lang.t("deliveries"));
    if let Some(done) = query.done.as_deref() {
        let text = if done == "released" { lang.t("claim_released") } else { lang.t("delivery_recorded") };
        let _ = write!(body, "<p class=\"notice\" id=\"notice\">{text}</p>");
    }
    if cases.is_empty() {
        let _ = write!(body, "<p id=\"no-deliveries\">{}</p>", lang.t("no_deliveries"));
        return page(lang, &session, StatusCode::OK, &body);
    }
    let _ = write!(
        body,
        "<table class=\"queue\" id=\"deliveries\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th></th></tr></thead><tbody>",
        lang.t("case"),
        lang.t("rung"),
        lang.t("region"),
        lang.t("approved_at"),
        lang.t("claimed_by"),
    );
    for case in &cases {
        let claim = match (&case.claimed_by, case.claimed_ms) {
            (Some(by), Some(at)) => format!("{} — {}", escape(by), local_time(at, &case.region)),
            _ => "—".to_owned(),
        };
        let _ = write!(
            body,
            "<tr class=\"delivery-row\" data-case=\"{id}\"><td>{id}</td><td>{rung}</td><td>{region}</td><td>{approved}</td>\
             <td class=\"claim\">{claim}</td><td><form method=\"post\" action=\"/dispatch/cases/{id}/claim\" class=\"inline\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"version\" value=\"{version}\">\
             <button type=\"submit\" class=\"claim-button\">{label}</button></form></td></tr>",
            id = escape(&case.case_id),
            rung = super::i18n::rung(lang, case.rung),
            region = escape(&case.region),
            approved = case.decided_ms.map_or("—".to_owned(), |at| local_time(at, &case.region)),
            csrf = session.csrf,
            version = case.version,
            label = lang.t("claim"),
        );
    }
    body.push_str("</tbody></table>");
    page(lang, &session, StatusCode::OK, &body)
}

#[derive(Deserialize)]
pub(super) struct ChangeForm {
    csrf: String,
    version: i64,
    channel: Option<String>,
    delivered_at: Option<String>,
    note: Option<String>,
    reason: Option<String>,
}

/// The claim's answer: the number, once, and the forms to report the delivery or give the case back.
fn claimed_page(lang: Lang, session: &Session, claimed: &ClaimedCase) -> String {
    let case = &claimed.summary;
    let offset = saring_models::region::utc_offset_seconds(&case.region).unwrap_or(0);
    let mut channels = String::new();
    for channel in DeliveryChannel::allowed_for(case.rung) {
        let _ = write!(channels, "<option value=\"{}\">{}</option>", channel.as_str(), channel_name(lang, *channel));
    }
    format!(
        "<h1>{title} {id}</h1><p class=\"notice\">{once}</p>\
         <table class=\"facts\"><tr><th>{number_label}</th><td id=\"claimed-number\">{number}</td></tr>\
         <tr><th>{rung_label}</th><td>{rung}</td></tr><tr><th>{region_label}</th><td>{region}</td></tr>\
         <tr><th>{rule_label}</th><td>{rule}</td></tr></table>\
         <h2>{deliver}</h2><form method=\"post\" action=\"/dispatch/cases/{id}/deliver\" class=\"decision\" id=\"deliver-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"version\" value=\"{version}\">\
         <label>{channel_label} <select name=\"channel\" id=\"delivery-channel\" required>{channels}</select></label>\
         <label>{at_label} ({zone}) <input type=\"datetime-local\" name=\"delivered_at\" id=\"delivered-at\"></label>\
         <label>{note_label} <textarea name=\"note\" id=\"delivery-note\"></textarea></label>\
         <button type=\"submit\" id=\"deliver\">{deliver}</button></form>\
         <h2>{release}</h2><form method=\"post\" action=\"/dispatch/cases/{id}/release\" class=\"decision\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"version\" value=\"{version}\">\
         <label>{reason_label} <textarea name=\"reason\" id=\"release-reason\" required minlength=\"3\"></textarea></label>\
         <button type=\"submit\" id=\"release\">{release}</button></form>",
        title = lang.t("claimed"),
        id = escape(&case.case_id),
        once = lang.t("number_once"),
        number_label = lang.t("caller_number"),
        number = escape(&claimed.caller_number),
        rung_label = lang.t("rung"),
        rung = super::i18n::rung(lang, case.rung),
        region_label = lang.t("region"),
        region = escape(&case.region),
        rule_label = lang.t("rule"),
        rule = escape(&super::i18n::rule_text(lang, &case.rule)),
        deliver = lang.t("record_delivery"),
        csrf = session.csrf,
        version = case.version,
        channel_label = lang.t("delivery_channel"),
        at_label = lang.t("delivered_at"),
        zone = zone_name(offset),
        note_label = lang.t("delivery_note"),
        release = lang.t("release_claim"),
        reason_label = lang.t("reason"),
    )
}

pub(super) async fn claim<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
    Form(form): Form<ChangeForm>,
) -> Response {
    let session = match console.session_for_change(&headers, &[Role::Dispatch], Some(&form.csrf)) {
        Ok(session) => session,
        Err(denied) => return denied.into_response(),
    };
    let lang = lang(&headers);
    match console.app.escalator.claim(&case_id, form.version, &session.principal).await {
        Ok(claimed) => page(lang, &session, StatusCode::OK, &claimed_page(lang, &session, &claimed)),
        Err(error) => problem(lang, &session, error),
    }
}

/// A `datetime-local` value (`YYYY-MM-DDTHH:MM[:SS]`) in the zone `utc_offset_s`, as Unix ms.
fn parse_local(value: &str, utc_offset_s: i64) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let with_seconds = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let local = time::PrimitiveDateTime::parse(value, &format)
        .or_else(|_| time::PrimitiveDateTime::parse(value, &with_seconds))
        .ok()?;
    let offset = time::UtcOffset::from_whole_seconds(i32::try_from(utc_offset_s).ok()?).ok()?;
    Some((local.assume_offset(offset).unix_timestamp_nanos() / 1_000_000) as i64)
}

pub(super) async fn deliver<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
    Form(form): Form<ChangeForm>,
) -> Response {
    let session = match console.session_for_change(&headers, &[Role::Dispatch], Some(&form.csrf)) {
        Ok(session) => session,
        Err(denied) => return denied.into_response(),
    };
    let lang = lang(&headers);
    let invalid =
        |field: &'static str, description: &str| CaseError::Invalid { field, description: description.into() };
    let Some(channel) = form.channel.as_deref().and_then(DeliveryChannel::from_name) else {
        return problem(lang, &session, invalid("channel", "required"));
    };
    let note = match crate::cases::check_reason(form.note.as_deref().unwrap_or(""), false) {
        Ok(note) => note,
        Err(description) => return problem(lang, &session, invalid("note", &description)),
    };
    let now = crate::cases::system_clock()();
    let at_ms = match form.delivered_at.as_deref().map(str::trim).filter(|value| !value.is_empty()) {
        None => now,
        Some(value) => {
            // The form's time is in the case's region's zone (the label says which).
            let offset = match case_region(&console, &case_id).await {
                Ok(region) => saring_models::region::utc_offset_seconds(&region).unwrap_or(0),
                Err(error) => return problem(lang, &session, error),
            };
            match parse_local(value, offset) {
                Some(ms) => ms,
                None => return problem(lang, &session, invalid("delivered_at", "not a date and time")),
            }
        }
    };
    let delivery = Delivery { at_ms, channel };
    match console.app.escalator.record_action(&case_id, form.version, delivery, &note, &session.principal).await {
        Ok(_) => Redirect::to("/dispatch?done=delivered").into_response(),
        Err(error) => problem(lang, &session, error),
    }
}

/// The region of a case (its zone dates the delivery form's time).
async fn case_region<S: HistoryStore>(console: &Console<S>, case_id: &str) -> Result<String, CaseError> {
    console.app.escalator.summary(case_id).await.map(|case| case.region)
}

pub(super) async fn release<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
    Form(form): Form<ChangeForm>,
) -> Response {
    let session = match console.session_for_change(&headers, &[Role::Dispatch], Some(&form.csrf)) {
        Ok(session) => session,
        Err(denied) => return denied.into_response(),
    };
    let lang = lang(&headers);
    let reason = match crate::cases::check_reason(form.reason.as_deref().unwrap_or(""), true) {
        Ok(reason) => reason,
        Err(description) => {
            return problem(lang, &session, CaseError::Invalid { field: "reason", description });
        }
    };
    match console.app.escalator.release_claim(&case_id, form.version, &reason, &session.principal).await {
        Ok(_) => Redirect::to("/dispatch?done=released").into_response(),
        Err(error) => problem(lang, &session, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_time_is_read_in_the_cases_zone() {
        // 09:30 WITA is 01:30 UTC.
        let at = parse_local("2026-12-02T09:30", 8 * 3600).unwrap();
        assert_eq!(at, 1_796_175_000_000);
        assert_eq!(parse_local("2026-12-02T09:30:15", 8 * 3600), Some(at + 15_000));
        assert_eq!(parse_local("yesterday", 0), None);
    }
}
