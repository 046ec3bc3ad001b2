//! Routing rules as data (`profiles/jp/routing/*.json`): which record events go to which party,
//! by which channel, for which purpose of use and on which basis; plus the retry policy per
//! channel. Parsed once into typed structs; errors name the file.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::RoutingError;
use crate::path::ElementPath;
use crate::retry::RetryPolicy;

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
}

impl EventKind {
    pub fn code(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Updated => "updated",
            EventKind::Deleted => "deleted",
        }
    }
}

/// How a delivery reaches its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// POST to the recipient's FHIR endpoint (rest-hook).
    FhirRestHook,
    /// The municipal file/API adapter (the municipality's health-management system).
    MunicipalFile,
    /// The pull mailbox (`GET /routing/v1/inbox`), for recipients without an endpoint.
    Mailbox,
    /// Collected until month close, then sent as the monthly report and claim batch.
    MonthlyBatch,
    /// Collected and sent once a week as a digest.
    WeeklyDigest,
}

impl Channel {
    pub fn code(self) -> &'static str {
        match self {
            Channel::FhirRestHook => "fhir-rest-hook",
            Channel::MunicipalFile => "municipal-file",
            Channel::Mailbox => "mailbox",
            Channel::MonthlyBatch => "monthly-batch",
            Channel::WeeklyDigest => "weekly-digest",
        }
    }

    /// Every channel, for per-channel tables.
    pub const ALL: [Channel; 5] = [
        Channel::FhirRestHook,
        Channel::MunicipalFile,
        Channel::Mailbox,
        Channel::MonthlyBatch,
        Channel::WeeklyDigest,
    ];
}

/// A purpose of use from the HL7 v3 ActReason code system (PurposeOfUse branch); the consent
/// engine matches `Consent.provision.purpose` against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PurposeOfUse {
    /// Treatment.
    Treat,
    /// Coordination of care.
    Coc,
    /// Healthcare payment (claims, billing).
    Hpaymt,
    /// Healthcare operations.
    Hoperat,
    /// Public health.
    Pubhlth,
    /// Healthcare research.
    Hresch,
    /// Patient requested.
    Patrqt,
    /// Family requested.
    Famrqt,
}

impl PurposeOfUse {
    /// `http://terminology.hl7.org/CodeSystem/v3-ActReason`.
    pub const SYSTEM: &'static str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

    pub fn code(self) -> &'static str {
        match self {
            PurposeOfUse::Treat => "TREAT",
            PurposeOfUse::Coc => "COC",
            PurposeOfUse::Hpaymt => "HPAYMT",
            PurposeOfUse::Hoperat => "HOPERAT",
            PurposeOfUse::Pubhlth => "PUBHLTH",
            PurposeOfUse::Hresch => "HRESCH",
            PurposeOfUse::Patrqt => "PATRQT",
            PurposeOfUse::Famrqt => "FAMRQT",
        }
    }
}

/// Why a delivery may happen: the person's consent, or a named legal basis that the consent
/// engine's configuration maps to the law requiring the flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// Only if the person's consents permit it (checked again at delivery time).
    Consent,
    /// A legal basis id, e.g. `routine-vaccination-record`.
    Legal(String),
}

impl Basis {
    /// `consent` or `legal:<id>`, for logs and stored outbox rows.
    pub fn code(&self) -> String {
        match self {
            Basis::Consent => "consent".to_owned(),
            Basis::Legal(id) => format!("legal:{id}"),
        }
    }
}

/// Which party a rule sends to; the gateway's [`crate::Directory`] resolves it to recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartyRole {
    /// The apps the patient's guardians (or the patient) registered.
    GuardianApps,
    /// The medical association (医師会, ishikai) of the Organization found at the party's
    /// `path` (default `performer.actor`: the performing clinic).
    MedicalAssociationOfPerformer,
    /// The patient's home municipality (住所地の市区町村).
    HomeMunicipality,
    /// The Organization found at the party's `path` (e.g. the clinic chosen in a 予診票).
    ReferencedOrganization,
    /// The district team (地区担当) of the patient's home municipality.
    DistrictTeam,
}

impl PartyRole {
    pub fn code(self) -> &'static str {
        match self {
            PartyRole::GuardianApps => "guardian-apps",
            PartyRole::MedicalAssociationOfPerformer => "medical-association-of-performer",
            PartyRole::HomeMunicipality => "home-municipality",
            PartyRole::ReferencedOrganization => "referenced-organization",
            PartyRole::DistrictTeam => "district-team",
        }
    }
}

