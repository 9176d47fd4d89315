//! Laminar's coordination store: cluster metadata (brokers, topics, partition
//! state, the controller), committed offsets and producer-id blocks. Control
//! plane only: nothing here sits on the produce or fetch path, and nothing here
//! knows about sockets or Kafka requests.
//!
//! The broker talks to [`MetaStore`], an etcd-shaped key-value trait (string
//! keys, byte values, store-wide revisions, compare-and-swap transactions,
//! prefix watches, leases), so the single-node [`EmbeddedStore`] and the etcd
//! backend are interchangeable: the broker never asks which one it has.
//!
//! Where to look: writes `embedded::EmbeddedStore::commit`; recovery
//! `embedded::EmbeddedStore::open_with` → `journal::scan`; compaction
//! `embedded::Inner::compact`; watches `watch.rs`; leases `lease.rs` (the
//! controller's election is a lease plus a compare-and-swap, in the broker). On-disk layout: `README.md` beside `src/`.

pub mod cluster;
mod codec;
#[doc(hidden)]
pub mod conformance;
mod embedded;
mod error;
mod etcd;
mod files;
mod journal;
pub mod lease;
mod limits;
mod snapshot;
pub mod watch;

pub use embedded::{EmbeddedStore, Options, RecoveryReport};
pub use error::CoordError;
pub use etcd::{EtcdOptions, EtcdStore};
pub use limits::{KEY_BYTES_MAX, TXN_BYTES_MAX, TXN_OPS_MAX, VALUE_BYTES_MAX};
pub use watch::{WatchEvent, WatchItem, WatchSink, WatchStream};

use std::time::Duration;

/// A lease's id as etcd numbers them. `0` means "no lease".
pub type LeaseId = i64;

/// A stored value and the revisions that describe its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    /// Store-wide revision of the last write of this key (etcd's `mod_revision`).
    /// Revisions only grow, so a reader can compare-and-swap on it.
    pub version: u64,
    /// Revision at which the key was created (etcd's `create_revision`): it
    /// stays while the key is overwritten and changes when the key is deleted
    /// and created again, so it names one incarnation of a key.
    pub create_revision: u64,
    /// The lease the key is bound to (deleted when it expires), 0 if none.
    pub lease: LeaseId,
}

impl Versioned {
    /// A plain (lease-less) value last written, and created, at `version`.
    pub fn new(value: impl Into<Vec<u8>>, version: u64) -> Versioned {
        Versioned { value: value.into(), version, create_revision: version, lease: 0 }
    }
}

/// One write inside a [`MetaStore::txn`]. Ops apply in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Stores `value` under `key`, bound to `lease` if it is not 0.
    Put { key: String, value: Vec<u8>, lease: LeaseId },
    /// Deleting a key that does not exist is not an error.
    Delete { key: String },
    /// Deletes every key starting with `prefix` (etcd's range delete).
    DeletePrefix { prefix: String },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put { key: key.into(), value: value.into(), lease: 0 }
    }

    /// A put whose key disappears when `lease` expires or is revoked.
    pub fn put_leased(key: impl Into<String>, value: impl Into<Vec<u8>>, lease: LeaseId) -> Op {
        Op::Put { key: key.into(), value: value.into(), lease }
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }

    pub fn delete_prefix(prefix: impl Into<String>) -> Op {
        Op::DeletePrefix { prefix: prefix.into() }
    }

    /// The key, or the prefix of a prefix delete.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
            Op::DeletePrefix { prefix } => prefix,
        }
    }
}

/// A guard of a [`MetaStore::txn`]; all must hold for the ops to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's current version (`mod_revision`) equals `version`; `0` means
    /// the key must not exist.
    Version { key: String, version: u64 },
    /// The key must not exist (same as `Version { version: 0 }`).
    Absent { key: String },
    /// The key exists and was created at `revision` (it is the same
    /// incarnation of the key, however often it was overwritten since).
    Created { key: String, revision: u64 },
}

impl Compare {
    pub fn version(key: impl Into<String>, version: u64) -> Compare {
        Compare::Version { key: key.into(), version }
    }

