//! 予診票 (yoshinhyō) answers ↔ a QuestionnaireResponse to the vaccine's form
//! (`profiles/jp/questionnaires`, docs/prevaccination.md).
//!
//! The app writes answers flat, keyed by the form's linkIds; the nesting (groups, follow-up
//! questions under `answer[].item`) comes from the form, so an app never builds a tree.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::ids::{
    client_source, escape_pointer, fhir_date_time, parse_date, parse_when, resource_id,
};
use crate::tables::{Tables, VACCINE_TYPE_SYSTEM};
use crate::{MappingContext, PhrError, ReadContext, SchemaViolation};

/// The extension naming the vaccine a 予診票 response is for: one form serves many vaccines.
pub const VACCINE_TYPE_EXTENSION: &str =
    "https://musubi.example.org/fhir/StructureDefinition/prevaccination-vaccine-type";
const UNIT_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit";

/// One form item, flattened.
struct FormItem<'q> {
    item: &'q Value,
    link_id: &'q str,
    kind: &'q str,
    /// The enclosing item's linkId and whether it is a group.
    parent: Option<(&'q str, bool)>,
    clinic_only: bool,
}

fn index<'q>(
    items: &'q [Value],
    parent: Option<(&'q str, bool)>,
    clinic_only: bool,
    tables: &Tables,
    out: &mut HashMap<&'q str, FormItem<'q>>,
) {
    for item in items {
        let link_id = item["linkId"].as_str().unwrap_or_default();
        let kind = item["type"].as_str().unwrap_or_default();
        let clinic_only = clinic_only || tables.clinic_only.iter().any(|c| c == link_id);
        out.insert(
            link_id,
            FormItem {
                item,
                link_id,
                kind,
                parent,
                clinic_only,
            },
        );
        if let Some(children) = item["item"].as_array() {
            index(
                children,
                Some((link_id, kind == "group")),
                clinic_only,
                tables,
                out,
            );
        }
    }
}

fn pointer(link_id: &str) -> String {
    format!("/answers/{}", escape_pointer(link_id))
}

/// One app value as an answer `value[x]`, or why it does not fit the item.
fn answer(item: &FormItem<'_>, value: &Value) -> Result<Value, String> {
    let kind = item.kind;
    let wrong = || format!("{} expects {}", item.link_id, expected(kind));
    match (kind, value) {
        ("boolean", Value::Bool(_)) => Ok(json!({"valueBoolean": value})),
        ("decimal", Value::Number(_)) => Ok(json!({"valueDecimal": value})),
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Ok(json!({"valueInteger": value}))
        }
        ("date", Value::String(s)) => parse_date(s)
            .map(|_| json!({"valueDate": s}))
            .map_err(|e| format!("{}: {e}", item.link_id)),
        ("dateTime", Value::String(s)) => match parse_when(s) {
            Ok(crate::ids::When::Instant(_)) => Ok(json!({"valueDateTime": fhir_date_time(s)})),
            Ok(_) => Err(format!(
                "{}: a date-time with its time zone is expected",
                item.link_id
            )),
            Err(e) => Err(format!("{}: {e}", item.link_id)),
        },
        ("time", Value::String(s)) => Ok(json!({"valueTime": s})),
        ("string" | "text", Value::String(s)) => Ok(json!({"valueString": s})),
        ("url", Value::String(s)) => Ok(json!({"valueUri": s})),
        ("quantity", Value::Number(_)) => {
            let mut quantity = Map::new();
            quantity.insert("value".into(), value.clone());
            if let Some(unit) = item.item["extension"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["url"].as_str() == Some(UNIT_EXTENSION))
                .map(|e| &e["valueCoding"])
            {
                for (from, to) in [("display", "unit"), ("system", "system"), ("code", "code")] {
                    if let Some(v) = unit.get(from) {
                        quantity.insert(to.into(), v.clone());
                    }
                }
            }
            Ok(json!({"valueQuantity": quantity}))
        }
        ("choice" | "open-choice", Value::String(_) | Value::Number(_)) => {
            let options = item.item["answerOption"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            for option in options {
                if let Some(coding) = option.get("valueCoding")
                    && coding.get("code") == Some(value)
                {
                    return Ok(json!({"valueCoding": coding}));
                }
                for key in ["valueString", "valueInteger", "valueDate", "valueTime"] {
                    if option.get(key) == Some(value) {
                        return Ok(json!({key: value}));
                    }
                }
            }
            if kind == "open-choice" && value.is_string() {
                return Ok(json!({"valueString": value}));
            }
            let choices: Vec<String> = options
                .iter()
                .filter_map(|o| {
                    o.get("valueCoding")
                        .and_then(|c| c.get("code"))
                        .or_else(|| o.get("valueString"))
                        .or_else(|| o.get("valueInteger"))
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                })
                .collect();
            Err(format!(
                "{} must be one of: {}",
                item.link_id,
                choices.join(", ")
            ))
        }
        _ => Err(wrong()),
    }
}

