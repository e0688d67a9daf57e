//! The service's errors and their one mapping to gRPC status codes.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// A request field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field's path in the request, e.g. `contact.location.lat`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Violation { field: field.into(), description: description.into() }
    }
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; every bad field is named.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<Violation>),
    /// A store could not take a write; nothing was acknowledged, the caller should retry.
    #[error("history store unavailable: {0}")]
    StoreUnavailable(String),
    /// The case database failed; nothing was applied, the caller should retry.
    #[error("case database unavailable: {0}")]
    CasesUnavailable(String),
    /// No such case.
    #[error("no case {0}")]
    CaseNotFound(String),
    /// A legal hold stands on the number: nothing was erased.
    #[error("{message}")]
    LegalHold {
        /// What holds it and what to do.
        message: String,
        /// The holding case.
        case_id: String,
    },
    /// The case moved on (another decision came first, or it is in another state); nothing was applied.
    #[error("{message}")]
    CaseConflict {
        /// What happened, naming the other decision.
        message: String,
        /// The case.
        case_id: String,
        /// True when the caller's version was stale (retry after reading again): ABORTED; otherwise the case's
        /// state does not allow the change: FAILED_PRECONDITION.
        stale: bool,
    },
    /// The case database holds data saring did not write: retrying does not help; an administrator must look.
    #[error("case database holds data saring did not write: {0}")]
    CasesCorrupt(String),
    /// A promotion or rollback was refused (the comparison, or the setup, does not allow it); nothing changed.
    #[error("refused, the champion keeps serving: {0}")]
    ModelChangeRefused(String),
    /// The model files could not be rewritten; nothing changed, the caller may retry.
    #[error("model files unavailable: {0}")]
    ModelFilesUnavailable(String),
    /// The contact's outcome was recorded before with other content; the first one stands, nothing was applied.
    #[error("{0}")]
    AlreadyExists(String),
    /// No outcome is recorded for the contact a correction names.
    #[error("{0}")]
    ContactNotFound(String),
    /// A correction the rules do not allow now (outside the correction window, or of an outcome saring keeps no
    /// durable record of); nothing changed.
    #[error("correction refused: {0}")]
    CorrectionRefused(String),
}

impl From<crate::cases::CaseError> for Error {
    fn from(error: crate::cases::CaseError) -> Self {
        use crate::cases::CaseError;
        match error {
            CaseError::NotFound(case_id) => Error::CaseNotFound(case_id),
            CaseError::Conflict { message, current, stale } => {
                Error::CaseConflict { message, case_id: current.case_id, stale }
            }
            CaseError::Invalid { field, description } => {
                Error::InvalidArgument(vec![Violation::new(field, description)])
            }
            CaseError::Exists(message) => Error::AlreadyExists(message),
            held @ CaseError::Held { .. } => {
                let message = held.to_string();
                let CaseError::Held { case_id, .. } = held else { unreachable!() };
                Error::LegalHold { message, case_id }
            }
            unknown @ CaseError::UnknownContact(_) => Error::ContactNotFound(unknown.to_string()),
            CaseError::Database(error) => {
                tracing::warn!(%error, "case database error");
                Error::CasesUnavailable(error.to_string())
            }
            corrupt @ CaseError::Corrupt { .. } => {
                tracing::error!(error = %corrupt, "case database holds data saring did not write");
                Error::CasesCorrupt(corrupt.to_string())
            }
        }
    }
}

fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|violation| format!("{}: {}", violation.field, violation.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::InvalidArgument(violations) => {
                let field_violations: Vec<FieldViolation> = violations
                    .into_iter()
                    .map(|violation| FieldViolation::new(violation.field, violation.description))
                    .collect();
                Status::with_error_details(
                    Code::InvalidArgument,
                    message,
                    ErrorDetails::with_bad_request(field_violations),
                )
            }
            Error::CaseNotFound(_) => Status::not_found(message),
            Error::CaseConflict { case_id, stale, .. } => {
                // gRPC's guide: a lost race (read-modify-write) is ABORTED, to be retried after reading again;
                // a state that does not allow the change is FAILED_PRECONDITION. Both carry PreconditionFailure.
                let (code, kind) = if stale { (Code::Aborted, "VERSION") } else { (Code::FailedPrecondition, "STATE") };
                Status::with_error_details(
                    code,
                    message.clone(),
                    ErrorDetails::with_precondition_failure(vec![tonic_types::PreconditionViolation::new(
                        kind,
                        format!("case/{case_id}"),
                        message,
                    )]),
                )
            }
            Error::LegalHold { case_id, .. } => Status::with_error_details(
                Code::FailedPrecondition,
                message.clone(),
                ErrorDetails::with_precondition_failure(vec![tonic_types::PreconditionViolation::new(
                    "LEGAL_HOLD",
                    format!("case/{case_id}"),
                    message,
                )]),
            ),
            Error::ModelChangeRefused(_) => Status::failed_precondition(message),
            Error::AlreadyExists(_) => Status::already_exists(message),
            Error::ContactNotFound(_) => Status::not_found(message),
            Error::CorrectionRefused(_) => Status::failed_precondition(message),
            // Store errors are logged where they happen; clients get what they need to act, not the driver's text.
            Error::StoreUnavailable(detail) => {
                tracing::warn!(%detail, "history store unavailable");
                unavailable("history store unavailable; nothing was recorded, retry")
            }
            Error::CasesUnavailable(detail) => {
                tracing::debug!(%detail, "case database unavailable");
                unavailable("case database unavailable; nothing was applied, retry")
            }
            Error::ModelFilesUnavailable(detail) => {
                tracing::warn!(%detail, "model files unavailable");
                unavailable("model files could not be rewritten; nothing changed, retry")
            }
            Error::CasesCorrupt(_) => Status::internal(
                "the case database holds data saring did not write; an administrator must look (logged)",
            ),
        }
    }
}

/// A refusal the caller should retry after `retry_after`: a `google.rpc.RetryInfo` detail and the
/// `grpc-retry-pushback-ms` metadata gRFC A6 clients read (whole milliseconds, at least 1).
pub fn pushback(code: Code, message: String, retry_after: std::time::Duration) -> Status {
    let retry_ms = retry_after.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
    let mut status = Status::with_error_details(
        code,
        message,
        ErrorDetails::with_retry_info(Some(std::time::Duration::from_millis(retry_ms))),
    );
    status.metadata_mut().insert("grpc-retry-pushback-ms", retry_ms.into());
    status
}

fn unavailable(message: &str) -> Status {
    Status::with_error_details(
        Code::Unavailable,
        message,
        ErrorDetails::with_retry_info(Some(std::time::Duration::from_millis(100))),
    )
}
