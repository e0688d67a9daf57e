//! A data subject's rights over gRPC, on a SQLite file and on PostgreSQL: access shows everything held about a
//! number; erasure is refused (FAILED_PRECONDITION naming the case) while its case holds it, goes through once a
//! reviewer released the hold, and then leaves no trace a scan of every table can find — neither the number nor its
//! keyed hash — while the audit chain still verifies; other callers keep everything.

use saring::auth::Role;
use saring::cases::audit::Verification;
use saring::cases::CaseStore;
use saring::config::Settings;
use saring::proto;
use sqlx::{Column, Row};
use tonic::Code;

use crate::common::{prank_outcome, sample_contact, start_on, timestamp};
use crate::ladder::PgSchema;

const NUMBER: &str = "0812-3456-7001";
const E164: &str = "+6281234567001";
const OTHER: &str = "0812-3456-7002";

/// Every text value in every table of the database (SQLite's or the test schema's), with where it is.
async fn every_text(url: &str) -> Vec<(String, String, String)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let tables: Vec<String> = if url.starts_with("sqlite:") {
        sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(&pool).await.unwrap()
    } else {
        sqlx::query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()")
            .fetch_all(&pool)
            .await
            .unwrap()
    }
    .iter()
    .map(|row| row.get::<String, _>(0))
    .collect();
    assert!(tables.iter().any(|table| table == "contacts") && tables.iter().any(|table| table == "audit"));
    let mut texts = Vec::new();
    // sqlx's own bookkeeping (migration names and checksums) holds no caller data, and Any cannot read its types.
    for table in tables.into_iter().filter(|table| table != "_sqlx_migrations") {
        for row in sqlx::query(&format!("SELECT * FROM {table}")).fetch_all(&pool).await.unwrap() {
            for (index, column) in row.columns().iter().enumerate() {
                if let Ok(Some(text)) = row.try_get::<Option<String>, _>(index) {
                    texts.push((table.clone(), column.name().to_owned(), text));
                }
            }
        }
    }
    pool.close().await;
    texts
}

fn pranks(number: &str, prefix: &str, count: usize) -> Vec<proto::Outcome> {
    (0..count)
        .map(|n| {
            let contact_id = format!("{prefix}-{n}");
            let at = time::OffsetDateTime::now_utc() - time::Duration::hours(30 - n as i64);
            let contact =
                proto::ContactRequest { received_at: Some(timestamp(at)), ..sample_contact(&contact_id, Some(number)) };
            prank_outcome(&contact_id, Some(contact))
        })
        .collect()
}

