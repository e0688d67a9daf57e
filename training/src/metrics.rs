//! Ranking and probability metrics on (score, label) pairs. The figures themselves live in the shared core
//! (`saring_models::metrics`), so the service's live quality figures are computed exactly as these.

use saring_models::metrics::tied_groups;
pub use saring_models::metrics::{brier, pr_auc, roc_auc, Confusion};

/// The lowest threshold (among observed scores) whose precision is at least `target` with at least
/// `minimum_flagged` contacts flagged; `None` when no threshold reaches it.
pub fn threshold_for_precision(scores: &[f64], labels: &[bool], target: f64, minimum_flagged: usize) -> Option<f64> {
    let (order, groups) = tied_groups(scores, true);
    let mut true_positives = 0usize;
    let mut best = None;
    for (start, end) in groups {
        true_positives += order[start..=end].iter().filter(|index| labels[**index]).count();
        let flagged = end + 1;
        if flagged >= minimum_flagged && true_positives as f64 >= target * flagged as f64 {
            best = Some(scores[order[start]]);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_precision_threshold_is_the_lowest_that_reaches_the_target() {
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4];
        let labels = [true, true, false, true, false, false];
        assert_eq!(threshold_for_precision(&scores, &labels, 1.0, 1), Some(0.8));
        assert_eq!(threshold_for_precision(&scores, &labels, 0.75, 1), Some(0.6));
        assert_eq!(threshold_for_precision(&scores, &labels, 1.0, 3), None);
        let confusion = Confusion::at(&scores, &labels, 0.6);
        assert_eq!((confusion.true_positives, confusion.false_positives), (3, 1));
        assert_eq!(confusion.precision(), 0.75);
    }
}
