//! The crate's one error type, with the HTTP status and OAuth error code a gateway answers with.

use thiserror::Error;

/// Why a JWT (an access token or a client assertion) was refused.
///
/// Kept apart from [`AuthError`] so the same checks can be reported as `invalid_token` (an access
/// token, RFC 6750 §3.1) or as `invalid_client` (a client assertion, RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    /// Not three base64url parts, or a part is not the JSON it must be.
    #[error("malformed JWT: {0}")]
    Malformed(String),
    /// The `alg` header names an algorithm this verifier does not accept for this key
    /// (`none`, HS256, or an algorithm the key does not declare).
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(String),
    /// The `typ` header is not the one the profile requires.
    #[error("token type {0:?} is not accepted")]
    Type(String),
    /// No key with this `kid` (or no `kid` at all).
    #[error("no key with kid {0:?}")]
    UnknownKey(String),
    /// The signature does not match the header and payload.
    #[error("signature does not verify")]
    Signature,
    /// `exp` has passed (beyond the leeway).
    #[error("expired at {exp}, now {now}")]
    Expired { exp: i64, now: i64 },
    /// `nbf` or `iat` lies in the future (beyond the leeway).
    #[error("not valid before {not_before}, now {now}")]
    NotYetValid { not_before: i64, now: i64 },
    /// `exp` lies further ahead than the profile allows (client assertions: five minutes).
    #[error("lifetime too long: exp {exp}, latest allowed {latest}")]
    LifetimeTooLong { exp: i64, latest: i64 },
    /// `iss` is not the expected issuer.
    #[error("issuer {found:?} is not {expected:?}")]
    Issuer { expected: String, found: String },
    /// `aud` does not contain the expected audience.
    #[error("audience {found:?} does not contain {expected:?}")]
    Audience { expected: String, found: String },
    /// A required claim is absent or empty.
    #[error("claim {0:?} is missing")]
    MissingClaim(&'static str),
    /// The token was revoked (RFC 7009).
    #[error("token was revoked")]
    Revoked,
    /// A client assertion's `jti` was already seen for this client (replay).
    #[error("jti {0:?} was already used")]
    Replay(String),
}

/// Every failure of this crate. [`AuthError::status`] and [`AuthError::oauth_error`] give the
/// answer a gateway returns; the `Display` text is safe to put in an OperationOutcome or an
/// `error_description` (it never contains a secret or a token).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The client registry is misconfigured (found at start-up).
    #[error("client {client:?}: {problem}")]
    Config { client: String, problem: String },
    /// A scope string does not parse.
    #[error("invalid scope {scope:?}: {reason}")]
    InvalidScope { scope: String, reason: String },
    /// A malformed OAuth request (missing or contradictory parameters).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Client authentication failed: unknown client, wrong secret, wrong certificate.
    #[error("client authentication failed for {client_id:?}: {reason}")]
    InvalidClient { client_id: String, reason: String },
    /// A private_key_jwt client assertion was refused.
    #[error("client assertion refused: {0}")]
    InvalidClientAssertion(Rejection),
    /// The client may not use this grant type.
    #[error("client {client_id:?} may not use grant type {grant_type:?}")]
    UnauthorizedClient {
        client_id: String,
        grant_type: String,
    },
    /// An authorization code or refresh token is unknown, expired, used, revoked or bound to
    /// another client / redirect URI / PKCE challenge.
    #[error("invalid grant: {0}")]
    InvalidGrant(String),
    /// A refresh token was presented a second time; its whole family is now revoked.
    #[error("refresh token reused; the grant family was revoked")]
    RefreshReuse,
    /// An access token was refused.
    #[error("invalid access token: {0}")]
    InvalidToken(Rejection),
    /// The token is valid but lacks the scope the interaction needs.
    #[error("insufficient scope: {missing} is required")]
    InsufficientScope { missing: String },
    /// A key could not be loaded, parsed or used.
    #[error("key problem: {0}")]
    Key(String),
    /// Hashing a secret failed (never a mismatch: that is `InvalidClient`).
    #[error("secret hashing failed: {0}")]
    Hash(String),
    /// A bounded cache that must not evict live entries is full (fail closed).
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// The HTTP status a gateway answers with.
    ///
    /// Token-endpoint errors follow RFC 6749 §5.2 (400, or 401 for `invalid_client`); resource
    /// errors follow RFC 6750 §3.1 (401 `invalid_token`, 403 `insufficient_scope`).
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Config { .. } | AuthError::Key(_) | AuthError::Hash(_) => 500,
            AuthError::Unavailable(_) => 503,
            AuthError::InvalidClient { .. }
            | AuthError::InvalidClientAssertion(_)
            | AuthError::InvalidToken(_) => 401,
            AuthError::InsufficientScope { .. } => 403,
            AuthError::InvalidScope { .. }
            | AuthError::InvalidRequest(_)
            | AuthError::UnauthorizedClient { .. }
            | AuthError::InvalidGrant(_)
            | AuthError::RefreshReuse => 400,
        }
    }

    /// The OAuth `error` code (RFC 6749 §5.2, RFC 6750 §3.1).
    pub fn oauth_error(&self) -> &'static str {
        match self {
            AuthError::Config { .. } | AuthError::Key(_) | AuthError::Hash(_) => "server_error",
            AuthError::Unavailable(_) => "temporarily_unavailable",
            AuthError::InvalidScope { .. } => "invalid_scope",
            AuthError::InvalidRequest(_) => "invalid_request",
            AuthError::InvalidClient { .. } | AuthError::InvalidClientAssertion(_) => {
                "invalid_client"
            }
            AuthError::UnauthorizedClient { .. } => "unauthorized_client",
            AuthError::InvalidGrant(_) | AuthError::RefreshReuse => "invalid_grant",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::InsufficientScope { .. } => "insufficient_scope",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_per_rfc() {
        let cases: Vec<(AuthError, u16, &str)> = vec![
            (
                AuthError::InvalidToken(Rejection::Signature),
                401,
                "invalid_token",
            ),
            (
                AuthError::InsufficientScope {
                    missing: "patient/Immunization.c".into(),
                },
                403,
                "insufficient_scope",
            ),
            (
                AuthError::InvalidClientAssertion(Rejection::Replay("j".into())),
                401,
                "invalid_client",
            ),
            (AuthError::RefreshReuse, 400, "invalid_grant"),
            (
                AuthError::InvalidScope {
                    scope: "x".into(),
                    reason: "y".into(),
                },
                400,
                "invalid_scope",
            ),
            (
                AuthError::UnauthorizedClient {
                    client_id: "c".into(),
                    grant_type: "g".into(),
                },
                400,
                "unauthorized_client",
            ),
            (
                AuthError::Unavailable("full".into()),
                503,
                "temporarily_unavailable",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status(), status, "{error}");
            assert_eq!(error.oauth_error(), code, "{error}");
        }
    }
}
