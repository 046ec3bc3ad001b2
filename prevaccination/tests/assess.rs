//! The "not eligible today" assessment on the shipped 予診票, driven by their rule extensions.

mod common;

use common::{fill, form, no, yes};
use prevaccination::{Outcome, ReasonKind, assess, assessment_parameters};
use serde_json::{Value, json};

fn temperature(t: &str) -> Value {
    // Parse from text so the decimal keeps its written form (arbitrary_precision).
    let value: Value = serde_json::from_str(t).unwrap();
    json!([{"valueDecimal": value}])
}

/// (form, overrides, outcome, expected reasons as (linkId, kind))
type Case = (
    &'static str,
    Vec<(&'static str, Value)>,
    Outcome,
    Vec<(&'static str, ReasonKind)>,
);

#[test]
fn assessment_cases() {
    use Outcome::*;
    use ReasonKind::*;
    let decision = |code: &str, display: &str| json!([{"valueCoding": {"system": "https://musubi.example.org/fhir/CodeSystem/prevaccination-decision", "code": code, "display": display}}]);
    let cases: Vec<Case> = vec![
        (
            "child",
            vec![("body-temperature", temperature("36.9"))],
            NoObstacleFound,
            vec![],
        ),
        (
            "child",
            vec![("body-temperature", temperature("37.4"))],
            NoObstacleFound,
            vec![],
        ),
        (
            "child",
            vec![("body-temperature", temperature("37.5"))],
            NotEligibleToday,
            vec![("body-temperature", Contraindication)],
        ),
        (
            "child",
            vec![("body-temperature", temperature("37.50"))],
            NotEligibleToday,
            vec![("body-temperature", Contraindication)],
        ),
        (
            "child",
            vec![("body-temperature", temperature("38.2"))],
            NotEligibleToday,
            vec![("body-temperature", Contraindication)],
        ),
        (
            "child",
            vec![("body-temperature", Value::Null)],
            DoctorReview,
            vec![("body-temperature", Incomplete)],
        ),
        (
            "child",
            vec![("body-temperature", json!([{"valueString": "37.8"}]))],
            DoctorReview,
            vec![("body-temperature", Incomplete)],
        ),
        (
            "child",
            vec![("anaphylaxis", yes())],
            NotEligibleToday,
            vec![("anaphylaxis", Contraindication)],
        ),
        (
            "child",
            vec![("q9-seizure", yes())],
            DoctorReview,
            vec![("q9-seizure", Caution)],
        ),
        (
            "child",
            vec![
                ("q3-unwell-today", yes()),
                ("q3-symptoms", json!([{"valueString": "鼻水"}])),
            ],
            DoctorReview,
            vec![("q3-unwell-today", Caution)],
        ),
        (
            "child",
            vec![("q4-recent-illness", yes())],
            DoctorReview,
            vec![("q4-recent-illness", Caution)],
        ),
        (
            "child",
            vec![("q6-recent-vaccination", yes())],
            DoctorReview,
            vec![("q6-recent-vaccination", Caution)],
        ),
        (
            "child",
            vec![("q1-read-explanation", no())],
            DoctorReview,
            vec![("q1-read-explanation", Caution)],
        ),
        // q8 = はい opens the required follow-up: answered いいえ it is a second caution;
        // left out it makes the form incomplete.
        (
            "child",
            vec![
                ("q8-underlying-disease", yes()),
                ("q8-physician-approved", no()),
            ],
            DoctorReview,
            vec![
                ("q8-underlying-disease", Caution),
                ("q8-physician-approved", Caution),
            ],
        ),
        (
            "child",
            vec![("q8-underlying-disease", yes())],
            DoctorReview,
            vec![
                ("q8-underlying-disease", Caution),
                ("q8-physician-approved", Incomplete),
            ],
        ),
        (
            "child",
            vec![
                ("q8-underlying-disease", yes()),
                ("q8-physician-approved", yes()),
            ],
            DoctorReview,
            vec![("q8-underlying-disease", Caution)],
        ),
        (
            "child",
            vec![
                ("q9-seizure", yes()),
                ("body-temperature", temperature("37.9")),
            ],
            NotEligibleToday,
            vec![
                ("body-temperature", Contraindication),
                ("q9-seizure", Caution),
            ],
        ),
        (
            "child",
            vec![("q1-read-explanation", Value::Null)],
            DoctorReview,
            vec![("q1-read-explanation", Incomplete)],
        ),
        // The doctor's section.
        (
            "child",
            vec![
                ("doctor-decision", decision("suitable", "適")),
                ("doctor-explained", yes()),
                ("doctor-signature", json!([{"valueString": "山田太郎"}])),
            ],
            NoObstacleFound,
            vec![],
        ),
        (
            "child",
            vec![
                ("doctor-decision", decision("unsuitable", "否")),
                ("doctor-explained", yes()),
                ("doctor-signature", json!([{"valueString": "山田太郎"}])),
            ],
            NotEligibleToday,
            vec![("doctor-decision", Contraindication)],
        ),
        (
            "child",
            vec![
                ("doctor-decision", decision("suitable", "適")),
                ("doctor-explained", Value::Null),
                ("doctor-signature", Value::Null),
            ],
            DoctorReview,
            vec![
                ("doctor-explained", Incomplete),
                ("doctor-signature", Incomplete),
            ],
        ),
        (
            "child",
            vec![
                ("doctor-acute-illness", yes()),
                ("doctor-decision", decision("suitable", "適")),
                ("doctor-explained", yes()),
                ("doctor-signature", json!([{"valueString": "山田太郎"}])),
            ],
            NotEligibleToday,
            vec![("doctor-acute-illness", Contraindication)],
        ),
        // The guardian's consent.
        (
            "child",
            vec![
                ("guardian-consent", yes()),
                ("guardian-signature", json!([{"valueString": "結日花子"}])),
            ],
            NoObstacleFound,
            vec![],
        ),
        (
            "child",
            vec![("guardian-consent", yes())],
            DoctorReview,
            vec![("guardian-signature", Incomplete)],
        ),
        (
            "child",
            vec![("guardian-consent", no())],
            NotEligibleToday,
            vec![("guardian-consent", Contraindication)],
        ),
        // Live-vaccine and vaccine-specific questions.
        (
            "child-live",
            vec![("q13-family-immunodeficiency", yes())],
            DoctorReview,
            vec![("q13-family-immunodeficiency", Caution)],
        ),
        (
            "child-live",
            vec![("q14-transfusion-globulin", yes())],
            DoctorReview,
            vec![("q14-transfusion-globulin", Caution)],
        ),
        (
            "child-live",
            vec![("immunodeficiency", yes())],
            NotEligibleToday,
            vec![("immunodeficiency", Contraindication)],
        ),
        (
            "varicella",
            vec![("q7-varicella-history", yes())],
            NotEligibleToday,
            vec![("q7-varicella-history", Contraindication)],
        ),
        (
            "mr",
            vec![("q7-measles-history", yes())],
            DoctorReview,
            vec![("q7-measles-history", Caution)],
        ),
        (
            "mr",
            vec![("pregnancy", yes())],
            NotEligibleToday,
            vec![("pregnancy", Contraindication)],
        ),
        ("mr", vec![("pregnancy", no())], NoObstacleFound, vec![]),
        (
            "rota",
            vec![("q16-rota-first-dose-window", no())],
            DoctorReview,
            vec![("q16-rota-first-dose-window", Caution)],
        ),
        (
            "rota",
            vec![("q16-rota-first-dose-window", yes())],
            NoObstacleFound,
            vec![],
        ),
        (
            "rota",
            vec![],
            DoctorReview,
            vec![("q16-rota-first-dose-window", Incomplete)],
        ),
        (
            "rota",
            vec![("dose-number", Value::Null)],
            DoctorReview,
            vec![("dose-number", Incomplete)],
        ),
        // A disabled answer does not count: dose 2 makes the 14週6日 question irrelevant.
        (
            "rota",
            vec![
                ("dose-number", json!([{"valueInteger": 2}])),
                (
                    "q16-previous-rota-date",
                    json!([{"valueDate": "2025-04-01"}]),
                ),
                ("q16-rota-first-dose-window", no()),
            ],
            DoctorReview,
            vec![("q16-rota-first-dose-window", Incomplete)],
        ),
        (
            "adult",
            vec![("body-temperature", temperature("37.5"))],
            NotEligibleToday,
            vec![("body-temperature", Contraindication)],
        ),
        (
            "adult",
            vec![("self-consent", no())],
            NotEligibleToday,
            vec![("self-consent", Contraindication)],
        ),
        (
            "adult-live",
            vec![("immunodeficiency", yes())],
            NotEligibleToday,
            vec![("immunodeficiency", Contraindication)],
        ),
    ];
    for (i, (family, overrides, outcome, reasons)) in cases.into_iter().enumerate() {
        let q = form(family);
        let r = fill(q, &overrides);
        let assessment = assess(q, &r);
        let found: Vec<(&str, ReasonKind)> = assessment
            .reasons
            .iter()
            .map(|r| (r.link_id.as_str(), r.kind))
            .collect();
        assert_eq!(
            (assessment.outcome, &found),
            (outcome, &reasons),
            "case {i} ({family}): {:#?}",
            assessment.reasons
        );
    }
}

#[test]
fn the_fever_reason_names_rule_threshold_and_source() {
    let q = form("child");
    let assessment = assess(q, &fill(q, &[("body-temperature", temperature("37.5"))]));
    assert_eq!(assessment.body_temperature, Some(37.5));
    let reason = &assessment.reasons[0];
    assert_eq!(reason.text, "明らかな発熱(37.5℃以上)");
    assert_eq!(reason.rule, "body-temperature >= 37.5 Cel");
    assert!(reason.source.contains("予防接種法施行規則 第2条"));
    assert!(reason.source.contains("city.kamogawa.lg.jp"));

    let fine = assess(q, &fill(q, &[("body-temperature", temperature("36.9"))]));
    assert_eq!(fine.body_temperature, Some(36.9));
    let missing = assess(q, &fill(q, &[("body-temperature", Value::Null)]));
    assert_eq!(missing.body_temperature, None);
    assert_eq!(missing.reasons[0].text, "診察前の体温");
    assert_eq!(missing.reasons[0].rule, "required answer missing");
}

#[test]
fn a_response_to_another_form_is_not_judged_fine() {
    let child = form("child");
    let mut r = fill(child, &[]);
    r["questionnaire"] =
        json!("https://musubi.example.org/fhir/Questionnaire/prevaccination-adult|1.0.0");
    let assessment = assess(child, &r);
    assert_eq!(assessment.outcome, Outcome::DoctorReview);
    assert_eq!(assessment.reasons[0].kind, ReasonKind::Incomplete);
    assert!(
        assessment.reasons[0]
            .rule
            .contains("QuestionnaireResponse.questionnaire")
    );
}

#[test]
fn an_in_progress_form_with_gaps_is_incomplete() {
    let q = form("child");
    let r = json!({"resourceType": "QuestionnaireResponse", "questionnaire": q["url"], "status": "in-progress",
        "item": [{"linkId": "header", "item": [{"linkId": "body-temperature", "answer": [{"valueDecimal": 36.4}]}]}]});
    let assessment = assess(q, &r);
    assert_eq!(assessment.outcome, Outcome::DoctorReview);
    let missing: Vec<&str> = assessment
        .reasons
        .iter()
        .map(|r| r.link_id.as_str())
        .collect();
    assert_eq!(missing, ["questions", "guardian-name"]);
    assert!(
        assessment
            .reasons
            .iter()
            .all(|r| r.kind == ReasonKind::Incomplete)
    );
}

#[test]
fn parameters_carry_outcome_temperature_and_reasons() {
    let q = form("child");
    let assessment = assess(
        q,
        &fill(
            q,
            &[
                ("body-temperature", temperature("38.0")),
                ("q9-seizure", yes()),
            ],
        ),
    );
    let parameters = assessment_parameters(&assessment);
    let expected = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "outcome", "valueCoding": {"system": "https://musubi.example.org/fhir/CodeSystem/prevaccination-outcome",
                                                "code": "not-eligible-today", "display": "本日は接種できない"}},
            {"name": "bodyTemperature", "valueQuantity": {"value": 38.0, "unit": "℃", "system": "http://unitsofmeasure.org", "code": "Cel"}},
            {"name": "reason", "part": [
                {"name": "linkId", "valueString": "body-temperature"},
                {"name": "text", "valueString": "明らかな発熱(37.5℃以上)"},
                {"name": "kind", "valueCode": "contraindication"},
                {"name": "rule", "valueString": "body-temperature >= 37.5 Cel"},
                {"name": "source", "valueString": assessment.reasons[0].source}]},
            {"name": "reason", "part": [
                {"name": "linkId", "valueString": "q9-seizure"},
                {"name": "text", "valueString": "ひきつけ(けいれん)の既往"},
                {"name": "kind", "valueCode": "caution"},
                {"name": "rule", "valueString": "q9-seizure = true"},
                {"name": "source", "valueString": assessment.reasons[1].source}]}
        ]
    });
    assert_eq!(parameters, expected);
    let structural = fhir::validate::validate_resource(fhir::Definitions::r4(), &parameters);
    assert_eq!(
        structural,
        Vec::new(),
        "the Parameters resource is valid R4"
    );

    let fine = assessment_parameters(&assess(q, &fill(q, &[])));
    assert_eq!(
        fine["parameter"][0]["valueCoding"]["code"],
        "no-obstacle-found"
    );
    assert_eq!(fine["parameter"].as_array().unwrap().len(), 2);
}
