//! The learners. Each trains with a library and exports into saring's own artifact parameters, so serving
//! never depends on the training library.
//!
//! Class weighting: neither linfa-logistic nor smartcore's forest takes sample weights, so the minority class is
//! replicated to balance the classes (an integer weight). Calibration on validation data undoes the shift this
//! causes in the raw scores.

use anyhow::{anyhow, Context};
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use saring_models::artifact::{FlatTree, ForestParams, LogisticParams, ModelParams};
use saring_models::features::{FeatureVector, FEATURE_COUNT};
use smartcore::ensemble::random_forest_classifier::{RandomForestClassifier, RandomForestClassifierParameters};
use smartcore::linalg::basic::matrix::DenseMatrix;

/// Rows and labels to train on.
pub struct TrainingSet<'a> {
    /// Feature vectors.
    pub features: &'a [FeatureVector],
    /// Misuse labels.
    pub labels: &'a [bool],
}

impl TrainingSet<'_> {
    /// The integer weight for the minority class and which class it is (true = misuse).
    fn balancing(&self) -> (usize, bool) {
        let positives = self.labels.iter().filter(|label| **label).count().max(1);
        let negatives = (self.labels.len() - positives).max(1);
        if positives < negatives {
            ((negatives as f64 / positives as f64).round() as usize, true)
        } else {
            ((positives as f64 / negatives as f64).round() as usize, false)
        }
    }

    /// Row indices with the minority class repeated by its weight.
    fn balanced_indices(&self) -> Vec<usize> {
        let (weight, minority) = self.balancing();
        let mut indices = Vec::with_capacity(self.labels.len() * 2);
        for (index, label) in self.labels.iter().enumerate() {
            let copies = if *label == minority { weight.max(1) } else { 1 };
            indices.extend(std::iter::repeat_n(index, copies));
        }
        indices
    }
}

/// Standardisation fitted on the training rows.
fn standardisation(features: &[FeatureVector]) -> (Vec<f64>, Vec<f64>) {
    let count = features.len().max(1) as f64;
    let mut means = vec![0.0; FEATURE_COUNT];
    let mut scales = vec![0.0; FEATURE_COUNT];
    for row in features {
        for (mean, value) in means.iter_mut().zip(row) {
            *mean += value / count;
        }
    }
    for row in features {
        for index in 0..FEATURE_COUNT {
            scales[index] += (row[index] - means[index]).powi(2) / count;
        }
    }
    for scale in scales.iter_mut() {
        *scale = if *scale > 1e-12 { scale.sqrt() } else { 1.0 };
    }
    (means, scales)
}

/// Hyper-parameters of the logistic regression.
#[derive(Debug, Clone, Copy)]
pub struct LogisticSettings {
    /// L2 penalty.
    pub alpha: f64,
    /// Maximum L-BFGS iterations.
    pub max_iterations: u64,
}

/// Trains an L2 logistic regression with linfa on standardised, class-balanced rows.
pub fn train_logistic(set: &TrainingSet<'_>, settings: LogisticSettings) -> anyhow::Result<ModelParams> {
    let (means, scales) = standardisation(set.features);
    let indices = set.balanced_indices();
    let mut matrix = Array2::<f64>::zeros((indices.len(), FEATURE_COUNT));
    for (row, index) in indices.iter().enumerate() {
        for column in 0..FEATURE_COUNT {
            matrix[[row, column]] = (set.features[*index][column] - means[column]) / scales[column];
        }
    }
    let targets: Array1<bool> = indices.iter().map(|index| set.labels[*index]).collect();
    let dataset = Dataset::new(matrix, targets);
    let fitted = LogisticRegression::default()
        .alpha(settings.alpha)
        .max_iterations(settings.max_iterations)
        .fit(&dataset)
        .context("logistic regression did not converge")?;
    // linfa 0.8.1 orients the sigmoid towards its own idea of the "positive" class (issue #393): read it.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    Ok(ModelParams::Logistic(LogisticParams {
        means,
        scales,
        weights: fitted.params().iter().map(|weight| sign * weight).collect(),
        intercept: sign * fitted.intercept(),
    }))
}

/// Hyper-parameters of the random forest.
#[derive(Debug, Clone, Copy)]
pub struct ForestSettings {
    /// Number of trees.
    pub trees: u16,
    /// Maximum depth.
    pub max_depth: u16,
    /// Minimum samples in a leaf.
    pub min_samples_leaf: usize,
    /// Features tried per split.
    pub features_per_split: usize,
    /// Random seed.
    pub seed: u64,
}

