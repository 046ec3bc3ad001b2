//! Transaction Bundles (R4 3.1.0.11.2): every write commits atomically or none does.
//!
//! Processing order follows the specification: deletes, then creates, then updates, then reads
//! (the reads see the committed state). `urn:uuid:` and other `fullUrl` references between
//! entries are rewritten to the ids the server assigns.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use store::{Precondition, Write, WriteAction};

use crate::domain::Pending;
use crate::error::{ApiError, ErrorKind, IssueDetail};
use crate::rest::{self, Ctx, EntryRequest, Reply, parse_query_string};
use crate::state::ConditionalGuard;

/// What an entry turned into after its conditions were resolved.
enum Planned {
    /// A write; its result is known after the commit.
    Write(usize),
    /// A conditional create that found its match: no write.
    Existing(Reply),
    /// A read, run after the commit.
    Read,
}

pub async fn run(ctx: &Ctx<'_>, bundle: Value) -> Result<Reply, ApiError> {
    let requests = rest::entry_requests(&bundle)?;
    let mut guards = lock_conditions(ctx, &requests).await;

    // Pass 1: give every created resource its id, so references can be rewritten.
    let mut ids: Vec<Option<(String, String)>> = vec![None; requests.len()];
    let mut reference_map: HashMap<String, String> = HashMap::new();
    let mut planned: Vec<Option<Planned>> = (0..requests.len()).map(|_| None).collect();
    for (i, request) in requests.iter().enumerate() {
        let at = |field: &str| format!("Bundle.entry[{i}].{field}");
        let (path, query) = request.url.split_once('?').unwrap_or((&request.url, ""));
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match request.method.as_str() {
            "POST" => {
                let [rt] = segments.as_slice() else {
                    return Err(ApiError::bad_request(format!(
                        "POST url must be a resource type, got {:?}",
                        request.url
                    ))
                    .at(at("request.url")));
                };
                rest::check_type(ctx.state, rt).map_err(|e| e.at(at("request.url")))?;
                ctx.access
                    .permit(ctx.state, auth::Interaction::Create, rt)
                    .map_err(|e| e.at(at("request.url")))?;
                let mut target = None;
                if let Some(criteria) = &request.headers.if_none_exist {
                    let criteria = parse_query_string(criteria.trim_start_matches('?'));
                    let matches = rest::conditional_matches(ctx, rt, &criteria)
                        .await
                        .map_err(|e| e.at(at("request.ifNoneExist")))?;
                    match matches.as_slice() {
                        [] => {}
                        [existing] => target = Some(existing.clone()),
                        _ => {
                            return Err(ApiError::new(
                                ErrorKind::PreconditionFailed,
                                format!("ifNoneExist of entry {i} matches more than one {rt}"),
                            )
                            .at(at("request.ifNoneExist")));
                        }
                    }
                }
                let id = match &target {
                    Some(existing) => existing.id.clone(),
                    None => rest::new_id(),
                };
                if let Some(full_url) = &request.full_url {
                    reference_map.insert(full_url.clone(), format!("{rt}/{id}"));
                }
                match target {
                    Some(existing) => {
                        let mut reply = Reply {
                            status: 200,
                            body: crate::format::bytes_body::Body::Empty,
                            location: Some(format!(
                                "{}/{}/{}/_history/{}",
                                ctx.base(),
                                rt,
                                id,
                                existing.version
                            )),
                            etag: Some(existing.etag()),
                            last_modified_ms: Some(existing.last_updated_ms),
                            issues: Vec::new(),
                        };
                        if ctx.prefer.return_ == rest::Return::Representation {
                            reply.body =
                                crate::format::bytes_body::Body::Stored(existing.body.clone());
                        }
                        planned[i] = Some(Planned::Existing(reply));
                    }
                    None => ids[i] = Some(((*rt).to_owned(), id)),
                }
            }
            "PUT" | "DELETE" => {
                let (rt, id) = match segments.as_slice() {
                    [rt, id] if query.is_empty() => {
                        rest::check_id(id).map_err(|e| e.at(at("request.url")))?;
                        ((*rt).to_owned(), (*id).to_owned())
                    }
                    [rt] if !query.is_empty() => {
                        let criteria = parse_query_string(query);
                        let matches = rest::conditional_matches(ctx, rt, &criteria)
                            .await
                            .map_err(|e| e.at(at("request.url")))?;
                        let id = match matches.as_slice() {
                            [one] => one.id.clone(),
                            [] if request.method == "PUT" => request
                                .resource
                                .as_ref()
                                .and_then(|r| r.get("id"))
                                .and_then(Value::as_str)
                                .map_or_else(rest::new_id, str::to_owned),
                            [] => {
                                planned[i] = Some(Planned::Existing(Reply {
                                    status: 204,
                                    body: crate::format::bytes_body::Body::Empty,
                                    location: None,
                                    etag: None,
                                    last_modified_ms: None,
                                    issues: Vec::new(),
                                }));
                                continue;
                            }
                            _ => {
                                return Err(ApiError::new(
                                    ErrorKind::PreconditionFailed,
                                    format!("the criteria of entry {i} match more than one {rt}"),
                                )
                                .at(at("request.url")));
                            }
                        };
                        ((*rt).to_owned(), id)
                    }
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "{} url must be Type/id or Type?criteria, got {:?}",
                            request.method, request.url
                        ))
                        .at(at("request.url")));
                    }
                };
                rest::check_type(ctx.state, &rt).map_err(|e| e.at(at("request.url")))?;
                if let Some(full_url) = &request.full_url {
                    reference_map.insert(full_url.clone(), format!("{rt}/{id}"));
                }
                ids[i] = Some((rt, id));
            }
            "GET" => planned[i] = Some(Planned::Read),
            other => {
                return Err(ApiError::bad_request(format!("unsupported method {other}"))
                    .at(at("request.method")));
            }
        }
    }

    // The same resource may be the target of only one entry (R4 3.1.0.11.2).
    let mut seen = HashSet::new();
    for (i, target) in ids.iter().enumerate() {
        if let Some(target) = target
            && !seen.insert(target.clone())
        {
            return Err(ApiError::bad_request(format!(
                "{}/{} is the target of more than one entry",
                target.0, target.1
            ))
            .at(format!("Bundle.entry[{i}].request.url")));
        }
    }

    // Pass 2: build the writes in processing order.
    let mut order: Vec<usize> = (0..requests.len()).filter(|i| ids[*i].is_some()).collect();
    order.sort_by_key(|i| match requests[*i].method.as_str() {
        "DELETE" => 0,
        "POST" => 1,
        _ => 2,
    });
    let mut writes = Vec::with_capacity(order.len());
    let mut entry_issues: Vec<Vec<IssueDetail>> = vec![Vec::new(); requests.len()];
    for &i in &order {
        let request = &requests[i];
        let (rt, id) = ids[i].clone().expect("filtered on ids");
        let precondition = match (&request.headers.if_match, request.method.as_str()) {
            (Some(tag), _) => Precondition::VersionIs(
                rest::parse_if_match(tag)
                    .map_err(|e| e.at(format!("Bundle.entry[{i}].request.ifMatch")))?,
            ),
            (None, "POST") => Precondition::MustNotExist,
            _ => Precondition::None,
        };
        let action = if request.method == "DELETE" {
            WriteAction::Delete
        } else {
            let mut resource = request.resource.clone().ok_or_else(|| {
                ApiError::bad_request(format!("{} needs a resource", request.method))
                    .at(format!("Bundle.entry[{i}].resource"))
            })?;
            if request.method == "PUT" {
                match resource.get("id").and_then(Value::as_str) {
                    Some(body_id) if body_id != id => {
                        return Err(ApiError::bad_request(format!(
                            "the resource id {body_id:?} differs from the target id {id:?}"
                        ))
                        .at(format!("Bundle.entry[{i}].resource.id")));
                    }
                    _ => {}
                }
            }
            rest::set_id(&mut resource, &id);
            rest::rewrite_references(&mut resource, &reference_map);
            WriteAction::Put(resource)
        };
        authorize_write(ctx, i, request.method.as_str(), &rt, &id, &action)?;
        writes.push(Write {
            resource_type: rt,
            id,
            precondition,
            action,
        });
        planned[i] = Some(Planned::Write(writes.len() - 1));
    }
    // Checked once every entry has its final id and references, so each entry's checks see the
    // others (a Patient created beside its Immunization, earlier doses in the same Bundle).
    let pending = Pending::from_writes(&writes);
    for (i, plan) in planned.iter().enumerate() {
        if let Some(Planned::Write(w)) = plan
            && let WriteAction::Put(resource) = &writes[*w].action
        {
            entry_issues[i] =
                rest::check_entry(ctx, &writes[*w].resource_type, resource, i, &pending)?;
        }
    }

    let committed = if writes.is_empty() {
        Vec::new()
    } else {
        // Each write's AuditEvent and delivery Tasks are part of the same atomic commit.
        let writes = rest::with_audit_and_deliveries(ctx, writes)?;
        ctx.state.store.commit(writes).await.map_err(|e| {
            let mut error = ApiError::from(e);
            error.issues[0].diagnostics =
                format!("transaction rolled back: {}", error.issues[0].diagnostics);
            error
        })?
    };
    guards.clear();

    let mut entries = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        let reply = match planned[i].take() {
            Some(Planned::Write(w)) => {
                rest::committed_reply(ctx, &committed[w], std::mem::take(&mut entry_issues[i]))
            }
            Some(Planned::Existing(reply)) => reply,
            Some(Planned::Read) | None => {
                // Reads inside a transaction see its writes; a failing read fails nothing else.
                match rest::dispatch(ctx, "GET", &request.url, None, &request.headers).await {
                    Ok(reply) => reply,
                    Err(error) => Reply {
                        status: error.status(),
                        body: crate::format::bytes_body::Body::Json(error.to_operation_outcome()),
                        location: None,
                        etag: None,
                        last_modified_ms: None,
                        issues: Vec::new(),
                    },
                }
            }
        };
        entries.push(rest::response_entry(ctx, &reply)?);
    }
    Ok(rest::transaction_response(entries))
}

