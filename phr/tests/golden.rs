//! Golden mapping files (phr/tests/golden/): app JSON → FHIR → app JSON for every posted shape,
//! FHIR → app JSON for the read-back shapes. `UPDATE_GOLDEN=1` rewrites the expected files.

use std::path::PathBuf;

use phr::{Kind, MappingContext, Phr, ReadContext};
use serde_json::Value;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read(name: &str) -> Value {
    let path = golden_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compare with the golden file, or rewrite it under UPDATE_GOLDEN=1.
fn check(name: &str, actual: &Value) {
    let path = golden_dir().join(name);
    let mut text = serde_json::to_string_pretty(actual).unwrap();
    text.push('\n');
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(text, expected, "{name} differs from its golden file");
}

fn vaccine_types(system: &str, code: &str) -> Option<String> {
    (system == "http://medis.or.jp/CodeSystem/master-HOT9" && code == "123456789")
        .then(|| "hib".to_owned())
}

/// Structural R4 errors in a resource (the gateway refuses those with 400).
fn r4_errors(resource: &Value) -> Vec<String> {
    fhir::validate::validate_resource(fhir::Definitions::r4(), resource)
        .into_iter()
        .filter(|i| {
            matches!(
                i.severity,
                fhir::validate::Severity::Error | fhir::validate::Severity::Fatal
            )
        })
        .map(|i| format!("{}: {}", i.expression, i.diagnostics))
        .collect()
}

struct NoTerminology;

impl conform::Terminology for NoTerminology {
    fn canonical_system<'a>(&'a self, system: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Borrowed(system)
    }
    fn check_code(&self, _: &str, _: Option<&str>, _: &str) -> conform::CodeCheck {
        conform::CodeCheck::UnknownValueSet
    }
    fn check_identifier(&self, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Profile errors: the profiles a resource claims plus its type's default profile.
fn profile_errors(resource: &Value) -> Vec<String> {
    let set = conform::ProfileSet::embedded().unwrap();
    let default = set
        .default_for_type(resource["resourceType"].as_str().unwrap())
        .map(|p| p.url().to_owned());
    let also: Vec<&str> = default.iter().map(String::as_str).collect();
    set.validate(resource, &also, &NoTerminology)
        .into_iter()
        .filter(|i| {
            matches!(
                i.severity,
                fhir::validate::Severity::Error | fhir::validate::Severity::Fatal
            )
        })
        .map(|i| format!("{}: {}", i.expression, i.diagnostics))
        .collect()
}

fn round_trip(case: &str, kind: Kind) {
    let phr = Phr::embedded().unwrap();
    let input = read(&format!("{case}.input.json"));
    let person = input["personId"].as_str().unwrap().to_owned();
    let ctx = MappingContext {
        patient_id: &person,
        client_id: "boshi-techo-app",
        forms: None,
    };
    phr.validate(kind, &input)
        .unwrap_or_else(|v| panic!("{case}: {v:?}"));
    let resources = phr
        .to_fhir(kind, &input, &ctx)
        .unwrap_or_else(|e| panic!("{case}: {e:?}"));
    for r in &resources {
        assert_eq!(r4_errors(r), Vec::<String>::new(), "{case}: {}", r["id"]);
        assert_eq!(
            profile_errors(r),
            Vec::<String>::new(),
            "{case}: {}",
            r["id"]
        );
    }
    check(
        &format!("{case}.fhir.json"),
        &Value::Array(resources.clone()),
    );

    let read_ctx = ReadContext {
        patient_id: &person,
        vaccine_type_of: &vaccine_types,
    };
    let back = phr.from_fhir(kind, &resources, &read_ctx).unwrap();
    check(&format!("{case}.back.json"), &back);
    assert_eq!(
        back,
        phr.normalise(kind, &input),
        "{case}: the round trip changed the payload"
    );
    phr.validate(kind, &back)
        .unwrap_or_else(|v| panic!("{case}: read-back invalid: {v:?}"));

    // Idempotent: the same payload maps to the same resources.
    assert_eq!(phr.to_fhir(kind, &input, &ctx).unwrap(), resources);
}

#[test]
fn prevaccination_mr_round_trips() {
    round_trip("prevaccination-mr", Kind::Prevaccination);
}

#[test]
fn prevaccination_rota_with_follow_ups_round_trips() {
    round_trip("prevaccination-rota", Kind::Prevaccination);
}

#[test]
fn vitals_round_trip() {
    round_trip("vitals", Kind::Vitals);
    // The profile check has teeth: a body measurement without its JP category is refused.
    let fhir = read("vitals.fhir.json");
    let mut weight = fhir
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"]["text"] == "体重")
        .unwrap()
        .clone();
    assert!(profile_errors(&weight).is_empty());
    weight["category"].as_array_mut().unwrap().remove(1);
    assert!(!profile_errors(&weight).is_empty());
}

#[test]
fn conditions_round_trip() {
    round_trip("conditions", Kind::Conditions);
}

#[test]
fn medications_round_trip() {
    round_trip("medications", Kind::Medications);
}

#[test]
fn allergies_round_trip() {
    round_trip("allergies", Kind::Allergies);
}

fn read_back(case: &str, kind: Kind) {
    let phr = Phr::embedded().unwrap();
    let resources: Vec<Value> = read(&format!("{case}.fhir.json"))
        .as_array()
        .unwrap()
        .clone();
    let ctx = ReadContext {
        patient_id: "child-0001",
        vaccine_type_of: &vaccine_types,
    };
    let app = phr.from_fhir(kind, &resources, &ctx).unwrap();
    phr.validate(kind, &app)
        .unwrap_or_else(|v| panic!("{case}: {v:?}"));
    check(&format!("{case}.app.json"), &app);
    assert!(matches!(
        phr.to_fhir(
            kind,
            &app,
            &MappingContext {
                patient_id: "child-0001",
                client_id: "x",
                forms: None
            }
        ),
        Err(phr::PhrError::ReadOnly(_))
    ));
}

#[test]
fn vaccination_history_reads_back() {
    read_back("vaccinations", Kind::Vaccinations);
}

#[test]
fn schedule_reads_back() {
    read_back("schedule", Kind::Schedule);
}
