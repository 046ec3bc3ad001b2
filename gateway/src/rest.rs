//! The FHIR RESTful interactions (R4 section 3.1.0), independent of the HTTP framework so that
//! the HTTP handlers and Bundle entries (batch/transaction) run the very same code.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use store::{
    Committed, HistoryScope, Precondition, SearchRequest, StoredVersion, Write, WriteAction,
    WriteOutcome,
};

use auth::Interaction;

use crate::config::{Handling, OnViolation};
use crate::domain::Pending;
use crate::error::{ApiError, ErrorKind, IssueDetail, informational_outcome, operation_outcome};
use crate::format::bytes_body::Body;
use crate::state::AppState;

/// `Prefer: return=...` (R4 3.1.0.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

/// What the client prefers, from the `Prefer` header.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prefer {
    pub return_: Return,
    pub handling: Option<Handling>,
}

impl Prefer {
    pub fn parse(header: Option<&str>) -> Prefer {
        let mut prefer = Prefer::default();
        for part in header.unwrap_or("").split([',', ';']) {
            match part.trim().replace(' ', "").as_str() {
                "return=minimal" => prefer.return_ = Return::Minimal,
                "return=representation" => prefer.return_ = Return::Representation,
                "return=OperationOutcome" => prefer.return_ = Return::OperationOutcome,
                "handling=strict" => prefer.handling = Some(Handling::Strict),
                "handling=lenient" => prefer.handling = Some(Handling::Lenient),
                _ => {}
            }
        }
        prefer
    }
}

/// Everything an interaction needs to know about its request context.
pub struct Ctx<'a> {
    pub state: &'a AppState,
    /// `http://host/fhir`, no trailing slash: see [`Ctx::base`].
    pub base: std::cell::OnceCell<String>,
    /// The HTTP request the base is built from (none for work the gateway starts itself).
    pub request: Option<actix_web::HttpRequest>,
    pub prefer: Prefer,
    /// Who the interaction runs for: every data access asks it first.
    pub access: crate::access::Access,
    /// The `X-Purpose-Of-Use` header: a consent-checked caller's purpose when its kind may use
    /// it (crate::disclosure).
    pub purpose_of_use: Option<String>,
}

impl Ctx<'_> {
    /// `http://host/fhir`, no trailing slash. Built on first use from the configured public base
    /// or the request's connection info: a read or a search answer without links never needs it.
    pub fn base(&self) -> &str {
        self.base.get_or_init(|| {
            self.request
                .as_ref()
                .map(|req| crate::http::base_url(self.state, req))
                .unwrap_or_default()
        })
    }

    fn strict(&self) -> bool {
        self.prefer
            .handling
            .unwrap_or(self.state.config.fhir.default_handling)
            == Handling::Strict
    }

    fn url_of(&self, version: &StoredVersion) -> String {
        format!("{}/{}/{}", self.base(), version.resource_type, version.id)
    }
}

/// The result of one interaction, before rendering.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Body,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub last_modified_ms: Option<i64>,
    /// Warnings and notes about a successful interaction (profile warnings, routine-vaccination
    /// rule findings): the OperationOutcome of `Prefer: return=OperationOutcome` and of
    /// `Bundle.entry.response.outcome`.
    pub issues: Vec<IssueDetail>,
}

impl Reply {
    fn json(status: u16, value: Value) -> Reply {
        Reply {
            status,
            body: Body::Json(value),
            location: None,
            etag: None,
            last_modified_ms: None,
            issues: Vec::new(),
        }
    }

    fn version(status: u16, version: &StoredVersion) -> Reply {
        Reply {
            status,
            body: Body::Stored(version.body.clone()),
            location: None,
            etag: Some(version.etag()),
            last_modified_ms: Some(version.last_updated_ms),
            issues: Vec::new(),
        }
    }
}

/// The type must be one this server is configured to serve.
pub fn check_type(state: &AppState, resource_type: &str) -> Result<(), ApiError> {
    if state.serves(resource_type) {
        return Ok(());
    }
    let message = if fhir::Definitions::r4().is_resource_type(resource_type) {
        format!("resource type {resource_type} is not served by this server (see /fhir/metadata)")
    } else {
        format!("{resource_type:?} is not an R4 resource type")
    };
    Err(ApiError::new(ErrorKind::UnsupportedType, message))
}

