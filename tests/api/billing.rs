//! The month close end to end: a month of routine vaccinations written through the FHIR API
//! across three municipalities and two medical associations (the billing crate's golden month,
//! billing/tests/golden/2025-06) is closed by the operator route into the same claim totals;
//! a second close changes nothing; a late correction yields the corrected batches as new
//! versions; the monthly-batch Tasks say where each vaccination went; the billed parties read
//! and receive their Claims, and a Claim is not delivered before its due day.

use musubi_tests::{
    Endpoint, TEST_CLIENT_SECRET, TestApp, client_credentials_token, start_endpoint, system_client,
};
use serde_json::{Value, json};

const EXT: &str = "https://musubi.example.org/fhir/StructureDefinition/municipality-code";
const VACCINE_TYPE: &str = "https://musubi.example.org/fhir/CodeSystem/vaccine-type";
const FUNDING: &str = "https://musubi.example.org/fhir/CodeSystem/funding-source";
const MIC: &str = "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";
const CHANNEL: &str = "https://musubi.example.org/fhir/CodeSystem/routing-channel";
/// A product code system for the product-priced hepb line of the golden month.
const PRODUCT: &str = "https://musubi.example.org/fhir/CodeSystem/test-product";

/// The municipality clients besides the demo's 千代田区 (131016) one.
const CHUO: &str = "muni-chuo";
const MUSASHINO: &str = "muni-musashino";

/// The billing crate's golden fixture, used as the gateway's extra billing data; plus a file
/// that empties the shipped `tokyo-23-outside` scheme, so that (as in the fixture) no scheme
/// covers a 港区 resident at a 千代田区 clinic.
fn billing_files() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "fees-131016.json",
            include_str!("../../billing/tests/golden/2025-06/fees-131016.json"),
        ),
        (
            "fees-131024.json",
            include_str!("../../billing/tests/golden/2025-06/fees-131024.json"),
        ),
        (
            "fees-132039.json",
            include_str!("../../billing/tests/golden/2025-06/fees-132039.json"),
        ),
        (
            "schemes.json",
            include_str!("../../billing/tests/golden/2025-06/schemes.json"),
        ),
        ("schemes-test-outside-off.json", OUTSIDE_OFF),
    ]
}

const OUTSIDE_OFF: &str = r#"{"kind": "schemes", "description": "test: no Tokyo outside scheme",
  "schemes": [{"id": "tokyo-23-outside", "name": "off", "kind": "outside", "members": [],
    "amount": "clinic-capped-at-home", "route": "direct-to-home",
    "association_due": {"day": 10, "months_after": 1}}]}"#;

fn municipality_client(id: &str, code: &str) -> auth::Client {
    let mut client = system_client(id, auth::ClientKind::Municipality, &["system/Claim.rs"]);
    client.municipality_code = Some(code.to_owned());
    client
}

/// The server with the golden billing data, municipality clients for 中央区 and 武蔵野市,
/// `endpoint` for the demo 千代田区 client, and a worker that polls only once, at start: the
/// tests run its pass themselves (`gateway::outbox::poll`).
async fn spawn(extra: &tempfile::TempDir, endpoint: Option<String>) -> TestApp {
    spawn_adjusted(extra, endpoint, |_| {}).await
}

/// [`spawn`], with `adjust` changing the configuration further.
async fn spawn_adjusted(
    extra: &tempfile::TempDir,
    endpoint: Option<String>,
    adjust: impl FnOnce(&mut gateway::config::Config),
) -> TestApp {
    let billing = extra.path().join("billing");
    std::fs::create_dir_all(&billing).unwrap();
    for (name, text) in billing_files() {
        std::fs::write(billing.join(name), text).unwrap();
    }
    let dir = extra.path().to_owned();
    TestApp::spawn_with(move |config| {
        config.profiles.extra_dir = Some(dir);
        // The demo 医師会 client acts for ma-chiyoda, so the claims naming ma-chiyoda are its own.
        for client in &mut config.clients {
            if client.id == "demo-medical-association" {
                client.organization = Some("Organization/ma-chiyoda".into());
            }
        }
        config.clients.push(municipality_client(CHUO, "131024"));
        config
            .clients
            .push(municipality_client(MUSASHINO, "132039"));
        config.routing.poll_interval_ms = 3_600_000;
        if let Some(endpoint) = endpoint {
            config
                .routing
                .endpoints
                .insert("demo-municipality".into(), endpoint);
        }
        adjust(config);
    })
    .await
}

/// 医師会 ma-chiyoda and ma-chuo; clinic C1 (1310100118, 千代田区) and C2 (1310200223, 中央区)
/// as in the golden fixture; clinic C3 of ma-chiyoda whose address lacks the municipality code.
async fn seed_organizations(app: &TestApp) {
    for (id, name) in [
        ("ma-chiyoda", "千代田区医師会"),
        ("ma-chuo", "中央区医師会"),
    ] {
        app.upsert(json!({"resourceType": "Organization", "id": id, "name": name}))
            .await;
    }
    for (id, code, municipality, association) in [
        ("clinic-c1", "1310100118", Some("131016"), "ma-chiyoda"),
        ("clinic-c2", "1310200223", Some("131024"), "ma-chuo"),
        ("clinic-c3", "1310100118", None, "ma-chiyoda"),
    ] {
        let mut address = json!({"use": "work", "text": "東京都"});
        if let Some(municipality) = municipality {
            address["extension"] = json!([{"url": EXT, "valueCode": municipality}]);
        }
        app.upsert(json!({"resourceType": "Organization", "id": id, "name": id,
                "identifier": [{"system": MIC, "value": code}],
                "address": [address],
                "partOf": {"reference": format!("Organization/{association}")}}))
            .await;
    }
}

