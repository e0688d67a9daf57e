//! Two saring processes over a private Redis Cluster of three primaries and three replicas: outcomes sent
//! through either replica (and repeated through the other) are counted exactly once, and with
//! `history.redis_wait_replicas = 1` a primary killed mid-traffic loses no acknowledged outcome.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use saring::proto;

use crate::common::process::{unique_prefix, PrivateRedisCluster, SaringProcess};
use crate::common::{connect, prank_outcome, sample_contact, screening, Bearer, Screening};

struct Deployment {
    url: String,
    environment: Vec<(&'static str, String)>,
    scratch: PathBuf,
}

impl Deployment {
    fn new(name: &str, cluster: &PrivateRedisCluster, wait_replicas: u32) -> Self {
        let prefix = unique_prefix(name);
        let scratch = std::env::temp_dir().join(prefix.replace(':', "-"));
        std::fs::create_dir_all(&scratch).unwrap();
        Deployment {
            url: cluster.url(),
            environment: vec![
                ("SARING__PRIVACY__HASH_SECRET", "integration-test-secret".into()),
                ("SARING__HISTORY__REDIS_PREFIX", prefix),
                ("SARING__HISTORY__REDIS_WAIT_REPLICAS", wait_replicas.to_string()),
            ],
            scratch,
        }
    }

    /// Replica `n`, with a journal of its own.
    fn start_saring(&self, n: usize) -> SaringProcess {
        let journal = self.scratch.join(format!("outcomes-{n}.journal")).display().to_string();
        let mut environment: Vec<(&str, &str)> =
            self.environment.iter().map(|(key, value)| (*key, value.as_str())).collect();
        environment.push(("SARING__HISTORY__JOURNAL_PATH", &journal));
        SaringProcess::spawn(&["--history", &self.url], &environment)
    }

    fn journal_lines(&self, n: usize) -> usize {
        std::fs::read_to_string(self.scratch.join(format!("outcomes-{n}.journal")))
            .map_or(0, |journal| journal.lines().filter(|line| !line.trim().is_empty()).count())
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.scratch).ok();
    }
}

/// The routing engine's client: it scores and records outcomes (embedding the contact).
async fn client(saring: &SaringProcess) -> Screening {
    screening(&connect(saring.url()).await, Bearer::of(saring::auth::Role::Routing))
}

/// An operator's client: it reads caller profiles.
async fn operator(saring: &SaringProcess) -> Screening {
    screening(&connect(saring.url()).await, Bearer::of(saring::auth::Role::Operator))
}

fn number(caller: usize) -> String {
    format!("0813-7777-{caller:04}")
}

/// Records the outcome through `clients[first]`, then the next, until one acknowledges it. Returns whether it was
/// acknowledged as a duplicate.
async fn record(clients: &mut [Screening], first: usize, contact: &proto::ContactRequest) -> bool {
    for attempt in 0..200 {
        let client = &mut clients[(first + attempt) % 2];
        match client.record_outcome(prank_outcome(&contact.contact_id, Some(contact.clone()))).await {
            Ok(ack) => return ack.into_inner().duplicate,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("no replica acknowledged {}", contact.contact_id);
}

/// Waits until every caller's total (read through both replicas) equals its acknowledged outcomes.
async fn assert_counted_once(clients: &mut [Screening], acknowledged: &HashMap<usize, u64>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut totals = Vec::new();
        for client in clients.iter_mut() {
            let mut per_caller = HashMap::new();
            for caller in acknowledged.keys() {
                let profile = client.get_caller(proto::CallerQuery { caller: number(*caller) }).await;
                let total = profile.map_or(0, |profile| profile.into_inner().history.map_or(0, |h| h.total_contacts));
                per_caller.insert(*caller, total);
            }
            totals.push(per_caller);
        }
        if totals.iter().all(|per_caller| per_caller == acknowledged) {
            return;
        }
        for per_caller in &totals {
            for (caller, total) in per_caller {
                assert!(
                    *total <= acknowledged[caller],
                    "caller {caller}: {total} counted, {} acknowledged",
                    acknowledged[caller]
                );
            }
        }
        assert!(std::time::Instant::now() < deadline, "histories {totals:?} never matched {acknowledged:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Records the outcomes of contacts `range` (alternating replicas) and counts them per caller.
async fn send(
    clients: &mut [Screening],
    range: std::ops::Range<usize>,
    callers: usize,
    acknowledged: &mut HashMap<usize, u64>,
) {
    for index in range {
        let contact = sample_contact(&format!("cf-{index}"), Some(&number(index % callers)));
        record(clients, index % 2, &contact).await;
        *acknowledged.entry(index % callers).or_default() += 1;
    }
}

#[tokio::test]
async fn outcomes_through_both_replicas_are_counted_exactly_once_on_a_cluster() {
    let cluster = PrivateRedisCluster::start_with(1, 5_000);
    let deployment = Deployment::new("cluster-exact", &cluster, 0);
    let (first, second) = (deployment.start_saring(1), deployment.start_saring(2));
    let mut clients = [client(&first).await, client(&second).await];
    let callers = 9;
    let mut acknowledged: HashMap<usize, u64> = HashMap::new();
    for index in 0..90usize {
        let caller = index % callers;
        let contact = sample_contact(&format!("ce-{index}"), Some(&number(caller)));
        let duplicate = record(&mut clients, index % 2, &contact).await;
        assert!(!duplicate, "a new contact was taken for a duplicate");
        *acknowledged.entry(caller).or_default() += 1;
        // Every third outcome is repeated through the other replica, as a routing engine retrying would. (Each
        // test process has a SQLite case database of its own, so the other replica's ladder takes it as new and
        // the acknowledgement need not say duplicate; the history must not count it again.)
        if index % 3 == 0 {
            record(&mut clients, (index + 1) % 2, &contact).await;
        }
    }
    assert_counted_once(&mut [operator(&first).await, operator(&second).await], &acknowledged).await;
    assert_eq!(deployment.journal_lines(1) + deployment.journal_lines(2), 0, "a healthy cluster took every write");
}

#[tokio::test]
async fn with_wait_for_a_replica_a_killed_primary_loses_no_acknowledged_outcome() {
    let mut cluster = PrivateRedisCluster::start_with(1, 1_000);
    let deployment = Deployment::new("cluster-failover", &cluster, 1);
    let (first, second) = (deployment.start_saring(1), deployment.start_saring(2));
    let mut clients = [client(&first).await, client(&second).await];
    let (primary, replica) = cluster.slot_zero_primary_and_replica();
    let replica = replica.expect("slot 0's primary has a replica");
    let callers = 12;
    let mut acknowledged: HashMap<usize, u64> = HashMap::new();
    send(&mut clients, 0..60, callers, &mut acknowledged).await;
    cluster.kill(primary);
    // Traffic goes on while the cluster notices and promotes the replica: those outcomes wait in the journals.
    send(&mut clients, 60..120, callers, &mut acknowledged).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(cluster.cli(replica, &["role"]).starts_with("master")
        && cluster.cli(replica, &["cluster", "info"]).contains("cluster_state:ok"))
    {
        assert!(std::time::Instant::now() < deadline, "the replica of {primary} was not promoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send(&mut clients, 120..180, callers, &mut acknowledged).await;
    // The killed primary comes back as the new primary's replica, so writes to its slots reach a replica again
    // and the journals drain.
    cluster.restart(primary);
    assert_counted_once(&mut [operator(&first).await, operator(&second).await], &acknowledged).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while deployment.journal_lines(1) + deployment.journal_lines(2) > 0 {
        assert!(std::time::Instant::now() < deadline, "the journals did not drain");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
