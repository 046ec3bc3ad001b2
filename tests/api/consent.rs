//! Consent enforcement and the audit trail end to end: municipalities, a medical association
//! and a clinic read one family's records through every exit; consents permit, deny, redact and
//! are revoked; every disclosure, refusal and write leaves an AuditEvent a parent can list.

use musubi_tests::{
    ACCOUNT_SYSTEM as ACCOUNT, Response, TEST_CLIENT_SECRET, TestApp, client_credentials_token,
    parent, phr_app, system_client,
};
use serde_json::{Value, json};

pub(crate) const CHIYODA: &str = "131016";
pub(crate) const CHUO: &str = "131024";
const MUNICIPALITY_EXTENSION: &str =
    "https://musubi.example.org/fhir/StructureDefinition/municipality-code";
const PHR: &str = "consent-test-phr";

/// A municipality client of `code` with every read scope.
fn municipality(id: &str, code: &str) -> auth::Client {
    let mut client = system_client(id, auth::ClientKind::Municipality, &["system/*.rs"]);
    client.municipality_code = Some(code.to_owned());
    client
}

fn phr_client() -> auth::Client {
    phr_app(PHR, &["patient/*.rs", "launch/patient", "fhirUser"])
}

/// The test server with two municipalities (千代田区 is the family's home, 中央区 is not), a
/// medical association, a PHR app and one parent; `adjust` changes the configuration further.
pub(crate) async fn spawn(adjust: impl FnOnce(&mut gateway::config::Config)) -> TestApp {
    TestApp::spawn_with(|config| {
        config.clients.push(municipality("city-chiyoda", CHIYODA));
        config.clients.push(municipality("city-chuo", CHUO));
        config.clients.push(system_client(
            "med-assoc",
            auth::ClientKind::MedicalAssociation,
            &["system/*.rs"],
        ));
        config.clients.push(phr_client());
        config.auth.users = vec![parent("parent-a")];
        adjust(config);
    })
    .await
}

/// One family in 千代田区: child-a with a consultation (Encounter), two Conditions, a routine
/// and a voluntary vaccination; and child-b of another family with a consultation.
pub(crate) async fn seed(app: &TestApp) {
    for (child, account) in [("child-a", "parent-a"), ("child-b", "parent-b")] {
        app.upsert(
            json!({"resourceType": "Patient", "id": child, "birthDate": "2024-05-10",
            "name": [{"text": format!("子 {child}")}],
            "address": [{"use": "home", "city": "千代田区",
                "extension": [{"url": MUNICIPALITY_EXTENSION, "valueCode": CHIYODA}]}]}),
        )
        .await;
        app.upsert(
            json!({"resourceType": "RelatedPerson", "id": format!("rp-{child}"), "active": true,
            "identifier": [{"system": ACCOUNT, "value": account}],
            "patient": {"reference": format!("Patient/{child}")}}),
        )
        .await;
        app.upsert(
            json!({"resourceType": "Encounter", "id": format!("enc-{child}"), "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"text": "育児相談"}], "reasonCode": [{"text": "夜泣き・授乳困難"}],
            "subject": {"reference": format!("Patient/{child}")},
            "period": {"start": "2025-05-20T14:00:00+09:00"}}),
        )
        .await;
    }
    for id in ["cond-1", "cond-2"] {
        app.upsert(json!({"resourceType": "Condition", "id": id,
            "code": {"text": "育児不安"}, "subject": {"reference": "Patient/child-a"}}))
            .await;
    }
    for (id, funding) in [("imm-routine", "routine"), ("imm-voluntary", "voluntary")] {
        app.upsert(json!({"resourceType": "Immunization", "id": id, "status": "completed",
            "vaccineCode": {"coding": [{"system": "https://musubi.example.org/fhir/CodeSystem/vaccine-type", "code": "hib"}]},
            "patient": {"reference": "Patient/child-a"}, "occurrenceDateTime": "2024-07-10",
            "primarySource": true,
            "fundingSource": {"coding": [{"system": "https://musubi.example.org/fhir/CodeSystem/funding-source", "code": funding}]}}))
        .await;
    }
}

