//! The Japanese domain through the API: JP Core profile validation, terminology operations,
//! routine-vaccination rules on Immunization writes and the schedule operation, the digital
//! 予診票 and vaccine barcodes.

use musubi_tests::{TestApp, match_ids};
use serde_json::{Value, json};

const VACCINE_TYPE: &str = "https://musubi.example.org/fhir/CodeSystem/vaccine-type";
const JP_PATIENT: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient";
const CHILD_FORM: &str = "https://musubi.example.org/fhir/Questionnaire/prevaccination-child";

/// A JP Core-shaped child: kanji and kana names as separate HumanNames, the patient id system
/// of a clinic (`urn:oid:1.2.392.100495.20.3.51.1` + a 10-digit medical-institution code).
fn child(birth_date: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "meta": {"profile": [JP_PATIENT]},
        "identifier": [{
            "system": "urn:oid:1.2.392.100495.20.3.51.11311234569",
            "value": "00012345"
        }],
        "name": [
            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}],
             "use": "official", "text": "結城　花子", "family": "結城", "given": ["花子"]},
            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}],
             "use": "official", "text": "ユウキ　ハナコ", "family": "ユウキ", "given": ["ハナコ"]}
        ],
        "gender": "female",
        "birthDate": birth_date
    })
}

fn dose(patient_id: &str, vaccine: &str, date: &str, number: u32) -> Value {
    json!({
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"coding": [{"system": VACCINE_TYPE, "code": vaccine}]},
        "patient": {"reference": format!("Patient/{patient_id}")},
        "occurrenceDateTime": date,
        "lotNumber": "A123",
        "protocolApplied": [{"doseNumberPositiveInt": number}]
    })
}

async fn post_with_outcome(app: &TestApp, body: &Value) -> musubi_tests::Response {
    let rt = body["resourceType"].as_str().unwrap();
    app.send(
        app.client
            .post(app.url(rt))
            .header("content-type", "application/fhir+json")
            .header("prefer", "return=OperationOutcome")
            .body(body.to_string()),
    )
    .await
}

fn issues_with_code<'a>(outcome: &'a Value, code: &str) -> Vec<&'a Value> {
    outcome["issue"]
        .as_array()
        .map(|issues| issues.iter().filter(|i| i["code"] == code).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn wrong_interval_immunization_is_warned_with_the_rule_and_its_source() {
    let app = TestApp::spawn().await;
    // Born 2024-01-10: 5種混合 (routine from 2024-04-01) 1期初回 doses need 20日以上 between
    // them, so after a dose on 2024-04-01 the next is allowed from day 21: 2024-04-22.
    let patient = app.create(&child("2024-01-10")).await;
    let pid = patient["id"].as_str().unwrap();
    let first = post_with_outcome(&app, &dose(pid, "dpt-ipv-hib", "2024-04-01", 1)).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(
        issues_with_code(&first.json(), "business-rule").is_empty(),
        "a correct first dose has no findings: {}",
        first.text
    );

    // The rule through $validate, without writing.
    let validated = app
        .post(
            "Immunization/$validate",
            &dose(pid, "dpt-ipv-hib", "2024-04-16", 2),
        )
        .await;
    assert_eq!(validated.status, 200, "{}", validated.text);
    assert!(validated.text.contains("2024-04-22"), "{}", validated.text);

    let early = post_with_outcome(&app, &dose(pid, "dpt-ipv-hib", "2024-04-15", 2)).await;
    assert_eq!(
        early.status, 201,
        "warn mode stores the dose: {}",
        early.text
    );
    let outcome = early.json();
    let findings = issues_with_code(&outcome, "business-rule");
    assert!(
        !findings.is_empty(),
        "the interval is reported: {}",
        early.text
    );
    let finding = findings[0];
    assert_eq!(finding["severity"], "warning");
    assert_eq!(finding["expression"][0], "Immunization.occurrenceDateTime");
    let text = finding["diagnostics"].as_str().unwrap();
    assert!(
        text.contains("2024-04-22"),
        "names the first allowed day: {text}"
    );
    assert!(text.contains("source:"), "names the source: {text}");
}

#[tokio::test]
async fn reject_mode_refuses_the_wrong_vaccination_and_stores_nothing() {
    let app = TestApp::spawn_with(|c| {
        c.vaccination.on_violation = gateway::config::OnViolation::Reject;
    })
    .await;
    let patient = app.create(&child("2024-01-10")).await;
    let pid = patient["id"].as_str().unwrap();
    app.create(&dose(pid, "dpt-ipv-hib", "2024-04-01", 1)).await;

    let early = app
        .post("Immunization", &dose(pid, "dpt-ipv-hib", "2024-04-21", 2))
        .await;
    assert_eq!(early.status, 422, "{}", early.text);
    let outcome = early.json();
    let errors = issues_with_code(&outcome, "business-rule");
    assert_eq!(errors[0]["severity"], "error", "{}", early.text);

    // Day 21 after the first dose is the first allowed day: accepted.
    let on_time = app
        .post("Immunization", &dose(pid, "dpt-ipv-hib", "2024-04-22", 2))
        .await;
    assert_eq!(on_time.status, 201, "{}", on_time.text);

    let stored = app
        .get(&format!(
            "Immunization?patient=Patient/{pid}&_summary=count"
        ))
        .await
        .json();
    assert_eq!(stored["total"], 2, "the refused dose was not stored");

    // A transaction with a refused entry stores none of its entries.
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"resource": dose(pid, "bcg", "2024-06-10", 1), "request": {"method": "POST", "url": "Immunization"}},
            {"resource": dose(pid, "dpt-ipv-hib", "2024-05-01", 3), "request": {"method": "POST", "url": "Immunization"}}
        ]
    });
    let refused = app.post("", &bundle).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(
        refused
            .text
            .contains("Bundle.entry[1].resource.occurrenceDateTime"),
        "{}",
        refused.text
    );
    let stored = app
        .get(&format!(
            "Immunization?patient=Patient/{pid}&_summary=count"
        ))
        .await
        .json();
    assert_eq!(stored["total"], 2);
}

