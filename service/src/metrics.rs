//! Prometheus metrics, served at `/metrics` on the admin port (the console's listener).
//!
//! Two kinds: live ones, updated as work happens (RPC latency by method and status code, scores by band and
//! province, degraded answers by reason, history-store latency by operation and outcome), and ones read from the
//! service's state at every scrape (journal depth, models and shadow agreement, drift, cases by state, the last
//! audit-chain verification, resident memory). Every metric and label is listed in `docs/metrics.md`.
//!
//! Labels are bounded: an RPC is labelled by its method only when it is one saring serves (anything else is
//! `unknown`), a region by its province (validated on the way in), a reason or outcome by a fixed name. Nothing
//! that identifies a caller ever becomes a label.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use prost::Message;

use crate::app::App;
use crate::cases::audit::Verification;
use crate::store::HistoryStore;

/// The `Content-Type` of the exposition (OpenMetrics text, which Prometheus reads natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Seconds: 50 µs … ~13 s, doubling. ScoreContact lives in the first few buckets; slow decisions in the last.
fn latency_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 19))
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// One RPC's labels: `grpc_service`, `grpc_method`, `grpc_code` (as the go-grpc-prometheus conventions name them).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// The service, e.g. `saring.v1.Screening`.
    pub grpc_service: Arc<str>,
    /// The method, e.g. `ScoreContact`.
    pub grpc_method: Arc<str>,
    /// The status code's name, e.g. `OK`, `INVALID_ARGUMENT`.
    pub grpc_code: &'static str,
}

/// A score's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScoreLabels {
    /// `low`, `elevated`, `high`, or `none` when the model failed.
    pub band: &'static str,
    /// The contact's province (the region code's first part).
    pub province: &'static str,
}

/// Brings `counter` up to `total`, a count since start-up kept elsewhere (callers hold `Metrics::catching_up`).
fn catch_up(counter: &Counter, total: u64) {
    let counted = counter.get();
    if total > counted {
        counter.inc_by(total - counted);
    }
}

/// No labels: a family of one series that can be absent (instead of a sentinel value meaning "not known").
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct NoLabels;

impl prometheus_client::encoding::EncodeLabelSet for NoLabels {
    fn encode(&self, _encoder: &mut prometheus_client::encoding::LabelSetEncoder) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

/// What a retention run pruned.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    /// `contacts` or `cases`.
    kind: &'static str,
}

/// A degraded answer's reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// As in `ScoreReply.degraded_reasons`.
    pub reason: &'static str,
}

/// A history-store operation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// `load` or `record`.
    pub operation: &'static str,
    /// `ok`, `error` or `timeout`.
    pub outcome: &'static str,
}

