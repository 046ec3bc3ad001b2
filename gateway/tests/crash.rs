//! Black-box durability: acknowledged writes survive `kill -9` of the real binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(data_dir: &std::path::Path) -> Server {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_musubi"))
            .args(["serve", "--listen", &addr, "--data-dir"])
            .arg(data_dir)
            .env("MUSUBI__LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start musubi");
        let server = Server { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while request(&server.addr, "GET", "/healthz", None).map(|(s, _)| s) != Some(200) {
            assert!(Instant::now() < deadline, "musubi did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 client, so this test needs nothing but the binary.
fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    request_with(addr, method, path, body, "application/fhir+json", "")
}

/// A bearer token of the demo configuration's clinic client (its public demo secret).
fn demo_token(addr: &str) -> String {
    // base64("demo-clinic:demo-clinic-secret")
    let (status, body) = request_with(
        addr,
        "POST",
        "/oauth/token",
        Some("grant_type=client_credentials"),
        "application/x-www-form-urlencoded",
        "Authorization: Basic ZGVtby1jbGluaWM6ZGVtby1jbGluaWMtc2VjcmV0\r\n",
    )
    .expect("token request");
    assert_eq!(status, 200, "{body}");
    let start = body.find("\"access_token\":\"").expect("access_token") + 16;
    let end = start + body[start..].find('"').expect("end of token");
    body[start..end].to_owned()
}

fn authorized(
    addr: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let header = format!("Authorization: Bearer {token}\r\n");
    request_with(addr, method, path, body, "application/fhir+json", &header)
}

fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    content_type: &str,
    extra_headers: &str,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).ok()?;
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut rest = String::new();
    reader.read_to_string(&mut rest).ok()?;
    let body = rest
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let mut server = Server::start(dir.path());
        let token = demo_token(&server.addr);
        for i in 0..50 {
            let body = format!(
                r#"{{"resourceType":"Patient","id":"crash-{i}","name":[{{"text":"山田　太郎{i}"}}]}}"#
            );
            let (status, _) = authorized(
                &server.addr,
                &token,
                "PUT",
                &format!("/fhir/Patient/crash-{i}"),
                Some(&body),
            )
            .unwrap();
            assert_eq!(status, 201);
            ids.push(format!("crash-{i}"));
        }
        // SIGKILL: no shutdown hook runs, nothing is flushed on the way out.
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    }
    let server = Server::start(dir.path());
    let token = demo_token(&server.addr);
    for id in &ids {
        let (status, body) = authorized(
            &server.addr,
            &token,
            "GET",
            &format!("/fhir/Patient/{id}"),
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "{id} lost after kill -9");
        assert!(body.contains("山田　太郎"), "{body}");
    }
}