fn recommendations_for<'a>(recommendation: &'a Value, vaccine: &str) -> Vec<&'a Value> {
    recommendation["recommendation"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["vaccineCode"][0]["coding"][0]["code"] == vaccine)
        .collect()
}

fn criterion(entry: &Value, loinc: &str) -> Option<String> {
    entry["dateCriterion"].as_array().and_then(|list| {
        list.iter()
            .find(|c| c["code"]["coding"][0]["code"] == loinc)
            .and_then(|c| c["value"].as_str().map(str::to_owned))
    })
}

fn musubi_status(entry: &Value) -> &str {
    entry["forecastStatus"]["coding"][0]["code"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn schedule_gives_due_dates_from_birth_date_and_stored_doses() {
    let app = TestApp::spawn().await;
    let patient = app.create(&child("2024-01-10")).await;
    let pid = patient["id"].as_str().unwrap().to_owned();
    let first = app
        .create(&dose(&pid, "dpt-ipv-hib", "2024-04-01", 1))
        .await;

    let response = app
        .get(&format!(
            "Patient/{pid}/$immunization-schedule?date=2024-04-10"
        ))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    let recommendation = response.json();
    assert_eq!(recommendation["resourceType"], "ImmunizationRecommendation");
    assert_eq!(
        recommendation["patient"]["reference"],
        format!("Patient/{pid}")
    );

    let five = recommendations_for(&recommendation, "dpt-ipv-hib");
    let given = five
        .iter()
        .find(|r| r["doseNumberPositiveInt"] == 1)
        .expect("dose 1 listed");
    assert_eq!(musubi_status(given), "complete");
    assert_eq!(
        given["supportingImmunization"][0]["reference"],
        format!("Immunization/{}", first["id"].as_str().unwrap())
    );
    let second = five
        .iter()
        .find(|r| r["doseNumberPositiveInt"] == 2)
        .expect("dose 2 listed");
    // 20日以上 after 2024-04-01: from 2024-04-22; on 2024-04-10 it is not yet possible.
    assert_eq!(criterion(second, "30981-5").as_deref(), Some("2024-04-22"));
    assert_eq!(musubi_status(second), "upcoming");

    // BCG: 1歳に至るまで — the last publicly funded day is the day before the 1st birthday
    // minus nothing more: born 2024-01-10 reaches age 1 on 2025-01-09.
    let bcg = recommendations_for(&recommendation, "bcg");
    assert_eq!(criterion(bcg[0], "59777-3").as_deref(), Some("2025-01-09"));

    // HPV is routine for girls from the fiscal year of their 12th birthday, so for this baby
    // it is listed and far in the future, never due.
    for entry in recommendations_for(&recommendation, "hpv-9") {
        assert_ne!(musubi_status(entry), "due");
    }

    // Unknown patient and bad date are clear errors.
    assert_eq!(
        app.get("Patient/nobody/$immunization-schedule")
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(&format!(
            "Patient/{pid}/$immunization-schedule?date=2024-13-01"
        ))
        .await
        .status,
        400
    );
}

#[tokio::test]
async fn jp_core_profiles_are_checked_on_write_and_by_validate() {
    let app = TestApp::spawn().await;
    // A resource claiming JP_Patient without the identifier JP Core requires is refused.
    let mut no_identifier = child("2020-02-29");
    no_identifier.as_object_mut().unwrap().remove("identifier");
    let refused = app.post("Patient", &no_identifier).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(
        refused.text.contains("Patient.identifier"),
        "{}",
        refused.text
    );

    // $validate lists every issue with its expression and answers 200.
    let mut broken = no_identifier.clone();
    broken["name"][0]["extension"][0]["valueCode"] = json!("KANJI");
    let outcome = app.post("Patient/$validate", &broken).await;
    assert_eq!(outcome.status, 200, "{}", outcome.text);
    let expressions: Vec<String> = outcome.json()["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["severity"] == "error")
        .filter_map(|i| i["expression"][0].as_str().map(str::to_owned))
        .collect();
    assert!(
        expressions.iter().any(|e| e == "Patient.identifier"),
        "{expressions:?}"
    );
    assert!(
        expressions
            .iter()
            .any(|e| e.starts_with("Patient.name[0].extension[0]")),
        "{expressions:?}"
    );

    // A valid JP Core patient passes, also as a Parameters body with an explicit profile.
    let parameters = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": child("2020-02-29")},
            {"name": "profile", "valueCanonical": JP_PATIENT}
        ]
    });
    let ok = app.post("$validate", &parameters).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(
        !ok.json()["issue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["severity"] == "error"),
        "{}",
        ok.text
    );
    let unknown = app
        .post(
            "$validate",
            &json!({"resourceType": "Parameters", "parameter": [
                {"name": "resource", "resource": child("2020-02-29")},
                {"name": "profile", "valueCanonical": "http://example.org/StructureDefinition/none"}
            ]}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
}

#[tokio::test]
async fn enforced_types_must_conform_even_without_claiming_a_profile() {
    let app = TestApp::spawn_with(|c| c.profiles.enforce = vec!["Patient".into()]).await;
    let plain = json!({"resourceType": "Patient", "birthDate": "2020-01-01"});
    let refused = app.post("Patient", &plain).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(app.post("Patient", &child("2020-01-01")).await.status, 201);
}

#[tokio::test]
async fn terminology_lookup_and_validate_code() {
    let app = TestApp::spawn().await;
    let lookup = app
        .get(&format!(
            "CodeSystem/$lookup?system={VACCINE_TYPE}&code=bcg"
        ))
        .await;
    assert_eq!(lookup.status, 200, "{}", lookup.text);
    let parameters = lookup.json();
    assert_eq!(parameters["resourceType"], "Parameters");
    let display = parameters["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "display")
        .and_then(|p| p["valueString"].as_str())
        .unwrap();
    assert!(display.contains("BCG"), "{display}");

    // The legacy OID form of a system is accepted.
    let oid = app
        .get("CodeSystem/$lookup?system=urn:oid:1.2.392.200119.4.101.6&code=ES0L")
        .await;
    assert_eq!(oid.status, 200, "{}", oid.text);
    assert_eq!(
        app.get(&format!(
            "CodeSystem/$lookup?system={VACCINE_TYPE}&code=nope"
        ))
        .await
        .status,
        404
    );

    let value_set = "https://musubi.example.org/fhir/ValueSet/vaccine-type";
    let member = app
        .get(&format!(
            "ValueSet/$validate-code?url={value_set}&system={VACCINE_TYPE}&code=mr"
        ))
        .await;
    assert_eq!(member.status, 200, "{}", member.text);
    assert!(
        member.text.contains("\"valueBoolean\":true"),
        "{}",
        member.text
    );
    let outsider = app
        .get(&format!(
            "ValueSet/$validate-code?url={value_set}&system={VACCINE_TYPE}&code=smallpox"
        ))
        .await;
    assert!(
        outsider.text.contains("\"valueBoolean\":false"),
        "{}",
        outsider.text
    );

    // The CodeSystems are stored resources too, readable and searchable.
    let found = app
        .get(&format!("CodeSystem?url={VACCINE_TYPE}"))
        .await
        .json();
    assert_eq!(match_ids(&found).len(), 1, "{found}");
}

fn answer(link_id: &str, value: Value) -> Value {
    json!({"linkId": link_id, "answer": [value]})
}

fn response_with_temperature(patient_id: &str, temperature: &str) -> Value {
    let temperature: Value = serde_json::from_str(temperature).unwrap();
    json!({
        "resourceType": "QuestionnaireResponse",
        "questionnaire": CHILD_FORM,
        "status": "in-progress",
        "subject": {"reference": format!("Patient/{patient_id}")},
        "authored": "2024-04-01T09:30:00+09:00",
        "item": [{
            "linkId": "header",
            "item": [
                answer("guardian-name", json!({"valueString": "結城　一郎"})),
                answer("body-temperature", json!({"valueDecimal": temperature}))
            ]
        }]
    })
}

#[tokio::test]
async fn prevaccination_questionnaire_is_served_validated_and_assessed() {
    let app = TestApp::spawn().await;
    let forms = app
        .get(&format!("Questionnaire?url={CHILD_FORM}"))
        .await
        .json();
    assert_eq!(
        match_ids(&forms).len(),
        1,
        "the built-in form is served: {forms}"
    );

    let patient = app.create(&child("2024-01-10")).await;
    let pid = patient["id"].as_str().unwrap();

    // A fever at exactly 37.5 ℃ makes the child not eligible today.
    let feverish = response_with_temperature(pid, "37.5");
    let assessed = app.post("QuestionnaireResponse/$assess", &feverish).await;
    assert_eq!(assessed.status, 200, "{}", assessed.text);
    assert!(
        assessed.text.contains("not-eligible-today"),
        "{}",
        assessed.text
    );
    let fine = app
        .post(
            "QuestionnaireResponse/$assess",
            &response_with_temperature(pid, "37.4"),
        )
        .await;
    assert!(!fine.text.contains("not-eligible-today"), "{}", fine.text);

    // Stored, then assessed by id.
    let stored = app.create(&feverish).await;
    let by_id = app
        .get(&format!(
            "QuestionnaireResponse/{}/$assess",
            stored["id"].as_str().unwrap()
        ))
        .await;
    assert!(by_id.text.contains("not-eligible-today"), "{}", by_id.text);

    // An answer of the wrong type is refused on write, with its place.
    let mut wrong = response_with_temperature(pid, "36.5");
    wrong["item"][0]["item"][1]["answer"][0] = json!({"valueString": "平熱"});
    let refused = app.post("QuestionnaireResponse", &wrong).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(
        refused
            .text
            .contains("QuestionnaireResponse.item[0].item[1].answer[0]"),
        "{}",
        refused.text
    );
}

#[tokio::test]
async fn vaccine_barcodes_are_read_and_bad_check_digits_refused() {
    let app = TestApp::spawn().await;
    // GTIN 04987123456784 (check digit 4), expiry 2027-03-31, lot AB123 at the end.
    let good = app
        .post(
            "Immunization/$from-barcode",
            &json!({"resourceType": "Parameters", "parameter": [
                {"name": "barcode", "valueString": "(01)04987123456784(17)270331(10)AB123"}
            ]}),
        )
        .await;
    assert_eq!(good.status, 200, "{}", good.text);
    let text = good.text;
    assert!(text.contains("AB123"), "{text}");
    assert!(text.contains("2027-03-31"), "{text}");

    // The raw scanner form with a GS separator after the lot, percent-encoded in the query.
    let raw = app
        .get("Immunization/$from-barcode?barcode=%5Dd2010498712345678410LOT9%1D17270300")
        .await;
    assert_eq!(raw.status, 200, "{}", raw.text);
    assert!(raw.text.contains("LOT9"), "{}", raw.text);
    assert!(
        raw.text.contains("2027-03-31"),
        "DD=00 is the month's last day: {}",
        raw.text
    );

    let bad = app
        .get("Immunization/$from-barcode?barcode=(01)04987123456789(10)X")
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert!(bad.text.contains("check digit"), "{}", bad.text);
}

#[tokio::test]
async fn capability_statement_lists_operations_and_profiles() {
    let app = TestApp::spawn().await;
    let statement = app.get("metadata").await.json();
    let patient = statement["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()
        .clone();
    let operations: Vec<&str> = patient["operation"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert!(
        operations.contains(&"immunization-schedule"),
        "{operations:?}"
    );
    assert!(operations.contains(&"validate"), "{operations:?}");
    assert!(
        patient["supportedProfile"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == JP_PATIENT)
    );
}

#[tokio::test]
async fn extra_data_files_extend_the_tables_without_a_rebuild() {
    let extra = tempfile::tempdir().unwrap();
    std::fs::create_dir(extra.path().join("terminology")).unwrap();
    std::fs::write(
        extra.path().join("terminology/gtin-clinic.json"),
        r#"{"description": "a clinic's own fixture table", "products": [
            {"gtin": "04987123456784", "name": "テスト用ＭＲワクチン", "vaccineType": "mr",
             "source": "test fixture, not a real product"}]}"#,
    )
    .unwrap();
    let dir = extra.path().to_owned();
    let app = TestApp::spawn_with(|c| c.profiles.extra_dir = Some(dir)).await;
    let read = app
        .get("Immunization/$from-barcode?barcode=(01)04987123456784(17)270331(10)AB123")
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert!(
        read.text.contains("テスト用ＭＲワクチン") || read.text.contains("\"mr\""),
        "{}",
        read.text
    );
    assert!(
        read.text.contains("\"valueBoolean\":true"),
        "the product is known: {}",
        read.text
    );
}

#[test]
fn a_table_naming_an_unknown_vaccine_type_stops_the_start() {
    let extra = tempfile::tempdir().unwrap();
    std::fs::create_dir(extra.path().join("terminology")).unwrap();
    std::fs::write(
        extra.path().join("terminology/gtin-typo.json"),
        r#"{"description": "a typo", "products": [{"gtin": "04987123456784", "name": "x", "vaccineType": "mmr",
            "source": "test fixture"}]}"#,
    )
    .unwrap();
    let error = gateway::domain::Domain::load(Some(extra.path()))
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("\"mmr\""), "{error}");
    assert!(error.contains("vaccine barcodes"), "{error}");
}

