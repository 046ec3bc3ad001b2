//! Planning deliveries: for one record event, apply every rule, resolve each party role to
//! concrete recipients through the gateway's [`Directory`], and give each delivery a
//! deterministic, idempotent id.

use std::fmt;

use identifiers::{MUNICIPALITY_CODE_SYSTEM, MunicipalityCode};
use serde_json::Value;

use crate::path::ElementPath;
use crate::rules::{
    Basis, Channel, DEFAULT_PERFORMER_PATH, EventKind, PartyRole, PurposeOfUse, RoutingRules, Rule,
};

/// The extension naming the 6-digit local-government code of an address (on `Patient.address`),
/// shared with the rules engine and the municipal adapter.
pub const MUNICIPALITY_EXTENSION: &str =
    "https://musubi.example.org/fhir/StructureDefinition/municipality-code";

/// A record event to route. For `Deleted`, pass the last version before the deletion.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub kind: EventKind,
    pub resource_type: &'a str,
    pub id: &'a str,
    pub version: &'a str,
    pub resource: &'a Value,
}

/// A logical reference to an Organization, as found in a resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OrganizationRef {
    /// `Organization/{id}` on this server.
    Id(String),
    /// A Reference by identifier (e.g. the 医療機関コード).
    Identifier { system: String, value: String },
}

impl OrganizationRef {
    /// Reads a Reference element: `reference` of the form `Organization/{id}` (also as the tail
    /// of an absolute URL), else `identifier` when `type` is absent or `Organization`.
    pub fn from_reference(reference: &Value) -> Option<Self> {
        if let Some(text) = reference.get("reference").and_then(Value::as_str) {
            let mut parts = text.rsplit('/');
            let id = parts.next()?;
            let kind = parts.next()?;
            return (kind == "Organization" && !id.is_empty()).then(|| Self::Id(id.to_owned()));
        }
        let kind = reference.get("type").and_then(Value::as_str);
        if kind.is_some_and(|k| k != "Organization") {
            return None;
        }
        let identifier = reference.get("identifier")?;
        let system = identifier.get("system")?.as_str()?;
        let value = identifier.get("value")?.as_str()?;
        Some(Self::Identifier {
            system: system.to_owned(),
            value: value.to_owned(),
        })
    }
}

impl fmt::Display for OrganizationRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrganizationRef::Id(id) => write!(f, "Organization/{id}"),
            OrganizationRef::Identifier { system, value } => write!(f, "{system}|{value}"),
        }
    }
}

/// What kind of party a recipient is: the `auth` client kinds, with the same codes, so the
/// consent engine can check the delivery against the recipient. A municipality's district team
/// is a `Municipality` recipient with its own id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecipientKind {
    PhrApp,
    ClinicEmr,
    MedicalAssociation,
    Municipality,
}

impl RecipientKind {
    pub fn code(self) -> &'static str {
        match self {
            RecipientKind::PhrApp => "phr-app",
            RecipientKind::ClinicEmr => "clinic-emr",
            RecipientKind::MedicalAssociation => "medical-association",
            RecipientKind::Municipality => "municipality",
        }
    }
}

/// A concrete recipient, as the gateway's directory knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Recipient {
    pub kind: RecipientKind,
    /// The gateway's stable key for the recipient (e.g. an auth client id or
    /// `Organization/{id}`); part of the delivery id.
    pub id: String,
    /// Whether the recipient has a FHIR endpoint; a `fhir-rest-hook` delivery to a recipient
    /// without one goes to its mailbox instead.
    pub has_endpoint: bool,
}

/// Resolves party roles to recipients; the gateway implements it over its store and
/// configuration.
pub trait Directory {
    /// The apps the patient's guardians (or the patient) registered to receive records.
    fn guardian_apps_of(&self, patient_id: &str) -> Vec<Recipient>;
    /// The medical association (医師会) the clinic belongs to.
    fn medical_association_of(&self, clinic: &OrganizationRef) -> Option<Recipient>;
    /// The patient's home municipality; implement it by reading the stored Patient with
    /// [`home_municipality`].
    fn home_municipality_of(&self, patient_id: &str) -> Option<MunicipalityCode>;
    /// The municipality as a recipient (its health-management system).
    fn municipality(&self, code: &MunicipalityCode) -> Option<Recipient>;
    /// The district team (地区担当) of the municipality responsible for the patient.
    fn district_team_of(
        &self,
        municipality: &MunicipalityCode,
        patient_id: &str,
    ) -> Option<Recipient>;
    /// An Organization on this server as a recipient (e.g. a clinic).
    fn organization(&self, organization: &OrganizationRef) -> Option<Recipient>;
}