/// One vaccination of the month: its id, the resident's home municipality, clinic, vaccine
/// type, dose number, date and the child's birth date, and earlier doses (vaccine, dose, date)
/// the rules need to accept it.
struct Shot {
    id: &'static str,
    home: &'static str,
    clinic: &'static str,
    vaccine: &'static str,
    dose: u32,
    date: &'static str,
    born: &'static str,
    earlier: &'static [(&'static str, u32, &'static str)],
}

const fn shot(
    id: &'static str,
    home: &'static str,
    clinic: &'static str,
    vaccine: &'static str,
    dose: u32,
    date: &'static str,
    born: &'static str,
) -> Shot {
    Shot {
        id,
        home,
        clinic,
        vaccine,
        dose,
        date,
        born,
        earlier: &[],
    }
}

/// The golden month (billing/tests/golden/2025-06/vaccinations.json, without imm-17 of July and
/// the repeated imm-01, which the FHIR API cannot produce), plus imm-21 at a clinic without a
/// municipality code, imm-22 entered in error and imm-23 deleted.
const MONTH: &[Shot] = &[
    shot(
        "imm-01",
        "131016",
        "clinic-c1",
        "mr",
        1,
        "2025-06-02",
        "2024-05-01",
    ),
    Shot {
        earlier: &[("mr", 1, "2020-09-01")],
        ..shot(
            "imm-02",
            "131016",
            "clinic-c1",
            "mr",
            2,
            "2025-06-15",
            "2019-08-01",
        )
    },
    shot(
        "imm-03",
        "131016",
        "clinic-c1",
        "mr",
        1,
        "2025-06-16",
        "2024-05-10",
    ),
    shot(
        "imm-04",
        "131016",
        "clinic-c1",
        "hepb",
        1,
        "2025-06-05",
        "2025-03-01",
    ),
    shot(
        "imm-05",
        "131016",
        "clinic-c1",
        "je",
        1,
        "2025-06-30",
        "2022-05-01",
    ),
    Shot {
        earlier: &[("je", 1, "2025-05-20")],
        ..shot(
            "imm-06",
            "131016",
            "clinic-c1",
            "je",
            2,
            "2025-06-10",
            "2022-04-01",
        )
    },
    shot(
        "imm-07",
        "131024",
        "clinic-c1",
        "hib",
        1,
        "2025-06-03",
        "2025-03-20",
    ),
    shot(
        "imm-08",
        "131024",
        "clinic-c1",
        "mr",
        1,
        "2025-06-20",
        "2024-05-15",
    ),
    shot(
        "imm-09",
        "131016",
        "clinic-c2",
        "pcv",
        1,
        "2025-06-12",
        "2025-03-25",
    ),
    shot(
        "imm-10",
        "131024",
        "clinic-c2",
        "varicella",
        1,
        "2025-06-18",
        "2024-04-20",
    ),
    shot(
        "imm-11",
        "132039",
        "clinic-c1",
        "mr",
        1,
        "2025-06-25",
        "2024-05-20",
    ),
    Shot {
        earlier: &[("hib", 1, "2025-04-15")],
        ..shot(
            "imm-12",
            "132039",
            "clinic-c2",
            "hib",
            2,
            "2025-06-09",
            "2025-01-15",
        )
    },
    shot(
        "imm-13",
        "132039",
        "clinic-c2",
        "hepb",
        1,
        "2025-06-30",
        "2025-03-15",
    ),
    shot(
        "imm-14",
        "132039",
        "clinic-c1",
        "pcv",
        1,
        "2025-06-11",
        "2025-03-28",
    ),
    // Ten years old: MR is not a routine dose at that age, so it is not publicly funded.
    shot(
        "imm-15",
        "131016",
        "clinic-c1",
        "mr",
        1,
        "2025-06-04",
        "2015-01-01",
    ),
    shot(
        "imm-16",
        "132039",
        "clinic-c2",
        "varicella",
        1,
        "2025-06-21",
        "2024-03-01",
    ),
    shot(
        "imm-19",
        "131016",
        "clinic-c2",
        "je",
        1,
        "2025-06-30",
        "2022-06-01",
    ),
    shot(
        "imm-20",
        "131032",
        "clinic-c1",
        "mr",
        1,
        "2025-06-05",
        "2024-05-05",
    ),
    shot(
        "imm-21",
        "131016",
        "clinic-c3",
        "mr",
        1,
        "2025-06-07",
        "2024-05-07",
    ),
    shot(
        "imm-22",
        "131016",
        "clinic-c1",
        "mr",
        1,
        "2025-06-08",
        "2024-05-08",
    ),
    shot(
        "imm-23",
        "131016",
        "clinic-c1",
        "mr",
        1,
        "2025-06-09",
        "2024-05-09",
    ),
];

fn immunization(
    id: &str,
    patient: &str,
    clinic: &str,
    vaccine: &str,
    dose: u32,
    date: &str,
) -> Value {
    let mut coding = vec![json!({"system": VACCINE_TYPE, "code": vaccine})];
    if id == "imm-04" {
        // The golden fixture prices product hepb-b on its own.
        coding.insert(0, json!({"system": PRODUCT, "code": "hepb-b"}));
    }
    json!({"resourceType": "Immunization", "id": id, "status": "completed",
        "vaccineCode": {"coding": coding},
        "patient": {"reference": format!("Patient/{patient}")},
        "occurrenceDateTime": date, "primarySource": true,
        "protocolApplied": [{"doseNumberPositiveInt": dose}],
        "fundingSource": {"coding": [{"system": FUNDING, "code": "routine"}]},
        "performer": [{"actor": {"reference": format!("Organization/{clinic}")}}]})
}