/// A privacy consent of child-a given by the guardian, with `provision` as the root.
pub(crate) fn consent(id: &str, date_time: &str, status: &str, provision: Value) -> Value {
    json!({
        "resourceType": "Consent", "id": id, "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/child-a"},
        "dateTime": date_time,
        "performer": [{"reference": "RelatedPerson/rp-child-a"}],
        "provision": provision
    })
}

pub(crate) fn to_municipality(code: &str) -> Value {
    json!({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
           "reference": {"identifier": {"system": "https://musubi.example.org/fhir/IdSystem/municipality-code", "value": code}}})
}

pub(crate) fn purpose(code: &str) -> Value {
    json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": code}])
}

pub(crate) fn classes(codes: &[&str]) -> Value {
    codes
        .iter()
        .map(|c| json!({"system": "https://musubi.example.org/fhir/CodeSystem/data-class", "code": c}))
        .collect()
}

/// Consultations (and demographics) of child-a to 千代田区 for public health.
pub(crate) fn permit_consultations(id: &str) -> Value {
    consent(
        id,
        "2025-04-01T09:00:00+09:00",
        "active",
        json!({"type": "permit", "actor": [to_municipality(CHIYODA)], "purpose": purpose("PUBHLTH"),
               "class": classes(&["consultations", "demographics"])}),
    )
}

pub(crate) async fn token_of(app: &TestApp, client_id: &str) -> String {
    client_credentials_token(
        &app.anonymous(),
        &app.root,
        client_id,
        TEST_CLIENT_SECRET,
        None,
    )
    .await
    .expect("client token")
}

pub(crate) async fn get_as(app: &TestApp, token: &str, path: &str) -> Response {
    app.send(
        app.anonymous()
            .get(app.url(path))
            .bearer_auth(token)
            .header("accept", "application/fhir+json"),
    )
    .await
}

