//! The keyed, anchored audit chain against someone who can write the case database but holds neither the chain
//! secret nor the anchor file. A real `saring serve` (keyed with `[audit] chain_secret`, anchored at
//! `[audit] anchor_path`) runs a realistic flow; then copies of its database are tampered with in SQL and
//! `saring audit verify` must say what was done: an entry rewritten with the chain recomputed, the last entries
//! removed with the head rewound, a case's number, state, disposition or incident changed. A database written
//! before the chain was keyed is keyed at start-up and verifies, old entries and new. On SQLite and PostgreSQL.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use saring::auth::Role;
use saring::cases::audit::{AuditEntry, AuditKey, SCHEME_HMAC, SCHEME_SHA256};
use saring::proto;
use sqlx::Row;

use crate::common::process::{unique_prefix, SaringProcess};
use crate::common::{auth_toml, connect, escalations, screening, Bearer};
use crate::ladder::{decide, deliver, execute, prank, PgSchema};

const SECRET: &str = "audit-chain-test-secret-0123456789";

/// A database, the anchor beside it (or in a scratch directory for PostgreSQL) and a config naming both.
struct Deployment {
    directory: PathBuf,
    database_url: String,
    schema: Option<PgSchema>,
}

impl Deployment {
    async fn new(name: &str, postgres: bool) -> Self {
        let directory = std::env::temp_dir().join(unique_prefix(name).replace(':', "-"));
        std::fs::create_dir_all(&directory).unwrap();
        if postgres {
            let schema = PgSchema::create(&name.replace('-', "_")).await;
            Deployment { directory, database_url: schema.url(), schema: Some(schema) }
        } else {
            let database_url = format!("sqlite://{}/cases.db", directory.display());
            Deployment { directory, database_url, schema: None }
        }
    }

    fn anchor(&self) -> PathBuf {
        self.directory.join("audit-anchor")
    }

    /// A config file for `serve` and `audit verify`, with `secret`.
    fn config(&self, secret: &str) -> PathBuf {
        let path = self.directory.join(format!("saring-{}.toml", secret.len()));
        std::fs::write(
            &path,
            format!(
                "[cases]\ndatabase_url = \"{}\"\n[audit]\nchain_secret = \"{secret}\"\nanchor_path = \"{}\"\n{}",
                self.database_url,
                self.anchor().display(),
                auth_toml()
            ),
        )
        .unwrap();
        path
    }

    fn serve_command(&self, secret: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_saring"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--console-listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--config")
            .arg(self.config(secret));
        command
    }

    fn serve(&self) -> SaringProcess {
        SaringProcess::start(self.serve_command(SECRET))
    }

    /// `saring audit verify` under the configured secret and anchor, plus `extra`: (exit 0, stdout).
    async fn verify(&self, extra: &[&str]) -> (bool, String) {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_saring"))
            .args(["audit", "verify", "--config"])
            .arg(self.config(SECRET))
            .args(extra)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success() || output.status.code() == Some(1),
            "verify failed to run: {output:?} {stdout}"
        );
        (output.status.success(), stdout)
    }

    /// A copy of the database and the anchor, for tampering.
    async fn copy(&self, name: &str) -> Deployment {
        let copy = Deployment::new(name, self.schema.is_some()).await;
        match &self.schema {
            None => {
                for file in ["cases.db", "cases.db-wal"] {
                    if self.directory.join(file).exists() {
                        std::fs::copy(self.directory.join(file), copy.directory.join(file)).unwrap();
                    }
                }
            }
            Some(schema) => {
                let into = copy.schema.as_ref().unwrap().name().to_owned();
                for table in ["_sqlx_migrations", "contacts", "cases", "case_incidents", "audit", "audit_head"] {
                    let statement = format!("CREATE TABLE {into}.{table} AS TABLE {}.{table}", schema.name());
                    execute(&crate::ladder::postgres_base(), &statement).await;
                }
            }
        }
        std::fs::copy(self.anchor(), copy.anchor()).unwrap();
        copy
    }

    async fn drop(self) {
        if let Some(schema) = self.schema {
            schema.drop().await;
        }
        std::fs::remove_dir_all(self.directory).ok();
    }
}

