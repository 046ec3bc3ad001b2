//! Builds a [`Terminology`] from data files: the built-in ones, then the extra ones supplied at
//! run time. Every check that can be made on the data is made here, once, so that answering
//! requests cannot fail on bad data.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use crate::model::{AliasFile, CodeSystemEntry, PropertyValue, ValueSetEntry};
use crate::{SystemAlias, Terminology, TerminologyError, VACCINE_TYPE_SYSTEM};

/// Which layer a file belongs to: duplicates inside a layer are errors, an extra file with the
/// URL of a built-in one extends (CodeSystem) or replaces (ValueSet) it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layer {
    Builtin,
    Extra,
}

struct Authored {
    resource: Value,
    file: String,
    layer: Layer,
}

#[derive(Default)]
struct Collected {
    code_systems: BTreeMap<String, Authored>,
    value_sets: BTreeMap<String, Authored>,
    alias_files: Vec<(AliasFile, String)>,
    skipped: Vec<String>,
}

pub(crate) fn build(
    builtin: &[(&str, &str)],
    extra: &[(String, String)],
) -> Result<Terminology, TerminologyError> {
    let mut collected = Collected::default();
    for (name, text) in builtin {
        collect(&mut collected, name, text, Layer::Builtin)?;
    }
    for (name, text) in extra {
        collect(&mut collected, name, text, Layer::Extra)?;
    }

    let (aliases, system_aliases) = alias_table(&collected)?;
    let canonical = |system: &str| crate::canonical_of(&aliases, system).to_owned();

    let mut code_systems = BTreeMap::new();
    for (url, authored) in collected.code_systems {
        if aliases.contains_key(&url) {
            return Err(TerminologyError::InvalidFile {
                file: authored.file,
                reason: format!(
                    "CodeSystem.url {url} is an alias; use the canonical URL {}",
                    aliases[&url]
                ),
            });
        }
        let entry = CodeSystemEntry::parse(authored.resource, &authored.file)?;
        code_systems.insert(url, entry);
    }
    let mut value_sets = BTreeMap::new();
    for (url, authored) in collected.value_sets {
        let entry = ValueSetEntry::parse(authored.resource, &authored.file, &canonical)?;
        value_sets.insert(url, entry);
    }
    check_value_set_references(&value_sets)?;

    let terminology = Terminology {
        vaccine_types: vaccine_type_index(&code_systems)?,
        code_systems,
        value_sets,
        aliases,
        system_aliases,
        skipped: collected.skipped,
    };
    check_target_diseases(&terminology)?;
    Ok(terminology)
}

fn collect(
    collected: &mut Collected,
    name: &str,
    text: &str,
    layer: Layer,
) -> Result<(), TerminologyError> {
    // The GS1 barcode tables share the folder and have their own loader.
    if name.starts_with("gtin-") {
        collected.skipped.push(name.to_owned());
        return Ok(());
    }
    let value: Value = serde_json::from_str(text).map_err(|e| TerminologyError::Json {
        file: name.to_owned(),
        message: e.to_string(),
    })?;
    let resource_type = value.get("resourceType").and_then(Value::as_str);
    let data_type = value.get("musubiDataType").and_then(Value::as_str);
    let url = || {
        value
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| TerminologyError::InvalidFile {
                file: name.to_owned(),
                reason: "the resource has no url".to_owned(),
            })
    };
    match (resource_type, data_type) {
        (Some("CodeSystem"), _) => {
            let url = url()?;
            let authored = Authored {
                resource: value,
                file: name.to_owned(),
                layer,
            };
            match collected.code_systems.get_mut(&url) {
                None => {
                    collected.code_systems.insert(url, authored);
                }
                Some(base) if base.layer == Layer::Builtin && layer == Layer::Extra => {
                    merge_code_system(&mut base.resource, authored.resource, name)?;
                    base.file = format!("{} + {}", base.file, name);
                    base.layer = Layer::Extra;
                }
                Some(base) => {
                    return Err(TerminologyError::DuplicateUrl {
                        url,
                        first: base.file.clone(),
                        second: name.to_owned(),
                    });
                }
            }
        }
        (Some("ValueSet"), _) => {
            let url = url()?;
            if let Some(base) = collected.value_sets.get(&url)
                && base.layer == layer
            {
                return Err(TerminologyError::DuplicateUrl {
                    url,
                    first: base.file.clone(),
                    second: name.to_owned(),
                });
            }
            // An extra ValueSet replaces the built-in one whole: merging two composes could
            // silently widen a binding.
            collected.value_sets.insert(
                url,
                Authored {
                    resource: value,
                    file: name.to_owned(),
                    layer,
                },
            );
        }
        (None, Some("system-aliases")) => {
            let file: AliasFile =
                serde_json::from_value(value).map_err(|e| TerminologyError::InvalidFile {
                    file: name.to_owned(),
                    reason: format!("not a usable system-alias table: {e}"),
                })?;
            collected.alias_files.push((file, name.to_owned()));
        }
        // Other definitional resources or tables in the folder belong to other loaders.
        _ => collected.skipped.push(name.to_owned()),
    }
    Ok(())
}

