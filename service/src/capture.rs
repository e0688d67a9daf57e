//! Capture of pseudonymised training records (`saring serve --capture DIR`, `[capture]`): every scored contact
//! and every recorded outcome, appended to Parquet files a data scientist opens directly and `saring-train fit
//! --capture` trains on.
//!
//! What a record holds: the contact id, the HMAC references of the number and the device (the same keys the history
//! store uses, [`crate::privacy`]; never a raw number or device id), times, channel, region; for a scored contact the
//! feature vector exactly as it was scored with the feature-schema fingerprint, the model version, likelihood, band,
//! degraded reasons and the naive rule's value at scoring time; for an outcome the disposition, whether it was
//! answered, ring and talk time and the incident category.
//!
//! It never blocks ScoreContact and costs it little: the scoring path appends a record's bytes (a length-prefixed
//! binary form, [`spool`]) to a shared buffer under a lock held for that copy only; a record that finds the buffer
//! full (`queue_capacity` records) is dropped and counted (`saring_capture_dropped_total`). A writer thread takes the
//! buffer every 20 ms and appends it to this replica's spool, `capture-YYYY-MM-DD-REPLICA-OPENEDMS.spool`. Every
//! `rotate_minutes` (60), at the end of each UTC day and on shutdown the spool is completed and a converter thread
//! writes it as `….parquet` (`….parquet.partial` while written; footer, fsync, rename, directory fsync, then the spool
//! is deleted), so a reader only ever sees complete files and the Parquet encoding is paid once per file, at the
//! lowest priority, not per call. A crash loses only what the writer had not yet appended (about 20 ms); the next start of the
//! same replica converts the spools it left, keeping every whole record. Files older than `retention_days` are
//! deleted at start-up and at every rotation. A write that fails (a full disk) counts the records it held as failed
//! (`saring_capture_write_errors_total`); a conversion that fails keeps the spool for the next start: nothing is
//! reported written that is not.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_array::builder::{BooleanBuilder, Float64Builder, StringBuilder, TimestampMillisecondBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parking_lot::Mutex;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use prometheus_client::metrics::counter::Counter;
use saring_models::features::{schema_fingerprint, FEATURES, FEATURE_COUNT};
use saring_models::FeatureVector;
use serde::{Deserialize, Serialize};

use crate::privacy::HistoryKey;
use crate::screening::{Assessment, Contact, OutcomeReport};

/// `[capture]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSettings {
    /// Directory of the capture files; unset: nothing is captured.
    pub dir: Option<PathBuf>,
    /// Days a capture file is kept (by the UTC day in its name).
    pub retention_days: u64,
    /// Records the buffer in front of the writer holds; a record that finds it full is dropped and counted.
    pub queue_capacity: usize,
    /// This replica's name in file names (letters, digits, `-`, `_`); unset: the host name.
    pub replica: Option<String>,
    /// Minutes after which the open spool is completed and converted to Parquet and a new one started (and at
    /// every UTC day's end): how fresh the Parquet files are.
    pub rotate_minutes: u64,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings { dir: None, retention_days: 90, queue_capacity: 65_536, replica: None, rotate_minutes: 60 }
    }
}

impl CaptureSettings {
    /// Checks the values; names the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.retention_days == 0 || self.retention_days > 3650 {
            return Err(format!("capture.retention_days: {} must be between 1 and 3650", self.retention_days));
        }
        if self.rotate_minutes == 0 || self.rotate_minutes > 1440 {
            return Err(format!("capture.rotate_minutes: {} must be between 1 and 1440", self.rotate_minutes));
        }
        if self.queue_capacity == 0 || self.queue_capacity > 10_000_000 {
            return Err(format!("capture.queue_capacity: {} must be between 1 and 10000000", self.queue_capacity));
        }
        if let Some(replica) = &self.replica {
            if !valid_replica(replica) {
                return Err(format!(
                    "capture.replica: {replica:?} must be 1-64 letters, digits, '-' or '_' (it names files)"
                ));
            }
        }
        if self.dir.as_ref().is_some_and(|dir| dir.as_os_str().is_empty()) {
            return Err("capture.dir: must not be empty (leave it unset to capture nothing)".into());
        }
        Ok(())
    }

    /// The replica name: the configured one, else the host name made safe for a file name.
    pub fn replica_name(&self) -> String {
        if let Some(replica) = &self.replica {
            return replica.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .unwrap_or_default();
        let safe: String = host
            .trim()
            .chars()
            .map(|character| if character.is_ascii_alphanumeric() || character == '-' { character } else { '_' })
            .take(64)
            .collect();
        if safe.is_empty() {
            "replica".to_owned()
        } else {
            safe
        }
    }
}

fn valid_replica(replica: &str) -> bool {
    !replica.is_empty()
        && replica.len() <= 64
        && replica.chars().all(|character| character.is_ascii_alphanumeric() || matches!(character, '-' | '_'))
}

/// The capture counters, registered with the service's metrics.
#[derive(Debug, Clone, Default)]
pub struct CaptureCounters {
    /// Records written to a file that was closed and kept (counted when the file is closed).
    pub written: Counter,
    /// Records the queue could not take (full, or the writer stopped).
    pub dropped: Counter,
    /// Records lost because a write, close or fsync failed.
    pub write_errors: Counter,
}

/// Column names of the capture files (`saring-train` reads them by name). Feature columns are `f_` + the feature's
/// name, in schema order, after these.
pub mod columns {
    /// `contact` or `outcome`.
    pub const KIND: &str = "kind";
    /// Order of the record in its file.
    pub const SEQ: &str = "seq";
    /// When the record was captured (wall clock, UTC).
    pub const CAPTURED_AT: &str = "captured_at";
    /// The contact id.
    pub const CONTACT_ID: &str = "contact_id";
    /// HMAC reference of the number (hex), null when withheld.
    pub const CALLER_REF: &str = "caller_ref";
    /// HMAC reference of the device id (hex), null without one.
    pub const DEVICE_REF: &str = "device_ref";
    /// When the contact arrived (UTC).
    pub const RECEIVED_AT: &str = "received_at";
    /// Channel name.
    pub const CHANNEL: &str = "channel";
    /// Region code.
    pub const REGION: &str = "region";
    /// Feature-schema fingerprint of the feature columns (contacts).
    pub const FEATURE_SCHEMA: &str = "feature_schema";
    /// The model version that scored the contact.
    pub const MODEL_VERSION: &str = "model_version";
    /// The likelihood given (null when the model failed).
    pub const LIKELIHOOD: &str = "likelihood";
    /// The band given (null when the model failed).
    pub const BAND: &str = "band";
    /// Degraded reasons, comma-separated ("" when none).
    pub const DEGRADED_REASONS: &str = "degraded_reasons";
    /// The naive rule at scoring time: the caller's recent (30-day decayed) misuse share.
    pub const NAIVE_RECENT: &str = "naive_recent";
    /// The disposition (outcomes).
    pub const DISPOSITION: &str = "disposition";
    /// Whether an operator answered (outcomes).
    pub const ANSWERED: &str = "answered";
    /// Seconds ringing (outcomes).
    pub const RING_S: &str = "ring_s";
    /// Seconds of talk (outcomes).
    pub const TALK_S: &str = "talk_s";
    /// Incident category (outcomes).
    pub const CATEGORY: &str = "category";
    /// Prefix of the feature columns.
    pub const FEATURE_PREFIX: &str = "f_";
}

