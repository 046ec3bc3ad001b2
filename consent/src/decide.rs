//! The decision: may this recipient have this record for this purpose now — permit, deny or
//! identity-only — with the reason, the consent and provision used, and the legal basis used.
//!
//! The engine keeps nothing between calls: a consent revoked a second ago is not among the
//! `consents` the caller passes, or is no longer `active`, and the decision changes at once.
//! Callers must therefore decide again at delivery time, not reuse a decision made when a
//! delivery was queued.

use serde_json::Value;
use time::OffsetDateTime;

use crate::Policy;
use crate::model::{DataClass, Identifier, Party, PatientRef, Purpose, SharingLevel};
use crate::policy::{
    BasePolicy, Classification, LegalBasis, RecipientRelation, condition_holds, names_party,
};
use crate::record::{
    ActorMatch, ActorRole, ClassMatch, ConsentRecord, Provision, ProvisionType, type_and_id,
};

/// What is being disclosed.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// The resource itself: it is classified, its patient checked, and legal bases with resource
    /// conditions can apply.
    Resource(&'a Value),
    /// Only its data class (e.g. deciding before fetching). Provisions on resource types or
    /// instances and legal bases with resource conditions never apply to such a request.
    Class(&'a DataClass),
}

/// One disclosure to decide.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Who would receive the data.
    pub recipient: &'a Party,
    /// Where the data comes from (the clinic that recorded it, the PHR vendor that sent it),
    /// when known; legal bases with source kinds and custodian actors need it.
    pub source: Option<&'a Party>,
    pub purpose: &'a Purpose,
    /// The patient the data concerns; consents of other patients are ignored.
    pub patient: &'a PatientRef,
    /// The patient's home municipality (住所地, 6-digit code), for legal bases that only reach
    /// the home municipality.
    pub home_municipality: Option<&'a str>,
    pub data: Data<'a>,
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Disclose the record as it is.
    Permit,
    /// Disclose nothing; a search must behave as if the record did not exist.
    Deny,
    /// Disclose only what the redaction leaves ([`crate::redact_identity_only`]).
    Redact(Redaction),
}

/// How a record is cut down before disclosure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redaction {
    IdentityOnly,
}

/// Why, as a stable code for AuditEvent and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonCode {
    /// The resource type holds no personal data.
    UnprotectedResourceType,
    /// No classification rule matched the resource.
    UnclassifiedData,
    /// The purpose is not configured.
    UnknownPurpose,
    /// The resource concerns another patient than the request names.
    PatientMismatch,
    /// A legal basis requires the flow.
    LegalBasis,
    /// A consent permits the full record.
    ConsentPermit,
    /// A consent permits identity-level sharing only.
    ConsentIdentityOnly,
    /// A consent denies.
    ConsentDeny,
    /// A consent permits, but the data comes from a source it does not name.
    SourceNotNamed,
    /// No consent decides (none applies, or the deciding root provision has no type) and the
    /// purpose's base policy is opt-out.
    BasePolicyOptOut,
    /// No consent decides and the purpose's base policy is opt-in.
    BasePolicyOptIn,
    /// A pseudonym was asked for without a research consent that permits it.
    NoResearchConsent,
    /// A record without a patient, of a class only a legal basis discloses, and no basis
    /// applies (e.g. a claim batch that does not name the recipient).
    NoLegalBasis,
}

impl ReasonCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::UnprotectedResourceType => "unprotected-resource-type",
            ReasonCode::UnclassifiedData => "unclassified-data",
            ReasonCode::UnknownPurpose => "unknown-purpose",
            ReasonCode::PatientMismatch => "patient-mismatch",
            ReasonCode::LegalBasis => "legal-basis",
            ReasonCode::ConsentPermit => "consent-permit",
            ReasonCode::ConsentIdentityOnly => "consent-identity-only",
            ReasonCode::ConsentDeny => "consent-deny",
            ReasonCode::SourceNotNamed => "source-not-named",
            ReasonCode::BasePolicyOptOut => "base-policy-opt-out",
            ReasonCode::BasePolicyOptIn => "base-policy-opt-in",
            ReasonCode::NoResearchConsent => "no-research-consent",
            ReasonCode::NoLegalBasis => "no-legal-basis",
        }
    }
}

/// A decision with everything the audit record needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub reason: ReasonCode,
    /// The reason in words (no personal data beyond references and codes).
    pub explanation: String,
    /// The deciding consent, as `Consent/{id}/_history/{v}` or `Consent/{id}`; empty when none
    /// decided.
    pub consents_used: Vec<String>,
    /// The deciding provision of that consent, e.g. `Consent.provision.provision[0]`.
    pub provision: Option<String>,
    /// The id of the legal basis used (legal-bases.json).
    pub legal_basis: Option<String>,
    /// The data class decided on, when known.
    pub data_class: Option<DataClass>,
}

