//! The My Number Portal adapter served to PHR apps: a person's authorisation at the portal, the
//! callback that completes it, and pulls of their vaccination and check-up records into the
//! store (docs/my-number-portal.md, "Serving").
//!
//! The `portal` crate does the protocol, the mapping and the de-duplication. This module does
//! what needs the gateway: the token's grant and the path's patient, the authorisations waiting
//! for their callback and the sessions between pulls (in memory, see [`PortalService`]), the
//! patient's stored Immunizations for `reconcile`, and one store commit of a pull after the same
//! write checks as the FHIR API.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use auth::Interaction;
use portal::{
    AuthorisationCallback, CheckupPull, ClientAuth, ClientKey, PatientId, PendingAuthorisation,
    PortalClient, PortalConfig, PortalError, PortalSession, PortalTables, RetryPolicy, Secret,
    VaccinationPull, reconcile, transaction,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::access::{Access, Grant};
use crate::config::{Config, MynaPortalConfig};
use crate::error::{ApiError, ErrorKind, IssueDetail};
use crate::http::{caller_access, error_response};
use crate::rest;
use crate::state::{AppState, ConditionalGuard};

type State = web::Data<AppState>;

const JSON: &str = "application/json; charset=utf-8";

/// Where the portal sends the person back (`portal.redirect_uri` must name this path).
pub const CALLBACK_PATH: &str = "/phr/v1/myna-portal/callback";

/// Authorisations waiting for their callback at most; the oldest are dropped first. Each is a
/// few hundred bytes, so a flood of starts cannot exhaust memory.
const MAX_PENDING: usize = 10_000;

/// Authorisations one app user may have waiting at once; a further start drops their oldest.
const MAX_PENDING_PER_CALLER: usize = 8;

/// Stored Immunizations of one patient read for de-duplication at most.
const MAX_EXISTING: usize = 10_000;

/// Register the portal routes. The callback is reached by the person's browser, redirected by
/// the portal, so it carries no bearer token: the unguessable single-use `state` authorises it.
/// It sits outside the guarded scope, and both are registered before the PHR API's `/phr/v1`
/// scope, whose default route would otherwise answer them.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(CALLBACK_PATH, web::get().to(callback)).service(
        web::scope("/phr/v1/children/{patientId}/myna-portal")
            .wrap(actix_web::middleware::from_fn(
                crate::access::guard::require_token,
            ))
            .route("/authorisation", web::post().to(start))
            .route("/pull", web::post().to(pull)),
    );
}

/// The adapter as the configuration left it.
pub enum PortalApi {
    /// `portal.enabled = false`: the routes answer 404.
    Disabled,
    /// Enabled, but the client could not be built (the error is logged at start-up; the
    /// command-line start refuses such a configuration before it gets here).
    Unusable(String),
    Ready(Box<PortalService>),
}

impl PortalApi {
    pub fn new(config: &Config) -> PortalApi {
        if !config.portal.enabled {
            return PortalApi::Disabled;
        }
        match PortalService::build(&config.portal, config.profiles.extra_dir.as_deref()) {
            Ok(service) => PortalApi::Ready(Box::new(service)),
            Err(error) => {
                tracing::error!(%error, "the My Number Portal adapter cannot start; its routes answer 503");
                PortalApi::Unusable(error)
            }
        }
    }

    fn service(&self) -> Result<&PortalService, ApiError> {
        match self {
            PortalApi::Ready(service) => Ok(service),
            PortalApi::Disabled => Err(ApiError::not_found(
                "the My Number Portal adapter is not enabled on this server (portal.enabled)",
            )),
            PortalApi::Unusable(_) => Err(ApiError::new(
                ErrorKind::Unavailable,
                "the My Number Portal adapter is misconfigured on this server",
            )),
        }
    }
}

/// An authorisation sent to the portal, waiting for its callback: who started it, and when.
struct Started {
    pending: PendingAuthorisation,
    client_id: String,
    subject: String,
    at: Instant,
}

