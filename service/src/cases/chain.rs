//! The audit chain in the case store: the key and anchor a store works with, the start-up checks, the one-time
//! step that keys a chain written before keying existed, and anchoring after each commit. Verification:
//! [`super::verify`].

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::any::AnyConnectOptions;
use sqlx::Row;

use super::anchor::{self, Anchor, AnchorState};
use super::audit::{AuditKey, SCHEME_HMAC, SCHEME_SHA256};
use super::store::{append_audit, audit_entry, server_pool_options, AUDIT_COLUMNS, MIGRATOR};
use super::{CaseError, CaseState, CaseStore};

/// How a store keys and anchors its audit chain.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The chain secret's key (`[audit] chain_secret`).
    pub key: AuditKey,
    /// The anchor file (`[audit] anchor_path`); `None`: no anchor is written or checked.
    pub anchor_path: Option<PathBuf>,
}

impl AuditOptions {
    /// The public development key and no anchor: tests, backtests, embedding.
    pub fn development() -> Self {
        AuditOptions { key: AuditKey::development(), anchor_path: None }
    }
}

/// A store's audit key and anchor.
#[derive(Debug)]
pub(super) struct AuditSetup {
    pub(super) key: AuditKey,
    pub(super) anchor_path: Option<PathBuf>,
    /// Set by [`CaseStore::start_audit`] on a store that serves; a read-only store never writes one.
    anchor: OnceLock<Arc<Anchor>>,
}

impl AuditSetup {
    pub(super) fn new(options: AuditOptions) -> Self {
        AuditSetup { key: options.key, anchor_path: options.anchor_path, anchor: OnceLock::new() }
    }
}

/// An entry just appended: its sequence number and link, to anchor once committed.
#[derive(Debug)]
pub(super) struct AuditLink {
    pub(super) seq: i64,
    pub(super) link: String,
}

/// Whether a database error means the server could not be reached (rather than refused what was asked).
fn unreachable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed)
}

