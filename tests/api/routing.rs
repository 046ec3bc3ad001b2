//! Routed deliveries end to end: a clinic's Immunization queues an outbox Task in the same
//! commit, the worker delivers it to the parent's app (a local FHIR endpoint in the test) exactly
//! once through outages, dead-letters what keeps failing, refuses what a withdrawn consent no
//! longer allows, and recipients without an endpoint pull from the mailbox.

use std::time::Duration;

use gateway::config::RetryOverride;
use musubi_tests::{
    Endpoint, TEST_CLIENT_SECRET, TestApp, client_credentials_token, start_endpoint, system_client,
};
use serde_json::{Value, json};

const APP: &str = "routing-app";
const ACCOUNT: &str = "https://musubi.example.org/fhir/IdSystem/account";
const CLIENT_ID_SYSTEM: &str = "https://musubi.example.org/fhir/IdSystem/client-id";
const CHANNEL_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/routing-channel";

/// The parent's app's FHIR endpoint (musubi_tests::Endpoint).
type Recipient = Endpoint;

/// Serves the app's endpoint; its FHIR base URL.
fn recipient_endpoint(recipient: &Recipient) -> String {
    start_endpoint(recipient, "/fhir")
}

/// The app's backend: it may read its records and, as their addressee, its delivery Tasks.
fn app_client() -> auth::Client {
    system_client(
        APP,
        auth::ClientKind::PhrApp,
        &["system/Immunization.rs", "system/Task.rs"],
    )
}

/// GET as the app: a delivery Task is shown only to the party it is addressed to.
async fn get_as_app(app: &TestApp, path: &str) -> musubi_tests::Response {
    let token =
        client_credentials_token(&app.anonymous(), &app.root, APP, TEST_CLIENT_SECRET, None)
            .await
            .expect("the app's token");
    app.send(app.anonymous().get(app.url(path)).bearer_auth(token))
        .await
}

/// The test server with the app registered, its endpoint (if any) and short retries.
async fn spawn(endpoint: Option<String>, max_attempts: u32) -> TestApp {
    TestApp::spawn_with(|config| {
        config.clients.push(app_client());
        config.routing.poll_interval_ms = 50;
        config.routing.retry = Some(RetryOverride {
            base_delay_ms: 100,
            max_delay_ms: 200,
            max_attempts,
        });
        if let Some(endpoint) = endpoint {
            config.routing.endpoints.insert(APP.into(), endpoint);
        }
    })
    .await
}

fn app_sharing_consent(status: &str) -> Value {
    json!({
        "resourceType": "Consent", "id": "share-with-app", "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/child-a"},
        "dateTime": "2025-04-01T09:00:00+09:00",
        "performer": [{"reference": "RelatedPerson/rp-child-a"}],
        "provision": {"type": "permit",
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                       "reference": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": APP}}}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "PATRQT"}],
            "class": [{"system": "https://musubi.example.org/fhir/CodeSystem/data-class", "code": "vaccinations"}]}
    })
}

/// child-a, linked to a parent's account, whose guardian consented to sharing vaccinations with
/// the app.
async fn seed(app: &TestApp) {
    app.upsert(
        json!({"resourceType": "Patient", "id": "child-a", "birthDate": "2024-05-10",
               "name": [{"text": "子 a"}]}),
    )
    .await;
    app.upsert(
        json!({"resourceType": "RelatedPerson", "id": "rp-child-a", "active": true,
               "identifier": [{"system": ACCOUNT, "value": "parent-a"}],
               "patient": {"reference": "Patient/child-a"}}),
    )
    .await;
    app.upsert(app_sharing_consent("active")).await;
}

fn immunization(id: &str) -> Value {
    json!({"resourceType": "Immunization", "id": id, "status": "completed",
        "vaccineCode": {"coding": [{"system": "https://musubi.example.org/fhir/CodeSystem/vaccine-type", "code": "hib"}]},
        "patient": {"reference": "Patient/child-a"}, "occurrenceDateTime": "2024-07-10",
        "primarySource": true})
}

/// The outbox Tasks of one record for the test's app (the demo configuration registers apps of
/// its own, which get theirs).
async fn tasks_of(app: &TestApp, record: &str) -> Vec<Value> {
    let r = get_as_app(app, "Task?subject=Patient/child-a&_count=100").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .filter(|t| t["owner"]["identifier"]["value"] == APP)
        .filter(|t| {
            t["focus"]["reference"]
                .as_str()
                .is_some_and(|f| f.starts_with(&format!("{record}/_history/")))
        })
        .collect()
}

