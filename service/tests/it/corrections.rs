//! Corrections of a recorded disposition through the real gRPC API (CorrectOutcome) and the operator console: the
//! histories end exactly as if the right disposition had been recorded first (memory, and Redis behind its
//! journal), a repeat changes nothing, the window and the rules are enforced, and the ladder follows — a proposed
//! case whose grounds are gone is withdrawn, an approved one shows the correction — with the audit chain intact
//! (SQLite and PostgreSQL).

use std::sync::Arc;
use std::time::Duration;

use saring::app::App;
use saring::auth::Role;
use saring::cases::{CaseStore, Escalator};
use saring::privacy::KeyHasher;
use saring::proto;
use saring::screening::Screener;
use saring::server::RunningServer;
use saring::store::journal::JournaledStore;
use saring::store::{HistoryStore, MemoryStore, RedisSettings, RedisStore};
use saring_models::ladder::LadderPolicy;
use saring_models::{CallerHistory, Model, ModelArtifact};
use time::OffsetDateTime;
use tonic::Code;

use crate::common::process::{unique_prefix, SaringProcess};
use crate::common::{
    authenticator, connect, escalations, prank_outcome, sample_contact, screening, sqlite_url, timestamp, Bearer,
    Screening,
};
use crate::console::Browser;
use crate::ladder::{audit_verify_with, decide, PgSchema};

const SECRET: &[u8] = b"corrections-test-secret";

struct Served<S> {
    server: RunningServer,
    channel: tonic::transport::Channel,
    app: Arc<App<S>>,
}

async fn serve<S: HistoryStore>(store: S, database_url: &str, policy: LadderPolicy) -> Served<S> {
    let model = Model::new(ModelArtifact::from_json(saring::server::SHIPPED_MODEL).unwrap());
    let screener = Screener::new(store, model, KeyHasher::new(SECRET), 1000, Duration::from_secs(2));
    let cases = CaseStore::connect(database_url).await.expect("the case database opens");
    let escalator = Escalator::new(cases, policy).with_correction_window(Duration::from_secs(24 * 3600));
    let app = Arc::new(App { screener, escalator, auth: authenticator() });
    let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&app)).await.unwrap();
    let channel = connect(format!("http://{}", server.local_addr)).await;
    Served { server, channel, app }
}

fn hours_ago(hours: f64) -> OffsetDateTime {
    OffsetDateTime::now_utc() - time::Duration::seconds_f64(hours * 3600.0)
}

fn contact(contact_id: &str, number: Option<&str>, device: &str, hours: f64) -> proto::ContactRequest {
    contact_at(contact_id, number, device, hours_ago(hours))
}

fn contact_at(contact_id: &str, number: Option<&str>, device: &str, at: OffsetDateTime) -> proto::ContactRequest {
    proto::ContactRequest {
        received_at: Some(timestamp(at)),
        device_id: Some(device.into()),
        ..sample_contact(contact_id, number)
    }
}

/// The routing engine records an outcome, embedding the contact.
async fn record(
    routing: &mut Screening,
    contact: proto::ContactRequest,
    disposition: proto::Disposition,
) -> proto::OutcomeAck {
    let outcome =
        proto::Outcome { disposition: disposition as i32, ..prank_outcome(&contact.contact_id.clone(), Some(contact)) };
    routing.record_outcome(outcome).await.unwrap().into_inner()
}

fn correction(contact_id: &str, disposition: proto::Disposition, reason: &str) -> proto::OutcomeCorrection {
    proto::OutcomeCorrection {
        contact_id: contact_id.into(),
        contact: None,
        disposition: disposition as i32,
        reason: reason.into(),
        operator_id: Some("op-7".into()),
    }
}

fn field_violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    let mut fields: Vec<String> = status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|violation| violation.field).collect())
        .unwrap_or_default();
    fields.sort();
    fields
}

fn assert_same(corrected: &CallerHistory, recorded_right: &CallerHistory) {
    // Counters are f32: moving a contact's weight rounds where recording the right disposition first did not.
    for (row, (corrected_row, right_row)) in corrected.counters.iter().zip(&recorded_right.counters).enumerate() {
        for (half_life, (a, b)) in corrected_row.iter().zip(right_row).enumerate() {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "row {row}/{half_life}: {a} vs {b}");
        }
    }
    assert_eq!(corrected.total_contacts, recorded_right.total_contacts);
    assert_eq!(
        (corrected.first_seen_ms, corrected.last_seen_ms),
        (recorded_right.first_seen_ms, recorded_right.last_seen_ms)
    );
}

