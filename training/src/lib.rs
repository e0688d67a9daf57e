//! saring-train: the traffic simulator, event-log replay, learners and evaluation.
//!
//! Features come from `saring-models`, the same code the service runs, so a model trained here scores exactly
//! as the service scores.

#![forbid(unsafe_code)]

pub mod bands;
pub mod boosting;
pub mod calibration;
pub mod capture;
pub mod dataset;
pub mod evaluate;
pub mod events;
pub mod exit;
pub mod fit;
pub mod generalisation;
pub mod learners;
pub mod metrics;
pub mod plots;
pub mod reference;
pub mod replay;
pub mod report;
pub mod simulate;
pub mod worlds;
