//! The PHR app API (`/phr/v1`, docs/phr-api.md): app JSON in and out over HTTP, stored as FHIR.
//!
//! The `phr` crate decides the shapes, the validation and the mappings. This module does what
//! needs I/O: the token's grant and the path's patient, the answers remembered by
//! `Idempotency-Key`, one store commit of every resource a payload maps to (after the same write
//! checks as the FHIR API), and the searches behind the read-back shapes. A read-back for a
//! caller other than the parent (a system client of an app or an organisation) is
//! consent-checked record by record and audited, like a FHIR search (docs/consent.md).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use auth::Interaction;
use bytes::Bytes;
use phr::{Kind, MappingContext, Phr, PhrError, ReadContext, SchemaViolation};
use serde_json::{Value, json};
use store::{SearchRequest, StoredVersion};

use crate::access::{Access, Compartments, Grant};
use crate::disclosure::{Event, Exit};
use crate::error::{ApiError, ErrorKind};
use crate::http::{caller_access, error_response};
use crate::operations::{self, OpInput};
use crate::rest;
use crate::state::AppState;

type State = web::Data<AppState>;

const JSON: &str = "application/json; charset=utf-8";

/// A read-back that would gather more records than this is refused: the app narrows it (vitals
/// by `from` and `to`), so one request cannot hold a person's whole history in memory.
pub const MAX_READ: usize = 50_000;

/// Register the PHR routes, exactly those of the OpenAPI document (`phr::openapi()`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    // The document is public. The token guard's public list names FHIR routes only, so this
    // route sits outside the guarded scope, registered first so the scope never sees it.
    cfg.route("/phr/v1/openapi.json", web::get().to(openapi))
        .service(
            web::scope("/phr/v1")
                .wrap(actix_web::middleware::from_fn(
                    crate::access::guard::require_token,
                ))
                .route(
                    "/children/{patientId}/prevaccination/{vaccineType}",
                    web::post().to(post_prevaccination),
                )
                .route("/persons/{patientId}/vitals", web::post().to(post_vitals))
                .route("/persons/{patientId}/vitals", web::get().to(get_vitals))
                .route(
                    "/persons/{patientId}/conditions",
                    web::post().to(post_conditions),
                )
                .route(
                    "/persons/{patientId}/conditions",
                    web::get().to(get_conditions),
                )
                .route(
                    "/persons/{patientId}/medications",
                    web::post().to(post_medications),
                )
                .route(
                    "/persons/{patientId}/medications",
                    web::get().to(get_medications),
                )
                .route(
                    "/persons/{patientId}/allergies",
                    web::post().to(post_allergies),
                )
                .route(
                    "/persons/{patientId}/allergies",
                    web::get().to(get_allergies),
                )
                .route(
                    "/children/{patientId}/vaccinations",
                    web::get().to(get_vaccinations),
                )
                .route(
                    "/children/{patientId}/schedule",
                    web::get().to(get_schedule),
                )
                .default_service(web::to(unknown_route)),
        );
}

/// The gateway's own operations an app integrates with besides the payload routes: receiving
/// records (a Consent and a rest-hook Subscription) and, when enabled, My Number Portal.
const GATEWAY_OPERATIONS: &str = include_str!("openapi-gateway.json");

/// `GET /phr/v1/openapi.json`: the PHR document plus the gateway's operations, so an app
/// developer needs nothing else.
async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    match tables() {
        Ok(phr) => {
            let portal = !matches!(state.portal, crate::portal_api::PortalApi::Disabled);
            HttpResponse::Ok()
                .content_type(JSON)
                .body(served_document(phr.openapi(), portal).to_string())
        }
        Err(error) => error_response(&error, None),
    }
}

