//! The queries: `$lookup`, `$validate-code`, value-set membership, and the vaccine mappings.

use unicode_normalization::UnicodeNormalization;

use crate::model::{
    CodeSystemEntry, ComposePart, Concept, PropertyValue, ValueSetEntry, strip_version,
};
use crate::{
    Coding, Lookup, Membership, Terminology, TerminologyError, VACCINE_TYPE_SYSTEM, ValidateCode,
    Validation,
};

/// Membership with the reasons kept apart (the public [`Membership`] folds the two
/// cannot-decide cases together).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision<'t> {
    Member { system: &'t str },
    NotMember,
    UnknownSystem(&'t str),
    NotInSubset(&'t str),
}

impl Decision<'_> {
    /// Ranking for OR-ing include entries: a member anywhere wins, then "cannot tell".
    fn rank(&self) -> u8 {
        match self {
            Decision::Member { .. } => 3,
            Decision::NotInSubset(_) => 2,
            Decision::UnknownSystem(_) => 1,
            Decision::NotMember => 0,
        }
    }

    fn or(self, other: Self) -> Self {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// AND of the conditions inside one compose entry: a definite no wins, then "cannot tell".
    fn and(self, other: Self) -> Self {
        match (&self, &other) {
            (Decision::NotMember, _) | (_, Decision::NotMember) => Decision::NotMember,
            (Decision::Member { .. }, _) => other,
            _ => self,
        }
    }
}

impl Terminology {
    /// FHIR R4 `CodeSystem/$lookup`. `system` may be any alias form.
    pub fn lookup(&self, system: &str, code: &str) -> Result<Lookup, TerminologyError> {
        let entry = self
            .code_systems
            .get(self.canonical_system(system))
            .ok_or_else(|| TerminologyError::UnknownSystem(system.to_owned()))?;
        let concept = entry
            .concept(code)
            .ok_or_else(|| missing_code(entry, code))?;
        Ok(Lookup {
            system: entry.url.clone(),
            code: concept.code.clone(),
            name: entry.name.clone(),
            version: entry.version.clone(),
            display: concept
                .display
                .clone()
                .unwrap_or_else(|| concept.code.clone()),
            designations: concept.designations.clone(),
            properties: concept.properties.clone(),
        })
    }

    /// FHIR R4 `$validate-code` (ValueSet form when `value_set` is given, CodeSystem form
    /// otherwise). Answers (docs/terminology.md):
    /// - known code, right display → `result: true`;
    /// - known code, wrong display → `result: true` with a warning `message` and the right
    ///   `display` (R4: a message with `result: true` carries hints and warnings);
    /// - code outside Musubi's subset of a `fragment` code system → `result: true` with a
    ///   warning that the code is not known in Musubi's subset;
    /// - code not in the value set, or unknown in a complete code system → `result: false`;
    /// - code system Musubi does not hold → `result: false`, "cannot be validated".
    ///
    /// Errors: an unknown value set, or a request with neither value set nor system.
    pub fn validate_code(
        &self,
        request: &ValidateCode<'_>,
    ) -> Result<Validation, TerminologyError> {
        let code = request.code;
        if code.trim().is_empty() {
            return Err(TerminologyError::InvalidRequest(
                "$validate-code needs a code".to_owned(),
            ));
        }
        let system = request.system.map(|s| self.canonical_system(s));
        let (decision, value_set) = match request.value_set {
            Some(url) => {
                let entry = self
                    .value_sets
                    .get(strip_version(url))
                    .ok_or_else(|| TerminologyError::UnknownValueSet(url.to_owned()))?;
                (self.in_set(entry, system, code), Some(entry.url.as_str()))
            }
            None => {
                let system = system.ok_or_else(|| {
                    TerminologyError::InvalidRequest(
                        "$validate-code needs a system or a value set (url)".to_owned(),
                    )
                })?;
                (self.in_system(system, code), None)
            }
        };
        Ok(match decision {
            Decision::Member { system: found } => {
                let concept = self.code_systems.get(found).and_then(|cs| cs.concept(code));
                let recommended =
                    concept.map(|c| c.display.clone().unwrap_or_else(|| c.code.clone()));
                let message = match (request.display, concept, &recommended) {
                    (Some(given), Some(concept), Some(expected))
                        if !accepts_display(concept, given) =>
                    {
                        Some(format!(
                            "The display '{given}' is not a display Musubi knows for {found}#{code}; Musubi's display is '{expected}'. The code itself is valid; only the display differs."
                        ))
                    }
                    _ => None,
                };
                Validation {
                    result: true,
                    message,
                    display: recommended,
                }
            }
            Decision::NotMember => Validation {
                result: false,
                message: Some(match value_set {
                    Some(vs) => format!(
                        "The code '{code}'{} is not in the value set {vs}",
                        system.map(|s| format!(" from {s}")).unwrap_or_default()
                    ),
                    None => format!(
                        "Unknown code '{code}' in the code system {}",
                        system.unwrap_or_default()
                    ),
                }),
                display: None,
            },
            Decision::UnknownSystem(unknown) => Validation {
                result: false,
                message: Some(format!(
                    "Musubi does not know the code system {unknown}, so the code '{code}' cannot be validated"
                )),
                display: None,
            },
            Decision::NotInSubset(partial) => Validation {
                result: true,
                message: Some(format!(
                    "The code '{code}' is not known in Musubi's subset of {partial}. Musubi ships only part of this code system (content: fragment), so the code could not be confirmed; it is not reported as invalid."
                )),
                display: None,
            },
        })
    }

    /// Whether `code` (optionally of `system`, any alias form) is in the value set.
    pub fn in_value_set(&self, value_set: &str, system: Option<&str>, code: &str) -> Membership {
        let Some(entry) = self.value_sets.get(strip_version(value_set)) else {
            return Membership::UnknownValueSet;
        };
        match self.in_set(entry, system.map(|s| self.canonical_system(s)), code) {
            Decision::Member { .. } => Membership::Member,
            Decision::NotMember => Membership::NotMember,
            Decision::UnknownSystem(_) | Decision::NotInSubset(_) => Membership::UnknownSystem,
        }
    }

    /// The Musubi vaccine type of a product code (HOT13, HOT9 or YJ, any alias form of the
    /// system), or the code itself when the coding already is a vaccine type.
    pub fn vaccine_type_of(&self, system: &str, code: &str) -> Option<&str> {
        let system = self.canonical_system(system);
        let entry = self.code_systems.get(system)?;
        if system == VACCINE_TYPE_SYSTEM {
            return entry.concept(code).map(|c| c.code.as_str());
        }
        let key = if entry.case_sensitive {
            code.to_owned()
        } else {
            code.to_lowercase()
        };
        self.vaccine_types
            .get(&(system.to_owned(), key))
            .map(String::as_str)
    }

    /// The diseases a vaccine type protects against, for `protocolApplied.targetDisease`
    /// (MEDIS 病名交換用コード where sourced, Musubi's target-disease codes otherwise).
    /// Unknown vaccine types have none.
    pub fn target_diseases_of(&self, vaccine_type: &str) -> Vec<Coding> {
        let Some(concept) = self
            .code_systems
            .get(VACCINE_TYPE_SYSTEM)
            .and_then(|cs| cs.concept(vaccine_type))
        else {
            return Vec::new();
        };
        concept
            .properties
            .iter()
            .filter(|p| p.code == "target-disease")
            .filter_map(|p| match &p.value {
                PropertyValue::Coding(coding) => Some(coding.clone()),
                _ => None,
            })
            .collect()
    }

    fn in_system<'t>(&'t self, system: &'t str, code: &str) -> Decision<'t> {
        match self.code_systems.get(system) {
            None => Decision::UnknownSystem(system),
            Some(entry) if entry.concept(code).is_some() => Decision::Member {
                system: entry.url.as_str(),
            },
            Some(entry) if entry.is_complete() => Decision::NotMember,
            Some(entry) => Decision::NotInSubset(entry.url.as_str()),
        }
    }

    fn in_set<'t>(
        &'t self,
        entry: &'t ValueSetEntry,
        system: Option<&str>,
        code: &str,
    ) -> Decision<'t> {
        let decision = entry
            .includes
            .iter()
            .map(|part| self.in_part(part, system, code))
            .fold(Decision::NotMember, Decision::or);
        // An explicit exclusion settles it, even when the include could not tell.
        let excluded = decision != Decision::NotMember
            && entry
                .excludes
                .iter()
                .any(|part| matches!(self.in_part(part, system, code), Decision::Member { .. }));
        if excluded {
            Decision::NotMember
        } else {
            decision
        }
    }

    fn in_part<'t>(
        &'t self,
        part: &'t ComposePart,
        system: Option<&str>,
        code: &str,
    ) -> Decision<'t> {
        let mut decision = None;
        if let Some(part_system) = part.system.as_deref() {
            let d = if system.is_some_and(|s| s != part_system) {
                Decision::NotMember
            } else if part.concepts.is_empty() {
                self.in_system(part_system, code)
            } else {
                let known = self.code_systems.get(part_system);
                let listed = part
                    .concepts
                    .iter()
                    .any(|(listed, _)| same_code(known, listed, code));
                if listed {
                    Decision::Member {
                        system: part_system,
                    }
                } else {
                    Decision::NotMember
                }
            };
            decision = Some(d);
        }
        for url in &part.value_sets {
            // References were checked at load; a missing one cannot happen.
            let d = self
                .value_sets
                .get(url)
                .map_or(Decision::NotMember, |vs| self.in_set(vs, system, code));
            decision = Some(match decision {
                None => d,
                Some(previous) => previous.and(d),
            });
        }
        decision.unwrap_or(Decision::NotMember)
    }
}

