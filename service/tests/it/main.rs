//! saring's integration tests: the real server on a real socket, driven by a real tonic client.

mod audit_chain;
mod backtest;
mod capture;
mod common;
mod console;
mod degraded;
mod delivery;
mod doors;
mod fuzz_corpus;
mod integrity;
mod ladder;
mod lifecycle;
mod limits;
mod logs;
mod malformed;
mod metrics;
mod models;
mod packaging;
mod parity;
mod redis_cluster;
mod redis_service;
mod redis_store;
mod roles;
mod simulated_day;
mod tls;
mod validation;
