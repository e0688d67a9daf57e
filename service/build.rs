//! Compiles `proto/saring/v1/*.proto` with the pure-Rust `protox` compiler (no system `protoc`) and writes a
//! file descriptor set used by server reflection; compiles the vendored OTLP trace contract (`otlp/`).

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The manifest directory of this build, read at run time: a build-script binary compiled for another checkout
    // of the workspace (a shared target directory) must not read that checkout's files.
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let mut protos = Vec::new();
    // The directory too, so a new .proto file is picked up.
    println!("cargo:rerun-if-changed={}", proto_root.join("saring/v1").display());
    for entry in fs::read_dir(proto_root.join("saring/v1"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            protos.push(path);
        }
    }
    protos.sort();
    let descriptors = protox::compile(&protos, [&proto_root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("saring_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    otlp()?;
    git_commit();
    Ok(())
}

/// The OpenTelemetry trace export contract (OTLP/gRPC), vendored under `otlp/`: the client the exporter uses, and
/// the server the tests receive spans with.
fn otlp() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("otlp");
    println!("cargo:rerun-if-changed={}", root.display());
    let service = root.join("opentelemetry/proto/collector/trace/v1/trace_service.proto");
    let descriptors = protox::compile([&service], [&root])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}

include!("../build-support/git_commit.rs");
