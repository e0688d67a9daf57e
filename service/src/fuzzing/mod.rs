//! Checks shared by the fuzz targets in `fuzz/` and the corpus replay test (`tests/it/fuzz_corpus.rs`), so the
//! minutes of fuzzing and every `cargo test` guard the same properties. Each check takes raw bytes, must never
//! panic on any input, and panics (with the broken invariant) when a result the code accepted is wrong.
//!
//! Not an API: it is public only so the out-of-workspace fuzz crate can reach it.

pub mod event_log;
pub mod requests;

pub use event_log::check_event_log;
pub use requests::{check_phone, check_request, encode_input, RequestKind, NOW_MS};

/// What a check made of its input, so a corpus can be shown to reach both sides of the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not even the encoding: protobuf prost refused, or a log that is not UTF-8.
    Unreadable,
    /// Read, and refused by validation (or a log with bad lines).
    Rejected,
    /// Read and accepted.
    Accepted,
}

/// A check: any bytes in, a verdict out, a panic when an invariant breaks.
pub type Check = fn(&[u8]) -> Verdict;

/// The fuzz targets, by the name of their binary in `fuzz/` and of their corpus folder `fuzz/corpus/NAME`.
pub const TARGETS: [(&str, Check); 3] =
    [("validate_request", check_request), ("event_log", check_event_log), ("phone", check_phone)];
