//! The model lifecycle over the real gRPC server: hot reload (admin RPC and file change in the real binary) without
//! dropping a call, refusal of broken and schema-mismatched files, shadow scoring of a challenger, the model card,
//! and drift against the card's reference.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use saring::auth::Role;
use saring::config::Settings;
use saring::modelops::drift::psi;
use saring::proto;
use saring::server::load_models;
use saring_models::ModelArtifact;
use tonic::Code;

use crate::common::process::{unique_prefix, SaringProcess};
use crate::common::{connect, models, sample_contact, screening, sqlite_url, start_with, Bearer};

const SHIPPED: &str = include_str!("../../../models/artifacts/default.json");

fn artifact(version: &str) -> ModelArtifact {
    let mut artifact = ModelArtifact::from_json(SHIPPED).unwrap();
    artifact.model_version = version.to_owned();
    artifact
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_prefix(name).replace(':', "-"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes an artifact the way a deployment should: to a temporary file, then renamed over the served one.
fn install(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn settings_with(champion: &Path, challenger: Option<&Path>) -> Settings {
    let mut settings = Settings::default();
    settings.model.path = Some(champion.to_owned());
    settings.model.challenger_path = challenger.map(Path::to_owned);
    settings
}

async fn start_serving(champion: &Path, challenger: Option<&Path>) -> crate::common::Harness {
    let settings = settings_with(champion, challenger);
    let registry = Arc::new(load_models(&settings).unwrap());
    start_with(&settings, registry, &sqlite_url("models")).await
}

#[tokio::test]
async fn an_admin_reload_swaps_the_champion_while_calls_keep_being_answered() {
    let dir = scratch("reload");
    let champion = dir.join("model.json");
    install(&champion, &artifact("champion-a").to_json());
    let harness = start_serving(&champion, None).await;
    let mut admin = harness.models(Role::Admin);

    let denied = harness.models(Role::Operator).reload_model(proto::ReloadModelRequest {}).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Four clients score without pause while the model is replaced twice.
    let mut callers = Vec::new();
    for caller in 0..4 {
        let mut client = harness.screening(Role::Routing);
        callers.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for call in 0..150 {
                let contact = sample_contact(&format!("reload-{caller}-{call}"), Some("081234567890"));
                let reply = client.score_contact(contact).await.expect("every call is answered").into_inner();
                assert!(!reply.degraded);
                versions.push(reply.model_version);
            }
            versions
        }));
    }
    for version in ["champion-b", "champion-c"] {
        tokio::time::sleep(Duration::from_millis(20)).await;
        install(&champion, &artifact(version).to_json());
        let status = admin.reload_model(proto::ReloadModelRequest {}).await.unwrap().into_inner();
        assert_eq!(status.champion.unwrap().model_version, version);
    }
    let mut seen = Vec::new();
    for caller in callers {
        seen.extend(caller.await.unwrap());
    }
    assert_eq!(seen.len(), 600);
    assert!(seen.iter().all(|version| ["champion-a", "champion-b", "champion-c"].contains(&version.as_str())));
    let reply = harness.client.clone().score_contact(sample_contact("after", None)).await.unwrap().into_inner();
    assert_eq!(reply.model_version, "champion-c");

    let status = admin.get_model_status(proto::ModelStatusRequest {}).await.unwrap().into_inner();
    let accepted: Vec<(&str, &str, bool)> = status
        .reloads
        .iter()
        .map(|event| (event.model_version.as_str(), event.trigger.as_str(), event.accepted))
        .collect();
    assert_eq!(accepted, [("champion-c", "rpc", true), ("champion-b", "rpc", true)]);
    harness.server.stop().await.unwrap();
}