/// The portal client and the state between requests. Pending authorisations and sessions live
/// in memory only: after a restart a person authorises again (docs/my-number-portal.md). The
/// sessions hold tokens; nothing here logs them (`portal::Secret` hides them from `Debug`).
pub struct PortalService {
    client: PortalClient,
    pending: Mutex<HashMap<String, Started>>,
    /// By local Patient id.
    sessions: Mutex<HashMap<String, PortalSession>>,
    pending_ttl: Duration,
    pull_checkups: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_file(what: &str, path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// `{extra_dir}/portal/*.json` in name order: replacement or added portal tables.
fn extra_tables(extra_dir: Option<&Path>) -> Result<Vec<(String, String)>, String> {
    match extra_dir.filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => crate::domain::read_folder(&dir.join("portal")).map_err(|e| e.to_string()),
        None => Ok(Vec::new()),
    }
}

impl PortalService {
    /// Build the client from the `[portal]` section: the key or secret, the CAs, the data files
    /// (embedded plus `{profiles.extra_dir}/portal/`). Errors name the key or file.
    pub fn build(config: &MynaPortalConfig, extra_dir: Option<&Path>) -> Result<Self, String> {
        for (key, value) in [
            ("base_url", &config.base_url),
            ("client_id", &config.client_id),
            ("redirect_uri", &config.redirect_uri),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{key} is required when enabled"));
            }
        }
        if !config.redirect_uri.starts_with("https://")
            && !config.redirect_uri.starts_with("http://")
        {
            return Err(format!(
                "redirect_uri must be an http(s) URL ending in {CALLBACK_PATH}, got {:?}",
                config.redirect_uri
            ));
        }
        let client_auth = match (&config.client_key_file, &config.client_secret_file) {
            (Some(key), None) => {
                let pem = read_file("client_key_file", key)?;
                let key = ClientKey::from_pkcs8_pem(&pem, config.client_key_id.clone())
                    .map_err(|e| format!("client_key_file {}: {e}", key.display()))?;
                ClientAuth::PrivateKeyJwt(Box::new(key))
            }
            (None, Some(secret)) => {
                let text = read_file("client_secret_file", secret)?;
                let text = text.trim();
                if text.is_empty() {
                    return Err(format!("client_secret_file {} is empty", secret.display()));
                }
                ClientAuth::ClientSecretPost(Secret::new(text))
            }
            _ => {
                return Err(
                    "exactly one of client_key_file and client_secret_file must be set".into(),
                );
            }
        };
        let positive = [
            ("connect_timeout_ms", config.connect_timeout_ms),
            ("request_timeout_ms", config.request_timeout_ms),
            ("max_attempts", u64::from(config.max_attempts)),
            ("max_pages", u64::from(config.max_pages)),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        if !(1..=3600).contains(&config.pending_ttl_secs) {
            return Err(format!(
                "pending_ttl_secs must be between 1 and 3600, got {}",
                config.pending_ttl_secs
            ));
        }
        let extra_roots_pem = config
            .extra_ca_files
            .iter()
            .map(|path| read_file("extra_ca_files", path))
            .collect::<Result<Vec<_>, _>>()?;
        let files = extra_tables(extra_dir)?;
        let borrowed: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let tables = PortalTables::load(&borrowed).map_err(|e| e.to_string())?;
        let mut portal = PortalConfig::new(
            config.base_url.clone(),
            config.client_id.clone(),
            client_auth,
            config.redirect_uri.clone(),
        );
        portal.connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        portal.request_timeout = Duration::from_millis(config.request_timeout_ms);
        portal.retry = RetryPolicy {
            max_attempts: config.max_attempts,
            base_delay: Duration::from_millis(config.retry_base_delay_ms),
            max_delay: Duration::from_millis(config.retry_max_delay_ms),
            max_retry_after: Duration::from_secs(config.max_retry_after_secs),
        };
        portal.trust_public_roots = config.trust_public_roots;
        portal.extra_roots_pem = extra_roots_pem;
        portal.max_pages = config.max_pages;
        let client = PortalClient::new(portal, Arc::new(tables)).map_err(|e| e.to_string())?;
        Ok(PortalService {
            client,
            pending: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            pending_ttl: Duration::from_secs(config.pending_ttl_secs),
            pull_checkups: config.pull_checkups,
        })
    }

