//! The single writer: drains queued transactions, checks their preconditions, assigns versions,
//! and commits whole groups as one atomic fjall batch with one `fdatasync` (group commit).
//!
//! One thread owns every write, so preconditions (`If-Match`, create-if-absent) are checked and
//! applied without races, and concurrent clients share fsyncs instead of queueing for one each.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};

use bytes::Bytes;
use fjall::{AbstractTree, Database, Keyspace, PersistMode, Slice};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use xxhash_rust::xxh3::Xxh3Builder;

use crate::covering::Declarations;
use crate::engine::io;
use crate::keys;
use crate::layout::Keyspaces;
use crate::record::{Method, RecordHeader, StoredVersion};
use crate::{Committed, Precondition, StoreError, Write, WriteAction, WriteOutcome};
use search::IndexEntry;

/// How many queued transactions one group may take; bounds the latency of the first of them.
const MAX_GROUP: usize = 1024;
/// A group stops taking transactions once it holds this many resource writes, which bounds the
/// memory of one batch when bulk imports queue several large chunks at once.
const MAX_GROUP_WRITES: usize = 4096;

pub(crate) enum Message {
    Commit {
        writes: Vec<Queued>,
        reply: oneshot::Sender<Result<Vec<Committed>, StoreError>>,
    },
    /// Plan the writes like a commit, but keep them for the next `WriteStaged`
    /// ([`crate::Store::stage`]).
    Stage {
        writes: Vec<Queued>,
        reply: oneshot::Sender<Result<Vec<Committed>, StoreError>>,
    },
    WriteStaged {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Shutdown {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl Message {
    fn write_count(&self) -> usize {
        match self {
            Message::Commit { writes, .. } | Message::Stage { writes, .. } => writes.len(),
            Message::WriteStaged { .. } | Message::Shutdown { .. } => 0,
        }
    }
}

/// Per resource type, how many commit groups have changed it ([`crate::Store::write_generation`]).
#[derive(Default)]
pub(crate) struct WriteGenerations(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl WriteGenerations {
    pub(crate) fn get(&self, resource_type: &str) -> u64 {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(resource_type).copied().unwrap_or(0)
    }

    fn bump<'a>(&self, resource_types: impl IntoIterator<Item = &'a str>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for resource_type in resource_types {
            match map.get_mut(resource_type) {
                Some(generation) => *generation += 1,
                None => {
                    map.insert(resource_type.to_owned(), 1);
                }
            }
        }
    }
}

pub(crate) struct Writer {
    pub db: Database,
    pub keyspaces: Keyspaces,
    pub next_seq: u64,
    /// Set after a failed fsync: the state of the journal is unknown, so no further write is
    /// accepted. Shared with the store handle so readiness checks see it.
    pub poisoned: Arc<AtomicBool>,
    pub overlay_hasher: Xxh3Builder,
    pub generations: Arc<WriteGenerations>,
    pub covering: Arc<Declarations>,
    pub index_layout: keys::IndexLayout,
    pub when_idle: Option<crate::engine::WhenIdle>,
    pub memtable_sealing: Option<MemtableSealing>,
    pub staged: Staged,
}

/// Writes planned by [`crate::Store::stage`] and not yet written.
///
/// They go into fjall as sorted tables (its ingestion API) instead of through the journal and
/// the memtables: a bulk load then neither journals nor sorts every key into a skiplist, nor
/// flushes memtables. The tables are fsynced, and registered with a sequence number above
/// every earlier write, before `WriteStaged` is answered.
pub(crate) struct Staged {
    /// The staged writes the writer reads back (see [`Overlay`]); later plans see them here.
    overlay: Overlay,
    /// Every staged key operation, in planning order.
    ops: StagedOps,
    /// The types whose write generation rises once the staged writes are readable.
    changed: std::collections::BTreeSet<String>,
}

impl Staged {
    pub(crate) fn new(overlay_hasher: Xxh3Builder) -> Staged {
        Staged {
            overlay: Overlay::with_hasher(overlay_hasher),
            ops: Vec::new(),
            changed: std::collections::BTreeSet::new(),
        }
    }
}

/// The writer seals the active memtable once it holds more than `at` bytes.
///
/// fjall asks its worker thread to seal a full memtable, and the store's one worker
/// (engine.rs) takes the request only after the compaction it is running, which takes seconds
/// once the tree is large. Meanwhile every write went on into the same memtable: 88 MiB against
/// a budget of 8 during a 300 000-row import (docs/performance.md). Sealed by the writer, it
/// goes into fjall's flush queue at once, and fjall holds writes back while four sealed
/// memtables wait for their flush.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemtableSealing {
    /// For the data keyspace.
    pub at: u64,
    /// For the audit keyspace.
    pub audit_at: u64,
}

impl MemtableSealing {
    fn seal_full(self, keyspaces: &Keyspaces) {
        Self::seal_if_over(keyspaces.data(), self.at);
        if let Some(audit) = keyspaces.audit_apart() {
            Self::seal_if_over(audit, self.audit_at);
        }
    }

    fn seal_if_over(keyspace: &Keyspace, at: u64) {
        if keyspace.tree.active_memtable().size() <= at {
            return;
        }
        // A failure leaves the memtable to fjall's own request; the commit is durable already.
        if let Err(error) = keyspace.rotate_memtable() {
            tracing::warn!(%error, "sealing a full memtable failed");
        }
    }
}

/// Values written earlier in the same group (or transaction) but not yet in fjall, by key.
/// Only the keys the writer reads back are kept: current records and index-entry blobs.
/// `Slice` clones share one buffer, so a value lives once in memory for overlay and batch.
/// Hashed with xxh3 under a per-process random seed: SipHash showed up in profiles of bulk
/// imports, and the seed keeps client-chosen ids from forcing collisions.
type Overlay = std::collections::HashMap<Vec<u8>, Option<Slice>, Xxh3Builder>;

/// A hasher for the overlays with a fresh random seed (one per writer).
pub(crate) fn overlay_hasher() -> Xxh3Builder {
    use std::hash::BuildHasher;
    let seed = std::collections::hash_map::RandomState::new().hash_one(0u8);
    Xxh3Builder::new().with_seed(seed)
}

impl Writer {
    pub(crate) fn run(mut self, inbox: Receiver<Message>) {
        while let Some(first) = self.next_message(&inbox) {
            let mut writes = first.write_count();
            let mut batch = vec![first];
            while batch.len() < MAX_GROUP && writes < MAX_GROUP_WRITES {
                match inbox.try_recv() {
                    Ok(message) => {
                        writes += message.write_count();
                        batch.push(message);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let mut shutdown = None;
            let mut commits = Vec::with_capacity(batch.len());
            // Consecutive commits form one group; the other requests are answered in queue
            // order between groups.
            for message in batch {
                match message {
                    Message::Commit { writes, reply } => commits.push((writes, reply)),
                    Message::Stage { writes, reply } => {
                        self.commit_group(std::mem::take(&mut commits));
                        let _ = reply.send(self.stage(writes));
                    }
                    Message::WriteStaged { reply } => {
                        self.commit_group(std::mem::take(&mut commits));
                        let _ = reply.send(self.write_staged());
                    }
                    Message::Shutdown { reply } => shutdown = Some(reply),
                }
            }
            self.commit_group(commits);
            if let Some(reply) = shutdown {
                let result = self.checkpoint();
                let _ = reply.send(result);
                return;
            }
        }
        // Every handle was dropped without an explicit shutdown: still leave a clean state.
        if let Err(error) = self.checkpoint() {
            tracing::error!(%error, "final checkpoint failed; the journal keeps the data");
        }
    }

    /// The next message; while waiting, runs the idle work once per idle period. `None` once
    /// every sender is gone.
    fn next_message(&self, inbox: &Receiver<Message>) -> Option<Message> {
        let Some(idle) = self.when_idle else {
            return inbox.recv().ok();
        };
        match inbox.recv_timeout(idle.after) {
            Ok(message) => Some(message),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                (idle.run)();
                inbox.recv().ok()
            }
        }
    }

    fn commit_group(&mut self, commits: Vec<(Vec<Queued>, CommitReply)>) {
        if commits.is_empty() {
            return;
        }
        // A commit sees what was staged before it, so that is written first.
        if let Err(error) = self.write_staged() {
            for (_, reply) in commits {
                let _ = reply.send(Err(StoreError::Unavailable(format!(
                    "the staged writes before this commit could not be written: {error}"
                ))));
            }
            return;
        }
        let now_ms = now_millis();
        let mut group = Overlay::with_hasher(self.overlay_hasher);
        let mut pending = Vec::with_capacity(commits.len());
        // One batch for the whole group: fjall writes it to its journal as one atomic unit, so
        // each transaction in it is atomic too, and `SyncData` makes it one `fdatasync`.
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for (writes, reply) in commits {
            match self.plan(&mut group, writes, now_ms) {
                Ok((committed, ops)) => {
                    for (key, value) in ops {
                        let keyspace = self.keyspaces.of_key(&key);
                        match value {
                            Some(v) => batch.insert(keyspace, key, v),
                            None => batch.remove(keyspace, key),
                        }
                    }
                    pending.push((reply, committed));
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            }
        }
        if pending.is_empty() {
            return;
        }
        // Readers see the group only after the journal holds it durably: fjall applies the
        // batch to its memtables after the sync.
        if let Err(error) = batch.commit() {
            tracing::error!(%error, "writing the commit group failed; refusing further writes");
            self.poisoned.store(true, Ordering::Relaxed);
            for (reply, _) in pending {
                let _ = reply.send(Err(StoreError::Io(error.to_string())));
            }
            return;
        }
        // The group is readable now; caches keyed by generation see the change before any
        // writer hears back.
        let changed: std::collections::BTreeSet<&str> = pending
            .iter()
            .flat_map(|(_, committed)| committed.iter())
            .filter(|c| c.outcome != WriteOutcome::Unchanged)
            .map(|c| c.version.resource_type.as_str())
            .collect();
        self.generations.bump(changed);
        if let Some(sealing) = self.memtable_sealing {
            sealing.seal_full(&self.keyspaces);
        }
        for (reply, committed) in pending {
            let _ = reply.send(Ok(committed));
        }
    }

    /// After a failed disk write nothing more is planned or written: what reached the disk is
    /// unknown until a restart replays the journal.
    fn refuse_if_poisoned(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable(
                "an earlier disk write failed; restart to recover from the journal".into(),
            ));
        }
        Ok(())
    }

    /// Plan one transaction against `overlay` (writes planned before it that fjall does not
    /// hold yet). On success its readable writes join the overlay and its key operations are
    /// returned; on failure nothing of it is kept.
    fn plan(
        &mut self,
        overlay: &mut Overlay,
        writes: Vec<Queued>,
        now_ms: i64,
    ) -> Result<(Vec<Committed>, KeyOps), StoreError> {
        self.refuse_if_poisoned()?;
        let mut tx = Transaction {
            keyspaces: &self.keyspaces,
            group: overlay,
            covering: &self.covering,
            index_layout: self.index_layout,
            local: Overlay::with_hasher(self.overlay_hasher),
            ops: Vec::new(),
        };
        let mut next_seq = self.next_seq;
        let committed = plan_transaction(&mut tx, writes, now_ms, &mut next_seq)?;
        self.next_seq = next_seq;
        let Transaction { local, ops, .. } = tx;
        overlay.extend(local);
        Ok((committed, ops))
    }

    /// Plan a transaction and keep its key operations for [`Writer::write_staged`].
    fn stage(&mut self, writes: Vec<Queued>) -> Result<Vec<Committed>, StoreError> {
        let fresh = Overlay::with_hasher(self.overlay_hasher);
        let mut overlay = std::mem::replace(&mut self.staged.overlay, fresh);
        let planned = self.plan(&mut overlay, writes, now_millis());
        self.staged.overlay = overlay;
        let (committed, ops) = planned?;
        // Kept until the write: as slices, each key takes only its own length.
        let ops = ops
            .into_iter()
            .map(|(key, value)| (Slice::from(key), value));
        self.staged.ops.extend(ops);
        self.staged.changed.extend(
            committed
                .iter()
                .filter(|c| c.outcome != WriteOutcome::Unchanged)
                .map(|c| c.version.resource_type.clone()),
        );
        Ok(committed)
    }

    /// Write every staged key operation as sorted tables, through fjall's ingestion: per
    /// keyspace, the tables are fsynced and then registered in one step, so all of it becomes
    /// durable and readable at once, or (on an error) none of it. fjall ingests into one
    /// keyspace at a time, so the AuditEvents' keyspace is written first: should writing the
    /// data keyspace then fail, or the process stop in between, the trail holds the events of
    /// writes not stored (the import reports those rows as not imported), never writes without
    /// their events.
    fn write_staged(&mut self) -> Result<(), StoreError> {
        let Staged { ops, changed, .. } =
            std::mem::replace(&mut self.staged, Staged::new(self.overlay_hasher));
        if ops.is_empty() {
            return Ok(());
        }
        self.refuse_if_poisoned()?;
        for (keyspace, ops) in self.keyspaces.split(ops).into_iter().rev() {
            if let Err(error) = ingest(keyspace, sorted_last_wins(ops)) {
                tracing::error!(%error, "writing the staged writes failed; refusing further writes");
                self.poisoned.store(true, Ordering::Relaxed);
                return Err(StoreError::Io(error.to_string()));
            }
        }
        self.generations.bump(changed.iter().map(String::as_str));
        Ok(())
    }

    /// Leave a clean state. Everything committed is already durable in the journal; flushing
    /// the memtables into sorted files as well means the next start replays (and holds in
    /// memory) nothing, which keeps start-up time and idle memory small. `SyncAll` makes the
    /// journal's metadata durable before the process exits.
    pub(crate) fn checkpoint(&mut self) -> Result<(), StoreError> {
        // fjall 3.1 offers the flush only as `#[doc(hidden)]` API; Cargo.toml keeps fjall
        // within 3.1 for that reason.
        for keyspace in self.keyspaces.each() {
            keyspace.rotate_memtable_and_wait().map_err(io)?;
        }
        self.db.persist(PersistMode::SyncAll).map_err(io)?;
        tracing::debug!("checkpoint complete");
        Ok(())
    }
}

type CommitReply = oneshot::Sender<Result<Vec<Committed>, StoreError>>;

/// Key operations of planned writes, in planning order (`None` removes the key).
type KeyOps = Vec<(Vec<u8>, Option<Slice>)>;

/// Staged key operations, in planning order (`None` removes the key).
type StagedOps = Vec<(Slice, Option<Slice>)>;

/// `ops` in ascending key order, each key once with its last operation: the order fjall's
/// ingestion requires, and what applying them one after the other would leave.
fn sorted_last_wins(mut ops: StagedOps) -> StagedOps {
    // Reversed and then sorted stably, a key's last operation comes first among its equals.
    ops.reverse();
    ops.sort_by(|a, b| a.0.cmp(&b.0));
    ops.dedup_by(|later, first| later.0 == first.0);
    ops
}

/// Write sorted key operations into new tables of `keyspace` and register them in one step.
fn ingest(keyspace: &Keyspace, ops: StagedOps) -> fjall::Result<()> {
    let mut ingestion = keyspace.start_ingestion()?;
    for (key, value) in ops {
        match value {
            Some(value) => ingestion.write(key, value)?,
            None => ingestion.write_tombstone(key)?,
        }
    }
    ingestion.finish()
}

/// Reads see, in order: this transaction's own writes, the group's earlier transactions, fjall.
struct Transaction<'a> {
    keyspaces: &'a Keyspaces,
    group: &'a Overlay,
    /// Which index entries also hold members of their resource.
    covering: &'a Declarations,
    /// Which index entries get an index key.
    index_layout: keys::IndexLayout,
    /// This transaction's writes of keys it may read back (see [`Overlay`]).
    local: Overlay,
    ops: KeyOps,
}

impl Transaction<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Slice>, StoreError> {
        if let Some(v) = self.local.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.group.get(key) {
            return Ok(v.clone());
        }
        self.keyspaces.of_key(key).get(key).map_err(io)
    }

    /// Write a key that later writes of the group may read back (current record, entries).
    fn put_readable(&mut self, key: Vec<u8>, value: Slice) {
        self.local.insert(key.clone(), Some(value.clone()));
        self.ops.push((key, Some(value)));
    }

    /// Write a key the writer never reads (history, index entries, change log).
    fn put(&mut self, key: Vec<u8>, value: Slice) {
        self.ops.push((key, Some(value)));
    }

    fn remove_readable(&mut self, key: Vec<u8>) {
        self.local.insert(key.clone(), None);
        self.ops.push((key, None));
    }

    fn remove(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }
}

fn plan_transaction(
    tx: &mut Transaction<'_>,
    writes: Vec<Queued>,
    now_ms: i64,
    next_seq: &mut u64,
) -> Result<Vec<Committed>, StoreError> {
    let mut committed = Vec::with_capacity(writes.len());
    for write in writes {
        committed.push(plan_write(tx, write, now_ms, next_seq)?);
    }
    Ok(committed)
}

/// A write as the writer takes it from its queue: a put arrives serialised and hashed, and for
/// the types without an entries blob with its index entries too ([`Queued::prepare`]).
pub(crate) struct Queued {
    resource_type: String,
    id: String,
    precondition: Precondition,
    action: QueuedAction,
}

enum QueuedAction {
    Put(PutContent),
    Delete,
}

impl Queued {
    /// Does a write's work that does not depend on what the writer assigns, on the thread that
    /// commits (an HTTP worker, the import thread) instead of on the one writer thread every
    /// commit waits for: strips the server meta, serialises and hashes a put's resource, and
    /// for the types without an entries blob extracts its index entries and frees the resource.
    ///
    /// An entries blob holds `_lastUpdated`, which the writer assigns, so the types keeping one
    /// still have their entries extracted by the writer. The others keep only entries with an
    /// index key, and no key depends on what the writer assigns: `meta.lastUpdated` is a date,
    /// which gets no key (`keys::IndexLayout`), and no search parameter reads `meta.versionId`.
    /// Debug builds check every prepared put against the entries of its stored body.
    pub(crate) fn prepare(write: Write, layout: keys::IndexLayout) -> Queued {
        let extract_now = !crate::entries::kept_as_blob(&write.resource_type);
        Queued::with_entries_from(write, layout, extract_now)
    }

