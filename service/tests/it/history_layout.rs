//! The Redis history layout: layout 1 (one key per caller) moved into layout 2 (bucketed hashes) by
//! `RedisStore::migrate` with every count exact, while the store keeps reading and writing; the per-caller
//! retention sweep; bucket bits fixed once data is written.

use saring::privacy::{HistoryKey, KeyHasher};
use saring::store::redis::{decode, decode_v1};
use saring::store::{Corrected, DispositionChange, HistoryStore, Recorded, RedisStore};
use saring_models::history::{contact_fingerprint, Counter, HALF_LIVES_S, MONTH};
use saring_models::{CallerHistory, Disposition, HistoryEvent};

use crate::common::process::{unique_prefix, PrivateRedis};
use crate::redis_store::store_at;

/// The apply script of saring's previous version (layout 1), as it ran on Redis: it writes the layout-1 data the
/// migration starts from.
const V1_APPLY_SCRIPT: &str = r#"
-- KEYS[1] history, KEYS[2] marker
-- ARGV[1] at_ms, ARGV[2] retention s, ARGV[3] marker ttl s, ARGV[4..6] half-lives s, ARGV[7] marker value
-- ('d' and the disposition's counter index), ARGV[8..] counter indexes
-- Returns 0 for a contact counted before, else the history as stored
if not redis.call('SET', KEYS[2], ARGV[7], 'NX', 'EX', ARGV[3]) then return 0 end
local FMT = '<' .. string.rep('d', 40)
local at = tonumber(ARGV[1])
local v
local raw = redis.call('GET', KEYS[1])
if raw then
  v = {struct.unpack(FMT, raw)}
  v[41] = nil
else
  v = {}
  for i = 1, 40 do v[i] = 0 end
  v[37] = at; v[38] = at; v[39] = at
end
local half_lives = {tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}
if at > v[37] then
  local elapsed_s = (at - v[37]) / 1000
  for h = 1, 3 do
    local factor = 2 ^ (-elapsed_s / half_lives[h])
    for c = 0, 11 do v[c * 3 + h] = v[c * 3 + h] * factor end
  end
  v[37] = at
end
local weights = {1, 1, 1}
if v[37] > at then
  local age_s = (v[37] - at) / 1000
  for h = 1, 3 do weights[h] = 2 ^ (-age_s / half_lives[h]) end
end
for j = 8, #ARGV do
  local c = tonumber(ARGV[j])
  for h = 1, 3 do v[c * 3 + h] = v[c * 3 + h] + weights[h] end
end
if v[40] == 0 then
  v[38] = at; v[39] = at
else
  if at < v[38] then v[38] = at end
  if at > v[39] then v[39] = at end
end
v[40] = v[40] + 1
local packed = struct.pack(FMT, unpack(v))
redis.call('SET', KEYS[1], packed, 'EX', ARGV[2])
return packed
"#;

const START_MS: i64 = 1_772_323_200_000;

fn key(index: u32) -> HistoryKey {
    KeyHasher::new(b"history-layout-test-secret").number(&format!("+6281200{index:05}"))
}

fn event(contact: &str, at_ms: i64, disposition: Disposition) -> HistoryEvent {
    HistoryEvent {
        contact_fingerprint: contact_fingerprint(contact),
        at_ms,
        answered: disposition != Disposition::Silent,
        talk_s: if disposition == Disposition::Prank { 4.0 } else { 40.0 },
        night: at_ms % 7 == 0,
        disposition,
    }
}

/// Records one contact the way a replica of the previous version did: layout 1's key and marker.
async fn record_v1(
    connection: &mut redis::aio::MultiplexedConnection,
    store: &RedisStore,
    caller: &HistoryKey,
    contact_id: &str,
    event: &HistoryEvent,
) {
    let history_key = store.v1_key('n', caller);
    let mut command = redis::cmd("EVAL");
    command
        .arg(V1_APPLY_SCRIPT)
        .arg(2)
        .arg(&history_key)
        .arg(format!("{history_key}:c:{:016x}", contact_fingerprint(contact_id)))
        .arg(event.at_ms)
        .arg(3600)
        .arg(3600);
    for half_life in HALF_LIVES_S {
        command.arg(half_life);
    }
    command.arg(format!("d{}", Counter::Disposition(event.disposition).index()));
    for counter in event.counters() {
        command.arg(counter.index());
    }
    let _: redis::Value = command.query_async(connection).await.unwrap();
}

fn disposition(index: u32) -> Disposition {
    Disposition::ALL[(index as usize * 3) % Disposition::ALL.len()]
}

#[tokio::test]
async fn migrating_from_layout_one_keeps_every_count_exactly() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix("layout-migrate");
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let store = store_at(&redis.url(), &prefix);
    let callers = 40u32;

    // Before the upgrade: every caller has 5 contacts in layout 1.
    let mut expected: Vec<Option<CallerHistory>> = vec![None; callers as usize];
    let apply = |expected: &mut Vec<Option<CallerHistory>>, caller: u32, event: &HistoryEvent| match &mut expected
        [caller as usize]
    {
        Some(history) => {
            history.apply(event);
        }
        slot @ None => *slot = Some(CallerHistory::from_event(event)),
    };
    for caller in 0..callers {
        for contact in 0..5u32 {
            let contact_id = format!("old-{caller}-{contact}");
            let at_ms = START_MS + i64::from(contact * 3_600_000 + caller * 1_000);
            let event = event(&contact_id, at_ms, disposition(caller + contact));
            record_v1(&mut connection, &store, &key(caller), &contact_id, &event).await;
            apply(&mut expected, caller, &event);
        }
    }

    // Upgraded, not yet migrated: reads add both layouts; a retried old outcome counts once; new contacts go to
    // layout 2 (some earlier than the old ones: arrival order does not matter).
    assert!(store.reading_v1());
    for caller in 0..callers {
        let loaded = store.load(Some(&key(caller)), None).await.unwrap().caller.unwrap();
        assert_eq!(loaded.total_contacts, 5);
        let retried = event(&format!("old-{caller}-0"), START_MS + i64::from(caller * 1_000), disposition(caller));
        assert_eq!(
            store.record(&format!("old-{caller}-0"), Some(&key(caller)), None, &retried).await.unwrap(),
            Recorded::Duplicate
        );
        for contact in 0..(caller % 4) {
            let contact_id = format!("new-{caller}-{contact}");
            let at_ms = START_MS + 2 * 86_400_000 - i64::from(contact) * 86_400_000 + i64::from(caller);
            let event = event(&contact_id, at_ms, disposition(caller * 7 + contact));
            assert_eq!(store.record(&contact_id, Some(&key(caller)), None, &event).await.unwrap(), Recorded::Applied);
            apply(&mut expected, caller, &event);
        }
        let loaded = store.load(Some(&key(caller)), None).await.unwrap().caller.unwrap();
        assert_eq!(loaded.total_contacts, 5 + caller % 4, "caller {caller}: both layouts read");
    }
    // A contact layout 1 counted, corrected before the migration: its weight moves in layout 1.
    let before = DispositionChange {
        contact_fingerprint: contact_fingerprint("old-1-1"),
        at_ms: START_MS + 3_601_000,
        from: disposition(2),
        to: Disposition::Prank,
    };
    assert_eq!(store.correct("old-1-1", Some(&key(1)), None, &before).await.unwrap(), Corrected::Applied);
    expected[1].as_mut().unwrap().correct(before.at_ms, before.from, before.to);

    // An interrupted earlier run left one history renamed but not moved.
    let interrupted = store.v1_key('n', &key(3));
    let _: () = redis::cmd("RENAME")
        .arg(&interrupted)
        .arg(format!("{interrupted}:moving"))
        .query_async(&mut connection)
        .await
        .unwrap();

    // The expected layout-2 histories: each caller's layout-2 part merged with its layout-1 part, as `merge` does.
    let mut merged = Vec::new();
    let mut raw_v1_of_nine = Vec::new();
    for caller in 0..callers {
        let (bucket, field) = store.history_place('n', &key(caller));
        let v2: redis::Value = redis::cmd("HGET").arg(&bucket).arg(&field).query_async(&mut connection).await.unwrap();
        let v1_key = store.v1_key('n', &key(caller));
        let v1_key = if caller == 3 { format!("{v1_key}:moving") } else { v1_key };
        let v1: redis::Value = redis::cmd("GET").arg(&v1_key).query_async(&mut connection).await.unwrap();
        if caller == 9 {
            raw_v1_of_nine = redis::from_redis_value_ref::<Vec<u8>>(&v1).unwrap();
        }
        let (v2, v1) = (decode(&v2).unwrap(), decode_v1(&v1).unwrap().unwrap());
        merged.push(match v2 {
            Some(mut v2) => {
                v2.merge(&v1);
                v2
            }
            None => v1,
        });
    }

    let migrated = store.migrate().await.unwrap();
    assert_eq!((migrated.moved, migrated.already_moved), (u64::from(callers), 0));
    assert!(!store.reading_v1(), "the store reads layout 2 only once the migration finished");
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}:v1:*")).query_async(&mut connection).await.unwrap();
    assert!(keys.iter().all(|key| key.contains(":c:")), "only layout-1 markers are left (they expire): {keys:?}");

    for caller in 0..callers {
        let loaded = store.load(Some(&key(caller)), None).await.unwrap().caller.unwrap();
        let bits = |history: &CallerHistory| history.counters.map(|row| row.map(f32::to_bits));
        assert_eq!(bits(&loaded), bits(&merged[caller as usize]), "caller {caller}: moved as merge() adds");
        let expected = expected[caller as usize].as_ref().unwrap();
        assert_eq!(loaded.total_contacts, expected.total_contacts, "caller {caller}: every count");
        assert_eq!((loaded.first_seen_ms, loaded.last_seen_ms), (expected.first_seen_ms, expected.last_seen_ms));
        for counter in [Counter::Contacts, Counter::Short, Counter::Disposition(Disposition::Prank)] {
            let (a, b) = (
                loaded.value_at(counter, MONTH, START_MS + 3 * 86_400_000),
                expected.value_at(counter, MONTH, START_MS + 3 * 86_400_000),
            );
            assert!((a - b).abs() <= 1e-5 * (1.0 + b), "caller {caller} {counter:?}: {a} vs {b}");
        }
    }

    // After the migration: a retried old outcome still counts once (layout 1's markers are asked for one marker
    // window), and a correction of an old contact finds its weight in layout 2.
    let retried = event("old-5-2", START_MS + 2 * 3_600_000 + 5_000, disposition(7));
    assert_eq!(store.record("old-5-2", Some(&key(5)), None, &retried).await.unwrap(), Recorded::Duplicate);
    let after = DispositionChange {
        contact_fingerprint: contact_fingerprint("old-5-2"),
        at_ms: retried.at_ms,
        from: disposition(7),
        to: Disposition::Abusive,
    };
    let corrected = store.correct("old-5-2", Some(&key(5)), None, &after).await.unwrap();
    assert_eq!(
        corrected,
        if disposition(7) == Disposition::Abusive { Corrected::Unchanged } else { Corrected::Applied }
    );
    assert_eq!(
        store.correct("old-5-2", Some(&key(5)), None, &after).await.unwrap(),
        Corrected::Unchanged,
        "exactly once"
    );
    let mut expected_five = expected[5].clone().unwrap();
    expected_five.correct(after.at_ms, after.from, after.to);
    let loaded = store.load(Some(&key(5)), None).await.unwrap().caller.unwrap();
    for disposition in Disposition::ALL {
        let counter = Counter::Disposition(disposition);
        let (a, b) = (loaded.stored(counter, MONTH), expected_five.value_at(counter, MONTH, loaded.last_seen_ms));
        assert!((a - b).abs() <= 1e-5 * (1.0 + b), "{disposition:?}: {a} vs {b}");
    }

    // Running it again after a crash that left a moved history's renamed copy behind adds nothing twice.
    let _: () = redis::cmd("SET")
        .arg(format!("{}:moving", store.v1_key('n', &key(9))))
        .arg(&raw_v1_of_nine)
        .query_async(&mut connection)
        .await
        .unwrap();
    let again = store.migrate().await.unwrap();
    assert_eq!((again.moved, again.already_moved), (0, 1));
    let nine = store.load(Some(&key(9)), None).await.unwrap().caller.unwrap();
    assert_eq!(nine.counters, merged[9].counters);
    assert_eq!(nine.total_contacts, expected[9].as_ref().unwrap().total_contacts);
}

