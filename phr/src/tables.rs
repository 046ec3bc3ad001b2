//! The PHR data tables (`profiles/jp/phr/`): vital kinds, code-system aliases, the JSON Schemas
//! and the OpenAPI document, read once and checked, plus extra files supplied at run time.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::{Kind, PhrError};

/// Musubi's vaccine-type CodeSystem (docs/terminology.md).
pub const VACCINE_TYPE_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/vaccine-type";

/// A coding as the tables write it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Coding {
    pub system: String,
    pub code: String,
    #[serde(default)]
    pub display: Option<String>,
}

impl Coding {
    pub(crate) fn to_json(&self) -> Value {
        let mut coding = serde_json::Map::new();
        coding.insert("system".into(), Value::String(self.system.clone()));
        coding.insert("code".into(), Value::String(self.code.clone()));
        if let Some(display) = &self.display {
            coding.insert("display".into(), Value::String(display.clone()));
        }
        Value::Object(coding)
    }
}

/// One unit a vital kind may be sent in (`phr-vital-kinds.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct VitalUnit {
    /// The unit as the app writes it (`series[].unit`).
    pub unit: String,
    /// The UCUM code.
    pub ucum: String,
    /// The unit as people read it (Quantity.unit), e.g. ℃.
    pub display: String,
    pub min: f64,
    pub max: f64,
    /// Whether values must be whole numbers (steps, minutes).
    pub integer: bool,
    /// Codings that depend on the unit (MEDIS 体重(kg) vs 体重(g)).
    pub codings: Vec<Coding>,
}

/// One vital kind (`series[].kind`) and how it becomes an Observation.
#[derive(Debug, Clone, Deserialize)]
pub struct VitalKind {
    pub kind: String,
    /// Japanese label (Observation.code.text).
    pub label: String,
    /// The profile claimed in `meta.profile`, if any.
    pub profile: Option<String>,
    pub categories: Vec<Coding>,
    /// Codings shared by every unit; the kind is recognised by any of them on read-back.
    pub codings: Vec<Coding>,
    pub units: Vec<VitalUnit>,
    #[serde(default)]
    pub source: String,
}

impl VitalKind {
    pub fn unit(&self, unit: &str) -> Option<&VitalUnit> {
        self.units.iter().find(|u| u.unit == unit)
    }
}

/// A short code-system name the app writes (`code.system`) and its FHIR URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeSystemAlias {
    pub alias: String,
    pub url: String,
    pub name: String,
    /// The payloads it may be used in (`conditions`, `medications`, `allergies`).
    pub used_for: Vec<String>,
    #[serde(default)]
    pub source: String,
}

#[derive(Deserialize)]
struct VitalKindsFile {
    kinds: Vec<VitalKind>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrevaccinationFile {
    clinic_only_items: Vec<String>,
}

#[derive(Deserialize)]
struct CodeSystemsFile {
    systems: Vec<CodeSystemAlias>,
}

/// Everything read from the data files.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    pub vital_kinds: Vec<VitalKind>,
    pub code_systems: Vec<CodeSystemAlias>,
    /// vaccine-type code → Japanese display, from the vaccine-type CodeSystem in
    /// `profiles/jp/terminology`.
    pub vaccine_names: BTreeMap<String, String>,
    /// Schema file name → schema.
    pub schemas: BTreeMap<String, Value>,
    pub openapi: Value,
    /// 予診票 linkIds (with everything under them) that only the clinic fills in.
    pub clinic_only: Vec<String>,
    /// Extra files that are none of the above (for the caller's log).
    pub skipped: Vec<String>,
}

fn data_error(file: &str, problem: impl Into<String>) -> PhrError {
    PhrError::Data {
        file: file.to_owned(),
        problem: problem.into(),
    }
}

