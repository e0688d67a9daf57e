//! What a report says about where it ran: the command, the commit, the machine and its load.

use std::process::Command;

/// The context printed above every report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunContext {
    /// The command line as typed.
    pub command: String,
    /// `git rev-parse --short HEAD`, with `-dirty` when the work tree has changes.
    pub commit: String,
    /// `nproc`.
    pub nproc: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu_model: String,
    /// /proc/loadavg before the run.
    pub loadavg_before: String,
    /// UTC time the run started.
    pub started_at: String,
}

impl RunContext {
    /// The context of this process.
    pub fn current() -> RunContext {
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .output()
                .ok()
                .filter(|output| output.status.success())
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        let mut commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
        if git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|changes| !changes.is_empty()) {
            commit.push_str("-dirty");
        }
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split(':').nth(1))
                    .map(|model| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        RunContext {
            command,
            commit,
            nproc: std::thread::available_parallelism().map_or(0, usize::from).max(online_cpus()),
            cpu_model,
            loadavg_before: loadavg(),
            started_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        }
    }
}

/// Online CPUs of the machine (not of this process's affinity mask).
fn online_cpus() -> usize {
    Command::new("nproc")
        .arg("--all")
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// The first three fields of /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU time a process has used so far, user and system, in seconds (`utime + stime` of /proc/PID/stat over
/// `CLK_TCK`): sampled before and after a run, the server's own cost of the calls it answered.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks_per_s())
}

/// `getconf CLK_TCK` (the unit of /proc/PID/stat times), 100 if it cannot be read.
fn clock_ticks_per_s() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
            .filter(|ticks: &f64| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// Resident memory of a process in KiB (VmRSS in /proc/PID/status).
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|line| line.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_process_cpu_time_is_read_and_grows_with_work() {
        let before = super::cpu_seconds(std::process::id()).expect("this process's /proc stat");
        let mut sum = 0u64;
        let started = std::time::Instant::now();
        while super::cpu_seconds(std::process::id()).unwrap() < before + 0.05 {
            for index in 0..100_000u64 {
                sum = sum.wrapping_add(index * index);
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(60), "no CPU time was counted");
        }
        assert!(sum > 0);
        assert!(super::cpu_seconds(u32::MAX).is_none());
    }
}
