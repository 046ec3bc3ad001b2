//! The typed vocabulary of consent decisions: purposes, data classes, parties, sharing levels and
//! the Musubi URLs that encode them in FHIR.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ConsentError;

/// HL7 v3 ActReason, the code system of the v3-PurposeOfUse value set.
pub const PURPOSE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// Musubi's data classes (`Consent.provision.class`, `meta.tag`).
pub const DATA_CLASS_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/data-class";
/// Musubi's sharing levels (the value of [`SHARING_LEVEL_EXTENSION`]).
pub const SHARING_LEVEL_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/sharing-level";
/// Musubi's recipient kinds (the codes of [`RECIPIENT_KIND_ID_SYSTEM`] values).
pub const RECIPIENT_KIND_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/recipient-kind";
/// The modifier extension on `Consent.provision` that limits a permit to a sharing level.
pub const SHARING_LEVEL_EXTENSION: &str =
    "https://musubi.example.org/fhir/StructureDefinition/consent-sharing-level";
/// Identifier system naming a registered client (`auth` client id) in `provision.actor`.
pub const CLIENT_ID_SYSTEM: &str = "https://musubi.example.org/fhir/IdSystem/client-id";
/// Identifier system naming a whole kind of recipient in `provision.actor` (value: a
/// [`RecipientKind`] code).
pub const RECIPIENT_KIND_ID_SYSTEM: &str =
    "https://musubi.example.org/fhir/IdSystem/recipient-kind";
/// Identifier system of a research or evaluation project (pseudonymised linkage).
pub const RESEARCH_PROJECT_SYSTEM: &str =
    "https://musubi.example.org/fhir/IdSystem/research-project";
/// Identifier system of the 6-digit local-government code (全国地方公共団体コード).
pub const MUNICIPALITY_CODE_SYSTEM: &str =
    "https://musubi.example.org/fhir/IdSystem/municipality-code";
/// JP Core's identifier system of the 10-digit medical-institution code (医療機関コード).
pub const MEDICAL_INSTITUTION_CODE_SYSTEM: &str =
    "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";
/// The ePrescription variant of [`MEDICAL_INSTITUTION_CODE_SYSTEM`], accepted on input.
pub const MEDICAL_INSTITUTION_CODE_SYSTEM_COMMON: &str =
    "http://jpfhir.jp/fhir/Common/IdSystem/insurance-medical-institution-no";
/// The pseudonym identifier system of research exports.
pub const PSEUDONYM_SYSTEM: &str = "https://musubi.example.org/fhir/IdSystem/pseudonym";

/// A purpose of use: an HL7 v3 ActReason code such as `TREAT`, `PUBHLTH`, `HPAYMT`, `HRESCH`,
/// `PATRQT` (purposes.json lists the ones Musubi decides on).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Purpose(String);

impl Purpose {
    /// Accepts the code form of v3 ActReason codes: upper-case ASCII letters and digits.
    pub fn new(code: &str) -> Result<Purpose, ConsentError> {
        let ok = !code.is_empty()
            && code.len() <= 32
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Purpose(code.to_owned()))
        } else {
            Err(ConsentError::Invalid {
                what: "purpose of use",
                problem: format!("'{code}' is not a v3 ActReason code (e.g. TREAT, PUBHLTH)"),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Purpose {
    type Error = ConsentError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Purpose::new(&value)
    }
}

impl From<Purpose> for String {
    fn from(value: Purpose) -> Self {
        value.0
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A data class (vaccinations, checkups, …), one of the classes data-classes.json declares.
/// Obtain one from [`crate::Policy::data_class`] or [`crate::Policy::classify`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataClass(pub(crate) String);

impl DataClass {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DataClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of party that receives data. The first five are the `auth` client kinds (same
/// kebab-case codes); `research-project` is the recipient of a pseudonymised research export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecipientKind {
    /// A clinic's electronic medical record system (電子カルテ).
    ClinicEmr,
    /// A medical association (医師会).
    MedicalAssociation,
    /// A municipality (市区町村).
    Municipality,
    /// A personal health record app acting for the person or a guardian.
    PhrApp,
    /// An adapter for a national or municipal portal.
    PortalAdapter,
    /// A research or evaluation project receiving pseudonymised data.
    ResearchProject,
}

impl RecipientKind {
    pub const ALL: [RecipientKind; 6] = [
        RecipientKind::ClinicEmr,
        RecipientKind::MedicalAssociation,
        RecipientKind::Municipality,
        RecipientKind::PhrApp,
        RecipientKind::PortalAdapter,
        RecipientKind::ResearchProject,
    ];

    pub fn code(self) -> &'static str {
        match self {
            RecipientKind::ClinicEmr => "clinic-emr",
            RecipientKind::MedicalAssociation => "medical-association",
            RecipientKind::Municipality => "municipality",
            RecipientKind::PhrApp => "phr-app",
            RecipientKind::PortalAdapter => "portal-adapter",
            RecipientKind::ResearchProject => "research-project",
        }
    }

    pub fn parse(code: &str) -> Result<RecipientKind, ConsentError> {
        RecipientKind::ALL
            .into_iter()
            .find(|k| k.code() == code)
            .ok_or_else(|| ConsentError::Invalid {
                what: "recipient kind",
                problem: format!(
                    "'{code}' is not one of clinic-emr, medical-association, municipality, phr-app, portal-adapter, research-project"
                ),
            })
    }
}

/// How much of a record a permit lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SharingLevel {
    /// The whole record.
    Full,
    /// Who the person is and that the record exists (e.g. that contact was requested), no
    /// clinical content ([`crate::redact_identity_only`]).
    IdentityOnly,
}

impl SharingLevel {
    pub fn code(self) -> &'static str {
        match self {
            SharingLevel::Full => "full",
            SharingLevel::IdentityOnly => "identity-only",
        }
    }

    pub fn parse(code: &str) -> Option<SharingLevel> {
        match code {
            "full" => Some(SharingLevel::Full),
            "identity-only" => Some(SharingLevel::IdentityOnly),
            _ => None,
        }
    }
}

/// A FHIR identifier (system + value), compared after mapping input-only system variants to the
/// canonical system.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier {
    pub system: String,
    pub value: String,
}

impl Identifier {
    pub fn new(system: &str, value: &str) -> Identifier {
        let system = if system == MEDICAL_INSTITUTION_CODE_SYSTEM_COMMON {
            MEDICAL_INSTITUTION_CODE_SYSTEM
        } else {
            system
        };
        Identifier {
            system: system.to_owned(),
            value: value.trim().to_owned(),
        }
    }

    /// A municipality's 6-digit local-government code.
    pub fn municipality(code: &str) -> Identifier {
        Identifier::new(MUNICIPALITY_CODE_SYSTEM, code)
    }

    /// A 10-digit medical-institution code.
    pub fn medical_institution(code: &str) -> Identifier {
        Identifier::new(MEDICAL_INSTITUTION_CODE_SYSTEM, code)
    }
}

/// A party in a request: the recipient of a disclosure, or the source (custodian) the data came
/// from. The gateway builds it from the authenticated client (`auth::Client`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub kind: RecipientKind,
    /// The registered client id, when the party is a client.
    pub client_id: Option<String>,
    /// Identifiers of the organisation the party acts for: municipality code,
    /// medical-institution code, a medical association's identifier, a research project id.
    pub identifiers: Vec<Identifier>,
    /// The party's Organization resource as `Organization/{id}`, when known.
    pub organization: Option<String>,
}

