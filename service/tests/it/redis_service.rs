//! saring processes over a real Redis: replicas share history, and a Redis outage in the middle of traffic —
//! also with saring restarted during it — loses no acknowledged outcome and counts none twice.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use saring::proto;

use crate::common::process::{unique_prefix, PrivateRedis, SaringProcess};
use crate::common::{connect, prank_outcome, sample_contact, screening, Bearer, Screening};

struct Deployment {
    redis_url: String,
    environment: Vec<(&'static str, String)>,
    scratch: PathBuf,
}

impl Deployment {
    fn new(name: &str, redis_port: u16) -> Self {
        let prefix = unique_prefix(name);
        let scratch = std::env::temp_dir().join(prefix.replace(':', "-"));
        std::fs::create_dir_all(&scratch).unwrap();
        Deployment {
            redis_url: format!("redis://127.0.0.1:{redis_port}/0"),
            environment: vec![
                ("SARING__PRIVACY__HASH_SECRET", "integration-test-secret".into()),
                ("SARING__HISTORY__REDIS_PREFIX", prefix),
                ("SARING__HISTORY__JOURNAL_PATH", scratch.join("outcomes.journal").display().to_string()),
            ],
            scratch,
        }
    }

    fn start_saring(&self) -> SaringProcess {
        let environment: Vec<(&str, &str)> =
            self.environment.iter().map(|(key, value)| (*key, value.as_str())).collect();
        SaringProcess::spawn(&["--history", &self.redis_url], &environment)
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
    format!("0813-5555-{caller:04}")
}

fn outcome(contact: proto::ContactRequest) -> proto::Outcome {
    prank_outcome(&contact.contact_id.clone(), Some(contact))
}

#[tokio::test]
async fn an_outcome_recorded_through_one_replica_changes_the_next_score_from_the_other() {
    let redis = PrivateRedis::start();
    let deployment = Deployment::new("replicas", redis.port);
    let (first, second) = (deployment.start_saring(), deployment.start_saring());
    let (mut first_client, mut second_client) = (client(&first).await, client(&second).await);

    let before = second_client.score_contact(sample_contact("r-0", Some(&number(1)))).await.unwrap().into_inner();
    assert!(!before.degraded, "{:?}", before.degraded_reasons);
    assert_eq!(before.caller_history.unwrap().total_contacts, 0);
    for index in 1..=3 {
        let contact = sample_contact(&format!("r-{index}"), Some(&number(1)));
        first_client.score_contact(contact.clone()).await.unwrap();
        first_client.record_outcome(outcome(contact)).await.unwrap();
    }
    let after = second_client.score_contact(sample_contact("r-4", Some(&number(1)))).await.unwrap().into_inner();
    assert!(!after.degraded);
    let history = after.caller_history.unwrap();
    assert_eq!(history.total_contacts, 3);
    assert!(history.misuse_day > 2.9);
    assert!(
        after.prank_likelihood > before.prank_likelihood,
        "{} vs {}",
        after.prank_likelihood,
        before.prank_likelihood
    );
}

/// Drives one contact: ScoreContact (must answer, and fast, whatever Redis does), then RecordOutcome (counted
/// when acknowledged).
async fn drive(client: &mut Screening, index: usize, callers: usize, acknowledged: &mut HashMap<usize, u64>) {
    let caller = index % callers;
    let contact = sample_contact(&format!("s-{index}"), Some(&number(caller)));
    let started = Instant::now();
    let reply = client.score_contact(contact.clone()).await.expect("ScoreContact always answers").into_inner();
    // Not a speed test: the budget is 5 ms, and this only shows no call waited on Redis reconnecting (seconds).
    assert!(started.elapsed() < Duration::from_millis(750), "ScoreContact took {:?}", started.elapsed());
    assert!((0.0..=1.0).contains(&reply.prank_likelihood));
    if client.record_outcome(outcome(contact)).await.is_ok() {
        *acknowledged.entry(caller).or_default() += 1;
    }
}

/// Waits until every caller's history holds exactly its acknowledged outcomes (the journal drained), then checks
/// none is there twice.
async fn assert_all_recorded_once(client: &mut Screening, acknowledged: &HashMap<usize, u64>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut totals = HashMap::new();
        for caller in acknowledged.keys() {
            let query = proto::CallerQuery { caller: number(*caller) };
            let total = match client.get_caller(query).await {
                Ok(profile) => profile.into_inner().history.map_or(0, |history| history.total_contacts),
                Err(_) => 0,
            };
            totals.insert(*caller, total);
        }
        if &totals == acknowledged {
            return;
        }
        for (caller, total) in &totals {
            assert!(
                total <= &acknowledged[caller],
                "caller {caller}: {total} recorded, {} acknowledged",
                acknowledged[caller]
            );
        }
        assert!(Instant::now() < deadline, "the journal did not drain: {totals:?} vs {acknowledged:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn redis_killed_mid_stream_loses_no_acknowledged_outcome() {
    let redis_directory = std::env::temp_dir().join(unique_prefix("aof").replace(':', "-"));
    let mut redis = PrivateRedis::start_persistent(&redis_directory);
    let port = redis.port;
    let deployment = Deployment::new("outage", port);
    let saring = deployment.start_saring();
    let mut client = client(&saring).await;
    let mut acknowledged = HashMap::new();
    for index in 0..150 {
        if index == 50 {
            redis.stop();
        }
        if index == 100 {
            redis = PrivateRedis::start_persistent_on(port, &redis_directory);
        }
        drive(&mut client, index, 15, &mut acknowledged).await;
    }
    assert_eq!(acknowledged.values().sum::<u64>(), 150, "every outcome was acknowledged (Redis or journal)");
    assert_all_recorded_once(&mut operator(&saring).await, &acknowledged).await;
    drop(redis);
    std::fs::remove_dir_all(redis_directory).ok();
}

#[tokio::test]
async fn saring_restarted_while_redis_is_down_loses_no_acknowledged_outcome() {
    let redis_directory = std::env::temp_dir().join(unique_prefix("aof").replace(':', "-"));
    let mut redis = PrivateRedis::start_persistent(&redis_directory);
    let port = redis.port;
    let deployment = Deployment::new("restart", port);
    let saring = deployment.start_saring();
    let mut first_client = client(&saring).await;
    let mut acknowledged = HashMap::new();
    for index in 0..40 {
        drive(&mut first_client, index, 10, &mut acknowledged).await;
    }
    redis.stop();
    for index in 40..80 {
        drive(&mut first_client, index, 10, &mut acknowledged).await;
    }
    let (clean, _) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);

    let restarted = deployment.start_saring();
    let mut client = client(&restarted).await;
    for index in 80..100 {
        drive(&mut client, index, 10, &mut acknowledged).await;
    }
    let _redis = PrivateRedis::start_persistent_on(port, &redis_directory);
    assert_eq!(acknowledged.values().sum::<u64>(), 100);
    assert_all_recorded_once(&mut operator(&restarted).await, &acknowledged).await;
    let (_, log) = tokio::task::spawn_blocking(move || restarted.terminate()).await.unwrap();
    assert!(log.iter().any(|line| line.contains("journal holds outcomes from an earlier run")), "{log:?}");
    assert!(log.iter().any(|line| line.contains("journal replayed")), "{log:?}");
    std::fs::remove_dir_all(redis_directory).ok();
}

/// A contact id reused for another caller over Redis (whose markers are per history): refused naming
/// `contact_id` before history takes it, so the other caller's history does not count it.
#[tokio::test]
async fn a_contact_id_reused_for_another_caller_is_refused_and_counted_nowhere() {
    let redis = PrivateRedis::start();
    let deployment = Deployment::new("reused-id", redis.port);
    let saring = deployment.start_saring();
    let mut routing = client(&saring).await;
    let mut operator = operator(&saring).await;
    let first = routing.record_outcome(outcome(sample_contact("reused-r1", Some(&number(1))))).await.unwrap();
    assert!(!first.into_inner().duplicate);
    let refused = routing.record_outcome(outcome(sample_contact("reused-r1", Some(&number(2))))).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let fields: Vec<String> = tonic_types::StatusExt::get_details_bad_request(&refused)
        .map(|details| details.field_violations.into_iter().map(|violation| violation.field).collect())
        .unwrap_or_default();
    assert_eq!(fields, ["contact_id"]);
    let other = operator.get_caller(proto::CallerQuery { caller: number(2) }).await.unwrap().into_inner();
    assert!(!other.known, "the refused outcome reached the other caller's history: {other:?}");
    let own = operator.get_caller(proto::CallerQuery { caller: number(1) }).await.unwrap().into_inner();
    assert_eq!(own.history.unwrap().total_contacts, 1);
    drop(saring);
}