/// Where an authentication failed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DoorLabels {
    /// `grpc` or `console`.
    door: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    slot: &'static str,
    version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// A live-quality figure's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QualityLabels {
    /// `champion`, `challenger` or `naive`.
    subject: &'static str,
    /// `day` or `week`.
    window: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WindowLabels {
    window: &'static str,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Live quality, national, from the registry's last refresh (`[model] quality_refresh_s`).
struct QualityGauges {
    roc_auc: Family<QualityLabels, FloatGauge>,
    pr_auc: Family<QualityLabels, FloatGauge>,
    calibration_error: Family<QualityLabels, FloatGauge>,
    labelled: Family<WindowLabels, Gauge>,
    below_naive: Family<WindowLabels, Gauge>,
}

impl QualityGauges {
    fn register(registry: &mut Registry) -> Self {
        let gauges = QualityGauges {
            roc_auc: Family::default(),
            pr_auc: Family::default(),
            calibration_error: Family::default(),
            labelled: Family::default(),
            below_naive: Family::default(),
        };
        registry.register(
            "quality_roc_auc",
            "Live ROC-AUC on labelled contacts, all regions, per window and subject (champion, challenger, naive \
             rule); absent while a window has too few labelled contacts",
            gauges.roc_auc.clone(),
        );
        registry.register(
            "quality_pr_auc",
            "Live PR-AUC (average precision), as quality_roc_auc",
            gauges.pr_auc.clone(),
        );
        registry.register(
            "quality_calibration_error",
            "Live expected calibration error of the likelihood, as quality_roc_auc",
            gauges.calibration_error.clone(),
        );
        registry.register(
            "quality_labelled_contacts",
            "Labelled contacts the champion scored in the window, all regions",
            gauges.labelled.clone(),
        );
        registry.register(
            "quality_champion_below_naive",
            "1 when the champion ranked the window's labelled contacts worse than the naive rule, 0 when not; \
             absent while too few are labelled to say",
            gauges.below_naive.clone(),
        );
        gauges
    }

    fn set(&self, report: &crate::modelops::quality::QualityReport) {
        use crate::modelops::quality::{Figures, QualityState, NATIONAL};
        self.roc_auc.clear();
        self.pr_auc.clear();
        self.calibration_error.clear();
        for quality in report.windows.iter().filter(|quality| quality.scope == NATIONAL) {
            let window = quality.window;
            self.labelled.get_or_create(&WindowLabels { window }).set(quality.champion.labelled as i64);
            // Absent while too few contacts are labelled to say (quality_labelled_contacts tells how many).
            match quality.champion.state {
                QualityState::Measured => {
                    let below = i64::from(quality.champion_below_naive());
                    self.below_naive.get_or_create(&WindowLabels { window }).set(below);
                }
                QualityState::TooFewLabelled => {
                    self.below_naive.remove(&WindowLabels { window });
                }
            }
            let subjects: [(&'static str, Option<&Figures>); 3] = [
                ("champion", Some(&quality.champion)),
                ("challenger", quality.challenger.as_ref()),
                ("naive", Some(&quality.naive)),
            ];
            for (subject, figures) in subjects {
                let Some(figures) = figures.filter(|figures| figures.state == QualityState::Measured) else {
                    continue;
                };
                let labels = QualityLabels { subject, window };
                self.roc_auc.get_or_create(&labels).set(figures.roc_auc);
                self.pr_auc.get_or_create(&labels).set(figures.pr_auc);
                self.calibration_error.get_or_create(&labels).set(figures.calibration_error);
            }
        }
    }
}

/// The result of the last audit-chain verification.
#[derive(Debug, Clone, Default)]
struct AuditCheck {
    /// When the last verification finished.
    finished: Option<Instant>,
    running: bool,
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    /// `/package.Service/Method` → its service and method labels, for every method saring serves.
    known_methods: HashMap<String, (Arc<str>, Arc<str>)>,
    unknown_method: (Arc<str>, Arc<str>),
    rpc: HistogramFamily<RpcLabels>,
    scores: Family<ScoreLabels, Counter>,
    degraded: Family<ReasonLabels, Counter>,
    store: HistogramFamily<StoreLabels>,
    journal_depth: Gauge,
    journaled: Counter,
    /// Spans exported and dropped (caught up with [`crate::otlp::counts`] at each scrape).
    trace_exported: Counter,
    trace_dropped: Family<ReasonLabels, Counter>,
    models: Family<ModelLabels, Gauge>,
    shadow_scored: Counter,
    /// The shadow statistics' count at the last scrape (they restart with each challenger).
    shadow_seen: std::sync::atomic::AtomicU64,
    shadow_agreement: Gauge<f64, std::sync::atomic::AtomicU64>,
    shadow_difference: Gauge<f64, std::sync::atomic::AtomicU64>,
    drift: Gauge<f64, std::sync::atomic::AtomicU64>,
    quality: QualityGauges,
    cases: Family<StateLabels, Gauge>,
    case_store_up: Gauge,
    audit_intact: Family<NoLabels, Gauge>,
    audit_entries: Gauge,
    audit_verified: Gauge,
    audit_check: Arc<Mutex<AuditCheck>>,
    resident_memory: Gauge,
    capture: crate::capture::CaptureCounters,
    auth_failures: Family<DoorLabels, Counter>,
    auth_throttled: Family<DoorLabels, Counter>,
    retention_pruned: Family<KindLabels, Counter>,
    retention_last_run: Gauge,
    notices_applied: Counter,
    /// Serialises the scrape-time catch-up of counters kept elsewhere (authentication, journal, shadow, traces),
    /// so two scrapes never add the same difference.
    catching_up: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The gRPC methods saring serves (`/package.Service/Method`) with their service and method labels, from its
/// descriptor sets.
fn served_methods() -> HashMap<String, (Arc<str>, Arc<str>)> {
    let mut methods = HashMap::new();
    let mut insert = |service: String, method: &str| {
        methods.insert(format!("/{service}/{method}"), (Arc::from(service.as_str()), Arc::from(method)));
    };
    for encoded in [crate::proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else { continue };
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    insert(format!("{}.{}", file.package(), service.name()), method.name());
                }
            }
        }
    }
    insert("grpc.reflection.v1.ServerReflection".to_owned(), "ServerReflectionInfo");
    methods
}

