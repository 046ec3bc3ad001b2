//! Conditions, medications and allergies ↔ Condition, MedicationStatement and
//! AllergyIntolerance, one resource per list item.

use serde_json::{Map, Value, json};

use crate::ids::{client_source, resource_id};
use crate::tables::Tables;
use crate::{Kind, MappingContext, PhrError, RECORD_ID_SYSTEM, ReadContext};

const JP_CONDITION: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Condition";
const JP_ALLERGY: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_AllergyIntolerance";
const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
const ALLERGY_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";

/// The FHIR type each list becomes.
fn resource_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Conditions => "Condition",
        Kind::Medications => "MedicationStatement",
        _ => "AllergyIntolerance",
    }
}

/// A resource about another patient is the caller's mistake (a search without the patient),
/// never something to show an app.
pub(crate) fn check_subject(
    resource: &Value,
    pointer: &str,
    ctx: &ReadContext<'_>,
) -> Result<(), PhrError> {
    let expected = format!("Patient/{}", ctx.patient_id);
    match resource.pointer(pointer).and_then(Value::as_str) {
        Some(reference) if reference == expected => Ok(()),
        other => Err(PhrError::Resource {
            resource: format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap_or("?"),
                resource["id"].as_str().unwrap_or("?")
            ),
            problem: format!("{pointer} is {other:?}, not {expected:?}"),
        }),
    }
}

fn status(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

fn concept(tables: &Tables, list: &str, item: &Value) -> Value {
    let mut concept = Map::new();
    if let (Some(alias), Some(code)) = (
        item.pointer("/code/system").and_then(Value::as_str),
        item.pointer("/code/code").and_then(Value::as_str),
    ) && let Some(system) = tables.alias(alias, list)
    {
        concept.insert(
            "coding".into(),
            json!([{"system": system.url, "code": code}]),
        );
    }
    concept.insert("text".into(), item["text"].clone());
    Value::Object(concept)
}

fn note(item: &Value) -> Option<Value> {
    item.get("note").map(|n| json!([{"text": n}]))
}

fn resource(tables: &Tables, kind: Kind, item: &Value, ctx: &MappingContext<'_>) -> Value {
    let list = kind.name();
    let record = item["recordId"].as_str().unwrap_or_default();
    let patient = json!({"reference": format!("Patient/{}", ctx.patient_id)});
    let mut r = Map::new();
    r.insert("resourceType".into(), json!(resource_type(kind)));
    r.insert(
        "id".into(),
        json!(resource_id(&[
            "phr",
            ctx.client_id,
            ctx.patient_id,
            list,
            record
        ])),
    );
    let mut meta = Map::new();
    match kind {
        Kind::Conditions => {
            meta.insert("profile".into(), json!([JP_CONDITION]));
        }
        Kind::Allergies => {
            meta.insert("profile".into(), json!([JP_ALLERGY]));
        }
        _ => {}
    }
    meta.insert("source".into(), json!(client_source(ctx.client_id)));
    r.insert("meta".into(), Value::Object(meta));
    r.insert(
        "identifier".into(),
        json!([{"system": RECORD_ID_SYSTEM, "value": record}]),
    );
    match kind {
        Kind::Conditions => {
            if let Some(s) = item["status"].as_str() {
                r.insert("clinicalStatus".into(), status(CONDITION_CLINICAL, s));
            }
            r.insert(
                "category".into(),
                json!([{"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item"}]}]),
            );
            r.insert("code".into(), concept(tables, list, item));
            r.insert("subject".into(), patient);
            if let Some(d) = item.get("onset") {
                r.insert("onsetDateTime".into(), d.clone());
            }
            if let Some(d) = item.get("abatement") {
                r.insert("abatementDateTime".into(), d.clone());
            }
        }
        Kind::Medications => {
            r.insert("status".into(), item["status"].clone());
            r.insert(
                "medicationCodeableConcept".into(),
                concept(tables, list, item),
            );
            r.insert("subject".into(), patient.clone());
            let mut period = Map::new();
            for (from, to) in [("start", "start"), ("end", "end")] {
                if let Some(d) = item.get(from) {
                    period.insert(to.into(), d.clone());
                }
            }
            if !period.is_empty() {
                r.insert("effectivePeriod".into(), Value::Object(period));
            }
            // The person (or their guardian) told us: self-reported.
            r.insert("informationSource".into(), patient);
            if let Some(d) = item.get("dosage") {
                r.insert("dosage".into(), json!([{"text": d}]));
            }
        }
        _ => {
            if let Some(s) = item["status"].as_str() {
                r.insert("clinicalStatus".into(), status(ALLERGY_CLINICAL, s));
            }
            if let Some(c) = item.get("category") {
                r.insert("category".into(), json!([c]));
            }
            if let Some(c) = item.get("criticality") {
                r.insert("criticality".into(), c.clone());
            }
            r.insert("code".into(), concept(tables, list, item));
            r.insert("patient".into(), patient);
            if let Some(d) = item.get("onset") {
                r.insert("onsetDateTime".into(), d.clone());
            }
            if let Some(text) = item.get("reaction") {
                r.insert(
                    "reaction".into(),
                    json!([{"manifestation": [{"text": text}]}]),
                );
            }
        }
    }
    if let Some(n) = note(item) {
        r.insert("note".into(), n);
    }
    Value::Object(r)
}

