//! Payload validation: the JSON Schema, then the rules a schema cannot express, each problem
//! located by a JSON pointer into the payload.

use std::cmp::Ordering;
use std::collections::HashMap;

use fhir::validate::{Issue, IssueType, Severity};
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::Kind;
use crate::ids::{check_partial_date, escape_pointer, parse_date, parse_when};
use crate::tables::Tables;

/// At most this many violations are reported; the last one then says how many were left out,
/// so a year of bad points cannot produce a huge error body.
pub const MAX_VIOLATIONS: usize = 100;

/// One problem in a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// JSON pointer (RFC 6901) into the payload; `""` is the whole payload.
    pub pointer: String,
    /// What is wrong, without echoing the value (it may be personal data).
    pub message: String,
}

impl SchemaViolation {
    fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        SchemaViolation {
            pointer: pointer.into(),
            message: message.into(),
        }
    }

    /// As the workspace's validation issue, so the gateway renders it into an OperationOutcome
    /// like every other issue; `expression` carries the JSON pointer.
    pub fn to_issue(&self) -> Issue {
        Issue {
            severity: Severity::Error,
            code: if self.message.contains("required") {
                IssueType::Required
            } else {
                IssueType::Value
            },
            expression: self.pointer.clone(),
            diagnostics: self.message.clone(),
        }
    }
}

/// Pointer order: segment by segment, numbers as numbers (`/points/2` before `/points/10`).
fn compare_pointers(a: &str, b: &str) -> Ordering {
    let mut left = a.split('/');
    let mut right = b.split('/');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// Sort, de-duplicate and cap.
pub(crate) fn finish(mut found: Vec<SchemaViolation>) -> Result<(), Vec<SchemaViolation>> {
    if found.is_empty() {
        return Ok(());
    }
    found.sort_by(|a, b| compare_pointers(&a.pointer, &b.pointer).then(a.message.cmp(&b.message)));
    found.dedup();
    if found.len() > MAX_VIOLATIONS {
        let left_out = found.len() - (MAX_VIOLATIONS - 1);
        found.truncate(MAX_VIOLATIONS - 1);
        found.push(SchemaViolation::new(
            "",
            format!("{left_out} more problem(s) not listed"),
        ));
    }
    Err(found)
}

/// The schema's findings. `required` and `additionalProperties` point at the property itself,
/// not at the object holding it.
pub(crate) fn schema_violations(
    validator: &jsonschema::Validator,
    payload: &Value,
) -> Vec<SchemaViolation> {
    let mut found = Vec::new();
    for error in validator.iter_errors(payload) {
        let at = error.instance_path().as_str().to_owned();
        match error.kind() {
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                found.push(SchemaViolation::new(
                    format!("{at}/{}", escape_pointer(name)),
                    format!("{name:?} is required"),
                ));
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    found.push(SchemaViolation::new(
                        format!("{at}/{}", escape_pointer(name)),
                        format!("{name:?} is not a known property here"),
                    ));
                }
            }
            _ => found.push(SchemaViolation::new(at, error.masked().to_string())),
        }
    }
    found
}

fn str_at<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(Value::as_str)
}

fn items<'v>(value: &'v Value, key: &str) -> &'v [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Rules beyond the schema; only run on a payload that passed the schema, so shapes are known.
pub(crate) fn semantic_violations(
    tables: &Tables,
    kind: Kind,
    payload: &Value,
) -> Vec<SchemaViolation> {
    let mut found = Vec::new();
    match kind {
        Kind::Prevaccination => {
            if let Some(at) = str_at(payload, "answeredAt")
                && let Err(e) = parse_when(at)
            {
                found.push(SchemaViolation::new("/answeredAt", e));
            }
        }
        Kind::Vitals => vitals(tables, payload, &mut found),
        Kind::Conditions | Kind::Medications | Kind::Allergies => {
            records(tables, kind, payload, &mut found);
        }
        Kind::Vaccinations => {
            for (i, v) in items(payload, "vaccinations").iter().enumerate() {
                dates(v, &format!("/vaccinations/{i}"), &["date"], &mut found);
                if let Some(d) = str_at(v, "nextDueDate")
                    && let Err(e) = parse_date(d)
                {
                    found.push(SchemaViolation::new(
                        format!("/vaccinations/{i}/nextDueDate"),
                        e,
                    ));
                }
            }
        }
        Kind::Schedule => {
            if let Some(d) = str_at(payload, "asOf")
                && let Err(e) = parse_date(d)
            {
                found.push(SchemaViolation::new("/asOf", e));
            }
            for (i, r) in items(payload, "recommendations").iter().enumerate() {
                for field in ["earliestDate", "dueDate", "overdueDate", "latestDate"] {
                    if let Some(d) = str_at(r, field)
                        && let Err(e) = parse_date(d)
                    {
                        found.push(SchemaViolation::new(
                            format!("/recommendations/{i}/{field}"),
                            e,
                        ));
                    }
                }
            }
        }
    }
    found
}

