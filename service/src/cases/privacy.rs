//! A data subject's rights in the case database: what it holds about a number ([`CaseStore::subject_records`]),
//! the legal holds on it ([`CaseStore::release_hold`]) and its erasure ([`CaseStore::erase_caller`]).
//!
//! A case holds its caller's number while it is open (proposed or approved: a decision is pending, its evidence
//! must stay) and, for a legal referral, once approved or filed (the referral is the evidence of proceedings).
//! A reviewer releases a hold with a reason; the release is a row of `legal_hold_releases` and an audit entry on
//! the case. Erasure, in one transaction: refused (naming the case) while any hold stands; otherwise every case of
//! the number that is still open is rejected ("number erased"), the number's contacts and their corrections are
//! deleted, every case of the number loses its number and its caller key (both become `erased:<erasure id>`) and
//! gets an `erased` audit entry carrying its new digest — so `saring audit verify` still verifies it — and one
//! case-less `number_erased` entry plus a `privacy_erasures` row record that the erasure happened, never the number.

use std::collections::HashSet;

use sqlx::{Any, AnyConnection, Connection, Row, Transaction};

use super::audit::{AuditEntry, AuditKey};
use super::chain::AuditLink;
use super::store::{
    append_audit, audit_entry, check_audited, load_case, now_ms, settle, summary, timeline, AUDIT_COLUMNS, CASE_COLUMNS,
};
use super::{CaseError, CaseState, CaseSummary, TimelineEntry};
use crate::auth::Principal;
use saring_models::ladder::Rung;

/// What a case's hold on its caller's number is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldCause {
    /// A decision is pending (proposed or approved).
    OpenCase,
    /// A legal referral approved or filed.
    LegalReferral,
}

impl HoldCause {
    /// How the hold is named to people.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldCause::OpenCase => "open case",
            HoldCause::LegalReferral => "legal referral",
        }
    }

    /// The hold a case in this rung and state puts on its caller's number, if any.
    pub fn of(rung: Rung, state: CaseState) -> Option<HoldCause> {
        match (rung, state) {
            (Rung::LegalReferral, CaseState::Approved | CaseState::Actioned) => Some(HoldCause::LegalReferral),
            (_, state) if state.is_open() => Some(HoldCause::OpenCase),
            _ => None,
        }
    }
}

/// A reviewer's release of a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRelease {
    /// The reviewer.
    pub by: String,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Why.
    pub reason: String,
}

/// A legal hold a case puts on its caller's number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    /// The case.
    pub case_id: String,
    /// Why it holds.
    pub cause: HoldCause,
    /// The release, when a reviewer gave one.
    pub released: Option<HoldRelease>,
}

/// Everything the case database holds about one number.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectRecords {
    /// Its contacts (outcomes), oldest first, with their corrections.
    pub contacts: Vec<TimelineEntry>,
    /// Its cases, oldest first.
    pub cases: Vec<CaseSummary>,
    /// The audit entries of those cases, in chain order.
    pub audit: Vec<AuditEntry>,
    /// The holds on it.
    pub holds: Vec<LegalHold>,
}

/// What an erasure did in the case database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseErasure {
    /// The erasure's id.
    pub erasure_id: String,
    /// Contact rows deleted.
    pub contacts_removed: i64,
    /// Cases whose number was redacted.
    pub cases_redacted: i64,
    /// The `number_erased` audit entry.
    pub audit_seq: i64,
}

fn new_erasure_id() -> String {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the operating system provides randomness");
    format!("erasure-{}", hex::encode(random))
}

