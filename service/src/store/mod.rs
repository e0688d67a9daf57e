//! Where caller and device histories live. The in-memory store is the embedded default; production stores
//! (Redis) implement the same trait.

pub mod journal;
mod memory;
pub mod near_cache;
pub mod redis;

use std::future::Future;

pub use memory::MemoryStore;
pub use redis::{RedisSettings, RedisStore};
use saring_models::{CallerHistory, Disposition, HistoryEvent};

use crate::privacy::{HistoryKey, NamedKeys};

/// A store failure. Reads fail open (the score is degraded); writes fail closed (nothing is acknowledged).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// The histories of one contact's number and device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histories {
    /// The number's history, if the number is known.
    pub caller: Option<CallerHistory>,
    /// The device's history, if the device is known.
    pub device: Option<CallerHistory>,
}

/// Whether a recorded contact changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Applied for the first time.
    Applied,
    /// This contact id was recorded before; nothing changed.
    Duplicate,
}

/// A correction of one recorded contact's disposition, as the history stores take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispositionChange {
    /// The contact id's fingerprint ([`saring_models::history::contact_fingerprint`]): the marker's name.
    pub contact_fingerprint: u64,
    /// When the contact arrived, Unix ms: its weight in the histories decays from then.
    pub at_ms: i64,
    /// The disposition recorded (used only when a marker does not say which it is).
    pub from: Disposition,
    /// The disposition it should have been.
    pub to: Disposition,
}

/// What correcting a recorded contact's disposition did to its histories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrected {
    /// The contact's weight moved from the old disposition to the new one (in every history that holds the
    /// contact), or the correction was journaled to be replayed so.
    Applied,
    /// The histories hold the new disposition already (a repeated correction): nothing changed.
    Unchanged,
    /// No history holds this contact: its marker is gone (older than `history.marker_window_h`) or the contact
    /// had neither a number nor a device. Nothing changed.
    NotHeld,
}

impl Corrected {
    /// The combined answer of two histories (a number's and a device's).
    pub fn and(self, other: Corrected) -> Corrected {
        match (self, other) {
            (Corrected::Applied, _) | (_, Corrected::Applied) => Corrected::Applied,
            (Corrected::Unchanged, _) | (_, Corrected::Unchanged) => Corrected::Unchanged,
            (Corrected::NotHeld, Corrected::NotHeld) => Corrected::NotHeld,
        }
    }
}

/// What a journal in front of a store holds and has held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalStats {
    /// Outcomes waiting to be replayed into the store.
    pub depth: usize,
    /// Outcomes appended since start-up.
    pub appended: u64,
}

