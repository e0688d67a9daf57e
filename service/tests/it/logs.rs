//! The log of a whole run, at debug level, carries no personal data and no secret: a number, a device id, a
//! bearer token or the hashing secret never appears in any line, whatever RPC touched them (including ones that
//! failed validation or authentication), while the log still says what happened (contact ids, hashed keys).

use saring::auth::Role;
use saring::proto;
use tonic::Code;

use crate::common::process::SaringProcess;
use crate::common::{connect, escalations, prank_outcome, sample_contact, screening, token, Bearer};

const NUMBER: &str = "0812-3456-7654";
const DEVICE: &str = "handset-imei-356938035643809";
const SECRET: &str = "log-test-hash-secret-5a1e7c";

#[tokio::test]
async fn a_full_run_logs_no_number_device_token_or_secret() {
    let saring =
        SaringProcess::spawn(&[], &[("SARING__LOG__FILTER", "debug"), ("SARING__PRIVACY__HASH_SECRET", SECRET)]);
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));
    let mut operator = screening(&channel, Bearer::of(Role::Operator));
    let mut legal = escalations(&channel, Bearer::of(Role::Legal));

    for (index, form) in ["0812-3456-7654", "+62 812 3456 7654", "6281234567654"].into_iter().enumerate() {
        let contact_id = format!("log-{index}");
        let mut contact = sample_contact(&contact_id, Some(form));
        contact.device_id = Some(DEVICE.to_owned());
        routing.score_contact(contact).await.unwrap();
        routing.record_outcome(prank_outcome(&contact_id, None)).await.unwrap();
    }
    // Refused requests carrying the number: a bad region, a bad number, an unknown token.
    let mut bad = sample_contact("log-bad", Some(NUMBER));
    bad.region = "Nowhere".into();
    assert_eq!(routing.score_contact(bad).await.unwrap_err().code(), Code::InvalidArgument);
    let malformed = sample_contact("log-malformed", Some("0812345676549999999"));
    assert_eq!(routing.score_contact(malformed).await.unwrap_err().code(), Code::InvalidArgument);
    let mut stranger = screening(&channel, Bearer::raw("saring-not-a-token-7d1f"));
    let refused = stranger.score_contact(sample_contact("log-stranger", Some(NUMBER))).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // The operator's profile and the legal team's evidence both carry the raw number back to their readers.
    let profile = operator.get_caller(proto::CallerQuery { caller: NUMBER.into() }).await.unwrap().into_inner();
    assert!(profile.history.is_some_and(|history| history.total_contacts >= 3));
    let cases = legal.list(proto::ListCasesRequest::default()).await.unwrap().into_inner().cases;
    assert!(!cases.is_empty(), "three confirmed pranks opened a case");
    for case in &cases {
        let evidence = legal.get(proto::GetCaseRequest { case_id: case.case_id.clone() }).await.unwrap().into_inner();
        assert!(format!("{evidence:?}").contains("6281234567654"), "legal reads the raw number");
    }

    let (clean, log) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean, "saring exits cleanly on SIGTERM");
    assert!(log.iter().any(|line| line.contains("\"level\":\"DEBUG\"")), "the run logged at debug level");
    assert!(log.iter().any(|line| line.contains("log-0")), "contact ids are logged");
    let mut forbidden = vec!["81234567654".to_owned(), "812 3456 7654".to_owned(), NUMBER.to_owned()];
    forbidden.extend([DEVICE.to_owned(), SECRET.to_owned(), "saring-not-a-token-7d1f".to_owned()]);
    forbidden.extend(Role::ALL.iter().map(|role| token(*role)));
    for line in &log {
        for needle in &forbidden {
            assert!(!line.contains(needle.as_str()), "the log carries {needle:?}: {line}");
        }
    }
}

/// `RUST_LOG` takes precedence over `log.filter`, as in every Rust service; an invalid filter from either is a
/// configuration error naming it (exit 64), never silently replaced by a default.
#[tokio::test]
async fn rust_log_is_honoured_and_an_invalid_filter_is_refused_naming_it() {
    let saring = SaringProcess::spawn(&[], &[("RUST_LOG", "info,saring=debug"), ("SARING__LOG__FILTER", "warn")]);
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));
    routing.score_contact(sample_contact("rust-log-1", Some(NUMBER))).await.unwrap();
    routing.record_outcome(prank_outcome("rust-log-1", None)).await.unwrap();
    drop((routing, channel));
    let (clean, log) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);
    assert!(
        log.iter().any(|line| line.contains("\"level\":\"DEBUG\"") && line.contains("rust-log-1")),
        "RUST_LOG's saring=debug is in force: {log:?}"
    );

    for (variable, value, named) in
        [("SARING__LOG__FILTER", "saring=loud", "log.filter"), ("RUST_LOG", "saring=loud", "RUST_LOG")]
    {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_saring"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named) && stderr.contains("saring=loud"), "{stderr}");
    }
}

/// A call's `traceparent` joins its log lines to the caller's trace: every line inside the call carries the trace
/// id and the contact id, and the reply names the same trace; a call without one starts a new trace.
#[tokio::test]
async fn a_calls_traceparent_is_carried_by_its_log_lines_and_its_reply() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let saring = SaringProcess::spawn(&[], &[("SARING__LOG__FILTER", "info,saring=debug")]);
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));
    fn traced<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01").parse().unwrap());
        request
    }
    let scored = routing.score_contact(traced(sample_contact("trace-1", Some(NUMBER)))).await.unwrap();
    let reply = scored.metadata().get("traceparent").unwrap().to_str().unwrap().to_owned();
    assert!(reply.starts_with(&format!("00-{TRACE}-")) && !reply.contains("00f067aa0ba902b7"), "{reply}");
    routing.record_outcome(traced(prank_outcome("trace-1", None))).await.unwrap();
    let fresh = routing.score_contact(sample_contact("trace-2", Some(NUMBER))).await.unwrap();
    let fresh = fresh.metadata().get("traceparent").unwrap().to_str().unwrap().to_owned();
    assert!(fresh.starts_with("00-") && !fresh.contains(TRACE), "{fresh}");
    drop((routing, channel));
    let (clean, log) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);
    let outcome = log
        .iter()
        .find(|line| line.contains("\"message\":\"outcome\""))
        .unwrap_or_else(|| panic!("the outcome was logged at debug: {log:?}"));
    assert!(outcome.contains(TRACE) && outcome.contains("\"contact_id\":\"trace-1\""), "{outcome}");
}
