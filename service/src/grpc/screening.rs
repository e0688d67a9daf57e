//! The `saring.v1.Screening` service.

use std::sync::Arc;

use prost_types::Timestamp;
use tonic::{Request, Response, Status};

use super::validate;
use crate::proto;
use crate::screening::{Assessment, Screener, Summary};
use crate::store::{HistoryStore, Recorded};

/// The Screening service over a screener.
pub struct ScreeningService<S> {
    screener: Arc<Screener<S>>,
}

impl<S> ScreeningService<S> {
    /// Serves `screener`.
    pub fn new(screener: Arc<Screener<S>>) -> Self {
        ScreeningService { screener }
    }
}

/// The server's clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

fn summary(summary: Summary) -> proto::HistorySummary {
    proto::HistorySummary {
        contacts_day: summary.contacts_day,
        misuse_day: summary.misuse_day,
        contacts_month: summary.contacts_month,
        misuse_month: summary.misuse_month,
        total_contacts: summary.total_contacts,
        first_seen: summary.first_seen_ms.map(timestamp),
        last_seen: summary.last_seen_ms.map(timestamp),
    }
}

fn band(band: Option<saring_models::Band>) -> proto::Band {
    match band {
        None => proto::Band::Unspecified,
        Some(saring_models::Band::Low) => proto::Band::Low,
        Some(saring_models::Band::Elevated) => proto::Band::Elevated,
        Some(saring_models::Band::High) => proto::Band::High,
    }
}

fn score_reply(contact_id: String, assessment: Assessment) -> proto::ScoreReply {
    proto::ScoreReply {
        contact_id,
        prank_likelihood: assessment.likelihood,
        band: band(assessment.band) as i32,
        reasons: assessment
            .reasons
            .into_iter()
            .map(|reason| proto::Reason {
                code: reason.code.to_owned(),
                sentence: reason.sentence,
                contribution: reason.contribution,
            })
            .collect(),
        model_version: assessment.model_version.to_string(),
        degraded: !assessment.degraded_reasons.is_empty(),
        degraded_reasons: assessment.degraded_reasons.iter().map(|reason| (*reason).to_owned()).collect(),
        caller_history: assessment.caller_history.map(summary),
        device_history: assessment.device_history.map(summary),
    }
}

#[tonic::async_trait]
impl<S: HistoryStore> proto::screening_server::Screening for ScreeningService<S> {
    async fn score_contact(
        &self,
        request: Request<proto::ContactRequest>,
    ) -> Result<Response<proto::ScoreReply>, Status> {
        let contact = validate::contact(request.get_ref(), now_ms())?;
        let contact_id = contact.contact_id.clone();
        let assessment = self.screener.score(contact).await;
        Ok(Response::new(score_reply(contact_id, assessment)))
    }

    async fn record_outcome(&self, request: Request<proto::Outcome>) -> Result<Response<proto::OutcomeAck>, Status> {
        let report = validate::outcome(request.get_ref(), now_ms())?;
        let contact_id = report.contact_id.clone();
        let recorded = self.screener.record_outcome(report).await?;
        Ok(Response::new(proto::OutcomeAck { contact_id, duplicate: recorded == Recorded::Duplicate }))
    }

    async fn get_caller(&self, request: Request<proto::CallerQuery>) -> Result<Response<proto::CallerProfile>, Status> {
        let number = validate::caller_number("caller", &request.get_ref().caller)?;
        let profile = self.screener.caller_profile(&number, now_ms()).await?;
        Ok(Response::new(proto::CallerProfile {
            caller: profile.caller,
            known: profile.known,
            history: Some(summary(profile.summary)),
            dispositions_month: profile
                .dispositions_month
                .into_iter()
                .map(|(disposition, count)| (disposition.as_str().to_owned(), count))
                .collect(),
        }))
    }
}
