//! The client registry: who may ask for tokens, for which organisation, with which grant types,
//! scopes, redirect URIs and credentials — typed configuration validated once at start-up.

use std::collections::HashMap;
use std::fmt;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AuthError;
use crate::jwk::{Jwks, PublicKey};
use crate::scopes::{Context, ScopeSet};

/// What kind of party a client is; decides nothing by itself, but the gateway's policies and the
/// audit log key on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientKind {
    /// A clinic's electronic medical record system (電子カルテ).
    ClinicEmr,
    /// A medical association (医師会).
    MedicalAssociation,
    /// A municipality (市区町村).
    Municipality,
    /// A personal health record app acting for a parent.
    PhrApp,
    /// An adapter for a national or municipal portal.
    PortalAdapter,
    /// A research or evaluation project's client: it receives pseudonymised exports of the
    /// projects it is listed on.
    ResearchProject,
    /// The gateway's operator: runs the month close and handles the delivery queue. It acts
    /// for no organisation and no person, so it is never a recipient of patient data.
    Operator,
}

/// An OAuth grant type (RFC 6749).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
    RefreshToken,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
        }
    }
}

/// The client certificate a mutual-TLS client (RFC 8705 §2) must present.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CertificateBinding {
    /// The subject distinguished name as the gateway renders it (RFC 4514 string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_dn: Option<String>,
    /// SHA-256 of the certificate's DER, hex (colons and case are ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_fingerprint: Option<String>,
}

/// How a client proves who it is. A client may have several (e.g. a secret while it moves to
/// private_key_jwt).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Credentials {
    /// Argon2id PHC string of the client secret (client_secret_basic / client_secret_post);
    /// make one with [`hash_secret`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// Inline public JWKS for private_key_jwt (RSA and EC keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Jwks>,
    /// Client certificate for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateBinding>,
}

impl fmt::Debug for Credentials {
    // The hash is not the secret, but it is offline-attackable: keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "secret_hash",
                &self.secret_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("jwks", &self.jwks.as_ref().map(|j| j.keys.len()))
            .field("certificate", &self.certificate)
            .finish()
    }
}

impl Credentials {
    /// Whether the client can authenticate at all (a confidential client).
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some() || self.jwks.is_some() || self.certificate.is_some()
    }
}

/// One registered client, as written in the gateway's `[[clients]]` TOML tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    pub id: String,
    pub kind: ClientKind,
    /// The insurance medical institution code (保険医療機関番号, 10 digits) it acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medical_institution_code: Option<String>,
    /// The local-government code (全国地方公共団体コード, 6 digits) it acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub municipality_code: Option<String>,
    /// The Organization resource it acts for, as `Organization/{id}` on this server: how a
    /// medical association (医師会), which has no code of its own, is recognised where a record
    /// names it (e.g. as a claim batch's provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    pub grant_types: Vec<GrantType>,
    /// The scopes it may be granted (SMART scope strings, wildcards allowed).
    pub scopes: Vec<String>,
    /// Exact redirect URIs for authorization_code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub credentials: Credentials,
}

/// A client after validation, with its scopes and keys parsed.
#[derive(Debug, Clone)]
pub struct RegisteredClient {
    pub client: Client,
    pub scopes: ScopeSet,
    /// The client's JWKS keys by `kid`, parsed.
    pub(crate) keys: Vec<(String, Option<String>, PublicKey)>,
    /// The certificate fingerprint, normalised to lower-case hex without colons.
    fingerprint: Option<String>,
}

impl RegisteredClient {
    pub fn id(&self) -> &str {
        &self.client.id
    }

    pub fn allows_grant(&self, grant_type: GrantType) -> bool {
        self.client.grant_types.contains(&grant_type)
    }

    /// `Ok` if the client may use the grant type (else `unauthorized_client`).
    pub fn require_grant(&self, grant_type: GrantType) -> Result<(), AuthError> {
        if self.allows_grant(grant_type) {
            Ok(())
        } else {
            Err(AuthError::UnauthorizedClient {
                client_id: self.client.id.clone(),
                grant_type: grant_type.as_str().into(),
            })
        }
    }

    /// `Ok` if `redirect_uri` is one of the registered ones, compared as exact strings
    /// (RFC 6749 §3.1.2.3; RFC 9700 §4.1 asks for exact matching).
    pub fn require_redirect_uri(&self, redirect_uri: &str) -> Result<(), AuthError> {
        if self.client.redirect_uris.iter().any(|u| u == redirect_uri) {
            Ok(())
        } else {
            Err(AuthError::InvalidRequest(format!(
                "redirect_uri is not registered for client {:?}",
                self.client.id
            )))
        }
    }
}

