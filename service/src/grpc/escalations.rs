//! The `saring.v1.Escalations` service: the legal team's and dispatch's view of cases.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use saring_models::ladder::Rung;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::{now_ms, timestamp, validate};
use crate::app::App;
use crate::auth::Role;
use crate::cases::{CaseEvent, CaseEvidence, CaseState, CaseSummary, DeliveryChannel, TimelineEntry};
use crate::proto;
use crate::store::HistoryStore;

/// How often a watcher looks for changes made by other replicas (changes made here wake it at once).
const WATCH_POLL: Duration = Duration::from_millis(500);

/// The Escalations service over the application core.
pub struct EscalationsService<S> {
    app: Arc<App<S>>,
}

impl<S> EscalationsService<S> {
    /// Serves `app`.
    pub fn new(app: Arc<App<S>>) -> Self {
        EscalationsService { app }
    }
}

/// The proto rung.
pub fn rung(rung: Rung) -> proto::Rung {
    match rung {
        Rung::Warning => proto::Rung::Warning,
        Rung::VirtualPoliceMessage => proto::Rung::VirtualPoliceMessage,
        Rung::LegalReferral => proto::Rung::LegalReferral,
        Rung::WelfareReferral => proto::Rung::WelfareReferral,
    }
}

/// The proto delivery channel.
pub fn delivery_channel(channel: DeliveryChannel) -> proto::DeliveryChannel {
    match channel {
        DeliveryChannel::Sms => proto::DeliveryChannel::Sms,
        DeliveryChannel::WhatsApp => proto::DeliveryChannel::Whatsapp,
        DeliveryChannel::Call => proto::DeliveryChannel::Call,
        DeliveryChannel::InPerson => proto::DeliveryChannel::InPerson,
        DeliveryChannel::Filed => proto::DeliveryChannel::Filed,
    }
}

fn state(state: CaseState) -> proto::CaseState {
    match state {
        CaseState::Proposed => proto::CaseState::Proposed,
        CaseState::Approved => proto::CaseState::Approved,
        CaseState::Rejected => proto::CaseState::Rejected,
        CaseState::Actioned => proto::CaseState::Actioned,
        CaseState::Reverted => proto::CaseState::Reverted,
    }
}

/// The proto summary of a case.
pub fn case_summary(case: CaseSummary) -> proto::CaseSummary {
    proto::CaseSummary {
        case_id: case.case_id,
        caller_ref: case.caller_ref,
        rung: rung(case.rung) as i32,
        state: state(case.state) as i32,
        version: case.version.max(0) as u64,
        region: case.region,
        automatic: case.approval == saring_models::ladder::Approval::Automatic,
        rule: case.rule,
        policy_version: case.policy_version,
        model_version: case.model_version,
        incidents: u32::try_from(case.incidents).unwrap_or(u32::MAX),
        created_at: Some(timestamp(case.created_ms)),
        updated_at: Some(timestamp(case.updated_ms)),
        decided_by: case.decided_by.unwrap_or_default(),
        decided_at: case.decided_ms.map(timestamp),
        decision_reason: case.decision_reason.unwrap_or_default(),
        actioned_by: case.actioned_by.unwrap_or_default(),
        delivered_at: case.delivered_ms.map(timestamp),
        action_note: case.action_note.unwrap_or_default(),
        claimed_by: case.claimed_by.unwrap_or_default(),
        claimed_at: case.claimed_ms.map(timestamp),
        delivery_channel: case.delivery_channel.map_or(proto::DeliveryChannel::Unspecified, delivery_channel) as i32,
        reverted_by: case.reverted_by.unwrap_or_default(),
        reverted_at: case.reverted_ms.map(timestamp),
        revert_reason: case.revert_reason.unwrap_or_default(),
    }
}

fn case(evidence: CaseEvidence) -> proto::Case {
    proto::Case {
        summary: Some(case_summary(evidence.summary)),
        caller_number: evidence.caller_number,
        timeline: evidence.timeline.into_iter().map(timeline_entry).collect(),
    }
}

/// The proto entry of a contact in a timeline.
pub fn timeline_entry(entry: TimelineEntry) -> proto::TimelineEntry {
    proto::TimelineEntry {
        contact_id: entry.contact_id,
        received_at: Some(timestamp(entry.at_ms)),
        channel: entry.channel.as_str().to_owned(),
        region: entry.region,
        disposition: entry.disposition.as_str().to_owned(),
        operator_id: entry.operator_id.unwrap_or_default(),
        prank_likelihood: entry.likelihood,
        model_version: entry.model_version.unwrap_or_default(),
        answered: entry.answered,
        talk_s: entry.talk_s,
        counted: entry.counted,
        corrections: entry
            .corrections
            .into_iter()
            .map(|correction| proto::DispositionCorrection {
                from_disposition: correction.from.as_str().to_owned(),
                to_disposition: correction.to.as_str().to_owned(),
                corrected_by: correction.by,
                corrected_at: Some(timestamp(correction.at_ms)),
                reason: correction.reason,
            })
            .collect(),
    }
}

fn event(event: CaseEvent) -> proto::CaseEvent {
    proto::CaseEvent {
        seq: event.seq.max(0) as u64,
        at: Some(timestamp(event.at_ms)),
        action: event.action,
        actor: event.actor,
        r#case: Some(case_summary(event.case)),
    }
}

/// The stream of a Watch call.
pub struct CaseEvents(mpsc::Receiver<Result<proto::CaseEvent, Status>>);

impl futures_core::Stream for CaseEvents {
    type Item = Result<proto::CaseEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(context)
    }
}

