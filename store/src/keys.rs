//! The key layout of the store, in one place.
//!
//! Keys start with a one-letter table tag and use `\0` as a separator: resource types, ids
//! (`[A-Za-z0-9.-]`), search-parameter codes and index values never contain it. The rows of
//! AuditEvents ([`AUDIT_TYPES`]) live in a fjall keyspace of their own, everything else in the
//! `data` keyspace (`layout.rs` routes every read and write); one fjall batch spans both, so a
//! group of writes stays atomic.

/// Current version of a resource: `c\0{type}\0{id}` → record.
pub fn current(resource_type: &str, id: &str) -> Vec<u8> {
    join(b'c', &[resource_type.as_bytes(), id.as_bytes()])
}

/// Prefix of all current records of a type.
pub fn current_prefix(resource_type: &str) -> Vec<u8> {
    let mut key = join(b'c', &[resource_type.as_bytes()]);
    key.push(0);
    key
}

/// A superseded version of a resource: `h\0{type}\0{id}\0{version:be64}` → record. The current
/// version is written under [`current`] only and moves here when the next version replaces it
/// (stores written before that layout hold it in both places).
pub fn history(resource_type: &str, id: &str, version: u64) -> Vec<u8> {
    let mut key = history_prefix(resource_type, id);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

pub fn history_prefix(resource_type: &str, id: &str) -> Vec<u8> {
    let mut key = join(b'h', &[resource_type.as_bytes(), id.as_bytes()]);
    key.push(0);
    key
}

/// The search-index entries a resource's current version produced: `x\0{type}\0{id}`. Types
/// listed in `entries` keep none; their entries are recomputed from the stored body.
pub fn entries(resource_type: &str, id: &str) -> Vec<u8> {
    join(b'x', &[resource_type.as_bytes(), id.as_bytes()])
}

/// One search-index entry: `i\0{type}\0{param}\0{value key bytes}\0{id}` → empty, or the
/// resource's covered members for a declared covering index (`covering`).
pub fn index(resource_type: &str, param: &str, value: &[u8], id: &str) -> Vec<u8> {
    let mut key = index_prefix(resource_type, param, value);
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

/// Which search-index entries get an index key ([`index`]). A key is read only by a search
/// that starts from it ([`search::Criterion::seek`]), `_revinclude` (references) and covering
/// indexes (`covering`), so the writer leaves out:
///
/// * values no search starts from (dates, numbers, quantities: [`search::IndexValue::is_seekable`]);
/// * the parameters in [`UNINDEXED`], whose value is the same on nearly every resource of their
///   type, so that their index range would hold nearly every resource anyway. A search that
///   would start from one finds its candidates through another criterion, or by scanning the
///   type, and keeps the order that range gave (`query.rs`).
///
/// Stores written before hold keys for these too; nothing reads them, and the writer removes
/// every entry's key when it replaces a version, so they go with their resource. The list may
/// grow; taking a parameter off it would need its keys written for the resources stored
/// without them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexLayout {
    unindexed: &'static [(&'static str, &'static [&'static str])],
}

/// Per type, the parameters without index keys. An audited read writes one AuditEvent, and
/// these token parameters were 9 of the 15 index keys of a clinic's read of one record
/// (`action` R or E, `outcome` 0 or 4, `site` and `type` always the same, `subtype` the
/// interaction, `entity-type` and `entity-role` one of two each, with long system URLs); its
/// `date` and `_lastUpdated` were two more. A search for a rare value of one of these alone now
/// reads every AuditEvent (docs/performance.md, round 5). References keep their keys: they are
/// what the trail is searched by (`patient`, `entity`, `agent`) and what `_revinclude` follows.
const UNINDEXED: &[(&str, &[&str])] = &[(
    "AuditEvent",
    &[
        "action",
        "outcome",
        "site",
        "type",
        "subtype",
        "entity-type",
        "entity-role",
    ],
)];

impl IndexLayout {
    /// The layout this version writes.
    pub(crate) const CURRENT: IndexLayout = IndexLayout {
        unindexed: UNINDEXED,
    };

