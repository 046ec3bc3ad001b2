//! Musubi's storage: resources, their full version history and their search-index entries,
//! behind the [`Store`] trait.
//!
//! The embedded default is [`FjallStore`]: fjall (an LSM-tree) holds the data, and its journal,
//! synced once per group of concurrent writers (group commit, one `fdatasync`), makes every
//! acknowledged write durable. A transaction's resource versions, history, index entries and
//! change-log entry become visible and durable together or not at all (docs/adr/0003).

mod covering;
mod engine;
mod entries;
mod keys;
mod layout;
mod query;
mod record;
mod writer;

/// What the crate's unit tests share.
#[cfg(test)]
mod test_support {
    use crate::{FjallStore, SearchPage, SearchRequest, Store};

    /// The first `count` matches (and the total) of a search given as query parameters.
    pub(crate) fn search_page(
        store: &FjallStore,
        resource_type: &str,
        params: &[(&str, &str)],
        count: usize,
    ) -> SearchPage {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let query =
            search::parse_query(search::Registry::r4(), resource_type, &params, true).unwrap();
        store
            .search(&SearchRequest {
                resource_type,
                query: &query,
                offset: 0,
                count,
                need_total: true,
            })
            .unwrap()
    }
}

use std::future::Future;
use std::pin::Pin;

pub use covering::{Covered, CoveringIndex};
pub use engine::{FjallStore, SledStore, StoreOptions, WhenIdle};
pub use query::{SearchPage, SearchRequest};
pub use record::{Method, StoredVersion};
pub use writer::format_instant;

/// What must hold for a write to apply; checked atomically with the write itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// Create only: fails if a live (non-deleted) version exists.
    MustNotExist,
    /// `If-Match`: the live version must be this one.
    VersionIs(u64),
    /// Create under an id the caller has just generated at random (a UUID v4: 122 random bits,
    /// so it names nothing stored): the writer skips looking for a current version. Only for
    /// such ids; a write under an existing id would leave that resource's index entries behind.
    NewId,
}

#[derive(Debug, Clone)]
pub enum WriteAction {
    /// Store this content as the next version (`meta.versionId`/`lastUpdated` are assigned).
    Put(serde_json::Value),
    Delete,
}

/// One resource write inside a transaction.
#[derive(Debug, Clone)]
pub struct Write {
    pub resource_type: String,
    pub id: String,
    pub precondition: Precondition,
    pub action: WriteAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Created,
    Updated,
    Deleted,
    /// Same content as the live version (or a delete of something absent): nothing was written.
    Unchanged,
}

#[derive(Debug, Clone)]
pub struct Committed {
    pub outcome: WriteOutcome,
    pub version: StoredVersion,
}

/// Which history to list (R4 3.1.0.9).
#[derive(Debug, Clone)]
pub enum HistoryScope {
    System,
    Type(String),
    Instance(String, String),
}

#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub total: usize,
    /// Newest first.
    pub versions: Vec<StoredVersion>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{resource_type}/{id} already exists (version {version})")]
    AlreadyExists {
        resource_type: String,
        id: String,
        version: u64,
    },
    #[error("{resource_type}/{id}: expected version {expected}, current is {}", current.map_or("none (absent or deleted)".to_string(), |v| v.to_string()))]
    VersionConflict {
        resource_type: String,
        id: String,
        expected: u64,
        current: Option<u64>,
    },
    #[error("invalid write: {0}")]
    Invalid(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

pub type CommitFuture = Pin<Box<dyn Future<Output = Result<Vec<Committed>, StoreError>> + Send>>;

/// The storage operations the gateway needs. Reads are synchronous (they hit memory or a page
/// cache); commits are queued to the writer and awaited.
pub trait Store: Send + Sync + 'static {
    /// The current version, including a deletion marker (so the caller can answer 410 Gone).
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredVersion>, StoreError>;
    fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: u64,
    ) -> Result<Option<StoredVersion>, StoreError>;
    fn history(
        &self,
        scope: &HistoryScope,
        since_ms: Option<i64>,
        offset: usize,
        count: usize,
    ) -> Result<HistoryPage, StoreError>;
    fn search(&self, request: &SearchRequest<'_>) -> Result<SearchPage, StoreError>;
    /// Every live resource of `resource_type` whose `param` holds exactly `value`, in index
    /// order, with the members its covering index ([`StoreOptions::covering`]) declares: one
    /// range scan of the index instead of a body read per match. Entries written before the
    /// declaration (or under another member list) are answered from the stored body. Fails with
    /// [`StoreError::Invalid`] when no covering index is declared for the pair.
    fn covered(
        &self,
        resource_type: &str,
        param: &str,
        value: &search::IndexValue,
    ) -> Result<Vec<Covered>, StoreError>;
    /// A number that grows whenever a commit group writes a resource of `resource_type` (not for
    /// writes that changed nothing). It grows after the write is readable and before the write is
    /// acknowledged, so a value derived from data read *after* taking the generation is still
    /// current while the generation is unchanged: a cache checked this way never outlives a write
    /// made through this store.
    fn write_generation(&self, resource_type: &str) -> u64;
    /// Whether writes can be accepted (the writer runs and no disk write has failed).
    fn ready(&self) -> Result<(), StoreError>;
    /// Commit all writes atomically and durably, or none of them.
    fn commit(&self, writes: Vec<Write>) -> CommitFuture;
    /// Stage writes for a bulk load: checked and planned as [`Store::commit`] would (all or
    /// none; same preconditions, versions, outcomes and index entries, later stages seeing
    /// earlier ones), but neither readable nor durable until [`Store::write_staged`] has
    /// written them. A commit first writes what is staged. Staged writes not yet written when
    /// the store shuts down are dropped: the caller counts as stored only what `write_staged`
    /// confirmed. A store without a bulk path commits them at once.
    fn stage(&self, writes: Vec<Write>) -> CommitFuture {
        self.commit(writes)
    }
    /// Write everything staged durably, all or nothing; readable once this resolves.
    fn write_staged(&self) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>> {
        Box::pin(std::future::ready(Ok(())))
    }
    /// Finish queued writes and leave a clean, durable state.
    fn shutdown(&self) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;
}
