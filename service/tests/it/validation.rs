//! Bad input gets INVALID_ARGUMENT naming the field; idempotency; outcomes for contacts this replica never saw.

use saring::proto;
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::{prank_outcome, sample_contact, start, timestamp};

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad_request = status.get_details_bad_request().expect("INVALID_ARGUMENT carries google.rpc.BadRequest");
    bad_request.field_violations.into_iter().map(|violation| violation.field).collect()
}

#[tokio::test]
async fn every_bad_field_is_named() {
    let mut harness = start().await;
    let client = &mut harness.client;

    let cases: Vec<(&str, proto::ContactRequest)> = vec![
        ("caller", sample_contact("c-1", Some("+1 415 555 0123"))),
        ("caller", sample_contact("c-1", Some("08-not-a-number"))),
        ("contact_id", sample_contact("", Some("081234567890"))),
        ("channel", proto::ContactRequest { channel: 0, ..sample_contact("c-1", None) }),
        ("channel", proto::ContactRequest { channel: 42, ..sample_contact("c-1", None) }),
        ("region", proto::ContactRequest { region: String::new(), ..sample_contact("c-1", None) }),
        ("region", proto::ContactRequest { region: "zzz.foo".into(), ..sample_contact("c-1", None) }),
        ("received_at", proto::ContactRequest { received_at: None, ..sample_contact("c-1", None) }),
        (
            "received_at",
            proto::ContactRequest {
                received_at: Some(timestamp(time::OffsetDateTime::now_utc() + time::Duration::days(2))),
                ..sample_contact("c-1", None)
            },
        ),
        (
            "location.lat",
            proto::ContactRequest {
                location: Some(proto::Location { lat: 123.0, lon: 120.0, accuracy_m: 10.0 }),
                ..sample_contact("c-1", None)
            },
        ),
        (
            "location.accuracy_m",
            proto::ContactRequest {
                location: Some(proto::Location { lat: -10.0, lon: 120.0, accuracy_m: f64::NAN }),
                ..sample_contact("c-1", None)
            },
        ),
    ];
    for (field, request) in cases {
        let status = client.score_contact(request).await.expect_err(field);
        assert_eq!(violated_fields(&status), vec![field.to_owned()], "{}", status.message());
    }

    // Several problems at once are all reported.
    let status = client
        .score_contact(proto::ContactRequest {
            channel: 9,
            region: "BAD REGION".into(),
            ..sample_contact("", Some("x"))
        })
        .await
        .unwrap_err();
    let fields = violated_fields(&status);
    for field in ["contact_id", "caller", "channel", "region"] {
        assert!(fields.contains(&field.to_owned()), "{field} missing from {fields:?}");
    }

    let outcome = |ring_s: f64, talk_s: f64, answered: bool, disposition: i32| proto::Outcome {
        contact_id: "c-2".into(),
        contact: Some(sample_contact("c-2", Some("081234567890"))),
        answered,
        ring_s,
        talk_s,
        disposition,
        category: None,
        operator_id: None,
    };
    let prank = proto::Disposition::Prank as i32;
    for (field, request) in [
        ("ring_s", outcome(-1.0, 0.0, true, prank)),
        ("talk_s", outcome(1.0, -5.0, true, prank)),
        ("talk_s", outcome(1.0, 30.0, false, prank)),
        ("disposition", outcome(1.0, 3.0, true, 0)),
        ("disposition", outcome(1.0, 3.0, true, 99)),
    ] {
        let status = client.record_outcome(request).await.expect_err(field);
        assert_eq!(violated_fields(&status), vec![field.to_owned()]);
    }
    let mismatched = proto::Outcome { contact_id: "c-3".into(), ..outcome(1.0, 3.0, true, prank) };
    assert_eq!(violated_fields(&client.record_outcome(mismatched).await.unwrap_err()), vec!["contact.contact_id"]);
    let status = client.get_caller(proto::CallerQuery { caller: "12345".into() }).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["caller"]);
    harness.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_withheld_number_is_valid_and_scored() {
    let mut harness = start().await;
    // A fixed arrival time (22:00 WITA in Kupang), so the reasons do not depend on the hour the test runs.
    let contact = proto::ContactRequest {
        received_at: Some(prost_types::Timestamp { seconds: 1_779_544_800, nanos: 0 }),
        ..sample_contact("w-1", None)
    };
    let reply = harness.client.score_contact(contact).await.unwrap().into_inner();
    assert!((0.0..=1.0).contains(&reply.prank_likelihood));
    assert!(!reply.degraded);
    assert!(reply.caller_history.is_none());
    assert!(!reply.reasons.is_empty());
    assert!(reply.reasons.iter().any(|reason| reason.code == "withheld"), "{:?}", reply.reasons);
    for pair in reply.reasons.windows(2) {
        assert!(pair[0].contribution.abs() >= pair[1].contribution.abs(), "reasons are strongest first");
    }
    harness.server.stop().await.unwrap();
}

