//! `saring serve`: the screening service.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use saring::config::{FlagOverrides, Settings};
use saring::screening::Screener;
use saring::server::{build_screener, load_model, memory_store, redis_store, serve, StartError};
use saring::store::HistoryStore;
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
    },
}

/// Exit code for invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let Command::Serve { config, listen, model, log_format, history, ladder } = Cli::parse().command;
    let flags = FlagOverrides { listen, model, log_format, history, ladder };
    let settings = match Settings::load(config.as_deref(), &flags) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("saring: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    saring::telemetry::init(&settings.log.format, &settings.log.filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("saring: cannot start the runtime: {error}");
            return ExitCode::from(71);
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "saring could not start");
            eprintln!("saring: {error}");
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

async fn run(settings: Settings) -> Result<(), StartError> {
    let model = load_model(&settings)?;
    let addr = settings.listen_addr().expect("validated with the settings");
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    tracing::info!(
        %local_addr,
        model_version = model.version(),
        history = if settings.history.store == "memory" { "memory" } else { "redis" },
        "saring is serving saring.v1.Screening"
    );
    let grace = Duration::from_secs(settings.server.shutdown_grace_s);
    if settings.history.store == "memory" {
        let screener = Arc::new(build_screener(&settings, model, memory_store(&settings)));
        serve_logged(listener, screener, grace).await;
    } else {
        let screener = Arc::new(build_screener(&settings, model, redis_store(&settings)?));
        let background = Arc::clone(&screener);
        let replayer = tokio::spawn(async move {
            if let Err(error) = background.store().inner().connect().await {
                tracing::warn!(%error, "redis is not answering yet; scores are degraded and outcomes journaled until it does");
            }
            background.store().replay_forever(Duration::from_millis(500)).await;
        });
        serve_logged(listener, screener, grace).await;
        replayer.abort();
    }
    tracing::info!("saring stopped");
    Ok(())
}

async fn serve_logged<S: HistoryStore>(listener: TcpListener, screener: Arc<Screener<S>>, grace: Duration) {
    if let Err(error) = serve(listener, screener, saring::shutdown::signal(), grace).await {
        tracing::error!(%error, "server error");
    }
}
