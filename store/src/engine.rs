//! [`FjallStore`]: fjall (an LSM-tree) holds the data; its journal, synced once per commit
//! group, makes writes durable.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fjall::Database;
use tokio::sync::oneshot;

use crate::covering::{Covered, CoveringIndex, Declarations};
use crate::keys::{self, IndexLayout};
use crate::layout::{Keyspaces, Layout};
use crate::record::{RecordHeader, StoredVersion};
use crate::writer::{Message, Queued, WriteGenerations, Writer};
use crate::{
    CommitFuture, HistoryPage, HistoryScope, SearchPage, SearchRequest, Store, StoreError, Write,
};

/// Tuning for the embedded store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Memory budget of the engine, in bytes: one memtable (writes not yet in sorted files) of
    /// the data keyspace an eighth of it, between 4 and 64 MiB, the audit keyspace's memtable
    /// half of that (at least 4 MiB), fjall's block cache the rest ([`MemoryBudget`]). Small by default: the
    /// OS page cache does most of the work.
    pub cache_bytes: u64,
    /// Index entries that also hold members of their resource ([`crate::Store::covered`]).
    pub covering: Vec<CoveringIndex>,
    /// Run by the writer thread once it has been idle for a while after writing.
    pub when_idle: Option<WhenIdle>,
    /// The writer seals a full memtable itself instead of leaving it to fjall's worker, so
    /// memtables stay within their budget while the worker compacts
    /// ([`MemoryBudget::writer_seals_at`]); writes may then wait for the worker instead. For
    /// bulk writes that no client waits on.
    pub seal_full_memtables: bool,
}

/// Work for the writer thread once no commit has come for `after` since its last one (e.g.
/// handing the memory a burst of writes freed back to the OS); once per idle period.
#[derive(Debug, Clone, Copy)]
pub struct WhenIdle {
    pub after: std::time::Duration,
    pub run: fn(),
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 64 * 1024 * 1024,
            covering: Vec::new(),
            when_idle: None,
            seal_full_memtables: false,
        }
    }
}

/// The name the gateway opens the embedded store by; the engine behind it is fjall since
/// ADR 0003 (docs/adr/0003-storage-engine.md).
pub type SledStore = FjallStore;

/// The folder inside the data directory that holds the fjall database.
const ENGINE_DIR: &str = "fjall";
/// fjall's lower bound for the journal budget; a small journal keeps restart replay short.
const MAX_JOURNAL_BYTES: u64 = 64 * 1024 * 1024;

pub struct FjallStore {
    /// Owns the engine (its flush and compaction workers) for as long as the store serves reads,
    /// also after `shutdown` ended the writer thread and its handle.
    _db: Database,
    keyspaces: Keyspaces,
    poisoned: Arc<AtomicBool>,
    generations: Arc<WriteGenerations>,
    covering: Arc<Declarations>,
    /// Which index entries have keys: what the writer writes and searches start from.
    index_layout: IndexLayout,
    inbox: Mutex<Option<Sender<Message>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// Memory limits derived from [`StoreOptions::cache_bytes`]. fjall keeps a keyspace's memtable
/// size with the keyspace when it creates it, so the sizes apply to stores created from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryBudget {
    /// Shared by both keyspaces.
    pub block_cache: u64,
    /// One memtable (writes not yet in sorted files) of the data keyspace. fjall seals a full
    /// one and flushes it in the background, and holds writes back while four sealed ones
    /// wait. The active one grows on until fjall's worker is free to seal it, unless
    /// [`StoreOptions::seal_full_memtables`] has the writer seal it at
    /// [`MemoryBudget::writer_seals_at`].
    pub memtable: u64,
    /// One memtable of the audit keyspace (`layout.rs`).
    pub audit_memtable: u64,
}

impl MemoryBudget {
    pub(crate) fn from_cache_bytes(cache_bytes: u64) -> MemoryBudget {
        const MIB: u64 = 1024 * 1024;
        // Below a few MiB memtables flush so often that writes spend their time merging tiny
        // sorted files; 8 to 64 MiB imported equally fast (ADR 0003), so more only costs
        // memory. 64 MiB is fjall's default.
        let memtable = (cache_bytes / 8).clamp(4 * MIB, 64 * MIB);
        // AuditEvents are small, written one per audited request and hardly read back; each
        // flush of their memtable merges with the audit keyspace's first level (`layout.rs`),
        // so a memtable below 4 MiB makes that merge frequent: at 1 MiB (from the offline
        // budget, which the keyspace keeps from its creation) a served 1 000 000-row store
        // merged about once a second (docs/performance.md, round 6). Half the data keyspace's,
        // at least 4 MiB. It comes out of the block cache, so both keyspaces stay within the
        // budget of the one keyspace before.
        let audit_memtable = (memtable / 2).max(4 * MIB);
        MemoryBudget {
            block_cache: cache_bytes.saturating_sub(audit_memtable).max(MIB),
            memtable,
            audit_memtable,
        }
    }

