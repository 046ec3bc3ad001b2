//! The consent policy as data: base policy per purpose, legal bases, data-class rules, the
//! identity-only and pseudonymisation element lists (profiles/jp/consent), parsed once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use crate::ConsentError;
use crate::model::{DATA_CLASS_SYSTEM, DataClass, Identifier, Party, Purpose, RecipientKind};
use crate::record::type_and_id;

/// What applies when no consent of the person applies to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BasePolicy {
    /// Deny unless a consent permits.
    OptIn,
    /// Permit unless a consent denies.
    OptOut,
}

impl BasePolicy {
    pub fn code(self) -> &'static str {
        match self {
            BasePolicy::OptIn => "opt-in",
            BasePolicy::OptOut => "opt-out",
        }
    }
}

/// One configured purpose of use (purposes.json).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurposeRule {
    pub code: Purpose,
    pub display: String,
    /// The Japanese name (目的).
    pub ja: String,
    pub base_policy: BasePolicy,
    /// When the data's source (custodian) is of one of these kinds, only a consent that names
    /// that source (actor role CST) can permit: one consent per PHR vendor for research.
    #[serde(default)]
    pub named_source_kinds: Vec<RecipientKind>,
    pub inferred: bool,
    pub source: String,
    /// Drops the purpose configured by an earlier file.
    #[serde(default)]
    pub withdrawn: bool,
}

/// Which recipient a legal basis is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecipientRelation {
    /// Any recipient of the listed kinds.
    Any,
    /// Only the municipality the patient is registered in (the request's home municipality).
    HomeMunicipality,
}

/// A condition on an element of a resource: a coding in it (`system`, optionally `code`), or a
/// string value starting with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElementCondition {
    /// A top-level element, or a dotted path such as `meta.tag`.
    pub element: String,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
}

/// A flow the law requires regardless of consent (legal-bases.json).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegalBasis {
    /// Stable id, written to the audit record.
    pub id: String,
    pub title: String,
    pub ja: String,
    pub purposes: Vec<Purpose>,
    pub recipient_kinds: Vec<RecipientKind>,
    pub recipient_relation: RecipientRelation,
    /// Who may disclose under this basis; empty means anyone. A request without a source never
    /// meets a basis that lists source kinds.
    #[serde(default)]
    pub source_kinds: Vec<RecipientKind>,
    pub data_classes: Vec<String>,
    /// Conditions on the resource itself (e.g. a routine vaccination).
    #[serde(default)]
    pub resource: Vec<ElementCondition>,
    /// Elements of the resource (dotted paths to References) of which one must name the
    /// recipient: by `reference` to the recipient's Organization, or by an `identifier` the
    /// recipient is registered with. Empty: any recipient of the listed kinds. A request that
    /// gives only a data class never meets a basis that lists elements here.
    #[serde(default)]
    pub recipient_named_in: Vec<String>,
    /// The law, article or contract the flow rests on.
    pub law: String,
    pub source: String,
    pub inferred: bool,
    #[serde(default)]
    pub withdrawn: bool,
}

/// One classification rule (data-classes.json).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClassRule {
    pub resource_type: String,
    pub data_class: String,
    #[serde(default)]
    pub when: Vec<ElementCondition>,
    #[serde(default)]
    pub note: Option<String>,
}

/// Element lists of research exports (pseudonymisation.json).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PseudonymisationRules {
    #[serde(default)]
    pub description: String,
    pub patient_keep: Vec<String>,
    pub address_keep: Vec<String>,
    pub drop_elements: Vec<String>,
    pub subject_elements: Vec<String>,
    pub questionnaire_drop_items: Vec<String>,
    pub questionnaire_month_items: Vec<String>,
    pub not_exported: Vec<String>,
}

