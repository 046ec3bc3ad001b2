//! Read-back shapes: a child's vaccination history from Immunization resources, and the routine
//! schedule from the ImmunizationRecommendation of `$immunization-schedule` (docs/operations.md).

use serde_json::{Map, Value, json};

use crate::ids::{check_partial_date, parse_date};
use crate::records::check_subject;
use crate::tables::{Tables, VACCINE_TYPE_SYSTEM};
use crate::{PhrError, ReadContext};

const DUE_DATE_EXTENSION: &str =
    "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Immunization_DueDateOfNextDose";
const RECOMMENDATION_STATUS_SYSTEM: &str =
    "https://musubi.example.org/fhir/CodeSystem/recommendation-status";

fn codings(value: &Value, pointer: &str) -> Vec<Value> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn vaccination(tables: &Tables, r: &Value, ctx: &ReadContext<'_>) -> Value {
    let mut out = Map::new();
    out.insert("recordId".into(), r["id"].clone());
    let codes = codings(r, "/vaccineCode/coding");
    let direct = codes.iter().find_map(|c| {
        (c["system"].as_str() == Some(VACCINE_TYPE_SYSTEM))
            .then(|| c["code"].as_str().map(str::to_owned))
            .flatten()
    });
    let product = codes
        .iter()
        .find(|c| c["system"].as_str() != Some(VACCINE_TYPE_SYSTEM) && c["code"].is_string());
    let vaccine = direct.or_else(|| {
        codes
            .iter()
            .find_map(|c| (ctx.vaccine_type_of)(c["system"].as_str()?, c["code"].as_str()?))
    });
    if let Some(vaccine) = &vaccine {
        out.insert("vaccineType".into(), json!(vaccine));
    }
    let name = vaccine
        .as_deref()
        .and_then(|v| tables.vaccine_names.get(v).cloned())
        .or_else(|| {
            r.pointer("/vaccineCode/text")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .or_else(|| {
            product
                .and_then(|p| p["display"].as_str())
                .map(str::to_owned)
        });
    if let Some(name) = name {
        out.insert("vaccineName".into(), json!(name));
    }
    out.insert("status".into(), r["status"].clone());
    if let Some(when) = r["occurrenceDateTime"].as_str() {
        // The day as written: a +09:00 evening vaccination stays on its day.
        let day = when.get(..10).unwrap_or(when);
        let day = if check_partial_date(day).is_ok() {
            day
        } else {
            when.get(..7).unwrap_or(when)
        };
        out.insert("date".into(), json!(day));
    }
    if let Some(text) = r["occurrenceString"].as_str() {
        out.insert("dateText".into(), json!(text));
    }
    if let Some(n) = r["protocolApplied"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|p| p["doseNumberPositiveInt"].as_u64())
    {
        out.insert("doseNumber".into(), json!(n));
    }
    if let Some(lot) = r["lotNumber"].as_str() {
        out.insert("lotNumber".into(), json!(lot));
    }
    if let Some(p) = product {
        let mut product = Map::new();
        product.insert("system".into(), p["system"].clone());
        product.insert("code".into(), p["code"].clone());
        if let Some(d) = p.get("display") {
            product.insert("name".into(), d.clone());
        }
        out.insert("product".into(), Value::Object(product));
    }
    let facility = r
        .pointer("/location/display")
        .or_else(|| {
            r["performer"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|p| p.pointer("/actor/display"))
        })
        .and_then(Value::as_str);
    if let Some(f) = facility {
        out.insert("facility".into(), json!(f));
    }
    let reason = r
        .pointer("/statusReason/text")
        .or_else(|| r.pointer("/statusReason/coding/0/display"))
        .and_then(Value::as_str);
    if let Some(reason) = reason {
        out.insert("notDoneReason".into(), json!(reason));
    }
    if let Some(due) = r["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"].as_str() == Some(DUE_DATE_EXTENSION))
        .and_then(|e| {
            e["valueDate"]
                .as_str()
                .or_else(|| e["valueDateTime"].as_str())
        })
        .and_then(|d| d.get(..10))
        .filter(|d| parse_date(d).is_ok())
    {
        out.insert("nextDueDate".into(), json!(due));
    }
    Value::Object(out)
}

/// The history, oldest first (undated records last), entered-in-error records left out.
pub(crate) fn vaccinations(
    tables: &Tables,
    resources: &[Value],
    ctx: &ReadContext<'_>,
) -> Result<Value, PhrError> {
    let mut list = Vec::new();
    for r in resources {
        if r["resourceType"].as_str() != Some("Immunization") {
            continue;
        }
        check_subject(r, "/patient/reference", ctx)?;
        if r["status"].as_str() == Some("entered-in-error") {
            continue;
        }
        list.push(vaccination(tables, r, ctx));
    }
    list.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["date"].as_str().is_none(),
                v["date"].as_str().map(str::to_owned),
            )
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| a["recordId"].as_str().cmp(&b["recordId"].as_str()))
    });
    Ok(json!({"personId": ctx.patient_id, "vaccinations": list}))
}

