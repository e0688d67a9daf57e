use proptest::prelude::*;

use super::*;
use crate::artifact::{BoostedParams, ForestParams, LogisticParams, SchemaInfo, FORMAT_VERSION};

fn artifact(params: ModelParams) -> ModelArtifact {
    ModelArtifact {
        format_version: FORMAT_VERSION,
        model_version: "test".into(),
        schema: SchemaInfo::current(),
        params,
        calibration: Calibration::platt(1.0, 0.0),
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

    #[test]
    fn boosted_contributions_add_up_to_the_raw_score(
        values in proptest::collection::vec(-1.0f64..2.0, FEATURE_COUNT),
        threshold in 0.0f64..1.0,
        base_score in -2.0f64..2.0,
        scale in -3.0f64..3.0,
    ) {
        // Log-odds trees: shift and scale the share-valued tree so values are signed.
        let mut tree = small_tree(threshold);
        for value in tree.value.iter_mut() {
            *value = scale * (*value - 0.3);
        }
        let mut deeper = small_tree(0.25);
        deeper.feature = vec![5, 9, 0, 0, 0];
        let boosted = BoostedParams { base_score, trees: vec![tree.clone(), deeper, tree] };
        let artifact = artifact(ModelParams::Boosted(boosted.clone()));
        artifact.validate().unwrap();
        let model = Model::new(artifact);
        let features: FeatureVector = values.try_into().unwrap();
        let score = model.score(&features);
        let sum: f64 = score.bias + score.contributions.iter().sum::<f64>();
        prop_assert!((sum - score.raw).abs() < 1e-9, "{sum} vs {}", score.raw);
        // raw is the base score plus one leaf per tree, found by an independent walk.
        let leaf = |tree: &FlatTree| {
            let mut node = 0usize;
            while tree.left[node] != FlatTree::LEAF {
                let go_left = features[usize::from(tree.feature[node])] <= tree.threshold[node];
                node = if go_left { tree.left[node] } else { tree.right[node] } as usize;
            }
            tree.value[node]
        };
        let expected = base_score + boosted.trees.iter().map(leaf).sum::<f64>();
        prop_assert!((expected - score.raw).abs() < 1e-12);
        prop_assert!((score.likelihood - 1.0 / (1.0 + (-score.raw).exp())).abs() < 1e-12);
    }

    #[test]
    fn the_isotonic_map_is_monotone_and_stays_within_its_knots(
        raw_a in -10.0f64..10.0,
        raw_b in -10.0f64..10.0,
    ) {
        let isotonic = IsotonicCalibration { raw: vec![-2.0, 0.0, 1.0, 3.0], likelihood: vec![0.05, 0.2, 0.2, 0.9] };
        let (low, high) = if raw_a <= raw_b { (raw_a, raw_b) } else { (raw_b, raw_a) };
        let (at_low, at_high) = (interpolate_isotonic(&isotonic, low), interpolate_isotonic(&isotonic, high));
        prop_assert!(at_low <= at_high);
        prop_assert!((0.05..=0.9).contains(&at_low) && (0.05..=0.9).contains(&at_high));
    }
}

#[test]
fn isotonic_calibration_interpolates_between_knots_and_supersedes_platt() {
    let isotonic = IsotonicCalibration { raw: vec![-2.0, 0.0, 2.0], likelihood: vec![0.1, 0.3, 0.7] };
    assert_eq!(interpolate_isotonic(&isotonic, -5.0), 0.1);
    assert_eq!(interpolate_isotonic(&isotonic, 0.0), 0.3);
    assert!((interpolate_isotonic(&isotonic, 1.0) - 0.5).abs() < 1e-12);
    assert_eq!(interpolate_isotonic(&isotonic, 9.0), 0.7);
    let calibration = Calibration { slope: 1.0, offset: 0.0, isotonic: Some(isotonic) };
    assert!((calibrate(&calibration, 1.0) - 0.5).abs() < 1e-12);
    assert!((platt(&calibration, 0.0) - 0.5).abs() < 1e-12);
    let mut broken = artifact(ModelParams::Forest(ForestParams { trees: vec![small_tree(0.5)] }));
    broken.calibration.isotonic = Some(IsotonicCalibration { raw: vec![0.0, 0.0], likelihood: vec![0.2, 0.3] });
    assert!(broken.validate().is_err(), "knots must strictly increase");
}

#[test]
fn an_artifact_without_isotonic_calibration_still_loads() {
    // Artifacts written before isotonic calibration existed have only slope and offset.
    let shipped = include_str!("../../artifacts/default.json");
    let artifact = ModelArtifact::from_json(shipped).expect("the shipped artifact loads");
    let json = serde_json::to_value(&artifact).unwrap();
    let mut value = json.clone();
    value["calibration"] = serde_json::json!({ "slope": 2.0, "offset": -1.0 });
    let old: ModelArtifact = serde_json::from_value(value).unwrap();
    assert_eq!(old.calibration, Calibration::platt(2.0, -1.0));
    old.validate().unwrap();
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
