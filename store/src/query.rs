//! Search execution over the index: candidates from the most selective criterion's index range,
//! every criterion verified on each candidate's stored index entries, then sort, page and
//! `_include`/`_revinclude`.

use std::collections::HashSet;

use crate::engine::{FjallStore, io};
use crate::keys;
use crate::record::{RecordHeader, StoredVersion};
use crate::{Store, StoreError};

/// A search over one resource type.
#[derive(Debug)]
pub struct SearchRequest<'a> {
    pub resource_type: &'a str,
    pub query: &'a search::Query,
    /// Index of the first match to return.
    pub offset: usize,
    /// Page size; 0 returns only the total.
    pub count: usize,
    /// Count every match. Without it (and without `_sort`) the search stops as soon as the
    /// page is full, which keeps large result sets cheap.
    pub need_total: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    /// Number of matches in all pages, when it was counted.
    pub total: Option<usize>,
    /// Whether matches exist beyond this page.
    pub has_more: bool,
    pub matches: Vec<StoredVersion>,
    /// Resources added by `_include` / `_revinclude`.
    pub included: Vec<StoredVersion>,
}

/// Upper bound on resources added by `_include`/`_revinclude` to one page.
const MAX_INCLUDED: usize = 1000;

pub(crate) fn execute(
    store: &FjallStore,
    request: &SearchRequest<'_>,
) -> Result<SearchPage, StoreError> {
    let rt = request.resource_type;
    // The keyspace that holds the rows of `rt` (`layout.rs`).
    let keyspace = store.keyspaces().of_type(rt);
    let criteria = &request.query.criteria;
    let layout = store.index_layout();

    // The first criterion with a seek gives the candidates, in its index order. When its
    // parameter has no index keys (`keys::IndexLayout`), the first other one with keys does, or
    // a scan of the type; the matches are then put in the order that criterion's index range
    // would have given, so every search answers as it did with the parameter indexed.
    let first_seek = criteria.iter().find_map(|c| c.seek().map(|p| (c, p)));
    let (start, order) = match first_seek {
        Some((criterion, seeks)) if !layout.indexes_param(rt, &criterion.param) => (
            criteria
                .iter()
                .filter(|c| layout.indexes_param(rt, &c.param))
                .find_map(|c| c.seek().map(|p| (c, p))),
            Some(IndexOrder::new(rt, &criterion.param, &seeks)),
        ),
        first => (first, None),
    };

    // Candidates are produced lazily, so a search that only needs one page stops early.
    let candidates: Box<dyn Iterator<Item = Result<String, StoreError>> + '_> = match start {
        Some((criterion, prefixes)) => {
            // A resource can hold several values under the prefixes (family "やまだ" and
            // full name "やまだたろう" both start with "やまだ"): report each id once.
            let mut seen = HashSet::new();
            Box::new(
                prefixes
                    .into_iter()
                    .flat_map(move |seek| {
                        keyspace.prefix(keys::index_seek(rt, &criterion.param, &seek))
                    })
                    .filter_map(move |entry| match entry.key() {
                        Err(e) => Some(Err(io(e))),
                        Ok(key) => {
                            let id = keys::id_of_index_key(&key)?.to_owned();
                            seen.insert(id.clone()).then_some(Ok(id))
                        }
                    }),
            )
        }
        None => {
            let prefix = keys::current_prefix(rt);
            let skip = prefix.len();
            Box::new(keyspace.prefix(prefix).filter_map(move |entry| {
                match entry.into_inner() {
                    Err(e) => Some(Err(io(e))),
                    Ok((key, raw)) => RecordHeader::peek(&raw)
                        .filter(|h| !h.deleted)
                        .and_then(|_| std::str::from_utf8(&key[skip..]).ok())
                        .map(|id| Ok(id.to_owned())),
                }
            }))
        }
    };

    let sort = &request.query.control.sort;
    // A lone criterion that the index seek already decides needs no verification: the
    // candidates are exactly its matches (the search for a patient's Immunizations that every
    // routine-vaccination check makes would otherwise load each one's index entries).
    let decided = order.is_none() && matches!(criteria.as_slice(), [only] if seek_decides(only));
    let needs_entries = (!criteria.is_empty() && !decided) || !sort.is_empty();
    // One match beyond the page tells whether a next page exists.
    let enough =
        (!request.need_total && sort.is_empty()).then(|| request.offset + request.count + 1);
    // Sort keys per match; a search cut short keeps its index order instead, which for
    // `order` is its one key (see below).
    let mut matched: Vec<(Vec<Option<Vec<u8>>>, String)> = Vec::new();
    for id in candidates {
        let id = id?;
        if order.is_none() && enough.is_some_and(|n| matched.len() >= n) {
            break;
        }
        if !needs_entries {
            matched.push((Vec::new(), id));
            continue;
        }
        let entries = load_entries(keyspace, rt, &id)?;
        if !criteria.iter().all(|c| c.matches(&entries)) {
            continue;
        }
        let sort_keys = match &order {
            // What the first criterion's index range does not hold, a search starting from it
            // did not find.
            Some(order) => match order.position(rt, &entries, &id) {
                Some(position) if enough.is_some() => vec![Some(position)],
                Some(_) => sort_keys(sort, &entries, &id),
                None => continue,
            },
            None => sort_keys(sort, &entries, &id),
        };
        matched.push((sort_keys, id));
    }
    if order.is_some()
        && let Some(n) = enough
    {
        matched.sort();
        matched.truncate(n);
    }
    // Resources without a value for a sort parameter come last in either direction; the id
    // breaks ties so that pages are stable. A search cut short keeps the candidates' index
    // order instead, which is just as stable from page to page.
    if enough.is_none() {
        matched.sort_by(|(ka, ia), (kb, ib)| {
            for (i, s) in sort.iter().enumerate() {
                let ord = match (&ka[i], &kb[i]) {
                    (Some(a), Some(b)) if s.descending => b.cmp(a),
                    (Some(a), Some(b)) => a.cmp(b),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                };
                if ord.is_ne() {
                    return ord;
                }
            }
            ia.cmp(ib)
        });
    }

    let mut page = SearchPage {
        total: enough.is_none().then_some(matched.len()),
        has_more: matched.len() > request.offset + request.count,
        ..SearchPage::default()
    };
    for (_, id) in matched.iter().skip(request.offset).take(request.count) {
        if let Some(version) = store.read(rt, id)?
            && !version.is_deleted()
        {
            page.matches.push(version);
        }
    }
    add_includes(store, request, &mut page)?;
    Ok(page)
}

