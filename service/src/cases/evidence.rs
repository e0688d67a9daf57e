//! The evidence of one round of a batch in a few statements ([`super::batch`]). One by one, a contact that its
//! caller's open case counts costs a dozen statements ([`super::store::ladder_steps`]): the case's row locked, its
//! rows checked against its last audited digest, the incident inserted, the version moved on, an audit entry
//! appended with the digest of the rows after the change, the case read back. A round holds at most one contact of
//! each case (one outcome per caller, one open case per caller), so here each of those steps is one statement for
//! all the round's cases (up to [`CHUNK`] at a time), and their audit entries are appended as one run of the chain:
//! the head moved on once, the entries linked in Rust in the round's order, inserted in one statement. The rows a
//! digest covers are read in full once, for the check; the digest after the change is taken from those rows with
//! the changed `cases` row and the added incidents read back (two statements, whatever the cases hold), so adding
//! evidence to a large case reads it once, not twice. Each entry is the one the one-by-one path appends for its
//! contact (the same action, reason, state and digest of the same rows). A case
//! whose rows differ from its last audited state fails the whole attempt, as any error does; the writer's
//! outcome-by-outcome retry then refuses only its caller's outcome.

use sqlx::{Any, Row, Transaction};

use super::audit::{self, AuditEntry, AuditKey};
use super::batch::{params, CHUNK};
use super::chain::AuditLink;
use super::digest::{add_incidents, case_rows, CaseRows};
use super::store::{
    bind_audit, evidence_reason, now_ms, summary, unaudited, AUDIT_COLUMNS, CASE_COLUMNS, SYSTEM_ACTOR, SYSTEM_ROLE,
};
use super::{CaseError, CaseSummary, ContactRecord, LadderChange, LadderOutcome};

/// One contact to add as evidence and its caller's open case (as the round read it).
pub(super) type EvidenceItem<'a> = (&'a ContactRecord, CaseSummary);