pub(crate) fn check_id(id: &str) -> Result<(), ApiError> {
    if fhir::is_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{id:?} is not a valid resource id ([A-Za-z0-9-.]{{1,64}})"
        )))
    }
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Locate issues of a resource inside a Bundle: `Immunization.occurrenceDateTime` becomes
/// `Bundle.entry[1].resource.occurrenceDateTime` (FHIRPath from the Bundle).
fn with_prefix(
    issues: Vec<fhir::validate::Issue>,
    resource_type: &str,
    prefix: &str,
) -> Vec<fhir::validate::Issue> {
    if prefix.is_empty() {
        return issues;
    }
    issues
        .into_iter()
        .map(|mut issue| {
            let relative = issue
                .expression
                .strip_prefix(resource_type)
                .filter(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
                .unwrap_or(&issue.expression);
            issue.expression = match relative.strip_prefix('.') {
                Some(path) => format!("{prefix}{path}"),
                None if relative.is_empty() => prefix.trim_end_matches('.').to_owned(),
                None => format!("{}{relative}", prefix.trim_end_matches('.')),
            };
            issue
        })
        .collect()
}

/// The issues beyond R4 structure: the profiles the resource claims, `profiles`, and its type's
/// default profile where the configuration enforces one; for an Immunization the
/// routine-vaccination rules (errors when the configuration rejects violations); for a
/// QuestionnaireResponse its answers against its Questionnaire.
fn domain_issues(
    ctx: &Ctx<'_>,
    resource_type: &str,
    resource: &Value,
    profiles: &[&str],
    pending: &Pending<'_>,
) -> Result<Vec<fhir::validate::Issue>, ApiError> {
    let state = ctx.state;
    let domain = &state.domain;
    let mut issues = domain.profile_issues(resource, profiles, &state.config.profiles.enforce);
    match resource_type {
        "Immunization" => {
            let mut findings =
                domain.vaccination_issues(state.store.as_ref(), pending, resource)?;
            if state.config.vaccination.on_violation == OnViolation::Reject {
                for finding in &mut findings {
                    if finding.code == fhir::validate::IssueType::BusinessRule {
                        finding.severity = fhir::validate::Severity::Error;
                    }
                }
            }
            issues.extend(findings);
        }
        "QuestionnaireResponse" => {
            issues.extend(crate::operations::questionnaire_response_issues(
                ctx, resource,
            )?);
        }
        _ => {}
    }
    Ok(issues)
}

/// Every issue of a resource, structural and beyond, as `$validate` reports them; the checks
/// see the store as `pending` leaves it (a consent-checked caller's undisclosed records taken
/// out, so no issue echoes them).
pub(crate) fn resource_issues(
    ctx: &Ctx<'_>,
    resource_type: &str,
    resource: &Value,
    expression_prefix: &str,
    profiles: &[&str],
    pending: &Pending<'_>,
) -> Result<Vec<fhir::validate::Issue>, ApiError> {
    let mut issues = fhir::validate::validate_resource(fhir::Definitions::r4(), resource);
    issues.extend(domain_issues(
        ctx,
        resource_type,
        resource,
        profiles,
        pending,
    )?);
    Ok(with_prefix(issues, resource_type, expression_prefix))
}

/// Check a resource about to be written. A wrong type or R4 structure answers 400; profile,
/// vaccination-rule or 予診票 errors answer 422. The warnings and notes that remain are
/// returned to ride along with the reply. `expression_prefix` locates the resource in a Bundle.
pub(crate) fn check_write(
    ctx: &Ctx<'_>,
    resource_type: &str,
    resource: &Value,
    expression_prefix: &str,
    pending: &Pending<'_>,
) -> Result<Vec<IssueDetail>, ApiError> {
    let body_type = resource.get("resourceType").and_then(Value::as_str);
    if body_type != Some(resource_type) {
        return Err(ApiError::bad_request(format!(
            "the body's resourceType is {} but the request is for {resource_type}",
            body_type.map_or("missing".to_string(), |t| format!("{t:?}"))
        ))
        .at(format!("{expression_prefix}resourceType")));
    }
    let mut issues = with_prefix(
        fhir::validate::validate_resource(fhir::Definitions::r4(), resource),
        resource_type,
        expression_prefix,
    );
    if issues.iter().any(|i| i.severity.is_error()) {
        return Err(ApiError::from_validation(&issues));
    }
    issues.extend(with_prefix(
        domain_issues(ctx, resource_type, resource, &[], pending)?,
        resource_type,
        expression_prefix,
    ));
    if issues.iter().any(|i| i.severity.is_error()) {
        return Err(ApiError::unprocessable(&issues));
    }
    Ok(issues.iter().map(crate::error::issue_detail).collect())
}

pub(crate) fn set_id(resource: &mut Value, id: &str) {
    if let Some(object) = resource.as_object_mut() {
        if object.contains_key("id") {
            object.insert("id".into(), Value::String(id.to_owned()));
        } else {
            let at = object
                .keys()
                .position(|k| k == "resourceType")
                .map_or(0, |i| i + 1);
            object.shift_insert(at, "id".into(), Value::String(id.to_owned()));
        }
    }
}

/// What rides along every write in its commit: each write's AuditEvent (`disclosure`) and the
/// delivery Tasks the routing rules plan for it (`outbox`). Every path that writes records
/// passes its writes through here before `Store::commit`.
pub(crate) fn with_audit_and_deliveries(
    ctx: &Ctx<'_>,
    writes: Vec<Write>,
) -> Result<Vec<Write>, ApiError> {
    let writes = crate::disclosure::writes(ctx, writes)?;
    crate::outbox::writes(ctx, writes)
}

/// The patient a route names in its path (the PHR and portal APIs) must be a valid id, stored
/// here, and inside every grant; otherwise 404, as the FHIR routes answer for another family's
/// records (so their existence does not leak).
pub(crate) fn require_path_patient(
    state: &AppState,
    patient_id: &str,
    grants: &[crate::access::Grant],
) -> Result<(), ApiError> {
    check_id(patient_id)?;
    let absent = || format!("Patient/{patient_id} does not exist");
    let patient = crate::domain::live_resource(state.store.as_ref(), "Patient", patient_id)?
        .ok_or_else(|| ApiError::not_found(absent()))?;
    for grant in grants {
        grant.require_patient(&patient, absent)?;
    }
    Ok(())
}

/// An update-or-create of a resource a mapper made (PHR payloads, My Number Portal records),
/// checked against the caller's grants: the new content must lie inside each of them, and a live
/// record it replaces must be visible under each. `source` names the mapper in the internal error
/// for a resource without type or id.
pub(crate) fn granted_put(
    state: &AppState,
    grants: &[crate::access::Grant],
    resource: Value,
    source: &str,
) -> Result<Write, ApiError> {
    let (Some(resource_type), Some(id)) = (
        resource.get("resourceType").and_then(Value::as_str),
        resource.get("id").and_then(Value::as_str),
    ) else {
        return Err(ApiError::internal(format!(
            "the {source} made a resource without type or id"
        )));
    };
    let (resource_type, id) = (resource_type.to_owned(), id.to_owned());
    check_type(state, &resource_type)?;
    check_id(&id)?;
    // A deleted record carries no content to place; its deterministic id was this mapper's.
    let existing = if grants.iter().any(|g| !g.is_unrestricted()) {
        state
            .store
            .read(&resource_type, &id)?
            .filter(|v| !v.is_deleted())
    } else {
        None
    };
    for grant in grants {
        grant.require_write(&resource)?;
        if let Some(existing) = &existing {
            require_visible(grant, existing, || {
                format!("{resource_type}/{id} does not exist")
            })?;
        }
    }
    Ok(Write {
        resource_type,
        id,
        precondition: Precondition::None,
        action: WriteAction::Put(resource),
    })
}

/// The write checks of the FHIR API (`check_write`) for a set of writes committed together, each
/// seeing the others; the warnings of all of them.
pub(crate) fn check_writes(ctx: &Ctx<'_>, writes: &[Write]) -> Result<Vec<IssueDetail>, ApiError> {
    let pending = Pending::from_writes(writes);
    let mut warnings = Vec::new();
    for write in writes {
        if let WriteAction::Put(resource) = &write.action {
            warnings.extend(check_write(
                ctx,
                &write.resource_type,
                resource,
                "",
                &pending,
            )?);
        }
    }
    Ok(warnings)
}

async fn commit_one(ctx: &Ctx<'_>, write: Write) -> Result<Committed, ApiError> {
    let writes = with_audit_and_deliveries(ctx, vec![write])?;
    let committed = ctx.state.store.commit(writes).await?;
    committed
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("the store returned no result for a write"))
}

