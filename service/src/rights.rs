//! A data subject's rights over their number, across every store saring keeps (docs/privacy.md): access to
//! everything held, erasure with the legal hold, the release of a hold. The rules live here; the gRPC `Privacy`
//! service only translates.
//!
//! Erasure runs the case database first — its transaction checks the legal holds and is the authoritative
//! record that the erasure happened — and then the history store (with its journal) and this replica's caches.
//! When the history store fails after the case database erased, the answer is an error saying so: a retry finds
//! nothing more in the case database and completes the history store (erasing what is gone succeeds).
//!
//! The case database's transaction also issues an erasure notice (`crate::notices`): every other replica then
//! removes the number from what it alone holds — its journal, caches, an in-memory store, its capture files.

use crate::app::{App, CallerStanding};
use crate::auth::Principal;
use crate::cases::check_reason;
use crate::cases::privacy::{CaseErasure, CaseReassignment, LegalHold, SubjectRecords};
use crate::error::{Error, Result, Violation};
use crate::store::HistoryStore;

/// Everything held about one number.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectAccess {
    /// Its history and place on the ladder.
    pub standing: CallerStanding,
    /// What the case database holds.
    pub records: SubjectRecords,
    /// The audit entry recording the access.
    pub audit_seq: i64,
}

/// What an erasure removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// In the case database.
    pub cases: CaseErasure,
    /// Histories removed from the history store.
    pub histories: usize,
    /// Journaled outcomes removed or stripped of the number.
    pub journal_entries: usize,
    /// Capture records removed.
    pub capture_records: u64,
}

/// What marking a number reassigned did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    /// In the case database.
    pub cases: CaseReassignment,
    /// Histories reset.
    pub histories: usize,
}

/// A request's reason, checked as every case change's, and never holding the number itself (the reason is kept
/// in the audit log, which an erasure does not rewrite).
pub fn check_subject_reason(reason: &str, e164: &str) -> Result<String> {
    let reason = check_reason(reason, true)
        .map_err(|description| Error::InvalidArgument(vec![Violation::new("reason", description)]))?;
    let digits: String = reason.chars().filter(char::is_ascii_digit).collect();
    // The national significant number (without +62 or a leading 0) is what any written form of it contains.
    let national = e164.trim_start_matches("+62");
    if national.len() >= 6 && digits.contains(national) {
        return Err(Error::InvalidArgument(vec![Violation::new(
            "reason",
            "contains the number: give the request's reference instead (the reason is kept in the audit log)",
        )]));
    }
    Ok(reason)
}

impl<S: HistoryStore> App<S> {
    /// A number's keyed references in the case database: under the current hashing secret, then (while a
    /// rotation is under way) under each earlier one, whose cases `saring cases rekey` has not moved yet.
    fn caller_refs(&self, e164: &str) -> Vec<String> {
        let (earlier, _) = self.screener.previous_keys(Some(e164), None);
        std::iter::once(self.screener.number_key(e164)).chain(earlier).map(|key| key.to_hex()).collect()
    }

    /// The notice digests (hex) of the histories of `e164` and `device_id` under every configured secret, for
    /// the other replicas (`crate::notices`).
    fn notice(&self, e164: &str, device_id: Option<&str>) -> Vec<String> {
        let hasher = self.screener.hasher();
        let (earlier_numbers, earlier_devices) = self.screener.previous_keys(Some(e164), device_id);
        std::iter::once(hasher.number(e164))
            .chain(device_id.map(|device_id| hasher.device(device_id)))
            .chain(earlier_numbers)
            .chain(earlier_devices)
            .map(|key| hex::encode(hasher.notice_digest(&key)))
            .collect()
    }

