//! What capture costs, and a capture to fit from (issue 13's benchmarks).
//!
//! Simulates a log (`--callers`, `--days`, `--seed`), then feeds every contact and outcome through a screener
//! (in-memory history, shipped model, one thread, no gRPC) twice: once without capture and once capturing into
//! `--out DIR`. Prints the scoring thread's CPU time per event in both runs (the difference is what capture adds on the
//! scoring path), and the CPU per record of the capture's writer thread (appending spools) and of its converter
//! thread (spools to Parquet), each as the kernel counts it for that thread, not wall time. The capture left in `--out` is what `saring-train fit --capture DIR` reads.
//!
//! ```sh
//! cargo run --release -p saring --example capture_cost -- --callers 60000 --days 21 --out /tmp/capture-1m
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use saring::backtest::{contact_of, report_of};
use saring::capture::thread_cpu_seconds;
use saring::config::Settings;
use saring::screening::Contact;
use saring::server::{build_screener, load_models, memory_store, with_capture};
use saring_training::events::Event;
use saring_training::simulate::{simulate, SimulationConfig};

struct Arguments {
    callers: u32,
    days: u32,
    seed: u64,
    out: PathBuf,
}

fn arguments() -> Result<Arguments, String> {
    let mut parsed = Arguments { callers: 20_000, days: 14, seed: 13, out: PathBuf::new() };
    let mut arguments = std::env::args().skip(1);
    while let Some(flag) = arguments.next() {
        let value = arguments.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--callers" => parsed.callers = value.parse().map_err(|_| format!("--callers: {value}"))?,
            "--days" => parsed.days = value.parse().map_err(|_| format!("--days: {value}"))?,
            "--seed" => parsed.seed = value.parse().map_err(|_| format!("--seed: {value}"))?,
            "--out" => parsed.out = PathBuf::from(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if parsed.out.as_os_str().is_empty() {
        return Err("--out DIR is required (the capture is written there)".into());
    }
    Ok(parsed)
}

/// Scores and records `events` through a screener built from `settings`; returns (contacts, outcomes, seconds).
async fn replay(
    settings: &Settings,
    events: &[Event],
) -> Result<(u64, u64, f64, Option<(Option<f64>, Option<f64>)>), String> {
    let models = Arc::new(load_models(settings).map_err(|error| error.to_string())?);
    let (screener, writer) =
        with_capture(settings, build_screener(settings, models, memory_store(settings))).map_err(|e| e.to_string())?;
    let mut contacts: HashMap<String, Contact> = HashMap::new();
    let (mut scored, mut recorded) = (0, 0);
    let started = thread_cpu_seconds().unwrap_or(f64::NAN);
    for event in events {
        match event {
            Event::Contact(event) => {
                let Some(contact) = contact_of(event) else { continue };
                contacts.insert(contact.contact_id.clone(), contact.clone());
                screener.score(contact).await;
                scored += 1;
            }
            Event::Outcome(outcome) => {
                let Some(contact) = contacts.remove(&outcome.contact_id) else { continue };
                screener.record_outcome(&report_of(outcome, contact)).await.map_err(|error| error.to_string())?;
                recorded += 1;
            }
        }
    }
    let elapsed = thread_cpu_seconds().unwrap_or(f64::NAN) - started;
    let writer_cpu = match writer {
        Some(writer) => {
            let closing = Instant::now();
            let report = writer.close();
            println!(
                "capture: {} records written to {} file(s), {} dropped (queue full), {} failed; closing took {:.2} s",
                report.written,
                report.files.len(),
                screener.metrics().capture_counters().dropped.get(),
                report.failed,
                closing.elapsed().as_secs_f64()
            );
            Some((report.cpu_seconds, report.converter_cpu_seconds))
        }
        None => None,
    };
    Ok((scored, recorded, elapsed, writer_cpu))
}

fn main() -> Result<(), String> {
    let arguments = arguments()?;
    let config = SimulationConfig {
        seed: arguments.seed,
        days: arguments.days,
        callers: arguments.callers,
        ..Default::default()
    };
    let simulating = Instant::now();
    let events = simulate(&config);
    println!(
        "simulated {} events ({} callers, {} days, seed {}) in {:.1} s",
        events.len(),
        config.callers,
        config.days,
        config.seed,
        simulating.elapsed().as_secs_f64()
    );
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|error| error.to_string())?;

    let plain = Settings::default();
    let (contacts, outcomes, without, _) = runtime.block_on(replay(&plain, &events))?;
    println!(
        "without capture: {contacts} contacts, {outcomes} outcomes in {without:.2} s of the scoring thread's CPU ({:.2} µs per event)",
        without * 1e6 / (contacts + outcomes) as f64
    );

    std::fs::create_dir_all(&arguments.out).map_err(|error| format!("{}: {error}", arguments.out.display()))?;
    let mut capturing = Settings::default();
    capturing.capture.dir = Some(arguments.out.clone());
    capturing.capture.replica = Some("capture-cost".into());
    let (_, _, with, writer_cpu) = runtime.block_on(replay(&capturing, &events))?;
    let records = (contacts + outcomes) as f64;
    println!(
        "with capture:    same events in {with:.2} s of its CPU ({:.2} µs per event): the scoring path pays {:+.2} µs per event",
        with * 1e6 / records,
        (with - without) * 1e6 / records
    );
    if let Some((writer, converter)) = writer_cpu {
        if let Some(cpu) = writer {
            println!("writer thread CPU (spooling):    {cpu:.2} s, {:.2} µs per record", cpu * 1e6 / records);
        }
        if let Some(cpu) = converter {
            println!("converter thread CPU (Parquet): {cpu:.2} s, {:.2} µs per record", cpu * 1e6 / records);
        }
    }
    Ok(())
}