/// Every audit entry, in order.
async fn entries(database_url: &str) -> Vec<AuditEntry> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database_url).await.unwrap();
    let rows = sqlx::query(
        "SELECT seq, at_ms, actor, role, action, case_id, state, reason, scheme, case_digest, prev_hash, hash \
         FROM audit ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|row| AuditEntry {
            seq: row.get("seq"),
            at_ms: row.get("at_ms"),
            actor: row.get("actor"),
            role: row.get("role"),
            action: row.get("action"),
            case_id: row.get("case_id"),
            state: row.get("state"),
            reason: row.get("reason"),
            scheme: row.get("scheme"),
            case_digest: row.get("case_digest"),
            prev_hash: row.get("prev_hash"),
            hash: row.get("hash"),
        })
        .collect()
}

/// What someone with write access but without the secret can do: change entry `seq` with `change`, then
/// recompute the links from it through entry `through` (the last: `None`) with `relink`, and the head, so the
/// chain is consistent again as far as they can make it.
async fn rewrite(
    database_url: &str,
    seq: i64,
    through: Option<i64>,
    change: impl Fn(&mut AuditEntry),
    relink: impl Fn(&mut AuditEntry) -> String,
) {
    let mut all = entries(database_url).await;
    if let Some(through) = through {
        all.retain(|entry| entry.seq <= through);
    }
    let from = all.iter().position(|entry| entry.seq == seq).unwrap();
    change(&mut all[from]);
    for index in from..all.len() {
        if index > 0 {
            all[index].prev_hash = all[index - 1].hash.clone();
        }
        all[index].hash = relink(&mut all[index]);
        let entry = &all[index];
        let statement = format!(
            "UPDATE audit SET reason = '{}', actor = '{}', scheme = {}, prev_hash = '{}', hash = '{}' WHERE seq = {}",
            entry.reason.replace('\'', "''"),
            entry.actor,
            entry.scheme,
            entry.prev_hash,
            entry.hash,
            entry.seq
        );
        assert_eq!(execute(database_url, &statement).await, 1);
    }
    if through.is_none() {
        let last = all.last().unwrap();
        let head = format!("UPDATE audit_head SET seq = {}, hash = '{}' WHERE id = 1", last.seq, last.hash);
        assert_eq!(execute(database_url, &head).await, 1);
    }
}

/// Runs a `saring serve` that must refuse to start; its output (killed after 30 s if it serves instead).
fn refused(mut command: Command) -> std::process::Output {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    for _ in 0..300 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

fn unkeyed(entry: &mut AuditEntry) -> String {
    entry.scheme = SCHEME_SHA256;
    entry.legacy_link()
}

fn under_development_key(entry: &mut AuditEntry) -> String {
    entry.expected_link(&AuditKey::development()).unwrap()
}

/// Two callers through the ladder on a real `saring serve`: proposals (an automatic warning, a reviewed message),
/// approval, delivery, an evidence read, evidence added, a revert. Returns the delivered message case and the
/// reverted warning case's id.
async fn realistic_flow(deployment: &Deployment) -> (proto::CaseSummary, String) {
    let saring = deployment.serve();
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));
    let mut legal = escalations(&channel, Bearer::of(Role::Legal));
    let mut dispatch = escalations(&channel, Bearer::of(Role::Dispatch));
    let number = "0812-7700-0001";
    prank(&mut routing, "chain-1", number, 3.0).await;
    let warning = prank(&mut routing, "chain-2", number, 2.9).await.open_case.expect("an automatic warning");
    deliver(&mut dispatch, &warning).await;
    let message = prank(&mut routing, "chain-3", number, 0.0).await.open_case.expect("a message proposed");
    legal.get(proto::GetCaseRequest { case_id: message.case_id.clone() }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let added = prank(&mut routing, "chain-4", number, 0.0).await;
    assert_eq!(added.ladder_change, proto::LadderChange::EvidenceAdded as i32);
    let message = added.open_case.unwrap();
    let message = decide(&mut legal, &message, proto::Decision::Approve, "warned, pranked twice more").await.unwrap();
    let message = deliver(&mut dispatch, &message).await;
    legal.get(proto::GetCaseRequest { case_id: message.case_id.clone() }).await.unwrap();

    let other = "0812-7700-0002";
    prank(&mut routing, "chain-5", other, 2.0).await;
    let appealed = prank(&mut routing, "chain-6", other, 1.0).await.open_case.unwrap();
    let reverted = legal
        .revert(proto::RevertRequest {
            case_id: appealed.case_id.clone(),
            version: appealed.version,
            reason: "appeal upheld: a child with the phone".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reverted.state, proto::CaseState::Reverted as i32);
    // Last, a read: removing it leaves every case's rows as audited, so only the anchor can tell.
    legal.get(proto::GetCaseRequest { case_id: appealed.case_id.clone() }).await.unwrap();
    let (clean, _) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);
    (message, appealed.case_id)
}

