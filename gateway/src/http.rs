//! The HTTP edge: actix-web routes, one thin handler per FHIR interaction, content negotiation,
//! body limits, request ids, access logs and timeouts. Handlers translate HTTP to [`crate::rest`]
//! calls and back; no FHIR logic lives here.

use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use store::HistoryScope;

use crate::access::Access;
use crate::error::{ApiError, ErrorKind};
use crate::format::{self, Negotiated};
use crate::operations::{self, OpInput};
use crate::rest::{self, Ctx, Prefer, Reply};
use crate::state::AppState;

type State = web::Data<AppState>;

/// Register every route of the gateway.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        // Before the /fhir scope, which would otherwise take /fhir/.well-known/….
        .configure(crate::access::oauth::configure)
        .service(
            web::scope("/fhir")
                .wrap(actix_web::middleware::from_fn(
                    crate::access::guard::require_token,
                ))
                // A read by a valid id first: such a segment never names an operation (`$…`)
                // or `_history`/`_search`, so the read is where the routes below would lead
                // it too, after trying each of their patterns. Other ids reach the read route
                // further down and its 400.
                .route(
                    "/{type}/{id}",
                    web::get()
                        .guard(actix_web::guard::fn_guard(names_a_valid_id))
                        .to(read),
                )
                .route("", web::post().to(post_bundle))
                .route("/", web::post().to(post_bundle))
                .route("/metadata", web::get().to(metadata))
                // Operations first: `/{type}/{id}` would otherwise take `$name` for an id.
                .route("/$validate", web::post().to(validate_system))
                .route("/CodeSystem/$lookup", web::get().to(lookup))
                .route("/CodeSystem/$lookup", web::post().to(lookup))
                .route(
                    "/CodeSystem/$validate-code",
                    web::get().to(validate_code_system),
                )
                .route(
                    "/CodeSystem/$validate-code",
                    web::post().to(validate_code_system),
                )
                .route(
                    "/ValueSet/$validate-code",
                    web::get().to(validate_code_value_set),
                )
                .route(
                    "/ValueSet/$validate-code",
                    web::post().to(validate_code_value_set),
                )
                .route(
                    "/Patient/{id}/$immunization-schedule",
                    web::get().to(immunization_schedule),
                )
                .route("/QuestionnaireResponse/$assess", web::post().to(assess))
                .route(
                    "/QuestionnaireResponse/{id}/$assess",
                    web::get().to(assess_stored),
                )
                .route("/Immunization/$from-barcode", web::get().to(from_barcode))
                .route("/Immunization/$from-barcode", web::post().to(from_barcode))
                .route("/{type}/$validate", web::post().to(validate_type))
                .route("/_history", web::get().to(history_system))
                .route("/{type}/_search", web::post().to(search_post))
                .route("/{type}/_history", web::get().to(history_type))
                .route("/{type}/{id}/_history", web::get().to(history_instance))
                .route("/{type}/{id}/_history/{vid}", web::get().to(vread))
                .route("/{type}/{id}", web::get().to(read))
                .route("/{type}/{id}", web::put().to(update))
                .route("/{type}/{id}", web::delete().to(delete))
                .route("/{type}", web::get().to(search_get))
                .route("/{type}", web::post().to(create))
                .route("/{type}", web::put().to(conditional_update))
                .route("/{type}", web::delete().to(conditional_delete))
                .default_service(web::to(unknown_route)),
        )
        .service(
            web::scope("/municipal/v1")
                .wrap(actix_web::middleware::from_fn(
                    crate::access::guard::require_token,
                ))
                .route("/imports", web::post().to(municipal_import))
                .route("/imports/{id}", web::get().to(municipal_import_status))
                .route("/exports", web::get().to(municipal_export))
                .route("/records", web::post().to(municipal_records_post))
                .route("/records", web::get().to(municipal_records_get))
                .default_service(web::to(unknown_route)),
        )
        .configure(crate::portal_api::configure)
        .configure(crate::phr_api::configure)
        .configure(crate::outbox::configure)
        .configure(crate::research::configure)
        .default_service(web::to(unknown_route));
}