/// A history store. Implementations read both histories in one operation and apply a contact to both
/// exactly once per contact id.
pub trait HistoryStore: Send + Sync + 'static {
    /// Reads the histories of a number and a device (either may be absent).
    fn load(
        &self,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
    ) -> impl Future<Output = Result<Histories, StoreError>> + Send;

    /// Applies one finished contact to the number's and the device's histories, once per `contact_id`.
    fn record(
        &self,
        contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        event: &HistoryEvent,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;

    /// Corrects the disposition of a contact already applied, in the number's and the
    /// device's histories: exactly once per contact and disposition. Each history's per-contact marker records the
    /// disposition the history holds, so a repeated correction is [`Corrected::Unchanged`] and the weight taken
    /// away is always that of the disposition really counted; `from` is used only for a marker written before
    /// markers held a disposition.
    fn correct(
        &self,
        contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        change: &DispositionChange,
    ) -> impl Future<Output = Result<Corrected, StoreError>> + Send;

    /// The histories of a number and a device as this replica last read or wrote them, for a read that missed its
    /// budget or failed (answered flagged `history_stale`). `None` when neither is known here — always, for a
    /// store that keeps no near-cache (the in-memory store never misses).
    fn cached(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Option<Histories> {
        let _ = (caller, device);
        None
    }

    /// The journal in front of this store, if there is one (for metrics).
    fn journal(&self) -> Option<JournalStats> {
        None
    }

    /// Whether the contact with this fingerprint was counted in the history of `caller` or of `device` (its
    /// per-contact marker is held there): asked of an earlier secret's keys while the hashing secret rotates, so an
    /// outcome counted under the old key is not counted again under the new one. A store whose markers name
    /// contact ids rather than histories (memory) answers that in [`HistoryStore::record`] and says false here.
    fn counted(
        &self,
        contact_fingerprint: u64,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (contact_fingerprint, caller, device);
        async { Ok(false) }
    }

    /// Erases the histories of a number and a device (either may be absent) with every per-contact marker under
    /// them, from the store and from anything this replica caches of them; a journal in front of the store drops
    /// the outcomes of either waiting to be replayed. Erasing what is not held succeeds (a retry after a partial
    /// failure completes it). `Err` for a store that cannot erase, or when it failed: then part may be erased.
    fn erase(
        &self,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
    ) -> impl Future<Output = Result<Erased, StoreError>> + Send {
        let _ = (caller, device);
        async { Err(StoreError("this history store cannot erase histories".into())) }
    }

    /// Removes the histories whose latest contact is older than `cutoff_ms` (Unix ms): the retention of
    /// `history.retention_days`, kept per caller. Returns how many were removed. The server calls it periodically
    /// (`crate::retention`); a store that expires histories by itself keeps the default (nothing to do).
    fn sweep_expired(&self, cutoff_ms: i64) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let _ = cutoff_ms;
        async { Ok(0) }
    }

    /// Claims the next sweep for `every`: `true` when this replica is to sweep now. A store shared by every
    /// replica (Redis) grants one claim per interval to all of them together, so neither several replicas nor a
    /// rolling restart sweep the same buckets again within the interval; a store of this replica's own (memory)
    /// always grants it.
    fn claim_sweep(&self, every: std::time::Duration) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = every;
        async { Ok(true) }
    }

    /// Erases, from what this replica alone holds — its journal, its caches, an in-memory store's histories — the
    /// histories whose keys erasure notices name (`crate::notices`: an erasure served by another replica). A store
    /// shared by every replica (Redis) was erased by the replica that served the erasure and is not scanned. Erasing
    /// what is not held succeeds.
    fn forget_named(&self, named: &NamedKeys) -> impl Future<Output = Result<Erased, StoreError>> + Send {
        let _ = named;
        async { Ok(Erased::default()) }
    }
}

/// What erasing histories removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Histories removed (0, 1 or 2).
    pub histories: usize,
    /// Outcomes removed from the journal before they were replayed.
    pub journal_entries: usize,
    /// Capture records removed (the screener's capture files, not a store's).
    pub capture_records: u64,
}

/// A store shared by several owners (two screeners over one in-memory store in tests, a store kept beside the
/// screener) is the store itself.
impl<S: HistoryStore> HistoryStore for std::sync::Arc<S> {
    fn load(
        &self,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
    ) -> impl Future<Output = Result<Histories, StoreError>> + Send {
        self.as_ref().load(caller, device)
    }

    fn record(
        &self,
        contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        event: &HistoryEvent,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send {
        self.as_ref().record(contact_id, caller, device, event)
    }

    fn correct(
        &self,
        contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        change: &DispositionChange,
    ) -> impl Future<Output = Result<Corrected, StoreError>> + Send {
        self.as_ref().correct(contact_id, caller, device, change)
    }

    fn cached(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Option<Histories> {
        self.as_ref().cached(caller, device)
    }

    fn journal(&self) -> Option<JournalStats> {
        self.as_ref().journal()
    }

    fn counted(
        &self,
        contact_fingerprint: u64,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.as_ref().counted(contact_fingerprint, caller, device)
    }

    fn erase(
        &self,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
    ) -> impl Future<Output = Result<Erased, StoreError>> + Send {
        self.as_ref().erase(caller, device)
    }

    fn sweep_expired(&self, cutoff_ms: i64) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.as_ref().sweep_expired(cutoff_ms)
    }

    fn claim_sweep(&self, every: std::time::Duration) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.as_ref().claim_sweep(every)
    }

    fn forget_named(&self, named: &NamedKeys) -> impl Future<Output = Result<Erased, StoreError>> + Send {
        self.as_ref().forget_named(named)
    }
}
