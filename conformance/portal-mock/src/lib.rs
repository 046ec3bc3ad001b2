//! A local stand-in for the My Number Portal self-information API, for tests only.
//!
//! It listens on 127.0.0.1 (port 0) over TLS with a throwaway CA and server certificate made at
//! start-up, and plays the portal's side of the flow the adapter follows (jp-specs §2.2):
//! the authorisation endpoint (the person's consent, simulated by the `x-mock-person` header
//! standing in for the My Number card), the token endpoint (authorisation code with PKCE S256,
//! refresh with rotation, `private_key_jwt` client assertions verified against the registered
//! P-256 key, or a client secret), and the record endpoints answering in the guessed layout of
//! `profiles/jp/portal/myna-portal-layout.json`, paged by an offset cursor. Faults are scripted:
//! 429 with `Retry-After`, 5xx, slow answers, invalid tokens, expired or revoked consent, and
//! arbitrary bodies. Every request is counted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use ring::digest::{SHA256, digest};
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The paths and members of the guessed layout (mirrors myna-portal-layout.json).
pub const AUTHORIZE_PATH: &str = "/oauth2/authorize";
pub const TOKEN_PATH: &str = "/oauth2/token";
pub const VACCINATIONS_PATH: &str = "/api/v1/self-info/vaccinations";
pub const CHILD_CHECKUPS_PATH: &str = "/api/v1/self-info/child-checkups";
pub const PRENATAL_CHECKUPS_PATH: &str = "/api/v1/self-info/prenatal-checkups";
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The record categories the mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Vaccinations,
    ChildCheckups,
    PrenatalCheckups,
}

impl Category {
    fn from_path(path: &str) -> Option<Self> {
        match path {
            VACCINATIONS_PATH => Some(Category::Vaccinations),
            CHILD_CHECKUPS_PATH => Some(Category::ChildCheckups),
            PRENATAL_CHECKUPS_PATH => Some(Category::PrenatalCheckups),
            _ => None,
        }
    }
    fn member(self) -> &'static str {
        match self {
            Category::Vaccinations => "vaccinations",
            Category::ChildCheckups | Category::PrenatalCheckups => "checkups",
        }
    }
}

/// How the registered client authenticates at the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientCredential {
    /// `private_key_jwt`: the uncompressed P-256 public point the assertions must verify with.
    PublicKey(Vec<u8>),
    Secret(String),
}

/// The mock's fixed set-up.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub client_id: String,
    pub credential: ClientCredential,
    pub redirect_uri: String,
    /// Records per page.
    pub page_size: usize,
    /// Lifetime of access tokens, in seconds (as `expires_in`).
    pub access_token_lifetime: u64,
}

impl Scenario {
    pub fn new(
        client_id: impl Into<String>,
        credential: ClientCredential,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Scenario {
            client_id: client_id.into(),
            credential,
            redirect_uri: redirect_uri.into(),
            page_size: 2,
            access_token_lifetime: 3600,
        }
    }
}

/// A scripted fault, consumed by the next record request (record faults) or token request
/// (token faults), in order.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with this `Retry-After` value (none when `None`).
    RateLimited(Option<String>),
    /// This status (e.g. 500, 503) with an error body.
    Status(u16),
    /// Answer normally, but only after this delay.
    Slow(Duration),
    /// 401 `invalid_token`.
    InvalidToken,
    /// 403 `consent_expired` (and the person's consent becomes expired).
    ConsentExpired,
    /// 403 `consent_revoked` (and the person's consent becomes revoked).
    ConsentRevoked,
    /// Any answer, e.g. a malformed body.
    Body { status: u16, body: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Consent {
    Active,
    Expired,
    Revoked,
}

#[derive(Debug)]
struct CodeGrant {
    person: String,
    challenge: String,
    redirect_uri: String,
    used: bool,
}

#[derive(Debug)]
struct AccessToken {
    person: String,
    expires: Instant,
}

/// Requests seen, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub authorize: usize,
    pub token: usize,
    pub records: usize,
}

#[derive(Debug)]
struct State {
    scenario: Scenario,
    base_url: String,
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, String>,
    consent: HashMap<String, Consent>,
    records: HashMap<(String, Category), Vec<Value>>,
    record_faults: VecDeque<Fault>,
    token_faults: VecDeque<Fault>,
    seen_jti: HashSet<String>,
    counts: Counts,
    serial: u64,
}