async fn task(app: &TestApp, id: &str) -> Value {
    let r = get_as_app(app, &format!("Task/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// Waits (up to 10 s) until the Task has one of the statuses.
async fn wait_for_status(app: &TestApp, id: &str, statuses: &[&str]) -> Value {
    for _ in 0..200 {
        let t = task(app, id).await;
        if statuses.contains(&t["status"].as_str().unwrap_or_default()) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "Task/{id} never reached {statuses:?}: {:#}",
        task(app, id).await
    );
}

fn attempts(task: &Value) -> u64 {
    task["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"]["text"] == "attempts")
        .and_then(|o| o["valueUnsignedInt"].as_u64())
        .unwrap()
}

async fn audit_outcomes(app: &TestApp, task_id: &str) -> Vec<String> {
    let r = app.get(&format!("AuditEvent?entity=Task/{task_id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        // Delivery decisions (DICOM "Export"), not the reads of the Task by this test.
        .filter(|e| e["resource"]["type"]["code"] == "110106")
        .map(|e| {
            e["resource"]["outcome"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The one delivery Task of a freshly created record.
async fn only_task(app: &TestApp, record: &str) -> Value {
    let tasks = tasks_of(app, record).await;
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    tasks[0].clone()
}

#[tokio::test]
async fn a_clinic_immunization_reaches_the_parents_app_exactly_once() {
    let recipient = Recipient::default();
    let app = spawn(Some(recipient_endpoint(&recipient)), 5).await;
    seed(&app).await;
    let created = app.upsert(immunization("imm-1")).await;
    assert_eq!(created["meta"]["versionId"], "1");

    // The Task was written with the record: it exists as soon as the write answered.
    let queued = only_task(&app, "Immunization/imm-1").await;
    assert_eq!(
        queued["focus"]["reference"],
        "Immunization/imm-1/_history/1"
    );
    assert_eq!(queued["owner"]["identifier"]["value"], APP);
    assert_eq!(queued["meta"]["tag"][0]["code"], APP);
    assert_eq!(queued["code"]["coding"][0]["system"], CHANNEL_SYSTEM);
    assert_eq!(queued["code"]["coding"][0]["code"], "fhir-rest-hook");
    assert_eq!(queued["reasonCode"]["coding"][0]["code"], "PATRQT");
    let id = queued["id"].as_str().unwrap().to_owned();

    let done = wait_for_status(&app, &id, &["completed"]).await;
    assert_eq!(done["businessStatus"]["coding"][0]["code"], "delivered");
    assert_eq!(attempts(&done), 1);
    // Several more polls: still exactly one request.
    tokio::time::sleep(Duration::from_millis(400)).await;
    {
        let received = recipient.lock().unwrap();
        assert_eq!(received.requests.len(), 1, "{:?}", received.requests);
        let request = &received.requests[0];
        let (method, path, delivery, status) = (
            &request.method,
            &request.path,
            &request.delivery_id,
            &request.status,
        );
        assert_eq!(
            (method.as_str(), path.as_str(), delivery.as_str(), *status),
            ("POST", "/fhir/Immunization", id.as_str(), 201)
        );
        assert_eq!(received.accepted()[0]["id"], "imm-1");
        assert_eq!(received.accepted()[0]["resourceType"], "Immunization");
    }
    assert_eq!(audit_outcomes(&app, &id).await, vec!["0"]);

    // Writing the same content again stores no new version and queues nothing.
    app.upsert(immunization("imm-1")).await;
    assert_eq!(tasks_of(&app, "Immunization/imm-1").await.len(), 1);
    // A correction is a new version: a new delivery.
    let mut corrected = immunization("imm-1");
    corrected["lotNumber"] = json!("LOT-2");
    app.upsert(corrected).await;
    let tasks = tasks_of(&app, "Immunization/imm-1").await;
    assert_eq!(tasks.len(), 2);
    let second = tasks
        .iter()
        .find(|t| t["focus"]["reference"] == "Immunization/imm-1/_history/2")
        .expect("a Task for version 2");
    wait_for_status(&app, second["id"].as_str().unwrap(), &["completed"]).await;
    assert_eq!(recipient.lock().unwrap().requests.len(), 2);
}

#[tokio::test]
async fn a_rolled_back_transaction_leaves_no_task() {
    let app = spawn(None, 5).await;
    seed(&app).await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": immunization("imm-tx"), "request": {"method": "PUT", "url": "Immunization/imm-tx"}},
        // Fails (the Patient is at version 1), so the whole transaction rolls back.
        {"resource": {"resourceType": "Patient", "id": "child-a", "active": true},
         "request": {"method": "PUT", "url": "Patient/child-a", "ifMatch": "W/\"99\""}}
    ]});
    let r = app.post("", &bundle).await;
    assert!(r.status >= 400, "{}", r.text);
    assert_eq!(app.get("Immunization/imm-tx").await.status, 404);
    assert!(tasks_of(&app, "Immunization/imm-tx").await.is_empty());

    // The same transaction without the failing entry commits the record and its Task together.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": immunization("imm-tx"), "request": {"method": "PUT", "url": "Immunization/imm-tx"}}
    ]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let queued = only_task(&app, "Immunization/imm-tx").await;
    // No endpoint is configured for the app, so the delivery waits in its mailbox.
    assert_eq!(queued["code"]["coding"][0]["code"], "mailbox");
    assert_eq!(queued["status"], "requested");
}

#[tokio::test]
async fn a_recipient_down_then_up_receives_the_record_once() {
    let recipient = Recipient::default();
    recipient.lock().unwrap().fail_next = 2;
    let app = spawn(Some(recipient_endpoint(&recipient)), 6).await;
    seed(&app).await;
    app.upsert(immunization("imm-2")).await;
    let id = only_task(&app, "Immunization/imm-2").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = wait_for_status(&app, &id, &["completed", "failed"]).await;
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(attempts(&done), 3);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let received = recipient.lock().unwrap();
    let statuses: Vec<u16> = received.requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 201]);
    assert!(received.requests.iter().all(|r| r.delivery_id == id));
    assert_eq!(received.accepted().len(), 1);
}

#[tokio::test]
async fn an_always_failing_delivery_is_dead_lettered_and_can_be_replayed() {
    let recipient = Recipient::default();
    recipient.lock().unwrap().always_fail = true;
    let app = spawn(Some(recipient_endpoint(&recipient)), 2).await;
    seed(&app).await;
    app.upsert(immunization("imm-3")).await;
    let id = only_task(&app, "Immunization/imm-3").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dead = wait_for_status(&app, &id, &["failed"]).await;
    assert_eq!(dead["businessStatus"]["coding"][0]["code"], "dead");
    assert_eq!(
        dead["statusReason"]["text"],
        "gave up after 2 attempts; last failure: the recipient answered HTTP 503"
    );

    // The operator lists the dead letters with their reasons…
    let r = app
        .send(
            app.operator()
                .await
                .get(format!("{}/routing/v1/deliveries?status=failed", app.root)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed = r.json();
    let ids: Vec<&str> = listed["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["id"].as_str())
        .collect();
    assert_eq!(ids, vec![id.as_str()]);

    // …which the app itself may not.
    let app_token =
        client_credentials_token(&app.anonymous(), &app.root, APP, TEST_CLIENT_SECRET, None)
            .await
            .unwrap();
    let r = app
        .send(
            app.anonymous()
                .get(format!("{}/routing/v1/deliveries", app.root))
                .bearer_auth(&app_token),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);

    // Discarding or replaying something not dead is refused; replaying the dead letter works.
    recipient.lock().unwrap().always_fail = false;
    let operator = app.operator().await;
    let replay = |path: String| app.send(operator.post(path));
    let r = replay(format!("{}/routing/v1/deliveries/{id}/$replay", app.root)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let done = wait_for_status(&app, &id, &["completed"]).await;
    assert_eq!(attempts(&done), 1);
    let r = replay(format!("{}/routing/v1/deliveries/{id}/$discard", app.root)).await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r = replay(format!(
        "{}/routing/v1/deliveries/no-such/$replay",
        app.root
    ))
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let statuses: Vec<u16> = recipient
        .lock()
        .unwrap()
        .requests
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![503, 503, 201]);
}

#[tokio::test]
async fn a_consent_revoked_while_queued_refuses_the_delivery() {
    // The endpoint is down until the end, so the revocation lands while the record is queued.
    let recipient = Recipient::default();
    recipient.lock().unwrap().always_fail = true;
    let app = spawn(Some(recipient_endpoint(&recipient)), 1000).await;
    seed(&app).await;
    app.upsert(immunization("imm-4")).await;
    let id = only_task(&app, "Immunization/imm-4").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for_status(&app, &id, &["on-hold"]).await;
    app.upsert(app_sharing_consent("inactive")).await;
    let refused = wait_for_status(&app, &id, &["rejected", "completed"]).await;
    assert_eq!(refused["status"], "rejected", "{refused:#}");
    assert_eq!(refused["businessStatus"]["coding"][0]["code"], "refused");
    assert!(
        refused["statusReason"]["text"]
            .as_str()
            .unwrap()
            .starts_with("consent re-check at delivery"),
        "{refused:#}"
    );
    assert_eq!(audit_outcomes(&app, &id).await, vec!["4"]);
    let received = recipient.lock().unwrap().requests.clone();
    assert!(!received.is_empty());
    assert!(
        received.iter().all(|r| r.status == 503),
        "nothing was delivered: {received:?}"
    );
    let count = received.len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        recipient.lock().unwrap().requests.len(),
        count,
        "no attempt after the refusal"
    );
    // A refusal is final: it cannot be replayed.
    let r = app
        .send(
            app.operator()
                .await
                .post(format!("{}/routing/v1/deliveries/{id}/$replay", app.root)),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
}

#[tokio::test]
async fn a_recipient_without_an_endpoint_lists_and_acks_its_mailbox() {
    let app = spawn(None, 5).await;
    seed(&app).await;
    app.upsert(immunization("imm-5")).await;
    let id = only_task(&app, "Immunization/imm-5").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token =
        client_credentials_token(&app.anonymous(), &app.root, APP, TEST_CLIENT_SECRET, None)
            .await
            .unwrap();
    let inbox = || {
        app.send(
            app.anonymous()
                .get(format!("{}/routing/v1/inbox", app.root))
                .bearer_auth(&token),
        )
    };
    let r = inbox().await;
    assert_eq!(r.status, 200, "{}", r.text);
    let bundle = r.json();
    assert_eq!(bundle["type"], "history");
    assert_eq!(bundle["total"], 1);
    let entry = &bundle["entry"][0];
    assert_eq!(entry["id"], id.as_str());
    assert_eq!(entry["resource"]["id"], "imm-5");
    let ack_url = entry["link"][0]["url"].as_str().unwrap().to_owned();
    assert!(
        ack_url.ends_with(&format!("/routing/v1/inbox/{id}/ack")),
        "{ack_url}"
    );

    // Another client's mailbox does not hold it, and it cannot ack it.
    let r = app
        .send(app.client.get(format!("{}/routing/v1/inbox", app.root)))
        .await;
    assert_eq!(r.json()["total"], 0, "{}", r.text);
    let r = app.send(app.client.post(&ack_url)).await;
    assert_eq!(r.status, 404, "{}", r.text);

    let ack = || app.send(app.anonymous().post(&ack_url).bearer_auth(&token));
    let r = ack().await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "completed");
    assert_eq!(inbox().await.json()["total"], 0);
    assert_eq!(
        ack().await.status,
        409,
        "a second ack is not a second delivery"
    );
    assert_eq!(audit_outcomes(&app, &id).await, vec!["0"]);
    // Without a token the mailbox is closed.
    let r = app
        .send(
            app.anonymous()
                .get(format!("{}/routing/v1/inbox", app.root)),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
}

#[tokio::test]
async fn a_poison_task_is_dead_lettered_without_blocking_the_others() {
    let recipient = Recipient::default();
    let app = spawn(Some(recipient_endpoint(&recipient)), 5).await;
    seed(&app).await;
    // An outbox Task the worker cannot read (written around the planner), addressed to the app
    // so the app may follow it.
    app.upsert(json!({"resourceType": "Task", "id": "poison", "status": "requested", "intent": "order",
               "identifier": [{"system": "https://musubi.example.org/fhir/IdSystem/delivery-id", "value": "poison"}],
               "input": [{"type": {"coding": [{"system": "https://musubi.example.org/fhir/CodeSystem/routing-parameter", "code": "recipient"}]}, "valueString": APP}],
               "code": {"coding": [{"system": CHANNEL_SYSTEM, "code": "fhir-rest-hook"}]},
               "businessStatus": {"coding": [{"system": "https://musubi.example.org/fhir/CodeSystem/delivery-status", "code": "no-such-state"}]},
               "for": {"reference": "Patient/child-a"}}),
    )
    .await;
    app.upsert(immunization("imm-6")).await;
    let id = only_task(&app, "Immunization/imm-6").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for_status(&app, &id, &["completed"]).await;
    let poison = wait_for_status(&app, "poison", &["failed"]).await;
    assert!(
        poison["statusReason"]["text"]
            .as_str()
            .unwrap()
            .starts_with("unreadable delivery Task"),
        "{poison:#}"
    );
    assert_eq!(recipient.lock().unwrap().requests.len(), 1);
}

#[tokio::test]
async fn a_parents_app_subscribes_and_receives_the_clinics_immunization() {
    let recipient = Recipient::default();
    let endpoint = recipient_endpoint(&recipient);
    let app = TestApp::spawn_with(|config| {
        let mut client = app_client();
        client.scopes.push("system/Subscription.cruds".into());
        config.clients.push(client);
        config.fhir.resource_types.push("Subscription".into());
        config.routing.poll_interval_ms = 50;
    })
    .await;
    seed(&app).await;
    let token =
        client_credentials_token(&app.anonymous(), &app.root, APP, TEST_CLIENT_SECRET, None)
            .await
            .unwrap();
    let subscribe = |subscription: Value| {
        app.send(
            app.anonymous()
                .post(app.url("Subscription"))
                .bearer_auth(&token)
                .header("content-type", "application/fhir+json")
                .body(subscription.to_string()),
        )
    };
    let subscription = json!({"resourceType": "Subscription", "status": "requested",
        "reason": "新しい接種記録をアプリに届ける",
        "criteria": "Immunization?patient=Patient/child-a",
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}});
    let mut wrong = subscription.clone();
    wrong["channel"]["type"] = json!("email");
    assert_eq!(subscribe(wrong).await.status, 422);
    let r = subscribe(subscription).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let stored = r.json();
    assert_eq!(stored["status"], "active");
    assert_eq!(stored["meta"]["tag"][0]["code"], APP);

    // The clinic records the vaccination; the parent's app receives it by rest-hook.
    app.upsert(immunization("imm-7")).await;
    let queued = only_task(&app, "Immunization/imm-7").await;
    assert_eq!(queued["code"]["coding"][0]["code"], "fhir-rest-hook");
    wait_for_status(&app, queued["id"].as_str().unwrap(), &["completed"]).await;
    let received = recipient.lock().unwrap();
    assert_eq!(received.requests.len(), 1, "{:?}", received.requests);
    assert_eq!(received.accepted()[0]["id"], "imm-7");
}

/// A 予診票 goes to the clinic the guardian chose, addressed to that clinic's Organization: the
/// clinic's client, registered for that Organization, finds it in its mailbox; a clinic
/// registered for another Organization does not.
#[tokio::test]
async fn a_chosen_clinic_pulls_the_prevaccination_form_addressed_to_its_organization() {
    let clinic = |id: &str, organization: &str| {
        let mut client = system_client(
            id,
            auth::ClientKind::ClinicEmr,
            &["system/QuestionnaireResponse.rs", "system/Task.rs"],
        );
        client.organization = Some(organization.to_owned());
        client
    };
    let app = TestApp::spawn_with(|config| {
        config
            .clients
            .push(clinic("chosen-emr", "Organization/chosen"));
        config
            .clients
            .push(clinic("other-emr", "Organization/other"));
    })
    .await;
    seed(&app).await;
    for id in ["chosen", "other"] {
        app.upsert(json!({"resourceType": "Organization", "id": id, "name": id}))
            .await;
    }
    app.upsert(json!({
        "resourceType": "QuestionnaireResponse", "id": "form-1",
        "questionnaire": "https://musubi.example.org/fhir/Questionnaire/prevaccination-child",
        "status": "in-progress", "subject": {"reference": "Patient/child-a"},
        "authored": "2024-07-01T09:30:00+09:00",
        "extension": [{"url": "https://musubi.example.org/fhir/StructureDefinition/chosen-clinic",
                       "valueReference": {"reference": "Organization/chosen"}}],
        "item": [{"linkId": "header", "item": [
            {"linkId": "guardian-name", "answer": [{"valueString": "結城　一郎"}]},
            {"linkId": "body-temperature", "answer": [{"valueDecimal": 36.6}]}]}]
    }))
    .await;
    let inbox = |client: &'static str| {
        let app = &app;
        async move {
            let token = client_credentials_token(
                &app.anonymous(),
                &app.root,
                client,
                TEST_CLIENT_SECRET,
                None,
            )
            .await
            .unwrap();
            let r = app
                .send(
                    app.anonymous()
                        .get(format!("{}/routing/v1/inbox", app.root))
                        .bearer_auth(token),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.json()
        }
    };
    let chosen = inbox("chosen-emr").await;
    assert_eq!(chosen["total"], 1, "{chosen:#}");
    assert_eq!(chosen["entry"][0]["resource"]["id"], "form-1");
    assert_eq!(inbox("other-emr").await["total"], 0);
}