    /// Everything held about `e164` (normalised), read by `reader` with `reason` (audited).
    pub async fn subject_access(
        &self,
        reader: &Principal,
        e164: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<SubjectAccess> {
        let reason = check_subject_reason(reason, e164)?;
        let standing = self.caller_standing(e164, now_ms).await?;
        let (records, audit_seq) =
            self.escalator.store().subject_records(&self.caller_refs(e164), reader, &reason).await?;
        Ok(SubjectAccess { standing, records, audit_seq })
    }

    /// Erases `e164` (normalised) and, when given, the device `device_id`: refused with [`Error::LegalHold`] while a
    /// case holds the number.
    pub async fn erase_subject(
        &self,
        actor: &Principal,
        e164: &str,
        device_id: Option<&str>,
        reason: &str,
    ) -> Result<Erasure> {
        let reason = check_subject_reason(reason, e164)?;
        // A device id as contacts carry it (at most 64 characters): a longer one names no history.
        let device_id = device_id.map(str::trim).filter(|device_id| !device_id.is_empty());
        if device_id.is_some_and(|device_id| device_id.chars().count() > 64) {
            return Err(Error::InvalidArgument(vec![Violation::new("device_id", "longer than 64 characters")]));
        }
        let notice = self.notice(e164, device_id);
        let cases = self.escalator.store().erase_caller(&self.caller_refs(e164), &notice, actor, &reason).await?;
        let erased = self.screener.erase(Some(e164), device_id).await.map_err(|error| {
            tracing::error!(%error, erasure_id = %cases.erasure_id, "erasure: the history store failed after the case database erased");
            Error::StoreUnavailable(format!(
                "the case database erased the number ({}), the history store did not: retry the erasure",
                cases.erasure_id
            ))
        })?;
        tracing::info!(erasure_id = %cases.erasure_id, contacts = cases.contacts_removed, cases = cases.cases_redacted, histories = erased.histories, journal = erased.journal_entries, "number erased");
        Ok(Erasure {
            cases,
            histories: erased.histories,
            journal_entries: erased.journal_entries,
            capture_records: erased.capture_records,
        })
    }

    /// Releases the legal hold case `case_id` puts on its number, by `reviewer` with `reason`.
    pub async fn release_hold(&self, reviewer: &Principal, case_id: &str, reason: &str) -> Result<(LegalHold, i64)> {
        let reason = check_reason(reason, true)
            .map_err(|description| Error::InvalidArgument(vec![Violation::new("reason", description)]))?;
        if case_id.trim().is_empty() {
            return Err(Error::InvalidArgument(vec![Violation::new("case_id", "required")]));
        }
        Ok(self.escalator.store().release_hold(case_id, reviewer, &reason).await?)
    }

    /// Marks `e164` (normalised) reassigned by its carrier from `from_ms` (not in the future), by `actor` with
    /// `reason`: the case database detaches the former subscriber's contacts and cases (closing an open one), then
    /// the number's history is reset (decayed counts cannot be split by date: contacts the new subscriber made
    /// before the marking leave the history too, and stay in the case database).
    pub async fn mark_reassigned(
        &self,
        actor: &Principal,
        e164: &str,
        from_ms: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<Reassignment> {
        let reason = check_subject_reason(reason, e164)?;
        if from_ms > now_ms + 60_000 {
            return Err(Error::InvalidArgument(vec![Violation::new("reassigned_at", "in the future")]));
        }
        let caller_ref = self.screener.number_key(e164).to_hex();
        let notice = self.notice(e164, None);
        let cases = self.escalator.store().reassign_caller(&caller_ref, &notice, from_ms, actor, &reason).await?;
        let erased = self.screener.erase(Some(e164), None).await.map_err(|error| {
            tracing::error!(%error, reassignment_id = %cases.reassignment_id, "reassignment: the history store failed after the case database detached the number");
            Error::StoreUnavailable(format!(
                "the case database detached the number ({}), its history was not reset: mark it again",
                cases.reassignment_id
            ))
        })?;
        tracing::info!(reassignment_id = %cases.reassignment_id, contacts = cases.contacts_detached, cases = cases.cases_detached, closed = cases.cases_closed, "number marked reassigned");
        Ok(Reassignment { cases, histories: erased.histories })
    }
}
