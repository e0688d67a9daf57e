//! The one feature schema: a contact's own attributes plus its caller's and device's history, as a fixed vector.
//!
//! Training (replaying an event log) and serving (ScoreContact) both call [`extract`], so there is no
//! training/serving skew. The schema's [`schema_fingerprint`] is stored in every model artifact; a model trained
//! on another schema is refused.

use sha2::{Digest, Sha256};

use crate::domain::{Channel, Disposition};
use crate::history::{CallerHistory, Counter, HistoryEvent, DAY, HOUR, MONTH};

/// A named feature and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureSpec {
    /// Stable name, used as the reason code.
    pub name: &'static str,
    /// What the value is.
    pub description: &'static str,
}

const fn spec(name: &'static str, description: &'static str) -> FeatureSpec {
    FeatureSpec { name, description }
}

/// Version of the schema's definition; bump it whenever a feature's meaning changes.
pub const SCHEMA_VERSION: u32 = 1;

/// The features, in vector order.
pub const FEATURES: [FeatureSpec; 32] = [
    spec("channel_voice", "1 for a voice call"),
    spec("channel_whatsapp", "1 for WhatsApp"),
    spec("channel_sms", "1 for SMS"),
    spec("channel_app", "1 for the police app or a panic button"),
    spec("hour_sin", "sine of the local hour of day"),
    spec("hour_cos", "cosine of the local hour of day"),
    spec("night", "1 at local night-time, 22:00-05:59"),
    spec("weekend", "1 on a local Saturday or Sunday"),
    spec("withheld", "1 when the caller number is withheld or absent"),
    spec("sim_less", "1 when the handset has no SIM card"),
    spec("has_device", "1 when a device id was given"),
    spec("has_location", "1 when a location was given"),
    spec("location_accuracy_log", "ln(1 + accuracy in metres), 0 without a location"),
    spec("caller_known", "1 when the number has history"),
    spec("caller_contacts_1h", "ln(1 + contacts), one-hour half-life"),
    spec("caller_contacts_1d", "ln(1 + contacts), one-day half-life"),
    spec("caller_contacts_30d", "ln(1 + contacts), 30-day half-life"),
    spec("caller_misuse_1d", "ln(1 + prank or abusive contacts), one-day half-life"),
    spec("caller_misuse_30d", "ln(1 + prank or abusive contacts), 30-day half-life"),
    spec("caller_misuse_share_30d", "prank or abusive share of contacts, 30-day half-life"),
    spec("caller_genuine_30d", "ln(1 + genuine or non-emergency contacts), 30-day half-life"),
    spec("caller_silent_accidental_30d", "ln(1 + silent or accidental contacts), 30-day half-life"),
    spec("caller_short_share_30d", "share of contacts with under 10 s of talk, 30-day half-life"),
    spec("caller_unanswered_share_30d", "share of contacts not answered, 30-day half-life"),
    spec("caller_night_share_30d", "share of contacts at night, 30-day half-life"),
    spec("caller_log_seconds_since_last", "ln(1 + seconds since the number's last contact); 90 days if none"),
    spec("caller_log_age_days", "ln(1 + days since the number's first contact)"),
    spec("device_contacts_1h", "ln(1 + device contacts), one-hour half-life"),
    spec("device_contacts_30d", "ln(1 + device contacts), 30-day half-life"),
    spec("device_misuse_30d", "ln(1 + device prank or abusive contacts), 30-day half-life"),
    spec("device_misuse_share_30d", "prank or abusive share of the device's contacts, 30-day half-life"),
    spec("device_log_seconds_since_last", "ln(1 + seconds since the device's last contact); 90 days if none"),
];

/// The number of features.
pub const FEATURE_COUNT: usize = FEATURES.len();

/// A feature vector in schema order.
pub type FeatureVector = [f64; FEATURE_COUNT];

/// Seconds assumed since the last contact of a number or device never seen: 90 days.
pub const NEVER_SEEN_SECONDS: f64 = 90.0 * 86_400.0;

/// The index of a feature by name, if it exists.
pub fn feature_index(name: &str) -> Option<usize> {
    FEATURES.iter().position(|feature| feature.name == name)
}

