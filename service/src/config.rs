//! Configuration in layers: built-in defaults → TOML file → `SARING__SECTION__KEY` environment variables →
//! command-line flags. Checked before the runtime starts; an invalid value names its key.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Everything `saring serve` can be configured with. See `config/reference.toml` for each key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The gRPC listener.
    pub server: ServerSettings,
    /// The model artifact.
    pub model: ModelSettings,
    /// Caller history.
    pub history: HistorySettings,
    /// Personal-data protection.
    pub privacy: PrivacySettings,
    /// Logs.
    pub log: LogSettings,
    /// The escalation ladder.
    pub ladder: LadderSettings,
    /// The case database.
    pub cases: CasesSettings,
    /// The audit chain's key and anchor.
    pub audit: AuditSettings,
    /// Bearer tokens and their roles.
    pub auth: AuthSettings,
    /// The web console.
    pub console: ConsoleSettings,
    /// Prometheus metrics on the admin port.
    pub metrics: MetricsSettings,
    /// Per-role concurrency and rate limits on the gRPC API.
    pub limits: crate::server::limits::LimitsSettings,
    /// Capture of pseudonymised training records.
    pub capture: crate::capture::CaptureSettings,
    /// Recorded outcomes and their corrections.
    pub outcomes: OutcomesSettings,
    /// Trace export (OTLP).
    pub telemetry: crate::otlp::TelemetrySettings,
}

/// `[outcomes]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutcomesSettings {
    /// Hours after a contact arrived during which its disposition may be corrected (CorrectOutcome, the operator
    /// console). At most `history.marker_window_h`: a correction relies on the history's per-contact marker.
    pub correction_window_hours: u64,
}

impl Default for OutcomesSettings {
    fn default() -> Self {
        OutcomesSettings { correction_window_hours: 24 }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Serve `/metrics` on the admin port (`console.listen`).
    pub enabled: bool,
    /// Seconds between full verifications of the audit chain started by scrapes.
    pub audit_verify_interval_s: u64,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings { enabled: true, audit_verify_interval_s: 300 }
    }
}

/// `[console]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// Serve the web console's pages.
    pub enabled: bool,
    /// Address of the admin HTTP listener: the console and `/metrics` (bound when either is enabled).
    pub listen: String,
    /// Allow a non-loopback `listen`: the console speaks plain HTTP (sign-in tokens, session cookies), so it
    /// belongs behind a TLS-terminating proxy; this flag says one is there.
    pub allow_plaintext: bool,
    /// The address browsers reach the console at through the proxy (`https://host[:port]`); empty: none.
    pub public_url: String,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            enabled: true,
            listen: "127.0.0.1:8080".into(),
            allow_plaintext: false,
            public_url: String::new(),
        }
    }
}

/// `[cases]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CasesSettings {
    /// `sqlite://PATH` (the embedded default, a file under the data directory) or `postgres://…`.
    pub database_url: String,
    /// How long a dispatcher's claim on an approved case keeps other dispatchers out, 1..=1440 minutes.
    pub claim_minutes: u64,
    /// Test and training traffic: outcomes are recorded in history (scores behave as in production) but never
    /// reach the ladder, so no case is ever proposed and the case database holds none of them.
    pub sandbox: bool,
    /// Outcome rows (`contacts`) older than this many days that ground no case are deleted; 0 keeps them.
    pub contacts_retention_days: u32,
    /// Rejected and reverted cases unchanged for this many days lose their number and their contacts (the case
    /// and its audit trail stay, verifiable); 0 keeps them.
    pub closed_cases_retention_days: u32,
    /// How often each replica prunes, minutes (1..=1440).
    pub retention_interval_minutes: u32,
}

impl Default for CasesSettings {
    fn default() -> Self {
        CasesSettings {
            database_url: "sqlite://saring-data/cases.db".into(),
            claim_minutes: crate::cases::DEFAULT_CLAIM_MINUTES,
            sandbox: false,
            contacts_retention_days: 400,
            closed_cases_retention_days: 730,
            retention_interval_minutes: 60,
        }
    }
}

/// `[audit]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Secret for the audit chain's HMAC-SHA256 links (at least 16 bytes), kept outside the case database.
    /// Required with PostgreSQL; unset with SQLite: a public development secret and a warning.
    pub chain_secret: Option<String>,
    /// The anchor file (the latest audit entry this replica committed, MACed); unset: beside a SQLite file
    /// (`cases.db.audit-anchor`), or `saring-data/audit-anchor-<hash of the URL>` for PostgreSQL.
    pub anchor_path: Option<PathBuf>,
}