/// The Arrow schema of every capture file.
pub fn capture_schema() -> SchemaRef {
    use columns::*;
    let utc = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let mut fields = vec![
        Field::new(KIND, DataType::Utf8, false),
        Field::new(SEQ, DataType::UInt64, false),
        Field::new(CAPTURED_AT, utc(), false),
        Field::new(CONTACT_ID, DataType::Utf8, false),
        Field::new(CALLER_REF, DataType::Utf8, true),
        Field::new(DEVICE_REF, DataType::Utf8, true),
        Field::new(RECEIVED_AT, utc(), false),
        Field::new(CHANNEL, DataType::Utf8, false),
        Field::new(REGION, DataType::Utf8, false),
        Field::new(FEATURE_SCHEMA, DataType::Utf8, true),
        Field::new(MODEL_VERSION, DataType::Utf8, true),
        Field::new(LIKELIHOOD, DataType::Float64, true),
        Field::new(BAND, DataType::Utf8, true),
        Field::new(DEGRADED_REASONS, DataType::Utf8, true),
        Field::new(NAIVE_RECENT, DataType::Float64, true),
        Field::new(DISPOSITION, DataType::Utf8, true),
        Field::new(ANSWERED, DataType::Boolean, true),
        Field::new(RING_S, DataType::Float64, true),
        Field::new(TALK_S, DataType::Float64, true),
        Field::new(CATEGORY, DataType::Utf8, true),
    ];
    fields.extend(
        FEATURES.iter().map(|feature| Field::new(format!("{FEATURE_PREFIX}{}", feature.name), DataType::Float64, true)),
    );
    Arc::new(Schema::new(fields))
}

/// What every record says about its contact: id, references, arrival, channel and region. Borrowed, so that the
/// scoring path copies it straight into the queue's bytes without a heap allocation of its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapturedContact<'a> {
    /// The contact id.
    pub contact_id: &'a str,
    /// History key (HMAC) of the number; written as hex, null when withheld.
    pub caller_ref: Option<HistoryKey>,
    /// History key (HMAC) of the device id; written as hex, null without one.
    pub device_ref: Option<HistoryKey>,
    /// Arrival, Unix ms.
    pub received_at_ms: i64,
    /// Channel name.
    pub channel: &'a str,
    /// Region code.
    pub region: &'a str,
}

/// Degraded reasons: as the screener holds them, or as read back from a spool (joined with `,`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reasons<'a> {
    /// The reasons, one by one.
    List(&'a [&'static str]),
    /// The reasons joined with `,` (the column's form).
    Joined(&'a str),
}

/// A scored contact as captured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContactCapture<'a> {
    /// The contact.
    pub contact: CapturedContact<'a>,
    /// The features as scored; `None` when the model failed before they were computed.
    pub features: Option<FeatureVector>,
    /// The champion's version.
    pub model_version: &'a str,
    /// Likelihood and band, `None` when the model failed.
    pub score: Option<(f64, &'a str)>,
    /// Degraded reasons.
    pub degraded_reasons: Reasons<'a>,
    /// The naive rule on the history the score saw.
    pub naive_recent: f64,
}

/// A recorded outcome as captured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutcomeCapture<'a> {
    /// The contact the outcome is for.
    pub contact: CapturedContact<'a>,
    /// Disposition name.
    pub disposition: &'a str,
    /// Whether an operator answered.
    pub answered: bool,
    /// Seconds ringing.
    pub ring_s: f64,
    /// Seconds of talk.
    pub talk_s: f64,
    /// Incident category.
    pub category: Option<&'a str>,
}

impl<'a> CapturedContact<'a> {
    fn of(contact: &'a Contact, caller_ref: Option<HistoryKey>, device_ref: Option<HistoryKey>) -> Self {
        CapturedContact {
            contact_id: &contact.contact_id,
            caller_ref,
            device_ref,
            received_at_ms: contact.received_at_ms,
            channel: contact.channel.as_str(),
            region: &contact.region,
        }
    }
}

/// One captured record with the wall-clock time (Unix ms) it was captured.
// A contact's features make it ~470 bytes, an outcome's record far less: records live on the stack while they are
// encoded, or a batch of them while a spool is converted, so boxing the large one would only add an allocation per
// scored contact.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Record<'a> {
    /// A scored contact.
    Contact(ContactCapture<'a>, i64),
    /// A recorded outcome.
    Outcome(OutcomeCapture<'a>, i64),
}

/// The spool's encoding of records: what the scoring path writes (a few hundred bytes copied, no allocation of its
/// own) and the converter reads back. A spool file is [`SPOOL_MAGIC`], then records, each a little-endian `u32`
/// length and that many bytes; a crash can cut the last one short, and reading stops there.
mod spool {
    use super::{CapturedContact, ContactCapture, OutcomeCapture, Reasons, Record};
    use crate::privacy::HistoryKey;
    use saring_models::features::FEATURE_COUNT;

    /// The first bytes of a spool file (format 1).
    pub const SPOOL_MAGIC: &[u8; 8] = b"SRNGSPL1";

    const CONTACT: u8 = 1;
    const OUTCOME: u8 = 2;
    const HAS_CALLER: u8 = 1;
    const HAS_DEVICE: u8 = 2;
    const HAS_FEATURES: u8 = 4;
    const HAS_SCORE: u8 = 8;
    const HAS_CATEGORY: u8 = 16;
    const ANSWERED: u8 = 32;

    fn text(out: &mut Vec<u8>, value: &str) {
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    }

    /// Appends `record` to `out`.
    pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        let (kind, at_ms, contact) = match record {
            Record::Contact(capture, at_ms) => (CONTACT, *at_ms, &capture.contact),
            Record::Outcome(capture, at_ms) => (OUTCOME, *at_ms, &capture.contact),
        };
        let mut flags = 0;
        if contact.caller_ref.is_some() {
            flags |= HAS_CALLER;
        }
        if contact.device_ref.is_some() {
            flags |= HAS_DEVICE;
        }
        match record {
            Record::Contact(capture, _) => {
                if capture.features.is_some() {
                    flags |= HAS_FEATURES;
                }
                if capture.score.is_some() {
                    flags |= HAS_SCORE;
                }
            }
            Record::Outcome(capture, _) => {
                if capture.category.is_some() {
                    flags |= HAS_CATEGORY;
                }
                if capture.answered {
                    flags |= ANSWERED;
                }
            }
        }
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&at_ms.to_le_bytes());
        for key in [contact.caller_ref, contact.device_ref].into_iter().flatten() {
            out.extend_from_slice(&key.0);
        }
        out.extend_from_slice(&contact.received_at_ms.to_le_bytes());
        text(out, contact.contact_id);
        text(out, contact.channel);
        text(out, contact.region);
        match record {
            Record::Contact(capture, _) => {
                text(out, capture.model_version);
                if let Some((likelihood, band)) = capture.score {
                    out.extend_from_slice(&likelihood.to_le_bytes());
                    text(out, band);
                }
                match capture.degraded_reasons {
                    Reasons::Joined(joined) => text(out, joined),
                    Reasons::List(reasons) => {
                        let length =
                            reasons.iter().map(|reason| reason.len()).sum::<usize>() + reasons.len().saturating_sub(1);
                        out.extend_from_slice(&(length as u32).to_le_bytes());
                        for (index, reason) in reasons.iter().enumerate() {
                            if index > 0 {
                                out.push(b',');
                            }
                            out.extend_from_slice(reason.as_bytes());
                        }
                    }
                }
                out.extend_from_slice(&capture.naive_recent.to_le_bytes());
                if let Some(features) = &capture.features {
                    for value in features {
                        out.extend_from_slice(&value.to_le_bytes());
                    }
                }
            }
            Record::Outcome(capture, _) => {
                text(out, capture.disposition);
                out.extend_from_slice(&capture.ring_s.to_le_bytes());
                out.extend_from_slice(&capture.talk_s.to_le_bytes());
                if let Some(category) = capture.category {
                    text(out, category);
                }
            }
        }
        let length = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    }

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn bytes(&mut self, count: usize) -> Option<&'a [u8]> {
            let (taken, rest) = (self.0.get(..count)?, self.0.get(count..)?);
            self.0 = rest;
            Some(taken)
        }
        fn byte(&mut self) -> Option<u8> {
            Some(self.bytes(1)?[0])
        }
        fn eight(&mut self) -> Option<[u8; 8]> {
            self.bytes(8)?.try_into().ok()
        }
        fn int(&mut self) -> Option<i64> {
            Some(i64::from_le_bytes(self.eight()?))
        }
        fn float(&mut self) -> Option<f64> {
            Some(f64::from_le_bytes(self.eight()?))
        }
        fn key(&mut self) -> Option<HistoryKey> {
            Some(HistoryKey(self.bytes(32)?.try_into().ok()?))
        }
        fn text(&mut self) -> Option<&'a str> {
            let length = u32::from_le_bytes(self.bytes(4)?.try_into().ok()?) as usize;
            std::str::from_utf8(self.bytes(length)?).ok()
        }
    }

    /// Reads one record's bytes (without its length prefix); `None` when they are not a whole record.
    pub fn decode(bytes: &[u8]) -> Option<Record<'_>> {
        let mut reader = Reader(bytes);
        let (kind, flags, at_ms) = (reader.byte()?, reader.byte()?, reader.int()?);
        let caller_ref = if flags & HAS_CALLER != 0 { Some(reader.key()?) } else { None };
        let device_ref = if flags & HAS_DEVICE != 0 { Some(reader.key()?) } else { None };
        let received_at_ms = reader.int()?;
        let (contact_id, channel, region) = (reader.text()?, reader.text()?, reader.text()?);
        let contact = CapturedContact { contact_id, caller_ref, device_ref, received_at_ms, channel, region };
        let record = match kind {
            CONTACT => {
                let model_version = reader.text()?;
                let score = if flags & HAS_SCORE != 0 { Some((reader.float()?, reader.text()?)) } else { None };
                let degraded_reasons = Reasons::Joined(reader.text()?);
                let naive_recent = reader.float()?;
                let features = if flags & HAS_FEATURES != 0 {
                    let mut features = [0.0; FEATURE_COUNT];
                    for value in &mut features {
                        *value = reader.float()?;
                    }
                    Some(features)
                } else {
                    None
                };
                Record::Contact(
                    ContactCapture { contact, features, model_version, score, degraded_reasons, naive_recent },
                    at_ms,
                )
            }
            OUTCOME => {
                let disposition = reader.text()?;
                let (ring_s, talk_s) = (reader.float()?, reader.float()?);
                let category = if flags & HAS_CATEGORY != 0 { Some(reader.text()?) } else { None };
                let answered = flags & ANSWERED != 0;
                Record::Outcome(OutcomeCapture { contact, disposition, answered, ring_s, talk_s, category }, at_ms)
            }
            _ => return None,
        };
        reader.0.is_empty().then_some(record)
    }
}

