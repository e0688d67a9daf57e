//! The packaging the operators deploy: the systemd unit passes `systemd-analyze verify`, and the binary runs as an
//! unprivileged user with the container image's configuration (`deploy/container.toml`), TLS on, /metrics on the
//! admin port and the console's pages off — as the Dockerfile's runtime stage runs it. (The image itself cannot be
//! built here: there is no Docker engine. This is everything in it but the base layers.)

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use saring::auth::Role;
use tonic::Code;

use crate::common::pki::{scratch, tls_channel, Ca};
use crate::common::process::SaringProcess;
use crate::common::{sample_contact, screening, token, token_entries, Bearer};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// uid 65534 (nobody) when the tests run as root; otherwise the tests' own user, which is unprivileged already.
fn unprivileged() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find_map(|line| line.strip_prefix("Uid:")).unwrap().split_whitespace().next().unwrap();
    (uid == "0").then_some(65_534)
}

fn uid_of(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|line| line.strip_prefix("Uid:")).unwrap().split_whitespace().next().unwrap().to_owned()
}

#[test]
fn the_systemd_unit_verifies() {
    let directory = scratch("systemd");
    let unit = std::fs::read_to_string(repository().join("deploy/systemd/saring.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/saring serve --config /etc/saring/saring.toml"));
    // The unit as installed, with the binary where this build put it.
    let unit = unit.replace("/usr/local/bin/saring", env!("CARGO_BIN_EXE_saring"));
    let path = directory.join("saring.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze is installed (Debian package systemd; scripts/services.sh installs it)");
    let complaints = String::from_utf8_lossy(&output.stderr);
    // Complaints about other units on the machine are not ours; any line naming saring.service is.
    let ours: Vec<&str> = complaints.lines().filter(|line| line.contains("saring.service")).collect();
    assert!(output.status.success() && ours.is_empty(), "{complaints}");
    std::fs::remove_dir_all(directory).ok();
}

#[tokio::test]
async fn the_container_configuration_serves_tls_as_an_unprivileged_user() {
    let directory = scratch("container");
    let ca = Ca::new("container CA");
    let tls = directory.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let (cert, key) = ca.server().write_to(&tls);
    let data = directory.join("data");
    std::fs::create_dir_all(&data).unwrap();
    // The binary and its files where the unprivileged user can read them (not under root's build directory).
    let binary = directory.join("saring");
    std::fs::copy(env!("CARGO_BIN_EXE_saring"), &binary).unwrap();
    let config = directory.join("saring.toml");
    let tokens: String = token_entries()
        .iter()
        .map(|entry| {
            format!(
                "[[auth.tokens]]\nname = {:?}\nrole = {:?}\nsha256 = {:?}\n",
                entry.name,
                entry.role.as_str(),
                entry.sha256
            )
        })
        .collect();
    let container = std::fs::read_to_string(repository().join("deploy/container.toml")).unwrap();
    std::fs::write(&config, format!("{container}\n[auth]\n{tokens}")).unwrap();
    let user = unprivileged();
    for path in [&directory, &tls, &data, &binary, &config, &cert, &key] {
        if path.is_dir() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        if let Some(uid) = user {
            chown(path, Some(uid), Some(65_534)).unwrap();
        }
    }

    let mut command = match user {
        Some(uid) => {
            let mut command = Command::new("setpriv");
            command.args([format!("--reuid={uid}"), "--regid=65534".into(), "--clear-groups".into()]).arg(&binary);
            command
        }
        None => Command::new(&binary),
    };
    command.args(["serve", "--config"]).arg(&config).current_dir(&data);
    // What a deployment overrides: the loopback test ports, and where its mounted files are.
    for (key, value) in [
        ("SARING__SERVER__LISTEN", "127.0.0.1:0".to_owned()),
        ("SARING__CONSOLE__LISTEN", "127.0.0.1:0".to_owned()),
        ("SARING__SERVER__TLS__CERT_PATH", cert.display().to_string()),
        ("SARING__SERVER__TLS__KEY_PATH", key.display().to_string()),
        ("SARING__HISTORY__JOURNAL_PATH", data.join("outcomes.journal").display().to_string()),
        ("SARING__CASES__DATABASE_URL", format!("sqlite://{}/cases.db", data.display())),
        ("SARING__PRIVACY__HASH_SECRET", "container-test-secret-0123456789".to_owned()),
    ] {
        command.env(key, value);
    }
    let saring = SaringProcess::start(command);
    if user.is_some() {
        assert_eq!(uid_of(saring.child.id()), "65534", "saring runs as nobody");
    }
    let port: u16 = saring.address.rsplit(':').next().unwrap().parse().unwrap();

    let channel = tls_channel(port, &ca, None).await.unwrap();
    let reply = screening(&channel, Bearer::of(Role::Routing))
        .score_contact(sample_contact("container-1", Some("081234567111")))
        .await
        .unwrap()
        .into_inner();
    assert!(!reply.degraded && reply.band != 0);
    let refused = screening(&channel, Bearer::raw("not-a-token")).score_contact(sample_contact("c-2", None)).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);

    // The admin port serves /metrics and nothing else: the pages are off in the container.
    let admin = saring.console_url();
    let metrics = http_get(&admin, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200") && metrics.contains("saring_build_info"), "{metrics}");
    assert!(http_get(&admin, "/login").starts_with("HTTP/1.1 404"));
    // It wrote its data where the image's volume is, as the unprivileged user.
    assert!(data.join("cases.db").exists());

    let (clean, log) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean, "{log:?}");
    assert!(!log.iter().any(|line| line.contains(&token(Role::Routing))));
    std::fs::remove_dir_all(directory).ok();
}

