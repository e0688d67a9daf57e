//! Real processes: the `saring` binary, and a private `redis-server` on its own port.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

/// A `saring serve` process with JSON logs, and the address it logged.
pub struct SaringProcess {
    pub child: Child,
    pub address: String,
    console: Option<String>,
    log: Option<JoinHandle<Vec<String>>>,
}

impl SaringProcess {
    /// Starts `saring serve --listen 127.0.0.1:0 --log-format json` plus `arguments`, with `environment`, the
    /// test tokens of every role, and a fresh SQLite case database (unless `arguments` name another).
    pub fn spawn(arguments: &[&str], environment: &[(&str, &str)]) -> Self {
        Self::spawn_configured("", arguments, environment)
    }

    /// [`SaringProcess::spawn`] with `extra` appended to its config file (TOML).
    pub fn spawn_configured(extra: &str, arguments: &[&str], environment: &[(&str, &str)]) -> Self {
        let scratch = std::env::temp_dir().join(unique_prefix("process").replace(':', "-"));
        std::fs::create_dir_all(&scratch).unwrap();
        let config = scratch.join("saring.toml");
        std::fs::write(
            &config,
            format!(
                "[cases]\ndatabase_url = \"sqlite://{}/cases.db\"\n{}{extra}",
                scratch.display(),
                super::auth_toml()
            ),
        )
        .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_saring"));
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--console-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--config",
            ])
            .arg(&config)
            .args(arguments);
        for (key, value) in environment {
            command.env(key, value);
        }
        Self::start(command)
    }

    /// Runs `command` (a `saring serve` with JSON logs, however it is launched) and waits for the address it logs.
    pub fn start(mut command: Command) -> Self {
        let mut child = command.stderr(Stdio::piped()).spawn().expect("the saring binary runs");
        let stderr = child.stderr.take().unwrap();
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let (console_tx, console_rx) = std::sync::mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut log = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) {
                    if let Some(address) = entry["fields"]["local_addr"].as_str() {
                        let _ = address_tx.send(address.to_owned());
                    }
                    if let Some(address) = entry["fields"]["console_addr"].as_str() {
                        let _ = console_tx.send(address.to_owned());
                    }
                }
                log.push(line);
            }
            log
        });
        let address = address_rx.recv_timeout(Duration::from_secs(30)).expect("saring logs its address");
        let console = console_rx.recv_timeout(Duration::from_secs(5)).ok();
        SaringProcess { child, address, console, log: Some(log) }
    }

    /// The web console's URL.
    pub fn console_url(&self) -> String {
        format!("http://{}", self.console.as_deref().expect("the console is enabled"))
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Sends SIGTERM, waits for the exit, returns whether it exited cleanly and its log lines.
    pub fn terminate(mut self) -> (bool, Vec<String>) {
        let killed = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(killed.success());
        let exit = self.child.wait().unwrap();
        let log = self.log.take().unwrap().join().unwrap();
        (exit.success(), log)
    }
}

impl Drop for SaringProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private Redis on its own port, so a test can stop and restart it without touching anyone else's.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts `redis-server` on `port` (no persistence) and waits until it accepts connections.
    pub fn start_on(port: u16) -> Self {
        Self::launch(port, &["--appendonly", "no"])
    }

    /// Starts `redis-server` on `port` with an append-only file fsynced on every write in `directory`, so a kill
    /// and restart keeps every write it acknowledged.
    pub fn start_persistent_on(port: u16, directory: &std::path::Path) -> Self {
        std::fs::create_dir_all(directory).unwrap();
        Self::launch(port, &["--appendonly", "yes", "--appendfsync", "always", "--dir", directory.to_str().unwrap()])
    }

    pub(crate) fn launch(port: u16, persistence: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(persistence)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        PrivateRedis { port, child: Some(child) }
    }

    /// Starts on a free port.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (its data is gone: no persistence, like a Redis crash without AOF).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("saring-test:{name}:{}:{nanos}", std::process::id())
}

/// A private three-primary Redis Cluster on loopback ports.
pub struct PrivateRedisCluster {
    pub ports: Vec<u16>,
    nodes: Vec<PrivateRedis>,
    directory: std::path::PathBuf,
}

impl PrivateRedisCluster {
    /// Starts three cluster-enabled `redis-server`s, joins them with `redis-cli --cluster create`, and waits until
    /// the cluster reports `cluster_state:ok`.
    pub fn start() -> Self {
        let directory = std::env::temp_dir().join(unique_prefix("cluster").replace(':', "-"));
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes = ports
            .iter()
            .map(|port| {
                let node_directory = directory.join(port.to_string());
                std::fs::create_dir_all(&node_directory).unwrap();
                PrivateRedis::launch(
                    *port,
                    &["--appendonly", "no", "--cluster-enabled", "yes", "--dir", node_directory.to_str().unwrap()],
                )
            })
            .collect();
        let addresses: Vec<String> = ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed (scripts/services.sh)");
        assert!(created.success(), "redis-cli --cluster create failed");
        for _ in 0..200 {
            let info =
                Command::new("redis-cli").args(["-p", &ports[0].to_string(), "cluster", "info"]).output().unwrap();
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        PrivateRedisCluster { ports, nodes, directory }
    }

    /// `redis-cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
        format!("redis-cluster://{}", nodes.join(","))
    }
}

impl Drop for PrivateRedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        std::fs::remove_dir_all(&self.directory).ok();
    }
}
