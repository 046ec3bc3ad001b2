//! Consent at the exits beyond the FHIR read and search interactions: operations, conditional
//! matches, municipal exports and imports, the PHR app API's read-backs, delivery Tasks and the
//! pseudonymised research export. Each exit has a permitted and a refused case; the refused
//! case leaks nothing (status, counts, body) and leaves an AuditEvent.

use musubi_tests::{Response, TestApp, system_client};
use serde_json::{Value, json};

use crate::consent::{
    CHIYODA, CHUO, agent_ids, audit_about, classes, detail, details, get_as, permit_consultations,
    purpose, seed, spawn, token_of,
};
use crate::municipal::{GOLDEN_UTF8, QUERY, finished, root, upload};

const CLIENT_ID_SYSTEM: &str = "https://musubi.example.org/fhir/IdSystem/client-id";
const HIB: &str = "https://musubi.example.org/fhir/CodeSystem/vaccine-type";

async fn send_as(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Response {
    let mut request = app
        .anonymous()
        .request(method, app.url(path))
        .bearer_auth(token)
        .header("accept", "application/fhir+json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
    }
    app.send(request).await
}

/// A privacy consent of `patient`, granted by themselves (the performer), permitting `classes`
/// to the actor for `purpose`.
fn permit(id: &str, patient: &str, actor: Value, purpose_code: &str, data: &[&str]) -> Value {
    json!({
        "resourceType": "Consent", "id": id, "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": "2025-04-01T09:00:00+09:00",
        "performer": [{"reference": format!("Patient/{patient}")}],
        "provision": {"type": "permit", "actor": [actor], "purpose": purpose(purpose_code),
                      "class": classes(data)}
    })
}

fn recipient(system: &str, value: &str) -> Value {
    json!({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
           "reference": {"identifier": {"system": system, "value": value}}})
}

/// The AuditEvents about `entity` whose agents include `client`.
async fn audit_by(app: &TestApp, entity: &str, client: &str) -> Vec<Value> {
    audit_about(app, entity)
        .await
        .into_iter()
        .filter(|e| agent_ids(e).iter().any(|a| a == client))
        .collect()
}

fn subtype(event: &Value) -> &str {
    event["subtype"][0]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_schedule_operation_answers_from_what_the_caller_may_see() {
    let app = spawn(|_| {}).await;
    seed(&app).await;
    let home = token_of(&app, "city-chiyoda").await;
    let other = token_of(&app, "city-chuo").await;
    let schedule =
        |patient: &str| format!("Patient/{patient}/$immunization-schedule?date=2025-01-10");

    // Refused: public health is opt-in and no consent names 中央区, so the child is withheld:
    // the same answer as for a patient that was never stored.
    let hidden = get_as(&app, &other, &schedule("child-a")).await;
    let unknown = get_as(&app, &other, &schedule("child-zz")).await;
    assert_eq!(hidden.status, 404, "{}", hidden.text);
    assert_eq!(
        hidden.text.replace("child-a", "X"),
        unknown.text.replace("child-zz", "X")
    );
    let refused = audit_by(&app, "Patient/child-a", "city-chuo").await;
    let event = refused
        .iter()
        .find(|e| subtype(e) == "operation")
        .expect("the refused operation is audited");
    assert_eq!(event["outcome"], "4", "{event}");
    assert_eq!(event["action"], "E");
    assert_eq!(
        detail(&details(event, "Patient/child-a"), "decision"),
        Some("deny")
    );

    // Permitted: with the family's consent for demographics the home municipality gets the
    // schedule, built from the doses it may see — the routine dose (a legal basis), not the
    // voluntary one (no consent names vaccinations).
    app.upsert(permit_consultations("consent-a1")).await;
    let r = get_as(&app, &home, &schedule("child-a")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("Immunization/imm-routine"), "{}", r.text);
    assert!(!r.text.contains("imm-voluntary"), "{}", r.text);
    let permitted = audit_by(&app, "Patient/child-a", "city-chiyoda").await;
    let event = permitted
        .iter()
        .find(|e| subtype(e) == "operation")
        .expect("the operation is audited");
    assert_eq!(event["outcome"], "0");
    assert_eq!(
        detail(&details(event, "Immunization/imm-voluntary"), "decision"),
        Some("deny")
    );
    assert_eq!(
        detail(&details(event, "Immunization/imm-routine"), "legal-basis"),
        Some("routine-vaccination-record-home-municipality")
    );
}

#[tokio::test]
async fn validate_never_echoes_a_withheld_dose() {
    let app = spawn(|_| {}).await;
    seed(&app).await;
    let other = token_of(&app, "city-chuo").await;
    // A second Hib dose ten days after the stored one: too soon, if the stored one is known.
    let dose = |patient: &str| {
        json!({"resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"coding": [{"system": HIB, "code": "hib"}]},
            "patient": {"reference": format!("Patient/{patient}")},
            "occurrenceDateTime": "2024-07-20", "primarySource": true})
    };
    let post = |token: &str, patient: &str| {
        let token = token.to_owned();
        let body = dose(patient);
        let app = &app;
        async move {
            send_as(
                app,
                &token,
                reqwest::Method::POST,
                "Immunization/$validate",
                Some(&body),
                &[],
            )
            .await
        }
    };
    let hidden = post(&other, "child-a").await;
    let unknown = post(&other, "child-zz").await;
    assert_eq!(hidden.status, 200, "{}", hidden.text);
    // Refused: the answer is the one for a patient with no records here at all.
    assert_eq!(
        hidden.text.replace("child-a", "X"),
        unknown.text.replace("child-zz", "X")
    );
    assert!(!hidden.text.contains("2024-07-10"), "{}", hidden.text);
    assert!(
        audit_by(&app, "Immunization/imm-routine", "city-chuo")
            .await
            .iter()
            .any(|e| subtype(e) == "operation"
                && detail(&details(e, "Immunization/imm-routine"), "decision") == Some("deny")),
        "the withheld dose is on record"
    );
    // Permitted: the clinic (treatment, opt-out) is checked against the stored doses.
    let clinic = app.post("Immunization/$validate", &dose("child-a")).await;
    assert_eq!(clinic.status, 200, "{}", clinic.text);
    assert_ne!(
        clinic.text.replace("child-a", "X"),
        unknown.text.replace("child-zz", "X"),
        "the clinic's answer uses the stored doses"
    );
}

#[tokio::test]
async fn a_hidden_match_changes_no_conditional_answer() {
    let app = spawn(|config| {
        let mut writer = system_client(
            "city-chuo-writer",
            auth::ClientKind::Municipality,
            &["system/*.cruds"],
        );
        writer.municipality_code = Some(CHUO.to_owned());
        config.clients.push(writer);
    })
    .await;
    seed(&app).await;
    let writer = token_of(&app, "city-chuo-writer").await;
    let encounter = json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/child-a"}});

    // Refused: enc-child-a is hidden from 中央区, so it is no match: created, as if absent.
    let created = send_as(
        &app,
        &writer,
        reqwest::Method::POST,
        "Encounter",
        Some(&encounter),
        &[("if-none-exist", "_id=enc-child-a")],
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(!created.text.contains("enc-child-a"), "{}", created.text);
    // A conditional delete finds nothing to delete, and the record stays.
    let deleted = send_as(
        &app,
        &writer,
        reqwest::Method::DELETE,
        "Encounter?_id=enc-child-a",
        None,
        &[],
    )
    .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert!(
        deleted.text.contains("no Encounter matched"),
        "{}",
        deleted.text
    );
    assert_eq!(app.get("Encounter/enc-child-a").await.status, 200);
    let events = audit_by(&app, "Encounter/enc-child-a", "city-chuo-writer").await;
    assert!(
        events.iter().any(|e| subtype(e) == "search-type"
            && detail(&details(e, "Encounter/enc-child-a"), "decision") == Some("deny")),
        "the hidden match is on record: {events:?}"
    );

    // Permitted: the clinic sees the record, so its conditional create finds it.
    let found = app
        .send(
            app.client
                .post(app.url("Encounter"))
                .header("content-type", "application/fhir+json")
                .header("if-none-exist", "_id=enc-child-a")
                .body(encounter.to_string()),
        )
        .await;
    assert_eq!(found.status, 200, "{}", found.text);
}

/// The id of the Patient with resident number `number` of 千代田区.
async fn resident(app: &TestApp, number: &str) -> String {
    let bundle = app
        .get(&format!(
            "Patient?identifier=https://musubi.example.org/fhir/IdSystem/resident-number/{CHIYODA}|{number}"
        ))
        .await
        .json();
    bundle["entry"][0]["resource"]["id"]
        .as_str()
        .expect("the resident is stored")
        .to_owned()
}

#[tokio::test]
async fn a_municipal_export_carries_only_what_the_municipality_may_receive() {
    let app = spawn(|_| {}).await;
    let report = finished(&app, &upload(&app, GOLDEN_UTF8).await).await;
    assert_eq!(report["state"], "completed", "{report}");
    let patient = resident(&app, "0000101").await;
    // The import's commit carries its AuditEvents, one per patient.
    let imported = audit_about(&app, &format!("Patient/{patient}")).await;
    assert!(
        imported.iter().any(|e| e["outcomeDesc"]
            .as_str()
            .unwrap_or_default()
            .starts_with("municipal import")),
        "{imported:?}"
    );

    let city = token_of(&app, "city-chiyoda").await;
    let export = |token: String| {
        let app = &app;
        async move {
            app.send(
                app.anonymous()
                    .get(root(
                        app,
                        &format!("/municipal/v1/exports?{QUERY}&encoding=utf-8"),
                    ))
                    .bearer_auth(token),
            )
            .await
        }
    };
    // Refused: the imported vaccinations are not marked routine, so no legal basis applies and
    // no consent names the city: no row, only a count, and no resident number in the file.
    let none = export(city.clone()).await;
    assert_eq!(none.status, 200, "{}", none.text);
    assert_eq!(none.header("x-musubi-export-rows"), Some("0"));
    assert_eq!(none.header("x-musubi-export-withheld"), Some("4"));
    assert!(!none.text.contains("0000101"), "{}", none.text);
    assert_eq!(
        none.text.lines().count(),
        1,
        "only the header: {}",
        none.text
    );
    let json_form = app
        .send(
            app.anonymous()
                .get(root(&app, &format!("/municipal/v1/records?{QUERY}")))
                .bearer_auth(&city),
        )
        .await;
    assert_eq!(json_form.status, 200, "{}", json_form.text);
    assert_eq!(json_form.json()["withheld"], 4, "{}", json_form.text);
    assert!(!json_form.text.contains("0000101"), "{}", json_form.text);
    let refused = audit_by(&app, &format!("Patient/{patient}"), "city-chiyoda").await;
    let event = refused
        .iter()
        .find(|e| e["type"]["code"] == "110106")
        .expect("the export is audited per patient");
    assert_eq!(event["outcome"], "4", "{event}");

    // Permitted: one resident consents to vaccinations going to the city.
    app.upsert(permit(
        "consent-resident",
        &patient,
        recipient(
            "https://musubi.example.org/fhir/IdSystem/municipality-code",
            CHIYODA,
        ),
        "PUBHLTH",
        &["vaccinations"],
    ))
    .await;
    let some = export(city).await;
    assert_eq!(some.status, 200, "{}", some.text);
    let rows: usize = some
        .header("x-musubi-export-rows")
        .unwrap()
        .parse()
        .unwrap();
    assert!(rows >= 1, "{}", some.text);
    assert_eq!(
        some.header("x-musubi-export-withheld"),
        Some((4 - rows).to_string().as_str())
    );
    assert!(some.text.contains("0000101"), "{}", some.text);
    let permitted = audit_by(&app, &format!("Patient/{patient}"), "city-chiyoda").await;
    assert!(
        permitted
            .iter()
            .any(|e| e["type"]["code"] == "110106" && e["outcome"] == "0"),
        "{permitted:?}"
    );
}

#[tokio::test]
async fn an_app_backend_reads_back_only_what_the_family_shared_with_it() {
    let app = spawn(|config| {
        config.clients.push(system_client(
            "phr-backend",
            auth::ClientKind::PhrApp,
            &["system/Immunization.rs"],
        ));
    })
    .await;
    seed(&app).await;
    let backend = token_of(&app, "phr-backend").await;
    let read = |patient: &str| {
        let token = backend.clone();
        let path = format!("/phr/v1/children/{patient}/vaccinations");
        let app = &app;
        async move {
            app.send(app.anonymous().get(root(app, &path)).bearer_auth(token))
                .await
        }
    };
    // Refused: app sharing is opt-in; without a consent the child is not there for the app.
    let hidden = read("child-a").await;
    let unknown = read("child-zz").await;
    assert_eq!(hidden.status, 404, "{}", hidden.text);
    assert_eq!(
        hidden.text.replace("child-a", "X"),
        unknown.text.replace("child-zz", "X")
    );
    let refused = audit_by(&app, "Patient/child-a", "phr-backend").await;
    assert!(
        refused.iter().any(|e| e["outcome"] == "4"),
        "{refused:?} {}",
        hidden.text
    );

    // Permitted: the guardian shares vaccinations and demographics with this app.
    app.upsert(permit(
        "consent-app",
        "child-a",
        recipient(CLIENT_ID_SYSTEM, "phr-backend"),
        "PATRQT",
        &["vaccinations", "demographics"],
    ))
    .await;
    let shared = read("child-a").await;
    assert_eq!(shared.status, 200, "{}", shared.text);
    assert!(shared.text.contains("2024-07-10"), "{}", shared.text);
    let permitted = audit_by(&app, "Patient/child-a", "phr-backend").await;
    assert!(
        permitted.iter().any(|e| e["outcome"] == "0"
            && detail(&details(e, "Immunization/imm-routine"), "decision") == Some("permit")),
        "{permitted:?}"
    );
}

#[tokio::test]
async fn a_delivery_task_is_shown_only_to_its_recipient() {
    // 千代田区's only client is the test's, so the routine vaccination is routed to it.
    let app = spawn(|config| config.clients.retain(|c| c.id != "demo-municipality")).await;
    seed(&app).await;
    // The routine vaccination was routed to the home municipality.
    let home = token_of(&app, "city-chiyoda").await;
    let other = token_of(&app, "city-chuo").await;
    let search = "Task?_count=100";
    let mine = get_as(&app, &home, search).await.json();
    assert!(mine["total"].as_u64().unwrap() >= 1, "{mine}");
    let task = mine["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Refused: another municipality finds nothing, totals included, and cannot read it.
    let theirs = get_as(&app, &other, search).await.json();
    assert_eq!(theirs["total"], 0, "{theirs}");
    assert_eq!(
        get_as(&app, &other, &format!("Task/{task}")).await.status,
        404
    );
    let events = audit_by(&app, &format!("Task/{task}"), "city-chuo").await;
    assert!(
        events
            .iter()
            .any(|e| detail(&details(e, &format!("Task/{task}")), "reason")
                == Some("not-the-addressee")),
        "{events:?}"
    );
}

const PROJECT: &str = "ndb-phr-2026";
const OTHER_PROJECT: &str = "ndb-phr-eval";
const MEMBER_ID: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID";

/// The test server with two research projects exported by one research client, the key in a
/// file of the server's own temporary folder.
async fn research_app() -> (TestApp, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("pseudonym.key");
    std::fs::write(&key_file, [7u8; 32]).unwrap();
    let app = spawn(|config| {
        let researcher = system_client(
            "researcher",
            auth::ClientKind::ResearchProject,
            &["system/Patient.r"],
        );
        config.clients.push(researcher);
        config.research.pseudonym_key_file = Some(key_file);
        for id in [PROJECT, OTHER_PROJECT] {
            config
                .research
                .projects
                .push(gateway::research::ProjectConfig {
                    id: id.to_owned(),
                    clients: vec!["researcher".to_owned()],
                    purposes: vec!["HRESCH".to_owned()],
                    linkage_system: MEMBER_ID.to_owned(),
                    resource_types: vec!["Immunization".to_owned(), "Encounter".to_owned()],
                });
        }
    })
    .await;
    (app, keys)
}

/// A child with a linkage key, a name, a birth date and a vaccination.
async fn research_child(app: &TestApp, id: &str, member: &str) {
    app.upsert(
        json!({"resourceType": "Patient", "id": id, "birthDate": "2024-05-10", "gender": "female",
            "identifier": [{"system": MEMBER_ID, "value": member}],
            "name": [{"family": "山田", "given": [format!("花子{id}")]}],
            "telecom": [{"system": "phone", "value": "03-1234-5678"}],
            "address": [{"city": "千代田区", "line": ["千代田1-1"], "postalCode": "100-0001"}]}),
    )
    .await;
    app.upsert(
        json!({"resourceType": "Immunization", "id": format!("imm-{id}"), "status": "completed",
            "vaccineCode": {"coding": [{"system": HIB, "code": "hib"}]},
            "patient": {"reference": format!("Patient/{id}")}, "occurrenceDateTime": "2024-07-10",
            "primarySource": true}),
    )
    .await;
}

fn research_consent(id: &str, patient: &str, project: &str, status: &str) -> Value {
    let mut consent = permit(
        id,
        patient,
        recipient(
            "https://musubi.example.org/fhir/IdSystem/research-project",
            project,
        ),
        "HRESCH",
        &["vaccinations", "demographics"],
    );
    consent["status"] = json!(status);
    consent
}

async fn research_export(app: &TestApp, project: &str) -> Response {
    let token = token_of(app, "researcher").await;
    app.send(
        app.anonymous()
            .get(root(
                app,
                &format!("/research/v1/projects/{project}/export"),
            ))
            .bearer_auth(token),
    )
    .await
}

fn lines(response: &Response) -> Vec<Value> {
    response
        .text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one resource per line"))
        .collect()
}

fn pseudonym_of(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|r| r["resourceType"] == "Patient")
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_research_export_carries_pseudonyms_of_consenting_persons_only() {
    let (app, _keys) = research_app().await;
    research_child(&app, "r-yes", "06139999:1:2:01").await;
    research_child(&app, "r-no", "06139999:1:3:01").await;
    app.upsert(research_consent(
        "consent-research",
        "r-yes",
        PROJECT,
        "active",
    ))
    .await;
    app.upsert(research_consent(
        "consent-other",
        "r-yes",
        OTHER_PROJECT,
        "active",
    ))
    .await;

    let first = research_export(&app, PROJECT).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.header("x-musubi-research-persons"), Some("1"));
    let exported = lines(&first);
    assert_eq!(
        exported.len(),
        2,
        "the Patient and the vaccination: {}",
        first.text
    );
    let pseudonyms = pseudonym_of(&exported);
    assert_eq!(pseudonyms.len(), 1);
    let pseudonym = &pseudonyms[0];
    assert_eq!(pseudonym.len(), 64);
    let immunization = exported
        .iter()
        .find(|r| r["resourceType"] == "Immunization")
        .unwrap();
    assert_eq!(
        immunization["patient"]["reference"],
        format!("Patient/{pseudonym}")
    );
    // No direct identifier anywhere: ids, the linkage key, names, contact, the full birth date.
    for secret in [
        "r-yes",
        "r-no",
        "imm-r",
        "06139999",
        "山田",
        "花子",
        "03-1234",
        "千代田1-1",
        "100-0001",
        "2024-05-10",
    ] {
        assert!(!first.text.contains(secret), "{secret} in {}", first.text);
    }
    assert!(first.text.contains("2024-05"), "birth year-month stays");

    // Stable per project, different across projects.
    let again = research_export(&app, PROJECT).await;
    assert_eq!(pseudonym_of(&lines(&again)), pseudonyms);
    let other = research_export(&app, OTHER_PROJECT).await;
    let other_pseudonyms = pseudonym_of(&lines(&other));
    assert_eq!(other_pseudonyms.len(), 1, "{}", other.text);
    assert_ne!(&other_pseudonyms[0], pseudonym);

    // One AuditEvent per export, with counts and pseudonyms, naming no one.
    let all = app
        .get("AuditEvent?type=http://dicom.nema.org/resources/ontology/DCM|110106&_count=100")
        .await;
    assert_eq!(all.status, 200, "{}", all.text);
    let exports: Vec<Value> = all.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect();
    assert_eq!(exports.len(), 3, "one per export: {}", all.text);
    for event in &exports {
        let text = event.to_string();
        assert!(
            !text.contains("r-yes") && !text.contains("Patient/"),
            "{text}"
        );
        assert!(!text.contains("consent-research"), "{text}");
    }
    assert!(
        exports
            .iter()
            .any(|e| e.to_string().contains(pseudonym.as_str()))
    );

    // Revoked: gone from the next export.
    app.upsert(research_consent(
        "consent-research",
        "r-yes",
        PROJECT,
        "inactive",
    ))
    .await;
    let after = research_export(&app, PROJECT).await;
    assert_eq!(after.status, 200, "{}", after.text);
    assert_eq!(after.text, "");
    assert_eq!(after.header("x-musubi-research-persons"), Some("0"));
}

#[tokio::test]
async fn only_a_listed_research_client_exports_a_project() {
    let (app, _keys) = research_app().await;
    let clinic = app
        .send(app.client.get(root(
            &app,
            &format!("/research/v1/projects/{PROJECT}/export"),
        )))
        .await;
    assert_eq!(clinic.status, 403, "{}", clinic.text);
    let unknown = research_export(&app, "no-such-project").await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let token = token_of(&app, "researcher").await;
    let wrong_purpose = app
        .send(
            app.anonymous()
                .get(root(
                    &app,
                    &format!("/research/v1/projects/{PROJECT}/export?purpose=TREAT"),
                ))
                .bearer_auth(token),
        )
        .await;
    assert_eq!(wrong_purpose.status, 403, "{}", wrong_purpose.text);
}

#[tokio::test]
async fn a_phr_vendor_s_records_need_a_research_consent_naming_that_vendor() {
    let (app, _keys) = research_app().await;
    research_child(&app, "r-app", "06139999:1:4:01").await;
    // A vaccination the parent's app sent (its source is the app, as the PHR API writes it).
    app.upsert(
        json!({"resourceType": "Immunization", "id": "imm-from-app", "status": "completed",
            "meta": {"source": "https://musubi.example.org/fhir/phr-client/vendor-a"},
            "vaccineCode": {"coding": [{"system": HIB, "code": "hib"}]},
            "patient": {"reference": "Patient/r-app"}, "occurrenceDateTime": "2024-09-10",
            "primarySource": false}),
    )
    .await;
    app.upsert(research_consent(
        "consent-project",
        "r-app",
        PROJECT,
        "active",
    ))
    .await;
    let exported = |response: &Response| {
        lines(response)
            .into_iter()
            .filter(|r| r["resourceType"] == "Immunization")
            .map(|r| {
                r["occurrenceDateTime"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect::<Vec<_>>()
    };
    // Refused: the project's consent does not name the vendor, so the app's record stays.
    let without = research_export(&app, PROJECT).await;
    assert_eq!(without.status, 200, "{}", without.text);
    assert_eq!(exported(&without), vec!["2024-07-10"], "{}", without.text);

    // Permitted: a second consent names the vendor as the data's custodian.
    let mut vendor = research_consent("consent-vendor-a", "r-app", PROJECT, "active");
    vendor["dateTime"] = json!("2025-05-01T09:00:00+09:00");
    vendor["provision"]["actor"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}]},
                     "reference": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": "vendor-a"}}}));
    app.upsert(vendor).await;
    let with = research_export(&app, PROJECT).await;
    let mut dates = exported(&with);
    dates.sort();
    assert_eq!(dates, vec!["2024-07-10", "2024-09-10"], "{}", with.text);
    assert!(
        !with.text.contains("vendor-a"),
        "the source goes: {}",
        with.text
    );
}
