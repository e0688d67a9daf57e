//! Validation of saring.v1 messages into the core's types. Every problem is collected and named by field path,
//! so one rejection tells the routing engine everything that is wrong.

use saring_models::phone::normalise_indonesian_number;
use saring_models::reason_text::Language;
use saring_models::region::{is_valid_region_code, province, utc_offset_seconds};
use saring_models::{Channel, Disposition};

use crate::corrections::CorrectionReport;
use crate::error::{Error, Result, Violation};
use crate::proto;
use crate::screening::{Contact, Location, OutcomeReport};

/// Contacts may not claim to arrive later than this after the server's clock.
pub use crate::cases::MAX_CLOCK_SKEW_MS;
/// Contacts may not claim to arrive before 2000-01-01T00:00:00Z.
pub const EARLIEST_MS: i64 = 946_684_800_000;
pub use crate::outcomes::MAX_DURATION_S;

struct Checker {
    prefix: &'static str,
    violations: Vec<Violation>,
}

impl Checker {
    fn new(prefix: &'static str) -> Self {
        Checker { prefix, violations: Vec::new() }
    }

    fn contact_id(&mut self, field: &str, value: &str) -> bool {
        match crate::ids::check_contact_id(value) {
            Ok(()) => true,
            Err(problem) => {
                self.fail(field, problem);
                false
            }
        }
    }

    fn fail(&mut self, field: &str, description: impl Into<String>) {
        self.violations.push(Violation::new(format!("{}{field}", self.prefix), description));
    }

    fn text(&mut self, field: &str, value: &str, max_len: usize) -> bool {
        if value.is_empty() {
            self.fail(field, "required");
            false
        } else if value.chars().count() > max_len {
            self.fail(field, format!("longer than {max_len} characters"));
            false
        } else if value.chars().any(char::is_control) {
            self.fail(field, "contains control characters");
            false
        } else {
            true
        }
    }
}

fn channel(value: i32) -> Option<Channel> {
    match proto::Channel::try_from(value).ok()? {
        proto::Channel::Unspecified => None,
        proto::Channel::Voice => Some(Channel::Voice),
        proto::Channel::Whatsapp => Some(Channel::Whatsapp),
        proto::Channel::Sms => Some(Channel::Sms),
        proto::Channel::App => Some(Channel::App),
    }
}

/// The language a request asks for: English when unspecified (as before the field existed); `None` for a value
/// that is not a `Language`.
pub fn language(value: i32) -> Option<Language> {
    match proto::Language::try_from(value).ok()? {
        proto::Language::Unspecified | proto::Language::English => Some(Language::English),
        proto::Language::Indonesian => Some(Language::Indonesian),
    }
}

fn disposition(value: i32) -> Option<Disposition> {
    match proto::Disposition::try_from(value).ok()? {
        proto::Disposition::Unspecified => None,
        proto::Disposition::GenuineEmergency => Some(Disposition::GenuineEmergency),
        proto::Disposition::NonEmergency => Some(Disposition::NonEmergency),
        proto::Disposition::Prank => Some(Disposition::Prank),
        proto::Disposition::Silent => Some(Disposition::Silent),
        proto::Disposition::Abusive => Some(Disposition::Abusive),
        proto::Disposition::Accidental => Some(Disposition::Accidental),
        proto::Disposition::Test => Some(Disposition::Test),
        proto::Disposition::Unknown => Some(Disposition::Unknown),
    }
}

/// Validates a caller number field into E.164.
pub fn caller_number(field: &str, raw: &str) -> Result<String> {
    normalise_indonesian_number(raw)
        .map_err(|error| Error::InvalidArgument(vec![Violation::new(field, error.to_string())]))
}

/// Checks a contact and translates it, copying its strings (an outcome's or correction's embedded contact).
fn check_contact(checker: &mut Checker, request: &proto::ContactRequest, now_ms: i64) -> Option<Contact> {
    let checked = check_contact_fields(checker, request, now_ms)?;
    Some(Contact {
        contact_id: request.contact_id.clone(),
        region: request.region.clone(),
        device_id: request.device_id.clone(),
        ..checked
    })
}

