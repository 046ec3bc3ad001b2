//! `TestApp`: a real Musubi server on a free loopback port with its own data directory, and a
//! small FHIR-aware HTTP client for tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway::config::Config;
use serde_json::Value;

/// The client every TestApp registers and calls as (unless a test builds its own requests):
/// a clinic EMR with `system/*.cruds`.
pub const TEST_CLIENT_ID: &str = "musubi-tests";
pub const TEST_CLIENT_SECRET: &str = "musubi-tests-secret";

/// The operator client every TestApp registers (`system/Task.cruds`, secret
/// [`TEST_CLIENT_SECRET`]): the only kind of client the `/routing/v1` operator routes accept.
pub const TEST_OPERATOR_ID: &str = "musubi-tests-operator";

/// The Argon2 hash of [`TEST_CLIENT_SECRET`], computed once per test process.
pub fn test_secret_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| auth::hash_secret(TEST_CLIENT_SECRET).expect("hash"))
}

/// A registered client for a test configuration.
pub fn system_client(id: &str, kind: auth::ClientKind, scopes: &[&str]) -> auth::Client {
    auth::Client {
        id: id.to_owned(),
        kind,
        medical_institution_code: (kind == auth::ClientKind::ClinicEmr)
            .then(|| "1311234569".to_owned()),
        municipality_code: (kind == auth::ClientKind::Municipality).then(|| "131016".to_owned()),
        organization: None,
        grant_types: vec![auth::GrantType::ClientCredentials],
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        redirect_uris: Vec::new(),
        credentials: auth::Credentials {
            secret_hash: Some(test_secret_hash().to_owned()),
            ..Default::default()
        },
    }
}

pub struct TestApp {
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    /// `http://127.0.0.1:PORT`
    pub root: String,
    /// Sends the test client's bearer token with every request.
    pub client: reqwest::Client,
    /// The test client's access token.
    pub token: String,
    pub data_dir: PathBuf,
    operator: tokio::sync::OnceCell<reqwest::Client>,
    /// The running server's state, for tests that drive a worker round themselves
    /// (`gateway::outbox::poll`) instead of waiting for it.
    pub state: actix_web::web::Data<gateway::state::AppState>,
    handle: actix_web::dev::ServerHandle,
    store: Arc<dyn store::Store>,
    _temp: Option<tempfile::TempDir>,
}