/// Whether the path's last segment is a valid resource id.
fn names_a_valid_id(ctx: &actix_web::guard::GuardContext<'_>) -> bool {
    ctx.head()
        .uri
        .path()
        .rsplit('/')
        .next()
        .is_some_and(fhir::is_id)
}

/// Request id, access log, security headers and the per-request timeout, around every route.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    crate::memory::note_request();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Log fields are computed inside the log macros, so only for lines the filter lets through.
    let method = req.method().clone();
    let state = req.app_data::<State>().cloned();
    let timeout = state
        .as_ref()
        .map(|s| Duration::from_secs(s.config.server.request_timeout_secs))
        .unwrap_or(Duration::from_secs(60));
    if let (Some(state), Some(peer)) = (&state, req.peer_addr())
        && let Err(error) = state.access.limits.check_ip(peer.ip())
    {
        tracing::warn!(request_id = %request_id, method = %method, route = %route_pattern(req.request()), "address over its rate limit");
        let mut response = req.into_response(error_response(&error, None));
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response
                .headers_mut()
                .insert(header::HeaderName::from_static("x-request-id"), value);
        }
        return Ok(response.map_into_boxed_body());
    }
    RouteTable::keep(req.request());
    let path = req.uri().clone();
    let mut response = match tokio::time::timeout(timeout, next.call(req)).await {
        Ok(result) => result?.map_into_boxed_body(),
        Err(_) => {
            tracing::warn!(request_id = %request_id, method = %method, route = %RouteTable::pattern_of(path.path()), "request timed out");
            return Err(ApiError::new(
                ErrorKind::Unavailable,
                format!("the request did not finish within {} s", timeout.as_secs()),
            )
            .into());
        }
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(header::HeaderName::from_static("x-request-id"), value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Health records must not linger in shared caches; the OAuth endpoints and the sign-in page
    // already say no-store, FHIR answers say it here unless a handler chose otherwise.
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.as_ref().is_some_and(|s| s.config.tls.enabled) {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let request = response.request();
    tracing::info!(
        request_id = %request_id,
        client_id = %client_id_of(request),
        method = %method,
        route = %route_pattern(request),
        status,
        latency_ms,
        "request"
    );
    Ok(response)
}

/// The route field of a request no route matched.
const UNMATCHED: &str = "(unmatched)";

/// The route pattern, never the path: paths and queries can hold names and identifiers. Once
/// the request is routed, actix-web names the pattern of the resource it chose without matching
/// the route table again.
fn route_pattern(req: &HttpRequest) -> String {
    req.match_pattern().unwrap_or_else(|| UNMATCHED.to_owned())
}

/// The client the bearer check left on the request, or `anonymous`.
fn client_id_of(req: &HttpRequest) -> String {
    use actix_web::HttpMessage as _;
    req.extensions()
        .get::<std::sync::Arc<crate::access::Caller>>()
        .map_or_else(|| "anonymous".to_owned(), |c| c.client_id.clone())
}

/// This worker thread's route table, kept to name the route of a request that timed out: its
/// request went with the cancelled handler, and matching every request's path against the
/// table up front only for that case cost more than the rest of the access log.
struct RouteTable;

thread_local! {
    static ROUTE_TABLE: std::cell::OnceCell<actix_web::dev::ResourceMap> =
        const { std::cell::OnceCell::new() };
}

impl RouteTable {
    /// Keeps a copy of the route table of the worker serving `req` (once per worker thread).
    fn keep(req: &HttpRequest) {
        ROUTE_TABLE.with(|table| {
            table.get_or_init(|| req.resource_map().clone());
        });
    }

    /// The route pattern `path` matches, as [`route_pattern`] gives it before routing.
    fn pattern_of(path: &str) -> String {
        ROUTE_TABLE
            .with(|table| table.get().and_then(|routes| routes.match_pattern(path)))
            .unwrap_or_else(|| UNMATCHED.to_owned())
    }
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    rest::parse_query_string(req.query_string())
}

fn query_param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn negotiated(req: &HttpRequest) -> Result<Negotiated, ApiError> {
    let pairs = query_pairs(req);
    format::negotiate(
        query_param(&pairs, "_format"),
        query_param(&pairs, "_pretty"),
        header_str(req, "accept"),
    )
}

pub(crate) fn base_url(state: &AppState, req: &HttpRequest) -> String {
    let configured = state.config.server.public_base_url.trim_end_matches('/');
    if !configured.is_empty() {
        return format!("{configured}/fhir");
    }
    let info = req.connection_info();
    format!("{}://{}/fhir", info.scheme(), info.host())
}

pub(crate) fn ctx<'a>(state: &'a AppState, req: &HttpRequest) -> Ctx<'a> {
    Ctx {
        state,
        base: std::cell::OnceCell::new(),
        request: Some(req.clone()),
        prefer: Prefer::parse(header_str(req, "prefer")),
        access: caller_access(req),
        purpose_of_use: header_str(req, "x-purpose-of-use").map(str::to_owned),
    }
}