impl State {
    fn mint(&mut self, prefix: &str) -> String {
        self.serial += 1;
        // Unpredictability does not matter in a test double; uniqueness does.
        format!("{prefix}-{}-{}", self.serial, std::process::id())
    }
}

/// A running mock portal; stops when dropped.
#[derive(Debug)]
pub struct MockPortal {
    base_url: String,
    ca_pem: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for MockPortal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Reply = Response<Full<Bytes>>;

fn json_reply(status: u16, body: &Value) -> Reply {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn oauth_error(status: u16, code: &str, description: &str) -> Reply {
    json_reply(
        status,
        &json!({"error": code, "error_description": description}),
    )
}

impl MockPortal {
    /// Start the mock on 127.0.0.1 with a fresh CA.
    pub async fn start(scenario: Scenario) -> MockPortal {
        let (ca_pem, server_config) = certificates();
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let base_url = format!("https://127.0.0.1:{port}");
        let state = Arc::new(Mutex::new(State {
            scenario,
            base_url: base_url.clone(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            consent: HashMap::new(),
            records: HashMap::new(),
            record_faults: VecDeque::new(),
            token_faults: VecDeque::new(),
            seen_jti: HashSet::new(),
            counts: Counts::default(),
            serial: 0,
        }));
        let acceptor = TlsAcceptor::from(Arc::new(server_config));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = shared.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
                    });
                    // A client that gives up mid-answer (timeouts) ends its connection; fine.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        MockPortal {
            base_url,
            ca_pem,
            state,
            task,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `https://127.0.0.1:{port}`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The throwaway CA to trust (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Set the records the portal holds for `person` in `category` (in the guessed layout).
    pub fn seed(&self, person: &str, category: Category, records: Vec<Value>) {
        self.lock()
            .records
            .insert((person.to_owned(), category), records);
    }

    /// Queue a fault for the next record request.
    pub fn push_fault(&self, fault: Fault) {
        self.lock().record_faults.push_back(fault);
    }

    /// Queue a fault for the next token request.
    pub fn push_token_fault(&self, fault: Fault) {
        self.lock().token_faults.push_back(fault);
    }

    /// The person withdraws the consent at the portal.
    pub fn revoke_consent(&self, person: &str) {
        self.lock()
            .consent
            .insert(person.to_owned(), Consent::Revoked);
    }

    /// The portal considers the person's consent expired.
    pub fn expire_consent(&self, person: &str) {
        self.lock()
            .consent
            .insert(person.to_owned(), Consent::Expired);
    }

    /// Every access token of `person` stops working (refresh tokens still work).
    pub fn invalidate_access_tokens(&self, person: &str) {
        self.lock().access.retain(|_, t| t.person != person);
    }

    /// Every refresh token of `person` stops working.
    pub fn invalidate_refresh_tokens(&self, person: &str) {
        self.lock().refresh.retain(|_, p| p != person);
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts
    }
}

fn certificates() -> (String, rustls::ServerConfig) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Musubi portal-mock test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");

    let server_key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "portal-mock");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), CertificateDer::from(ca.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .expect("server TLS configuration");
    (ca.pem(), config)
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Reply {
    let lock = |s: &Arc<Mutex<State>>| {
        s.lock().unwrap_or_else(|p| p.into_inner()).counts.total += 1;
    };
    lock(&state);
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, AUTHORIZE_PATH) => {
            let person = req
                .headers()
                .get("x-mock-person")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let deny = req
                .headers()
                .get("x-mock-decision")
                .is_some_and(|v| v == "deny");
            authorize(&state, &query, person, deny)
        }
        (&Method::POST, TOKEN_PATH) => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return oauth_error(400, "invalid_request", "unreadable body"),
            };
            token(&state, &body).await
        }
        (&Method::GET, p) => match Category::from_path(p) {
            Some(category) => {
                let bearer = req
                    .headers()
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::to_owned);
                records(&state, category, &query, bearer).await
            }
            None => oauth_error(404, "not_found", "no such endpoint"),
        },
        _ => oauth_error(405, "method_not_allowed", "not served"),
    }
}

