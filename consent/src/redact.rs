//! Identity-only redaction: what a recipient may see when a consent allows identity-level
//! sharing only — who the person is and that the record exists, no clinical content.

use serde_json::{Map, Value, json};

use crate::{ConsentError, Policy};

/// The security label put on every redacted resource (v3 ObservationValue `REDACTED`).
const REDACTED: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// The resource cut down to identity level: `resourceType`, `id`, `meta.security` =
/// `REDACTED`, and the top-level elements identity-only.json keeps for its type (for a Patient
/// its identity and contact details; for any other resource its status, its patient reference
/// and its date), in the resource's own order. Everything else is removed, including `text`,
/// extensions and contained resources.
pub fn redact_identity_only(policy: &Policy, resource: &Value) -> Result<Value, ConsentError> {
    let object = resource.as_object().ok_or_else(|| ConsentError::Resource {
        expression: String::new(),
        problem: "not a JSON object".to_owned(),
    })?;
    let kind = object
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| ConsentError::Resource {
            expression: String::new(),
            problem: "no resourceType".to_owned(),
        })?;
    let keep = policy
        .identity_keep
        .get(kind)
        .or_else(|| policy.identity_keep.get("*"))
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = Map::new();
    out.insert("resourceType".into(), kind.into());
    if let Some(id) = object.get("id") {
        out.insert("id".into(), id.clone());
    }
    out.insert(
        "meta".into(),
        json!({"security": [{"system": REDACTED, "code": "REDACTED", "display": "redacted"}]}),
    );
    for (name, value) in object {
        if keep.iter().any(|k| k == name) {
            out.insert(name.clone(), value.clone());
        }
    }
    Ok(Value::Object(out))
}
