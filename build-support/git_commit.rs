// Shared by the build scripts of `saring` and `saring-training` (`include!`d).

/// `SARING_GIT_COMMIT`: the commit the binary is built from (`unknown` outside a git checkout), for `--version`.
/// A build without the repository (a container build) passes it in the environment instead.
fn git_commit() {
    println!("cargo:rerun-if-env-changed=SARING_GIT_COMMIT");
    if let Some(commit) = std::env::var("SARING_GIT_COMMIT").ok().filter(|commit| !commit.is_empty()) {
        println!("cargo:rustc-env=SARING_GIT_COMMIT={commit}");
        return;
    }
    let repository = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("..");
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
