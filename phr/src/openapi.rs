//! The OpenAPI document as served: the schema files its `components.schemas` refer to are
//! inlined, so a developer needs this one document only.

use serde_json::Value;

use crate::PhrError;
use crate::tables::Tables;

/// Rewrite the local `$ref`s of a schema that now lives at `#/components/schemas/{name}`.
fn relocate(value: &mut Value, name: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "$ref"
                    && let Value::String(target) = v
                    && let Some(rest) = target.strip_prefix("#/")
                {
                    *target = format!("#/components/schemas/{name}/{rest}");
                } else {
                    relocate(v, name);
                }
            }
        }
        Value::Array(list) => list.iter_mut().for_each(|v| relocate(v, name)),
        _ => {}
    }
}

/// The document with every `{"$ref": "<file>.schema.json"}` under `components.schemas`
/// replaced by that schema (without `$schema` and `$id`, so every reference resolves against
/// the document itself, as OpenAPI tools expect).
pub(crate) fn bundle(tables: &Tables) -> Result<Value, PhrError> {
    let mut doc = tables.openapi.clone();
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return Err(PhrError::Data {
            file: "openapi.json".into(),
            problem: "no components.schemas".into(),
        });
    };
    for (name, schema) in schemas.iter_mut() {
        let Some(file) = schema.get("$ref").and_then(Value::as_str) else {
            continue;
        };
        if file.starts_with('#') {
            continue;
        }
        let Some(mut inlined) = tables.schemas.get(file).cloned() else {
            return Err(PhrError::Data {
                file: "openapi.json".into(),
                problem: format!(
                    "components.schemas.{name} refers to {file:?}, which is not a schema file"
                ),
            });
        };
        if let Some(map) = inlined.as_object_mut() {
            map.remove("$schema");
            map.remove("$id");
        }
        relocate(&mut inlined, name);
        *schema = inlined;
    }
    Ok(doc)
}
