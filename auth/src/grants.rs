//! Authorization codes and rotating refresh tokens behind a storage trait, plus the token,
//! revocation (RFC 7009) and introspection (RFC 7662) answers.
//!
//! Both kinds of token are opaque random strings handed to the client once; only their SHA-256
//! is stored, so a leaked store yields nothing usable. The rules live in the functions here; a
//! [`GrantStore`] only has to make `take_code` and `take_refresh` atomic.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::scopes::{ScopeSet, grant};
use crate::tokens::{AccessClaims, Expected, KeyRing, VerifyCache};
use crate::{AuthError, pkce, random_token};

/// Authorization codes live 60 seconds (RFC 6749 §4.1.2 recommends at most 10 minutes; a
/// client redeems its code immediately).
pub const CODE_LIFETIME: i64 = 60;

/// SHA-256 of an opaque token: the only form in which the store sees it.
pub type TokenHash = [u8; 32];

/// SHA-256 of an opaque token.
pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// SMART launch context carried from the authorization to every token of the grant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LaunchContext {
    /// The patient chosen at launch (for a parent: one of their children).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The user's FHIR resource (`RelatedPerson/…`, `Practitioner/…`).
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
}

/// What an authorization request produced, to be bound to the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// The S256 `code_challenge`.
    pub code_challenge: String,
    /// The authenticated user (the access token's `sub`).
    pub user: String,
    /// The scopes granted (already downscoped with [`grant`]).
    pub scope: ScopeSet,
    pub context: LaunchContext,
}

/// A stored authorization code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub user: String,
    pub scope: ScopeSet,
    pub context: LaunchContext,
    pub expires_at: i64,
    /// The refresh-token family this code starts; revoked if the code is presented twice.
    pub family: String,
}

/// A stored refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshGrant {
    /// All tokens descending from one authorization share it.
    pub family: String,
    pub client_id: String,
    pub user: String,
    pub scope: ScopeSet,
    pub context: LaunchContext,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// The life of one refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefreshState {
    /// Not yet used.
    Active,
    /// Exchanged once; presenting it again is theft or a replay.
    Used,
    /// Its family was revoked.
    Revoked,
}

/// The result of consuming a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeTake {
    Fresh(CodeGrant),
    /// Already consumed (the store keeps a tombstone until the code would have expired).
    Used {
        family: String,
    },
    Unknown,
}

/// The result of consuming a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshTake {
    Fresh(RefreshGrant),
    Used(RefreshGrant),
    Revoked(RefreshGrant),
    Unknown,
}