fn served_document(phr: &Value, portal: bool) -> Value {
    let mut document = phr.clone();
    let Ok(extra) = serde_json::from_str::<Value>(GATEWAY_OPERATIONS) else {
        return document;
    };
    let mut add_paths = |paths: &Value| {
        if let (Some(target), Some(source)) = (
            document.get_mut("paths").and_then(Value::as_object_mut),
            paths.as_object(),
        ) {
            for (path, item) in source {
                target.insert(path.clone(), item.clone());
            }
        }
    };
    add_paths(&extra["paths"]);
    if portal {
        add_paths(&extra["portal"]);
    }
    if let (Some(tags), Some(more)) = (
        document.get_mut("tags").and_then(Value::as_array_mut),
        extra["tags"].as_array(),
    ) {
        tags.extend(more.iter().cloned());
    }
    if let (Some(scopes), Some(more)) = (
        document
            .pointer_mut("/components/securitySchemes/smart/flows/authorizationCode/scopes")
            .and_then(Value::as_object_mut),
        extra["scopes"].as_object(),
    ) {
        for (scope, description) in more {
            scopes.insert(scope.clone(), description.clone());
        }
    }
    document
}

async fn unknown_route() -> HttpResponse {
    error_response(
        &ApiError::not_found(
            "no PHR API route for this method and path (the routes are listed in /phr/v1/openapi.json)",
        ),
        None,
    )
}

async fn post_prevaccination(
    state: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (patient_id, vaccine_type) = path.into_inner();
    let result = write(
        &state,
        &req,
        payload,
        Kind::Prevaccination,
        &patient_id,
        Some(&vaccine_type),
    )
    .await;
    answer_response(result)
}

async fn post_vitals(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    answer_response(write(&state, &req, payload, Kind::Vitals, &path, None).await)
}

async fn post_conditions(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    answer_response(write(&state, &req, payload, Kind::Conditions, &path, None).await)
}

async fn post_medications(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    answer_response(write(&state, &req, payload, Kind::Medications, &path, None).await)
}

async fn post_allergies(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    answer_response(write(&state, &req, payload, Kind::Allergies, &path, None).await)
}

async fn get_vitals(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    json_response(read_records(&state, &req, Kind::Vitals, &path).await)
}

async fn get_conditions(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    json_response(read_records(&state, &req, Kind::Conditions, &path).await)
}

async fn get_medications(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    json_response(read_records(&state, &req, Kind::Medications, &path).await)
}

async fn get_allergies(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    json_response(read_records(&state, &req, Kind::Allergies, &path).await)
}

async fn get_vaccinations(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    json_response(read_records(&state, &req, Kind::Vaccinations, &path).await)
}

async fn get_schedule(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    json_response(read_schedule(&state, &req, &path).await)
}

/// A finished POST, as sent and as remembered under its Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    /// Whether this answer is a replay of a remembered one (`Idempotent-Replayed: true`).
    pub replayed: bool,
}

fn answer_response(result: Result<Answer, ApiError>) -> HttpResponse {
    match result {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            let mut response = HttpResponse::build(status);
            if answer.replayed {
                response.insert_header(("idempotent-replayed", "true"));
            }
            response.content_type(JSON).body(answer.body)
        }
        Err(error) => error_response(&error, None),
    }
}

fn json_response(result: Result<Value, ApiError>) -> HttpResponse {
    match result {
        Ok(value) => HttpResponse::Ok()
            .content_type(JSON)
            .body(value.to_string()),
        Err(error) => error_response(&error, None),
    }
}

fn tables() -> Result<&'static Phr, ApiError> {
    Phr::embedded().map_err(|error| {
        tracing::error!(%error, "the PHR data files do not load");
        ApiError::internal("the PHR API's data files do not load")
    })
}

/// The FHIR type a shape is stored as.
fn resource_type_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Prevaccination => "QuestionnaireResponse",
        Kind::Vitals => "Observation",
        Kind::Conditions => "Condition",
        Kind::Medications => "MedicationStatement",
        Kind::Allergies => "AllergyIntolerance",
        Kind::Vaccinations => "Immunization",
        Kind::Schedule => "ImmunizationRecommendation",
    }
}