/// The authenticated caller the guard left on the request (nobody when the route is public).
pub(crate) fn caller_access(req: &HttpRequest) -> Access {
    use actix_web::HttpMessage as _;
    req.extensions()
        .get::<std::sync::Arc<crate::access::Caller>>()
        .cloned()
        .map_or(Access::Nobody, Access::Caller)
}

/// Read the body up to the configured limit; larger bodies are refused before they are buffered.
pub(crate) async fn read_body(
    state: &AppState,
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<Vec<u8>, ApiError> {
    let limit = state.config.server.max_body_bytes;
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    };
    if let Some(length) = header_str(req, "content-length").and_then(|v| v.parse::<usize>().ok())
        && length > limit
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("the request body could not be read: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn read_resource(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<serde_json::Value, ApiError> {
    let format = format::body_format(header_str(req, "content-type"))?;
    let body = read_body(state, req, payload).await?;
    format::parse_resource(&body, format)
}

fn http_date(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[u8::from(t.month()) as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn respond(req: &HttpRequest, result: Result<Reply, ApiError>) -> HttpResponse {
    let negotiated = match negotiated(req) {
        Ok(n) => n,
        Err(error) => return error_response(&error, None),
    };
    match result {
        Ok(reply) => reply_response(reply, negotiated),
        Err(error) => error_response(&error, Some(negotiated)),
    }
}

fn reply_response(reply: Reply, negotiated: Negotiated) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    if let Some(etag) = &reply.etag {
        response.insert_header((header::ETAG, etag.as_str()));
    }
    if let Some(ms) = reply.last_modified_ms {
        response.insert_header((header::LAST_MODIFIED, http_date(ms)));
    }
    if let Some(location) = &reply.location {
        response.insert_header((header::LOCATION, location.as_str()));
        if reply.status == 201 {
            response.insert_header((header::CONTENT_LOCATION, location.as_str()));
        }
    }
    if reply.status == 304 || matches!(reply.body, crate::format::bytes_body::Body::Empty) {
        return response.finish();
    }
    match format::render(&reply.body, negotiated) {
        Ok(bytes) => response.content_type(negotiated.content_type()).body(bytes),
        Err(error) => error_response(&error, None),
    }
}

/// The one place an error becomes an HTTP response: status from the error table, an
/// OperationOutcome body in the client's format when it could be negotiated.
pub fn error_response(error: &ApiError, negotiated: Option<Negotiated>) -> HttpResponse {
    let negotiated = negotiated.unwrap_or(Negotiated {
        format: format::Format::Json,
        pretty: false,
        plain_json: false,
    });
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = crate::format::bytes_body::Body::Json(error.to_operation_outcome());
    let (bytes, content_type) = match format::render(&body, negotiated) {
        Ok(bytes) => (bytes, negotiated.content_type()),
        Err(_) => (
            serde_json::to_vec(&error.to_operation_outcome()).unwrap_or_default(),
            "application/fhir+json; charset=utf-8",
        ),
    };
    let mut response = HttpResponse::build(status);
    if let Some(challenge) = &error.challenge {
        response.insert_header((header::WWW_AUTHENTICATE, challenge.as_str()));
    }
    if let Some(secs) = error.retry_after_secs {
        response.insert_header((header::RETRY_AFTER, secs.to_string()));
    }
    response.content_type(content_type).body(bytes)
}

/// Errors that escape a handler (only the timeout does) still become OperationOutcomes.
impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        error_response(self, None)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first = self.issues.first().map_or("", |i| i.diagnostics.as_str());
        write!(f, "{}: {first}", self.kind.table().2)
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(state: State) -> HttpResponse {
    match state.store.ready() {
        Ok(_) => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"status": "store unavailable"}))
        }
    }
}

