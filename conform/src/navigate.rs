//! Walking resource JSON along compiled paths, keeping a FHIRPath-style expression with indexes
//! (`Patient.identifier[1].value`) for every value reached.

use serde_json::Value;

use crate::profile::Seg;

/// A value inside the resource and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Node<'v> {
    pub value: &'v Value,
    pub expr: String,
    /// For values reached through a choice element: the type named by the key (`valueDate` → `date`).
    pub choice_type: Option<String>,
}

impl<'v> Node<'v> {
    pub fn root(value: &'v Value, resource_type: &str) -> Self {
        Node {
            value,
            expr: resource_type.to_owned(),
            choice_type: None,
        }
    }
}

/// `dateTime` → `DateTime`: choice keys capitalise the first letter of the type only.
pub(crate) fn capitalise(type_code: &str) -> String {
    let mut chars = type_code.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The JSON keys of `object` that a segment matches, with the chosen type for choice elements.
fn matching_keys<'v>(
    object: &'v serde_json::Map<String, Value>,
    seg: &Seg,
) -> Vec<(&'v str, &'v Value, Option<String>)> {
    match &seg.choice {
        None => object
            .get_key_value(seg.name.as_str())
            .map(|(k, v)| vec![(k.as_str(), v, None)])
            .unwrap_or_default(),
        Some(types) => object
            .iter()
            .filter_map(|(key, value)| {
                let suffix = key.strip_prefix(seg.name.as_str())?;
                let chosen = types.iter().find(|t| capitalise(t) == suffix)?;
                Some((key.as_str(), value, Some(chosen.clone())))
            })
            .collect(),
    }
}

/// The values one step below `node`.
pub(crate) fn step<'v>(node: &Node<'v>, seg: &Seg) -> Vec<Node<'v>> {
    let Some(object) = node.value.as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value, choice_type) in matching_keys(object, seg) {
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    out.push(Node {
                        value: item,
                        expr: format!("{}.{key}[{i}]", node.expr),
                        choice_type: choice_type.clone(),
                    });
                }
            }
            _ => out.push(Node {
                value,
                expr: format!("{}.{key}", node.expr),
                choice_type,
            }),
        }
    }
    out
}

/// The values at the end of `segs`, starting from `start`.
pub(crate) fn navigate<'v>(start: &Node<'v>, segs: &[Seg]) -> Vec<Node<'v>> {
    let mut current = vec![start.clone()];
    for seg in segs {
        current = current.iter().flat_map(|n| step(n, seg)).collect();
        if current.is_empty() {
            break;
        }
    }
    current
}

/// How many repetitions of the element `seg` names are present in `node`. A primitive present
/// only through its `_name` extension object counts as present (R4 json.html).
pub(crate) fn count(node: &Node<'_>, seg: &Seg) -> usize {
    let Some(object) = node.value.as_object() else {
        return 0;
    };
    let size = |v: &Value| match v {
        Value::Array(items) => items.len(),
        Value::Null => 0,
        _ => 1,
    };
    let mut total = 0;
    for (key, value, _) in matching_keys(object, seg) {
        let extension_part = object.get(&format!("_{key}")).map_or(0, size);
        total += size(value).max(extension_part);
    }
    if seg.choice.is_none() && !object.contains_key(seg.name.as_str()) {
        total += object.get(&format!("_{}", seg.name)).map_or(0, size);
    }
    total
}

/// The expression naming an element of `node` (used where the element is missing).
pub(crate) fn child_expr(node: &Node<'_>, seg: &Seg) -> String {
    format!("{}.{}", node.expr, seg.name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn seg(name: &str) -> Seg {
        Seg {
            name: name.to_owned(),
            choice: None,
        }
    }

    fn choice(name: &str, types: &[&str]) -> Seg {
        Seg {
            name: name.to_owned(),
            choice: Some(types.iter().map(|t| (*t).to_owned()).collect()),
        }
    }

    #[test]
    fn expressions_carry_indexes_for_arrays_only() {
        let patient = json!({"identifier": [{"value": "1"}, {"system": "s", "value": "2"}], "gender": "female"});
        let root = Node::root(&patient, "Patient");
        let values: Vec<String> = navigate(&root, &[seg("identifier"), seg("value")])
            .into_iter()
            .map(|n| n.expr)
            .collect();
        assert_eq!(
            values,
            ["Patient.identifier[0].value", "Patient.identifier[1].value"]
        );
        assert_eq!(navigate(&root, &[seg("gender")])[0].expr, "Patient.gender");
        assert!(navigate(&root, &[seg("name"), seg("family")]).is_empty());
    }

    #[test]
    fn choice_keys_resolve_to_their_type() {
        let extension = json!({"url": "u", "valueDateTime": "2024-01-01T00:00:00Z"});
        let root = Node::root(&extension, "Extension");
        let found = navigate(&root, &[choice("value", &["date", "dateTime", "Period"])]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].expr, "Extension.valueDateTime");
        assert_eq!(found[0].choice_type.as_deref(), Some("dateTime"));
        // A key naming no allowed type is not this element (base validation reports it).
        let odd = json!({"valueFoo": 1});
        assert!(
            navigate(
                &Node::root(&odd, "Extension"),
                &[choice("value", &["date"])]
            )
            .is_empty()
        );
    }

    #[test]
    fn counts_include_extension_only_primitives() {
        let cases = [
            (json!({}), 0),
            (json!({"given": ["花子"]}), 1),
            (json!({"given": ["花子", "桜"]}), 2),
            (json!({"_given": [null, {"extension": []}]}), 2),
            (json!({"given": ["花子"], "_given": [{"extension": []}]}), 1),
            (json!({"given": null}), 0),
        ];
        for (value, expected) in cases {
            let node = Node::root(&value, "HumanName");
            assert_eq!(count(&node, &seg("given")), expected, "{value}");
        }
    }
}