fn recommendation(entry: &Value) -> Value {
    let mut out = Map::new();
    let vaccine = codings(entry, "/vaccineCode/0/coding")
        .into_iter()
        .find(|c| c["system"].as_str() == Some(VACCINE_TYPE_SYSTEM));
    if let Some(v) = &vaccine {
        out.insert("vaccineType".into(), v["code"].clone());
        if let Some(d) = v.get("display") {
            out.insert("vaccineName".into(), d.clone());
        }
    }
    if let Some(s) = entry.get("series") {
        out.insert("series".into(), s.clone());
    }
    if let Some(n) = entry.get("doseNumberPositiveInt") {
        out.insert("doseNumber".into(), n.clone());
    }
    if let Some(status) = codings(entry, "/forecastStatus/coding")
        .into_iter()
        .find(|c| c["system"].as_str() == Some(RECOMMENDATION_STATUS_SYSTEM))
    {
        out.insert("status".into(), status["code"].clone());
        if let Some(d) = status.get("display") {
            out.insert("statusLabel".into(), d.clone());
        }
    }
    // LOINC codes of the R4 immunization-recommendation-date-criterion value set.
    for (code, field) in [
        ("30981-5", "earliestDate"),
        ("30980-7", "dueDate"),
        ("59778-1", "overdueDate"),
        ("59777-3", "latestDate"),
    ] {
        if let Some(value) = entry["dateCriterion"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| {
                codings(c, "/code/coding").iter().any(|k| {
                    k["system"].as_str() == Some("http://loinc.org")
                        && k["code"].as_str() == Some(code)
                })
            })
            .and_then(|c| c["value"].as_str())
        {
            out.insert(field.into(), json!(value.get(..10).unwrap_or(value)));
        }
    }
    if let Some(reference) = entry
        .pointer("/supportingImmunization/0/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Immunization/"))
    {
        out.insert("givenRecordId".into(), json!(reference));
    }
    if let Some(d) = entry.get("description") {
        out.insert("note".into(), d.clone());
    }
    Value::Object(out)
}

/// The schedule, one entry per vaccine and dose in the order the operation returns them.
pub(crate) fn schedule(resources: &[Value], ctx: &ReadContext<'_>) -> Result<Value, PhrError> {
    let found: Vec<&Value> = resources
        .iter()
        .filter(|r| r["resourceType"].as_str() == Some("ImmunizationRecommendation"))
        .collect();
    let [rec] = found.as_slice() else {
        return Err(PhrError::Resource {
            resource: "ImmunizationRecommendation".into(),
            problem: format!("expected exactly one, got {}", found.len()),
        });
    };
    check_subject(rec, "/patient/reference", ctx)?;
    let list: Vec<Value> = rec["recommendation"]
        .as_array()
        .into_iter()
        .flatten()
        .map(recommendation)
        .collect();
    let as_of = rec["date"]
        .as_str()
        .map(|d| d.get(..10).unwrap_or(d))
        .unwrap_or_default();
    Ok(json!({"personId": ctx.patient_id, "asOf": as_of, "recommendations": list}))
}
