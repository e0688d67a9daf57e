//! `saring-train fit`: replay, time-based split, train candidates, choose on validation, calibrate, set bands,
//! report on the held-out test range, write one artifact.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saring_models::artifact::{BandThresholds, Calibration, ModelArtifact, ModelParams, SchemaInfo, FORMAT_VERSION};
use saring_models::features::FeatureVector;
use saring_models::inference::{calibrate, platt};
use saring_models::Model;
use serde_json::json;
use time::OffsetDateTime;

use crate::bands::{choose_high_threshold, HighStatus};
use crate::boosting::{train_boosted, BoostingSettings};
use crate::calibration::{choose_calibration, expected_calibration_error, uncalibrated_probability, ECE_BINS};
use crate::evaluate::evaluate;
use crate::learners::{train_forest, train_logistic, ForestSettings, LogisticSettings, TrainingSet};
use crate::metrics::{pr_auc, roc_auc};
use crate::reference::reference_distribution;
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
    /// Learner kinds to try (logistic, forest, boosted); all when empty.
    pub learners: Vec<String>,
    /// Least share of validation misuse HIGH must hold when its precision target is unattainable (and when it is).
    pub high_recall_floor: f64,
    /// Write the model even when it does not beat the naive rule on the test range (the card says so).
    pub allow_worse_than_naive: bool,
    /// Most training rows the learners that do not scale linearly (logistic, forest) train on: a larger training
    /// range is sampled down to this (seeded, uniformly); the booster always trains on every row.
    pub max_slow_train_rows: usize,
}

/// Default [`FitOptions::max_slow_train_rows`]: a 33-parameter logistic regression and a 60-tree forest gain
/// nothing measurable from more rows, while their fit time grows with them (linfa's L-BFGS, smartcore's forest).
pub const DEFAULT_MAX_SLOW_TRAIN_ROWS: usize = 100_000;

/// The learner kinds tried when none are named: smartcore's forest is left out (it costs more than every other
/// candidate together and never won on validation; `--learners forest` adds it).
pub const DEFAULT_LEARNERS: [&str; 2] = ["logistic", "boosted"];

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            high_precision: 0.95,
            elevated_precision: 0.6,
            seed: 7,
            data_fingerprint: String::new(),
            data_source: String::new(),
            learners: Vec::new(),
            high_recall_floor: DEFAULT_HIGH_RECALL_FLOOR,
            allow_worse_than_naive: false,
            max_slow_train_rows: DEFAULT_MAX_SLOW_TRAIN_ROWS,
        }
    }
}

/// Default of `--high-recall-floor`: HIGH holds at least a fifth of validation misuse.
pub const DEFAULT_HIGH_RECALL_FLOOR: f64 = 0.2;

/// The naive rule judged on the same test split as the model: the floor every model must beat.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NaiveGate {
    /// ROC-AUC of the all-time share of the caller's past labelled contacts that were misuse.
    pub all_time_roc_auc: f64,
    /// ROC-AUC of the same share from the 30-day decayed counters (what a live service computes).
    pub recent_roc_auc: f64,
    /// Which of the two is better here (the gate compares with it): "all_time" or "recent_30d".
    pub gated_on: &'static str,
    /// The model's test ROC-AUC.
    pub model_roc_auc: f64,
    /// Model ROC-AUC minus the better naive ROC-AUC.
    pub margin: f64,
    /// Whether the model beats the better naive rule (margin > 0).
    pub beats_naive: bool,
    /// Whether the model was written although it does not beat the naive rule (`--allow-worse-than-naive`).
    pub overridden: bool,
}

impl NaiveGate {
    /// Judges `model_roc_auc` against both naive AUCs.
    pub fn judge(model_roc_auc: f64, all_time_roc_auc: f64, recent_roc_auc: f64, allow_worse: bool) -> Self {
        let (gated_on, naive) = if recent_roc_auc > all_time_roc_auc {
            ("recent_30d", recent_roc_auc)
        } else {
            ("all_time", all_time_roc_auc)
        };
        let margin = model_roc_auc - naive;
        let beats_naive = margin > 0.0;
        NaiveGate {
            all_time_roc_auc,
            recent_roc_auc,
            gated_on,
            model_roc_auc,
            margin,
            beats_naive,
            overridden: !beats_naive && allow_worse,
        }
    }

    /// The better of the two naive AUCs.
    pub fn naive_roc_auc(&self) -> f64 {
        self.all_time_roc_auc.max(self.recent_roc_auc)
    }