impl Settings {
    /// The audit anchor file: `[audit] anchor_path`, or the default for the case database (none in memory).
    pub fn audit_anchor_path(&self) -> Option<PathBuf> {
        self.audit.anchor_path.clone().or_else(|| crate::cases::anchor::default_path(&self.cases.database_url))
    }
}

/// `[auth]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// `[[auth.tokens]]`: name, role and SHA-256 of each token. None configured: development mode, which generates
    /// one token per role at start-up and prints them.
    pub tokens: Vec<crate::auth::TokenEntry>,
    /// `[[auth.clients]]`: name and role of each client certificate identity (needs `server.tls.client_ca_path`).
    pub clients: Vec<crate::auth::ClientEntry>,
    /// Development mode only (no `tokens`): keep the generated tokens in this file (mode 0600) and read them from
    /// it at the next start, so they stay the same across restarts. Refused with tokens configured.
    pub development_tokens_file: Option<PathBuf>,
    /// `[auth.failures]`: throttling of peer addresses that fail to authenticate.
    pub failures: crate::failed_auth::FailedAuthSettings,
}

/// `[ladder]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LadderSettings {
    /// A ladder policy (TOML); unset: the shipped default (`models/ladder/default.toml`).
    pub path: Option<PathBuf>,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on for gRPC.
    pub listen: String,
    /// Seconds in-flight calls get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_s: u64,
    /// Allow serving gRPC without TLS on a non-loopback address.
    pub allow_plaintext: bool,
    /// Largest message, in bytes, decoded from a request or encoded into a reply, on every service.
    pub max_message_bytes: usize,
    /// The longest a call may run, in milliseconds; a shorter `grpc-timeout` from the client wins.
    pub max_deadline_ms: u64,
    /// TLS on the gRPC listener; absent: plaintext.
    pub tls: Option<TlsSettings>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:50051".into(),
            shutdown_grace_s: 10,
            allow_plaintext: false,
            max_message_bytes: 4 * 1024 * 1024,
            max_deadline_ms: 30_000,
            tls: None,
        }
    }
}

/// `[server.tls]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain, the server's certificate first.
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate.
    pub key_path: PathBuf,
    /// PEM certificates of the CAs whose client certificates are accepted; unset: no client certificates.
    pub client_ca_path: Option<PathBuf>,
    /// With `client_ca_path`: `required` (every connection presents a certificate the CAs signed) or `optional`
    /// (a connection without one authenticates with a bearer token; one presented must verify).
    pub client_auth: ClientAuth,
    /// Seconds between checks of the three files; changed files serve new connections (0: never reloaded).
    pub reload_interval_s: u64,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            cert_path: PathBuf::new(),
            key_path: PathBuf::new(),
            client_ca_path: None,
            client_auth: ClientAuth::Required,
            reload_interval_s: 5,
        }
    }
}

/// Whether clients must present a certificate (`server.tls.client_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// Every connection presents a certificate signed by one of `client_ca_path`'s CAs.
    Required,
    /// A certificate is verified when presented; without one, callers use bearer tokens.
    Optional,
}

/// `[model]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSettings {
    /// Path of a model artifact; unset serves the model shipped inside the binary.
    pub path: Option<PathBuf>,
    /// Path of a challenger artifact scored in shadow on every contact (never returned to callers).
    pub challenger_path: Option<PathBuf>,
    /// Seconds between checks of the model files for changes (hot reload); 0 turns watching off.
    pub watch_interval_s: u64,
    /// Minutes per drift window.
    pub drift_window_minutes: u64,
    /// Labelled contacts a live-quality window needs before it has figures.
    pub quality_min_labelled: u64,
    /// Labelled contacts kept for live quality (the oldest go first; a week's are kept at most).
    pub quality_max_samples: usize,
    /// Seconds between refreshes of the live-quality metrics and the below-naive warning.
    pub quality_refresh_s: u64,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            path: None,
            challenger_path: None,
            watch_interval_s: 5,
            drift_window_minutes: 60,
            quality_min_labelled: crate::modelops::quality::DEFAULT_MIN_LABELLED,
            quality_max_samples: crate::modelops::quality::DEFAULT_MAX_SAMPLES,
            quality_refresh_s: 60,
        }
    }
}