impl Decision {
    /// Whether anything at all may be disclosed (full or redacted).
    pub fn discloses(&self) -> bool {
        self.outcome != Outcome::Deny
    }

    fn new(outcome: Outcome, reason: ReasonCode, explanation: String) -> Decision {
        Decision {
            outcome,
            reason,
            explanation,
            consents_used: Vec::new(),
            provision: None,
            legal_basis: None,
            data_class: None,
        }
    }
}

/// What a provision tree says for one request.
#[derive(Debug, Clone)]
struct Verdict {
    permit: bool,
    level: SharingLevel,
    path: String,
    /// A custodian actor on the path to the deciding provision named the request's source.
    source_named: bool,
    /// The deciding provision is a root without type: the base policy decided.
    from_base: bool,
}

struct Context<'r> {
    recipient: &'r Party,
    source: Option<&'r Party>,
    purpose: &'r Purpose,
    class: &'r DataClass,
    resource_type: Option<&'r str>,
    resource_ref: Option<String>,
    base: BasePolicy,
    now: OffsetDateTime,
}

/// Decides one disclosure (docs/consent.md, "Decision algorithm"):
///
/// 1. an unprotected resource type is permitted; an unclassified resource is denied;
/// 2. an unknown purpose is denied; a resource of another patient is denied;
/// 3. the first legal basis that matches permits, whatever the consents say;
/// 4. of the patient's consents that are active and within their period, the most recent one
///    whose provisions apply decides (deny wins among nested exceptions and on a tie);
/// 5. otherwise the purpose's base policy decides (opt-out permits, opt-in denies).
pub fn decide(
    policy: &Policy,
    request: &Request<'_>,
    consents: &[ConsentRecord],
    now: OffsetDateTime,
) -> Decision {
    let recipient = describe(request.recipient);
    let (class, resource) = match request.data {
        Data::Resource(resource) => match policy.classify(resource) {
            Classification::Unprotected => {
                let kind = resource
                    .get("resourceType")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                return Decision::new(
                    Outcome::Permit,
                    ReasonCode::UnprotectedResourceType,
                    format!("{kind} holds no personal data"),
                );
            }
            Classification::Unclassified => {
                return Decision::new(
                    Outcome::Deny,
                    ReasonCode::UnclassifiedData,
                    "no data-class rule matches the resource; unclassified data is never disclosed"
                        .to_owned(),
                );
            }
            Classification::Class(class) => (class, Some(resource)),
        },
        Data::Class(class) => (class.clone(), None),
    };
    let finish = |mut d: Decision| {
        d.data_class = Some(class.clone());
        d
    };
    let Some(rule) = policy.purpose(request.purpose) else {
        return finish(Decision::new(
            Outcome::Deny,
            ReasonCode::UnknownPurpose,
            format!("purpose {} is not configured", request.purpose),
        ));
    };
    if let Some(resource) = resource
        && let Some(of) = resource_patient(resource)
        && of != *request.patient
    {
        return finish(Decision::new(
            Outcome::Deny,
            ReasonCode::PatientMismatch,
            format!("the resource concerns {of}, not {}", request.patient),
        ));
    }
    let action = format!("{class} to {recipient} for {}", request.purpose);

    let flow = Flow {
        recipient: request.recipient,
        source: request.source,
        purpose: request.purpose,
        home_municipality: request.home_municipality,
    };
    if let Some(d) = by_legal_basis(policy, &flow, &class, resource, &action) {
        return finish(d);
    }

    let ctx = Context {
        recipient: request.recipient,
        source: request.source,
        purpose: request.purpose,
        class: &class,
        resource_type: resource
            .and_then(|r| r.get("resourceType"))
            .and_then(Value::as_str),
        resource_ref: resource.and_then(|r| {
            let kind = r.get("resourceType")?.as_str()?;
            let id = r.get("id")?.as_str()?;
            Some(format!("{kind}/{id}"))
        }),
        base: rule.base_policy,
        now,
    };
    let source_must_be_named = request
        .source
        .is_some_and(|s| rule.named_source_kinds.contains(&s.kind));

    let deciding = consents
        .iter()
        .filter(|c| c.patient == *request.patient && c.in_force(now))
        .filter_map(|c| evaluate(&c.provision, &ctx, SharingLevel::Full, false).map(|v| (c, v)))
        // Most recent wins; on the same dateTime a deny wins, then the id decides, so the
        // result never depends on the order the caller passed.
        .max_by(|(a, va), (b, vb)| {
            a.date_time
                .cmp(&b.date_time)
                .then(vb.permit.cmp(&va.permit))
                .then(b.id.cmp(&a.id))
        });

    let Some((consent, verdict)) = deciding else {
        return finish(match rule.base_policy {
            BasePolicy::OptOut if !source_must_be_named => Decision::new(
                Outcome::Permit,
                ReasonCode::BasePolicyOptOut,
                format!(
                    "{action}: no consent applies and {} is opt-out",
                    request.purpose
                ),
            ),
            _ => Decision::new(
                Outcome::Deny,
                ReasonCode::BasePolicyOptIn,
                format!(
                    "{action}: no consent applies and {} is opt-in",
                    request.purpose
                ),
            ),
        });
    };
    let (outcome, reason, verb) = if verdict.from_base && !verdict.permit {
        (
            Outcome::Deny,
            ReasonCode::BasePolicyOptIn,
            "leaves to the opt-in base policy",
        )
    } else if !verdict.permit {
        (Outcome::Deny, ReasonCode::ConsentDeny, "denies")
    } else if source_must_be_named && !verdict.source_named {
        (
            Outcome::Deny,
            ReasonCode::SourceNotNamed,
            "permits, but does not name the data's source, for",
        )
    } else if verdict.from_base && verdict.level == SharingLevel::Full {
        (
            Outcome::Permit,
            ReasonCode::BasePolicyOptOut,
            "leaves to the opt-out base policy",
        )
    } else if verdict.level == SharingLevel::IdentityOnly {
        (
            Outcome::Redact(Redaction::IdentityOnly),
            ReasonCode::ConsentIdentityOnly,
            "permits identity only for",
        )
    } else {
        (Outcome::Permit, ReasonCode::ConsentPermit, "permits")
    };
    let mut d = Decision::new(
        outcome,
        reason,
        format!("{} {} {verb} {action}", consent.reference(), verdict.path),
    );
    d.consents_used = vec![consent.reference()];
    d.provision = Some(verdict.path);
    finish(d)
}