async fn tampering_without_the_secret_is_detected(postgres: bool) {
    let deployment = Deployment::new("chain", postgres).await;
    let (delivered, appealed) = realistic_flow(&deployment).await;
    let message = delivered.case_id.clone();

    // (d) untouched: every link, the anchor at the head, every case's rows.
    let (intact, report) = deployment.verify(&[]).await;
    eprintln!("{report}");
    let all = entries(&deployment.database_url).await;
    let head = all.len();
    assert!(intact, "{report}");
    assert!(report.contains(&format!("{head} entries (every entry keyed)")), "{report}");
    assert!(report.contains(&format!("records entry {head}")) && report.contains("3 cases compared"), "{report}");
    assert!(all.iter().all(|entry| entry.scheme == SCHEME_HMAC));
    assert!(all.iter().any(|entry| entry.action == "evidence_read" && entry.case_digest.is_none()));
    assert!(all.iter().any(|entry| entry.action == "evidence_added" && entry.case_digest.is_some()));

    // (a) a reason rewritten and the chain recomputed without the secret: unkeyed, or with a guessed key.
    let copy = deployment.copy("chain-unkeyed").await;
    rewrite(&copy.database_url, 4, None, |entry| entry.reason = "forged".into(), unkeyed).await;
    let (intact, report) = copy.verify(&[]).await;
    assert!(!intact && report.contains("BROKEN at entry 4") && report.contains("unkeyed"), "{report}");
    copy.drop().await;
    let copy = deployment.copy("chain-guessed").await;
    rewrite(&copy.database_url, 4, None, |entry| entry.actor = "mallory".into(), under_development_key).await;
    let (intact, report) = copy.verify(&[]).await;
    assert!(!intact && report.contains("BROKEN at entry 4") && report.contains("chain_secret"), "{report}");
    copy.drop().await;
    // Every entry rewritten unkeyed: consistent inside the database, but not the entry the anchor holds.
    let copy = deployment.copy("chain-downgraded").await;
    rewrite(&copy.database_url, 1, None, |entry| entry.reason = "forged".into(), unkeyed).await;
    let (intact, report) = copy.verify(&[]).await;
    assert!(!intact && report.contains(&format!("entry {head} is not the one the anchor")), "{report}");
    copy.drop().await;

    // A crash between a commit and its anchor write leaves the anchor behind: accepted, as every entry after it is
    // checked link by link. An anchor not signed with the chain secret is not trusted.
    let copy = deployment.copy("chain-behind").await;
    let earlier = &all[head - 3];
    let key = AuditKey::new(SECRET.as_bytes());
    saring::cases::anchor::write(&copy.anchor(), &key, earlier.seq, &earlier.hash).unwrap();
    let (intact, report) = copy.verify(&[]).await;
    assert!(intact && report.contains(&format!("records entry {}", earlier.seq)), "{report}");
    let last = &all[head - 1];
    saring::cases::anchor::write(&copy.anchor(), &AuditKey::development(), last.seq, &last.hash).unwrap();
    let (intact, report) = copy.verify(&[]).await;
    assert!(!intact && report.contains("cannot be trusted"), "{report}");
    copy.drop().await;

    // (b) the last entry removed and the head rewound: the database agrees with itself, the anchor does not.
    let copy = deployment.copy("chain-truncated").await;
    let previous = &all[head - 2];
    execute(&copy.database_url, &format!("DELETE FROM audit WHERE seq = {head}")).await;
    let rewind = format!("UPDATE audit_head SET seq = {}, hash = '{}' WHERE id = 1", previous.seq, previous.hash);
    assert_eq!(execute(&copy.database_url, &rewind).await, 1);
    let (intact, report) = copy.verify(&[]).await;
    eprintln!("{report}");
    assert!(!intact && report.contains("head behind anchor"), "{report}");
    assert!(report.contains(&format!("ends at entry {}", head - 1)), "{report}");
    let (intact, report) = copy.verify(&["--without-anchor"]).await;
    assert!(intact && report.contains("anchor not checked"), "the database alone cannot tell: {report}");
    // A replica will not serve over it (and so never overwrites the evidence in the anchor).
    let output = refused(copy.serve_command(SECRET));
    assert_eq!(output.status.code(), Some(65), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("audit.anchor_path"), "{output:?}");
    copy.drop().await;

    // (c) a case's rows changed in SQL: its number, its state, a disposition it rests on, one of its incidents.
    let incident = "chain-3";
    let tampering = [
        format!("UPDATE cases SET caller_number = '+6281299999999' WHERE case_id = '{message}'"),
        format!("UPDATE cases SET state = 'approved', reverted_by = NULL WHERE case_id = '{appealed}'"),
        format!("UPDATE contacts SET disposition = 'abusive' WHERE contact_id = '{incident}'"),
        format!("DELETE FROM case_incidents WHERE case_id = '{message}' AND contact_id = '{incident}'"),
        format!("UPDATE cases SET rung = 'legal_referral', version = 9 WHERE case_id = '{message}'"),
    ];
    for (index, statement) in tampering.iter().enumerate() {
        let copy = deployment.copy(&format!("chain-case-{index}")).await;
        assert_eq!(execute(&copy.database_url, statement).await, 1, "{statement}");
        let (intact, report) = copy.verify(&[]).await;
        eprintln!("{statement}\n{report}");
        let case = if statement.contains(&appealed) { &appealed } else { &message };
        assert!(!intact, "{statement}: {report}");
        assert!(report.contains(&format!("case {case}: its rows differ from its last audited state")), "{report}");
        if index == 0 {
            // saring makes no change on top of them: its entry would record the changed rows as audited.
            let saring = copy.serve();
            let mut legal = escalations(&connect(saring.url()).await, Bearer::of(Role::Legal));
            let refused = legal
                .revert(proto::RevertRequest {
                    case_id: message.clone(),
                    version: delivered.version,
                    reason: "appeal upheld".into(),
                })
                .await
                .unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Internal, "{refused:?}");
            drop(saring);
            let (intact, report) = copy.verify(&[]).await;
            assert!(!intact && report.contains(&format!("case {message}: its rows differ")), "{report}");
        }
        copy.drop().await;
    }

    // Another secret: the chain does not verify, and serve refuses to extend it.
    let output = refused(deployment.serve_command("another-secret-0123456789"));
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("audit.chain_secret"), "{output:?}");
    deployment.drop().await;
}

