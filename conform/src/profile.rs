//! Compiled profiles: the data of one file checked against the R4 definitions (every path must
//! name real elements, restrictions must narrow the base) and turned into typed rules.

use fhir::validate::Severity;
use fhir::{Definitions, ElementDef, Max};
use regex::Regex;
use serde_json::Value;

use crate::ConformError;
use crate::data::{
    Origin, RawBinding, RawCode, RawInvariant, RawMatch, RawProfile, RawRule, RawSlice,
    SeverityName, Strength,
};

/// One profile: a resource type, its canonical URL and the constraints it adds to base R4.
#[derive(Debug)]
pub struct Profile {
    pub(crate) file: String,
    pub(crate) url: String,
    pub(crate) version: String,
    pub(crate) name: String,
    pub(crate) title: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) resource_type: String,
    pub(crate) base_definition: String,
    pub(crate) default_for_type: bool,
    pub(crate) inferred: bool,
    pub(crate) origin: Origin,
    pub(crate) source: String,
    pub(crate) notes: Vec<String>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) invariants: Vec<Invariant>,
}

impl Profile {
    /// The canonical URL, without version.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The computable name, e.g. `JP_Immunization`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resource type the profile constrains, e.g. `Immunization`.
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// The data file the profile came from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Whether the profile as a whole rests on an inference rather than a published profile.
    pub fn is_inferred(&self) -> bool {
        self.inferred
    }

    /// Where the profile's facts come from (package file, spec section).
    pub fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn is_default_for_type(&self) -> bool {
        self.default_for_type
    }
}

/// One step of a path: a JSON key, or a choice element (`value[x]`) with its allowed types.
#[derive(Debug, Clone)]
pub(crate) struct Seg {
    pub name: String,
    /// For `name[x]`: the base types; the JSON key is the name plus the capitalised type.
    pub choice: Option<Vec<String>>,
}

/// Provenance and severity shared by rules, slices and invariants.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub origin: Origin,
    pub inferred: bool,
    pub severity: Severity,
    pub source: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Binding {
    pub strength: Strength,
    pub value_set: String,
    pub codes: Option<Vec<RawCode>>,
}

#[derive(Debug)]
pub(crate) struct Target {
    pub resource_type: String,
    pub profile: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Rule {
    /// Element id relative to the resource, as written in diagnostics:
    /// `identifier:medicalInstitutionCode.value`.
    pub id: String,
    /// Path relative to the context (resource or slice item).
    pub segs: Vec<Seg>,
    /// Base types of the element at the end of the path.
    pub element_types: Vec<String>,
    pub min: Option<u32>,
    /// `None`: unbounded.
    pub max: Option<Option<u32>>,
    pub types: Option<Vec<String>>,
    pub fixed: Option<Value>,
    pub pattern: Option<Value>,
    pub binding: Option<Binding>,
    pub targets: Option<Vec<Target>>,
    pub format: Option<String>,
    pub regex: Option<Regex>,
    pub slices: Vec<Slice>,
    pub meta: Meta,
}

#[derive(Debug)]
pub(crate) enum Matcher {
    Url(String),
    System(String),
    Coding {
        /// Path from the item to the CodeableConcept (empty: the item itself).
        path: Vec<Seg>,
        /// The same path as written, for the StructureDefinition discriminator.
        path_text: Option<String>,
        system: String,
        code: Option<String>,
    },
}

#[derive(Debug)]
pub(crate) struct Slice {
    pub name: String,
    /// `identifier:medicalInstitutionCode`
    pub id: String,
    pub matcher: Matcher,
    pub min: u32,
    pub max: Option<u32>,
    pub rules: Vec<Rule>,
    pub meta: Meta,
}

#[derive(Debug)]
pub(crate) enum InvariantCheck {
    /// Every string value at the path matches (whole value).
    Regex(Regex),
    /// At least one of these paths (relative to the context) is present.
    AnyOf(Vec<(String, Vec<Seg>)>),
}

#[derive(Debug)]
pub(crate) struct Invariant {
    pub key: String,
    pub human: String,
    /// Element id relative to the resource (empty: the resource itself).
    pub id: String,
    pub segs: Vec<Seg>,
    pub check: InvariantCheck,
    pub meta: Meta,
}

/// Compile one data file.
pub(crate) fn compile(file: &str, text: &str, defs: &Definitions) -> Result<Profile, ConformError> {
    let raw: RawProfile =
        serde_json::from_str(text).map_err(|e| ConformError::data(file, e.to_string()))?;
    if !defs.is_resource_type(&raw.resource_type) {
        return Err(ConformError::data(
            file,
            format!("type {:?} is not an R4 resource type", raw.resource_type),
        ));
    }
    if raw.url.contains('|') || raw.url.is_empty() {
        return Err(ConformError::data(
            file,
            "url must be a canonical URL without |version",
        ));
    }
    let c = Compiler {
        file,
        defs,
        origin: raw.origin,
    };
    let root = defs.elements_of_type(&raw.resource_type);
    let prefix = format!("{}.", raw.resource_type);
    let mut rules = Vec::with_capacity(raw.rules.len());
    for r in &raw.rules {
        let relative = r.path.strip_prefix(&prefix).ok_or_else(|| {
            ConformError::data(
                file,
                format!("rule path {:?} must start with {prefix:?}", r.path),
            )
        })?;
        rules.push(c.rule(r, relative, "", root, &raw.resource_type)?);
    }
    let mut invariants = Vec::with_capacity(raw.invariants.len());
    for inv in &raw.invariants {
        invariants.push(c.invariant(inv, &raw.resource_type, root)?);
    }
    Ok(Profile {
        file: file.to_owned(),
        url: raw.url,
        version: raw.version,
        name: raw.name,
        title: raw.title,
        description: raw.description,
        resource_type: raw.resource_type,
        base_definition: raw.base_definition,
        default_for_type: raw.default_for_type,
        inferred: raw.inferred,
        origin: raw.origin,
        source: raw.source,
        notes: raw.notes,
        rules,
        invariants,
    })
}

struct Compiler<'a> {
    file: &'a str,
    defs: &'a Definitions,
    origin: Origin,
}

