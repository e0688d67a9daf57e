//! Servers the harness starts: saring itself (the `saring` binary beside this one) and the ceiling (this binary's
//! `ceiling-server`), each a separate process, optionally pinned to CPUs with `taskset`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use saring::proto::screening_client::ScreeningClient;

use crate::mix::Mix;

/// The audit chain's secret of a saring the harness starts (PostgreSQL requires one).
const BENCH_CHAIN_SECRET: &str = "saring-bench-audit-chain-secret-not-for-production";

/// The secret for history keys of a saring the harness starts (Redis requires one).
const BENCH_HASH_SECRET: &str = "saring-bench-history-secret-not-for-production";

/// A server process the harness started; stopped (SIGTERM) and cleaned up by [`ServerProcess::stop`].
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// host:port it listens on.
    pub addr: String,
    /// Its process id (for VmRSS).
    pub pid: u32,
    scratch: Option<PathBuf>,
    redis: Option<(String, String)>,
    /// A PostgreSQL server and the scratch schema made for this run, dropped at stop.
    postgres: Option<(String, String)>,
}

/// A name part no other run of this process or another uses: the process id and the time in nanoseconds.
fn unique() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    format!("{}_{nanos}", std::process::id())
}

/// The address a `saring serve --log-format json` logged (`local_addr`) in `log`, waiting up to `timeout` for it.
/// The server binds port 0 itself: no port is chosen here and released for anyone to take meanwhile.
fn logged_address(log: &Path, child: &mut Child, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text.lines().find_map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).ok()?;
            entry["fields"]["local_addr"].as_str().map(str::to_owned)
        });
        if let Some(address) = found {
            return Ok(address);
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("saring exited with {status} before listening: {}", text.trim());
        }
        anyhow::ensure!(Instant::now() < deadline, "saring did not log its address within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pinned(program: &Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpus).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// The `saring` binary next to the running executable (cargo puts both in `target/release`).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test and bench executables live one level down, in target/<profile>/deps.
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it first (`cargo build --release -p saring`), or pass --saring-bin",
        path.display()
    );
    Ok(path)
}

