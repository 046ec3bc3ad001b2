//! My Number Portal self-information client: consent and token handling, retrieval with retries, and mapping of vaccination and check-up records to FHIR.
//!
//! The portal (マイナポータル) publishes neither its API's endpoints nor its answer schema
//! (jp-specs §2.2, §7), so the adapter is split at that uncertainty: the HTTP edge
//! ([`PortalClient`]) follows the documented flow (OAuth 2.0 code flow with PKCE and a
//! signed-JWT client assertion, 90-day continuous access), while every endpoint path, field
//! location and name table is a data file in `profiles/jp/portal/` ([`PortalTables`]). Mapping
//! ([`map_vaccination`], [`map_checkup`]) and de-duplication ([`reconcile`]) are pure.
//! See docs/my-number-portal.md.

mod auth;
mod client;
mod consent;
mod dedup;
mod error;
mod map;
mod records;
mod retry;
mod tables;
mod text;

pub use auth::{
    AuthorisationCallback, CLIENT_ASSERTION_TYPE, ClientAuth, ClientKey, PatientId,
    PendingAuthorisation, PortalSession, Secret, TokenSet, authorisation_url, parse_token_response,
    pkce_challenge,
};
pub use client::{CheckupPull, PortalClient, PortalConfig, VaccinationPull};
pub use consent::ContinuousAccess;
pub use dedup::{
    Conflict, DedupKey, LotMatch, Matched, Reconciliation, dedup_key, existing_key, reconcile,
    transaction,
};
pub use error::PortalError;
pub use map::{
    JP_IMMUNIZATION, MEDICAL_INSTITUTION_SYSTEM, MappedCheckup, MappedVaccination,
    VACCINATING_MUNICIPALITY_EXTENSION, map_checkup, map_vaccination, provenance,
};
pub use records::{
    CheckupItem, CheckupRecord, Dose, Facility, ItemValue, Page, VaccinationRecord,
    parse_checkup_page, parse_dose, parse_vaccination_page,
};
pub use retry::{RetryPolicy, StatusClass, classify, parse_retry_after};
pub use tables::{
    Authorisation, CheckupFields, CodedValue, Endpoint, ErrorCodes, ItemDef, ItemFields, KindDef,
    Layout, Pagination, PortalTables, SourceNames, Unit, VACCINE_TYPE_SYSTEM, VaccinationFields,
    VaccineType, ValueKind,
};
pub use text::{normalise_lot, normalise_name, resource_id};
