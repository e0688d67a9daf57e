//! The escalation ladder through the gRPC API, on SQLite and on PostgreSQL: callers climb one delivered rung at a
//! time on confirmed dispositions, a quiet caller is forgiven, an appeal reverts a rung, two reviewers cannot both
//! decide one case, a surge never proposes, and the audit log records it all, hash-chained.

use std::time::Duration;

use saring::auth::Role;
use saring::proto;
use time::OffsetDateTime;
use tonic::Code;

use crate::common::{prank_outcome, sample_contact, start_on, timestamp, Escalations, Harness, Screening};

/// A PostgreSQL schema of its own, so no test sees another's rows.
pub struct PgSchema {
    schema: String,
}

/// The test cluster (scripts/services.sh starts it).
pub fn postgres_base() -> String {
    std::env::var("SARING_TEST_POSTGRES_URL")
        .or_else(|_| {
            std::env::var("DATABASE_URL")
                .map_err(|_| ())
                .and_then(|url| url.starts_with("postgres").then_some(url).ok_or(()))
        })
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl PgSchema {
    pub async fn create(name: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let schema = format!("saring_test_{name}_{}_{nanos}", std::process::id());
        execute(&postgres_base(), &format!("CREATE SCHEMA {schema}")).await;
        PgSchema { schema }
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.schema
    }

    /// A database URL whose search path is this schema.
    pub fn url(&self) -> String {
        format!("{}?options=-c%20search_path%3D{}", postgres_base(), self.schema)
    }

    pub async fn drop(self) {
        execute(&postgres_base(), &format!("DROP SCHEMA {} CASCADE", self.schema)).await;
    }
}

/// Runs one statement on a database (SQLite or PostgreSQL) as an outsider would, e.g. to tamper with a row.
pub async fn execute(url: &str, statement: &str) -> u64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("the database answers (scripts/services.sh)");
    let affected = sqlx::query(statement).execute(&pool).await.expect(statement).rows_affected();
    pool.close().await;
    affected
}

/// Runs a test body on SQLite and on PostgreSQL.
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(&crate::common::sqlite_url(stringify!($name))).await;
            }

            #[tokio::test]
            async fn postgres() {
                let schema = super::PgSchema::create(stringify!($name)).await;
                super::$name(&schema.url()).await;
                schema.drop().await;
            }
        }
    };
}

fn days_ago(days: f64) -> OffsetDateTime {
    OffsetDateTime::now_utc() - time::Duration::seconds_f64(days * 86_400.0)
}

fn contact_at(contact_id: &str, number: &str, days: f64) -> proto::ContactRequest {
    proto::ContactRequest { received_at: Some(timestamp(days_ago(days))), ..sample_contact(contact_id, Some(number)) }
}

/// Scores a contact (so its likelihood becomes evidence), then records the operator's disposition.
pub(crate) async fn call(
    client: &mut Screening,
    contact_id: &str,
    number: &str,
    days: f64,
    disposition: proto::Disposition,
) -> proto::OutcomeAck {
    client.score_contact(contact_at(contact_id, number, days)).await.unwrap();
    let outcome = proto::Outcome { disposition: disposition as i32, ..prank_outcome(contact_id, None) };
    client.record_outcome(outcome).await.unwrap().into_inner()
}

pub(crate) async fn prank(client: &mut Screening, contact_id: &str, number: &str, days: f64) -> proto::OutcomeAck {
    call(client, contact_id, number, days, proto::Disposition::Prank).await
}

fn rung_of(case: &proto::CaseSummary) -> proto::Rung {
    proto::Rung::try_from(case.rung).unwrap()
}

fn state_of(case: &proto::CaseSummary) -> proto::CaseState {
    proto::CaseState::try_from(case.state).unwrap()
}

