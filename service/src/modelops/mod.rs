//! The models serving ScoreContact: the champion (whose score callers get), an optional challenger scored in
//! shadow on every contact, hot reload from their files, and drift of the champion's scores per region.
//!
//! Scoring reads the champion through an `ArcSwap`: a reload swaps one pointer, so no call waits on it or is
//! dropped, and a call that started with the old model finishes with it. A file that does not parse, fails
//! validation or was trained on another feature schema is refused; the model serving keeps serving.

pub mod drift;
pub mod promotion;
pub mod quality;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption, Guard};
use parking_lot::Mutex;
use saring_models::artifact::ModelParams;
use saring_models::{Band, FeatureVector, Model, ModelArtifact, Score};
use sha2::{Digest, Sha256};

use self::drift::DriftMonitor;
use self::quality::{LiveQuality, ModelScore};

/// Reload attempts kept for the status.
const RELOADS_KEPT: usize = 20;

/// A model as loaded by this process.
#[derive(Debug)]
pub struct Loaded {
    /// The model.
    pub model: Model,
    /// Its version (shared with every assessment it makes).
    pub version: Arc<str>,
    /// A file path, or `shipped`.
    pub source: String,
    /// When this process loaded it, Unix ms.
    pub loaded_at_ms: i64,
    /// SHA-256 of the artifact's text.
    digest: [u8; 32],
}

impl Loaded {
    /// Wraps a model read from `source` with text digest `digest`.
    fn new(model: Model, source: String, digest: [u8; 32]) -> Self {
        Loaded { version: Arc::from(model.version()), model, source, loaded_at_ms: now_ms(), digest }
    }

    /// The learner's name.
    pub fn learner(&self) -> &'static str {
        learner(&self.model.artifact().params)
    }
}

/// The learner kind of some parameters.
pub fn learner(params: &ModelParams) -> &'static str {
    match params {
        ModelParams::Logistic(_) => "logistic",
        ModelParams::Forest(_) => "forest",
        ModelParams::Boosted(_) => "boosted",
    }
}

/// Champion or challenger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The model whose scores callers get.
    Champion,
    /// The model scored in shadow.
    Challenger,
}

impl Slot {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Champion => "champion",
            Slot::Challenger => "challenger",
        }
    }
}

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The watched file changed.
    File,
    /// An admin asked (ReloadModel).
    Rpc,
    /// An admin promoted the challenger (PromoteChallenger).
    Promotion,
    /// An admin rolled the champion back (RollbackChampion).
    Rollback,
}

impl Trigger {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "file",
            Trigger::Rpc => "rpc",
            Trigger::Promotion => "promotion",
            Trigger::Rollback => "rollback",
        }
    }
}

/// One reload attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadEvent {
    /// When, Unix ms.
    pub at_ms: i64,
    /// Which slot.
    pub slot: Slot,
    /// Why.
    pub trigger: Trigger,
    /// Whether the file now serves.
    pub accepted: bool,
    /// The version loaded, or found in the refused file.
    pub model_version: String,
    /// Why it was refused.
    pub error: String,
}

/// Agreement of champion and challenger.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShadowStats {
    /// Contacts both scored.
    pub scored: u64,
    /// Counts by (champion band, challenger band), indexed LOW, ELEVATED, HIGH.
    pub confusion: [[u64; 3]; 3],
    /// Sum of |champion likelihood − challenger likelihood|.
    pub abs_difference_sum: f64,
}

impl ShadowStats {
    /// Contacts where both gave the same band.
    pub fn band_agreed(&self) -> u64 {
        (0..3).map(|band| self.confusion[band][band]).sum()
    }

    /// Share of contacts with the same band (0 when none).
    pub fn agreement(&self) -> f64 {
        if self.scored == 0 {
            0.0
        } else {
            self.band_agreed() as f64 / self.scored as f64
        }
    }

    /// Mean absolute likelihood difference (0 when none).
    pub fn mean_abs_difference(&self) -> f64 {
        if self.scored == 0 {
            0.0
        } else {
            self.abs_difference_sum / self.scored as f64
        }
    }
}