/// A validated region's province as a static label (`unknown` for a province saring does not know).
fn province_label(region: &str) -> &'static str {
    use saring_models::region::{province, WIB_PROVINCES, WITA_PROVINCES, WIT_PROVINCES};
    let wanted = province(region);
    WIB_PROVINCES
        .iter()
        .chain(&WITA_PROVINCES)
        .chain(&WIT_PROVINCES)
        .find(|known| **known == wanted)
        .copied()
        .unwrap_or("unknown")
}

impl Metrics {
    /// Every metric, at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("saring");
        let rpc: HistogramFamily<RpcLabels> = Family::new_with_constructor(latency_buckets);
        registry.register_with_unit(
            "grpc_server_handling",
            "gRPC calls handled, by method and status code, and their duration (for streams: until the stream ends)",
            Unit::Seconds,
            rpc.clone(),
        );
        let scores = Family::<ScoreLabels, Counter>::default();
        registry.register("score_contacts", "ScoreContact answers by band and province", scores.clone());
        let degraded = Family::<ReasonLabels, Counter>::default();
        registry.register("degraded_answers", "Degraded ScoreContact answers by reason", degraded.clone());
        let store: HistogramFamily<StoreLabels> = Family::new_with_constructor(latency_buckets);
        registry.register_with_unit(
            "history_store_operation",
            "History-store reads (load) and writes (record) by outcome, and their duration",
            Unit::Seconds,
            store.clone(),
        );
        let journal_depth = Gauge::default();
        registry.register(
            "journal_depth",
            "Outcomes waiting in the local journal for the history store (0 when not journaled)",
            journal_depth.clone(),
        );
        let journaled = Counter::default();
        registry.register(
            "journal_appended",
            "Outcomes written to the journal since start-up because the history store failed or was slow",
            journaled.clone(),
        );
        let models = Family::<ModelLabels, Gauge>::default();
        registry.register(
            "model_info",
            "The model serving (slot=champion) and in shadow (slot=challenger)",
            models.clone(),
        );
        let shadow_scored = Counter::default();
        registry.register(
            "shadow_scored",
            "Contacts the champion and a challenger both scored since start-up",
            shadow_scored.clone(),
        );
        let shadow_agreement = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "shadow_band_agreement_ratio",
            "Share of shadow-scored contacts where champion and challenger gave the same band",
            shadow_agreement.clone(),
        );
        let shadow_difference = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "shadow_mean_abs_difference",
            "Mean absolute likelihood difference between champion and challenger",
            shadow_difference.clone(),
        );
        let drift = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "drift_max_psi",
            "Largest population stability index of any input in the current drift window, all regions together \
             (per region: Models.GetDrift)",
            drift.clone(),
        );
        let quality = QualityGauges::register(&mut registry);
        let cases = Family::<StateLabels, Gauge>::default();
        registry.register("cases", "Escalation cases by state", cases.clone());
        let case_store_up = Gauge::default();
        registry.register(
            "case_store_up",
            "1 when the case database answered this scrape, else 0",
            case_store_up.clone(),
        );
        let audit_intact = Family::<NoLabels, Gauge>::default();
        registry.register(
            "audit_chain_intact",
            "1 when the last verification found every audit link intact, 0 when broken; absent before the first \
             verification and when the last could not run",
            audit_intact.clone(),
        );
        let audit_entries = Gauge::default();
        registry.register("audit_entries", "Audit entries checked by the last verification", audit_entries.clone());
        let audit_verified = Gauge::default();
        registry.register(
            "audit_verified_timestamp_seconds",
            "Unix time of the last completed audit-chain verification (0: none yet)",
            audit_verified.clone(),
        );
        let resident_memory = Gauge::default();
        registry.register("process_resident_memory_bytes", "Resident memory of the process", resident_memory.clone());
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION"), commit: env!("SARING_GIT_COMMIT") })
            .set(1);
        registry.register("build_info", "The running build", build);
        let capture = crate::capture::CaptureCounters::default();
        registry.register(
            "capture_written",
            "Records in capture files closed and kept (counted at each file's close)",
            capture.written.clone(),
        );
        registry.register(
            "capture_dropped",
            "Capture records dropped because the writer's queue was full or the writer had stopped",
            capture.dropped.clone(),
        );
        registry.register(
            "capture_write_errors",
            "Capture records lost because a write, close or fsync of their file failed",
            capture.write_errors.clone(),
        );
        let auth_failures = Family::<DoorLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Failed authentications by door (grpc, console): unknown or malformed tokens, missing credentials, \
             certificates matching no client",
            auth_failures.clone(),
        );
        let auth_throttled = Family::<DoorLabels, Counter>::default();
        registry.register(
            "auth_throttled",
            "Attempts refused by door because their peer address had too many failed authentications",
            auth_throttled.clone(),
        );
        for door in crate::failed_auth::Door::ALL {
            // Both doors from the start, at zero, so a rate over them never begins with a gap.
            drop(auth_failures.get_or_create(&DoorLabels { door: door.as_str() }));
            drop(auth_throttled.get_or_create(&DoorLabels { door: door.as_str() }));
        }
        let retention_pruned = Family::<KindLabels, Counter>::default();
        registry.register(
            "retention_pruned",
            "Rows pruned by this replica's retention runs: outcome rows (contacts), closed cases stripped of their \
             number (cases), expired erasure notices (erasure_notices) and histories whose last contact is older \
             than history.retention_days (histories)",
            retention_pruned.clone(),
        );
        for kind in ["contacts", "cases", "erasure_notices", "histories"] {
            drop(retention_pruned.get_or_create(&KindLabels { kind }));
        }
        let retention_last_run = Gauge::default();
        registry.register_with_unit(
            "retention_last_run",
            "When this replica's last retention run finished, Unix seconds (absent before the first)",
            Unit::Other("timestamp_seconds".into()),
            retention_last_run.clone(),
        );
        let notices_applied = Counter::default();
        registry.register(
            "erasure_notices_applied",
            "Erasure notices (an erasure or reassignment another replica served) this replica applied to what it \
             alone holds",
            notices_applied.clone(),
        );
        let trace_exported = Counter::default();
        registry.register(
            "trace_spans_exported",
            "Spans the OTLP collector accepted (telemetry.otlp_endpoint; 0 without one)",
            trace_exported.clone(),
        );
        let trace_dropped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "trace_spans_dropped",
            "Spans not exported: the export queue was full (queue_full) or the collector refused or did not answer \
             (export_failed)",
            trace_dropped.clone(),
        );
        for reason in ["queue_full", "export_failed"] {
            drop(trace_dropped.get_or_create(&ReasonLabels { reason }));
        }
        Metrics {
            registry,
            trace_exported,
            trace_dropped,
            retention_pruned,
            retention_last_run,
            notices_applied,
            known_methods: served_methods(),
            unknown_method: (Arc::from("unknown"), Arc::from("unknown")),
            rpc,
            scores,
            degraded,
            store,
            journal_depth,
            journaled,
            models,
            shadow_scored,
            shadow_seen: std::sync::atomic::AtomicU64::new(0),
            shadow_agreement,
            shadow_difference,
            drift,
            quality,
            cases,
            case_store_up,
            audit_intact,
            audit_entries,
            audit_verified,
            audit_check: Arc::new(Mutex::new(AuditCheck::default())),
            resident_memory,
            capture,
            auth_failures,
            auth_throttled,
            catching_up: Mutex::new(()),
        }
    }

    /// Brings the authentication counters up to the authenticator's counts (kept there, because the
    /// authenticator exists before the metrics and is shared by every door).
    fn sync_auth(&self, failed: &crate::failed_auth::FailedAuth) {
        let _serialised = self.catching_up.lock();
        for door in crate::failed_auth::Door::ALL {
            let labels = DoorLabels { door: door.as_str() };
            catch_up(&self.auth_failures.get_or_create(&labels), failed.failures(door));
            catch_up(&self.auth_throttled.get_or_create(&labels), failed.throttled(door));
        }
    }

    /// The capture counters, for the capture writer to update.
    pub fn capture_counters(&self) -> crate::capture::CaptureCounters {
        self.capture.clone()
    }

    /// The service and method labels of a request path: its own when saring serves it, else `unknown`.
    fn method_labels(&self, path: &str) -> (Arc<str>, Arc<str>) {
        self.known_methods.get(path).unwrap_or(&self.unknown_method).clone()
    }

    /// Counts one handled call.
    fn observe_rpc(&self, (grpc_service, grpc_method): (Arc<str>, Arc<str>), code: &'static str, elapsed: Duration) {
        self.rpc
            .get_or_create(&RpcLabels { grpc_service, grpc_method, grpc_code: code })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one score.
    pub fn observe_score(&self, band: Option<saring_models::Band>, region: &str) {
        let band = match band {
            Some(saring_models::Band::Low) => "low",
            Some(saring_models::Band::Elevated) => "elevated",
            Some(saring_models::Band::High) => "high",
            None => "none",
        };
        self.scores.get_or_create(&ScoreLabels { band, province: province_label(region) }).inc();
    }

    /// Counts one retention run's pruned rows.
    pub fn observe_retention(&self, contacts: u64, cases: u64, finished_unix_s: i64) {
        self.retention_pruned.get_or_create(&KindLabels { kind: "contacts" }).inc_by(contacts);
        self.retention_pruned.get_or_create(&KindLabels { kind: "cases" }).inc_by(cases);
        self.retention_last_run.set(finished_unix_s);
    }

    /// Counts the histories one sweep removed (`history.retention_days`).
    pub fn observe_history_sweep(&self, removed: u64) {
        self.retention_pruned.get_or_create(&KindLabels { kind: "histories" }).inc_by(removed);
    }

    /// Counts erasure notices applied, and expired ones pruned.
    pub fn observe_notices(&self, applied: u64, pruned: u64) {
        self.notices_applied.inc_by(applied);
        self.retention_pruned.get_or_create(&KindLabels { kind: "erasure_notices" }).inc_by(pruned);
    }

    /// Counts one degraded answer.
    pub fn observe_degraded(&self, reason: &'static str) {
        self.degraded.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Times one history-store operation.
    pub fn observe_store(&self, operation: &'static str, outcome: &'static str, elapsed: Duration) {
        self.store.get_or_create(&StoreLabels { operation, outcome }).observe(elapsed.as_secs_f64());
    }

    /// Degraded answers counted for `reason` so far.
    pub fn degraded_count(&self, reason: &'static str) -> u64 {
        self.degraded.get(&ReasonLabels { reason }).map_or(0, |counter| counter.get())
    }

    /// Reads the state behind the scrape-time metrics from `app` and encodes everything. The audit chain is
    /// verified (in the background) when the last verification is older than `audit_interval`.
    pub async fn render<S: HistoryStore>(&self, app: &App<S>, audit_interval: Duration) -> String {
        let screener = &app.screener;
        if let Some(journal) = screener.store().journal() {
            self.journal_depth.set(journal.depth as i64);
            // A count since start-up, kept by the journal: the counter catches up with it at each scrape.
            let _catching_up = self.catching_up.lock();
            catch_up(&self.journaled, journal.appended);
        }
        {
            let _catching_up = self.catching_up.lock();
            let counts = crate::otlp::counts();
            catch_up(&self.trace_exported, counts.exported);
            catch_up(
                &self.trace_dropped.get_or_create(&ReasonLabels { reason: "queue_full" }),
                counts.dropped_queue_full,
            );
            catch_up(
                &self.trace_dropped.get_or_create(&ReasonLabels { reason: "export_failed" }),
                counts.dropped_export_failed,
            );
        }
        let models = screener.models();
        self.models.clear();
        self.models
            .get_or_create(&ModelLabels { slot: "champion", version: models.champion().version.to_string() })
            .set(1);
        if let Some(challenger) = models.challenger() {
            self.models
                .get_or_create(&ModelLabels { slot: "challenger", version: challenger.version.to_string() })
                .set(1);
        }
        let shadow = models.shadow();
        {
            // The shadow statistics restart with each challenger: the counter adds what was scored since the last
            // scrape (all of it after a restart), one scrape at a time.
            let _catching_up = self.catching_up.lock();
            let seen = self.shadow_seen.swap(shadow.scored, std::sync::atomic::Ordering::Relaxed);
            self.shadow_scored.inc_by(if shadow.scored >= seen { shadow.scored - seen } else { shadow.scored });
        }
        self.shadow_agreement.set(shadow.agreement());
        self.shadow_difference.set(shadow.mean_abs_difference());
        let drift = models.drift().report(Some(crate::modelops::drift::ALL_REGIONS));
        if let Some(all) = drift.regions.iter().find(|region| region.region == crate::modelops::drift::ALL_REGIONS) {
            self.drift.set(all.current.max_psi);
        }
        if let Some(report) = models.latest_quality() {
            self.quality.set(&report);
        }
        let store = app.escalator.store();
        match tokio::time::timeout(Duration::from_secs(2), store.count_by_state()).await {
            Ok(Ok(counts)) => {
                self.cases.clear();
                for (state, count) in counts {
                    self.cases.get_or_create(&StateLabels { state: state.as_str() }).set(count);
                }
                self.case_store_up.set(1);
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "metrics: the case database did not answer");
                self.case_store_up.set(0);
            }
            Err(_) => {
                self.case_store_up.set(0);
            }
        }
        self.verify_audit_when_due(store, audit_interval);
        self.resident_memory.set(resident_memory_bytes().unwrap_or(0));
        self.sync_auth(app.auth.failed_auth());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    /// Starts an audit-chain verification in the background when the last one is older than the interval (a
    /// full verification reads the whole chain, so a scrape never waits for it).
    fn verify_audit_when_due(&self, store: &crate::cases::CaseStore, audit_interval: Duration) {
        {
            let mut check = self.audit_check.lock();
            let due = check.finished.is_none_or(|finished| finished.elapsed() >= audit_interval);
            if check.running || !due {
                return;
            }
            check.running = true;
        }
        let store = store.clone();
        let check = Arc::clone(&self.audit_check);
        let (intact, entries, verified) =
            (self.audit_intact.clone(), self.audit_entries.clone(), self.audit_verified.clone());
        tokio::spawn(async move {
            match store.verify_audit().await {
                Ok(Verification::Intact { entries: count }) => {
                    intact.get_or_create(&NoLabels).set(1);
                    entries.set(count);
                }
                Ok(Verification::Broken { seq, problem }) => {
                    tracing::error!(seq, %problem, "the audit chain is broken");
                    intact.get_or_create(&NoLabels).set(0);
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics: could not verify the audit chain");
                    intact.clear();
                }
            }
            verified.set(crate::grpc::now_ms() / 1000);
            let mut check = check.lock();
            check.running = false;
            check.finished = Some(Instant::now());
        });
    }
}

/// Resident memory from `/proc/self/status` (Linux: `VmRSS`, in kB whatever the page size), in bytes.
fn resident_memory_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: i64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kilobytes * 1024)
}

