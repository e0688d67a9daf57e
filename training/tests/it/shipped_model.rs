//! The shipped model judged on traffic it has never seen: other seeds, and a caller population with other
//! regional mixes than the one it was trained on. It must beat the naive rule "share of this caller's past
//! labelled contacts that were misuse" and keep genuine emergencies out of HIGH.

use saring_models::{Model, ModelArtifact};
use saring_training::evaluate::{evaluate, Evaluation};
use saring_training::replay::replay;
use saring_training::simulate::{parse_region_profiles, simulate, SimulationConfig};

const SHIPPED: &str = include_str!("../../../models/artifacts/default.json");

fn evaluate_on(config: &SimulationConfig) -> Evaluation {
    let model = Model::new(ModelArtifact::from_json(SHIPPED).expect("the shipped model is valid"));
    let (evaluation, _) = evaluate(&model, &replay(&simulate(config)).rows);
    eprintln!("seed {}: {}", config.seed, evaluation.to_text());
    evaluation
}

fn assert_useful(evaluation: &Evaluation) {
    assert!(evaluation.labelled > 1000, "enough labelled contacts: {}", evaluation.labelled);
    assert!(
        evaluation.roc_auc > evaluation.naive_roc_auc,
        "model ROC-AUC {:.4} must beat the naive rule's {:.4}",
        evaluation.roc_auc,
        evaluation.naive_roc_auc
    );
    let genuine = &evaluation.genuine_emergencies_by_band;
    let total = genuine.low + genuine.elevated + genuine.high;
    assert!((genuine.high as f64) <= 0.01 * total as f64, "genuine emergencies in HIGH: {} of {total}", genuine.high);
}

#[test]
fn beats_the_naive_rule_on_another_seed() {
    let config = SimulationConfig { seed: 2026, days: 21, callers: 8000, ..SimulationConfig::default() };
    assert_useful(&evaluate_on(&config));
}

#[test]
fn beats_the_naive_rule_on_a_population_it_was_not_trained_on() {
    // Other regions and mixes: a prank-saturated district and a quiet one, in time zones the default mix weights
    // differently.
    let regions = parse_region_profiles("aceh.banda=6:1,maluku.ambon=0.2:2,kaltim.samarinda=1.2:1").unwrap();
    let config = SimulationConfig { seed: 77, days: 21, callers: 8000, regions, ..SimulationConfig::default() };
    assert_useful(&evaluate_on(&config));
}
