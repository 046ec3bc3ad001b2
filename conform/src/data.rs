//! The profile data format as written in `profiles/jp/structure/*.json` (docs/profiles.md),
//! before it is checked against the R4 definitions and compiled.

use serde::Deserialize;
use serde_json::Value;

/// Who stands behind a rule: the cited package, the base FHIR specification, or Musubi itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Origin {
    #[default]
    JpCore,
    Fhir,
    Musubi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SeverityName {
    Error,
    Warning,
    Information,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Strength {
    Required,
    Extensible,
    Preferred,
    Example,
}

impl Strength {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Strength::Required => "required",
            Strength::Extensible => "extensible",
            Strength::Preferred => "preferred",
            Strength::Example => "example",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawProfile {
    pub url: String,
    pub version: String,
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub base_definition: String,
    #[serde(default)]
    pub default_for_type: bool,
    /// The profile as a whole rests on an inference (jp-specs ⚠️), not on a published profile.
    #[serde(default)]
    pub inferred: bool,
    /// Default origin of the rules below.
    #[serde(default)]
    pub origin: Origin,
    pub source: String,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub invariants: Vec<RawInvariant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRule {
    pub path: String,
    pub min: Option<u32>,
    pub max: Option<String>,
    pub types: Option<Vec<String>>,
    pub fixed: Option<Value>,
    pub pattern: Option<Value>,
    pub binding: Option<RawBinding>,
    pub targets: Option<Vec<RawTarget>>,
    pub format: Option<String>,
    pub regex: Option<String>,
    #[serde(default)]
    pub slices: Vec<RawSlice>,
    pub origin: Option<Origin>,
    #[serde(default)]
    pub inferred: bool,
    pub severity: Option<SeverityName>,
    pub source: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawSlice {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    #[serde(default)]
    pub min: u32,
    pub max: Option<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    pub origin: Option<Origin>,
    #[serde(default)]
    pub inferred: bool,
    pub severity: Option<SeverityName>,
    pub source: Option<String>,
}

/// How an item is recognised as belonging to a slice; exactly one field is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawMatch {
    /// Extension.url equals this.
    pub url: Option<String>,
    /// Identifier.system equals this (canonical forms compared).
    pub system: Option<String>,
    /// A CodeableConcept (the item, or at `path` in it) with a coding of this system (and code,
    /// when given).
    pub coding: Option<RawCodingMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawCodingMatch {
    /// Where the CodeableConcept is inside the item (`code` for Practitioner.qualification);
    /// absent when the item is the CodeableConcept.
    pub path: Option<String>,
    pub system: String,
    pub code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawBinding {
    pub strength: Strength,
    pub value_set: String,
    /// The value set's codes, used only when the terminology does not know the value set.
    pub codes: Option<Vec<RawCode>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawCode {
    pub system: Option<String>,
    pub code: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawTarget {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub profile: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawInvariant {
    pub key: String,
    pub human: String,
    /// For `regex`: the element whose values must match. For `anyOf`: the context element.
    pub path: String,
    pub regex: Option<String>,
    pub any_of: Option<Vec<String>>,
    pub severity: Option<SeverityName>,
    pub origin: Option<Origin>,
    #[serde(default)]
    pub inferred: bool,
    pub source: Option<String>,
}