    fn remember_pending(&self, started: Started) {
        let mut pending = lock(&self.pending);
        let ttl = self.pending_ttl;
        pending.retain(|_, s| s.at.elapsed() < ttl);
        let same_caller =
            |s: &Started| s.client_id == started.client_id && s.subject == started.subject;
        loop {
            let mine = pending.values().filter(|s| same_caller(s)).count();
            let full = pending.len() >= MAX_PENDING;
            if mine < MAX_PENDING_PER_CALLER && !full {
                break;
            }
            // Over the caller's share: their own oldest goes; else the table is full: anyone's.
            let oldest = pending
                .iter()
                .filter(|(_, s)| mine < MAX_PENDING_PER_CALLER || same_caller(s))
                .min_by_key(|(_, s)| s.at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(key) => pending.remove(&key),
                None => break,
            };
        }
        pending.insert(started.pending.state.clone(), started);
    }

    /// The authorisation a callback's `state` answers, once: it is forgotten whatever the
    /// callback brings, and an expired one is not returned.
    fn take_pending(&self, state: &str) -> Option<Started> {
        lock(&self.pending)
            .remove(state)
            .filter(|s| s.at.elapsed() < self.pending_ttl)
    }

    fn session(&self, patient_id: &str) -> Option<PortalSession> {
        lock(&self.sessions).get(patient_id).cloned()
    }

    /// Keep a pulled session (tokens may have rotated, the portal may have ended the consent),
    /// unless a new authorisation replaced it while the pull ran.
    fn put_back(&self, session: &PortalSession) {
        let mut sessions = lock(&self.sessions);
        if let Some(held) = sessions.get_mut(session.patient.as_str())
            && held.access.granted_at == session.access.granted_at
        {
            *held = session.clone();
        }
    }
}

/// An error answer, through the gateway's one error table.
struct Failure {
    error: ApiError,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure { error }
    }
}

fn respond(result: Result<Value, Failure>) -> HttpResponse {
    match result {
        Ok(value) => HttpResponse::Ok()
            .content_type(JSON)
            .body(value.to_string()),
        Err(failure) => error_response(&failure.error, None),
    }
}

const REAUTHORISE: &str = "ask the person to authorise again: POST /phr/v1/children/{patientId}/myna-portal/authorisation";

