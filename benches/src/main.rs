//! `saring-bench`: drives saring over real gRPC and compares it with a trivial tonic server in the same run.
//! See BENCHMARKS.md for every scenario and its command.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use parking_lot::Mutex;
use prost::Message;
use saring_bench::ledger;
use saring_bench::load::{self, LoadSpec, Stop, Workload};
use saring_bench::machine::{self, RunContext};
use saring_bench::mix::{Mix, DEFAULT_SIMULATION};
use saring_bench::report::{BurstSummary, CeilingComparison, MemoryCurve, RunSummary};
use saring_bench::schedule::Schedule;
use saring_bench::servers::{sibling_binary, ServerProcess};

#[derive(Parser)]
#[command(name = "saring-bench", about = "Load harness for saring: real gRPC, a ceiling in the same run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive saring (a running one, or one this command starts) and optionally the ceiling.
    Run(Box<RunArgs>),
    /// Serve the ceiling: a trivial Screening server answering with a constant.
    CeilingServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50052")]
        listen: String,
    },
    /// Drive several replicas as a routing engine and a legal team would, retrying on the next replica, keep a
    /// ledger of every acknowledged outcome and decision, and check each caller's history against it.
    Ledger(Box<LedgerArgs>),
    /// Write one ScoreContact request as a gRPC frame (flag, length, protobuf) for h2load's `-d`.
    Frame {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Event log to take the contact from (default: the simulated log).
        #[arg(long)]
        events: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// A running saring (host:port). Needs --token.
    #[arg(long, conflicts_with = "start")]
    addr: Option<String>,
    /// Its routing token (or SARING_BENCH_TOKEN).
    #[arg(long, env = "SARING_BENCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Start saring with this history store: memory or redis://HOST:PORT/DB (a key prefix of its own, deleted
    /// afterwards).
    #[arg(long)]
    start: Option<String>,
    /// The case database of the saring this command starts: `postgres://…` (a scratch schema is made there and
    /// dropped afterwards) or `sqlite://…` (default: a SQLite file in a scratch directory).
    #[arg(long, requires = "start")]
    database_url: Option<String>,
    /// The saring binary to start (default: `saring` beside this binary).
    #[arg(long)]
    saring_bin: Option<PathBuf>,
    /// Only the ceiling, no saring.
    #[arg(long)]
    ceiling_only: bool,
    /// Also measure the ceiling with the same client settings, right after saring.
    #[arg(long)]
    ceiling: bool,
    /// CPUs for the servers the harness starts (taskset list, e.g. 0).
    #[arg(long)]
    server_cpus: Option<String>,
    /// CPUs for this load generator (re-executes itself under taskset, e.g. 1).
    #[arg(long)]
    client_cpus: Option<String>,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests in flight at most (workers).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds per run, warm-up included.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Closed loop: stop after this many contacts instead of --duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds at the start that are not recorded.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Open loop at this many contacts per second.
    #[arg(long, conflicts_with = "rate_of_capacity")]
    rate: Option<f64>,
    /// Open loop at this share of the capacity measured just before (closed loop, --probe-duration s).
    #[arg(long)]
    rate_of_capacity: Option<f64>,
    /// Seconds of the capacity probe.
    #[arg(long, default_value_t = 10.0)]
    probe_duration: f64,
    /// A burst at this multiple of the rate ...
    #[arg(long, requires = "burst_at")]
    burst_multiplier: Option<f64>,
    /// ... starting this many seconds into the run ...
    #[arg(long)]
    burst_at: Option<f64>,
    /// ... lasting this many seconds.
    #[arg(long, default_value_t = 10.0)]
    burst_for: f64,
    /// Send each contact's RecordOutcome after its ScoreContact.
    #[arg(long)]
    with_outcome: bool,
    /// Record every outcome of the log once before measuring, so histories exist.
    #[arg(long)]
    preload: bool,
    /// Event log to replay (default: simulated in process, seed 7, 14 days, 5,000 callers).
    #[arg(long)]
    events: Option<PathBuf>,
    /// Run saring (and the ceiling) this many times, alternating.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Seconds per timeline window (latency by intended send time).
    #[arg(long)]
    window: Option<f64>,
    /// Write the timeline of the last saring run here (CSV), with the server's CPU time and run-queue wait per
    /// window; the ceiling's last run goes beside it, `.ceiling` before the extension.
    #[arg(long)]
    timeline_csv: Option<PathBuf>,
    /// Sample the server's VmRSS every this many seconds.
    #[arg(long)]
    rss_every: Option<f64>,
    /// PID of a running server to sample (default: the one started).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the VmRSS samples here (CSV).
    #[arg(long)]
    rss_csv: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct LedgerArgs {
    /// The replicas, host:port, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    replicas: Vec<String>,
    /// Token with the routing role.
    #[arg(long, env = "SARING_BENCH_TOKEN", hide_env_values = true)]
    token: String,
    /// Token with the operator role (GetCaller, for the check).
    #[arg(long, env = "SARING_BENCH_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: String,
    /// Token with the legal role: decide proposed cases while the load runs.
    #[arg(long, env = "SARING_BENCH_LEGAL_TOKEN", hide_env_values = true)]
    legal_token: Option<String>,
    /// Open loop at this many contacts per second (each: ScoreContact, then RecordOutcome until acknowledged).
    #[arg(long, conflicts_with = "rate_of_capacity")]
    rate: Option<f64>,
    /// Open loop at this share of the capacity measured first (closed loop over all replicas, no decisions,
    /// --probe-duration s, its outcomes are real and checked too).
    #[arg(long)]
    rate_of_capacity: Option<f64>,
    /// Seconds of the capacity probe.
    #[arg(long, default_value_t = 20.0)]
    probe_duration: f64,
    /// Seconds contacts are sent.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Contacts in flight at most.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds per timeline window.
    #[arg(long, default_value_t = 5.0)]
    window: f64,
    /// Deadline of one call, milliseconds.
    #[arg(long, default_value_t = 5000)]
    call_timeout_ms: u64,
    /// Give an outcome up after retrying it this many seconds.
    #[arg(long, default_value_t = 300.0)]
    give_up_s: f64,
    /// Seconds between the legal team's passes over proposed cases.
    #[arg(long, default_value_t = 2.0)]
    decide_every_s: f64,
    /// Cases decided per pass at most.
    #[arg(long, default_value_t = 5)]
    decide_batch: u32,
    /// After the load, wait up to this many seconds for every caller's history to match the ledger (0: no check).
    #[arg(long, default_value_t = 120.0)]
    check_settle_s: f64,
    /// Write outcomes.csv, decisions.csv, timeline.csv and report.json here.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Event log to replay (default: simulated in process, seed 7, 14 days, 5,000 callers).
    #[arg(long)]
    events: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::CeilingServer { listen } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(&listen).await?;
                println!("listening {}", listener.local_addr()?);
                saring_bench::ceiling::serve(listener).await?;
                anyhow::Ok(())
            })
        }
        Command::Frame { out, events } => {
            let mix = load_mix(events.as_deref())?;
            let body = mix.entry(0).contact.encode_to_vec();
            let mut frame = vec![0u8];
            frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
            frame.extend_from_slice(&body);
            std::fs::write(&out, frame)?;
            eprintln!("wrote {} ({} bytes: a {}-byte ContactRequest)", out.display(), body.len() + 5, body.len());
            Ok(())
        }
        Command::Ledger(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(ledger(*args))
        }
        Command::Run(args) => {
            if let Some(cpus) = args.client_cpus.as_deref() {
                if std::env::var_os("SARING_BENCH_PINNED").is_none() {
                    let status = std::process::Command::new("taskset")
                        .arg("-c")
                        .arg(cpus)
                        .arg(std::env::current_exe()?)
                        .args(std::env::args_os().skip(1))
                        .env("SARING_BENCH_PINNED", cpus)
                        .status()?;
                    std::process::exit(status.code().unwrap_or(1));
                }
            }
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(run(*args))
        }
    }
}