/// Checks a contact and translates everything but its id, region and device id (left empty for the caller to
/// move or copy in).
fn check_contact_fields(checker: &mut Checker, request: &proto::ContactRequest, now_ms: i64) -> Option<Contact> {
    let id_ok = checker.contact_id("contact_id", &request.contact_id);
    let caller = match request.caller.as_deref() {
        None => Some(None),
        Some(raw) => match normalise_indonesian_number(raw) {
            Ok(number) => Some(Some(number)),
            Err(error) => {
                checker.fail("caller", error.to_string());
                None
            }
        },
    };
    let channel = channel(request.channel);
    if channel.is_none() {
        checker.fail("channel", format!("{} is not one of VOICE, WHATSAPP, SMS, APP", request.channel));
    }
    if language(request.language).is_none() {
        checker.fail("language", format!("{} is not one of UNSPECIFIED, ENGLISH, INDONESIAN", request.language));
    }
    let received_at_ms = match &request.received_at {
        None => {
            checker.fail("received_at", "required");
            None
        }
        Some(timestamp) if !(0..1_000_000_000).contains(&timestamp.nanos) => {
            checker.fail("received_at", "nanos must be within 0..1e9");
            None
        }
        Some(timestamp) => {
            let ms = timestamp.seconds.saturating_mul(1000).saturating_add(i64::from(timestamp.nanos / 1_000_000));
            if ms > now_ms + MAX_CLOCK_SKEW_MS {
                checker.fail("received_at", "more than 5 minutes in the future");
                None
            } else if ms < EARLIEST_MS {
                checker.fail("received_at", "before 2000-01-01");
                None
            } else {
                Some(ms)
            }
        }
    };
    let utc_offset_s = if !is_valid_region_code(&request.region) {
        checker.fail("region", "must be 1..64 characters of lowercase letters, digits, '.', '_' or '-'");
        None
    } else {
        let offset = utc_offset_seconds(&request.region);
        if offset.is_none() {
            checker.fail(
                "region",
                format!(
                    "unknown province {:?}: the part before the first '.' must be a province code such as dki, jatim, \
                     ntt or papua (it sets the local time zone)",
                    province(&request.region)
                ),
            );
        }
        offset
    };
    if let Some(device_id) = &request.device_id {
        checker.text("device_id", device_id, 64);
    }
    let location = request.location.as_ref().map(|location| {
        if !(location.lat.is_finite() && (-90.0..=90.0).contains(&location.lat)) {
            checker.fail("location.lat", "must be a latitude between -90 and 90");
        }
        if !(location.lon.is_finite() && (-180.0..=180.0).contains(&location.lon)) {
            checker.fail("location.lon", "must be a longitude between -180 and 180");
        }
        if !(location.accuracy_m.is_finite() && location.accuracy_m >= 0.0) {
            checker.fail("location.accuracy_m", "must be a non-negative number of metres");
        }
        Location { lat: location.lat, lon: location.lon, accuracy_m: location.accuracy_m }
    });
    if !checker.violations.is_empty() || !id_ok {
        return None;
    }
    Some(Contact {
        contact_id: String::new(),
        caller: caller?,
        channel: channel?,
        received_at_ms: received_at_ms?,
        region: String::new(),
        utc_offset_s: utc_offset_s?,
        sim_present: request.sim_present,
        device_id: None,
        location,
    })
}

/// Validates a ContactRequest; `now_ms` is the server's clock. Its strings move into the contact (no copy on the
/// scoring path).
pub fn contact(mut request: proto::ContactRequest, now_ms: i64) -> Result<Contact> {
    let mut checker = Checker::new("");
    let checked =
        check_contact_fields(&mut checker, &request, now_ms).ok_or(Error::InvalidArgument(checker.violations))?;
    Ok(Contact {
        contact_id: std::mem::take(&mut request.contact_id),
        region: std::mem::take(&mut request.region),
        device_id: request.device_id.take(),
        ..checked
    })
}

