//! ES256-signed JWT access tokens (RFC 9068 profile) with SMART context, the signing key ring
//! with rotation and its JWKS, verification with distinct rejections, and a bounded cache of
//! verified tokens.
//!
//! Verification costs about as much as everything else a request does, so the gateway must go
//! through [`VerifyCache`]: a hit is a SHA-256 and a map look-up.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::jwk::{self, Algorithm, Jwk, Jwks, PublicKey};
use crate::scopes::ScopeSet;
use crate::{AuthError, Rejection};

/// The `typ` of an RFC 9068 access token (RFC 9068 §2.1; `application/at+jwt` is accepted too).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// A key that verifies tokens: the current signing key's public half or a retired one.
#[derive(Debug, Clone)]
struct VerifyKey {
    kid: String,
    key: VerifyingKey,
    /// When it stopped signing (`None` for the current key, or a retired key loaded from PEM
    /// without its date).
    retired_at: Option<i64>,
}

/// The token-signing keys: one current P-256 key that signs, and retired keys that still verify
/// tokens they signed until those expire. Each `kid` is the key's RFC 7638 thumbprint.
#[derive(Debug, Clone)]
pub struct KeyRing {
    signing: SigningKey,
    current: VerifyKey,
    previous: Vec<VerifyKey>,
}

/// A key ring as PEM text, for the gateway to store: the current key as PKCS#8, the retired keys
/// as public SPKI ("PUBLIC KEY") documents (a retired key never signs again, so its private half
/// is not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRingPem {
    pub current: String,
    pub previous: Vec<String>,
}

impl KeyRing {
    /// A ring with a freshly generated key (from the operating system's random source).
    pub fn generate() -> KeyRing {
        Self::with_signing(SigningKey::random(&mut rand_core::OsRng))
    }

    fn with_signing(signing: SigningKey) -> KeyRing {
        let current = verify_key(*signing.verifying_key(), None);
        KeyRing {
            signing,
            current,
            previous: Vec::new(),
        }
    }

    /// Loads the current key (PKCS#8 PEM) and retired keys (SPKI or PKCS#8 PEM).
    pub fn from_pem(current: &str, previous: &[&str]) -> Result<KeyRing, AuthError> {
        let signing = SigningKey::from_pkcs8_pem(current)
            .map_err(|e| AuthError::Key(format!("current key is not a P-256 PKCS#8 PEM: {e}")))?;
        let mut ring = Self::with_signing(signing);
        for (i, pem) in previous.iter().enumerate() {
            let key = VerifyingKey::from_public_key_pem(pem)
                .or_else(|_| SigningKey::from_pkcs8_pem(pem).map(|k| *k.verifying_key()))
                .map_err(|e| {
                    AuthError::Key(format!("previous key {i} is not a P-256 PEM key: {e}"))
                })?;
            ring.previous.push(verify_key(key, None));
        }
        Ok(ring)
    }

    /// Saves the ring as PEM.
    pub fn to_pem(&self) -> Result<KeyRingPem, AuthError> {
        let current = self
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| AuthError::Key(format!("cannot encode the signing key: {e}")))?;
        let previous = self
            .previous
            .iter()
            .map(|k| {
                k.key
                    .to_public_key_pem(LineEnding::LF)
                    .map_err(|e| AuthError::Key(format!("cannot encode key {}: {e}", k.kid)))
            })
            .collect::<Result<_, _>>()?;
        Ok(KeyRingPem {
            current: current.to_string(),
            previous,
        })
    }

    /// Starts signing with a new key; the old one keeps verifying.
    pub fn rotate(&mut self, now: OffsetDateTime) {
        self.rotate_to(SigningKey::random(&mut rand_core::OsRng), now);
    }

    fn rotate_to(&mut self, next: SigningKey, now: OffsetDateTime) {
        let mut old = verify_key(*next.verifying_key(), None);
        std::mem::swap(&mut old, &mut self.current);
        old.retired_at = Some(now.unix_timestamp());
        self.previous.insert(0, old);
        self.signing = next;
    }

    /// Forgets retired keys that cannot have signed a still-valid token: retired more than
    /// `max_token_lifetime` seconds ago. Keys loaded without a retirement date are kept (the
    /// operator removes them from the stored PEM list).
    pub fn prune(&mut self, now: OffsetDateTime, max_token_lifetime: i64) {
        let cutoff = now.unix_timestamp() - max_token_lifetime;
        self.previous
            .retain(|k| k.retired_at.is_none_or(|at| at >= cutoff));
    }

    /// The current signing key's `kid`.
    pub fn current_kid(&self) -> &str {
        &self.current.kid
    }

    /// The `kid`s of every key that verifies, current first.
    pub fn kids(&self) -> Vec<&str> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|k| k.kid.as_str())
            .collect()
    }

    /// The public JWKS (RFC 7517) a resource server or client fetches: every verifying key with
    /// `kid`, `alg` ES256 and `use` sig.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: std::iter::once(&self.current)
                .chain(&self.previous)
                .map(|k| Jwk {
                    kid: Some(k.kid.clone()),
                    alg: Some("ES256".into()),
                    use_: Some("sig".into()),
                    ..jwk::p256_jwk(&k.key)
                })
                .collect(),
        }
    }

    fn find(&self, kid: &str) -> Option<&VerifyingKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.kid == kid)
            .map(|k| &k.key)
    }

    fn has_kid(&self, kid: &str) -> bool {
        self.find(kid).is_some()
    }
}