/// Payload violations as a 400 whose issues carry the JSON pointer in `expression`.
fn violations_error(kind: ErrorKind, violations: &[SchemaViolation]) -> ApiError {
    ApiError {
        kind,
        issues: violations
            .iter()
            .map(|v| crate::error::issue_detail(&v.to_issue()))
            .collect(),
        challenge: None,
        retry_after_secs: None,
    }
}

/// A field of the body that repeats a path segment must equal it. A missing or mistyped field is
/// left to the schema, which names it precisely.
fn require_same(payload: &Value, pointer: &str, path_value: &str) -> Result<(), ApiError> {
    match payload.pointer(pointer).and_then(Value::as_str) {
        Some(value) if value != path_value => {
            let field = pointer.trim_start_matches('/');
            Err(ApiError::bad_request(format!(
                "{field} must equal the {field} of the request path"
            ))
            .at(pointer))
        }
        _ => Ok(()),
    }
}

/// The `Idempotency-Key` header: required, 1–255 visible characters.
fn idempotency_key(req: &HttpRequest) -> Result<String, ApiError> {
    let key = req
        .headers()
        .get("idempotency-key")
        .ok_or_else(|| {
            ApiError::bad_request(
                "the Idempotency-Key header is required on every PHR API POST (a unique value per request, e.g. a UUID)",
            )
        })?
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
            )
        })?;
    Ok(key.to_owned())
}

/// What identifies a request for its key: the method, the path and the exact body bytes.
fn fingerprint(req: &HttpRequest, body: &[u8]) -> String {
    phr::resource_id(&[
        "phr-idempotency",
        req.method().as_str(),
        req.path(),
        &String::from_utf8_lossy(body),
    ])
}

/// POST: grant and patient, Idempotency-Key, path fields, validation, mapping, one commit.
async fn write(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    kind: Kind,
    patient_id: &str,
    vaccine_type: Option<&str>,
) -> Result<Answer, ApiError> {
    let access = caller_access(req);
    let resource_type = resource_type_of(kind);
    rest::check_type(state, resource_type)?;
    // Re-sending a point or record updates it, so a POST needs both (docs/phr-api.md).
    let grants = [
        access.permit(state, Interaction::Create, resource_type)?,
        access.permit(state, Interaction::Update, resource_type)?,
    ];
    rest::require_path_patient(state, patient_id, &grants)?;
    let record_key = RecordKey::new(&access, idempotency_key(req)?);
    // Requests with the same key run one after the other: a retry sent while the first is still
    // running waits for it and then gets its answer.
    let _serial = state
        .lock_criteria("phr/v1 Idempotency-Key", &record_key.criteria())
        .await;
    let body = crate::http::read_body(state, req, payload).await?;
    let fingerprint = fingerprint(req, &body);
    match state
        .phr_idempotency
        .lookup(&record_key, &fingerprint, Instant::now())
    {
        Lookup::Replay(answer) => return Ok(answer),
        Lookup::Conflict => {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                "this Idempotency-Key was already used for a different request (method, path or body); use a new key for a new request",
            ));
        }
        Lookup::Absent => {}
    }
    let payload: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
        .at("")
    })?;
    require_same(&payload, "/personId", patient_id)?;
    if let Some(vaccine_type) = vaccine_type {
        require_same(&payload, "/vaccineType", vaccine_type)?;
    }
    let phr = tables()?;
    phr.validate(kind, &payload)
        .map_err(|v| violations_error(ErrorKind::BadRequest, &v))?;
    let resources = phr
        .to_fhir(
            kind,
            &payload,
            &MappingContext {
                patient_id,
                client_id: access.client_id(),
                forms: Some(&state.domain.forms),
            },
        )
        .map_err(mapping_error)?;
    let stored = store_all(state, req, &grants, resources).await?;
    let count = stored.len();
    let receipt = json!({"stored": stored, "count": count});
    let answer = Answer {
        status: 200,
        body: Bytes::from(receipt.to_string()),
        replayed: false,
    };
    state
        .phr_idempotency
        .remember(record_key, fingerprint, answer.clone(), Instant::now());
    Ok(answer)
}

