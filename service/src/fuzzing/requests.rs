//! Request validation and phone normalisation: any protobuf body, any caller string.

use prost::Message;
use saring_models::phone::normalise_indonesian_number;
use saring_models::region::{is_valid_region_code, utc_offset_seconds};
use tonic_types::StatusExt;

use super::Verdict;
use crate::error::Error;
use crate::grpc::validate::{self, CaseChange, EARLIEST_MS, MAX_CLOCK_SKEW_MS, MAX_DURATION_S};
use crate::proto;
use crate::screening::Contact;

/// The server clock requests are validated against, 2026-06-01T00:00:00Z: fixed, so an input always takes the
/// same path.
pub const NOW_MS: i64 = 1_780_272_000_000;

/// The message a request input encodes, chosen by its first byte (modulo the number of kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `ContactRequest` (ScoreContact).
    Contact,
    /// `Outcome` (RecordOutcome).
    Outcome,
    /// `CallerQuery` (GetCaller).
    CallerQuery,
    /// `ListCasesRequest` (Escalations.List).
    ListCases,
    /// `GetCaseRequest` (Escalations.Get).
    GetCase,
    /// `DecideRequest` (Escalations.Decide).
    Decide,
    /// `RecordActionRequest` (Escalations.RecordAction).
    RecordAction,
    /// `RevertRequest` (Escalations.Revert).
    Revert,
}

impl RequestKind {
    /// Every kind, in the order of their selector byte.
    pub const ALL: [RequestKind; 8] = [
        RequestKind::Contact,
        RequestKind::Outcome,
        RequestKind::CallerQuery,
        RequestKind::ListCases,
        RequestKind::GetCase,
        RequestKind::Decide,
        RequestKind::RecordAction,
        RequestKind::Revert,
    ];

    fn of(selector: u8) -> Self {
        RequestKind::ALL[usize::from(selector) % RequestKind::ALL.len()]
    }
}

/// A request input: the kind's selector byte, then `message` encoded as protobuf (how corpora are seeded).
pub fn encode_input(kind: RequestKind, message: &impl Message) -> Vec<u8> {
    let selector = RequestKind::ALL.iter().position(|candidate| *candidate == kind).expect("listed") as u8;
    let mut input = vec![selector];
    message.encode(&mut input).expect("a Vec grows");
    input
}

/// Decodes `input` (first byte: the kind; the rest: protobuf, which prost may refuse) and validates it as the
/// gRPC handlers do. A rejection must name its fields; an acceptance must hold the invariants of its type.
pub fn check_request(input: &[u8]) -> Verdict {
    let Some((&selector, body)) = input.split_first() else { return Verdict::Unreadable };
    match RequestKind::of(selector) {
        RequestKind::Contact => decoded(body, check_contact),
        RequestKind::Outcome => decoded(body, check_outcome),
        RequestKind::CallerQuery => {
            decoded(body, |query: proto::CallerQuery| match validate::caller_number("caller", &query.caller) {
                Ok(number) => {
                    check_e164(&number);
                    Verdict::Accepted
                }
                Err(error) => check_rejection(error, &["caller"]),
            })
        }
        RequestKind::ListCases => decoded(body, check_list),
        RequestKind::GetCase => {
            decoded(body, |request: proto::GetCaseRequest| match validate::case_id(&request.case_id) {
                Ok(case_id) => {
                    check_text(&case_id, 64);
                    Verdict::Accepted
                }
                Err(error) => check_rejection(error, &["case_id"]),
            })
        }
        RequestKind::Decide => decoded(body, |request: proto::DecideRequest| match validate::decide(&request) {
            Ok((change, _)) => {
                check_case_change(&change, &request.case_id, request.version, true);
                Verdict::Accepted
            }
            Err(error) => check_rejection(error, &["case_id", "version", "reason", "decision"]),
        }),
        RequestKind::RecordAction => {
            decoded(body, |request: proto::RecordActionRequest| match validate::record_action(&request, NOW_MS) {
                Ok((change, delivery)) => {
                    check_case_change(&change, &request.case_id, request.version, false);
                    let delivered_ms = delivery.at_ms;
                    assert!((EARLIEST_MS..=NOW_MS + MAX_CLOCK_SKEW_MS).contains(&delivered_ms), "{delivered_ms}");
                    assert_eq!(validate::delivery_channel(request.channel), Some(delivery.channel));
                    Verdict::Accepted
                }
                Err(error) => check_rejection(error, &["case_id", "version", "note", "delivered_at", "channel"]),
            })
        }
        RequestKind::Revert => decoded(body, |request: proto::RevertRequest| match validate::revert(&request) {
            Ok(change) => {
                check_case_change(&change, &request.case_id, request.version, true);
                Verdict::Accepted
            }
            Err(error) => check_rejection(error, &["case_id", "version", "reason"]),
        }),
    }
}