fn patient(id: &str, born: &str, home: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "birthDate": born, "name": [{"text": id}],
        "address": [{"use": "home", "extension": [{"url": EXT, "valueCode": home}]}]})
}

async fn seed_month(app: &TestApp) {
    seed_organizations(app).await;
    for s in MONTH {
        let patient_id = format!("p-{}", s.id);
        app.upsert(patient(&patient_id, s.born, s.home)).await;
        for (n, (vaccine, dose, date)) in s.earlier.iter().enumerate() {
            // Earlier doses of another month; not routine-funded here, so outside the close.
            let mut earlier = immunization(
                &format!("{}-earlier-{n}", s.id),
                &patient_id,
                s.clinic,
                vaccine,
                *dose,
                date,
            );
            earlier.as_object_mut().unwrap().remove("fundingSource");
            app.upsert(earlier).await;
        }
        app.upsert(immunization(
            s.id,
            &patient_id,
            s.clinic,
            s.vaccine,
            s.dose,
            s.date,
        ))
        .await;
    }
    let mut in_error = immunization("imm-22", "p-imm-22", "clinic-c1", "mr", 1, "2025-06-08");
    in_error["status"] = json!("entered-in-error");
    app.upsert(in_error).await;
    let r = app.delete("Immunization/imm-23").await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
}

async fn close(app: &TestApp, month: &str) -> Value {
    let r = app
        .send(
            app.operator()
                .await
                .post(format!("{}/routing/v1/month-close?month={month}", app.root))
                .header("accept", "application/fhir+json"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let parameters = r.json();
    assert_eq!(parameters["resourceType"], "Parameters");
    parameters
}

fn part<'v>(parameter: &'v Value, name: &str) -> &'v Value {
    parameter["part"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or(&Value::Null)
}

fn named<'v>(parameters: &'v Value, name: &str) -> Vec<&'v Value> {
    parameters["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == name)
        .collect()
}

