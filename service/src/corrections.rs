//! Corrections of a recorded disposition, whatever the door (gRPC CorrectOutcome, the operator console): the one
//! set of rules and the one path. A correction is allowed within the correction window after the contact arrived
//! (`outcomes.correction_window_hours`), only for an outcome saring holds durably (the case database's `contacts`
//! row of a known number: a withheld number's outcome lives only in decayed device history, which cannot say what
//! a contact was recorded as once its marker is gone), and changes the history exactly — the old disposition's
//! weight out, the new one's in, once — before the ladder sees it. Both steps are idempotent, so a retry after the
//! second failed completes it.

use crate::app::App;
use crate::auth::{Principal, Role};
use crate::cases::{CaseSummary, ContactRecord, CorrectionOutcome, LadderChange};
use crate::error::{Error, Result, Violation};
use crate::screening::{Contact, OutcomeReport};
use crate::store::{Corrected, DispositionChange, HistoryStore};
use saring_models::history::contact_fingerprint;
use saring_models::Disposition;

/// A correction of a recorded contact's disposition, as every door hands it in.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrectionReport {
    /// The contact whose outcome is corrected.
    pub contact_id: String,
    /// The contact itself (routing engine only), when this replica has not scored it recently.
    pub contact: Option<Contact>,
    /// The disposition it should have been.
    pub disposition: Disposition,
    /// Why (required; [`crate::cases::check_reason`]).
    pub reason: String,
    /// Who corrects it: the routing engine names the operator; a person corrects under their own name.
    pub operator_id: Option<String>,
}

/// What a correction did.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrectionResult {
    /// The disposition recorded before.
    pub previous: Disposition,
    /// The disposition in force now.
    pub disposition: Disposition,
    /// The contact held this disposition already: nothing changed.
    pub unchanged: bool,
    /// What the histories did (journaled counts as applied).
    pub history: Corrected,
    /// What the ladder did.
    pub ladder: CorrectionOutcome,
}

impl CorrectionResult {
    /// The caller's open case after the correction.
    pub fn open_case(&self) -> Option<&CaseSummary> {
        self.ladder.case.as_ref()
    }
}

impl CorrectionReport {
    /// Everything wrong with this correction, by field: the contact id (the one rule for ids), an embedded contact
    /// of another id, the reason ([`crate::cases::check_reason`], required), the operator id (as an outcome's).
    /// Returns the reason as checked.
    pub fn violations(&self) -> (Vec<Violation>, String) {
        let as_outcome = OutcomeReport {
            contact_id: self.contact_id.clone(),
            contact: self.contact.clone(),
            answered: false,
            ring_s: 0.0,
            talk_s: 0.0,
            disposition: self.disposition,
            category: None,
            operator_id: self.operator_id.clone(),
        };
        let mut violations = as_outcome.violations();
        let reason = crate::cases::check_reason(&self.reason, true).unwrap_or_else(|problem| {
            violations.push(Violation::new("reason", problem));
            String::new()
        });
        (violations, reason)
    }
}