/// Shape the reply to a write according to `Prefer: return`.
fn write_reply(
    ctx: &Ctx<'_>,
    committed: &Committed,
    status: u16,
    issues: Vec<IssueDetail>,
) -> Reply {
    let version = &committed.version;
    let mut reply = match ctx.prefer.return_ {
        Return::Representation => Reply::version(status, version),
        Return::Minimal => Reply {
            body: Body::Empty,
            ..Reply::version(status, version)
        },
        Return::OperationOutcome => Reply {
            body: Body::Json(outcome_with(
                &issues,
                match committed.outcome {
                    WriteOutcome::Created => format!(
                        "created {}/{} version {}",
                        version.resource_type, version.id, version.version
                    ),
                    WriteOutcome::Updated => format!(
                        "updated {}/{} to version {}",
                        version.resource_type, version.id, version.version
                    ),
                    WriteOutcome::Unchanged => format!(
                        "{}/{} unchanged at version {}",
                        version.resource_type, version.id, version.version
                    ),
                    WriteOutcome::Deleted => {
                        format!("deleted {}/{}", version.resource_type, version.id)
                    }
                },
            )),
            ..Reply::version(status, version)
        },
    };
    reply.location = Some(format!(
        "{}/_history/{}",
        ctx.url_of(version),
        version.version
    ));
    reply.issues = issues;
    reply
}

/// An informational OperationOutcome saying what happened, followed by the warnings and notes.
fn outcome_with(issues: &[IssueDetail], message: String) -> Value {
    let mut all = vec![IssueDetail {
        severity: "information",
        code: "informational",
        diagnostics: message,
        expression: None,
    }];
    all.extend_from_slice(issues);
    operation_outcome(&all, None)
}

/// Run a search for a conditional interaction; returns the live matches (at most 2 are needed).
/// For a consent-checked caller a match counts only when its consents let the caller see it:
/// a hidden match is treated as no match, so the answer never differs from the one it would
/// get if the hidden record did not exist (docs/consent.md, "Conditional interactions").
pub(crate) async fn conditional_matches(
    ctx: &Ctx<'_>,
    resource_type: &str,
    criteria: &[(String, String)],
) -> Result<Vec<StoredVersion>, ApiError> {
    if criteria.is_empty() {
        return Err(ApiError::bad_request(
            "a conditional request needs search criteria",
        ));
    }
    // Conditional criteria must be understood exactly: an ignored parameter would match too much.
    let mut query = search::parse_query(search::Registry::r4(), resource_type, criteria, true)?;
    // Matches never come from outside the caller's compartment (they would reveal, or let it
    // overwrite, another family's records).
    let confine = ctx.access.compartment_params(ctx.state, resource_type)?;
    if !confine.is_empty() {
        query.criteria.extend(
            search::parse_query(search::Registry::r4(), resource_type, &confine, true)?.criteria,
        );
    }
    let mut exit = crate::disclosure::Exit::open(ctx)?;
    let cap = ctx.state.config.consent.max_search_matches;
    let page = ctx.state.store.search(&SearchRequest {
        resource_type,
        query: &query,
        offset: 0,
        count: if exit.is_checked() { cap + 1 } else { 2 },
        need_total: false,
    })?;
    if !exit.is_checked() {
        return Ok(page.matches);
    }
    if page.matches.len() > cap {
        return Err(ApiError::bad_request(format!(
            "the criteria match more than {cap} {resource_type} resources; the matches a consent-checked caller may see are decided one by one, so narrow the criteria (consent.max_search_matches)"
        )));
    }
    let mut visible = Vec::new();
    for version in page.matches {
        if let Some(shown) = exit.shown(version)? {
            visible.push(shown);
            if visible.len() == 2 {
                break;
            }
        }
    }
    exit.close(crate::disclosure::Event::Rest("search-type"))
        .await?;
    Ok(visible)
}

