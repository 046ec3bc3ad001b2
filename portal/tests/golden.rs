//! Golden mapping files (portal JSON → FHIR) and the de-duplication rules, table-driven.
//! Set `UPDATE_GOLDEN=1` to rewrite the expected files after a deliberate change.

use std::path::PathBuf;

use portal::{
    LotMatch, MappedVaccination, PatientId, PortalTables, map_checkup, map_vaccination,
    parse_checkup_page, parse_vaccination_page, reconcile,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

const PULLED_AT: OffsetDateTime = datetime!(2026-01-10 09:00 +09:00);

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read(name: &str) -> Value {
    let path = golden_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compare(name: &str, actual: &Value) {
    let path = golden_dir().join(name);
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &pretty).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(pretty, expected, "{} differs", path.display());
}

fn assert_valid(resource: &Value) {
    let issues = fhir::validate::validate_resource(fhir::Definitions::r4(), resource);
    let errors: Vec<_> = issues.iter().filter(|i| i.severity.is_error()).collect();
    assert!(errors.is_empty(), "{resource}\n{errors:#?}");
}

#[test]
fn vaccinations_golden() {
    let tables = PortalTables::load(&[]).unwrap();
    let patient = PatientId::parse("child-1").unwrap();
    let page = read("vaccinations.portal.json");
    let parsed = parse_vaccination_page(&tables, "/api/v1/self-info/vaccinations", &page).unwrap();
    let mut out = Vec::new();
    for record in &parsed.records {
        let m = map_vaccination(&tables, &patient, record, PULLED_AT);
        assert_valid(&m.immunization);
        assert_valid(&m.provenance);
        out.push(json!({
            "dedupKey": m.key.to_string(),
            "immunization": m.immunization,
            "provenance": m.provenance
        }));
    }
    let skipped: Vec<Value> = parsed
        .skipped
        .iter()
        .map(|i| json!({"expression": i.expression, "diagnostics": i.diagnostics}))
        .collect();
    compare(
        "vaccinations.fhir.json",
        &json!({"mapped": out, "skipped": skipped}),
    );
}

#[test]
fn checkups_golden() {
    let tables = PortalTables::load(&[]).unwrap();
    let patient = PatientId::parse("mother-1").unwrap();
    let page = read("checkups.portal.json");
    let parsed = parse_checkup_page(&tables, "/api/v1/self-info/prenatal-checkups", &page).unwrap();
    let mut out = Vec::new();
    for record in &parsed.records {
        let m = map_checkup(&tables, &patient, record, PULLED_AT);
        for r in m.observations.iter().chain([&m.report, &m.provenance]) {
            assert_valid(r);
        }
        out.push(json!({
            "report": m.report,
            "observations": m.observations,
            "provenance": m.provenance
        }));
    }
    let skipped: Vec<Value> = parsed
        .skipped
        .iter()
        .map(|i| json!({"expression": i.expression, "diagnostics": i.diagnostics}))
        .collect();
    compare(
        "checkups.fhir.json",
        &json!({"mapped": out, "skipped": skipped}),
    );
}

fn portal_record(
    tables: &PortalTables,
    name: &str,
    date: &str,
    lot: Option<&str>,
) -> MappedVaccination {
    let mut rec =
        json!({"vaccineName": name, "vaccinationDate": date, "recordId": format!("{name}-{date}")});
    if let Some(lot) = lot {
        rec["lotNumber"] = json!(lot);
    }
    let page = json!({"vaccinations": [rec]});
    let parsed = parse_vaccination_page(tables, "/v", &page).unwrap();
    map_vaccination(
        tables,
        &PatientId::parse("p1").unwrap(),
        &parsed.records[0],
        PULLED_AT,
    )
}

fn clinic(id: &str, patient: &str, vaccine: &str, date: &str, lot: Option<&str>) -> Value {
    let mut imm = json!({
        "resourceType": "Immunization", "id": id, "status": "completed",
        "vaccineCode": {"coding": [{"system": portal::VACCINE_TYPE_SYSTEM, "code": vaccine}]},
        "patient": {"reference": format!("Patient/{patient}")},
        "occurrenceDateTime": date
    });
    if let Some(lot) = lot {
        imm["lotNumber"] = json!(lot);
    }
    imm
}

/// A portal record: vaccine name, date, lot.
type PortalSide = (&'static str, &'static str, Option<&'static str>);

#[derive(Debug, PartialEq)]
enum Want {
    New,
    Match(&'static str, LotMatch),
    Conflict(&'static str),
}

#[test]
fn reconcile_rules() {
    let tables = PortalTables::load(&[]).unwrap();
    let none = |_: &str, _: &str| None;
    let cases: Vec<(&str, PortalSide, Vec<Value>, Want)> = vec![
        (
            "same lot, written differently",
            ("MR", "20240401", Some("ab-12")),
            vec![clinic("c1", "p1", "mr", "2024-04-01", Some("ＡＢ１２"))],
            Want::Match("c1", LotMatch::Same),
        ),
        (
            "lot missing on the portal",
            ("MR", "20240401", None),
            vec![clinic(
                "c1",
                "p1",
                "mr",
                "2024-04-01T18:00:00+09:00",
                Some("X"),
            )],
            Want::Match("c1", LotMatch::MissingOnPortal),
        ),
        (
            "lot missing at the clinic",
            ("MR", "20240401", Some("X")),
            vec![clinic("c1", "p1", "mr", "2024-04-01", None)],
            Want::Match("c1", LotMatch::MissingOnExisting),
        ),
        (
            "lot missing on both sides",
            ("MR", "20240401", None),
            vec![clinic("c1", "p1", "mr", "2024-04-01", None)],
            Want::Match("c1", LotMatch::MissingOnBoth),
        ),
        (
            "the equal lot wins over a lotless record",
            ("MR", "20240401", Some("X")),
            vec![
                clinic("c1", "p1", "mr", "2024-04-01", None),
                clinic("c2", "p1", "mr", "2024-04-01", Some("x")),
            ],
            Want::Match("c2", LotMatch::Same),
        ),
        (
            "different lots: conflict",
            ("MR", "20240401", Some("X")),
            vec![clinic("c1", "p1", "mr", "2024-04-01", Some("Y"))],
            Want::Conflict("c1"),
        ),
        (
            "another day",
            ("MR", "20240401", Some("X")),
            vec![clinic("c1", "p1", "mr", "2024-04-02", Some("X"))],
            Want::New,
        ),
        (
            "another vaccine",
            ("MR", "20240401", Some("X")),
            vec![clinic("c1", "p1", "bcg", "2024-04-01", Some("X"))],
            Want::New,
        ),
        (
            "another person",
            ("MR", "20240401", Some("X")),
            vec![clinic("c1", "p2", "mr", "2024-04-01", Some("X"))],
            Want::New,
        ),
        (
            "entered in error does not count",
            ("MR", "20240401", Some("X")),
            vec![{
                let mut c = clinic("c1", "p1", "mr", "2024-04-01", Some("X"));
                c["status"] = json!("entered-in-error");
                c
            }],
            Want::New,
        ),
    ];
    for (label, (name, date, lot), existing, want) in cases {
        let portal = portal_record(&tables, name, date, lot);
        let r = reconcile(&tables, vec![portal], &existing, none, PULLED_AT);
        let got = match (r.new.len(), r.matched.first(), r.conflicts.first()) {
            (1, None, None) => Want::New,
            (0, Some(m), None) => {
                let id: &'static str = match m.existing_id.as_str() {
                    "c1" => "c1",
                    "c2" => "c2",
                    other => panic!("{label}: {other}"),
                };
                assert_eq!(
                    m.provenance.as_ref().unwrap()["target"][0]["reference"],
                    format!("Immunization/{id}"),
                    "{label}"
                );
                Want::Match(id, m.lot)
            }
            (0, None, Some(c)) => {
                assert_eq!(r.issues().len(), 1, "{label}");
                assert!(c.existing_id == "c1", "{label}");
                Want::Conflict("c1")
            }
            other => panic!("{label}: {other:?}"),
        };
        assert_eq!(got, want, "{label}");
    }
}

#[test]
fn repeated_portal_records_count_once() {
    let tables = PortalTables::load(&[]).unwrap();
    let a = portal_record(&tables, "BCG", "20230801", Some("B1"));
    let b = portal_record(&tables, "ＢＣＧ", "2023-08-01", Some("b-1"));
    assert_eq!(a.id(), b.id(), "same key, same deterministic id");
    let r = reconcile(&tables, vec![a, b], &[], |_: &str, _: &str| None, PULLED_AT);
    assert_eq!((r.new.len(), r.repeated), (1, 1));
}
