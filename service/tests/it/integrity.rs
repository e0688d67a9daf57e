//! Integrity of the case database under faults. A full disk under SQLite (a 2 MiB tmpfs the test mounts, filled
//! with a file): every write either answers OK and is saved, or answers UNAVAILABLE; Get never shows evidence whose
//! read it could not audit; once space is freed writes succeed again; after a restart nothing acknowledged is
//! missing and the audit chain verifies (and a forged entry does not). `saring audit verify` never creates the
//! database it is asked to check, and the database file (raw numbers) is its owner's only.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use saring::auth::Role;
use saring::proto;
use time::OffsetDateTime;
use tonic::Code;

use crate::common::process::{unique_prefix, SaringProcess};
use crate::common::{connect, escalations, prank_outcome, sample_contact, screening, timestamp, Bearer};

/// A tmpfs of its own, unmounted (and its mount point removed) on drop.
struct Tmpfs {
    directory: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -t tmpfs -o size=…`); `None` only when this process may not mount.
    fn mount(size: &str) -> Option<Self> {
        let directory = std::env::temp_dir().join(unique_prefix("disk-full").replace(':', "-"));
        std::fs::create_dir_all(&directory).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(&directory)
            .output()
            .expect("mount(8) is installed");
        if output.status.success() {
            return Some(Tmpfs { directory });
        }
        std::fs::remove_dir(&directory).ok();
        let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
        let refused = ["permission denied", "not permitted", "must be superuser", "only root"];
        assert!(refused.iter().any(|reason| stderr.contains(reason)), "mount failed: {stderr}");
        eprintln!(
            "SKIPPED a_full_disk_never_loses_an_acknowledged_write: mounting a tmpfs is not permitted here ({})",
            stderr.trim()
        );
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.directory).status();
        let _ = std::fs::remove_dir(&self.directory);
    }
}

/// Writes `path` until the file system refuses (ENOSPC); returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 16 * 1024];
    let mut written = 0_u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(error) if error.raw_os_error() == Some(28) => break,
            Err(error) => panic!("filling the disk: {error}"),
        }
    }
    let _ = file.sync_all();
    written
}

/// A prank from `number` at `at`, carrying its contact (the routing engine's form).
fn prank_at(contact_id: &str, number: &str, at: OffsetDateTime) -> proto::Outcome {
    prank_outcome(
        contact_id,
        Some(proto::ContactRequest { received_at: Some(timestamp(at)), ..sample_contact(contact_id, Some(number)) }),
    )
}

fn ok_or_unavailable<T>(result: Result<tonic::Response<T>, tonic::Status>, what: &str) -> Option<T> {
    match result {
        Ok(response) => Some(response.into_inner()),
        Err(status) if status.code() == Code::Unavailable => None,
        Err(status) => panic!("{what}: expected OK or UNAVAILABLE, got {status:?}"),
    }
}

async fn audit_verify(database_url: &str) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_saring"))
        .args(["audit", "verify", "--database-url", database_url])
        .output()
        .await
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn a_full_disk_never_loses_an_acknowledged_write() {
    let Some(disk) = Tmpfs::mount("2m") else { return };
    let database = disk.directory.join("cases.db");
    let database_url = format!("sqlite://{}", database.display());
    // The legal role's rate limit would refuse the reads and decisions the test makes in a burst.
    let unlimited = "[limits.legal]\nconcurrency = 16\nrate_per_s = 0.0\nburst = 0\n";
    let spawn = || SaringProcess::spawn_configured(unlimited, &["--database-url", &database_url], &[]);

    let saring = spawn();
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));
    let mut legal = escalations(&channel, Bearer::of(Role::Legal));
    let mut dispatch = escalations(&channel, Bearer::of(Role::Dispatch));

    // Callers with a virtual-police message awaiting a reviewer: two pranks (an automatic warning), the warning
    // delivered now, one more prank after it.
    let mut proposed = Vec::new();
    for caller in 0..6 {
        let number = format!("0813-5500-{caller:04}");
        let days_ago = |days: f64| OffsetDateTime::now_utc() - time::Duration::seconds_f64(days * 86_400.0);
        routing.record_outcome(prank_at(&format!("setup-{caller}-1"), &number, days_ago(3.0))).await.unwrap();
        let warning = routing
            .record_outcome(prank_at(&format!("setup-{caller}-2"), &number, days_ago(2.9)))
            .await
            .unwrap()
            .into_inner()
            .open_case
            .expect("two pranks propose a warning");
        crate::ladder::deliver(&mut dispatch, &warning).await;
        let message = routing
            .record_outcome(prank_at(&format!("setup-{caller}-3"), &number, OffsetDateTime::now_utc()))
            .await
            .unwrap()
            .into_inner()
            .open_case
            .expect("a prank after the delivered warning proposes a message");
        assert_eq!(message.state, proto::CaseState::Proposed as i32);
        proposed.push(message);
    }

    // The disk fills up.
    let filler = disk.directory.join("filler");
    assert!(fill(&filler) > 0);

    // Outcomes (each a new contact, every second one proposing a warning) until the database first refuses one,
    // then 60 more rounds of an outcome, an evidence read and a decision. Whatever answers OK must be saved.
    let mut recorded = Vec::new();
    let mut decided: HashMap<String, u64> = HashMap::new();
    let mut reads: HashMap<String, usize> = HashMap::new();
    let (mut refused, mut refused_reads, mut first_refusal) = (0, 0, None);
    let mut step = 0;
    loop {
        step += 1;
        if first_refusal.is_some_and(|first| step > first + 60) {
            break;
        }
        assert!(step < 3000, "the database never refused a write: {} outcomes answered OK", recorded.len());
        let contact_id = format!("full-{step}");
        let number = format!("0813-5600-{:04}", step / 2);
        let outcome = routing.record_outcome(prank_at(&contact_id, &number, OffsetDateTime::now_utc())).await;
        match ok_or_unavailable(outcome, "RecordOutcome") {
            Some(_) => recorded.push(contact_id),
            None => {
                refused += 1;
                first_refusal.get_or_insert(step);
            }
        }
        if first_refusal.is_none() {
            continue;
        }
        let case = &proposed[step % proposed.len()];
        let read = legal.get(proto::GetCaseRequest { case_id: case.case_id.clone() }).await;
        match ok_or_unavailable(read, "Get") {
            Some(evidence) => {
                assert!(!evidence.caller_number.is_empty());
                *reads.entry(case.case_id.clone()).or_default() += 1;
            }
            None => refused_reads += 1,
        }
        if !decided.contains_key(&case.case_id) {
            let decision = legal
                .decide(proto::DecideRequest {
                    case_id: case.case_id.clone(),
                    version: case.version,
                    decision: proto::Decision::Approve as i32,
                    reason: "pranked again after the warning".into(),
                })
                .await;
            if let Some(summary) = ok_or_unavailable(decision, "Decide") {
                decided.insert(case.case_id.clone(), summary.version);
            }
        }
    }

    // Space is freed: the database works again, at once.
    std::fs::remove_file(&filler).unwrap();
    let after = routing.record_outcome(prank_at("after-1", "0813-5700-0001", OffsetDateTime::now_utc())).await;
    assert!(after.is_ok(), "a write after space was freed: {after:?}");
    recorded.push("after-1".into());
    let pending = proposed.iter().find(|case| !decided.contains_key(&case.case_id)).cloned();
    if let Some(case) = pending {
        let read = legal.get(proto::GetCaseRequest { case_id: case.case_id.clone() }).await;
        assert!(read.is_ok(), "an evidence read after space was freed: {read:?}");
        *reads.entry(case.case_id.clone()).or_default() += 1;
    }

    // Restart: everything acknowledged is there.
    let (_, log) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    let saring = spawn();
    let channel = connect(saring.url()).await;
    let mut legal = escalations(&channel, Bearer::of(Role::Legal));
    for (case_id, version) in &decided {
        let case = legal.get(proto::GetCaseRequest { case_id: case_id.clone() }).await.unwrap().into_inner();
        let summary = case.summary.unwrap();
        assert_eq!(summary.state, proto::CaseState::Approved as i32, "{case_id}: an acknowledged approval is lost");
        assert!(summary.version >= *version, "{case_id}");
    }
    let (_, _) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&database_url).await.unwrap();
    let mut missing = Vec::new();
    for contact_id in &recorded {
        let found = sqlx::query("SELECT 1 FROM contacts WHERE contact_id = $1")
            .bind(contact_id)
            .fetch_optional(&pool)
            .await
            .unwrap();
        if found.is_none() {
            missing.push(contact_id.clone());
        }
    }
    let acknowledged = recorded.len();
    assert!(
        missing.is_empty(),
        "{} of {acknowledged} acknowledged outcomes are missing, e.g. {:?}; log tail: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)],
        &log[log.len().saturating_sub(5)..]
    );
    for (case_id, count) in &reads {
        let audited: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit WHERE case_id = $1 AND action = 'evidence_read' AND actor = 'test-legal'",
        )
        .bind(case_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        // The restart's own reads (one per decided case) come on top.
        assert!(audited >= *count as i64, "{case_id}: {count} evidence reads shown, {audited} audited");
    }
    pool.close().await;
    eprintln!(
        "disk full: {acknowledged} outcomes acknowledged and saved, {refused} refused; during the fault {} decisions \
         and {} evidence reads acknowledged (all saved and audited), {refused_reads} reads refused",
        decided.len(),
        reads.values().sum::<usize>()
    );

    // The chain verifies; a copy with one forged entry does not.
    let (intact, report) = audit_verify(&database_url).await;
    assert!(intact, "{report}");
    let forged_directory = std::env::temp_dir().join(unique_prefix("disk-full-forged").replace(':', "-"));
    std::fs::create_dir_all(&forged_directory).unwrap();
    let forged = forged_directory.join("cases.db");
    std::fs::copy(&database, &forged).unwrap();
    let wal = disk.directory.join("cases.db-wal");
    if wal.exists() {
        std::fs::copy(&wal, forged_directory.join("cases.db-wal")).unwrap();
    }
    let forged_url = format!("sqlite://{}", forged.display());
    let pool = sqlx::AnyPool::connect(&forged_url).await.unwrap();
    sqlx::query("UPDATE audit SET reason = 'forged' WHERE seq = 2").execute(&pool).await.unwrap();
    pool.close().await;
    let (intact, report) = audit_verify(&forged_url).await;
    assert!(!intact, "a forged entry verified: {report}");
    std::fs::remove_dir_all(forged_directory).ok();
}

#[tokio::test]
async fn audit_verify_of_a_missing_database_fails_and_creates_nothing() {
    let directory = std::env::temp_dir().join(unique_prefix("verify-missing").replace(':', "-"));
    let database = directory.join("cases.db");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_saring"))
        .args(["audit", "verify", "--database-url", &format!("sqlite://{}", database.display())])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "a missing database verified: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no case database"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("intact"));
    assert!(!database.exists() && !directory.exists(), "audit verify created {}", database.display());
}

#[tokio::test]
async fn the_case_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;

    let directory = std::env::temp_dir().join(unique_prefix("cases-mode").replace(':', "-"));
    let database_url = format!("sqlite://{}/cases.db", directory.display());
    let harness = crate::common::start_on(&database_url).await;
    let mut routing = harness.screening(Role::Routing);
    routing.record_outcome(prank_at("mode-1", "0813-5800-0001", OffsetDateTime::now_utc())).await.unwrap();
    let mut files = 0;
    for entry in std::fs::read_dir(&directory).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("cases.db") {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
            files += 1;
        }
    }
    assert!(files >= 1);
    harness.server.stop().await.unwrap();
    std::fs::remove_dir_all(directory).ok();
}

/// Forwards every connection accepted on `listener` to `target` until the test ends.
async fn forward(listener: tokio::net::TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { return };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test]
async fn a_replica_starts_and_scores_while_postgres_is_unreachable_and_takes_case_writes_once_it_is_reached() {
    let schema = crate::ladder::PgSchema::create("unreached").await;
    let url = schema.url();
    // The database's host:port in the URL (postgres://user@HOST:PORT/db?…), replaced by a port that accepts TCP
    // but says nothing until the test starts forwarding it: PostgreSQL "down" without racing for a free port.
    let authority = url.split('@').nth(1).and_then(|rest| rest.split('/').next()).unwrap().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap().to_string();
    let scratch = std::env::temp_dir().join(unique_prefix("unreached").replace(':', "-"));
    std::fs::create_dir_all(&scratch).unwrap();
    let anchor = scratch.join("audit-anchor");
    let process = SaringProcess::spawn(
        &[],
        &[
            ("SARING__CASES__DATABASE_URL", &url.replace(&authority, &silent)),
            ("SARING__AUDIT__CHAIN_SECRET", "unreached-test-secret-0123456789"),
            ("SARING__AUDIT__ANCHOR_PATH", anchor.to_str().unwrap()),
        ],
    );
    let channel = connect(process.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));

    // Health: Screening serves, Escalations does not until the case database is reached.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = |service: &str| tonic_health::pb::HealthCheckRequest { service: service.into() };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    assert_eq!(health.check(check("saring.v1.Screening")).await.unwrap().into_inner().status, serving);
    assert_eq!(health.check(check("saring.v1.Escalations")).await.unwrap().into_inner().status, not_serving);
    // Scoring does not need the case database.
    let reply = routing.score_contact(sample_contact("unreached-1", Some("081234567001"))).await.unwrap().into_inner();
    assert!(!reply.degraded, "{reply:?}");
    // A case write is refused, not acknowledged and lost.
    let status = routing.record_outcome(prank_outcome("unreached-1", None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // The database comes back: the replica reaches it on its own, and the retried outcome is taken.
    tokio::spawn(forward(listener, authority));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let recorded = loop {
        match routing.record_outcome(prank_outcome("unreached-1", None)).await {
            Ok(reply) => break reply.into_inner(),
            Err(status) if status.code() == Code::Unavailable && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(status) => panic!("the outcome was not taken once the database was back: {status:?}"),
        }
    };
    let _ = recorded;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while health.check(check("saring.v1.Escalations")).await.unwrap().into_inner().status != serving {
        assert!(std::time::Instant::now() < deadline, "Escalations reports SERVING once the database is reached");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = crate::ladder::execute(
        &crate::ladder::postgres_base(),
        &format!("SELECT 1 FROM {}.contacts WHERE contact_id = 'unreached-1'", schema.name()),
    )
    .await;
    assert_eq!(stored, 1, "the contact is in the case database");
    let (_, log) = process.terminate();
    assert!(
        log.iter().any(|line| line.contains("the case database is reached")),
        "the log says when case operations are accepted again"
    );
    schema.drop().await;
    std::fs::remove_dir_all(scratch).ok();
}
