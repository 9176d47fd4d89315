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
        let mut results = read_all(ctx, &wanted, replica, max_bytes).await;
        trim_to_budget(&mut results, &wanted, max_bytes);
        let bytes: u64 = results.iter().map(|r| r.as_ref().map_or(0, |r| r.slice.as_ref().map_or(0, |s| s.len))).sum();
        let any_error = results.iter().any(|r| r.is_err());
        if bytes >= min_bytes.max(1) || any_error || Instant::now() >= deadline || wanted.is_empty() {
            for (w, r) in wanted.iter().zip(&results) {
                let sent = r.as_ref().map_or(0, |r| r.slice.as_ref().map_or(0, |s| s.len));
                crate::metrics::bytes_out(&w.topic, sent, replica.is_some());
            }
            return encode(header, version, errors::NONE, &wanted, &results);
        }
        wait_for_data(&results, deadline, replica.is_some()).await;
    }
}

/// Asks every owner at once; answers come back in request order. No
/// partition reads more than the response may hold (`max_bytes`), except one
/// whole first batch (`min_one`); `trim_to_budget` then cuts the later ones.
async fn read_all(ctx: &Rc<Ctx>, wanted: &[Wanted], replica: Option<i32>, max_bytes: u64) -> Vec<PartResult> {
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
                max_bytes: w.partition_max_bytes.min(max_bytes),
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

/// Applies the response-wide `max_bytes` as Kafka does (KIP-74): the first
/// partition with data keeps what it read, at most `max_bytes` or, when its
/// first batch alone is larger, that batch whole; every later one is cut to
/// the budget left and to its own `partition_max_bytes` (its read may have
/// returned a whole first batch larger than that: only the first partition
/// gets that exemption). A cut may end inside a batch; clients drop the
/// partial batch and fetch it again, as from Kafka.
fn trim_to_budget(results: &mut [PartResult], wanted: &[Wanted], max_bytes: u64) {
    let mut left = max_bytes;
    let mut first = true;
    for (r, w) in results.iter_mut().zip(wanted) {
        let Ok(r) = r else { continue };
        let Some(slice) = r.slice.as_mut() else { continue };
        if first {
            first = false;
            left = left.saturating_sub(slice.len);
            continue;
        }
        slice.len = slice.len.min(left).min(w.partition_max_bytes);
        if slice.len == 0 {
            r.slice = None;
            continue;
        }
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

    fn read_of(file: &Arc<std::fs::File>, len: u64) -> PartResult {
        Ok(PartitionRead {
            slice: Some(laminar_engine::FileSlice { file: file.clone(), position: 0, len }),
            high_watermark: 1,
            last_stable_offset: 1,
            log_start_offset: 0,
            diverging: None,
            error: errors::NONE,
            watch: Arc::new(laminar_engine::LogWatch::default()),
        })
    }

    fn lens(results: &[PartResult]) -> Vec<u64> {
        results.iter().map(|r| r.as_ref().map_or(0, |r| r.slice.as_ref().map_or(0, |s| s.len))).collect()
    }

    /// KIP-74: the response's `max_bytes` bounds everything but one whole
    /// first batch; later partitions get what is left, within their own limit.
    #[test]
    fn response_budget_cuts_later_partitions() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let want = |max: u64| Wanted { partition_max_bytes: max, ..wanted("t", 0) };
        // A first batch larger than the whole budget comes alone.
        let mut r = vec![read_of(&file, 5000), read_of(&file, 300), read_of(&file, 300)];
        trim_to_budget(&mut r, &[want(20_000), want(20_000), want(20_000)], 1000);
        assert_eq!(lens(&r), [5000, 0, 0]);
        assert!(r[1].as_ref().unwrap().slice.is_none());
        // Later partitions: the budget left, and their own limit (a whole
        // first batch beyond it was the first partition's exemption only).
        let mut r =
            vec![Err(KafkaError::new(errors::NONE, "")), read_of(&file, 600), read_of(&file, 900), read_of(&file, 600)];
        trim_to_budget(&mut r, &[want(500), want(600), want(500), want(500)], 1500);
        assert_eq!(lens(&r), [0, 600, 500, 400]);
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
