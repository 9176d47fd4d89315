//! Engine errors. Each variant maps onto one Kafka error code in the broker.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Bad CRC, impossible lengths, truncated batch: Kafka's CORRUPT_MESSAGE.
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// Well-formed but not acceptable (magic < 2, count mismatch): INVALID_RECORD.
    #[error("invalid record batch: {0}")]
    InvalidBatch(String),
    /// A timestamp outside `message.timestamp.before/after.max.ms`: INVALID_TIMESTAMP.
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// Batch larger than the topic's `max.message.bytes`: MESSAGE_TOO_LARGE.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: usize },
    /// An idempotent producer's batch does not follow its last one (a gap, or a
    /// new epoch not starting at sequence 0): OUT_OF_ORDER_SEQUENCE_NUMBER.
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// A batch from an epoch older than the producer's latest (a zombie
    /// instance): INVALID_PRODUCER_EPOCH.
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// Asked for an offset outside [log start, high watermark]: OFFSET_OUT_OF_RANGE.
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: u64, log_start: u64, log_end: u64 },
    /// The disk said no (ENOSPC, EIO): KAFKA_STORAGE_ERROR. Nothing of the failed
    /// appends is visible; the log is usable again once the cause is gone.
    #[error("storage error: {0}")]
    Storage(#[from] io::Error),
    /// A segment on disk is damaged beyond the torn tail that recovery truncates.
    #[error("log directory {dir}: {reason}")]
    Recovery { dir: String, reason: String },
}

pub type Result<T> = std::result::Result<T, EngineError>;