#[tokio::test]
async fn the_sweep_removes_exactly_the_histories_past_retention() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix("layout-sweep");
    let store = store_at(&redis.url(), &prefix).with_bucket_bits(4).unwrap();
    let device = KeyHasher::new(b"history-layout-test-secret").device("356938035643000");
    for caller in 0..60u32 {
        // Even callers were last seen on day 0, odd ones on day 10.
        let at_ms = START_MS + if caller % 2 == 0 { 0 } else { 10 * 86_400_000 };
        let contact_id = format!("sweep-{caller}");
        let device = (caller == 1).then_some(&device);
        store
            .record(&contact_id, Some(&key(caller)), device, &event(&contact_id, at_ms, Disposition::Silent))
            .await
            .unwrap();
    }
    let removed = store.sweep_expired(START_MS + 5 * 86_400_000).await.unwrap();
    assert_eq!(removed, 30);
    for caller in 0..60u32 {
        let loaded = store.load(Some(&key(caller)), None).await.unwrap().caller;
        assert_eq!(loaded.is_some(), caller % 2 == 1, "caller {caller}");
    }
    assert!(store.load(None, Some(&device)).await.unwrap().device.is_some(), "the device was seen on day 10");
    assert_eq!(store.sweep_expired(START_MS + 5 * 86_400_000).await.unwrap(), 0);
    assert_eq!(store.sweep_expired(START_MS + 11 * 86_400_000).await.unwrap(), 31, "the rest, and the device");
}

