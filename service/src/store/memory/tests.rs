use std::collections::HashMap;

use proptest::prelude::*;
use saring_models::history::contact_fingerprint;

use super::*;
use crate::privacy::KeyHasher;

/// Ids of the model test's keys.
const IDS: u64 = 600;

fn spread(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

/// The model test's key `id`. Most hash as HMAC keys do; one in eight crowd onto four hashes: two homes, the
/// first and the last slot of every index size (probes and shifts wrap around), with tags equal and different.
fn test_key(id: u64) -> HistoryKey {
    let crowded = [0, 1 << 56, u64::MAX, u64::MAX >> 8];
    let hash = if id % 8 == 1 { crowded[(id / 8 % 4) as usize] } else { spread(id) };
    let mut bytes = [0; 32];
    bytes[..8].copy_from_slice(&id.to_le_bytes());
    bytes[8..16].copy_from_slice(&hash.to_le_bytes());
    HistoryKey(bytes)
}

fn event(contact: u64, at_ms: i64, disposition: Disposition) -> HistoryEvent {
    HistoryEvent {
        contact_fingerprint: contact_fingerprint(&format!("c-{contact}")),
        at_ms,
        answered: !contact.is_multiple_of(3),
        talk_s: (contact % 50) as f64,
        night: contact.is_multiple_of(4),
        disposition,
    }
}

fn record_at(id: u64, at_ms: i64) -> PackedHistory {
    let disposition = Disposition::ALL[id as usize % Disposition::ALL.len()];
    PackedHistory::pack(&CallerHistory::from_event(&event(id, at_ms, disposition)))
}

#[derive(Debug, Clone)]
enum Op {
    Put { id: u64, at_s: i64 },
    Remove { id: u64 },
    Sweep { cutoff_s: i64, batch: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..IDS, 0..1000i64).prop_map(|(id, at_s)| Op::Put { id, at_s }),
        3 => (0..IDS).prop_map(|id| Op::Remove { id }),
        1 => (0..400i64, 1..40usize).prop_map(|(cutoff_s, batch)| Op::Sweep { cutoff_s, batch }),
    ]
}

