//! Table-driven and golden tests of the terminology service against the built-in data.

use serde_json::Value;
use terminology::{
    Membership, Terminology, TerminologyError, VACCINE_TYPE_SYSTEM, ValidateCode,
    lookup_parameters, validate_code_parameters,
};

const HOT13: &str = "http://medis.or.jp/CodeSystem/master-HOT13";
const HOT9: &str = "http://medis.or.jp/CodeSystem/master-HOT9";
const YJ: &str = "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code";
const MEDIS_DISEASE: &str = "http://medis.or.jp/CodeSystem/master-disease-exCode";
const IMMUNIZATION_VS: &str =
    "http://jpfhir.jp/fhir/core/ValueSet/JP_MedicationCode_Immunization_VS";
const ROUTE_VS: &str = "https://musubi.example.org/fhir/ValueSet/immunization-route";

fn t() -> &'static Terminology {
    Terminology::embedded().expect("the built-in terminology loads")
}

#[test]
fn canonical_system_resolves_every_alias_form() {
    let cases = [
        // (input, expected)
        ("urn:oid:1.2.392.200119.4.402.1", HOT13),
        ("1.2.392.200119.4.402.1", HOT13),
        // CONFLICT in the sources: both OIDs are accepted for HOT13.
        ("urn:oid:1.2.392.100495.20.2.75", HOT13),
        (
            "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicationCodeHOT13_CS",
            HOT13,
        ),
        ("urn:oid:1.2.392.200119.4.403.1", HOT9),
        ("urn:oid:1.2.392.100495.20.2.74", HOT9),
        ("urn:oid:1.2.392.100495.20.1.73", YJ),
        ("urn:oid:1.2.392.100495.20.2.73", YJ),
        ("urn:oid:1.2.392.200119.4.101.6", MEDIS_DISEASE),
        (
            "urn:oid:1.2.392.200250.2.2.20.32",
            "http://jami.jp/CodeSystem/MedicationBodySiteExternal",
        ),
        (
            "urn:oid:1.2.392.100495.20.2.34",
            "http://jpfhir.jp/fhir/core/CodeSystem/route-codes",
        ),
        (
            "urn:oid:1.2.392.100495.20.3.61",
            "http://jpfhir.jp/fhir/core/mhlw/IdSystem/InsurerNumber",
        ),
        (
            "http://jpfhir.jp/fhir/Common/IdSystem/insurance-medical-institution-no",
            "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no",
        ),
        ("urn:oid:2.16.840.1.113883.6.1", "http://loinc.org"),
        // Versions are ignored.
        ("http://medis.or.jp/CodeSystem/master-HOT13|2024", HOT13),
        // Canonical and unknown systems come back unchanged.
        (HOT13, HOT13),
        ("http://example.org/unknown", "http://example.org/unknown"),
        ("urn:oid:1.2.3.4", "urn:oid:1.2.3.4"),
        ("1.2.3.4", "1.2.3.4"),
    ];
    for (input, expected) in cases {
        assert_eq!(t().canonical_system(input), expected, "{input}");
    }
}

#[test]
fn the_alias_table_lists_sources_and_conflicts() {
    let aliases = t().system_aliases();
    assert!(aliases.iter().all(|a| !a.source.is_empty()));
    let conflicted: Vec<&str> = aliases
        .iter()
        .filter(|a| a.conflict.is_some())
        .map(|a| a.alias.as_str())
        .collect();
    for alias in [
        "urn:oid:1.2.392.100495.20.2.75",
        "urn:oid:1.2.392.100495.20.2.73",
        "http://jpfhir.jp/fhir/Common/IdSystem/insurance-medical-institution-no",
    ] {
        assert!(
            conflicted.contains(&alias),
            "{alias} is flagged as a conflict"
        );
    }
    assert!(
        aliases
            .iter()
            .any(|a| a.identifier_system && a.canonical.ends_with("/InsurerNumber"))
    );
}

