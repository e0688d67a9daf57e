//! The event-log reader: any bytes as a JSON Lines log.

use super::Verdict;
use saring_models::events::{read_events, write_events, BadLine, Event, EventLogError};

/// Reads `input` as an event log, leniently and strictly. Every non-blank line is either an event or a bad line
/// carrying its own line number; strict mode fails on the first bad line; invalid UTF-8 fails the whole read; and
/// the events read, written back, read back equal.
pub fn check_event_log(input: &[u8]) -> Verdict {
    let lenient = read_events(input, false);
    let strict = read_events(input, true);
    let Ok(text) = std::str::from_utf8(input) else {
        assert!(matches!(lenient, Err(EventLogError::Io(_))), "invalid UTF-8 was read: {lenient:?}");
        assert!(strict.is_err(), "invalid UTF-8 was read strictly");
        return Verdict::Unreadable;
    };
    let (events, bad_lines) = lenient.unwrap_or_else(|error| panic!("a lenient read of UTF-8 failed: {error}"));
    let lines = log_lines(text);
    let mut events_in_order = events.iter();
    let mut bad_in_order = bad_lines.iter().peekable();
    for (index, line) in lines.iter().enumerate() {
        let line_number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(bad) = bad_in_order.next_if(|bad| bad.line == line_number) {
            assert!(!bad.message.is_empty(), "line {line_number} is bad without a reason");
            assert!(serde_json::from_str::<Event>(line).is_err(), "line {line_number} is reported bad but parses");
        } else {
            let event = events_in_order.next().unwrap_or_else(|| panic!("line {line_number} was dropped silently"));
            assert_eq!(serde_json::from_str::<Event>(line).ok().as_ref(), Some(event), "line {line_number}");
        }
    }
    assert!(events_in_order.next().is_none(), "more events than lines");
    assert!(bad_in_order.next().is_none(), "a bad line number that is not a non-blank line: {bad_lines:?}");

    match (strict, bad_lines.first()) {
        (Ok((strict_events, strict_bad)), None) => {
            assert_eq!(strict_events, events);
            assert!(strict_bad.is_empty());
        }
        (Err(EventLogError::BadLine { line, message }), Some(first)) => {
            assert_eq!(&BadLine { line, message }, first, "strict mode stops at the first bad line");
        }
        (strict, first) => panic!("strict read {strict:?} disagrees with the first bad line {first:?}"),
    }

    let mut written = Vec::new();
    write_events(&mut written, &events).expect("an event that was read can be written");
    let (again, bad_again) = read_events(written.as_slice(), true).expect("written events read back strictly");
    assert!(bad_again.is_empty());
    assert_eq!(again, events, "events written and read back differ");
    if bad_lines.is_empty() {
        Verdict::Accepted
    } else {
        Verdict::Rejected
    }
}

/// The log's lines as `BufRead::lines` yields them: split at '\n', a '\r' before the '\n' removed.
fn log_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n')
        .map(|piece| match piece.strip_suffix('\n') {
            Some(line) => line.strip_suffix('\r').unwrap_or(line),
            None => piece,
        })
        .collect()
}
