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
//! It never blocks ScoreContact: records go through a bounded queue (`try_send`) to one writer thread; a record the
//! queue cannot take is dropped and counted (`saring_capture_dropped_total`). The writer keeps one file per replica
//! at a time, completed every `rotate_minutes` (60) and at the end of each UTC day (and per run: a restart starts a
//! new file), so a crash loses at most the open file's records; files are named `capture-YYYY-MM-DD-REPLICA-OPENEDMS.parquet`. While
//! open it is `….parquet.partial`; when it rotates or the service shuts down it is closed (Parquet footer
//! written), fsynced, renamed to `.parquet` and the directory fsynced, so a reader only ever sees complete files.
//! Files older than `retention_days` are deleted at start-up and at every rotation. A write that fails (a full disk)
//! abandons the file and counts every record in it as failed (`saring_capture_write_errors_total`): nothing is
//! reported written that is not.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_array::builder::{BooleanBuilder, Float64Builder, StringBuilder, TimestampMillisecondBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
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
    /// Records the queue in front of the writer holds; a record that finds it full is dropped and counted.
    pub queue_capacity: usize,
    /// This replica's name in file names (letters, digits, `-`, `_`); unset: the host name.
    pub replica: Option<String>,
    /// Minutes after which the open file is completed and a new one started (and at every UTC day's end): a crash
    /// loses at most this much capture, since an open file has no Parquet footer yet.
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

/// What every record says about its contact: id, references, arrival, channel and region.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedContact {
    /// The contact id.
    pub contact_id: String,
    /// History key (HMAC) of the number; written as hex, null when withheld.
    pub caller_ref: Option<HistoryKey>,
    /// History key (HMAC) of the device id; written as hex, null without one.
    pub device_ref: Option<HistoryKey>,
    /// Arrival, Unix ms.
    pub received_at_ms: i64,
    /// Channel name.
    pub channel: &'static str,
    /// Region code.
    pub region: String,
}

/// A scored contact as captured.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactCapture {
    /// The contact.
    pub contact: CapturedContact,
    /// The features as scored; `None` when the model failed before they were computed.
    pub features: Option<FeatureVector>,
    /// The champion's version.
    pub model_version: Arc<str>,
    /// Likelihood and band, `None` when the model failed.
    pub score: Option<(f64, &'static str)>,
    /// Degraded reasons.
    pub degraded_reasons: Vec<&'static str>,
    /// The naive rule on the history the score saw.
    pub naive_recent: f64,
}

/// A recorded outcome as captured.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeCapture {
    /// The contact the outcome is for.
    pub contact: CapturedContact,
    /// Disposition name.
    pub disposition: &'static str,
    /// Whether an operator answered.
    pub answered: bool,
    /// Seconds ringing.
    pub ring_s: f64,
    /// Seconds of talk.
    pub talk_s: f64,
    /// Incident category.
    pub category: Option<String>,
}

impl CapturedContact {
    fn of(contact: &Contact, caller_ref: Option<HistoryKey>, device_ref: Option<HistoryKey>) -> Self {
        CapturedContact {
            contact_id: contact.contact_id.clone(),
            caller_ref,
            device_ref,
            received_at_ms: contact.received_at_ms,
            channel: contact.channel.as_str(),
            region: contact.region.clone(),
        }
    }
}

/// One captured record with the wall-clock time it was captured.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A scored contact.
    Contact(Box<ContactCapture>, i64),
    /// A recorded outcome.
    Outcome(Box<OutcomeCapture>, i64),
}

/// Which history references (hex) an erasure removes.
type Names = Box<dyn Fn(&str) -> bool + Send>;

enum Message {
    Record(Record),
    Close,
    /// Complete the open file, then remove every record naming a reference (hex) these pick from every file.
    Erase(Names, tokio::sync::oneshot::Sender<Result<u64, String>>),
}

