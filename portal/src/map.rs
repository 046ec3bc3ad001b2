//! Portal records to FHIR R4, pure and deterministic: a vaccination becomes an Immunization
//! (<http://hl7.org/fhir/R4/immunization.html>), a check-up a DiagnosticReport grouping one
//! Observation per result, and each record gets a Provenance
//! (<http://hl7.org/fhir/R4/provenance.html>) naming the portal as its source. Ids are hashes
//! of natural keys, so pulling the same record again writes the same resources.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::PatientId;
use crate::dedup::{DedupKey, dedup_key};
use crate::records::{CheckupRecord, Dose, Facility, ItemValue, VaccinationRecord};
use crate::tables::{PortalTables, SourceNames, VACCINE_TYPE_SYSTEM};
use crate::text::resource_id;

/// JP Core's Immunization profile (jp-specs §1.2, §1.7).
pub const JP_IMMUNIZATION: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Immunization";
/// JP Core's medical-institution number system (jp-specs §1.4).
pub const MEDICAL_INSTITUTION_SYSTEM: &str =
    "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";
/// The extension naming the municipality that holds a vaccination record, as the municipal
/// adapter writes it (docs/municipal.md).
pub const VACCINATING_MUNICIPALITY_EXTENSION: &str =
    "https://musubi.example.org/fhir/StructureDefinition/vaccinating-municipality";

/// One vaccination mapped: its Immunization, the Provenance naming the portal, and the key
/// de-duplication compares.
#[derive(Debug, Clone)]
pub struct MappedVaccination {
    pub key: DedupKey,
    pub record: VaccinationRecord,
    pub immunization: Value,
    pub provenance: Value,
}

impl MappedVaccination {
    /// The Immunization's id.
    pub fn id(&self) -> &str {
        self.immunization
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// One check-up mapped: a DiagnosticReport, its Observations and one Provenance for all.
#[derive(Debug, Clone)]
pub struct MappedCheckup {
    pub report: Value,
    pub observations: Vec<Value>,
    pub provenance: Value,
}

fn instant(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

fn fhir_date(date: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

fn performer(facility: &Facility) -> Option<Value> {
    if facility.name.is_none() && facility.code.is_none() {
        return None;
    }
    let mut actor = Map::new();
    actor.insert("type".into(), json!("Organization"));
    if let Some(code) = &facility.code {
        actor.insert(
            "identifier".into(),
            json!({"system": MEDICAL_INSTITUTION_SYSTEM, "value": code}),
        );
    }
    if let Some(name) = &facility.name {
        actor.insert("display".into(), json!(name));
    }
    Some(Value::Object(actor))
}

/// The Provenance of resources built from one portal record. `recorded` is when the record was
/// pulled; the agent is the portal (type `informant`: it supplied the information), the entity
/// (role `source`) is the portal record, by its record id when the portal gives one.
pub fn provenance(
    source: &SourceNames,
    id_key: &str,
    targets: &[String],
    record_id: Option<&str>,
    endpoint: &str,
    pulled_at: OffsetDateTime,
    activity: Option<&str>,
) -> Value {
    let mut what = Map::new();
    if let Some(rid) = record_id {
        what.insert(
            "identifier".into(),
            json!({"system": source.record_system, "value": rid}),
        );
    }
    what.insert(
        "display".into(),
        json!(format!("{} {endpoint}", source.agent_display)),
    );
    let mut p = Map::new();
    p.insert("resourceType".into(), json!("Provenance"));
    p.insert(
        "id".into(),
        json!(resource_id(&format!("portal|Provenance|{id_key}"))),
    );
    p.insert(
        "target".into(),
        Value::Array(targets.iter().map(|t| json!({"reference": t})).collect()),
    );
    p.insert("recorded".into(), json!(instant(pulled_at)));
    if let Some(code) = activity {
        p.insert(
            "activity".into(),
            json!({"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                "code": code
            }]}),
        );
    }
    p.insert(
        "agent".into(),
        json!([{
            "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "informant",
                "display": "Informant"
            }]},
            "who": {
                "identifier": {"system": source.agent_system, "value": source.agent_value},
                "display": source.agent_display
            }
        }]),
    );
    p.insert(
        "entity".into(),
        json!([{"role": "source", "what": Value::Object(what)}]),
    );
    Value::Object(p)
}

