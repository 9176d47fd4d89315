//! Fetch (1). The fetch path: decode → ask each partition's owner shard for the
//! file range at the fetch offset → if fewer than `min_bytes` and time remains,
//! sleep until an append moves a high watermark (long poll) → hand-encode the
//! response so record data goes file → socket by sendfile, never copied here.
//!
//! No incremental fetch sessions (KIP-227): we answer session id 0, which tells
//! clients to keep sending full fetch requests; incremental ones get
//! FETCH_SESSION_ID_NOT_FOUND.
//!
//! A fetch with a replica id (≥ 0) is a follower replicating: it reads to the
//! log end rather than the high watermark, long-polls on the log end, and
//! may be told where its log diverges (`replication::serve`).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::select_all;
use kafka_protocol::messages::{ApiKey, FetchRequest, RequestHeader};

use super::{decode, HandlerResult};
use crate::context::Ctx;
use crate::errors::{self, KafkaError};
use crate::response::{Chunk, Response};
use crate::router::{answer, Pending};
use crate::security::acl::Operation;
use crate::security::authz;
use crate::shard::{PartitionRead, ReplicaFetch, ShardMsg};

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
/// Upper bound on a client's max_wait_ms (Kafka clients use ≤ 500 ms typically).
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

struct Wanted {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    partition_max_bytes: u64,
    /// The client's leader epoch (v9+, KIP-320), -1 if none.
    leader_epoch: i32,
    /// The epoch of the follower's last batch (v12+), -1 if none.
    last_fetched_epoch: i32,
}

type PartResult = Result<PartitionRead, KafkaError>;

pub async fn handle(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: FetchRequest = decode(header, body)?;
    let version = header.request_api_version;
    if req.session_id != 0 || req.session_epoch > 0 {
        return encode(header, version, FETCH_SESSION_ID_NOT_FOUND, &[], &[]);
    }
    let mut wanted = Vec::new();
    for t in &req.topics {
        let topic: Arc<str> = Arc::from(t.topic.0.as_str());
        for p in &t.partitions {
            wanted.push(Wanted {
                topic: topic.clone(),
                partition: p.partition,
                offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes.max(0) as u64,
                leader_epoch: if version >= 9 { p.current_leader_epoch } else { -1 },
                last_fetched_epoch: if version >= 12 { p.last_fetched_epoch } else { -1 },
            });
        }
    }
    let max_bytes = if req.max_bytes <= 0 { i32::MAX as u64 } else { req.max_bytes as u64 };
    let min_bytes = req.min_bytes.max(0) as u64;
    // Followers replicating send their broker id; consumers send -1.
    let replica = (req.replica_id.0 >= 0).then_some(req.replica_id.0);
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    loop {
        let mut results = read_all(ctx, &wanted, replica).await;
        trim_to_budget(&mut results, max_bytes);
        let bytes: u64 = results.iter().map(|r| r.as_ref().map_or(0, |r| r.slice.as_ref().map_or(0, |s| s.len))).sum();
        let any_error = results.iter().any(|r| r.is_err());
        if bytes >= min_bytes.max(1) || any_error || Instant::now() >= deadline || wanted.is_empty() {
            return encode(header, version, errors::NONE, &wanted, &results);
        }
        wait_for_data(&results, deadline, replica.is_some()).await;
    }
}

/// Asks every owner at once; answers come back in request order.
async fn read_all(ctx: &Rc<Ctx>, wanted: &[Wanted], replica: Option<i32>) -> Vec<PartResult> {
    let view = ctx.view();
    let pending: Vec<Pending<PartitionRead>> = wanted
        .iter()
        .map(|w| {
            // Followers act for the cluster; consumers read the topic.
            match replica {
                Some(_) => authz::cluster(ctx, Operation::ClusterAction),
                None => authz::topic(ctx, Operation::Read, &w.topic),
            }?;
            ctx.ask_partition(&view, &w.topic, w.partition, |reply| ShardMsg::Read {
                topic: w.topic.clone(),
                partition: w.partition,
                offset: w.offset,
                max_bytes: w.partition_max_bytes,
                min_one: true,
                leader_epoch: w.leader_epoch,
                replica: replica.map(|node| ReplicaFetch { node, last_fetched_epoch: w.last_fetched_epoch }),
                reply,
            })
        })
        .collect();
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        out.push(answer(p).await);
    }
    out
}