/// Storage for codes and refresh tokens. Implementations must make each method atomic: two
/// concurrent `take_code` calls for one code must not both see `Fresh`.
pub trait GrantStore: Send + Sync {
    fn insert_code(&self, hash: TokenHash, grant: CodeGrant) -> Result<(), AuthError>;
    /// Consumes a code: the first call sees `Fresh`, later ones `Used` until `expires_at`.
    fn take_code(&self, hash: &TokenHash) -> Result<CodeTake, AuthError>;
    /// Fails if the family was revoked.
    fn insert_refresh(&self, hash: TokenHash, grant: RefreshGrant) -> Result<(), AuthError>;
    /// Reads a refresh token without consuming it.
    fn peek_refresh(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<(RefreshState, RefreshGrant)>, AuthError>;
    /// Consumes a refresh token: an `Active` one becomes `Used` and is returned as `Fresh`.
    fn take_refresh(&self, hash: &TokenHash) -> Result<RefreshTake, AuthError>;
    /// Revokes every refresh token of the family, including ones inserted later (at least until
    /// the family's last token would have expired, and for a day if it has none yet).
    fn revoke_family(&self, family: &str, now: i64) -> Result<(), AuthError>;
    /// Forgets codes, tombstones, tokens and revoked families past their expiry.
    fn purge(&self, now: i64) -> Result<(), AuthError>;
}

/// The in-memory [`GrantStore`] (lost on restart; the gateway adds a persistent one).
#[derive(Debug, Default)]
pub struct MemoryGrants {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    codes: HashMap<TokenHash, CodeEntry>,
    refresh: HashMap<TokenHash, (RefreshState, RefreshGrant)>,
    /// Revoked family → when its last token expires.
    revoked_families: HashMap<String, i64>,
}

#[derive(Debug)]
enum CodeEntry {
    Fresh(CodeGrant),
    Used { family: String, until: i64 },
}

impl MemoryGrants {
    pub fn new() -> MemoryGrants {
        MemoryGrants::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryInner> {
        // Every mutation below is a single map operation, so a poisoned lock still guards
        // consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GrantStore for MemoryGrants {
    fn insert_code(&self, hash: TokenHash, grant: CodeGrant) -> Result<(), AuthError> {
        self.lock().codes.insert(hash, CodeEntry::Fresh(grant));
        Ok(())
    }

    fn take_code(&self, hash: &TokenHash) -> Result<CodeTake, AuthError> {
        let mut inner = self.lock();
        let Some(entry) = inner.codes.get_mut(hash) else {
            return Ok(CodeTake::Unknown);
        };
        Ok(match entry {
            CodeEntry::Used { family, .. } => CodeTake::Used {
                family: family.clone(),
            },
            CodeEntry::Fresh(grant) => {
                let grant = grant.clone();
                *entry = CodeEntry::Used {
                    family: grant.family.clone(),
                    until: grant.expires_at,
                };
                CodeTake::Fresh(grant)
            }
        })
    }

    fn insert_refresh(&self, hash: TokenHash, grant: RefreshGrant) -> Result<(), AuthError> {
        let mut inner = self.lock();
        if inner.revoked_families.contains_key(&grant.family) {
            return Err(AuthError::InvalidGrant("the grant was revoked".into()));
        }
        inner.refresh.insert(hash, (RefreshState::Active, grant));
        Ok(())
    }

    fn peek_refresh(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<(RefreshState, RefreshGrant)>, AuthError> {
        Ok(self.lock().refresh.get(hash).cloned())
    }

    fn take_refresh(&self, hash: &TokenHash) -> Result<RefreshTake, AuthError> {
        let mut inner = self.lock();
        let Some((state, grant)) = inner.refresh.get_mut(hash) else {
            return Ok(RefreshTake::Unknown);
        };
        Ok(match state {
            RefreshState::Active => {
                *state = RefreshState::Used;
                RefreshTake::Fresh(grant.clone())
            }
            RefreshState::Used => RefreshTake::Used(grant.clone()),
            RefreshState::Revoked => RefreshTake::Revoked(grant.clone()),
        })
    }

    fn revoke_family(&self, family: &str, now: i64) -> Result<(), AuthError> {
        let mut inner = self.lock();
        // A family with no token yet (a reused code) is remembered for a day, so a token being
        // issued from it concurrently cannot be inserted afterwards.
        let mut last = now + 86_400;
        for (state, grant) in inner.refresh.values_mut() {
            if grant.family == family {
                *state = RefreshState::Revoked;
                last = last.max(grant.expires_at);
            }
        }
        let entry = inner
            .revoked_families
            .entry(family.to_owned())
            .or_insert(last);
        *entry = (*entry).max(last);
        Ok(())
    }

    fn purge(&self, now: i64) -> Result<(), AuthError> {
        let mut inner = self.lock();
        inner.codes.retain(|_, entry| match entry {
            CodeEntry::Fresh(g) => g.expires_at > now,
            CodeEntry::Used { until, .. } => *until > now,
        });
        inner.refresh.retain(|_, (_, g)| g.expires_at > now);
        inner.revoked_families.retain(|_, until| *until > now);
        Ok(())
    }
}

/// Issues an authorization code bound to the request (client, redirect URI, PKCE challenge,
/// user, scopes, launch context); returns the code to send to the redirect URI.
pub fn issue_code(
    store: &dyn GrantStore,
    request: CodeRequest,
    now: OffsetDateTime,
) -> Result<String, AuthError> {
    pkce::check_challenge(&request.code_challenge)?;
    let code = random_token(32);
    let grant = CodeGrant {
        client_id: request.client_id,
        redirect_uri: request.redirect_uri,
        code_challenge: request.code_challenge,
        user: request.user,
        scope: request.scope,
        context: request.context,
        expires_at: now.unix_timestamp() + CODE_LIFETIME,
        family: random_token(16),
    };
    store.insert_code(token_hash(&code), grant)?;
    Ok(code)
}

/// Redeems a code at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6).
///
/// The code is consumed by the first attempt whatever its outcome. A second presentation
/// revokes the refresh tokens issued from it (RFC 6749 §4.1.2: the server SHOULD revoke tokens
/// previously issued based on that code).
pub fn redeem_code(
    store: &dyn GrantStore,
    code: &str,
    client_id: &str,
    redirect_uri: &str,
    code_verifier: &str,
    now: OffsetDateTime,
) -> Result<CodeGrant, AuthError> {
    let grant = match store.take_code(&token_hash(code))? {
        CodeTake::Fresh(grant) => grant,
        CodeTake::Used { family } => {
            store.revoke_family(&family, now.unix_timestamp())?;
            return Err(AuthError::InvalidGrant(
                "authorization code was already used; tokens issued from it are revoked".into(),
            ));
        }
        CodeTake::Unknown => {
            return Err(AuthError::InvalidGrant("unknown authorization code".into()));
        }
    };
    if now.unix_timestamp() >= grant.expires_at {
        return Err(AuthError::InvalidGrant("authorization code expired".into()));
    }
    if grant.client_id != client_id {
        return Err(AuthError::InvalidGrant(
            "authorization code was issued to another client".into(),
        ));
    }
    if grant.redirect_uri != redirect_uri {
        return Err(AuthError::InvalidGrant(
            "redirect_uri differs from the authorization request".into(),
        ));
    }
    pkce::verify_s256(code_verifier, &grant.code_challenge)?;
    Ok(grant)
}

/// Starts the refresh-token family of a redeemed code. Whether to issue one at all is the
/// caller's policy (SMART: when `offline_access` or `online_access` was granted).
pub fn issue_refresh(
    store: &dyn GrantStore,
    code: &CodeGrant,
    now: OffsetDateTime,
    lifetime_seconds: i64,
) -> Result<String, AuthError> {
    let at = now.unix_timestamp();
    insert_new_refresh(
        store,
        RefreshGrant {
            family: code.family.clone(),
            client_id: code.client_id.clone(),
            user: code.user.clone(),
            scope: code.scope.clone(),
            context: code.context.clone(),
            issued_at: at,
            expires_at: at + lifetime_seconds,
        },
    )
}

fn insert_new_refresh(store: &dyn GrantStore, grant: RefreshGrant) -> Result<String, AuthError> {
    let token = random_token(32);
    store.insert_refresh(token_hash(&token), grant)?;
    Ok(token)
}

/// Exchanges a refresh token for its successor (RFC 6749 §6 with rotation, RFC 9700 §4.14,
/// refresh-token protection): the old token is spent, the new one continues the family.
/// Presenting a spent token revokes the whole family ([`AuthError::RefreshReuse`]).
///
/// `requested` narrows the scope; it may not widen it (RFC 6749 §6).
pub fn rotate_refresh(
    store: &dyn GrantStore,
    token: &str,
    client_id: &str,
    requested: Option<&ScopeSet>,
    now: OffsetDateTime,
    lifetime_seconds: i64,
) -> Result<(String, RefreshGrant), AuthError> {
    let hash = token_hash(token);
    // The client check comes before consuming, so another client cannot burn a token it stole.
    let peeked = match store.peek_refresh(&hash)? {
        None => return Err(AuthError::InvalidGrant("unknown refresh token".into())),
        Some((_, grant)) if grant.client_id != client_id => {
            return Err(AuthError::InvalidGrant(
                "refresh token was issued to another client".into(),
            ));
        }
        Some((_, grant)) => grant,
    };
    // A malformed request must not spend the token either: decide the scope first. Scope
    // order does not matter (RFC 6749 §3.3: a space-delimited set).
    let scope = match requested {
        None => peeked.scope.clone(),
        Some(requested) => {
            let narrowed = grant(requested, &peeked.scope);
            // Compared with the request in the same normal form (merged, covered scopes
            // dropped), as sets.
            let normal = grant(requested, requested);
            let covered = normal.iter().all(|s| narrowed.contains(s))
                && narrowed.iter().all(|s| normal.contains(s));
            if !covered {
                return Err(AuthError::InvalidScope {
                    scope: requested.to_string(),
                    reason: "a refresh may not ask for more than was granted".into(),
                });
            }
            narrowed
        }
    };
    let old = match store.take_refresh(&hash)? {
        RefreshTake::Fresh(grant) => grant,
        RefreshTake::Used(grant) => {
            store.revoke_family(&grant.family, now.unix_timestamp())?;
            return Err(AuthError::RefreshReuse);
        }
        RefreshTake::Revoked(_) => {
            return Err(AuthError::InvalidGrant("refresh token was revoked".into()));
        }
        RefreshTake::Unknown => {
            return Err(AuthError::InvalidGrant("unknown refresh token".into()));
        }
    };
    let at = now.unix_timestamp();
    if at >= old.expires_at {
        return Err(AuthError::InvalidGrant("refresh token expired".into()));
    }
    let next = RefreshGrant {
        scope,
        issued_at: at,
        expires_at: at + lifetime_seconds,
        ..old
    };
    let new_token = insert_new_refresh(store, next.clone())?;
    Ok((new_token, next))
}

/// The token endpoint's success answer (RFC 6749 §5.1 with SMART's launch context).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer` (or `DPoP` one day); RFC 8705-bound tokens stay `Bearer`.
    pub token_type: String,
    pub expires_in: i64,
    pub scope: ScopeSet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
}

/// An RFC 7009 revocation request (form fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRequest {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type_hint: Option<String>,
}

/// What a revocation did; the HTTP answer is 200 with an empty body in every case
/// (RFC 7009 §2.2: an unknown or invalid token is not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// A refresh token: its whole family (RFC 7009 §2.1: revoking a refresh token SHOULD also
    /// invalidate the grant's other tokens).
    RefreshFamily(String),
    /// An access token: its `jti` is refused until its `exp`.
    AccessToken { jti: String },
    /// Nothing known under that token.
    Nothing,
}

/// Revokes a token presented by `client_id` (already authenticated). The hint only orders the
/// search (RFC 7009 §2.1). A token issued to another client is refused.
pub fn revoke(
    store: &dyn GrantStore,
    ring: &KeyRing,
    cache: &VerifyCache,
    expected: &Expected,
    client_id: &str,
    request: &RevocationRequest,
    now: OffsetDateTime,
) -> Result<Revoked, AuthError> {
    let not_yours = || AuthError::InvalidRequest("the token was not issued to this client".into());
    if let Some((_, grant)) = store.peek_refresh(&token_hash(&request.token))? {
        if grant.client_id != client_id {
            return Err(not_yours());
        }
        store.revoke_family(&grant.family, now.unix_timestamp())?;
        return Ok(Revoked::RefreshFamily(grant.family));
    }
    match cache.verify(ring, &request.token, now, expected) {
        Ok(claims) => {
            if claims.client_id != client_id {
                return Err(not_yours());
            }
            cache.revoke(&claims.jti, claims.exp);
            Ok(Revoked::AccessToken {
                jti: claims.jti.clone(),
            })
        }
        // Expired, foreign or garbage: nothing to revoke, and no error (RFC 7009 §2.2).
        Err(_) => Ok(Revoked::Nothing),
    }
}

/// An RFC 7662 introspection answer, with SMART's context members ("Token Introspection":
/// an active answer includes `scope`, `client_id`, `exp`, and `patient` / `fhirUser` when the
/// token carries them). An inactive answer is `{"active": false}` and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IntrospectionResponse {
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<crate::tokens::Confirmation>,
}

