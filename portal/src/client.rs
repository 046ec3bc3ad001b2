//! The HTTP edge of the adapter: reqwest over rustls (ring provider, chosen roots), the token
//! requests, and paged record retrieval with timeouts, retries with backoff and jitter,
//! `Retry-After`, and one token refresh on 401. Everything it reads is handed to the pure
//! modules; the consent is checked before any request.

use std::sync::Arc;
use std::time::Duration;

use fhir::validate::Issue;
use reqwest::{StatusCode, Url, header};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;
use time::OffsetDateTime;

use crate::auth::{
    AuthorisationCallback, CLIENT_ASSERTION_TYPE, ClientAuth, PatientId, PendingAuthorisation,
    PortalSession, Secret, authorisation_url, join, parse_token_response, random_token,
};
use crate::consent::ContinuousAccess;
use crate::error::PortalError;
use crate::map::{MappedCheckup, MappedVaccination, map_checkup, map_vaccination};
use crate::records::{
    CheckupRecord, VaccinationRecord, parse_checkup_page, parse_vaccination_page,
};
use crate::retry::{RetryPolicy, StatusClass, classify, parse_retry_after};
use crate::tables::PortalTables;

/// The adapter's configuration (one typed struct; the gateway fills it from its TOML file).
#[derive(Debug)]
pub struct PortalConfig {
    /// The portal's base URL (`https://` only); the layout's paths are appended to it.
    pub base_url: String,
    /// The client id the Digital Agency review assigned to Musubi.
    pub client_id: String,
    pub client_auth: ClientAuth,
    /// Where the portal sends the person back after consenting (the PHR app's or gateway's
    /// callback).
    pub redirect_uri: String,
    pub connect_timeout: Duration,
    /// Per attempt, the whole answer included.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Trust the public web PKI roots (webpki-roots). Off in tests, which trust only the mock's CA.
    pub trust_public_roots: bool,
    /// Further CA certificates (PEM) to trust.
    pub extra_roots_pem: Vec<String>,
    /// Pages read per endpoint at most, against a looping cursor.
    pub max_pages: u32,
}

impl PortalConfig {
    /// A configuration with the default timeouts (5 s connect, 20 s per attempt), retry policy,
    /// public roots and 50 pages.
    pub fn new(
        base_url: impl Into<String>,
        client_id: impl Into<String>,
        client_auth: ClientAuth,
        redirect_uri: impl Into<String>,
    ) -> Self {
        PortalConfig {
            base_url: base_url.into(),
            client_id: client_id.into(),
            client_auth,
            redirect_uri: redirect_uri.into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            retry: RetryPolicy::default(),
            trust_public_roots: true,
            extra_roots_pem: Vec::new(),
            max_pages: 50,
        }
    }
}

/// Everything one pull of vaccinations read: the records, what was skipped, and the raw pages
/// (keep them for audit: the layout is a guess, jp-specs §2.2 advises keeping the raw payload).
#[derive(Debug)]
pub struct VaccinationPull {
    pub pulled_at: OffsetDateTime,
    pub records: Vec<VaccinationRecord>,
    pub skipped: Vec<Issue>,
    pub raw_pages: Vec<Value>,
    /// HTTP requests made, retries and refreshes included.
    pub requests: u32,
}

impl VaccinationPull {
    /// The records as FHIR, for [`crate::reconcile`].
    pub fn mapped(&self, tables: &PortalTables, patient: &PatientId) -> Vec<MappedVaccination> {
        self.records
            .iter()
            .map(|r| map_vaccination(tables, patient, r, self.pulled_at))
            .collect()
    }
}

/// Everything one pull of check-ups read.
#[derive(Debug)]
pub struct CheckupPull {
    pub pulled_at: OffsetDateTime,
    pub records: Vec<CheckupRecord>,
    pub skipped: Vec<Issue>,
    pub raw_pages: Vec<Value>,
    pub requests: u32,
}

