//! The durable outbox of routed deliveries (docs/routing.md, "Delivery in the gateway"): each
//! delivery the `routing` crate plans for a write is a FHIR Task committed in the same store
//! commit as the record; a worker delivers due Tasks by rest-hook after re-checking consent,
//! retrying with backoff and dead-lettering; recipients without an endpoint pull their Tasks
//! from the mailbox (`/routing/v1/inbox`); operators list, replay and discard dead letters.
//! Municipal files and weekly digests travel in parcels (`channels`).
//!
//! The Task is the outbox row and the per-record delivery status at once: `focus` is the
//! record's version, `owner` the recipient, `code` the channel, `businessStatus` and `output`
//! the state of the `routing` state machine. Its id is the routing `DeliveryId`, and it is
//! created with "must not exist", so planning one record version twice can never queue it twice.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use consent::{Decision, Outcome, Party, PatientRef, Purpose};
use identifiers::MunicipalityCode;
use routing::{
    Channel, DeliveryEvent, DeliveryState, DeliveryStatus, Directory, EventKind, Failure,
    OrganizationRef, Recipient, RecipientKind, RetryPolicy, RoutingRules,
};
use serde_json::{Value, json};
use store::{Precondition, SearchRequest, StoredVersion, Write, WriteAction};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::access::{ACCOUNT_SYSTEM, Access, Caller};
use crate::error::{ApiError, ErrorKind};
use crate::http::{caller_access, error_response};
use crate::rest::Ctx;
use crate::state::AppState;

mod channels;

/// The channel of a delivery Task (`Task.code`), with the `routing` channel codes.
pub const CHANNEL_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/routing-channel";
/// The delivery state (`Task.businessStatus`), with the `routing` state codes.
pub const DELIVERY_STATUS_SYSTEM: &str =
    "https://musubi.example.org/fhir/CodeSystem/delivery-status";
/// The names of a delivery Task's `input` and `output` parameters.
pub const PARAMETER_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/routing-parameter";
/// `Task.identifier`: the routing delivery id (also the Task id).
pub const DELIVERY_ID_SYSTEM: &str = "https://musubi.example.org/fhir/IdSystem/delivery-id";
/// `Task.meta.tag` naming the recipient id, so a mailbox is one indexed search (`_tag`).
pub const RECIPIENT_TAG_SYSTEM: &str =
    "https://musubi.example.org/fhir/CodeSystem/routing-recipient";
/// Sent with every rest-hook delivery, so a recipient can drop a repeated attempt.
pub const DELIVERY_ID_HEADER: &str = "x-musubi-delivery-id";

/// Outbox Tasks one scan reads at most (worker, mailbox, operator list); more wait for the next.
const MAX_SCAN: usize = 1000;
/// Rest-hook deliveries attempted at the same time.
const CONCURRENCY: usize = 8;

// ---------------------------------------------------------------------------------------------
// Planning, in the writer's commit.

/// Before a commit: one delivery Task per planned delivery of each written record, appended to
/// the same writes, so the record and its outbox rows are stored together or not at all.
/// Called after `disclosure::writes` (Tasks need no AuditEvent of their own: the record's
/// covers the write, and each delivery is audited when it happens).
pub(crate) fn writes(ctx: &Ctx<'_>, mut writes: Vec<Write>) -> Result<Vec<Write>, ApiError> {
    let state = ctx.state;
    if !state.config.routing.enabled {
        return Ok(writes);
    }
    if let Some(caller) = ctx.access.caller()
        && caller.kind == auth::ClientKind::PhrApp
    {
        for write in &mut writes {
            if let (true, WriteAction::Put(resource)) =
                (write.resource_type == "Subscription", &mut write.action)
            {
                register_subscription(&caller.client_id, resource)?;
            }
        }
    }
    let rules = rules(state)?;
    let directory = StoreDirectory::new(state);
    let now = now_instant();
    // Versions this transaction assigns, for a Bundle writing one resource twice.
    let mut next_versions: HashMap<(String, String), u64> = HashMap::new();
    let mut tasks = Vec::new();
    for write in &writes {
        let rt = write.resource_type.as_str();
        if matches!(rt, "Task" | "AuditEvent")
            || !rules
                .rules()
                .iter()
                .any(|r| r.enabled && r.resource_type == rt)
        {
            continue;
        }
        let key = (rt.to_owned(), write.id.clone());
        let current = state.store.read(rt, &write.id)?;
        let live = match &current {
            Some(v) if !v.is_deleted() => Some(body_of(v)?),
            _ => None,
        };
        let version = match next_versions.get(&key) {
            Some(v) => *v,
            None => current.as_ref().map_or(1, |c| c.version + 1),
        };
        let (kind, resource) = match (&write.action, &live) {
            (WriteAction::Put(resource), Some(live)) if same_content(resource, live) => continue,
            (WriteAction::Put(resource), Some(_)) => (EventKind::Updated, resource.clone()),
            (WriteAction::Put(resource), None) => (EventKind::Created, resource.clone()),
            (WriteAction::Delete, Some(live)) => (EventKind::Deleted, live.clone()),
            (WriteAction::Delete, None) => continue,
        };
        next_versions.insert(key, version + 1);
        let version_text = version.to_string();
        let event = routing::Event {
            kind,
            resource_type: rt,
            id: &write.id,
            version: &version_text,
            resource: &resource,
        };
        let plan = routing::plan(rules, &event, &directory);
        for unresolved in &plan.unresolved {
            tracing::debug!(rule = %unresolved.rule_id, role = unresolved.role.code(), reason = %unresolved.reason, "a route found no recipient");
        }
        let patient = routing::patient_id(rt, &resource);
        for delivery in &plan.deliveries {
            tasks.push(Write {
                resource_type: "Task".to_owned(),
                id: delivery.id.to_string(),
                precondition: Precondition::MustNotExist,
                action: WriteAction::Put(new_task(delivery, patient.as_deref(), &now)),
            });
        }
    }
    writes.extend(tasks);
    Ok(writes)
}

/// Whether a write would store nothing new (the store compares the same compact bytes, without
/// the server's `meta.versionId` and `meta.lastUpdated`).
pub(crate) fn same_content(new: &Value, live: &Value) -> bool {
    let strip = |value: &Value| {
        let mut value = value.clone();
        if let Some(object) = value.as_object_mut() {
            let empty = match object.get_mut("meta").and_then(Value::as_object_mut) {
                Some(meta) => {
                    meta.shift_remove("versionId");
                    meta.shift_remove("lastUpdated");
                    meta.is_empty()
                }
                None => false,
            };
            if empty {
                object.shift_remove("meta");
            }
        }
        serde_json::to_vec(&value).unwrap_or_default()
    };
    strip(new) == strip(live)
}

/// The routing rules of this process's configuration: the embedded files, then the `*.json`
/// files of `{profiles.extra_dir}/routing/`; parsed once per folder, like the consent policy.
fn rules(state: &AppState) -> Result<&'static RoutingRules, ApiError> {
    static LOADED: crate::domain::FolderCache<RoutingRules> = OnceLock::new();
    crate::domain::folder_data(
        state.config.profiles.extra_dir.as_deref(),
        "routing",
        &LOADED,
        || RoutingRules::embedded().map_err(|e| ApiError::internal(e.to_string())),
        |extra| RoutingRules::load(extra).map_err(|e| e.to_string()),
    )
}

// ---------------------------------------------------------------------------------------------
// The directory: parties resolved from the store and the configuration.

/// Resolves routing parties. Recipients are registered clients (by client id) where one
/// exists, so the mailbox can tell them apart; otherwise `Organization/{id}`.
pub(crate) struct StoreDirectory<'a> {
    state: &'a AppState,
}

impl<'a> StoreDirectory<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Self { state }
    }
}

impl StoreDirectory<'_> {
    fn recipient(&self, kind: RecipientKind, id: String) -> Recipient {
        let has_endpoint = self.state.config.routing.endpoints.contains_key(&id);
        Recipient {
            kind,
            id,
            has_endpoint,
        }
    }

    fn read(&self, resource_type: &str, id: &str) -> Option<Value> {
        match self.state.store.read(resource_type, id) {
            Ok(Some(v)) if !v.is_deleted() => serde_json::from_slice(&v.body).ok(),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, "routing could not read {resource_type}/{id}");
                None
            }
        }
    }

    /// Every live resource matching one search criterion, with its id (a failure is logged and
    /// finds nothing: a route never fails the write that planned it).
    fn search(&self, resource_type: &str, param: &str, value: &str) -> Vec<(String, Value)> {
        let run = || -> Result<Vec<(String, Value)>, ApiError> {
            crate::domain::search_all_versions(
                self.state.store.as_ref(),
                resource_type,
                param,
                value,
            )?
            .iter()
            .map(|v| Ok((v.id.clone(), body_of(v)?)))
            .collect()
        };
        run().unwrap_or_else(|error| {
            tracing::warn!(error = %reason_of(&error), "routing could not search {resource_type}");
            Vec::new()
        })
    }

    /// The Organization a reference by id or by identifier names: its id and content.
    pub(crate) fn organization_id(
        &self,
        organization: &OrganizationRef,
    ) -> Option<(String, Value)> {
        match organization {
            OrganizationRef::Id(id) => self.read("Organization", id).map(|o| (id.clone(), o)),
            OrganizationRef::Identifier { system, value } => self
                .search("Organization", "identifier", &format!("{system}|{value}"))
                .into_iter()
                .next(),
        }
    }

    /// The client registered as the prefecture's 国保連 (`billing.kokuho_ren`), a recipient of
    /// the month close's claims.
    pub(crate) fn kokuho_ren(&self, prefecture: identifiers::PrefectureCode) -> Option<Recipient> {
        let client = self.state.config.billing.kokuho_ren_client(prefecture)?;
        Some(self.recipient(RecipientKind::MedicalAssociation, client.to_owned()))
    }
}

