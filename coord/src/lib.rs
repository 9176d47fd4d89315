//! Laminar's coordination store: cluster metadata (topics, configs) and, later,
//! consumer-group committed offsets. Control plane only: nothing here sits on the
//! produce or fetch path, and nothing here knows about sockets or Kafka requests.
//!
//! The broker talks to [`MetaStore`], an etcd-shaped key-value trait (string keys,
//! byte values, store-wide revisions, compare-and-swap transactions), so the
//! single-node [`EmbeddedStore`] and a future etcd backend are interchangeable.
//!
//! Where to look: writes `embedded::EmbeddedStore::commit`; recovery
//! `embedded::EmbeddedStore::open_with` → `journal::scan`; compaction
//! `embedded::Inner::compact`. On-disk layout: `README.md` beside `src/`.

mod codec;
mod embedded;
mod error;
mod files;
mod journal;
mod limits;
mod snapshot;

pub use embedded::{EmbeddedStore, Options, RecoveryReport};
pub use error::CoordError;
pub use limits::{KEY_BYTES_MAX, TXN_BYTES_MAX, TXN_OPS_MAX, VALUE_BYTES_MAX};

/// A stored value and the revision of the write that last changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    /// Store-wide revision of the last write of this key (etcd's `mod_revision`).
    /// Revisions only grow, so a reader can compare-and-swap on it.
    pub version: u64,
}

/// One write inside a [`MetaStore::txn`]. Ops apply in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
    },
    /// Deleting a key that does not exist is not an error.
    Delete {
        key: String,
    },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put { key: key.into(), value: value.into() }
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }
}

/// A guard of a [`MetaStore::txn`]; all must hold for the ops to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's current version equals `version`; `0` means the key must not exist.
    Version { key: String, version: u64 },
    /// The key must not exist (same as `Version { version: 0 }`).
    Absent { key: String },
}

impl Compare {
    pub fn version(key: impl Into<String>, version: u64) -> Compare {
        Compare::Version { key: key.into(), version }
    }

    pub fn absent(key: impl Into<String>) -> Compare {
        Compare::Absent { key: key.into() }
    }

    pub fn key(&self) -> &str {
        match self {
            Compare::Version { key, .. } | Compare::Absent { key } => key,
        }
    }

    /// The version the key must have, `0` for "must not exist".
    pub fn expected_version(&self) -> u64 {
        match self {
            Compare::Version { version, .. } => *version,
            Compare::Absent { .. } => 0,
        }
    }
}

/// The coordination store as the broker sees it. Shaped after etcd so that an
/// etcd backend can implement it one-to-one: every successful write gets the next
/// store-wide revision, and a write returns only once it is durable.
///
/// Keys are non-empty strings of at most [`KEY_BYTES_MAX`] bytes; values at most
/// [`VALUE_BYTES_MAX`] bytes; a txn at most [`TXN_OPS_MAX`] ops and compares and
/// [`TXN_BYTES_MAX`] bytes of keys and values. Larger requests fail with
/// [`CoordError::TooLarge`] before anything is written.
///
/// A write whose future is dropped before it completes may or may not have been
/// applied (as with an etcd request that timed out): read back to find out.
#[async_trait::async_trait]
pub trait MetaStore: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, CoordError>;

    /// Every key starting with `prefix` (all keys for `""`), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, CoordError>;

    /// Stores `value` under `key`; returns the new revision (the key's new version).
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, CoordError>;

    /// Removes `key`; returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, CoordError>;

    /// Removes every key starting with `prefix` in one atomic write; returns how many.
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, CoordError>;

    /// Atomic multi-op: all compares hold -> apply all ops, return Ok(true); else apply nothing, Ok(false).
    /// All ops of one txn share one revision.
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool, CoordError>;
}
