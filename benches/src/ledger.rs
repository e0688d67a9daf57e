//! The ledger run: drives several saring replicas as a routing engine and a legal team would — every contact is
//! scored, then its outcome is recorded and retried (on the next replica) until one acknowledges it; a decider
//! decides proposed cases — and keeps a ledger of everything acknowledged. Afterwards it checks each caller's
//! history (`GetCaller`) against the ledger: every acknowledged outcome must be counted exactly once, whichever
//! replica took it and whatever failed meanwhile (Redis, PostgreSQL, a replica, a Redis Cluster master).
//!
//! Errors are classified: UNAVAILABLE (a replica down, the case database down) and transport errors (a replica
//! killed mid-call) are the designed failures a client retries elsewhere; every other status is a finding.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use saring::proto;
use saring::proto::escalations_client::EscalationsClient;
use saring::proto::screening_client::ScreeningClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::load::latency_histogram;
use crate::mix::Mix;

/// How to drive the replicas.
#[derive(Debug, Clone)]
pub struct LedgerSpec {
    /// The replicas, `host:port` each.
    pub replicas: Vec<String>,
    /// Token with the routing role (ScoreContact, RecordOutcome).
    pub routing_token: String,
    /// Token with the operator role (GetCaller, for the check).
    pub operator_token: String,
    /// Token with the legal role (ListCases, Decide); no decisions without it.
    pub legal_token: Option<String>,
    /// Contacts per second (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    /// How long contacts are sent.
    pub duration: Duration,
    /// Workers (contacts in flight at most).
    pub concurrency: usize,
    /// Seconds per timeline window.
    pub window: Duration,
    /// Per-call deadline.
    pub call_timeout: Duration,
    /// An outcome not acknowledged after retrying this long is given up (and reported).
    pub give_up: Duration,
    /// Seconds between the legal team's passes over proposed cases.
    pub decide_every: Duration,
    /// Cases decided per pass at most.
    pub decide_batch: u32,
    /// Makes this run's contact ids unique.
    pub nonce: String,
}

/// Counts of one RPC's failed attempts, by status code.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Failures {
    /// `code name -> attempts` (transport errors are "transport").
    pub by_code: BTreeMap<String, u64>,
    /// Up to five messages of failures that are not designed ones.
    pub undesigned_samples: Vec<String>,
}

impl Failures {
    fn note(&mut self, status: &tonic::Status) {
        let name = code_name(status);
        *self.by_code.entry(name.clone()).or_default() += 1;
        if !designed(status) && self.undesigned_samples.len() < 5 {
            self.undesigned_samples.push(format!("{name}: {}", status.message()));
        }
    }

    /// Failed attempts that are not a designed failure.
    pub fn undesigned(&self) -> u64 {
        self.by_code.iter().filter(|(code, _)| !DESIGNED.contains(&code.as_str())).map(|(_, count)| count).sum()
    }
}

/// Failures a client is designed to meet and retry elsewhere: a replica or a store down, or a call outliving the
/// client's own deadline ("client_deadline": tonic's `Cancelled: Timeout expired`; the server was slow, e.g.
/// waiting for a database connection, and the client retries).
const DESIGNED: [&str; 4] = ["Unavailable", "transport", "DeadlineExceeded", "client_deadline"];

fn code_name(status: &tonic::Status) -> String {
    // tonic reports a refused or reset connection as Unavailable or Unknown with a transport source.
    if status.code() == Code::Unknown && status.message().contains("transport") {
        return "transport".to_owned();
    }
    if status.code() == Code::Cancelled && status.message().contains("connection") {
        return "transport".to_owned();
    }
    if status.code() == Code::Cancelled && status.message().contains("Timeout expired") {
        return "client_deadline".to_owned();
    }
    format!("{:?}", status.code())
}

fn designed(status: &tonic::Status) -> bool {
    DESIGNED.contains(&code_name(status).as_str())
}

