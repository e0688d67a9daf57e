//! `saring-train generalisation`: does a model trained on simulated worlds beat the naive rule on worlds it was
//! never simulated for? Trains on domain-randomised training worlds exactly as the shipped model is trained (or
//! takes a given model), then scores every contact of each held-out world at arrival — worlds whose parameters
//! all lie outside the training ranges, with other seeds — and reports model ROC-AUC minus the better naive-rule
//! ROC-AUC per world.

use saring_models::{Model, ModelArtifact};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::evaluate::evaluate;
use crate::events::write_events;
use crate::fit::{fit, FitOptions};
use crate::replay::replay;
use crate::simulate::{simulate, SimulationConfig};
use crate::worlds::{draw_worlds, simulate_worlds, world_config, World, WorldRanges};

/// What to measure.
#[derive(Debug, Clone)]
pub struct GeneralisationConfig {
    /// Days, callers, start and regions of every world (seed and parameters are each world's own).
    pub base: SimulationConfig,
    /// Seed the training worlds are drawn from.
    pub training_seed: u64,
    /// How many training worlds.
    pub training_worlds: usize,
    /// Seed the held-out worlds are drawn from (must differ from the training seed).
    pub held_out_seed: u64,
    /// How many held-out worlds.
    pub held_out_worlds: usize,
    /// Callers per held-out world (the base's when `None`).
    pub held_out_callers: Option<u32>,
    /// Fit options for the model trained on the training worlds.
    pub fit: FitOptions,
}

/// One held-out world's result.
#[derive(Debug, Clone, Serialize)]
pub struct WorldResult {
    /// The world.
    pub world: World,
    /// Contacts in its log.
    pub contacts: usize,
    /// Labelled contacts.
    pub labelled: usize,
    /// Share of labelled contacts that were misuse.
    pub misuse_share: f64,
    /// Model ROC-AUC over every labelled contact, scored at arrival.
    pub model_roc_auc: f64,
    /// Naive rule ROC-AUC, all-time counts.
    pub naive_all_time_roc_auc: f64,
    /// Naive rule ROC-AUC, 30-day decayed counters.
    pub naive_recent_roc_auc: f64,
    /// Model ROC-AUC minus the better of the two naive AUCs.
    pub margin: f64,
}

/// The whole measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Generalisation {
    /// The model measured.
    pub model_version: String,
    /// The training worlds (empty when a model was given).
    pub training_worlds: Vec<World>,
    /// The model's own test-range margin over the naive rule (when it was trained here).
    pub training_test_margin: Option<f64>,
    /// One result per held-out world.
    pub held_out: Vec<WorldResult>,
}

impl Generalisation {
    /// Whether the model beats the naive rule on every held-out world.
    pub fn every_margin_positive(&self) -> bool {
        !self.held_out.is_empty() && self.held_out.iter().all(|result| result.margin > 0.0)
    }

    /// A Markdown table, one row per held-out world.
    pub fn to_markdown(&self) -> String {
        let mut text = format!("model `{}`", self.model_version);
        if let Some(margin) = self.training_test_margin {
            text += &format!(
                ", trained on {} training worlds (test-range margin over the naive rule {margin:+.4})",
                self.training_worlds.len()
            );
        }
        text += "\n\n| world seed | misuse share | misuse scale | misuse activity | genuine activity | talk × | silent × \
                 | night weight | label noise | answer rate | labelled | model AUC | naive AUC all-time / 30-day | margin |\n\
                 |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
        for result in &self.held_out {
            let params = &result.world.params;
            text += &format!(
                "| {} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} | {} | {:.4} | {:.4} / {:.4} | \
                 {:+.4} |\n",
                result.world.seed,
                result.misuse_share,
                params.misuse_scale,
                params.misuse_activity,
                params.genuine_activity,
                params.misuse_talk_scale,
                params.misuse_silent_weight,
                params.misuse_night_weight,
                params.label_noise,
                params.answer_rate,
                result.labelled,
                result.model_roc_auc,
                result.naive_all_time_roc_auc,
                result.naive_recent_roc_auc,
                result.margin
            );
        }
        let worst = self.held_out.iter().map(|result| result.margin).fold(f64::INFINITY, f64::min);
        text += &format!(
            "\nworst margin {worst:+.4}; every row positive: {}\n",
            if self.every_margin_positive() { "yes" } else { "no" }
        );
        text
    }
}

/// SHA-256 of the events as `simulate` would write them: the training data's fingerprint.
fn fingerprint(events: &[crate::events::Event]) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    write_events(&mut bytes, events)?;
    Ok(Sha256::digest(&bytes).iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Trains on the training worlds (unless `model` is given), then measures every held-out world.
pub fn measure(config: &GeneralisationConfig, model: Option<ModelArtifact>) -> anyhow::Result<Generalisation> {
    anyhow::ensure!(
        config.held_out_seed != config.training_seed,
        "the held-out seed must differ from the training seed ({})",
        config.training_seed
    );
    anyhow::ensure!(config.held_out_worlds > 0, "at least one held-out world is needed");
    let (artifact, training_worlds, training_test_margin) = match model {
        Some(artifact) => (artifact, Vec::new(), None),
        None => {
            anyhow::ensure!(config.training_worlds > 0, "at least one training world is needed");
            let worlds = draw_worlds(config.training_seed, config.training_worlds, WorldRanges::Training);
            let events = simulate_worlds(&config.base, &worlds);
            let options = FitOptions {
                data_fingerprint: fingerprint(&events)?,
                data_source: format!(
                    "{} domain-randomised training worlds drawn from seed {}",
                    config.training_worlds, config.training_seed
                ),
                ..config.fit.clone()
            };
            let output = fit(&replay(&events), &options)?;
            let margin = output.artifact.card["naive_rule"]["margin"].as_f64();
            (output.artifact, worlds, margin)
        }
    };
    let model = Model::new(artifact);
    let held_out_base =
        SimulationConfig { callers: config.held_out_callers.unwrap_or(config.base.callers), ..config.base.clone() };
    let mut held_out = Vec::new();
    for world in draw_worlds(config.held_out_seed, config.held_out_worlds, WorldRanges::HeldOut) {
        let rows = replay(&simulate(&world_config(&held_out_base, &world))).rows;
        let (evaluation, _) = evaluate(&model, &rows);
        let margin = evaluation.roc_auc - evaluation.naive_roc_auc.max(evaluation.naive_recent_roc_auc);
        eprintln!(
            "held-out world {}: misuse share {:.3}, model ROC-AUC {:.4}, naive {:.4} / {:.4}, margin {margin:+.4}",
            world.seed,
            evaluation.base_rate,
            evaluation.roc_auc,
            evaluation.naive_roc_auc,
            evaluation.naive_recent_roc_auc
        );
        held_out.push(WorldResult {
            world,
            contacts: evaluation.contacts,
            labelled: evaluation.labelled,
            misuse_share: evaluation.base_rate,
            model_roc_auc: evaluation.roc_auc,
            naive_all_time_roc_auc: evaluation.naive_roc_auc,
            naive_recent_roc_auc: evaluation.naive_recent_roc_auc,
            margin,
        });
    }
    Ok(Generalisation { model_version: model.version().to_owned(), training_worlds, training_test_margin, held_out })
}
