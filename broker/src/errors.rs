//! Kafka error codes the broker answers with, and the mapping from engine errors.

use laminar_engine::EngineError;

pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const NONE: i16 = 0;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
pub const FENCED_INSTANCE_ID: i16 = 82;
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const INVALID_TIMESTAMP: i16 = 32;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REQUEST: i16 = 42;
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
pub const ELECTION_NOT_NEEDED: i16 = 84;
pub const INVALID_CONFIG: i16 = 40;
pub const NOT_CONTROLLER: i16 = 41;
pub const POLICY_VIOLATION: i16 = 44;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const FENCED_LEADER_EPOCH: i16 = 74;
pub const UNKNOWN_LEADER_EPOCH: i16 = 76;
pub const INVALID_RECORD: i16 = 87;
pub const UNKNOWN_TOPIC_ID: i16 = 100;

/// A Kafka error code with a message for the response's error_message field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub code: i16,
    pub message: String,
}

impl KafkaError {
    pub fn new(code: i16, message: impl Into<String>) -> Self {
        KafkaError { code, message: message.into() }
    }
    pub fn unknown_partition(topic: &str, partition: i32) -> Self {
        KafkaError::new(UNKNOWN_TOPIC_OR_PARTITION, format!("{topic}-{partition} does not exist"))
    }
}

impl From<&EngineError> for KafkaError {
    fn from(e: &EngineError) -> Self {
        let code = match e {
            EngineError::CorruptBatch(_) => CORRUPT_MESSAGE,
            EngineError::InvalidBatch(_) => INVALID_RECORD,
            EngineError::InvalidTimestamp(_) => INVALID_TIMESTAMP,
            EngineError::BatchTooLarge { .. } => MESSAGE_TOO_LARGE,
            EngineError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
            EngineError::OutOfOrderSequence(_) => OUT_OF_ORDER_SEQUENCE_NUMBER,
            EngineError::InvalidProducerEpoch(_) => INVALID_PRODUCER_EPOCH,
            EngineError::Storage(_) | EngineError::Recovery { .. } => KAFKA_STORAGE_ERROR,
        };
        KafkaError::new(code, e.to_string())
    }
}

impl From<EngineError> for KafkaError {
    fn from(e: EngineError) -> Self {
        KafkaError::from(&e)
    }
}