    /// `extract_now`: whether a put's index entries are extracted here, from the resource
    /// without server meta, or by the writer once it has set `meta`.
    pub(crate) fn with_entries_from(
        write: Write,
        layout: keys::IndexLayout,
        extract_now: bool,
    ) -> Queued {
        let action = match write.action {
            WriteAction::Put(resource) => QueuedAction::Put(PutContent::new(
                &write.resource_type,
                resource,
                layout,
                extract_now,
            )),
            WriteAction::Delete => QueuedAction::Delete,
        };
        Queued {
            resource_type: write.resource_type,
            id: write.id,
            precondition: write.precondition,
            action,
        }
    }
}

/// A put's content without the server-assigned meta: its compact serialisation, the content
/// hash stored versions carry (xxh3-128 of those bytes), and its index entries.
struct PutContent {
    serialised: Serialised,
    content_hash: u128,
    entries: PutEntries,
}

enum PutEntries {
    /// Extracted before the writer set `meta`; only for types without an entries blob.
    Extracted(Vec<IndexEntry>),
    /// To be extracted from the resource once the writer has set `meta`.
    AfterMeta(Value),
}

impl PutContent {
    fn new(
        resource_type: &str,
        mut resource: Value,
        layout: keys::IndexLayout,
        extract_now: bool,
    ) -> PutContent {
        strip_server_meta(&mut resource);
        // Serialised once: the content hash is taken over these bytes and the stored body is
        // spliced from them with `meta` filled in (`with_meta`).
        let serialised = Serialised::new(&resource);
        let content_hash = xxhash_rust::xxh3::xxh3_128(&serialised.bytes);
        let entries = if extract_now {
            PutEntries::Extracted(entries_to_store(resource_type, &resource, layout))
        } else {
            PutEntries::AfterMeta(resource)
        };
        PutContent {
            serialised,
            content_hash,
            entries,
        }
    }
}

impl PutEntries {
    /// The entries of the version whose stored body is `body` (`version`, written at `now_ms`).
    fn of_version(
        self,
        resource_type: &str,
        layout: keys::IndexLayout,
        body: &[u8],
        version: u64,
        now_ms: i64,
    ) -> Vec<IndexEntry> {
        match self {
            PutEntries::AfterMeta(mut resource) => {
                set_meta(&mut resource, version, now_ms);
                debug_assert_eq!(
                    body,
                    serde_json::to_vec(&resource).unwrap_or_default(),
                    "spliced body of a {resource_type}"
                );
                entries_to_store(resource_type, &resource, layout)
            }
            PutEntries::Extracted(entries) => {
                debug_assert!(!crate::entries::kept_as_blob(resource_type));
                debug_assert_eq!(
                    entries,
                    serde_json::from_slice(body)
                        .map(|stored| entries_to_store(resource_type, &stored, layout))
                        .unwrap_or_default(),
                    "entries of a {resource_type} extracted without meta"
                );
                entries
            }
        }
    }
}

/// The entries the writer keeps for a version of `resource_type`: all of them where they are
/// stored as a blob, else only those with an index key (the parameters without keys are not
/// even evaluated).
fn entries_to_store(
    resource_type: &str,
    resource: &Value,
    layout: keys::IndexLayout,
) -> Vec<IndexEntry> {
    let registry = search::Registry::r4();
    if crate::entries::kept_as_blob(resource_type) {
        return search::extract(registry, resource_type, resource);
    }
    let mut entries = search::extract_params(registry, resource_type, resource, |p| {
        layout.indexes_param(resource_type, &p.code)
    });
    entries.retain(|entry| layout.has_key(resource_type, entry));
    entries
}

fn plan_write(
    tx: &mut Transaction<'_>,
    write: Queued,
    now_ms: i64,
    next_seq: &mut u64,
) -> Result<Committed, StoreError> {
    let rt = write.resource_type.as_str();
    let id = write.id.as_str();
    let current_key = keys::current(rt, id);
    let current_raw = match write.precondition {
        // A random id the caller has just generated names nothing stored: skip the lookup,
        // which would miss through the memtables and every table's filter.
        Precondition::NewId => {
            debug_assert!(
                tx.get(&current_key)?.is_none(),
                "{rt}/{id} was written as a new id but exists"
            );
            None
        }
        _ => tx.get(&current_key)?,
    };
    let current = current_raw.as_deref().and_then(RecordHeader::peek);
    let live_version = current.as_ref().filter(|c| !c.deleted).map(|c| c.version);

    match write.precondition {
        Precondition::None => {}
        Precondition::MustNotExist | Precondition::NewId => {
            if let Some(version) = live_version {
                return Err(StoreError::AlreadyExists {
                    resource_type: rt.to_owned(),
                    id: id.to_owned(),
                    version,
                });
            }
        }
        Precondition::VersionIs(expected) => {
            if live_version != Some(expected) {
                return Err(StoreError::VersionConflict {
                    resource_type: rt.to_owned(),
                    id: id.to_owned(),
                    expected,
                    current: live_version,
                });
            }
        }
    }

    let next_version = current.as_ref().map_or(1, |c| c.version + 1);
    match write.action {
        QueuedAction::Put(PutContent {
            serialised,
            content_hash,
            entries,
        }) => {
            if let (Some(c), Some(raw)) = (&current, &current_raw)
                && !c.deleted
                && c.content_hash == content_hash
            {
                let unchanged = StoredVersion::decode(rt, id, raw)
                    .ok_or_else(|| StoreError::Corrupt(format!("{rt}/{id}")))?;
                return Ok(Committed {
                    outcome: WriteOutcome::Unchanged,
                    version: unchanged,
                });
            }
            let body = serialised.with_meta(next_version, now_ms);
            let entries = entries.of_version(rt, tx.index_layout, &body, next_version, now_ms);
            let method = if live_version.is_some() {
                Method::Update
            } else {
                Method::Create
            };
            let version = StoredVersion {
                resource_type: rt.to_owned(),
                id: id.to_owned(),
                version: next_version,
                last_updated_ms: now_ms,
                method,
                content_hash,
                body: Bytes::from(body),
            };
            if live_version.is_some() {
                remove_index_entries(tx, rt, id, current_raw.as_ref())?;
            }
            supersede(tx, rt, id, current.as_ref(), current_raw.as_ref());
            let (covering, layout) = (tx.covering, tx.index_layout);
            for entry in entries.iter().filter(|e| layout.has_key(rt, e)) {
                let value = match covering.find(rt, &entry.param) {
                    Some(declared) => Slice::from(declared.entry_value(&serialised)),
                    None => Slice::empty(),
                };
                tx.put(
                    keys::index(rt, &entry.param, &entry.value.key_bytes(), id),
                    value,
                );
            }
            if crate::entries::kept_as_blob(rt) {
                let blob = crate::entries::encode(&entries, rt, id)?;
                tx.put_readable(keys::entries(rt, id), blob);
            } else if current.is_some() {
                // A blob written before its type stopped keeping one would describe this
                // version's predecessor.
                tx.remove_readable(keys::entries(rt, id));
            }
            tx.put_readable(current_key, Slice::from(version.encode()));
            tx.put(
                keys::log(*next_seq),
                Slice::from(keys::log_value(rt, id, next_version)),
            );
            *next_seq += 1;
            let outcome = match method {
                Method::Create => WriteOutcome::Created,
                _ => WriteOutcome::Updated,
            };
            Ok(Committed { outcome, version })
        }
        QueuedAction::Delete => {
            let Some(_) = live_version else {
                // Deleting what is absent or already deleted succeeds and changes nothing (R4 3.1.0.7.1).
                let version = StoredVersion {
                    resource_type: rt.to_owned(),
                    id: id.to_owned(),
                    version: current.as_ref().map_or(0, |c| c.version),
                    last_updated_ms: now_ms,
                    method: Method::Delete,
                    content_hash: 0,
                    body: Bytes::new(),
                };
                return Ok(Committed {
                    outcome: WriteOutcome::Unchanged,
                    version,
                });
            };
            let version = StoredVersion {
                resource_type: rt.to_owned(),
                id: id.to_owned(),
                version: next_version,
                last_updated_ms: now_ms,
                method: Method::Delete,
                content_hash: 0,
                body: Bytes::new(),
            };
            remove_index_entries(tx, rt, id, current_raw.as_ref())?;
            tx.remove_readable(keys::entries(rt, id));
            supersede(tx, rt, id, current.as_ref(), current_raw.as_ref());
            tx.put_readable(current_key, Slice::from(version.encode()));
            tx.put(
                keys::log(*next_seq),
                Slice::from(keys::log_value(rt, id, next_version)),
            );
            *next_seq += 1;
            Ok(Committed {
                outcome: WriteOutcome::Deleted,
                version,
            })
        }
    }
}

/// Move the version a write replaces into the history table. The current version lives only
/// under its current key (one copy of each body on disk); `vread` and instance history look
/// there for it.
fn supersede(
    tx: &mut Transaction<'_>,
    rt: &str,
    id: &str,
    current: Option<&RecordHeader>,
    current_raw: Option<&Slice>,
) {
    if let (Some(header), Some(raw)) = (current, current_raw) {
        tx.put(keys::history(rt, id, header.version), raw.clone());
    }
}

/// Remove the index keys of the version `current_raw` holds: every entry's, including those
/// the current layout leaves out, which stores written before hold (`keys::IndexLayout`).
fn remove_index_entries(
    tx: &mut Transaction<'_>,
    rt: &str,
    id: &str,
    current_raw: Option<&Slice>,
) -> Result<(), StoreError> {
    let blob = tx.get(&keys::entries(rt, id))?;
    let entries = crate::entries::of(rt, id, blob.as_deref(), || Ok(current_raw.cloned()))?;
    for entry in entries {
        tx.remove(keys::index(rt, &entry.param, &entry.value.key_bytes(), id));
    }
    Ok(())
}

/// Remove the server-assigned `meta.versionId`/`meta.lastUpdated` (and `meta` when nothing else
/// is left in it), so that hashing the rest recognises a PUT of identical content as a no-op.
pub(crate) fn strip_server_meta(resource: &mut Value) {
    if let Some(object) = resource.as_object_mut() {
        let meta_now_empty = match object.get_mut("meta").and_then(Value::as_object_mut) {
            Some(meta) => {
                meta.shift_remove("versionId");
                meta.shift_remove("lastUpdated");
                meta.is_empty()
            }
            None => false,
        };
        if meta_now_empty {
            object.shift_remove("meta");
        }
    }
}

/// Hash the resource as it would be stored minus server-assigned metadata. Leaves `meta`
/// without `versionId`/`lastUpdated`. Stored versions carry this hash, so it must stay the
/// xxh3-128 of the compact serialisation.
#[cfg(test)]
fn content_hash(resource: &mut Value) -> u128 {
    strip_server_meta(resource);
    xxhash_rust::xxh3::xxh3_128(&Serialised::new(resource).bytes)
}

/// A resource's compact JSON (exactly `serde_json::to_vec`), with where each top-level member
/// lies in it, so that the stored body can be spliced from it rather than serialised again.
pub(crate) struct Serialised {
    bytes: Vec<u8>,
    /// Per top-level member, in order: its name and the byte range of `"name":value`.
    members: Vec<(String, std::ops::Range<usize>)>,
    /// The byte range of `meta`'s value when it is an object.
    meta_object: Option<std::ops::Range<usize>>,
}

impl Serialised {
    pub(crate) fn new(resource: &Value) -> Serialised {
        let Some(object) = resource.as_object() else {
            return Serialised {
                bytes: serde_json::to_vec(resource).unwrap_or_default(),
                members: Vec::new(),
                meta_object: None,
            };
        };
        // Writing to a Vec cannot fail, and a `Value` always serialises.
        let mut bytes = Vec::with_capacity(1024);
        let mut members = Vec::with_capacity(object.len());
        let mut meta_object = None;
        bytes.push(b'{');
        for (i, (name, value)) in object.iter().enumerate() {
            if i > 0 {
                bytes.push(b',');
            }
            let start = bytes.len();
            let _ = serde_json::to_writer(&mut bytes, name);
            bytes.push(b':');
            let value_start = bytes.len();
            let _ = serde_json::to_writer(&mut bytes, value);
            if name == "meta" && value.is_object() {
                meta_object = Some(value_start..bytes.len());
            }
            members.push((name.clone(), start..bytes.len()));
        }
        bytes.push(b'}');
        Serialised {
            bytes,
            members,
            meta_object,
        }
    }