/// The name of a gRPC status code, as Prometheus conventions spell it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn status_in(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(tonic::Code::from_i32(value))
}

/// A tower layer timing every gRPC call and labelling it with its final status code.
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl RpcMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        RpcMetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService { inner, metrics: Arc::clone(&self.metrics) }
    }
}

/// The service [`RpcMetricsLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for RpcMetricsService<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
{
    type Response = http::Response<ObservedBody<ResponseBody>>;
    type Error = S::Error;
    type Future = ObservedCall<S::Future>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let observation = Observation {
            metrics: Arc::clone(&self.metrics),
            method: self.metrics.method_labels(request.uri().path()),
            started: Instant::now(),
            code: None,
        };
        ObservedCall { inner: self.inner.call(request), observation: Some(observation) }
    }
}

/// One call being timed; records itself once, when its status is known or it is dropped.
struct Observation {
    metrics: Arc<Metrics>,
    method: (Arc<str>, Arc<str>),
    started: Instant,
    /// A status sent in the headers (a trailers-only response).
    code: Option<tonic::Code>,
}

impl Observation {
    fn finish(self, code: tonic::Code) {
        self.metrics.observe_rpc(self.method, code_name(code), self.started.elapsed());
    }
}

pin_project_lite::pin_project! {
    /// The response future of an observed call.
    pub struct ObservedCall<F> {
        #[pin]
        inner: F,
        observation: Option<Observation>,
    }
}