async fn unknown_route(req: HttpRequest) -> HttpResponse {
    let error = ApiError::not_found(format!(
        "no FHIR interaction at {} {}",
        req.method(),
        req.path()
    ));
    respond(&req, Err(error))
}

async fn metadata(state: State, req: HttpRequest) -> HttpResponse {
    let base = base_url(&state, &req);
    let statement = crate::capability::capability_statement(&state, &base);
    respond(
        &req,
        Ok(Reply {
            status: 200,
            body: crate::format::bytes_body::Body::Json(statement),
            location: None,
            etag: None,
            last_modified_ms: None,
            issues: Vec::new(),
        }),
    )
}

async fn post_bundle(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let ctx = ctx(&state, &req);
    let result = async {
        let bundle = read_resource(&state, &req, payload).await?;
        rest::bundle(&ctx, bundle).await
    }
    .await;
    respond(&req, result)
}

async fn create(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let ctx = ctx(&state, &req);
    let result = async {
        rest::check_type(&state, &path)?;
        // Some clients send conditional-create criteria as query parameters; R4 defines only
        // If-None-Exist, and ignoring them would silently create duplicates.
        if let Some((name, _)) = search_criteria(&req).first() {
            return Err(ApiError::bad_request(format!(
                "create takes no search parameters (got {name:?}); send the criteria in the If-None-Exist header for a conditional create"
            )));
        }
        let resource = read_resource(&state, &req, payload).await?;
        rest::create(&ctx, &path, resource, header_str(&req, "if-none-exist")).await
    }
    .await;
    respond(&req, result)
}

async fn read(state: State, req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    let (rt, id) = path.into_inner();
    let ctx = ctx(&state, &req);
    let result = rest::read(&ctx, &rt, &id, header_str(&req, "if-none-match")).await;
    respond(&req, result)
}

async fn vread(
    state: State,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (rt, id, vid) = path.into_inner();
    let ctx = ctx(&state, &req);
    let result = rest::vread(&ctx, &rt, &id, &vid).await;
    respond(&req, result)
}

async fn update(
    state: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (rt, id) = path.into_inner();
    let ctx = ctx(&state, &req);
    let result = async {
        rest::check_type(&state, &rt)?;
        let resource = read_resource(&state, &req, payload).await?;
        rest::update(&ctx, &rt, &id, resource, header_str(&req, "if-match")).await
    }
    .await;
    respond(&req, result)
}

async fn conditional_update(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let ctx = ctx(&state, &req);
    let criteria = search_criteria(&req);
    let result = async {
        rest::check_type(&state, &path)?;
        let resource = read_resource(&state, &req, payload).await?;
        rest::conditional_update(
            &ctx,
            &path,
            &criteria,
            resource,
            header_str(&req, "if-match"),
        )
        .await
    }
    .await;
    respond(&req, result)
}

