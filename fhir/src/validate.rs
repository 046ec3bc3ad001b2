//! Structural validation of resources against the base R4 definitions: unknown elements,
//! JSON shapes, primitive formats, cardinalities and required code bindings (R4 json.html,
//! datatypes.html). Profiles (JP Core) build on top of this.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::definitions::{Definitions, ElementDef, Max};

/// OperationOutcome.issue.severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }

    pub fn is_error(self) -> bool {
        matches!(self, Severity::Fatal | Severity::Error)
    }
}

/// OperationOutcome.issue.code (the IssueType value set), the subset validation produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Structure,
    Required,
    Value,
    CodeInvalid,
    Invalid,
    TooCostly,
    /// A profile invariant (R4 constraint) failed.
    Invariant,
    /// A business rule (e.g. a routine-vaccination interval) is not met.
    BusinessRule,
    /// Advice that is not a problem.
    Informational,
}

impl IssueType {
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::Invalid => "invalid",
            IssueType::TooCostly => "too-costly",
            IssueType::Invariant => "invariant",
            IssueType::BusinessRule => "business-rule",
            IssueType::Informational => "informational",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    /// FHIRPath-style location, e.g. `Patient.name[0].given[1]`.
    pub expression: String,
    pub diagnostics: String,
}

/// Deeper nesting than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

/// Validate a resource (an object with `resourceType`) and return every issue found.
pub fn validate_resource(defs: &Definitions, resource: &Value) -> Vec<Issue> {
    let mut v = Validator {
        defs,
        issues: Vec::new(),
    };
    v.resource(resource, "", 0);
    v.issues
}

struct Validator<'d> {
    defs: &'d Definitions,
    issues: Vec<Issue>,
}

