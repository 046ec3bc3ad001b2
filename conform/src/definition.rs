//! A minimal R4 StructureDefinition (differential only) rendered from a compiled profile, so the
//! gateway can serve the profiles it enforces (`GET /StructureDefinition/...`).

use serde_json::{Map, Value, json};

use crate::data::Origin;
use crate::navigate::capitalise;
use crate::profile::{Invariant, InvariantCheck, Matcher, Meta, Profile, Rule, Slice};

/// Differential elements by id, in first-seen order (several rules may touch one element).
struct Elements {
    resource_type: String,
    list: Vec<Map<String, Value>>,
}

impl Elements {
    fn get(&mut self, id: &str) -> &mut Map<String, Value> {
        let full_id = if id.is_empty() {
            self.resource_type.clone()
        } else {
            format!("{}.{id}", self.resource_type)
        };
        if let Some(i) = self
            .list
            .iter()
            .position(|e| e.get("id").and_then(Value::as_str) == Some(full_id.as_str()))
        {
            return &mut self.list[i];
        }
        let mut element = Map::new();
        element.insert("id".into(), Value::String(full_id.clone()));
        element.insert("path".into(), Value::String(path_of(&full_id)));
        self.list.push(element);
        self.list.last_mut().expect("just pushed")
    }
}

/// `Organization.identifier:medicalInstitutionCode.value` → `Organization.identifier.value`;
/// a concrete choice key (`valueIdentifier`) stays as written.
fn path_of(id: &str) -> String {
    id.split('.')
        .map(|part| part.split(':').next().unwrap_or(part))
        .collect::<Vec<_>>()
        .join(".")
}