fn verify_key(key: VerifyingKey, retired_at: Option<i64>) -> VerifyKey {
    // A P-256 JWK always has crv/x/y, so the thumbprint cannot fail.
    let kid = jwk::thumbprint(&jwk::p256_jwk(&key)).unwrap_or_default();
    VerifyKey {
        kid,
        key,
        retired_at,
    }
}

/// RFC 8705 confirmation: the certificate the token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// base64url(SHA-256(DER of the client certificate)) — see [`certificate_thumbprint`].
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

/// The `x5t#S256` value of a DER certificate (RFC 8705 §3.1).
pub fn certificate_thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// The claims of a Musubi access token.
///
/// RFC 9068 §2.2 claims (`iss`, `exp`, `aud`, `sub`, `client_id`, `iat`, `jti`, `scope`) plus
/// SMART's launch context (`patient`, `fhirUser`) and RFC 8705's `cnf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The user (for authorization_code) or the client id (for client_credentials).
    pub sub: String,
    /// The FHIR base URL the token is for.
    #[serde(deserialize_with = "audience")]
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    pub client_id: String,
    pub scope: ScopeSet,
    /// The patient in context (SMART `launch/patient`); for a parent, one child's Patient id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The user's own FHIR resource (e.g. `RelatedPerson/…` for a parent).
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

