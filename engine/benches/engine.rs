//! Storage-engine benchmark: append throughput (1 KiB and 16 KiB batches, with
//! and without an fdatasync per group commit, at two concurrencies and with one
//! or several writes in flight), read throughput, and recovery scan speed. Each
//! append case is repeated, every repetition followed by fio writing the same
//! bytes, and medians are printed with their ratios, so the machine's own limit
//! sits beside each figure, measured in the same run.
//!
//! Every repetition writes a fixed number of bytes (`BENCH_MB`, default 1024;
//! a quarter of it for durable cases): on this 24 GiB machine that stays under
//! the kernel's background-writeback threshold (10% of memory), past which
//! every buffered writer, fio included, slows down several-fold, so a
//! time-based run would measure how far past it each run got.
//!
//! Run: `cargo bench -p laminar-engine --bench engine`. Env: `BENCH_DIR` the
//! disk (default `target/engine-bench`), `BENCH_MB`, `BENCH_SECS` the cap on
//! one repetition (default 20), `BENCH_REPEAT` repetitions (default 3),
//! `BENCH_PAGES=hot` (see `Pages`), `BENCH_FILTER` runs only the cases whose
//! name contains it.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use laminar_engine::batch::{compute_crc, HEADER_LEN};
use laminar_engine::{LogConfig, PartitionLog};

/// One append case. `appenders` tasks each append one batch and wait for its
/// acknowledgement, in a loop: that many appends are in flight for the
/// partition, as when that many producer requests are (group commit feeds on
/// them). On this machine 32 is latency-bound and 512 saturates.
struct Case {
    batch_bytes: usize,
    appenders: usize,
    sync: bool,
    writes_in_flight: usize,
}

impl Case {
    fn name(&self) -> String {
        format!(
            "{} KiB{}, {} appenders, {} in flight",
            self.batch_bytes / 1024,
            if self.sync { " + fdatasync" } else { "" },
            self.appenders,
            self.writes_in_flight
        )
    }
}

const fn case(kib: usize, appenders: usize, sync: bool, writes_in_flight: usize) -> Case {
    Case { batch_bytes: kib * 1024, appenders, sync, writes_in_flight }
}

/// The engine's default is 4 writes in flight; the 1-in-flight rows show what
/// the pipeline buys.
const CASES: [Case; 8] = [
    case(1, 32, false, 1),
    case(1, 32, false, 4),
    case(1, 512, false, 1),
    case(1, 512, false, 4),
    case(16, 32, false, 1),
    case(16, 32, false, 4),
    case(1, 32, true, 4),
    case(16, 32, true, 4),
];

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
    bytes_per_write: f64,
}

