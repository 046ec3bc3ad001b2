//! The R4 structure tables (`profiles/r4/structure.json`) as typed, indexed data.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// What a StructureDefinition describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TypeKind {
    PrimitiveType,
    ComplexType,
    Resource,
    Logical,
}

/// Upper bound of an element's cardinality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Max {
    One,
    Many,
    /// `0`: the element is prohibited (only in derived profiles).
    Zero,
}

impl Max {
    /// In FHIR JSON, an element with max > 1 is always an array, even with one item.
    pub fn is_array(self) -> bool {
        self == Max::Many
    }
}

/// One element of a type, with its children when it is a BackboneElement.
#[derive(Debug, Clone)]
pub struct ElementDef {
    /// Name as used in JSON, without the `[x]` of choice elements.
    pub name: String,
    /// `value[x]`-style element: the JSON key is the name followed by the capitalised type.
    pub is_choice: bool,
    pub min: u32,
    pub max: Max,
    /// Type codes (`string`, `HumanName`, `BackboneElement`, `Resource`, ...). Empty for content references.
    pub types: Vec<String>,
    /// For `Reference`/`canonical`: the resource types it may point to.
    pub targets: Vec<String>,
    /// `#Questionnaire.item`-style reuse of another element's definition.
    pub content_ref: Option<String>,
    /// Codes allowed by an enumerable required binding.
    pub codes: Option<Vec<String>>,
    /// Inline children (BackboneElement / Element).
    pub children: Vec<ElementDef>,
}

/// One resource or data type.
#[derive(Debug, Clone)]
pub struct TypeDef {
    pub name: String,
    pub kind: TypeKind,
    pub is_abstract: bool,
    /// For primitives: the official value regex (anchored when compiled by users).
    pub regex: Option<String>,
    pub elements: Vec<ElementDef>,
}

/// All R4 types, indexed by name.
#[derive(Debug)]
pub struct Definitions {
    types: HashMap<String, TypeDef>,
}

#[derive(Deserialize)]
struct RawStructure {
    types: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RawType {
    kind: TypeKind,
    #[serde(default)]
    r#abstract: bool,
    regex: Option<String>,
    #[serde(default)]
    elements: Vec<RawElement>,
}

#[derive(Deserialize)]
struct RawElement {
    name: String,
    min: u32,
    max: String,
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(rename = "contentRef")]
    content_ref: Option<String>,
    codes: Option<Vec<String>>,
    #[serde(default)]
    children: Vec<RawElement>,
}

impl From<RawElement> for ElementDef {
    fn from(raw: RawElement) -> Self {
        let (name, is_choice) = match raw.name.strip_suffix("[x]") {
            Some(stem) => (stem.to_owned(), true),
            None => (raw.name, false),
        };
        let max = match raw.max.as_str() {
            "1" => Max::One,
            "0" => Max::Zero,
            _ => Max::Many,
        };
        ElementDef {
            name,
            is_choice,
            min: raw.min,
            max,
            types: raw.types,
            targets: raw.targets,
            content_ref: raw.content_ref,
            codes: raw.codes,
            children: raw.children.into_iter().map(ElementDef::from).collect(),
        }
    }
}

/// How a JSON key matched an element: the element and, for choice elements, the chosen type.
#[derive(Debug, Clone, Copy)]
pub struct KeyMatch<'a> {
    pub element: &'a ElementDef,
    pub type_code: &'a str,
}