fn query_map(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn authorize(state: &Arc<Mutex<State>>, query: &str, person: Option<String>, deny: bool) -> Reply {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.counts.authorize += 1;
    let q = query_map(query);
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != s.scenario.client_id {
        return oauth_error(400, "unauthorized_client", "unknown client_id");
    }
    if get("redirect_uri") != s.scenario.redirect_uri {
        return oauth_error(400, "invalid_request", "redirect_uri is not registered");
    }
    if get("response_type") != "code" {
        return oauth_error(400, "unsupported_response_type", "only code");
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").len() < 43 {
        return oauth_error(400, "invalid_request", "PKCE S256 is required");
    }
    if !get("scope").split(' ').any(|sc| sc == "openid") || get("state").is_empty() {
        return oauth_error(
            400,
            "invalid_request",
            "scope openid and state are required",
        );
    }
    let state_param = get("state").to_owned();
    let redirect = get("redirect_uri").to_owned();
    let location = if deny {
        format!("{redirect}?error=access_denied&state={state_param}")
    } else {
        let Some(person) = person else {
            return oauth_error(400, "login_required", "no card was read (x-mock-person)");
        };
        let code = s.mint("code");
        let grant = CodeGrant {
            person,
            challenge: get("code_challenge").to_owned(),
            redirect_uri: redirect.clone(),
            used: false,
        };
        s.codes.insert(code.clone(), grant);
        format!("{redirect}?code={code}&state={state_param}")
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = hyper::header::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(hyper::header::LOCATION, v);
    }
    resp
}

fn fault_reply(fault: &Fault) -> Option<Reply> {
    Some(match fault {
        Fault::RateLimited(after) => {
            let mut r = oauth_error(429, "rate_limited", "slow down");
            if let Some(a) = after.as_deref().and_then(|a| a.parse().ok()) {
                r.headers_mut().insert(hyper::header::RETRY_AFTER, a);
            }
            r
        }
        Fault::Status(status) => oauth_error(*status, "server_error", "scripted failure"),
        Fault::Slow(_) => return None,
        Fault::InvalidToken => oauth_error(401, "invalid_token", "scripted"),
        Fault::ConsentExpired => oauth_error(403, "consent_expired", "scripted"),
        Fault::ConsentRevoked => oauth_error(403, "consent_revoked", "scripted"),
        Fault::Body { status, body } => {
            let mut r = Response::new(Full::new(Bytes::from(body.clone())));
            *r.status_mut() = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Check the client's authentication in a token request; the error is the OAuth error code.
fn client_authenticated(s: &mut State, form: &HashMap<String, String>) -> Result<(), &'static str> {
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != s.scenario.client_id {
        return Err("invalid_client");
    }
    match s.scenario.credential.clone() {
        ClientCredential::Secret(secret) => {
            if get("client_secret") == secret {
                Ok(())
            } else {
                Err("invalid_client")
            }
        }
        ClientCredential::PublicKey(public) => {
            if get("client_assertion_type") != CLIENT_ASSERTION_TYPE {
                return Err("invalid_client");
            }
            let jwt = get("client_assertion");
            let parts: Vec<&str> = jwt.split('.').collect();
            let [h, c, sig] = parts.as_slice() else {
                return Err("invalid_client");
            };
            let decode = |p: &str| -> Option<Value> {
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
            };
            let (Some(header), Some(claims), Ok(signature)) =
                (decode(h), decode(c), URL_SAFE_NO_PAD.decode(sig))
            else {
                return Err("invalid_client");
            };
            let verified = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
                .verify(format!("{h}.{c}").as_bytes(), &signature)
                .is_ok();
            let audience = format!("{}{TOKEN_PATH}", s.base_url);
            let id = s.scenario.client_id.as_str();
            let jti = claims["jti"].as_str().unwrap_or("").to_owned();
            let ok = verified
                && header["alg"] == "ES256"
                && claims["iss"] == id
                && claims["sub"] == id
                && claims["aud"] == audience.as_str()
                && claims["exp"].as_i64().is_some_and(|exp| exp > unix_now())
                && !jti.is_empty()
                && s.seen_jti.insert(jti);
            if ok { Ok(()) } else { Err("invalid_client") }
        }
    }
}

async fn token(state: &Arc<Mutex<State>>, body: &[u8]) -> Reply {
    let fault = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.counts.token += 1;
        s.token_faults.pop_front()
    };
    if let Some(fault) = &fault {
        if let Fault::Slow(delay) = fault {
            tokio::time::sleep(*delay).await;
        } else if let Some(reply) = fault_reply(fault) {
            return reply;
        }
    }
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(code) = client_authenticated(&mut s, &form) {
        return oauth_error(401, code, "client authentication failed");
    }
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let person = match get("grant_type") {
        "authorization_code" => {
            let code = get("code").to_owned();
            let verifier = get("code_verifier").to_owned();
            let redirect = get("redirect_uri").to_owned();
            let Some(grant) = s.codes.get_mut(&code) else {
                return oauth_error(400, "invalid_grant", "unknown code");
            };
            if grant.used {
                return oauth_error(400, "invalid_grant", "code already used");
            }
            grant.used = true;
            let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref());
            if challenge != grant.challenge || redirect != grant.redirect_uri {
                return oauth_error(400, "invalid_grant", "PKCE or redirect_uri mismatch");
            }
            let person = grant.person.clone();
            // A new authorisation is a new consent.
            s.consent.insert(person.clone(), Consent::Active);
            person
        }
        "refresh_token" => {
            let Some(person) = s.refresh.remove(get("refresh_token")) else {
                return oauth_error(400, "invalid_grant", "unknown refresh token");
            };
            match s.consent.get(&person).copied().unwrap_or(Consent::Active) {
                Consent::Active => person,
                Consent::Expired => return oauth_error(400, "consent_expired", "consent ended"),
                Consent::Revoked => {
                    return oauth_error(400, "consent_revoked", "consent withdrawn");
                }
            }
        }
        _ => return oauth_error(400, "unsupported_grant_type", "code or refresh_token"),
    };
    let access = s.mint("access");
    let refresh = s.mint("refresh");
    let lifetime = s.scenario.access_token_lifetime;
    s.access.insert(
        access.clone(),
        AccessToken {
            person: person.clone(),
            expires: Instant::now() + Duration::from_secs(lifetime),
        },
    );
    s.refresh.insert(refresh.clone(), person);
    json_reply(
        200,
        &json!({
            "access_token": access, "token_type": "Bearer", "expires_in": lifetime,
            "refresh_token": refresh, "scope": "openid vaccinations checkups"
        }),
    )
}

async fn records(
    state: &Arc<Mutex<State>>,
    category: Category,
    query: &str,
    bearer: Option<String>,
) -> Reply {
    let fault = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.counts.records += 1;
        s.record_faults.pop_front()
    };
    if let Some(fault) = &fault {
        match fault {
            Fault::Slow(delay) => tokio::time::sleep(*delay).await,
            Fault::ConsentExpired | Fault::ConsentRevoked => {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(t) = bearer.as_ref().and_then(|b| s.access.get(b)) {
                    let person = t.person.clone();
                    let c = if matches!(fault, Fault::ConsentExpired) {
                        Consent::Expired
                    } else {
                        Consent::Revoked
                    };
                    s.consent.insert(person, c);
                }
            }
            _ => {}
        }
        if let Some(reply) = fault_reply(fault) {
            return reply;
        }
    }
    let s = state.lock().unwrap_or_else(|p| p.into_inner());
    let Some(token) = bearer.as_ref().and_then(|b| s.access.get(b)) else {
        return oauth_error(401, "invalid_token", "unknown access token");
    };
    if token.expires <= Instant::now() {
        return oauth_error(401, "invalid_token", "access token expired");
    }
    match s
        .consent
        .get(&token.person)
        .copied()
        .unwrap_or(Consent::Active)
    {
        Consent::Active => {}
        Consent::Expired => return oauth_error(403, "consent_expired", "consent ended"),
        Consent::Revoked => return oauth_error(403, "consent_revoked", "consent withdrawn"),
    }
    let all = s
        .records
        .get(&(token.person.clone(), category))
        .map(Vec::as_slice)
        .unwrap_or_default();
    let offset: usize = query_map(query)
        .get("cursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let size = s.scenario.page_size.max(1);
    let page: Vec<Value> = all.iter().skip(offset).take(size).cloned().collect();
    let next = (offset + size < all.len()).then(|| (offset + size).to_string());
    json_reply(200, &json!({ category.member(): page, "nextCursor": next }))
}
