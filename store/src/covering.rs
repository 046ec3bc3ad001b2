//! Covering indexes: the index entries of a declared (type, parameter) pair also hold some
//! top-level members of the resource they index, so that a frequent read of those members is
//! one range scan of the index instead of a body lookup per match.
//!
//! An entry's value is a tag (a format byte and a fingerprint of the declared member list)
//! followed by the members as one compact JSON object. Entries written before the pair was
//! declared hold an empty value, and entries written under another member list carry another
//! fingerprint: both are answered from the stored body, so a changed declaration never serves
//! stale or missing members.

use bytes::Bytes;
use serde_json::Value;

use crate::engine::{FjallStore, io};
use crate::keys;
use crate::writer::{Serialised, strip_server_meta};
use crate::{Store, StoreError};

/// For the index entries of `param` on `resource_type`, also store these top-level members of
/// the resource (members it lacks are left out). The store knows nothing of their meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoveringIndex {
    pub resource_type: String,
    pub param: String,
    pub members: Vec<String>,
}

/// One live resource found through a covering index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    pub id: String,
    /// The declared members of its current version, as one compact JSON object, each member
    /// exactly as in the stored body (but `meta` without the server-assigned `versionId` and
    /// `lastUpdated`, which change with every version).
    pub members: Bytes,
}

const FORMAT: u8 = 1;
const TAG_LEN: usize = 1 + 8;

/// The declarations a store was opened with.
#[derive(Debug, Default)]
pub(crate) struct Declarations(Vec<Declared>);

#[derive(Debug)]
pub(crate) struct Declared {
    resource_type: String,
    param: String,
    members: Vec<String>,
    /// Starts every entry value written under this declaration.
    tag: [u8; TAG_LEN],
}

impl Declarations {
    pub(crate) fn new(declarations: &[CoveringIndex]) -> Declarations {
        Declarations(
            declarations
                .iter()
                .map(|d| {
                    let mut names = Vec::new();
                    for member in &d.members {
                        names.extend_from_slice(member.as_bytes());
                        names.push(0);
                    }
                    let mut tag = [FORMAT; TAG_LEN];
                    tag[1..].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(&names).to_be_bytes());
                    Declared {
                        resource_type: d.resource_type.clone(),
                        param: d.param.clone(),
                        members: d.members.clone(),
                        tag,
                    }
                })
                .collect(),
        )
    }

    pub(crate) fn find(&self, resource_type: &str, param: &str) -> Option<&Declared> {
        self.0
            .iter()
            .find(|d| d.resource_type == resource_type && d.param == param)
    }
}

impl Declared {
    /// The index-entry value for a resource about to be stored (`resource` as hashed: without
    /// the server-assigned meta).
    pub(crate) fn entry_value(&self, resource: &Serialised) -> Vec<u8> {
        let mut value = self.tag.to_vec();
        resource.members_object(&self.members, &mut value);
        value
    }

    /// The members an entry value holds, when it was written under this declaration.
    fn members_in<'a>(&self, value: &'a [u8]) -> Option<&'a [u8]> {
        value.strip_prefix(&self.tag)
    }

    /// The members of a stored body, the same bytes [`Declared::entry_value`] holds for it.
    fn members_of_body(&self, body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
        let mut resource: Value = serde_json::from_slice(body)?;
        strip_server_meta(&mut resource);
        let mut members = Vec::new();
        Serialised::new(&resource).members_object(&self.members, &mut members);
        Ok(members)
    }
}

/// [`Store::covered`]: one prefix scan of the exact value's index entries. An entry present is
/// live: the writer removes a resource's entries in the commit that updates or deletes it.
pub(crate) fn covered(
    store: &FjallStore,
    resource_type: &str,
    param: &str,
    value: &search::IndexValue,
) -> Result<Vec<Covered>, StoreError> {
    let declared = store.covering().find(resource_type, param).ok_or_else(|| {
        StoreError::Invalid(format!(
            "no covering index is declared for {resource_type}.{param}"
        ))
    })?;
    let mut prefix = keys::index_prefix(resource_type, param, &value.key_bytes());
    // The separator before the id: exactly this value, not every value it starts.
    prefix.push(0);
    let mut found = Vec::new();
    for entry in store.keyspaces().of_type(resource_type).prefix(prefix) {
        let (key, raw) = entry.into_inner().map_err(io)?;
        let id = keys::id_of_index_key(&key)
            .ok_or_else(|| StoreError::Corrupt(format!("index key of {resource_type}.{param}")))?;
        let members = match declared.members_in(&raw) {
            Some(members) => Bytes::copy_from_slice(members),
            None => match store.read(resource_type, id)? {
                Some(version) if !version.is_deleted() => declared
                    .members_of_body(&version.body)
                    .map(Bytes::from)
                    .map_err(|e| StoreError::Corrupt(format!("{resource_type}/{id}: {e}")))?,
                _ => continue,
            },
        };
        found.push(Covered {
            id: id.to_owned(),
            members,
        });
    }
    Ok(found)
}
