//! PKCE (RFC 7636) with the S256 method only; `plain` is refused (SMART App Launch 2 requires
//! S256, and `plain` protects nothing against an observer of the authorization request).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AuthError;

/// Checks the `code_challenge_method` of an authorization request.
pub fn require_s256(method: Option<&str>) -> Result<(), AuthError> {
    match method {
        Some("S256") => Ok(()),
        Some("plain") => Err(AuthError::InvalidRequest(
            "code_challenge_method plain is not supported; use S256".into(),
        )),
        Some(other) => Err(AuthError::InvalidRequest(format!(
            "unknown code_challenge_method {other:?}; use S256"
        ))),
        // RFC 7636 §4.3 defaults an absent method to plain, which is refused.
        None => Err(AuthError::InvalidRequest(
            "code_challenge_method is required and must be S256".into(),
        )),
    }
}

/// Checks the shape of an S256 `code_challenge`: base64url without padding of 32 bytes, i.e.
/// 43 characters.
pub fn check_challenge(challenge: &str) -> Result<(), AuthError> {
    let ok = challenge.len() == 43
        && URL_SAFE_NO_PAD
            .decode(challenge)
            .is_ok_and(|bytes| bytes.len() == 32);
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidRequest(
            "code_challenge must be 43 base64url characters (an S256 challenge)".into(),
        ))
    }
}

/// Checks a `code_verifier`: 43 to 128 characters from `[A-Z] [a-z] [0-9] - . _ ~`
/// (RFC 7636 §4.1).
pub fn check_verifier(verifier: &str) -> Result<(), AuthError> {
    if !(43..=128).contains(&verifier.len()) {
        return Err(AuthError::InvalidGrant(format!(
            "code_verifier must be 43 to 128 characters, got {}",
            verifier.len()
        )));
    }
    if !verifier
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return Err(AuthError::InvalidGrant(
            "code_verifier has a character outside A-Z a-z 0-9 - . _ ~".into(),
        ));
    }
    Ok(())
}

/// `BASE64URL(SHA256(ASCII(code_verifier)))` (RFC 7636 §4.2).
pub fn challenge_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Verifies a `code_verifier` against the stored S256 `code_challenge` (compared in constant
/// time).
pub fn verify_s256(verifier: &str, challenge: &str) -> Result<(), AuthError> {
    check_verifier(verifier)?;
    let computed = challenge_s256(verifier);
    if bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::InvalidGrant(
            "code_verifier does not match the code_challenge".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b() {
        assert_eq!(challenge_s256(RFC_VERIFIER), RFC_CHALLENGE);
        assert!(verify_s256(RFC_VERIFIER, RFC_CHALLENGE).is_ok());
        assert!(check_challenge(RFC_CHALLENGE).is_ok());
    }

    #[test]
    fn refusals() {
        // (verifier, challenge, word in the error)
        let long = "a".repeat(129);
        let short = "a".repeat(42);
        let plus = format!("{}+", &RFC_VERIFIER[..42]);
        let cases = [
            (
                RFC_VERIFIER,
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN",
                "does not match",
            ),
            // `plain` would succeed with verifier == challenge; S256 does not.
            (RFC_VERIFIER, RFC_VERIFIER, "does not match"),
            (long.as_str(), RFC_CHALLENGE, "43 to 128"),
            (short.as_str(), RFC_CHALLENGE, "43 to 128"),
            (plus.as_str(), RFC_CHALLENGE, "outside"),
        ];
        for (verifier, challenge, word) in cases {
            let err = verify_s256(verifier, challenge).unwrap_err();
            assert_eq!(err.oauth_error(), "invalid_grant");
            assert!(err.to_string().contains(word), "{verifier}: {err}");
        }
        // Boundary lengths are accepted.
        for len in [43, 128] {
            let v = "~".repeat(len);
            assert!(verify_s256(&v, &challenge_s256(&v)).is_ok(), "{len}");
        }
    }

    #[test]
    fn only_s256_is_accepted() {
        assert!(require_s256(Some("S256")).is_ok());
        for method in [Some("plain"), Some("s256"), None] {
            assert_eq!(
                require_s256(method).unwrap_err().oauth_error(),
                "invalid_request",
                "{method:?}"
            );
        }
        assert!(check_challenge(&RFC_CHALLENGE[..42]).is_err());
        assert!(check_challenge(&format!("{}=", &RFC_CHALLENGE[..42])).is_err());
    }
}
