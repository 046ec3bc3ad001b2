//! The PHR app API (`/phr/v1`) end to end: a parent signed in through a PHR app posts and reads
//! app JSON; the clinic reads the same data through FHIR.

use musubi_tests::{Response, TestApp, link_child, match_ids, parent, phr_app};
use serde_json::{Value, json};

const VACCINE_TYPE: &str = "https://musubi.example.org/fhir/CodeSystem/vaccine-type";
const PHR: &str = "test-phr";
const SCOPES: &str = "patient/*.rs patient/QuestionnaireResponse.cu patient/Observation.cu \
    patient/Condition.cu patient/MedicationStatement.cu patient/AllergyIntolerance.cu \
    launch/patient fhirUser offline_access";

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

/// Two families: parent-a with child-a1 and parent-b with child-b1, both born 2025-03-01.
async fn two_families() -> TestApp {
    let app = TestApp::spawn_with(|config| {
        config.auth.users = vec![parent("parent-a"), parent("parent-b")];
        config.clients.push(phr_client());
    })
    .await;
    for (family, child) in [("a", "child-a1"), ("b", "child-b1")] {
        let patient = json!({"resourceType": "Patient", "id": child, "birthDate": "2025-03-01",
                             "gender": "female", "name": [{"text": format!("結 {family}")}]});
        link_child(&app, family, patient).await;
    }
    app
}

/// A parent's access token, signed in through the PHR app with the usual scopes.
async fn sign_in(app: &TestApp, username: &str) -> String {
    sign_in_with(app, username, SCOPES).await
}

