//! The OpenAPI document, the tables against the schemas, large series, idempotent ids, and
//! loading extra data files.

use std::collections::BTreeSet;

use phr::{Kind, MappingContext, Phr, PhrError, ReadContext};
use serde_json::{Value, json};

fn no_vaccine(_: &str, _: &str) -> Option<String> {
    None
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap_or_default().to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(list) => list.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_schema_file_is_referenced_by_the_openapi_document() {
    let raw: Value = serde_json::from_str(
        profiles::JP_PHR
            .iter()
            .find(|(n, _)| *n == "openapi.json")
            .unwrap()
            .1,
    )
    .unwrap();
    let mut refs = Vec::new();
    collect_refs(&raw["components"]["schemas"], &mut refs);
    let referenced: BTreeSet<&str> = refs
        .iter()
        .map(String::as_str)
        .filter(|r| !r.starts_with('#'))
        .collect();
    let files: BTreeSet<&str> = profiles::JP_PHR
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| n.ends_with(".schema.json"))
        .collect();
    assert_eq!(referenced, files);
    let kinds: BTreeSet<&str> = Kind::ALL.iter().map(|k| k.schema_file()).collect();
    assert_eq!(kinds, files);
}

#[test]
fn the_bundled_document_resolves_every_reference_internally() {
    let doc = phr::openapi();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    let text = doc.to_string();
    assert!(!text.contains("\"$id\""));
    assert!(!text.contains(".schema.json\""));
}

/// The schema name under components → the kind it describes.
fn kind_of_ref(r: &str) -> Option<Kind> {
    let name = r.strip_prefix("#/components/schemas/")?;
    Kind::ALL.into_iter().find(|k| {
        let mut n = k.name().to_owned();
        n[..1].make_ascii_uppercase();
        n == name
    })
}

#[test]
fn every_example_validates_against_its_schema() {
    let doc = phr::openapi();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut bodies: Vec<&Value> = Vec::new();
            if let Some(c) = op.pointer("/requestBody/content") {
                bodies.push(c);
            }
            for response in op["responses"].as_object().unwrap().values() {
                if let Some(c) = response.get("content") {
                    bodies.push(c);
                }
            }
            for content in bodies {
                for media in content.as_object().unwrap().values() {
                    let Some(kind) = media
                        .pointer("/schema/$ref")
                        .and_then(Value::as_str)
                        .and_then(kind_of_ref)
                    else {
                        continue;
                    };
                    for example in media["examples"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(_, e)| &e["value"])
                    {
                        phr::validate(kind, example)
                            .unwrap_or_else(|v| panic!("{method} {path}: {v:?}"));
                        checked += 1;
                    }
                }
            }
        }
    }
    // 5 POST bodies (prevaccination, vitals, conditions, medications, allergies), the 4 GETs of
    // the same shapes (all but prevaccination) and the 2 read-backs.
    assert_eq!(checked, 11);
}

#[test]
fn the_request_examples_also_map() {
    let doc = phr::openapi();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(op) = item.get("post") else { continue };
        let media = &op["requestBody"]["content"]["application/json"];
        let kind = kind_of_ref(media["schema"]["$ref"].as_str().unwrap()).unwrap();
        let example = &media["examples"]["example"]["value"];
        let person = example["personId"].as_str().unwrap();
        let ctx = MappingContext {
            patient_id: person,
            client_id: "example-app",
            forms: None,
        };
        let resources =
            phr::to_fhir(kind, example, &ctx).unwrap_or_else(|e| panic!("{path}: {e:?}"));
        assert!(!resources.is_empty(), "{path}");
    }
}

