//! `saring serve`: the screening service.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use saring::app::App;
use saring::auth::Authenticator;
use saring::backtest::BacktestOptions;
use saring::cases::{describe, AnchorCheck, CaseStore, Escalator};
use saring::config::{FlagOverrides, Settings};
use saring::console::AdminOptions;
use saring::screening::Screener;
use saring::server::{
    authenticator, build_screener, load_model, load_models, memory_store, open_escalator, redis_store, serve,
    with_capture, DevelopmentTokens, StartError, Transport,
};
use saring::store::HistoryStore;
use saring_models::events::read_events;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(name = "saring", version, about = "Screens contacts reaching police emergency line 110")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service.
    Serve {
        /// TOML config file (see config/reference.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:50051.
        #[arg(long)]
        listen: Option<String>,
        /// Model artifact to serve instead of the shipped one.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Log format: text or json.
        #[arg(long)]
        log_format: Option<String>,
        /// History store: memory, redis://HOST:PORT/DB or redis-cluster://HOST:PORT,HOST:PORT.
        #[arg(long)]
        history: Option<String>,
        /// Escalation ladder policy (TOML) instead of the shipped default.
        #[arg(long)]
        ladder: Option<PathBuf>,
        /// Case database: sqlite://PATH (default sqlite://saring-data/cases.db) or postgres://USER@HOST/DB.
        #[arg(long)]
        database_url: Option<String>,
        /// Address of the web console (default 127.0.0.1:8080).
        #[arg(long)]
        console_listen: Option<String>,
        /// Capture pseudonymised training records (scored contacts, outcomes) as Parquet files in DIR.
        #[arg(long, value_name = "DIR")]
        capture: Option<PathBuf>,
        /// Development mode (no [auth] tokens): keep the generated tokens in FILE and reuse them at every start.
        #[arg(long, value_name = "FILE")]
        dev_tokens_file: Option<PathBuf>,
    },
    /// Replays an event log through history, model and ladder and reports how callers would have climbed it.
    Backtest {
        /// Event log (JSON Lines, the format in README.md).
        #[arg(long)]
        events: PathBuf,
        /// Escalation ladder policy (TOML) instead of the shipped default.
        #[arg(long)]
        ladder: Option<PathBuf>,
        /// Model artifact whose likelihoods are kept as evidence, instead of the shipped one.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Hours from a proposal to its (simulated) approval and delivery.
        #[arg(long, default_value_t = 24)]
        delivery_delay_h: u32,
        /// Print the report as JSON instead of Markdown.
        #[arg(long)]
        json: bool,
        /// Fail on the first malformed line instead of skipping it.
        #[arg(long)]
        strict: bool,
    },
    /// The audit log of the case database.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The case database's maintenance.
    Cases {
        #[command(subcommand)]
        command: CasesCommand,
    },
    /// The Redis history store's maintenance.
    History {
        #[command(subcommand)]
        command: HistoryCommand,
    },
    /// A data subject's requests (legal role), through the running service's Privacy RPCs: the token is read
    /// from SARING_TOKEN or --token-file.
    Privacy {
        #[command(flatten)]
        target: PrivacyTarget,
        #[command(subcommand)]
        command: PrivacyCommand,
    },
}

