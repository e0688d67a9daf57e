//! Choosing the HIGH threshold so that the band means something on any population.
//!
//! The rule, on validation likelihoods: among thresholds that flag at least `minimum_flagged` contacts and hold at
//! least `recall_floor` of the labelled misuse, take the lowest whose precision reaches the target (the most misuse
//! at the target precision). When none reaches it, the target is unattainable there: take the threshold with the best
//! precision subject to the same recall floor (ties: the lower threshold, which finds more misuse), and say so. A
//! threshold of 1.0 is never chosen silently: only when the validation range holds a single class, and then the
//! choice says why.

use saring_models::metrics::tied_groups;
use serde::Serialize;

/// How the HIGH threshold was reached.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HighStatus {
    /// The target precision was reached with recall at or above the floor.
    TargetMet,
    /// No threshold with recall at or above the floor reaches the target precision; the best attainable one was
    /// taken.
    TargetUnattainable,
    /// The validation range holds only one class: no threshold separates anything. HIGH is set to 1.0.
    Degenerate {
        /// Why.
        reason: String,
    },
}

/// The chosen HIGH operating point, with its validation precision and recall.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HighChoice {
    /// Likelihood at or above which a contact is HIGH.
    pub threshold: f64,
    /// Precision of contacts at or above the threshold on the data it was chosen on.
    pub precision: f64,
    /// Share of labelled misuse at or above the threshold.
    pub recall: f64,
    /// Contacts at or above the threshold.
    pub flagged: usize,
    /// The precision that was targeted.
    pub target_precision: f64,
    /// The recall floor that was required.
    pub recall_floor: f64,
    /// Whether the target was met.
    pub status: HighStatus,
}

impl HighChoice {
    /// One line for `fit`'s output and the card.
    pub fn describe(&self) -> String {
        match &self.status {
            HighStatus::TargetMet => format!(
                "HIGH at likelihood >= {:.3}: validation precision {:.3} (target {}), recall {:.3} (floor {})",
                self.threshold, self.precision, self.target_precision, self.recall, self.recall_floor
            ),
            HighStatus::TargetUnattainable => format!(
                "HIGH target precision {} is unattainable on validation data at recall >= {}; chose the best \
                 attainable: likelihood >= {:.3} with precision {:.3}, recall {:.3}",
                self.target_precision, self.recall_floor, self.threshold, self.precision, self.recall
            ),
            HighStatus::Degenerate { reason } => {
                format!("HIGH cannot be chosen ({reason}); set to likelihood >= 1.000, which flags almost nothing")
            }
        }
    }
}