fn error(code: IssueType, expression: String, diagnostics: String) -> Issue {
    Issue {
        severity: Severity::Error,
        code,
        expression,
        diagnostics,
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Validator<'_> {
    fn push(&mut self, code: IssueType, expression: String, diagnostics: String) {
        self.issues.push(error(code, expression, diagnostics));
    }

    /// A resource at `path` (empty for the root; `Patient.contained[0]` for nested ones).
    fn resource(&mut self, value: &Value, path: &str, depth: usize) {
        let Some(object) = value.as_object() else {
            let at = if path.is_empty() {
                "(root)".to_owned()
            } else {
                path.to_owned()
            };
            self.push(
                IssueType::Structure,
                at,
                format!(
                    "a resource must be a JSON object, found {}",
                    json_kind(value)
                ),
            );
            return;
        };
        let resource_type = match object.get("resourceType") {
            Some(Value::String(t)) if self.defs.is_resource_type(t) => t.as_str(),
            Some(Value::String(t)) => {
                self.push(
                    IssueType::Invalid,
                    join(path, "resourceType"),
                    format!("{t:?} is not an R4 resource type"),
                );
                return;
            }
            _ => {
                self.push(
                    IssueType::Required,
                    join(path, "resourceType"),
                    "resourceType is required and must be a string".into(),
                );
                return;
            }
        };
        let base = if path.is_empty() {
            resource_type.to_owned()
        } else {
            path.to_owned()
        };
        let elements = self.defs.elements_of_type(resource_type);
        self.object(object, elements, &base, resource_type, depth + 1, true);
    }

    /// Check one object against its element list.
    fn object(
        &mut self,
        object: &Map<String, Value>,
        elements: &[ElementDef],
        path: &str,
        type_name: &str,
        depth: usize,
        is_resource: bool,
    ) {
        if depth > MAX_DEPTH {
            self.push(
                IssueType::TooCostly,
                path.to_owned(),
                format!("nesting deeper than {MAX_DEPTH} levels is not accepted"),
            );
            return;
        }
        if object.is_empty() {
            self.push(
                IssueType::Structure,
                path.to_owned(),
                "empty objects are not allowed in FHIR JSON".into(),
            );
            return;
        }
        let mut present: HashMap<&str, &str> = HashMap::new();
        for (key, value) in object {
            if key == "resourceType" && is_resource {
                continue;
            }
            let (name, is_extension_key) = match key.strip_prefix('_') {
                Some(n) => (n, true),
                None => (key.as_str(), false),
            };
            let Some(m) = self.defs.match_key(elements, name) else {
                let diagnostics = if key == "resourceType" {
                    format!(
                        "resourceType is only allowed at the start of a resource, not inside {type_name}"
                    )
                } else {
                    format!("unknown element {key:?} in {type_name}")
                };
                self.push(IssueType::Structure, join(path, key), diagnostics);
                continue;
            };
            let element = m.element;
            if element.is_choice {
                if let Some(other) = present.get(element.name.as_str())
                    && *other != key.trim_start_matches('_')
                {
                    self.push(
                        IssueType::Structure,
                        join(path, key),
                        format!(
                            "{}[x] may appear with one type only, found {} and {}",
                            element.name, other, key
                        ),
                    );
                }
                present.insert(&element.name, key.trim_start_matches('_'));
            } else {
                present.insert(&element.name, name);
            }
            let type_code = m.type_code;
            let is_primitive = self.defs.is_primitive(type_code);
            let child_path = join(path, key);
            if is_extension_key {
                if !is_primitive {
                    self.push(
                        IssueType::Structure,
                        child_path,
                        format!("{key:?}: only primitive elements have a '_' extension form"),
                    );
                    continue;
                }
                self.primitive_extensions(value, element.max, &child_path, depth);
                continue;
            }
            self.element_value(value, element, type_code, &child_path, depth);
        }
        // Required elements (min >= 1) must be present, as value or as `_name` extension.
        for element in elements {
            if element.min == 0 {
                continue;
            }
            let found = if element.is_choice {
                present.contains_key(element.name.as_str())
            } else {
                object.contains_key(&element.name)
                    || object.contains_key(&format!("_{}", element.name))
            };
            if !found {
                let shown = if element.is_choice {
                    format!("{}[x]", element.name)
                } else {
                    element.name.clone()
                };
                self.push(
                    IssueType::Required,
                    join(path, &shown),
                    format!(
                        "{} is required (min {}) but missing",
                        join(path, &shown),
                        element.min
                    ),
                );
            } else if element.max == Max::Many && element.min > 1 {
                let count = object
                    .get(&element.name)
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                if count < element.min as usize {
                    self.push(
                        IssueType::Required,
                        join(path, &element.name),
                        format!(
                            "{} needs at least {} items, found {count}",
                            element.name, element.min
                        ),
                    );
                }
            }
        }
    }

    fn element_value(
        &mut self,
        value: &Value,
        element: &ElementDef,
        type_code: &str,
        path: &str,
        depth: usize,
    ) {
        match (element.max, value) {
            (Max::Many, Value::Array(items)) => {
                if items.is_empty() {
                    self.push(
                        IssueType::Structure,
                        path.to_owned(),
                        "empty arrays are not allowed in FHIR JSON".into(),
                    );
                }
                for (i, item) in items.iter().enumerate() {
                    self.single_value(item, element, type_code, &format!("{path}[{i}]"), depth);
                }
            }
            (Max::Many, other) => {
                self.push(
                    IssueType::Structure,
                    path.to_owned(),
                    format!(
                        "{} repeats and must be an array, found {}",
                        element.name,
                        json_kind(other)
                    ),
                );
            }
            (_, Value::Array(_)) => {
                self.push(
                    IssueType::Structure,
                    path.to_owned(),
                    format!(
                        "{} occurs at most once and must not be an array",
                        element.name
                    ),
                );
            }
            (_, item) => self.single_value(item, element, type_code, path, depth),
        }
    }

    fn single_value(
        &mut self,
        value: &Value,
        element: &ElementDef,
        type_code: &str,
        path: &str,
        depth: usize,
    ) {
        if value.is_null() {
            self.push(
                IssueType::Structure,
                path.to_owned(),
                "null is not allowed here".into(),
            );
            return;
        }
        if self.defs.is_primitive(type_code) {
            self.primitive(value, type_code, element, path);
            return;
        }
        // `Resource`, or a concrete resource type such as Bundle.entry.response.outcome's.
        if type_code == "Resource" || self.defs.is_resource_type(type_code) {
            self.resource(value, path, depth);
            return;
        }
        let Some(object) = value.as_object() else {
            self.push(
                IssueType::Structure,
                path.to_owned(),
                format!(
                    "{} must be an object ({type_code}), found {}",
                    element.name,
                    json_kind(value)
                ),
            );
            return;
        };
        let children = if element.children.is_empty() && element.content_ref.is_none() {
            self.defs.elements_of_type(type_code)
        } else {
            self.defs.children_of(element)
        };
        self.object(object, children, path, type_code, depth + 1, false);
    }

    fn primitive(&mut self, value: &Value, type_code: &str, element: &ElementDef, path: &str) {
        let problem = match type_code {
            "boolean" => (!value.is_boolean())
                .then(|| format!("expected true or false, found {}", json_kind(value))),
            "integer" | "positiveInt" | "unsignedInt" => match value.as_number() {
                None => Some(format!(
                    "expected a JSON number ({type_code}), found {}",
                    json_kind(value)
                )),
                Some(n) => {
                    let text = n.to_string();
                    match text.parse::<i64>() {
                        Err(_) => Some(format!("{text} is not an integer")),
                        Ok(i) if i < i64::from(i32::MIN) || i > i64::from(i32::MAX) => {
                            Some(format!("{text} is outside the 32-bit integer range"))
                        }
                        Ok(i) if type_code == "positiveInt" && i < 1 => {
                            Some(format!("{text} is not a positiveInt (>= 1)"))
                        }
                        Ok(i) if type_code == "unsignedInt" && i < 0 => {
                            Some(format!("{text} is not an unsignedInt (>= 0)"))
                        }
                        Ok(_) => None,
                    }
                }
            },
            "decimal" => match value.as_number() {
                None => Some(format!(
                    "expected a JSON number (decimal), found {}",
                    json_kind(value)
                )),
                Some(n) => (!primitive_regex("decimal")
                    .is_some_and(|r| r.is_match(&n.to_string())))
                .then(|| format!("{n} is not a valid decimal")),
            },
            _ => match value.as_str() {
                None => Some(format!(
                    "expected a JSON string ({type_code}), found {}",
                    json_kind(value)
                )),
                Some(text) => string_problem(type_code, text),
            },
        };
        if let Some(problem) = problem {
            self.push(
                IssueType::Value,
                path.to_owned(),
                format!("{path}: {problem}"),
            );
            return;
        }
        if let (Some(codes), Some(text)) = (&element.codes, value.as_str())
            && !codes.iter().any(|c| c == text)
        {
            let shown = if codes.len() <= 12 {
                codes.join(", ")
            } else {
                format!("{}, ... ({} codes)", codes[..12].join(", "), codes.len())
            };
            self.push(
                IssueType::CodeInvalid,
                path.to_owned(),
                format!("{path}: {text:?} is not one of {shown}"),
            );
        }
    }

    /// `_name`: an object (or an array of objects/nulls) with only `id` and `extension`.
    fn primitive_extensions(&mut self, value: &Value, max: Max, path: &str, depth: usize) {
        let items: Vec<(String, &Value)> = match (max, value) {
            (Max::Many, Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{path}[{i}]"), v))
                .collect(),
            (Max::Many, _) => {
                self.push(
                    IssueType::Structure,
                    path.to_owned(),
                    "the extension form of a repeating primitive must be an array".into(),
                );
                return;
            }
            (_, v) => vec![(path.to_owned(), v)],
        };
        let element_defs = self.defs.elements_of_type("Element");
        for (item_path, item) in items {
            match item {
                Value::Null if max == Max::Many => {}
                Value::Object(object) => self.object(
                    object,
                    element_defs,
                    &item_path,
                    "Element",
                    depth + 1,
                    false,
                ),
                other => self.push(
                    IssueType::Structure,
                    item_path,
                    format!(
                        "expected an object holding id/extension, found {}",
                        json_kind(other)
                    ),
                ),
            }
        }
    }
}

fn primitive_regex(type_code: &str) -> Option<&'static Regex> {
    static REGEXES: OnceLock<HashMap<String, Regex>> = OnceLock::new();
    REGEXES
        .get_or_init(|| {
            let defs = Definitions::r4();
            let mut map = HashMap::new();
            for name in [
                "decimal",
                "id",
                "oid",
                "uuid",
                "code",
                "date",
                "dateTime",
                "instant",
                "time",
                "base64Binary",
            ] {
                if let Some(regex) = defs.type_def(name).and_then(|t| t.regex.as_deref())
                    && let Ok(compiled) = Regex::new(&format!("^(?:{regex})$"))
                {
                    map.insert(name.to_owned(), compiled);
                }
            }
            map
        })
        .get(type_code)
}

/// Format problems of string-typed primitives, `None` when valid.
fn string_problem(type_code: &str, text: &str) -> Option<String> {
    if text.is_empty() {
        return Some("empty strings are not allowed in FHIR JSON".into());
    }
    match type_code {
        // R4 string: `[ \r\n\t\S]+` where `\s` is the ASCII whitespace set of the reference
        // validator, so U+3000 (Japanese text) and NBSP are ordinary characters; only vertical
        // tab and form feed are excluded, and a value of nothing but whitespace.
        "string" | "markdown" => {
            if text.chars().all(is_ascii_space) {
                return Some("a string must contain more than whitespace".into());
            }
            text.contains(['\u{0B}', '\u{0C}'])
                .then(|| "vertical tab and form feed are not allowed in strings".into())
        }
        // code: `[^\s]+(\s[^\s]+)*` with ASCII `\s`.
        "code" => {
            let bad = text.starts_with(is_ascii_space)
                || text.ends_with(is_ascii_space)
                || text
                    .as_bytes()
                    .windows(2)
                    .any(|w| w.iter().all(|b| is_ascii_space(*b as char)));
            bad.then(|| {
                format!("{text:?} is not a valid code (no leading, trailing or double spaces)")
            })
        }
        "uri" | "url" | "canonical" => text
            .chars()
            .any(char::is_whitespace)
            .then(|| format!("{text:?} is not a valid {type_code} (contains whitespace)")),
        "xhtml" => (!text.trim_start().starts_with("<div"))
            .then(|| "narrative must be an XHTML <div> element".into()),
        "date" | "dateTime" | "instant" => date_problem(type_code, text),
        _ => match primitive_regex(type_code) {
            Some(regex) if !regex.is_match(text) => {
                Some(format!("{text:?} is not a valid {type_code}"))
            }
            _ => None,
        },
    }
}

fn is_ascii_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{0B}' | '\u{0C}')
}

