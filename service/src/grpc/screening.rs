//! The `saring.v1.Screening` service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::escalations::{case_summary, rung};
use super::{now_ms, timestamp, validate};
use crate::app::App;
use crate::auth::Role;
use crate::cases::LadderChange;
use crate::proto;
use crate::screening::{Assessment, Summary};
use crate::store::HistoryStore;

/// The Screening service over the application core.
pub struct ScreeningService<S> {
    app: Arc<App<S>>,
}

impl<S> ScreeningService<S> {
    /// Serves `app`.
    pub fn new(app: Arc<App<S>>) -> Self {
        ScreeningService { app }
    }
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

pub(super) fn band(band: Option<saring_models::Band>) -> proto::Band {
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
        self.app.auth.authorize(request.metadata(), &[Role::Routing, Role::Operator])?;
        let contact = validate::contact(request.get_ref(), now_ms())?;
        let contact_id = contact.contact_id.clone();
        let assessment = self.app.screener.score(contact).await;
        Ok(Response::new(score_reply(contact_id, assessment)))
    }

    async fn record_outcome(&self, request: Request<proto::Outcome>) -> Result<Response<proto::OutcomeAck>, Status> {
        self.app.auth.authorize(request.metadata(), &[Role::Routing, Role::Operator])?;
        let report = validate::outcome(request.get_ref(), now_ms())?;
        let contact_id = report.contact_id.clone();
        let result = self.app.record_outcome(report).await?;
        let duplicate = result.duplicate();
        let (change, open_case) = match result.ladder {
            None => (LadderChange::None, None),
            Some(ladder) => (ladder.change, ladder.case),
        };
        Ok(Response::new(proto::OutcomeAck {
            contact_id,
            duplicate,
            ladder_change: match change {
                LadderChange::None => proto::LadderChange::None,
                LadderChange::Proposed => proto::LadderChange::Proposed,
                LadderChange::EvidenceAdded => proto::LadderChange::EvidenceAdded,
                LadderChange::SurgeSuppressed => proto::LadderChange::SurgeSuppressed,
            } as i32,
            open_case: open_case.map(case_summary),
        }))
    }

    async fn get_caller(&self, request: Request<proto::CallerQuery>) -> Result<Response<proto::CallerProfile>, Status> {
        self.app.auth.authorize(request.metadata(), &[Role::Operator])?;
        let number = validate::caller_number("caller", &request.get_ref().caller)?;
        let standing = self.app.caller_standing(&number, now_ms()).await?;
        let profile = standing.profile;
        Ok(Response::new(proto::CallerProfile {
            rung: standing.rung.map_or(proto::Rung::Unspecified, |delivered| rung(delivered.rung)) as i32,
            rung_delivered_at: standing.rung.map(|delivered| timestamp(delivered.at_ms)),
            open_case: standing.open_case.map(case_summary),
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