pub fn parse_query_string(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// create (R4 3.1.0.5), with `If-None-Exist` (3.1.0.8.1).
pub async fn create(
    ctx: &Ctx<'_>,
    resource_type: &str,
    mut resource: Value,
    if_none_exist: Option<&str>,
) -> Result<Reply, ApiError> {
    check_type(ctx.state, resource_type)?;
    ctx.access
        .permit(ctx.state, Interaction::Create, resource_type)?
        .require_write(&resource)?;
    let issues = check_write(ctx, resource_type, &resource, "", &Pending::default())?;
    let criteria = if_none_exist.map(|c| parse_query_string(c.trim_start_matches('?')));
    let _guard = match &criteria {
        Some(c) => Some(ctx.state.lock_criteria(resource_type, c).await),
        None => None,
    };
    if let Some(criteria) = &criteria {
        let matches = conditional_matches(ctx, resource_type, criteria).await?;
        match matches.as_slice() {
            [] => {}
            [existing] => {
                let mut reply = Reply::version(200, existing);
                if ctx.prefer.return_ == Return::Minimal {
                    reply.body = Body::Empty;
                }
                reply.location = Some(format!(
                    "{}/_history/{}",
                    ctx.url_of(existing),
                    existing.version
                ));
                return Ok(reply);
            }
            _ => {
                return Err(ApiError::new(
                    ErrorKind::PreconditionFailed,
                    format!("If-None-Exist criteria match more than one {resource_type}"),
                ));
            }
        }
    }
    let id = new_id();
    set_id(&mut resource, &id);
    let committed = commit_one(
        ctx,
        Write {
            resource_type: resource_type.to_owned(),
            id,
            // `new_id` is a fresh UUID v4.
            precondition: Precondition::NewId,
            action: WriteAction::Put(resource),
        },
    )
    .await?;
    Ok(write_reply(ctx, &committed, 201, issues))
}

/// read (R4 3.1.0.2); `If-None-Match` answers 304 when the client's version is current.
pub async fn read(
    ctx: &Ctx<'_>,
    resource_type: &str,
    id: &str,
    if_none_match: Option<&str>,
) -> Result<Reply, ApiError> {
    check_type(ctx.state, resource_type)?;
    check_id(id)?;
    let grant = ctx
        .access
        .permit(ctx.state, Interaction::Read, resource_type)?;
    let absent = || format!("{resource_type}/{id} does not exist");
    let version = ctx
        .state
        .store
        .read(resource_type, id)?
        .ok_or_else(|| ApiError::not_found(absent()))?;
    require_visible(&grant, &version, absent)?;
    let version = crate::disclosure::single(ctx, "read", version, absent).await?;
    if version.is_deleted() {
        let mut error = ApiError::new(
            ErrorKind::Gone,
            format!(
                "{resource_type}/{id} was deleted (version {})",
                version.version
            ),
        );
        error.issues[0].expression = None;
        return Err(error);
    }
    if if_none_match.is_some_and(|tag| {
        tag.trim() == version.etag() || tag.trim() == format!("\"{}\"", version.version)
    }) {
        return Ok(Reply {
            status: 304,
            body: Body::Empty,
            ..Reply::version(304, &version)
        });
    }
    Ok(Reply::version(200, &version))
}

/// vread (R4 3.1.0.3).
pub async fn vread(
    ctx: &Ctx<'_>,
    resource_type: &str,
    id: &str,
    version_id: &str,
) -> Result<Reply, ApiError> {
    check_type(ctx.state, resource_type)?;
    check_id(id)?;
    let number: u64 = version_id.parse().map_err(|_| {
        ApiError::not_found(format!(
            "{resource_type}/{id} has no version {version_id:?}"
        ))
    })?;
    let grant = ctx
        .access
        .permit(ctx.state, Interaction::Read, resource_type)?;
    let absent = || format!("{resource_type}/{id} has no version {number}");
    let version = ctx
        .state
        .store
        .vread(resource_type, id, number)?
        .ok_or_else(|| ApiError::not_found(absent()))?;
    require_visible(&grant, &version, absent)?;
    let version = crate::disclosure::single(ctx, "vread", version, absent).await?;
    if version.is_deleted() {
        return Err(ApiError::new(
            ErrorKind::Gone,
            format!("version {number} of {resource_type}/{id} is a deletion"),
        ));
    }
    Ok(Reply::version(200, &version))
}

/// `W/"3"` or `"3"` → 3.
pub(crate) fn parse_if_match(header: &str) -> Result<u64, ApiError> {
    let tag = header.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"');
    tag.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match {header:?} is not a version ETag like W/\"3\""
        ))
    })
}

/// update (R4 3.1.0.4), including update-as-create when configured.
pub async fn update(
    ctx: &Ctx<'_>,
    resource_type: &str,
    id: &str,
    resource: Value,
    if_match: Option<&str>,
) -> Result<Reply, ApiError> {
    check_type(ctx.state, resource_type)?;
    check_id(id)?;
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id => {}
        Some(body_id) => {
            return Err(ApiError::bad_request(format!(
                "the body's id {body_id:?} differs from the URL's id {id:?}"
            ))
            .at(format!("{resource_type}.id")));
        }
        None => {
            return Err(
                ApiError::bad_request("an update body must carry the resource's id")
                    .at(format!("{resource_type}.id")),
            );
        }
    }
    let grant = ctx
        .access
        .permit(ctx.state, Interaction::Update, resource_type)?;
    grant.require_write(&resource)?;
    if !grant.is_unrestricted()
        && let Some(existing) = ctx.state.store.read(resource_type, id)?
    {
        require_visible(&grant, &existing, || {
            format!("{resource_type}/{id} does not exist")
        })?;
    }
    let issues = check_write(ctx, resource_type, &resource, "", &Pending::default())?;
    let precondition = match if_match {
        Some(tag) => Precondition::VersionIs(parse_if_match(tag)?),
        None => Precondition::None,
    };
    if precondition == Precondition::None && !ctx.state.config.fhir.allow_update_create {
        let exists = ctx
            .state
            .store
            .read(resource_type, id)?
            .is_some_and(|v| !v.is_deleted());
        if !exists {
            return Err(ApiError::not_found(format!(
                "{resource_type}/{id} does not exist and this server does not create resources by update"
            )));
        }
    }
    let committed = commit_one(
        ctx,
        Write {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            precondition,
            action: WriteAction::Put(resource),
        },
    )
    .await?;
    let status = if committed.outcome == WriteOutcome::Created {
        201
    } else {
        200
    };
    Ok(write_reply(ctx, &committed, status, issues))
}