/// The band's index in [`ShadowStats::confusion`].
pub fn band_index(band: Band) -> usize {
    match band {
        Band::Low => 0,
        Band::Elevated => 1,
        Band::High => 2,
    }
}

/// The bands in index order.
pub const BANDS: [Band; 3] = [Band::Low, Band::Elevated, Band::High];

/// The serving models.
pub struct ModelRegistry {
    champion: ArcSwap<Loaded>,
    challenger: ArcSwapOption<Loaded>,
    champion_path: Option<PathBuf>,
    challenger_path: Option<PathBuf>,
    shadow: Mutex<ShadowStats>,
    reloads: Mutex<VecDeque<ReloadEvent>>,
    reloading: Mutex<FileStamps>,
    drift: DriftMonitor,
    quality: LiveQuality,
    /// The last refreshed live-quality report (metrics and the dashboard read it; GetModelStatus computes anew).
    latest_quality: Mutex<Option<Arc<quality::QualityReport>>>,
    /// Held for a whole promotion or rollback (files, audit, swap), so two never interleave.
    promoting: tokio::sync::Mutex<()>,
}

/// What the watcher last saw of each file, so it reads a file only when it changed and reports a refused file once.
#[derive(Debug, Default)]
struct FileStamps {
    champion: Option<(SystemTime, u64)>,
    challenger: Option<(SystemTime, u64)>,
}

/// Why a model file could not be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Refused {
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
    /// The version the file claims, if it could be read.
    pub model_version: String,
}

/// Reads, validates and loads a model artifact file.
pub fn read_model(path: &Path) -> Result<(Model, [u8; 32]), Refused> {
    let refused =
        |message: String, model_version: String| Refused { path: path.display().to_string(), message, model_version };
    let text =
        std::fs::read_to_string(path).map_err(|error| refused(format!("cannot read: {error}"), String::new()))?;
    let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
    let artifact = ModelArtifact::from_json(&text).map_err(|error| {
        let claimed = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|value| value.get("model_version").and_then(|version| version.as_str().map(str::to_owned)))
            .unwrap_or_default();
        refused(error.to_string(), claimed)
    })?;
    Ok((Model::new(artifact), digest))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

impl ModelRegistry {
    /// A registry serving `champion` (read from `champion_path`, or shipped when `None`) and, in shadow,
    /// `challenger` (read from `challenger_path`). Drift is counted in windows of `drift_window`.
    pub fn new(
        champion: Model,
        champion_path: Option<PathBuf>,
        challenger: Option<Model>,
        challenger_path: Option<PathBuf>,
        drift_window: Duration,
    ) -> Self {
        let digest_of = |path: &Option<PathBuf>| {
            path.as_deref()
                .and_then(|path| std::fs::read(path).ok())
                .map_or([0; 32], |bytes| Sha256::digest(&bytes).into())
        };
        let source =
            |path: &Option<PathBuf>| path.as_ref().map_or("shipped".to_owned(), |path| path.display().to_string());
        let champion = Loaded::new(champion, source(&champion_path), digest_of(&champion_path));
        let challenger =
            challenger.map(|model| Arc::new(Loaded::new(model, source(&challenger_path), digest_of(&challenger_path))));
        let stamps = FileStamps {
            champion: champion_path.as_deref().and_then(stamp),
            challenger: challenger_path.as_deref().and_then(stamp),
        };
        let drift = DriftMonitor::new(&champion.model, drift_window);
        ModelRegistry {
            champion: ArcSwap::from_pointee(champion),
            challenger: ArcSwapOption::new(challenger),
            champion_path,
            challenger_path,
            shadow: Mutex::new(ShadowStats::default()),
            reloads: Mutex::new(VecDeque::new()),
            reloading: Mutex::new(stamps),
            drift,
            quality: LiveQuality::new(quality::DEFAULT_MAX_SAMPLES, quality::DEFAULT_MIN_LABELLED),
            latest_quality: Mutex::new(None),
            promoting: tokio::sync::Mutex::new(()),
        }
    }

    /// The same registry judging live quality with `quality`.
    pub fn with_quality(mut self, quality: LiveQuality) -> Self {
        self.quality = quality;
        self
    }