pub(crate) async fn decide(
    legal: &mut Escalations,
    case: &proto::CaseSummary,
    decision: proto::Decision,
    reason: &str,
) -> Result<proto::CaseSummary, tonic::Status> {
    legal
        .decide(proto::DecideRequest {
            case_id: case.case_id.clone(),
            version: case.version,
            decision: decision as i32,
            reason: reason.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Dispatch claims the case (the answer reveals the number) and returns the claimed case and the number.
pub(crate) async fn claim(dispatch: &mut Escalations, case: &proto::CaseSummary) -> (proto::CaseSummary, String) {
    let claimed = dispatch
        .claim(proto::ClaimRequest { case_id: case.case_id.clone(), version: case.version })
        .await
        .unwrap()
        .into_inner();
    (claimed.summary.unwrap(), claimed.caller_number)
}

/// The channel a test delivers a rung through.
pub(crate) fn channel_for(case: &proto::CaseSummary) -> proto::DeliveryChannel {
    match rung_of(case) {
        proto::Rung::LegalReferral | proto::Rung::WelfareReferral => proto::DeliveryChannel::Filed,
        _ => proto::DeliveryChannel::Whatsapp,
    }
}

/// Dispatch claims the case and reports it delivered now (a delivery cannot precede its approval); contacts
/// received from the moment it returns are after the delivery.
pub(crate) async fn deliver(dispatch: &mut Escalations, case: &proto::CaseSummary) -> proto::CaseSummary {
    let (case, _) = claim(dispatch, case).await;
    let delivered = dispatch
        .record_action(proto::RecordActionRequest {
            case_id: case.case_id.clone(),
            version: case.version,
            delivered_at: Some(timestamp(OffsetDateTime::now_utc())),
            note: format!("delivered {}", case.case_id),
            channel: channel_for(&case) as i32,
        })
        .await
        .unwrap()
        .into_inner();
    // Incidents count towards the next rung when strictly after the delivery (millisecond resolution).
    tokio::time::sleep(Duration::from_millis(5)).await;
    delivered
}

async fn standing(client: &mut Screening, number: &str) -> proto::CallerProfile {
    client.get_caller(proto::CallerQuery { caller: number.into() }).await.unwrap().into_inner()
}

/// The chain secret of the in-process harness's case stores (`CaseStore::connect`: the development secret); a
/// PostgreSQL database needs it configured.
pub fn development_chain_secret() -> &'static str {
    std::str::from_utf8(saring::cases::audit::DEVELOPMENT_CHAIN_SECRET).unwrap()
}

/// `saring audit verify` of a database the in-process harness wrote (no anchor file: `CaseStore::connect` keeps
/// none, so the database is checked alone).
async fn audit_verify(database_url: &str) -> (bool, String) {
    audit_verify_with(database_url, &["--without-anchor"]).await
}

/// `saring audit verify` of `database_url` under the development secret, with `extra` arguments.
pub async fn audit_verify_with(database_url: &str, extra: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_saring"))
        .args(["audit", "verify", "--database-url", database_url])
        .args(extra)
        .env("SARING__AUDIT__CHAIN_SECRET", development_chain_secret())
        .output()
        .await
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn walks_the_whole_ladder(database_url: &str) {
    let harness: Harness = start_on(database_url).await;
    let mut routing = harness.screening(Role::Routing);
    let mut legal = harness.escalations(Role::Legal);
    let mut dispatch = harness.escalations(Role::Dispatch);
    let mut watch = dispatch.watch(proto::WatchCasesRequest { after_seq: 0 }).await.unwrap().into_inner();
    let number = "0812-3400-0001";

    // One prank is not enough; a silent call never counts.
    let first = prank(&mut routing, "walk-1", number, 12.0).await;
    assert_eq!(first.ladder_change, proto::LadderChange::None as i32);
    let silent = call(&mut routing, "walk-s", number, 11.5, proto::Disposition::Silent).await;
    assert_eq!(silent.ladder_change, proto::LadderChange::None as i32);
    // The second confirmed prank within 30 days: a warning, approved automatically by policy.
    let second = prank(&mut routing, "walk-2", number, 11.0).await;
    assert_eq!(second.ladder_change, proto::LadderChange::Proposed as i32);
    let warning = second.open_case.unwrap();
    assert_eq!((rung_of(&warning), state_of(&warning)), (proto::Rung::Warning, proto::CaseState::Approved));
    assert!(warning.automatic);
    assert_eq!(warning.incidents, 2);
    assert!(warning.rule.contains("rungs.warning"), "{}", warning.rule);
    // A repeat of the same outcome changes nothing.
    let again = routing.record_outcome(prank_outcome("walk-2", None)).await.unwrap().into_inner();
    assert!(again.duplicate);
    assert_eq!(again.open_case.unwrap().version, warning.version);

    // Dispatch sees it and delivers the warning.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.message()).await.unwrap().unwrap().unwrap();
        seen.push((event.action.clone(), event.r#case.unwrap().case_id));
    }
    assert_eq!(seen, [("proposed".into(), warning.case_id.clone()), ("approved".into(), warning.case_id.clone())]);
    let delivered = deliver(&mut dispatch, &warning).await;
    assert_eq!(state_of(&delivered), proto::CaseState::Actioned);
    let profile = standing(&mut harness.screening(Role::Operator), number).await;
    assert_eq!(profile.rung, proto::Rung::Warning as i32);
    assert!(profile.open_case.is_none());

    // One more prank after the delivered warning: a virtual-police message, which needs a reviewer.
    let third = prank(&mut routing, "walk-3", number, 0.0).await;
    let message = third.open_case.clone().unwrap();
    assert_eq!(
        (rung_of(&message), state_of(&message)),
        (proto::Rung::VirtualPoliceMessage, proto::CaseState::Proposed)
    );
    assert!(!message.automatic);
    // More misuse while the case is open is added to it as evidence (one open case per caller).
    let fourth = call(&mut routing, "walk-4", number, 0.0, proto::Disposition::Abusive).await;
    assert_eq!(fourth.ladder_change, proto::LadderChange::EvidenceAdded as i32);
    let message = fourth.open_case.unwrap();
    assert_eq!((message.incidents, message.version), (2, 2));

    // The legal team finds it in the queue and reads the evidence, raw number included.
    let queue = legal
        .list(proto::ListCasesRequest { states: vec![proto::CaseState::Proposed as i32], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queue.cases.iter().map(|case| case.case_id.as_str()).collect::<Vec<_>>(), [message.case_id.as_str()]);
    let evidence = legal.get(proto::GetCaseRequest { case_id: message.case_id.clone() }).await.unwrap().into_inner();
    assert_eq!(evidence.caller_number, "+6281234000001");
    let timeline: Vec<(&str, &str, bool)> = evidence
        .timeline
        .iter()
        .map(|entry| (entry.contact_id.as_str(), entry.disposition.as_str(), entry.counted))
        .collect();
    assert_eq!(
        timeline,
        [
            ("walk-1", "prank", false),
            ("walk-s", "silent", false),
            ("walk-2", "prank", false),
            ("walk-3", "prank", true),
            ("walk-4", "abusive", true)
        ]
    );
    assert!(evidence.timeline.iter().all(|entry| entry.prank_likelihood.is_some_and(|p| (0.0..=1.0).contains(&p))));
    assert!(evidence.timeline.iter().all(|entry| entry.operator_id == "op-1" && entry.region == "ntt.kupang"));
    let summary = evidence.summary.unwrap();
    assert_eq!(summary.policy_version, "default-2026-12");
    assert!(!summary.model_version.is_empty());

    // A stale version is refused; then approval.
    let stale = decide(&mut legal, &third.open_case.unwrap(), proto::Decision::Approve, "stale").await.unwrap_err();
    // A lost race is ABORTED (read again, then retry), naming the version it lost on.
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let failure = tonic_types::StatusExt::get_details_precondition_failure(&stale).expect("PreconditionFailure");
    assert_eq!(failure.violations[0].r#type, "VERSION");
    let approved =
        decide(&mut legal, &message, proto::Decision::Approve, "repeated pranks after a warning").await.unwrap();
    assert_eq!(approved.decided_by, "test-legal");
    let delivered = deliver(&mut dispatch, &approved).await;
    assert_eq!(state_of(&delivered), proto::CaseState::Actioned);

    // One more after the message: a legal referral. Two reviewers decide at once: one wins.
    let fifth = prank(&mut routing, "walk-5", number, 0.0).await;
    let referral = fifth.open_case.unwrap();
    assert_eq!((rung_of(&referral), state_of(&referral)), (proto::Rung::LegalReferral, proto::CaseState::Proposed));
    let mut other_legal = harness.escalations(Role::Legal);
    let (a, b) = tokio::join!(
        decide(&mut legal, &referral, proto::Decision::Approve, "five confirmed pranks, warned and messaged"),
        decide(&mut other_legal, &referral, proto::Decision::Approve, "approve: repeated false reports")
    );
    let (referral, loser) = match (a, b) {
        (Ok(winner), Err(loser)) | (Err(loser), Ok(winner)) => (winner, loser),
        other => panic!("exactly one decision must win: {other:?}"),
    };
    assert_eq!(state_of(&referral), proto::CaseState::Approved);
    assert_eq!(loser.code(), Code::Aborted);
    assert!(loser.message().contains("approved by test-legal"), "the loser learns who decided: {}", loser.message());
    let filed = deliver(&mut dispatch, &referral).await;
    assert_eq!(state_of(&filed), proto::CaseState::Actioned);
    let profile = standing(&mut harness.screening(Role::Operator), number).await;
    assert_eq!(profile.rung, proto::Rung::LegalReferral as i32);
    // At the top: further pranks propose nothing more.
    let sixth = prank(&mut routing, "walk-6", number, 0.0).await;
    assert_eq!(sixth.ladder_change, proto::LadderChange::None as i32);

    drop(watch);
    harness.server.stop().await.unwrap();
    let (intact, report) = audit_verify(database_url).await;
    assert!(intact, "{report}");
    // proposed+approved (warning), claimed, actioned; proposed, evidence_added, evidence_read, approved, claimed,
    // actioned; proposed, approved, claimed, actioned.
    assert!(report.contains("14 entries"), "{report}");
}
on_both_databases!(walks_the_whole_ladder);

async fn a_quiet_caller_is_forgiven_and_an_appeal_reverts(database_url: &str) {
    let harness = start_on(database_url).await;
    let mut routing = harness.screening(Role::Routing);
    let mut operator = harness.screening(Role::Operator);
    let mut legal = harness.escalations(Role::Legal);
    let mut dispatch = harness.escalations(Role::Dispatch);

    // A warning delivered 198 days ago, then 90+ quiet days: the rung has expired. (A delivery cannot precede its
    // approval, so it is reported now and the 198 days pass by moving the stored dates back, as time would.)
    let quiet = "0812-3400-0002";
    prank(&mut routing, "quiet-1", quiet, 200.0).await;
    let warning = prank(&mut routing, "quiet-2", quiet, 199.5).await.open_case.unwrap();
    deliver(&mut dispatch, &warning).await;
    let passed_ms = (days_ago(0.0) - days_ago(198.0)).whole_milliseconds();
    let moved = execute(
        database_url,
        &format!(
            "UPDATE cases SET created_ms = created_ms - {passed_ms}, updated_ms = updated_ms - {passed_ms}, \
             decided_ms = decided_ms - {passed_ms}, delivered_ms = delivered_ms - {passed_ms} WHERE case_id = '{}'",
            warning.case_id
        ),
    )
    .await;
    assert_eq!(moved, 1);
    assert_eq!(standing(&mut operator, quiet).await.rung, proto::Rung::Unspecified as i32, "forgiven");
    // A new prank does not lead to a virtual-police message: the caller starts again at the bottom.
    let after = prank(&mut routing, "quiet-3", quiet, 1.0).await;
    assert_eq!(after.ladder_change, proto::LadderChange::None as i32);
    let again = prank(&mut routing, "quiet-4", quiet, 0.5).await.open_case.unwrap();
    assert_eq!(rung_of(&again), proto::Rung::Warning);

    // An appeal reverts a delivered warning; its incidents never ground another case.
    let appealed = "0812-3400-0003";
    prank(&mut routing, "appeal-1", appealed, 5.0).await;
    let warning = prank(&mut routing, "appeal-2", appealed, 4.5).await.open_case.unwrap();
    let warning = deliver(&mut dispatch, &warning).await;
    assert_eq!(standing(&mut operator, appealed).await.rung, proto::Rung::Warning as i32);
    let missing_reason = legal
        .revert(proto::RevertRequest { case_id: warning.case_id.clone(), version: warning.version, reason: " ".into() })
        .await
        .unwrap_err();
    assert_eq!(missing_reason.code(), Code::InvalidArgument);
    let reverted = legal
        .revert(proto::RevertRequest {
            case_id: warning.case_id.clone(),
            version: warning.version,
            reason: "the number was recycled: a new subscriber since last month".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state_of(&reverted), proto::CaseState::Reverted);
    assert_eq!(standing(&mut operator, appealed).await.rung, proto::Rung::Unspecified as i32);
    let next = prank(&mut routing, "appeal-3", appealed, 3.0).await;
    assert_eq!(
        next.ladder_change,
        proto::LadderChange::None as i32,
        "neither a message nor a warning from spent incidents"
    );
    // Reverting twice is refused.
    let twice = legal
        .revert(proto::RevertRequest {
            case_id: reverted.case_id.clone(),
            version: reverted.version,
            reason: "again".into(),
        })
        .await
        .unwrap_err();
    // A current version in a state that does not allow the change is FAILED_PRECONDITION.
    assert_eq!(twice.code(), Code::FailedPrecondition);
    let failure = tonic_types::StatusExt::get_details_precondition_failure(&twice).expect("PreconditionFailure");
    assert_eq!(failure.violations[0].r#type, "STATE");
    let unknown = legal.get(proto::GetCaseRequest { case_id: "case-nope".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    harness.server.stop().await.unwrap();
}
on_both_databases!(a_quiet_caller_is_forgiven_and_an_appeal_reverts);

async fn a_surge_of_silent_calls_never_proposes(database_url: &str) {
    let harness = start_on(database_url).await;
    let mut routing = harness.screening(Role::Routing);
    // A handset bug: 20 distinct callers with silent calls in one region within the hour.
    for caller in 0..20 {
        let number = format!("0813-7700-{caller:04}");
        call(&mut routing, &format!("surge-{caller}"), &number, 0.01, proto::Disposition::Silent).await;
    }
    let number = "0812-3400-0004";
    prank(&mut routing, "surge-p1", number, 0.02).await;
    let suppressed = prank(&mut routing, "surge-p2", number, 0.005).await;
    assert_eq!(suppressed.ladder_change, proto::LadderChange::SurgeSuppressed as i32);
    assert!(suppressed.open_case.is_none());
    // Elsewhere, the same behaviour proposes a warning.
    let elsewhere = "0812-3400-0005";
    let mut contact = contact_at("calm-1", elsewhere, 0.02);
    contact.region = "jatim.surabaya".into();
    routing.record_outcome(prank_outcome("calm-1", Some(contact))).await.unwrap();
    let mut contact = contact_at("calm-2", elsewhere, 0.01);
    contact.region = "jatim.surabaya".into();
    let ack = routing.record_outcome(prank_outcome("calm-2", Some(contact))).await.unwrap().into_inner();
    assert_eq!(ack.ladder_change, proto::LadderChange::Proposed as i32);
    // A withheld number is never on the ladder.
    let withheld = routing
        .record_outcome(prank_outcome("anon-1", Some(sample_contact("anon-1", None))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(withheld.ladder_change, proto::LadderChange::None as i32);
    harness.server.stop().await.unwrap();
}
on_both_databases!(a_surge_of_silent_calls_never_proposes);

async fn list_filters_and_pages(database_url: &str) {
    let harness = start_on(database_url).await;
    let mut routing = harness.screening(Role::Routing);
    let mut legal = harness.escalations(Role::Legal);
    for caller in 0..7 {
        let number = format!("0812-5500-{caller:04}");
        prank(&mut routing, &format!("page-{caller}-a"), &number, 3.0).await;
        let mut contact = contact_at(&format!("page-{caller}-b"), &number, 2.0);
        if caller % 2 == 1 {
            contact.region = "jatim.surabaya".into();
        }
        routing.record_outcome(prank_outcome(&contact.contact_id.clone(), Some(contact))).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = legal
            .list(proto::ListCasesRequest { page_size: 3, page_token: token.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert!(page.cases.len() <= 3);
        seen.extend(page.cases.iter().map(|case| case.case_id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (7, 7), "every case once across pages");
    let jatim = legal
        .list(proto::ListCasesRequest { region: "jatim".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jatim.cases.len(), 3);
    assert!(jatim.cases.iter().all(|case| case.region == "jatim.surabaya"));
    let referrals = legal
        .list(proto::ListCasesRequest { rungs: vec![proto::Rung::LegalReferral as i32], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(referrals.cases.is_empty());
    let bad = legal
        .list(proto::ListCasesRequest { page_token: "zz".into(), states: vec![42], ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let details = tonic_types::StatusExt::get_details_bad_request(&bad).unwrap();
    let fields: Vec<&str> = details.field_violations.iter().map(|violation| violation.field.as_str()).collect();
    assert_eq!(fields, ["states[0]", "page_token"]);
    harness.server.stop().await.unwrap();
}
on_both_databases!(list_filters_and_pages);

async fn tampering_with_the_audit_log_is_detected(database_url: &str) {
    let harness = start_on(database_url).await;
    let mut routing = harness.screening(Role::Routing);
    let mut legal = harness.escalations(Role::Legal);
    let number = "0812-3400-0006";
    prank(&mut routing, "tamper-1", number, 3.0).await;
    let case = prank(&mut routing, "tamper-2", number, 2.0).await.open_case.unwrap();
    legal.get(proto::GetCaseRequest { case_id: case.case_id.clone() }).await.unwrap();
    let reverted = legal
        .revert(proto::RevertRequest {
            case_id: case.case_id.clone(),
            version: case.version,
            reason: "appeal upheld".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state_of(&reverted), proto::CaseState::Reverted);
    harness.server.stop().await.unwrap();

    let (intact, report) = audit_verify(database_url).await;
    assert!(intact && report.contains("4 entries"), "{report}");
    // Someone rewrites why the case was reverted.
    assert_eq!(execute(database_url, "UPDATE audit SET reason = 'no reason' WHERE seq = 4").await, 1);
    let (intact, report) = audit_verify(database_url).await;
    assert!(!intact, "{report}");
    assert!(report.contains("entry 4"), "{report}");
    // Someone removes the evidence read from the chain.
    assert_eq!(execute(database_url, "UPDATE audit SET reason = 'appeal upheld' WHERE seq = 4").await, 1);
    assert!(audit_verify(database_url).await.0, "restored");
    assert_eq!(execute(database_url, "DELETE FROM audit WHERE seq = 3").await, 1);
    let (intact, report) = audit_verify(database_url).await;
    assert!(!intact && report.contains("entry 3"), "{report}");
}
on_both_databases!(tampering_with_the_audit_log_is_detected);

/// A `saring serve` process over `database_url`, killed (SIGKILL, no drain) and restarted between steps: no case,
/// decision or audit entry is lost.
async fn restarts_lose_nothing(database_url: &str) {
    use crate::common::process::SaringProcess;
    use crate::common::{connect, escalations, screening, Bearer};

    async fn clients(saring: &SaringProcess) -> (Screening, Escalations, Escalations) {
        let channel = connect(saring.url()).await;
        (
            screening(&channel, Bearer::of(Role::Routing)),
            escalations(&channel, Bearer::of(Role::Legal)),
            escalations(&channel, Bearer::of(Role::Dispatch)),
        )
    }
    let anchor = std::env::temp_dir()
        .join(crate::common::process::unique_prefix("restarts-anchor").replace(':', "-"))
        .join("audit-anchor");
    let anchor_path = anchor.to_str().unwrap();
    let environment =
        [("SARING__AUDIT__CHAIN_SECRET", development_chain_secret()), ("SARING__AUDIT__ANCHOR_PATH", anchor_path)];
    let spawn = || SaringProcess::spawn(&["--database-url", database_url], &environment);
    let number = "0812-3400-0007";
    // Outcomes carry their contact: a restarted replica has not scored them.
    let outcome = |id: &str, days: f64| prank_outcome(id, Some(contact_at(id, number, days)));

    let saring = spawn();
    let (mut routing, _, _) = clients(&saring).await;
    routing.record_outcome(outcome("restart-1", 6.0)).await.unwrap();
    let warning = routing.record_outcome(outcome("restart-2", 5.0)).await.unwrap().into_inner().open_case.unwrap();
    drop(saring); // killed

    let saring = spawn();
    let (mut routing, mut legal, _) = clients(&saring).await;
    // The repeat changes nothing on the ladder: the first process's commit survived. (The in-memory history
    // did not survive, so history takes the outcome again and the ack is not a duplicate.)
    let again = routing.record_outcome(outcome("restart-2", 5.0)).await.unwrap().into_inner();
    assert_eq!(again.ladder_change, proto::LadderChange::None as i32);
    let open = again.open_case.unwrap();
    assert_eq!((open.case_id, open.version), (warning.case_id.clone(), warning.version));
    let delivered = deliver(&mut dispatch_after(&saring).await, &warning).await;
    assert_eq!(state_of(&delivered), proto::CaseState::Actioned);
    let message = routing.record_outcome(outcome("restart-3", 0.0)).await.unwrap().into_inner().open_case.unwrap();
    assert_eq!(rung_of(&message), proto::Rung::VirtualPoliceMessage);
    let approved = decide(&mut legal, &message, proto::Decision::Approve, "warned, pranked again").await.unwrap();
    drop(saring); // killed right after the acknowledged decision

    let saring = spawn();
    let (_, mut legal, mut dispatch) = clients(&saring).await;
    let evidence = legal.get(proto::GetCaseRequest { case_id: message.case_id.clone() }).await.unwrap().into_inner();
    let summary = evidence.summary.unwrap();
    assert_eq!((state_of(&summary), summary.version), (proto::CaseState::Approved, approved.version));
    assert_eq!(summary.decision_reason, "warned, pranked again");
    assert_eq!(evidence.timeline.len(), 3);
    let filed = deliver(&mut dispatch, &summary).await;
    assert_eq!(state_of(&filed), proto::CaseState::Actioned);
    let (clean, _) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);
    drop(dispatch);

    let (intact, report) = audit_verify_with(database_url, &["--anchor-path", anchor_path]).await;
    assert!(intact, "{report}");
    // warning proposed, approved, claimed, actioned; message proposed, approved, evidence read, claimed, actioned;
    // every one anchored, through two kills.
    assert!(report.contains("9 entries") && report.contains("records entry 9"), "{report}");
}
on_both_databases!(restarts_lose_nothing);

async fn dispatch_after(saring: &crate::common::process::SaringProcess) -> Escalations {
    crate::common::escalations(&crate::common::connect(saring.url()).await, crate::common::Bearer::of(Role::Dispatch))
}

fn field_violations(status: &tonic::Status) -> Vec<String> {
    tonic_types::StatusExt::get_details_bad_request(status)
        .map(|details| details.field_violations.into_iter().map(|violation| violation.field).collect())
        .unwrap_or_default()
}

/// Dispatch cannot date a delivery before the approval (the rung would be forgiven early, or incidents before
/// the real delivery would count towards the next rung): INVALID_ARGUMENT naming `delivered_at`, nothing applied.
async fn a_delivery_before_its_approval_is_refused(database_url: &str) {
    let harness = start_on(database_url).await;
    let mut routing = harness.screening(Role::Routing);
    let mut dispatch = harness.escalations(Role::Dispatch);
    let number = "0812-3400-0020";
    prank(&mut routing, "early-1", number, 3.0).await;
    let warning = prank(&mut routing, "early-2", number, 2.0).await.open_case.unwrap();
    assert_eq!(state_of(&warning), proto::CaseState::Approved);
    let approved_at = warning.decided_at.unwrap();

    let (warning, _) = claim(&mut dispatch, &warning).await;
    let year_2000 = OffsetDateTime::from_unix_timestamp(946_684_800).unwrap();
    let a_second_before = prost_types::Timestamp { seconds: approved_at.seconds - 1, nanos: approved_at.nanos };
    for delivered_at in [timestamp(year_2000), a_second_before] {
        let refused = dispatch
            .record_action(proto::RecordActionRequest {
                case_id: warning.case_id.clone(),
                version: warning.version,
                delivered_at: Some(delivered_at),
                note: "delivered".into(),
                channel: proto::DeliveryChannel::Sms as i32,
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(field_violations(&refused), ["delivered_at"], "{refused:?}");
        assert!(refused.message().contains("approved"), "{}", refused.message());
    }
    // Nothing was applied: the case is still approved at its version, and a true delivery goes through.
    let still = harness
        .escalations(Role::Legal)
        .list(proto::ListCasesRequest { states: vec![proto::CaseState::Approved as i32], ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .cases;
    assert_eq!(
        still.iter().map(|case| (case.case_id.as_str(), case.version)).collect::<Vec<_>>(),
        [(warning.case_id.as_str(), warning.version)]
    );
    let delivered = deliver(&mut dispatch, &warning).await;
    assert_eq!(state_of(&delivered), proto::CaseState::Actioned);
    harness.server.stop().await.unwrap();
}
on_both_databases!(a_delivery_before_its_approval_is_refused);

/// A contact id is one contact: reused for another caller it is refused naming `contact_id` (and counted in
/// nobody's history); a repeat that says something else about the contact is ALREADY_EXISTS, not a silent
/// duplicate; an identical repeat stays a duplicate.
async fn a_contact_id_is_one_contact(database_url: &str) {
    let harness = start_on(database_url).await;
    let mut routing = harness.screening(Role::Routing);
    let mut operator = harness.screening(Role::Operator);
    let (first, second) = ("0812-3400-0021", "0812-3400-0022");
    let with_contact = |number: &str, disposition: proto::Disposition| proto::Outcome {
        disposition: disposition as i32,
        ..prank_outcome("reused-1", Some(contact_at("reused-1", number, 1.0)))
    };
    let recorded = routing.record_outcome(with_contact(first, proto::Disposition::Prank)).await.unwrap().into_inner();
    assert!(!recorded.duplicate);

    let other_caller = routing.record_outcome(with_contact(second, proto::Disposition::Prank)).await.unwrap_err();
    assert_eq!(other_caller.code(), Code::InvalidArgument, "{other_caller:?}");
    assert_eq!(field_violations(&other_caller), ["contact_id"], "{other_caller:?}");
    assert!(!other_caller.message().contains("+6281234000021"), "never the other caller's number");
    let profile = standing(&mut operator, second).await;
    assert!(!profile.known, "the refused outcome is in no history: {profile:?}");

    let conflicting = routing.record_outcome(with_contact(first, proto::Disposition::Silent)).await.unwrap_err();
    assert_eq!(conflicting.code(), Code::AlreadyExists, "{conflicting:?}");
    assert!(conflicting.message().contains("prank") && conflicting.message().contains("silent"), "{conflicting:?}");
    let talked_longer = proto::Outcome { talk_s: 40.0, ..with_contact(first, proto::Disposition::Prank) };
    assert_eq!(routing.record_outcome(talked_longer).await.unwrap_err().code(), Code::AlreadyExists);

    let repeat = routing.record_outcome(with_contact(first, proto::Disposition::Prank)).await.unwrap().into_inner();
    assert!(repeat.duplicate, "{repeat:?}");
    harness.server.stop().await.unwrap();
}
on_both_databases!(a_contact_id_is_one_contact);
