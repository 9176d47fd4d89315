//! Storage-engine benchmark: append throughput (1 KiB and 16 KiB batches, with
//! and without an fdatasync per group commit), read throughput, and recovery scan
//! speed, each printed beside fio's figure for the same I/O pattern measured in
//! the same run, as a ratio.
//!
//! Run: `cargo bench -p laminar-engine --bench engine` (env `BENCH_DIR` picks the
//! disk, default `target/engine-bench`; `BENCH_SECS` the seconds per case, default 4).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use laminar_engine::batch::{compute_crc, HEADER_LEN};
use laminar_engine::{LogConfig, PartitionLog};

/// Concurrent appenders: a shard serving many producers has this many requests
/// in flight for one partition, which is what group commit feeds on.
fn appenders() -> usize {
    std::env::var("BENCH_APPENDERS").ok().and_then(|s| s.parse().ok()).unwrap_or(32)
}

fn make_batch(records: usize, value_len: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..records {
        let mut r = vec![0u8, 0];
        push_varint(&mut r, i as i64);
        push_varint(&mut r, -1);
        push_varint(&mut r, value_len as i64);
        r.extend(std::iter::repeat_n(b'v', value_len));
        r.push(0);
        push_varint(&mut body, r.len() as i64);
        body.extend_from_slice(&r);
    }
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_LEN - 12 + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&((records - 1) as i32).to_be_bytes());
    b.extend_from_slice(&1i64.to_be_bytes());
    b.extend_from_slice(&1i64.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&(records as i32).to_be_bytes());
    b.extend_from_slice(&body);
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

struct AppendResult {
    bytes: u64,
    mb_per_s: f64,
    batches_per_s: f64,
    bytes_per_sync: f64,
    batches_per_round: f64,
}

fn bench_append(dir: &Path, batch_bytes: usize, sync: bool, secs: f64) -> AppendResult {
    let _ = std::fs::remove_dir_all(dir);
    // ~1 KiB or ~16 KiB batches of 100-byte-ish records.
    let records = (batch_bytes / 110).max(1);
    let batch = bytes::Bytes::from(make_batch(records, batch_bytes / records - 10));
    tokio_uring::start(async {
        let (log, _) = PartitionLog::open(dir, LogConfig::default()).unwrap();
        let log = Rc::new(log);
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..appenders() {
            let (log, batch) = (log.clone(), batch.clone());
            tasks.push(tokio_uring::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    log.append(vec![batch.clone()], sync).await.unwrap();
                    n += 1;
                }
                n
            }));
        }
        let mut batches = 0;
        for t in tasks {
            batches += t.await.unwrap();
        }
        let el = started.elapsed().as_secs_f64();
        let st = log.stats();
        let bytes = st.bytes as f64;
        log.close().await.unwrap();
        AppendResult {
            bytes: st.bytes,
            mb_per_s: bytes / el / 1e6,
            batches_per_s: batches as f64 / el,
            bytes_per_sync: if st.syncs > 0 { bytes / st.syncs as f64 } else { 0.0 },
            batches_per_round: st.batches as f64 / st.commits.max(1) as f64,
        }
    })
}

/// Reads the whole log back through the fetch path (locate + the returned file
/// range), 1 MiB per fetch, as a consumer catching up from the page cache does.
fn bench_read(dir: &Path) -> (f64, u64) {
    tokio_uring::start(async {
        let (log, _) = PartitionLog::open(dir, LogConfig::default()).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let started = Instant::now();
        let mut offset = 0;
        let mut total = 0u64;
        while offset < log.high_watermark() {
            let r = log.read(offset, 1 << 20, true).unwrap();
            let s = r.slice.unwrap();
            buf.resize(s.len as usize, 0);
            s.file.read_exact_at(&mut buf, s.position).unwrap();
            // Advance past the whole batches in the range.
            let mut pos = 0;
            while pos + HEADER_LEN <= buf.len() {
                let len = 12 + i32::from_be_bytes(buf[pos + 8..pos + 12].try_into().unwrap()) as usize;
                if pos + len > buf.len() {
                    break;
                }
                let last = i64::from_be_bytes(buf[pos..pos + 8].try_into().unwrap())
                    + i32::from_be_bytes(buf[pos + 23..pos + 27].try_into().unwrap()) as i64;
                offset = last as u64 + 1;
                pos += len;
            }
            total += pos as u64;
        }
        (total as f64 / started.elapsed().as_secs_f64() / 1e6, total)
    })
}

/// Writes `gib` GiB, stops without a clean close (the active segment's index is
/// then missing), and times the reopen: a full CRC-checked scan of the tail.
fn bench_recovery(dir: &Path) -> (f64, f64, u64) {
    let _ = std::fs::remove_dir_all(dir);
    let batch = make_batch(150, 100); // ~16 KiB
    let target: u64 = 1 << 30;
    let cfg = LogConfig { segment_bytes: LogConfig::SEGMENT_BYTES_MAX, ..LogConfig::default() };
    tokio_uring::start(async {
        let (log, _) = PartitionLog::open(dir, cfg.clone()).unwrap();
        while log.size_bytes() < target {
            let v: Vec<_> = (0..64).map(|_| BytesMut::from(&batch[..])).collect();
            log.append(v, false).await.unwrap();
        }
        log.flush().await.unwrap();
        // No close(): the index of the active segment is not written.
    });
    let started = Instant::now();
    let (_, rep) = PartitionLog::open(dir, cfg).unwrap();
    let el = started.elapsed().as_secs_f64();
    (el, rep.bytes_scanned as f64 / (1u64 << 30) as f64, rep.batches_scanned)
}