impl CheckupPull {
    pub fn mapped(&self, tables: &PortalTables, patient: &PatientId) -> Vec<MappedCheckup> {
        self.records
            .iter()
            .map(|r| map_checkup(tables, patient, r, self.pulled_at))
            .collect()
    }
}

/// The portal client. Cheap to share (`Arc`), one per process.
#[derive(Debug)]
pub struct PortalClient {
    config: PortalConfig,
    base: Url,
    tables: Arc<PortalTables>,
    http: reqwest::Client,
    rng: SystemRandom,
}

fn tls_config(config: &PortalConfig) -> Result<rustls::ClientConfig, PortalError> {
    let mut roots = RootCertStore::empty();
    if config.trust_public_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for (i, pem) in config.extra_roots_pem.iter().enumerate() {
        let mut any = false;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| {
                PortalError::Config(format!("extra_roots_pem[{i}] is not PEM certificates: {e}"))
            })?;
            roots.add(cert).map_err(|e| {
                PortalError::Config(format!("extra_roots_pem[{i}] is not a usable CA: {e}"))
            })?;
            any = true;
        }
        if !any {
            return Err(PortalError::Config(format!(
                "extra_roots_pem[{i}] holds no certificate"
            )));
        }
    }
    if roots.is_empty() {
        return Err(PortalError::Config(
            "no CA is trusted: enable trust_public_roots or give extra_roots_pem".into(),
        ));
    }
    // The ring provider explicitly, whatever the process default is.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PortalError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// How one request ended, before it is turned into a [`PortalError`].
enum Failure {
    Status(StatusCode, Vec<u8>),
    Transport { timeout: bool, detail: String },
}