/// The holds of the given cases, with their releases.
async fn holds_of(tx: &mut Transaction<'_, Any>, cases: &[CaseSummary]) -> Result<Vec<LegalHold>, CaseError> {
    let mut holds = Vec::new();
    for case in cases {
        let Some(cause) = HoldCause::of(case.rung, case.state) else { continue };
        let released =
            sqlx::query("SELECT released_by, released_ms, reason FROM legal_hold_releases WHERE case_id = $1")
                .bind(&case.case_id)
                .fetch_optional(&mut **tx)
                .await?
                .map(|row| -> Result<HoldRelease, sqlx::Error> {
                    Ok(HoldRelease {
                        by: row.try_get("released_by")?,
                        at_ms: row.try_get("released_ms")?,
                        reason: row.try_get("reason")?,
                    })
                })
                .transpose()?;
        holds.push(LegalHold { case_id: case.case_id.clone(), cause, released });
    }
    Ok(holds)
}

async fn cases_in(tx: &mut Transaction<'_, Any>, caller_ref: &str) -> Result<Vec<CaseSummary>, CaseError> {
    let rows =
        sqlx::query(&format!("SELECT {CASE_COLUMNS} FROM cases WHERE caller_key = $1 ORDER BY created_ms, case_id"))
            .bind(caller_ref)
            .fetch_all(&mut **tx)
            .await?;
    rows.iter().map(summary).collect()
}

impl super::CaseStore {
    /// Everything held about the number keyed `caller_refs` (its reference under the current hashing secret first,
    /// then under earlier ones during a rotation); the read is recorded in the audit log (a case-less
    /// `subject_access` entry by `reader` with `reason`, naming no number) in the same transaction.
    pub async fn subject_records(
        &self,
        caller_refs: &[String],
        reader: &Principal,
        reason: &str,
    ) -> Result<(SubjectRecords, i64), CaseError> {
        let mut connection = self.pool()?.acquire().await?;
        let result = Self::subject_records_in(&mut connection, &self.audit.key, caller_refs, reader, reason).await;
        settle(connection, &result);
        let (records, link) = result?;
        Ok((records, self.anchored(link).await))
    }

    async fn subject_records_in(
        connection: &mut AnyConnection,
        key: &AuditKey,
        caller_refs: &[String],
        reader: &Principal,
        reason: &str,
    ) -> Result<(SubjectRecords, AuditLink), CaseError> {
        let mut tx = connection.begin().await?;
        let (mut contacts, mut cases) = (Vec::new(), Vec::new());
        for caller_ref in caller_refs {
            contacts.extend(timeline(&mut tx, caller_ref, i64::MIN, &HashSet::new()).await?);
            cases.extend(cases_in(&mut tx, caller_ref).await?);
        }
        contacts.sort_by(|a, b| (a.at_ms, &a.contact_id).cmp(&(b.at_ms, &b.contact_id)));
        cases.sort_by(|a, b| (a.created_ms, &a.case_id).cmp(&(b.created_ms, &b.case_id)));
        let mut audit = Vec::new();
        for case in &cases {
            let rows = sqlx::query(&format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE case_id = $1 ORDER BY seq"))
                .bind(&case.case_id)
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                audit.push(audit_entry(row)?);
            }
        }
        audit.sort_by_key(|entry| entry.seq);
        let holds = holds_of(&mut tx, &cases).await?;
        let summary = format!(
            "subject access: {} contacts, {} cases, {} audit entries; {reason}",
            contacts.len(),
            cases.len(),
            audit.len()
        );
        let link =
            append_audit(&mut tx, key, &reader.name, reader.role.as_str(), "subject_access", None, None, &summary)
                .await?;
        tx.commit().await?;
        Ok((SubjectRecords { contacts, cases, audit, holds }, link))
    }

    /// Releases the hold case `case_id` puts on its caller's number, by `reviewer` with `reason` (an audit entry
    /// on the case; its version moves on). `Conflict` when the case holds nothing, `Exists` when released before.
    pub async fn release_hold(
        &self,
        case_id: &str,
        reviewer: &Principal,
        reason: &str,
    ) -> Result<(LegalHold, i64), CaseError> {
        let mut connection = self.pool()?.acquire().await?;
        let result = Self::release_hold_in(&mut connection, &self.audit.key, case_id, reviewer, reason).await;
        settle(connection, &result);
        let (hold, link) = result?;
        Ok((hold, self.anchored(link).await))
    }