/// The screener's side of the capture: hands records to the writer without ever waiting. Disabled: does nothing.
#[derive(Clone, Default)]
pub struct Capture {
    sender: Option<SyncSender<Message>>,
    counters: CaptureCounters,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Capture").field("enabled", &self.sender.is_some()).finish()
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
        self.sender.is_some()
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
        if self.sender.is_none() {
            return;
        }
        // Only copies here: the references are hex-encoded by the writer thread, off the scoring path.
        let record = ContactCapture {
            contact: CapturedContact::of(contact, keys.0.copied(), keys.1.copied()),
            features,
            model_version: Arc::clone(&assessment.model_version),
            score: assessment.band.map(|band| (assessment.likelihood, band.as_str())),
            degraded_reasons: assessment.degraded_reasons.clone(),
            naive_recent,
        };
        self.offer(Record::Contact(Box::new(record), wall_clock_ms()));
    }

    /// Captures an outcome recorded for the first time for `contact`, whose number's and device's history keys the
    /// screener computed to record it (`keys`): nothing is hashed twice.
    pub fn outcome(&self, keys: (Option<HistoryKey>, Option<HistoryKey>), contact: &Contact, report: &OutcomeReport) {
        if self.sender.is_none() {
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
            category: report.category.clone(),
        };
        self.offer(Record::Outcome(Box::new(record), wall_clock_ms()));
    }

    /// Removes every record naming one of `keys` (a number's or a device's history key) from the capture files:
    /// the writer completes its open file first, then rewrites every file that holds one. The records removed;
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
        let Some(sender) = &self.sender else { return Ok(0) };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let mut message = Message::Erase(names, reply);
        // The queue is bounded and never waited on by scoring; an erasure waits its turn behind the records.
        loop {
            match sender.try_send(message) {
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

    /// Queues a record, or drops and counts it when the queue is full or the writer has stopped.
    pub fn offer(&self, record: Record) {
        let Some(sender) = &self.sender else { return };
        match sender.try_send(Message::Record(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.inc();
            }
        }
    }
}

/// What the writer did, returned when it is closed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriterReport {
    /// Files closed and kept.
    pub files: Vec<PathBuf>,
    /// Records in them.
    pub written: u64,
    /// Records lost to write errors.
    pub failed: u64,
    /// CPU time the writer thread used, in seconds, where the kernel reports it (Linux).
    pub cpu_seconds: Option<f64>,
}

/// The writer thread; close it on shutdown so its open file is completed.
pub struct CaptureWriter {
    sender: SyncSender<Message>,
    thread: JoinHandle<WriterReport>,
}

impl std::fmt::Debug for CaptureWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("CaptureWriter(..)")
    }
}

/// Why capture could not start.
#[derive(Debug, thiserror::Error)]
#[error("capture directory {path}: {source}")]
pub struct CaptureError {
    /// The directory.
    pub path: String,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Starts capturing into `settings.dir` (created if missing, and checked writable): returns the screener's handle
/// and the writer. Prunes files past retention first.
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
    let leftovers = partial_files(&dir).map_err(fail)?;
    if !leftovers.is_empty() {
        tracing::warn!(
            files = leftovers.len(),
            dir = %dir.display(),
            "capture: files left open by a run that did not shut down cleanly (.parquet.partial) are incomplete and \
             not read by saring-train"
        );
    }
    let retention_days = settings.retention_days;
    prune(&dir, retention_days, wall_clock_ms());
    let (sender, receiver) = std::sync::mpsc::sync_channel(settings.queue_capacity);
    let writer = Writer {
        dir: dir.clone(),
        replica: settings.replica_name(),
        retention_days,
        rotate,
        counters: counters.clone(),
        open: None,
        pending: Vec::new(),
        report: WriterReport::default(),
    };
    let thread =
        std::thread::Builder::new().name("saring-capture".into()).spawn(move || writer.run(receiver)).map_err(fail)?;
    Ok((Capture { sender: Some(sender.clone()), counters }, CaptureWriter { sender, thread }))
}