impl AccessClaims {
    /// Claims for a new token: `iat` = now, `exp` = now + lifetime, a random `jti`.
    pub fn new(
        issuer: &str,
        audience: &str,
        subject: &str,
        client_id: &str,
        scope: ScopeSet,
        now: OffsetDateTime,
        lifetime_seconds: i64,
    ) -> AccessClaims {
        let iat = now.unix_timestamp();
        AccessClaims {
            iss: issuer.to_owned(),
            sub: subject.to_owned(),
            aud: audience.to_owned(),
            exp: iat + lifetime_seconds,
            iat,
            nbf: None,
            jti: crate::random_token(16),
            client_id: client_id.to_owned(),
            scope,
            patient: None,
            fhir_user: None,
            cnf: None,
        }
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3); this crate issues a single
/// audience, so an array must hold exactly one.
fn audience<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    match Aud::deserialize(deserializer)? {
        Aud::One(a) => Ok(a),
        Aud::Many(mut v) if v.len() == 1 => Ok(v.remove(0)),
        Aud::Many(_) => Err(serde::de::Error::custom(
            "aud must name exactly one audience",
        )),
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    /// Present only to be refused: no extension is understood (RFC 7515 §4.1.11).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crit: Option<serde_json::Value>,
}

/// Signs the claims with the ring's current key.
pub fn issue(ring: &KeyRing, claims: &AccessClaims) -> Result<String, AuthError> {
    let header = Header {
        alg: "ES256".into(),
        typ: Some(ACCESS_TOKEN_TYPE.into()),
        kid: Some(ring.current.kid.clone()),
        crit: None,
    };
    let mut token = format!("{}.{}", b64_json(&header)?, b64_json(claims)?);
    let signature: Signature = ring.signing.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
    Ok(token)
}

fn b64_json<T: Serialize>(value: &T) -> Result<String, AuthError> {
    let json = serde_json::to_vec(value)
        .map_err(|e| AuthError::Key(format!("cannot encode a JWT part: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// What a verified access token must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub issuer: String,
    /// The FHIR base URL.
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_seconds: i64,
}

impl Expected {
    /// With the default leeway of 30 seconds.
    pub fn new(issuer: &str, audience: &str) -> Expected {
        Expected {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway_seconds: 30,
        }
    }
}

/// The parts of a compact JWS, decoded.
pub(crate) struct Compact<'a> {
    pub signing_input: &'a str,
    pub header: serde_json::Value,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

pub(crate) fn split(token: &str) -> Result<Compact<'_>, Rejection> {
    let malformed = |what: &str| Rejection::Malformed(what.to_owned());
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a JWT has three dot-separated parts"));
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| malformed(&format!("{what} is not unpadded base64url")))
    };
    let header = serde_json::from_slice(&decode(h, "header")?)
        .map_err(|_| malformed("header is not JSON"))?;
    Ok(Compact {
        signing_input: &token[..h.len() + 1 + p.len()],
        header,
        payload: decode(p, "payload")?,
        signature: decode(s, "signature")?,
    })
}

/// Verifies an access token: structure, `alg` ES256 only (so `none`, HS256 with the public key
/// as secret, and RS256 are all `Algorithm`), `typ` at+jwt, `kid` in the ring, signature, then
/// `iss`, `aud`, `exp`, `nbf`/`iat`.
pub fn verify(
    ring: &KeyRing,
    token: &str,
    now: OffsetDateTime,
    expected: &Expected,
) -> Result<AccessClaims, AuthError> {
    let compact = split(token).map_err(AuthError::InvalidToken)?;
    let header: Header = serde_json::from_value(compact.header.clone())
        .map_err(|_| AuthError::InvalidToken(Rejection::Malformed("header fields".into())))?;
    if header.alg != "ES256" {
        return Err(AuthError::InvalidToken(Rejection::Algorithm(header.alg)));
    }
    if header.crit.is_some() {
        return Err(AuthError::InvalidToken(Rejection::Malformed(
            "'crit' extensions are not understood".into(),
        )));
    }
    match header.typ.as_deref() {
        Some(ACCESS_TOKEN_TYPE) | Some("application/at+jwt") => {}
        other => {
            return Err(AuthError::InvalidToken(Rejection::Type(
                other.unwrap_or("").to_owned(),
            )));
        }
    }
    let kid = header.kid.unwrap_or_default();
    let key = ring
        .find(&kid)
        .ok_or_else(|| AuthError::InvalidToken(Rejection::UnknownKey(kid.clone())))?;
    PublicKey::P256(*key)
        .verify(
            Algorithm::Es256,
            compact.signing_input.as_bytes(),
            &compact.signature,
        )
        .map_err(AuthError::InvalidToken)?;
    let claims: AccessClaims = serde_json::from_slice(&compact.payload)
        .map_err(|e| AuthError::InvalidToken(Rejection::Malformed(format!("claims: {e}"))))?;
    check_claims(&claims, now.unix_timestamp(), expected).map_err(AuthError::InvalidToken)?;
    Ok(claims)
}

fn check_claims(claims: &AccessClaims, now: i64, expected: &Expected) -> Result<(), Rejection> {
    if claims.iss != expected.issuer {
        return Err(Rejection::Issuer {
            expected: expected.issuer.clone(),
            found: claims.iss.clone(),
        });
    }
    if claims.aud != expected.audience {
        return Err(Rejection::Audience {
            expected: expected.audience.clone(),
            found: claims.aud.clone(),
        });
    }
    check_times(
        claims.exp,
        claims.nbf,
        Some(claims.iat),
        now,
        expected.leeway_seconds,
    )
}

/// Whether an `aud` claim (a string or an array of strings, RFC 7519 §4.1.3) names `expected`.
pub(crate) fn audience_names(aud: Option<&serde_json::Value>, expected: &str) -> bool {
    match aud {
        Some(serde_json::Value::String(a)) => a == expected,
        Some(serde_json::Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(expected)),
        _ => false,
    }
}

/// `exp` must lie ahead and `nbf`/`iat` must not lie ahead, each with the leeway.
pub(crate) fn check_times(
    exp: i64,
    nbf: Option<i64>,
    iat: Option<i64>,
    now: i64,
    leeway: i64,
) -> Result<(), Rejection> {
    if now >= exp.saturating_add(leeway) {
        return Err(Rejection::Expired { exp, now });
    }
    for not_before in [nbf, iat].into_iter().flatten() {
        if not_before > now.saturating_add(leeway) {
            return Err(Rejection::NotYetValid { not_before, now });
        }
    }
    Ok(())
}

/// Verified tokens by SHA-256 of the token text, each kept until its `exp`; plus the `jti`s of
/// revoked tokens until they would have expired.
///
/// A hit skips only the signature check: issuer, audience, times, revocation and whether the
/// signing key is still in the ring are checked again (they are cheap). Bounded: when full,
/// expired entries go first, then the entry that expires soonest (a miss costs only a
/// re-verification, so eviction is safe).
#[derive(Debug)]
pub struct VerifyCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    entries: HashMap<[u8; 32], (String, Arc<AccessClaims>)>,
    by_expiry: BTreeSet<(i64, [u8; 32])>,
    /// Revoked `jti` → its token's `exp`.
    revoked: HashMap<String, i64>,
}