/// fio's bandwidth in MB/s for a buffered sequential write of `bytes` in `bs`
/// blocks (with `engine`: psync, or io_uring at queue depth 1), with an
/// fdatasync after every write when `sync_each`.
fn fio_write(dir: &Path, bytes: u64, bs: usize, sync_each: bool, engine: &str) -> Option<f64> {
    settle();
    let file = dir.join("fio.dat");
    let _ = std::fs::remove_file(&file);
    let size = (bytes / bs as u64).max(1) * bs as u64;
    let mut cmd = Command::new("fio");
    cmd.args(["--name=seqwrite", "--rw=write", "--iodepth=1", "--output-format=json"])
        .arg(format!("--ioengine={engine}"))
        .arg(format!("--bs={bs}"))
        .arg(format!("--size={size}"))
        .arg(format!("--filename={}", file.display()));
    if sync_each {
        cmd.arg("--fdatasync=1");
    }
    let out = cmd.output().ok()?;
    let _ = std::fs::remove_file(&file);
    fio_bw(&out.stdout, "write")
}

/// fio's page-cache read bandwidth (file written first, cache kept) in MB/s.
fn fio_read(dir: &Path) -> Option<f64> {
    let file = dir.join("fio-read.dat");
    let args = |rw: &str| {
        let mut c = Command::new("fio");
        c.args(["--name=seq", "--ioengine=psync", "--bs=1M", "--size=1G", "--invalidate=0", "--output-format=json"])
            .arg(format!("--rw={rw}"))
            .arg(format!("--filename={}", file.display()));
        c
    };
    args("write").output().ok()?;
    let out = args("read").output().ok()?;
    let _ = std::fs::remove_file(&file);
    fio_bw(&out.stdout, "read")
}

fn fio_bw(json: &[u8], dir: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    Some(v["jobs"][0][dir]["bw_bytes"].as_f64()? / 1e6)
}

/// Writes back every dirty page before a measurement, so no run pays for the
/// writeback of the one before it (on this VM that alone swung buffered
/// figures between 0.4 and 2.4 GB/s).
fn settle() {
    let _ = Command::new("sync").status();
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:>5.0}%", 100.0 * a / b),
        _ => "  n/a".into(),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes harness=false benches this way
    }
    let root = PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "target/engine-bench".into()));
    let secs: f64 = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(4.0);
    std::fs::create_dir_all(&root).unwrap();
    let log_dir = root.join("log");
    println!("laminar-engine bench: {} concurrent appenders, {secs} s per case, dir {}", appenders(), root.display());
    println!(
        "{:<34} {:>10} {:>12} {:>14} {:>12} {:>16} {:>7} {:>18} {:>7}",
        "case", "MB/s", "batches/s", "batches/write", "KiB/sync", "fio same policy", "ratio", "fio io_uring", "ratio"
    );
    for (bytes, name) in [(1024, "1 KiB"), (16 * 1024, "16 KiB")] {
        for sync in [false, true] {
            settle();
            let r = bench_append(&log_dir, bytes, sync, secs);
            // fio writes the same number of bytes right after us, with the same
            // policy: buffered 1 MiB writes; or one fdatasync per the bytes our
            // group commit wrote between two syncs.
            let fio = if sync {
                let bs = (r.bytes_per_sync as usize).clamp(4096, 64 << 20) / 4096 * 4096;
                fio_write(&root, r.bytes, bs, true, "psync")
            } else {
                fio_write(&root, r.bytes, 1 << 20, false, "psync")
            };
            // The same bytes through io_uring in writes the size of our rounds:
            // what this kernel's io_uring path gives a writer that, like ours,
            // has one write in flight.
            let round_bytes = ((r.batches_per_round * bytes as f64) as usize).clamp(4096, 64 << 20) / 4096 * 4096;
            let fio_uring = fio_write(&root, r.bytes, round_bytes, sync, "io_uring");
            println!(
                "{:<34} {:>10.1} {:>12.0} {:>14.1} {:>12.1} {:>16} {:>7} {:>18} {:>7}",
                format!("append {name}{}", if sync { " + fdatasync/group" } else { "" }),
                r.mb_per_s,
                r.batches_per_s,
                r.batches_per_round,
                r.bytes_per_sync / 1024.0,
                fio.map_or("n/a".into(), |f| format!("{f:.1} MB/s")),
                ratio(r.mb_per_s, fio),
                fio_uring.map_or("n/a".into(), |f| format!("{f:.1} MB/s")),
                ratio(r.mb_per_s, fio_uring)
            );
        }
    }
    // Read back what the last case (16 KiB, synced) wrote, from the page cache.
    let (read_mb, read_total) = bench_read(&log_dir);
    let fio_r = fio_read(&root);
    println!(
        "{:<34} {:>10.1} {:>12} {:>14} {:>12} {:>16} {:>7}",
        format!("read {} MiB via fetch path", read_total >> 20),
        read_mb,
        "",
        "",
        "",
        fio_r.map_or("n/a".into(), |f| format!("{f:.1} MB/s")),
        ratio(read_mb, fio_r)
    );
    let (el, gib, batches) = bench_recovery(&log_dir);
    println!("recovery: scanned {gib:.2} GiB ({batches} batches, CRC-checked) in {el:.3} s = {:.3} s/GiB", el / gib);
    let _ = std::fs::remove_dir_all(&log_dir);
}
