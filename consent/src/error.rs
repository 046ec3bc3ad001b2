//! The crate's one error type: bad data files, Consent resources that cannot be read, and inputs
//! the redaction and pseudonymisation helpers refuse.

use fhir::validate::{Issue, IssueType, Severity};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    /// A data file of profiles/jp/consent (or an extra file given at run time) is wrong.
    #[error("consent data file {file}: {problem}")]
    Data { file: String, problem: String },
    /// A Consent resource does not follow Musubi's encoding (docs/consent.md).
    #[error("Consent {id}: {expression}: {problem}")]
    Consent {
        /// `Consent/{id}`, or `Consent (no id)`.
        id: String,
        /// FHIRPath-style location, e.g. `Consent.provision.provision[1].actor[0]`.
        expression: String,
        problem: String,
    },
    /// A value given to a constructor is not valid (purpose code, data class, project id, key…).
    #[error("invalid {what}: {problem}")]
    Invalid { what: &'static str, problem: String },
    /// A resource handed to redaction or pseudonymisation cannot be processed.
    #[error("{expression}: {problem}")]
    Resource { expression: String, problem: String },
}

impl ConsentError {
    /// The error as a validation issue, so the gateway maps it to OperationOutcome once (for
    /// example when a client writes a Consent that Musubi cannot enforce).
    pub fn to_issue(&self) -> Issue {
        let (code, expression) = match self {
            ConsentError::Consent { expression, .. } => (IssueType::Invalid, expression.clone()),
            ConsentError::Resource { expression, .. } => (IssueType::Invalid, expression.clone()),
            ConsentError::Data { .. } => (IssueType::Invalid, String::new()),
            ConsentError::Invalid { .. } => (IssueType::Value, String::new()),
        };
        Issue {
            severity: Severity::Error,
            code,
            expression,
            diagnostics: self.to_string(),
        }
    }
}
