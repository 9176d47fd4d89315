//! Record batches checked against kafka-protocol's independent codec, both directions.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KpCompression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as KpTimestampType,
};
use laminar_client::{BatchBuilder, BatchReader, Compression, ProducerIdentity, RecordHeader};

fn kp_codec(c: Compression) -> KpCompression {
    match c {
        Compression::None => KpCompression::None,
        Compression::Gzip => KpCompression::Gzip,
        Compression::Snappy => KpCompression::Snappy,
        Compression::Lz4 => KpCompression::Lz4,
        Compression::Zstd => KpCompression::Zstd,
    }
}

/// A test record as plain data: (timestamp, key, value, headers).
type Sample = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>);

fn samples(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            let key = (i % 3 != 0).then(|| format!("key-{i}").into_bytes());
            let value = (i % 7 != 5).then(|| format!("value {i} ").repeat(1 + i % 40).into_bytes());
            let headers = match i % 4 {
                0 => vec![],
                1 => vec![("h".to_string(), Some(b"v".to_vec()))],
                2 => vec![("trace".to_string(), None), ("ü-key".to_string(), Some(vec![0, 1, 2]))],
                _ => vec![("a".to_string(), Some(vec![])), ("b".to_string(), Some(vec![9; 300]))],
            };
            // Timestamps go backwards sometimes: deltas are signed.
            let ts = 1_700_000_000_000 + (i as i64 * 37) % 1000 - 500;
            (ts, key, value, headers)
        })
        .collect()
}

fn build(builder: &mut BatchBuilder, records: &[Sample]) -> Bytes {
    for (ts, key, value, headers) in records {
        let hs: Vec<RecordHeader<'_>> =
            headers.iter().map(|(k, v)| RecordHeader { key: k, value: v.as_deref() }).collect();
        builder.append(*ts, key.as_deref(), value.as_deref(), &hs).unwrap();
    }
    builder.finish().unwrap()
}

fn to_kp(records: &[Sample], producer: ProducerIdentity) -> Vec<KpRecord> {
    records
        .iter()
        .enumerate()
        .map(|(i, (ts, key, value, headers))| {
            let mut r = KpRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: producer.producer_id,
                producer_epoch: producer.producer_epoch,
                timestamp_type: KpTimestampType::Creation,
                offset: i as i64,
                // kafka-protocol groups records into one batch while offset - sequence stays constant, and
                // derives the base sequence from the first record: offset - 1 yields "no sequence" (-1).
                sequence: if producer.base_sequence < 0 { i as i32 - 1 } else { producer.base_sequence + i as i32 },
                timestamp: *ts,
                key: key.clone().map(Bytes::from),
                value: value.clone().map(Bytes::from),
                headers: Default::default(),
            };
            for (k, v) in headers {
                r.headers.insert(StrBytes::from_string(k.clone()), v.clone().map(Bytes::from));
            }
            r
        })
        .collect()
}

fn assert_reader_matches(batch: Bytes, expected: &[Sample], base_offset: i64) {
    let mut reader = BatchReader::new(batch);
    let batch = reader.next().expect("one batch").expect("valid batch");
    assert!(reader.next().is_none());
    assert_eq!(reader.truncated_bytes(), 0);
    let got: Vec<_> = batch.records().unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(got.len(), expected.len());
    for (i, (r, (ts, key, value, headers))) in got.iter().zip(expected).enumerate() {
        assert_eq!(r.offset, base_offset + i as i64);
        assert_eq!(r.timestamp_ms, *ts);
        assert_eq!(r.key.as_deref(), key.as_deref());
        assert_eq!(r.value.as_deref(), value.as_deref());
        let hs: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            r.headers.iter().map(|(k, v)| (k.to_vec(), v.map(|v| v.to_vec()))).collect();
        let want: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            headers.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.clone())).collect();
        assert_eq!(hs, want, "headers of record {i}");
    }
}

