//! Search (R4 3.1.1): parameters from the official definitions, Japanese names, paging,
//! includes, sorting and strict/lenient handling.

use musubi_tests::{TestApp, match_ids};
use serde_json::json;

async fn seed(app: &TestApp) -> (String, String) {
    let taro = app
        .create(&json!({"resourceType": "Patient",
            "name": [{"text": "山田　太郎", "family": "山田", "given": ["太郎"]}, {"family": "ヤマダ", "given": ["タロウ"]}],
            "gender": "male", "birthDate": "2020-02-29"}))
        .await;
    let hanako = app
        .create(&json!({"resourceType": "Patient",
            "name": [{"family": "佐藤", "given": ["花子"]}, {"family": "ｻﾄｳ", "given": ["ﾊﾅｺ"]}],
            "gender": "female", "birthDate": "2019-05-01"}))
        .await;
    let taro_id = taro["id"].as_str().unwrap().to_owned();
    for (date, code) in [
        ("2020-05-01", "2.1"),
        ("2020-06-01", "2.1"),
        ("2021-06-01", "3.1"),
    ] {
        app.create(
            &json!({"resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"coding": [{"system": "urn:oid:1.2.392.200119.4.403.1", "code": code}]},
            "patient": {"reference": format!("Patient/{taro_id}")}, "occurrenceDateTime": date}),
        )
        .await;
    }
    (taro_id, hanako["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn japanese_names_match_with_or_without_space_and_across_kana() {
    let app = TestApp::spawn().await;
    let (taro, hanako) = seed(&app).await;
    for query in [
        "name=山田太郎",
        "name=山田　太郎",
        "name=山田 太郎",
        "name=やまだ",
        "name=ヤマダ",
        "family=山田",
        "name=ﾔﾏﾀﾞ",
    ] {
        let found = app.get(&format!("Patient?{query}")).await.json();
        assert_eq!(match_ids(&found), vec![taro.clone()], "{query}");
    }
    for query in ["name=さとう", "name=サトウハナコ", "name=佐藤"] {
        let found = app.get(&format!("Patient?{query}")).await.json();
        assert_eq!(match_ids(&found), vec![hanako.clone()], "{query}");
    }
    let exact = app.get("Patient?family:exact=山").await.json();
    assert_eq!(exact["total"], 0);
    let contains = app.get("Patient?name:contains=田太").await.json();
    assert_eq!(match_ids(&contains), vec![taro.clone()]);
}

#[tokio::test]
async fn dates_tokens_references_and_not() {
    let app = TestApp::spawn().await;
    let (taro, hanako) = seed(&app).await;
    assert_eq!(
        app.get("Patient?birthdate=ge2020-01-01").await.json()["total"],
        1
    );
    assert_eq!(
        app.get("Patient?birthdate=2020-02").await.json()["total"],
        1
    );
    assert_eq!(
        app.get("Patient?birthdate=lt2019-05-02").await.json()["total"],
        1
    );
    assert_eq!(app.get("Patient?gender=female").await.json()["total"], 1);
    assert_eq!(
        match_ids(&app.get("Patient?gender:not=female").await.json()),
        vec![taro.clone()]
    );
    let imms = app
        .get(&format!(
            "Immunization?patient=Patient/{taro}&date=ge2020-06-01"
        ))
        .await
        .json();
    assert_eq!(imms["total"], 2);
    let imms = app
        .get(&format!(
            "Immunization?patient={taro}&vaccine-code=urn:oid:1.2.392.200119.4.403.1|2.1"
        ))
        .await
        .json();
    assert_eq!(imms["total"], 2);
    assert_eq!(
        app.get(&format!("Immunization?patient={hanako}"))
            .await
            .json()["total"],
        0
    );
}

#[tokio::test]
async fn paging_sorting_and_summary_count() {
    let app = TestApp::spawn().await;
    let (taro, _) = seed(&app).await;
    let first = app
        .get(&format!("Immunization?patient={taro}&_count=2&_sort=-date"))
        .await
        .json();
    assert_eq!(first["total"], 3);
    assert_eq!(first["entry"].as_array().unwrap().len(), 2);
    assert_eq!(
        first["entry"][0]["resource"]["occurrenceDateTime"],
        "2021-06-01"
    );
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = app.send(app.client.get(&next)).await.json();
    assert_eq!(second["entry"].as_array().unwrap().len(), 1);
    assert_eq!(
        second["entry"][0]["resource"]["occurrenceDateTime"],
        "2020-05-01"
    );
    let count = app.get("Immunization?_summary=count").await.json();
    assert_eq!(count["total"], 3);
    assert!(count.get("entry").is_none());
    let none = app.get("Immunization?_total=none").await.json();
    assert!(none.get("total").is_none());
}

#[tokio::test]
async fn include_and_revinclude() {
    let app = TestApp::spawn().await;
    let (taro, _) = seed(&app).await;
    let with_patient = app
        .get("Immunization?_include=Immunization:patient")
        .await
        .json();
    let included: Vec<&serde_json::Value> = with_patient["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .collect();
    assert_eq!(included.len(), 1);
    assert_eq!(included[0]["resource"]["id"], taro.as_str());
    let rev = app
        .get(&format!(
            "Patient?_id={taro}&_revinclude=Immunization:patient"
        ))
        .await
        .json();
    let included = rev["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .count();
    assert_eq!(included, 3);
}

#[tokio::test]
async fn unknown_parameters_lenient_warns_strict_refuses() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let lenient = app.get("Patient?foo=bar").await;
    assert_eq!(lenient.status, 200);
    let body = lenient.json();
    assert_eq!(body["total"], 2);
    let outcome = body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .unwrap();
    assert!(outcome["resource"].to_string().contains("foo"));
    let strict = app
        .send(
            app.client
                .get(app.url("Patient?foo=bar"))
                .header("prefer", "handling=strict"),
        )
        .await;
    assert_eq!(strict.status, 400);
    assert!(strict.text.contains("foo"));
    let bad_date = app.get("Patient?birthdate=2020-13").await;
    assert_eq!(bad_date.status, 400);
}

#[tokio::test]
async fn post_search_equals_get_search() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let response = app
        .send(
            app.client
                .post(app.url("Patient/_search"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("gender=male"),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json()["total"], 1);
}