/// Extra concepts are added to the built-in code system; an extra concept with the code of a
/// built-in one replaces it (top-level concepts only). Extra property declarations are added;
/// other extra top-level elements (description, version, content…) override the built-in ones.
fn merge_code_system(base: &mut Value, extra: Value, file: &str) -> Result<(), TerminologyError> {
    let invalid = |reason: &str| TerminologyError::InvalidFile {
        file: file.to_owned(),
        reason: reason.to_owned(),
    };
    let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) else {
        return Err(invalid("a CodeSystem must be a JSON object"));
    };
    for (key, value) in extra {
        match key.as_str() {
            "concept" | "property" => {
                let Value::Array(items) = value else {
                    return Err(invalid(&format!("CodeSystem.{key} must be an array")));
                };
                let target = base
                    .entry(key.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Some(target) = target.as_array_mut() else {
                    return Err(invalid(&format!(
                        "built-in CodeSystem.{key} is not an array"
                    )));
                };
                for item in items {
                    let code = item.get("code").cloned();
                    match target.iter_mut().find(|t| t.get("code") == code.as_ref()) {
                        Some(existing) => *existing = item,
                        None => target.push(item),
                    }
                }
            }
            "count" => {}
            _ => {
                base.insert(key, value);
            }
        }
    }
    // A stale count would misreport the merged system; only complete systems carry one.
    base.remove("count");
    if base.get("content").and_then(Value::as_str) == Some("complete") {
        let count = base
            .get("concept")
            .and_then(Value::as_array)
            .map_or(0, |c| count_concepts(c));
        base.insert("count".to_owned(), Value::from(count));
    }
    Ok(())
}

fn count_concepts(concepts: &[Value]) -> usize {
    concepts
        .iter()
        .map(|c| {
            1 + c
                .get("concept")
                .and_then(Value::as_array)
                .map_or(0, |nested| count_concepts(nested))
        })
        .sum()
}

type AliasTable = (HashMap<String, String>, Vec<SystemAlias>);

fn alias_table(collected: &Collected) -> Result<AliasTable, TerminologyError> {
    let mut aliases: HashMap<String, String> = HashMap::new();
    let mut listed = Vec::new();
    // A code system authored under an alias URL is reported by the caller, naming its file.
    let canonicals: HashSet<&str> = collected
        .alias_files
        .iter()
        .flat_map(|(f, _)| f.systems.iter().map(|s| s.canonical.as_str()))
        .collect();
    for (file, name) in &collected.alias_files {
        for system in &file.systems {
            for alias in &system.aliases {
                if canonicals.contains(alias.value.as_str()) {
                    return Err(TerminologyError::InvalidFile {
                        file: name.clone(),
                        reason: format!(
                            "{} is listed as an alias of {} but is itself a canonical system URL",
                            alias.value, system.canonical
                        ),
                    });
                }
                match aliases.get(&alias.value) {
                    Some(other) if other != &system.canonical => {
                        return Err(TerminologyError::AliasConflict {
                            alias: alias.value.clone(),
                            first: other.clone(),
                            second: system.canonical.clone(),
                        });
                    }
                    Some(_) => continue,
                    None => {}
                }
                aliases.insert(alias.value.clone(), system.canonical.clone());
                listed.push(SystemAlias {
                    alias: alias.value.clone(),
                    canonical: system.canonical.clone(),
                    name: system.name.clone(),
                    identifier_system: matches!(system.kind, crate::model::SystemKind::Identifier),
                    source: alias.source.clone(),
                    conflict: alias.conflict.clone(),
                    file: name.clone(),
                });
            }
        }
    }
    Ok((aliases, listed))
}