    /// Live quality of the models and the naive rule on this replica's labelled contacts.
    pub fn quality(&self) -> &LiveQuality {
        &self.quality
    }

    /// The live-quality report of the models serving now, as of `now_ms`.
    pub fn quality_report(&self, now_ms: i64) -> quality::QualityReport {
        let champion = self.champion.load_full();
        let challenger = self.challenger.load_full();
        self.quality.report(&champion.version, challenger.as_ref().map(|challenger| &*challenger.version), now_ms)
    }

    /// The report of the last [`ModelRegistry::refresh_quality`], if any.
    pub fn latest_quality(&self) -> Option<Arc<quality::QualityReport>> {
        self.latest_quality.lock().clone()
    }

    /// Computes the live-quality report as of `now_ms` and keeps it for the metrics and the dashboard. Logs a
    /// warning when a national window's champion falls below the naive rule, and when it recovers.
    pub fn refresh_quality(&self, now_ms: i64) -> Arc<quality::QualityReport> {
        let report = Arc::new(self.quality_report(now_ms));
        let previous = self.latest_quality.lock().replace(Arc::clone(&report));
        for window in report.windows.iter().filter(|window| window.scope == quality::NATIONAL) {
            let was_below = previous
                .as_ref()
                .and_then(|previous| previous.find(window.window, quality::NATIONAL))
                .is_some_and(quality::WindowQuality::champion_below_naive);
            let below = window.champion_below_naive();
            if below && !was_below {
                tracing::warn!(
                    window = window.window,
                    model_version = %window.champion.subject,
                    labelled = window.champion.labelled,
                    champion_roc_auc = window.champion.roc_auc,
                    naive_roc_auc = window.naive.roc_auc,
                    "the champion ranks live labelled contacts worse than the naive rule (share of the caller's \
                     past contacts that were misuse): retrain on this centre's own dispositions"
                );
            } else if was_below && !below {
                tracing::info!(window = window.window, model_version = %window.champion.subject, "the champion no longer ranks worse than the naive rule");
            }
        }
        report
    }