/// A rule's recipient role, with where to find the Organization for the roles that need one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    pub role: PartyRole,
    #[serde(default)]
    pub path: Option<ElementPath>,
}

/// The path used by `medical-association-of-performer` when the rule names none.
pub const DEFAULT_PERFORMER_PATH: &str = "performer.actor";

/// A condition on the resource. Values are compared as JSON values; a path that reaches nothing
/// makes `equals`, `starts-with` and `coding` false.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Predicate {
    /// The path reaches at least one value.
    Exists(ElementPath),
    /// Some value at the path equals `value`.
    Equals {
        path: ElementPath,
        value: Value,
    },
    /// Some string at the path starts with `prefix` (canonical URLs with a version suffix).
    StartsWith {
        path: ElementPath,
        prefix: String,
    },
    /// Some Coding at the path (directly, or in a CodeableConcept's `coding`) has `system` and
    /// one of `codes`.
    Coding {
        path: ElementPath,
        system: String,
        codes: Vec<String>,
    },
    All(Vec<Predicate>),
    Any(Vec<Predicate>),
    Not(Box<Predicate>),
}

impl Predicate {
    /// Whether the resource satisfies the predicate.
    pub fn matches(&self, resource: &Value) -> bool {
        match self {
            Predicate::Exists(path) => !path.select(resource).is_empty(),
            Predicate::Equals { path, value } => path.select(resource).contains(&value),
            Predicate::StartsWith { path, prefix } => path
                .select(resource)
                .iter()
                .any(|v| v.as_str().is_some_and(|s| s.starts_with(prefix.as_str()))),
            Predicate::Coding {
                path,
                system,
                codes,
            } => path.select(resource).into_iter().any(|node| {
                let codings: Vec<&Value> = match node.get("coding") {
                    Some(Value::Array(items)) => items.iter().collect(),
                    _ => vec![node],
                };
                codings.into_iter().any(|c| {
                    c.get("system").and_then(Value::as_str) == Some(system.as_str())
                        && c.get("code")
                            .and_then(Value::as_str)
                            .is_some_and(|code| codes.iter().any(|k| k == code))
                })
            }),
            Predicate::All(items) => items.iter().all(|p| p.matches(resource)),
            Predicate::Any(items) => items.iter().any(|p| p.matches(resource)),
            Predicate::Not(inner) => !inner.matches(resource),
        }
    }
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable id; part of every delivery id, so renaming a rule re-sends.
    pub id: String,
    pub description: String,
    pub resource_type: String,
    pub events: Vec<EventKind>,
    #[serde(default)]
    pub when: Option<Predicate>,
    pub party: Party,
    pub channel: Channel,
    pub purpose: PurposeOfUse,
    pub basis: Basis,
    /// Where the flow comes from (a spec section, the issue, a municipal page).
    #[serde(default)]
    pub source: String,
    /// True when the flow or its basis is Musubi's inference rather than a sourced fact.
    #[serde(default)]
    pub inferred: bool,
    /// A later file can switch a shipped rule off by repeating its id with `false`.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl Rule {
    /// Whether the rule applies to this event on this resource.
    pub fn applies(&self, kind: EventKind, resource_type: &str, resource: &Value) -> bool {
        self.enabled
            && self.resource_type == resource_type
            && self.events.contains(&kind)
            && self.when.as_ref().is_none_or(|p| p.matches(resource))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(rename = "kind")]
    _kind: String,
    id: String,
    version: String,
    #[serde(default)]
    description: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryFile {
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    default: Option<RetryData>,
    #[serde(default)]
    channels: BTreeMap<String, RetryData>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryData {
    base_delay_seconds: u64,
    max_delay_seconds: u64,
    max_attempts: u32,
}

/// Longest backoff a policy may name; a longer one is almost certainly a unit mistake.
const MAX_DELAY_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

impl RetryData {
    fn policy(&self) -> Result<RetryPolicy, String> {
        if self.base_delay_seconds == 0 || self.max_attempts == 0 {
            return Err("base_delay_seconds and max_attempts must be at least 1".to_owned());
        }
        if self.max_delay_seconds < self.base_delay_seconds {
            return Err("max_delay_seconds is below base_delay_seconds".to_owned());
        }
        let max_delay = Duration::from_secs(self.max_delay_seconds);
        if max_delay > MAX_DELAY_LIMIT {
            return Err("max_delay_seconds is above 7 days".to_owned());
        }
        Ok(RetryPolicy {
            base_delay: Duration::from_secs(self.base_delay_seconds),
            max_delay,
            max_attempts: self.max_attempts,
        })
    }
}

/// Which data file a rule set was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub file: String,
    pub id: String,
    pub version: String,
    pub description: String,
}

/// The routing rules and retry policies, parsed once.
#[derive(Debug, Clone, Default)]
pub struct RoutingRules {
    files: Vec<FileInfo>,
    rules: Vec<Rule>,
    default_retry: Option<RetryPolicy>,
    retry: BTreeMap<Channel, RetryPolicy>,
}

/// Used when no retry-policy file names one: 30 s doubling to 1 h, 12 attempts.
pub const FALLBACK_RETRY: RetryPolicy = RetryPolicy {
    base_delay: Duration::from_secs(30),
    max_delay: Duration::from_secs(3600),
    max_attempts: 12,
};

static EMBEDDED: OnceLock<Result<RoutingRules, String>> = OnceLock::new();

impl RoutingRules {
    /// The rules embedded from `profiles/jp/routing/`, parsed once.
    pub fn embedded() -> Result<&'static RoutingRules, RoutingError> {
        EMBEDDED
            .get_or_init(|| {
                Self::from_files(profiles::JP_ROUTING.iter().map(|(n, t)| (*n, *t)))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|message| RoutingError::Invalid {
                file: "profiles/jp/routing".to_owned(),
                message: message.clone(),
            })
    }

