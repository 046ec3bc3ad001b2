//! Typed views of the authored CodeSystem, ValueSet and system-alias files, parsed once at load.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::TerminologyError;

/// A FHIR Coding, as Musubi hands it out (e.g. for `Immunization.protocolApplied.targetDisease`).
/// Serialises to the FHIR JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coding {
    pub system: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// `CodeSystem.concept.designation`: another representation of the concept (e.g. the English
/// name of a Japanese concept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Designation {
    pub language: Option<String>,
    /// `designation.use`
    pub use_: Option<Coding>,
    pub value: String,
}

/// `CodeSystem.concept.property`: one property value of a concept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub code: String,
    pub value: PropertyValue,
}

/// The `value[x]` of a concept property; numbers keep the text they were written with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyValue {
    Code(String),
    Coding(Coding),
    String(String),
    Integer(i64),
    Boolean(bool),
    DateTime(String),
    Decimal(String),
}

impl PropertyValue {
    /// The FHIR `value[x]` element name and JSON value.
    pub fn to_fhir(&self) -> (&'static str, Value) {
        match self {
            PropertyValue::Code(c) => ("valueCode", Value::String(c.clone())),
            PropertyValue::Coding(c) => (
                "valueCoding",
                serde_json::to_value(c).unwrap_or(Value::Null),
            ),
            PropertyValue::String(s) => ("valueString", Value::String(s.clone())),
            PropertyValue::Integer(i) => ("valueInteger", Value::from(*i)),
            PropertyValue::Boolean(b) => ("valueBoolean", Value::Bool(*b)),
            PropertyValue::DateTime(d) => ("valueDateTime", Value::String(d.clone())),
            PropertyValue::Decimal(d) => (
                "valueDecimal",
                // arbitrary_precision: re-reading the written text keeps `64.50` as `64.50`.
                serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.clone())),
            ),
        }
    }
}

/// `CodeSystem.content`: how much of the code system the resource holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    NotPresent,
    Example,
    Fragment,
    Complete,
    Supplement,
}

impl Content {
    fn parse(text: &str) -> Option<Content> {
        Some(match text {
            "not-present" => Content::NotPresent,
            "example" => Content::Example,
            "fragment" => Content::Fragment,
            "complete" => Content::Complete,
            "supplement" => Content::Supplement,
            _ => return None,
        })
    }
}

/// One concept of a code system (hierarchies are flattened).
#[derive(Debug, Clone)]
pub(crate) struct Concept {
    pub code: String,
    pub display: Option<String>,
    pub designations: Vec<Designation>,
    pub properties: Vec<Property>,
}

/// A loaded code system: its typed concepts plus the resource as authored (after merging).
#[derive(Debug, Clone)]
pub(crate) struct CodeSystemEntry {
    pub url: String,
    pub name: String,
    pub version: Option<String>,
    pub content: Content,
    pub case_sensitive: bool,
    /// Keyed by code, or by lower-cased code when the system is case-insensitive.
    pub concepts: HashMap<String, Concept>,
    pub resource: Value,
    pub file: String,
}

impl CodeSystemEntry {
    fn key(&self, code: &str) -> String {
        if self.case_sensitive {
            code.to_owned()
        } else {
            code.to_lowercase()
        }
    }

    pub fn concept(&self, code: &str) -> Option<&Concept> {
        self.concepts.get(&self.key(code))
    }

    /// Only a complete code system can say a code does not exist.
    pub fn is_complete(&self) -> bool {
        self.content == Content::Complete
    }