#[test]
fn lookup_cases() {
    // (system, code, expected display or error)
    let ok = [
        (
            HOT13,
            "1820201040101",
            "インフルエンザHAワクチン「第一三共」1mL",
        ),
        (
            "urn:oid:1.2.392.200119.4.402.1",
            "1820201040101",
            "インフルエンザHAワクチン「第一三共」1mL",
        ),
        ("1.2.392.200119.4.101.6", "ES0L", "インフルエンザ"),
        (VACCINE_TYPE_SYSTEM, "dpt-ipv-hib", "5種混合（DPT-IPV-Hib）"),
        (
            "http://jami.jp/CodeSystem/MedicationBodySiteExternal",
            "74L",
            "左上腕",
        ),
        ("http://loinc.org", "8310-5", "Body temperature"),
        ("http://unitsofmeasure.org", "Cel", "degree Celsius"),
        (
            "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationBodyMeasurementCode_CS",
            "31006116",
            "頭囲",
        ),
    ];
    for (system, code, display) in ok {
        let lookup = t()
            .lookup(system, code)
            .unwrap_or_else(|e| panic!("{system}#{code}: {e}"));
        assert_eq!(lookup.display, display);
        assert_eq!(lookup.system, t().canonical_system(system));
    }
    let errors = [
        (
            "http://example.org/unknown",
            "1",
            TerminologyError::UnknownSystem("http://example.org/unknown".into()),
        ),
        (
            HOT13,
            "9999999999999",
            TerminologyError::CodeNotInSubset {
                system: HOT13.into(),
                code: "9999999999999".into(),
            },
        ),
        (
            VACCINE_TYPE_SYSTEM,
            "smallpox",
            TerminologyError::UnknownCode {
                system: VACCINE_TYPE_SYSTEM.into(),
                code: "smallpox".into(),
            },
        ),
        // Codes are case-sensitive.
        (
            "http://jami.jp/CodeSystem/MedicationBodySiteExternal",
            "74l",
            TerminologyError::CodeNotInSubset {
                system: "http://jami.jp/CodeSystem/MedicationBodySiteExternal".into(),
                code: "74l".into(),
            },
        ),
    ];
    for (system, code, expected) in errors {
        assert_eq!(t().lookup(system, code), Err(expected), "{system}#{code}");
    }
    let subset_message = TerminologyError::CodeNotInSubset {
        system: HOT13.into(),
        code: "1".into(),
    }
    .to_string();
    assert!(subset_message.contains("not known in Musubi's subset"));
}

struct Case {
    name: &'static str,
    value_set: Option<&'static str>,
    system: Option<&'static str>,
    code: &'static str,
    display: Option<&'static str>,
    result: bool,
    /// Substring of the message; `None` means no message.
    message: Option<&'static str>,
    recommended: Option<&'static str>,
}

