//! The `saring.v1.Privacy` service: a data subject's access and erasure, and the release of legal holds
//! ([`crate::rights`] holds the rules).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::escalations::{case_summary, timeline_entry};
use super::screening::caller_profile;
use super::{now_ms, timestamp, validate};
use crate::app::App;
use crate::auth::Role;
use crate::cases::audit::AuditEntry;
use crate::cases::privacy::LegalHold;
use crate::error::{Error, Violation};
use crate::proto;
use crate::store::HistoryStore;

/// The Privacy service over the application core.
pub struct PrivacyService<S> {
    app: Arc<App<S>>,
}

impl<S> PrivacyService<S> {
    /// Serves `app`.
    pub fn new(app: Arc<App<S>>) -> Self {
        PrivacyService { app }
    }
}

fn legal_hold(hold: LegalHold) -> proto::LegalHold {
    let released = hold.released;
    proto::LegalHold {
        case_id: hold.case_id,
        cause: hold.cause.as_str().to_owned(),
        released: released.is_some(),
        released_by: released.as_ref().map(|release| release.by.clone()).unwrap_or_default(),
        released_at: released.as_ref().map(|release| timestamp(release.at_ms)),
        release_reason: released.map(|release| release.reason).unwrap_or_default(),
    }
}

fn audit_record(entry: AuditEntry) -> proto::AuditRecord {
    proto::AuditRecord {
        seq: entry.seq,
        at: Some(timestamp(entry.at_ms)),
        actor: entry.actor,
        role: entry.role,
        action: entry.action,
        case_id: entry.case_id.unwrap_or_default(),
        state: entry.state.unwrap_or_default(),
        reason: entry.reason,
    }
}

#[tonic::async_trait]
impl<S: HistoryStore> proto::privacy_server::Privacy for PrivacyService<S> {
    async fn access(&self, request: Request<proto::AccessRequest>) -> Result<Response<proto::SubjectRecords>, Status> {
        let reader = self.app.auth.authorize(&request, &[Role::Legal])?;
        let request = request.into_inner();
        let number = validate::caller_number("caller", &request.caller)?;
        let access = self.app.subject_access(&reader, &number, &request.reason, now_ms()).await?;
        let records = access.records;
        Ok(Response::new(proto::SubjectRecords {
            caller: number,
            profile: Some(caller_profile(access.standing)),
            contacts: records.contacts.into_iter().map(timeline_entry).collect(),
            cases: records.cases.into_iter().map(case_summary).collect(),
            audit: records.audit.into_iter().map(audit_record).collect(),
            holds: records.holds.into_iter().map(legal_hold).collect(),
        }))
    }

    async fn erase(&self, request: Request<proto::EraseRequest>) -> Result<Response<proto::Erasure>, Status> {
        let actor = self.app.auth.authorize(&request, &[Role::Legal])?;
        let request = request.into_inner();
        let number = validate::caller_number("caller", &request.caller)?;
        let device_id = Some(request.device_id.as_str()).filter(|device_id| !device_id.is_empty());
        let erasure = self.app.erase_subject(&actor, &number, device_id, &request.reason).await?;
        Ok(Response::new(proto::Erasure {
            erasure_id: erasure.cases.erasure_id,
            contacts_removed: erasure.cases.contacts_removed,
            cases_redacted: erasure.cases.cases_redacted,
            journal_entries_removed: erasure.journal_entries as i64,
            audit_seq: erasure.cases.audit_seq,
            capture_records_removed: erasure.capture_records as i64,
        }))
    }

    async fn release_hold(
        &self,
        request: Request<proto::ReleaseHoldRequest>,
    ) -> Result<Response<proto::HoldRelease>, Status> {
        let reviewer = self.app.auth.authorize(&request, &[Role::Legal])?;
        let request = request.into_inner();
        let (hold, audit_seq) = self.app.release_hold(&reviewer, &request.case_id, &request.reason).await?;
        Ok(Response::new(proto::HoldRelease { hold: Some(legal_hold(hold)), audit_seq }))
    }

    async fn mark_reassigned(
        &self,
        request: Request<proto::MarkReassignedRequest>,
    ) -> Result<Response<proto::Reassignment>, Status> {
        let actor = self.app.auth.authorize(&request, &[Role::Legal])?;
        let request = request.into_inner();
        let number = validate::caller_number("caller", &request.caller)?;
        let Some(at) = request.reassigned_at else {
            return Err(Error::InvalidArgument(vec![Violation::new("reassigned_at", "required")]).into());
        };
        let from_ms =
            at.seconds.saturating_mul(1000).saturating_add(i64::from(at.nanos.clamp(0, 999_999_999)) / 1_000_000);
        let done = self.app.mark_reassigned(&actor, &number, from_ms, &request.reason, now_ms()).await?;
        Ok(Response::new(proto::Reassignment {
            reassignment_id: done.cases.reassignment_id,
            contacts_detached: done.cases.contacts_detached,
            cases_detached: done.cases.cases_detached,
            cases_closed: done.cases.cases_closed,
            histories_reset: done.histories as i64,
            audit_seq: done.cases.audit_seq,
        }))
    }
}