#[tokio::test]
async fn one_sweep_is_claimed_per_interval_by_every_replica_together() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix("layout-sweep-claim");
    let first = store_at(&redis.url(), &prefix);
    let second = store_at(&redis.url(), &prefix);
    let other_deployment = store_at(&redis.url(), &unique_prefix("layout-sweep-claim-other"));
    let interval = std::time::Duration::from_millis(400);
    assert!(first.claim_sweep(interval).await.unwrap(), "nobody swept yet");
    assert!(!second.claim_sweep(interval).await.unwrap(), "another replica swept within the interval");
    assert!(!first.claim_sweep(interval).await.unwrap(), "a restart within the interval does not sweep again");
    assert!(other_deployment.claim_sweep(interval).await.unwrap(), "another prefix has its own claim");
    // The claim lapses with its interval: the next interval's sweep is claimed again.
    let mut connection = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let left_ms: i64 = redis::cmd("PTTL").arg(first.sweep_claim_key()).query_async(&mut connection).await.unwrap();
    assert!(left_ms > 0 && left_ms <= 400, "{left_ms}");
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert!(second.claim_sweep(interval).await.unwrap());
}

#[tokio::test]
async fn a_replica_configured_for_other_bucket_bits_refuses_the_store() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix("layout-bits");
    let first = store_at(&redis.url(), &prefix);
    first.record("bits-1", Some(&key(1)), None, &event("bits-1", START_MS, Disposition::Prank)).await.unwrap();
    let other = store_at(&redis.url(), &prefix).with_bucket_bits(12).unwrap();
    let error = other.load(Some(&key(1)), None).await.unwrap_err();
    assert!(error.0.contains("bucketed by 16 bits") && error.0.contains("configured for 12"), "{error}");
    assert!(store_at(&redis.url(), &prefix).with_bucket_bits(0).is_err());
    assert!(store_at(&redis.url(), &prefix).with_bucket_bits(25).is_err());
}

#[tokio::test]
async fn a_bucket_of_many_callers_is_one_compact_hash() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix("layout-compact");
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("hash-max-listpack-value")
        .arg(256)
        .query_async(&mut connection)
        .await
        .unwrap();
    let store = store_at(&redis.url(), &prefix).with_bucket_bits(1).unwrap();
    for caller in 0..100u32 {
        let contact_id = format!("compact-{caller}");
        store
            .record(&contact_id, Some(&key(caller)), None, &event(&contact_id, START_MS, Disposition::Prank))
            .await
            .unwrap();
    }
    let (bucket, _) = store.history_place('n', &key(0));
    let fields: usize = redis::cmd("HLEN").arg(&bucket).query_async(&mut connection).await.unwrap();
    assert!(fields > 30, "about half the callers share a bucket: {fields}");
    let encoding: String =
        redis::cmd("OBJECT").arg("ENCODING").arg(&bucket).query_async(&mut connection).await.unwrap();
    assert_eq!(encoding, "listpack");
    let ttl: i64 = redis::cmd("TTL").arg(&bucket).query_async(&mut connection).await.unwrap();
    assert!(ttl > 0, "a bucket expires after its last write");
}