#[test]
fn validate_code_cases() {
    let cases = [
        Case {
            name: "HOT13 in the JP Core immunization value set, right display",
            value_set: Some(IMMUNIZATION_VS),
            system: Some(HOT13),
            code: "1820201040101",
            display: Some("インフルエンザHAワクチン「第一三共」1mL"),
            result: true,
            message: None,
            recommended: Some("インフルエンザHAワクチン「第一三共」1mL"),
        },
        Case {
            name: "OID form of the system, value set with a version",
            value_set: Some(
                "http://jpfhir.jp/fhir/core/ValueSet/JP_MedicationCode_Immunization_VS|1.1.2",
            ),
            system: Some("urn:oid:1.2.392.200119.4.402.1"),
            code: "1820201040101",
            display: None,
            result: true,
            message: None,
            recommended: Some("インフルエンザHAワクチン「第一三共」1mL"),
        },
        Case {
            name: "wrong display is a warning, not a failure",
            value_set: Some(IMMUNIZATION_VS),
            system: Some(YJ),
            code: "636940CD1029",
            display: Some("麻しんワクチン"),
            result: true,
            message: Some("is not a display Musubi knows"),
            recommended: Some("ミールビック"),
        },
        Case {
            name: "half-width display of a full-width one matches",
            value_set: None,
            system: Some(
                "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationBodyMeasurementCode_CS",
            ),
            code: "31003020",
            display: Some("BMI"),
            result: true,
            message: None,
            recommended: Some("ＢＭＩ"),
        },
        Case {
            name: "an English designation is an accepted display",
            value_set: None,
            system: Some(VACCINE_TYPE_SYSTEM),
            code: "mr",
            display: Some("Measles-rubella (MR)"),
            result: true,
            message: None,
            recommended: Some("麻しん風しん混合（MR）"),
        },
        Case {
            name: "code outside Musubi's HOT13 subset",
            value_set: Some(IMMUNIZATION_VS),
            system: Some(HOT13),
            code: "1234567890123",
            display: None,
            result: true,
            message: Some("not known in Musubi's subset"),
            recommended: None,
        },
        Case {
            name: "code outside the YJ subset, code-system form",
            value_set: None,
            system: Some("urn:oid:1.2.392.100495.20.1.73"),
            code: "6399999X9999",
            display: None,
            result: true,
            message: Some("not known in Musubi's subset"),
            recommended: None,
        },
        Case {
            name: "unknown code system",
            value_set: None,
            system: Some("http://snomed.info/sct"),
            code: "14189004",
            display: None,
            result: false,
            message: Some("cannot be validated"),
            recommended: None,
        },
        Case {
            name: "unknown code in a complete code system",
            value_set: None,
            system: Some(VACCINE_TYPE_SYSTEM),
            code: "smallpox",
            display: None,
            result: false,
            message: Some("Unknown code 'smallpox'"),
            recommended: None,
        },
        Case {
            name: "excluded code (no vaccine is given intravenously)",
            value_set: Some(ROUTE_VS),
            system: Some("http://jpfhir.jp/fhir/core/CodeSystem/route-codes"),
            code: "IV",
            display: None,
            result: false,
            message: Some("is not in the value set"),
            recommended: None,
        },
        Case {
            name: "included route",
            value_set: Some(ROUTE_VS),
            system: Some("urn:oid:1.2.392.100495.20.2.34"),
            code: "SC",
            display: Some("Subcutaneous"),
            result: true,
            message: None,
            recommended: Some("Subcutaneous"),
        },
        Case {
            name: "system not drawn on by the value set",
            value_set: Some(IMMUNIZATION_VS),
            system: Some(VACCINE_TYPE_SYSTEM),
            code: "mr",
            display: None,
            result: false,
            message: Some("is not in the value set"),
            recommended: None,
        },
        Case {
            name: "code without a system, found through the value set",
            value_set: Some("https://musubi.example.org/fhir/ValueSet/target-disease"),
            system: None,
            code: "VQH3",
            display: Some("肺炎球菌感染症"),
            result: true,
            message: None,
            recommended: Some("肺炎球菌感染症"),
        },
        Case {
            name: "listed concept that the value set does not list",
            value_set: Some("https://musubi.example.org/fhir/ValueSet/growth-vital-loinc"),
            system: Some("http://loinc.org"),
            code: "39156-5",
            display: None,
            result: false,
            message: Some("is not in the value set"),
            recommended: None,
        },
    ];
    for case in cases {
        let validation = t()
            .validate_code(&ValidateCode {
                value_set: case.value_set,
                system: case.system,
                code: case.code,
                display: case.display,
            })
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(validation.result, case.result, "{}", case.name);
        match (case.message, &validation.message) {
            (None, None) => {}
            (Some(expected), Some(message)) => {
                assert!(message.contains(expected), "{}: {message}", case.name);
            }
            (expected, got) => panic!("{}: expected message {expected:?}, got {got:?}", case.name),
        }
        assert_eq!(
            validation.display.as_deref(),
            case.recommended,
            "{}",
            case.name
        );
    }
}

#[test]
fn validate_code_request_errors() {
    let unknown = t().validate_code(&ValidateCode {
        value_set: Some("http://example.org/ValueSet/none"),
        system: Some(HOT13),
        code: "1820201040101",
        display: None,
    });
    assert_eq!(
        unknown,
        Err(TerminologyError::UnknownValueSet(
            "http://example.org/ValueSet/none".into()
        ))
    );
    for (system, code) in [(None, "1"), (Some(HOT13), " ")] {
        let result = t().validate_code(&ValidateCode {
            value_set: None,
            system,
            code,
            display: None,
        });
        assert!(
            matches!(result, Err(TerminologyError::InvalidRequest(_))),
            "{system:?} {code:?}"
        );
    }
}

#[test]
fn in_value_set_cases() {
    let cases = [
        (
            IMMUNIZATION_VS,
            Some("urn:oid:1.2.392.100495.20.2.74"),
            "182110901",
            Membership::Member,
        ),
        (
            IMMUNIZATION_VS,
            Some(HOT9),
            "000000000",
            Membership::UnknownSystem,
        ),
        (
            IMMUNIZATION_VS,
            Some(VACCINE_TYPE_SYSTEM),
            "mr",
            Membership::NotMember,
        ),
        (ROUTE_VS, None, "IV", Membership::NotMember),
        (ROUTE_VS, None, "IM", Membership::Member),
        (
            "https://musubi.example.org/fhir/ValueSet/vaccine-type",
            None,
            "hpv-9",
            Membership::Member,
        ),
        (
            "https://musubi.example.org/fhir/ValueSet/vaccine-type",
            None,
            "hpv-3",
            Membership::NotMember,
        ),
        (
            "http://example.org/ValueSet/none",
            None,
            "x",
            Membership::UnknownValueSet,
        ),
    ];
    for (value_set, system, code, expected) in cases {
        assert_eq!(
            t().in_value_set(value_set, system, code),
            expected,
            "{value_set} {system:?} {code}"
        );
    }
}