fn load_mix(events: Option<&std::path::Path>) -> anyhow::Result<Mix> {
    match events {
        Some(path) => Mix::from_file(path),
        None => {
            let (seed, days, callers) = DEFAULT_SIMULATION;
            Ok(Mix::simulated(seed, days, callers))
        }
    }
}

fn nonce() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// Samples a process's VmRSS every `every` until dropped.
/// One window of the server's scheduler figures: its own CPU ms, its run-queue wait ms (runnable while another
/// task had the CPU), its major page faults, and how busy its CPUs were in all (any task, kernel included) and how
/// much the hypervisor stole from them, ms.
type SchedulerWindow = (f64, f64, u64, f64, f64);

/// Samples the server's scheduler figures every `every` from now on, one [`SchedulerWindow`] per window.
fn sample_scheduler(
    pid: u32,
    cpus: Vec<usize>,
    every: Duration,
) -> (Arc<Mutex<Vec<SchedulerWindow>>>, tokio::task::JoinHandle<()>) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let writer = Arc::clone(&samples);
    let task = tokio::spawn(async move {
        let read = || Some((machine::scheduler_ns(pid)?, machine::cpu_busy_ms(&cpus)?));
        let mut ticker = tokio::time::interval(every);
        let mut last = read();
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let now = read();
            if let (Some(((cpu, wait, faults), (busy, steal))), Some(((cpu0, wait0, faults0), (busy0, steal0)))) =
                (now, last)
            {
                let ms = |ns: u64| ns as f64 / 1e6;
                writer.lock().push((
                    ms(cpu.saturating_sub(cpu0)),
                    ms(wait.saturating_sub(wait0)),
                    faults.saturating_sub(faults0),
                    busy - busy0,
                    steal - steal0,
                ));
            }
            last = now;
        }
    });
    (samples, task)
}

