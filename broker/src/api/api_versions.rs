//! ApiVersions (18): what this broker speaks. The ranges are chosen so every
//! client we support finds a common version (kafkajs needs non-flexible ones,
//! librdkafka < 2.11 compresses only if Produce v0 is advertised; v0–v2 are
//! then refused as Kafka 4.0 does, but with an error in a response rather than
//! a closed connection: see `produce.rs`).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader};

use super::{respond, HandlerResult};
use crate::errors;
use crate::response::{Chunk, Response};

/// (API, min version, max version) served.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
];

/// Produce versions below this are advertised (see module doc) and decoded,
/// but answered with UNSUPPORTED_VERSION: they carry message format v0/v1,
/// which the engine does not store.
pub const PRODUCE_MIN_ACCEPTED: i16 = 3;

/// The advertised range; a request outside it closes the connection.
pub fn range_of(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == api).map(|(_, min, max)| (*min, *max))
}

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(k, min, max)| {
            ApiVersion::default().with_api_key(*k as i16).with_min_version(*min).with_max_version(*max)
        })
        .collect()
}

pub fn handle(header: &RequestHeader, body: Bytes) -> HandlerResult {
    // The body (client software name/version, v3+) is informational; a client
    // that sends a broken one still deserves the version list.
    let _ = body;
    let resp = ApiVersionsResponse::default().with_error_code(errors::NONE).with_api_keys(api_keys());
    respond(header, &resp)
}

/// Error 35 in a v0-shaped body with our ranges (KIP-511).
pub fn unsupported_version(correlation_id: i32) -> HandlerResult {
    let mut b = BytesMut::new();
    b.put_i32(correlation_id);
    b.put_i16(errors::UNSUPPORTED_VERSION);
    b.put_i32(SUPPORTED.len() as i32);
    for (k, min, max) in SUPPORTED {
        b.put_i16(*k as i16);
        b.put_i16(*min);
        b.put_i16(*max);
    }
    Ok(Some(Response { chunks: vec![Chunk::Bytes(b.freeze())] }))
}
