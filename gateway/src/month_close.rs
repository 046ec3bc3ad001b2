//! The month close in the gateway (docs/billing.md, "Month close in the gateway"): the month's
//! routine Immunizations become `billing` claim batches, stored as R4 Claims with one delivery
//! Task each to the billed party (held back until the scheme's due day), while the month's
//! `monthly-batch` Tasks are completed with a reference to their Claims or left open with the
//! reason, and the deliveries of older Claim versions that have not started are superseded;
//! everything in one store commit.
//!
//! [`gather`] and [`Summary::parameters`] are pure; [`close`] reads the store, runs them and
//! `billing::close_month`, and writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use actix_web::{HttpRequest, HttpResponse, web};
use billing::{
    BatchKind, BillableVaccination, BillingData, ClaimBatch, Eligibility, Party, YearMonth,
    format_day,
};
use identifiers::{
    FacilityCode, MEDICAL_INSTITUTION_CODE_SYSTEM, MEDICAL_INSTITUTION_CODE_SYSTEM_COMMON,
    PrefectureCode,
};
use routing::{
    Basis, Channel, Delivery, DeliveryId, Directory, EventKind, OrganizationRef, PurposeOfUse,
    Recipient, RecipientKind,
};
use serde::Deserialize;
use serde_json::{Value, json};
use store::{Precondition, Write, WriteAction};
use time::{OffsetDateTime, UtcOffset};

use crate::error::ApiError;
use crate::outbox::{self, StoreDirectory};
use crate::rest::Ctx;
use crate::state::AppState;

/// Musubi's funding-source CodeSystem; `routine` is 定期接種 (docs/terminology.md).
pub const FUNDING_SOURCE_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/funding-source";
/// The `rule` of a claim's delivery Task: planned by the month close, not by a routing rule.
pub const CLAIM_DELIVERY_RULE: &str = "month-close-claim";
/// The consent engine's legal basis for claim batches (profiles/jp/consent/legal-bases.json).
pub const CLAIM_LEGAL_BASIS: &str = "routine-vaccination-claim-batch";

/// The month close's configuration, `[billing]` (docs/configuration.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingConfig {
    /// Prefecture code (two digits, e.g. `23` for 愛知県) → the registered client that is that
    /// prefecture's 国保連 (国民健康保険団体連合会, kokuho-ren). It receives the claims the
    /// 国保連 pays and may read the claims that name it (docs/billing.md, "Claims via the
    /// 国保連"). Musubi has no client kind for a 国保連, so it is registered as a
    /// `medical-association`: the kind whose only purpose of use is payment (HPAYMT).
    #[serde(default)]
    pub kokuho_ren: BTreeMap<String, String>,
}

impl BillingConfig {
    /// Checks `billing.kokuho_ren` against the registered clients: each key is a prefecture
    /// code written with two digits, each client is registered with kind `medical-association`
    /// and is the 国保連 of one prefecture only.
    pub fn validate(&self, clients: &[auth::Client]) -> Result<(), String> {
        let mut prefecture_of: BTreeMap<&str, &str> = BTreeMap::new();
        for (key, client_id) in &self.kokuho_ren {
            let name = format!("billing.kokuho_ren.{key:?}");
            let prefecture = PrefectureCode::parse(key).map_err(|e| format!("{name}: {e}"))?;
            if prefecture.to_string() != *key {
                return Err(format!(
                    "{name}: write the prefecture code as two digits, {prefecture}"
                ));
            }
            let registered = clients
                .iter()
                .any(|c| &c.id == client_id && c.kind == auth::ClientKind::MedicalAssociation);
            if !registered {
                return Err(format!(
                    "{name} names {client_id:?}, which is not a registered client of kind medical-association (the kind a 国保連 is registered with)"
                ));
            }
            if let Some(other) = prefecture_of.insert(client_id, key) {
                return Err(format!(
                    "{name} names {client_id:?}, already the 国保連 of prefecture {other}: a 国保連 serves one prefecture"
                ));
            }
        }
        Ok(())
    }

    /// The client registered as the 国保連 of `prefecture`.
    pub fn kokuho_ren_client(&self, prefecture: PrefectureCode) -> Option<&str> {
        self.kokuho_ren
            .get(&prefecture.to_string())
            .map(String::as_str)
    }

    /// The prefecture whose 国保連 the client is, if it is one.
    pub fn kokuho_ren_of(&self, client_id: &str) -> Option<&str> {
        self.kokuho_ren
            .iter()
            .find(|(_, client)| *client == client_id)
            .map(|(prefecture, _)| prefecture.as_str())
    }
}

/// Japan Standard Time: due days are Japanese calendar days.
const JST: UtcOffset = match UtcOffset::from_hms(9, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

// ---------------------------------------------------------------------------------------------
// Gathering: one stored Immunization into a billable vaccination, without I/O.

/// What the home municipality's routine-vaccination rules said about a dose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleCheck {
    /// No finding: a routine dose, publicly funded.
    Accepted,
    /// The findings that make it not a publicly funded routine dose.
    Rejected(Vec<String>),
    /// The rules could not be applied (no birth date, unknown vaccine), with the reason.
    NotChecked(String),
}

/// One record the month close looks at, with what the store holds about it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub id: &'a str,
    /// The current content, or for a deleted record its last content.
    pub immunization: &'a Value,
    pub deleted: bool,
    pub patient: Option<&'a Value>,
    /// The performing Organization (the clinic).
    pub clinic: Option<&'a Value>,
    /// The Organization id of the clinic's medical association (its `partOf`).
    pub association: Option<&'a str>,
    pub rules: &'a RuleCheck,
    /// Why the consent engine refuses the record's delivery to the medical association now.
    pub refused: Option<&'a str>,
}

/// What the month close makes of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gathered {
    Billable(BillableVaccination),
    /// Deliberately not billed, with the reason.
    NotBilled(String),
    /// Should be billed but cannot be, until an operator corrects the data.
    Exception {
        kind: &'static str,
        reason: String,
    },
}

