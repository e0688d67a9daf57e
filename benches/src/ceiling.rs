//! The ceiling: a trivial tonic server speaking saring.v1.Screening that answers every call with a constant
//! (no authentication, no validation, no history, no model). What a tonic unary service can do on this machine
//! with these messages is the most saring could do; the harness reports saring as a share of it.

use std::net::SocketAddr;

use saring::proto;
use saring::proto::screening_server::{Screening, ScreeningServer};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// The constant answers, shaped like a typical saring reply (five reasons, a model version, a number's history).
#[derive(Debug, Clone)]
pub struct CeilingService {
    score: proto::ScoreReply,
    ack: proto::OutcomeAck,
}

impl Default for CeilingService {
    fn default() -> Self {
        let reason = |code: &str, sentence: &str, contribution| proto::Reason {
            code: code.to_owned(),
            sentence: sentence.to_owned(),
            contribution,
            form: proto::ReasonForm::Count as i32,
            value: 3.0,
            material: true,
            routine: false,
        };
        let summary = proto::HistorySummary {
            contacts_day: 1.5,
            misuse_day: 0.5,
            contacts_month: 7.25,
            misuse_month: 2.0,
            total_contacts: 9,
            first_seen: Some(prost_types::Timestamp { seconds: 1_780_000_000, nanos: 0 }),
            last_seen: Some(prost_types::Timestamp { seconds: 1_781_000_000, nanos: 0 }),
        };
        CeilingService {
            score: proto::ScoreReply {
                contact_id: "ceiling".to_owned(),
                prank_likelihood: 0.42,
                band: proto::Band::Elevated as i32,
                reasons: vec![
                    reason("recent_contacts", "about 7 contacts from this number in the last hour", 0.9),
                    reason("misuse_history", "2 contacts from this number judged prank or abusive this month", 0.7),
                    reason("night", "the contact arrived at night, local time", 0.2),
                    reason("no_sim", "no SIM card in the handset", 0.15),
                    reason("channel", "the contact came by voice", -0.1),
                ],
                model_version: "boosted-20261124-e5cba6b0".to_owned(),
                degraded: false,
                degraded_reasons: Vec::new(),
                caller_history: Some(summary),
                device_history: None,
            },
            ack: proto::OutcomeAck {
                contact_id: "ceiling".to_owned(),
                duplicate: false,
                ladder_change: proto::LadderChange::None as i32,
                open_case: None,
            },
        }
    }
}

/// The ceiling's WatchScores: a stream that ends at once (nothing is ever scored).
pub struct NoScores;

impl futures_core::Stream for NoScores {
    type Item = Result<proto::ScoreEvent, Status>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(None)
    }
}

#[tonic::async_trait]
impl Screening for CeilingService {
    type WatchScoresStream = NoScores;

    async fn watch_scores(&self, _request: Request<proto::WatchScoresRequest>) -> Result<Response<NoScores>, Status> {
        Ok(Response::new(NoScores))
    }

    async fn score_contact(
        &self,
        _request: Request<proto::ContactRequest>,
    ) -> Result<Response<proto::ScoreReply>, Status> {
        Ok(Response::new(self.score.clone()))
    }

    async fn record_outcome(&self, _request: Request<proto::Outcome>) -> Result<Response<proto::OutcomeAck>, Status> {
        Ok(Response::new(self.ack.clone()))
    }

    async fn correct_outcome(
        &self,
        request: Request<proto::OutcomeCorrection>,
    ) -> Result<Response<proto::CorrectionAck>, Status> {
        Ok(Response::new(proto::CorrectionAck {
            contact_id: request.into_inner().contact_id,
            unchanged: true,
            ..proto::CorrectionAck::default()
        }))
    }

    async fn get_caller(
        &self,
        _request: Request<proto::CallerQuery>,
    ) -> Result<Response<proto::CallerProfile>, Status> {
        Ok(Response::new(proto::CallerProfile::default()))
    }
}

/// Serves the ceiling on `listener` until the task is dropped, with `TCP_NODELAY` as saring sets it.
pub async fn serve(listener: TcpListener) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(ScreeningServer::new(CeilingService::default()))
        .serve_with_incoming(incoming)
        .await
}

/// Binds `addr` and serves the ceiling in a background task; returns the bound address.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(error) = serve(listener).await {
            eprintln!("saring-bench: ceiling server stopped: {error}");
        }
    });
    Ok((local, task))
}
