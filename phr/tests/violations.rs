//! Schema and semantic violations, each with its exact JSON pointer.

use phr::{Kind, MappingContext, PhrError, SchemaViolation};
use serde_json::{Value, json};

fn vitals(series: Value) -> Value {
    json!({"personId": "p1", "series": series})
}

fn weight(points: Value) -> Value {
    vitals(json!([{"kind": "bodyWeight", "unit": "kg", "points": points}]))
}

fn pointers(found: &[SchemaViolation]) -> Vec<&str> {
    found.iter().map(|v| v.pointer.as_str()).collect()
}

/// Expected violations: (pointer, part of the message).
type Expected = Vec<(&'static str, &'static str)>;

/// (name, kind, payload, expected)
fn cases() -> Vec<(&'static str, Kind, Value, Expected)> {
    vec![
        (
            "missing personId",
            Kind::Vitals,
            json!({"series": [{"kind": "steps", "unit": "steps", "points": [{"at": "2026-01-01", "value": 1}]}]}),
            vec![("/personId", "\"personId\" is required")],
        ),
        (
            "unknown property",
            Kind::Vitals,
            json!({"personId": "p1", "series": [], "extra": 1}),
            vec![("/extra", "not a known property"), ("/series", "")],
        ),
        (
            "unknown kind",
            Kind::Vitals,
            vitals(
                json!([{"kind": "bloodSugar", "unit": "kg", "points": [{"at": "2026-01-01", "value": 1}]}]),
            ),
            vec![("/series/0/kind", "")],
        ),
        (
            "value not a number",
            Kind::Vitals,
            weight(json!([{"at": "2026-01-01", "value": "64"}])),
            vec![("/series/0/points/0/value", "number")],
        ),
        (
            "missing value",
            Kind::Vitals,
            weight(json!([{"at": "2026-01-01"}])),
            vec![("/series/0/points/0/value", "required")],
        ),
        (
            "unit of another kind",
            Kind::Vitals,
            vitals(
                json!([{"kind": "bodyTemperature", "unit": "kg", "points": [{"at": "2026-01-01", "value": 36.5}]}]),
            ),
            vec![("/series/0/unit", "bodyTemperature is sent in Cel")],
        ),
        (
            "temperature out of range",
            Kind::Vitals,
            vitals(
                json!([{"kind": "bodyTemperature", "unit": "Cel", "points": [
                {"at": "2026-01-01T07:00:00+09:00", "value": 36.5}, {"at": "2026-01-02T07:00:00+09:00", "value": 48.2},
                {"at": "2026-01-03T07:00:00+09:00", "value": 29.9}]}]),
            ),
            vec![
                ("/series/0/points/1/value", "between 30 and 45 ℃"),
                ("/series/0/points/2/value", "between 30 and 45 ℃"),
            ],
        ),
        (
            "time without zone",
            Kind::Vitals,
            weight(json!([{"at": "2026-01-01T07:00:00", "value": 64}])),
            vec![("/series/0/points/0/at", "time zone")],
        ),
        (
            "impossible date",
            Kind::Vitals,
            weight(json!([{"at": "2026-02-30", "value": 64}])),
            vec![("/series/0/points/0/at", "does not exist")],
        ),
        (
            "impossible time",
            Kind::Vitals,
            weight(json!([{"at": "2026-01-01T25:00:00+09:00", "value": 64}])),
            vec![("/series/0/points/0/at", "not a time of day")],
        ),
        (
            "not a date at all",
            Kind::Vitals,
            weight(json!([{"at": "yesterday", "value": 64}])),
            vec![("/series/0/points/0/at", "")],
        ),
        (
            "fractional steps",
            Kind::Vitals,
            vitals(
                json!([{"kind": "steps", "unit": "steps", "points": [{"at": "2026-01-01", "value": 10.5}]}]),
            ),
            vec![("/series/0/points/0/value", "whole number")],
        ),
        (
            "same instant twice across series",
            Kind::Vitals,
            vitals(json!([
                {"kind": "bodyWeight", "unit": "kg", "points": [{"at": "2026-01-01T07:00:00+09:00", "value": 64}]},
                {"kind": "bodyWeight", "unit": "g", "points": [{"at": "2025-12-31T22:00:00Z", "value": 64000}]}])),
            vec![("/series/1/points/0/at", "same time as /series/0/points/0")],
        ),
        (
            "prevaccination without zone",
            Kind::Prevaccination,
            json!({"personId": "c1", "vaccineType": "mr", "answeredAt": "2026-04-10T08:30", "answers": {"q1-read-explanation": true}}),
            vec![("/answeredAt", "time zone")],
        ),
        (
            "prevaccination unknown vaccine",
            Kind::Prevaccination,
            json!({"personId": "c1", "vaccineType": "smallpox", "answeredAt": "2026-04-10T08:30:00+09:00", "answers": {"q1-read-explanation": true}}),
            vec![("/vaccineType", "")],
        ),
        (
            "prevaccination empty answers",
            Kind::Prevaccination,
            json!({"personId": "c1", "vaccineType": "mr", "answeredAt": "2026-04-10T08:30:00+09:00", "answers": {}}),
            vec![("/answers", "")],
        ),
        (
            "condition abated but active",
            Kind::Conditions,
            json!({"personId": "p1", "conditions": [{"recordId": "c1", "text": "虫垂炎", "status": "active", "abatement": "2001"}]}),
            vec![("/conditions/0/status", "inactive, remission or resolved")],
        ),
        (
            "condition abatement before onset",
            Kind::Conditions,
            json!({"personId": "p1", "conditions": [{"recordId": "c1", "text": "虫垂炎", "status": "resolved", "onset": "2001-08", "abatement": "2001-07-31"}]}),
            vec![("/conditions/0/abatement", "before onset")],
        ),
        (
            "condition code system of medications",
            Kind::Conditions,
            json!({"personId": "p1", "conditions": [{"recordId": "c1", "text": "x", "code": {"system": "hot9", "code": "1"}}]}),
            vec![("/conditions/0/code/system", "")],
        ),
        (
            "medication month 13 and duplicate record",
            Kind::Medications,
            json!({"personId": "p1", "medications": [
                {"recordId": "m1", "text": "a", "status": "active", "start": "2020-13"},
                {"recordId": "m1", "text": "b", "status": "active"}]}),
            vec![
                ("/medications/0/start", "month 13"),
                ("/medications/1/recordId", "same recordId as /medications/0"),
            ],
        ),
        (
            "medication bad status",
            Kind::Medications,
            json!({"personId": "p1", "medications": [{"recordId": "m1", "text": "a", "status": "taking"}]}),
            vec![("/medications/0/status", "")],
        ),
        (
            "allergy missing status, empty text",
            Kind::Allergies,
            json!({"personId": "p1", "allergies": [{"recordId": "a1", "text": ""}]}),
            vec![
                ("/allergies/0/status", "required"),
                ("/allergies/0/text", ""),
            ],
        ),
        (
            "schedule impossible date",
            Kind::Schedule,
            json!({"personId": "c1", "asOf": "2026-04-31", "recommendations": []}),
            vec![("/asOf", "does not exist")],
        ),
    ]
}