fn expected(kind: &str) -> &'static str {
    match kind {
        "boolean" => "true or false",
        "decimal" | "quantity" => "a number",
        "integer" => "a whole number",
        "date" => "a date (YYYY-MM-DD)",
        "dateTime" => "a date-time with its time zone",
        "choice" => "the code of one of its choices",
        "open-choice" => "one of its choices or free text",
        "string" | "text" | "url" | "time" => "text",
        _ => "no answer from an app",
    }
}

/// The QR items for `items`, in form order; `answers` holds the converted answers by linkId.
fn build(items: &[Value], answers: &HashMap<&str, Vec<Value>>) -> Vec<Value> {
    let mut out = Vec::new();
    for item in items {
        let link_id = item["linkId"].as_str().unwrap_or_default();
        let children = item["item"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let nested = build(children, answers);
        let mut node = Map::new();
        node.insert("linkId".into(), json!(link_id));
        if let Some(text) = item.get("text") {
            node.insert("text".into(), text.clone());
        }
        if item["type"].as_str() == Some("group") {
            if nested.is_empty() {
                continue;
            }
            node.insert("item".into(), Value::Array(nested));
        } else {
            let Some(given) = answers.get(link_id) else {
                continue;
            };
            let mut given = given.clone();
            // Follow-up questions hang under the (first) answer (R4 QuestionnaireResponse.item.answer.item).
            if !nested.is_empty()
                && let Some(Value::Object(first)) = given.first_mut()
            {
                first.insert("item".into(), Value::Array(nested));
            }
            node.insert("answer".into(), Value::Array(given));
        }
        out.push(Value::Object(node));
    }
    out
}

/// The required questions under a required group nobody answered (through nested required
/// groups; follow-ups with enableWhen are due only once their question is answered).
fn required_questions(group: &Value, out: &mut Vec<SchemaViolation>) {
    for item in group["item"].as_array().into_iter().flatten() {
        if item["required"].as_bool() != Some(true) || item.get("enableWhen").is_some() {
            continue;
        }
        let link_id = item["linkId"].as_str().unwrap_or_default();
        if item["type"].as_str() == Some("group") {
            required_questions(item, out);
        } else {
            out.push(SchemaViolation {
                pointer: pointer(link_id),
                message: format!(
                    "required 「{}」 (linkId {link_id}) has no answer",
                    item["text"].as_str().unwrap_or_default()
                ),
            });
        }
    }
}

/// The linkId a `prevaccination` issue is about: the one its diagnostics name, else the last
/// item its expression passes through in `qr`.
fn issue_link_id(qr: &Value, expression: &str, diagnostics: &str) -> Option<String> {
    if let Some(at) = diagnostics.rfind("(linkId ") {
        let rest = &diagnostics[at + "(linkId ".len()..];
        if let Some(end) = rest.find(')') {
            return Some(rest[..end].to_owned());
        }
    }
    let mut node = qr;
    let mut found = None;
    for step in expression.split('.').skip(1) {
        let (name, index) = match step.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (step, None),
        };
        node = match index {
            Some(i) => node.get(name).and_then(|v| v.get(i))?,
            None => node.get(name)?,
        };
        if let Some(link) = node.get("linkId").and_then(Value::as_str) {
            found = Some(link.to_owned());
        }
    }
    found
}

