//! Ranking and probability metrics on (score, label) pairs, shared by the offline evaluator (`saring-train`) and
//! the service's live quality figures, so both compute a figure the same way.

use serde::Serialize;

/// Indices sorted by score (descending when `descending`), cut into runs of tied scores: `(start, end)` ranges
/// (inclusive) into the returned order.
pub fn tied_groups(scores: &[f64], descending: bool) -> (Vec<usize>, Vec<(usize, usize)>) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    if descending {
        order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    } else {
        order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    }
    let mut groups = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && scores[order[end + 1]] == scores[order[start]] {
            end += 1;
        }
        groups.push((start, end));
        start = end + 1;
    }
    (order, groups)
}

/// ROC-AUC with ties counted half (Mann-Whitney U). 0.5 when a class is missing.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let positives = labels.iter().filter(|label| **label).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return 0.5;
    }
    let (order, groups) = tied_groups(scores, false);
    let mut rank_sum_positive = 0.0;
    for (start, end) in groups {
        // Ranks start + 1 ..= end + 1 share their average.
        let average_rank = (start + end + 2) as f64 / 2.0;
        let tied_positives = order[start..=end].iter().filter(|index| labels[**index]).count();
        rank_sum_positive += average_rank * tied_positives as f64;
    }
    (rank_sum_positive - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// PR-AUC as average precision over groups of tied scores.
pub fn pr_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let positives = labels.iter().filter(|label| **label).count() as f64;
    if positives == 0.0 {
        return 0.0;
    }
    let (order, groups) = tied_groups(scores, true);
    let (mut true_positives, mut area, mut previous_recall) = (0.0, 0.0, 0.0);
    for (start, end) in groups {
        true_positives += order[start..=end].iter().filter(|index| labels[**index]).count() as f64;
        let recall = true_positives / positives;
        area += (recall - previous_recall) * (true_positives / (end + 1) as f64);
        previous_recall = recall;
    }
    area
}

/// Mean squared error of probabilities.
pub fn brier(probabilities: &[f64], labels: &[bool]) -> f64 {
    if probabilities.is_empty() {
        return 0.0;
    }
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(probability, label)| (probability - f64::from(u8::from(*label))).powi(2))
        .sum();
    total / probabilities.len() as f64
}

/// Counts at one threshold: predicted positive when `score >= threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Confusion {
    /// The threshold.
    pub threshold: f64,
    /// Misuse at or above the threshold.
    pub true_positives: usize,
    /// Non-misuse at or above the threshold.
    pub false_positives: usize,
    /// Non-misuse below.
    pub true_negatives: usize,
    /// Misuse below.
    pub false_negatives: usize,
}

impl Confusion {
    /// Counts the confusion at `threshold`.
    pub fn at(scores: &[f64], labels: &[bool], threshold: f64) -> Self {
        let mut confusion =
            Confusion { threshold, true_positives: 0, false_positives: 0, true_negatives: 0, false_negatives: 0 };
        for (score, label) in scores.iter().zip(labels) {
            match (*score >= threshold, *label) {
                (true, true) => confusion.true_positives += 1,
                (true, false) => confusion.false_positives += 1,
                (false, false) => confusion.true_negatives += 1,
                (false, true) => confusion.false_negatives += 1,
            }
        }
        confusion
    }

    /// Share of misuse among contacts at or above the threshold (1 when there are none).
    pub fn precision(&self) -> f64 {
        let flagged = self.true_positives + self.false_positives;
        if flagged == 0 {
            1.0
        } else {
            self.true_positives as f64 / flagged as f64
        }
    }

    /// Share of misuse found.
    pub fn recall(&self) -> f64 {
        let positives = self.true_positives + self.false_negatives;
        if positives == 0 {
            0.0
        } else {
            self.true_positives as f64 / positives as f64
        }
    }
}

/// Bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

/// Expected calibration error: over [`ECE_BINS`] equal-width probability bins, the row-weighted mean of
/// |mean predicted probability − observed misuse share|.
pub fn expected_calibration_error(probabilities: &[f64], labels: &[bool]) -> f64 {
    let mut sums = [(0.0f64, 0.0f64, 0usize); ECE_BINS];
    for (probability, label) in probabilities.iter().zip(labels) {
        let bin = ((probability * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
        sums[bin].0 += probability;
        sums[bin].1 += f64::from(u8::from(*label));
        sums[bin].2 += 1;
    }
    let total = probabilities.len().max(1) as f64;
    sums.iter()
        .filter(|(_, _, count)| *count > 0)
        .map(|(predicted, observed, _)| (predicted - observed).abs() / total)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_cases() {
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), 0.0);
        assert_eq!(roc_auc(&[0.5, 0.5, 0.5, 0.5], &[false, true, false, true]), 0.5);
        // One inversion among 2 x 2 pairs.
        assert_eq!(roc_auc(&[0.1, 0.6, 0.5, 0.9], &[false, false, true, true]), 0.75);
        assert!((pr_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]) - 1.0).abs() < 1e-12);
        assert!((brier(&[1.0, 0.0], &[true, false])).abs() < 1e-12);
    }

    #[test]
    fn calibration_error_of_known_cases() {
        assert!(expected_calibration_error(&[1.0, 0.0], &[true, false]).abs() < 1e-12);
        // One bin holding 0.5 and 0.5 with one misuse: perfectly calibrated; 0.9 for a non-misuse is off by 0.9.
        assert!(expected_calibration_error(&[0.5, 0.5], &[true, false]).abs() < 1e-12);
        assert!((expected_calibration_error(&[0.9], &[false]) - 0.9).abs() < 1e-12);
    }
}
