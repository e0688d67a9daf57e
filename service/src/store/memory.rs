//! The in-memory history store: each history packed into a fixed-size entry of a sharded open-addressing table (no
//! heap allocation per caller), behind short synchronous locks (never held across an await).
//!
//! Bytes per caller (issue 20, goal ≤ 200): an entry is the 32-byte key and the 152-byte packed history, 184 bytes,
//! in pages of 256 entries; the index adds 4 bytes a slot at a load between 7/16 and 7/8, 4.6 to 9.1 bytes a caller;
//! each shard's last page or two are partly empty (under 94 KB a shard). `score-allocs` measures it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use saring_models::history::PACKED_BYTES;
use saring_models::{CallerHistory, Disposition, HistoryEvent, PackedHistory};

use super::{Corrected, DispositionChange, Erased, Histories, HistoryStore, Recorded, StoreError};
use crate::privacy::{HistoryKey, NamedKeys};

/// Shards, picked by the key's first byte: a lock is contended by 1/64 of the callers.
const SHARDS: usize = 64;
/// Entries a retention sweep examines under one shard lock before letting scoring in (and yielding the task).
const SWEEP_BATCH: usize = 4096;

/// Histories and per-contact markers in process memory. Lost on restart: the embedded default for one replica.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Vec<Mutex<Table>>,
    markers: Mutex<Markers>,
}

/// Contact ids already recorded, each with the disposition the histories hold for it, kept for the marker window
/// so late repeats still count once and a correction knows what to move.
#[derive(Debug)]
struct Markers {
    recorded: HashMap<String, (Instant, Disposition)>,
    window: Duration,
    next_sweep_at: usize,
}

impl Markers {
    /// Inserts a marker; false when it was already there.
    fn insert(&mut self, contact_id: &str, disposition: Disposition) -> bool {
        if self.recorded.contains_key(contact_id) {
            return false;
        }
        if self.recorded.len() >= self.next_sweep_at {
            let window = self.window;
            self.recorded.retain(|_, (recorded_at, _)| recorded_at.elapsed() < window);
            self.next_sweep_at = (self.recorded.len() * 2).max(1024);
        }
        self.recorded.insert(contact_id.to_owned(), (Instant::now(), disposition));
        true
    }
}

impl MemoryStore {
    /// An empty store that remembers recorded contact ids for `marker_window`.
    pub fn new(marker_window: Duration) -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Table::new())).collect(),
            markers: Mutex::new(Markers { recorded: HashMap::new(), window: marker_window, next_sweep_at: 1024 }),
        }
    }

    fn shard(&self, key: &HistoryKey) -> &Mutex<Table> {
        &self.shards[usize::from(key.0[0]) % SHARDS]
    }

    fn read(&self, key: Option<&HistoryKey>) -> Option<CallerHistory> {
        let key = key?;
        let record = self.shard(key).lock().get(key).copied();
        Some(record?.unpack())
    }

    fn correct_history(&self, key: Option<&HistoryKey>, at_ms: i64, from: Disposition, to: Disposition) {
        let Some(key) = key else { return };
        if let Some(record) = self.shard(key).lock().get_mut(key) {
            let mut history = record.unpack();
            history.correct(at_ms, from, to);
            *record = PackedHistory::pack(&history);
        }
    }

    fn apply(&self, key: Option<&HistoryKey>, event: &HistoryEvent) {
        let Some(key) = key else { return };
        let mut shard = self.shard(key).lock();
        match shard.get_mut(key) {
            Some(record) => {
                let mut history = record.unpack();
                history.apply(event);
                *record = PackedHistory::pack(&history);
            }
            None => shard.insert(*key, PackedHistory::pack(&CallerHistory::from_event(event))),
        }
    }
}

