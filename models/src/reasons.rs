//! Reasons: feature contributions grouped into codes an operator can read, each with a plain sentence.
//!
//! Most reasons are one feature; the hour of day is two (its sine and cosine) and is reported as one reason
//! whose contribution is their sum, so reason contributions still add up to the raw score minus the bias.

use crate::features::{FeatureVector, FEATURES, NEVER_SEEN_SECONDS};

/// A reason code and the features it sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonSpec {
    /// Stable code shown to machines.
    pub code: &'static str,
    /// Indices of the features whose contributions it sums.
    pub features: &'static [usize],
}

/// The number of reason codes.
pub const REASON_COUNT: usize = FEATURES.len() - 1;

/// Every reason code, in schema order. The hour's sine and cosine (features 4 and 5) form `time_of_day`.
pub const REASONS: [ReasonSpec; REASON_COUNT] = {
    let mut reasons = [ReasonSpec { code: "", features: &[] }; REASON_COUNT];
    let mut feature = 0;
    let mut reason = 0;
    while feature < FEATURES.len() {
        if feature == 4 {
            reasons[reason] = ReasonSpec { code: "time_of_day", features: &[4, 5] };
            feature += 2;
        } else {
            reasons[reason] = ReasonSpec { code: FEATURES[feature].name, features: SINGLE[feature] };
            feature += 1;
        }
        reason += 1;
    }
    reasons
};

const SINGLE: [&[usize]; FEATURES.len()] = [
    &[0],
    &[1],
    &[2],
    &[3],
    &[4],
    &[5],
    &[6],
    &[7],
    &[8],
    &[9],
    &[10],
    &[11],
    &[12],
    &[13],
    &[14],
    &[15],
    &[16],
    &[17],
    &[18],
    &[19],
    &[20],
    &[21],
    &[22],
    &[23],
    &[24],
    &[25],
    &[26],
    &[27],
    &[28],
    &[29],
    &[30],
    &[31],
];

/// Sums feature contributions into reason contributions (no allocation).
pub fn reason_contributions(feature_contributions: &FeatureVector) -> [f64; REASON_COUNT] {
    let mut sums = [0.0; REASON_COUNT];
    for (sum, reason) in sums.iter_mut().zip(REASONS.iter()) {
        *sum = reason.features.iter().map(|index| feature_contributions[*index]).sum();
    }
    sums
}

/// Indices of the `N` values largest in magnitude, strongest first; zeros are skipped, ties keep their order.
/// Used on [`reason_contributions`] to pick the reasons to show. Allocation-free.
pub fn strongest<const N: usize>(sums: &[f64]) -> [Option<usize>; N] {
    let mut chosen: [Option<usize>; N] = [None; N];
    for (index, value) in sums.iter().enumerate() {
        if *value == 0.0 {
            continue;
        }
        let mut position = N;
        while position > 0 && chosen[position - 1].is_none_or(|other| sums[other].abs() < value.abs()) {
            position -= 1;
        }
        if position < N {
            chosen[position..].rotate_right(1);
            chosen[position] = Some(index);
        }
    }
    chosen
}

fn count_words(count: f64) -> String {
    if count < 0.5 {
        "under 1".to_owned()
    } else {
        format!("about {count:.0}")
    }
}

fn percent(share: f64) -> String {
    format!("{:.0}%", (share * 100.0).clamp(0.0, 100.0))
}

fn duration_words(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} seconds"),
        s if s < 7_200.0 => format!("{:.0} minutes", s / 60.0),
        s if s < 172_800.0 => format!("{:.0} hours", s / 3_600.0),
        s => format!("{:.0} days", s / 86_400.0),
    }
}

