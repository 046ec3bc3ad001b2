//! My Number Portal through the gateway: a parent's PHR app starts the child's authorisation,
//! the portal (the local mock, over TLS with its own CA) redirects to the gateway's callback,
//! and pulls store the child's vaccinations and check-ups, de-duplicated against the clinic's
//! records, with Provenance naming the portal; consent, compartment and portal errors.

use std::path::PathBuf;

use gateway::config::MynaPortalConfig;
use musubi_tests::{Response, TestApp, link_child, match_ids, parent, phr_app};
use portal_mock::{Category, ClientCredential, Fault, MockPortal, Scenario};
use serde_json::{Value, json};

const VACCINE_TYPE: &str = "https://musubi.example.org/fhir/CodeSystem/vaccine-type";
const DATA_SOURCE: &str = "https://musubi.example.org/fhir/IdSystem/data-source";
const PHR: &str = "test-phr";
const PORTAL_CLIENT: &str = "musubi-portal-test";
/// The gateway's callback as registered with the portal. The test plays the browser: it reads
/// the portal's redirect and sends its query to the test server's callback.
const PORTAL_REDIRECT: &str = "https://musubi.example.org/phr/v1/myna-portal/callback";
const PERSON: &str = "card-holder-a1";
const SCOPES: &str = "patient/*.rs patient/Immunization.cu patient/Observation.cu \
    patient/DiagnosticReport.cu launch/patient fhirUser offline_access";

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

/// The mock portal, the gateway pointed at it, and two families: parent-a with child-a1 and
/// parent-b with child-b1.
struct Setup {
    mock: MockPortal,
    app: TestApp,
    _files: tempfile::TempDir,
}

async fn setup() -> Setup {
    // The gateway's client key (P-256, PKCS#8 PEM), registered with the portal by its public key.
    let key = rcgen::KeyPair::generate().expect("P-256 key");
    let mock = MockPortal::start(Scenario::new(
        PORTAL_CLIENT,
        ClientCredential::PublicKey(key.public_key_raw().to_vec()),
        PORTAL_REDIRECT,
    ))
    .await;
    let files = tempfile::tempdir().expect("temp dir");
    let key_file = files.path().join("portal-client-key.pem");
    std::fs::write(&key_file, key.serialize_pem()).expect("write key");
    let ca_file = files.path().join("portal-ca.pem");
    std::fs::write(&ca_file, mock.ca_pem()).expect("write CA");
    let portal = portal_config(&mock, key_file, ca_file);
    let app = TestApp::spawn_with(|config| {
        config.auth.users = vec![parent("parent-a"), parent("parent-b")];
        config.clients.push(phr_client());
        config.portal = portal;
    })
    .await;
    for (family, child) in [("a", "child-a1"), ("b", "child-b1")] {
        let patient = json!({"resourceType": "Patient", "id": child, "birthDate": "2025-03-01",
                             "gender": "female", "name": [{"text": format!("結 {family}")}]});
        link_child(&app, family, patient).await;
    }
    Setup {
        mock,
        app,
        _files: files,
    }
}

fn portal_config(mock: &MockPortal, key_file: PathBuf, ca_file: PathBuf) -> MynaPortalConfig {
    MynaPortalConfig {
        enabled: true,
        base_url: mock.base_url().to_owned(),
        client_id: PORTAL_CLIENT.into(),
        client_key_file: Some(key_file),
        redirect_uri: PORTAL_REDIRECT.into(),
        // Only the mock's CA is trusted.
        trust_public_roots: false,
        extra_ca_files: vec![ca_file],
        // Short waits; generous enough for a loaded 2-core machine.
        request_timeout_ms: 2000,
        max_attempts: 2,
        retry_base_delay_ms: 10,
        retry_max_delay_ms: 40,
        max_retry_after_secs: 5,
        ..MynaPortalConfig::default()
    }
}

fn query_value(location: &str, name: &str) -> String {
    let query = location.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .unwrap_or_else(|| panic!("{name} missing in {location}"))
}