async fn a_number_is_accessed_held_released_and_erased(url: &str) {
    let harness = start_on(url).await;
    let mut routing = harness.screening(Role::Routing);
    let mut legal = harness.privacy(Role::Legal);
    for outcome in pranks(NUMBER, "subject", 3).into_iter().chain(pranks(OTHER, "other", 3)) {
        routing.record_outcome(outcome).await.unwrap();
    }

    // Access: the history, the three outcomes, the warning case with its audit trail, and its hold.
    let access = |reason: &str| proto::AccessRequest { caller: NUMBER.into(), reason: reason.into() };
    let records = legal.access(access("request DSR-2026-114")).await.unwrap().into_inner();
    assert_eq!(records.caller, E164);
    let profile = records.profile.unwrap();
    assert!(profile.known);
    assert_eq!(profile.history.unwrap().total_contacts, 3);
    assert_eq!(records.contacts.len(), 3);
    assert!(records.contacts.iter().all(|contact| contact.contact_id.starts_with("subject-")));
    assert_eq!(records.cases.len(), 1, "{:?}", records.cases);
    let case_id = records.cases[0].case_id.clone();
    assert!(
        records.audit.iter().any(|entry| entry.case_id == case_id && entry.action == "proposed"),
        "{:?}",
        records.audit
    );
    assert_eq!(records.holds.len(), 1);
    assert_eq!((records.holds[0].case_id.as_str(), records.holds[0].cause.as_str()), (case_id.as_str(), "open case"));
    assert!(!records.holds[0].released);

    // A reason holding the number is refused: the audit log keeps reasons for good.
    let refused = legal.access(access("asked by 0812 3456 7001 himself")).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    // Erasure while the case holds the number: refused, naming the case; nothing changed.
    let erase =
        proto::EraseRequest { caller: NUMBER.into(), device_id: String::new(), reason: "request DSR-2026-114".into() };
    let held = legal.erase(erase.clone()).await.unwrap_err();
    assert_eq!(held.code(), Code::FailedPrecondition, "{held:?}");
    assert!(held.message().contains(&case_id), "{}", held.message());
    assert_eq!(legal.access(access("after refusal")).await.unwrap().into_inner().contacts.len(), 3);

    // A reviewer releases the hold; a second release is refused; an unknown case is NOT_FOUND.
    let release =
        proto::ReleaseHoldRequest { case_id: case_id.clone(), reason: "complaint upheld, DSR-2026-114".into() };
    let released = legal.release_hold(release.clone()).await.unwrap().into_inner();
    assert!(released.hold.as_ref().unwrap().released && released.audit_seq > 0);
    assert_eq!(legal.release_hold(release).await.unwrap_err().code(), Code::AlreadyExists);
    let unknown = proto::ReleaseHoldRequest { case_id: "case-none".into(), reason: "x".into() };
    assert_eq!(legal.release_hold(unknown).await.unwrap_err().code(), Code::NotFound);

    // Erasure now goes through.
    let erasure = legal.erase(erase.clone()).await.unwrap().into_inner();
    assert_eq!((erasure.contacts_removed, erasure.cases_redacted), (3, 1));
    assert!(erasure.erasure_id.starts_with("erasure-"));
    let after = legal.access(access("after erasure")).await.unwrap().into_inner();
    assert!(!after.profile.unwrap().known, "no history is left");
    assert!(after.contacts.is_empty() && after.cases.is_empty() && after.holds.is_empty());
    // A second erasure finds nothing more and succeeds.
    assert_eq!(legal.erase(erase).await.unwrap().into_inner().contacts_removed, 0);
    // The other caller keeps everything.
    let other = legal.access(proto::AccessRequest { caller: OTHER.into(), reason: "audit".into() }).await.unwrap();
    assert_eq!(other.into_inner().contacts.len(), 3);
    // Operators and dispatch cannot erase.
    let denied = harness.privacy(Role::Operator).erase(proto::EraseRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    harness.server.stop().await.unwrap();

    // No table holds the number in any form, nor its keyed hash; the other caller's hash is still there.
    let hasher = saring::server::key_hasher(&Settings::default());
    let erased_ref = hasher.number(E164).to_hex();
    let other_ref = hasher.number("+6281234567002").to_hex();
    let texts = every_text(url).await;
    for (table, column, text) in &texts {
        assert!(!text.contains(&erased_ref), "{table}.{column} holds the erased number's hash: {text}");
        assert!(!text.contains("81234567001"), "{table}.{column} holds the erased number: {text}");
    }
    assert!(texts.iter().any(|(table, _, text)| table == "contacts" && text == &other_ref));

    // The audit chain verifies: the redacted case's last entry carries its redacted rows' digest.
    let store = CaseStore::connect(url).await.unwrap();
    let verification = store.verify_audit().await.unwrap();
    assert!(matches!(verification, Verification::Intact { .. }), "{verification:?}");
    let trail = store.audit_of(&case_id).await.unwrap();
    assert_eq!(
        trail
            .iter()
            .map(|entry| entry.action.as_str())
            .filter(|action| ["hold_released", "erased"].contains(action))
            .count(),
        2
    );
    store.close().await;
}

#[tokio::test]
async fn a_number_is_accessed_held_released_and_erased_on_sqlite() {
    a_number_is_accessed_held_released_and_erased(&crate::common::sqlite_url("privacy-rights")).await;
}

#[tokio::test]
async fn a_number_is_accessed_held_released_and_erased_on_postgres() {
    let schema = PgSchema::create("privacy").await;
    a_number_is_accessed_held_released_and_erased(&schema.url()).await;
    schema.drop().await;
}

/// Runs `saring privacy ARGS` against `server` with `token` in SARING_TOKEN; (exit code, stdout, stderr).
async fn cli(server: &str, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_saring"));
    command.arg("privacy").arg("--server").arg(server).args(args).env_remove("SARING_TOKEN");
    if let Some(token) = token {
        command.env("SARING_TOKEN", token);
    }
    let output = command.output().await.unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (output.status.code().unwrap_or(-1), text(output.stdout), text(output.stderr))
}

#[tokio::test]
async fn the_privacy_command_reads_reports_and_erases_through_the_service() {
    let harness = start_on(&crate::common::sqlite_url("privacy-cli")).await;
    let mut routing = harness.screening(Role::Routing);
    for outcome in pranks(NUMBER, "cli", 2) {
        routing.record_outcome(outcome).await.unwrap();
    }
    let server = format!("http://{}", harness.server.local_addr);
    let legal = crate::common::token(Role::Legal);

    let (code, report, _) = cli(&server, Some(&legal), &["access", "--caller", NUMBER, "--reason", "DSR-7"]).await;
    assert_eq!(code, 0);
    assert!(report.contains(&format!("What saring holds about {E164}")), "{report}");
    assert!(
        report.contains("Contacts (2):") && report.contains("cli-0") && report.contains("Legal holds (1):"),
        "{report}"
    );
    let (code, json, _) =
        cli(&server, Some(&legal), &["--json", "access", "--caller", NUMBER, "--reason", "DSR-7"]).await;
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["contacts"].as_array().unwrap().len(), 2);
    assert_eq!(json["history"]["total_contacts"], 2);
    let case_id = json["cases"][0]["case_id"].as_str().unwrap().to_owned();

    // Refused by the service (a standing hold): exit 1, naming the case.
    let (code, _, error) = cli(&server, Some(&legal), &["erase", "--caller", NUMBER, "--reason", "DSR-7"]).await;
    assert_eq!(code, 1, "{error}");
    assert!(error.contains("FailedPrecondition") && error.contains(&case_id), "{error}");
    // Another role's token: refused; no token: a usage error; nothing listening: unavailable.
    let operator = crate::common::token(Role::Operator);
    let (code, _, error) = cli(&server, Some(&operator), &["access", "--caller", NUMBER, "--reason", "x"]).await;
    assert_eq!(code, 1, "{error}");
    assert!(error.contains("PermissionDenied"), "{error}");
    assert_eq!(cli(&server, None, &["access", "--caller", NUMBER, "--reason", "x"]).await.0, 64);
    let closed_port = crate::common::process::ClosedPort::new();
    let closed = format!("http://127.0.0.1:{}", closed_port.port);
    assert_eq!(cli(&closed, Some(&legal), &["access", "--caller", NUMBER, "--reason", "x"]).await.0, 69);

    let (code, out, error) =
        cli(&server, Some(&legal), &["release-hold", "--case-id", &case_id, "--reason", "DSR-7 upheld"]).await;
    assert_eq!(code, 0, "{error}");
    assert!(out.contains("audit_seq"), "{out}");
    let (code, out, error) =
        cli(&server, Some(&legal), &["--json", "erase", "--caller", NUMBER, "--reason", "DSR-7"]).await;
    assert_eq!(code, 0, "{error}");
    let erasure: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((erasure["contacts_removed"].as_i64(), erasure["cases_redacted"].as_i64()), (Some(2), Some(1)));
    harness.server.stop().await.unwrap();
}

