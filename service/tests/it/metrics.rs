//! `/metrics` on the admin port, scraped from the real binary after real gRPC traffic: every documented family
//! is there, and the numbers are the calls that were made.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use saring::auth::Role;
use tonic::Code;

use crate::common::process::{unique_prefix, ClosedPort, SaringProcess};
use crate::common::{connect, prank_outcome, sample_contact, screening, Bearer};

/// One scrape: `name{labels}` → value, and the raw text.
struct Scrape {
    samples: HashMap<String, f64>,
    text: String,
}

impl Scrape {
    fn take(console: &str) -> Scrape {
        let address = console.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/openmetrics-text"), "{head}");
        // Chunked or not, every sample line is whole; chunk-size lines never parse as samples.
        let mut samples = HashMap::new();
        for line in body.lines().filter(|line| !line.starts_with('#') && !line.is_empty()) {
            if let Some((name, value)) = line.rsplit_once(' ') {
                if let Ok(value) = value.parse::<f64>() {
                    samples.insert(name.to_owned(), value);
                }
            }
        }
        assert!(body.contains("# EOF"), "a complete OpenMetrics exposition");
        Scrape { samples, text: body.to_owned() }
    }

    /// The value of the sample named exactly so (0 when absent: a counter never incremented is not exported).
    fn value(&self, sample: &str) -> f64 {
        self.samples.get(sample).copied().unwrap_or(0.0)
    }

    /// The sum over every sample of `name` whose labels include all of `labels`.
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.samples
            .iter()
            .filter(|(sample, _)| {
                sample.split('{').next() == Some(name) && labels.iter().all(|label| sample.contains(label))
            })
            .map(|(_, value)| value)
            .sum()
    }
}

fn rpc(method: &str, code: &str) -> String {
    format!(
        "saring_grpc_server_handling_seconds_count{{grpc_service=\"saring.v1.Screening\",grpc_method=\"{method}\",\
         grpc_code=\"{code}\"}}"
    )
}

#[tokio::test]
async fn a_scrape_counts_calls_by_method_and_code_scores_by_band_and_the_state_behind_them() {
    let saring = SaringProcess::spawn(&[], &[("SARING__MODEL__QUALITY_REFRESH_S", "1")]);
    let console = saring.console_url();
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));

    let mut model_version = String::new();
    for index in 0..3 {
        let contact = sample_contact(&format!("metrics-{index}"), Some("081234567321"));
        model_version = routing.score_contact(contact).await.unwrap().into_inner().model_version;
    }
    let mut bad = sample_contact("metrics-bad", Some("081234567321"));
    bad.region = String::new();
    assert_eq!(routing.score_contact(bad).await.unwrap_err().code(), Code::InvalidArgument);
    let mut anonymous = screening(&channel, Bearer::none());
    let refused = anonymous.score_contact(sample_contact("metrics-anon", None)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    routing.record_outcome(prank_outcome("metrics-0", None)).await.unwrap();
    routing.record_outcome(prank_outcome("metrics-1", None)).await.unwrap();

    let scrape = Scrape::take(&console);
    assert_eq!(scrape.value(&rpc("ScoreContact", "OK")), 3.0, "{}", scrape.text);
    assert_eq!(scrape.value(&rpc("ScoreContact", "INVALID_ARGUMENT")), 1.0);
    assert_eq!(scrape.value(&rpc("ScoreContact", "UNAUTHENTICATED")), 1.0);
    assert_eq!(scrape.value(&rpc("RecordOutcome", "OK")), 2.0);
    // Every handled call lands in a latency bucket; +Inf holds them all.
    assert_eq!(
        scrape.sum("saring_grpc_server_handling_seconds_bucket", &["grpc_method=\"ScoreContact\"", "le=\"+Inf\""]),
        5.0
    );
    assert!(scrape.value(&rpc("ScoreContact", "OK").replace("_count{", "_sum{")) > 0.0);

    // Scores by band and province: three valid contacts from NTT.
    assert_eq!(scrape.sum("saring_score_contacts_total", &["province=\"ntt\""]), 3.0);
    assert_eq!(scrape.sum("saring_score_contacts_total", &[]), 3.0);
    assert_eq!(scrape.sum("saring_degraded_answers_total", &[]), 0.0);
    // The history store was read once per valid contact and written once per outcome.
    assert_eq!(
        scrape.sum("saring_history_store_operation_seconds_count", &["operation=\"load\"", "outcome=\"ok\""]),
        3.0
    );
    assert_eq!(
        scrape.sum("saring_history_store_operation_seconds_count", &["operation=\"record\"", "outcome=\"ok\""]),
        2.0
    );
    assert_eq!(scrape.value(&format!("saring_model_info{{slot=\"champion\",version=\"{model_version}\"}}")), 1.0);
    assert_eq!(scrape.value("saring_journal_depth"), 0.0);
    // Live quality refreshes every second here: the two labelled outcomes show up, far too few to judge the model.
    let mut quality = Scrape::take(&console);
    for _ in 0..50 {
        if quality.value("saring_quality_labelled_contacts{window=\"day\"}") == 2.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        quality = Scrape::take(&console);
    }
    assert_eq!(quality.value("saring_quality_labelled_contacts{window=\"day\"}"), 2.0, "{}", quality.text);
    assert!(
        !quality.samples.keys().any(|sample| sample.starts_with("saring_quality_champion_below_naive")),
        "absent while too few are labelled: {}",
        quality.text
    );
    assert_eq!(quality.sum("saring_quality_roc_auc", &[]), 0.0, "no figure from two labels");
    assert_eq!(scrape.value("saring_case_store_up"), 1.0);
    assert!(scrape.value("saring_process_resident_memory_bytes") > 0.0);
    assert_eq!(scrape.sum("saring_build_info", &[]), 1.0);
    // Two confirmed pranks from one number opened a case on the ladder (the default warning threshold).
    assert_eq!(scrape.sum("saring_cases", &[]), 1.0, "{}", scrape.text);

    // The first scrape started a verification of the audit chain; a later one reports it.
    let mut verified = scrape;
    for _ in 0..100 {
        if verified.value("saring_audit_verified_timestamp_seconds") > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        verified = Scrape::take(&console);
    }
    assert_eq!(verified.value("saring_audit_chain_intact"), 1.0, "{}", verified.text);
    assert!(verified.value("saring_audit_entries") >= 1.0);

    assert_documented(&verified.text);

    // No caller ever becomes a label.
    for form in ["081234567321", "6281234567321", "metrics-0"] {
        assert!(!verified.text.contains(form), "{form} in the metrics");
    }
    drop(saring);
}