/// One window of the timeline, by the time contacts were sent.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LedgerWindow {
    /// Start, seconds since the run started.
    pub start_s: f64,
    /// Contacts sent.
    pub sent: u64,
    /// ScoreContact answered (after retries).
    pub scored: u64,
    /// Of which degraded.
    pub degraded: u64,
    /// RecordOutcome acknowledged.
    pub acknowledged: u64,
    /// Failed attempts (any RPC, designed or not).
    pub failed_attempts: u64,
    /// Failed attempts that are not designed failures.
    pub undesigned: u64,
    /// ScoreContact p99 (ms) in this window, retries included.
    pub score_p99_ms: f64,
    /// RecordOutcome p99 (ms) until acknowledged, retries included.
    pub outcome_p99_ms: f64,
}

/// An acknowledged outcome.
#[derive(Debug, Clone)]
struct Acked {
    contact_id: String,
    caller: Option<String>,
    replica: usize,
    attempts: u32,
    duplicate: bool,
    at_s: f64,
}

/// An acknowledged decision.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecisionRecord {
    /// The case.
    pub case_id: String,
    /// "approve" or "reject".
    pub decision: String,
    /// The reason sent (unique per decision, so the audit log can be searched for it).
    pub reason: String,
    /// Attempts until acknowledged.
    pub attempts: u32,
    /// True when an attempt failed in flight and the retry found the case already decided with this reason
    /// (the first attempt had committed).
    pub resolved_by_read: bool,
}

struct Shared {
    spec: LedgerSpec,
    mix: Arc<Mix>,
    routing: MetadataValue<Ascii>,
    channels: Vec<Channel>,
    start: Instant,
    next: AtomicU64,
    windows: Mutex<Vec<WindowAccumulator>>,
    acked: Mutex<Vec<Acked>>,
    score_failures: Mutex<Failures>,
    outcome_failures: Mutex<Failures>,
    given_up: Mutex<Vec<(String, Option<String>)>>,
    degraded_reasons: Mutex<BTreeMap<String, u64>>,
    pending: Arc<tokio::sync::Semaphore>,
    outcome_latency: Mutex<Histogram<u64>>,
}

struct WindowAccumulator {
    window: LedgerWindow,
    score: Histogram<u64>,
    outcome: Histogram<u64>,
}

impl Shared {
    fn window<R>(&self, at: Duration, update: impl FnOnce(&mut WindowAccumulator) -> R) -> R {
        let index = (at.as_secs_f64() / self.spec.window.as_secs_f64()) as usize;
        let mut windows = self.windows.lock();
        while windows.len() <= index {
            let start_s = windows.len() as f64 * self.spec.window.as_secs_f64();
            windows.push(WindowAccumulator {
                window: LedgerWindow { start_s, ..LedgerWindow::default() },
                score: latency_histogram(2),
                outcome: latency_histogram(2),
            });
        }
        update(&mut windows[index])
    }

    fn failed(&self, at: Duration, status: &tonic::Status, score: bool) {
        if score {
            self.score_failures.lock().note(status);
        } else {
            self.outcome_failures.lock().note(status);
        }
        let undesigned = !designed(status);
        self.window(at, |window| {
            window.window.failed_attempts += 1;
            window.window.undesigned += u64::from(undesigned);
        });
    }
}

/// What a ledger run saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LedgerReport {
    /// When sending started, seconds since the Unix epoch (to line up the timeline with a fault log).
    pub started_unix_s: f64,
    /// Contacts sent.
    pub sent: u64,
    /// Contacts per second actually sent (over the sending period).
    pub sent_per_s: f64,
    /// ScoreContact answered (after retries).
    pub scored: u64,
    /// Of which degraded, by reason.
    pub degraded: u64,
    /// Degraded answers by reason.
    pub degraded_reasons: BTreeMap<String, u64>,
    /// ScoreContact calls that no replica answered before giving up.
    pub unscored: u64,
    /// RecordOutcome acknowledged (distinct contacts).
    pub acknowledged: u64,
    /// Of which acknowledged as duplicates (an earlier attempt had reached history).
    pub acknowledged_duplicate: u64,
    /// Of which needed more than one attempt.
    pub acknowledged_after_retry: u64,
    /// Outcomes never acknowledged (gave up).
    pub given_up: u64,
    /// Acknowledgements per replica.
    pub acknowledged_by_replica: Vec<u64>,
    /// ScoreContact failed attempts.
    pub score_failures: Failures,
    /// RecordOutcome failed attempts.
    pub outcome_failures: Failures,
    /// Decision failures.
    pub decide_failures: Failures,
    /// Decisions acknowledged.
    pub decisions: u64,
    /// Decisions that were rejected as conflicts (the case changed between list and decide) without an
    /// ambiguous earlier attempt: designed, counted apart.
    pub decide_conflicts: u64,
    /// Latency over the whole run (ms, retries included): ScoreContact p50 / p99 / max.
    pub score_ms: [f64; 3],
    /// RecordOutcome until acknowledged: p50 / p99 / max (ms).
    pub outcome_ms: [f64; 3],
    /// The check, when run.
    pub check: Option<CheckReport>,
}