fn exception(kind: &'static str, reason: impl Into<String>) -> Gathered {
    Gathered::Exception {
        kind,
        reason: reason.into(),
    }
}

/// Whether an Immunization's `fundingSource` is routine (定期接種).
pub fn is_routine(immunization: &Value) -> bool {
    immunization
        .pointer("/fundingSource/coding")
        .and_then(Value::as_array)
        .is_some_and(|codings| {
            codings.iter().any(|c| {
                c.get("system").and_then(Value::as_str) == Some(FUNDING_SOURCE_SYSTEM)
                    && c.get("code").and_then(Value::as_str) == Some("routine")
            })
        })
}

/// The clinic's 医療機関コード: the first valid identifier in JP Core's system.
fn clinic_code(clinic: &Value) -> Result<FacilityCode, String> {
    let values: Vec<&str> = clinic
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| {
            matches!(
                i.get("system").and_then(Value::as_str),
                Some(MEDICAL_INSTITUTION_CODE_SYSTEM | MEDICAL_INSTITUTION_CODE_SYSTEM_COMMON)
            )
        })
        .filter_map(|i| i.get("value").and_then(Value::as_str))
        .collect();
    let mut last_error = format!("no identifier in {MEDICAL_INSTITUTION_CODE_SYSTEM}");
    for value in values {
        match FacilityCode::parse(value) {
            Ok(code) => return Ok(code),
            Err(e) => last_error = format!("{value:?}: {e}"),
        }
    }
    Err(last_error)
}

/// One record as a billable vaccination, or why it is not billed. `vaccine_type_of(system,
/// code)` maps a coding to a Musubi vaccine type (terminology's knowledge, passed in).
pub fn gather(
    record: &Record<'_>,
    vaccine_type_of: impl Fn(&str, &str) -> Option<String>,
) -> Gathered {
    let immunization = record.immunization;
    if record.deleted {
        return Gathered::NotBilled("the record was deleted".to_owned());
    }
    let status = immunization
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("");
    if status != "completed" {
        return Gathered::NotBilled(format!("status is {status:?}, not completed"));
    }
    if !is_routine(immunization) {
        return Gathered::NotBilled(
            "fundingSource is not routine (定期接種), so it is not a public claim".to_owned(),
        );
    }
    let dose = match mappers::immunization::dose_record(immunization, vaccine_type_of) {
        Ok(dose) => dose,
        Err(why) => return exception("unreadable-vaccination", why.to_string()),
    };
    let Some(patient) = record.patient else {
        return exception(
            "no-patient",
            "the patient is not a Patient on this server, so the home municipality is unknown",
        );
    };
    let home = match routing::home_municipality(patient) {
        Ok(Some(home)) => home,
        Ok(None) => {
            return exception(
                "no-home-municipality",
                "the Patient's address has no municipality-code extension",
            );
        }
        Err(e) => return exception("no-home-municipality", e),
    };
    let Some(clinic) = record.clinic else {
        return exception(
            "no-clinic",
            "performer.actor names no Organization on this server",
        );
    };
    let code = match clinic_code(clinic) {
        Ok(code) => code,
        Err(e) => {
            return exception(
                "no-clinic-code",
                format!("the clinic's 医療機関コード: {e}"),
            );
        }
    };
    let clinic_municipality = match routing::organization_municipality(clinic) {
        Ok(Some(code)) => code,
        Ok(None) => {
            return exception(
                "no-clinic-municipality",
                "the clinic Organization's address has no municipality-code extension",
            );
        }
        Err(e) => return exception("no-clinic-municipality", e),
    };
    let Some(association) = record.association else {
        return exception(
            "no-medical-association",
            "the clinic Organization is not partOf a medical association on this server",
        );
    };
    if let Some(why) = record.refused {
        return exception("refused", why);
    }
    let eligibility = match record.rules {
        RuleCheck::Accepted => Eligibility::PubliclyFunded,
        RuleCheck::Rejected(_) => Eligibility::NotPubliclyFunded,
        RuleCheck::NotChecked(why) => return exception("eligibility-unknown", why.clone()),
    };
    Gathered::Billable(BillableVaccination {
        immunization_id: record.id.to_owned(),
        home_municipality: home,
        clinic: code,
        clinic_municipality,
        medical_association: association.to_owned(),
        vaccine_type: dose.vaccine,
        product: dose.product,
        dose_number: dose.dose_number,
        date: dose.date,
        eligibility,
    })
}

// ---------------------------------------------------------------------------------------------
// The summary.

/// Whether a batch's Claim is new, changed or the same as the last close stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

impl Change {
    pub fn code(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
        }
    }
}

/// One claim batch as the close stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    pub id: String,
    pub kind: BatchKind,
    pub claimant: String,
    pub payer: String,
    pub due_date: String,
    pub lines: usize,
    pub total: u64,
    pub change: Change,
    /// The total the stored Claim had before an update.
    pub previous_total: Option<u64>,
    /// `Task/{id}` of its delivery, or why it has none.
    pub delivery: Result<String, String>,
}

/// A vaccination left out of the claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub immunization_id: String,
    /// For exceptions, the kind (`no-fee`, `no-clinic-municipality`, …).
    pub kind: Option<String>,
    pub reason: String,
}

/// What a month close did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub month: YearMonth,
    pub batches: Vec<BatchSummary>,
    /// Claims of an earlier close of this month that no longer have lines, now cancelled.
    pub withdrawn: Vec<String>,
    /// `Task/{id}` delivering a withdrawal to a party that already has a version of the Claim.
    pub withdrawal_deliveries: Vec<String>,
    /// `Task/{id}` of deliveries of older Claim versions, cancelled before they started.
    pub superseded: Vec<String>,
    pub not_billed: Vec<Reported>,
    pub exceptions: Vec<Reported>,
    pub association_total: u64,
    /// Monthly-batch Tasks completed by this close.
    pub tasks_delivered: usize,
    /// Monthly-batch Tasks left open with a (new) reason.
    pub tasks_held: usize,
}

