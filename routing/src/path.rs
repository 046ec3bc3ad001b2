//! Element paths in routing predicates: a FHIRPath-shaped subset (`performer.actor`,
//! `extension('https://…').valueReference`) evaluated over JSON resources.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

/// One step of an [`ElementPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// A child element by name; arrays are flattened, as in FHIRPath.
    Child(String),
    /// `extension('url')`: the `extension` elements with that url (FHIRPath's `extension()`).
    Extension(String),
}

/// A parsed element path, relative to the resource root (no leading resource type).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ElementPath {
    text: String,
    steps: Vec<Step>,
}

impl ElementPath {
    /// Parses `a.b.c`, where a step is an element name or `extension('url')`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut steps = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("extension('") {
                let end = after
                    .find("')")
                    .ok_or_else(|| format!("path {text:?}: unterminated extension('…')"))?;
                let url = &after[..end];
                if url.is_empty() {
                    return Err(format!("path {text:?}: extension('') needs a url"));
                }
                steps.push(Step::Extension(url.to_owned()));
                rest = &after[end + 2..];
            } else {
                let end = rest.find('.').unwrap_or(rest.len());
                let name = &rest[..end];
                let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(format!(
                        "path {text:?}: {name:?} is not an element name (lower-case letter, then letters or digits)"
                    ));
                }
                steps.push(Step::Child(name.to_owned()));
                rest = &rest[end..];
            }
            match rest.strip_prefix('.') {
                Some("") => return Err(format!("path {text:?}: ends with '.'")),
                Some(next) => rest = next,
                None if rest.is_empty() => {}
                None => return Err(format!("path {text:?}: expected '.' before {rest:?}")),
            }
        }
        if steps.is_empty() {
            return Err("empty path".to_owned());
        }
        Ok(Self {
            text: text.to_owned(),
            steps,
        })
    }

    /// The path as written in the data.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Every value the path reaches in `resource`, arrays flattened, in document order.
    pub fn select<'v>(&self, resource: &'v Value) -> Vec<&'v Value> {
        let mut nodes = vec![resource];
        for step in &self.steps {
            let mut next = Vec::new();
            for node in nodes {
                match step {
                    Step::Child(name) => push_flat(&mut next, node.get(name)),
                    Step::Extension(url) => {
                        let Some(Value::Array(extensions)) = node.get("extension") else {
                            continue;
                        };
                        next.extend(
                            extensions
                                .iter()
                                .filter(|e| e.get("url").and_then(Value::as_str) == Some(url)),
                        );
                    }
                }
            }
            nodes = next;
        }
        nodes
    }
}

fn push_flat<'v>(out: &mut Vec<&'v Value>, value: Option<&'v Value>) {
    match value {
        Some(Value::Array(items)) => out.extend(items.iter()),
        Some(Value::Null) | None => {}
        Some(other) => out.push(other),
    }
}

impl TryFrom<String> for ElementPath {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl fmt::Display for ElementPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_select_flattened_values_in_document_order() {
        let resource = json!({
            "status": "completed",
            "performer": [
                {"actor": {"reference": "Practitioner/p1"}},
                {"actor": {"reference": "Organization/c1"}}
            ],
            "extension": [
                {"url": "https://example.org/a", "valueReference": {"reference": "Organization/x"}},
                {"url": "https://example.org/b", "valueString": "no"}
            ],
            "note": null
        });
        let cases: &[(&str, Vec<Value>)] = &[
            ("status", vec![json!("completed")]),
            (
                "performer.actor.reference",
                vec![json!("Practitioner/p1"), json!("Organization/c1")],
            ),
            (
                "extension('https://example.org/a').valueReference.reference",
                vec![json!("Organization/x")],
            ),
            ("extension('https://example.org/c').valueString", vec![]),
            ("note", vec![]),
            ("missing.deeper", vec![]),
        ];
        for (text, expected) in cases {
            let path = ElementPath::parse(text).expect(text);
            let got: Vec<Value> = path.select(&resource).into_iter().cloned().collect();
            assert_eq!(&got, expected, "{text}");
            assert_eq!(path.as_str(), *text);
        }
    }

    #[test]
    fn malformed_paths_are_rejected_with_the_reason() {
        let cases = [
            ("", "empty path"),
            ("status.", "ends with '.'"),
            ("Status", "is not an element name"),
            ("a..b", "is not an element name"),
            ("extension('x", "unterminated"),
            ("extension('')", "needs a url"),
            ("extension('u')x", "expected '.'"),
            ("a-b", "is not an element name"),
        ];
        for (text, message) in cases {
            let err = ElementPath::parse(text).expect_err(text);
            assert!(err.contains(message), "{text}: {err}");
        }
    }
}