/// After a passing `validate` and path check, an invalid payload can only be 予診票 answers
/// that do not fit the form (422, docs/phr-api.md); anything else is our own fault.
fn mapping_error(error: PhrError) -> ApiError {
    match error {
        PhrError::Invalid(violations) => violations_error(ErrorKind::Unprocessable, &violations),
        other => {
            tracing::error!(error = %other, "PHR mapping failed");
            ApiError::internal("the payload could not be mapped to FHIR")
        }
    }
}

/// Write every resource as an update-or-create in one store commit (all or nothing), after the
/// grant and the FHIR API's write checks; the receipt lists them in the mapper's order.
async fn store_all(
    state: &AppState,
    req: &HttpRequest,
    grants: &[Grant],
    resources: Vec<Value>,
) -> Result<Vec<Value>, ApiError> {
    let writes = resources
        .into_iter()
        .map(|resource| rest::granted_put(state, grants, resource, "PHR mapper"))
        .collect::<Result<Vec<_>, _>>()?;
    let ctx = crate::http::ctx(state, req);
    rest::check_writes(&ctx, &writes)?;
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
    Ok(receipt)
}

/// GET of a list shape: the patient's resources of the shape's type, read back by `phr`. For a
/// consent-checked caller the Patient must be one it may see (else 404, as an unknown patient),
/// and only records it may see whole are read back; the decisions are audited.
async fn read_records(
    state: &AppState,
    req: &HttpRequest,
    kind: Kind,
    patient_id: &str,
) -> Result<Value, ApiError> {
    let access = caller_access(req);
    let resource_type = resource_type_of(kind);
    rest::check_type(state, resource_type)?;
    let grant = access.permit(state, Interaction::Search, resource_type)?;
    rest::require_path_patient(state, patient_id, std::slice::from_ref(&grant))?;
    let phr = tables()?;
    let mut params = vec![
        Compartments::r4().search_param(resource_type, &BTreeSet::from([patient_id.to_owned()])),
    ];
    params.extend(grant.search_params()?);
    let filter = match kind {
        Kind::Vitals => {
            let filter = VitalsFilter::parse(phr, &rest::parse_query_string(req.query_string()))?;
            params.extend(filter.search_params(phr));
            Some(filter)
        }
        _ => None,
    };
    let versions = search_all(state, resource_type, &params)?;
    let ctx = crate::http::ctx(state, req);
    let mut exit = Exit::open(&ctx)?;
    let patient_shown = if exit.is_checked() {
        match state.store.read("Patient", patient_id)? {
            Some(patient) => exit.shown(patient)?.is_some(),
            None => false,
        }
    } else {
        true
    };
    let mut resources = Vec::with_capacity(versions.len());
    if patient_shown {
        for version in &versions {
            if exit.permits(version)? {
                resources.push(crate::domain::parse_stored(version)?);
            }
        }
    }
    exit.close(Event::Rest("search-type")).await?;
    if !patient_shown {
        return Err(ApiError::not_found(format!(
            "Patient/{patient_id} does not exist"
        )));
    }
    let vaccine_type_of = |system: &str, code: &str| state.domain.vaccine_type_of(system, code);
    let mut value = phr
        .from_fhir(
            kind,
            &resources,
            &ReadContext {
                patient_id,
                vaccine_type_of: &vaccine_type_of,
            },
        )
        .map_err(read_error)?;
    if let Some(filter) = filter {
        filter.apply(&mut value);
    }
    Ok(value)
}

