//! Musubi_Consent resources read into typed [`ConsentRecord`]s (the encoding is in
//! docs/consent.md, "Encoding"); anything Musubi could not enforce faithfully is an error.

use serde_json::Value;
use time::OffsetDateTime;

use crate::fhirtime;
use crate::model::{
    CLIENT_ID_SYSTEM, DATA_CLASS_SYSTEM, DataClass, Identifier, PURPOSE_SYSTEM, PatientRef,
    Purpose, RECIPIENT_KIND_ID_SYSTEM, RecipientKind, SHARING_LEVEL_EXTENSION, SharingLevel,
};
use crate::{ConsentError, Policy};

/// R4 consentscope code every Musubi consent carries.
pub const SCOPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
/// v3 ParticipationType, the system of `provision.actor.role`.
pub const PARTICIPATION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
/// R4 resource types, a `provision.class` system Musubi also accepts.
pub const RESOURCE_TYPES_SYSTEM: &str = "http://hl7.org/fhir/resource-types";

/// `Consent.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStatus {
    Draft,
    Proposed,
    Active,
    Rejected,
    Inactive,
    EnteredInError,
}

impl ConsentStatus {
    fn parse(code: &str) -> Option<ConsentStatus> {
        Some(match code {
            "draft" => ConsentStatus::Draft,
            "proposed" => ConsentStatus::Proposed,
            "active" => ConsentStatus::Active,
            "rejected" => ConsentStatus::Rejected,
            "inactive" => ConsentStatus::Inactive,
            "entered-in-error" => ConsentStatus::EnteredInError,
            _ => return None,
        })
    }
}

/// Who gave the consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantor {
    /// The patient for themself (`performer` = the consent's Patient).
    Patient,
    /// A guardian (保護者) for a minor, as `RelatedPerson/{id}` in `performer` or
    /// `verification.verifiedWith`.
    Guardian(String),
}

/// `provision.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionType {
    Permit,
    Deny,
}

/// A rule's validity (`provision.period`), half-open `[start, end)`; a date-only end covers its
/// whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
}

impl Period {
    pub fn covers(&self, now: OffsetDateTime) -> bool {
        self.start.is_none_or(|s| s <= now) && self.end.is_none_or(|e| now < e)
    }
}

/// What an actor is in the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorRole {
    /// `IRCP`/`PRCP`: the party that receives the data.
    Recipient,
    /// `CST`: the custodian the data comes from (a PHR vendor, for research linkage).
    Custodian,
}

/// Who an actor names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorMatch {
    /// An organisation by identifier (municipality code, medical-institution code, a research
    /// project, …).
    Organization(Identifier),
    /// Every party of a kind.
    Kind(RecipientKind),
    /// One registered client (an app).
    Client(String),
    /// An Organization resource, `Organization/{id}`.
    Reference(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub role: ActorRole,
    pub matches: ActorMatch,
}

/// What data a rule covers (`provision.class`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassMatch {
    DataClass(DataClass),
    /// A resource type; matches only when the request carries the resource.
    ResourceType(String),
}

/// One provision: conditions, a decision, and nested exceptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provision {
    /// Where it is, e.g. `Consent.provision.provision[1]` (written to the audit record).
    pub path: String,
    /// `None` only at the root: the root then falls back on the purpose's base policy.
    pub decision: Option<ProvisionType>,
    pub period: Option<Period>,
    pub actors: Vec<Actor>,
    pub purposes: Vec<Purpose>,
    pub classes: Vec<ClassMatch>,
    /// `provision.data` with meaning `instance`: `{type}/{id}` references.
    pub data: Vec<String>,
    /// Sharing level of a permit; `None` inherits the parent's (the root's default is full).
    pub sharing_level: Option<SharingLevel>,
    pub provisions: Vec<Provision>,
}

/// A Consent resource, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub id: String,
    pub version: Option<String>,
    pub status: ConsentStatus,
    pub patient: PatientRef,
    pub grantor: Grantor,
    /// `Consent.dateTime`: when it was given; the most recent consent wins.
    pub date_time: OffsetDateTime,
    pub provision: Provision,
}

