//! The one error type of the portal adapter: what went wrong, told apart so the gateway can map
//! each kind once (consent problems, authorisation, rate limits, upstream faults, timeouts,
//! malformed answers, bad data files or configuration).

use time::OffsetDateTime;

/// Every failure of the portal adapter.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// The 90-day continuous-access consent (期間連携) has run out; the person must consent
    /// again. Raised before any request is made, or when the portal itself says so.
    #[error(
        "the person's continuous-access consent expired at {expired_at:?}; a new authorisation is needed"
    )]
    ConsentExpired { expired_at: Option<OffsetDateTime> },
    /// The person withdrew the consent (here or at the portal).
    #[error(
        "the person's continuous-access consent was revoked{}; a new authorisation is needed",
        revoked_at.map(|t| format!(" at {t}")).unwrap_or_default()
    )]
    ConsentRevoked { revoked_at: Option<OffsetDateTime> },
    /// The portal did not accept the client or the person's tokens (after one refresh), or the
    /// person refused the authorisation.
    #[error("not authorised by the portal: {reason}")]
    Unauthorised { reason: String },
    /// Still answered 429 after the retries, or asked to wait longer than the policy allows.
    #[error(
        "rate-limited by the portal after {attempts} attempt(s){}",
        retry_after.map(|d| format!("; it asks to retry after {} s", d.as_secs())).unwrap_or_default()
    )]
    RateLimited {
        attempts: u32,
        retry_after: Option<std::time::Duration>,
    },
    /// A server error after the retries, a connection failure, or a 4xx that is not retried.
    #[error(
        "portal error after {attempts} attempt(s){}: {detail}",
        status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
    )]
    Upstream {
        status: Option<u16>,
        attempts: u32,
        detail: String,
    },
    /// Every attempt timed out.
    #[error("the portal did not answer in time ({attempts} attempt(s))")]
    Timeout { attempts: u32 },
    /// The answer does not have the shape the layout describes; `pointer` is the JSON pointer
    /// (RFC 6901) into the answer of what was wrong, `context` names the answer.
    #[error("malformed portal answer ({context}) at {pointer:?}: {reason}")]
    Malformed {
        context: String,
        pointer: String,
        reason: String,
    },
    /// A data file in profiles/jp/portal (or an extra one) is wrong.
    #[error("portal data file {file}: {reason}")]
    Data { file: String, reason: String },
    /// The configuration cannot be used (bad URL, certificate or key).
    #[error("portal configuration: {0}")]
    Config(String),
    /// The authorisation callback does not belong to the pending authorisation.
    #[error("the authorisation callback's state does not match the pending authorisation")]
    StateMismatch,
}

impl PortalError {
    pub(crate) fn malformed(
        context: impl Into<String>,
        pointer: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        PortalError::Malformed {
            context: context.into(),
            pointer: pointer.into(),
            reason: reason.into(),
        }
    }
}
