//! The FHIR R4 output `Parameters` resources of `$lookup` and `$validate-code`
//! (hl7.org/fhir/R4/codesystem-operation-lookup.html, valueset-operation-validate-code.html).

use serde_json::{Value, json};

use crate::{Lookup, Validation};

/// The R4 `$lookup` output: `name`, `version`, `display`, then every `designation` and
/// `property` as parts.
pub fn lookup_parameters(lookup: &Lookup) -> Value {
    let mut parameter = vec![json!({"name": "name", "valueString": lookup.name})];
    if let Some(version) = &lookup.version {
        parameter.push(json!({"name": "version", "valueString": version}));
    }
    parameter.push(json!({"name": "display", "valueString": lookup.display}));
    for designation in &lookup.designations {
        let mut part = Vec::new();
        if let Some(language) = &designation.language {
            part.push(json!({"name": "language", "valueCode": language}));
        }
        if let Some(use_) = &designation.use_ {
            part.push(json!({"name": "use", "valueCoding": use_}));
        }
        part.push(json!({"name": "value", "valueString": designation.value}));
        parameter.push(json!({"name": "designation", "part": part}));
    }
    for property in &lookup.properties {
        let (value_name, value) = property.value.to_fhir();
        parameter.push(json!({
            "name": "property",
            "part": [
                {"name": "code", "valueCode": property.code},
                {"name": "value", value_name: value},
            ],
        }));
    }
    json!({"resourceType": "Parameters", "parameter": parameter})
}

/// The R4 `$validate-code` output: `result`, then `message` and `display` when present.
pub fn validate_code_parameters(validation: &Validation) -> Value {
    let mut parameter = vec![json!({"name": "result", "valueBoolean": validation.result})];
    if let Some(message) = &validation.message {
        parameter.push(json!({"name": "message", "valueString": message}));
    }
    if let Some(display) = &validation.display {
        parameter.push(json!({"name": "display", "valueString": display}));
    }
    json!({"resourceType": "Parameters", "parameter": parameter})
}
