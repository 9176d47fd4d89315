//! Stated bounds on every request, checked before anything is written, so one bad
//! caller cannot grow a journal record (or an etcd request) without limit. They
//! are etcd's default request limits (`--max-txn-ops` 128, `--max-request-bytes`
//! 1.5 MiB), enforced by the embedded store too: code that fits on one node
//! fits in a cluster.

use crate::{CoordError, Op};

/// Longest key, in bytes.
pub const KEY_BYTES_MAX: usize = 4 * 1024;
/// Longest value, in bytes.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// Most ops in one txn, and separately most compares in one txn (etcd's
/// default `--max-txn-ops`).
pub const TXN_OPS_MAX: usize = 128;
/// Most key plus value bytes in one txn: etcd refuses requests over 1.5 MiB
/// (`--max-request-bytes`); this leaves room for the request's framing.
pub const TXN_BYTES_MAX: usize = 1280 * 1024;

pub(crate) fn check_key(key: &str) -> Result<(), CoordError> {
    if key.is_empty() {
        return Err(CoordError::InvalidArgument("key must not be empty".into()));
    }
    check_prefix(key)
}

/// A prefix may be empty (meaning "every key") but is otherwise bounded like a key.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), CoordError> {
    if prefix.len() > KEY_BYTES_MAX {
        return Err(CoordError::TooLarge { what: "key length in bytes", size: prefix.len(), max: KEY_BYTES_MAX });
    }
    Ok(())
}

pub(crate) fn check_value(value: &[u8]) -> Result<(), CoordError> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(CoordError::TooLarge { what: "value length in bytes", size: value.len(), max: VALUE_BYTES_MAX });
    }
    Ok(())
}

pub(crate) fn check_txn(compares: &[crate::Compare], ops: &[Op]) -> Result<(), CoordError> {
    if compares.len() > TXN_OPS_MAX {
        return Err(CoordError::TooLarge { what: "txn compare count", size: compares.len(), max: TXN_OPS_MAX });
    }
    if ops.len() > TXN_OPS_MAX {
        return Err(CoordError::TooLarge { what: "txn op count", size: ops.len(), max: TXN_OPS_MAX });
    }
    for compare in compares {
        check_key(compare.key())?;
    }
    let mut bytes = 0usize;
    for op in ops {
        match op {
            Op::Put { key, value, .. } => {
                check_key(key)?;
                check_value(value)?;
                bytes += key.len() + value.len();
            }
            Op::Delete { key } => {
                check_key(key)?;
                bytes += key.len();
            }
            Op::DeletePrefix { prefix } => {
                check_prefix(prefix)?;
                bytes += prefix.len();
            }
        }
    }
    if bytes > TXN_BYTES_MAX {
        return Err(CoordError::TooLarge { what: "txn key and value bytes", size: bytes, max: TXN_BYTES_MAX });
    }
    Ok(())
}
