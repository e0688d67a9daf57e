//! Every door under the same rules, against the real binary: failed authentication is logged, counted and
//! throttled per peer address at both gRPC and the console's sign-in (a test connects from 127.0.0.2 and
//! 127.0.0.3, loopback addresses of their own, to be other peers); rate buckets belong to each token holder, not
//! to the role; and an outcome (or a decision reason) is refused — or accepted — identically by the gRPC API and the
//! console, naming the field.

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use saring::auth::{token_digest, Role};
use saring::proto;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::process::SaringProcess;
use crate::common::{connect, sample_contact, screening, token, Bearer};

/// A gRPC channel to `url` whose connections come from `source` (a loopback address: another peer).
async fn channel_from(url: &str, source: &str) -> Channel {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(source.parse().unwrap()));
    connector.set_nodelay(true);
    Endpoint::from_shared(url.to_owned()).unwrap().connect_with_connector(connector).await.expect("connects")
}

/// One HTTP/1.1 request to the console from `source`: the response head and body as text.
async fn http_from(console: &str, source: &str, head: &str, body: &str) -> String {
    let address: SocketAddr = console.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    let request = format!(
        "{head}\r\nHost: {address}\r\nOrigin: http://{address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// A console sign-in with `token` from `source`.
async fn sign_in_from(console: &str, source: &str, token: &str) -> String {
    let head = "POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded";
    http_from(console, source, head, &format!("token={token}")).await
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// The retry hint of a throttled call, in both forms.
fn pushback(status: &tonic::Status) -> Duration {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let retry = status.get_details_retry_info().expect("a google.rpc.RetryInfo detail").retry_delay.unwrap();
    let metadata: u64 = status.metadata().get("grpc-retry-pushback-ms").unwrap().to_str().unwrap().parse().unwrap();
    assert_eq!(Duration::from_millis(metadata), retry);
    retry
}

/// The value of `name` in the OpenMetrics text.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn failed_authentication_is_logged_counted_and_throttles_its_peer_address_at_both_doors() {
    let saring = SaringProcess::spawn_configured("[auth.failures]\nmax_failures = 5\nwindow_s = 600\n", &[], &[]);
    let console = saring.console_url();
    let guesser = channel_from(&saring.url(), "127.0.0.2").await;
    let honest = channel_from(&saring.url(), "127.0.0.1").await;
    let contact = || sample_contact("door-1", Some("081234567890"));

    let guesses: Vec<String> = (0..6).map(|attempt| format!("guessed-token-{attempt}-x9q")).collect();
    for guess in &guesses[..5] {
        let refused = screening(&guesser, Bearer::raw(guess)).score_contact(contact()).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    // The address has used its failures: a sixth guess is not looked at, and neither is a good token from there.
    let throttled = screening(&guesser, Bearer::raw(&guesses[5])).score_contact(contact()).await.unwrap_err();
    let left = pushback(&throttled);
    assert!(left > Duration::from_secs(500) && left <= Duration::from_secs(600), "{left:?}");
    let throttled = screening(&guesser, Bearer::of(Role::Operator)).score_contact(contact()).await.unwrap_err();
    pushback(&throttled);
    // Except the routing engine: a score never waits on a limit (its token is a machine's, never typed).
    let scored = screening(&guesser, Bearer::of(Role::Routing)).score_contact(contact()).await.unwrap().into_inner();
    assert!(!scored.degraded, "{:?}", scored.degraded_reasons);
    // Another address is served as before: a good token works, a wrong one is simply unknown.
    screening(&honest, Bearer::of(Role::Operator)).score_contact(contact()).await.unwrap();
    let unknown = screening(&honest, Bearer::raw("another-wrong-one")).score_contact(contact()).await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);

    // The console's sign-in shares the record: the guessing address is refused there too, before its token.
    let refused = sign_in_from(&console, "127.0.0.2", &token(Role::Operator)).await;
    assert!(status_line(&refused).starts_with("HTTP/1.1 429"), "{refused}");
    let retry_after: u64 = header(&refused, "retry-after").expect("a Retry-After").parse().unwrap();
    assert!((500..=600).contains(&retry_after), "{retry_after}");
    assert!(header(&refused, "set-cookie").is_none(), "{refused}");
    // Wrong tokens at the console throttle their own address.
    for _ in 0..5 {
        let wrong = sign_in_from(&console, "127.0.0.3", "console-guess-7hz").await;
        assert!(status_line(&wrong).starts_with("HTTP/1.1 401"), "{wrong}");
    }
    let refused = sign_in_from(&console, "127.0.0.3", &token(Role::Operator)).await;
    assert!(status_line(&refused).starts_with("HTTP/1.1 429"), "{refused}");
    let signed_in = sign_in_from(&console, "127.0.0.1", &token(Role::Operator)).await;
    assert!(status_line(&signed_in).starts_with("HTTP/1.1 303"), "{signed_in}");

    let metrics = body(&http_from(&console, "127.0.0.1", "GET /metrics HTTP/1.1", "").await).to_owned();
    assert_eq!(sample(&metrics, "saring_auth_failures_total{door=\"grpc\"}"), Some(6.0), "{metrics}");
    assert_eq!(sample(&metrics, "saring_auth_failures_total{door=\"console\"}"), Some(5.0), "{metrics}");
    assert_eq!(sample(&metrics, "saring_auth_throttled_total{door=\"grpc\"}"), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, "saring_auth_throttled_total{door=\"console\"}"), Some(2.0), "{metrics}");

    let (_, log) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    let failures: Vec<serde_json::Value> = log
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["fields"]["message"] == "authentication failed")
        .collect();
    let from = |peer: &str, door: &str| {
        failures.iter().filter(|entry| entry["fields"]["peer"] == peer && entry["fields"]["door"] == door).count()
    };
    assert_eq!((from("127.0.0.2", "grpc"), from("127.0.0.1", "grpc"), from("127.0.0.3", "console")), (5, 1, 5));
    for entry in &failures {
        assert_eq!(entry["level"], "WARN", "{entry}");
    }
    // The first guess is recognisable by its fingerprint; no guess is in the log itself.
    let first = &hex::encode(sha2::Sha256::digest(guesses[0].as_bytes()))[..8];
    assert!(failures.iter().any(|entry| entry["fields"]["token_sha256_prefix"] == first), "{failures:?}");
    assert!(log.iter().any(|line| line.contains("the peer is refused until its window ends")));
    for line in &log {
        assert!(!line.contains("guessed-token-") && !line.contains("console-guess-"), "a token in the log: {line}");
    }
}