#[test]
fn builder_output_decodes_with_kafka_protocol_for_every_codec() {
    let records = samples(200);
    for codec in Compression::ALL {
        let mut builder = BatchBuilder::new(codec);
        let batch = build(&mut builder, &records);
        let mut buf = batch.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap_or_else(|e| panic!("{codec}: {e:#}"));
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].compression, kp_codec(codec));
        let expected = to_kp(&records, ProducerIdentity::default());
        assert_eq!(sets[0].records.len(), expected.len());
        for (got, want) in sets[0].records.iter().zip(&expected) {
            assert_eq!(got.offset, want.offset, "{codec}");
            assert_eq!(got.timestamp, want.timestamp, "{codec}");
            assert_eq!(got.key, want.key, "{codec}");
            assert_eq!(got.value, want.value, "{codec}");
            assert_eq!(got.headers, want.headers, "{codec}");
            assert_eq!(got.producer_id, -1);
        }
        // And our own reader agrees.
        assert_reader_matches(batch, &records, 0);
    }
}

#[test]
fn kafka_protocol_batches_read_back_for_every_codec() {
    let records = samples(150);
    let producer = ProducerIdentity { producer_id: 4242, producer_epoch: 3, base_sequence: 100 };
    for codec in Compression::ALL {
        let mut buf = BytesMut::new();
        let kp = to_kp(&records, producer);
        RecordBatchEncoder::encode(
            &mut buf,
            kp.iter(),
            &RecordEncodeOptions { version: 2, compression: kp_codec(codec) },
        )
        .unwrap();
        let bytes = buf.freeze();
        let batch = BatchReader::new(bytes.clone()).next().unwrap().unwrap();
        assert_eq!(batch.compression().unwrap(), codec);
        assert_eq!(batch.record_count, 150);
        assert_eq!(batch.last_offset_delta, 149);
        assert_eq!((batch.producer_id, batch.producer_epoch, batch.base_sequence), (4242, 3, 100));
        assert_reader_matches(bytes, &records, 0);
    }
}

#[test]
fn uncompressed_bytes_match_kafka_protocol_exactly() {
    // Same records and header fields: the encodings (and so the CRCs) must be identical.
    // kafka-protocol puts the smallest timestamp in baseTimestamp where ours (like Java's) uses
    // the first record's, so the records are sorted by timestamp to make the two agree.
    let mut records = samples(20);
    records.sort_by_key(|r| r.0);
    let ours = build(&mut BatchBuilder::new(Compression::None), &records);
    let mut theirs = BytesMut::new();
    let kp = to_kp(&records, ProducerIdentity::default());
    RecordBatchEncoder::encode(
        &mut theirs,
        kp.iter(),
        &RecordEncodeOptions { version: 2, compression: KpCompression::None },
    )
    .unwrap();
    assert_eq!(ours.len(), theirs.len());
    assert!(ours[..] == theirs[..], "encodings differ");
}

#[test]
fn producer_identity_advances_sequences_per_batch() {
    let mut builder = BatchBuilder::new(Compression::None);
    builder.set_producer(ProducerIdentity { producer_id: 7, producer_epoch: 0, base_sequence: i32::MAX - 1 });
    let first = build(&mut builder, &samples(3));
    let second = build(&mut builder, &samples(2));
    let b1 = BatchReader::new(first).next().unwrap().unwrap();
    let b2 = BatchReader::new(second).next().unwrap().unwrap();
    assert_eq!(b1.base_sequence, i32::MAX - 1);
    // MAX-1, MAX, 0 were used; the next batch starts at 1 (Kafka wraps sequences to 0).
    assert_eq!(b2.base_sequence, 1);
}