/// A hex fingerprint of the schema (its version and names in order).
pub fn schema_fingerprint() -> String {
    let mut hasher = Sha256::new();
    hasher.update(SCHEMA_VERSION.to_le_bytes());
    for feature in FEATURES.iter() {
        hasher.update(feature.name.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize()[..8].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What is known about a contact itself when it arrives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContactContext {
    /// When it arrived, Unix milliseconds.
    pub received_at_ms: i64,
    /// The channel.
    pub channel: Channel,
    /// The region's offset from UTC in seconds ([`crate::region::utc_offset_seconds`]).
    pub utc_offset_s: i64,
    /// No caller number (withheld, or no SIM).
    pub withheld: bool,
    /// Whether the handset has a SIM card.
    pub sim_present: bool,
    /// Whether a device id was given.
    pub has_device: bool,
    /// The location's accuracy in metres, when a location was given.
    pub location_accuracy_m: Option<f64>,
}

impl ContactContext {
    /// Local seconds since midnight.
    pub fn local_second_of_day(&self) -> i64 {
        (self.received_at_ms.div_euclid(1000) + self.utc_offset_s).rem_euclid(86_400)
    }

    /// Local hour, 0..23.
    pub fn local_hour(&self) -> u32 {
        (self.local_second_of_day() / 3600) as u32
    }

    /// Local night-time: 22:00 to 05:59.
    pub fn is_night(&self) -> bool {
        let hour = self.local_hour();
        !(6..22).contains(&hour)
    }

    /// Local day of the week, 0 = Monday.
    pub fn local_weekday(&self) -> u32 {
        let local_day = (self.received_at_ms.div_euclid(1000) + self.utc_offset_s).div_euclid(86_400);
        // 1970-01-01 was a Thursday (3 when Monday is 0).
        (local_day + 3).rem_euclid(7) as u32
    }

    /// The history event this contact becomes once its outcome is known. Training and serving both build
    /// history events here, so the night flag and the time used for decay are the same in both.
    pub fn history_event(
        &self,
        contact_fingerprint: u64,
        answered: bool,
        talk_s: f64,
        disposition: Disposition,
    ) -> HistoryEvent {
        HistoryEvent {
            contact_fingerprint,
            at_ms: self.received_at_ms,
            answered,
            talk_s,
            night: self.is_night(),
            disposition,
        }
    }
}

fn ln1p(value: f64) -> f64 {
    value.max(0.0).ln_1p()
}

/// Computes the feature vector for a contact from its context and the histories of its number and device, as
/// seen at the contact's arrival time. `None` means no history (withheld, unknown, or unavailable).
pub fn extract(
    contact: &ContactContext,
    caller: Option<&CallerHistory>,
    device: Option<&CallerHistory>,
) -> FeatureVector {
    let mut features = [0.0; FEATURE_COUNT];
    extract_into(contact, caller, device, &mut features);
    features
}

/// [`extract`] into a caller-provided vector (no allocation).
pub fn extract_into(
    contact: &ContactContext,
    caller: Option<&CallerHistory>,
    device: Option<&CallerHistory>,
    features: &mut FeatureVector,
) {
    let now_ms = contact.received_at_ms;
    for (index, channel) in Channel::ALL.iter().enumerate() {
        features[index] = f64::from(u8::from(contact.channel == *channel));
    }
    let hour_angle = contact.local_second_of_day() as f64 / 86_400.0 * std::f64::consts::TAU;
    features[4] = hour_angle.sin();
    features[5] = hour_angle.cos();
    features[6] = f64::from(u8::from(contact.is_night()));
    features[7] = f64::from(u8::from(contact.local_weekday() >= 5));
    features[8] = f64::from(u8::from(contact.withheld));
    features[9] = f64::from(u8::from(!contact.sim_present));
    features[10] = f64::from(u8::from(contact.has_device));
    features[11] = f64::from(u8::from(contact.location_accuracy_m.is_some()));
    features[12] = contact.location_accuracy_m.map_or(0.0, ln1p);

    let caller = caller.filter(|history| history.total_contacts > 0);
    features[13] = f64::from(u8::from(caller.is_some()));
    let value =
        |history: &CallerHistory, counter: Counter, half_life: usize| history.value_at(counter, half_life, now_ms);
    let misuse = |history: &CallerHistory, half_life: usize| {
        value(history, Counter::Disposition(Disposition::Prank), half_life)
            + value(history, Counter::Disposition(Disposition::Abusive), half_life)
    };
    match caller {
        Some(history) => {
            let contacts_month = value(history, Counter::Contacts, MONTH);
            let share = |amount: f64| amount / (contacts_month + 1.0);
            features[14] = ln1p(value(history, Counter::Contacts, HOUR));
            features[15] = ln1p(value(history, Counter::Contacts, DAY));
            features[16] = ln1p(contacts_month);
            features[17] = ln1p(misuse(history, DAY));
            features[18] = ln1p(misuse(history, MONTH));
            features[19] = share(misuse(history, MONTH));
            features[20] = ln1p(
                value(history, Counter::Disposition(Disposition::GenuineEmergency), MONTH)
                    + value(history, Counter::Disposition(Disposition::NonEmergency), MONTH),
            );
            features[21] = ln1p(
                value(history, Counter::Disposition(Disposition::Silent), MONTH)
                    + value(history, Counter::Disposition(Disposition::Accidental), MONTH),
            );
            features[22] = share(value(history, Counter::Short, MONTH));
            features[23] = share((contacts_month - value(history, Counter::Answered, MONTH)).max(0.0));
            features[24] = share(value(history, Counter::Night, MONTH));
            features[25] = ln1p(history.seconds_since_last(now_ms));
            features[26] = ln1p((now_ms - history.first_seen_ms).max(0) as f64 / 86_400_000.0);
        }
        None => {
            features[14..=24].fill(0.0);
            features[25] = ln1p(NEVER_SEEN_SECONDS);
            features[26] = 0.0;
        }
    }
    match device.filter(|history| history.total_contacts > 0) {
        Some(history) => {
            let contacts_month = value(history, Counter::Contacts, MONTH);
            features[27] = ln1p(value(history, Counter::Contacts, HOUR));
            features[28] = ln1p(contacts_month);
            features[29] = ln1p(misuse(history, MONTH));
            features[30] = misuse(history, MONTH) / (contacts_month + 1.0);
            features[31] = ln1p(history.seconds_since_last(now_ms));
        }
        None => {
            features[27..=30].fill(0.0);
            features[31] = ln1p(NEVER_SEEN_SECONDS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::contact_fingerprint;

    fn context(received_at_ms: i64) -> ContactContext {
        ContactContext {
            received_at_ms,
            channel: Channel::Voice,
            utc_offset_s: 8 * 3600,
            withheld: false,
            sim_present: true,
            has_device: false,
            location_accuracy_m: None,
        }
    }

    #[test]
    fn names_are_unique_and_the_fingerprint_is_stable() {
        for (index, feature) in FEATURES.iter().enumerate() {
            assert_eq!(feature_index(feature.name), Some(index));
        }
        assert_eq!(schema_fingerprint(), schema_fingerprint());
        assert_eq!(schema_fingerprint().len(), 16);
    }

    #[test]
    fn local_time_uses_the_region_offset() {
        // 2026-03-01T15:30:00Z is 23:30 in WITA (UTC+8), a Sunday.
        let contact = context(1_772_379_000_000);
        assert_eq!(contact.local_hour(), 23);
        assert!(contact.is_night());
        assert_eq!(contact.local_weekday(), 6);
    }

    #[test]
    fn history_shows_up_in_the_features() {
        let at_ms = 1_772_379_000_000;
        let event = HistoryEvent {
            contact_fingerprint: contact_fingerprint("c-1"),
            at_ms,
            answered: true,
            talk_s: 3.0,
            night: true,
            disposition: Disposition::Prank,
        };
        let history = CallerHistory::from_event(&event);
        let unknown = extract(&context(at_ms + 60_000), None, None);
        let known = extract(&context(at_ms + 60_000), Some(&history), None);
        let misuse_index = feature_index("caller_misuse_30d").unwrap();
        assert_eq!(unknown[misuse_index], 0.0);
        assert!(known[misuse_index] > 0.69 && known[misuse_index] < 0.7);
        assert_eq!(known[feature_index("caller_known").unwrap()], 1.0);
        assert!((known[feature_index("caller_log_seconds_since_last").unwrap()] - 60f64.ln_1p()).abs() < 1e-12);
    }
}
