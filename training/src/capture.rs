//! Reading the service's capture files (`saring serve --capture DIR`) into training rows: each scored contact
//! joined with its outcome, with the feature vector exactly as the service scored it (nothing is re-extracted, so
//! there is no training/serving skew), for `saring-train fit --capture` and `evaluate --capture`.
//!
//! The files are Parquet, `capture-YYYY-MM-DD-REPLICA-OPENEDMS.parquet`, one schema for both kinds of record
//! (column `kind`: `contact` or `outcome`; see `service/src/capture.rs` for every column). Spools not yet converted
//! (`.spool`) and files being written (`.parquet.partial`) are not read. A contact scored more than once (a retried ScoreContact) keeps its first
//! score; a contact with more than one outcome (recorded through two replicas) keeps the latest one, and the earlier
//! are counted as superseded. Contacts scored on another feature schema, or whose score failed before features
//! were computed, are counted and left out.
//!
//! The naive rule comes in both forms `fit` reports: the recent share the service computed at scoring time (column
//! `naive_recent`) and the all-time share from exact counts, counted here over the captured outcomes of the same
//! number reference recorded before the contact was scored.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use arrow_array::{
    Array, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use saring_models::features::{feature_index, schema_fingerprint, FeatureVector, FEATURES, FEATURE_COUNT};
use saring_models::naive::all_time_misuse_share;
use saring_models::{Channel, Disposition};
use sha2::{Digest, Sha256};

use crate::replay::{Replay, ReplayRow};

/// What reading a capture produced and left out.
#[derive(Debug, Default)]
pub struct CaptureRead {
    /// Rows in arrival order, as a replay of the same traffic gives them.
    pub replay: Replay,
    /// The files read, in the order read.
    pub files: Vec<PathBuf>,
    /// SHA-256 over the files' names and bytes, in that order.
    pub fingerprint: String,
    /// Contact records read.
    pub contact_records: usize,
    /// Outcome records read.
    pub outcome_records: usize,
    /// Repeated scores of a contact id (the first is kept).
    pub repeated_scores: usize,
    /// Outcomes replaced by a later outcome for the same contact id.
    pub superseded_outcomes: usize,
    /// Contacts without features: the model failed before they were computed.
    pub without_features: usize,
    /// Contacts scored on another feature schema than this build's.
    pub other_schema: usize,
}

impl CaptureRead {
    /// One line on what was read and left out.
    pub fn summary(&self) -> String {
        format!(
            "read {} capture files: {} contacts, {} outcomes ({} labelled contacts); left out: {} outcomes without a \
             captured contact, {} superseded outcomes, {} repeated scores, {} contacts without features, {} on \
             another feature schema",
            self.files.len(),
            self.contact_records,
            self.outcome_records,
            self.replay.rows.iter().filter(|row| row.label().is_some()).count(),
            self.replay.orphan_outcomes,
            self.superseded_outcomes,
            self.repeated_scores,
            self.without_features,
            self.other_schema
        )
    }
}

/// The complete capture files (`capture-….parquet`) in `dirs`, sorted by name within each directory.
pub fn capture_files(dirs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in dirs {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read capture directory {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("capture-") && name.ends_with(".parquet"))
            })
            .collect();
        found.sort();
        files.extend(found);
    }
    if files.is_empty() {
        let dirs: Vec<String> = dirs.iter().map(|dir| dir.display().to_string()).collect();
        bail!("no capture files (capture-*.parquet) in {}", dirs.join(", "));
    }
    Ok(files)
}

struct ContactEntry {
    order: (i64, usize, u64),
    row: ReplayRow,
    caller_ref: Option<String>,
}

struct OutcomeEntry {
    order: (i64, usize, u64),
    disposition: Disposition,
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str, file: &Path) -> anyhow::Result<&'a T> {
    batch
        .column_by_name(name)
        .with_context(|| format!("{}: no column {name:?}: not a saring capture file", file.display()))?
        .as_any()
        .downcast_ref::<T>()
        .with_context(|| format!("{}: column {name:?} has an unexpected type", file.display()))
}

/// Reads every capture file in `dirs` and joins contacts with their outcomes.
pub fn read_capture(dirs: &[PathBuf]) -> anyhow::Result<CaptureRead> {
    let files = capture_files(dirs)?;
    let mut read = CaptureRead::default();
    let mut hasher = Sha256::new();
    let mut contacts: HashMap<String, ContactEntry> = HashMap::new();
    let mut outcomes: HashMap<String, OutcomeEntry> = HashMap::new();
    let fingerprint = schema_fingerprint();
    for (file_index, path) in files.iter().enumerate() {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        hasher.update(path.file_name().map(|name| name.as_encoded_bytes()).unwrap_or_default());
        hasher.update(&bytes);
        drop(bytes);
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("{}: not a readable Parquet file", path.display()))?
            .build()?;
        for batch in reader {
            let batch = batch.with_context(|| format!("{}: unreadable row group", path.display()))?;
            read_batch(&batch, path, file_index, &fingerprint, &mut read, &mut contacts, &mut outcomes)?;
        }
    }
    read.fingerprint = hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
    read.files = files;
    join(read, contacts, outcomes)
}

