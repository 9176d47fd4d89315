//! Laminar's storage engine: one append-only log per partition, split into
//! segments of Kafka v2 record batches stored exactly as received, with sparse
//! offset and time indexes, io_uring group-committed appends, crash recovery
//! and retention. Knows nothing of Kafka requests, sockets or coordination.
//!
//! Where to look: produce path `log::PartitionLog::append` → `log::writer::run`;
//! fetch path `log::PartitionLog::read` → `segment::Segment::locate`; recovery
//! `log::PartitionLog::open` → `segment::Segment::open`, then
//! `producer_snapshot::recover` (idempotent-producer state, `producer_state`).

pub mod batch;
pub mod config;
#[cfg(test)]
mod crashsim;
pub mod disk_budget;
mod durable;
pub mod epoch_cache;
pub mod error;
pub mod index;
pub mod log;
pub mod producer_snapshot;
pub mod producer_state;
pub mod sealed_files;
pub mod segment;
pub mod stats;
pub mod watch;

pub use config::{LogConfig, TimestampType};
pub use disk_budget::DiskBudget;
pub use error::{EngineError, Result};
pub use log::{AppendInfo, FileSlice, LogStats, PartitionLog, ReadLimit, ReadResult, RecoveryReport, RetentionReport};
pub use watch::LogWatch;

#[cfg(test)]
mod log_producer_tests;
#[cfg(test)]
mod log_tests;
