//! The `saring.v1.Screening` service.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use saring_models::reason_text::{Form, Language};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::escalations::{case_summary, rung};
use super::{now_ms, timestamp, validate};

use crate::app::App;
use crate::auth::Role;
use crate::cases::LadderChange;
use crate::proto;
use crate::screening::{follow_scores, Assessment, Delivery, ScoredContact, Summary};
use crate::server::limits::Overloaded;
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

fn reason_form(form: Form) -> proto::ReasonForm {
    match form {
        Form::Yes => proto::ReasonForm::Yes,
        Form::No => proto::ReasonForm::No,
        Form::First => proto::ReasonForm::First,
        Form::Hour => proto::ReasonForm::Hour,
        Form::Count => proto::ReasonForm::Count,
        Form::Percent => proto::ReasonForm::Percent,
        Form::Seconds => proto::ReasonForm::Seconds,
        Form::Metres => proto::ReasonForm::Metres,
    }
}

fn score_reply(contact_id: String, assessment: &Assessment, language: Language) -> proto::ScoreReply {
    proto::ScoreReply {
        contact_id,
        prank_likelihood: assessment.likelihood,
        band: band(assessment.band) as i32,
        reasons: assessment
            .reasons
            .iter()
            .map(|reason| proto::Reason {
                code: reason.code.to_owned(),
                sentence: reason.sentence(language),
                contribution: reason.contribution,
                form: reason_form(reason.fact.form) as i32,
                value: reason.fact.value,
                material: reason.material,
                routine: reason.routine,
            })
            .collect(),
        model_version: assessment.model_version.to_string(),
        degraded: !assessment.degraded_reasons.is_empty(),
        degraded_reasons: assessment.degraded_reasons.iter().map(|reason| (*reason).to_owned()).collect(),
        caller_history: assessment.caller_history.map(summary),
        device_history: assessment.device_history.map(summary),
    }
}

fn ladder_change(change: LadderChange) -> proto::LadderChange {
    match change {
        LadderChange::None => proto::LadderChange::None,
        LadderChange::Proposed => proto::LadderChange::Proposed,
        LadderChange::EvidenceAdded => proto::LadderChange::EvidenceAdded,
        LadderChange::SurgeSuppressed => proto::LadderChange::SurgeSuppressed,
    }
}

fn disposition(disposition: saring_models::Disposition) -> proto::Disposition {
    use saring_models::Disposition as Core;
    match disposition {
        Core::GenuineEmergency => proto::Disposition::GenuineEmergency,
        Core::NonEmergency => proto::Disposition::NonEmergency,
        Core::Prank => proto::Disposition::Prank,
        Core::Silent => proto::Disposition::Silent,
        Core::Abusive => proto::Disposition::Abusive,
        Core::Accidental => proto::Disposition::Accidental,
        Core::Test => proto::Disposition::Test,
        Core::Unknown => proto::Disposition::Unknown,
    }
}

/// The stream of a WatchScores call.
pub struct ScoreEvents(mpsc::Receiver<Result<proto::ScoreEvent, Status>>);

impl futures_core::Stream for ScoreEvents {
    type Item = Result<proto::ScoreEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(context)
    }
}

fn channel(channel: saring_models::Channel) -> proto::Channel {
    match channel {
        saring_models::Channel::Voice => proto::Channel::Voice,
        saring_models::Channel::Whatsapp => proto::Channel::Whatsapp,
        saring_models::Channel::Sms => proto::Channel::Sms,
        saring_models::Channel::App => proto::Channel::App,
    }
}

fn score_event(scored: &ScoredContact, skipped: u64, language: Language) -> proto::ScoreEvent {
    proto::ScoreEvent {
        contact_id: scored.contact_id.clone(),
        received_at: Some(timestamp(scored.received_at_ms)),
        region: scored.region.clone(),
        channel: channel(scored.channel) as i32,
        withheld: scored.withheld,
        score: Some(score_reply(scored.contact_id.clone(), &scored.assessment, language)),
        skipped,
    }
}

#[tonic::async_trait]
impl<S: HistoryStore> proto::screening_server::Screening for ScreeningService<S> {
    type WatchScoresStream = ScoreEvents;

