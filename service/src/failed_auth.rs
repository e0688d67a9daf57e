//! Failed authentication, at every door: each one is logged (the peer's address, the door, why — never the
//! presented token, at most the first 8 hex digits of its SHA-256) and counted for `/metrics`; and a peer address
//! with too many failures in a window is throttled until the window passes: further attempts through either door
//! are answered RESOURCE_EXHAUSTED (gRPC, with `grpc-retry-pushback-ms`) or 429 (console, with `Retry-After`)
//! whatever token they carry, so the answer says nothing about it (who is exempt: `auth::throttle_exempt`).
//!
//! Peers are counted by IP address (an IPv6 address by its /64, which one host usually owns whole), in a map
//! capped at `max_peers` that forgets the oldest window first, under one short `parking_lot` lock (never held
//! across an await).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ConfigError;

/// Where an authentication was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Door {
    /// A gRPC call (bearer token or client certificate).
    Grpc,
    /// The console's sign-in.
    Console,
}

impl Door {
    /// Every door.
    pub const ALL: [Door; 2] = [Door::Grpc, Door::Console];

    /// The door's name in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Grpc => "grpc",
            Door::Console => "console",
        }
    }

    fn index(self) -> usize {
        match self {
            Door::Grpc => 0,
            Door::Console => 1,
        }
    }
}

/// `[auth.failures]`: throttling of peers that fail to authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailedAuthSettings {
    /// Failed authentications from one peer address within `window_s` after which its further attempts are
    /// refused until the window ends; 0: never throttle (failures are still logged and counted).
    pub max_failures: u32,
    /// Seconds of a peer's window, from its first failure.
    pub window_s: u64,
    /// Peer addresses remembered at once; beyond that the oldest window is forgotten first.
    pub max_peers: usize,
    /// Addresses of proxies in front of saring (a TLS-terminating proxy before the console, an L7 gRPC proxy)
    /// whose `X-Forwarded-For` names the real peer; a connection from any other address is its own peer.
    pub trusted_proxies: Vec<String>,
}

impl Default for FailedAuthSettings {
    fn default() -> Self {
        FailedAuthSettings { max_failures: 20, window_s: 300, max_peers: 10_000, trusted_proxies: Vec::new() }
    }
}

impl FailedAuthSettings {
    /// Checks the values, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError(message));
        if self.max_failures > 1_000_000 {
            return fail(format!("auth.failures.max_failures: {} must be at most 1000000", self.max_failures));
        }
        if self.window_s == 0 || self.window_s > 86_400 {
            return fail(format!("auth.failures.window_s: {} must be between 1 and 86400", self.window_s));
        }
        if self.max_peers == 0 || self.max_peers > 10_000_000 {
            return fail(format!("auth.failures.max_peers: {} must be between 1 and 10000000", self.max_peers));
        }
        for (index, proxy) in self.trusted_proxies.iter().enumerate() {
            if proxy.parse::<IpAddr>().is_err() {
                return fail(format!("auth.failures.trusted_proxies[{index}]: {proxy:?} is not an IP address"));
            }
        }
        Ok(())
    }
}

/// One peer's window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// The peers being counted, and the order their windows started in (for expiry and eviction).
#[derive(Debug, Default)]
struct Peers {
    windows: HashMap<IpAddr, Window>,
    /// `(peer, window start)` in start order; an entry whose window was replaced is skipped when it comes up.
    order: VecDeque<(IpAddr, Instant)>,
}

impl Peers {
    /// Forgets windows that ended before `now`.
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some(&(peer, started)) = self.order.front() {
            if now.saturating_duration_since(started) < window {
                break;
            }
            self.order.pop_front();
            if self.windows.get(&peer).is_some_and(|current| current.started == started) {
                self.windows.remove(&peer);
            }
        }
    }

    /// Forgets the oldest window still held.
    fn evict_oldest(&mut self) {
        while let Some((peer, started)) = self.order.pop_front() {
            if self.windows.get(&peer).is_some_and(|current| current.started == started) {
                self.windows.remove(&peer);
                return;
            }
        }
    }
}

