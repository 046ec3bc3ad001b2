//! The crate's one error type: problems in the questionnaire data files.

/// A data file (embedded or supplied at run time) that cannot be used. Every variant names the
/// file so that a municipality correcting a form sees where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrevaccinationError {
    /// The file is not JSON, or not a shape this crate knows.
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    /// A Questionnaire breaks a structural rule (duplicate linkId, enableWhen target missing or
    /// later in the form, malformed rule extension, …).
    #[error("{file}: invalid Questionnaire {url}: {message}")]
    InvalidQuestionnaire {
        file: String,
        url: String,
        message: String,
    },
    /// Two files define the same Questionnaire url|version, or one map lists a vaccine type twice.
    #[error("{file}: duplicate {what}")]
    Duplicate { file: String, what: String },
    /// The vaccine-type map points at a Questionnaire that no file defines.
    #[error("{file}: vaccine type {vaccine_type} maps to {canonical}, which no file defines")]
    UnknownQuestionnaire {
        file: String,
        vaccine_type: String,
        canonical: String,
    },
}