fn missing_code(entry: &CodeSystemEntry, code: &str) -> TerminologyError {
    if entry.is_complete() {
        TerminologyError::UnknownCode {
            system: entry.url.clone(),
            code: code.to_owned(),
        }
    } else {
        TerminologyError::CodeNotInSubset {
            system: entry.url.clone(),
            code: code.to_owned(),
        }
    }
}

fn same_code(system: Option<&CodeSystemEntry>, listed: &str, code: &str) -> bool {
    match system {
        Some(cs) if !cs.case_sensitive => listed.to_lowercase() == code.to_lowercase(),
        _ => listed == code,
    }
}

/// A display is accepted when it matches the concept's display or any designation after
/// NFKC folding and with white space removed: Japanese systems mix full-width and half-width
/// forms (ＢＭＩ / BMI) and spacing freely, and neither changes the meaning.
fn accepts_display(concept: &Concept, given: &str) -> bool {
    let given = fold(given);
    concept
        .display
        .iter()
        .chain(concept.designations.iter().map(|d| &d.value))
        .any(|candidate| fold(candidate) == given)
}

fn fold(text: &str) -> String {
    text.nfkc().filter(|c| !c.is_whitespace()).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::load::build;

    /// A terminology made only of the given resources (no built-in data).
    fn only(resources: &[serde_json::Value]) -> Terminology {
        let files: Vec<(String, String)> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("{i}.json"), r.to_string()))
            .collect();
        build(&[], &files).expect("test data loads")
    }

    fn cs(url: &str, content: &str, case_sensitive: bool, codes: &[&str]) -> serde_json::Value {
        json!({"resourceType": "CodeSystem", "url": url, "status": "active", "content": content,
               "caseSensitive": case_sensitive,
               "concept": codes.iter().map(|c| json!({"code": c})).collect::<Vec<_>>()})
    }

    fn vs(url: &str, compose: serde_json::Value) -> serde_json::Value {
        json!({"resourceType": "ValueSet", "url": url, "status": "active", "compose": compose})
    }

    #[test]
    fn membership_distinguishes_fragment_complete_and_unknown() {
        let t = only(&[
            cs("http://x/complete", "complete", true, &["a"]),
            cs("http://x/fragment", "fragment", true, &["a"]),
            vs(
                "http://x/vs",
                json!({"include": [
                    {"system": "http://x/complete"}, {"system": "http://x/fragment"}, {"system": "http://x/unknown"}
                ]}),
            ),
        ]);
        let entry = &t.value_sets["http://x/vs"];
        let cases = [
            (
                Some("http://x/complete"),
                "a",
                Decision::Member {
                    system: "http://x/complete",
                },
            ),
            (Some("http://x/complete"), "b", Decision::NotMember),
            (
                Some("http://x/fragment"),
                "b",
                Decision::NotInSubset("http://x/fragment"),
            ),
            (
                Some("http://x/unknown"),
                "b",
                Decision::UnknownSystem("http://x/unknown"),
            ),
            (Some("http://x/elsewhere"), "a", Decision::NotMember),
            // Without a system the best answer over all includes wins.
            (
                None,
                "a",
                Decision::Member {
                    system: "http://x/complete",
                },
            ),
            (None, "b", Decision::NotInSubset("http://x/fragment")),
        ];
        for (system, code, expected) in cases {
            assert_eq!(t.in_set(entry, system, code), expected, "{system:?} {code}");
        }
    }

    #[test]
    fn exclusions_settle_even_undecided_codes() {
        let t = only(&[
            cs("http://x/fragment", "fragment", true, &["a"]),
            vs(
                "http://x/vs",
                json!({
                    "include": [{"system": "http://x/fragment"}],
                    "exclude": [{"system": "http://x/fragment", "concept": [{"code": "a"}, {"code": "z"}]}]
                }),
            ),
        ]);
        for code in ["a", "z"] {
            assert_eq!(
                t.in_value_set("http://x/vs", None, code),
                Membership::NotMember,
                "{code}"
            );
        }
        assert_eq!(
            t.in_value_set("http://x/vs", None, "q"),
            Membership::UnknownSystem
        );
    }

    #[test]
    fn case_insensitive_systems_match_any_case() {
        let t = only(&[
            cs("http://x/ci", "complete", false, &["AbC"]),
            vs(
                "http://x/vs",
                json!({"include": [{"system": "http://x/ci", "concept": [{"code": "ABC"}]}]}),
            ),
        ]);
        assert_eq!(
            t.lookup("http://x/ci", "abc").map(|l| l.code),
            Ok("AbC".to_owned())
        );
        assert_eq!(
            t.in_value_set("http://x/vs", None, "abc"),
            Membership::Member
        );
    }

    #[test]
    fn a_concept_without_display_looks_up_with_its_code() {
        let t = only(&[cs("http://x/cs", "complete", true, &["a"])]);
        let lookup = t.lookup("http://x/cs", "a").unwrap();
        assert_eq!(
            (lookup.name.as_str(), lookup.display.as_str()),
            ("http://x/cs", "a")
        );
    }

    #[test]
    fn decision_and_or() {
        let member = || Decision::Member { system: "s" };
        assert_eq!(
            member().and(Decision::NotInSubset("f")),
            Decision::NotInSubset("f")
        );
        assert_eq!(
            Decision::NotInSubset("f").and(Decision::NotMember),
            Decision::NotMember
        );
        assert_eq!(
            Decision::UnknownSystem("u").or(Decision::NotInSubset("f")),
            Decision::NotInSubset("f")
        );
        assert_eq!(Decision::NotMember.or(member()), member());
    }

    #[test]
    fn display_folding() {
        assert_eq!(fold("ＢＭＩ"), "BMI");
        assert_eq!(fold(" 左　上腕 "), "左上腕");
        assert_ne!(fold("体重"), fold("身長"));
    }
}
