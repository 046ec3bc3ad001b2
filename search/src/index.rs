//! Index values: what a resource contributes to each of its type's search parameters.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::date::parse_date_range;
use crate::fhirpath::{self, Node};
use crate::normalize::normalize_text;
use crate::registry::{ParamDef, ParamKind, Registry};

/// One value of one search parameter of one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub param: String,
    pub value: IndexValue,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IndexValue {
    /// `normalized` for default/contains matching, `exact` for `:exact`.
    String {
        normalized: String,
        exact: String,
    },
    Token {
        system: Option<String>,
        code: String,
        text: Option<String>,
    },
    /// `Type/id` for local references, otherwise the URL/canonical as written.
    Reference(String),
    /// Milliseconds since the epoch, inclusive; open ends are `i64::MIN`/`i64::MAX`.
    Date {
        low: i64,
        high: i64,
    },
    Quantity {
        value: String,
        number: f64,
        system: Option<String>,
        code: Option<String>,
    },
    Number {
        value: String,
        number: f64,
    },
    Uri(String),
}

/// Order-preserving encoding of an f64 (sign bit flipped; negatives inverted).
fn sortable_f64(n: f64) -> [u8; 8] {
    let bits = n.to_bits();
    let flipped = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    flipped.to_be_bytes()
}

fn sortable_i64(n: i64) -> [u8; 8] {
    ((n as u64) ^ (1 << 63)).to_be_bytes()
}

impl IndexValue {
    /// The index-key suffix for this value, ordered like the values themselves; equal prefixes
    /// mean candidate matches (see [`crate::Criterion::seek`]).
    pub fn key_bytes(&self) -> Vec<u8> {
        match self {
            IndexValue::String { normalized, .. } => normalized.as_bytes().to_vec(),
            IndexValue::Token { system, code, .. } => {
                let mut key = code.as_bytes().to_vec();
                key.push(0x1f);
                key.extend_from_slice(system.as_deref().unwrap_or("").as_bytes());
                key
            }
            IndexValue::Reference(r) | IndexValue::Uri(r) => r.as_bytes().to_vec(),
            IndexValue::Date { low, high } => {
                let mut key = sortable_i64(*low).to_vec();
                key.extend_from_slice(&sortable_i64(*high));
                key
            }
            IndexValue::Quantity { number, code, .. } => {
                let mut key = sortable_f64(*number).to_vec();
                key.extend_from_slice(code.as_deref().unwrap_or("").as_bytes());
                key
            }
            IndexValue::Number { number, .. } => sortable_f64(*number).to_vec(),
        }
    }

    /// Whether a search can start from this value in the index: [`crate::Criterion::seek`]
    /// gives index prefixes for strings, URIs, tokens and references only; dates, numbers and
    /// quantities are compared as ranges on each candidate.
    pub fn is_seekable(&self) -> bool {
        match self {
            IndexValue::String { .. }
            | IndexValue::Token { .. }
            | IndexValue::Reference(_)
            | IndexValue::Uri(_) => true,
            IndexValue::Date { .. } | IndexValue::Quantity { .. } | IndexValue::Number { .. } => {
                false
            }
        }
    }
}

/// Every index entry of a resource for the parameters of its type.
pub fn extract(registry: &Registry, resource_type: &str, resource: &Value) -> Vec<IndexEntry> {
    extract_params(registry, resource_type, resource, |_| true)
}

/// The index entries of a resource for the parameters of its type that `wanted` accepts, in
/// the order [`extract`] gives them.
pub fn extract_params(
    registry: &Registry,
    resource_type: &str,
    resource: &Value,
    wanted: impl Fn(&ParamDef) -> bool,
) -> Vec<IndexEntry> {
    let mut entries = Vec::new();
    for param in registry.supported(resource_type).filter(|p| wanted(p)) {
        let before = entries.len();
        for path in &param.paths {
            for node in fhirpath::evaluate(path, resource) {
                values_of(param, node, &mut |value| {
                    entries.push(IndexEntry {
                        param: param.code.clone(),
                        value,
                    })
                });
            }
        }
        // Unions can reach the same value twice (e.g. two branches naming one element).
        let mut seen = Vec::new();
        let mut i = before;
        while i < entries.len() {
            if seen.contains(&entries[i].value) {
                entries.remove(i);
            } else {
                seen.push(entries[i].value.clone());
                i += 1;
            }
        }
    }
    entries
}