    /// The size at which the writer seals the active memtable of the data keyspace itself, so
    /// memtables take at most five times this. Twice the size at which fjall's worker seals it
    /// when free: sealed at the budget itself, a 300 000-row import wrote many small tables and
    /// read through more sealed memtables (5–20 % more CPU per row); at twice it, no more CPU
    /// than unbounded.
    pub(crate) fn writer_seals_at(&self) -> u64 {
        2 * self.memtable
    }

    /// [`MemoryBudget::writer_seals_at`] for the audit keyspace.
    pub(crate) fn writer_seals_audit_at(&self) -> u64 {
        2 * self.audit_memtable
    }
}

impl FjallStore {
    /// Open the store in `data_dir`; fjall replays its journal after an unclean stop.
    pub fn open(data_dir: &Path, options: &StoreOptions) -> Result<FjallStore, StoreError> {
        FjallStore::open_with_layout(data_dir, options, IndexLayout::CURRENT)
    }

    /// [`FjallStore::open`], writing the index keys of `index_layout`; tests compare searches
    /// over stores written with every parameter indexed (the layout before) and without.
    pub(crate) fn open_with_layout(
        data_dir: &Path,
        options: &StoreOptions,
        index_layout: IndexLayout,
    ) -> Result<FjallStore, StoreError> {
        FjallStore::open_as(data_dir, options, index_layout, Layout::AuditApart)
    }

    /// [`FjallStore::open_with_layout`], creating an empty store with `new_store`'s layout;
    /// tests write stores as earlier versions did.
    pub(crate) fn open_as(
        data_dir: &Path,
        options: &StoreOptions,
        index_layout: IndexLayout,
        new_store: Layout,
    ) -> Result<FjallStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Io(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        if data_dir.join("sled").exists() && !data_dir.join(ENGINE_DIR).exists() {
            return Err(StoreError::Unavailable(format!(
                "{} holds a sled store from an earlier Musubi; export it with that version and \
                 import it into an empty data directory",
                data_dir.display()
            )));
        }
        let budget = MemoryBudget::from_cache_bytes(options.cache_bytes);
        let db = Database::builder(data_dir.join(ENGINE_DIR))
            .cache_size(budget.block_cache)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            // With two or more workers, fjall's first worker hands compaction requests back to
            // the queue and takes them again in a busy loop while the other compacts (fjall
            // 3.1 `worker_tick`): on this 2-core machine that spin took ~13 % of all samples
            // and a third of the import's throughput. One worker flushes and compacts in turn.
            .worker_threads(1)
            // Durability is explicit: the writer syncs each group's batch (ADR 0003).
            .manual_journal_persist(true)
            .open()
            .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", data_dir.display())))?;
        let keyspaces = Keyspaces::open(&db, &budget, new_store)?;
        let next_seq = match keyspaces.data().prefix(keys::LOG_PREFIX).next_back() {
            Some(entry) => {
                let key = entry.key().map_err(io)?;
                keys::seq_of_log_key(&key).map_or(1, |s| s + 1)
            }
            None => 1,
        };
        let poisoned = Arc::new(AtomicBool::new(false));
        let generations = Arc::new(WriteGenerations::default());
        let covering = Arc::new(Declarations::new(&options.covering));
        let overlay_hasher = crate::writer::overlay_hasher();
        let writer = Writer {
            covering: covering.clone(),
            index_layout,
            generations: generations.clone(),
            db: db.clone(),
            keyspaces: keyspaces.clone(),
            next_seq,
            poisoned: poisoned.clone(),
            overlay_hasher,
            when_idle: options.when_idle,
            memtable_sealing: options.seal_full_memtables.then_some(
                crate::writer::MemtableSealing {
                    at: budget.writer_seals_at(),
                    audit_at: budget.writer_seals_audit_at(),
                },
            ),
            staged: crate::writer::Staged::new(overlay_hasher),
        };
        let (sender, receiver) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("musubi-store-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StoreError::Io(format!("cannot start writer thread: {e}")))?;
        Ok(FjallStore {
            _db: db,
            keyspaces,
            poisoned,
            generations,
            covering,
            index_layout,
            inbox: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
        })
    }

    fn get_version(
        &self,
        key: &[u8],
        rt: &str,
        id: &str,
    ) -> Result<Option<StoredVersion>, StoreError> {
        match self.keyspaces.of_type(rt).get(key).map_err(io)? {
            Some(raw) => StoredVersion::decode(rt, id, &raw)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt(format!("{rt}/{id}"))),
            None => Ok(None),
        }
    }

