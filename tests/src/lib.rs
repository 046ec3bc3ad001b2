//! `TestApp`: a real Musubi server on a free loopback port with its own data directory, and a
//! small FHIR-aware HTTP client for tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway::config::Config;
use serde_json::Value;

pub struct TestApp {
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
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
        adjust(&mut config);
        let store = gateway::open_store(&config).expect("open store");
        let running = gateway::start(config, store.clone())
            .await
            .expect("start server");
        let handle = running.server.handle();
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
        // Idle connections are dropped before the server's keep-alive can close them under us.
        let client = reqwest::Client::builder()
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .build()
            .expect("client");
        TestApp {
            base: format!("http://{}/fhir", running.addr),
            client,
            data_dir: data_dir.to_owned(),
            handle,
            store,
            _temp: None,
        }
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