/// Which history references (hex) an erasure removes.
type Names = Box<dyn Fn(&str) -> bool + Send>;

/// What the service asks of the writer besides records.
enum Control {
    /// Write what is queued, complete and convert the open spool, stop.
    Close,
    /// Complete the open spool, then remove every record naming a reference (hex) these pick from every file.
    Erase(Names, tokio::sync::oneshot::Sender<Result<u64, String>>),
}

/// Records the scoring path has encoded and the writer has not taken yet.
struct Pending {
    bytes: Vec<u8>,
    records: usize,
    /// Cleared when the writer closes: later records are dropped and counted.
    open: bool,
}

/// What the screener and the writer share.
struct Queue {
    pending: Mutex<Pending>,
    /// Records `pending` may hold.
    capacity: usize,
    control: SyncSender<Control>,
}

impl Queue {
    fn lock(&self) -> parking_lot::MutexGuard<'_, Pending> {
        self.pending.lock()
    }
}

/// The screener's side of the capture: hands records to the writer without ever waiting. Disabled: does nothing.
#[derive(Clone, Default)]
pub struct Capture {
    queue: Option<Arc<Queue>>,
    counters: CaptureCounters,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Capture").field("enabled", &self.queue.is_some()).finish()
    }
}

fn wall_clock_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl Capture {
    /// Capture turned off.
    pub fn disabled() -> Self {
        Capture::default()
    }

    /// Whether records are captured.
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Captures a scored contact: `features` as scored (`None` when the model failed), on `histories` as read.
    /// `keys` are the caller's and device's history keys the screener computed, `naive_recent` the naive rule on
    /// the history the score saw: nothing is hashed or counted twice on the scoring path.
    pub fn scored(
        &self,
        keys: (Option<&HistoryKey>, Option<&HistoryKey>),
        contact: &Contact,
        naive_recent: f64,
        features: Option<FeatureVector>,
        assessment: &Assessment,
    ) {
        if self.queue.is_none() {
            return;
        }
        let record = ContactCapture {
            contact: CapturedContact::of(contact, keys.0.copied(), keys.1.copied()),
            features,
            model_version: &assessment.model_version,
            score: assessment.band.map(|band| (assessment.likelihood, band.as_str())),
            degraded_reasons: Reasons::List(&assessment.degraded_reasons),
            naive_recent,
        };
        self.offer(&Record::Contact(record, wall_clock_ms()));
    }

    /// Captures an outcome recorded for the first time for `contact`, whose number's and device's history keys the
    /// screener computed to record it (`keys`): nothing is hashed twice.
    pub fn outcome(&self, keys: (Option<HistoryKey>, Option<HistoryKey>), contact: &Contact, report: &OutcomeReport) {
        if self.queue.is_none() {
            return;
        }
        let (caller_ref, device_ref) = keys;
        let record = OutcomeCapture {
            // The contact's id is the report's: RecordOutcome refuses an embedded contact of another id.
            contact: CapturedContact::of(contact, caller_ref, device_ref),
            disposition: report.disposition.as_str(),
            answered: report.answered,
            ring_s: report.ring_s,
            talk_s: report.talk_s,
            category: report.category.as_deref(),
        };
        self.offer(&Record::Outcome(record, wall_clock_ms()));
    }

    /// Removes every record naming one of `keys` (a number's or a device's history key) from the capture files:
    /// the writer completes its open spool first, then rewrites every file that holds one. The records removed;
    /// `Ok(0)` with capture off.
    pub async fn erase(&self, keys: &[HistoryKey]) -> Result<u64, String> {
        let refs: Vec<String> = keys.iter().map(HistoryKey::to_hex).collect();
        self.erase_where(Box::new(move |reference| refs.iter().any(|wanted| wanted == reference))).await
    }

    /// Removes every record whose caller or device reference erasure notices name (`crate::notices`), as
    /// [`Capture::erase`] does.
    pub async fn forget_named(&self, named: crate::privacy::NamedKeys) -> Result<u64, String> {
        if named.is_empty() {
            return Ok(0);
        }
        self.erase_where(Box::new(move |reference| named.names_hex(reference))).await
    }

    async fn erase_where(&self, names: Names) -> Result<u64, String> {
        let Some(queue) = &self.queue else { return Ok(0) };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let mut message = Control::Erase(names, reply);
        // The control queue is short and never waited on by scoring; an erasure waits its turn.
        loop {
            match queue.control.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(again)) => {
                    message = again;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(TrySendError::Disconnected(_)) => return Err("the capture writer has stopped".into()),
            }
        }
        answer.await.map_err(|_| "the capture writer has stopped".to_owned())?
    }

    /// Queues a record (its bytes appended under a lock held for that copy only), or drops and counts it when the
    /// queue is full or the writer has stopped.
    pub fn offer(&self, record: &Record<'_>) {
        let Some(queue) = &self.queue else { return };
        let mut pending = queue.lock();
        if pending.open && pending.records < queue.capacity {
            spool::encode(record, &mut pending.bytes);
            pending.records += 1;
        } else {
            drop(pending);
            self.counters.dropped.inc();
        }
    }
}

/// What the writer did, returned when it is closed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriterReport {
    /// Files completed and kept.
    pub files: Vec<PathBuf>,
    /// Records in them.
    pub written: u64,
    /// Records lost to a failed write, conversion or fsync.
    pub failed: u64,
    /// Records the buffer could not take (full, or offered after the close began), as of the close.
    pub dropped: u64,
    /// CPU seconds the writer thread used (appending spools).
    pub cpu_seconds: Option<f64>,
    /// CPU seconds the converter thread used (spools to Parquet).
    pub converter_cpu_seconds: Option<f64>,
}

/// The writer's thread; [`CaptureWriter::close`] completes its files.
pub struct CaptureWriter {
    control: SyncSender<Control>,
    thread: JoinHandle<WriterReport>,
}

impl std::fmt::Debug for CaptureWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("CaptureWriter").finish_non_exhaustive()
    }
}

