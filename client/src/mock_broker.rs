//! An in-memory single-node Kafka-protocol broker for tests (cargo feature `mock-broker`).
//!
//! It speaks just enough of the protocol for the client's calls (ApiVersions, Metadata,
//! CreateTopics, DeleteTopics, Produce, Fetch, ListOffsets), keeps batches in memory as sent
//! (with broker-assigned base offsets) and can inject faults. It is a test double, not a
//! reference: real brokers are the reference.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, CreateTopicsResponse, DeleteTopicsResponse, FetchRequest, FetchResponse,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, RequestKind,
    ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::batch_reader::{BatchReader, RecordBatch};

/// Largest request the mock accepts.
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;
/// Requests remembered for `requests_seen`.
const REQUEST_LOG_MAX: usize = 10_000;

#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Highest ApiVersions version accepted; above it the answer is error 35 in a v0 body.
    pub api_versions_max: i16,
    /// Create unknown topics (1 partition) when Metadata asks for them with auto-create set.
    pub auto_create_topics: bool,
    /// Append a partial copy of the last batch to fetch answers, as Kafka may.
    pub truncate_fetch_tail: bool,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self { api_versions_max: 3, auto_create_topics: false, truncate_fetch_tail: false }
    }
}

#[derive(Default)]
struct PartitionLog {
    /// (base offset, batch with its base offset set).
    batches: Vec<(i64, Bytes)>,
    next_offset: i64,
}

#[derive(Default)]
struct State {
    topics: BTreeMap<String, Vec<PartitionLog>>,
    requests: Vec<(i16, i16)>,
    produce_error: Option<i16>,
    write_fault: Option<WriteFault>,
}

/// A broker bug to imitate, for testing tools that check delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// Acknowledge produced batches without storing them (lost acknowledged writes).
    Lose,
    /// Store every produced batch twice (duplicated writes).
    Duplicate,
}