impl IntrospectionResponse {
    pub fn inactive() -> IntrospectionResponse {
        IntrospectionResponse::default()
    }

    pub fn from_access(claims: &AccessClaims) -> IntrospectionResponse {
        IntrospectionResponse {
            active: true,
            scope: Some(claims.scope.clone()),
            client_id: Some(claims.client_id.clone()),
            token_type: Some("Bearer".into()),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            sub: Some(claims.sub.clone()),
            aud: Some(claims.aud.clone()),
            iss: Some(claims.iss.clone()),
            jti: Some(claims.jti.clone()),
            patient: claims.patient.clone(),
            fhir_user: claims.fhir_user.clone(),
            cnf: claims.cnf.clone(),
        }
    }

    pub fn from_refresh(grant: &RefreshGrant) -> IntrospectionResponse {
        IntrospectionResponse {
            active: true,
            scope: Some(grant.scope.clone()),
            client_id: Some(grant.client_id.clone()),
            token_type: Some("refresh_token".into()),
            exp: Some(grant.expires_at),
            iat: Some(grant.issued_at),
            sub: Some(grant.user.clone()),
            patient: grant.context.patient.clone(),
            fhir_user: grant.context.fhir_user.clone(),
            ..IntrospectionResponse::default()
        }
    }
}

