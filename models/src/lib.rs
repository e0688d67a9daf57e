//! saring's domain core, shared by training (`saring-train`) and serving (`saring`).
//!
//! Everything here is pure: no I/O, no clocks, no network. Callers pass the time in, read files themselves and
//! hand this crate their contents. That is what lets training and serving compute features with the same code.

#![forbid(unsafe_code)]

pub mod artifact;
pub mod domain;
pub mod events;
pub mod features;
pub mod history;
pub mod inference;
pub mod ladder;
pub mod metrics;
pub mod naive;
pub mod phone;
pub mod reason_text;
pub mod reasons;
pub mod region;

pub use artifact::{ArtifactError, ModelArtifact};
pub use domain::{Channel, Disposition};
pub use features::{ContactContext, FeatureVector, FEATURE_COUNT};
pub use history::{CallerHistory, HistoryEvent, PackedHistory};
pub use inference::{Band, Model, Score};
