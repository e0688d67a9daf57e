//! The operator's correction of a recorded disposition: offered by the disposition form when the contact was
//! recorded with another disposition (instead of a refusal), and sent here with a reason. The same path as gRPC
//! CorrectOutcome (`App::correct_outcome_by`), under the same rules; the answer says what changed, in the page's
//! language.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use saring_models::Disposition;
use serde::Deserialize;

use super::i18n::Lang;
use super::{lang, Shared};
use crate::auth::Role;
use crate::cases::LadderChange;
use crate::corrections::{CorrectionReport, CorrectionResult};
use crate::error::{Error, Violation};
use crate::store::HistoryStore;

#[derive(Deserialize)]
pub(super) struct CorrectionForm {
    disposition: String,
    reason: String,
}

/// The answer to a disposition that differs from the one recorded: a 409 that offers the correction, naming the
/// recorded disposition, for the form to show its reason field. `None` when the recorded outcome does not differ
/// in its disposition (another answer or talk time only): the refusal stands.
pub(super) async fn offer<S: HistoryStore>(
    console: &super::Console<S>,
    lang: Lang,
    contact_id: &str,
    chosen: Disposition,
) -> Option<Response> {
    let recorded = console.app.escalator.recorded_outcome(contact_id).await.ok()??;
    if recorded.disposition == chosen {
        return None;
    }
    let body = serde_json::json!({
        "error": format!(
            "{} {}. {}",
            lang.t("correction_offer"),
            recorded.disposition.as_str(),
            lang.t("correction_give_reason")
        ),
        "correctable": true,
        "recorded_disposition": recorded.disposition.as_str(),
    });
    Some((StatusCode::CONFLICT, Json(body)).into_response())
}

/// What a correction changed, in the page's language.
fn message(lang: Lang, result: &CorrectionResult) -> String {
    if result.unchanged {
        return lang.t("correction_unchanged").to_owned();
    }
    let mut parts =
        vec![format!("{}: {} → {}.", lang.t("corrected"), result.previous.as_str(), result.disposition.as_str())];
    if result.ladder.withdrawn.is_some() {
        parts.push(lang.t("correction_withdrawn").to_owned());
    } else if result.ladder.evidence_removed.is_some() {
        parts.push(lang.t("correction_evidence_removed").to_owned());
    }
    match result.ladder.change {
        LadderChange::Proposed => parts.push(lang.t("correction_proposed").to_owned()),
        LadderChange::EvidenceAdded => parts.push(lang.t("correction_evidence_added").to_owned()),
        LadderChange::SurgeSuppressed | LadderChange::None => {}
    }
    if !result.ladder.flagged.is_empty() {
        parts.push(lang.t("correction_flagged").to_owned());
    }
    parts.join(" ")
}

fn refused(lang: Lang, status: StatusCode, violations: &[Violation], message: Option<String>) -> Response {
    let named: Vec<String> =
        violations.iter().map(|violation| format!("{}: {}", violation.field, violation.description)).collect();
    let fields: Vec<serde_json::Value> = violations
        .iter()
        .map(|violation| serde_json::json!({ "field": violation.field, "description": violation.description }))
        .collect();
    let detail = message.unwrap_or_else(|| named.join("; "));
    let body = serde_json::json!({ "error": format!("{}: {detail}", lang.t("correction_refused")), "fields": fields });
    (status, Json(body)).into_response()
}

/// Corrects the disposition of a contact the operator recorded (or the routing engine did), under the operator's
/// name, as CorrectOutcome does.
pub(super) async fn correct<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Path(contact_id): Path<String>,
    Json(form): Json<CorrectionForm>,
) -> Response {
    let session = match console.session_for_change(&headers, &[Role::Operator], None) {
        Ok(session) => session,
        Err(denied) => return denied.into_response(),
    };
    let lang = lang(&headers);
    let Some(disposition) = Disposition::from_name(&form.disposition) else {
        let violation = Violation::new("disposition", format!("{:?} is not a disposition", form.disposition));
        return refused(lang, StatusCode::BAD_REQUEST, &[violation], None);
    };
    let report = CorrectionReport {
        contact_id: contact_id.clone(),
        contact: None,
        disposition,
        reason: form.reason,
        operator_id: None,
    };
    match console.app.correct_outcome_by(&session.principal, report).await {
        Ok(result) => Json(serde_json::json!({
            "contact_id": contact_id,
            "unchanged": result.unchanged,
            "previous": result.previous.as_str(),
            "disposition": result.disposition.as_str(),
            "message": message(lang, &result),
        }))
        .into_response(),
        Err(Error::InvalidArgument(violations)) => refused(lang, StatusCode::BAD_REQUEST, &violations, None),
        Err(Error::ContactNotFound(message)) => refused(lang, StatusCode::NOT_FOUND, &[], Some(message)),
        Err(Error::CorrectionRefused(message)) => refused(lang, StatusCode::CONFLICT, &[], Some(message)),
        Err(other) => {
            let status = tonic::Status::from(other);
            refused(lang, StatusCode::SERVICE_UNAVAILABLE, &[], Some(status.message().to_owned()))
        }
    }
}
