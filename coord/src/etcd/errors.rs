//! How etcd's answers map onto [`CoordError`] (the table is in README.md,
//! "Errors"), and the few errors the store acts on itself.

use crate::{CoordError, LeaseId};

/// What a request carried, for naming it in errors.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sent {
    /// The lease a put named (the first one, if several).
    pub lease: LeaseId,
    pub key_value_bytes: usize,
    pub ops: usize,
}

pub(super) fn map_err(what: &str, e: etcd_client::Error, sent: Option<Sent>) -> CoordError {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => map_status(what, &status, sent.unwrap_or_default()),
        E::TransportError(e) => CoordError::Unavailable(format!("{what}: {e}")),
        E::IoError(e) => CoordError::Unavailable(format!("{what}: {e}")),
        // etcd-client's own stream plumbing: a request could not be sent on a
        // stream that has closed under it.
        E::WatchError(e) | E::LeaseKeepAliveError(e) => CoordError::Unavailable(format!("{what}: {e}")),
        E::InvalidArgs(e) => CoordError::InvalidArgument(format!("{what}: {e}")),
        E::InvalidUri(e) => CoordError::InvalidArgument(format!("{what}: bad endpoint: {e}")),
        other => CoordError::Rejected(format!("{what}: {other}")),
    }
}

fn map_status(what: &str, status: &tonic::Status, sent: Sent) -> CoordError {
    use tonic::Code;
    let message = status.message();
    let code = status.code();
    match code {
        // Unreachable, timed out, no leader, leader changed, stopping, and
        // broken connections (tonic reports a reset connection as Unknown or
        // as an h2 error).
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            CoordError::Unavailable(format!("{what}: {message}"))
        }
        Code::Internal if message.starts_with("h2 protocol error") => {
            CoordError::Unavailable(format!("{what}: {message}"))
        }
        Code::NotFound if message.contains("requested lease not found") => CoordError::LeaseNotFound(sent.lease),
        Code::InvalidArgument if message.contains("request is too large") => CoordError::TooLarge {
            what: "request bytes (etcd refused them: its --max-request-bytes is below the 1.5 MiB default \
                   that Laminar's limits assume)",
            size: sent.key_value_bytes,
            max: crate::TXN_BYTES_MAX,
        },
        Code::InvalidArgument if message.contains("too many operations in txn request") => CoordError::TooLarge {
            what: "txn op count (etcd refused it: its --max-txn-ops is below the default of 128 \
                   that Laminar's limits assume)",
            size: sent.ops,
            max: crate::TXN_OPS_MAX,
        },
        // A follower that lost its leader, or an overloaded member: retriable.
        Code::FailedPrecondition if message.contains("not leader") => {
            CoordError::Unavailable(format!("{what}: {message}"))
        }
        Code::ResourceExhausted if message.contains("too many requests") => {
            CoordError::Unavailable(format!("{what}: {message}"))
        }
        Code::ResourceExhausted if message.contains("database space exceeded") => CoordError::Rejected(format!(
            "{what}: {message} (etcd reached --quota-backend-bytes: compact, defragment and disarm the \
             NOSPACE alarm)"
        )),
        _ => CoordError::Rejected(format!("{what}: etcd answered {code:?}: {message}")),
    }
}

fn grpc_status(e: &etcd_client::Error) -> Option<&tonic::Status> {
    match e {
        etcd_client::Error::GRpcStatus(status) => Some(status),
        _ => None,
    }
}

/// The response was over the client's decoding limit (the request was fine).
pub(super) fn is_response_too_large(e: &etcd_client::Error) -> bool {
    grpc_status(e).is_some_and(|s| s.code() == tonic::Code::OutOfRange && s.message().contains("length too large"))
}

/// A read or watch at a revision etcd has compacted away.
pub(super) fn is_compacted(e: &etcd_client::Error) -> bool {
    grpc_status(e).is_some_and(|s| s.code() == tonic::Code::OutOfRange && s.message().contains("compacted"))
}

/// The call failed before it reached etcd (no connection could be made), so
/// it applied nothing and may be sent again, to another member.
pub(super) fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        // hyper's connector: "tcp connect error" (refused, or no connection
        // within the dial timeout), "dns error", ...
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable
                && (s.message().starts_with("tcp connect error") || s.message().starts_with("dns error"))
        }
        _ => false,
    }
}

/// etcd does not know the lease (expired, revoked or never granted).
pub(super) fn is_lease_not_found(e: &etcd_client::Error) -> bool {
    grpc_status(e).is_some_and(|s| s.code() == tonic::Code::NotFound && s.message().contains("lease not found"))
}
