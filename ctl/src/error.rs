//! laminarctl's errors: a message that says what is wrong and what to do,
//! and an exit status a script can branch on. Nothing here prints a Rust
//! error chain or a backtrace.

use std::fmt;

/// Exit statuses (docs/operations.md, "laminarctl", lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The operation failed or was refused (a broker or etcd said no, an
    /// active group, a non-empty prefix).
    Failed = 1,
    /// Bad usage: malformed flags or values, a flag the command needs is
    /// missing. clap's own parse errors exit with 2 as well.
    Usage = 2,
    /// etcd or every given broker could not be reached.
    Unreachable = 3,
    /// What was named does not exist: a topic, group, broker, cluster prefix.
    NotFound = 4,
    /// The command ran, and the condition it checks does not hold:
    /// `metadata check` found problems, `partition reassign verify` found a
    /// move not finished, `broker decommission` timed out waiting.
    Condition = 5,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    pub exit: Exit,
    pub message: String,
}

pub type Result<T, E = CtlError> = std::result::Result<T, E>;

impl CtlError {
    pub fn new(exit: Exit, message: impl Into<String>) -> CtlError {
        CtlError { exit, message: message.into() }
    }
    pub fn failed(message: impl Into<String>) -> CtlError {
        CtlError::new(Exit::Failed, message)
    }
    pub fn usage(message: impl Into<String>) -> CtlError {
        CtlError::new(Exit::Usage, message)
    }
    pub fn unreachable(message: impl Into<String>) -> CtlError {
        CtlError::new(Exit::Unreachable, message)
    }
    pub fn not_found(message: impl Into<String>) -> CtlError {
        CtlError::new(Exit::NotFound, message)
    }
    pub fn condition(message: impl Into<String>) -> CtlError {
        CtlError::new(Exit::Condition, message)
    }

    pub fn code(&self) -> i32 {
        self.exit as i32
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A Kafka-protocol call's failure, naming the bootstrap servers.
pub fn kafka(bootstrap: &str, e: laminar_client::Error) -> CtlError {
    use laminar_client::Error as E;
    match e {
        E::NoBroker(detail) => CtlError::unreachable(format!(
            "no broker reachable at {bootstrap} ({detail}): check --bootstrap-server and that the brokers run"
        )),
        E::Io(io) => CtlError::unreachable(format!(
            "broker at {bootstrap} unreachable ({io}): check --bootstrap-server and that the brokers run"
        )),
        E::Closed(detail) => CtlError::unreachable(format!("connection to a broker at {bootstrap} closed ({detail})")),
        E::Timeout(ms) => CtlError::unreachable(format!("a broker at {bootstrap} did not answer within {ms} ms")),
        e => CtlError::failed(format!("broker at {bootstrap}: {e}")),
    }
}

/// A Kafka error code in an answer, as Kafka names it, with the broker's
/// message if it sent one.
pub fn code_text(code: i16, message: Option<&str>) -> String {
    let name = laminar_client::error_name(code);
    match message.filter(|m| !m.is_empty()) {
        Some(m) => format!("{name}: {m}"),
        None => name,
    }
}

/// The exit status a Kafka error code in an answer calls for.
pub fn exit_for_code(code: i16) -> Exit {
    match code {
        // UNKNOWN_TOPIC_OR_PARTITION, GROUP_ID_NOT_FOUND, UNKNOWN_TOPIC_ID
        3 | 69 | 100 => Exit::NotFound,
        // INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR, INVALID_REPLICA_ASSIGNMENT, INVALID_CONFIG, INVALID_TOPIC
        37 | 38 | 39 | 40 | 17 => Exit::Usage,
        _ => Exit::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_check() {
        use laminar_coord::CoordError;
        let e = crate::store::etcd_error("http://127.0.0.1:1", CoordError::Unavailable("connection refused".into()));
        assert_eq!(e.exit, Exit::Unreachable);
        assert_eq!(e.message, "etcd at http://127.0.0.1:1 unreachable (connection refused): check --etcd");
        let k = kafka("127.0.0.1:1", laminar_client::Error::NoBroker("refused".into()));
        assert_eq!(k.code(), 3);
        assert!(k.message.contains("check --bootstrap-server"), "{k}");
        assert_eq!(code_text(3, Some("topic 'x' does not exist")), "UnknownTopicOrPartition: topic 'x' does not exist");
        assert_eq!(exit_for_code(3), Exit::NotFound);
        assert_eq!(exit_for_code(36), Exit::Failed);
    }
}