#[test]
fn every_operation_is_secured_and_every_post_needs_an_idempotency_key() {
    let doc = phr::openapi();
    let scopes = doc
        .pointer("/components/securitySchemes/smart/flows/authorizationCode/scopes")
        .unwrap();
    let flow = doc
        .pointer("/components/securitySchemes/smart/flows/authorizationCode")
        .unwrap();
    assert_eq!(flow["authorizationUrl"], "/oauth/authorize");
    assert_eq!(flow["tokenUrl"], "/oauth/token");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security = op["security"].as_array().unwrap();
            if path == "/phr/v1/openapi.json" {
                assert!(security.is_empty());
                continue;
            }
            let wanted = security[0]["smart"].as_array().unwrap();
            assert!(!wanted.is_empty(), "{method} {path}");
            for s in wanted {
                assert!(
                    scopes.get(s.as_str().unwrap()).is_some(),
                    "{method} {path}: {s} is not declared"
                );
            }
            let params: Vec<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p["$ref"].as_str())
                .collect();
            assert_eq!(
                params.contains(&"#/components/parameters/IdempotencyKey"),
                method == "post",
                "{method} {path}"
            );
            for code in ["400", "401", "403"] {
                assert_eq!(
                    op["responses"][code]["$ref"], "#/components/responses/Error",
                    "{method} {path} {code}"
                );
            }
        }
    }
    let error =
        doc.pointer("/components/responses/Error/content/application~1fhir+json/schema/$ref");
    assert_eq!(error, Some(&json!("#/components/schemas/OperationOutcome")));
    let outcome = doc.pointer("/components/schemas/OperationOutcome/properties/resourceType/const");
    assert_eq!(outcome, Some(&json!("OperationOutcome")));
}