/// conditional update (R4 3.1.0.4.3): the criteria pick the resource to update.
pub async fn conditional_update(
    ctx: &Ctx<'_>,
    resource_type: &str,
    criteria: &[(String, String)],
    mut resource: Value,
    if_match: Option<&str>,
) -> Result<Reply, ApiError> {
    check_type(ctx.state, resource_type)?;
    ctx.access
        .permit(ctx.state, Interaction::Update, resource_type)?;
    let _guard = ctx.state.lock_criteria(resource_type, criteria).await;
    let matches = conditional_matches(ctx, resource_type, criteria).await?;
    let body_id = resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let id = match matches.as_slice() {
        [] => body_id.unwrap_or_else(new_id),
        [existing] => {
            if body_id.as_deref().is_some_and(|b| b != existing.id) {
                return Err(ApiError::bad_request(format!(
                    "the body's id differs from the id of the matching resource {}/{}",
                    resource_type, existing.id
                )));
            }
            existing.id.clone()
        }
        _ => {
            return Err(ApiError::new(
                ErrorKind::PreconditionFailed,
                format!("the criteria match more than one {resource_type}"),
            ));
        }
    };
    set_id(&mut resource, &id);
    update(ctx, resource_type, &id, resource, if_match).await
}

/// delete (R4 3.1.0.7): history is kept; the resource answers 410 afterwards.
pub async fn delete(ctx: &Ctx<'_>, resource_type: &str, id: &str) -> Result<Reply, ApiError> {
    check_type(ctx.state, resource_type)?;
    check_id(id)?;
    let grant = ctx
        .access
        .permit(ctx.state, Interaction::Delete, resource_type)?;
    if !grant.is_unrestricted()
        && let Some(existing) = ctx.state.store.read(resource_type, id)?
    {
        require_visible(&grant, &existing, || {
            format!("{resource_type}/{id} does not exist")
        })?;
    }
    let committed = commit_one(
        ctx,
        Write {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            precondition: Precondition::None,
            action: WriteAction::Delete,
        },
    )
    .await?;
    let message = match committed.outcome {
        WriteOutcome::Deleted => format!("deleted {resource_type}/{id}"),
        _ => format!("{resource_type}/{id} did not exist or was already deleted"),
    };
    Ok(Reply {
        status: 200,
        body: Body::Json(informational_outcome(message)),
        location: None,
        etag: (committed.outcome == WriteOutcome::Deleted).then(|| committed.version.etag()),
        last_modified_ms: None,
        issues: Vec::new(),
    })
}

/// conditional delete (R4 3.1.0.7.1), single-match only.
pub async fn conditional_delete(
    ctx: &Ctx<'_>,
    resource_type: &str,
    criteria: &[(String, String)],
) -> Result<Reply, ApiError> {
    check_type(ctx.state, resource_type)?;
    ctx.access
        .permit(ctx.state, Interaction::Delete, resource_type)?;
    let _guard = ctx.state.lock_criteria(resource_type, criteria).await;
    let matches = conditional_matches(ctx, resource_type, criteria).await?;
    match matches.as_slice() {
        [] => Ok(Reply::json(
            200,
            informational_outcome(format!("no {resource_type} matched; nothing deleted")),
        )),
        [one] => {
            let id = one.id.clone();
            delete(ctx, resource_type, &id).await
        }
        _ => Err(ApiError::new(
            ErrorKind::PreconditionFailed,
            format!("the criteria match more than one {resource_type}; nothing deleted"),
        )),
    }
}

fn bundle_skeleton(kind: &str) -> Map<String, Value> {
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    bundle.insert("id".into(), json!(new_id()));
    bundle.insert(
        "meta".into(),
        json!({"lastUpdated": store::format_instant(now_ms())}),
    );
    bundle.insert("type".into(), json!(kind));
    bundle
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn resource_value(version: &StoredVersion) -> Result<Value, ApiError> {
    serde_json::from_slice(&version.body)
        .map_err(|e| ApiError::internal(format!("stored resource unreadable: {e}")))
}

fn encode_params(params: &[(String, String)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        out.append_pair(k, v);
    }
    out.finish()
}

fn page_link(base_path: &str, params: &[(String, String)], offset: usize, count: usize) -> String {
    let mut kept: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "_offset" && k != "_count")
        .cloned()
        .collect();
    kept.push(("_count".into(), count.to_string()));
    if offset > 0 {
        kept.push(("_offset".into(), offset.to_string()));
    }
    format!("{base_path}?{}", encode_params(&kept))
}

fn paging(ctx: &Ctx<'_>, params: &[(String, String)]) -> Result<(usize, usize), ApiError> {
    let mut count = ctx.state.config.fhir.default_count;
    let mut offset = 0;
    for (k, v) in params {
        match k.as_str() {
            "_count" => {
                count = v.parse().map_err(|_| {
                    ApiError::bad_request(format!("_count {v:?} is not a non-negative integer"))
                })?;
            }
            "_offset" => {
                offset = v.parse().map_err(|_| {
                    ApiError::bad_request(format!("_offset {v:?} is not a non-negative integer"))
                })?;
            }
            _ => {}
        }
    }
    Ok((offset, count.min(ctx.state.config.fhir.max_count)))
}

