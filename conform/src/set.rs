//! The set of known profiles: the embedded data files plus any supplied at run time, indexed by
//! canonical URL and by the resource type they are enforced on by default.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use fhir::Definitions;
use fhir::validate::{Issue, IssueType, Severity};
use serde_json::Value;

use crate::check::check_profile;
use crate::profile::{Profile, compile};
use crate::{ConformError, Terminology};

/// Every known profile, parsed once.
#[derive(Debug)]
pub struct ProfileSet {
    /// In load order: embedded files by name, then extra files as given.
    profiles: Vec<Profile>,
    by_url: HashMap<String, usize>,
    by_type: HashMap<String, usize>,
}

/// `url|version` → (`url`, `Some(version)`).
fn split_canonical(canonical: &str) -> (&str, Option<&str>) {
    match canonical.split_once('|') {
        Some((url, version)) => (url, Some(version)),
        None => (canonical, None),
    }
}

impl ProfileSet {
    /// The profiles shipped in `profiles/jp/structure/`, parsed once per process.
    pub fn embedded() -> Result<&'static ProfileSet, ConformError> {
        static EMBEDDED: OnceLock<Result<ProfileSet, ConformError>> = OnceLock::new();
        EMBEDDED
            .get_or_init(|| ProfileSet::load(&[]))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The embedded profiles plus `extra` `(file name, contents)` files. An extra file whose URL
    /// is already embedded replaces the embedded profile (a correction by data); two extra files
    /// with one URL, or two profiles enforced by default on one type, are errors.
    pub fn load(extra: &[(String, String)]) -> Result<ProfileSet, ConformError> {
        let defs = Definitions::r4();
        let mut set = ProfileSet {
            profiles: Vec::new(),
            by_url: HashMap::new(),
            by_type: HashMap::new(),
        };
        for (name, text) in profiles::JP_STRUCTURE {
            set.insert(compile(name, text, defs)?, None)?;
        }
        let mut extra_urls = HashSet::new();
        for (name, text) in extra {
            set.insert(compile(name, text, defs)?, Some(&mut extra_urls))?;
        }
        for (i, profile) in set.profiles.iter().enumerate() {
            if !profile.is_default_for_type() {
                continue;
            }
            if let Some(&other) = set.by_type.get(profile.resource_type()) {
                return Err(ConformError::data(
                    profile.file(),
                    format!(
                        "{} and {} ({}) are both the default for {}",
                        profile.name(),
                        set.profiles[other].name(),
                        set.profiles[other].file(),
                        profile.resource_type()
                    ),
                ));
            }
            set.by_type.insert(profile.resource_type().to_owned(), i);
        }
        Ok(set)
    }

    /// Add a profile; `extra_urls` holds the URLs already supplied by extra files.
    fn insert(
        &mut self,
        profile: Profile,
        extra_urls: Option<&mut HashSet<String>>,
    ) -> Result<(), ConformError> {
        let existing = self.by_url.get(profile.url()).copied();
        match (existing, extra_urls) {
            (Some(i), Some(extra_urls)) if !extra_urls.contains(profile.url()) => {
                extra_urls.insert(profile.url().to_owned());
                self.profiles[i] = profile;
                Ok(())
            }
            (Some(i), _) => Err(ConformError::data(
                profile.file(),
                format!(
                    "{} is already defined by {}",
                    profile.url(),
                    self.profiles[i].file()
                ),
            )),
            (None, extra_urls) => {
                if let Some(extra_urls) = extra_urls {
                    extra_urls.insert(profile.url().to_owned());
                }
                self.by_url
                    .insert(profile.url().to_owned(), self.profiles.len());
                self.profiles.push(profile);
                Ok(())
            }
        }
    }

    /// The profile with this canonical URL; `url|version` must match the version too.
    pub fn get(&self, url: &str) -> Option<&Profile> {
        let (url, version) = split_canonical(url);
        let profile = &self.profiles[*self.by_url.get(url)?];
        match version {
            Some(v) if v != profile.version() => None,
            _ => Some(profile),
        }
    }

    /// The profile enforced when configuration requires resources of this type to conform
    /// (JP_Patient for Patient, JP_Immunization for Immunization, …).
    pub fn default_for_type(&self, resource_type: &str) -> Option<&Profile> {
        self.by_type.get(resource_type).map(|&i| &self.profiles[i])
    }

    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.iter()
    }

    /// Validate against every profile the resource claims in `meta.profile` (an unknown claimed
    /// profile gives a warning "not known here; not checked") plus `also` (e.g. the type's
    /// default when the configuration enforces it). Each profile is checked once.
    pub fn validate(
        &self,
        resource: &Value,
        also: &[&str],
        terminology: &dyn Terminology,
    ) -> Vec<Issue> {
        let mut issues = Vec::new();
        let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
            issues.push(Issue {
                severity: Severity::Error,
                code: IssueType::Structure,
                expression: String::new(),
                diagnostics: "profile validation needs a resource (an object with resourceType)"
                    .to_owned(),
            });
            return issues;
        };
        let claimed = resource
            .get("meta")
            .and_then(|m| m.get("profile"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut wanted: Vec<(String, &str)> = Vec::new();
        for (i, p) in claimed.iter().enumerate() {
            if let Some(p) = p.as_str() {
                wanted.push((format!("{resource_type}.meta.profile[{i}]"), p));
            }
        }
        for p in also {
            wanted.push((resource_type.to_owned(), p));
        }
        let mut done: Vec<&str> = Vec::new();
        for (expression, canonical) in wanted {
            let (url, version) = split_canonical(canonical);
            let Some(&index) = self.by_url.get(url) else {
                issues.push(Issue {
                    severity: Severity::Warning,
                    code: IssueType::Informational,
                    expression,
                    diagnostics: format!("profile {canonical} is not known here; not checked"),
                });
                continue;
            };
            let profile = &self.profiles[index];
            if done.contains(&profile.url()) {
                continue;
            }
            done.push(profile.url());
            if profile.resource_type() != resource_type {
                issues.push(Issue {
                    severity: Severity::Error,
                    code: IssueType::Invalid,
                    expression,
                    diagnostics: format!(
                        "{}: the profile constrains {}, not {resource_type}",
                        profile.name(),
                        profile.resource_type()
                    ),
                });
                continue;
            }
            if let Some(v) = version
                && v != profile.version()
            {
                issues.push(Issue {
                    severity: Severity::Information,
                    code: IssueType::Informational,
                    expression: expression.clone(),
                    diagnostics: format!(
                        "{}: version {v} claimed; checked against version {}",
                        profile.name(),
                        profile.version()
                    ),
                });
            }
            check_profile(profile, resource, terminology, &mut issues);
        }
        issues
    }
}
