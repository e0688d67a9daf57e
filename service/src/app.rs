//! The application core every transport calls: the screener (scores and histories), the escalator (ladder,
//! cases, audit) and who may call what. An outcome is recorded in history first and then given to the ladder;
//! both steps are idempotent by contact id, so a retry after a failure of the second completes it.

use std::sync::Arc;

use saring_models::ladder::Delivered;

use crate::auth::Authenticator;
use crate::cases::{CaseError, CaseSummary, ContactRecord, Escalator, LadderOutcome};
use crate::error::Result;
use crate::screening::{CallerProfile, Contact, OutcomeReport, Screener};
use crate::store::{HistoryStore, Recorded};

/// The service's state, shared by the gRPC services (and the console).
pub struct App<S> {
    /// Scores and histories.
    pub screener: Screener<S>,
    /// The escalation ladder and its cases.
    pub escalator: Escalator,
    /// Bearer tokens and their roles.
    pub auth: Authenticator,
}

/// What recording an outcome did.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeResult {
    /// Whether history had it already.
    pub recorded: Recorded,
    /// The ladder's answer; `None` for a withheld number (never escalated).
    pub ladder: Option<LadderOutcome>,
}

impl OutcomeResult {
    /// True when nothing changed anywhere: the outcome had been recorded in full before.
    pub fn duplicate(&self) -> bool {
        self.recorded == Recorded::Duplicate && self.ladder.as_ref().is_none_or(|ladder| ladder.duplicate)
    }
}

/// A caller's profile with their place on the ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerStanding {
    /// History.
    pub profile: CallerProfile,
    /// The rung held now, after forgiveness.
    pub rung: Option<Delivered>,
    /// The open case.
    pub open_case: Option<CaseSummary>,
}

impl<S: HistoryStore> App<S> {
    /// Records an outcome in history, then on the caller's ladder. Fails (acknowledging nothing) when either
    /// store cannot take it; a retry completes what is missing and changes nothing twice.
    pub async fn record_outcome(&self, report: OutcomeReport) -> Result<OutcomeResult> {
        // A contact id the case database holds for another caller, or with another outcome, is refused before
        // history takes it (history would count it for the wrong caller, or the correction would vanish as a
        // duplicate). When the case database cannot answer, history goes ahead and the ladder step refuses.
        let known = report.contact.clone().or_else(|| self.screener.recent_contact(&report.contact_id));
        if let Some(contact) = known {
            if let Some(number) = &contact.caller {
                match self.escalator.check_outcome(&self.contact_record(&report, &contact, number, None)).await {
                    Ok(()) | Err(CaseError::Database(_)) => {}
                    Err(refused) => return Err(refused.into()),
                }
            }
        }
        let (recorded, contact, likelihood) = self.screener.record_outcome(&report).await?;
        let Some(number) = &contact.caller else { return Ok(OutcomeResult { recorded, ladder: None }) };
        let record = self.contact_record(&report, &contact, number, likelihood);
        let ladder = self.escalator.on_outcome(&record).await?;
        Ok(OutcomeResult { recorded, ladder: Some(ladder) })
    }

    /// The ladder's record of an outcome of `contact`, from `number`.
    fn contact_record(
        &self,
        report: &OutcomeReport,
        contact: &Contact,
        number: &str,
        likelihood: Option<(f64, Arc<str>)>,
    ) -> ContactRecord {
        ContactRecord {
            contact_id: report.contact_id.clone(),
            caller_ref: self.screener.number_key(number).to_hex(),
            caller_number: number.to_owned(),
            at_ms: contact.received_at_ms,
            channel: contact.channel,
            region: contact.region.clone(),
            disposition: report.disposition,
            operator_id: report.operator_id.clone(),
            model_version: likelihood
                .as_ref()
                .map_or_else(|| self.screener.model_version(), |(_, version)| Arc::clone(version))
                .to_string(),
            likelihood: likelihood.map(|(likelihood, _)| likelihood),
            answered: report.answered,
            talk_s: report.talk_s,
        }
    }

    /// A caller's history and ladder standing as seen at `now_ms`.
    pub async fn caller_standing(&self, e164: &str, now_ms: i64) -> Result<CallerStanding> {
        let profile = self.screener.caller_profile(e164, now_ms).await?;
        let caller_ref = self.screener.number_key(e164).to_hex();
        let (rung, open_case) = self.escalator.caller_ladder(&caller_ref, now_ms).await?;
        Ok(CallerStanding { profile, rung, open_case })
    }
}