    async fn release_hold_in(
        connection: &mut AnyConnection,
        key: &AuditKey,
        case_id: &str,
        reviewer: &Principal,
        reason: &str,
    ) -> Result<(LegalHold, AuditLink), CaseError> {
        let mut tx = connection.begin().await?;
        let case = load_case(&mut tx, case_id).await?;
        let Some(cause) = HoldCause::of(case.rung, case.state) else {
            let message = format!(
                "case {case_id} ({} {}) holds no number: only an open case or an approved or filed legal \
                 referral does",
                case.rung.key(),
                case.state.as_str()
            );
            return Err(CaseError::Conflict { message, stale: false, current: Box::new(case) });
        };
        check_audited(&mut tx, case_id).await?;
        let at_ms = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO legal_hold_releases (case_id, cause, released_ms, released_by, reason) \
             VALUES ($1, $5, $2, $3, $4) ON CONFLICT (case_id, cause) DO NOTHING",
        )
        .bind(case_id)
        .bind(at_ms)
        .bind(&reviewer.name)
        .bind(reason)
        .bind(cause.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(CaseError::Exists(format!("the hold of case {case_id} was released before")));
        }
        sqlx::query("UPDATE cases SET version = version + 1, updated_ms = $2 WHERE case_id = $1")
            .bind(case_id)
            .bind(at_ms)
            .execute(&mut *tx)
            .await?;
        let link = append_audit(
            &mut tx,
            key,
            &reviewer.name,
            reviewer.role.as_str(),
            "hold_released",
            Some(case_id),
            Some(case.state),
            reason,
        )
        .await?;
        tx.commit().await?;
        let released = HoldRelease { by: reviewer.name.clone(), at_ms, reason: reason.to_owned() };
        Ok((LegalHold { case_id: case_id.to_owned(), cause, released: Some(released) }, link))
    }

    /// Erases the number keyed `caller_refs` (current secret first, then earlier ones) from the case database (see the module's notes), by `actor` with
    /// `reason`. `Held` naming the first case whose hold stands; nothing is changed then.
    /// `notice` (digests, hex) is written with it, for the other replicas (`crate::notices`).
    pub async fn erase_caller(
        &self,
        caller_refs: &[String],
        notice: &[String],
        actor: &Principal,
        reason: &str,
    ) -> Result<CaseErasure, CaseError> {
        let mut connection = self.pool()?.acquire().await?;
        let result = Self::erase_caller_in(&mut connection, &self.audit.key, caller_refs, notice, actor, reason).await;
        settle(connection, &result);
        let (mut erasure, link) = result?;
        erasure.audit_seq = self.anchored(link).await;
        Ok(erasure)
    }

    async fn erase_caller_in(
        connection: &mut AnyConnection,
        key: &AuditKey,
        caller_refs: &[String],
        notice: &[String],
        actor: &Principal,
        reason: &str,
    ) -> Result<(CaseErasure, AuditLink), CaseError> {
        let mut tx = connection.begin().await?;
        // Every audited writer takes the audit head first (`append_audit`): taking it here serialises this with
        // them, so no case of the number is proposed or changed between our reads and our writes.
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1").execute(&mut *tx).await?;
        let mut cases = Vec::new();
        for caller_ref in caller_refs {
            cases.extend(cases_in(&mut tx, caller_ref).await?);
        }
        if let Some(hold) = holds_of(&mut tx, &cases).await?.into_iter().find(|hold| hold.released.is_none()) {
            return Err(CaseError::Held { case_id: hold.case_id, cause: hold.cause });
        }
        for case in &cases {
            check_audited(&mut tx, &case.case_id).await?;
        }
        let erasure_id = new_erasure_id();
        let erased_ref = format!("erased:{erasure_id}");
        let at_ms = now_ms();
        let mut contacts_removed = 0;
        for caller_ref in caller_refs {
            sqlx::query(
                "DELETE FROM contact_corrections WHERE contact_id IN \
                 (SELECT contact_id FROM contacts WHERE caller_key = $1)",
            )
            .bind(caller_ref)
            .execute(&mut *tx)
            .await?;
            contacts_removed += sqlx::query("DELETE FROM contacts WHERE caller_key = $1")
                .bind(caller_ref)
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
        }
        for case in &cases {
            let state = if case.state.is_open() {
                sqlx::query(
                    "UPDATE cases SET state = 'rejected', decided_by = $2, decided_ms = $3, decision_reason = $4 \
                     WHERE case_id = $1",
                )
                .bind(&case.case_id)
                .bind(&actor.name)
                .bind(at_ms)
                .bind(format!("number erased ({erasure_id})"))
                .execute(&mut *tx)
                .await?;
                CaseState::Rejected
            } else {
                case.state
            };
            sqlx::query(
                "UPDATE cases SET caller_key = $2, caller_number = $2, version = version + 1, updated_ms = $3 \
                 WHERE case_id = $1",
            )
            .bind(&case.case_id)
            .bind(&erased_ref)
            .bind(at_ms)
            .execute(&mut *tx)
            .await?;
            let note =
                format!("{erasure_id}: the caller's number and contacts were erased at the data subject's request");
            append_audit(
                &mut tx,
                key,
                &actor.name,
                actor.role.as_str(),
                "erased",
                Some(&case.case_id),
                Some(state),
                &note,
            )
            .await?;
        }
        sqlx::query(
            "INSERT INTO privacy_erasures (erasure_id, erased_ms, erased_by, reason, contacts_removed, cases_redacted) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&erasure_id)
        .bind(at_ms)
        .bind(&actor.name)
        .bind(reason)
        .bind(contacts_removed)
        .bind(cases.len() as i64)
        .execute(&mut *tx)
        .await?;
        issue_notice(&mut tx, &erasure_id, notice, at_ms).await?;
        let note =
            format!("{erasure_id}: {contacts_removed} contacts removed, {} cases redacted; {reason}", cases.len());
        let link =
            append_audit(&mut tx, key, &actor.name, actor.role.as_str(), "number_erased", None, None, &note).await?;
        tx.commit().await?;
        let erasure =
            CaseErasure { erasure_id, contacts_removed, cases_redacted: cases.len() as i64, audit_seq: link.seq };
        Ok((erasure, link))
    }
}

