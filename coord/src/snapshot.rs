//! The snapshot: every live key with its version, plus the store revision it was
//! taken at. Written whole through a temporary file and a rename, so it is never
//! torn; any damage found when reading it is therefore real corruption.
//!
//! Layout: `[8-byte magic "LMNSNAP2"][u64 payload len][u32 crc32c(payload)][payload]`.
//! `LMNSNAP1` snapshots (no create revisions or leases) are still read.

use std::fs;
use std::io;
use std::path::Path;

use crate::codec::{self, Entries};
use crate::files;
use crate::CoordError;

pub(crate) const SNAPSHOT_FILE: &str = "snapshot";
pub(crate) const SNAPSHOT_TMP: &str = "snapshot.tmp";
const MAGIC: &[u8; 8] = b"LMNSNAP2";
const MAGIC_V1: &[u8; 8] = b"LMNSNAP1";
const HEADER_BYTES: usize = 8 + 8 + 4;

/// Durably replaces the snapshot with `payload` (from [`codec::encode_snapshot`]).
pub(crate) fn write(dir: &Path, payload: &[u8]) -> Result<(), CoordError> {
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    header.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    files::replace_file(dir, SNAPSHOT_TMP, SNAPSHOT_FILE, &[&header, payload])
}

/// The snapshot's revision and entries, or `None` if none was ever written.
pub(crate) fn read(dir: &Path) -> Result<Option<(u64, Entries)>, CoordError> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CoordError::io(format!("reading {}", path.display()))(e)),
    };
    let corrupt = |offset: u64, reason: String| CoordError::Corrupt { path: path.clone(), offset, reason };
    if bytes.len() < HEADER_BYTES || (&bytes[..8] != MAGIC && &bytes[..8] != MAGIC_V1) {
        return Err(corrupt(0, "not a Laminar metadata snapshot (bad magic or short header)".into()));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_BYTES..];
    if payload.len() as u64 != len {
        return Err(corrupt(8, format!("header says {len} payload bytes, file holds {}", payload.len())));
    }
    if crc32c::crc32c(payload) != crc {
        return Err(corrupt(HEADER_BYTES as u64, "snapshot checksum mismatch".into()));
    }
    let decoded =
        codec::decode_snapshot(payload, &bytes[..8] == MAGIC).map_err(|reason| corrupt(HEADER_BYTES as u64, reason))?;
    Ok(Some(decoded))
}