/// `[history]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySettings {
    /// Where histories live: `memory` (the embedded default) or `redis://HOST:PORT/DB`.
    pub store: String,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
    /// Days an untouched history is kept in Redis (the TTL is refreshed on every write).
    pub retention_days: u64,
    /// Milliseconds RecordOutcome waits for Redis before writing the outcome to the journal instead.
    pub write_budget_ms: u64,
    /// The local journal that keeps outcomes Redis could not take, until they are replayed.
    pub journal_path: PathBuf,
    /// Milliseconds ScoreContact waits for history before answering without it (degraded).
    pub budget_ms: u64,
    /// How many recently scored contacts are remembered, so an outcome need not repeat its contact.
    pub recent_contacts: usize,
    /// Hours a recorded contact id is remembered to ignore repeated outcomes.
    pub marker_window_h: u64,
    /// Replicas a history write must reach (Redis `WAIT`) before an outcome counts as taken; otherwise it is
    /// journaled. 0: do not wait (a failover can lose writes the old master had not replicated).
    pub redis_wait_replicas: u32,
    /// Milliseconds a write waits for those replicas; less than `write_budget_ms`.
    pub redis_wait_timeout_ms: u64,
    /// Histories a Redis store keeps in this process (the last read or written), so a read that misses
    /// `budget_ms` answers from the last known history (`history_stale`) instead of none. 0: off.
    pub near_cache_entries: usize,
    /// Redis buckets histories by the first this many bits of their keyed hash (1..=24): 2^bits hashes per kind,
    /// each holding a few hundred callers as one compact listpack. Choose so that callers ÷ 2^bits stays
    /// between ~50 and `hash-max-listpack-entries` (16 for up to ~30 million callers). Fixed once data is written:
    /// a replica configured otherwise refuses the store.
    pub redis_bucket_bits: u8,
}

/// The smallest near-cache (`history.near_cache_entries`) other than 0: two generations in each of its 64 shards.
const MIN_NEAR_CACHE_ENTRIES: usize = 128;
/// The largest near-cache: about 7 GB of histories.
const MAX_NEAR_CACHE_ENTRIES: usize = 16_777_216;

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            store: "memory".into(),
            redis_prefix: "saring".into(),
            retention_days: 180,
            write_budget_ms: 50,
            journal_path: PathBuf::from("saring-data/outcomes.journal"),
            budget_ms: 5,
            recent_contacts: 200_000,
            marker_window_h: 7 * 24,
            redis_wait_replicas: 0,
            redis_wait_timeout_ms: 20,
            near_cache_entries: crate::store::redis::DEFAULT_NEAR_CACHE_ENTRIES,
            redis_bucket_bits: crate::store::redis::DEFAULT_BUCKET_BITS,
        }
    }
}

/// `[privacy]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySettings {
    /// Secret for HMAC-SHA256 history keys (at least 16 bytes). Unset: a fixed development secret is used and a
    /// warning logged; never run production without one.
    pub hash_secret: Option<String>,
    /// Earlier secrets, newest first, while a rotation is under way: histories are read under each and merged,
    /// written under `hash_secret` only (OPERATIONS.md, "rotation").
    pub previous_hash_secrets: Vec<String>,
    /// How often this replica reads the erasure notices other replicas issued (`crate::notices`), seconds (1 ..
    /// 3600).
    pub notice_interval_seconds: u32,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        PrivacySettings { hash_secret: None, previous_hash_secrets: Vec::new(), notice_interval_seconds: 5 }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `saring=debug`.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { format: "text".into(), filter: "info".into() }
    }
}

