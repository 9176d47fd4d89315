//! Per-partition log configuration, named as Kafka's topic configs are.

/// `message.timestamp.type`: whose clock a batch's timestamps are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's (checked against `message.timestamp.before/after.max.ms`).
    #[default]
    CreateTime,
    /// The broker's at append: it stamps each batch's `maxTimestamp` and
    /// timestamp-type bit, and consumers see that time for every record.
    LogAppendTime,
}

/// Topic-level settings the engine honours. Units are in the names.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment once it would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once it is this old.
    pub segment_ms: u64,
    /// `retention.ms`: delete closed segments whose newest record is older; `None` = forever.
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: delete oldest closed segments while the log is larger; `None` = unbounded.
    pub retention_bytes: Option<u64>,
    /// `max.message.bytes`: largest record batch accepted.
    pub max_message_bytes: usize,
    /// `flush.messages`: fdatasync after this many records; `None` = leave it to the OS.
    pub flush_messages: Option<u64>,
    /// `flush.ms`: fdatasync data older than this (driven by the owner's ticker); `None` = never.
    pub flush_ms: Option<u64>,
    /// `index.interval.bytes`: log bytes between two sparse index entries.
    pub index_interval_bytes: u64,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a producer's
    /// timestamp may be (`u64::MAX`: any).
    pub message_timestamp_before_max_ms: u64,
    /// `message.timestamp.after.max.ms`: how far in the future a producer's
    /// timestamp may be. Kafka 4.0's default, one hour: retention ages data by
    /// its timestamps, and one far-future batch would pin a partition's data.
    pub message_timestamp_after_max_ms: u64,
    /// `producer.id.expiration.ms` (a broker config in Kafka): an idempotent
    /// producer idle this long is forgotten when producer state is snapshotted.
    pub producer_id_expiration_ms: u64,
    /// Most idempotent producers one partition remembers (Laminar's bound;
    /// Kafka has none): past it the least recently appending are forgotten
    /// (`ProducerStates::enforce_cap`), so a client cycling producer ids
    /// cannot grow a partition's memory without end. About 200 bytes each.
    pub producer_ids_max: usize,
    /// Writes the log keeps in flight at once (an engine setting, not a Kafka
    /// topic config). 1 is a strict write → complete → write loop; more keeps
    /// the io-wq worker that does ext4's buffered writes busy while the shard
    /// prepares the next (see `log::writer`, docs/benchmarks.md).
    pub writes_in_flight: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        // Kafka's defaults, except flush.* which Kafka leaves unset too.
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            max_message_bytes: 1_048_588,
            flush_messages: None,
            flush_ms: None,
            index_interval_bytes: 4096,
            timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: u64::MAX,
            message_timestamp_after_max_ms: 3_600_000,
            producer_id_expiration_ms: 86_400_000,
            producer_ids_max: 10_000,
            writes_in_flight: 4,
        }
    }
}

impl LogConfig {
    /// Smallest segment size accepted, as Kafka (14 bytes is Kafka's own floor; we
    /// need room for at least one batch header).
    pub const SEGMENT_BYTES_MIN: u64 = 1024;
    /// Segment positions are stored as u32 in the index, as Kafka's.
    pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
    pub const WRITES_IN_FLIGHT_MAX: usize = 64;

    pub fn validate(&self) -> Result<(), String> {
        if !(Self::SEGMENT_BYTES_MIN..=Self::SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(format!("segment.bytes must be in [{}, {}]", Self::SEGMENT_BYTES_MIN, Self::SEGMENT_BYTES_MAX));
        }
        if self.max_message_bytes == 0 {
            return Err("max.message.bytes must be positive".into());
        }
        if self.index_interval_bytes == 0 {
            return Err("index.interval.bytes must be positive".into());
        }
        if !(1..=Self::WRITES_IN_FLIGHT_MAX).contains(&self.writes_in_flight) {
            return Err(format!("writes in flight must be in [1, {}]", Self::WRITES_IN_FLIGHT_MAX));
        }
        if self.producer_ids_max == 0 {
            return Err("the producer id bound must be positive".into());
        }
        if self.flush_messages == Some(0) {
            return Err("flush.messages must be positive".into());
        }
        Ok(())
    }
}
