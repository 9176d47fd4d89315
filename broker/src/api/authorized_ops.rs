//! Authorized operations (KIP-430): the bitfields Metadata, DescribeCluster
//! and DescribeGroups return when asked (`include_*_authorized_operations`).
//! Laminar has no authorizer, and Kafka without one answers every operation
//! its ACLs know for the resource type (`AclEntry.supportedOperations`):
//! the set computed here, one bit per `AclOperation` code, as Kafka's
//! `Utils.to32BitField` does. Not asked: `NOT_REQUESTED`, the schema default.

/// Answer when the request did not ask (Kafka's schema default).
pub const NOT_REQUESTED: i32 = i32::MIN;

// `AclOperation` codes.
const READ: u8 = 3;
const WRITE: u8 = 4;
const CREATE: u8 = 5;
const DELETE: u8 = 6;
const ALTER: u8 = 7;
const DESCRIBE: u8 = 8;
const CLUSTER_ACTION: u8 = 9;
const DESCRIBE_CONFIGS: u8 = 10;
const ALTER_CONFIGS: u8 = 11;
const IDEMPOTENT_WRITE: u8 = 12;

const TOPIC: &[u8] = &[READ, WRITE, CREATE, DESCRIBE, DELETE, ALTER, DESCRIBE_CONFIGS, ALTER_CONFIGS];
const GROUP: &[u8] = &[READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS, ALTER_CONFIGS];
const CLUSTER: &[u8] = &[CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, ALTER, DESCRIBE];

fn bits(ops: &[u8]) -> i32 {
    ops.iter().fold(0, |field, op| field | 1 << op)
}

/// What the request gets for a topic: every topic operation, or the sentinel.
pub fn topic(requested: bool) -> i32 {
    if requested {
        bits(TOPIC)
    } else {
        NOT_REQUESTED
    }
}

pub fn group(requested: bool) -> i32 {
    if requested {
        bits(GROUP)
    } else {
        NOT_REQUESTED
    }
}

pub fn cluster(requested: bool) -> i32 {
    if requested {
        bits(CLUSTER)
    } else {
        NOT_REQUESTED
    }
}

#[cfg(test)]
mod tests {
    /// The values a Kafka broker without an authorizer answers.
    #[test]
    fn bitfields_are_kafkas() {
        assert_eq!(super::topic(true), 3576);
        assert_eq!(super::group(true), 3400);
        assert_eq!(super::cluster(true), 8096);
        assert_eq!(super::topic(false), i32::MIN);
    }
}
