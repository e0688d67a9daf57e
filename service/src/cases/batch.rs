//! A batch of outcomes in a few statements ([`super::writer`]'s first attempt at a batch). One outcome on its own
//! costs an INSERT of its contact, a read of its caller's standing and a read of its caller's incidents before the
//! policy is evaluated; here the batch is taken in rounds — the first outcome of every caller in it, then the
//! second of those with two, and so on — and each round inserts all its contacts in one statement, reads all its
//! callers' standings in one and all their incidents in one. The round's contacts that their callers' open cases
//! count are added as evidence together ([`add_evidence`], a few statements for all of them); every other outcome
//! takes the ladder's steps alone ([`ladder_steps`]): most take none (no open case, or one whose rung does not
//! count the disposition, and no rung due); proposals write as they would one by one.
//!
//! The result equals running the outcomes one by one in queue order: one caller's outcomes are in successive
//! rounds, so each sees its caller's earlier ones and not its later ones, and outcomes of different callers touch
//! different rows (a caller's contacts, cases and the incidents they ground). The one thing read across callers is
//! the surge count of a region (silent and accidental contacts of distinct callers), which may see a contact of
//! the same round that a one-by-one run would only have inserted later — as concurrent transactions of two
//! replicas may. A duplicate contact id goes the one-by-one way ([`repeated_outcome`]); any error fails the whole
//! attempt, and the writer runs the batch again outcome by outcome, each in its own savepoint.

use std::collections::HashMap;

use saring_models::ladder::{Incident, LadderPolicy};
use sqlx::{Any, Row, Transaction};

use super::audit::AuditKey;
use super::chain::AuditLink;
use super::evidence::{add_evidence, EvidenceItem};
use super::store::{
    add_standing, bind_contact, ladder_steps, now_ms, push_incident, repeated_outcome, spent_contacts, Standing,
    INCIDENT_ORDER, INCIDENT_QUERY, STANDING_COLUMNS, STANDING_FILTER, STANDING_ORDER,
};
use super::{CaseError, ContactRecord, LadderOutcome};

/// The most contacts (or callers) one statement carries: 64 contacts are 768 parameters, far below SQLite's and
/// PostgreSQL's limits, and an IN list the planners take as index lookups.
pub(super) const CHUNK: usize = 64;

/// One outcome of a batch: its caller's policy, its record and the clock when it was received.
pub(super) type BatchItem<'a> = (&'a LadderPolicy, &'a ContactRecord, i64);

/// A caller's incidents and their contact ids, as [`super::store::ladder_steps`] takes them.
type Incidents = (Vec<String>, Vec<Incident>);

