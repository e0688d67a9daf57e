//! Verification of the audit chain, as `saring audit verify` prints it and the metrics report it: the chain link by
//! link, entries beyond its head, the head against the anchor, and every case's rows against its last audited
//! state.

use std::path::PathBuf;

use sqlx::Row;

use super::anchor::{self, AnchorState};
use super::audit::{ChainWalk, Problem, Verification};
use super::digest::all_case_digests;
use super::store::{audit_entry, AUDIT_COLUMNS};
use super::{CaseError, CaseStore};

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
            .fetch_all(self.pool()?)
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
            sqlx::query("SELECT MAX(seq) FROM audit").fetch_one(self.pool()?).await?.try_get::<Option<i64>, _>(0)?;
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
        let digests = all_case_digests(self.pool()?).await?;
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
                .fetch_one(self.pool()?)
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
