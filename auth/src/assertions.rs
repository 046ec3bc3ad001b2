//! private_key_jwt client authentication (RFC 7523 §3, SMART "client-confidential-asymmetric" /
//! Backend Services): checking a client assertion against the client's registered JWKS, with a
//! `jti` replay cache.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::clients::{RegisteredClient, Registry};
use crate::jwk::Algorithm;
use crate::tokens::{audience_names, check_times, split};
use crate::{AuthError, Rejection};

/// The `client_assertion_type` value for a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// SMART: `exp` "SHALL be no more than five minutes in the future".
pub const MAX_ASSERTION_LIFETIME: i64 = 300;

/// What the assertion must say and how strict the clock is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionRules {
    /// The token endpoint URL: the assertion's `aud`.
    pub token_endpoint: String,
    /// Clock skew tolerated on `exp`, `nbf`, `iat` and the five-minute ceiling, in seconds.
    pub leeway_seconds: i64,
}

impl AssertionRules {
    pub fn new(token_endpoint: &str) -> AssertionRules {
        AssertionRules {
            token_endpoint: token_endpoint.to_owned(),
            leeway_seconds: 30,
        }
    }
}

/// `jti`s seen per client, each kept until its assertion expires (SMART: the server SHALL check
/// that the `jti` was not seen for the same `iss` within the maximum assertion lifetime).
///
/// Bounded, and fails closed when full of live entries: evicting one would re-open a replay.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity: capacity.max(1),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records `jti` for `client_id` until `expires`; refuses one already recorded.
    fn record(&self, client_id: &str, jti: &str, expires: i64, now: i64) -> Result<(), AuthError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let key = (client_id.to_owned(), jti.to_owned());
        if seen.get(&key).is_some_and(|until| *until > now) {
            return Err(AuthError::InvalidClientAssertion(Rejection::Replay(
                jti.to_owned(),
            )));
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, until| *until > now);
            if seen.len() >= self.capacity {
                return Err(AuthError::Unavailable(
                    "client assertion replay cache is full".into(),
                ));
            }
        }
        seen.insert(key, expires);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Deserialize)]
struct AssertionHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    jku: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct AssertionClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