    /// Refreshes live quality every `interval`, off the scoring threads.
    pub async fn watch_quality(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let registry = Arc::clone(&self);
            if let Err(error) = tokio::task::spawn_blocking(move || registry.refresh_quality(now_ms())).await {
                tracing::error!(%error, "live-quality task failed");
            }
        }
    }

    /// A registry serving just `model`, with no file behind it.
    pub fn fixed(model: Model) -> Self {
        ModelRegistry::new(model, None, None, None, Duration::from_secs(3600))
    }

    /// The champion, for one call. Cheap; do not hold it across an await.
    pub fn champion(&self) -> Guard<Arc<Loaded>> {
        self.champion.load()
    }

    /// The champion as an owned pointer.
    pub fn champion_full(&self) -> Arc<Loaded> {
        self.champion.load_full()
    }

    /// The challenger, if one is loaded.
    pub fn challenger(&self) -> Option<Arc<Loaded>> {
        self.challenger.load_full()
    }

    /// Shadow statistics since the current pair was loaded.
    pub fn shadow(&self) -> ShadowStats {
        self.shadow.lock().clone()
    }

    /// The last reload attempts, newest first.
    pub fn reloads(&self) -> Vec<ReloadEvent> {
        self.reloads.lock().iter().cloned().collect()
    }

    /// The drift monitor.
    pub fn drift(&self) -> &DriftMonitor {
        &self.drift
    }

    /// After the champion scored a contact: scores the challenger in shadow on the same features and counts
    /// agreement, and feeds the drift monitor. Returns the challenger's answer, for live quality. A challenger
    /// that fails is skipped; the caller's answer stands.
    pub fn observe(
        &self,
        champion: &Loaded,
        region: &str,
        features: &FeatureVector,
        score: &Score,
    ) -> Option<ModelScore> {
        self.drift.observe(&champion.version, region, score.likelihood, features);
        let challenger = self.challenger.load();
        let challenger = challenger.as_ref()?;
        let shadow = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| challenger.model.score(features)));
        let Ok(shadow) = shadow else {
            tracing::error!(model_version = %challenger.version, "the challenger failed on a contact; shadow score skipped");
            return None;
        };
        let mut stats = self.shadow.lock();
        stats.scored += 1;
        stats.confusion[band_index(score.band)][band_index(shadow.band)] += 1;
        stats.abs_difference_sum += (score.likelihood - shadow.likelihood).abs();
        Some(ModelScore { version: Arc::clone(&challenger.version), likelihood: shadow.likelihood, band: shadow.band })
    }

    fn record(&self, event: ReloadEvent) {
        if event.accepted {
            tracing::info!(slot = event.slot.as_str(), trigger = event.trigger.as_str(), model_version = %event.model_version, "model loaded");
        } else {
            tracing::error!(slot = event.slot.as_str(), trigger = event.trigger.as_str(), error = %event.error, "model file refused; the loaded model keeps serving");
        }
        let mut reloads = self.reloads.lock();
        reloads.push_front(event);
        reloads.truncate(RELOADS_KEPT);
    }

    /// Re-reads the configured files: every one when `trigger` is an RPC, only changed ones for the watcher.
    /// Returns the refusals (empty when everything configured now serves).
    pub fn reload(&self, trigger: Trigger) -> Vec<Refused> {
        let mut stamps = self.reloading.lock();
        let mut refusals = Vec::new();
        for slot in [Slot::Champion, Slot::Challenger] {
            let (path, seen) = match slot {
                Slot::Champion => (&self.champion_path, &mut stamps.champion),
                Slot::Challenger => (&self.challenger_path, &mut stamps.challenger),
            };
            let Some(path) = path else { continue };
            let now = stamp(path);
            if trigger == Trigger::File && now == *seen {
                continue;
            }
            *seen = now;
            if slot == Slot::Challenger && now.is_none() && !path.exists() {
                // No challenger file is a valid state (none yet, or it was promoted): nothing is scored in shadow.
                if self.challenger.swap(None).is_some() {
                    *self.shadow.lock() = ShadowStats::default();
                    self.record(ReloadEvent {
                        at_ms: now_ms(),
                        slot,
                        trigger,
                        accepted: true,
                        model_version: String::new(),
                        error: format!("{}: no file; no challenger is scored", path.display()),
                    });
                }
                continue;
            }
            if let Err(refused) = self.load(slot, path, trigger) {
                refusals.push(refused);
            }
        }
        refusals
    }

    fn load(&self, slot: Slot, path: &Path, trigger: Trigger) -> Result<(), Refused> {
        let event = |accepted: bool, model_version: String, error: String| ReloadEvent {
            at_ms: now_ms(),
            slot,
            trigger,
            accepted,
            model_version,
            error,
        };
        let (model, digest) = match read_model(path) {
            Ok(loaded) => loaded,
            Err(refused) => {
                self.record(event(false, refused.model_version.clone(), refused.message.clone()));
                return Err(refused);
            }
        };
        let current = match slot {
            Slot::Champion => Some(self.champion.load_full()),
            Slot::Challenger => self.challenger.load_full(),
        };
        if current.is_some_and(|current| current.digest == digest) {
            if trigger == Trigger::Rpc {
                self.record(event(true, model.version().to_owned(), String::new()));
            }
            return Ok(());
        }
        let loaded = Arc::new(Loaded::new(model, path.display().to_string(), digest));
        let version = loaded.version.to_string();
        match slot {
            Slot::Champion => {
                self.drift.reset(&loaded.model);
                self.champion.store(loaded);
            }
            Slot::Challenger => self.challenger.store(Some(loaded)),
        }
        *self.shadow.lock() = ShadowStats::default();
        self.record(event(true, version, String::new()));
        Ok(())
    }

    /// Whether any file is configured (so watching is worthwhile).
    pub fn has_files(&self) -> bool {
        self.champion_path.is_some() || self.challenger_path.is_some()
    }

    /// Polls the configured files every `interval` and reloads the ones that changed, forever.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let registry = Arc::clone(&self);
            // File reads and JSON parsing are blocking work: keep them off the runtime's scoring threads.
            if let Err(error) = tokio::task::spawn_blocking(move || registry.reload(Trigger::File)).await {
                tracing::error!(%error, "model reload task failed");
            }
        }
    }
}