impl VerifyCache {
    pub fn new(capacity: usize) -> VerifyCache {
        VerifyCache {
            capacity: capacity.max(1),
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// [`verify`] with the cache in front.
    pub fn verify(
        &self,
        ring: &KeyRing,
        token: &str,
        now: OffsetDateTime,
        expected: &Expected,
    ) -> Result<Arc<AccessClaims>, AuthError> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let at = now.unix_timestamp();
        {
            let inner = self.lock();
            if let Some((kid, claims)) = inner.entries.get(&hash) {
                if !ring.has_kid(kid) {
                    return Err(AuthError::InvalidToken(Rejection::UnknownKey(kid.clone())));
                }
                if inner.revoked.contains_key(&claims.jti) {
                    return Err(AuthError::InvalidToken(Rejection::Revoked));
                }
                check_claims(claims, at, expected).map_err(AuthError::InvalidToken)?;
                return Ok(Arc::clone(claims));
            }
            // The miss path below verifies outside the lock so other requests are not held up.
        }
        let claims = Arc::new(verify(ring, token, now, expected)?);
        let kid = split(token)
            .ok()
            .and_then(|c| {
                c.header
                    .get("kid")
                    .and_then(|k| k.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let mut inner = self.lock();
        if inner.revoked.contains_key(&claims.jti) {
            return Err(AuthError::InvalidToken(Rejection::Revoked));
        }
        inner.make_room(self.capacity, at);
        if inner
            .entries
            .insert(hash, (kid, Arc::clone(&claims)))
            .is_none()
        {
            inner.by_expiry.insert((claims.exp, hash));
        }
        Ok(claims)
    }

    /// Revokes a token (RFC 7009) by its `jti` until its `exp`: it is refused from now on, cached
    /// or not.
    pub fn revoke(&self, jti: &str, exp: i64) {
        let mut inner = self.lock();
        inner.revoked.insert(jti.to_owned(), exp);
        let stale: Vec<[u8; 32]> = inner
            .entries
            .iter()
            .filter(|(_, (_, c))| c.jti == jti)
            .map(|(h, _)| *h)
            .collect();
        for hash in stale {
            if let Some((_, claims)) = inner.entries.remove(&hash) {
                inner.by_expiry.remove(&(claims.exp, hash));
            }
        }
    }

    /// Drops expired entries and expired revocations.
    pub fn purge(&self, now: OffsetDateTime) {
        self.lock().purge(now.unix_timestamp());
    }

    /// The number of cached tokens.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A panic while holding the lock leaves only a cache behind; its data stays consistent
        // enough to keep serving (worst case: a re-verification).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CacheInner {
    fn purge(&mut self, now: i64) {
        while let Some(&(exp, hash)) = self.by_expiry.first() {
            if exp > now {
                break;
            }
            self.by_expiry.pop_first();
            self.entries.remove(&hash);
        }
        self.revoked.retain(|_, exp| *exp > now);
    }

    fn make_room(&mut self, capacity: usize, now: i64) {
        if self.entries.len() < capacity {
            return;
        }
        self.purge(now);
        while self.entries.len() >= capacity {
            let Some((_, hash)) = self.by_expiry.pop_first() else {
                break;
            };
            self.entries.remove(&hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const ISS: &str = "https://musubi.example.org/auth";
    const AUD: &str = "https://musubi.example.org/fhir";

    fn now() -> OffsetDateTime {
        datetime!(2026-04-01 09:00 UTC)
    }

    fn claims() -> AccessClaims {
        let mut c = AccessClaims::new(
            ISS,
            AUD,
            "parent-1",
            "phr-app",
            ScopeSet::parse("patient/Immunization.rs launch/patient").unwrap(),
            now(),
            300,
        );
        c.patient = Some("child-1".into());
        c.fhir_user = Some("RelatedPerson/parent-1".into());
        c
    }

    fn expected() -> Expected {
        Expected::new(ISS, AUD)
    }

    /// Builds a token with an arbitrary header and signature, for the rejection tests.
    fn forge(header: &serde_json::Value, claims: &AccessClaims, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// HMAC-SHA256 (RFC 2104), enough to forge the HS256 token an attacker would send.
    fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| block.map(|b| b ^ byte);
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .into()
    }

    fn reject(ring: &KeyRing, token: &str, at: OffsetDateTime, exp: &Expected) -> Rejection {
        match verify(ring, token, at, exp) {
            Err(AuthError::InvalidToken(r)) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_keeps_every_claim() {
        let ring = KeyRing::generate();
        let mut c = claims();
        c.cnf = Some(Confirmation {
            x5t_s256: certificate_thumbprint(b"certificate DER"),
        });
        let token = issue(&ring, &c).unwrap();
        let back = verify(&ring, &token, now(), &expected()).unwrap();
        assert_eq!(back, c);
        // The wire names are the spec's.
        let payload: serde_json::Value =
            serde_json::from_slice(&split(&token).unwrap().payload).unwrap();
        for name in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "jti",
            "client_id",
            "scope",
            "patient",
            "fhirUser",
        ] {
            assert!(payload.get(name).is_some(), "{name} missing in {payload}");
        }
        assert!(payload["cnf"].get("x5t#S256").is_some());
        let header = split(&token).unwrap().header;
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], ring.current_kid());
    }

    #[test]
    fn every_rejection_is_distinct() {
        let ring = KeyRing::generate();
        let c = claims();
        let token = issue(&ring, &c).unwrap();
        let exp = expected();

        // Expired (past exp + leeway) — and still fine inside the leeway.
        let late = now() + time::Duration::seconds(300 + 30);
        assert!(matches!(
            reject(&ring, &token, late, &exp),
            Rejection::Expired { .. }
        ));
        assert!(verify(&ring, &token, late - time::Duration::seconds(1), &exp).is_ok());
        let strict = Expected {
            leeway_seconds: 0,
            ..expected()
        };
        let edge = now() + time::Duration::seconds(300);
        assert!(matches!(
            reject(&ring, &token, edge, &strict),
            Rejection::Expired { .. }
        ));

        // Not yet valid: issued in the future.
        let early = now() - time::Duration::seconds(31);
        assert!(matches!(
            reject(&ring, &token, early, &exp),
            Rejection::NotYetValid { .. }
        ));
        let mut future = claims();
        future.nbf = Some(now().unix_timestamp() + 120);
        let t = issue(&ring, &future).unwrap();
        assert!(matches!(
            reject(&ring, &t, now(), &exp),
            Rejection::NotYetValid { .. }
        ));

        // Tampered payload: same header and signature, different claims.
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut evil = c.clone();
        evil.patient = Some("someone-else".into());
        let evil_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&evil).unwrap());
        parts[1] = &evil_payload;
        assert_eq!(
            reject(&ring, &parts.join("."), now(), &exp),
            Rejection::Signature
        );

        // Tampered signature.
        let sig = split(&token).unwrap().signature;
        let mut flipped = sig.clone();
        flipped[10] ^= 1;
        let header = split(&token).unwrap().header;
        assert_eq!(
            reject(&ring, &forge(&header, &c, &flipped), now(), &exp),
            Rejection::Signature
        );
        // Signature of the wrong length.
        assert_eq!(
            reject(&ring, &forge(&header, &c, &sig[..63]), now(), &exp),
            Rejection::Signature
        );

        // alg none / HS256 keyed with the public key / RS256: refused by name before any key use.
        let kid = ring.current_kid();
        for alg in ["none", "HS256", "RS256", "ES384", "es256"] {
            let h = serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": kid});
            assert_eq!(
                reject(&ring, &forge(&h, &c, &sig), now(), &exp),
                Rejection::Algorithm(alg.into()),
                "{alg}"
            );
        }
        // The classic HS256 confusion, done properly: HMAC with the JWKS text as the secret.
        {
            let h = serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
            let unsigned = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).unwrap()),
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap())
            );
            let secret = serde_json::to_vec(&ring.jwks()).unwrap();
            let mac = hmac_sha256(&secret, unsigned.as_bytes());
            let t = format!("{unsigned}.{}", URL_SAFE_NO_PAD.encode(mac));
            assert_eq!(
                reject(&ring, &t, now(), &exp),
                Rejection::Algorithm("HS256".into())
            );
        }

        // Wrong typ, crit, unknown kid, no kid.
        let h = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        assert_eq!(
            reject(&ring, &forge(&h, &c, &sig), now(), &exp),
            Rejection::Type("JWT".into())
        );
        let h = serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "crit": ["x"]});
        assert!(matches!(
            reject(&ring, &forge(&h, &c, &sig), now(), &exp),
            Rejection::Malformed(_)
        ));
        let h = serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "nope"});
        assert_eq!(
            reject(&ring, &forge(&h, &c, &sig), now(), &exp),
            Rejection::UnknownKey("nope".into())
        );
        let other_ring = KeyRing::generate();
        assert_eq!(
            reject(&other_ring, &token, now(), &exp),
            Rejection::UnknownKey(ring.current_kid().into())
        );

        // Wrong issuer, wrong audience.
        let wrong_iss = Expected {
            issuer: "https://elsewhere.example/auth".into(),
            ..expected()
        };
        assert!(matches!(
            reject(&ring, &token, now(), &wrong_iss),
            Rejection::Issuer { .. }
        ));
        let wrong_aud = Expected {
            audience: "https://elsewhere.example/fhir".into(),
            ..expected()
        };
        assert!(matches!(
            reject(&ring, &token, now(), &wrong_aud),
            Rejection::Audience { .. }
        ));

        // Malformed shapes.
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA", &format!("{token}=")] {
            assert!(
                matches!(reject(&ring, bad, now(), &exp), Rejection::Malformed(_)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn array_audience_with_one_entry_is_accepted() {
        let ring = KeyRing::generate();
        let c = claims();
        let mut payload = serde_json::to_value(&c).unwrap();
        payload["aud"] = serde_json::json!([AUD]);
        let header =
            serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": ring.current_kid()});
        let unsigned = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap())
        );
        let sig: Signature = ring.signing.sign(unsigned.as_bytes());
        let token = format!("{unsigned}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        assert_eq!(verify(&ring, &token, now(), &expected()).unwrap().aud, AUD);
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_until_pruned() {
        let mut ring = KeyRing::generate();
        let old_kid = ring.current_kid().to_owned();
        let old_token = issue(&ring, &claims()).unwrap();
        ring.rotate(now());
        assert_ne!(ring.current_kid(), old_kid);
        assert_eq!(ring.kids(), vec![ring.current_kid(), old_kid.as_str()]);
        let new_token = issue(&ring, &claims()).unwrap();
        assert_eq!(split(&new_token).unwrap().header["kid"], ring.current_kid());
        assert!(verify(&ring, &old_token, now(), &expected()).is_ok());
        assert!(verify(&ring, &new_token, now(), &expected()).is_ok());
        assert_eq!(ring.jwks().keys.len(), 2);

        // Still inside the longest token lifetime: kept.
        ring.prune(now() + time::Duration::seconds(299), 300);
        assert_eq!(ring.kids().len(), 2);
        // Past it: the old key goes, and its tokens (long expired anyway) have no key.
        ring.prune(now() + time::Duration::seconds(301), 300);
        assert_eq!(ring.kids(), vec![ring.current_kid()]);
        let strict = Expected {
            leeway_seconds: 100_000,
            ..expected()
        };
        assert!(matches!(
            verify(&ring, &old_token, now(), &strict),
            Err(AuthError::InvalidToken(Rejection::UnknownKey(_)))
        ));
    }

    #[test]
    fn pem_round_trip_and_kid_is_the_rfc7638_thumbprint() {
        let mut ring = KeyRing::generate();
        ring.rotate(now());
        let pem = ring.to_pem().unwrap();
        assert!(pem.current.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(pem.previous[0].starts_with("-----BEGIN PUBLIC KEY-----"));
        let previous: Vec<&str> = pem.previous.iter().map(String::as_str).collect();
        let loaded = KeyRing::from_pem(&pem.current, &previous).unwrap();
        assert_eq!(loaded.kids(), ring.kids());
        let token = issue(&ring, &claims()).unwrap();
        assert!(verify(&loaded, &token, now(), &expected()).is_ok());

        let jwks = ring.jwks();
        for key in &jwks.keys {
            assert_eq!(
                key.kid.as_deref(),
                Some(jwk::thumbprint(key).unwrap().as_str())
            );
            assert_eq!(key.crv.as_deref(), Some("P-256"));
            assert!(key.d.is_none());
        }
        assert!(matches!(
            KeyRing::from_pem("not a key", &[]),
            Err(AuthError::Key(_))
        ));
        assert!(matches!(
            KeyRing::from_pem(&pem.current, &["junk"]),
            Err(AuthError::Key(_))
        ));
    }

    #[test]
    fn cache_hits_recheck_claims_and_revocation() {
        let ring = KeyRing::generate();
        let cache = VerifyCache::new(8);
        let c = claims();
        let token = issue(&ring, &c).unwrap();
        let first = cache.verify(&ring, &token, now(), &expected()).unwrap();
        assert_eq!(cache.len(), 1);
        let second = cache.verify(&ring, &token, now(), &expected()).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "second verify must be a hit");

        // A hit still expires, and still checks the audience.
        let late = now() + time::Duration::seconds(400);
        assert!(matches!(
            cache.verify(&ring, &token, late, &expected()),
            Err(AuthError::InvalidToken(Rejection::Expired { .. }))
        ));
        let wrong_aud = Expected {
            audience: "https://elsewhere.example/fhir".into(),
            ..expected()
        };
        assert!(matches!(
            cache.verify(&ring, &token, now(), &wrong_aud),
            Err(AuthError::InvalidToken(Rejection::Audience { .. }))
        ));

        // A bad token is never cached.
        let other = KeyRing::generate();
        let foreign = issue(&other, &c).unwrap();
        assert!(cache.verify(&ring, &foreign, now(), &expected()).is_err());
        assert_eq!(cache.len(), 1);

        // Revocation reaches cached and uncached copies.
        cache.revoke(&c.jti, c.exp);
        assert_eq!(cache.len(), 0);
        assert_eq!(
            cache.verify(&ring, &token, now(), &expected()),
            Err(AuthError::InvalidToken(Rejection::Revoked))
        );
        // After the token's own expiry the revocation record is purged.
        cache.purge(late);
        assert!(cache.lock().revoked.is_empty());
    }

    #[test]
    fn cache_stays_bounded_evicting_soonest_expiry() {
        let ring = KeyRing::generate();
        let cache = VerifyCache::new(3);
        let mut tokens = Vec::new();
        for lifetime in [100, 400, 200, 300] {
            let c = AccessClaims::new(ISS, AUD, "u", "c", ScopeSet::default(), now(), lifetime);
            let t = issue(&ring, &c).unwrap();
            cache.verify(&ring, &t, now(), &expected()).unwrap();
            tokens.push((lifetime, t));
        }
        assert_eq!(cache.len(), 3);
        let inner = cache.lock();
        let lifetimes: Vec<i64> = inner
            .by_expiry
            .iter()
            .map(|(exp, _)| exp - now().unix_timestamp())
            .collect();
        assert_eq!(
            lifetimes,
            vec![200, 300, 400],
            "the 100 s token was evicted"
        );
        assert_eq!(inner.entries.len(), inner.by_expiry.len());
    }

    #[test]
    fn cache_hit_fails_once_the_key_is_pruned() {
        let mut ring = KeyRing::generate();
        let cache = VerifyCache::new(8);
        let token = issue(&ring, &claims()).unwrap();
        cache.verify(&ring, &token, now(), &expected()).unwrap();
        ring.rotate(now());
        assert!(cache.verify(&ring, &token, now(), &expected()).is_ok());
        ring.prune(now() + time::Duration::seconds(1), 0);
        assert!(matches!(
            cache.verify(&ring, &token, now(), &expected()),
            Err(AuthError::InvalidToken(Rejection::UnknownKey(_)))
        ));
    }

    #[test]
    fn certificate_thumbprint_is_base64url_sha256() {
        // SHA-256("abc") = ba7816bf…; base64url without padding.
        assert_eq!(
            certificate_thumbprint(b"abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }
}
