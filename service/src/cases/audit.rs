//! The audit log's chain. Each entry's link covers the previous entry's link and the entry's own content, so
//! altering, removing or reordering any row breaks every link after it.
//!
//! Two schemes, recorded per entry (`audit.scheme`):
//! - [`SCHEME_SHA256`] (1): `SHA-256(prev || "\n" || JSON[seq, at, actor, role, action, case, state, reason])`,
//!   what saring wrote before the chain was keyed. Anyone can recompute it, so it proves nothing against someone
//!   who can write the database; it is still verified, and the first keyed entry's MAC covers its last link.
//! - [`SCHEME_HMAC`] (2): `HMAC-SHA256(chain_secret, "saring-audit-v2\n" || prev || "\n" || JSON[…, case_digest])`
//!   under `[audit] chain_secret`, which is not in the database. `case_digest` is the digest of the case's rows
//!   after the action ([`super::digest`]), so a case's number, state, rung, dispositions and incidents are covered
//!   too. Once an entry is keyed every later one must be: an unkeyed entry after a keyed one is a downgrade.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The link before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Unkeyed SHA-256 links (entries written before the chain was keyed).
pub const SCHEME_SHA256: i64 = 1;
/// HMAC-SHA256 links under the chain secret, covering the case digest.
pub const SCHEME_HMAC: i64 = 2;

/// The chain secret used when `[audit] chain_secret` is not configured (development only: it is public).
pub const DEVELOPMENT_CHAIN_SECRET: &[u8] = b"saring-development-audit-secret-not-for-production";

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
    /// What: proposed, approved, rejected, actioned, reverted, evidence_added, evidence_read, audit_keyed,
    /// audit_baseline, model_promoted, model_rolled_back.
    pub action: String,
    /// The case concerned.
    pub case_id: Option<String>,
    /// The case's state after the action.
    pub state: Option<String>,
    /// Why: the rule that fired, the reviewer's reason, the dispatch note.
    pub reason: String,
    /// How the link is computed: [`SCHEME_SHA256`] or [`SCHEME_HMAC`].
    pub scheme: i64,
    /// The digest of the case's rows after the action (keyed entries of a case that changed it; `None` for
    /// evidence reads, model events and unkeyed entries).
    pub case_digest: Option<String>,
    /// The previous entry's link.
    pub prev_hash: String,
    /// This entry's link.
    pub hash: String,
}

/// The audit key: HMAC-SHA256 under `[audit] chain_secret`.
#[derive(Clone)]
pub struct AuditKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("AuditKey(..)")
    }
}

impl AuditKey {
    /// The key of `secret`.
    pub fn new(secret: &[u8]) -> Self {
        AuditKey { mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length") }
    }

    /// The public development key.
    pub fn development() -> Self {
        AuditKey::new(DEVELOPMENT_CHAIN_SECRET)
    }

    /// Hex HMAC of `parts`, each followed by a newline.
    pub fn sign(&self, parts: &[&[u8]]) -> String {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
            mac.update(b"\n");
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `tag` is the hex HMAC of `parts` (compared in constant time).
    pub fn verify(&self, parts: &[&[u8]], tag: &str) -> bool {
        let Ok(tag) = hex::decode(tag) else { return false };
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
            mac.update(b"\n");
        }
        mac.verify_slice(&tag).is_ok()
    }
}

impl AuditEntry {
    /// The unkeyed content (scheme 1). A JSON array is an unambiguous encoding: no field can be shifted into its
    /// neighbour.
    fn legacy_content(&self) -> String {
        serde_json::to_string(&(
            self.seq,
            self.at_ms,
            &self.actor,
            &self.role,
            &self.action,
            &self.case_id,
            &self.state,
            &self.reason,
        ))
        .expect("strings and integers serialise")
    }