async fn a_reassigned_number_starts_fresh(url: &str) {
    let harness = start_on(url).await;
    let mut routing = harness.screening(Role::Routing);
    let mut legal = harness.privacy(Role::Legal);
    // The former subscriber: three pranks 30 to 28 hours ago, an open warning.
    for outcome in pranks(NUMBER, "former", 3) {
        routing.record_outcome(outcome).await.unwrap();
    }
    let before = legal.access(proto::AccessRequest { caller: NUMBER.into(), reason: "notice".into() }).await.unwrap();
    let case_id = before.into_inner().cases[0].case_id.clone();

    // The carrier's notice: the number is someone else's since 2 hours ago.
    let mark = |at: time::OffsetDateTime| proto::MarkReassignedRequest {
        caller: NUMBER.into(),
        reassigned_at: Some(timestamp(at)),
        reason: "carrier notice TSEL-2026-88".into(),
    };
    let future = legal.mark_reassigned(mark(time::OffsetDateTime::now_utc() + time::Duration::hours(2))).await;
    assert_eq!(future.unwrap_err().code(), Code::InvalidArgument);
    let done = legal.mark_reassigned(mark(time::OffsetDateTime::now_utc() - time::Duration::hours(2))).await.unwrap();
    let done = done.into_inner();
    assert_eq!((done.contacts_detached, done.cases_detached, done.cases_closed, done.histories_reset), (3, 1, 1, 1));

    // The number holds nothing of the former subscriber; the former subscriber's case stays, closed, as evidence.
    let after = legal.access(proto::AccessRequest { caller: NUMBER.into(), reason: "check".into() }).await.unwrap();
    let after = after.into_inner();
    assert!(after.contacts.is_empty() && after.cases.is_empty() && !after.profile.unwrap().known);
    let case = harness.escalations(Role::Legal).get(proto::GetCaseRequest { case_id: case_id.clone() }).await;
    let case = case.unwrap().into_inner();
    assert_eq!(case.summary.as_ref().unwrap().state, proto::CaseState::Rejected as i32);
    assert_eq!(case.caller_number, E164, "the former subscriber's case keeps its evidence");
    assert_eq!(case.timeline.len(), 3);

    // The new subscriber's first prank proposes nothing (a warning needs two); the second does.
    let fresh: Vec<proto::Outcome> = (0..2)
        .map(|n| {
            let contact_id = format!("new-{n}");
            let at = time::OffsetDateTime::now_utc() - time::Duration::minutes(30 - n);
            let contact =
                proto::ContactRequest { received_at: Some(timestamp(at)), ..sample_contact(&contact_id, Some(NUMBER)) };
            prank_outcome(&contact_id, Some(contact))
        })
        .collect();
    let first = routing.record_outcome(fresh[0].clone()).await.unwrap().into_inner();
    assert_eq!(first.ladder_change, proto::LadderChange::None as i32, "{first:?}");
    let second = routing.record_outcome(fresh[1].clone()).await.unwrap().into_inner();
    assert_eq!(second.ladder_change, proto::LadderChange::Proposed as i32, "{second:?}");
    harness.server.stop().await.unwrap();

    let store = CaseStore::connect(url).await.unwrap();
    let verification = store.verify_audit().await.unwrap();
    assert!(matches!(verification, Verification::Intact { .. }), "{verification:?}");
    assert!(store.audit_of(&case_id).await.unwrap().iter().any(|entry| entry.action == "number_reassigned"));
    store.close().await;
}