fn sample_rss(pid: u32, every: Duration, started: Instant) -> (Arc<Mutex<MemoryCurve>>, tokio::task::JoinHandle<()>) {
    let curve = Arc::new(Mutex::new(MemoryCurve { samples: Vec::new() }));
    let writer = Arc::clone(&curve);
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            if let Some(kib) = machine::resident_kib(pid) {
                writer.lock().samples.push((started.elapsed().as_secs_f64(), kib));
            }
        }
    });
    (curve, task)
}

async fn ledger(args: LedgerArgs) -> anyhow::Result<()> {
    let context = RunContext::current();
    let mix = Arc::new(load_mix(args.events.as_deref())?);
    eprintln!("command: {}", context.command);
    eprintln!(
        "commit {}, {} CPUs ({}), load average {}; replicas {}",
        context.commit,
        context.nproc,
        context.cpu_model,
        context.loadavg_before,
        args.replicas.join(", ")
    );
    let base = ledger::LedgerSpec {
        replicas: args.replicas.clone(),
        routing_token: args.token.clone(),
        operator_token: args.operator_token.clone(),
        legal_token: args.legal_token.clone(),
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        concurrency: args.concurrency,
        window: Duration::from_secs_f64(args.window),
        call_timeout: Duration::from_millis(args.call_timeout_ms),
        give_up: Duration::from_secs_f64(args.give_up_s),
        decide_every: Duration::from_secs_f64(args.decide_every_s),
        decide_batch: args.decide_batch,
        nonce: nonce(),
    };
    let mut probe = None;
    let spec = match args.rate_of_capacity {
        Some(share) => {
            let probe_spec = ledger::LedgerSpec {
                rate: None,
                legal_token: None,
                duration: Duration::from_secs_f64(args.probe_duration),
                nonce: format!("{}p", base.nonce),
                ..base.clone()
            };
            let (report, _, _) = ledger::run(probe_spec, Arc::clone(&mix), None, None, None).await?;
            eprintln!(
                "capacity probe (closed loop, {} in flight over {} replicas): {:.0} contacts/s \
                 (ScoreContact + RecordOutcome each)",
                args.concurrency,
                args.replicas.len(),
                report.sent_per_s
            );
            let rate = share * report.sent_per_s;
            probe = Some(report);
            ledger::LedgerSpec { rate: Some(rate), ..base }
        }
        None => base,
    };
    eprintln!("rate: {}", spec.rate.map_or_else(|| "closed loop".to_owned(), |rate| format!("{rate:.0} contacts/s")));
    let paths = args.out_dir.as_ref().map(|dir| (dir.join("outcomes.csv"), dir.join("decisions.csv")));
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir)?;
    }
    let check = (args.check_settle_s > 0.0).then(|| Duration::from_secs_f64(args.check_settle_s));
    let (report, windows, _) = ledger::run(
        spec,
        Arc::clone(&mix),
        check,
        paths.as_ref().map(|paths| paths.0.clone()),
        paths.as_ref().map(|paths| paths.1.clone()),
    )
    .await?;
    let json = serde_json::json!({
        "context": context,
        "probe": probe,
        "report": report,
        "loadavg_after": machine::loadavg(),
    });
    if let Some(dir) = &args.out_dir {
        std::fs::write(dir.join("timeline.csv"), ledger::timeline_csv(&windows))?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&json)?)?;
    }
    println!("{}", serde_json::to_string_pretty(&json)?);
    let undesigned =
        report.score_failures.undesigned() + report.outcome_failures.undesigned() + report.decide_failures.undesigned();
    let check_failed = report.check.as_ref().is_some_and(|check| check.missing > 0 || check.extra > 0);
    eprintln!(
        "sent {} ({:.0}/s), scored {} ({} degraded), acknowledged {} ({} after a retry), given up {}, \
         decisions {}, undesigned failures {undesigned}{}",
        report.sent,
        report.sent_per_s,
        report.scored,
        report.degraded,
        report.acknowledged,
        report.acknowledged_after_retry,
        report.given_up,
        report.decisions,
        report.check.as_ref().map_or_else(String::new, |check| format!(
            "; check: {} callers, {} acknowledged, {} counted, {} missing, {} extra",
            check.callers, check.expected, check.found, check.missing, check.extra
        ))
    );
    if check_failed {
        anyhow::bail!("histories do not match the ledger");
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let context = RunContext::current();
    let mix = Arc::new(load_mix(args.events.as_deref())?);
    let say = |line: String| {
        if !args.json {
            eprintln!("{line}");
        }
    };
    say(format!("command: {}", context.command));
    say(format!(
        "commit {}, {} CPUs ({}), load average {}, client CPUs {}, server CPUs {}",
        context.commit,
        context.nproc,
        context.cpu_model,
        context.loadavg_before,
        args.client_cpus.as_deref().unwrap_or("any"),
        args.server_cpus.as_deref().unwrap_or("any"),
    ));
    say(format!(
        "mix: {} contacts, {} distinct numbers, {} contacts from numbers with 10+ contacts",
        mix.entries.len(),
        mix.distinct_callers,
        mix.hot_contacts
    ));
    let token = match (&args.start, &args.token) {
        (Some(_), _) | (None, None) if args.ceiling_only => "ceiling".to_owned(),
        (Some(_), _) => format!("saring-bench-{}", nonce()),
        (None, Some(token)) => token.clone(),
        (None, None) => anyhow::bail!("--addr needs --token (or SARING_BENCH_TOKEN), or use --start memory"),
    };
    let mut saring = None;
    let target_addr = match (&args.addr, &args.start) {
        _ if args.ceiling_only => None,
        (Some(addr), _) => Some(addr.clone()),
        (None, Some(history)) => {
            let binary = match &args.saring_bin {
                Some(path) => path.clone(),
                None => sibling_binary("saring")?,
            };
            let mut server = ServerProcess::saring(
                &binary,
                history,
                args.database_url.as_deref(),
                args.server_cpus.as_deref(),
                &token,
            )?;
            if let Err(error) = server.wait_ready(&token, &mix, Duration::from_secs(60)).await {
                // Its scratch directory, Redis keys and PostgreSQL schema go too.
                server.stop().await?;
                return Err(error);
            }
            let addr = server.addr.clone();
            saring = Some(server);
            Some(addr)
        }
        (None, None) => anyhow::bail!("give --addr HOST:PORT, --start memory|redis://…, or --ceiling-only"),
    };
    let mut ceiling = None;
    if args.ceiling || args.ceiling_only {
        let mut server = ServerProcess::ceiling(args.server_cpus.as_deref())?;
        server.wait_ready(&token, &mix, Duration::from_secs(30)).await?;
        ceiling = Some(server);
    }
    let result =
        measure(&args, &context, &mix, &token, target_addr.as_deref(), saring.as_ref(), ceiling.as_ref()).await;
    if let Some(server) = saring {
        server.stop().await?;
    }
    if let Some(server) = ceiling {
        server.stop().await?;
    }
    result
}

