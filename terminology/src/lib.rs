//! Japanese terminology for Musubi, without I/O: the CodeSystems and ValueSets authored in
//! `profiles/jp/terminology/` (plus extra files supplied at run time), FHIR R4 `$lookup` and
//! `$validate-code`, ValueSet membership for the profile validator, the OID↔URL system alias
//! table, and the vaccine product → vaccine type → target disease mappings.
//!
//! Musubi holds most Japanese national code systems only in part (`content: fragment`): a code
//! missing from such a subset is reported as *not known in Musubi's subset*, never as invalid.
//! See docs/terminology.md.

mod error;
mod load;
mod model;
mod parameters;
mod service;

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

pub use error::TerminologyError;
pub use model::{Coding, Designation, Property, PropertyValue};
pub use parameters::{lookup_parameters, validate_code_parameters};

use model::{CodeSystemEntry, ValueSetEntry};

/// Musubi's vaccine-type code system (ワクチンの種類). musubi.example.org is a placeholder domain.
pub const VACCINE_TYPE_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/vaccine-type";
/// Musubi's target-disease code system, for diseases without a sourced MEDIS 病名交換用コード.
pub const TARGET_DISEASE_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/target-disease";

/// All loaded code systems, value sets and aliases. Built once; every query is pure.
#[derive(Debug)]
pub struct Terminology {
    code_systems: BTreeMap<String, CodeSystemEntry>,
    value_sets: BTreeMap<String, ValueSetEntry>,
    /// alias → canonical URL
    aliases: HashMap<String, String>,
    system_aliases: Vec<SystemAlias>,
    /// (canonical product system, concept key) → vaccine type code
    vaccine_types: HashMap<(String, String), String>,
    skipped: Vec<String>,
}

/// One row of the system alias table: an OID or older URL and the URL Musubi emits instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemAlias {
    pub alias: String,
    pub canonical: String,
    /// Human name of the system, e.g. `HOT13 (MEDIS 医薬品基準番号)`.
    pub name: String,
    /// An identifier system (e.g. 保険者番号) rather than a code system.
    pub identifier_system: bool,
    /// Where the alias was read.
    pub source: String,
    /// Set when sources disagree about this alias (both forms are accepted).
    pub conflict: Option<String>,
    /// The data file it came from.
    pub file: String,
}

/// The answer to `$lookup`: the concept as Musubi knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// Canonical URL of the code system (an alias in the request is resolved).
    pub system: String,
    pub code: String,
    /// `CodeSystem.name`, the R4 `name` output parameter.
    pub name: String,
    pub version: Option<String>,
    /// The concept's display, or its code when it has none (`display` is 1..1 in R4 `$lookup`).
    pub display: String,
    pub designations: Vec<Designation>,
    pub properties: Vec<Property>,
}

/// A `$validate-code` request. Give a value set, a system, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidateCode<'a> {
    /// ValueSet canonical URL; a `|version` suffix is ignored.
    pub value_set: Option<&'a str>,
    /// Code system URL or any alias of it.
    pub system: Option<&'a str>,
    pub code: &'a str,
    pub display: Option<&'a str>,
}

/// The answer to `$validate-code` (R4 output parameters `result`, `message`, `display`).
/// `message` with `result: true` carries a warning (R4: "hints and warnings").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub result: bool,
    pub message: Option<String>,
    /// The display Musubi recommends for the code, when the code is known.
    pub display: Option<String>,
}

/// Whether a code belongs to a value set, for the profile validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Member,
    NotMember,
    /// Musubi does not hold the value set.
    UnknownValueSet,
    /// Membership cannot be decided: the value set draws on a code system Musubi does not hold,
    /// or holds only in part (`content: fragment`) and the code is outside Musubi's subset.
    /// Either way the code is not known to be wrong.
    UnknownSystem,
}

static EMBEDDED: OnceLock<Result<Terminology, TerminologyError>> = OnceLock::new();

impl Terminology {
    /// The built-in tables (`profiles::JP_TERMINOLOGY`), parsed on first use.
    pub fn embedded() -> Result<&'static Terminology, TerminologyError> {
        EMBEDDED
            .get_or_init(|| load::build(profiles::JP_TERMINOLOGY, &[]))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The built-in tables plus extra `(file name, JSON text)` files. An extra CodeSystem with a
    /// built-in URL *extends* it (its concepts are added; a concept with an existing code
    /// replaces that concept); an extra ValueSet with a built-in URL *replaces* it; extra alias
    /// tables add aliases. Files named `gtin-*` and files that are neither a CodeSystem, a
    /// ValueSet nor a system-alias table are left to other loaders (see [`Self::skipped_files`]).
    pub fn load(extra: &[(String, String)]) -> Result<Terminology, TerminologyError> {
        load::build(profiles::JP_TERMINOLOGY, extra)
    }

    /// OID, `urn:oid:` or older-URL form of a system → the URL Musubi emits. A `|version`
    /// suffix is dropped. Unknown systems come back unchanged.
    pub fn canonical_system<'a>(&'a self, system: &'a str) -> &'a str {
        canonical_of(&self.aliases, system)
    }

    /// The code system as authored (merged with extra files); `url` may be an alias.
    pub fn code_system(&self, url: &str) -> Option<&serde_json::Value> {
        self.code_systems
            .get(self.canonical_system(url))
            .map(|e| &e.resource)
    }

    /// The value set as authored; a `|version` suffix is ignored.
    pub fn value_set(&self, url: &str) -> Option<&serde_json::Value> {
        self.value_sets
            .get(model::strip_version(url))
            .map(|e| &e.resource)
    }

    /// Every CodeSystem, then every ValueSet, in URL order, for the gateway to serve.
    pub fn resources(&self) -> impl Iterator<Item = &serde_json::Value> {
        self.code_systems
            .values()
            .map(|e| &e.resource)
            .chain(self.value_sets.values().map(|e| &e.resource))
    }

    /// The system alias table, in file order.
    pub fn system_aliases(&self) -> &[SystemAlias] {
        &self.system_aliases
    }

    /// Data files that were not terminology (e.g. `gtin-*` tables), so callers can log them.
    pub fn skipped_files(&self) -> &[String] {
        &self.skipped
    }
}

/// Shared by [`Terminology::canonical_system`] and the loader (before the struct exists).
pub(crate) fn canonical_of<'a>(aliases: &'a HashMap<String, String>, system: &'a str) -> &'a str {
    let system = model::strip_version(system);
    if let Some(canonical) = aliases.get(system) {
        return canonical;
    }
    // A bare OID ("1.2.392.200119.4.402.1") is how OIDs appear in CDA and HL7 v2 messages.
    let bare_oid = system.contains('.') && system.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if bare_oid && let Some(canonical) = aliases.get(&format!("urn:oid:{system}")) {
        return canonical;
    }
    system
}
