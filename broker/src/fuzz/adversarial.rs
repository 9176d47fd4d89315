//! Request bodies crafted to make the decoder allocate as much as possible —
//! huge claimed counts, counts of as many minimal elements as the bytes can
//! hold, nested arrays, unknown tagged fields — from 1 KiB to the 100 MiB
//! frame limit, for every API the broker serves. Each must fail to decode or
//! stay within the decode budget, measured by the counting allocator.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Message};

use super::corpus::{seeds, Seed};
use super::{decode_charged, UNCHARGED_SLACK_BYTES};
use crate::api::{self, Parsed};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// `socket.request.max.bytes`' default: the largest frame a client can send.
const FRAME_LIMIT_BYTES: usize = 100 * MIB;

/// Where a seed's body may hold an array count: a big-endian i32 of 0..=64,
/// or (flexible versions) a varint byte of 1..=65, in its first 128 bytes.
fn count_positions(body: &[u8], flexible: bool) -> Vec<(usize, bool)> {
    let mut out = Vec::new();
    for p in 0..body.len().min(128) {
        if p + 4 <= body.len() && (0..=64).contains(&i32::from_be_bytes(body[p..p + 4].try_into().unwrap())) {
            out.push((p, false));
        }
        if flexible && (1..=65).contains(&body[p]) {
            out.push((p, true));
        }
    }
    out
}

/// A claimed count: an i32, or an unsigned varint of count + 1 padded to 5 bytes.
fn count_field(compact: bool, count: u64) -> Vec<u8> {
    if compact {
        padded_varint(count + 1, 5)
    } else {
        (count.min(i32::MAX as u64) as i32).to_be_bytes().to_vec()
    }
}

/// One crafted body's result.
#[derive(Debug)]
struct Measured {
    body_bytes: usize,
    peak_bytes: usize,
    decoded: bool,
}

fn split(seed: &Seed) -> (ApiKey, RequestHeader, Bytes) {
    match api::parse_header(seed.frame.clone()) {
        Ok(Parsed::Request(api, header, body)) => (api, header, body),
        _ => panic!("seed {:?} v{} has a bad header", seed.api, seed.version),
    }
}

fn decode_measured(api: ApiKey, header: &RequestHeader, body: &Bytes) -> Measured {
    let (r, peak_bytes, charged_bytes) = decode_charged(api, header, body.clone());
    // Everything the decode allocated was charged to the budget first.
    assert!(
        peak_bytes <= charged_bytes + UNCHARGED_SLACK_BYTES,
        "{api:?} v{}: {peak_bytes} bytes allocated but only {charged_bytes} charged",
        header.request_api_version
    );
    Measured { body_bytes: body.len(), peak_bytes, decoded: r.is_ok() }
}

/// The seed's body up to `at`, then a claimed count, then `pad` up to
/// `size_bytes`: with pad 0 every following element is the smallest of a
/// non-flexible version; with pad 1, in flexible versions, each element
/// carries an unknown tagged field (count 1, tag 1, length 1, one byte).
/// Tries counts from "every byte an element" down to the largest the
/// decoder accepts, and a count far beyond the bytes; returns each result.
fn craft_and_decode(seed: &Seed, at: usize, compact: bool, pad: u8, size_bytes: usize) -> Vec<Measured> {
    let (api, header, body) = split(seed);
    let count_width = if compact { 5 } else { 4 };
    let mut buf = BytesMut::with_capacity(size_bytes.max(at + count_width));
    buf.put_slice(&body[..at]);
    let count_at = buf.len();
    buf.put_bytes(0, count_width);
    buf.resize(size_bytes.max(buf.len()), pad);
    let remaining = (buf.len() - count_at - count_width) as u64;
    let mut out = Vec::new();
    let mut counts: Vec<u64> = (1..=40).map(|per| remaining / per).collect();
    counts.insert(0, u32::MAX as u64 - 1);
    for count in counts {
        // Fixed width, so the body's length is the same for every count.
        let field = count_field(compact, count);
        buf[count_at..count_at + count_width].copy_from_slice(&field);
        let frozen = buf.freeze();
        let m = decode_measured(api, &header, &frozen);
        buf = frozen.try_into_mut().expect("the decode kept no reference to the body");
        let refused_count = !m.decoded && m.peak_bytes < 64 * KIB;
        out.push(m);
        // The first count the decoder accepts (or that fails deeper) is the
        // most elements it will build; smaller ones prove nothing new.
        if count != u32::MAX as u64 - 1 && !refused_count {
            break;
        }
    }
    out
}