/// Two callers make the same contacts at the same times from their own devices; one contact was recorded SILENT
/// for the first and PRANK for the second. Corrected to PRANK, the first's histories equal the second's.
async fn history_is_corrected_exactly<S: HistoryStore>(store: S, name: &str) {
    let served = serve(store, &sqlite_url(name), LadderPolicy::default_policy()).await;
    let mut routing = screening(&served.channel, Bearer::of(Role::Routing));
    let mut operator = screening(&served.channel, Bearer::of(Role::Operator));
    let (wrong, right) = ("0812-7700-0001", "0812-7700-0002");
    use proto::Disposition::{NonEmergency, Prank, Silent};
    // (contact, hours ago, as recorded for `wrong`, as recorded for `right`)
    let plan = [
        ("a", 30.0, Prank, Prank),
        ("b", 2.0, Silent, Prank),
        ("c", 0.5, NonEmergency, NonEmergency),
        ("d", 50.0, Silent, Silent),
    ];
    let mut contacts = std::collections::HashMap::new();
    for (suffix, hours, for_wrong, for_right) in plan {
        // Both callers' contacts arrive at exactly the same times.
        let at = hours_ago(hours);
        let wrong_contact = contact_at(&format!("w-{suffix}"), Some(wrong), "dev-wrong", at);
        contacts.insert(wrong_contact.contact_id.clone(), wrong_contact.clone());
        record(&mut routing, wrong_contact, for_wrong).await;
        let ack =
            record(&mut routing, contact_at(&format!("r-{suffix}"), Some(right), "dev-right", at), for_right).await;
        if suffix == "b" {
            assert_eq!(ack.ladder_change, proto::LadderChange::Proposed as i32, "two pranks propose a warning");
        }
    }
    let hasher = KeyHasher::new(SECRET);
    let load = |number: &'static str, device: &'static str| {
        let app = Arc::clone(&served.app);
        let (number, device) =
            (hasher.number(&saring_models::phone::normalise_indonesian_number(number).unwrap()), hasher.device(device));
        async move { app.screener.store().load(Some(&number), Some(&device)).await.unwrap() }
    };
    let before = load(wrong, "dev-wrong").await;
    let profile = |mut client: Screening, number: &'static str| async move {
        client.get_caller(proto::CallerQuery { caller: number.into() }).await.unwrap().into_inner()
    };
    let wrong_before = profile(operator.clone(), wrong).await;
    assert!(wrong_before.dispositions_month["silent"] > 1.9, "{:?}", wrong_before.dispositions_month);

    // The correction: SILENT → PRANK, by the routing engine for operator op-7. The second prank proposes a warning
    // now, as it did for the caller recorded right.
    // The routing engine embeds the contact: this replica never scored it.
    let embedded = |contact_id: &str, disposition, reason: &str| proto::OutcomeCorrection {
        contact: Some(contacts[contact_id].clone()),
        ..correction(contact_id, disposition, reason)
    };
    let ack = routing
        .correct_outcome(embedded("w-b", Prank, "the caller laughed and hung up; not a silent call"))
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.unchanged);
    assert_eq!((ack.previous_disposition, ack.disposition), (Silent as i32, Prank as i32));
    assert_eq!(ack.ladder_change, proto::LadderChange::Proposed as i32, "{}", ack.summary);
    assert!(ack.summary.contains("corrected from silent to prank"), "{}", ack.summary);

    let corrected = load(wrong, "dev-wrong").await;
    let expected = load(right, "dev-right").await;
    assert_ne!(before, corrected);
    assert_same(corrected.caller.as_ref().unwrap(), expected.caller.as_ref().unwrap());
    assert_same(corrected.device.as_ref().unwrap(), expected.device.as_ref().unwrap());
    let (wrong_after, right_after) = (profile(operator.clone(), wrong).await, profile(operator.clone(), right).await);
    assert_eq!(
        wrong_after.history.as_ref().unwrap().total_contacts,
        right_after.history.as_ref().unwrap().total_contacts
    );
    for (disposition, count) in &right_after.dispositions_month {
        let corrected_count = wrong_after.dispositions_month[disposition];
        assert!((corrected_count - count).abs() <= 1e-6 * (1.0 + count), "{disposition}: {corrected_count} vs {count}");
    }
    assert_eq!(wrong_after.rung, right_after.rung);

    // The same correction again changes nothing.
    let again = routing.correct_outcome(embedded("w-b", Prank, "repeated by a retry")).await.unwrap().into_inner();
    assert!(again.unchanged);
    assert_eq!(again.previous_disposition, Prank as i32);
    assert_eq!(load(wrong, "dev-wrong").await, corrected, "not a bit moved");

    // Outside the window (the contact arrived 30 hours ago; the window is 24): refused, nothing changed.
    let late = routing.correct_outcome(embedded("w-a", Silent, "too late")).await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
    assert!(late.message().contains("correction_window_hours"), "{}", late.message());
    // An unknown contact, even with its contact embedded.
    let unknown = proto::OutcomeCorrection {
        contact: Some(contact("never-recorded", Some(wrong), "dev-wrong", 1.0)),
        ..correction("never-recorded", Prank, "no such outcome")
    };
    assert_eq!(routing.correct_outcome(unknown).await.unwrap_err().code(), Code::NotFound);
    // Bad fields, every one named.
    let bad = proto::OutcomeCorrection { disposition: 0, reason: "  ".into(), ..correction("w-c", Prank, "") };
    let refused = routing.correct_outcome(bad).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(field_violations(&refused), ["disposition", "reason"]);
    // A withheld number's outcome is kept in no durable record: refused with the reason.
    record(&mut routing, contact("withheld-1", None, "dev-withheld", 1.0), Prank).await;
    let withheld = proto::OutcomeCorrection {
        contact: Some(contact("withheld-1", None, "dev-withheld", 1.0)),
        ..correction("withheld-1", Silent, "it was silent")
    };
    let withheld = routing.correct_outcome(withheld).await.unwrap_err();
    assert_eq!(withheld.code(), Code::FailedPrecondition);
    assert!(withheld.message().contains("withheld"), "{}", withheld.message());
    // An operator corrects only contacts this replica scored recently, under their own name.
    let refused = operator.correct_outcome(correction("w-c", Prank, "mine")).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(field_violations(&refused), ["operator_id"]);
    let refused = operator
        .correct_outcome(proto::OutcomeCorrection { operator_id: None, ..correction("w-c", Prank, "mine") })
        .await
        .unwrap_err();
    assert_eq!(field_violations(&refused), ["contact"]);

    served.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_correction_in_memory_equals_recording_the_right_disposition_first() {
    history_is_corrected_exactly(MemoryStore::new(Duration::from_secs(7 * 86_400)), "corrections-memory").await;
}