/// Why a store cannot serve its audit chain.
#[derive(Debug, thiserror::Error)]
pub enum AuditStartError {
    /// The database failed.
    #[error("{0}")]
    Database(#[from] CaseError),
    /// The chain's last entry does not verify under the configured secret.
    #[error("audit.chain_secret: {0}")]
    Secret(String),
    /// The anchor cannot be trusted, is ahead of the database, or cannot be written.
    #[error("audit.anchor_path {path}: {message}")]
    Anchor {
        /// The anchor file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl AuditStartError {
    /// As a case error (for [`CaseStore::connect`], which has no other error type).
    pub fn into_case_error(self) -> CaseError {
        match self {
            AuditStartError::Database(error) => error,
            other => CaseError::Database(sqlx::Error::Configuration(other.to_string().into())),
        }
    }
}

impl CaseStore {
    /// Connects as [`CaseStore::connect`] does, with the chain keyed and anchored as `audit` says, after the
    /// start-up checks: the chain's last entry verifies under the key, an existing anchor is signed with it and the
    /// database is not behind it. A chain written before keying is keyed here, once.
    pub async fn connect_with(url: &str, audit: AuditOptions) -> Result<Self, AuditStartError> {
        let store = CaseStore::connect_database(url, audit).await?;
        store.start_audit().await?;
        Ok(store)
    }

    /// As [`CaseStore::connect_with`], except that a PostgreSQL server that cannot be reached does not stop
    /// start-up: the store starts closed — every case operation fails with UNAVAILABLE while the replica scores —
    /// and a background task connects, migrates and checks the audit chain every `retry` until it can, then opens
    /// it. A chain that fails its check then (another secret, an anchor ahead of the database) keeps the store
    /// closed and is logged as an error, as it would have stopped start-up.
    pub async fn connect_or_wait(url: &str, audit: AuditOptions, retry: Duration) -> Result<Self, AuditStartError> {
        let server = url.starts_with("postgres:") || url.starts_with("postgresql:");
        match CaseStore::connect_with(url, audit.clone()).await {
            Err(AuditStartError::Database(CaseError::Database(error))) if server && unreachable(&error) => {
                tracing::error!(%error, "the case database cannot be reached: scoring starts, case operations are refused until it can be");
                sqlx::any::install_default_drivers();
                let options = AnyConnectOptions::from_str(url).map_err(CaseError::Database)?;
                let pool = server_pool_options().connect_lazy_with(options);
                let store = CaseStore {
                    reader: pool.clone(),
                    pool,
                    audit: Arc::new(AuditSetup::new(audit)),
                    open: Arc::new(AtomicBool::new(false)),
                    sqlite: false,
                    writers: Arc::default(),
                };
                tokio::spawn(store.clone().open_when_reached(retry));
                Ok(store)
            }
            other => other,
        }
    }

    async fn open_when_reached(self, retry: Duration) {
        let mut attempts: u64 = 0;
        loop {
            tokio::time::sleep(retry).await;
            attempts += 1;
            let reached = match MIGRATOR.run(&self.pool).await {
                Ok(()) => self.start_audit().await,
                Err(error) => Err(AuditStartError::Database(CaseError::Database(error.into()))),
            };
            match reached {
                Ok(()) => {
                    self.open.store(true, Ordering::Release);
                    tracing::info!(attempts, "the case database is reached: case operations are accepted again");
                    return;
                }
                Err(AuditStartError::Database(CaseError::Database(error))) if unreachable(&error) => {
                    // Every attempt for the first minute, then one in ten: the outage is already logged.
                    if attempts < 6 || attempts.is_multiple_of(10) {
                        tracing::warn!(%error, attempts, "the case database is still unreachable; case operations are refused");
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "the case database was reached but cannot be used: case operations stay refused (run `saring audit verify`, fix, restart)");
                    return;
                }
            }
        }
    }

    pub(super) async fn head(&self) -> Result<(i64, String), CaseError> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?;
        Ok((head.try_get("seq")?, head.try_get("hash")?))
    }

    pub(super) async fn entry_at(&self, seq: i64) -> Result<Option<super::audit::AuditEntry>, CaseError> {
        let row = sqlx::query(&format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq = $1"))
            .bind(seq)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(audit_entry).transpose()
    }

    pub(super) async fn start_audit(&self) -> Result<(), AuditStartError> {
        let key = &self.audit.key;
        let (head_seq, _) = self.head().await?;
        if let Some(entry) = self.entry_at(head_seq).await? {
            if entry.scheme == SCHEME_HMAC && entry.expected_link(key).as_deref() != Some(entry.hash.as_str()) {
                return Err(AuditStartError::Secret(format!(
                    "the audit chain's last entry ({head_seq}) does not verify with the configured secret: it was \
                     written with another secret, or altered (run `saring audit verify`)"
                )));
            }
        }
        self.key_the_chain().await?;
        let Some(path) = self.audit.anchor_path.clone() else { return Ok(()) };
        let shown = path.display().to_string();
        let anchor_error = |message: String| AuditStartError::Anchor { path: shown.clone(), message };
        let read = {
            let (path, key) = (path.clone(), key.clone());
            tokio::task::spawn_blocking(move || anchor::read(&path, &key)).await.expect("reading a file does not panic")
        };
        let state = read.map_err(|error| anchor_error(format!("cannot read it: {error}")))?;
        let (head_seq, head_link) = self.head().await?;
        let anchored = match state {
            AnchorState::Missing => {
                if head_seq > 0 {
                    tracing::warn!(path = %path.display(), head_seq, "no audit anchor yet: starting one at the chain's head (a new replica, or the file was removed)");
                }
                0
            }
            AnchorState::Invalid(why) => {
                return Err(anchor_error(format!(
                    "{why}; run `saring audit verify`, and move the file away only once the database is trusted"
                )))
            }
            AnchorState::Valid { seq, link } => {
                if seq > head_seq {
                    return Err(anchor_error(format!(
                        "it records entry {seq} but the database's chain ends at entry {head_seq}: entries were \
                         removed (run `saring audit verify`)"
                    )));
                }
                if self.entry_at(seq).await?.is_none_or(|entry| entry.hash != link) {
                    return Err(anchor_error(format!(
                        "entry {seq} in the database is not the one anchored: the chain was rewritten, or this is \
                         another database (run `saring audit verify`)"
                    )));
                }
                seq
            }
        };
        let anchor = Arc::new(Anchor::new(path, key.clone(), anchored));
        if head_seq > anchored {
            let writer = Arc::clone(&anchor);
            tokio::task::spawn_blocking(move || writer.advance(head_seq, &head_link))
                .await
                .expect("writing a file does not panic")
                .map_err(|error| anchor_error(format!("cannot write it: {error}")))?;
        }
        let _ = self.audit.anchor.set(anchor);
        Ok(())
    }

    /// Keys a chain whose entries all predate keying: one `audit_keyed` entry (its MAC covers the last unkeyed
    /// link), then an `audit_baseline` entry per case recording its rows as they are now — there was nothing to
    /// compare them with. Runs once: the head row is taken first, so of two replicas starting together one keys
    /// the chain and the other finds it keyed.
    async fn key_the_chain(&self) -> Result<(), CaseError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1").execute(&mut *tx).await?;
        let head_scheme: Option<i64> =
            sqlx::query("SELECT a.scheme FROM audit a JOIN audit_head h ON h.id = 1 AND a.seq = h.seq")
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
        if head_scheme != Some(SCHEME_SHA256) {
            tx.rollback().await?;
            return Ok(());
        }
        let legacy: i64 = sqlx::query("SELECT COUNT(*) FROM audit").fetch_one(&mut *tx).await?.try_get(0)?;
        let cases = sqlx::query("SELECT case_id, state FROM cases ORDER BY created_ms, case_id")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| Ok((row.try_get::<String, _>("case_id")?, row.try_get::<String, _>("state")?)))
            .collect::<Result<Vec<_>, CaseError>>()?;
        let reason = format!(
            "the audit chain is keyed from this entry; the {legacy} entries before it keep their unkeyed links; \
             {} cases baselined",
            cases.len()
        );
        let key = &self.audit.key;
        append_audit(&mut tx, key, "saring", "system", "audit_keyed", None, None, &reason).await?;
        for (case_id, state) in &cases {
            let state =
                CaseState::from_name(state).ok_or(CaseError::Corrupt { what: "state", value: state.clone() })?;
            let reason = "the case's rows when the audit chain was keyed";
            append_audit(&mut tx, key, "saring", "system", "audit_baseline", Some(case_id), Some(state), reason)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(legacy_entries = legacy, cases = cases.len(), "the audit chain is keyed from now on");
        Ok(())
    }

    /// Anchors a committed entry (on a blocking thread) and returns its sequence number. The entry is committed
    /// whatever happens here: a failed anchor write is logged and leaves the anchor behind, which verification
    /// accepts.
    pub(super) async fn anchored(&self, link: AuditLink) -> i64 {
        let seq = link.seq;
        if let Some(anchor) = self.audit.anchor.get() {
            let anchor = Arc::clone(anchor);
            let written = tokio::task::spawn_blocking(move || {
                let result = anchor.advance(link.seq, &link.link);
                (anchor, result)
            })
            .await;
            if let Ok((anchor, Err(error))) = written {
                tracing::error!(path = %anchor.path().display(), seq, %error, "could not write the audit anchor; the entry is committed and the anchor stays behind");
            }
        }
        seq
    }
}