impl Directory for StoreDirectory<'_> {
    /// The registered PHR apps, when a guardian's (or the patient's) sign-in account is linked
    /// to the patient by an active RelatedPerson: which app a parent uses is not recorded, so
    /// every registered app is a candidate, and the consent re-check at delivery decides.
    fn guardian_apps_of(&self, patient_id: &str) -> Vec<Recipient> {
        let linked = self
            .search("RelatedPerson", "patient", &format!("Patient/{patient_id}"))
            .iter()
            .any(|(_, related)| {
                related.get("active").and_then(Value::as_bool) != Some(false)
                    && related
                        .get("identifier")
                        .and_then(Value::as_array)
                        .is_some_and(|ids| {
                            ids.iter().any(|i| {
                                i.get("system").and_then(Value::as_str) == Some(ACCOUNT_SYSTEM)
                            })
                        })
            });
        if !linked {
            return Vec::new();
        }
        let mut apps: Vec<Recipient> = self
            .state
            .config
            .clients
            .iter()
            .filter(|c| c.kind == auth::ClientKind::PhrApp)
            .map(|c| {
                let mut app = self.recipient(RecipientKind::PhrApp, c.id.clone());
                app.has_endpoint = app.has_endpoint
                    || subscription_endpoint(self.state, &c.id, patient_id).is_some();
                app
            })
            .collect();
        apps.sort();
        apps
    }

    /// The Organization the clinic's Organization is `partOf` (its 医師会).
    fn medical_association_of(&self, clinic: &OrganizationRef) -> Option<Recipient> {
        let (_, organization) = self.organization_id(clinic)?;
        let parent = OrganizationRef::from_reference(organization.get("partOf")?)?;
        let (id, _) = self.organization_id(&parent)?;
        Some(self.recipient(
            RecipientKind::MedicalAssociation,
            format!("Organization/{id}"),
        ))
    }

    fn home_municipality_of(&self, patient_id: &str) -> Option<MunicipalityCode> {
        routing::home_municipality(&self.read("Patient", patient_id)?).unwrap_or_else(|error| {
            tracing::warn!(%error, "Patient/{patient_id} has an invalid municipality code");
            None
        })
    }

    /// The first registered municipality client with this local-government code that is not
    /// one of the district teams (`routing.district_teams`).
    fn municipality(&self, code: &MunicipalityCode) -> Option<Recipient> {
        let code = code.to_string();
        let routing = &self.state.config.routing;
        self.state
            .config
            .clients
            .iter()
            .find(|c| {
                c.kind == auth::ClientKind::Municipality
                    && c.municipality_code.as_deref() == Some(&code)
                    && !routing.district_teams.values().any(|team| team == &c.id)
            })
            .map(|c| self.recipient(RecipientKind::Municipality, c.id.clone()))
    }

    /// The municipality's district team (地区担当) from `routing.district_teams`. One team per
    /// municipality: Musubi does not know which area of the town a team covers.
    fn district_team_of(&self, code: &MunicipalityCode, _: &str) -> Option<Recipient> {
        let team = self
            .state
            .config
            .routing
            .district_teams
            .get(code.as_str())?;
        Some(self.recipient(RecipientKind::Municipality, team.clone()))
    }

    /// A clinic: the registered clinic client with one of the Organization's
    /// medical-institution codes, else the Organization itself.
    fn organization(&self, organization: &OrganizationRef) -> Option<Recipient> {
        let (id, resource) = self.organization_id(organization)?;
        let codes: Vec<&str> = resource
            .get("identifier")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| i.get("value").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let client = self.state.config.clients.iter().find(|c| {
            c.kind == auth::ClientKind::ClinicEmr
                && c.medical_institution_code
                    .as_deref()
                    .is_some_and(|code| codes.contains(&code))
        });
        Some(match client {
            Some(client) => self.recipient(RecipientKind::ClinicEmr, client.id.clone()),
            None => self.recipient(RecipientKind::ClinicEmr, format!("Organization/{id}")),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriptions: a PHR app's rest-hook endpoint for one child.

/// Accepts a PHR app's R4 Subscription as the app's endpoint registration for one patient:
/// `channel.type` rest-hook, `criteria` `Immunization?patient=Patient/{id}`, an `https://`
/// endpoint (`http://` only on localhost, for development). The Subscription is tagged with
/// the app's client id and made `active`. It adds no access of its own: each delivery still
/// needs a linked guardian and the consent re-check.
fn register_subscription(client_id: &str, resource: &mut Value) -> Result<(), ApiError> {
    let refuse = |expression: &str, diagnostics: String| {
        ApiError::unprocessable(&[fhir::validate::Issue {
            severity: fhir::validate::Severity::Error,
            code: fhir::validate::IssueType::BusinessRule,
            expression: expression.to_owned(),
            diagnostics,
        }])
    };
    let status = resource.get("status").and_then(Value::as_str).unwrap_or("");
    if matches!(status, "off" | "error") {
        return Ok(());
    }
    if resource.pointer("/channel/type").and_then(Value::as_str) != Some("rest-hook") {
        return Err(refuse(
            "Subscription.channel.type",
            "Musubi delivers to apps by rest-hook only".into(),
        ));
    }
    let criteria = resource
        .get("criteria")
        .and_then(Value::as_str)
        .unwrap_or("");
    if subscribed_patient(criteria).is_none() {
        return Err(refuse(
            "Subscription.criteria",
            format!("criteria must be Immunization?patient=Patient/{{id}}, got {criteria:?}"),
        ));
    }
    let endpoint = resource
        .pointer("/channel/endpoint")
        .and_then(Value::as_str)
        .unwrap_or("");
    let local = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"];
    if !(endpoint.starts_with("https://") || local.iter().any(|p| endpoint.starts_with(p))) {
        return Err(refuse(
            "Subscription.channel.endpoint",
            format!("the endpoint must be an https:// URL, got {endpoint:?}"),
        ));
    }
    let Some(object) = resource.as_object_mut() else {
        return Ok(());
    };
    object.insert("status".into(), json!("active"));
    let meta = object
        .entry("meta")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| refuse("Subscription.meta", "meta must be an object".into()))?;
    let tags = meta
        .entry("tag")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| refuse("Subscription.meta.tag", "meta.tag must be a list".into()))?;
    tags.retain(|t| t.get("system").and_then(Value::as_str) != Some(RECIPIENT_TAG_SYSTEM));
    tags.push(json!({"system": RECIPIENT_TAG_SYSTEM, "code": client_id}));
    Ok(())
}

/// The patient id of `Immunization?patient=Patient/{id}` (or `patient={id}`).
fn subscribed_patient(criteria: &str) -> Option<&str> {
    let query = criteria.strip_prefix("Immunization?")?;
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("patient="))?;
    let id = value.strip_prefix("Patient/").unwrap_or(value);
    fhir::is_id(id).then_some(id)
}

/// The rest-hook endpoint of the app's active Subscription for this patient, if any.
fn subscription_endpoint(state: &AppState, client_id: &str, patient_id: &str) -> Option<String> {
    if !state.serves("Subscription") {
        return None;
    }
    let params = vec![
        (
            "_tag".to_owned(),
            format!("{RECIPIENT_TAG_SYSTEM}|{client_id}"),
        ),
        ("status".to_owned(), "active".to_owned()),
    ];
    let query = search::parse_query(search::Registry::r4(), "Subscription", &params, true).ok()?;
    let page = state
        .store
        .search(&SearchRequest {
            resource_type: "Subscription",
            query: &query,
            offset: 0,
            count: MAX_SCAN,
            need_total: false,
        })
        .ok()?;
    page.matches.iter().find_map(|version| {
        let subscription: Value = serde_json::from_slice(&version.body).ok()?;
        let criteria = subscription.get("criteria")?.as_str()?;
        if subscribed_patient(criteria)? != patient_id {
            return None;
        }
        subscription
            .pointer("/channel/endpoint")?
            .as_str()
            .map(str::to_owned)
    })
}

/// Where a rest-hook delivery goes: the configured endpoint, else the app's Subscription.
fn endpoint_of(state: &AppState, info: &Info) -> Option<String> {
    if let Some(endpoint) = state.config.routing.endpoints.get(&info.recipient) {
        return Some(endpoint.clone());
    }
    if info.recipient_kind != RecipientKind::PhrApp {
        return None;
    }
    let patient = info.patient.as_deref()?.strip_prefix("Patient/")?;
    subscription_endpoint(state, &info.recipient, patient)
}