/// Lock the criteria of every conditional entry, in a fixed order (no deadlock between two
/// transactions naming the same criteria).
/// Each entry is decided on its own, as if it were sent alone (SMART has no batch scopes): the
/// scope for its interaction, and for restricted callers the new content and the record it
/// replaces or deletes must both lie inside what the token may touch.
fn authorize_write(
    ctx: &Ctx<'_>,
    i: usize,
    method: &str,
    resource_type: &str,
    id: &str,
    action: &WriteAction,
) -> Result<(), ApiError> {
    let at = |e: ApiError| e.at(format!("Bundle.entry[{i}].request.url"));
    let interaction = match method {
        "POST" => auth::Interaction::Create,
        "DELETE" => auth::Interaction::Delete,
        _ => auth::Interaction::Update,
    };
    let grant = ctx
        .access
        .permit(ctx.state, interaction, resource_type)
        .map_err(at)?;
    if grant.is_unrestricted() {
        return Ok(());
    }
    if let WriteAction::Put(resource) = action {
        grant.require_write(resource).map_err(at)?;
    }
    if method != "POST"
        && let Some(existing) = ctx.state.store.read(resource_type, id)?
    {
        rest::require_visible(&grant, &existing, || {
            format!("{resource_type}/{id} does not exist")
        })
        .map_err(at)?;
    }
    Ok(())
}

async fn lock_conditions(ctx: &Ctx<'_>, requests: &[EntryRequest]) -> Vec<ConditionalGuard> {
    let mut keys: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for request in requests {
        let (path, query) = request.url.split_once('?').unwrap_or((&request.url, ""));
        let rt = path.trim_matches('/').to_owned();
        if let Some(criteria) = &request.headers.if_none_exist {
            keys.push((
                rt.clone(),
                parse_query_string(criteria.trim_start_matches('?')),
            ));
        }
        if !query.is_empty() && request.method != "GET" {
            keys.push((rt, parse_query_string(query)));
        }
    }
    keys.sort();
    keys.dedup();
    let mut guards = Vec::with_capacity(keys.len());
    for (rt, criteria) in keys {
        guards.push(ctx.state.lock_criteria(&rt, &criteria).await);
    }
    guards
}
