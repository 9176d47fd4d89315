//! What clients can make the broker hold, against the real binary with raw
//! sockets: request bytes (budgets per connection, shard and broker), time
//! (half-sent frames, idle connections) and connections (caps overall and
//! per address). Short limits by flags keep the tests quick.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{call, closed_by_broker, frame, Laminar};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use laminar_client::{BatchBuilder, Compression};

const MIB: usize = 1 << 20;

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn serves(s: &mut TcpStream) {
    let r: ApiVersionsResponse = call(s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
}

fn create_topic(l: &Laminar, topic: &str, configs: &[(&str, &str)]) {
    let mut s = l.connect();
    let configs = configs
        .iter()
        .map(|(k, v)| CreatableTopicConfig::default().with_name(name(k)).with_value(Some(name(v))))
        .collect();
    let req = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(name(topic)))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(configs)]);
    let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 7, &req);
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

fn latest_offset(l: &Laminar, topic: &str) -> i64 {
    let mut s = l.connect();
    let req =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(name(topic)))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1)])]);
    let r: ListOffsetsResponse = call(&mut s, ApiKey::ListOffsets, 5, &req);
    r.topics[0].partitions[0].offset
}

/// Writes the size prefix of a `size`-byte frame and then up to `body` bytes
/// of it, stopping when the broker stops reading for `stall`.
fn half_send(addr: &str, size: usize, body: usize, stall: Duration) -> (TcpStream, usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(stall)).unwrap();
    s.write_all(&(size as i32).to_be_bytes()).unwrap();
    let chunk = vec![0u8; MIB];
    let mut sent = 0;
    while sent < body {
        match s.write(&chunk[..MIB.min(body - sent)]) {
            Ok(n) => sent += n,
            Err(_) => break, // the broker stopped reading
        }
    }
    (s, sent)
}

#[test]
fn stalled_frames_hold_bounded_memory_and_time_out() {
    // 200 MiB for the broker: two of the ten 100 MiB frames are read at once.
    let l = Laminar::start(&[
        "--queued-max-request-bytes",
        "209715200",
        "--queued-max-request-bytes-per-shard",
        "209715200",
        "--frame-timeout-ms",
        "1000",
    ]);
    let before_kib = l.rss_kib();
    let started = Instant::now();
    let senders: Vec<_> = (0..10)
        .map(|_| {
            let addr = l.addr.clone();
            std::thread::spawn(move || half_send(&addr, 100 * MIB, 30 * MIB, Duration::from_millis(500)))
        })
        .collect();
    let mut conns: Vec<(TcpStream, usize)> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    let grown_kib = l.rss_kib().saturating_sub(before_kib);
    eprintln!("RSS grew by {} MiB with 10 connections stalled in 100 MiB frames", grown_kib / 1024);
    // Two frames of 30 MB at most, and read buffers; before budgets: 300 MB.
    assert!(grown_kib < 100 * 1024, "RSS grew by {grown_kib} KiB");
    // Each is closed once its frame has had its second: those waiting for
    // the budget get it in turn, and their time starts then.
    for (s, _) in &mut conns {
        assert!(closed_by_broker(s), "a stalled frame is closed");
    }
    eprintln!("all 10 closed after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_secs(1));
    let mut s = l.connect();
    serves(&mut s);
    let log = l.log_text();
    let closes = log.matches("frame not received within 1000 ms").count();
    assert!((1..=10).contains(&closes), "{log}");
    let after_kib = l.rss_kib();
    eprintln!("RSS {} MiB before, {} MiB after the closes", before_kib / 1024, after_kib / 1024);
    assert!(after_kib < before_kib + 40 * 1024, "memory held by closed connections is given back");
}

#[test]
fn an_acks0_flood_stops_being_read_while_the_budget_is_held_and_every_record_lands() {
    let l = Laminar::start(&[
        "--socket-request-max-bytes",
        "1048576",
        "--queued-max-request-bytes",
        "2097152",
        "--queued-max-request-bytes-per-shard",
        "2097152",
    ]);
    // Every append is synced (flush.messages=1), so the disk is the slow end
    // and, unbounded, the flood would queue in memory.
    create_topic(&l, "flood", &[("flush.messages", "1")]);
    // Two connections take the broker's whole budget with 1 MiB frames they
    // do not finish.
    let mut holders: Vec<TcpStream> = (0..2).map(|_| half_send(&l.addr, MIB, 100, Duration::from_secs(5)).0).collect();
    std::thread::sleep(Duration::from_millis(300));
    let before_kib = l.rss_kib();

    const FRAMES: usize = 1600;
    const RECORDS: usize = 16;
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..RECORDS {
        b.append(1_700_000_000_000 + i as i64, None, Some(&[i as u8; 4096]), &[]).unwrap();
    }
    let records: Bytes = b.finish().unwrap();
    let req =
        ProduceRequest::default().with_acks(0).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(name("flood")))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records))])]);
    let one = frame(ApiKey::Produce, 9, 1, &req);
    let written = Arc::new(AtomicUsize::new(0));
    let mut flooder = l.connect();
    let flood = {
        let (mut s, written) = (flooder.try_clone().unwrap(), written.clone());
        std::thread::spawn(move || {
            for _ in 0..FRAMES {
                s.write_all(&one).unwrap();
                written.fetch_add(one.len(), Ordering::SeqCst);
            }
        })
    };
    let total = FRAMES * frame(ApiKey::Produce, 9, 1, &req).len();
    std::thread::sleep(Duration::from_millis(1000));
    let stalled_at = written.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    let grown_kib = l.rss_kib().saturating_sub(before_kib);
    eprintln!("flood stalled at {} of {} MiB; broker RSS grew {} KiB", stalled_at / MIB, total / MIB, grown_kib);
    assert_eq!(written.load(Ordering::SeqCst), stalled_at, "the broker does not read while over budget");
    assert!(stalled_at < total, "the flood is held back");
    assert!(grown_kib < 16 * 1024, "RSS grew by {grown_kib} KiB over a 2 MiB budget");

    // The holders finish their frames (garbage: closed as malformed), the
    // budget comes back, and the flood goes on. Nothing is dropped.
    for h in &mut holders {
        h.set_write_timeout(None).unwrap();
        let _ = h.write_all(&vec![0u8; MIB - 100]);
        assert!(closed_by_broker(h));
    }
    let mut peak_kib = 0;
    while !flood.is_finished() {
        peak_kib = peak_kib.max(l.rss_kib());
        std::thread::sleep(Duration::from_millis(5));
    }
    flood.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = (FRAMES * RECORDS) as i64;
    while latest_offset(&l, "flood") < want && Instant::now() < deadline {
        peak_kib = peak_kib.max(l.rss_kib());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(latest_offset(&l, "flood"), want, "every acks=0 record is stored");
    let grown_kib = peak_kib.saturating_sub(before_kib);
    eprintln!("while {} MiB flowed, broker RSS grew {} KiB at most", total / MIB, grown_kib);
    // Unbounded (acks=0 answered before the data was written), the queue
    // behind the syncs took 130 MB here.
    assert!(grown_kib < 32 * 1024, "RSS grew by {grown_kib} KiB over a 2 MiB budget");
    // The flooder's connection is still fine.
    serves(&mut flooder);
}

