//! Loading profile data: extra files at run time, corrections by data, and clear errors that
//! name the file and the problem.

mod support;

use conform::{ConformError, ProfileSet};
use serde_json::json;
use support::TestTerminology;

fn file(name: &str, text: &str) -> (String, String) {
    (name.to_owned(), text.to_owned())
}

fn problem(result: Result<ProfileSet, ConformError>) -> (String, String) {
    match result {
        Err(ConformError::Data { file, problem }) => (file, problem),
        Ok(_) => panic!("expected an error"),
    }
}

const EXTRA: &str = r#"{
  "url": "https://city.example.lg.jp/fhir/StructureDefinition/CityPatient",
  "version": "1",
  "name": "CityPatient",
  "type": "Patient",
  "baseDefinition": "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient",
  "source": "test",
  "rules": [ { "path": "Patient.birthDate", "min": 1 },
             { "path": "Patient.address.postalCode", "regex": "[0-9]{3}-[0-9]{4}" } ]
}"#;

#[test]
fn extra_profiles_are_added_and_checked() {
    let set = ProfileSet::load(&[file("city-patient.json", EXTRA)]).unwrap();
    assert_eq!(set.profiles().count(), 10);
    let patient = json!({
        "resourceType": "Patient",
        "meta": {"profile": ["https://city.example.lg.jp/fhir/StructureDefinition/CityPatient"]},
        "address": [{"postalCode": "1138655"}]
    });
    let issues = set.validate(&patient, &[], &TestTerminology::new());
    let found: Vec<(&str, &str)> = issues
        .iter()
        .map(|i| (i.expression.as_str(), i.diagnostics.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "Patient.birthDate",
                "CityPatient: birthDate: min 1, found 0"
            ),
            (
                "Patient.address[0].postalCode",
                "CityPatient: address.postalCode: \"1138655\" does not match ^(?:[0-9]{3}-[0-9]{4})$"
            ),
        ]
    );
}

#[test]
fn an_extra_file_with_an_embedded_url_replaces_it() {
    let corrected = EXTRA
        .replace(
            "https://city.example.lg.jp/fhir/StructureDefinition/CityPatient",
            "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient",
        )
        .replace("\"CityPatient\"", "\"JP_Patient\"");
    let set = ProfileSet::load(&[file("jp-patient-fix.json", &corrected)]).unwrap();
    assert_eq!(set.profiles().count(), 9);
    let profile = set
        .get("http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient")
        .unwrap();
    assert_eq!(profile.file(), "jp-patient-fix.json");
    assert_eq!(profile.version(), "1");
    // Twice in the extra files is a mistake, not a correction.
    let twice = [file("a.json", &corrected), file("b.json", &corrected)];
    let (name, message) = problem(ProfileSet::load(&twice));
    assert_eq!(name, "b.json");
    assert!(message.contains("already defined by a.json"), "{message}");
}

#[test]
fn bad_data_is_refused_with_the_file_and_the_problem() {
    let cases: Vec<(String, &str)> = vec![
        ("{".to_owned(), "EOF"),
        (EXTRA.replace("\"source\"", "\"sauce\""), "unknown field `sauce`"),
        (EXTRA.replace("Patient.birthDate", "Patient.birthdate"), "birthdate is not an element here"),
        (EXTRA.replace("Patient.birthDate", "Observation.status"), "must start with \"Patient.\""),
        (EXTRA.replace("\"type\": \"Patient\"", "\"type\": \"Patients\""), "not an R4 resource type"),
        (
            EXTRA.replace("{ \"path\": \"Patient.birthDate\", \"min\": 1 }", "{ \"path\": \"Patient.deceased[x]\", \"types\": [\"date\"] }"),
            "type date is not allowed by base R4",
        ),
        (
            EXTRA.replace("{ \"path\": \"Patient.birthDate\", \"min\": 1 }", "{ \"path\": \"Patient.gender\", \"targets\": [{\"type\": \"Patient\"}] }"),
            "targets need a Reference element",
        ),
        (
            EXTRA.replace("{ \"path\": \"Patient.birthDate\", \"min\": 1 }", "{ \"path\": \"Patient.birthDate\", \"min\": 2, \"max\": \"1\" }"),
            "min 2 > max 1",
        ),
        (
            EXTRA.replace("{ \"path\": \"Patient.birthDate\", \"min\": 1 }", "{ \"path\": \"Patient.identifier\", \"slices\": [{\"name\": \"x\", \"match\": {\"url\": \"u\"}}] }"),
            "match needs exactly one of",
        ),
        (
            EXTRA.replace("[0-9]{3}-[0-9]{4}", "[0-9"),
            "bad regex",
        ),
    ];
    for (text, needle) in cases {
        let (name, message) = problem(ProfileSet::load(&[file("broken.json", &text)]));
        assert_eq!(name, "broken.json");
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
}

#[test]
fn two_defaults_for_one_type_are_refused() {
    let second_default = EXTRA.replace(
        "\"source\": \"test\"",
        "\"source\": \"test\", \"defaultForType\": true",
    );
    let (name, message) = problem(ProfileSet::load(&[file("city.json", &second_default)]));
    assert_eq!(name, "city.json");
    assert!(
        message.contains("both the default for Patient"),
        "{message}"
    );
}