/// The check of histories against the ledger.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// Distinct normalised numbers with an acknowledged outcome.
    pub callers: usize,
    /// Acknowledged outcomes with a number.
    pub expected: u64,
    /// Sum of `total_contacts` over those callers.
    pub found: u64,
    /// Callers whose total equals their acknowledged outcomes.
    pub exact: usize,
    /// Outcomes missing (acknowledged but not counted), summed over callers with too few.
    pub missing: u64,
    /// Outcomes counted beyond the acknowledged ones, summed over callers with too many (duplicates, or
    /// given-up outcomes an earlier attempt did record).
    pub extra: u64,
    /// Given-up outcomes among these callers (they may or may not be counted).
    pub given_up_among_callers: u64,
    /// Seconds the check waited for journals to drain until the totals matched (or it stopped waiting).
    pub settled_after_s: f64,
    /// GetCaller calls that failed during the check.
    pub lookup_failures: u64,
    /// Up to ten callers that do not match: (number, acknowledged, counted).
    pub mismatches: Vec<(String, u64, u64)>,
}

fn connect_lazy(addr: &str, timeout: Duration) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(1))
        .timeout(timeout)
        .connect_lazy())
}

fn authorized<T>(message: T, bearer: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", bearer.clone());
    request
}

/// The pause before retry `attempt` (1, 2, …): 25 ms doubling to at most 1.6 s, so a replica or store that is
/// down is not flooded with retries.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(25u64 << attempt.saturating_sub(1).min(6))
}

