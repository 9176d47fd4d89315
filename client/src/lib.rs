//! laminar-client: a small async client for Kafka-protocol brokers (Apache Kafka, Redpanda,
//! Laminar). Used by the bench tool, the ops tool and the broker's end-to-end tests.
//!
//! Layers, bottom up:
//! - [`Connection`]: framing, request/response headers, correlation ids, pipelining.
//! - [`negotiate`]: ApiVersions and per-API version choice.
//! - [`BrokerConnection`]: a negotiated connection with typed calls (metadata, topics admin,
//!   produce, fetch, list offsets).
//! - [`Client`]: bootstrap, metadata cache, one connection per broker, leader routing.
//! - [`BatchBuilder`] / [`BatchReader`]: Kafka v2 record batches, all five codecs.

pub mod batch_builder;
pub mod batch_reader;
pub mod broker_connection;
pub mod client;
pub mod compression;
pub mod connection;
pub mod error;
pub mod metadata;
#[cfg(feature = "mock-broker")]
pub mod mock_broker;
pub mod negotiate;
pub mod varint;

pub use batch_builder::{BatchBuilder, ProducerIdentity, RecordHeader};
pub use batch_reader::{BatchReader, Headers, Record, RecordBatch, Records, TimestampType};
pub use broker_connection::{
    Acks, BrokerConnection, FetchOptions, FetchResult, FetchTarget, ListOffsetsResult, NewTopic, OffsetSpec,
    PendingProduce, ProduceBatch, ProduceResult, TopicResult,
};
pub use client::{Client, ClientConfig};
pub use compression::Compression;
pub use connection::{Connection, ConnectionConfig, PendingRaw, PendingResponse};
pub use error::{error_name, Error, Result};
pub use metadata::{BrokerInfo, ClusterMetadata, PartitionMetadata, TopicMetadata};
pub use negotiate::{client_range, ApiVersionTable};

/// Re-exported so callers can build requests this client does not wrap.
pub use kafka_protocol;