#[test]
fn violations_have_exact_pointers() {
    for (name, kind, payload, expected) in cases() {
        let found = phr::validate(kind, &payload).expect_err(name);
        assert_eq!(
            pointers(&found),
            expected.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            "{name}: {found:?}"
        );
        for (violation, (_, part)) in found.iter().zip(&expected) {
            assert!(
                violation.message.contains(part),
                "{name}: {:?} lacks {part:?}",
                violation.message
            );
        }
    }
}

#[test]
fn messages_never_echo_the_value() {
    let payload = json!({"personId": "p1", "conditions": [{"recordId": "c1", "text": 12345678}]});
    let found = phr::validate(Kind::Conditions, &payload).unwrap_err();
    assert_eq!(pointers(&found), ["/conditions/0/text"]);
    assert!(!found[0].message.contains("12345678"), "{:?}", found[0]);
}

#[test]
fn a_year_of_bad_points_is_capped() {
    let points: Vec<Value> = (0..366)
        .map(|i| json!({"at": format!("2024-01-01T{:02}:00:00", i % 24), "value": 64}))
        .collect();
    let found = phr::validate(Kind::Vitals, &weight(Value::Array(points))).unwrap_err();
    assert_eq!(found.len(), phr::MAX_VIOLATIONS);
    assert_eq!(found[0].pointer, "/series/0/points/0/at");
    assert_eq!(found[1].pointer, "/series/0/points/1/at");
    assert_eq!(found.last().unwrap().pointer, "");
}

