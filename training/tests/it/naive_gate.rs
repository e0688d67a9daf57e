//! The naive-rule gate of `fit`: a model that does not beat "share of this caller's past labelled contacts that
//! were misuse" on the test range is refused unless explicitly allowed, and the card records the comparison.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saring_models::features::{feature_index, FEATURE_COUNT};
use saring_models::{Channel, Disposition};
use saring_training::fit::{fit, FitOptions};
use saring_training::replay::{Replay, ReplayRow};

/// Labelled rows, 40% misuse. `informative_features`: the caller's misuse-share feature separates the classes
/// (otherwise every feature is noise, so the learner has nothing to learn from). `naive_knows`: the naive rule is
/// nearly perfect (otherwise it is noise).
fn rows(informative_features: bool, naive_knows: bool) -> Replay {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let share = feature_index("caller_misuse_share_30d").unwrap();
    let rows = (0..3000)
        .map(|index| {
            let misuse = rng.random_bool(0.4);
            let mut features = [0.0; FEATURE_COUNT];
            for value in features.iter_mut() {
                *value = rng.random::<f64>();
            }
            if informative_features {
                features[share] = if misuse { rng.random_range(0.5..1.0) } else { rng.random_range(0.0..0.5) };
            }
            // Nearly perfect: 3% of rows get the other class's range.
            let naive = if naive_knows {
                let flip = rng.random_bool(0.03);
                if misuse != flip {
                    rng.random_range(0.5..1.0)
                } else {
                    rng.random_range(0.0..0.5)
                }
            } else {
                rng.random::<f64>()
            };
            ReplayRow {
                contact_id: format!("c{index}"),
                at_ms: 1_770_000_000_000 + index * 60_000,
                region: "dki.jakarta".into(),
                channel: Channel::Voice,
                features,
                disposition: Some(if misuse { Disposition::Prank } else { Disposition::NonEmergency }),
                first_time_caller: false,
                naive_score: naive,
                naive_recent: naive * 0.9,
            }
        })
        .collect();
    Replay { rows, ..Replay::default() }
}

fn options(allow_worse_than_naive: bool) -> FitOptions {
    FitOptions {
        learners: vec!["logistic".into()],
        data_fingerprint: "00".repeat(32),
        data_source: "synthetic rows".into(),
        allow_worse_than_naive,
        ..FitOptions::default()
    }
}

#[test]
fn a_model_worse_than_a_near_perfect_naive_rule_is_refused() {
    let error = match fit(&rows(false, true), &options(false)) {
        Ok(_) => panic!("a model with no information must not beat a near-perfect naive rule"),
        Err(error) => {
            assert_eq!(saring_training::exit::code(&error), 3, "saring-train exits 3 for a refused model");
            error.to_string()
        }
    };
    assert!(error.contains("refusing to write the model"), "{error}");
    assert!(error.contains("does not beat the naive rule"), "{error}");
    assert!(error.contains("--allow-worse-than-naive"), "{error}");
}

#[test]
fn the_override_writes_it_and_the_card_says_so() {
    let output = fit(&rows(false, true), &options(true)).expect("overridden");
    let naive = &output.artifact.card["naive_rule"];
    assert_eq!(naive["beats_naive"], false);
    assert_eq!(naive["overridden"], true);
    let margin = naive["margin"].as_f64().unwrap();
    let (model, all_time, recent) = (
        naive["model_test_roc_auc"].as_f64().unwrap(),
        naive["test_roc_auc_all_time"].as_f64().unwrap(),
        naive["test_roc_auc_recent_30d"].as_f64().unwrap(),
    );
    assert!(all_time > 0.9 && model < 0.7, "naive {all_time}, model {model}");
    assert!((margin - (model - all_time.max(recent))).abs() < 1e-12);
    assert!(margin < 0.0);
}

#[test]
fn a_model_that_beats_the_naive_rule_is_written() {
    let output = fit(&rows(true, false), &options(false)).expect("a better model is accepted");
    let naive = &output.artifact.card["naive_rule"];
    assert_eq!(naive["beats_naive"], true);
    assert_eq!(naive["overridden"], false);
    assert!(naive["margin"].as_f64().unwrap() > 0.2, "{naive}");
    assert!(naive["test_roc_auc_all_time"].as_f64().unwrap() < 0.6);
    assert_eq!(naive["gated_on"], "all_time");
}