/// The capture directory could not be used.
#[derive(Debug, thiserror::Error)]
#[error("capture directory {path}: {source}")]
pub struct CaptureError {
    /// The directory.
    pub path: String,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Starts the writer and the converter for `settings.dir` (which must be set): creates the directory, checks that
/// files can be created there, prunes files past retention and queues this replica's spools a crashed run left for
/// conversion.
pub fn start(settings: &CaptureSettings, counters: CaptureCounters) -> Result<(Capture, CaptureWriter), CaptureError> {
    start_rotating(settings, counters, Duration::from_secs(settings.rotate_minutes * 60))
}

/// [`start`], completing files every `rotate` (tests rotate in milliseconds).
fn start_rotating(
    settings: &CaptureSettings,
    counters: CaptureCounters,
    rotate: Duration,
) -> Result<(Capture, CaptureWriter), CaptureError> {
    let dir = settings.dir.clone().ok_or_else(|| CaptureError {
        path: String::new(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "capture.dir is not set"),
    })?;
    let fail = |source| CaptureError { path: dir.display().to_string(), source };
    std::fs::create_dir_all(&dir).map_err(fail)?;
    // Fail at start-up, not at the first record, when the directory cannot take files.
    let probe = dir.join(format!(".saring-capture-probe-{}", std::process::id()));
    File::create(&probe).and_then(|_| std::fs::remove_file(&probe)).map_err(fail)?;
    let replica = settings.replica_name();
    let orphans = orphan_partials(&dir).map_err(fail)?;
    if !orphans.is_empty() {
        tracing::warn!(
            files = orphans.len(),
            dir = %dir.display(),
            "capture: .parquet.partial files without their spool (left by a version before spools) are incomplete \
             and not read by saring-train"
        );
    }
    let retention_days = settings.retention_days;
    prune(&dir, retention_days, wall_clock_ms());
    let leftovers = spools_of(&dir, &replica).map_err(fail)?;
    let (jobs, job_receiver) = std::sync::mpsc::channel();
    for spool in leftovers {
        tracing::warn!(spool = %spool.display(), "capture: a spool a crashed run left is converted now");
        let _ = jobs.send(Job::Convert { spool, expected: None });
    }
    let converter = Converter { dir: dir.clone(), counters: counters.clone(), report: WriterReport::default() };
    let converter = std::thread::Builder::new()
        .name("saring-capture-parquet".into())
        .spawn(move || converter.run(job_receiver))
        .map_err(fail)?;
    let (control, control_receiver) = std::sync::mpsc::sync_channel(16);
    let queue = Arc::new(Queue {
        pending: Mutex::new(Pending { bytes: Vec::new(), records: 0, open: true }),
        capacity: settings.queue_capacity,
        control: control.clone(),
    });
    let writer = Writer {
        dir: dir.clone(),
        replica,
        retention_days,
        rotate,
        counters: counters.clone(),
        queue: Arc::clone(&queue),
        spare: Vec::new(),
        open: None,
        jobs,
        converter,
        failed: 0,
    };
    let thread = std::thread::Builder::new()
        .name("saring-capture".into())
        .spawn(move || writer.run(control_receiver))
        .map_err(fail)?;
    Ok((Capture { queue: Some(queue), counters }, CaptureWriter { control, thread }))
}

impl CaptureWriter {
    /// Writes what is queued, completes the open spool, converts every spool to Parquet (fsynced), and stops both
    /// threads. Records offered after this are dropped (and counted).
    pub fn close(self) -> WriterReport {
        let _ = self.control.send(Control::Close);
        self.thread.join().unwrap_or_else(|_| {
            tracing::error!("capture: the writer thread panicked; its open spool is converted at the next start");
            WriterReport::default()
        })
    }
}

/// Columns whose values repeat, written with a dictionary.
const DICTIONARY_COLUMNS: &[&str] = &[
    columns::KIND,
    columns::CHANNEL,
    columns::REGION,
    columns::FEATURE_SCHEMA,
    columns::MODEL_VERSION,
    columns::BAND,
    columns::DEGRADED_REASONS,
    columns::DISPOSITION,
    columns::CATEGORY,
];

/// Records per Arrow batch when a spool is converted.
const BATCH_ROWS: usize = 4096;
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 65_536;
/// How often the writer takes what the scoring path queued and appends it to the spool.
const POLL: Duration = Duration::from_millis(20);
/// A spool's file-name suffix.
const SPOOL: &str = ".spool";

/// The spool being appended to.
struct OpenSpool {
    day: String,
    opened: Instant,
    path: PathBuf,
    file: File,
    /// Bytes appended (whole records only).
    length: u64,
    records: u64,
}

struct Writer {
    dir: PathBuf,
    replica: String,
    retention_days: u64,
    rotate: Duration,
    counters: CaptureCounters,
    queue: Arc<Queue>,
    /// The buffer handed back to the queue at the next swap (its capacity kept).
    spare: Vec<u8>,
    open: Option<OpenSpool>,
    jobs: std::sync::mpsc::Sender<Job>,
    converter: JoinHandle<WriterReport>,
    failed: u64,
}

/// CPU time of the calling thread in seconds (Linux: `/proc/thread-self/schedstat`, nanoseconds on a CPU), so
/// that other work on the machine does not count; `None` where the kernel does not say.
pub fn thread_cpu_seconds() -> Option<f64> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanoseconds: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(nanoseconds as f64 / 1e9)
}