/// What a resolved path ends on.
struct Resolved<'d> {
    segs: Vec<Seg>,
    element: &'d ElementDef,
    /// The type chosen by a concrete choice key (`valueIdentifier` → `Identifier`).
    chosen_type: Option<String>,
}

impl Resolved<'_> {
    fn types(&self) -> Vec<String> {
        match &self.chosen_type {
            Some(t) => vec![t.clone()],
            None => self.element.types.clone(),
        }
    }
}

fn severity(name: Option<SeverityName>) -> Severity {
    match name {
        None | Some(SeverityName::Error) => Severity::Error,
        Some(SeverityName::Warning) => Severity::Warning,
        Some(SeverityName::Information) => Severity::Information,
    }
}

fn parse_max(file: &str, id: &str, max: &str) -> Result<Option<u32>, ConformError> {
    if max == "*" {
        return Ok(None);
    }
    max.parse::<u32>()
        .map(Some)
        .map_err(|_| ConformError::data(file, format!("{id}: max {max:?} is not a number or *")))
}

fn full_regex(file: &str, id: &str, pattern: &str) -> Result<Regex, ConformError> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| ConformError::data(file, format!("{id}: bad regex: {e}")))
}

impl<'a> Compiler<'a> {
    fn meta(
        &self,
        origin: Option<Origin>,
        inferred: bool,
        sev: Option<SeverityName>,
        source: &Option<String>,
    ) -> Meta {
        Meta {
            origin: origin.unwrap_or(self.origin),
            inferred,
            severity: severity(sev),
            source: source.clone(),
        }
    }

    fn err(&self, problem: String) -> ConformError {
        ConformError::data(self.file, problem)
    }