impl<F, ResponseBody, E> Future for ObservedCall<F>
where
    F: Future<Output = Result<http::Response<ResponseBody>, E>>,
{
    type Output = Result<http::Response<ObservedBody<ResponseBody>>, E>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(context));
        let mut observation = this.observation.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(observation) = observation.as_mut() {
                    observation.code = status_in(response.headers());
                }
                Ok(response.map(|inner| ObservedBody { inner, observation }))
            }
            Err(error) => {
                if let Some(observation) = observation {
                    observation.finish(tonic::Code::Internal);
                }
                Err(error)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call when the status trailer passes (or the body ends or is dropped).
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        observation: Option<Observation>,
    }

    impl<B> PinnedDrop for ObservedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(observation) = this.project().observation.take() {
                // A status in the headers ends the call; without one, the client went away before the end.
                let code = observation.code.unwrap_or(tonic::Code::Cancelled);
                observation.finish(code);
            }
        }
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(context));
        let code = match &frame {
            Some(Ok(frame)) => frame.trailers_ref().map(|trailers| status_in(trailers).unwrap_or(tonic::Code::Unknown)),
            Some(Err(_)) => Some(tonic::Code::Internal),
            None => {
                Some(this.observation.as_ref().and_then(|observation| observation.code).unwrap_or(tonic::Code::Unknown))
            }
        };
        if let Some(code) = code {
            if let Some(observation) = this.observation.take() {
                observation.finish(code);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