impl Definitions {
    /// The R4 (4.0.1) definitions shipped in `profiles`, parsed once per process.
    pub fn r4() -> &'static Definitions {
        static R4: OnceLock<Definitions> = OnceLock::new();
        R4.get_or_init(|| {
            Definitions::from_json(profiles::R4_STRUCTURE_JSON)
                .expect("profiles/r4/structure.json is generated and must parse")
        })
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let raw: RawStructure = serde_json::from_str(text)?;
        let mut types = HashMap::with_capacity(raw.types.len());
        for (name, value) in raw.types {
            let raw_type: RawType = serde_json::from_value(value)?;
            types.insert(
                name.clone(),
                TypeDef {
                    name,
                    kind: raw_type.kind,
                    is_abstract: raw_type.r#abstract,
                    regex: raw_type.regex,
                    elements: raw_type
                        .elements
                        .into_iter()
                        .map(ElementDef::from)
                        .collect(),
                },
            );
        }
        Ok(Definitions { types })
    }

    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// A concrete (non-abstract) resource type such as `Patient`.
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.types
            .get(name)
            .is_some_and(|t| t.kind == TypeKind::Resource && !t.is_abstract)
    }

    pub fn is_primitive(&self, type_code: &str) -> bool {
        self.types
            .get(type_code)
            .is_some_and(|t| t.kind == TypeKind::PrimitiveType)
    }

    /// Names of all concrete resource types, sorted.
    pub fn resource_types(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .types
            .values()
            .filter(|t| t.kind == TypeKind::Resource && !t.is_abstract)
            .map(|t| t.name.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// The child elements of an element: inline (BackboneElement), by content reference, or those
    /// of its single complex type. Primitives and choice elements of several types have none here;
    /// use [`Definitions::elements_of_type`] with the chosen type.
    pub fn children_of<'a>(&'a self, element: &'a ElementDef) -> &'a [ElementDef] {
        if !element.children.is_empty() {
            return &element.children;
        }
        if let Some(path) = &element.content_ref {
            return self.elements_at_path(path).unwrap_or(&[]);
        }
        match element.types.as_slice() {
            [single] => self.elements_of_type(single),
            _ => &[],
        }
    }

    /// The elements of a data type or resource type (empty for primitives and unknown types).
    pub fn elements_of_type(&self, type_code: &str) -> &[ElementDef] {
        self.types
            .get(type_code)
            .map(|t| t.elements.as_slice())
            .unwrap_or(&[])
    }

    /// The children of the element at a dotted path such as `Questionnaire.item`.
    pub fn elements_at_path(&self, path: &str) -> Option<&[ElementDef]> {
        let mut parts = path.split('.');
        let mut elements = self.types.get(parts.next()?)?.elements.as_slice();
        for part in parts {
            let element = elements.iter().find(|e| e.name == part)?;
            elements = self.children_of(element);
        }
        Some(elements)
    }

    /// Match a JSON property name (without a leading `_`) against a list of elements,
    /// resolving choice elements (`valueQuantity` → `value[x]` as `Quantity`).
    pub fn match_key<'a>(&'a self, elements: &'a [ElementDef], key: &str) -> Option<KeyMatch<'a>> {
        for element in elements {
            if element.is_choice {
                let Some(suffix) = key.strip_prefix(element.name.as_str()) else {
                    continue;
                };
                if let Some(type_code) = element.types.iter().find(|t| capitalised_eq(t, suffix)) {
                    return Some(KeyMatch { element, type_code });
                }
            } else if element.name == key {
                let type_code = element.types.first().map(String::as_str).unwrap_or("");
                return Some(KeyMatch { element, type_code });
            }
        }
        None
    }
}

/// `capitalised_eq("dateTime", "DateTime")`: choice suffixes capitalise the first letter only.
fn capitalised_eq(type_code: &str, suffix: &str) -> bool {
    let mut t = type_code.chars();
    let mut s = suffix.chars();
    match (t.next(), s.next()) {
        (Some(a), Some(b)) if a.to_ascii_uppercase() == b => t.eq(s),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r4_tables_load_and_know_patient() {
        let defs = Definitions::r4();
        assert!(defs.is_resource_type("Patient"));
        assert!(!defs.is_resource_type("DomainResource"));
        let patient = defs.type_def("Patient").unwrap();
        let gender = patient
            .elements
            .iter()
            .find(|e| e.name == "gender")
            .unwrap();
        assert_eq!(gender.codes.as_deref().unwrap().len(), 4);
    }

    #[test]
    fn choice_keys_resolve_to_their_type() {
        let defs = Definitions::r4();
        let obs = defs.elements_of_type("Observation");
        let m = defs.match_key(obs, "valueQuantity").unwrap();
        assert_eq!(
            (m.element.name.as_str(), m.type_code),
            ("value", "Quantity")
        );
        let m = defs.match_key(obs, "effectiveDateTime").unwrap();
        assert_eq!(m.type_code, "dateTime");
        assert!(defs.match_key(obs, "valueFoo").is_none());
    }

    #[test]
    fn content_references_resolve() {
        let defs = Definitions::r4();
        let items = defs.elements_at_path("Questionnaire.item.item").unwrap();
        assert!(items.iter().any(|e| e.name == "linkId"));
    }
}