pub struct MockBroker {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

impl MockBroker {
    /// Listens on a free loopback port.
    pub async fn start(options: MockOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let conn = Connection { state: Arc::clone(&shared), options: options.clone(), addr };
                tokio::spawn(async move {
                    let _ = conn.serve(socket).await;
                });
            }
        });
        Ok(Self { addr, state, accept })
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    pub fn create_topic(&self, name: &str, partitions: usize) {
        let mut state = self.state.lock().expect("mock state");
        state
            .topics
            .entry(name.to_string())
            .or_insert_with(|| (0..partitions).map(|_| PartitionLog::default()).collect());
    }

    /// The batches stored for a partition, base offsets filled in.
    pub fn batches(&self, topic: &str, partition: usize) -> Vec<Bytes> {
        let state = self.state.lock().expect("mock state");
        state
            .topics
            .get(topic)
            .and_then(|t| t.get(partition))
            .map(|p| p.batches.iter().map(|b| b.1.clone()).collect())
            .unwrap_or_default()
    }

    /// (api key, version) of every request so far (the most recent 10,000).
    pub fn requests_seen(&self) -> Vec<(i16, i16)> {
        self.state.lock().expect("mock state").requests.clone()
    }

    /// Makes every Produce partition answer with `code` (None: back to normal).
    pub fn set_produce_error(&self, code: Option<i16>) {
        self.state.lock().expect("mock state").produce_error = code;
    }

    /// Imitates a broker bug on every Produce until reset with `None`.
    pub fn set_write_fault(&self, fault: Option<WriteFault>) {
        self.state.lock().expect("mock state").write_fault = fault;
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

struct Connection {
    state: Arc<Mutex<State>>,
    options: MockOptions,
    addr: SocketAddr,
}

impl Connection {
    async fn serve(&self, mut socket: TcpStream) -> std::io::Result<()> {
        // Without this, Nagle's algorithm meets the client's delayed ACKs and small responses
        // wait ~40 ms, which would show up in every latency a test measures against the mock.
        socket.set_nodelay(true)?;
        loop {
            let size = match socket.read_i32().await {
                Ok(n) => n,
                Err(_) => return Ok(()),
            };
            if size < 0 || size as usize > MAX_REQUEST_BYTES {
                return Ok(()); // Kafka closes the connection on an oversized request.
            }
            let mut frame = vec![0u8; size as usize];
            socket.read_exact(&mut frame).await?;
            let Some(reply) = self.handle(Bytes::from(frame)).await else { continue };
            socket.write_all(&reply).await?;
        }
    }

    /// The framed response, or None when none is due (acks=0) or the request is unreadable.
    async fn handle(&self, mut frame: Bytes) -> Option<Bytes> {
        if frame.len() < 4 {
            return None;
        }
        let api_key = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])).ok()?;
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        {
            let mut state = self.state.lock().expect("mock state");
            if state.requests.len() >= REQUEST_LOG_MAX {
                state.requests.remove(0);
            }
            state.requests.push((api_key as i16, version));
        }
        if api_key == ApiKey::ApiVersions && version > self.options.api_versions_max {
            // KIP-511: answer an unknown ApiVersions version in v0 shape with error 35.
            let correlation_id = i32::from_be_bytes(frame[4..8].try_into().ok()?);
            let body = self.api_versions().with_error_code(35);
            return Some(frame_response(correlation_id, 0, &ResponseKind::ApiVersions(body), 0));
        }
        let header = decode_request_header_from_buffer(&mut frame).ok()?;
        let request = RequestKind::decode(api_key, &mut frame, version).ok()?;
        let response = match request {
            RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(self.api_versions()),
            RequestKind::Metadata(r) => ResponseKind::Metadata(self.metadata(r)),
            RequestKind::CreateTopics(r) => {
                let mut state = self.state.lock().expect("mock state");
                let topics = r
                    .topics
                    .into_iter()
                    .map(|t| {
                        let code = match state.topics.entry(t.name.0.to_string()) {
                            Entry::Occupied(_) => 36, // TOPIC_ALREADY_EXISTS
                            Entry::Vacant(_) if t.num_partitions == 0 || t.num_partitions < -1 => 37,
                            Entry::Vacant(slot) => {
                                let n = if t.num_partitions == -1 { 1 } else { t.num_partitions as usize };
                                slot.insert((0..n).map(|_| PartitionLog::default()).collect());
                                0
                            }
                        };
                        CreatableTopicResult::default().with_name(t.name).with_error_code(code)
                    })
                    .collect();
                ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(topics))
            }
            RequestKind::DeleteTopics(r) => {
                let mut state = self.state.lock().expect("mock state");
                let responses = r
                    .topic_names
                    .into_iter()
                    .map(|n| {
                        let code = if state.topics.remove(n.0.as_str()).is_some() { 0 } else { 3 };
                        DeletableTopicResult::default().with_name(Some(n)).with_error_code(code)
                    })
                    .collect();
                ResponseKind::DeleteTopics(DeleteTopicsResponse::default().with_responses(responses))
            }
            RequestKind::Produce(r) => {
                let acks = r.acks;
                let response = self.produce(r);
                if acks == 0 {
                    return None;
                }
                ResponseKind::Produce(response)
            }
            RequestKind::Fetch(r) => ResponseKind::Fetch(self.fetch(r).await),
            RequestKind::ListOffsets(r) => {
                let state = self.state.lock().expect("mock state");
                let topics = r
                    .topics
                    .into_iter()
                    .map(|t| {
                        let log = state.topics.get(t.name.0.as_str());
                        let partitions = t
                            .partitions
                            .into_iter()
                            .map(|p| {
                                let out =
                                    ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                                match log.and_then(|l| l.get(p.partition_index as usize)) {
                                    None => out.with_error_code(3),
                                    Some(part) => {
                                        let offset = match p.timestamp {
                                            -2 => 0,
                                            -1 => part.next_offset,
                                            ts => offset_for_time(part, ts),
                                        };
                                        out.with_offset(offset).with_timestamp(-1)
                                    }
                                }
                            })
                            .collect();
                        ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
                    })
                    .collect();
                ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
            }
            _ => return None,
        };
        Some(frame_response(header.correlation_id, api_key.response_header_version(version), &response, version))
    }

    fn api_versions(&self) -> ApiVersionsResponse {
        let ranges: [(ApiKey, i16, i16); 7] = [
            (ApiKey::ApiVersions, 0, self.options.api_versions_max),
            (ApiKey::Metadata, 0, 12),
            (ApiKey::Produce, 3, 12),
            (ApiKey::Fetch, 4, 12),
            (ApiKey::ListOffsets, 1, 8),
            (ApiKey::CreateTopics, 2, 7),
            (ApiKey::DeleteTopics, 1, 5),
        ];
        let keys = ranges
            .iter()
            .map(|&(k, min, max)| {
                ApiVersion::default().with_api_key(k as i16).with_min_version(min).with_max_version(max)
            })
            .collect();
        ApiVersionsResponse::default().with_api_keys(keys)
    }

    fn metadata(&self, request: MetadataRequest) -> MetadataResponse {
        let mut state = self.state.lock().expect("mock state");
        let names: Vec<String> = match request.topics {
            None => state.topics.keys().cloned().collect(),
            Some(ts) => ts.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect(),
        };
        let topics = names
            .into_iter()
            .map(|name| {
                if !state.topics.contains_key(&name)
                    && request.allow_auto_topic_creation
                    && self.options.auto_create_topics
                {
                    state.topics.insert(name.clone(), vec![PartitionLog::default()]);
                }
                let topic =
                    MetadataResponseTopic::default().with_name(Some(StrBytes::from_string(name.clone()).into()));
                match state.topics.get(&name) {
                    None => topic.with_error_code(3),
                    Some(parts) => topic.with_partitions(
                        (0..parts.len() as i32)
                            .map(|i| {
                                MetadataResponsePartition::default()
                                    .with_partition_index(i)
                                    .with_leader_id(0.into())
                                    .with_replica_nodes(vec![0.into()])
                                    .with_isr_nodes(vec![0.into()])
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        let broker = MetadataResponseBroker::default()
            .with_node_id(0.into())
            .with_host(StrBytes::from_string(self.addr.ip().to_string()))
            .with_port(self.addr.port() as i32);
        MetadataResponse::default()
            .with_brokers(vec![broker])
            .with_controller_id(0.into())
            .with_cluster_id(Some(StrBytes::from_static_str("mock")))
            .with_topics(topics)
    }

    fn produce(&self, request: ProduceRequest) -> ProduceResponse {
        let mut state = self.state.lock().expect("mock state");
        let injected = state.produce_error;
        let fault = state.write_fault;
        let responses = request
            .topic_data
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partition_data
                    .into_iter()
                    .map(|p| {
                        let out = PartitionProduceResponse::default().with_index(p.index);
                        if let Some(code) = injected {
                            return out.with_error_code(code).with_base_offset(-1);
                        }
                        let Some(log) =
                            state.topics.get_mut(t.name.0.as_str()).and_then(|l| l.get_mut(p.index as usize))
                        else {
                            return out.with_error_code(3).with_base_offset(-1);
                        };
                        let Some(batches) = parse_batches(p.records.unwrap_or_default()) else {
                            return out.with_error_code(2).with_base_offset(-1); // CORRUPT_MESSAGE
                        };
                        let base = log.next_offset;
                        match fault {
                            Some(WriteFault::Lose) => {}
                            Some(WriteFault::Duplicate) => {
                                append(log, &batches);
                                append(log, &batches);
                            }
                            None => append(log, &batches),
                        }
                        out.with_base_offset(base)
                    })
                    .collect();
                TopicProduceResponse::default().with_name(t.name).with_partition_responses(partitions)
            })
            .collect();
        ProduceResponse::default().with_responses(responses)
    }

    async fn fetch(&self, request: FetchRequest) -> FetchResponse {
        let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
        loop {
            let (response, bytes) = self.fetch_now(&request);
            if bytes >= request.min_bytes.max(1) as usize || Instant::now() >= deadline {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn fetch_now(&self, request: &FetchRequest) -> (FetchResponse, usize) {
        let state = self.state.lock().expect("mock state");
        let mut total = 0;
        let responses = request
            .topics
            .iter()
            .map(|t| {
                let log = state.topics.get(t.topic.0.as_str());
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let out = PartitionData::default().with_partition_index(p.partition);
                        let Some(part) = log.and_then(|l| l.get(p.partition as usize)) else {
                            return out.with_error_code(3);
                        };
                        let out = out.with_high_watermark(part.next_offset).with_last_stable_offset(part.next_offset);
                        if p.fetch_offset > part.next_offset || p.fetch_offset < 0 {
                            return out.with_error_code(1); // OFFSET_OUT_OF_RANGE
                        }
                        let mut records = BytesMut::new();
                        for (base, batch) in &part.batches {
                            let last = base + last_offset_delta(batch);
                            if last < p.fetch_offset {
                                continue;
                            }
                            if !records.is_empty()
                                && records.len() + batch.len() > p.partition_max_bytes.max(0) as usize
                            {
                                if self.options.truncate_fetch_tail {
                                    records.put_slice(&batch[..batch.len() / 2]);
                                }
                                break;
                            }
                            records.put_slice(batch);
                        }
                        total += records.len();
                        out.with_records(Some(records.freeze()))
                    })
                    .collect();
                FetchableTopicResponse::default().with_topic(t.topic.clone()).with_partitions(partitions)
            })
            .collect();
        (FetchResponse::default().with_responses(responses), total)
    }
}

fn last_offset_delta(batch: &[u8]) -> i64 {
    i64::from(i32::from_be_bytes(batch[23..27].try_into().expect("batch header")))
}

fn offset_for_time(part: &PartitionLog, timestamp_ms: i64) -> i64 {
    for (base, batch) in &part.batches {
        let max_ts = (&batch[35..43]).get_i64();
        if max_ts >= timestamp_ms {
            return *base;
        }
    }
    -1
}

/// The batches of a produce request; None if any is invalid or the data ends mid-batch.
fn parse_batches(records: Bytes) -> Option<Vec<RecordBatch>> {
    let mut reader = BatchReader::new(records);
    let mut batches = Vec::new();
    for batch in reader.by_ref() {
        batches.push(batch.ok()?);
    }
    if batches.is_empty() || reader.truncated_bytes() != 0 {
        return None;
    }
    Some(batches)
}

/// Stores batches at the end of the log, setting their base offsets.
fn append(log: &mut PartitionLog, batches: &[RecordBatch]) {
    for batch in batches {
        let mut raw = BytesMut::from(&batch.raw[..]);
        raw[0..8].copy_from_slice(&log.next_offset.to_be_bytes());
        log.batches.push((log.next_offset, raw.freeze()));
        log.next_offset += i64::from(batch.last_offset_delta) + 1;
    }
}

fn frame_response(correlation_id: i32, header_version: i16, body: &ResponseKind, version: i16) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, header_version)
        .expect("header encodes");
    body.encode(&mut out, version).expect("mock response encodes");
    let size = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&size.to_be_bytes());
    out.freeze()
}
