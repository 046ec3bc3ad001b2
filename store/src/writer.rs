//! The single writer: drains queued transactions, checks their preconditions, assigns versions,
//! and commits whole groups with one `fdatasync` (group commit).
//!
//! One thread owns every write, so preconditions (`If-Match`, create-if-absent) are checked and
//! applied without races, and concurrent clients share fsyncs instead of queueing for one each.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, TryRecvError};

use bytes::Bytes;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::keys;
use crate::record::{Method, RecordHeader, StoredVersion};
use crate::wal::{KvOp, Wal};
use crate::{Committed, Precondition, StoreError, Write, WriteAction, WriteOutcome};

/// How many queued transactions one group may take; bounds the latency of the first of them.
const MAX_GROUP: usize = 1024;
/// Checkpoint once the log holds this much, so restart replay stays short.
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

pub(crate) enum Message {
    Commit {
        writes: Vec<Write>,
        reply: oneshot::Sender<Result<Vec<Committed>, StoreError>>,
    },
    Shutdown {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

pub(crate) struct Writer {
    pub db: sled::Db,
    pub wal: Wal,
    pub next_seq: u64,
    pub data_dir: std::path::PathBuf,
    /// Set after a failed fsync: the state of the log is unknown, so no further write is accepted.
    /// Shared with the store handle so readiness checks see it.
    pub poisoned: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

type Overlay = HashMap<Vec<u8>, Option<Vec<u8>>>;

impl Writer {
    pub(crate) fn run(mut self, inbox: Receiver<Message>) {
        while let Ok(first) = inbox.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_GROUP {
                match inbox.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let mut shutdown = None;
            let mut commits = Vec::with_capacity(batch.len());
            for message in batch {
                match message {
                    Message::Commit { writes, reply } => commits.push((writes, reply)),
                    Message::Shutdown { reply } => shutdown = Some(reply),
                }
            }
            self.commit_group(commits);
            if self.wal.len() > CHECKPOINT_BYTES
                && let Err(error) = self.checkpoint()
            {
                tracing::error!(%error, "checkpoint failed; the write-ahead log keeps the data");
            }
            if let Some(reply) = shutdown {
                let result = self.checkpoint();
                let _ = reply.send(result);
                return;
            }
        }
        // Every handle was dropped without an explicit shutdown: still leave a clean state.
        if let Err(error) = self.checkpoint() {
            tracing::error!(%error, "final checkpoint failed; the write-ahead log keeps the data");
        }
    }

    fn commit_group(&mut self, commits: Vec<(Vec<Write>, CommitReply)>) {
        if commits.is_empty() {
            return;
        }
        let now_ms = now_millis();
        let mut group: Overlay = HashMap::new();
        let mut pending = Vec::with_capacity(commits.len());
        let mut sled_batch = sled::Batch::default();
        for (writes, reply) in commits {
            if self.poisoned.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = reply.send(Err(StoreError::Unavailable(
                    "an earlier disk write failed; restart to recover from the log".into(),
                )));
                continue;
            }
            let mut tx = Transaction {
                db: &self.db,
                group: &group,
                local: HashMap::new(),
                ops: Vec::new(),
            };
            match plan_transaction(&mut tx, writes, now_ms, &mut self.next_seq) {
                Ok(committed) => {
                    let ops = tx.ops;
                    if !ops.is_empty()
                        && let Err(error) = self.wal.append(&ops)
                    {
                        let _ = reply.send(Err(StoreError::Io(error.to_string())));
                        continue;
                    }
                    for op in ops {
                        match &op.value {
                            Some(v) => sled_batch.insert(op.key.clone(), v.clone()),
                            None => sled_batch.remove(op.key.clone()),
                        }
                        group.insert(op.key, op.value);
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
        if let Err(error) = self.wal.sync() {
            tracing::error!(%error, "fdatasync of the write-ahead log failed; refusing further writes");
            self.poisoned
                .store(true, std::sync::atomic::Ordering::Relaxed);
            for (reply, _) in pending {
                let _ = reply.send(Err(StoreError::Io(error.to_string())));
            }
            return;
        }
        if let Err(error) = self.db.apply_batch(sled_batch) {
            // The log has the group; a restart replays it. Serving on would read stale state.
            tracing::error!(%error, "applying a committed group to sled failed; refusing further writes");
            self.poisoned
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        for (reply, committed) in pending {
            let _ = reply.send(Ok(committed));
        }
    }

    /// Make sled's state durable on its own (flush, then a real fsync of every file) and empty
    /// the log.
    pub(crate) fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| StoreError::Io(e.to_string()))?;
        crate::engine::fsync_tree(&self.data_dir.join("sled"))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        self.wal
            .truncate()
            .map_err(|e| StoreError::Io(e.to_string()))?;
        tracing::debug!(wal = %self.wal.path().display(), "checkpoint complete");
        Ok(())
    }
}

type CommitReply = oneshot::Sender<Result<Vec<Committed>, StoreError>>;

/// Reads see, in order: this transaction's own writes, the group's earlier transactions, sled.
struct Transaction<'a> {
    db: &'a sled::Db,
    group: &'a Overlay,
    local: Overlay,
    ops: Vec<KvOp>,
}

impl Transaction<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.local.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.group.get(key) {
            return Ok(v.clone());
        }
        self.db
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StoreError::Io(e.to_string()))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.local.insert(key.clone(), Some(value.clone()));
        self.ops.push(KvOp {
            key,
            value: Some(value),
        });
    }

    fn remove(&mut self, key: Vec<u8>) {
        self.local.insert(key.clone(), None);
        self.ops.push(KvOp { key, value: None });
    }
}

fn plan_transaction(
    tx: &mut Transaction<'_>,
    writes: Vec<Write>,
    now_ms: i64,
    next_seq: &mut u64,
) -> Result<Vec<Committed>, StoreError> {
    let mut committed = Vec::with_capacity(writes.len());
    for write in writes {
        committed.push(plan_write(tx, write, now_ms, next_seq)?);
    }
    Ok(committed)
}

fn plan_write(
    tx: &mut Transaction<'_>,
    write: Write,
    now_ms: i64,
    next_seq: &mut u64,
) -> Result<Committed, StoreError> {
    let rt = write.resource_type.as_str();
    let id = write.id.as_str();
    let current_key = keys::current(rt, id);
    let current_raw = tx.get(&current_key)?;
    let current = current_raw.as_deref().and_then(RecordHeader::peek);
    let live_version = current.as_ref().filter(|c| !c.deleted).map(|c| c.version);

    match write.precondition {
        Precondition::None => {}
        Precondition::MustNotExist => {
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
        WriteAction::Put(mut resource) => {
            let content_hash = content_hash(&mut resource);
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
            set_meta(&mut resource, next_version, now_ms);
            let entries = search::extract(search::Registry::r4(), rt, &resource);
            let body = serde_json::to_vec(&resource)
                .map_err(|e| StoreError::Invalid(format!("cannot serialise {rt}/{id}: {e}")))?;
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
            remove_index_entries(tx, rt, id)?;
            for entry in &entries {
                tx.put(
                    keys::index(rt, &entry.param, &entry.value.key_bytes(), id),
                    Vec::new(),
                );
            }
            let entries_blob = postcard::to_allocvec(&entries)
                .map_err(|e| StoreError::Invalid(format!("index entries of {rt}/{id}: {e}")))?;
            tx.put(keys::entries(rt, id), entries_blob);
            let record = version.encode();
            tx.put(keys::history(rt, id, next_version), record.clone());
            tx.put(current_key, record);
            tx.put(keys::log(*next_seq), keys::log_value(rt, id, next_version));
            *next_seq += 1;
            let outcome = match method {
                Method::Create => WriteOutcome::Created,
                _ => WriteOutcome::Updated,
            };
            Ok(Committed { outcome, version })
        }
        WriteAction::Delete => {
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
            remove_index_entries(tx, rt, id)?;
            tx.remove(keys::entries(rt, id));
            let record = version.encode();
            tx.put(keys::history(rt, id, next_version), record.clone());
            tx.put(current_key, record);
            tx.put(keys::log(*next_seq), keys::log_value(rt, id, next_version));
            *next_seq += 1;
            Ok(Committed {
                outcome: WriteOutcome::Deleted,
                version,
            })
        }
    }
}

fn remove_index_entries(tx: &mut Transaction<'_>, rt: &str, id: &str) -> Result<(), StoreError> {
    let Some(blob) = tx.get(&keys::entries(rt, id))? else {
        return Ok(());
    };
    let entries: Vec<search::IndexEntry> = postcard::from_bytes(&blob)
        .map_err(|e| StoreError::Corrupt(format!("index entries of {rt}/{id}: {e}")))?;
    for entry in entries {
        tx.remove(keys::index(rt, &entry.param, &entry.value.key_bytes(), id));
    }
    Ok(())
}

/// Hash the resource as it would be stored minus server-assigned metadata, so a PUT of identical
/// content is recognised as a no-op. Leaves `meta` without `versionId`/`lastUpdated`.
fn content_hash(resource: &mut Value) -> u128 {
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
    let canonical = serde_json::to_vec(resource).unwrap_or_default();
    xxhash_rust::xxh3::xxh3_128(&canonical)
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
    fn content_hash_ignores_server_metadata() {
        let mut a = serde_json::json!({"resourceType": "Patient", "id": "p1", "meta": {"versionId": "1", "lastUpdated": "2020-01-01T00:00:00Z"}});
        let mut b = serde_json::json!({"resourceType": "Patient", "id": "p1"});
        assert_eq!(content_hash(&mut a), content_hash(&mut b));
        let mut c = serde_json::json!({"resourceType": "Patient", "id": "p1", "active": true});
        assert_ne!(content_hash(&mut b), content_hash(&mut c));
    }
}
