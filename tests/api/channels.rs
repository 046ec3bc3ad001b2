//! The collected routing channels end to end: a routine Immunization reaches its home
//! municipality in a municipal file (pulled, or pushed to a file endpoint that fails and then
//! recovers) exactly once and parses back to the same record; records needing care reach the
//! district team in one weekly digest per week, with consent re-checked per record.
//! Each test drives the worker's rounds itself (`gateway::outbox::poll`).

use gateway::config::{Config, RetryOverride};
use musubi_tests::{
    Endpoint, TEST_CLIENT_SECRET, TestApp, client_credentials_token, start_endpoint, system_client,
};
use serde_json::{Value, json};

/// 中央区: the residents' home.
const CHUO: &str = "131024";
/// 港区: another municipality.
const MINATO: &str = "131032";
const MUNICIPALITY_EXTENSION: &str =
    "https://musubi.example.org/fhir/StructureDefinition/municipality-code";
const CLIENT_ID_SYSTEM: &str = "https://musubi.example.org/fhir/IdSystem/client-id";

fn municipality(id: &str, code: &str) -> auth::Client {
    let mut client = system_client(id, auth::ClientKind::Municipality, &["system/*.rs"]);
    client.municipality_code = Some(code.to_owned());
    client
}

/// Two municipalities, each with its district team; the worker's own timer is effectively off
/// (the test runs the rounds), files are gathered every round and failed attempts are due
/// again at once.
async fn spawn(adjust: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(|config| {
        config.clients.push(municipality("city-chuo", CHUO));
        config.clients.push(municipality("city-minato", MINATO));
        config.clients.push(municipality("team-chuo", CHUO));
        config.clients.push(municipality("team-minato", MINATO));
        config
            .routing
            .district_teams
            .insert(CHUO.into(), "team-chuo".into());
        config
            .routing
            .district_teams
            .insert(MINATO.into(), "team-minato".into());
        config.routing.poll_interval_ms = 3_600_000;
        config.routing.municipal_file_interval_secs = 0;
        config.routing.retry = Some(RetryOverride {
            base_delay_ms: 0,
            max_delay_ms: 0,
            max_attempts: 5,
        });
        adjust(config);
    })
    .await
}

/// One worker round.
async fn round(app: &TestApp) -> usize {
    gateway::outbox::poll(&app.state, &reqwest::Client::new())
        .await
        .expect("the worker round runs")
}

/// A resident of `code`, with the municipality's resident number (宛名番号) the file needs.
async fn resident(app: &TestApp, id: &str, code: &str, number: &str) {
    let system =
        municipal::resident_identifier_system(&identifiers::MunicipalityCode::parse(code).unwrap());
    app.upsert(
        json!({"resourceType": "Patient", "id": id, "birthDate": "2024-05-10", "gender": "female",
            "identifier": [{"system": system, "value": number}],
            "name": [{"text": "中央 花子"}],
            "address": [{"use": "home", "text": "東京都中央区築地1-1-1",
                "extension": [{"url": MUNICIPALITY_EXTENSION, "valueCode": code}]}]}),
    )
    .await;
}

fn routine_immunization(id: &str, patient: &str, vaccine: &str, date: &str) -> Value {
    json!({"resourceType": "Immunization", "id": id, "status": "completed",
        "vaccineCode": {"coding": [{"system": "https://musubi.example.org/fhir/CodeSystem/vaccine-type", "code": vaccine}]},
        "patient": {"reference": format!("Patient/{patient}")}, "occurrenceDateTime": date,
        "lotNumber": "LOT-1", "primarySource": true,
        "fundingSource": {"coding": [{"system": "https://musubi.example.org/fhir/CodeSystem/funding-source", "code": "routine"}]}})
}

/// The outbox Tasks of a channel (read from the store: through the API only a Task's
/// addressee may read it).
async fn tasks(app: &TestApp, channel: &str) -> Vec<Value> {
    let code = format!("https://musubi.example.org/fhir/CodeSystem/routing-channel|{channel}");
    app.stored_search("Task", &[("code", &code)])
}

async fn task(app: &TestApp, id: &str) -> Value {
    app.stored("Task", id)
        .unwrap_or_else(|| panic!("no Task/{id}"))
}

fn output<'t>(task: &'t Value, name: &str) -> Option<&'t Value> {
    task["output"]
        .as_array()?
        .iter()
        .find(|o| o["type"]["text"] == name)
}

