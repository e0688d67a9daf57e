//! The dispatch view: approved cases awaiting delivery (oldest first, who holds a claim), a claim that shows the
//! caller's number once — on the claim's own answer, never on a page that can be reloaded or listed — with the
//! delivery form (channel, time in the region's zone, note) and the release form. The rules are the core's
//! (`Escalator::claim`, `record_action`, `release_claim`): the console only translates.

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::i18n::{local_time, zone_name, Lang};
use super::session::Session;
use super::{lang, layout, Console, Shared};
use crate::auth::Role;
use crate::cases::{CaseError, CaseFilter, CaseState, ClaimedCase, Delivery, DeliveryChannel};
use crate::store::HistoryStore;

fn page(lang: Lang, session: &Session, status: StatusCode, body: Markup) -> Response {
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
    let body = html! {
        p.error #notice { strong { (lang.t("not_applied")) } " " (message) }
        p { a href="/dispatch" { (lang.t("back_to_deliveries")) } }
    };
    page(lang, session, status, body)
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

/// The deliveries list: approved cases, oldest first, who holds a claim, and a claim button per case.
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
    let notice = query.done.as_deref().map(|done| {
        if done == "released" {
            lang.t("claim_released")
        } else {
            lang.t("delivery_recorded")
        }
    });
    let body = html! {
        h1 { (lang.t("deliveries")) }
        @if let Some(notice) = notice { p.notice #notice { (notice) } }
        @if cases.is_empty() {
            p #no-deliveries { (lang.t("no_deliveries")) }
        } @else {
            table.queue #deliveries {
                thead {
                    tr {
                        th { (lang.t("case")) }
                        th { (lang.t("rung")) }
                        th { (lang.t("region")) }
                        th { (lang.t("approved_at")) }
                        th { (lang.t("claimed_by")) }
                        th {}
                    }
                }
                tbody {
                    @for case in &cases {
                        tr.delivery-row data-case=(case.case_id) {
                            td { (case.case_id) }
                            td { (super::i18n::rung(lang, case.rung)) }
                            td { (case.region) }
                            td { (case.decided_ms.map_or("—".to_owned(), |at| local_time(at, &case.region))) }
                            td.claim {
                                @if let (Some(by), Some(at)) = (&case.claimed_by, case.claimed_ms) {
                                    (by) " — " (local_time(at, &case.region))
                                } @else {
                                    "—"
                                }
                            }
                            td {
                                form.inline method="post" action={ "/dispatch/cases/" (case.case_id) "/claim" } {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="version" value=(case.version);
                                    button.claim-button type="submit" { (lang.t("claim")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(lang, &session, StatusCode::OK, body)
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
fn claimed_page(lang: Lang, session: &Session, claimed: &ClaimedCase) -> Markup {
    let case = &claimed.summary;
    let offset = saring_models::region::utc_offset_seconds(&case.region).unwrap_or(0);
    html! {
        h1 { (lang.t("claimed")) " " (case.case_id) }
        p.notice { (lang.t("number_once")) }
        table.facts {
            tr { th { (lang.t("caller_number")) } td #claimed-number { (claimed.caller_number) } }
            tr { th { (lang.t("rung")) } td { (super::i18n::rung(lang, case.rung)) } }
            tr { th { (lang.t("region")) } td { (case.region) } }
            tr { th { (lang.t("rule")) } td { (super::i18n::rule_text(lang, &case.rule)) } }
        }
        h2 { (lang.t("record_delivery")) }
        form.decision #deliver-form method="post" action={ "/dispatch/cases/" (case.case_id) "/deliver" } {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="version" value=(case.version);
            label {
                (lang.t("delivery_channel")) " "
                select name="channel" #delivery-channel required {
                    @for channel in DeliveryChannel::allowed_for(case.rung) {
                        option value=(channel.as_str()) { (channel_name(lang, *channel)) }
                    }
                }
            }
            label {
                (lang.t("delivered_at")) " (" (zone_name(offset)) ") "
                input type="datetime-local" name="delivered_at" #delivered-at;
            }
            label { (lang.t("delivery_note")) " " textarea name="note" #delivery-note {} }
            button type="submit" #deliver { (lang.t("record_delivery")) }
        }
        h2 { (lang.t("release_claim")) }
        form.decision method="post" action={ "/dispatch/cases/" (case.case_id) "/release" } {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="version" value=(case.version);
            label {
                (lang.t("reason")) " "
                textarea name="reason" #release-reason required minlength="3" {}
            }
            button type="submit" #release { (lang.t("release_claim")) }
        }
    }
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
        Ok(claimed) => page(lang, &session, StatusCode::OK, claimed_page(lang, &session, &claimed)),
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