/// Runs every outcome of the batch in `tx` and gives each one's result, in the batch's order. `Err` on the first
/// outcome that fails (nothing of the transaction is to be kept then).
pub(super) async fn batch_steps(
    tx: &mut Transaction<'_, Any>,
    key: &AuditKey,
    items: &[BatchItem<'_>],
) -> Result<Vec<(LadderOutcome, Option<AuditLink>)>, CaseError> {
    let mut results: Vec<Option<(LadderOutcome, Option<AuditLink>)>> = items.iter().map(|_| None).collect();
    for round in rounds(items) {
        let recorded_ms = now_ms();
        let mut inserted = std::collections::HashSet::new();
        for chunk in round.chunks(CHUNK) {
            let sql = insert_sql(chunk.len());
            let mut query = sqlx::query(&sql).persistent(false);
            for &index in chunk {
                query = bind_contact(query, items[index].1, recorded_ms);
            }
            for row in query.fetch_all(&mut **tx).await? {
                inserted.insert(row.try_get::<String, _>(0)?);
            }
        }
        // An id the statement inserted is new for the first of the round's outcomes that carry it (two callers'
        // outcomes with one contact id: the second is a repeat, as one by one).
        let (new, repeated): (Vec<usize>, Vec<usize>) =
            round.iter().partition(|&&index| inserted.remove(&items[index].1.contact_id));
        for index in repeated {
            results[index] = Some(repeated_outcome(tx, items[index].1).await?);
        }

        let mut standings = standings(tx, &new.iter().map(|&index| items[index].1).collect::<Vec<_>>()).await?;
        let unopened: Vec<usize> = new
            .iter()
            .copied()
            .filter(|&index| standings.get(&items[index].1.caller_ref).is_none_or(|(open, _)| open.is_none()))
            .collect();
        let mut incidents =
            incidents(tx, &unopened.iter().map(|&index| (items[index].0, items[index].1)).collect::<Vec<_>>()).await?;
        let mut evidence: Vec<(usize, EvidenceItem<'_>)> = Vec::new();
        for index in new {
            let (policy, record, clock_ms) = items[index];
            let standing = standings.remove(&record.caller_ref).unwrap_or_default();
            let read = match &standing.0 {
                Some(case) if policy.rule(case.rung).counts.contains(&record.disposition) => {
                    // Evidence for the open case: added for the whole round below.
                    let (case, _) = standing;
                    evidence.push((index, (record, case.expect("matched an open case"))));
                    continue;
                }
                Some(_) => None,
                None => Some(incidents.remove(&record.caller_ref).unwrap_or_default()),
            };
            results[index] = Some(ladder_steps(tx, key, policy, record, clock_ms, standing, read).await?);
        }
        let (indices, evidence): (Vec<usize>, Vec<EvidenceItem<'_>>) = evidence.into_iter().unzip();
        for (index, added) in indices.into_iter().zip(add_evidence(tx, key, &evidence).await?) {
            results[index] = Some(added);
        }
    }
    Ok(results.into_iter().map(|result| result.expect("every outcome is in one round")).collect())
}

/// The batch's indices in rounds: round `n` holds the `n`-th outcome (from 0) of every caller with more than `n`,
/// in queue order.
fn rounds(items: &[BatchItem<'_>]) -> Vec<Vec<usize>> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (index, (_, record, _)) in items.iter().enumerate() {
        let round = seen.entry(record.caller_ref.as_str()).or_insert(0);
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push(index);
        *round += 1;
    }
    rounds
}

/// `INSERT` of `rows` contacts that keeps the ones not recorded yet and returns their ids.
fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=12).map(|column| format!("${}", row * 12 + column)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO contacts (contact_id, caller_key, at_ms, channel, region, disposition, operator_id, likelihood, \
         model_version, answered, talk_s, recorded_ms) VALUES {} ON CONFLICT (contact_id) DO NOTHING \
         RETURNING contact_id",
        values.join(", ")
    )
}

/// `$first, …` for `count` parameters.
pub(super) fn params(first: usize, count: usize) -> String {
    (first..first + count).map(|param| format!("${param}")).collect::<Vec<_>>().join(", ")
}

/// The standing of every record's caller (each caller once), by caller key; a caller without open case or
/// delivered rung is absent.
async fn standings(
    tx: &mut Transaction<'_, Any>,
    records: &[&ContactRecord],
) -> Result<HashMap<String, Standing>, CaseError> {
    let mut standings: HashMap<String, Standing> = HashMap::new();
    for chunk in records.chunks(CHUNK) {
        let sql = format!(
            "SELECT {STANDING_COLUMNS} FROM cases WHERE caller_key IN ({}) AND {STANDING_FILTER} {STANDING_ORDER}",
            params(1, chunk.len())
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for record in chunk {
            query = query.bind(&record.caller_ref);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let caller: String = row.try_get("caller_key")?;
            add_standing(standings.entry(caller).or_default(), &row)?;
        }
    }
    Ok(standings)
}

/// The incidents of every record's caller (each caller once) within its policy's lookback before the record, by
/// caller key; a caller without any is absent.
async fn incidents(
    tx: &mut Transaction<'_, Any>,
    records: &[(&LadderPolicy, &ContactRecord)],
) -> Result<HashMap<String, Incidents>, CaseError> {
    let mut read: HashMap<String, Incidents> = HashMap::new();
    for chunk in records.chunks(CHUNK) {
        let from: HashMap<&str, i64> = chunk
            .iter()
            .map(|(policy, record)| (record.caller_ref.as_str(), record.at_ms - policy.lookback_ms()))
            .collect();
        let Some(earliest) = from.values().copied().min() else { continue };
        let sql = format!(
            "{INCIDENT_QUERY} WHERE c.caller_key IN ({}) AND c.at_ms > $1 {INCIDENT_ORDER}",
            params(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).persistent(false).bind(earliest);
        for (_, record) in chunk {
            query = query.bind(&record.caller_ref);
        }
        let rows = query.fetch_all(&mut **tx).await?;
        let callers: Vec<&str> = from.keys().copied().collect();
        let spent = spent_contacts(tx, &callers).await?;
        for row in rows {
            let caller: String = row.try_get("caller_key")?;
            let at_ms: i64 = row.try_get("at_ms")?;
            // Every caller's own lookback: the statement read from the earliest of the chunk's.
            if from.get(caller.as_str()).is_some_and(|&from_ms| at_ms > from_ms) {
                push_incident(read.entry(caller).or_default(), &row, &spent)?;
            }
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(caller: &str) -> ContactRecord {
        ContactRecord {
            contact_id: String::new(),
            caller_ref: caller.to_owned(),
            caller_number: String::new(),
            at_ms: 0,
            channel: saring_models::Channel::Voice,
            region: String::new(),
            disposition: saring_models::Disposition::Prank,
            operator_id: None,
            likelihood: None,
            model_version: String::new(),
            answered: true,
            talk_s: 0.0,
        }
    }

    #[test]
    fn rounds_keep_each_callers_order_and_put_every_outcome_in_one() {
        let policy = LadderPolicy::default_policy();
        let records: Vec<ContactRecord> = ["a", "b", "a", "c", "a", "b"].iter().map(|caller| record(caller)).collect();
        let items: Vec<BatchItem<'_>> = records.iter().map(|record| (&policy, record, 0)).collect();
        assert_eq!(rounds(&items), vec![vec![0, 1, 3], vec![2, 5], vec![4]]);
        assert!(rounds(&[]).is_empty());
    }

    #[test]
    fn the_insert_numbers_twelve_parameters_a_row() {
        let sql = insert_sql(2);
        assert!(sql.contains("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12), ($13, "), "{sql}");
        assert!(sql.ends_with("($13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24) ON CONFLICT (contact_id) DO NOTHING RETURNING contact_id"), "{sql}");
        assert_eq!(params(2, 3), "$2, $3, $4");
    }
}
