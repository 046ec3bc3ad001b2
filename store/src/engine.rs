//! [`SledStore`]: sled for data and reads, the write-ahead log for durability.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::keys;
use crate::record::StoredVersion;
use crate::wal::Wal;
use crate::writer::{Message, Writer};
use crate::{
    CommitFuture, HistoryPage, HistoryScope, SearchPage, SearchRequest, Store, StoreError, Write,
};

/// Tuning for the embedded store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// sled's page cache, in bytes. Small by default: the OS page cache does most of the work.
    pub cache_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

pub struct SledStore {
    db: sled::Db,
    poisoned: Arc<AtomicBool>,
    inbox: Mutex<Option<Sender<Message>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl SledStore {
    /// Open the store in `data_dir`, replaying any write-ahead log left by a crash.
    pub fn open(data_dir: &Path, options: &StoreOptions) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Io(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let db = sled::Config::new()
            .path(data_dir.join("sled"))
            .cache_capacity(options.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", data_dir.display())))?;
        let (wal, frames) = Wal::open(&data_dir.join("wal.log"))
            .map_err(|e| StoreError::Io(format!("cannot open write-ahead log: {e}")))?;
        let replayed = frames.len();
        for ops in frames {
            let mut batch = sled::Batch::default();
            for op in ops {
                match op.value {
                    Some(v) => batch.insert(op.key, v),
                    None => batch.remove(op.key),
                }
            }
            db.apply_batch(batch)
                .map_err(|e| StoreError::Io(format!("replay failed: {e}")))?;
        }
        let next_seq = match db.scan_prefix(keys::LOG_PREFIX).next_back() {
            Some(entry) => {
                let (key, _) = entry.map_err(|e| StoreError::Io(e.to_string()))?;
                keys::seq_of_log_key(&key).map_or(1, |s| s + 1)
            }
            None => 1,
        };
        let poisoned = Arc::new(AtomicBool::new(false));
        let mut writer = Writer {
            db: db.clone(),
            wal,
            next_seq,
            data_dir: data_dir.to_owned(),
            poisoned: poisoned.clone(),
        };
        if replayed > 0 {
            tracing::info!(
                transactions = replayed,
                "replayed write-ahead log after an unclean stop"
            );
            writer.checkpoint()?;
        }
        let (sender, receiver) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("musubi-store-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StoreError::Io(format!("cannot start writer thread: {e}")))?;
        Ok(SledStore {
            db,
            poisoned,
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
        match self
            .db
            .get(key)
            .map_err(|e| StoreError::Io(e.to_string()))?
        {
            Some(raw) => StoredVersion::decode(rt, id, &raw)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt(format!("{rt}/{id}"))),
            None => Ok(None),
        }
    }

    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
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

impl Store for SledStore {
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredVersion>, StoreError> {
        self.get_version(&keys::current(resource_type, id), resource_type, id)
    }

    fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: u64,
    ) -> Result<Option<StoredVersion>, StoreError> {
        self.get_version(
            &keys::history(resource_type, id, version),
            resource_type,
            id,
        )
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
                for entry in self.db.scan_prefix(keys::history_prefix(rt, id)).rev() {
                    let (_, raw) = entry.map_err(|e| StoreError::Io(e.to_string()))?;
                    let v = StoredVersion::decode(rt, id, &raw)
                        .ok_or_else(|| StoreError::Corrupt(format!("{rt}/{id}")))?;
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
                for entry in self.db.scan_prefix(keys::LOG_PREFIX).rev() {
                    let (_, value) = entry.map_err(|e| StoreError::Io(e.to_string()))?;
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

    fn commit(&self, writes: Vec<Write>) -> CommitFuture {
        let (reply, receiver) = oneshot::channel();
        let sent = self.send(Message::Commit { writes, reply });
        Box::pin(async move {
            sent?;
            receiver
                .await
                .map_err(|_| StoreError::Unavailable("the store writer stopped".into()))?
        })
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

/// `fsync` every file under `dir` and the directories themselves: after sled's `flush()` this is
/// what makes its state survive a power cut.
pub(crate) fn fsync_tree(dir: &Path) -> io::Result<()> {
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                stack.push(entry.path());
            } else if file_type.is_file() {
                File::open(entry.path())?.sync_all()?;
            }
        }
        File::open(&path)?.sync_all()?;
    }
    Ok(())
}