impl HistoryStore for MemoryStore {
    async fn load(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Result<Histories, StoreError> {
        Ok(Histories { caller: self.read(caller), device: self.read(device) })
    }

    async fn record(
        &self,
        contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        event: &HistoryEvent,
    ) -> Result<Recorded, StoreError> {
        // The marker's lock is held while the histories take the contact, so a correction never sees a marker
        // whose contact is not applied yet. Every insertion happens under it: the room checked is still there.
        let mut markers = self.markers.lock();
        if !markers.insert(contact_id, event.disposition) {
            return Ok(Recorded::Duplicate);
        }
        if [caller, device].into_iter().flatten().any(|key| self.shard(key).lock().is_full()) {
            markers.recorded.remove(contact_id);
            return Err(StoreError(format!("a shard of the in-memory store holds {MAX_ENTRIES} histories")));
        }
        self.apply(caller, event);
        self.apply(device, event);
        Ok(Recorded::Applied)
    }

    async fn correct(
        &self,
        contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        change: &DispositionChange,
    ) -> Result<Corrected, StoreError> {
        let mut markers = self.markers.lock();
        let Some((_, held)) = markers.recorded.get_mut(contact_id) else { return Ok(Corrected::NotHeld) };
        if *held == change.to {
            return Ok(Corrected::Unchanged);
        }
        if caller.is_none() && device.is_none() {
            return Ok(Corrected::NotHeld);
        }
        self.correct_history(caller, change.at_ms, *held, change.to);
        self.correct_history(device, change.at_ms, *held, change.to);
        *held = change.to;
        Ok(Corrected::Applied)
    }

    async fn erase(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Result<Erased, StoreError> {
        // The markers here name contact ids only (no history key): nothing of the number is in them.
        let histories =
            [caller, device].into_iter().flatten().filter(|key| self.shard(key).lock().remove(key).is_some()).count();
        Ok(Erased { histories, ..Erased::default() })
    }

    async fn sweep_expired(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        // In batches, each under its shard's lock alone, yielding between them: scoring waits for one batch at
        // most, and the sweep does not hold a runtime worker for the whole store.
        let mut removed = 0;
        for shard in &self.shards {
            let mut cursor = Some(0);
            while let Some(from) = cursor {
                let (removed_here, next) = shard.lock().sweep(cutoff_ms, from, SWEEP_BATCH);
                removed += removed_here;
                cursor = next;
                tokio::task::yield_now().await;
            }
        }
        Ok(removed)
    }

    async fn forget_named(&self, named: &NamedKeys) -> Result<Erased, StoreError> {
        if named.is_empty() {
            return Ok(Erased::default());
        }
        let mut histories = 0;
        for shard in &self.shards {
            // The keys are copied out under the lock and matched outside it (a digest or two per key): scoring
            // never waits on the matching.
            let keys: Vec<HistoryKey> = shard.lock().keys().collect();
            let named_here: Vec<HistoryKey> = keys.into_iter().filter(|key| named.names(key)).collect();
            if !named_here.is_empty() {
                let mut shard = shard.lock();
                histories += named_here.iter().filter(|key| shard.remove(key).is_some()).count();
            }
        }
        Ok(Erased { histories, ..Erased::default() })
    }
}

/// Entries in a page: 47 KB, so a shard's partly filled last page is little beside its callers, and growing never
/// copies the entries already held.
const PAGE: usize = 256;
/// Index slots of an empty shard.
const MIN_SLOTS: usize = 16;
/// Low bits of a slot: the entry's position + 1 (0 is an empty slot). The high 8 bits are a tag, the key hash's
/// top byte, so a probe reads an entry (a likely cache miss) only when the tags match.
const POSITION_BITS: u32 = 24;
const POSITION_MASK: u32 = (1 << POSITION_BITS) - 1;
/// The most histories a shard holds (its positions + 1 fit in [`POSITION_BITS`]): about a billion in the store.
const MAX_ENTRIES: usize = POSITION_MASK as usize;

/// One history in a shard: its full key (erasure notices are matched against digests of it) and its record.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: HistoryKey,
    record: PackedHistory,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 32 + PACKED_BYTES);

impl Entry {
    const VACANT: Entry = Entry { key: HistoryKey([0; 32]), record: PackedHistory([0; PACKED_BYTES]) };
}

/// One shard's histories: the entries densely in pages (positions `0..len`), and an open-addressing index over
/// them (linear probing, backward-shift deletion).
///
/// The index doubles when it would pass 7/8 full. Linear probing at 7/8 probes about 4.5 slots to find a key and
/// 32 to miss, but the slots are contiguous 4-byte words and the tags keep probes off the entries, so this costs
/// little; at 3/4 the index would take up to 1.5 bytes more a caller.
struct Table {
    pages: Vec<Box<[Entry; PAGE]>>,
    len: usize,
    slots: Vec<u32>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Table").field("histories", &self.len).field("slots", &self.slots.len()).finish()
    }
}

/// The keys are HMAC-SHA256 output, uniformly random: bytes 8..16 are the hash (byte 0 picked the shard).
fn hash_of(key: &HistoryKey) -> u64 {
    u64::from_le_bytes(key.0[8..16].try_into().expect("8 bytes"))
}

fn tag_of(hash: u64) -> u32 {
    ((hash >> 56) as u32) << POSITION_BITS
}

fn position_of(slot: u32) -> usize {
    (slot & POSITION_MASK) as usize - 1
}

/// The index size for `len` entries: the smallest power of two, at least [`MIN_SLOTS`], at most 7/8 full.
fn slots_for(len: usize) -> usize {
    let mut slots = MIN_SLOTS;
    while len * 8 > slots * 7 {
        slots *= 2;
    }
    slots
}

fn new_page() -> Box<[Entry; PAGE]> {
    // Built on the heap: a 47 KB array would pass through the stack in a debug build.
    vec![Entry::VACANT; PAGE].into_boxed_slice().try_into().expect("a page of PAGE entries")
}

impl Table {
    fn new() -> Self {
        Table { pages: Vec::new(), len: 0, slots: vec![0; MIN_SLOTS] }
    }

    fn is_full(&self) -> bool {
        self.len + 2 > MAX_ENTRIES
    }

    fn entry(&self, position: usize) -> &Entry {
        &self.pages[position / PAGE][position % PAGE]
    }

    fn entry_mut(&mut self, position: usize) -> &mut Entry {
        &mut self.pages[position / PAGE][position % PAGE]
    }