    /// The embedded files plus `extra` `(file name, contents)` files applied after them: a rule
    /// with an existing id replaces it in place; a retry policy replaces the one for its channel.
    pub fn load(extra: &[(String, String)]) -> Result<RoutingRules, RoutingError> {
        Self::from_files(
            profiles::JP_ROUTING
                .iter()
                .map(|(n, t)| (*n, *t))
                .chain(extra.iter().map(|(n, t)| (n.as_str(), t.as_str()))),
        )
    }

    /// Only the given files, in order (no embedded data).
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<RoutingRules, RoutingError> {
        let mut set = RoutingRules::default();
        for (name, text) in files {
            set.add_file(name, text)?;
        }
        Ok(set)
    }

    fn add_file(&mut self, name: &str, text: &str) -> Result<(), RoutingError> {
        let json = |source| RoutingError::Json {
            file: name.to_owned(),
            source,
        };
        let invalid = |message: String| RoutingError::Invalid {
            file: name.to_owned(),
            message,
        };
        // Parsed to a Value first and dispatched on `kind`: serde's internally tagged enums
        // buffer numbers, which breaks with serde_json's arbitrary_precision feature.
        let value: Value = serde_json::from_str(text).map_err(json)?;
        match value.get("kind").and_then(Value::as_str) {
            Some("routing-rules") => {
                let file: RulesFile = serde_json::from_value(value).map_err(json)?;
                if file.id.is_empty() || file.version.is_empty() {
                    return Err(invalid(
                        "a rules file needs a non-empty id and version".into(),
                    ));
                }
                let mut seen = Vec::new();
                for rule in file.rules {
                    check_rule(&rule).map_err(|m| invalid(format!("rule {:?}: {m}", rule.id)))?;
                    if seen.contains(&rule.id) {
                        return Err(invalid(format!("rule id {:?} appears twice", rule.id)));
                    }
                    seen.push(rule.id.clone());
                    match self.rules.iter_mut().find(|r| r.id == rule.id) {
                        Some(slot) => *slot = rule,
                        None => self.rules.push(rule),
                    }
                }
                self.files.push(FileInfo {
                    file: name.to_owned(),
                    id: file.id,
                    version: file.version,
                    description: file.description,
                });
            }
            Some("retry-policies") => {
                let file: RetryFile = serde_json::from_value(value).map_err(json)?;
                if let Some(data) = &file.default {
                    self.default_retry = Some(
                        data.policy()
                            .map_err(|m| invalid(format!("default: {m}")))?,
                    );
                }
                for (code, data) in &file.channels {
                    let channel = Channel::ALL
                        .into_iter()
                        .find(|c| c.code() == code)
                        .ok_or_else(|| invalid(format!("unknown channel {code:?}")))?;
                    let policy = data.policy().map_err(|m| invalid(format!("{code}: {m}")))?;
                    self.retry.insert(channel, policy);
                }
                self.files.push(FileInfo {
                    file: name.to_owned(),
                    id: "retry-policies".to_owned(),
                    version: String::new(),
                    description: file.description,
                });
            }
            Some(other) => {
                return Err(invalid(format!(
                    "unknown kind {other:?} (expected \"routing-rules\" or \"retry-policies\")"
                )));
            }
            None => return Err(invalid("missing \"kind\"".to_owned())),
        }
        Ok(())
    }

