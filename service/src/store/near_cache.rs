//! A bounded near-cache of the histories this replica last read or wrote, in front of a shared store (Redis).
//!
//! It is never read on the normal path: a ScoreContact whose history read misses its budget (or fails) answers
//! from it, flagged `history_stale`, instead of with no history at all. Every successful read and write refreshes
//! it; a write's result replaces the cached entry, so a stale answer is never older than the last write this
//! replica made.
//!
//! Concurrency: 64 shards, each a short synchronous lock (never held across an await), chosen by the key's first
//! byte (keys are HMACs, so uniform). Bound: each shard keeps two generations of at most `capacity / 128` entries;
//! when the current one is full it becomes the previous one and the old previous one is dropped (an approximate
//! LRU: an entry read or written again lands in the current generation). At most `capacity` entries in all.
//!
//! Order: every put carries a ticket — taken before a read is sent, and after a write is answered — and a cached
//! entry is replaced only by one with a later ticket or one holding more contacts (`total_contacts` only grows
//! in the store). A read sent before a write was answered can therefore never overwrite that write's result.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use saring_models::CallerHistory;

use super::Histories;
use crate::privacy::HistoryKey;

const SHARDS: usize = 64;

/// Which history a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A number's history.
    Number,
    /// A device's history.
    Device,
}

/// Hashes a cache key by the first 8 bytes of its HMAC (uniform already) instead of SipHash over 33 bytes.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let taken = bytes.len().min(8);
        word[..taken].copy_from_slice(&bytes[..taken]);
        self.0 = self.0.rotate_left(8) ^ u64::from_le_bytes(word);
    }
}

type Map = HashMap<(Kind, HistoryKey), Entry, BuildHasherDefault<PrefixHasher>>;

/// One cached history (`None`: the store holds none for the key).
#[derive(Debug, Clone)]
struct Entry {
    ticket: u64,
    history: Option<CallerHistory>,
}

