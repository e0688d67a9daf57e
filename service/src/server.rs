//! Building and running the gRPC server: Screening, health and reflection, with a designed shutdown. What stands
//! between the socket and the services — TLS, deadlines, per-role limits, message sizes — is in [`Transport`] and
//! its modules.

pub mod deadline;
pub mod limits;
pub mod tls;
pub mod trace;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use saring_models::{Model, ModelArtifact};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::auth::{Authenticator, Role};
use crate::cases::audit::AuditKey;
use crate::cases::{AuditOptions, AuditStartError, CaseStore, Escalator};
use crate::config::Settings;
use crate::grpc::{EscalationsService, ModelsService, PrivacyService, ScreeningService};
use crate::metrics::RpcMetricsLayer;
use crate::modelops::quality::LiveQuality;
use crate::modelops::ModelRegistry;
use crate::privacy::KeyHasher;
use crate::proto::escalations_server::EscalationsServer;
use crate::proto::models_server::ModelsServer;
use crate::proto::privacy_server::PrivacyServer;
use crate::proto::screening_server::ScreeningServer;
use crate::screening::Screener;
use crate::store::journal::JournaledStore;
use crate::store::{HistoryStore, MemoryStore, RedisSettings, RedisStore};

use self::deadline::DeadlineLayer;
use self::limits::{Limits, LimitsLayer};
use self::tls::{ReloadingTls, TlsError};

/// The response future of the transport's tower layers.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The model shipped inside the binary, served when no model path is configured.
pub const SHIPPED_MODEL: &str = include_str!("../../models/artifacts/default.json");

/// The development secret for history keys, used only when none is configured.
pub const DEVELOPMENT_HASH_SECRET: &[u8] = b"saring-development-secret-not-for-production";

/// Why the service could not start, with the process exit code to use.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The model file could not be read (exit 66).
    #[error("cannot read model {path}: {source}")]
    ModelUnreadable {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The model was refused (exit 65).
    #[error("model {path} refused: {source}")]
    ModelRefused {
        /// The path, or "shipped".
        path: String,
        /// Why.
        source: saring_models::ArtifactError,
    },
    /// The history store or its journal could not be set up (exit 74).
    #[error("history store: {0}")]
    Store(String),
    /// The case database could not be opened or migrated (exit 74).
    #[error("case database: {0}")]
    Cases(String),
    /// The audit chain's last entry does not verify under `audit.chain_secret` (exit 64).
    #[error("{0}")]
    AuditSecret(String),
    /// The audit anchor cannot be trusted, the database is behind it, or it cannot be written (exit 65).
    #[error("{0}")]
    AuditAnchor(String),
    /// A TLS file could not be read (exit 66).
    #[error("tls: {0}")]
    TlsUnreadable(TlsError),
    /// The TLS files do not make a configuration (exit 65).
    #[error("tls: {0}")]
    TlsRefused(TlsError),
    /// The capture directory cannot take files (exit 73).
    #[error("{0}")]
    Capture(crate::capture::CaptureError),
    /// The development tokens file cannot be read or written, or holds something else (exit 73).
    #[error("auth.development_tokens_file: {0}")]
    DevelopmentTokens(String),
    /// The listener could not bind (exit 71).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl StartError {
    /// The sysexits-style exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::ModelUnreadable { .. } | StartError::TlsUnreadable(_) => 66,
            StartError::AuditSecret(_) => 64,
            StartError::ModelRefused { .. } | StartError::TlsRefused(_) | StartError::AuditAnchor(_) => 65,
            StartError::Bind { .. } => 71,
            StartError::Capture(_) | StartError::DevelopmentTokens(_) => 73,
            StartError::Store(_) | StartError::Cases(_) => 74,
        }
    }
}

/// Loads the configured model, or the shipped one.
pub fn load_model(settings: &Settings) -> Result<Model, StartError> {
    match &settings.model.path {
        Some(path) => read_start_model(path),
        None => {
            let artifact = ModelArtifact::from_json(SHIPPED_MODEL)
                .map_err(|source| StartError::ModelRefused { path: "shipped".to_owned(), source })?;
            Ok(Model::new(artifact))
        }
    }
}