/// The plain sentence for a reason, from the feature values of the contact.
pub fn sentence(reason_index: usize, features: &FeatureVector) -> String {
    let reason = &REASONS[reason_index];
    let value = features[reason.features[0]];
    let flag = value >= 0.5;
    let count = value.exp_m1();
    let never_seen = |index: usize| (value - NEVER_SEEN_SECONDS.ln_1p()).abs() < 1e-9 && features[index] == 0.0;
    match reason.code {
        "channel_voice" => if flag { "a voice call" } else { "not a voice call" }.to_owned(),
        "channel_whatsapp" => if flag { "a WhatsApp contact" } else { "not a WhatsApp contact" }.to_owned(),
        "channel_sms" => if flag { "an SMS" } else { "not an SMS" }.to_owned(),
        "channel_app" => if flag { "a report from the police app" } else { "not an app report" }.to_owned(),
        "time_of_day" => {
            let angle = features[4].atan2(features[5]).rem_euclid(std::f64::consts::TAU);
            let hour = (angle / std::f64::consts::TAU * 24.0).floor() as u32 % 24;
            format!("arrived at {hour:02}:00-{hour:02}:59 local time")
        }
        "night" => if flag { "arrived at night (22:00-06:00 local time)" } else { "arrived in the daytime" }.to_owned(),
        "weekend" => if flag { "arrived on a weekend" } else { "arrived on a weekday" }.to_owned(),
        "withheld" => if flag { "the number is withheld" } else { "the number is shown" }.to_owned(),
        "sim_less" => if flag { "no SIM card in the handset" } else { "the handset has a SIM card" }.to_owned(),
        "has_device" => if flag { "the device is identified" } else { "no device id" }.to_owned(),
        "has_location" => if flag { "a location was sent" } else { "no location was sent" }.to_owned(),
        "location_accuracy_log" => format!("location accurate to {:.0} m", count),
        "caller_known" => {
            if flag { "this number has contacted 110 before" } else { "first contact from this number" }.to_owned()
        }
        "caller_contacts_1h" => format!("{} contacts from this number in the last hour", count_words(count)),
        "caller_contacts_1d" => format!("{} contacts from this number in the last day", count_words(count)),
        "caller_contacts_30d" => format!("{} contacts from this number in the last month", count_words(count)),
        "caller_misuse_1d" => {
            format!("{} prank or abusive contacts from this number in the last day", count_words(count))
        }
        "caller_misuse_30d" => {
            format!("{} prank or abusive contacts from this number in the last month", count_words(count))
        }
        "caller_misuse_share_30d" => {
            format!("{} of this number's recent contacts were pranks or abuse", percent(value))
        }
        "caller_genuine_30d" => format!("{} genuine contacts from this number in the last month", count_words(count)),
        "caller_silent_accidental_30d" => {
            format!("{} silent or accidental contacts from this number in the last month", count_words(count))
        }
        "caller_short_share_30d" => {
            format!("{} of this number's recent contacts lasted under 10 seconds", percent(value))
        }
        "caller_unanswered_share_30d" => {
            format!("{} of this number's recent contacts were not answered", percent(value))
        }
        "caller_night_share_30d" => format!("{} of this number's recent contacts came at night", percent(value)),
        "caller_log_seconds_since_last" if never_seen(13) => "no earlier contact from this number".to_owned(),
        "caller_log_seconds_since_last" => format!("last contact from this number {} ago", duration_words(count)),
        "caller_log_age_days" => format!("this number was first seen {} ago", duration_words(count * 86_400.0)),
        "device_contacts_1h" => format!("{} contacts from this device in the last hour", count_words(count)),
        "device_contacts_30d" => format!("{} contacts from this device in the last month", count_words(count)),
        "device_misuse_30d" => {
            format!("{} prank or abusive contacts from this device in the last month", count_words(count))
        }
        "device_misuse_share_30d" => {
            format!("{} of this device's recent contacts were pranks or abuse", percent(value))
        }
        "device_log_seconds_since_last" if never_seen(28) => "no earlier contact from this device".to_owned(),
        "device_log_seconds_since_last" => format!("last contact from this device {} ago", duration_words(count)),
        other => other.replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::feature_index;

    #[test]
    fn every_feature_belongs_to_exactly_one_reason() {
        let mut seen = [0; FEATURES.len()];
        for reason in REASONS.iter() {
            assert!(!reason.code.is_empty());
            for index in reason.features {
                seen[*index] += 1;
            }
        }
        assert!(seen.iter().all(|count| *count == 1));
    }

    #[test]
    fn strongest_come_first() {
        let values = [0.5, 0.0, -2.0, 1.0, 0.1];
        assert_eq!(strongest::<3>(&values), [Some(2), Some(3), Some(0)]);
        assert_eq!(strongest::<5>(&values), [Some(2), Some(3), Some(0), Some(4), None]);
    }

    #[test]
    fn sentences_read_as_plain_words() {
        let mut features = [0.0; FEATURES.len()];
        features[feature_index("caller_contacts_1h").unwrap()] = 8f64.ln();
        features[feature_index("sim_less").unwrap()] = 1.0;
        let reason_of = |code: &str| REASONS.iter().position(|reason| reason.code == code).unwrap();
        assert_eq!(
            sentence(reason_of("caller_contacts_1h"), &features),
            "about 7 contacts from this number in the last hour"
        );
        assert_eq!(sentence(reason_of("sim_less"), &features), "no SIM card in the handset");
        let every_sentence_differs_from_its_code =
            (0..REASON_COUNT).all(|index| sentence(index, &features) != REASONS[index].code);
        assert!(every_sentence_differs_from_its_code);
    }
}
