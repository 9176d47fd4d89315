//! Request dispatch: the header is parsed here, the body by each API's own
//! module (one file per Kafka API). `SUPPORTED` is what ApiVersions advertises.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::budget::with_decode_budget;
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::context::Ctx;
use crate::response::Response;
use crate::security::{authz, sasl, users, Session};

pub(crate) mod api_versions;
mod authorized_ops;
mod configs;
mod create_topics;
mod delete_records;
mod describe_cluster;
mod describe_log_dirs;
mod elect_leaders;
mod fetch;
mod groups;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod offsets;
pub(crate) mod produce;
mod reassignments;

/// Errors that end the connection (the request could not be understood, or
/// the socket failed). Everything else is a Kafka error code in a response.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Frame(String),
    #[error("i/o: {0}")]
    Io(std::io::Error),
}

pub type HandlerResult = Result<Option<Response>, ConnError>;

fn bad(e: impl std::fmt::Display) -> ConnError {
    ConnError::Frame(e.to_string())
}

/// A frame whose header is parsed: the API and header, and the body left.
pub(crate) enum Parsed {
    Request(ApiKey, RequestHeader, Bytes),
    /// An ApiVersions version newer than ours: answered as KIP-511 says.
    NewerApiVersions {
        correlation_id: i32,
    },
}

/// Parses a frame's header (the connection guarantees at least 10 bytes).
pub(crate) fn parse_header(mut frame: Bytes) -> Result<Parsed, ConnError> {
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let Ok(api) = ApiKey::try_from(key) else {
        return Err(ConnError::Frame(format!("unknown API key {key}")));
    };
    let supported = api_versions::range_of(api);
    if api == ApiKey::ApiVersions && supported.is_some_and(|(_, max)| version > max) {
        // KIP-511: answer an unknown ApiVersions version with v0 + error 35 so
        // the client can retry with a version we know. Its header is v0 anyway.
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        return Ok(Parsed::NewerApiVersions { correlation_id });
    }
    let Some((min, max)) = supported else {
        return Err(ConnError::Frame(format!("API {api:?} ({key}) is not supported")));
    };
    if version < min || version > max {
        return Err(ConnError::Frame(format!("{api:?} v{version} is not supported (supported: v{min}–v{max})")));
    }
    let budget_bytes = decode_budget_bytes(frame.len());
    let header =
        with_decode_budget(budget_bytes, || RequestHeader::decode(&mut frame, api.request_header_version(version)))
            .map_err(|e| bad(format!("bad {api:?} v{version} request header: {e}")))?;
    Ok(Parsed::Request(api, header, frame))
}

/// Parses a frame's header and runs the API's handler.
pub async fn handle(ctx: Rc<Ctx>, session: Rc<Session>, frame: Bytes) -> HandlerResult {
    // ACL checks in the handlers read the request's session from here.
    authz::with_session(session.clone(), dispatch(ctx, session, frame)).await
}