/// The provision tree's verdict, or `None` when the provision does not apply. Nested provisions
/// are exceptions: when any applies, they decide (a deny among them wins, and among permits
/// the more restrictive sharing level); otherwise the provision's own type does.
fn evaluate(
    p: &Provision,
    ctx: &Context<'_>,
    inherited: SharingLevel,
    named_above: bool,
) -> Option<Verdict> {
    if !applies(p, ctx) {
        return None;
    }
    let level = p.sharing_level.unwrap_or(inherited);
    let named = named_above || p.actors.iter().any(|a| a.role == ActorRole::Custodian);
    let children: Vec<Verdict> = p
        .provisions
        .iter()
        .filter_map(|child| evaluate(child, ctx, level, named))
        .collect();
    if let Some(deny) = children.iter().find(|v| !v.permit) {
        return Some(deny.clone());
    }
    if let Some(permit) = children.iter().max_by_key(|v| v.level) {
        // max_by_key keeps the last maximum; the first one is the one to cite.
        let first = children
            .iter()
            .find(|v| v.level == permit.level)
            .unwrap_or(permit);
        return Some(first.clone());
    }
    let permit = match p.decision {
        Some(ProvisionType::Permit) => true,
        Some(ProvisionType::Deny) => false,
        None => ctx.base == BasePolicy::OptOut,
    };
    Some(Verdict {
        permit,
        level,
        path: p.path.clone(),
        source_named: named,
        from_base: p.decision.is_none(),
    })
}

fn applies(p: &Provision, ctx: &Context<'_>) -> bool {
    if let Some(period) = &p.period
        && !period.covers(ctx.now)
    {
        return false;
    }
    let recipients: Vec<&ActorMatch> = p
        .actors
        .iter()
        .filter(|a| a.role == ActorRole::Recipient)
        .map(|a| &a.matches)
        .collect();
    if !recipients.is_empty() && !recipients.iter().any(|m| actor_matches(m, ctx.recipient)) {
        return false;
    }
    let custodians: Vec<&ActorMatch> = p
        .actors
        .iter()
        .filter(|a| a.role == ActorRole::Custodian)
        .map(|a| &a.matches)
        .collect();
    if !custodians.is_empty()
        && !ctx
            .source
            .is_some_and(|s| custodians.iter().any(|m| actor_matches(m, s)))
    {
        return false;
    }
    if !p.purposes.is_empty() && !p.purposes.contains(ctx.purpose) {
        return false;
    }
    if !p.classes.is_empty()
        && !p.classes.iter().any(|c| match c {
            ClassMatch::DataClass(class) => class == ctx.class,
            ClassMatch::ResourceType(t) => ctx.resource_type == Some(t.as_str()),
        })
    {
        return false;
    }
    if !p.data.is_empty()
        && !ctx
            .resource_ref
            .as_ref()
            .is_some_and(|r| p.data.contains(r))
    {
        return false;
    }
    true
}