// ---------------------------------------------------------------------------------------------
// The delivery Task.

fn param(code: &str) -> Value {
    json!({"coding": [{"system": PARAMETER_SYSTEM, "code": code}], "text": code})
}

pub(crate) fn new_task(delivery: &routing::Delivery, patient: Option<&str>, now: &str) -> Value {
    let recipient = &delivery.recipient;
    let owner = if recipient.id.starts_with("Organization/") {
        json!({"reference": recipient.id, "display": format!("{} {}", recipient.kind.code(), recipient.id)})
    } else {
        json!({"identifier": {"system": consent::CLIENT_ID_SYSTEM, "value": recipient.id},
               "display": format!("{} {}", recipient.kind.code(), recipient.id)})
    };
    let mut task = json!({
        "resourceType": "Task",
        "id": delivery.id.as_str(),
        "meta": {"tag": [{"system": RECIPIENT_TAG_SYSTEM, "code": recipient.id}]},
        "identifier": [{"system": DELIVERY_ID_SYSTEM, "value": delivery.id.as_str()}],
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": CHANNEL_SYSTEM, "code": delivery.channel.code()}]},
        "focus": {"reference": format!("{}/{}/_history/{}", delivery.resource_type, delivery.resource_id, delivery.version)},
    });
    if let Some(patient) = patient {
        task["for"] = json!({"reference": format!("Patient/{patient}")});
    }
    task["authoredOn"] = json!(now);
    task["owner"] = owner;
    task["reasonCode"] = json!({
        "coding": [{"system": routing::PurposeOfUse::SYSTEM, "code": delivery.purpose.code()}],
        "text": format!("rule {}", delivery.rule_id),
    });
    task["input"] = json!([
        {"type": param("rule"), "valueString": delivery.rule_id},
        {"type": param("event"), "valueCode": delivery.event.code()},
        {"type": param("basis"), "valueString": delivery.basis.code()},
        {"type": param("recipient-kind"), "valueCode": recipient.kind.code()},
        {"type": param("recipient"), "valueString": recipient.id},
    ]);
    set_state(&mut task, &DeliveryState::new(), now);
    task
}

/// A delivery Task that the worker and the mailbox hold back until `not_before` (a claim batch
/// waits for its scheme's due day).
pub(crate) fn scheduled_task(
    delivery: &routing::Delivery,
    not_before: OffsetDateTime,
    now: &str,
) -> Value {
    let mut task = new_task(delivery, None, now);
    set_state(&mut task, &DeliveryState::scheduled(not_before), now);
    task
}

/// The `statusReason` of a superseded delivery, before the newer version's reference.
const SUPERSEDED_BY: &str = "superseded by ";

/// Writes the state machine's state into the Task: `status`, `businessStatus`,
/// `statusReason`, `lastModified` and the `output` parameters.
fn set_state(task: &mut Value, state: &DeliveryState, now: &str) {
    let instant = |t: &OffsetDateTime| format_time(*t);
    let (status, at, reason) = match &state.status {
        DeliveryStatus::Pending => ("requested", None, None),
        DeliveryStatus::Scheduled { not_before } => {
            ("requested", Some(("not-before", instant(not_before))), None)
        }
        DeliveryStatus::InFlight { since } => {
            ("in-progress", Some(("since", instant(since))), None)
        }
        DeliveryStatus::RetryWait { until } => {
            ("on-hold", Some(("next-attempt", instant(until))), None)
        }
        DeliveryStatus::Delivered { at } => ("completed", Some(("at", instant(at))), None),
        DeliveryStatus::Dead { reason, at } => ("failed", Some(("at", instant(at))), Some(reason)),
        DeliveryStatus::Refused { reason, at } => {
            ("rejected", Some(("at", instant(at))), Some(reason))
        }
        DeliveryStatus::Discarded { at } => ("cancelled", Some(("at", instant(at))), None),
        DeliveryStatus::Superseded { by, at } => (
            "cancelled",
            Some(("at", instant(at))),
            Some(&format!("{SUPERSEDED_BY}{by}")),
        ),
    };
    let Some(object) = task.as_object_mut() else {
        return;
    };
    object.insert("status".into(), json!(status));
    object.insert(
        "businessStatus".into(),
        json!({"coding": [{"system": DELIVERY_STATUS_SYSTEM, "code": state.status.code()}]}),
    );
    match reason {
        Some(reason) => {
            object.insert("statusReason".into(), json!({"text": reason}));
        }
        None => {
            object.shift_remove("statusReason");
        }
    }
    object.insert("lastModified".into(), json!(now));
    let mut output = vec![json!({"type": param("attempts"), "valueUnsignedInt": state.attempts})];
    if let Some((name, when)) = at {
        output.push(json!({"type": param(name), "valueInstant": when}));
    }
    if let Some(error) = &state.last_error {
        output.push(json!({"type": param("last-error"), "valueString": error}));
    }
    // Outputs a channel or the month close adds (the file, digest or Claims that carried the
    // record) outlive the state.
    let kept = object
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|o| {
            let name = o.pointer("/type/coding/0/code").and_then(Value::as_str);
            !matches!(
                name,
                Some("attempts" | "not-before" | "since" | "next-attempt" | "at" | "last-error")
            )
        })
        .cloned()
        .collect::<Vec<_>>();
    output.extend(kept);
    object.insert("output".into(), Value::Array(output));
}

fn output<'v>(task: &'v Value, name: &str) -> Option<&'v Value> {
    task.get("output")?
        .as_array()?
        .iter()
        .find(|o| o.pointer("/type/coding/0/code").and_then(Value::as_str) == Some(name))
}

/// The recipient (client id or `Organization/{id}`) a delivery Task is addressed to (empty when
/// it names none: then it is addressed to nobody), or `None` for a Task that is not one of the
/// outbox's.
pub(crate) fn delivery_recipient(task: &Value) -> Option<&str> {
    let is_delivery = task
        .get("identifier")
        .and_then(Value::as_array)
        .is_some_and(|ids| {
            ids.iter()
                .any(|i| i.get("system").and_then(Value::as_str) == Some(DELIVERY_ID_SYSTEM))
        });
    if is_delivery {
        Some(input_str(task, "recipient").unwrap_or_default())
    } else {
        None
    }
}

fn input_str<'v>(task: &'v Value, name: &str) -> Option<&'v str> {
    task.get("input")?
        .as_array()?
        .iter()
        .find(|o| o.pointer("/type/coding/0/code").and_then(Value::as_str) == Some(name))
        .and_then(|o| {
            o.get("valueString")
                .or_else(|| o.get("valueCode"))
                .and_then(Value::as_str)
        })
}