/// The UTC day (YYYY-MM-DD) of a Unix time in ms.
pub fn utc_day(at_ms: i64) -> String {
    let at =
        time::OffsetDateTime::from_unix_timestamp(at_ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let date = at.date();
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// Lowers the calling thread's priority: scoring comes first.
fn lowest_priority(what: &str) {
    if let Err(error) = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min) {
        tracing::warn!(?error, "capture: cannot lower the {what}'s priority; it competes with scoring for CPU");
    }
}

impl Writer {
    fn run(mut self, control: Receiver<Control>) -> WriterReport {
        // The writer polls rather than waiting to be woken: a sender that wakes a parked thread pays a futex call
        // on the scoring path for every record; a poll every POLL leaves senders a copy under an uncontended lock.
        lowest_priority("writer");
        loop {
            match control.try_recv() {
                Ok(Control::Erase(names, reply)) => {
                    self.append_pending();
                    self.complete_spool();
                    let _ = self.jobs.send(Job::Erase(names, reply));
                }
                Ok(Control::Close) | Err(TryRecvError::Disconnected) => return self.close(),
                Err(TryRecvError::Empty) => {}
            }
            self.append_pending();
            if self.rotation_due(&utc_day(wall_clock_ms())) {
                self.complete_spool();
                prune(&self.dir, self.retention_days, wall_clock_ms());
            }
            std::thread::sleep(POLL);
        }
    }

    fn close(mut self) -> WriterReport {
        self.queue.lock().open = false;
        self.append_pending();
        self.complete_spool();
        let cpu_seconds = thread_cpu_seconds();
        drop(self.jobs);
        let mut report = self.converter.join().unwrap_or_else(|_| {
            tracing::error!("capture: the converter thread panicked; spools left are converted at the next start");
            WriterReport::default()
        });
        report.failed += self.failed;
        report.dropped = self.counters.dropped.get();
        report.cpu_seconds = cpu_seconds;
        report
    }

    /// Whether the open spool must be completed: the UTC day changed or it has been open for `rotate`.
    fn rotation_due(&self, today: &str) -> bool {
        self.open.as_ref().is_some_and(|open| open.day != today || open.opened.elapsed() >= self.rotate)
    }

    /// Takes what the scoring path queued and appends it to the open spool (opening one when none is).
    fn append_pending(&mut self) {
        let (bytes, records) = {
            let mut pending = self.queue.lock();
            if pending.records == 0 {
                return;
            }
            self.spare.clear();
            let bytes = std::mem::replace(&mut pending.bytes, std::mem::take(&mut self.spare));
            (bytes, std::mem::take(&mut pending.records))
        };
        let today = utc_day(wall_clock_ms());
        if self.rotation_due(&today) {
            self.complete_spool();
        }
        if self.open.is_none() {
            match self.open_spool(&today) {
                Ok(open) => self.open = Some(open),
                Err(error) => {
                    tracing::error!(%error, dir = %self.dir.display(), "capture: cannot create a spool; records lost");
                    self.lost(records as u64);
                    self.spare = bytes;
                    return;
                }
            }
        }
        let open = self.open.as_mut().expect("opened above");
        match open.file.write_all(&bytes) {
            Ok(()) => {
                open.length += bytes.len() as u64;
                open.records += records as u64;
            }
            Err(error) => {
                // A full disk: these records are lost and counted; the spool is cut back to its last whole record
                // and kept, or, when even that fails, completed as far as it is whole.
                tracing::error!(%error, spool = %open.path.display(), records, "capture: a write failed; records lost");
                let cut = open.file.set_len(open.length).and_then(|()| open.file.seek(SeekFrom::End(0)).map(|_| ()));
                self.lost(records as u64);
                if cut.is_err() {
                    self.complete_spool();
                }
            }
        }
        self.spare = bytes;
    }

    fn lost(&mut self, records: u64) {
        self.counters.write_errors.inc_by(records);
        self.failed += records;
    }

    fn open_spool(&self, day: &str) -> std::io::Result<OpenSpool> {
        let name = format!("capture-{day}-{}-{}{SPOOL}", self.replica, wall_clock_ms());
        let path = self.dir.join(name);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        file.write_all(spool::SPOOL_MAGIC)?;
        Ok(OpenSpool {
            day: day.to_owned(),
            opened: Instant::now(),
            path,
            file,
            length: spool::SPOOL_MAGIC.len() as u64,
            records: 0,
        })
    }

    /// Hands the open spool to the converter (which writes its Parquet file, fsyncs it and deletes the spool).
    fn complete_spool(&mut self) {
        if let Some(open) = self.open.take() {
            drop(open.file);
            let _ = self.jobs.send(Job::Convert { spool: open.path, expected: Some(open.records) });
        }
    }
}

/// Work for the converter, done in the order given.
enum Job {
    /// Write a spool's records as a Parquet file; `expected` records when the writer knows how many.
    Convert { spool: PathBuf, expected: Option<u64> },
    /// Remove the records of the references these pick from every completed file.
    Erase(Names, tokio::sync::oneshot::Sender<Result<u64, String>>),
}

/// Turns completed spools into Parquet files at the lowest priority, off the scoring path: what Parquet costs
/// (column encoding, compression) is paid here, once a spool is complete.
struct Converter {
    dir: PathBuf,
    counters: CaptureCounters,
    report: WriterReport,
}

impl Converter {
    fn run(mut self, jobs: Receiver<Job>) -> WriterReport {
        lowest_priority("converter");
        for job in jobs {
            match job {
                Job::Convert { spool, expected } => self.convert(&spool, expected),
                Job::Erase(names, reply) => {
                    let result = erase_where(&self.dir, &names).map_err(|error| format!("{error:#}"));
                    if let Err(error) = &result {
                        tracing::error!(%error, "capture: erasure failed");
                    }
                    let _ = reply.send(result);
                }
            }
        }
        self.report.converter_cpu_seconds = thread_cpu_seconds();
        self.report
    }

    fn convert(&mut self, spool: &Path, expected: Option<u64>) {
        let path = parquet_of(spool);
        let partial = partial_of(&path);
        if path.exists() {
            // Completed before a crash that came before the spool was deleted.
            if let Err(error) = std::fs::remove_file(spool) {
                tracing::warn!(%error, spool = %spool.display(), "capture: cannot delete a converted spool");
            }
            return;
        }
        match write_parquet(spool, &partial, &path, &self.dir) {
            Ok(rows) => {
                self.counters.written.inc_by(rows);
                self.report.written += rows;
                self.report.files.push(path.clone());
                if let Some(lost) = expected.map(|expected| expected.saturating_sub(rows)).filter(|lost| *lost > 0) {
                    self.counters.write_errors.inc_by(lost);
                    self.report.failed += lost;
                    tracing::error!(spool = %spool.display(), lost, "capture: records the spool did not hold whole");
                }
                if let Err(error) = std::fs::remove_file(spool) {
                    tracing::warn!(%error, spool = %spool.display(), "capture: cannot delete a converted spool");
                }
                tracing::info!(
                    file = %path.display(),
                    records = rows,
                    converter_cpu_s = thread_cpu_seconds().unwrap_or(f64::NAN),
                    "capture: file completed"
                );
            }
            Err(error) => {
                let _ = std::fs::remove_file(&partial);
                let lost = expected.unwrap_or(0);
                self.counters.write_errors.inc_by(lost);
                self.report.failed += lost;
                tracing::error!(
                    error = format!("{error:#}"),
                    spool = %spool.display(),
                    records = lost,
                    "capture: cannot complete a file; its spool is kept and converted again at the next start"
                );
            }
        }
    }
}

/// The Parquet file a spool becomes.
fn parquet_of(spool: &Path) -> PathBuf {
    let name = spool.file_name().and_then(|name| name.to_str()).unwrap_or_default();
    spool.with_file_name(format!("{}.parquet", name.strip_suffix(SPOOL).unwrap_or(name)))
}

/// The name a Parquet file has while it is written.
fn partial_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Writes the whole records of `spool` to `partial` as Parquet, fsyncs it, renames it to `path` and fsyncs the
/// directory; the records written. A record cut short (a crash while appending) ends the spool.
fn write_parquet(spool: &Path, partial: &Path, path: &Path, dir: &Path) -> anyhow::Result<u64> {
    let mut reader = std::io::BufReader::with_capacity(1 << 20, File::open(spool)?);
    let mut magic = [0; 8];
    reader.read_exact(&mut magic)?;
    anyhow::ensure!(&magic == spool::SPOOL_MAGIC, "{}: not a capture spool", spool.display());
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(partial)?;
    let properties = writer_properties(vec![
        KeyValue::new("saring.feature_schema".to_owned(), schema_fingerprint()),
        KeyValue::new("saring.replica".to_owned(), replica_of(path).to_owned()),
    ]);
    let mut writer = ArrowWriter::try_new(file, capture_schema(), Some(properties))?;
    let (mut arena, mut ends) = (Vec::new(), Vec::with_capacity(BATCH_ROWS));
    let (mut rows, mut cut) = (0_u64, false);
    loop {
        arena.clear();
        ends.clear();
        let mut at_end = false;
        while ends.len() < BATCH_ROWS {
            let mut length = [0; 4];
            match read_whole(&mut reader, &mut length)? {
                Filled::Whole => {}
                Filled::End => {
                    at_end = true;
                    break;
                }
                Filled::Cut => {
                    cut = true;
                    break;
                }
            }
            let start = arena.len();
            arena.resize(start + u32::from_le_bytes(length) as usize, 0);
            if !matches!(read_whole(&mut reader, &mut arena[start..])?, Filled::Whole) {
                cut = true;
                break;
            }
            ends.push(arena.len());
        }
        let mut records = Vec::with_capacity(ends.len());
        let mut start = 0;
        for &end in &ends {
            let Some(record) = spool::decode(&arena[start..end]) else {
                cut = true;
                break;
            };
            records.push(record);
            start = end;
        }
        if !records.is_empty() {
            writer.write(&build_batch(&records, rows)?)?;
            rows += records.len() as u64;
        }
        if at_end || cut {
            break;
        }
    }
    if cut {
        tracing::warn!(spool = %spool.display(), rows, "capture: the spool ends in a record cut short (a crash); kept what was whole");
    }
    writer.into_inner()?.sync_all()?;
    std::fs::rename(partial, path)?;
    File::open(dir)?.sync_all()?;
    Ok(rows)
}

/// How far [`read_whole`] filled its buffer.
enum Filled {
    Whole,
    End,
    Cut,
}

/// Fills `buffer`, telling a clean end of file (nothing read) from a cut one (some read).
fn read_whole(reader: &mut impl std::io::Read, buffer: &mut [u8]) -> std::io::Result<Filled> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => return Ok(if filled == 0 { Filled::End } else { Filled::Cut }),
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(Filled::Whole)
}