/// Runs the load, the decider and (with `check`) the check; writes the ledgers when paths are given.
pub async fn run(
    spec: LedgerSpec,
    mix: Arc<Mix>,
    check: Option<Duration>,
    outcome_ledger: Option<PathBuf>,
    decision_ledger: Option<PathBuf>,
) -> anyhow::Result<(LedgerReport, Vec<LedgerWindow>, Vec<DecisionRecord>)> {
    anyhow::ensure!(!spec.replicas.is_empty(), "no replicas given");
    anyhow::ensure!(!mix.entries.is_empty(), "the contact mix is empty");
    let channels =
        spec.replicas.iter().map(|addr| connect_lazy(addr, spec.call_timeout)).collect::<anyhow::Result<Vec<_>>>()?;
    let shared = Arc::new(Shared {
        routing: format!("Bearer {}", spec.routing_token).parse()?,
        mix,
        channels,
        start: Instant::now(),
        next: AtomicU64::new(0),
        windows: Mutex::new(Vec::new()),
        acked: Mutex::new(Vec::new()),
        score_failures: Mutex::new(Failures::default()),
        outcome_failures: Mutex::new(Failures::default()),
        given_up: Mutex::new(Vec::new()),
        degraded_reasons: Mutex::new(BTreeMap::new()),
        pending: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_OUTCOMES)),
        outcome_latency: Mutex::new(latency_histogram(3)),
        spec,
    });
    // Histories may hold earlier runs' outcomes: the check compares the growth of each caller's total.
    let baseline = match check {
        Some(_) => {
            Some(caller_totals(&shared, shared.mix.entries.iter().filter_map(|e| e.contact.caller.as_deref())).await?)
        }
        None => None,
    };
    let shared = {
        let mut shared = shared;
        Arc::get_mut(&mut shared).expect("not shared yet").start = Instant::now();
        shared
    };
    let decider = match &shared.spec.legal_token {
        Some(token) => {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let legal = format!("Bearer {token}").parse()?;
            let task = tokio::spawn(decide_loop(Arc::clone(&shared), legal, Arc::clone(&stop)));
            Some((stop, task))
        }
        None => None,
    };
    let progress = tokio::spawn({
        let shared = Arc::clone(&shared);
        async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(10));
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let sent: u64 = shared.windows.lock().iter().map(|window| window.window.sent).sum();
                let failed: u64 = shared.windows.lock().iter().map(|window| window.window.failed_attempts).sum();
                eprintln!(
                    "{:>5.0} s: sent {sent}, acknowledged {}, outcomes pending {}, failed attempts {failed}",
                    shared.start.elapsed().as_secs_f64(),
                    shared.acked.lock().len(),
                    MAX_PENDING_OUTCOMES - shared.pending.available_permits(),
                );
            }
        }
    });
    let workers: Vec<_> =
        (0..shared.spec.concurrency.max(1)).map(|worker| tokio::spawn(drive(Arc::clone(&shared), worker))).collect();
    let mut score_all = latency_histogram(3);
    let (mut scored, mut degraded, mut unscored) = (0, 0, 0);
    for worker in workers {
        let result = worker.await?;
        score_all.add(&result.score)?;
        scored += result.scored;
        degraded += result.degraded;
        unscored += result.unscored;
    }
    let sending = shared.start.elapsed().min(shared.spec.duration);
    // Every outcome task holds a permit until it is acknowledged or given up.
    let all = u32::try_from(MAX_PENDING_OUTCOMES).expect("a small constant");
    drop(shared.pending.acquire_many(all).await?);
    progress.abort();
    let outcome_all = shared.outcome_latency.lock().clone();
    let (decisions, decide_failures, decide_conflicts) = match decider {
        Some((stop, task)) => {
            stop.store(true, Ordering::Release);
            task.await?
        }
        None => (Vec::new(), Failures::default(), 0),
    };
    let acked = shared.acked.lock().clone();
    let given_up = shared.given_up.lock().clone();
    if let Some(path) = &outcome_ledger {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(file, "contact_id,caller,replica,attempts,duplicate,acked_at_s")?;
        for entry in &acked {
            writeln!(
                file,
                "{},{},{},{},{},{:.3}",
                entry.contact_id,
                entry.caller.as_deref().unwrap_or(""),
                entry.replica,
                entry.attempts,
                entry.duplicate,
                entry.at_s
            )?;
        }
        file.flush()?;
    }
    if let Some(path) = &decision_ledger {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(file, "case_id,decision,reason,attempts,resolved_by_read")?;
        for decision in &decisions {
            writeln!(
                file,
                "{},{},{},{},{}",
                decision.case_id, decision.decision, decision.reason, decision.attempts, decision.resolved_by_read
            )?;
        }
        file.flush()?;
    }
    let check_report = match (check, &baseline) {
        (Some(settle), Some(baseline)) => Some(check_histories(&shared, baseline, &acked, &given_up, settle).await?),
        _ => None,
    };
    let mut by_replica = vec![0; shared.spec.replicas.len()];
    for entry in &acked {
        by_replica[entry.replica] += 1;
    }
    let sent = shared.windows.lock().iter().map(|window| window.window.sent).sum();
    let quantiles = |histogram: &Histogram<u64>| {
        [0.5, 0.99, 1.0].map(|quantile| histogram.value_at_quantile(quantile) as f64 / 1000.0)
    };
    let report = LedgerReport {
        started_unix_s: started_unix_s(shared.start),
        sent,
        sent_per_s: sent as f64 / sending.as_secs_f64().max(1e-9),
        scored,
        degraded,
        degraded_reasons: shared.degraded_reasons.lock().clone(),
        unscored,
        acknowledged: acked.len() as u64,
        acknowledged_duplicate: acked.iter().filter(|entry| entry.duplicate).count() as u64,
        acknowledged_after_retry: acked.iter().filter(|entry| entry.attempts > 1).count() as u64,
        given_up: given_up.len() as u64,
        acknowledged_by_replica: by_replica,
        score_failures: shared.score_failures.lock().clone(),
        outcome_failures: shared.outcome_failures.lock().clone(),
        decide_failures,
        decisions: decisions.len() as u64,
        decide_conflicts,
        score_ms: quantiles(&score_all),
        outcome_ms: quantiles(&outcome_all),
        check: check_report,
    };
    let windows = shared
        .windows
        .lock()
        .iter()
        .map(|accumulator| {
            let mut window = accumulator.window.clone();
            let p99 = |histogram: &Histogram<u64>| {
                if histogram.is_empty() {
                    0.0
                } else {
                    histogram.value_at_quantile(0.99) as f64 / 1000.0
                }
            };
            window.score_p99_ms = p99(&accumulator.score);
            window.outcome_p99_ms = p99(&accumulator.outcome);
            window
        })
        .collect();
    Ok((report, windows, decisions))
}