/// The one mapping of the adapter's errors to answers (docs/my-number-portal.md, "Serving").
fn portal_failure(error: PortalError) -> Failure {
    let instant = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    match error {
        PortalError::ConsentExpired { expired_at } => ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "the person's My Number Portal consent (continuous access) has ended{}; {REAUTHORISE}",
                expired_at
                    .map(|t| format!(" at {}", instant(t)))
                    .unwrap_or_default()
            ),
        )
        .into(),
        PortalError::ConsentRevoked { revoked_at } => ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "the person withdrew the My Number Portal consent{}; {REAUTHORISE}",
                revoked_at
                    .map(|t| format!(" at {}", instant(t)))
                    .unwrap_or_default()
            ),
        )
        .into(),
        PortalError::Unauthorised { reason } => ApiError::new(
            ErrorKind::Forbidden,
            format!("My Number Portal did not authorise the request ({reason}); {REAUTHORISE}"),
        )
        .into(),
        PortalError::StateMismatch => ApiError::bad_request(
            "the callback's state does not belong to a pending authorisation",
        )
        .into(),
        PortalError::RateLimited { retry_after, .. } => {
            let mut api = ApiError::new(
                ErrorKind::Unavailable,
                "My Number Portal is rate-limiting requests; try again after Retry-After seconds",
            );
            // Whole seconds, rounded up, at least one; a portal silent about it gets a minute.
            api.retry_after_secs = Some(retry_after.map_or(60, |d| {
                (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
            }));
            api.into()
        }
        PortalError::Timeout { attempts } => {
            ApiError::new(
                ErrorKind::GatewayTimeout,
                format!("My Number Portal did not answer in time ({attempts} attempt(s))"),
            )
            .into()
        }
        PortalError::Upstream { status, attempts, .. } => {
            tracing::warn!(?status, attempts, "My Number Portal failed");
            ApiError::new(
                ErrorKind::BadGateway,
                format!(
                    "My Number Portal answered with an error{} after {attempts} attempt(s)",
                    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
                ),
            )
            .into()
        }
        PortalError::Malformed {
            context, pointer, ..
        } => {
            // The layout is a guess (docs/my-number-portal.md): the pointer says where it is
            // wrong. The reason may quote the answer's values, so it is not logged.
            tracing::error!(%context, %pointer, "My Number Portal answer does not fit the layout");
            ApiError::new(
                ErrorKind::BadGateway,
                "My Number Portal's answer does not have the expected layout; nothing was stored",
            )
            .into()
        }
        PortalError::Data { .. } | PortalError::Config(_) => {
            tracing::error!(error = %error, "My Number Portal adapter configuration");
            ApiError::internal("the My Number Portal adapter is misconfigured").into()
        }
    }
}

/// The grants to create and update `resource_type` (a pull may update what an earlier one
/// wrote), after checking the type is served.
fn write_grants(
    state: &AppState,
    access: &Access,
    resource_type: &str,
) -> Result<[Grant; 2], ApiError> {
    rest::check_type(state, resource_type)?;
    Ok([
        access.permit(state, Interaction::Create, resource_type)?,
        access.permit(state, Interaction::Update, resource_type)?,
    ])
}