    /// Resolve a dotted path against the elements of the context.
    fn resolve(
        &self,
        path: &str,
        mut elements: &'a [ElementDef],
        context: &str,
    ) -> Result<Resolved<'a>, ConformError> {
        let parts: Vec<&str> = path.split('.').collect();
        let mut segs = Vec::with_capacity(parts.len());
        let mut last: Option<(&'a ElementDef, Option<String>)> = None;
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                let (element, chosen) = last.as_ref().expect("set on every iteration");
                elements = match chosen {
                    Some(t) => self.defs.elements_of_type(t),
                    None if element.is_choice => {
                        return Err(self.err(format!(
                            "{context}.{path}: cannot step into choice element {}[x]; name one type, e.g. {}Identifier",
                            element.name, element.name
                        )));
                    }
                    None => self.defs.children_of(element),
                };
            }
            if let Some(stem) = part.strip_suffix("[x]") {
                let element = elements
                    .iter()
                    .find(|e| e.is_choice && e.name == stem)
                    .ok_or_else(|| {
                        self.err(format!(
                            "{context}.{path}: {part} is not a choice element here"
                        ))
                    })?;
                segs.push(Seg {
                    name: stem.to_owned(),
                    choice: Some(element.types.clone()),
                });
                last = Some((element, None));
            } else if let Some(element) = elements.iter().find(|e| !e.is_choice && e.name == *part)
            {
                segs.push(Seg {
                    name: (*part).to_owned(),
                    choice: None,
                });
                last = Some((element, None));
            } else if let Some(km) = self.defs.match_key(elements, part) {
                segs.push(Seg {
                    name: (*part).to_owned(),
                    choice: None,
                });
                last = Some((km.element, Some(km.type_code.to_owned())));
            } else {
                return Err(self.err(format!("{context}.{path}: {part} is not an element here")));
            }
        }
        let (element, chosen_type) =
            last.ok_or_else(|| self.err(format!("{context}: empty path")))?;
        Ok(Resolved {
            segs,
            element,
            chosen_type,
        })
    }

    fn rule(
        &self,
        raw: &RawRule,
        path: &str,
        id_prefix: &str,
        elements: &'a [ElementDef],
        context: &str,
    ) -> Result<Rule, ConformError> {
        let id = if id_prefix.is_empty() {
            path.to_owned()
        } else {
            format!("{id_prefix}.{path}")
        };
        let resolved = self.resolve(path, elements, context)?;
        let element_types = resolved.types();
        let max = raw
            .max
            .as_deref()
            .map(|m| parse_max(self.file, &id, m))
            .transpose()?;
        if let (Some(min), Some(Some(max))) = (raw.min, max)
            && min > max
        {
            return Err(self.err(format!("{id}: min {min} > max {max}")));
        }
        if let Some(types) = &raw.types {
            if resolved.element.is_choice && resolved.chosen_type.is_none() {
                if let Some(bad) = types.iter().find(|t| !resolved.element.types.contains(t)) {
                    return Err(self.err(format!(
                        "{id}: type {bad} is not allowed by base R4 ({})",
                        resolved.element.types.join("|")
                    )));
                }
            } else {
                return Err(self.err(format!("{id}: types needs a choice element (name[x])")));
            }
        }
        let binding = raw
            .binding
            .as_ref()
            .map(|b| self.binding(&id, b, &element_types))
            .transpose()?;
        let targets = match &raw.targets {
            Some(targets) => {
                if !element_types.iter().any(|t| t == "Reference") {
                    return Err(self.err(format!("{id}: targets need a Reference element")));
                }
                if let Some(bad) = targets
                    .iter()
                    .find(|t| !self.defs.is_resource_type(&t.resource_type))
                {
                    return Err(self.err(format!(
                        "{id}: target {:?} is not a resource type",
                        bad.resource_type
                    )));
                }
                Some(
                    targets
                        .iter()
                        .map(|t| Target {
                            resource_type: t.resource_type.clone(),
                            profile: t.profile.clone(),
                        })
                        .collect(),
                )
            }
            None => None,
        };
        if (raw.format.is_some() || raw.regex.is_some())
            && !element_types.iter().all(|t| self.defs.is_primitive(t))
        {
            return Err(self.err(format!(
                "{id}: format and regex apply to primitive values only"
            )));
        }
        let regex = raw
            .regex
            .as_deref()
            .map(|r| full_regex(self.file, &id, r))
            .transpose()?;
        let mut slices = Vec::with_capacity(raw.slices.len());
        if !raw.slices.is_empty() {
            if resolved.element.max != Max::Many {
                return Err(self.err(format!("{id}: only repeating elements can be sliced")));
            }
            let [item_type] = element_types.as_slice() else {
                return Err(self.err(format!("{id}: a sliced element needs a single type")));
            };
            let item_elements = self.defs.children_of(resolved.element);
            for s in &raw.slices {
                slices.push(self.slice(s, &id, item_elements, item_type)?);
            }
        }
        Ok(Rule {
            id,
            segs: resolved.segs,
            element_types,
            min: raw.min,
            max,
            types: raw.types.clone(),
            fixed: raw.fixed.clone(),
            pattern: raw.pattern.clone(),
            binding,
            targets,
            format: raw.format.clone(),
            regex,
            slices,
            meta: self.meta(raw.origin, raw.inferred, raw.severity, &raw.source),
        })
    }

    fn binding(
        &self,
        id: &str,
        raw: &RawBinding,
        types: &[String],
    ) -> Result<Binding, ConformError> {
        const CODED: [&str; 5] = ["code", "Coding", "CodeableConcept", "string", "uri"];
        if !types.iter().any(|t| CODED.contains(&t.as_str())) {
            return Err(self.err(format!(
                "{id}: a binding needs a coded element, not {}",
                types.join("|")
            )));
        }
        Ok(Binding {
            strength: raw.strength,
            value_set: raw.value_set.clone(),
            codes: raw.codes.clone(),
        })
    }

    fn slice(
        &self,
        raw: &RawSlice,
        parent_id: &str,
        item_elements: &'a [ElementDef],
        item_type: &str,
    ) -> Result<Slice, ConformError> {
        let id = format!("{parent_id}:{}", raw.name);
        let wrong = || {
            self.err(format!(
                "{id}: match needs exactly one of url (Extension), system (Identifier), coding (a CodeableConcept, the item or at coding.path); the item type is {item_type}"
            ))
        };
        let matcher = match &raw.matcher {
            RawMatch {
                url: Some(url),
                system: None,
                coding: None,
            } if item_type == "Extension" => Matcher::Url(url.clone()),
            RawMatch {
                url: None,
                system: Some(system),
                coding: None,
            } if item_type == "Identifier" => Matcher::System(system.clone()),
            RawMatch {
                url: None,
                system: None,
                coding: Some(c),
            } => {
                let path = match &c.path {
                    None if item_type == "CodeableConcept" => Vec::new(),
                    None => return Err(wrong()),
                    Some(p) => {
                        let resolved = self.resolve(p, item_elements, &id)?;
                        if resolved.types() != ["CodeableConcept"] {
                            return Err(wrong());
                        }
                        resolved.segs
                    }
                };
                Matcher::Coding {
                    path,
                    path_text: c.path.clone(),
                    system: c.system.clone(),
                    code: c.code.clone(),
                }
            }
            _ => return Err(wrong()),
        };
        let max = raw
            .max
            .as_deref()
            .map(|m| parse_max(self.file, &id, m))
            .transpose()?
            .unwrap_or(None);
        if let Some(max) = max
            && raw.min > max
        {
            return Err(self.err(format!("{id}: min {} > max {max}", raw.min)));
        }
        let mut rules = Vec::with_capacity(raw.rules.len());
        for r in &raw.rules {
            rules.push(self.rule(r, &r.path, &id, item_elements, &id)?);
        }
        Ok(Slice {
            name: raw.name.clone(),
            id,
            matcher,
            min: raw.min,
            max,
            rules,
            meta: self.meta(raw.origin, raw.inferred, raw.severity, &raw.source),
        })
    }

    fn invariant(
        &self,
        raw: &RawInvariant,
        resource_type: &str,
        root: &'a [ElementDef],
    ) -> Result<Invariant, ConformError> {
        let (id, segs, elements): (String, Vec<Seg>, &'a [ElementDef]) =
            if raw.path == resource_type {
                (String::new(), Vec::new(), root)
            } else {
                let relative = raw
                    .path
                    .strip_prefix(resource_type)
                    .and_then(|p| p.strip_prefix('.'))
                    .ok_or_else(|| {
                        self.err(format!(
                            "invariant {}: path {:?} must start with {resource_type}",
                            raw.key, raw.path
                        ))
                    })?;
                let resolved = self.resolve(relative, root, resource_type)?;
                let elements = match &resolved.chosen_type {
                    Some(t) => self.defs.elements_of_type(t),
                    None => self.defs.children_of(resolved.element),
                };
                (relative.to_owned(), resolved.segs, elements)
            };
        let check = match (&raw.regex, &raw.any_of) {
            (Some(r), None) => InvariantCheck::Regex(full_regex(self.file, &raw.key, r)?),
            (None, Some(paths)) if !paths.is_empty() => {
                let mut resolved = Vec::with_capacity(paths.len());
                for p in paths {
                    let r = self.resolve(p, elements, &raw.path)?;
                    resolved.push((p.clone(), r.segs));
                }
                InvariantCheck::AnyOf(resolved)
            }
            _ => {
                return Err(self.err(format!(
                    "invariant {}: needs exactly one of regex or anyOf (non-empty)",
                    raw.key
                )));
            }
        };
        Ok(Invariant {
            key: raw.key.clone(),
            human: raw.human.clone(),
            id,
            segs,
            check,
            meta: self.meta(raw.origin, raw.inferred, raw.severity, &raw.source),
        })
    }
}
