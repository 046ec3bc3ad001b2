//! The search parameters of every resource type, from the official R4 SearchParameter
//! definitions (`profiles/r4/search-parameters.json`), with each expression compiled for the
//! type it applies to.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::fhirpath::{self, Path};

/// SearchParameter.type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamKind {
    pub fn code(self) -> &'static str {
        match self {
            ParamKind::Number => "number",
            ParamKind::Date => "date",
            ParamKind::String => "string",
            ParamKind::Token => "token",
            ParamKind::Reference => "reference",
            ParamKind::Composite => "composite",
            ParamKind::Quantity => "quantity",
            ParamKind::Uri => "uri",
            ParamKind::Special => "special",
        }
    }
}

/// One search parameter as it applies to one resource type.
#[derive(Debug, Clone)]
pub struct ParamDef {
    pub code: String,
    /// Canonical URL of the SearchParameter definition.
    pub url: String,
    pub kind: ParamKind,
    /// Resource types a reference parameter may point to.
    pub targets: Vec<String>,
    pub(crate) paths: Vec<Path>,
}

#[derive(Debug)]
pub struct Registry {
    by_type: HashMap<String, Vec<ParamDef>>,
    /// Parameters whose expression is outside the supported FHIRPath subset, per type.
    unsupported: HashMap<String, Vec<String>>,
    /// Parameters of `Resource`/`DomainResource`, valid on every type.
    common: Vec<ParamDef>,
}

#[derive(Deserialize)]
struct RawFile {
    parameters: Vec<RawParam>,
}

#[derive(Deserialize)]
struct RawParam {
    url: String,
    code: String,
    base: Vec<String>,
    #[serde(rename = "type")]
    kind: ParamKind,
    expression: Option<String>,
    #[serde(default)]
    target: Vec<String>,
}

impl Registry {
    /// The R4 registry, built once per process.
    pub fn r4() -> &'static Registry {
        static R4: OnceLock<Registry> = OnceLock::new();
        R4.get_or_init(|| {
            Registry::from_json(profiles::R4_SEARCH_PARAMETERS_JSON)
                .expect("profiles/r4/search-parameters.json must parse")
        })
    }

    pub fn from_json(text: &str) -> Result<Registry, serde_json::Error> {
        let raw: RawFile = serde_json::from_str(text)?;
        let mut registry = Registry {
            by_type: HashMap::new(),
            unsupported: HashMap::new(),
            common: Vec::new(),
        };
        for param in raw.parameters {
            for base in &param.base {
                let Some(paths) = compile_for(base, param.expression.as_deref(), param.kind) else {
                    registry
                        .unsupported
                        .entry(base.clone())
                        .or_default()
                        .push(param.code.clone());
                    continue;
                };
                let common = base == "Resource" || base == "DomainResource";
                let def = ParamDef {
                    code: param.code.clone(),
                    url: param.url.clone(),
                    kind: param.kind,
                    targets: param.target.clone(),
                    paths,
                };
                if common {
                    registry.common.push(def);
                } else {
                    registry.by_type.entry(base.clone()).or_default().push(def);
                }
            }
        }
        Ok(registry)
    }

    /// The parameter `code` of `resource_type`, if it exists and can be evaluated.
    pub fn param(&self, resource_type: &str, code: &str) -> Option<&ParamDef> {
        self.by_type
            .get(resource_type)
            .and_then(|params| params.iter().find(|p| p.code == code))
            .or_else(|| self.common.iter().find(|p| p.code == code))
    }

    /// Every evaluable parameter of a type, including `_id`, `_lastUpdated` and the like.
    pub fn supported<'a>(&'a self, resource_type: &str) -> impl Iterator<Item = &'a ParamDef> + 'a {
        self.by_type
            .get(resource_type)
            .into_iter()
            .flatten()
            .chain(self.common.iter())
    }

    /// Codes of official parameters of this type that cannot be evaluated (composite, special or
    /// FHIRPath beyond the supported subset).
    pub fn unsupported(&self, resource_type: &str) -> &[String] {
        self.unsupported
            .get(resource_type)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// The expression's branches for `base`, compiled; `None` when the parameter cannot be evaluated
/// for it (no expression, composite/special, or FHIRPath beyond the supported subset).
fn compile_for(base: &str, expression: Option<&str>, kind: ParamKind) -> Option<Vec<Path>> {
    if matches!(kind, ParamKind::Composite | ParamKind::Special) {
        return None;
    }
    let mut paths = Vec::new();
    for branch in fhirpath::union_branches(expression?) {
        match fhirpath::compile(branch) {
            Some(path) if path.root == base => paths.push(path),
            Some(_) => {}
            None if branch_root(branch) == Some(base) => return None,
            None => {}
        }
    }
    (!paths.is_empty()).then_some(paths)
}

fn branch_root(branch: &str) -> Option<&str> {
    let trimmed = branch.trim().trim_start_matches('(');
    let end = trimmed
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(trimmed.len());
    Some(&trimmed[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r4_parameters_of_the_served_types_are_supported() {
        let registry = Registry::r4();
        for (rt, code) in [
            ("Patient", "name"),
            ("Patient", "family"),
            ("Patient", "birthdate"),
            ("Patient", "identifier"),
            ("Immunization", "patient"),
            ("Immunization", "date"),
            ("Immunization", "vaccine-code"),
            ("Observation", "subject"),
            ("Observation", "value-quantity"),
            ("Observation", "code"),
            ("Consent", "patient"),
            ("Patient", "_id"),
            ("Patient", "_lastUpdated"),
        ] {
            assert!(registry.param(rt, code).is_some(), "{rt}.{code}");
        }
        assert!(registry.param("Patient", "nonsense").is_none());
    }
}
