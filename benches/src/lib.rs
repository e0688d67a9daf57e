//! saring's benchmarks: the `saring-bench` load harness (real gRPC against saring and a trivial tonic ceiling)
//! and, in `benches/`, criterion micro-benchmarks of the scoring core.

pub mod ceiling;
pub mod ledger;
pub mod load;
pub mod machine;
pub mod mix;
pub mod report;
pub mod schedule;
pub mod servers;
