//! The Redis store's near-cache: a history read that misses its budget (Redis stalled with SIGSTOP) or fails
//! (Redis killed) answers from the history this replica last read or wrote — `history_stale`, with the history
//! summary — over a real gRPC socket; a history never seen here still answers without history as before. The
//! cache is bounded, and a write's result replaces what a read put there.

use std::time::{Duration, Instant};

use saring::privacy::{HistoryKey, KeyHasher};
use saring::proto;
use saring::screening::Screener;
use saring::server::RunningServer;
use saring::store::journal::JournaledStore;
use saring::store::{Corrected, DispositionChange, Histories, HistoryStore, Recorded, RedisStore};
use saring_models::history::{contact_fingerprint, Counter};
use saring_models::{Disposition, HistoryEvent, Model, ModelArtifact};

use crate::common::process::{unique_prefix, PrivateRedis, TestRedis};
use crate::common::{app_with, connect, prank_outcome, sample_contact, screening, sqlite_url, Bearer, Screening};

const SECRET: &[u8] = b"stale-history-test-secret";

fn redis_store(url: &str, prefix: &str, near_cache_entries: usize) -> RedisStore {
    crate::redis_store::store_at(url, prefix).with_near_cache(near_cache_entries)
}

/// saring over `redis` behind its journal, as `serve` builds it, answering on a real socket.
async fn serve(redis: &PrivateRedis, name: &str, near_cache_entries: usize) -> (RunningServer, Screening) {
    let prefix = unique_prefix(name);
    let directory = std::env::temp_dir().join(prefix.replace(':', "-"));
    let store = JournaledStore::open(
        redis_store(&redis.url(), &prefix, near_cache_entries),
        &directory.join("outcomes.journal"),
        Duration::from_millis(500),
    )
    .unwrap();
    let model = Model::new(ModelArtifact::from_json(saring::server::SHIPPED_MODEL).unwrap());
    // The budget only decides when a stalled read is given up; nothing here measures time.
    let screener = Screener::new(store, model, KeyHasher::new(SECRET), 1000, Duration::from_millis(50));
    let app = app_with(screener, &sqlite_url(name)).await;
    let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), app).await.unwrap();
    let channel = connect(format!("http://{}", server.local_addr)).await;
    (server, screening(&channel, Bearer::of(saring::auth::Role::Routing)))
}

/// Scores and records `count` prank contacts from `number`.
async fn pranks(client: &mut Screening, name: &str, number: &str, count: usize) {
    for index in 0..count {
        let contact = sample_contact(&format!("{name}-{index}"), Some(number));
        client.score_contact(contact.clone()).await.unwrap();
        client.record_outcome(prank_outcome(&contact.contact_id.clone(), Some(contact))).await.unwrap();
    }
}

async fn score(client: &mut Screening, contact_id: &str, number: &str) -> proto::ScoreReply {
    client.score_contact(sample_contact(contact_id, Some(number))).await.unwrap().into_inner()
}

