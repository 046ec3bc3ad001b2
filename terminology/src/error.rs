//! The one error type of the terminology crate: data-file problems found while loading, and
//! request problems found while answering `$lookup` / `$validate-code`.

/// Everything that can go wrong in this crate. Load-time variants name the file at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TerminologyError {
    /// A data file is not JSON.
    #[error("{file}: not valid JSON: {message}")]
    Json { file: String, message: String },
    /// A data file is JSON but not a usable CodeSystem, ValueSet or alias table.
    #[error("{file}: {reason}")]
    InvalidFile { file: String, reason: String },
    /// Two files of the same layer (built-in, or extra) define the same canonical URL.
    #[error("{url} is defined twice: in {first} and in {second}")]
    DuplicateUrl {
        url: String,
        first: String,
        second: String,
    },
    /// One alias is claimed by two different systems, or an alias is itself a canonical URL.
    #[error("system alias {alias} is claimed by both {first} and {second}")]
    AliasConflict {
        alias: String,
        first: String,
        second: String,
    },
    /// A ValueSet's `compose` names a ValueSet that is not loaded.
    #[error("{file}: value set {value_set} includes unknown value set {reference}")]
    UnknownValueSetReference {
        file: String,
        value_set: String,
        reference: String,
    },
    /// ValueSets that include each other in a loop.
    #[error("value set {value_set} includes itself (directly or through other value sets)")]
    ValueSetCycle { value_set: String },
    /// A concept maps to a vaccine type (or a vaccine type to a disease) that does not exist.
    #[error("{file}: {reason}")]
    DanglingMapping { file: String, reason: String },

    /// `$lookup` on a code system Musubi does not hold.
    #[error("Musubi does not know the code system {0}")]
    UnknownSystem(String),
    /// `$lookup` of a code absent from a code system Musubi holds completely.
    #[error("unknown code '{code}' in the code system {system}")]
    UnknownCode { system: String, code: String },
    /// `$lookup` of a code absent from a code system Musubi holds only in part
    /// (`content: fragment`): the code may well exist, Musubi cannot tell.
    #[error(
        "the code '{code}' is not known in Musubi's subset of {system}; Musubi ships only part of this code system, so the code may still be valid"
    )]
    CodeNotInSubset { system: String, code: String },
    /// A ValueSet URL Musubi does not hold.
    #[error("Musubi does not know the value set {0}")]
    UnknownValueSet(String),
    /// The request itself is incomplete (e.g. `$validate-code` with neither system nor value set).
    #[error("{0}")]
    InvalidRequest(String),
}