impl Entry {
    /// Whether `self` may replace `held`.
    fn supersedes(&self, held: &Entry) -> bool {
        match (&self.history, &held.history) {
            (Some(new), Some(old)) if new.total_contacts != old.total_contacts => {
                new.total_contacts > old.total_contacts
            }
            _ => self.ticket > held.ticket,
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    current: Map,
    previous: Map,
}

impl Shard {
    fn get(&self, key: &(Kind, HistoryKey)) -> Option<&Entry> {
        self.current.get(key).or_else(|| self.previous.get(key))
    }
}

/// The near-cache. `capacity` 0 disables it (nothing is kept, every lookup misses).
#[derive(Debug)]
pub struct NearCache {
    shards: Box<[Mutex<Shard>]>,
    /// Entries per generation per shard.
    generation: usize,
    clock: AtomicU64,
}

impl NearCache {
    /// A cache of at most `capacity` histories.
    pub fn new(capacity: usize) -> Self {
        NearCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            generation: capacity / (2 * SHARDS),
            clock: AtomicU64::new(1),
        }
    }

    /// Whether it keeps anything.
    pub fn enabled(&self) -> bool {
        self.generation > 0
    }

    /// The most entries it holds.
    pub fn capacity(&self) -> usize {
        self.generation * 2 * SHARDS
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().current.len()).sum::<usize>()
            + self.shards.iter().map(|shard| shard.lock().previous.len()).sum::<usize>()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A ticket: take it before sending a read, or after a write was answered, and pass it to [`NearCache::put`].
    pub fn ticket(&self) -> u64 {
        if self.enabled() {
            self.clock.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        }
    }

    fn shard(&self, key: &HistoryKey) -> &Mutex<Shard> {
        &self.shards[usize::from(key.0[0]) % SHARDS]
    }

    /// Remembers what the store holds for `key` (`None`: no history), unless a later one is cached already.
    pub fn put(&self, kind: Kind, key: &HistoryKey, history: Option<&CallerHistory>, ticket: u64) {
        if !self.enabled() {
            return;
        }
        let entry = Entry { ticket, history: history.cloned() };
        let map_key = (kind, *key);
        let mut shard = self.shard(key).lock();
        if let Some(held) = shard.get(&map_key) {
            if !entry.supersedes(held) {
                return;
            }
        }
        if !shard.current.contains_key(&map_key) && shard.current.len() >= self.generation {
            // Generation full: it becomes the previous one, and the oldest generation goes.
            shard.previous = std::mem::take(&mut shard.current);
            shard.current.reserve(self.generation);
        }
        shard.current.insert(map_key, entry);
    }

    /// Forgets what is cached for `key` (its history was erased).
    pub fn forget(&self, kind: Kind, key: &HistoryKey) {
        let map_key = (kind, *key);
        let mut shard = self.shard(key).lock();
        shard.current.remove(&map_key);
        shard.previous.remove(&map_key);
    }

    /// Forgets every entry whose key erasure notices name; how many went.
    pub fn forget_named(&self, named: &crate::privacy::NamedKeys) -> usize {
        let mut forgotten = 0;
        for shard in &self.shards {
            let mut shard = shard.lock();
            let before = shard.current.len() + shard.previous.len();
            shard.current.retain(|(_, key), _| !named.names(key));
            shard.previous.retain(|(_, key), _| !named.names(key));
            forgotten += before - shard.current.len() - shard.previous.len();
        }
        forgotten
    }

    /// The histories last seen for a number and a device; `None` unless at least one of those given is cached
    /// (one not cached is then absent from the answer).
    pub fn get(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Option<Histories> {
        if !self.enabled() {
            return None;
        }
        let look = |kind: Kind, key: Option<&HistoryKey>| {
            let key = key?;
            self.shard(key).lock().get(&(kind, *key)).map(|entry| entry.history.clone())
        };
        let (caller, device) = (look(Kind::Number, caller), look(Kind::Device, device));
        if caller.is_none() && device.is_none() {
            return None;
        }
        Some(Histories { caller: caller.flatten(), device: device.flatten() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u32) -> HistoryKey {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&index.to_le_bytes());
        key[4] = 7;
        HistoryKey(key)
    }

    fn history(total: u32) -> CallerHistory {
        let mut history = CallerHistory::from_event(&saring_models::HistoryEvent {
            contact_fingerprint: u64::from(total),
            at_ms: 1_772_323_200_000,
            answered: true,
            talk_s: 3.0,
            night: false,
            disposition: saring_models::Disposition::Prank,
        });
        history.total_contacts = total;
        history
    }

    #[test]
    fn holds_at_most_its_capacity_and_drops_the_oldest_first() {
        let cache = NearCache::new(1280);
        assert_eq!(cache.capacity(), 1280);
        for index in 0..10_000 {
            cache.put(Kind::Number, &key(index), Some(&history(1)), cache.ticket());
            assert!(cache.len() <= 1280);
        }
        assert!(cache.len() > 640, "{}", cache.len());
        assert!(cache.get(Some(&key(9_999)), None).is_some(), "the newest is kept");
        assert!(cache.get(Some(&key(0)), None).is_none(), "the oldest is gone");
    }

    #[test]
    fn a_read_sent_before_a_write_was_answered_does_not_replace_its_result() {
        let cache = NearCache::new(1024);
        let read_ticket = cache.ticket();
        cache.put(Kind::Number, &key(1), Some(&history(5)), cache.ticket());
        // The read saw the history before the write (same count) or no history at all: both older.
        cache.put(Kind::Number, &key(1), Some(&history(4)), read_ticket);
        cache.put(Kind::Number, &key(1), None, read_ticket);
        assert_eq!(cache.get(Some(&key(1)), None).unwrap().caller.unwrap().total_contacts, 5);
        // A later read replaces it, also with "no history" (expired).
        cache.put(Kind::Number, &key(1), None, cache.ticket());
        assert_eq!(cache.get(Some(&key(1)), None), Some(Histories { caller: None, device: None }));
        // A history holding more contacts is newer whatever its ticket.
        cache.put(Kind::Number, &key(1), Some(&history(6)), cache.ticket());
        cache.put(Kind::Number, &key(1), Some(&history(7)), read_ticket);
        assert_eq!(cache.get(Some(&key(1)), None).unwrap().caller.unwrap().total_contacts, 7);
    }

    #[test]
    fn numbers_and_devices_are_apart_and_an_uncached_one_is_absent() {
        let cache = NearCache::new(1024);
        cache.put(Kind::Device, &key(2), Some(&history(3)), cache.ticket());
        assert_eq!(cache.get(Some(&key(2)), None), None, "a number with the device's key is not cached");
        let both = cache.get(Some(&key(9)), Some(&key(2))).unwrap();
        assert_eq!((both.caller.is_none(), both.device.unwrap().total_contacts), (true, 3));
        assert_eq!(cache.get(None, None), None);
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let cache = NearCache::new(0);
        cache.put(Kind::Number, &key(1), Some(&history(1)), cache.ticket());
        assert!(!cache.enabled());
        assert!(cache.is_empty());
        assert_eq!(cache.get(Some(&key(1)), None), None);
    }
}