/// All clients by id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    clients: HashMap<String, RegisteredClient>,
}

impl Registry {
    /// Validates every client; the first problem is reported with the client's id.
    ///
    /// Checked: unique non-empty ids; the organisation code a kind needs (clinic EMR: medical
    /// institution code; municipality: municipality code) with the right digit count; grant
    /// types present and those that need credentials have them (client_credentials needs a
    /// secret, JWKS or certificate; refresh_token needs authorization_code); authorization_code
    /// needs at least one redirect URI, each absolute without a fragment (RFC 6749 §3.1.2) and
    /// `http:` only for loopback hosts (RFC 8252 §7.3); scopes parse, `system/` scopes only with
    /// client_credentials and `patient/`/`user/` scopes only with authorization_code; a secret
    /// hash is an Argon2id PHC string; JWKS keys have unique `kid`s and parse; a certificate
    /// binding names a subject or a 64-hex-digit fingerprint.
    pub fn new(clients: Vec<Client>) -> Result<Registry, AuthError> {
        let mut registry = Registry::default();
        for client in clients {
            let id = client.id.clone();
            let config = |problem: String| AuthError::Config {
                client: id.clone(),
                problem,
            };
            if id.trim().is_empty() {
                return Err(config("id is empty".into()));
            }
            if registry.clients.contains_key(&id) {
                return Err(config("id is registered twice".into()));
            }
            let registered = validate(client).map_err(config)?;
            registry.clients.insert(id, registered);
        }
        Ok(registry)
    }

    pub fn get(&self, client_id: &str) -> Option<&RegisteredClient> {
        self.clients.get(client_id)
    }

    /// The client or `invalid_client`.
    pub fn require(&self, client_id: &str) -> Result<&RegisteredClient, AuthError> {
        self.get(client_id).ok_or_else(|| AuthError::InvalidClient {
            client_id: client_id.to_owned(),
            reason: "unknown client".into(),
        })
    }

    /// client_secret_basic / client_secret_post: checks the secret against the Argon2id hash.
    /// Costs one Argon2 evaluation (tens of milliseconds by design): run it off the I/O threads.
    pub fn authenticate_secret(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<&RegisteredClient, AuthError> {
        let client = self.require(client_id)?;
        let fail = |reason: &str| AuthError::InvalidClient {
            client_id: client_id.to_owned(),
            reason: reason.to_owned(),
        };
        let hash = client
            .client
            .credentials
            .secret_hash
            .as_deref()
            .ok_or_else(|| fail("client has no secret"))?;
        if verify_secret(secret, hash)? {
            Ok(client)
        } else {
            Err(fail("wrong secret"))
        }
    }

    /// Mutual TLS (RFC 8705 §2.1.2 style, PKI or self-signed): the presented certificate must
    /// match the registered fingerprint and/or subject DN (each one registered must match).
    pub fn authenticate_certificate(
        &self,
        client_id: &str,
        certificate_der: &[u8],
        subject_dn: &str,
    ) -> Result<&RegisteredClient, AuthError> {
        let client = self.require(client_id)?;
        let fail = |reason: &str| AuthError::InvalidClient {
            client_id: client_id.to_owned(),
            reason: reason.to_owned(),
        };
        let binding = client
            .client
            .credentials
            .certificate
            .as_ref()
            .ok_or_else(|| fail("client has no certificate binding"))?;
        if let Some(expected) = &client.fingerprint {
            let presented = hex(&Sha256::digest(certificate_der));
            if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(fail("certificate fingerprint does not match"));
            }
        }
        if let Some(expected) = &binding.subject_dn
            && expected != subject_dn
        {
            return Err(fail("certificate subject does not match"));
        }
        Ok(client)
    }

    pub fn iter(&self) -> impl Iterator<Item = &RegisteredClient> {
        self.clients.values()
    }
}