/// Adds every item's contact to its case, with its audit entry, in `tx`; each item's answer, in `items`' order.
/// The cases must be distinct (a round's are).
pub(super) async fn add_evidence(
    tx: &mut Transaction<'_, Any>,
    key: &AuditKey,
    items: &[EvidenceItem<'_>],
) -> Result<Vec<(LadderOutcome, Option<AuditLink>)>, CaseError> {
    let mut results = Vec::with_capacity(items.len());
    for chunk in items.chunks(CHUNK) {
        results.extend(add_chunk(tx, key, chunk).await?);
    }
    Ok(results)
}

async fn add_chunk(
    tx: &mut Transaction<'_, Any>,
    key: &AuditKey,
    items: &[EvidenceItem<'_>],
) -> Result<Vec<(LadderOutcome, Option<AuditLink>)>, CaseError> {
    let case_ids: Vec<&str> = items.iter().map(|(_, case)| case.case_id.as_str()).collect();
    let list = params(1, case_ids.len());

    // As check_audited, for every case at once: lock the rows, then compare them with the last audited digest.
    let sql = format!("UPDATE cases SET version = version WHERE case_id IN ({list})");
    bind_ids(sqlx::query(&sql).persistent(false), &case_ids).execute(&mut **tx).await?;
    let sql = format!(
        "SELECT a.case_id, a.seq, a.case_digest FROM audit a WHERE a.case_id IN ({list}) \
         AND a.case_digest IS NOT NULL AND a.seq = (SELECT MAX(b.seq) FROM audit b \
         WHERE b.case_id = a.case_id AND b.case_digest IS NOT NULL)"
    );
    let audited = bind_ids(sqlx::query(&sql).persistent(false), &case_ids).fetch_all(&mut **tx).await?;
    let mut rows = case_rows(tx, &case_ids).await?;
    for row in &audited {
        let case_id: String = row.try_get("case_id")?;
        let digest: String = row.try_get("case_digest")?;
        if rows.get(&case_id).map(CaseRows::digest).as_ref() != Some(&digest) {
            return Err(unaudited(&case_id, row.try_get("seq")?));
        }
    }

    let pairs: Vec<String> = (0..items.len()).map(|item| format!("(${}, ${})", 2 * item + 1, 2 * item + 2)).collect();
    let sql = format!("INSERT INTO case_incidents (case_id, contact_id) VALUES {}", pairs.join(", "));
    let mut insert = sqlx::query(&sql).persistent(false);
    for (record, case) in items {
        insert = insert.bind(&case.case_id).bind(&record.contact_id);
    }
    insert.execute(&mut **tx).await?;
    let sql = format!(
        "UPDATE cases SET version = version + 1, updated_ms = $1 WHERE case_id IN ({})",
        params(2, case_ids.len())
    );
    bind_ids(sqlx::query(&sql).persistent(false).bind(now_ms()), &case_ids).execute(&mut **tx).await?;

    // One run of the chain: the head moves on by the number of entries (which serialises appenders, as one
    // entry's update does), and the digests are read after that.
    let count = i64::try_from(items.len()).expect("a chunk is small");
    let head = sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
        .bind(count)
        .fetch_one(&mut **tx)
        .await?;
    let added: Vec<(&str, &str)> =
        items.iter().map(|(record, case)| (case.case_id.as_str(), record.contact_id.as_str())).collect();
    add_incidents(tx, &mut rows, &added).await?;
    let first: i64 = head.try_get::<i64, _>("seq")? - count + 1;
    let mut prev_hash: String = head.try_get("hash")?;
    let at_ms = now_ms();
    let mut entries = Vec::with_capacity(items.len());
    for ((record, case), seq) in items.iter().zip(first..) {
        let mut entry = AuditEntry {
            seq,
            at_ms,
            actor: SYSTEM_ACTOR.to_owned(),
            role: SYSTEM_ROLE.to_owned(),
            action: "evidence_added".to_owned(),
            case_id: Some(case.case_id.clone()),
            state: Some(case.state.as_str().to_owned()),
            reason: evidence_reason(record),
            scheme: audit::SCHEME_HMAC,
            case_digest: rows.get(&case.case_id).map(CaseRows::digest),
            prev_hash: std::mem::take(&mut prev_hash),
            hash: String::new(),
        };
        entry.hash = entry.expected_link(key).expect("the keyed scheme is known");
        prev_hash.clone_from(&entry.hash);
        entries.push(entry);
    }
    let rows: Vec<String> = (0..entries.len()).map(|entry| format!("({})", params(entry * 12 + 1, 12))).collect();
    let sql = format!("INSERT INTO audit ({AUDIT_COLUMNS}) VALUES {}", rows.join(", "));
    let mut insert = sqlx::query(&sql).persistent(false);
    for entry in &entries {
        insert = bind_audit(insert, entry);
    }
    insert.execute(&mut **tx).await?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1").bind(&prev_hash).execute(&mut **tx).await?;

    let sql = format!("SELECT {CASE_COLUMNS} FROM cases WHERE case_id IN ({list})");
    let mut cases = std::collections::HashMap::with_capacity(items.len());
    for row in bind_ids(sqlx::query(&sql).persistent(false), &case_ids).fetch_all(&mut **tx).await?.iter() {
        let case = summary(row)?;
        cases.insert(case.case_id.clone(), case);
    }
    items
        .iter()
        .zip(entries)
        .map(|((_, case), entry)| {
            let case = cases.remove(&case.case_id).ok_or_else(|| CaseError::NotFound(case.case_id.clone()))?;
            let outcome = LadderOutcome { duplicate: false, change: LadderChange::EvidenceAdded, case: Some(case) };
            Ok((outcome, Some(AuditLink { seq: entry.seq, link: entry.hash })))
        })
        .collect()
}

fn bind_ids<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    case_ids: &[&'q str],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for case_id in case_ids {
        query = query.bind(*case_id);
    }
    query
}
