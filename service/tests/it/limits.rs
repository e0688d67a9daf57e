//! Limits on the real wire: oversized messages are refused, a role over its concurrency or rate is shed with a
//! retry hint — except the routing engine's ScoreContact, which degrades — and deadlines end calls with
//! DEADLINE_EXCEEDED instead of letting them hang. Nothing here measures speed: codes, details, and that what was
//! refused and retried is recorded once.

use std::sync::Arc;
use std::time::Duration;

use saring::auth::Role;
use saring::privacy::{HistoryKey, KeyHasher};
use saring::proto;
use saring::screening::Screener;
use saring::server::limits::{Limits, LimitsSettings, RoleLimits};
use saring::server::{RunningServer, Transport};
use saring::store::{Corrected, DispositionChange, Histories, HistoryStore, MemoryStore, Recorded, StoreError};
use saring_models::{HistoryEvent, Model, ModelArtifact};
use tokio::sync::{mpsc, watch};
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::{
    app_with, authenticator, connect, prank_outcome, sample_contact, screening, sqlite_url, Bearer, Screening,
};

/// A memory store whose reads wait at a gate the test opens, saying when one is waiting and when a waiting read
/// was abandoned (its call dropped by the server).
struct GatedStore {
    inner: MemoryStore,
    open: watch::Receiver<bool>,
    waiting: mpsc::UnboundedSender<()>,
    abandoned: Option<mpsc::UnboundedSender<()>>,
}

/// Says "abandoned" when dropped while still armed.
struct Abandoned(Option<mpsc::UnboundedSender<()>>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(abandoned) = self.0.take() {
            let _ = abandoned.send(());
        }
    }
}

impl HistoryStore for GatedStore {
    async fn load(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Result<Histories, StoreError> {
        let mut open = self.open.clone();
        let closed = !*open.borrow_and_update();
        if closed {
            let mut abandoned = Abandoned(self.abandoned.clone());
            let _ = self.waiting.send(());
            let _ = open.wait_for(|open| *open).await;
            abandoned.0 = None;
        }
        self.inner.load(caller, device).await
    }

    async fn record(
        &self,
        contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        event: &HistoryEvent,
    ) -> Result<Recorded, StoreError> {
        self.inner.record(contact_id, caller, device, event).await
    }

    async fn correct(
        &self,
        contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        change: &DispositionChange,
    ) -> Result<Corrected, StoreError> {
        self.inner.correct(contact_id, caller, device, change).await
    }
}

/// Serves `store` with `transport`; history reads may take up to 10 s (the longest budget) before degrading.
async fn serve<S: HistoryStore>(store: S, transport: Transport) -> (RunningServer, tonic::transport::Channel) {
    let model = Model::new(ModelArtifact::from_json(saring::server::SHIPPED_MODEL).unwrap());
    let screener = Screener::new(store, model, KeyHasher::new(b"limits-test-secret"), 100, Duration::from_secs(10));
    let app = app_with(screener, &sqlite_url("limits")).await;
    let server = RunningServer::start_with("127.0.0.1:0".parse().unwrap(), app, transport).await.unwrap();
    let channel = connect(format!("http://{}", server.local_addr)).await;
    (server, channel)
}

fn limited(settings: LimitsSettings) -> Transport {
    Transport { limits: Arc::new(Limits::new(authenticator(), &settings)), ..Transport::plaintext() }
}

/// The retry hint of a shed call, checked for both forms.
fn retry_hint(status: &tonic::Status) -> Duration {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let retry = status.get_details_retry_info().expect("a google.rpc.RetryInfo detail");
    let delay = retry.retry_delay.expect("a retry delay");
    let metadata: u64 = status.metadata().get("grpc-retry-pushback-ms").unwrap().to_str().unwrap().parse().unwrap();
    assert_eq!(Duration::from_millis(metadata), delay);
    delay
}

#[tokio::test]
async fn an_oversized_request_is_refused_and_the_server_serves_on() {
    let transport = Transport { max_message_bytes: 1024, ..Transport::plaintext() };
    let (server, channel) = serve(MemoryStore::new(Duration::from_secs(3600)), transport).await;
    let mut client = screening(&channel, Bearer::of(Role::Operator));
    let oversized = sample_contact(&"x".repeat(4096), Some("081234567890"));
    let status = client.score_contact(oversized).await.unwrap_err();
    // Not INVALID_ARGUMENT: the message is refused for its size before anything reads its fields.
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("decoded message length too large"), "{status:?}");
    let reply = client.score_contact(sample_contact("small", Some("081234567890"))).await.unwrap();
    assert!(!reply.into_inner().degraded);
    // Replies too: the model card (its drift reference alone is several kilobytes) does not fit.
    let card = proto::ModelCardRequest { slot: proto::ModelSlot::Champion as i32 };
    let status = crate::common::models(&channel, Bearer::of(Role::Operator)).get_model_card(card).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("encoded message length too large"), "{status:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn over_its_concurrency_a_role_is_shed_but_routing_scores_degrade_and_nothing_is_lost() {
    let (open, gate) = watch::channel(false);
    let (waiting, mut waiters) = mpsc::unbounded_channel();
    let store = GatedStore { inner: MemoryStore::new(Duration::from_secs(3600)), open: gate, waiting, abandoned: None };
    let settings = LimitsSettings {
        routing: RoleLimits { concurrency: 1, rate_per_s: 0.0, burst: 0 },
        operator: RoleLimits { concurrency: 1, rate_per_s: 0.0, burst: 0 },
        ..LimitsSettings::default()
    };
    let (server, channel) = serve(store, limited(settings)).await;
    let (mut routing, mut operator): (Screening, Screening) =
        (screening(&channel, Bearer::of(Role::Routing)), screening(&channel, Bearer::of(Role::Operator)));

