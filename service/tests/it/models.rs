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

/// The shipped trees with a plain logistic calibration; `direction` -1 ranks every contact the other way round.
fn ranked(version: &str, direction: f64) -> ModelArtifact {
    let mut artifact = artifact(version);
    artifact.calibration.slope = direction;
    artifact.calibration.offset = 0.0;
    artifact.calibration.isotonic = None;
    artifact
}

/// A contact from its own caller (so the naive rule, which needs history, says 0 for each) with features that vary.
fn varied_contact(prefix: &str, index: usize) -> proto::ContactRequest {
    let channels = [proto::Channel::Voice, proto::Channel::Whatsapp, proto::Channel::Sms, proto::Channel::App];
    let at = time::OffsetDateTime::now_utc() - time::Duration::minutes(5 + 17 * index as i64);
    proto::ContactRequest {
        contact_id: format!("{prefix}-{index}"),
        caller: Some(format!("0812{:08}", 31_000_000 + index)),
        channel: channels[index % 4] as i32,
        received_at: Some(crate::common::timestamp(at)),
        region: if index.is_multiple_of(3) { "ntt.kupang".into() } else { "jatim.surabaya".into() },
        sim_present: !index.is_multiple_of(5),
        device_id: index.is_multiple_of(2).then(|| format!("device-{prefix}-{index}")),
        location: (index % 3 == 1).then_some(proto::Location { lat: -10.17, lon: 123.6, accuracy_m: 50.0 }),
        language: proto::Language::Unspecified as i32,
    }
}

/// Scores `count` varied contacts, then records an outcome for each: misuse exactly when `misuse(likelihood)` holds
/// for the champion's likelihood. The champion's likelihoods and the labels, in order.
async fn score_and_label(
    harness: &crate::common::Harness,
    prefix: &str,
    count: usize,
    misuse: impl Fn(f64, f64) -> bool,
) -> (Vec<f64>, Vec<bool>) {
    let mut routing = harness.screening(Role::Routing);
    let mut likelihoods = Vec::new();
    for index in 0..count {
        let reply = routing.score_contact(varied_contact(prefix, index)).await.unwrap().into_inner();
        assert!(!reply.degraded, "{reply:?}");
        likelihoods.push(reply.prank_likelihood);
    }
    let mut sorted = likelihoods.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[count / 2];
    let mut labels = Vec::new();
    for (index, likelihood) in likelihoods.iter().enumerate() {
        let is_misuse = misuse(*likelihood, median);
        let disposition = if is_misuse { proto::Disposition::Prank } else { proto::Disposition::GenuineEmergency };
        let outcome = proto::Outcome {
            contact_id: format!("{prefix}-{index}"),
            contact: None,
            answered: true,
            ring_s: 3.0,
            talk_s: 30.0,
            disposition: disposition as i32,
            category: None,
            operator_id: Some("op-quality".into()),
        };
        routing.record_outcome(outcome).await.unwrap();
        labels.push(is_misuse);
    }
    (likelihoods, labels)
}

async fn start_for_promotion(name: &str) -> (PathBuf, PathBuf, String, crate::common::Harness) {
    let dir = scratch(name);
    let (champion, challenger) = (dir.join("champion.json"), dir.join("challenger.json"));
    install(&champion, &ranked("inverted-champion", -1.0).to_json());
    install(&challenger, &ranked("upright-challenger", 1.0).to_json());
    let mut settings = settings_with(&champion, Some(&challenger));
    settings.model.quality_min_labelled = 20;
    let registry = Arc::new(load_models(&settings).unwrap());
    let database_url = sqlite_url(name);
    let harness = start_with(&settings, registry, &database_url).await;
    (champion, challenger, database_url, harness)
}

fn day_window(status: &proto::ModelStatus) -> proto::WindowQuality {
    let quality = status.live_quality.clone().expect("live quality is reported");
    quality.windows.into_iter().find(|window| window.window == "day" && window.scope == "*").expect("the national day")
}

