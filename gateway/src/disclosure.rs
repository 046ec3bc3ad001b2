//! Consent enforcement and the audit trail at the FHIR exits: every record returned to a caller
//! acting for an organisation is decided with the person's consents (the `consent` crate) and
//! shown whole, cut down to identity level, or withheld as if absent; every such disclosure or
//! refusal, and every write, leaves an AuditEvent (docs/consent.md, "Enforcement in the
//! gateway").
//!
//! Decisions are made per request from the Consents stored at that moment. A patient's consent
//! facts are reused across requests only while the store reports no Consent or Patient write
//! since they were read ([`FactsCache`]), so a revocation takes effect with the very next
//! request. The functions here are called once per exit by `rest.rs` and `transaction.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use consent::{
    BasePolicy, Classification, ConsentRecord, Data, Grantor, Identifier, Outcome, Party,
    PatientRef, Policy, Purpose, ReasonCode, RecipientKind, Request,
};
use serde_json::{Map, Value, json};
use store::{
    HistoryPage, HistoryScope, Precondition, SearchPage, SearchRequest, StoredVersion, Write,
    WriteAction,
};
use time::OffsetDateTime;

use crate::access::{Access, Caller, Grant};
use crate::config::{ConsentFallback, ReadAudit, WriteAudit, kind_code};
use crate::error::{ApiError, ErrorKind};
use crate::rest::Ctx;

/// Active privacy consents read for one patient; more is refused rather than half-read.
const MAX_CONSENTS: usize = 1000;
/// Versions of one resource a consent-checked instance history reads (as `restricted_history`).
const MAX_VERSIONS: usize = 10_000;

const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
/// DICOM's audit codes, which R4's audit-event-type value set includes (`110106` Export).
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";

// ---------------------------------------------------------------------------------------------
// The hooks, one per exit.

/// read and vread: the version as the caller may see it (whole or redacted), or 404 as if it
/// did not exist. A deletion is shown (as 410 by the caller) only to a caller who may see the
/// content it removed.
pub(crate) async fn single(
    ctx: &Ctx<'_>,
    interaction: &'static str,
    version: StoredVersion,
    absent: impl FnOnce() -> String,
) -> Result<StoredVersion, ApiError> {
    let Some(mut enforcer) = Enforcer::for_ctx(ctx)? else {
        return Ok(version);
    };
    if version.is_deleted() {
        let Some(live) = live_before(ctx, &version)? else {
            return Ok(version);
        };
        let decided = enforcer.decide_stored(&live)?;
        return match decided.shown {
            Shown::Withheld => Err(ApiError::not_found(absent())),
            _ => Ok(version),
        };
    }
    let decided = enforcer.decide_stored(&version)?;
    let (result, disclosed) = match decided.shown {
        Shown::AsIs => (Ok(version), true),
        Shown::Redacted(body) => (Ok(with_body(&version, &body)), true),
        Shown::Withheld => (Err(ApiError::not_found(absent())), false),
    };
    enforcer.note(decided.record, disclosed);
    enforcer.commit(Event::Rest(interaction)).await?;
    result
}

/// search: `None` when the caller is not consent-checked (the caller searches as before).
/// Otherwise the whole match set (at most `consent.max_search_matches`) is decided before
/// paging, so the total and `_summary=count` count only what the caller may see; the page's
/// `_include`/`_revinclude` resources are decided too.
pub(crate) async fn search(
    ctx: &Ctx<'_>,
    request: &SearchRequest<'_>,
) -> Result<Option<SearchPage>, ApiError> {
    let Some(mut enforcer) = Enforcer::for_ctx(ctx)? else {
        return Ok(None);
    };
    let store = ctx.state.store.as_ref();
    let rt = request.resource_type;
    let query = request.query;
    let mut page = if enforcer.decides_type(rt) {
        let cap = ctx.state.config.consent.max_search_matches;
        let mut bare = query.clone();
        bare.control.include.clear();
        bare.control.revinclude.clear();
        let mut shown = Vec::new();
        let mut decide_into = |matches: &[StoredVersion],
                               shown: &mut Vec<(StoredVersion, Option<Logged>)>,
                               enough: usize|
         -> Result<(), ApiError> {
            for version in matches {
                if shown.len() >= enough {
                    break;
                }
                let decided = enforcer.decide_stored(version)?;
                match decided.shown {
                    Shown::Withheld => enforcer.note(decided.record, false),
                    Shown::AsIs => shown.push((version.clone(), decided.record)),
                    Shown::Redacted(body) => {
                        shown.push((with_body(version, &body), decided.record))
                    }
                }
            }
            Ok(())
        };
        // Without a total or a sort, matches are decided in index order only until the page
        // (and one more, for the next link) is full: the same page, without deciding a
        // child's whole history for each search of it.
        let lazy = !request.need_total && query.control.sort.is_empty();
        let total = if lazy {
            let enough = request.offset + request.count + 1;
            // The first fetch is the page itself; each later one (records withheld) doubles.
            let mut batch = enough;
            let mut scanned = 0;
            loop {
                let part = store.search(&SearchRequest {
                    resource_type: rt,
                    query: &bare,
                    offset: scanned,
                    count: batch,
                    need_total: false,
                })?;
                scanned += part.matches.len();
                decide_into(&part.matches, &mut shown, enough)?;
                if shown.len() >= enough || !part.has_more || part.matches.is_empty() {
                    break None;
                }
                batch = batch.saturating_mul(2);
            }
        } else {
            let all = store.search(&SearchRequest {
                resource_type: rt,
                query: &bare,
                offset: 0,
                count: cap + 1,
                need_total: false,
            })?;
            if all.matches.len() > cap {
                return Err(ApiError::bad_request(format!(
                    "this search matches more than {cap} {rt} resources; the records a consent-checked caller may see are decided before paging, so narrow the search (by patient, date or status) below {cap} matches (consent.max_search_matches)"
                )));
            }
            decide_into(&all.matches, &mut shown, usize::MAX)?;
            Some(shown.len())
        };
        let found = shown.len();
        let mut matches = Vec::new();
        for (version, record) in shown.into_iter().skip(request.offset).take(request.count) {
            enforcer.note(record, true);
            matches.push(version);
        }
        let included = if matches.is_empty()
            || (query.control.include.is_empty() && query.control.revinclude.is_empty())
        {
            Vec::new()
        } else {
            includes_of(ctx, rt, query, &matches)?
        };
        SearchPage {
            total,
            has_more: request.count > 0 && request.offset + request.count < found,
            matches,
            included,
        }
    } else {
        store.search(request)?
    };
    let mut included = Vec::with_capacity(page.included.len());
    for version in std::mem::take(&mut page.included) {
        let resource = body_of(&version)?;
        if !ctx
            .access
            .may_see(ctx.state, &version.resource_type, &resource)
        {
            continue;
        }
        let decided = enforcer.decide(&version, &resource)?;
        match decided.shown {
            Shown::Withheld => enforcer.note(decided.record, false),
            Shown::AsIs => {
                enforcer.note(decided.record, true);
                included.push(version);
            }
            Shown::Redacted(body) => {
                enforcer.note(decided.record, true);
                included.push(with_body(&version, &body));
            }
        }
    }
    page.included = included;
    enforcer.commit(Event::Rest("search-type")).await?;
    Ok(Some(page))
}