#[tokio::test]
async fn rules_see_the_patient_and_doses_of_the_same_transaction() {
    let app = TestApp::spawn().await;
    // A clinic sends a new child and two 5種混合 doses 14 days apart in one transaction.
    let mut patient = child("2024-01-10");
    patient.as_object_mut().unwrap().remove("meta");
    let mut first = dose("x", "dpt-ipv-hib", "2024-04-01", 1);
    let mut second = dose("x", "dpt-ipv-hib", "2024-04-15", 2);
    for immunization in [&mut first, &mut second] {
        immunization["patient"] =
            json!({"reference": "urn:uuid:7d9f0c2e-0b1a-4c5e-9a3b-1f2e3d4c5b6a"});
    }
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:7d9f0c2e-0b1a-4c5e-9a3b-1f2e3d4c5b6a", "resource": patient,
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": first, "request": {"method": "POST", "url": "Immunization"}},
            {"resource": second, "request": {"method": "POST", "url": "Immunization"}}
        ]
    });
    let response = app.post("", &bundle).await;
    assert_eq!(response.status, 200, "{}", response.text);
    let entries = response.json()["entry"].as_array().unwrap().clone();
    let outcome = &entries[2]["response"]["outcome"];
    let findings = issues_with_code(outcome, "business-rule");
    assert!(
        !findings.is_empty(),
        "the second dose is checked against the first: {}",
        response.text
    );
    assert_eq!(
        findings[0]["expression"][0], "Bundle.entry[2].resource.occurrenceDateTime",
        "{outcome}"
    );
    assert!(
        findings[0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("2024-04-22")
    );
    assert!(
        issues_with_code(&entries[1]["response"]["outcome"], "business-rule").is_empty(),
        "the first dose is fine: {}",
        response.text
    );
}