#[tokio::test]
async fn a_reassigned_number_starts_fresh_on_sqlite() {
    a_reassigned_number_starts_fresh(&crate::common::sqlite_url("privacy-reassigned")).await;
}

#[tokio::test]
async fn a_reassigned_number_starts_fresh_on_postgres() {
    let schema = PgSchema::create("reassigned").await;
    a_reassigned_number_starts_fresh(&schema.url()).await;
    schema.drop().await;
}

#[tokio::test]
async fn a_carriers_notices_are_imported_line_by_line() {
    let harness = start_on(&crate::common::sqlite_url("privacy-import")).await;
    let mut routing = harness.screening(Role::Routing);
    for outcome in pranks(NUMBER, "imported", 2).into_iter().chain(pranks(OTHER, "kept", 2)) {
        routing.record_outcome(outcome).await.unwrap();
    }
    let directory = std::env::temp_dir().join(crate::common::process::unique_prefix("notices").replace(':', "-"));
    std::fs::create_dir_all(&directory).unwrap();
    let file = directory.join("notices.csv");
    let yesterday = (time::OffsetDateTime::now_utc() - time::Duration::hours(3))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    std::fs::write(&file, format!("number,reassigned_from\n{NUMBER},{yesterday}\n{OTHER},next tuesday\n# done\n"))
        .unwrap();
    let server = format!("http://{}", harness.server.local_addr);
    let legal = crate::common::token(Role::Legal);
    let file_arg = file.display().to_string();
    let (code, out, error) =
        cli(&server, Some(&legal), &["import-reassignments", "--file", &file_arg, "--reason", "TSEL batch 12"]).await;
    assert_eq!(code, 1, "one line failed: {out} {error}");
    assert!(out.contains("1 numbers marked reassigned, 1 lines failed") && out.contains("line 2:"), "{out}");
    assert!(error.contains("line 3") && error.contains("next tuesday"), "{error}");
    let mut privacy = harness.privacy(Role::Legal);
    let marked = privacy.access(proto::AccessRequest { caller: NUMBER.into(), reason: "check".into() }).await.unwrap();
    assert!(marked.into_inner().contacts.is_empty());
    let kept = privacy.access(proto::AccessRequest { caller: OTHER.into(), reason: "check".into() }).await.unwrap();
    assert_eq!(kept.into_inner().contacts.len(), 2, "the failed line changed nothing");
    harness.server.stop().await.unwrap();
    std::fs::remove_dir_all(directory).ok();
}

