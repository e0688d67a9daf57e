//! Validation of saring.v1 messages into the core's types. Every problem is collected and named by field path,
//! so one rejection tells the routing engine everything that is wrong.

use saring_models::phone::normalise_indonesian_number;
use saring_models::region::{is_valid_region_code, province, utc_offset_seconds};
use saring_models::{Channel, Disposition};

use crate::error::{Error, Result, Violation};
use crate::proto;
use crate::screening::{Contact, Location, OutcomeReport};

/// Contacts may not claim to arrive later than this after the server's clock.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// Contacts may not claim to arrive before 2000-01-01T00:00:00Z.
pub const EARLIEST_MS: i64 = 946_684_800_000;
/// Longest plausible ring or talk time: one day.
pub const MAX_DURATION_S: f64 = 86_400.0;

struct Checker {
    prefix: &'static str,
    violations: Vec<Violation>,
}

impl Checker {
    fn new(prefix: &'static str) -> Self {
        Checker { prefix, violations: Vec::new() }
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

fn check_contact(checker: &mut Checker, request: &proto::ContactRequest, now_ms: i64) -> Option<Contact> {
    let id_ok = checker.text("contact_id", &request.contact_id, 128);
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
        contact_id: request.contact_id.clone(),
        caller: caller?,
        channel: channel?,
        received_at_ms: received_at_ms?,
        region: request.region.clone(),
        utc_offset_s: utc_offset_s?,
        sim_present: request.sim_present,
        device_id: request.device_id.clone(),
        location,
    })
}

/// Validates a ContactRequest; `now_ms` is the server's clock.
pub fn contact(request: &proto::ContactRequest, now_ms: i64) -> Result<Contact> {
    let mut checker = Checker::new("");
    check_contact(&mut checker, request, now_ms).ok_or(Error::InvalidArgument(checker.violations))
}

/// Validates an Outcome.
pub fn outcome(request: &proto::Outcome, now_ms: i64) -> Result<OutcomeReport> {
    let mut checker = Checker::new("");
    checker.text("contact_id", &request.contact_id, 128);
    let mut contact = None;
    if let Some(embedded) = &request.contact {
        let mut inner = Checker::new("contact.");
        contact = check_contact(&mut inner, embedded, now_ms);
        checker.violations.append(&mut inner.violations);
        if embedded.contact_id != request.contact_id {
            checker.fail("contact.contact_id", "must equal the outcome's contact_id");
        }
    }
    for (field, value) in [("ring_s", request.ring_s), ("talk_s", request.talk_s)] {
        if !(value.is_finite() && (0.0..=MAX_DURATION_S).contains(&value)) {
            checker.fail(field, "must be a number of seconds between 0 and 86400");
        }
    }
    if !request.answered && request.talk_s > 0.0 {
        checker.fail("talk_s", "must be 0 when the contact was not answered");
    }
    let disposition = disposition(request.disposition);
    if disposition.is_none() {
        checker.fail(
            "disposition",
            format!("{} is not a disposition (use DISPOSITION_UNKNOWN for none)", request.disposition),
        );
    }
    if let Some(category) = &request.category {
        if checker.text("category", category, 64) && category.chars().any(|c| c.is_uppercase()) {
            checker.fail("category", "must be lowercase");
        }
    }
    if let Some(operator_id) = &request.operator_id {
        checker.text("operator_id", operator_id, 64);
    }
    match disposition {
        Some(disposition) if checker.violations.is_empty() => Ok(OutcomeReport {
            contact_id: request.contact_id.clone(),
            contact,
            answered: request.answered,
            ring_s: request.ring_s,
            talk_s: request.talk_s,
            disposition,
            category: request.category.clone(),
            operator_id: request.operator_id.clone(),
        }),
        _ => Err(Error::InvalidArgument(checker.violations)),
    }
}