fn check_value_set_references(
    value_sets: &BTreeMap<String, ValueSetEntry>,
) -> Result<(), TerminologyError> {
    for entry in value_sets.values() {
        for reference in entry
            .includes
            .iter()
            .chain(&entry.excludes)
            .flat_map(|p| &p.value_sets)
        {
            if !value_sets.contains_key(reference) {
                return Err(TerminologyError::UnknownValueSetReference {
                    file: entry.file.clone(),
                    value_set: entry.url.clone(),
                    reference: reference.clone(),
                });
            }
        }
    }
    // Depth-first search for loops, so that membership checks always terminate.
    fn visit<'a>(
        url: &'a str,
        value_sets: &'a BTreeMap<String, ValueSetEntry>,
        path: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Result<(), TerminologyError> {
        if done.contains(url) {
            return Ok(());
        }
        if path.contains(&url) {
            return Err(TerminologyError::ValueSetCycle {
                value_set: url.to_owned(),
            });
        }
        path.push(url);
        let entry = &value_sets[url];
        for reference in entry
            .includes
            .iter()
            .chain(&entry.excludes)
            .flat_map(|p| &p.value_sets)
        {
            visit(reference, value_sets, path, done)?;
        }
        path.pop();
        done.insert(url);
        Ok(())
    }
    let mut done = HashSet::new();
    for url in value_sets.keys() {
        visit(url, value_sets, &mut Vec::new(), &mut done)?;
    }
    Ok(())
}

type VaccineIndex = HashMap<(String, String), String>;

/// (product system, product code key) → vaccine type, from every concept's `vaccine-type`
/// property. A property naming an unknown vaccine type is a data error.
fn vaccine_type_index(
    code_systems: &BTreeMap<String, CodeSystemEntry>,
) -> Result<VaccineIndex, TerminologyError> {
    let vaccine_types = code_systems.get(VACCINE_TYPE_SYSTEM);
    let mut index = HashMap::new();
    for (url, entry) in code_systems {
        for (key, concept) in &entry.concepts {
            for property in &concept.properties {
                if property.code != "vaccine-type" {
                    continue;
                }
                let PropertyValue::Code(vaccine_type) = &property.value else {
                    return Err(TerminologyError::DanglingMapping {
                        file: entry.file.clone(),
                        reason: format!(
                            "{url}#{}: the vaccine-type property must be a valueCode",
                            concept.code
                        ),
                    });
                };
                if vaccine_types
                    .and_then(|v| v.concept(vaccine_type))
                    .is_none()
                {
                    return Err(TerminologyError::DanglingMapping {
                        file: entry.file.clone(),
                        reason: format!(
                            "{url}#{} maps to vaccine type '{vaccine_type}', which {VACCINE_TYPE_SYSTEM} does not define",
                            concept.code
                        ),
                    });
                }
                index.insert((url.clone(), key.clone()), vaccine_type.clone());
            }
        }
    }
    Ok(index)
}

/// Every `target-disease` of a vaccine type must be a Coding that Musubi can look up, so that
/// what the gateway writes into `protocolApplied.targetDisease` is always resolvable.
fn check_target_diseases(terminology: &Terminology) -> Result<(), TerminologyError> {
    let Some(vaccine_types) = terminology.code_systems.get(VACCINE_TYPE_SYSTEM) else {
        return Ok(());
    };
    for concept in vaccine_types.concepts.values() {
        for property in &concept.properties {
            if property.code != "target-disease" {
                continue;
            }
            let fail = |reason: String| TerminologyError::DanglingMapping {
                file: vaccine_types.file.clone(),
                reason,
            };
            let PropertyValue::Coding(coding) = &property.value else {
                return Err(fail(format!(
                    "vaccine type '{}': target-disease must be a valueCoding",
                    concept.code
                )));
            };
            if terminology.lookup(&coding.system, &coding.code).is_err() {
                return Err(fail(format!(
                    "vaccine type '{}': target disease {}#{} is not a known concept",
                    concept.code, coding.system, coding.code
                )));
            }
        }
    }
    Ok(())
}