#[tokio::test]
async fn each_operator_has_a_rate_bucket_of_his_own() {
    let second = "test-token-of-second-operator";
    let extra = format!(
        "[[auth.tokens]]\nname = \"test-operator-2\"\nrole = \"operator\"\nsha256 = \"{}\"\n\
         [limits.operator]\nconcurrency = 64\nrate_per_s = 0.001\nburst = 3\n",
        token_digest(second)
    );
    let saring = SaringProcess::spawn_configured(&extra, &[], &[]);
    let channel = connect(saring.url()).await;
    let query = || proto::CallerQuery { caller: "081234567890".into() };
    let mut first = screening(&channel, Bearer::of(Role::Operator));
    for _ in 0..3 {
        first.get_caller(query()).await.unwrap();
    }
    let shed = first.get_caller(query()).await.unwrap_err();
    assert!(pushback(&shed) > Duration::from_secs(100), "{shed:?}");
    // The other operator's bucket is full: the first one's burst did not use it.
    let mut other = screening(&channel, Bearer::raw(second));
    for _ in 0..3 {
        other.get_caller(query()).await.expect("another holder is not held up");
    }
    assert_eq!(other.get_caller(query()).await.unwrap_err().code(), Code::ResourceExhausted);
    // The refusal names the holder whose rate it is.
    assert!(shed.message().contains("test-operator is over the operator role's rate"), "{shed:?}");
}

/// A signed-in operator's console session: the cookie and the CSRF token.
async fn operator_session(console: &str) -> (String, String) {
    let signed_in = sign_in_from(console, "127.0.0.1", &token(Role::Operator)).await;
    assert!(status_line(&signed_in).starts_with("HTTP/1.1 303"), "{signed_in}");
    let cookie = header(&signed_in, "set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let page = http_from(console, "127.0.0.1", &format!("GET /operator HTTP/1.1\r\nCookie: {cookie}"), "").await;
    let csrf = body(&page).split("<meta name=\"csrf\" content=\"").nth(1).unwrap().split('"').next().unwrap();
    (cookie, csrf.to_owned())
}

/// The console's answer to an outcome: the HTTP status and the JSON body.
async fn console_outcome(
    console: &str,
    (cookie, csrf): &(String, String),
    contact_id: &str,
    form: serde_json::Value,
) -> (u16, serde_json::Value) {
    let head = format!(
        "POST /operator/contacts/{contact_id}/outcome HTTP/1.1\r\nCookie: {cookie}\r\nx-csrf-token: {csrf}\r\n\
         Content-Type: application/json"
    );
    let response = http_from(console, "127.0.0.1", &head, &form.to_string()).await;
    let status = status_line(&response).split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body(&response)).unwrap_or(serde_json::Value::Null))
}

fn grpc_outcome(contact_id: &str, answered: bool, talk_s: f64) -> proto::Outcome {
    proto::Outcome {
        contact_id: contact_id.into(),
        contact: None,
        answered,
        ring_s: 0.0,
        talk_s,
        disposition: proto::Disposition::Prank as i32,
        category: None,
        operator_id: None,
    }
}