impl PortalClient {
    pub fn new(config: PortalConfig, tables: Arc<PortalTables>) -> Result<Self, PortalError> {
        let base = Url::parse(&config.base_url)
            .map_err(|e| PortalError::Config(format!("base_url {:?}: {e}", config.base_url)))?;
        if base.scheme() != "https" {
            return Err(PortalError::Config(format!(
                "base_url {:?} must be https",
                config.base_url
            )));
        }
        if config.retry.max_attempts == 0 {
            return Err(PortalError::Config(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(&config)?)
            .https_only(true)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("musubi-portal/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PortalError::Config(format!("HTTP client: {e}")))?;
        Ok(PortalClient {
            config,
            base,
            tables,
            http,
            rng: SystemRandom::new(),
        })
    }

    pub fn tables(&self) -> &PortalTables {
        &self.tables
    }

    /// Start the person's authorisation: the URL to send them to, and the state to keep until
    /// the callback (keyed by `pending.state`).
    pub fn begin_authorisation(
        &self,
        patient: PatientId,
    ) -> Result<(Url, PendingAuthorisation), PortalError> {
        let pending = PendingAuthorisation {
            patient,
            state: random_token(&self.rng, 24)?,
            nonce: random_token(&self.rng, 24)?,
            code_verifier: Secret::new(random_token(&self.rng, 32)?),
            redirect_uri: self.config.redirect_uri.clone(),
        };
        let url = authorisation_url(
            &self.base,
            &self.tables.layout,
            &self.config.client_id,
            &pending,
        )?;
        Ok((url, pending))
    }

    /// Finish the authorisation: check the callback, exchange the code for tokens, and start
    /// the continuous-access window at `now`.
    pub async fn complete_authorisation(
        &self,
        pending: &PendingAuthorisation,
        callback: &AuthorisationCallback,
        now: OffsetDateTime,
    ) -> Result<PortalSession, PortalError> {
        let code = callback.code_for(pending)?;
        let form = vec![
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("redirect_uri".to_owned(), pending.redirect_uri.clone()),
            (
                "code_verifier".to_owned(),
                pending.code_verifier.expose().to_owned(),
            ),
        ];
        let body = self.token_request(form, now).await?;
        let tokens = parse_token_response(&body, now, None)?;
        Ok(PortalSession {
            patient: pending.patient.clone(),
            access: ContinuousAccess::grant(now, self.tables.layout.continuous_access_days),
            tokens,
        })
    }

    /// Refresh the access token. Refused once the consent has ended: a refresh must not
    /// stretch access beyond the consent.
    pub async fn refresh(
        &self,
        session: &mut PortalSession,
        now: OffsetDateTime,
    ) -> Result<(), PortalError> {
        session.access.check(now)?;
        let Some(refresh_token) = session.tokens.refresh_token.clone() else {
            return Err(PortalError::Unauthorised {
                reason: "the access token expired and there is no refresh token".into(),
            });
        };
        let form = vec![
            ("grant_type".to_owned(), "refresh_token".to_owned()),
            (
                "refresh_token".to_owned(),
                refresh_token.expose().to_owned(),
            ),
        ];
        let body = match self.token_request(form, now).await {
            Err(e) => {
                self.note_consent_error(session, &e, now);
                return Err(e);
            }
            Ok(body) => body,
        };
        session.tokens = parse_token_response(&body, now, Some(&refresh_token))?;
        Ok(())
    }

    /// Pull every vaccination record of the session's person (all pages of every endpoint).
    /// `session` may come back with refreshed tokens, or with the consent marked ended when
    /// the portal says so: store it again.
    pub async fn pull_vaccinations(
        &self,
        session: &mut PortalSession,
        now: OffsetDateTime,
    ) -> Result<VaccinationPull, PortalError> {
        let layout = &self.tables.layout;
        let mut pull = VaccinationPull {
            pulled_at: now,
            records: Vec::new(),
            skipped: Vec::new(),
            raw_pages: Vec::new(),
            requests: 0,
        };
        for path in &layout.vaccination.paths {
            let pages = self.pages(session, path, now, &mut pull.requests).await?;
            for page in pages {
                let parsed = parse_vaccination_page(&self.tables, path, &page)?;
                pull.records.extend(parsed.records);
                pull.skipped.extend(parsed.skipped);
                pull.raw_pages.push(page);
            }
        }
        Ok(pull)
    }

    /// Pull every check-up record (乳幼児健診, 妊婦健診) of the session's person.
    pub async fn pull_checkups(
        &self,
        session: &mut PortalSession,
        now: OffsetDateTime,
    ) -> Result<CheckupPull, PortalError> {
        let layout = &self.tables.layout;
        let mut pull = CheckupPull {
            pulled_at: now,
            records: Vec::new(),
            skipped: Vec::new(),
            raw_pages: Vec::new(),
            requests: 0,
        };
        for path in &layout.checkup.paths {
            let pages = self.pages(session, path, now, &mut pull.requests).await?;
            for page in pages {
                let parsed = parse_checkup_page(&self.tables, path, &page)?;
                pull.records.extend(parsed.records);
                pull.skipped.extend(parsed.skipped);
                pull.raw_pages.push(page);
            }
        }
        Ok(pull)
    }

    /// Every page of one endpoint, following the layout's cursor.
    async fn pages(
        &self,
        session: &mut PortalSession,
        path: &str,
        now: OffsetDateTime,
        requests: &mut u32,
    ) -> Result<Vec<Value>, PortalError> {
        let layout = &self.tables.layout;
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            // Before every request, so a consent that ends mid-pull stops the pull.
            session.access.check(now)?;
            if session.tokens.needs_refresh(now) {
                *requests += 1;
                self.refresh(session, now).await?;
            }
            let mut url = join(&self.base, path)?;
            if let Some(c) = &cursor {
                url.query_pairs_mut()
                    .append_pair(&layout.pagination.cursor_param, c);
            }
            let body = self.get(session, url, now, requests).await?;
            let page: Value = serde_json::from_slice(&body)
                .map_err(|e| PortalError::malformed(path, "", format!("not JSON: {e}")))?;
            let next = parse_next(&page, &layout.pagination.next_cursor, path)?;
            pages.push(page);
            match next {
                None => return Ok(pages),
                Some(next) => {
                    if pages.len() >= self.config.max_pages as usize || !seen.insert(next.clone()) {
                        return Err(PortalError::malformed(
                            path,
                            layout.pagination.next_cursor.as_str(),
                            format!(
                                "the cursor repeats or runs past {} pages",
                                self.config.max_pages
                            ),
                        ));
                    }
                    cursor = Some(next);
                }
            }
        }
    }

    /// One GET with the retry policy and at most one refresh on 401.
    async fn get(
        &self,
        session: &mut PortalSession,
        url: Url,
        now: OffsetDateTime,
        requests: &mut u32,
    ) -> Result<Vec<u8>, PortalError> {
        let policy = &self.config.retry;
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            *requests += 1;
            let sent = self
                .http
                .get(url.clone())
                .bearer_auth(session.tokens.access_token.expose())
                .header(header::ACCEPT, "application/json")
                .send()
                .await;
            let failure = match sent {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, now));
                    match resp.bytes().await {
                        Ok(body) if status.is_success() => return Ok(body.to_vec()),
                        Ok(body) => (Failure::Status(status, body.to_vec()), retry_after),
                        Err(e) => (
                            Failure::Transport {
                                timeout: e.is_timeout(),
                                detail: e.to_string(),
                            },
                            None,
                        ),
                    }
                }
                Err(e) => (
                    Failure::Transport {
                        timeout: e.is_timeout(),
                        detail: e.to_string(),
                    },
                    None,
                ),
            };
            let last = attempt >= policy.max_attempts;
            let wait = match failure {
                (Failure::Transport { timeout, detail }, _) => {
                    if last {
                        return Err(if timeout {
                            PortalError::Timeout { attempts: attempt }
                        } else {
                            PortalError::Upstream {
                                status: None,
                                attempts: attempt,
                                detail,
                            }
                        });
                    }
                    self.backoff(attempt)
                }
                (Failure::Status(status, body), retry_after) => {
                    if let Some(e) = self.consent_error(&body) {
                        self.note_consent_error(session, &e, now);
                        return Err(e);
                    }
                    match classify(status.as_u16()) {
                        StatusClass::Unauthorised if !refreshed => {
                            refreshed = true;
                            // The refresh is not a retry of the same failure: the budget stays.
                            attempt -= 1;
                            *requests += 1;
                            self.refresh(session, now).await?;
                            continue;
                        }
                        StatusClass::Unauthorised => {
                            return Err(PortalError::Unauthorised {
                                reason: format!(
                                    "the portal refused the refreshed token too ({})",
                                    self.error_code(&body).unwrap_or_else(|| status.to_string())
                                ),
                            });
                        }
                        StatusClass::RateLimited => {
                            let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
                            if last || wait > policy.max_retry_after {
                                return Err(PortalError::RateLimited {
                                    attempts: attempt,
                                    retry_after,
                                });
                            }
                            wait
                        }
                        StatusClass::Transient if !last => self.backoff(attempt),
                        StatusClass::Success | StatusClass::Transient | StatusClass::Permanent => {
                            return Err(PortalError::Upstream {
                                status: Some(status.as_u16()),
                                attempts: attempt,
                                detail: self
                                    .error_code(&body)
                                    .unwrap_or_else(|| status.to_string()),
                            });
                        }
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// POST to the token endpoint with the client's authentication. Not retried after the
    /// request may have reached the portal: an authorisation code is single-use and refresh
    /// tokens may rotate, so a blind retry could burn them. A failed connection is retried.
    async fn token_request(
        &self,
        mut form: Vec<(String, String)>,
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, PortalError> {
        let url = join(&self.base, &self.tables.layout.authorisation.token_path)?;
        form.push(("client_id".into(), self.config.client_id.clone()));
        match &self.config.client_auth {
            ClientAuth::PrivateKeyJwt(key) => {
                let jti = random_token(&self.rng, 16)?;
                let assertion = key.client_assertion(
                    &self.config.client_id,
                    url.as_str(),
                    now,
                    &jti,
                    &self.rng,
                )?;
                form.push(("client_assertion_type".into(), CLIENT_ASSERTION_TYPE.into()));
                form.push(("client_assertion".into(), assertion));
            }
            ClientAuth::ClientSecretPost(secret) => {
                form.push(("client_secret".into(), secret.expose().to_owned()));
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .http
                .post(url.clone())
                .header(header::ACCEPT, "application/json")
                .form(&form)
                .send()
                .await;
            let resp = match sent {
                Ok(resp) => resp,
                Err(e) if e.is_connect() && attempt < self.config.retry.max_attempts => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    continue;
                }
                Err(e) if e.is_timeout() => return Err(PortalError::Timeout { attempts: attempt }),
                Err(e) => {
                    return Err(PortalError::Upstream {
                        status: None,
                        attempts: attempt,
                        detail: e.to_string(),
                    });
                }
            };
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now));
            let body = resp.bytes().await.map_err(|e| {
                if e.is_timeout() {
                    PortalError::Timeout { attempts: attempt }
                } else {
                    PortalError::Upstream {
                        status: Some(status.as_u16()),
                        attempts: attempt,
                        detail: e.to_string(),
                    }
                }
            })?;
            if status.is_success() {
                return Ok(body.to_vec());
            }
            if let Some(e) = self.consent_error(&body) {
                return Err(e);
            }
            let code = self.error_code(&body);
            return Err(match (status.as_u16(), code.as_deref()) {
                (429, _) => PortalError::RateLimited {
                    attempts: attempt,
                    retry_after,
                },
                // RFC 6749 §5.2: a bad code/refresh token or client authentication.
                (400 | 401, Some("invalid_grant" | "invalid_client" | "unauthorized_client"))
                | (401, _) => PortalError::Unauthorised {
                    reason: format!(
                        "token endpoint: {}",
                        code.unwrap_or_else(|| status.to_string())
                    ),
                },
                (s, _) => PortalError::Upstream {
                    status: Some(s),
                    attempts: attempt,
                    detail: code.unwrap_or_else(|| status.to_string()),
                },
            });
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let mut bytes = [0u8; 4];
        // Without randomness the wait is the deterministic upper bound, still correct.
        let jitter = match self.rng.fill(&mut bytes) {
            Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
            Err(_) => 1.0,
        };
        self.config.retry.backoff(attempt, jitter)
    }

    /// The portal's error code in an error answer, read at the layout's pointer (or the OAuth
    /// `error` member).
    fn error_code(&self, body: &[u8]) -> Option<String> {
        let value: Value = serde_json::from_slice(body).ok()?;
        value
            .pointer(&self.tables.layout.errors.code_pointer)
            .or_else(|| value.get("error"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn consent_error(&self, body: &[u8]) -> Option<PortalError> {
        let code = self.error_code(body)?;
        let errors = &self.tables.layout.errors;
        if errors.consent_expired.contains(&code) {
            Some(PortalError::ConsentExpired { expired_at: None })
        } else if errors.consent_revoked.contains(&code) {
            Some(PortalError::ConsentRevoked { revoked_at: None })
        } else {
            None
        }
    }

    /// Record in the session that the portal ended the consent, so the next pull is refused
    /// before any request.
    fn note_consent_error(
        &self,
        session: &mut PortalSession,
        e: &PortalError,
        now: OffsetDateTime,
    ) {
        match e {
            PortalError::ConsentExpired { .. } => {
                session.access.expires_at = session.access.expires_at.min(now);
            }
            PortalError::ConsentRevoked { .. } => session.access.revoke(now),
            _ => {}
        }
    }
}

fn parse_next(page: &Value, pointer: &str, path: &str) -> Result<Option<String>, PortalError> {
    match page.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok((!s.is_empty()).then(|| s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(PortalError::malformed(
            path,
            pointer,
            "expected a cursor string",
        )),
    }
}