impl CaptureWriter {
    /// Writes what is queued, closes and fsyncs the open file, and stops the thread. Records offered after this are
    /// dropped (and counted).
    pub fn close(self) -> WriterReport {
        // A blocking send: the writer is draining the queue, so room appears.
        let _ = self.sender.send(Message::Close);
        self.thread.join().unwrap_or_else(|_| {
            tracing::error!("capture: the writer thread panicked; its open file is incomplete");
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

/// Records buffered before a batch is handed to the Parquet writer.
const BATCH_ROWS: usize = 4096;
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 65_536;
/// How often buffered records are handed over and the day checked when fewer than a batch arrive.
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// How long the writer sleeps when the queue is empty.
const POLL: Duration = Duration::from_millis(20);

struct OpenFile {
    day: String,
    opened: Instant,
    partial: PathBuf,
    path: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
}

struct Writer {
    dir: PathBuf,
    replica: String,
    retention_days: u64,
    rotate: Duration,
    counters: CaptureCounters,
    open: Option<OpenFile>,
    pending: Vec<Record>,
    report: WriterReport,
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

impl Writer {
    fn run(mut self, receiver: Receiver<Message>) -> WriterReport {
        // Scoring comes first: under CPU contention the writer runs at the lowest priority (nice 19 on Linux) and
        // the queue absorbs its lag; only a replica saturated for longer than the queue lasts drops records
        // (counted). Below saturation there is idle CPU and it keeps up.
        if let Err(error) = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min) {
            tracing::warn!(?error, "capture: cannot lower the writer's priority; it competes with scoring for CPU");
        }
        // The writer polls rather than waiting on the queue: a sender whose receiver is parked must wake it (a
        // futex call, a few microseconds on the scoring path for every record); a poll every POLL leaves senders
        // a plain push. The queue holds far more than POLL's worth of records at any rate a replica scores.
        let mut last_handover = Instant::now();
        loop {
            let mut closing = false;
            loop {
                match receiver.try_recv() {
                    Ok(Message::Record(record)) => {
                        self.pending.push(record);
                        if self.pending.len() >= BATCH_ROWS {
                            self.write_pending();
                            last_handover = Instant::now();
                        }
                    }
                    Ok(Message::Erase(names, reply)) => {
                        self.write_pending();
                        self.close_file();
                        let result = erase_where(&self.dir, &names).map_err(|error| format!("{error:#}"));
                        if let Err(error) = &result {
                            tracing::error!(%error, "capture: erasure failed");
                        }
                        let _ = reply.send(result);
                        last_handover = Instant::now();
                    }
                    Ok(Message::Close) | Err(TryRecvError::Disconnected) => {
                        closing = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            if closing {
                // Whatever was queued before the close is written too.
                while let Ok(Message::Record(record)) = receiver.try_recv() {
                    self.pending.push(record);
                }
                self.write_pending();
                self.close_file();
                self.report.cpu_seconds = thread_cpu_seconds();
                return self.report;
            }
            if last_handover.elapsed() >= IDLE_WAKE {
                self.write_pending();
                last_handover = Instant::now();
                if self.rotation_due(&utc_day(wall_clock_ms())) {
                    self.close_file();
                    prune(&self.dir, self.retention_days, wall_clock_ms());
                }
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether the open file must be completed: the UTC day changed or it has been open for `rotate`.
    fn rotation_due(&self, today: &str) -> bool {
        self.open.as_ref().is_some_and(|open| open.day != today || open.opened.elapsed() >= self.rotate)
    }

    /// Hands buffered records to the open file (rotating first when the day changed or the file is old enough).
    fn write_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.pending);
        let today = utc_day(wall_clock_ms());
        if self.rotation_due(&today) {
            self.close_file();
            prune(&self.dir, self.retention_days, wall_clock_ms());
        }
        if self.open.is_none() {
            match self.open_file(&today) {
                Ok(open) => self.open = Some(open),
                Err(error) => {
                    tracing::error!(%error, dir = %self.dir.display(), "capture: cannot create a file; records lost");
                    self.lost(records.len() as u64);
                    return;
                }
            }
        }
        let open = self.open.as_mut().expect("opened above");
        let first_seq = open.rows;
        let written = build_batch(&records, first_seq).and_then(|batch| Ok(open.writer.write(&batch)?));
        match written {
            Ok(()) => open.rows += records.len() as u64,
            Err(error) => {
                tracing::error!(%error, file = %open.partial.display(), "capture: a write failed; the file is abandoned");
                self.lost(records.len() as u64);
                self.abandon_file();
            }
        }
    }

    fn lost(&mut self, records: u64) {
        self.counters.write_errors.inc_by(records);
        self.report.failed += records;
    }

    fn open_file(&self, day: &str) -> anyhow::Result<OpenFile> {
        let name = format!("capture-{day}-{}-{}.parquet", self.replica, wall_clock_ms());
        let path = self.dir.join(&name);
        let partial = self.dir.join(format!("{name}.partial"));
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&partial)?;
        let properties = writer_properties(vec![
            KeyValue::new("saring.feature_schema".to_owned(), schema_fingerprint()),
            KeyValue::new("saring.replica".to_owned(), self.replica.clone()),
        ]);
        let writer = ArrowWriter::try_new(file, capture_schema(), Some(properties))?;
        Ok(OpenFile { day: day.to_owned(), opened: Instant::now(), partial, path, writer, rows: 0 })
    }

    /// Drops the open file (after a failed write): its records are counted lost.
    fn abandon_file(&mut self) {
        if let Some(open) = self.open.take() {
            self.counters.write_errors.inc_by(open.rows);
            self.report.failed += open.rows;
            drop(open.writer);
            let _ = std::fs::remove_file(&open.partial);
        }
    }

    /// Completes the open file: footer, fsync, rename, directory fsync.
    fn close_file(&mut self) {
        let Some(open) = self.open.take() else { return };
        let rows = open.rows;
        let completed = (|| -> anyhow::Result<()> {
            let file = open.writer.into_inner()?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&open.partial, &open.path)?;
            File::open(&self.dir)?.sync_all()?;
            Ok(())
        })();
        match completed {
            Ok(()) => {
                self.counters.written.inc_by(rows);
                self.report.written += rows;
                self.report.files.push(open.path.clone());
                tracing::info!(
                    file = %open.path.display(),
                    records = rows,
                    writer_cpu_s = thread_cpu_seconds().unwrap_or(f64::NAN),
                    "capture: file closed"
                );
            }
            Err(error) => {
                tracing::error!(%error, file = %open.partial.display(), records = rows, "capture: cannot complete the file; its records are lost");
                self.lost(rows);
                let _ = std::fs::remove_file(&open.partial);
            }
        }
    }
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
/// records removed. Files a crashed run left open (`.parquet.partial`, no footer: no reader can open them, so they
/// cannot be rewritten record by record) may hold such records too: they are deleted, and logged.
/// Called by the writer after it completed its own open file, so no `.partial` file is being written then.
pub fn erase_where(dir: &Path, names: &dyn Fn(&str) -> bool) -> anyhow::Result<u64> {
    use arrow_array::{Array, BooleanArray, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let leftovers = partial_files(dir)?;
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

/// The `.parquet.partial` files in `dir` (left by a run that did not shut down).
fn partial_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.ends_with(".parquet.partial")) {
            found.push(path);
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

/// Deletes capture files (complete or partial) whose day is more than `retention_days` before `now_ms`'s day.
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
        if day < oldest_kept.as_str() && (name.ends_with(".parquet") || name.ends_with(".parquet.partial")) {
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
fn build_batch(records: &[Record], first_seq: u64) -> anyhow::Result<RecordBatch> {
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
                contact_id.append_value(&common.contact_id);
                caller_ref.append_option(common.caller_ref.as_ref().map(|key| hex_of(key, &mut hex)));
                device_ref.append_option(common.device_ref.as_ref().map(|key| hex_of(key, &mut hex)));
                received_at.append_value(common.received_at_ms);
                channel.append_value(common.channel);
                region.append_value(&common.region);
                feature_schema.append_option(contact.features.map(|_| fingerprint.as_str()));
                model_version.append_value(&*contact.model_version);
                likelihood.append_option(contact.score.map(|(likelihood, _)| likelihood));
                band.append_option(contact.score.map(|(_, band)| band));
                degraded.append_value(contact.degraded_reasons.join(","));
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
                contact_id.append_value(&common.contact_id);
                caller_ref.append_option(common.caller_ref.as_ref().map(|key| hex_of(key, &mut hex)));
                device_ref.append_option(common.device_ref.as_ref().map(|key| hex_of(key, &mut hex)));
                received_at.append_value(common.received_at_ms);
                channel.append_value(common.channel);
                region.append_value(&common.region);
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
                category.append_option(outcome.category.as_deref());
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

    fn contact_record(id: &str, features: Option<FeatureVector>) -> Record {
        Record::Contact(
            Box::new(ContactCapture {
                contact: CapturedContact {
                    contact_id: id.to_owned(),
                    caller_ref: Some(HistoryKey([0xab; 32])),
                    device_ref: None,
                    received_at_ms: 1_772_000_000_000,
                    channel: "voice",
                    region: "ntt.kupang".to_owned(),
                },
                features,
                model_version: Arc::from("m-1"),
                score: features.map(|_| (0.25, "low")),
                degraded_reasons: if features.is_some() { vec![] } else { vec!["model_failure"] },
                naive_recent: 0.5,
            }),
            1_772_000_000_100,
        )
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
        capture.offer(contact_record("c-1", Some(vector)));
        capture.offer(contact_record("c-2", None));
        let report = writer.close();
        assert_eq!(report.written, 2);
        assert_eq!(report.files.len(), 1);
        assert_eq!(counters.written.get(), 2);
        let name = report.files[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with(&format!("capture-{}-r1-", utc_day(wall_clock_ms()))), "{name}");
        assert!(partial_files(dir.path()).unwrap().is_empty());
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
        capture.offer(contact_record("c-3", None));
        assert_eq!(counters.dropped.get(), 1);
    }

    #[test]
    fn an_erasure_removes_the_records_of_a_key_from_every_file_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let settings = CaptureSettings { rotate_minutes: 1, ..settings_in(dir.path()) };
        let (capture, writer) = start(&settings, CaptureCounters::default()).unwrap();
        let (erased, kept) = (HistoryKey([0xab; 32]), HistoryKey([0xcd; 32]));
        let with_refs = |id: &str, caller: HistoryKey, device: Option<HistoryKey>| {
            let Record::Contact(mut record, at) = contact_record(id, None) else { unreachable!() };
            record.contact.caller_ref = Some(caller);
            record.contact.device_ref = device;
            Record::Contact(record, at)
        };
        capture.offer(with_refs("a-1", erased, None));
        capture.offer(with_refs("k-1", kept, None));
        capture.offer(with_refs("k-2", kept, Some(erased)));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // The open file is completed first, so records still queued or buffered are erased too.
        assert_eq!(runtime.block_on(capture.erase(&[erased])).unwrap(), 2);
        capture.offer(with_refs("k-3", kept, None));
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
    fn files_are_completed_at_each_rotation_so_a_crash_loses_only_the_open_one() {
        let dir = tempfile::tempdir().unwrap();
        let counters = CaptureCounters::default();
        let settings = settings_in(dir.path());
        let (capture, writer) = start_rotating(&settings, counters.clone(), Duration::from_millis(200)).unwrap();
        capture.offer(contact_record("c-1", None));
        // The idle hand-over (every second) writes c-1; the next one finds the file older than the rotation.
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
        capture.offer(contact_record("c-2", None));
        let report = writer.close();
        assert_eq!((report.written, report.files.len()), (2, 2), "two files completed in this run");
        assert_eq!(counters.written.get(), 2);
        assert_eq!(partial_files(dir.path()).unwrap().len(), 0);
    }

    #[test]
    fn an_erasure_deletes_the_files_a_crashed_run_left_open() {
        let dir = tempfile::tempdir().unwrap();
        let leftover = dir.path().join("capture-2026-02-14-r1-2.parquet.partial");
        std::fs::write(&leftover, b"PAR1 no footer: a run that crashed").unwrap();
        assert_eq!(erase_where(dir.path(), &|reference: &str| reference == "ab").unwrap(), 0);
        assert!(!leftover.exists());
        assert!(partial_files(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (sender, _receiver) = std::sync::mpsc::sync_channel(1);
        let counters = CaptureCounters::default();
        let capture = Capture { sender: Some(sender), counters: counters.clone() };
        capture.offer(contact_record("c-1", None));
        capture.offer(contact_record("c-2", None));
        capture.offer(contact_record("c-3", None));
        assert_eq!(counters.dropped.get(), 2);
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
            "notes-2020-01-01.parquet",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(prune(dir.path(), 10, now_ms), 2);
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