/// A response, read completely.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    /// Start with the demo configuration on port 0 and a fresh data directory.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_owned();
        let mut app = Self::spawn_in(&dir, adjust).await;
        app._temp = Some(temp);
        app
    }

    /// Start on an existing data directory (to test restarts).
    pub async fn spawn_in(data_dir: &Path, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = Config::load(None, Vec::<(String, String)>::new()).expect("demo config");
        config.server.listen = "127.0.0.1:0".into();
        config.storage.data_dir = data_dir.to_owned();
        config.clients.push(system_client(
            TEST_CLIENT_ID,
            auth::ClientKind::ClinicEmr,
            &["system/*.cruds"],
        ));
        config.clients.push(system_client(
            TEST_OPERATOR_ID,
            auth::ClientKind::Operator,
            &["system/Task.cruds"],
        ));
        // Long enough for the longest test; limits off unless a test is about them.
        config.auth.access_token_lifetime_secs = 3600;
        config.rate_limits.per_client_per_second = 0;
        config.rate_limits.per_ip_per_second = 0;
        adjust(&mut config);
        let store = gateway::open_store(&config).expect("open store");
        let running = gateway::start(config, store.clone())
            .await
            .expect("start server");
        let handle = running.server.handle();
        let state = running.state.clone();
        tokio::spawn(running.server);
        // The workers start asynchronously; a connection that arrives before they run can be
        // dropped, so wait until the server answers (with a client of its own: a pooled
        // connection left idle past the server's keep-alive would fail the first real request).
        let probe = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let health = format!("http://{}/healthz", running.addr);
        for attempt in 0.. {
            match probe.get(&health).send().await {
                Ok(r) if r.status().is_success() => break,
                _ if attempt < 200 => {
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await
                }
                other => panic!("the test server did not become healthy: {other:?}"),
            }
        }
        let root = format!("http://{}", running.addr);
        let token =
            client_credentials_token(&probe, &root, TEST_CLIENT_ID, TEST_CLIENT_SECRET, None)
                .await
                .expect("the test client gets a token");
        TestApp {
            base: format!("http://{}/fhir", running.addr),
            root,
            client: bearer_client(&token),
            token,
            operator: tokio::sync::OnceCell::new(),
            data_dir: data_dir.to_owned(),
            state,
            handle,
            store,
            _temp: None,
        }
    }

    /// A client that sends the test operator's token ([`TEST_OPERATOR_ID`]) with every
    /// request: for the `/routing/v1` operator routes. The token is asked for once, on first use.
    pub async fn operator(&self) -> &reqwest::Client {
        self.operator
            .get_or_init(|| async {
                let token = client_credentials_token(
                    &self.anonymous(),
                    &self.root,
                    TEST_OPERATOR_ID,
                    TEST_CLIENT_SECRET,
                    None,
                )
                .await
                .expect("the test operator gets a token");
                bearer_client(&token)
            })
            .await
    }

    /// A client without credentials (for 401 tests and public routes).
    pub fn anonymous(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .build()
            .expect("client")
    }

    /// Stop the server and close the store cleanly; the data directory is kept.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.handle.stop(true).await;
        self.store.shutdown().await.expect("clean store shutdown");
        self._temp.take()
    }

    pub fn url(&self, path: &str) -> String {
        if path.is_empty() {
            self.base.clone()
        } else if path.starts_with('/') || path.starts_with('?') {
            format!("{}{path}", self.base)
        } else {
            format!("{}/{path}", self.base)
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Response {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        Response {
            status,
            headers,
            text,
        }
    }

    /// A resource's current content as the store holds it, with no access or consent decision:
    /// for tests that check the gateway's own records (outbox Tasks), which through the API only
    /// their addressee may read. `None` when absent or deleted.
    pub fn stored(&self, resource_type: &str, id: &str) -> Option<Value> {
        self.state
            .store
            .read(resource_type, id)
            .expect("store read")
            .filter(|version| !version.is_deleted())
            .map(|version| serde_json::from_slice(&version.body).expect("stored JSON"))
    }

    /// The live resources matching a search (R4 parameters, at most 1 000), straight from the
    /// store, with no access or consent decision (see [`TestApp::stored`]).
    pub fn stored_search(&self, resource_type: &str, params: &[(&str, &str)]) -> Vec<Value> {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let query = search::parse_query(search::Registry::r4(), resource_type, &params, true)
            .expect("a valid search");
        self.state
            .store
            .search(&store::SearchRequest {
                resource_type,
                query: &query,
                offset: 0,
                count: 1000,
                need_total: false,
            })
            .expect("store search")
            .matches
            .iter()
            .map(|version| serde_json::from_slice(&version.body).expect("stored JSON"))
            .collect()
    }

    /// PUTs a resource to `{type}/{id}` (create or update) and answers the stored resource;
    /// panics unless the answer is 200 or 201.
    pub async fn upsert(&self, resource: Value) -> Value {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().expect("resourceType"),
            resource["id"].as_str().expect("id")
        );
        let r = self.put(&path, &resource).await;
        assert!(r.status == 200 || r.status == 201, "PUT {path}: {}", r.text);
        r.json()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(
            self.client
                .get(self.url(path))
                .header("accept", "application/fhir+json"),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.send(
            self.client
                .post(self.url(path))
                .header("content-type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.send(
            self.client
                .put(self.url(path))
                .header("content-type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.send(self.client.delete(self.url(path))).await
    }

    /// Create and return the stored resource, asserting 201.
    pub async fn create(&self, body: &Value) -> Value {
        let rt = body["resourceType"].as_str().expect("resourceType");
        let response = self.post(rt, body).await;
        assert_eq!(response.status, 201, "create {rt}: {}", response.text);
        response.json()
    }
}

/// A client that sends `token` as its bearer token with every request.
fn bearer_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header value"),
    );
    // Idle connections are dropped before the server's keep-alive can close them under us.
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .default_headers(headers)
        .build()
        .expect("client")
}

/// The ids of a searchset Bundle's matches, in order.
pub fn match_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /oauth/token` with client_secret_basic; the access token, or the error body.
pub async fn client_credentials_token(
    client: &reqwest::Client,
    root: &str,
    client_id: &str,
    secret: &str,
    scope: Option<&str>,
) -> Result<String, String> {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let response = client
        .post(format!("{root}/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&form)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(body.to_string());
    }
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| body.to_string())
}

// ---- Parents, their children and the PHR app they sign in with ----

/// The identifier system linking a parent's sign-in account to RelatedPerson resources.
pub const ACCOUNT_SYSTEM: &str = "https://musubi.example.org/fhir/IdSystem/account";
/// The redirect URI of the test PHR apps (nothing listens there: tests read the redirect).
pub const PHR_REDIRECT: &str = "http://127.0.0.1:9/callback";
/// Every test parent's password.
pub const PARENT_PASSWORD: &str = "a-long-parent-password";

/// A parent who signs in on `/oauth/authorize` with [`PARENT_PASSWORD`].
pub fn parent(username: &str) -> gateway::config::UserConfig {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = HASH.get_or_init(|| auth::hash_secret(PARENT_PASSWORD).expect("hash"));
    toml::from_str(&format!(
        "username = {username:?}\npassword_hash = {hash:?}\n"
    ))
    .expect("user config")
}

/// A public PHR app (authorization code with PKCE, refresh tokens) redirecting to
/// [`PHR_REDIRECT`], allowed `scopes`.
pub fn phr_app(id: &str, scopes: &[&str]) -> auth::Client {
    auth::Client {
        id: id.to_owned(),
        kind: auth::ClientKind::PhrApp,
        medical_institution_code: None,
        municipality_code: None,
        organization: None,
        grant_types: vec![
            auth::GrantType::AuthorizationCode,
            auth::GrantType::RefreshToken,
        ],
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        redirect_uris: vec![PHR_REDIRECT.into()],
        credentials: auth::Credentials::default(),
    }
}

/// Store the new `patient` (through the test's system client) and link it to the account
/// `parent-{family}` by the active RelatedPerson `rp-{family}`.
pub async fn link_child(app: &TestApp, family: &str, patient: Value) {
    let id = patient["id"]
        .as_str()
        .expect("the patient has an id")
        .to_owned();
    let r = app.put(&format!("Patient/{id}"), &patient).await;
    assert_eq!(r.status, 201, "Patient/{id}: {}", r.text);
    let related = serde_json::json!({"resourceType": "RelatedPerson", "id": format!("rp-{family}"),
        "active": true, "identifier": [{"system": ACCOUNT_SYSTEM, "value": format!("parent-{family}")}],
        "patient": {"reference": format!("Patient/{id}")}});
    let r = app
        .put(&format!("RelatedPerson/rp-{family}"), &related)
        .await;
    assert_eq!(r.status, 201, "RelatedPerson/rp-{family}: {}", r.text);
}

/// The authorization-code flow with PKCE as a PHR app runs it for a parent: the sign-in page, the
/// form post, the redirect back with the code and the same state, the token exchange. Returns
/// the token response.
pub async fn sign_in(app: &TestApp, client_id: &str, username: &str, scope: &str) -> Value {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-a-longer-verifier";
    let challenge = auth::pkce::challenge_s256(verifier);
    let mut form = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", PHR_REDIRECT),
        ("scope", scope),
        ("state", "s-123"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("aud", app.base.as_str()),
    ];
    let page = http
        .get(format!("{}/oauth/authorize", app.root))
        .query(&form)
        .send()
        .await
        .expect("sign-in page");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("name=\"password\""));
    form.push(("username", username));
    form.push(("password", PARENT_PASSWORD));
    let redirect = http
        .post(format!("{}/oauth/authorize", app.root))
        .form(&form)
        .send()
        .await
        .expect("sign-in");
    assert_eq!(redirect.status(), 302, "{:?}", redirect.text().await);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(PHR_REDIRECT), "{location}");
    let returned: Vec<(String, String)> = reqwest::Url::parse(&location)
        .expect("redirect URL")
        .query_pairs()
        .into_owned()
        .collect();
    let get = |name: &str| {
        returned
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} missing in {location}"))
    };
    assert_eq!(get("state"), "s-123");
    let token = http
        .post(format!("{}/oauth/token", app.root))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", get("code").as_str()),
            ("redirect_uri", PHR_REDIRECT),
            ("code_verifier", verifier),
            ("client_id", client_id),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(token.status(), 200);
    token.json().await.expect("token JSON")
}

/// One request a test [`Endpoint`] received, and the status it answered.
#[derive(Debug, Clone)]
pub struct EndpointRequest {
    pub method: String,
    pub path: String,
    /// `X-Musubi-Delivery-Id`, `X-Musubi-File-Id`, `X-Musubi-File-Kind` (empty when absent).
    pub delivery_id: String,
    pub file_id: String,
    pub file_kind: String,
    pub status: u16,
    pub body: Vec<u8>,
}

impl EndpointRequest {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What a test [`Endpoint`] received, and how it answers: 503 to the next `fail_next` requests
/// (or to every request while `always_fail`), 201 otherwise.
#[derive(Debug, Default)]
pub struct EndpointLog {
    pub fail_next: usize,
    pub always_fail: bool,
    pub requests: Vec<EndpointRequest>,
}

impl EndpointLog {
    /// The bodies of the requests it accepted, as JSON.
    pub fn accepted(&self) -> Vec<Value> {
        self.requests
            .iter()
            .filter(|r| r.status == 201)
            .map(EndpointRequest::json)
            .collect()
    }
}

/// A recipient's endpoint (an app's FHIR server, a municipality's file API) standing in for
/// it in delivery tests; [`start_endpoint`] serves it.
pub type Endpoint = Arc<std::sync::Mutex<EndpointLog>>;

async fn endpoint_receive(
    log: actix_web::web::Data<Endpoint>,
    request: actix_web::HttpRequest,
    body: actix_web::web::Bytes,
) -> actix_web::HttpResponse {
    let mut log = log.lock().expect("endpoint log");
    let status = if log.always_fail || log.fail_next > 0 {
        log.fail_next = log.fail_next.saturating_sub(1);
        503
    } else {
        201
    };
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    log.requests.push(EndpointRequest {
        method: request.method().to_string(),
        path: request.path().to_owned(),
        delivery_id: header("x-musubi-delivery-id"),
        file_id: header("x-musubi-file-id"),
        file_kind: header("x-musubi-file-kind"),
        status,
        body: body.to_vec(),
    });
    actix_web::HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("a status"))
        .finish()
}

/// Serves `endpoint` on 127.0.0.1:0 and answers its base URL (`http://127.0.0.1:port{base}`).
pub fn start_endpoint(endpoint: &Endpoint, base: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let data = actix_web::web::Data::new(endpoint.clone());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .default_service(actix_web::web::to(endpoint_receive))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    format!("http://{addr}{base}")
}