#[derive(Subcommand)]
enum CasesCommand {
    /// After a rotation of privacy.hash_secret: moves every case (and its contacts) to its number's key under the
    /// new secret, each with an audit entry; run once the new secret is configured (OPERATIONS.md).
    Rekey {
        /// TOML config file (its [privacy], [cases] database_url and [audit] sections are used).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Case database URL (overrides the config).
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum HistoryCommand {
    /// Moves every history of Redis layout 1 (one key per caller) into layout 2 (callers bucketed into compact
    /// hashes), counts exact, while the service keeps serving; run once every replica runs this version, and again
    /// after an interruption (OPERATIONS.md). Replicas stop reading layout 1 when it reports done.
    Migrate {
        /// TOML config file (its [history] section is used).
        #[arg(long)]
        config: Option<PathBuf>,
        /// History store: redis://HOST:PORT/DB or redis-cluster://HOST:PORT,HOST:PORT (overrides the config).
        #[arg(long)]
        history: Option<String>,
    },
}

#[derive(clap::Args)]
struct PrivacyTarget {
    /// The service: http://HOST:PORT, or https://HOST:PORT with --ca-cert.
    #[arg(long, global = true, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// PEM of the certificate authority that signed the service's certificate (https).
    #[arg(long, global = true, value_name = "PATH")]
    ca_cert: Option<PathBuf>,
    /// A file holding the legal role's token (instead of SARING_TOKEN).
    #[arg(long, global = true, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Print JSON instead of a readable report.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum PrivacyCommand {
    /// Everything saring holds about a number: history, outcomes, cases, their audit entries, legal holds.
    Access {
        /// The number, in any Indonesian form.
        #[arg(long)]
        caller: String,
        /// Why (the request's reference; kept in the audit log, so never the number).
        #[arg(long)]
        reason: String,
    },
    /// Erases a number (and a device): refused while a case holds it.
    Erase {
        /// The number, in any Indonesian form.
        #[arg(long)]
        caller: String,
        /// A device id the data subject names as theirs.
        #[arg(long)]
        device_id: Option<String>,
        /// Why (the request's reference).
        #[arg(long)]
        reason: String,
    },
    /// Marks a number reassigned by its carrier from a date: the former subscriber's contacts and cases stop
    /// counting for it, its history is reset, the ladder starts fresh.
    MarkReassigned {
        /// The number, in any Indonesian form.
        #[arg(long)]
        caller: String,
        /// From when it is the new subscriber's: RFC 3339, or YYYY-MM-DD (its start in WIB, UTC+7).
        #[arg(long, value_name = "WHEN")]
        from: String,
        /// Why (the carrier's notice reference).
        #[arg(long)]
        reason: String,
    },
    /// Marks every number of a carrier's reassignment notices (CSV: number,reassigned_from) reassigned; exits 1
    /// when any line failed (each is named).
    ImportReassignments {
        /// The CSV file.
        #[arg(long)]
        file: PathBuf,
        /// Why (the notices' reference), for every line.
        #[arg(long)]
        reason: String,
    },
    /// Releases the legal hold a case puts on its caller's number.
    ReleaseHold {
        /// The case.
        #[arg(long)]
        case_id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Checks every link of the audit chain (keyed with [audit] chain_secret), the chain's head against the
    /// anchor file, and every case's rows against its last audited state; exits 1 naming what failed.
    Verify {
        /// TOML config file (its [cases] database_url and [audit] section are used).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Case database URL (overrides the config).
        #[arg(long)]
        database_url: Option<String>,
        /// The anchor file to check the head against (overrides [audit] anchor_path).
        #[arg(long, value_name = "PATH", conflicts_with = "without_anchor")]
        anchor_path: Option<PathBuf>,
        /// Check the database alone (on a machine without the replica's anchor): a removed tail whose head was
        /// rewound is then not detected.
        #[arg(long)]
        without_anchor: bool,
    },
}

/// Exit code for invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

/// `saring --version`: the package version, the git commit it was built from, and the shipped model.
fn version() -> String {
    let model = saring_models::ModelArtifact::from_json(saring::server::SHIPPED_MODEL)
        .map_or_else(|error| format!("unreadable: {error}"), |artifact| artifact.model_version);
    format!("{} (commit {}, shipped model {model})", env!("CARGO_PKG_VERSION"), env!("SARING_GIT_COMMIT"))
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let version: &'static str = Box::leak(version().into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match cli.command {
        Command::Serve {
            config,
            listen,
            model,
            log_format,
            history,
            ladder,
            database_url,
            console_listen,
            capture,
            dev_tokens_file,
        } => {
            let flags = FlagOverrides {
                listen,
                model,
                log_format,
                history,
                ladder,
                database_url,
                console_listen,
                capture,
                dev_tokens_file,
            };
            serve_command(config, &flags)
        }
        Command::Backtest { events, ladder, model, delivery_delay_h, json, strict } => {
            let flags = FlagOverrides { ladder, model, ..FlagOverrides::default() };
            backtest(&events, &flags, BacktestOptions { delivery_delay_h }, json, strict)
        }
        Command::Audit { command: AuditCommand::Verify { config, database_url, anchor_path, without_anchor } } => {
            let flags = FlagOverrides { database_url, ..FlagOverrides::default() };
            audit_verify(config, &flags, anchor_path, without_anchor)
        }
        Command::Privacy { target, command } => privacy(target, command),
        Command::History { command: HistoryCommand::Migrate { config, history } } => {
            let flags = FlagOverrides { history, ..FlagOverrides::default() };
            history_migrate(config, &flags)
        }
        Command::Cases { command: CasesCommand::Rekey { config, database_url } } => {
            let flags = FlagOverrides { database_url, ..FlagOverrides::default() };
            cases_rekey(config, &flags)
        }
    }
}

fn history_migrate(config: Option<PathBuf>, flags: &FlagOverrides) -> ExitCode {
    let settings = match Settings::load(config.as_deref(), flags) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("saring: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if settings.history.store == "memory" {
        eprintln!("saring: history.store is memory: there is no Redis layout to migrate (give --history or a config)");
        return ExitCode::from(EXIT_CONFIG);
    }
    let store = match saring::server::redis_history(&settings) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("saring: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(store.migrate()) {
        Ok(migrated) => {
            println!(
                "moved {} layout-1 histories into layout 2 ({} found moved by an earlier run); replicas read layout 2 \
                 only from their next check (within 30 s)",
                migrated.moved, migrated.already_moved
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("saring: history migration stopped: {error}; run it again to continue");
            ExitCode::FAILURE
        }
    }
}

fn cases_rekey(config: Option<PathBuf>, flags: &FlagOverrides) -> ExitCode {
    let settings = match Settings::load(config.as_deref(), flags) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("saring: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if settings.privacy.hash_secret.is_none() {
        eprintln!("saring: privacy.hash_secret is not set: there is no new secret to re-key under");
        return ExitCode::from(EXIT_CONFIG);
    }
    let hasher = saring::server::key_hasher(&settings);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let done = runtime.block_on(async {
        let store = CaseStore::connect_with(&settings.cases.database_url, saring::server::audit_options(&settings))
            .await
            .map_err(|error| error.to_string())?;
        let rekeyed = store
            .rekey(|number| {
                saring_models::phone::normalise_indonesian_number(number).ok().map(|e164| hasher.number(&e164).to_hex())
            })
            .await
            .map_err(|error| error.to_string());
        store.close().await;
        rekeyed
    });
    match done {
        Ok(rekeyed) => {
            println!(
                "re-keyed {} callers: {} cases and {} contacts moved to the new secret's references",
                rekeyed.callers, rekeyed.cases, rekeyed.contacts
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("saring: {error}");
            ExitCode::from(74)
        }
    }
}

fn privacy(target: PrivacyTarget, command: PrivacyCommand) -> ExitCode {
    use saring::privacy_cli::{run, Request, Target};
    let token = match &target.token_file {
        Some(path) => std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display())),
        None => std::env::var("SARING_TOKEN")
            .map_err(|_| "set SARING_TOKEN or --token-file to the legal role's token".into()),
    };
    let token = match token {
        Ok(token) if !token.trim().is_empty() => token.trim().to_owned(),
        Ok(_) => {
            eprintln!("saring: the token is empty");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(error) => {
            eprintln!("saring: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let json = target.json;
    let target = Target { server: target.server, ca_cert: target.ca_cert, token };
    let request = match command {
        PrivacyCommand::Access { caller, reason } => Request::Access { caller, reason },
        PrivacyCommand::Erase { caller, device_id, reason } => Request::Erase { caller, device_id, reason },
        PrivacyCommand::ReleaseHold { case_id, reason } => Request::ReleaseHold { case_id, reason },
        PrivacyCommand::MarkReassigned { caller, from, reason } => match saring::privacy_cli::parse_from(&from) {
            Ok(from_ms) => Request::MarkReassigned { caller, from_ms, reason },
            Err(error) => {
                eprintln!("saring: --from: {error}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        PrivacyCommand::ImportReassignments { file, reason } => {
            let csv = match std::fs::read_to_string(&file) {
                Ok(csv) => csv,
                Err(error) => {
                    eprintln!("saring: {}: {error}", file.display());
                    return ExitCode::from(66);
                }
            };
            return match runtime.block_on(saring::privacy_cli::import_reassignments(&target, &csv, &reason, json)) {
                Ok((report, problems)) => {
                    print!("{report}");
                    for problem in &problems {
                        eprintln!("{}: line {}: {}", file.display(), problem.line, problem.message);
                    }
                    if problems.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(failure) => {
                    eprintln!("saring: {}", failure.message);
                    ExitCode::from(failure.code)
                }
            };
        }
    };
    match runtime.block_on(run(&target, request, json)) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("saring: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// The task following the erasure notices other replicas issue (`saring::notices`).
fn spawn_notices<S: HistoryStore>(app: &Arc<App<S>>, settings: &Settings) -> tokio::task::JoinHandle<()> {
    let interval = std::time::Duration::from_secs(u64::from(settings.privacy.notice_interval_seconds));
    tokio::spawn(saring::notices::run(Arc::clone(app), interval, saring::notices::kept_for(settings)))
}

/// The retention task of the case database (`saring::retention`).
fn spawn_retention<S: HistoryStore>(app: &Arc<App<S>>, settings: &Settings) -> tokio::task::JoinHandle<()> {
    let store = app.escalator.store().clone();
    let interval = std::time::Duration::from_secs(u64::from(settings.cases.retention_interval_minutes) * 60);
    let retention = std::time::Duration::from_secs(settings.history.retention_days * 86_400);
    tokio::spawn(saring::retention::sweep_histories(Arc::clone(app), retention, interval));
    tokio::spawn(saring::retention::run(store, Arc::clone(app.screener.metrics()), settings.cases.clone()))
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|error| {
        eprintln!("saring: cannot start the runtime: {error}");
        ExitCode::from(71)
    })
}

fn backtest(events: &Path, flags: &FlagOverrides, options: BacktestOptions, json: bool, strict: bool) -> ExitCode {
    let loaded = Settings::load(None, flags).map_err(|error| error.to_string()).and_then(|settings| {
        let policy = settings.ladder_policy().map_err(|error| error.to_string())?;
        let model = load_model(&settings).map_err(|error| error.to_string())?;
        Ok((policy, model))
    });
    let (policy, model) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("saring: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let file = match std::fs::File::open(events) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("saring: cannot open {}: {error}", events.display());
            return ExitCode::from(66);
        }
    };
    let (events_read, bad_lines) = match read_events(std::io::BufReader::new(file), strict) {
        Ok(read) => read,
        Err(error) => {
            eprintln!("saring: {}: {error}", events.display());
            return ExitCode::from(65);
        }
    };
    for bad in bad_lines.iter().take(20) {
        eprintln!("{}: line {}: skipped: {}", events.display(), bad.line, bad.message);
    }
    if bad_lines.len() > 20 {
        eprintln!("{}: {} more bad lines skipped", events.display(), bad_lines.len() - 20);
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(saring::backtest::run(&events_read, policy, model, options)) {
        Ok(report) if json => {
            println!("{}", serde_json::to_string_pretty(&report).expect("the report serialises"));
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.to_markdown());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("saring: backtest failed: {error:#}");
            ExitCode::from(70)
        }
    }
}

fn audit_verify(
    config: Option<PathBuf>,
    flags: &FlagOverrides,
    anchor_path: Option<PathBuf>,
    without_anchor: bool,
) -> ExitCode {
    let mut settings = match Settings::load(config.as_deref(), flags) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("saring: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if settings.audit.chain_secret.is_none() {
        eprintln!("saring: audit.chain_secret is not set: checking keyed entries with the development secret");
    }
    if anchor_path.is_some() {
        settings.audit.anchor_path = anchor_path;
    }
    let mut options = saring::server::audit_options(&settings);
    if without_anchor {
        options.anchor_path = None;
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let report = runtime.block_on(async {
        let store = CaseStore::open_existing(&settings.cases.database_url, options).await?;
        let report = store.audit_report().await;
        store.close().await;
        report
    });
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("saring: {error}");
            return ExitCode::from(74);
        }
    };
    let keyed = match report.keyed_from {
        Some(1) => "every entry keyed".to_owned(),
        Some(seq) => format!("keyed from entry {seq}, unkeyed before"),
        None => "no keyed entry yet (written before the chain was keyed)".to_owned(),
    };
    let anchor = match &report.anchor {
        AnchorCheck::NotConfigured => "anchor not checked".to_owned(),
        AnchorCheck::Missing(path) => format!("no anchor at {}", path.display()),
        AnchorCheck::Invalid(path) => format!("anchor at {} not trusted", path.display()),
        AnchorCheck::Checked { path, seq } => format!("anchor at {} records entry {seq}", path.display()),
    };
    let summary = format!(
        "{} entries ({keyed}); {} cases compared with their last audited state; {anchor}",
        report.entries, report.cases_checked
    );
    if report.problems.is_empty() {
        println!("audit log intact: {summary}; every link verified");
        return ExitCode::SUCCESS;
    }
    for problem in &report.problems {
        match &problem.case_id {
            Some(_) => println!("audit log BROKEN: {}", describe(problem)),
            None => println!("audit log BROKEN at entry {}: {}", problem.seq, problem.message),
        }
    }
    let count = report.problems.len();
    println!("{count} {}; checked {summary}", if count == 1 { "problem" } else { "problems" });
    ExitCode::from(1)
}

fn serve_command(config: Option<PathBuf>, flags: &FlagOverrides) -> ExitCode {
    let settings = match Settings::load(config.as_deref(), flags) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("saring: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let source = saring::telemetry::filter_source(&settings.log.filter);
    let filter = match saring::telemetry::filter(&source.directives) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("saring: {}: {error}", source.name);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    saring::server::trace::set_sample_ratio(settings.telemetry.sample_ratio);
    let (spans, queue) = match settings.telemetry.otlp_endpoint {
        Some(_) => {
            let (layer, queue) = saring::otlp::layer();
            (Some(layer), Some(queue))
        }
        None => (None, None),
    };
    saring::telemetry::init(&settings.log.format, filter, spans);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(run(settings, queue)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "saring could not start");
            eprintln!("saring: {error}");
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

async fn run(
    settings: Settings,
    spans: Option<tokio::sync::mpsc::Receiver<saring::otlp::proto::trace::v1::Span>>,
) -> Result<(), StartError> {
    // Installed first: a SIGTERM while the service starts is kept, and honoured (cleanly) once it serves.
    let shutdown = saring::shutdown::signal();
    let (stop_export, export_stopped) = tokio::sync::oneshot::channel::<()>();
    let exporter = settings.telemetry.otlp_endpoint.clone().zip(spans).map(|(endpoint, spans)| {
        let resource = saring::otlp::resource(&settings.capture.replica_name());
        let stopped = async move {
            let _ = export_stopped.await;
        };
        tokio::spawn(saring::otlp::export(endpoint, spans, resource, stopped))
    });
    let models = Arc::new(load_models(&settings)?);
    let watcher = (models.has_files() && settings.model.watch_interval_s > 0)
        .then(|| tokio::spawn(Arc::clone(&models).watch(Duration::from_secs(settings.model.watch_interval_s))));
    let quality =
        tokio::spawn(Arc::clone(&models).watch_quality(Duration::from_secs(settings.model.quality_refresh_s)));
    let escalator = open_escalator(&settings).await?;
    let (auth, development_tokens) = authenticator(&settings)?;
    if let Some(tokens) = development_tokens {
        show_development_tokens(&tokens);
    }
    let transport = Transport::from_settings(&settings, &auth)?;
    let tls = transport.tls.is_some();
    let addr = settings.listen_addr().expect("validated with the settings");
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    tracing::info!(
        %local_addr,
        tls,
        model_version = %models.champion().version,
        challenger = models.challenger().map(|challenger| challenger.version.to_string()),
        history = if settings.history.store == "memory" { "memory" } else { "redis" },
        "saring is serving saring.v1.Screening"
    );
    let admin = settings.admin_options();
    let console = if let Some(options) = admin {
        let addr = settings.console_addr().expect("validated with the settings");
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let console_addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        if options.pages {
            tracing::info!(%console_addr, "the web console is at http://{console_addr}/");
        }
        if options.metrics {
            tracing::info!(%console_addr, "metrics are at http://{console_addr}/metrics");
        }
        Some((listener, options))
    } else {
        None
    };
    let capture_writer = if settings.history.store == "memory" {
        let screener = build_screener(&settings, Arc::clone(&models), memory_store(&settings));
        let (screener, capture_writer) = with_capture(&settings, screener)?;
        let app = app(screener, escalator, auth);
        let retention = spawn_retention(&app, &settings);
        let notices = spawn_notices(&app, &settings);
        serve_logged(listener, console, app, transport, shutdown).await;
        retention.abort();
        notices.abort();
        capture_writer
    } else {
        let screener = build_screener(&settings, Arc::clone(&models), redis_store(&settings)?);
        let (screener, capture_writer) = with_capture(&settings, screener)?;
        let app = app(screener, escalator, auth);
        let retention = spawn_retention(&app, &settings);
        let notices = spawn_notices(&app, &settings);
        let background = Arc::clone(&app);
        let replayer = tokio::spawn(async move {
            if let Err(error) = background.screener.store().inner().connect().await {
                tracing::warn!(%error, "redis is not answering yet; scores are degraded and outcomes journaled until it does");
            }
            background.screener.store().replay_forever(Duration::from_millis(500)).await;
        });
        serve_logged(listener, console, app, transport, shutdown).await;
        replayer.abort();
        retention.abort();
        notices.abort();
        capture_writer
    };
    if let Some(writer) = capture_writer {
        // Completes the open spool with every record queued before the drain ended and converts it (Parquet, fsync).
        let report = tokio::task::spawn_blocking(move || writer.close()).await.unwrap_or_default();
        tracing::info!(
            written = report.written,
            failed = report.failed,
            dropped = report.dropped,
            files = report.files.len(),
            "capture closed"
        );
    }
    quality.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    if let Some(exporter) = exporter {
        // The spans of the last calls: sent within the export timeout, or given up.
        let _ = stop_export.send(());
        let _ = tokio::time::timeout(saring::otlp::EXPORT_TIMEOUT * 2, exporter).await;
    }
    tracing::info!("saring stopped");
    Ok(())
}

fn app<S>(screener: Screener<S>, escalator: Escalator, auth: Authenticator) -> Arc<App<S>> {
    Arc::new(App { screener, escalator, auth })
}

/// Development mode: the generated tokens go to the terminal of whoever started saring (never to the log).
/// Where development tokens are written when standard error is not a terminal (it is then a log stream).
const DEVELOPMENT_TOKENS_FILE: &str = "saring-data/development-tokens";

fn show_development_tokens(development: &DevelopmentTokens) {
    use std::io::IsTerminal;
    let mut list = String::new();
    for (role, token) in &development.tokens {
        list.push_str(&format!("  {:<9} {token}\n", role.as_str()));
    }
    if let Some((file, read)) = &development.file {
        // Pinned: the tokens are in the file (mode 0600) and stay the same across restarts.
        let file = file.display().to_string();
        if *read {
            tracing::warn!(%file, "no [auth] tokens configured: development mode, with the tokens kept in the file");
        } else {
            tracing::warn!(%file, "no [auth] tokens configured: development mode; tokens generated and kept in the file for later runs");
        }
        if std::io::stderr().is_terminal() {
            eprintln!("\nsaring: development mode: the tokens in {file} (kept across restarts):\n{list}");
        }
        return;
    }
    if std::io::stderr().is_terminal() {
        tracing::warn!("no [auth] tokens configured: development mode, with a token per role generated for this run");
        eprintln!(
            "\nsaring: development mode: no [auth] tokens are configured, so these were generated for this run.\n\
             Send one as `authorization: Bearer TOKEN`. Configure [[auth.tokens]] (config/reference.toml) in \
             production.\n{list}"
        );
        return;
    }
    // Standard error is collected somewhere (journald, a container log): tokens never go there.
    match saring::server::write_private(std::path::Path::new(DEVELOPMENT_TOKENS_FILE), &list) {
        Ok(()) => tracing::warn!(
            file = DEVELOPMENT_TOKENS_FILE,
            "no [auth] tokens configured: development mode; the tokens generated for this run are in the file \
             (mode 0600), not in the log"
        ),
        Err(error) => tracing::error!(
            file = DEVELOPMENT_TOKENS_FILE,
            %error,
            "no [auth] tokens configured: development mode, and the generated tokens could not be written; \
             configure [[auth.tokens]]"
        ),
    }
}

/// Serves gRPC (and the console, when one is bound) until SIGTERM/SIGINT; the console stops with the gRPC server.
async fn serve_logged<S: HistoryStore + 'static>(
    listener: TcpListener,
    console: Option<(TcpListener, AdminOptions)>,
    app: Arc<App<S>>,
    transport: Transport,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let grace = transport.grace;
    let (stop_console, console_stopped) = tokio::sync::oneshot::channel::<()>();
    let console = console.map(|(listener, options)| {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = console_stopped.await;
            };
            if let Err(error) = saring::console::serve(listener, app, options, shutdown).await {
                tracing::error!(%error, "console error");
            }
        })
    });
    if let Err(error) = serve(listener, app, shutdown, transport).await {
        tracing::error!(%error, "server error");
    }
    let _ = stop_console.send(());
    if let Some(console) = console {
        // Live feeds are endless streams: give open pages the grace period, then close.
        let _ = tokio::time::timeout(grace, console).await;
    }
}
