//! Extra data files supplied at run time: how they extend or replace the built-in tables, and
//! the load errors that name the file at fault.

use serde_json::json;
use terminology::{Membership, Terminology, TerminologyError, ValidateCode};

const HOT13: &str = "http://medis.or.jp/CodeSystem/master-HOT13";

fn file(name: &str, value: serde_json::Value) -> (String, String) {
    (name.to_owned(), value.to_string())
}

fn hot13_extension(code: &str, vaccine_type: &str) -> serde_json::Value {
    json!({
        "resourceType": "CodeSystem", "id": "hot13-local", "url": HOT13, "status": "active",
        "content": "fragment",
        "property": [{"code": "vaccine-type", "type": "code"}],
        "concept": [{"code": code, "display": "local product",
                     "property": [{"code": "vaccine-type", "valueCode": vaccine_type}]}]
    })
}

#[test]
fn an_extra_code_system_extends_the_builtin_one() {
    let terminology = Terminology::load(&[file(
        "hot13-local.json",
        hot13_extension("9999999999999", "hib"),
    )])
    .unwrap();
    assert_eq!(
        terminology.vaccine_type_of(HOT13, "9999999999999"),
        Some("hib")
    );
    // The built-in concepts are still there.
    assert_eq!(
        terminology.vaccine_type_of(HOT13, "1820201040101"),
        Some("influenza")
    );
    let merged = terminology
        .code_system("urn:oid:1.2.392.200119.4.402.1")
        .unwrap();
    let codes: Vec<&str> = merged["concept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["1820201040101", "9999999999999"]);
    // Extra top-level elements override the built-in ones.
    assert_eq!(merged["id"], "hot13-local");
    // The built-in property declarations (source, inferred) survive.
    assert_eq!(merged["property"].as_array().unwrap().len(), 3);
}

#[test]
fn an_extra_concept_with_a_builtin_code_replaces_it() {
    let terminology = Terminology::load(&[file(
        "fix.json",
        hot13_extension("1820201040101", "covid-19"),
    )])
    .unwrap();
    assert_eq!(
        terminology.vaccine_type_of(HOT13, "1820201040101"),
        Some("covid-19")
    );
    assert_eq!(
        terminology.lookup(HOT13, "1820201040101").unwrap().display,
        "local product"
    );
}

#[test]
fn a_complete_code_system_extended_recounts_its_concepts() {
    let extra = json!({
        "resourceType": "CodeSystem", "url": "https://musubi.example.org/fhir/CodeSystem/funding-source",
        "status": "draft", "content": "complete",
        "concept": [{"code": "temporary", "display": "臨時接種"}]
    });
    let terminology = Terminology::load(&[file("funding.json", extra)]).unwrap();
    let merged = terminology
        .code_system("https://musubi.example.org/fhir/CodeSystem/funding-source")
        .unwrap();
    assert_eq!(merged["count"], 4);
    let validation = terminology
        .validate_code(&ValidateCode {
            value_set: Some("https://musubi.example.org/fhir/ValueSet/funding-source"),
            system: None,
            code: "temporary",
            display: None,
        })
        .unwrap();
    assert!(validation.result);
}

#[test]
fn an_extra_value_set_replaces_the_builtin_one() {
    let narrowed = json!({
        "resourceType": "ValueSet", "url": "https://musubi.example.org/fhir/ValueSet/immunization-route",
        "status": "active",
        "compose": {"include": [{"system": "urn:oid:1.2.392.100495.20.2.34", "concept": [{"code": "SC"}]}]}
    });
    let terminology = Terminology::load(&[file("route.json", narrowed)]).unwrap();
    let route = "https://musubi.example.org/fhir/ValueSet/immunization-route";
    assert_eq!(
        terminology.in_value_set(route, None, "SC"),
        Membership::Member
    );
    assert_eq!(
        terminology.in_value_set(route, None, "IM"),
        Membership::NotMember
    );
}

#[test]
fn extra_value_sets_can_draw_on_unknown_systems_and_other_value_sets() {
    let snomed = json!({
        "resourceType": "ValueSet", "url": "http://example.org/ValueSet/snomed-sites", "status": "active",
        "compose": {"include": [{"system": "http://snomed.info/sct"}]}
    });
    let both = json!({
        "resourceType": "ValueSet", "url": "http://example.org/ValueSet/both", "status": "active",
        "compose": {
            "include": [{"valueSet": [
                "https://musubi.example.org/fhir/ValueSet/vaccine-type",
                "http://example.org/ValueSet/inactivated"
            ]}]
        }
    });
    let inactivated = json!({
        "resourceType": "ValueSet", "url": "http://example.org/ValueSet/inactivated", "status": "active",
        "compose": {"include": [{"system": terminology::VACCINE_TYPE_SYSTEM,
                                  "concept": [{"code": "ipv"}, {"code": "hib"}]}]}
    });
    let terminology = Terminology::load(&[
        file("a.json", snomed),
        file("b.json", both),
        file("c.json", inactivated),
    ])
    .unwrap();
    assert_eq!(
        terminology.in_value_set(
            "http://example.org/ValueSet/snomed-sites",
            None,
            "368208006"
        ),
        Membership::UnknownSystem
    );
    // Two value sets in one include entry intersect.
    assert_eq!(
        terminology.in_value_set("http://example.org/ValueSet/both", None, "ipv"),
        Membership::Member
    );
    assert_eq!(
        terminology.in_value_set("http://example.org/ValueSet/both", None, "mr"),
        Membership::NotMember
    );
}

#[test]
fn extra_alias_tables_add_aliases() {
    let aliases = json!({
        "musubiDataType": "system-aliases",
        "systems": [{"name": "local HOT13", "kind": "codesystem", "canonical": HOT13,
                     "aliases": [{"value": "http://example.org/hot13", "source": "vendor X"}]}]
    });
    let terminology = Terminology::load(&[file("aliases-local.json", aliases)]).unwrap();
    assert_eq!(
        terminology.canonical_system("http://example.org/hot13"),
        HOT13
    );
    assert_eq!(
        terminology.vaccine_type_of("http://example.org/hot13", "1820201040101"),
        Some("influenza")
    );
}

#[test]
fn files_of_other_loaders_are_skipped() {
    let terminology = Terminology::load(&[
        ("gtin-local.json".to_owned(), "not even JSON".to_owned()),
        file(
            "map.json",
            json!({"resourceType": "ConceptMap", "url": "http://example.org/cm"}),
        ),
    ])
    .unwrap();
    for name in ["gtin-local.json", "map.json"] {
        assert!(
            terminology.skipped_files().iter().any(|s| s == name),
            "{name}"
        );
    }
}

#[test]
fn bad_extra_files_are_rejected_naming_the_file() {
    let vs = |url: &str, compose: serde_json::Value| json!({"resourceType": "ValueSet", "url": url, "status": "active", "compose": compose});
    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (
            vec![("broken.json".to_owned(), "{".to_owned())],
            "broken.json: not valid JSON",
        ),
        (
            vec![file(
                "no-url.json",
                json!({"resourceType": "CodeSystem", "content": "complete"}),
            )],
            "no-url.json: the resource has no url",
        ),
        (
            vec![
                file("one.json", hot13_extension("1", "hib")),
                file("two.json", hot13_extension("2", "hib")),
            ],
            "is defined twice: in CodeSystem-medis-hot13-vaccines.json + one.json and in two.json",
        ),
        (
            vec![file("dangling.json", hot13_extension("1", "smallpox"))],
            "dangling.json: http://medis.or.jp/CodeSystem/master-HOT13#1 maps to vaccine type 'smallpox'",
        ),
        (
            vec![file(
                "filter.json",
                vs(
                    "http://example.org/vs",
                    json!({"include": [{"system": HOT13, "filter": [{"property": "concept", "op": "is-a", "value": "x"}]}]}),
                ),
            )],
            "filter.json: ValueSet http://example.org/vs: compose filters are not supported",
        ),
        (
            vec![file(
                "ref.json",
                vs(
                    "http://example.org/vs",
                    json!({"include": [{"valueSet": ["http://example.org/none"]}]}),
                ),
            )],
            "ref.json: value set http://example.org/vs includes unknown value set http://example.org/none",
        ),
        (
            vec![
                file(
                    "a.json",
                    vs(
                        "http://example.org/a",
                        json!({"include": [{"valueSet": ["http://example.org/b"]}]}),
                    ),
                ),
                file(
                    "b.json",
                    vs(
                        "http://example.org/b",
                        json!({"include": [{"valueSet": ["http://example.org/a"]}]}),
                    ),
                ),
            ],
            "includes itself",
        ),
        (
            vec![file(
                "alias.json",
                json!({"musubiDataType": "system-aliases", "systems": [
                {"name": "x", "kind": "codesystem", "canonical": "http://example.org/x",
                 "aliases": [{"value": "urn:oid:1.2.392.200119.4.402.1", "source": "s"}]}]}),
            )],
            "system alias urn:oid:1.2.392.200119.4.402.1 is claimed by both http://medis.or.jp/CodeSystem/master-HOT13 and http://example.org/x",
        ),
        (
            vec![file(
                "alias-url.json",
                json!({"resourceType": "CodeSystem", "url": "urn:oid:1.2.392.200119.4.402.1", "status": "active", "content": "fragment"}),
            )],
            "alias-url.json: CodeSystem.url urn:oid:1.2.392.200119.4.402.1 is an alias",
        ),
        (
            vec![file(
                "alias-of-canonical.json",
                json!({"musubiDataType": "system-aliases", "systems": [
                {"name": "x", "kind": "codesystem", "canonical": "http://example.org/x",
                 "aliases": [{"value": "http://medis.or.jp/CodeSystem/master-HOT9", "source": "s"}]}]}),
            )],
            "alias-of-canonical.json: http://medis.or.jp/CodeSystem/master-HOT9 is listed as an alias of http://example.org/x but is itself a canonical",
        ),
        (
            vec![file(
                "undeclared.json",
                json!({"resourceType": "CodeSystem", "url": "http://example.org/cs", "status": "active", "content": "complete",
                "concept": [{"code": "a", "property": [{"code": "colour", "valueString": "red"}]}]}),
            )],
            "undeclared.json: concept 'a': property 'colour' is not declared",
        ),
        (
            vec![file(
                "content.json",
                json!({"resourceType": "CodeSystem", "url": "http://example.org/cs", "status": "active", "content": "partial"}),
            )],
            "content.json: CodeSystem.content 'partial' is not an R4 code",
        ),
        (
            vec![file(
                "twice.json",
                json!({"resourceType": "CodeSystem", "url": "http://example.org/cs", "status": "active", "content": "complete",
                "concept": [{"code": "a"}, {"code": "b", "concept": [{"code": "a"}]}]}),
            )],
            "twice.json: CodeSystem http://example.org/cs lists the code 'a' twice",
        ),
    ];
    for (files, expected) in cases {
        let error = Terminology::load(&files).expect_err(expected).to_string();
        assert!(
            error.contains(expected),
            "expected '{expected}', got '{error}'"
        );
    }
}

#[test]
fn the_builtin_layer_is_unchanged_by_extra_loads() {
    let _ = Terminology::load(&[file("x.json", hot13_extension("9999999999999", "hib"))]).unwrap();
    let embedded = Terminology::embedded().unwrap();
    assert_eq!(
        embedded.lookup(HOT13, "9999999999999"),
        Err(TerminologyError::CodeNotInSubset {
            system: HOT13.to_owned(),
            code: "9999999999999".to_owned()
        })
    );
}