/// `v` as an unsigned varint of exactly `width` bytes (redundant
/// continuation groups, which decoders accept as long as `v` fits).
fn padded_varint(v: u64, width: usize) -> Vec<u8> {
    let v = v.min(u32::MAX as u64);
    (0..width)
        .map(|i| {
            let group = ((v >> (7 * i)) & 0x7f) as u8;
            if i + 1 < width {
                group | 0x80
            } else {
                group
            }
        })
        .collect()
}

fn check_sweep(seeds: &[Seed], sizes: &[usize], positions_max: usize, pads: &[u8]) -> (usize, f64) {
    let mut cases = 0;
    let mut worst_ratio = 0.0f64;
    for seed in seeds {
        let (api, header, body) = split(seed);
        let flexible = api.request_header_version(header.request_api_version) >= 2;
        let positions = count_positions(&body, flexible);
        for &(at, compact) in positions.iter().take(positions_max) {
            for &size in sizes {
                for &pad in pads {
                    for m in craft_and_decode(seed, at, compact, pad, size) {
                        let allowed = api::decode_budget_bytes(m.body_bytes) + UNCHARGED_SLACK_BYTES;
                        assert!(
                            m.peak_bytes <= allowed,
                            "{api:?} v{}: a count at body byte {at} (compact {compact}, pad {pad}) in {} bytes allocated {} bytes (allowed {allowed}); decoded: {}",
                            header.request_api_version,
                            m.body_bytes,
                            m.peak_bytes,
                            m.decoded
                        );
                        worst_ratio = worst_ratio.max(m.peak_bytes as f64 / m.body_bytes as f64);
                        cases += 1;
                    }
                }
            }
        }
    }
    (cases, worst_ratio)
}

/// Every seed (API and version), counts at each plausible count position,
/// 1 KiB and 64 KiB bodies.
#[test]
fn crafted_small_bodies_stay_within_the_budget() {
    let (cases, worst) = check_sweep(&seeds(), &[KIB, 64 * KIB], 12, &[0, 1]);
    eprintln!("{cases} crafted bodies of 1-64 KiB, worst peak/body {worst:.1}");
    assert!(cases > 5000, "{cases}");
}

/// Each API's oldest and newest versions.
fn oldest_and_newest() -> Vec<Seed> {
    let all = seeds();
    let mut picked: Vec<Seed> = Vec::new();
    for s in &all {
        let versions = all.iter().filter(|o| o.api == s.api).map(|o| o.version);
        let (lo, hi) = (versions.clone().min().unwrap(), versions.max().unwrap());
        if (s.version == lo || s.version == hi) && !picked.iter().any(|p| p.api == s.api && p.version == s.version) {
            picked.push(s.clone());
        }
    }
    picked
}

/// Each API's oldest and newest version at 1 MiB and 16 MiB.
#[test]
fn crafted_bodies_of_1_to_16_mib_stay_within_the_budget() {
    let (cases, worst) = check_sweep(&oldest_and_newest(), &[MIB, 16 * MIB], 2, &[0, 1]);
    eprintln!("{cases} crafted bodies of 1-16 MiB, worst peak/body {worst:.2}");
    assert!(cases > 1000, "{cases}");
}

