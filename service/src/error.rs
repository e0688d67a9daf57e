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
    /// The case moved on (another decision came first, or it is in another state); nothing was applied.
    #[error("{0}")]
    CaseConflict(String),
    /// The contact's outcome was recorded before with other content; the first one stands, nothing was applied.
    #[error("{0}")]
    AlreadyExists(String),
}

impl From<crate::cases::CaseError> for Error {
    fn from(error: crate::cases::CaseError) -> Self {
        use crate::cases::CaseError;
        match error {
            CaseError::NotFound(case_id) => Error::CaseNotFound(case_id),
            CaseError::Conflict { message, .. } => Error::CaseConflict(message),
            CaseError::Invalid { field, description } => {
                Error::InvalidArgument(vec![Violation::new(field, description)])
            }
            CaseError::Exists(message) => Error::AlreadyExists(message),
            CaseError::Database(error) => {
                tracing::warn!(%error, "case database error");
                Error::CasesUnavailable(error.to_string())
            }
            corrupt @ CaseError::Corrupt { .. } => {
                tracing::error!(error = %corrupt, "case database holds data saring did not write");
                Error::CasesUnavailable(corrupt.to_string())
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
            Error::CaseConflict(_) => Status::failed_precondition(message),
            Error::AlreadyExists(_) => Status::already_exists(message),
            Error::StoreUnavailable(_) | Error::CasesUnavailable(_) => Status::with_error_details(
                Code::Unavailable,
                message,
                ErrorDetails::with_retry_info(Some(std::time::Duration::from_millis(100))),
            ),
        }
    }
}