fn validate(client: Client) -> Result<RegisteredClient, String> {
    check_code(
        "medical_institution_code",
        client.medical_institution_code.as_deref(),
        10,
    )?;
    check_code("municipality_code", client.municipality_code.as_deref(), 6)?;
    if let Some(organization) = &client.organization {
        check_organization(organization)?;
    }
    match client.kind {
        ClientKind::ClinicEmr if client.medical_institution_code.is_none() => {
            return Err("a clinic-emr client needs medical_institution_code".into());
        }
        ClientKind::Municipality if client.municipality_code.is_none() => {
            return Err("a municipality client needs municipality_code".into());
        }
        // An operator acts for the gateway, never for a signed-in user or patient.
        ClientKind::Operator if client.grant_types != [GrantType::ClientCredentials] => {
            return Err("an operator client has the grant type client_credentials only".into());
        }
        _ => {}
    }
    if client.grant_types.is_empty() {
        return Err("grant_types is empty".into());
    }
    let has = |g: GrantType| client.grant_types.contains(&g);
    let credentials = &client.credentials;
    if has(GrantType::ClientCredentials) && !credentials.is_confidential() {
        return Err(
            "grant type client_credentials needs credentials (secret_hash, jwks or certificate)"
                .into(),
        );
    }
    if has(GrantType::RefreshToken) && !has(GrantType::AuthorizationCode) {
        return Err("grant type refresh_token is only issued with authorization_code".into());
    }
    if has(GrantType::AuthorizationCode) {
        if client.redirect_uris.is_empty() {
            return Err("grant type authorization_code needs at least one redirect_uri".into());
        }
        for uri in &client.redirect_uris {
            check_redirect_uri(uri).map_err(|why| format!("redirect_uri {uri:?}: {why}"))?;
        }
    } else if !client.redirect_uris.is_empty() {
        return Err("redirect_uris are set but authorization_code is not a grant type".into());
    }
    let scopes =
        ScopeSet::parse_all(client.scopes.iter().map(String::as_str)).map_err(|e| e.to_string())?;
    if scopes.has_context(Context::System) && !has(GrantType::ClientCredentials) {
        return Err("system/ scopes need grant type client_credentials".into());
    }
    if (scopes.has_context(Context::Patient) || scopes.has_context(Context::User))
        && !has(GrantType::AuthorizationCode)
    {
        return Err("patient/ and user/ scopes need grant type authorization_code".into());
    }
    if let Some(hash) = &credentials.secret_hash {
        let parsed =
            PasswordHash::new(hash).map_err(|e| format!("secret_hash is not a PHC string: {e}"))?;
        if parsed.algorithm.as_str() != "argon2id" {
            return Err(format!(
                "secret_hash uses {}, not argon2id",
                parsed.algorithm.as_str()
            ));
        }
    }
    let mut keys = Vec::new();
    if let Some(jwks) = &credentials.jwks {
        if jwks.keys.is_empty() {
            return Err("jwks has no keys".into());
        }
        for (i, jwk) in jwks.keys.iter().enumerate() {
            let kid = jwk
                .kid
                .clone()
                .filter(|k| !k.is_empty())
                .ok_or_else(|| format!("jwks key {i} has no kid"))?;
            if keys.iter().any(|(k, _, _)| *k == kid) {
                return Err(format!("jwks kid {kid:?} appears twice"));
            }
            let key = PublicKey::from_jwk(jwk).map_err(|e| format!("jwks key {kid:?}: {e}"))?;
            keys.push((kid, jwk.alg.clone(), key));
        }
    }
    let mut fingerprint = None;
    if let Some(binding) = &credentials.certificate {
        if binding.subject_dn.is_none() && binding.sha256_fingerprint.is_none() {
            return Err("certificate needs subject_dn or sha256_fingerprint".into());
        }
        if let Some(fp) = &binding.sha256_fingerprint {
            let normal: String = fp
                .chars()
                .filter(|c| *c != ':')
                .map(|c| c.to_ascii_lowercase())
                .collect();
            if normal.len() != 64 || !normal.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err("certificate sha256_fingerprint must be 64 hex digits".into());
            }
            fingerprint = Some(normal);
        }
    }
    Ok(RegisteredClient {
        client,
        scopes,
        keys,
        fingerprint,
    })
}

/// `Organization/{id}` with a FHIR id (1–64 of `A-Z a-z 0-9 - .`), as a local reference.
fn check_organization(reference: &str) -> Result<(), String> {
    let id = reference.strip_prefix("Organization/").unwrap_or_default();
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "organization {reference:?} must be Organization/{{id}} (a FHIR id: 1-64 letters, digits, '-' or '.')"
        ))
    }
}

/// Digit count only: the check digit is validated by the `identifiers` crate.
fn check_code(name: &str, code: Option<&str>, digits: usize) -> Result<(), String> {
    match code {
        Some(code) if code.len() != digits || !code.chars().all(|c| c.is_ascii_digit()) => {
            Err(format!("{name} {code:?} must be {digits} digits"))
        }
        _ => Ok(()),
    }
}

fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    let (scheme, rest) = uri
        .split_once(':')
        .ok_or("not an absolute URI (no scheme)")?;
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() {
        return Err("not an absolute URI");
    }
    if uri.contains('#') {
        return Err("must not contain a fragment");
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace");
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => {
            let host = rest
                .strip_prefix("//")
                .ok_or("https URI without authority")?;
            if host.is_empty() || host.starts_with('/') {
                return Err("https URI without host");
            }
            Ok(())
        }
        "http" => {
            let authority = rest
                .strip_prefix("//")
                .ok_or("http URI without authority")?
                .split(['/', '?'])
                .next()
                .unwrap_or("");
            let host = match authority.rsplit_once(':') {
                Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
                _ => authority,
            };
            if matches!(host, "127.0.0.1" | "[::1]" | "localhost") {
                Ok(())
            } else {
                Err("plain http is allowed only for loopback redirect URIs")
            }
        }
        _ => Ok(()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes a client secret as an Argon2id PHC string (the argon2 crate's default parameters,
/// which follow RFC 9106 / OWASP guidance) with a random salt.
pub fn hash_secret(secret: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut rand_core::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Checks a secret against a PHC string. `Ok(false)` is a mismatch; `Err` is a broken hash.
pub fn verify_secret(secret: &str, phc: &str) -> Result<bool, AuthError> {
    let parsed = PasswordHash::new(phc).map_err(|e| AuthError::Hash(e.to_string()))?;
    match Argon2::default().verify_password(secret.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(AuthError::Hash(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One hash for all tests: Argon2 is slow in debug builds.
    fn secret_hash() -> &'static str {
        static HASH: OnceLock<String> = OnceLock::new();
        HASH.get_or_init(|| hash_secret("s3cret").unwrap())
    }

    fn emr() -> Client {
        Client {
            id: "clinic-a".into(),
            kind: ClientKind::ClinicEmr,
            medical_institution_code: Some("1312345678".into()),
            municipality_code: None,
            organization: None,
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec![
                "system/Immunization.cruds".into(),
                "system/Patient.rs".into(),
            ],
            redirect_uris: vec![],
            credentials: Credentials {
                secret_hash: Some(secret_hash().to_owned()),
                ..Credentials::default()
            },
        }
    }

    fn phr() -> Client {
        Client {
            id: "phr".into(),
            kind: ClientKind::PhrApp,
            medical_institution_code: None,
            municipality_code: None,
            organization: None,
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: vec![
                "patient/*.rs".into(),
                "openid".into(),
                "fhirUser".into(),
                "launch/patient".into(),
                "offline_access".into(),
            ],
            redirect_uris: vec![
                "https://phr.example.jp/callback".into(),
                "jp.example.phr:/oauth".into(),
                "http://127.0.0.1:8123/cb".into(),
            ],
            credentials: Credentials::default(),
        }
    }

    #[test]
    fn reads_clients_from_toml() {
        let text = format!(
            r#"
            [[clients]]
            id = "clinic-a"
            kind = "clinic-emr"
            medical_institution_code = "1312345678"
            grant_types = ["client_credentials"]
            scopes = ["system/Immunization.cruds"]
            [clients.credentials]
            secret_hash = "{}"
            [clients.credentials.certificate]
            sha256_fingerprint = "AB:{}"

            [[clients]]
            id = "city"
            kind = "municipality"
            municipality_code = "131016"
            grant_types = ["client_credentials"]
            scopes = ["system/*.rs"]
            [clients.credentials.jwks]
            keys = [{{ kty = "EC", kid = "k1", crv = "P-256", x = "{x}", y = "{y}" }}]

            [[clients]]
            id = "ma"
            kind = "medical-association"
            organization = "Organization/ma-chiyoda"
            grant_types = ["client_credentials"]
            scopes = ["system/Claim.rs"]
            [clients.credentials]
            secret_hash = "{}"
            "#,
            secret_hash(),
            "cd".repeat(31),
            secret_hash(),
            x = P256_X,
            y = P256_Y,
        );
        #[derive(Deserialize)]
        struct File {
            clients: Vec<Client>,
        }
        let file: File = toml::from_str(&text).unwrap();
        let registry = Registry::new(file.clients).unwrap();
        let city = registry.get("city").unwrap();
        assert_eq!(city.client.kind, ClientKind::Municipality);
        assert_eq!(city.keys.len(), 1);
        assert_eq!(city.scopes.to_string(), "system/*.rs");
        assert!(registry.get("clinic-a").unwrap().fingerprint.is_some());
        assert_eq!(
            registry.get("ma").unwrap().client.organization.as_deref(),
            Some("Organization/ma-chiyoda")
        );
    }

    /// A valid P-256 point (the generator), base64url.
    const P256_X: &str = "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY";
    const P256_Y: &str = "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU";

    #[test]
    fn validation_errors_name_the_client() {
        let with = |f: fn(&mut Client)| {
            let mut c = emr();
            f(&mut c);
            c
        };
        let with_phr = |f: fn(&mut Client)| {
            let mut c = phr();
            f(&mut c);
            c
        };
        // (clients, client named, words in the problem)
        let cases: Vec<(Vec<Client>, &str, &str)> = vec![
            (vec![emr(), emr()], "clinic-a", "twice"),
            (vec![with(|c| c.id = " ".into())], " ", "empty"),
            (
                vec![with(|c| c.medical_institution_code = None)],
                "clinic-a",
                "needs medical_institution_code",
            ),
            (
                vec![with(|c| c.medical_institution_code = Some("12345".into()))],
                "clinic-a",
                "10 digits",
            ),
            (
                vec![with(|c| {
                    c.kind = ClientKind::Municipality;
                    c.municipality_code = None
                })],
                "clinic-a",
                "needs municipality_code",
            ),
            (
                vec![with(|c| {
                    c.kind = ClientKind::Operator;
                    c.grant_types.push(GrantType::AuthorizationCode)
                })],
                "clinic-a",
                "client_credentials only",
            ),
            (
                vec![with(|c| c.organization = Some("ma-1".into()))],
                "clinic-a",
                "must be Organization/{id}",
            ),
            (
                vec![with(|c| c.organization = Some("Organization/ma 1".into()))],
                "clinic-a",
                "must be Organization/{id}",
            ),
            (
                vec![with(|c| c.grant_types.clear())],
                "clinic-a",
                "grant_types is empty",
            ),
            (
                vec![with(|c| c.credentials = Credentials::default())],
                "clinic-a",
                "needs credentials",
            ),
            (
                vec![with(|c| c.scopes.push("system/Patient.dus".into()))],
                "clinic-a",
                "in-order",
            ),
            (
                vec![with(|c| c.scopes.push("patient/*.rs".into()))],
                "clinic-a",
                "need grant type authorization_code",
            ),
            (
                vec![with(|c| {
                    c.credentials.secret_hash = Some("plaintext".into())
                })],
                "clinic-a",
                "not a PHC string",
            ),
            (
                vec![with(|c| {
                    c.credentials.secret_hash =
                        Some("$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$dGVzdGhhc2h0ZXN0aGFzaA".into())
                })],
                "clinic-a",
                "not argon2id",
            ),
            (
                vec![with(|c| {
                    c.redirect_uris.push("https://x.example/cb".into())
                })],
                "clinic-a",
                "authorization_code is not",
            ),
            (
                vec![with_phr(|c| c.redirect_uris.clear())],
                "phr",
                "at least one redirect_uri",
            ),
            (
                vec![with_phr(|c| c.redirect_uris.push("/callback".into()))],
                "phr",
                "absolute",
            ),
            (
                vec![with_phr(|c| c.redirect_uris.push("callback".into()))],
                "phr",
                "absolute",
            ),
            (
                vec![with_phr(|c| {
                    c.redirect_uris.push("https://phr.example.jp/cb#x".into())
                })],
                "phr",
                "fragment",
            ),
            (
                vec![with_phr(|c| {
                    c.redirect_uris.push("http://phr.example.jp/cb".into())
                })],
                "phr",
                "loopback",
            ),
            (
                vec![with_phr(|c| c.grant_types = vec![GrantType::RefreshToken])],
                "phr",
                "only issued with authorization_code",
            ),
            (
                vec![with_phr(|c| c.scopes.push("system/*.rs".into()))],
                "phr",
                "need grant type client_credentials",
            ),
            (
                vec![with(|c| {
                    c.credentials.jwks = Some(Jwks {
                        keys: vec![crate::jwk::Jwk {
                            kty: "EC".into(),
                            crv: Some("P-256".into()),
                            x: Some(P256_X.into()),
                            y: Some(P256_Y.into()),
                            ..Default::default()
                        }],
                    })
                })],
                "clinic-a",
                "no kid",
            ),
            (
                vec![with(|c| {
                    let key = crate::jwk::Jwk {
                        kty: "EC".into(),
                        kid: Some("k".into()),
                        crv: Some("P-256".into()),
                        x: Some(P256_X.into()),
                        y: Some(P256_Y.into()),
                        ..Default::default()
                    };
                    c.credentials.jwks = Some(Jwks {
                        keys: vec![key.clone(), key],
                    })
                })],
                "clinic-a",
                "appears twice",
            ),
            (
                vec![with(|c| {
                    c.credentials.jwks = Some(Jwks {
                        keys: vec![crate::jwk::Jwk {
                            kty: "EC".into(),
                            kid: Some("k".into()),
                            crv: Some("P-256".into()),
                            x: Some(P256_X.into()),
                            y: Some(P256_X.into()),
                            ..Default::default()
                        }],
                    })
                })],
                "clinic-a",
                "not on the curve",
            ),
            (
                vec![with(|c| {
                    c.credentials.certificate = Some(CertificateBinding::default())
                })],
                "clinic-a",
                "subject_dn or sha256_fingerprint",
            ),
            (
                vec![with(|c| {
                    c.credentials.certificate = Some(CertificateBinding {
                        subject_dn: None,
                        sha256_fingerprint: Some("abc".into()),
                    })
                })],
                "clinic-a",
                "64 hex digits",
            ),
        ];
        for (clients, name, words) in cases {
            match Registry::new(clients) {
                Err(AuthError::Config { client, problem }) => {
                    assert_eq!(client, name, "{problem}");
                    assert!(problem.contains(words), "expected {words:?} in {problem:?}");
                }
                other => panic!("expected a config error with {words:?}, got {other:?}"),
            }
        }
        assert!(Registry::new(vec![emr(), phr()]).is_ok());
    }

    #[test]
    fn secrets_hash_and_verify() {
        let hash = secret_hash();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_secret("s3cret", hash).unwrap());
        assert!(!verify_secret("s3cret ", hash).unwrap());
        assert!(verify_secret("x", "not a hash").is_err());
        let registry = Registry::new(vec![emr(), phr()]).unwrap();
        assert_eq!(
            registry
                .authenticate_secret("clinic-a", "s3cret")
                .unwrap()
                .id(),
            "clinic-a"
        );
        let wrong = registry
            .authenticate_secret("clinic-a", "guess")
            .unwrap_err();
        assert_eq!(wrong.oauth_error(), "invalid_client");
        assert!(registry.authenticate_secret("nobody", "s3cret").is_err());
        assert!(registry.authenticate_secret("phr", "s3cret").is_err());
        // The hash never reaches a log line.
        assert!(!format!("{:?}", registry.get("clinic-a").unwrap()).contains("argon2id"));
    }

    #[test]
    fn certificates_match_by_fingerprint_and_subject() {
        let der = b"fake DER certificate";
        let mut client = emr();
        client.credentials.certificate = Some(CertificateBinding {
            subject_dn: Some("CN=clinic-a,O=Example Clinic".into()),
            sha256_fingerprint: Some(
                hex(&Sha256::digest(der))
                    .to_uppercase()
                    .as_bytes()
                    .chunks(2)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
        });
        let registry = Registry::new(vec![client]).unwrap();
        assert!(
            registry
                .authenticate_certificate("clinic-a", der, "CN=clinic-a,O=Example Clinic")
                .is_ok()
        );
        assert!(
            registry
                .authenticate_certificate("clinic-a", b"other", "CN=clinic-a,O=Example Clinic")
                .is_err()
        );
        assert!(
            registry
                .authenticate_certificate("clinic-a", der, "CN=someone-else")
                .is_err()
        );
    }

    #[test]
    fn grant_and_redirect_checks() {
        let registry = Registry::new(vec![emr(), phr()]).unwrap();
        let phr = registry.get("phr").unwrap();
        assert!(phr.require_grant(GrantType::AuthorizationCode).is_ok());
        assert_eq!(
            phr.require_grant(GrantType::ClientCredentials)
                .unwrap_err()
                .oauth_error(),
            "unauthorized_client"
        );
        assert!(
            phr.require_redirect_uri("https://phr.example.jp/callback")
                .is_ok()
        );
        assert!(
            phr.require_redirect_uri("https://phr.example.jp/callback/")
                .is_err()
        );
        assert!(
            phr.require_redirect_uri("https://phr.example.jp/callback?x=1")
                .is_err()
        );
    }
}