/// Each API's newest version at the 100 MiB frame limit, a count at its
/// first count position. (Decoding up to the 408 MiB budget takes seconds
/// per body in a debug build; the wider sweep is the long variant below.)
#[test]
fn crafted_bodies_at_the_frame_limit_stay_within_the_budget() {
    let picked = oldest_and_newest();
    let newest: Vec<Seed> =
        picked.iter().filter(|s| !picked.iter().any(|o| o.api == s.api && o.version > s.version)).cloned().collect();
    let (cases, worst) = check_sweep(&newest, &[FRAME_LIMIT_BYTES], 1, &[1]);
    eprintln!("{cases} crafted bodies of 100 MiB, worst peak/body {worst:.2}");
    assert!(cases >= 25, "{cases}");
}

/// The long variant: three count positions, both paddings, up to 100 MiB,
/// each API's oldest and newest version (2–3 minutes in a debug build).
#[test]
#[ignore]
fn crafted_bodies_up_to_the_frame_limit_long() {
    let (cases, worst) = check_sweep(&oldest_and_newest(), &[MIB, 16 * MIB, FRAME_LIMIT_BYTES], 3, &[0, 1]);
    eprintln!("{cases} crafted bodies of 1-100 MiB, worst peak/body {worst:.2}");
}

/// Bodies of one shape, for the report: (name, API, version, body of about `size` bytes).
fn shapes(size: usize) -> Vec<(&'static str, ApiKey, i16, Bytes)> {
    let mut out = Vec::new();
    // Produce v3: transactional id null, acks, timeout, N topics of 6 bytes.
    let n = (size - 12) / 6;
    let mut b = BytesMut::with_capacity(size);
    b.put_slice(&[0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30]);
    b.put_i32(n as i32);
    b.put_bytes(0, n * 6);
    out.push(("Produce v3, minimal topics (6 B)", ApiKey::Produce, 3, b.freeze()));
    // Produce v3 claiming as many topics as there are bytes (the old bound).
    let mut b = BytesMut::with_capacity(size);
    b.put_slice(&[0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30]);
    b.put_i32((size - 12) as i32);
    b.put_bytes(0, size - 12);
    out.push(("Produce v3, count = bytes left", ApiKey::Produce, 3, b.freeze()));
    // Produce v9: N topics of 3 bytes (empty name, no partitions, no tags).
    let n = (size - 13) / 3;
    let mut b = BytesMut::with_capacity(size);
    b.put_slice(&[0, 0, 1, 0, 0, 0x75, 0x30]);
    b.put_slice(&padded_varint(n as u64 + 1, 5));
    for _ in 0..n {
        b.put_slice(&[1, 1, 0]);
    }
    b.put_u8(0);
    out.push(("Produce v9, minimal topics (3 B)", ApiKey::Produce, 9, b.freeze()));
    // Produce v9: N topics with one unknown tagged field each (5 bytes).
    let n = (size - 13) / 5;
    let mut b = BytesMut::with_capacity(size);
    b.put_slice(&[0, 0, 1, 0, 0, 0x75, 0x30]);
    b.put_slice(&padded_varint(n as u64 + 1, 5));
    for _ in 0..n {
        b.put_slice(&[1, 1, 1, 5, 0]);
    }
    b.put_u8(0);
    out.push(("Produce v9, topics with a tagged field (5 B)", ApiKey::Produce, 9, b.freeze()));
    // Produce v9: one topic carrying N distinct unknown tagged fields (tags
    // from 16384 up: 3-byte varints, then an empty value).
    let n = ((size - 16) / 4).min(1 << 21);
    let mut b = BytesMut::with_capacity(size);
    b.put_slice(&[0, 0, 1, 0, 0, 0x75, 0x30, 2, 1, 1]); // one topic, empty name, no partitions
    b.put_slice(&padded_varint(n as u64, 5));
    for t in 0..n as u64 {
        b.put_slice(&padded_varint(16384 + t, 3));
        b.put_u8(0);
    }
    b.put_u8(0);
    b.resize(size.max(b.len()), 0);
    out.push(("Produce v9, one topic with distinct tagged fields (4 B)", ApiKey::Produce, 9, b.freeze()));
    // Metadata v9: N topics of 2 bytes (null name, no tags).
    let n = (size - 9) / 2;
    let mut b = BytesMut::with_capacity(size);
    b.put_slice(&padded_varint(n as u64 + 1, 5));
    b.put_bytes(0, n * 2);
    b.put_slice(&[1, 0, 0, 0]); // auto-create, cluster and topic operations, tags
    out.push(("Metadata v9, minimal topics (2 B)", ApiKey::Metadata, 9, b.freeze()));
    // Fetch v12: one topic with N partitions of 33 bytes (nested).
    let n = (size - 40) / 33;
    let mut b = BytesMut::with_capacity(size);
    b.put_i32(-1);
    b.put_i32(500);
    b.put_i32(1);
    b.put_i32(1 << 20);
    b.put_u8(0);
    b.put_i32(0);
    b.put_i32(-1);
    b.put_slice(&[2, 1]); // one topic, empty name
    b.put_slice(&padded_varint(n as u64 + 1, 5));
    b.put_bytes(0, n * 33);
    b.put_slice(&[0, 1, 1, 0]); // topic tags, no forgotten topics, empty rack, tags
    out.push(("Fetch v12, one topic, minimal partitions (33 B)", ApiKey::Fetch, 12, b.freeze()));
    out
}

