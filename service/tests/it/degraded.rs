//! Fail open on reads, fail closed on writes: a broken or slow history store degrades ScoreContact (it still
//! answers, fast) and makes RecordOutcome refuse with UNAVAILABLE instead of acknowledging what it did not store.

use std::time::Duration;

use saring::privacy::{HistoryKey, KeyHasher};
use saring::proto;
use saring::screening::Screener;
use saring::server::RunningServer;
use saring::store::{Corrected, DispositionChange, Histories, HistoryStore, Recorded, StoreError};
use saring_models::{HistoryEvent, Model, ModelArtifact};
use tonic::Code;

use crate::common::{app_with, connect, prank_outcome, sample_contact, screening, sqlite_url, Bearer, Screening};

/// A store that cannot be reached, as when Redis is down.
struct UnreachableStore;

impl HistoryStore for UnreachableStore {
    async fn load(&self, _: Option<&HistoryKey>, _: Option<&HistoryKey>) -> Result<Histories, StoreError> {
        Err(StoreError("connection refused".into()))
    }

    async fn record(
        &self,
        _: &str,
        _: Option<&HistoryKey>,
        _: Option<&HistoryKey>,
        _: &HistoryEvent,
    ) -> Result<Recorded, StoreError> {
        Err(StoreError("connection refused".into()))
    }

    async fn correct(
        &self,
        _: &str,
        _: Option<&HistoryKey>,
        _: Option<&HistoryKey>,
        _: &DispositionChange,
    ) -> Result<Corrected, StoreError> {
        Err(StoreError("connection refused".into()))
    }
}

/// A store that answers reads far later than the budget, as when Redis stalls.
struct StalledStore;

impl HistoryStore for StalledStore {
    async fn load(&self, _: Option<&HistoryKey>, _: Option<&HistoryKey>) -> Result<Histories, StoreError> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(Histories::default())
    }

    async fn record(
        &self,
        _: &str,
        _: Option<&HistoryKey>,
        _: Option<&HistoryKey>,
        _: &HistoryEvent,
    ) -> Result<Recorded, StoreError> {
        Ok(Recorded::Applied)
    }

    async fn correct(
        &self,
        _: &str,
        _: Option<&HistoryKey>,
        _: Option<&HistoryKey>,
        _: &DispositionChange,
    ) -> Result<Corrected, StoreError> {
        Ok(Corrected::Applied)
    }
}

async fn serve<S: HistoryStore>(store: S) -> (RunningServer, Screening) {
    let model = Model::new(ModelArtifact::from_json(saring::server::SHIPPED_MODEL).unwrap());
    let screener = Screener::new(store, model, KeyHasher::new(b"degraded-test-secret"), 100, Duration::from_millis(20));
    let app = app_with(screener, &sqlite_url("degraded")).await;
    let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), app).await.unwrap();
    let channel = connect(format!("http://{}", server.local_addr)).await;
    (server, screening(&channel, Bearer::of(saring::auth::Role::Routing)))
}

#[tokio::test]
async fn an_unreachable_store_degrades_scores_and_refuses_outcomes() {
    let (server, mut client) = serve(UnreachableStore).await;
    let reply = client.score_contact(sample_contact("d-1", Some("081234567890"))).await.unwrap().into_inner();
    assert!(reply.degraded);
    assert_eq!(reply.degraded_reasons, vec!["history_unavailable"]);
    assert!((0.0..=1.0).contains(&reply.prank_likelihood));
    assert_ne!(reply.band, proto::Band::Unspecified as i32);
    assert!(reply.caller_history.is_none(), "no history summary is invented");

    let outcome = prank_outcome("d-1", None);
    let status = client.record_outcome(outcome).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_stalled_store_is_not_waited_for() {
    let (server, mut client) = serve(StalledStore).await;
    let started = std::time::Instant::now();
    let reply = client.score_contact(sample_contact("d-2", Some("081234567890"))).await.unwrap().into_inner();
    assert!(reply.degraded);
    assert_eq!(reply.degraded_reasons, vec!["history_timeout"]);
    // Not a latency assertion: only that the 30-second stall was not waited out.
    assert!(started.elapsed() < Duration::from_secs(25));
    server.stop().await.unwrap();
}
