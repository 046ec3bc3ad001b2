//! The 予診票 forms Musubi serves: the Questionnaires embedded from
//! `profiles/jp/questionnaires/` plus any supplied at run time, and the map from vaccine type to
//! form (`vaccine-forms.json`).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use crate::error::PrevaccinationError;
use crate::questionnaire::validate_questionnaire;

/// One vaccine-forms file: `{"description": …, "vaccineForms": [{"vaccineType", "questionnaire",
/// "inferred"?, "note"?}]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VaccineFormsFile {
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for people editing the file")]
    description: Option<String>,
    #[serde(rename = "vaccineForms")]
    vaccine_forms: Vec<VaccineForm>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VaccineForm {
    #[serde(rename = "vaccineType")]
    vaccine_type: String,
    /// Canonical url, optionally `|version`.
    questionnaire: String,
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "marks a mapping the specs do not confirm; read by people"
    )]
    inferred: bool,
    #[serde(default)]
    #[allow(dead_code, reason = "free-text explanation for people")]
    note: Option<String>,
}

/// The Questionnaires and the vaccine-type → form map.
#[derive(Debug, Clone)]
pub struct Forms {
    questionnaires: Vec<Value>,
    /// vaccine type → canonical (`url` or `url|version`).
    by_vaccine: HashMap<String, String>,
}

impl Forms {
    /// The forms embedded in the binary, read once.
    pub fn embedded() -> Result<&'static Forms, PrevaccinationError> {
        static EMBEDDED: OnceLock<Result<Forms, PrevaccinationError>> = OnceLock::new();
        EMBEDDED
            .get_or_init(|| Forms::load(&[]))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The embedded forms plus `extra` `(file name, contents)` files. A file holding a
    /// Questionnaire adds it, or replaces the one with the same url and version (a correction);
    /// a file with `vaccineForms` adds or overrides vaccine-type mappings. Files are applied in
    /// the order given, after the embedded ones.
    pub fn load(extra: &[(String, String)]) -> Result<Forms, PrevaccinationError> {
        let embedded = profiles::JP_QUESTIONNAIRES
            .iter()
            .map(|(name, text)| (*name, *text, true));
        let supplied = extra
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str(), false));
        let mut questionnaires: Vec<(Value, String)> = Vec::new();
        let mut maps: Vec<(VaccineFormsFile, String)> = Vec::new();
        for (file, text, is_embedded) in embedded.chain(supplied) {
            let value: Value =
                serde_json::from_str(text).map_err(|e| PrevaccinationError::Parse {
                    file: file.to_owned(),
                    message: e.to_string(),
                })?;
            if value.get("resourceType").and_then(Value::as_str) == Some("Questionnaire") {
                let url = check(&value, file)?;
                let key = canonical_key(&value);
                match questionnaires
                    .iter()
                    .position(|(q, _)| canonical_key(q) == key)
                {
                    // Only a run-time file may replace an existing form; two shipped files
                    // with one url|version are a packaging mistake.
                    Some(i) if !is_embedded => questionnaires[i] = (value, file.to_owned()),
                    Some(i) => {
                        return Err(PrevaccinationError::Duplicate {
                            file: file.to_owned(),
                            what: format!("Questionnaire {url} (also in {})", questionnaires[i].1),
                        });
                    }
                    None => questionnaires.push((value, file.to_owned())),
                }
            } else if value.get("vaccineForms").is_some() {
                let map: VaccineFormsFile =
                    serde_json::from_value(value).map_err(|e| PrevaccinationError::Parse {
                        file: file.to_owned(),
                        message: e.to_string(),
                    })?;
                maps.push((map, file.to_owned()));
            } else {
                return Err(PrevaccinationError::Parse {
                    file: file.to_owned(),
                    message: "neither a Questionnaire nor a vaccineForms map".into(),
                });
            }
        }
        let mut forms = Forms {
            questionnaires: questionnaires.into_iter().map(|(q, _)| q).collect(),
            by_vaccine: HashMap::new(),
        };
        for (map, file) in maps {
            let mut in_this_file = std::collections::HashSet::new();
            for entry in map.vaccine_forms {
                if !in_this_file.insert(entry.vaccine_type.clone()) {
                    return Err(PrevaccinationError::Duplicate {
                        file,
                        what: format!("vaccine type {}", entry.vaccine_type),
                    });
                }
                if forms.questionnaire(&entry.questionnaire).is_none() {
                    return Err(PrevaccinationError::UnknownQuestionnaire {
                        file,
                        vaccine_type: entry.vaccine_type,
                        canonical: entry.questionnaire,
                    });
                }
                forms
                    .by_vaccine
                    .insert(entry.vaccine_type, entry.questionnaire);
            }
        }
        Ok(forms)
    }

    /// The Questionnaire with this canonical: `url|version` exactly, or for a bare `url` the
    /// highest version.
    pub fn questionnaire(&self, canonical: &str) -> Option<&Value> {
        let (url, version) = match canonical.split_once('|') {
            Some((url, version)) => (url, Some(version)),
            None => (canonical, None),
        };
        let candidates = self
            .questionnaires
            .iter()
            .filter(|q| q.get("url").and_then(Value::as_str) == Some(url));
        match version {
            Some(v) => candidates
                .into_iter()
                .find(|q| q.get("version").and_then(Value::as_str) == Some(v)),
            None => candidates.max_by(|a, b| compare_versions(version_of(a), version_of(b))),
        }
    }

    /// The form used for a vaccine-type code of `https://musubi.example.org/fhir/CodeSystem/vaccine-type`.
    pub fn for_vaccine(&self, vaccine_type: &str) -> Option<&Value> {
        self.by_vaccine
            .get(vaccine_type)
            .and_then(|canonical| self.questionnaire(canonical))
    }

    /// Every Questionnaire, embedded first (in file-name order), then those added at run time.
    pub fn all(&self) -> &[Value] {
        &self.questionnaires
    }

    /// The vaccine types that have a form, sorted.
    pub fn vaccine_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.by_vaccine.keys().map(String::as_str).collect();
        types.sort_unstable();
        types
    }
}

/// The embedded Questionnaires.
pub fn questionnaires() -> Result<&'static [Value], PrevaccinationError> {
    Forms::embedded().map(Forms::all)
}

/// Reject a Questionnaire that breaks an R4 item rule or Musubi's form rules; return its url.
fn check(questionnaire: &Value, file: &str) -> Result<String, PrevaccinationError> {
    let url = questionnaire
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or("(no url)")
        .to_owned();
    let problems: Vec<String> = validate_questionnaire(questionnaire)
        .into_iter()
        .filter(|i| i.severity.is_error())
        .map(|i| format!("{}: {}", i.expression, i.diagnostics))
        .collect();
    if problems.is_empty() {
        Ok(url)
    } else {
        Err(PrevaccinationError::InvalidQuestionnaire {
            file: file.to_owned(),
            url,
            message: problems.join("; "),
        })
    }
}

fn version_of(q: &Value) -> &str {
    q.get("version").and_then(Value::as_str).unwrap_or("")
}

fn canonical_key(q: &Value) -> (String, String) {
    let url = q.get("url").and_then(Value::as_str).unwrap_or("");
    (url.to_owned(), version_of(q).to_owned())
}

/// Dotted versions compare part by part, numerically where both parts are numbers
/// (`1.10.0` > `1.9.0`).
fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ordering = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    _ => x.cmp(y),
                };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("1.10.0", "1.9.0"), Ordering::Greater);
        assert_eq!(compare_versions("1.0", "1.0.1"), Ordering::Less);
        assert_eq!(compare_versions("2", "2"), Ordering::Equal);
    }
}