    pub fn parse(resource: Value, file: &str) -> Result<CodeSystemEntry, TerminologyError> {
        let invalid = |reason: String| TerminologyError::InvalidFile {
            file: file.to_owned(),
            reason,
        };
        let raw: RawCodeSystem = serde_json::from_value(resource.clone())
            .map_err(|e| invalid(format!("not a usable CodeSystem: {e}")))?;
        let content = Content::parse(&raw.content).ok_or_else(|| {
            invalid(format!(
                "CodeSystem.content '{}' is not an R4 code",
                raw.content
            ))
        })?;
        if raw.url.contains('|') {
            return Err(invalid(format!(
                "CodeSystem.url {} carries a version",
                raw.url
            )));
        }
        let declared: Vec<&str> = raw.property.iter().map(|p| p.code.as_str()).collect();
        let mut entry = CodeSystemEntry {
            name: raw.name.or(raw.title).unwrap_or_else(|| raw.url.clone()),
            url: raw.url,
            version: raw.version,
            content,
            // R4 leaves an absent caseSensitive undefined; all the Japanese systems are codes
            // where case matters (e.g. `74L`), so absent means sensitive.
            case_sensitive: raw.case_sensitive.unwrap_or(true),
            concepts: HashMap::new(),
            resource,
            file: file.to_owned(),
        };
        let mut pending = raw.concept;
        while let Some(raw_concept) = pending.pop() {
            let concept = raw_concept.typed(&declared).map_err(invalid)?;
            let key = entry.key(&concept.code);
            if entry.concepts.insert(key, concept).is_some() {
                return Err(invalid(format!(
                    "CodeSystem {} lists the code '{}' twice",
                    entry.url, raw_concept.code
                )));
            }
            pending.extend(raw_concept.concept);
        }
        Ok(entry)
    }
}

#[derive(Deserialize)]
struct RawCodeSystem {
    url: String,
    name: Option<String>,
    title: Option<String>,
    version: Option<String>,
    content: String,
    #[serde(rename = "caseSensitive")]
    case_sensitive: Option<bool>,
    #[serde(default)]
    property: Vec<RawPropertyDefinition>,
    #[serde(default)]
    concept: Vec<RawConcept>,
}

#[derive(Deserialize)]
struct RawPropertyDefinition {
    code: String,
}

#[derive(Deserialize, Clone)]
struct RawConcept {
    code: String,
    display: Option<String>,
    #[serde(default)]
    designation: Vec<RawDesignation>,
    #[serde(default)]
    property: Vec<serde_json::Map<String, Value>>,
    #[serde(default)]
    concept: Vec<RawConcept>,
}

#[derive(Deserialize, Clone)]
struct RawDesignation {
    language: Option<String>,
    #[serde(rename = "use")]
    use_: Option<Coding>,
    value: String,
}

impl RawConcept {
    fn typed(&self, declared: &[&str]) -> Result<Concept, String> {
        if self.code.trim().is_empty() {
            return Err("a concept has an empty code".to_owned());
        }
        let properties = self
            .property
            .iter()
            .map(|p| parse_property(&self.code, p, declared))
            .collect::<Result<_, _>>()?;
        Ok(Concept {
            code: self.code.clone(),
            display: self.display.clone(),
            designations: self
                .designation
                .iter()
                .map(|d| Designation {
                    language: d.language.clone(),
                    use_: d.use_.clone(),
                    value: d.value.clone(),
                })
                .collect(),
            properties,
        })
    }
}

fn parse_property(
    concept: &str,
    property: &serde_json::Map<String, Value>,
    declared: &[&str],
) -> Result<Property, String> {
    let code = property
        .get("code")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("concept '{concept}': a property has no code"))?;
    if !declared.contains(&code) {
        return Err(format!(
            "concept '{concept}': property '{code}' is not declared in CodeSystem.property"
        ));
    }
    let mut values = property.iter().filter(|(k, _)| k.starts_with("value"));
    let (Some((name, value)), None) = (values.next(), values.next()) else {
        return Err(format!(
            "concept '{concept}': property '{code}' needs exactly one value[x]"
        ));
    };
    let wrong = || format!("concept '{concept}': property '{code}' has a malformed {name}");
    let text = || value.as_str().map(str::to_owned).ok_or_else(wrong);
    let value = match name.as_str() {
        "valueCode" => PropertyValue::Code(text()?),
        "valueString" => PropertyValue::String(text()?),
        "valueDateTime" => PropertyValue::DateTime(text()?),
        "valueBoolean" => PropertyValue::Boolean(value.as_bool().ok_or_else(wrong)?),
        "valueInteger" => PropertyValue::Integer(value.as_i64().ok_or_else(wrong)?),
        "valueDecimal" if value.is_number() => PropertyValue::Decimal(value.to_string()),
        "valueCoding" => {
            PropertyValue::Coding(serde_json::from_value(value.clone()).map_err(|_| wrong())?)
        }
        _ => return Err(wrong()),
    };
    Ok(Property {
        code: code.to_owned(),
        value,
    })
}