#[tokio::test]
async fn a_scrape_shows_degraded_answers_store_errors_and_the_journal_during_a_redis_outage() {
    let scratch = std::env::temp_dir().join(unique_prefix("metrics-journal").replace(':', "-"));
    let journal = scratch.join("outcomes.journal");
    // A Redis that is not there: its port is held closed for the whole test.
    let closed = ClosedPort::new();
    let store = format!("redis://127.0.0.1:{}/0", closed.port);
    let saring = SaringProcess::spawn(
        &["--history", &store],
        &[
            ("SARING__PRIVACY__HASH_SECRET", "metrics-test-secret-0123456789"),
            ("SARING__HISTORY__JOURNAL_PATH", journal.to_str().unwrap()),
        ],
    );
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));
    let reply = routing.score_contact(sample_contact("outage-1", Some("081234567322"))).await.unwrap().into_inner();
    assert!(reply.degraded);
    routing.record_outcome(prank_outcome("outage-1", None)).await.unwrap();

    let scrape = Scrape::take(&saring.console_url());
    let degraded = scrape.sum("saring_degraded_answers_total", &[]);
    assert_eq!(degraded, 1.0, "{}", scrape.text);
    assert_eq!(
        degraded,
        scrape.sum("saring_degraded_answers_total", &["reason=\"history_unavailable\""])
            + scrape.sum("saring_degraded_answers_total", &["reason=\"history_timeout\""])
    );
    assert_eq!(
        scrape.sum("saring_history_store_operation_seconds_count", &["operation=\"load\""]),
        scrape.sum("saring_history_store_operation_seconds_count", &["operation=\"load\"", "outcome=\"error\""])
            + scrape
                .sum("saring_history_store_operation_seconds_count", &["operation=\"load\"", "outcome=\"timeout\""])
    );
    // The outcome was acknowledged from the journal, where it waits for Redis.
    assert_eq!(scrape.value("saring_journal_depth"), 1.0);
    assert_eq!(scrape.value("saring_journal_appended_total"), 1.0);
    drop(saring);
    let _ = std::fs::remove_dir_all(scratch);
}

/// Every metric family the registry exposes is in docs/metrics.md with its type, and every metric the page lists
/// is exposed: the page cannot drift from the registry. (A counter's family is exposed without `_total`; the page
/// names its sample, with it.)
fn assert_documented(exposition: &str) {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md")).unwrap();
    let mut documented: HashMap<String, String> = HashMap::new();
    for line in page.lines().filter(|line| line.starts_with("| `saring_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        documented.insert(cells[1].trim_matches('`').to_owned(), cells[2].to_owned());
    }
    assert!(documented.len() > 30, "{documented:?}");
    let mut exposed: HashMap<String, String> = HashMap::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let (family, kind) = rest.split_once(' ').unwrap();
        let name = if kind == "counter" { format!("{family}_total") } else { family.to_owned() };
        exposed.insert(name, kind.to_owned());
    }
    let mut problems: Vec<String> = exposed
        .iter()
        .filter(|(name, kind)| documented.get(*name) != Some(*kind))
        .map(|(name, kind)| format!("{name} ({kind}) is exposed: docs/metrics.md must list it so"))
        .collect();
    // Families with labels are exposed from their first series on: these have none in this test's traffic.
    const UNTIL_A_SERIES: [&str; 5] = [
        "saring_degraded_answers_total",
        "saring_quality_roc_auc",
        "saring_quality_pr_auc",
        "saring_quality_calibration_error",
        "saring_quality_champion_below_naive",
    ];
    problems.extend(
        documented
            .keys()
            .filter(|name| !exposed.contains_key(*name) && !UNTIL_A_SERIES.contains(&name.as_str()))
            .map(|name| format!("docs/metrics.md lists {name}, which is not exposed")),
    );
    problems.sort();
    assert!(problems.is_empty(), "{problems:#?}");
}
