//! The client over real sockets: against the in-memory mock broker for the happy paths and
//! leader routing, and against hand-rolled misbehaving servers for the failure paths.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use laminar_client::mock_broker::{MockBroker, MockOptions};
use laminar_client::{
    Acks, BatchBuilder, BatchReader, BrokerConnection, Client, ClientConfig, Compression, Connection, ConnectionConfig,
    Error, FetchOptions, FetchTarget, NewTopic, OffsetSpec, ProduceBatch,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn batch(values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for v in values {
        b.append(1_700_000_000_000, None, Some(v.as_bytes()), &[]).unwrap();
    }
    b.finish().unwrap()
}

fn values(records: Bytes) -> Vec<String> {
    BatchReader::new(records)
        .flat_map(|b| b.unwrap().records().unwrap().map(|r| r.unwrap()).collect::<Vec<_>>())
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

fn fast_config(addr: &str) -> ClientConfig {
    let mut config = ClientConfig::new(addr);
    config.retry_backoff = Duration::from_millis(5);
    config
}

#[tokio::test]
async fn negotiates_down_to_api_versions_v0() {
    for max in [3, 2, 0] {
        let broker = MockBroker::start(MockOptions { api_versions_max: max, ..MockOptions::default() }).await.unwrap();
        let conn = BrokerConnection::connect(&broker.address(), ConnectionConfig::default()).await.unwrap();
        assert_eq!(conn.versions().range(ApiKey::Produce), Some((3, 12)));
        let seen: Vec<(i16, i16)> =
            broker.requests_seen().into_iter().filter(|(k, _)| *k == ApiKey::ApiVersions as i16).collect();
        let expected = if max == 3 { vec![(18, 3)] } else { vec![(18, 3), (18, max)] };
        assert_eq!(seen, expected, "ApiVersions max {max}");
    }
}

#[tokio::test]
async fn admin_produce_fetch_and_offsets_through_the_client() {
    let broker = MockBroker::start(MockOptions::default()).await.unwrap();
    let client = Client::connect(fast_config(&broker.address())).await.unwrap();
    let topic = NewTopic { name: "t".into(), partitions: 2, replication_factor: 1, configs: vec![] };
    let created = client.create_topics(std::slice::from_ref(&topic), 1000).await.unwrap();
    assert_eq!(created[0].error_code, 0);
    assert_eq!(client.create_topics(&[topic], 1000).await.unwrap()[0].error_code, 36, "TOPIC_ALREADY_EXISTS");
    assert_eq!(client.partitions("t").await.unwrap(), vec![0, 1]);

    let first = client.produce("t", 1, batch(&["a", "b"]), Acks::All, 1000).await.unwrap();
    let second = client.produce("t", 1, batch(&["c"]), Acks::Leader, 1000).await.unwrap();
    assert_eq!((first.error_code, first.base_offset, second.base_offset), (0, 0, 2));

    let fetched = client.fetch("t", 1, 1, 1 << 20, FetchOptions::default()).await.unwrap();
    assert_eq!(fetched.high_watermark, 3);
    // The fetch starts at the batch holding offset 1, so "a" comes back too.
    assert_eq!(values(fetched.records), ["a", "b", "c"]);
    let latest = client.list_offset("t", 1, OffsetSpec::Latest).await.unwrap();
    let earliest = client.list_offset("t", 1, OffsetSpec::Earliest).await.unwrap();
    assert_eq!((earliest.offset, latest.offset), (0, 3));
    let all = client.list_offsets("t", OffsetSpec::Latest).await.unwrap();
    assert_eq!(all.iter().map(|r| (r.partition, r.offset)).collect::<Vec<_>>(), vec![(0, 0), (1, 3)]);

    // The leader connection is the bootstrap connection: one socket per broker, not two.
    let leader = client.leader("t", 0).await.unwrap();
    assert!(Arc::ptr_eq(&leader, &client.any_broker().await.unwrap()));

    let deleted = client.delete_topics(&["t", "missing"], 1000).await.unwrap();
    assert_eq!(deleted.iter().map(|r| r.error_code).collect::<Vec<_>>(), vec![0, 3]);
}

#[tokio::test]
async fn pipelined_produces_complete_in_order_and_acks_zero_gets_no_response() {
    let broker = MockBroker::start(MockOptions::default()).await.unwrap();
    broker.create_topic("p", 1);
    let config = ConnectionConfig { max_in_flight: 4, ..ConnectionConfig::default() };
    let conn = BrokerConnection::connect(&broker.address(), config).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..20 {
        let records = batch(&[&format!("v{i}")]);
        let b = [ProduceBatch { topic: "p".into(), partition: 0, records }];
        // More requests than in-flight slots: submit waits for a slot instead of failing.
        pending.push(conn.submit_produce(&b, Acks::All, 1000).await.unwrap());
        if pending.len() == 4 {
            let first = pending.remove(0);
            assert_eq!(first.recv().await.unwrap()[0].error_code, 0);
        }
    }
    let mut offsets = Vec::new();
    for p in pending {
        offsets.push(p.recv().await.unwrap()[0].base_offset);
    }
    assert_eq!(offsets, (17..20).collect::<Vec<i64>>());

    let b = [ProduceBatch { topic: "p".into(), partition: 0, records: batch(&["quiet"]) }];
    let result = conn.submit_produce(&b, Acks::None, 1000).await.unwrap().recv().await.unwrap();
    assert_eq!(result[0].base_offset, -1, "acks=0 has no offset to report");
    // The one-way request is still written, and a later request on the connection still works.
    let after = conn.produce("p", 0, batch(&["after"]), Acks::All, 1000).await.unwrap();
    assert_eq!(after.base_offset, 21);
    assert_eq!(broker.batches("p", 0).len(), 22);
}

#[tokio::test]
async fn stale_leader_errors_are_retried_then_returned() {
    let broker = MockBroker::start(MockOptions::default()).await.unwrap();
    broker.create_topic("r", 1);
    let client = Client::connect(fast_config(&broker.address())).await.unwrap();
    broker.set_produce_error(Some(6)); // NOT_LEADER_OR_FOLLOWER
    let result = client.produce("r", 0, batch(&["x"]), Acks::All, 1000).await.unwrap();
    assert_eq!(result.error_code, 6);
    let produces = broker.requests_seen().iter().filter(|(k, _)| *k == ApiKey::Produce as i16).count();
    assert_eq!(produces, 4, "the first attempt and three retries");
    // Non-retriable codes come back at once.
    broker.set_produce_error(Some(2)); // CORRUPT_MESSAGE
    assert_eq!(client.produce("r", 0, batch(&["x"]), Acks::All, 1000).await.unwrap().error_code, 2);
    let produces = broker.requests_seen().iter().filter(|(k, _)| *k == ApiKey::Produce as i16).count();
    assert_eq!(produces, 5);
    broker.set_produce_error(None);
    assert_eq!(client.produce("r", 0, batch(&["x"]), Acks::All, 1000).await.unwrap().base_offset, 0);
}

#[tokio::test]
async fn fetches_ending_in_a_partial_batch_are_readable() {
    let broker = MockBroker::start(MockOptions { truncate_fetch_tail: true, ..MockOptions::default() }).await.unwrap();
    broker.create_topic("f", 1);
    let conn = BrokerConnection::connect(&broker.address(), ConnectionConfig::default()).await.unwrap();
    for i in 0..3 {
        conn.produce("f", 0, batch(&[&format!("record {i}")]), Acks::All, 1000).await.unwrap();
    }
    let one_batch = broker.batches("f", 0)[0].len() as i32;
    let target = FetchTarget { topic: "f".into(), partition: 0, offset: 0, max_bytes: one_batch + 10 };
    let result = conn.fetch(target, FetchOptions::default()).await.unwrap();
    let mut reader = BatchReader::new(result.records);
    assert_eq!(reader.by_ref().count(), 1);
    assert!(reader.truncated_bytes() > 0, "the mock appended half of the next batch");
}

/// A server that reads one request and answers with `reply(correlation_id)` (or nothing).
async fn fake_server(reply: impl Fn(i32) -> Option<Vec<u8>> + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let size = socket.read_i32().await.unwrap();
        let mut frame = vec![0u8; size as usize];
        socket.read_exact(&mut frame).await.unwrap();
        let correlation_id = i32::from_be_bytes(frame[4..8].try_into().unwrap());
        match reply(correlation_id) {
            Some(bytes) => socket.write_all(&bytes).await.unwrap(),
            // Keep the socket open and silent.
            None => tokio::time::sleep(Duration::from_secs(30)).await,
        }
        keep_open(socket).await;
    });
    addr
}