async fn dispatch(ctx: Rc<Ctx>, session: Rc<Session>, frame: Bytes) -> HandlerResult {
    let (api, header, body) = match parse_header(frame)? {
        Parsed::Request(api, header, body) => (api, header, body),
        Parsed::NewerApiVersions { correlation_id } => return api_versions::unsupported_version(correlation_id),
    };
    if !session.authenticated()
        && !matches!(api, ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
    {
        // Kafka closes such connections too: the client skipped authentication.
        return Err(ConnError::Frame(format!(
            "{api:?} before SASL authentication (only ApiVersions, SaslHandshake and SaslAuthenticate are accepted)"
        )));
    }
    let ctx = &ctx;
    match api {
        ApiKey::SaslHandshake => sasl::handshake(ctx, &session, &header, body),
        ApiKey::SaslAuthenticate => sasl::authenticate(ctx, &session, &header, body).await,
        ApiKey::DescribeUserScramCredentials => users::describe(ctx, &session, &header, body).await,
        ApiKey::AlterUserScramCredentials => users::alter(ctx, &session, &header, body).await,
        ApiKey::CreateAcls => authz::create(ctx, &header, body).await,
        ApiKey::DescribeAcls => authz::describe(ctx, &header, body).await,
        ApiKey::DeleteAcls => authz::delete(ctx, &header, body).await,
        ApiKey::ApiVersions => api_versions::handle(&header, body),
        ApiKey::Metadata => metadata::handle(ctx, &session, &header, body).await,
        ApiKey::Produce => produce::handle(ctx, &header, body).await,
        ApiKey::Fetch => fetch::handle(ctx, &header, body).await,
        ApiKey::ListOffsets => list_offsets::handle(ctx, &header, body).await,
        ApiKey::CreateTopics => create_topics::create(ctx, &header, body).await,
        ApiKey::DeleteTopics => create_topics::delete(ctx, &header, body).await,
        ApiKey::CreatePartitions => create_topics::create_partitions(ctx, &header, body).await,
        ApiKey::DescribeConfigs => configs::describe(ctx, &header, body).await,
        ApiKey::AlterConfigs => configs::alter(ctx, &header, body).await,
        ApiKey::IncrementalAlterConfigs => configs::incremental_alter(ctx, &header, body).await,
        ApiKey::DeleteRecords => delete_records::handle(ctx, &header, body).await,
        ApiKey::DescribeCluster => describe_cluster::handle(ctx, &session, &header, body),
        ApiKey::FindCoordinator => groups::find_coordinator(ctx, &session, &header, body),
        ApiKey::JoinGroup => groups::join(ctx, &session.peer_text, &header, body).await,
        ApiKey::SyncGroup => groups::sync(ctx, &header, body).await,
        ApiKey::Heartbeat => groups::heartbeat(ctx, &header, body).await,
        ApiKey::LeaveGroup => groups::leave(ctx, &header, body).await,
        ApiKey::DescribeGroups => groups::describe(ctx, &header, body).await,
        ApiKey::ListGroups => groups::list(ctx, &header, body).await,
        ApiKey::DeleteGroups => groups::delete(ctx, &header, body).await,
        ApiKey::OffsetCommit => offsets::commit(ctx, &header, body).await,
        ApiKey::OffsetFetch => offsets::fetch(ctx, &header, body).await,
        ApiKey::OffsetDelete => offsets::delete(ctx, &header, body).await,
        ApiKey::InitProducerId => init_producer_id::handle(ctx, &header, body).await,
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch::handle(ctx, &header, body).await,
        ApiKey::AlterPartitionReassignments => reassignments::alter(ctx, &header, body).await,
        ApiKey::ListPartitionReassignments => reassignments::list(ctx, &header, body),
        ApiKey::ElectLeaders => elect_leaders::handle(ctx, &header, body).await,
        ApiKey::DescribeLogDirs => describe_log_dirs::handle(ctx, &header, body).await,
        other => Err(ConnError::Frame(format!("API {other:?} has no handler"))),
    }
}

/// Decoding one request may allocate `DECODE_BUDGET_BASE_BYTES` plus
/// `DECODE_BUDGET_PER_FRAME_BYTE` bytes per byte of its frame (the codec
/// charges each array and unknown tagged field before allocating; going over
/// closes the connection). Real requests stay below: Produce records stay in
/// the frame (under 1×); the densest real elements are partitions of
/// fixed-size fields, 2.4–4× their wire size in current versions (Fetch v12:
/// 33 bytes → 80; OffsetCommit v8 with empty metadata: 18 → 72) and up to 5×
/// in old ones (Fetch v4: 16 → 80), which still fit up to 8 MiB — half a
/// million partitions in one request. Any request up to 80 KiB fits the base
/// whatever its shape (the worst, topics with an unknown tagged field each,
/// is 100× its size). What is refused: large frames of empty names and empty
/// elements, which no client sends, and which would otherwise build up to
/// 100× their size (10 GB from a 100 MiB frame).
pub(crate) const DECODE_BUDGET_BASE_BYTES: usize = 8 << 20;
pub(crate) const DECODE_BUDGET_PER_FRAME_BYTE: usize = 4;

pub(crate) fn decode_budget_bytes(frame_bytes: usize) -> usize {
    DECODE_BUDGET_BASE_BYTES.saturating_add(frame_bytes.saturating_mul(DECODE_BUDGET_PER_FRAME_BYTE))
}

/// Decodes a request body at the header's version, within the decode budget.
pub(crate) fn decode<R: Decodable>(header: &RequestHeader, mut body: Bytes) -> Result<R, ConnError> {
    let budget_bytes = decode_budget_bytes(body.len());
    with_decode_budget(budget_bytes, || R::decode(&mut body, header.request_api_version)).map_err(|e| {
        bad(format!("malformed request body (api {} v{}): {e}", header.request_api_key, header.request_api_version))
    })
}

pub(crate) fn respond<R>(header: &RequestHeader, body: &R) -> HandlerResult
where
    R: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
{
    Response::encode(header.correlation_id, header.request_api_version, body).map(Some).map_err(|e| {
        let (api, v) = (header.request_api_key, header.request_api_version);
        ConnError::Frame(format!("encoding response to api {api} v{v}: {e}"))
    })
}

pub(crate) fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}