    /// The named members (in the order named; members the resource lacks are left out) as one
    /// compact JSON object, appended to `out`.
    pub(crate) fn members_object(&self, names: &[String], out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for name in names {
            if let Some((_, range)) = self.members.iter().find(|(member, _)| member == name) {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(&self.bytes[range.clone()]);
            }
        }
        out.push(b'}');
    }

    /// The body [`set_meta`] then `serde_json::to_vec` would give, from the bytes at hand.
    fn with_meta(&self, version: u64, now_ms: i64) -> Vec<u8> {
        if self.members.is_empty() && !self.bytes.starts_with(b"{") {
            return self.bytes.clone();
        }
        let others: Vec<&std::ops::Range<usize>> = self
            .members
            .iter()
            .filter(|(name, _)| name != "meta")
            .map(|(_, range)| range)
            .collect();
        let position_of = |wanted: &str| {
            self.members
                .iter()
                .filter(|(name, _)| name != "meta")
                .position(|(name, _)| name == wanted)
        };
        let position = position_of("id")
            .or_else(|| position_of("resourceType"))
            .map_or(0, |i| i + 1);
        let mut meta = Vec::with_capacity(64);
        meta.extend_from_slice(b"\"meta\":{\"versionId\":");
        let _ = serde_json::to_writer(&mut meta, &version.to_string());
        meta.extend_from_slice(b",\"lastUpdated\":");
        let _ = serde_json::to_writer(&mut meta, &format_instant(now_ms));
        if let Some(range) = &self.meta_object {
            // The existing members, without the object's braces.
            let inner = &self.bytes[range.start + 1..range.end - 1];
            if !inner.is_empty() {
                meta.push(b',');
                meta.extend_from_slice(inner);
            }
        }
        meta.push(b'}');

        let mut body = Vec::with_capacity(self.bytes.len() + meta.len() + 1);
        body.push(b'{');
        let mut first = true;
        let mut push = |body: &mut Vec<u8>, part: &[u8]| {
            if !first {
                body.push(b',');
            }
            first = false;
            body.extend_from_slice(part);
        };
        for range in &others[..position] {
            push(&mut body, &self.bytes[(*range).clone()]);
        }
        push(&mut body, &meta);
        for range in &others[position..] {
            push(&mut body, &self.bytes[(*range).clone()]);
        }
        body.push(b'}');
        body
    }
}

/// Put `meta.versionId` and `meta.lastUpdated` first in `meta`, and `meta` right after `id`
/// (the order of the FHIR definitions, which readers expect).
fn set_meta(resource: &mut Value, version: u64, now_ms: i64) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let mut meta = Map::new();
    meta.insert("versionId".into(), Value::String(version.to_string()));
    meta.insert("lastUpdated".into(), Value::String(format_instant(now_ms)));
    if let Some(Value::Object(existing)) = object.shift_remove("meta") {
        meta.extend(existing);
    }
    let position_of = |name: &str| object.keys().position(|k| k == name);
    let position = position_of("id")
        .or_else(|| position_of("resourceType"))
        .map_or(0, |i| i + 1);
    object.shift_insert(position, "meta".into(), Value::Object(meta));
}

