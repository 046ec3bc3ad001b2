//! HTTPS and mutual TLS end to end: a CA, server and client certificates made for the test,
//! tokens for a client authenticated by its certificate (RFC 8705 tls_client_auth) and bound to
//! it, and certificates the handshake must refuse.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::Value;

struct Issued {
    cert: Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Issued {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    Issued { cert, key }
}

fn client_cert(issuer: &Issued, common_name: &str, expired: bool) -> Issued {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example Clinic");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if expired {
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now - time::Duration::days(1);
    }
    let cert = params.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
    Issued { cert, key }
}

fn server_cert(issuer: &Issued) -> Issued {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
    Issued { cert, key }
}

fn https_client(ca: &Issued, identity: Option<&Issued>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert.pem().as_bytes()).unwrap());
    if let Some(identity) = identity {
        let pem = format!("{}{}", identity.cert.pem(), identity.key.serialize_pem());
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

struct TlsServer {
    root: String,
    handle: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
}

async fn start(dir: tempfile::TempDir, ca: &Issued, server: &Issued) -> TlsServer {
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("server.pem"), server.cert.pem()).unwrap();
    std::fs::write(path("server-key.pem"), server.key.serialize_pem()).unwrap();
    std::fs::write(path("ca.pem"), ca.cert.pem()).unwrap();
    let mut config = gateway::config::Config::load(None, Vec::<(String, String)>::new()).unwrap();
    config.server.listen = "127.0.0.1:0".into();
    config.storage.data_dir = path("data");
    config.tls = toml::from_str(&format!(
        "enabled = true\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\nclient_certificates = \"optional\"\n",
        path("server.pem"),
        path("server-key.pem"),
        path("ca.pem"),
    ))
    .unwrap();
    let mut client = musubi_tests::system_client(
        "mtls-clinic",
        auth::ClientKind::ClinicEmr,
        &["system/*.cruds"],
    );
    // rcgen writes CN before O; RFC 4514 renders the last RDN first.
    client.credentials =
        toml::from_str("[certificate]\nsubject_dn = \"O=Example Clinic,CN=clinic-a\"\n").unwrap();
    config.clients.push(client);
    let store = gateway::open_store(&config).unwrap();
    let running = gateway::start(config, store).await.unwrap();
    let handle = running.server.handle();
    tokio::spawn(running.server);
    let root = format!("https://127.0.0.1:{}", running.addr.port());
    let probe = https_client(ca, None);
    for attempt in 0.. {
        match probe.get(format!("{root}/healthz")).send().await {
            Ok(r) if r.status().is_success() => break,
            _ if attempt < 200 => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
            other => panic!("the TLS server did not become healthy: {other:?}"),
        }
    }
    TlsServer {
        root,
        handle,
        _dir: dir,
    }
}

async fn certificate_token(client: &reqwest::Client, root: &str) -> reqwest::Response {
    client
        .post(format!("{root}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "mtls-clinic"),
        ])
        .send()
        .await
        .unwrap()
}

fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn mutual_tls_authenticates_clients_and_binds_their_tokens() {
    let authority = ca("Musubi Test CA");
    let server = server_cert(&authority);
    let clinic = client_cert(&authority, "clinic-a", false);
    let tls = start(tempfile::tempdir().unwrap(), &authority, &server).await;

    // The clinic authenticates with its certificate alone and gets a token bound to it.
    let with_cert = https_client(&authority, Some(&clinic));
    let response = certificate_token(&with_cert, &tls.root).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let expected = auth::certificate_thumbprint(clinic.cert.der());
    assert_eq!(claims_of(token)["cnf"]["x5t#S256"], expected.as_str());
    let read = with_cert
        .get(format!("{}/fhir/Patient", tls.root))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);

    // The same token over a connection without the certificate is refused.
    let without_cert = https_client(&authority, None);
    let stolen = without_cert
        .get(format!("{}/fhir/Patient", tls.root))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), 401);
    assert!(
        stolen.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("certificate")
    );

    // A valid certificate of someone else does not authenticate as the clinic.
    let other = client_cert(&authority, "clinic-b", false);
    let response = certificate_token(&https_client(&authority, Some(&other)), &tls.root).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );

    // Without any credential a confidential client gets nothing.
    let response = certificate_token(&without_cert, &tls.root).await;
    assert_eq!(response.status(), 401);

    // Certificates from an unknown CA, and expired ones, fail the handshake.
    let stranger_ca = ca("Somebody Else's CA");
    let stranger = client_cert(&stranger_ca, "clinic-a", false);
    let refused = https_client(&authority, Some(&stranger))
        .get(format!("{}/healthz", tls.root))
        .send()
        .await;
    assert!(refused.is_err(), "unknown CA accepted: {refused:?}");
    let expired = client_cert(&authority, "clinic-a", true);
    let refused = https_client(&authority, Some(&expired))
        .get(format!("{}/healthz", tls.root))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "expired certificate accepted: {refused:?}"
    );

    tls.handle.stop(true).await;
}
