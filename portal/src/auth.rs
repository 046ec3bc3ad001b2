//! The person's authorisation as far as it is documented (jp-specs §2.2: OAuth 2.0 authorisation
//! code flow with OpenID Connect, PKCE, a signed-JWT client assertion, refresh tokens): the
//! authorisation request, the token request forms, the token answer, and the session the
//! gateway keeps per person. Pure: randomness and clocks are parameters.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use ring::digest::{SHA256, digest};
use ring::rand::SecureRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use crate::consent::ContinuousAccess;
use crate::error::PortalError;
use crate::tables::Layout;

/// RFC 7523 client-assertion type for private_key_jwt.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A credential that must not reach logs: `Debug` shows only that it is there.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The id of the local Patient the pulled records belong to (a FHIR id: 1–64 of
/// `[A-Za-z0-9.-]`), parsed once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PatientId(String);

impl PatientId {
    pub fn parse(id: &str) -> Result<Self, PortalError> {
        if fhir::is_id(id) {
            Ok(PatientId(id.to_owned()))
        } else {
            Err(PortalError::Config(format!(
                "{id:?} is not a FHIR resource id (1-64 of A-Z a-z 0-9 - .)"
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PatientId {
    type Error = PortalError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        PatientId::parse(&value)
    }
}

impl From<PatientId> for String {
    fn from(value: PatientId) -> Self {
        value.0
    }
}

impl fmt::Display for PatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the adapter authenticates itself at the token endpoint.
#[derive(Debug)]
pub enum ClientAuth {
    /// A signed JWT (`private_key_jwt`, jp-specs §2.2), signed ES256 with a P-256 key.
    PrivateKeyJwt(Box<ClientKey>),
    /// `client_secret_post`, for portals or sandboxes that issue a secret instead.
    ClientSecretPost(Secret),
}

/// The adapter's P-256 signing key for client assertions, with its `kid`.
pub struct ClientKey {
    key_id: Option<String>,
    pair: EcdsaKeyPair,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// A PKCS#8 P-256 private key in PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str, key_id: Option<String>) -> Result<Self, PortalError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| PortalError::Config(format!("client key: not a PKCS#8 PEM: {e}")))?;
        Self::from_pkcs8_der(der.secret_pkcs8_der(), key_id)
    }

    pub fn from_pkcs8_der(der: &[u8], key_id: Option<String>) -> Result<Self, PortalError> {
        let rng = ring::rand::SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| PortalError::Config(format!("client key: not a P-256 key: {e}")))?;
        Ok(ClientKey { key_id, pair })
    }

    /// The uncompressed public point, e.g. to register with a sandbox.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// A signed client assertion (RFC 7523 §3): `iss` = `sub` = client id, `aud` = the token
    /// endpoint, valid for five minutes from `now`, `jti` unique per request.
    pub fn client_assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: OffsetDateTime,
        jti: &str,
        rng: &dyn SecureRandom,
    ) -> Result<String, PortalError> {
        let mut header = json!({"alg": "ES256", "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = json!(kid);
        }
        let iat = now.unix_timestamp();
        let claims = json!({
            "iss": client_id, "sub": client_id, "aud": audience,
            "iat": iat, "exp": iat + 300, "jti": jti,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(rng, signing_input.as_bytes())
            .map_err(|_| PortalError::Config("client key: signing failed".into()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// `n` random bytes as base64url: states, nonces, PKCE verifiers (32 bytes give the 43
/// characters RFC 7636 asks for at least), assertion ids.
pub fn random_token(rng: &dyn SecureRandom, n: usize) -> Result<String, PortalError> {
    let mut bytes = vec![0u8; n];
    rng.fill(&mut bytes)
        .map_err(|_| PortalError::Config("the system random source failed".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref())
}

/// What the gateway keeps between sending the person to the portal and the callback (keyed by
/// `state`): it binds the callback to the person and holds the PKCE verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingAuthorisation {
    pub patient: PatientId,
    pub state: String,
    pub nonce: String,
    pub code_verifier: Secret,
    pub redirect_uri: String,
}

/// The authorisation URL to send the person's browser or app to.
pub fn authorisation_url(
    base_url: &Url,
    layout: &Layout,
    client_id: &str,
    pending: &PendingAuthorisation,
) -> Result<Url, PortalError> {
    let mut url = join(base_url, &layout.authorisation.authorize_path)?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &pending.redirect_uri)
        .append_pair("scope", &layout.authorisation.scopes.join(" "))
        .append_pair("state", &pending.state)
        .append_pair("nonce", &pending.nonce)
        .append_pair(
            "code_challenge",
            &pkce_challenge(pending.code_verifier.expose()),
        )
        .append_pair("code_challenge_method", "S256");
    Ok(url)
}

/// A path of the layout under the configured base URL (which may itself have a path).
pub(crate) fn join(base_url: &Url, path: &str) -> Result<Url, PortalError> {
    let base = base_url.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}{path}"))
        .map_err(|e| PortalError::Config(format!("{base}{path} is not a URL: {e}")))
}

/// The query of the redirect back from the portal (RFC 6749 §4.1.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorisationCallback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl AuthorisationCallback {
    /// From the callback's query string (with or without the leading `?`).
    pub fn from_query(query: &str) -> Self {
        let mut out = AuthorisationCallback::default();
        let query = query.strip_prefix('?').unwrap_or(query);
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "code" => &mut out.code,
                "state" => &mut out.state,
                "error" => &mut out.error,
                "error_description" => &mut out.error_description,
                _ => continue,
            };
            *slot = Some(v.into_owned());
        }
        out
    }

    /// The code, once the callback is known to answer `pending` and not to be a refusal.
    pub fn code_for(&self, pending: &PendingAuthorisation) -> Result<&str, PortalError> {
        if self.state.as_deref() != Some(pending.state.as_str()) {
            return Err(PortalError::StateMismatch);
        }
        if let Some(error) = &self.error {
            return Err(PortalError::Unauthorised {
                reason: format!(
                    "the authorisation was refused: {error}{}",
                    self.error_description
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            });
        }
        self.code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| PortalError::Unauthorised {
                reason: "the callback carries neither a code nor an error".into(),
            })
    }
}

/// The tokens of one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenSet {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub scope: Option<String>,
}

impl TokenSet {
    /// Whether the access token should be refreshed before use at `now` (30 s of slack for
    /// clock skew and the request's own time).
    pub fn needs_refresh(&self, now: OffsetDateTime) -> bool {
        now + Duration::seconds(30) >= self.expires_at
    }
}

/// A token answer (RFC 6749 §5.1). A refresh answer without a refresh token keeps `previous`.
pub fn parse_token_response(
    body: &[u8],
    now: OffsetDateTime,
    previous: Option<&Secret>,
) -> Result<TokenSet, PortalError> {
    let context = "token answer";
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| PortalError::malformed(context, "", format!("not JSON: {e}")))?;
    let str_at = |pointer: &str| -> Result<Option<&str>, PortalError> {
        match value.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(PortalError::malformed(context, pointer, "not a string")),
        }
    };
    let access = str_at("/access_token")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PortalError::malformed(context, "/access_token", "missing"))?;
    if let Some(kind) = str_at("/token_type")?
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(PortalError::malformed(
            context,
            "/token_type",
            format!("{kind:?} is not a bearer token"),
        ));
    }
    let expires_in = match value.get("expires_in") {
        None | Some(Value::Null) => 3600,
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                PortalError::malformed(context, "/expires_in", "not a positive number of seconds")
            })?,
    };
    Ok(TokenSet {
        access_token: Secret::new(access),
        refresh_token: str_at("/refresh_token")?
            .map(Secret::new)
            .or_else(|| previous.cloned()),
        expires_at: now + Duration::seconds(expires_in),
        scope: str_at("/scope")?.map(str::to_owned),
    })
}

