//! The Redis history store against a real Redis: the same arithmetic as the in-memory aggregate, exact counts
//! under concurrency from several replicas, no personal data in Redis, fail-open reads, and a journal that loses
//! nothing while Redis is down — also across a restart of saring.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use saring::privacy::{HistoryKey, KeyHasher};
use saring::store::journal::JournaledStore;
use saring::store::{Corrected, DispositionChange, HistoryStore, Recorded, RedisSettings, RedisStore};
use saring_models::history::{contact_fingerprint, Counter, MONTH};
use saring_models::{CallerHistory, Disposition, HistoryEvent};

use crate::common::process::{unique_prefix, PrivateRedis, PrivateRedisCluster};

/// A store on `url` under `prefix` (1-hour retention and markers, a 300 ms connect timeout).
pub(crate) fn store_at(url: &str, prefix: &str) -> RedisStore {
    RedisStore::new(RedisSettings {
        url: url.into(),
        prefix: prefix.into(),
        retention: Duration::from_secs(3600),
        marker_ttl: Duration::from_secs(3600),
        connect_timeout: Duration::from_millis(300),
    })
    .unwrap()
}

fn key(index: u8) -> HistoryKey {
    KeyHasher::new(b"redis-store-test-secret").number(&format!("+62812000000{index:02}"))
}

fn event(contact: &str, at_ms: i64, disposition: Disposition) -> HistoryEvent {
    HistoryEvent {
        contact_fingerprint: contact_fingerprint(contact),
        at_ms,
        answered: disposition != Disposition::Unknown,
        talk_s: 5.0,
        night: at_ms % 3 == 0,
        disposition,
    }
}

