//! The model artifact: one JSON document holding everything needed to score — parameters, calibration, band
//! thresholds — and everything needed to trust it — schema fingerprint, metrics, data fingerprint and time range.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::features::{schema_fingerprint, FEATURES, FEATURE_COUNT};

/// The artifact format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Why an artifact cannot be used.
#[derive(Debug, Error)]
pub enum ArtifactError {
    /// Not valid JSON, or not shaped like an artifact.
    #[error("the artifact is not a valid saring model: {0}")]
    Parse(#[from] serde_json::Error),
    /// Written by an incompatible version of saring.
    #[error("artifact format version {found} is not supported (this build reads version {expected})")]
    FormatVersion {
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// Trained on another feature schema.
    #[error("the model was trained on feature schema {found}, but this build computes schema {expected}; retrain it with this version of saring-train")]
    SchemaMismatch {
        /// The fingerprint in the file.
        found: String,
        /// The fingerprint this build computes.
        expected: String,
    },
    /// Internally inconsistent parameters.
    #[error("the artifact's parameters are inconsistent: {0}")]
    Invalid(String),
}

/// A linear model on standardised features: `raw = intercept + Σ weight_i (x_i - mean_i) / scale_i` (log-odds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticParams {
    /// Per-feature means used for standardisation.
    pub means: Vec<f64>,
    /// Per-feature scales (standard deviations, 1 for constant features).
    pub scales: Vec<f64>,
    /// Per-feature weights on the standardised values.
    pub weights: Vec<f64>,
    /// The intercept.
    pub intercept: f64,
}

/// One decision tree as flat arrays. Node 0 is the root; a node is a leaf when `left[node] == LEAF`. A sample
/// goes left when `x[feature] <= threshold`. `value` is the share of (weighted) misuse among training samples
/// reaching the node, for every node, which makes path contributions exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlatTree {
    /// Split feature per node (unused for leaves).
    pub feature: Vec<u16>,
    /// Split threshold per node (unused for leaves).
    pub threshold: Vec<f64>,
    /// Left child per node, or [`FlatTree::LEAF`].
    pub left: Vec<u32>,
    /// Right child per node, or [`FlatTree::LEAF`].
    pub right: Vec<u32>,
    /// Misuse share per node.
    pub value: Vec<f64>,
}

impl FlatTree {
    /// The child index marking a leaf.
    pub const LEAF: u32 = u32::MAX;
}

/// A forest of trees: `raw = mean over trees of the leaf value` (a misuse share, 0..1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    /// The trees.
    pub trees: Vec<FlatTree>,
}

/// Gradient-boosted trees: `raw = base_score + Σ over trees of the leaf value` (log-odds of misuse; the learning
/// rate is already folded into the values). Every internal node holds the hessian-weighted mean of its children's
/// values, so path contributions along a tree add up to its leaf value minus its root value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoostedParams {
    /// The starting log-odds (the training range's misuse rate).
    pub base_score: f64,
    /// The trees, in boosting order.
    pub trees: Vec<FlatTree>,
}

/// The scoring function's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelParams {
    /// Logistic regression (trained with linfa).
    Logistic(LogisticParams),
    /// Random forest (trained with smartcore, leaf values refitted to misuse shares).
    Forest(ForestParams),
    /// Gradient-boosted trees (trained by saring-train's own histogram booster).
    Boosted(BoostedParams),
}

/// Calibration of the raw score, fitted on a validation slice.
///
/// Platt scaling, `likelihood = 1 / (1 + exp(-(slope * raw + offset)))`, is always present. When `isotonic` is
/// present it supersedes Platt (builds that predate it ignore the field and fall back to the Platt curve, which is
/// always fitted on the same slice, rather than failing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Slope on the raw score.
    pub slope: f64,
    /// Offset.
    pub offset: f64,
    /// An isotonic (monotone, piecewise-linear) map from raw score to likelihood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isotonic: Option<IsotonicCalibration>,
}

impl Calibration {
    /// Platt scaling alone.
    pub fn platt(slope: f64, offset: f64) -> Self {
        Calibration { slope, offset, isotonic: None }
    }
}

/// A non-decreasing piecewise-linear map: `raw[i]` maps to `likelihood[i]`, linear in between, constant beyond the
/// ends. Knots come from pool-adjacent-violators blocks (each block's mean raw score and misuse share).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsotonicCalibration {
    /// Knot positions on the raw score, strictly increasing.
    pub raw: Vec<f64>,
    /// Likelihood at each knot, non-decreasing, within 0..1.
    pub likelihood: Vec<f64>,
}

/// Band thresholds on the calibrated likelihood, chosen at training time for stated precisions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BandThresholds {
    /// Likelihood at or above which a contact is ELEVATED.
    pub elevated: f64,
    /// Likelihood at or above which a contact is HIGH.
    pub high: f64,
    /// The precision (share of misuse) targeted for ELEVATED on validation data.
    pub elevated_target_precision: f64,
    /// The precision targeted for HIGH on validation data.
    pub high_target_precision: f64,
}

/// The feature schema the model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaInfo {
    /// [`crate::features::schema_fingerprint`] at training time.
    pub fingerprint: String,
    /// Feature names in order.
    pub names: Vec<String>,
}

impl SchemaInfo {
    /// The schema this build computes.
    pub fn current() -> Self {
        SchemaInfo {
            fingerprint: schema_fingerprint(),
            names: FEATURES.iter().map(|feature| feature.name.to_owned()).collect(),
        }
    }
}