    /// The slot naming `key`'s entry, or else the empty slot that ends its probe.
    fn probe(&self, key: &HistoryKey) -> Result<usize, usize> {
        let hash = hash_of(key);
        let tag = tag_of(hash);
        let mask = self.slots.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            let value = self.slots[slot];
            if value == 0 {
                return Err(slot);
            }
            if value & !POSITION_MASK == tag && self.entry(position_of(value)).key == *key {
                return Ok(slot);
            }
            slot = (slot + 1) & mask;
        }
    }

    fn get(&self, key: &HistoryKey) -> Option<&PackedHistory> {
        let slot = self.probe(key).ok()?;
        Some(&self.entry(position_of(self.slots[slot])).record)
    }

    fn get_mut(&mut self, key: &HistoryKey) -> Option<&mut PackedHistory> {
        let slot = self.probe(key).ok()?;
        let position = position_of(self.slots[slot]);
        Some(&mut self.entry_mut(position).record)
    }

    /// Sets `key`'s record, adding an entry when the key is not held.
    fn insert(&mut self, key: HistoryKey, record: PackedHistory) {
        let mut slot = match self.probe(&key) {
            Ok(slot) => {
                let position = position_of(self.slots[slot]);
                self.entry_mut(position).record = record;
                return;
            }
            Err(slot) => slot,
        };
        assert!(self.len < MAX_ENTRIES, "a shard of the in-memory store is full");
        if slots_for(self.len + 1) > self.slots.len() {
            self.reindex(self.slots.len() * 2);
            slot = self.probe(&key).expect_err("the key is not held");
        }
        let position = self.len;
        if position == self.pages.len() * PAGE {
            self.pages.push(new_page());
        }
        *self.entry_mut(position) = Entry { key, record };
        self.len += 1;
        self.slots[slot] = tag_of(hash_of(&key)) | (position as u32 + 1);
    }

    /// Removes `key`'s entry: the last entry moves into its place, and the index closes the gap its slot leaves.
    fn remove(&mut self, key: &HistoryKey) -> Option<PackedHistory> {
        let slot = self.probe(key).ok()?;
        let position = position_of(self.slots[slot]);
        let record = self.entry(position).record;
        self.close_gap(slot);
        let last = self.len - 1;
        if position != last {
            let moved = *self.entry(last);
            let moved_slot = self.probe(&moved.key).expect("every entry is indexed");
            self.slots[moved_slot] = (self.slots[moved_slot] & !POSITION_MASK) | (position as u32 + 1);
            *self.entry_mut(position) = moved;
        }
        self.len = last;
        // One empty page stays beyond the last entry, so adding and removing at a page's edge does not allocate.
        while self.pages.len() * PAGE >= self.len + 2 * PAGE {
            self.pages.pop();
        }
        Some(record)
    }

    /// Empties slot `hole` (backward-shift deletion): each later slot of its run moves back into the hole unless its
    /// key's home lies cyclically after the hole, so every key stays reachable from its home without tombstones.
    fn close_gap(&mut self, mut hole: usize) {
        let mask = self.slots.len() - 1;
        let mut slot = hole;
        loop {
            slot = (slot + 1) & mask;
            let value = self.slots[slot];
            if value == 0 {
                break;
            }
            let home = hash_of(&self.entry(position_of(value)).key) as usize & mask;
            if slot.wrapping_sub(home) & mask >= slot.wrapping_sub(hole) & mask {
                self.slots[hole] = value;
                hole = slot;
            }
        }
        self.slots[hole] = 0;
    }

    /// Builds an index of `slots` slots over the entries.
    fn reindex(&mut self, slots: usize) {
        self.slots = vec![0; slots];
        let mask = slots - 1;
        for position in 0..self.len {
            let hash = hash_of(&self.entry(position).key);
            let mut slot = hash as usize & mask;
            while self.slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = tag_of(hash) | (position as u32 + 1);
        }
    }

    fn keys(&self) -> impl Iterator<Item = HistoryKey> + '_ {
        (0..self.len).map(|position| self.entry(position).key)
    }

    /// Removes the entries last seen before `cutoff_ms` among positions `from..`, examining at most `batch`: the
    /// number removed and where to go on (`None` at the end, when the index is also shrunk if it is 4× too big).
    /// An entry another removal moves below `from` meanwhile waits for the next sweep.
    fn sweep(&mut self, cutoff_ms: i64, from: usize, batch: usize) -> (u64, Option<usize>) {
        let mut position = from;
        let mut removed = 0;
        for _ in 0..batch {
            if position >= self.len {
                let fitting = slots_for(self.len);
                if self.slots.len() >= 4 * fitting {
                    self.reindex(2 * fitting);
                }
                return (removed, None);
            }
            let entry = self.entry(position);
            if entry.record.last_seen_ms() < cutoff_ms {
                // The last entry moves here: this position is examined again.
                let key = entry.key;
                self.remove(&key);
                removed += 1;
            } else {
                position += 1;
            }
        }
        (removed, Some(position))
    }
}

#[cfg(test)]
mod tests;