/// search (R4 3.1.0.8 and the search page): a `searchset` Bundle with paging links.
pub async fn search(
    ctx: &Ctx<'_>,
    resource_type: &str,
    params: &[(String, String)],
) -> Result<Reply, ApiError> {
    check_type(ctx.state, resource_type)?;
    let grant = ctx
        .access
        .permit(ctx.state, Interaction::Search, resource_type)?;
    let mut query =
        search::parse_query(search::Registry::r4(), resource_type, params, ctx.strict())?;
    // The grant's own parameters join the criteria (never the paging links): totals count only
    // what the caller may see.
    let confine = grant.search_params()?;
    if !confine.is_empty() {
        query.criteria.extend(
            search::parse_query(search::Registry::r4(), resource_type, &confine, true)?.criteria,
        );
    }
    let (offset, count) = paging(ctx, params)?;
    let summary_count = query.control.summary == Some(search::Summary::Count);
    let request = SearchRequest {
        resource_type,
        query: &query,
        offset,
        count: if summary_count { 0 } else { count },
        need_total: summary_count || query.control.total != Some(search::TotalMode::None),
    };
    let page = match crate::disclosure::search(ctx, &request).await? {
        Some(consent_checked) => consent_checked,
        None => ctx.state.store.search(&request)?,
    };
    let base_path = format!("{}/{}", ctx.base(), resource_type);
    let mut bundle = bundle_skeleton("searchset");
    if (query.control.total != Some(search::TotalMode::None) || summary_count)
        && let Some(total) = page.total
    {
        bundle.insert("total".into(), json!(total));
    }
    let mut links =
        vec![json!({"relation": "self", "url": page_link(&base_path, params, offset, count)})];
    if !summary_count {
        if page.has_more && count > 0 {
            links.push(json!({"relation": "next", "url": page_link(&base_path, params, offset + count, count)}));
        }
        if offset > 0 {
            links.push(json!({"relation": "previous", "url": page_link(&base_path, params, offset.saturating_sub(count), count)}));
        }
    }
    bundle.insert("link".into(), Value::Array(links));
    let mut entries = Vec::with_capacity(page.matches.len() + page.included.len() + 1);
    for version in &page.matches {
        let mut resource = resource_value(version)?;
        apply_summary(&mut resource, query.control.summary);
        entries.push(json!({"fullUrl": ctx.url_of(version), "resource": resource, "search": {"mode": "match"}}));
    }
    for version in &page.included {
        let resource = resource_value(version)?;
        // Included resources are not counted in the total; each is shown only if the caller
        // could read it on its own.
        if ctx
            .access
            .may_see(ctx.state, &version.resource_type, &resource)
        {
            entries.push(json!({"fullUrl": ctx.url_of(version), "resource": resource, "search": {"mode": "include"}}));
        }
    }
    if !query.warnings.is_empty() {
        let issues: Vec<Value> = query
            .warnings
            .iter()
            .map(|w| json!({"severity": "warning", "code": "not-supported", "diagnostics": w}))
            .collect();
        entries.push(json!({"resource": {"resourceType": "OperationOutcome", "issue": issues}, "search": {"mode": "outcome"}}));
    }
    if !entries.is_empty() {
        bundle.insert("entry".into(), Value::Array(entries));
    }
    Ok(Reply::json(200, Value::Object(bundle)))
}

/// `_summary=text|data` (R4 3.1.1.5.8); the result is tagged SUBSETTED.
fn apply_summary(resource: &mut Value, summary: Option<search::Summary>) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let keep: Option<&[&str]> = match summary {
        Some(search::Summary::Text) => Some(&["resourceType", "id", "meta", "text"]),
        _ => None,
    };
    match (summary, keep) {
        (Some(search::Summary::Data), _) => {
            object.shift_remove("text");
        }
        (_, Some(keep)) => object.retain(|k, _| keep.contains(&k.as_str())),
        _ => return,
    }
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            tags.push(json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}));
        }
    }
}

/// history (R4 3.1.0.9) at instance, type or system level.
pub async fn history(
    ctx: &Ctx<'_>,
    scope: HistoryScope,
    params: &[(String, String)],
) -> Result<Reply, ApiError> {
    let mut instance_grant = None;
    let base_path = match &scope {
        HistoryScope::Instance(rt, id) => {
            check_type(ctx.state, rt)?;
            check_id(id)?;
            instance_grant = Some(ctx.access.permit(ctx.state, Interaction::Read, rt)?);
            format!("{}/{rt}/{id}/_history", ctx.base())
        }
        HistoryScope::Type(rt) => {
            check_type(ctx.state, rt)?;
            ctx.access.permit_history(ctx.state, Some(rt))?;
            format!("{}/{rt}/_history", ctx.base())
        }
        HistoryScope::System => {
            ctx.access.permit_history(ctx.state, None)?;
            format!("{}/_history", ctx.base())
        }
    };
    let (offset, count) = paging(ctx, params)?;
    let mut since_ms = None;
    for (k, v) in params {
        match k.as_str() {
            "_since" => since_ms = Some(parse_instant_ms(v)?),
            "_count" | "_offset" | "_format" | "_pretty" => {}
            other if ctx.strict() => {
                return Err(ApiError::bad_request(format!(
                    "history does not support the parameter {other:?}"
                )));
            }
            _ => {}
        }
    }
    let consent_checked = crate::disclosure::history(
        ctx,
        instance_grant.as_ref(),
        &scope,
        since_ms,
        offset,
        count,
    )
    .await?;
    let page = match (consent_checked, &instance_grant) {
        (Some(page), _) => page,
        (None, Some(grant)) if !grant.is_unrestricted() => {
            restricted_history(ctx, grant, &scope, since_ms, offset, count)?
        }
        (None, _) => ctx.state.store.history(&scope, since_ms, offset, count)?,
    };
    if let HistoryScope::Instance(rt, id) = &scope
        && page.total == 0
    {
        return Err(ApiError::not_found(format!("{rt}/{id} does not exist")));
    }
    let mut bundle = bundle_skeleton("history");
    bundle.insert("total".into(), json!(page.total));
    let mut links =
        vec![json!({"relation": "self", "url": page_link(&base_path, params, offset, count)})];
    if count > 0 && offset + count < page.total {
        links.push(json!({"relation": "next", "url": page_link(&base_path, params, offset + count, count)}));
    }
    bundle.insert("link".into(), Value::Array(links));
    let mut entries = Vec::with_capacity(page.versions.len());
    for version in &page.versions {
        let (method, url, status) = match version.method {
            store::Method::Create => ("POST", version.resource_type.clone(), "201 Created"),
            store::Method::Update => (
                "PUT",
                format!("{}/{}", version.resource_type, version.id),
                "200 OK",
            ),
            store::Method::Delete => (
                "DELETE",
                format!("{}/{}", version.resource_type, version.id),
                "204 No Content",
            ),
        };
        let mut entry = json!({"fullUrl": ctx.url_of(version)});
        if !version.is_deleted() {
            entry["resource"] = resource_value(version)?;
        }
        entry["request"] = json!({"method": method, "url": url});
        entry["response"] = json!({
            "status": status,
            "etag": version.etag(),
            "lastModified": store::format_instant(version.last_updated_ms),
        });
        entries.push(entry);
    }
    if !entries.is_empty() {
        bundle.insert("entry".into(), Value::Array(entries));
    }
    Ok(Reply::json(200, Value::Object(bundle)))
}