#[allow(clippy::too_many_arguments)]
fn read_batch(
    batch: &RecordBatch,
    path: &Path,
    file_index: usize,
    fingerprint: &str,
    read: &mut CaptureRead,
    contacts: &mut HashMap<String, ContactEntry>,
    outcomes: &mut HashMap<String, OutcomeEntry>,
) -> anyhow::Result<()> {
    let kind = column::<StringArray>(batch, "kind", path)?;
    let seq = column::<UInt64Array>(batch, "seq", path)?;
    let captured_at = column::<TimestampMillisecondArray>(batch, "captured_at", path)?;
    let contact_id = column::<StringArray>(batch, "contact_id", path)?;
    let caller_ref = column::<StringArray>(batch, "caller_ref", path)?;
    let received_at = column::<TimestampMillisecondArray>(batch, "received_at", path)?;
    let channel = column::<StringArray>(batch, "channel", path)?;
    let region = column::<StringArray>(batch, "region", path)?;
    let feature_schema = column::<StringArray>(batch, "feature_schema", path)?;
    let naive_recent = column::<Float64Array>(batch, "naive_recent", path)?;
    let disposition = column::<StringArray>(batch, "disposition", path)?;
    let answered = column::<BooleanArray>(batch, "answered", path)?;
    let features: Vec<&Float64Array> = FEATURES
        .iter()
        .map(|feature| column::<Float64Array>(batch, &format!("f_{}", feature.name), path))
        .collect::<anyhow::Result<_>>()?;
    let text = |array: &StringArray, row: usize| (!array.is_null(row)).then(|| array.value(row).to_owned());
    for row in 0..batch.num_rows() {
        let order = (captured_at.value(row), file_index, seq.value(row));
        let id = contact_id.value(row).to_owned();
        match kind.value(row) {
            "contact" => {
                read.contact_records += 1;
                if feature_schema.is_null(row) || features.iter().any(|column| column.is_null(row)) {
                    read.without_features += 1;
                    continue;
                }
                if feature_schema.value(row) != fingerprint {
                    read.other_schema += 1;
                    continue;
                }
                let mut vector: FeatureVector = [0.0; FEATURE_COUNT];
                for (slot, column) in vector.iter_mut().zip(&features) {
                    *slot = column.value(row);
                }
                let channel = Channel::from_name(channel.value(row))
                    .with_context(|| format!("{}: unknown channel {:?}", path.display(), channel.value(row)))?;
                let caller_known = feature_index("caller_known").expect("the schema has caller_known");
                let entry = ContactEntry {
                    order,
                    caller_ref: text(caller_ref, row),
                    row: ReplayRow {
                        contact_id: id.clone(),
                        at_ms: received_at.value(row),
                        region: region.value(row).to_owned(),
                        channel,
                        features: vector,
                        disposition: None,
                        first_time_caller: vector[caller_known] == 0.0,
                        naive_score: 0.0,
                        naive_recent: if naive_recent.is_null(row) { 0.0 } else { naive_recent.value(row) },
                    },
                };
                match contacts.get(&id) {
                    Some(kept) if kept.order <= order => read.repeated_scores += 1,
                    Some(_) => {
                        read.repeated_scores += 1;
                        contacts.insert(id, entry);
                    }
                    None => {
                        contacts.insert(id, entry);
                    }
                }
            }
            "outcome" => {
                read.outcome_records += 1;
                let name = disposition.value(row);
                let parsed = Disposition::from_name(name)
                    .with_context(|| format!("{}: unknown disposition {name:?}", path.display()))?;
                if answered.is_null(row) {
                    bail!("{}: an outcome without `answered`", path.display());
                }
                let entry = OutcomeEntry { order, disposition: parsed };
                match outcomes.get(&id) {
                    Some(kept) if kept.order >= order => read.superseded_outcomes += 1,
                    Some(_) => {
                        read.superseded_outcomes += 1;
                        outcomes.insert(id, entry);
                    }
                    None => {
                        outcomes.insert(id, entry);
                    }
                }
            }
            other => bail!("{}: unknown record kind {other:?}", path.display()),
        }
    }
    Ok(())
}