/// Peak allocation of decoding each shape at 1 KiB .. 100 MiB; prints a table
/// (`cargo test -p laminar-broker decode_peak_report -- --ignored --nocapture`).
/// `LAMINAR_REPORT_MAX_MIB` caps the sizes (the unpatched codec needs GBs).
#[test]
#[ignore]
fn decode_peak_report() {
    let max_mib: usize = std::env::var("LAMINAR_REPORT_MAX_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    for size in [KIB, MIB, 16 * MIB, 100 * MIB] {
        if size > max_mib * MIB {
            continue;
        }
        for (name, api, version, body) in shapes(size) {
            let header = RequestHeader::default().with_request_api_key(api as i16).with_request_api_version(version);
            let m = decode_measured(api, &header, &body);
            let result = if m.decoded { "decoded".to_string() } else { "refused".to_string() };
            eprintln!(
                "{name:48} {:>9} B body: {result:8} peak {:>13} B ({:.2}x)",
                m.body_bytes,
                m.peak_bytes,
                m.peak_bytes as f64 / m.body_bytes as f64
            );
        }
    }
}

/// The shapes above must decode (small) or be refused (large) within the budget.
#[test]
fn shapes_up_to_the_frame_limit_stay_within_the_budget() {
    for size in [KIB, MIB, FRAME_LIMIT_BYTES] {
        for (name, api, version, body) in shapes(size) {
            let header = RequestHeader::default().with_request_api_key(api as i16).with_request_api_version(version);
            let m = decode_measured(api, &header, &body);
            let allowed = api::decode_budget_bytes(m.body_bytes) + UNCHARGED_SLACK_BYTES;
            assert!(m.peak_bytes <= allowed, "{name} at {size} B: peak {} > {allowed}", m.peak_bytes);
            if size == KIB && !name.contains("count = bytes left") {
                assert!(m.decoded, "{name} at 1 KiB is a valid request and must decode");
            }
        }
    }
}