#[tokio::test]
async fn broken_and_schema_mismatched_files_are_refused_and_the_old_model_keeps_serving() {
    let dir = scratch("refuse");
    let champion = dir.join("model.json");
    install(&champion, &artifact("good-model").to_json());
    let harness = start_serving(&champion, None).await;
    let mut admin = harness.models(Role::Admin);
    let mut client = harness.client.clone();

    let text = artifact("truncated-model").to_json();
    install(&champion, &text[..text.len() / 2]);
    let refused = admin.reload_model(proto::ReloadModelRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("keeps serving"), "{}", refused.message());

    let mut mismatched = artifact("other-schema-model");
    mismatched.schema.fingerprint = "0123456789abcdef".into();
    install(&champion, &mismatched.to_json());
    let refused = admin.reload_model(proto::ReloadModelRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("schema"), "{}", refused.message());

    let reply = client.score_contact(sample_contact("still-served", Some("081234567890"))).await.unwrap();
    assert_eq!(reply.into_inner().model_version, "good-model");
    let status = admin.get_model_status(proto::ModelStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.champion.unwrap().model_version, "good-model");
    let events: Vec<(&str, bool)> =
        status.reloads.iter().map(|event| (event.model_version.as_str(), event.accepted)).collect();
    assert_eq!(events, [("other-schema-model", false), ("", false)]);
    assert!(status.reloads.iter().all(|event| !event.error.is_empty()));
    harness.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_challenger_is_scored_in_shadow_and_its_agreement_reported() {
    let dir = scratch("shadow");
    let (champion, challenger) = (dir.join("champion.json"), dir.join("challenger.json"));
    install(&champion, &artifact("the-champion").to_json());
    // The same trees calibrated far higher: it disagrees on some bands but never decides what callers see.
    let mut bolder = artifact("the-challenger");
    bolder.calibration.offset += 4.0;
    install(&challenger, &bolder.to_json());
    let harness = start_serving(&champion, Some(&challenger)).await;
    let mut client = harness.client.clone();
    let mut operator = harness.models(Role::Operator);

    let mut champion_bands = Vec::new();
    for call in 0..40 {
        let caller = format!("08123450{:04}", call % 7);
        let reply = client.score_contact(sample_contact(&format!("shadow-{call}"), Some(&caller))).await.unwrap();
        let reply = reply.into_inner();
        assert_eq!(reply.model_version, "the-champion");
        champion_bands.push(reply.band);
    }
    let status = operator.get_model_status(proto::ModelStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.challenger.as_ref().unwrap().model_version, "the-challenger");
    let shadow = status.shadow.unwrap();
    assert_eq!(shadow.scored, 40);
    assert_eq!(shadow.confusion.iter().map(|pair| pair.count).sum::<u64>(), 40);
    assert!(shadow.band_agreed < 40, "a far bolder calibration changes some bands: {shadow:?}");
    assert!((shadow.agreement - shadow.band_agreed as f64 / 40.0).abs() < 1e-12);
    assert!(shadow.mean_abs_difference > 0.0);
    let champion_lows = champion_bands.iter().filter(|band| **band == proto::Band::Low as i32).count() as u64;
    let lows_by_confusion: u64 = shadow
        .confusion
        .iter()
        .filter(|pair| pair.champion_band == proto::Band::Low as i32)
        .map(|pair| pair.count)
        .sum();
    assert_eq!(lows_by_confusion, champion_lows);

    let card = operator
        .get_model_card(proto::ModelCardRequest { slot: proto::ModelSlot::Challenger as i32 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(card.model_version, "the-challenger");
    assert_eq!(card.source, challenger.display().to_string());
    let champion_card =
        harness.models(Role::Legal).get_model_card(proto::ModelCardRequest::default()).await.unwrap().into_inner();
    assert_eq!(champion_card.model_version, "the-champion");
    serde_json::from_str::<serde_json::Value>(&champion_card.card_json).expect("the card is JSON");
    let denied = harness.models(Role::Routing).get_model_card(proto::ModelCardRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    harness.server.stop().await.unwrap();
}

#[tokio::test]
async fn drift_compares_each_regions_likelihoods_with_the_cards_reference() {
    let dir = scratch("drift");
    let champion = dir.join("model.json");
    let mut with_reference = artifact("drift-model");
    with_reference.card = serde_json::json!({
        "reference": { "bins": {
            "likelihood": { "edges": [0.05, 0.2, 0.5], "shares": [0.4, 0.3, 0.2, 0.1] },
            "withheld": { "edges": [0.5], "shares": [0.8, 0.2] }
        } }
    });
    install(&champion, &with_reference.to_json());
    let harness = start_serving(&champion, None).await;
    let mut client = harness.client.clone();
    let mut likelihoods = Vec::new();
    for call in 0..120 {
        let caller = (call % 3 != 0).then(|| format!("08123460{:04}", call % 11));
        let reply = client.score_contact(sample_contact(&format!("drift-{call}"), caller.as_deref())).await.unwrap();
        likelihoods.push(reply.into_inner().prank_likelihood);
    }
    let mut operator = harness.models(Role::Operator);
    let report =
        operator.get_drift(proto::DriftRequest { region: Some("ntt.kupang".into()) }).await.unwrap().into_inner();
    assert!(report.has_reference);
    assert_eq!(report.model_version, "drift-model");
    assert_eq!(report.regions.len(), 1);
    let current = report.regions[0].current.clone().unwrap();
    assert_eq!(current.contacts, 120);
    // The index, computed here from the likelihoods the replies carried.
    let mut bins = [0u64; 4];
    for likelihood in &likelihoods {
        bins[[0.05, 0.2, 0.5].iter().position(|cut| *likelihood <= *cut).unwrap_or(3)] += 1;
    }
    let likelihood = current.variables.iter().find(|variable| variable.name == "likelihood").unwrap();
    assert!((likelihood.psi - psi(&bins, 120, &[0.4, 0.3, 0.2, 0.1])).abs() < 1e-9);
    let withheld = current.variables.iter().find(|variable| variable.name == "withheld").unwrap();
    assert_eq!(withheld.shares, [80.0 / 120.0, 40.0 / 120.0]);
    assert!(current.level != "too_few_contacts");

    let all = operator.get_drift(proto::DriftRequest::default()).await.unwrap().into_inner();
    assert_eq!(all.regions[0].region, "*");
    let bad = operator.get_drift(proto::DriftRequest { region: Some("Bad Region".into()) }).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    harness.server.stop().await.unwrap();
}

#[tokio::test]
async fn the_real_binary_reloads_a_changed_file_and_refuses_a_broken_one() {
    let dir = scratch("binary-reload");
    let champion = dir.join("model.json");
    install(&champion, &artifact("file-a").to_json());
    let path = champion.display().to_string();
    let process = SaringProcess::spawn(&["--model", &path], &[("SARING__MODEL__WATCH_INTERVAL_S", "1")]);
    let channel = connect(process.url()).await;
    let mut admin = models(&channel, Bearer::of(Role::Admin));
    let mut client = screening(&channel, Bearer::of(Role::Routing));
    let champion_version = |status: &proto::ModelStatus| status.champion.as_ref().unwrap().model_version.clone();

    install(&champion, &artifact("file-b").to_json());
    let mut waited = 0;
    loop {
        let status = admin.get_model_status(proto::ModelStatusRequest {}).await.unwrap().into_inner();
        if champion_version(&status) == "file-b" {
            assert_eq!(status.reloads[0].trigger, "file");
            break;
        }
        waited += 1;
        assert!(waited < 600, "the changed file was never loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = client.score_contact(sample_contact("from-file-b", None)).await.unwrap().into_inner();
    assert_eq!(reply.model_version, "file-b");

    install(&champion, "{ not a model");
    loop {
        let status = admin.get_model_status(proto::ModelStatusRequest {}).await.unwrap().into_inner();
        if status.reloads.first().is_some_and(|event| !event.accepted) {
            assert_eq!(champion_version(&status), "file-b");
            break;
        }
        waited += 1;
        assert!(waited < 600, "the broken file was never looked at");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = client.score_contact(sample_contact("after-broken", None)).await.unwrap().into_inner();
    assert_eq!(reply.model_version, "file-b");
    drop((admin, client, channel));
    let (clean, log) = tokio::task::spawn_blocking(move || process.terminate()).await.unwrap();
    assert!(clean);
    assert!(log.iter().any(|line| line.contains("model file refused")), "the refusal is logged");
}