    /// The link this entry's content and previous link call for under its scheme; `None` for an unknown scheme.
    pub fn expected_link(&self, key: &AuditKey) -> Option<String> {
        match self.scheme {
            SCHEME_SHA256 => Some(self.legacy_link()),
            SCHEME_HMAC => {
                let content = serde_json::to_string(&(
                    self.seq,
                    self.at_ms,
                    &self.actor,
                    &self.role,
                    &self.action,
                    &self.case_id,
                    &self.state,
                    &self.reason,
                    &self.case_digest,
                ))
                .expect("strings and integers serialise");
                Some(key.sign(&[b"saring-audit-v2", self.prev_hash.as_bytes(), content.as_bytes()]))
            }
            _ => None,
        }
    }

    /// The unkeyed SHA-256 link (scheme 1), whatever this entry's scheme: what anyone can recompute.
    pub fn legacy_link(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(b"\n");
        hasher.update(self.legacy_content().as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// The result of verifying the chain: the first problem, if any (what the metrics and `verify_audit` report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every check holds.
    Intact {
        /// Entries checked.
        entries: i64,
    },
    /// The first problem.
    Broken {
        /// The sequence number of the first entry that does not verify (for a case: its last audited entry).
        seq: i64,
        /// What is wrong.
        problem: String,
    },
}

/// One thing verification found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The entry concerned.
    pub seq: i64,
    /// The case concerned, for a case whose rows differ from its audited state.
    pub case_id: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

/// The chain walked in sequence order: the first broken link, and what later checks need.
#[derive(Debug)]
pub struct ChainWalk<'k> {
    key: &'k AuditKey,
    next_seq: i64,
    prev_link: String,
    /// The first keyed entry.
    pub keyed_from: Option<i64>,
    /// The first broken link.
    pub broken: Option<Problem>,
    /// For every case: its last entry that carries a digest (seq, digest), or its last entry at all with `None`.
    pub cases: std::collections::HashMap<String, (i64, Option<String>)>,
}

impl<'k> ChainWalk<'k> {
    /// A walk from the genesis link.
    pub fn new(key: &'k AuditKey) -> Self {
        ChainWalk {
            key,
            next_seq: 1,
            prev_link: GENESIS.to_owned(),
            keyed_from: None,
            broken: None,
            cases: std::collections::HashMap::new(),
        }
    }

    /// Entries walked.
    pub fn entries(&self) -> i64 {
        self.next_seq - 1
    }

    /// Checks the next entry. After the first broken link the rest is only read for its cases.
    pub fn push(&mut self, entry: AuditEntry) {
        if let Some(case_id) = &entry.case_id {
            let slot = self.cases.entry(case_id.clone()).or_insert((entry.seq, None));
            if entry.case_digest.is_some() || slot.1.is_none() {
                *slot = (entry.seq, entry.case_digest.clone());
            }
        }
        if self.broken.is_some() {
            return;
        }
        let fail = |seq: i64, message: String| Some(Problem { seq, case_id: None, message });
        if entry.seq != self.next_seq {
            let seq = self.next_seq;
            self.broken = fail(seq, format!("entry {seq} is missing (the next entry is {})", entry.seq));
            return;
        }
        if entry.prev_hash != self.prev_link {
            self.broken = fail(
                entry.seq,
                "its link to the previous entry does not match (an entry before it was altered or removed)".into(),
            );
            return;
        }
        match (entry.scheme, self.keyed_from) {
            (SCHEME_HMAC, None) => self.keyed_from = Some(entry.seq),
            (SCHEME_SHA256, Some(keyed_from)) => {
                self.broken = fail(
                    entry.seq,
                    format!(
                        "it is unkeyed but the chain is keyed from entry {keyed_from}: it was rewritten by someone \
                         without the chain secret"
                    ),
                );
                return;
            }
            _ => {}
        }
        match entry.expected_link(self.key) {
            None => {
                self.broken = fail(entry.seq, format!("it names an unknown link scheme {}", entry.scheme));
                return;
            }
            Some(link) if link != entry.hash => {
                let why = if entry.scheme == SCHEME_HMAC {
                    "its content does not match its keyed link: the row was altered, or [audit] chain_secret is not \
                     the secret it was written with"
                } else {
                    "its content does not match its hash (the row was altered)"
                };
                self.broken = fail(entry.seq, why.into());
                return;
            }
            Some(_) => {}
        }
        self.prev_link = entry.hash;
        self.next_seq += 1;
    }