fn read_start_model(path: &std::path::Path) -> Result<Model, StartError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| StartError::ModelUnreadable { path: path.display().to_string(), source })?;
    let artifact = ModelArtifact::from_json(&text)
        .map_err(|source| StartError::ModelRefused { path: path.display().to_string(), source })?;
    Ok(Model::new(artifact))
}

/// The champion (as [`load_model`]) and the configured challenger, in a registry that reloads their files.
pub fn load_models(settings: &Settings) -> Result<ModelRegistry, StartError> {
    let champion = load_model(settings)?;
    // A configured challenger path with no file yet (or whose model was promoted) means no challenger.
    let challenger =
        settings.model.challenger_path.as_deref().filter(|path| path.exists()).map(read_start_model).transpose()?;
    Ok(ModelRegistry::new(
        champion,
        settings.model.path.clone(),
        challenger,
        settings.model.challenger_path.clone(),
        Duration::from_secs(settings.model.drift_window_minutes * 60),
    )
    .with_quality(LiveQuality::new(settings.model.quality_max_samples, settings.model.quality_min_labelled)))
}

/// The key hasher the settings describe.
pub fn key_hasher(settings: &Settings) -> KeyHasher {
    match &settings.privacy.hash_secret {
        Some(secret) => KeyHasher::new(secret.as_bytes()).with_previous(&settings.privacy.previous_hash_secrets),
        None => {
            tracing::warn!("privacy.hash_secret is not set: using the development secret; set it in production");
            KeyHasher::new(DEVELOPMENT_HASH_SECRET)
        }
    }
}

/// How the case store keys and anchors its audit chain, as the settings describe.
pub fn audit_options(settings: &Settings) -> AuditOptions {
    let key = match &settings.audit.chain_secret {
        Some(secret) => AuditKey::new(secret.as_bytes()),
        None => {
            tracing::warn!("audit.chain_secret is not set: using the development secret; set it in production");
            AuditKey::development()
        }
    };
    AuditOptions { key, anchor_path: settings.audit_anchor_path() }
}

/// The in-memory history store the settings describe.
pub fn memory_store(settings: &Settings) -> MemoryStore {
    MemoryStore::new(Duration::from_secs(settings.history.marker_window_h * 3600))
}

/// The Redis history store behind its durable journal, as the settings describe. Does not connect yet.
pub fn redis_store(settings: &Settings) -> Result<JournaledStore<RedisStore>, StartError> {
    let history = &settings.history;
    let redis = redis_history(settings)?;
    JournaledStore::open(redis, &history.journal_path, Duration::from_millis(history.write_budget_ms))
        .map(|journal| journal.with_retention(Duration::from_secs(history.retention_days * 86_400)))
        .map_err(|source| StartError::Store(source.to_string()))
}

/// The Redis history store as the settings describe, without a journal (the migration tool's). Does not connect.
pub fn redis_history(settings: &Settings) -> Result<RedisStore, StartError> {
    let history = &settings.history;
    Ok(RedisStore::new(RedisSettings {
        url: history.store.clone(),
        prefix: history.redis_prefix.clone(),
        retention: Duration::from_secs(history.retention_days * 86_400),
        marker_ttl: Duration::from_secs(history.marker_window_h * 3600),
        connect_timeout: Duration::from_millis(500),
    })
    .map_err(|source| StartError::Store(source.to_string()))?
    .with_bucket_bits(history.redis_bucket_bits)
    .map_err(|source| StartError::Store(source.to_string()))?
    .with_replica_wait(history.redis_wait_replicas, Duration::from_millis(history.redis_wait_timeout_ms))
    .with_near_cache(history.near_cache_entries))
}

/// A screener over `store`, configured by the settings, scoring with `models`.
pub fn build_screener<S: HistoryStore>(settings: &Settings, models: Arc<ModelRegistry>, store: S) -> Screener<S> {
    Screener::with_models(
        store,
        models,
        key_hasher(settings),
        settings.history.recent_contacts,
        Duration::from_millis(settings.history.budget_ms),
    )
}

