//! The digest of a case's rows: every column of its `cases` row (number, state, rung, version, decisions,
//! deliveries, reverts), its `case_incidents` rows and the `contacts` rows they name (the dispositions that ground
//! it). Every keyed audit entry that changes a case carries the digest of its rows after the change, so
//! `saring audit verify` can tell a case whose rows were changed outside saring.
//!
//! Rows are read column by column into JSON values and sorted in Rust (not by the database's collation), so SQLite
//! and PostgreSQL give the same digest for the same rows.

use std::collections::HashMap;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::CaseError;

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Real,
}

const CASE: &[(&str, Kind)] = &[
    ("case_id", Kind::Text),
    ("caller_key", Kind::Text),
    ("caller_number", Kind::Text),
    ("rung", Kind::Text),
    ("state", Kind::Text),
    ("version", Kind::Int),
    ("region", Kind::Text),
    ("approval", Kind::Text),
    ("rule", Kind::Text),
    ("policy_version", Kind::Text),
    ("model_version", Kind::Text),
    ("timeline_from_ms", Kind::Int),
    ("created_ms", Kind::Int),
    ("updated_ms", Kind::Int),
    ("decided_by", Kind::Text),
    ("decided_ms", Kind::Int),
    ("decision_reason", Kind::Text),
    ("actioned_by", Kind::Text),
    ("delivered_ms", Kind::Int),
    ("action_note", Kind::Text),
    ("reverted_by", Kind::Text),
    ("reverted_ms", Kind::Int),
    ("revert_reason", Kind::Text),
];

/// Columns added after the first keyed digests (migration `20261202000002_delivery`): covered once any of them is
/// set, so a case audited before they existed keeps its digest, and setting or clearing one outside saring changes
/// it.
const CASE_LATER: &[(&str, Kind)] =
    &[("claimed_by", Kind::Text), ("claimed_ms", Kind::Int), ("delivery_channel", Kind::Text)];

/// An incident: its `case_incidents` row and the contact it names (NULLs when the contact row is missing).
const INCIDENT: &[(&str, Kind)] = &[
    ("case_id", Kind::Text),
    ("contact_id", Kind::Text),
    ("contact_caller_key", Kind::Text),
    ("at_ms", Kind::Int),
    ("channel", Kind::Text),
    ("region", Kind::Text),
    ("disposition", Kind::Text),
    ("operator_id", Kind::Text),
    ("likelihood", Kind::Real),
    ("model_version", Kind::Text),
    ("answered", Kind::Int),
    ("talk_s", Kind::Real),
    ("recorded_ms", Kind::Int),
];

const INCIDENT_SELECT: &str = "SELECT ci.case_id, ci.contact_id, co.caller_key AS contact_caller_key, co.at_ms, \
     co.channel, co.region, co.disposition, co.operator_id, co.likelihood, co.model_version, co.answered, co.talk_s, \
     co.recorded_ms FROM case_incidents ci LEFT JOIN contacts co ON co.contact_id = ci.contact_id";

fn columns(columns: &[(&str, Kind)]) -> String {
    columns.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// The `cases` columns a digest reads: the first set, then the later ones.
fn case_columns() -> String {
    format!("{}, {}", columns(CASE), columns(CASE_LATER))
}

/// A case row's digested values: every first-set column, then the later columns when any of them is set.
fn case_values(row: &AnyRow) -> Result<Vec<Value>, CaseError> {
    let mut case = values(row, CASE)?;
    let later = values(row, CASE_LATER)?;
    if later.iter().any(|value| !value.is_null()) {
        case.extend(later);
    }
    Ok(case)
}

fn values(row: &AnyRow, columns: &[(&str, Kind)]) -> Result<Vec<Value>, CaseError> {
    columns
        .iter()
        .map(|&(name, kind)| {
            Ok(match kind {
                Kind::Text => row.try_get::<Option<String>, _>(name)?.map_or(Value::Null, Value::from),
                Kind::Int => row.try_get::<Option<i64>, _>(name)?.map_or(Value::Null, Value::from),
                Kind::Real => row.try_get::<Option<f64>, _>(name)?.map_or(Value::Null, Value::from),
            })
        })
        .collect()
}

fn text(values: &[Value], index: usize) -> String {
    values[index].as_str().unwrap_or_default().to_owned()
}

/// The digest of one case's rows.
fn digest(case: &[Value], mut incidents: Vec<Vec<Value>>) -> String {
    incidents.sort_by_key(|incident| text(incident, 1));
    let content = serde_json::to_string(&(case, incidents)).expect("JSON values serialise");
    let mut hasher = Sha256::new();
    hasher.update(b"saring-case-v1\n");
    hasher.update(content.as_bytes());
    hex::encode(hasher.finalize())
}

/// The digest of `case_id`'s rows as `connection` sees them (inside the transaction that changed them); `None`
/// when the case does not exist.
pub(super) async fn case_digest(connection: &mut AnyConnection, case_id: &str) -> Result<Option<String>, CaseError> {
    let row = sqlx::query(&format!("SELECT {} FROM cases WHERE case_id = $1", case_columns()))
        .bind(case_id)
        .fetch_optional(&mut *connection)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let case = case_values(&row)?;
    let incidents = sqlx::query(&format!("{INCIDENT_SELECT} WHERE ci.case_id = $1"))
        .bind(case_id)
        .fetch_all(&mut *connection)
        .await?
        .iter()
        .map(|row| values(row, INCIDENT))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(digest(&case, incidents)))
}

