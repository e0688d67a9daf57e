//! Summaries of runs: percentiles, the ceiling ratio, burst recovery; as text and as JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::{latency_histogram, LoadResult, RpcStats};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    /// Recorded calls.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th.
    pub p90_ms: f64,
    /// 99th.
    pub p99_ms: f64,
    /// 99.9th.
    pub p999_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Percentiles {
    /// The percentiles of a histogram in microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        let at = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        Percentiles {
            count: histogram.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: histogram.max() as f64 / 1000.0,
            mean_ms: histogram.mean() / 1000.0,
        }
    }
}

/// One RPC of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RpcSummary {
    /// Percentiles.
    pub latency: Percentiles,
    /// Failed calls.
    pub errors: u64,
}

impl RpcSummary {
    fn of(stats: &RpcStats) -> Self {
        RpcSummary { latency: Percentiles::of(&stats.histogram), errors: stats.errors }
    }
}

/// One run against one server.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// "saring" or "ceiling".
    pub server: String,
    /// "closed" or "open".
    pub mode: &'static str,
    /// Offered contacts per second (open loop).
    pub offered_rate: Option<f64>,
    /// Contacts answered per second.
    pub throughput: f64,
    /// Seconds measured (warm-up excluded).
    pub measured_s: f64,
    /// ScoreContact.
    pub score: RpcSummary,
    /// RecordOutcome, when sent.
    pub outcome: Option<RpcSummary>,
    /// RecordOutcome calls answered OK per second (warm-up excluded), when sent.
    pub outcomes_per_s: Option<f64>,
    /// Degraded ScoreContact answers.
    pub degraded: u64,
    /// Degraded answers by reason (`history_timeout`, `history_stale`, …).
    pub degraded_reasons: std::collections::BTreeMap<String, u64>,
    /// The server's CPU time (user + system, /proc/PID/stat) over the whole run, warm-up included, divided by the
    /// ScoreContact answers of the whole run, in µs: what the server itself spends per call (per contact with
    /// `--with-outcome`: its RecordOutcome included). Absent when the server's process is not known.
    pub server_cpu_us_per_call: Option<f64>,
    /// Up to five error messages.
    pub error_samples: Vec<String>,
    /// The client's worst timer lag in open loop, ms.
    pub max_wake_lag_ms: f64,
}

impl RunSummary {
    /// Summarises `result`.
    pub fn of(server: &str, offered_rate: Option<f64>, result: &LoadResult) -> Self {
        RunSummary {
            server: server.to_owned(),
            mode: if offered_rate.is_some() { "open" } else { "closed" },
            offered_rate,
            throughput: result.throughput(),
            measured_s: result.measured.as_secs_f64(),
            score: RpcSummary::of(&result.score),
            outcome: result.outcome.as_ref().map(RpcSummary::of),
            outcomes_per_s: result
                .outcome
                .as_ref()
                .map(|stats| stats.histogram.len() as f64 / result.measured.as_secs_f64().max(f64::MIN_POSITIVE)),
            degraded: result.degraded,
            degraded_reasons: result.degraded_reasons.clone(),
            server_cpu_us_per_call: None,
            error_samples: result.error_samples.clone(),
            max_wake_lag_ms: result.max_wake_lag.as_secs_f64() * 1000.0,
        }
    }

    /// With the server's CPU time over the run (`cpu_s` seconds for `answered` answers).
    pub fn with_server_cpu(mut self, cpu_s: f64, answered: u64) -> Self {
        self.server_cpu_us_per_call = (answered > 0).then(|| cpu_s * 1e6 / answered as f64);
        self
    }

    /// Two lines of text.
    pub fn text(&self) -> String {
        let rate =
            self.offered_rate.map_or_else(|| "closed loop".to_owned(), |rate| format!("open loop at {rate:.0}/s"));
        let mut text = format!(
            "{:<8} {rate}: {:.0} contacts/s over {:.1} s, {} degraded",
            self.server, self.throughput, self.measured_s, self.degraded
        );
        if !self.degraded_reasons.is_empty() {
            let reasons: Vec<String> =
                self.degraded_reasons.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
            text.push_str(&format!(" ({})", reasons.join(", ")));
        }
        if let Some(cpu) = self.server_cpu_us_per_call {
            text.push_str(&format!("; server CPU {cpu:.1} µs/call"));
        }
        text.push('\n');
        text.push_str(&rpc_line("ScoreContact", &self.score));
        if let Some(outcome) = &self.outcome {
            text.push_str(&rpc_line("RecordOutcome", outcome));
            if let Some(rate) = self.outcomes_per_s {
                text.push_str(&format!("  {:<13} {rate:.0} acknowledged/s\n", "outcomes"));
            }
        }
        for sample in &self.error_samples {
            text.push_str(&format!("    error: {sample}\n"));
        }
        text
    }
}

fn rpc_line(name: &str, rpc: &RpcSummary) -> String {
    let l = &rpc.latency;
    format!(
        "  {name:<13} p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms  ({} ok, {} errors)\n",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count, rpc.errors
    )
}

/// saring against the ceiling, in one run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CeilingComparison {
    /// saring's throughput / the ceiling's.
    pub throughput_ratio: f64,
    /// saring's p50 − the ceiling's, ms.
    pub p50_difference_ms: f64,
    /// saring's p99 − the ceiling's, ms.
    pub p99_difference_ms: f64,
}

impl CeilingComparison {
    /// Compares the ScoreContact figures of two runs.
    pub fn of(saring: &RunSummary, ceiling: &RunSummary) -> Self {
        CeilingComparison {
            throughput_ratio: saring.throughput / ceiling.throughput.max(1e-9),
            p50_difference_ms: saring.score.latency.p50_ms - ceiling.score.latency.p50_ms,
            p99_difference_ms: saring.score.latency.p99_ms - ceiling.score.latency.p99_ms,
        }
    }
}

