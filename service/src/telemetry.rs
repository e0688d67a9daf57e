//! One tracing setup: quiet defaults for the HTTP/2 stack, text or JSON. Logs never carry raw numbers or device
//! ids; the core logs contact ids and hashed keys only.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `filter` is a tracing directive such as `info`.
pub fn init(format: &str, filter: &str) {
    let filter = EnvFilter::try_new(format!("{filter},h2=warn,tower=warn,hyper=warn"))
        .unwrap_or_else(|_| EnvFilter::new("info,h2=warn,tower=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if format == "json" { builder.json().try_init() } else { builder.try_init() };
    if let Err(error) = result {
        eprintln!("tracing was already initialised: {error}");
    }
}
