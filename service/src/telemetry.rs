//! One tracing setup: quiet defaults for the HTTP/2 stack, text or JSON. Logs never carry raw numbers or device
//! ids; the core logs contact ids and hashed keys only.
//!
//! The filter is `log.filter` (config, `SARING_LOG__FILTER`), unless `RUST_LOG` is set — the convention every
//! Rust service follows, so a maintainer's `RUST_LOG=saring=debug` works here too. Either is validated before
//! start-up: an invalid one is a configuration error naming it (exit 64), never silently replaced.
//!
//! Traces go to an OpenTelemetry collector when `[telemetry] otlp_endpoint` is set ([`crate::otlp`]).

use tracing_subscriber::EnvFilter;

/// Where the filter in force came from, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSource {
    /// `RUST_LOG` or `log.filter`.
    pub name: &'static str,
    /// The directives.
    pub directives: String,
}

/// The filter in force: `RUST_LOG` when set and not empty, else `configured` (`log.filter`).
pub fn filter_source(configured: &str) -> FilterSource {
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => FilterSource { name: "RUST_LOG", directives },
        _ => FilterSource { name: "log.filter", directives: configured.to_owned() },
    }
}

/// The filter `directives` make, with the HTTP/2 stack quiet unless they say otherwise; an error naming what is
/// wrong when they do not parse.
pub fn filter(directives: &str) -> Result<EnvFilter, String> {
    if directives.trim().is_empty() {
        return Err("must not be empty (e.g. \"info\" or \"saring=debug\")".into());
    }
    EnvFilter::try_new(format!("h2=warn,tower=warn,hyper=warn,{directives}"))
        .map_err(|error| format!("{directives:?} is not a tracing filter: {error}"))
}

/// Installs the global subscriber: logs to stderr in `format` through `filter` (see [`filter`]), and, when given,
/// the trace exporter's layer, which sees saring's own spans (not events) down to debug level whatever the log
/// filter says; the logs stay as filtered.
pub fn init(format: &str, filter: EnvFilter, otlp: Option<crate::otlp::OtlpLayer>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if format == "json" { logs.json().boxed() } else { logs.boxed() };
    let spans = tracing_subscriber::filter::filter_fn(|metadata| {
        metadata.is_span() && metadata.target().starts_with("saring") && *metadata.level() <= tracing::Level::DEBUG
    });
    let result = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(otlp.map(|layer| layer.with_filter(spans)))
        .try_init();
    if let Err(error) = result {
        eprintln!("tracing was already initialised: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_validated_and_the_http_stack_stays_quiet_unless_asked() {
        assert!(filter("info").is_ok());
        assert!(filter("saring=debug,h2=debug").is_ok());
        assert!(filter("").unwrap_err().contains("must not be empty"));
        let error = filter("saring=loud").unwrap_err();
        assert!(error.contains("saring=loud"), "{error}");
        assert!(filter("info").unwrap().to_string().contains("h2=warn"));
    }
}