/// GET schedule: the `$immunization-schedule` computation (its own scope, patient and date
/// checks), read back by `phr`.
async fn read_schedule(
    state: &AppState,
    req: &HttpRequest,
    patient_id: &str,
) -> Result<Value, ApiError> {
    rest::check_id(patient_id)?;
    let date: Vec<(String, String)> = rest::parse_query_string(req.query_string())
        .into_iter()
        .filter(|(name, _)| name == "date")
        .collect();
    let ctx = crate::http::ctx(state, req);
    let reply =
        operations::immunization_schedule(&ctx, patient_id, &OpInput::from_query(&date)).await?;
    let recommendation = reply.body.to_value()?;
    let vaccine_type_of = |system: &str, code: &str| state.domain.vaccine_type_of(system, code);
    tables()?
        .from_fhir(
            Kind::Schedule,
            &[recommendation],
            &ReadContext {
                patient_id,
                vaccine_type_of: &vaccine_type_of,
            },
        )
        .map_err(read_error)
}

fn read_error(error: PhrError) -> ApiError {
    tracing::error!(error = %error, "PHR read-back failed");
    ApiError::internal("the stored records could not be read back into the app shape")
}

/// Every live match of a search, page by page, up to [`MAX_READ`].
fn search_all(
    state: &AppState,
    resource_type: &str,
    params: &[(String, String)],
) -> Result<Vec<StoredVersion>, ApiError> {
    const PAGE: usize = 1000;
    let query = search::parse_query(search::Registry::r4(), resource_type, params, true)?;
    let mut resources = Vec::new();
    loop {
        let page = state.store.search(&SearchRequest {
            resource_type,
            query: &query,
            offset: resources.len(),
            count: PAGE,
            need_total: false,
        })?;
        let last_page = page.matches.len() < PAGE;
        resources.extend(page.matches);
        if resources.len() > MAX_READ {
            return Err(ApiError::bad_request(format!(
                "more than {MAX_READ} records match; ask for a shorter period (from, to)"
            )));
        }
        if last_page {
            return Ok(resources);
        }
    }
}

/// The query of `GET …/vitals`: one kind, and a period of days as the app wrote them.
#[derive(Debug, Default)]
struct VitalsFilter {
    kind: Option<String>,
    from: Option<time::Date>,
    to: Option<time::Date>,
}

impl VitalsFilter {
    fn parse(phr: &Phr, pairs: &[(String, String)]) -> Result<VitalsFilter, ApiError> {
        let mut filter = VitalsFilter::default();
        for (name, value) in pairs {
            match name.as_str() {
                "kind" => {
                    if !phr.vital_kinds().iter().any(|k| &k.kind == value) {
                        return Err(ApiError::bad_request(
                            "kind must be one of the vital kinds of the OpenAPI document",
                        )
                        .at("kind"));
                    }
                    filter.kind = Some(value.clone());
                }
                "from" => filter.from = Some(day(value, "from")?),
                "to" => filter.to = Some(day(value, "to")?),
                _ => {}
            }
        }
        Ok(filter)
    }

    /// Search parameters that find a superset: the kind's codes, and the period widened by a
    /// day each way, because the store compares instants while the app's days are local.
    fn search_params(&self, phr: &Phr) -> Vec<(String, String)> {
        let mut params = Vec::new();
        if let Some(kind) = self
            .kind
            .as_deref()
            .and_then(|name| phr.vital_kinds().iter().find(|k| k.kind == name))
        {
            let codes: Vec<String> = kind
                .codings
                .iter()
                .map(|c| format!("{}|{}", c.system, c.code))
                .collect();
            params.push(("code".to_owned(), codes.join(",")));
        }
        if let Some(from) = self.from.and_then(time::Date::previous_day) {
            params.push(("date".to_owned(), format!("ge{}", date_text(from))));
        }
        if let Some(to) = self.to.and_then(time::Date::next_day) {
            params.push(("date".to_owned(), format!("le{}", date_text(to))));
        }
        params
    }