/// What one failure did to its peer's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Failures from the peer in its current window (0 when the peer is unknown or throttling is off).
    pub failures: u32,
    /// Whether this failure started the peer's throttling.
    pub throttled_now: bool,
}

/// Failed authentications: counts per door, and per-peer windows.
pub struct FailedAuth {
    max_failures: u32,
    window: Duration,
    max_peers: usize,
    trusted_proxies: Vec<IpAddr>,
    peers: Mutex<Peers>,
    failures: [AtomicU64; 2],
    throttled: [AtomicU64; 2],
}

impl std::fmt::Debug for FailedAuth {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FailedAuth")
            .field("max_failures", &self.max_failures)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Default for FailedAuth {
    /// Logs and counts, never throttles (tests and embedding; `saring serve` applies `[auth.failures]`).
    fn default() -> Self {
        FailedAuth::new(&FailedAuthSettings { max_failures: 0, ..FailedAuthSettings::default() })
    }
}

/// The first 8 hex digits of the SHA-256 of what was presented: enough to tell attempts apart in a log, nothing
/// to recover a token from.
pub fn fingerprint(presented: &[u8]) -> String {
    hex::encode(&Sha256::digest(presented)[..4])
}

/// The key a peer is counted under: an IPv4 address (IPv4-mapped IPv6 included) as is, an IPv6 address by its
/// /64.
fn peer_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(Ipv6Addr::new(segments[0], segments[1], segments[2], segments[3], 0, 0, 0, 0))
            }
        },
    }
}

impl FailedAuth {
    /// As `settings` say (validated with the configuration).
    pub fn new(settings: &FailedAuthSettings) -> Self {
        FailedAuth {
            max_failures: settings.max_failures,
            window: Duration::from_secs(settings.window_s.max(1)),
            max_peers: settings.max_peers.max(1),
            trusted_proxies: settings.trusted_proxies.iter().filter_map(|proxy| proxy.parse().ok()).collect(),
            peers: Mutex::new(Peers::default()),
            failures: Default::default(),
            throttled: Default::default(),
        }
    }