    /// One line for `fit`'s output.
    pub fn describe(&self) -> String {
        format!(
            "naive rule on the test range: ROC-AUC {:.4} all-time, {:.4} 30-day decayed; model {:.4} (margin {:+.4} \
             over the better)",
            self.all_time_roc_auc, self.recent_roc_auc, self.model_roc_auc, self.margin
        )
    }
}

/// What `fit` produced: the artifact, and a per-candidate summary for benchmarks (test-range metrics of every
/// candidate, reported only: nothing is chosen on them).
pub struct FitOutput {
    /// The chosen, calibrated model.
    pub artifact: ModelArtifact,
    /// `{"candidates": [{candidate, kind, fit_seconds, validation_roc_auc, test_roc_auc, test_pr_auc}]}`.
    pub summary: serde_json::Value,
}

/// A learner with its hyper-parameters.
#[derive(Debug, Clone, Copy)]
enum Candidate {
    Logistic(LogisticSettings),
    Forest(ForestSettings),
    Boosted(BoostingSettings),
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
            Candidate::Boosted(settings) => format!(
                "boosted(learning_rate={}, leaves={}, depth={}, leaf={}, l2={}, bins={})",
                settings.learning_rate,
                settings.max_leaves,
                settings.max_depth,
                settings.min_samples_leaf,
                settings.l2,
                settings.max_bins
            ),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Candidate::Logistic(_) => "logistic",
            Candidate::Forest(_) => "forest",
            Candidate::Boosted(_) => "boosted",
        }
    }

    /// Trains on `set`; the booster also watches `validation` to stop early (its number of rounds is a
    /// hyper-parameter chosen on validation, like every other).
    fn train(&self, set: &TrainingSet<'_>, validation: &TrainingSet<'_>) -> anyhow::Result<ModelParams> {
        match self {
            Candidate::Logistic(settings) => train_logistic(set, *settings),
            Candidate::Forest(settings) => train_forest(set, *settings),
            Candidate::Boosted(settings) => train_boosted(set, validation, *settings),
        }
    }

    fn hyper_parameters(&self) -> serde_json::Value {
        match self {
            Candidate::Logistic(settings) => {
                json!({ "alpha": settings.alpha, "max_iterations": settings.max_iterations, "class_balancing": "minority replicated" })
            }
            Candidate::Forest(settings) => json!({
                "trees": settings.trees, "max_depth": settings.max_depth, "min_samples_leaf": settings.min_samples_leaf,
                "features_per_split": settings.features_per_split, "seed": settings.seed,
                "class_balancing": "minority replicated", "node_values": "balanced misuse share refitted on train",
            }),
            Candidate::Boosted(settings) => json!({
                "loss": "log loss", "learning_rate": settings.learning_rate, "max_rounds": settings.max_rounds,
                "max_leaves": settings.max_leaves, "max_depth": settings.max_depth,
                "min_samples_leaf": settings.min_samples_leaf, "min_child_hessian": settings.min_child_hessian,
                "l2": settings.l2, "max_bins": settings.max_bins,
                "early_stopping": format!("validation log loss, patience {} rounds", settings.early_stopping_rounds),
            }),
        }
    }
}

fn candidates(seed: u64) -> Vec<Candidate> {
    let forest = |max_depth, min_samples_leaf| {
        Candidate::Forest(ForestSettings { trees: 60, max_depth, min_samples_leaf, features_per_split: 8, seed })
    };
    let boosted = |learning_rate, max_leaves, min_samples_leaf| {
        Candidate::Boosted(BoostingSettings {
            max_rounds: 600,
            learning_rate,
            max_leaves,
            max_depth: 10,
            min_samples_leaf,
            min_child_hessian: 1e-3,
            l2: 1.0,
            max_bins: 255,
            early_stopping_rounds: 30,
        })
    };
    vec![
        Candidate::Logistic(LogisticSettings { alpha: 0.01, max_iterations: 200 }),
        Candidate::Logistic(LogisticSettings { alpha: 1.0, max_iterations: 200 }),
        forest(8, 20),
        forest(12, 10),
        boosted(0.1, 15, 20),
        boosted(0.1, 31, 20),
        boosted(0.05, 63, 40),
    ]
}

/// The time boundaries of the split: contacts before `validation_from_ms` train, those before `test_from_ms`
/// validate, the rest test.
#[derive(Debug, Clone, Copy)]
pub struct SplitBoundaries {
    /// First millisecond of the validation range.
    pub validation_from_ms: i64,
    /// First millisecond of the test range.
    pub test_from_ms: i64,
}