    /// Compares the walk's end with the stored head `(seq, link)`, which exposes a removed tail when the head row
    /// was left alone.
    pub fn finish(&mut self, head: (i64, &str)) {
        if self.broken.is_some() {
            return;
        }
        let (head_seq, head_link) = head;
        if head_seq != self.entries() || head_link != self.prev_link {
            let last = self.entries();
            self.broken = Some(Problem {
                seq: last + 1,
                case_id: None,
                message: format!(
                    "the chain ends at entry {last} but its head records entry {head_seq} (entries were removed or \
                     added outside saring)"
                ),
            });
        }
    }
}

/// Walks `entries` in sequence order under `key` and reports the first broken link; `head` is the stored last
/// link `(seq, link)`.
pub fn verify(entries: impl IntoIterator<Item = AuditEntry>, key: &AuditKey, head: (i64, &str)) -> Verification {
    let mut walk = ChainWalk::new(key);
    for entry in entries {
        walk.push(entry);
    }
    walk.finish(head);
    match walk.broken {
        Some(problem) => Verification::Broken { seq: problem.seq, problem: problem.message },
        None => Verification::Intact { entries: walk.entries() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AuditKey {
        AuditKey::new(b"a test chain secret, 32 bytes ok")
    }

    fn entry(seq: i64, scheme: i64, prev_hash: &str, key: &AuditKey) -> AuditEntry {
        let mut entry = AuditEntry {
            seq,
            at_ms: seq * 1000,
            actor: "ana".into(),
            role: "legal".into(),
            action: "approved".into(),
            case_id: Some(format!("case-{seq}")),
            state: Some("approved".into()),
            reason: "two confirmed pranks".into(),
            scheme,
            case_digest: (scheme == SCHEME_HMAC).then(|| format!("digest-{seq}")),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        entry.hash = entry.expected_link(key).unwrap();
        entry
    }

    /// `legacy` unkeyed entries, then keyed ones up to `length`.
    fn chain(length: i64, legacy: i64, key: &AuditKey) -> Vec<AuditEntry> {
        let mut prev_hash = GENESIS.to_owned();
        (1..=length)
            .map(|seq| {
                let entry = entry(seq, if seq <= legacy { SCHEME_SHA256 } else { SCHEME_HMAC }, &prev_hash, key);
                prev_hash = entry.hash.clone();
                entry
            })
            .collect()
    }

    fn head(entries: &[AuditEntry]) -> (i64, String) {
        entries.last().map_or((0, GENESIS.to_owned()), |entry| (entry.seq, entry.hash.clone()))
    }

    /// Rewrites `entries[from..]` with the unkeyed scheme, as someone without the secret could.
    fn relink_unkeyed(entries: &mut [AuditEntry], from: usize) {
        for index in from..entries.len() {
            if index > 0 {
                entries[index].prev_hash = entries[index - 1].hash.clone();
            }
            entries[index].scheme = SCHEME_SHA256;
            entries[index].hash = entries[index].legacy_link();
        }
    }

    #[test]
    fn an_untouched_chain_verifies_legacy_keyed_or_both() {
        let key = key();
        for legacy in [0, 2, 5] {
            let entries = chain(5, legacy, &key);
            let (seq, hash) = head(&entries);
            assert_eq!(verify(entries, &key, (seq, &hash)), Verification::Intact { entries: 5 }, "{legacy}");
        }
        assert_eq!(verify(Vec::new(), &key, (0, GENESIS)), Verification::Intact { entries: 0 });
    }

    #[test]
    fn the_first_altered_removed_or_truncated_entry_is_named() {
        let key = key();
        let entries = chain(5, 2, &key);
        let (seq, hash) = head(&entries);
        let mut altered = entries.clone();
        altered[2].reason = "approved without reason".into();
        assert!(matches!(verify(altered, &key, (seq, &hash)), Verification::Broken { seq: 3, .. }));
        let mut digest = entries.clone();
        digest[3].case_digest = Some("another state".into());
        assert!(matches!(verify(digest, &key, (seq, &hash)), Verification::Broken { seq: 4, .. }));
        let mut removed = entries.clone();
        removed.remove(3);
        assert!(matches!(verify(removed, &key, (seq, &hash)), Verification::Broken { seq: 4, .. }));
        let truncated = entries[..4].to_vec();
        assert!(matches!(verify(truncated, &key, (seq, &hash)), Verification::Broken { seq: 5, .. }));
    }

    #[test]
    fn rewriting_without_the_secret_is_detected_however_the_links_are_recomputed() {
        let key = key();
        let entries = chain(6, 2, &key);
        // A legacy entry rewritten and the unkeyed part recomputed: the first keyed link covers it.
        let mut legacy = entries.clone();
        legacy[0].reason = "forged".into();
        relink_unkeyed(&mut legacy[..2], 0);
        let (seq, hash) = head(&legacy);
        assert!(matches!(verify(legacy, &key, (seq, &hash)), Verification::Broken { seq: 3, .. }));
        // A keyed entry rewritten and everything after it recomputed unkeyed, head included: a downgrade.
        let mut downgraded = entries.clone();
        downgraded[3].reason = "forged".into();
        relink_unkeyed(&mut downgraded, 3);
        let (seq, hash) = head(&downgraded);
        match verify(downgraded, &key, (seq, &hash)) {
            Verification::Broken { seq: 4, problem } => assert!(problem.contains("unkeyed"), "{problem}"),
            other => panic!("{other:?}"),
        }
        // Recomputed with another secret (the public development one): the keyed links do not match.
        let mut other_key = entries.clone();
        other_key[4].reason = "forged".into();
        let development = AuditKey::development();
        for index in 4..other_key.len() {
            other_key[index].prev_hash = other_key[index - 1].hash.clone();
            other_key[index].hash = other_key[index].expected_link(&development).unwrap();
        }
        let (seq, hash) = head(&other_key);
        match verify(other_key, &key, (seq, &hash)) {
            Verification::Broken { seq: 5, problem } => assert!(problem.contains("chain_secret"), "{problem}"),
            other => panic!("{other:?}"),
        }
        // The whole chain downgraded is internally consistent: only the anchor (outside the database) catches it.
        let mut whole = entries.clone();
        relink_unkeyed(&mut whole, 0);
        let (seq, hash) = head(&whole);
        assert_eq!(verify(whole.clone(), &key, (seq, &hash)), Verification::Intact { entries: 6 });
        assert_ne!(whole[5].hash, entries[5].hash, "the anchored link of entry 6 no longer matches");
    }

    #[test]
    fn a_case_is_remembered_by_its_last_digest() {
        let key = key();
        let mut entries = chain(4, 0, &key);
        for entry in &mut entries {
            entry.case_id = Some("case-a".into());
        }
        entries[3].case_digest = None; // an evidence read
        let mut prev = GENESIS.to_owned();
        let mut walk = ChainWalk::new(&key);
        for mut entry in entries {
            entry.prev_hash = prev;
            entry.hash = entry.expected_link(&key).unwrap();
            prev = entry.hash.clone();
            walk.push(entry);
        }
        assert_eq!(walk.cases["case-a"], (3, Some("digest-3".into())));
        assert_eq!(walk.keyed_from, Some(1));
    }

    #[test]
    fn signatures_verify_only_under_their_key() {
        let tag = key().sign(&[b"a", b"b"]);
        assert!(key().verify(&[b"a", b"b"], &tag));
        assert!(!key().verify(&[b"a", b"c"], &tag));
        assert!(!AuditKey::development().verify(&[b"a", b"b"], &tag));
        assert!(!key().verify(&[b"a", b"b"], "not hex"));
    }
}