/// history: `None` when the caller is not consent-checked or the type holds no personal data.
/// A consent-checked instance history decides each version and pages after filtering; type and
/// system history span every person's records and are refused to such callers.
pub(crate) async fn history(
    ctx: &Ctx<'_>,
    grant: Option<&Grant>,
    scope: &HistoryScope,
    since_ms: Option<i64>,
    offset: usize,
    count: usize,
) -> Result<Option<HistoryPage>, ApiError> {
    let Some(mut enforcer) = Enforcer::for_ctx(ctx)? else {
        return Ok(None);
    };
    let rt = match scope {
        HistoryScope::Instance(rt, _) if !enforcer.decides_type(rt) => return Ok(None),
        HistoryScope::Type(rt) if !enforcer.decides_type(rt) => return Ok(None),
        HistoryScope::Instance(rt, _) => rt,
        HistoryScope::Type(_) | HistoryScope::System => {
            return Err(ApiError::new(
                ErrorKind::Forbidden,
                "type and system history span every person's records and cannot be consent-checked; read the history of one resource at a time",
            ));
        }
    };
    let restricted = grant.filter(|g| !g.is_unrestricted());
    let all = ctx.state.store.history(scope, since_ms, 0, MAX_VERSIONS)?;
    let mut shown = Vec::new();
    for version in all.versions {
        if version.is_deleted() {
            // A deletion has no content of its own: it is listed when the content it removed
            // may be seen (and never to a caller whose grant is narrowed, as without consent).
            if restricted.is_some() {
                continue;
            }
            if let Some(live) = live_before(ctx, &version)? {
                let decided = enforcer.decide_stored(&live)?;
                if !matches!(decided.shown, Shown::Withheld) {
                    shown.push((version, None));
                }
            }
            continue;
        }
        let resource = body_of(&version)?;
        if restricted.is_some_and(|g| !g.allows(&resource)) {
            continue;
        }
        let decided = enforcer.decide(&version, &resource)?;
        match decided.shown {
            Shown::Withheld => enforcer.note(decided.record, false),
            Shown::AsIs => shown.push((version, decided.record)),
            Shown::Redacted(body) => shown.push((with_body(&version, &body), decided.record)),
        }
    }
    let total = shown.len();
    let mut versions = Vec::new();
    for (version, record) in shown.into_iter().skip(offset).take(count) {
        enforcer.note(record, true);
        versions.push(version);
    }
    tracing::debug!(resource_type = %rt, total, "consent-checked instance history");
    enforcer.commit(Event::Rest("history-instance")).await?;
    Ok(Some(HistoryPage { total, versions }))
}

/// Before a commit: refuses an active privacy Consent Musubi could not enforce (422, so a
/// consent is never half-enforced), and appends one AuditEvent per written resource, so the
/// trail and the write are stored together or not at all.
pub(crate) fn writes(ctx: &Ctx<'_>, mut writes: Vec<Write>) -> Result<Vec<Write>, ApiError> {
    for write in &writes {
        if let (true, WriteAction::Put(resource)) =
            (write.resource_type == "Consent", &write.action)
        {
            check_consent(ctx, resource)?;
        }
    }
    if ctx.state.config.audit.writes == WriteAudit::Off {
        return Ok(writes);
    }
    let purpose = match consent_checked(ctx) {
        Some((caller, _)) => Some(purpose_of(ctx, caller)?),
        None => None,
    };
    let recorded = now_instant();
    let mut events = Vec::new();
    for write in writes.iter().filter(|w| w.resource_type != "AuditEvent") {
        let (interaction, action) = match (&write.action, write.precondition) {
            (WriteAction::Delete, _) => ("delete", "D"),
            (WriteAction::Put(_), Precondition::MustNotExist | Precondition::NewId) => {
                ("create", "C")
            }
            (WriteAction::Put(_), _) => ("update", "U"),
        };
        let patient = match &write.action {
            WriteAction::Put(resource) => patient_of(resource),
            WriteAction::Delete => match ctx.state.store.read(&write.resource_type, &write.id)? {
                Some(current) if !current.is_deleted() => patient_of(&body_of(&current)?),
                _ => None,
            },
        };
        let mut entity: Vec<Value> = patient.iter().map(patient_entity).collect();
        entity.push(record_entity(
            format!("{}/{}", write.resource_type, write.id),
            None,
        ));
        let event = audit_event(
            &ctx.access,
            &Summary {
                event: Event::Rest(interaction),
                action,
                outcome: "0",
                description: format!("{interaction} {}", write.resource_type),
                recorded: &recorded,
            },
            purpose.as_ref(),
            entity,
        );
        events.push(audit_write(event));
    }
    writes.extend(events);
    Ok(writes)
}

// ---------------------------------------------------------------------------------------------
// Exits whose answer is built from the records' content.

/// A consent-checked exit outside the REST interactions (operations, municipal exports, the PHR
/// app API, conditional matches, research exports): each record the answer would draw on is
/// decided, and the decisions are audited when the exit closes. For a caller that is not
/// consent-checked (a parent, the gateway itself) every record passes and nothing is written.
pub(crate) struct Exit<'c, 's> {
    enforcer: Option<Enforcer<'c, 's>>,
}

impl<'c, 's> Exit<'c, 's> {
    /// The exit of the request's caller, decided for its kind, organisation and purpose.
    pub(crate) fn open(ctx: &'c Ctx<'s>) -> Result<Exit<'c, 's>, ApiError> {
        Ok(Exit {
            enforcer: Enforcer::for_ctx(ctx)?,
        })
    }

    /// An exit that decides nothing: the gateway's own use (the operator's command line).
    pub(crate) fn unchecked() -> Self {
        Exit { enforcer: None }
    }

    /// An exit whose recipient is not the caller (a research project, for which the caller
    /// exports): always decided, whatever `consent.enforce` says, since only a consent lets
    /// such data leave.
    pub(crate) fn for_recipient(
        ctx: &'c Ctx<'s>,
        recipient: Party,
        purpose: Purpose,
    ) -> Result<Exit<'c, 's>, ApiError> {
        Ok(Exit {
            enforcer: Some(Enforcer {
                ctx,
                policy: policy(ctx.state)?,
                recipient,
                purpose,
                now: OffsetDateTime::now_utc(),
                facts: HashMap::new(),
                log: Vec::new(),
            }),
        })
    }

    /// Whether the record may go into an answer built from its content: only when the caller
    /// may see it whole (an identity-only view has no content to compute or export from).
    pub(crate) fn permits(&mut self, version: &StoredVersion) -> Result<bool, ApiError> {
        let Some(enforcer) = self.enforcer.as_mut() else {
            return Ok(true);
        };
        let decided = enforcer.decide_stored(version)?;
        let whole = matches!(decided.shown, Shown::AsIs);
        enforcer.note(decided.record, whole);
        Ok(whole)
    }

    /// The record as the caller may see it (whole, or cut to identity level), or `None` when
    /// it is withheld.
    pub(crate) fn shown(
        &mut self,
        version: StoredVersion,
    ) -> Result<Option<StoredVersion>, ApiError> {
        let Some(enforcer) = self.enforcer.as_mut() else {
            return Ok(Some(version));
        };
        let decided = enforcer.decide_stored(&version)?;
        let shown = match decided.shown {
            Shown::AsIs => Some(version),
            Shown::Redacted(body) => Some(with_body(&version, &body)),
            Shown::Withheld => None,
        };
        enforcer.note(decided.record, shown.is_some());
        Ok(shown)
    }

    /// Whether this exit decides anything (false for a parent or the gateway itself).
    pub(crate) fn is_checked(&self) -> bool {
        self.enforcer.is_some()
    }

    /// The consents of a patient as the decisions of this exit read them, when it is decided.
    pub(crate) fn consents_of(
        &mut self,
        patient: &PatientRef,
    ) -> Result<Option<&[ConsentRecord]>, ApiError> {
        match self.enforcer.as_mut() {
            Some(enforcer) => {
                let facts = enforcer.facts_of(patient)?;
                // A patient with an unreadable consent gets nothing that needs a consent.
                Ok(facts
                    .unreadable
                    .is_empty()
                    .then_some(facts.consents.as_slice()))
            }
            None => Ok(None),
        }
    }

    /// One AuditEvent per patient with every decision of this exit, committed before the
    /// answer leaves.
    pub(crate) async fn close(self, event: Event<'_>) -> Result<(), ApiError> {
        match self.enforcer {
            Some(enforcer) => enforcer.commit(event).await,
            None => Ok(()),
        }
    }
}

/// An AuditEvent that names no person (a research export lists pseudonymous counts): the
/// caller as agent, the purpose, and the given entities.
pub(crate) fn anonymous_audit(
    ctx: &Ctx<'_>,
    event: Event<'_>,
    outcome: &str,
    description: String,
    purpose: &Purpose,
    entity: Vec<Value>,
) -> Write {
    let recorded = now_instant();
    audit_write(audit_event(
        &ctx.access,
        &Summary {
            event,
            action: event.action(),
            outcome,
            description,
            recorded: &recorded,
        },
        Some(purpose),
        entity,
    ))
}

