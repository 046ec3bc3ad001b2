//! The shipped profiles against JP Core-shaped fixtures: valid resources pass, and each kind of
//! defect gives exactly the expected issues.

mod support;

use conform::ProfileSet;
use fhir::Definitions;
use fhir::validate::{Issue, Severity, validate_resource};
use serde_json::{Value, json};
use support::TestTerminology;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn set() -> &'static ProfileSet {
    ProfileSet::embedded().expect("embedded profiles load")
}

/// (severity, expression, diagnostics) of one issue, for exact comparison.
type Found = (Severity, String, String);

/// What is checked, the resource, the issues expected.
type Case = (&'static str, Value, Vec<Found>);

fn summary(issues: &[Issue]) -> Vec<Found> {
    issues
        .iter()
        .map(|i| (i.severity, i.expression.clone(), i.diagnostics.clone()))
        .collect()
}

fn validate(resource: &Value) -> Vec<Found> {
    summary(&set().validate(resource, &[], &TestTerminology::new()))
}

/// Change a fixture: `edit` gets the resource as a JSON object.
fn edited(name: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut resource = fixture(name);
    edit(resource.as_object_mut().expect("fixtures are objects"));
    resource
}

const ALL_FIXTURES: [&str; 10] = [
    "patient.json",
    "organization.json",
    "organization-municipality.json",
    "practitioner.json",
    "immunization.json",
    "observation-bodymeasurement.json",
    "observation-temperature.json",
    "coverage.json",
    "consent.json",
    "prevaccination-response.json",
];

#[test]
fn valid_fixtures_pass_base_and_profile_validation() {
    for name in ALL_FIXTURES {
        let resource = fixture(name);
        let base = validate_resource(Definitions::r4(), &resource);
        assert!(base.is_empty(), "{name}: base R4 issues {base:?}");
        assert_eq!(validate(&resource), vec![], "{name}");
    }
}

#[test]
fn every_fixture_claims_a_known_profile_of_its_type() {
    for name in ALL_FIXTURES {
        let resource = fixture(name);
        let claimed = resource["meta"]["profile"][0]
            .as_str()
            .expect("claims a profile");
        let profile = set()
            .get(claimed)
            .unwrap_or_else(|| panic!("{name}: {claimed}"));
        assert_eq!(profile.resource_type(), resource["resourceType"]);
    }
}

fn error(expression: &str, diagnostics: &str) -> Found {
    (
        Severity::Error,
        expression.to_owned(),
        diagnostics.to_owned(),
    )
}

fn warning(expression: &str, diagnostics: &str) -> Found {
    (
        Severity::Warning,
        expression.to_owned(),
        diagnostics.to_owned(),
    )
}

#[test]
fn patient_defects() {
    let cases: Vec<Case> = vec![
        (
            "no identifier",
            edited("patient.json", |p| {
                p.remove("identifier");
            }),
            vec![error(
                "Patient.identifier",
                "JP_Patient: identifier: min 1, found 0",
            )],
        ),
        (
            "identifier without value",
            edited("patient.json", |p| {
                p["identifier"][1].as_object_mut().unwrap().remove("value");
            }),
            vec![error(
                "Patient.identifier[1].value",
                "JP_Patient: identifier.value: min 1, found 0",
            )],
        ),
        (
            "name representation code outside the required value set",
            edited("patient.json", |p| {
                p["name"][1]["extension"][0]["valueCode"] = json!("KANA");
            }),
            vec![error(
                "Patient.name[1].extension[0].valueCode",
                "JP_Patient: name.extension:nameRepresentationUse.value[x]: KANA is not in the required value set http://hl7.org/fhir/ValueSet/name-v3-representation",
            )],
        ),
        (
            "two representation extensions on one name",
            edited("patient.json", |p| {
                let extra = json!({"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"});
                p["name"][0]["extension"]
                    .as_array_mut()
                    .unwrap()
                    .push(extra);
            }),
            vec![error(
                "Patient.name[0].extension",
                "JP_Patient: name.extension:nameRepresentationUse: max 1, found 2",
            )],
        ),
        (
            "managing organization is a practitioner",
            edited("patient.json", |p| {
                p["managingOrganization"] =
                    json!({"reference": "Practitioner/jp-practitioner-osaka"});
            }),
            vec![error(
                "Patient.managingOrganization",
                "JP_Patient: managingOrganization: reference to Practitioner is not allowed (allowed: Organization)",
            )],
        ),
        (
            "birthPlace with the wrong value type",
            edited("patient.json", |p| {
                p["extension"][0] = json!({"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueString": "東京"});
            }),
            vec![error(
                "Patient.extension[0].valueString",
                "JP_Patient: extension:birthPlace.value[x]: type string is not allowed (allowed: Address)",
            )],
        ),
    ];
    for (what, resource, expected) in cases {
        assert_eq!(validate(&resource), expected, "{what}");
    }
}

#[test]
fn organization_identifiers_and_extensions() {
    let cases: Vec<Case> = vec![
        (
            "medical-institution code with a wrong check digit (JP Core's example value)",
            edited("organization.json", |o| {
                o["identifier"][0]["value"] = json!("1311234567");
            }),
            vec![error(
                "Organization.identifier[0].value",
                "JP_Organization: identifier:medicalInstitutionCode.value: \"1311234567\" is not a valid medical-institution-code: check digit 9 expected, found 7 (Musubi tightening)",
            )],
        ),
        (
            "the Common system variant is the same system (bad value still caught)",
            edited("organization.json", |o| {
                o["identifier"][0] = json!({"system": "http://jpfhir.jp/fhir/Common/IdSystem/insurance-medical-institution-no", "value": "131123456"});
            }),
            vec![error(
                "Organization.identifier[0].value",
                "JP_Organization: identifier:medicalInstitutionCode.value: \"131123456\" is not a valid medical-institution-code: 10 ASCII digits expected (Musubi tightening)",
            )],
        ),
        (
            "the Common system variant with a good value",
            edited("organization.json", |o| {
                o["identifier"][0]["system"] =
                    json!("http://jpfhir.jp/fhir/Common/IdSystem/insurance-medical-institution-no");
            }),
            vec![],
        ),
        (
            "OID form of the institution-number system is accepted",
            edited("organization.json", |o| {
                o["extension"][2]["valueIdentifier"]["system"] =
                    json!("urn:oid:1.2.392.100495.20.3.23");
            }),
            vec![],
        ),
        (
            "wrong identifier system in the institution-number extension",
            edited("organization.json", |o| {
                o["extension"][2]["valueIdentifier"]["system"] =
                    json!("http://jpfhir.jp/fhir/core/mhlw/IdSystem/InsurerNumber");
            }),
            vec![error(
                "Organization.extension[2].valueIdentifier.system",
                "JP_Organization: extension:organizationNo.valueIdentifier.system: must be \"http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicalOrganizationID\", found \"http://jpfhir.jp/fhir/core/mhlw/IdSystem/InsurerNumber\"",
            )],
        ),
        (
            "prefecture extension with the wrong value type",
            edited("organization.json", |o| {
                o["extension"][0] = json!({"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Organization_PrefectureNo", "valueString": "13"});
            }),
            vec![error(
                "Organization.extension[0].valueString",
                "JP_Organization: extension:prefectureNo.value[x]: type string is not allowed (allowed: Coding)",
            )],
        ),
        (
            "prefecture code outside the extensible value set",
            edited("organization.json", |o| {
                o["extension"][0]["valueCoding"]["code"] = json!("48");
            }),
            vec![warning(
                "Organization.extension[0].valueCoding",
                "JP_Organization: extension:prefectureNo.value[x]: http://jpfhir.jp/fhir/core/mhlw/CodeSystem/PrefectureNo-2digits#48 is not in the extensible value set http://jpfhir.jp/fhir/core/ValueSet/JP_PrefectureNumber_VS (use its code when one applies)",
            )],
        ),
        (
            "prefecture code in OID form is in the value set",
            edited("organization.json", |o| {
                o["extension"][0]["valueCoding"]["system"] =
                    json!("urn:oid:1.2.392.100495.20.3.21");
            }),
            vec![],
        ),
        (
            "an organization's telecom is not home",
            edited("organization.json", |o| {
                o["telecom"][0]["use"] = json!("home");
            }),
            vec![warning(
                "Organization.telecom[0].use",
                "JP_Organization: telecom.use: musubi-org-1 (An organization's telecom.use is not home): \"home\" does not match ^(?:work|temp|old|mobile)$",
            )],
        ),
        (
            "unknown extensions and identifier systems are allowed (open slicing)",
            edited("organization.json", |o| {
                o["extension"].as_array_mut().unwrap().push(json!({"url": "https://city.example.lg.jp/fhir/ext/note", "valueString": "休診日: 木曜"}));
                o["identifier"].as_array_mut().unwrap().push(json!({"system": "https://city.example.lg.jp/fhir/IdSystem/clinic", "value": "Ａ－１"}));
            }),
            vec![],
        ),
        (
            "municipality code with a wrong check digit",
            edited("organization-municipality.json", |o| {
                o["identifier"][0]["value"] = json!("131017");
            }),
            vec![error(
                "Organization.identifier[0].value",
                "JP_Organization: identifier:municipalityCode.value: \"131017\" is not a valid municipality-code: check digit 6 expected, found 7 (Musubi tightening) (inferred rule)",
            )],
        ),
        (
            "two municipality codes",
            edited("organization-municipality.json", |o| {
                o["identifier"].as_array_mut().unwrap().push(json!({"system": "https://musubi.example.org/fhir/IdSystem/municipality-code", "value": "011002"}));
            }),
            vec![error(
                "Organization.identifier",
                "JP_Organization: identifier:municipalityCode: max 1, found 2 (Musubi tightening) (inferred rule)",
            )],
        ),
    ];
    for (what, resource, expected) in cases {
        assert_eq!(validate(&resource), expected, "{what}");
    }
}

#[test]
fn practitioner_qualifications() {
    let cases: Vec<Case> = vec![
        (
            "OID form of the registration-number system is accepted",
            edited("practitioner.json", |p| {
                p["qualification"][0]["identifier"][0]["system"] =
                    json!("urn:oid:1.2.392.100495.20.3.31");
            }),
            vec![],
        ),
        (
            "wrong registration-number system",
            edited("practitioner.json", |p| {
                p["qualification"][0]["identifier"][0]["system"] =
                    json!("https://hospital.example.jp/doctor-id");
            }),
            vec![error(
                "Practitioner.qualification[0].identifier[0].system",
                "JP_Practitioner: qualification:medicalRegistrationNumber.identifier.system: must be \"http://jpfhir.jp/fhir/core/mhlw/IdSystem/medicalRegistrationNumber\", found \"https://hospital.example.jp/doctor-id\"",
            )],
        ),
        (
            "two medical registrations",
            edited("practitioner.json", |p| {
                let copy = p["qualification"][0].clone();
                p["qualification"].as_array_mut().unwrap().push(copy);
            }),
            vec![error(
                "Practitioner.qualification",
                "JP_Practitioner: qualification:medicalRegistrationNumber: max 1, found 2",
            )],
        ),
        (
            "one coding in the required value set is enough (a second, unknown code is allowed)",
            edited("practitioner.json", |p| {
                p["qualification"][1]["code"]["coding"].as_array_mut().unwrap().push(
                    json!({"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicalLicenseCertificate_CS", "code": "pharmacist-x"}),
                );
                p["qualification"][1]["code"]["coding"][0]["code"] =
                    json!("narcotics-practitioner");
            }),
            vec![],
        ),
    ];
    for (what, resource, expected) in cases {
        assert_eq!(validate(&resource), expected, "{what}");
    }
}

#[test]
fn required_binding_with_an_unknown_value_set_is_reported_as_not_checked() {
    let terminology =
        TestTerminology::new().without("http://terminology.hl7.org/ValueSet/v3-PurposeOfUse");
    let issues = summary(&set().validate(&fixture("consent.json"), &[], &terminology));
    let expected: Vec<Found> = (0..2)
        .map(|i| {
            (
                Severity::Information,
                format!("Consent.provision.purpose[{i}]"),
                format!(
                    "Musubi_Consent: provision.purpose: required binding to http://terminology.hl7.org/ValueSet/v3-PurposeOfUse not checked: the value set or code system is not known here (http://terminology.hl7.org/CodeSystem/v3-ActReason#{})",
                    ["TREAT", "PUBHLTH"][i]
                ),
            )
        })
        .collect();
    assert_eq!(issues, expected);
}

#[test]
fn inline_codes_decide_when_the_terminology_lacks_the_value_set() {
    // The fixture's licence codes are members by the profile's inline list: no "not checked".
    let terminology = TestTerminology::new()
        .without("http://jpfhir.jp/fhir/core/ValueSet/JP_MedicalLicenseCertificate_VS");
    let practitioner = fixture("practitioner.json");
    assert_eq!(
        summary(&set().validate(&practitioner, &[], &terminology)),
        vec![]
    );
    // A name-representation code outside the inline list is still an error.
    let terminology =
        TestTerminology::new().without("http://hl7.org/fhir/ValueSet/name-v3-representation");
    let mut patient = fixture("patient.json");
    patient["name"][0]["extension"][0]["valueCode"] = json!("ABCD");
    assert_eq!(
        summary(&set().validate(&patient, &[], &terminology)),
        vec![error(
            "Patient.name[0].extension[0].valueCode",
            "JP_Patient: name.extension:nameRepresentationUse.value[x]: ABCD is not in the required value set http://hl7.org/fhir/ValueSet/name-v3-representation",
        )]
    );
}

#[test]
fn immunization_defects() {
    let cases: Vec<Case> = vec![
        (
            "next-dose due date as dateTime",
            edited("immunization.json", |i| {
                i["extension"][0] = json!({"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Immunization_DueDateOfNextDose", "valueDateTime": "2024-08-01T09:00:00+09:00"});
            }),
            vec![error(
                "Immunization.extension[0].valueDateTime",
                "JP_Immunization: extension:dueDateOfNextDose.value[x]: type dateTime is not allowed (allowed: date)",
            )],
        ),
        (
            "lot release date without a value",
            edited("immunization.json", |i| {
                i["extension"][2]
                    .as_object_mut()
                    .unwrap()
                    .remove("valueDate");
                i["extension"][2]["extension"] = json!([{"url": "note", "valueString": "不明"}]);
            }),
            vec![
                error(
                    "Immunization.extension[2].value",
                    "JP_Immunization: extension:certificatedDate.value[x]: min 1, found 0",
                ),
                error(
                    "Immunization.extension[2].extension",
                    "JP_Immunization: extension:certificatedDate.extension: max 0, found 1",
                ),
            ],
        ),
        (
            "two manufactured dates",
            edited("immunization.json", |i| {
                let copy = i["extension"][1].clone();
                i["extension"].as_array_mut().unwrap().push(copy);
            }),
            vec![error(
                "Immunization.extension",
                "JP_Immunization: extension:manufacturedDate: max 1, found 2",
            )],
        ),
        (
            "text-only vaccine code (Musubi tightening)",
            edited("immunization.json", |i| {
                i["vaccineCode"] = json!({"text": "肺炎球菌ワクチン"});
            }),
            vec![error(
                "Immunization.vaccineCode.coding",
                "JP_Immunization: vaccineCode.coding: min 1, found 0 (Musubi tightening)",
            )],
        ),
        (
            "patient is a Group",
            edited("immunization.json", |i| {
                i["patient"] = json!({"reference": "Group/class-1"});
            }),
            vec![error(
                "Immunization.patient",
                "JP_Immunization: patient: reference to Group is not allowed (allowed: Patient)",
            )],
        ),
        (
            "performer is the patient",
            edited("immunization.json", |i| {
                i["performer"][0]["actor"] = json!({"reference": "https://fhir.example.jp/r4/Patient/jp-patient-hanako/_history/2"});
            }),
            vec![error(
                "Immunization.performer[0].actor",
                "JP_Immunization: performer.actor: reference to Patient is not allowed (allowed: Practitioner, PractitionerRole, Organization)",
            )],
        ),
        (
            "references whose target cannot be told, or a contained patient, pass",
            edited("immunization.json", |i| {
                i.insert(
                    "contained".into(),
                    json!([{"resourceType": "Patient", "id": "p1"}]),
                );
                i["patient"] = json!({"reference": "#p1"});
                i["location"] =
                    json!({"reference": "urn:uuid:8f9c7a2e-1b3d-4c5e-9f60-123456789abc"});
            }),
            vec![],
        ),
        (
            "contained target of the wrong type",
            edited("immunization.json", |i| {
                i.insert(
                    "contained".into(),
                    json!([{"resourceType": "Organization", "id": "o1", "name": "区役所"}]),
                );
                i["patient"] = json!({"reference": "#o1"});
            }),
            vec![error(
                "Immunization.patient",
                "JP_Immunization: patient: reference to Organization is not allowed (allowed: Patient)",
            )],
        ),
        (
            "dose without a unit code",
            edited("immunization.json", |i| {
                i["doseQuantity"] = json!({"value": 0.5, "unit": "mL"});
            }),
            vec![error(
                "Immunization.doseQuantity.code",
                "JP_Immunization: doseQuantity.code: min 1, found 0",
            )],
        ),
        (
            "several defects are all reported",
            edited("immunization.json", |i| {
                i["vaccineCode"] = json!({"text": "ＭＲ"});
                let due = i["extension"][0].as_object_mut().unwrap();
                due.remove("valueDate");
                due.insert("valueString".into(), json!("来月"));
                i["manufacturer"] = json!({"reference": "Practitioner/x"});
            }),
            vec![
                error(
                    "Immunization.extension[0].valueString",
                    "JP_Immunization: extension:dueDateOfNextDose.value[x]: type string is not allowed (allowed: date)",
                ),
                error(
                    "Immunization.vaccineCode.coding",
                    "JP_Immunization: vaccineCode.coding: min 1, found 0 (Musubi tightening)",
                ),
                error(
                    "Immunization.manufacturer",
                    "JP_Immunization: manufacturer: reference to Practitioner is not allowed (allowed: Organization)",
                ),
            ],
        ),
    ];
    for (what, resource, expected) in cases {
        assert_eq!(validate(&resource), expected, "{what}");
    }
}

#[test]
fn observation_categories_and_types() {
    let cases: Vec<Case> = vec![
        (
            "only the first category",
            edited("observation-bodymeasurement.json", |o| {
                o["category"].as_array_mut().unwrap().truncate(1);
            }),
            vec![
                error(
                    "Observation.category",
                    "JP_Observation_BodyMeasurement: category: min 2, found 1",
                ),
                error(
                    "Observation.category",
                    "JP_Observation_BodyMeasurement: category:bodyMeasurementCategory: min 1, found 0",
                ),
            ],
        ),
        (
            "first category with another simple code",
            edited("observation-bodymeasurement.json", |o| {
                o["category"][0]["coding"][0]["code"] = json!("vital-signs");
            }),
            vec![error(
                "Observation.category[0].coding[0].code",
                "JP_Observation_BodyMeasurement: category:bodyMeasurement.coding.code: must be \"body-measurement\", found \"vital-signs\"",
            )],
        ),
        (
            "first category code outside the required value set",
            edited("observation-bodymeasurement.json", |o| {
                o["category"][0]["coding"][0]["code"] = json!("bodymeasure");
            }),
            vec![
                error(
                    "Observation.category[0].coding[0]",
                    "JP_Observation_BodyMeasurement: category:bodyMeasurement.coding: http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS#bodymeasure is not in the required value set http://jpfhir.jp/fhir/core/ValueSet/JP_SimpleObservationCategory_VS",
                ),
                error(
                    "Observation.category[0].coding[0].code",
                    "JP_Observation_BodyMeasurement: category:bodyMeasurement.coding.code: must be \"body-measurement\", found \"bodymeasure\"",
                ),
            ],
        ),
        (
            "effective as instant",
            edited("observation-bodymeasurement.json", |o| {
                o.remove("effectiveDateTime");
                o.insert(
                    "effectiveInstant".into(),
                    json!("2024-06-03T10:00:00+09:00"),
                );
            }),
            vec![error(
                "Observation.effectiveInstant",
                "JP_Observation_BodyMeasurement: effective[x]: type instant is not allowed (allowed: dateTime, Period)",
            )],
        ),
        (
            "effective as period passes",
            edited("observation-bodymeasurement.json", |o| {
                o.remove("effectiveDateTime");
                o.insert(
                    "effectivePeriod".into(),
                    json!({"start": "2024-06-03", "end": "2024-06-03"}),
                );
            }),
            vec![],
        ),
        (
            "no subject; subject of the wrong type elsewhere",
            edited("observation-temperature.json", |o| {
                o.remove("subject");
                o.insert(
                    "performer".into(),
                    json!([{"reference": "Device/thermometer-1"}]),
                );
            }),
            vec![
                error(
                    "Observation.subject",
                    "JP_Observation_VitalSigns: subject: min 1, found 0",
                ),
                error(
                    "Observation.performer[0]",
                    "JP_Observation_VitalSigns: performer: reference to Device is not allowed (allowed: Practitioner, PractitionerRole, Organization, CareTeam, Patient, RelatedPerson)",
                ),
            ],
        ),
        (
            "vital-signs category with a second coding from another system",
            edited("observation-temperature.json", |o| {
                o["category"][1]["coding"].as_array_mut().unwrap().push(json!({"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}));
            }),
            vec![error(
                "Observation.category[1].coding[1].system",
                "JP_Observation_VitalSigns: category:vitalSignCategory.coding.system: must be \"http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationVitalSignsCategory_CS\", found \"http://terminology.hl7.org/CodeSystem/observation-category\"",
            )],
        ),
    ];
    for (what, resource, expected) in cases {
        assert_eq!(validate(&resource), expected, "{what}");
    }
}

#[test]
fn coverage_defects() {
    let resource = edited("coverage.json", |c| {
        c["extension"][1] = json!({"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonNumber", "valueInteger": 5678});
        c["beneficiary"] = json!({"reference": "Organization/jp-organization-clinic"});
    });
    assert_eq!(
        validate(&resource),
        vec![
            error(
                "Coverage.extension[1].valueInteger",
                "JP_Coverage: extension:insuredPersonNumber.value[x]: type integer is not allowed (allowed: string)",
            ),
            error(
                "Coverage.beneficiary",
                "JP_Coverage: beneficiary: reference to Organization is not allowed (allowed: Patient)",
            ),
        ]
    );
}

#[test]
fn consent_defects() {
    let cases: Vec<Case> = vec![
        (
            "research scope, no policy",
            edited("consent.json", |c| {
                c["scope"]["coding"][0]["code"] = json!("research");
                c.remove("policyRule");
            }),
            vec![
                error(
                    "Consent.scope",
                    "Musubi_Consent: scope: must match pattern {\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/consentscope\",\"code\":\"patient-privacy\"}]}, found {\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/consentscope\",\"code\":\"research\"}]}",
                ),
                error(
                    "Consent",
                    "Musubi_Consent: ppc-1 (Either a Policy or PolicyRule): none of policy, policyRule is present",
                ),
            ],
        ),
        (
            "purpose outside v3 PurposeOfUse; purpose system in OID form is the same system",
            edited("consent.json", |c| {
                c["provision"]["purpose"][0] =
                    json!({"system": "urn:oid:2.16.840.1.113883.5.8", "code": "TREAT"});
                c["provision"]["purpose"][1]["code"] = json!("MARKETING");
            }),
            vec![error(
                "Consent.provision.purpose[1]",
                "Musubi_Consent: provision.purpose: http://terminology.hl7.org/CodeSystem/v3-ActReason#MARKETING is not in the required value set http://terminology.hl7.org/ValueSet/v3-PurposeOfUse",
            )],
        ),
        (
            "no date, no performer, performer of the wrong type elsewhere",
            edited("consent.json", |c| {
                c.remove("dateTime");
                c["performer"] = json!([{"reference": "Organization/municipality-chiyoda"}]);
            }),
            vec![
                error(
                    "Consent.dateTime",
                    "Musubi_Consent: dateTime: min 1, found 0",
                ),
                error(
                    "Consent.performer[0]",
                    "Musubi_Consent: performer: reference to Organization is not allowed (allowed: RelatedPerson, Patient)",
                ),
            ],
        ),
    ];
    for (what, resource, expected) in cases {
        assert_eq!(validate(&resource), expected, "{what}");
    }
}

#[test]
fn prevaccination_response_defects() {
    let cases: Vec<Case> = vec![
        (
            "stopped response (inline codes decide: the terminology lacks the value set)",
            edited("prevaccination-response.json", |q| {
                q["status"] = json!("stopped");
            }),
            vec![error(
                "QuestionnaireResponse.status",
                "Musubi_PrevaccinationResponse: status: stopped is not in the required value set https://musubi.example.org/fhir/ValueSet/prevaccination-response-status",
            )],
        ),
        (
            "someone else's questionnaire",
            edited("prevaccination-response.json", |q| {
                q["questionnaire"] = json!("https://forms.example.com/Questionnaire/yoshin");
            }),
            vec![error(
                "QuestionnaireResponse.questionnaire",
                "Musubi_PrevaccinationResponse: questionnaire: musubi-qr-1 (The questionnaire is one of Musubi's prevaccination questionnaires): \"https://forms.example.com/Questionnaire/yoshin\" does not match ^(?:https://musubi\\.example\\.org/fhir/Questionnaire/[A-Za-z0-9\\-.]{1,64}(\\|[A-Za-z0-9\\-.]+)?)$",
            )],
        ),
        (
            "no questionnaire, subject or authored; subject a RelatedPerson",
            edited("prevaccination-response.json", |q| {
                q.remove("questionnaire");
                q.remove("authored");
                q["subject"] = json!({"reference": "RelatedPerson/guardian-taro"});
            }),
            vec![
                error(
                    "QuestionnaireResponse.questionnaire",
                    "Musubi_PrevaccinationResponse: questionnaire: min 1, found 0",
                ),
                error(
                    "QuestionnaireResponse.subject",
                    "Musubi_PrevaccinationResponse: subject: reference to RelatedPerson is not allowed (allowed: Patient)",
                ),
                error(
                    "QuestionnaireResponse.authored",
                    "Musubi_PrevaccinationResponse: authored: min 1, found 0",
                ),
            ],
        ),
    ];
    for (what, resource, expected) in cases {
        assert_eq!(validate(&resource), expected, "{what}");
    }
}

#[test]
fn claimed_and_enforced_profiles() {
    let terminology = TestTerminology::new();
    // Unknown claimed profile: a warning, the known one is still checked.
    let mut patient = fixture("patient.json");
    patient.as_object_mut().unwrap().remove("identifier");
    patient["meta"]["profile"] = json!([
        "http://example.org/StructureDefinition/OtherPatient",
        "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient|1.1.2"
    ]);
    assert_eq!(
        summary(&set().validate(&patient, &[], &terminology)),
        vec![
            warning(
                "Patient.meta.profile[0]",
                "profile http://example.org/StructureDefinition/OtherPatient is not known here; not checked",
            ),
            error(
                "Patient.identifier",
                "JP_Patient: identifier: min 1, found 0"
            ),
        ]
    );
    // Enforced by configuration without a claim; claimed and enforced is checked once.
    let default = set().default_for_type("Patient").unwrap().url();
    patient["meta"]["profile"] = json!([]);
    let enforced = summary(&set().validate(&patient, &[default], &terminology));
    assert_eq!(
        enforced,
        vec![error(
            "Patient.identifier",
            "JP_Patient: identifier: min 1, found 0"
        )]
    );
    patient["meta"]["profile"] = json!([default]);
    assert_eq!(
        summary(&set().validate(&patient, &[default], &terminology)),
        enforced
    );
    // Another version: checked against ours, with a note.
    patient["meta"]["profile"] = json!([format!("{default}|1.2.0")]);
    let issues = summary(&set().validate(&patient, &[], &terminology));
    assert_eq!(issues[0].0, Severity::Information);
    assert_eq!(
        issues[0].2,
        "JP_Patient: version 1.2.0 claimed; checked against version 1.1.2"
    );
    assert_eq!(issues.len(), 2);
    // A profile of another type.
    let mut immunization = fixture("immunization.json");
    immunization["meta"]["profile"] = json!([default]);
    assert_eq!(
        summary(&set().validate(&immunization, &[], &terminology)),
        vec![error(
            "Immunization.meta.profile[0]",
            "JP_Patient: the profile constrains Patient, not Immunization",
        )]
    );
    // Not a resource.
    let issues = set().validate(&json!({"id": "x"}), &[], &terminology);
    assert_eq!(issues.len(), 1);
    assert!(issues[0].severity.is_error());
}

#[test]
fn profile_set_lookup() {
    let set = set();
    let urls: Vec<&str> = set.profiles().map(|p| p.url()).collect();
    assert_eq!(urls.len(), 9, "{urls:?}");
    let defaults = [
        ("Patient", "JP_Patient"),
        ("Organization", "JP_Organization"),
        ("Practitioner", "JP_Practitioner"),
        ("Immunization", "JP_Immunization"),
        ("Coverage", "JP_Coverage"),
        ("Consent", "Musubi_Consent"),
        ("QuestionnaireResponse", "Musubi_PrevaccinationResponse"),
    ];
    for (resource_type, name) in defaults {
        let profile = set.default_for_type(resource_type).unwrap();
        assert_eq!(profile.name(), name);
        assert_eq!(profile.resource_type(), resource_type);
    }
    assert!(set.default_for_type("Observation").is_none());
    let imm = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Immunization";
    assert_eq!(set.get(imm).unwrap().name(), "JP_Immunization");
    assert!(set.get(&format!("{imm}|1.1.2")).is_some());
    assert!(set.get(&format!("{imm}|9.9.9")).is_none());
    assert!(
        set.get("http://jpfhir.jp/fhir/core/StructureDefinition/JP_Encounter")
            .is_none()
    );
    let consent = set
        .get("https://musubi.example.org/fhir/StructureDefinition/Musubi_Consent")
        .unwrap();
    assert!(consent.is_inferred());
    assert!(!set.get(imm).unwrap().is_inferred());
}

#[test]
fn structure_definitions_are_valid_r4_and_carry_the_rules() {
    for profile in set().profiles() {
        let sd = profile.to_structure_definition();
        let issues = validate_resource(Definitions::r4(), &sd);
        assert!(issues.is_empty(), "{}: {issues:?}", profile.name());
        assert_eq!(sd["url"], profile.url());
        assert_eq!(sd["type"], profile.resource_type());
        let ids: Vec<&str> = sd["differential"]["element"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{}: duplicate ids", profile.name());
    }
    let sd = set()
        .get("http://jpfhir.jp/fhir/core/StructureDefinition/JP_Immunization")
        .unwrap()
        .to_structure_definition();
    let elements = sd["differential"]["element"].as_array().unwrap();
    let find = |id: &str| {
        elements
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("{id}"))
    };
    assert_eq!(find("Immunization.extension")["slicing"]["rules"], "open");
    let due = find("Immunization.extension:dueDateOfNextDose");
    assert_eq!(due["max"], "1");
    assert_eq!(
        due["type"][0]["profile"][0],
        "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Immunization_DueDateOfNextDose"
    );
    let value = find("Immunization.extension:dueDateOfNextDose.value[x]");
    assert_eq!(value["path"], "Immunization.extension.value[x]");
    assert_eq!(value["type"], json!([{"code": "date"}]));
    assert_eq!(
        find("Immunization.patient")["type"][0]["targetProfile"][0],
        "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient"
    );
    assert!(
        find("Immunization.vaccineCode.coding")["comment"]
            .as_str()
            .unwrap()
            .starts_with("Musubi rule")
    );
    let org = set()
        .get("http://jpfhir.jp/fhir/core/StructureDefinition/JP_Organization")
        .unwrap()
        .to_structure_definition();
    let org_elements = org["differential"]["element"].as_array().unwrap();
    let system = org_elements
        .iter()
        .find(|e| e["id"] == "Organization.identifier:medicalInstitutionCode.system")
        .unwrap();
    assert_eq!(
        system["fixedUri"],
        "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no"
    );
}

#[test]
fn test_terminology_check_digits_accept_known_codes() {
    // 0110113719: a published prescription-issuing code; 131016: 千代田区; 011002: 札幌市.
    assert_eq!(support::medical_institution_code("0110113719"), Ok(()));
    assert_eq!(support::medical_institution_code("1311234569"), Ok(()));
    assert!(support::medical_institution_code("1311234567").is_err());
    assert_eq!(support::municipality_code("131016"), Ok(()));
    assert_eq!(support::municipality_code("011002"), Ok(()));
    assert!(support::municipality_code("131017").is_err());
}
