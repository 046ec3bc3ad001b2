//! The CapabilityStatement served at `/fhir/metadata`, generated from what is really wired up:
//! the configured resource types and the search parameters the search engine can evaluate.

use serde_json::{Value, json};

use crate::state::AppState;

pub fn capability_statement(state: &AppState, base: &str) -> Value {
    let registry = search::Registry::r4();
    let mut types: Vec<&String> = state.config.fhir.resource_types.iter().collect();
    types.sort();
    let resources: Vec<Value> = types
        .iter()
        .map(|rt| {
            let mut params: Vec<Value> = registry
                .supported(rt)
                .map(|p| {
                    json!({
                        "name": p.code,
                        "definition": p.url,
                        "type": p.kind.code(),
                    })
                })
                .collect();
            params.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            let includes: Vec<String> = registry
                .supported(rt)
                .filter(|p| p.kind == search::ParamKind::Reference)
                .map(|p| format!("{rt}:{}", p.code))
                .collect();
            let mut resource = json!({
                "type": rt,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{rt}"),
                "interaction": [
                    {"code": "read"}, {"code": "vread"}, {"code": "update"}, {"code": "delete"},
                    {"code": "history-instance"}, {"code": "history-type"}, {"code": "create"},
                    {"code": "search-type"}
                ],
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": state.config.fhir.allow_update_create,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchInclude": includes,
                "searchParam": params,
            });
            let mut operations = vec![json!({
                "name": "validate",
                "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
            })];
            for (name, definition) in type_operations(rt) {
                operations.push(json!({"name": name, "definition": definition}));
            }
            resource["operation"] = Value::Array(operations);
            let supported: Vec<&str> = state
                .domain
                .profiles
                .profiles()
                .filter(|p| p.resource_type() == rt.as_str())
                .map(|p| p.url())
                .collect();
            if !supported.is_empty() {
                resource["supportedProfile"] = json!(supported);
            }
            if includes_is_empty(&resource) {
                resource
                    .as_object_mut()
                    .map(|o| o.shift_remove("searchInclude"));
            }
            resource
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": state.started_at,
        "publisher": "Musubi",
        "kind": "instance",
        "software": {"name": "Musubi", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Musubi FHIR R4 gateway", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json", "application/fhir+xml"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": false,
                "service": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR"
                }]}],
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [
                        {"url": "token", "valueUri": format!("{}/oauth/token", state.access.public_base)},
                        {"url": "authorize", "valueUri": format!("{}/oauth/authorize", state.access.public_base)},
                        {"url": "revoke", "valueUri": format!("{}/oauth/revoke", state.access.public_base)},
                        {"url": "introspect", "valueUri": format!("{}/oauth/introspect", state.access.public_base)}
                    ]
                }],
                "description": "OAuth 2.0 bearer tokens (SMART App Launch 2.x, Backend Services); see /.well-known/smart-configuration"
            },
            "resource": resources,
            "interaction": [
                {"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}
            ],
            "operation": [{
                "name": "validate",
                "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"
            }],
            "searchParam": [
                {"name": "_count", "type": "number", "documentation": "page size; default and maximum are configured"},
                {"name": "_offset", "type": "number", "documentation": "index of the first match on the page (used by next/previous links)"},
                {"name": "_sort", "type": "string"},
                {"name": "_include", "type": "special"},
                {"name": "_revinclude", "type": "special"},
                {"name": "_summary", "type": "token", "documentation": "count, data, text"},
                {"name": "_total", "type": "token", "documentation": "none, estimate, accurate (estimate is answered accurately)"}
            ]
        }]
    })
}

/// The type-specific operations (beyond `$validate`) wired in `http.rs`: (name, definition).
/// Musubi's own operations are described in docs/operations.md.
fn type_operations(resource_type: &str) -> &'static [(&'static str, &'static str)] {
    match resource_type {
        "CodeSystem" => &[
            (
                "lookup",
                "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup",
            ),
            (
                "validate-code",
                "http://hl7.org/fhir/OperationDefinition/CodeSystem-validate-code",
            ),
        ],
        "ValueSet" => &[(
            "validate-code",
            "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code",
        )],
        "Patient" => &[(
            "immunization-schedule",
            "https://musubi.example.org/fhir/OperationDefinition/Patient-immunization-schedule",
        )],
        "QuestionnaireResponse" => &[(
            "assess",
            "https://musubi.example.org/fhir/OperationDefinition/QuestionnaireResponse-assess",
        )],
        "Immunization" => &[(
            "from-barcode",
            "https://musubi.example.org/fhir/OperationDefinition/Immunization-from-barcode",
        )],
        _ => &[],
    }
}

fn includes_is_empty(resource: &Value) -> bool {
    resource["searchInclude"]
        .as_array()
        .is_some_and(Vec::is_empty)
}
