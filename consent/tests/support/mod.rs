//! Realistic Japanese test data: a child in 千代田区 (131016), her mother as guardian, a clinic
//! (医療機関コード 1312345670), a medical association, a PHR app, and consent builders.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixtures"
)]

use consent::{ConsentRecord, Identifier, Party, PatientRef, Policy, Purpose, RecipientKind};
use serde_json::{Value, json};

pub const CHILD: &str = "Patient/child-sato-hana";
pub const GUARDIAN: &str = "RelatedPerson/guardian-sato-yumi";
pub const CHIYODA: &str = "131016";
pub const SHINJUKU: &str = "131041";
pub const CLINIC_CODE: &str = "1312345670";
pub const APP: &str = "boshi-techo-app";
pub const OTHER_APP: &str = "kenko-note-app";

pub fn policy() -> &'static Policy {
    Policy::embedded().expect("embedded consent data")
}

pub fn purpose(code: &str) -> Purpose {
    Purpose::new(code).expect("purpose code")
}

pub fn child() -> PatientRef {
    PatientRef::parse(CHILD).expect("patient reference")
}

pub fn clinic() -> Party {
    Party::client(RecipientKind::ClinicEmr, "sato-kodomo-clinic-emr")
        .with_identifier(Identifier::medical_institution(CLINIC_CODE))
}

pub fn municipality(code: &str) -> Party {
    Party::client(RecipientKind::Municipality, &format!("city-{code}"))
        .with_identifier(Identifier::municipality(code))
}

pub fn medical_association() -> Party {
    Party::client(RecipientKind::MedicalAssociation, "chiyoda-med-assoc")
}

pub fn app(id: &str) -> Party {
    Party::client(RecipientKind::PhrApp, id)
}

pub fn patient_resource() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "child-sato-hana",
        "meta": {"versionId": "2", "lastUpdated": "2025-04-15T10:30:00+09:00",
                 "profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient"]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">佐藤 花</div>"},
        "extension": [{"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Patient_Race",
                       "valueCodeableConcept": {"text": "日本人"}}],
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11312345670", "value": "00012345"}],
        "active": true,
        "name": [
            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}],
             "use": "official", "text": "佐藤 花", "family": "佐藤", "given": ["花"]},
            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}],
             "use": "official", "text": "サトウ ハナ", "family": "サトウ", "given": ["ハナ"]}
        ],
        "telecom": [{"system": "phone", "value": "03-3264-2111", "use": "home"}],
        "gender": "female",
        "birthDate": "2024-05-10",
        "address": [{"use": "home", "text": "東京都千代田区九段南1-2-1", "line": ["九段南1-2-1"],
                     "city": "千代田区", "state": "東京都", "postalCode": "102-8688", "country": "JP"}],
        "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}],
                     "name": {"text": "佐藤 由美"},
                     "telecom": [{"system": "phone", "value": "090-1234-5678"}]}],
        "generalPractitioner": [{"reference": "Organization/sato-kodomo-clinic"}]
    })
}

/// A routine (定期) 5種混合 dose given at the clinic.
pub fn immunization(id: &str, funding: &str) -> Value {
    json!({
        "resourceType": "Immunization",
        "id": id,
        "meta": {"versionId": "1", "profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Immunization"]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">佐藤 花 5種混合 1回目</div>"},
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.81.11312345670", "value": "IMM-2025-0415-001"}],
        "status": "completed",
        "vaccineCode": {"coding": [{"system": "https://musubi.example.org/fhir/CodeSystem/vaccine-type", "code": "dpt-ipv-hib", "display": "5種混合"}]},
        "patient": {"reference": CHILD, "display": "佐藤 花"},
        "occurrenceDateTime": "2025-04-15T10:20:00+09:00",
        "lotNumber": "DPV123A",
        "performer": [{"actor": {"reference": "Practitioner/dr-tanaka", "display": "田中 一郎"}}],
        "note": [{"text": "保護者（母）同伴。発熱なし。"}],
        "fundingSource": {"coding": [{"system": "https://musubi.example.org/fhir/CodeSystem/funding-source", "code": funding}]},
        "protocolApplied": [{"doseNumberPositiveInt": 1}]
    })
}