pub(crate) fn to_fhir(
    tables: &Tables,
    kind: Kind,
    payload: &Value,
    ctx: &MappingContext<'_>,
) -> Vec<Value> {
    payload[kind.name()]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| resource(tables, kind, item, ctx))
        .collect()
}

fn sorted(person: &Value, list: &str, mut items: Vec<Value>) -> Value {
    items.sort_by(|a, b| a["recordId"].as_str().cmp(&b["recordId"].as_str()));
    let mut out = Map::new();
    out.insert("personId".into(), person.clone());
    out.insert(list.into(), Value::Array(items));
    Value::Object(out)
}

pub(crate) fn normalise(kind: Kind, payload: &Value) -> Value {
    let items = payload[kind.name()].as_array().cloned().unwrap_or_default();
    sorted(&payload["personId"], kind.name(), items)
}

fn first_code(resource: &Value, pointer: &str) -> Option<String> {
    resource
        .pointer(pointer)?
        .as_array()?
        .first()?
        .get("code")?
        .as_str()
        .map(str::to_owned)
}

/// The app's item back from a resource. Records other clients or clinics made have no
/// `recordId` identifier; their resource id stands in.
fn item(tables: &Tables, kind: Kind, r: &Value) -> Value {
    let list = kind.name();
    let mut item = Map::new();
    let record = r["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["system"].as_str() == Some(RECORD_ID_SYSTEM))
        .and_then(|i| i["value"].as_str())
        .or_else(|| r["id"].as_str())
        .unwrap_or_default();
    item.insert("recordId".into(), json!(record));
    let concept_at = if kind == Kind::Medications {
        "/medicationCodeableConcept"
    } else {
        "/code"
    };
    let concept = r.pointer(concept_at).cloned().unwrap_or(Value::Null);
    let codings = concept["coding"].as_array().cloned().unwrap_or_default();
    let text = concept["text"]
        .as_str()
        .or_else(|| codings.iter().find_map(|c| c["display"].as_str()))
        .unwrap_or("(名称なし)");
    item.insert("text".into(), json!(text));
    if let Some((alias, code)) = codings.iter().find_map(|c| {
        let alias = tables.alias_of_url(c["system"].as_str()?, list)?;
        Some((alias.alias.clone(), c["code"].as_str()?.to_owned()))
    }) {
        item.insert("code".into(), json!({"system": alias, "code": code}));
    }
    let copy = |item: &mut Map<String, Value>, from: &str, to: &str| {
        if let Some(v) = r.pointer(from) {
            item.insert(to.into(), v.clone());
        }
    };
    match kind {
        Kind::Conditions => {
            if let Some(s) = first_code(r, "/clinicalStatus/coding") {
                item.insert("status".into(), json!(s));
            }
            copy(&mut item, "/onsetDateTime", "onset");
            copy(&mut item, "/abatementDateTime", "abatement");
        }
        Kind::Medications => {
            copy(&mut item, "/status", "status");
            copy(&mut item, "/dosage/0/text", "dosage");
            copy(&mut item, "/effectivePeriod/start", "start");
            copy(&mut item, "/effectivePeriod/end", "end");
        }
        _ => {
            copy(&mut item, "/category/0", "category");
            copy(&mut item, "/criticality", "criticality");
            if let Some(s) = first_code(r, "/clinicalStatus/coding") {
                item.insert("status".into(), json!(s));
            }
            copy(&mut item, "/reaction/0/manifestation/0/text", "reaction");
            copy(&mut item, "/onsetDateTime", "onset");
        }
    }
    copy(&mut item, "/note/0/text", "note");
    // Key order as the schema lists the properties, so output reads the same for every item.
    let order: &[&str] = match kind {
        Kind::Conditions => &[
            "recordId",
            "text",
            "code",
            "status",
            "onset",
            "abatement",
            "note",
        ],
        Kind::Medications => &[
            "recordId", "text", "code", "status", "dosage", "start", "end", "note",
        ],
        _ => &[
            "recordId",
            "text",
            "code",
            "category",
            "criticality",
            "status",
            "reaction",
            "onset",
            "note",
        ],
    };
    let mut ordered = Map::new();
    for key in order {
        if let Some(v) = item.remove(*key) {
            ordered.insert((*key).into(), v);
        }
    }
    Value::Object(ordered)
}

pub(crate) fn from_fhir(
    tables: &Tables,
    kind: Kind,
    resources: &[Value],
    ctx: &ReadContext<'_>,
) -> Result<Value, PhrError> {
    let wanted = resource_type(kind);
    let subject = if kind == Kind::Allergies {
        "/patient/reference"
    } else {
        "/subject/reference"
    };
    let mut items = Vec::new();
    for r in resources {
        if r["resourceType"].as_str() != Some(wanted) {
            continue;
        }
        check_subject(r, subject, ctx)?;
        let withdrawn = match kind {
            Kind::Medications => r["status"].as_str() == Some("entered-in-error"),
            _ => first_code(r, "/verificationStatus/coding").as_deref() == Some("entered-in-error"),
        };
        if !withdrawn {
            items.push(item(tables, kind, r));
        }
    }
    Ok(sorted(&json!(ctx.patient_id), kind.name(), items))
}