    /// Keep the asked kind and the points whose day, as written, lies in the period.
    fn apply(&self, vitals: &mut Value) {
        let from = self.from.map(date_text);
        let to = self.to.map(date_text);
        let Some(series) = vitals.get_mut("series").and_then(Value::as_array_mut) else {
            return;
        };
        series.retain_mut(|one| {
            if self
                .kind
                .as_deref()
                .is_some_and(|kind| one.get("kind").and_then(Value::as_str) != Some(kind))
            {
                return false;
            }
            if let Some(points) = one.get_mut("points").and_then(Value::as_array_mut) {
                points.retain(|point| {
                    let day = point
                        .get("at")
                        .and_then(Value::as_str)
                        .and_then(|at| at.get(..10))
                        .unwrap_or("");
                    from.as_deref().is_none_or(|from| day >= from)
                        && to.as_deref().is_none_or(|to| day <= to)
                });
                !points.is_empty()
            } else {
                false
            }
        });
    }
}

fn day(text: &str, name: &str) -> Result<time::Date, ApiError> {
    mappers::immunization::full_date(text)
        .filter(|_| text.len() == 10)
        .ok_or_else(|| ApiError::bad_request(format!("{name} must be a day (YYYY-MM-DD)")).at(name))
}

fn date_text(date: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Whose key it is: the app, and the user signed in to it. Apps are public clients shared by
/// every family, so the user is part of the scope; one family cannot replay another's answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordKey {
    client_id: String,
    subject: String,
    key: String,
}

impl RecordKey {
    fn new(access: &Access, key: String) -> RecordKey {
        RecordKey {
            client_id: access.client_id().to_owned(),
            subject: access
                .caller()
                .map(|c| c.claims.sub.clone())
                .unwrap_or_default(),
            key,
        }
    }

    fn criteria(&self) -> [(String, String); 3] {
        [
            ("client".into(), self.client_id.clone()),
            ("subject".into(), self.subject.clone()),
            ("key".into(), self.key.clone()),
        ]
    }

    fn size(&self) -> usize {
        self.client_id.len() + self.subject.len() + self.key.len()
    }
}

/// What the records say about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The same request was answered before: send this again.
    Replay(Answer),
    /// The key was used for a different request.
    Conflict,
    /// Not seen (or forgotten): run the request.
    Absent,
}

