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
        Self::try_launch(port, persistence)
            .unwrap_or_else(|| panic!("redis-server could not listen on 127.0.0.1:{port} (is the port taken?)"))
    }

    /// Starts `redis-server` on `port`; `None` when it exits instead (the port was taken meanwhile). It is ready
    /// when the server answering on the port is this child (its `process_id`), never another process's.
    fn try_launch(port: u16, persistence: &[&str]) -> Option<Self> {
        // Its own working directory under the temp dir unless given one: a replica's full sync writes dump.rdb
        // there, and a Redis loads a dump.rdb it finds at start-up.
        let mut directory = Vec::new();
        if !persistence.contains(&"--dir") {
            let own = std::env::temp_dir().join(unique_prefix(&format!("redis-{port}")).replace(':', "-"));
            std::fs::create_dir_all(&own).unwrap();
            directory = vec!["--dir".to_owned(), own.display().to_string()];
        }
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(persistence)
            .args(&directory)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh)");
        let mut redis = PrivateRedis { port, child: Some(child) };
        for _ in 0..400 {
            let child = redis.child.as_mut().unwrap();
            if child.try_wait().ok().flatten().is_some() {
                redis.child = None;
                return None;
            }
            if redis_process_id(port) == Some(child.id()) {
                return Some(redis);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Some(redis)
    }

    /// Starts on a free port: a port taken between choosing it and binding it is simply another try.
    pub fn start() -> Self {
        Self::start_with(&["--appendonly", "no"])
    }

    /// [`PrivateRedis::start_persistent_on`] on a free port (a restart then uses [`PrivateRedis::port`]).
    pub fn start_persistent(directory: &std::path::Path) -> Self {
        std::fs::create_dir_all(directory).unwrap();
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always", "--dir", directory.to_str().unwrap()])
    }

    /// Starts with `arguments` on a free port, trying another when one was taken meanwhile.
    pub fn start_with(arguments: &[&str]) -> Self {
        for _ in 0..5 {
            if let Some(redis) = Self::try_launch(free_port(), arguments) {
                return redis;
            }
        }
        panic!("redis-server could not listen on any of five free ports")
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server's process (SIGSTOP) without closing its sockets: a Redis that stalls. Commands sent now
    /// are answered after [`PrivateRedis::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Continues a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server is running");
        let status = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// Kills the server (its data is gone: no persistence, like a Redis crash without AOF).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused server is continued first, so it dies at once either way.
            Command::new("kill").args(["-CONT", &child.id().to_string()]).status().ok();
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

/// The `process_id` of the Redis answering on `port`, if one does.
fn redis_process_id(port: u16) -> Option<u32> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    stream.write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n").ok()?;
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&reply).contains("process_id:") || !reply.ends_with(b"\r\n") {
        let read = stream.read(&mut buffer).ok()?;
        if read == 0 {
            break;
        }
        reply.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&reply);
    text.lines().find_map(|line| line.strip_prefix("process_id:")).and_then(|pid| pid.trim().parse().ok())
}

/// A Redis for a test that needs no control over the server: `REDIS_URL` when set (the test's keys go under a
/// unique prefix), else a private server that lives as long as this.
pub struct TestRedis {
    pub url: String,
    _private: Option<PrivateRedis>,
}

impl TestRedis {
    pub fn new() -> Self {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.trim().is_empty() => TestRedis { url, _private: None },
            _ => {
                let private = PrivateRedis::start();
                TestRedis { url: private.url(), _private: Some(private) }
            }
        }
    }
}

/// A port nothing listened on a moment ago, for a server that cannot bind port 0 and report its port (Redis):
/// whoever starts one on it checks that its own child answers there, and tries another port when not
/// ([`PrivateRedis::start`]). For a port that must stay unanswered, use [`ClosedPort`].
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback port held bound but not listening for as long as this lives: connections to it are refused, and no
/// other process can bind it meanwhile (unlike a port chosen and released, which anyone may take).
pub struct ClosedPort {
    pub port: u16,
    _socket: socket2::Socket,
}

impl ClosedPort {
    /// Binds a fresh loopback port without listening on it.
    pub fn new() -> Self {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        ClosedPort { port, _socket: socket }
    }
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("saring-test:{name}:{}:{nanos}", std::process::id())
}

/// A private three-primary Redis Cluster on loopback ports, optionally with replicas.
pub struct PrivateRedisCluster {
    pub ports: Vec<u16>,
    nodes: Vec<Option<PrivateRedis>>,
    bus_ports: Vec<u16>,
    node_timeout_ms: u64,
    directory: std::path::PathBuf,
}