impl SplitBoundaries {
    /// The first 70% of labelled contacts (by time) train, the next 15% validate, the last 15% test; contacts at
    /// the same millisecond stay on one side.
    pub fn of(rows: &[ReplayRow]) -> Self {
        let labelled: Vec<&ReplayRow> = rows.iter().filter(|row| row.label().is_some()).collect();
        let time_at =
            |share: f64| labelled.get((labelled.len() as f64 * share) as usize).map_or(i64::MAX, |row| row.at_ms);
        SplitBoundaries { validation_from_ms: time_at(0.70), test_from_ms: time_at(0.85) }
    }

    /// "train", "validation" or "test" for a contact at `at_ms`.
    pub fn range_of(&self, at_ms: i64) -> &'static str {
        if at_ms < self.validation_from_ms {
            "train"
        } else if at_ms < self.test_from_ms {
            "validation"
        } else {
            "test"
        }
    }
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
    let boundaries = SplitBoundaries::of(rows);
    let mut split = Split {
        train: vec![],
        validation: vec![],
        test: vec![],
        validation_from_ms: boundaries.validation_from_ms,
        test_from_ms: boundaries.test_from_ms,
    };
    for row in rows.iter().filter(|row| row.label().is_some()) {
        match boundaries.range_of(row.at_ms) {
            "train" => split.train.push(row),
            "validation" => split.validation.push(row),
            _ => split.test.push(row),
        }
    }
    split
}

/// `options.max_slow_train_rows` of the training rows, drawn uniformly with `options.seed` (in order); `None` when
/// there are no more than that (every row is used).
fn sample_rows(
    features: &[FeatureVector],
    labels: &[bool],
    options: &FitOptions,
) -> Option<(Vec<FeatureVector>, Vec<bool>)> {
    let wanted = options.max_slow_train_rows.max(1);
    if features.len() <= wanted {
        return None;
    }
    let mut random = ChaCha8Rng::seed_from_u64(options.seed);
    let mut chosen = rand::seq::index::sample(&mut random, features.len(), wanted).into_vec();
    chosen.sort_unstable();
    Some(chosen.iter().map(|index| (features[*index], labels[*index])).unzip())
}

fn columns(rows: &[&ReplayRow]) -> (Vec<FeatureVector>, Vec<bool>) {
    rows.iter().map(|row| (row.features, row.label().unwrap_or(false))).unzip()
}

