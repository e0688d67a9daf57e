//! The load driver: `concurrency` workers over `connections` HTTP/2 connections, closed loop (as fast as answers
//! come) or open loop on a [`Schedule`]. In open loop a request's latency runs from the time it was *meant* to
//! leave, so a stalled server is charged for the requests it kept the client from sending (no coordinated
//! omission): a worker that takes a request whose time has passed — every worker was busy — measures from that
//! time; a worker that had to wait for its request's time measures from when it woke.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use saring::proto;
use saring::proto::screening_client::ScreeningClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::mix::Mix;
use crate::schedule::Schedule;

/// Highest latency recorded, in microseconds (higher values are clamped).
const MAX_LATENCY_US: u64 = 120_000_000;

/// What each contact costs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// ScoreContact only.
    Score,
    /// ScoreContact, then the contact's RecordOutcome (1 outcome per contact).
    ScoreOutcome,
}

/// When a closed-loop run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this long (including the warm-up).
    After(Duration),
    /// After this many contacts (including the warm-up).
    Requests(u64),
}

/// How to drive the server.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// HTTP/2 connections.
    pub connections: usize,
    /// Workers, each with one request in flight at a time.
    pub concurrency: usize,
    /// What each contact sends.
    pub workload: Workload,
    /// Closed loop: when to stop. Ignored with a schedule.
    pub stop: Stop,
    /// Open loop: when each contact is meant to be sent.
    pub schedule: Option<Schedule>,
    /// Contacts meant to leave before this are sent but not recorded.
    pub warmup: Duration,
    /// Per-window latency (by intended send time), for bursts and soaks.
    pub window: Option<Duration>,
}

/// One RPC's outcome counts and latencies.
#[derive(Debug, Clone)]
pub struct RpcStats {
    /// Latency in microseconds.
    pub histogram: Histogram<u64>,
    /// Calls that failed (any non-OK status or transport error).
    pub errors: u64,
}

impl RpcStats {
    fn new() -> Self {
        RpcStats { histogram: latency_histogram(3), errors: 0 }
    }

    fn merge(&mut self, other: &RpcStats) {
        self.histogram.add(&other.histogram).expect("same bounds");
        self.errors += other.errors;
    }
}

/// One window of a timeline (by intended send time of ScoreContact).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Window {
    /// Start, seconds since the run started.
    pub start_s: f64,
    /// ScoreContact calls answered OK.
    pub completed: u64,
    /// Failed calls.
    pub errors: u64,
    /// Latency percentiles, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Maximum, ms.
    pub max_ms: f64,
}

/// The result of one run against one server.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// ScoreContact.
    pub score: RpcStats,
    /// RecordOutcome, when the workload sends it.
    pub outcome: Option<RpcStats>,
    /// ScoreContact answers marked degraded.
    pub degraded: u64,
    /// Degraded answers by reason (an answer may give several).
    pub degraded_reasons: BTreeMap<String, u64>,
    /// ScoreContact answers, the warm-up's included (what the server's CPU time over the run is divided by).
    pub answered: u64,
    /// From the end of the warm-up to the last answer.
    pub measured: Duration,
    /// Up to five error messages, for the report.
    pub error_samples: Vec<String>,
    /// Per-window latency, when asked for.
    pub timeline: Vec<Window>,
    /// The histograms behind `timeline` (2 significant digits), to merge windows.
    pub timeline_histograms: Vec<Histogram<u64>>,
    /// Open loop: the latest a worker woke after a request's intended time while it was idle (the client's own
    /// timer lag; large values mean the client, not the server, was the limit).
    pub max_wake_lag: Duration,
    /// The server's (CPU ms, run-queue wait ms, major faults, its CPUs' busy ms, their stolen ms) per timeline
    /// window, when its process was sampled.
    pub scheduler: Vec<(f64, f64, u64, f64, f64)>,
}

impl LoadResult {
    /// Recorded contacts (ScoreContact answered OK) per second.
    pub fn throughput(&self) -> f64 {
        self.score.histogram.len() as f64 / self.measured.as_secs_f64().max(1e-9)
    }
}

/// A latency histogram in microseconds with `significant` significant digits.
pub fn latency_histogram(significant: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, significant).expect("valid histogram bounds")
}

/// Opens `connections` HTTP/2 connections to `addr` (host:port).
pub async fn connect(addr: &str, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint =
        Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true).connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        channels.push(endpoint.connect().await?);
    }
    Ok(channels)
}

struct Shared {
    mix: Arc<Mix>,
    spec: LoadSpec,
    bearer: MetadataValue<tonic::metadata::Ascii>,
    nonce: String,
    next: AtomicU64,
    start: Instant,
    timeline: Mutex<Vec<Histogram<u64>>>,
    timeline_errors: Mutex<Vec<u64>>,
    error_samples: Mutex<Vec<String>>,
}

