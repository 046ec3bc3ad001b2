//! The stored form of one resource version: a fixed header followed by the resource's JSON.

use bytes::Bytes;
use time::OffsetDateTime;

const FORMAT: u8 = 1;
const HEADER_LEN: usize = 1 + 1 + 8 + 8 + 16;
const DELETED: u8 = 0b0000_0001;

/// How a version came to be (Bundle.entry.request.method in history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Create,
    Update,
    Delete,
}

impl Method {
    fn bits(self) -> u8 {
        match self {
            Method::Create => 0b0000,
            Method::Update => 0b0010,
            Method::Delete => 0b0100,
        }
    }

    fn from_bits(flags: u8) -> Self {
        match flags & 0b0110 {
            0b0000 => Method::Create,
            0b0100 => Method::Delete,
            _ => Method::Update,
        }
    }
}

/// One version of a resource as stored: the body already carries `meta.versionId` and
/// `meta.lastUpdated`, so reads serve it without re-serialising.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    /// Milliseconds since the Unix epoch, UTC.
    pub last_updated_ms: i64,
    pub method: Method,
    /// Hash of the content without `meta.versionId`/`meta.lastUpdated`: equal hashes mean an
    /// update would change nothing.
    pub content_hash: u128,
    /// Compact JSON; empty for a deletion.
    pub body: Bytes,
}

impl StoredVersion {
    pub fn is_deleted(&self) -> bool {
        self.method == Method::Delete
    }

    /// The weak ETag FHIR uses for versions: `W/"3"`.
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }

    pub fn last_updated(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.last_updated_ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        out.push(FORMAT);
        let deleted = if self.is_deleted() { DELETED } else { 0 };
        out.push(deleted | self.method.bits());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.last_updated_ms.to_be_bytes());
        out.extend_from_slice(&self.content_hash.to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    pub(crate) fn decode(resource_type: &str, id: &str, raw: &[u8]) -> Option<Self> {
        if raw.len() < HEADER_LEN || raw[0] != FORMAT {
            return None;
        }
        Some(StoredVersion {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            method: Method::from_bits(raw[1]),
            version: u64::from_be_bytes(raw[2..10].try_into().ok()?),
            last_updated_ms: i64::from_be_bytes(raw[10..18].try_into().ok()?),
            content_hash: u128::from_be_bytes(raw[18..34].try_into().ok()?),
            body: Bytes::copy_from_slice(&raw[HEADER_LEN..]),
        })
    }
}

/// Header fields of an encoded record, without copying the body.
pub(crate) struct RecordHeader {
    pub version: u64,
    pub deleted: bool,
    pub content_hash: u128,
}

impl RecordHeader {
    pub(crate) fn peek(raw: &[u8]) -> Option<Self> {
        if raw.len() < HEADER_LEN || raw[0] != FORMAT {
            return None;
        }
        Some(RecordHeader {
            deleted: raw[1] & DELETED != 0,
            version: u64::from_be_bytes(raw[2..10].try_into().ok()?),
            content_hash: u128::from_be_bytes(raw[18..34].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let v = StoredVersion {
            resource_type: "Patient".into(),
            id: "p1".into(),
            version: 3,
            last_updated_ms: 1_700_000_000_123,
            method: Method::Update,
            content_hash: 0xdead_beef,
            body: Bytes::from_static(b"{\"resourceType\":\"Patient\"}"),
        };
        let raw = v.encode();
        let back = StoredVersion::decode("Patient", "p1", &raw).unwrap();
        assert_eq!(back.version, 3);
        assert_eq!(back.method, Method::Update);
        assert_eq!(back.body, v.body);
        assert_eq!(back.etag(), "W/\"3\"");
        let header = RecordHeader::peek(&raw).unwrap();
        assert!(!header.deleted);
        assert_eq!(header.content_hash, 0xdead_beef);
    }

    #[test]
    fn truncated_records_are_rejected() {
        assert!(StoredVersion::decode("Patient", "p1", b"\x01\x00").is_none());
    }
}