fn money(yen: u64) -> Value {
    json!({"value": yen, "currency": "JPY"})
}

impl Summary {
    /// The summary as an R4 Parameters resource: one `batch` per claim batch (party, line
    /// count, exact total in yen, what changed, its delivery), then the vaccinations not billed
    /// and the exceptions with their reasons.
    pub fn parameters(&self) -> Value {
        let mut parameter = vec![
            json!({"name": "month", "valueString": self.month.to_string()}),
            json!({"name": "association-total", "valueMoney": money(self.association_total)}),
            json!({"name": "tasks-delivered", "valueUnsignedInt": self.tasks_delivered}),
            json!({"name": "tasks-held", "valueUnsignedInt": self.tasks_held}),
        ];
        for batch in &self.batches {
            let mut part = vec![
                json!({"name": "claim", "valueReference": {"reference": format!("Claim/{}", batch.id)}}),
                json!({"name": "kind", "valueCode": batch.kind.code()}),
                json!({"name": "claimant", "valueString": batch.claimant}),
                json!({"name": "payer", "valueString": batch.payer}),
                json!({"name": "due", "valueDate": batch.due_date}),
                json!({"name": "lines", "valueUnsignedInt": batch.lines}),
                json!({"name": "total", "valueMoney": money(batch.total)}),
                json!({"name": "change", "valueCode": batch.change.code()}),
            ];
            if let Some(previous) = batch.previous_total {
                part.push(json!({"name": "previous-total", "valueMoney": money(previous)}));
            }
            part.push(match &batch.delivery {
                Ok(task) => json!({"name": "delivery", "valueReference": {"reference": task}}),
                Err(why) => json!({"name": "undelivered", "valueString": why}),
            });
            parameter.push(json!({"name": "batch", "part": part}));
        }
        for claim in &self.withdrawn {
            parameter.push(json!({"name": "withdrawn", "valueReference": {"reference": format!("Claim/{claim}")}}));
        }
        for (name, tasks) in [
            ("withdrawal-delivery", &self.withdrawal_deliveries),
            ("superseded", &self.superseded),
        ] {
            for task in tasks {
                parameter.push(json!({"name": name, "valueReference": {"reference": task}}));
            }
        }
        for (name, list) in [
            ("not-billed", &self.not_billed),
            ("exception", &self.exceptions),
        ] {
            for reported in list {
                let mut part = vec![json!({"name": "immunization", "valueReference": {
                    "reference": format!("Immunization/{}", reported.immunization_id)}})];
                if let Some(kind) = &reported.kind {
                    part.push(json!({"name": "kind", "valueCode": kind}));
                }
                part.push(json!({"name": "reason", "valueString": reported.reason}));
                parameter.push(json!({"name": name, "part": part}));
            }
        }
        json!({"resourceType": "Parameters", "parameter": parameter})
    }

    /// The summary in plain lines, for the command line.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "month {}: {} batches, association total {} yen; {} not billed, {} exceptions; monthly-batch Tasks: {} delivered, {} held",
            self.month,
            self.batches.len(),
            self.association_total,
            self.not_billed.len(),
            self.exceptions.len(),
            self.tasks_delivered,
            self.tasks_held
        )];
        for b in &self.batches {
            let previous = b
                .previous_total
                .map(|p| format!(" (was {p} yen)"))
                .unwrap_or_default();
            let delivery = match &b.delivery {
                Ok(task) => task.clone(),
                Err(why) => format!("not delivered: {why}"),
            };
            lines.push(format!(
                "{} {} → {}, due {}: {} lines, {} yen, {}{previous}; Claim/{}; {delivery}",
                b.kind.code(),
                b.claimant,
                b.payer,
                b.due_date,
                b.lines,
                b.total,
                b.change.code(),
                b.id
            ));
        }
        for claim in &self.withdrawn {
            lines.push(format!("withdrawn: Claim/{claim} (no lines any more)"));
        }
        for task in &self.withdrawal_deliveries {
            lines.push(format!("withdrawal delivered by {task}"));
        }
        for task in &self.superseded {
            lines.push(format!(
                "superseded: {task} (an older Claim version, not sent)"
            ));
        }
        for r in &self.not_billed {
            lines.push(format!(
                "not billed: Immunization/{}: {}",
                r.immunization_id, r.reason
            ));
        }
        for r in &self.exceptions {
            lines.push(format!(
                "exception {}: Immunization/{}: {}",
                r.kind.as_deref().unwrap_or("?"),
                r.immunization_id,
                r.reason
            ));
        }
        lines
    }
}

// ---------------------------------------------------------------------------------------------
// Running it.

/// `POST /routing/v1/month-close?month=YYYY-MM` (operator): closes the month and answers the
/// summary as Parameters.
pub(crate) async fn close_route(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    outbox::answer(close_request(&state, &req).await)
}

async fn close_request(state: &AppState, req: &HttpRequest) -> Result<Value, ApiError> {
    outbox::operator(req)?;
    let month = crate::rest::parse_query_string(req.query_string())
        .into_iter()
        .find(|(k, _)| k == "month")
        .map(|(_, v)| v)
        .ok_or_else(|| ApiError::bad_request("month=YYYY-MM is required"))?;
    let month = parse_month(&month)?;
    let ctx = crate::http::ctx(state, req);
    Ok(close(&ctx, month).await?.parameters())
}

/// Closes a month for the command line (`musubi close-month`), as the gateway itself.
pub async fn close_offline(state: &AppState, month: &str) -> Result<Summary, ApiError> {
    let month = parse_month(month)?;
    let ctx = Ctx {
        state,
        base: std::cell::OnceCell::from(String::new()),
        request: None,
        prefer: crate::rest::Prefer::default(),
        access: crate::access::Access::Internal,
        purpose_of_use: None,
    };
    close(&ctx, month).await
}