/// What marking a number reassigned did in the case database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReassignment {
    /// The reassignment's id.
    pub reassignment_id: String,
    /// Contacts before the reassignment, detached from the number.
    pub contacts_detached: i64,
    /// Cases of the former subscriber, detached from the number.
    pub cases_detached: i64,
    /// Of those, the open ones closed (rejected, "number reassigned").
    pub cases_closed: i64,
    /// The `number_reassigned` audit entry.
    pub audit_seq: i64,
}

impl super::CaseStore {
    /// Marks the number keyed `caller_ref` reassigned by its carrier from `from_ms`: its contacts before then and
    /// the cases created before then or grounded on those contacts (the former subscriber's) are detached from the number — their caller key
    /// becomes `reassigned:<id>`, so they stay as evidence of those cases but no longer count for the number — an
    /// open one is closed as rejected ("number reassigned"), each with an audit entry carrying its new digest;
    /// one case-less `number_reassigned` entry records the marking. The ladder then starts fresh for the number.
    pub async fn reassign_caller(
        &self,
        caller_ref: &str,
        notice: &[String],
        from_ms: i64,
        actor: &Principal,
        reason: &str,
    ) -> Result<CaseReassignment, CaseError> {
        let mut connection = self.pool()?.acquire().await?;
        let result =
            Self::reassign_caller_in(&mut connection, &self.audit.key, caller_ref, notice, from_ms, actor, reason)
                .await;
        settle(connection, &result);
        let (mut reassignment, link) = result?;
        reassignment.audit_seq = self.anchored(link).await;
        Ok(reassignment)
    }