#[tokio::test]
async fn tampering_without_the_secret_is_detected_on_sqlite() {
    tampering_without_the_secret_is_detected(false).await;
}

#[tokio::test]
async fn tampering_without_the_secret_is_detected_on_postgres() {
    tampering_without_the_secret_is_detected(true).await;
}

/// (e) A database written before the chain was keyed: the first migration only, a case and its unkeyed entries.
/// saring keys the chain at start-up (one `audit_keyed` entry, an `audit_baseline` per case), later entries are
/// keyed, and the whole verifies; an old entry rewritten with the old links recomputed is caught by the first
/// keyed link.
#[tokio::test]
async fn a_chain_written_before_keying_verifies_and_is_keyed_from_then_on() {
    let deployment = Deployment::new("chain-legacy", false).await;
    let only_first = deployment.directory.join("migrations");
    std::fs::create_dir_all(&only_first).unwrap();
    let first = "20261123000001_cases.sql";
    std::fs::copy(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations").join(first), only_first.join(first))
        .unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("{}?mode=rwc", deployment.database_url)).await.unwrap();
    sqlx::migrate::Migrator::new(only_first.as_path()).await.unwrap().run(&pool).await.unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    for (contact, at) in [("legacy-1", now - 7_200_000), ("legacy-2", now - 3_600_000)] {
        sqlx::query(
            "INSERT INTO contacts (contact_id, caller_key, at_ms, channel, region, disposition, operator_id, \
             likelihood, model_version, answered, talk_s, recorded_ms) \
             VALUES ($1, 'legacy-caller', $2, 'voice', 'ntt.kupang', 'prank', 'op-1', NULL, NULL, 1, 4.0, $2)",
        )
        .bind(contact)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO case_incidents (case_id, contact_id) VALUES ('case-legacy', $1)")
            .bind(contact)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO cases (case_id, caller_key, caller_number, rung, state, version, region, approval, rule, \
         policy_version, model_version, timeline_from_ms, created_ms, updated_ms, decided_by, decided_ms, \
         decision_reason) VALUES ('case-legacy', 'legacy-caller', '+6281277000099', 'warning', 'approved', 2, \
         'ntt.kupang', 'automatic', 'rungs.warning', 'p1', 'm1', $1, $2, $2, 'policy', $2, 'approved automatically')",
    )
    .bind(now - 86_400_000)
    .bind(now - 3_600_000)
    .execute(&pool)
    .await
    .unwrap();
    let mut prev_hash = saring::cases::audit::GENESIS.to_owned();
    for (seq, action) in [(1, "proposed"), (2, "approved")] {
        let mut entry = AuditEntry {
            seq,
            at_ms: now - 3_600_000,
            actor: "saring".into(),
            role: "system".into(),
            action: action.into(),
            case_id: Some("case-legacy".into()),
            state: Some(action.into()),
            reason: "rungs.warning".into(),
            scheme: SCHEME_SHA256,
            case_digest: None,
            prev_hash: prev_hash.clone(),
            hash: String::new(),
        };
        entry.hash = entry.legacy_link();
        sqlx::query(
            "INSERT INTO audit (seq, at_ms, actor, role, action, case_id, state, reason, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(entry.seq)
        .bind(entry.at_ms)
        .bind(&entry.actor)
        .bind(&entry.role)
        .bind(&entry.action)
        .bind(&entry.case_id)
        .bind(&entry.state)
        .bind(&entry.reason)
        .bind(&entry.prev_hash)
        .bind(&entry.hash)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(&entry.hash)
            .execute(&pool)
            .await
            .unwrap();
        prev_hash = entry.hash;
    }
    pool.close().await;

    // The new version serves it: the chain is keyed, and dispatch delivers the old case.
    let saring = deployment.serve();
    let mut dispatch = escalations(&connect(saring.url()).await, Bearer::of(Role::Dispatch));
    let claimed =
        dispatch.claim(proto::ClaimRequest { case_id: "case-legacy".into(), version: 2 }).await.unwrap().into_inner();
    let delivered = dispatch
        .record_action(proto::RecordActionRequest {
            case_id: "case-legacy".into(),
            version: claimed.summary.unwrap().version,
            delivered_at: None,
            note: "warning delivered".into(),
            channel: proto::DeliveryChannel::Sms as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(delivered.state, proto::CaseState::Actioned as i32);
    let (clean, _) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);

    let all = entries(&deployment.database_url).await;
    let actions: Vec<(i64, &str)> = all.iter().map(|entry| (entry.scheme, entry.action.as_str())).collect();
    assert_eq!(
        actions,
        [(1, "proposed"), (1, "approved"), (2, "audit_keyed"), (2, "audit_baseline"), (2, "claimed"), (2, "actioned")]
    );
    let (intact, report) = deployment.verify(&[]).await;
    assert!(intact && report.contains("6 entries (keyed from entry 3, unkeyed before)"), "{report}");
    assert!(report.contains("records entry 6") && report.contains("1 cases compared"), "{report}");

    // An old entry rewritten, the old links recomputed: the first keyed entry's MAC covers the last old link.
    let copy = deployment.copy("chain-legacy-forged").await;
    rewrite(&copy.database_url, 1, Some(2), |entry| entry.reason = "forged".into(), unkeyed).await;
    let (intact, report) = copy.verify(&[]).await;
    assert!(!intact, "{report}");
    assert!(report.contains("BROKEN at entry 3"), "{report}");
    copy.drop().await;
    deployment.drop().await;
}

/// Two replicas on one PostgreSQL database, each with its own anchor, appending at once while a live
/// verification runs: each anchor is a lower bound (the database is ahead whenever the other replica appended),
/// which is never reported; a case changed while a verification reads is left for the next run, not reported.
#[tokio::test]
async fn replicas_on_one_postgres_database_anchor_lower_bounds_without_false_alarms() {
    use saring::cases::{AuditOptions, CaseStore, ContactRecord, Escalator};
    use saring_models::ladder::LadderPolicy;
    use saring_models::{Channel, Disposition};

    let deployment = Deployment::new("chain-replicas", true).await;
    let secret = crate::ladder::development_chain_secret();
    let replica = |name: &str| {
        let options =
            AuditOptions { key: AuditKey::new(secret.as_bytes()), anchor_path: Some(deployment.directory.join(name)) };
        CaseStore::connect_with(&deployment.database_url, options)
    };
    let (a, b) = (replica("anchor-a").await.unwrap(), replica("anchor-b").await.unwrap());
    let escalators =
        [Escalator::new(a.clone(), LadderPolicy::default_policy()), Escalator::new(b, LadderPolicy::default_policy())];
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let record = |caller: usize, contact: usize| ContactRecord {
        contact_id: format!("replica-{caller}-{contact}"),
        caller_ref: format!("caller-{caller}"),
        caller_number: format!("+62812770{caller:05}"),
        at_ms: now - 3_600_000 + contact as i64 * 60_000,
        channel: Channel::Voice,
        region: "ntt.kupang".into(),
        disposition: Disposition::Prank,
        operator_id: Some("op-1".into()),
        likelihood: None,
        model_version: "m".into(),
        answered: true,
        talk_s: 4.0,
    };
    let mut live_reports = 0;
    for round in 0..6 {
        // Two callers, a prank each per step, each replica recording for both in turn: warnings proposed and
        // approved by one replica, evidence added by the other, while A verifies.
        let (one, two) = (record(round % 2, round * 2), record((round + 1) % 2, round * 2));
        let (first, second, report) =
            tokio::join!(escalators[0].on_outcome(&one), escalators[1].on_outcome(&two), a.audit_report());
        first.unwrap();
        second.unwrap();
        let report = report.unwrap();
        assert!(report.problems.is_empty(), "a live verification raised a false alarm: {:?}", report.problems);
        live_reports += 1;
        let (one, two) = (record(round % 2, round * 2 + 1), record((round + 1) % 2, round * 2 + 1));
        let (first, second) = tokio::join!(escalators[1].on_outcome(&one), escalators[0].on_outcome(&two));
        first.unwrap();
        second.unwrap();
    }
    assert_eq!(live_reports, 6);
    escalators[0].store().close().await;
    escalators[1].store().close().await;

    let all = entries(&deployment.database_url).await;
    assert!(all.iter().any(|entry| entry.action == "evidence_added"), "{all:?}");
    let entries = all.len();
    let mut anchored = Vec::new();
    for anchor in ["anchor-a", "anchor-b"] {
        let path = deployment.directory.join(anchor);
        let (intact, report) =
            crate::ladder::audit_verify_with(&deployment.database_url, &["--anchor-path", path.to_str().unwrap()])
                .await;
        assert!(intact, "{anchor}: {report}");
        assert!(report.contains(&format!("{entries} entries")), "{report}");
        let seq = report.split("records entry ").nth(1).and_then(|rest| rest.split(';').next()).unwrap();
        anchored.push(seq.parse::<usize>().unwrap());
    }
    // The replica that did not append last is behind the database, and that is no alarm.
    assert!(
        anchored.iter().min() < Some(&entries) && anchored.iter().max() == Some(&entries),
        "{anchored:?} of {entries}"
    );
    deployment.drop().await;
}
