//! Calibration of raw scores on the validation range: Platt scaling or isotonic regression, chosen by cross-fitting
//! inside the validation range (never the test range), and the expected calibration error used to report it.

use saring_models::artifact::{Calibration, IsotonicCalibration, ModelParams};
use saring_models::inference::calibrate;
use serde::Serialize;

use crate::learners::fit_platt;

pub use saring_models::metrics::{expected_calibration_error, ECE_BINS};

/// The model's own probability before any calibration: the sigmoid of a log-odds score (logistic, boosted), or
/// the forest's (class-balanced) misuse share.
pub fn uncalibrated_probability(params: &ModelParams, raw: f64) -> f64 {
    match params {
        ModelParams::Forest(_) => raw.clamp(0.0, 1.0),
        ModelParams::Logistic(_) | ModelParams::Boosted(_) => 1.0 / (1.0 + (-raw).exp()),
    }
}

/// Isotonic regression of labels on raw scores by pool-adjacent-violators; knots at each block's mean raw score.
pub fn fit_isotonic(raw: &[f64], labels: &[bool]) -> IsotonicCalibration {
    let mut order: Vec<usize> = (0..raw.len()).collect();
    order.sort_by(|a, b| raw[*a].total_cmp(&raw[*b]));
    // Blocks of (sum of raw, sum of labels, count); tied raw scores start in one block.
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    let mut previous_raw = f64::NAN;
    for index in order {
        let label = f64::from(u8::from(labels[index]));
        match blocks.last_mut() {
            Some(block) if raw[index] == previous_raw => {
                block.0 += raw[index];
                block.1 += label;
                block.2 += 1.0;
            }
            _ => blocks.push((raw[index], label, 1.0)),
        }
        previous_raw = raw[index];
        // Merge while the last block's mean does not exceed the previous one's: means end strictly increasing.
        while blocks.len() >= 2 {
            let (last, before) = (blocks[blocks.len() - 1], blocks[blocks.len() - 2]);
            if last.1 / last.2 > before.1 / before.2 {
                break;
            }
            blocks.pop();
            let merged = blocks.last_mut().expect("two blocks");
            merged.0 += last.0;
            merged.1 += last.1;
            merged.2 += last.2;
        }
    }
    let mut isotonic = IsotonicCalibration { raw: Vec::new(), likelihood: Vec::new() };
    for (raw_sum, label_sum, count) in blocks {
        let knot = raw_sum / count;
        // Knots must increase strictly; a block whose mean raw repeats the previous knot is folded into it.
        if isotonic.raw.last().is_some_and(|last| knot <= *last) {
            continue;
        }
        isotonic.raw.push(knot);
        isotonic.likelihood.push(label_sum / count);
    }
    isotonic
}

fn log_loss(probabilities: &[f64], labels: &[bool]) -> f64 {
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(probability, label)| {
            let probability = probability.clamp(1e-6, 1.0 - 1e-6);
            if *label {
                -probability.ln()
            } else {
                -(1.0 - probability).ln()
            }
        })
        .sum();
    total / probabilities.len().max(1) as f64
}

/// How one calibration method did when fitted on one half of the validation range and judged on the other.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CrossFit {
    /// Mean log loss on the held-out halves.
    pub log_loss: f64,
    /// Mean ECE on the held-out halves.
    pub ece: f64,
}

/// The calibration chosen and why.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationChoice {
    /// The fitted calibration (on the whole validation range).
    #[serde(skip)]
    pub calibration: Calibration,
    /// "platt" or "isotonic".
    pub method: &'static str,
    /// Platt fitted on one half of the validation range (by time), judged on the other, both ways.
    pub platt_cross_fit: CrossFit,
    /// The same for isotonic regression.
    pub isotonic_cross_fit: CrossFit,
}