    async fn reassign_caller_in(
        connection: &mut AnyConnection,
        key: &AuditKey,
        caller_ref: &str,
        notice: &[String],
        from_ms: i64,
        actor: &Principal,
        reason: &str,
    ) -> Result<(CaseReassignment, AuditLink), CaseError> {
        let mut tx = connection.begin().await?;
        // Every audited writer takes the audit head first (`append_audit`): taking it here serialises this with
        // them, so no case of the number is proposed or changed between our reads and our writes.
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1").execute(&mut *tx).await?;
        sqlx::query("UPDATE cases SET version = version WHERE caller_key = $1")
            .bind(caller_ref)
            .execute(&mut *tx)
            .await?;
        // The former subscriber's cases: created before the date, or grounded on a contact from before it (a case
        // is created when its last incident is recorded, which may be later).
        let grounded: HashSet<String> = sqlx::query(
            "SELECT DISTINCT ci.case_id FROM case_incidents ci JOIN contacts co ON co.contact_id = ci.contact_id \
             WHERE co.caller_key = $1 AND co.at_ms < $2",
        )
        .bind(caller_ref)
        .bind(from_ms)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
        let cases: Vec<CaseSummary> = cases_in(&mut tx, caller_ref)
            .await?
            .into_iter()
            .filter(|case| case.created_ms < from_ms || grounded.contains(&case.case_id))
            .collect();
        for case in &cases {
            check_audited(&mut tx, &case.case_id).await?;
        }
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the operating system provides randomness");
        let reassignment_id = format!("reassignment-{}", hex::encode(random));
        let detached_ref = format!("reassigned:{reassignment_id}");
        let at_ms = now_ms();
        let mut contacts_detached =
            sqlx::query("UPDATE contacts SET caller_key = $2 WHERE caller_key = $1 AND at_ms < $3")
                .bind(caller_ref)
                .bind(&detached_ref)
                .bind(from_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
        // A detached case's evidence goes with it, also a contact from after the date that it had counted: the
        // case's rows (and digest) then never change again through the number's later erasure or pruning.
        for case in &cases {
            contacts_detached += sqlx::query(
                "UPDATE contacts SET caller_key = $2 WHERE caller_key = $1 AND contact_id IN \
                 (SELECT contact_id FROM case_incidents WHERE case_id = $3)",
            )
            .bind(caller_ref)
            .bind(&detached_ref)
            .bind(&case.case_id)
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
        }
        let mut cases_closed = 0;
        for case in &cases {
            let state = if case.state.is_open() {
                sqlx::query(
                    "UPDATE cases SET state = 'rejected', decided_by = $2, decided_ms = $3, decision_reason = $4 \
                     WHERE case_id = $1",
                )
                .bind(&case.case_id)
                .bind(&actor.name)
                .bind(at_ms)
                .bind(format!("number reassigned ({reassignment_id})"))
                .execute(&mut *tx)
                .await?;
                cases_closed += 1;
                CaseState::Rejected
            } else {
                case.state
            };
            sqlx::query("UPDATE cases SET caller_key = $2, version = version + 1, updated_ms = $3 WHERE case_id = $1")
                .bind(&case.case_id)
                .bind(&detached_ref)
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
            let note = format!(
                "{reassignment_id}: the number was reassigned by its carrier; this case was the former subscriber's"
            );
            append_audit(
                &mut tx,
                key,
                &actor.name,
                actor.role.as_str(),
                "number_reassigned",
                Some(&case.case_id),
                Some(state),
                &note,
            )
            .await?;
        }
        let from = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(from_ms) * 1_000_000)
            .ok()
            .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_else(|| from_ms.to_string());
        issue_notice(&mut tx, &reassignment_id, notice, at_ms).await?;
        let note = format!(
            "{reassignment_id}: reassigned from {from}; {contacts_detached} contacts and {} cases detached, \
             {cases_closed} closed; {reason}",
            cases.len()
        );
        let link = append_audit(&mut tx, key, &actor.name, actor.role.as_str(), "number_reassigned", None, None, &note)
            .await?;
        tx.commit().await?;
        let reassignment = CaseReassignment {
            reassignment_id,
            contacts_detached,
            cases_detached: cases.len() as i64,
            cases_closed,
            audit_seq: link.seq,
        };
        Ok((reassignment, link))
    }
}