/// A `YYYY-MM` that has begun (in Japan): a month not yet begun has nothing to close.
fn parse_month(text: &str) -> Result<YearMonth, ApiError> {
    let month = YearMonth::parse(text).map_err(ApiError::bad_request)?;
    let today = OffsetDateTime::now_utc().to_offset(JST).date();
    if month > YearMonth::of(today) {
        return Err(ApiError::bad_request(format!(
            "month {month} has not begun; nothing to close"
        )));
    }
    Ok(month)
}

/// The billing data of this process's configuration: the embedded files, then the `*.json`
/// files of `{profiles.extra_dir}/billing/`; parsed once per folder.
fn billing_data(state: &AppState) -> Result<&'static BillingData, ApiError> {
    static LOADED: crate::domain::FolderCache<BillingData> = OnceLock::new();
    crate::domain::folder_data(
        state.config.profiles.extra_dir.as_deref(),
        "billing",
        &LOADED,
        || BillingData::embedded().map_err(|e| ApiError::internal(e.to_string())),
        |extra| BillingData::load(extra).map_err(|e| e.to_string()),
    )
}

/// A record with what it needs, owned.
struct Loaded {
    id: String,
    immunization: Value,
    deleted: bool,
    patient: Option<Value>,
    clinic: Option<Value>,
    association: Option<String>,
    rules: RuleCheck,
    refused: Option<String>,
}

/// The date an Immunization was given, when it names a whole day.
fn given_on(immunization: &Value) -> Option<time::Date> {
    immunization
        .get("occurrenceDateTime")
        .and_then(Value::as_str)
        .and_then(mappers::immunization::full_date)
}

/// The month's records: live routine Immunizations given in the month, and the records of
/// open monthly-batch Tasks whose content (the last one, when deleted) is in the month.
fn month_records(
    state: &AppState,
    month: YearMonth,
    open_tasks: &BTreeMap<String, Vec<(u64, Value)>>,
) -> Result<Vec<(String, Value, bool)>, ApiError> {
    let store = state.store.as_ref();
    let mut records: BTreeMap<String, (Value, bool)> = BTreeMap::new();
    for immunization in
        crate::domain::search_all(store, "Immunization", "date", &month.to_string())?
    {
        let Some(id) = immunization.get("id").and_then(Value::as_str) else {
            continue;
        };
        let in_month = given_on(&immunization).is_some_and(|d| month.contains(d));
        if in_month && (is_routine(&immunization) || open_tasks.contains_key(id)) {
            records.insert(id.to_owned(), (immunization, false));
        }
    }
    for id in open_tasks.keys() {
        if records.contains_key(id) {
            continue;
        }
        let Some(current) = store.read("Immunization", id)? else {
            continue;
        };
        let (content, deleted) = if current.is_deleted() {
            match crate::domain::last_content_before(store, "Immunization", id, current.version)? {
                Some(content) => (content, true),
                None => continue,
            }
        } else {
            (crate::domain::parse_stored(&current)?, false)
        };
        if given_on(&content).is_some_and(|d| month.contains(d)) {
            records.insert(id.clone(), (content, deleted));
        }
    }
    Ok(records
        .into_iter()
        .map(|(id, (content, deleted))| (id, content, deleted))
        .collect())
}