/// Reasons come back with their code, form and value (so a client can word them itself), in English unless the
/// request asks for Indonesian; the language changes the words only, and a language that is not one is refused.
#[tokio::test]
async fn reasons_carry_codes_forms_and_values_in_the_language_asked_for() {
    let mut harness = start().await;
    let contact = proto::ContactRequest {
        received_at: Some(prost_types::Timestamp { seconds: 1_779_544_800, nanos: 0 }),
        ..sample_contact("lang-1", None)
    };
    let english = harness.client.score_contact(contact.clone()).await.unwrap().into_inner();
    let indonesian = harness
        .client
        .score_contact(proto::ContactRequest { language: proto::Language::Indonesian as i32, ..contact.clone() })
        .await
        .unwrap()
        .into_inner();
    let asked_english = harness
        .client
        .score_contact(proto::ContactRequest { language: proto::Language::English as i32, ..contact.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(asked_english, english, "English is the default");
    assert_eq!(english.reasons.len(), indonesian.reasons.len());
    let withheld = english.reasons.iter().find(|reason| reason.code == "withheld").expect("a withheld reason");
    assert_eq!(withheld.form, proto::ReasonForm::Yes as i32);
    assert_eq!(withheld.sentence, "the number is withheld, so there is no caller history");
    assert!(!withheld.routine, "a withheld number is news to an operator");
    let total: f64 = english.reasons.iter().map(|reason| reason.contribution.abs()).sum();
    for (en, id) in english.reasons.iter().zip(&indonesian.reasons) {
        assert_eq!((&en.code, en.form, en.value, en.contribution), (&id.code, id.form, id.value, id.contribution));
        assert_eq!((en.material, en.routine), (id.material, id.routine));
        assert_ne!(en.form, proto::ReasonForm::Unspecified as i32, "{en:?}");
        assert_ne!(en.sentence, id.sentence, "{} reads the same in both languages", en.code);
        // These five are a part of all the contact's reasons: a material one is at least 10% of their movement too.
        if en.material {
            assert!(en.contribution.abs() >= 0.1 * total, "{en:?} is not 10% of {total}");
        }
        if en.code == "time_of_day" {
            // 22:00 WITA in Kupang.
            assert_eq!((en.form, en.value), (proto::ReasonForm::Hour as i32, 22.0));
            assert!(!en.routine, "the hour is news when it moved the score");
            assert_eq!(id.sentence, "masuk pukul 22.00-22.59 waktu setempat");
        }
    }
    let withheld_id = indonesian.reasons.iter().find(|reason| reason.code == "withheld").unwrap();
    assert_eq!(withheld_id.sentence, "nomor disembunyikan, jadi tidak ada riwayat penelepon");
    let status = harness
        .client
        .score_contact(proto::ContactRequest { language: 9, ..contact })
        .await
        .expect_err("an unknown language");
    assert_eq!(violated_fields(&status), vec!["language".to_owned()]);
    harness.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_repeated_outcome_changes_nothing() {
    let mut harness = start().await;
    let mut routing = harness.screening(saring::auth::Role::Routing);
    let client = &mut harness.client;
    let number = "0812-3456-7001";
    client.score_contact(sample_contact("r-1", Some(number))).await.unwrap();
    let outcome = prank_outcome("r-1", None);
    let first = routing.record_outcome(outcome.clone()).await.unwrap().into_inner();
    assert!(!first.duplicate);
    let query = proto::CallerQuery { caller: "+62 812 3456 7001".into() };
    let before = client.get_caller(query.clone()).await.unwrap().into_inner();
    assert!(before.known);
    assert_eq!(before.caller, "+6281234567001");
    assert_eq!(before.history.as_ref().unwrap().total_contacts, 1);

    for _ in 0..3 {
        let again = routing.record_outcome(outcome.clone()).await.unwrap().into_inner();
        assert!(again.duplicate);
    }
    // A repeat carrying a different disposition is the same contact saying something else: refused, not dropped
    // as a duplicate; the first outcome stands.
    let changed = proto::Outcome { disposition: proto::Disposition::GenuineEmergency as i32, ..outcome };
    let refused = routing.record_outcome(changed).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    let after = client.get_caller(query).await.unwrap().into_inner();
    assert_eq!(after.history.as_ref().unwrap().total_contacts, 1);
    assert!(after.dispositions_month.get("prank").copied().unwrap_or(0.0) > 0.99);
    assert_eq!(after.dispositions_month.get("genuine_emergency").copied(), Some(0.0));
    harness.server.stop().await.unwrap();
}

#[tokio::test]
async fn an_outcome_for_an_unseen_contact_is_recorded_when_it_carries_the_contact() {
    let mut harness = start().await;
    let mut routing = harness.screening(saring::auth::Role::Routing);
    let client = &mut harness.client;
    let bare = proto::Outcome {
        contact_id: "u-1".into(),
        contact: None,
        answered: true,
        ring_s: 1.0,
        talk_s: 3.0,
        disposition: proto::Disposition::Abusive as i32,
        category: None,
        operator_id: None,
    };
    let status = routing.record_outcome(bare.clone()).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["contact"]);

    let with_contact = proto::Outcome { contact: Some(sample_contact("u-1", Some("6281299990001"))), ..bare };
    // Only the routing engine embeds a contact: a person's token cannot put any number on a ladder.
    let refused = client.record_outcome(with_contact.clone()).await.unwrap_err();
    assert_eq!(violated_fields(&refused), vec!["contact"]);
    assert!(!routing.record_outcome(with_contact).await.unwrap().into_inner().duplicate);
    let profile = client.get_caller(proto::CallerQuery { caller: "081299990001".into() }).await.unwrap().into_inner();
    assert!(profile.known);
    assert!(profile.history.unwrap().misuse_month > 0.99);
    harness.server.stop().await.unwrap();
}

/// A contact id is visible characters: no right-to-left override, zero-width or other format character, no white
/// space, not a path segment; refused on scoring and on outcomes alike.
#[tokio::test]
async fn a_contact_id_of_invisible_or_path_characters_is_refused() {
    let mut harness = start().await;
    let client = &mut harness.client;
    for id in ["c\u{202E}1-c", "c\u{200B}1", "\u{FEFF}c1", " ", "c 1", "c\u{00A0}1", "..", "."] {
        let status = client.score_contact(sample_contact(id, Some("081234567890"))).await.expect_err(id);
        assert_eq!(violated_fields(&status), ["contact_id"], "{id:?}: {}", status.message());
        let status = client.record_outcome(prank_outcome(id, Some(sample_contact(id, None)))).await.expect_err(id);
        assert!(violated_fields(&status).contains(&"contact_id".to_owned()), "{id:?}: {}", status.message());
    }
    let ordinary = client.score_contact(sample_contact("c-2026-12-01-000042", None)).await;
    assert!(ordinary.is_ok(), "{ordinary:?}");
    harness.server.stop().await.unwrap();
}

/// An operator records outcomes under their own name, only for contacts scored recently, never embedding one.
#[tokio::test]
async fn an_operator_records_only_recent_contacts_under_their_own_name() {
    let mut harness = start().await;
    let operator = &mut harness.client;
    operator.score_contact(sample_contact("op-1", Some("081299990002"))).await.unwrap();
    let as_someone_else = prank_outcome("op-1", None);
    assert_eq!(as_someone_else.operator_id.as_deref(), Some("op-1"));
    let refused = operator.record_outcome(as_someone_else.clone()).await.unwrap_err();
    assert_eq!(violated_fields(&refused), vec!["operator_id"]);
    let unseen = operator.record_outcome(prank_outcome("never-scored", None)).await.unwrap_err();
    assert_eq!(violated_fields(&unseen), vec!["contact_id", "operator_id"]);
    let own = proto::Outcome { operator_id: Some("test-operator".into()), ..as_someone_else.clone() };
    assert!(!operator.record_outcome(own).await.unwrap().into_inner().duplicate);
    let unnamed = proto::Outcome { operator_id: None, ..as_someone_else };
    assert!(operator.record_outcome(unnamed).await.unwrap().into_inner().duplicate, "the same outcome, same name");
    harness.server.stop().await.unwrap();
}