/// A consultation (育児相談) the municipality may only learn about at identity level.
pub fn consultation() -> Value {
    json!({
        "resourceType": "Encounter",
        "id": "consult-2025-05-20",
        "meta": {"versionId": "1", "tag": [{"system": "https://musubi.example.org/fhir/CodeSystem/needs-care", "code": "needs-care"}]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">夜泣きと授乳の相談。要支援。</div>"},
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"text": "育児相談"}],
        "subject": {"reference": CHILD, "display": "佐藤 花"},
        "period": {"start": "2025-05-20T14:00:00+09:00", "end": "2025-05-20T14:30:00+09:00"},
        "reasonCode": [{"text": "夜泣き・授乳困難、保護者の疲労"}],
        "serviceProvider": {"reference": "Organization/sato-kodomo-clinic"}
    })
}

pub fn vital() -> Value {
    json!({
        "resourceType": "Observation",
        "id": "bt-2025-04-15",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "subject": {"reference": CHILD},
        "effectiveDateTime": "2025-04-15T09:55:00+09:00",
        "valueQuantity": {"value": 36.8, "unit": "℃", "system": "http://unitsofmeasure.org", "code": "Cel"}
    })
}

pub fn medication() -> Value {
    json!({
        "resourceType": "MedicationStatement",
        "id": "med-1",
        "status": "active",
        "medicationCodeableConcept": {"text": "アセトアミノフェン坐剤"},
        "subject": {"reference": CHILD}
    })
}

// ---- Consent builders (the encoding of docs/consent.md) ----

pub fn consent(id: &str, date_time: &str, status: &str, provision: Value) -> Value {
    json!({
        "resourceType": "Consent",
        "id": id,
        "meta": {"versionId": "1", "profile": ["https://musubi.example.org/fhir/StructureDefinition/Musubi_Consent"]},
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": CHILD},
        "dateTime": date_time,
        "performer": [{"reference": GUARDIAN, "display": "佐藤 由美（母）"}],
        "organization": [{"reference": "Organization/chiyoda-city"}],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision
    })
}

fn role(code: &str) -> Value {
    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": code}]})
}

pub fn to_client(id: &str) -> Value {
    json!({"role": role("IRCP"), "reference": {"identifier": {"system": consent::CLIENT_ID_SYSTEM, "value": id}}})
}

pub fn to_kind(kind: &str) -> Value {
    json!({"role": role("IRCP"), "reference": {"identifier": {"system": consent::RECIPIENT_KIND_ID_SYSTEM, "value": kind}}})
}

pub fn to_municipality(code: &str) -> Value {
    json!({"role": role("IRCP"), "reference": {"identifier": {"system": consent::MUNICIPALITY_CODE_SYSTEM, "value": code}}})
}

pub fn to_project(id: &str) -> Value {
    json!({"role": role("IRCP"), "reference": {"identifier": {"system": consent::RESEARCH_PROJECT_SYSTEM, "value": id}}})
}

pub fn from_custodian(client_id: &str) -> Value {
    json!({"role": role("CST"), "reference": {"identifier": {"system": consent::CLIENT_ID_SYSTEM, "value": client_id}}})
}

pub fn purposes(codes: &[&str]) -> Value {
    Value::Array(
        codes
            .iter()
            .map(|c| json!({"system": consent::PURPOSE_SYSTEM, "code": c}))
            .collect(),
    )
}

pub fn classes(codes: &[&str]) -> Value {
    Value::Array(
        codes
            .iter()
            .map(|c| json!({"system": consent::DATA_CLASS_SYSTEM, "code": c}))
            .collect(),
    )
}

pub fn identity_only() -> Value {
    json!([{"url": consent::SHARING_LEVEL_EXTENSION, "valueCode": "identity-only"}])
}

pub fn parse(resource: &Value) -> ConsentRecord {
    ConsentRecord::parse(policy(), resource).expect("consent parses")
}

/// `resource` without the top-level members the policy does not read
/// ([`Policy::members_read`]), as a caller that parses only those members sees it.
pub fn members_read_only(resource: &Value) -> Value {
    match resource {
        Value::Object(members) => Value::Object(
            members
                .iter()
                .filter(|(name, _)| policy().members_read().contains(name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}