/// `screener` capturing training records as `[capture]` says, with the writer to close on shutdown; unchanged
/// (and no writer) when `capture.dir` is unset.
pub fn with_capture<S: HistoryStore>(
    settings: &Settings,
    screener: Screener<S>,
) -> Result<(Screener<S>, Option<crate::capture::CaptureWriter>), StartError> {
    let Some(dir) = &settings.capture.dir else { return Ok((screener, None)) };
    let (capture, writer) =
        crate::capture::start(&settings.capture, screener.metrics().capture_counters()).map_err(StartError::Capture)?;
    tracing::info!(dir = %dir.display(), retention_days = settings.capture.retention_days, "capturing training records");
    Ok((screener.with_capture(capture), Some(writer)))
}

/// How often a replica that started with its case database unreachable tries it again.
const CASES_RETRY: Duration = Duration::from_secs(5);

/// Opens (and migrates) the configured case database under the configured ladder policy. A PostgreSQL server that
/// cannot be reached does not stop start-up: case operations are refused until it can be ([`CaseStore::connect_or_wait`]).
pub async fn open_escalator(settings: &Settings) -> Result<Escalator, StartError> {
    let policy = settings.ladder_policy().map_err(|error| StartError::Cases(error.to_string()))?;
    let store = CaseStore::connect_or_wait(&settings.cases.database_url, audit_options(settings), CASES_RETRY)
        .await
        .map_err(|error| match error {
            AuditStartError::Database(error) => StartError::Cases(error.to_string()),
            AuditStartError::Secret(_) => StartError::AuditSecret(error.to_string()),
            AuditStartError::Anchor { .. } => StartError::AuditAnchor(error.to_string()),
        })?;
    if settings.cases.sandbox {
        tracing::warn!("cases.sandbox: test traffic; outcomes never reach the ladder and no case is proposed");
    }
    Ok(Escalator::new(store, policy)
        .with_claim_minutes(settings.cases.claim_minutes)
        .with_sandbox(settings.cases.sandbox)
        .with_correction_window(Duration::from_secs(settings.outcomes.correction_window_hours * 3600)))
}

/// The configured tokens, client identities and throttling of failed authentications; with no tokens configured,
/// development mode: a token per role, returned in clear so the caller can show them once — generated for this
/// run, or kept in `auth.development_tokens_file` across restarts.
pub fn authenticator(settings: &Settings) -> Result<(Authenticator, Option<DevelopmentTokens>), StartError> {
    let (authenticator, tokens) = if settings.auth.tokens.is_empty() {
        let (authenticator, tokens) = match &settings.auth.development_tokens_file {
            None => {
                let (authenticator, tokens) = Authenticator::generate_development();
                (authenticator, DevelopmentTokens { tokens, file: None })
            }
            Some(path) => {
                let tokens = pinned_development_tokens(path).map_err(StartError::DevelopmentTokens)?;
                let authenticator = Authenticator::development_with(&tokens.tokens)
                    .map_err(|error| StartError::DevelopmentTokens(format!("{}: {error}", path.display())))?;
                (authenticator, tokens)
            }
        };
        (authenticator, Some(tokens))
    } else {
        (Authenticator::from_entries(&settings.auth.tokens).expect("validated with the settings"), None)
    };
    let authenticator = authenticator
        .with_clients(&settings.auth.clients)
        .expect("validated with the settings")
        .with_failed_auth(crate::failed_auth::FailedAuth::new(&settings.auth.failures));
    Ok((authenticator, tokens))
}

/// Development mode's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevelopmentTokens {
    /// One per role.
    pub tokens: Vec<(Role, String)>,
    /// The file they are kept in (`auth.development_tokens_file`), and whether they were read from it (`true`) or
    /// generated and written to it now.
    pub file: Option<(std::path::PathBuf, bool)>,
}