fn output_str<'t>(task: &'t Value, name: &str) -> Option<&'t str> {
    output(task, name).and_then(|o| o["valueString"].as_str())
}

async fn audit_outcomes(app: &TestApp, task_id: &str) -> Vec<(String, String)> {
    let r = app.get(&format!("AuditEvent?entity=Task/{task_id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| &e["resource"])
        .filter(|a| a["type"]["code"] == "110106")
        .map(|a| {
            (
                a["outcome"].as_str().unwrap_or_default().to_owned(),
                a["outcomeDesc"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn token(app: &TestApp, client: &str) -> String {
    client_credentials_token(
        &app.anonymous(),
        &app.root,
        client,
        TEST_CLIENT_SECRET,
        None,
    )
    .await
    .unwrap()
}

async fn get_as(app: &TestApp, token: &str, path: &str) -> musubi_tests::Response {
    app.send(
        app.anonymous()
            .get(format!("{}/routing/v1/{path}", app.root))
            .bearer_auth(token),
    )
    .await
}

async fn post_as(app: &TestApp, token: &str, path: &str) -> musubi_tests::Response {
    app.send(
        app.anonymous()
            .post(format!("{}/routing/v1/{path}", app.root))
            .bearer_auth(token),
    )
    .await
}

fn listed_ids(listing: &Value) -> Vec<String> {
    listing["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The records a municipal file maps back to, with the municipal crate's import.
fn parse_file(code: &str, bytes: &[u8]) -> Vec<Value> {
    let code = identifiers::MunicipalityCode::parse(code).unwrap();
    let layout = municipal::Layouts::embedded()
        .unwrap()
        .resolve("musubi-vaccination", &code)
        .unwrap();
    let import = municipal::Import::new(&layout, &code, bytes, municipal::EncodingChoice::Auto)
        .expect("the file has the layout's header");
    import
        .map(|row| row.expect("every row maps"))
        .flat_map(|row| row.resources)
        .map(|r| r.resource)
        .filter(|r| r["resourceType"] == "Immunization")
        .collect()
}

fn same_vaccination(parsed: &Value, sent: &Value) {
    assert_eq!(
        parsed["vaccineCode"]["coding"][0]["code"],
        sent["vaccineCode"]["coding"][0]["code"]
    );
    assert_eq!(
        parsed["occurrenceDateTime"].as_str().unwrap().get(..10),
        sent["occurrenceDateTime"].as_str().unwrap().get(..10)
    );
    assert_eq!(parsed["lotNumber"], sent["lotNumber"]);
}

#[tokio::test]
async fn a_municipality_pulls_its_residents_routine_immunizations_in_one_file() {
    let app = spawn(|_| {}).await;
    resident(&app, "p-chuo", CHUO, "000123").await;
    let sent = routine_immunization("imm-1", "p-chuo", "hib", "2024-07-10");
    app.upsert(sent.clone()).await;
    app.upsert(routine_immunization("imm-2", "p-chuo", "pcv", "2024-07-10"))
        .await;
    let queued = tasks(&app, "municipal-file").await;
    assert_eq!(queued.len(), 2, "{queued:#?}");
    assert!(
        queued
            .iter()
            .all(|t| t["owner"]["identifier"]["value"] == "city-chuo")
    );
    assert!(queued.iter().all(|t| t["status"] == "requested"));

    round(&app).await;
    let filed = tasks(&app, "municipal-file").await;
    let file = output_str(&filed[0], "file")
        .expect("the Task names its file")
        .to_owned();
    assert!(
        filed
            .iter()
            .all(|t| output_str(t, "file") == Some(file.as_str())),
        "one file: {filed:#?}"
    );
    assert!(
        filed.iter().all(|t| t["status"] == "requested"),
        "waiting to be pulled"
    );
    // Each is tagged with its file, so the Tasks not yet in a file are one search.
    let unfiled = app.stored_search(
        "Task",
        &[
            (
                "code",
                "https://musubi.example.org/fhir/CodeSystem/routing-channel|municipal-file",
            ),
            (
                "_tag:not",
                "https://musubi.example.org/fhir/CodeSystem/routing-parcel-id|",
            ),
        ],
    );
    assert!(unfiled.is_empty(), "{unfiled:#?}");
    // More rounds build nothing new.
    round(&app).await;
    round(&app).await;

    let chuo = token(&app, "city-chuo").await;
    let listing = get_as(&app, &chuo, "files").await;
    assert_eq!(listing.status, 200, "{}", listing.text);
    assert_eq!(listed_ids(&listing.json()), vec![file.clone()]);
    let r = get_as(&app, &chuo, &format!("files/{file}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let parsed = parse_file(CHUO, r.text.as_bytes());
    assert_eq!(parsed.len(), 2, "{}", r.text);
    let hib = parsed
        .iter()
        .find(|i| i["vaccineCode"]["coding"][0]["code"] == "hib")
        .expect("the hib row");
    same_vaccination(hib, &sent);

    // Another municipality neither sees nor acknowledges it.
    let minato = token(&app, "city-minato").await;
    assert_eq!(
        listed_ids(&get_as(&app, &minato, "files").await.json()),
        Vec::<String>::new()
    );
    assert_eq!(
        get_as(&app, &minato, &format!("files/{file}")).await.status,
        404
    );
    assert_eq!(
        post_as(&app, &minato, &format!("files/{file}/ack"))
            .await
            .status,
        404
    );

    let r = post_as(&app, &chuo, &format!("files/{file}/ack")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for t in tasks(&app, "municipal-file").await {
        assert_eq!(t["status"], "completed", "{t:#}");
        assert_eq!(output_str(&t, "file"), Some(file.as_str()));
        let audits = audit_outcomes(&app, t["id"].as_str().unwrap()).await;
        assert_eq!(audits.len(), 1, "{audits:?}");
        assert_eq!(audits[0].0, "0");
        assert!(audits[0].1.contains(&file), "{audits:?}");
    }
    assert_eq!(
        post_as(&app, &chuo, &format!("files/{file}/ack"))
            .await
            .status,
        409
    );
    assert_eq!(
        listed_ids(&get_as(&app, &chuo, "files").await.json()),
        Vec::<String>::new()
    );
    // The file stays readable after the ack.
    assert_eq!(
        get_as(&app, &chuo, &format!("files/{file}")).await.status,
        200
    );
    // The operator sees the delivered Tasks with their state.
    let r = app
        .send(app.operator().await.get(format!(
            "{}/routing/v1/deliveries?status=completed",
            app.root
        )))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let delivered: Vec<Value> = r.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .filter(|t| t["code"]["coding"][0]["code"] == "municipal-file")
        .collect();
    assert_eq!(delivered.len(), 2);
    assert!(
        delivered
            .iter()
            .all(|t| t["businessStatus"]["coding"][0]["code"] == "delivered")
    );
}

#[tokio::test]
async fn a_file_endpoint_that_fails_then_recovers_receives_each_file_once() {
    let endpoint = Endpoint::default();
    endpoint.lock().unwrap().fail_next = 1;
    let url = format!(
        "{}/registers/131024/files",
        start_endpoint(&endpoint, "/base")
    );
    let app = spawn(|config| {
        config.routing.municipal_files.insert(CHUO.into(), url);
    })
    .await;
    resident(&app, "p-chuo", CHUO, "000123").await;
    let sent = routine_immunization("imm-1", "p-chuo", "hib", "2024-07-10");
    app.upsert(sent.clone()).await;
    let id = tasks(&app, "municipal-file").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    round(&app).await;
    let waiting = task(&app, &id).await;
    assert_eq!(
        waiting["status"], "on-hold",
        "the first attempt met a 503: {waiting:#}"
    );
    assert_eq!(
        output_str(&waiting, "last-error"),
        Some("the recipient answered HTTP 503")
    );
    round(&app).await;
    let done = task(&app, &id).await;
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(output(&done, "attempts").unwrap()["valueUnsignedInt"], 2);
    round(&app).await;
    round(&app).await;
    let file = output_str(&done, "file").unwrap().to_owned();
    {
        let received = endpoint.lock().unwrap();
        let statuses: Vec<u16> = received.requests.iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![503, 201], "exactly once after the outage");
        assert!(received.requests.iter().all(|r| r.file_id == file
            && r.file_kind == "records"
            && r.path == "/base/registers/131024/files"));
        let parsed = parse_file(CHUO, &received.requests[1].body);
        assert_eq!(parsed.len(), 1);
        same_vaccination(&parsed[0], &sent);
    }
    assert_eq!(audit_outcomes(&app, &id).await.len(), 1);

    // A deletion reaches the municipality as a file of the rows to remove.
    let r = app.delete("Immunization/imm-1").await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    round(&app).await;
    let received = endpoint.lock().unwrap();
    assert_eq!(received.requests.len(), 3, "one more file");
    let deletions = &received.requests[2];
    assert_eq!(
        (deletions.file_kind.as_str(), deletions.status),
        ("deletions", 201)
    );
    assert_ne!(deletions.file_id, file);
    let parsed = parse_file(CHUO, &deletions.body);
    assert_eq!(parsed.len(), 1);
    same_vaccination(&parsed[0], &sent);
}

#[tokio::test]
async fn files_are_gathered_once_a_day_or_when_the_operator_builds_them() {
    let app = spawn(|config| config.routing.municipal_file_interval_secs = 86_400).await;
    resident(&app, "p-chuo", CHUO, "000123").await;
    app.upsert(routine_immunization("imm-1", "p-chuo", "hib", "2024-07-10"))
        .await;
    app.upsert(routine_immunization("imm-2", "p-chuo", "pcv", "2024-07-10"))
        .await;
    let by_focus = |all: &[Value], record: &str| {
        all.iter()
            .find(|t| {
                t["focus"]["reference"]
                    .as_str()
                    .unwrap()
                    .starts_with(record)
            })
            .unwrap()
            .clone()
    };
    // Today's window has not ended: the worker waits.
    round(&app).await;
    let queued = tasks(&app, "municipal-file").await;
    assert!(
        queued.iter().all(|t| output(t, "file").is_none()),
        "{queued:#?}"
    );

    // Queued yesterday (Japan time): that window has ended, so the worker files it alone.
    queued_at(
        &app,
        by_focus(&queued, "Immunization/imm-1/"),
        "2026-11-18T10:00:00.000Z",
    )
    .await;
    round(&app).await;
    let after = tasks(&app, "municipal-file").await;
    let yesterday = by_focus(&after, "Immunization/imm-1/");
    let first = output_str(&yesterday, "file").expect("filed").to_owned();
    assert!(output(&by_focus(&after, "Immunization/imm-2/"), "file").is_none());

    // Only an operator builds now, and only for a registered municipality.
    let chuo = token(&app, "city-chuo").await;
    assert_eq!(
        post_as(&app, &chuo, &format!("files?municipality={CHUO}"))
            .await
            .status,
        403
    );
    let build = |query: String| {
        let app = &app;
        async move {
            app.send(
                app.operator()
                    .await
                    .post(format!("{}/routing/v1/files{query}", app.root)),
            )
            .await
        }
    };
    assert_eq!(build(String::new()).await.status, 400);
    assert_eq!(build("?municipality=131020".into()).await.status, 400);
    assert_eq!(build("?municipality=011002".into()).await.status, 404);
    let r = build(format!("?municipality={CHUO}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let built = listed_ids(&r.json());
    assert_eq!(built.len(), 1, "{}", r.text);
    assert_ne!(built[0], first);
    let now = task(
        &app,
        by_focus(&after, "Immunization/imm-2/")["id"]
            .as_str()
            .unwrap(),
    )
    .await;
    assert_eq!(output_str(&now, "file"), Some(built[0].as_str()));
    // Building again finds nothing new; the municipality lists both files.
    let again = build(format!("?municipality={CHUO}")).await;
    assert_eq!(again.json()["total"], 0, "{}", again.text);
    let mut listed = listed_ids(&get_as(&app, &chuo, "files").await.json());
    listed.sort();
    let mut expected = vec![first, built[0].clone()];
    expected.sort();
    assert_eq!(listed, expected);
}

async fn operate(app: &TestApp, task_id: &str, command: &str) {
    let r = app
        .send(app.operator().await.post(format!(
            "{}/routing/v1/deliveries/{task_id}/${command}",
            app.root
        )))
        .await;
    assert_eq!(r.status, 200, "{command}: {}", r.text);
}

#[tokio::test]
async fn a_replayed_delivery_goes_in_a_new_file_without_its_discarded_sibling() {
    let endpoint = Endpoint::default();
    endpoint.lock().unwrap().fail_next = 2;
    let url = format!("{}/files", start_endpoint(&endpoint, "/base"));
    let app = spawn(|config| {
        config.routing.municipal_files.insert(CHUO.into(), url);
        // The first failure dead-letters the file's Tasks.
        config.routing.retry = Some(RetryOverride {
            base_delay_ms: 0,
            max_delay_ms: 0,
            max_attempts: 1,
        });
    })
    .await;
    resident(&app, "p-chuo", CHUO, "000123").await;
    let sent = routine_immunization("imm-1", "p-chuo", "hib", "2024-07-10");
    app.upsert(sent.clone()).await;
    app.upsert(routine_immunization("imm-2", "p-chuo", "pcv", "2024-07-10"))
        .await;
    round(&app).await;
    let dead = tasks(&app, "municipal-file").await;
    assert!(dead.iter().all(|t| t["status"] == "failed"), "{dead:#?}");
    let id_of = |record: &str| {
        dead.iter()
            .find(|t| {
                t["focus"]["reference"]
                    .as_str()
                    .unwrap()
                    .starts_with(record)
            })
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (kept, dropped) = (id_of("Immunization/imm-1/"), id_of("Immunization/imm-2/"));
    let first = output_str(&task(&app, &kept).await, "file")
        .unwrap()
        .to_owned();

    // The operator drops one and replays the other: the replayed one leaves the file.
    operate(&app, &dropped, "discard").await;
    operate(&app, &kept, "replay").await;
    let replayed = task(&app, &kept).await;
    assert_eq!(output_str(&replayed, "file"), None, "{replayed:#}");
    assert_eq!(output_str(&replayed, "earlier-file"), Some(first.as_str()));
    assert!(
        !replayed.to_string().contains("routing-parcel-id"),
        "{replayed:#}"
    );

    // It goes in a new file alone, which fails too; replayed again, the same delivery goes in
    // a third file with an id of its own.
    round(&app).await;
    let second = output_str(&task(&app, &kept).await, "file")
        .unwrap()
        .to_owned();
    assert_ne!(second, first);
    operate(&app, &kept, "replay").await;
    round(&app).await;
    let done = task(&app, &kept).await;
    assert_eq!(done["status"], "completed", "{done:#}");
    let third = output_str(&done, "file").unwrap().to_owned();
    assert!(third != first && third != second, "{third}");
    assert_eq!(task(&app, &dropped).await["status"], "cancelled");

    let received = endpoint.lock().unwrap();
    let files: Vec<(&str, u16)> = received
        .requests
        .iter()
        .map(|r| (r.file_id.as_str(), r.status))
        .collect();
    assert_eq!(
        files,
        vec![
            (first.as_str(), 503),
            (second.as_str(), 503),
            (third.as_str(), 201)
        ]
    );
    assert_eq!(parse_file(CHUO, &received.requests[0].body).len(), 2);
    for request in &received.requests[1..] {
        let parsed = parse_file(CHUO, &request.body);
        assert_eq!(parsed.len(), 1, "only the replayed record");
        same_vaccination(&parsed[0], &sent);
    }
}

/// The caller's files waiting to be pulled, by kind (`records`, `deletions`), with their ids.
async fn waiting_files(app: &TestApp, token: &str) -> Vec<(String, String)> {
    let listing = get_as(app, token, "files").await;
    assert_eq!(listing.status, 200, "{}", listing.text);
    let mut files: Vec<(String, String)> = listing.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let binary = &e["resource"];
            let kind = binary["meta"]["tag"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| {
                    t["system"] == "https://musubi.example.org/fhir/CodeSystem/routing-parcel"
                })
                .unwrap()["code"]
                .as_str()
                .unwrap()
                .to_owned();
            (kind, binary["id"].as_str().unwrap().to_owned())
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_correction_that_changes_a_rows_key_removes_the_old_row() {
    let app = spawn(|_| {}).await;
    resident(&app, "p-chuo", CHUO, "000123").await;
    let first = routine_immunization("imm-1", "p-chuo", "hib", "2024-07-10");
    app.upsert(first.clone()).await;
    round(&app).await;
    let chuo = token(&app, "city-chuo").await;
    let files = waiting_files(&app, &chuo).await;
    assert_eq!(files.len(), 1, "{files:?}");
    let r = post_as(&app, &chuo, &format!("files/{}/ack", files[0].1)).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The vaccination date was wrong: the key (resident number, date, vaccine) changes.
    let corrected = routine_immunization("imm-1", "p-chuo", "hib", "2024-07-17");
    app.upsert(corrected.clone()).await;
    round(&app).await;
    let files = waiting_files(&app, &chuo).await;
    let kinds: Vec<&str> = files.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, vec!["deletions", "records"]);
    let content = |id: String| {
        let app = &app;
        let chuo = &chuo;
        async move {
            let r = get_as(app, chuo, &format!("files/{id}")).await;
            assert_eq!(r.status, 200, "{}", r.text);
            parse_file(CHUO, r.text.as_bytes())
        }
    };
    let removed = content(files[0].1.clone()).await;
    assert_eq!(removed.len(), 1);
    same_vaccination(&removed[0], &first);
    let added = content(files[1].1.clone()).await;
    assert_eq!(added.len(), 1);
    same_vaccination(&added[0], &corrected);

    // The removal is a delivery of its own, about the version the municipality held, part of
    // the correction's delivery.
    let all = tasks(&app, "municipal-file").await;
    assert_eq!(all.len(), 3, "{all:#?}");
    let removal = all
        .iter()
        .find(|t| t["partOf"].is_array())
        .expect("the removal's Task");
    assert_eq!(
        removal["focus"]["reference"],
        "Immunization/imm-1/_history/1"
    );
    assert_eq!(output_str(removal, "file"), Some(files[0].1.as_str()));
    let correction = all
        .iter()
        .find(|t| t["focus"]["reference"] == "Immunization/imm-1/_history/2")
        .unwrap();
    assert_eq!(
        removal["partOf"][0]["reference"],
        format!("Task/{}", correction["id"].as_str().unwrap())
    );
    for (_, id) in &files {
        let r = post_as(&app, &chuo, &format!("files/{id}/ack")).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    // A correction that keeps the key replaces the row: no deletions file.
    let mut relabelled = corrected.clone();
    relabelled["lotNumber"] = json!("LOT-2");
    app.upsert(relabelled).await;
    round(&app).await;
    let files = waiting_files(&app, &chuo).await;
    let kinds: Vec<&str> = files.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, vec!["records"]);
}

#[tokio::test]
async fn a_resident_the_layout_cannot_hold_is_dead_lettered_without_blocking_the_file() {
    let app = spawn(|_| {}).await;
    resident(&app, "p-chuo", CHUO, "000123").await;
    // No resident number: the layout's required 宛名番号 column cannot be filled.
    app.upsert(json!({"resourceType": "Patient", "id": "p-unknown", "birthDate": "2024-05-10", "gender": "male",
            "name": [{"text": "番号 なし"}],
            "address": [{"use": "home", "text": "東京都中央区",
                "extension": [{"url": MUNICIPALITY_EXTENSION, "valueCode": CHUO}]}]}),
    )
    .await;
    app.upsert(routine_immunization(
        "imm-ok",
        "p-chuo",
        "hib",
        "2024-07-10",
    ))
    .await;
    app.upsert(routine_immunization(
        "imm-bad",
        "p-unknown",
        "hib",
        "2024-07-10",
    ))
    .await;
    round(&app).await;
    let all = tasks(&app, "municipal-file").await;
    let by_focus = |record: &str| {
        all.iter()
            .find(|t| {
                t["focus"]["reference"]
                    .as_str()
                    .unwrap()
                    .starts_with(record)
            })
            .unwrap()
            .clone()
    };
    let bad = by_focus("Immunization/imm-bad/");
    assert_eq!(bad["status"], "failed", "{bad:#}");
    assert!(
        bad["statusReason"]["text"]
            .as_str()
            .unwrap()
            .contains("宛名番号"),
        "{bad:#}"
    );
    let ok = by_focus("Immunization/imm-ok/");
    assert!(output_str(&ok, "file").is_some(), "{ok:#}");
    let r = app
        .send(
            app.operator()
                .await
                .get(format!("{}/routing/v1/deliveries?status=failed", app.root)),
        )
        .await;
    assert!(r.text.contains("宛名番号"), "{}", r.text);
}

// ---------------------------------------------------------------------------------------------
// Weekly digests.

fn needs_care(id: &str, patient: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "exam"}]}],
        "code": {"text": "乳幼児健診 判定"},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-11-20",
        "valueCodeableConcept": {"coding": [{"system": "https://musubi.example.org/fhir/CodeSystem/checkup-judgement", "code": "refer"}]}})
}

/// The guardian's consent to share check-ups with the district team for care coordination.
fn team_consent(patient: &str, team: &str) -> Value {
    json!({
        "resourceType": "Consent", "id": format!("consent-{patient}"), "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": "2026-04-01T09:00:00+09:00",
        "performer": [{"reference": format!("RelatedPerson/rp-{patient}")}],
        "provision": {"type": "permit",
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                       "reference": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": team}}}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "COC"}],
            "class": [{"system": "https://musubi.example.org/fhir/CodeSystem/data-class", "code": "checkups"}]}
    })
}

/// A resident with a guardian, and the guardian's consent for `team` if any.
async fn family(app: &TestApp, patient: &str, code: &str, team: Option<&str>) {
    resident(app, patient, code, &format!("n-{patient}")).await;
    app.upsert(
        json!({"resourceType": "RelatedPerson", "id": format!("rp-{patient}"), "active": true,
               "patient": {"reference": format!("Patient/{patient}")}}),
    )
    .await;
    if let Some(team) = team {
        app.upsert(team_consent(patient, team)).await;
    }
}

/// Moves a Task's queueing time back a week, as if the record had been routed last week.
async fn queued_last_week(app: &TestApp, task: Value) {
    queued_at(app, task, "2026-11-18T10:00:00.000Z").await;
}

/// Moves a Task's queueing time to `instant`.
async fn queued_at(app: &TestApp, mut task: Value, instant: &str) {
    task["authoredOn"] = json!(instant);
    let id = task["id"].as_str().unwrap().to_owned();
    let r = app.put(&format!("Task/{id}"), &task).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn a_district_team_gets_one_digest_a_week_of_the_records_it_may_see() {
    let app = spawn(|_| {}).await;
    family(&app, "p-a", CHUO, Some("team-chuo")).await;
    family(&app, "p-b", CHUO, None).await;
    family(&app, "p-c", CHUO, Some("team-chuo")).await;
    app.upsert(needs_care("obs-a1", "p-a")).await;
    app.upsert(needs_care("obs-a2", "p-a")).await;
    app.upsert(needs_care("obs-b1", "p-b")).await;
    app.upsert(needs_care("obs-c1", "p-c")).await;
    // p-c's guardian withdraws the consent while the record waits for the digest.
    let mut withdrawn = team_consent("p-c", "team-chuo");
    withdrawn["status"] = json!("inactive");
    app.upsert(withdrawn).await;
    let queued = tasks(&app, "weekly-digest").await;
    assert_eq!(queued.len(), 4, "{queued:#?}");
    assert!(
        queued
            .iter()
            .all(|t| t["owner"]["identifier"]["value"] == "team-chuo")
    );

    // This week has not ended: the worker waits.
    round(&app).await;
    assert!(
        tasks(&app, "weekly-digest")
            .await
            .iter()
            .all(|t| output(t, "digest").is_none())
    );

    // Queued in week 2026-W47, which has ended: the worker makes the digest.
    for t in queued {
        queued_last_week(&app, t).await;
    }
    round(&app).await;
    let after = tasks(&app, "weekly-digest").await;
    let of = |record: &str| {
        after
            .iter()
            .find(|t| {
                t["focus"]["reference"]
                    .as_str()
                    .unwrap()
                    .starts_with(record)
            })
            .unwrap()
            .clone()
    };
    for record in ["Observation/obs-b1/", "Observation/obs-c1/"] {
        let refused = of(record);
        assert_eq!(
            refused["status"], "rejected",
            "no consent for the team: {refused:#}"
        );
        assert!(
            refused["statusReason"]["text"]
                .as_str()
                .unwrap()
                .starts_with("consent re-check at delivery"),
            "{refused:#}"
        );
        let audits = audit_outcomes(&app, refused["id"].as_str().unwrap()).await;
        assert_eq!(audits.len(), 1, "{audits:?}");
        assert_eq!(audits[0].0, "4");
        assert!(output(&refused, "digest").is_none());
    }
    let digest = output_str(&of("Observation/obs-a1/"), "digest")
        .unwrap()
        .to_owned();
    assert_eq!(
        output_str(&of("Observation/obs-a2/"), "digest"),
        Some(digest.as_str())
    );

    let team = token(&app, "team-chuo").await;
    let listing = get_as(&app, &team, "digests").await;
    assert_eq!(listing.status, 200, "{}", listing.text);
    assert_eq!(listed_ids(&listing.json()), vec![digest.clone()]);
    let r = get_as(&app, &team, &format!("digests/{digest}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/fhir+json"));
    let bundle = r.json();
    assert_eq!(bundle["type"], "collection");
    assert_eq!(bundle["identifier"]["value"], digest.as_str());
    let list = &bundle["entry"][0]["resource"];
    assert_eq!(list["resourceType"], "List");
    assert!(
        list["title"].as_str().unwrap().contains("2026-W47"),
        "{list:#}"
    );
    let mut records: Vec<&str> = bundle["entry"].as_array().unwrap()[1..]
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    records.sort_unstable();
    assert_eq!(records, vec!["obs-a1", "obs-a2"]);

    // Building the week again (operator) changes nothing; the other team has no digest.
    let r = app
        .send(
            app.operator()
                .await
                .post(format!("{}/routing/v1/digests?week=2026-W47", app.root)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(listed_ids(&r.json()), vec![digest.clone()]);
    round(&app).await;
    assert_eq!(
        listed_ids(&get_as(&app, &team, "digests").await.json()),
        vec![digest.clone()]
    );
    let other = token(&app, "team-minato").await;
    assert_eq!(
        listed_ids(&get_as(&app, &other, "digests").await.json()),
        Vec::<String>::new()
    );
    assert_eq!(
        get_as(&app, &other, &format!("digests/{digest}"))
            .await
            .status,
        404
    );
    // The city itself is not the district team: the digest is not its to read.
    let city = token(&app, "city-chuo").await;
    assert_eq!(
        get_as(&app, &city, &format!("digests/{digest}"))
            .await
            .status,
        404
    );
    // Only an operator builds digests, and only for a real week.
    assert_eq!(
        post_as(&app, &team, "digests?week=2026-W47").await.status,
        403
    );
    let r = app
        .send(
            app.operator()
                .await
                .post(format!("{}/routing/v1/digests?week=2026-W54", app.root)),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);

    let r = post_as(&app, &team, &format!("digests/{digest}/ack")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        task(&app, of("Observation/obs-a1/")["id"].as_str().unwrap()).await["status"],
        "completed"
    );
    assert_eq!(
        post_as(&app, &team, &format!("digests/{digest}/ack"))
            .await
            .status,
        409
    );

    // A record of this week waits for the week's end, unless the operator builds it now.
    app.upsert(needs_care("obs-a3", "p-a")).await;
    round(&app).await;
    let fresh = tasks(&app, "weekly-digest")
        .await
        .into_iter()
        .find(|t| {
            t["focus"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Observation/obs-a3/")
        })
        .unwrap();
    assert!(output(&fresh, "digest").is_none(), "{fresh:#}");
    let authored = time::OffsetDateTime::parse(
        fresh["authoredOn"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let week = routing::IsoWeek::of(authored);
    let r = app
        .send(
            app.operator()
                .await
                .post(format!("{}/routing/v1/digests?week={week}", app.root)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let built = listed_ids(&r.json());
    assert_eq!(built.len(), 1);
    assert_ne!(built[0], digest);
    let fresh = task(&app, fresh["id"].as_str().unwrap()).await;
    assert_eq!(output_str(&fresh, "digest"), Some(built[0].as_str()));
}

#[tokio::test]
async fn a_team_with_an_endpoint_receives_its_digest_by_rest_hook_once() {
    let endpoint = Endpoint::default();
    endpoint.lock().unwrap().fail_next = 1;
    let url = format!("{}/fhir", start_endpoint(&endpoint, "/base"));
    let app = spawn(|config| {
        config.routing.endpoints.insert("team-minato".into(), url);
    })
    .await;
    family(&app, "p-m", MINATO, Some("team-minato")).await;
    app.upsert(needs_care("obs-m1", "p-m")).await;
    let queued = tasks(&app, "weekly-digest").await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["owner"]["identifier"]["value"], "team-minato");
    let id = queued[0]["id"].as_str().unwrap().to_owned();
    queued_last_week(&app, queued[0].clone()).await;

    round(&app).await;
    assert_eq!(task(&app, &id).await["status"], "on-hold");
    round(&app).await;
    let done = task(&app, &id).await;
    assert_eq!(done["status"], "completed", "{done:#}");
    let digest = output_str(&done, "digest").unwrap().to_owned();
    round(&app).await;
    {
        let received = endpoint.lock().unwrap();
        let statuses: Vec<u16> = received.requests.iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![503, 201]);
        let last = &received.requests[1];
        assert_eq!(last.path, "/base/fhir/Bundle");
        assert_eq!(last.delivery_id, digest);
        let bundle: Value = serde_json::from_slice(&last.body).unwrap();
        assert_eq!(bundle["type"], "collection");
        assert_eq!(bundle["entry"][1]["resource"]["id"], "obs-m1");
    }
    // Pushed, so there is nothing to pull.
    let team = token(&app, "team-minato").await;
    assert_eq!(
        listed_ids(&get_as(&app, &team, "digests").await.json()),
        Vec::<String>::new()
    );
}