/// A case's digested rows as read: its `cases` row's values and its incidents'.
#[derive(Debug, Clone)]
pub(super) struct CaseRows {
    case: Vec<Value>,
    incidents: Vec<Vec<Value>>,
}

impl CaseRows {
    /// The digest of these rows, as [`case_digest`] computes it.
    pub(super) fn digest(&self) -> String {
        digest(&self.case, self.incidents.clone())
    }
}

/// The rows of `case_ids`' cases as `connection` sees them (inside the transaction that changes them), by case
/// id, in two statements ([`case_digest`]'s reads for every case at once); a case that does not exist is absent.
pub(super) async fn case_rows(
    connection: &mut AnyConnection,
    case_ids: &[&str],
) -> Result<HashMap<String, CaseRows>, CaseError> {
    if case_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let params = (1..=case_ids.len()).map(|param| format!("${param}")).collect::<Vec<_>>().join(", ");
    let sql = format!("{INCIDENT_SELECT} WHERE ci.case_id IN ({params})");
    let mut query = sqlx::query(&sql).persistent(false);
    for case_id in case_ids {
        query = query.bind(*case_id);
    }
    let mut incidents: HashMap<String, Vec<Vec<Value>>> = HashMap::new();
    for row in query.fetch_all(&mut *connection).await?.iter() {
        let incident = values(row, INCIDENT)?;
        incidents.entry(text(&incident, 0)).or_default().push(incident);
    }
    let sql = format!("SELECT {} FROM cases WHERE case_id IN ({params})", case_columns());
    let mut query = sqlx::query(&sql).persistent(false);
    for case_id in case_ids {
        query = query.bind(*case_id);
    }
    let mut cases = HashMap::with_capacity(case_ids.len());
    for row in query.fetch_all(&mut *connection).await?.iter() {
        let case = case_values(row)?;
        let case_id = text(&case, 0);
        let incidents = incidents.remove(&case_id).unwrap_or_default();
        cases.insert(case_id, CaseRows { case, incidents });
    }
    Ok(cases)
}

/// `cases` read again after each `(case_id, contact_id)`'s contact was added to its case (read before by
/// [`case_rows`], in the same transaction): their `cases` rows and the added incidents, read in two statements
/// however much evidence the cases hold, so the digests after the change cost what the change costs.
pub(super) async fn add_incidents(
    connection: &mut AnyConnection,
    cases: &mut HashMap<String, CaseRows>,
    added: &[(&str, &str)],
) -> Result<(), CaseError> {
    if added.is_empty() {
        return Ok(());
    }
    let params = |first: usize| (first..first + added.len()).map(|param| format!("${param}")).collect::<Vec<_>>();
    let sql = format!("{INCIDENT_SELECT} WHERE ci.contact_id IN ({})", params(1).join(", "));
    let mut query = sqlx::query(&sql).persistent(false);
    for (_, contact_id) in added {
        query = query.bind(*contact_id);
    }
    for row in query.fetch_all(&mut *connection).await?.iter() {
        let incident = values(row, INCIDENT)?;
        let (case_id, contact_id) = (text(&incident, 0), text(&incident, 1));
        if added.contains(&(case_id.as_str(), contact_id.as_str())) {
            if let Some(rows) = cases.get_mut(&case_id) {
                rows.incidents.push(incident);
            }
        }
    }
    let sql = format!("SELECT {} FROM cases WHERE case_id IN ({})", case_columns(), params(1).join(", "));
    let mut query = sqlx::query(&sql).persistent(false);
    for (case_id, _) in added {
        query = query.bind(*case_id);
    }
    for row in query.fetch_all(&mut *connection).await?.iter() {
        let case = case_values(row)?;
        if let Some(rows) = cases.get_mut(&text(&case, 0)) {
            rows.case = case;
        }
    }
    Ok(())
}

/// The digest of every case's rows, by case id.
pub(super) async fn all_case_digests(pool: &sqlx::AnyPool) -> Result<HashMap<String, String>, CaseError> {
    let mut incidents: HashMap<String, Vec<Vec<Value>>> = HashMap::new();
    for row in sqlx::query(INCIDENT_SELECT).fetch_all(pool).await?.iter() {
        let incident = values(row, INCIDENT)?;
        incidents.entry(text(&incident, 0)).or_default().push(incident);
    }
    let mut digests = HashMap::new();
    for row in sqlx::query(&format!("SELECT {} FROM cases", case_columns())).fetch_all(pool).await?.iter() {
        let case = case_values(row)?;
        let case_id = text(&case, 0);
        let digest = digest(&case, incidents.remove(&case_id).unwrap_or_default());
        digests.insert(case_id, digest);
    }
    Ok(digests)
}
