//! Every RPC refuses the roles that must not call it: a missing or unknown token is UNAUTHENTICATED, a token of
//! another role PERMISSION_DENIED. Authorisation comes before validation, so empty requests are enough.

use std::collections::BTreeSet;

use saring::auth::Role;
use saring::proto;
use tonic::Code;

use crate::common::{escalations, models, privacy, screening, start, Bearer};

/// The RPCs that touch callers or cases.
const CALLER_RPCS: [&str; 18] = [
    "ScoreContact",
    "RecordOutcome",
    "CorrectOutcome",
    "GetCaller",
    "WatchScores",
    "List",
    "Get",
    "Decide",
    "ListDeliveries",
    "Claim",
    "ReleaseClaim",
    "RecordAction",
    "Revert",
    "Watch",
    "Access",
    "Erase",
    "ReleaseHold",
    "MarkReassigned",
];

/// The RPCs about the models.
const MODEL_RPCS: [&str; 6] =
    ["GetModelCard", "GetModelStatus", "ReloadModel", "GetDrift", "PromoteChallenger", "RollbackChampion"];

/// Who may call what.
fn allowed(rpc: &str) -> &'static [Role] {
    match rpc {
        "ScoreContact" | "RecordOutcome" | "CorrectOutcome" => &[Role::Routing, Role::Operator],
        "GetCaller" | "WatchScores" => &[Role::Operator],
        "GetModelCard" => &[Role::Operator, Role::Legal, Role::Admin],
        "GetModelStatus" | "GetDrift" => &[Role::Operator, Role::Admin],
        "ReloadModel" | "PromoteChallenger" | "RollbackChampion" => &[Role::Admin],
        "List" | "Get" | "Decide" | "Revert" => &[Role::Legal],
        "ListDeliveries" | "Claim" | "ReleaseClaim" | "RecordAction" => &[Role::Dispatch],
        "Watch" => &[Role::Dispatch, Role::Legal],
        "Access" | "Erase" | "ReleaseHold" | "MarkReassigned" => &[Role::Legal],
        _ => unreachable!(),
    }
}

async fn call(channel: &tonic::transport::Channel, bearer: Bearer, rpc: &str) -> Code {
    let mut screening = screening(channel, bearer.clone());
    let mut escalations = escalations(channel, bearer.clone());
    let mut models = models(channel, bearer.clone());
    let mut privacy = privacy(channel, bearer);
    let status = match rpc {
        "ScoreContact" => screening.score_contact(proto::ContactRequest::default()).await.err(),
        "RecordOutcome" => screening.record_outcome(proto::Outcome::default()).await.err(),
        "CorrectOutcome" => screening.correct_outcome(proto::OutcomeCorrection::default()).await.err(),
        "GetCaller" => screening.get_caller(proto::CallerQuery::default()).await.err(),
        "WatchScores" => screening.watch_scores(proto::WatchScoresRequest::default()).await.err(),
        "GetModelCard" => models.get_model_card(proto::ModelCardRequest::default()).await.err(),
        "GetModelStatus" => models.get_model_status(proto::ModelStatusRequest::default()).await.err(),
        "ReloadModel" => models.reload_model(proto::ReloadModelRequest::default()).await.err(),
        "GetDrift" => models.get_drift(proto::DriftRequest::default()).await.err(),
        "PromoteChallenger" => models.promote_challenger(proto::PromoteChallengerRequest::default()).await.err(),
        "RollbackChampion" => models.rollback_champion(proto::RollbackChampionRequest::default()).await.err(),
        "List" => escalations.list(proto::ListCasesRequest::default()).await.err(),
        "Get" => escalations.get(proto::GetCaseRequest::default()).await.err(),
        "Decide" => escalations.decide(proto::DecideRequest::default()).await.err(),
        "ListDeliveries" => escalations.list_deliveries(proto::ListDeliveriesRequest::default()).await.err(),
        "Claim" => escalations.claim(proto::ClaimRequest::default()).await.err(),
        "ReleaseClaim" => escalations.release_claim(proto::ReleaseClaimRequest::default()).await.err(),
        "RecordAction" => escalations.record_action(proto::RecordActionRequest::default()).await.err(),
        "Revert" => escalations.revert(proto::RevertRequest::default()).await.err(),
        "Watch" => escalations.watch(proto::WatchCasesRequest::default()).await.err(),
        "Access" => privacy.access(proto::AccessRequest::default()).await.err(),
        "Erase" => privacy.erase(proto::EraseRequest::default()).await.err(),
        "ReleaseHold" => privacy.release_hold(proto::ReleaseHoldRequest::default()).await.err(),
        "MarkReassigned" => privacy.mark_reassigned(proto::MarkReassignedRequest::default()).await.err(),
        _ => unreachable!(),
    };
    status.map_or(Code::Ok, |status| status.code())
}