/// Trains a random forest with smartcore on class-balanced rows, then exports its trees and refits every
/// node's value to the balanced misuse share of the training rows that reach it (smartcore's leaves hold only
/// a class, which cannot rank).
pub fn train_forest(set: &TrainingSet<'_>, settings: ForestSettings) -> anyhow::Result<ModelParams> {
    let indices = set.balanced_indices();
    let mut values = Vec::with_capacity(indices.len() * FEATURE_COUNT);
    for index in &indices {
        values.extend_from_slice(&set.features[*index]);
    }
    let matrix = DenseMatrix::new(indices.len(), FEATURE_COUNT, values, false).map_err(|error| anyhow!("{error}"))?;
    let targets: Vec<u32> = indices.iter().map(|index| u32::from(set.labels[*index])).collect();
    let parameters = RandomForestClassifierParameters::default()
        .with_n_trees(settings.trees)
        .with_max_depth(settings.max_depth)
        .with_min_samples_leaf(settings.min_samples_leaf)
        .with_m(settings.features_per_split)
        .with_seed(settings.seed);
    let forest = RandomForestClassifier::fit(&matrix, &targets, parameters).map_err(|error| anyhow!("{error}"))?;
    let mut trees = export_trees(&serde_json::to_value(&forest)?)?;
    let (weight, minority) = set.balancing();
    for tree in trees.iter_mut() {
        refit_node_values(tree, set, weight, minority);
    }
    Ok(ModelParams::Forest(ForestParams { trees }))
}

/// Reads smartcore's serialised trees (its fields are private; its serde form is the stable way in).
fn export_trees(forest: &serde_json::Value) -> anyhow::Result<Vec<FlatTree>> {
    let trees = forest["trees"].as_array().context("smartcore forest has no trees")?;
    trees
        .iter()
        .map(|tree| {
            let nodes = tree["nodes"].as_array().context("smartcore tree has no nodes")?;
            let mut flat = FlatTree {
                feature: Vec::with_capacity(nodes.len()),
                threshold: Vec::with_capacity(nodes.len()),
                left: Vec::with_capacity(nodes.len()),
                right: Vec::with_capacity(nodes.len()),
                value: vec![0.0; nodes.len()],
            };
            for node in nodes {
                let child = |key: &str| node[key].as_u64().map_or(FlatTree::LEAF, |index| index as u32);
                flat.feature.push(node["split_feature"].as_u64().unwrap_or(0) as u16);
                flat.threshold.push(node["split_value"].as_f64().unwrap_or(0.0));
                flat.left.push(child("true_child"));
                flat.right.push(child("false_child"));
            }
            Ok(flat)
        })
        .collect()
}

fn refit_node_values(tree: &mut FlatTree, set: &TrainingSet<'_>, weight: usize, minority: bool) {
    let mut positive = vec![0.0; tree.value.len()];
    let mut total = vec![0.0; tree.value.len()];
    for (features, label) in set.features.iter().zip(set.labels) {
        let sample_weight = if *label == minority { weight as f64 } else { 1.0 };
        let mut node = 0usize;
        loop {
            total[node] += sample_weight;
            if *label {
                positive[node] += sample_weight;
            }
            if tree.left[node] == FlatTree::LEAF {
                break;
            }
            let feature = usize::from(tree.feature[node]);
            node = if features[feature] <= tree.threshold[node] { tree.left[node] } else { tree.right[node] } as usize;
        }
    }
    for node in 0..tree.value.len() {
        // A light prior towards one half keeps nearly empty nodes from claiming certainty.
        tree.value[node] = (positive[node] + 0.5) / (total[node] + 1.0);
    }
}