struct WorkerResult {
    score: Histogram<u64>,
    scored: u64,
    degraded: u64,
    unscored: u64,
}

async fn drive(shared: Arc<Shared>, worker: usize) -> WorkerResult {
    let clients: Vec<_> = shared.channels.iter().map(|channel| ScreeningClient::new(channel.clone())).collect();
    let replicas = clients.len();
    let mut result = WorkerResult { score: latency_histogram(3), scored: 0, degraded: 0, unscored: 0 };
    let mut preferred = worker % replicas;
    loop {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        let offset = match shared.spec.rate {
            Some(rate) => {
                let offset = Duration::from_secs_f64(index as f64 / rate);
                if offset >= shared.spec.duration {
                    break;
                }
                tokio::time::sleep_until((shared.start + offset).into()).await;
                offset
            }
            None => {
                let offset = shared.start.elapsed();
                if offset >= shared.spec.duration {
                    break;
                }
                offset
            }
        };
        shared.window(offset, |window| window.window.sent += 1);
        let entry = shared.mix.entry(index);
        let contact_id = format!("{}.{}.{index}", entry.contact.contact_id, shared.spec.nonce);
        let mut contact = entry.contact.clone();
        contact.contact_id.clone_from(&contact_id);

        // ScoreContact: a routing engine asks the next replica when one fails, for a short while.
        let began = shared.start + offset;
        let mut attempt = 0u32;
        let mut replica = preferred;
        let score_deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut client = clients[replica].clone();
            match client.score_contact(authorized(contact.clone(), &shared.routing)).await {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    let latency = began.elapsed().as_micros() as u64;
                    result.score.saturating_record(latency);
                    result.scored += 1;
                    if reply.degraded {
                        result.degraded += 1;
                        let mut reasons = shared.degraded_reasons.lock();
                        for reason in &reply.degraded_reasons {
                            *reasons.entry(reason.clone()).or_default() += 1;
                        }
                    }
                    shared.window(offset, |window| {
                        window.window.scored += 1;
                        window.window.degraded += u64::from(reply.degraded);
                        window.score.saturating_record(latency);
                    });
                    break;
                }
                Err(status) => {
                    shared.failed(offset, &status, true);
                    attempt += 1;
                    replica = (replica + 1) % replicas;
                    if Instant::now() >= score_deadline {
                        result.unscored += 1;
                        break;
                    }
                    if attempt > 1 {
                        tokio::time::sleep(backoff(attempt - 1)).await;
                    }
                }
            }
        }

        // RecordOutcome: handed to a task of its own (as a routing engine keeps routing new calls while an
        // outcome is retried), at most MAX_PENDING_OUTCOMES at once — beyond that, new contacts wait.
        let mut outcome = entry.outcome.clone();
        outcome.contact_id.clone_from(&contact_id);
        outcome.contact = Some(contact);
        let permit = Arc::clone(&shared.pending).acquire_owned().await.expect("the semaphore is never closed");
        let task = tokio::spawn(record_until_acknowledged(
            Arc::clone(&shared),
            clients.clone(),
            outcome,
            offset,
            preferred,
            permit,
        ));
        // Stay on a replica that answered; move on after a ScoreContact failure.
        if attempt > 0 {
            preferred = replica;
        }
        drop(task);
    }
    result
}