    // One routing score and one operator profile read hold their roles' only slots, waiting on history.
    let mut held_routing = routing.clone();
    let first =
        tokio::spawn(async move { held_routing.score_contact(sample_contact("c-1", Some("081111111111"))).await });
    let mut held_operator = operator.clone();
    let profile =
        tokio::spawn(
            async move { held_operator.get_caller(proto::CallerQuery { caller: "081111111111".into() }).await },
        );
    waiters.recv().await.unwrap();
    waiters.recv().await.unwrap();

    let shed = operator.get_caller(proto::CallerQuery { caller: "082222222222".into() }).await.unwrap_err();
    assert!(retry_hint(&shed) > Duration::ZERO);

    // The routing engine's score is never shed: it answers on the contact's own features.
    let contact = sample_contact("c-2", Some("083333333333"));
    let degraded = routing.score_contact(contact.clone()).await.unwrap().into_inner();
    assert_eq!(degraded.degraded_reasons, ["overload"]);
    assert!(degraded.degraded && degraded.caller_history.is_none());
    assert_ne!(degraded.band, proto::Band::Unspecified as i32);
    assert!((0.0..=1.0).contains(&degraded.prank_likelihood));
    // Its outcome is shed with a retry hint; the routing engine retries it.
    let outcome = prank_outcome("c-2", Some(contact.clone()));
    let refused = routing.record_outcome(outcome.clone()).await.unwrap_err();
    retry_hint(&refused);