/// The development tokens kept in `path` (lines `ROLE TOKEN`), or new ones written there (mode 0600) when it does
/// not exist yet.
fn pinned_development_tokens(path: &std::path::Path) -> Result<DevelopmentTokens, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut tokens = Vec::new();
            for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
                let parsed = line.split_once(char::is_whitespace).and_then(|(role, token)| {
                    let role = Role::ALL.into_iter().find(|known| known.as_str() == role)?;
                    Some((role, token.trim().to_owned()))
                });
                match parsed {
                    Some((role, token)) if token.len() >= 32 && !tokens.iter().any(|(seen, _)| *seen == role) => {
                        tokens.push((role, token))
                    }
                    _ => {
                        return Err(format!(
                            "{} line {}: expected \"ROLE TOKEN\" (a role once, a token of 32 or more characters)",
                            path.display(),
                            number + 1
                        ))
                    }
                }
            }
            if let Some(missing) = Role::ALL.into_iter().find(|role| !tokens.iter().any(|(seen, _)| seen == role)) {
                return Err(format!("{}: no token for the {missing} role", path.display()));
            }
            Ok(DevelopmentTokens { tokens, file: Some((path.to_owned(), true)) })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let (_, tokens) = Authenticator::generate_development();
            let text: String = tokens.iter().map(|(role, token)| format!("{} {token}\n", role.as_str())).collect();
            write_private(path, &text).map_err(|error| format!("{}: {error}", path.display()))?;
            Ok(DevelopmentTokens { tokens, file: Some((path.to_owned(), false)) })
        }
        Err(error) => Err(format!("{}: {error}", path.display())),
    }
}

/// Writes `text` to `path` readable by this user only (created with mode 0600, replacing an earlier file).
pub fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(directory) = path.parent().filter(|directory| !directory.as_os_str().is_empty()) {
        std::fs::create_dir_all(directory)?;
    }
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// How the gRPC listener is served: TLS or not, the longest call, message sizes, per-role limits, the drain.
pub struct Transport {
    /// TLS, reloaded from its files; `None`: plaintext.
    pub tls: Option<Arc<ReloadingTls>>,
    /// Per-role concurrency and rate limits.
    pub limits: Arc<Limits>,
    /// Largest message decoded or encoded, in bytes.
    pub max_message_bytes: usize,
    /// The longest a call may run.
    pub max_deadline: Duration,
    /// How long in-flight calls get after the shutdown signal.
    pub grace: Duration,
}

impl Transport {
    /// As the settings describe, identifying callers with `auth` for the limits; reads the TLS files.
    pub fn from_settings(settings: &Settings, auth: &Authenticator) -> Result<Self, StartError> {
        let tls = settings
            .server
            .tls
            .as_ref()
            .map(|tls| {
                ReloadingTls::load(tls).map(Arc::new).map_err(|error| match error {
                    TlsError::Unreadable { .. } => StartError::TlsUnreadable(error),
                    TlsError::Refused(_) => StartError::TlsRefused(error),
                })
            })
            .transpose()?;
        Ok(Transport {
            tls,
            limits: Arc::new(Limits::new(auth.clone(), &settings.limits)),
            max_message_bytes: settings.server.max_message_bytes,
            max_deadline: Duration::from_millis(settings.server.max_deadline_ms),
            grace: Duration::from_secs(settings.server.shutdown_grace_s),
        })
    }

    /// Plaintext, no per-role limits, the default message size and deadline, a 5 s drain: tests and embedding.
    pub fn plaintext() -> Self {
        let defaults = crate::config::ServerSettings::default();
        Transport {
            tls: None,
            limits: Arc::new(Limits::unlimited()),
            max_message_bytes: defaults.max_message_bytes,
            max_deadline: Duration::from_millis(defaults.max_deadline_ms),
            grace: Duration::from_secs(5),
        }
    }
}

