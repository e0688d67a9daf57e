//! The audit chain in the case store: the key and anchor a store works with, the start-up checks, the one-time
//! step that keys a chain written before keying existed, anchoring after each commit, and verification (the
//! chain link by link, the anchor, every case's rows against its last audited state).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use sqlx::Row;

use super::anchor::{self, Anchor, AnchorState};
use super::audit::{AuditKey, ChainWalk, Problem, Verification, SCHEME_HMAC, SCHEME_SHA256};
use super::digest::all_case_digests;
use super::store::{append_audit, audit_entry, AUDIT_COLUMNS};
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
    anchor_path: Option<PathBuf>,
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

/// Whether the anchor was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorCheck {
    /// No anchor configured (or `--without-anchor`): a removed tail with a rewound head is not detected.
    NotConfigured,
    /// No file at the path.
    Missing(PathBuf),
    /// The anchor at the path holds entry `seq`.
    Checked {
        /// The file.
        path: PathBuf,
        /// The anchored entry.
        seq: i64,
    },
    /// The file is there but cannot be trusted (a problem says why).
    Invalid(PathBuf),
}

/// What `saring audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries walked.
    pub entries: i64,
    /// The first keyed entry (`None`: the chain predates keying, or is empty).
    pub keyed_from: Option<i64>,
    /// Cases whose rows were compared with their last audited state.
    pub cases_checked: usize,
    /// The anchor.
    pub anchor: AnchorCheck,
    /// Everything wrong, the chain's first broken link first.
    pub problems: Vec<Problem>,
}

impl AuditReport {
    /// The first problem, as the metrics report it.
    pub fn verification(&self) -> Verification {
        match self.problems.first() {
            None => Verification::Intact { entries: self.entries },
            Some(problem) => Verification::Broken { seq: problem.seq, problem: describe(problem) },
        }
    }
}