#[tokio::test]
async fn a_stalled_redis_answers_from_the_last_known_history_and_an_unseen_caller_without_history() {
    let redis = PrivateRedis::start();
    let (server, mut client) = serve(&redis, "stale-stalled", 65_536).await;
    let (prankster, stranger) = ("0812-7000-0001", "0812-7000-0002");
    pranks(&mut client, "p", prankster, 4).await;
    let fresh = score(&mut client, "fresh", prankster).await;
    assert!(!fresh.degraded, "{:?}", fresh.degraded_reasons);
    let fresh_history = fresh.caller_history.unwrap();
    assert_eq!(fresh_history.total_contacts, 4);

    redis.pause();
    let stale = score(&mut client, "stale", prankster).await;
    let unseen = score(&mut client, "unseen", stranger).await;
    redis.resume();

    assert!(stale.degraded);
    assert_eq!(stale.degraded_reasons, vec!["history_stale"]);
    let stale_history = stale.caller_history.expect("the stale answer gives the history it used");
    assert_eq!(stale_history.total_contacts, 4);
    assert!(stale_history.misuse_day > 3.0, "{}", stale_history.misuse_day);
    assert_eq!(stale.band, fresh.band, "the known prankster is not scored as a stranger");
    assert!(
        stale.prank_likelihood > unseen.prank_likelihood,
        "{} vs {}",
        stale.prank_likelihood,
        unseen.prank_likelihood
    );
    assert_eq!(unseen.degraded_reasons, vec!["history_timeout"], "a caller never read here has no stale history");
    assert!(unseen.caller_history.is_none(), "no history summary is invented");

    // Redis answers again: the next read is fresh (the stalled replies may still be in flight for a moment).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = score(&mut client, "after", prankster).await;
        if !reply.degraded {
            assert_eq!(reply.caller_history.unwrap().total_contacts, 4);
            break;
        }
        assert!(Instant::now() < deadline, "still degraded after Redis resumed: {:?}", reply.degraded_reasons);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_stale_answer_holds_the_last_write_this_replica_made() {
    let redis = PrivateRedis::start();
    let (server, mut client) = serve(&redis, "stale-written", 65_536).await;
    let number = "0812-7000-0003";
    pranks(&mut client, "w", number, 2).await;
    assert_eq!(score(&mut client, "read", number).await.caller_history.unwrap().total_contacts, 2);
    // Two more outcomes after the last read: only the writes' results can tell the cache about them. (Their
    // contacts come embedded in the outcomes, so nothing reads the history again.)
    for index in 2..4 {
        let contact = sample_contact(&format!("w-{index}"), Some(number));
        client.record_outcome(prank_outcome(&contact.contact_id.clone(), Some(contact))).await.unwrap();
    }

    redis.pause();
    let stale = score(&mut client, "stale", number).await;
    redis.resume();
    assert_eq!(stale.degraded_reasons, vec!["history_stale"]);
    assert_eq!(stale.caller_history.unwrap().total_contacts, 4, "the stale history includes every write made here");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_killed_redis_answers_known_callers_stale_and_without_a_near_cache_as_before() {
    let mut redis = PrivateRedis::start();
    let (cached_server, mut cached) = serve(&redis, "stale-killed", 65_536).await;
    let (uncached_server, mut uncached) = serve(&redis, "stale-killed-off", 0).await;
    let number = "0812-7000-0004";
    pranks(&mut cached, "k", number, 3).await;
    pranks(&mut uncached, "u", number, 3).await;
    assert!(!score(&mut uncached, "u-read", number).await.degraded);

    redis.stop();
    let stale = score(&mut cached, "k-stale", number).await;
    assert_eq!(stale.degraded_reasons, vec!["history_stale"]);
    assert_eq!(stale.caller_history.unwrap().total_contacts, 3);
    let without = score(&mut uncached, "u-none", number).await;
    assert!(
        without.degraded_reasons == ["history_unavailable"] || without.degraded_reasons == ["history_timeout"],
        "{:?}",
        without.degraded_reasons
    );
    assert!(without.caller_history.is_none());
    cached_server.stop().await.unwrap();
    uncached_server.stop().await.unwrap();
}

fn key(index: usize) -> HistoryKey {
    KeyHasher::new(SECRET).number(&format!("+6281270{index:05}"))
}

fn event(contact: &str, disposition: Disposition) -> HistoryEvent {
    HistoryEvent {
        contact_fingerprint: contact_fingerprint(contact),
        at_ms: 1_772_323_200_000,
        answered: true,
        talk_s: 5.0,
        night: false,
        disposition,
    }
}

#[tokio::test]
async fn the_near_cache_keeps_at_most_its_capacity() {
    let redis = TestRedis::new();
    let store = redis_store(&redis.url, &unique_prefix("near-bounded"), 128);
    store.record("first", Some(&key(0)), None, &event("first", Disposition::Prank)).await.unwrap();
    assert_eq!(store.cached(Some(&key(0)), None).unwrap().caller.unwrap().total_contacts, 1);
    for index in 1..1000 {
        store.load(Some(&key(index)), None).await.unwrap();
        assert!(store.near_cache().len() <= 128, "{} entries", store.near_cache().len());
    }
    assert!(store.cached(Some(&key(0)), None).is_none(), "the oldest entry was evicted");
    // A history read recently is there, as "no history" (never recorded): cached, not unknown.
    let recent = store.cached(Some(&key(999)), None).unwrap();
    assert!(recent.caller.is_none());
}

#[tokio::test]
async fn writes_replace_the_cached_history_and_duplicates_change_nothing() {
    let redis = TestRedis::new();
    let store = redis_store(&redis.url, &unique_prefix("near-writes"), 1024);
    let (number, device) = (key(1), KeyHasher::new(SECRET).device("device-near-writes"));
    assert!(store.cached(Some(&number), Some(&device)).is_none(), "nothing read or written yet");
    store.load(Some(&number), Some(&device)).await.unwrap();
    assert_eq!(store.cached(Some(&number), Some(&device)).unwrap(), Histories::default(), "cached as never seen");

    let first = event("c-1", Disposition::Silent);
    assert_eq!(store.record("c-1", Some(&number), Some(&device), &first).await.unwrap(), Recorded::Applied);
    let cached = store.cached(Some(&number), Some(&device)).unwrap();
    let loaded = store.load(Some(&number), Some(&device)).await.unwrap();
    assert_eq!(cached, loaded, "the write's result is what Redis holds");
    assert_eq!(cached.caller.as_ref().unwrap().total_contacts, 1);

    let second = event("c-2", Disposition::Prank);
    store.record("c-2", Some(&number), Some(&device), &second).await.unwrap();
    assert_eq!(store.record("c-2", Some(&number), Some(&device), &second).await.unwrap(), Recorded::Duplicate);
    let cached = store.cached(Some(&number), Some(&device)).unwrap();
    assert_eq!((cached.caller.unwrap().total_contacts, cached.device.unwrap().total_contacts), (2, 2));

    let change = DispositionChange {
        contact_fingerprint: first.contact_fingerprint,
        at_ms: first.at_ms,
        from: Disposition::Silent,
        to: Disposition::Prank,
    };
    assert_eq!(store.correct("c-1", Some(&number), Some(&device), &change).await.unwrap(), Corrected::Applied);
    assert_eq!(store.correct("c-1", Some(&number), Some(&device), &change).await.unwrap(), Corrected::Unchanged);
    let cached = store.cached(Some(&number), None).unwrap().caller.unwrap();
    let (prank, silent) = (Counter::Disposition(Disposition::Prank), Counter::Disposition(Disposition::Silent));
    assert!((cached.stored(prank, 0) - 2.0).abs() < 1e-6, "{:?}", cached.counters);
    assert!(cached.stored(silent, 0).abs() < 1e-6, "{:?}", cached.counters);
    assert_eq!(Some(cached), store.load(Some(&number), None).await.unwrap().caller);
}