/// A match's keys for `_sort`, one per sort parameter.
fn sort_keys(
    sort: &[search::SortSpec],
    entries: &[search::IndexEntry],
    id: &str,
) -> Vec<Option<Vec<u8>>> {
    sort.iter()
        .map(|s| match s.param.as_str() {
            "_id" => Some(id.as_bytes().to_vec()),
            param => search::sort_key(entries, param, s.descending),
        })
        .collect()
}

/// The order in which a criterion's index seeks find resources: seek after seek, each range in
/// key order, a resource where it is first found.
struct IndexOrder<'q> {
    param: &'q str,
    /// Where each seek's index range starts, in seek order.
    starts: Vec<Vec<u8>>,
}

impl<'q> IndexOrder<'q> {
    fn new(rt: &str, param: &'q str, seeks: &[search::Seek]) -> IndexOrder<'q> {
        let starts = seeks
            .iter()
            .map(|seek| keys::index_seek(rt, param, seek))
            .collect();
        IndexOrder { param, starts }
    }

    /// Where the seeks first find a resource with these entries: the seek's number, then the
    /// index key (value, then id), as bytes that sort in that order; `None` if none finds it.
    fn position(&self, rt: &str, entries: &[search::IndexEntry], id: &str) -> Option<Vec<u8>> {
        let param = self.param;
        let keys: Vec<Vec<u8>> = entries
            .iter()
            .filter(|e| e.param == param)
            .map(|e| keys::index(rt, param, &e.value.key_bytes(), id))
            .collect();
        self.starts.iter().enumerate().find_map(|(n, start)| {
            let key = keys.iter().filter(|key| key.starts_with(start)).min()?;
            let mut position = (n as u32).to_be_bytes().to_vec();
            position.extend_from_slice(key);
            Some(position)
        })
    }
}

/// Whether every resource the criterion's index seek finds matches it: a plain reference to a
/// typed target (`patient=Patient/p1`). Reference parameters index only references, the seek is
/// exact (`Type/id` and nothing longer), and such a value matches exactly that reference.
fn seek_decides(criterion: &search::Criterion) -> bool {
    criterion.kind == search::ParamKind::Reference
        && criterion.modifier.is_none()
        && !criterion.values.is_empty()
        && criterion.values.iter().all(|v| {
            matches!(
                v,
                search::SearchValue::Reference {
                    resource_type: Some(_),
                    ..
                }
            )
        })
}

fn add_includes(
    store: &FjallStore,
    request: &SearchRequest<'_>,
    page: &mut SearchPage,
) -> Result<(), StoreError> {
    let query = request.query;
    let rt = request.resource_type;
    let revincludes = query.revincludes();
    if !query.has_includes() && revincludes.is_empty() {
        return Ok(());
    }
    let mut seen: HashSet<(String, String)> = page
        .matches
        .iter()
        .map(|v| (v.resource_type.clone(), v.id.clone()))
        .collect();
    let keyspaces = store.keyspaces();
    let mut included = Vec::new();
    for version in &page.matches {
        let entries = load_entries(keyspaces.of_type(rt), rt, &version.id)?;
        for reference in query.include_references(rt, &entries) {
            let Some((target_type, target_id)) = reference.split_once('/') else {
                continue;
            };
            if included.len() >= MAX_INCLUDED
                || !seen.insert((target_type.to_owned(), target_id.to_owned()))
            {
                continue;
            }
            if let Some(target) = store.read(target_type, target_id)?
                && !target.is_deleted()
            {
                included.push(target);
            }
        }
        let target = format!("{rt}/{}", version.id);
        for (source_type, param) in &revincludes {
            let mut value = target.as_bytes().to_vec();
            value.push(0);
            let sources = keyspaces.of_type(source_type);
            for entry in sources.prefix(keys::index_prefix(source_type, param, &value)) {
                let key = entry.key().map_err(io)?;
                let Some(source_id) = keys::id_of_index_key(&key) else {
                    continue;
                };
                if included.len() >= MAX_INCLUDED
                    || !seen.insert((source_type.clone(), source_id.to_owned()))
                {
                    continue;
                }
                if let Some(source) = store.read(source_type, source_id)?
                    && !source.is_deleted()
                {
                    included.push(source);
                }
            }
        }
    }
    page.included = included;
    Ok(())
}

/// The entries of `rt/id`, from `keyspace`, the one that holds the rows of `rt`.
fn load_entries(
    keyspace: &fjall::Keyspace,
    rt: &str,
    id: &str,
) -> Result<Vec<search::IndexEntry>, StoreError> {
    let blob = keyspace.get(keys::entries(rt, id)).map_err(io)?;
    crate::entries::of(rt, id, blob.as_deref(), || {
        keyspace.get(keys::current(rt, id)).map_err(io)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::keys::IndexLayout;
    use crate::{FjallStore, Precondition, SearchRequest, Store, StoreOptions, Write, WriteAction};

    const SYSTEM_A: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
    const SYSTEM_B: &str = "http://dicom.nema.org/resources/ontology/DCM";

    /// AuditEvents whose unindexed parameters take several values, some in several systems
    /// and some repeated within one event, so that index order and scan order differ.
    fn audit_events() -> Vec<Value> {
        let subtypes = [
            vec!["read"],
            vec!["vread"],
            vec!["search-type"],
            vec!["vread", "read"],
            vec!["create"],
        ];
        (0..40)
            .map(|n: usize| {
                // Ids out of commit order, so that id order is not write order.
                let id = format!("a{:02}", (n * 17) % 40);
                let (type_system, type_code) = match n % 4 {
                    0 | 1 => (SYSTEM_A, "rest"),
                    2 => (SYSTEM_B, "110106"),
                    _ => (SYSTEM_B, "rest"),
                };
                let subtype: Vec<Value> = subtypes[n % subtypes.len()]
                    .iter()
                    .map(|code| json!({"system": "http://hl7.org/fhir/restful-interaction", "code": code}))
                    .collect();
                let mut entity = vec![json!({
                    "what": {"reference": format!("Patient/p{}", n % 3)},
                    "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
                    "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}
                })];
                if n.is_multiple_of(2) {
                    entity.push(json!({
                        "what": {"reference": format!("Immunization/i{}", n % 5)},
                        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                        "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4"}
                    }));
                }
                let action = ["R", "E", "C"][n % 3];
                json!({
                    "resourceType": "AuditEvent", "id": id,
                    "action": action,
                    "recorded": format!("2025-05-{:02}T10:00:00Z", 1 + n % 20),
                    "outcome": if n.is_multiple_of(7) { "4" } else { "0" },
                    "type": {"system": type_system, "code": type_code},
                    "subtype": subtype,
                    "source": {"site": if n.is_multiple_of(9) { "Elsewhere" } else { "Musubi" },
                        "observer": {"display": "Musubi"}},
                    "entity": entity
                })
            })
            .collect()
    }

    async fn store_with(dir: &std::path::Path, layout: IndexLayout) -> FjallStore {
        let store = FjallStore::open_with_layout(dir, &StoreOptions::default(), layout).unwrap();
        for event in audit_events() {
            store.commit(vec![put(event)]).await.unwrap();
        }
        store
    }

    fn put(event: Value) -> Write {
        Write {
            resource_type: "AuditEvent".into(),
            id: event["id"].as_str().unwrap().to_owned(),
            precondition: Precondition::None,
            action: WriteAction::Put(event),
        }
    }

    const QUERIES: &[&str] = &[
        "subtype=read",
        "subtype=read,vread",
        "subtype=vread,read",
        "subtype=create,search-type,read",
        "type=rest",
        "type=http://dicom.nema.org/resources/ontology/DCM|110106",
        "type=110106,rest",
        "action=E",
        "outcome=4",
        "site=Musubi",
        "entity-type=2&entity-role=4",
        "subtype=read&patient=Patient/p1",
        "subtype=vread,read&entity=Patient/p2",
        "action=R,C&entity=Immunization/i0,Immunization/i2",
        "outcome=0&date=ge2025-05-10",
        "subtype:not=read&type=rest",
        "action=E&_sort=-date",
        "subtype=read&_sort=_id",
        "entity=Patient/p1",
        "patient=Patient/p0&subtype=vread",
        "_id=a03,a17&subtype=read",
        "subtype=delete",
    ];

    /// Every page of every query: matched ids in order, total and whether more follow.
    fn answers(store: &FjallStore) -> Vec<(String, Vec<String>, Option<usize>, bool)> {
        let mut answers = Vec::new();
        for text in QUERIES {
            let params: Vec<(String, String)> = text
                .split('&')
                .map(|p| p.split_once('=').unwrap())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let query =
                search::parse_query(search::Registry::r4(), "AuditEvent", &params, true).unwrap();
            for need_total in [true, false] {
                for count in [0, 1, 3, 100] {
                    for offset in [0, 2, 11] {
                        let page = store
                            .search(&SearchRequest {
                                resource_type: "AuditEvent",
                                query: &query,
                                offset,
                                count,
                                need_total,
                            })
                            .unwrap();
                        let ids = page.matches.into_iter().map(|v| v.id).collect();
                        let at = format!("{text} total={need_total} count={count} offset={offset}");
                        answers.push((at, ids, page.total, page.has_more));
                    }
                }
            }
        }
        answers
    }

    #[tokio::test]
    async fn searches_on_unindexed_parameters_answer_as_with_every_parameter_indexed() {
        let (old_dir, new_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let every = store_with(old_dir.path(), IndexLayout::EVERY_PARAMETER).await;
        let current = store_with(new_dir.path(), IndexLayout::CURRENT).await;
        let expected = answers(&every);
        assert!(
            expected.iter().any(|(_, ids, _, _)| ids.len() > 3),
            "the queries find something"
        );
        for (want, got) in expected.iter().zip(answers(&current)) {
            assert_eq!(*want, got);
        }
        // Fewer keys: only the references and `_id` of each AuditEvent are indexed.
        let index_keys = |store: &FjallStore| {
            store
                .keyspaces()
                .of_type("AuditEvent")
                .prefix(b"i\0AuditEvent\0")
                .count()
        };
        assert!(index_keys(&current) < index_keys(&every) / 2);
        every.shutdown().await.unwrap();
        current.shutdown().await.unwrap();

        // A store written with every parameter indexed reads the same with the current layout,
        // and updating its resources removes the keys it no longer writes.
        drop(every);
        let reopened = FjallStore::open_with_layout(
            old_dir.path(),
            &StoreOptions::default(),
            IndexLayout::CURRENT,
        )
        .unwrap();
        for (want, got) in expected.iter().zip(answers(&reopened)) {
            assert_eq!(*want, got);
        }
        for mut event in audit_events() {
            event["subtype"] = json!([{"code": "update"}]);
            reopened.commit(vec![put(event)]).await.unwrap();
        }
        assert_eq!(
            reopened
                .keyspaces()
                .of_type("AuditEvent")
                .prefix(b"i\0AuditEvent\0subtype\0")
                .count(),
            0
        );
        reopened.shutdown().await.unwrap();
    }
}