    /// Every parameter indexed, as before [`UNINDEXED`]: what searches are compared with.
    #[cfg(test)]
    pub(crate) const EVERY_PARAMETER: IndexLayout = IndexLayout { unindexed: &[] };

    /// Whether the values of `param` on `resource_type` have index keys (when seekable).
    pub(crate) fn indexes_param(&self, resource_type: &str, param: &str) -> bool {
        !self
            .unindexed
            .iter()
            .any(|(rt, params)| *rt == resource_type && params.contains(&param))
    }

    /// Whether the writer writes an index key for this entry of a `resource_type`.
    pub(crate) fn has_key(&self, resource_type: &str, entry: &search::IndexEntry) -> bool {
        entry.value.is_seekable() && self.indexes_param(resource_type, &entry.param)
    }
}

/// Prefix of the index entries of one parameter whose value key starts with `value_prefix`.
pub fn index_prefix(resource_type: &str, param: &str, value_prefix: &[u8]) -> Vec<u8> {
    let mut key = join(b'i', &[resource_type.as_bytes(), param.as_bytes()]);
    key.push(0);
    key.extend_from_slice(value_prefix);
    key
}

/// Prefix of the index entries a search starts from: every value starting with `seek.value`, or
/// exactly that value (the separator before the id ends it).
pub fn index_seek(resource_type: &str, param: &str, seek: &search::Seek) -> Vec<u8> {
    let mut key = index_prefix(resource_type, param, &seek.value);
    if seek.exact {
        key.push(0);
    }
    key
}

/// The id at the end of an index key.
pub fn id_of_index_key(key: &[u8]) -> Option<&str> {
    let start = key.iter().rposition(|b| *b == 0)? + 1;
    std::str::from_utf8(&key[start..]).ok()
}

/// The change log, in commit order: `l\0{seq:be64}` → `{type}\0{id}\0{version:be64}`.
pub fn log(seq: u64) -> Vec<u8> {
    let mut key = LOG_PREFIX.to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub const LOG_PREFIX: &[u8] = b"l\0";

pub fn log_value(resource_type: &str, id: &str, version: u64) -> Vec<u8> {
    let mut value = Vec::with_capacity(resource_type.len() + id.len() + 10);
    value.extend_from_slice(resource_type.as_bytes());
    value.push(0);
    value.extend_from_slice(id.as_bytes());
    value.push(0);
    value.extend_from_slice(&version.to_be_bytes());
    value
}

pub fn parse_log_value(value: &[u8]) -> Option<(&str, &str, u64)> {
    let (rest, version) = value.split_at(value.len().checked_sub(8)?);
    let version = u64::from_be_bytes(version.try_into().ok()?);
    let rest = rest.strip_suffix(&[0])?;
    let split = rest.iter().position(|b| *b == 0)?;
    let resource_type = std::str::from_utf8(&rest[..split]).ok()?;
    let id = std::str::from_utf8(&rest[split + 1..]).ok()?;
    Some((resource_type, id, version))
}

pub fn seq_of_log_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(
        key.strip_prefix(LOG_PREFIX)?.try_into().ok()?,
    ))
}

/// The store's layout mark, in the `data` keyspace: `f\0layout` → the layout number as a
/// big-endian `u32` (`layout::Layout`). Written when a store is created empty. A store that
/// holds data but no mark was written before the mark existed: its AuditEvents are in `data`.
pub const LAYOUT_MARK: &[u8] = b"f\0layout";

/// The types whose rows (current and superseded versions, entries, index keys) live in the
/// audit keyspace. Every audited request writes an AuditEvent and hardly any reads one back:
/// kept apart, their flushes merge only with their own tables instead of with the much larger
/// clinical tables beside them in key order (docs/performance.md, round 6).
pub const AUDIT_TYPES: &[&str] = &["AuditEvent"];

/// Whether the rows of `resource_type` belong to the audit keyspace.
pub(crate) fn is_audit_type(resource_type: &str) -> bool {
    AUDIT_TYPES.contains(&resource_type)
}