#[test]
fn schema_enums_match_the_tables() {
    let phr = Phr::embedded().unwrap();
    let kinds: Vec<&str> = phr.vital_kinds().iter().map(|k| k.kind.as_str()).collect();
    let schema = phr.schema(Kind::Vitals);
    let enum_kinds: Vec<&str> = schema["$defs"]["series"]["properties"]["kind"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(enum_kinds, kinds);
    let units: BTreeSet<&str> = phr
        .vital_kinds()
        .iter()
        .flat_map(|k| k.units.iter().map(|u| u.unit.as_str()))
        .collect();
    let enum_units: BTreeSet<&str> = schema["$defs"]["series"]["properties"]["unit"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(enum_units, units);
    for (kind, def) in [
        (Kind::Conditions, "condition"),
        (Kind::Medications, "medication"),
        (Kind::Allergies, "allergy"),
    ] {
        let aliases: BTreeSet<&str> = phr
            .code_systems()
            .iter()
            .filter(|s| s.used_for.iter().any(|u| u == kind.name()))
            .map(|s| s.alias.as_str())
            .collect();
        let enum_aliases: BTreeSet<&str> =
            phr.schema(kind)["$defs"][def]["properties"]["code"]["properties"]["system"]["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
        assert_eq!(enum_aliases, aliases, "{kind:?}");
    }
}

#[test]
fn code_system_urls_are_the_terminology_canonicals() {
    let aliases: Value = serde_json::from_str(
        profiles::JP_TERMINOLOGY
            .iter()
            .find(|(n, _)| *n == "system-aliases.json")
            .unwrap()
            .1,
    )
    .unwrap();
    let canonicals: BTreeSet<&str> = aliases["systems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["canonical"].as_str())
        .collect();
    for system in Phr::embedded().unwrap().code_systems() {
        assert!(
            canonicals.contains(system.url.as_str()),
            "{} is not a terminology canonical",
            system.url
        );
    }
}

#[test]
fn vaccine_types_in_the_schema_are_the_vaccine_type_codes() {
    let cs: Value = serde_json::from_str(
        profiles::JP_TERMINOLOGY
            .iter()
            .find(|(n, _)| *n == "CodeSystem-musubi-vaccine-type.json")
            .unwrap()
            .1,
    )
    .unwrap();
    let codes: Vec<&str> = cs["concept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    let schema = Phr::embedded().unwrap().schema(Kind::Prevaccination);
    let enumerated: Vec<&str> = schema["properties"]["vaccineType"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(enumerated, codes);
}

fn daily(kind: &str, unit: &str, days: usize, value: impl Fn(usize) -> Value) -> Value {
    let start = time::macros::date!(2024 - 01 - 01);
    let points: Vec<Value> = (0..days)
        .map(|i| {
            let day = start + time::Duration::days(i as i64);
            json!({"at": format!("{}T07:00:00+09:00", day), "value": value(i)})
        })
        .collect();
    json!({"personId": "p-frail-1", "series": [{"kind": kind, "unit": unit, "points": points}]})
}

#[test]
fn a_year_of_daily_values_is_one_request() {
    let phr = Phr::embedded().unwrap();
    // 2024 is a leap year: 366 days.
    let payload = daily("bodyTemperature", "Cel", 366, |i| {
        json!(36.0 + (i % 10) as f64 / 10.0)
    });
    phr.validate(Kind::Vitals, &payload).unwrap();
    let ctx = MappingContext {
        patient_id: "p-frail-1",
        client_id: "frailty-app",
        forms: None,
    };
    let resources = phr.to_fhir(Kind::Vitals, &payload, &ctx).unwrap();
    assert_eq!(resources.len(), 366);
    let ids: BTreeSet<&str> = resources
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 366, "every day has its own id");
    assert_eq!(
        resources[365]["effectiveDateTime"],
        "2024-12-31T07:00:00+09:00"
    );
    let back = phr
        .from_fhir(
            Kind::Vitals,
            &resources,
            &ReadContext {
                patient_id: "p-frail-1",
                vaccine_type_of: &no_vaccine,
            },
        )
        .unwrap();
    assert_eq!(back, phr.normalise(Kind::Vitals, &payload));
    assert_eq!(back["series"][0]["points"].as_array().unwrap().len(), 366);
    // The largest series a request may hold (10 000 hourly points) is accepted, one more is not.
    let hourly = |n: usize| {
        let start = time::macros::datetime!(2024-01-01 00:00 UTC);
        let points: Vec<Value> = (0..n)
            .map(|i| {
                let at = start + time::Duration::hours(i as i64);
                let at = at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap();
                json!({"at": at, "value": i % 5000})
            })
            .collect();
        json!({"personId": "p", "series": [{"kind": "steps", "unit": "steps", "points": points}]})
    };
    phr.validate(Kind::Vitals, &hourly(10_000)).unwrap();
    let too_many = phr.validate(Kind::Vitals, &hourly(10_001)).unwrap_err();
    assert_eq!(too_many.len(), 1);
    assert_eq!(too_many[0].pointer, "/series/0/points");
}

#[test]
fn ids_are_idempotent_per_app_and_point() {
    let phr = Phr::embedded().unwrap();
    let one = daily("steps", "steps", 1, |_| json!(5000));
    let ctx = MappingContext {
        patient_id: "p-frail-1",
        client_id: "frailty-app",
        forms: None,
    };
    let first = phr.to_fhir(Kind::Vitals, &one, &ctx).unwrap();
    // A corrected value for the same day overwrites: same id, new value.
    let corrected = daily("steps", "steps", 1, |_| json!(5100));
    let second = phr.to_fhir(Kind::Vitals, &corrected, &ctx).unwrap();
    assert_eq!(first[0]["id"], second[0]["id"]);
    assert_ne!(first[0]["valueQuantity"], second[0]["valueQuantity"]);
    // The same instant written in another zone is the same point.
    let mut utc = one.clone();
    utc["series"][0]["points"][0]["at"] = json!("2023-12-31T22:00:00Z");
    assert_eq!(
        phr.to_fhir(Kind::Vitals, &utc, &ctx).unwrap()[0]["id"],
        first[0]["id"]
    );
    // Another app's point is its own resource.
    let other = MappingContext {
        client_id: "other-app",
        ..ctx
    };
    assert_ne!(
        phr.to_fhir(Kind::Vitals, &one, &other).unwrap()[0]["id"],
        first[0]["id"]
    );
    assert_eq!(
        first[0]["meta"]["source"],
        "https://musubi.example.org/fhir/phr-client/frailty-app"
    );
}

#[test]
fn a_feverish_form_is_assessed_not_eligible() {
    let input: Value =
        serde_json::from_str(include_str!("golden/prevaccination-rota.input.json")).unwrap();
    let ctx = MappingContext {
        patient_id: "child-0002",
        client_id: "boshi-techo-app",
        forms: None,
    };
    let qr = phr::to_fhir(Kind::Prevaccination, &input, &ctx)
        .unwrap()
        .remove(0);
    let forms = prevaccination::Forms::embedded().unwrap();
    let form = forms.for_vaccine("rota-1").unwrap();
    assert!(prevaccination::validate_response(form, &qr).is_empty());
    let assessment = prevaccination::assess(form, &qr);
    assert_eq!(
        assessment.outcome,
        prevaccination::Outcome::NotEligibleToday
    );
}

#[test]
fn read_back_refuses_other_patients_and_skips_unknown_observations() {
    let phr = Phr::embedded().unwrap();
    let ctx = ReadContext {
        patient_id: "p1",
        vaccine_type_of: &no_vaccine,
    };
    let foreign = json!({"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p2"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}, "effectiveDateTime": "2026-01-01",
        "valueQuantity": {"value": 36.5, "code": "Cel"}});
    assert!(matches!(
        phr.from_fhir(Kind::Vitals, &[foreign], &ctx),
        Err(PhrError::Resource { .. })
    ));
    let glucose = json!({"resourceType": "Observation", "id": "o2", "status": "final", "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]}, "effectiveDateTime": "2026-01-01",
        "valueQuantity": {"value": 98, "code": "mg/dL"}});
    let fahrenheit = json!({"resourceType": "Observation", "id": "o3", "status": "final", "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}, "effectiveDateTime": "2026-01-01",
        "valueQuantity": {"value": 98.6, "code": "[degF]"}});
    let empty = phr
        .from_fhir(Kind::Vitals, &[glucose, fahrenheit], &ctx)
        .unwrap();
    assert_eq!(empty, json!({"personId": "p1", "series": []}));
    // A clinic's Condition without the app's identifier reads back under its resource id.
    let clinic = json!({"resourceType": "Condition", "id": "cond-9", "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-disease-exCode", "code": "ES0L", "display": "インフルエンザ"}]}});
    let back = phr.from_fhir(Kind::Conditions, &[clinic], &ctx).unwrap();
    assert_eq!(
        back["conditions"][0],
        json!({"recordId": "cond-9", "text": "インフルエンザ", "code": {"system": "medis-disease", "code": "ES0L"}})
    );
}

#[test]
fn extra_files_extend_the_tables_and_bad_ones_name_the_file() {
    let extra = vec![(
        "pulse.json".to_owned(),
        json!({"musubiDataType": "phr-vital-kinds", "kinds": [{
            "kind": "bodyTemperature", "label": "体温", "profile": null,
            "categories": [], "codings": [{"system": "http://loinc.org", "code": "8310-5"}],
            "units": [{"unit": "Cel", "ucum": "Cel", "display": "℃", "min": 34, "max": 42, "integer": false, "codings": []}]}]})
        .to_string(),
    )];
    let phr = Phr::load(&extra).unwrap();
    let payload = json!({"personId": "p", "series": [{"kind": "bodyTemperature", "unit": "Cel", "points": [{"at": "2026-01-01", "value": 33.0}]}]});
    assert!(phr::validate(Kind::Vitals, &payload).is_ok());
    let found = phr.validate(Kind::Vitals, &payload).unwrap_err();
    assert!(found[0].message.contains("between 34 and 42"), "{found:?}");

    let broken = vec![("phr-broken.json".to_owned(), "{".to_owned())];
    match Phr::load(&broken) {
        Err(PhrError::Data { file, .. }) => assert_eq!(file, "phr-broken.json"),
        other => panic!("{other:?}"),
    }
    let bad_kind = vec![(
        "k.json".to_owned(),
        json!({"musubiDataType": "phr-vital-kinds", "kinds": [{"kind": "x"}]}).to_string(),
    )];
    assert!(matches!(Phr::load(&bad_kind), Err(PhrError::Data { file, .. }) if file == "k.json"));
    let bad_schema = vec![(
        "vitals.schema.json".to_owned(),
        json!({"type": "object"}).to_string(),
    )];
    assert!(
        matches!(Phr::load(&bad_schema), Err(PhrError::Data { file, .. }) if file == "vitals.schema.json")
    );
    let unrelated = vec![("notes.json".to_owned(), "{}".to_owned())];
    assert_eq!(
        Phr::load(&unrelated).unwrap().skipped_files(),
        ["notes.json"]
    );
}