/// Latency before, during and after a burst, and how long the server took to recover.
#[derive(Debug, Clone, Serialize)]
pub struct BurstSummary {
    /// ScoreContact before the burst (after the warm-up).
    pub before: Percentiles,
    /// During the burst.
    pub during: Percentiles,
    /// From the end of the burst to the end of the run.
    pub after: Percentiles,
    /// Seconds from the end of the burst until every later window's p99 stayed under the threshold; `None` if
    /// it never did.
    pub recovery_s: Option<f64>,
    /// The threshold: twice the p99 before the burst, at least that p99 + 1 ms.
    pub recovery_threshold_ms: f64,
}

impl BurstSummary {
    /// From a run's timeline (windows of `window`).
    pub fn of(
        result: &LoadResult,
        window: Duration,
        warmup: Duration,
        burst_at: Duration,
        burst_for: Duration,
    ) -> Self {
        let windows = &result.timeline_histograms;
        let index = |at: Duration| (at.as_secs_f64() / window.as_secs_f64()).round() as usize;
        let merged = |from: usize, to: usize| {
            let mut histogram = latency_histogram(2);
            for part in windows.iter().take(to).skip(from) {
                histogram.add(part).expect("same bounds");
            }
            histogram
        };
        let (start, burst_start, burst_end) = (index(warmup), index(burst_at), index(burst_at + burst_for));
        let before = Percentiles::of(&merged(start, burst_start));
        let threshold = (2.0 * before.p99_ms).max(before.p99_ms + 1.0);
        let p99 = |histogram: &Histogram<u64>| histogram.value_at_quantile(0.99) as f64 / 1000.0;
        let recovered_at = (burst_end..windows.len())
            .find(|from| windows[*from..].iter().all(|histogram| histogram.is_empty() || p99(histogram) <= threshold));
        BurstSummary {
            before,
            during: Percentiles::of(&merged(burst_start, burst_end)),
            after: Percentiles::of(&merged(burst_end, windows.len())),
            recovery_s: recovered_at.map(|at| (at - burst_end) as f64 * window.as_secs_f64()),
            recovery_threshold_ms: threshold,
        }
    }
}

/// The timeline of a run as CSV (one row per window).
pub fn timeline_csv(result: &LoadResult) -> String {
    let mut csv = String::from(
        "start_s,completed,errors,p50_ms,p99_ms,max_ms,server_cpu_ms,server_wait_ms,server_major_faults,\
         cpus_busy_ms,cpus_stolen_ms\n",
    );
    for (index, window) in result.timeline.iter().enumerate() {
        // The server's scheduler figures of the same window (wall-clock windows from the run's start; empty when
        // not sampled): CPU time of all its threads, time they were runnable but another task had the CPU, pages
        // it had to read back; how busy its CPUs were with anything, and what the hypervisor stole from them.
        let sched = result.scheduler.get(index).map_or_else(
            || ",,,,".to_owned(),
            |(cpu, wait, faults, busy, steal)| format!("{cpu:.1},{wait:.1},{faults},{busy:.0},{steal:.0}"),
        );
        csv.push_str(&format!(
            "{:.1},{},{},{:.3},{:.3},{:.3},{sched}\n",
            window.start_s, window.completed, window.errors, window.p50_ms, window.p99_ms, window.max_ms
        ));
    }
    csv
}

/// `path` with `tag` before its extension: `run.csv` → `run.ceiling.csv`.
pub fn beside(path: &std::path::Path, tag: &str) -> std::path::PathBuf {
    match (path.file_stem(), path.extension()) {
        (Some(stem), Some(extension)) => {
            path.with_file_name(format!("{}.{tag}.{}", stem.to_string_lossy(), extension.to_string_lossy()))
        }
        _ => path.with_file_name(format!("{}.{tag}", path.file_name().unwrap_or_default().to_string_lossy())),
    }
}

/// Resident memory samples of the server.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryCurve {
    /// (seconds since the run started, VmRSS KiB).
    pub samples: Vec<(f64, u64)>,
}

impl MemoryCurve {
    /// Summary: first and last sample after `settle_s`, min, max, and the least-squares slope in KiB per minute.
    pub fn summary(&self, settle_s: f64) -> serde_json::Value {
        let settled: Vec<(f64, u64)> = self.samples.iter().copied().filter(|(at, _)| *at >= settle_s).collect();
        if settled.len() < 2 {
            return serde_json::json!({ "samples": self.samples.len() });
        }
        let n = settled.len() as f64;
        let mean_t = settled.iter().map(|(t, _)| t).sum::<f64>() / n;
        let mean_m = settled.iter().map(|(_, m)| *m as f64).sum::<f64>() / n;
        let covariance: f64 = settled.iter().map(|(t, m)| (t - mean_t) * (*m as f64 - mean_m)).sum();
        let variance: f64 = settled.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
        serde_json::json!({
            "samples": self.samples.len(),
            "settle_s": settle_s,
            "first_kib": settled[0].1,
            "last_kib": settled[settled.len() - 1].1,
            "min_kib": settled.iter().map(|(_, m)| *m).min(),
            "max_kib": settled.iter().map(|(_, m)| *m).max(),
            "slope_kib_per_min": covariance / variance.max(1e-9) * 60.0,
        })
    }

    /// CSV, one sample a row.
    pub fn csv(&self) -> String {
        let mut csv = String::from("elapsed_s,vm_rss_kib\n");
        for (at, kib) in &self.samples {
            csv.push_str(&format!("{at:.1},{kib}\n"));
        }
        csv
    }
}