async fn delete(state: State, req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    let (rt, id) = path.into_inner();
    let result = rest::delete(&ctx(&state, &req), &rt, &id).await;
    respond(&req, result)
}

async fn conditional_delete(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let criteria = search_criteria(&req);
    let result = rest::conditional_delete(&ctx(&state, &req), &path, &criteria).await;
    respond(&req, result)
}

/// Query parameters minus the ones that only choose the response format.
fn search_criteria(req: &HttpRequest) -> Vec<(String, String)> {
    query_pairs(req)
        .into_iter()
        .filter(|(k, _)| k != "_format" && k != "_pretty")
        .collect()
}

async fn search_get(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let params = search_criteria(&req);
    let ctx = ctx(&state, &req);
    let result = rest::search(&ctx, &path, &params).await;
    respond(&req, result)
}

/// `POST [type]/_search` with form parameters (R4 3.1.0.8): body and URL parameters combine.
async fn search_post(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let result = async {
        let content_type =
            header_str(&req, "content-type").unwrap_or("application/x-www-form-urlencoded");
        if !content_type.starts_with("application/x-www-form-urlencoded") {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                "POST _search takes application/x-www-form-urlencoded parameters",
            ));
        }
        let body = read_body(&state, &req, payload).await?;
        let mut params = search_criteria(&req);
        params.extend(
            form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .filter(|(k, _)| k != "_format" && k != "_pretty"),
        );
        rest::search(&ctx(&state, &req), &path, &params).await
    }
    .await;
    respond(&req, result)
}

async fn history_system(state: State, req: HttpRequest) -> HttpResponse {
    let params = search_criteria(&req);
    let ctx = ctx(&state, &req);
    let result = rest::history(&ctx, HistoryScope::System, &params).await;
    respond(&req, result)
}

async fn history_type(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let params = search_criteria(&req);
    let ctx = ctx(&state, &req);
    let result = rest::history(&ctx, HistoryScope::Type(path.into_inner()), &params).await;
    respond(&req, result)
}

async fn history_instance(
    state: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (rt, id) = path.into_inner();
    let params = search_criteria(&req);
    let ctx = ctx(&state, &req);
    let result = rest::history(&ctx, HistoryScope::Instance(rt, id), &params).await;
    respond(&req, result)
}

/// The inputs of an operation: query parameters plus, for POST, the body (a Parameters resource,
/// or the resource itself where `resource_name` says which parameter it stands for).
async fn op_input(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    resource_name: Option<&str>,
) -> Result<OpInput, ApiError> {
    let mut input = OpInput::from_query(&query_pairs(req));
    if req.method() == actix_web::http::Method::POST {
        let body = read_resource(state, req, payload).await?;
        input.add_body(body, resource_name)?;
    }
    Ok(input)
}

async fn validate_system(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let result = async {
        let input = op_input(&state, &req, payload, Some("resource")).await?;
        operations::validate(&ctx(&state, &req), None, &input).await
    }
    .await;
    respond(&req, result)
}

async fn validate_type(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let result = async {
        let input = op_input(&state, &req, payload, Some("resource")).await?;
        operations::validate(&ctx(&state, &req), Some(&path), &input).await
    }
    .await;
    respond(&req, result)
}

async fn lookup(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let result = async {
        let input = op_input(&state, &req, payload, None).await?;
        operations::lookup(&ctx(&state, &req), &input)
    }
    .await;
    respond(&req, result)
}

async fn validate_code_system(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let result = async {
        let input = op_input(&state, &req, payload, None).await?;
        operations::validate_code(&ctx(&state, &req), true, &input)
    }
    .await;
    respond(&req, result)
}

async fn validate_code_value_set(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let result = async {
        let input = op_input(&state, &req, payload, None).await?;
        operations::validate_code(&ctx(&state, &req), false, &input)
    }
    .await;
    respond(&req, result)
}