/// What re-keying the case database after a rotation of the hashing secret moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rekeyed {
    /// Callers whose keyed reference changed.
    pub callers: u64,
    /// Cases moved (each with a `rekeyed` audit entry).
    pub cases: u64,
    /// Contact rows moved with them.
    pub contacts: u64,
}

/// Whether a case's caller reference is a number's keyed hash (not `erased:…`, `pruned:…`, `reassigned:…`).
fn is_keyed(caller_ref: &str) -> bool {
    caller_ref.len() == 64 && caller_ref.bytes().all(|byte| byte.is_ascii_hexdigit())
}

impl super::CaseStore {
    /// After the hashing secret rotated (`saring cases rekey`): every case's caller reference is computed again
    /// from its number with `key_of` (the current secret), and each caller whose reference changed has its cases
    /// and contact rows moved to the new one, in one transaction, each case with a `rekeyed` audit entry carrying
    /// its new digest (so the chain verifies). Contacts of callers without a case hold no number and stay under
    /// the old reference: the ladder no longer counts them (docs/privacy.md). Erased, pruned and reassigned cases
    /// are left as they are. Running it again moves nothing.
    pub async fn rekey(&self, key_of: impl Fn(&str) -> Option<String>) -> Result<Rekeyed, CaseError> {
        let mut connection = self.pool()?.acquire().await?;
        let result = Self::rekey_in(&mut connection, &self.audit.key, &key_of).await;
        settle(connection, &result);
        let (rekeyed, link) = result?;
        if let Some(link) = link {
            self.anchored(link).await;
        }
        Ok(rekeyed)
    }

    async fn rekey_in(
        connection: &mut AnyConnection,
        key: &AuditKey,
        key_of: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Rekeyed, Option<AuditLink>), CaseError> {
        let mut tx = connection.begin().await?;
        // Every audited writer takes the audit head first (`append_audit`): taking it here serialises this with
        // them, so no case of the number is proposed or changed between our reads and our writes.
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1").execute(&mut *tx).await?;
        let rows = sqlx::query("SELECT DISTINCT caller_key, caller_number FROM cases").fetch_all(&mut *tx).await?;
        let mut moves = std::collections::BTreeMap::new();
        for row in &rows {
            let (old, number): (String, String) = (row.try_get("caller_key")?, row.try_get("caller_number")?);
            if !is_keyed(&old) {
                continue;
            }
            if let Some(new) = key_of(&number).filter(|new| *new != old) {
                moves.insert(old, new);
            }
        }
        let mut rekeyed = Rekeyed::default();
        let mut last = None;
        for (old, new) in &moves {
            let cases = cases_in(&mut tx, old).await?;
            for case in &cases {
                check_audited(&mut tx, &case.case_id).await?;
            }
            rekeyed.contacts += sqlx::query("UPDATE contacts SET caller_key = $2 WHERE caller_key = $1")
                .bind(old)
                .bind(new)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(
                "UPDATE cases SET caller_key = $2, version = version + 1, updated_ms = $3 WHERE caller_key = $1",
            )
            .bind(old)
            .bind(new)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            for case in &cases {
                let note =
                    "the hashing secret rotated: the case and its contacts moved to the number's new keyed reference";
                last = Some(
                    append_audit(
                        &mut tx,
                        key,
                        "saring",
                        "system",
                        "rekeyed",
                        Some(&case.case_id),
                        Some(case.state),
                        note,
                    )
                    .await?,
                );
            }
            rekeyed.callers += 1;
            rekeyed.cases += cases.len() as u64;
        }
        tx.commit().await?;
        Ok((rekeyed, last))
    }
}