impl ConsentRecord {
    /// Reads a Consent. Data-class codes are checked against `policy`.
    pub fn parse(policy: &Policy, resource: &Value) -> Result<ConsentRecord, ConsentError> {
        let id_text = resource.get("id").and_then(Value::as_str);
        let label = id_text.map_or_else(
            || "Consent (no id)".to_owned(),
            |id| format!("Consent/{id}"),
        );
        let err = |expression: &str, problem: String| ConsentError::Consent {
            id: label.clone(),
            expression: expression.to_owned(),
            problem,
        };
        if resource.get("resourceType").and_then(Value::as_str) != Some("Consent") {
            return Err(err("Consent", "not a Consent resource".to_owned()));
        }
        let id = id_text
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                err(
                    "Consent.id",
                    "a consent must have an id to be cited in the audit trail".to_owned(),
                )
            })?
            .to_owned();
        let version = resource
            .pointer("/meta/versionId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let status_code = str_at(resource, "status")
            .ok_or_else(|| err("Consent.status", "missing".to_owned()))?;
        let status = ConsentStatus::parse(status_code).ok_or_else(|| {
            err(
                "Consent.status",
                format!("'{status_code}' is not an R4 consent status"),
            )
        })?;
        let privacy = codings(resource.get("scope")).any(|c| {
            c.get("system").and_then(Value::as_str) == Some(SCOPE_SYSTEM)
                && c.get("code").and_then(Value::as_str) == Some("patient-privacy")
        });
        if !privacy {
            return Err(err(
                "Consent.scope",
                "Musubi enforces only patient-privacy consents (consentscope#patient-privacy)"
                    .to_owned(),
            ));
        }
        let patient_text = resource
            .pointer("/patient/reference")
            .and_then(Value::as_str)
            .ok_or_else(|| err("Consent.patient", "missing Patient reference".to_owned()))?;
        let patient =
            PatientRef::parse(patient_text).map_err(|e| err("Consent.patient", e.to_string()))?;
        let date_text = str_at(resource, "dateTime").ok_or_else(|| {
            err(
                "Consent.dateTime",
                "missing: the most-recent-wins rule needs it".to_owned(),
            )
        })?;
        let date_time = fhirtime::parse(date_text)
            .map_err(|e| err("Consent.dateTime", e))?
            .start;
        let grantor = grantor(resource, &patient).map_err(|(expr, problem)| err(&expr, problem))?;
        let root = resource.get("provision").ok_or_else(|| {
            err(
                "Consent.provision",
                "missing: nothing to enforce".to_owned(),
            )
        })?;
        let provision = parse_provision(policy, root, "Consent.provision".to_owned(), true)
            .map_err(|(expr, problem)| err(&expr, problem))?;
        Ok(ConsentRecord {
            id,
            version,
            status,
            patient,
            grantor,
            date_time,
            provision,
        })
    }

    /// `Consent/{id}/_history/{version}` (or `Consent/{id}`), as the audit record cites it.
    pub fn reference(&self) -> String {
        match &self.version {
            Some(v) => format!("Consent/{}/_history/{v}", self.id),
            None => format!("Consent/{}", self.id),
        }
    }

    /// Active and, at `now`, within the root provision's period.
    pub fn in_force(&self, now: OffsetDateTime) -> bool {
        self.status == ConsentStatus::Active && self.provision.period.is_none_or(|p| p.covers(now))
    }

    /// Checks that the guardian who consented is a RelatedPerson of the consent's patient (the
    /// gateway fetches the RelatedPerson and calls this when a Consent is written).
    pub fn check_guardian(&self, related_person: &Value) -> Result<(), ConsentError> {
        let Grantor::Guardian(reference) = &self.grantor else {
            return Ok(());
        };
        let err = |problem: String| ConsentError::Consent {
            id: format!("Consent/{}", self.id),
            expression: "Consent.performer".to_owned(),
            problem,
        };
        let id = related_person
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("");
        if related_person.get("resourceType").and_then(Value::as_str) != Some("RelatedPerson")
            || format!("RelatedPerson/{id}") != *reference
        {
            return Err(err(format!("the guardian given is not {reference}")));
        }
        let of = related_person
            .pointer("/patient/reference")
            .and_then(Value::as_str)
            .and_then(|r| PatientRef::parse(r).ok());
        if of.as_ref() != Some(&self.patient) {
            return Err(err(format!(
                "{reference} is not a related person of {}",
                self.patient
            )));
        }
        Ok(())
    }
}

type Located = (String, String);