/// Answers of successful PHR POSTs remembered by Idempotency-Key, in memory, for a day. Bounded
/// by count and by bytes: the oldest are forgotten first. A forgotten key (after 24 h, eviction
/// or a restart) runs the request again, which the mappers' deterministic ids make harmless:
/// the same resources are written to the same ids and the store records no change.
pub struct Idempotency {
    records: Mutex<Records>,
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct Records {
    by_key: HashMap<RecordKey, Remembered>,
    /// Insertion order, oldest first: expiry and eviction both take from the front. An entry
    /// whose time differs from the record's is stale (the key was remembered again).
    order: VecDeque<(RecordKey, Instant)>,
    bytes: usize,
}

struct Remembered {
    fingerprint: String,
    answer: Answer,
    at: Instant,
}

impl Remembered {
    fn size(&self, key: &RecordKey) -> usize {
        key.size() + self.fingerprint.len() + self.answer.body.len()
    }
}

impl Default for Idempotency {
    /// 24 hours, at most 100 000 answers and 64 MiB of them.
    fn default() -> Self {
        Idempotency::new(Duration::from_secs(24 * 60 * 60), 100_000, 64 << 20)
    }
}

impl Idempotency {
    pub fn new(ttl: Duration, max_entries: usize, max_bytes: usize) -> Idempotency {
        Idempotency {
            records: Mutex::new(Records::default()),
            ttl,
            max_entries,
            max_bytes,
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn lookup(&self, key: &RecordKey, fingerprint: &str, now: Instant) -> Lookup {
        let mut records = self.records();
        records.expire(now, self.ttl);
        match records.by_key.get(key) {
            Some(remembered) if remembered.fingerprint == fingerprint => Lookup::Replay(Answer {
                replayed: true,
                ..remembered.answer.clone()
            }),
            Some(_) => Lookup::Conflict,
            None => Lookup::Absent,
        }
    }

    pub fn remember(&self, key: RecordKey, fingerprint: String, answer: Answer, now: Instant) {
        let mut records = self.records();
        let remembered = Remembered {
            fingerprint,
            answer,
            at: now,
        };
        records.bytes += remembered.size(&key);
        records.order.push_back((key.clone(), now));
        if let Some(old) = records.by_key.insert(key.clone(), remembered) {
            records.bytes -= old.size(&key);
        }
        while records.by_key.len() > self.max_entries || records.bytes > self.max_bytes {
            if !records.pop_oldest() {
                break;
            }
        }
    }

    /// How many answers are remembered.
    pub fn len(&self) -> usize {
        self.records().by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Records {
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while self
            .order
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= ttl)
        {
            self.pop_oldest();
        }
    }

    /// Forget the oldest entry; false when there is none.
    fn pop_oldest(&mut self) -> bool {
        let Some((key, at)) = self.order.pop_front() else {
            return false;
        };
        if self.by_key.get(&key).is_some_and(|r| r.at == at)
            && let Some(old) = self.by_key.remove(&key)
        {
            self.bytes -= old.size(&key);
        }
        true
    }
}

#[cfg(test)]
mod openapi_tests {
    use super::*;

    #[test]
    fn the_served_document_adds_the_gateway_operations() {
        let phr = tables().unwrap().openapi();
        let base = served_document(phr, false);
        let paths = base["paths"].as_object().unwrap();
        assert!(paths.contains_key("/fhir/Subscription") && paths.contains_key("/fhir/Consent"));
        assert!(!paths.keys().any(|p| p.contains("myna-portal")));
        let with_portal = served_document(phr, true);
        assert_eq!(
            with_portal["paths"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|p| p.contains("myna-portal"))
                .count(),
            3
        );
        // Every added reference resolves inside the served document.
        let text = with_portal.to_string();
        for reference in [
            "#/components/responses/Error",
            "#/components/parameters/PatientId",
        ] {
            assert!(text.contains(reference));
            let pointer = reference.trim_start_matches('#');
            assert!(with_portal.pointer(pointer).is_some(), "{reference}");
        }
        assert!(
            with_portal
                .pointer("/components/securitySchemes/smart/flows/authorizationCode/scopes/patient~1Subscription.c")
                .is_some()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(subject: &str, key: &str) -> RecordKey {
        RecordKey {
            client_id: "app".into(),
            subject: subject.into(),
            key: key.into(),
        }
    }

    fn answer(body: &str) -> Answer {
        Answer {
            status: 200,
            body: Bytes::from(body.to_owned()),
            replayed: false,
        }
    }

    fn replayed(body: &str) -> Lookup {
        Lookup::Replay(Answer {
            replayed: true,
            ..answer(body)
        })
    }

    #[test]
    fn the_same_request_replays_and_another_conflicts() {
        let records = Idempotency::default();
        let now = Instant::now();
        assert_eq!(records.lookup(&key("u", "k"), "f1", now), Lookup::Absent);
        records.remember(key("u", "k"), "f1".into(), answer("first"), now);
        let cases = [
            (key("u", "k"), "f1", replayed("first")),
            (key("u", "k"), "f2", Lookup::Conflict),
            // Another user of the same app, or another key: a separate record.
            (key("v", "k"), "f1", Lookup::Absent),
            (key("u", "k2"), "f1", Lookup::Absent),
        ];
        for (k, fingerprint, expected) in cases {
            assert_eq!(
                records.lookup(&k, fingerprint, now),
                expected,
                "{k:?} {fingerprint}"
            );
        }
    }

    #[test]
    fn answers_expire_after_the_time_to_live() {
        let ttl = Duration::from_secs(60);
        let records = Idempotency::new(ttl, 10, 1 << 20);
        let start = Instant::now();
        records.remember(key("u", "old"), "f".into(), answer("a"), start);
        records.remember(key("u", "new"), "f".into(), answer("b"), start + ttl / 2);
        let just_before = start + ttl - Duration::from_millis(1);
        assert_eq!(
            records.lookup(&key("u", "old"), "f", just_before),
            replayed("a")
        );
        assert_eq!(
            records.lookup(&key("u", "old"), "f", start + ttl),
            Lookup::Absent
        );
        assert_eq!(
            records.lookup(&key("u", "new"), "f", start + ttl),
            replayed("b")
        );
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn the_oldest_answers_go_first_when_full() {
        let now = Instant::now();
        let by_count = Idempotency::new(Duration::from_secs(60), 2, 1 << 20);
        for k in ["a", "b", "c"] {
            by_count.remember(key("u", k), "f".into(), answer(k), now);
        }
        assert_eq!(by_count.len(), 2);
        assert_eq!(by_count.lookup(&key("u", "a"), "f", now), Lookup::Absent);
        assert_eq!(by_count.lookup(&key("u", "c"), "f", now), replayed("c"));

        // Each record is 5 (app, u, the key) + 1 (fingerprint) + 100 (body) = 106 bytes here.
        let by_bytes = Idempotency::new(Duration::from_secs(60), 100, 250);
        let big = "x".repeat(100);
        for k in ["a", "b", "c"] {
            by_bytes.remember(key("u", k), "f".into(), answer(&big), now);
        }
        assert_eq!(by_bytes.len(), 2);
        assert_eq!(by_bytes.lookup(&key("u", "a"), "f", now), Lookup::Absent);
        // An answer larger than the whole budget is not kept at all.
        let huge = "x".repeat(300);
        by_bytes.remember(key("u", "d"), "f".into(), answer(&huge), now);
        assert!(by_bytes.is_empty());
    }

    #[test]
    fn remembering_a_key_again_keeps_one_record_and_its_size() {
        let now = Instant::now();
        let records = Idempotency::new(Duration::from_secs(60), 10, 1 << 20);
        records.remember(key("u", "k"), "f1".into(), answer("one"), now);
        records.remember(
            key("u", "k"),
            "f2".into(),
            answer("two"),
            now + Duration::from_secs(1),
        );
        assert_eq!(records.len(), 1);
        assert_eq!(
            records.lookup(&key("u", "k"), "f2", now + Duration::from_secs(2)),
            replayed("two")
        );
        // The stale order entry of the first remember must not drop the newer record.
        assert_eq!(
            records.lookup(&key("u", "k"), "f2", now + Duration::from_secs(60)),
            replayed("two")
        );
        assert_eq!(records.records().bytes, key("u", "k").size() + 2 + 3);
    }

    #[test]
    fn vitals_filter_keeps_the_kind_and_the_days_as_written() {
        let filter = VitalsFilter {
            kind: Some("bodyWeight".into()),
            from: mappers::immunization::full_date("2026-01-02"),
            to: mappers::immunization::full_date("2026-01-03"),
        };
        let mut vitals = json!({"personId": "p", "series": [
            {"kind": "bodyWeight", "unit": "kg", "points": [
                {"at": "2026-01-01T23:30:00+09:00", "value": 1},
                {"at": "2026-01-02T00:10:00+09:00", "value": 2},
                {"at": "2026-01-03T23:59:00+09:00", "value": 3},
                {"at": "2026-01-04T00:00:00+09:00", "value": 4}]},
            {"kind": "bodyWeight", "unit": "g", "points": [{"at": "2026-01-05", "value": 5}]},
            {"kind": "steps", "unit": "steps", "points": [{"at": "2026-01-02", "value": 6}]}]});
        filter.apply(&mut vitals);
        assert_eq!(
            vitals,
            json!({"personId": "p", "series": [
                {"kind": "bodyWeight", "unit": "kg", "points": [
                    {"at": "2026-01-02T00:10:00+09:00", "value": 2},
                    {"at": "2026-01-03T23:59:00+09:00", "value": 3}]}]})
        );
        let phr = Phr::embedded().expect("embedded tables");
        let params = filter.search_params(phr);
        assert_eq!(params[1], ("date".into(), "ge2026-01-01".into()));
        assert_eq!(params[2], ("date".into(), "le2026-01-04".into()));
        assert!(
            params[0].1.contains("http://loinc.org|29463-7"),
            "{params:?}"
        );
    }
}