fn date_problem(type_code: &str, text: &str) -> Option<String> {
    let invalid = || Some(format!("{text:?} is not a valid {type_code}"));
    if !primitive_regex(type_code).is_some_and(|r| r.is_match(text)) {
        return invalid();
    }
    let (date, time) = text.split_once('T').unwrap_or((text, ""));
    let mut parts = date.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    if let (Some(month), Some(day)) = (parts.next(), parts.next()) {
        let month: u8 = month.parse().ok()?;
        let day: u8 = day.parse().ok()?;
        let days = match month {
            2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if day > days {
            return invalid();
        }
    }
    if type_code == "instant"
        && !(time.len() >= 9 && (time.ends_with('Z') || time.contains(['+', '-'])))
    {
        return Some(format!(
            "{text:?} is not a valid instant (seconds and a time zone are required)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issues(resource: Value) -> Vec<Issue> {
        validate_resource(Definitions::r4(), &resource)
    }

    fn assert_issue(resource: Value, expression: &str, needle: &str) {
        let found = issues(resource);
        assert!(
            found
                .iter()
                .any(|i| i.expression == expression && i.diagnostics.contains(needle)),
            "expected an issue at {expression} containing {needle:?}, got {found:#?}"
        );
    }

    #[test]
    fn valid_japanese_patient_passes() {
        let found = issues(json!({
            "resourceType": "Patient", "id": "p1",
            "name": [{"text": "山田　太郎", "family": "山田", "given": ["太郎"]}, {"family": "ﾔﾏﾀﾞ"}],
            "gender": "male", "birthDate": "2024-02-29", "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "x"}]},
            "contained": [{"resourceType": "Organization", "name": "新宿区"}]
        }));
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn structural_errors_are_located() {
        assert_issue(
            json!({"resourceType": "Patient", "foo": 1}),
            "Patient.foo",
            "unknown element",
        );
        assert_issue(
            json!({"resourceType": "Patient", "birthDate": "2020-13-45"}),
            "Patient.birthDate",
            "not a valid date",
        );
        assert_issue(
            json!({"resourceType": "Patient", "birthDate": "2023-02-29"}),
            "Patient.birthDate",
            "not a valid date",
        );
        assert_issue(
            json!({"resourceType": "Patient", "gender": "mail"}),
            "Patient.gender",
            "not one of male",
        );
        assert_issue(
            json!({"resourceType": "Patient", "active": "yes"}),
            "Patient.active",
            "expected true or false",
        );
        assert_issue(
            json!({"resourceType": "Patient", "name": {"family": "x"}}),
            "Patient.name",
            "must be an array",
        );
        assert_issue(
            json!({"resourceType": "Patient", "gender": ["male"]}),
            "Patient.gender",
            "must not be an array",
        );
        assert_issue(
            json!({"resourceType": "Patient", "name": [{"given": ["太郎", ""]}]}),
            "Patient.name[0].given[1]",
            "empty strings",
        );
        assert_issue(
            json!({"resourceType": "Patient", "name": []}),
            "Patient.name",
            "empty arrays",
        );
        assert_issue(
            json!({"resourceType": "Patient", "active": null}),
            "Patient.active",
            "null",
        );
        assert_issue(
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Patient", "birthDate": "x"}]}),
            "Patient.contained[0].birthDate",
            "not a valid date",
        );
        assert_issue(
            json!({"resourceType": "Patient", "meta": {"lastUpdated": "2024-01-01T00:00"}}),
            "Patient.meta.lastUpdated",
            "instant",
        );
    }

    #[test]
    fn required_elements_and_choices() {
        let found = issues(json!({"resourceType": "Immunization", "status": "completed"}));
        for expected in [
            "Immunization.vaccineCode",
            "Immunization.patient",
            "Immunization.occurrence[x]",
        ] {
            assert!(
                found
                    .iter()
                    .any(|i| i.expression == expected && i.code == IssueType::Required),
                "{expected}: {found:#?}"
            );
        }
        assert_issue(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "t"}, "valueString": "a", "valueBoolean": true}),
            "Observation.valueBoolean",
            "one type only",
        );
    }

    #[test]
    fn numbers_and_decimals() {
        let ok: Value = serde_json::from_str(r#"{"resourceType": "Observation", "status": "final", "code": {"text": "t"}, "valueQuantity": {"value": 1.50}}"#).unwrap();
        assert!(issues(ok).is_empty());
        assert_issue(
            json!({"resourceType": "Patient", "multipleBirthInteger": 2147483648i64}),
            "Patient.multipleBirthInteger",
            "32-bit",
        );
        assert_issue(
            json!({"resourceType": "Patient", "multipleBirthInteger": 1.5}),
            "Patient.multipleBirthInteger",
            "not an integer",
        );
    }

    #[test]
    fn bundles_validate_their_entries() {
        assert_issue(
            json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient", "gender": "x"}}]}),
            "Bundle.entry[0].resource.gender",
            "not one of",
        );
    }

    #[test]
    fn depth_bombs_are_refused_not_crashing() {
        let mut ext = json!({"url": "http://x", "valueString": "leaf"});
        for _ in 0..100 {
            ext = json!({"url": "http://x", "extension": [ext]});
        }
        let found = issues(json!({"resourceType": "Patient", "extension": [ext]}));
        assert!(found.iter().any(|i| i.code == IssueType::TooCostly));
    }

    #[test]
    fn non_objects_and_unknown_types() {
        assert!(!issues(json!([1, 2])).is_empty());
        assert_issue(
            json!({"resourceType": "Nonsense"}),
            "resourceType",
            "not an R4 resource type",
        );
    }
}