    pub fn absent(key: impl Into<String>) -> Compare {
        Compare::Absent { key: key.into() }
    }

    pub fn created(key: impl Into<String>, revision: u64) -> Compare {
        Compare::Created { key: key.into(), revision }
    }

    pub fn key(&self) -> &str {
        match self {
            Compare::Version { key, .. } | Compare::Absent { key } | Compare::Created { key, .. } => key,
        }
    }

    /// Whether the guard holds for the key's current value (`None`: absent).
    pub fn holds(&self, current: Option<&Versioned>) -> bool {
        match self {
            Compare::Version { version, .. } => current.map_or(0, |v| v.version) == *version,
            Compare::Absent { .. } => current.is_none(),
            Compare::Created { revision, .. } => current.is_some_and(|v| v.create_revision == *revision),
        }
    }
}

/// What a [`MetaStore::txn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResult {
    /// Every compare held and every op was applied.
    pub applied: bool,
    /// The store revision after the txn: the txn's own revision when it was
    /// applied and changed something, else the revision it was checked at.
    /// A watcher that has seen this revision has seen the txn.
    pub revision: u64,
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    /// The time-to-live the store granted (etcd may raise a short one).
    pub ttl: Duration,
}

/// The coordination store as the broker sees it. Shaped after etcd so that an
/// etcd backend implements it one-to-one: every successful write gets the next
/// store-wide revision, and a write returns only once it is durable.
///
/// Keys are non-empty strings of at most [`KEY_BYTES_MAX`] bytes; values at most
/// [`VALUE_BYTES_MAX`] bytes; a txn at most [`TXN_OPS_MAX`] ops and compares and
/// [`TXN_BYTES_MAX`] bytes of keys and values — etcd's default request limits,
/// enforced by every implementation so that what works on one node works in a
/// cluster. Larger requests fail with [`CoordError::TooLarge`] before anything
/// is written.
///
/// A write whose future is dropped before it completes may or may not have been
/// applied (as with an etcd request that timed out): read back to find out.
#[async_trait::async_trait]
pub trait MetaStore: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, CoordError>;

    /// Every key starting with `prefix` (all keys for `""`), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, CoordError> {
        Ok(self.list_with_revision(prefix).await?.0)
    }

    /// [`MetaStore::list`] and the store revision it was read at.
    async fn list_with_revision(&self, prefix: &str) -> Result<(Vec<(String, Versioned)>, u64), CoordError>;

    /// Stores `value` under `key`; returns the new revision (the key's new version).
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, CoordError> {
        Ok(self.txn(Vec::new(), vec![Op::put(key, value)]).await?.revision)
    }

    /// Removes `key`; returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, CoordError>;

    /// Removes every key starting with `prefix` in one atomic write; returns how many.
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, CoordError>;

    /// Atomic multi-op: all compares hold → apply all ops at one revision; else
    /// apply nothing. See [`TxnResult`].
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResult, CoordError>;

    /// Watches every key starting with `prefix`. The stream first delivers the
    /// prefix's whole state ([`WatchItem::Reset`]), then every change after
    /// it, in revision order, all changes of one txn in one item. When it
    /// cannot continue without a gap (history compacted away, a consumer too
    /// slow, a lost connection to the store that outlived the history) it
    /// delivers a fresh `Reset`: a consumer that replaces its view on every
    /// `Reset` and applies every `Changes` is never out of date by more than
    /// the delivery delay. Reconnects are the implementation's business.
    fn watch(&self, prefix: &str) -> WatchStream;

    /// Grants a lease of about `ttl` (the store may raise it to its minimum).
    async fn lease_grant(&self, ttl: Duration) -> Result<Lease, CoordError>;

    /// Renews a lease. `Ok(None)` if it has expired or never existed: keys
    /// bound to it are gone and the holder must act as a newcomer.
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Option<Duration>, CoordError>;

    /// Revokes a lease and deletes its keys; revoking an unknown lease is not an error.
    async fn lease_revoke(&self, id: LeaseId) -> Result<(), CoordError>;
}