pub(crate) fn to_fhir(
    tables: &Tables,
    forms: &prevaccination::Forms,
    payload: &Value,
    ctx: &MappingContext<'_>,
) -> Result<Vec<Value>, PhrError> {
    let vaccine = payload["vaccineType"].as_str().unwrap_or_default();
    let Some(form) = forms.for_vaccine(vaccine) else {
        return Err(PhrError::Invalid(vec![SchemaViolation {
            pointer: "/vaccineType".into(),
            message: "no 予診票 form is configured for this vaccine type".into(),
        }]));
    };
    let mut items = HashMap::new();
    let roots = form["item"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    index(roots, None, false, tables, &mut items);

    let mut found = Vec::new();
    let mut answers: HashMap<&str, Vec<Value>> = HashMap::new();
    let given = payload["answers"].as_object().cloned().unwrap_or_default();
    for (key, value) in &given {
        let Some(item) = items.get(key.as_str()) else {
            found.push(SchemaViolation {
                pointer: pointer(key),
                message: format!("{key} is not an item of this 予診票"),
            });
            continue;
        };
        if item.clinic_only {
            found.push(SchemaViolation {
                pointer: pointer(key),
                message: format!("{key} is filled in by the clinic, not by the app"),
            });
            continue;
        }
        if matches!(item.kind, "group" | "display") {
            found.push(SchemaViolation {
                pointer: pointer(key),
                message: format!(
                    "{key} is a {} and takes no answer; answer its questions",
                    item.kind
                ),
            });
            continue;
        }
        let values: Vec<&Value> = match value {
            Value::Array(list) if item.item["repeats"].as_bool() == Some(true) => {
                list.iter().collect()
            }
            Value::Array(_) => {
                found.push(SchemaViolation {
                    pointer: pointer(key),
                    message: format!("{key} takes one answer"),
                });
                continue;
            }
            single => vec![single],
        };
        let mut converted = Vec::new();
        for (i, v) in values.iter().enumerate() {
            match answer(item, v) {
                Ok(a) => converted.push(a),
                Err(message) => found.push(SchemaViolation {
                    pointer: if value.is_array() {
                        format!("{}/{i}", pointer(key))
                    } else {
                        pointer(key)
                    },
                    message,
                }),
            }
        }
        answers.insert(item.link_id, converted);
    }
    // A follow-up answered without its question would be lost in the tree; say so instead.
    for (key, _) in &given {
        if let Some(FormItem {
            parent: Some((parent, false)),
            ..
        }) = items.get(key.as_str())
            && !answers.contains_key(parent)
            && answers.contains_key(key.as_str())
        {
            found.push(SchemaViolation {
                pointer: pointer(key),
                message: format!("{key} follows up {parent}, which has no answer"),
            });
        }
    }
    if !found.is_empty() {
        return Err(PhrError::Invalid(
            crate::validate::finish(found).err().unwrap_or_default(),
        ));
    }

    let answered_at = payload["answeredAt"].as_str().unwrap_or_default();
    let when = parse_when(answered_at)
        .map(|w| w.id_text())
        .unwrap_or_default();
    let id = resource_id(&[
        "phr",
        ctx.client_id,
        ctx.patient_id,
        "prevaccination",
        vaccine,
        &when,
    ]);
    let canonical = match (form["url"].as_str(), form["version"].as_str()) {
        (Some(url), Some(version)) => format!("{url}|{version}"),
        (Some(url), None) => url.to_owned(),
        _ => String::new(),
    };
    let mut coding = json!({"system": VACCINE_TYPE_SYSTEM, "code": vaccine});
    if let Some(name) = tables.vaccine_names.get(vaccine) {
        coding["display"] = json!(name);
    }
    let qr = json!({
        "resourceType": "QuestionnaireResponse",
        "id": id,
        "meta": {"source": client_source(ctx.client_id)},
        "extension": [{"url": VACCINE_TYPE_EXTENSION, "valueCoding": coding}],
        "questionnaire": canonical,
        "status": payload.get("status").cloned().unwrap_or(json!("completed")),
        "subject": {"reference": format!("Patient/{}", ctx.patient_id)},
        "authored": fhir_date_time(answered_at),
        "item": build(roots, &answers),
    });
    let mut problems = Vec::new();
    for issue in prevaccination::validate_response(form, &qr) {
        if !matches!(
            issue.severity,
            fhir::validate::Severity::Error | fhir::validate::Severity::Fatal
        ) {
            continue;
        }
        let link_id = issue_link_id(&qr, &issue.expression, &issue.diagnostics);
        match link_id.as_deref().and_then(|l| items.get(l)) {
            // An app cannot answer a group: name the questions that would have filled it.
            Some(group)
                if group.kind == "group" && issue.code == fhir::validate::IssueType::Required =>
            {
                required_questions(group.item, &mut problems);
            }
            _ => problems.push(SchemaViolation {
                pointer: link_id.map_or_else(|| "/answers".to_owned(), |l| pointer(&l)),
                message: issue.diagnostics,
            }),
        }
    }
    match crate::validate::finish(problems) {
        Ok(()) => Ok(vec![qr]),
        Err(problems) => Err(PhrError::Invalid(problems)),
    }
}

fn app_value(answer: &Value) -> Option<Value> {
    let object = answer.as_object()?;
    object.iter().find_map(|(key, value)| match key.as_str() {
        "valueCoding" => value.get("code").cloned(),
        "valueQuantity" => value.get("value").cloned(),
        k if k.starts_with("value") => Some(value.clone()),
        _ => None,
    })
}

fn collect(items: &[Value], out: &mut Map<String, Value>) {
    for item in items {
        let link_id = item["linkId"].as_str().unwrap_or_default();
        let given = item["answer"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let values: Vec<Value> = given.iter().filter_map(app_value).collect();
        match values.len() {
            0 => {}
            1 => {
                out.insert(link_id.into(), values[0].clone());
            }
            _ => {
                out.insert(link_id.into(), Value::Array(values));
            }
        }
        for a in given {
            collect(
                a["item"].as_array().map(Vec::as_slice).unwrap_or_default(),
                out,
            );
        }
        collect(
            item["item"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default(),
            out,
        );
    }
}

pub(crate) fn from_fhir(resources: &[Value], ctx: &ReadContext<'_>) -> Result<Value, PhrError> {
    let responses: Vec<&Value> = resources
        .iter()
        .filter(|r| r["resourceType"].as_str() == Some("QuestionnaireResponse"))
        .collect();
    let [qr] = responses.as_slice() else {
        return Err(PhrError::Resource {
            resource: "QuestionnaireResponse".into(),
            problem: format!("expected exactly one, got {}", responses.len()),
        });
    };
    crate::records::check_subject(qr, "/subject/reference", ctx)?;
    let vaccine = qr["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"].as_str() == Some(VACCINE_TYPE_EXTENSION))
        .and_then(|e| e.pointer("/valueCoding/code"))
        .cloned()
        .ok_or_else(|| PhrError::Resource {
            resource: format!("QuestionnaireResponse/{}", qr["id"].as_str().unwrap_or("?")),
            problem: format!("no {VACCINE_TYPE_EXTENSION} extension, so the vaccine is unknown"),
        })?;
    let mut answers = Map::new();
    collect(
        qr["item"].as_array().map(Vec::as_slice).unwrap_or_default(),
        &mut answers,
    );
    Ok(json!({
        "personId": ctx.patient_id,
        "vaccineType": vaccine,
        "answeredAt": qr["authored"],
        "status": qr["status"],
        "answers": answers,
    }))
}

pub(crate) fn normalise(payload: &Value) -> Value {
    let mut answers = Map::new();
    for (key, value) in payload["answers"].as_object().into_iter().flatten() {
        let value = match value {
            Value::Array(list) if list.len() == 1 => list[0].clone(),
            other => other.clone(),
        };
        answers.insert(key.clone(), value);
    }
    json!({
        "personId": payload["personId"],
        "vaccineType": payload["vaccineType"],
        "answeredAt": fhir_date_time(payload["answeredAt"].as_str().unwrap_or_default()),
        "status": payload.get("status").cloned().unwrap_or(json!("completed")),
        "answers": answers,
    })
}
