//! `saring-train fit`: replay, time-based split, train candidates, choose on validation, calibrate, set bands,
//! report on the held-out test range, write one artifact.

use std::time::Instant;

use saring_models::artifact::{BandThresholds, Calibration, ModelArtifact, ModelParams, SchemaInfo, FORMAT_VERSION};
use saring_models::features::FeatureVector;
use saring_models::inference::calibrate;
use saring_models::Model;
use serde_json::json;
use time::OffsetDateTime;

use crate::evaluate::evaluate;
use crate::learners::{fit_platt, train_forest, train_logistic, ForestSettings, LogisticSettings, TrainingSet};
use crate::metrics::{pr_auc, roc_auc, threshold_for_precision};
use crate::replay::{Replay, ReplayRow};

/// Options of `fit`.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Precision targeted for HIGH on validation data.
    pub high_precision: f64,
    /// Precision targeted for ELEVATED on validation data.
    pub elevated_precision: f64,
    /// Seed for the forest.
    pub seed: u64,
    /// Fingerprint of the input data (e.g. SHA-256 of the event file).
    pub data_fingerprint: String,
    /// Where the data came from, for the card.
    pub data_source: String,
}

/// A learner with its hyper-parameters.
#[derive(Debug, Clone, Copy)]
enum Candidate {
    Logistic(LogisticSettings),
    Forest(ForestSettings),
}

impl Candidate {
    fn name(&self) -> String {
        match self {
            Candidate::Logistic(settings) => format!("logistic(alpha={})", settings.alpha),
            Candidate::Forest(settings) => {
                format!(
                    "forest(trees={}, depth={}, leaf={})",
                    settings.trees, settings.max_depth, settings.min_samples_leaf
                )
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Candidate::Logistic(_) => "logistic",
            Candidate::Forest(_) => "forest",
        }
    }

    fn train(&self, set: &TrainingSet<'_>) -> anyhow::Result<ModelParams> {
        match self {
            Candidate::Logistic(settings) => train_logistic(set, *settings),
            Candidate::Forest(settings) => train_forest(set, *settings),
        }
    }
}

fn candidates(seed: u64) -> Vec<Candidate> {
    let forest = |max_depth, min_samples_leaf| {
        Candidate::Forest(ForestSettings { trees: 60, max_depth, min_samples_leaf, features_per_split: 8, seed })
    };
    vec![
        Candidate::Logistic(LogisticSettings { alpha: 0.01, max_iterations: 200 }),
        Candidate::Logistic(LogisticSettings { alpha: 1.0, max_iterations: 200 }),
        forest(8, 20),
        forest(12, 10),
    ]
}

struct Split<'a> {
    train: Vec<&'a ReplayRow>,
    validation: Vec<&'a ReplayRow>,
    test: Vec<&'a ReplayRow>,
    validation_from_ms: i64,
    test_from_ms: i64,
}

/// Labelled rows split by time: the first 70% of labelled contacts train, the next 15% validate, the last 15%
/// test. Contacts at the same millisecond stay on one side.
fn split_by_time(rows: &[ReplayRow]) -> Split<'_> {
    let labelled: Vec<&ReplayRow> = rows.iter().filter(|row| row.label().is_some()).collect();
    let time_at = |share: f64| labelled.get((labelled.len() as f64 * share) as usize).map_or(i64::MAX, |row| row.at_ms);
    let (validation_from_ms, test_from_ms) = (time_at(0.70), time_at(0.85));
    let mut split = Split { train: vec![], validation: vec![], test: vec![], validation_from_ms, test_from_ms };
    for row in labelled {
        if row.at_ms < validation_from_ms {
            split.train.push(row);
        } else if row.at_ms < test_from_ms {
            split.validation.push(row);
        } else {
            split.test.push(row);
        }
    }
    split
}

fn columns(rows: &[&ReplayRow]) -> (Vec<FeatureVector>, Vec<bool>) {
    rows.iter().map(|row| (row.features, row.label().unwrap_or(false))).unzip()
}

