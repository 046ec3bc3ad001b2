//! Access control end to end: tokens from the real endpoints, refused tokens, scopes, a
//! parent's compartment probed through every interaction, revocation, rate limits.

use musubi_tests::{
    PHR_REDIRECT as REDIRECT, Response, TestApp, client_credentials_token, link_child, parent,
    phr_app, system_client, test_secret_hash,
};
use serde_json::{Value, json};

const PHR: &str = "test-phr";

fn phr_client() -> auth::Client {
    phr_app(
        PHR,
        &[
            "patient/*.cruds",
            "launch/patient",
            "fhirUser",
            "offline_access",
        ],
    )
}

/// Two families: parent-a with child-a1, parent-b with child-b1, each child with an
/// Immunization; an Observation of child-a1 points (focus) at child-b1.
async fn two_families() -> TestApp {
    let app = TestApp::spawn_with(|config| {
        config.auth.users = vec![parent("parent-a"), parent("parent-b")];
        config.clients.push(phr_client());
        config.clients.push(system_client(
            "narrow",
            auth::ClientKind::ClinicEmr,
            &["system/Patient.rs"],
        ));
        config.clients.push(system_client(
            "chiyoda",
            auth::ClientKind::Municipality,
            &["system/*.cruds"],
        ));
    })
    .await;
    for (family, child) in [("a", "child-a1"), ("b", "child-b1")] {
        let put = |path: String, body: Value| {
            let app = &app;
            async move {
                let r = app.put(&path, &body).await;
                assert!(r.status == 201 || r.status == 200, "{path}: {}", r.text);
            }
        };
        let patient = json!({"resourceType": "Patient", "id": child, "birthDate": "2024-01-10",
                             "name": [{"text": format!("子 {family}")}]});
        link_child(&app, family, patient).await;
        put(
            format!("Immunization/imm-{family}"),
            json!({"resourceType": "Immunization", "id": format!("imm-{family}"), "status": "completed",
                   "identifier": [{"system": "urn:test", "value": format!("imm-{family}")}],
                   "vaccineCode": {"text": "BCG"}, "patient": {"reference": format!("Patient/{child}")},
                   "occurrenceDateTime": "2024-06-10"}),
        )
        .await;
    }
    let r = app
        .put(
            "Observation/obs-a",
            &json!({"resourceType": "Observation", "id": "obs-a", "status": "final",
                    "code": {"text": "note"}, "subject": {"reference": "Patient/child-a1"},
                    "focus": [{"reference": "Patient/child-b1"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    app
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

struct ParentTokens {
    access: String,
    refresh: String,
    body: Value,
}

/// The authorization-code flow with PKCE, as a PHR app runs it for a parent.
async fn sign_in(app: &TestApp, username: &str) -> ParentTokens {
    sign_in_for(
        app,
        username,
        "patient/*.rs patient/Immunization.c launch/patient fhirUser offline_access",
    )
    .await
}

async fn sign_in_for(app: &TestApp, username: &str, scope: &str) -> ParentTokens {
    let body = musubi_tests::sign_in(app, PHR, username, scope).await;
    ParentTokens {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body,
    }
}

async fn call(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Response {
    let mut request = app
        .anonymous()
        .request(
            method,
            if path.starts_with("http") {
                path.to_owned()
            } else {
                app.url(path)
            },
        )
        .bearer_auth(token)
        .header("accept", "application/fhir+json");
    if let Some(body) = body {
        request = request
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
    }
    app.send(request).await
}

async fn get_as(app: &TestApp, token: &str, path: &str) -> Response {
    call(app, token, reqwest::Method::GET, path, None).await
}

fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| {
                    let r = &e["resource"];
                    Some(format!(
                        "{}/{}",
                        r["resourceType"].as_str()?,
                        r["id"].as_str()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn every_data_route_needs_a_token_but_discovery_is_public() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    for path in [
        "/fhir/Patient",
        "/fhir/Patient/x",
        "/fhir/_history",
        "/municipal/v1/records?layout=musubi-vaccination&municipality=131016",
    ] {
        let r = app.send(anonymous.get(format!("{}{path}", app.root))).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"musubi\"")
        );
        assert_eq!(r.json()["issue"][0]["code"], "login");
    }
    let r = app
        .send(anonymous.post(format!("{}/fhir", app.root)).body("{}"))
        .await;
    assert_eq!(r.status, 401);
    for path in [
        "/fhir/metadata",
        "/fhir/.well-known/smart-configuration",
        "/.well-known/smart-configuration",
        "/.well-known/openid-configuration",
        "/oauth/jwks",
    ] {
        let r = app.send(anonymous.get(format!("{}{path}", app.root))).await;
        assert_eq!(r.status, 200, "{path}");
    }
    let smart = app
        .send(anonymous.get(format!("{}/.well-known/smart-configuration", app.root)))
        .await
        .json();
    assert_eq!(smart["token_endpoint"], format!("{}/oauth/token", app.root));
    assert_eq!(smart["code_challenge_methods_supported"], json!(["S256"]));
    let patients = app.get("Patient").await;
    assert_eq!(
        patients.header("cache-control"),
        Some("no-store"),
        "health data is never cached"
    );
    assert_eq!(patients.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(patients.header("x-content-type-options"), Some("nosniff"));
    let metadata = app
        .send(anonymous.get(format!("{}/fhir/metadata", app.root)))
        .await
        .json();
    assert_eq!(
        metadata["rest"][0]["security"]["service"][0]["coding"][0]["code"],
        "SMART-on-FHIR"
    );
}

#[tokio::test]
async fn forged_expired_and_misdirected_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let pem = std::fs::read_to_string(app.data_dir.join("auth/signing-key.pem")).unwrap();
    let ring = auth::KeyRing::from_pem(&pem, &[]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let claims = |issuer: &str, audience: &str, at: time::OffsetDateTime| {
        auth::AccessClaims::new(
            issuer,
            audience,
            "musubi-tests",
            "musubi-tests",
            auth::ScopeSet::parse("system/*.cruds").unwrap(),
            at,
            300,
        )
    };
    let good = auth::issue(&ring, &claims(&app.root, &app.base, now)).unwrap();
    assert_eq!(
        get_as(&app, &good, "Patient").await.status,
        200,
        "a token signed by the server's key works"
    );
    let other_key = auth::KeyRing::generate();
    let mut tampered = good.clone().into_bytes();
    let middle = good.find('.').unwrap() + 5;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let none_token = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"at+jwt"}"#),
        good.split('.').nth(1).unwrap()
    );
    let cases = [
        (
            "expired",
            auth::issue(
                &ring,
                &claims(&app.root, &app.base, now - time::Duration::hours(1)),
            )
            .unwrap(),
            "expired",
        ),
        (
            "wrong audience",
            auth::issue(
                &ring,
                &claims(&app.root, "https://elsewhere.example/fhir", now),
            )
            .unwrap(),
            "audience",
        ),
        (
            "wrong issuer",
            auth::issue(&ring, &claims("https://evil.example", &app.base, now)).unwrap(),
            "issuer",
        ),
        ("tampered", String::from_utf8(tampered).unwrap(), ""),
        (
            "foreign key",
            auth::issue(&other_key, &claims(&app.root, &app.base, now)).unwrap(),
            "kid",
        ),
        ("alg none", none_token, "algorithm"),
    ];
    for (name, token, reason) in cases {
        let r = get_as(&app, &token, "Patient").await;
        assert_eq!(r.status, 401, "{name}: {}", r.text);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert!(challenge.contains(reason), "{name}: {challenge}");
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn scopes_are_downscoped_and_enforced_per_interaction() {
    let app = two_families().await;
    let http = app.anonymous();
    // Asking for more than registered yields only the registered part.
    let wide = http
        .post(format!("{}/oauth/token", app.root))
        .basic_auth("narrow", Some(musubi_tests::TEST_CLIENT_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.cruds"),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = wide.json().await.unwrap();
    assert_eq!(body["scope"], "system/Patient.rs");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(get_as(&app, token, "Patient/child-a1").await.status, 200);
    let refused = call(
        &app,
        token,
        reqwest::Method::POST,
        "Patient",
        Some(&json!({"resourceType": "Patient"})),
    )
    .await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Bearer realm=\"musubi\", error=\"insufficient_scope\", scope=\"system/Patient.c\"")
    );
    assert!(
        refused.json()["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("system/Patient.c")
    );
    assert_eq!(get_as(&app, token, "Immunization").await.status, 403);
    // A batch decides each entry on its own.
    let batch = call(
        &app,
        token,
        reqwest::Method::POST,
        "",
        Some(
            &json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/child-a1"}},
        {"request": {"method": "GET", "url": "Immunization/imm-a"}}]}),
        ),
    )
    .await
    .json();
    assert_eq!(batch["entry"][0]["response"]["status"], "200 OK");
    assert!(
        batch["entry"][1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("403")
    );
    // Nothing the client may have at all: invalid_scope.
    let none = client_credentials_token(
        &http,
        &app.root,
        "narrow",
        musubi_tests::TEST_CLIENT_SECRET,
        Some("system/Immunization.rs"),
    )
    .await;
    assert!(none.unwrap_err().contains("invalid_scope"));
    // Wrong secret, unknown client.
    let wrong = client_credentials_token(&http, &app.root, "narrow", "not-the-secret", None).await;
    assert!(wrong.unwrap_err().contains("invalid_client"));
    let unknown =
        client_credentials_token(&http, &app.root, "nobody", "whatever-secret", None).await;
    assert!(unknown.unwrap_err().contains("invalid_client"));
    assert!(!test_secret_hash().is_empty());
}

#[tokio::test]
async fn a_parent_reaches_only_their_own_children_through_every_interaction() {
    let app = two_families().await;
    let tokens = sign_in_for(&app, "parent-a", "patient/*.cruds launch/patient fhirUser").await;
    assert_eq!(tokens.body["patient"], "child-a1");
    assert_eq!(
        tokens.body["scope"],
        "patient/*.cruds launch/patient fhirUser"
    );
    let t = tokens.access.as_str();

    // Their own child's records.
    assert_eq!(get_as(&app, t, "Patient/child-a1").await.status, 200);
    assert_eq!(get_as(&app, t, "Immunization/imm-a").await.status, 200);
    let own = get_as(&app, t, "Immunization").await.json();
    assert_eq!(own["total"], 1);
    assert_eq!(entry_ids(&own), vec!["Immunization/imm-a"]);

    // Another family's child: not through read, vread, search, totals, includes, history…
    for path in [
        "Patient/child-b1",
        "Immunization/imm-b",
        "Immunization/imm-b/_history/1",
        "Immunization/imm-b/_history",
        "RelatedPerson/rp-b",
        "Patient/child-b1/$immunization-schedule",
    ] {
        let r = get_as(&app, t, path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
    }
    let searched = get_as(&app, t, "Immunization?patient=Patient/child-b1")
        .await
        .json();
    assert_eq!(searched["total"], 0);
    let counted = get_as(&app, t, "Patient?_summary=count").await.json();
    assert_eq!(counted["total"], 1, "the total counts only their own child");
    let included = get_as(
        &app,
        t,
        "Observation?_include=Observation:focus&_include=Observation:subject",
    )
    .await
    .json();
    let ids = entry_ids(&included);
    assert!(
        ids.contains(&"Observation/obs-a".to_owned())
            && ids.contains(&"Patient/child-a1".to_owned()),
        "{ids:?}"
    );
    assert!(
        !ids.contains(&"Patient/child-b1".to_owned()),
        "an _include leaked {ids:?}"
    );
    let revincluded = get_as(
        &app,
        t,
        "Patient?_revinclude=Immunization:patient&_revinclude=RelatedPerson:patient",
    )
    .await
    .json();
    let ids = entry_ids(&revincluded);
    assert!(
        ids.iter()
            .all(|id| id.ends_with("-a1") || id.ends_with("-a")),
        "{ids:?}"
    );
    for path in ["Immunization/_history", "_history"] {
        assert_eq!(get_as(&app, t, path).await.status, 403, "{path}");
    }

    // …nor through batch entries, transactions or writes.
    let batch = call(
        &app,
        t,
        reqwest::Method::POST,
        "",
        Some(
            &json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/child-b1"}},
        {"request": {"method": "GET", "url": "Immunization?patient=Patient/child-b1"}},
        {"request": {"method": "GET", "url": "Patient/child-a1"}}]}),
        ),
    )
    .await
    .json();
    assert!(
        batch["entry"][0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("404"),
        "{batch}"
    );
    assert_eq!(batch["entry"][1]["resource"]["total"], 0);
    assert_eq!(batch["entry"][2]["response"]["status"], "200 OK");
    let foreign_imm = json!({"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "BCG"},
        "patient": {"reference": "Patient/child-b1"}, "occurrenceDateTime": "2024-07-01"});
    let r = call(
        &app,
        t,
        reqwest::Method::POST,
        "Immunization",
        Some(&foreign_imm),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let tx = call(
        &app,
        t,
        reqwest::Method::POST,
        "",
        Some(
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": foreign_imm, "request": {"method": "POST", "url": "Immunization"}}]}),
        ),
    )
    .await;
    assert_eq!(tx.status, 403, "{}", tx.text);
    let mut overwrite = get_as(&app, &app.token, "Immunization/imm-b").await.json();
    overwrite["patient"]["reference"] = json!("Patient/child-a1");
    let r = call(
        &app,
        t,
        reqwest::Method::PUT,
        "Immunization/imm-b",
        Some(&overwrite),
    )
    .await;
    assert_eq!(
        r.status, 404,
        "moving another family's record into their own: {}",
        r.text
    );
    assert_eq!(
        call(&app, t, reqwest::Method::DELETE, "Immunization/imm-b", None)
            .await
            .status,
        404
    );
    let tx = call(
        &app,
        t,
        reqwest::Method::POST,
        "",
        Some(
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Immunization/imm-b"}}]}),
        ),
    )
    .await;
    assert_eq!(tx.status, 404, "{}", tx.text);
    // A conditional create matching another family's record must not return it.
    let own_imm = json!({"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "BCG"},
        "patient": {"reference": "Patient/child-a1"}, "occurrenceDateTime": "2024-07-01"});
    let conditional = app
        .send(
            app.anonymous()
                .post(app.url("Immunization"))
                .bearer_auth(t)
                .header("content-type", "application/fhir+json")
                .header("if-none-exist", "identifier=urn:test|imm-b")
                .body(own_imm.to_string()),
        )
        .await;
    assert_eq!(conditional.status, 201, "{}", conditional.text);
    assert_eq!(
        conditional.json()["patient"]["reference"],
        "Patient/child-a1"
    );
    // The other family's record is untouched.
    let b = get_as(&app, &app.token, "Immunization/imm-b").await.json();
    assert_eq!(b["patient"]["reference"], "Patient/child-b1");
    assert_eq!(b["meta"]["versionId"], "1");

    // Unlinking the child takes effect on the next request.
    let mut link = get_as(&app, &app.token, "RelatedPerson/rp-a").await.json();
    link["active"] = json!(false);
    assert_eq!(app.put("RelatedPerson/rp-a", &link).await.status, 200);
    assert_eq!(get_as(&app, t, "Patient/child-a1").await.status, 404);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_revocation_is_immediate() {
    let app = two_families().await;
    let http = app.anonymous();
    let tokens = sign_in(&app, "parent-a").await;
    let refresh = |token: String| {
        let http = http.clone();
        let root = app.root.clone();
        async move {
            http.post(format!("{root}/oauth/token"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", PHR),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    // A public client may leave its client_id out of a refresh (SMART App Launch).
    let bare = http
        .post(format!("{}/oauth/token", app.root))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens.refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 200);
    let bare: Value = bare.json().await.unwrap();
    let tokens = ParentTokens {
        refresh: bare["refresh_token"].as_str().unwrap().to_owned(),
        ..tokens
    };
    let first = refresh(tokens.refresh.clone()).await;
    assert_eq!(first.status(), 200);
    let rotated: Value = first.json().await.unwrap();
    let next_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(next_refresh, tokens.refresh);
    assert_eq!(rotated["patient"], "child-a1");
    // Presenting the spent token again revokes the whole family, the new one included.
    let reused = refresh(tokens.refresh.clone()).await;
    assert_eq!(reused.status(), 400);
    assert_eq!(
        reused.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    assert_eq!(refresh(next_refresh).await.status(), 400);

    // Revoking an access token stops it at once.
    let fresh = sign_in(&app, "parent-a").await;
    assert_eq!(
        get_as(&app, &fresh.access, "Patient/child-a1").await.status,
        200
    );
    let revoked = http
        .post(format!("{}/oauth/revoke", app.root))
        .form(&[("token", fresh.access.as_str()), ("client_id", PHR)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let r = get_as(&app, &fresh.access, "Patient/child-a1").await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().contains("revoked"));
    // And a refresh token's revocation ends its family.
    let revoked = http
        .post(format!("{}/oauth/revoke", app.root))
        .form(&[("token", fresh.refresh.as_str()), ("client_id", PHR)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(refresh(fresh.refresh).await.status(), 400);

    // Introspection needs a confidential client and tells active from inactive.
    let live = sign_in(&app, "parent-a").await;
    let introspected: Value = http
        .post(format!("{}/oauth/introspect", app.root))
        .basic_auth(
            musubi_tests::TEST_CLIENT_ID,
            Some(musubi_tests::TEST_CLIENT_SECRET),
        )
        .form(&[("token", live.access.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["patient"], "child-a1");
    let inactive: Value = http
        .post(format!("{}/oauth/introspect", app.root))
        .basic_auth(
            musubi_tests::TEST_CLIENT_ID,
            Some(musubi_tests::TEST_CLIENT_SECRET),
        )
        .form(&[("token", fresh.access.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inactive, json!({"active": false}));
}

#[tokio::test]
async fn sign_in_refuses_wrong_passwords_unknown_redirects_and_plain_pkce() {
    let app = two_families().await;
    let http = no_redirects();
    let challenge =
        auth::pkce::challenge_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-a-longer-verifier");
    let base = |redirect: &'static str, method: &'static str| {
        vec![
            ("response_type", "code".to_owned()),
            ("client_id", PHR.to_owned()),
            ("redirect_uri", redirect.to_owned()),
            ("scope", "patient/*.rs launch/patient".to_owned()),
            ("state", "xyz".to_owned()),
            ("code_challenge", challenge.clone()),
            ("code_challenge_method", method.to_owned()),
        ]
    };
    // An unregistered redirect URI is never redirected to.
    let r = http
        .get(format!("{}/oauth/authorize", app.root))
        .query(&base("https://attacker.example/cb", "S256"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // plain PKCE goes back to the app as an error.
    let r = http
        .get(format!("{}/oauth/authorize", app.root))
        .query(&base(REDIRECT, "plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=invalid_request")
    );
    // A wrong password shows the page again.
    let mut form = base(REDIRECT, "S256");
    form.push(("username", "parent-a".into()));
    form.push(("password", "wrong-password-here".into()));
    let r = http
        .post(format!("{}/oauth/authorize", app.root))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A code cannot be redeemed with the wrong verifier.
    let tokens_ok = sign_in(&app, "parent-b").await;
    assert_eq!(tokens_ok.body["patient"], "child-b1");
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_gets_429_with_retry_after() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limits.per_client_per_second = 1;
        config.rate_limits.per_client_burst = 5;
    })
    .await;
    // The token request took one request from the bucket of five.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(app.get("Patient").await);
    }
    assert!(statuses[..4].iter().all(|r| r.status == 200));
    let throttled = statuses.last().unwrap();
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.header("retry-after"), Some("1"));
    assert_eq!(throttled.json()["issue"][0]["code"], "throttled");
}

#[tokio::test]
async fn the_municipal_adapter_needs_the_municipality_s_own_client() {
    let app = two_families().await;
    let token = client_credentials_token(
        &app.anonymous(),
        &app.root,
        "chiyoda",
        musubi_tests::TEST_CLIENT_SECRET,
        None,
    )
    .await
    .unwrap();
    let own = get_as(
        &app,
        &token,
        &format!(
            "{}/municipal/v1/records?layout=musubi-vaccination&municipality=131016",
            app.root
        ),
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.text);
    let other = get_as(
        &app,
        &token,
        &format!(
            "{}/municipal/v1/records?layout=musubi-vaccination&municipality=131024",
            app.root
        ),
    )
    .await;
    assert_eq!(other.status, 403, "{}", other.text);
    let parent = sign_in(&app, "parent-a").await;
    let r = get_as(
        &app,
        &parent.access,
        &format!(
            "{}/municipal/v1/records?layout=musubi-vaccination&municipality=131016",
            app.root
        ),
    )
    .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn tokens_of_a_trusted_identity_provider_are_accepted_within_musubi_s_rules() {
    const IDP: &str = "https://idp.city.example.jp";
    const AUDIENCE: &str = "https://musubi.example.org/fhir";
    let idp_keys = auth::KeyRing::generate();
    let jwks = idp_keys.jwks();
    let app = TestApp::spawn_with(|config| {
        config.auth.users = vec![parent("parent-a"), parent("parent-b")];
        config.clients.push(phr_client());
        config.auth.trusted_issuers = vec![auth::TrustedIssuer {
            issuer: IDP.into(),
            audience: AUDIENCE.into(),
            jwks,
            algorithms: vec!["ES256".into()],
        }];
    })
    .await;
    // The same two families as elsewhere, seeded through the system client.
    for (family, child) in [("a", "child-a1"), ("b", "child-b1")] {
        link_child(
            &app,
            family,
            json!({"resourceType": "Patient", "id": child}),
        )
        .await;
    }
    let token = |client: &str, scope: &str, audience: &str| {
        let mut claims = auth::AccessClaims::new(
            IDP,
            audience,
            "parent-a",
            client,
            auth::ScopeSet::parse(scope).unwrap(),
            time::OffsetDateTime::now_utc(),
            300,
        );
        claims.patient = Some("child-a1".into());
        claims.fhir_user = Some("RelatedPerson/rp-a".into());
        auth::issue(&idp_keys, &claims).unwrap()
    };
    let parent = token(PHR, "patient/*.rs launch/patient", AUDIENCE);
    assert_eq!(get_as(&app, &parent, "Patient/child-a1").await.status, 200);
    assert_eq!(get_as(&app, &parent, "Patient/child-b1").await.status, 404);
    // Scopes beyond the client's registration are dropped: the provider cannot widen them.
    let wide = token(PHR, "system/*.cruds", AUDIENCE);
    assert_eq!(get_as(&app, &wide, "Patient/child-b1").await.status, 403);
    // A client Musubi does not know, or a token for another audience, is refused.
    let stranger = token("unknown-app", "patient/*.rs", AUDIENCE);
    assert_eq!(
        get_as(&app, &stranger, "Patient/child-a1").await.status,
        401
    );
    let elsewhere = token(PHR, "patient/*.rs", "https://elsewhere.example/fhir");
    assert_eq!(
        get_as(&app, &elsewhere, "Patient/child-a1").await.status,
        401
    );
}

/// The routing operator routes take an operator client only: the test clinic holds every scope
/// (`system/*.cruds`) and is still refused. An operator reads no patient data through /fhir
/// whatever its scopes, even with consent enforcement off, since the refusal is the access
/// check's and not a consent decision.
#[tokio::test]
async fn only_an_operator_runs_the_operator_routes_and_it_reads_no_patient_data() {
    let app = TestApp::spawn_with(|config| {
        config.consent.enforce = false;
        config.clients.push(system_client(
            "wide-operator",
            auth::ClientKind::Operator,
            &["system/*.cruds"],
        ));
    })
    .await;
    let child = json!({"resourceType": "Patient", "id": "child-op", "birthDate": "2024-01-10"});
    assert_eq!(app.put("Patient/child-op", &child).await.status, 201);
    let immunization = json!({"resourceType": "Immunization", "id": "imm-op", "status": "completed",
        "identifier": [{"system": "urn:test", "value": "imm-op"}], "vaccineCode": {"text": "BCG"}, "patient": {"reference": "Patient/child-op"},
        "occurrenceDateTime": "2024-06-10"});
    assert_eq!(
        app.put("Immunization/imm-op", &immunization).await.status,
        201
    );
    let organization = json!({"resourceType": "Organization", "id": "org-op", "name": "区役所"});
    assert_eq!(
        app.put("Organization/org-op", &organization).await.status,
        201
    );

    let deliveries = format!("{}/routing/v1/deliveries", app.root);
    let month_close = format!("{}/routing/v1/month-close?month=2025-06", app.root);
    for r in [
        app.send(app.client.get(&deliveries)).await,
        app.send(app.client.post(&month_close)).await,
    ] {
        assert_eq!(r.status, 403, "{}", r.text);
        let outcome = r.json();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(
            diagnostics.contains("operator clients (kind = \"operator\")")
                && diagnostics.contains("clinic-emr"),
            "{diagnostics}"
        );
    }
    let r = app.send(app.operator().await.get(&deliveries)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["resourceType"], "Bundle");

    let operator = client_credentials_token(
        &app.anonymous(),
        &app.root,
        "wide-operator",
        musubi_tests::TEST_CLIENT_SECRET,
        None,
    )
    .await
    .unwrap();
    for path in [
        "Immunization/imm-op",
        "Immunization?patient=Patient/child-op",
        "Immunization/imm-op/_history",
        "Patient/child-op",
        "Task?_summary=count",
        "_history",
    ] {
        let r = get_as(&app, &operator, path).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text);
    }
    let r = call(
        &app,
        &operator,
        reqwest::Method::PUT,
        "Immunization/imm-op",
        Some(&immunization),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    // Data about no patient stays readable.
    assert_eq!(
        get_as(&app, &operator, "Organization/org-op").await.status,
        200
    );
}