impl Party {
    /// A party of `kind` acting as client `client_id`, with no organisation identifiers yet.
    pub fn client(kind: RecipientKind, client_id: &str) -> Party {
        Party {
            kind,
            client_id: Some(client_id.to_owned()),
            identifiers: Vec::new(),
            organization: None,
        }
    }

    /// Adds an organisation identifier.
    pub fn with_identifier(mut self, identifier: Identifier) -> Party {
        self.identifiers.push(identifier);
        self
    }

    /// The recipient of a research project's pseudonymised export.
    pub fn research_project(project: &ProjectId) -> Party {
        Party {
            kind: RecipientKind::ResearchProject,
            client_id: None,
            identifiers: vec![Identifier::new(RESEARCH_PROJECT_SYSTEM, project.as_str())],
            organization: None,
        }
    }
}

/// A reference to the patient a consent or record concerns, normalised to `Patient/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PatientRef(String);

impl PatientRef {
    /// Accepts `Patient/{id}`, an absolute URL ending in `Patient/{id}` (a `/_history/{v}` suffix
    /// is dropped), or a bare id.
    pub fn parse(text: &str) -> Result<PatientRef, ConsentError> {
        let bad = || ConsentError::Invalid {
            what: "patient reference",
            problem: format!("'{text}' is not Patient/{{id}}"),
        };
        let trimmed = match text.find("/_history/") {
            Some(at) => &text[..at],
            None => text,
        };
        // Parsed on every consent-checked read (twice), so without collecting the segments.
        let mut segments = trimmed.rsplit('/');
        let id = segments.next().unwrap_or_default();
        let kind = segments.next().unwrap_or("Patient");
        if kind != "Patient" || !fhir::is_id(id) {
            return Err(bad());
        }
        let mut reference = String::with_capacity("Patient/".len() + id.len());
        reference.push_str("Patient/");
        reference.push_str(id);
        Ok(PatientRef(reference))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PatientRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A research or evaluation project's id (letters, digits, `.`, `_`, `-`; at most 64).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectId(String);

impl ProjectId {
    pub fn new(id: &str) -> Result<ProjectId, ConsentError> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(ProjectId(id.to_owned()))
        } else {
            Err(ConsentError::Invalid {
                what: "research project id",
                problem: format!("'{id}' must be 1-64 letters, digits, '.', '_' or '-'"),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_references_normalise() {
        let cases = [
            ("Patient/child-001", Some("Patient/child-001")),
            ("child-001", Some("Patient/child-001")),
            (
                "https://musubi.example.org/fhir/Patient/p1/_history/3",
                Some("Patient/p1"),
            ),
            ("RelatedPerson/g1", None),
            ("Patient/", None),
            ("Patient/bad id", None),
            // Only the last two segments count; an empty type or id is refused.
            ("Group/Patient/p2", Some("Patient/p2")),
            ("/p3", None),
            ("", None),
            ("Patient/p4/_history/", Some("Patient/p4")),
        ];
        for (text, expected) in cases {
            let got = PatientRef::parse(text).ok();
            assert_eq!(got.as_ref().map(PatientRef::as_str), expected, "{text}");
        }
    }

    #[test]
    fn purpose_and_kind_codes() {
        assert!(Purpose::new("HRESCH").is_ok());
        assert!(Purpose::new("treat").is_err());
        assert!(Purpose::new("").is_err());
        for kind in RecipientKind::ALL {
            assert_eq!(RecipientKind::parse(kind.code()), Ok(kind));
        }
        assert!(RecipientKind::parse("hospital").is_err());
    }

    #[test]
    fn common_medical_institution_system_is_canonicalised() {
        let a = Identifier::new(MEDICAL_INSTITUTION_CODE_SYSTEM_COMMON, "1312345670");
        assert_eq!(a, Identifier::medical_institution("1312345670"));
    }
}
