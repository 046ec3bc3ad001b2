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
    let data = store.data();
    let criteria = &request.query.criteria;

    // Candidates are produced lazily, so a search that only needs one page stops early.
    let candidates: Box<dyn Iterator<Item = Result<String, StoreError>> + '_> =
        match criteria.iter().find_map(|c| c.seek().map(|p| (c, p))) {
            Some((criterion, prefixes)) => {
                // A resource can hold several values under the prefixes (family "やまだ" and
                // full name "やまだたろう" both start with "やまだ"): report each id once.
                let mut seen = HashSet::new();
                Box::new(
                    prefixes
                        .into_iter()
                        .flat_map(move |seek| {
                            data.prefix(keys::index_seek(rt, &criterion.param, &seek))
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
                Box::new(data.prefix(prefix).filter_map(move |entry| {
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
    let decided = matches!(criteria.as_slice(), [only] if seek_decides(only));
    let needs_entries = (!criteria.is_empty() && !decided) || !sort.is_empty();
    // One match beyond the page tells whether a next page exists.
    let enough =
        (!request.need_total && sort.is_empty()).then(|| request.offset + request.count + 1);
    let mut matched: Vec<(Vec<Option<Vec<u8>>>, String)> = Vec::new();
    for id in candidates {
        let id = id?;
        if enough.is_some_and(|n| matched.len() >= n) {
            break;
        }
        if !needs_entries {
            matched.push((Vec::new(), id));
            continue;
        }
        let entries = load_entries(data, rt, &id)?;
        if criteria.iter().all(|c| c.matches(&entries)) {
            let sort_keys = sort
                .iter()
                .map(|s| match s.param.as_str() {
                    "_id" => Some(id.as_bytes().to_vec()),
                    param => search::sort_key(&entries, param, s.descending),
                })
                .collect();
            matched.push((sort_keys, id));
        }
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
    let data = store.data();
    let mut included = Vec::new();
    for version in &page.matches {
        let entries = load_entries(data, rt, &version.id)?;
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
            for entry in data.prefix(keys::index_prefix(source_type, param, &value)) {
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

fn load_entries(
    data: &fjall::Keyspace,
    rt: &str,
    id: &str,
) -> Result<Vec<search::IndexEntry>, StoreError> {
    let blob = data.get(keys::entries(rt, id)).map_err(io)?;
    crate::entries::of(rt, id, blob.as_deref(), || {
        data.get(keys::current(rt, id)).map_err(io)
    })
}