async fn sign_in_with(app: &TestApp, username: &str, scopes: &str) -> String {
    musubi_tests::sign_in(app, PHR, username, scopes).await["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

async fn phr_post(
    app: &TestApp,
    token: Option<&str>,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> Response {
    let mut request = app
        .anonymous()
        .post(format!("{}/phr/v1{path}", app.root))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    app.send(request).await
}

async fn phr_get(app: &TestApp, token: Option<&str>, path: &str) -> Response {
    let mut request = app.anonymous().get(format!("{}/phr/v1{path}", app.root));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    app.send(request).await
}

/// The clinic's (system client's) count of a search.
async fn count(app: &TestApp, search: &str) -> u64 {
    let r = app.get(&format!("{search}&_summary=count")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["total"].as_u64().expect("total")
}

/// How many versions child-a1's Observations have together (every write that changed
/// something adds one).
async fn versions(app: &TestApp) -> u64 {
    let r = app
        .get("Observation?subject=Patient/child-a1&_count=1000")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            e["resource"]["meta"]["versionId"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .expect("versionId")
        })
        .sum()
}

fn mr_form(child: &str) -> Value {
    let mut answers = json!({
        "name": "結 花子", "name-kana": "ムスビ ハナコ", "sex": "female", "birth-date": "2025-03-01",
        "guardian-name": "結 太郎", "body-temperature": 36.6, "dose-number": 1, "dose-phase": "1期",
        "q1-read-explanation": true
    });
    for question in [
        "q2-delivery-abnormal",
        "q2-postnatal-abnormal",
        "q2-checkup-abnormal",
        "q3-unwell-today",
        "q4-recent-illness",
        "q5-contact",
        "q6-recent-vaccination",
        "q7-measles-history",
        "q7-rubella-history",
        "q8-underlying-disease",
        "q9-seizure",
        "q10-allergy",
        "q11-vaccine-reaction",
        "anaphylaxis",
        "q12-relative-reaction",
        "q13-family-immunodeficiency",
        "q14-transfusion-globulin",
        "immunodeficiency",
        "pregnancy",
        "q15-questions",
    ] {
        answers[question] = json!(false);
    }
    json!({"personId": child, "vaccineType": "mr", "answeredAt": "2026-03-01T08:30:00+09:00",
           "status": "completed", "answers": answers})
}

/// 2024 is a leap year: 366 daily weights, each at 07:00 in Japan.
fn year_of_weights(child: &str) -> Value {
    let mut day = time::Date::from_calendar_date(2024, time::Month::January, 1).unwrap();
    let mut points = Vec::new();
    for i in 0..366 {
        points.push(json!({
            "at": format!("{:04}-{:02}-{:02}T07:00:00+09:00", day.year(), u8::from(day.month()), day.day()),
            "value": format!("{}.{}", 8 + i / 100, i % 10).parse::<Value>().unwrap(),
        }));
        day = day.next_day().unwrap();
    }
    json!({"personId": child, "series": [{"kind": "bodyWeight", "unit": "kg", "points": points}]})
}

fn issue_expressions(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| i["expression"][0].as_str().unwrap_or("(none)").to_owned())
        .collect()
}

#[tokio::test]
async fn a_prevaccination_form_from_the_parent_app_reaches_the_clinic() {
    let app = two_families().await;
    let token = sign_in(&app, "parent-a").await;
    let body = mr_form("child-a1").to_string();
    let r = phr_post(
        &app,
        Some(&token),
        "/children/child-a1/prevaccination/mr",
        Some("form-1"),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let receipt = r.json();
    assert_eq!(receipt["count"], 1);
    assert_eq!(
        receipt["stored"][0]["resourceType"],
        "QuestionnaireResponse"
    );
    let id = receipt["stored"][0]["id"].as_str().unwrap().to_owned();

    // The clinic EMR (the system client) finds it through FHIR.
    let found = app
        .get("QuestionnaireResponse?subject=Patient/child-a1")
        .await;
    assert_eq!(found.status, 200, "{}", found.text);
    let bundle = found.json();
    assert_eq!(match_ids(&bundle), vec![id.clone()]);
    let response = &bundle["entry"][0]["resource"];
    assert_eq!(
        response["questionnaire"]
            .as_str()
            .unwrap()
            .split('|')
            .next(),
        Some("https://musubi.example.org/fhir/Questionnaire/prevaccination-mr")
    );
    assert_eq!(response["status"], "completed");
    assert_eq!(
        response["meta"]["source"],
        format!("https://musubi.example.org/fhir/phr-client/{PHR}")
    );
    assert_eq!(response["extension"][0]["valueCoding"]["code"], "mr");

    // The path's vaccine must be the body's.
    let r = phr_post(
        &app,
        Some(&token),
        "/children/child-a1/prevaccination/bcg",
        Some("form-2"),
        &body,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(issue_expressions(&r.json()), ["/vaccineType"]);
    // Answers that break the form (a text for a yes/no question) are 422, located in the body.
    let mut wrong = mr_form("child-a1");
    wrong["answers"]["q3-unwell-today"] = json!("いいえ");
    let r = phr_post(
        &app,
        Some(&token),
        "/children/child-a1/prevaccination/mr",
        Some("form-3"),
        &wrong.to_string(),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        issue_expressions(&r.json()).contains(&"/answers/q3-unwell-today".to_owned()),
        "{}",
        r.text
    );
    assert_eq!(
        count(&app, "QuestionnaireResponse?subject=Patient/child-a1").await,
        1
    );
}

#[tokio::test]
async fn a_year_of_daily_vitals_is_stored_in_one_request_and_replays_idempotently() {
    let app = two_families().await;
    let token = sign_in(&app, "parent-a").await;
    let body = year_of_weights("child-a1").to_string();
    let first = phr_post(
        &app,
        Some(&token),
        "/persons/child-a1/vitals",
        Some("year-2024"),
        &body,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let receipt = first.json();
    assert_eq!(receipt["count"], 366);
    assert_eq!(receipt["stored"].as_array().unwrap().len(), 366);
    assert_eq!(
        count(&app, "Observation?subject=Patient/child-a1").await,
        366
    );
    let stored_versions = versions(&app).await;
    assert_eq!(stored_versions, 366);

    // The clinic sees an Observation per point, value and time as sent.
    let sent = year_of_weights("child-a1");
    let sent_points = sent["series"][0]["points"].as_array().unwrap();
    let id = receipt["stored"][59]["id"].as_str().unwrap();
    let r = app.get(&format!("Observation/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let observation = r.json();
    assert_eq!(observation["subject"]["reference"], "Patient/child-a1");
    assert_eq!(observation["valueQuantity"]["code"], "kg");
    let point = sent_points
        .iter()
        .find(|p| p["at"] == observation["effectiveDateTime"])
        .expect("the Observation's time is a sent point's");
    assert_eq!(observation["valueQuantity"]["value"], point["value"]);

    // The same key and body: the first answer again, nothing new stored.
    let again = phr_post(
        &app,
        Some(&token),
        "/persons/child-a1/vitals",
        Some("year-2024"),
        &body,
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.text, first.text);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(versions(&app).await, stored_versions);
    // A new key with the same points (a retry after the key was forgotten, e.g. after a
    // restart): the deterministic ids make it overwrite with identical content.
    let retry = phr_post(
        &app,
        Some(&token),
        "/persons/child-a1/vitals",
        Some("year-2024-retry"),
        &body,
    )
    .await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.text, first.text);
    assert_eq!(retry.header("idempotent-replayed"), None);
    assert_eq!(versions(&app).await, stored_versions);

    // The same key with another body is a conflict; nothing is written.
    let mut other = year_of_weights("child-a1");
    other["series"][0]["points"][0]["value"] = json!(9.9);
    let conflict = phr_post(
        &app,
        Some(&token),
        "/persons/child-a1/vitals",
        Some("year-2024"),
        &other.to_string(),
    )
    .await;
    assert_eq!(conflict.status, 409, "{}", conflict.text);
    assert_eq!(conflict.json()["resourceType"], "OperationOutcome");
    assert_eq!(conflict.json()["issue"][0]["code"], "conflict");
    assert_eq!(versions(&app).await, stored_versions);
    // No key at all is refused.
    let r = phr_post(&app, Some(&token), "/persons/child-a1/vitals", None, &body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("Idempotency-Key"), "{}", r.text);

    // Reading back: the whole year, then one month of one kind.
    let all = phr_get(&app, Some(&token), "/persons/child-a1/vitals").await;
    assert_eq!(all.status, 200, "{}", all.text);
    let all = all.json();
    assert_eq!(all["personId"], "child-a1");
    assert_eq!(all["series"].as_array().unwrap().len(), 1);
    assert_eq!(all["series"][0]["points"].as_array().unwrap().len(), 366);
    assert_eq!(
        all["series"][0]["points"][0],
        year_of_weights("child-a1")["series"][0]["points"][0]
    );
    let february = phr_get(
        &app,
        Some(&token),
        "/persons/child-a1/vitals?kind=bodyWeight&from=2024-02-01&to=2024-02-29",
    )
    .await;
    assert_eq!(february.status, 200, "{}", february.text);
    let points = february.json()["series"][0]["points"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(points.len(), 29);
    assert_eq!(points[0]["at"], "2024-02-01T07:00:00+09:00");
    assert_eq!(points[28]["at"], "2024-02-29T07:00:00+09:00");
    let steps = phr_get(&app, Some(&token), "/persons/child-a1/vitals?kind=steps").await;
    assert_eq!(steps.json()["series"], json!([]));
    for bad in ["kind=bloodSugar", "from=2024-13-01", "to=20240101"] {
        let r = phr_get(
            &app,
            Some(&token),
            &format!("/persons/child-a1/vitals?{bad}"),
        )
        .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
}

#[tokio::test]
async fn schema_violations_answer_400_with_json_pointers_and_store_nothing() {
    let app = two_families().await;
    let token = sign_in(&app, "parent-a").await;
    let cases: [(&str, Value, &[&str]); 4] = [
        (
            "a point value of the wrong type and a temperature out of range",
            json!({"personId": "child-a1", "series": [
                {"kind": "bodyWeight", "unit": "kg", "points": [{"at": "2026-01-01T07:00:00+09:00", "value": "heavy"}]},
                {"kind": "bodyTemperature", "unit": "Cel", "points": [{"at": "2026-01-01T07:00:00+09:00", "value": 36.5}]}]}),
            &["/series/0/points/0/value"],
        ),
        (
            "a temperature out of range",
            json!({"personId": "child-a1", "series": [
                {"kind": "bodyTemperature", "unit": "Cel", "points": [
                    {"at": "2026-01-01T07:00:00+09:00", "value": 36.5},
                    {"at": "2026-01-02T07:00:00+09:00", "value": 48.2}]}]}),
            &["/series/0/points/1/value"],
        ),
        (
            "a missing series",
            json!({"personId": "child-a1"}),
            &["/series"],
        ),
        (
            "another person in the body than in the path",
            json!({"personId": "child-b1", "series": [
                {"kind": "steps", "unit": "steps", "points": [{"at": "2026-01-01", "value": 8012}]}]}),
            &["/personId"],
        ),
    ];
    for (i, (what, body, pointers)) in cases.iter().enumerate() {
        let r = phr_post(
            &app,
            Some(&token),
            "/persons/child-a1/vitals",
            Some(&format!("bad-{i}")),
            &body.to_string(),
        )
        .await;
        assert_eq!(r.status, 400, "{what}: {}", r.text);
        let outcome = r.json();
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{what}");
        assert_eq!(issue_expressions(&outcome), *pointers, "{what}: {}", r.text);
        assert!(
            !r.text.contains("48.2"),
            "messages never repeat the value sent: {}",
            r.text
        );
    }
    let r = phr_post(
        &app,
        Some(&token),
        "/persons/child-a1/vitals",
        Some("not-json"),
        "{\"personId\": ",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    assert_eq!(count(&app, "Observation?subject=Patient/child-a1").await, 0);
}

#[tokio::test]
async fn another_familys_child_is_not_found_and_nothing_is_stored() {
    let app = two_families().await;
    let token = sign_in(&app, "parent-a").await;
    let vitals = json!({"personId": "child-b1", "series": [
        {"kind": "steps", "unit": "steps", "points": [{"at": "2026-01-01", "value": 8012}]}]});
    let r = phr_post(
        &app,
        Some(&token),
        "/persons/child-b1/vitals",
        Some("theirs"),
        &vitals.to_string(),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json()["issue"][0]["code"], "not-found");
    let r = phr_post(
        &app,
        Some(&token),
        "/children/child-b1/prevaccination/mr",
        Some("theirs-form"),
        &mr_form("child-b1").to_string(),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    for path in [
        "/persons/child-b1/vitals",
        "/persons/child-b1/conditions",
        "/children/child-b1/vaccinations",
        "/children/child-b1/schedule",
        "/persons/nobody-here/vitals",
    ] {
        let r = phr_get(&app, Some(&token), path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
    }
    assert_eq!(count(&app, "Observation?subject=Patient/child-b1").await, 0);
    assert_eq!(
        count(&app, "QuestionnaireResponse?subject=Patient/child-b1").await,
        0
    );
    // The other parent reaches their own child.
    let other = sign_in(&app, "parent-b").await;
    let r = phr_post(
        &app,
        Some(&other),
        "/persons/child-b1/vitals",
        Some("theirs"),
        &vitals.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(count(&app, "Observation?subject=Patient/child-b1").await, 1);
}

#[tokio::test]
async fn without_a_token_only_the_openapi_document_answers() {
    let app = two_families().await;
    let body = year_of_weights("child-a1").to_string();
    let r = phr_post(&app, None, "/persons/child-a1/vitals", Some("anon"), &body).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"musubi\"")
    );
    assert_eq!(r.json()["issue"][0]["code"], "login");
    assert_eq!(
        phr_get(&app, None, "/persons/child-a1/vitals").await.status,
        401
    );
    assert_eq!(
        phr_get(&app, None, "/children/child-a1/schedule")
            .await
            .status,
        401
    );
    assert_eq!(count(&app, "Observation?subject=Patient/child-a1").await, 0);

    let r = phr_get(&app, None, "/openapi.json").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let document = r.json();
    assert_eq!(document["openapi"], "3.1.0");

    // Every operation of the document is served: with a token, each answers something other
    // than the unknown-route 404 (a POST without its key is a 400).
    let token = sign_in(&app, "parent-a").await;
    let paths = document["paths"].as_object().unwrap();
    // The gateway adds how an app receives records (FHIR Consent and Subscription).
    assert!(paths.contains_key("/fhir/Subscription") && paths.contains_key("/fhir/Consent"));
    let phr_paths: Vec<_> = paths
        .iter()
        .filter(|(p, _)| p.starts_with("/phr/v1"))
        .collect();
    assert_eq!(phr_paths.len(), 8);
    let mut operations = 0;
    for (path, item) in phr_paths {
        let concrete = path
            .replace("{patientId}", "child-a1")
            .replace("{vaccineType}", "mr");
        let relative = concrete.strip_prefix("/phr/v1").expect("under /phr/v1");
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            let r = match method.as_str() {
                "get" => phr_get(&app, Some(&token), relative).await,
                "post" => phr_post(&app, Some(&token), relative, None, "{}").await,
                other => panic!("unexpected method {other} for {path}"),
            };
            match method.as_str() {
                "post" => assert_eq!(r.status, 400, "{method} {path}: {}", r.text),
                // The schedule of a child with no routine rule left could be 422; here it is 200.
                _ => assert_eq!(r.status, 200, "{method} {path}: {}", r.text),
            }
        }
    }
    assert_eq!(operations, 12);
    let r = phr_get(&app, Some(&token), "/persons/child-a1/unknown").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn records_round_trip_and_the_vaccination_history_and_schedule_read_back() {
    let app = two_families().await;
    let token = sign_in(&app, "parent-a").await;

    let conditions = json!({"personId": "child-a1", "conditions": [
        {"recordId": "c-1", "text": "アトピー性皮膚炎", "status": "active", "onset": "2025-06"}]});
    let medications = json!({"personId": "child-a1", "medications": [
        {"recordId": "m-1", "text": "ヘパリン類似物質油性クリーム", "status": "active", "start": "2025-06-10"}]});
    let allergies = json!({"personId": "child-a1", "allergies": [
        {"recordId": "a-1", "text": "卵", "category": "food", "criticality": "low", "status": "active", "reaction": "じんましん"}]});
    for (path, body, list, resource_type) in [
        ("conditions", &conditions, "conditions", "Condition"),
        (
            "medications",
            &medications,
            "medications",
            "MedicationStatement",
        ),
        ("allergies", &allergies, "allergies", "AllergyIntolerance"),
    ] {
        let url = format!("/persons/child-a1/{path}");
        let r = phr_post(
            &app,
            Some(&token),
            &url,
            Some(&format!("{path}-1")),
            &body.to_string(),
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.json()["stored"][0]["resourceType"], resource_type);
        let back = phr_get(&app, Some(&token), &url).await;
        assert_eq!(back.status, 200, "{path}: {}", back.text);
        let back = back.json();
        assert_eq!(back[list].as_array().unwrap().len(), 1, "{path}: {back}");
        assert_eq!(
            back[list][0]["recordId"], body[list][0]["recordId"],
            "{path}"
        );
        assert_eq!(back[list][0]["text"], body[list][0]["text"], "{path}");
    }

    // The clinic records the MR dose given after the 予診票; the app reads history and schedule.
    let dose = json!({"resourceType": "Immunization", "id": "imm-mr-1", "status": "completed",
                      "vaccineCode": {"coding": [{"system": VACCINE_TYPE, "code": "mr"}]},
                      "patient": {"reference": "Patient/child-a1"},
                      "occurrenceDateTime": "2026-03-05", "lotNumber": "MR123",
                      "protocolApplied": [{"doseNumberPositiveInt": 1}]});
    let r = app.put("Immunization/imm-mr-1", &dose).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let history = phr_get(&app, Some(&token), "/children/child-a1/vaccinations").await;
    assert_eq!(history.status, 200, "{}", history.text);
    let history = history.json();
    assert_eq!(history["personId"], "child-a1");
    let given = &history["vaccinations"][0];
    assert_eq!(given["recordId"], "imm-mr-1");
    assert_eq!(given["vaccineType"], "mr");
    assert_eq!(given["date"], "2026-03-05");
    assert_eq!(given["lotNumber"], "MR123");

    let schedule = phr_get(
        &app,
        Some(&token),
        "/children/child-a1/schedule?date=2026-04-10",
    )
    .await;
    assert_eq!(schedule.status, 200, "{}", schedule.text);
    let schedule = schedule.json();
    assert_eq!(schedule["asOf"], "2026-04-10");
    let mr: Vec<&Value> = schedule["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["vaccineType"] == "mr")
        .collect();
    assert_eq!(mr[0]["doseNumber"], 1);
    assert_eq!(mr[0]["status"], "complete");
    assert_eq!(mr[0]["givenRecordId"], "imm-mr-1");
    assert_eq!(mr[1]["status"], "upcoming");
    let r = phr_get(
        &app,
        Some(&token),
        "/children/child-a1/schedule?date=next-week",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
}

/// The app's own FHIR endpoint, standing in for the parent's phone: what it received.
type Inbox = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

fn app_endpoint(inbox: &Inbox) -> String {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let inbox = web::Data::new(inbox.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(inbox.clone()).default_service(web::to(
            |inbox: web::Data<Inbox>, body: web::Bytes| async move {
                let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                inbox.lock().unwrap().push(value);
                HttpResponse::Created().finish()
            },
        ))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://{addr}/fhir")
}

/// The whole paper trail made digital, end to end: the parent's app fills the 予診票 → the
/// clinic's EMR reads it through FHIR → the clinic records the vaccination → the parent's app,
/// subscribed for its child, receives it, and the child's history in the app shows it.
#[tokio::test]
async fn from_the_parents_questionnaire_to_the_vaccination_in_the_parents_app() {
    let inbox = Inbox::default();
    let endpoint = app_endpoint(&inbox);
    let app = TestApp::spawn_with(|config| {
        config.auth.users = vec![parent("parent-a")];
        config.clients.push(phr_client());
        config.routing.poll_interval_ms = 50;
    })
    .await;
    let child = json!({"resourceType": "Patient", "id": "child-a1", "birthDate": "2025-03-01",
                       "gender": "female", "name": [{"text": "結 a"}]});
    link_child(&app, "a", child).await;
    let token = sign_in_with(
        &app,
        "parent-a",
        "patient/*.rs patient/QuestionnaireResponse.cu patient/Subscription.c patient/Consent.c \
         launch/patient fhirUser",
    )
    .await;

    // 1. The app registers its endpoint for the child, with the parent's own token.
    let subscription = json!({"resourceType": "Subscription", "status": "requested",
        "reason": "新しい接種記録をアプリに届ける",
        "criteria": "Immunization?patient=Patient/child-a1",
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}});
    let r = app
        .send(
            app.anonymous()
                .post(app.url("Subscription"))
                .bearer_auth(&token)
                .header("content-type", "application/fhir+json")
                .body(subscription.to_string()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Not for somebody else's child.
    let mut foreign = subscription.clone();
    foreign["criteria"] = json!("Immunization?patient=Patient/child-b1");
    let r = app
        .send(
            app.anonymous()
                .post(app.url("Subscription"))
                .bearer_auth(&token)
                .header("content-type", "application/fhir+json")
                .body(foreign.to_string()),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);

    // The parent lets the app receive the child's vaccinations (an opt-in purpose): a Consent
    // the app records for the parent, as guardian.
    let consent = json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/child-a1"},
        "dateTime": "2026-03-01T09:00:00+09:00",
        "performer": [{"reference": "RelatedPerson/rp-a"}],
        "provision": {"type": "permit",
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                       "reference": {"identifier": {"system": "https://musubi.example.org/fhir/IdSystem/client-id", "value": PHR}}}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "PATRQT"}],
            "class": [{"system": "https://musubi.example.org/fhir/CodeSystem/data-class", "code": "vaccinations"}]}
    });
    let r = app
        .send(
            app.anonymous()
                .post(app.url("Consent"))
                .bearer_auth(&token)
                .header("content-type", "application/fhir+json")
                .body(consent.to_string()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // 2. The parent fills the 予診票 in the app.
    let r = phr_post(
        &app,
        Some(&token),
        "/children/child-a1/prevaccination/mr",
        Some("form-1"),
        &mr_form("child-a1").to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // 3. The clinic's EMR reads it through FHIR and assesses it.
    let forms = app
        .get("QuestionnaireResponse?subject=Patient/child-a1")
        .await
        .json();
    assert_eq!(forms["total"], 1);
    let form_id = forms["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The app's write was audited like any FHIR write (the clinic's search above is audited too).
    let audited = app
        .get(&format!(
            "AuditEvent?entity=QuestionnaireResponse/{form_id}"
        ))
        .await
        .json();
    let writes: Vec<&Value> = audited["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["action"] == "U")
        .collect();
    assert_eq!(writes.len(), 1, "{audited}");
    assert_eq!(
        writes[0]["resource"]["agent"][1]["who"]["identifier"]["value"],
        PHR
    );
    let assessed = app
        .get(&format!("QuestionnaireResponse/{form_id}/$assess"))
        .await;
    assert_eq!(assessed.status, 200, "{}", assessed.text);

    // 4. The clinic records the vaccination.
    let immunization = json!({"resourceType": "Immunization", "id": "imm-mr-1", "status": "completed",
        "vaccineCode": {"coding": [{"system": VACCINE_TYPE, "code": "mr"}]},
        "patient": {"reference": "Patient/child-a1"}, "occurrenceDateTime": "2026-03-05",
        "lotNumber": "Y123", "protocolApplied": [{"doseNumberPositiveInt": 1}]});
    let r = app.put("Immunization/imm-mr-1", &immunization).await;
    assert_eq!(r.status, 201, "{}", r.text);

    // 5. The parent's app receives it, once.
    for _ in 0..200 {
        if !inbox.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let received = inbox.lock().unwrap().clone();
    let tasks = app.get("Task?subject=Patient/child-a1").await.text;
    assert_eq!(received.len(), 1, "{received:?} {tasks}");
    assert_eq!(received[0]["id"], "imm-mr-1");
    assert_eq!(received[0]["patient"]["reference"], "Patient/child-a1");

    // 6. And the child's history in the app shows it.
    let history = phr_get(&app, Some(&token), "/children/child-a1/vaccinations").await;
    assert_eq!(history.status, 200, "{}", history.text);
    let history = history.json();
    assert_eq!(history["vaccinations"][0]["vaccineType"], "mr");
    assert_eq!(history["vaccinations"][0]["date"], "2026-03-05");
}