async fn keep_open(_socket: TcpStream) {
    tokio::time::sleep(Duration::from_secs(30)).await;
}

/// An ApiVersions v0 response frame: correlation id, error 0, no api keys.
fn api_versions_v0(correlation_id: i32) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_i32(correlation_id);
    body.put_i16(0);
    body.put_i32(0);
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.put_slice(&body);
    frame.to_vec()
}

#[tokio::test]
async fn a_correct_answer_from_a_fake_server_decodes() {
    let addr = fake_server(|id| Some(api_versions_v0(id))).await;
    let conn = Connection::connect(&addr, ConnectionConfig::default()).await.unwrap();
    let response = conn.call(&ApiVersionsRequest::default(), 0).await.unwrap();
    assert_eq!(response.error_code, 0);
    assert!(response.api_keys.is_empty());
}

#[tokio::test]
async fn wrong_correlation_ids_close_the_connection() {
    let addr = fake_server(|id| Some(api_versions_v0(id + 1))).await;
    let conn = Connection::connect(&addr, ConnectionConfig::default()).await.unwrap();
    let err = conn.call(&ApiVersionsRequest::default(), 0).await.unwrap_err();
    assert!(matches!(err, Error::Closed(_)), "{err}");
    assert!(conn.is_closed());
    assert!(matches!(conn.call(&ApiVersionsRequest::default(), 0).await, Err(Error::Closed(_))));
}

