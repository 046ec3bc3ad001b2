//! The one error type of the crate.

use crate::SchemaViolation;

/// What can go wrong loading the tables or mapping a payload.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PhrError {
    /// A data file could not be read as what it claims to be.
    #[error("{file}: {problem}")]
    Data { file: String, problem: String },
    /// The payload breaks its schema or a semantic rule; each violation has a JSON pointer.
    #[error("the payload is invalid ({} problem(s), first at {:?})", .0.len(), .0.first().map(|v| v.pointer.as_str()).unwrap_or(""))]
    Invalid(Vec<SchemaViolation>),
    /// `to_fhir` on a read-only shape (vaccination history, schedule).
    #[error("{0} is read-only: it is made from FHIR resources, never posted")]
    ReadOnly(&'static str),
    /// A resource handed to `from_fhir` does not fit the shape asked for.
    #[error("{resource}: {problem}")]
    Resource { resource: String, problem: String },
}
