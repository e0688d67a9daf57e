//! `saring-train dataset`: the replayed feature matrix as CSV, with the same time-based split `fit` uses, for
//! peers (scikit-learn in `training/peer/`) to train on exactly what saring trains on.

use std::io::Write;

use saring_models::features::FEATURES;

use crate::fit::SplitBoundaries;
use crate::replay::ReplayRow;

/// Writes one header line and one line per contact: `contact_id, at_ms, split, label, disposition, region, channel,
/// first_time_caller`, then the 32 features by name. `label` is 1 (misuse), 0, or empty when unlabelled; `split`
/// is train / validation / test by time, as in `fit`.
pub fn write_dataset(mut writer: impl Write, rows: &[ReplayRow]) -> std::io::Result<usize> {
    let boundaries = SplitBoundaries::of(rows);
    write!(writer, "contact_id,at_ms,split,label,disposition,region,channel,first_time_caller")?;
    for feature in FEATURES {
        write!(writer, ",{}", feature.name)?;
    }
    writeln!(writer)?;
    for row in rows {
        let label = row.label().map_or(String::new(), |label| u8::from(label).to_string());
        let disposition = row.disposition.map_or("", |disposition| disposition.as_str());
        write!(
            writer,
            "{},{},{},{label},{disposition},{},{},{}",
            csv_field(&row.contact_id),
            row.at_ms,
            boundaries.range_of(row.at_ms),
            csv_field(&row.region),
            row.channel.as_str(),
            u8::from(row.first_time_caller)
        )?;
        for value in row.features {
            // Shortest representation that reads back to the same f64.
            write!(writer, ",{value:?}")?;
        }
        writeln!(writer)?;
    }
    writer.flush()?;
    Ok(rows.len())
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