/// Instance history for a restricted caller: only versions inside the grant, counted and paged
/// after filtering so the total says nothing about hidden versions. One resource's history is
/// short, so it is read whole.
fn restricted_history(
    ctx: &Ctx<'_>,
    grant: &crate::access::Grant,
    scope: &HistoryScope,
    since_ms: Option<i64>,
    offset: usize,
    count: usize,
) -> Result<store::HistoryPage, ApiError> {
    const MAX_VERSIONS: usize = 10_000;
    let all = ctx.state.store.history(scope, since_ms, 0, MAX_VERSIONS)?;
    let mut visible = Vec::new();
    for version in all.versions {
        if !version.is_deleted() && grant.allows(&resource_value(&version)?) {
            visible.push(version);
        }
    }
    let total = visible.len();
    let versions = visible.into_iter().skip(offset).take(count).collect();
    Ok(store::HistoryPage { versions, total })
}

/// A stored version outside the grant is answered as if it did not exist. Unrestricted callers
/// skip the parse.
pub(crate) fn require_visible(
    grant: &crate::access::Grant,
    version: &StoredVersion,
    absent: impl FnOnce() -> String,
) -> Result<(), ApiError> {
    if grant.is_unrestricted() {
        return Ok(());
    }
    if version.is_deleted() {
        // A deletion has no body to place in a compartment; a restricted caller learns nothing.
        return Err(ApiError::not_found(absent()));
    }
    grant.require(&resource_value(version)?, absent)
}

/// An R4 instant/dateTime with zone, e.g. `_since=2024-01-01T00:00:00Z`, to epoch milliseconds.
fn parse_instant_ms(text: &str) -> Result<i64, ApiError> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .or_else(|_| {
            time::Date::parse(
                text,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map(|d| d.midnight().assume_utc())
        })
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{text:?} is not an instant like 2024-01-01T00:00:00Z"
            ))
        })?;
    Ok((parsed.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Route one request of a batch Bundle (or a GET inside a transaction) to its interaction.
pub async fn dispatch(
    ctx: &Ctx<'_>,
    method: &str,
    url: &str,
    body: Option<Value>,
    headers: &EntryHeaders,
) -> Result<Reply, ApiError> {
    let relative = url
        .strip_prefix(ctx.base())
        .map(|u| u.trim_start_matches('/'))
        .unwrap_or(url);
    let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
    let params = parse_query_string(query);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let need_body = |body: Option<Value>| {
        body.ok_or_else(|| ApiError::bad_request(format!("{method} {url} needs a resource")))
    };
    match (method, segments.as_slice()) {
        ("GET", ["metadata"]) => Ok(Reply::json(
            200,
            crate::capability::capability_statement(ctx.state, ctx.base()),
        )),
        ("GET", ["_history"]) => history(ctx, HistoryScope::System, &params).await,
        ("GET", [rt]) => search(ctx, rt, &params).await,
        ("GET", [rt, "_history"]) => {
            history(ctx, HistoryScope::Type((*rt).to_owned()), &params).await
        }
        ("GET", [rt, id]) => read(ctx, rt, id, headers.if_none_match.as_deref()).await,
        ("GET", [rt, id, "_history"]) => {
            history(
                ctx,
                HistoryScope::Instance((*rt).to_owned(), (*id).to_owned()),
                &params,
            )
            .await
        }
        ("GET", [rt, id, "_history", vid]) => vread(ctx, rt, id, vid).await,
        ("POST", [rt]) => create(ctx, rt, need_body(body)?, headers.if_none_exist.as_deref()).await,
        ("PUT", [rt]) if !params.is_empty() => {
            conditional_update(
                ctx,
                rt,
                &params,
                need_body(body)?,
                headers.if_match.as_deref(),
            )
            .await
        }
        ("PUT", [rt, id]) => {
            update(ctx, rt, id, need_body(body)?, headers.if_match.as_deref()).await
        }
        ("DELETE", [rt]) if !params.is_empty() => conditional_delete(ctx, rt, &params).await,
        ("DELETE", [rt, id]) => delete(ctx, rt, id).await,
        _ => Err(ApiError::new(
            ErrorKind::MethodNotAllowed,
            format!("{method} {url} is not a supported interaction"),
        )),
    }
}

/// The request headers a Bundle entry can carry (`Bundle.entry.request.if*`).
#[derive(Debug, Clone, Default)]
pub struct EntryHeaders {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_none_exist: Option<String>,
}

impl EntryHeaders {
    fn from_request(request: &Value) -> Self {
        let get = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_owned);
        EntryHeaders {
            if_match: get("ifMatch"),
            if_none_match: get("ifNoneMatch"),
            if_none_exist: get("ifNoneExist"),
        }
    }
}

fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        422 => "Unprocessable Entity",
        _ => "",
    };
    format!("{status} {reason}").trim_end().to_owned()
}

pub(crate) fn response_entry(ctx: &Ctx<'_>, reply: &Reply) -> Result<Value, ApiError> {
    let mut response = json!({"status": status_line(reply.status)});
    if let Some(location) = &reply.location {
        let relative = location
            .strip_prefix(&format!("{}/", ctx.base()))
            .unwrap_or(location);
        response["location"] = json!(relative);
    }
    if let Some(etag) = &reply.etag {
        response["etag"] = json!(etag);
    }
    if let Some(ms) = reply.last_modified_ms {
        response["lastModified"] = json!(store::format_instant(ms));
    }
    let mut entry = Map::new();
    match &reply.body {
        Body::Empty => {}
        Body::Json(v)
            if v.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome")
                && reply.status < 300 =>
        {
            response["outcome"] = v.clone();
        }
        body => {
            entry.insert("resource".into(), body.to_value()?);
        }
    }
    if response.get("outcome").is_none() && !reply.issues.is_empty() {
        response["outcome"] = operation_outcome(&reply.issues, None);
    }
    entry.insert("response".into(), response);
    Ok(Value::Object(entry))
}

