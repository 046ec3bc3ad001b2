//! Routing rules as data without I/O: which parties receive a record, by which channel and under
//! which purpose, when it is created or changed; the retry policy and the delivery state machine
//! the gateway's outbox worker follows. Rules and sources: docs/routing.md.

mod delivery;
mod error;
mod parcel;
mod path;
mod plan;
mod retry;
mod rules;

pub use delivery::{DeliveryEvent, DeliveryState, DeliveryStatus, transition};
pub use error::RoutingError;
pub use parcel::{IsoWeek, JAPAN, digest_id, file_gathering_time, file_id, file_window_start};
pub use path::ElementPath;
pub use plan::{
    Delivery, DeliveryId, Directory, Event, MUNICIPALITY_EXTENSION, OrganizationRef, Plan,
    Recipient, RecipientKind, Unresolved, home_municipality, organization_municipality, patient_id,
    plan,
};
pub use retry::{
    DeadReason, Failure, RetryDecision, RetryPolicy, backoff, backoff_ceiling, decide,
};
pub use rules::{
    Basis, Channel, DEFAULT_PERFORMER_PATH, EventKind, FALLBACK_RETRY, FileInfo, Party, PartyRole,
    Predicate, PurposeOfUse, RoutingRules, Rule,
};