#[tokio::test]
async fn a_correction_in_redis_equals_recording_the_right_disposition_first() {
    let prefix = unique_prefix("corrections");
    let scratch = std::env::temp_dir().join(prefix.replace(':', "-"));
    let server = crate::common::process::TestRedis::new();
    let redis = RedisStore::new(RedisSettings {
        url: server.url.clone(),
        prefix,
        retention: Duration::from_secs(3600),
        marker_ttl: Duration::from_secs(7 * 86_400),
        connect_timeout: Duration::from_millis(500),
    })
    .unwrap();
    let store = JournaledStore::open(redis, &scratch.join("outcomes.journal"), Duration::from_millis(500)).unwrap();
    history_is_corrected_exactly(store, "corrections-redis").await;
    std::fs::remove_dir_all(&scratch).ok();
}

/// The default ladder with a warning a reviewer approves, so a proposed warning stays PROPOSED.
fn reviewed_warning_policy() -> LadderPolicy {
    let text = include_str!("../../../models/ladder/default.toml").replacen(
        "approval = \"automatic\"",
        "approval = \"reviewer\"",
        1,
    );
    LadderPolicy::from_toml(&text).unwrap()
}

async fn the_ladder_follows_a_correction(database_url: &str) {
    let served =
        serve(MemoryStore::new(Duration::from_secs(7 * 86_400)), database_url, reviewed_warning_policy()).await;
    let mut routing = screening(&served.channel, Bearer::of(Role::Routing));
    let mut legal = escalations(&served.channel, Bearer::of(Role::Legal));
    let number = "0812-7700-0100";
    use proto::Disposition::{Prank, Silent};

    let contacts: std::collections::HashMap<&str, proto::ContactRequest> =
        [("l-1", contact("l-1", Some(number), "dev-l", 3.0)), ("l-2", contact("l-2", Some(number), "dev-l", 2.0))]
            .into_iter()
            .collect();
    let embedded = |contact_id: &str, disposition, reason: &str| proto::OutcomeCorrection {
        contact: Some(contacts[contact_id].clone()),
        ..correction(contact_id, disposition, reason)
    };
    record(&mut routing, contacts["l-1"].clone(), Prank).await;
    let proposed = record(&mut routing, contacts["l-2"].clone(), Prank).await;
    let case = proposed.open_case.expect("two pranks propose a warning");
    assert_eq!(case.state, proto::CaseState::Proposed as i32);

    // l-2 was a silent call: the warning's grounds are gone, so saring withdraws it.
    let ack =
        routing.correct_outcome(embedded("l-2", Silent, "recording checked: nobody spoke")).await.unwrap().into_inner();
    assert_eq!(ack.evidence_removed_case_id, case.case_id);
    let withdrawn = ack.withdrawn_case.expect("the proposed case is withdrawn");
    assert_eq!(withdrawn.state, proto::CaseState::Rejected as i32);
    assert_eq!(withdrawn.decided_by, "saring");
    assert!(withdrawn.decision_reason.contains("removed its grounds"), "{}", withdrawn.decision_reason);
    assert!(ack.open_case.is_none());
    let (verified, report) = audit_verify_with(database_url, &["--without-anchor"]).await;
    assert!(verified, "{report}");

    // Corrected back to PRANK: evaluated like a new outcome; l-1 was released, not spent, so a warning is proposed
    // again on both.
    let back =
        routing.correct_outcome(embedded("l-2", Prank, "second listen: a prank after all")).await.unwrap().into_inner();
    assert_eq!(back.ladder_change, proto::LadderChange::Proposed as i32, "{}", back.summary);
    let again = back.open_case.unwrap();
    assert_eq!((again.state, again.incidents), (proto::CaseState::Proposed as i32, 2));
    let approved = decide(&mut legal, &again, proto::Decision::Approve, "two pranks in a day").await.unwrap();

    // An approved case is not changed by a correction of its evidence; it shows it, for the legal team.
    let flagged = routing.correct_outcome(embedded("l-1", Silent, "it was a silent call")).await.unwrap().into_inner();
    assert_eq!(flagged.flagged_case_ids, std::slice::from_ref(&approved.case_id));
    let open = flagged.open_case.unwrap();
    assert_eq!((open.state, open.incidents), (proto::CaseState::Approved as i32, 2));
    assert!(open.version > approved.version, "the case's evidence changed: decisions must read it again");

    let evidence = legal.get(proto::GetCaseRequest { case_id: approved.case_id.clone() }).await.unwrap().into_inner();
    let timeline: std::collections::HashMap<String, proto::TimelineEntry> =
        evidence.timeline.into_iter().map(|entry| (entry.contact_id.clone(), entry)).collect();
    let l1 = &timeline["l-1"];
    assert_eq!(l1.disposition, "silent");
    assert_eq!(l1.corrections.len(), 1);
    let shown = &l1.corrections[0];
    assert_eq!((shown.from_disposition.as_str(), shown.to_disposition.as_str()), ("prank", "silent"));
    assert_eq!((shown.corrected_by.as_str(), shown.reason.as_str()), ("op-7", "it was a silent call"));
    assert!(shown.corrected_at.is_some());
    let l2: Vec<(&str, &str)> = timeline["l-2"]
        .corrections
        .iter()
        .map(|correction| (correction.from_disposition.as_str(), correction.to_disposition.as_str()))
        .collect();
    assert_eq!(l2, [("prank", "silent"), ("silent", "prank")]);
    let actions: Vec<String> = served
        .app
        .escalator
        .store()
        .audit_of(&approved.case_id)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.action)
        .collect();
    assert!(actions.iter().any(|action| action == "corrected"), "{actions:?}");
    let (verified, report) = audit_verify_with(database_url, &["--without-anchor"]).await;
    assert!(verified, "{report}");
    served.server.stop().await.unwrap();
}