/// Serves Screening, Escalations, Privacy, Models, health and reflection on `listener` as `transport` says until
/// `shutdown` resolves; then reports NOT_SERVING, stops accepting, and gives in-flight calls up to
/// `transport.grace` to finish.
pub async fn serve<S: HistoryStore>(
    listener: TcpListener,
    app: Arc<App<S>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    transport: Transport,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<ScreeningServer<ScreeningService<S>>>().await;
    health_reporter.set_serving::<ModelsServer<ModelsService<S>>>().await;
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Escalations and Privacy need the case database: a replica that started without reaching it reports Escalations
    // NOT_SERVING (Screening stays SERVING) until it does.
    if app.escalator.store().is_open() {
        health_reporter.set_serving::<EscalationsServer<EscalationsService<S>>>().await;
        health_reporter.set_serving::<PrivacyServer<PrivacyService<S>>>().await;
    } else {
        health_reporter.set_not_serving::<EscalationsServer<EscalationsService<S>>>().await;
        health_reporter.set_not_serving::<PrivacyServer<PrivacyService<S>>>().await;
        let (reporter, store, draining) =
            (health_reporter.clone(), app.escalator.store().clone(), Arc::clone(&draining));
        tokio::spawn(async move {
            while !store.is_open() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if !draining.load(std::sync::atomic::Ordering::Acquire) {
                reporter.set_serving::<EscalationsServer<EscalationsService<S>>>().await;
                reporter.set_serving::<PrivacyServer<PrivacyService<S>>>().await;
            }
        });
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled descriptor set is valid");
    let (drain_started_tx, drain_started_rx) = oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: health is NOT_SERVING, draining in-flight calls");
        draining.store(true, std::sync::atomic::Ordering::Release);
        // The whole server ("") and each service: a load balancer probing either stops sending new calls.
        health_reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        health_reporter.set_not_serving::<ScreeningServer<ScreeningService<S>>>().await;
        health_reporter.set_not_serving::<EscalationsServer<EscalationsService<S>>>().await;
        health_reporter.set_not_serving::<ModelsServer<ModelsService<S>>>().await;
        health_reporter.set_not_serving::<PrivacyServer<PrivacyService<S>>>().await;
        let _ = drain_started_tx.send(());
    };
    // Outcomes still queued for the case database's writers are written after the last call ends.
    let cases = app.escalator.store().clone();
    let max = transport.max_message_bytes;
    // Outermost first: metrics see every call's final code, including the limits' and deadlines' refusals.
    let router = tonic::transport::Server::builder()
        .layer(trace::TraceLayer)
        .layer(RpcMetricsLayer::new(Arc::clone(app.screener.metrics())))
        .layer(DeadlineLayer::new(transport.max_deadline))
        .layer(LimitsLayer::new(Arc::clone(&transport.limits)))
        .add_service(health_service.max_decoding_message_size(max).max_encoding_message_size(max))
        .add_service(reflection.max_decoding_message_size(max).max_encoding_message_size(max))
        .add_service(
            ScreeningServer::new(ScreeningService::new(Arc::clone(&app)))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            EscalationsServer::new(EscalationsService::new(Arc::clone(&app)))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            PrivacyServer::new(PrivacyService::new(Arc::clone(&app)))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            ModelsServer::new(ModelsService::new(app)).max_decoding_message_size(max).max_encoding_message_size(max),
        );
    let watcher = transport.tls.as_ref().map(|tls| tokio::spawn(Arc::clone(tls).watch()));
    let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> = match &transport.tls {
        Some(tls) => Box::pin(router.serve_with_incoming_shutdown(tls::incoming(listener, Arc::clone(tls)), signal)),
        None => {
            // TCP_NODELAY: without it, small replies wait on Nagle's algorithm and delayed ACKs (~40 ms per call).
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            Box::pin(router.serve_with_incoming_shutdown(incoming, signal))
        }
    };
    let grace = transport.grace;
    let deadline = async move {
        if drain_started_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!(grace_s = grace.as_secs(), "drain took longer than the grace period; closing");
            Ok(())
        }
    };
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    cases.drain_outcomes().await;
    result
}

/// A server running in the background (tests, benchmarks, embedding).
pub struct RunningServer {
    /// The bound address.
    pub local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningServer {
    /// Binds `addr` (use port 0 for any) and serves `app` in a task, plaintext and without per-role limits.
    pub async fn start<S: HistoryStore>(addr: SocketAddr, app: Arc<App<S>>) -> Result<Self, StartError> {
        Self::start_with(addr, app, Transport::plaintext()).await
    }

    /// Binds `addr` and serves `app` in a task as `transport` says.
    pub async fn start_with<S: HistoryStore>(
        addr: SocketAddr,
        app: Arc<App<S>>,
        transport: Transport,
    ) -> Result<Self, StartError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let shutdown = async move {
            let _ = shutdown_rx.await;
        };
        let handle = tokio::spawn(serve(listener, app, shutdown, transport));
        Ok(RunningServer { local_addr, shutdown: Some(shutdown_tx), handle })
    }

    /// Shuts down gracefully and waits for the server to stop.
    pub async fn stop(mut self) -> Result<(), tonic::transport::Error> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.handle.await.expect("the server task does not panic")
    }
}
