//! Nothing acknowledged is lost: a store wrapper that, when the inner store (Redis) cannot take an outcome within
//! the write budget, appends it to a local journal — an append-only file, fsynced before the outcome is
//! acknowledged — and replays the journal into the inner store when it is back, also after a restart.
//!
//! Replay is exactly once because the inner store is idempotent per contact and history (Redis markers): an entry
//! whose first attempt did reach Redis before timing out is recognised as a duplicate. History arithmetic does not
//! depend on the order events arrive in, so replaying late loses nothing either.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use saring_models::{Disposition, HistoryEvent};
use serde::{Deserialize, Serialize};

use super::{Histories, HistoryStore, JournalStats, Recorded, StoreError};
use crate::privacy::HistoryKey;

/// One journaled outcome: keyed hashes only, never a raw number or device id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    contact_id: String,
    caller: Option<String>,
    device: Option<String>,
    contact_fingerprint: u64,
    at_ms: i64,
    answered: bool,
    talk_s: f64,
    night: bool,
    disposition: Disposition,
}

impl Entry {
    fn new(contact_id: &str, caller: Option<&HistoryKey>, device: Option<&HistoryKey>, event: &HistoryEvent) -> Self {
        Entry {
            contact_id: contact_id.to_owned(),
            caller: caller.map(HistoryKey::to_hex),
            device: device.map(HistoryKey::to_hex),
            contact_fingerprint: event.contact_fingerprint,
            at_ms: event.at_ms,
            answered: event.answered,
            talk_s: event.talk_s,
            night: event.night,
            disposition: event.disposition,
        }
    }

    fn event(&self) -> HistoryEvent {
        HistoryEvent {
            contact_fingerprint: self.contact_fingerprint,
            at_ms: self.at_ms,
            answered: self.answered,
            talk_s: self.talk_s,
            night: self.night,
            disposition: self.disposition,
        }
    }
}

fn parse_key(hex: &Option<String>) -> Result<Option<HistoryKey>, StoreError> {
    let Some(hex) = hex else { return Ok(None) };
    let mut key = [0u8; 32];
    if hex.len() != 64 {
        return Err(StoreError(format!("journal: a key has {} hex digits, expected 64", hex.len())));
    }
    for (index, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16)
            .map_err(|error| StoreError(format!("journal: bad key: {error}")))?;
    }
    Ok(Some(HistoryKey(key)))
}

fn io_error(context: &str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError(format!("journal {}: {context}: {error}", path.display()))
}

/// A history store whose writes fall back to a durable local journal.
pub struct JournaledStore<S> {
    inner: S,
    path: PathBuf,
    file: tokio::sync::Mutex<File>,
    depth: AtomicUsize,
    appended: AtomicU64,
    write_budget: Duration,
}

