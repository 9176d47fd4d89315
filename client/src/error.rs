//! The client's error type. Broker-side error codes inside otherwise valid responses are
//! returned as data (e.g. `ProduceResult::error_code`) so callers can count them; `Error` is
//! for failures of the call itself.

use kafka_protocol::error::ResponseError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The connection is gone; every request still waiting on it fails with this.
    #[error("connection closed: {0}")]
    Closed(String),
    #[error("frame of {size} bytes is outside the bound of {max_bytes} bytes")]
    FrameTooLarge { size: i64, max_bytes: usize },
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("response correlation id {got} where {expected} was expected")]
    CorrelationMismatch { expected: i32, got: i32 },
    #[error("request timed out after {0} ms")]
    Timeout(u64),
    #[error("could not encode request: {0}")]
    Encode(String),
    #[error(
        "broker supports {api} versions {broker_min}..={broker_max}; this client builds {client_min}..={client_max}"
    )]
    UnsupportedVersion { api: &'static str, broker_min: i16, broker_max: i16, client_min: i16, client_max: i16 },
    #[error("broker does not offer {0}")]
    UnsupportedApi(&'static str),
    #[error("broker error {code} ({}) {context}", error_name(*.code))]
    Broker { code: i16, context: String },
    #[error("record batch: {0}")]
    Batch(String),
    #[error("{0}")]
    Config(String),
    #[error("no broker reachable: {0}")]
    NoBroker(String),
}

impl Error {
    /// Whether retrying the same call (possibly after refreshing metadata) can succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Io(_) | Error::Closed(_) | Error::Timeout(_) | Error::NoBroker(_) => true,
            Error::Broker { code, .. } => ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable()),
            _ => false,
        }
    }
}

/// Kafka's name for an error code, e.g. 6 → "NotLeaderOrFollower".
pub fn error_name(code: i16) -> String {
    if code == 0 {
        return "None".to_string();
    }
    match ResponseError::try_from_code(code) {
        Some(err) => format!("{err:?}"),
        None => format!("Unknown({code})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_known_and_unknown_codes() {
        assert_eq!(error_name(0), "None");
        assert_eq!(error_name(6), "NotLeaderOrFollower");
        assert_eq!(error_name(35), "UnsupportedVersion");
        assert_eq!(error_name(9999), "Unknown(9999)");
    }

    #[test]
    fn retriable_classification() {
        assert!(Error::Broker { code: 6, context: String::new() }.is_retriable());
        assert!(!Error::Broker { code: 36, context: String::new() }.is_retriable());
        assert!(!Error::Malformed("x".into()).is_retriable());
    }
}