impl PrivateRedisCluster {
    /// Three primaries, no replicas.
    pub fn start() -> Self {
        Self::start_with(0, 15_000)
    }

    /// Starts `3 * (1 + replicas)` cluster-enabled `redis-server`s (each with an explicit cluster bus port, so
    /// none depends on port + 10000 being free), joins them with `redis-cli --cluster create --cluster-replicas`,
    /// and waits until every node reports `cluster_state:ok`. `node_timeout_ms` is how long a primary may be
    /// unreachable before its replica is promoted.
    pub fn start_with(replicas: usize, node_timeout_ms: u64) -> Self {
        let directory = std::env::temp_dir().join(unique_prefix("cluster").replace(':', "-"));
        let count = 3 * (1 + replicas);
        let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let bus_ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let mut cluster = PrivateRedisCluster { ports, nodes: Vec::new(), bus_ports, node_timeout_ms, directory };
        for index in 0..count {
            // A port (or bus port) taken between choosing and binding it: that node tries fresh ones.
            let mut node = cluster.try_launch_node(index);
            for _ in 0..4 {
                if node.is_some() {
                    break;
                }
                (cluster.ports[index], cluster.bus_ports[index]) = (free_port(), free_port());
                node = cluster.try_launch_node(index);
            }
            cluster.nodes.push(Some(node.expect("a cluster node could not listen on any of five port pairs")));
        }
        let ports = cluster.ports.clone();
        let addresses: Vec<String> = ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed (scripts/services.sh)");
        assert!(created.success(), "redis-cli --cluster create failed");
        for port in &ports {
            assert!(cluster.wait_until(*port, Duration::from_secs(20), |info| info.contains("cluster_state:ok")));
        }
        // Replicas are attached after the slots are assigned: wait until each has synced with its primary.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let synced = ports
                .iter()
                .filter(|port| cluster.cli(**port, &["info", "replication"]).contains("master_link_status:up"))
                .count();
            if synced == 3 * replicas {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{synced} of {} replicas synced", 3 * replicas);
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn launch_node(&self, index: usize) -> PrivateRedis {
        self.try_launch_node(index)
            .unwrap_or_else(|| panic!("cluster node {index} could not listen on 127.0.0.1:{}", self.ports[index]))
    }

    /// Starts node `index` on its ports; `None` when one of them was taken.
    fn try_launch_node(&self, index: usize) -> Option<PrivateRedis> {
        let port = self.ports[index];
        let node_directory = self.directory.join(port.to_string());
        std::fs::create_dir_all(&node_directory).unwrap();
        PrivateRedis::try_launch(
            port,
            &[
                "--appendonly",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &self.bus_ports[index].to_string(),
                "--cluster-node-timeout",
                &self.node_timeout_ms.to_string(),
                // Replicas sync at once (the default waits 5 s for more replicas): a replica that never synced
                // refuses to be promoted.
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                node_directory.to_str().unwrap(),
            ],
        )
    }

    /// Runs `redis-cli -p PORT ARGS…` and returns its output.
    pub fn cli(&self, port: u16, arguments: &[&str]) -> String {
        let output = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(arguments).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Polls `CLUSTER INFO` on `port` until `ready` holds; false when `timeout` passes first.
    pub fn wait_until(&self, port: u16, timeout: Duration, ready: impl Fn(&str) -> bool) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if ready(&self.cli(port, &["cluster", "info"])) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The primary serving slot 0 and its replica (from `CLUSTER NODES`).
    pub fn slot_zero_primary_and_replica(&self) -> (u16, Option<u16>) {
        let nodes = self.cli(self.ports[0], &["cluster", "nodes"]);
        let port_of = |address: &str| address.split(['@', ':']).nth(1).unwrap().parse::<u16>().unwrap();
        let primary = nodes
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|fields| fields[2].contains("master") && fields.get(8).is_some_and(|slots| slots.starts_with("0-")))
            .expect("a primary serves slot 0");
        let replica = nodes
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|fields| fields[3] == primary[0])
            .map(|fields| port_of(fields[1]));
        (port_of(primary[1]), replica)
    }

    /// SIGKILLs the node on `port` (its unreplicated writes are gone, as in a crash).
    pub fn kill(&mut self, port: u16) {
        let index = self.ports.iter().position(|candidate| *candidate == port).expect("a node of this cluster");
        if let Some(mut node) = self.nodes[index].take() {
            node.stop();
        }
    }

    /// Starts the node on `port` again with its `nodes.conf`: a primary that was failed over rejoins as a replica.
    pub fn restart(&mut self, port: u16) {
        let index = self.ports.iter().position(|candidate| *candidate == port).expect("a node of this cluster");
        let node = self.launch_node(index);
        self.nodes[index] = Some(node);
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
