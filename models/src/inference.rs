//! Scoring a feature vector with a validated artifact, with exact per-feature contributions.
//!
//! Contributions add up to the raw score: `raw = bias + Σ contributions`. For the logistic model a contribution
//! is weight × standardised value (log-odds); for trees it is the path (Saabas) contribution: along each tree's
//! path, the change in node value at a split is credited to the split's feature — averaged over trees for a forest
//! (misuse shares), summed over trees for boosting (log-odds).

use crate::artifact::{BandThresholds, Calibration, FlatTree, IsotonicCalibration, ModelArtifact, ModelParams};
use crate::features::{FeatureVector, FEATURE_COUNT};

/// The operator-facing band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Band {
    /// Most likely genuine or ordinary.
    Low,
    /// Signs of misuse.
    Elevated,
    /// Strong signs of deliberate misuse.
    High,
}

impl Band {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Low => "low",
            Band::Elevated => "elevated",
            Band::High => "high",
        }
    }
}

/// A model's answer for one contact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The calibrated likelihood of misuse, 0..1.
    pub likelihood: f64,
    /// The uncalibrated score the contributions add up to.
    pub raw: f64,
    /// The raw score of a contact with no feature evidence (intercept; mean root value for a forest; base score
    /// plus the root values for boosting).
    pub bias: f64,
    /// Per-feature contributions to `raw`.
    pub contributions: FeatureVector,
    /// The band of `likelihood`.
    pub band: Band,
}

/// A loaded, validated model ready to score.
#[derive(Debug, Clone)]
pub struct Model {
    artifact: ModelArtifact,
    tree_bias: f64,
}

fn logistic(value: f64) -> f64 {
    1.0 / (1.0 + (-value).exp())
}

impl Model {
    /// Wraps a validated artifact (see [`ModelArtifact::from_json`]).
    pub fn new(artifact: ModelArtifact) -> Self {
        let tree_bias = match &artifact.params {
            ModelParams::Forest(forest) => {
                forest.trees.iter().map(|tree| tree.value[0]).sum::<f64>() / forest.trees.len() as f64
            }
            ModelParams::Boosted(boosted) => {
                boosted.base_score + boosted.trees.iter().map(|tree| tree.value[0]).sum::<f64>()
            }
            ModelParams::Logistic(_) => 0.0,
        };
        Model { artifact, tree_bias }
    }

    /// The artifact behind the model.
    pub fn artifact(&self) -> &ModelArtifact {
        &self.artifact
    }

    /// The model version string.
    pub fn version(&self) -> &str {
        &self.artifact.model_version
    }

    /// Scores one feature vector. Allocation-free.
    pub fn score(&self, features: &FeatureVector) -> Score {
        let mut contributions = [0.0; FEATURE_COUNT];
        let (raw, bias) = match &self.artifact.params {
            ModelParams::Logistic(params) => {
                let mut raw = params.intercept;
                for index in 0..FEATURE_COUNT {
                    let standardised = (features[index] - params.means[index]) / params.scales[index];
                    contributions[index] = params.weights[index] * standardised;
                    raw += contributions[index];
                }
                (raw, params.intercept)
            }
            ModelParams::Forest(forest) => {
                let tree_count = forest.trees.len() as f64;
                let mut leaf_sum = 0.0;
                for tree in &forest.trees {
                    leaf_sum += walk_with_contributions(tree, features, &mut contributions);
                }
                for contribution in contributions.iter_mut() {
                    *contribution /= tree_count;
                }
                (leaf_sum / tree_count, self.tree_bias)
            }
            ModelParams::Boosted(boosted) => {
                let mut raw = boosted.base_score;
                for tree in &boosted.trees {
                    raw += walk_with_contributions(tree, features, &mut contributions);
                }
                (raw, self.tree_bias)
            }
        };
        let likelihood = calibrate(&self.artifact.calibration, raw);
        Score { likelihood, raw, bias, contributions, band: band_of(&self.artifact.bands, likelihood) }
    }
}

/// Walks one tree, adding each split's change in node value to its feature; returns the leaf value.
fn walk_with_contributions(tree: &FlatTree, features: &FeatureVector, contributions: &mut FeatureVector) -> f64 {
    let mut node = 0usize;
    loop {
        let left = tree.left[node];
        if left == FlatTree::LEAF {
            return tree.value[node];
        }
        let feature = usize::from(tree.feature[node]);
        let next = if features[feature] <= tree.threshold[node] { left } else { tree.right[node] } as usize;
        contributions[feature] += tree.value[next] - tree.value[node];
        node = next;
    }
}

/// Applies the calibration to a raw score: the isotonic map when there is one, Platt scaling otherwise.
pub fn calibrate(calibration: &Calibration, raw: f64) -> f64 {
    match &calibration.isotonic {
        Some(isotonic) => interpolate_isotonic(isotonic, raw),
        None => platt(calibration, raw),
    }
}

/// Platt scaling alone, ignoring any isotonic map.
pub fn platt(calibration: &Calibration, raw: f64) -> f64 {
    logistic(calibration.slope * raw + calibration.offset)
}

/// The isotonic map at `raw`: linear between knots, constant beyond the ends. Allocation-free binary search.
pub fn interpolate_isotonic(isotonic: &IsotonicCalibration, raw: f64) -> f64 {
    let (knots, values) = (&isotonic.raw, &isotonic.likelihood);
    let upper = knots.partition_point(|knot| *knot < raw);
    if upper == 0 {
        return values[0];
    }
    if upper == knots.len() {
        return values[knots.len() - 1];
    }
    let (x0, x1, y0, y1) = (knots[upper - 1], knots[upper], values[upper - 1], values[upper]);
    y0 + (y1 - y0) * (raw - x0) / (x1 - x0)
}

/// The band of a calibrated likelihood.
pub fn band_of(bands: &BandThresholds, likelihood: f64) -> Band {
    if likelihood >= bands.high {
        Band::High
    } else if likelihood >= bands.elevated {
        Band::Elevated
    } else {
        Band::Low
    }
}

#[cfg(test)]
mod tests;