fn old_record(contact_id: &str, caller: &str, days_ago: i64) -> saring::cases::ContactRecord {
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    saring::cases::ContactRecord {
        contact_id: contact_id.to_owned(),
        caller_ref: format!("{caller:0>64}"),
        caller_number: format!("+62813{caller:0>7}"),
        at_ms: now_ms - days_ago * 86_400_000 - 3_600_000,
        channel: saring_models::Channel::Voice,
        region: "ntt.kupang".to_owned(),
        disposition: saring_models::Disposition::Prank,
        operator_id: None,
        likelihood: Some(0.5),
        model_version: "test".to_owned(),
        answered: true,
        talk_s: 4.0,
    }
}

async fn retention_prunes_old_rows_and_closed_cases_and_keeps_the_rest(url: &str) {
    use saring::cases::{CaseState, Escalator};
    let escalator =
        Escalator::new(CaseStore::connect(url).await.unwrap(), saring_models::ladder::LadderPolicy::default_policy());
    let reviewer = saring::auth::Principal { name: "test-legal".into(), role: Role::Legal };
    // A caller warned long ago, the warning reverted on appeal; a caller with one old prank (no case); a caller
    // with an open warning from old pranks; a caller from today.
    for record in [old_record("reverted-1", "1", 800), old_record("reverted-2", "1", 800)] {
        escalator.on_outcome(&record).await.unwrap();
    }
    let reverted = escalator.cases_of_caller(&format!("{:0>64}", "1")).await.unwrap().remove(0);
    let reverted = escalator.revert(&reverted.case_id, reverted.version, "appeal upheld", &reviewer).await.unwrap();
    assert_eq!(reverted.state, CaseState::Reverted);
    escalator.on_outcome(&old_record("lonely", "2", 500)).await.unwrap();
    for record in [old_record("open-1", "3", 500), old_record("open-2", "3", 500)] {
        escalator.on_outcome(&record).await.unwrap();
    }
    let open = escalator.cases_of_caller(&format!("{:0>64}", "3")).await.unwrap().remove(0);
    assert!(open.state.is_open());
    escalator.on_outcome(&old_record("today", "4", 0)).await.unwrap();

    // The shipped settings' cut-offs: 400 days for rows, 730 for closed cases (the revert is from today: kept).
    let settings = saring::config::CasesSettings::default();
    let metrics = saring::metrics::Metrics::new();
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let pruned = saring::retention::prune_once(escalator.store(), &metrics, &settings, now_ms).await.unwrap();
    assert_eq!((pruned.contacts, pruned.cases), (1, 0), "only the lonely old prank goes: the others ground cases");
    // Two years on, the reverted case goes too (its number and contacts); the open case is never pruned.
    let later = now_ms + 731 * 86_400_000;
    let pruned = escalator.store().prune(None, Some(later - 730 * 86_400_000)).await.unwrap();
    assert_eq!((pruned.contacts, pruned.cases), (0, 1));
    assert_eq!(escalator.store().prune(Some(now_ms - 400 * 86_400_000), Some(later)).await.unwrap().cases, 0, "once");
    escalator.store().close().await;

    let texts = every_text(url).await;
    let contact_ids: std::collections::BTreeSet<&str> = texts
        .iter()
        .filter(|(table, column, _)| table == "contacts" && column == "contact_id")
        .map(|(_, _, id)| id.as_str())
        .collect();
    assert_eq!(contact_ids, ["open-1", "open-2", "today"].into_iter().collect());
    assert!(texts.iter().all(|(_, _, text)| !text.contains("+628130000001")), "the reverted case's number is gone");
    assert!(texts
        .iter()
        .any(|(table, column, text)| table == "cases" && column == "caller_number" && text == "+628130000003"));
    let store = CaseStore::connect(url).await.unwrap();
    let verification = store.verify_audit().await.unwrap();
    assert!(matches!(verification, Verification::Intact { .. }), "{verification:?}");
    assert!(store.audit_of(&reverted.case_id).await.unwrap().iter().any(|entry| entry.action == "retention_pruned"));
    store.close().await;
}