/// Applies the response-wide `max_bytes`: the first partition with data keeps
/// at least one whole batch (KIP-74); later ones get what budget is left.
fn trim_to_budget(results: &mut [PartResult], max_bytes: u64) {
    let mut left = max_bytes;
    let mut first = true;
    for r in results.iter_mut().flatten() {
        let Some(slice) = r.slice.as_mut() else { continue };
        if first {
            first = false;
            left = left.saturating_sub(slice.len);
            continue;
        }
        if left == 0 {
            r.slice = None;
            continue;
        }
        slice.len = slice.len.min(left);
        left -= slice.len;
    }
}

/// Sleeps until any fetched partition's high watermark (a follower's: log
/// end) moves or the deadline.
async fn wait_for_data(results: &[PartResult], deadline: Instant, follower: bool) {
    let progress = |w: &laminar_engine::LogWatch| if follower { w.log_end_offset() } else { w.high_watermark() };
    let watches: Vec<_> = results.iter().flatten().map(|r| (r.watch.clone(), progress(&r.watch))).collect();
    if watches.is_empty() {
        tokio::time::sleep_until(deadline.into()).await;
        return;
    }
    let mut notified: Vec<_> = watches.iter().map(|(w, _)| Box::pin(w.changed())).collect();
    for n in notified.iter_mut() {
        n.as_mut().enable();
    }
    // Registered first, checked second: an append between our read and now is seen here.
    if watches.iter().any(|(w, seen)| progress(w) != *seen) {
        return;
    }
    tokio::select! {
        _ = select_all(notified) => {}
        _ = tokio::time::sleep_until(deadline.into()) => {}
    }
}

fn put_array_len(b: &mut BytesMut, flexible: bool, n: usize) {
    if flexible {
        put_uvarint(b, n as u64 + 1);
    } else {
        b.put_i32(n as i32);
    }
}

fn put_uvarint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn put_string(b: &mut BytesMut, flexible: bool, s: &str) {
    if flexible {
        put_uvarint(b, s.len() as u64 + 1);
    } else {
        b.put_i16(s.len() as i16);
    }
    b.put_slice(s.as_bytes());
}

