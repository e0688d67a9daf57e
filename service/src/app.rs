//! The application core every transport calls: the screener (scores and histories), the escalator (ladder,
//! cases, audit) and who may call what. An outcome is recorded in history first and then given to the ladder;
//! both steps are idempotent by contact id, so a retry after a failure of the second completes it.

use std::sync::Arc;

use saring_models::ladder::Delivered;
use tracing::Instrument as _;

use crate::auth::{Authenticator, Principal};
use crate::cases::{CaseError, CaseSummary, ContactRecord, Escalator, LadderOutcome};
use crate::error::{Error, Result, Violation};
use crate::modelops::promotion::{PromotionError, Staged};
use crate::modelops::quality::{Paired, QualityState, NATIONAL, WINDOWS};
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
    /// Records an outcome reported by `recorder`: the routing engine may embed the contact and name any operator;
    /// a person (an operator's token) records only contacts scored recently on this replica, without embedding
    /// one, and under their own name. The outcome's own rules ([`OutcomeReport::violations`]) are refused in the
    /// same answer. Then as [`App::record_outcome`].
    pub async fn record_outcome_by(&self, recorder: &Principal, mut report: OutcomeReport) -> Result<OutcomeResult> {
        let mut violations = report.violations();
        if recorder.role != crate::auth::Role::Routing {
            if report.contact.is_some() {
                violations.push(Violation::new(
                    "contact",
                    "only the routing engine embeds a contact; record the outcome of a contact scored recently",
                ));
            } else if violations.iter().all(|violation| violation.field != "contact_id")
                && self.screener.recent_contact(&report.contact_id).is_none()
            {
                violations.push(Violation::new(
                    "contact_id",
                    "no contact with this id was scored recently on this replica; outcomes of older contacts come \
                     from the routing engine",
                ));
            }
            match report.operator_id.as_deref() {
                None | Some("") => {}
                Some(named) if named == recorder.name => {}
                Some(_) => violations.push(Violation::new(
                    "operator_id",
                    "must be empty or your own name: an outcome is recorded under the token holder's name",
                )),
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        if recorder.role != crate::auth::Role::Routing {
            // The holder's name as configured: not held to the rules of a client-sent operator id.
            report.operator_id = Some(recorder.name.clone());
        }
        self.record_valid_outcome(report).await
    }

    /// Records an outcome in history, then on the caller's ladder. Refuses one that breaks the outcome's rules
    /// ([`OutcomeReport::validate`]); fails (acknowledging nothing) when either store cannot take it; a retry
    /// completes what is missing and changes nothing twice.
    pub async fn record_outcome(&self, report: OutcomeReport) -> Result<OutcomeResult> {
        report.validate()?;
        self.record_valid_outcome(report).await
    }

    async fn record_valid_outcome(&self, report: OutcomeReport) -> Result<OutcomeResult> {
        // A contact id the case database holds for another caller, or with another outcome, is refused before
        // history takes it (history would count it for the wrong caller, or the correction would vanish as a
        // duplicate). When the case database cannot answer, history goes ahead and the ladder step refuses.
        let known = report.contact.clone().or_else(|| self.screener.recent_contact(&report.contact_id));
        if let Some(contact) = known {
            if let Some(number) = &contact.caller {
                let record = self.contact_record(&report, &contact, number, None);
                let span = tracing::debug_span!("cases.check", contact_id = %report.contact_id);
                match self.escalator.check_outcome(&record).instrument(span).await {
                    Ok(()) | Err(CaseError::Database(_)) => {}
                    Err(refused) => return Err(refused.into()),
                }
            }
        }
        let (recorded, contact, likelihood) = self.screener.record_outcome(&report).await?;
        let Some(number) = &contact.caller else { return Ok(OutcomeResult { recorded, ladder: None }) };
        let record = self.contact_record(&report, &contact, number, likelihood);
        let ladder = self
            .escalator
            .on_outcome(&record)
            .instrument(tracing::debug_span!("cases.record", contact_id = %report.contact_id))
            .await?;
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

/// A promotion or rollback that took effect.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelChange {
    /// The version serving now.
    pub version: String,
    /// The version that served before.
    pub replaced: String,
    /// The audit entry that records it.
    pub audit_seq: i64,
    /// The window the comparison covers (`day` or `week`); empty for a rollback.
    pub window: &'static str,
    /// Champion, challenger and naive rule on the same labelled contacts (promotions only).
    pub comparison: Option<Paired>,
}

/// A model change's reason and window, checked: the reason as every case change's
/// ([`crate::cases::check_reason`], required); the window is `day` or `week` (empty: `week`).
pub fn check_model_change(reason: &str, window: &str) -> Result<(String, &'static str)> {
    let mut violations = Vec::new();
    let reason = crate::cases::check_reason(reason, true).unwrap_or_else(|problem| {
        violations.push(Violation::new("reason", problem));
        String::new()
    });
    let window = match window {
        "" => Some(WINDOWS[WINDOWS.len() - 1].0),
        named => WINDOWS.iter().map(|(name, _)| *name).find(|name| *name == named),
    };
    if window.is_none() {
        violations.push(Violation::new("window", "must be \"day\" or \"week\" (empty: week)"));
    }
    match window {
        Some(window) if violations.is_empty() => Ok((reason, window)),
        _ => Err(Error::InvalidArgument(violations)),
    }
}

fn refused(error: PromotionError) -> Error {
    match error {
        PromotionError::Precondition(message) => Error::ModelChangeRefused(message),
        PromotionError::Io(message) => Error::ModelFilesUnavailable(message),
    }
}

/// One line comparing the models on the same labelled contacts, for the audit log and the refusal.
pub fn describe_comparison(window: &str, paired: &Paired) -> String {
    format!(
        "over the last {window}, on the same {} labelled contacts ({} misuse): challenger {} ROC-AUC {:.4}, \
         champion {} ROC-AUC {:.4}, naive rule ROC-AUC {:.4}",
        paired.champion.labelled,
        paired.champion.positives,
        paired.challenger.subject,
        paired.challenger.roc_auc,
        paired.champion.subject,
        paired.champion.roc_auc,
        paired.naive.roc_auc,
    )
}

impl<S: HistoryStore> App<S> {
    /// Promotes the challenger to champion, when it ranked the last `window`'s labelled contacts (the ones both
    /// models scored, nationally) better than both the champion and the naive rule. The files are rewritten, the
    /// change is written to the audit log, then the new champion serves; when the audit entry cannot be written
    /// the files are put back and nothing changes.
    pub async fn promote_challenger(&self, actor: &Principal, reason: &str, window: &str) -> Result<ModelChange> {
        let (reason, window) = check_model_change(reason, window)?;
        let models = std::sync::Arc::clone(self.screener.models());
        let _promoting = models.lock_promotion().await;
        let report = models.quality_report(crate::grpc::now_ms());
        let paired = report.find(window, NATIONAL).and_then(|quality| quality.paired.clone());
        let Some(paired) = paired else {
            return Err(Error::ModelChangeRefused("no challenger is loaded: nothing to promote".into()));
        };
        if paired.challenger.state == QualityState::TooFewLabelled {
            return Err(Error::ModelChangeRefused(format!(
                "too few labelled contacts scored by both models over the last {window} to compare them: {} \
                 labelled, {} misuse; at least {} labelled with 10 of each class are needed",
                paired.challenger.labelled, paired.challenger.positives, report.min_labelled
            )));
        }
        let comparison = describe_comparison(window, &paired);
        if !paired.challenger_wins() {
            return Err(Error::ModelChangeRefused(format!(
                "the challenger does not beat both the champion and the naive rule: {comparison}"
            )));
        }
        let stager = std::sync::Arc::clone(&models);
        let staged = tokio::task::spawn_blocking(move || stager.stage_promotion())
            .await
            .map_err(|error| Error::ModelFilesUnavailable(format!("promotion task failed: {error}")))?
            .map_err(refused)?;
        if staged.version() != paired.challenger.subject || staged.replaced() != paired.champion.subject {
            models.abandon(staged);
            return Err(Error::ModelChangeRefused(
                "the models changed while the promotion was prepared: look at the comparison again".into(),
            ));
        }
        let audit = format!("promoted {} over {}; {comparison}; reason: {reason}", staged.version(), staged.replaced());
        let change = self.commit_model_change(staged, actor, "model_promoted", &audit, window).await?;
        Ok(ModelChange { comparison: Some(paired), ..change })
    }

    /// Rolls the champion back to the one it replaced (a second rollback undoes the first), audited.
    pub async fn rollback_champion(&self, actor: &Principal, reason: &str) -> Result<ModelChange> {
        let (reason, _) = check_model_change(reason, "")?;
        let models = std::sync::Arc::clone(self.screener.models());
        let _promoting = models.lock_promotion().await;
        let stager = std::sync::Arc::clone(&models);
        let staged = tokio::task::spawn_blocking(move || stager.stage_rollback())
            .await
            .map_err(|error| Error::ModelFilesUnavailable(format!("rollback task failed: {error}")))?
            .map_err(refused)?;
        let audit = format!("rolled back from {} to {}; reason: {reason}", staged.replaced(), staged.version());
        self.commit_model_change(staged, actor, "model_rolled_back", &audit, "").await
    }

    async fn commit_model_change(
        &self,
        staged: Staged,
        actor: &Principal,
        action: &str,
        audit: &str,
        window: &'static str,
    ) -> Result<ModelChange> {
        let models = self.screener.models();
        match self.escalator.store().append_model_event(actor, action, audit).await {
            Ok(audit_seq) => {
                let change = ModelChange {
                    version: staged.version().to_owned(),
                    replaced: staged.replaced().to_owned(),
                    audit_seq,
                    window,
                    comparison: None,
                };
                models.commit(staged);
                tracing::info!(actor = %actor.name, action, version = %change.version, replaced = %change.replaced, audit_seq, "model change");
                Ok(change)
            }
            Err(error) => {
                models.abandon(staged);
                Err(error.into())
            }
        }
    }
}
