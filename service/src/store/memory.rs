//! The in-memory history store: sharded maps behind short synchronous locks (never held across an await).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use saring_models::{CallerHistory, Disposition, HistoryEvent};

use super::{Corrected, DispositionChange, Erased, Histories, HistoryStore, Recorded, StoreError};
use crate::privacy::{HistoryKey, NamedKeys};

const SHARDS: usize = 32;

/// Histories and per-contact markers in process memory. Lost on restart: the embedded default for one replica.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Vec<Mutex<HashMap<HistoryKey, CallerHistory>>>,
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
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            markers: Mutex::new(Markers { recorded: HashMap::new(), window: marker_window, next_sweep_at: 1024 }),
        }
    }

    fn shard(&self, key: &HistoryKey) -> &Mutex<HashMap<HistoryKey, CallerHistory>> {
        &self.shards[usize::from(key.0[0]) % SHARDS]
    }

    fn read(&self, key: Option<&HistoryKey>) -> Option<CallerHistory> {
        let key = key?;
        self.shard(key).lock().get(key).cloned()
    }

    fn correct_history(&self, key: Option<&HistoryKey>, at_ms: i64, from: Disposition, to: Disposition) {
        let Some(key) = key else { return };
        if let Some(history) = self.shard(key).lock().get_mut(key) {
            history.correct(at_ms, from, to);
        }
    }

    fn apply(&self, key: Option<&HistoryKey>, event: &HistoryEvent) {
        let Some(key) = key else { return };
        let mut shard = self.shard(key).lock();
        match shard.get_mut(key) {
            Some(history) => {
                history.apply(event);
            }
            None => {
                shard.insert(*key, CallerHistory::from_event(event));
            }
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
        // whose contact is not applied yet.
        let mut markers = self.markers.lock();
        if !markers.insert(contact_id, event.disposition) {
            return Ok(Recorded::Duplicate);
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

    async fn forget_named(&self, named: &NamedKeys) -> Result<Erased, StoreError> {
        if named.is_empty() {
            return Ok(Erased::default());
        }
        let mut histories = 0;
        for shard in &self.shards {
            // The keys are copied out under the lock and matched outside it (a digest or two per key): scoring
            // never waits on the matching.
            let keys: Vec<HistoryKey> = shard.lock().keys().copied().collect();
            let named_here: Vec<HistoryKey> = keys.into_iter().filter(|key| named.names(key)).collect();
            if !named_here.is_empty() {
                let mut shard = shard.lock();
                histories += named_here.iter().filter(|key| shard.remove(key).is_some()).count();
            }
        }
        Ok(Erased { histories, ..Erased::default() })
    }
}