mod the_ladder_follows_a_correction {
    #[tokio::test]
    async fn sqlite() {
        super::the_ladder_follows_a_correction(&crate::common::sqlite_url("corrections-ladder")).await;
    }

    #[tokio::test]
    async fn postgres() {
        let schema = super::PgSchema::create("corrections_ladder").await;
        super::the_ladder_follows_a_correction(&schema.url()).await;
        schema.drop().await;
    }
}

/// The operator's console: a disposition that differs from the one recorded offers a correction with a reason;
/// the answer says what changed, in Indonesian by default.
#[tokio::test]
async fn an_operator_corrects_a_disposition_from_the_console() {
    let saring = SaringProcess::spawn(&[], &[]);
    let console = saring.console_url();
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));
    let browser = Browser::start().await;
    browser.sign_in(&console, Role::Operator).await;
    browser.wait_for("#feed[data-connected='1']").await;

    // An earlier prank from the number, then the routing engine scored the contact and reported it SILENT.
    let earlier = contact("console-correct-0", Some("081234567090"), "dev-console", 1.0);
    record(&mut routing, earlier, proto::Disposition::Prank).await;
    routing.score_contact(sample_contact("console-correct-1", Some("081234567090"))).await.unwrap();
    let silent = proto::Outcome {
        disposition: proto::Disposition::Silent as i32,
        answered: false,
        talk_s: 0.0,
        ..prank_outcome("console-correct-1", None)
    };
    routing.record_outcome(silent).await.unwrap();

    // The operator chooses PRANK: offered a correction instead of a refusal.
    let row = browser.wait_for("#feed tr[data-contact-id='console-correct-1']").await;
    row.click().await.unwrap();
    browser.wait_for("#history[data-contact-id='console-correct-1']").await;
    browser
        .client
        .find(fantoccini::Locator::Css("#disposition option[value='prank']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.client.find(fantoccini::Locator::Id("record")).await.unwrap().click().await.unwrap();
    let offer = browser.wait_for("#record-result.error[data-contact-id='console-correct-1']").await;
    let offer = offer.text().await.unwrap();
    assert!(offer.contains("sudah tercatat sebagai silent"), "{offer}");
    browser.wait_for("#correction:not(.hidden)").await;

    // Without a reason the correction is refused, naming the field; with one it is made.
    browser.client.find(fantoccini::Locator::Id("correct")).await.unwrap().click().await.unwrap();
    let refused = browser.wait_for("#correction-result.error[data-contact-id='console-correct-1']").await;
    assert!(refused.text().await.unwrap().contains("reason"), "{}", refused.text().await.unwrap());
    browser
        .client
        .find(fantoccini::Locator::Id("correction-reason"))
        .await
        .unwrap()
        .send_keys("penelepon tertawa lalu menutup telepon")
        .await
        .unwrap();
    browser.client.find(fantoccini::Locator::Id("correct")).await.unwrap().click().await.unwrap();
    let done = browser.wait_for("#correction-result.ok[data-contact-id='console-correct-1']").await;
    let done = done.text().await.unwrap();
    assert!(done.contains("Dikoreksi: silent → prank"), "{done}");
    browser.screenshot("console-correction.png").await;

    let profile = screening(&channel, Bearer::of(Role::Operator))
        .get_caller(proto::CallerQuery { caller: "081234567090".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(profile.dispositions_month["prank"] > 1.99, "{:?}", profile.dispositions_month);
    assert!(
        profile.dispositions_month.get("silent").copied().unwrap_or(0.0) < 1e-9,
        "{:?}",
        profile.dispositions_month
    );
    assert_eq!(profile.history.unwrap().total_contacts, 2);

    // The second prank proposed a warning; the legal team's case page shows the correction on the timeline.
    let case = profile.open_case.expect("the corrected contact proposed a warning");
    browser.sign_in(&console, Role::Legal).await;
    browser.client.goto(&format!("{console}/legal/cases/{}", case.case_id)).await.unwrap();
    let shown = browser.wait_for(".timeline .correction").await.text().await.unwrap();
    assert!(shown.contains("Dikoreksi: silent → prank") && shown.contains("penelepon tertawa"), "{shown}");
    browser.screenshot("console-case-correction.png").await;

    browser.close().await;
    drop((routing, channel));
    let (clean, _) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);
}