pub(crate) fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| {
                    Some(format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str()?,
                        e["resource"]["id"].as_str()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The AuditEvents about `entity`, read as the test clinic (it holds `system/*.cruds`).
pub(crate) async fn audit_about(app: &TestApp, entity: &str) -> Vec<Value> {
    let r = app
        .get(&format!("AuditEvent?entity={entity}&_count=100"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

/// The decision details an AuditEvent records for `what` (`{type}/{id}` of the record).
pub(crate) fn details(event: &Value, what: &str) -> Vec<(String, String)> {
    event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["what"]["reference"]
                .as_str()
                .is_some_and(|r| r.starts_with(&format!("{what}/_history/")))
        })
        .flat_map(|e| e["detail"].as_array().cloned().unwrap_or_default())
        .map(|d| {
            (
                d["type"].as_str().unwrap_or_default().to_owned(),
                d["valueString"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

pub(crate) fn detail<'a>(details: &'a [(String, String)], name: &str) -> Option<&'a str> {
    details
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn agent_ids(event: &Value) -> Vec<String> {
    event["agent"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            a["who"]["identifier"]["value"]
                .as_str()
                .or(a["who"]["reference"].as_str())
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn a_municipality_sees_a_consultation_only_with_consent() {
    let app = spawn(|_| {}).await;
    seed(&app).await;
    let city = token_of(&app, "city-chiyoda").await;

    for path in [
        "Encounter/enc-child-a",
        "Condition/cond-1",
        "Patient/child-a",
    ] {
        let r = get_as(&app, &city, path).await;
        assert_eq!(r.status, 404, "{path} without consent: {}", r.text);
    }
    app.upsert(permit_consultations("consent-a1")).await;
    for path in [
        "Encounter/enc-child-a",
        "Condition/cond-1",
        "Patient/child-a",
    ] {
        let r = get_as(&app, &city, path).await;
        assert_eq!(r.status, 200, "{path} with consent: {}", r.text);
    }
    // The consent is child-a's: the other family's consultation stays hidden.
    assert_eq!(
        get_as(&app, &city, "Encounter/enc-child-b").await.status,
        404
    );
    // A medical association is not named by the consent (and billing is opt-in).
    let association = token_of(&app, "med-assoc").await;
    assert_eq!(
        get_as(&app, &association, "Encounter/enc-child-a")
            .await
            .status,
        404
    );
    // The clinic treats under an opt-out base policy: it sees both families.
    assert_eq!(app.get("Encounter/enc-child-b").await.status, 200);
}

#[tokio::test]
async fn a_routine_vaccination_reaches_the_home_municipality_by_law_and_no_other() {
    let app = spawn(|_| {}).await;
    seed(&app).await;
    let home = token_of(&app, "city-chiyoda").await;
    let other = token_of(&app, "city-chuo").await;

    assert_eq!(
        get_as(&app, &home, "Immunization/imm-routine").await.status,
        200
    );
    assert_eq!(
        get_as(&app, &other, "Immunization/imm-routine")
            .await
            .status,
        404
    );
    // A voluntary vaccination has no legal basis: consent needed, even at home.
    assert_eq!(
        get_as(&app, &home, "Immunization/imm-voluntary")
            .await
            .status,
        404
    );

    let bundle = get_as(
        &app,
        &home,
        "Immunization?patient=Patient/child-a&_include=Immunization:patient",
    )
    .await
    .json();
    assert_eq!(bundle["total"], 1, "{bundle}");
    // The legal basis covers the vaccination, not the child's demographics.
    assert_eq!(entry_ids(&bundle), vec!["Immunization/imm-routine"]);
    let none = get_as(&app, &other, "Immunization?patient=Patient/child-a")
        .await
        .json();
    assert_eq!(none["total"], 0, "{none}");

    // The refusal and the disclosure are both on record, with the legal basis used.
    let events = audit_about(&app, "Immunization/imm-routine").await;
    let home_read = events
        .iter()
        .find(|e| {
            agent_ids(e).contains(&"city-chiyoda".to_owned()) && e["subtype"][0]["code"] == "read"
        })
        .expect("the home municipality's read is audited");
    let d = details(home_read, "Immunization/imm-routine");
    assert_eq!(detail(&d, "decision"), Some("permit"));
    assert_eq!(detail(&d, "reason"), Some("legal-basis"));
    assert_eq!(
        detail(&d, "legal-basis"),
        Some("routine-vaccination-record-home-municipality")
    );
    assert_eq!(
        home_read["purposeOfEvent"][0]["coding"][0]["code"],
        "PUBHLTH"
    );
    let refused = events
        .iter()
        .find(|e| {
            agent_ids(e).contains(&"city-chuo".to_owned()) && e["subtype"][0]["code"] == "read"
        })
        .expect("the other municipality's refusal is audited");
    assert_eq!(refused["outcome"], "4");
    let d = details(refused, "Immunization/imm-routine");
    assert_eq!(detail(&d, "decision"), Some("deny"));
    assert_eq!(detail(&d, "disclosed"), Some("false"));
}

#[tokio::test]
async fn a_deny_nested_in_a_permit_hides_that_record_from_totals_and_counts() {
    let app = spawn(|_| {}).await;
    seed(&app).await;
    let mut provision = permit_consultations("x")["provision"].clone();
    provision["provision"] = json!([{"type": "deny",
        "data": [{"meaning": "instance", "reference": {"reference": "Condition/cond-2"}}]}]);
    app.upsert(consent(
        "consent-nested",
        "2025-04-01T09:00:00+09:00",
        "active",
        provision,
    ))
    .await;
    let city = token_of(&app, "city-chiyoda").await;

    assert_eq!(get_as(&app, &city, "Condition/cond-1").await.status, 200);
    assert_eq!(get_as(&app, &city, "Condition/cond-2").await.status, 404);
    assert_eq!(
        get_as(&app, &city, "Condition/cond-2/_history/1")
            .await
            .status,
        404
    );
    assert_eq!(
        get_as(&app, &city, "Condition/cond-2/_history")
            .await
            .status,
        404
    );

    let searched = get_as(&app, &city, "Condition?subject=Patient/child-a")
        .await
        .json();
    assert_eq!(searched["total"], 1, "{searched}");
    assert_eq!(entry_ids(&searched), vec!["Condition/cond-1"]);
    let counted = get_as(&app, &city, "Condition?_summary=count").await.json();
    assert_eq!(counted["total"], 1, "{counted}");
    // Paging counts after filtering: one page of one, no next page.
    let paged = get_as(&app, &city, "Condition?_count=1").await.json();
    assert_eq!(paged["total"], 1);
    assert!(
        paged["link"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["relation"] != "next"),
        "{paged}"
    );
    // The clinic still sees both.
    assert_eq!(app.get("Condition?_summary=count").await.json()["total"], 2);

    // A batch GET goes through the same decision.
    let batch = app
        .send(
            app.anonymous()
                .post(app.url(""))
                .bearer_auth(&city)
                .header("content-type", "application/fhir+json")
                .body(
                    json!({"resourceType": "Bundle", "type": "batch", "entry": [
                    {"request": {"method": "GET", "url": "Condition/cond-2"}},
                    {"request": {"method": "GET", "url": "Condition/cond-1"}}]})
                    .to_string(),
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
    assert_eq!(batch["entry"][1]["response"]["status"], "200 OK");
}

#[tokio::test]
async fn identity_only_sharing_shows_who_and_when_but_no_content() {
    let app = spawn(|_| {}).await;
    seed(&app).await;
    app.upsert(consent("consent-identity", "2025-04-01T09:00:00+09:00", "active", json!({
        "type": "permit", "actor": [to_municipality(CHIYODA)], "purpose": purpose("PUBHLTH"),
        "class": classes(&["consultations"]),
        "modifierExtension": [{"url": "https://musubi.example.org/fhir/StructureDefinition/consent-sharing-level", "valueCode": "identity-only"}]})))
    .await;
    let city = token_of(&app, "city-chiyoda").await;
    let r = get_as(&app, &city, "Encounter/enc-child-a").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let encounter = r.json();
    assert_eq!(encounter["meta"]["security"][0]["code"], "REDACTED");
    assert_eq!(encounter["subject"]["reference"], "Patient/child-a");
    assert_eq!(encounter["period"]["start"], "2025-05-20T14:00:00+09:00");
    for gone in ["type", "reasonCode", "class"] {
        assert!(encounter.get(gone).is_none(), "{gone} leaked: {encounter}");
    }
    let searched = get_as(&app, &city, "Encounter?subject=Patient/child-a")
        .await
        .json();
    assert_eq!(searched["total"], 1);
    assert!(
        searched["entry"][0]["resource"].get("reasonCode").is_none(),
        "{searched}"
    );

    let events = audit_about(&app, "Encounter/enc-child-a").await;
    assert!(
        events
            .iter()
            .any(|e| detail(&details(e, "Encounter/enc-child-a"), "decision")
                == Some("identity-only")),
        "{events:#?}"
    );
}

#[tokio::test]
async fn a_revoked_consent_stops_the_next_read() {
    let app = spawn(|_| {}).await;
    seed(&app).await;
    app.upsert(permit_consultations("consent-revocable")).await;
    let city = token_of(&app, "city-chiyoda").await;
    assert_eq!(
        get_as(&app, &city, "Encounter/enc-child-a").await.status,
        200
    );

    let mut revoked = permit_consultations("consent-revocable");
    revoked["status"] = json!("inactive");
    app.upsert(revoked).await;
    let r = get_as(&app, &city, "Encounter/enc-child-a").await;
    assert_eq!(r.status, 404, "{}", r.text);

    // Both decisions are on record, each citing the consent version it used.
    let events = audit_about(&app, "Encounter/enc-child-a").await;
    let mut by_city: Vec<&Value> = events
        .iter()
        .filter(|e| agent_ids(e).contains(&"city-chiyoda".to_owned()))
        .collect();
    by_city.sort_by_key(|e| e["recorded"].as_str().unwrap_or_default().to_owned());
    assert_eq!(by_city.len(), 2, "{events:#?}");
    let first = details(by_city[0], "Encounter/enc-child-a");
    assert_eq!(detail(&first, "decision"), Some("permit"));
    assert_eq!(
        detail(&first, "consent"),
        Some("Consent/consent-revocable/_history/1")
    );
    let second = details(by_city[1], "Encounter/enc-child-a");
    assert_eq!(detail(&second, "decision"), Some("deny"));
    assert_eq!(detail(&second, "reason"), Some("base-policy-opt-in"));
    // The consent is an entity of the disclosure, so its own trail is searchable.
    assert!(
        !audit_about(&app, "Consent/consent-revocable")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_move_to_another_municipality_counts_for_the_very_next_read() {
    // The consent facts (consents, home municipality) are reused between requests; a Patient
    // write must end that at once, like a Consent write does.
    let app = spawn(|_| {}).await;
    seed(&app).await;
    let chiyoda = token_of(&app, "city-chiyoda").await;
    let chuo = token_of(&app, "city-chuo").await;
    for _ in 0..2 {
        let r = get_as(&app, &chiyoda, "Immunization/imm-routine").await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(
        get_as(&app, &chuo, "Immunization/imm-routine").await.status,
        404
    );
    app.upsert(
        json!({"resourceType": "Patient", "id": "child-a", "birthDate": "2024-05-10",
        "name": [{"text": "子 child-a"}],
        "address": [{"use": "home", "city": "中央区",
            "extension": [{"url": MUNICIPALITY_EXTENSION, "valueCode": CHUO}]}]}),
    )
    .await;
    assert_eq!(
        get_as(&app, &chiyoda, "Immunization/imm-routine")
            .await
            .status,
        404
    );
    let r = get_as(&app, &chuo, "Immunization/imm-routine").await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn every_refusal_and_disclosure_of_a_search_is_audited_per_patient() {
    let app = spawn(|_| {}).await;
    seed(&app).await;
    app.upsert(permit_consultations("consent-a")).await;
    let city = token_of(&app, "city-chiyoda").await;
    let r = get_as(&app, &city, "Encounter").await.json();
    assert_eq!(entry_ids(&r), vec!["Encounter/enc-child-a"], "{r}");

    let about_a = audit_about(&app, "Patient/child-a").await;
    let search_a = about_a
        .iter()
        .find(|e| e["subtype"][0]["code"] == "search-type")
        .expect("search audited for child-a");
    assert_eq!(search_a["action"], "E");
    assert_eq!(
        detail(&details(search_a, "Encounter/enc-child-a"), "consent"),
        Some("Consent/consent-a/_history/1")
    );
    // child-b's refusal is a separate AuditEvent: child-a's trail names nobody else.
    assert!(!search_a.to_string().contains("child-b"), "{search_a}");
    let about_b = audit_about(&app, "Patient/child-b").await;
    let search_b = about_b
        .iter()
        .find(|e| e["subtype"][0]["code"] == "search-type")
        .expect("refusal audited for child-b");
    assert_eq!(search_b["outcome"], "4");
    assert_eq!(
        detail(&details(search_b, "Encounter/enc-child-b"), "decision"),
        Some("deny")
    );
}

#[tokio::test]
async fn writes_are_audited_in_their_own_commit() {
    let app = spawn(|_| {}).await;
    let created = app
        .create(&json!({"resourceType": "Patient", "name": [{"text": "山田 花子"}]}))
        .await;
    let id = created["id"].as_str().unwrap();
    let events = audit_about(&app, &format!("Patient/{id}")).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["action"], "C");
    assert_eq!(events[0]["subtype"][0]["code"], "create");
    assert_eq!(agent_ids(&events[0]), vec![musubi_tests::TEST_CLIENT_ID]);
    assert_eq!(events[0]["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
    // Reading an AuditEvent is never audited itself.
    assert_eq!(audit_about(&app, &format!("Patient/{id}")).await.len(), 1);

    // A transaction rolled back by a failing entry leaves neither the write nor its AuditEvent.
    let r = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "tx-new"},
             "request": {"method": "PUT", "url": "Patient/tx-new"}},
            {"resource": {"resourceType": "Patient", "id": id, "active": true},
             "request": {"method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"9\""}}]}),
        )
        .await;
    assert_eq!(r.status, 412, "{}", r.text);
    assert_eq!(app.get("Patient/tx-new").await.status, 404);
    assert!(audit_about(&app, "Patient/tx-new").await.is_empty());
    assert_eq!(audit_about(&app, &format!("Patient/{id}")).await.len(), 1);

    // A committed transaction audits each write; a delete names the patient it removed.
    let r = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "tx-new"},
             "request": {"method": "PUT", "url": "Patient/tx-new"}},
            {"request": {"method": "DELETE", "url": format!("Patient/{id}")}}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(audit_about(&app, "Patient/tx-new").await[0]["action"], "U");
    let actions: Vec<Value> = audit_about(&app, &format!("Patient/{id}"))
        .await
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert!(actions.contains(&json!("D")), "{actions:?}");
}

#[tokio::test]
async fn read_audit_can_be_switched_off_but_writes_stay_audited() {
    let app = spawn(|config| config.audit.reads = gateway::config::ReadAudit::Off).await;
    seed(&app).await;
    let city = token_of(&app, "city-chiyoda").await;
    assert_eq!(
        get_as(&app, &city, "Immunization/imm-routine").await.status,
        200
    );
    let events = audit_about(&app, "Immunization/imm-routine").await;
    assert!(events.iter().all(|e| e["action"] != "R"), "{events:#?}");
    assert!(
        events.iter().any(|e| e["action"] == "U"),
        "the seeding PUT is audited"
    );
}

#[tokio::test]
async fn the_purpose_of_use_header_is_limited_per_kind() {
    let app = spawn(|_| {}).await;
    seed(&app).await;
    app.upsert(permit_consultations("consent-pubhlth")).await;
    let city = token_of(&app, "city-chiyoda").await;
    let with_purpose = |code: &str| {
        app.anonymous()
            .get(app.url("Encounter/enc-child-a"))
            .bearer_auth(&city)
            .header("x-purpose-of-use", code)
    };
    assert_eq!(app.send(with_purpose("PUBHLTH")).await.status, 200);
    // Care coordination is allowed for a municipality, but the consent is for public health.
    assert_eq!(app.send(with_purpose("COC")).await.status, 404);
    let refused = app.send(with_purpose("TREAT")).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused.text.contains("PUBHLTH"),
        "names the allowed purposes: {}",
        refused.text
    );
    assert_eq!(app.send(with_purpose("not a code")).await.status, 400);
}

#[tokio::test]
async fn a_search_without_a_total_shows_the_same_pages_as_one_with_it() {
    // Without `_total` the consent-checked search decides matches only until its page is
    // full; with withheld records among them, every page must still be the one the full
    // decision gives.
    let app = spawn(|_| {}).await;
    seed(&app).await;
    for n in 0..7 {
        let funding = if n % 3 == 0 { "routine" } else { "voluntary" };
        app.upsert(json!({"resourceType": "Immunization", "id": format!("imm-extra-{n}"),
            "status": "completed",
            "vaccineCode": {"coding": [{"system": "https://musubi.example.org/fhir/CodeSystem/vaccine-type", "code": "hib"}]},
            "patient": {"reference": "Patient/child-a"}, "occurrenceDateTime": "2024-08-10",
            "primarySource": true,
            "fundingSource": {"coding": [{"system": "https://musubi.example.org/fhir/CodeSystem/funding-source", "code": funding}]}}))
            .await;
    }
    let city = token_of(&app, "city-chiyoda").await;
    let page = |bundle: &Value| {
        let next = bundle["link"]
            .as_array()
            .is_some_and(|links| links.iter().any(|l| l["relation"] == "next"));
        (entry_ids(bundle), next)
    };
    let all = get_as(
        &app,
        &city,
        "Immunization?patient=Patient/child-a&_count=100",
    )
    .await;
    let shown = entry_ids(&all.json());
    assert!(
        (1..9).contains(&shown.len()),
        "some of child-a's nine doses are withheld from the municipality: {shown:?}"
    );
    for count in [1, 2, 3] {
        for offset in 0..shown.len() + 1 {
            let path =
                format!("Immunization?patient=Patient/child-a&_count={count}&_offset={offset}");
            let counted = get_as(&app, &city, &path).await;
            let uncounted = get_as(&app, &city, &format!("{path}&_total=none")).await;
            assert_eq!(uncounted.status, 200, "{}", uncounted.text);
            assert_eq!(page(&uncounted.json()), page(&counted.json()), "{path}");
            assert!(uncounted.json().get("total").is_none(), "{path}");
        }
    }
}

#[tokio::test]
async fn a_consent_checked_search_over_the_cap_asks_to_be_narrowed() {
    let app = spawn(|config| config.consent.max_search_matches = 2).await;
    seed(&app).await;
    let city = token_of(&app, "city-chiyoda").await;
    let r = get_as(&app, &city, "Immunization?_summary=count").await;
    assert_eq!(r.status, 200, "two matches are within the cap: {}", r.text);
    let r = get_as(&app, &city, "Condition?_count=1").await;
    assert_eq!(r.status, 200);
    app.upsert(json!({"resourceType": "Condition", "id": "cond-3",
        "code": {"text": "x"}, "subject": {"reference": "Patient/child-b"}}))
        .await;
    let r = get_as(&app, &city, "Condition?_count=1").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("narrow"), "{}", r.text);
    // Type history spans every person and is refused; definitional types are not checked.
    assert_eq!(get_as(&app, &city, "Condition/_history").await.status, 403);
    assert_eq!(
        get_as(&app, &city, "CodeSystem?_summary=count")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_consent_musubi_cannot_enforce_is_refused() {
    let app = spawn(|_| {}).await;
    seed(&app).await;
    let mut unenforceable = permit_consultations("consent-bad");
    unenforceable["provision"]["action"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}]);
    let r = app.put("Consent/consent-bad", &unenforceable).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("cannot enforce"), "{}", r.text);
    // A draft is not enforced, so it may be stored as it is.
    unenforceable["status"] = json!("draft");
    assert_eq!(
        app.put("Consent/consent-bad", &unenforceable).await.status,
        201
    );
}

#[tokio::test]
async fn a_parent_lists_who_saw_their_child_s_records() {
    let app = spawn(|_| {}).await;
    seed(&app).await;
    app.upsert(permit_consultations("consent-a")).await;
    let city = token_of(&app, "city-chiyoda").await;
    assert_eq!(
        get_as(&app, &city, "Encounter/enc-child-a").await.status,
        200
    );
    assert_eq!(
        get_as(&app, &city, "Encounter/enc-child-b").await.status,
        404
    );

    let parent = sign_in(&app, "parent-a").await;
    // The parent reads their own child without consent checks, and is not audited.
    assert_eq!(
        get_as(&app, &parent, "Encounter/enc-child-a").await.status,
        200
    );
    let trail = get_as(&app, &parent, "AuditEvent?_count=100").await;
    assert_eq!(trail.status, 200, "{}", trail.text);
    let trail = trail.json();
    let events: Vec<&Value> = trail["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    assert!(
        events
            .iter()
            .any(|e| agent_ids(e).contains(&"city-chiyoda".to_owned())
                && detail(&details(e, "Encounter/enc-child-a"), "decision") == Some("permit")),
        "the municipality's read is listed: {trail:#}"
    );
    assert!(
        events.iter().all(|e| !e.to_string().contains("child-b")),
        "another family's trail leaked: {trail:#}"
    );
    assert!(
        events
            .iter()
            .all(|e| !agent_ids(e).iter().any(|a| a.starts_with("RelatedPerson/"))),
        "the parent's own reads are not audited: {trail:#}"
    );
    let other = get_as(&app, &parent, "AuditEvent?entity=Patient/child-b")
        .await
        .json();
    assert_eq!(other["total"], 0, "{other}");
}

// ---- the parent's sign-in (authorization code with PKCE), as a PHR app runs it ----

async fn sign_in(app: &TestApp, username: &str) -> String {
    musubi_tests::sign_in(app, PHR, username, "patient/*.rs launch/patient fhirUser").await
        ["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

/// A month-close claim batch (as the billing crate writes it) from `provider` to `insurer`.
fn claim_batch(id: &str, provider: Value, insurer: Value) -> Value {
    json!({"resourceType": "Claim", "id": id, "status": "active",
        "identifier": [{"system": "https://musubi.example.org/fhir/IdSystem/claim-batch", "value": id}],
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim",
        "patient": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "not-applicable"}]},
        "created": "2025-07-01", "provider": provider, "insurer": insurer,
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": true, "coverage": {"display": "予防接種の公費負担"}}],
        "total": {"value": 8000, "currency": "JPY"}})
}

fn municipality_reference(code: &str) -> Value {
    json!({"type": "Organization", "identifier": {
        "system": "https://musubi.example.org/fhir/IdSystem/municipality-code", "value": code}})
}

#[tokio::test]
async fn a_claim_batch_is_read_only_by_the_parties_it_names() {
    let app = spawn(|config| {
        for (id, organization) in [
            ("ma-chiyoda", "Organization/ma-chiyoda"),
            ("ma-chuo", "Organization/ma-chuo"),
        ] {
            let mut client = system_client(
                id,
                auth::ClientKind::MedicalAssociation,
                &["system/Claim.rs"],
            );
            client.organization = Some(organization.to_owned());
            config.clients.push(client);
        }
    })
    .await;
    // 千代田区医師会 claims from 千代田区; 千代田区 settles with 中央区 (the second leg).
    app.upsert(claim_batch(
        "batch-ma-chiyoda",
        json!({"reference": "Organization/ma-chiyoda"}),
        municipality_reference(CHIYODA),
    ))
    .await;
    app.upsert(claim_batch(
        "batch-settlement",
        municipality_reference(CHIYODA),
        municipality_reference(CHUO),
    ))
    .await;

    // (client, purpose header, the batches it may read)
    let cases: [(&str, Option<&str>, &[&str]); 6] = [
        ("ma-chiyoda", None, &["batch-ma-chiyoda"]),
        ("ma-chuo", None, &[]),
        // An unlinked medical association is named by no batch.
        ("med-assoc", None, &[]),
        (
            "city-chiyoda",
            Some("HPAYMT"),
            &["batch-ma-chiyoda", "batch-settlement"],
        ),
        ("city-chuo", Some("HPAYMT"), &["batch-settlement"]),
        // A named municipality reading for another purpose, and a clinic: nothing.
        ("city-chiyoda", None, &[]),
    ];
    let mut cases = cases.to_vec();
    cases.push((musubi_tests::TEST_CLIENT_ID, None, &[]));
    for (client, purpose, visible) in cases {
        let token = token_of(&app, client).await;
        let get = |path: String| {
            let mut request = app
                .anonymous()
                .get(app.url(&path))
                .bearer_auth(&token)
                .header("accept", "application/fhir+json");
            if let Some(purpose) = purpose {
                request = request.header("x-purpose-of-use", purpose);
            }
            app.send(request)
        };
        for id in ["batch-ma-chiyoda", "batch-settlement"] {
            let r = get(format!("Claim/{id}")).await;
            let want = if visible.contains(&id) { 200 } else { 404 };
            assert_eq!(
                r.status, want,
                "{client} {purpose:?} reads {id}: {}",
                r.text
            );
        }
        // Searches, totals and counts show only the named batches.
        let r = get("Claim?_total=accurate".to_owned()).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let bundle = r.json();
        let mut ids = entry_ids(&bundle);
        ids.sort();
        let want: Vec<String> = visible.iter().map(|id| format!("Claim/{id}")).collect();
        assert_eq!(ids, want, "{client} {purpose:?}");
        assert_eq!(bundle["total"], visible.len(), "{client} {purpose:?}");
        let r = get("Claim?_summary=count".to_owned()).await;
        assert_eq!(r.json()["total"], visible.len(), "{client} {purpose:?}");
    }

    // The refusal is audited with its reason.
    let events = audit_about(&app, "Claim/batch-settlement").await;
    let refused = events
        .iter()
        .flat_map(|e| details(e, "Claim/batch-settlement"))
        .any(|(name, value)| name == "reason" && value == "no-legal-basis");
    assert!(refused, "{events:#?}");
}
