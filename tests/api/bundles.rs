//! batch and transaction Bundles (R4 3.1.0.11).

use musubi_tests::TestApp;
use serde_json::json;

fn transaction_with_references() -> serde_json::Value {
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
             "resource": {"resourceType": "Patient", "name": [{"family": "佐藤", "given": ["花子"]}], "birthDate": "2024-04-01"},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
             "resource": {"resourceType": "Immunization", "status": "completed",
                          "vaccineCode": {"coding": [{"system": "urn:oid:1.2.392.200119.4.403.1", "code": "2.1"}]},
                          "patient": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
                          "occurrenceDateTime": "2024-06-03"},
             "request": {"method": "POST", "url": "Immunization"}}
        ]
    })
}

#[tokio::test]
async fn transaction_commits_all_and_rewrites_urn_uuid_references() {
    let app = TestApp::spawn().await;
    let response = app.post("", &transaction_with_references()).await;
    assert_eq!(response.status, 200, "{}", response.text);
    let body = response.json();
    assert_eq!(body["type"], "transaction-response");
    assert_eq!(body["entry"][0]["response"]["status"], "201 Created");
    let patient_location = body["entry"][0]["response"]["location"].as_str().unwrap();
    let patient_ref = patient_location.split("/_history").next().unwrap();
    let imm = &body["entry"][1]["resource"];
    assert_eq!(imm["patient"]["reference"], patient_ref);
    let search = app
        .get(&format!("Immunization?patient={patient_ref}"))
        .await
        .json();
    assert_eq!(search["total"], 1);
}

#[tokio::test]
async fn a_failing_transaction_writes_nothing() {
    let app = TestApp::spawn().await;
    let mut bundle = transaction_with_references();
    // The second entry is invalid: its status code is not in the required value set.
    bundle["entry"][1]["resource"]["status"] = json!("done");
    let response = app.post("", &bundle).await;
    assert_eq!(response.status, 400, "{}", response.text);
    let outcome = response.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let expression = outcome["issue"][0]["expression"][0].as_str().unwrap();
    assert!(
        expression.starts_with("Bundle.entry[1].resource"),
        "{expression}"
    );
    assert_eq!(
        app.get("Patient").await.json()["total"],
        0,
        "the valid Patient was not written either"
    );
}

#[tokio::test]
async fn a_transaction_with_a_stale_if_match_rolls_back() {
    let app = TestApp::spawn().await;
    let p = app
        .create(&json!({"resourceType": "Patient", "gender": "female"}))
        .await;
    let id = p["id"].as_str().unwrap();
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "id": id, "gender": "other"}, "request": {"method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"9\""}}
        ]
    });
    let response = app.post("", &bundle).await;
    assert_eq!(response.status, 412, "{}", response.text);
    assert_eq!(app.get("Patient").await.json()["total"], 1);
}

#[tokio::test]
async fn batch_entries_succeed_or_fail_on_their_own() {
    let app = TestApp::spawn().await;
    let bundle = json!({
        "resourceType": "Bundle", "type": "batch",
        "entry": [
            {"resource": {"resourceType": "Patient", "gender": "female"}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
            {"resource": {"resourceType": "Patient", "gender": "wrong"}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient?gender=female"}}
        ]
    });
    let response = app.post("", &bundle).await;
    assert_eq!(response.status, 200, "{}", response.text);
    let body = response.json();
    assert_eq!(body["type"], "batch-response");
    assert_eq!(body["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(body["entry"][1]["response"]["status"], "404 Not Found");
    assert_eq!(body["entry"][2]["response"]["status"], "400 Bad Request");
    assert_eq!(
        body["entry"][2]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(body["entry"][3]["resource"]["total"], 1);
}

#[tokio::test]
async fn conditional_create_in_a_transaction_reuses_the_match() {
    let app = TestApp::spawn().await;
    let existing = app
        .create(&json!({"resourceType": "Patient", "identifier": [{"system": "urn:example:mrn", "value": "42"}]}))
        .await;
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001",
             "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:example:mrn", "value": "42"}]},
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:example:mrn|42"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "体温"},
                          "subject": {"reference": "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001"}},
             "request": {"method": "POST", "url": "Observation"}}
        ]
    });
    let response = app.post("", &bundle).await;
    assert_eq!(response.status, 200, "{}", response.text);
    let body = response.json();
    assert_eq!(body["entry"][0]["response"]["status"], "200 OK");
    let expected = format!("Patient/{}", existing["id"].as_str().unwrap());
    assert_eq!(
        body["entry"][1]["resource"]["subject"]["reference"],
        expected.as_str()
    );
    assert_eq!(app.get("Patient").await.json()["total"], 1);
}
