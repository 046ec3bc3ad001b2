//! Which fjall keyspace holds each row of the store: the one place every read and write asks.
//!
//! The rows of AuditEvents ([`keys::AUDIT_TYPES`]) live in a keyspace of their own, everything
//! else (and the change log, which is one sequence for all types) in `data`. An audited request
//! writes one AuditEvent; in the shared keyspace each flush of them was merged with the large
//! clinical tables beside them in key order, seconds of the one compaction worker at a time
//! (docs/performance.md, round 6). fjall's write batch spans keyspaces and is journaled as one
//! unit, so a commit group stays atomic and is synced once.
//!
//! Stores written before keep their AuditEvents in `data` ([`Layout::OneKeyspace`]); the
//! layout mark ([`keys::LAYOUT_MARK`]) tells the two apart.

use fjall::config::PartitioningPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::StoreError;
use crate::engine::{MemoryBudget, io};
use crate::keys;

/// The keyspace of everything but AuditEvents (its name predates the audit keyspace).
pub(crate) const DATA_KEYSPACE: &str = "musubi";
/// The keyspace of AuditEvents in stores of [`Layout::AuditApart`].
pub(crate) const AUDIT_KEYSPACE: &str = "musubi-audit";

/// Where a store keeps its AuditEvents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Every row in `data`: stores written before the layout mark existed. They hold data and
    /// no mark.
    OneKeyspace,
    /// AuditEvents in a keyspace of their own; mark 1.
    AuditApart,
}

impl Layout {
    /// The value of [`keys::LAYOUT_MARK`] for the layouts that write one.
    fn mark(self) -> Option<u32> {
        match self {
            Layout::OneKeyspace => None,
            Layout::AuditApart => Some(1),
        }
    }

    /// The layout of a store from its mark; `has_data` tells an empty store (which gets
    /// `new_store`) from one written before the mark.
    fn of_store(
        mark: Option<&[u8]>,
        has_data: bool,
        new_store: Layout,
    ) -> Result<Layout, StoreError> {
        let Some(mark) = mark else {
            return Ok(if has_data {
                Layout::OneKeyspace
            } else {
                new_store
            });
        };
        let number = <[u8; 4]>::try_from(mark)
            .map(u32::from_be_bytes)
            .map_err(|_| StoreError::Corrupt(format!("layout mark {mark:?}")))?;
        [Layout::AuditApart]
            .into_iter()
            .find(|layout| layout.mark() == Some(number))
            .ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "the store has layout {number}, which this version of Musubi does not know; \
                     use the version that wrote it"
                ))
            })
    }
}

/// The store's keyspaces, and which of them holds a row.
#[derive(Clone)]
pub(crate) struct Keyspaces {
    data: Keyspace,
    /// The AuditEvents' keyspace: `data` itself in a store of [`Layout::OneKeyspace`].
    audit: Keyspace,
    layout: Layout,
}

impl Keyspaces {
    /// Open the keyspaces of the store in `db`. An empty store is created with `new_store`'s
    /// layout, its mark written and synced before anything else.
    pub(crate) fn open(
        db: &Database,
        budget: &MemoryBudget,
        new_store: Layout,
    ) -> Result<Keyspaces, StoreError> {
        let data = db
            .keyspace(DATA_KEYSPACE, || keyspace_options(budget.memtable))
            .map_err(|e| StoreError::Io(format!("cannot open keyspace: {e}")))?;
        let mark = data.get(keys::LAYOUT_MARK).map_err(io)?;
        let has_data = !data.is_empty().map_err(io)?;
        let layout = Layout::of_store(mark.as_deref(), has_data, new_store)?;
        let audit = match layout {
            Layout::OneKeyspace => {
                tracing::info!(
                    "the store was written before AuditEvents had a keyspace of their own; they \
                     stay with the other resources (docs/adr/0003-storage-engine.md)"
                );
                data.clone()
            }
            Layout::AuditApart => db
                .keyspace(AUDIT_KEYSPACE, || {
                    audit_keyspace_options(budget.audit_memtable)
                })
                .map_err(|e| StoreError::Io(format!("cannot open the audit keyspace: {e}")))?,
        };
        if let (None, Some(number)) = (&mark, layout.mark()) {
            // Created first, marked second: a crash in between leaves an empty store that the
            // next start marks.
            let mut batch = db.batch().durability(Some(PersistMode::SyncData));
            batch.insert(&data, keys::LAYOUT_MARK, number.to_be_bytes());
            batch.commit().map_err(io)?;
        }
        Ok(Keyspaces {
            data,
            audit,
            layout,
        })
    }