fn string_entry(text: &str) -> Option<IndexValue> {
    let normalized = normalize_text(text);
    (!normalized.is_empty()).then(|| IndexValue::String {
        normalized,
        exact: text.to_owned(),
    })
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn strings_of<'a>(value: &'a Value, key: &str) -> Vec<&'a str> {
    match value.get(key) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn values_of(param: &ParamDef, node: Node<'_>, emit: &mut dyn FnMut(IndexValue)) {
    let v = node.value;
    match param.kind {
        ParamKind::String => match v {
            Value::String(s) => emit_opt(string_entry(s), emit),
            Value::Object(_) => {
                let family = strings_of(v, "family");
                let given = strings_of(v, "given");
                for key in [
                    "family",
                    "given",
                    "prefix",
                    "suffix",
                    "text",
                    "line",
                    "city",
                    "district",
                    "state",
                    "postalCode",
                    "country",
                ] {
                    for s in strings_of(v, key) {
                        emit_opt(string_entry(s), emit);
                    }
                }
                // HumanName: the full name in both orders, so "山田太郎" finds family 山田 + given 太郎.
                if !family.is_empty() && !given.is_empty() {
                    let family = family.concat();
                    let given = given.concat();
                    emit_opt(string_entry(&format!("{family}{given}")), emit);
                    emit_opt(string_entry(&format!("{given}{family}")), emit);
                }
            }
            _ => {}
        },
        ParamKind::Token => token_values(v, emit),
        ParamKind::Reference => match v {
            Value::String(s) => emit(IndexValue::Reference(normalize_reference(s))),
            Value::Object(_) => {
                if let Some(r) = str_field(v, "reference") {
                    emit(IndexValue::Reference(normalize_reference(r)));
                }
            }
            _ => {}
        },
        ParamKind::Date => date_values(v, emit),
        ParamKind::Quantity => {
            if let Some(number) = v.get("value").and_then(Value::as_number)
                && let Ok(n) = number.to_string().parse::<f64>()
            {
                emit(IndexValue::Quantity {
                    value: number.to_string(),
                    number: n,
                    system: str_field(v, "system").map(str::to_owned),
                    code: str_field(v, "code")
                        .or_else(|| str_field(v, "unit"))
                        .map(str::to_owned),
                });
            }
        }
        ParamKind::Number => {
            if let Some(number) = v.as_number()
                && let Ok(n) = number.to_string().parse::<f64>()
            {
                emit(IndexValue::Number {
                    value: number.to_string(),
                    number: n,
                });
            }
        }
        ParamKind::Uri => {
            if let Some(s) = v.as_str() {
                emit(IndexValue::Uri(s.to_owned()));
            }
        }
        ParamKind::Composite | ParamKind::Special => {}
    }
}

fn emit_opt(value: Option<IndexValue>, emit: &mut dyn FnMut(IndexValue)) {
    if let Some(value) = value {
        emit(value);
    }
}

fn token_values(v: &Value, emit: &mut dyn FnMut(IndexValue)) {
    match v {
        Value::String(s) => emit(IndexValue::Token {
            system: None,
            code: s.clone(),
            text: None,
        }),
        Value::Bool(b) => emit(IndexValue::Token {
            system: None,
            code: b.to_string(),
            text: None,
        }),
        Value::Object(o) => {
            if let Some(Value::Array(codings)) = o.get("coding") {
                // CodeableConcept: every coding, with the concept's text for `:text`.
                let text = str_field(v, "text");
                for coding in codings {
                    if let Some(code) = str_field(coding, "code") {
                        emit(IndexValue::Token {
                            system: str_field(coding, "system").map(str::to_owned),
                            code: code.to_owned(),
                            text: str_field(coding, "display").or(text).map(str::to_owned),
                        });
                    }
                }
                if codings.is_empty()
                    && let Some(text) = text
                {
                    emit(IndexValue::Token {
                        system: None,
                        code: String::new(),
                        text: Some(text.to_owned()),
                    });
                }
            } else if let Some(code) = str_field(v, "code") {
                // Coding (or Quantity-like objects with a code).
                emit(IndexValue::Token {
                    system: str_field(v, "system").map(str::to_owned),
                    code: code.to_owned(),
                    text: str_field(v, "display").map(str::to_owned),
                });
            } else if let Some(value) = str_field(v, "value") {
                // Identifier (system|value) and ContactPoint (value).
                // A ContactPoint's `system` is a kind (phone, email), not a code system: R4 matches
                // ContactPoint tokens on the value alone.
                const CONTACT_KINDS: [&str; 7] =
                    ["phone", "fax", "email", "pager", "url", "sms", "other"];
                let system = str_field(v, "system")
                    .filter(|s| !CONTACT_KINDS.contains(s))
                    .map(str::to_owned);
                let text = o
                    .get("type")
                    .and_then(|t| str_field(t, "text"))
                    .map(str::to_owned);
                emit(IndexValue::Token {
                    system,
                    code: value.to_owned(),
                    text,
                });
            } else if let Some(Value::String(text)) = o.get("text") {
                emit(IndexValue::Token {
                    system: None,
                    code: String::new(),
                    text: Some(text.clone()),
                });
            }
        }
        _ => {}
    }
}

fn date_values(v: &Value, emit: &mut dyn FnMut(IndexValue)) {
    match v {
        Value::String(s) => {
            if let Some(r) = parse_date_range(s) {
                emit(IndexValue::Date {
                    low: r.low,
                    high: r.high,
                });
            }
        }
        Value::Object(o) => {
            if o.contains_key("start") || o.contains_key("end") {
                let low = str_field(v, "start")
                    .and_then(parse_date_range)
                    .map_or(i64::MIN, |r| r.low);
                let high = str_field(v, "end")
                    .and_then(parse_date_range)
                    .map_or(i64::MAX, |r| r.high);
                emit(IndexValue::Date { low, high });
            } else {
                // Timing: its events.
                for event in strings_of(v, "event") {
                    if let Some(r) = parse_date_range(event) {
                        emit(IndexValue::Date {
                            low: r.low,
                            high: r.high,
                        });
                    }
                }
            }
        }
        _ => {}
    }
}

