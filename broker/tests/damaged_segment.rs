//! One damaged sealed segment takes only its partition offline: the broker
//! starts, logs the partition and the reason, answers that partition with
//! KAFKA_STORAGE_ERROR and serves every other partition.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Laminar;
use laminar_client::{
    Acks, BatchBuilder, BatchReader, Client, ClientConfig, Compression, FetchOptions, NewTopic, OffsetSpec,
};

const KAFKA_STORAGE_ERROR: i16 = 56;
/// Batches produced to each partition before the damage: with 1 KiB
/// segments, several sealed segments of a few batches each.
const BATCHES: i64 = 12;

fn batch(tag: &str, i: i64) -> bytes::Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for r in 0..4 {
        b.append(1_700_000_000_000 + i, None, Some(format!("{tag}-{i}-{r}-{}", "v".repeat(40)).as_bytes()), &[])
            .unwrap();
    }
    b.finish().unwrap()
}

/// Values of every record from `offset` to the high watermark (a fetch
/// answers from one segment at a time).
async fn values_from(client: &Client, topic: &str, partition: i32, mut offset: i64) -> (i16, Vec<String>) {
    let mut values = Vec::new();
    loop {
        let f = client.fetch(topic, partition, offset, 1 << 20, FetchOptions::default()).await.unwrap();
        if f.error_code != 0 {
            return (f.error_code, values);
        }
        for b in BatchReader::new(f.records) {
            for r in b.unwrap().records().unwrap() {
                let r = r.unwrap();
                if r.offset >= offset {
                    values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
                    offset = r.offset + 1;
                }
            }
        }
        if offset >= f.high_watermark {
            return (0, values);
        }
    }
}

/// Flips a byte inside the last batch of segment file `log`, past the batch
/// header: that batch's CRC no longer matches. Returns the byte position.
fn damage_last_batch(log: &Path) -> u64 {
    let mut bytes = std::fs::read(log).unwrap();
    let mut pos = 0usize;
    let mut batches = Vec::new();
    while pos + 12 <= bytes.len() {
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        batches.push(pos);
        pos += 12 + len;
    }
    assert_eq!(pos, bytes.len(), "whole batches in {}", log.display());
    assert!(batches.len() >= 2, "the damaged batch is not the segment's first");
    let at = bytes.len() - 3;
    bytes[at] ^= 0x5a;
    std::fs::write(log, &bytes).unwrap();
    at as u64
}

#[test]
fn a_damaged_sealed_segment_takes_only_its_partition_offline() {
    let mut l = Laminar::start(&[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = |addr: &str| {
        let mut c = ClientConfig::new(addr);
        c.retries = 100; // partitions are opening for a moment after a start
        c
    };
    let small = vec![("segment.bytes".to_string(), "1024".to_string())];
    let targets = [("healthy", 0), ("damaged", 0), ("damaged", 1)];
    rt.block_on(async {
        let client = Client::connect(config(&l.addr)).await.unwrap();
        let topics = [
            NewTopic { name: "healthy".into(), partitions: 1, replication_factor: 1, configs: small.clone() },
            NewTopic { name: "damaged".into(), partitions: 2, replication_factor: 1, configs: small.clone() },
        ];
        for t in client.create_topics(&topics, 10_000).await.unwrap() {
            assert_eq!(t.error_code, 0, "{t:?}");
        }
        for (topic, p) in targets {
            for i in 0..BATCHES {
                let r = client.produce(topic, p, batch(topic, i), Acks::All, 5000).await.unwrap();
                assert_eq!(r.error_code, 0, "{topic}-{p}: {r:?}");
            }
        }
    });
    assert!(l.stop(libc::SIGTERM).success(), "clean stop: {}", l.log_text());

    let dir = l.dir.path().join("damaged-0");
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    assert!(logs.len() >= 3, "several segments: {logs:?}");
    // A sealed segment in the middle, with its indexes: recovery trusts such
    // a segment as synced, so damage in it is damage to acknowledged data.
    let sealed = &logs[1];
    assert!(sealed.with_extension("index").exists(), "{} is indexed", sealed.display());
    let at = damage_last_batch(sealed);

    l.restart_stopped();
    rt.block_on(async {
        let client = Client::connect(config(&l.addr)).await.unwrap();
        // Every other partition, of the same topic too, serves reads and writes.
        for (topic, p) in [("healthy", 0), ("damaged", 1)] {
            let (code, values) = values_from(&client, topic, p, 0).await;
            assert_eq!(code, 0, "{topic}-{p}");
            assert_eq!(values.len() as i64, BATCHES * 4, "{topic}-{p} kept every record");
            let r = client.produce(topic, p, batch(topic, BATCHES), Acks::All, 5000).await.unwrap();
            assert_eq!((r.error_code, r.base_offset), (0, BATCHES * 4), "{topic}-{p}: {r:?}");
            let (code, values) = values_from(&client, topic, p, BATCHES * 4).await;
            assert_eq!(code, 0);
            assert_eq!(
                values.first().map(String::as_str),
                Some(format!("{topic}-{BATCHES}-0-{}", "v".repeat(40)).as_str())
            );
        }
        // The damaged partition answers, with an error a client retries
        // (and that tells an operator where to look), rather than hanging.
        let r = client.produce("damaged", 0, batch("damaged", BATCHES), Acks::All, 5000).await.unwrap();
        assert_eq!(r.error_code, KAFKA_STORAGE_ERROR, "{r:?}");
        let message = r.error_message.unwrap_or_default();
        assert!(message.contains("damaged-0") && message.contains("offline"), "{message}");
        let f = client.fetch("damaged", 0, 0, 1 << 20, FetchOptions::default()).await.unwrap();
        assert_eq!(f.error_code, KAFKA_STORAGE_ERROR);
        let o = client.list_offset("damaged", 0, OffsetSpec::Latest).await.unwrap();
        assert_eq!(o.error_code, KAFKA_STORAGE_ERROR);
    });
    assert!(l.log_contains("partition offline"), "{}", l.log_text());
    let log = l.log_text();
    let line = log.lines().find(|l| l.contains("partition offline")).unwrap();
    assert!(line.contains("damaged-0"), "the line names the partition: {line}");
    assert!(line.contains("is damaged at byte") || line.contains(&at.to_string()), "and the reason: {line}");
    assert_eq!(log.matches("partition offline").count(), 1, "only that partition: {log}");
    // Still up and serving after all that.
    std::thread::sleep(Duration::from_millis(100));
    assert!(l.wait_exit(Duration::from_millis(10)).is_none(), "the broker is still running");
}