fn actor_matches(m: &ActorMatch, party: &Party) -> bool {
    match m {
        ActorMatch::Organization(id) => party.identifiers.contains(id),
        ActorMatch::Kind(kind) => party.kind == *kind,
        ActorMatch::Client(id) => party.client_id.as_deref() == Some(id.as_str()),
        ActorMatch::Reference(r) => party.organization.as_deref() == Some(r.as_str()),
    }
}

/// Who receives what from whom, for why: the parts of a request a legal basis looks at.
struct Flow<'a> {
    recipient: &'a Party,
    source: Option<&'a Party>,
    purpose: &'a Purpose,
    home_municipality: Option<&'a str>,
}

/// The permit of the first legal basis that matches, if any.
fn by_legal_basis(
    policy: &Policy,
    flow: &Flow<'_>,
    class: &DataClass,
    resource: Option<&Value>,
    action: &str,
) -> Option<Decision> {
    let basis = policy
        .legal_bases()
        .iter()
        .find(|b| legal_basis_applies(b, flow, class, resource))?;
    let mut d = Decision::new(
        Outcome::Permit,
        ReasonCode::LegalBasis,
        format!("{action}: required by {} ({})", basis.law, basis.id),
    );
    d.legal_basis = Some(basis.id.clone());
    d.data_class = Some(class.clone());
    Some(d)
}

/// Decides the disclosure of a record that names no single person, such as a claim batch
/// covering many residents. No consent can be about such a record, so only a legal basis can
/// permit it. When none applies, a record of a class marked `legalBasisOnly` is denied
/// (`no-legal-basis`); otherwise the answer is `None` (also for an unclassified record or an
/// unknown purpose), and the caller follows its own rule for records without a data subject.
pub fn decide_without_subject(
    policy: &Policy,
    recipient: &Party,
    source: Option<&Party>,
    purpose: &Purpose,
    resource: &Value,
) -> Option<Decision> {
    let Classification::Class(class) = policy.classify(resource) else {
        return None;
    };
    policy.purpose(purpose)?;
    let flow = Flow {
        recipient,
        source,
        purpose,
        home_municipality: None,
    };
    let action = format!("{class} to {} for {purpose}", describe(recipient));
    by_legal_basis(policy, &flow, &class, Some(resource), &action).or_else(|| {
        policy.legal_basis_only(&class).then(|| {
            let mut d = Decision::new(
                Outcome::Deny,
                ReasonCode::NoLegalBasis,
                format!("{action}: only a legal basis discloses {class} and none applies"),
            );
            d.data_class = Some(class.clone());
            d
        })
    })
}

fn legal_basis_applies(
    basis: &LegalBasis,
    request: &Flow<'_>,
    class: &DataClass,
    resource: Option<&Value>,
) -> bool {
    if !basis.purposes.contains(request.purpose)
        || !basis.recipient_kinds.contains(&request.recipient.kind)
        || !basis.data_classes.iter().any(|c| c == class.as_str())
    {
        return false;
    }
    if !basis.source_kinds.is_empty()
        && !request
            .source
            .is_some_and(|s| basis.source_kinds.contains(&s.kind))
    {
        return false;
    }
    if basis.recipient_relation == RecipientRelation::HomeMunicipality {
        let home = request.home_municipality.map(Identifier::municipality);
        if !home.is_some_and(|h| request.recipient.identifiers.contains(&h)) {
            return false;
        }
    }
    if !basis.resource.is_empty() || !basis.recipient_named_in.is_empty() {
        let Some(resource) = resource else {
            return false;
        };
        if !basis.resource.iter().all(|c| condition_holds(resource, c)) {
            return false;
        }
        if !basis.recipient_named_in.is_empty()
            && !basis
                .recipient_named_in
                .iter()
                .any(|path| names_party(resource, path, request.recipient))
        {
            return false;
        }
    }
    true
}

/// The patient a resource is about: a Patient itself, or its `patient` / `subject` /
/// `beneficiary` reference when that points at a Patient.
pub(crate) fn resource_patient(resource: &Value) -> Option<PatientRef> {
    let kind = resource.get("resourceType").and_then(Value::as_str)?;
    if kind == "Patient" {
        return resource
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| PatientRef::parse(id).ok());
    }
    ["patient", "subject", "beneficiary"]
        .iter()
        .find_map(|element| {
            let reference = resource.get(*element)?.get("reference")?.as_str()?;
            let local = type_and_id(reference)?;
            local
                .starts_with("Patient/")
                .then(|| PatientRef::parse(&local).ok())
                .flatten()
        })
}

fn describe(party: &Party) -> String {
    let who = party
        .client_id
        .clone()
        .or_else(|| party.identifiers.first().map(|i| i.value.clone()))
        .unwrap_or_default();
    if who.is_empty() {
        party.kind.code().to_owned()
    } else {
        format!("{} {who}", party.kind.code())
    }
}
