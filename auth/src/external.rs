//! Access tokens from an external identity provider: a deployment whose municipality or app
//! vendor runs its own authorization server registers that server's issuer and public keys, and
//! Musubi accepts the JWT access tokens it signs (RFC 9068 profile, or the plain JWTs most
//! providers issue) in place of its own.
//!
//! Only the signature, issuer, audience and times are the provider's word; what the token may do
//! is still decided here: its client must be registered with Musubi, and its scopes are
//! intersected with that client's registered scopes by the caller ([`crate::grant`]).

use serde::Deserialize;
use time::OffsetDateTime;

use crate::error::{AuthError, Rejection};
use crate::jwk::{Algorithm, Jwks, PublicKey};
use crate::scopes::ScopeSet;
use crate::tokens::{AccessClaims, audience_names, check_times, split};

/// One trusted provider, as the gateway's `[[auth.trusted_issuers]]` tables write it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The provider's `iss`, compared exactly.
    pub issuer: String,
    /// What its tokens must carry in `aud` to be meant for Musubi (usually the FHIR base URL).
    pub audience: String,
    /// The provider's public signing keys (fetched by the operator; no URL is fetched here).
    pub jwks: Jwks,
    /// Accepted `alg` values; default RS256 and ES256, the common providers' defaults.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}

#[derive(Debug, Clone)]
struct Verifier {
    issuer: TrustedIssuer,
    algorithms: Vec<Algorithm>,
    keys: Vec<(String, PublicKey)>,
}

/// The trusted providers, keys parsed once.
#[derive(Debug, Clone, Default)]
pub struct ExternalIssuers {
    verifiers: Vec<Verifier>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
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
    /// RFC 9068 names the client `client_id`; OpenID-style providers say `azp`.
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    patient: Option<String>,
    #[serde(default, rename = "fhirUser")]
    fhir_user: Option<String>,
}