/// Translates an Outcome into the core's report, refused by the core's rules ([`OutcomeReport::violations`])
/// together with what does not translate (an embedded contact, the disposition), every field named at once.
pub fn outcome(request: &proto::Outcome, now_ms: i64) -> Result<OutcomeReport> {
    let mut checker = Checker::new("");
    let mut contact = None;
    if let Some(embedded) = &request.contact {
        let mut inner = Checker::new("contact.");
        contact = check_contact(&mut inner, embedded, now_ms);
        checker.violations.append(&mut inner.violations);
        // The core compares the ids of a contact that translated; one that did not is compared here.
        if contact.is_none() && embedded.contact_id != request.contact_id {
            checker.fail("contact.contact_id", "must equal the outcome's contact_id");
        }
    }
    let disposition = disposition(request.disposition);
    if disposition.is_none() {
        checker.fail(
            "disposition",
            format!("{} is not a disposition (use DISPOSITION_UNKNOWN for none)", request.disposition),
        );
    }
    let report = OutcomeReport {
        contact_id: request.contact_id.clone(),
        contact,
        answered: request.answered,
        ring_s: request.ring_s,
        talk_s: request.talk_s,
        disposition: disposition.unwrap_or(Disposition::Unknown),
        category: request.category.clone(),
        operator_id: request.operator_id.clone(),
    };
    let mut violations = report.violations();
    violations.append(&mut checker.violations);
    if violations.is_empty() {
        Ok(report)
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

/// Translates an OutcomeCorrection into the core's report: what does not translate (an embedded contact, the
/// disposition) is refused here, every field named at once; the core applies the correction's own rules.
pub fn correction(request: &proto::OutcomeCorrection, now_ms: i64) -> Result<CorrectionReport> {
    let mut checker = Checker::new("");
    let mut contact = None;
    if let Some(embedded) = &request.contact {
        let mut inner = Checker::new("contact.");
        contact = check_contact(&mut inner, embedded, now_ms);
        checker.violations.append(&mut inner.violations);
        if contact.is_none() && embedded.contact_id != request.contact_id {
            checker.fail("contact.contact_id", "must equal the correction's contact_id");
        }
    }
    let disposition = disposition(request.disposition);
    if disposition.is_none() {
        checker.fail("disposition", format!("{} is not a disposition", request.disposition));
    }
    let report = CorrectionReport {
        contact_id: request.contact_id.clone(),
        contact,
        disposition: disposition.unwrap_or(Disposition::Unknown),
        reason: request.reason.clone(),
        operator_id: request.operator_id.clone(),
    };
    let (mut violations, _) = report.violations();
    violations.append(&mut checker.violations);
    if violations.is_empty() {
        Ok(report)
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

/// A validated state-changing request on a case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseChange {
    /// The case.
    pub case_id: String,
    /// The version the caller saw.
    pub version: i64,
    /// The reason or note.
    pub reason: String,
}

fn check_reason(checker: &mut Checker, field: &str, value: &str, required: bool) -> String {
    crate::cases::check_reason(value, required).unwrap_or_else(|description| {
        checker.fail(field, description);
        String::new()
    })
}

fn check_case_change(checker: &mut Checker, case_id: &str, version: u64, reason: (&str, &str, bool)) -> CaseChange {
    checker.text("case_id", case_id, 64);
    if version == 0 || version > i64::MAX as u64 {
        checker.fail("version", "required: the case version you read (from Get, List or Watch)");
    }
    let (field, value, required) = reason;
    let reason = check_reason(checker, field, value, required);
    CaseChange { case_id: case_id.to_owned(), version: version as i64, reason }
}

fn done<T>(checker: Checker, value: T) -> Result<T> {
    if checker.violations.is_empty() {
        Ok(value)
    } else {
        Err(Error::InvalidArgument(checker.violations))
    }
}

/// Validates a case id.
pub fn case_id(case_id: &str) -> Result<String> {
    let mut checker = Checker::new("");
    checker.text("case_id", case_id, 64);
    done(checker, case_id.to_owned())
}

/// Validates a Decide request.
pub fn decide(request: &proto::DecideRequest) -> Result<(CaseChange, crate::cases::Decision)> {
    let mut checker = Checker::new("");
    let change = check_case_change(&mut checker, &request.case_id, request.version, ("reason", &request.reason, true));
    let decision = match proto::Decision::try_from(request.decision) {
        Ok(proto::Decision::Approve) => Some(crate::cases::Decision::Approve),
        Ok(proto::Decision::Reject) => Some(crate::cases::Decision::Reject),
        _ => {
            checker.fail("decision", "must be DECISION_APPROVE or DECISION_REJECT");
            None
        }
    };
    match decision {
        Some(decision) => done(checker, (change, decision)),
        None => Err(Error::InvalidArgument(checker.violations)),
    }
}

fn timestamp_ms(checker: &mut Checker, field: &str, timestamp: &prost_types::Timestamp) -> Option<i64> {
    if !(0..1_000_000_000).contains(&timestamp.nanos) {
        checker.fail(field, "nanos must be within 0..1e9");
        return None;
    }
    let ms = timestamp.seconds.saturating_mul(1000).saturating_add(i64::from(timestamp.nanos / 1_000_000));
    if ms < EARLIEST_MS {
        checker.fail(field, "before 2000-01-01");
        return None;
    }
    Some(ms)
}

/// The core's delivery channel for a proto one; `None` for UNSPECIFIED and unknown values.
pub fn delivery_channel(channel: i32) -> Option<crate::cases::DeliveryChannel> {
    use crate::cases::DeliveryChannel;
    match proto::DeliveryChannel::try_from(channel) {
        Ok(proto::DeliveryChannel::Sms) => Some(DeliveryChannel::Sms),
        Ok(proto::DeliveryChannel::Whatsapp) => Some(DeliveryChannel::WhatsApp),
        Ok(proto::DeliveryChannel::Call) => Some(DeliveryChannel::Call),
        Ok(proto::DeliveryChannel::InPerson) => Some(DeliveryChannel::InPerson),
        Ok(proto::DeliveryChannel::Filed) => Some(DeliveryChannel::Filed),
        _ => None,
    }
}

/// Validates a Claim request.
pub fn claim(request: &proto::ClaimRequest) -> Result<CaseChange> {
    let mut checker = Checker::new("");
    let change = check_case_change(&mut checker, &request.case_id, request.version, ("reason", "", false));
    done(checker, change)
}

/// Validates a ReleaseClaim request.
pub fn release_claim(request: &proto::ReleaseClaimRequest) -> Result<CaseChange> {
    let mut checker = Checker::new("");
    let change = check_case_change(&mut checker, &request.case_id, request.version, ("reason", &request.reason, true));
    done(checker, change)
}

/// Validates a ListDeliveries request into a filter: approved cases, oldest first.
pub fn list_deliveries(request: &proto::ListDeliveriesRequest) -> Result<crate::cases::CaseFilter> {
    list(&proto::ListCasesRequest {
        states: vec![proto::CaseState::Approved as i32],
        region: request.region.clone(),
        page_size: request.page_size,
        page_token: request.page_token.clone(),
        oldest_first: true,
        ..Default::default()
    })
}

/// Validates a RecordAction request; `delivered_at` defaults to `now_ms` and may not be in the future.
pub fn record_action(
    request: &proto::RecordActionRequest,
    now_ms: i64,
) -> Result<(CaseChange, crate::cases::Delivery)> {
    let mut checker = Checker::new("");
    let change = check_case_change(&mut checker, &request.case_id, request.version, ("note", &request.note, false));
    let channel = delivery_channel(request.channel);
    if channel.is_none() {
        checker.fail("channel", "required: DELIVERY_CHANNEL_SMS, _WHATSAPP, _CALL, _IN_PERSON or _FILED");
    }
    let delivered_ms = match &request.delivered_at {
        None => Some(now_ms),
        Some(timestamp) => timestamp_ms(&mut checker, "delivered_at", timestamp).filter(|ms| {
            let future = *ms > now_ms + MAX_CLOCK_SKEW_MS;
            if future {
                checker.fail("delivered_at", "in the future");
            }
            !future
        }),
    };
    match (delivered_ms, channel) {
        (Some(at_ms), Some(channel)) => done(checker, (change, crate::cases::Delivery { at_ms, channel })),
        _ => Err(Error::InvalidArgument(checker.violations)),
    }
}

/// Validates a Revert request.
pub fn revert(request: &proto::RevertRequest) -> Result<CaseChange> {
    let mut checker = Checker::new("");
    let change = check_case_change(&mut checker, &request.case_id, request.version, ("reason", &request.reason, true));
    done(checker, change)
}

/// Validates a List request into a filter.
pub fn list(request: &proto::ListCasesRequest) -> Result<crate::cases::CaseFilter> {
    use crate::cases::{CaseFilter, CaseState};
    use saring_models::ladder::Rung;
    let mut checker = Checker::new("");
    let mut filter = CaseFilter {
        page_size: if request.page_size == 0 { 50 } else { request.page_size },
        oldest_first: request.oldest_first,
        ..Default::default()
    };
    if request.page_size > 500 {
        checker.fail("page_size", "at most 500");
    }
    for (index, state) in request.states.iter().enumerate() {
        match proto::CaseState::try_from(*state) {
            Ok(proto::CaseState::Proposed) => filter.states.push(CaseState::Proposed),
            Ok(proto::CaseState::Approved) => filter.states.push(CaseState::Approved),
            Ok(proto::CaseState::Rejected) => filter.states.push(CaseState::Rejected),
            Ok(proto::CaseState::Actioned) => filter.states.push(CaseState::Actioned),
            Ok(proto::CaseState::Reverted) => filter.states.push(CaseState::Reverted),
            _ => checker.fail(&format!("states[{index}]"), format!("{state} is not a case state")),
        }
    }
    for (index, rung) in request.rungs.iter().enumerate() {
        match proto::Rung::try_from(*rung) {
            Ok(proto::Rung::Warning) => filter.rungs.push(Rung::Warning),
            Ok(proto::Rung::VirtualPoliceMessage) => filter.rungs.push(Rung::VirtualPoliceMessage),
            Ok(proto::Rung::LegalReferral) => filter.rungs.push(Rung::LegalReferral),
            Ok(proto::Rung::WelfareReferral) => filter.rungs.push(Rung::WelfareReferral),
            _ => checker.fail(&format!("rungs[{index}]"), format!("{rung} is not a rung")),
        }
    }
    if !request.region.is_empty() {
        if is_valid_region_code(&request.region) {
            filter.region = Some(request.region.clone());
        } else {
            checker.fail("region", "must be 1..64 characters of lowercase letters, digits, '.', '_' or '-'");
        }
    }
    filter.created_from_ms =
        request.created_from.as_ref().and_then(|timestamp| timestamp_ms(&mut checker, "created_from", timestamp));
    filter.created_to_ms =
        request.created_to.as_ref().and_then(|timestamp| timestamp_ms(&mut checker, "created_to", timestamp));
    if !request.page_token.is_empty() {
        match parse_page_token(&request.page_token) {
            Some(after) => filter.after = Some(after),
            None => checker.fail("page_token", "not a token from a previous reply"),
        }
    }
    done(checker, filter)
}

/// The page token after `(created_ms, case_id)`.
pub fn page_token(created_ms: i64, case_id: &str) -> String {
    hex::encode(format!("{created_ms}/{case_id}"))
}

fn parse_page_token(token: &str) -> Option<(i64, String)> {
    let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let (created, case_id) = text.split_once('/')?;
    Some((created.parse().ok()?, case_id.to_owned()))
}