/// The state machine's state, read back from a Task written by [`set_state`].
fn state_of(task: &Value) -> Result<DeliveryState, String> {
    let code = task
        .pointer("/businessStatus/coding/0/code")
        .and_then(Value::as_str)
        .ok_or("the Task has no delivery status")?;
    let time_of = |name: &str| -> Result<OffsetDateTime, String> {
        let text = output(task, name)
            .and_then(|o| o.get("valueInstant"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the Task has no {name}"))?;
        OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("{name} {text:?}: {e}"))
    };
    let reason = || {
        task.pointer("/statusReason/text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let status = match code {
        "pending" => DeliveryStatus::Pending,
        "scheduled" => DeliveryStatus::Scheduled {
            not_before: time_of("not-before")?,
        },
        "in-flight" => DeliveryStatus::InFlight {
            since: time_of("since")?,
        },
        "retry-wait" => DeliveryStatus::RetryWait {
            until: time_of("next-attempt")?,
        },
        "delivered" => DeliveryStatus::Delivered { at: time_of("at")? },
        "dead" => DeliveryStatus::Dead {
            reason: reason(),
            at: time_of("at")?,
        },
        "refused" => DeliveryStatus::Refused {
            reason: reason(),
            at: time_of("at")?,
        },
        "discarded" => DeliveryStatus::Discarded { at: time_of("at")? },
        "superseded" => DeliveryStatus::Superseded {
            by: reason()
                .strip_prefix(SUPERSEDED_BY)
                .unwrap_or_default()
                .to_owned(),
            at: time_of("at")?,
        },
        other => return Err(format!("unknown delivery status {other:?}")),
    };
    let attempts = output(task, "attempts")
        .and_then(|o| o.get("valueUnsignedInt"))
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    let last_error = output(task, "last-error")
        .and_then(|o| o.get("valueString"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(DeliveryState {
        status,
        attempts,
        last_error,
    })
}

/// What a delivery Task says about its delivery.
#[derive(Debug, Clone)]
struct Info {
    id: String,
    channel: Channel,
    purpose: String,
    basis: String,
    event: String,
    recipient_kind: RecipientKind,
    recipient: String,
    focus_type: String,
    focus_id: String,
    focus_version: u64,
    patient: Option<String>,
}

impl Info {
    fn of(task: &Value) -> Result<Info, String> {
        let id = task
            .get("id")
            .and_then(Value::as_str)
            .ok_or("the Task has no id")?
            .to_owned();
        let channel_code = task
            .pointer("/code/coding/0/code")
            .and_then(Value::as_str)
            .ok_or("the Task has no channel")?;
        let channel = Channel::ALL
            .into_iter()
            .find(|c| c.code() == channel_code)
            .ok_or_else(|| format!("unknown channel {channel_code:?}"))?;
        let focus = task
            .pointer("/focus/reference")
            .and_then(Value::as_str)
            .ok_or("the Task has no focus")?;
        let parts: Vec<&str> = focus.split('/').collect();
        let [focus_type, focus_id, "_history", version] = parts[..] else {
            return Err(format!("focus {focus:?} is not a versioned reference"));
        };
        let kind_code = input_str(task, "recipient-kind").ok_or("no recipient kind")?;
        let recipient_kind = [
            RecipientKind::PhrApp,
            RecipientKind::ClinicEmr,
            RecipientKind::MedicalAssociation,
            RecipientKind::Municipality,
        ]
        .into_iter()
        .find(|k| k.code() == kind_code)
        .ok_or_else(|| format!("unknown recipient kind {kind_code:?}"))?;
        Ok(Info {
            id,
            channel,
            purpose: task
                .pointer("/reasonCode/coding/0/code")
                .and_then(Value::as_str)
                .ok_or("the Task has no purpose")?
                .to_owned(),
            basis: input_str(task, "basis").unwrap_or("consent").to_owned(),
            event: input_str(task, "event").unwrap_or("created").to_owned(),
            recipient_kind,
            recipient: input_str(task, "recipient")
                .ok_or("the Task names no recipient")?
                .to_owned(),
            focus_type: focus_type.to_owned(),
            focus_id: focus_id.to_owned(),
            focus_version: version
                .parse()
                .map_err(|_| format!("focus {focus:?} has no version number"))?,
            patient: task
                .pointer("/for/reference")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    fn focus(&self) -> String {
        format!(
            "{}/{}/_history/{}",
            self.focus_type, self.focus_id, self.focus_version
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Consent at delivery time.

/// The outcome of re-checking a delivery against the person's consents as they are now.
enum Recheck {
    /// Send this body (the record, or its identity-only redaction; `None` for a deletion).
    Send(Option<Value>, Option<Decision>),
    Refuse(String, Option<Decision>),
}

/// Decides the delivery again with the consents stored now: a consent withdrawn while the
/// record waited refuses it. The record of a deletion is decided on its last content.
fn recheck(state: &AppState, info: &Info) -> Result<Recheck, ApiError> {
    let (content, deleted) = match focus_content(state, info)? {
        Focus::Missing => {
            return Ok(Recheck::Refuse(
                format!("{} no longer exists", info.focus()),
                None,
            ));
        }
        Focus::DeletedWithoutContent => return Ok(Recheck::Send(None, None)),
        Focus::Record(content) => (content, false),
        Focus::Deleted(content) => (content, true),
    };
    if !state.config.consent.enforce {
        return Ok(Recheck::Send((!deleted).then_some(content), None));
    }
    let policy = crate::disclosure::policy(state)?;
    let purpose = Purpose::new(&info.purpose)
        .map_err(|e| ApiError::internal(format!("delivery {}: {e}", info.id)))?;
    let recipient = party_of(state, info);
    let source = crate::disclosure::source_of(&content);
    let Some(patient) = info
        .patient
        .as_deref()
        .and_then(|p| PatientRef::parse(p).ok())
    else {
        // A record about many people (a claim batch): only a legal basis can permit it.
        return Ok(
            match consent::decide_without_subject(
                policy,
                &recipient,
                source.as_ref(),
                &purpose,
                &content,
            ) {
                Some(decision) if decision.outcome == Outcome::Permit => {
                    Recheck::Send((!deleted).then_some(content), Some(decision))
                }
                Some(decision) => Recheck::Refuse(
                    format!("consent re-check at delivery: {}", decision.explanation),
                    Some(decision),
                ),
                None => Recheck::Refuse(
                    "the record names no patient and no legal basis covers it".into(),
                    None,
                ),
            },
        );
    };
    let facts = crate::disclosure::consent_facts(state, policy, &patient)?;
    let request = consent::Request {
        recipient: &recipient,
        source: source.as_ref(),
        purpose: &purpose,
        patient: &patient,
        home_municipality: facts.home.as_deref(),
        data: consent::Data::Resource(&content),
    };
    let decision = consent::decide(policy, &request, &facts.consents, OffsetDateTime::now_utc());
    if !facts.unreadable.is_empty() && decision.reason != consent::ReasonCode::LegalBasis {
        return Ok(Recheck::Refuse(
            format!("an active consent of {patient} cannot be read"),
            Some(decision),
        ));
    }
    Ok(match decision.outcome {
        Outcome::Permit => Recheck::Send((!deleted).then_some(content), Some(decision)),
        Outcome::Redact(_) => match consent::redact_identity_only(policy, &content) {
            Ok(redacted) => Recheck::Send((!deleted).then_some(redacted), Some(decision)),
            Err(e) => Recheck::Refuse(
                format!("identity-only redaction failed: {e}"),
                Some(decision),
            ),
        },
        Outcome::Deny => Recheck::Refuse(
            format!("consent re-check at delivery: {}", decision.explanation),
            Some(decision),
        ),
    })
}

/// What a delivery's focus version holds.
enum Focus {
    /// The version is not stored.
    Missing,
    /// The record as of that version.
    Record(Value),
    /// A deletion, with the last content before it.
    Deleted(Value),
    /// A deletion of which no earlier content is stored.
    DeletedWithoutContent,
}

/// The record a delivery is about; for a deletion, the last version before it.
fn focus_content(state: &AppState, info: &Info) -> Result<Focus, ApiError> {
    let store = state.store.as_ref();
    let Some(version) = store.vread(&info.focus_type, &info.focus_id, info.focus_version)? else {
        return Ok(Focus::Missing);
    };
    if !version.is_deleted() {
        return Ok(Focus::Record(body_of(&version)?));
    }
    Ok(
        match crate::domain::last_content_before(
            store,
            &info.focus_type,
            &info.focus_id,
            info.focus_version,
        )? {
            Some(content) => Focus::Deleted(content),
            None => Focus::DeletedWithoutContent,
        },
    )
}

/// The recipient as a consent party: a registered client with its organisation codes, or an
/// Organization.
fn party_of(state: &AppState, info: &Info) -> Party {
    let kind = match info.recipient_kind {
        RecipientKind::PhrApp => consent::RecipientKind::PhrApp,
        RecipientKind::ClinicEmr => consent::RecipientKind::ClinicEmr,
        RecipientKind::MedicalAssociation => consent::RecipientKind::MedicalAssociation,
        RecipientKind::Municipality => consent::RecipientKind::Municipality,
    };
    if info.recipient.starts_with("Organization/") {
        return Party {
            kind,
            client_id: None,
            identifiers: Vec::new(),
            organization: Some(info.recipient.clone()),
        };
    }
    crate::disclosure::client_party(state, kind, &info.recipient)
}

/// The AuditEvent of one delivery decision: transmitted (outcome 0) or refused (4).
fn delivery_audit(
    info: &Info,
    outcome: &str,
    description: &str,
    decision: Option<&Decision>,
) -> Write {
    let mut entity = Vec::new();
    if let Some(patient) = &info.patient {
        entity.push(json!({
            "what": {"reference": patient},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
        }));
    }
    let mut detail = vec![
        json!({"type": "delivery", "valueString": info.id}),
        json!({"type": "event", "valueString": info.event}),
        json!({"type": "basis", "valueString": info.basis}),
    ];
    if let Some(d) = decision {
        detail.push(json!({"type": "decision", "valueString": match d.outcome {
            Outcome::Permit => "permit", Outcome::Deny => "deny", Outcome::Redact(_) => "identity-only" }}));
        detail.push(json!({"type": "reason", "valueString": d.reason.as_str()}));
        detail.push(json!({"type": "explanation", "valueString": d.explanation}));
        for consent in &d.consents_used {
            detail.push(json!({"type": "consent", "valueString": consent}));
        }
        if let Some(basis) = &d.legal_basis {
            detail.push(json!({"type": "legal-basis", "valueString": basis}));
        }
    }
    entity.push(json!({
        "what": {"reference": info.focus()},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
        "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4", "display": "Domain Resource"},
        "detail": detail,
    }));
    entity.push(json!({
        "what": {"reference": format!("Task/{}", info.id)},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
        "description": "the delivery",
    }));
    let purpose = json!([{"coding": [{"system": consent::PURPOSE_SYSTEM, "code": info.purpose}]}]);
    let recipient = if info.recipient.starts_with("Organization/") {
        json!({"reference": info.recipient})
    } else {
        json!({"identifier": {"system": consent::CLIENT_ID_SYSTEM, "value": info.recipient}, "display": info.recipient})
    };
    let id = uuid::Uuid::new_v4().to_string();
    let event = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106", "display": "Export"},
        "action": "E",
        "recorded": now_instant(),
        "outcome": outcome,
        "outcomeDesc": description,
        "purposeOfEvent": purpose,
        "agent": [
            {"who": {"identifier": {"system": consent::CLIENT_ID_SYSTEM, "value": "musubi"}, "display": "musubi"},
             "requestor": true, "purposeOfUse": purpose},
            {"who": recipient, "requestor": false,
             "type": {"coding": [{"system": consent::RECIPIENT_KIND_SYSTEM, "code": info.recipient_kind.code()}]}},
        ],
        "source": {"site": "Musubi", "observer": {"display": "Musubi"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]},
        "entity": entity,
    });
    Write {
        resource_type: "AuditEvent".to_owned(),
        id,
        // A fresh UUID v4 (above).
        precondition: Precondition::NewId,
        action: WriteAction::Put(event),
    }
}

// ---------------------------------------------------------------------------------------------
// The worker.

/// Start the delivery worker: every `routing.poll_interval_ms` it delivers the due rest-hook
/// Tasks. Holds the state weakly, so a stopped server's store closes.
pub fn spawn_worker(state: web::Data<AppState>) {
    if !state.config.routing.enabled {
        return;
    }
    let interval = Duration::from_millis(state.config.routing.poll_interval_ms);
    let timeout = Duration::from_secs(state.config.routing.request_timeout_secs);
    let http = match reqwest::Client::builder()
        .timeout(timeout)
        .user_agent("Musubi routing")
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "the routing worker cannot build its HTTP client; deliveries wait");
            return;
        }
    };
    let state = Arc::downgrade(&state.into_inner());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { break };
            if let Err(error) = poll(&state, &http).await {
                tracing::warn!(error = %reason_of(&error), "routing worker poll failed");
            }
        }
    });
}

/// One pass: every due rest-hook Task, each on its own (a failing one never stops the others),
/// then the collected channels (municipal files, weekly digests; `channels.rs`).
pub async fn poll(state: &AppState, http: &reqwest::Client) -> Result<usize, ApiError> {
    let now = OffsetDateTime::now_utc();
    let mut due = Vec::new();
    let mut broken = Vec::new();
    for version in scan(
        state,
        Channel::FhirRestHook,
        "requested,in-progress,on-hold",
        None,
    )? {
        let task = body_of(&version)?;
        match state_of(&task) {
            Ok(s) if s.is_due(now) || matches!(s.status, DeliveryStatus::InFlight { .. }) => {
                due.push((version.version, task));
            }
            Ok(_) => {}
            Err(error) => broken.push((version.version, task, error)),
        }
        if due.len() >= state.config.routing.batch_size {
            break;
        }
    }
    for (version, task, error) in broken {
        dead_letter_unreadable(state, version, task, &error).await;
    }
    let count = due.len();
    let mut due = due.into_iter();
    loop {
        let chunk: Vec<_> = due.by_ref().take(CONCURRENCY).collect();
        if chunk.is_empty() {
            break;
        }
        let results = futures_util::future::join_all(
            chunk
                .into_iter()
                .map(|(version, task)| deliver(state, http, version, task)),
        )
        .await;
        for result in results {
            if let Err(error) = result {
                tracing::warn!(error = %reason_of(&error), "a delivery could not be recorded");
            }
        }
    }
    Ok(count + channels::poll(state, http).await?)
}

/// A Task whose state cannot be read is dead-lettered with the reason, not retried forever.
async fn dead_letter_unreadable(state: &AppState, version: u64, mut task: Value, error: &str) {
    tracing::warn!(%error, "an outbox Task is unreadable; it is dead-lettered");
    let dead = DeliveryState {
        status: DeliveryStatus::Dead {
            reason: format!("unreadable delivery Task: {error}"),
            at: OffsetDateTime::now_utc(),
        },
        attempts: 0,
        last_error: None,
    };
    if let Err(error) = save(state, version, &mut task, &dead, Vec::new()).await {
        tracing::warn!(error = %reason_of(&error), "an unreadable Task could not be dead-lettered");
    }
}

/// Outbox Tasks of a channel in the given Task statuses, optionally of one recipient (at most
/// [`MAX_SCAN`]).
fn scan(
    state: &AppState,
    channel: Channel,
    statuses: &str,
    recipient: Option<&str>,
) -> Result<Vec<StoredVersion>, ApiError> {
    let tag = recipient.map(|recipient| {
        (
            "_tag".to_owned(),
            format!("{RECIPIENT_TAG_SYSTEM}|{recipient}"),
        )
    });
    scan_where(state, channel, statuses, tag.into_iter().collect())
}

/// [`scan`] with further search criteria.
fn scan_where(
    state: &AppState,
    channel: Channel,
    statuses: &str,
    criteria: Vec<(String, String)>,
) -> Result<Vec<StoredVersion>, ApiError> {
    let mut params = vec![
        (
            "code".to_owned(),
            format!("{CHANNEL_SYSTEM}|{}", channel.code()),
        ),
        ("status".to_owned(), statuses.to_owned()),
    ];
    params.extend(criteria);
    let query = search::parse_query(search::Registry::r4(), "Task", &params, true)?;
    Ok(state
        .store
        .search(&SearchRequest {
            resource_type: "Task",
            query: &query,
            offset: 0,
            count: MAX_SCAN,
            need_total: false,
        })?
        .matches)
}

fn retry_policy(state: &AppState, channel: Channel) -> Result<RetryPolicy, ApiError> {
    let mut policy = rules(state)?.retry_policy(channel);
    if let Some(retry) = &state.config.routing.retry {
        policy = RetryPolicy {
            base_delay: Duration::from_millis(retry.base_delay_ms),
            max_delay: Duration::from_millis(retry.max_delay_ms),
            max_attempts: retry.max_attempts,
        };
    }
    Ok(policy)
}

fn random() -> u64 {
    // The low bits of a v4 UUID are random; the jitter needs no stronger source.
    uuid::Uuid::new_v4().as_u128() as u64
}

/// Store the Task's new state (only if nobody changed it meanwhile) with any AuditEvents.
async fn save(
    state: &AppState,
    version: u64,
    task: &mut Value,
    next: &DeliveryState,
    audits: Vec<Write>,
) -> Result<u64, ApiError> {
    set_state(task, next, &now_instant());
    let id = task
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut writes = vec![Write {
        resource_type: "Task".to_owned(),
        id,
        precondition: Precondition::VersionIs(version),
        action: WriteAction::Put(task.clone()),
    }];
    writes.extend(audits);
    let committed = state.store.commit(writes).await?;
    Ok(committed.first().map_or(version, |c| c.version.version))
}

/// A delivery the consent re-check refuses: its final state, and its AuditEvent (outcome 4).
fn refused(
    info: &Info,
    current: &DeliveryState,
    policy: &RetryPolicy,
    reason: String,
    decision: Option<&Decision>,
) -> Result<(DeliveryState, Write), ApiError> {
    let audit = refusal_audit(info, &reason, decision);
    let now = OffsetDateTime::now_utc();
    let next = step(current, DeliveryEvent::Refused { now, reason }, policy)?;
    Ok((next, audit))
}

/// The AuditEvent of a delivery refused at the consent re-check.
fn refusal_audit(info: &Info, reason: &str, decision: Option<&Decision>) -> Write {
    delivery_audit(info, "4", &format!("delivery refused: {reason}"), decision)
}

fn step(
    current: &DeliveryState,
    event: DeliveryEvent,
    policy: &RetryPolicy,
) -> Result<DeliveryState, ApiError> {
    routing::transition(current, event, policy)
        .map_err(|e| ApiError::new(ErrorKind::Conflict, e.to_string()))
}

/// One delivery attempt, recorded on its Task: abandoned attempts counted, consent re-checked,
/// in flight before the request, then delivered, retried or dead-lettered.
async fn deliver(
    state: &AppState,
    http: &reqwest::Client,
    mut version: u64,
    mut task: Value,
) -> Result<(), ApiError> {
    let mut current = state_of(&task).map_err(ApiError::internal)?;
    let info = match Info::of(&task) {
        Ok(info) => info,
        Err(reason) => {
            // A Task the worker cannot read is dead-lettered, not retried forever.
            let next = DeliveryState {
                status: DeliveryStatus::Dead {
                    reason: format!("unreadable delivery Task: {reason}"),
                    at: OffsetDateTime::now_utc(),
                },
                ..current
            };
            save(state, version, &mut task, &next, Vec::new()).await?;
            return Ok(());
        }
    };
    let policy = retry_policy(state, info.channel)?;
    if matches!(current.status, DeliveryStatus::InFlight { .. }) {
        let now = OffsetDateTime::now_utc();
        current = step(
            &current,
            DeliveryEvent::Abandoned {
                now,
                random: random(),
            },
            &policy,
        )?;
        version = save(state, version, &mut task, &current, Vec::new()).await?;
        if !current.is_due(now) {
            return Ok(());
        }
    }
    let (body, decision, unchecked) = match recheck(state, &info) {
        Ok(Recheck::Refuse(reason, decision)) => {
            let (next, audit) = refused(&info, &current, &policy, reason, decision.as_ref())?;
            save(state, version, &mut task, &next, vec![audit]).await?;
            return Ok(());
        }
        Ok(Recheck::Send(body, decision)) => (body, decision, None),
        // The record or the consents could not be read: a failed attempt (nothing is sent), so a
        // Task that always fails here ends in the dead-letter queue instead of looping.
        Err(error) => (
            None,
            None,
            Some(Failure::Transient {
                reason: format!("the consent re-check could not run: {}", reason_of(&error)),
                retry_after: None,
            }),
        ),
    };
    let started = step(
        &current,
        DeliveryEvent::Start {
            now: OffsetDateTime::now_utc(),
        },
        &policy,
    )?;
    version = save(state, version, &mut task, &started, Vec::new()).await?;
    let result = match (unchecked, endpoint_of(state, &info)) {
        (Some(failure), _) => Err(failure),
        (None, Some(endpoint)) => send(http, &endpoint, &info, body.as_ref()).await,
        (None, None) => Err(Failure::Permanent {
            reason: format!(
                "no rest-hook endpoint is configured for {} (routing.endpoints or an active Subscription)",
                info.recipient
            ),
        }),
    };
    let now = OffsetDateTime::now_utc();
    let (next, audits) = match result {
        Ok(()) => {
            let next = step(&started, DeliveryEvent::Succeeded { now }, &policy)?;
            let audit = delivery_audit(
                &info,
                "0",
                &format!("delivered by {}", info.channel.code()),
                decision.as_ref(),
            );
            (next, vec![audit])
        }
        Err(failure) => (
            step(
                &started,
                DeliveryEvent::Failed {
                    now,
                    failure,
                    random: random(),
                },
                &policy,
            )?,
            Vec::new(),
        ),
    };
    if let DeliveryStatus::Dead { reason, .. } = &next.status {
        tracing::warn!(delivery = %info.id, %reason, "a delivery was dead-lettered");
    }
    save(state, version, &mut task, &next, audits).await?;
    Ok(())
}

/// The rest-hook request: `POST {endpoint}/{type}` with the record (a FHIR create at the
/// recipient), or `DELETE {endpoint}/{type}/{id}` for a deletion; the delivery id rides along
/// in [`DELIVERY_ID_HEADER`] so a recipient can drop an attempt it already has.
async fn send(
    http: &reqwest::Client,
    endpoint: &str,
    info: &Info,
    body: Option<&Value>,
) -> Result<(), Failure> {
    let base = endpoint.trim_end_matches('/');
    let request = match body {
        Some(body) => http
            .post(format!("{base}/{}", info.focus_type))
            .header("content-type", "application/fhir+json")
            .body(body.to_string()),
        None => http.delete(format!("{base}/{}/{}", info.focus_type, info.focus_id)),
    }
    .header(DELIVERY_ID_HEADER, &info.id)
    .header("accept", "application/fhir+json");
    outcome_of(request).await
}

/// Sends a delivery request and classifies the answer: 2xx delivered; a timeout, a refused
/// connection, 408, 429 or 5xx transient (with `Retry-After`); any other answer permanent.
async fn outcome_of(request: reqwest::RequestBuilder) -> Result<(), Failure> {
    let response = request.send().await.map_err(|e| Failure::Transient {
        reason: if e.is_timeout() {
            "the recipient did not answer in time".to_owned()
        } else if e.is_connect() {
            "the recipient's endpoint refused or dropped the connection".to_owned()
        } else {
            format!("the request failed: {e}")
        },
        retry_after: None,
    })?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let reason = format!("the recipient answered HTTP {status}");
    if matches!(status, 408 | 429) || status >= 500 {
        Err(Failure::Transient {
            reason,
            retry_after,
        })
    } else {
        Err(Failure::Permanent { reason })
    }
}

// ---------------------------------------------------------------------------------------------
// The monthly-batch channel, consumed by the month close (crate::month_close).

/// The monthly-batch Tasks of a record that are still open (`requested`), with their versions.
pub(crate) fn open_batch_tasks(state: &AppState) -> Result<Vec<(u64, Value)>, ApiError> {
    let mut tasks = scan_all(state, Channel::MonthlyBatch)?;
    tasks.retain(|(_, task)| task.get("status").and_then(Value::as_str) == Some("requested"));
    Ok(tasks)
}

/// Every Task of a channel, page by page (the month close must see all of them, not the first
/// [`MAX_SCAN`]).
fn scan_all(state: &AppState, channel: Channel) -> Result<Vec<(u64, Value)>, ApiError> {
    let mut tasks = Vec::new();
    crate::domain::for_each_live(
        state.store.as_ref(),
        "Task",
        "code",
        &format!("{CHANNEL_SYSTEM}|{}", channel.code()),
        |version| {
            tasks.push((version.version, body_of(version)?));
            Ok(())
        },
    )?;
    Ok(tasks)
}

/// The record a delivery Task is about, as `(type, id)`.
pub(crate) fn focus_of(task: &Value) -> Option<(String, String)> {
    let info = Info::of(task).ok()?;
    Some((info.focus_type, info.focus_id))
}

/// Why the consent engine refuses a monthly-batch delivery now (checked again at the month
/// close, like any delivery at its time), or `None` when it permits it.
pub(crate) fn batch_refusal(state: &AppState, task: &Value) -> Result<Option<String>, ApiError> {
    let info = Info::of(task).map_err(ApiError::internal)?;
    Ok(match recheck(state, &info)? {
        Recheck::Send(..) => None,
        Recheck::Refuse(reason, _) => Some(reason),
    })
}

/// A monthly-batch Task the month close delivered: completed, with an output `claim` per
/// Claim that carries the record, and the delivery's AuditEvent. `None` when the Task is not
/// open (a second close changes nothing).
pub(crate) fn deliver_in_batch(
    state: &AppState,
    task: &Value,
    claims: &[String],
) -> Result<Option<(Value, Write)>, ApiError> {
    let info = Info::of(task).map_err(ApiError::internal)?;
    let current = state_of(task).map_err(ApiError::internal)?;
    if !matches!(current.status, DeliveryStatus::Pending) {
        return Ok(None);
    }
    let policy = retry_policy(state, info.channel)?;
    let now = OffsetDateTime::now_utc();
    let started = step(&current, DeliveryEvent::Start { now }, &policy)?;
    let next = step(&started, DeliveryEvent::Succeeded { now }, &policy)?;
    let mut task = task.clone();
    set_state(&mut task, &next, &format_time(now));
    if let Some(output) = task.get_mut("output").and_then(Value::as_array_mut) {
        output.extend(claims.iter().map(|claim| {
            json!({"type": param("claim"), "valueReference": {"reference": format!("Claim/{claim}")}})
        }));
    }
    let description = format!(
        "delivered by monthly-batch in {}",
        claims
            .iter()
            .map(|c| format!("Claim/{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let audit = delivery_audit(&info, "0", &description, None);
    Ok(Some((task, audit)))
}

/// A monthly-batch Task the month close could not bill: it stays open (`requested`) with the
/// reason in `statusReason`. `None` when it already says so.
pub(crate) fn hold_in_batch(task: &Value, reason: &str) -> Option<Value> {
    if task.pointer("/statusReason/text").and_then(Value::as_str) == Some(reason) {
        return None;
    }
    let mut task = task.clone();
    let object = task.as_object_mut()?;
    object.insert("statusReason".into(), json!({"text": reason}));
    object.insert("lastModified".into(), json!(now_instant()));
    Some(task)
}

// ---------------------------------------------------------------------------------------------
// Newer versions: deliveries of an older version that have not started are superseded.

/// What superseding the earlier deliveries of a record did.
#[derive(Debug, Default)]
pub(crate) struct Superseded {
    /// The waiting Tasks, cancelled (`superseded`), each guarded by its version.
    pub(crate) writes: Vec<Write>,
    /// `Task/{id}` of each of them.
    pub(crate) tasks: Vec<String>,
    /// The recipients an earlier version has reached, or may have reached (an attempt in
    /// flight): they keep it, so a withdrawal must be delivered to them too.
    pub(crate) reached: Vec<Recipient>,
}

/// Supersedes the deliveries by `rule` of versions of `{resource_type}/{id}` older than
/// `version` that have not started (pending, scheduled, retry-wait): the recipient gets only
/// the newer version. Delivered and in-flight ones stay as they are, and their recipients are
/// reported. The caller commits the writes with the new version.
pub(crate) fn supersede_earlier(
    state: &AppState,
    resource_type: &str,
    id: &str,
    version: u64,
    rule: &str,
) -> Result<Superseded, ApiError> {
    let by = format!("{resource_type}/{id}/_history/{version}");
    let now = OffsetDateTime::now_utc();
    let mut superseded = Superseded::default();
    let mut tasks = Vec::new();
    crate::domain::for_each_live(
        state.store.as_ref(),
        "Task",
        "focus",
        &format!("{resource_type}/{id}"),
        |stored| {
            tasks.push((stored.version, body_of(stored)?));
            Ok(())
        },
    )?;
    for (task_version, mut task) in tasks {
        let Ok(info) = Info::of(&task) else {
            continue;
        };
        let earlier = input_str(&task, "rule") == Some(rule)
            && info.focus_type == resource_type
            && info.focus_id == id
            && info.focus_version < version;
        let Some(current) = earlier.then(|| state_of(&task).ok()).flatten() else {
            continue;
        };
        if current.is_waiting() {
            let policy = retry_policy(state, info.channel)?;
            let event = DeliveryEvent::Supersede {
                now,
                by: by.clone(),
            };
            let next = step(&current, event, &policy)?;
            set_state(&mut task, &next, &format_time(now));
            superseded.tasks.push(format!("Task/{}", info.id));
            superseded.writes.push(Write {
                resource_type: "Task".to_owned(),
                id: info.id.clone(),
                precondition: Precondition::VersionIs(task_version),
                action: WriteAction::Put(task),
            });
        } else if matches!(
            current.status,
            DeliveryStatus::Delivered { .. } | DeliveryStatus::InFlight { .. }
        ) {
            let recipient = Recipient {
                kind: info.recipient_kind,
                id: info.recipient.clone(),
                has_endpoint: info.channel == Channel::FhirRestHook,
            };
            if !superseded.reached.contains(&recipient) {
                superseded.reached.push(recipient);
            }
        }
    }
    Ok(superseded)
}

// ---------------------------------------------------------------------------------------------
// HTTP: the mailbox and the operator commands.

/// Register `/routing/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/routing/v1")
            .wrap(actix_web::middleware::from_fn(
                crate::access::guard::require_token,
            ))
            .route("/inbox", web::get().to(inbox))
            .route("/inbox/{task}/ack", web::post().to(ack))
            .route("/deliveries", web::get().to(deliveries))
            .route("/deliveries/{task}/$replay", web::post().to(replay))
            .route("/deliveries/{task}/$discard", web::post().to(discard))
            .route(
                "/month-close",
                web::post().to(crate::month_close::close_route),
            )
            .configure(channels::configure),
    );
}

type State = web::Data<AppState>;

fn fhir_json(status: actix_web::http::StatusCode, value: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/fhir+json")
        .body(value.to_string())
}

pub(crate) fn answer(result: Result<Value, ApiError>) -> HttpResponse {
    match result {
        Ok(value) => fhir_json(actix_web::http::StatusCode::OK, &value),
        Err(error) => error_response(&error, None),
    }
}

fn caller(access: &Access) -> Result<&Caller, ApiError> {
    access.caller().ok_or_else(crate::access::missing_token)
}

/// Whether the Task is owned by this caller: its client id, and for a parent, their children.
/// The names a caller's deliveries are addressed to: its client id, and the Organization it is
/// registered for (`[[clients]] organization`), since a 医師会 is addressed as its Organization.
fn mailbox_names(state: &AppState, caller: &Caller) -> Vec<String> {
    let organization = state
        .config
        .clients
        .iter()
        .find(|c| c.id == caller.client_id)
        .and_then(|c| c.organization.clone());
    std::iter::once(caller.client_id.clone())
        .chain(organization)
        .collect()
}

fn owned_by(state: &AppState, caller: &Caller, info: &Info) -> Result<bool, ApiError> {
    if !mailbox_names(state, caller).contains(&info.recipient) {
        return Ok(false);
    }
    match caller.claims.fhir_user.as_deref() {
        Some(user) if user.starts_with("RelatedPerson/") => {
            let children = crate::access::children_of(state, &caller.claims.sub)?;
            Ok(info
                .patient
                .as_deref()
                .and_then(|p| p.strip_prefix("Patient/"))
                .is_some_and(|p| children.contains_key(p)))
        }
        _ => Ok(true),
    }
}

/// `GET /routing/v1/inbox`: the caller's waiting mailbox deliveries, consent re-checked, as a
/// history Bundle of the records (deletions as DELETE entries); each entry links its ack.
async fn inbox(state: State, req: HttpRequest) -> HttpResponse {
    answer(inbox_bundle(&state, &req).await)
}

async fn inbox_bundle(state: &AppState, req: &HttpRequest) -> Result<Value, ApiError> {
    let access = caller_access(req);
    let caller = caller(&access)?;
    let root = root_url(state, req);
    let mut entries = Vec::new();
    let mut waiting = Vec::new();
    for name in mailbox_names(state, caller) {
        waiting.extend(scan(state, Channel::Mailbox, "requested", Some(&name))?);
    }
    for version in waiting {
        let mut task = body_of(&version)?;
        let Ok(info) = Info::of(&task) else { continue };
        if !owned_by(state, caller, &info)? {
            continue;
        }
        let current = state_of(&task).map_err(ApiError::internal)?;
        if !current.is_due(OffsetDateTime::now_utc()) {
            continue;
        }
        let policy = retry_policy(state, info.channel)?;
        match recheck(state, &info)? {
            Recheck::Refuse(reason, decision) => {
                let (next, audit) = refused(&info, &current, &policy, reason, decision.as_ref())?;
                // One Task that cannot be updated (changed meanwhile) does not fail the listing.
                if let Err(error) =
                    save(state, version.version, &mut task, &next, vec![audit]).await
                {
                    tracing::warn!(error = %reason_of(&error), "a mailbox refusal could not be recorded");
                }
            }
            Recheck::Send(body, _) => {
                let url = format!("{}/{}", info.focus_type, info.focus_id);
                let mut entry = json!({
                    "id": info.id,
                    "link": [{"relation": "ack", "url": format!("{root}/routing/v1/inbox/{}/ack", info.id)}],
                    "fullUrl": format!("{root}/fhir/{url}"),
                });
                match body {
                    Some(body) => {
                        entry["resource"] = body;
                        entry["request"] = json!({"method": "PUT", "url": url});
                    }
                    None => entry["request"] = json!({"method": "DELETE", "url": url}),
                }
                entry["response"] =
                    json!({"status": "200", "etag": format!("W/\"{}\"", info.focus_version)});
                entries.push(entry);
            }
        }
    }
    Ok(json!({
        "resourceType": "Bundle",
        "type": "history",
        "total": entries.len(),
        "entry": entries,
    }))
}

fn root_url(state: &AppState, req: &HttpRequest) -> String {
    let configured = state.config.server.public_base_url.trim_end_matches('/');
    if !configured.is_empty() {
        return configured.to_owned();
    }
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

/// `POST /routing/v1/inbox/{task}/ack`: the recipient has the record; the Task is completed
/// and the disclosure audited. A second ack is a conflict, not a second delivery.
async fn ack(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    answer(ack_task(&state, &req, &path).await)
}

async fn ack_task(state: &AppState, req: &HttpRequest, id: &str) -> Result<Value, ApiError> {
    let access = caller_access(req);
    let caller = caller(&access)?;
    let (version, mut task) = outbox_task(state, id)?;
    let info = Info::of(&task).map_err(ApiError::internal)?;
    if info.channel != Channel::Mailbox || !owned_by(state, caller, &info)? {
        return Err(ApiError::not_found(format!(
            "no delivery {id} in your mailbox"
        )));
    }
    let policy = retry_policy(state, info.channel)?;
    let current = state_of(&task).map_err(ApiError::internal)?;
    let now = OffsetDateTime::now_utc();
    let started = step(&current, DeliveryEvent::Start { now }, &policy)?;
    let next = step(&started, DeliveryEvent::Succeeded { now }, &policy)?;
    let audit = delivery_audit(&info, "0", "delivered by mailbox (acknowledged)", None);
    save(state, version, &mut task, &next, vec![audit]).await?;
    Ok(task)
}

fn outbox_task(state: &AppState, id: &str) -> Result<(u64, Value), ApiError> {
    let missing = || ApiError::not_found(format!("no delivery {id}"));
    let version = state
        .store
        .read("Task", id)?
        .filter(|v| !v.is_deleted())
        .ok_or_else(missing)?;
    let task = body_of(&version)?;
    let ours = task
        .get("identifier")
        .and_then(Value::as_array)
        .is_some_and(|ids| {
            ids.iter()
                .any(|i| i.get("system").and_then(Value::as_str) == Some(DELIVERY_ID_SYSTEM))
        });
    if !ours {
        return Err(missing());
    }
    Ok((version.version, task))
}

/// Operator commands need an operator client with full Task access (`Access::permit_operator`).
pub(crate) fn operator(req: &HttpRequest) -> Result<(), ApiError> {
    caller_access(req).permit_operator()
}

/// `GET /routing/v1/deliveries?status=failed`: outbox Tasks in a Task status (default
/// `failed`, the dead letters), with their reasons in `statusReason`.
async fn deliveries(state: State, req: HttpRequest) -> HttpResponse {
    answer(list_deliveries(&state, &req))
}

fn list_deliveries(state: &AppState, req: &HttpRequest) -> Result<Value, ApiError> {
    operator(req)?;
    let status = crate::rest::parse_query_string(req.query_string())
        .into_iter()
        .find(|(k, _)| k == "status")
        .map_or_else(|| "failed".to_owned(), |(_, v)| v);
    let params = vec![("status".to_owned(), status)];
    let query = search::parse_query(search::Registry::r4(), "Task", &params, true)?;
    let page = state.store.search(&SearchRequest {
        resource_type: "Task",
        query: &query,
        offset: 0,
        count: MAX_SCAN,
        need_total: false,
    })?;
    let mut entries = Vec::new();
    for version in &page.matches {
        let task = body_of(version)?;
        if Info::of(&task).is_ok() {
            entries.push(json!({"fullUrl": format!("Task/{}", version.id), "resource": task}));
        }
    }
    Ok(
        json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}),
    )
}

/// `POST /routing/v1/deliveries/{task}/$replay`: a dead letter back in the queue, attempts reset;
/// a parcel delivery leaves its parcel, to be gathered into a new one.
async fn replay(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    answer(operate(&state, &req, &path, |_| DeliveryEvent::Replay).await)
}

/// `POST /routing/v1/deliveries/{task}/$discard`: a dead letter dropped for good.
async fn discard(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    answer(operate(&state, &req, &path, |now| DeliveryEvent::Discard { now }).await)
}

async fn operate(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
    event: impl FnOnce(OffsetDateTime) -> DeliveryEvent,
) -> Result<Value, ApiError> {
    operator(req)?;
    let (version, mut task) = outbox_task(state, id)?;
    let info = Info::of(&task).map_err(ApiError::internal)?;
    let policy = retry_policy(state, info.channel)?;
    let current = state_of(&task).map_err(ApiError::internal)?;
    let event = event(OffsetDateTime::now_utc());
    let replayed = matches!(event, DeliveryEvent::Replay);
    let next = step(&current, event, &policy)?;
    if replayed {
        channels::leave_parcel(&mut task, info.channel);
    }
    save(state, version, &mut task, &next, Vec::new()).await?;
    Ok(task)
}

// ---------------------------------------------------------------------------------------------

fn reason_of(error: &ApiError) -> String {
    error
        .issues
        .first()
        .map_or_else(|| "unknown error".to_owned(), |i| i.diagnostics.clone())
}

fn body_of(version: &StoredVersion) -> Result<Value, ApiError> {
    serde_json::from_slice(&version.body)
        .map_err(|e| ApiError::internal(format!("stored resource unreadable: {e}")))
}

fn now_instant() -> String {
    format_time(OffsetDateTime::now_utc())
}

fn format_time(t: OffsetDateTime) -> String {
    store::format_instant((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> routing::Delivery {
        let recipient = Recipient {
            kind: RecipientKind::PhrApp,
            id: "demo-app".into(),
            has_endpoint: true,
        };
        let resource = json!({"resourceType": "Immunization", "id": "i1"});
        let event = routing::Event {
            kind: EventKind::Created,
            resource_type: "Immunization",
            id: "i1",
            version: "3",
            resource: &resource,
        };
        routing::Delivery {
            id: routing::DeliveryId::new("immunization-to-guardian-apps", &event, &recipient),
            rule_id: "immunization-to-guardian-apps".into(),
            event: EventKind::Created,
            resource_type: "Immunization".into(),
            resource_id: "i1".into(),
            version: "3".into(),
            recipient,
            channel: Channel::FhirRestHook,
            purpose: routing::PurposeOfUse::Patrqt,
            basis: routing::Basis::Consent,
        }
    }

    #[test]
    fn every_state_round_trips_through_a_valid_r4_task() {
        let t = OffsetDateTime::parse("2025-06-01T09:00:00.250Z", &Rfc3339).unwrap();
        let states = [
            DeliveryState::new(),
            DeliveryState::scheduled(t),
            DeliveryState {
                status: DeliveryStatus::InFlight { since: t },
                attempts: 1,
                last_error: None,
            },
            DeliveryState {
                status: DeliveryStatus::RetryWait { until: t },
                attempts: 2,
                last_error: Some("HTTP 503".into()),
            },
            DeliveryState {
                status: DeliveryStatus::Delivered { at: t },
                attempts: 3,
                last_error: None,
            },
            DeliveryState {
                status: DeliveryStatus::Dead {
                    reason: "gave up".into(),
                    at: t,
                },
                attempts: 4,
                last_error: Some("x".into()),
            },
            DeliveryState {
                status: DeliveryStatus::Refused {
                    reason: "consent withdrawn".into(),
                    at: t,
                },
                attempts: 0,
                last_error: None,
            },
            DeliveryState {
                status: DeliveryStatus::Discarded { at: t },
                attempts: 4,
                last_error: None,
            },
            DeliveryState {
                status: DeliveryStatus::Superseded {
                    by: "Claim/b1/_history/2".into(),
                    at: t,
                },
                attempts: 0,
                last_error: None,
            },
        ];
        let expected_status = [
            "requested",
            "requested",
            "in-progress",
            "on-hold",
            "completed",
            "failed",
            "rejected",
            "cancelled",
            "cancelled",
        ];
        for (state, status) in states.iter().zip(expected_status) {
            let mut task = new_task(&delivery(), Some("p1"), "2025-06-01T09:00:00.000Z");
            set_state(&mut task, state, "2025-06-01T09:00:01.000Z");
            assert_eq!(task["status"], status);
            assert_eq!(&state_of(&task).unwrap(), state, "{task:#}");
            let issues = fhir::validate::validate_resource(fhir::Definitions::r4(), &task);
            assert!(
                issues.iter().all(|i| !i.severity.is_error()),
                "{issues:?}\n{task:#}"
            );
        }
    }

    #[test]
    fn the_task_names_the_delivery() {
        let task = new_task(&delivery(), Some("p1"), "2025-06-01T09:00:00.000Z");
        let info = Info::of(&task).unwrap();
        assert_eq!(info.id, delivery().id.to_string());
        assert_eq!(task["id"], info.id);
        assert_eq!(info.focus(), "Immunization/i1/_history/3");
        assert_eq!(info.channel, Channel::FhirRestHook);
        assert_eq!(info.recipient, "demo-app");
        assert_eq!(info.recipient_kind, RecipientKind::PhrApp);
        assert_eq!(info.purpose, "PATRQT");
        assert_eq!(info.patient.as_deref(), Some("Patient/p1"));
        assert_eq!(task["owner"]["identifier"]["value"], "demo-app");
        let mut broken = task.clone();
        broken["focus"]["reference"] = json!("Immunization/i1");
        assert!(Info::of(&broken).is_err());
    }

    #[test]
    fn subscription_criteria_name_one_patient() {
        let cases = [
            ("Immunization?patient=Patient/child-a", Some("child-a")),
            ("Immunization?patient=child-a", Some("child-a")),
            (
                "Immunization?status=completed&patient=Patient/c1",
                Some("c1"),
            ),
            ("Immunization?patient=", None),
            ("Immunization?patient=Patient/a/b", None),
            ("Observation?patient=Patient/child-a", None),
            ("Immunization", None),
        ];
        for (criteria, expected) in cases {
            assert_eq!(subscribed_patient(criteria), expected, "{criteria}");
        }
    }

    #[test]
    fn an_app_subscription_is_checked_tagged_and_activated() {
        let valid = json!({"resourceType": "Subscription", "status": "requested", "reason": "r",
            "criteria": "Immunization?patient=Patient/child-a",
            "channel": {"type": "rest-hook", "endpoint": "https://app.example/fhir"}});
        let mut accepted = valid.clone();
        register_subscription("app-1", &mut accepted).unwrap();
        assert_eq!(accepted["status"], "active");
        assert_eq!(accepted["meta"]["tag"][0]["code"], "app-1");
        let refused = [
            ("/channel/type", json!("email")),
            ("/channel/endpoint", json!("http://app.example/fhir")),
            ("/channel/endpoint", json!("ftp://app.example")),
            ("/criteria", json!("Patient?_id=child-a")),
        ];
        for (pointer, value) in refused {
            let mut subscription = valid.clone();
            *subscription.pointer_mut(pointer).unwrap() = value;
            assert!(
                register_subscription("app-1", &mut subscription).is_err(),
                "{subscription}"
            );
        }
        let mut off = valid.clone();
        off["status"] = json!("off");
        off["channel"]["type"] = json!("email");
        assert!(register_subscription("app-1", &mut off).is_ok());
    }

    #[test]
    fn unchanged_content_ignores_server_meta_only() {
        let live = json!({"resourceType": "Patient", "id": "p", "meta": {"versionId": "2", "lastUpdated": "2025-01-01T00:00:00Z"}, "active": true});
        let cases = [
            (
                json!({"resourceType": "Patient", "id": "p", "active": true}),
                true,
            ),
            (
                json!({"resourceType": "Patient", "id": "p", "meta": {"versionId": "9"}, "active": true}),
                true,
            ),
            (
                json!({"resourceType": "Patient", "id": "p", "active": false}),
                false,
            ),
            (
                json!({"resourceType": "Patient", "id": "p", "meta": {"tag": [{"code": "x"}]}, "active": true}),
                false,
            ),
        ];
        for (new, same) in cases {
            assert_eq!(same_content(&new, &live), same, "{new}");
        }
    }
}