fn grantor(resource: &Value, patient: &PatientRef) -> Result<Grantor, Located> {
    let performers: Vec<(String, &str)> = array(resource.get("performer"))
        .enumerate()
        .filter_map(|(i, p)| {
            p.get("reference")
                .and_then(Value::as_str)
                .map(|r| (format!("Consent.performer[{i}]"), r))
        })
        .collect();
    let verifiers: Vec<(String, &str)> = array(resource.get("verification"))
        .enumerate()
        .filter_map(|(i, v)| {
            v.pointer("/verifiedWith/reference")
                .and_then(Value::as_str)
                .map(|r| (format!("Consent.verification[{i}].verifiedWith"), r))
        })
        .collect();
    // A guardian who consented for a minor is named first in performer; verification.verifiedWith
    // is where a consent recorded by a clinic names the guardian it verified.
    for (_, reference) in performers.iter().chain(verifiers.iter()) {
        if let Some(id) = local_reference(reference, "RelatedPerson") {
            return Ok(Grantor::Guardian(format!("RelatedPerson/{id}")));
        }
    }
    for (expression, reference) in &performers {
        if local_reference(reference, "Patient").is_some() {
            return match PatientRef::parse(reference) {
                Ok(p) if p == *patient => Ok(Grantor::Patient),
                _ => Err((
                    expression.clone(),
                    format!("{reference} is not the consent's patient {patient}"),
                )),
            };
        }
    }
    Err((
        "Consent.performer".to_owned(),
        "no grantor: performer must name the Patient or the guardian (RelatedPerson), or verification.verifiedWith the guardian".to_owned(),
    ))
}

fn parse_provision(
    policy: &Policy,
    p: &Value,
    path: String,
    root: bool,
) -> Result<Provision, Located> {
    let at = |element: &str| format!("{path}.{element}");
    if !p.is_object() {
        return Err((path, "not an object".to_owned()));
    }
    for unsupported in ["action", "securityLabel", "code", "dataPeriod"] {
        if p.get(unsupported).is_some() {
            return Err((
                at(unsupported),
                format!(
                    "{unsupported} is not enforced by Musubi; the consent is refused rather than half-enforced"
                ),
            ));
        }
    }
    let decision = match str_at(p, "type") {
        Some("permit") => Some(ProvisionType::Permit),
        Some("deny") => Some(ProvisionType::Deny),
        Some(other) => return Err((at("type"), format!("'{other}' is not permit or deny"))),
        None if root => None,
        None => {
            return Err((
                at("type"),
                "a nested provision must say permit or deny".to_owned(),
            ));
        }
    };
    let period = match p.get("period") {
        None => None,
        Some(period) => Some(parse_period(period).map_err(|e| (at("period"), e))?),
    };
    let mut actors = Vec::new();
    for (i, actor) in array(p.get("actor")).enumerate() {
        let here = format!("{path}.actor[{i}]");
        actors.push(parse_actor(actor).map_err(|e| (here, e))?);
    }
    let mut purposes = Vec::new();
    for (i, coding) in array(p.get("purpose")).enumerate() {
        let here = format!("{path}.purpose[{i}]");
        if coding.get("system").and_then(Value::as_str) != Some(PURPOSE_SYSTEM) {
            return Err((here, format!("purpose must be coded in {PURPOSE_SYSTEM}")));
        }
        let code = coding.get("code").and_then(Value::as_str).unwrap_or("");
        purposes.push(Purpose::new(code).map_err(|e| (here, e.to_string()))?);
    }
    let mut classes = Vec::new();
    for (i, coding) in array(p.get("class")).enumerate() {
        let here = format!("{path}.class[{i}]");
        let code = coding.get("code").and_then(Value::as_str).unwrap_or("");
        match coding.get("system").and_then(Value::as_str) {
            Some(DATA_CLASS_SYSTEM) => classes.push(ClassMatch::DataClass(
                policy.data_class(code).map_err(|e| (here, e.to_string()))?,
            )),
            Some(RESOURCE_TYPES_SYSTEM) if !code.is_empty() => {
                classes.push(ClassMatch::ResourceType(code.to_owned()));
            }
            _ => {
                return Err((
                    here,
                    format!("class must be a {DATA_CLASS_SYSTEM} or {RESOURCE_TYPES_SYSTEM} code"),
                ));
            }
        }
    }
    let mut data = Vec::new();
    for (i, d) in array(p.get("data")).enumerate() {
        let here = format!("{path}.data[{i}]");
        if d.get("meaning").and_then(Value::as_str) != Some("instance") {
            return Err((here, "only data.meaning 'instance' is enforced".to_owned()));
        }
        let reference = d
            .pointer("/reference/reference")
            .and_then(Value::as_str)
            .and_then(type_and_id)
            .ok_or_else(|| {
                (
                    here.clone(),
                    "data.reference must be {type}/{id}".to_owned(),
                )
            })?;
        data.push(reference);
    }
    let sharing_level = sharing_level(p).map_err(|e| (at("modifierExtension"), e))?;
    if sharing_level.is_some() && decision == Some(ProvisionType::Deny) {
        return Err((
            at("modifierExtension"),
            "a sharing level belongs on a permit".to_owned(),
        ));
    }
    let mut provisions = Vec::new();
    for (i, child) in array(p.get("provision")).enumerate() {
        provisions.push(parse_provision(
            policy,
            child,
            format!("{path}.provision[{i}]"),
            false,
        )?);
    }
    Ok(Provision {
        path,
        decision,
        period,
        actors,
        purposes,
        classes,
        data,
        sharing_level,
        provisions,
    })
}