#[tokio::test]
async fn retention_prunes_old_rows_and_closed_cases_on_sqlite() {
    retention_prunes_old_rows_and_closed_cases_and_keeps_the_rest(&crate::common::sqlite_url("retention")).await;
}

#[tokio::test]
async fn retention_prunes_old_rows_and_closed_cases_on_postgres() {
    let schema = PgSchema::create("retention").await;
    retention_prunes_old_rows_and_closed_cases_and_keeps_the_rest(&schema.url()).await;
    schema.drop().await;
}

/// The history references (hex) of every record in a replica's capture files.
fn captured_refs(dir: &std::path::Path) -> Vec<String> {
    use arrow_array::{Array, StringArray};
    let mut refs = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "parquet") {
            continue;
        }
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
                .unwrap()
                .build()
                .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            for column in ["caller_ref", "device_ref"] {
                let array = batch.column_by_name(column).unwrap();
                let array = array.as_any().downcast_ref::<StringArray>().unwrap();
                refs.extend((0..array.len()).filter(|row| !array.is_null(*row)).map(|row| array.value(row).to_owned()));
            }
        }
    }
    refs
}

/// Two replicas over one Redis and one case database: replica B scored the number (its recent contacts and its
/// capture files hold it) and journaled its outcome while Redis was down; replica A serves the erasure. Once B
/// follows the erasure notices, B's journal, recent contacts and capture files hold nothing of the number, its
/// replayed journal does not bring the history back, the other caller keeps everything, a second round applies
/// nothing, and the case database never held the erased key, only its notice digest.
#[tokio::test]
async fn an_erasure_served_by_one_replica_reaches_every_other_replicas_journal_caches_and_capture() {
    use saring::notices::Follower;
    use saring::server::{build_screener, load_models, with_capture, RunningServer};
    use saring::store::journal::JournaledStore;
    use saring::store::HistoryStore;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::common::process::{unique_prefix, PrivateRedis};
    use crate::common::{app_with, connect, privacy, screening, Bearer};
    use crate::redis_store::store_at;

    let url = crate::common::sqlite_url("privacy-notices");
    let scratch = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.privacy.hash_secret = Some("notices-test-secret-0123456789".into());
    settings.capture.dir = Some(scratch.path().join("capture-b"));
    let hasher = saring::server::key_hasher(&settings);
    let (erased_ref, other_ref) = (hasher.number(E164), hasher.number("+6281234567002"));
    let models = Arc::new(load_models(&settings).unwrap());
    let mut redis = PrivateRedis::start();
    let prefix = unique_prefix("notices");

    let journal = scratch.path().join("b.journal");
    let store_b = JournaledStore::open(store_at(&redis.url(), &prefix), &journal, Duration::from_millis(200)).unwrap();
    let (screener_b, writer_b) =
        with_capture(&settings, build_screener(&settings, Arc::clone(&models), store_b)).unwrap();
    let app_b = app_with(screener_b, &url).await;
    let server_b = RunningServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&app_b)).await.unwrap();
    let mut routing_b = screening(&connect(format!("http://{}", server_b.local_addr)).await, Bearer::of(Role::Routing));
    let app_a = app_with(build_screener(&settings, models, store_at(&redis.url(), &prefix)), &url).await;
    let server_a = RunningServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&app_a)).await.unwrap();
    let mut legal_a = privacy(&connect(format!("http://{}", server_a.local_addr)).await, Bearer::of(Role::Legal));

    // B scores both callers, then journals their outcomes while Redis is down (one prank each: no case, no hold).
    for (contact_id, number) in [("b-subject", NUMBER), ("b-other", OTHER)] {
        routing_b.score_contact(crate::common::sample_contact(contact_id, Some(number))).await.unwrap();
    }
    assert!(app_b.screener.recent_contact("b-subject").is_some());
    let port = redis.port;
    redis.stop();
    for (contact_id, number) in [("b-subject", NUMBER), ("b-other", OTHER)] {
        let outcome =
            crate::common::prank_outcome(contact_id, Some(crate::common::sample_contact(contact_id, Some(number))));
        routing_b.record_outcome(outcome).await.unwrap();
    }
    assert_eq!(app_b.screener.store().depth(), 2, "both outcomes wait in B's journal");
    assert!(std::fs::read_to_string(&journal).unwrap().contains(&erased_ref.to_hex()));
    drop(redis);
    let redis = PrivateRedis::start_on(port);

    // A serves the erasure: the case database and Redis; B is not told directly.
    let erase =
        proto::EraseRequest { caller: NUMBER.into(), device_id: String::new(), reason: "request DSR-2026-200".into() };
    let erasure = legal_a.erase(erase).await.unwrap().into_inner();
    assert_eq!(erasure.contacts_removed, 1);
    assert!(app_b.screener.recent_contact("b-subject").is_some(), "B has not followed yet");

    // B follows: the journal entry, the recent contact and the capture records of the number go.
    let mut follower = Follower::new();
    let followed = follower.follow(&app_b).await.unwrap();
    assert_eq!((followed.notices, followed.erased.journal_entries), (1, 1), "{followed:?}");
    assert!(followed.erased.capture_records >= 2, "the scored contact and its outcome: {followed:?}");
    assert!(!std::fs::read_to_string(&journal).unwrap().contains(&erased_ref.to_hex()));
    assert!(app_b.screener.recent_contact("b-subject").is_none());
    assert!(app_b.screener.recent_contact("b-other").is_some(), "the other caller's contact is kept");
    assert_eq!(follower.follow(&app_b).await.unwrap().notices, 0, "a notice is applied once");
    // A replica starting afresh applies every notice kept (here: nothing more to remove).
    assert_eq!(Follower::new().follow(&app_b).await.unwrap().notices, 1);

    // B's journal replays the other caller only: the erased history does not come back.
    assert_eq!(app_b.screener.store().replay().await.unwrap(), 1);
    let store = store_at(&redis.url(), &prefix);
    assert!(store.load(Some(&erased_ref), None).await.unwrap().caller.is_none());
    assert_eq!(store.load(Some(&other_ref), None).await.unwrap().caller.unwrap().total_contacts, 1);

    server_b.stop().await.unwrap();
    server_a.stop().await.unwrap();
    drop(app_b);
    let report = tokio::task::spawn_blocking(move || writer_b.unwrap().close()).await.unwrap();
    assert!(report.failed == 0, "{report:?}");
    let refs = captured_refs(&scratch.path().join("capture-b"));
    assert!(refs.contains(&other_ref.to_hex()), "the other caller's records stay: {refs:?}");
    assert!(!refs.contains(&erased_ref.to_hex()), "no capture record names the erased number");

    // The case database carries the notice by digest only.
    let texts = every_text(&url).await;
    assert!(texts.iter().all(|(_, _, text)| !text.contains(&erased_ref.to_hex())));
    let digest = hex::encode(hasher.notice_digest(&erased_ref));
    assert!(texts.iter().any(|(table, _, text)| table == "erasure_notices" && text == &digest));
}