/// Outcomes being recorded (retried) at once, at most.
const MAX_PENDING_OUTCOMES: usize = 512;

/// Records one outcome, retried on the next replica until one acknowledges it (the contact is embedded, so any
/// replica can record it in full) or `give_up` passes.
async fn record_until_acknowledged(
    shared: Arc<Shared>,
    clients: Vec<ScreeningClient<Channel>>,
    outcome: proto::Outcome,
    offset: Duration,
    first: usize,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let replicas = clients.len();
    let sent = Instant::now();
    let give_up = sent + shared.spec.give_up;
    let caller = outcome.contact.as_ref().and_then(|contact| contact.caller.clone());
    let mut attempts = 0u32;
    let mut replica = first;
    loop {
        attempts += 1;
        let mut client = clients[replica].clone();
        match client.record_outcome(authorized(outcome.clone(), &shared.routing)).await {
            Ok(ack) => {
                let latency = sent.elapsed().as_micros() as u64;
                shared.outcome_latency.lock().saturating_record(latency);
                shared.window(offset, |window| {
                    window.window.acknowledged += 1;
                    window.outcome.saturating_record(latency);
                });
                shared.acked.lock().push(Acked {
                    contact_id: outcome.contact_id.clone(),
                    caller,
                    replica,
                    attempts,
                    duplicate: ack.into_inner().duplicate,
                    at_s: shared.start.elapsed().as_secs_f64(),
                });
                return;
            }
            Err(status) => {
                shared.failed(offset, &status, false);
                replica = (replica + 1) % replicas;
                if Instant::now() >= give_up {
                    shared.given_up.lock().push((outcome.contact_id.clone(), caller));
                    return;
                }
                if attempts > 1 {
                    tokio::time::sleep(backoff(attempts - 1)).await;
                }
            }
        }
    }
}

/// The legal team: every `decide_every`, lists proposed cases and decides up to `decide_batch` of them, alternating
/// approve and reject, retrying on the next replica. Returns the acknowledged decisions, the failures and the
/// conflicts.
async fn decide_loop(
    shared: Arc<Shared>,
    legal: MetadataValue<Ascii>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<DecisionRecord>, Failures, u64) {
    let clients: Vec<_> = shared.channels.iter().map(|channel| EscalationsClient::new(channel.clone())).collect();
    let mut decisions = Vec::new();
    let mut failures = Failures::default();
    let mut conflicts = 0u64;
    let mut replica = 0usize;
    let mut serial = 0u64;
    while !stop.load(Ordering::Acquire) {
        tokio::time::sleep(shared.spec.decide_every).await;
        let list = proto::ListCasesRequest {
            states: vec![proto::CaseState::Proposed as i32],
            page_size: shared.spec.decide_batch.max(1),
            ..Default::default()
        };
        let cases = match clients[replica].clone().list(authorized(list, &legal)).await {
            Ok(reply) => reply.into_inner().cases,
            Err(status) => {
                failures.note(&status);
                replica = (replica + 1) % clients.len();
                continue;
            }
        };
        for case in cases {
            serial += 1;
            let approve = serial % 2 == 1;
            let reason = format!("ledger {} decision {serial}", shared.spec.nonce);
            let request = proto::DecideRequest {
                case_id: case.case_id.clone(),
                version: case.version,
                decision: if approve { proto::Decision::Approve } else { proto::Decision::Reject } as i32,
                reason: reason.clone(),
            };
            let mut attempts = 0u32;
            let mut ambiguous = false;
            let deadline = Instant::now() + shared.spec.give_up;
            loop {
                attempts += 1;
                match clients[replica].clone().decide(authorized(request.clone(), &legal)).await {
                    Ok(_) => {
                        decisions.push(DecisionRecord {
                            case_id: case.case_id.clone(),
                            decision: if approve { "approve" } else { "reject" }.to_owned(),
                            reason: reason.clone(),
                            attempts,
                            resolved_by_read: false,
                        });
                        break;
                    }
                    Err(status) if matches!(status.code(), Code::FailedPrecondition | Code::Aborted) => {
                        // The case is no longer at the version we saw. If an earlier attempt of ours failed in
                        // flight, it may have committed: read the case and look for our reason.
                        if ambiguous {
                            let get = proto::GetCaseRequest { case_id: case.case_id.clone() };
                            if let Ok(found) = clients[replica].clone().get(authorized(get, &legal)).await {
                                let summary = found.into_inner().summary.unwrap_or_default();
                                if summary.decision_reason == reason {
                                    decisions.push(DecisionRecord {
                                        case_id: case.case_id.clone(),
                                        decision: if approve { "approve" } else { "reject" }.to_owned(),
                                        reason: reason.clone(),
                                        attempts,
                                        resolved_by_read: true,
                                    });
                                    break;
                                }
                            }
                        }
                        conflicts += 1;
                        break;
                    }
                    Err(status) => {
                        failures.note(&status);
                        ambiguous = true;
                        replica = (replica + 1) % clients.len();
                        if Instant::now() >= deadline {
                            break;
                        }
                        tokio::time::sleep(backoff(attempts)).await;
                    }
                }
            }
        }
    }
    (decisions, failures, conflicts)
}

