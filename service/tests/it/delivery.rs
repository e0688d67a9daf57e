//! Dispatch carries out the ladder: approved cases awaiting delivery are listed without numbers, oldest first; a
//! claim reveals the caller's number to its holder only and is audited; another dispatcher can neither claim a held
//! case nor report its delivery; the holder may give it back; the delivery names a channel that suits the rung; the
//! legal team sees who claimed it and how it was delivered. On SQLite and PostgreSQL.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use saring::auth::{Principal, Role};
use saring::cases::{CaseError, CaseStore, ContactRecord, Escalator};
use saring::proto;
use saring_models::ladder::LadderPolicy;
use saring_models::{Channel, Disposition};
use tonic::Code;

use crate::common::{escalations, prank_outcome, sample_contact, start_on, Bearer, SECOND_DISPATCH_TOKEN};
use crate::ladder::{claim, PgSchema};

fn field_violations(status: &tonic::Status) -> Vec<String> {
    tonic_types::StatusExt::get_details_bad_request(status)
        .map(|details| details.field_violations.into_iter().map(|violation| violation.field).collect())
        .unwrap_or_default()
}

fn action(case: &proto::CaseSummary, channel: proto::DeliveryChannel, note: &str) -> proto::RecordActionRequest {
    proto::RecordActionRequest {
        case_id: case.case_id.clone(),
        version: case.version,
        delivered_at: None,
        note: note.into(),
        channel: channel as i32,
    }
}

async fn warning_for(routing: &mut crate::common::Screening, number: &str, tag: &str) -> proto::CaseSummary {
    for step in 1..=2 {
        let contact_id = format!("{tag}-{step}");
        let contact = sample_contact(&contact_id, Some(number));
        let ack = routing.record_outcome(prank_outcome(&contact_id, Some(contact))).await.unwrap().into_inner();
        if step == 2 {
            return ack.open_case.expect("two pranks propose a warning");
        }
    }
    unreachable!()
}