    /// The peer of a request that came from `remote` with `forwarded` (`X-Forwarded-For`): the connection's
    /// address, unless that is a trusted proxy, in which case the nearest forwarded address that is not one.
    pub fn peer(&self, remote: Option<SocketAddr>, forwarded: Option<&str>) -> Option<IpAddr> {
        let remote = remote?.ip();
        if !self.trusted_proxies.contains(&remote) {
            return Some(remote);
        }
        let Some(forwarded) = forwarded else { return Some(remote) };
        for hop in forwarded.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(address) if self.trusted_proxies.contains(&address) => continue,
                Ok(address) => return Some(address),
                // Whatever stands before an address that cannot be read is not to be trusted either.
                Err(_) => return Some(remote),
            }
        }
        Some(remote)
    }

    /// `Err(time left)` when `peer` is throttled at `door` (the attempt is counted as throttled, not as a failure).
    pub fn check(&self, peer: Option<IpAddr>, door: Door) -> Result<(), Duration> {
        match self.throttled_for(peer) {
            None => Ok(()),
            Some(left) => {
                self.throttled[door.index()].fetch_add(1, Ordering::Relaxed);
                Err(left)
            }
        }
    }

    /// How long `peer` stays throttled, if it is (nothing counted).
    pub fn throttled_for(&self, peer: Option<IpAddr>) -> Option<Duration> {
        let peer = peer.filter(|_| self.max_failures > 0)?;
        let peers = self.peers.lock();
        let window = peers.windows.get(&peer_key(peer))?;
        let elapsed = Instant::now().saturating_duration_since(window.started);
        (window.failures >= self.max_failures && elapsed < self.window).then(|| self.window - elapsed)
    }

    /// Logs and counts one failed authentication at `door` from `peer`; `presented` is the token (or header) that
    /// failed, of which only a fingerprint is logged; `credential` says what was presented (`bearer`,
    /// `certificate`, `none`); `reason` why it failed.
    pub fn record(
        &self,
        peer: Option<IpAddr>,
        door: Door,
        credential: &'static str,
        presented: Option<&[u8]>,
        reason: &str,
    ) -> Recorded {
        self.failures[door.index()].fetch_add(1, Ordering::Relaxed);
        let recorded = peer.map_or(Recorded { failures: 0, throttled_now: false }, |peer| self.count(peer));
        let peer = peer.map_or_else(|| "unknown".to_owned(), |peer| peer.to_string());
        let token_sha256_prefix = presented.map(fingerprint);
        tracing::warn!(
            door = door.as_str(),
            %peer,
            credential,
            token_sha256_prefix,
            reason,
            failures_in_window = recorded.failures,
            "authentication failed"
        );
        if recorded.throttled_now {
            tracing::warn!(
                door = door.as_str(),
                %peer,
                failures = recorded.failures,
                window_s = self.window.as_secs(),
                "too many failed authentications: the peer is refused until its window ends"
            );
        }
        recorded
    }

    /// Counts a failure in `peer`'s window.
    fn count(&self, peer: IpAddr) -> Recorded {
        if self.max_failures == 0 {
            return Recorded { failures: 0, throttled_now: false };
        }
        let key = peer_key(peer);
        let now = Instant::now();
        let mut peers = self.peers.lock();
        peers.expire(now, self.window);
        if !peers.windows.contains_key(&key) {
            if peers.windows.len() >= self.max_peers {
                peers.evict_oldest();
            }
            peers.windows.insert(key, Window { started: now, failures: 0 });
            peers.order.push_back((key, now));
        }
        let window = peers.windows.get_mut(&key).expect("inserted above");
        window.failures = window.failures.saturating_add(1);
        Recorded { failures: window.failures, throttled_now: window.failures == self.max_failures }
    }

    /// Failed authentications at `door` since start-up.
    pub fn failures(&self, door: Door) -> u64 {
        self.failures[door.index()].load(Ordering::Relaxed)
    }

    /// Attempts refused at `door` because their peer was throttled, since start-up.
    pub fn throttled(&self, door: Door) -> u64 {
        self.throttled[door.index()].load(Ordering::Relaxed)
    }

    /// Peer addresses remembered now.
    pub fn peers_held(&self) -> usize {
        self.peers.lock().windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_failures: u32, window_s: u64, max_peers: usize) -> FailedAuthSettings {
        FailedAuthSettings { max_failures, window_s, max_peers, trusted_proxies: vec!["10.0.0.1".into()] }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_peer_is_throttled_after_its_failures_and_others_are_not() {
        let failed = FailedAuth::new(&settings(3, 60, 100));
        for expected in 1..=3 {
            assert!(failed.check(ip("192.0.2.7"), Door::Grpc).is_ok());
            let recorded = failed.record(ip("192.0.2.7"), Door::Grpc, "bearer", Some(b"wrong"), "unknown token");
            assert_eq!(recorded, Recorded { failures: expected, throttled_now: expected == 3 });
        }
        let left = failed.check(ip("192.0.2.7"), Door::Console).unwrap_err();
        assert!(left > Duration::from_secs(58) && left <= Duration::from_secs(60), "{left:?}");
        assert!(failed.check(ip("192.0.2.8"), Door::Grpc).is_ok());
        assert!(failed.check(None, Door::Grpc).is_ok());
        assert_eq!((failed.failures(Door::Grpc), failed.failures(Door::Console)), (3, 0));
        assert_eq!((failed.throttled(Door::Grpc), failed.throttled(Door::Console)), (0, 1));
    }

    #[test]
    fn ipv6_peers_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let failed = FailedAuth::new(&settings(2, 60, 100));
        failed.record(ip("2001:db8:1:2::1"), Door::Grpc, "bearer", None, "unknown token");
        failed.record(ip("2001:db8:1:2::ffff"), Door::Grpc, "bearer", None, "unknown token");
        assert!(failed.check(ip("2001:db8:1:2::9"), Door::Grpc).is_err());
        assert!(failed.check(ip("2001:db8:1:3::1"), Door::Grpc).is_ok());
        failed.record(ip("::ffff:192.0.2.1"), Door::Grpc, "none", None, "missing");
        failed.record(ip("192.0.2.1"), Door::Grpc, "none", None, "missing");
        assert!(failed.check(ip("192.0.2.1"), Door::Grpc).is_err());
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_window_goes_first() {
        let failed = FailedAuth::new(&settings(2, 3600, 3));
        failed.record(ip("192.0.2.1"), Door::Grpc, "bearer", None, "x");
        failed.record(ip("192.0.2.1"), Door::Grpc, "bearer", None, "x");
        for peer in ["192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"] {
            failed.record(ip(peer), Door::Grpc, "bearer", None, "x");
        }
        assert_eq!(failed.peers_held(), 3);
        // The first peer's window was the oldest: forgotten, so it is no longer throttled.
        assert!(failed.check(ip("192.0.2.1"), Door::Grpc).is_ok());
        assert_eq!(failed.peers.lock().order.len(), 3);
    }

    #[test]
    fn a_window_ends() {
        let failed = FailedAuth::new(&settings(1, 1, 10));
        failed.record(ip("192.0.2.1"), Door::Console, "bearer", None, "x");
        assert!(failed.check(ip("192.0.2.1"), Door::Console).is_err());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(failed.check(ip("192.0.2.1"), Door::Console).is_ok());
        let recorded = failed.record(ip("192.0.2.2"), Door::Console, "bearer", None, "x");
        assert!(recorded.throttled_now);
        assert_eq!(failed.peers_held(), 1, "the ended window was forgotten");
    }

    #[test]
    fn throttling_off_still_counts_and_remembers_no_peer() {
        let failed = FailedAuth::default();
        for _ in 0..50 {
            failed.record(ip("192.0.2.1"), Door::Grpc, "bearer", None, "x");
        }
        assert!(failed.check(ip("192.0.2.1"), Door::Grpc).is_ok());
        assert_eq!((failed.failures(Door::Grpc), failed.peers_held()), (50, 0));
    }

    #[test]
    fn only_trusted_proxies_name_the_peer() {
        let failed = FailedAuth::new(&settings(1, 60, 10));
        let proxy: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let direct: SocketAddr = "192.0.2.9:4000".parse().unwrap();
        assert_eq!(failed.peer(Some(direct), Some("203.0.113.5")), ip("192.0.2.9"));
        assert_eq!(failed.peer(Some(proxy), Some("198.51.100.1, 203.0.113.5")), ip("203.0.113.5"));
        assert_eq!(failed.peer(Some(proxy), Some("203.0.113.5, 10.0.0.1")), ip("203.0.113.5"));
        assert_eq!(failed.peer(Some(proxy), Some("junk")), ip("10.0.0.1"));
        assert_eq!(failed.peer(Some(proxy), None), ip("10.0.0.1"));
        assert_eq!(failed.peer(None, Some("203.0.113.5")), None);
    }

    #[test]
    fn fingerprints_are_eight_hex_digits_of_the_sha256() {
        assert_eq!(fingerprint(b"abc"), "ba7816bf");
    }

    #[test]
    fn settings_are_checked_naming_the_key() {
        let bad = FailedAuthSettings { window_s: 0, ..FailedAuthSettings::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("auth.failures.window_s"));
        let bad = FailedAuthSettings { trusted_proxies: vec!["proxy.local".into()], ..FailedAuthSettings::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("auth.failures.trusted_proxies[0]"));
        FailedAuthSettings::default().validate().unwrap();
    }
}