impl Tables {
    /// The embedded files, then `extra` in order. A later vital kind or alias with the same name
    /// replaces the earlier one; a schema file or `openapi.json` with the same name replaces it.
    pub fn load(extra: &[(String, String)]) -> Result<Tables, PhrError> {
        let mut tables = Tables {
            vital_kinds: Vec::new(),
            code_systems: Vec::new(),
            vaccine_names: BTreeMap::new(),
            schemas: BTreeMap::new(),
            openapi: Value::Null,
            clinic_only: Vec::new(),
            skipped: Vec::new(),
        };
        let embedded = profiles::JP_PHR.iter().map(|(n, t)| (*n, *t));
        let extra = extra.iter().map(|(n, t)| (n.as_str(), t.as_str()));
        for (name, text) in embedded.chain(extra) {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| data_error(name, format!("not JSON: {e}")))?;
            tables.add(name, value)?;
        }
        for (name, text) in profiles::JP_TERMINOLOGY {
            if !text.contains(VACCINE_TYPE_SYSTEM) {
                continue;
            }
            let value: Value = serde_json::from_str(text)
                .map_err(|e| data_error(name, format!("not JSON: {e}")))?;
            if value.get("resourceType").and_then(Value::as_str) == Some("CodeSystem")
                && value.get("url").and_then(Value::as_str) == Some(VACCINE_TYPE_SYSTEM)
            {
                for concept in value
                    .get("concept")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let (Some(code), Some(display)) = (
                        concept.get("code").and_then(Value::as_str),
                        concept.get("display").and_then(Value::as_str),
                    ) {
                        tables.vaccine_names.insert(code.into(), display.into());
                    }
                }
            }
        }
        tables.check()?;
        Ok(tables)
    }

    fn add(&mut self, name: &str, value: Value) -> Result<(), PhrError> {
        let data_type = value.get("musubiDataType").and_then(Value::as_str);
        if name.ends_with(".schema.json") {
            if value.get("$schema").and_then(Value::as_str)
                != Some("https://json-schema.org/draft/2020-12/schema")
            {
                return Err(data_error(
                    name,
                    "a schema file must declare \"$schema\": \"https://json-schema.org/draft/2020-12/schema\"",
                ));
            }
            self.schemas.insert(name.to_owned(), value);
        } else if name == "openapi.json" {
            if !value
                .get("openapi")
                .and_then(Value::as_str)
                .is_some_and(|v| v.starts_with("3.1"))
            {
                return Err(data_error(name, "not an OpenAPI 3.1 document"));
            }
            self.openapi = value;
        } else if data_type == Some("phr-vital-kinds") {
            let file: VitalKindsFile = serde_json::from_value(value)
                .map_err(|e| data_error(name, format!("not a vital-kinds table: {e}")))?;
            for kind in file.kinds {
                check_kind(name, &kind)?;
                self.vital_kinds.retain(|k| k.kind != kind.kind);
                self.vital_kinds.push(kind);
            }
        } else if data_type == Some("phr-prevaccination") {
            let file: PrevaccinationFile = serde_json::from_value(value)
                .map_err(|e| data_error(name, format!("not a prevaccination table: {e}")))?;
            self.clinic_only = file.clinic_only_items;
        } else if data_type == Some("phr-code-systems") {
            let file: CodeSystemsFile = serde_json::from_value(value)
                .map_err(|e| data_error(name, format!("not a code-systems table: {e}")))?;
            for system in file.systems {
                for used in &system.used_for {
                    if !matches!(used.as_str(), "conditions" | "medications" | "allergies") {
                        return Err(data_error(
                            name,
                            format!(
                                "alias {:?}: usedFor {used:?} is not conditions, medications or allergies",
                                system.alias
                            ),
                        ));
                    }
                }
                self.code_systems.retain(|s| s.alias != system.alias);
                self.code_systems.push(system);
            }
        } else {
            self.skipped.push(name.to_owned());
        }
        Ok(())
    }

    fn check(&self) -> Result<(), PhrError> {
        for kind in Kind::ALL {
            if !self.schemas.contains_key(kind.schema_file()) {
                return Err(data_error(kind.schema_file(), "schema file missing"));
            }
        }
        if self.openapi.is_null() {
            return Err(data_error("openapi.json", "OpenAPI document missing"));
        }
        Ok(())
    }

    pub fn vital_kind(&self, kind: &str) -> Option<&VitalKind> {
        self.vital_kinds.iter().find(|k| k.kind == kind)
    }

    /// The alias usable in `payload` (conditions, medications, allergies).
    pub fn alias(&self, alias: &str, payload: &str) -> Option<&CodeSystemAlias> {
        self.code_systems
            .iter()
            .find(|s| s.alias == alias && s.used_for.iter().any(|u| u == payload))
    }

    /// The alias of a system URL usable in `payload`.
    pub fn alias_of_url(&self, url: &str, payload: &str) -> Option<&CodeSystemAlias> {
        self.code_systems
            .iter()
            .find(|s| s.url == url && s.used_for.iter().any(|u| u == payload))
    }
}

fn check_kind(file: &str, kind: &VitalKind) -> Result<(), PhrError> {
    if kind.units.is_empty() {
        return Err(data_error(
            file,
            format!("kind {:?} has no units", kind.kind),
        ));
    }
    if kind.codings.is_empty() {
        return Err(data_error(
            file,
            format!(
                "kind {:?} has no codings, so it could not be read back",
                kind.kind
            ),
        ));
    }
    for unit in &kind.units {
        if unit.min > unit.max {
            return Err(data_error(
                file,
                format!(
                    "kind {:?} unit {:?}: min is above max",
                    kind.kind, unit.unit
                ),
            ));
        }
    }
    Ok(())
}
