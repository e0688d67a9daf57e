//! Compiles `proto/saring/v1/*.proto` with the pure-Rust `protox` compiler (no system `protoc`) and writes a
//! file descriptor set used by server reflection.

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
    git_commit();
    Ok(())
}

/// `SARING_GIT_COMMIT`: the commit the binary is built from (`unknown` outside a git checkout), for `--version`.
/// A build without the repository (a container build) passes it in the environment instead.
fn git_commit() {
    println!("cargo:rerun-if-env-changed=SARING_GIT_COMMIT");
    if let Some(commit) = std::env::var("SARING_GIT_COMMIT").ok().filter(|commit| !commit.is_empty()) {
        println!("cargo:rustc-env=SARING_GIT_COMMIT={commit}");
        return;
    }
    let repository = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("..");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(&repository)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|status| !status.is_empty());
    println!("cargo:rustc-env=SARING_GIT_COMMIT={commit}{}", if dirty { "-modified" } else { "" });
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={}", repository.join(head).display());
    }
    if let Some(index) = git(&["rev-parse", "--git-path", "index"]) {
        println!("cargo:rerun-if-changed={}", repository.join(index).display());
    }
}