/// The table holds what the model holds, and its index is exact: one slot per entry, each reachable.
fn check(table: &Table, model: &HashMap<HistoryKey, PackedHistory>, touched: &HistoryKey) -> Result<(), TestCaseError> {
    prop_assert_eq!(table.len, model.len());
    prop_assert_eq!(table.get(touched), model.get(touched));
    for (key, record) in model {
        prop_assert_eq!(table.get(key), Some(record));
    }
    prop_assert_eq!(table.slots.iter().filter(|slot| **slot != 0).count(), table.len);
    for position in 0..table.len {
        let slot = table.probe(&table.entry(position).key).expect("indexed");
        prop_assert_eq!(position_of(table.slots[slot]), position);
    }
    prop_assert!(table.len * 8 <= table.slots.len() * 7);
    prop_assert!(table.pages.len() * PAGE >= table.len && table.pages.len() * PAGE < table.len + 2 * PAGE);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_table_holds_what_a_hash_map_holds(ops in prop::collection::vec(op(), 1..1500)) {
        let mut table = Table::new();
        let mut model = HashMap::new();
        for op in ops {
            let touched = match op {
                Op::Put { id, at_s } => {
                    let (key, record) = (test_key(id), record_at(id, at_s * 1000));
                    match table.get_mut(&key) {
                        Some(held) => *held = record,
                        None => table.insert(key, record),
                    }
                    model.insert(key, record);
                    key
                }
                Op::Remove { id } => {
                    let key = test_key(id);
                    prop_assert_eq!(table.remove(&key), model.remove(&key));
                    key
                }
                Op::Sweep { cutoff_s, batch } => {
                    let cutoff_ms = cutoff_s * 1000;
                    let (mut removed, mut cursor) = (0, Some(0));
                    while let Some(from) = cursor {
                        let (removed_here, next) = table.sweep(cutoff_ms, from, batch);
                        removed += removed_here;
                        cursor = next;
                    }
                    let before = model.len();
                    model.retain(|_, record| record.last_seen_ms() >= cutoff_ms);
                    prop_assert_eq!(removed, (before - model.len()) as u64);
                    prop_assert!(table.slots.len() < 4 * slots_for(table.len));
                    test_key(0)
                }
            };
            check(&table, &model, &touched)?;
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Record { contact: u64, caller: usize, device: Option<usize>, at_s: i64, disposition: usize },
    Correct { contact: u64, to: usize },
}

fn step() -> impl Strategy<Value = Step> {
    let disposition = 0..Disposition::ALL.len();
    prop_oneof![
        3 => (0..40u64, 0..4usize, prop::option::of(0..3usize), 0..200_000i64, disposition.clone()).prop_map(
            |(contact, caller, device, at_s, disposition)| Step::Record { contact, caller, device, at_s, disposition }
        ),
        1 => (0..40u64, disposition).prop_map(|(contact, to)| Step::Correct { contact, to }),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Records and corrections leave exactly the histories `CallerHistory` computes (bit for bit: the packed
    /// record holds a history exactly), without the recent contact fingerprints the store does not keep.
    #[test]
    fn the_memory_store_holds_what_caller_history_computes(steps in prop::collection::vec(step(), 1..60)) {
        let hasher = KeyHasher::new(b"memory-store-test-secret-0123456");
        let callers: Vec<_> = (0..4).map(|index| hasher.number(&format!("+6281200000{index}"))).collect();
        let devices: Vec<_> = (0..3).map(|index| hasher.device(&format!("device-{index}"))).collect();
        let store = MemoryStore::new(Duration::from_secs(3600));
        let mut model: HashMap<HistoryKey, CallerHistory> = HashMap::new();
        let mut contacts: HashMap<u64, (i64, HistoryKey, Option<HistoryKey>, Disposition)> = HashMap::new();
        let runtime = runtime();
        for step in steps {
            match step {
                Step::Record { contact, caller, device, at_s, disposition } => {
                    let (caller, device) = (callers[caller], device.map(|index| devices[index]));
                    let disposition = Disposition::ALL[disposition];
                    let event = event(contact, at_s * 1000, disposition);
                    let recorded = runtime
                        .block_on(store.record(&format!("c-{contact}"), Some(&caller), device.as_ref(), &event))
                        .expect("memory store");
                    if contacts.contains_key(&contact) {
                        prop_assert_eq!(recorded, Recorded::Duplicate);
                        continue;
                    }
                    prop_assert_eq!(recorded, Recorded::Applied);
                    for key in [Some(caller), device].into_iter().flatten() {
                        match model.get_mut(&key) {
                            Some(history) => prop_assert!(history.apply(&event)),
                            None => drop(model.insert(key, CallerHistory::from_event(&event))),
                        }
                    }
                    contacts.insert(contact, (event.at_ms, caller, device, disposition));
                }
                Step::Correct { contact, to } => {
                    let to = Disposition::ALL[to];
                    let held = contacts.get(&contact).copied();
                    let (at_ms, caller, device, from) = held.unwrap_or((0, callers[0], None, Disposition::Unknown));
                    let change = DispositionChange { contact_fingerprint: 0, at_ms, from, to };
                    let corrected = runtime
                        .block_on(store.correct(&format!("c-{contact}"), Some(&caller), device.as_ref(), &change))
                        .expect("memory store");
                    let expected = match held {
                        None => Corrected::NotHeld,
                        Some(_) if from == to => Corrected::Unchanged,
                        Some(_) => {
                            for key in [Some(caller), device].into_iter().flatten() {
                                model.get_mut(&key).expect("recorded").correct(at_ms, from, to);
                            }
                            contacts.insert(contact, (at_ms, caller, device, to));
                            Corrected::Applied
                        }
                    };
                    prop_assert_eq!(corrected, expected);
                }
            }
        }
        for key in callers.iter().chain(&devices) {
            let loaded = runtime.block_on(store.load(Some(key), None)).expect("memory store").caller;
            let expected = model.get(key).map(|history| CallerHistory { recent_contacts: [0; 8], ..history.clone() });
            prop_assert_eq!(loaded, expected);
        }
    }
}

#[test]
fn a_sweep_removes_exactly_the_histories_last_seen_before_the_cutoff() {
    let hasher = KeyHasher::new(b"memory-store-test-secret-0123456");
    let store = MemoryStore::new(Duration::from_secs(3600));
    let runtime = runtime();
    let callers: Vec<_> = (0..20_000).map(|index| hasher.number(&format!("+62813{index:08}"))).collect();
    let last_seen_s = |index: usize| (index * 7919 % 20_000) as i64;
    for (index, key) in callers.iter().enumerate() {
        // An early contact, then the latest: retention goes by the latest.
        for (contact, at_s) in [(2 * index, 0), (2 * index + 1, last_seen_s(index))] {
            let event = event(contact as u64, at_s * 1000, Disposition::NonEmergency);
            runtime.block_on(store.record(&format!("c-{contact}"), Some(key), None, &event)).expect("memory store");
        }
    }
    let before: Vec<_> =
        callers.iter().map(|key| runtime.block_on(store.load(Some(key), None)).expect("memory store")).collect();
    let cutoff_s = 12_345;
    let removed = runtime.block_on(store.sweep_expired(cutoff_s * 1000)).expect("memory store");
    assert_eq!(removed, 12_345);
    for (index, key) in callers.iter().enumerate() {
        let after = runtime.block_on(store.load(Some(key), None)).expect("memory store");
        if last_seen_s(index) < cutoff_s {
            assert_eq!(after.caller, None, "caller {index} last seen at {}s", last_seen_s(index));
        } else {
            assert_eq!(after, before[index], "caller {index} last seen at {}s", last_seen_s(index));
        }
    }
    assert_eq!(runtime.block_on(store.sweep_expired(cutoff_s * 1000)).expect("memory store"), 0);
    assert_eq!(runtime.block_on(store.sweep_expired(i64::MAX)).expect("memory store"), 20_000 - 12_345);
    for shard in &store.shards {
        let shard = shard.lock();
        assert_eq!((shard.len, shard.pages.len()), (0, 1));
        assert!(shard.slots.len() <= 2 * MIN_SLOTS, "the index shrinks: {} slots", shard.slots.len());
    }
}

#[test]
fn erasure_and_named_keys_remove_exactly_their_histories() {
    let hasher = KeyHasher::new(b"memory-store-test-secret-0123456");
    let store = MemoryStore::new(Duration::from_secs(3600));
    let runtime = runtime();
    let callers: Vec<_> = (0..1000).map(|index| hasher.number(&format!("+62813{index:08}"))).collect();
    for (index, key) in callers.iter().enumerate() {
        let event = event(index as u64, 1_000, Disposition::Prank);
        runtime.block_on(store.record(&format!("c-{index}"), Some(key), None, &event)).expect("memory store");
    }
    let erased = runtime.block_on(store.erase(Some(&callers[3]), Some(&callers[4]))).expect("memory store");
    assert_eq!(erased.histories, 2);
    let named = NamedKeys::new(hasher.clone(), (10..20).map(|index| hasher.notice_digest(&callers[index])));
    assert_eq!(runtime.block_on(store.forget_named(&named)).expect("memory store").histories, 10);
    for (index, key) in callers.iter().enumerate() {
        let held = runtime.block_on(store.load(Some(key), None)).expect("memory store").caller.is_some();
        assert_eq!(held, !(3..=4).contains(&index) && !(10..20).contains(&index), "caller {index}");
    }
}
