//! Vital-sign time series ↔ one Observation per point (codes and units from
//! `phr-vital-kinds.json`).

use serde_json::{Map, Value, json};

use crate::ids::{client_source, fhir_date_time, parse_when, resource_id};
use crate::tables::{Tables, VitalKind, VitalUnit};
use crate::{MappingContext, PhrError, ReadContext};

const UCUM: &str = "http://unitsofmeasure.org";

fn observation(
    kind: &VitalKind,
    unit: &VitalUnit,
    at: &str,
    value: &Value,
    ctx: &MappingContext<'_>,
) -> Value {
    // Valid payloads only reach here, so the time parses.
    let id_text = parse_when(at)
        .map(|w| w.id_text())
        .unwrap_or_else(|_| at.to_owned());
    let id = resource_id(&[
        "phr",
        ctx.client_id,
        ctx.patient_id,
        "vitals",
        &kind.kind,
        &id_text,
    ]);
    let mut meta = Map::new();
    if let Some(profile) = &kind.profile {
        meta.insert("profile".into(), json!([profile]));
    }
    meta.insert("source".into(), Value::String(client_source(ctx.client_id)));
    let codings: Vec<Value> = kind
        .codings
        .iter()
        .chain(&unit.codings)
        .map(|c| c.to_json())
        .collect();
    json!({
        "resourceType": "Observation",
        "id": id,
        "meta": meta,
        "status": "final",
        "category": kind.categories.iter().map(|c| json!({"coding": [c.to_json()]})).collect::<Vec<_>>(),
        "code": {"coding": codings, "text": kind.label},
        "subject": {"reference": format!("Patient/{}", ctx.patient_id)},
        "effectiveDateTime": fhir_date_time(at),
        "valueQuantity": {"value": value, "unit": unit.display, "system": UCUM, "code": unit.ucum},
    })
}

/// One Observation per point, in payload order.
pub(crate) fn to_fhir(tables: &Tables, payload: &Value, ctx: &MappingContext<'_>) -> Vec<Value> {
    let mut out = Vec::new();
    for series in payload["series"].as_array().into_iter().flatten() {
        let (Some(kind), Some(unit)) = (
            series["kind"].as_str().and_then(|k| tables.vital_kind(k)),
            series["unit"].as_str(),
        ) else {
            continue;
        };
        let Some(unit) = kind.unit(unit) else {
            continue;
        };
        for point in series["points"].as_array().into_iter().flatten() {
            let at = point["at"].as_str().unwrap_or_default();
            out.push(observation(kind, unit, at, &point["value"], ctx));
        }
    }
    out
}

/// Series ordered by kind (table order) and unit (table order), points by time.
fn assemble(
    tables: &Tables,
    person: &str,
    mut points: Vec<(usize, usize, i128, String, Value)>,
) -> Value {
    points.sort_by(|a, b| (a.0, a.1, a.2, &a.3).cmp(&(b.0, b.1, b.2, &b.3)));
    let mut series: Vec<Value> = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for (k, u, _, at, value) in points {
        if current != Some((k, u)) {
            let kind = &tables.vital_kinds[k];
            series.push(json!({"kind": kind.kind, "unit": kind.units[u].unit, "points": []}));
            current = Some((k, u));
        }
        if let Some(Value::Array(list)) = series.last_mut().and_then(|s| s.get_mut("points")) {
            list.push(json!({"at": at, "value": value}));
        }
    }
    json!({"personId": person, "series": series})
}

/// Where a point sits: (kind index, unit index).
fn locate(tables: &Tables, kind: &str, unit: &str) -> Option<(usize, usize)> {
    let k = tables.vital_kinds.iter().position(|v| v.kind == kind)?;
    let u = tables.vital_kinds[k]
        .units
        .iter()
        .position(|v| v.unit == unit)?;
    Some((k, u))
}

pub(crate) fn normalise(tables: &Tables, payload: &Value) -> Value {
    let mut points = Vec::new();
    for series in payload["series"].as_array().into_iter().flatten() {
        let Some((k, u)) = locate(
            tables,
            series["kind"].as_str().unwrap_or_default(),
            series["unit"].as_str().unwrap_or_default(),
        ) else {
            continue;
        };
        for point in series["points"].as_array().into_iter().flatten() {
            let at = fhir_date_time(point["at"].as_str().unwrap_or_default());
            let key = parse_when(&at).map(|w| w.key()).unwrap_or_default();
            points.push((k, u, key, at, point["value"].clone()));
        }
    }
    assemble(
        tables,
        payload["personId"].as_str().unwrap_or_default(),
        points,
    )
}

/// Which kind and unit an Observation is: a kind coding in `code`, a unit's UCUM code.
fn recognise(tables: &Tables, observation: &Value) -> Option<(usize, usize)> {
    let codings = observation.pointer("/code/coding")?.as_array()?;
    let ucum = observation.pointer("/valueQuantity/code")?.as_str()?;
    let k = tables.vital_kinds.iter().position(|kind| {
        kind.codings.iter().any(|c| {
            codings.iter().any(|have| {
                have["system"].as_str() == Some(c.system.as_str())
                    && have["code"].as_str() == Some(c.code.as_str())
            })
        })
    })?;
    let u = tables.vital_kinds[k]
        .units
        .iter()
        .position(|u| u.ucum == ucum)?;
    Some((k, u))
}

pub(crate) fn from_fhir(
    tables: &Tables,
    resources: &[Value],
    ctx: &ReadContext<'_>,
) -> Result<Value, PhrError> {
    let mut points = Vec::new();
    for resource in resources {
        if resource["resourceType"].as_str() != Some("Observation") {
            continue;
        }
        crate::records::check_subject(resource, "/subject/reference", ctx)?;
        if matches!(
            resource["status"].as_str(),
            Some("entered-in-error" | "cancelled")
        ) {
            continue;
        }
        let (Some((k, u)), Some(at), Some(value)) = (
            recognise(tables, resource),
            resource["effectiveDateTime"].as_str(),
            resource.pointer("/valueQuantity/value"),
        ) else {
            continue;
        };
        let key = parse_when(at).map(|w| w.key()).unwrap_or_default();
        points.push((k, u, key, at.to_owned(), value.clone()));
    }
    Ok(assemble(tables, ctx.patient_id, points))
}