/// A connection from `ip` (any address of 127.0.0.0/8 reaches the broker).
fn connect_from(l: &Laminar, ip: &str) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let to: SocketAddr = l.addr.parse().unwrap();
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{ip}:0").parse().unwrap();
    s.bind(&from.into()).unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

#[test]
fn connection_caps_refuse_the_excess_and_serve_the_rest() {
    let l = Laminar::start(&["--max-connections", "5", "--max-connections-per-ip", "3"]);
    let mut a: Vec<TcpStream> = (0..3).map(|_| connect_from(&l, "127.0.0.1")).collect();
    for s in &mut a {
        serves(s);
    }
    let mut refused = connect_from(&l, "127.0.0.1");
    assert!(closed_by_broker(&mut refused), "a fourth from 127.0.0.1 is over its cap");
    let mut b: Vec<TcpStream> = (0..2).map(|_| connect_from(&l, "127.0.0.2")).collect();
    for s in &mut b {
        serves(s);
    }
    let mut refused = connect_from(&l, "127.0.0.2");
    assert!(closed_by_broker(&mut refused), "a sixth is over the broker's cap");
    // The ones admitted are untouched; a closed one frees its place.
    serves(&mut a[0]);
    drop(a.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = connect_from(&l, "127.0.0.2");
        s.write_all(&frame(ApiKey::ApiVersions, 3, 7, &ApiVersionsRequest::default())).unwrap();
        if common::read_frame(&mut s).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "a freed place is given to a new connection");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = l.log_text();
    assert!(log.contains("refusing connection: max.connections.per.ip 3 reached for 127.0.0.1"), "{log}");
    assert!(log.contains("refusing connection: max.connections 5 reached"), "{log}");
}

#[test]
fn idle_connections_and_half_sent_prefixes_are_closed() {
    let l = Laminar::start(&["--connections-max-idle-ms", "1000", "--frame-timeout-ms", "1000"]);
    let mut idle = l.connect();
    serves(&mut idle);
    let idle_since = Instant::now();
    let mut prefix = l.connect();
    prefix.write_all(&[0, 0]).unwrap();
    // A connection that keeps asking stays open well past the idle time.
    let mut busy = l.connect();
    for _ in 0..8 {
        serves(&mut busy);
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(closed_by_broker(&mut idle));
    let idle_for = idle_since.elapsed();
    assert!(idle_for >= Duration::from_millis(1000) && idle_for < Duration::from_secs(10), "{idle_for:?}");
    assert!(closed_by_broker(&mut prefix));
    serves(&mut busy);
    let log = l.log_text();
    assert!(log.contains("frame not received within 1000 ms (2 of a size prefix)"), "{log}");
}