/// What the gateway keeps per person between pulls (serialisable; store it encrypted, it holds
/// tokens): whose records, the consent window and the tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortalSession {
    pub patient: PatientId,
    pub access: ContinuousAccess,
    pub tokens: TokenSet,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::PortalTables;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    use time::macros::datetime;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn authorisation_url_carries_the_documented_parameters() {
        let tables = PortalTables::load(&[]).unwrap();
        let pending = PendingAuthorisation {
            patient: PatientId::parse("child-1").unwrap(),
            state: "st".into(),
            nonce: "no".into(),
            code_verifier: Secret::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            redirect_uri: "https://app.example/cb".into(),
        };
        let base = Url::parse("https://portal.example/base/").unwrap();
        let url = authorisation_url(&base, &tables.layout, "musubi", &pending).unwrap();
        assert_eq!(url.path(), "/base/oauth2/authorize");
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some("musubi"));
        assert_eq!(get("redirect_uri"), Some("https://app.example/cb"));
        assert_eq!(get("scope"), Some("openid vaccinations checkups"));
        assert_eq!(get("state"), Some("st"));
        assert_eq!(get("nonce"), Some("no"));
        assert_eq!(
            get("code_challenge"),
            Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        );
        assert_eq!(get("code_challenge_method"), Some("S256"));
    }

    #[test]
    fn callback_checks_state_and_refusals() {
        let pending = PendingAuthorisation {
            patient: PatientId::parse("p").unwrap(),
            state: "abc".into(),
            nonce: "n".into(),
            code_verifier: Secret::new("v"),
            redirect_uri: "https://app.example/cb".into(),
        };
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("?code=C1&state=abc", Ok("C1")),
            ("code=C%2F2&state=abc", Ok("C/2")),
            ("code=C1&state=abd", Err("state")),
            ("code=C1", Err("state")),
            (
                "error=access_denied&error_description=user+cancelled&state=abc",
                Err("access_denied (user cancelled)"),
            ),
            ("state=abc", Err("neither a code")),
        ];
        for (query, want) in cases {
            let cb = AuthorisationCallback::from_query(query);
            match (cb.code_for(&pending), want) {
                (Ok(code), Ok(w)) => assert_eq!(code, *w),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{query}: {e}"),
                (got, _) => panic!("{query}: {got:?}"),
            }
        }
    }

    #[test]
    fn token_answers() {
        let now = datetime!(2026-01-10 00:00 UTC);
        let previous = Secret::new("old-refresh");
        let ok = parse_token_response(
            br#"{"access_token":"A","token_type":"Bearer","expires_in":600,"refresh_token":"R","scope":"openid"}"#,
            now,
            None,
        )
        .unwrap();
        assert_eq!(ok.access_token.expose(), "A");
        assert_eq!(ok.refresh_token.as_ref().unwrap().expose(), "R");
        assert_eq!(ok.expires_at, now + Duration::seconds(600));
        assert!(!ok.needs_refresh(now + Duration::seconds(569)));
        assert!(ok.needs_refresh(now + Duration::seconds(570)));

        let kept = parse_token_response(
            br#"{"access_token":"B","token_type":"bearer","expires_in":"60"}"#,
            now,
            Some(&previous),
        )
        .unwrap();
        assert_eq!(kept.refresh_token, Some(previous));

        let bad: &[(&[u8], &str)] = &[
            (b"<html>", ""),
            (br#"{"token_type":"Bearer"}"#, "/access_token"),
            (br#"{"access_token":7}"#, "/access_token"),
            (br#"{"access_token":"A","token_type":"MAC"}"#, "/token_type"),
            (br#"{"access_token":"A","expires_in":-5}"#, "/expires_in"),
        ];
        for (body, pointer) in bad {
            match parse_token_response(body, now, None) {
                Err(PortalError::Malformed { pointer: p, .. }) => assert_eq!(p, *pointer),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn client_assertion_is_a_verifiable_es256_jwt() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = ClientKey::from_pkcs8_der(pkcs8.as_ref(), Some("k1".into())).unwrap();
        let now = datetime!(2026-01-10 00:00 UTC);
        let jwt = key
            .client_assertion("musubi", "https://p.example/token", now, "j1", &rng)
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "typ": "JWT", "kid": "k1"}));
        assert_eq!(claims["iss"], "musubi");
        assert_eq!(claims["sub"], "musubi");
        assert_eq!(claims["aud"], "https://p.example/token");
        assert_eq!(claims["exp"].as_i64(), Some(now.unix_timestamp() + 300));
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key());
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(public.verify(signed.as_bytes(), &signature).is_ok());
        assert!(public.verify(b"tampered", &signature).is_err());
    }

    #[test]
    fn patient_ids() {
        for ok in ["a", "child-1", "A.b-9", &"x".repeat(64)] {
            assert!(PatientId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a b", "患者", &"x".repeat(65)] {
            assert!(PatientId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", Secret::new("tok")), "Secret(***)");
    }
}