    pub(crate) fn keyspaces(&self) -> &Keyspaces {
        &self.keyspaces
    }

    pub(crate) fn covering(&self) -> &Declarations {
        &self.covering
    }

    pub(crate) fn index_layout(&self) -> IndexLayout {
        self.index_layout
    }

    /// The writes as the writer takes them, with what can be done before it done on this
    /// thread rather than on the writer's ([`Queued::prepare`]).
    fn prepare(&self, writes: Vec<Write>) -> Vec<Queued> {
        writes
            .into_iter()
            .map(|write| Queued::prepare(write, self.index_layout))
            .collect()
    }

    /// Commit writes queued as given, e.g. with their entries left to the writer: tests compare
    /// that with [`Store::commit`].
    #[cfg(test)]
    pub(crate) fn commit_queued(&self, writes: Vec<Queued>) -> crate::CommitFuture {
        self.ask(|reply| Message::Commit { writes, reply })
    }

    /// Send the writer a request and wait for its answer.
    fn ask<T: Send + 'static>(
        &self,
        message: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Message,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send>> {
        let (reply, receiver) = oneshot::channel();
        let sent = self.send(message(reply));
        Box::pin(async move {
            sent?;
            receiver
                .await
                .map_err(|_| StoreError::Unavailable("the store writer stopped".into()))?
        })
    }

    fn send(&self, message: Message) -> Result<(), StoreError> {
        let inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        match inbox.as_ref() {
            Some(sender) => sender
                .send(message)
                .map_err(|_| StoreError::Unavailable("the store writer has stopped".into())),
            None => Err(StoreError::Unavailable("the store is shut down".into())),
        }
    }
}

pub(crate) fn io(error: fjall::Error) -> StoreError {
    StoreError::Io(error.to_string())
}

impl Store for FjallStore {
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredVersion>, StoreError> {
        self.get_version(&keys::current(resource_type, id), resource_type, id)
    }

    fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: u64,
    ) -> Result<Option<StoredVersion>, StoreError> {
        if let Some(found) = self.get_version(
            &keys::history(resource_type, id, version),
            resource_type,
            id,
        )? {
            return Ok(Some(found));
        }
        // The live version (or deletion marker) is kept under its current key only; it moves to
        // the history table when the next version supersedes it (keys::history).
        let current = keys::current(resource_type, id);
        match self
            .keyspaces
            .of_type(resource_type)
            .get(&current)
            .map_err(io)?
        {
            Some(raw) if RecordHeader::peek(&raw).is_some_and(|h| h.version == version) => {
                StoredVersion::decode(resource_type, id, &raw)
                    .map(Some)
                    .ok_or_else(|| StoreError::Corrupt(format!("{resource_type}/{id}")))
            }
            _ => Ok(None),
        }
    }

    fn history(
        &self,
        scope: &HistoryScope,
        since_ms: Option<i64>,
        offset: usize,
        count: usize,
    ) -> Result<HistoryPage, StoreError> {
        let mut versions = Vec::new();
        match scope {
            HistoryScope::Instance(rt, id) => {
                // Newest first: the current version, then the superseded ones. Stores written
                // before superseded-only history also hold the current version in the history
                // table; it is listed once.
                let current = self.read(rt, id)?;
                let current_version = current.as_ref().map_or(u64::MAX, |c| c.version);
                if let Some(current) = current
                    && since_ms.is_none_or(|s| current.last_updated_ms >= s)
                {
                    versions.push(current);
                }
                let table = self.keyspaces.of_type(rt);
                for entry in table.prefix(keys::history_prefix(rt, id)).rev() {
                    let raw = entry.value().map_err(io)?;
                    let v = StoredVersion::decode(rt, id, &raw)
                        .ok_or_else(|| StoreError::Corrupt(format!("{rt}/{id}")))?;
                    if v.version >= current_version {
                        continue;
                    }
                    if since_ms.is_some_and(|s| v.last_updated_ms < s) {
                        break;
                    }
                    versions.push(v);
                }
            }
            HistoryScope::Type(_) | HistoryScope::System => {
                let only_type = match scope {
                    HistoryScope::Type(t) => Some(t.as_str()),
                    _ => None,
                };
                for entry in self.keyspaces.data().prefix(keys::LOG_PREFIX).rev() {
                    let value = entry.value().map_err(io)?;
                    let (rt, id, version) = keys::parse_log_value(&value)
                        .ok_or_else(|| StoreError::Corrupt("change log entry".into()))?;
                    if only_type.is_some_and(|t| t != rt) {
                        continue;
                    }
                    let Some(v) = self.vread(rt, id, version)? else {
                        continue;
                    };
                    if since_ms.is_some_and(|s| v.last_updated_ms < s) {
                        break;
                    }
                    versions.push(v);
                }
            }
        }
        let total = versions.len();
        let versions = versions.into_iter().skip(offset).take(count).collect();
        Ok(HistoryPage { total, versions })
    }

    fn write_generation(&self, resource_type: &str) -> u64 {
        self.generations.get(resource_type)
    }

    fn ready(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable(
                "a disk write failed; restart to recover from the log".into(),
            ));
        }
        let writer_running = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|h| !h.is_finished());
        if !writer_running {
            return Err(StoreError::Unavailable(
                "the store writer is not running".into(),
            ));
        }
        Ok(())
    }

    fn search(&self, request: &SearchRequest<'_>) -> Result<SearchPage, StoreError> {
        crate::query::execute(self, request)
    }

    fn covered(
        &self,
        resource_type: &str,
        param: &str,
        value: &search::IndexValue,
    ) -> Result<Vec<Covered>, StoreError> {
        crate::covering::covered(self, resource_type, param, value)
    }

    fn commit(&self, writes: Vec<Write>) -> CommitFuture {
        let writes = self.prepare(writes);
        self.ask(|reply| Message::Commit { writes, reply })
    }

    fn stage(&self, writes: Vec<Write>) -> CommitFuture {
        let writes = self.prepare(writes);
        self.ask(|reply| Message::Stage { writes, reply })
    }

    fn write_staged(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>> {
        self.ask(|reply| Message::WriteStaged { reply })
    }

    fn shutdown(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>> {
        let (reply, receiver) = oneshot::channel();
        let sent = self.send(Message::Shutdown { reply });
        // No new writes after shutdown; the writer drains what was queued before it.
        self.inbox.lock().unwrap_or_else(|p| p.into_inner()).take();
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        Box::pin(async move {
            sent?;
            let result = receiver
                .await
                .map_err(|_| StoreError::Unavailable("the store writer stopped".into()))?;
            if let Some(handle) = handle {
                let _ = handle.join();
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Precondition, WriteAction};
    use fjall::{AbstractTree, KeyspaceCreateOptions};
    use serde_json::json;

    /// Enough resources for several data blocks, so each table's index and filter have more
    /// than one partition.
    const PATIENTS: usize = 2000;

    /// Commits a Patient and an Immunization for each of [`PATIENTS`] children, then shuts the
    /// store down, which flushes the memtables into tables.
    async fn write_children_and_flush(store: &FjallStore) {
        for chunk in (0..PATIENTS).collect::<Vec<_>>().chunks(500) {
            let writes = chunk
                .iter()
                .flat_map(|i| {
                    let patient = json!({"resourceType": "Patient", "id": format!("p{i}"),
                        "name": [{"family": format!("family{i}")}]});
                    let immunization = json!({"resourceType": "Immunization",
                        "id": format!("imm{i}"), "status": "completed",
                        "vaccineCode": {"text": "x"}, "patient": {"reference": format!("Patient/p{i}")},
                        "occurrenceDateTime": "2024-06-03"});
                    [("Patient", format!("p{i}"), patient), ("Immunization", format!("imm{i}"), immunization)]
                })
                .map(|(rt, id, resource)| Write {
                    resource_type: rt.into(),
                    id,
                    precondition: Precondition::None,
                    action: WriteAction::Put(resource),
                })
                .collect();
            store.commit(writes).await.unwrap();
        }
        store.shutdown().await.unwrap();
    }

    /// Every child's Immunization is found by `patient=` and date, and every resource reads back.
    fn assert_children_read_back(store: &FjallStore) {
        for i in (0..PATIENTS).step_by(37) {
            let params = [
                ("patient".to_owned(), format!("Patient/p{i}")),
                ("date".to_owned(), "ge2020-01-01".to_owned()),
            ];
            let query =
                search::parse_query(search::Registry::r4(), "Immunization", &params, true).unwrap();
            let page = store
                .search(&crate::SearchRequest {
                    resource_type: "Immunization",
                    query: &query,
                    offset: 0,
                    count: 10,
                    need_total: false,
                })
                .unwrap();
            let ids: Vec<&str> = page.matches.iter().map(|v| v.id.as_str()).collect();
            assert_eq!(ids, [format!("imm{i}")], "patient p{i}");
            let patient = store.read("Patient", &format!("p{i}")).unwrap().unwrap();
            let body: serde_json::Value = serde_json::from_slice(&patient.body).unwrap();
            assert_eq!(body["name"][0]["family"], format!("family{i}"));
        }
    }

    /// (tables, tables with a partitioned index, tables with a partitioned filter)
    fn table_layout(store: &FjallStore) -> (usize, usize, usize) {
        let version = store.keyspaces().data().tree.current_version();
        let tables: Vec<_> = version.iter_tables().collect();
        (
            tables.len(),
            tables.iter().filter(|t| t.regions.index.is_some()).count(),
            tables
                .iter()
                .filter(|t| t.regions.filter_tli.is_some())
                .count(),
        )
    }

    #[tokio::test]
    async fn new_stores_write_partitioned_index_and_filter_blocks_and_read_them() {
        let dir = tempfile::tempdir().unwrap();
        write_children_and_flush(&FjallStore::open(dir.path(), &StoreOptions::default()).unwrap())
            .await;
        let store = FjallStore::open(dir.path(), &StoreOptions::default()).unwrap();
        let (tables, partitioned_index, partitioned_filter) = table_layout(&store);
        assert!(tables > 0);
        assert_eq!((partitioned_index, partitioned_filter), (tables, tables));
        assert_children_read_back(&store);
    }

    #[tokio::test]
    async fn stores_created_with_full_index_blocks_keep_them_and_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        // The keyspace as the store created it before index partitioning: fjall's defaults,
        // which keep a full index and filter block per table below level 3.
        {
            let db = Database::builder(dir.path().join(ENGINE_DIR))
                .open()
                .unwrap();
            db.keyspace(crate::layout::DATA_KEYSPACE, || {
                KeyspaceCreateOptions::default().manual_journal_persist(true)
            })
            .unwrap();
        }
        write_children_and_flush(&FjallStore::open(dir.path(), &StoreOptions::default()).unwrap())
            .await;
        let store = FjallStore::open(dir.path(), &StoreOptions::default()).unwrap();
        let (tables, partitioned_index, partitioned_filter) = table_layout(&store);
        assert!(tables > 0);
        assert_eq!((partitioned_index, partitioned_filter), (0, 0));
        assert_children_read_back(&store);
    }

    #[test]
    fn memory_budget_follows_cache_bytes_within_bounds() {
        const MIB: u64 = 1024 * 1024;
        // (cache_bytes, block cache, memtable, audit memtable)
        let cases = [
            (0, MIB, 4 * MIB, 4 * MIB),
            (16 * MIB, 12 * MIB, 4 * MIB, 4 * MIB),
            (64 * MIB, 60 * MIB, 8 * MIB, 4 * MIB),
            (256 * MIB, 240 * MIB, 32 * MIB, 16 * MIB),
            (4096 * MIB, 4064 * MIB, 64 * MIB, 32 * MIB),
        ];
        for (cache_bytes, block_cache, memtable, audit_memtable) in cases {
            let budget = MemoryBudget::from_cache_bytes(cache_bytes);
            assert_eq!(
                budget,
                MemoryBudget {
                    block_cache,
                    memtable,
                    audit_memtable
                },
                "cache_bytes = {cache_bytes}"
            );
            // The audit keyspace's memtable comes out of the block cache: the same total as
            // one keyspace with the whole cache.
            if cache_bytes >= 5 * MIB {
                assert_eq!(
                    budget.block_cache + budget.memtable + budget.audit_memtable,
                    cache_bytes + memtable
                );
            }
        }
    }
}