/// Reads what [`gather`] needs about one record: its Patient, clinic, medical association
/// (as the routing directory resolves it) and, for a completed routine dose, the home
/// municipality's rules on it with the patient's stored history.
fn load(
    state: &AppState,
    directory: &StoreDirectory<'_>,
    id: String,
    immunization: Value,
    deleted: bool,
    open_tasks: &[(u64, Value)],
) -> Result<Loaded, ApiError> {
    let store = state.store.as_ref();
    let patient = match mappers::immunization::patient_id(&immunization) {
        Some(patient_id) => crate::domain::live_resource(store, "Patient", patient_id)?,
        None => None,
    };
    let performer = routing::ElementPath::parse(routing::DEFAULT_PERFORMER_PATH)
        .ok()
        .and_then(|path| {
            path.select(&immunization)
                .into_iter()
                .find_map(OrganizationRef::from_reference)
        });
    let clinic = performer
        .as_ref()
        .and_then(|r| directory.organization_id(r));
    let association = clinic.as_ref().and_then(|(clinic_id, _)| {
        directory
            .medical_association_of(&OrganizationRef::Id(clinic_id.clone()))
            .and_then(|r| r.id.strip_prefix("Organization/").map(str::to_owned))
    });
    let checkable = !deleted
        && immunization.get("status").and_then(Value::as_str) == Some("completed")
        && is_routine(&immunization);
    let rules = if checkable {
        let empty = crate::domain::Pending::from_writes(&[]);
        let issues = state
            .domain
            .vaccination_issues(store, &empty, &immunization)?;
        let findings: Vec<String> = issues
            .iter()
            .filter(|i| i.code == fhir::validate::IssueType::BusinessRule)
            .map(|i| i.diagnostics.clone())
            .collect();
        if !findings.is_empty() {
            RuleCheck::Rejected(findings)
        } else if issues.is_empty() {
            RuleCheck::Accepted
        } else {
            RuleCheck::NotChecked(
                issues
                    .iter()
                    .map(|i| i.diagnostics.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        }
    } else {
        RuleCheck::NotChecked("not a completed routine dose".to_owned())
    };
    // The newest open delivery stands for the record: the consent re-check, as at any
    // delivery time.
    let refused = match open_tasks.last() {
        Some((_, task)) if checkable => outbox::batch_refusal(state, task)?,
        _ => None,
    };
    Ok(Loaded {
        id,
        immunization,
        deleted,
        patient,
        clinic: clinic.map(|(_, content)| content),
        association,
        rules,
        refused,
    })
}

/// Who receives a batch's Claim: the payer's registered client (a municipality, or the client
/// registered as the prefecture's 国保連), or why none.
fn addressee(directory: &StoreDirectory<'_>, payer: &Party) -> Result<Recipient, String> {
    match payer {
        Party::Municipality(code) => directory.municipality(code).ok_or_else(|| {
            format!("no municipality client is registered for {code}; the Claim waits to be read")
        }),
        Party::KokuhoRen(prefecture) => directory.kokuho_ren(*prefecture).ok_or_else(|| {
            format!(
                "no client is registered as the 国保連 of prefecture {prefecture} (billing.kokuho_ren); the Claim waits to be read"
            )
        }),
        Party::MedicalAssociation(id) => Ok(Recipient {
            kind: RecipientKind::MedicalAssociation,
            id: format!("Organization/{id}"),
            has_endpoint: false,
        }),
    }
}

/// The delivery of version `version` of Claim `id` (content `claim`) to `recipient`: a
/// rest-hook when the recipient has an endpoint, else its mailbox; purpose HPAYMT under the
/// claim-batch legal basis.
fn claim_delivery(id: &str, version: u64, claim: &Value, recipient: Recipient) -> Delivery {
    let version_text = version.to_string();
    let kind = if version == 1 {
        EventKind::Created
    } else {
        EventKind::Updated
    };
    let event = routing::Event {
        kind,
        resource_type: "Claim",
        id,
        version: &version_text,
        resource: claim,
    };
    Delivery {
        id: DeliveryId::new(CLAIM_DELIVERY_RULE, &event, &recipient),
        rule_id: CLAIM_DELIVERY_RULE.to_owned(),
        event: kind,
        resource_type: "Claim".to_owned(),
        resource_id: id.to_owned(),
        version: version_text,
        channel: if recipient.has_endpoint {
            Channel::FhirRestHook
        } else {
            Channel::Mailbox
        },
        recipient,
        purpose: PurposeOfUse::Hpaymt,
        basis: Basis::Legal(CLAIM_LEGAL_BASIS.to_owned()),
    }
}

/// Midnight in Japan at the start of the due day.
fn start_of(day: time::Date) -> OffsetDateTime {
    day.midnight().assume_offset(JST)
}

/// Closes `month` (docs/billing.md, "Month close in the gateway") in one store commit.
pub async fn close(ctx: &Ctx<'_>, month: YearMonth) -> Result<Summary, ApiError> {
    let state = ctx.state;
    // The close writes Claims and Tasks, so this server must serve them.
    for resource_type in ["Claim", "Task"] {
        crate::rest::check_type(state, resource_type)?;
    }
    let store = state.store.as_ref();
    let data = billing_data(state)?;
    let directory = StoreDirectory::new(state);
    let now = OffsetDateTime::now_utc();
    let now_text = store::format_instant((now.unix_timestamp_nanos() / 1_000_000) as i64);

    // The open monthly-batch Tasks, by the Immunization they are about.
    let mut open_tasks: BTreeMap<String, Vec<(u64, Value)>> = BTreeMap::new();
    for (version, task) in outbox::open_batch_tasks(state)? {
        if let Some((resource_type, id)) = outbox::focus_of(&task)
            && resource_type == "Immunization"
        {
            open_tasks.entry(id).or_default().push((version, task));
        }
    }

    // Gather.
    let mut vaccinations = Vec::new();
    let mut not_billed = Vec::new();
    let mut exceptions = Vec::new();
    let mut findings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, immunization, deleted) in month_records(state, month, &open_tasks)? {
        let tasks = open_tasks.get(&id).map_or(&[][..], Vec::as_slice);
        let loaded = load(state, &directory, id, immunization, deleted, tasks)?;
        let record = Record {
            id: &loaded.id,
            immunization: &loaded.immunization,
            deleted: loaded.deleted,
            patient: loaded.patient.as_ref(),
            clinic: loaded.clinic.as_ref(),
            association: loaded.association.as_deref(),
            rules: &loaded.rules,
            refused: loaded.refused.as_deref(),
        };
        match gather(&record, |s, c| state.domain.vaccine_type_of(s, c)) {
            Gathered::Billable(v) => {
                if let RuleCheck::Rejected(why) = &loaded.rules {
                    findings.insert(loaded.id.clone(), why.clone());
                }
                vaccinations.push(v);
            }
            Gathered::NotBilled(reason) => not_billed.push(Reported {
                immunization_id: loaded.id,
                kind: None,
                reason,
            }),
            Gathered::Exception { kind, reason } => exceptions.push(Reported {
                immunization_id: loaded.id,
                kind: Some(kind.to_owned()),
                reason,
            }),
        }
    }

    // Close.
    let closed = billing::close_month(month, &vaccinations, data);
    not_billed.extend(closed.not_billed.iter().map(|n| {
        let mut reason = n.reason.clone();
        if let Some(why) = findings.get(&n.immunization_id) {
            reason = format!("{reason}: {}", why.join("; "));
        }
        Reported {
            immunization_id: n.immunization_id.clone(),
            kind: None,
            reason,
        }
    }));
    exceptions.extend(closed.exceptions.iter().map(|e| {
        Reported {
            immunization_id: e.immunization_id.clone(),
            kind: serde_json::to_value(e.kind)
                .ok()
                .and_then(|k| k.as_str().map(str::to_owned)),
            reason: e.message.clone(),
        }
    }));

    // The Claims and their deliveries.
    let mut writes = Vec::new();
    let mut batches = Vec::new();
    let mut superseded = Vec::new();
    let all_batches: Vec<&ClaimBatch> = closed
        .association_claims
        .iter()
        .chain(&closed.settlement_claims)
        .collect();
    for batch in &all_batches {
        let claim = billing::claim_resource(batch, data);
        let current = store.read("Claim", &batch.id)?.filter(|v| !v.is_deleted());
        let previous = current
            .as_ref()
            .map(crate::domain::parse_stored)
            .transpose()?;
        let (change, version, precondition) = match (&current, &previous) {
            (Some(c), Some(p)) if outbox::same_content(&claim, p) => {
                (Change::Unchanged, c.version, None)
            }
            (Some(c), Some(_)) => (
                Change::Updated,
                c.version + 1,
                Some(Precondition::VersionIs(c.version)),
            ),
            _ => (Change::Created, 1, Some(Precondition::MustNotExist)),
        };
        let previous_total = match (change, &previous) {
            (Change::Updated, Some(p)) => p.pointer("/total/value").and_then(Value::as_u64),
            _ => None,
        };
        // A new version replaces the deliveries of older ones that have not started.
        if change == Change::Updated {
            let earlier =
                outbox::supersede_earlier(state, "Claim", &batch.id, version, CLAIM_DELIVERY_RULE)?;
            writes.extend(earlier.writes);
            superseded.extend(earlier.tasks);
        }
        let delivery = match addressee(&directory, &batch.payer) {
            Ok(recipient) => {
                let delivery = claim_delivery(&batch.id, version, &claim, recipient);
                let task_id = delivery.id.to_string();
                if store.read("Task", &task_id)?.is_none() {
                    writes.push(Write {
                        resource_type: "Task".to_owned(),
                        id: task_id.clone(),
                        precondition: Precondition::MustNotExist,
                        action: WriteAction::Put(outbox::scheduled_task(
                            &delivery,
                            start_of(batch.due_date),
                            &now_text,
                        )),
                    });
                }
                Ok(format!("Task/{task_id}"))
            }
            Err(why) => Err(why),
        };
        if let Some(precondition) = precondition {
            writes.push(Write {
                resource_type: "Claim".to_owned(),
                id: batch.id.clone(),
                precondition,
                action: WriteAction::Put(claim),
            });
        }
        batches.push(BatchSummary {
            id: batch.id.clone(),
            kind: batch.kind,
            claimant: batch.claimant.key(),
            payer: batch.payer.key(),
            due_date: format_day(batch.due_date),
            lines: batch.lines.len(),
            total: batch.total.amount(),
            change,
            previous_total,
            delivery,
        });
    }

    // Claims of an earlier close of this month that lost all their lines: withdrawn (cancelled).
    // A delivery of theirs that has not started is superseded; a party that already has a
    // version gets the cancellation.
    let current_ids: BTreeSet<&str> = all_batches.iter().map(|b| b.id.as_str()).collect();
    let created = format_day(month.plus_months(1).first_day());
    let mut withdrawn = Vec::new();
    let mut withdrawal_deliveries = Vec::new();
    for version in stored_claims(state, &created)? {
        let mut claim = crate::domain::parse_stored(&version)?;
        let ours = claim
            .get("identifier")
            .and_then(Value::as_array)
            .is_some_and(|ids| {
                ids.iter().any(|i| {
                    i.get("system").and_then(Value::as_str) == Some(billing::CLAIM_BATCH_SYSTEM)
                })
            });
        let of_month = claim
            .pointer("/billablePeriod/start")
            .and_then(Value::as_str)
            == Some(format_day(month.first_day()).as_str());
        let active = claim.get("status").and_then(Value::as_str) != Some("cancelled");
        if ours && of_month && active && !current_ids.contains(version.id.as_str()) {
            claim["status"] = json!("cancelled");
            withdrawn.push(version.id.clone());
            let cancelled = version.version + 1;
            let earlier = outbox::supersede_earlier(
                state,
                "Claim",
                &version.id,
                cancelled,
                CLAIM_DELIVERY_RULE,
            )?;
            writes.extend(earlier.writes);
            superseded.extend(earlier.tasks);
            for recipient in earlier.reached {
                let delivery = claim_delivery(&version.id, cancelled, &claim, recipient);
                let task_id = delivery.id.to_string();
                if store.read("Task", &task_id)?.is_none() {
                    writes.push(Write {
                        resource_type: "Task".to_owned(),
                        id: task_id.clone(),
                        precondition: Precondition::MustNotExist,
                        action: WriteAction::Put(outbox::new_task(&delivery, None, &now_text)),
                    });
                }
                withdrawal_deliveries.push(format!("Task/{task_id}"));
            }
            writes.push(Write {
                resource_type: "Claim".to_owned(),
                id: version.id.clone(),
                precondition: Precondition::VersionIs(version.version),
                action: WriteAction::Put(claim),
            });
        }
    }

    // The month's monthly-batch Tasks: where each vaccination went.
    let mut claims_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for batch in &all_batches {
        for line in &batch.lines {
            claims_of
                .entry(line.immunization_id.as_str())
                .or_default()
                .push(batch.id.clone());
        }
    }
    let reasons: BTreeMap<&str, String> = not_billed
        .iter()
        .map(|r| {
            (
                r.immunization_id.as_str(),
                format!("not billed in {month}: {}", r.reason),
            )
        })
        .chain(exceptions.iter().map(|r| {
            (
                r.immunization_id.as_str(),
                format!(
                    "exception {} in the close of {month}: {}",
                    r.kind.as_deref().unwrap_or("?"),
                    r.reason
                ),
            )
        }))
        .collect();
    let mut tasks_delivered = 0;
    let mut tasks_held = 0;
    for (id, tasks) in &open_tasks {
        for (version, task) in tasks {
            let write = |task: Value| Write {
                resource_type: "Task".to_owned(),
                id: task
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                precondition: Precondition::VersionIs(*version),
                action: WriteAction::Put(task),
            };
            if let Some(claims) = claims_of.get(id.as_str()) {
                if let Some((task, audit)) = outbox::deliver_in_batch(state, task, claims)? {
                    writes.push(write(task));
                    writes.push(audit);
                    tasks_delivered += 1;
                }
            } else if let Some(reason) = reasons.get(id.as_str())
                && let Some(task) = outbox::hold_in_batch(task, reason)
            {
                writes.push(write(task));
                tasks_held += 1;
            }
        }
    }

    if !writes.is_empty() {
        store
            .commit(crate::rest::with_audit_and_deliveries(ctx, writes)?)
            .await?;
    }
    Ok(Summary {
        month,
        batches,
        withdrawn,
        withdrawal_deliveries,
        superseded,
        not_billed,
        exceptions,
        association_total: closed.association_total().amount(),
        tasks_delivered,
        tasks_held,
    })
}

/// The stored Claims created on a day (a month's batches are all created on the first day of
/// the next month).
fn stored_claims(state: &AppState, created: &str) -> Result<Vec<store::StoredVersion>, ApiError> {
    let mut found = Vec::new();
    crate::domain::for_each_live(state.store.as_ref(), "Claim", "created", created, |v| {
        found.push(v.clone());
        Ok(())
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXT: &str = "https://musubi.example.org/fhir/StructureDefinition/municipality-code";
    const VACCINE_TYPE: &str = "https://musubi.example.org/fhir/CodeSystem/vaccine-type";

    fn immunization() -> Value {
        json!({"resourceType": "Immunization", "id": "imm-1", "status": "completed",
            "vaccineCode": {"coding": [
                {"system": "urn:test:product", "code": "hepb-b"},
                {"system": VACCINE_TYPE, "code": "hepb"}]},
            "patient": {"reference": "Patient/p1"},
            "occurrenceDateTime": "2025-06-05T10:00:00+09:00",
            "protocolApplied": [{"doseNumberPositiveInt": 2}],
            "fundingSource": {"coding": [{"system": FUNDING_SOURCE_SYSTEM, "code": "routine"}]},
            "performer": [{"actor": {"reference": "Organization/clinic-1"}}]})
    }

    fn patient() -> Value {
        json!({"resourceType": "Patient", "id": "p1", "birthDate": "2025-03-01",
            "address": [{"use": "home", "extension": [{"url": EXT, "valueCode": "131024"}]}]})
    }

    fn clinic() -> Value {
        json!({"resourceType": "Organization", "id": "clinic-1",
            "identifier": [{"system": MEDICAL_INSTITUTION_CODE_SYSTEM, "value": "1310100118"}],
            "address": [{"extension": [{"url": EXT, "valueCode": "131016"}]}],
            "partOf": {"reference": "Organization/ma-1"}})
    }

    fn vaccine_type(system: &str, code: &str) -> Option<String> {
        (system == VACCINE_TYPE).then(|| code.to_owned())
    }

    fn gathered(
        immunization: &Value,
        patient: Option<&Value>,
        clinic: Option<&Value>,
        association: Option<&str>,
        rules: &RuleCheck,
    ) -> Gathered {
        let record = Record {
            id: "imm-1",
            immunization,
            deleted: false,
            patient,
            clinic,
            association,
            rules,
            refused: None,
        };
        gather(&record, vaccine_type)
    }

    #[test]
    fn a_routine_dose_becomes_a_billable_vaccination() {
        let (i, p, c) = (immunization(), patient(), clinic());
        let got = gathered(&i, Some(&p), Some(&c), Some("ma-1"), &RuleCheck::Accepted);
        let Gathered::Billable(v) = got else {
            panic!("{got:?}")
        };
        assert_eq!(v.immunization_id, "imm-1");
        assert_eq!(v.home_municipality.as_str(), "131024");
        assert_eq!(v.clinic_municipality.as_str(), "131016");
        assert_eq!(v.clinic.as_str(), "1310100118");
        assert_eq!(v.medical_association, "ma-1");
        assert_eq!(v.vaccine_type, "hepb");
        assert_eq!(v.product.as_deref(), Some("hepb-b"));
        assert_eq!(v.dose_number, Some(2));
        assert_eq!(format_day(v.date), "2025-06-05");
        assert_eq!(v.eligibility, Eligibility::PubliclyFunded);
        let rejected = RuleCheck::Rejected(vec!["too old".into()]);
        let Gathered::Billable(v) = gathered(&i, Some(&p), Some(&c), Some("ma-1"), &rejected)
        else {
            panic!("a rejected dose is still handed to billing, as not publicly funded")
        };
        assert_eq!(v.eligibility, Eligibility::NotPubliclyFunded);
    }

    #[test]
    fn records_that_are_not_billed_say_why() {
        let (p, c) = (patient(), clinic());
        let ok = RuleCheck::Accepted;
        for (status, fragment) in [
            ("entered-in-error", "entered-in-error"),
            ("not-done", "not-done"),
        ] {
            let mut i = immunization();
            i["status"] = json!(status);
            match gathered(&i, Some(&p), Some(&c), Some("ma-1"), &ok) {
                Gathered::NotBilled(reason) => assert!(reason.contains(fragment), "{reason}"),
                other => panic!("{status}: {other:?}"),
            }
        }
        let mut voluntary = immunization();
        voluntary["fundingSource"]["coding"][0]["code"] = json!("voluntary");
        assert!(matches!(
            gathered(&voluntary, Some(&p), Some(&c), Some("ma-1"), &ok),
            Gathered::NotBilled(_)
        ));
        let i = immunization();
        let record = Record {
            id: "imm-1",
            immunization: &i,
            deleted: true,
            patient: Some(&p),
            clinic: Some(&c),
            association: Some("ma-1"),
            rules: &ok,
            refused: None,
        };
        assert_eq!(
            gather(&record, vaccine_type),
            Gathered::NotBilled("the record was deleted".into())
        );
    }

    #[test]
    fn missing_data_is_an_exception_never_a_silent_drop() {
        let (i, p, c) = (immunization(), patient(), clinic());
        let ok = RuleCheck::Accepted;
        let kind = |g: Gathered| match g {
            Gathered::Exception { kind, .. } => kind,
            other => panic!("{other:?}"),
        };
        let mut no_municipality = c.clone();
        no_municipality["address"] = json!([{"text": "東京都千代田区"}]);
        let mut no_code = c.clone();
        no_code["identifier"] =
            json!([{"system": MEDICAL_INSTITUTION_CODE_SYSTEM, "value": "1310100119"}]);
        let mut homeless = p.clone();
        homeless["address"] = json!([]);
        let mut unknown_vaccine = i.clone();
        unknown_vaccine["vaccineCode"] = json!({"coding": [{"system": "urn:x", "code": "y"}]});
        let cases = [
            (
                gathered(&i, None, Some(&c), Some("ma-1"), &ok),
                "no-patient",
            ),
            (
                gathered(&i, Some(&homeless), Some(&c), Some("ma-1"), &ok),
                "no-home-municipality",
            ),
            (gathered(&i, Some(&p), None, Some("ma-1"), &ok), "no-clinic"),
            (
                gathered(&i, Some(&p), Some(&no_code), Some("ma-1"), &ok),
                "no-clinic-code",
            ),
            (
                gathered(&i, Some(&p), Some(&no_municipality), Some("ma-1"), &ok),
                "no-clinic-municipality",
            ),
            (
                gathered(&i, Some(&p), Some(&c), None, &ok),
                "no-medical-association",
            ),
            (
                gathered(
                    &i,
                    Some(&p),
                    Some(&c),
                    Some("ma-1"),
                    &RuleCheck::NotChecked("no birthDate".into()),
                ),
                "eligibility-unknown",
            ),
            (
                gathered(&unknown_vaccine, Some(&p), Some(&c), Some("ma-1"), &ok),
                "unreadable-vaccination",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(kind(got), want);
        }
        let record = Record {
            id: "imm-1",
            immunization: &i,
            deleted: false,
            patient: Some(&p),
            clinic: Some(&c),
            association: Some("ma-1"),
            rules: &ok,
            refused: Some("consent re-check at delivery: denied"),
        };
        assert_eq!(kind(gather(&record, vaccine_type)), "refused");
    }

    #[test]
    fn a_kokuho_ren_is_a_registered_medical_association_client_of_one_prefecture() {
        let load = |pairs: &[(&str, &str)]| {
            crate::config::Config::load(
                None,
                pairs
                    .iter()
                    .map(|(k, v)| (format!("MUSUBI__BILLING__KOKUHO_REN__{k}"), v.to_string())),
            )
        };
        let config = load(&[("23", "demo-medical-association")]).unwrap();
        let aichi = PrefectureCode::parse("23").unwrap();
        let tokyo = PrefectureCode::parse("13").unwrap();
        let billing = &config.billing;
        assert_eq!(
            billing.kokuho_ren_client(aichi),
            Some("demo-medical-association")
        );
        assert_eq!(billing.kokuho_ren_client(tokyo), None);
        assert_eq!(
            billing.kokuho_ren_of("demo-medical-association"),
            Some("23")
        );
        assert_eq!(billing.kokuho_ren_of("demo-municipality"), None);
        assert!(load(&[]).unwrap().billing.kokuho_ren.is_empty());

        let kind = "not a registered client of kind medical-association";
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[("23", "no-such-client")], kind),
            (&[("23", "demo-municipality")], kind),
            (&[("48", "demo-medical-association")], "prefecture"),
            (&[("２３", "demo-medical-association")], "as two digits, 23"),
            (
                &[
                    ("13", "demo-medical-association"),
                    ("23", "demo-medical-association"),
                ],
                "already the 国保連 of prefecture 13",
            ),
        ];
        for (pairs, fragment) in cases {
            let error = load(pairs).unwrap_err().to_string();
            assert!(
                error.contains("billing.kokuho_ren.") && error.contains(fragment),
                "{pairs:?}: {error}"
            );
        }
    }

    #[test]
    fn the_summary_is_a_valid_r4_parameters_with_exact_yen() {
        let summary = Summary {
            month: YearMonth::parse("2025-06").unwrap(),
            batches: vec![BatchSummary {
                id: "b1".into(),
                kind: BatchKind::AssociationClaim,
                claimant: "medical-association:ma-1".into(),
                payer: "municipality:131016".into(),
                due_date: "2025-07-10".into(),
                lines: 2,
                total: 18500,
                change: Change::Updated,
                previous_total: Some(8000),
                delivery: Ok("Task/t1".into()),
            }],
            withdrawn: vec!["b0".into()],
            withdrawal_deliveries: vec!["Task/t0".into()],
            superseded: vec!["Task/t2".into()],
            not_billed: vec![Reported {
                immunization_id: "imm-15".into(),
                kind: None,
                reason: "not publicly funded".into(),
            }],
            exceptions: vec![Reported {
                immunization_id: "imm-16".into(),
                kind: Some("no-fee".into()),
                reason: "no price".into(),
            }],
            association_total: 18500,
            tasks_delivered: 2,
            tasks_held: 2,
        };
        let parameters = summary.parameters();
        let issues = fhir::validate::validate_resource(fhir::Definitions::r4(), &parameters);
        assert!(
            issues.iter().all(|i| !i.severity.is_error()),
            "{issues:?}\n{parameters:#}"
        );
        let text = parameters.to_string();
        assert!(
            text.contains(r#""valueMoney":{"value":18500,"currency":"JPY"}"#),
            "{text}"
        );
        assert!(text.contains(r#""name":"previous-total","valueMoney":{"value":8000"#));
        assert!(summary.lines()[1].contains("18500 yen, updated (was 8000 yen)"));
        assert!(text.contains(r#"{"name":"superseded","valueReference":{"reference":"Task/t2"}}"#));
        assert!(text.contains(
            r#"{"name":"withdrawal-delivery","valueReference":{"reference":"Task/t0"}}"#
        ));
    }
}