impl Shared {
    fn note_error(&self, message: String) {
        let mut samples = self.error_samples.lock();
        if samples.len() < 5 {
            samples.push(message);
        }
    }

    fn record_window(&self, offset: Duration, latency_us: Option<u64>) {
        let Some(window) = self.spec.window else { return };
        let index = (offset.as_secs_f64() / window.as_secs_f64()) as usize;
        match latency_us {
            Some(latency_us) => {
                let mut timeline = self.timeline.lock();
                while timeline.len() <= index {
                    timeline.push(latency_histogram(2));
                }
                timeline[index].saturating_record(latency_us);
            }
            None => {
                let mut errors = self.timeline_errors.lock();
                if errors.len() <= index {
                    errors.resize(index + 1, 0);
                }
                errors[index] += 1;
            }
        }
    }
}

struct WorkerResult {
    score: RpcStats,
    outcome: RpcStats,
    degraded: u64,
    degraded_reasons: BTreeMap<String, u64>,
    answered: u64,
    last_answer: Instant,
    max_wake_lag: Duration,
}

/// Drives the server at `addr` with `spec`, replaying `mix`. `nonce` makes this run's contact ids unique, so
/// its outcomes are never taken for repeats of another run's.
pub async fn run(addr: &str, token: &str, mix: Arc<Mix>, spec: LoadSpec, nonce: &str) -> anyhow::Result<LoadResult> {
    anyhow::ensure!(!mix.entries.is_empty(), "the contact mix is empty");
    let channels = connect(addr, spec.connections).await?;
    let shared = Arc::new(Shared {
        mix,
        bearer: format!("Bearer {token}").parse()?,
        nonce: nonce.to_owned(),
        next: AtomicU64::new(0),
        start: Instant::now(),
        timeline: Mutex::new(Vec::new()),
        timeline_errors: Mutex::new(Vec::new()),
        error_samples: Mutex::new(Vec::new()),
        spec,
    });
    let workers: Vec<_> = (0..shared.spec.concurrency.max(1))
        .map(|worker| {
            let client = ScreeningClient::new(channels[worker % channels.len()].clone());
            tokio::spawn(drive(client, Arc::clone(&shared)))
        })
        .collect();
    let mut score = RpcStats::new();
    let mut outcome = RpcStats::new();
    let (mut degraded, mut last_answer, mut max_wake_lag) = (0, shared.start, Duration::ZERO);
    let (mut degraded_reasons, mut answered) = (BTreeMap::new(), 0);
    for worker in workers {
        let result = worker.await?;
        score.merge(&result.score);
        outcome.merge(&result.outcome);
        degraded += result.degraded;
        answered += result.answered;
        for (reason, count) in result.degraded_reasons {
            *degraded_reasons.entry(reason).or_default() += count;
        }
        last_answer = last_answer.max(result.last_answer);
        max_wake_lag = max_wake_lag.max(result.max_wake_lag);
    }
    let measure_start = shared.start + shared.spec.warmup;
    let timeline = shared.spec.window.map_or_else(Vec::new, |window| {
        let histograms = shared.timeline.lock();
        let errors = shared.timeline_errors.lock();
        (0..histograms.len().max(errors.len()))
            .map(|index| {
                let histogram = histograms.get(index);
                let at = |quantile: f64| histogram.map_or(0.0, |h| h.value_at_quantile(quantile) as f64 / 1000.0);
                Window {
                    start_s: index as f64 * window.as_secs_f64(),
                    completed: histogram.map_or(0, Histogram::len),
                    errors: errors.get(index).copied().unwrap_or(0),
                    p50_ms: at(0.5),
                    p99_ms: at(0.99),
                    max_ms: histogram.map_or(0.0, |h| h.max() as f64 / 1000.0),
                }
            })
            .collect()
    });
    let error_samples = shared.error_samples.lock().clone();
    let timeline_histograms = shared.timeline.lock().clone();
    Ok(LoadResult {
        outcome: (shared.spec.workload == Workload::ScoreOutcome).then_some(outcome),
        score,
        degraded,
        degraded_reasons,
        answered,
        measured: last_answer.saturating_duration_since(measure_start),
        error_samples,
        timeline,
        timeline_histograms,
        max_wake_lag,
        scheduler: Vec::new(),
    })
}

/// When the next contact goes and where its latency is measured from; `None` when the run is over.
async fn next_send(shared: &Shared, index: u64, max_wake_lag: &mut Duration) -> Option<(Instant, Duration)> {
    let spec = &shared.spec;
    match &spec.schedule {
        Some(schedule) => {
            let offset = schedule.offset(index)?;
            let intended = shared.start + offset;
            if Instant::now() >= intended {
                return Some((intended, offset));
            }
            tokio::time::sleep_until(intended.into()).await;
            let woke = Instant::now();
            *max_wake_lag = (*max_wake_lag).max(woke - intended);
            Some((woke, offset))
        }
        None => {
            let now = Instant::now();
            let over = match spec.stop {
                Stop::After(duration) => now >= shared.start + duration,
                Stop::Requests(limit) => index >= limit,
            };
            (!over).then(|| (now, now - shared.start))
        }
    }
}