/// An R4 `instant` with millisecond precision in UTC.
pub fn format_instant(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn now_millis() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memtable_over_its_size_is_sealed_without_fjall_s_worker() {
        let dir = tempfile::tempdir().unwrap();
        // No worker thread: nothing but the writer seals a memtable.
        let db = Database::builder(dir.path())
            .worker_threads_unchecked(0)
            .open()
            .unwrap();
        let data = db
            .keyspace("data", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let at = 1024 * 1024;
        let value = vec![b'x'; 64 * 1024];
        for i in 0..8u8 {
            data.insert([b'a', i], value.as_slice()).unwrap();
        }
        MemtableSealing::seal_if_over(&data, at);
        assert_eq!(data.sealed_memtable_count(), 0, "512 KiB is under the size");
        for i in 0..16u8 {
            data.insert([b'b', i], value.as_slice()).unwrap();
        }
        MemtableSealing::seal_if_over(&data, at);
        assert_eq!(data.sealed_memtable_count(), 1, "1.5 MiB is over it");
        assert_eq!(data.tree.active_memtable().size(), 0);
        assert!(data.get([b'a', 0]).unwrap().is_some());
    }

    #[test]
    fn meta_goes_after_id_and_keeps_profiles() {
        let mut r = serde_json::json!({
            "resourceType": "Patient", "id": "p1", "active": true,
            "meta": {"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient"], "versionId": "9"}
        });
        let _ = content_hash(&mut r);
        set_meta(&mut r, 2, 0);
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["resourceType", "id", "meta", "active"]);
        assert_eq!(r["meta"]["versionId"], "2");
        assert_eq!(r["meta"]["lastUpdated"], "1970-01-01T00:00:00.000Z");
        assert!(r["meta"]["profile"].is_array());
    }

    #[test]
    fn streamed_content_hash_equals_the_hash_of_the_serialised_bytes() {
        // Stored versions carry hashes computed from `to_vec`; they must stay comparable.
        for resource in [
            serde_json::json!({"resourceType": "Patient", "id": "p1"}),
            serde_json::json!({"resourceType": "Patient", "id": "p1", "name": [{"text": "山田\u{3000}太郎"}], "meta": {"profile": ["x"]}}),
            serde_json::json!({"resourceType": "Observation", "id": "o", "valueQuantity": {"value": 12.50}, "note": [{"text": "x".repeat(5000)}]}),
        ] {
            let mut streamed = resource.clone();
            let expected = xxhash_rust::xxh3::xxh3_128(&serde_json::to_vec(&resource).unwrap());
            assert_eq!(content_hash(&mut streamed), expected);
        }
    }

    #[test]
    fn spliced_bodies_equal_serialising_after_set_meta() {
        let resources = [
            serde_json::json!({"resourceType": "Patient", "id": "p1", "active": true}),
            serde_json::json!({"resourceType": "Patient", "id": "p1", "meta": {"versionId": "3", "lastUpdated": "2020-01-01T00:00:00Z"}}),
            serde_json::json!({"resourceType": "Patient", "meta": {"profile": ["x"], "versionId": "1"}, "id": "p1", "name": [{"text": "山田\u{3000}太郎 \"q\" \\"}]}),
            serde_json::json!({"active": false, "meta": {"security": [{"code": "R"}]}, "resourceType": "Observation", "id": "o"}),
            serde_json::json!({"resourceType": "Observation", "valueQuantity": {"value": 12.50}}),
            serde_json::json!({"id": "x", "meta": "not an object", "resourceType": "Basic"}),
            serde_json::json!({"meta": {}, "note": [{"text": "x".repeat(5000)}]}),
            serde_json::json!({}),
            serde_json::json!({"resourceType": "Basic", "id": "b", "meta": {"tag": []}}),
        ];
        for resource in resources {
            let mut expected = resource.clone();
            let hash = content_hash(&mut expected);
            set_meta(&mut expected, 7, 1_700_000_000_123);
            let mut stripped = resource.clone();
            strip_server_meta(&mut stripped);
            let serialised = Serialised::new(&stripped);
            assert_eq!(
                xxhash_rust::xxh3::xxh3_128(&serialised.bytes),
                hash,
                "{resource}"
            );
            assert_eq!(
                String::from_utf8(serialised.with_meta(7, 1_700_000_000_123)).unwrap(),
                String::from_utf8(serde_json::to_vec(&expected).unwrap()).unwrap(),
                "{resource}"
            );
        }
    }

    #[test]
    fn content_hash_ignores_server_metadata() {
        let mut a = serde_json::json!({"resourceType": "Patient", "id": "p1", "meta": {"versionId": "1", "lastUpdated": "2020-01-01T00:00:00Z"}});
        let mut b = serde_json::json!({"resourceType": "Patient", "id": "p1"});
        assert_eq!(content_hash(&mut a), content_hash(&mut b));
        let mut c = serde_json::json!({"resourceType": "Patient", "id": "p1", "active": true});
        assert_ne!(content_hash(&mut b), content_hash(&mut c));
    }
}