impl ServerProcess {
    /// Starts saring with `history` (memory or a Redis URL; Redis keys get a prefix of their own, deleted at
    /// stop), one routing token, and a scratch case database: a SQLite file in a scratch directory, or with
    /// `database` a PostgreSQL URL (`postgres://…`, a scratch schema of its own is made there and dropped at stop)
    /// or a SQLite URL used as it is.
    pub fn saring(
        binary: &Path,
        history: &str,
        database: Option<&str>,
        cpus: Option<&str>,
        token: &str,
    ) -> anyhow::Result<ServerProcess> {
        let scratch = std::env::temp_dir().join(format!("saring-bench-{}", unique()));
        std::fs::create_dir_all(&scratch)?;
        let mut postgres = None;
        let database_url = match database {
            Some(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => {
                let schema = format!("saring_bench_{}", unique());
                psql(url, &format!("CREATE SCHEMA {schema}"))?;
                let separator = if url.contains('?') { '&' } else { '?' };
                postgres = Some((url.to_owned(), schema.clone()));
                format!("{url}{separator}options=-c%20search_path%3D{schema}")
            }
            Some(url) => url.to_owned(),
            None => format!("sqlite://{}/cases.db", scratch.display()),
        };
        let config = scratch.join("saring.toml");
        std::fs::write(
            &config,
            format!(
                "[[auth.tokens]]\nname = \"saring-bench\"\nrole = \"routing\"\nsha256 = \"{}\"\n",
                saring::auth::token_digest(token)
            ),
        )?;
        let prefix = format!("saring-bench-{}", unique());
        let log = std::fs::File::create(scratch.join("saring.log"))?;
        let mut child = pinned(binary, cpus)
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--history", history, "--database-url"])
            .arg(&database_url)
            .env("SARING__PRIVACY__HASH_SECRET", BENCH_HASH_SECRET)
            .env("SARING__AUDIT__CHAIN_SECRET", BENCH_CHAIN_SECRET)
            .env("SARING__AUDIT__ANCHOR_PATH", scratch.join("audit-anchor"))
            .env("SARING__HISTORY__REDIS_PREFIX", &prefix)
            .env("SARING__CONSOLE__ENABLED", "false")
            .env("SARING__HISTORY__JOURNAL_PATH", scratch.join("outcomes.journal"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let redis = history.starts_with("redis://").then(|| (history.to_owned(), prefix));
        let addr = match logged_address(&scratch.join("saring.log"), &mut child, Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        };
        Ok(ServerProcess { pid: child.id(), child, addr, scratch: Some(scratch), redis, postgres })
    }

    /// Starts this binary's `ceiling-server`.
    pub fn ceiling(cpus: Option<&str>) -> anyhow::Result<ServerProcess> {
        let mut child = pinned(&std::env::current_exe()?, cpus)
            .args(["ceiling-server", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        // It binds port 0 and prints "listening ADDR" once.
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening ").map(str::to_owned) else {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("ceiling-server did not say where it listens: {line:?}");
        };
        Ok(ServerProcess { pid: child.id(), child, addr, scratch: None, redis: None, postgres: None })
    }

    /// Waits until a ScoreContact is answered OK (at most `timeout`).
    pub async fn wait_ready(&mut self, token: &str, mix: &Mix, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("server exited with {status} before answering{}", self.log_tail());
            }
            let attempt = async {
                let mut client = ScreeningClient::connect(format!("http://{}", self.addr)).await?;
                let mut request = tonic::Request::new(mix.entry(0).contact.clone());
                request.metadata_mut().insert("authorization", bearer.clone());
                client.score_contact(request).await?;
                anyhow::Ok(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() >= deadline => {
                    anyhow::bail!("server at {} not ready after {timeout:?}: {error}{}", self.addr, self.log_tail())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn log_tail(&self) -> String {
        let Some(scratch) = &self.scratch else { return String::new() };
        let log = std::fs::read_to_string(scratch.join("saring.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        format!("; its log ends:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    }

    /// SIGTERM, a bounded wait, then SIGKILL; deletes its Redis keys and scratch directory.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                self.child.kill()?;
                self.child.wait()?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some((url, prefix)) = self.redis.take() {
            delete_redis_prefix(&url, &prefix).await?;
        }
        if let Some(scratch) = self.scratch.take() {
            // A run with `SARING__CAPTURE__DIR` set: what the capture wrote and dropped (a capture-cost figure is
            // only valid with nothing dropped).
            let log = std::fs::read_to_string(scratch.join("saring.log")).unwrap_or_default();
            for line in log.lines().filter(|line| line.contains("capture closed")) {
                eprintln!("saring: {line}");
            }
            std::fs::remove_dir_all(scratch).ok();
        }
        if let Some((url, schema)) = self.postgres.take() {
            psql(&url, &format!("DROP SCHEMA {schema} CASCADE"))?;
        }
        Ok(())
    }
}

/// Runs one SQL statement with `psql` (the harness has no database driver of its own).
fn psql(url: &str, statement: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-d", url, "-c", statement])
        .stdin(Stdio::null())
        .output()
        .map_err(|error| anyhow::anyhow!("running psql for {statement:?}: {error} (is psql installed?)"))?;
    anyhow::ensure!(
        output.status.success(),
        "psql {statement:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Deletes every key under `prefix:` (SCAN + DEL; never FLUSHDB). Returns how many.
pub async fn delete_redis_prefix(url: &str, prefix: &str) -> anyhow::Result<u64> {
    anyhow::ensure!(!prefix.is_empty(), "refusing to delete keys under an empty prefix");
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}:*");
    let (mut cursor, mut deleted) = (0u64, 0u64);
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(2000)
            .query_async(&mut connection)
            .await?;
        if !keys.is_empty() {
            deleted += redis::cmd("UNLINK").arg(&keys).query_async::<u64>(&mut connection).await?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
