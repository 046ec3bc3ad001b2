//! JSON Web Keys (RFC 7517) as data, their conversion to verifying keys, RFC 7638 thumbprints and
//! the JWS signature checks shared by access tokens and client assertions.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384};

use crate::{AuthError, Rejection};

/// A JWK Set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One public JWK with the "bare key" members SMART requires (`n`/`e` for RSA, `crv`/`x`/`y` for
/// EC). Private members (`d`, …) are refused when parsed into a [`PublicKey`]: a registry must
/// never hold a client's private key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Present only to be refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
}

/// The JWS algorithms this crate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Es256,
    Es384,
    Rs256,
    Rs384,
}

impl Algorithm {
    pub fn parse(name: &str) -> Option<Algorithm> {
        Some(match name {
            "ES256" => Algorithm::Es256,
            "ES384" => Algorithm::Es384,
            "RS256" => Algorithm::Rs256,
            "RS384" => Algorithm::Rs384,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
        }
    }
}

/// A parsed public key.
#[derive(Debug, Clone, PartialEq)]
pub enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

/// RSA keys below this size are refused (NIST SP 800-131A deprecates 1024-bit RSA).
pub const MIN_RSA_BITS: usize = 2048;

impl PublicKey {
    /// Parses the public part of a JWK.
    pub fn from_jwk(jwk: &Jwk) -> Result<PublicKey, AuthError> {
        if jwk.d.is_some() {
            return Err(AuthError::Key(
                "the JWK holds a private key ('d'); register the public key only".into(),
            ));
        }
        let member = |name: &str, value: &Option<String>| -> Result<Vec<u8>, AuthError> {
            let text = value
                .as_deref()
                .ok_or_else(|| AuthError::Key(format!("{} JWK lacks '{name}'", jwk.kty)))?;
            URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|e| AuthError::Key(format!("JWK '{name}' is not base64url: {e}")))
        };
        match jwk.kty.as_str() {
            "EC" => {
                let x = member("x", &jwk.x)?;
                let y = member("y", &jwk.y)?;
                match jwk.crv.as_deref() {
                    Some("P-256") => {
                        let sec1 = uncompressed::<32>(&x, &y)?;
                        p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                            .map(PublicKey::P256)
                            .map_err(|_| AuthError::Key("P-256 point is not on the curve".into()))
                    }
                    Some("P-384") => {
                        let sec1 = uncompressed::<48>(&x, &y)?;
                        p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                            .map(PublicKey::P384)
                            .map_err(|_| AuthError::Key("P-384 point is not on the curve".into()))
                    }
                    other => Err(AuthError::Key(format!(
                        "EC curve {other:?} is not supported (P-256, P-384)"
                    ))),
                }
            }
            "RSA" => {
                let n = rsa::BigUint::from_bytes_be(&member("n", &jwk.n)?);
                let e = rsa::BigUint::from_bytes_be(&member("e", &jwk.e)?);
                let key = rsa::RsaPublicKey::new(n, e)
                    .map_err(|err| AuthError::Key(format!("RSA key: {err}")))?;
                let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
                if bits < MIN_RSA_BITS {
                    return Err(AuthError::Key(format!(
                        "RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
                    )));
                }
                Ok(PublicKey::Rsa(key))
            }
            other => Err(AuthError::Key(format!(
                "key type {other:?} is not supported (RSA, EC)"
            ))),
        }
    }

    /// Whether `alg` is usable with this key: the key type and curve must fit (SMART: the `kty`
    /// must be consistent with the signature algorithm).
    pub fn fits(&self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (PublicKey::P256(_), Algorithm::Es256)
                | (PublicKey::P384(_), Algorithm::Es384)
                | (PublicKey::Rsa(_), Algorithm::Rs256 | Algorithm::Rs384)
        )
    }

    /// Verifies a JWS signature over `signing_input` (the ASCII `header.payload`).
    /// ECDSA signatures are the fixed-size `r || s` form RFC 7518 §3.4 prescribes.
    pub fn verify(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), Rejection> {
        use p256::ecdsa::signature::Verifier;
        let ok = match (self, alg) {
            (PublicKey::P256(key), Algorithm::Es256) => {
                p256::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify(signing_input, &sig).is_ok())
            }
            (PublicKey::P384(key), Algorithm::Es384) => {
                p384::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify(signing_input, &sig).is_ok())
            }
            (PublicKey::Rsa(key), Algorithm::Rs256) => {
                let hash = Sha256::digest(signing_input);
                key.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &hash, signature)
                    .is_ok()
            }
            (PublicKey::Rsa(key), Algorithm::Rs384) => {
                let hash = Sha384::digest(signing_input);
                key.verify(rsa::Pkcs1v15Sign::new::<Sha384>(), &hash, signature)
                    .is_ok()
            }
            _ => return Err(Rejection::Algorithm(alg.name().into())),
        };
        if ok {
            Ok(())
        } else {
            Err(Rejection::Signature)
        }
    }
}