/// One `compose.include` or `compose.exclude` entry. Conditions inside one entry are ANDed
/// (R4 ValueSet.compose.include): the system (whole, or the listed concepts) and every listed
/// value set.
#[derive(Debug, Clone)]
pub(crate) struct ComposePart {
    /// Canonical URL (aliases resolved at load).
    pub system: Option<String>,
    pub concepts: Vec<(String, Option<String>)>,
    pub value_sets: Vec<String>,
}

/// A loaded value set.
#[derive(Debug, Clone)]
pub(crate) struct ValueSetEntry {
    pub url: String,
    pub includes: Vec<ComposePart>,
    pub excludes: Vec<ComposePart>,
    pub resource: Value,
    pub file: String,
}

impl ValueSetEntry {
    /// `canonical` maps a system URL to its canonical form.
    pub fn parse(
        resource: Value,
        file: &str,
        canonical: &dyn Fn(&str) -> String,
    ) -> Result<ValueSetEntry, TerminologyError> {
        let invalid = |reason: String| TerminologyError::InvalidFile {
            file: file.to_owned(),
            reason,
        };
        let raw: RawValueSet = serde_json::from_value(resource.clone())
            .map_err(|e| invalid(format!("not a usable ValueSet: {e}")))?;
        if raw.url.contains('|') {
            return Err(invalid(format!(
                "ValueSet.url {} carries a version",
                raw.url
            )));
        }
        let compose = raw.compose.ok_or_else(|| {
            invalid(format!(
                "ValueSet {} has no compose (expansion-only value sets are not supported)",
                raw.url
            ))
        })?;
        if compose.include.is_empty() {
            return Err(invalid(format!("ValueSet {} includes nothing", raw.url)));
        }
        let part = |p: RawInclude| -> Result<ComposePart, TerminologyError> {
            if !p.filter.is_empty() {
                return Err(invalid(format!(
                    "ValueSet {}: compose filters are not supported; list the concepts instead",
                    raw.url
                )));
            }
            if p.system.is_none() && p.value_set.is_empty() {
                return Err(invalid(format!(
                    "ValueSet {}: a compose entry names neither a system nor a value set",
                    raw.url
                )));
            }
            if p.system.is_none() && !p.concept.is_empty() {
                return Err(invalid(format!(
                    "ValueSet {}: a compose entry lists concepts without a system",
                    raw.url
                )));
            }
            Ok(ComposePart {
                system: p.system.as_deref().map(canonical),
                concepts: p.concept.into_iter().map(|c| (c.code, c.display)).collect(),
                value_sets: p
                    .value_set
                    .iter()
                    .map(|v| strip_version(v).to_owned())
                    .collect(),
            })
        };
        Ok(ValueSetEntry {
            includes: compose
                .include
                .into_iter()
                .map(part)
                .collect::<Result<_, _>>()?,
            excludes: compose
                .exclude
                .into_iter()
                .map(part)
                .collect::<Result<_, _>>()?,
            url: raw.url,
            resource,
            file: file.to_owned(),
        })
    }
}

#[derive(Deserialize)]
struct RawValueSet {
    url: String,
    compose: Option<RawCompose>,
}

#[derive(Deserialize)]
struct RawCompose {
    #[serde(default)]
    include: Vec<RawInclude>,
    #[serde(default)]
    exclude: Vec<RawInclude>,
}

#[derive(Deserialize)]
struct RawInclude {
    system: Option<String>,
    #[serde(default)]
    concept: Vec<RawValueSetConcept>,
    #[serde(default)]
    filter: Vec<Value>,
    #[serde(rename = "valueSet", default)]
    value_set: Vec<String>,
}

#[derive(Deserialize)]
struct RawValueSetConcept {
    code: String,
    display: Option<String>,
}

/// The system-alias table (`"musubiDataType": "system-aliases"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AliasFile {
    #[serde(rename = "musubiDataType")]
    pub _data_type: String,
    #[serde(rename = "description", default)]
    pub _description: Option<String>,
    pub systems: Vec<AliasSystem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AliasSystem {
    pub name: String,
    pub kind: SystemKind,
    pub canonical: String,
    pub aliases: Vec<AliasEntry>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SystemKind {
    Codesystem,
    Identifier,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AliasEntry {
    pub value: String,
    pub source: String,
    #[serde(default)]
    pub conflict: Option<String>,
}

/// `url|version` → `url`: Musubi holds one version of each resource and ignores versions.
pub(crate) fn strip_version(url: &str) -> &str {
    url.split_once('|').map_or(url, |(u, _)| u)
}