#[test]
fn vaccine_type_of_every_shipped_product_code() {
    // Every product code Musubi ships, with its vaccine type written out here independently of
    // the data, so an edit to the data that changes a mapping is noticed.
    let products = [
        (YJ, "636140FG1020", "dpt-ipv-hib"),
        (YJ, "636140DG1021", "dpt-ipv"),
        (YJ, "6311403D1029", "hib"),
        (YJ, "631140CD1029", "hib"),
        (YJ, "631140EC1022", "pcv"),
        (YJ, "6313402A1073", "hepb"),
        (YJ, "6313402A2070", "hepb"),
        (YJ, "6313402A1030", "hepb"),
        (YJ, "6313402A2037", "hepb"),
        (YJ, "631140BD3027", "bcg"),
        (YJ, "636940CD1029", "mr"),
        (YJ, "631340ED1022", "varicella"),
        (YJ, "631340ND1022", "je"),
        (YJ, "631341CG1023", "hpv-9"),
        (YJ, "6311400A1037", "pneumococcal-ppsv23"),
        (YJ, "631341BE1028", "zoster-recombinant"),
        (YJ, "6311400A1010", "pneumococcal-ppsv23"),
        (HOT9, "182110901", "covid-19"),
        (HOT9, "182020104", "influenza"),
        (HOT9, "111501701", "pneumococcal-ppsv23"),
        (HOT13, "1820201040101", "influenza"),
    ];
    for (system, code, expected) in products {
        assert_eq!(
            t().vaccine_type_of(system, code),
            Some(expected),
            "{system}#{code}"
        );
    }
    // Every concept carrying a vaccine-type property is in the table above.
    let mut shipped = 0;
    for resource in t().resources() {
        if resource["resourceType"] != "CodeSystem" {
            continue;
        }
        for concept in resource["concept"].as_array().into_iter().flatten() {
            let has_type = concept["property"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["code"] == "vaccine-type"));
            if has_type {
                shipped += 1;
                let system = resource["url"].as_str().unwrap_or_default();
                let code = concept["code"].as_str().unwrap_or_default();
                assert!(
                    products.iter().any(|(s, c, _)| *s == system && *c == code),
                    "{system}#{code} is not covered by this test"
                );
            }
        }
    }
    assert_eq!(shipped, products.len());
}

#[test]
fn vaccine_type_of_alias_forms_and_non_products() {
    let cases = [
        (
            "urn:oid:1.2.392.200119.4.402.1",
            "1820201040101",
            Some("influenza"),
        ),
        ("1.2.392.100495.20.2.75", "1820201040101", Some("influenza")),
        (
            "urn:oid:1.2.392.100495.20.2.74",
            "182110901",
            Some("covid-19"),
        ),
        (
            "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicationCodeYJ_CS",
            "636940CD1029",
            Some("mr"),
        ),
        (VACCINE_TYPE_SYSTEM, "rota-5", Some("rota-5")),
        (VACCINE_TYPE_SYSTEM, "rota-3", None),
        (HOT13, "0000000000000", None),
        (MEDIS_DISEASE, "ES0L", None),
        ("http://example.org/unknown", "636940CD1029", None),
    ];
    for (system, code, expected) in cases {
        assert_eq!(
            t().vaccine_type_of(system, code),
            expected,
            "{system}#{code}"
        );
    }
}

#[test]
fn target_diseases_of_vaccine_types() {
    let codes = |vaccine_type: &str| -> Vec<(String, String)> {
        t().target_diseases_of(vaccine_type)
            .into_iter()
            .map(|c| (c.system, c.code))
            .collect()
    };
    let musubi = "https://musubi.example.org/fhir/CodeSystem/target-disease";
    assert_eq!(
        codes("mr"),
        [
            (musubi.to_owned(), "measles".to_owned()),
            (musubi.to_owned(), "rubella".to_owned())
        ]
    );
    assert_eq!(
        codes("influenza"),
        [(MEDIS_DISEASE.to_owned(), "ES0L".to_owned())]
    );
    assert_eq!(
        codes("pcv"),
        [(MEDIS_DISEASE.to_owned(), "VQH3".to_owned())]
    );
    assert_eq!(
        codes("covid-19"),
        [(MEDIS_DISEASE.to_owned(), "S9VN".to_owned())]
    );
    assert_eq!(codes("dpt-ipv-hib").len(), 5);
    assert!(codes("smallpox").is_empty());
    let coding = &t().target_diseases_of("bcg")[0];
    assert_eq!(
        serde_json::to_value(coding).unwrap(),
        serde_json::json!({"system": musubi, "code": "tuberculosis", "display": "結核"})
    );
}