/// A complete model artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArtifact {
    /// [`FORMAT_VERSION`] at writing time.
    pub format_version: u32,
    /// A human-readable, unique version, e.g. `forest-20260301-1a2b3c4d`.
    pub model_version: String,
    /// The feature schema.
    pub schema: SchemaInfo,
    /// The scoring parameters.
    pub params: ModelParams,
    /// Calibration of the raw score to a likelihood.
    pub calibration: Calibration,
    /// Band thresholds.
    pub bands: BandThresholds,
    /// Training metadata and metrics (the model card), kept as free-form JSON so the card can grow.
    pub card: serde_json::Value,
}

impl ModelArtifact {
    /// Parses and validates an artifact from its JSON text.
    pub fn from_json(text: &str) -> Result<Self, ArtifactError> {
        let artifact: ModelArtifact = serde_json::from_str(text)?;
        artifact.validate()?;
        Ok(artifact)
    }

    /// Checks the format version, the schema fingerprint and the parameters' shapes.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        if self.format_version != FORMAT_VERSION {
            return Err(ArtifactError::FormatVersion { found: self.format_version, expected: FORMAT_VERSION });
        }
        let expected = schema_fingerprint();
        if self.schema.fingerprint != expected {
            return Err(ArtifactError::SchemaMismatch { found: self.schema.fingerprint.clone(), expected });
        }
        let invalid = |message: String| Err(ArtifactError::Invalid(message));
        if !(self.calibration.slope.is_finite() && self.calibration.offset.is_finite()) {
            return invalid("calibration is not finite".into());
        }
        if let Some(isotonic) = &self.calibration.isotonic {
            validate_isotonic(isotonic)?;
        }
        let bands = &self.bands;
        if !(0.0..=1.0).contains(&bands.elevated) || !(0.0..=1.0).contains(&bands.high) || bands.elevated > bands.high {
            return invalid(format!(
                "band thresholds {} / {} are not 0 <= elevated <= high <= 1",
                bands.elevated, bands.high
            ));
        }
        match &self.params {
            ModelParams::Logistic(params) => validate_logistic(params),
            ModelParams::Forest(params) => validate_trees(&params.trees),
            ModelParams::Boosted(params) => {
                if !params.base_score.is_finite() {
                    return invalid("the base score is not finite".into());
                }
                validate_trees(&params.trees)
            }
        }
    }

    /// Serialises the artifact as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("an artifact always serialises")
    }
}

fn validate_logistic(params: &LogisticParams) -> Result<(), ArtifactError> {
    for (name, values) in [("means", &params.means), ("scales", &params.scales), ("weights", &params.weights)] {
        if values.len() != FEATURE_COUNT {
            return Err(ArtifactError::Invalid(format!(
                "{name} has {} values, expected {FEATURE_COUNT}",
                values.len()
            )));
        }
        if values.iter().any(|value| !value.is_finite()) {
            return Err(ArtifactError::Invalid(format!("{name} holds a non-finite value")));
        }
    }
    if params.scales.iter().any(|scale| *scale <= 0.0) || !params.intercept.is_finite() {
        return Err(ArtifactError::Invalid("scales must be positive and the intercept finite".into()));
    }
    Ok(())
}

fn validate_isotonic(isotonic: &IsotonicCalibration) -> Result<(), ArtifactError> {
    let invalid = |message: &str| Err(ArtifactError::Invalid(format!("isotonic calibration: {message}")));
    let (raw, likelihood) = (&isotonic.raw, &isotonic.likelihood);
    if raw.is_empty() || raw.len() != likelihood.len() {
        return invalid("no knots, or knots and likelihoods of different lengths");
    }
    if raw.iter().any(|value| !value.is_finite()) || likelihood.iter().any(|value| !(0.0..=1.0).contains(value)) {
        return invalid("a knot is not finite or a likelihood is outside 0..1");
    }
    if raw.windows(2).any(|pair| pair[0] >= pair[1]) || likelihood.windows(2).any(|pair| pair[0] > pair[1]) {
        return invalid("knots must increase and likelihoods must not decrease");
    }
    Ok(())
}

fn validate_trees(trees: &[FlatTree]) -> Result<(), ArtifactError> {
    if trees.is_empty() {
        return Err(ArtifactError::Invalid("the model has no trees".into()));
    }
    for (tree_index, tree) in trees.iter().enumerate() {
        let nodes = tree.value.len();
        let invalid = |message: &str| Err(ArtifactError::Invalid(format!("tree {tree_index}: {message}")));
        if nodes == 0
            || tree.feature.len() != nodes
            || tree.threshold.len() != nodes
            || tree.left.len() != nodes
            || tree.right.len() != nodes
        {
            return invalid("arrays of different lengths or no nodes");
        }
        for node in 0..nodes {
            if !tree.value[node].is_finite() {
                return invalid("a node value is not finite");
            }
            let (left, right) = (tree.left[node], tree.right[node]);
            if (left == FlatTree::LEAF) != (right == FlatTree::LEAF) {
                return invalid("a node has exactly one child");
            }
            if left == FlatTree::LEAF {
                continue;
            }
            // Children after their parent guarantees every walk ends.
            let in_range = |child: u32| (child as usize) > node && (child as usize) < nodes;
            if !in_range(left) || !in_range(right) {
                return invalid("a child index is out of order or out of range");
            }
            if usize::from(tree.feature[node]) >= FEATURE_COUNT || tree.threshold[node].is_nan() {
                return invalid("a split uses an unknown feature or a NaN threshold");
            }
        }
    }
    Ok(())
}