/// Fits Platt and isotonic calibration and keeps isotonic only when it lowers held-out log loss by at least 0.001
/// when cross-fitted across the two halves (by time) of the validation range. The winner is refitted on all of it.
/// `raw` must be in time order.
pub fn choose_calibration(raw: &[f64], labels: &[bool]) -> CalibrationChoice {
    let middle = raw.len() / 2;
    let halves = [(0..middle, middle..raw.len()), (middle..raw.len(), 0..middle)];
    let mut platt_scores = (0.0, 0.0);
    let mut isotonic_scores = (0.0, 0.0);
    for (fit_range, judge_range) in halves {
        let (fit_raw, fit_labels) = (&raw[fit_range.clone()], &labels[fit_range]);
        let (judge_raw, judge_labels) = (&raw[judge_range.clone()], &labels[judge_range]);
        let (slope, offset) = fit_platt(fit_raw, fit_labels);
        let platt = Calibration::platt(slope, offset);
        let isotonic = Calibration { slope, offset, isotonic: Some(fit_isotonic(fit_raw, fit_labels)) };
        for (calibration, scores) in [(platt, &mut platt_scores), (isotonic, &mut isotonic_scores)] {
            let probabilities: Vec<f64> = judge_raw.iter().map(|raw| calibrate(&calibration, *raw)).collect();
            scores.0 += log_loss(&probabilities, judge_labels) / 2.0;
            scores.1 += expected_calibration_error(&probabilities, judge_labels) / 2.0;
        }
    }
    let (slope, offset) = fit_platt(raw, labels);
    let use_isotonic = isotonic_scores.0 < platt_scores.0 - 0.001;
    let calibration = Calibration { slope, offset, isotonic: use_isotonic.then(|| fit_isotonic(raw, labels)) };
    CalibrationChoice {
        calibration,
        method: if use_isotonic { "isotonic" } else { "platt" },
        platt_cross_fit: CrossFit { log_loss: platt_scores.0, ece: platt_scores.1 },
        isotonic_cross_fit: CrossFit { log_loss: isotonic_scores.0, ece: isotonic_scores.1 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use saring_models::inference::interpolate_isotonic;

    #[test]
    fn ece_is_zero_when_predictions_match_frequencies_and_large_when_they_do_not() {
        let labels: Vec<bool> = (0..1000).map(|index| index % 4 == 0).collect();
        assert!(expected_calibration_error(&vec![0.25; 1000], &labels) < 1e-12);
        assert!((expected_calibration_error(&vec![0.75; 1000], &labels) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn isotonic_recovers_a_non_logistic_curve_and_fixes_a_miscalibrated_score() {
        // True probability is a ramp in raw, 0.05 to 0.95; raw cubed, read as a probability, is badly calibrated.
        let raw: Vec<f64> = (0..5000).map(|index| f64::from(index) / 5000.0).collect();
        let truth = |value: f64| 0.05 + 0.9 * value;
        let labels: Vec<bool> = raw
            .iter()
            .enumerate()
            .map(|(index, value)| (index as f64 * 0.618_033_988_75).fract() < truth(*value))
            .collect();
        let isotonic = fit_isotonic(&raw, &labels);
        assert!(isotonic.raw.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(isotonic.likelihood.windows(2).all(|pair| pair[0] < pair[1]));
        let calibrated: Vec<f64> = raw.iter().map(|value| interpolate_isotonic(&isotonic, *value)).collect();
        let mean_error =
            raw.iter().zip(&calibrated).map(|(value, fitted)| (truth(*value) - fitted).abs()).sum::<f64>() / 5000.0;
        assert!(mean_error < 0.03, "mean distance from the true curve {mean_error}");
        assert!(expected_calibration_error(&calibrated, &labels) < 0.02);
        let miscalibrated: Vec<f64> = raw.iter().map(|value| value.powi(3)).collect();
        assert!(expected_calibration_error(&miscalibrated, &labels) > 0.15);
    }

    #[test]
    fn platt_is_kept_when_the_curve_is_logistic() {
        let raw: Vec<f64> = (0..4000).map(|index| f64::from(index) / 500.0 - 4.0).collect();
        let labels: Vec<bool> = raw
            .iter()
            .enumerate()
            .map(|(index, value)| ((index * 7919) % 1000) as f64 / 1000.0 < 1.0 / (1.0 + (-value).exp()))
            .collect();
        let choice = choose_calibration(&raw, &labels);
        assert_eq!(choice.method, "platt", "{choice:?}");
        assert!(choice.calibration.isotonic.is_none());
    }
}