impl<S> std::fmt::Debug for JournaledStore<S> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("JournaledStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl<S: HistoryStore> JournaledStore<S> {
    /// Opens (or creates) the journal at `path`; entries left by a previous run are replayed by
    /// [`JournaledStore::replay`].
    pub fn open(inner: S, path: &Path, write_budget: Duration) -> Result<Self, StoreError> {
        if let Some(directory) = path.parent().filter(|directory| !directory.as_os_str().is_empty()) {
            std::fs::create_dir_all(directory).map_err(|error| io_error("create directory", path, error))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(|error| io_error("open", path, error))?;
        let depth = read_entries(path)?.len();
        if depth > 0 {
            tracing::warn!(depth, path = %path.display(), "journal holds outcomes from an earlier run; replaying when the store answers");
        }
        Ok(JournaledStore {
            inner,
            path: path.to_owned(),
            file: tokio::sync::Mutex::new(file),
            depth: AtomicUsize::new(depth),
            appended: AtomicU64::new(0),
            write_budget,
        })
    }

    /// The inner store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Outcomes waiting in the journal.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Acquire)
    }

    async fn append(&self, entry: &Entry) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(entry).map_err(|error| StoreError(format!("journal: {error}")))?;
        line.push(b'\n');
        let mut file = self.file.lock().await;
        // A write and fsync take well under a millisecond on a local disk; they happen only while the inner
        // store is failing, and the mutex keeps entries whole and ordered.
        file.write_all(&line).map_err(|error| io_error("append", &self.path, error))?;
        file.sync_data().map_err(|error| io_error("fsync", &self.path, error))?;
        self.depth.fetch_add(1, Ordering::AcqRel);
        self.appended.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Replays the journal into the inner store, in order. Stops at the first entry the store cannot take and
    /// keeps it and everything after it. Returns how many entries were replayed.
    pub async fn replay(&self) -> Result<usize, StoreError> {
        let mut file = self.file.lock().await;
        let entries = read_entries(&self.path)?;
        let mut replayed = 0;
        for entry in &entries {
            let caller = parse_key(&entry.caller)?;
            let device = parse_key(&entry.device)?;
            let event = entry.event();
            let attempt = self.inner.record(&entry.contact_id, caller.as_ref(), device.as_ref(), &event);
            match tokio::time::timeout(self.write_budget * 4, attempt).await {
                Ok(Ok(_)) => replayed += 1,
                Ok(Err(_)) | Err(_) => break,
            }
        }
        if replayed > 0 {
            let remaining = &entries[replayed..];
            let temporary = self.path.with_extension("journal.tmp");
            {
                let mut rewritten = File::create(&temporary).map_err(|error| io_error("rewrite", &temporary, error))?;
                for entry in remaining {
                    let mut line =
                        serde_json::to_vec(entry).map_err(|error| StoreError(format!("journal: {error}")))?;
                    line.push(b'\n');
                    rewritten.write_all(&line).map_err(|error| io_error("rewrite", &temporary, error))?;
                }
                rewritten.sync_all().map_err(|error| io_error("fsync", &temporary, error))?;
            }
            std::fs::rename(&temporary, &self.path).map_err(|error| io_error("rename", &self.path, error))?;
            *file = OpenOptions::new()
                .append(true)
                .read(true)
                .open(&self.path)
                .map_err(|error| io_error("reopen", &self.path, error))?;
            self.depth.store(remaining.len(), Ordering::Release);
            tracing::info!(replayed, remaining = remaining.len(), "journal replayed into the history store");
        }
        Ok(replayed)
    }

    /// Replays the journal every `interval` while it holds entries; runs until the task is dropped.
    pub async fn replay_forever(&self, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            if self.depth() > 0 {
                if let Err(error) = self.replay().await {
                    tracing::error!(%error, "journal replay failed");
                }
            }
        }
    }
}

fn read_entries(path: &Path) -> Result<Vec<Entry>, StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error("read", path, error)),
    };
    let mut entries = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|error| io_error("read", path, error))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(entry) => entries.push(entry),
            // Only the last line can be torn (a crash mid-append, before its fsync and acknowledgement).
            Err(error) => tracing::warn!(line = index + 1, %error, "journal: skipping a torn entry"),
        }
    }
    Ok(entries)
}

impl<S: HistoryStore> HistoryStore for JournaledStore<S> {
    async fn load(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Result<Histories, StoreError> {
        self.inner.load(caller, device).await
    }

    async fn record(
        &self,
        contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        event: &HistoryEvent,
    ) -> Result<Recorded, StoreError> {
        if self.depth() == 0 {
            match tokio::time::timeout(self.write_budget, self.inner.record(contact_id, caller, device, event)).await {
                Ok(Ok(recorded)) => return Ok(recorded),
                Ok(Err(error)) => tracing::warn!(%error, "history store refused an outcome; journaling it"),
                Err(_) => tracing::warn!("history store did not take an outcome in time; journaling it"),
            }
        }
        // While the journal holds entries, new outcomes queue behind them.
        self.append(&Entry::new(contact_id, caller, device, event)).await?;
        Ok(Recorded::Applied)
    }

    fn journal(&self) -> Option<JournalStats> {
        Some(JournalStats { depth: self.depth(), appended: self.appended.load(Ordering::Relaxed) })
    }
}