async fn immunization_schedule(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let input = OpInput::from_query(&query_pairs(&req));
    let result = operations::immunization_schedule(&ctx(&state, &req), &path, &input).await;
    respond(&req, result)
}

async fn assess(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let result = async {
        let response = read_resource(&state, &req, payload).await?;
        operations::assess(&ctx(&state, &req), &response)
    }
    .await;
    respond(&req, result)
}

async fn assess_stored(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let result = operations::assess_stored(&ctx(&state, &req), &path).await;
    respond(&req, result)
}

async fn from_barcode(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let result = async {
        let input = op_input(&state, &req, payload, None).await?;
        operations::from_barcode(&ctx(&state, &req), &input)
    }
    .await;
    respond(&req, result)
}

/// `layout` and `municipality` (both required) and the optional `encoding` of a municipal
/// request.
struct MunicipalParams {
    layout: municipal::Layout,
    municipality: identifiers::MunicipalityCode,
    encoding: Option<municipal::Encoding>,
    since: Option<time::Date>,
}

/// The parameters of a municipal request, after checking the caller may move that register.
fn municipal_params(state: &AppState, req: &HttpRequest) -> Result<MunicipalParams, ApiError> {
    let params = parse_municipal_params(state, req)?;
    let write = req.method() == actix_web::http::Method::POST;
    caller_access(req).permit_municipal(
        state,
        params.municipality.as_str(),
        params.layout.record_type(),
        write,
    )?;
    Ok(params)
}

fn parse_municipal_params(
    state: &AppState,
    req: &HttpRequest,
) -> Result<MunicipalParams, ApiError> {
    let pairs = query_pairs(req);
    let get = |name: &str| query_param(&pairs, name);
    let municipality =
        identifiers::MunicipalityCode::parse(get("municipality").ok_or_else(|| {
            ApiError::bad_request(
                "the municipality parameter (6-digit local-government code) is required",
            )
        })?)
        .map_err(|e| ApiError::bad_request(format!("municipality: {e}")))?;
    let layout_name =
        get("layout").ok_or_else(|| ApiError::bad_request("the layout parameter is required"))?;
    let layout = crate::municipal::layout(state, layout_name, &municipality)?;
    let encoding = match get("encoding") {
        None | Some("auto") => None,
        Some(text) => Some(
            text.parse::<municipal::Encoding>()
                .map_err(ApiError::bad_request)?,
        ),
    };
    let since = match get("since") {
        None => None,
        Some(text) => Some(
            mappers::wareki::parse_date(text)
                .map_err(|e| ApiError::bad_request(format!("since: {e}")))?,
        ),
    };
    Ok(MunicipalParams {
        layout,
        municipality,
        encoding,
        since,
    })
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json; charset=utf-8")
        .body(value.to_string())
}

/// Copy the upload (raw body, or the first file part of a multipart form) to `path`, refusing
/// more than `limit` bytes; the file is never held in memory.
async fn spool_upload(
    req: &HttpRequest,
    payload: web::Payload,
    path: &std::path::Path,
    limit: u64,
) -> Result<u64, ApiError> {
    use std::io::Write as _;
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the upload exceeds municipal.max_upload_bytes ({limit} bytes)"),
        )
    };
    if header_str(req, "content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(too_large());
    }
    let io_error = |e: std::io::Error| {
        tracing::error!(error = %e, "municipal import: spooling the upload failed");
        ApiError::internal("the upload could not be stored for processing")
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io_error)?);
    let mut written = 0u64;
    let multipart =
        header_str(req, "content-type").is_some_and(|c| c.starts_with("multipart/form-data"));
    if multipart {
        let mut form = actix_multipart::Multipart::new(req.headers(), payload);
        let mut found = false;
        while let Some(field) = form.next().await {
            let mut field =
                field.map_err(|e| ApiError::bad_request(format!("multipart body: {e}")))?;
            if field
                .content_disposition()
                .and_then(|d| d.get_filename())
                .is_none()
            {
                continue;
            }
            found = true;
            while let Some(chunk) = field.next().await {
                let chunk =
                    chunk.map_err(|e| ApiError::bad_request(format!("multipart body: {e}")))?;
                written += chunk.len() as u64;
                if written > limit {
                    return Err(too_large());
                }
                file.write_all(&chunk).map_err(io_error)?;
            }
            break;
        }
        if !found {
            return Err(ApiError::bad_request("the multipart form has no file part"));
        }
    } else {
        let mut payload = payload;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(format!("the request body could not be read: {e}"))
            })?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(too_large());
            }
            file.write_all(&chunk).map_err(io_error)?;
        }
    }
    file.flush().map_err(io_error)?;
    Ok(written)
}

