//! Names under which failures are counted in the report, and which failures mean "refresh
//! metadata and find the leader again".

use laminar_client::{error_name, Error};

/// Broker codes after which the partition's leader must be looked up again:
/// UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH,
/// UNKNOWN_LEADER_EPOCH.
const STALE_METADATA_CODES: [i16; 5] = [3, 5, 6, 74, 75];

/// Kafka's name for a broker error code, e.g. "NotLeaderOrFollower".
pub fn broker_error(code: i16) -> String {
    error_name(code)
}

pub fn is_stale_metadata(code: i16) -> bool {
    STALE_METADATA_CODES.contains(&code)
}

/// A client-side failure, by kind (messages carry addresses and details that would make every
/// occurrence its own row).
pub fn client_error(e: &Error) -> String {
    let kind = match e {
        Error::Io(_) => "io",
        Error::Closed(_) => "connection-closed",
        Error::FrameTooLarge { .. } => "frame-too-large",
        Error::Malformed(_) => "malformed-response",
        Error::CorrelationMismatch { .. } => "correlation-mismatch",
        Error::Timeout(_) => "timeout",
        Error::Encode(_) => "encode",
        Error::UnsupportedVersion { .. } | Error::UnsupportedApi(_) => "unsupported-version",
        Error::Broker { code, .. } => return broker_error(*code),
        Error::Batch(_) => "corrupt-batch",
        Error::Config(_) => "config",
        Error::NoBroker(_) => "no-broker",
    };
    format!("client:{kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(broker_error(6), "NotLeaderOrFollower");
        assert!(is_stale_metadata(6) && !is_stale_metadata(2));
        assert_eq!(client_error(&Error::Timeout(5)), "client:timeout");
        assert_eq!(client_error(&Error::Broker { code: 6, context: String::new() }), "NotLeaderOrFollower");
    }
}