    open.send(true).unwrap();
    let first = first.await.unwrap().unwrap().into_inner();
    assert!(!first.degraded, "{:?}", first.degraded_reasons);
    profile.await.unwrap().unwrap();
    // The same contact, now scored in full: a caller with no history scores as the overloaded answer did.
    let full = routing.score_contact(contact).await.unwrap().into_inner();
    assert!(!full.degraded);
    assert_eq!(full.prank_likelihood, degraded.prank_likelihood);
    let ack = routing.record_outcome(outcome.clone()).await.unwrap().into_inner();
    assert!(!ack.duplicate, "the shed attempt recorded nothing");
    assert!(routing.record_outcome(outcome).await.unwrap().into_inner().duplicate);
    let history = operator.get_caller(proto::CallerQuery { caller: "083333333333".into() }).await.unwrap();
    assert_eq!(history.into_inner().history.unwrap().total_contacts, 1, "recorded exactly once");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn over_its_rate_a_role_is_shed_with_the_time_to_the_next_token() {
    let settings = LimitsSettings {
        // One token every 1000 s: the burst is all there is during the test.
        legal: RoleLimits { concurrency: 8, rate_per_s: 0.001, burst: 2 },
        ..LimitsSettings::default()
    };
    let (server, channel) = serve(MemoryStore::new(Duration::from_secs(3600)), limited(settings)).await;
    let mut legal = crate::common::escalations(&channel, Bearer::of(Role::Legal));
    for _ in 0..2 {
        legal.list(proto::ListCasesRequest::default()).await.unwrap();
    }
    let shed = legal.list(proto::ListCasesRequest::default()).await.unwrap_err();
    assert!(retry_hint(&shed) > Duration::from_secs(100), "{shed:?}");
    // Other roles have their own buckets, and callers without credentials are refused by the handler as before.
    let mut operator = screening(&channel, Bearer::of(Role::Operator));
    operator.get_caller(proto::CallerQuery { caller: "081234567890".into() }).await.unwrap();
    let mut anonymous = crate::common::escalations(&channel, Bearer::none());
    let status = anonymous.list(proto::ListCasesRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn deadlines_end_calls_and_drop_their_work() {
    // Reads never complete until the test ends: GetCaller (which waits for history) would hang without deadlines.
    let (_open, gate) = watch::channel(false);
    let (waiting, _waiters) = mpsc::unbounded_channel();
    let (abandoned, mut abandonments) = mpsc::unbounded_channel();
    let memory = MemoryStore::new(Duration::from_secs(3600));
    let store = GatedStore { inner: memory, open: gate, waiting, abandoned: Some(abandoned) };
    let transport = Transport { max_deadline: Duration::from_millis(500), ..Transport::plaintext() };
    let (server, channel) = serve(store, transport).await;
    let mut operator = screening(&channel, Bearer::of(Role::Operator));
    let query = || proto::CallerQuery { caller: "081234567890".into() };
    let answered = Duration::from_secs(20);

    // No deadline from the client: the server's maximum ends the call, and the read it was waiting on.
    let status = tokio::time::timeout(answered, operator.get_caller(query())).await.expect("answered").unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("server's maximum"), "{status:?}");
    tokio::time::timeout(answered, abandonments.recv()).await.expect("the read was dropped with its call");

    // A client's deadline longer than the server's maximum does not extend it.
    let mut generous = tonic::Request::new(query());
    generous.set_timeout(Duration::from_secs(3600));
    let status = tokio::time::timeout(answered, operator.get_caller(generous)).await.expect("answered").unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("server's maximum"), "{status:?}");
    tokio::time::timeout(answered, abandonments.recv()).await.expect("the read was dropped with its call");

    // A shorter one bounds the call (tonic's client enforces it too, so either side may be the one to answer).
    let mut hurried = tonic::Request::new(query());
    hurried.set_timeout(Duration::from_millis(50));
    let status = tokio::time::timeout(answered, operator.get_caller(hurried)).await.expect("answered").unwrap_err();
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
    tokio::time::timeout(answered, abandonments.recv()).await.expect("the read was dropped with its call");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_open_stream_holds_its_roles_slot_until_it_ends() {
    let settings = LimitsSettings {
        operator: RoleLimits { concurrency: 1, rate_per_s: 0.0, burst: 0 },
        ..LimitsSettings::default()
    };
    let (server, channel) = serve(MemoryStore::new(Duration::from_secs(3600)), limited(settings)).await;
    let mut operator = screening(&channel, Bearer::of(Role::Operator));
    let stream = operator.watch_scores(proto::WatchScoresRequest::default()).await.unwrap().into_inner();
    // While the stream is open it is a call in progress: a second stream (or any call) over the limit is shed.
    let shed = operator.watch_scores(proto::WatchScoresRequest::default()).await.unwrap_err();
    assert!(retry_hint(&shed) > Duration::ZERO);
    let shed = operator.get_caller(proto::CallerQuery { caller: "081111111111".into() }).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted);
    // Closing it frees the slot (the server sees the reset a moment later).
    drop(stream);
    let mut admitted = false;
    for _ in 0..100 {
        match operator.get_caller(proto::CallerQuery { caller: "081111111111".into() }).await {
            Err(status) if status.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => {
                other.expect("admitted once the stream is gone");
                admitted = true;
                break;
            }
        }
    }
    assert!(admitted, "the slot came back after the stream closed");
    server.stop().await.unwrap();
}