/// `POST /municipal/v1/imports?layout=…&municipality=…[&encoding=…]`: the file is spooled to
/// disk and imported by a task; 202 with the status URL.
async fn municipal_import(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let result = async {
        let params = municipal_params(&state, &req)?;
        let id = uuid::Uuid::new_v4().to_string();
        let dir = state.municipal_imports_dir();
        std::fs::create_dir_all(&dir).map_err(|e| {
            tracing::error!(error = %e, "municipal import: cannot create the imports folder");
            ApiError::internal("the upload could not be stored for processing")
        })?;
        let upload = dir.join(format!("{id}.upload"));
        if let Err(error) = spool_upload(
            &req,
            payload,
            &upload,
            state.config.municipal.max_upload_bytes,
        )
        .await
        {
            let _ = std::fs::remove_file(&upload);
            return Err(error);
        }
        let report = std::sync::Arc::new(std::sync::Mutex::new(
            crate::municipal::ImportReport::new(params.layout.name(), &params.municipality),
        ));
        state
            .imports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), report.clone());
        let task_state = state.clone();
        let task_id = id.clone();
        let access = caller_access(&req);
        std::thread::Builder::new()
            .name(format!("import-{id}"))
            .spawn(move || run_import_task(task_state, task_id, (params, access), upload, report))
            .map_err(|e| ApiError::internal(format!("the import could not be started: {e}")))?;
        Ok(id)
    }
    .await;
    match result {
        Ok(id) => {
            let location = format!("/municipal/v1/imports/{id}");
            let body = serde_json::json!({"id": id, "state": "running", "status": location});
            HttpResponse::Accepted()
                .insert_header((header::LOCATION, location.as_str()))
                .content_type("application/json; charset=utf-8")
                .body(body.to_string())
        }
        Err(error) => error_response(&error, None),
    }
}

fn run_import_task(
    state: State,
    id: String,
    (params, access): (MunicipalParams, Access),
    upload: std::path::PathBuf,
    shared: std::sync::Arc<std::sync::Mutex<crate::municipal::ImportReport>>,
) {
    let encoding = params.encoding.map_or(
        municipal::EncodingChoice::Auto,
        municipal::EncodingChoice::Exactly,
    );
    let report = match std::fs::File::open(&upload) {
        Ok(file) => crate::municipal::import(
            &state,
            &access,
            &params.layout,
            &params.municipality,
            (
                std::io::BufReader::with_capacity(1 << 20, file),
                std::fs::metadata(&upload).ok().map(|m| m.len()),
                encoding,
            ),
            crate::municipal::Delivery::Commit,
            &mut |report| *shared.lock().unwrap_or_else(|p| p.into_inner()) = report.clone(),
        ),
        Err(error) => {
            let mut report =
                crate::municipal::ImportReport::new(params.layout.name(), &params.municipality);
            report.state = crate::municipal::ImportState::Failed;
            report.failure = Some(format!("the spooled upload could not be read: {error}"));
            report
        }
    };
    tracing::info!(
        import_id = %id,
        state = ?report.state,
        rows_read = report.rows_read,
        rows_imported = report.rows_imported,
        rows_unchanged = report.rows_unchanged,
        rows_rejected = report.rows_rejected,
        elapsed_ms = report.elapsed_ms,
        "municipal import finished"
    );
    let _ = std::fs::remove_file(&upload);
    let path = state.municipal_imports_dir().join(format!("{id}.json"));
    if let Ok(text) = serde_json::to_vec_pretty(&report)
        && let Err(error) = std::fs::write(&path, text)
    {
        tracing::error!(import_id = %id, %error, "municipal import: the report could not be kept");
    }
    *shared.lock().unwrap_or_else(|p| p.into_inner()) = report;
}