/// `POST /fhir` with a batch or transaction Bundle (R4 3.1.0.11).
pub async fn bundle(ctx: &Ctx<'_>, bundle: Value) -> Result<Reply, ApiError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ApiError::bad_request(
            "POST to the base URL takes a Bundle of type batch or transaction",
        )
        .at("resourceType"));
    }
    match bundle.get("type").and_then(Value::as_str) {
        Some("batch") => batch(ctx, bundle).await,
        Some("transaction") => crate::transaction::run(ctx, bundle).await,
        other => Err(ApiError::bad_request(format!(
            "Bundle.type must be batch or transaction to be processed, got {}",
            other.map_or("nothing".to_string(), |t| format!("{t:?}"))
        ))
        .at("Bundle.type")),
    }
}

pub(crate) struct EntryRequest {
    pub method: String,
    pub url: String,
    pub full_url: Option<String>,
    pub resource: Option<Value>,
    pub headers: EntryHeaders,
}

pub(crate) fn entry_requests(bundle: &Value) -> Result<Vec<EntryRequest>, ApiError> {
    let entries = match bundle.get("entry") {
        None => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(ApiError::bad_request("Bundle.entry must be an array").at("Bundle.entry"));
        }
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let request = entry.get("request").ok_or_else(|| {
                ApiError::bad_request("every entry of a batch or transaction needs a request")
                    .at(format!("Bundle.entry[{i}].request"))
            })?;
            let method = request
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_uppercase();
            if !matches!(method.as_str(), "GET" | "HEAD" | "POST" | "PUT" | "DELETE") {
                return Err(ApiError::bad_request(format!(
                    "unsupported request method {method:?}"
                ))
                .at(format!("Bundle.entry[{i}].request.method")));
            }
            let url = request.get("url").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request("request.url is required")
                    .at(format!("Bundle.entry[{i}].request.url"))
            })?;
            Ok(EntryRequest {
                method: if method == "HEAD" {
                    "GET".into()
                } else {
                    method
                },
                url: url.to_owned(),
                full_url: entry
                    .get("fullUrl")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                resource: entry.get("resource").cloned(),
                headers: EntryHeaders::from_request(request),
            })
        })
        .collect()
}

/// batch: every entry on its own; one failing entry does not affect the others.
async fn batch(ctx: &Ctx<'_>, bundle: Value) -> Result<Reply, ApiError> {
    let requests = entry_requests(&bundle)?;
    let mut entries = Vec::with_capacity(requests.len());
    for request in requests {
        let result = dispatch(
            ctx,
            &request.method,
            &request.url,
            request.resource,
            &request.headers,
        )
        .await;
        entries.push(match result {
            Ok(reply) => response_entry(ctx, &reply)?,
            Err(error) => json!({"response": {"status": status_line(error.status()), "outcome": error.to_operation_outcome()}}),
        });
    }
    let mut response = bundle_skeleton("batch-response");
    response.insert("entry".into(), Value::Array(entries));
    Ok(Reply::json(200, Value::Object(response)))
}

pub(crate) fn transaction_response(entries: Vec<Value>) -> Reply {
    let mut response = bundle_skeleton("transaction-response");
    response.insert("entry".into(), Value::Array(entries));
    Reply::json(200, Value::Object(response))
}

pub(crate) fn committed_reply(
    ctx: &Ctx<'_>,
    committed: &Committed,
    issues: Vec<IssueDetail>,
) -> Reply {
    let status = match committed.outcome {
        WriteOutcome::Created => 201,
        WriteOutcome::Deleted => 204,
        _ => 200,
    };
    let mut reply = write_reply(ctx, committed, status, issues);
    if committed.outcome == WriteOutcome::Deleted {
        reply.body = Body::Empty;
        reply.location = None;
    }
    reply
}

pub(crate) fn check_entry(
    ctx: &Ctx<'_>,
    resource_type: &str,
    resource: &Value,
    index: usize,
    pending: &Pending<'_>,
) -> Result<Vec<IssueDetail>, ApiError> {
    check_write(
        ctx,
        resource_type,
        resource,
        &format!("Bundle.entry[{index}].resource."),
        pending,
    )
}

/// Replace every `reference` whose value is a key of `map` (R4 3.1.0.11.2, urn:uuid resolution).
pub(crate) fn rewrite_references(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "reference" {
                    if let Value::String(reference) = child
                        && let Some(target) = map.get(reference.as_str())
                    {
                        *reference = target.clone();
                    }
                } else {
                    rewrite_references(child, map);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_references(item, map)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_header_is_parsed() {
        let p = Prefer::parse(Some("return=minimal, handling=strict"));
        assert_eq!(p.return_, Return::Minimal);
        assert_eq!(p.handling, Some(Handling::Strict));
        assert_eq!(Prefer::parse(None).return_, Return::Representation);
        assert_eq!(
            Prefer::parse(Some("return=OperationOutcome")).return_,
            Return::OperationOutcome
        );
    }

    #[test]
    fn if_match_accepts_weak_and_strong_tags() {
        assert_eq!(parse_if_match("W/\"3\"").unwrap(), 3);
        assert_eq!(parse_if_match("\"12\"").unwrap(), 12);
        assert!(parse_if_match("abc").is_err());
    }

    #[test]
    fn references_are_rewritten_everywhere() {
        let mut v = json!({"subject": {"reference": "urn:uuid:1"}, "performer": [{"actor": {"reference": "urn:uuid:2"}}], "note": [{"text": "urn:uuid:1"}]});
        let map = HashMap::from([
            ("urn:uuid:1".to_string(), "Patient/a".to_string()),
            ("urn:uuid:2".to_string(), "Practitioner/b".to_string()),
        ]);
        rewrite_references(&mut v, &map);
        assert_eq!(v["subject"]["reference"], "Patient/a");
        assert_eq!(v["performer"][0]["actor"]["reference"], "Practitioner/b");
        assert_eq!(v["note"][0]["text"], "urn:uuid:1");
    }
}
