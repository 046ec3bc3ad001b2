//! create/read/vread/update/delete/history, versions and Prefer (R4 3.1.0).

use musubi_tests::TestApp;
use serde_json::json;

fn patient() -> serde_json::Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11310000001", "value": "00012345"}],
        "name": [
            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}],
             "use": "official", "text": "山田　太郎", "family": "山田", "given": ["太郎"]},
            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}],
             "use": "official", "text": "ヤマダ　タロウ", "family": "ヤマダ", "given": ["タロウ"]}
        ],
        "gender": "male",
        "birthDate": "2020-02-29"
    })
}

#[tokio::test]
async fn create_then_read_round_trips_japanese_text_and_sets_versions() {
    let app = TestApp::spawn().await;
    let response = app.post("Patient", &patient()).await;
    assert_eq!(response.status, 201, "{}", response.text);
    let location = response.header("location").unwrap().to_owned();
    assert!(
        location.contains("/Patient/") && location.ends_with("/_history/1"),
        "{location}"
    );
    assert_eq!(response.header("etag"), Some("W/\"1\""));
    assert!(response.header("last-modified").unwrap().ends_with("GMT"));
    let created = response.json();
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["meta"]["versionId"], "1");

    let read = app.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status, 200);
    assert!(
        read.header("content-type")
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let body = read.json();
    assert_eq!(body["name"][0]["text"], "山田　太郎", "U+3000 must survive");
    assert_eq!(body["name"][1]["family"], "ヤマダ");
    assert!(
        read.text.contains("山田　太郎"),
        "stored as UTF-8, not escaped"
    );
    assert_eq!(body["birthDate"], "2020-02-29");
}

#[tokio::test]
async fn two_segment_gets_reach_the_same_interaction_as_before_the_early_read_route() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let read = app.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json()["id"], id.as_str());
    // Operations and history keep their routes: their segment is no resource id.
    let lookup = app
        .get("CodeSystem/$lookup?system=http://hl7.org/fhir/administrative-gender&code=male")
        .await;
    assert_ne!(lookup.json()["resourceType"], "Patient", "{}", lookup.text);
    assert!(
        !lookup.text.contains("not a valid resource id"),
        "{}",
        lookup.text
    );
    // Type history, which this consent-checked caller is refused (a read would answer 400).
    let history = app.get("Patient/_history").await;
    assert_eq!(history.status, 403, "{}", history.text);
    assert!(
        history.text.contains("type and system history"),
        "{}",
        history.text
    );
    let barcode = app.get("Immunization/$from-barcode").await;
    assert!(
        !barcode.text.contains("not a valid resource id"),
        "{}",
        barcode.text
    );
    // A malformed id still reaches the read and its 400.
    let malformed = app.get("Patient/bad!id").await;
    assert_eq!(malformed.status, 400, "{}", malformed.text);
    assert!(
        malformed.text.contains("not a valid resource id"),
        "{}",
        malformed.text
    );
}

#[tokio::test]
async fn decimals_keep_their_written_precision() {
    let app = TestApp::spawn().await;
    // Written as text: a `json!` literal would already have turned 12.50 into 12.5.
    let body: serde_json::Value = serde_json::from_str(
        r#"{"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "valueQuantity": {"value": 12.50, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}"#,
    )
    .unwrap();
    let obs = app.create(&body).await;
    let read = app
        .get(&format!("Observation/{}", obs["id"].as_str().unwrap()))
        .await;
    assert!(read.text.contains("\"value\":12.50"), "{}", read.text);
}

#[tokio::test]
async fn update_versions_history_vread_and_if_match() {
    let app = TestApp::spawn().await;
    let created = app.create(&patient()).await;
    let id = created["id"].as_str().unwrap().to_owned();

    let mut changed = created.clone();
    changed["gender"] = json!("other");
    let stale = app
        .send(
            app.client
                .put(app.url(&format!("Patient/{id}")))
                .header("content-type", "application/fhir+json")
                .header("if-match", "W/\"7\"")
                .body(changed.to_string()),
        )
        .await;
    assert_eq!(stale.status, 412, "{}", stale.text);
    assert_eq!(stale.json()["resourceType"], "OperationOutcome");

    let ok = app
        .send(
            app.client
                .put(app.url(&format!("Patient/{id}")))
                .header("content-type", "application/fhir+json")
                .header("if-match", "W/\"1\"")
                .body(changed.to_string()),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.header("etag"), Some("W/\"2\""));

    // The same content again changes nothing and keeps the version.
    let same = app.put(&format!("Patient/{id}"), &changed).await;
    assert_eq!(same.status, 200);
    assert_eq!(same.header("etag"), Some("W/\"2\""));

    let v1 = app.get(&format!("Patient/{id}/_history/1")).await;
    assert_eq!(v1.status, 200);
    assert_eq!(v1.json()["gender"], "male");
    let history = app.get(&format!("Patient/{id}/_history")).await.json();
    assert_eq!(history["type"], "history");
    assert_eq!(history["total"], 2);
    assert_eq!(
        history["entry"][0]["resource"]["meta"]["versionId"], "2",
        "newest first"
    );
    assert_eq!(history["entry"][1]["request"]["method"], "POST");

    let not_modified = app
        .send(
            app.client
                .get(app.url(&format!("Patient/{id}")))
                .header("if-none-match", "W/\"2\""),
        )
        .await;
    assert_eq!(not_modified.status, 304);
}