/// Verifies a client assertion and returns the client it authenticates.
///
/// `client_id` is the request's `client_id` parameter if sent (it must then equal `iss`).
/// Checks, in order: header (`alg` RS384/ES384, or RS256/ES256 when the key's JWK declares that
/// `alg`; a declared JWK `alg` must equal the header's; `typ` JWT if present; `kid` present;
/// no `jku`, since Musubi registers inline JWKS only; no `crit`); `iss` = `sub` = a known client
/// with a JWKS; exactly one key with that `kid` whose type fits `alg`; the signature; `aud`
/// contains the token endpoint; `exp` present, not passed, at most five minutes ahead; `nbf`
/// and `iat` not ahead; `jti` present and not seen before for this client. The `jti` is
/// recorded only after everything else passed, so forged assertions cannot fill the cache.
pub fn verify_client_assertion<'r>(
    registry: &'r Registry,
    assertion: &str,
    client_id: Option<&str>,
    rules: &AssertionRules,
    replay: &ReplayCache,
    now: OffsetDateTime,
) -> Result<&'r RegisteredClient, AuthError> {
    let reject = AuthError::InvalidClientAssertion;
    let malformed = |what: &str| reject(Rejection::Malformed(what.to_owned()));
    let compact = split(assertion).map_err(reject)?;
    let header: AssertionHeader =
        serde_json::from_value(compact.header.clone()).map_err(|_| malformed("header fields"))?;
    if header.crit.is_some() {
        return Err(malformed("'crit' extensions are not understood"));
    }
    if header.jku.is_some() {
        return Err(malformed(
            "'jku' is not accepted; keys are registered inline",
        ));
    }
    if let Some(typ) = header.typ.as_deref()
        && !typ.eq_ignore_ascii_case("JWT")
    {
        return Err(reject(Rejection::Type(typ.to_owned())));
    }
    let alg = Algorithm::parse(&header.alg)
        .ok_or_else(|| reject(Rejection::Algorithm(header.alg.clone())))?;
    let claims: AssertionClaims =
        serde_json::from_slice(&compact.payload).map_err(|_| malformed("claims are not JSON"))?;
    let iss = claims
        .iss
        .filter(|s| !s.is_empty())
        .ok_or(reject(Rejection::MissingClaim("iss")))?;
    if claims.sub.as_deref() != Some(iss.as_str()) {
        return Err(reject(Rejection::Issuer {
            expected: "sub (the client_id)".into(),
            found: iss,
        }));
    }
    if let Some(id) = client_id
        && id != iss
    {
        return Err(reject(Rejection::Issuer {
            expected: id.to_owned(),
            found: iss,
        }));
    }
    let client = registry.require(&iss)?;
    if client.keys.is_empty() {
        return Err(AuthError::InvalidClient {
            client_id: iss,
            reason: "client has no registered JWKS".into(),
        });
    }
    let kid = header.kid.unwrap_or_default();
    let candidates: Vec<_> = client
        .keys
        .iter()
        .filter(|(k, _, key)| *k == kid && key.fits(alg))
        .collect();
    let [(_, declared_alg, key)] = candidates.as_slice() else {
        return Err(reject(Rejection::UnknownKey(kid)));
    };
    let allowed = match declared_alg.as_deref() {
        Some(declared) => declared == alg.name(),
        // SMART's baseline algorithms; the 256-bit ones only when the JWK says so.
        None => matches!(alg, Algorithm::Rs384 | Algorithm::Es384),
    };
    if !allowed {
        return Err(reject(Rejection::Algorithm(alg.name().into())));
    }
    key.verify(alg, compact.signing_input.as_bytes(), &compact.signature)
        .map_err(reject)?;

    if !audience_names(claims.aud.as_ref(), &rules.token_endpoint) {
        return Err(reject(Rejection::Audience {
            expected: rules.token_endpoint.clone(),
            found: claims.aud.map(|a| a.to_string()).unwrap_or_default(),
        }));
    }
    let exp = claims.exp.ok_or(reject(Rejection::MissingClaim("exp")))?;
    let at = now.unix_timestamp();
    check_times(exp, claims.nbf, claims.iat, at, rules.leeway_seconds).map_err(reject)?;
    let latest = at + MAX_ASSERTION_LIFETIME + rules.leeway_seconds;
    if exp > latest {
        return Err(reject(Rejection::LifetimeTooLong { exp, latest }));
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty())
        .ok_or(reject(Rejection::MissingClaim("jti")))?;
    replay.record(client.id(), &jti, exp + rules.leeway_seconds, at)?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::{Client, ClientKind, Credentials, GrantType};
    use crate::jwk::{Jwk, Jwks};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::ecdsa::signature::Signer;
    use rsa::traits::PublicKeyParts;
    use serde_json::json;
    use sha2::{Digest, Sha256, Sha384};
    use std::sync::OnceLock;
    use time::macros::datetime;

    const ENDPOINT: &str = "https://musubi.example.org/auth/token";

    fn now() -> OffsetDateTime {
        datetime!(2026-04-01 09:00 UTC)
    }

    /// Test keys, generated once per test run (RSA generation is slow in debug builds).
    struct Keys {
        rsa: rsa::RsaPrivateKey,
        p384: p384::ecdsa::SigningKey,
        p256: p256::ecdsa::SigningKey,
    }

    fn keys() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| Keys {
            rsa: rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap(),
            p384: p384::ecdsa::SigningKey::random(&mut rand_core::OsRng),
            p256: p256::ecdsa::SigningKey::random(&mut rand_core::OsRng),
        })
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn jwks() -> Jwks {
        let k = keys();
        let public = k.rsa.to_public_key();
        let p384 = k.p384.verifying_key().to_encoded_point(false);
        let p256 = k.p256.verifying_key().to_encoded_point(false);
        Jwks {
            keys: vec![
                Jwk {
                    kty: "RSA".into(),
                    kid: Some("rsa-1".into()),
                    n: Some(b64(&public.n().to_bytes_be())),
                    e: Some(b64(&public.e().to_bytes_be())),
                    ..Jwk::default()
                },
                Jwk {
                    kty: "EC".into(),
                    kid: Some("ec-384".into()),
                    crv: Some("P-384".into()),
                    x: Some(b64(p384.x().unwrap())),
                    y: Some(b64(p384.y().unwrap())),
                    ..Jwk::default()
                },
                Jwk {
                    kty: "EC".into(),
                    kid: Some("ec-256".into()),
                    alg: Some("ES256".into()),
                    crv: Some("P-256".into()),
                    x: Some(b64(p256.x().unwrap())),
                    y: Some(b64(p256.y().unwrap())),
                    ..Jwk::default()
                },
            ],
        }
    }

    fn registry() -> Registry {
        Registry::new(vec![Client {
            id: "backend".into(),
            kind: ClientKind::Municipality,
            medical_institution_code: None,
            municipality_code: Some("131016".into()),
            organization: None,
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec!["system/*.rs".into()],
            redirect_uris: vec![],
            credentials: Credentials {
                jwks: Some(jwks()),
                ..Credentials::default()
            },
        }])
        .unwrap()
    }

    fn claims(jti: &str) -> serde_json::Value {
        let t = now().unix_timestamp();
        json!({"iss": "backend", "sub": "backend", "aud": ENDPOINT, "exp": t + 240, "iat": t, "jti": jti})
    }

    fn sign(alg: &str, kid: &str, claims: &serde_json::Value) -> String {
        let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
        sign_with_header(&header, claims)
    }

    fn sign_with_header(header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(header).unwrap()),
            b64(&serde_json::to_vec(claims).unwrap())
        );
        let k = keys();
        let signature = match header["alg"].as_str().unwrap() {
            "RS384" => k
                .rsa
                .sign(
                    rsa::Pkcs1v15Sign::new::<Sha384>(),
                    &Sha384::digest(input.as_bytes()),
                )
                .unwrap(),
            "RS256" => k
                .rsa
                .sign(
                    rsa::Pkcs1v15Sign::new::<Sha256>(),
                    &Sha256::digest(input.as_bytes()),
                )
                .unwrap(),
            "ES384" => {
                let s: p384::ecdsa::Signature = k.p384.sign(input.as_bytes());
                s.to_bytes().to_vec()
            }
            "ES256" => {
                let s: p256::ecdsa::Signature = k.p256.sign(input.as_bytes());
                s.to_bytes().to_vec()
            }
            _ => b"junk".to_vec(),
        };
        format!("{input}.{}", b64(&signature))
    }

    fn check(
        registry: &Registry,
        replay: &ReplayCache,
        assertion: &str,
    ) -> Result<String, AuthError> {
        verify_client_assertion(
            registry,
            assertion,
            None,
            &AssertionRules::new(ENDPOINT),
            replay,
            now(),
        )
        .map(|c| c.id().to_owned())
    }

    #[test]
    fn accepts_rs384_es384_and_declared_es256() {
        let registry = registry();
        let replay = ReplayCache::new(100);
        for (i, (alg, kid)) in [("RS384", "rsa-1"), ("ES384", "ec-384"), ("ES256", "ec-256")]
            .into_iter()
            .enumerate()
        {
            let token = sign(alg, kid, &claims(&format!("jti-{i}")));
            assert_eq!(
                check(&registry, &replay, &token).unwrap(),
                "backend",
                "{alg}"
            );
        }
        assert_eq!(replay.len(), 3);
    }

    #[test]
    fn refuses_each_bad_assertion_for_its_reason() {
        let registry = registry();
        let t = now().unix_timestamp();
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut c = claims("j");
            f(&mut c);
            c
        };
        // (assertion, expected rejection)
        let cases: Vec<(String, Rejection)> = vec![
            // RS256 on a JWK that does not declare it.
            (
                sign("RS256", "rsa-1", &claims("j")),
                Rejection::Algorithm("RS256".into()),
            ),
            // ES384 header on the P-256 key: the key type does not fit, so no key matches.
            (
                sign("ES384", "ec-256", &claims("j")),
                Rejection::UnknownKey("ec-256".into()),
            ),
            (
                sign("ES384", "missing", &claims("j")),
                Rejection::UnknownKey("missing".into()),
            ),
            (
                sign("HS256", "rsa-1", &claims("j")),
                Rejection::Algorithm("HS256".into()),
            ),
            (
                sign("none", "rsa-1", &claims("j")),
                Rejection::Algorithm("none".into()),
            ),
            (
                sign(
                    "ES384",
                    "ec-384",
                    &with(&|c| c["aud"] = json!("https://musubi.example.org/fhir")),
                ),
                Rejection::Audience {
                    expected: ENDPOINT.into(),
                    found: "\"https://musubi.example.org/fhir\"".into(),
                },
            ),
            (
                sign("ES384", "ec-384", &with(&|c| c["exp"] = json!(t - 31))),
                Rejection::Expired {
                    exp: t - 31,
                    now: t,
                },
            ),
            (
                sign("ES384", "ec-384", &with(&|c| c["exp"] = json!(t + 600))),
                Rejection::LifetimeTooLong {
                    exp: t + 600,
                    latest: t + 330,
                },
            ),
            (
                sign("ES384", "ec-384", &with(&|c| c["iat"] = json!(t + 120))),
                Rejection::NotYetValid {
                    not_before: t + 120,
                    now: t,
                },
            ),
            (
                sign(
                    "ES384",
                    "ec-384",
                    &with(&|c| {
                        c.as_object_mut().unwrap().remove("exp");
                    }),
                ),
                Rejection::MissingClaim("exp"),
            ),
            (
                sign(
                    "ES384",
                    "ec-384",
                    &with(&|c| {
                        c.as_object_mut().unwrap().remove("jti");
                    }),
                ),
                Rejection::MissingClaim("jti"),
            ),
            (
                sign("ES384", "ec-384", &with(&|c| c["sub"] = json!("someone"))),
                Rejection::Issuer {
                    expected: "sub (the client_id)".into(),
                    found: "backend".into(),
                },
            ),
            (
                sign_with_header(
                    &json!({"alg": "ES384", "kid": "ec-384", "typ": "at+jwt"}),
                    &claims("j"),
                ),
                Rejection::Type("at+jwt".into()),
            ),
            (
                sign_with_header(
                    &json!({"alg": "ES384", "kid": "ec-384", "jku": "https://evil.example/jwks"}),
                    &claims("j"),
                ),
                Rejection::Malformed("'jku' is not accepted; keys are registered inline".into()),
            ),
        ];
        for (assertion, expected) in cases {
            let replay = ReplayCache::new(100);
            assert_eq!(
                check(&registry, &replay, &assertion),
                Err(AuthError::InvalidClientAssertion(expected.clone())),
                "{expected:?}"
            );
            assert!(
                replay.is_empty(),
                "a refused assertion must not use up its jti"
            );
        }

        // A signature by another key under a registered kid.
        let good = sign("ES384", "ec-384", &claims("j"));
        let other = p384::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let input = good.rsplit_once('.').unwrap().0;
        let sig: p384::ecdsa::Signature = other.sign(input.as_bytes());
        let forged = format!("{input}.{}", b64(&sig.to_bytes()));
        let replay = ReplayCache::new(100);
        assert_eq!(
            check(&registry, &replay, &forged),
            Err(AuthError::InvalidClientAssertion(Rejection::Signature))
        );
    }

    #[test]
    fn unknown_client_and_client_id_mismatch() {
        let registry = registry();
        let replay = ReplayCache::new(100);
        let mut c = claims("j");
        c["iss"] = json!("stranger");
        c["sub"] = json!("stranger");
        let err = check(&registry, &replay, &sign("ES384", "ec-384", &c)).unwrap_err();
        assert!(
            matches!(err, AuthError::InvalidClient { ref client_id, .. } if client_id == "stranger")
        );

        let token = sign("ES384", "ec-384", &claims("j"));
        let err = verify_client_assertion(
            &registry,
            &token,
            Some("other-client"),
            &AssertionRules::new(ENDPOINT),
            &replay,
            now(),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            AuthError::InvalidClientAssertion(Rejection::Issuer { .. })
        ));
    }

    #[test]
    fn replay_is_refused_until_expiry_and_cache_fails_closed() {
        let registry = registry();
        let replay = ReplayCache::new(2);
        let first = sign("ES384", "ec-384", &claims("once"));
        assert!(check(&registry, &replay, &first).is_ok());
        assert_eq!(
            check(&registry, &replay, &first),
            Err(AuthError::InvalidClientAssertion(Rejection::Replay(
                "once".into()
            )))
        );
        // The array form of aud is accepted too.
        let mut c = claims("two");
        c["aud"] = json!(["https://other.example", ENDPOINT]);
        assert!(check(&registry, &replay, &sign("ES384", "ec-384", &c)).is_ok());
        // Full of live jtis: refuse rather than forget one.
        let third = sign("ES384", "ec-384", &claims("three"));
        assert_eq!(check(&registry, &replay, &third).unwrap_err().status(), 503);
        // Once they expire there is room again.
        let later = now() + time::Duration::seconds(400);
        let mut c = claims("three");
        c["exp"] = json!(later.unix_timestamp() + 60);
        c["iat"] = json!(later.unix_timestamp());
        let token = sign("ES384", "ec-384", &c);
        assert!(
            verify_client_assertion(
                &registry,
                &token,
                Some("backend"),
                &AssertionRules::new(ENDPOINT),
                &replay,
                later
            )
            .is_ok()
        );
        assert_eq!(replay.len(), 1);
    }
}