/// Fits Platt scaling `p = sigmoid(slope * raw + offset)` by Newton's method with Platt's smoothed targets.
pub fn fit_platt(raw_scores: &[f64], labels: &[bool]) -> (f64, f64) {
    let positives = labels.iter().filter(|label| **label).count() as f64;
    let negatives = labels.len() as f64 - positives;
    let high_target = (positives + 1.0) / (positives + 2.0);
    let low_target = 1.0 / (negatives + 2.0);
    let (mut slope, mut offset) = (1.0, 0.0);
    for _ in 0..100 {
        let (mut gradient_slope, mut gradient_offset) = (0.0, 0.0);
        let (mut h11, mut h12, mut h22) = (1e-9, 0.0, 1e-9);
        for (raw, label) in raw_scores.iter().zip(labels) {
            let target = if *label { high_target } else { low_target };
            let probability = 1.0 / (1.0 + (-(slope * raw + offset)).exp());
            let error = probability - target;
            let curvature = probability * (1.0 - probability);
            gradient_slope += error * raw;
            gradient_offset += error;
            h11 += curvature * raw * raw;
            h12 += curvature * raw;
            h22 += curvature;
        }
        let determinant = h11 * h22 - h12 * h12;
        if determinant.abs() < 1e-12 {
            break;
        }
        let step_slope = (h22 * gradient_slope - h12 * gradient_offset) / determinant;
        let step_offset = (h11 * gradient_offset - h12 * gradient_slope) / determinant;
        slope -= step_slope;
        offset -= step_offset;
        if step_slope.abs() < 1e-10 && step_offset.abs() < 1e-10 {
            break;
        }
    }
    (slope, offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::roc_auc;
    use saring_models::artifact::{BandThresholds, Calibration, ModelArtifact, SchemaInfo, FORMAT_VERSION};
    use saring_models::Model;

    /// Separable data: misuse when feature 3 is high, with noise in feature 7.
    fn separable(count: usize) -> (Vec<FeatureVector>, Vec<bool>) {
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..count)
            .map(|index| {
                let label = index % 4 == 0;
                let mut row = [0.0; FEATURE_COUNT];
                row[3] = if label { 1.0 } else { 0.0 } + next() * 0.8;
                row[7] = next();
                (row, label)
            })
            .unzip()
    }

    fn model(params: ModelParams, slope: f64, offset: f64) -> Model {
        let artifact = ModelArtifact {
            format_version: FORMAT_VERSION,
            model_version: "t".into(),
            schema: SchemaInfo::current(),
            params,
            calibration: Calibration::platt(slope, offset),
            bands: BandThresholds {
                elevated: 0.5,
                high: 0.9,
                elevated_target_precision: 0.5,
                high_target_precision: 0.9,
            },
            card: serde_json::Value::Null,
        };
        artifact.validate().unwrap();
        Model::new(artifact)
    }

    /// One trained model of every learner kind, on small separable data.
    fn every_learner(features: &[FeatureVector], labels: &[bool]) -> Vec<ModelParams> {
        let set = TrainingSet { features, labels };
        let (validation_features, validation_labels) = separable(300);
        let validation = TrainingSet { features: &validation_features, labels: &validation_labels };
        let logistic = train_logistic(&set, LogisticSettings { alpha: 0.1, max_iterations: 100 }).unwrap();
        let forest = train_forest(
            &set,
            ForestSettings { trees: 10, max_depth: 4, min_samples_leaf: 2, features_per_split: 8, seed: 1 },
        )
        .unwrap();
        let boosted = crate::boosting::train_boosted(
            &set,
            &validation,
            crate::boosting::BoostingSettings {
                max_rounds: 40,
                learning_rate: 0.2,
                max_leaves: 8,
                max_depth: 4,
                min_samples_leaf: 5,
                min_child_hessian: 1e-3,
                l2: 1.0,
                max_bins: 32,
                early_stopping_rounds: 10,
            },
        )
        .unwrap();
        vec![logistic, forest, boosted]
    }

    #[test]
    fn every_learner_ranks_the_positive_class_high() {
        let (features, labels) = separable(800);
        let learners = every_learner(&features, &labels);
        assert!(matches!(learners[2], ModelParams::Boosted(_)));
        for params in learners {
            let model = model(params, 1.0, 0.0);
            let raw: Vec<f64> = features.iter().map(|row| model.score(row).raw).collect();
            let auc = roc_auc(&raw, &labels);
            assert!(auc > 0.95, "AUC of the misuse class must be high, got {auc}");
        }
    }

    #[test]
    fn every_learner_explains_its_raw_score_exactly() {
        let (features, labels) = separable(800);
        for params in every_learner(&features, &labels) {
            let model = model(params, 1.0, 0.0);
            let mut explained_something = false;
            for row in &features {
                let score = model.score(row);
                let sum = score.bias + score.contributions.iter().sum::<f64>();
                assert!((sum - score.raw).abs() < 1e-9, "bias + contributions {sum} != raw {}", score.raw);
                explained_something |= score.contributions[3].abs() > 1e-6;
            }
            // The informative feature carries weight, so the test would notice contributions stuck at zero.
            assert!(explained_something);
        }
    }

    #[test]
    fn platt_scaling_recovers_a_known_curve() {
        let raw: Vec<f64> = (0..2000).map(|index| (index as f64 / 2000.0) * 8.0 - 4.0).collect();
        // Deterministic labels whose frequency follows sigmoid(2 * raw - 1).
        let labels: Vec<bool> = raw
            .iter()
            .enumerate()
            .map(|(index, value)| {
                let probability = 1.0 / (1.0 + (-(2.0 * value - 1.0)).exp());
                ((index * 7919) % 1000) as f64 / 1000.0 < probability
            })
            .collect();
        let (slope, offset) = fit_platt(&raw, &labels);
        assert!((slope - 2.0).abs() < 0.3, "slope {slope}");
        assert!((offset + 1.0).abs() < 0.3, "offset {offset}");
    }
}
