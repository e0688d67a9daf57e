//! The audit log's hash chain: each entry's hash covers the previous entry's hash and the entry's own content,
//! so altering, removing or reordering any row breaks every link after it.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When, Unix ms (server clock).
    pub at_ms: i64,
    /// Who: a token's name, or `saring` for the policy's own steps.
    pub actor: String,
    /// The actor's role (`system` for the policy).
    pub role: String,
    /// What: proposed, approved, rejected, actioned, reverted, evidence_added, evidence_read.
    pub action: String,
    /// The case concerned.
    pub case_id: Option<String>,
    /// The case's state after the action.
    pub state: Option<String>,
    /// Why: the rule that fired, the reviewer's reason, the dispatch note.
    pub reason: String,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// The hash of an entry whose previous link is `prev_hash`.
#[allow(clippy::too_many_arguments)]
pub fn link_hash(
    prev_hash: &str,
    seq: i64,
    at_ms: i64,
    actor: &str,
    role: &str,
    action: &str,
    case_id: Option<&str>,
    state: Option<&str>,
    reason: &str,
) -> String {
    // A JSON array is an unambiguous encoding: no field can be shifted into its neighbour.
    let content = serde_json::to_string(&(seq, at_ms, actor, role, action, case_id, state, reason))
        .expect("strings and integers serialise");
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(content.as_bytes());
    hex::encode(hasher.finalize())
}

impl AuditEntry {
    /// The hash this entry's content and previous link call for.
    pub fn expected_hash(&self) -> String {
        link_hash(
            &self.prev_hash,
            self.seq,
            self.at_ms,
            &self.actor,
            &self.role,
            &self.action,
            self.case_id.as_deref(),
            self.state.as_deref(),
            &self.reason,
        )
    }
}

/// The result of verifying the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every link holds.
    Intact {
        /// Entries checked.
        entries: i64,
    },
    /// The first broken link.
    Broken {
        /// The sequence number of the first entry that does not verify.
        seq: i64,
        /// What is wrong with it.
        problem: String,
    },
}

/// Walks entries in sequence order and reports the first broken link; `head` is the stored last link
/// `(seq, hash)`, which exposes a removed tail.
pub fn verify(entries: impl IntoIterator<Item = AuditEntry>, head: (i64, &str)) -> Verification {
    let mut expected_seq = 1;
    let mut prev_hash = GENESIS.to_owned();
    for entry in entries {
        if entry.seq != expected_seq {
            return Verification::Broken {
                seq: expected_seq,
                problem: format!("entry {expected_seq} is missing (the next entry is {})", entry.seq),
            };
        }
        if entry.prev_hash != prev_hash {
            return Verification::Broken {
                seq: entry.seq,
                problem: "its link to the previous entry does not match (an entry before it was altered or removed)"
                    .into(),
            };
        }
        if entry.expected_hash() != entry.hash {
            return Verification::Broken {
                seq: entry.seq,
                problem: "its content does not match its hash (the row was altered)".into(),
            };
        }
        prev_hash = entry.hash;
        expected_seq += 1;
    }
    let (head_seq, head_hash) = head;
    if head_seq != expected_seq - 1 || head_hash != prev_hash {
        return Verification::Broken {
            seq: expected_seq,
            problem: format!(
                "the chain ends at entry {} but its head records entry {head_seq} (entries were removed or added \
                 outside saring)",
                expected_seq - 1
            ),
        };
    }
    Verification::Intact { entries: expected_seq - 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(length: i64) -> Vec<AuditEntry> {
        let mut prev_hash = GENESIS.to_owned();
        (1..=length)
            .map(|seq| {
                let mut entry = AuditEntry {
                    seq,
                    at_ms: seq * 1000,
                    actor: "ana".into(),
                    role: "legal".into(),
                    action: "approved".into(),
                    case_id: Some(format!("case-{seq}")),
                    state: Some("approved".into()),
                    reason: "two confirmed pranks".into(),
                    prev_hash: prev_hash.clone(),
                    hash: String::new(),
                };
                entry.hash = entry.expected_hash();
                prev_hash = entry.hash.clone();
                entry
            })
            .collect()
    }

    fn head(entries: &[AuditEntry]) -> (i64, String) {
        entries.last().map_or((0, GENESIS.to_owned()), |entry| (entry.seq, entry.hash.clone()))
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let entries = chain(5);
        let (seq, hash) = head(&entries);
        assert_eq!(verify(entries, (seq, &hash)), Verification::Intact { entries: 5 });
        assert_eq!(verify(Vec::new(), (0, GENESIS)), Verification::Intact { entries: 0 });
    }

    #[test]
    fn the_first_altered_removed_or_truncated_entry_is_named() {
        let entries = chain(5);
        let (seq, hash) = head(&entries);
        let mut altered = entries.clone();
        altered[2].reason = "approved without reason".into();
        assert!(matches!(verify(altered, (seq, &hash)), Verification::Broken { seq: 3, .. }));
        let mut rehashed = entries.clone();
        rehashed[1].actor = "mallory".into();
        rehashed[1].hash = rehashed[1].expected_hash();
        assert!(matches!(verify(rehashed, (seq, &hash)), Verification::Broken { seq: 3, .. }));
        let mut removed = entries.clone();
        removed.remove(3);
        assert!(matches!(verify(removed, (seq, &hash)), Verification::Broken { seq: 4, .. }));
        let truncated = entries[..4].to_vec();
        assert!(matches!(verify(truncated, (seq, &hash)), Verification::Broken { seq: 5, .. }));
    }
}
