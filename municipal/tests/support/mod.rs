//! Shared test helpers: reading fixtures, running an import, a tiny in-memory store that keeps
//! the last version of each resource (as PUT by id does), and FHIR validation.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

use identifiers::MunicipalityCode;
use municipal::{Encoding, EncodingChoice, Import, Layout, MappedRow, RowError};
use serde_json::{Value, json};

pub fn muni() -> MunicipalityCode {
    MunicipalityCode::parse("131016").unwrap()
}

fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(sub)
}

pub fn golden(name: &str) -> Vec<u8> {
    std::fs::read(dir("golden").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(dir("fixtures").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn import_all(
    layout: &Layout,
    input: &[u8],
    choice: EncodingChoice,
) -> (Vec<MappedRow>, Vec<RowError>, Encoding) {
    let import = Import::new(layout, &muni(), input, choice).unwrap();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut import = import;
    for item in import.by_ref() {
        match item {
            Ok(row) => rows.push(row),
            Err(e) => errors.push(e),
        }
    }
    let encoding = import.encoding();
    (rows, errors, encoding)
}

/// type/id → resource, last write wins.
#[derive(Debug, Default)]
pub struct Store(pub BTreeMap<(String, String), Value>);

impl Store {
    pub fn from_rows(rows: &[MappedRow]) -> Store {
        let mut store = Store::default();
        for row in rows {
            for r in &row.resources {
                assert_eq!(r.resource["resourceType"], r.resource_type);
                assert_eq!(r.resource["id"], r.id.as_str());
                store.0.insert(
                    (r.resource_type.to_owned(), r.id.clone()),
                    r.resource.clone(),
                );
            }
        }
        store
    }

    pub fn bundle(&self) -> Value {
        let entries: Vec<Value> = self
            .0
            .values()
            .map(|r| json!({"fullUrl": format!("urn:musubi:{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap()), "resource": r}))
            .collect();
        json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
    }
}

/// Compares with the golden bundle; `UPDATE_GOLDEN=1` writes it instead.
pub fn check_bundle(name: &str, store: &Store) {
    let actual = serde_json::to_string_pretty(&store.bundle()).unwrap() + "\n";
    let path = dir("golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        actual, expected,
        "{name} differs (UPDATE_GOLDEN=1 to accept)"
    );
}

/// (Patient, record, Observations) for every record of the layout's type in the store, found
/// through references as an export over stored resources would.
pub fn stored_records(layout: &Layout, store: &Store) -> Vec<(Value, Value, Vec<Value>)> {
    let record_type = layout.record_type();
    store
        .0
        .iter()
        .filter(|((t, _), _)| t == record_type)
        .map(|((_, id), record)| {
            let reference = record
                .get("patient")
                .or_else(|| record.get("subject"))
                .and_then(|r| r["reference"].as_str())
                .unwrap();
            let patient_id = reference.strip_prefix("Patient/").unwrap();
            let patient = store.0[&("Patient".to_owned(), patient_id.to_owned())].clone();
            let encounter_ref = format!("Encounter/{id}");
            let observations = store
                .0
                .iter()
                .filter(|((t, _), o)| {
                    t == "Observation" && o["encounter"]["reference"] == encounter_ref.as_str()
                })
                .map(|(_, o)| o.clone())
                .collect();
            (patient, record.clone(), observations)
        })
        .collect()
}

struct Check(&'static terminology::Terminology);

impl conform::Terminology for Check {
    fn canonical_system<'a>(&'a self, system: &'a str) -> Cow<'a, str> {
        Cow::Borrowed(self.0.canonical_system(system))
    }

    fn check_code(&self, value_set: &str, system: Option<&str>, code: &str) -> conform::CodeCheck {
        match self.0.in_value_set(value_set, system, code) {
            terminology::Membership::Member => conform::CodeCheck::Member,
            terminology::Membership::NotMember => conform::CodeCheck::NotMember,
            terminology::Membership::UnknownValueSet => conform::CodeCheck::UnknownValueSet,
            terminology::Membership::UnknownSystem => conform::CodeCheck::UnknownSystem,
        }
    }

    fn check_identifier(&self, format: &str, value: &str) -> Result<(), String> {
        identifiers::check_format(format, value)
    }
}

/// Every resource passes R4 structural validation and the profiles it claims, with no error
/// and no warning.
pub fn validate_all(store: &Store) {
    let defs = fhir::Definitions::r4();
    let profiles = conform::ProfileSet::embedded().unwrap();
    let check = Check(terminology::Terminology::embedded().unwrap());
    for ((t, id), resource) in &store.0 {
        let issues = fhir::validate::validate_resource(defs, resource);
        assert!(issues.is_empty(), "{t}/{id}: {issues:?}");
        let issues: Vec<_> = profiles
            .validate(resource, &[], &check)
            .into_iter()
            .filter(|i| i.severity != fhir::validate::Severity::Information)
            .collect();
        assert!(issues.is_empty(), "{t}/{id}: {issues:?}");
    }
}
