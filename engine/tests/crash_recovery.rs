//! Kills a writer process with SIGKILL mid-append, many times, and checks that
//! every acknowledged (fdatasync'ed) batch survives recovery and that the log
//! holds only whole, CRC-valid, contiguous batches afterwards.
//!
//! The writer is this same test binary re-executed with `CRASH_CHILD_DIR` set.
//! With `CRASH_CHILD_IDEMPOTENT` set its batches come from idempotent producers,
//! and the check is that recovery rebuilds their sequence state from the log.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use laminar_engine::batch::{check_stored, compute_crc, BatchHeader, HEADER_LEN};
use laminar_engine::{LogConfig, PartitionLog};

/// A one-record batch whose value (`value_len` bytes) is derived from `seq`, so
/// the reader can check content, not only framing.
fn batch_for(seq: u64, value_len: usize) -> Vec<u8> {
    let fill = (seq % 251) as u8;
    let mut rec = vec![0u8]; // attributes
    rec.extend_from_slice(&[0, 0, 1]); // timestampDelta 0, offsetDelta 0, key null (-1 → 1)
    push_varint(&mut rec, value_len as i64);
    rec.extend(std::iter::repeat_n(fill, value_len));
    rec.push(0); // no headers
    let mut body = Vec::new();
    push_varint(&mut body, rec.len() as i64);
    body.extend_from_slice(&rec);
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_LEN - 12 + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    // baseTimestamp carries the tag, maxTimestamp - baseTimestamp the value length.
    b.extend_from_slice(&((seq * 1_000_000) as i64).to_be_bytes());
    b.extend_from_slice(&((seq * 1_000_000 + value_len as u64) as i64).to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&body);
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The same batch from producer `pid` (epoch 0) with first sequence `seq`.
fn idempotent(mut b: Vec<u8>, pid: i64, seq: i32) -> Vec<u8> {
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&0i16.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn push_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn config() -> LogConfig {
    // Small segments so kills also land around rolls.
    LogConfig { segment_bytes: 2 << 20, ..LogConfig::default() }
}

/// The child: appends forever from 4 concurrent tasks, printing each acked offset.
#[test]
#[ignore = "run by crash_recovery_after_sigkill as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var("CRASH_CHILD_DIR") else { return };
    let idempotent_from = std::env::var("CRASH_CHILD_IDEMPOTENT").ok().map(|s| s.parse::<u64>().unwrap());
    tokio_uring::start(async move {
        let (log, _) = PartitionLog::open(dir.as_ref(), config()).unwrap();
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let log = log.clone();
            tasks.push(tokio_uring::spawn(async move {
                // Idempotent producers carry on from the sequence the parent found.
                let first = idempotent_from.unwrap_or(0);
                for i in first.. {
                    // Timestamp field carries a writer-chosen tag; the offset is the log's.
                    let len = 1000 + ((i * 7919 + t * 31) % 60_000) as usize;
                    let mut b = batch_for(i * 4 + t, len);
                    if idempotent_from.is_some() {
                        b = idempotent(b, 100 + t as i64, i as i32);
                    }
                    let info = log.append(vec![BytesMut::from(&b[..])], true).await.unwrap();
                    println!("acked {} {}", info.base_offset, i * 4 + t);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn crash_recovery_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(u64, u64)> = Vec::new(); // (offset, tag)
    let rounds = 25;
    for round in 0..rounds {
        kill_child_midway(dir.path(), round, None, &mut acked);
        verify(dir.path(), &acked);
    }
    eprintln!("{} acknowledged batches over {rounds} SIGKILLs, all recovered", acked.len());
    assert!(acked.len() > 100, "only {} acks over {rounds} rounds", acked.len());
}

/// Idempotent producers across SIGKILLs: after each recovery the rebuilt state
/// recognises every producer's last batch in the log as a duplicate (original
/// offsets), refuses a gap, and takes the next sequence.
#[test]
fn idempotent_producer_state_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut next_seq = 0u64;
    for round in 0..8 {
        kill_child_midway(dir.path(), round, Some(next_seq), &mut acked);
        verify(dir.path(), &acked);
        next_seq = verify_producers(dir.path());
    }
    assert!(next_seq > 10, "producers wrote only {next_seq} batches each");
}

/// Reopens the log, checks each producer's state against the log, and returns
/// the sequence all producers continue from (past every one's last batch).
fn verify_producers(dir: &std::path::Path) -> u64 {
    tokio_uring::start(async {
        let (log, report) = PartitionLog::open(dir, config()).unwrap();
        // The last batch of each producer, read back from the log: (seq, offset, bytes).
        let mut last: std::collections::HashMap<i64, (i32, u64, Vec<u8>)> = Default::default();
        let mut offset = log.log_start_offset();
        while offset < log.high_watermark() {
            let s = log.read(offset, 1 << 20, true).unwrap().slice.unwrap();
            let mut buf = vec![0u8; s.len as usize];
            s.file.read_exact_at(&mut buf, s.position).unwrap();
            let h = BatchHeader::parse(&buf).unwrap();
            let bytes = buf[..h.total_len()].to_vec();
            if let Some((seq, _, _)) = last.get(&h.producer_id) {
                assert_eq!(*seq + 1, h.base_sequence, "producer {} wrote each sequence once", h.producer_id);
            }
            last.insert(h.producer_id, (h.base_sequence, offset, bytes));
            offset += 1;
        }
        let mut next = 0;
        for (pid, (seq, off, bytes)) in &last {
            let dup = log.append(vec![BytesMut::from(&bytes[..])], true).await.unwrap();
            assert_eq!((dup.base_offset, dup.last_offset), (*off, *off), "producer {pid} retry ({report:?})");
            let gap = idempotent(batch_for(0, 10), *pid, seq + 2);
            assert!(log.append(vec![BytesMut::from(&gap[..])], true).await.is_err(), "gap of producer {pid}");
            next = next.max(*seq as u64 + 1);
        }
        // Bring every producer to `next` so the next child can start them all there.
        for (pid, (seq, _, _)) in &last {
            for s in (*seq as u64 + 1)..next {
                let b = idempotent(batch_for(1_000_000 + s, 10), *pid, s as i32);
                log.append(vec![BytesMut::from(&b[..])], true).await.unwrap();
            }
        }
        log.close().await.unwrap();
        next
    })
}

/// Runs the writer child for a while (longer or shorter by `round`), SIGKILLs
/// it, and adds what it acknowledged to `acked`.
fn kill_child_midway(dir: &std::path::Path, round: usize, idempotent_from: Option<u64>, acked: &mut Vec<(u64, u64)>) {
    let exe = std::env::current_exe().unwrap();
    {
        let mut cmd = Command::new(&exe);
        cmd.args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env("CRASH_CHILD_DIR", dir);
        if let Some(from) = idempotent_from {
            cmd.env("CRASH_CHILD_IDEMPOTENT", from.to_string());
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        // Let it run a varying while: kill lands at different points of the write path.
        // The while counts from its first acknowledgement: a loaded machine
        // can take longer than that to start the child at all.
        let run_for = Duration::from_millis(30 + (round * 37 % 200) as u64);
        let mut started: Option<Instant> = None;
        let mut lines = out.lines();
        let mut seen = 0;
        while started.is_none_or(|t| t.elapsed() < run_for) {
            if started.is_none() && seen > 0 {
                started = Some(Instant::now());
            }
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(rest) = l.strip_prefix("acked ") {
                        let mut it = rest.split(' ');
                        let off: u64 = it.next().unwrap().parse().unwrap();
                        let tag: u64 = it.next().unwrap().parse().unwrap();
                        acked.push((off, tag));
                        seen += 1;
                    }
                }
                _ => break,
            }
        }
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        // Acks printed before the kill but not yet read still count.
        for l in lines.map_while(Result::ok) {
            if let Some(rest) = l.strip_prefix("acked ") {
                let mut it = rest.split(' ');
                acked.push((it.next().unwrap().parse().unwrap(), it.next().unwrap().parse().unwrap()));
            }
        }
        child.wait().unwrap();
        assert!(seen > 0 || round > 0, "child wrote nothing");
    }
}

/// Reopens the log and checks every acked batch is there with its content.
fn verify(dir: &std::path::Path, acked: &[(u64, u64)]) {
    tokio_uring::start(async {
        let (log, report) = PartitionLog::open(dir, config()).unwrap();
        let hw = log.high_watermark();
        let mut by_offset = std::collections::HashMap::new();
        let mut offset = log.log_start_offset();
        while offset < hw {
            let s = log.read(offset, 1 << 20, true).unwrap().slice.unwrap();
            let mut buf = vec![0u8; s.len as usize];
            s.file.read_exact_at(&mut buf, s.position).unwrap();
            let mut pos = 0;
            while pos + HEADER_LEN <= buf.len() {
                let h = BatchHeader::parse(&buf[pos..]).unwrap();
                if pos + h.total_len() > buf.len() {
                    break;
                }
                let bytes = &buf[pos..pos + h.total_len()];
                check_stored(bytes).unwrap_or_else(|e| panic!("offset {offset}: {e} ({report:?})"));
                assert_eq!(h.base_offset as u64, offset, "offsets contiguous");
                let tag = h.base_timestamp as u64 / 1_000_000;
                let mut expect = batch_for(tag, (h.max_timestamp - h.base_timestamp) as usize);
                if h.producer_id >= 0 {
                    expect = idempotent(expect, h.producer_id, h.base_sequence);
                }
                assert!(bytes[12..] == expect[12..], "content of offset {offset} differs");
                by_offset.insert(offset, tag);
                offset += 1;
                pos += h.total_len();
            }
        }
        for (off, tag) in acked {
            assert_eq!(by_offset.get(off), Some(tag), "acked offset {off} lost or changed ({report:?})");
        }
    });
}
