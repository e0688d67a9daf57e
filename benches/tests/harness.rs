//! The harness's own logic, fast: the ceiling answers, a short closed- and open-loop run against it, and a short
//! ScoreContact + RecordOutcome run against saring in process.

use std::sync::Arc;
use std::time::Duration;

use saring_bench::load::{self, LoadSpec, Stop, Workload};
use saring_bench::mix::Mix;
use saring_bench::report::{BurstSummary, Percentiles, RunSummary};
use saring_bench::schedule::Schedule;

fn small_mix() -> Arc<Mix> {
    Arc::new(Mix::simulated(3, 2, 200))
}

fn spec(workload: Workload, stop: Stop) -> LoadSpec {
    LoadSpec {
        connections: 2,
        concurrency: 4,
        workload,
        stop,
        schedule: None,
        warmup: Duration::ZERO,
        window: Some(Duration::from_millis(100)),
    }
}

#[tokio::test]
async fn the_ceiling_answers_a_closed_loop_run() {
    let (addr, server) = saring_bench::ceiling::spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mix = small_mix();
    assert!(mix.entries.len() > 100 && mix.distinct_callers > 10);
    let result =
        load::run(&addr.to_string(), "any", mix, spec(Workload::ScoreOutcome, Stop::Requests(300)), "t").await.unwrap();
    assert_eq!(result.score.histogram.len(), 300);
    assert_eq!(result.outcome.as_ref().unwrap().histogram.len(), 300);
    assert_eq!(result.score.errors, 0);
    let summary = RunSummary::of("ceiling", None, &result);
    assert!(summary.throughput > 0.0);
    let latency = summary.score.latency;
    assert!(latency.p50_ms <= latency.p90_ms && latency.p90_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
    assert!(summary.text().contains("ScoreContact"));
    server.abort();
}

#[tokio::test]
async fn an_open_loop_run_sends_what_the_schedule_says_and_reports_the_burst() {
    let (addr, server) = saring_bench::ceiling::spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let schedule = Schedule::with_burst(
        200.0,
        Duration::from_millis(900),
        1000.0,
        Duration::from_millis(300),
        Duration::from_millis(300),
    );
    let expected = schedule.total_requests();
    let spec = LoadSpec { schedule: Some(schedule), ..spec(Workload::Score, Stop::After(Duration::ZERO)) };
    let result = load::run(&addr.to_string(), "any", small_mix(), spec, "t").await.unwrap();
    assert_eq!(result.score.histogram.len(), expected);
    assert!(result.timeline.len() >= 8, "{:?}", result.timeline);
    let burst = BurstSummary::of(
        &result,
        Duration::from_millis(100),
        Duration::ZERO,
        Duration::from_millis(300),
        Duration::from_millis(300),
    );
    assert_eq!(burst.during.count, 300);
    assert!(burst.recovery_threshold_ms >= burst.before.p99_ms + 1.0);
    server.abort();
}

#[test]
fn percentiles_come_from_the_histogram() {
    let mut histogram = load::latency_histogram(3);
    for micros in 1..=1000 {
        histogram.record(micros).unwrap();
    }
    let percentiles = Percentiles::of(&histogram);
    assert_eq!(percentiles.count, 1000);
    assert!((percentiles.p50_ms - 0.5).abs() < 0.01, "{percentiles:?}");
    assert!((percentiles.p99_ms - 0.99).abs() < 0.01, "{percentiles:?}");
    assert!((percentiles.max_ms - 1.0).abs() < 0.01, "{percentiles:?}");
}

#[tokio::test]
async fn saring_in_process_scores_and_records_the_mix() {
    use saring::screening::Screener;
    use saring::store::MemoryStore;

    let model =
        saring_models::Model::new(saring_models::ModelArtifact::from_json(saring::server::SHIPPED_MODEL).unwrap());
    let hasher = saring::privacy::KeyHasher::new(b"saring-bench-test-secret");
    let screener =
        Screener::new(MemoryStore::new(Duration::from_secs(600)), model, hasher, 10_000, Duration::from_millis(200));
    let scratch = std::env::temp_dir().join(format!("saring-bench-test-{}", std::process::id()));
    let cases = saring::cases::CaseStore::connect(&format!("sqlite://{}/cases.db", scratch.display())).await.unwrap();
    let escalator = saring::cases::Escalator::new(cases, saring_models::ladder::LadderPolicy::default_policy());
    let (auth, tokens) = saring::auth::Authenticator::generate_development();
    let token = tokens.iter().find(|(role, _)| *role == saring::auth::Role::Routing).unwrap().1.clone();
    let app = Arc::new(saring::app::App { screener, escalator, auth });
    let server = saring::server::RunningServer::start("127.0.0.1:0".parse().unwrap(), app).await.unwrap();
    let addr = server.local_addr.to_string();
    let mix = small_mix();
    assert_eq!(load::preload(&addr, &token, &mix, 4, "pre").await.unwrap(), 0);
    let result = load::run(&addr, &token, mix, spec(Workload::ScoreOutcome, Stop::Requests(200)), "t").await.unwrap();
    assert_eq!((result.score.errors, result.outcome.as_ref().unwrap().errors), (0, 0), "{:?}", result.error_samples);
    assert_eq!(result.score.histogram.len(), 200);
    let refused =
        load::run(&addr, "wrong-token", small_mix(), spec(Workload::Score, Stop::Requests(5)), "t").await.unwrap();
    assert_eq!(refused.score.errors, 5);
    assert!(refused.error_samples[0].contains("Unauthenticated"), "{:?}", refused.error_samples);
    server.stop().await.unwrap();
    std::fs::remove_dir_all(scratch).ok();
}