fn http_get(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Every `.rs` file under `dir` (relative to the repository, `/`-separated), skipping build output.
fn rust_files(repository: &Path, dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !["target", "corpus", "artifacts", "node_modules"].contains(&name.as_str()) && !name.starts_with('.') {
                rust_files(repository, &path, found);
            }
        } else if name.ends_with(".rs") {
            found.push(path.strip_prefix(repository).unwrap().to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The console's pages are maud templates, which escape whatever they interpolate: no console source builds HTML
/// by hand (a string literal opening a tag, formatted or pushed) or opts out of escaping (`PreEscaped`).
#[test]
fn the_console_builds_no_html_by_hand() {
    let directory = repository().join("service/src/console");
    let mut offences = Vec::new();
    for entry in std::fs::read_dir(&directory).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let by_hand = ["format!(\"<", "write!(html", "push_str(\"<", "PreEscaped"];
            if by_hand.iter().any(|pattern| line.contains(pattern)) {
                offences.push(format!("{}:{}: {}", path.display(), number + 1, line.trim()));
            }
        }
    }
    assert!(offences.is_empty(), "HTML built outside maud: {offences:#?}");
}

/// ARCHITECTURE.md's code map names every source file in its crate's section — by its path (relative to the
/// crate's `src/`, or to the crate for tests, build scripts and fuzz targets), or by its directory (`store/`) and
/// its name — so the map cannot drift from the tree.
#[test]
fn the_code_map_names_every_source_file() {
    let repository = repository().canonicalize().unwrap();
    let text = std::fs::read_to_string(repository.join("ARCHITECTURE.md")).unwrap();
    let map = &text[text.find("## Code map").expect("a code map")..];
    // `### `crate/` …` sections, each to the next heading of its level or above.
    let mut sections: Vec<(String, &str)> = Vec::new();
    let starts: Vec<usize> = map.match_indices("\n### `").map(|(at, _)| at + 1).collect();
    for (index, start) in starts.iter().enumerate() {
        let end = starts
            .get(index + 1)
            .copied()
            .unwrap_or_else(|| map[*start..].find("\n## ").map_or(map.len(), |at| start + at));
        let body = &map[*start..end];
        let crate_dir = body["### `".len()..].split(['/', '`']).next().unwrap().to_owned();
        sections.push((crate_dir, body));
    }
    let mut files = Vec::new();
    for dir in ["models", "training", "service", "benches", "fuzz", "build-support"] {
        rust_files(&repository, &repository.join(dir), &mut files);
    }
    assert!(files.len() > 100, "{files:?}");
    let mut missing = Vec::new();
    for file in &files {
        let (crate_dir, relative) = match file.split_once('/') {
            // Shared by the build scripts; named in the service's section.
            Some(("build-support", _)) => ("service", file.as_str()),
            Some((crate_dir, rest)) => (crate_dir, rest.strip_prefix("src/").unwrap_or(rest)),
            None => unreachable!("files are under a crate"),
        };
        let Some((_, body)) = sections.iter().find(|(name, _)| name == crate_dir) else {
            missing.push(format!("{file} (no section for {crate_dir}/)"));
            continue;
        };
        let (directory, name) = relative.rsplit_once('/').unwrap_or(("", relative));
        let named = body.contains(relative)
            || (!directory.is_empty()
                && body.contains(&format!("{directory}/"))
                && (name == "mod.rs" || body.contains(name)));
        if !named {
            missing.push(file.clone());
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md's code map does not name: {missing:#?}");
}
