//! The event log's format lives in `saring_models::events` (the service's backtest reads it too); this module
//! adds reading it from a file.

pub use saring_models::events::*;

/// Opens and reads an event log from a path, reporting bad lines on stderr.
pub fn read_event_file(path: &std::path::Path, strict: bool) -> anyhow::Result<Vec<Event>> {
    let file = std::fs::File::open(path)
        .map_err(|error| anyhow::Error::new(crate::exit::Input(format!("cannot open {}: {error}", path.display()))))?;
    let (events, bad_lines) = read_events(std::io::BufReader::new(file), strict)?;
    for bad in bad_lines.iter().take(20) {
        eprintln!("{}: line {}: skipped: {}", path.display(), bad.line, bad.message);
    }
    if bad_lines.len() > 20 {
        eprintln!("{}: {} more bad lines skipped", path.display(), bad_lines.len() - 20);
    }
    Ok(events)
}