#[tokio::test]
async fn an_outcome_is_refused_or_accepted_alike_by_record_outcome_and_the_console() {
    let saring = SaringProcess::spawn(&[], &[]);
    let console = saring.console_url();
    let channel = connect(saring.url()).await;
    let mut operator = screening(&channel, Bearer::of(Role::Operator));
    for contact_id in ["alike-1", "alike-2"] {
        operator.score_contact(sample_contact(contact_id, Some("081355557777"))).await.unwrap();
    }
    let session = operator_session(&console).await;

    let broken = [
        (false, 30.0, vec![("talk_s", "must be 0 when the contact was not answered")]),
        (true, 90_000.0, vec![("talk_s", "must be a number of seconds between 0 and 86400")]),
        (true, -1.0, vec![("talk_s", "must be a number of seconds between 0 and 86400")]),
    ];
    for (answered, talk_s, expected) in broken {
        let refused = operator.record_outcome(grpc_outcome("alike-1", answered, talk_s)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        let grpc: Vec<(String, String)> = refused
            .get_details_bad_request()
            .expect("field violations")
            .field_violations
            .into_iter()
            .map(|violation| (violation.field, violation.description))
            .collect();
        let form = serde_json::json!({ "disposition": "prank", "answered": answered, "talk_s": talk_s });
        let (status, reply) = console_outcome(&console, &session, "alike-1", form).await;
        assert_eq!(status, 400, "{reply}");
        let console_fields: Vec<(String, String)> = reply["fields"]
            .as_array()
            .expect("the console names the fields")
            .iter()
            .map(|violation| {
                (violation["field"].as_str().unwrap().to_owned(), violation["description"].as_str().unwrap().to_owned())
            })
            .collect();
        let expected: Vec<(String, String)> =
            expected.iter().map(|(field, description)| ((*field).to_owned(), (*description).to_owned())).collect();
        assert_eq!(grpc, expected, "gRPC, answered={answered} talk_s={talk_s}");
        assert_eq!(console_fields, expected, "console, answered={answered} talk_s={talk_s}");
        // The console's sentence is in the page's language (Indonesian by default) and names the field.
        let error = reply["error"].as_str().unwrap();
        assert!(error.starts_with("Hasil ditolak") && error.contains("talk_s"), "{error}");
    }

    // The same sound outcome is taken by both doors, and a repeat of one door's outcome at the other is the same
    // outcome (a duplicate), not a conflict.
    let ack = operator.record_outcome(grpc_outcome("alike-1", true, 30.0)).await.unwrap().into_inner();
    assert!(!ack.duplicate);
    let sound = serde_json::json!({ "disposition": "prank", "answered": true, "talk_s": 30.0 });
    let (status, reply) = console_outcome(&console, &session, "alike-2", sound.clone()).await;
    assert_eq!((status, &reply["duplicate"]), (200, &serde_json::Value::Bool(false)), "{reply}");
    let (status, reply) = console_outcome(&console, &session, "alike-1", sound).await;
    assert_eq!((status, &reply["duplicate"]), (200, &serde_json::Value::Bool(true)), "{reply}");
    let repeat = operator.record_outcome(grpc_outcome("alike-2", true, 30.0)).await.unwrap().into_inner();
    assert!(repeat.duplicate);
}

#[tokio::test]
async fn a_reason_is_refused_alike_by_escalations_and_the_console() {
    let saring = SaringProcess::spawn(&[], &[]);
    let console = saring.console_url();
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));
    crate::ladder::prank(&mut routing, "reason-1", "0812-3400-0777", 2.0).await;
    let warning = crate::ladder::prank(&mut routing, "reason-2", "0812-3400-0777", 1.5).await.open_case.unwrap();
    let mut legal = crate::common::escalations(&channel, Bearer::of(Role::Legal));

    // A control character in a reason: INVALID_ARGUMENT on `reason` through gRPC, …
    let revert = proto::RevertRequest {
        case_id: warning.case_id.clone(),
        version: warning.version,
        reason: "appeal\u{7}granted".into(),
    };
    let refused = legal.revert(revert).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let violations = refused.get_details_bad_request().unwrap().field_violations;
    assert_eq!(
        (violations[0].field.as_str(), violations[0].description.as_str()),
        ("reason", "contains control characters")
    );
    // … and the same rule's words on the console's case page, which changes nothing either.
    let signed_in = sign_in_from(&console, "127.0.0.1", &token(Role::Legal)).await;
    let cookie = header(&signed_in, "set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let path = format!("/legal/cases/{}", warning.case_id);
    let page = http_from(&console, "127.0.0.1", &format!("GET {path} HTTP/1.1\r\nCookie: {cookie}"), "").await;
    let csrf =
        body(&page).split("<meta name=\"csrf\" content=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let head =
        format!("POST {path}/revert HTTP/1.1\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded");
    let form = format!("csrf={csrf}&version={}&reason=appeal%07granted", warning.version);
    let page = http_from(&console, "127.0.0.1", &head, &form).await;
    assert!(page.contains("class=\"error\" id=\"notice\"") && page.contains("contains control characters"), "{page}");
    let case = legal.get(proto::GetCaseRequest { case_id: warning.case_id.clone() }).await.unwrap().into_inner();
    let summary = case.summary.expect("the case's summary");
    assert_eq!((summary.state, summary.version), (warning.state, warning.version), "nothing changed");
}