async fn dispatch_claims_then_delivers(database_url: &str) {
    let harness = start_on(database_url).await;
    let mut routing = harness.screening(Role::Routing);
    let mut dispatch = harness.escalations(Role::Dispatch);
    let mut other = escalations(&harness.channel, Bearer::raw(SECOND_DISPATCH_TOKEN));
    let mut legal = harness.escalations(Role::Legal);
    let first = warning_for(&mut routing, "0812-3400-0031", "claim-a").await;
    let second = warning_for(&mut routing, "0812-3400-0032", "claim-b").await;
    assert_eq!(first.state, proto::CaseState::Approved as i32);

    // Awaiting delivery, oldest first, unclaimed, and no number anywhere in the answer.
    let awaiting = dispatch.list_deliveries(proto::ListDeliveriesRequest::default()).await.unwrap().into_inner();
    let listed: Vec<(&str, &str)> =
        awaiting.cases.iter().map(|case| (case.case_id.as_str(), case.claimed_by.as_str())).collect();
    assert_eq!(listed, [(first.case_id.as_str(), ""), (second.case_id.as_str(), "")]);
    assert!(!format!("{awaiting:?}").contains("3400003"), "no raw number before a claim");

    // No delivery without a claim.
    let unclaimed = dispatch.record_action(action(&first, proto::DeliveryChannel::Sms, "")).await.unwrap_err();
    assert_eq!(unclaimed.code(), Code::FailedPrecondition, "{unclaimed:?}");
    assert!(unclaimed.message().contains("claim it first"), "{}", unclaimed.message());

    // The claim reveals the number to its holder.
    let (claimed, number) = claim(&mut dispatch, &first).await;
    assert_eq!(number, "+6281234000031");
    assert_eq!((claimed.claimed_by.as_str(), claimed.version), ("test-dispatch", first.version + 1));
    assert!(claimed.claimed_at.is_some());

    // Another dispatcher can neither take it nor report it delivered.
    let taken = other
        .claim(proto::ClaimRequest { case_id: first.case_id.clone(), version: claimed.version })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::FailedPrecondition, "{taken:?}");
    assert!(taken.message().contains("claimed by test-dispatch") && taken.message().contains("lapses"), "{taken:?}");
    let foreign = other.record_action(action(&claimed, proto::DeliveryChannel::Sms, "")).await.unwrap_err();
    assert_eq!(foreign.code(), Code::FailedPrecondition, "{foreign:?}");

    // A delivery names a channel that suits the rung.
    let missing = dispatch.record_action(action(&claimed, proto::DeliveryChannel::Unspecified, "")).await.unwrap_err();
    assert_eq!((missing.code(), field_violations(&missing)), (Code::InvalidArgument, vec!["channel".to_owned()]));
    let filed = dispatch.record_action(action(&claimed, proto::DeliveryChannel::Filed, "")).await.unwrap_err();
    assert_eq!((filed.code(), field_violations(&filed)), (Code::InvalidArgument, vec!["channel".to_owned()]));

    // The holder gives it back (the number did not answer); the other dispatcher claims and delivers it.
    let empty_reason = dispatch
        .release_claim(proto::ReleaseClaimRequest {
            case_id: claimed.case_id.clone(),
            version: claimed.version,
            reason: " ".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(field_violations(&empty_reason), ["reason"]);
    let released = dispatch
        .release_claim(proto::ReleaseClaimRequest {
            case_id: claimed.case_id.clone(),
            version: claimed.version,
            reason: "no answer on WhatsApp or by phone".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((released.claimed_by.as_str(), released.state), ("", proto::CaseState::Approved as i32));
    let (taken, again) = claim(&mut other, &released).await;
    assert_eq!(again, number);
    let delivered = other
        .record_action(action(&taken, proto::DeliveryChannel::Whatsapp, "WA message ref 2026-1202-17"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(delivered.state, proto::CaseState::Actioned as i32);
    assert_eq!(delivered.delivery_channel, proto::DeliveryChannel::Whatsapp as i32);
    assert_eq!((delivered.actioned_by.as_str(), delivered.claimed_by.as_str()), ("test-dispatch-2", "test-dispatch-2"));
    // Delivered cases leave the list; the other one waits.
    let awaiting = dispatch.list_deliveries(proto::ListDeliveriesRequest::default()).await.unwrap().into_inner();
    assert_eq!(awaiting.cases.iter().map(|case| case.case_id.as_str()).collect::<Vec<_>>(), [second.case_id.as_str()]);

    // The legal team sees the delivery on the case.
    let case = legal.get(proto::GetCaseRequest { case_id: first.case_id.clone() }).await.unwrap().into_inner();
    let summary = case.summary.unwrap();
    assert_eq!(summary.delivery_channel, proto::DeliveryChannel::Whatsapp as i32);
    assert_eq!(summary.action_note, "WA message ref 2026-1202-17");
    assert!(summary.claimed_at.is_some() && summary.delivered_at.is_some());
    harness.server.stop().await.unwrap();

    // Every claim and the release are audited, by whom, and the chain verifies.
    let store = CaseStore::connect(database_url).await.unwrap();
    let trail: Vec<(String, String)> =
        store.audit_of(&first.case_id).await.unwrap().into_iter().map(|entry| (entry.action, entry.actor)).collect();
    let trail: Vec<(&str, &str)> = trail.iter().map(|(action, actor)| (action.as_str(), actor.as_str())).collect();
    assert_eq!(
        trail,
        [
            ("proposed", "saring"),
            ("approved", "saring"),
            ("claimed", "test-dispatch"),
            ("claim_released", "test-dispatch"),
            ("claimed", "test-dispatch-2"),
            ("actioned", "test-dispatch-2"),
            ("evidence_read", "test-legal"),
        ]
    );
    store.close().await;
    let (intact, report) = crate::ladder::audit_verify_with(database_url, &["--without-anchor"]).await;
    assert!(intact, "{report}");
}

#[tokio::test]
async fn dispatch_claims_then_delivers_on_sqlite() {
    dispatch_claims_then_delivers(&crate::common::sqlite_url("delivery")).await;
}

#[tokio::test]
async fn dispatch_claims_then_delivers_on_postgres() {
    let schema = PgSchema::create("delivery").await;
    dispatch_claims_then_delivers(&schema.url()).await;
    schema.drop().await;
}

/// A claim keeps other dispatchers out for `claim_minutes` only: a case claimed by someone whose shift ended is not
/// stuck. Time is the escalator's clock, moved by the test.
#[tokio::test]
async fn a_claim_lapses_after_claim_minutes() {
    let store = CaseStore::connect(&crate::common::sqlite_url("claim-lapse")).await.unwrap();
    let now = Arc::new(AtomicI64::new(time::OffsetDateTime::now_utc().unix_timestamp() * 1000));
    let clock = {
        let now = Arc::clone(&now);
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let escalator = Escalator::with_clock(store, LadderPolicy::default_policy(), clock).with_claim_minutes(30);
    let start = now.load(Ordering::SeqCst);
    let record = |contact: i64| ContactRecord {
        contact_id: format!("lapse-{contact}"),
        caller_ref: "caller-lapse".into(),
        caller_number: "+6281277000001".into(),
        at_ms: start - 3_600_000 + contact * 60_000,
        channel: Channel::Voice,
        region: "ntt.kupang".into(),
        disposition: Disposition::Prank,
        operator_id: Some("op-1".into()),
        likelihood: None,
        model_version: "m".into(),
        answered: true,
        talk_s: 4.0,
    };
    escalator.on_outcome(&record(1)).await.unwrap();
    let warning = escalator.on_outcome(&record(2)).await.unwrap().case.unwrap();
    let (a, b) = (
        Principal { name: "dispatch-a".into(), role: Role::Dispatch },
        Principal { name: "dispatch-b".into(), role: Role::Dispatch },
    );
    let held = escalator.claim(&warning.case_id, warning.version, &a).await.unwrap();
    now.fetch_add(29 * 60_000, Ordering::SeqCst);
    match escalator.claim(&warning.case_id, held.summary.version, &b).await {
        Err(CaseError::Conflict { message, stale: false, .. }) => assert!(message.contains("dispatch-a"), "{message}"),
        other => panic!("a young claim keeps others out: {other:?}"),
    }
    now.fetch_add(2 * 60_000, Ordering::SeqCst);
    let taken = escalator.claim(&warning.case_id, held.summary.version, &b).await.unwrap();
    assert_eq!(taken.summary.claimed_by.as_deref(), Some("dispatch-b"));
    let trail = escalator.store().audit_of(&warning.case_id).await.unwrap();
    assert!(trail.last().unwrap().reason.contains("after dispatch-a's claim lapsed"), "{trail:?}");
    // The first holder's claim is gone: it cannot deliver.
    let delivery =
        saring::cases::Delivery { at_ms: now.load(Ordering::SeqCst), channel: saring::cases::DeliveryChannel::Sms };
    match escalator.record_action(&warning.case_id, taken.summary.version, delivery, "", &a).await {
        Err(CaseError::Conflict { message, .. }) => assert!(message.contains("claimed by dispatch-b"), "{message}"),
        other => panic!("{other:?}"),
    }
    escalator.store().close().await;
}

/// `[cases] sandbox`: test traffic is scored and kept in history like any other, but never reaches the ladder: two
/// pranks propose nothing, and the case database holds no case and no contact.
#[tokio::test]
async fn sandbox_traffic_never_creates_cases() {
    use crate::common::process::SaringProcess;
    let saring = SaringProcess::spawn(&[], &[("SARING__CASES__SANDBOX", "true")]);
    let channel = crate::common::connect(saring.url()).await;
    let mut routing = crate::common::screening(&channel, Bearer::of(Role::Routing));
    let number = "0812-3400-0041";
    for step in 1..=3 {
        let contact_id = format!("sandbox-{step}");
        let ack = routing
            .record_outcome(prank_outcome(&contact_id, Some(sample_contact(&contact_id, Some(number)))))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((ack.ladder_change, ack.open_case.is_none()), (proto::LadderChange::None as i32, true));
    }
    let profile = crate::common::screening(&channel, Bearer::of(Role::Operator))
        .get_caller(proto::CallerQuery { caller: number.into() })
        .await
        .unwrap()
        .into_inner();
    assert!(profile.known && profile.history.unwrap().misuse_day > 2.5, "history takes sandbox traffic");
    let cases = escalations(&channel, Bearer::of(Role::Legal))
        .list(proto::ListCasesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .cases;
    assert!(cases.is_empty(), "{cases:?}");
    let (clean, log) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);
    assert!(log.iter().any(|line| line.contains("cases.sandbox")), "the sandbox is announced: {log:?}");
}
