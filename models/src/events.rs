//! The event log: JSON Lines of contacts and outcomes in time order (the contract in README.md). Read by
//! training (`saring-train`) and by the service's ladder backtest (`saring backtest`), so both read it alike.
//!
//! Unknown keys are ignored. A bad line is reported with its line number; in strict mode it fails the run,
//! otherwise it is skipped and counted — never silently mis-read. The caller opens the file; this module only
//! reads and writes streams.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;

use crate::domain::{Channel, Disposition};

/// A contact as logged when it arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactEvent {
    /// Unique contact id.
    pub contact_id: String,
    /// Arrival time.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Caller number in any Indonesian form; absent when withheld or SIM-less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// Channel.
    pub channel: Channel,
    /// Region code.
    pub region: String,
    /// Whether the handset has a SIM card.
    pub sim_present: bool,
    /// Device id (IMEI or app install id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Latitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    /// Longitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    /// Location accuracy in metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
}

/// An outcome as logged when the contact ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeEvent {
    /// The contact's id.
    pub contact_id: String,
    /// When the outcome was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Whether an operator answered.
    pub answered: bool,
    /// Seconds ringing.
    pub ring_s: f64,
    /// Seconds of talk.
    pub talk_s: f64,
    /// The operator's disposition.
    pub disposition: Disposition,
    /// Incident category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Operator id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<String>,
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A contact arrived.
    Contact(ContactEvent),
    /// A contact ended.
    Outcome(OutcomeEvent),
}

impl Event {
    /// The event's time.
    pub fn at(&self) -> OffsetDateTime {
        match self {
            Event::Contact(contact) => contact.at,
            Event::Outcome(outcome) => outcome.at,
        }
    }
}

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

/// Why an event log could not be read.
#[derive(Debug, Error)]
pub enum EventLogError {
    /// The stream failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A bad line in strict mode.
    #[error("line {line}: {message}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },
}

/// Reads an event log. In strict mode the first bad line is an error; otherwise bad lines are returned.
pub fn read_events(reader: impl BufRead, strict: bool) -> Result<(Vec<Event>, Vec<BadLine>), EventLogError> {
    let mut events = Vec::new();
    let mut bad_lines = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line_number = index + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(&line) {
            Ok(event) => events.push(event),
            Err(error) if strict => {
                return Err(EventLogError::BadLine { line: line_number, message: error.to_string() })
            }
            Err(error) => bad_lines.push(BadLine { line: line_number, message: error.to_string() }),
        }
    }
    Ok((events, bad_lines))
}

/// Writes events as JSON Lines.
pub fn write_events(mut writer: impl Write, events: &[Event]) -> std::io::Result<()> {
    for event in events {
        serde_json::to_writer(&mut writer, event)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"kind":"contact","contact_id":"c-1","at":"2026-03-01T08:15:02Z","caller":"+6281234567890","channel":"voice","region":"ntt.kupang","sim_present":true,"device_id":"356938035643809","lat":-10.17,"lon":123.6,"accuracy_m":50}
{"kind":"outcome","contact_id":"c-1","at":"2026-03-01T08:16:10Z","answered":true,"ring_s":4.0,"talk_s":62.0,"disposition":"genuine_emergency","category":"accident","operator_id":"op-17","future_key":1}
{"kind":"contact","contact_id":"c-2","at":"2026-03-01T08:17:00Z","channel":"fax","region":"x","sim_present":false}

{"kind":"contact","contact_id":"c-3","at":"2026-03-01T08:18:00Z","channel":"sms","region":"x","sim_present":false}
"#;

    #[test]
    fn reads_the_documented_format_and_reports_bad_lines() {
        let (events, bad) = read_events(EXAMPLE.as_bytes(), false).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
        assert!(bad[0].message.contains("fax"), "{}", bad[0].message);
        match &events[1] {
            Event::Outcome(outcome) => assert_eq!(outcome.disposition, Disposition::GenuineEmergency),
            other => panic!("expected an outcome, got {other:?}"),
        }
        let error = read_events(EXAMPLE.as_bytes(), true).unwrap_err();
        assert!(error.to_string().starts_with("line 3:"), "{error}");
    }

    #[test]
    fn writing_then_reading_round_trips() {
        let (events, _) = read_events(EXAMPLE.as_bytes(), false).unwrap();
        let mut buffer = Vec::new();
        write_events(&mut buffer, &events).unwrap();
        let (again, bad) = read_events(buffer.as_slice(), true).unwrap();
        assert!(bad.is_empty());
        assert_eq!(again, events);
    }

    /// Found by fuzzing (fuzz/regressions/event_log/float-roundtrip-ring-s): serde_json's default float parser
    /// read this `ring_s` one ULP away from the nearest double, so the event written back read back different.
    #[test]
    fn numbers_read_exactly_so_a_written_event_reads_back_equal() {
        let line = r#"{"kind":"outcome","contact_id":"s1-c37","at":"2026-03-01T07:19:31Z","answered":true,"ring_s":4444444444444444444444444444444443.4,"talk_s":21.9,"disposition":"prank"}"#;
        let (events, _) = read_events(line.as_bytes(), true).unwrap();
        let Event::Outcome(outcome) = &events[0] else { panic!("expected an outcome") };
        assert_eq!(outcome.ring_s, "4444444444444444444444444444444443.4".parse::<f64>().unwrap());
        let mut buffer = Vec::new();
        write_events(&mut buffer, &events).unwrap();
        assert_eq!(read_events(buffer.as_slice(), true).unwrap().0, events);
    }
}
