//! Benchmarks for saring; see benches/.