/// Appends `bytes` (or for at most `secs`) into a new log in `dir`, which it
/// leaves on disk.
fn bench_append(dir: &Path, c: &Case, bytes: u64, secs: f64) -> AppendResult {
    // ~1 KiB or ~16 KiB batches of 100-byte-ish records.
    let records = (c.batch_bytes / 110).max(1);
    let batch = bytes::Bytes::from(make_batch(records, c.batch_bytes / records - 10));
    let sync = c.sync;
    tokio_uring::start(async {
        let cfg = LogConfig { writes_in_flight: c.writes_in_flight, ..LogConfig::default() };
        let (log, _) = PartitionLog::open(dir, cfg).unwrap();
        let log = Rc::new(log);
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..c.appenders {
            let (log, batch) = (log.clone(), batch.clone());
            tasks.push(tokio_uring::spawn(async move {
                let mut n = 0u64;
                while log.stats().bytes < bytes && Instant::now() < deadline {
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
            bytes_per_write: bytes / st.writes.max(1) as f64,
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
/// blocks (with `engine` psync, or io_uring at queue depth `iodepth`), with an
/// fdatasync after every write when `sync_each`.
fn fio_write(dir: &Path, bytes: u64, bs: usize, sync_each: bool, engine: &str, iodepth: usize) -> Option<f64> {
    let file = dir.join("fio.dat");
    let _ = std::fs::remove_file(&file);
    let size = (bytes / bs as u64).max(1) * bs as u64;
    let mut cmd = Command::new("fio");
    cmd.args(["--name=seqwrite", "--rw=write", "--output-format=json"])
        .arg(format!("--ioengine={engine}"))
        .arg(format!("--iodepth={iodepth}"))
        .arg(format!("--bs={bs}"))
        .arg(format!("--size={size}"))
        .arg(format!("--filename={}", file.display()));
    if sync_each {
        cmd.arg("--fdatasync=1");
    }
    let out = cmd.output().ok()?;
    settle();
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

/// Writes back every dirty page, so no measurement pays for the writeback of
/// the one before it, and so files deleted after it free clean pages at once.
fn settle() {
    let _ = Command::new("sync").status();
}

/// The state of the memory a measurement writes into. This VM's balloon
/// reports freed guest memory back to the host within seconds, and writing
/// into such memory again faults it in on the host. Large folios suffer most:
/// fio psync writing 1 GiB in 1 MiB writes ran at 1.2–1.4 GB/s after a 5 s
/// pause and 5.9–6.0 GB/s with none; in 128 KiB writes, 5.4–6.2 GB/s either way.
#[derive(Clone, Copy, PartialEq)]
enum Pages {
    /// Every measurement starts after a pause: memory as a freshly started
    /// broker on this VM finds it, and the default.
    Cold,
    /// Every measurement writes into memory the previous one just freed (one
    /// unmeasured warm-up run first): a long-running broker whose page cache
    /// is recycled.
    Hot,
}

impl Pages {
    fn prepare(self) {
        settle();
        if self == Pages::Cold {
            std::thread::sleep(Duration::from_secs(5));
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Median of the per-repetition ratios: each pair ran back to back, so their
/// ratio holds better than either figure on this noisy machine.
fn median_ratio(ours: &[f64], theirs: &[Option<f64>]) -> String {
    let r: Vec<f64> =
        ours.iter().zip(theirs).filter_map(|(a, b)| b.filter(|b| *b > 0.0).map(|b| 100.0 * a / b)).collect();
    if r.is_empty() {
        "n/a".into()
    } else {
        format!("{:.0}%", median(r))
    }
}

/// Median MB/s of fio's runs, with their range: fio's own spread is the
/// noise floor of every ratio beside it.
fn median_mb(v: &[Option<f64>]) -> String {
    let v: Vec<f64> = v.iter().flatten().copied().collect();
    match v.len() {
        0 => "n/a".into(),
        1 => format!("{:.0}", v[0]),
        _ => {
            let (lo, hi) = v.iter().fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            format!("{:.0} ({lo:.0}–{hi:.0})", median(v))
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes harness=false benches this way
    }
    let root = PathBuf::from(env_or("BENCH_DIR", "target/engine-bench".to_string()));
    let bytes: u64 = env_or("BENCH_MB", 1024) << 20;
    let secs: f64 = env_or("BENCH_SECS", 20.0);
    let repeat: usize = env_or("BENCH_REPEAT", 3).max(1);
    let filter = env_or("BENCH_FILTER", String::new());
    let pages = match env_or("BENCH_PAGES", "cold".to_string()).as_str() {
        "hot" => Pages::Hot,
        _ => Pages::Cold,
    };
    std::fs::create_dir_all(&root).unwrap();
    let log_dir = root.join("log");
    let remove_log = || {
        settle();
        let _ = std::fs::remove_dir_all(&log_dir);
    };
    remove_log();
    println!(
        "laminar-engine bench: {} MiB per buffered repetition ({} MiB durable, at most {secs} s), \
         medians of {repeat}, {} pages, dir {}",
        bytes >> 20,
        bytes >> 22,
        if pages == Pages::Hot { "hot" } else { "cold" },
        root.display()
    );
    println!(
        "| case | MB/s | min–max | batches/s | mean ack µs | KiB/write | KiB/sync \
         | fio psync 128 KiB (+ fdatasync as ours) | ratio | fio io_uring, our writes | ratio | fio psync 1 MiB | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let cases: Vec<&Case> = CASES.iter().filter(|c| c.name().contains(&filter)).collect();
    for (i, c) in cases.iter().enumerate() {
        // Durable cases are ~10× slower; a quarter of the bytes keeps them short.
        let bytes = if c.sync { bytes / 4 } else { bytes };
        let mut ours = Vec::new();
        let (mut fio_seq, mut fio_uring, mut fio_1m) = (Vec::new(), Vec::new(), Vec::new());
        if pages == Pages::Hot {
            bench_append(&log_dir, c, bytes, secs);
            remove_log();
        }
        for rep in 0..repeat {
            pages.prepare();
            let r = bench_append(&log_dir, c, bytes, secs);
            if !(filter.is_empty() && i + 1 == cases.len() && rep + 1 == repeat) {
                remove_log(); // the very last log stays for the read case
            }
            // fio then writes the same bytes. psync in 128 KiB writes, fio's
            // fastest block size here (1 MiB writes are ~5× slower on this
            // kernel: docs/benchmarks.md), or, for a durable case, one write
            // and fdatasync per the bytes our group commit wrote between two
            // syncs. io_uring in writes exactly the size of ours, as many in
            // flight as we allow: what this kernel's io_uring path gives the
            // same I/O pattern.
            pages.prepare();
            fio_seq.push(if c.sync {
                fio_write(&root, r.bytes, r.bytes_per_sync as usize, true, "psync", 1)
            } else {
                fio_write(&root, r.bytes, 128 << 10, false, "psync", 1)
            });
            pages.prepare();
            fio_uring.push(fio_write(
                &root,
                r.bytes,
                r.bytes_per_write as usize,
                c.sync,
                "io_uring",
                c.writes_in_flight,
            ));
            if !c.sync {
                pages.prepare();
                fio_1m.push(fio_write(&root, r.bytes, 1 << 20, false, "psync", 1));
            }
            ours.push(r);
        }
        let mb: Vec<f64> = ours.iter().map(|r| r.mb_per_s).collect();
        let med = |f: fn(&AppendResult) -> f64| median(ours.iter().map(f).collect());
        let batches_per_s = med(|r| r.batches_per_s);
        println!(
            "| {} | {:.0} | {:.0}–{:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            c.name(),
            median(mb.clone()),
            mb.iter().copied().fold(f64::INFINITY, f64::min),
            mb.iter().copied().fold(0.0, f64::max),
            batches_per_s,
            // A closed loop, one append in flight per appender: Little's law.
            1e6 * c.appenders as f64 / batches_per_s,
            med(|r| r.bytes_per_write) / 1024.0,
            if c.sync { format!("{:.0}", med(|r| r.bytes_per_sync) / 1024.0) } else { "–".into() },
            median_mb(&fio_seq),
            median_ratio(&mb, &fio_seq),
            median_mb(&fio_uring),
            median_ratio(&mb, &fio_uring),
            median_mb(&fio_1m),
            median_ratio(&mb, &fio_1m),
        );
    }
    if !filter.is_empty() {
        return;
    }
    // Read back what the last case (16 KiB, synced) wrote, from the page cache.
    let (read_mb, read_total) = bench_read(&log_dir);
    let fio_r = fio_read(&root);
    println!(
        "read {} MiB via the fetch path: {read_mb:.0} MB/s; fio page-cache read {} MB/s; ratio {}",
        read_total >> 20,
        median_mb(&[fio_r]),
        median_ratio(&[read_mb], &[fio_r])
    );
    remove_log();
    let (el, gib, batches) = bench_recovery(&log_dir);
    println!("recovery: scanned {gib:.2} GiB ({batches} batches, CRC-checked) in {el:.3} s = {:.3} s/GiB", el / gib);
    let _ = std::fs::remove_dir_all(&log_dir);
}