/// `http://host/fhir/Patient/1/_history/2` → `Patient/1` when it names a resource; otherwise as is.
fn normalize_reference(reference: &str) -> String {
    let without_history = reference.split("/_history/").next().unwrap_or(reference);
    if without_history.starts_with("urn:") || without_history.starts_with('#') {
        return without_history.to_owned();
    }
    let mut parts = without_history.rsplit('/');
    if let (Some(id), Some(rt)) = (parts.next(), parts.next())
        && rt.starts_with(|c: char| c.is_ascii_uppercase())
        && !id.is_empty()
    {
        return format!("{rt}/{id}");
    }
    without_history.to_owned()
}

/// The key to sort a resource by for one parameter: its smallest value ascending, its largest
/// descending. `None` when the resource has no value (such resources sort last).
pub fn sort_key(entries: &[IndexEntry], param: &str, descending: bool) -> Option<Vec<u8>> {
    let keys = entries
        .iter()
        .filter(|e| e.param == param)
        .map(|e| e.value.key_bytes());
    if descending { keys.max() } else { keys.min() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entries_for(rt: &str, resource: Value, param: &str) -> Vec<IndexValue> {
        extract(Registry::r4(), rt, &resource)
            .into_iter()
            .filter(|e| e.param == param)
            .map(|e| e.value)
            .collect()
    }

    #[test]
    fn human_names_index_parts_and_both_orders() {
        let values = entries_for(
            "Patient",
            json!({"resourceType": "Patient", "name": [{"family": "山田", "given": ["太郎"], "text": "山田　太郎"}]}),
            "name",
        );
        let normalized: Vec<String> = values
            .iter()
            .filter_map(|v| match v {
                IndexValue::String { normalized, .. } => Some(normalized.clone()),
                _ => None,
            })
            .collect();
        assert!(normalized.contains(&"山田".to_string()));
        assert!(normalized.contains(&"山田太郎".to_string()));
        assert!(normalized.contains(&"太郎山田".to_string()));
    }

    #[test]
    fn identifiers_references_dates_and_quantities() {
        let imm = json!({"resourceType": "Immunization", "patient": {"reference": "http://example.org/fhir/Patient/p1/_history/3"},
            "occurrenceDateTime": "2024-06-03", "vaccineCode": {"coding": [{"system": "urn:oid:1.2", "code": "2.1"}]}});
        assert_eq!(
            entries_for("Immunization", imm.clone(), "patient"),
            vec![IndexValue::Reference("Patient/p1".into())]
        );
        assert!(matches!(
            entries_for("Immunization", imm.clone(), "date")[0],
            IndexValue::Date { .. }
        ));
        assert_eq!(
            entries_for("Immunization", imm, "vaccine-code"),
            vec![IndexValue::Token {
                system: Some("urn:oid:1.2".into()),
                code: "2.1".into(),
                text: None
            }]
        );
        let obs: Value = serde_json::from_str(r#"{"resourceType": "Observation", "valueQuantity": {"value": 36.50, "system": "http://unitsofmeasure.org", "code": "Cel"}}"#).unwrap();
        match &entries_for("Observation", obs, "value-quantity")[0] {
            IndexValue::Quantity { value, code, .. } => {
                assert_eq!(value, "36.50");
                assert_eq!(code.as_deref(), Some("Cel"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn extracting_some_parameters_gives_their_entries_of_all() {
        let event = json!({"resourceType": "AuditEvent", "id": "a1", "action": "R",
            "recorded": "2025-05-01T10:00:00Z", "source": {"site": "Musubi"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
            "entity": [{"what": {"reference": "Patient/p1"}}, {"what": {"reference": "Immunization/i1"}}]});
        let all = extract(Registry::r4(), "AuditEvent", &event);
        let wanted = ["entity", "patient", "site"];
        let some = extract_params(Registry::r4(), "AuditEvent", &event, |p| {
            wanted.contains(&p.code.as_str())
        });
        let expected: Vec<IndexEntry> = all
            .into_iter()
            .filter(|e| wanted.contains(&e.param.as_str()))
            .collect();
        assert_eq!(some.len(), 4);
        assert_eq!(some, expected);
    }

    #[test]
    fn sortable_encodings_keep_order() {
        let nums = [-10.5, -1.0, 0.0, 0.5, 3.0, 1e9];
        for pair in nums.windows(2) {
            assert!(sortable_f64(pair[0]) < sortable_f64(pair[1]), "{pair:?}");
        }
        assert!(sortable_i64(-5) < sortable_i64(3));
        assert!(sortable_i64(i64::MIN) < sortable_i64(i64::MAX));
    }
}