/// Bit for bit: the scripts round to f32 where `CallerHistory` does, and Lua's `2 ^ x` is the same C `pow`.
fn assert_same(redis: &CallerHistory, memory: &CallerHistory) {
    let bits = |history: &CallerHistory| history.counters.map(|row| row.map(f32::to_bits));
    assert_eq!(bits(redis), bits(memory), "redis {:?}\nmemory {:?}", redis.counters, memory.counters);
    assert_eq!(redis.first_seen_ms, memory.first_seen_ms);
    assert_eq!(redis.last_seen_ms, memory.last_seen_ms);
    assert_eq!(redis.total_contacts, memory.total_contacts);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The Lua script's arithmetic equals `CallerHistory::apply` bit for bit, for random logs with out-of-order
    /// times and repeated contact ids.
    #[test]
    fn redis_matches_the_in_memory_aggregate(
        log in proptest::collection::vec(
            (0u8..3, 0u32..40, 0i64..(45 * 86_400_000), proptest::sample::select(Disposition::ALL.to_vec())),
            1..60,
        )
    ) {
        let redis = PrivateRedis::start();
        let store = store_at(&redis.url(), &unique_prefix("parity"));
        let start_ms = 1_772_323_200_000;
        let mut memory: [Option<CallerHistory>; 3] = [None, None, None];
        let mut seen = std::collections::HashSet::new();
        runtime().block_on(async {
            for (caller, contact, offset_ms, disposition) in &log {
                let contact_id = format!("c-{caller}-{contact}");
                let history_event = event(&contact_id, start_ms + offset_ms, *disposition);
                let recorded = store.record(&contact_id, Some(&key(*caller)), None, &history_event).await.unwrap();
                let first_time = seen.insert(contact_id.clone());
                prop_assert_eq!(recorded == Recorded::Applied, first_time);
                if first_time {
                    let slot = &mut memory[usize::from(*caller)];
                    match slot {
                        Some(history) => { history.apply(&history_event); }
                        None => *slot = Some(CallerHistory::from_event(&history_event)),
                    }
                }
            }
            for caller in 0..3u8 {
                let loaded = store.load(Some(&key(caller)), None).await.unwrap().caller;
                match (&loaded, &memory[usize::from(caller)]) {
                    (Some(redis), Some(memory)) => assert_same(redis, memory),
                    (None, None) => {}
                    other => panic!("caller {caller}: {other:?}"),
                }
            }
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The correction script's arithmetic equals `CallerHistory::correct` bit for bit, for random logs and random
    /// corrections (repeats included: a repeat changes nothing).
    #[test]
    fn redis_corrections_match_the_in_memory_aggregate(
        log in proptest::collection::vec(
            (0u32..30, 0i64..(45 * 86_400_000), proptest::sample::select(Disposition::ALL.to_vec())),
            1..40,
        ),
        corrections in proptest::collection::vec(
            (any::<proptest::sample::Index>(), proptest::sample::select(Disposition::ALL.to_vec())),
            1..20,
        ),
    ) {
        let redis = PrivateRedis::start();
        let store = store_at(&redis.url(), &unique_prefix("correct-parity"));
        let start_ms = 1_772_323_200_000;
        let caller = key(0);
        runtime().block_on(async {
            let mut memory: Option<CallerHistory> = None;
            let mut held: Vec<(String, i64, Disposition)> = Vec::new();
            for (contact, offset_ms, disposition) in &log {
                let contact_id = format!("c-{contact}");
                if held.iter().any(|(id, _, _)| *id == contact_id) {
                    continue;
                }
                let history_event = event(&contact_id, start_ms + offset_ms, *disposition);
                store.record(&contact_id, Some(&caller), None, &history_event).await.unwrap();
                match &mut memory {
                    Some(history) => { history.apply(&history_event); }
                    None => memory = Some(CallerHistory::from_event(&history_event)),
                }
                held.push((contact_id, start_ms + offset_ms, *disposition));
            }
            let memory = memory.as_mut().unwrap();
            for (pick, to) in &corrections {
                let picked = pick.index(held.len());
                let (contact_id, at_ms, from) = held[picked].clone();
                // `from` is what saring's case database says; the marker knows it too.
                let change = DispositionChange { contact_fingerprint: contact_fingerprint(&contact_id), at_ms, from, to: *to };
                let corrected = store.correct(&contact_id, Some(&caller), None, &change).await.unwrap();
                prop_assert_eq!(corrected, if from == *to { Corrected::Unchanged } else { Corrected::Applied });
                memory.correct(at_ms, from, *to);
                held[picked].2 = *to;
            }
            assert_same(&store.load(Some(&caller), None).await.unwrap().caller.unwrap(), memory);
            // A contact no history holds is not corrected.
            let stranger = DispositionChange { contact_fingerprint: contact_fingerprint("never"), at_ms: start_ms, from: Disposition::Silent, to: Disposition::Prank };
            prop_assert_eq!(store.correct("never", Some(&caller), None, &stranger).await.unwrap(), Corrected::NotHeld);
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn replicas_recording_at_once_count_exactly() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix("concurrency");
    // Two "replicas": independent stores and connections over the same Redis.
    let replicas = [Arc::new(store_at(&redis.url(), &prefix)), Arc::new(store_at(&redis.url(), &prefix))];
    let caller = key(1);
    let device = KeyHasher::new(b"redis-store-test-secret").device("356938035643809");
    let record_all = |round: u32| {
        let mut tasks = Vec::new();
        for task in 0..64u32 {
            let store = Arc::clone(&replicas[task as usize % 2]);
            tasks.push(tokio::spawn(async move {
                let mut applied = 0u32;
                for contact in 0..200u32 {
                    let contact_id = format!("c-{task}-{contact}");
                    let at_ms = 1_772_323_200_000 + i64::from(task * 200 + contact) * 1000;
                    let history_event = event(&contact_id, at_ms, Disposition::Prank);
                    let recorded =
                        store.record(&contact_id, Some(&caller), Some(&device), &history_event).await.unwrap();
                    applied += u32::from(recorded == Recorded::Applied);
                }
                (round, applied)
            }));
        }
        tasks
    };
    let mut applied = 0;
    for task in record_all(1) {
        applied += task.await.unwrap().1;
    }
    assert_eq!(applied, 64 * 200);
    let first = replicas[0].load(Some(&caller), Some(&device)).await.unwrap();
    for history in [first.caller.as_ref().unwrap(), first.device.as_ref().unwrap()] {
        assert_eq!(history.total_contacts, 64 * 200);
        let contacts = history.value_at(Counter::Contacts, MONTH, history.as_of_ms());
        let misuse = history.value_at(Counter::Disposition(Disposition::Prank), MONTH, history.as_of_ms());
        assert!((contacts - misuse).abs() < 1e-9, "{contacts} vs {misuse}");
    }
    // Every outcome a second time: all duplicates, nothing changes.
    let mut applied_again = 0;
    for task in record_all(2) {
        applied_again += task.await.unwrap().1;
    }
    assert_eq!(applied_again, 0);
    assert_eq!(replicas[1].load(Some(&caller), Some(&device)).await.unwrap(), first);
}

#[tokio::test]
async fn outcomes_taken_while_redis_is_down_survive_a_restart_and_count_once() {
    let directory = std::env::temp_dir().join(unique_prefix("journal").replace(':', "-"));
    let journal = directory.join("outcomes.journal");
    let mut redis = PrivateRedis::start();
    let prefix = unique_prefix("journal");
    let caller = key(7);
    let budget = Duration::from_millis(200);

    let store = JournaledStore::open(store_at(&redis.url(), &prefix), &journal, budget).unwrap();
    let first = event("j-1", 1_772_323_200_000, Disposition::Prank);
    assert_eq!(store.record("j-1", Some(&caller), None, &first).await.unwrap(), Recorded::Applied);
    assert_eq!(store.depth(), 0);

    redis.stop();
    for (index, contact) in ["j-2", "j-3"].into_iter().enumerate() {
        let history_event = event(contact, 1_772_323_260_000 + index as i64 * 1000, Disposition::Abusive);
        // Acknowledged: it is in the journal, fsynced.
        assert_eq!(store.record(contact, Some(&caller), None, &history_event).await.unwrap(), Recorded::Applied);
    }
    assert_eq!(store.depth(), 2);
    assert!(store.load(Some(&caller), None).await.is_err(), "reads fail while Redis is down (the screener degrades)");
    drop(store);

    // saring restarts while Redis is still down: the journal is still there.
    let restarted = JournaledStore::open(store_at(&redis.url(), &prefix), &journal, budget).unwrap();
    assert_eq!(restarted.depth(), 2);
    let port = redis.port;
    drop(redis);
    // Redis comes back — empty, as a restarted Redis without persistence would be.
    let _redis = PrivateRedis::start_on(port);
    assert_eq!(restarted.replay().await.unwrap(), 2);
    assert_eq!(restarted.depth(), 0);
    assert_eq!(restarted.replay().await.unwrap(), 0);
    let history = restarted.load(Some(&caller), None).await.unwrap().caller.unwrap();
    assert_eq!(history.total_contacts, 2, "the two journaled outcomes, once each (the first was lost with Redis)");
    // A retry of a replayed outcome is a duplicate.
    let again = event("j-2", 1_772_323_260_000, Disposition::Abusive);
    assert_eq!(restarted.record("j-2", Some(&caller), None, &again).await.unwrap(), Recorded::Duplicate);
    std::fs::remove_dir_all(directory).ok();
}

#[tokio::test]
async fn no_raw_number_or_device_id_is_written_to_redis() {
    use saring::screening::Screener;
    use saring::server::RunningServer;

    let redis = PrivateRedis::start();
    let prefix = unique_prefix("privacy");
    let directory = std::env::temp_dir().join(prefix.replace(':', "-"));
    let store = JournaledStore::open(store_at(&redis.url(), &prefix), &directory.join("j"), Duration::from_millis(200))
        .unwrap();
    let model =
        saring_models::Model::new(saring_models::ModelArtifact::from_json(saring::server::SHIPPED_MODEL).unwrap());
    let screener =
        Screener::new(store, model, KeyHasher::new(b"privacy-test-secret!"), 1000, Duration::from_millis(50));
    let app = crate::common::app_with(screener, &crate::common::sqlite_url("privacy")).await;
    let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), app).await.unwrap();
    let channel = crate::common::connect(format!("http://{}", server.local_addr)).await;
    let mut client = crate::common::screening(&channel, crate::common::Bearer::of(saring::auth::Role::Routing));

    let config = saring_training::simulate::SimulationConfig { seed: 31, days: 2, callers: 300, ..Default::default() };
    let events = saring_training::simulate::simulate(&config);
    let mut secrets = Vec::new();
    for item in &events {
        match item {
            saring_training::events::Event::Contact(contact) => {
                if let Some(raw) = &contact.caller {
                    let e164 = saring_models::phone::normalise_indonesian_number(raw).unwrap();
                    secrets.push(e164[3..].to_owned()); // the national digits, in any form
                }
                secrets.extend(contact.device_id.clone());
                client.score_contact(crate::common::contact_request(contact)).await.unwrap();
            }
            saring_training::events::Event::Outcome(outcome) => {
                client.record_outcome(crate::common::outcome_request(outcome, None)).await.unwrap();
            }
        }
    }
    server.stop().await.unwrap();

    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut connection).await.unwrap();
    assert!(keys.len() > 100, "the run wrote histories and markers: {}", keys.len());
    for key in &keys {
        // Markers are strings; history buckets are hashes (every field and value read); the layout hash holds the
        // bucket bits and has no TTL.
        let kind: String = ::redis::cmd("TYPE").arg(key).query_async(&mut connection).await.unwrap();
        let value: Vec<u8> = match kind.as_str() {
            "hash" => {
                let pairs: Vec<Vec<u8>> = ::redis::cmd("HGETALL").arg(key).query_async(&mut connection).await.unwrap();
                pairs.concat()
            }
            _ => ::redis::cmd("GET").arg(key).query_async(&mut connection).await.unwrap(),
        };
        let ttl: i64 = ::redis::cmd("TTL").arg(key).query_async(&mut connection).await.unwrap();
        assert!(ttl > 0 || *key == format!("{prefix}:layout"), "{key} has a retention TTL");
        for secret in &secrets {
            assert!(!key.contains(secret.as_str()), "a raw number or device id in key {key}");
            assert!(!value.windows(secret.len()).any(|window| window == secret.as_bytes()), "a raw value in {key}");
        }
    }
    std::fs::remove_dir_all(directory).ok();
}

#[tokio::test]
async fn with_redis_down_the_service_answers_degraded_and_journals_outcomes() {
    use saring::screening::Screener;
    use saring::server::RunningServer;

    // A port nothing listens on (held closed for the whole test).
    let closed = crate::common::process::ClosedPort::new();
    let port = closed.port;
    let prefix = unique_prefix("down");
    let directory = std::env::temp_dir().join(prefix.replace(':', "-"));
    let url = format!("redis://127.0.0.1:{port}/0");
    let store = JournaledStore::open(store_at(&url, &prefix), &directory.join("j"), Duration::from_millis(50)).unwrap();
    let model =
        saring_models::Model::new(saring_models::ModelArtifact::from_json(saring::server::SHIPPED_MODEL).unwrap());
    let screener = Screener::new(store, model, KeyHasher::new(b"down-test-secret-16"), 1000, Duration::from_millis(5));
    let app = crate::common::app_with(screener, &crate::common::sqlite_url("down")).await;
    let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&app)).await.unwrap();
    let channel = crate::common::connect(format!("http://{}", server.local_addr)).await;
    let mut client = crate::common::screening(&channel, crate::common::Bearer::of(saring::auth::Role::Routing));
    let screener = &app.screener;

    let reply =
        client.score_contact(crate::common::sample_contact("x-1", Some("081234567899"))).await.unwrap().into_inner();
    assert!(reply.degraded);
    assert!(
        reply.degraded_reasons == ["history_unavailable"] || reply.degraded_reasons == ["history_timeout"],
        "{:?}",
        reply.degraded_reasons
    );
    let outcome = crate::common::prank_outcome("x-1", None);
    let ack = client.record_outcome(outcome).await.unwrap().into_inner();
    assert!(!ack.duplicate);
    assert_eq!(screener.store().depth(), 1, "the acknowledged outcome waits in the journal");
    let counts = screener.degraded_counts();
    let degraded = counts.history_unavailable.load(std::sync::atomic::Ordering::Relaxed)
        + counts.history_timeout.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(degraded, 1, "the degraded answer is counted by reason");
    server.stop().await.unwrap();
    std::fs::remove_dir_all(directory).ok();
}

#[tokio::test]
async fn a_redis_cluster_counts_exactly_across_slots() {
    let cluster = PrivateRedisCluster::start();
    let prefix = unique_prefix("cluster");
    let replicas = [Arc::new(store_at(&cluster.url(), &prefix)), Arc::new(store_at(&cluster.url(), &prefix))];
    // Numbers and devices hash to different slots (and here, different primaries).
    let callers: Vec<HistoryKey> = (0..6).map(key).collect();
    let device = KeyHasher::new(b"redis-store-test-secret").device("356938035643809");
    let mut tasks = Vec::new();
    for task in 0..8usize {
        let store = Arc::clone(&replicas[task % 2]);
        let callers = callers.clone();
        tasks.push(tokio::spawn(async move {
            for contact in 0..30usize {
                // Tasks 2k and 2k+1 send the same contacts: every contact arrives twice, from both replicas.
                let contact_id = format!("k-{}-{contact}", task / 2);
                let caller = &callers[contact % callers.len()];
                let history_event = event(&contact_id, 1_772_323_200_000 + contact as i64 * 1000, Disposition::Abusive);
                store.record(&contact_id, Some(caller), Some(&device), &history_event).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut total = 0;
    for caller in &callers {
        let histories = replicas[0].load(Some(caller), Some(&device)).await.unwrap();
        total += histories.caller.unwrap().total_contacts;
        assert_eq!(histories.device.unwrap().total_contacts, 4 * 30);
    }
    assert_eq!(total, 4 * 30);
}

#[tokio::test]
async fn with_replica_wait_a_write_counts_only_once_a_replica_has_it() {
    let primary = PrivateRedis::start();
    let prefix = unique_prefix("wait");
    let caller = key(1);
    let at_ms = 1_772_323_200_000;
    // No replica: the write is applied on the primary, but reaching 0 of 1 replicas it is refused, so the journal
    // keeps the outcome.
    let waiting = store_at(&primary.url(), &prefix).with_replica_wait(1, Duration::from_millis(20));
    let refused = waiting.record("w-1", Some(&caller), None, &event("w-1", at_ms, Disposition::Prank)).await;
    assert!(refused.unwrap_err().0.contains("0 of 1 replicas"));
    let not_waiting = store_at(&primary.url(), &prefix);
    assert_eq!(
        not_waiting.record("w-2", Some(&caller), None, &event("w-2", at_ms, Disposition::Prank)).await.unwrap(),
        Recorded::Applied
    );

    // With a replica attached, the same store's writes are taken, and replaying the refused one is a duplicate.
    let port = primary.port.to_string();
    let _replica = PrivateRedis::start_with(&["--appendonly", "no", "--replicaof", "127.0.0.1", &port]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match waiting.record("w-3", Some(&caller), None, &event("w-3", at_ms, Disposition::Prank)).await {
            // An attempt before the replica caught up may have applied it already: a duplicate then.
            Ok(_) => break,
            Err(error) => {
                assert!(std::time::Instant::now() < deadline, "the replica never acknowledged: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(
        waiting.record("w-1", Some(&caller), None, &event("w-1", at_ms, Disposition::Prank)).await.unwrap(),
        Recorded::Duplicate
    );
    let history = waiting.load(Some(&caller), None).await.unwrap().caller.unwrap();
    assert_eq!(history.total_contacts, 3);
}

#[tokio::test]
async fn a_correction_on_a_redis_cluster_moves_the_contact_once_in_both_slots() {
    let cluster = PrivateRedisCluster::start();
    let store = store_at(&cluster.url(), &unique_prefix("cluster-correct"));
    let (caller, device) = (key(7), KeyHasher::new(b"redis-store-test-secret").device("handset-cluster"));
    let start_ms = 1_772_323_200_000;
    let mut expected_caller: Option<CallerHistory> = None;
    for (index, disposition) in
        [Disposition::Prank, Disposition::Silent, Disposition::NonEmergency].into_iter().enumerate()
    {
        let contact_id = format!("cc-{index}");
        let history_event = event(&contact_id, start_ms + index as i64 * 60_000, disposition);
        store.record(&contact_id, Some(&caller), Some(&device), &history_event).await.unwrap();
        match &mut expected_caller {
            Some(history) => {
                history.apply(&history_event);
            }
            None => expected_caller = Some(CallerHistory::from_event(&history_event)),
        }
    }
    let change = DispositionChange {
        contact_fingerprint: contact_fingerprint("cc-1"),
        at_ms: start_ms + 60_000,
        from: Disposition::Silent,
        to: Disposition::Prank,
    };
    assert_eq!(store.correct("cc-1", Some(&caller), Some(&device), &change).await.unwrap(), Corrected::Applied);
    assert_eq!(store.correct("cc-1", Some(&caller), Some(&device), &change).await.unwrap(), Corrected::Unchanged);
    let histories = store.load(Some(&caller), Some(&device)).await.unwrap();
    // Both slots' scripts moved the weight exactly as `CallerHistory::correct` does, once.
    let mut expected = expected_caller.unwrap();
    expected.correct(change.at_ms, change.from, change.to);
    assert_same(histories.caller.as_ref().unwrap(), &expected);
    assert_same(histories.device.as_ref().unwrap(), &expected);
}

/// Every key of every node under `prefix` (KEYS per node: a test's own Redis).
async fn keys_on(ports: &[u16], prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for port in ports {
        let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let found: Vec<String> =
            ::redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut connection).await.unwrap();
        keys.extend(found);
    }
    keys
}

/// Erasure on one store: the erased number's and device's histories and markers go (a scan of every node finds
/// no key naming their hashes, a read finds nothing, a contact counted before counts again as new), the near
/// cache forgets them, and another caller keeps every count.
async fn erasing_removes_every_key_of_the_number_and_device(store: &impl HistoryStore, ports: &[u16], prefix: &str) {
    let (erased, kept) = (key(31), key(32));
    let device = KeyHasher::new(b"redis-store-test-secret").device("356938035643811");
    for contact in 0..20 {
        let contact_id = format!("erase-{contact}");
        let history_event = event(&contact_id, 1_772_323_200_000 + contact * 1000, Disposition::Prank);
        let caller = if contact % 2 == 0 { &erased } else { &kept };
        store.record(&contact_id, Some(caller), Some(&device), &history_event).await.unwrap();
    }
    assert!(store.load(Some(&erased), None).await.unwrap().caller.is_some());
    // Markers name a history by the first 16 bytes of its keyed hash (its field in its bucket).
    let (erased_field, device_field) = (erased.to_hex()[..32].to_owned(), device.to_hex()[..32].to_owned());
    let before = keys_on(ports, prefix).await;
    assert!(before.iter().filter(|key| key.contains(&erased_field)).count() >= 10, "markers: {before:?}");

    let done = store.erase(Some(&erased), Some(&device)).await.unwrap();
    assert_eq!(done.histories, 2);
    let after = keys_on(ports, prefix).await;
    for hex in [erased_field, device_field] {
        assert!(after.iter().all(|key| !key.contains(&hex)), "a key of an erased history is left: {after:?}");
    }
    let histories = store.load(Some(&erased), Some(&device)).await.unwrap();
    assert!(histories.caller.is_none() && histories.device.is_none());
    assert!(store
        .cached(Some(&erased), Some(&device))
        .is_none_or(|cached| cached.caller.is_none() && cached.device.is_none()));
    assert_eq!(
        store.load(Some(&kept), None).await.unwrap().caller.unwrap().total_contacts,
        10,
        "another caller keeps every count"
    );
    // The markers went with the history: the same contact counts again as new (it would be a duplicate otherwise).
    let again = event("erase-0", 1_772_323_200_000, Disposition::Prank);
    assert_eq!(store.record("erase-0", Some(&erased), None, &again).await.unwrap(), Recorded::Applied);
    // Erasing what is gone succeeds (a retry after a partial failure).
    store.erase(Some(&erased), None).await.unwrap();
    assert_eq!(store.erase(Some(&erased), None).await.unwrap().histories, 0);
}

#[tokio::test]
async fn erasure_on_one_redis_behind_a_journal_leaves_no_key_and_no_journaled_outcome() {
    let directory = std::env::temp_dir().join(unique_prefix("erase-journal").replace(':', "-"));
    let journal = directory.join("outcomes.journal");
    let mut redis = PrivateRedis::start();
    let prefix = unique_prefix("erase");
    let store = JournaledStore::open(store_at(&redis.url(), &prefix), &journal, Duration::from_millis(200)).unwrap();
    erasing_removes_every_key_of_the_number_and_device(&store, &[redis.port], &prefix).await;

    // Outcomes journaled while Redis is down are erased too: the number's go, a device's entry loses the number.
    let (erased, other) = (key(33), key(34));
    let device = KeyHasher::new(b"redis-store-test-secret").device("356938035643812");
    redis.stop();
    store.record("down-1", Some(&erased), None, &event("down-1", 1_772_323_300_000, Disposition::Prank)).await.unwrap();
    store
        .record("down-2", Some(&erased), Some(&device), &event("down-2", 1_772_323_301_000, Disposition::Prank))
        .await
        .unwrap();
    store.record("down-3", Some(&other), None, &event("down-3", 1_772_323_302_000, Disposition::Prank)).await.unwrap();
    assert_eq!(store.depth(), 3);
    assert!(store.erase(Some(&erased), None).await.is_err(), "Redis is down: the erasure fails, and says so");
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(!text.contains(&erased.to_hex()), "the journal no longer names the erased number: {text}");
    assert_eq!(store.depth(), 2, "the number's own entry went; the device's stays without the number");
    let port = redis.port;
    drop(redis);
    let _redis = PrivateRedis::start_on(port);
    assert_eq!(store.erase(Some(&erased), None).await.unwrap().journal_entries, 0, "the retry completes");
    assert_eq!(store.replay().await.unwrap(), 2);
    assert!(store.load(Some(&erased), None).await.unwrap().caller.is_none(), "the replay did not bring it back");
    assert_eq!(store.load(None, Some(&device)).await.unwrap().device.unwrap().total_contacts, 1);
    std::fs::remove_dir_all(directory).ok();
}

#[tokio::test]
async fn erasure_on_a_redis_cluster_leaves_no_key_on_any_node() {
    let cluster = PrivateRedisCluster::start();
    let prefix = unique_prefix("erase-cluster");
    let store = store_at(&cluster.url(), &prefix);
    erasing_removes_every_key_of_the_number_and_device(&store, &cluster.ports, &prefix).await;
}

#[tokio::test]
async fn erasure_in_memory_removes_the_histories() {
    let store = saring::store::MemoryStore::new(Duration::from_secs(3600));
    let erased = key(35);
    store.record("m-1", Some(&erased), None, &event("m-1", 1_772_323_200_000, Disposition::Prank)).await.unwrap();
    assert_eq!(store.erase(Some(&erased), None).await.unwrap().histories, 1);
    assert!(store.load(Some(&erased), None).await.unwrap().caller.is_none());
}

#[tokio::test]
async fn journaled_outcomes_older_than_the_retention_are_dropped_not_replayed() {
    let directory = std::env::temp_dir().join(unique_prefix("journal-retention").replace(':', "-"));
    let journal = directory.join("outcomes.journal");
    let mut redis = PrivateRedis::start();
    let prefix = unique_prefix("journal-retention");
    let store = JournaledStore::open(store_at(&redis.url(), &prefix), &journal, Duration::from_millis(200))
        .unwrap()
        .with_retention(Duration::from_secs(30 * 86_400));
    let (old, recent) = (key(41), key(42));
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    redis.stop();
    store.record("old", Some(&old), None, &event("old", now_ms - 31 * 86_400_000, Disposition::Prank)).await.unwrap();
    store.record("new", Some(&recent), None, &event("new", now_ms - 86_400_000, Disposition::Prank)).await.unwrap();
    assert_eq!(store.depth(), 2);
    let port = redis.port;
    drop(redis);
    let _redis = PrivateRedis::start_on(port);
    assert_eq!(store.replay().await.unwrap(), 1, "only the outcome within the retention is replayed");
    assert_eq!(store.depth(), 0, "the expired one is gone from the journal too");
    assert!(store.load(Some(&old), None).await.unwrap().caller.is_none());
    assert_eq!(store.load(Some(&recent), None).await.unwrap().caller.unwrap().total_contacts, 1);
    std::fs::remove_dir_all(directory).ok();
}