impl ExternalIssuers {
    /// Parse every provider's keys; refuses private keys, unknown algorithms, duplicate issuers
    /// and an issuer equal to `own_issuer` (Musubi's own tokens are verified with its own ring).
    pub fn new(
        issuers: Vec<TrustedIssuer>,
        own_issuer: &str,
    ) -> Result<ExternalIssuers, AuthError> {
        let config = |issuer: &str, problem: String| AuthError::Config {
            client: format!("trusted issuer {issuer}"),
            problem,
        };
        let mut verifiers: Vec<Verifier> = Vec::new();
        for issuer in issuers {
            let name = issuer.issuer.clone();
            if name.is_empty() || name == own_issuer {
                return Err(config(
                    &name,
                    "issuer must be set and differ from Musubi's own".into(),
                ));
            }
            if verifiers.iter().any(|v| v.issuer.issuer == name) {
                return Err(config(&name, "listed twice".into()));
            }
            if issuer.audience.is_empty() {
                return Err(config(&name, "audience must be set".into()));
            }
            let algorithms = issuer
                .algorithms
                .iter()
                .map(|a| {
                    Algorithm::parse(a)
                        .ok_or_else(|| config(&name, format!("algorithm {a:?} is not supported")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut keys = Vec::new();
            for jwk in &issuer.jwks.keys {
                let kid = jwk
                    .kid
                    .clone()
                    .ok_or_else(|| config(&name, "every key needs a kid".into()))?;
                let key = PublicKey::from_jwk(jwk)
                    .map_err(|e| config(&name, format!("key {kid:?}: {e}")))?;
                keys.push((kid, key));
            }
            if keys.is_empty() {
                return Err(config(&name, "no keys".into()));
            }
            verifiers.push(Verifier {
                issuer,
                algorithms,
                keys,
            });
        }
        Ok(ExternalIssuers { verifiers })
    }

    pub fn is_empty(&self) -> bool {
        self.verifiers.is_empty()
    }

    /// The `iss` of a token, read without verification, if it names a trusted provider: the
    /// caller then verifies with [`ExternalIssuers::verify`] instead of its own ring.
    pub fn trusts(&self, token: &str) -> bool {
        let Ok(compact) = split(token) else {
            return false;
        };
        let iss = serde_json::from_slice::<Claims>(&compact.payload)
            .ok()
            .and_then(|c| c.iss);
        iss.is_some_and(|iss| self.verifiers.iter().any(|v| v.issuer.issuer == iss))
    }

    /// Verify a provider's token and translate it into Musubi's claims. `cnf` is never taken
    /// from outside (certificate binding is Musubi's own). Failures are `InvalidToken`.
    pub fn verify(
        &self,
        token: &str,
        now: OffsetDateTime,
        leeway: i64,
    ) -> Result<AccessClaims, AuthError> {
        let reject = AuthError::InvalidToken;
        let malformed = |what: &str| reject(Rejection::Malformed(what.to_owned()));
        let compact = split(token).map_err(reject)?;
        let header: Header = serde_json::from_value(compact.header.clone())
            .map_err(|_| malformed("header fields"))?;
        if header.crit.is_some() {
            return Err(malformed("'crit' extensions are not understood"));
        }
        let claims: Claims = serde_json::from_slice(&compact.payload)
            .map_err(|_| malformed("claims are not JSON"))?;
        let iss = claims
            .iss
            .clone()
            .ok_or(reject(Rejection::MissingClaim("iss")))?;
        let verifier = self
            .verifiers
            .iter()
            .find(|v| v.issuer.issuer == iss)
            .ok_or_else(|| {
                reject(Rejection::Issuer {
                    expected: "a trusted issuer".into(),
                    found: iss.clone(),
                })
            })?;
        let alg = Algorithm::parse(&header.alg)
            .filter(|a| verifier.algorithms.contains(a))
            .ok_or_else(|| reject(Rejection::Algorithm(header.alg.clone())))?;
        let kid = header.kid.unwrap_or_default();
        let key = verifier
            .keys
            .iter()
            .find(|(k, key)| *k == kid && key.fits(alg))
            .map(|(_, key)| key)
            .ok_or_else(|| reject(Rejection::UnknownKey(kid.clone())))?;
        key.verify(alg, compact.signing_input.as_bytes(), &compact.signature)
            .map_err(reject)?;
        let audience = &verifier.issuer.audience;
        if !audience_names(claims.aud.as_ref(), audience) {
            return Err(reject(Rejection::Audience {
                expected: audience.clone(),
                found: claims.aud.map(|a| a.to_string()).unwrap_or_default(),
            }));
        }
        let exp = claims.exp.ok_or(reject(Rejection::MissingClaim("exp")))?;
        check_times(exp, claims.nbf, claims.iat, now.unix_timestamp(), leeway).map_err(reject)?;
        let client_id = claims
            .client_id
            .or(claims.azp)
            .filter(|c| !c.is_empty())
            .ok_or(reject(Rejection::MissingClaim("client_id")))?;
        let scope = ScopeSet::parse(claims.scope.as_deref().unwrap_or(""))?;
        let sub = claims
            .sub
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| client_id.clone());
        Ok(AccessClaims {
            iss,
            sub,
            aud: audience.clone(),
            exp,
            iat: claims.iat.unwrap_or(exp),
            nbf: claims.nbf,
            // Revocation lists key on `jti`; a provider token without one gets its signature's.
            jti: claims.jti.unwrap_or_else(|| {
                crate::grants::token_hash(token)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            }),
            client_id,
            scope,
            patient: claims.patient,
            fhir_user: claims.fhir_user,
            cnf: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwk::Jwk;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::ecdsa::signature::Signer as _;
    use serde_json::json;
    use time::macros::datetime;

    const ISSUER: &str = "https://idp.city.example.jp";
    const AUDIENCE: &str = "https://musubi.example.org/fhir";

    fn now() -> OffsetDateTime {
        datetime!(2026-04-01 09:00 UTC)
    }

    fn key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    fn issuers() -> ExternalIssuers {
        let point = key().verifying_key().to_encoded_point(false);
        let jwk = Jwk {
            kty: "EC".into(),
            kid: Some("idp-1".into()),
            crv: Some("P-256".into()),
            x: Some(URL_SAFE_NO_PAD.encode(point.x().unwrap())),
            y: Some(URL_SAFE_NO_PAD.encode(point.y().unwrap())),
            ..Jwk::default()
        };
        ExternalIssuers::new(
            vec![TrustedIssuer {
                issuer: ISSUER.into(),
                audience: AUDIENCE.into(),
                jwks: Jwks { keys: vec![jwk] },
                algorithms: default_algorithms(),
            }],
            "https://musubi.example.org",
        )
        .unwrap()
    }

    fn sign(header: serde_json::Value, claims: serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        );
        let signature: p256::ecdsa::Signature = key().sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    fn claims() -> serde_json::Value {
        let t = now().unix_timestamp();
        json!({"iss": ISSUER, "sub": "parent-7", "aud": [AUDIENCE], "exp": t + 300, "iat": t,
               "azp": "city-app", "scope": "patient/*.rs launch/patient", "patient": "child-1",
               "fhirUser": "RelatedPerson/rp-7"})
    }

    fn header() -> serde_json::Value {
        json!({"alg": "ES256", "kid": "idp-1", "typ": "JWT"})
    }

    #[test]
    fn a_provider_token_becomes_musubi_claims() {
        let token = sign(header(), claims());
        let issuers = issuers();
        assert!(issuers.trusts(&token));
        let verified = issuers.verify(&token, now(), 30).unwrap();
        assert_eq!(verified.client_id, "city-app");
        assert_eq!(verified.sub, "parent-7");
        assert_eq!(verified.patient.as_deref(), Some("child-1"));
        assert_eq!(verified.scope.to_string(), "patient/*.rs launch/patient");
        assert!(verified.cnf.is_none());
    }

    #[test]
    fn refuses_each_bad_token_for_its_reason() {
        let issuers = issuers();
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut c = claims();
            f(&mut c);
            sign(header(), c)
        };
        let t = now().unix_timestamp();
        let cases: Vec<(&str, String, &str)> = vec![
            ("expired", with(&|c| c["exp"] = json!(t - 100)), "expired"),
            (
                "audience",
                with(&|c| c["aud"] = json!("https://elsewhere")),
                "audience",
            ),
            (
                "no client",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("azp");
                }),
                "client_id",
            ),
            (
                "alg",
                sign(json!({"alg": "ES384", "kid": "idp-1"}), claims()),
                "algorithm",
            ),
            (
                "kid",
                sign(json!({"alg": "ES256", "kid": "other"}), claims()),
                "kid",
            ),
            (
                "untrusted issuer",
                with(&|c| c["iss"] = json!("https://evil.example")),
                "issuer",
            ),
        ];
        for (name, token, reason) in cases {
            let error = issuers.verify(&token, now(), 30).unwrap_err().to_string();
            assert!(error.contains(reason), "{name}: {error}");
        }
        let mut tampered = sign(header(), claims()).into_bytes();
        let at = tampered.len() - 5;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let error = issuers
            .verify(std::str::from_utf8(&tampered).unwrap(), now(), 30)
            .unwrap_err();
        assert!(error.to_string().contains("signature"), "{error}");
        assert!(!issuers.trusts("not.a.jwt"));
    }

    #[test]
    fn configuration_mistakes_are_refused() {
        let own = "https://musubi.example.org";
        let base = TrustedIssuer {
            issuer: own.into(),
            audience: AUDIENCE.into(),
            jwks: Jwks { keys: vec![] },
            algorithms: default_algorithms(),
        };
        assert!(
            ExternalIssuers::new(vec![base.clone()], own).is_err(),
            "own issuer"
        );
        let no_keys = TrustedIssuer {
            issuer: ISSUER.into(),
            ..base.clone()
        };
        assert!(ExternalIssuers::new(vec![no_keys], own).is_err(), "no keys");
        let bad_alg = TrustedIssuer {
            issuer: ISSUER.into(),
            algorithms: vec!["HS256".into()],
            ..base
        };
        assert!(ExternalIssuers::new(vec![bad_alg], own).is_err(), "HS256");
    }
}