/// Hand-encoded FetchResponse v4–v12 (v12 is the first flexible version).
fn encode(
    header: &RequestHeader,
    version: i16,
    top_error: i16,
    wanted: &[Wanted],
    results: &[PartResult],
) -> HandlerResult {
    let flexible = version >= 12;
    let mut chunks = Vec::new();
    let mut b = BytesMut::with_capacity(256);
    Response::header_bytes(ApiKey::Fetch, version, header.correlation_id, &mut b);
    b.put_i32(0); // throttle_time_ms
    if version >= 7 {
        b.put_i16(top_error);
        b.put_i32(0); // session_id: no session
    }
    // Group consecutive partitions of the same topic, as requested.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (i, w) in wanted.iter().enumerate() {
        match groups.last_mut() {
            Some((start, end)) if wanted[*start].topic == w.topic => *end = i + 1,
            _ => groups.push((i, i + 1)),
        }
    }
    put_array_len(&mut b, flexible, groups.len());
    for (start, end) in groups {
        put_string(&mut b, flexible, &wanted[start].topic);
        put_array_len(&mut b, flexible, end - start);
        for i in start..end {
            b.put_i32(wanted[i].partition);
            let (code, hw, lso, lstart, slice, diverging) = match &results[i] {
                Ok(r) => (
                    r.error,
                    r.high_watermark as i64,
                    r.last_stable_offset as i64,
                    r.log_start_offset as i64,
                    r.slice.clone(),
                    r.diverging,
                ),
                Err(e) => (e.code, -1, -1, -1, None, None),
            };
            b.put_i16(code);
            b.put_i64(hw);
            b.put_i64(lso);
            if version >= 5 {
                b.put_i64(lstart);
            }
            // aborted_transactions: null (no transactions are ever aborted here yet)
            if flexible {
                put_uvarint(&mut b, 0);
            } else {
                b.put_i32(-1);
            }
            if version >= 11 {
                b.put_i32(-1); // preferred_read_replica
            }
            let len = slice.as_ref().map_or(0, |s| s.len);
            if flexible {
                put_uvarint(&mut b, len + 1);
            } else {
                b.put_i32(len as i32);
            }
            if let Some(slice) = slice.filter(|s| s.len > 0) {
                chunks.push(Chunk::Bytes(std::mem::take(&mut b).freeze()));
                chunks.push(Chunk::File(slice));
            }
            if flexible {
                match diverging {
                    // DivergingEpoch, tagged field 0 (v12+): epoch i32,
                    // end_offset i64, and its own empty tagged fields.
                    Some((epoch, end_offset)) => {
                        put_uvarint(&mut b, 1);
                        put_uvarint(&mut b, 0);
                        put_uvarint(&mut b, 4 + 8 + 1);
                        b.put_i32(epoch);
                        b.put_i64(end_offset);
                        b.put_u8(0);
                    }
                    None => b.put_u8(0), // no partition tagged fields
                }
            }
        }
        if flexible {
            b.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        b.put_u8(0); // top-level tagged fields
    }
    chunks.push(Chunk::Bytes(b.freeze()));
    Ok(Some(Response { chunks }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Decodable;

    fn wanted(topic: &str, partition: i32) -> Wanted {
        Wanted {
            topic: Arc::from(topic),
            partition,
            offset: 0,
            partition_max_bytes: 100,
            leader_epoch: -1,
            last_fetched_epoch: -1,
        }
    }

    /// A follower told where its log diverges reads it back with the codec.
    #[test]
    fn diverging_epochs_decode_with_the_codec() {
        let watch = Arc::new(laminar_engine::LogWatch::default());
        let read = PartitionRead {
            slice: None,
            high_watermark: 40,
            last_stable_offset: 40,
            log_start_offset: 0,
            diverging: Some((3, 27)),
            error: errors::NONE,
            watch,
        };
        let header = RequestHeader::default().with_correlation_id(1).with_request_api_version(12);
        let resp = encode(
            &header,
            12,
            errors::NONE,
            &[wanted("t", 0), wanted("t", 1)],
            &[Ok(read.clone()), Ok(PartitionRead { diverging: None, ..read })],
        )
        .unwrap()
        .unwrap();
        let mut bytes = BytesMut::new();
        for c in resp.chunks {
            if let Chunk::Bytes(b) = c {
                bytes.extend_from_slice(&b);
            }
        }
        let mut buf = bytes.freeze();
        kafka_protocol::messages::ResponseHeader::decode(&mut buf, ApiKey::Fetch.response_header_version(12)).unwrap();
        let r = FetchResponse::decode(&mut buf, 12).unwrap();
        let p = &r.responses[0].partitions;
        assert_eq!((p[0].diverging_epoch.epoch, p[0].diverging_epoch.end_offset), (3, 27));
        assert_eq!(p[1].diverging_epoch.epoch, -1, "absent: the default");
        assert!(buf.is_empty());
    }

    /// Our hand-written encoding must decode with the reference codec at every version.
    #[test]
    fn hand_encoded_response_decodes_with_the_codec() {
        for version in 4..=12i16 {
            let wanted = vec![wanted("a", 0), wanted("a", 1), wanted("bb", 3)];
            let results: Vec<PartResult> = vec![
                Err(KafkaError::new(errors::OFFSET_OUT_OF_RANGE, "x")),
                Err(KafkaError::new(errors::UNKNOWN_TOPIC_OR_PARTITION, "y")),
                Err(KafkaError::new(errors::NONE, "")),
            ];
            let header = RequestHeader::default().with_correlation_id(42).with_request_api_version(version);
            let resp = encode(&header, version, errors::NONE, &wanted, &results).unwrap().unwrap();
            let mut bytes = BytesMut::new();
            for c in resp.chunks {
                match c {
                    Chunk::Bytes(b) => bytes.extend_from_slice(&b),
                    Chunk::File(_) => unreachable!(),
                }
            }
            let mut buf = bytes.freeze();
            let hv = ApiKey::Fetch.response_header_version(version);
            let h = kafka_protocol::messages::ResponseHeader::decode(&mut buf, hv).unwrap();
            assert_eq!(h.correlation_id, 42);
            let r = FetchResponse::decode(&mut buf, version).unwrap();
            assert!(buf.is_empty(), "v{version}: {} bytes left", buf.len());
            assert_eq!(r.responses.len(), 2);
            assert_eq!(r.responses[0].partitions.len(), 2);
            assert_eq!(r.responses[0].partitions[0].error_code, errors::OFFSET_OUT_OF_RANGE);
            assert_eq!(r.responses[1].partitions[0].partition_index, 3);
        }
    }
}