/// A parent's access token, signed in through the PHR app.
async fn sign_in(app: &TestApp, username: &str) -> String {
    musubi_tests::sign_in(app, PHR, username, SCOPES).await["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

async fn phr_post(app: &TestApp, token: Option<&str>, path: &str) -> Response {
    let mut request = app.anonymous().post(format!("{}/phr/v1{path}", app.root));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    app.send(request).await
}

/// The person at the portal: open the authorisation URL (the card read is the mock's header)
/// and return the query of the redirect back to the gateway's callback.
async fn consent_at_portal(mock: &MockPortal, url: &str) -> String {
    let browser = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(mock.ca_pem().as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = browser
        .get(url)
        .header("x-mock-person", PERSON)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 302, "{:?}", resp.text().await);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(PORTAL_REDIRECT), "{location}");
    location.split_once('?').unwrap().1.to_owned()
}

async fn callback(app: &TestApp, query: &str) -> Response {
    app.send(
        app.anonymous()
            .get(format!("{}/phr/v1/myna-portal/callback?{query}", app.root)),
    )
    .await
}

/// The whole authorisation for child-a1, as the parent's app and browser run it.
async fn authorise(s: &Setup, token: &str) {
    let start = phr_post(
        &s.app,
        Some(token),
        "/children/child-a1/myna-portal/authorisation",
    )
    .await;
    assert_eq!(start.status, 200, "{}", start.text);
    let url = start.json()["authorisationUrl"]
        .as_str()
        .expect("authorisationUrl")
        .to_owned();
    assert!(url.starts_with(s.mock.base_url()), "{url}");
    let query = consent_at_portal(&s.mock, &url).await;
    let done = callback(&s.app, &query).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let done = done.json();
    assert_eq!(done["status"], "authorised");
    assert_eq!(done["patientId"], "child-a1");
    // The state is single-use.
    let again = callback(&s.app, &query).await;
    assert_eq!(again.status, 400, "{}", again.text);
}

fn vaccination(name: &str, date: &str, lot: Option<&str>, id: &str) -> Value {
    let mut v = json!({
        "recordId": id, "vaccineName": name, "vaccinationDate": date, "doseNumber": "1",
        "medicalInstitution": {"name": "結びこどもクリニック", "code": "1312345678"},
        "municipalityCode": "131016"
    });
    if let Some(lot) = lot {
        v["lotNumber"] = json!(lot);
    }
    v
}

/// The clinic's own record of the MR dose, with the lot written differently.
fn clinic_mr() -> Value {
    json!({
        "resourceType": "Immunization", "id": "clinic-mr", "status": "completed",
        "vaccineCode": {"coding": [{"system": VACCINE_TYPE, "code": "mr"}]},
        "patient": {"reference": "Patient/child-a1"},
        "occurrenceDateTime": "2026-03-05T10:30:00+09:00",
        "primarySource": true,
        "lotNumber": "y-123"
    })
}

async fn immunization_ids(app: &TestApp, patient: &str) -> Vec<String> {
    let r = app
        .get(&format!(
            "Immunization?patient=Patient/{patient}&_count=100"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut ids = match_ids(&r.json());
    ids.sort();
    ids
}

async fn provenance_of(app: &TestApp, target: &str) -> Vec<Value> {
    let r = app
        .get(&format!("Provenance?target={target}&_count=100"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"]
        .as_array()
        .map(|e| e.iter().map(|x| x["resource"].clone()).collect())
        .unwrap_or_default()
}

fn stored_of(pull: &Value, resource_type: &str) -> Vec<String> {
    pull["stored"]
        .as_array()
        .expect("stored")
        .iter()
        .filter(|r| r["resourceType"] == resource_type)
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_parent_pulls_the_childs_vaccinations_from_my_number_portal_without_duplicates() {
    let s = setup().await;
    let app = &s.app;
    let r = app.put("Immunization/clinic-mr", &clinic_mr()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    s.mock.seed(
        PERSON,
        Category::Vaccinations,
        vec![
            vaccination("BCG", "20250801", Some("B1"), "R-1"),
            vaccination("麻しん風しん混合", "20260305", Some("Y123"), "R-2"),
            // An optional vaccine the tables do not place: skipped, not an error.
            vaccination("おたふくかぜ", "20260310", None, "R-3"),
        ],
    );
    s.mock.seed(
        PERSON,
        Category::ChildCheckups,
        vec![json!({
            "recordId": "C-1", "checkupName": "1歳6か月児健診", "checkupDate": "20260905",
            "results": [
                {"itemName": "身長", "value": "80.5", "unit": "cm"},
                {"itemName": "体重", "value": "10.40", "unit": "kg"}
            ]
        })],
    );
    let token = sign_in(app, "parent-a").await;

    // Before any authorisation there is nothing to pull with.
    let early = phr_post(app, Some(&token), "/children/child-a1/myna-portal/pull").await;
    assert_eq!(early.status, 403, "{}", early.text);
    assert!(early.text.contains("authorise again"), "{}", early.text);

    authorise(&s, &token).await;
    let pull = phr_post(app, Some(&token), "/children/child-a1/myna-portal/pull").await;
    assert_eq!(pull.status, 200, "{}", pull.text);
    let first = pull.json();
    assert_eq!(
        (
            &first["new"],
            &first["matched"],
            &first["conflicts"],
            &first["skipped"]
        ),
        (&json!(1), &json!(1), &json!(0), &json!(1)),
        "{first:#}"
    );
    assert_eq!(
        first["checkups"],
        json!({"new": 1, "held": 0, "skipped": 0})
    );
    assert_eq!(
        first["issues"][0]["expression"], "/vaccinations/0/vaccineName",
        "the skipped record's pointer: {first:#}"
    );

    // The BCG dose is new; the MR dose is the clinic's record, now with the portal as a source.
    let new_ids = stored_of(&first, "Immunization");
    assert_eq!(new_ids.len(), 1, "{first:#}");
    let mut expected = vec!["clinic-mr".to_owned(), new_ids[0].clone()];
    expected.sort();
    assert_eq!(immunization_ids(app, "child-a1").await, expected);
    let bcg = app
        .get(&format!("Immunization/{}", new_ids[0]))
        .await
        .json();
    assert_eq!(bcg["vaccineCode"]["coding"][0]["code"], "bcg");
    assert_eq!(bcg["lotNumber"], "B1");
    assert_eq!(bcg["primarySource"], false);
    for target in [
        format!("Immunization/{}", new_ids[0]),
        "Immunization/clinic-mr".to_owned(),
    ] {
        let provenance = provenance_of(app, &target).await;
        assert_eq!(provenance.len(), 1, "{target}: {provenance:#?}");
        let who = &provenance[0]["agent"][0]["who"]["identifier"];
        assert_eq!(
            (who["system"].as_str(), who["value"].as_str()),
            (Some(DATA_SOURCE), Some("myna-portal")),
            "{target}"
        );
    }
    // The check-up: one DiagnosticReport with its two Observations.
    let report_ids = stored_of(&first, "DiagnosticReport");
    assert_eq!(report_ids.len(), 1);
    assert_eq!(stored_of(&first, "Observation").len(), 2);
    // The parent's app reads the history back with both doses, the clinic's one once.
    let history = app
        .send(
            app.anonymous()
                .get(format!(
                    "{}/phr/v1/children/child-a1/vaccinations",
                    app.root
                ))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(history.status, 200, "{}", history.text);
    assert_eq!(
        history.json()["vaccinations"].as_array().map(Vec::len),
        Some(2),
        "{}",
        history.text
    );

    // A second pull finds everything held and writes nothing.
    let second = phr_post(app, Some(&token), "/children/child-a1/myna-portal/pull").await;
    assert_eq!(second.status, 200, "{}", second.text);
    let second = second.json();
    assert_eq!(
        (&second["new"], &second["matched"], &second["stored"]),
        (&json!(0), &json!(2), &json!([])),
        "{second:#}"
    );
    assert_eq!(second["checkups"]["held"], 1);
    assert_eq!(immunization_ids(app, "child-a1").await, expected);
    let version = app
        .get(&format!("Immunization/{}", new_ids[0]))
        .await
        .json()["meta"]["versionId"]
        .clone();
    assert_eq!(version, "1");
}

#[tokio::test]
async fn portal_errors_become_answers_and_an_ended_consent_stores_nothing() {
    let s = setup().await;
    let app = &s.app;
    let token = sign_in(app, "parent-a").await;
    authorise(&s, &token).await;
    let pull_path = "/children/child-a1/myna-portal/pull";

    // Rate-limited beyond what one request waits for: 503 with the portal's Retry-After.
    s.mock.push_fault(Fault::RateLimited(Some("120".into())));
    let limited = phr_post(app, Some(&token), pull_path).await;
    assert_eq!(limited.status, 503, "{}", limited.text);
    assert_eq!(limited.header("retry-after"), Some("120"));

    // Server errors on every attempt: 502.
    s.mock.push_fault(Fault::Status(500));
    s.mock.push_fault(Fault::Status(503));
    let upstream = phr_post(app, Some(&token), pull_path).await;
    assert_eq!(upstream.status, 502, "{}", upstream.text);

    // No answer in time on every attempt: 504.
    for _ in 0..2 {
        s.mock
            .push_fault(Fault::Slow(std::time::Duration::from_millis(2500)));
    }
    let slow = phr_post(app, Some(&token), pull_path).await;
    assert_eq!(slow.status, 504, "{}", slow.text);

    // The consent ends at the portal: 403 telling the app to authorise again, nothing stored.
    s.mock.seed(
        PERSON,
        Category::Vaccinations,
        vec![vaccination("BCG", "20250801", Some("B1"), "R-1")],
    );
    s.mock.expire_consent(PERSON);
    let expired = phr_post(app, Some(&token), pull_path).await;
    assert_eq!(expired.status, 403, "{}", expired.text);
    assert!(
        expired.text.contains("consent") && expired.text.contains("authorise again"),
        "{}",
        expired.text
    );
    assert!(immunization_ids(app, "child-a1").await.is_empty());
    // The session now knows: the next pull is refused without asking the portal.
    let before = s.mock.counts();
    let again = phr_post(app, Some(&token), pull_path).await;
    assert_eq!(again.status, 403, "{}", again.text);
    assert_eq!(s.mock.counts(), before);

    // A new authorisation is a new consent: the pull works again.
    authorise(&s, &token).await;
    let renewed = phr_post(app, Some(&token), pull_path).await;
    assert_eq!(renewed.status, 200, "{}", renewed.text);
    assert_eq!(renewed.json()["new"], 1);
}

#[tokio::test]
async fn only_the_childs_own_parent_may_start_or_pull() {
    let s = setup().await;
    let app = &s.app;
    let token = sign_in(app, "parent-a").await;
    for path in [
        "/children/child-a1/myna-portal/authorisation",
        "/children/child-a1/myna-portal/pull",
    ] {
        let anonymous = phr_post(app, None, path).await;
        assert_eq!(anonymous.status, 401, "{path}: {}", anonymous.text);
    }
    for path in [
        "/children/child-b1/myna-portal/authorisation",
        "/children/child-b1/myna-portal/pull",
        "/children/no-such-child/myna-portal/pull",
    ] {
        let other = phr_post(app, Some(&token), path).await;
        assert_eq!(other.status, 404, "{path}: {}", other.text);
    }
    // A callback with a state no one started is refused.
    let forged = callback(app, "code=x&state=not-a-pending-state").await;
    assert_eq!(forged.status, 400, "{}", forged.text);
    let missing = callback(app, "code=x").await;
    assert_eq!(missing.status, 400, "{}", missing.text);
    // The person refusing at the portal: 403, and no session.
    let start = phr_post(
        app,
        Some(&token),
        "/children/child-a1/myna-portal/authorisation",
    )
    .await;
    let state = query_value(start.json()["authorisationUrl"].as_str().unwrap(), "state");
    let refused = callback(app, &format!("error=access_denied&state={state}")).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    let pull = phr_post(app, Some(&token), "/children/child-a1/myna-portal/pull").await;
    assert_eq!(pull.status, 403, "{}", pull.text);
    assert_eq!(s.mock.counts().token, 0);
}

#[tokio::test]
async fn the_adapter_is_off_unless_configured() {
    let app = TestApp::spawn().await;
    let r = app
        .send(app.client.post(format!(
            "{}/phr/v1/children/x/myna-portal/authorisation",
            app.root
        )))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.text.contains("portal.enabled"), "{}", r.text);
}