/// A portal vaccination as an Immunization of `patient` with its Provenance.
pub fn map_vaccination(
    tables: &PortalTables,
    patient: &PatientId,
    record: &VaccinationRecord,
    pulled_at: OffsetDateTime,
) -> MappedVaccination {
    let key = dedup_key(
        patient.as_str(),
        &record.vaccine_type.code,
        record.date,
        record.lot.as_deref(),
    );
    let id = resource_id(&format!("portal|Immunization|{key}"));
    let mut imm = Map::new();
    imm.insert("resourceType".into(), json!("Immunization"));
    imm.insert("id".into(), json!(id));
    imm.insert("meta".into(), json!({"profile": [JP_IMMUNIZATION]}));
    if let Some(code) = &record.municipality_code {
        imm.insert(
            "extension".into(),
            json!([{
                "url": VACCINATING_MUNICIPALITY_EXTENSION,
                "valueCode": code
            }]),
        );
    }
    if let Some(rid) = &record.record_id {
        imm.insert(
            "identifier".into(),
            json!([{"system": tables.layout.source.record_system, "value": rid}]),
        );
    }
    imm.insert("status".into(), json!("completed"));
    let mut vaccine_code = Map::new();
    vaccine_code.insert(
        "coding".into(),
        json!([{
            "system": VACCINE_TYPE_SYSTEM,
            "code": record.vaccine_type.code,
            "display": record.vaccine_type.display
        }]),
    );
    if let Some(name) = &record.vaccine_name {
        vaccine_code.insert("text".into(), json!(name));
    }
    imm.insert("vaccineCode".into(), Value::Object(vaccine_code));
    imm.insert(
        "patient".into(),
        json!({"reference": format!("Patient/{patient}")}),
    );
    imm.insert("occurrenceDateTime".into(), json!(fhir_date(record.date)));
    // Not recorded by whoever gave the shot: the portal relays the municipal register.
    imm.insert("primarySource".into(), json!(false));
    imm.insert(
        "reportOrigin".into(),
        json!({
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/immunization-origin",
                "code": "record",
                "display": "Written Record"
            }],
            "text": tables.layout.source.agent_display
        }),
    );
    if let Some(lot) = &record.lot {
        imm.insert("lotNumber".into(), json!(lot));
    }
    if let Some(actor) = performer(&record.facility) {
        imm.insert("performer".into(), json!([{"actor": actor}]));
    }
    match &record.dose {
        Some(Dose::Number(n)) => {
            imm.insert(
                "protocolApplied".into(),
                json!([{"doseNumberPositiveInt": n}]),
            );
        }
        Some(Dose::Text(text)) => {
            imm.insert(
                "protocolApplied".into(),
                json!([{"doseNumberString": text}]),
            );
        }
        None => {}
    }
    let target = format!("Immunization/{id}");
    let provenance = provenance(
        &tables.layout.source,
        &target,
        std::slice::from_ref(&target),
        record.record_id.as_deref(),
        &record.endpoint,
        pulled_at,
        Some("CREATE"),
    );
    MappedVaccination {
        key,
        record: record.clone(),
        immunization: Value::Object(imm),
        provenance,
    }
}

/// A portal check-up as a DiagnosticReport of `patient` with one Observation per result item
/// and one Provenance for them all.
pub fn map_checkup(
    tables: &PortalTables,
    patient: &PatientId,
    record: &CheckupRecord,
    pulled_at: OffsetDateTime,
) -> MappedCheckup {
    let date = fhir_date(record.date);
    let report_key = format!(
        "portal|DiagnosticReport|{patient}|{}|{date}",
        record.kind.code
    );
    let report_id = resource_id(&report_key);
    let subject = json!({"reference": format!("Patient/{patient}")});
    let mut observations = Vec::new();
    for item in &record.items {
        let id = resource_id(&format!("{report_key}|{}", item.def.key));
        let mut obs = Map::new();
        obs.insert("resourceType".into(), json!("Observation"));
        obs.insert("id".into(), json!(id));
        if let Some(profile) = &item.def.profile {
            obs.insert("meta".into(), json!({"profile": [profile]}));
        }
        obs.insert("status".into(), json!("final"));
        obs.insert(
            "category".into(),
            Value::Array(
                item.def
                    .category
                    .iter()
                    .map(|c| json!({"coding": [c]}))
                    .collect(),
            ),
        );
        obs.insert("code".into(), json!({"coding": item.def.coding}));
        obs.insert("subject".into(), subject.clone());
        obs.insert("effectiveDateTime".into(), json!(date));
        match &item.value {
            ItemValue::Quantity {
                value,
                unit_code,
                unit_display,
            } => {
                obs.insert(
                    "valueQuantity".into(),
                    json!({
                        "value": Value::Number(value.clone()),
                        "unit": unit_display,
                        "system": "http://unitsofmeasure.org",
                        "code": unit_code
                    }),
                );
            }
            ItemValue::Coded {
                system,
                code,
                display,
                text,
            } => {
                obs.insert(
                    "valueCodeableConcept".into(),
                    json!({
                        "coding": [{"system": system, "code": code, "display": display}],
                        "text": text
                    }),
                );
            }
        }
        observations.push(Value::Object(obs));
    }

    let mut report = Map::new();
    report.insert("resourceType".into(), json!("DiagnosticReport"));
    report.insert("id".into(), json!(report_id));
    if let Some(rid) = &record.record_id {
        report.insert(
            "identifier".into(),
            json!([{"system": tables.layout.source.record_system, "value": rid}]),
        );
    }
    report.insert("status".into(), json!("final"));
    let mut code = Map::new();
    code.insert(
        "coding".into(),
        json!([{
            "system": tables.kind_system,
            "code": record.kind.code,
            "display": record.kind.display
        }]),
    );
    if let Some(name) = &record.kind_name {
        code.insert("text".into(), json!(name));
    }
    report.insert("code".into(), Value::Object(code));
    report.insert("subject".into(), subject);
    report.insert("effectiveDateTime".into(), json!(date));
    if let Some(actor) = performer(&record.facility) {
        report.insert("performer".into(), json!([actor]));
    }
    if !observations.is_empty() {
        report.insert(
            "result".into(),
            Value::Array(
                observations
                    .iter()
                    .map(|o| json!({"reference": format!("Observation/{}", o["id"].as_str().unwrap_or_default())}))
                    .collect(),
            ),
        );
    }

    let report_ref = format!("DiagnosticReport/{report_id}");
    let mut targets = vec![report_ref.clone()];
    targets.extend(
        observations
            .iter()
            .map(|o| format!("Observation/{}", o["id"].as_str().unwrap_or_default())),
    );
    let provenance = provenance(
        &tables.layout.source,
        &report_ref,
        &targets,
        record.record_id.as_deref(),
        &record.endpoint,
        pulled_at,
        Some("CREATE"),
    );
    MappedCheckup {
        report: Value::Object(report),
        observations,
        provenance,
    }
}