/// The SEC1 uncompressed point `04 || x || y`, with each coordinate exactly `N` bytes
/// (RFC 7518 §6.2.1.2: the full coordinate size, leading zeros kept).
fn uncompressed<const N: usize>(x: &[u8], y: &[u8]) -> Result<Vec<u8>, AuthError> {
    for (name, coordinate) in [("x", x), ("y", y)] {
        if coordinate.len() != N {
            return Err(AuthError::Key(format!(
                "JWK '{name}' must be {N} bytes, got {}",
                coordinate.len()
            )));
        }
    }
    let mut sec1 = Vec::with_capacity(1 + 2 * N);
    sec1.push(4);
    sec1.extend_from_slice(x);
    sec1.extend_from_slice(y);
    Ok(sec1)
}

/// The public JWK of a P-256 key (coordinates only; `kid` and `alg` are added by the caller).
pub fn p256_jwk(key: &p256::ecdsa::VerifyingKey) -> Jwk {
    let point = key.to_encoded_point(false);
    Jwk {
        kty: "EC".into(),
        crv: Some("P-256".into()),
        x: point.x().map(|x| URL_SAFE_NO_PAD.encode(x)),
        y: point.y().map(|y| URL_SAFE_NO_PAD.encode(y)),
        ..Jwk::default()
    }
}

/// The RFC 7638 thumbprint: base64url(SHA-256) of the required members in lexicographic order,
/// no whitespace.
pub fn thumbprint(jwk: &Jwk) -> Result<String, AuthError> {
    let missing = |name: &str| AuthError::Key(format!("JWK lacks '{name}' for a thumbprint"));
    // The member values are base64url or fixed names, so no JSON escaping is ever needed; using
    // serde_json keeps that true even if a value were odd.
    let text = |v: &Option<String>, name: &str| -> Result<String, AuthError> {
        let value = v.as_deref().ok_or_else(|| missing(name))?;
        serde_json::to_string(value).map_err(|e| AuthError::Key(e.to_string()))
    };
    let canonical = match jwk.kty.as_str() {
        "EC" => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            text(&jwk.crv, "crv")?,
            text(&jwk.x, "x")?,
            text(&jwk.y, "y")?
        ),
        "RSA" => format!(
            r#"{{"e":{},"kty":"RSA","n":{}}}"#,
            text(&jwk.e, "e")?,
            text(&jwk.n, "n")?
        ),
        other => {
            return Err(AuthError::Key(format!(
                "no thumbprint rule for kty {other:?}"
            )));
        }
    };
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example RSA key and its thumbprint.
    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk = Jwk {
            kty: "RSA".into(),
            e: Some("AQAB".into()),
            n: Some("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into()),
            ..Jwk::default()
        };
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn refuses_bad_keys() {
        let cases = [
            (
                Jwk {
                    kty: "oct".into(),
                    ..Jwk::default()
                },
                "not supported",
            ),
            (
                Jwk {
                    kty: "EC".into(),
                    crv: Some("P-521".into()),
                    x: Some("AA".into()),
                    y: Some("AA".into()),
                    ..Jwk::default()
                },
                "curve",
            ),
            (
                Jwk {
                    kty: "EC".into(),
                    crv: Some("P-256".into()),
                    x: Some("AA".into()),
                    y: Some("AA".into()),
                    ..Jwk::default()
                },
                "32 bytes",
            ),
            (
                Jwk {
                    kty: "EC".into(),
                    crv: Some("P-256".into()),
                    x: Some("AA".into()),
                    ..Jwk::default()
                },
                "lacks 'y'",
            ),
            (
                Jwk {
                    kty: "RSA".into(),
                    n: Some("AQAB".into()),
                    e: Some("AQAB".into()),
                    d: Some("AQAB".into()),
                    ..Jwk::default()
                },
                "private key",
            ),
            (
                Jwk {
                    kty: "RSA".into(),
                    // A 512-bit modulus (any odd 64 bytes).
                    n: Some(URL_SAFE_NO_PAD.encode([0xC5u8; 64])),
                    e: Some("AQAB".into()),
                    ..Jwk::default()
                },
                "at least 2048",
            ),
        ];
        for (jwk, word) in cases {
            let err = PublicKey::from_jwk(&jwk).unwrap_err().to_string();
            assert!(err.contains(word), "{jwk:?}: {err}");
        }
    }
}
