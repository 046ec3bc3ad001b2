//! The write-ahead log that makes commits durable.
//!
//! sled 0.34's `flush()` ends in `sync_file_range`, which neither flushes the device cache nor
//! file metadata, so it is not durable on power loss (see docs/adr/0001-storage.md). Every commit
//! group is therefore appended here and `fdatasync`ed before any client is answered; sled is
//! brought to the same state afterwards and only made durable at checkpoints (sled flush followed
//! by a real `fsync` of its files), after which the log is truncated.
//!
//! Frame: `len: u32 LE | crc32(payload): u32 LE | payload`. A torn or corrupt frame ends replay:
//! it can only be the tail of a group whose commit was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One key-value mutation; a frame holds the mutations of one atomic write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KvOp {
    pub key: Vec<u8>,
    /// `None` removes the key.
    pub value: Option<Vec<u8>>,
}

pub(crate) struct Wal {
    file: File,
    path: PathBuf,
    len: u64,
    pending: Vec<u8>,
}

impl Wal {
    /// Open (or create) the log and return the frames it holds, oldest first.
    pub(crate) fn open(path: &Path) -> io::Result<(Wal, Vec<Vec<KvOp>>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw)?;
        let mut frames = Vec::new();
        let mut offset = 0usize;
        while let Some(header) = raw.get(offset..offset + 8) {
            let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
            let Some(payload) = raw.get(offset + 8..offset + 8 + len) else {
                break;
            };
            if crc32fast::hash(payload) != crc {
                break;
            }
            match postcard::from_bytes::<Vec<KvOp>>(payload) {
                Ok(ops) => frames.push(ops),
                Err(_) => break,
            }
            offset += 8 + len;
        }
        if offset < raw.len() {
            tracing::warn!(
                discarded_bytes = raw.len() - offset,
                "write-ahead log ends in an incomplete frame from an unacknowledged commit; discarding it"
            );
        }
        let wal = Wal {
            file,
            path: path.to_owned(),
            len: raw.len() as u64,
            pending: Vec::new(),
        };
        Ok((wal, frames))
    }

    /// Buffer one atomic write; nothing reaches the file until [`Wal::sync`].
    pub(crate) fn append(&mut self, ops: &[KvOp]) -> io::Result<()> {
        let payload = postcard::to_allocvec(ops)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "write too large"))?;
        self.pending.extend_from_slice(&len.to_le_bytes());
        self.pending
            .extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        self.pending.extend_from_slice(&payload);
        Ok(())
    }

    /// Write the buffered frames and `fdatasync` once for all of them (group commit).
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.pending)?;
        self.file.sync_data()?;
        self.len += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Empty the log after a checkpoint made everything in it durable elsewhere.
    pub(crate) fn truncate(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.sync_all()?;
        self.len = 0;
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(k: &str, v: Option<&str>) -> KvOp {
        KvOp {
            key: k.as_bytes().to_vec(),
            value: v.map(|v| v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn frames_survive_reopen_and_torn_tails_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        {
            let (mut wal, frames) = Wal::open(&path).unwrap();
            assert!(frames.is_empty());
            wal.append(&[op("a", Some("1")), op("b", None)]).unwrap();
            wal.append(&[op("c", Some("3"))]).unwrap();
            wal.sync().unwrap();
        }
        // A crash in the middle of the next group leaves half a frame behind.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let (mut wal, frames) = Wal::open(&path).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0][1].key, b"b");
        assert!(frames[0][1].value.is_none());
        wal.truncate().unwrap();
        let (_, frames) = Wal::open(&path).unwrap();
        assert!(frames.is_empty());
    }

    #[test]
    fn corrupt_frames_end_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        {
            let (mut wal, _) = Wal::open(&path).unwrap();
            wal.append(&[op("a", Some("1"))]).unwrap();
            wal.append(&[op("b", Some("2"))]).unwrap();
            wal.sync().unwrap();
        }
        let mut raw = std::fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        std::fs::write(&path, raw).unwrap();
        let (_, frames) = Wal::open(&path).unwrap();
        assert_eq!(frames.len(), 1);
    }
}