    #[cfg(test)]
    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    /// The keyspace of the change log and every type but [`keys::AUDIT_TYPES`].
    pub(crate) fn data(&self) -> &Keyspace {
        &self.data
    }

    /// The keyspace of the rows (current, history, entries, index) of `resource_type`.
    pub(crate) fn of_type(&self, resource_type: &str) -> &Keyspace {
        if keys::is_audit_type(resource_type) {
            &self.audit
        } else {
            &self.data
        }
    }

    /// The keyspace that holds `key`.
    pub(crate) fn of_key(&self, key: &[u8]) -> &Keyspace {
        if keys::is_audit_key(key) {
            &self.audit
        } else {
            &self.data
        }
    }

    /// The AuditEvents' keyspace, in a store that keeps them apart.
    pub(crate) fn audit_apart(&self) -> Option<&Keyspace> {
        (self.layout == Layout::AuditApart).then_some(&self.audit)
    }

    /// Each keyspace once, `data` first.
    pub(crate) fn each(&self) -> impl Iterator<Item = &Keyspace> {
        std::iter::once(&self.data).chain(self.audit_apart())
    }

    /// `ops` split by keyspace, in [`Keyspaces::each`]'s order (`data` first), each part in
    /// the order given; keyspaces without ops are left out.
    pub(crate) fn split<K: AsRef<[u8]>, V>(
        &self,
        ops: Vec<(K, V)>,
    ) -> Vec<(&Keyspace, Vec<(K, V)>)> {
        let (audit, data): (Vec<_>, Vec<_>) = match self.layout {
            Layout::OneKeyspace => (Vec::new(), ops),
            Layout::AuditApart => ops
                .into_iter()
                .partition(|(key, _)| keys::is_audit_key(key.as_ref())),
        };
        [(&self.data, data), (&self.audit, audit)]
            .into_iter()
            .filter(|(_, ops)| !ops.is_empty())
            .collect()
    }
}

/// How a keyspace is created; fjall keeps these with the keyspace, so they apply to stores
/// created from then on.
fn keyspace_options(memtable: u64) -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .max_memtable_size(memtable)
        .manual_journal_persist(true)
        // Partitioned index and filter blocks on every level (fjall partitions only from level
        // 3 on). A table of index entries holds ~50 000 small data blocks, so its one index
        // block grows to ~6 MiB: larger than a block cache shard admits, so every read of such
        // a table loaded and checksummed all of it again (docs/performance.md, round 5).
        // Partitioned, a read pins only the small top level and loads one 4 KiB partition
        // through the cache. Stores created before keep their full index blocks.
        .index_block_partitioning_policy(PartitioningPolicy::all(true))
        .filter_block_partitioning_policy(PartitioningPolicy::all(true))
}

/// The table size the audit keyspace compacts to, a quarter of fjall's 64 MiB.
const AUDIT_TABLE_TARGET: u64 = 16 * 1024 * 1024;