    async fn watch_scores(&self, request: Request<proto::WatchScoresRequest>) -> Result<Response<ScoreEvents>, Status> {
        self.app.auth.check(&request, &[Role::Operator])?;
        let request = request.into_inner();
        let Some(language) = validate::language(request.language) else {
            return Err(crate::error::Error::InvalidArgument(vec![crate::error::Violation::new(
                "language",
                format!("{} is not one of UNSPECIFIED, ENGLISH, INDONESIAN", request.language),
            )])
            .into());
        };
        let wanted = request.region;
        if let Some(region) = &wanted {
            let code = region.strip_suffix('.').unwrap_or(region);
            if !saring_models::region::is_valid_region_code(code) {
                return Err(crate::error::Error::InvalidArgument(vec![crate::error::Violation::new(
                    "region",
                    "must be a region code, or a province code followed by '.'",
                )])
                .into());
            }
        }
        let scores = self.app.screener.watch_scores();
        let (sender, receiver) = mpsc::channel(256);
        tokio::spawn(async move {
            follow_scores(scores, wanted.as_deref(), sender.closed(), |scored, skipped| {
                match sender.try_send(Ok(score_event(scored, skipped, language))) {
                    Ok(()) => Delivery::Taken,
                    Err(mpsc::error::TrySendError::Full(_)) => Delivery::Full,
                    Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Gone,
                }
            })
            .await;
        });
        Ok(Response::new(ScoreEvents(receiver)))
    }

    async fn score_contact(
        &self,
        request: Request<proto::ContactRequest>,
    ) -> Result<Response<proto::ScoreReply>, Status> {
        self.app.auth.check(&request, &[Role::Routing, Role::Operator])?;
        let overloaded = request.extensions().get::<Overloaded>().is_some();
        let request = request.into_inner();
        let language = validate::language(request.language).unwrap_or(Language::English);
        let contact = validate::contact(request, now_ms())?;
        let contact_id = contact.contact_id.clone();
        crate::server::trace::record_contact(&contact_id);
        let assessment = if overloaded {
            self.app.screener.score_overloaded(contact)
        } else {
            self.app.screener.score(contact).await
        };
        Ok(Response::new(score_reply(contact_id, &assessment, language)))
    }

    async fn record_outcome(&self, request: Request<proto::Outcome>) -> Result<Response<proto::OutcomeAck>, Status> {
        let recorder = self.app.auth.authorize(&request, &[Role::Routing, Role::Operator])?;
        let report = validate::outcome(request.get_ref(), now_ms())?;
        let contact_id = report.contact_id.clone();
        crate::server::trace::record_contact(&contact_id);
        let result = self.app.record_outcome_by(&recorder, report).await?;
        let duplicate = result.duplicate();
        let (change, open_case) = match result.ladder {
            None => (LadderChange::None, None),
            Some(ladder) => (ladder.change, ladder.case),
        };
        Ok(Response::new(proto::OutcomeAck {
            contact_id,
            duplicate,
            ladder_change: ladder_change(change) as i32,
            open_case: open_case.map(case_summary),
        }))
    }

    async fn correct_outcome(
        &self,
        request: Request<proto::OutcomeCorrection>,
    ) -> Result<Response<proto::CorrectionAck>, Status> {
        let corrector = self.app.auth.authorize(&request, &[Role::Routing, Role::Operator])?;
        let report = validate::correction(request.get_ref(), now_ms())?;
        let contact_id = report.contact_id.clone();
        crate::server::trace::record_contact(&contact_id);
        let result = self.app.correct_outcome_by(&corrector, report).await?;
        let summary = crate::corrections::describe(&result);
        let ladder = result.ladder;
        Ok(Response::new(proto::CorrectionAck {
            contact_id,
            unchanged: result.unchanged,
            previous_disposition: disposition(result.previous) as i32,
            disposition: disposition(result.disposition) as i32,
            ladder_change: ladder_change(ladder.change) as i32,
            open_case: ladder.case.map(case_summary),
            evidence_removed_case_id: ladder.evidence_removed.unwrap_or_default(),
            withdrawn_case: ladder.withdrawn.map(case_summary),
            flagged_case_ids: ladder.flagged,
            summary,
        }))
    }

    async fn get_caller(&self, request: Request<proto::CallerQuery>) -> Result<Response<proto::CallerProfile>, Status> {
        self.app.auth.check(&request, &[Role::Operator])?;
        let number = validate::caller_number("caller", &request.get_ref().caller)?;
        let standing = self.app.caller_standing(&number, now_ms()).await?;
        Ok(Response::new(caller_profile(standing)))
    }
}

/// The proto profile of a caller's standing.
pub fn caller_profile(standing: crate::app::CallerStanding) -> proto::CallerProfile {
    let profile = standing.profile;
    proto::CallerProfile {
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
    }
}