/// The AuditEvents of a bulk write (a municipal import's chunk or JSON form), to be appended to
/// the same commit: one per patient and action, listing that patient's written records, so the
/// trail is stored with the records and a guardian reading a child's trail sees no other family.
/// (`writes` records one AuditEvent per resource; an import writes hundreds of thousands.)
pub(crate) fn bulk_write_audit(
    state: &crate::state::AppState,
    access: &Access,
    writes: &[Write],
) -> Result<Vec<Write>, ApiError> {
    if state.config.audit.writes == WriteAudit::Off {
        return Ok(Vec::new());
    }
    let mut groups: BTreeMap<(Option<PatientRef>, &str), Vec<Value>> = BTreeMap::new();
    for write in writes.iter().filter(|w| w.resource_type != "AuditEvent") {
        let (patient, action) = match &write.action {
            WriteAction::Put(resource) => (patient_of(resource), "U"),
            WriteAction::Delete => match state.store.read(&write.resource_type, &write.id)? {
                Some(current) if !current.is_deleted() => (patient_of(&body_of(&current)?), "D"),
                _ => (None, "D"),
            },
        };
        groups.entry((patient, action)).or_default().push(json!({
            "what": {"reference": format!("{}/{}", write.resource_type, write.id)},
            "type": coding(ENTITY_TYPE, "2", "System Object"),
            "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
        }));
    }
    let recorded = now_instant();
    Ok(groups
        .into_iter()
        .map(|((patient, action), records)| {
            let count = records.len();
            let mut entity: Vec<Value> = patient.iter().map(patient_entity).collect();
            entity.extend(records);
            let interaction = if action == "D" { "delete" } else { "update" };
            audit_write(audit_event(
                access,
                &Summary {
                    event: Event::Rest(interaction),
                    action,
                    outcome: "0",
                    description: format!("municipal import: {interaction} {count} records"),
                    recorded: &recorded,
                },
                None,
                entity,
            ))
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// The policy data.

/// The consent policy: the embedded profiles/jp/consent files followed by the `*.json` files of
/// `{extra_dir}/consent/`, in name order. Errors name the file.
pub fn load_policy(extra_dir: Option<&Path>) -> Result<Policy, String> {
    let files = extra_files(extra_dir)?;
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    Policy::load(&borrowed).map_err(|e| e.to_string())
}

fn extra_files(extra_dir: Option<&Path>) -> Result<Vec<(String, String)>, String> {
    match consent_dir(extra_dir) {
        Some(dir) => crate::domain::read_folder(&dir).map_err(|e| e.to_string()),
        None => Ok(Vec::new()),
    }
}

fn consent_dir(extra_dir: Option<&Path>) -> Option<PathBuf> {
    extra_dir
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join("consent"))
        .filter(|d| d.is_dir())
}

/// The policy of this process's configuration. The embedded one is parsed once; with extra
/// files, once per data folder: like the embedded tables they live as long as the process (the
/// configuration, and so the folder, does not change while it runs).
pub(crate) fn policy(state: &crate::state::AppState) -> Result<&'static Policy, ApiError> {
    let embedded = || Policy::embedded().map_err(|e| ApiError::internal(e.to_string()));
    let Some(dir) = state
        .config
        .profiles
        .extra_dir
        .as_deref()
        .filter(|d| !d.as_os_str().is_empty())
    else {
        return embedded();
    };
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, &'static Policy>>> = OnceLock::new();
    let mut loaded = LOADED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(policy) = loaded.get(dir) {
        return Ok(policy);
    }
    let policy: &'static Policy = if consent_dir(Some(dir)).is_some() {
        Box::leak(Box::new(
            load_policy(Some(dir)).map_err(ApiError::internal)?,
        ))
    } else {
        embedded()?
    };
    loaded.insert(dir.to_owned(), policy);
    Ok(policy)
}

// ---------------------------------------------------------------------------------------------
// Who is asking, and why.

/// The caller whose disclosures are consent-checked, with the kind of recipient it is: an
/// authenticated client acting for an organisation. A parent (or a patient-context app) acts
/// for the data subject, and the gateway itself is not a recipient; neither is checked. Nor is
/// an operator client: it is no recipient, and the access check already refuses it every type
/// that can hold patient data (`Access::permit`), so nothing is left to decide.
fn consent_checked<'c>(ctx: &'c Ctx<'_>) -> Option<(&'c Caller, RecipientKind)> {
    if !ctx.state.config.consent.enforce {
        return None;
    }
    let caller = ctx.access.caller()?;
    let for_the_subject = caller.claims.patient.is_some()
        || caller
            .claims
            .fhir_user
            .as_deref()
            .is_some_and(|u| u.contains("RelatedPerson/") || u.contains("Patient/"));
    if for_the_subject {
        return None;
    }
    Some((caller, recipient_kind(caller.kind)?))
}

/// The purpose of use: the kind's configured default, or the `X-Purpose-Of-Use` header when
/// the configuration allows that purpose for the kind.
fn purpose_of(ctx: &Ctx<'_>, caller: &Caller) -> Result<Purpose, ApiError> {
    let purposes = ctx
        .state
        .config
        .consent
        .purposes_of(caller.kind)
        .ok_or_else(|| {
            ApiError::internal(format!(
                "a {} client has no purpose of use",
                kind_code(caller.kind)
            ))
        })?;
    let code = match ctx.purpose_of_use.as_deref().map(str::trim) {
        None | Some("") => purposes.default.as_str(),
        Some(asked) => {
            Purpose::new(asked)
                .map_err(|e| ApiError::bad_request(format!("X-Purpose-Of-Use: {e}")))?;
            if !purposes.allowed.iter().any(|a| a == asked) {
                return Err(ApiError::new(
                    ErrorKind::Forbidden,
                    format!(
                        "X-Purpose-Of-Use {asked} is not allowed for a {} client; allowed: {} (consent.purposes)",
                        kind_code(caller.kind),
                        purposes.allowed.join(", ")
                    ),
                ));
            }
            asked
        }
    };
    Purpose::new(code).map_err(|e| ApiError::internal(format!("consent.purposes: {e}")))
}

/// A client as a consent party: its kind, client id, and what its registration links it to —
/// the organisation codes, the Organization it acts for (`organization`) and the prefecture
/// whose 国保連 it is (`billing.kokuho_ren`), so that a record naming that Organization, code
/// or 国保連 names this client.
pub(crate) fn client_party(
    state: &crate::state::AppState,
    kind: RecipientKind,
    client_id: &str,
) -> Party {
    let mut party = Party::client(kind, client_id);
    if let Some(registered) = state.access.registry.get(client_id) {
        let client = &registered.client;
        if let Some(code) = &client.medical_institution_code {
            party = party.with_identifier(Identifier::medical_institution(code));
        }
        if let Some(code) = &client.municipality_code {
            party = party.with_identifier(Identifier::municipality(code));
        }
        party.organization = client.organization.clone();
        if let Some(prefecture) = state.config.billing.kokuho_ren_of(client_id) {
            party = party.with_identifier(Identifier::new(billing::KOKUHO_REN_SYSTEM, prefecture));
        }
    }
    party
}

/// The kind of recipient a client is to the consent engine; an operator is none.
fn recipient_kind(kind: auth::ClientKind) -> Option<RecipientKind> {
    Some(match kind {
        auth::ClientKind::ClinicEmr => RecipientKind::ClinicEmr,
        auth::ClientKind::MedicalAssociation => RecipientKind::MedicalAssociation,
        auth::ClientKind::Municipality => RecipientKind::Municipality,
        auth::ClientKind::PhrApp => RecipientKind::PhrApp,
        auth::ClientKind::PortalAdapter => RecipientKind::PortalAdapter,
        auth::ClientKind::ResearchProject => RecipientKind::ResearchProject,
        auth::ClientKind::Operator => return None,
    })
}

/// Who recorded the data, as far as the record says: a record a PHR app sent through the app
/// API (`meta.source` = the app's source URI, docs/phr-api.md) comes from that PHR vendor, so a
/// research consent must name it as custodian; an Immunization recorded by the vaccinating
/// provider (`primarySource` not false; 定期接種 is given by a medical institution) comes from
/// a clinic. A secondary report (a portal import, a transcribed handbook) has no known source,
/// so legal bases that need one do not apply to it.
pub(crate) fn source_of(resource: &Value) -> Option<Party> {
    // `get` twice rather than `pointer`: a pointer allocates each of its segments.
    if let Some(app) = resource
        .get("meta")
        .and_then(|meta| meta.get("source"))
        .and_then(Value::as_str)
        .and_then(|source| source.strip_prefix(phr::CLIENT_SOURCE_PREFIX))
    {
        let client_id = percent_encoding::percent_decode_str(app).decode_utf8_lossy();
        return Some(Party::client(RecipientKind::PhrApp, &client_id));
    }
    let recorded_by_provider = resource.get("resourceType").and_then(Value::as_str)
        == Some("Immunization")
        && resource.get("primarySource").and_then(Value::as_bool) != Some(false);
    recorded_by_provider.then(|| Party {
        kind: RecipientKind::ClinicEmr,
        client_id: None,
        identifiers: Vec::new(),
        organization: None,
    })
}