fn vitals(tables: &Tables, payload: &Value, found: &mut Vec<SchemaViolation>) {
    // (kind, instant) → where it was first seen: the same point twice would get one id.
    let mut seen: HashMap<(String, i128), String> = HashMap::new();
    for (s, series) in items(payload, "series").iter().enumerate() {
        let kind_name = str_at(series, "kind").unwrap_or_default();
        let unit_name = str_at(series, "unit").unwrap_or_default();
        let Some(kind) = tables.vital_kind(kind_name) else {
            found.push(SchemaViolation::new(
                format!("/series/{s}/kind"),
                "unknown vital kind",
            ));
            continue;
        };
        let Some(unit) = kind.unit(unit_name) else {
            let allowed: Vec<&str> = kind.units.iter().map(|u| u.unit.as_str()).collect();
            found.push(SchemaViolation::new(
                format!("/series/{s}/unit"),
                format!("{kind_name} is sent in {}", allowed.join(" or ")),
            ));
            continue;
        };
        for (p, point) in items(series, "points").iter().enumerate() {
            let here = format!("/series/{s}/points/{p}");
            match str_at(point, "at").map(parse_when) {
                Some(Ok(when)) => {
                    let key = (kind_name.to_owned(), when.key());
                    if let Some(first) = seen.get(&key) {
                        found.push(SchemaViolation::new(
                            format!("{here}/at"),
                            format!("a second {kind_name} value for the same time as {first}"),
                        ));
                    } else {
                        seen.insert(key, here.clone());
                    }
                }
                Some(Err(e)) => found.push(SchemaViolation::new(format!("{here}/at"), e)),
                None => {}
            }
            let Some(Value::Number(number)) = point.get("value") else {
                continue;
            };
            if unit.integer && !(number.is_u64() || number.is_i64()) {
                found.push(SchemaViolation::new(
                    format!("{here}/value"),
                    format!("{kind_name} in {unit_name} must be a whole number"),
                ));
            }
            match number.as_f64() {
                Some(v) if v >= unit.min && v <= unit.max => {}
                _ => found.push(SchemaViolation::new(
                    format!("{here}/value"),
                    format!(
                        "{kind_name} must be between {} and {} {}",
                        unit.min, unit.max, unit.display
                    ),
                )),
            }
        }
    }
}

fn dates(item: &Value, here: &str, fields: &[&str], found: &mut Vec<SchemaViolation>) {
    for field in fields {
        if let Some(text) = str_at(item, field)
            && let Err(e) = check_partial_date(text)
        {
            found.push(SchemaViolation::new(format!("{here}/{field}"), e));
        }
    }
}

/// Partial dates compare as text on their common prefix: `2019-04` is not after `2019`.
fn after(later: &str, earlier: &str) -> bool {
    let n = later.len().min(earlier.len());
    later[..n] >= earlier[..n]
}

fn records(tables: &Tables, kind: Kind, payload: &Value, found: &mut Vec<SchemaViolation>) {
    let list = kind.name();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, item) in items(payload, list).iter().enumerate() {
        let here = format!("/{list}/{i}");
        if let Some(id) = str_at(item, "recordId") {
            if let Some(first) = seen.get(id) {
                found.push(SchemaViolation::new(
                    format!("{here}/recordId"),
                    format!("the same recordId as /{list}/{first}"),
                ));
            } else {
                seen.insert(id, i);
            }
        }
        if let Some(system) = item.pointer("/code/system").and_then(Value::as_str)
            && tables.alias(system, list).is_none()
        {
            found.push(SchemaViolation::new(
                format!("{here}/code/system"),
                format!("not a code system for {list}"),
            ));
        }
        let (from, to) = match kind {
            Kind::Medications => ("start", "end"),
            Kind::Conditions => ("onset", "abatement"),
            _ => ("onset", ""),
        };
        let before = found.len();
        dates(item, &here, &[from, to], found);
        if found.len() == before
            && let (Some(a), Some(b)) = (str_at(item, from), str_at(item, to))
            && !after(b, a)
        {
            found.push(SchemaViolation::new(
                format!("{here}/{to}"),
                format!("{to} is before {from}"),
            ));
        }
        // R4 con-4: an abated condition is inactive, in remission or resolved.
        if kind == Kind::Conditions
            && item.get("abatement").is_some()
            && let Some(status) = str_at(item, "status")
            && !matches!(status, "inactive" | "remission" | "resolved")
        {
            found.push(SchemaViolation::new(
                format!("{here}/status"),
                "a condition with an abatement date must be inactive, remission or resolved",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_sort_numerically_and_the_count_is_capped() {
        let many: Vec<SchemaViolation> = (0..150)
            .rev()
            .map(|i| SchemaViolation::new(format!("/series/0/points/{i}/value"), "bad"))
            .collect();
        let found = finish(many).unwrap_err();
        assert_eq!(found.len(), MAX_VIOLATIONS);
        assert_eq!(found[0].pointer, "/series/0/points/0/value");
        assert_eq!(found[2].pointer, "/series/0/points/2/value");
        assert_eq!(found[10].pointer, "/series/0/points/10/value");
        assert_eq!(found[99].pointer, "");
        assert_eq!(found[99].message, "51 more problem(s) not listed");
        assert_eq!(finish(Vec::new()), Ok(()));
    }

    #[test]
    fn violations_become_issues_with_the_pointer() {
        let issue = SchemaViolation::new("/answers/x", "\"x\" is required").to_issue();
        assert_eq!(issue.expression, "/answers/x");
        assert_eq!(issue.code, IssueType::Required);
        assert_eq!(issue.severity, Severity::Error);
    }
}