/// [`keyspace_options`] with smaller tables. AuditEvent ids are random (UUID v4), so every
/// flushed table spans the whole key range and merges with every table of the first level
/// below level 0, whose size is four tables: up to 256 MiB at fjall's 64 MiB tables, 64 MiB at
/// 16 MiB. On a 1 000 000-row import served with the read audit on, the audit keyspace with
/// 64 MiB tables merged about once a second, ~1 s each (docs/performance.md, round 6). The
/// data keyspace keeps fjall's size: what smaller tables cost the import is not measured.
fn audit_keyspace_options(memtable: u64) -> KeyspaceCreateOptions {
    let leveled = fjall::compaction::Leveled::default().with_table_target_size(AUDIT_TABLE_TARGET);
    keyspace_options(memtable).compaction_strategy(std::sync::Arc::new(leveled))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::keys::IndexLayout;
    use crate::{
        FjallStore, Precondition, SearchRequest, Store, StoreOptions, Write, WriteAction,
        WriteOutcome,
    };

    fn put(rt: &str, id: &str, precondition: Precondition, resource: Value) -> Write {
        Write {
            resource_type: rt.into(),
            id: id.into(),
            precondition,
            action: WriteAction::Put(resource),
        }
    }

    fn patient(id: &str) -> Write {
        let resource = json!({"resourceType": "Patient", "id": id, "name": [{"family": id}]});
        put("Patient", id, Precondition::None, resource)
    }

    fn immunization(id: &str, patient: &str) -> Write {
        let resource = json!({"resourceType": "Immunization", "id": id, "status": "completed",
            "vaccineCode": {"text": "x"}, "patient": {"reference": patient},
            "occurrenceDateTime": "2024-06-03"});
        put("Immunization", id, Precondition::None, resource)
    }

    fn audit_event(id: &str, patient: &str, interaction: &str) -> Write {
        let resource = json!({"resourceType": "AuditEvent", "id": id,
            "recorded": "2025-05-01T10:00:00Z",
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
            "entity": [{"what": {"reference": patient}}]});
        put("AuditEvent", id, Precondition::None, resource)
    }

    /// Every key of `keyspace`, in order.
    fn keys_of(keyspace: &Keyspace) -> Vec<Vec<u8>> {
        keyspace
            .iter()
            .map(|entry| entry.key().unwrap().to_vec())
            .collect()
    }

    fn search(store: &FjallStore, rt: &str, params: &[(&str, &str)]) -> Vec<String> {
        let mut ids: Vec<String> = crate::test_support::search_page(store, rt, params, 100)
            .matches
            .into_iter()
            .map(|v| v.id)
            .collect();
        ids.sort();
        ids
    }

    fn current_version(store: &FjallStore, rt: &str, id: &str) -> Option<u64> {
        store.read(rt, id).unwrap().map(|v| v.version)
    }

    /// A Patient, an Immunization and an AuditEvent (updated once, so it has a superseded
    /// version) in each of two commits.
    async fn commit_mixed(store: &FjallStore) {
        store
            .commit(vec![
                patient("p1"),
                immunization("i1", "Patient/p1"),
                audit_event("a1", "Patient/p1", "create"),
            ])
            .await
            .unwrap();
        store
            .commit(vec![
                immunization("i2", "Patient/p1"),
                audit_event("a1", "Patient/p1", "update"),
                audit_event("a2", "Patient/p1", "read"),
            ])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn audit_event_rows_live_in_their_keyspace_and_all_others_in_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path(), &StoreOptions::default()).unwrap();
        commit_mixed(&store).await;
        let keyspaces = store.keyspaces();
        assert_eq!(keyspaces.layout(), Layout::AuditApart);
        let audit = keys_of(keyspaces.audit_apart().unwrap());
        let data = keys_of(keyspaces.data());
        // Current and superseded versions and index keys of the AuditEvents, nothing else.
        assert!(audit.contains(&keys::current("AuditEvent", "a1")));
        assert!(audit.contains(&keys::history("AuditEvent", "a1", 1)));
        assert!(audit.iter().any(|k| k.starts_with(b"i\0AuditEvent\0")));
        assert!(audit.iter().all(|k| keys::is_audit_key(k)), "{audit:?}");
        assert!(data.iter().all(|k| !keys::is_audit_key(k)));
        let contains = |key: &[u8], part: &[u8]| key.windows(part.len()).any(|w| w == part);
        assert!(!data.iter().any(|k| contains(k, b"AuditEvent")));
        // The clinical rows, the change log of every write (AuditEvents' too) and the mark.
        assert!(data.contains(&keys::current("Patient", "p1")));
        assert!(data.contains(&keys::entries("Immunization", "i2")));
        assert_eq!(
            data.iter()
                .filter(|k| k.starts_with(keys::LOG_PREFIX))
                .count(),
            6
        );
        assert_eq!(
            keyspaces.data().get(keys::LAYOUT_MARK).unwrap().as_deref(),
            Some(&1u32.to_be_bytes()[..])
        );
        // Read back through every path.
        assert_eq!(current_version(&store, "AuditEvent", "a1"), Some(2));
        assert!(store.vread("AuditEvent", "a1", 1).unwrap().is_some());
        let history = store
            .history(&crate::HistoryScope::Type("AuditEvent".into()), None, 0, 10)
            .unwrap();
        assert_eq!(history.total, 3);
        assert_eq!(
            search(&store, "AuditEvent", &[("patient", "Patient/p1")]),
            ["a1", "a2"]
        );
        assert_eq!(search(&store, "AuditEvent", &[("subtype", "read")]), ["a2"]);
        let params = [("_id", "p1"), ("_revinclude", "AuditEvent:patient")];
        let query = search::parse_query(
            search::Registry::r4(),
            "Patient",
            &params.map(|(k, v)| (k.to_owned(), v.to_owned())),
            true,
        )
        .unwrap();
        let page = store
            .search(&SearchRequest {
                resource_type: "Patient",
                query: &query,
                offset: 0,
                count: 10,
                need_total: false,
            })
            .unwrap();
        let mut included: Vec<&str> = page.included.iter().map(|v| v.id.as_str()).collect();
        included.sort();
        assert_eq!(included, ["a1", "a2"]);
        store.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_commit_writes_both_keyspaces_together_or_neither() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path(), &StoreOptions::default()).unwrap();
        commit_mixed(&store).await;
        // A failed precondition drops the whole transaction, in both keyspaces.
        let failed = store
            .commit(vec![
                patient("p2"),
                audit_event("a3", "Patient/p2", "create"),
                put(
                    "Patient",
                    "p1",
                    Precondition::MustNotExist,
                    json!({"resourceType": "Patient", "id": "p1"}),
                ),
            ])
            .await;
        assert!(failed.is_err());
        assert_eq!(current_version(&store, "Patient", "p2"), None);
        assert_eq!(current_version(&store, "AuditEvent", "a3"), None);
        // Concurrent commits form one group (one batch, one sync) across both keyspaces.
        let commits: Vec<_> = (0..20)
            .map(|n| {
                store.commit(vec![
                    patient(&format!("q{n}")),
                    audit_event(&format!("b{n}"), &format!("Patient/q{n}"), "create"),
                ])
            })
            .collect();
        for commit in commits {
            let committed = commit.await.unwrap();
            assert!(committed.iter().all(|c| c.outcome == WriteOutcome::Created));
        }
        // Dropped without shutdown: the journal, replayed, restores both keyspaces.
        drop(store);
        let store = FjallStore::open(dir.path(), &StoreOptions::default()).unwrap();
        for n in 0..20 {
            assert_eq!(
                current_version(&store, "Patient", &format!("q{n}")),
                Some(1)
            );
            assert_eq!(
                current_version(&store, "AuditEvent", &format!("b{n}")),
                Some(1)
            );
        }
        assert_eq!(current_version(&store, "AuditEvent", "a1"), Some(2));
        assert_eq!(current_version(&store, "AuditEvent", "a3"), None);
        store.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_store_written_before_the_mark_keeps_its_audit_events_with_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::default();
        // Written as every version before the audit keyspace wrote it: one keyspace, no mark.
        let old = FjallStore::open_as(
            dir.path(),
            &options,
            IndexLayout::CURRENT,
            Layout::OneKeyspace,
        )
        .unwrap();
        commit_mixed(&old).await;
        assert!(
            old.keyspaces()
                .data()
                .get(keys::LAYOUT_MARK)
                .unwrap()
                .is_none()
        );
        old.shutdown().await.unwrap();
        drop(old);

        let store = FjallStore::open(dir.path(), &options).unwrap();
        assert_eq!(store.keyspaces().layout(), Layout::OneKeyspace);
        assert!(store.keyspaces().audit_apart().is_none());
        assert_eq!(current_version(&store, "AuditEvent", "a1"), Some(2));
        assert!(store.vread("AuditEvent", "a1", 1).unwrap().is_some());
        assert_eq!(
            search(&store, "AuditEvent", &[("patient", "Patient/p1")]),
            ["a1", "a2"]
        );
        // New AuditEvents go where the others are.
        store
            .commit(vec![
                patient("p2"),
                audit_event("a3", "Patient/p2", "create"),
                audit_event("a2", "Patient/p2", "update"),
            ])
            .await
            .unwrap();
        let data = store.keyspaces().data();
        assert!(
            data.get(keys::current("AuditEvent", "a3"))
                .unwrap()
                .is_some()
        );
        assert!(
            data.get(keys::history("AuditEvent", "a2", 1))
                .unwrap()
                .is_some()
        );
        assert_eq!(
            search(&store, "AuditEvent", &[("patient", "Patient/p2")]),
            ["a2", "a3"]
        );
        assert_eq!(
            search(&store, "AuditEvent", &[("patient", "Patient/p1")]),
            ["a1"]
        );
        assert!(data.get(keys::LAYOUT_MARK).unwrap().is_none());
        store.shutdown().await.unwrap();
        drop(store);
        let store = FjallStore::open(dir.path(), &options).unwrap();
        assert_eq!(store.keyspaces().layout(), Layout::OneKeyspace);
        assert_eq!(current_version(&store, "AuditEvent", "a2"), Some(2));
    }

    /// The keys of each keyspace, and the values of those that hold no time of writing.
    fn rows(keyspace: &Keyspace) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        keyspace
            .iter()
            .map(|entry| {
                let (key, value) = entry.into_inner().unwrap();
                // Records carry `lastUpdated`, which differs between two stores.
                let timeless = matches!(key.first(), Some(b'i' | b'l' | b'f'));
                (key.to_vec(), timeless.then(|| value.to_vec()))
            })
            .collect()
    }

    #[tokio::test]
    async fn staged_writes_go_to_the_keyspaces_commits_go_to() {
        for layout in [Layout::AuditApart, Layout::OneKeyspace] {
            let (committed_dir, staged_dir) =
                (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let options = StoreOptions::default();
            let open = |dir: &std::path::Path| {
                FjallStore::open_as(dir, &options, IndexLayout::CURRENT, layout).unwrap()
            };
            let transactions = || {
                vec![
                    vec![
                        patient("p1"),
                        immunization("i1", "Patient/p1"),
                        audit_event("a1", "Patient/p1", "create"),
                    ],
                    vec![
                        immunization("i2", "Patient/p1"),
                        audit_event("a1", "Patient/p1", "update"),
                        audit_event("a2", "Patient/p1", "read"),
                    ],
                ]
            };
            let committed = open(committed_dir.path());
            for transaction in transactions() {
                committed.commit(transaction).await.unwrap();
            }
            let staged = open(staged_dir.path());
            for transaction in transactions() {
                staged.stage(transaction).await.unwrap();
            }
            staged.write_staged().await.unwrap();
            for store in [&committed, &staged] {
                assert_eq!(store.keyspaces().layout(), layout);
            }
            let (c, s) = (committed.keyspaces(), staged.keyspaces());
            assert_eq!(rows(s.data()), rows(c.data()), "{layout:?}");
            let audit_rows = |k: &Keyspaces| k.audit_apart().map(rows);
            assert_eq!(audit_rows(s), audit_rows(c), "{layout:?}");
            let audit_in_data = rows(s.data()).iter().any(|(k, _)| keys::is_audit_key(k));
            assert_eq!(audit_in_data, layout == Layout::OneKeyspace);
            assert_eq!(
                search(&staged, "AuditEvent", &[("patient", "Patient/p1")]),
                ["a1", "a2"]
            );
            committed.shutdown().await.unwrap();
            staged.shutdown().await.unwrap();
        }
    }

    #[test]
    fn the_layout_follows_the_mark_and_whether_the_store_holds_data() {
        let new = Layout::AuditApart;
        let mark = 1u32.to_be_bytes();
        assert_eq!(Layout::of_store(None, false, new).unwrap(), new);
        assert_eq!(
            Layout::of_store(None, false, Layout::OneKeyspace).unwrap(),
            Layout::OneKeyspace
        );
        assert_eq!(
            Layout::of_store(None, true, new).unwrap(),
            Layout::OneKeyspace
        );
        assert_eq!(
            Layout::of_store(Some(&mark), true, new).unwrap(),
            Layout::AuditApart
        );
        assert!(matches!(
            Layout::of_store(Some(&2u32.to_be_bytes()), true, new),
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            Layout::of_store(Some(b"x"), true, new),
            Err(StoreError::Corrupt(_))
        ));
    }
}
