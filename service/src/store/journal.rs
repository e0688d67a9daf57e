//! Nothing acknowledged is lost: a store wrapper that, when the inner store (Redis) cannot take an outcome within
//! the write budget, appends it to a local journal — an append-only file, fsynced before the outcome is
//! acknowledged — and replays the journal into the inner store when it is back, also after a restart.
//!
//! Replay is exactly once because the inner store is idempotent per contact and history (Redis markers): an entry
//! whose first attempt did reach Redis before timing out is recognised as a duplicate. History arithmetic does not
//! depend on the order events arrive in, so replaying late loses nothing either — and new outcomes need not queue
//! behind the journal: once the inner store has taken a write again, they go straight to it while the journal
//! drains.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use saring_models::{Disposition, HistoryEvent};
use serde::{Deserialize, Serialize};

use super::{Corrected, DispositionChange, Erased, Histories, HistoryStore, JournalStats, Recorded, StoreError};
use crate::privacy::HistoryKey;

/// One journaled outcome, or correction of one: keyed hashes only, never a raw number or device id.
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
    /// Set on a correction: the disposition recorded before, corrected to `disposition` (the other fields of the
    /// contact are not used). Absent in entries written before corrections existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    corrected_from: Option<Disposition>,
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
            corrected_from: None,
        }
    }

    fn correction(
        contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        change: &DispositionChange,
    ) -> Self {
        Entry {
            contact_id: contact_id.to_owned(),
            caller: caller.map(HistoryKey::to_hex),
            device: device.map(HistoryKey::to_hex),
            contact_fingerprint: change.contact_fingerprint,
            at_ms: change.at_ms,
            answered: false,
            talk_s: 0.0,
            night: false,
            disposition: change.to,
            corrected_from: Some(change.from),
        }
    }

    /// Replays this entry into `store`.
    async fn replay_into<S: HistoryStore>(
        &self,
        store: &S,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
    ) -> Result<(), StoreError> {
        match self.corrected_from {
            None => store.record(&self.contact_id, caller, device, &self.event()).await.map(drop),
            Some(from) => {
                let change = DispositionChange {
                    contact_fingerprint: self.contact_fingerprint,
                    at_ms: self.at_ms,
                    from,
                    to: self.disposition,
                };
                let corrected = store.correct(&self.contact_id, caller, device, &change).await?;
                if corrected == Corrected::NotHeld {
                    tracing::warn!(contact_id = %self.contact_id, "journal: a correction found no history holding its contact; dropped");
                }
                Ok(())
            }
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
    /// Whether the inner store took the last write tried on it (directly or by a replay).
    answering: AtomicBool,
    write_budget: Duration,
    /// Entries older than this are dropped at replay ([`JournaledStore::with_retention`]).
    retention: Option<Duration>,
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
        // A journal created just now must still be there after a power cut.
        sync_directory(path)?;
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
            answering: AtomicBool::new(true),
            write_budget,
            retention: None,
        })
    }

    /// Drops, instead of replaying, entries of contacts older than `retention` (`history.retention_days`: their
    /// histories would have expired in the store by then, so replaying them would only bring expired contacts
    /// back).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
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
        // The mutex keeps entries whole and ordered and keeps a replay from rewriting the file under an append;
        // the write and fsync themselves run on a blocking thread (a slow disk must not stall the scoring
        // threads), on a duplicate of the handle opened for appending.
        let file = self.file.lock().await;
        let mut handle = file.try_clone().map_err(|error| io_error("append", &self.path, error))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            handle.write_all(&line).map_err(|error| io_error("append", &path, error))?;
            handle.sync_data().map_err(|error| io_error("fsync", &path, error))
        })
        .await
        .map_err(|error| StoreError(format!("journal: append task failed: {error}")))??;
        drop(file);
        self.depth.fetch_add(1, Ordering::AcqRel);
        self.appended.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Replays the journal into the inner store, in order. Stops at the first entry the store cannot take and
    /// keeps it and everything after it. Returns how many entries were replayed.
    pub async fn replay(&self) -> Result<usize, StoreError> {
        let mut file = self.file.lock().await;
        let mut entries = read_entries(&self.path)?;
        let read = entries.len();
        if let Some(retention) = self.retention {
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64);
            let oldest_ms = now_ms - retention.as_millis() as i64;
            entries.retain(|entry| entry.at_ms >= oldest_ms);
        }
        let expired = read - entries.len();
        if expired > 0 {
            tracing::warn!(expired, "journal: entries older than the history's retention dropped, not replayed");
        }
        let mut replayed = 0;
        for entry in &entries {
            let caller = parse_key(&entry.caller)?;
            let device = parse_key(&entry.device)?;
            let attempt = entry.replay_into(&self.inner, caller.as_ref(), device.as_ref());
            match tokio::time::timeout(self.write_budget * 4, attempt).await {
                Ok(Ok(_)) => {
                    replayed += 1;
                    self.answering.store(true, Ordering::Release);
                }
                Ok(Err(_)) | Err(_) => {
                    self.answering.store(false, Ordering::Release);
                    break;
                }
            }
        }
        if replayed > 0 || expired > 0 {
            let remaining = &entries[replayed..];
            let remaining_entries = remaining.to_vec();
            let path = self.path.clone();
            *file = tokio::task::spawn_blocking(move || rewrite(&path, &remaining_entries))
                .await
                .map_err(|error| StoreError(format!("journal: rewrite task failed: {error}")))??;
            self.depth.store(remaining.len(), Ordering::Release);
            tracing::info!(replayed, remaining = remaining.len(), "journal replayed into the history store");
        }
        Ok(replayed)
    }

    /// Removes every trace of the histories keyed `caller` and `device` from the journal: an entry naming one of
    /// them loses that key (and goes when it names neither any more). Returns how many entries changed.
    async fn erase_entries(
        &self,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
    ) -> Result<usize, StoreError> {
        let (caller, device) = (caller.map(HistoryKey::to_hex), device.map(HistoryKey::to_hex));
        self.erase_entries_where(
            |entry_caller| caller.as_deref() == Some(entry_caller),
            |entry_device| device.as_deref() == Some(entry_device),
        )
        .await
    }

    /// Removes from the journal the caller references `caller_named` picks and the device references
    /// `device_named` picks (hex keys); an entry left naming neither goes. How many entries changed.
    async fn erase_entries_where(
        &self,
        caller_named: impl Fn(&str) -> bool,
        device_named: impl Fn(&str) -> bool,
    ) -> Result<usize, StoreError> {
        let mut file = self.file.lock().await;
        let entries = read_entries(&self.path)?;
        let mut changed = 0;
        let mut remaining = Vec::with_capacity(entries.len());
        for mut entry in entries {
            let before = (entry.caller.is_some(), entry.device.is_some());
            if entry.caller.as_deref().is_some_and(&caller_named) {
                entry.caller = None;
            }
            if entry.device.as_deref().is_some_and(&device_named) {
                entry.device = None;
            }
            if before != (entry.caller.is_some(), entry.device.is_some()) {
                changed += 1;
            }
            if entry.caller.is_some() || entry.device.is_some() {
                remaining.push(entry);
            }
        }
        if changed > 0 {
            let path = self.path.clone();
            let depth = remaining.len();
            *file = tokio::task::spawn_blocking(move || rewrite(&path, &remaining))
                .await
                .map_err(|error| StoreError(format!("journal: rewrite task failed: {error}")))??;
            self.depth.store(depth, Ordering::Release);
        }
        Ok(changed)
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

/// Fsyncs the directory holding `path`, so a file created or renamed there survives a power cut.
fn sync_directory(path: &Path) -> Result<(), StoreError> {
    let directory = path.parent().filter(|directory| !directory.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| io_error("fsync directory", path, error))
}

/// Replaces the journal at `path` with `remaining` (temporary file, fsync, rename, directory fsync) and opens it
/// for appending.
fn rewrite(path: &Path, remaining: &[Entry]) -> Result<File, StoreError> {
    let temporary = path.with_extension("journal.tmp");
    {
        let mut rewritten = File::create(&temporary).map_err(|error| io_error("rewrite", &temporary, error))?;
        for entry in remaining {
            let mut line = serde_json::to_vec(entry).map_err(|error| StoreError(format!("journal: {error}")))?;
            line.push(b'\n');
            rewritten.write_all(&line).map_err(|error| io_error("rewrite", &temporary, error))?;
        }
        rewritten.sync_all().map_err(|error| io_error("fsync", &temporary, error))?;
    }
    std::fs::rename(&temporary, path).map_err(|error| io_error("rename", path, error))?;
    sync_directory(path)?;
    OpenOptions::new().append(true).read(true).open(path).map_err(|error| io_error("reopen", path, error))
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
        // With entries waiting, the inner store is tried only once it has taken a write again (a replay's, or
        // another outcome's): during an outage outcomes go to the journal without waiting out the budget each, and
        // after it they go straight to the store while the journal drains. Order does not matter to histories, and
        // markers make an outcome both journaled and retried count once.
        if self.depth() == 0 || self.answering.load(Ordering::Acquire) {
            match tokio::time::timeout(self.write_budget, self.inner.record(contact_id, caller, device, event)).await {
                Ok(Ok(recorded)) => {
                    self.answering.store(true, Ordering::Release);
                    return Ok(recorded);
                }
                Ok(Err(error)) => tracing::warn!(%error, "history store refused an outcome; journaling it"),
                Err(_) => tracing::warn!("history store did not take an outcome in time; journaling it"),
            }
            self.answering.store(false, Ordering::Release);
        }
        self.append(&Entry::new(contact_id, caller, device, event)).await?;
        Ok(Recorded::Applied)
    }

    async fn correct(
        &self,
        contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        change: &DispositionChange,
    ) -> Result<Corrected, StoreError> {
        // As an outcome: straight to the store while it answers, else journaled. A correction is journaled also
        // when the store does not hold the contact yet while the journal holds entries: its outcome may be one of
        // them, and the journal replays in order, the outcome first.
        if self.depth() == 0 || self.answering.load(Ordering::Acquire) {
            match tokio::time::timeout(self.write_budget, self.inner.correct(contact_id, caller, device, change)).await
            {
                Ok(Ok(Corrected::NotHeld)) if self.depth() > 0 => {
                    self.answering.store(true, Ordering::Release);
                    self.append(&Entry::correction(contact_id, caller, device, change)).await?;
                    return Ok(Corrected::Applied);
                }
                Ok(Ok(corrected)) => {
                    self.answering.store(true, Ordering::Release);
                    return Ok(corrected);
                }
                Ok(Err(error)) => tracing::warn!(%error, "history store refused a correction; journaling it"),
                Err(_) => tracing::warn!("history store did not take a correction in time; journaling it"),
            }
            self.answering.store(false, Ordering::Release);
        }
        self.append(&Entry::correction(contact_id, caller, device, change)).await?;
        Ok(Corrected::Applied)
    }

    fn cached(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Option<Histories> {
        self.inner.cached(caller, device)
    }

    fn journal(&self) -> Option<JournalStats> {
        Some(JournalStats { depth: self.depth(), appended: self.appended.load(Ordering::Relaxed) })
    }

    async fn counted(
        &self,
        contact_fingerprint: u64,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
    ) -> Result<bool, StoreError> {
        self.inner.counted(contact_fingerprint, caller, device).await
    }

    async fn erase(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Result<Erased, StoreError> {
        // The journal first: a replay after the store's erasure would otherwise bring the histories back.
        let journal_entries = self.erase_entries(caller, device).await?;
        let erased = self.inner.erase(caller, device).await?;
        Ok(Erased { journal_entries, ..erased })
    }

    async fn sweep_expired(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        self.inner.sweep_expired(cutoff_ms).await
    }

    async fn claim_sweep(&self, every: std::time::Duration) -> Result<bool, StoreError> {
        self.inner.claim_sweep(every).await
    }

    async fn forget_named(&self, named: &crate::privacy::NamedKeys) -> Result<Erased, StoreError> {
        if named.is_empty() {
            return self.inner.forget_named(named).await;
        }
        let journal_entries =
            self.erase_entries_where(|caller| named.names_hex(caller), |device| named.names_hex(device)).await?;
        let erased = self.inner.forget_named(named).await?;
        Ok(Erased { journal_entries, ..erased })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use saring_models::history::contact_fingerprint;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::privacy::KeyHasher;
    use crate::store::MemoryStore;

    /// A store that can be down, and that holds the write of one contact until the test lets it through.
    struct Gated {
        inner: MemoryStore,
        down: AtomicBool,
        held: &'static str,
        gate: Semaphore,
    }

    impl HistoryStore for Gated {
        async fn load(
            &self,
            caller: Option<&HistoryKey>,
            device: Option<&HistoryKey>,
        ) -> Result<Histories, StoreError> {
            self.inner.load(caller, device).await
        }

        async fn record(
            &self,
            contact_id: &str,
            caller: Option<&HistoryKey>,
            device: Option<&HistoryKey>,
            event: &HistoryEvent,
        ) -> Result<Recorded, StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError("connection refused".into()));
            }
            if contact_id == self.held {
                self.gate.acquire().await.expect("the gate stays open").forget();
            }
            self.inner.record(contact_id, caller, device, event).await
        }

        async fn correct(
            &self,
            contact_id: &str,
            caller: Option<&HistoryKey>,
            device: Option<&HistoryKey>,
            change: &DispositionChange,
        ) -> Result<Corrected, StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError("connection refused".into()));
            }
            self.inner.correct(contact_id, caller, device, change).await
        }
    }

    fn event(contact_id: &str, at_ms: i64) -> HistoryEvent {
        HistoryEvent {
            contact_fingerprint: contact_fingerprint(contact_id),
            at_ms,
            answered: true,
            talk_s: 3.0,
            night: false,
            disposition: Disposition::Prank,
        }
    }

    #[tokio::test]
    async fn after_an_outage_new_outcomes_go_straight_to_the_store_while_the_journal_drains() {
        let directory = std::env::temp_dir().join(format!("saring-journal-bypass-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        let gated = Gated {
            inner: MemoryStore::new(Duration::from_secs(3600)),
            down: AtomicBool::new(true),
            held: "journaled-2",
            gate: Semaphore::new(0),
        };
        let journal = Arc::new(JournaledStore::open(gated, &directory.join("j"), Duration::from_millis(50)).unwrap());
        let caller = KeyHasher::new(b"journal-test-secret").number("+6281234567000");
        let at_ms = 1_790_000_000_000;

        // The outage: both outcomes are acknowledged from the journal.
        for (index, contact_id) in ["journaled-1", "journaled-2"].into_iter().enumerate() {
            let event = event(contact_id, at_ms + index as i64);
            assert_eq!(journal.record(contact_id, Some(&caller), None, &event).await.unwrap(), Recorded::Applied);
        }
        assert_eq!(journal.depth(), 2);

        // The store is back; a replay takes the first entry and is held on the second.
        journal.inner().down.store(false, Ordering::SeqCst);
        let replaying = tokio::spawn({
            let journal = Arc::clone(&journal);
            async move { journal.replay().await }
        });
        for _ in 0..500 {
            let histories = journal.inner().inner.load(Some(&caller), None).await.unwrap();
            if histories.caller.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // A new outcome does not wait for the replay (which holds the journal) and is not journaled. The timeout
        // only turns a hang into a failure.
        let direct_event = event("direct", at_ms + 10);
        let direct = journal.record("direct", Some(&caller), None, &direct_event);
        let recorded =
            tokio::time::timeout(Duration::from_secs(10), direct).await.expect("not queued behind the replay");
        assert_eq!(recorded.unwrap(), Recorded::Applied);
        assert_eq!(journal.depth(), 2, "the new outcome went to the store, not the journal");

        journal.inner().gate.add_permits(1);
        assert_eq!(replaying.await.unwrap().unwrap(), 2);
        assert_eq!(journal.depth(), 0);
        let history = journal.inner().inner.load(Some(&caller), None).await.unwrap().caller.unwrap();
        assert_eq!(history.total_contacts, 3, "every acknowledged outcome counted once");
        let _ = std::fs::remove_dir_all(&directory);
    }

    #[tokio::test]
    async fn a_correction_accepted_during_an_outage_is_replayed_after_its_outcome() {
        let directory = std::env::temp_dir().join(format!("saring-journal-correction-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        let gated = Gated {
            inner: MemoryStore::new(Duration::from_secs(3600)),
            down: AtomicBool::new(true),
            held: "none",
            gate: Semaphore::new(0),
        };
        let journal = JournaledStore::open(gated, &directory.join("j"), Duration::from_millis(50)).unwrap();
        let hasher = KeyHasher::new(b"journal-test-secret");
        let (caller, device) = (hasher.number("+6281234567001"), hasher.device("handset-1"));
        let at_ms = 1_790_000_000_000;
        let silent = HistoryEvent { disposition: Disposition::Silent, ..event("corrected-1", at_ms) };
        journal.record("corrected-1", Some(&caller), Some(&device), &silent).await.unwrap();
        journal.record("other-1", Some(&caller), Some(&device), &event("other-1", at_ms + 5_000)).await.unwrap();
        let change = DispositionChange {
            contact_fingerprint: silent.contact_fingerprint,
            at_ms,
            from: Disposition::Silent,
            to: Disposition::Prank,
        };
        assert_eq!(
            journal.correct("corrected-1", Some(&caller), Some(&device), &change).await.unwrap(),
            Corrected::Applied
        );
        assert_eq!(journal.depth(), 3, "the outcomes and the correction wait in the journal");

        // After a restart (the file is read again) and with the store back, the replay applies them in order.
        drop(journal);
        let gated = Gated {
            inner: MemoryStore::new(Duration::from_secs(3600)),
            down: AtomicBool::new(false),
            held: "none",
            gate: Semaphore::new(0),
        };
        let journal = JournaledStore::open(gated, &directory.join("j"), Duration::from_millis(50)).unwrap();
        assert_eq!(journal.replay().await.unwrap(), 3);
        let corrected = journal.inner().inner.load(Some(&caller), Some(&device)).await.unwrap();

        let expected_store = MemoryStore::new(Duration::from_secs(3600));
        let prank = HistoryEvent { disposition: Disposition::Prank, ..silent };
        expected_store.record("corrected-1", Some(&caller), Some(&device), &prank).await.unwrap();
        expected_store.record("other-1", Some(&caller), Some(&device), &event("other-1", at_ms + 5_000)).await.unwrap();
        let expected = expected_store.load(Some(&caller), Some(&device)).await.unwrap();
        for (corrected, expected) in [(&corrected.caller, &expected.caller), (&corrected.device, &expected.device)] {
            let (corrected, expected) = (corrected.as_ref().unwrap(), expected.as_ref().unwrap());
            for (row, expected_row) in corrected.counters.iter().zip(&expected.counters) {
                for (value, expected_value) in row.iter().zip(expected_row) {
                    // Counters are f32: the correction rounds where recording the right disposition first did not.
                    assert!(
                        (value - expected_value).abs() <= 1e-6 * (1.0 + expected_value.abs()),
                        "{value} vs {expected_value}"
                    );
                }
            }
            assert_eq!(corrected.total_contacts, 2);
        }
        // The same correction again changes nothing.
        assert_eq!(
            journal.correct("corrected-1", Some(&caller), Some(&device), &change).await.unwrap(),
            Corrected::Unchanged
        );
        let _ = std::fs::remove_dir_all(&directory);
    }
}