/// Normalises `input` (as UTF-8, lossily) as a caller number; an accepted number must be E.164 and stable.
pub fn check_phone(input: &[u8]) -> Verdict {
    let raw = String::from_utf8_lossy(input);
    let Ok(number) = normalise_indonesian_number(&raw) else { return Verdict::Rejected };
    check_e164(&number);
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    assert!(digits.ends_with(&number[3..]), "{raw:?} became {number}, which is not its own digits");
    Verdict::Accepted
}

fn decoded<M: Message + Default>(body: &[u8], check: impl FnOnce(M) -> Verdict) -> Verdict {
    match M::decode(body) {
        Ok(message) => check(message),
        Err(_) => Verdict::Unreadable,
    }
}

/// An E.164 Indonesian number that normalises to itself and from its national form.
fn check_e164(number: &str) {
    let national = number.strip_prefix("+62").unwrap_or_else(|| panic!("{number:?} does not start with +62"));
    assert!(national.bytes().all(|byte| byte.is_ascii_digit()), "{number:?}");
    assert!((8..=12).contains(&national.len()) && !national.starts_with('0'), "{number:?}");
    assert_eq!(normalise_indonesian_number(number).as_deref(), Ok(number), "normalising is not idempotent");
    assert_eq!(normalise_indonesian_number(&format!("0{national}")).as_deref(), Ok(number));
}

fn check_text(value: &str, max_chars: usize) {
    assert!(!value.is_empty() && value.chars().count() <= max_chars, "{value:?}");
    assert!(!value.chars().any(char::is_control), "{value:?}");
}

/// A rejection is INVALID_ARGUMENT naming fields (only `allowed` ones, or their prefixes), and survives the
/// mapping to a gRPC status with its `BadRequest` details.
fn check_rejection(error: Error, allowed: &[&str]) -> Verdict {
    let Error::InvalidArgument(violations) = &error else { panic!("validation failed with {error:?}") };
    assert!(!violations.is_empty(), "a rejection names at least one field");
    for violation in violations {
        let field = violation.field.as_str();
        let root = field.split(['.', '[']).next().unwrap_or(field);
        assert!(allowed.contains(&root), "unexpected field {field:?} (allowed: {allowed:?})");
        assert!(!violation.description.is_empty(), "{field} has no description");
    }
    let fields: Vec<String> = violations.iter().map(|violation| violation.field.clone()).collect();
    let status = tonic::Status::from(error);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let details = status.get_details_bad_request().expect("INVALID_ARGUMENT carries BadRequest");
    let named: Vec<String> = details.field_violations.into_iter().map(|violation| violation.field).collect();
    assert_eq!(named, fields);
    Verdict::Rejected
}

const CONTACT_FIELDS: [&str; 7] = ["contact_id", "caller", "channel", "received_at", "region", "device_id", "location"];

fn check_contact(request: proto::ContactRequest) -> Verdict {
    match validate::contact(request.clone(), NOW_MS) {
        Ok(contact) => {
            check_valid_contact(&request, &contact);
            // Validating the normalised form again gives the same contact: normalisation is idempotent.
            let normalised = proto::ContactRequest { caller: contact.caller.clone(), ..request };
            assert_eq!(validate::contact(normalised, NOW_MS).ok(), Some(contact));
            Verdict::Accepted
        }
        Err(error) => check_rejection(error, &CONTACT_FIELDS),
    }
}