#[test]
fn reader_walks_several_batches_and_stops_at_a_truncated_tail() {
    let mut builder = BatchBuilder::new(Compression::Lz4);
    let mut all = BytesMut::new();
    let mut lens = Vec::new();
    for n in [5usize, 1, 30] {
        let mut batch = BytesMut::from(&build(&mut builder, &samples(n))[..]);
        // The broker assigns base offsets; it is outside the CRC so it can be patched.
        let base = lens.iter().map(|(n, _)| *n as i64).sum::<i64>();
        batch[0..8].copy_from_slice(&base.to_be_bytes());
        lens.push((n, batch.len()));
        all.extend_from_slice(&batch);
    }
    let full = all.clone().freeze();
    let offsets: Vec<i64> = BatchReader::new(full.clone())
        .flat_map(|b| b.unwrap().records().unwrap().map(|r| r.unwrap().offset).collect::<Vec<_>>())
        .collect();
    assert_eq!(offsets, (0..36).collect::<Vec<_>>());

    for cut in [1usize, 11, 12, 60, lens[2].1 - 1] {
        let truncated = full.slice(..full.len() - cut);
        let mut reader = BatchReader::new(truncated);
        assert_eq!(reader.next().unwrap().unwrap().record_count, 5);
        assert_eq!(reader.next().unwrap().unwrap().record_count, 1);
        assert!(reader.next().is_none(), "cut {cut}");
        assert_eq!(reader.truncated_bytes(), lens[2].1 - cut);
    }
}

#[test]
fn corrupted_batches_are_errors_not_panics() {
    let batch = build(&mut BatchBuilder::new(Compression::None), &samples(10));
    // Flip a byte inside the CRC-covered region.
    let mut bad = BytesMut::from(&batch[..]);
    let at = bad.len() - 3;
    bad[at] ^= 0xff;
    let err = BatchReader::new(bad.clone().freeze()).next().unwrap().unwrap_err();
    assert!(err.to_string().contains("CRC"), "{err}");
    // With CRC checks off the damage shows up (or not) in record parsing, never as a panic.
    if let Some(Ok(b)) = BatchReader::new(bad.freeze()).verify_crc(false).next() {
        let _ = b.records().map(|rs| rs.count());
    }
    // Wrong magic.
    let mut old = BytesMut::from(&batch[..]);
    old[16] = 1;
    assert!(BatchReader::new(old.freeze()).next().unwrap().is_err());
    // Absurd length field.
    let mut short = BytesMut::from(&batch[..]);
    short[8..12].copy_from_slice(&5i32.to_be_bytes());
    assert!(BatchReader::new(short.freeze()).next().unwrap().is_err());
    // Every prefix and every single-byte corruption of a compressed batch, CRC checks off.
    let compressed = build(&mut BatchBuilder::new(Compression::Zstd), &samples(10));
    for i in 0..compressed.len() {
        for b in BatchReader::new(compressed.slice(..i)).flatten() {
            if let Ok(records) = b.records() {
                let _ = records.count();
            }
        }
        let mut c = BytesMut::from(&compressed[..]);
        c[i] = c[i].wrapping_add(1);
        for b in BatchReader::new(c.freeze()).verify_crc(false).flatten() {
            if let Ok(records) = b.records() {
                let _ = records.count();
            }
        }
    }
}

#[test]
fn builder_is_reusable_and_rejects_empty_batches() {
    let mut builder = BatchBuilder::new(Compression::Gzip);
    assert!(builder.finish().is_err());
    for round in 0..5 {
        let records = samples(10 + round);
        let batch = build(&mut builder, &records);
        assert!(builder.is_empty());
        assert_reader_matches(batch, &records, 0);
    }
}

#[test]
fn append_with_writes_values_in_place() {
    let mut builder = BatchBuilder::new(Compression::None);
    builder.append_with(5, Some(b"k"), 4, &[], |v| v.copy_from_slice(b"abcd")).unwrap();
    builder.append_with(6, None, 0, &[], |_| {}).unwrap();
    assert_eq!(builder.record_count(), 2);
    let batch = BatchReader::new(builder.finish().unwrap()).next().unwrap().unwrap();
    let records: Vec<_> = batch.records().unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(records[0].value.as_deref(), Some(&b"abcd"[..]));
    assert_eq!(records[1].value.as_deref(), Some(&b""[..]));
    assert_eq!(records[1].key, None);
    assert_eq!(batch.max_timestamp_ms, 6);
}