/// `min_encoded_size` must equal the encoding of the default value (the
/// smallest one: empty strings and arrays, no tagged fields) at every
/// version: larger would refuse valid requests, smaller weakens the bound.
#[test]
fn min_encoded_sizes_match_the_smallest_encodings() {
    fn check<T: Decodable + Encodable + Default + Message>(name: &str) {
        for v in T::VERSIONS.min..=T::VERSIONS.max {
            let mut b = BytesMut::new();
            T::default().encode(&mut b, v).unwrap_or_else(|e| panic!("{name} v{v}: {e}"));
            assert_eq!(T::min_encoded_size(v), b.len(), "{name} v{v}: min_encoded_size vs the default's encoding");
            let mut bytes = b.freeze();
            T::decode(&mut bytes, v).unwrap_or_else(|e| panic!("{name} v{v} decodes its default: {e}"));
            assert!(bytes.is_empty());
        }
    }
    use kafka_protocol::messages::{
        alter_configs_request as ac, create_partitions_request as cp, create_topics_request as ct,
        delete_records_request as dr, delete_topics_request as dt, describe_configs_request as dc, fetch_request as f,
        incremental_alter_configs_request as iac, join_group_request as jg, leave_group_request as lg,
        list_offsets_request as lo, metadata_request as m, offset_commit_request as oc, offset_delete_request as od,
        offset_fetch_request as of, produce_request as p, sync_group_request as sg,
    };
    check::<p::PartitionProduceData>("PartitionProduceData");
    check::<p::TopicProduceData>("TopicProduceData");
    check::<f::FetchPartition>("FetchPartition");
    check::<f::FetchTopic>("FetchTopic");
    check::<f::ForgottenTopic>("ForgottenTopic");
    check::<lo::ListOffsetsPartition>("ListOffsetsPartition");
    check::<lo::ListOffsetsTopic>("ListOffsetsTopic");
    check::<m::MetadataRequestTopic>("MetadataRequestTopic");
    check::<ct::CreatableReplicaAssignment>("CreatableReplicaAssignment");
    check::<ct::CreatableTopic>("CreatableTopic");
    check::<ct::CreatableTopicConfig>("CreatableTopicConfig");
    check::<dt::DeleteTopicState>("DeleteTopicState");
    check::<dr::DeleteRecordsPartition>("DeleteRecordsPartition");
    check::<dr::DeleteRecordsTopic>("DeleteRecordsTopic");
    check::<dc::DescribeConfigsResource>("DescribeConfigsResource");
    check::<ac::AlterConfigsResource>("AlterConfigsResource");
    check::<ac::AlterableConfig>("AlterableConfig");
    check::<cp::CreatePartitionsAssignment>("CreatePartitionsAssignment");
    check::<cp::CreatePartitionsTopic>("CreatePartitionsTopic");
    check::<iac::AlterConfigsResource>("incremental AlterConfigsResource");
    check::<iac::AlterableConfig>("incremental AlterableConfig");
    check::<jg::JoinGroupRequestProtocol>("JoinGroupRequestProtocol");
    check::<sg::SyncGroupRequestAssignment>("SyncGroupRequestAssignment");
    check::<lg::MemberIdentity>("MemberIdentity");
    check::<oc::OffsetCommitRequestPartition>("OffsetCommitRequestPartition");
    check::<oc::OffsetCommitRequestTopic>("OffsetCommitRequestTopic");
    check::<of::OffsetFetchRequestGroup>("OffsetFetchRequestGroup");
    check::<of::OffsetFetchRequestTopic>("OffsetFetchRequestTopic");
    check::<of::OffsetFetchRequestTopics>("OffsetFetchRequestTopics");
    check::<od::OffsetDeleteRequestPartition>("OffsetDeleteRequestPartition");
    check::<od::OffsetDeleteRequestTopic>("OffsetDeleteRequestTopic");
}

/// Over the budget is a decode error whose message says so.
#[test]
fn over_the_budget_is_a_clear_decode_error() {
    let size = 16 * MIB;
    let (_, api, version, body) = shapes(size).into_iter().find(|s| s.0.starts_with("Metadata")).unwrap();
    let header = RequestHeader::default().with_request_api_key(api as i16).with_request_api_version(version);
    let err = api::decode::<MetadataRequest>(&header, body).unwrap_err().to_string();
    assert!(err.contains("decode memory budget exceeded"), "{err}");
}