/// Joins outcomes to contacts, counts the all-time naive rule, and orders rows by arrival.
fn join(
    mut read: CaptureRead,
    mut contacts: HashMap<String, ContactEntry>,
    outcomes: HashMap<String, OutcomeEntry>,
) -> anyhow::Result<CaptureRead> {
    // Every event in the order the service saw it: scores, and outcomes taking effect.
    enum Step<'a> {
        Score(&'a str),
        Outcome(&'a str, Disposition),
    }
    for (id, outcome) in &outcomes {
        match contacts.get_mut(id) {
            Some(contact) => contact.row.disposition = Some(outcome.disposition),
            None => read.replay.orphan_outcomes += 1,
        }
    }
    let mut steps: Vec<((i64, usize, u64), Step<'_>)> = contacts
        .iter()
        .map(|(id, contact)| (contact.order, Step::Score(id.as_str())))
        .chain(outcomes.iter().map(|(id, outcome)| (outcome.order, Step::Outcome(id.as_str(), outcome.disposition))))
        .collect();
    steps.sort_by_key(|(order, _)| *order);
    // Exact all-time counts per number reference: labelled and misuse outcomes recorded before each score.
    let mut counts: HashMap<&str, (u32, u32)> = HashMap::new();
    let mut naive: HashMap<String, f64> = HashMap::new();
    for (_, step) in &steps {
        match step {
            Step::Score(id) => {
                let share = contacts[*id]
                    .caller_ref
                    .as_deref()
                    .and_then(|caller| counts.get(caller))
                    .map_or(0.0, |(labelled, misuse)| all_time_misuse_share(*labelled, *misuse));
                naive.insert((*id).to_owned(), share);
            }
            Step::Outcome(id, disposition) => {
                let Some(caller) = contacts.get(*id).and_then(|contact| contact.caller_ref.as_deref()) else {
                    continue;
                };
                if disposition.is_labelled() {
                    let entry = counts.entry(caller).or_default();
                    entry.0 += 1;
                    entry.1 += u32::from(disposition.is_misuse());
                }
            }
        }
    }
    drop(steps);
    drop(counts);
    let mut entries: Vec<ContactEntry> = contacts.into_values().collect();
    entries.sort_by_key(|entry| (entry.row.at_ms, entry.order));
    read.replay.rows = entries
        .into_iter()
        .map(|mut entry| {
            entry.row.naive_score = naive.get(&entry.row.contact_id).copied().unwrap_or(0.0);
            entry.row
        })
        .collect();
    Ok(read)
}

/// The rows `fit` and `evaluate` train or score on, from an event log (replayed) or from capture directories, with
/// a fingerprint of the input and a description of it for the model card.
pub fn training_rows(
    events: Option<&Path>,
    capture: &[PathBuf],
    strict: bool,
) -> anyhow::Result<(Replay, String, String)> {
    match (events, capture.is_empty()) {
        (Some(events), true) => {
            let bytes = std::fs::read(events)
                .with_context(|| crate::exit::Input(format!("cannot read {}", events.display())))?;
            let fingerprint = Sha256::digest(&bytes).iter().map(|byte| format!("{byte:02x}")).collect();
            drop(bytes);
            let log = crate::events::read_event_file(events, strict)?;
            Ok((crate::replay::replay(&log), fingerprint, events.display().to_string()))
        }
        (None, false) => {
            let read = read_capture(capture)?;
            eprintln!("{}", read.summary());
            let dirs: Vec<String> = capture.iter().map(|dir| dir.display().to_string()).collect();
            let source = format!("capture {} ({} files)", dirs.join(","), read.files.len());
            Ok((read.replay, read.fingerprint, source))
        }
        (Some(_), false) => bail!("give either --events or --capture, not both"),
        (None, true) => bail!("give --events FILE or --capture DIR[,DIR...]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("capture-2026-03-01-r1-1.parquet.partial"), b"incomplete").unwrap();
        let error = read_capture(&[dir.path().to_owned()]).unwrap_err().to_string();
        assert!(error.contains("no capture files"), "{error}");
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
    }

    #[test]
    fn a_file_that_is_not_parquet_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture-2026-03-01-r1-1.parquet");
        std::fs::write(&path, b"not parquet at all").unwrap();
        let error = format!("{:#}", read_capture(&[dir.path().to_owned()]).unwrap_err());
        assert!(error.contains("capture-2026-03-01-r1-1.parquet"), "{error}");
    }

    #[test]
    fn events_and_capture_are_exclusive() {
        let dir = PathBuf::from("somewhere");
        assert!(training_rows(Some(Path::new("log.jsonl")), std::slice::from_ref(&dir), false).is_err());
        assert!(training_rows(None, &[], false).is_err());
    }
}