/// The patient a record is about: a Patient itself, or its `patient` / `subject` /
/// `beneficiary` reference to a Patient (the elements the consent engine checks), or a Task's
/// `for` (a delivery Task names the patient whose record it carries).
fn patient_of(resource: &Value) -> Option<PatientRef> {
    if resource.get("resourceType").and_then(Value::as_str) == Some("Patient") {
        return resource
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| PatientRef::parse(&format!("Patient/{id}")).ok());
    }
    ["patient", "subject", "beneficiary", "for"]
        .iter()
        .find_map(|element| {
            let reference = resource.get(*element)?.get("reference")?.as_str()?;
            reference
                .contains("Patient/")
                .then(|| PatientRef::parse(reference).ok())
                .flatten()
        })
}

fn is_privacy_consent(resource: &Value) -> bool {
    resource
        .pointer("/scope/coding")
        .and_then(Value::as_array)
        .is_some_and(|codings| {
            codings.iter().any(|c| {
                c.get("system").and_then(Value::as_str) == Some(consent::SCOPE_SYSTEM)
                    && c.get("code").and_then(Value::as_str) == Some("patient-privacy")
            })
        })
}

/// A Consent Musubi enforces (active, patient-privacy) must parse, and a guardian who consented
/// must, when stored, be a RelatedPerson of the patient.
fn check_consent(ctx: &Ctx<'_>, resource: &Value) -> Result<(), ApiError> {
    let active = resource.get("status").and_then(Value::as_str) == Some("active");
    if !active || !is_privacy_consent(resource) {
        return Ok(());
    }
    let policy = policy(ctx.state)?;
    let refuse = |e: consent::ConsentError| {
        let mut issue = e.to_issue();
        issue.diagnostics = format!(
            "Musubi cannot enforce this Consent, so it is not stored (docs/consent.md, Encoding): {}",
            issue.diagnostics
        );
        ApiError::unprocessable(&[issue])
    };
    let record = ConsentRecord::parse(policy, resource).map_err(refuse)?;
    if let Grantor::Guardian(reference) = &record.grantor
        && let Some(id) = reference.strip_prefix("RelatedPerson/")
        && let Some(stored) = ctx.state.store.read("RelatedPerson", id)?
        && !stored.is_deleted()
    {
        record.check_guardian(&body_of(&stored)?).map_err(refuse)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Deciding.

/// What the caller gets of one record.
enum Shown {
    AsIs,
    Redacted(Value),
    Withheld,
}

struct Decided {
    shown: Shown,
    /// The decision to audit; none when nothing personal was at stake (exempt or unprotected
    /// types).
    record: Option<Logged>,
}

/// One decision as the audit trail records it.
#[derive(Debug, Clone)]
struct Verdict {
    outcome: Outcome,
    reason: String,
    explanation: String,
    consents: Vec<String>,
    provision: Option<String>,
    legal_basis: Option<String>,
    data_class: Option<String>,
}

impl From<consent::Decision> for Verdict {
    fn from(d: consent::Decision) -> Self {
        Verdict {
            outcome: d.outcome,
            reason: d.reason.as_str().to_owned(),
            explanation: d.explanation,
            consents: d.consents_used,
            provision: d.provision,
            legal_basis: d.legal_basis,
            data_class: d.data_class.map(|c| c.as_str().to_owned()),
        }
    }
}

#[derive(Debug, Clone)]
struct Logged {
    patient: Option<PatientRef>,
    /// `{type}/{id}/_history/{version}`.
    what: String,
    verdict: Verdict,
    disclosed: bool,
}

/// The patient's consents and home municipality, read once per request.
/// What a consent decision about one patient needs from the store, read at decision time (so a
/// revocation counts at once): at reads here and at delivery time in the outbox.
pub(crate) struct Facts {
    pub(crate) consents: Vec<ConsentRecord>,
    /// Active privacy consents that do not parse (stored before a policy change, or written
    /// around the gateway): their patient's records are withheld (fail closed).
    pub(crate) unreadable: Vec<String>,
    /// The patient's home municipality code.
    pub(crate) home: Option<String>,
}

/// Consent facts of recently decided patients, each with the store's Consent and Patient write
/// generations taken before it was read. A hit needs both generations unchanged, so any write of
/// a Consent or Patient through this process's store (a revocation, a move to another
/// municipality) sends the next request back to the store. Saves a Consent search, a Patient read
/// and the consents' parsing per consent-checked request.
#[derive(Default)]
pub struct FactsCache(Mutex<HashMap<PatientRef, (Generations, Arc<Facts>)>>);

/// The store's write generations of Consent and Patient, in that order.
type Generations = (u64, u64);

/// Patients whose facts are kept; the cache starts over when it is full.
const FACTS_CACHE_ENTRIES: usize = 10_000;

fn cached_consent_facts(
    state: &crate::state::AppState,
    policy: &Policy,
    patient: &PatientRef,
) -> Result<Arc<Facts>, ApiError> {
    // Generations before the data: facts read after them are at least that new.
    let generation = (
        state.store.write_generation("Consent"),
        state.store.write_generation("Patient"),
    );
    let cache = &state.consent_facts.0;
    if let Some((cached_at, facts)) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(patient)
        && *cached_at == generation
    {
        return Ok(facts.clone());
    }
    let facts = Arc::new(consent_facts(state, policy, patient)?);
    let mut cached = cache.lock().unwrap_or_else(|p| p.into_inner());
    if cached.len() >= FACTS_CACHE_ENTRIES {
        cached.clear();
    }
    cached.insert(patient.clone(), (generation, facts.clone()));
    Ok(facts)
}

/// The decisions of one request.
struct Enforcer<'c, 's> {
    ctx: &'c Ctx<'s>,
    policy: &'static Policy,
    recipient: Party,
    purpose: Purpose,
    now: OffsetDateTime,
    facts: HashMap<PatientRef, Arc<Facts>>,
    log: Vec<Logged>,
}

impl<'c, 's> Enforcer<'c, 's> {
    fn for_ctx(ctx: &'c Ctx<'s>) -> Result<Option<Enforcer<'c, 's>>, ApiError> {
        let Some((caller, kind)) = consent_checked(ctx) else {
            return Ok(None);
        };
        Ok(Some(Enforcer {
            ctx,
            policy: policy(ctx.state)?,
            recipient: client_party(ctx.state, kind, &caller.client_id),
            purpose: purpose_of(ctx, caller)?,
            now: OffsetDateTime::now_utc(),
            facts: HashMap::new(),
            log: Vec::new(),
        }))
    }

    fn exempt(&self, resource_type: &str) -> bool {
        self.ctx
            .state
            .config
            .consent
            .exempt_types
            .iter()
            .any(|t| t == resource_type)
    }

    /// Whether records of this type are decided at all (not exempt, not definitional).
    fn decides_type(&self, resource_type: &str) -> bool {
        !self.exempt(resource_type)
            && self
                .policy
                .classify(&json!({"resourceType": resource_type}))
                != Classification::Unprotected
    }

    /// Decides a stored version from the members of it that a decision reads
    /// ([`decision_view`]), without parsing the rest.
    fn decide_stored(&mut self, version: &StoredVersion) -> Result<Decided, ApiError> {
        let view = decision_view(self.policy, version)?;
        self.decide(version, &view)
    }

    /// Decides `version`, whose content is `resource`: the whole record or its
    /// [`decision_view`].
    fn decide(&mut self, version: &StoredVersion, resource: &Value) -> Result<Decided, ApiError> {
        let rt = version.resource_type.as_str();
        if self.exempt(rt) {
            return Ok(Decided {
                shown: Shown::AsIs,
                record: None,
            });
        }
        let classification = self.policy.classify(resource);
        if classification == Classification::Unprotected {
            return Ok(Decided {
                shown: Shown::AsIs,
                record: None,
            });
        }
        let patient = patient_of(resource);
        let addressee = (rt == "Task")
            .then(|| crate::outbox::delivery_recipient(resource))
            .flatten();
        let verdict = match (addressee, &classification, &patient) {
            (Some(addressee), _, _) => self.by_addressee(addressee),
            (None, Classification::Class(_), Some(patient)) => {
                self.by_consent(patient, resource)?
            }
            // A record about many people (a claim batch): only a legal basis can permit it.
            (None, Classification::Class(_), None) => consent::decide_without_subject(
                self.policy,
                &self.recipient,
                source_of(resource).as_ref(),
                &self.purpose,
                resource,
            )
            .map_or_else(
                || {
                    self.fallback(
                        "no-data-subject",
                        "the record names no patient, so no consent can be about it",
                    )
                },
                Verdict::from,
            ),
            _ => self.fallback(
                ReasonCode::UnclassifiedData.as_str(),
                "no data-class rule matches the record, so no consent can name it",
            ),
        };
        let shown = match verdict.outcome {
            Outcome::Permit => Shown::AsIs,
            Outcome::Deny => Shown::Withheld,
            // The whole record: `resource` may hold only the members the decision reads.
            Outcome::Redact(_) => {
                match consent::redact_identity_only(self.policy, &body_of(version)?) {
                    Ok(redacted) => Shown::Redacted(redacted),
                    Err(_) => Shown::Withheld,
                }
            }
        };
        Ok(Decided {
            shown,
            record: Some(Logged {
                patient,
                what: format!("{rt}/{}/_history/{}", version.id, version.version),
                verdict,
                disclosed: false,
            }),
        })
    }

    /// A delivery Task of the outbox names a patient, the record it carries and the party it
    /// goes to: it is shown to that party only (the record itself was decided when it was
    /// delivered), never to another organisation.
    fn by_addressee(&self, addressee: &str) -> Verdict {
        let own = self.recipient.client_id.as_deref() == Some(addressee)
            || self.recipient.organization.as_deref() == Some(addressee);
        let (outcome, reason, explanation) = if own {
            (
                Outcome::Permit,
                "delivery-addressee",
                "the delivery Task is addressed to the caller",
            )
        } else {
            (
                Outcome::Deny,
                "not-the-addressee",
                "the delivery Task is addressed to another party",
            )
        };
        Verdict {
            outcome,
            reason: reason.to_owned(),
            explanation: explanation.to_owned(),
            consents: Vec::new(),
            provision: None,
            legal_basis: None,
            data_class: None,
        }
    }

    /// A record no consent can be about: the purpose's base policy decides, unless the
    /// configuration says to withhold such records.
    fn fallback(&self, reason: &str, why: &str) -> Verdict {
        let base = self.policy.purpose(&self.purpose).map(|r| r.base_policy);
        let permit = self.ctx.state.config.consent.fallback == ConsentFallback::BasePolicy
            && base == Some(BasePolicy::OptOut);
        let then = if permit {
            format!("the opt-out base policy of {} permits", self.purpose)
        } else {
            format!("withheld for {} (consent.fallback)", self.purpose)
        };
        Verdict {
            outcome: if permit {
                Outcome::Permit
            } else {
                Outcome::Deny
            },
            reason: reason.to_owned(),
            explanation: format!("{why}; {then}"),
            consents: Vec::new(),
            provision: None,
            legal_basis: None,
            data_class: None,
        }
    }

    fn by_consent(&mut self, patient: &PatientRef, resource: &Value) -> Result<Verdict, ApiError> {
        let source = source_of(resource);
        self.facts_of(patient)?;
        let facts = &self.facts[patient];
        let request = Request {
            recipient: &self.recipient,
            source: source.as_ref(),
            purpose: &self.purpose,
            patient,
            home_municipality: facts.home.as_deref(),
            data: Data::Resource(resource),
        };
        let decision = consent::decide(self.policy, &request, &facts.consents, self.now);
        let overridden_by_law = decision.reason == ReasonCode::LegalBasis;
        let mut verdict = Verdict::from(decision);
        if !facts.unreadable.is_empty() && !overridden_by_law {
            verdict = Verdict {
                outcome: Outcome::Deny,
                reason: "consent-unreadable".to_owned(),
                explanation: format!(
                    "an active consent of {patient} cannot be read, so nothing but what the law requires is disclosed"
                ),
                consents: facts.unreadable.clone(),
                provision: None,
                legal_basis: None,
                data_class: verdict.data_class,
            };
        }
        Ok(verdict)
    }

    /// The patient's consents and home municipality, read once per request.
    fn facts_of(&mut self, patient: &PatientRef) -> Result<&Facts, ApiError> {
        if !self.facts.contains_key(patient) {
            let facts = cached_consent_facts(self.ctx.state, self.policy, patient)?;
            self.facts.insert(patient.clone(), facts);
        }
        Ok(&self.facts[patient])
    }

    fn note(&mut self, record: Option<Logged>, disclosed: bool) {
        if let Some(mut record) = record {
            record.disclosed = disclosed;
            self.log.push(record);
        }
    }

    /// One AuditEvent per patient (so a guardian reading their child's trail learns nothing
    /// about anyone else), committed before the response leaves.
    async fn commit(self, event: Event<'_>) -> Result<(), ApiError> {
        if self.log.is_empty() || self.ctx.state.config.audit.reads == ReadAudit::Off {
            return Ok(());
        }
        let mut by_patient: BTreeMap<Option<PatientRef>, Vec<&Logged>> = BTreeMap::new();
        for logged in &self.log {
            by_patient
                .entry(logged.patient.clone())
                .or_default()
                .push(logged);
        }
        let recorded = now_instant();
        let writes: Vec<Write> = by_patient
            .into_iter()
            .map(|(patient, entries)| {
                let disclosed = entries.iter().filter(|e| e.disclosed).count();
                let withheld = entries.len() - disclosed;
                let summary = Summary {
                    event,
                    action: event.action(),
                    // A request that disclosed nothing was refused: a minor failure.
                    outcome: if disclosed > 0 { "0" } else { "4" },
                    description: format!("disclosed {disclosed}, withheld {withheld}"),
                    recorded: &recorded,
                };
                audit_write(audit_event(
                    &self.ctx.access,
                    &summary,
                    Some(&self.purpose),
                    read_entities(patient.as_ref(), &entries),
                ))
            })
            .collect();
        self.ctx.state.store.commit(writes).await?;
        Ok(())
    }
}

pub(crate) fn consent_facts(
    state: &crate::state::AppState,
    policy: &Policy,
    patient: &PatientRef,
) -> Result<Facts, ApiError> {
    let params = vec![
        ("patient".to_owned(), patient.as_str().to_owned()),
        ("status".to_owned(), "active".to_owned()),
    ];
    let query = search::parse_query(search::Registry::r4(), "Consent", &params, true)?;
    let page = state.store.search(&SearchRequest {
        resource_type: "Consent",
        query: &query,
        offset: 0,
        count: MAX_CONSENTS,
        need_total: false,
    })?;
    let mut consents = Vec::new();
    let mut unreadable = Vec::new();
    for version in &page.matches {
        let resource = body_of(version)?;
        if !is_privacy_consent(&resource) {
            continue;
        }
        match ConsentRecord::parse(policy, &resource) {
            Ok(record) => consents.push(record),
            Err(error) => {
                tracing::warn!(consent = %version.id, %error, "an active Consent cannot be enforced; its patient's records are withheld");
                unreadable.push(format!(
                    "Consent/{}/_history/{}",
                    version.id, version.version
                ));
            }
        }
    }
    if page.has_more {
        unreadable.push(format!(
            "more than {MAX_CONSENTS} active consents of {patient}"
        ));
    }
    let id = patient.as_str().trim_start_matches("Patient/");
    let home = match state.store.read("Patient", id)? {
        Some(stored) if !stored.is_deleted() => {
            mappers::immunization::home_municipality(&body_of(&stored)?)
        }
        _ => None,
    };
    Ok(Facts {
        consents,
        unreadable,
        home,
    })
}

// ---------------------------------------------------------------------------------------------
// Stored versions.

fn body_of(version: &StoredVersion) -> Result<Value, ApiError> {
    serde_json::from_slice(&version.body)
        .map_err(|e| ApiError::internal(format!("stored resource unreadable: {e}")))
}

/// Top-level members the gateway's own checks read in a decision ([`patient_of`],
/// [`source_of`] and a delivery Task's addressee, [`crate::outbox::delivery_recipient`])
/// besides those every policy reads ([`consent::MEMBERS_ALWAYS_READ`]: the type, id, `meta` and
/// the patient references, which these checks read too).
const GATEWAY_MEMBERS_READ: [&str; 4] = ["for", "primarySource", "identifier", "input"];

/// The stored record cut down to the top-level members its consent decision reads: those the
/// policy reads ([`Policy::members_read`]) and the gateway's ([`GATEWAY_MEMBERS_READ`]). The
/// other members (most of a clinical record's bytes) are skipped, not built into a tree; the
/// decision is the same as on the whole record (tests below and in the consent crate).
fn decision_view(policy: &Policy, version: &StoredVersion) -> Result<Value, ApiError> {
    use serde::de::DeserializeSeed as _;
    let mut parser = serde_json::Deserializer::from_slice(&version.body);
    let view = DecisionMembers { policy }
        .deserialize(&mut parser)
        .and_then(|view| parser.end().map(|()| view))
        .map_err(|e| ApiError::internal(format!("stored resource unreadable: {e}")))?;
    Ok(Value::Object(view))
}

/// Parses a JSON object keeping only the members a decision under `policy` reads.
struct DecisionMembers<'p> {
    policy: &'p Policy,
}

impl DecisionMembers<'_> {
    fn reads(&self, name: &str) -> bool {
        GATEWAY_MEMBERS_READ.contains(&name) || self.policy.members_read().contains(name)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for DecisionMembers<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, parser: D) -> Result<Self::Value, D::Error> {
        parser.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DecisionMembers<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a resource (a JSON object)")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut members: A,
    ) -> Result<Self::Value, A::Error> {
        let mut kept = Map::new();
        while let Some(name) = members.next_key::<MemberName<'de>>()? {
            if self.reads(name.as_str()) {
                kept.insert(name.into_owned(), members.next_value()?);
            } else {
                members.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(kept)
    }
}

/// A member name, borrowed from the stored bytes unless it holds an escape.
enum MemberName<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl MemberName<'_> {
    fn as_str(&self) -> &str {
        match self {
            MemberName::Borrowed(name) => name,
            MemberName::Owned(name) => name,
        }
    }

    fn into_owned(self) -> String {
        match self {
            MemberName::Borrowed(name) => name.to_owned(),
            MemberName::Owned(name) => name,
        }
    }
}

