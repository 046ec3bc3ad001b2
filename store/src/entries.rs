//! The search-index entries of a resource's current version: what searches verify criteria,
//! sort and follow `_include` with, and what the writer removes from the index when the
//! version is replaced or deleted.
//!
//! They are kept as a blob beside each current version (`keys::entries`), except for the
//! types below, whose entries are recomputed from the stored body when needed.

use fjall::Slice;
use search::IndexEntry;

use crate::StoreError;
use crate::record::StoredVersion;

/// Types stored without an entries blob. An AuditEvent is written on every audited read and
/// read back rarely; its blob (~700 bytes, a fifth of the bytes each one writes) cost more to
/// journal, flush and compact than recomputing the entries costs the searches that need them.
/// Recomputing gives the same entries: the stored body is the exact serialisation of the
/// resource they were extracted from, and JSON numbers and member order survive the round
/// trip (serde_json `arbitrary_precision`, `preserve_order`). Like every stored index key, they
/// depend on the search parameters not changing between writing and reading.
pub(crate) const RECOMPUTED: &[&str] = &["AuditEvent"];

/// Whether the writer keeps a blob of the entries beside each current version of this type.
pub(crate) fn kept_as_blob(resource_type: &str) -> bool {
    !RECOMPUTED.contains(&resource_type)
}

pub(crate) fn encode(entries: &[IndexEntry], rt: &str, id: &str) -> Result<Slice, StoreError> {
    postcard::to_allocvec(entries)
        .map(Slice::from)
        .map_err(|e| StoreError::Invalid(format!("index entries of {rt}/{id}: {e}")))
}

/// The entries of `rt/id`: from its blob when one is stored, else (for the types without one)
/// recomputed from its current record, which `current` reads only then. A deleted or absent
/// resource has none.
pub(crate) fn of(
    rt: &str,
    id: &str,
    blob: Option<&[u8]>,
    current: impl FnOnce() -> Result<Option<Slice>, StoreError>,
) -> Result<Vec<IndexEntry>, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("index entries of {rt}/{id}: {what}"));
    if let Some(blob) = blob {
        return postcard::from_bytes(blob).map_err(|e| corrupt(e.to_string()));
    }
    if kept_as_blob(rt) {
        return Ok(Vec::new());
    }
    let Some(raw) = current()? else {
        return Ok(Vec::new());
    };
    let version =
        StoredVersion::decode(rt, id, &raw).ok_or_else(|| corrupt("unreadable record".into()))?;
    if version.is_deleted() {
        return Ok(Vec::new());
    }
    let resource: serde_json::Value =
        serde_json::from_slice(&version.body).map_err(|e| corrupt(e.to_string()))?;
    Ok(search::extract(search::Registry::r4(), rt, &resource))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{FjallStore, Precondition, SearchRequest, Store, StoreOptions, Write, WriteAction};

    fn audit_event(patient: &str) -> Write {
        Write {
            resource_type: "AuditEvent".into(),
            id: "a1".into(),
            precondition: Precondition::None,
            action: WriteAction::Put(json!({
                "resourceType": "AuditEvent", "id": "a1", "recorded": "2025-05-01T10:00:00Z",
                "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
                "entity": [{"what": {"reference": patient}}]
            })),
        }
    }

    fn search(store: &FjallStore, params: &[(&str, &str)]) -> Vec<String> {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let query =
            search::parse_query(search::Registry::r4(), "AuditEvent", &params, true).unwrap();
        let request = SearchRequest {
            resource_type: "AuditEvent",
            query: &query,
            offset: 0,
            count: 10,
            need_total: true,
        };
        store
            .search(&request)
            .unwrap()
            .matches
            .into_iter()
            .map(|v| v.id)
            .collect()
    }

    #[tokio::test]
    async fn an_audit_event_stored_with_a_blob_by_an_earlier_version_is_updated_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path(), &StoreOptions::default()).unwrap();
        store.commit(vec![audit_event("Patient/p1")]).await.unwrap();
        // Stores written before AuditEvents stopped keeping a blob hold one.
        let stored = store.read("AuditEvent", "a1").unwrap().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&stored.body).unwrap();
        let entries = search::extract(search::Registry::r4(), "AuditEvent", &body);
        let entries_key = crate::keys::entries("AuditEvent", "a1");
        store
            .keyspaces()
            .of_type("AuditEvent")
            .insert(
                &entries_key,
                super::encode(&entries, "AuditEvent", "a1").unwrap(),
            )
            .unwrap();
        assert_eq!(
            search(&store, &[("patient", "Patient/p1"), ("subtype", "read")]),
            ["a1"]
        );

        store.commit(vec![audit_event("Patient/p2")]).await.unwrap();
        assert!(search(&store, &[("patient", "Patient/p1")]).is_empty());
        // The old blob went with the old version; the new one is recomputed from its body.
        assert!(
            store
                .keyspaces()
                .of_type("AuditEvent")
                .get(&entries_key)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            search(&store, &[("patient", "Patient/p2"), ("subtype", "read")]),
            ["a1"]
        );
        store.shutdown().await.unwrap();
    }
}
