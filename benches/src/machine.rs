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

/// A process's scheduler totals over all its threads (Linux): nanoseconds on a CPU and nanoseconds runnable but
/// waiting for one (another thread or process had its CPU), from `/proc/PID/task/*/schedstat`; and its major page
/// faults (a page that had to be read back, e.g. code the kernel paged out), from `/proc/PID/stat`.
pub fn scheduler_ns(pid: u32) -> Option<(u64, u64, u64)> {
    let mut totals = (0u64, 0u64, 0u64);
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(line) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        let mut fields = line.split_whitespace().map(|field| field.parse::<u64>().unwrap_or(0));
        totals.0 += fields.next().unwrap_or(0);
        totals.1 += fields.next().unwrap_or(0);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state is field 3, majflt field 12.
    let after = stat.rsplit_once(')')?.1;
    totals.2 = after.split_whitespace().nth(9).and_then(|field| field.parse().ok()).unwrap_or(0);
    Some(totals)
}

/// The CPUs of a `taskset -c` list ("0", "0-1", "0,2"); `None` for an unparsable list.
pub fn cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((first, last)) => cpus.extend(first.trim().parse::<usize>().ok()?..=last.trim().parse().ok()?),
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    Some(cpus)
}

/// Milliseconds the listed CPUs were busy (any task, kernel included) and stolen by the hypervisor since boot, from
/// `/proc/stat` (USER_HZ ticks, so 10 ms resolution).
pub fn cpu_busy_ms(cpus: &[usize]) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let (mut busy, mut steal) = (0u64, 0u64);
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields.next().and_then(|name| name.strip_prefix("cpu")).and_then(|n| n.parse().ok()) else {
            continue;
        };
        if !cpus.contains(&cpu) {
            continue;
        }
        let ticks: Vec<u64> = fields.map(|field| field.parse().unwrap_or(0)).collect();
        // user nice system idle iowait irq softirq steal …
        busy += [0, 1, 2, 5, 6].iter().filter_map(|index| ticks.get(*index)).sum::<u64>();
        steal += ticks.get(7).copied().unwrap_or(0);
    }
    let ms_per_tick = 1000.0 / 100.0;
    Some((busy as f64 * ms_per_tick, steal as f64 * ms_per_tick))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_as_taskset_writes_them() {
        assert_eq!(cpu_list("0"), Some(vec![0]));
        assert_eq!(cpu_list("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(cpu_list("x"), None);
    }

    #[test]
    fn a_process_cpu_time_is_read_and_grows_with_work() {
        let before = cpu_seconds(std::process::id()).expect("this process's /proc stat");
        let mut sum = 0u64;
        let started = std::time::Instant::now();
        while cpu_seconds(std::process::id()).unwrap() < before + 0.05 {
            for index in 0..100_000u64 {
                sum = sum.wrapping_add(index * index);
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(60), "no CPU time was counted");
        }
        assert!(sum > 0);
        assert!(cpu_seconds(u32::MAX).is_none());
    }
}
