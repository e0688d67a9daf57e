//! saring: the gRPC screening service for contacts reaching police emergency line 110.
//!
//! `screening` is the transport-free core; `grpc` translates saring.v1 messages to and from it; `store` holds
//! caller histories; `server` wires everything together.

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod backtest;
pub mod capture;
pub mod cases;
pub mod config;
pub mod console;
pub mod corrections;
pub mod error;
pub mod failed_auth;
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
pub mod ids;
pub mod metrics;
pub mod modelops;
pub mod notices;
pub mod otlp;
pub mod outcomes;
pub mod privacy;
pub mod privacy_cli;
pub mod recent;
pub mod regions;
pub mod retention;
pub mod rights;
pub mod screening;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod traffic;

/// The generated saring.v1 messages and services.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("saring.v1");

    /// The encoded file descriptor set of saring.v1, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("saring_descriptor");
}