/// A deterministic delivery id: the first 128 bits of the SHA-256 of the rule id, the resource
/// type, id and version and the recipient, in hex. Planning the same event twice gives the same
/// ids, so the outbox can insert idempotently.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(String);

impl DeliveryId {
    pub fn new(rule_id: &str, event: &Event<'_>, recipient: &Recipient) -> Self {
        Self::of(
            rule_id,
            event.resource_type,
            event.id,
            event.version,
            recipient.kind,
            &recipient.id,
        )
    }

    /// The id of the rule's delivery of one record version to one recipient, so the delivery
    /// of an earlier version can be read back without a search.
    pub fn of(
        rule_id: &str,
        resource_type: &str,
        id: &str,
        version: &str,
        recipient_kind: RecipientKind,
        recipient_id: &str,
    ) -> Self {
        Self(crate::parcel::hashed_id(&[
            "musubi-delivery-v1",
            rule_id,
            resource_type,
            id,
            version,
            recipient_kind.code(),
            recipient_id,
        ]))
    }

    /// The id of the delivery that removes the row a correction leaves behind at a
    /// municipality (its key changed): derived from the correction's delivery id, so gathering
    /// again never makes a second one.
    pub fn superseded_row(delivery_id: &str) -> Self {
        Self(crate::parcel::hashed_id(&[
            "musubi-superseded-row-v1",
            delivery_id,
        ]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One record to send to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub rule_id: String,
    pub event: EventKind,
    pub resource_type: String,
    pub resource_id: String,
    pub version: String,
    pub recipient: Recipient,
    pub channel: Channel,
    pub purpose: PurposeOfUse,
    pub basis: Basis,
}

/// A rule that applied but whose party could not be resolved; the gateway records it so that no
/// route fails silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub rule_id: String,
    pub role: PartyRole,
    pub reason: String,
}

/// The outcome of planning one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In rule order, then the directory's order; without duplicates.
    pub deliveries: Vec<Delivery>,
    pub unresolved: Vec<Unresolved>,
}

/// Plans the deliveries for one event: every enabled rule for the resource type and event kind
/// whose predicate holds, with its party resolved through `directory`.
pub fn plan<D: Directory + ?Sized>(rules: &RoutingRules, event: &Event<'_>, directory: &D) -> Plan {
    let mut out = Plan::default();
    for rule in rules.rules() {
        if !rule.applies(event.kind, event.resource_type, event.resource) {
            continue;
        }
        match resolve(rule, event, directory) {
            Ok(recipients) => {
                for recipient in recipients {
                    let channel = match rule.channel {
                        Channel::FhirRestHook if !recipient.has_endpoint => Channel::Mailbox,
                        other => other,
                    };
                    let delivery = Delivery {
                        id: DeliveryId::new(&rule.id, event, &recipient),
                        rule_id: rule.id.clone(),
                        event: event.kind,
                        resource_type: event.resource_type.to_owned(),
                        resource_id: event.id.to_owned(),
                        version: event.version.to_owned(),
                        recipient,
                        channel,
                        purpose: rule.purpose,
                        basis: rule.basis.clone(),
                    };
                    if !out.deliveries.iter().any(|d| d.id == delivery.id) {
                        out.deliveries.push(delivery);
                    }
                }
            }
            Err(reason) => out.unresolved.push(Unresolved {
                rule_id: rule.id.clone(),
                role: rule.party.role,
                reason,
            }),
        }
    }
    out
}

fn resolve<D: Directory + ?Sized>(
    rule: &Rule,
    event: &Event<'_>,
    directory: &D,
) -> Result<Vec<Recipient>, String> {
    let patient = || {
        patient_id(event.resource_type, event.resource)
            .ok_or_else(|| "the resource names no Patient (patient or subject)".to_owned())
    };
    let home = |patient: &str| {
        directory
            .home_municipality_of(patient)
            .ok_or_else(|| format!("Patient/{patient} has no known home municipality"))
    };
    match rule.party.role {
        PartyRole::GuardianApps => {
            let patient = patient()?;
            let apps = directory.guardian_apps_of(&patient);
            if apps.is_empty() {
                return Err(format!("no app is registered for Patient/{patient}"));
            }
            Ok(apps)
        }
        PartyRole::HomeMunicipality => {
            let code = home(&patient()?)?;
            directory
                .municipality(&code)
                .map(|r| vec![r])
                .ok_or_else(|| format!("municipality {code} is not a known recipient"))
        }
        PartyRole::DistrictTeam => {
            let patient = patient()?;
            let code = home(&patient)?;
            directory
                .district_team_of(&code, &patient)
                .map(|r| vec![r])
                .ok_or_else(|| {
                    format!("municipality {code} has no district team for Patient/{patient}")
                })
        }
        PartyRole::MedicalAssociationOfPerformer => {
            let default;
            let path = match &rule.party.path {
                Some(path) => path,
                None => {
                    default = ElementPath::parse(DEFAULT_PERFORMER_PATH)
                        .expect("the default performer path is valid");
                    &default
                }
            };
            let clinic = organization_at(path, event.resource)?;
            directory
                .medical_association_of(&clinic)
                .map(|r| vec![r])
                .ok_or_else(|| format!("{clinic} belongs to no known medical association"))
        }
        PartyRole::ReferencedOrganization => {
            let path = rule
                .party
                .path
                .as_ref()
                .ok_or_else(|| "the rule names no path".to_owned())?;
            let organization = organization_at(path, event.resource)?;
            directory
                .organization(&organization)
                .map(|r| vec![r])
                .ok_or_else(|| format!("{organization} is not a known recipient"))
        }
    }
}

fn organization_at(path: &ElementPath, resource: &Value) -> Result<OrganizationRef, String> {
    path.select(resource)
        .into_iter()
        .find_map(OrganizationRef::from_reference)
        .ok_or_else(|| format!("no Organization reference at {path}"))
}

/// The id of the Patient a resource is about: the resource itself for a Patient, else
/// `patient` or `subject` when it refers to `Patient/{id}`.
pub fn patient_id(resource_type: &str, resource: &Value) -> Option<String> {
    if resource_type == "Patient" {
        return resource.get("id")?.as_str().map(str::to_owned);
    }
    ["patient", "subject"].iter().find_map(|element| {
        let text = resource.get(*element)?.get("reference")?.as_str()?;
        let mut parts = text.rsplit('/');
        let id = parts.next()?;
        (parts.next()? == "Patient" && !id.is_empty()).then(|| id.to_owned())
    })
}

/// The home municipality of a Patient: the [`MUNICIPALITY_EXTENSION`] on an address with
/// `use` home (else on one without `use`; work, temp, old and billing addresses are skipped),
/// else the same extension on the Patient itself. The value is `valueCode` or `valueString`;
/// `valueIdentifier` with the municipality-code system is accepted too. An unparsable code is
/// an error, not a missing value: the record would otherwise go to nobody silently.
pub fn home_municipality(patient: &Value) -> Result<Option<MunicipalityCode>, String> {
    let addresses: Vec<&Value> = match patient.get("address") {
        Some(Value::Array(items)) => items.iter().collect(),
        _ => Vec::new(),
    };
    let use_of = |a: &Value| a.get("use").and_then(Value::as_str).map(str::to_owned);
    let candidates = addresses
        .iter()
        .filter(|a| use_of(a).as_deref() == Some("home"))
        .chain(addresses.iter().filter(|a| use_of(a).is_none()))
        .copied()
        .chain(std::iter::once(patient));
    first_municipality_code(candidates)
}

/// The municipality an Organization (a clinic) is in: the municipality-code extension on its
/// first address that has one, whatever the address's `use`, else on the Organization itself.
/// Read like [`home_municipality`]; an unparsable code is an error.
pub fn organization_municipality(organization: &Value) -> Result<Option<MunicipalityCode>, String> {
    let addresses = match organization.get("address") {
        Some(Value::Array(items)) => items.iter().collect(),
        _ => Vec::new(),
    };
    first_municipality_code(addresses.into_iter().chain(std::iter::once(organization)))
}

/// The municipality-code extension of the first holder (in order) that has one, parsed.
fn first_municipality_code<'v>(
    holders: impl Iterator<Item = &'v Value>,
) -> Result<Option<MunicipalityCode>, String> {
    for holder in holders {
        if let Some(text) = extension_code(holder) {
            return MunicipalityCode::parse(&text)
                .map(Some)
                .map_err(|e| format!("{MUNICIPALITY_EXTENSION}: {e}"));
        }
    }
    Ok(None)
}

fn extension_code(holder: &Value) -> Option<String> {
    let Value::Array(extensions) = holder.get("extension")? else {
        return None;
    };
    let extension = extensions
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(MUNICIPALITY_EXTENSION))?;
    if let Some(text) = extension
        .get("valueCode")
        .or_else(|| extension.get("valueString"))
        .and_then(Value::as_str)
    {
        return Some(text.to_owned());
    }
    let identifier = extension.get("valueIdentifier")?;
    (identifier.get("system").and_then(Value::as_str) == Some(MUNICIPALITY_CODE_SYSTEM))
        .then(|| identifier.get("value")?.as_str().map(str::to_owned))
        .flatten()
}