/// The parsed consent policy. Load once ([`Policy::embedded`] or [`Policy::load`]) and share.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub(crate) purposes: BTreeMap<Purpose, PurposeRule>,
    pub(crate) legal_bases: Vec<LegalBasis>,
    /// Data class code → Japanese name.
    pub(crate) classes: BTreeMap<String, String>,
    /// Classes whose records without a patient only a legal basis discloses.
    pub(crate) legal_basis_only: BTreeSet<String>,
    pub(crate) rules: Vec<ClassRule>,
    pub(crate) unprotected: BTreeSet<String>,
    /// Resource type (or `*`) → top-level elements an identity-only disclosure keeps.
    pub(crate) identity_keep: BTreeMap<String, Vec<String>>,
    pub(crate) pseudonymisation: Option<PseudonymisationRules>,
    /// The top-level members classification and decisions read ([`Policy::members_read`]).
    pub(crate) members_read: BTreeSet<String>,
}

/// Members a decision reads whatever the policy files say: the type and id (classification,
/// provisions naming a record, a Patient's own id), `meta` (an explicit data-class tag) and
/// the references to the patient ([`crate::decide`]).
pub const MEMBERS_ALWAYS_READ: [&str; 6] = [
    "resourceType",
    "id",
    "meta",
    "patient",
    "subject",
    "beneficiary",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PurposesFile {
    #[serde(default)]
    description: String,
    purposes: Vec<PurposeRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LegalBasesFile {
    #[serde(default)]
    description: String,
    legal_bases: Vec<LegalBasis>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClassEntry {
    code: String,
    ja: String,
    /// Records of this class that name no patient are disclosed under a legal basis only: with
    /// none, they are denied (not left to the caller's fallback).
    #[serde(default)]
    legal_basis_only: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DataClassesFile {
    #[serde(default)]
    description: String,
    #[serde(default)]
    classes: Vec<ClassEntry>,
    #[serde(default)]
    rules: Vec<ClassRule>,
    #[serde(default)]
    unprotected: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IdentityOnlyFile {
    #[serde(default)]
    description: String,
    keep: BTreeMap<String, Vec<String>>,
}

impl Policy {
    /// The embedded profiles/jp/consent files followed by `extra` `(file name, contents)` files
    /// (the gateway's data directory). Later files override earlier ones: purposes and legal
    /// bases by code/id (`"withdrawn": true` removes one), identity-only lists by resource type,
    /// the pseudonymisation file whole; data-class rules of later files are tried first.
    pub fn load(extra: &[(&str, &str)]) -> Result<Policy, ConsentError> {
        let files: Vec<(&str, &str)> = profiles::JP_CONSENT
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect();
        Policy::from_files(&files)
    }

    /// The embedded files only, parsed on first use.
    pub fn embedded() -> Result<&'static Policy, ConsentError> {
        static EMBEDDED: OnceLock<Result<Policy, ConsentError>> = OnceLock::new();
        EMBEDDED
            .get_or_init(|| Policy::load(&[]))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Exactly the given files, in order (tests and tools).
    pub fn from_files(files: &[(&str, &str)]) -> Result<Policy, ConsentError> {
        let mut policy = Policy::default();
        for (name, text) in files {
            policy.add_file(name, text)?;
        }
        policy.check_complete()?;
        policy.members_read = policy.members_named();
        Ok(policy)
    }

    fn add_file(&mut self, name: &str, text: &str) -> Result<(), ConsentError> {
        let err = |problem: String| ConsentError::Data {
            file: name.to_owned(),
            problem,
        };
        let mut value: Value =
            serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
        let kind = value
            .as_object_mut()
            .and_then(|o| o.remove("musubiDataType"))
            .and_then(|v| v.as_str().map(str::to_owned))
            .ok_or_else(|| err("no \"musubiDataType\"".to_owned()))?;
        let parse_err = |e: serde_json::Error| err(e.to_string());
        match kind.as_str() {
            "consent-purposes" => {
                let file: PurposesFile = serde_json::from_value(value).map_err(parse_err)?;
                let _ = file.description;
                for rule in file.purposes {
                    if rule.withdrawn {
                        self.purposes.remove(&rule.code);
                    } else {
                        self.purposes.insert(rule.code.clone(), rule);
                    }
                }
            }
            "consent-legal-bases" => {
                let file: LegalBasesFile = serde_json::from_value(value).map_err(parse_err)?;
                let _ = file.description;
                for basis in file.legal_bases {
                    self.legal_bases.retain(|b| b.id != basis.id);
                    if !basis.withdrawn {
                        self.legal_bases.push(basis);
                    }
                }
            }
            "consent-data-classes" => {
                let file: DataClassesFile = serde_json::from_value(value).map_err(parse_err)?;
                let _ = file.description;
                for class in file.classes {
                    if class.legal_basis_only {
                        self.legal_basis_only.insert(class.code.clone());
                    } else {
                        self.legal_basis_only.remove(&class.code);
                    }
                    self.classes.insert(class.code, class.ja);
                }
                let mut rules = file.rules;
                rules.append(&mut self.rules);
                self.rules = rules;
                self.unprotected.extend(file.unprotected);
            }
            "consent-identity-only" => {
                let file: IdentityOnlyFile = serde_json::from_value(value).map_err(parse_err)?;
                let _ = file.description;
                self.identity_keep.extend(file.keep);
            }
            "consent-pseudonymisation" => {
                let file: PseudonymisationRules =
                    serde_json::from_value(value).map_err(parse_err)?;
                self.pseudonymisation = Some(file);
            }
            other => return Err(err(format!("unknown musubiDataType '{other}'"))),
        }
        Ok(())
    }

    /// Cross-file checks: every referenced data class exists, and each file kind was given.
    fn check_complete(&self) -> Result<(), ConsentError> {
        let err = |file: &str, problem: String| ConsentError::Data {
            file: file.to_owned(),
            problem,
        };
        if self.purposes.is_empty() {
            return Err(err("purposes", "no purposes configured".to_owned()));
        }
        if self.classes.is_empty() {
            return Err(err("data-classes", "no data classes configured".to_owned()));
        }
        for rule in &self.rules {
            if !self.classes.contains_key(&rule.data_class) {
                return Err(err(
                    "data-classes",
                    format!(
                        "rule for {} names unknown data class '{}'",
                        rule.resource_type, rule.data_class
                    ),
                ));
            }
            check_conditions("data-classes", &rule.when)?;
        }
        for basis in &self.legal_bases {
            for class in &basis.data_classes {
                if !self.classes.contains_key(class) {
                    return Err(err(
                        "legal-bases",
                        format!(
                            "legal basis {} names unknown data class '{class}'",
                            basis.id
                        ),
                    ));
                }
            }
            if basis.purposes.is_empty() || basis.recipient_kinds.is_empty() {
                return Err(err(
                    "legal-bases",
                    format!("legal basis {} needs purposes and recipientKinds", basis.id),
                ));
            }
            if basis.recipient_relation == RecipientRelation::HomeMunicipality
                && basis.recipient_kinds != [RecipientKind::Municipality]
            {
                return Err(err(
                    "legal-bases",
                    format!(
                        "legal basis {}: recipientRelation home-municipality needs recipientKinds [\"municipality\"]",
                        basis.id
                    ),
                ));
            }
            check_conditions("legal-bases", &basis.resource)?;
            if basis
                .recipient_named_in
                .iter()
                .any(|path| path.is_empty() || path.split('.').any(|step| step.is_empty()))
            {
                return Err(err(
                    "legal-bases",
                    format!(
                        "legal basis {}: recipientNamedIn needs element paths such as \"insurer\"",
                        basis.id
                    ),
                ));
            }
        }
        if self.identity_keep.is_empty() {
            return Err(err(
                "identity-only",
                "no identity-only element lists".to_owned(),
            ));
        }
        if self.pseudonymisation.is_none() {
            return Err(err(
                "pseudonymisation",
                "no pseudonymisation rules".to_owned(),
            ));
        }
        Ok(())
    }

    /// The top-level members of a resource that [`Policy::classify`], [`crate::decide`] and
    /// [`crate::decide_without_subject`] read under this policy. A resource cut down to these
    /// members is classified and decided exactly as the whole one, so a caller may parse only
    /// them; identity-only redaction ([`crate::redact_identity_only`]) needs the whole resource.
    pub fn members_read(&self) -> &BTreeSet<String> {
        &self.members_read
    }

    /// The first step of every path the rules and legal bases look at, and the members every
    /// decision reads.
    fn members_named(&self) -> BTreeSet<String> {
        let rule_paths = self
            .rules
            .iter()
            .flat_map(|rule| rule.when.iter().map(|c| c.element.as_str()));
        let basis_paths = self.legal_bases.iter().flat_map(|basis| {
            basis
                .resource
                .iter()
                .map(|c| c.element.as_str())
                .chain(basis.recipient_named_in.iter().map(String::as_str))
        });
        MEMBERS_ALWAYS_READ
            .into_iter()
            .chain(rule_paths)
            .chain(basis_paths)
            .map(|path| path.split('.').next().unwrap_or(path).to_owned())
            .collect()
    }

    /// The configured purpose `code`, if any.
    pub fn purpose(&self, code: &Purpose) -> Option<&PurposeRule> {
        self.purposes.get(code)
    }

    /// Every configured purpose, by code.
    pub fn purposes(&self) -> impl Iterator<Item = &PurposeRule> {
        self.purposes.values()
    }

    /// The element lists of research exports (pseudonymisation.json).
    pub fn pseudonymisation(&self) -> Option<&PseudonymisationRules> {
        self.pseudonymisation.as_ref()
    }

    /// Every legal basis, in file order.
    pub fn legal_bases(&self) -> &[LegalBasis] {
        &self.legal_bases
    }

    /// The data class `code`, if data-classes.json declares it.
    pub fn data_class(&self, code: &str) -> Result<DataClass, ConsentError> {
        if self.classes.contains_key(code) {
            Ok(DataClass(code.to_owned()))
        } else {
            Err(ConsentError::Invalid {
                what: "data class",
                problem: format!(
                    "'{code}' is not one of {}",
                    self.classes.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })
        }
    }

    /// Whether records of `class` that name no patient are disclosed under a legal basis only
    /// (`"legalBasisOnly": true` in data-classes.json).
    pub fn legal_basis_only(&self, class: &DataClass) -> bool {
        self.legal_basis_only.contains(class.as_str())
    }

    /// Every declared data class.
    pub fn data_classes(&self) -> Vec<DataClass> {
        self.classes.keys().map(|c| DataClass(c.clone())).collect()
    }

    /// Which data class a resource belongs to (docs/consent.md, "Data classes").
    pub fn classify(&self, resource: &Value) -> Classification {
        let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
            return Classification::Unclassified;
        };
        if self.unprotected.contains(resource_type) {
            return Classification::Unprotected;
        }
        // An explicit tag by the producer wins over the rules: only it knows, say, that a
        // height was measured at a municipal check-up.
        for coding in codings_at(resource, "meta.tag") {
            if coding.get("system").and_then(Value::as_str) == Some(DATA_CLASS_SYSTEM)
                && let Some(code) = coding.get("code").and_then(Value::as_str)
                && let Ok(class) = self.data_class(code)
            {
                return Classification::Class(class);
            }
        }
        self.rules
            .iter()
            .find(|rule| {
                rule.resource_type == resource_type
                    && rule.when.iter().all(|c| condition_holds(resource, c))
            })
            .map_or(Classification::Unclassified, |rule| {
                Classification::Class(DataClass(rule.data_class.clone()))
            })
    }
}

/// The result of [`Policy::classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classification {
    /// A resource type that holds no personal data (terminology, organisations, …).
    Unprotected,
    Class(DataClass),
    /// No rule matched: every disclosure is denied.
    Unclassified,
}

fn check_conditions(file: &str, conditions: &[ElementCondition]) -> Result<(), ConsentError> {
    for c in conditions {
        let ok = match (&c.system, &c.prefix) {
            (Some(_), None) => true,
            (None, Some(_)) => c.code.is_none(),
            _ => false,
        };
        if !ok || c.element.is_empty() {
            return Err(ConsentError::Data {
                file: file.to_owned(),
                problem: format!(
                    "condition on '{}' needs either system (and optional code) or prefix",
                    c.element
                ),
            });
        }
    }
    Ok(())
}

/// Whether `resource` meets `condition`.
pub(crate) fn condition_holds(resource: &Value, condition: &ElementCondition) -> bool {
    if let Some(prefix) = &condition.prefix {
        return values_at(resource, &condition.element)
            .iter()
            .any(|v| v.as_str().is_some_and(|s| s.starts_with(prefix.as_str())));
    }
    codings_at(resource, &condition.element)
        .iter()
        .any(|coding| {
            coding.get("system").and_then(Value::as_str) == condition.system.as_deref()
                && condition
                    .code
                    .as_deref()
                    .is_none_or(|code| coding.get("code").and_then(Value::as_str) == Some(code))
        })
}

/// Whether a Reference at `path` names `party`: by `reference` to the party's Organization, or
/// by an `identifier` the party is registered with.
pub(crate) fn names_party(resource: &Value, path: &str, party: &Party) -> bool {
    values_at(resource, path).iter().any(|reference| {
        let by_reference = reference
            .get("reference")
            .and_then(Value::as_str)
            .and_then(type_and_id)
            .is_some_and(|r| party.organization.as_deref() == Some(r.as_str()));
        let by_identifier = reference.get("identifier").is_some_and(|identifier| {
            match (
                identifier.get("system").and_then(Value::as_str),
                identifier.get("value").and_then(Value::as_str),
            ) {
                (Some(system), Some(value)) => {
                    party.identifiers.contains(&Identifier::new(system, value))
                }
                _ => false,
            }
        });
        by_reference || by_identifier
    })
}

/// Every value at a dotted path, arrays flattened.
fn values_at<'v>(resource: &'v Value, path: &str) -> Vec<&'v Value> {
    let mut current = vec![resource];
    for step in path.split('.') {
        let mut next = Vec::new();
        for value in current {
            match value.get(step) {
                Some(Value::Array(items)) => next.extend(items.iter()),
                Some(v) => next.push(v),
                None => {}
            }
        }
        current = next;
    }
    current
}

/// Every Coding at a path whose values are Codings or CodeableConcepts.
pub(crate) fn codings_at<'v>(resource: &'v Value, path: &str) -> Vec<&'v Value> {
    let mut out = Vec::new();
    for value in values_at(resource, path) {
        match value.get("coding") {
            Some(Value::Array(codings)) => out.extend(codings.iter()),
            _ if value.get("system").is_some() || value.get("code").is_some() => out.push(value),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn embedded_policy_loads() {
        let policy = Policy::embedded().expect("embedded consent data");
        assert!(
            policy
                .purpose(&Purpose::new("PATRQT").expect("code"))
                .is_some()
        );
        assert_eq!(policy.data_classes().len(), 8);
        assert_eq!(policy.legal_bases().len(), 4);
    }

    #[test]
    fn classification_table() {
        let policy = Policy::embedded().expect("embedded consent data");
        let cases = [
            (
                json!({"resourceType": "Immunization"}),
                Some("vaccinations"),
            ),
            (
                json!({"resourceType": "QuestionnaireResponse",
                    "questionnaire": "https://musubi.example.org/fhir/Questionnaire/prevaccination-child|1.0.0"}),
                Some("prevaccination"),
            ),
            (
                json!({"resourceType": "QuestionnaireResponse",
                    "questionnaire": "https://musubi.example.org/fhir/Questionnaire/childcare-consultation"}),
                Some("consultations"),
            ),
            (
                json!({"resourceType": "Observation", "category": [{"coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}]}),
                Some("vitals"),
            ),
            (
                json!({"resourceType": "Observation", "code": {"coding": [
                    {"system": "https://musubi.example.org/fhir/CodeSystem/checkup-item", "code": "age-in-months"}]}}),
                Some("checkups"),
            ),
            (
                json!({"resourceType": "Observation", "meta": {"tag": [
                    {"system": "https://musubi.example.org/fhir/CodeSystem/data-class", "code": "checkups"}]},
                    "category": [{"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "body-measurement"}]}]}),
                Some("checkups"),
            ),
            (
                json!({"resourceType": "Observation", "category": [{"coding": [
                    {"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "body-measurement"}]}]}),
                Some("vitals"),
            ),
            (
                json!({"resourceType": "Observation", "category": [{"coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]}),
                None,
            ),
            (
                json!({"resourceType": "Encounter", "type": [{"coding": [
                    {"system": "https://musubi.example.org/fhir/CodeSystem/checkup-kind", "code": "4m"}]}]}),
                Some("checkups"),
            ),
            (json!({"resourceType": "Encounter"}), Some("consultations")),
            (json!({"resourceType": "Condition"}), Some("consultations")),
            (
                json!({"resourceType": "MedicationStatement"}),
                Some("medications"),
            ),
            (json!({"resourceType": "Patient"}), Some("demographics")),
            (json!({"resourceType": "AuditEvent"}), None),
            (json!({"no": "type"}), None),
        ];
        for (resource, expected) in cases {
            let got = match policy.classify(&resource) {
                Classification::Class(c) => Some(c.as_str().to_owned()),
                Classification::Unclassified => None,
                Classification::Unprotected => Some("unprotected".to_owned()),
            };
            assert_eq!(got.as_deref(), expected, "{resource}");
        }
        assert_eq!(
            policy.classify(&json!({"resourceType": "Organization"})),
            Classification::Unprotected
        );
    }

    #[test]
    fn members_read_are_the_first_steps_of_every_rule_path() {
        let policy = Policy::embedded().expect("embedded consent data");
        let read: Vec<&str> = policy.members_read().iter().map(String::as_str).collect();
        for member in [
            "resourceType",
            "id",
            "meta",
            "patient",
            "subject",
            "beneficiary",
            // data-classes.json
            "questionnaire",
            "code",
            "category",
            "type",
            "identifier",
            // legal-bases.json
            "fundingSource",
            "provider",
            "insurer",
        ] {
            assert!(read.contains(&member), "{member} missing from {read:?}");
        }
        assert!(!read.iter().any(|m| m.contains('.')), "{read:?}");
        assert!(!read.contains(&"vaccineCode"), "{read:?}");
    }

    #[test]
    fn extra_files_override_and_withdraw() {
        let extra_purpose = r#"{"musubiDataType": "consent-purposes", "purposes": [
            {"code": "TREAT", "display": "treatment", "ja": "診療", "basePolicy": "opt-in",
             "inferred": true, "source": "local counsel"}]}"#;
        let withdraw = r#"{"musubiDataType": "consent-legal-bases", "legalBases": [
            {"id": "routine-vaccination-claim-municipality", "title": "", "ja": "", "purposes": ["HPAYMT"],
             "recipientKinds": ["municipality"], "recipientRelation": "any", "dataClasses": [],
             "law": "", "source": "", "inferred": true, "withdrawn": true}]}"#;
        let extra_rule = r#"{"musubiDataType": "consent-data-classes", "rules": [
            {"resourceType": "Observation", "dataClass": "checkups"}]}"#;
        let policy = Policy::load(&[
            ("local-purposes.json", extra_purpose),
            ("local-bases.json", withdraw),
            ("local-classes.json", extra_rule),
        ])
        .expect("extra files load");
        let treat = policy
            .purpose(&Purpose::new("TREAT").expect("code"))
            .expect("TREAT");
        assert_eq!(treat.base_policy, BasePolicy::OptIn);
        assert_eq!(policy.legal_bases().len(), 3);
        let lab = json!({"resourceType": "Observation", "category": [{"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]});
        assert_eq!(
            policy.classify(&lab),
            Classification::Class(DataClass("checkups".to_owned()))
        );
    }

    #[test]
    fn bad_files_name_the_file_and_problem() {
        let cases = [
            ("x.json", "{", "not JSON"),
            ("x.json", "{}", "musubiDataType"),
            (
                "x.json",
                r#"{"musubiDataType": "consent-nope"}"#,
                "unknown musubiDataType",
            ),
            (
                "x.json",
                r#"{"musubiDataType": "consent-data-classes", "rules": [{"resourceType": "Flag", "dataClass": "flags"}]}"#,
                "unknown data class 'flags'",
            ),
            (
                "x.json",
                r#"{"musubiDataType": "consent-purposes", "purposes": [{"code": "TREAT", "basePolicy": "maybe"}]}"#,
                "unknown variant `maybe`",
            ),
        ];
        for (name, text, needle) in cases {
            let err = Policy::load(&[(name, text)]).expect_err(text).to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
            assert!(err.contains("consent data file"), "{err}");
        }
    }
}