pub(crate) fn iso(ms: i64) -> String {
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

/// Each band's own contacts (LOW below ELEVATED, ELEVATED up to HIGH, HIGH): how many, their precision (share of
/// misuse among them) and recall (share of all labelled misuse that landed there).
fn per_band(likelihood: &[f64], labels: &[bool], elevated: f64, high: f64) -> serde_json::Value {
    let positives = labels.iter().filter(|label| **label).count().max(1) as f64;
    let mut counts = [(0usize, 0usize); 3];
    for (likelihood, label) in likelihood.iter().zip(labels) {
        let band = if *likelihood >= high {
            2
        } else if *likelihood >= elevated {
            1
        } else {
            0
        };
        counts[band].0 += 1;
        counts[band].1 += usize::from(*label);
    }
    let entry = |(contacts, misuse): (usize, usize)| {
        json!({
            "contacts": contacts,
            "misuse": misuse,
            "precision": if contacts == 0 { serde_json::Value::Null } else { json!(misuse as f64 / contacts as f64) },
            "recall": misuse as f64 / positives,
        })
    };
    json!({ "low": entry(counts[0]), "elevated": entry(counts[1]), "high": entry(counts[2]) })
}

/// Trains, chooses, calibrates and packages a model from a replayed log.
pub fn fit(replay: &Replay, options: &FitOptions) -> anyhow::Result<FitOutput> {
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
    let (test_features, test_labels) = columns(&split.test);
    anyhow::ensure!(
        train_labels.iter().any(|label| *label) && train_labels.iter().any(|label| !*label),
        "the training range needs both misuse and other labels"
    );
    let set = TrainingSet { features: &train_features, labels: &train_labels };
    let sample = sample_rows(&train_features, &train_labels, options);
    let sampled = match &sample {
        Some((features, labels)) => TrainingSet { features, labels },
        None => TrainingSet { features: &train_features, labels: &train_labels },
    };
    let validation_set = TrainingSet { features: &validation_features, labels: &validation_labels };
    let unit = Calibration::platt(1.0, 0.0);
    let no_bands =
        BandThresholds { elevated: 1.0, high: 1.0, elevated_target_precision: 0.0, high_target_precision: 0.0 };

    let mut reports = Vec::new();
    let mut summary = Vec::new();
    let mut best: Option<(f64, Candidate, ModelParams)> = None;
    let wanted = |candidate: &Candidate| {
        if options.learners.is_empty() {
            DEFAULT_LEARNERS.contains(&candidate.kind())
        } else {
            options.learners.iter().any(|kind| kind == candidate.kind() || kind == "all")
        }
    };
    for candidate in candidates(options.seed).into_iter().filter(wanted) {
        let started = Instant::now();
        let rows = if matches!(candidate, Candidate::Boosted(_)) { &set } else { &sampled };
        let params = candidate.train(rows, &validation_set)?;
        let fit_seconds = started.elapsed().as_secs_f64();
        let model = Model::new(placeholder_artifact(params.clone(), unit.clone(), no_bands));
        let raw: Vec<f64> = validation_features.iter().map(|row| model.score(row).raw).collect();
        let validation_auc = roc_auc(&raw, &validation_labels);
        let trees = match &params {
            ModelParams::Boosted(boosted) => Some(boosted.trees.len()),
            _ => None,
        };
        let train_rows = rows.features.len();
        eprintln!(
            "{:<72} validation ROC-AUC {validation_auc:.4}  fit {fit_seconds:.1} s on {train_rows} rows",
            candidate.name()
        );
        reports.push(json!({
            "candidate": candidate.name(),
            "train_rows": train_rows,
            "validation_roc_auc": validation_auc,
            "validation_pr_auc": pr_auc(&raw, &validation_labels),
            "fit_seconds": fit_seconds,
            "boosting_rounds": trees,
        }));
        // Reported for benchmarks only; never used to choose.
        let test_raw: Vec<f64> = test_features.iter().map(|row| model.score(row).raw).collect();
        summary.push(json!({
            "candidate": candidate.name(),
            "kind": candidate.kind(),
            "fit_seconds": fit_seconds,
            "validation_roc_auc": validation_auc,
            "test_roc_auc": roc_auc(&test_raw, &test_labels),
            "test_pr_auc": pr_auc(&test_raw, &test_labels),
        }));
        if best.as_ref().is_none_or(|(auc, _, _)| validation_auc > *auc) {
            best = Some((validation_auc, candidate, params));
        }
    }
    let (_, chosen, params) = best.ok_or_else(|| anyhow::anyhow!("no learner matches {:?}", options.learners))?;

    let uncalibrated = Model::new(placeholder_artifact(params.clone(), unit, no_bands));
    let validation_raw: Vec<f64> = validation_features.iter().map(|row| uncalibrated.score(row).raw).collect();
    let choice = choose_calibration(&validation_raw, &validation_labels);
    let calibration = choice.calibration.clone();
    let validation_likelihood: Vec<f64> = validation_raw.iter().map(|raw| calibrate(&calibration, *raw)).collect();
    let minimum_flagged = (validation_labels.len() / 100).max(10);
    let high_choice = choose_high_threshold(
        &validation_likelihood,
        &validation_labels,
        options.high_precision,
        options.high_recall_floor,
        minimum_flagged,
    );
    eprintln!("{}", high_choice.describe());
    let high = high_choice.threshold;
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
    let gate = NaiveGate::judge(
        test_evaluation.roc_auc,
        test_evaluation.naive_roc_auc,
        test_evaluation.naive_recent_roc_auc,
        options.allow_worse_than_naive,
    );
    eprintln!("{}", gate.describe());
    if !gate.beats_naive {
        if !options.allow_worse_than_naive {
            return Err(crate::exit::Refused(format!(
                "refusing to write the model: its test ROC-AUC {:.4} does not beat the naive rule (share of the \
                 caller's past labelled contacts that were misuse, {}) at {:.4} on the same test range; pass \
                 --allow-worse-than-naive to write it anyway",
                gate.model_roc_auc,
                if gate.gated_on == "recent_30d" { "30-day decayed" } else { "all-time" },
                gate.naive_roc_auc()
            ))
            .into());
        }
        eprintln!("WARNING: writing a model that does not beat the naive rule (--allow-worse-than-naive)");
    }
    let ece = |features: &[FeatureVector], labels: &[bool]| {
        let raw: Vec<f64> = features.iter().map(|row| model.score(row).raw).collect();
        let probabilities = |map: &dyn Fn(f64) -> f64| raw.iter().map(|raw| map(*raw)).collect::<Vec<f64>>();
        json!({
            "uncalibrated": expected_calibration_error(&probabilities(&|raw| uncalibrated_probability(&artifact.params, raw)), labels),
            "platt": expected_calibration_error(&probabilities(&|raw| platt(&artifact.calibration, raw)), labels),
            "calibrated": expected_calibration_error(&probabilities(&|raw| calibrate(&artifact.calibration, raw)), labels),
        })
    };
    let calibration_card = json!({
        "method": choice.method,
        "fitted_on": "validation range",
        "chosen_by": "cross-fitting across the two halves (by time) of the validation range: isotonic only if it lowers held-out log loss by at least 0.001",
        "platt_cross_fit": choice.platt_cross_fit,
        "isotonic_cross_fit": choice.isotonic_cross_fit,
        "ece_bins": ECE_BINS,
        "ece": { "validation": ece(&validation_features, &validation_labels), "test": ece(&test_features, &test_labels) },
    });
    let band_metrics = |evaluation: &crate::evaluate::Evaluation, features: &[FeatureVector], labels: &[bool]| {
        let likelihood: Vec<f64> = features.iter().map(|row| model.score(row).likelihood).collect();
        json!({
            "elevated": { "threshold": elevated, "precision": evaluation.at_elevated.precision(), "recall": evaluation.at_elevated.recall() },
            "high": { "threshold": high, "precision": evaluation.at_high.precision(), "recall": evaluation.at_high.recall() },
            "per_band": per_band(&likelihood, labels, elevated, high),
        })
    };
    let test_range: Vec<ReplayRow> =
        replay.rows.iter().filter(|row| row.at_ms >= split.test_from_ms).cloned().collect();
    let reference = reference_distribution(
        &model,
        &test_range,
        iso(split.test_from_ms),
        iso(replay.rows.last().map_or(0, |row| row.at_ms)),
    );
    let labelled = split.train.len() + split.validation.len() + split.test.len();
    let positives = replay.rows.iter().filter(|row| row.label() == Some(true)).count();
    artifact.card = json!({
        "label_source": "operator dispositions only",
        "label_definition": "prank or abusive = misuse; silent, accidental and the rest = not misuse; unknown = \
                             unlabelled and left out. Never saring's own scores.",
        "learner": chosen.name(),
        "learner_kind": chosen.kind(),
        "hyper_parameters": chosen.hyper_parameters(),
        "chosen_on": "validation ROC-AUC (time-based split)",
        "candidates": reports,
        "calibration": calibration_card,
        "data": {
            "source": options.data_source,
            "fingerprint": options.data_fingerprint,
            "from": iso(replay.rows.first().map_or(0, |row| row.at_ms)),
            "to": iso(replay.rows.last().map_or(0, |row| row.at_ms)),
            "contacts": replay.rows.len(),
            "labelled": labelled,
            "positives": positives,
            "train": { "rows": split.train.len(), "from": iso(replay.rows.first().map_or(0, |row| row.at_ms)), "until": iso(split.validation_from_ms) },
            "validation": { "rows": split.validation.len(), "from": iso(split.validation_from_ms), "until": iso(split.test_from_ms) },
            "test": { "rows": split.test.len(), "from": iso(split.test_from_ms), "until": iso(replay.rows.last().map_or(0, |row| row.at_ms)) },
        },
        "bands": {
            "elevated": elevated, "high": high,
            "chosen_for": format!(
                "HIGH: lowest likelihood whose contacts at or above it reach validation precision {} with at least {} of validation misuse and {minimum_flagged} contacts flagged, else the best attainable precision at that recall floor; ELEVATED: calibrated likelihood {} (local precision)",
                options.high_precision, options.high_recall_floor, options.elevated_precision),
            "high_choice": high_choice,
            "high_target_met": high_choice.status == HighStatus::TargetMet,
            "high_note": high_choice.describe(),
        },
        "naive_rule": {
            "definition": "share of the caller's past labelled contacts that were prank or abusive (0 without any), \
                           all-time from exact counts and 30-day decayed as a live service computes it",
            "test_roc_auc_all_time": gate.all_time_roc_auc,
            "test_roc_auc_recent_30d": gate.recent_roc_auc,
            "gated_on": gate.gated_on,
            "model_test_roc_auc": gate.model_roc_auc,
            "margin": gate.margin,
            "beats_naive": gate.beats_naive,
            "overridden": gate.overridden,
        },
        "metrics": {
            "validation": validation_evaluation,
            "test": test_evaluation,
            "bands": {
                "validation": band_metrics(&validation_evaluation, &validation_features, &validation_labels),
                "test": band_metrics(&test_evaluation, &test_features, &test_labels),
            },
        },
        "reference": reference,
        "trained_at": iso((trained_at.unix_timestamp_nanos() / 1_000_000) as i64),
        "trained_with": concat!("saring-train ", env!("CARGO_PKG_VERSION")),
    });
    artifact.validate()?;
    Ok(FitOutput { artifact, summary: json!({ "candidates": summary }) })
}
