//! Consent decisions without I/O: Musubi_Consent resources, the base policy per purpose, legal
//! bases, nested permit/deny provisions, identity-only redaction, and keyed pseudonyms for
//! research linkage.
//!
//! The gateway calls [`decide`] at every exit (read, search, history, include, app APIs,
//! exports, routed deliveries) with the consents of the patient as they are at that moment, and
//! records the [`Decision`] in an AuditEvent. Nothing is cached here; `now` is a parameter. The
//! model, the encoding of each Consent element and the algorithm are in docs/consent.md.

mod decide;
mod error;
mod fhirtime;
mod model;
mod policy;
mod pseudonym;
mod record;
mod redact;

pub use decide::{
    Data, Decision, Outcome, ReasonCode, Redaction, Request, decide, decide_without_subject,
};
pub use error::ConsentError;
pub use model::{
    CLIENT_ID_SYSTEM, DATA_CLASS_SYSTEM, DataClass, Identifier, MEDICAL_INSTITUTION_CODE_SYSTEM,
    MEDICAL_INSTITUTION_CODE_SYSTEM_COMMON, MUNICIPALITY_CODE_SYSTEM, PSEUDONYM_SYSTEM,
    PURPOSE_SYSTEM, Party, PatientRef, ProjectId, Purpose, RECIPIENT_KIND_ID_SYSTEM,
    RECIPIENT_KIND_SYSTEM, RESEARCH_PROJECT_SYSTEM, RecipientKind, SHARING_LEVEL_EXTENSION,
    SHARING_LEVEL_SYSTEM, SharingLevel,
};
pub use policy::{
    BasePolicy, ClassRule, Classification, ElementCondition, LegalBasis, MEMBERS_ALWAYS_READ,
    Policy, PseudonymisationRules, PurposeRule, RecipientRelation,
};
pub use pseudonym::{
    Linkage, LinkageRequest, Pseudonym, PseudonymKey, issue_pseudonym, pseudonymise,
};
pub use record::{
    Actor, ActorMatch, ActorRole, ClassMatch, ConsentRecord, ConsentStatus, Grantor,
    PARTICIPATION_SYSTEM, Period, Provision, ProvisionType, RESOURCE_TYPES_SYSTEM, SCOPE_SYSTEM,
};
pub use redact::redact_identity_only;
