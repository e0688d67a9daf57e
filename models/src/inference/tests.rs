use proptest::prelude::*;

use super::*;
use crate::artifact::{ForestParams, LogisticParams, SchemaInfo, FORMAT_VERSION};

fn artifact(params: ModelParams) -> ModelArtifact {
    ModelArtifact {
        format_version: FORMAT_VERSION,
        model_version: "test".into(),
        schema: SchemaInfo::current(),
        params,
        calibration: Calibration { slope: 1.0, offset: 0.0 },
        bands: BandThresholds { elevated: 0.5, high: 0.9, elevated_target_precision: 0.5, high_target_precision: 0.9 },
        card: serde_json::Value::Null,
    }
}

fn logistic_model(weights: Vec<f64>) -> Model {
    let params =
        LogisticParams { means: vec![0.5; FEATURE_COUNT], scales: vec![2.0; FEATURE_COUNT], weights, intercept: -1.0 };
    let artifact = artifact(ModelParams::Logistic(params));
    artifact.validate().unwrap();
    Model::new(artifact)
}

/// A depth-2 tree on features 0 and 1 with non-trivial node values.
fn small_tree(threshold: f64) -> FlatTree {
    FlatTree {
        feature: vec![0, 1, 0, 0, 0],
        threshold: vec![threshold, 0.5, 0.0, 0.0, 0.0],
        left: vec![1, 3, FlatTree::LEAF, FlatTree::LEAF, FlatTree::LEAF],
        right: vec![2, 4, FlatTree::LEAF, FlatTree::LEAF, FlatTree::LEAF],
        value: vec![0.3, 0.2, 0.6, 0.05, 0.4],
    }
}

proptest! {
    #[test]
    fn logistic_contributions_add_up_to_the_raw_score(
        weights in proptest::collection::vec(-3.0f64..3.0, FEATURE_COUNT),
        values in proptest::collection::vec(-5.0f64..5.0, FEATURE_COUNT),
    ) {
        let model = logistic_model(weights);
        let features: FeatureVector = values.try_into().unwrap();
        let score = model.score(&features);
        let sum: f64 = score.bias + score.contributions.iter().sum::<f64>();
        prop_assert!((sum - score.raw).abs() < 1e-9);
        prop_assert!((score.likelihood - 1.0 / (1.0 + (-score.raw).exp())).abs() < 1e-12);
    }

    #[test]
    fn forest_contributions_add_up_to_the_raw_score(
        values in proptest::collection::vec(-1.0f64..2.0, FEATURE_COUNT),
        threshold in 0.0f64..1.0,
    ) {
        let forest = ForestParams { trees: vec![small_tree(threshold), small_tree(0.5)] };
        let artifact = artifact(ModelParams::Forest(forest));
        artifact.validate().unwrap();
        let model = Model::new(artifact);
        let features: FeatureVector = values.try_into().unwrap();
        let score = model.score(&features);
        let sum: f64 = score.bias + score.contributions.iter().sum::<f64>();
        prop_assert!((sum - score.raw).abs() < 1e-12, "{sum} vs {}", score.raw);
        prop_assert!(score.contributions[2..].iter().all(|value| *value == 0.0));
    }
}

#[test]
fn bands_follow_the_thresholds() {
    let bands = BandThresholds { elevated: 0.3, high: 0.8, elevated_target_precision: 0.5, high_target_precision: 0.9 };
    assert_eq!(band_of(&bands, 0.1), Band::Low);
    assert_eq!(band_of(&bands, 0.3), Band::Elevated);
    assert_eq!(band_of(&bands, 0.95), Band::High);
}

#[test]
fn a_broken_forest_is_refused() {
    let mut tree = small_tree(0.5);
    tree.left[1] = 0; // a cycle back to the root
    assert!(artifact(ModelParams::Forest(ForestParams { trees: vec![tree] })).validate().is_err());
    let mut wrong_schema = artifact(ModelParams::Forest(ForestParams { trees: vec![small_tree(0.5)] }));
    wrong_schema.schema.fingerprint = "0000".into();
    assert!(matches!(wrong_schema.validate(), Err(crate::ArtifactError::SchemaMismatch { .. })));
}