async fn measure(
    args: &RunArgs,
    context: &RunContext,
    mix: &Arc<Mix>,
    token: &str,
    target: Option<&str>,
    saring: Option<&ServerProcess>,
    ceiling: Option<&ServerProcess>,
) -> anyhow::Result<()> {
    let say = |line: String| {
        if !args.json {
            eprintln!("{line}");
        }
    };
    if args.preload {
        if let Some(addr) = target {
            let started = Instant::now();
            let failed = load::preload(addr, token, mix, 32, &nonce()).await?;
            say(format!(
                "preloaded {} outcomes in {:.1} s ({failed} failed)",
                mix.entries.len(),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    let started = Instant::now();
    let rss_pid = args.server_pid.or(saring.map(|server| server.pid));
    let sampler = match (rss_pid, args.rss_every) {
        (Some(pid), Some(every)) => Some(sample_rss(pid, Duration::from_secs_f64(every), started)),
        _ => None,
    };
    let workload = if args.with_outcome { Workload::ScoreOutcome } else { Workload::Score };
    let duration = Duration::from_secs_f64(args.duration);
    let warmup = Duration::from_secs_f64(args.warmup);
    let window = args.window.map(Duration::from_secs_f64);
    let closed = LoadSpec {
        connections: args.connections,
        concurrency: args.concurrency,
        workload,
        stop: args.requests.map_or(Stop::After(duration), Stop::Requests),
        schedule: None,
        warmup,
        window,
    };
    // Each target with its process, when known: its scheduler timeline and its CPU time per call.
    let mut targets: Vec<(&str, &str, Option<u32>)> = Vec::new();
    if let Some(addr) = target {
        targets.push(("saring", addr, rss_pid));
    }
    if let Some(server) = ceiling {
        targets.push(("ceiling", server.addr.as_str(), Some(server.pid)));
    }
    let mut runs: Vec<RunSummary> = Vec::new();
    let mut comparisons = Vec::new();
    let mut capacities = Vec::new();
    let mut bursts = Vec::new();
    let mut last_target_result = None;
    let mut last_ceiling_result = None;
    for repeat in 0..args.repeat.max(1) {
        let rate = match (args.rate, args.rate_of_capacity, targets.first()) {
            (Some(rate), _, _) => Some(rate),
            (None, Some(share), Some((name, addr, _))) => {
                let probe = LoadSpec {
                    stop: Stop::After(Duration::from_secs_f64(args.probe_duration)),
                    warmup: Duration::from_secs(2),
                    window: None,
                    ..closed.clone()
                };
                let result = load::run(addr, token, Arc::clone(mix), probe, &nonce()).await?;
                say(format!("capacity probe ({name}, closed loop): {:.0} contacts/s", result.throughput()));
                capacities.push(result.throughput());
                Some(share * result.throughput())
            }
            _ => None,
        };
        let spec = match rate {
            None => closed.clone(),
            Some(rate) => {
                let schedule = match (args.burst_multiplier, args.burst_at) {
                    (Some(multiplier), Some(at)) => Schedule::with_burst(
                        rate,
                        duration,
                        rate * multiplier,
                        Duration::from_secs_f64(at),
                        Duration::from_secs_f64(args.burst_for),
                    ),
                    _ => Schedule::steady(rate, duration),
                };
                LoadSpec { schedule: Some(schedule), ..closed.clone() }
            }
        };
        let mut pair = Vec::new();
        for (name, addr, pid) in &targets {
            let cpus = args.server_cpus.as_deref().and_then(machine::cpu_list).unwrap_or_else(|| vec![0, 1]);
            let scheduler = window.zip(*pid).map(|(window, pid)| sample_scheduler(pid, cpus, window));
            let cpu_before = pid.and_then(machine::cpu_seconds);
            let mut result = load::run(addr, token, Arc::clone(mix), spec.clone(), &nonce()).await?;
            let cpu_after = pid.and_then(machine::cpu_seconds);
            if let Some((samples, task)) = scheduler {
                task.abort();
                result.scheduler = samples.lock().clone();
            }
            let mut summary = RunSummary::of(name, rate, &result);
            if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
                summary = summary.with_server_cpu(after - before, result.answered);
            }
            say(format!("[{}/{}] {}", repeat + 1, args.repeat.max(1), summary.text().trim_end()));
            if let (Some(window), Some(at)) = (window, args.burst_at) {
                let burst = BurstSummary::of(
                    &result,
                    window,
                    warmup,
                    Duration::from_secs_f64(at),
                    Duration::from_secs_f64(args.burst_for),
                );
                say(format!(
                    "  burst: p99 before {:.2} ms, during {:.2} ms (max {:.1} ms), after {:.2} ms; recovered {} (p99 <= {:.2} ms)",
                    burst.before.p99_ms,
                    burst.during.p99_ms,
                    burst.during.max_ms,
                    burst.after.p99_ms,
                    burst.recovery_s.map_or_else(|| "never".to_owned(), |s| format!("{s:.0} s after the burst")),
                    burst.recovery_threshold_ms
                ));
                bursts.push(serde_json::json!({ "server": name, "burst": burst }));
            }
            if *name == "ceiling" && targets.len() > 1 {
                last_ceiling_result = Some(result);
            } else {
                last_target_result = Some(result);
            }
            pair.push(summary);
        }
        if let [saring, ceiling] = pair.as_slice() {
            let comparison = CeilingComparison::of(saring, ceiling);
            say(format!(
                "  saring / ceiling throughput {:.3}; p50 {:+.3} ms, p99 {:+.3} ms",
                comparison.throughput_ratio, comparison.p50_difference_ms, comparison.p99_difference_ms
            ));
            comparisons.push(comparison);
        }
        runs.extend(pair);
    }
    if let Some((_, task)) = &sampler {
        task.abort();
    }
    let memory = sampler.map(|(curve, _)| curve.lock().clone());
    if let (Some(path), Some(result)) = (&args.timeline_csv, &last_target_result) {
        std::fs::write(path, saring_bench::report::timeline_csv(result))?;
    }
    if let (Some(path), Some(result)) = (&args.timeline_csv, &last_ceiling_result) {
        std::fs::write(saring_bench::report::beside(path, "ceiling"), saring_bench::report::timeline_csv(result))?;
    }
    if let (Some(path), Some(curve)) = (&args.rss_csv, &memory) {
        std::fs::write(path, curve.csv())?;
    }
    let memory_summary = memory.as_ref().map(|curve| curve.summary(args.warmup + args.probe_duration.min(60.0)));
    if let Some(summary) = &memory_summary {
        say(format!("server VmRSS: {summary}"));
    }
    let mut ratios: Vec<f64> = comparisons.iter().map(|comparison| comparison.throughput_ratio).collect();
    ratios.sort_by(f64::total_cmp);
    if ratios.len() > 1 {
        say(format!(
            "saring / ceiling throughput: median {:.3}, range {:.3}–{:.3}",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        ));
    }
    say(format!("load average after: {}", machine::loadavg()));
    if args.json {
        let report = serde_json::json!({
            "context": context,
            "connections": args.connections,
            "concurrency": args.concurrency,
            "workload": workload,
            "capacity_probes": capacities,
            "runs": runs,
            "ceiling_comparisons": comparisons,
            "median_ceiling_ratio": ratios.get(ratios.len() / 2),
            "bursts": bursts,
            "memory": memory_summary,
            "loadavg_after": machine::loadavg(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