/// Exactly the vaccine types Musubi's other components rely on.
#[test]
fn vaccine_type_code_system_has_exactly_the_shared_codes() {
    let expected = [
        "dpt-ipv-hib",
        "dpt-ipv",
        "dpt",
        "dt",
        "ipv",
        "hib",
        "pcv",
        "hepb",
        "rota-1",
        "rota-5",
        "bcg",
        "mr",
        "measles",
        "rubella",
        "varicella",
        "je",
        "hpv-2",
        "hpv-4",
        "hpv-9",
        "influenza",
        "pneumococcal-ppsv23",
        "covid-19",
        "zoster-live",
        "zoster-recombinant",
    ];
    let resource = t()
        .code_system(VACCINE_TYPE_SYSTEM)
        .expect("vaccine-type CodeSystem");
    let codes: Vec<&str> = resource["concept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, expected);
    for code in expected {
        let lookup = t().lookup(VACCINE_TYPE_SYSTEM, code).unwrap();
        assert!(
            lookup
                .designations
                .iter()
                .any(|d| d.language.as_deref() == Some("en")),
            "{code} has an English designation"
        );
        assert!(
            !t().target_diseases_of(code).is_empty(),
            "{code} has target diseases"
        );
    }
}

/// Every data file parses and every ValueSet resolves to code systems and value sets Musubi
/// holds, with every listed concept present.
#[test]
fn data_integrity() {
    let files = profiles::JP_TERMINOLOGY;
    assert!(!files.is_empty());
    for (name, text) in files {
        let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let kind = value["resourceType"]
            .as_str()
            .or(value["musubiDataType"].as_str());
        assert!(
            name.starts_with("gtin-") || kind.is_some(),
            "{name} is neither a resource nor a Musubi table"
        );
    }
    let mut ids = std::collections::HashSet::new();
    for resource in t().resources() {
        let kind = resource["resourceType"].as_str().unwrap();
        let url = resource["url"].as_str().unwrap();
        for element in ["id", "status", "name", "description"] {
            assert!(resource[element].is_string(), "{url} has {element}");
        }
        assert!(
            ids.insert((kind, resource["id"].as_str().unwrap())),
            "{kind} id of {url} is unique"
        );
        if kind == "CodeSystem" {
            let content = resource["content"].as_str().unwrap();
            assert!(
                ["complete", "fragment"].contains(&content),
                "{url}: {content}"
            );
            continue;
        }
        for part_kind in ["include", "exclude"] {
            for part in resource["compose"][part_kind]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(system) = part["system"].as_str() {
                    assert!(
                        t().code_system(system).is_some(),
                        "{url} draws on unknown {system}"
                    );
                    for concept in part["concept"].as_array().into_iter().flatten() {
                        let code = concept["code"].as_str().unwrap();
                        let lookup = t().lookup(system, code);
                        assert!(lookup.is_ok(), "{url} lists {system}#{code}: {lookup:?}");
                        if let Some(display) = concept["display"].as_str() {
                            assert_eq!(lookup.unwrap().display, display, "{url} {system}#{code}");
                        }
                    }
                }
                for value_set in part["valueSet"].as_array().into_iter().flatten() {
                    assert!(t().value_set(value_set.as_str().unwrap()).is_some());
                }
            }
        }
    }
    assert!(t().value_set(IMMUNIZATION_VS).is_some());
}

fn golden(name: &str, actual: &Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let rendered = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create)",
            path.display()
        )
    });
    assert_eq!(rendered, expected, "golden file {name}");
}

#[test]
fn golden_lookup_parameters() {
    let lookup = t()
        .lookup("urn:oid:1.2.392.100495.20.1.73", "636940CD1029")
        .unwrap();
    golden("lookup-yj-mearubik.json", &lookup_parameters(&lookup));
    let lookup = t().lookup(VACCINE_TYPE_SYSTEM, "mr").unwrap();
    golden("lookup-vaccine-type-mr.json", &lookup_parameters(&lookup));
}

#[test]
fn golden_validate_code_parameters() {
    let validation = t()
        .validate_code(&ValidateCode {
            value_set: Some(IMMUNIZATION_VS),
            system: Some(YJ),
            code: "636940CD1029",
            display: Some("麻しんワクチン"),
        })
        .unwrap();
    golden(
        "validate-code-display-warning.json",
        &validate_code_parameters(&validation),
    );
    let validation = t()
        .validate_code(&ValidateCode {
            value_set: Some(IMMUNIZATION_VS),
            system: Some(HOT13),
            code: "1234567890123",
            display: None,
        })
        .unwrap();
    golden(
        "validate-code-not-in-subset.json",
        &validate_code_parameters(&validation),
    );
}