#[cfg(test)]
mod prepared_tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::covering::Declarations;
    use crate::{CoveringIndex, Write};

    const NOW_MS: i64 = 1_700_000_000_123;

    /// A read's AuditEvent as the gateway writes it (disclosure.rs), with the members its
    /// search parameters read: references, tokens with and without keys, dates.
    fn read_audit_event(id: &str, patient: &str, record: &str) -> Value {
        let coding =
            |system: &str, code: &str| json!({"system": system, "code": code, "display": code});
        json!({
            "resourceType": "AuditEvent", "id": id, "action": "R",
            "recorded": "2026-11-26T05:00:00.000Z", "outcome": "0",
            "outcomeDesc": "disclosed 1, withheld 0",
            "type": coding("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest"),
            "subtype": [coding("http://hl7.org/fhir/restful-interaction", "read")],
            "purposeOfEvent": [{"coding": [{"system": "urn:musubi:purpose", "code": "TREAT"}]}],
            "agent": [{"who": {"identifier": {"system": "urn:musubi:client", "value": "demo-clinic"},
                        "display": "demo-clinic"}, "requestor": true}],
            "source": {"site": "Musubi", "observer": {"display": "Musubi"},
                       "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4")]},
            "entity": [
                {"what": {"reference": patient},
                 "type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1"),
                 "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "1")},
                {"what": {"reference": record},
                 "type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2"),
                 "detail": [{"type": "decision", "valueString": "permit"}]}
            ]
        })
    }

    /// Resources of several types, among them AuditEvents, one sent with server meta and a
    /// profile, and a second version of one of them.
    fn writes() -> Vec<Write> {
        let put = |rt: &str, id: &str, precondition, resource: Value| Write {
            resource_type: rt.into(),
            id: id.into(),
            precondition,
            action: WriteAction::Put(resource),
        };
        let mut with_meta = read_audit_event("a2", "Patient/p2", "Immunization/i2");
        with_meta["meta"] = json!({"versionId": "7", "lastUpdated": "2020-01-01T00:00:00Z",
                                   "profile": ["http://example.org/audit"]});
        vec![
            put(
                "Patient",
                "p1",
                Precondition::MustNotExist,
                json!({
                "resourceType": "Patient", "id": "p1", "name": [{"family": "山田", "given": ["太郎"]}],
                "birthDate": "2024-01-10", "meta": {"lastUpdated": "2020-01-01T00:00:00Z"}}),
            ),
            put(
                "Immunization",
                "i1",
                Precondition::NewId,
                json!({
                "resourceType": "Immunization", "id": "i1", "status": "completed",
                "vaccineCode": {"coding": [{"system": "urn:oid:1.2.392.100495.20.2.74", "code": "631340QA1024"}]},
                "patient": {"reference": "Patient/p1"}, "occurrenceDateTime": "2024-06-03"}),
            ),
            put(
                "AuditEvent",
                "a1",
                Precondition::NewId,
                read_audit_event("a1", "Patient/p1", "Immunization/i1"),
            ),
            put("AuditEvent", "a2", Precondition::None, with_meta),
            put(
                "AuditEvent",
                "a1",
                Precondition::VersionIs(1),
                read_audit_event("a1", "Patient/p2", "Immunization/i1"),
            ),
            Write {
                resource_type: "AuditEvent".into(),
                id: "a2".into(),
                precondition: Precondition::None,
                action: WriteAction::Delete,
            },
        ]
    }

    /// What one transaction of `writes` plans on an empty store at [`NOW_MS`]: the versions it
    /// answers with and every key operation, in order.
    fn planned(writes: Vec<Queued>) -> (Vec<StoredVersion>, KeyOps) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let budget = crate::engine::MemoryBudget::from_cache_bytes(8 << 20);
        let keyspaces =
            crate::layout::Keyspaces::open(&db, &budget, crate::layout::Layout::AuditApart)
                .unwrap();
        let covering = Declarations::new(&[CoveringIndex {
            resource_type: "Immunization".into(),
            param: "patient".into(),
            members: vec!["status".into(), "occurrenceDateTime".into()],
        }]);
        let group = Overlay::with_hasher(overlay_hasher());
        let mut tx = Transaction {
            keyspaces: &keyspaces,
            group: &group,
            covering: &covering,
            index_layout: keys::IndexLayout::CURRENT,
            local: Overlay::with_hasher(overlay_hasher()),
            ops: Vec::new(),
        };
        let mut next_seq = 0;
        let committed = plan_transaction(&mut tx, writes, NOW_MS, &mut next_seq).unwrap();
        let versions = committed.into_iter().map(|c| c.version).collect();
        (versions, tx.ops)
    }

    #[test]
    fn prepared_puts_plan_the_same_records_and_keys_as_puts_the_writer_extracts() {
        let layout = keys::IndexLayout::CURRENT;
        let prepared: Vec<Queued> = writes()
            .into_iter()
            .map(|w| Queued::prepare(w, layout))
            .collect();
        let extracted_by_writer: Vec<Queued> = writes()
            .into_iter()
            .map(|w| Queued::with_entries_from(w, layout, false))
            .collect();
        let prepared_audit_events = prepared
            .iter()
            .filter(|q| matches!(&q.action, QueuedAction::Put(put) if matches!(put.entries, PutEntries::Extracted(_))))
            .map(|q| q.resource_type.as_str())
            .collect::<Vec<_>>();
        assert_eq!(
            prepared_audit_events, ["AuditEvent"; 3],
            "only AuditEvents come with their entries"
        );

        let (versions, ops) = planned(prepared);
        let (expected_versions, expected_ops) = planned(extracted_by_writer);
        let keys_of = |ops: &KeyOps| {
            ops.iter()
                .map(|(key, value)| {
                    (
                        String::from_utf8_lossy(key).into_owned(),
                        value.as_deref().map(<[u8]>::to_vec),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(keys_of(&ops), keys_of(&expected_ops));
        assert_eq!(versions.len(), expected_versions.len());
        for (version, expected) in versions.iter().zip(&expected_versions) {
            assert_eq!(
                version.encode(),
                expected.encode(),
                "{}/{}",
                version.resource_type,
                version.id
            );
        }
        // The AuditEvents' references are indexed, and the first version's keys removed.
        let index_keys: Vec<String> = keys_of(&ops)
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| key.starts_with("i\0AuditEvent\0"))
            .collect();
        assert!(
            index_keys
                .iter()
                .any(|k| k.contains("patient\0Patient/p1\0a1"))
        );
        assert!(
            index_keys
                .iter()
                .any(|k| k.contains("patient\0Patient/p2\0a1"))
        );
        assert!(
            index_keys
                .iter()
                .any(|k| k.contains("entity\0Immunization/i2\0a2"))
        );
    }

    #[tokio::test]
    async fn prepared_puts_give_the_same_search_answers_as_puts_the_writer_extracts() {
        use crate::{FjallStore, Store, StoreOptions};
        let layout = keys::IndexLayout::CURRENT;
        let more_events = |n: usize| -> Vec<Write> {
            (0..n)
                .map(|i| Write {
                    resource_type: "AuditEvent".into(),
                    id: format!("e{i}"),
                    precondition: Precondition::NewId,
                    action: WriteAction::Put(read_audit_event(
                        &format!("e{i}"),
                        &format!("Patient/p{}", i % 3),
                        &format!("Immunization/i{}", i % 5),
                    )),
                })
                .collect()
        };
        let (prepared_dir, writer_dir) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let prepared = FjallStore::open(prepared_dir.path(), &StoreOptions::default()).unwrap();
        let by_writer = FjallStore::open(writer_dir.path(), &StoreOptions::default()).unwrap();
        for batch in [writes(), more_events(12)] {
            prepared.commit(batch.clone()).await.unwrap();
            let queued = batch
                .into_iter()
                .map(|w| Queued::with_entries_from(w, layout, false))
                .collect();
            by_writer.commit_queued(queued).await.unwrap();
        }
        let queries: &[(&str, &[(&str, &str)])] = &[
            ("AuditEvent", &[("patient", "Patient/p1")]),
            ("AuditEvent", &[("entity", "Immunization/i2")]),
            (
                "AuditEvent",
                &[("patient", "Patient/p2"), ("subtype", "read")],
            ),
            ("AuditEvent", &[("entity-type", "2"), ("outcome", "0")]),
            ("AuditEvent", &[("subtype", "read"), ("_sort", "-date")]),
            ("AuditEvent", &[("_id", "e3")]),
            ("AuditEvent", &[("_lastUpdated", "ge2020-01-01")]),
            ("Immunization", &[("patient", "Patient/p1")]),
            ("Patient", &[("family", "山田")]),
        ];
        for (rt, params) in queries {
            let answer = |store: &FjallStore| {
                let page = crate::test_support::search_page(store, rt, params, 50);
                let ids: Vec<String> = page.matches.into_iter().map(|v| v.id).collect();
                (page.total, ids)
            };
            let expected = answer(&by_writer);
            assert!(!expected.1.is_empty(), "{rt} {params:?} finds something");
            assert_eq!(answer(&prepared), expected, "{rt} {params:?}");
        }
        prepared.shutdown().await.unwrap();
        by_writer.shutdown().await.unwrap();
    }

    #[test]
    fn keyed_entries_of_types_without_a_blob_do_not_depend_on_server_meta() {
        let layout = keys::IndexLayout::CURRENT;
        for rt in crate::entries::RECOMPUTED {
            let mut resource = read_audit_event("a1", "Patient/p1", "Immunization/i1");
            resource["resourceType"] = json!(rt);
            let without_meta = entries_to_store(rt, &resource, layout);
            set_meta(&mut resource, 12, NOW_MS);
            assert_eq!(
                entries_to_store(rt, &resource, layout),
                without_meta,
                "{rt}"
            );
            let all = search::extract(search::Registry::r4(), rt, &resource);
            let keyed: Vec<IndexEntry> = all
                .iter()
                .filter(|entry| layout.has_key(rt, entry))
                .cloned()
                .collect();
            assert_eq!(
                without_meta, keyed,
                "{rt}: every entry with a key, and only those"
            );
            assert!(
                all.iter().any(|e| e.param == "_lastUpdated"),
                "{rt}: the writer's lastUpdated is indexed, without a key"
            );
        }
    }
}