/// The summary in the shape of the golden file.
fn project(parameters: &Value) -> Value {
    let batches = |kind: &str| -> Vec<Value> {
        named(parameters, "batch")
            .into_iter()
            .filter(|b| part(b, "kind")["valueCode"] == kind)
            .map(|b| {
                json!({
                    "claimant": part(b, "claimant")["valueString"],
                    "payer": part(b, "payer")["valueString"],
                    "due_date": part(b, "due")["valueDate"],
                    "lines": part(b, "lines")["valueUnsignedInt"],
                    "total": part(b, "total")["valueMoney"]["value"],
                })
            })
            .collect()
    };
    let immunizations = |name: &str| -> Vec<Value> {
        named(parameters, name)
            .into_iter()
            .map(|p| {
                let id = part(p, "immunization")["valueReference"]["reference"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("Immunization/")
                    .to_owned();
                match part(p, "kind")["valueCode"].as_str() {
                    Some(kind) => json!([id, kind]),
                    None => json!(id),
                }
            })
            .collect()
    };
    let association_total =
        named(parameters, "association-total")[0]["valueMoney"]["value"].clone();
    json!({
        "association_claims": batches("association-claim"),
        "association_total": association_total,
        "settlement_claims": batches("settlement-claim"),
        "not_billed": immunizations("not-billed"),
        "exceptions": immunizations("exception"),
    })
}

fn claim_of(parameters: &Value, claimant: &str, payer: &str) -> String {
    named(parameters, "batch")
        .into_iter()
        .find(|b| {
            part(b, "claimant")["valueString"] == claimant
                && part(b, "payer")["valueString"] == payer
        })
        .and_then(|b| part(b, "claim")["valueReference"]["reference"].as_str())
        .unwrap_or_else(|| panic!("no batch {claimant} → {payer}: {parameters:#}"))
        .to_owned()
}

/// A stored Claim (`Claim/{id}`) and its version, read from the store: only the parties a
/// Claim names may read it through the API (tests/api/consent.rs), so the close's own view is
/// the store's.
fn stored(app: &TestApp, reference: &str) -> (Value, u64) {
    let id = reference.trim_start_matches("Claim/");
    let version = app
        .state
        .store
        .read("Claim", id)
        .unwrap()
        .unwrap_or_else(|| panic!("no {reference}"));
    (
        serde_json::from_slice(&version.body).unwrap(),
        version.version,
    )
}

/// How many Claims the store holds.
fn claim_count(app: &TestApp) -> usize {
    gateway::domain::search_all(
        app.state.store.as_ref(),
        "Claim",
        "status",
        "active,cancelled,draft,entered-in-error",
    )
    .unwrap()
    .len()
}

/// A patient's monthly-batch Tasks (read from the store: through the API only a Task's
/// addressee may read it).
async fn monthly_batch_tasks(app: &TestApp, patient: &str) -> Vec<Value> {
    let subject = format!("Patient/{patient}");
    let code = format!("{CHANNEL}|monthly-batch");
    app.stored_search("Task", &[("subject", &subject), ("code", &code)])
}

/// How many Tasks the store holds.
fn task_count(app: &TestApp) -> usize {
    app.stored_search("Task", &[]).len()
}

/// A delivery Task as stored (see [`monthly_batch_tasks`]).
fn task(app: &TestApp, id: &str) -> Value {
    app.stored("Task", id)
        .unwrap_or_else(|| panic!("no Task/{id}"))
}

fn outputs<'v>(task: &'v Value, name: &str) -> Vec<&'v Value> {
    task["output"]
        .as_array()
        .map(|o| o.iter().filter(|o| o["type"]["text"] == name).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_month_closes_into_the_golden_claims_once_and_corrections_become_new_versions() {
    let extra = tempfile::tempdir().unwrap();
    let app = spawn(&extra, None).await;
    seed_month(&app).await;

    let first = close(&app, "2025-06").await;
    let expected: Value =
        serde_json::from_str(include_str!("golden/month-close-2025-06.json")).unwrap();
    let mut expected = expected;
    expected.as_object_mut().unwrap().remove("_computation");
    assert_eq!(project(&first), expected, "got:\n{first:#}");
    for batch in named(&first, "batch") {
        assert_eq!(part(batch, "change")["valueCode"], "created", "{batch:#}");
    }

    // Every Claim is stored with its lines and exact total.
    for batch in named(&first, "batch") {
        let reference = part(batch, "claim")["valueReference"]["reference"]
            .as_str()
            .unwrap();
        let (claim, _) = stored(&app, reference);
        assert_eq!(claim["total"], part(batch, "total")["valueMoney"]);
        assert_eq!(
            claim["item"].as_array().unwrap().len() as u64,
            part(batch, "lines")["valueUnsignedInt"].as_u64().unwrap()
        );
    }

    // The monthly-batch Tasks say where each vaccination went: a cross-municipality dose into
    // its 医師会's claim on 千代田区 and 千代田区's claim on 中央区 …
    let mutual = monthly_batch_tasks(&app, "p-imm-07").await;
    assert_eq!(mutual.len(), 1, "{mutual:#?}");
    assert_eq!(mutual[0]["status"], "completed");
    let mut went: Vec<&str> = outputs(&mutual[0], "claim")
        .iter()
        .map(|o| o["valueReference"]["reference"].as_str().unwrap())
        .collect();
    went.sort_unstable();
    let mut want = vec![
        claim_of(
            &first,
            "medical-association:ma-chiyoda",
            "municipality:131016",
        ),
        claim_of(&first, "municipality:131016", "municipality:131024"),
    ];
    want.sort_unstable();
    assert_eq!(went, want);
    // … and who received it, why and when is in its AuditEvent.
    let r = app
        .get(&format!(
            "AuditEvent?entity=Task/{}&_count=100",
            mutual[0]["id"].as_str().unwrap()
        ))
        .await;
    let audits = r.json();
    let audit = audits["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|a| {
            a["outcomeDesc"]
                .as_str()
                .is_some_and(|d| d.starts_with("delivered by monthly-batch in Claim/"))
        })
        .unwrap_or_else(|| panic!("no delivery AuditEvent: {audits:#}"));
    assert_eq!(audit["outcome"], "0", "{audit:#}");
    assert_eq!(audit["purposeOfEvent"][0]["coding"][0]["code"], "HPAYMT");
    assert_eq!(
        audit["agent"][1]["who"]["reference"],
        "Organization/ma-chiyoda"
    );
    // An exception stays open with its reason; a not-billed record too.
    let held = monthly_batch_tasks(&app, "p-imm-21").await;
    assert_eq!(held[0]["status"], "requested");
    let reason = held[0]["statusReason"]["text"].as_str().unwrap();
    assert!(reason.contains("no-clinic-municipality"), "{reason}");
    let deleted = monthly_batch_tasks(&app, "p-imm-23").await;
    assert!(!deleted.is_empty());
    for task in &deleted {
        assert_eq!(task["status"], "requested");
        assert!(
            task["statusReason"]["text"]
                .as_str()
                .unwrap()
                .contains("deleted")
        );
    }

    // A second close: the same Claims, nothing new written.
    let tasks_before = task_count(&app);
    let claims_before = claim_count(&app);
    let second = close(&app, "2025-06").await;
    assert_eq!(project(&second), expected);
    for batch in named(&second, "batch") {
        assert_eq!(part(batch, "change")["valueCode"], "unchanged", "{batch:#}");
    }
    assert_eq!(named(&second, "tasks-delivered")[0]["valueUnsignedInt"], 0);
    assert_eq!(task_count(&app), tasks_before);
    assert_eq!(claim_count(&app), claims_before);

    // A late correction: imm-08 was given on 10 June, before 千代田区's mr price changed.
    let mut corrected = immunization("imm-08", "p-imm-08", "clinic-c1", "mr", 1, "2025-06-10");
    corrected["note"] = json!([{"text": "date corrected"}]);
    app.upsert(corrected).await;
    let tasks_after_correction = task_count(&app);
    let third = close(&app, "2025-06").await;
    let changed: Vec<(String, String, u64, u64)> = named(&third, "batch")
        .into_iter()
        .filter(|b| part(b, "change")["valueCode"] == "updated")
        .map(|b| {
            (
                part(b, "claimant")["valueString"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                part(b, "payer")["valueString"].as_str().unwrap().to_owned(),
                part(b, "previous-total")["valueMoney"]["value"]
                    .as_u64()
                    .unwrap(),
                part(b, "total")["valueMoney"]["value"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        vec![
            (
                "medical-association:ma-chiyoda".into(),
                "municipality:131016".into(),
                68400,
                67900
            ),
            (
                "municipality:131016".into(),
                "municipality:131024".into(),
                18500,
                18000
            ),
        ]
    );
    let claim = claim_of(
        &third,
        "medical-association:ma-chiyoda",
        "municipality:131016",
    );
    assert_eq!(stored(&app, &claim).1, 2);
    // Two new delivery Tasks: one per new Claim version. The older versions' deliveries, still
    // waiting for their recipients (mailboxes), are superseded in the same commit.
    assert_eq!(task_count(&app), tasks_after_correction + 2);
    let mut superseded: Vec<&str> = references(&third, "superseded");
    superseded.sort_unstable();
    let mut replaced: Vec<String> = named(&first, "batch")
        .into_iter()
        .filter(|b| {
            named(&third, "batch").iter().any(|t| {
                part(t, "claim") == part(b, "claim") && part(t, "change")["valueCode"] == "updated"
            })
        })
        .map(|b| {
            part(b, "delivery")["valueReference"]["reference"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    replaced.sort_unstable();
    assert_eq!(superseded, replaced);
    for task in &replaced {
        let task = self::task(&app, task.trim_start_matches("Task/"));
        assert_eq!(task["status"], "cancelled", "{task:#}");
        assert_eq!(task["businessStatus"]["coding"][0]["code"], "superseded");
        assert!(
            task["statusReason"]["text"]
                .as_str()
                .unwrap()
                .ends_with("/_history/2"),
            "{task:#}"
        );
    }
    assert_eq!(claim_count(&app), claims_before);

    // 医師会 and municipalities read the Claims that name them under the claims legal basis…
    let http = app.anonymous();
    let token = client_credentials_token(
        &http,
        &app.root,
        "demo-medical-association",
        "demo-association-secret",
        None,
    )
    .await
    .unwrap();
    let r = app
        .send(
            http.get(app.url(&claim))
                .bearer_auth(&token)
                .header("accept", "application/fhir+json"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["total"]["value"], 67900);
    // … and not those of another 医師会: ma-chuo's claim is as absent as a missing one.
    let other = claim_of(&third, "medical-association:ma-chuo", "municipality:131024");
    let r = app
        .send(
            http.get(app.url(&other))
                .bearer_auth(&token)
                .header("accept", "application/fhir+json"),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    // … and 中央区, without an endpoint, finds its due Claims in its mailbox.
    let token = client_credentials_token(&http, &app.root, CHUO, TEST_CLIENT_SECRET, None)
        .await
        .unwrap();
    let r = app
        .send(
            http.get(format!("{}/routing/v1/inbox", app.root))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut totals: Vec<u64> = r.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["total"]["value"].as_u64().unwrap())
        .collect();
    totals.sort_unstable();
    // ma-chuo's claim, and 千代田区's settlement claim in its corrected version only.
    assert_eq!(totals, vec![18000, 27400], "{}", r.text);

    // Both lines of ma-chiyoda's claim on 武蔵野市 are deleted: that Claim is withdrawn, and the
    // two records are listed as not billed.
    let musashino = claim_of(
        &third,
        "medical-association:ma-chiyoda",
        "municipality:132039",
    );
    for id in ["imm-11", "imm-14"] {
        let r = app.delete(&format!("Immunization/{id}")).await;
        assert!(r.status == 200 || r.status == 204, "{}", r.text);
    }
    let fourth = close(&app, "2025-06").await;
    let withdrawn: Vec<&Value> = named(&fourth, "withdrawn")
        .into_iter()
        .map(|w| &w["valueReference"]["reference"])
        .collect();
    assert_eq!(withdrawn, vec![&json!(musashino)], "{fourth:#}");
    // 武蔵野市 had not fetched it: its delivery is superseded, and no cancellation is sent.
    assert_eq!(references(&fourth, "superseded").len(), 1, "{fourth:#}");
    assert!(references(&fourth, "withdrawal-delivery").is_empty());
    assert_eq!(stored(&app, &musashino).0["status"], "cancelled");
    // 129400 − 500 (the correction) − 20800 (the withdrawn claim)
    assert_eq!(
        named(&fourth, "association-total")[0]["valueMoney"]["value"],
        108100
    );
    let not_billed = project(&fourth)["not_billed"].clone();
    for id in ["imm-11", "imm-14"] {
        assert!(
            not_billed.as_array().unwrap().contains(&json!(id)),
            "{not_billed}"
        );
    }
    app.stop().await;
}

/// What the 千代田区 endpoint received: (path, delivery id, the Claim's status).
fn received(endpoint: &Endpoint) -> Vec<(String, String, String)> {
    endpoint
        .lock()
        .unwrap()
        .requests
        .iter()
        .map(|r| {
            let status = r.json()["status"].as_str().unwrap_or_default().to_owned();
            (r.path.clone(), r.delivery_id.clone(), status)
        })
        .collect()
}

fn delivery_of(parameters: &Value) -> String {
    let batches = named(parameters, "batch");
    assert_eq!(batches.len(), 1, "{parameters:#}");
    part(batches[0], "delivery")["valueReference"]["reference"]
        .as_str()
        .unwrap()
        .trim_start_matches("Task/")
        .to_owned()
}

#[tokio::test]
async fn a_claim_is_delivered_on_its_due_day_and_not_before() {
    let endpoint = Endpoint::default();
    let extra = tempfile::tempdir().unwrap();
    let app = spawn(&extra, Some(start_endpoint(&endpoint, "/fhir"))).await;
    seed_organizations(&app).await;
    // A 千代田区 resident vaccinated at a 千代田区 clinic in June 2025 (due 10 July 2025, past) and
    // one vaccinated this month (due the 10th of next month, in the future).
    let jst = time::UtcOffset::from_hms(9, 0, 0).unwrap();
    let today = time::OffsetDateTime::now_utc().to_offset(jst).date();
    let this_month = today.replace_day(1).unwrap();
    let born = this_month
        .replace_year(this_month.year() - 1)
        .unwrap()
        .previous_day()
        .unwrap();
    let day = |d: time::Date| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
    app.upsert(patient("p-past", "2024-05-01", "131016")).await;
    app.upsert(immunization(
        "imm-past",
        "p-past",
        "clinic-c1",
        "mr",
        1,
        "2025-06-02",
    ))
    .await;
    app.upsert(patient("p-now", &day(born), "131016")).await;
    app.upsert(immunization(
        "imm-now",
        "p-now",
        "clinic-c1",
        "mr",
        1,
        &day(this_month),
    ))
    .await;

    let past = delivery_of(&close(&app, "2025-06").await);
    let month = format!(
        "{:04}-{:02}",
        this_month.year(),
        u8::from(this_month.month())
    );
    let now = close(&app, &month).await;
    let future = delivery_of(&now);
    let future_task = task(&app, &future);
    assert_eq!(future_task["code"]["coding"][0]["code"], "fhir-rest-hook");
    assert_eq!(
        future_task["businessStatus"]["coding"][0]["code"],
        "scheduled"
    );

    // One pass of the worker: the past-due Claim goes, the future one waits for its day.
    let http = reqwest::Client::new();
    gateway::outbox::poll(&app.state, &http).await.unwrap();
    let got = received(&endpoint);
    assert_eq!(
        got,
        vec![("/fhir/Claim".to_owned(), past.clone(), "active".to_owned())]
    );
    assert_eq!(task(&app, &past)["status"], "completed");
    let waiting = task(&app, &future);
    assert_eq!(waiting["status"], "requested");
    assert_eq!(waiting["businessStatus"]["coding"][0]["code"], "scheduled");
    // Midnight in Japan at the start of the due day, the 10th of next month.
    let due = (this_month + time::Duration::days(40))
        .replace_day(10)
        .unwrap();
    assert_eq!(part(named(&now, "batch")[0], "due")["valueDate"], day(due));
    assert_eq!(
        outputs(&waiting, "not-before")[0]["valueInstant"],
        format!("{}T15:00:00.000Z", day(due.previous_day().unwrap()))
    );
    assert_eq!(outputs(&waiting, "attempts")[0]["valueUnsignedInt"], 0);
    // A second pass still leaves it alone.
    assert_eq!(gateway::outbox::poll(&app.state, &http).await.unwrap(), 0);
    assert_eq!(received(&endpoint).len(), 1);
    app.stop().await;
}

fn references<'v>(parameters: &'v Value, name: &str) -> Vec<&'v str> {
    named(parameters, name)
        .into_iter()
        .filter_map(|p| p["valueReference"]["reference"].as_str())
        .collect()
}

#[tokio::test]
async fn a_newer_claim_version_replaces_a_waiting_delivery_and_follows_a_delivered_one() {
    let endpoint = Endpoint::default();
    let extra = tempfile::tempdir().unwrap();
    let app = spawn(&extra, Some(start_endpoint(&endpoint, "/fhir"))).await;
    seed_organizations(&app).await;
    let http = reqwest::Client::new();
    // June 2025 (due 10 July 2025, past) and this month (due next month, in the future).
    let jst = time::UtcOffset::from_hms(9, 0, 0).unwrap();
    let this_month = time::OffsetDateTime::now_utc()
        .to_offset(jst)
        .date()
        .replace_day(1)
        .unwrap();
    let day = |d: time::Date| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
    let month = format!(
        "{:04}-{:02}",
        this_month.year(),
        u8::from(this_month.month())
    );
    app.upsert(patient("p-past", "2024-05-01", "131016")).await;
    app.upsert(immunization(
        "imm-past",
        "p-past",
        "clinic-c1",
        "mr",
        1,
        "2025-06-02",
    ))
    .await;
    let born = this_month
        .replace_year(this_month.year() - 1)
        .unwrap()
        .previous_day()
        .unwrap();
    app.upsert(patient("p-now", &day(born), "131016")).await;
    app.upsert(immunization(
        "imm-now",
        "p-now",
        "clinic-c1",
        "mr",
        1,
        &day(this_month),
    ))
    .await;
    let first = delivery_of(&close(&app, "2025-06").await);
    let waiting = close(&app, &month).await;
    let future = delivery_of(&waiting);
    let future_claim = part(named(&waiting, "batch")[0], "claim")["valueReference"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    gateway::outbox::poll(&app.state, &http).await.unwrap();
    assert_eq!(received(&endpoint).len(), 1);

    // A correction after the first version was delivered: it stays delivered, and the new
    // version follows.
    app.upsert(immunization(
        "imm-past",
        "p-past",
        "clinic-c1",
        "mr",
        1,
        "2025-06-03",
    ))
    .await;
    let corrected = close(&app, "2025-06").await;
    assert_eq!(
        part(named(&corrected, "batch")[0], "change")["valueCode"],
        "updated"
    );
    assert!(
        references(&corrected, "superseded").is_empty(),
        "{corrected:#}"
    );
    let second = delivery_of(&corrected);
    assert_ne!(second, first);
    assert_eq!(task(&app, &first)["status"], "completed");
    gateway::outbox::poll(&app.state, &http).await.unwrap();
    let got: Vec<String> = received(&endpoint)
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(got, vec![first.clone(), second.clone()]);

    // Its only vaccination deleted, the delivered Claim is withdrawn: the cancellation is
    // delivered too.
    let r = app.delete("Immunization/imm-past").await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    let withdrawn = close(&app, "2025-06").await;
    assert_eq!(
        references(&withdrawn, "withdrawn").len(),
        1,
        "{withdrawn:#}"
    );
    assert!(references(&withdrawn, "superseded").is_empty());
    let cancellation = references(&withdrawn, "withdrawal-delivery");
    assert_eq!(cancellation.len(), 1, "{withdrawn:#}");
    let cancellation = cancellation[0].trim_start_matches("Task/").to_owned();
    gateway::outbox::poll(&app.state, &http).await.unwrap();
    let last = received(&endpoint).last().cloned().unwrap();
    assert_eq!(
        last,
        (
            "/fhir/Claim".to_owned(),
            cancellation,
            "cancelled".to_owned()
        )
    );

    // The Claim still waiting for its due day is withdrawn before it went: its delivery is
    // superseded (cancelled), and nothing is sent.
    let r = app.delete("Immunization/imm-now").await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    let before = received(&endpoint).len();
    let withdrawn = close(&app, &month).await;
    assert_eq!(
        references(&withdrawn, "withdrawn"),
        vec![future_claim.as_str()]
    );
    assert_eq!(
        references(&withdrawn, "superseded"),
        vec![format!("Task/{future}").as_str()]
    );
    assert!(references(&withdrawn, "withdrawal-delivery").is_empty());
    let task = task(&app, &future);
    assert_eq!(task["status"], "cancelled");
    assert_eq!(task["businessStatus"]["coding"][0]["code"], "superseded");
    assert_eq!(
        task["statusReason"]["text"],
        format!("superseded by {future_claim}/_history/2")
    );
    gateway::outbox::poll(&app.state, &http).await.unwrap();
    assert_eq!(received(&endpoint).len(), before);
    app.stop().await;
}

#[tokio::test]
async fn the_demo_operator_closes_a_month_and_reads_no_records() {
    let extra = tempfile::tempdir().unwrap();
    let app = spawn(&extra, None).await;
    seed_organizations(&app).await;
    app.upsert(patient("p-op", "2024-05-01", "131016")).await;
    app.upsert(immunization(
        "imm-op",
        "p-op",
        "clinic-c1",
        "mr",
        1,
        "2025-06-02",
    ))
    .await;
    let http = app.anonymous();
    let token = |id: &'static str, secret: &'static str| {
        client_credentials_token(&http, &app.root, id, secret, None)
    };
    let close_as = |token: String| {
        app.send(
            http.post(format!("{}/routing/v1/month-close?month=2025-06", app.root))
                .bearer_auth(token)
                .header("accept", "application/fhir+json"),
        )
    };
    // The README's walkthrough: the demo operator closes the month …
    let operator = token("demo-operator", "demo-operator-secret")
        .await
        .unwrap();
    let r = close_as(operator.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(named(&r.json(), "batch").len(), 1, "{}", r.text);
    // … which no other demo client may do.
    for (id, secret) in [
        ("demo-medical-association", "demo-association-secret"),
        ("demo-municipality", "demo-municipality-secret"),
        ("demo-clinic", "demo-clinic-secret"),
    ] {
        let r = close_as(token(id, secret).await.unwrap()).await;
        assert_eq!(r.status, 403, "{id}: {}", r.text);
    }
    // The operator reads no record through /fhir, not even the Tasks it handles through
    // /routing/v1: an operator client is refused every type that can hold patient data.
    for path in [
        "Immunization/imm-op",
        "Patient/p-op",
        "Claim?_summary=count",
        "Task?_summary=count",
    ] {
        let r = app
            .send(
                http.get(app.url(path))
                    .bearer_auth(&operator)
                    .header("accept", "application/fhir+json"),
            )
            .await;
        assert_eq!(r.status, 403, "{path}: {}", r.text);
    }
    assert!(task_count(&app) > 0);
    let r = app
        .send(
            http.get(format!(
                "{}/routing/v1/deliveries?status=requested",
                app.root
            ))
            .bearer_auth(&operator),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["total"].as_u64().unwrap() > 0, "{}", r.text);
    app.stop().await;
}

/// The mutual scheme of 千代田区 and 中央区 (replacing the golden one: this file's name sorts
/// after `schemes.json`) with its claims through the 国保連 of 東京都 (13): the home ward's price;
/// the 医師会 claims from the 国保連 by the 10th of the next month, the 国保連 from the home ward
/// by the 20th of the month after.
const VIA_KOKUHO_REN: &str = r#"{"kind": "schemes", "description": "test: the mutual scheme through the 国保連",
  "schemes": [{"id": "tokyo-23-mutual", "name": "via 国保連", "kind": "mutual",
    "members": ["131016", "131024"], "amount": "home-municipality",
    "route": "via-kokuho-ren", "kokuho_ren": "13",
    "association_due": {"day": 10, "months_after": 1},
    "settlement_due": {"day": 20, "months_after": 2}}]}"#;

/// How a Claim names a 国保連: by this system and the prefecture code.
const KOKUHO_REN_SYSTEM: &str = "https://musubi.example.org/fhir/IdSystem/kokuho-ren";
/// The clients registered as the 国保連 of 東京都 and of 愛知県 (`billing.kokuho_ren`).
const KOKUHO_REN_TOKYO: &str = "kokuho-ren-tokyo";
const KOKUHO_REN_AICHI: &str = "kokuho-ren-aichi";

#[tokio::test]
async fn a_claim_via_the_kokuho_ren_reaches_its_registered_client_and_no_other() {
    let endpoint = Endpoint::default();
    let url = start_endpoint(&endpoint, "/fhir");
    let extra = tempfile::tempdir().unwrap();
    let billing = extra.path().join("billing");
    std::fs::create_dir_all(&billing).unwrap();
    std::fs::write(billing.join("tokyo-via-kokuho-ren.json"), VIA_KOKUHO_REN).unwrap();
    let app = spawn_adjusted(&extra, None, move |config| {
        for (prefecture, id) in [("13", KOKUHO_REN_TOKYO), ("23", KOKUHO_REN_AICHI)] {
            config.clients.push(system_client(
                id,
                auth::ClientKind::MedicalAssociation,
                &["system/Claim.rs"],
            ));
            config
                .billing
                .kokuho_ren
                .insert(prefecture.into(), id.into());
        }
        config
            .routing
            .endpoints
            .insert(KOKUHO_REN_TOKYO.into(), url);
    })
    .await;
    seed_organizations(&app).await;
    // A 中央区 resident vaccinated at a 千代田区 clinic (医師会 ma-chiyoda) in June 2025.
    app.upsert(patient("p-kokuho", "2024-05-01", "131024"))
        .await;
    app.upsert(immunization(
        "imm-kokuho",
        "p-kokuho",
        "clinic-c1",
        "mr",
        1,
        "2025-06-02",
    ))
    .await;

    let summary = close(&app, "2025-06").await;
    let to_kokuho_ren = claim_of(&summary, "medical-association:ma-chiyoda", "kokuho-ren:13");
    let from_kokuho_ren = claim_of(&summary, "kokuho-ren:13", "municipality:131024");
    let batch = |claim: &str| {
        named(&summary, "batch")
            .into_iter()
            .find(|b| part(b, "claim")["valueReference"]["reference"] == claim)
            .unwrap()
    };
    let delivery = |claim: &str| {
        part(batch(claim), "delivery")["valueReference"]["reference"]
            .as_str()
            .unwrap_or_else(|| panic!("{claim} is not delivered: {summary:#}"))
            .trim_start_matches("Task/")
            .to_owned()
    };
    for (claim, due) in [
        (&to_kokuho_ren, "2025-07-10"),
        (&from_kokuho_ren, "2025-08-20"),
    ] {
        assert_eq!(part(batch(claim), "due")["valueDate"], due);
        // 中央区's price for a first MR dose.
        assert_eq!(part(batch(claim), "total")["valueMoney"]["value"], 10800);
    }
    // The 国保連's claim goes to its registered client's endpoint, held until its due day
    // (midnight in Japan); the 国保連's own claim goes to 中央区's mailbox, as any municipal one.
    let to_client = delivery(&to_kokuho_ren);
    let waiting = task(&app, &to_client);
    assert_eq!(waiting["code"]["coding"][0]["code"], "fhir-rest-hook");
    assert_eq!(waiting["owner"]["identifier"]["value"], KOKUHO_REN_TOKYO);
    assert_eq!(
        outputs(&waiting, "not-before")[0]["valueInstant"],
        "2025-07-09T15:00:00.000Z"
    );
    let to_chuo = task(&app, &delivery(&from_kokuho_ren));
    assert_eq!(to_chuo["code"]["coding"][0]["code"], "mailbox");
    assert_eq!(to_chuo["owner"]["identifier"]["value"], CHUO);

    // The due day is past: one worker pass delivers it.
    let http = reqwest::Client::new();
    gateway::outbox::poll(&app.state, &http).await.unwrap();
    assert_eq!(
        received(&endpoint),
        vec![(
            "/fhir/Claim".to_owned(),
            to_client.clone(),
            "active".to_owned()
        )]
    );
    let sent = endpoint.lock().unwrap().requests[0].json();
    assert_eq!(
        sent["insurer"]["identifier"],
        json!({"system": KOKUHO_REN_SYSTEM, "value": "13"})
    );
    assert_eq!(task(&app, &to_client)["status"], "completed");

    // Through /fhir, 東京都's 国保連 reads both Claims that name it (as payer and as claimant);
    // 愛知県's reads neither, nor counts them.
    let both = [to_kokuho_ren.as_str(), from_kokuho_ren.as_str()];
    for (client, visible) in [(KOKUHO_REN_TOKYO, &both[..]), (KOKUHO_REN_AICHI, &[][..])] {
        let token = client_credentials_token(&http, &app.root, client, TEST_CLIENT_SECRET, None)
            .await
            .unwrap();
        let get = |path: &str| {
            app.send(
                http.get(app.url(path))
                    .bearer_auth(&token)
                    .header("accept", "application/fhir+json")
                    .header("x-purpose-of-use", "HPAYMT"),
            )
        };
        for claim in both {
            let r = get(claim).await;
            let want = if visible.contains(&claim) { 200 } else { 404 };
            assert_eq!(r.status, want, "{client} reads {claim}: {}", r.text);
        }
        let r = get("Claim?_summary=count").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["total"], visible.len(), "{client}");
    }
    app.stop().await;
}