/// The replica in a capture file's name (`capture-YYYY-MM-DD-REPLICA-OPENEDMS…`).
fn replica_of(path: &Path) -> &str {
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
    let Some(rest) = name.strip_prefix("capture-").and_then(|rest| rest.get(11..)) else { return "" };
    rest.rsplit_once('-').map_or("", |(replica, _)| replica)
}

/// This replica's spools in `dir` (left by a run that did not shut down), oldest first.
fn spools_of(dir: &Path, replica: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        if name.starts_with("capture-") && name.ends_with(SPOOL) && replica_of(&path) == replica {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// How capture files are written, with `metadata` in the footer.
fn writer_properties(metadata: Vec<KeyValue>) -> WriterProperties {
    // Dictionary encoding only where values repeat (kinds, channels, regions, versions, bands, reasons,
    // dispositions, categories): on ids, hashes, times and feature values it only costs the writer CPU.
    let mut properties = WriterProperties::builder().set_dictionary_enabled(false);
    for column in DICTIONARY_COLUMNS {
        properties = properties.set_column_dictionary_enabled(ColumnPath::from(*column), true);
    }
    properties
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(metadata))
        .build()
}

/// Rewrites every completed capture file in `dir` that holds a record whose caller or device reference (a history
/// key, hex) `names` picks, without those records (a temporary file, fsync, rename, directory fsync); the number of
/// records removed. A `.parquet.partial` without its spool (left by a version before spools; no footer, so no
/// reader can open it and it cannot be rewritten record by record) may hold such records too: it is deleted, and
/// logged. One whose spool is there is a conversion under way or to be redone from the spool: left alone.
/// Called by the converter after it converted this replica's spools, so none of this replica's is pending.
pub fn erase_where(dir: &Path, names: &dyn Fn(&str) -> bool) -> anyhow::Result<u64> {
    use arrow_array::{Array, BooleanArray, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let leftovers = orphan_partials(dir)?;
    for leftover in &leftovers {
        std::fs::remove_file(leftover)?;
    }
    if !leftovers.is_empty() {
        File::open(dir)?.sync_all()?;
        tracing::warn!(
            files = leftovers.len(),
            dir = %dir.display(),
            "capture: an erasure deleted the files a crashed run left open (.parquet.partial): unreadable, they could \
             not be rewritten without the erased records"
        );
    }
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.ends_with(".parquet")) {
            continue;
        }
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path)?)?;
        let metadata = builder.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
        let mut kept = Vec::new();
        let mut dropped = 0u64;
        for batch in builder.build()? {
            let batch = batch?;
            let named = |column: &str| -> anyhow::Result<StringArray> {
                let array =
                    batch.column_by_name(column).ok_or_else(|| anyhow::anyhow!("{}: no {column}", path.display()))?;
                arrow_cast_strings(array.as_ref())
                    .ok_or_else(|| anyhow::anyhow!("{}: {column} is not text", path.display()))
            };
            let (callers, devices) = (named(columns::CALLER_REF)?, named(columns::DEVICE_REF)?);
            let keep: BooleanArray = (0..batch.num_rows())
                .map(|row| {
                    let named = |array: &StringArray| !array.is_null(row) && names(array.value(row));
                    Some(!(named(&callers) || named(&devices)))
                })
                .collect();
            let filtered = arrow_select::filter::filter_record_batch(&batch, &keep)?;
            dropped += (batch.num_rows() - filtered.num_rows()) as u64;
            kept.push(filtered);
        }
        if dropped == 0 {
            continue;
        }
        let temporary = path.with_extension("parquet.erasing");
        {
            let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&temporary)?;
            let mut writer = ArrowWriter::try_new(file, capture_schema(), Some(writer_properties(metadata)))?;
            for batch in &kept {
                writer.write(batch)?;
            }
            writer.into_inner()?.sync_all()?;
        }
        std::fs::rename(&temporary, &path)?;
        File::open(dir)?.sync_all()?;
        removed += dropped;
    }
    Ok(removed)
}

/// A text column as a `StringArray` (capture files write them plain).
fn arrow_cast_strings(array: &dyn arrow_array::Array) -> Option<arrow_array::StringArray> {
    array.as_any().downcast_ref::<arrow_array::StringArray>().cloned()
}

/// The `.parquet.partial` files in `dir` whose spool is not there: a version before spools wrote Parquet as it
/// went and left these when it crashed. (A partial file whose spool is there is redone from the spool.)
fn orphan_partials(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        if let Some(stem) = name.strip_suffix(".parquet.partial") {
            if !dir.join(format!("{stem}{SPOOL}")).exists() {
                found.push(path);
            }
        }
    }
    Ok(found)
}

/// The day in a capture file's name (`capture-YYYY-MM-DD-…`), if it is one.
pub fn file_day(name: &str) -> Option<&str> {
    let day = name.strip_prefix("capture-")?.get(..10)?;
    let bytes = day.as_bytes();
    let shaped = bytes.iter().enumerate().all(|(index, byte)| match index {
        4 | 7 => *byte == b'-',
        _ => byte.is_ascii_digit(),
    });
    shaped.then_some(day)
}

/// Deletes capture files (complete, partial or spools) whose day is more than `retention_days` before `now_ms`'s day.
/// Returns how many were deleted.
pub fn prune(dir: &Path, retention_days: u64, now_ms: i64) -> usize {
    let oldest_kept = utc_day(now_ms - (retention_days as i64) * 86_400_000);
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut deleted = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(day) = file_day(name) else { continue };
        // ISO dates compare as strings.
        let capture_file = [".parquet", ".parquet.partial", SPOOL].iter().any(|suffix| name.ends_with(suffix));
        if day < oldest_kept.as_str() && capture_file {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    deleted += 1;
                    tracing::info!(file = name, retention_days, "capture: file past retention deleted");
                }
                Err(error) => tracing::warn!(%error, file = name, "capture: cannot delete a file past retention"),
            }
        }
    }
    deleted
}

/// `key` as lowercase hex in `buffer`, without allocating.
fn hex_of<'b>(key: &HistoryKey, buffer: &'b mut [u8; 64]) -> &'b str {
    hex::encode_to_slice(key.0, buffer).expect("64 bytes hold 32 in hex");
    std::str::from_utf8(buffer).expect("hex digits are ASCII")
}