fn comment(meta: &Meta) -> Option<String> {
    let mut parts = Vec::new();
    if meta.origin == Origin::Musubi {
        parts.push("Musubi rule".to_owned());
    }
    if meta.inferred {
        parts.push("inferred".to_owned());
    }
    if let Some(source) = &meta.source {
        parts.push(format!("source: {source}"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn add_rule(elements: &mut Elements, rule: &Rule) {
    let element = elements.get(&rule.id);
    if let Some(min) = rule.min {
        element.insert("min".into(), json!(min));
    }
    if let Some(max) = rule.max {
        element.insert(
            "max".into(),
            json!(max.map_or("*".to_owned(), |m| m.to_string())),
        );
    }
    if let Some(types) = &rule.types {
        let types: Vec<Value> = types.iter().map(|t| json!({"code": t})).collect();
        element.insert("type".into(), Value::Array(types));
    }
    if let Some(targets) = &rule.targets {
        let profiles: Vec<String> = targets
            .iter()
            .map(|t| {
                t.profile.clone().unwrap_or_else(|| {
                    format!(
                        "http://hl7.org/fhir/StructureDefinition/{}",
                        t.resource_type
                    )
                })
            })
            .collect();
        element.insert(
            "type".into(),
            json!([{"code": "Reference", "targetProfile": profiles}]),
        );
    }
    let value_type = match rule.element_types.as_slice() {
        [single] => Some(capitalise(single)),
        _ => None,
    };
    if let (Some(fixed), Some(t)) = (&rule.fixed, &value_type) {
        element.insert(format!("fixed{t}"), fixed.clone());
    }
    if let (Some(pattern), Some(t)) = (&rule.pattern, &value_type) {
        element.insert(format!("pattern{t}"), pattern.clone());
    }
    if let Some(binding) = &rule.binding {
        element.insert(
            "binding".into(),
            json!({"strength": binding.strength.code(), "valueSet": binding.value_set}),
        );
    }
    let mut constraints = Vec::new();
    if let Some(format) = &rule.format {
        constraints.push(json!({
            "key": format!("musubi-format-{format}"),
            "severity": rule.meta.severity.code(),
            "human": format!("The value is a valid {format} (checked by the server)"),
        }));
    }
    if let Some(regex) = &rule.regex {
        constraints.push(json!({
            "key": "musubi-regex",
            "severity": rule.meta.severity.code(),
            "human": format!("The value matches {}", regex.as_str()),
            "expression": format!("matches('{}')", regex.as_str().replace('\'', "\\'")),
        }));
    }
    if !constraints.is_empty() {
        push_constraints(element, constraints);
    }
    if let Some(text) = comment(&rule.meta) {
        element.insert("comment".into(), Value::String(text));
    }
    if !rule.slices.is_empty() {
        let discriminator = match &rule.slices[0].matcher {
            Matcher::Url(_) => "url".to_owned(),
            Matcher::System(_) => "system".to_owned(),
            // JP Core discriminates qualification by `code` and category by `coding.system`.
            Matcher::Coding { path_text, .. } => path_text
                .clone()
                .unwrap_or_else(|| "coding.system".to_owned()),
        };
        element.insert(
            "slicing".into(),
            json!({"discriminator": [{"type": "value", "path": discriminator}], "rules": "open"}),
        );
        for slice in &rule.slices {
            add_slice(elements, slice);
        }
    }
}

fn add_slice(elements: &mut Elements, slice: &Slice) {
    let element = elements.get(&slice.id);
    element.insert("sliceName".into(), Value::String(slice.name.clone()));
    element.insert("min".into(), json!(slice.min));
    element.insert(
        "max".into(),
        json!(slice.max.map_or("*".to_owned(), |m| m.to_string())),
    );
    if let Matcher::Url(url) = &slice.matcher {
        element.insert(
            "type".into(),
            json!([{"code": "Extension", "profile": [url]}]),
        );
    }
    if let Some(text) = comment(&slice.meta) {
        element.insert("comment".into(), Value::String(text));
    }
    match &slice.matcher {
        Matcher::System(system) => {
            let id = format!("{}.system", slice.id);
            let child = elements.get(&id);
            child.insert("min".into(), json!(1));
            child.insert("fixedUri".into(), Value::String(system.clone()));
        }
        Matcher::Coding {
            path_text,
            system,
            code,
            ..
        } => {
            let mut coding = Map::new();
            coding.insert("system".into(), Value::String(system.clone()));
            if let Some(code) = code {
                coding.insert("code".into(), Value::String(code.clone()));
            }
            let id = match path_text {
                Some(p) => format!("{}.{p}", slice.id),
                None => slice.id.clone(),
            };
            elements
                .get(&id)
                .entry("patternCodeableConcept")
                .or_insert_with(|| json!({"coding": [coding]}));
        }
        Matcher::Url(_) => {}
    }
    for rule in &slice.rules {
        add_rule(elements, rule);
    }
}

fn push_constraints(element: &mut Map<String, Value>, constraints: Vec<Value>) {
    let list = element
        .entry("constraint")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(items) = list {
        items.extend(constraints);
    }
}

fn add_invariant(elements: &mut Elements, invariant: &Invariant) {
    let expression = match &invariant.check {
        InvariantCheck::Regex(regex) => {
            format!("matches('{}')", regex.as_str().replace('\'', "\\'"))
        }
        InvariantCheck::AnyOf(paths) => paths
            .iter()
            .map(|(p, _)| format!("{p}.exists()"))
            .collect::<Vec<_>>()
            .join(" or "),
    };
    let element = elements.get(&invariant.id);
    push_constraints(
        element,
        vec![json!({
            "key": invariant.key,
            "severity": invariant.meta.severity.code(),
            "human": invariant.human,
            "expression": expression,
        })],
    );
}

impl Profile {
    /// A minimal R4 StructureDefinition (differential) for this profile, so the gateway can
    /// serve it. Musubi-only and inferred rules say so in `comment`.
    pub fn to_structure_definition(&self) -> Value {
        let mut elements = Elements {
            resource_type: self.resource_type.clone(),
            list: Vec::new(),
        };
        elements.get("");
        for rule in &self.rules {
            add_rule(&mut elements, rule);
        }
        for invariant in &self.invariants {
            add_invariant(&mut elements, invariant);
        }
        let id = self.name.to_ascii_lowercase().replace('_', "-");
        let mut sd = json!({
            "resourceType": "StructureDefinition",
            "id": id,
            "url": self.url,
            "version": self.version,
            "name": self.name,
            "status": if self.inferred { "draft" } else { "active" },
            "fhirVersion": "4.0.1",
            "kind": "resource",
            "abstract": false,
            "type": self.resource_type,
            "baseDefinition": self.base_definition,
            "derivation": "constraint",
        });
        let object = sd.as_object_mut().expect("built as an object");
        if let Some(title) = &self.title {
            object.insert("title".into(), Value::String(title.clone()));
        }
        let mut description = self.description.clone().unwrap_or_default();
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&format!("Source: {}", self.source));
        if self.inferred {
            description.push_str("\n\nInferred design, not a published profile.");
        }
        for note in &self.notes {
            description.push_str("\n\n");
            description.push_str(note);
        }
        object.insert("description".into(), Value::String(description));
        object.insert(
            "differential".into(),
            json!({"element": elements.list.into_iter().map(Value::Object).collect::<Vec<_>>()}),
        );
        sd
    }
}