fn check_valid_contact(request: &proto::ContactRequest, contact: &Contact) {
    assert_eq!(contact.contact_id, request.contact_id);
    check_text(&contact.contact_id, 128);
    assert_eq!(contact.caller.is_some(), request.caller.is_some());
    if let Some(number) = &contact.caller {
        check_e164(number);
    }
    assert!((EARLIEST_MS..=NOW_MS + MAX_CLOCK_SKEW_MS).contains(&contact.received_at_ms));
    assert!(is_valid_region_code(&contact.region));
    assert_eq!(utc_offset_seconds(&contact.region), Some(contact.utc_offset_s));
    if let Some(device_id) = &contact.device_id {
        check_text(device_id, 64);
    }
    if let Some(location) = contact.location {
        assert!((-90.0..=90.0).contains(&location.lat) && (-180.0..=180.0).contains(&location.lon));
        assert!(location.accuracy_m.is_finite() && location.accuracy_m >= 0.0);
    }
    let features = saring_models::features::extract(&contact.context(), None, None);
    assert!(features.iter().all(|value| value.is_finite()), "{features:?}");
}

fn check_outcome(request: proto::Outcome) -> Verdict {
    match validate::outcome(&request, NOW_MS) {
        Ok(report) => {
            assert_eq!(report.contact_id, request.contact_id);
            check_text(&report.contact_id, 128);
            for seconds in [report.ring_s, report.talk_s] {
                assert!(seconds.is_finite() && (0.0..=MAX_DURATION_S).contains(&seconds), "{seconds}");
            }
            assert!(report.answered || report.talk_s == 0.0);
            assert_eq!(report.contact.is_some(), request.contact.is_some());
            if let (Some(embedded), Some(contact)) = (&request.contact, &report.contact) {
                assert_eq!(contact.contact_id, report.contact_id);
                check_valid_contact(embedded, contact);
            }
            if let Some(category) = &report.category {
                check_text(category, 64);
                assert!(!category.chars().any(char::is_uppercase), "{category:?}");
            }
            if let Some(operator_id) = &report.operator_id {
                check_text(operator_id, 64);
            }
            Verdict::Accepted
        }
        Err(error) => check_rejection(
            error,
            &["contact_id", "contact", "ring_s", "talk_s", "disposition", "category", "operator_id"],
        ),
    }
}

fn check_case_change(change: &CaseChange, case_id: &str, version: u64, reason_required: bool) {
    assert_eq!(change.case_id, case_id);
    check_text(&change.case_id, 64);
    assert!(change.version >= 1 && change.version as u64 == version, "{version}");
    assert_eq!(change.reason, change.reason.trim());
    assert!(!reason_required || !change.reason.is_empty());
    assert!(change.reason.chars().count() <= 2000);
}

fn check_list(request: proto::ListCasesRequest) -> Verdict {
    match validate::list(&request) {
        Ok(filter) => {
            assert!((1..=500).contains(&filter.page_size), "{}", filter.page_size);
            assert_eq!(filter.states.len(), request.states.len());
            assert_eq!(filter.rungs.len(), request.rungs.len());
            assert_eq!(filter.region.is_some(), !request.region.is_empty());
            for ms in [filter.created_from_ms, filter.created_to_ms].into_iter().flatten() {
                assert!(ms >= EARLIEST_MS, "{ms}");
            }
            assert_eq!(filter.after.is_some(), !request.page_token.is_empty());
            if let Some((created_ms, case_id)) = &filter.after {
                // A token the server hands out reads back as the position it encodes.
                let again = proto::ListCasesRequest {
                    page_token: validate::page_token(*created_ms, case_id),
                    ..proto::ListCasesRequest::default()
                };
                let reread = validate::list(&again).expect("a token from page_token is accepted");
                assert_eq!(reread.after.as_ref(), Some(&(*created_ms, case_id.clone())));
            }
            Verdict::Accepted
        }
        Err(error) => check_rejection(
            error,
            &["page_size", "states", "rungs", "region", "created_from", "created_to", "page_token"],
        ),
    }
}