fn patient_id(id: &str) -> Result<PatientId, ApiError> {
    PatientId::parse(id).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn subject_of(access: &Access) -> String {
    access
        .caller()
        .map(|c| c.claims.sub.clone())
        .unwrap_or_default()
}

fn instant_text(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// `POST /phr/v1/children/{patientId}/myna-portal/authorisation`.
async fn start(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    respond(begin(&state, &req, &path).map_err(Failure::from))
}

fn begin(state: &AppState, req: &HttpRequest, patient: &str) -> Result<Value, ApiError> {
    let service = state.portal.service()?;
    let access = caller_access(req);
    let grants = write_grants(state, &access, "Immunization")?;
    rest::require_path_patient(state, patient, &grants)?;
    let (url, pending) = service
        .client
        .begin_authorisation(patient_id(patient)?)
        .map_err(|e| portal_failure(e).error)?;
    let answer = json!({
        "authorisationUrl": url.as_str(),
        "state": pending.state,
        "expiresInSeconds": service.pending_ttl.as_secs(),
    });
    service.remember_pending(Started {
        pending,
        client_id: access.client_id().to_owned(),
        subject: subject_of(&access),
        at: Instant::now(),
    });
    Ok(answer)
}

/// `GET /phr/v1/myna-portal/callback?code=…&state=…` (or `?error=…&state=…`).
async fn callback(state: State, req: HttpRequest) -> HttpResponse {
    respond(complete(&state, &req).await)
}

async fn complete(state: &AppState, req: &HttpRequest) -> Result<Value, Failure> {
    let service = state.portal.service()?;
    let callback = AuthorisationCallback::from_query(req.query_string());
    let started = callback
        .state
        .as_deref()
        .and_then(|s| service.take_pending(s))
        .ok_or_else(|| {
            ApiError::bad_request(
                "no pending My Number Portal authorisation has this state (unknown, already used or expired); start again from the app",
            )
            .at("state")
        })?;
    let now = OffsetDateTime::now_utc();
    let session = service
        .client
        .complete_authorisation(&started.pending, &callback, now)
        .await
        .map_err(portal_failure)?;
    let answer = json!({
        "status": "authorised",
        "patientId": session.patient.as_str(),
        "consentExpiresAt": instant_text(session.access.expires_at),
    });
    lock(&service.sessions).insert(session.patient.as_str().to_owned(), session);
    Ok(answer)
}

/// `POST /phr/v1/children/{patientId}/myna-portal/pull`.
async fn pull(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    respond(run_pull(&state, &req, &path).await)
}

/// What a pull may write besides Immunizations: check-ups, when configured and permitted.
struct CheckupGrants {
    observation: [Grant; 2],
    report: [Grant; 2],
}

fn checkup_grants(state: &AppState, access: &Access) -> Option<CheckupGrants> {
    Some(CheckupGrants {
        observation: write_grants(state, access, "Observation").ok()?,
        report: write_grants(state, access, "DiagnosticReport").ok()?,
    })
}

async fn run_pull(state: &State, req: &HttpRequest, patient: &str) -> Result<Value, Failure> {
    let service = state.portal.service()?;
    let access = caller_access(req);
    let grants = write_grants(state, &access, "Immunization")?;
    rest::require_path_patient(state, patient, &grants)?;
    rest::check_type(state, "Provenance")?;
    let checkup_grants = service
        .pull_checkups
        .then(|| checkup_grants(state, &access))
        .flatten();
    let person = patient_id(patient)?;
    // One pull per person at a time: tokens rotate, and two pulls would race for them.
    let serial = state
        .lock_criteria("myna-portal pull", &[("patient".into(), patient.into())])
        .await;
    let session = service.session(patient).ok_or_else(|| {
        ApiError::new(
            ErrorKind::Forbidden,
            format!("this person has not authorised My Number Portal access here (or the server restarted since); {REAUTHORISE}"),
        )
    })?;
    let now = OffsetDateTime::now_utc();
    // The requests run in a task of their own, so a client that gives up (or the request
    // timeout) cannot drop a session whose tokens the portal has just rotated.
    let fetched = actix_web::rt::spawn(fetch(
        state.clone(),
        session,
        now,
        checkup_grants.is_some(),
        serial,
    ))
    .await
    .map_err(|_| ApiError::internal("the My Number Portal pull stopped unexpectedly"))?;
    let (pulled, session, _serial) = fetched;
    let (vaccinations, checkups) = pulled.map_err(portal_failure)?;

    let tables = service.client.tables();
    let existing = patient_immunizations(state, patient)?;
    let vaccine_type_of = |system: &str, code: &str| state.domain.vaccine_type_of(system, code);
    let mut reconciliation = reconcile(
        tables,
        vaccinations.mapped(tables, &person),
        &existing,
        vaccine_type_of,
        now,
    );
    // A match whose Provenance an earlier pull stored already adds nothing: rewriting it would
    // only move its `recorded` time.
    for matched in &mut reconciliation.matched {
        let id = matched
            .provenance
            .as_ref()
            .and_then(|p| p["id"].as_str())
            .unwrap_or_default();
        if !id.is_empty()
            && crate::domain::live_resource(state.store.as_ref(), "Provenance", id)?.is_some()
        {
            matched.provenance = None;
        }
    }
    // A check-up already stored is not written again: its Provenance's `recorded` would change
    // on every pull.
    let mut held_checkups = 0;
    let mut new_checkups = Vec::new();
    for mapped in checkups
        .as_ref()
        .map(|p| p.mapped(tables, &person))
        .unwrap_or_default()
    {
        let id = mapped.report["id"].as_str().unwrap_or_default();
        if crate::domain::live_resource(state.store.as_ref(), "DiagnosticReport", id)?.is_some() {
            held_checkups += 1;
        } else {
            new_checkups.push(mapped);
        }
    }
    let bundle = transaction(&reconciliation, &new_checkups);
    let resources: Vec<Value> = bundle["entry"]
        .as_array()
        .map(|entries| entries.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default();
    let matched: HashSet<String> = reconciliation
        .matched
        .iter()
        .map(|m| format!("Immunization/{}", m.existing_id))
        .collect();
    let (stored, warnings) = store_pull(
        state,
        req,
        &grants,
        checkup_grants.as_ref(),
        &matched,
        resources,
    )
    .await?;

    let mut issues: Vec<Value> = vaccinations
        .skipped
        .iter()
        .chain(reconciliation.issues().iter())
        .chain(checkups.iter().flat_map(|c| c.skipped.iter()))
        .map(|i| {
            json!({"severity": i.severity.code(), "code": i.code.code(),
                   "expression": i.expression, "diagnostics": i.diagnostics})
        })
        .collect();
    issues.extend(warnings.iter().map(|i| {
        json!({"severity": i.severity, "code": i.code,
               "expression": i.expression, "diagnostics": i.diagnostics})
    }));
    let checkup_counts = checkups.as_ref().map(
        |c| json!({"new": new_checkups.len(), "held": held_checkups, "skipped": c.skipped.len()}),
    );
    Ok(json!({
        "patientId": patient,
        "pulledAt": instant_text(now),
        "new": reconciliation.new.len(),
        "matched": reconciliation.matched.len(),
        "conflicts": reconciliation.conflicts.len(),
        "skipped": vaccinations.skipped.len(),
        "repeated": reconciliation.repeated,
        "checkups": checkup_counts,
        "stored": stored,
        "issues": issues,
        "consentExpiresAt": instant_text(session.access.expires_at),
    }))
}

/// Pull the person's records and keep the session after each request, success or not (tokens
/// may have rotated, the portal may have ended the consent). The pull's serialising guard rides
/// along and comes back, so it is held until the records are stored.
async fn fetch(
    state: State,
    mut session: PortalSession,
    now: OffsetDateTime,
    with_checkups: bool,
    serial: ConditionalGuard,
) -> (
    Result<(VaccinationPull, Option<CheckupPull>), PortalError>,
    PortalSession,
    ConditionalGuard,
) {
    let PortalApi::Ready(service) = &state.portal else {
        let error = PortalError::Config("the adapter is not ready".into());
        return (Err(error), session, serial);
    };
    let vaccinations = service.client.pull_vaccinations(&mut session, now).await;
    service.put_back(&session);
    let vaccinations = match vaccinations {
        Ok(v) => v,
        Err(e) => return (Err(e), session, serial),
    };
    if !with_checkups {
        return (Ok((vaccinations, None)), session, serial);
    }
    let checkups = service.client.pull_checkups(&mut session, now).await;
    service.put_back(&session);
    let pulled = checkups.map(|c| (vaccinations, Some(c)));
    (pulled, session, serial)
}

/// Every live Immunization of the patient, for de-duplication.
fn patient_immunizations(state: &AppState, patient: &str) -> Result<Vec<Value>, ApiError> {
    let resources = crate::domain::search_all(
        state.store.as_ref(),
        "Immunization",
        "patient",
        &format!("Patient/{patient}"),
    )?;
    if resources.len() > MAX_EXISTING {
        return Err(ApiError::internal(format!(
            "the patient has more than {MAX_EXISTING} Immunizations; de-duplication was not attempted"
        )));
    }
    Ok(resources)
}

/// Store a pull's resources in one commit (all or nothing, with their AuditEvents) after the
/// grants and the FHIR API's write checks. The Provenance resources are the gateway's own
/// statement that the portal was a source: they lie outside the patient compartment (their
/// target is a record, not the Patient), so instead of a grant each must point only at this
/// pull's records or the patient's matched Immunizations.
async fn store_pull(
    state: &AppState,
    req: &HttpRequest,
    grants: &[Grant; 2],
    checkup_grants: Option<&CheckupGrants>,
    matched: &HashSet<String>,
    resources: Vec<Value>,
) -> Result<(Vec<Value>, Vec<IssueDetail>), ApiError> {
    let written: HashSet<String> = resources
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let mut writes = Vec::with_capacity(resources.len());
    for resource in resources {
        let resource_type = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let type_grants: &[Grant] = match resource_type.as_str() {
            "Immunization" => grants,
            "Observation" => checkup_grants.map_or(&[], |g| &g.observation),
            "DiagnosticReport" => checkup_grants.map_or(&[], |g| &g.report),
            "Provenance" => {
                let targets = resource["target"].as_array().map_or(&[][..], Vec::as_slice);
                let inside = targets.iter().all(|t| {
                    t["reference"]
                        .as_str()
                        .is_some_and(|r| written.contains(r) || matched.contains(r))
                });
                if targets.is_empty() || !inside {
                    return Err(ApiError::internal(
                        "a portal Provenance targets a record outside the pull",
                    ));
                }
                &[]
            }
            _ => {
                return Err(ApiError::internal(format!(
                    "the portal mapping made an unexpected {resource_type}"
                )));
            }
        };
        if resource_type != "Provenance" && type_grants.is_empty() {
            return Err(ApiError::internal(format!(
                "no grant was checked for the portal's {resource_type}"
            )));
        }
        writes.push(rest::granted_put(
            state,
            type_grants,
            resource,
            "portal mapping",
        )?);
    }
    let ctx = crate::http::ctx(state, req);
    let warnings = rest::check_writes(&ctx, &writes)?;
    let receipt = writes
        .iter()
        .map(|w| json!({"resourceType": w.resource_type, "id": w.id}))
        .collect();
    if !writes.is_empty() {
        state
            .store
            .commit(rest::with_audit_and_deliveries(&ctx, writes)?)
            .await?;
    }
    Ok((receipt, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_errors_map_to_answers() {
        let cases: Vec<(PortalError, u16, Option<u64>, &str)> = vec![
            (
                PortalError::ConsentExpired { expired_at: None },
                403,
                None,
                "authorise again",
            ),
            (
                PortalError::ConsentRevoked { revoked_at: None },
                403,
                None,
                "withdrew",
            ),
            (
                PortalError::Unauthorised {
                    reason: "invalid_grant".into(),
                },
                403,
                None,
                "invalid_grant",
            ),
            (PortalError::StateMismatch, 400, None, "state"),
            (
                PortalError::RateLimited {
                    attempts: 3,
                    retry_after: Some(Duration::from_millis(120_500)),
                },
                503,
                Some(121),
                "rate-limiting",
            ),
            (
                PortalError::RateLimited {
                    attempts: 3,
                    retry_after: Some(Duration::ZERO),
                },
                503,
                Some(1),
                "rate-limiting",
            ),
            (
                PortalError::RateLimited {
                    attempts: 3,
                    retry_after: None,
                },
                503,
                Some(60),
                "rate-limiting",
            ),
            (
                PortalError::Upstream {
                    status: Some(500),
                    attempts: 4,
                    detail: "server_error".into(),
                },
                502,
                None,
                "HTTP 500",
            ),
            (
                PortalError::Malformed {
                    context: "/x".into(),
                    pointer: "/a".into(),
                    reason: "r".into(),
                },
                502,
                None,
                "layout",
            ),
            (PortalError::Timeout { attempts: 2 }, 504, None, "in time"),
            (PortalError::Config("x".into()), 500, None, "misconfigured"),
        ];
        for (error, status, retry_after, text) in cases {
            let label = format!("{error:?}");
            let failure = portal_failure(error);
            assert_eq!(failure.error.status(), status, "{label}");
            assert_eq!(failure.error.retry_after_secs, retry_after, "{label}");
            assert!(
                failure.error.issues[0].diagnostics.contains(text),
                "{label}: {}",
                failure.error.issues[0].diagnostics
            );
        }
    }
}
