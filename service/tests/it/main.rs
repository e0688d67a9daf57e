//! saring's integration tests: the real server on a real socket, driven by a real tonic client.

mod common;
mod degraded;
mod lifecycle;
mod parity;
mod simulated_day;
mod validation;
