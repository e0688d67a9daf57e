//! Where caller and device histories live. The in-memory store is the embedded default; production stores
//! (Redis) implement the same trait.

pub mod journal;
mod memory;
pub mod redis;

use std::future::Future;

pub use memory::MemoryStore;
pub use redis::{RedisSettings, RedisStore};
use saring_models::{CallerHistory, HistoryEvent};

use crate::privacy::HistoryKey;

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

    /// The journal in front of this store, if there is one (for metrics).
    fn journal(&self) -> Option<JournalStats> {
        None
    }
}
