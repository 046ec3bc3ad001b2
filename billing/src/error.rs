//! The billing crate's one error type.

/// What went wrong loading billing data.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// A data file is not valid JSON or does not have the expected shape.
    #[error("{file}: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    /// A data file is well-formed JSON but breaks a rule of the format.
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}