#[tonic::async_trait]
impl<S: HistoryStore> proto::escalations_server::Escalations for EscalationsService<S> {
    async fn list(&self, request: Request<proto::ListCasesRequest>) -> Result<Response<proto::ListCasesReply>, Status> {
        self.app.auth.check(&request, &[Role::Legal])?;
        let filter = validate::list(request.get_ref())?;
        let (cases, next) = self.app.escalator.list(&filter).await.map_err(crate::error::Error::from)?;
        Ok(Response::new(proto::ListCasesReply {
            cases: cases.into_iter().map(case_summary).collect(),
            next_page_token: next.map(|(created, case_id)| validate::page_token(created, &case_id)).unwrap_or_default(),
        }))
    }

    async fn get(&self, request: Request<proto::GetCaseRequest>) -> Result<Response<proto::Case>, Status> {
        let reader = self.app.auth.authorize(&request, &[Role::Legal])?;
        let case_id = validate::case_id(&request.get_ref().case_id)?;
        let evidence = self.app.escalator.get(&case_id, &reader).await.map_err(crate::error::Error::from)?;
        Ok(Response::new(case(evidence)))
    }

    async fn decide(&self, request: Request<proto::DecideRequest>) -> Result<Response<proto::CaseSummary>, Status> {
        let reviewer = self.app.auth.authorize(&request, &[Role::Legal])?;
        let (change, decision) = validate::decide(request.get_ref())?;
        let summary = self
            .app
            .escalator
            .decide(&change.case_id, change.version, decision, &change.reason, &reviewer)
            .await
            .map_err(crate::error::Error::from)?;
        Ok(Response::new(case_summary(summary)))
    }

    async fn list_deliveries(
        &self,
        request: Request<proto::ListDeliveriesRequest>,
    ) -> Result<Response<proto::ListCasesReply>, Status> {
        self.app.auth.check(&request, &[Role::Dispatch])?;
        let filter = validate::list_deliveries(request.get_ref())?;
        let (cases, next) = self.app.escalator.list(&filter).await.map_err(crate::error::Error::from)?;
        Ok(Response::new(proto::ListCasesReply {
            cases: cases.into_iter().map(case_summary).collect(),
            next_page_token: next.map(|(created, case_id)| validate::page_token(created, &case_id)).unwrap_or_default(),
        }))
    }

    async fn claim(&self, request: Request<proto::ClaimRequest>) -> Result<Response<proto::ClaimedCase>, Status> {
        let dispatcher = self.app.auth.authorize(&request, &[Role::Dispatch])?;
        let change = validate::claim(request.get_ref())?;
        let claimed = self
            .app
            .escalator
            .claim(&change.case_id, change.version, &dispatcher)
            .await
            .map_err(crate::error::Error::from)?;
        Ok(Response::new(proto::ClaimedCase {
            summary: Some(case_summary(claimed.summary)),
            caller_number: claimed.caller_number,
        }))
    }

    async fn release_claim(
        &self,
        request: Request<proto::ReleaseClaimRequest>,
    ) -> Result<Response<proto::CaseSummary>, Status> {
        let dispatcher = self.app.auth.authorize(&request, &[Role::Dispatch])?;
        let change = validate::release_claim(request.get_ref())?;
        let summary = self
            .app
            .escalator
            .release_claim(&change.case_id, change.version, &change.reason, &dispatcher)
            .await
            .map_err(crate::error::Error::from)?;
        Ok(Response::new(case_summary(summary)))
    }

    async fn record_action(
        &self,
        request: Request<proto::RecordActionRequest>,
    ) -> Result<Response<proto::CaseSummary>, Status> {
        let dispatcher = self.app.auth.authorize(&request, &[Role::Dispatch])?;
        let (change, delivery) = validate::record_action(request.get_ref(), now_ms())?;
        let summary = self
            .app
            .escalator
            .record_action(&change.case_id, change.version, delivery, &change.reason, &dispatcher)
            .await
            .map_err(crate::error::Error::from)?;
        Ok(Response::new(case_summary(summary)))
    }

    async fn revert(&self, request: Request<proto::RevertRequest>) -> Result<Response<proto::CaseSummary>, Status> {
        let reviewer = self.app.auth.authorize(&request, &[Role::Legal])?;
        let change = validate::revert(request.get_ref())?;
        let summary = self
            .app
            .escalator
            .revert(&change.case_id, change.version, &change.reason, &reviewer)
            .await
            .map_err(crate::error::Error::from)?;
        Ok(Response::new(case_summary(summary)))
    }

    type WatchStream = CaseEvents;

    async fn watch(&self, request: Request<proto::WatchCasesRequest>) -> Result<Response<CaseEvents>, Status> {
        self.app.auth.check(&request, &[Role::Dispatch, Role::Legal])?;
        let mut cursor = i64::try_from(request.get_ref().after_seq).map_err(|_| {
            crate::error::Error::InvalidArgument(vec![crate::error::Violation::new("after_seq", "too large")])
        })?;
        let (sender, receiver) = mpsc::channel(64);
        let app = Arc::clone(&self.app);
        let mut changes = app.escalator.subscribe();
        tokio::spawn(async move {
            loop {
                let events = match app.escalator.events_after(cursor, 200).await {
                    Ok(events) => events,
                    Err(error) => {
                        let _ = sender.send(Err(crate::error::Error::from(error).into())).await;
                        return;
                    }
                };
                let full = events.len() == 200;
                for case_event in events {
                    cursor = case_event.seq;
                    if sender.send(Ok(event(case_event))).await.is_err() {
                        return;
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    _ = changes.changed() => {}
                    () = tokio::time::sleep(WATCH_POLL) => {}
                    () = sender.closed() => return,
                }
            }
        });
        Ok(Response::new(CaseEvents(receiver)))
    }
}
