//! The municipal adapter over HTTP: file imports as tasks (raw and multipart bodies), per-line
//! reports, idempotent re-imports, byte-exact exports and the PMH-style JSON form.

use musubi_tests::{Response, TestApp};
use serde_json::{Value, json};

pub(crate) const GOLDEN_UTF8: &[u8] =
    include_bytes!("../../municipal/tests/golden/musubi-vaccination.utf-8.csv");
const GOLDEN_CP932: &[u8] =
    include_bytes!("../../municipal/tests/golden/musubi-vaccination.cp932.csv");
const BROKEN: &[u8] = include_bytes!("../../municipal/tests/golden/broken-vaccination.utf-8.csv");
pub(crate) const QUERY: &str = "layout=musubi-vaccination&municipality=131016";

pub(crate) fn root(app: &TestApp, path: &str) -> String {
    format!("{}{path}", app.base.trim_end_matches("/fhir"))
}

pub(crate) async fn upload(app: &TestApp, body: &'static [u8]) -> Response {
    app.send(
        app.client
            .post(root(app, &format!("/municipal/v1/imports?{QUERY}")))
            .header("content-type", "text/csv")
            .body(body),
    )
    .await
}

/// Poll the status URL until the import has finished.
pub(crate) async fn finished(app: &TestApp, accepted: &Response) -> Value {
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let location = accepted.header("location").expect("status URL").to_owned();
    for _ in 0..400 {
        let status = app.send(app.client.get(root(app, &location))).await;
        assert_eq!(status.status, 200, "{}", status.text);
        let report = status.json();
        if report["state"] != "running" {
            return report;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the import did not finish");
}

#[tokio::test]
async fn import_is_a_task_and_a_reimport_changes_nothing() {
    let app = TestApp::spawn().await;
    let report = finished(&app, &upload(&app, GOLDEN_CP932).await).await;
    assert_eq!(report["state"], "completed", "{report}");
    assert_eq!(report["encoding"], "cp932");
    assert_eq!(report["bytesTotal"], GOLDEN_CP932.len());
    assert_eq!(report["bytesRead"], GOLDEN_CP932.len());
    assert_eq!(report["rowsRead"], 4);
    assert_eq!(report["rowsImported"], 4);
    assert_eq!(report["rowsRejected"], 0);

    // The same records in UTF-8 are the same resources: nothing changes, and the report says so.
    let again = finished(&app, &upload(&app, GOLDEN_UTF8).await).await;
    assert_eq!(again["rowsUnchanged"], 4, "{again}");
    assert_eq!(again["rowsImported"], 0, "{again}");
    assert_eq!(again["resourcesCreated"], 0, "{again}");

    // The residents are FHIR Patients with the municipality-scoped resident number.
    let patients = app
        .get("Patient?identifier=https://musubi.example.org/fhir/IdSystem/resident-number/131016|0000101")
        .await
        .json();
    assert_eq!(patients["total"], 1, "{patients}");
}

#[tokio::test]
async fn broken_rows_are_reported_by_line_and_good_rows_land() {
    let app = TestApp::spawn().await;
    let report = finished(&app, &upload(&app, BROKEN).await).await;
    assert_eq!(report["state"], "completed", "{report}");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(
        report["rowsRejected"].as_u64().unwrap() as usize,
        errors.len()
    );
    assert!(report["rowsImported"].as_u64().unwrap() > 0, "{report}");
    let first = &errors[0];
    assert_eq!(first["line"], 3, "{report}");
    assert_eq!(first["column"], "接種日");
    assert_eq!(first["value"], "20240230");
    assert!(
        errors.iter().any(|e| e["reason"]
            .as_str()
            .unwrap()
            .contains("truncated last line")),
        "{report}"
    );
    // Six good rows; line 14 records the same vaccination as line 2 (same resident, vaccine,
    // day and dose), so they are one Immunization. No rejected row left anything behind.
    assert_eq!(report["rowsImported"], 6, "{report}");
    let count = app.get("Immunization?_summary=count").await.json();
    assert_eq!(count["total"], 5, "{report}");
}

#[tokio::test]
async fn export_reproduces_the_canonical_file_byte_for_byte() {
    let app = TestApp::spawn().await;
    finished(&app, &upload(&app, GOLDEN_CP932).await).await;
    for (encoding, golden) in [("cp932", GOLDEN_CP932), ("utf-8", GOLDEN_UTF8)] {
        let response = app
            .client
            .get(root(
                &app,
                &format!("/municipal/v1/exports?{QUERY}&encoding={encoding}"),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-musubi-export-rows"], "4");
        let bytes = response.bytes().await.unwrap();
        assert!(
            bytes.as_ref() == golden,
            "{encoding} export differs:\n{}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // `since` keeps the records on or after the day.
    let later = app
        .send(app.client.get(root(
            &app,
            &format!("/municipal/v1/exports?{QUERY}&encoding=utf-8&since=2024-04-01"),
        )))
        .await;
    assert!(later.text.lines().count() < GOLDEN_UTF8.split(|b| *b == b'\n').count() - 1);
}

#[tokio::test]
async fn multipart_uploads_and_bad_requests() {
    let app = TestApp::spawn().await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(GOLDEN_UTF8.to_vec()).file_name("台帳.csv"),
    );
    let accepted = app
        .send(
            app.client
                .post(root(&app, &format!("/municipal/v1/imports?{QUERY}")))
                .multipart(form),
        )
        .await;
    let report = finished(&app, &accepted).await;
    assert_eq!(report["rowsImported"], 4, "{report}");

    let unknown = app
        .send(
            app.client
                .post(root(
                    &app,
                    "/municipal/v1/imports?layout=nope&municipality=131016",
                ))
                .body("x"),
        )
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.text);
    assert!(
        unknown.text.contains("musubi-vaccination"),
        "names the known layouts: {}",
        unknown.text
    );
    let bad_code = app
        .send(
            app.client
                .post(root(
                    &app,
                    "/municipal/v1/imports?layout=musubi-vaccination&municipality=131017",
                ))
                .body("x"),
        )
        .await;
    assert_eq!(bad_code.status, 400);
    assert!(bad_code.text.contains("check digit"), "{}", bad_code.text);
    let missing = app
        .send(app.client.get(root(
            &app,
            "/municipal/v1/imports/6b1f1e3c-0000-4000-8000-000000000000",
        )))
        .await;
    assert_eq!(missing.status, 404);

    let small = TestApp::spawn_with(|c| c.municipal.max_upload_bytes = 100).await;
    let too_large = upload(&small, GOLDEN_UTF8).await;
    assert_eq!(too_large.status, 413, "{}", too_large.text);
}

#[tokio::test]
async fn json_form_registers_and_deletes_records() {
    let app = TestApp::spawn().await;
    finished(&app, &upload(&app, GOLDEN_UTF8).await).await;
    let exported = app
        .send(
            app.client
                .get(root(&app, &format!("/municipal/v1/records?{QUERY}"))),
        )
        .await;
    assert_eq!(exported.status, 200, "{}", exported.text);
    let body = exported.json();
    let records = body["records"].as_array().expect("records").clone();
    assert_eq!(records.len(), 4, "{body}");

    // Posting the export back changes nothing.
    let again = app
        .send(
            app.client
                .post(root(&app, &format!("/municipal/v1/records?{QUERY}")))
                .header("content-type", "application/json")
                .body(json!({"records": records}).to_string()),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["unchanged"], 4, "{}", again.text);

    // modificationSeg "2" deletes the record.
    let mut delete = records[0].clone();
    delete["modificationSeg"] = json!("2");
    let deleted = app
        .send(
            app.client
                .post(root(&app, &format!("/municipal/v1/records?{QUERY}")))
                .header("content-type", "application/json")
                .body(json!({"records": [delete]}).to_string()),
        )
        .await;
    assert_eq!(deleted.json()["deleted"], 1, "{}", deleted.text);
    let count = app.get("Immunization?_summary=count").await.json();
    assert_eq!(count["total"], 3);
}