async fn drive(mut client: ScreeningClient<Channel>, shared: Arc<Shared>) -> WorkerResult {
    let mut result = WorkerResult {
        score: RpcStats::new(),
        outcome: RpcStats::new(),
        degraded: 0,
        degraded_reasons: BTreeMap::new(),
        answered: 0,
        last_answer: shared.start,
        max_wake_lag: Duration::ZERO,
    };
    let with_outcome = shared.spec.workload == Workload::ScoreOutcome;
    loop {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some((measure_from, offset)) = next_send(&shared, index, &mut result.max_wake_lag).await else { break };
        let recorded = offset >= shared.spec.warmup;
        let entry = shared.mix.entry(index);
        let mut contact = entry.contact.clone();
        if with_outcome {
            contact.contact_id = format!("{}.{}.{index}", contact.contact_id, shared.nonce);
        }
        let mut request = tonic::Request::new(contact);
        request.metadata_mut().insert("authorization", shared.bearer.clone());
        let answer = client.score_contact(request).await;
        let answered = Instant::now();
        result.last_answer = answered;
        let latency_us = (answered - measure_from).as_micros() as u64;
        match answer {
            Ok(reply) => {
                result.answered += 1;
                if recorded {
                    result.score.histogram.saturating_record(latency_us);
                    result.degraded += u64::from(reply.get_ref().degraded);
                    for reason in &reply.get_ref().degraded_reasons {
                        match result.degraded_reasons.get_mut(reason) {
                            Some(count) => *count += 1,
                            None => {
                                result.degraded_reasons.insert(reason.clone(), 1);
                            }
                        }
                    }
                    shared.record_window(offset, Some(latency_us));
                }
            }
            Err(status) => {
                if recorded {
                    result.score.errors += 1;
                    shared.record_window(offset, None);
                }
                shared.note_error(format!("ScoreContact: {:?}: {}", status.code(), status.message()));
                continue;
            }
        }
        if !with_outcome {
            continue;
        }
        let mut outcome = entry.outcome.clone();
        outcome.contact_id = format!("{}.{}.{index}", outcome.contact_id, shared.nonce);
        if let Some(contact) = outcome.contact.as_mut() {
            contact.contact_id.clone_from(&outcome.contact_id);
        }
        let mut request = tonic::Request::new(outcome);
        request.metadata_mut().insert("authorization", shared.bearer.clone());
        let sent = Instant::now();
        let answer = client.record_outcome(request).await;
        result.last_answer = Instant::now();
        match answer {
            Ok(_) if recorded => {
                result.outcome.histogram.saturating_record((result.last_answer - sent).as_micros() as u64);
            }
            Ok(_) => {}
            Err(status) => {
                result.outcome.errors += u64::from(recorded);
                shared.note_error(format!("RecordOutcome: {:?}: {}", status.code(), status.message()));
            }
        }
    }
    result
}

/// Records every outcome of the mix once (closed loop, contacts embedded), so ScoreContact then finds the
/// histories a server in production would have. Returns how many failed.
pub async fn preload(addr: &str, token: &str, mix: &Mix, concurrency: usize, nonce: &str) -> anyhow::Result<u64> {
    let channels = connect(addr, 4).await?;
    let bearer: MetadataValue<tonic::metadata::Ascii> = format!("Bearer {token}").parse()?;
    let next = Arc::new(AtomicU64::new(0));
    let outcomes: Arc<Vec<proto::Outcome>> = Arc::new(
        mix.entries
            .iter()
            .map(|entry| {
                let mut outcome = entry.outcome.clone();
                outcome.contact_id = format!("{}.pre.{nonce}", outcome.contact_id);
                if let Some(contact) = outcome.contact.as_mut() {
                    contact.contact_id.clone_from(&outcome.contact_id);
                }
                outcome
            })
            .collect(),
    );
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|worker| {
            let mut client = ScreeningClient::new(channels[worker % channels.len()].clone());
            let (next, outcomes, bearer) = (Arc::clone(&next), Arc::clone(&outcomes), bearer.clone());
            tokio::spawn(async move {
                let mut failed = 0u64;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(outcome) = outcomes.get(index) else { return failed };
                    let mut request = tonic::Request::new(outcome.clone());
                    request.metadata_mut().insert("authorization", bearer.clone());
                    failed += u64::from(client.record_outcome(request).await.is_err());
                }
            })
        })
        .collect();
    let mut failed = 0;
    for worker in workers {
        failed += worker.await?;
    }
    Ok(failed)
}