    /// Every rule, in load order (disabled ones included).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// The files the rules came from.
    pub fn files(&self) -> &[FileInfo] {
        &self.files
    }

    /// The retry policy of a channel: its own, else the file's default, else [`FALLBACK_RETRY`].
    pub fn retry_policy(&self, channel: Channel) -> RetryPolicy {
        self.retry
            .get(&channel)
            .or(self.default_retry.as_ref())
            .copied()
            .unwrap_or(FALLBACK_RETRY)
    }
}

fn check_rule(rule: &Rule) -> Result<(), String> {
    if rule.id.is_empty()
        || !rule
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err("the id must be non-empty letters, digits and '-'".to_owned());
    }
    let type_ok = rule
        .resource_type
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase())
        && rule
            .resource_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric());
    if !type_ok {
        return Err(format!(
            "resource_type {:?} is not a FHIR resource type name",
            rule.resource_type
        ));
    }
    if rule.events.is_empty() {
        return Err("events is empty".to_owned());
    }
    if let Basis::Legal(id) = &rule.basis
        && id.is_empty()
    {
        return Err("a legal basis needs an id".to_owned());
    }
    match (rule.party.role, &rule.party.path) {
        (PartyRole::ReferencedOrganization, None) => {
            Err("role referenced-organization needs a path".to_owned())
        }
        (
            PartyRole::GuardianApps | PartyRole::HomeMunicipality | PartyRole::DistrictTeam,
            Some(_),
        ) => Err(format!(
            "role {} takes no path (it is found from the patient)",
            rule.party.role.code()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn predicates_evaluate_as_documented() {
        let resource = json!({
            "status": "completed",
            "isSubpotent": false,
            "fundingSource": {"coding": [{"system": "s", "code": "routine"}]},
            "reasonCode": [{"coding": [{"system": "r", "code": "a"}]}],
            "meta": {"tag": [{"system": "t", "code": "needs-care"}]},
            "questionnaire": "https://q.example/prevaccination-child|1.0.0"
        });
        let cases = [
            (json!({"exists": "status"}), true),
            (json!({"exists": "note"}), false),
            (
                json!({"equals": {"path": "status", "value": "completed"}}),
                true,
            ),
            (
                json!({"equals": {"path": "status", "value": "entered-in-error"}}),
                false,
            ),
            (
                json!({"equals": {"path": "isSubpotent", "value": false}}),
                true,
            ),
            (
                json!({"starts-with": {"path": "questionnaire", "prefix": "https://q.example/prevaccination-"}}),
                true,
            ),
            (
                json!({"starts-with": {"path": "status", "prefix": "https"}}),
                false,
            ),
            (
                json!({"coding": {"path": "fundingSource", "system": "s", "codes": ["routine"]}}),
                true,
            ),
            (
                json!({"coding": {"path": "fundingSource", "system": "other", "codes": ["routine"]}}),
                false,
            ),
            (
                json!({"coding": {"path": "reasonCode", "system": "r", "codes": ["b", "a"]}}),
                true,
            ),
            (
                json!({"coding": {"path": "meta.tag", "system": "t", "codes": ["needs-care"]}}),
                true,
            ),
            (json!({"not": {"exists": "note"}}), true),
            (
                json!({"all": [{"exists": "status"}, {"exists": "note"}]}),
                false,
            ),
            (
                json!({"any": [{"exists": "note"}, {"exists": "status"}]}),
                true,
            ),
            (json!({"all": []}), true),
            (json!({"any": []}), false),
        ];
        for (predicate, expected) in cases {
            let parsed: Predicate = serde_json::from_value(predicate.clone()).expect("predicate");
            assert_eq!(parsed.matches(&resource), expected, "{predicate}");
        }
    }
}