impl<'de> serde::Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(parser: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> serde::de::Visitor<'de> for NameVisitor {
            type Value = MemberName<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
                Ok(MemberName::Borrowed(name))
            }

            fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
                Ok(MemberName::Owned(name.to_owned()))
            }
        }
        parser.deserialize_str(NameVisitor)
    }
}

fn with_body(version: &StoredVersion, body: &Value) -> StoredVersion {
    StoredVersion {
        body: bytes::Bytes::from(body.to_string()),
        ..version.clone()
    }
}

/// The newest version with content before a deletion.
fn live_before(ctx: &Ctx<'_>, deleted: &StoredVersion) -> Result<Option<StoredVersion>, ApiError> {
    let mut number = deleted.version;
    while number > 1 {
        number -= 1;
        if let Some(version) = ctx
            .state
            .store
            .vread(&deleted.resource_type, &deleted.id, number)?
            && !version.is_deleted()
        {
            return Ok(Some(version));
        }
    }
    Ok(None)
}

/// Includes of exactly the page's matches: the same search by `_id`, with the includes.
fn includes_of(
    ctx: &Ctx<'_>,
    resource_type: &str,
    query: &search::Query,
    matches: &[StoredVersion],
) -> Result<Vec<StoredVersion>, ApiError> {
    let ids: Vec<&str> = matches.iter().map(|v| v.id.as_str()).collect();
    let mut by_id = search::parse_query(
        search::Registry::r4(),
        resource_type,
        &[("_id".to_owned(), ids.join(","))],
        true,
    )?;
    by_id.control.include = query.control.include.clone();
    by_id.control.revinclude = query.control.revinclude.clone();
    Ok(ctx
        .state
        .store
        .search(&SearchRequest {
            resource_type,
            query: &by_id,
            offset: 0,
            count: matches.len(),
            need_total: false,
        })?
        .included)
}