/// Whether `key` is a row of an [`AUDIT_TYPES`] resource: a current or superseded version, an
/// entries blob or an index key (`{tag}\0{type}\0…`). The change log and the layout mark are
/// not.
pub(crate) fn is_audit_key(key: &[u8]) -> bool {
    let [b'c' | b'h' | b'x' | b'i', 0, rest @ ..] = key else {
        return false;
    };
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).is_ok_and(is_audit_type)
}

fn join(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 2 + parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut key = Vec::with_capacity(len);
    key.push(tag);
    for part in parts {
        key.push(0);
        key.extend_from_slice(part);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_end_with_the_id() {
        let key = index("Immunization", "patient", b"Patient/p1", "imm-1");
        assert_eq!(id_of_index_key(&key), Some("imm-1"));
        assert!(key.starts_with(&index_prefix("Immunization", "patient", b"Patient/p")));
    }

    #[test]
    fn exact_seeks_stop_at_the_value() {
        let query = search::parse_query(
            search::Registry::r4(),
            "Immunization",
            &[("patient".to_owned(), "Patient/p1".to_owned())],
            true,
        )
        .unwrap();
        let seek = &query.criteria[0].seek().unwrap()[0];
        let start = index_seek("Immunization", "patient", seek);
        assert!(index("Immunization", "patient", b"Patient/p1", "imm-1").starts_with(&start));
        assert!(!index("Immunization", "patient", b"Patient/p10", "imm-2").starts_with(&start));
    }

    #[test]
    fn unindexed_parameters_are_tokens_of_their_type() {
        // `_revinclude` and covering indexes read reference keys directly, without a fallback.
        let registry = search::Registry::r4();
        for (rt, params) in UNINDEXED {
            for param in *params {
                let def = registry.param(rt, param).unwrap();
                assert_eq!(def.kind, search::ParamKind::Token, "{rt} {param}");
                assert!(!IndexLayout::CURRENT.indexes_param(rt, param));
                assert!(IndexLayout::EVERY_PARAMETER.indexes_param(rt, param));
            }
        }
        assert!(IndexLayout::CURRENT.indexes_param("AuditEvent", "entity"));
        assert!(IndexLayout::CURRENT.indexes_param("Observation", "type"));
    }

    #[test]
    fn every_row_of_an_audit_event_is_an_audit_key_and_no_other_row_is() {
        for rt in [
            "AuditEvent",
            "Patient",
            "Immunization",
            "Audit",
            "AuditEventX",
        ] {
            let audit = rt == "AuditEvent";
            assert_eq!(is_audit_type(rt), audit, "{rt}");
            for key in [
                current(rt, "a1"),
                current_prefix(rt),
                history(rt, "a1", 3),
                history_prefix(rt, "a1"),
                entries(rt, "a1"),
                index(rt, "patient", b"Patient/p1", "a1"),
                index_prefix(rt, "entity", b""),
            ] {
                assert_eq!(is_audit_key(&key), audit, "{rt}: {key:?}");
            }
        }
        // An AuditEvent's change-log entry stays in `data`: the log is one sequence.
        assert!(!is_audit_key(&log(7)));
        assert!(!is_audit_key(LAYOUT_MARK));
        assert!(!is_audit_key(b""));
    }

    #[test]
    fn history_keys_sort_by_version() {
        assert!(history("Patient", "a", 2) < history("Patient", "a", 10));
        assert!(history("Patient", "a", 1).starts_with(&history_prefix("Patient", "a")));
        // `a` and `ab` must not share a history prefix.
        assert!(!history("Patient", "ab", 1).starts_with(&history_prefix("Patient", "a")));
    }

    #[test]
    fn log_values_round_trip() {
        let v = log_value("Patient", "p-1", 7);
        assert_eq!(parse_log_value(&v), Some(("Patient", "p-1", 7)));
        assert_eq!(seq_of_log_key(&log(42)), Some(42));
    }
}