#[tokio::test]
async fn live_quality_matches_the_offline_metrics_and_a_better_challenger_is_promoted_audited_and_rolled_back() {
    let (champion_path, challenger_path, database_url, harness) = start_for_promotion("promote").await;
    let mut admin = harness.models(Role::Admin);

    // Before any label, the gate has nothing to compare and says so.
    let refused = admin
        .promote_challenger(proto::PromoteChallengerRequest { reason: "too early".into(), window: "day".into() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("too few labelled"), "{}", refused.message());
    let invalid = admin
        .promote_challenger(proto::PromoteChallengerRequest { reason: " ".into(), window: "month".into() })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let fields: Vec<String> = tonic_types::StatusExt::get_details_bad_request(&invalid)
        .unwrap()
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect();
    assert_eq!(fields, ["reason", "window"]);

    // Misuse is what the inverted champion ranks lowest: the upright challenger ranks it best.
    let (likelihoods, labels) =
        score_and_label(&harness, "promote", 60, |likelihood, median| likelihood < median).await;
    let status = admin.get_model_status(proto::ModelStatusRequest {}).await.unwrap().into_inner();
    let day = day_window(&status);
    let champion = day.champion.clone().unwrap();
    assert_eq!((champion.state.as_str(), champion.labelled), ("measured", 60));
    assert_eq!(champion.positives, labels.iter().filter(|label| **label).count() as u64);
    // The live figures are the offline evaluator's functions on the same scores and labels.
    assert!((champion.roc_auc - saring_models::metrics::roc_auc(&likelihoods, &labels)).abs() < 1e-12);
    assert!((champion.pr_auc - saring_models::metrics::pr_auc(&likelihoods, &labels)).abs() < 1e-12);
    let calibration = saring_models::metrics::expected_calibration_error(&likelihoods, &labels);
    assert!((champion.calibration_error - calibration).abs() < 1e-12);
    let naive = day.naive.clone().unwrap();
    assert!((naive.roc_auc - 0.5).abs() < 1e-12, "no caller had history: the naive rule ties everyone");
    assert!(day.champion_below_naive, "{champion:?}");
    let paired = day.paired.clone().unwrap();
    assert!(paired.challenger_wins);
    assert!(paired.challenger.as_ref().unwrap().roc_auc > 0.5);

    let promoted = admin
        .promote_challenger(proto::PromoteChallengerRequest {
            reason: "ranks the last day's pranks better".into(),
            window: "day".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (promoted.model_version.as_str(), promoted.replaced_version.as_str()),
        ("upright-challenger", "inverted-champion")
    );
    let comparison = promoted.comparison.unwrap();
    assert!(comparison.challenger_wins);
    assert_eq!(comparison.champion.unwrap().labelled, 60);
    let after = promoted.status.unwrap();
    assert_eq!(after.champion.unwrap().model_version, "upright-challenger");
    assert!(after.challenger.is_none(), "the promoted challenger left its slot");
    let reply = harness.client.clone().score_contact(sample_contact("after-promotion", None)).await.unwrap();
    assert_eq!(reply.into_inner().model_version, "upright-challenger");
    // The files say the same, so a restart serves the promoted model.
    assert!(std::fs::read_to_string(&champion_path).unwrap().contains("upright-challenger"));
    let previous = saring::modelops::promotion::previous_path(&champion_path);
    assert!(std::fs::read_to_string(&previous).unwrap().contains("inverted-champion"));
    assert!(!challenger_path.exists());
    assert!(saring::modelops::promotion::promoted_path(&challenger_path).exists());

    let rolled_back = admin
        .rollback_champion(proto::RollbackChampionRequest { reason: "operators report odd badges".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rolled_back.model_version, "inverted-champion");
    assert!(rolled_back.comparison.is_none());
    let reply = harness.client.clone().score_contact(sample_contact("after-rollback", None)).await.unwrap();
    assert_eq!(reply.into_inner().model_version, "inverted-champion");

    let store = saring::cases::CaseStore::connect(&database_url).await.unwrap();
    let events = store.model_events().await.unwrap();
    let summary: Vec<(&str, &str, i64)> =
        events.iter().map(|entry| (entry.action.as_str(), entry.actor.as_str(), entry.seq)).collect();
    assert_eq!(
        summary,
        [
            ("model_promoted", "test-admin", promoted.audit_seq),
            ("model_rolled_back", "test-admin", rolled_back.audit_seq)
        ]
    );
    assert!(events[0].reason.contains("ranks the last day's pranks better") && events[0].reason.contains("ROC-AUC"));
    assert!(events[1].reason.contains("operators report odd badges"));
    assert!(matches!(store.verify_audit().await.unwrap(), saring::cases::audit::Verification::Intact { .. }));
    harness.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_challenger_that_ranks_worse_is_not_promoted_and_nothing_changes() {
    let (champion_path, challenger_path, database_url, harness) = start_for_promotion("refuse-promotion").await;
    let mut admin = harness.models(Role::Admin);
    // Misuse is what the champion ranks highest: the challenger, ranking the other way, is worse.
    score_and_label(&harness, "worse", 60, |likelihood, median| likelihood > median).await;
    let before_champion = std::fs::read(&champion_path).unwrap();
    let refused = admin
        .promote_challenger(proto::PromoteChallengerRequest { reason: "try it".into(), window: String::new() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("does not beat") && refused.message().contains("ROC-AUC"),
        "{}",
        refused.message()
    );
    let status = admin.get_model_status(proto::ModelStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.champion.unwrap().model_version, "inverted-champion");
    assert_eq!(status.challenger.unwrap().model_version, "upright-challenger");
    assert_eq!(std::fs::read(&champion_path).unwrap(), before_champion);
    assert!(challenger_path.exists());
    assert!(!saring::modelops::promotion::previous_path(&champion_path).exists());
    // Nothing to roll back to either, and nothing was audited.
    let refused = admin
        .rollback_champion(proto::RollbackChampionRequest { reason: "nothing to go back to".into() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let store = saring::cases::CaseStore::connect(&database_url).await.unwrap();
    assert!(store.model_events().await.unwrap().is_empty());
    harness.server.stop().await.unwrap();
}

#[tokio::test]
async fn free_form_region_suffixes_cannot_blow_up_the_per_region_reports() {
    let harness = crate::common::start().await;
    let mut routing = harness.screening(Role::Routing);
    let extra = 40;
    for index in 0..saring::regions::MAX_TRACKED_REGIONS + extra {
        let contact = proto::ContactRequest {
            region: format!("jatim.d{index}"),
            ..sample_contact(&format!("regions-{index}"), Some("081234567321"))
        };
        routing.score_contact(contact).await.unwrap();
    }
    let drift = harness.models(Role::Operator).get_drift(proto::DriftRequest::default()).await.unwrap().into_inner();
    let regions: Vec<&str> = drift.regions.iter().map(|region| region.region.as_str()).collect();
    // "*", the first codes, and the province the rest count under.
    assert_eq!(regions.len(), saring::regions::MAX_TRACKED_REGIONS + 2, "{}", regions.len());
    let province = drift.regions.iter().find(|region| region.region == "jatim").expect("the province bucket");
    assert_eq!(province.current.as_ref().unwrap().contacts, extra as u64);
    harness.server.stop().await.unwrap();
}
