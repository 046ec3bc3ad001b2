//! The routing crate's one error type.

/// What went wrong loading routing data or applying a delivery transition.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
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
    /// A delivery-state transition that the state machine does not allow.
    #[error("a delivery in state {from} cannot take the event {event}")]
    Transition {
        from: &'static str,
        event: &'static str,
    },
    /// A retry was started before its backoff had elapsed, or a scheduled delivery before its
    /// day.
    #[error("the delivery is waiting until {until}; it is not due yet")]
    NotDue { until: time::OffsetDateTime },
}