fn answers(answers: Value) -> Value {
    json!({"personId": "c1", "vaccineType": "mr", "answeredAt": "2026-04-10T08:30:00+09:00", "status": "in-progress", "answers": answers})
}

fn form_violations(payload: &Value) -> Vec<SchemaViolation> {
    let ctx = MappingContext {
        patient_id: "c1",
        client_id: "app",
        forms: None,
    };
    match phr::to_fhir(Kind::Prevaccination, payload, &ctx) {
        Err(PhrError::Invalid(found)) => found,
        other => panic!("expected violations, got {other:?}"),
    }
}

#[test]
fn prevaccination_answers_are_checked_against_the_form() {
    let cases: Vec<(&str, Value, Expected)> = vec![
        (
            "unknown linkId",
            answers(json!({"q99-anything": true})),
            vec![("/answers/q99-anything", "not an item")],
        ),
        (
            "clinic-only item",
            answers(json!({"doctor-decision": "suitable", "lot-number": "X1"})),
            vec![
                ("/answers/doctor-decision", "clinic"),
                ("/answers/lot-number", "clinic"),
            ],
        ),
        (
            "group answered",
            answers(json!({"questions": true})),
            vec![("/answers/questions", "group")],
        ),
        (
            "wrong type",
            answers(json!({"body-temperature": "36.5", "q1-read-explanation": "yes"})),
            vec![
                ("/answers/body-temperature", "a number"),
                ("/answers/q1-read-explanation", "true or false"),
            ],
        ),
        (
            "not a choice",
            answers(json!({"sex": "other"})),
            vec![("/answers/sex", "male, female")],
        ),
        (
            "integer expected",
            answers(json!({"q2-birth-weight": 3120.5})),
            vec![("/answers/q2-birth-weight", "whole number")],
        ),
        (
            "impossible date",
            answers(json!({"birth-date": "2025-02-29"})),
            vec![("/answers/birth-date", "does not exist")],
        ),
        (
            "list for a single item",
            answers(json!({"q3-unwell-today": [true]})),
            vec![("/answers/q3-unwell-today", "one answer")],
        ),
        (
            "follow-up without its question",
            answers(json!({"q3-symptoms": "咳"})),
            vec![("/answers/q3-symptoms", "follows up q3-unwell-today")],
        ),
        (
            "follow-up not enabled",
            answers(json!({"q3-unwell-today": false, "q3-symptoms": "咳"})),
            vec![("/answers/q3-symptoms", "")],
        ),
        (
            "escaped pointer",
            answers(json!({"a/b": true})),
            vec![("/answers/a~1b", "not an item")],
        ),
    ];
    for (name, payload, expected) in cases {
        let found = form_violations(&payload);
        assert_eq!(
            pointers(&found),
            expected.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            "{name}: {found:?}"
        );
        for (violation, (_, part)) in found.iter().zip(&expected) {
            assert!(
                violation.message.contains(part),
                "{name}: {:?} lacks {part:?}",
                violation.message
            );
        }
    }
}

#[test]
fn a_completed_form_needs_its_required_answers() {
    let mut payload = answers(json!({"q1-read-explanation": true}));
    payload["status"] = json!("completed");
    let found = form_violations(&payload);
    let ps = pointers(&found);
    assert!(ps.contains(&"/answers/body-temperature"), "{ps:?}");
    assert!(ps.contains(&"/answers/guardian-name"), "{ps:?}");
    assert!(!ps.contains(&"/answers/q1-read-explanation"), "{ps:?}");
    // In progress, missing answers are fine.
    payload["status"] = json!("in-progress");
    let ctx = MappingContext {
        patient_id: "c1",
        client_id: "app",
        forms: None,
    };
    assert!(phr::to_fhir(Kind::Prevaccination, &payload, &ctx).is_ok());
}

#[test]
fn the_person_must_be_the_patient_of_the_path() {
    let payload = answers(json!({"q1-read-explanation": true}));
    let ctx = MappingContext {
        patient_id: "someone-else",
        client_id: "app",
        forms: None,
    };
    match phr::to_fhir(Kind::Prevaccination, &payload, &ctx) {
        Err(PhrError::Invalid(found)) => assert_eq!(pointers(&found), ["/personId"]),
        other => panic!("{other:?}"),
    }
}