/// A problem in words, naming its case when it concerns one.
pub fn describe(problem: &Problem) -> String {
    match &problem.case_id {
        Some(case_id) => format!("case {case_id}: {}", problem.message),
        None => problem.message.clone(),
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

    async fn head(&self) -> Result<(i64, String), CaseError> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?;
        Ok((head.try_get("seq")?, head.try_get("hash")?))
    }

    async fn entry_at(&self, seq: i64) -> Result<Option<super::audit::AuditEntry>, CaseError> {
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

    /// The whole check: the chain link by link (first broken link), entries beyond the head, the anchor, and every
    /// case's rows against the digest in its last audited entry. Consistent on a live database: the anchor is read
    /// first and the head next, only entries up to that head are walked, and a case changed by a later entry is
    /// left for the next run.
    pub async fn audit_report(&self) -> Result<AuditReport, CaseError> {
        let key = &self.audit.key;
        let anchor_state = match &self.audit.anchor_path {
            None => None,
            Some(path) => {
                let (path, key) = (path.clone(), key.clone());
                let state = tokio::task::spawn_blocking(move || (anchor::read(&path, &key), path))
                    .await
                    .expect("reading a file does not panic");
                Some((state.1, state.0.map_err(|error| CaseError::Database(sqlx::Error::Io(error)))?))
            }
        };
        let (head_seq, head_link) = self.head().await?;
        let mut walk = ChainWalk::new(key);
        let mut after = 0_i64;
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT 10000"
            ))
            .bind(after)
            .bind(head_seq)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let entry = audit_entry(row)?;
                after = entry.seq;
                walk.push(entry);
            }
        }
        walk.finish((head_seq, &head_link));
        let mut problems: Vec<Problem> = walk.broken.take().into_iter().collect();
        let beyond: Option<i64> =
            sqlx::query("SELECT MAX(seq) FROM audit").fetch_one(&self.pool).await?.try_get::<Option<i64>, _>(0)?;
        if let Some(last) = beyond.filter(|last| *last > head_seq) {
            let (head_now, _) = self.head().await?;
            if last > head_now {
                problems.push(Problem {
                    seq: head_now + 1,
                    case_id: None,
                    message: format!(
                        "entries {} to {last} lie beyond the chain's head (entry {head_now}): added outside saring",
                        head_now + 1
                    ),
                });
            }
        }
        let anchor = match anchor_state {
            None => AnchorCheck::NotConfigured,
            Some((path, state)) => self.check_anchor(path, state, head_seq, walk.keyed_from, &mut problems).await?,
        };
        let cases_checked = self.check_cases(&walk, head_seq, &mut problems).await?;
        Ok(AuditReport { entries: walk.entries(), keyed_from: walk.keyed_from, cases_checked, anchor, problems })
    }

    async fn check_anchor(
        &self,
        path: PathBuf,
        state: AnchorState,
        head_seq: i64,
        keyed_from: Option<i64>,
        problems: &mut Vec<Problem>,
    ) -> Result<AnchorCheck, CaseError> {
        match state {
            AnchorState::Missing => {
                if keyed_from.is_some() {
                    problems.push(Problem {
                        seq: head_seq,
                        case_id: None,
                        message: format!(
                            "no audit anchor at {}: a removed tail cannot be ruled out (check where the replica's \
                             anchor is, or pass --without-anchor to check the database alone)",
                            path.display()
                        ),
                    });
                }
                Ok(AnchorCheck::Missing(path))
            }
            AnchorState::Invalid(why) => {
                problems.push(Problem {
                    seq: head_seq,
                    case_id: None,
                    message: format!("the audit anchor at {} cannot be trusted: {why}", path.display()),
                });
                Ok(AnchorCheck::Invalid(path))
            }
            AnchorState::Valid { seq, link } => {
                if seq > head_seq {
                    problems.push(Problem {
                        seq: head_seq + 1,
                        case_id: None,
                        message: format!(
                            "head behind anchor: the database's chain ends at entry {head_seq} but the anchor at {} \
                             records entry {seq}: {} removed",
                            path.display(),
                            if seq == head_seq + 1 {
                                format!("entry {seq} was")
                            } else {
                                format!("entries {} to {seq} were", head_seq + 1)
                            }
                        ),
                    });
                } else if self.entry_at(seq).await?.is_none_or(|entry| entry.hash != link) {
                    problems.push(Problem {
                        seq,
                        case_id: None,
                        message: format!(
                            "entry {seq} is not the one the anchor at {} records: the chain was rewritten from there \
                             on (or the anchor belongs to another database)",
                            path.display()
                        ),
                    });
                }
                Ok(AnchorCheck::Checked { path, seq })
            }
        }
    }

    /// Compares every case's rows with its last audited digest; the number of cases compared. Nothing to compare
    /// before the chain is keyed.
    async fn check_cases(
        &self,
        walk: &ChainWalk<'_>,
        head_seq: i64,
        problems: &mut Vec<Problem>,
    ) -> Result<usize, CaseError> {
        if walk.keyed_from.is_none() {
            return Ok(0);
        }
        let digests = all_case_digests(&self.pool).await?;
        let mut found = Vec::new();
        let mut ids: Vec<&String> = digests.keys().collect();
        ids.sort();
        for case_id in ids {
            let problem = match walk.cases.get(case_id) {
                None => (0, "it has no audit entry: its row was inserted outside saring".to_owned()),
                Some((seq, None)) => {
                    (*seq, format!("no keyed audit entry records its rows (last entry {seq}): they are not covered"))
                }
                Some((seq, Some(audited))) if *audited != digests[case_id] => (
                    *seq,
                    format!(
                        "its rows differ from its last audited state (entry {seq}): its number, state, rung, \
                         decisions, incidents or their dispositions were changed outside saring"
                    ),
                ),
                Some(_) => continue,
            };
            found.push((case_id.clone(), problem));
        }
        let mut gone: Vec<_> = walk
            .cases
            .iter()
            .filter(|(case_id, (_, digest))| digest.is_some() && !digests.contains_key(*case_id))
            .map(|(case_id, (seq, _))| {
                (case_id.clone(), (*seq, format!("it is in the audit log (entry {seq}) but its row is gone")))
            })
            .collect();
        gone.sort();
        found.extend(gone);
        for (case_id, (seq, message)) in found {
            // Changed (or created) after the head this check read: the next run judges it.
            let later: i64 = sqlx::query("SELECT COUNT(*) FROM audit WHERE case_id = $1 AND seq > $2")
                .bind(&case_id)
                .bind(head_seq)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
            if later == 0 {
                problems.push(Problem { seq, case_id: Some(case_id), message });
            }
        }
        Ok(digests.len())
    }

    /// Every audit entry in order, checked link by link, against the anchor and against every case's rows: the
    /// first problem (what the metrics report).
    pub async fn verify_audit(&self) -> Result<Verification, CaseError> {
        Ok(self.audit_report().await?.verification())
    }
}
