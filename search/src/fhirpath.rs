//! The subset of FHIRPath used by the R4 search-parameter expressions: paths over elements
//! (choice elements included), `as`/`ofType`, `where(...)` with `resolve() is X` or a simple
//! equality, `extension('url')`, and unions. Anything else is reported as unsupported so the
//! parameter is left out of the CapabilityStatement instead of silently matching nothing.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// An element; also matches `name[x]` choice keys like `valueQuantity`.
    Child(String),
    /// Keep values of this type (choice suffix or reference target).
    OfType(String),
    /// `where(resolve() is Patient)`: references to this resource type.
    ResolvesTo(String),
    /// `where(path = 'value')`.
    WhereEquals(Vec<String>, String),
    /// `extension('url')`.
    Extension(String),
}

/// A compiled path: the resource type it starts from and its steps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Path {
    pub root: String,
    pub steps: Vec<Step>,
}

/// A node reached by a path: the value and, for choice elements, the type from its key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node<'a> {
    pub value: &'a Value,
    pub type_hint: Option<&'a str>,
}

/// Split on a separator at nesting depth 0 outside quotes.
fn split_top(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == separator && depth == 0 && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn strip_parens(text: &str) -> &str {
    let mut t = text.trim();
    while t.starts_with('(') && t.ends_with(')') && closing_paren(t) == Some(t.len() - 1) {
        t = t[1..t.len() - 1].trim();
    }
    t
}

/// Byte index of the parenthesis closing the one at index 0.
fn closing_paren(text: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The branches of a union expression.
pub(crate) fn union_branches(expression: &str) -> Vec<&str> {
    split_top(expression, '|')
        .into_iter()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect()
}

/// Compile one branch; `None` when it uses FHIRPath beyond the supported subset.
pub(crate) fn compile(branch: &str) -> Option<Path> {
    let branch = strip_parens(branch);
    // Infix `X as T` (only at the end, as the R4 expressions use it).
    let (body, trailing_type) = match split_top(branch, ' ').as_slice() {
        [_] => (branch, None),
        parts if parts.len() == 3 && parts[1] == "as" => (parts[0], Some(parts[2].trim())),
        _ => return None,
    };
    let body = strip_parens(body);
    let segments = split_top(body, '.');
    let (root, rest) = segments.split_first()?;
    if !is_identifier(root) {
        return None;
    }
    let mut steps = Vec::new();
    for segment in rest {
        steps.push(compile_segment(segment.trim())?);
    }
    if let Some(t) = trailing_type {
        if !is_identifier(t) {
            return None;
        }
        steps.push(Step::OfType(t.to_owned()));
    }
    Some(Path {
        root: (*root).to_owned(),
        steps,
    })
}

fn compile_segment(segment: &str) -> Option<Step> {
    if is_identifier(segment) {
        return Some(Step::Child(segment.to_owned()));
    }
    let (name, args) = segment.strip_suffix(')')?.split_once('(')?;
    let args = args.trim();
    match name {
        "as" | "ofType" if is_identifier(args) => Some(Step::OfType(args.to_owned())),
        "extension" => Some(Step::Extension(unquote(args)?.to_owned())),
        "where" => {
            if let Some(target) = args.strip_prefix("resolve() is ") {
                let target = target.trim();
                return is_identifier(target).then(|| Step::ResolvesTo(target.to_owned()));
            }
            let (left, right) = args.split_once('=')?;
            let path: Vec<String> = left.trim().split('.').map(str::to_owned).collect();
            if !path.iter().all(|p| is_identifier(p)) {
                return None;
            }
            Some(Step::WhereEquals(path, unquote(right.trim())?.to_owned()))
        }
        _ => None,
    }
}

fn unquote(text: &str) -> Option<&str> {
    text.strip_prefix('\'')?.strip_suffix('\'')
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Push the children named `name` of `value` (arrays flattened), including choice keys.
fn push_children<'a>(value: &'a Value, name: &str, out: &mut Vec<Node<'a>>) {
    let Some(object) = value.as_object() else {
        return;
    };
    let mut push = |v: &'a Value, hint: Option<&'a str>| match v {
        Value::Array(items) => out.extend(items.iter().map(|i| Node {
            value: i,
            type_hint: hint,
        })),
        v => out.push(Node {
            value: v,
            type_hint: hint,
        }),
    };
    if let Some(v) = object.get(name) {
        push(v, None);
        return;
    }
    for (key, v) in object {
        if let Some(suffix) = key.strip_prefix(name)
            && suffix.starts_with(|c: char| c.is_ascii_uppercase())
        {
            push(v, Some(suffix));
        }
    }
}

fn type_matches(node: &Node<'_>, wanted: &str) -> bool {
    match node.type_hint {
        Some(hint) => hint.eq_ignore_ascii_case(wanted),
        // Without a choice suffix the node's type is the element's own; FHIR types of a
        // non-choice element are fixed, so a type filter on it passes (e.g. `Quantity`).
        None => true,
    }
}

fn reference_type(reference: &str) -> Option<&str> {
    let without_history = reference.split("/_history/").next().unwrap_or(reference);
    let mut parts = without_history.rsplit('/');
    let _id = parts.next()?;
    parts.next()
}

/// Evaluate a path against a resource.
pub(crate) fn evaluate<'a>(path: &Path, resource: &'a Value) -> Vec<Node<'a>> {
    let mut current = vec![Node {
        value: resource,
        type_hint: None,
    }];
    for step in &path.steps {
        let mut next = Vec::new();
        match step {
            Step::Child(name) => {
                for node in &current {
                    push_children(node.value, name, &mut next);
                }
            }
            Step::OfType(t) => next.extend(current.iter().filter(|n| type_matches(n, t)).copied()),
            Step::ResolvesTo(t) => next.extend(current.iter().filter(|n| {
                n.value
                    .get("reference")
                    .and_then(Value::as_str)
                    .and_then(reference_type)
                    .is_some_and(|rt| rt == t)
                    || n.value.get("type").and_then(Value::as_str) == Some(t)
            })),
            Step::WhereEquals(field, expected) => next.extend(current.iter().filter(|n| {
                let mut values = vec![Node {
                    value: n.value,
                    type_hint: None,
                }];
                for f in field {
                    let mut deeper = Vec::new();
                    for v in &values {
                        push_children(v.value, f, &mut deeper);
                    }
                    values = deeper;
                }
                values
                    .iter()
                    .any(|v| v.value.as_str() == Some(expected.as_str()))
            })),
            Step::Extension(url) => {
                for node in &current {
                    if let Some(Value::Array(extensions)) = node.value.get("extension") {
                        next.extend(
                            extensions
                                .iter()
                                .filter(|e| {
                                    e.get("url").and_then(Value::as_str) == Some(url.as_str())
                                })
                                .map(|e| Node {
                                    value: e,
                                    type_hint: None,
                                }),
                        );
                    }
                }
            }
        }
        current = next;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compiles_the_shapes_used_by_r4() {
        assert!(compile("Patient.name").is_some());
        assert_eq!(
            compile("(Observation.value as Quantity)")
                .unwrap()
                .steps
                .last(),
            Some(&Step::OfType("Quantity".into()))
        );
        assert!(compile("Observation.subject.where(resolve() is Patient)").is_some());
        assert!(compile("Patient.telecom.where(system='phone')").is_some());
        assert!(compile("Condition.onset.as(Age)").is_some());
        assert!(compile("Patient.deceased.exists() and Patient.deceased != false").is_none());
        assert_eq!(
            union_branches("A.b | (C.d as E) | F.g.where(x='y|z')").len(),
            3
        );
    }

    #[test]
    fn evaluates_choice_elements_and_filters() {
        let obs = json!({"resourceType": "Observation", "valueQuantity": {"value": 1}, "subject": {"reference": "Patient/p1"}});
        let path = compile("(Observation.value as Quantity)").unwrap();
        assert_eq!(evaluate(&path, &obs).len(), 1);
        let path = compile("(Observation.value as CodeableConcept)").unwrap();
        assert_eq!(evaluate(&path, &obs).len(), 0);
        let path = compile("Observation.subject.where(resolve() is Patient)").unwrap();
        assert_eq!(evaluate(&path, &obs).len(), 1);
        let path = compile("Observation.subject.where(resolve() is Group)").unwrap();
        assert_eq!(evaluate(&path, &obs).len(), 0);
        let p = json!({"telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}]});
        let path = compile("Patient.telecom.where(system='phone')").unwrap();
        assert_eq!(evaluate(&path, &p).len(), 1);
    }
}