/// Flags that override every other layer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagOverrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--model`
    pub model: Option<PathBuf>,
    /// `--log-format`
    pub log_format: Option<String>,
    /// `--history`
    pub history: Option<String>,
    /// `--ladder`
    pub ladder: Option<PathBuf>,
    /// `--database-url`
    pub database_url: Option<String>,
    /// `--console-listen`
    pub console_listen: Option<String>,
    /// `--capture`
    pub capture: Option<PathBuf>,
    /// `--dev-tokens-file`
    pub dev_tokens_file: Option<PathBuf>,
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// What the admin port serves, or `None` when it serves nothing (and is not bound).
    pub fn admin_options(&self) -> Option<crate::console::AdminOptions> {
        (self.console.enabled || self.metrics.enabled).then(|| crate::console::AdminOptions {
            pages: self.console.enabled,
            metrics: self.metrics.enabled,
            audit_verify_interval: std::time::Duration::from_secs(self.metrics.audit_verify_interval_s),
            public_origin: (!self.console.public_url.is_empty())
                .then(|| self.console.public_url.trim_end_matches('/').to_ascii_lowercase()),
        })
    }

    /// Loads the layers and validates the result.
    pub fn load(file: Option<&std::path::Path>, flags: &FlagOverrides) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("SARING__").split("__").lowercase(true));
        if let Some(listen) = &flags.listen {
            figment = figment.merge(Serialized::default("server.listen", listen));
        }
        if let Some(listen) = &flags.console_listen {
            figment = figment.merge(Serialized::default("console.listen", listen));
        }
        if let Some(model) = &flags.model {
            figment = figment.merge(Serialized::default("model.path", model));
        }
        if let Some(history) = &flags.history {
            figment = figment.merge(Serialized::default("history.store", history));
        }
        if let Some(ladder) = &flags.ladder {
            figment = figment.merge(Serialized::default("ladder.path", ladder));
        }
        if let Some(url) = &flags.database_url {
            figment = figment.merge(Serialized::default("cases.database_url", url));
        }
        if let Some(dir) = &flags.capture {
            figment = figment.merge(Serialized::default("capture.dir", dir));
        }
        if let Some(path) = &flags.dev_tokens_file {
            figment = figment.merge(Serialized::default("auth.development_tokens_file", path));
        }
        if let Some(format) = &flags.log_format {
            figment = figment.merge(Serialized::default("log.format", format));
        }
        let settings: Settings = figment.extract().map_err(|error| ConfigError(error.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError(message));
        let Ok(listen) = self.listen_addr() else {
            return fail(format!("server.listen: {:?} is not an address like 127.0.0.1:50051", self.server.listen));
        };
        self.validate_transport(listen)?;
        let store = self.history.store.as_str();
        let redis = store.starts_with("redis://") || store.starts_with("redis-cluster://");
        if store != "memory" && !redis {
            return fail(format!(
                "history.store: {store:?} must be \"memory\", redis://HOST:PORT/DB or redis-cluster://HOST:PORT,HOST:PORT"
            ));
        }
        if redis {
            let parsed = match store.strip_prefix("redis-cluster://") {
                Some(nodes) => {
                    redis::cluster::ClusterClient::new(nodes.split(',').map(|node| format!("redis://{node}"))).map(drop)
                }
                None => redis::Client::open(store).map(drop),
            };
            if let Err(error) = parsed {
                return fail(format!("history.store: {error}"));
            }
            if self.privacy.hash_secret.is_none() {
                return fail(
                    "privacy.hash_secret: required with a Redis history store (histories are shared and kept)".into(),
                );
            }
        }
        if !(1..=crate::store::redis::MAX_BUCKET_BITS).contains(&self.history.redis_bucket_bits) {
            return fail(format!(
                "history.redis_bucket_bits: {} must be within 1..={}",
                self.history.redis_bucket_bits,
                crate::store::redis::MAX_BUCKET_BITS
            ));
        }
        if self.history.write_budget_ms == 0 || self.history.retention_days == 0 {
            return fail("history.write_budget_ms and history.retention_days: must be positive".into());
        }
        if self.history.redis_wait_replicas > 0
            && (self.history.redis_wait_timeout_ms == 0
                || self.history.redis_wait_timeout_ms >= self.history.write_budget_ms)
        {
            return fail(format!(
                "history.redis_wait_timeout_ms: {} must be between 1 and history.write_budget_ms ({}) - 1",
                self.history.redis_wait_timeout_ms, self.history.write_budget_ms
            ));
        }
        let window = self.outcomes.correction_window_hours;
        if window == 0 || window > self.history.marker_window_h {
            return fail(format!(
                "outcomes.correction_window_hours: {window} must be between 1 and history.marker_window_h ({}): a \
                 correction needs the history's per-contact marker",
                self.history.marker_window_h
            ));
        }
        let near = self.history.near_cache_entries;
        if near != 0 && !(MIN_NEAR_CACHE_ENTRIES..=MAX_NEAR_CACHE_ENTRIES).contains(&near) {
            return fail(format!(
                "history.near_cache_entries: {near} must be 0 (off) or between {MIN_NEAR_CACHE_ENTRIES} and \
                 {MAX_NEAR_CACHE_ENTRIES}"
            ));
        }
        if self.history.budget_ms == 0 || self.history.budget_ms > 10_000 {
            return fail(format!("history.budget_ms: {} must be between 1 and 10000", self.history.budget_ms));
        }
        if self.privacy.hash_secret.as_ref().is_some_and(|secret| secret.len() < 16) {
            return fail("privacy.hash_secret: must be at least 16 bytes".into());
        }
        if !self.privacy.previous_hash_secrets.is_empty() && self.privacy.hash_secret.is_none() {
            return fail("privacy.previous_hash_secrets: a rotation needs the new privacy.hash_secret".into());
        }
        for (index, previous) in self.privacy.previous_hash_secrets.iter().enumerate() {
            if previous.len() < 16 {
                return fail(format!("privacy.previous_hash_secrets[{index}]: must be at least 16 bytes"));
            }
            if Some(previous) == self.privacy.hash_secret.as_ref() {
                return fail(format!("privacy.previous_hash_secrets[{index}]: is the current hash_secret"));
            }
        }
        if self.audit.chain_secret.as_ref().is_some_and(|secret| secret.len() < 16) {
            return fail("audit.chain_secret: must be at least 16 bytes".into());
        }
        if self.audit.anchor_path.as_ref().is_some_and(|path| path.as_os_str().is_empty() || path.is_dir()) {
            return fail("audit.anchor_path: must name a file (not a directory)".into());
        }
        if self.model.drift_window_minutes == 0 || self.model.drift_window_minutes > 7 * 24 * 60 {
            return fail(format!(
                "model.drift_window_minutes: {} must be between 1 and 10080 (a week)",
                self.model.drift_window_minutes
            ));
        }
        if self.model.quality_min_labelled < 20 {
            return fail(format!(
                "model.quality_min_labelled: {} must be at least 20 (ranking figures on fewer mean nothing)",
                self.model.quality_min_labelled
            ));
        }
        if !(1_000..=50_000_000).contains(&self.model.quality_max_samples) {
            return fail(format!(
                "model.quality_max_samples: {} must be between 1000 and 50000000",
                self.model.quality_max_samples
            ));
        }
        if self.model.quality_refresh_s == 0 {
            return fail("model.quality_refresh_s: must be at least 1".into());
        }
        if self.model.challenger_path.is_some() && self.model.challenger_path == self.model.path {
            return fail("model.challenger_path: must not be the champion's file (model.path)".into());
        }
        if !self.console.public_url.is_empty() {
            let url = self.console.public_url.trim_end_matches('/');
            let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            if !rest.is_some_and(|host| !host.is_empty() && !host.contains(['/', '?', '#', '@', ' '])) {
                return fail(format!(
                    "console.public_url: {:?} must be an origin, https://HOST[:PORT] (no path)",
                    self.console.public_url
                ));
            }
        }
        match self.console_addr() {
            Err(error) => return fail(format!("console.listen: {:?}: {error}", self.console.listen)),
            Ok(console) if self.console.enabled && !console.ip().is_loopback() && !self.console.allow_plaintext => {
                return fail(format!(
                    "console.listen: {console} is not a loopback address and the console speaks plain HTTP; put it \
                     behind a TLS-terminating proxy and set console.allow_plaintext = true"
                ))
            }
            Ok(_) => {}
        }
        self.ladder_policy()?;
        if self.auth.development_tokens_file.is_some() && !self.auth.tokens.is_empty() {
            return fail(
                "auth.development_tokens_file: only for development mode; [[auth.tokens]] are configured".into(),
            );
        }
        if self.cases.contacts_retention_days != 0 && self.cases.contacts_retention_days < 366 {
            return fail(format!(
                "cases.contacts_retention_days: {} is shorter than a year: a delivered rung is forgiven after up to \
                 365 quiet days, judged on the caller's contacts (0 keeps rows forever)",
                self.cases.contacts_retention_days
            ));
        }
        if !(1..=1440).contains(&self.cases.retention_interval_minutes) {
            return fail(format!(
                "cases.retention_interval_minutes: {} must be within 1..=1440",
                self.cases.retention_interval_minutes
            ));
        }
        if !(1..=1440).contains(&self.cases.claim_minutes) {
            return fail(format!("cases.claim_minutes: {} must be within 1..=1440", self.cases.claim_minutes));
        }
        let url = self.cases.database_url.as_str();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return fail(format!("cases.database_url: {url:?} must be sqlite://PATH or postgres://…"));
        }
        if !url.starts_with("sqlite:") && self.audit.chain_secret.is_none() {
            return fail(
                "audit.chain_secret: required with a PostgreSQL case database (the audit chain is keyed with it;                  keep it outside the database)"
                    .into(),
            );
        }
        if let Err(error) = crate::auth::Authenticator::from_entries(&self.auth.tokens)
            .and_then(|authenticator| authenticator.with_clients(&self.auth.clients))
        {
            return fail(error.to_string());
        }
        self.auth.failures.validate()?;
        if self.metrics.audit_verify_interval_s == 0 {
            return fail("metrics.audit_verify_interval_s: must be positive".into());
        }
        self.limits.validate()?;
        self.capture.validate().map_err(ConfigError)?;
        if !(1..=3600).contains(&self.privacy.notice_interval_seconds) {
            return fail(format!(
                "privacy.notice_interval_seconds: {} must be 1 .. 3600",
                self.privacy.notice_interval_seconds
            ));
        }
        if let Some(problem) = self.telemetry.problem() {
            return fail(problem);
        }
        if let Err(error) = crate::telemetry::filter(&self.log.filter) {
            return fail(format!("log.filter: {error}"));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return fail(format!("log.format: {:?} must be \"text\" or \"json\"", self.log.format));
        }
        Ok(())
    }

    /// TLS, plaintext and the call limits of `[server]`.
    fn validate_transport(&self, listen: SocketAddr) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError(message));
        let server = &self.server;
        match &server.tls {
            None if !listen.ip().is_loopback() && !server.allow_plaintext => {
                return fail(format!(
                    "server.listen: {listen} is not a loopback address; configure [server.tls] (cert_path, key_path) \
                     or set server.allow_plaintext = true to serve gRPC without TLS there"
                ))
            }
            None if !self.auth.clients.is_empty() => {
                return fail("auth.clients: client certificates need [server.tls] with client_ca_path".into())
            }
            None => {}
            Some(tls) => {
                if tls.cert_path.as_os_str().is_empty() || tls.key_path.as_os_str().is_empty() {
                    return fail(
                        "server.tls.cert_path and server.tls.key_path: both are required with [server.tls]".into(),
                    );
                }
                if tls.client_ca_path.is_none() && !self.auth.clients.is_empty() {
                    return fail("auth.clients: client certificates need server.tls.client_ca_path".into());
                }
            }
        }
        if server.max_message_bytes < 1024 || server.max_message_bytes > 256 * 1024 * 1024 {
            return fail(format!(
                "server.max_message_bytes: {} must be between 1024 and 268435456 (256 MiB)",
                server.max_message_bytes
            ));
        }
        if server.max_deadline_ms == 0 || server.max_deadline_ms > 3_600_000 {
            return fail(format!("server.max_deadline_ms: {} must be between 1 and 3600000", server.max_deadline_ms));
        }
        Ok(())
    }

    /// The configured ladder policy, read and validated (the shipped default when no path is set).
    pub fn ladder_policy(&self) -> Result<saring_models::ladder::LadderPolicy, ConfigError> {
        use saring_models::ladder::LadderPolicy;
        let Some(path) = &self.ladder.path else { return Ok(LadderPolicy::default_policy()) };
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError(format!("ladder.path: cannot read {}: {error}", path.display())))?;
        LadderPolicy::from_toml(&text).map_err(|error| ConfigError(format!("ladder.path {}: {error}", path.display())))
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.server.listen.parse()
    }

    /// The parsed console address.
    pub fn console_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.console.listen.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure type is not ours to choose
    fn layers_apply_in_order_and_bad_keys_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("saring.toml", "[server]\nlisten = \"127.0.0.1:6000\"\n[history]\nbudget_ms = 7\n")?;
            jail.set_env("SARING__HISTORY__BUDGET_MS", "9");
            let settings = Settings::load(Some("saring.toml".as_ref()), &FlagOverrides::default()).unwrap();
            assert_eq!(settings.server.listen, "127.0.0.1:6000");
            assert_eq!(settings.history.budget_ms, 9);
            let flags = FlagOverrides { listen: Some("127.0.0.1:7000".into()), ..FlagOverrides::default() };
            assert_eq!(Settings::load(Some("saring.toml".as_ref()), &flags).unwrap().server.listen, "127.0.0.1:7000");

            jail.set_env("SARING__HISTORY__BUDGET_MS", "0");
            let error = Settings::load(Some("saring.toml".as_ref()), &FlagOverrides::default()).unwrap_err();
            assert!(error.to_string().contains("history.budget_ms"), "{error}");
            jail.create_file("unknown.toml", "[server]\nlisten_on = \"x\"\n")?;
            let error = Settings::load(Some("unknown.toml".as_ref()), &FlagOverrides::default()).unwrap_err();
            assert!(error.to_string().contains("listen_on"), "{error}");
            Ok(())
        });
    }

    /// Every key of every section, as `section.key` (and `section.sub.key` for tables of a section).
    fn keys(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = value {
            for (key, inner) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                match inner {
                    serde_json::Value::Object(_) => keys(inner, &path, out),
                    _ => out.push(path),
                }
            }
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure type is not ours to choose
    fn the_reference_file_documents_every_key_and_loads() {
        let reference = include_str!("../../config/reference.toml");
        let mut all = Vec::new();
        keys(&serde_json::to_value(Settings::default()).unwrap(), "", &mut all);
        assert!(all.len() > 20, "{all:?}");
        for path in all {
            let (section, key) = path.rsplit_once('.').unwrap();
            let header = format!("[{section}]");
            let start = reference.find(&header).unwrap_or_else(|| panic!("config/reference.toml has no {header}"));
            let body = &reference[start + header.len()..];
            let body = &body[..body.find("\n[").unwrap_or(body.len())];
            let documented = body.lines().any(|line| {
                let line = line.trim_start_matches('#').trim_start();
                line.starts_with(&format!("{key} ="))
                    || line.starts_with(&format!("[{section}.{key}]"))
                    || line.starts_with(&format!("[[{section}.{key}]]"))
            });
            assert!(documented, "config/reference.toml does not document {path}");
        }
        // The file itself is a valid configuration (an unknown key in it would be refused).
        figment::Jail::expect_with(|jail| {
            jail.create_file("reference.toml", reference)?;
            Settings::load(Some("reference.toml".as_ref()), &FlagOverrides::default()).unwrap();
            Ok(())
        });
    }

    fn load_toml(toml: &str) -> Result<Settings, ConfigError> {
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(|error| ConfigError(error.to_string()))?;
        settings.validate().map(|()| settings)
    }

    #[test]
    fn the_reference_file_documents_the_defaults() {
        let reference = load_toml(include_str!("../../config/reference.toml")).unwrap();
        assert_eq!(reference, Settings::default());
    }

    #[test]
    fn the_correction_window_is_checked_against_the_marker_window() {
        assert_eq!(load_toml("").unwrap().outcomes.correction_window_hours, 24);
        assert_eq!(
            load_toml("[outcomes]\ncorrection_window_hours = 72\n").unwrap().outcomes.correction_window_hours,
            72
        );
        for refused in ["[outcomes]\ncorrection_window_hours = 0\n", "[outcomes]\ncorrection_window_hours = 169\n"] {
            let error = load_toml(refused).unwrap_err().to_string();
            assert!(error.contains("outcomes.correction_window_hours"), "{error}");
        }
        load_toml("[history]\nmarker_window_h = 400\n[outcomes]\ncorrection_window_hours = 400\n").unwrap();
    }

    #[test]
    fn plaintext_is_refused_off_loopback_unless_allowed() {
        let error = load_toml("[server]\nlisten = \"0.0.0.0:50051\"\n").unwrap_err().to_string();
        assert!(error.contains("server.listen") && error.contains("server.allow_plaintext"), "{error}");
        load_toml("[server]\nlisten = \"0.0.0.0:50051\"\nallow_plaintext = true\n").unwrap();
        load_toml("[server]\nlisten = \"[::1]:50051\"\n").unwrap();
        let tls = "[server]\nlisten = \"10.0.0.5:50051\"\n[server.tls]\ncert_path = \"c.pem\"\nkey_path = \"k.pem\"\n";
        assert_eq!(load_toml(tls).unwrap().server.tls.unwrap().client_auth, ClientAuth::Required);
        let no_key = "[server.tls]\ncert_path = \"c.pem\"\n";
        assert!(load_toml(no_key).unwrap_err().to_string().contains("server.tls.key_path"));

        let error = load_toml("[console]\nlisten = \"0.0.0.0:8080\"\n").unwrap_err().to_string();
        assert!(error.contains("console.listen") && error.contains("console.allow_plaintext"), "{error}");
        load_toml("[console]\nlisten = \"0.0.0.0:8080\"\nallow_plaintext = true\n").unwrap();
        load_toml("[console]\nenabled = false\nlisten = \"0.0.0.0:8080\"\n").unwrap();
    }

    #[test]
    fn client_identities_need_client_certificates_and_limits_are_checked() {
        let clients = "[[auth.clients]]\nname = \"routing-engine-1\"\nrole = \"routing\"\n";
        assert!(load_toml(clients).unwrap_err().to_string().contains("auth.clients"));
        let tls = "[server.tls]\ncert_path = \"c.pem\"\nkey_path = \"k.pem\"\nclient_ca_path = \"ca.pem\"\n";
        let settings = load_toml(&format!("{tls}{clients}")).unwrap();
        assert_eq!(settings.auth.clients[0].role, crate::auth::Role::Routing);

        let error = load_toml("[limits.operator]\nconcurrency = 0\n").unwrap_err().to_string();
        assert!(error.contains("limits.operator.concurrency"), "{error}");
        let error = load_toml("[limits.legal]\nrate_per_s = 5.0\nburst = 0\n").unwrap_err().to_string();
        assert!(error.contains("limits.legal.burst"), "{error}");
        let error = load_toml("[auth.failures]\nwindow_s = 0\n").unwrap_err().to_string();
        assert!(error.contains("auth.failures.window_s"), "{error}");
        let error = load_toml("[auth.failures]\ntrusted_proxies = [\"proxy\"]\n").unwrap_err().to_string();
        assert!(error.contains("auth.failures.trusted_proxies[0]"), "{error}");
        let error = load_toml("[server]\nmax_message_bytes = 10\n").unwrap_err().to_string();
        assert!(error.contains("server.max_message_bytes"), "{error}");
        let error = load_toml("[server]\nmax_deadline_ms = 0\n").unwrap_err().to_string();
        assert!(error.contains("server.max_deadline_ms"), "{error}");
    }

    #[test]
    fn the_near_cache_is_off_or_a_bounded_size() {
        assert_eq!(load_toml("").unwrap().history.near_cache_entries, 65_536);
        assert_eq!(load_toml("[history]\nnear_cache_entries = 0\n").unwrap().history.near_cache_entries, 0);
        for bad in ["1", "127", "16777217"] {
            let error = load_toml(&format!("[history]\nnear_cache_entries = {bad}\n")).unwrap_err().to_string();
            assert!(error.contains("history.near_cache_entries"), "{error}");
        }
    }

    #[test]
    fn the_audit_secret_is_required_with_postgres_and_long_enough() {
        let postgres = "[cases]\ndatabase_url = \"postgres://saring@pg/saring\"\n";
        let error = load_toml(postgres).unwrap_err().to_string();
        assert!(error.contains("audit.chain_secret") && error.contains("PostgreSQL"), "{error}");
        load_toml(&format!("{postgres}[audit]\nchain_secret = \"sixteen-bytes-or-more\"\n")).unwrap();
        let error = load_toml("[audit]\nchain_secret = \"short\"\n").unwrap_err().to_string();
        assert!(error.contains("audit.chain_secret"), "{error}");
        let error = load_toml("[audit]\nanchor_path = \"\"\n").unwrap_err().to_string();
        assert!(error.contains("audit.anchor_path"), "{error}");
        let settings = load_toml("[cases]\ndatabase_url = \"sqlite://data/cases.db\"\n").unwrap();
        assert_eq!(settings.audit_anchor_path(), Some("data/cases.db.audit-anchor".into()));
        let settings = load_toml("[audit]\nanchor_path = \"/anchors/a\"\n").unwrap();
        assert_eq!(settings.audit_anchor_path(), Some("/anchors/a".into()));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure type is not ours to choose
    fn waiting_for_replicas_needs_a_timeout_inside_the_write_budget() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SARING__HISTORY__REDIS_WAIT_REPLICAS", "1");
            let settings = Settings::load(None, &FlagOverrides::default()).unwrap();
            assert_eq!((settings.history.redis_wait_replicas, settings.history.redis_wait_timeout_ms), (1, 20));
            jail.set_env("SARING__HISTORY__REDIS_WAIT_TIMEOUT_MS", "50");
            let error = Settings::load(None, &FlagOverrides::default()).unwrap_err();
            assert!(error.to_string().contains("history.redis_wait_timeout_ms"), "{error}");
            jail.set_env("SARING__HISTORY__REDIS_WAIT_REPLICAS", "0");
            assert!(Settings::load(None, &FlagOverrides::default()).is_ok(), "not waiting: the timeout is unused");
            Ok(())
        });
    }
}
