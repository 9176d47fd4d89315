//! Errors of the coordination store. Messages name the file or limit involved so an
//! operator can act on them without reading the code.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordError {
    /// The disk said no (ENOSPC, EIO, permissions). Nothing of the failed write is
    /// visible.
    #[error("metadata store I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A store file is damaged in a way recovery must not paper over (more than a
    /// torn last record). Needs an operator: restore or remove the directory.
    #[error("metadata store file {} is corrupt at byte {offset}: {reason}", path.display())]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    /// A key, value or transaction over its stated limit.
    #[error("metadata store request too large: {what} is {size}, over the limit of {max}")]
    TooLarge { what: &'static str, size: usize, max: usize },
    /// A request that can never succeed, such as an empty key.
    #[error("invalid metadata store request: {0}")]
    InvalidArgument(String),
    /// Another process (another broker?) holds the directory's lock.
    #[error(
        "metadata directory {} is in use by another process (lock {} held{}); \
         two brokers cannot share one data directory",
        dir.display(), lock_path.display(), holder.as_deref().map(|p| format!(" by pid {p}")).unwrap_or_default()
    )]
    Locked { dir: PathBuf, lock_path: PathBuf, holder: Option<String> },
    /// A put named a lease that has expired or was revoked: the holder has lost
    /// it (and every key bound to it) and must start over with a new one.
    #[error("lease {0} does not exist (expired or revoked)")]
    LeaseNotFound(i64),
    /// The store could not be reached or did not answer in time (etcd down,
    /// partitioned, or slow). Retriable: nothing is known to have been written.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// The store answered and refused the request for a reason none of the
    /// variants above covers (etcd: database space exceeded, permission
    /// denied, a corrupt member). Not retriable as is: needs an operator or a
    /// different request. The message names etcd's status code and text.
    #[error("metadata store refused the request: {0}")]
    Rejected(String),
    /// The store holds data in a format newer than this build understands.
    #[error("metadata store format: {0}")]
    Format(String),
    /// An earlier I/O error left the on-disk state uncertain, so writes are refused
    /// until the store is reopened (which recovers from disk). Reads still work.
    #[error("metadata store refuses writes after an earlier failure (restart to recover): {0}")]
    Failed(String),
}

impl CoordError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> CoordError {
        let context = context.into();
        move |source| CoordError::Io { context, source }
    }
}