impl<S: HistoryStore> App<S> {
    /// Corrects a recorded contact's disposition, reported by `corrector` under the same door rules as an outcome:
    /// the routing engine may embed the contact and name any operator; a person corrects contacts scored recently
    /// on this replica, under their own name. Refused: bad fields (INVALID_ARGUMENT, every field named), an unknown
    /// contact (NOT_FOUND), a contact older than the correction window or from a withheld number
    /// (FAILED_PRECONDITION). The same disposition as recorded is acknowledged as unchanged.
    pub async fn correct_outcome_by(
        &self,
        corrector: &Principal,
        mut report: CorrectionReport,
    ) -> Result<CorrectionResult> {
        let (mut violations, reason) = report.violations();
        if corrector.role != Role::Routing {
            if report.contact.is_some() {
                violations.push(Violation::new(
                    "contact",
                    "only the routing engine embeds a contact; correct the outcome of a contact scored recently",
                ));
            }
            match report.operator_id.as_deref() {
                None | Some("") => {}
                Some(named) if named == corrector.name => {}
                Some(_) => violations.push(Violation::new(
                    "operator_id",
                    "must be empty or your own name: a correction is recorded under the token holder's name",
                )),
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        if corrector.role != Role::Routing {
            report.operator_id = Some(corrector.name.clone());
        }
        let by = match report.operator_id.as_deref() {
            Some(operator) if !operator.is_empty() => operator.to_owned(),
            _ => corrector.name.clone(),
        };
        let contact = report.contact.clone().or_else(|| self.screener.recent_contact(&report.contact_id));

        let Some(stored) = self.escalator.recorded_outcome(&report.contact_id).await? else {
            return Err(match contact {
                Some(contact) if contact.caller.is_none() => Error::CorrectionRefused(format!(
                    "contact {} came from a withheld number: saring keeps no durable record of its outcome (only the \
                     device's decayed history), so its disposition cannot be corrected exactly",
                    report.contact_id
                )),
                _ => Error::ContactNotFound(format!("no outcome is recorded for contact {}", report.contact_id)),
            });
        };
        let now_ms = self.escalator.now_ms();
        let window_ms = self.escalator.correction_window_ms();
        if now_ms - stored.at_ms > window_ms {
            return Err(Error::CorrectionRefused(format!(
                "contact {} arrived more than {} hours ago; dispositions are corrected within \
                 outcomes.correction_window_hours of the contact (a case it grounds can still be reverted by the legal \
                 team)",
                report.contact_id,
                window_ms / 3_600_000
            )));
        }
        let Some(contact) = contact else {
            return Err(Error::InvalidArgument(vec![Violation::new(
                "contact",
                "required: this contact_id was not scored by this replica recently, so the correction must carry the \
                 contact (its device's history is corrected too)",
            )]));
        };
        let Some(number) = contact.caller.clone() else {
            return Err(Error::InvalidArgument(vec![Violation::new(
                "contact.caller",
                "the contact's outcome was recorded for a number; this contact is withheld",
            )]));
        };
        let (earlier_callers, earlier_devices) =
            self.screener.previous_keys(Some(&number), contact.device_id.as_deref());
        let mut caller_ref = self.screener.number_key(&number).to_hex();
        // While the hashing secret rotates, a contact recorded before may be keyed under an earlier secret.
        if caller_ref != stored.caller_ref && earlier_callers.iter().any(|key| key.to_hex() == stored.caller_ref) {
            caller_ref = stored.caller_ref.clone();
        }
        if caller_ref != stored.caller_ref || contact.received_at_ms != stored.at_ms {
            return Err(Error::InvalidArgument(vec![Violation::new(
                "contact",
                format!("is not the contact recorded as {} (another number or arrival time)", report.contact_id),
            )]));
        }

        let (caller_key, device_key) = self.screener.history_keys(&contact);
        let change = DispositionChange {
            contact_fingerprint: contact_fingerprint(&report.contact_id),
            at_ms: stored.at_ms,
            from: stored.disposition,
            to: report.disposition,
        };
        // History first, as for an outcome: its markers make a repeat (or a retry after the ladder step failed)
        // change nothing, and the case database's row says the correction is complete.
        let history = if stored.disposition == report.disposition {
            Corrected::Unchanged
        } else {
            let store = self.screener.store();
            let unavailable = |error: crate::store::StoreError| Error::StoreUnavailable(error.to_string());
            let mut corrected = store
                .correct(&report.contact_id, caller_key.as_ref(), device_key.as_ref(), &change)
                .await
                .map_err(unavailable)?;
            // Counted under an earlier secret's keys (before a rotation): corrected there.
            for generation in 0..earlier_callers.len().max(earlier_devices.len()) {
                if corrected != Corrected::NotHeld {
                    break;
                }
                let (caller, device) = (earlier_callers.get(generation), earlier_devices.get(generation));
                corrected = store.correct(&report.contact_id, caller, device, &change).await.map_err(unavailable)?;
            }
            corrected
        };
        let record = ContactRecord {
            contact_id: report.contact_id.clone(),
            caller_ref,
            caller_number: number,
            at_ms: stored.at_ms,
            channel: contact.channel,
            region: contact.region.clone(),
            disposition: report.disposition,
            operator_id: Some(by.clone()),
            likelihood: None,
            model_version: self.screener.model_version().to_string(),
            answered: stored.answered,
            talk_s: stored.talk_s,
        };
        let actor = Principal { name: by, role: corrector.role };
        let ladder = self.escalator.correct(&record, &reason, &actor).await?;
        tracing::info!(contact_id = %report.contact_id, actor = %corrector.name, from = ladder.previous.as_str(), to = report.disposition.as_str(), ?history, "correction");
        Ok(CorrectionResult {
            previous: ladder.previous,
            disposition: report.disposition,
            unchanged: ladder.unchanged,
            history,
            ladder,
        })
    }
}

/// A one-line description of what a correction changed, in English, for logs and clients that show no more.
pub fn describe(result: &CorrectionResult) -> String {
    if result.unchanged {
        return format!("already recorded as {}; nothing changed", result.disposition.as_str());
    }
    let mut parts = vec![format!("corrected from {} to {}", result.previous.as_str(), result.disposition.as_str())];
    if let Some(case) = &result.ladder.withdrawn {
        parts.push(format!("case {} withdrawn: its grounds are gone", case.case_id));
    } else if let Some(case_id) = &result.ladder.evidence_removed {
        parts.push(format!("no longer counted in case {case_id}"));
    }
    match result.ladder.change {
        LadderChange::Proposed => parts.push("a case was proposed".into()),
        LadderChange::EvidenceAdded => parts.push("added as evidence to the open case".into()),
        LadderChange::SurgeSuppressed => parts.push("a rung was due during a surge; no case proposed".into()),
        LadderChange::None => {}
    }
    if !result.ladder.flagged.is_empty() {
        parts.push(format!("shown on case(s) {} for the legal team", result.ladder.flagged.join(", ")));
    }
    parts.join("; ")
}