fn parse_period(period: &Value) -> Result<Period, String> {
    let start = match str_at(period, "start") {
        Some(text) => Some(fhirtime::parse(text)?.start),
        None => None,
    };
    // A date-only end such as 2025-06-30 includes that whole day.
    let end = match str_at(period, "end") {
        Some(text) => Some(fhirtime::parse(text)?.end),
        None => None,
    };
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        return Err("period ends before it starts".to_owned());
    }
    Ok(Period { start, end })
}

fn parse_actor(actor: &Value) -> Result<Actor, String> {
    let mut role = None;
    for coding in codings(actor.get("role")) {
        if coding.get("system").and_then(Value::as_str) != Some(PARTICIPATION_SYSTEM) {
            continue;
        }
        role = match coding.get("code").and_then(Value::as_str) {
            Some("IRCP" | "PRCP") => Some(ActorRole::Recipient),
            Some("CST") => Some(ActorRole::Custodian),
            _ => None,
        };
        if role.is_some() {
            break;
        }
    }
    let role = role.ok_or_else(|| {
        format!("role must be {PARTICIPATION_SYSTEM} IRCP or PRCP (recipient) or CST (custodian)")
    })?;
    let reference = actor
        .get("reference")
        .ok_or_else(|| "actor.reference is missing".to_owned())?;
    let matches = if let Some(identifier) = reference.get("identifier") {
        let system = str_at(identifier, "system").unwrap_or("");
        let value = str_at(identifier, "value").unwrap_or("").trim();
        if system.is_empty() || value.is_empty() {
            return Err("actor.reference.identifier needs system and value".to_owned());
        }
        match system {
            CLIENT_ID_SYSTEM => ActorMatch::Client(value.to_owned()),
            RECIPIENT_KIND_ID_SYSTEM => {
                ActorMatch::Kind(RecipientKind::parse(value).map_err(|e| e.to_string())?)
            }
            _ => ActorMatch::Organization(Identifier::new(system, value)),
        }
    } else if let Some(r) = reference.get("reference").and_then(Value::as_str) {
        let local = type_and_id(r)
            .filter(|r| r.starts_with("Organization/"))
            .ok_or_else(|| format!("actor reference '{r}' is not an Organization"))?;
        ActorMatch::Reference(local)
    } else {
        return Err("actor.reference needs an identifier or an Organization reference".to_owned());
    };
    Ok(Actor { role, matches })
}

fn sharing_level(p: &Value) -> Result<Option<SharingLevel>, String> {
    let mut level = None;
    // The level restricts a permit, so it is a modifier extension: a system that ignored it would
    // disclose too much. The plain extension form is read too, as it can only restrict further.
    for (element, must_understand) in [("modifierExtension", true), ("extension", false)] {
        for ext in array(p.get(element)) {
            let url = str_at(ext, "url").unwrap_or("");
            if url == SHARING_LEVEL_EXTENSION {
                let code = str_at(ext, "valueCode").unwrap_or("");
                let parsed = SharingLevel::parse(code).ok_or_else(|| {
                    format!("sharing level '{code}' is not full or identity-only")
                })?;
                level = Some(level.map_or(parsed, |l: SharingLevel| l.max(parsed)));
            } else if must_understand {
                return Err(format!("unknown modifier extension {url}"));
            }
        }
    }
    Ok(level)
}

/// `{type}/{id}` from a relative or absolute reference (history suffix dropped).
pub(crate) fn type_and_id(reference: &str) -> Option<String> {
    let trimmed = match reference.find("/_history/") {
        Some(at) => &reference[..at],
        None => reference,
    };
    let mut segments = trimmed.rsplit('/');
    let id = segments.next()?;
    let kind = segments.next()?;
    let kind_ok = kind.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && kind.chars().all(|c| c.is_ascii_alphabetic());
    (!id.is_empty() && kind_ok).then(|| format!("{kind}/{id}"))
}

fn local_reference<'r>(reference: &'r str, kind: &str) -> Option<&'r str> {
    let trimmed = match reference.find("/_history/") {
        Some(at) => &reference[..at],
        None => reference,
    };
    let mut segments = trimmed.rsplit('/');
    let id = segments.next()?;
    (segments.next() == Some(kind) && !id.is_empty()).then_some(id)
}

fn str_at<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(Value::as_str)
}

fn array(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    value.and_then(Value::as_array).into_iter().flatten()
}

/// Codings of a CodeableConcept (or a list of them).
fn codings(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    let concepts: Vec<&Value> = match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    concepts
        .into_iter()
        .flat_map(|c| array(c.get("coding")).collect::<Vec<_>>())
}
