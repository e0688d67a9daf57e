//! Health, reflection, refusing a mismatched model, invalid config, and graceful shutdown of the real binary.

use std::process::Command;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

use crate::common::process::SaringProcess;
use crate::common::start;

const SCREENING: &str = "saring.v1.Screening";

#[tokio::test]
async fn health_and_reflection_answer() {
    let harness = start().await;
    let mut health = HealthClient::new(harness.channel.clone());
    // The server as a whole ("") and each of its services.
    for service in ["", SCREENING, "saring.v1.Escalations", "saring.v1.Models"] {
        let status = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(status.status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(harness.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let response = responses.message().await.unwrap().expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list, got {:?}", response.message_response);
    };
    let names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    assert!(names.contains(&SCREENING.to_owned()), "{names:?}");
    assert!(names.contains(&"saring.v1.Escalations".to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");
    harness.server.stop().await.unwrap();
}

fn saring() -> Command {
    Command::new(env!("CARGO_BIN_EXE_saring"))
}

#[test]
fn a_model_trained_on_another_schema_is_refused_with_exit_code_65() {
    let directory = std::env::temp_dir().join(format!("saring-schema-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let mut artifact: serde_json::Value = serde_json::from_str(saring::server::SHIPPED_MODEL).unwrap();
    artifact["schema"]["fingerprint"] = "0123456789abcdef".into();
    let path = directory.join("other-schema.json");
    std::fs::write(&path, artifact.to_string()).unwrap();
    let output = saring().args(["serve", "--listen", "127.0.0.1:0", "--model"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("feature schema 0123456789abcdef"), "{stderr}");
    std::fs::remove_dir_all(directory).ok();
}

#[test]
fn invalid_configuration_exits_64_naming_the_key() {
    let output =
        saring().args(["serve", "--listen", "127.0.0.1:0"]).env("SARING__HISTORY__BUDGET_MS", "0").output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("history.budget_ms"));
}

#[test]
fn plaintext_off_loopback_exits_64_naming_the_key_unless_allowed() {
    let output = saring().args(["serve", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.listen") && stderr.contains("server.allow_plaintext"), "{stderr}");

    let output = saring().args(["serve", "--listen", "127.0.0.1:0", "--console-listen", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("console.listen") && stderr.contains("console.allow_plaintext"), "{stderr}");
}

#[test]
fn an_invalid_ladder_policy_exits_64_naming_the_key() {
    let directory = std::env::temp_dir().join(format!("saring-ladder-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let policy =
        saring_models::ladder::DEFAULT_POLICY.replacen("counts = [\"prank\", \"abusive\"]", "counts = [\"silent\"]", 1);
    let path = directory.join("ladder.toml");
    std::fs::write(&path, policy).unwrap();
    let output = saring().args(["serve", "--listen", "127.0.0.1:0", "--ladder"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("rungs.warning.counts"), "{stderr}");
    std::fs::remove_dir_all(directory).ok();
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let saring = SaringProcess::spawn(&[], &[]);
    let channel = tonic::transport::Channel::from_shared(saring.url()).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    let status = health.check(HealthCheckRequest { service: SCREENING.into() }).await.unwrap().into_inner();
    assert_eq!(status.status, ServingStatus::Serving as i32);

    let (clean, log) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean, "{log:?}");
    assert!(log.iter().any(|line| line.contains("received SIGTERM")), "{log:?}");
    assert!(log.iter().any(|line| line.contains("saring stopped")), "{log:?}");
}

/// A SIGTERM the moment the service has logged its address (an orchestrator stopping a pod that just started) is
/// a clean shutdown: its handlers are installed before it serves, so the signal's default action never kills it.
#[test]
fn a_sigterm_right_after_start_up_is_a_clean_shutdown() {
    for _ in 0..3 {
        let saring = SaringProcess::spawn(&[], &[]);
        let (clean, log) = saring.terminate();
        assert!(clean, "{log:?}");
        assert!(log.iter().any(|line| line.contains("saring stopped")), "{log:?}");
    }
}

#[test]
fn version_names_the_commit_and_the_shipped_model() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_saring")).arg("--version").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let shipped = saring_models::ModelArtifact::from_json(saring::server::SHIPPED_MODEL).unwrap();
    assert!(text.contains(&format!("shipped model {}", shipped.model_version)), "{text}");
    let head = std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output();
    if let Some(head) = head.ok().filter(|head| head.status.success()) {
        let commit = String::from_utf8_lossy(&head.stdout).trim().to_owned();
        assert!(text.contains(&format!("commit {commit}")), "{text} should name {commit}");
    }
}