/// What one pruning run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Outcome rows deleted (old, grounding no case).
    pub contacts: u64,
    /// Closed cases that lost their number and contacts.
    pub cases: u64,
}

/// Closed cases one pruning transaction takes at most (each gets an audit entry).
const PRUNE_CASES_PER_RUN: i64 = 500;

impl super::CaseStore {
    /// Retention: deletes outcome rows received before `contacts_before_ms` that ground no case (with their
    /// corrections), and strips rejected and reverted cases last changed before `cases_before_ms` of their number,
    /// keyed reference and contacts (both become `pruned:<case id>`; a `retention_pruned` audit entry carries the
    /// case's new digest, so the chain verifies). `None` skips a kind. Open cases, actioned rungs (the ladder's
    /// standing) and legal referrals are never touched. At most [`PRUNE_CASES_PER_RUN`] cases per call.
    pub async fn prune(
        &self,
        contacts_before_ms: Option<i64>,
        cases_before_ms: Option<i64>,
    ) -> Result<Pruned, CaseError> {
        let mut pruned = Pruned::default();
        if let Some(before) = contacts_before_ms {
            let mut connection = self.pool()?.acquire().await?;
            let result = Self::prune_contacts_in(&mut connection, before).await;
            settle(connection, &result);
            pruned.contacts = result?;
        }
        if let Some(before) = cases_before_ms {
            let mut connection = self.pool()?.acquire().await?;
            let result = Self::prune_cases_in(&mut connection, &self.audit.key, before).await;
            settle(connection, &result);
            let (cases, link) = result?;
            pruned.cases = cases;
            if let Some(link) = link {
                self.anchored(link).await;
            }
        }
        Ok(pruned)
    }

    /// The erasure notices issued after `after_ms` (notice id, digest as hex, issued at), oldest first.
    pub async fn erasure_notices(&self, after_ms: i64) -> Result<Vec<ErasureNotice>, CaseError> {
        let rows = sqlx::query(
            "SELECT notice_id, digest, issued_ms FROM erasure_notices WHERE issued_ms > $1 \
             ORDER BY issued_ms, notice_id",
        )
        .bind(after_ms)
        .fetch_all(self.pool()?)
        .await?;
        Ok(rows
            .iter()
            .map(|row| ErasureNotice { notice_id: row.get(0), digest: row.get(1), issued_ms: row.get(2) })
            .collect())
    }

    /// Deletes the erasure notices issued before `before_ms`; how many rows went.
    pub async fn prune_erasure_notices(&self, before_ms: i64) -> Result<u64, CaseError> {
        Ok(sqlx::query("DELETE FROM erasure_notices WHERE issued_ms < $1")
            .bind(before_ms)
            .execute(self.pool()?)
            .await?
            .rows_affected())
    }