#[tokio::test]
async fn update_as_create_keeps_the_client_id() {
    let app = TestApp::spawn().await;
    let mut p = patient();
    p["id"] = json!("jp-patient-1");
    let created = app.put("Patient/jp-patient-1", &p).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(app.get("Patient/jp-patient-1").await.status, 200);
}

#[tokio::test]
async fn delete_keeps_history_and_answers_gone() {
    let app = TestApp::spawn().await;
    let created = app.create(&patient()).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("Patient/{id}")).await.status, 200);
    let gone = app.get(&format!("Patient/{id}")).await;
    assert_eq!(gone.status, 410);
    assert_eq!(gone.json()["issue"][0]["code"], "deleted");
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/1")).await.status,
        200
    );
    let history = app.get(&format!("Patient/{id}/_history")).await.json();
    assert_eq!(history["total"], 2);
    assert_eq!(history["entry"][0]["request"]["method"], "DELETE");
    assert!(history["entry"][0].get("resource").is_none());
    // Searches no longer find it.
    let found = app.get(&format!("Patient?_id={id}")).await.json();
    assert_eq!(found["total"], 0);
}

#[tokio::test]
async fn prefer_return_minimal_and_operation_outcome() {
    let app = TestApp::spawn().await;
    let minimal = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+json")
                .header("prefer", "return=minimal")
                .body(patient().to_string()),
        )
        .await;
    assert_eq!(minimal.status, 201);
    assert!(minimal.text.is_empty());
    assert!(minimal.header("location").is_some());
    let outcome = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("content-type", "application/fhir+json")
                .header("prefer", "return=OperationOutcome")
                .body(patient().to_string()),
        )
        .await;
    assert_eq!(outcome.json()["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn conditional_create_under_concurrency_creates_exactly_one() {
    let app = TestApp::spawn().await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = app.client.clone();
        let url = app.url("Patient");
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", "application/fhir+json")
                .header(
                    "if-none-exist",
                    "identifier=urn:oid:1.2.392.100495.20.3.51.11310000001|00012345",
                )
                .body(patient().to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        15,
        "{statuses:?}"
    );
    let found = app.get("Patient?identifier=00012345").await.json();
    assert_eq!(found["total"], 1);
}

#[tokio::test]
async fn conditional_update_creates_then_updates() {
    let app = TestApp::spawn().await;
    let first = app
        .put(
            "Patient?identifier=urn:oid:1.2.392.100495.20.3.51.11310000001|00012345",
            &patient(),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let mut changed = patient();
    changed["gender"] = json!("female");
    let second = app
        .put(
            "Patient?identifier=urn:oid:1.2.392.100495.20.3.51.11310000001|00012345",
            &changed,
        )
        .await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.json()["id"], id.as_str());
}

#[tokio::test]
async fn data_survives_a_clean_restart() {
    let app = TestApp::spawn().await;
    let created = app.create(&patient()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let dir = app.data_dir.clone();
    let temp = app.stop().await;
    let app = TestApp::spawn_in(&dir, |_| {}).await;
    let read = app.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["name"][0]["text"], "山田　太郎");
    app.stop().await;
    drop(temp);
}

#[tokio::test]
async fn xml_is_read_and_written() {
    let app = TestApp::spawn().await;
    let created = app.create(&patient()).await;
    let id = created["id"].as_str().unwrap();
    let xml = app
        .send(
            app.client
                .get(app.url(&format!("Patient/{id}?_format=xml"))),
        )
        .await;
    assert_eq!(xml.status, 200);
    assert!(
        xml.header("content-type")
            .unwrap()
            .starts_with("application/fhir+xml")
    );
    assert!(
        xml.text.contains("<family value=\"山田\"/>"),
        "{}",
        xml.text
    );
    let back = app
        .send(
            app.client
                .put(app.url(&format!("Patient/{id}")))
                .header("content-type", "application/fhir+xml")
                .body(xml.text.clone()),
        )
        .await;
    assert_eq!(back.status, 200, "{}", back.text);
    assert_eq!(
        back.header("etag"),
        Some("W/\"1\""),
        "the XML round trip changed nothing"
    );
}

/// Links name the host the request came to when no public base is configured. The base is built
/// only when an answer needs it (a Location, a search's links).
#[tokio::test]
async fn links_use_the_request_host() {
    let app = TestApp::spawn().await;
    let created = app.post("Patient", &patient()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(app.url(&format!("Patient/{id}/_history/1")).as_str())
    );
    let search = app.get("Patient?gender=male").await;
    let self_link = search.json()["link"][0]["url"].as_str().unwrap().to_owned();
    assert!(self_link.starts_with(&app.url("Patient?")), "{self_link}");
}

/// Links name the configured public base, whatever host the request came to.
#[tokio::test]
async fn links_use_the_configured_public_base() {
    let app = TestApp::spawn_with(|config| {
        config.server.public_base_url = "https://gateway.example.jp/".to_owned();
    })
    .await;
    let created = app.post("Patient", &patient()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("https://gateway.example.jp/fhir/Patient/{id}/_history/1").as_str())
    );
    let search = app.get("Patient?gender=male").await;
    let self_link = search.json()["link"][0]["url"].as_str().unwrap().to_owned();
    assert!(
        self_link.starts_with("https://gateway.example.jp/fhir/Patient?"),
        "{self_link}"
    );
}