/// Answers an introspection request for any token: an access token that verifies, or a refresh
/// token that is unused, unrevoked and unexpired, is active; anything else is inactive.
pub fn introspect(
    store: &dyn GrantStore,
    ring: &KeyRing,
    cache: &VerifyCache,
    expected: &Expected,
    token: &str,
    now: OffsetDateTime,
) -> Result<IntrospectionResponse, AuthError> {
    if let Some((state, grant)) = store.peek_refresh(&token_hash(token))? {
        let live = state == RefreshState::Active && now.unix_timestamp() < grant.expires_at;
        return Ok(if live {
            IntrospectionResponse::from_refresh(&grant)
        } else {
            IntrospectionResponse::inactive()
        });
    }
    Ok(match cache.verify(ring, token, now, expected) {
        Ok(claims) => IntrospectionResponse::from_access(&claims),
        Err(_) => IntrospectionResponse::inactive(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkce::challenge_s256;
    use time::macros::datetime;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const REDIRECT: &str = "https://phr.example.jp/callback";

    fn now() -> OffsetDateTime {
        datetime!(2026-04-01 09:00 UTC)
    }

    fn secs(n: i64) -> time::Duration {
        time::Duration::seconds(n)
    }

    fn request() -> CodeRequest {
        CodeRequest {
            client_id: "phr".into(),
            redirect_uri: REDIRECT.into(),
            code_challenge: challenge_s256(VERIFIER),
            user: "parent-1".into(),
            scope: ScopeSet::parse("patient/Immunization.rs launch/patient offline_access")
                .unwrap(),
            context: LaunchContext {
                patient: Some("child-1".into()),
                fhir_user: Some("RelatedPerson/parent-1".into()),
            },
        }
    }

    #[test]
    fn code_redeems_once_with_everything_bound() {
        let store = MemoryGrants::new();
        let code = issue_code(&store, request(), now()).unwrap();
        assert!(code.len() >= 43);
        let grant = redeem_code(&store, &code, "phr", REDIRECT, VERIFIER, now() + secs(5)).unwrap();
        assert_eq!(grant.user, "parent-1");
        assert_eq!(grant.context.patient.as_deref(), Some("child-1"));
        assert_eq!(
            grant.scope.to_string(),
            "patient/Immunization.rs launch/patient offline_access"
        );
        // Single use.
        let again = redeem_code(&store, &code, "phr", REDIRECT, VERIFIER, now() + secs(6));
        assert!(matches!(again, Err(AuthError::InvalidGrant(ref m)) if m.contains("already used")));
    }

    #[test]
    fn code_refusals() {
        // (client, redirect, verifier, seconds after issue, word)
        let other_verifier = "a".repeat(43);
        let cases = [
            ("phr", REDIRECT, VERIFIER, 60, "expired"),
            ("phr", REDIRECT, VERIFIER, 61, "expired"),
            ("other", REDIRECT, VERIFIER, 1, "another client"),
            (
                "phr",
                "https://phr.example.jp/other",
                VERIFIER,
                1,
                "redirect_uri",
            ),
            (
                "phr",
                REDIRECT,
                other_verifier.as_str(),
                1,
                "does not match",
            ),
        ];
        for (client, redirect, verifier, after, word) in cases {
            let store = MemoryGrants::new();
            let code = issue_code(&store, request(), now()).unwrap();
            let err = redeem_code(
                &store,
                &code,
                client,
                redirect,
                verifier,
                now() + secs(after),
            )
            .unwrap_err();
            assert_eq!(err.oauth_error(), "invalid_grant");
            assert!(err.to_string().contains(word), "{word}: {err}");
            // A failed attempt still consumed the code.
            let retry = redeem_code(&store, &code, "phr", REDIRECT, VERIFIER, now() + secs(1));
            assert!(retry.is_err());
        }
        // Still valid one second before expiry.
        let store = MemoryGrants::new();
        let code = issue_code(&store, request(), now()).unwrap();
        assert!(redeem_code(&store, &code, "phr", REDIRECT, VERIFIER, now() + secs(59)).is_ok());
        // Unknown codes, and a bad challenge at issue time.
        assert!(redeem_code(&store, "forged", "phr", REDIRECT, VERIFIER, now()).is_err());
        let mut bad = request();
        bad.code_challenge = VERIFIER.into();
        bad.code_challenge.push('x');
        assert!(issue_code(&store, bad, now()).is_err());
    }

    #[test]
    fn refresh_rotates_and_reuse_revokes_the_family() {
        let store = MemoryGrants::new();
        let code = issue_code(&store, request(), now()).unwrap();
        let grant = redeem_code(&store, &code, "phr", REDIRECT, VERIFIER, now()).unwrap();
        let first = issue_refresh(&store, &grant, now(), 86_400).unwrap();

        let (second, g2) =
            rotate_refresh(&store, &first, "phr", None, now() + secs(10), 86_400).unwrap();
        assert_ne!(first, second);
        assert_eq!(g2.family, grant.family);
        assert_eq!(g2.issued_at, (now() + secs(10)).unix_timestamp());
        let (third, _) =
            rotate_refresh(&store, &second, "phr", None, now() + secs(20), 86_400).unwrap();

        // The thief replays the first token: refused, and the legitimate third token dies too.
        assert_eq!(
            rotate_refresh(&store, &first, "phr", None, now() + secs(30), 86_400),
            Err(AuthError::RefreshReuse)
        );
        let err =
            rotate_refresh(&store, &third, "phr", None, now() + secs(31), 86_400).unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
        // And the family cannot grow again.
        assert!(issue_refresh(&store, &grant, now(), 86_400).is_err());
    }

    #[test]
    fn refresh_checks_client_expiry_and_scope() {
        let store = MemoryGrants::new();
        let code = issue_code(&store, request(), now()).unwrap();
        let grant = redeem_code(&store, &code, "phr", REDIRECT, VERIFIER, now()).unwrap();
        let token = issue_refresh(&store, &grant, now(), 100).unwrap();

        // Another client cannot use it, nor burn it.
        assert!(rotate_refresh(&store, &token, "other", None, now(), 100).is_err());
        // Wider scope refused, and the refused request does not spend the token.
        let wider = ScopeSet::parse("patient/*.rs").unwrap();
        let err = rotate_refresh(&store, &token, "phr", Some(&wider), now(), 100).unwrap_err();
        assert_eq!(err.oauth_error(), "invalid_scope");
        // The same scopes in another order are the same set (RFC 6749 §3.3).
        let reordered =
            ScopeSet::parse("offline_access launch/patient patient/Immunization.rs").unwrap();
        let (token, g) =
            rotate_refresh(&store, &token, "phr", Some(&reordered), now(), 100).unwrap();
        assert_eq!(g.scope.iter().count(), grant.scope.iter().count());

        let narrower = ScopeSet::parse("patient/Immunization.r").unwrap();
        let (_, g) = rotate_refresh(&store, &token, "phr", Some(&narrower), now(), 100).unwrap();
        assert_eq!(g.scope, narrower);

        let token = issue_refresh(&store, &grant, now(), 100).unwrap();
        let err = rotate_refresh(&store, &token, "phr", None, now() + secs(100), 100).unwrap_err();
        assert!(err.to_string().contains("expired"));
        assert!(rotate_refresh(&store, "nonsense", "phr", None, now(), 100).is_err());
    }

    #[test]
    fn reused_code_revokes_refresh_tokens_issued_from_it() {
        let store = MemoryGrants::new();
        let code = issue_code(&store, request(), now()).unwrap();
        let grant = redeem_code(&store, &code, "phr", REDIRECT, VERIFIER, now()).unwrap();
        let refresh = issue_refresh(&store, &grant, now(), 1000).unwrap();
        assert!(redeem_code(&store, &code, "phr", REDIRECT, VERIFIER, now()).is_err());
        let err = rotate_refresh(&store, &refresh, "phr", None, now(), 1000).unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
    }

    #[test]
    fn purge_forgets_expired_state() {
        let store = MemoryGrants::new();
        let code = issue_code(&store, request(), now()).unwrap();
        let grant = redeem_code(&store, &code, "phr", REDIRECT, VERIFIER, now()).unwrap();
        issue_refresh(&store, &grant, now(), 100).unwrap();
        store
            .revoke_family(&grant.family, now().unix_timestamp())
            .unwrap();
        // The revocation outlives the tokens by the one-day floor.
        store.purge((now() + secs(101)).unix_timestamp()).unwrap();
        assert_eq!(store.lock().revoked_families.len(), 1);
        store
            .purge((now() + secs(86_401)).unix_timestamp())
            .unwrap();
        let inner = store.lock();
        assert!(inner.codes.is_empty());
        assert!(inner.refresh.is_empty());
        assert!(inner.revoked_families.is_empty());
    }

    mod endpoints {
        use super::*;

        const ISS: &str = "https://musubi.example.org/auth";
        const AUD: &str = "https://musubi.example.org/fhir";

        fn access(ring: &KeyRing, client: &str) -> (String, AccessClaims) {
            let mut claims = AccessClaims::new(
                ISS,
                AUD,
                "parent-1",
                client,
                ScopeSet::parse("patient/Immunization.rs").unwrap(),
                now(),
                300,
            );
            claims.patient = Some("child-1".into());
            (crate::tokens::issue(ring, &claims).unwrap(), claims)
        }

        #[test]
        fn introspection_answers() {
            let ring = KeyRing::generate();
            let cache = VerifyCache::new(16);
            let expected = Expected::new(ISS, AUD);
            let store = MemoryGrants::new();
            let (token, claims) = access(&ring, "phr");

            let answer = introspect(&store, &ring, &cache, &expected, &token, now()).unwrap();
            assert_eq!(answer, IntrospectionResponse::from_access(&claims));
            let json = serde_json::to_value(&answer).unwrap();
            assert_eq!(json["active"], true);
            assert_eq!(json["scope"], "patient/Immunization.rs");
            assert_eq!(json["patient"], "child-1");
            assert_eq!(json["client_id"], "phr");

            let inactive = introspect(&store, &ring, &cache, &expected, "garbage", now()).unwrap();
            assert_eq!(
                serde_json::to_string(&inactive).unwrap(),
                r#"{"active":false}"#
            );

            let code = issue_code(&store, request(), now()).unwrap();
            let grant = redeem_code(&store, &code, "phr", REDIRECT, VERIFIER, now()).unwrap();
            let refresh = issue_refresh(&store, &grant, now(), 100).unwrap();
            let answer = introspect(&store, &ring, &cache, &expected, &refresh, now()).unwrap();
            assert!(answer.active);
            assert_eq!(answer.token_type.as_deref(), Some("refresh_token"));
            rotate_refresh(&store, &refresh, "phr", None, now(), 100).unwrap();
            let spent = introspect(&store, &ring, &cache, &expected, &refresh, now()).unwrap();
            assert!(!spent.active);
        }

        #[test]
        fn revocation_answers() {
            let ring = KeyRing::generate();
            let cache = VerifyCache::new(16);
            let expected = Expected::new(ISS, AUD);
            let store = MemoryGrants::new();
            let (token, claims) = access(&ring, "phr");
            let req = |token: &str| RevocationRequest {
                token: token.into(),
                token_type_hint: Some("access_token".into()),
            };

            // Another client may not revoke it.
            assert!(
                revoke(
                    &store,
                    &ring,
                    &cache,
                    &expected,
                    "other",
                    &req(&token),
                    now()
                )
                .is_err()
            );
            assert_eq!(
                revoke(&store, &ring, &cache, &expected, "phr", &req(&token), now()).unwrap(),
                Revoked::AccessToken {
                    jti: claims.jti.clone()
                }
            );
            assert!(cache.verify(&ring, &token, now(), &expected).is_err());
            // Revoking again, or revoking garbage, is not an error.
            assert_eq!(
                revoke(&store, &ring, &cache, &expected, "phr", &req(&token), now()).unwrap(),
                Revoked::Nothing
            );
            assert_eq!(
                revoke(
                    &store,
                    &ring,
                    &cache,
                    &expected,
                    "phr",
                    &req("garbage"),
                    now()
                )
                .unwrap(),
                Revoked::Nothing
            );

            let code = issue_code(&store, request(), now()).unwrap();
            let grant = redeem_code(&store, &code, "phr", REDIRECT, VERIFIER, now()).unwrap();
            let refresh = issue_refresh(&store, &grant, now(), 100).unwrap();
            // The hint is only a hint.
            assert_eq!(
                revoke(
                    &store,
                    &ring,
                    &cache,
                    &expected,
                    "phr",
                    &req(&refresh),
                    now()
                )
                .unwrap(),
                Revoked::RefreshFamily(grant.family.clone())
            );
            assert!(rotate_refresh(&store, &refresh, "phr", None, now(), 100).is_err());

            let parsed: RevocationRequest =
                serde_json::from_str(r#"{"token":"abc","token_type_hint":"refresh_token"}"#)
                    .unwrap();
            assert_eq!(parsed.token_type_hint.as_deref(), Some("refresh_token"));
        }

        #[test]
        fn token_response_shape() {
            let response = TokenResponse {
                access_token: "a".into(),
                token_type: "Bearer".into(),
                expires_in: 300,
                scope: ScopeSet::parse("patient/Immunization.rs launch/patient").unwrap(),
                refresh_token: None,
                id_token: None,
                patient: Some("child-1".into()),
            };
            assert_eq!(
                serde_json::to_string(&response).unwrap(),
                r#"{"access_token":"a","token_type":"Bearer","expires_in":300,"scope":"patient/Immunization.rs launch/patient","patient":"child-1"}"#
            );
        }
    }
}