    /// Deletes the outcome rows received before `before` that ground no case, with their corrections.
    async fn prune_contacts_in(connection: &mut AnyConnection, before: i64) -> Result<u64, CaseError> {
        const OLD: &str = "SELECT co.contact_id FROM contacts co WHERE co.at_ms < $1 AND NOT EXISTS \
                           (SELECT 1 FROM case_incidents ci WHERE ci.contact_id = co.contact_id)";
        let mut tx = connection.begin().await?;
        sqlx::query(&format!("DELETE FROM contact_corrections WHERE contact_id IN ({OLD})"))
            .bind(before)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query(&format!("DELETE FROM contacts WHERE contact_id IN ({OLD})"))
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    async fn prune_cases_in(
        connection: &mut AnyConnection,
        key: &AuditKey,
        before: i64,
    ) -> Result<(u64, Option<AuditLink>), CaseError> {
        let mut tx = connection.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {CASE_COLUMNS} FROM cases WHERE state IN ('rejected', 'reverted') AND updated_ms < $1 \
             AND caller_key NOT LIKE 'pruned:%' AND caller_key NOT LIKE 'erased:%' ORDER BY updated_ms LIMIT $2"
        ))
        .bind(before)
        .bind(PRUNE_CASES_PER_RUN)
        .fetch_all(&mut *tx)
        .await?;
        let cases: Vec<CaseSummary> = rows.iter().map(summary).collect::<Result<_, _>>()?;
        let mut last = None;
        for case in &cases {
            check_audited(&mut tx, &case.case_id).await?;
            // The incidents of a rejected or reverted case ground no other case.
            const MINE: &str = "SELECT contact_id FROM case_incidents WHERE case_id = $1";
            sqlx::query(&format!("DELETE FROM contact_corrections WHERE contact_id IN ({MINE})"))
                .bind(&case.case_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!("DELETE FROM contacts WHERE contact_id IN ({MINE})"))
                .bind(&case.case_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE cases SET caller_key = $2, caller_number = $2, version = version + 1, updated_ms = $3 \
                 WHERE case_id = $1",
            )
            .bind(&case.case_id)
            .bind(format!("pruned:{}", case.case_id))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            let note =
                "retention: the closed case's number and contacts were removed (cases.closed_cases_retention_days)";
            last = Some(
                append_audit(
                    &mut tx,
                    key,
                    "saring",
                    "system",
                    "retention_pruned",
                    Some(&case.case_id),
                    Some(case.state),
                    note,
                )
                .await?,
            );
        }
        tx.commit().await?;
        Ok((cases.len() as u64, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_cases_and_legal_referrals_hold_the_number_and_nothing_else_does() {
        for rung in [Rung::Warning, Rung::VirtualPoliceMessage, Rung::LegalReferral, Rung::WelfareReferral] {
            assert_eq!(HoldCause::of(rung, CaseState::Proposed), Some(HoldCause::OpenCase));
            assert_eq!(HoldCause::of(rung, CaseState::Rejected), None);
            assert_eq!(HoldCause::of(rung, CaseState::Reverted), None);
        }
        assert_eq!(HoldCause::of(Rung::Warning, CaseState::Approved), Some(HoldCause::OpenCase));
        assert_eq!(HoldCause::of(Rung::LegalReferral, CaseState::Approved), Some(HoldCause::LegalReferral));
        assert_eq!(HoldCause::of(Rung::LegalReferral, CaseState::Actioned), Some(HoldCause::LegalReferral));
        assert_eq!(HoldCause::of(Rung::Warning, CaseState::Actioned), None);
        assert_eq!(HoldCause::of(Rung::WelfareReferral, CaseState::Actioned), None);
    }
}

/// One digest of an erasure notice, as the case database keeps it (`crate::notices`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureNotice {
    /// The erasure or reassignment that issued it.
    pub notice_id: String,
    /// A history key's notice digest (hex), never the key.
    pub digest: String,
    /// When it was issued (ms).
    pub issued_ms: i64,
}

/// Writes an erasure notice of `digests` under `notice_id`, in the transaction that erases.
async fn issue_notice(
    tx: &mut Transaction<'_, Any>,
    notice_id: &str,
    digests: &[String],
    at_ms: i64,
) -> Result<(), CaseError> {
    for digest in digests.iter().collect::<HashSet<_>>() {
        sqlx::query("INSERT INTO erasure_notices (notice_id, digest, issued_ms) VALUES ($1, $2, $3)")
            .bind(notice_id)
            .bind(digest)
            .bind(at_ms)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