fn iso(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|time| time.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn placeholder_artifact(params: ModelParams, calibration: Calibration, bands: BandThresholds) -> ModelArtifact {
    ModelArtifact {
        format_version: FORMAT_VERSION,
        model_version: String::new(),
        schema: SchemaInfo::current(),
        params,
        calibration,
        bands,
        card: serde_json::Value::Null,
    }
}

/// Trains, chooses, calibrates and packages a model from a replayed log.
pub fn fit(replay: &Replay, options: &FitOptions) -> anyhow::Result<ModelArtifact> {
    let split = split_by_time(&replay.rows);
    anyhow::ensure!(
        split.train.len() >= 100 && split.validation.len() >= 50 && split.test.len() >= 50,
        "too little labelled data: {} train / {} validation / {} test rows (need 100 / 50 / 50)",
        split.train.len(),
        split.validation.len(),
        split.test.len()
    );
    let (train_features, train_labels) = columns(&split.train);
    let (validation_features, validation_labels) = columns(&split.validation);
    anyhow::ensure!(
        train_labels.iter().any(|label| *label) && train_labels.iter().any(|label| !*label),
        "the training range needs both misuse and other labels"
    );
    let set = TrainingSet { features: &train_features, labels: &train_labels };
    let unit = Calibration { slope: 1.0, offset: 0.0 };
    let no_bands =
        BandThresholds { elevated: 1.0, high: 1.0, elevated_target_precision: 0.0, high_target_precision: 0.0 };

    let mut reports = Vec::new();
    let mut best: Option<(f64, Candidate, ModelParams)> = None;
    for candidate in candidates(options.seed) {
        let started = Instant::now();
        let params = candidate.train(&set)?;
        let fit_seconds = started.elapsed().as_secs_f64();
        let model = Model::new(placeholder_artifact(params.clone(), unit, no_bands));
        let raw: Vec<f64> = validation_features.iter().map(|row| model.score(row).raw).collect();
        let validation_auc = roc_auc(&raw, &validation_labels);
        eprintln!("{:<40} validation ROC-AUC {validation_auc:.4}  fit {fit_seconds:.1} s", candidate.name());
        reports.push(json!({
            "candidate": candidate.name(),
            "validation_roc_auc": validation_auc,
            "validation_pr_auc": pr_auc(&raw, &validation_labels),
            "fit_seconds": fit_seconds,
        }));
        if best.as_ref().is_none_or(|(auc, _, _)| validation_auc > *auc) {
            best = Some((validation_auc, candidate, params));
        }
    }
    let (_, chosen, params) = best.expect("there is always at least one candidate");

    let uncalibrated = Model::new(placeholder_artifact(params.clone(), unit, no_bands));
    let validation_raw: Vec<f64> = validation_features.iter().map(|row| uncalibrated.score(row).raw).collect();
    let (slope, offset) = fit_platt(&validation_raw, &validation_labels);
    let calibration = Calibration { slope, offset };
    let validation_likelihood: Vec<f64> = validation_raw.iter().map(|raw| calibrate(&calibration, *raw)).collect();
    let minimum_flagged = (validation_labels.len() / 100).max(10);
    let high =
        threshold_for_precision(&validation_likelihood, &validation_labels, options.high_precision, minimum_flagged)
            .unwrap_or(1.0);
    // ELEVATED is a local precision: the likelihood is calibrated on validation data, so a contact at the
    // ELEVATED threshold is misuse with about that probability. (A cumulative precision would sink to almost
    // zero here, because the bulk of misuse sits far above it.)
    let elevated = options.elevated_precision.min(high);
    let bands = BandThresholds {
        elevated,
        high,
        elevated_target_precision: options.elevated_precision,
        high_target_precision: options.high_precision,
    };

    let mut artifact = placeholder_artifact(params, calibration, bands);
    let trained_at = OffsetDateTime::now_utc();
    let short_fingerprint: String = options.data_fingerprint.chars().take(8).collect();
    artifact.model_version = format!(
        "{}-{}-{short_fingerprint}",
        chosen.kind(),
        trained_at.format(time::macros::format_description!("[year][month][day]"))?
    );
    let model = Model::new(artifact.clone());
    let test_rows: Vec<ReplayRow> = split.test.iter().map(|row| (*row).clone()).collect();
    let validation_rows: Vec<ReplayRow> = split.validation.iter().map(|row| (*row).clone()).collect();
    let (test_evaluation, _) = evaluate(&model, &test_rows);
    let (validation_evaluation, _) = evaluate(&model, &validation_rows);
    let labelled = split.train.len() + split.validation.len() + split.test.len();
    let positives = replay.rows.iter().filter(|row| row.label() == Some(true)).count();
    artifact.card = json!({
        "label_source": "operator dispositions only: prank or abusive = misuse; silent, accidental and the rest = not \
                         misuse; unknown = unlabelled and left out. Never saring's own scores.",
        "learner": chosen.name(),
        "chosen_on": "validation ROC-AUC (time-based split)",
        "candidates": reports,
        "data": {
            "source": options.data_source,
            "fingerprint": options.data_fingerprint,
            "from": iso(replay.rows.first().map_or(0, |row| row.at_ms)),
            "to": iso(replay.rows.last().map_or(0, |row| row.at_ms)),
            "contacts": replay.rows.len(),
            "labelled": labelled,
            "positives": positives,
            "train": { "rows": split.train.len(), "until": iso(split.validation_from_ms) },
            "validation": { "rows": split.validation.len(), "from": iso(split.validation_from_ms), "until": iso(split.test_from_ms) },
            "test": { "rows": split.test.len(), "from": iso(split.test_from_ms) },
        },
        "bands": {
            "elevated": elevated, "high": high,
            "chosen_for": format!(
                "HIGH: lowest likelihood whose contacts at or above it reach validation precision {} (at least {minimum_flagged} flagged); ELEVATED: calibrated likelihood {} (local precision)",
                options.high_precision, options.elevated_precision),
        },
        "metrics": { "validation": validation_evaluation, "test": test_evaluation },
        "trained_at": iso((trained_at.unix_timestamp_nanos() / 1_000_000) as i64),
        "trained_with": concat!("saring-train ", env!("CARGO_PKG_VERSION")),
    });
    artifact.validate()?;
    Ok(artifact)
}
