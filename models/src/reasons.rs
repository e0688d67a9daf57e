//! Reasons: feature contributions grouped into codes an operator can read, each with a plain sentence.
//!
//! Most reasons are one feature; the hour of day is two (its sine and cosine) and is reported as one reason
//! whose contribution is their sum, so reason contributions still add up to the raw score minus the bias.

use crate::features::{FeatureVector, FEATURES};
use crate::reason_text::{fact, sentence_in, Language};

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

fn reason_of_feature(feature: usize) -> usize {
    if feature <= 4 {
        feature
    } else {
        feature - 1
    }
}

/// Moves the contributions of reasons `from` into `into` (they describe history that does not exist).
fn fold(sums: &mut [f64; REASON_COUNT], from: std::ops::RangeInclusive<usize>, into: usize) {
    for feature in from {
        let reason = reason_of_feature(feature);
        if reason != into {
            sums[into] += sums[reason];
            sums[reason] = 0.0;
        }
    }
}

/// Reason contributions for an operator: like [`reason_contributions`], but when the number (or device) has no
/// history, every feature about that history is folded into one reason ("the number is withheld", "first contact
/// from this number", "no device id", "first contact from this device"), so operators never read sentences about
/// history that does not exist. The sum is unchanged: reasons still add up to the raw score minus the bias.
pub fn operator_reasons(feature_contributions: &FeatureVector, features: &FeatureVector) -> [f64; REASON_COUNT] {
    let mut sums = reason_contributions(feature_contributions);
    if features[CALLER_KNOWN] < 0.5 {
        let into = if features[WITHHELD] >= 0.5 { WITHHELD } else { CALLER_KNOWN };
        fold(&mut sums, CALLER_KNOWN..=CALLER_LAST, reason_of_feature(into));
    }
    if features[DEVICE_CONTACTS_30D] <= 0.0 {
        let into = reason_of_feature(HAS_DEVICE);
        fold(&mut sums, DEVICE_FIRST..=DEVICE_LAST, into);
    }
    sums
}

const HAS_DEVICE: usize = 10;
const WITHHELD: usize = 8;
const CALLER_KNOWN: usize = 13;
const CALLER_LAST: usize = 26;
const DEVICE_FIRST: usize = 27;
const DEVICE_CONTACTS_30D: usize = 28;
const DEVICE_LAST: usize = 31;

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

/// The plain English sentence for a reason, from the feature values of the contact. Reasons folded by
/// [`operator_reasons`] read as the absence of history. Both languages, and the fact as data:
/// [`crate::reason_text`].
pub fn sentence(reason_index: usize, features: &FeatureVector) -> String {
    sentence_in(Language::English, reason_index, fact(reason_index, features))
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
    fn absent_history_is_one_reason_and_the_sum_is_kept() {
        let mut features = [0.0; FEATURES.len()];
        features[WITHHELD] = 1.0;
        let mut contributions = [0.0; FEATURES.len()];
        for (index, contribution) in contributions.iter_mut().enumerate() {
            *contribution = 0.01 * (index as f64 + 1.0);
        }
        let sums = operator_reasons(&contributions, &features);
        let reason_of = |code: &str| REASONS.iter().position(|reason| reason.code == code).unwrap();
        assert!((sums.iter().sum::<f64>() - contributions.iter().sum::<f64>()).abs() < 1e-12);
        for code in ["caller_known", "caller_misuse_30d", "caller_misuse_share_30d", "device_misuse_30d"] {
            assert_eq!(sums[reason_of(code)], 0.0, "{code}");
        }
        assert!(sums[reason_of("withheld")] > contributions[WITHHELD]);
        assert_eq!(sentence(reason_of("withheld"), &features), "the number is withheld, so there is no caller history");
        assert_eq!(sentence(reason_of("has_device"), &features), "no device id, so there is no device history");
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