/// Chooses the HIGH threshold among observed scores (see the module documentation).
pub fn choose_high_threshold(
    scores: &[f64],
    labels: &[bool],
    target_precision: f64,
    recall_floor: f64,
    minimum_flagged: usize,
) -> HighChoice {
    let positives = labels.iter().filter(|label| **label).count();
    let degenerate = |reason: &str| HighChoice {
        threshold: 1.0,
        precision: if positives == labels.len() && positives > 0 { 1.0 } else { 0.0 },
        recall: 0.0,
        flagged: 0,
        target_precision,
        recall_floor,
        status: HighStatus::Degenerate { reason: reason.to_owned() },
    };
    if labels.is_empty() {
        return degenerate("no labelled contacts in the validation range");
    }
    if positives == 0 {
        return degenerate("no labelled misuse in the validation range");
    }
    if positives == labels.len() {
        return degenerate("every labelled contact in the validation range is misuse");
    }
    let (order, groups) = tied_groups(scores, true);
    let mut true_positives = 0usize;
    // (threshold, precision, recall, flagged) of the lowest threshold meeting the target, and of the best precision.
    let mut met: Option<(f64, f64, f64, usize)> = None;
    let mut best: Option<(f64, f64, f64, usize)> = None;
    for (start, end) in groups {
        true_positives += order[start..=end].iter().filter(|index| labels[**index]).count();
        let flagged = end + 1;
        let precision = true_positives as f64 / flagged as f64;
        let recall = true_positives as f64 / positives as f64;
        if flagged < minimum_flagged || recall < recall_floor {
            continue;
        }
        let point = (scores[order[start]], precision, recall, flagged);
        if precision >= target_precision {
            met = Some(point);
        }
        // Thresholds only fall, so `>=` keeps the lowest of equally precise thresholds.
        if best.is_none_or(|(_, best_precision, _, _)| precision >= best_precision) {
            best = Some(point);
        }
    }
    let (status, point) = match (met, best) {
        (Some(point), _) => (HighStatus::TargetMet, point),
        (None, Some(point)) => (HighStatus::TargetUnattainable, point),
        (None, None) => {
            return degenerate(&format!(
                "fewer than {minimum_flagged} labelled contacts in the validation range to flag"
            ))
        }
    };
    let (threshold, precision, recall, flagged) = point;
    HighChoice { threshold, precision, recall, flagged, target_precision, recall_floor, status }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Scores from high to low; precision among the top k: 1, 1, 2/3, 3/4, 3/5, 4/6, 4/7, 4/8.
    const SCORES: [f64; 8] = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2];
    const LABELS: [bool; 8] = [true, true, false, true, false, true, false, false];

    #[test]
    fn an_attainable_target_takes_the_lowest_threshold_reaching_it() {
        let choice = choose_high_threshold(&SCORES, &LABELS, 0.75, 0.2, 1);
        assert_eq!(choice.status, HighStatus::TargetMet);
        assert_eq!(choice.threshold, 0.6);
        assert_eq!((choice.precision, choice.recall, choice.flagged), (0.75, 0.75, 4));
        assert!(choice.describe().contains("target 0.75"), "{}", choice.describe());
    }

    #[test]
    fn the_recall_floor_turns_a_target_met_only_by_a_sliver_into_the_best_attainable() {
        // Precision 1.0 holds only for the top two (recall 0.5); with a floor of 0.6 the best precision at
        // recall >= 0.6 is 3/4 at 0.6.
        let choice = choose_high_threshold(&SCORES, &LABELS, 0.95, 0.6, 1);
        assert_eq!(choice.status, HighStatus::TargetUnattainable);
        assert_eq!(choice.threshold, 0.6);
        assert_eq!(choice.precision, 0.75);
        assert!(choice.describe().contains("unattainable"), "{}", choice.describe());
        // Without the floor the same target is met at the top.
        let unconstrained = choose_high_threshold(&SCORES, &LABELS, 0.95, 0.0, 1);
        assert_eq!((unconstrained.status, unconstrained.threshold), (HighStatus::TargetMet, 0.8));
    }

    #[test]
    fn an_unattainable_target_never_becomes_one_in_silence() {
        // Nothing reaches 0.99 with at least three flagged: the best precision with three or more flagged is 3/4.
        let choice = choose_high_threshold(&SCORES, &LABELS, 0.99, 0.2, 3);
        assert_eq!(choice.status, HighStatus::TargetUnattainable);
        assert!(choice.threshold < 1.0);
        assert_eq!((choice.threshold, choice.precision, choice.recall), (0.6, 0.75, 0.75));
    }

    #[test]
    fn ties_are_flagged_together() {
        let scores = [0.9, 0.9, 0.5, 0.5];
        let labels = [true, false, true, false];
        let choice = choose_high_threshold(&scores, &labels, 0.9, 0.2, 1);
        assert_eq!(choice.status, HighStatus::TargetUnattainable);
        // Both thresholds give precision 0.5; the lower one finds all misuse.
        assert_eq!((choice.threshold, choice.recall, choice.flagged), (0.5, 1.0, 4));
    }

    #[test]
    fn a_single_class_is_degenerate_and_says_so() {
        for (labels, reason) in [
            (vec![false; 4], "no labelled misuse"),
            (vec![true; 4], "every labelled contact"),
            (vec![], "no labelled contacts"),
        ] {
            let scores = vec![0.5; labels.len()];
            let choice = choose_high_threshold(&scores, &labels, 0.9, 0.2, 1);
            assert_eq!(choice.threshold, 1.0);
            match &choice.status {
                HighStatus::Degenerate { reason: given } => assert!(given.contains(reason), "{given}"),
                other => panic!("expected degenerate, got {other:?}"),
            }
            assert!(choice.describe().contains("cannot be chosen"));
        }
    }

    #[test]
    fn too_few_contacts_to_flag_is_degenerate() {
        let choice = choose_high_threshold(&SCORES, &LABELS, 0.9, 0.2, 100);
        assert!(matches!(choice.status, HighStatus::Degenerate { .. }));
        assert_eq!(choice.threshold, 1.0);
    }
}