// ---------------------------------------------------------------------------------------------
// AuditEvent (R4), encoded as docs/consent.md describes.

/// What an AuditEvent records.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event<'a> {
    /// A FHIR RESTful interaction or operation, by its restful-interaction code: read, vread,
    /// search-type, history-instance, operation, create, …
    Rest(&'a str),
    /// Records leaving in bulk (a municipal or research export): DICOM `110106` Export.
    Export,
}

impl Event<'_> {
    /// The action of a disclosure: a search or an operation executes (BALP), anything else reads.
    fn action(self) -> &'static str {
        match self {
            Event::Rest(code) if code.starts_with("search") || code == "operation" => "E",
            _ => "R",
        }
    }
}

struct Summary<'a> {
    event: Event<'a>,
    /// R, C, U, D or E.
    action: &'a str,
    /// 0 success, 4 minor failure (everything asked for was withheld).
    outcome: &'a str,
    description: String,
    recorded: &'a str,
}

fn now_instant() -> String {
    store::format_instant((OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

/// A JSON object with these members in this order. The trail builds a dozen objects per
/// audited read; `json!` would copy every `Value` placed inside it once more (it converts
/// each interpolated expression with `serde_json::to_value`).
fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    let mut map = Map::with_capacity(N);
    for (name, value) in members {
        map.insert(name.to_owned(), value);
    }
    Value::Object(map)
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    object([
        ("system", system.into()),
        ("code", code.into()),
        ("display", display.into()),
    ])
}

/// A CodeableConcept of one coding without a display.
fn concept(system: &str, code: &str) -> Value {
    let coding = object([("system", system.into()), ("code", code.into())]);
    object([("coding", Value::Array(vec![coding]))])
}

/// `purposeOfEvent` / `agent.purposeOfUse`: the purpose as a one-concept list.
fn purpose_of_use(purpose: &Purpose) -> Value {
    Value::Array(vec![concept(consent::PURPOSE_SYSTEM, purpose.as_str())])
}

fn audit_write(event: Value) -> Write {
    let id = event["id"].as_str().unwrap_or_default().to_owned();
    Write {
        resource_type: "AuditEvent".to_owned(),
        id,
        // `audit_event` gave it a fresh UUID v4.
        precondition: Precondition::NewId,
        action: WriteAction::Put(event),
    }
}

fn audit_event(
    access: &Access,
    summary: &Summary<'_>,
    purpose: Option<&Purpose>,
    entity: Vec<Value>,
) -> Value {
    let mut event = Map::with_capacity(12);
    let mut member = |name: &str, value: Value| event.insert(name.to_owned(), value);
    member("resourceType", "AuditEvent".into());
    member("id", uuid::Uuid::new_v4().to_string().into());
    member("action", summary.action.into());
    member("recorded", summary.recorded.into());
    member("outcome", summary.outcome.into());
    member("outcomeDesc", summary.description.as_str().into());
    match summary.event {
        Event::Rest(code) => {
            member(
                "type",
                coding(AUDIT_EVENT_TYPE, "rest", "RESTful Operation"),
            );
            member(
                "subtype",
                Value::Array(vec![coding(RESTFUL_INTERACTION, code, code)]),
            );
        }
        Event::Export => {
            member("type", coding(DICOM, "110106", "Export"));
        }
    }
    if let Some(purpose) = purpose {
        member("purposeOfEvent", purpose_of_use(purpose));
    }
    member("agent", Value::Array(agents(access, purpose)));
    member(
        "source",
        object([
            ("site", "Musubi".into()),
            ("observer", object([("display", "Musubi".into())])),
            (
                "type",
                Value::Array(vec![coding(SOURCE_TYPE, "4", "Application Server")]),
            ),
        ]),
    );
    member("entity", Value::Array(entity));
    Value::Object(event)
}

/// The requestor first: a signed-in person (their FHIR identity) with the app as a second
/// agent, or the client itself with its kind.
fn agents(access: &Access, purpose: Option<&Purpose>) -> Vec<Value> {
    let client_agent = |id: &str, kind: Option<&str>, requestor: bool| {
        let identifier = object([
            ("system", consent::CLIENT_ID_SYSTEM.into()),
            ("value", id.into()),
        ]);
        let mut agent = Map::with_capacity(4);
        agent.insert(
            "who".to_owned(),
            object([("identifier", identifier), ("display", id.into())]),
        );
        agent.insert("requestor".to_owned(), requestor.into());
        if let Some(kind) = kind {
            agent.insert(
                "type".to_owned(),
                concept(consent::RECIPIENT_KIND_SYSTEM, kind),
            );
        }
        Value::Object(agent)
    };
    let mut agents = match access {
        Access::Caller(caller) => {
            // An operator is no recipient kind, so its agent has no type.
            let kind = recipient_kind(caller.kind).map(RecipientKind::code);
            match &caller.claims.fhir_user {
                Some(user) => vec![
                    object([
                        ("who", object([("reference", user.as_str().into())])),
                        ("requestor", true.into()),
                    ]),
                    client_agent(&caller.client_id, kind, false),
                ],
                None => vec![client_agent(&caller.client_id, kind, true)],
            }
        }
        Access::Internal | Access::Nobody => vec![client_agent(access.client_id(), None, true)],
    };
    if let (Some(purpose), Some(Value::Object(first))) = (purpose, agents.first_mut()) {
        first.insert("purposeOfUse".to_owned(), purpose_of_use(purpose));
    }
    agents
}

fn patient_entity(patient: &PatientRef) -> Value {
    object([
        ("what", object([("reference", patient.as_str().into())])),
        ("type", coding(ENTITY_TYPE, "1", "Person")),
        ("role", coding(OBJECT_ROLE, "1", "Patient")),
    ])
}

/// An entity for one record (`Type/id`, with `/_history/n` when decided by version).
fn record_entity(reference: String, detail: Option<Vec<Value>>) -> Value {
    let mut entity = Map::with_capacity(4);
    entity.insert("what".to_owned(), object([("reference", reference.into())]));
    entity.insert("type".to_owned(), coding(ENTITY_TYPE, "2", "System Object"));
    entity.insert(
        "role".to_owned(),
        coding(OBJECT_ROLE, "4", "Domain Resource"),
    );
    if let Some(detail) = detail {
        entity.insert("detail".to_owned(), Value::Array(detail));
    }
    Value::Object(entity)
}

/// One `entity.detail`: a named string value.
fn detail(name: &str, value: &str) -> Value {
    object([("type", name.into()), ("valueString", value.into())])
}

/// The patient, each decided record with its decision in `entity.detail`, and each consent
/// used (so `AuditEvent?entity=Consent/{id}` finds the disclosures a consent allowed).
fn read_entities(patient: Option<&PatientRef>, entries: &[&Logged]) -> Vec<Value> {
    let mut entity: Vec<Value> = patient.into_iter().map(patient_entity).collect();
    let mut cited = BTreeSet::new();
    for logged in entries {
        let v = &logged.verdict;
        let decision = match v.outcome {
            Outcome::Permit => "permit",
            Outcome::Deny => "deny",
            Outcome::Redact(_) => "identity-only",
        };
        let disclosed = if logged.disclosed { "true" } else { "false" };
        let mut details = vec![
            detail("decision", decision),
            detail("disclosed", disclosed),
            detail("reason", &v.reason),
            detail("explanation", &v.explanation),
        ];
        for consent in &v.consents {
            details.push(detail("consent", consent));
            cited.insert(consent.as_str());
        }
        for (name, value) in [
            ("provision", &v.provision),
            ("legal-basis", &v.legal_basis),
            ("data-class", &v.data_class),
        ] {
            if let Some(value) = value {
                details.push(detail(name, value));
            }
        }
        entity.push(record_entity(logged.what.clone(), Some(details)));
    }
    for consent in cited.into_iter().filter(|c| c.starts_with("Consent/")) {
        entity.push(object([
            ("what", object([("reference", consent.into())])),
            ("type", coding(ENTITY_TYPE, "2", "System Object")),
            ("description", "consent used for the decisions above".into()),
        ]));
    }
    entity
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(outcome: Outcome, disclosed: bool) -> Logged {
        Logged {
            patient: PatientRef::parse("Patient/child-1").ok(),
            what: "Encounter/e1/_history/2".to_owned(),
            verdict: Verdict {
                outcome,
                reason: "consent-permit".to_owned(),
                explanation: "Consent/c1/_history/1 permits".to_owned(),
                consents: vec!["Consent/c1/_history/1".to_owned()],
                provision: Some("Consent.provision".to_owned()),
                legal_basis: None,
                data_class: Some("consultations".to_owned()),
            },
            disclosed,
        }
    }

    fn caller(kind: auth::ClientKind, fhir_user: Option<&str>) -> Access {
        let claims: auth::AccessClaims = serde_json::from_value(json!({
            "iss": "https://musubi.example", "sub": "demo-clinic", "aud": "https://musubi.example/fhir",
            "exp": 2_000_000_000, "iat": 1_700_000_000, "jti": "j1", "client_id": "demo-clinic",
            "scope": "system/Immunization.rs", "fhirUser": fhir_user,
        }))
        .unwrap();
        Access::Caller(Arc::new(Caller::new(kind, Arc::new(claims))))
    }

    /// The AuditEvents as stored, id aside: every form of agent, entity and event type.
    fn audit_event_bytes() -> Vec<String> {
        let entries = [
            logged(Outcome::Permit, true),
            logged(Outcome::Deny, false),
            {
                let mut redacted = logged(Outcome::Redact(consent::Redaction::IdentityOnly), true);
                redacted
                    .verdict
                    .consents
                    .push("legal-basis:予防接種法".to_owned());
                redacted.verdict.legal_basis = Some("予防接種法第5条 \"定期\"".to_owned());
                redacted
            },
        ];
        let refs: Vec<&Logged> = entries.iter().collect();
        let patient = PatientRef::parse("Patient/child-1").unwrap();
        let summary = |event, action, outcome| Summary {
            event,
            action,
            outcome,
            description: "disclosed 2, withheld 1".into(),
            recorded: "2025-05-01T00:00:00.000Z",
        };
        let purpose = Purpose::new("TREAT").ok();
        let events = [
            audit_event(
                &Access::Internal,
                &summary(Event::Rest("search-type"), "E", "0"),
                purpose.as_ref(),
                read_entities(Some(&patient), &refs),
            ),
            audit_event(
                &caller(auth::ClientKind::ClinicEmr, None),
                &summary(Event::Rest("read"), "R", "0"),
                purpose.as_ref(),
                read_entities(Some(&patient), &refs[..1]),
            ),
            audit_event(
                &caller(auth::ClientKind::PhrApp, Some("RelatedPerson/parent-1")),
                &summary(Event::Rest("read"), "R", "4"),
                purpose.as_ref(),
                read_entities(None, &refs[1..]),
            ),
            audit_event(
                &caller(auth::ClientKind::Operator, None),
                &summary(Event::Export, "E", "0"),
                None,
                vec![patient_entity(&patient)],
            ),
        ];
        events
            .into_iter()
            .map(|mut event| {
                assert_eq!(event["id"].as_str().map(str::len), Some(36));
                event["id"] = json!("id");
                serde_json::to_string(&event).unwrap()
            })
            .collect()
    }

    /// The stored JSON of an AuditEvent is part of the trail's contract (searches, exports,
    /// readers of old trails): building it differently must give the same bytes.
    #[test]
    fn audit_events_keep_their_stored_bytes() {
        let expected: Vec<&str> = include_str!("testdata/audit-events.ndjson")
            .lines()
            .collect();
        assert_eq!(audit_event_bytes(), expected);
        assert_eq!(
            serde_json::to_string(&record_entity("Immunization/i1".to_owned(), None)).unwrap(),
            r#"{"what":{"reference":"Immunization/i1"},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"2","display":"System Object"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"4","display":"Domain Resource"}}"#
        );
    }

    #[test]
    fn audit_events_are_valid_r4() {
        let entries = [logged(Outcome::Permit, true), logged(Outcome::Deny, false)];
        let refs: Vec<&Logged> = entries.iter().collect();
        let patient = PatientRef::parse("Patient/child-1").unwrap();
        let event = audit_event(
            &Access::Internal,
            &Summary {
                event: Event::Rest("search-type"),
                action: "E",
                outcome: "0",
                description: "disclosed 1, withheld 1".into(),
                recorded: "2025-05-01T00:00:00.000Z",
            },
            Purpose::new("PUBHLTH").ok().as_ref(),
            read_entities(Some(&patient), &refs),
        );
        let issues = fhir::validate::validate_resource(fhir::Definitions::r4(), &event);
        assert!(
            issues.iter().all(|i| !i.severity.is_error()),
            "{issues:?}\n{event:#}"
        );
        assert_eq!(event["entity"][0]["what"]["reference"], "Patient/child-1");
        assert_eq!(event["entity"][1]["detail"][0]["valueString"], "permit");
        assert_eq!(event["entity"][2]["detail"][1]["valueString"], "false");
        // The consent used is an entity of its own, cited once.
        assert_eq!(event["entity"].as_array().unwrap().len(), 4);
        assert_eq!(
            event["entity"][3]["what"]["reference"],
            "Consent/c1/_history/1"
        );
        assert_eq!(event["purposeOfEvent"][0]["coding"][0]["code"], "PUBHLTH");
        assert_eq!(event["agent"][0]["requestor"], true);
    }

    fn stored(body: &str) -> StoredVersion {
        let resource: Value = serde_json::from_str(body).unwrap();
        StoredVersion {
            resource_type: resource["resourceType"].as_str().unwrap().to_owned(),
            id: resource["id"].as_str().unwrap_or("x").to_owned(),
            version: 1,
            last_updated_ms: 0,
            method: store::Method::Create,
            content_hash: 0,
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn a_decision_view_decides_as_the_whole_record() {
        let policy = Policy::embedded().unwrap();
        let delivery = crate::outbox::DELIVERY_ID_SYSTEM;
        let bodies = [
            // The bench's Immunization as stored: most members are not read.
            r#"{"resourceType":"Immunization","id":"i1","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00Z"},"status":"completed","vaccineCode":{"coding":[{"system":"urn:oid:1.2.392.100495.20.1.73","code":"636140FG1020","display":"ゴービック水性懸濁注シリンジ"}]},"patient":{"reference":"Patient/bench-patient-0"},"occurrenceDateTime":"2024-06-03T10:30:00+09:00","primarySource":true,"lotNumber":"A123B","doseQuantity":{"value":0.50,"unit":"mL"},"fundingSource":{"coding":[{"system":"https://musubi.example.org/fhir/CodeSystem/funding-source","code":"routine"}]},"protocolApplied":[{"doseNumberPositiveInt":1}]}"#,
            r#"{"resourceType":"Immunization","id":"i2","status":"completed","patient":{"reference":"Patient/p1"},"primarySource":false,"meta":{"source":"urn:musubi:phr-app:boshi-techo-app"}}"#,
            r#"{"resourceType":"Patient","id":"p1","name":[{"family":"佐藤"}],"address":[{"city":"千代田区"}]}"#,
            r#"{"resourceType":"Observation","id":"o1","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":7.2}}"#,
            r#"{"resourceType":"Observation","id":"o2","meta":{"tag":[{"system":"https://musubi.example.org/fhir/CodeSystem/data-class","code":"checkups"}]},"subject":{"reference":"Patient/p1"}}"#,
            r#"{"resourceType":"QuestionnaireResponse","id":"q1","questionnaire":"https://musubi.example.org/fhir/Questionnaire/prevaccination-child|1.0.0","subject":{"reference":"Patient/p1"},"item":[{"linkId":"1"}]}"#,
            r#"{"resourceType":"Claim","id":"c1","identifier":[{"system":"https://musubi.example.org/fhir/IdSystem/claim-batch","value":"c1"}],"provider":{"reference":"Organization/ma-chiyoda"},"insurer":{"identifier":{"system":"https://musubi.example.org/fhir/IdSystem/municipality-code","value":"131016"}},"item":[]}"#,
            // A member name with an escape is parsed, not borrowed.
            r#"{"resourceType":"Encounter","id":"e1","sub\u006aect":{"reference":"Patient/p1"},"period":{"start":"2026-01-01"}}"#,
        ];
        let task = format!(
            r#"{{"resourceType":"Task","id":"t1","status":"requested","identifier":[{{"system":"{delivery}","value":"d1"}}],"for":{{"reference":"Patient/p1"}},"input":[{{"type":{{"coding":[{{"code":"recipient"}}]}},"valueString":"demo-municipality"}}],"note":[{{"text":"x"}}]}}"#
        );
        for body in bodies.into_iter().chain([task.as_str()]) {
            let version = stored(body);
            let whole = body_of(&version).unwrap();
            let view = decision_view(policy, &version).unwrap();
            let reads = DecisionMembers { policy };
            let expected: Map<String, Value> = whole
                .as_object()
                .unwrap()
                .iter()
                .filter(|(name, _)| reads.reads(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            assert_eq!(view, Value::Object(expected), "{body}");
            assert_eq!(policy.classify(&view), policy.classify(&whole), "{body}");
            assert_eq!(patient_of(&view), patient_of(&whole), "{body}");
            assert_eq!(source_of(&view), source_of(&whole), "{body}");
            assert_eq!(
                crate::outbox::delivery_recipient(&view),
                crate::outbox::delivery_recipient(&whole),
                "{body}"
            );
        }
        let bench = decision_view(policy, &stored(bodies[0])).unwrap();
        let kept: Vec<&str> = bench
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            kept,
            [
                "resourceType",
                "id",
                "meta",
                "patient",
                "primarySource",
                "fundingSource"
            ]
        );
    }

    #[test]
    fn the_patient_of_a_record() {
        let cases = [
            (
                json!({"resourceType": "Patient", "id": "p1"}),
                Some("Patient/p1"),
            ),
            (
                json!({"resourceType": "Immunization", "patient": {"reference": "Patient/p2"}}),
                Some("Patient/p2"),
            ),
            (
                json!({"resourceType": "Observation", "subject": {"reference": "http://x/fhir/Patient/p3/_history/2"}}),
                Some("Patient/p3"),
            ),
            (
                json!({"resourceType": "Claim", "patient": {"reference": "Patient/p4"}}),
                Some("Patient/p4"),
            ),
            (
                json!({"resourceType": "Encounter", "subject": {"identifier": {"value": "x"}}}),
                None,
            ),
            (
                json!({"resourceType": "Observation", "subject": {"reference": "Group/g1"}}),
                None,
            ),
            (json!({"resourceType": "Observation"}), None),
            (
                json!({"resourceType": "Coverage", "beneficiary": {"reference": "Patient/p5"}}),
                Some("Patient/p5"),
            ),
        ];
        for (resource, expected) in cases {
            let got = patient_of(&resource);
            assert_eq!(got.as_ref().map(PatientRef::as_str), expected, "{resource}");
        }
    }

    #[test]
    fn only_provider_recorded_immunizations_have_a_source() {
        let cases = [
            (json!({"resourceType": "Immunization"}), true),
            (
                json!({"resourceType": "Immunization", "primarySource": true}),
                true,
            ),
            (
                json!({"resourceType": "Immunization", "primarySource": false}),
                false,
            ),
            (json!({"resourceType": "Encounter"}), false),
        ];
        for (resource, expected) in cases {
            let source = source_of(&resource);
            assert_eq!(source.is_some(), expected, "{resource}");
            if let Some(source) = source {
                assert_eq!(source.kind, RecipientKind::ClinicEmr);
            }
        }
    }

    #[test]
    fn a_record_an_app_sent_comes_from_that_vendor() {
        let resource = json!({"resourceType": "Immunization",
            "meta": {"source": format!("{}phr%20app.1", phr::CLIENT_SOURCE_PREFIX)}});
        let source = source_of(&resource).expect("a PHR vendor");
        assert_eq!(source.kind, RecipientKind::PhrApp);
        assert_eq!(source.client_id.as_deref(), Some("phr app.1"));
    }

    #[test]
    fn an_export_is_recorded_as_dicom_export_and_stays_valid_r4() {
        let event = audit_event(
            &Access::Internal,
            &Summary {
                event: Event::Export,
                action: Event::Export.action(),
                outcome: "0",
                description: "research export".into(),
                recorded: "2025-05-01T00:00:00.000Z",
            },
            Purpose::new("HRESCH").ok().as_ref(),
            vec![
                json!({"what": {"identifier": {"system": consent::RESEARCH_PROJECT_SYSTEM, "value": "p1"}},
                        "detail": [{"type": "persons-exported", "valueString": "1"}]}),
            ],
        );
        let issues = fhir::validate::validate_resource(fhir::Definitions::r4(), &event);
        assert!(
            issues.iter().all(|i| !i.severity.is_error()),
            "{issues:?}\n{event:#}"
        );
        assert_eq!(event["type"]["code"], "110106");
        assert!(event.get("subtype").is_none());
        assert_eq!(event["action"], "R");
        assert_eq!(Event::Rest("operation").action(), "E");
        assert_eq!(Event::Rest("read").action(), "R");
    }

    #[test]
    fn privacy_consents_are_recognised_by_scope() {
        let privacy = json!({"scope": {"coding": [{"system": consent::SCOPE_SYSTEM, "code": "patient-privacy"}]}});
        let treatment =
            json!({"scope": {"coding": [{"system": consent::SCOPE_SYSTEM, "code": "treatment"}]}});
        assert!(is_privacy_consent(&privacy));
        assert!(!is_privacy_consent(&treatment));
        assert!(!is_privacy_consent(&json!({})));
    }

    #[test]
    fn extra_consent_files_are_read_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            load_policy(Some(dir.path())).is_ok(),
            "no consent folder: embedded only"
        );
        std::fs::create_dir(dir.path().join("consent")).unwrap();
        std::fs::write(dir.path().join("consent/b.json"), "{not json").unwrap();
        let error = load_policy(Some(dir.path())).unwrap_err();
        assert!(error.contains("b.json"), "{error}");
    }
}
