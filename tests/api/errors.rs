//! Every 4xx/5xx carries an OperationOutcome; bad input never stores anything.

use musubi_tests::TestApp;
use serde_json::json;

async fn assert_outcome(response: &musubi_tests::Response, status: u16, needle: &str) {
    assert_eq!(response.status, status, "{}", response.text);
    let body = response.json();
    assert_eq!(
        body["resourceType"], "OperationOutcome",
        "{}",
        response.text
    );
    let text = body.to_string();
    assert!(text.contains(needle), "expected {needle:?} in {text}");
}

#[tokio::test]
async fn malformed_json_is_a_400_with_its_position() {
    let app = TestApp::spawn().await;
    let response = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+json")
                .body("{\"resourceType\": \"Patient\", \"gender\": }"),
        )
        .await;
    assert_outcome(&response, 400, "column").await;
}

#[tokio::test]
async fn structural_errors_name_the_element() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "birthDate": "2020-13-45", "foo": 1}),
        )
        .await;
    assert_outcome(&response, 400, "Patient.birthDate").await;
    assert!(response.text.contains("foo"), "{}", response.text);
    assert_eq!(app.get("Patient").await.json()["total"], 0);
}

#[tokio::test]
async fn missing_required_elements_are_reported() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "Immunization",
            &json!({"resourceType": "Immunization", "status": "completed"}),
        )
        .await;
    assert_outcome(&response, 400, "Immunization.vaccineCode").await;
    assert!(
        response.text.contains("Immunization.patient"),
        "{}",
        response.text
    );
}

#[tokio::test]
async fn type_mismatch_unknown_type_and_unknown_id() {
    let app = TestApp::spawn().await;
    assert_outcome(
        &app.post("Patient", &json!({"resourceType": "Observation"}))
            .await,
        400,
        "resourceType",
    )
    .await;
    assert_outcome(&app.get("Foo/1").await, 404, "not an R4 resource type").await;
    assert_outcome(&app.get("Patient/nope").await, 404, "does not exist").await;
    assert_outcome(
        &app.get("Patient/not_valid!").await,
        400,
        "not a valid resource id",
    )
    .await;
    assert_outcome(&app.get("Medication/1").await, 404, "not served").await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let app = TestApp::spawn_with(|c| c.server.max_body_bytes = 1024).await;
    let big = json!({"resourceType": "Patient", "name": [{"text": "あ".repeat(2000)}]});
    assert_outcome(&app.post("Patient", &big).await, 413, "exceeds the limit").await;
}

#[tokio::test]
async fn unsupported_media_types_and_accept() {
    let app = TestApp::spawn().await;
    let response = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("content-type", "text/plain")
                .body("hello"),
        )
        .await;
    assert_outcome(&response, 415, "Content-Type").await;
    let response = app
        .send(
            app.client
                .get(app.url("metadata"))
                .header("accept", "text/html"),
        )
        .await;
    assert_outcome(&response, 406, "media types").await;
}

#[tokio::test]
async fn update_id_rules() {
    let app = TestApp::spawn().await;
    let response = app
        .put("Patient/a", &json!({"resourceType": "Patient", "id": "b"}))
        .await;
    assert_outcome(&response, 400, "differs").await;
    let response = app
        .put("Patient/a", &json!({"resourceType": "Patient"}))
        .await;
    assert_outcome(&response, 400, "id").await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_outcomes() {
    let app = TestApp::spawn().await;
    assert_outcome(
        &app.get("Patient/1/foo/bar/baz").await,
        404,
        "no FHIR interaction",
    )
    .await;
    let non_fhir = app
        .send(app.client.get(app.url("").replace("/fhir", "/nothing")))
        .await;
    assert_eq!(non_fhir.status, 404);
}

#[tokio::test]
async fn metadata_lists_types_and_search_parameters() {
    let app = TestApp::spawn().await;
    let response = app.get("metadata").await;
    assert_eq!(response.status, 200);
    let cs = response.json();
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    let imm = resources
        .iter()
        .find(|r| r["type"] == "Immunization")
        .unwrap();
    let params: Vec<&str> = imm["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for expected in ["patient", "date", "vaccine-code", "_id", "_lastUpdated"] {
        assert!(
            params.contains(&expected),
            "{expected} missing from {params:?}"
        );
    }
    assert!(resources.iter().any(|r| r["type"] == "Consent"));
    let health = app
        .send(app.client.get(app.url("").replace("/fhir", "/healthz")))
        .await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn readiness_is_reported_when_the_store_runs() {
    let app = TestApp::spawn().await;
    let ready = app
        .send(app.client.get(app.url("").replace("/fhir", "/readyz")))
        .await;
    assert_eq!(ready.status, 200, "{}", ready.text);
}

#[tokio::test]
async fn create_with_query_criteria_is_refused_not_duplicated() {
    let app = TestApp::spawn().await;
    let body =
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]});
    let response = app.post("Patient?identifier=urn:x|1", &body).await;
    assert_outcome(&response, 400, "If-None-Exist").await;
    assert_eq!(app.get("Patient").await.json()["total"], 0);
    // Format parameters are not criteria.
    assert_eq!(app.post("Patient?_format=json", &body).await.status, 201);
}