/// Each raw number's normalised form and `total_contacts`, looked up with GetCaller (32 at a time, each retried on
/// the next replica); raw numbers no replica answered for are left out.
async fn caller_totals<'a>(
    shared: &Shared,
    raws: impl Iterator<Item = &'a str>,
) -> anyhow::Result<HashMap<String, (String, u64)>> {
    const LOOKUPS_IN_FLIGHT: usize = 32;
    let operator: MetadataValue<Ascii> = format!("Bearer {}", shared.spec.operator_token).parse()?;
    let clients: Vec<_> = shared.channels.iter().map(|channel| ScreeningClient::new(channel.clone())).collect();
    let mut raws: Vec<String> = raws.map(str::to_owned).collect();
    raws.sort_unstable();
    raws.dedup();
    let raws = Arc::new(raws);
    let next = Arc::new(AtomicU64::new(0));
    let mut lookups = tokio::task::JoinSet::new();
    for _ in 0..LOOKUPS_IN_FLIGHT {
        let (raws, next, clients, operator) = (Arc::clone(&raws), Arc::clone(&next), clients.clone(), operator.clone());
        lookups.spawn(async move {
            let mut totals = Vec::new();
            loop {
                let position = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(raw) = raws.get(position) else { return totals };
                for attempt in 0..(clients.len() * 5) {
                    let client = &clients[(position + attempt) % clients.len()];
                    let query = proto::CallerQuery { caller: raw.clone() };
                    match client.clone().get_caller(authorized(query, &operator)).await {
                        Ok(reply) => {
                            let profile = reply.into_inner();
                            let total = profile.history.map_or(0, |history| history.total_contacts);
                            totals.push((raw.clone(), (profile.caller, total)));
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
        });
    }
    let mut totals = HashMap::new();
    while let Some(found) = lookups.join_next().await {
        totals.extend(found?);
    }
    Ok(totals)
}

/// Compares the growth of each caller's `total_contacts` since `baseline` with its acknowledged outcomes, waiting
/// up to `settle` for journals to drain (totals below the ledger rise as journals replay; totals above it never
/// fall).
async fn check_histories(
    shared: &Shared,
    baseline: &HashMap<String, (String, u64)>,
    acked: &[Acked],
    given_up: &[(String, Option<String>)],
    settle: Duration,
) -> anyhow::Result<CheckReport> {
    let mut per_raw: HashMap<&str, u64> = HashMap::new();
    for entry in acked {
        if let Some(caller) = &entry.caller {
            *per_raw.entry(caller.as_str()).or_default() += 1;
        }
    }
    let mut given_up_raw: HashMap<&str, u64> = HashMap::new();
    for (_, caller) in given_up {
        if let Some(caller) = caller {
            *given_up_raw.entry(caller.as_str()).or_default() += 1;
        }
    }
    let started = Instant::now();
    loop {
        let raws = per_raw.keys().chain(given_up_raw.keys()).copied();
        let totals = caller_totals(shared, raws).await?;
        // Normalised number -> (acknowledged, counted since the baseline, given up); several raw forms may name
        // one number.
        let mut per_number: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        let mut lookup_failures = 0;
        let all_raws: std::collections::BTreeSet<&str> = per_raw.keys().chain(given_up_raw.keys()).copied().collect();
        for raw in all_raws {
            let (Some((number, total)), Some((_, before))) = (totals.get(raw), baseline.get(raw)) else {
                lookup_failures += 1;
                continue;
            };
            let slot = per_number.entry(number.clone()).or_default();
            slot.0 += per_raw.get(raw).copied().unwrap_or(0);
            slot.1 = total.saturating_sub(*before);
            slot.2 += given_up_raw.get(raw).copied().unwrap_or(0);
        }
        let mut report = CheckReport {
            callers: per_number.values().filter(|(acknowledged, _, _)| *acknowledged > 0).count(),
            lookup_failures,
            given_up_among_callers: per_number.values().map(|(_, _, given_up)| given_up).sum(),
            ..CheckReport::default()
        };
        for (number, (acknowledged, counted, allowance)) in &per_number {
            report.expected += acknowledged;
            report.found += counted;
            if counted < acknowledged {
                report.missing += acknowledged - counted;
            } else if *counted > acknowledged + allowance {
                report.extra += counted - acknowledged - allowance;
            }
            if counted == acknowledged {
                report.exact += 1;
            } else if report.mismatches.len() < 10 && (counted < acknowledged || *counted > acknowledged + allowance) {
                report.mismatches.push((number.clone(), *acknowledged, *counted));
            }
        }
        report.settled_after_s = started.elapsed().as_secs_f64();
        if (report.missing == 0 && lookup_failures == 0) || started.elapsed() >= settle {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn started_unix_s(start: Instant) -> f64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.as_secs_f64() - start.elapsed().as_secs_f64()
}

/// The timeline as CSV.
pub fn timeline_csv(windows: &[LedgerWindow]) -> String {
    let mut csv = String::from(
        "start_s,sent,scored,degraded,acknowledged,failed_attempts,undesigned,score_p99_ms,outcome_p99_ms\n",
    );
    for window in windows {
        csv.push_str(&format!(
            "{:.0},{},{},{},{},{},{},{:.2},{:.2}\n",
            window.start_s,
            window.sent,
            window.scored,
            window.degraded,
            window.acknowledged,
            window.failed_attempts,
            window.undesigned,
            window.score_p99_ms,
            window.outcome_p99_ms
        ));
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn designed_failures_are_told_from_findings() {
        let mut failures = Failures::default();
        failures.note(&tonic::Status::unavailable("replica down"));
        failures.note(&tonic::Status::unknown("transport error"));
        failures.note(&tonic::Status::internal("boom"));
        failures.note(&tonic::Status::invalid_argument("bad"));
        failures.note(&tonic::Status::cancelled("Timeout expired"));
        failures.note(&tonic::Status::cancelled("the operator hung up"));
        assert_eq!(failures.by_code["client_deadline"], 1);
        assert_eq!(failures.by_code["Cancelled"], 1);
        assert_eq!(failures.by_code["Unavailable"], 1);
        assert_eq!(failures.by_code["transport"], 1);
        assert_eq!(failures.undesigned(), 3);
        assert_eq!(
            failures.undesigned_samples,
            vec![
                "Internal: boom".to_owned(),
                "InvalidArgument: bad".to_owned(),
                "Cancelled: the operator hung up".to_owned()
            ]
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(25));
        assert_eq!(backoff(3), Duration::from_millis(100));
        assert_eq!(backoff(7), Duration::from_millis(1600));
        assert_eq!(backoff(30), Duration::from_millis(1600));
    }
}