/// The Arrow batch of `records`, numbered from `first_seq`.
fn build_batch(records: &[Record<'_>], first_seq: u64) -> anyhow::Result<RecordBatch> {
    let rows = records.len();
    let utc = || TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC");
    let text = || StringBuilder::with_capacity(rows, rows * 16);
    let (mut kind, mut seq, mut captured_at, mut contact_id) =
        (text(), UInt64Builder::with_capacity(rows), utc(), text());
    let (mut caller_ref, mut device_ref, mut received_at, mut channel, mut region) =
        (text(), text(), utc(), text(), text());
    let (mut feature_schema, mut model_version, mut likelihood, mut band, mut degraded) =
        (text(), text(), Float64Builder::with_capacity(rows), text(), text());
    let mut naive_recent = Float64Builder::with_capacity(rows);
    let (mut disposition, mut answered, mut ring_s, mut talk_s, mut category) = (
        text(),
        BooleanBuilder::with_capacity(rows),
        Float64Builder::with_capacity(rows),
        Float64Builder::with_capacity(rows),
        text(),
    );
    let mut features: Vec<Float64Builder> = (0..FEATURE_COUNT).map(|_| Float64Builder::with_capacity(rows)).collect();
    let fingerprint = schema_fingerprint();
    let mut hex = [0_u8; 64];
    for (index, record) in records.iter().enumerate() {
        seq.append_value(first_seq + index as u64);
        match record {
            Record::Contact(contact, at_ms) => {
                kind.append_value("contact");
                captured_at.append_value(*at_ms);
                let common = &contact.contact;
                contact_id.append_value(common.contact_id);
                caller_ref.append_option(common.caller_ref.as_ref().map(|key| hex_of(key, &mut hex)));
                device_ref.append_option(common.device_ref.as_ref().map(|key| hex_of(key, &mut hex)));
                received_at.append_value(common.received_at_ms);
                channel.append_value(common.channel);
                region.append_value(common.region);
                feature_schema.append_option(contact.features.map(|_| fingerprint.as_str()));
                model_version.append_value(contact.model_version);
                likelihood.append_option(contact.score.map(|(likelihood, _)| likelihood));
                band.append_option(contact.score.map(|(_, band)| band));
                match contact.degraded_reasons {
                    Reasons::Joined(joined) => degraded.append_value(joined),
                    Reasons::List(reasons) => degraded.append_value(reasons.join(",")),
                }
                naive_recent.append_value(contact.naive_recent);
                disposition.append_null();
                answered.append_null();
                ring_s.append_null();
                talk_s.append_null();
                category.append_null();
                for (column, builder) in features.iter_mut().enumerate() {
                    builder.append_option(contact.features.map(|vector| vector[column]));
                }
            }
            Record::Outcome(outcome, at_ms) => {
                kind.append_value("outcome");
                captured_at.append_value(*at_ms);
                let common = &outcome.contact;
                contact_id.append_value(common.contact_id);
                caller_ref.append_option(common.caller_ref.as_ref().map(|key| hex_of(key, &mut hex)));
                device_ref.append_option(common.device_ref.as_ref().map(|key| hex_of(key, &mut hex)));
                received_at.append_value(common.received_at_ms);
                channel.append_value(common.channel);
                region.append_value(common.region);
                feature_schema.append_null();
                model_version.append_null();
                likelihood.append_null();
                band.append_null();
                degraded.append_null();
                naive_recent.append_null();
                disposition.append_value(outcome.disposition);
                answered.append_value(outcome.answered);
                ring_s.append_value(outcome.ring_s);
                talk_s.append_value(outcome.talk_s);
                category.append_option(outcome.category);
                for builder in &mut features {
                    builder.append_null();
                }
            }
        }
    }
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(kind.finish()),
        Arc::new(seq.finish()),
        Arc::new(captured_at.finish()),
        Arc::new(contact_id.finish()),
        Arc::new(caller_ref.finish()),
        Arc::new(device_ref.finish()),
        Arc::new(received_at.finish()),
        Arc::new(channel.finish()),
        Arc::new(region.finish()),
        Arc::new(feature_schema.finish()),
        Arc::new(model_version.finish()),
        Arc::new(likelihood.finish()),
        Arc::new(band.finish()),
        Arc::new(degraded.finish()),
        Arc::new(naive_recent.finish()),
        Arc::new(disposition.finish()),
        Arc::new(answered.finish()),
        Arc::new(ring_s.finish()),
        Arc::new(talk_s.finish()),
        Arc::new(category.finish()),
    ];
    arrays.extend(features.iter_mut().map(|builder| Arc::new(builder.finish()) as ArrayRef));
    Ok(RecordBatch::try_new(capture_schema(), arrays)?)
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;

    use super::*;

    fn contact_record(id: &str, features: Option<FeatureVector>) -> Record<'_> {
        Record::Contact(
            ContactCapture {
                contact: CapturedContact {
                    contact_id: id,
                    caller_ref: Some(HistoryKey([0xab; 32])),
                    device_ref: None,
                    received_at_ms: 1_772_000_000_000,
                    channel: "voice",
                    region: "ntt.kupang",
                },
                features,
                model_version: "m-1",
                score: features.map(|_| (0.25, "low")),
                degraded_reasons: Reasons::List(if features.is_some() { &[] } else { &["model_failure"] }),
                naive_recent: 0.5,
            },
            1_772_000_000_100,
        )
    }

    fn outcome_record<'a>(id: &'a str, category: Option<&'a str>) -> Record<'a> {
        Record::Outcome(
            OutcomeCapture {
                contact: CapturedContact {
                    contact_id: id,
                    caller_ref: None,
                    device_ref: Some(HistoryKey([0x17; 32])),
                    received_at_ms: 1_772_000_000_000,
                    channel: "sms",
                    region: "jk.jakarta-pusat",
                },
                disposition: "prank",
                answered: true,
                ring_s: 4.5,
                talk_s: 31.25,
                category,
            },
            1_772_000_009_000,
        )
    }

    /// A spool as the writer leaves it: the magic, then `records`.
    fn spool_bytes(records: &[Record<'_>]) -> Vec<u8> {
        let mut bytes = spool::SPOOL_MAGIC.to_vec();
        for record in records {
            spool::encode(record, &mut bytes);
        }
        bytes
    }

    fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_str().unwrap().ends_with(suffix))
            .collect();
        found.sort();
        found
    }

    fn settings_in(dir: &Path) -> CaptureSettings {
        CaptureSettings { dir: Some(dir.to_owned()), replica: Some("r1".into()), ..CaptureSettings::default() }
    }

    fn read_back(path: &Path) -> Vec<RecordBatch> {
        let file = File::open(path).unwrap();
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    #[test]
    fn records_reach_a_complete_file_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let counters = CaptureCounters::default();
        let settings = settings_in(dir.path());
        let (capture, writer) = start(&settings, counters.clone()).unwrap();
        let mut vector = [0.0; FEATURE_COUNT];
        vector[3] = 1.5;
        capture.offer(&contact_record("c-1", Some(vector)));
        capture.offer(&contact_record("c-2", None));
        let report = writer.close();
        assert_eq!(report.written, 2);
        assert_eq!(report.files.len(), 1);
        assert_eq!(counters.written.get(), 2);
        let name = report.files[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with(&format!("capture-{}-r1-", utc_day(wall_clock_ms()))), "{name}");
        assert!(files_ending(dir.path(), ".partial").is_empty());
        assert!(files_ending(dir.path(), SPOOL).is_empty(), "the spool is deleted once its Parquet file is complete");
        let batches = read_back(&report.files[0]);
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 2);
        let feature = batch
            .column_by_name(&format!("f_{}", FEATURES[3].name))
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::Float64Array>()
            .unwrap();
        assert_eq!(feature.value(0), 1.5);
        assert!(feature.is_null(1));
        // Offered after the close: dropped and counted, never silently lost.
        capture.offer(&contact_record("c-3", None));
        assert_eq!(counters.dropped.get(), 1);
    }

    #[test]
    fn an_erasure_removes_the_records_of_a_key_from_every_file_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let settings = CaptureSettings { rotate_minutes: 1, ..settings_in(dir.path()) };
        let (capture, writer) = start(&settings, CaptureCounters::default()).unwrap();
        let (erased, kept) = (HistoryKey([0xab; 32]), HistoryKey([0xcd; 32]));
        let with_refs = |id: &'static str, caller: HistoryKey, device: Option<HistoryKey>| {
            let Record::Contact(mut record, at) = contact_record(id, None) else { unreachable!() };
            record.contact.caller_ref = Some(caller);
            record.contact.device_ref = device;
            Record::Contact(record, at)
        };
        capture.offer(&with_refs("a-1", erased, None));
        capture.offer(&with_refs("k-1", kept, None));
        capture.offer(&with_refs("k-2", kept, Some(erased)));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // The open spool is completed and converted first, so records still queued or spooled are erased too.
        assert_eq!(runtime.block_on(capture.erase(&[erased])).unwrap(), 2);
        capture.offer(&with_refs("k-3", kept, None));
        assert_eq!(runtime.block_on(capture.erase(&[erased])).unwrap(), 0, "nothing more to remove");
        let report = writer.close();
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            for batch in read_back(&entry.unwrap().path()) {
                let column = |name: &str| {
                    batch
                        .column_by_name(name)
                        .unwrap()
                        .as_any()
                        .downcast_ref::<arrow_array::StringArray>()
                        .unwrap()
                        .clone()
                };
                let (contact_ids, callers, devices) =
                    (column(columns::CONTACT_ID), column(columns::CALLER_REF), column(columns::DEVICE_REF));
                for row in 0..batch.num_rows() {
                    use arrow_array::Array;
                    assert_ne!(callers.value(row), erased.to_hex());
                    assert!(devices.is_null(row) || devices.value(row) != erased.to_hex());
                    ids.push(contact_ids.value(row).to_owned());
                }
            }
        }
        ids.sort();
        assert_eq!(ids, ["k-1", "k-3"]);
        assert_eq!(report.written, 4, "the writer wrote four; the erasure removed two of them afterwards");
    }

    #[test]
    fn references_are_written_as_the_history_keys_hex() {
        let key = HistoryKey(std::array::from_fn(|index| (index * 37) as u8));
        let mut buffer = [0; 64];
        assert_eq!(hex_of(&key, &mut buffer), key.to_hex());
    }

    #[test]
    fn files_are_completed_at_each_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let counters = CaptureCounters::default();
        let settings = settings_in(dir.path());
        let (capture, writer) = start_rotating(&settings, counters.clone(), Duration::from_millis(200)).unwrap();
        capture.offer(&contact_record("c-1", None));
        // The writer spools c-1 within a poll; a later poll finds the spool older than the rotation.
        let deadline = Instant::now() + Duration::from_secs(20);
        while counters.written.get() < 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(counters.written.get(), 1, "the first file is completed before the service stops");
        let completed: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "parquet"))
            .collect();
        assert_eq!(completed.len(), 1);
        assert_eq!(read_back(&completed[0]).iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
        capture.offer(&contact_record("c-2", None));
        let report = writer.close();
        assert_eq!((report.written, report.files.len()), (2, 2), "two files completed in this run");
        assert_eq!(counters.written.get(), 2);
        assert!(files_ending(dir.path(), ".partial").is_empty());
        assert!(files_ending(dir.path(), SPOOL).is_empty());
    }

    #[test]
    fn an_erasure_deletes_partial_files_without_a_spool_and_leaves_conversions_alone() {
        let dir = tempfile::tempdir().unwrap();
        let orphan = dir.path().join("capture-2026-02-14-r1-2.parquet.partial");
        std::fs::write(&orphan, b"PAR1 no footer: a run of an older version that crashed").unwrap();
        let converting = dir.path().join("capture-2026-02-14-r2-3.parquet.partial");
        std::fs::write(&converting, b"PAR1 being written by r2's converter").unwrap();
        std::fs::write(dir.path().join("capture-2026-02-14-r2-3.spool"), spool_bytes(&[])).unwrap();
        assert_eq!(erase_where(dir.path(), &|reference: &str| reference == "ab").unwrap(), 0);
        assert!(!orphan.exists());
        assert!(converting.exists(), "a conversion under way (its spool is there) is not touched");
        assert!(orphan_partials(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (control, _receiver) = std::sync::mpsc::sync_channel(1);
        let counters = CaptureCounters::default();
        let queue =
            Queue { pending: Mutex::new(Pending { bytes: Vec::new(), records: 0, open: true }), capacity: 1, control };
        let capture = Capture { queue: Some(Arc::new(queue)), counters: counters.clone() };
        capture.offer(&contact_record("c-1", None));
        capture.offer(&contact_record("c-2", None));
        capture.offer(&contact_record("c-3", None));
        assert_eq!(counters.dropped.get(), 2);
    }

    #[test]
    fn a_record_reads_back_from_the_spool_as_it_was_offered() {
        let mut features = [0.0; FEATURE_COUNT];
        features.iter_mut().enumerate().for_each(|(index, value)| *value = index as f64 * 0.5 - 3.0);
        let records = [
            contact_record("c-1", Some(features)),
            contact_record("c-2", None),
            outcome_record("c-1", Some("noise")),
            outcome_record("c-2", None),
        ];
        let mut bytes = Vec::new();
        for record in &records {
            let start = bytes.len();
            spool::encode(record, &mut bytes);
            let length = u32::from_le_bytes(bytes[start..start + 4].try_into().unwrap()) as usize;
            assert_eq!(bytes.len() - start - 4, length);
            let decoded = spool::decode(&bytes[start + 4..]).expect("a whole record");
            match (decoded, record) {
                (Record::Contact(decoded, at), Record::Contact(offered, offered_at)) => {
                    assert_eq!(at, *offered_at);
                    assert_eq!(decoded.contact, offered.contact);
                    assert_eq!(
                        (decoded.features, decoded.model_version, decoded.score, decoded.naive_recent),
                        (offered.features, offered.model_version, offered.score, offered.naive_recent)
                    );
                    let Reasons::List(list) = offered.degraded_reasons else { unreachable!() };
                    assert_eq!(decoded.degraded_reasons, Reasons::Joined(&list.join(",")));
                }
                (decoded, offered) => assert_eq!(decoded, *offered),
            }
            // Cut short anywhere, a record is refused rather than read wrong.
            for cut in 0..length {
                assert!(spool::decode(&bytes[start + 4..start + 4 + cut]).is_none(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn a_spool_a_crashed_run_left_is_converted_at_the_next_start_and_other_replicas_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = spool_bytes(&[contact_record("c-1", None), outcome_record("c-1", None)]);
        let whole = bytes.len();
        spool::encode(&contact_record("c-2", None), &mut bytes);
        bytes.truncate(whole + 9); // the crash came while the third record was appended
        let crashed = dir.path().join("capture-2026-02-14-r1-5.spool");
        std::fs::write(&crashed, &bytes).unwrap();
        let others = dir.path().join("capture-2026-02-14-r1-x-6.spool");
        std::fs::write(&others, spool_bytes(&[contact_record("o-1", None)])).unwrap();
        let settings = CaptureSettings { retention_days: 3650, ..settings_in(dir.path()) };
        let counters = CaptureCounters::default();
        let (_capture, writer) = start(&settings, counters.clone()).unwrap();
        let report = writer.close();
        let converted = dir.path().join("capture-2026-02-14-r1-5.parquet");
        assert_eq!(report.files, std::slice::from_ref(&converted));
        assert_eq!((report.written, counters.written.get()), (2, 2), "the two whole records are kept");
        assert!(!crashed.exists());
        assert!(others.exists(), "replica r1-x's spool is its own to convert");
        let batches = read_back(&converted);
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
        let kinds = batches[0].column_by_name(columns::KIND).unwrap();
        let kinds = kinds.as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        assert_eq!((kinds.value(0), kinds.value(1)), ("contact", "outcome"));
    }

    #[test]
    fn a_file_name_tells_its_replica() {
        assert_eq!(replica_of(Path::new("/d/capture-2026-02-14-r1-x-6.spool")), "r1-x");
        assert_eq!(replica_of(Path::new("capture-2026-02-14-r1-6.parquet")), "r1");
        assert_eq!(
            parquet_of(Path::new("/d/capture-2026-02-14-r1-6.spool")),
            Path::new("/d/capture-2026-02-14-r1-6.parquet")
        );
    }

    #[test]
    fn files_past_retention_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let now_ms = 1_772_000_000_000; // 2026-02-25
        for name in [
            "capture-2026-02-25-r1-1.parquet",
            "capture-2026-02-16-r1-1.parquet",
            "capture-2026-02-14-r1-1.parquet",
            "capture-2026-02-14-r1-2.parquet.partial",
            "capture-2026-02-14-r1-3.spool",
            "notes-2020-01-01.parquet",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(prune(dir.path(), 10, now_ms), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["capture-2026-02-16-r1-1.parquet", "capture-2026-02-25-r1-1.parquet", "notes-2020-01-01.parquet"]
        );
    }

    #[test]
    fn settings_are_checked() {
        assert!(CaptureSettings::default().validate().is_ok());
        let bad = CaptureSettings { retention_days: 0, ..CaptureSettings::default() };
        assert!(bad.validate().unwrap_err().contains("capture.retention_days"));
        let bad = CaptureSettings { rotate_minutes: 0, ..CaptureSettings::default() };
        assert!(bad.validate().unwrap_err().contains("capture.rotate_minutes"));
        let bad = CaptureSettings { replica: Some("../x".into()), ..CaptureSettings::default() };
        assert!(bad.validate().unwrap_err().contains("capture.replica"));
        assert!(file_day("capture-2026-02-25-r1-1.parquet") == Some("2026-02-25"));
        assert!(file_day("capture-2026-2-25-r1-1.parquet").is_none());
    }

    #[test]
    fn an_unwritable_directory_fails_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-directory");
        std::fs::write(&file, b"x").unwrap();
        let settings = CaptureSettings { dir: Some(file), ..CaptureSettings::default() };
        assert!(start(&settings, CaptureCounters::default()).is_err());
    }
}