#[tokio::test]
async fn each_rpc_refuses_the_roles_that_must_not_call_it() {
    let harness = start().await;
    let mut refused = BTreeSet::new();
    for rpc in CALLER_RPCS.into_iter().chain(MODEL_RPCS) {
        assert_eq!(call(&harness.channel, Bearer::none(), rpc).await, Code::Unauthenticated, "{rpc} without a token");
        assert_eq!(
            call(&harness.channel, Bearer::raw("not-a-configured-token"), rpc).await,
            Code::Unauthenticated,
            "{rpc} with an unknown token"
        );
        for role in Role::ALL {
            let code = call(&harness.channel, Bearer::of(role), rpc).await;
            if allowed(rpc).contains(&role) {
                // Past authorisation: the empty request is judged on its content (or, for Watch, streams; a
                // reload with no model file configured is a failed precondition).
                assert!(
                    matches!(code, Code::InvalidArgument | Code::Ok | Code::FailedPrecondition),
                    "{rpc} as {role}: {code:?}"
                );
            } else {
                assert_eq!(code, Code::PermissionDenied, "{rpc} as {role}");
                refused.insert((rpc, role.as_str()));
            }
        }
    }
    // The admin role reads no caller data and decides nothing; only legal reads evidence; routing cannot reload.
    assert!(CALLER_RPCS.iter().all(|rpc| refused.contains(&(*rpc, "admin"))));
    assert!(refused.contains(&("ReloadModel", "operator")) && refused.contains(&("GetDrift", "routing")));
    assert!(refused.contains(&("PromoteChallenger", "operator")) && refused.contains(&("RollbackChampion", "legal")));
    assert!(refused.contains(&("Get", "operator")) && refused.contains(&("Get", "dispatch")));
    assert!(refused.contains(&("GetCaller", "routing")));
    assert!(["Access", "Erase", "ReleaseHold"].iter().all(|rpc| refused.contains(&(*rpc, "operator"))));
    harness.server.stop().await.unwrap();
}

#[test]
fn development_mode_keeps_its_tokens_out_of_the_log_and_does_not_run_open() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let scratch = std::env::temp_dir().join(crate::common::process::unique_prefix("devmode").replace(':', "-"));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_saring"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(&scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok) {
        let serving = line.contains("saring is serving");
        log.push(line);
        if serving {
            break;
        }
    }
    child.kill().ok();
    child.wait().ok();
    // Standard error is a pipe here, as under a service manager: the tokens are not in it but in a private file.
    assert!(log.iter().all(|line| !line.contains("saring-dev-")), "a token reached the log: {log:?}");
    assert!(log.iter().any(|line| line.contains("saring-data/development-tokens")), "{log:?}");
    let file = scratch.join("saring-data/development-tokens");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    let mut tokens = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [role, token] = words[..] {
            if token.starts_with("saring-dev-") {
                tokens.push((role.to_owned(), token.to_owned()));
            }
        }
    }
    let roles: Vec<&str> = tokens.iter().map(|(role, _)| role.as_str()).collect();
    assert_eq!(roles, ["routing", "operator", "legal", "dispatch", "admin"]);
    assert!(scratch.join("saring-data/cases.db").exists(), "the embedded case database lives under the data directory");
    std::fs::remove_dir_all(&scratch).ok();
}

/// `--dev-tokens-file`: development tokens generated at the first start are kept (mode 0600) and the same ones
/// work after a restart; none reaches the log.
#[tokio::test]
async fn pinned_development_tokens_survive_a_restart() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let scratch = std::env::temp_dir().join(crate::common::process::unique_prefix("devpin").replace(':', "-"));
    std::fs::create_dir_all(&scratch).unwrap();
    let file = scratch.join("dev-tokens");
    let run = |tokens_file: &std::path::Path| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_saring"))
            .args(["serve", "--listen", "127.0.0.1:0", "--console-listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--dev-tokens-file")
            .arg(tokens_file)
            .current_dir(&scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The log is read to its end on a thread of its own: a closed pipe would fail the server's log writes.
        let (lines, received) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut log = Vec::new();
        let mut address = None;
        while let Ok(line) = received.recv_timeout(std::time::Duration::from_secs(30)) {
            if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(local) = entry["fields"]["local_addr"].as_str() {
                    address = Some(local.to_owned());
                }
            }
            let serving = line.contains("saring is serving");
            log.push(line);
            if serving {
                break;
            }
        }
        (child, address.expect("saring logs its address"), log)
    };
    let (mut first, _, log) = run(&file);
    first.kill().ok();
    first.wait().ok();
    assert!(log.iter().all(|line| !line.contains("saring-dev-")), "a token reached the log: {log:?}");
    assert!(log.iter().any(|line| line.contains("generated and kept")), "{log:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let kept = std::fs::read_to_string(&file).unwrap();
    let operator =
        kept.lines().find_map(|line| line.strip_prefix("operator ")).expect("an operator token in the file").to_owned();

    let (mut second, address, log) = run(&file);
    assert!(log.iter().any(|line| line.contains("tokens kept in the file")), "{log:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), kept, "the file is read, not rewritten");
    let channel = crate::common::connect(format!("http://{address}")).await;
    let card = models(&channel, Bearer::raw(&operator)).get_model_card(proto::ModelCardRequest::default()).await;
    assert!(card.is_ok(), "the kept operator token works after the restart: {card:?}");
    let stranger = models(&channel, Bearer::raw("saring-dev-operator-0000"))
        .get_model_card(proto::ModelCardRequest::default())
        .await;
    assert_eq!(stranger.unwrap_err().code(), Code::Unauthenticated);
    second.kill().ok();
    second.wait().ok();

    // A file that is not a token list is refused with the key named, exit 73.
    let broken = scratch.join("broken-tokens");
    std::fs::write(&broken, "operator short\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_saring"))
        .args(["serve", "--listen", "127.0.0.1:0", "--dev-tokens-file"])
        .arg(&broken)
        .current_dir(&scratch)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(73));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth.development_tokens_file") && stderr.contains("line 1"), "{stderr}");
    std::fs::remove_dir_all(&scratch).ok();
}
