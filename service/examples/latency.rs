//! Client-side latency of ScoreContact and RecordOutcome through the real gRPC stack, with the in-memory or the
//! Redis history store: starts saring in-process on 127.0.0.1:0 (server and client share this process's tokio
//! runtime and the machine's cores), then `concurrency` tasks over 4 HTTP/2 connections each send ScoreContact
//! then RecordOutcome for `contacts / concurrency` contacts from `callers` callers, and prints percentiles.
//!
//! `cargo run --release -p saring --example latency -- [memory|redis://127.0.0.1:6379/0] [concurrency] [contacts]`
//! (the full load harness with a ceiling comparison comes with the performance work.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use saring::proto;
use saring::proto::screening_client::ScreeningClient;
use saring::screening::Screener;
use saring::server::RunningServer;
use saring::store::journal::JournaledStore;
use saring::store::{HistoryStore, MemoryStore, RedisSettings, RedisStore};

const CALLERS: usize = 5_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let history = arguments.next().unwrap_or_else(|| "memory".into());
    let concurrency: usize = arguments.next().map(|value| value.parse()).transpose()?.unwrap_or(16);
    let contacts: usize = arguments.next().map(|value| value.parse()).transpose()?.unwrap_or(20_000);
    let model = saring_models::Model::new(saring_models::ModelArtifact::from_json(saring::server::SHIPPED_MODEL)?);
    let hasher = saring::privacy::KeyHasher::new(b"latency-example-secret");
    let budget = Duration::from_millis(5);
    let (score, outcome) = if history == "memory" {
        let store = MemoryStore::new(Duration::from_secs(3600));
        run(Screener::new(store, model, hasher, 200_000, budget), concurrency, contacts).await?
    } else {
        let prefix = format!("saring-latency:{}", std::process::id());
        let redis = RedisStore::new(RedisSettings {
            url: history.clone(),
            prefix: prefix.clone(),
            retention: Duration::from_secs(3600),
            marker_ttl: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(1),
        })?;
        redis.connect().await?;
        let journal = std::env::temp_dir().join(format!("saring-latency-{}.journal", std::process::id()));
        let store = JournaledStore::open(redis, &journal, Duration::from_millis(50))?;
        let result = run(Screener::new(store, model, hasher, 200_000, budget), concurrency, contacts).await?;
        std::fs::remove_file(journal).ok();
        let client = redis::Client::open(history.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut connection).await?;
        for chunk in keys.chunks(1000) {
            let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut connection).await?;
        }
        result
    };
    let store = if history == "memory" { "memory" } else { "redis" };
    println!("store {store}, {concurrency} in flight over 4 connections, {contacts} contacts, {CALLERS} callers");
    println!("{score}");
    println!("{outcome}");
    Ok(())
}

struct Latencies {
    name: &'static str,
    micros: Vec<u64>,
    elapsed: Duration,
    degraded: usize,
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let at =
            |quantile: f64| sorted[((sorted.len() as f64 * quantile) as usize).min(sorted.len() - 1)] as f64 / 1000.0;
        write!(
            formatter,
            "{:<14} p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms  ({} calls, {:.0}/s of this RPC, {} degraded)",
            self.name,
            at(0.50),
            at(0.90),
            at(0.99),
            at(1.0),
            sorted.len(),
            sorted.len() as f64 / self.elapsed.as_secs_f64(),
            self.degraded
        )
    }
}

async fn run<S: HistoryStore>(
    screener: Screener<S>,
    concurrency: usize,
    contacts: usize,
) -> Result<(Latencies, Latencies), Box<dyn std::error::Error>> {
    // Cases in a scratch SQLite file; every RecordOutcome from a known number also reaches the ladder.
    let scratch = std::env::temp_dir().join(format!("saring-latency-{}", std::process::id()));
    let store = saring::cases::CaseStore::connect(&format!("sqlite://{}/cases.db", scratch.display())).await?;
    let escalator = saring::cases::Escalator::new(store, saring_models::ladder::LadderPolicy::default_policy());
    let (auth, tokens) = saring::auth::Authenticator::generate_development();
    let routing =
        tokens.iter().find(|(role, _)| *role == saring::auth::Role::Routing).expect("a routing token").1.clone();
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {routing}").parse()?;
    let app = Arc::new(saring::app::App { screener, escalator, auth });
    let server = RunningServer::start("127.0.0.1:0".parse()?, app).await?;
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels
            .push(tonic::transport::Channel::from_shared(format!("http://{}", server.local_addr))?.connect().await?);
    }
    let started = Instant::now();
    let per_task = contacts / concurrency;
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let bearer = bearer.clone();
        let mut client = ScreeningClient::with_interceptor(
            channels[task % channels.len()].clone(),
            move |mut request: tonic::Request<()>| {
                request.metadata_mut().insert("authorization", bearer.clone());
                Ok(request)
            },
        );
        tasks.push(tokio::spawn(async move {
            let (mut score, mut outcome, mut degraded) = (Vec::new(), Vec::new(), 0);
            let received_at =
                prost_types::Timestamp { seconds: time::OffsetDateTime::now_utc().unix_timestamp() - 60, nanos: 0 };
            for index in 0..per_task {
                let contact_number = task * per_task + index;
                let caller = (contact_number * 7919) % CALLERS;
                let contact = proto::ContactRequest {
                    contact_id: format!("l-{contact_number}"),
                    caller: Some(format!("0813{caller:08}")),
                    channel: proto::Channel::Voice as i32,
                    received_at: Some(received_at),
                    region: "jatim.surabaya".into(),
                    sim_present: true,
                    device_id: None,
                    location: None,
                    language: proto::Language::Unspecified as i32,
                };
                let sent = Instant::now();
                let reply = client.score_contact(contact.clone()).await.expect("ScoreContact answers").into_inner();
                score.push(sent.elapsed().as_micros() as u64);
                degraded += usize::from(reply.degraded);
                let request = proto::Outcome {
                    contact_id: contact.contact_id.clone(),
                    contact: None,
                    answered: true,
                    ring_s: 2.0,
                    talk_s: 30.0,
                    disposition: proto::Disposition::NonEmergency as i32,
                    category: None,
                    operator_id: None,
                };
                let sent = Instant::now();
                client.record_outcome(request).await.expect("RecordOutcome is acknowledged");
                outcome.push(sent.elapsed().as_micros() as u64);
            }
            (score, outcome, degraded)
        }));
    }
    let (mut score, mut outcome, mut degraded) = (Vec::new(), Vec::new(), 0);
    for task in tasks {
        let (task_score, task_outcome, task_degraded) = task.await?;
        score.extend(task_score);
        outcome.extend(task_outcome);
        degraded += task_degraded;
    }
    let elapsed = started.elapsed();
    server.stop().await?;
    std::fs::remove_dir_all(&scratch).ok();
    Ok((
        Latencies { name: "ScoreContact", micros: score, elapsed, degraded },
        Latencies { name: "RecordOutcome", micros: outcome, elapsed, degraded: 0 },
    ))
}