/// `GET /municipal/v1/imports/{id}`: the import's live status, then its report.
async fn municipal_import_status(state: State, path: web::Path<String>) -> HttpResponse {
    let id = path.into_inner();
    if uuid::Uuid::parse_str(&id).is_err() {
        return error_response(&ApiError::not_found(format!("no import {id:?}")), None);
    }
    let live = state
        .imports
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .cloned();
    let report = match live {
        Some(report) => {
            serde_json::to_value(&*report.lock().unwrap_or_else(|p| p.into_inner())).ok()
        }
        None => std::fs::read(state.municipal_imports_dir().join(format!("{id}.json")))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()),
    };
    match report {
        Some(mut report) => {
            report["id"] = serde_json::json!(id);
            json_response(StatusCode::OK, &report)
        }
        None => error_response(&ApiError::not_found(format!("no import {id:?}")), None),
    }
}

/// `GET /municipal/v1/exports?layout=…&municipality=…[&since=…][&encoding=…]`: the
/// municipality's file, in its layout.
async fn municipal_export(state: State, req: HttpRequest) -> HttpResponse {
    let result = async {
        let params = municipal_params(&state, &req)?;
        let export = crate::municipal::export_for(
            &ctx(&state, &req),
            &params.layout,
            &params.municipality,
            params.since,
            params.encoding,
        )
        .await?;
        Ok::<_, ApiError>((params, export))
    }
    .await;
    match result {
        Ok((params, export)) => {
            let encoding = params.encoding.unwrap_or(params.layout.encoding());
            for reason in &export.skipped {
                tracing::info!(reason = %reason, "municipal export: record left out");
            }
            HttpResponse::Ok()
                .content_type(crate::municipal::csv_content_type(encoding))
                .insert_header((
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"{}-{}.csv\"",
                        params.layout.name(),
                        params.municipality.as_str()
                    ),
                ))
                .insert_header(("x-musubi-export-rows", export.rows.to_string()))
                .insert_header(("x-musubi-export-skipped", export.skipped.len().to_string()))
                .insert_header(("x-musubi-export-withheld", export.withheld.to_string()))
                .body(export.file)
        }
        Err(error) => error_response(&error, None),
    }
}

/// `POST /municipal/v1/records?layout=…&municipality=…`: the PMH-style JSON form.
async fn municipal_records_post(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let result = async {
        let params = municipal_params(&state, &req)?;
        let body = read_body(&state, &req, payload).await?;
        crate::municipal::import_json(
            &state,
            &caller_access(&req),
            &params.layout,
            &params.municipality,
            &body,
        )
        .await
    }
    .await;
    match result {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(error) => error_response(&error, None),
    }
}

/// `GET /municipal/v1/records?layout=…&municipality=…[&since=…]`: the residents' records in the
/// JSON form.
async fn municipal_records_get(state: State, req: HttpRequest) -> HttpResponse {
    let result = async {
        let params = municipal_params(&state, &req)?;
        crate::municipal::export_json(
            &ctx(&state, &req),
            &params.layout,
            &params.municipality,
            params.since,
        )
        .await
    }
    .await;
    match result {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(error) => error_response(&error, None),
    }
}