#[tokio::test]
async fn oversized_and_truncated_frames_fail_instead_of_allocating() {
    let addr = fake_server(|_| Some(i32::MAX.to_be_bytes().to_vec())).await;
    let conn = Connection::connect(&addr, ConnectionConfig::default()).await.unwrap();
    let err = conn.call(&ApiVersionsRequest::default(), 0).await.unwrap_err();
    assert!(err.to_string().contains("outside the bound"), "{err}");

    // Half a frame, then the server hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 256];
        let _ = socket.read(&mut buf).await;
        socket.write_all(&[0, 0, 0, 50, 1, 2]).await.unwrap();
    });
    let conn = Connection::connect(&addr, ConnectionConfig::default()).await.unwrap();
    let err = conn.call(&ApiVersionsRequest::default(), 0).await.unwrap_err();
    assert!(err.to_string().contains("mid-frame"), "{err}");
}

#[tokio::test]
async fn silent_servers_time_out_and_refused_connections_error() {
    let addr = fake_server(|_| None).await;
    let config = ConnectionConfig { request_timeout: Duration::from_millis(100), ..ConnectionConfig::default() };
    let conn = Connection::connect(&addr, config).await.unwrap();
    let err = conn.call(&ApiVersionsRequest::default(), 0).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(100)), "{err}");
    assert!(err.is_retriable());

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = Client::connect(ClientConfig::new(&format!("127.0.0.1:{port}"))).await.err().unwrap();
    assert!(matches!(err, Error::NoBroker(_)), "{err}");
    assert!(matches!(Client::connect(ClientConfig::new(" , ")).await, Err(Error::Config(_))));
}
