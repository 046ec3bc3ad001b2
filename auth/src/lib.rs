//! Access control for Musubi without I/O: the client registry, SMART v1/v2 scopes, ES256 access
//! tokens and their JWKS, private_key_jwt client assertions, PKCE, authorization codes and
//! rotating refresh tokens (docs/access.md).
//!
//! Nothing here reads a clock, a file or the network: every decision takes `now`, and the
//! gateway owns the HTTP routes, the key files and the persistent grant store. The only outside
//! input is the operating system's random source, for keys, salts and opaque tokens.

pub mod assertions;
pub mod clients;
mod error;
pub mod external;
pub mod grants;
pub mod jwk;
pub mod pkce;
pub mod scopes;
pub mod tokens;

pub use assertions::{AssertionRules, JWT_BEARER, ReplayCache, verify_client_assertion};
pub use clients::{
    CertificateBinding, Client, ClientKind, Credentials, GrantType, RegisteredClient, Registry,
    hash_secret, verify_secret,
};
pub use error::{AuthError, Rejection};
pub use external::{ExternalIssuers, TrustedIssuer};
pub use grants::{
    CodeGrant, CodeRequest, GrantStore, IntrospectionResponse, LaunchContext, MemoryGrants,
    RefreshGrant, RevocationRequest, Revoked, TokenResponse, introspect, issue_code, issue_refresh,
    redeem_code, revoke, rotate_refresh,
};
pub use jwk::{Jwk, Jwks};
pub use scopes::{
    ClinicalScope, Context, Decision, Interaction, OperationPermissions, Permissions, Restriction,
    Scope, ScopeSet, authorize, grant,
};
pub use tokens::{
    AccessClaims, Confirmation, Expected, KeyRing, KeyRingPem, VerifyCache, certificate_thumbprint,
    issue, verify,
};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::RngCore;

/// `bytes` random bytes from the operating system, base64url without padding: opaque codes,
/// refresh tokens, `jti`s and grant-family ids.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand_core::OsRng.fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}
