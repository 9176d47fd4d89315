//! One segment of a partition log: a `.log` file of record batches stored as
//! received, plus its sparse offset and time indexes. The log owns the write side
//! (group-committed through io_uring); this file holds the bookkeeping and the
//! positional reads used by fetch, ListOffsets and recovery.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::durable;
use crate::error::{EngineError, Result};
use crate::index::{OffsetIndex, TimeIndex};
use crate::sealed_files::SealedFiles;

/// Segment file name for a base offset: 20 digits, as Kafka, so names sort.
pub fn file_stem(base_offset: u64) -> String {
    format!("{base_offset:020}")
}

/// Bytes read per I/O by the recovery scan.
const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// Bytes read per I/O when only batch headers are wanted (producer-state rebuild).
const HEADER_SCAN_CHUNK_BYTES: usize = 64 << 10;

pub struct Segment {
    pub base_offset: u64,
    /// Offset after the last batch in the file.
    pub next_offset: u64,
    /// Bytes of whole, written batches; reads never go past it.
    pub size: u64,
    /// The active segment's file (read side), held open; `None` once sealed,
    /// when reads open it through `sealed_files` ([`Segment::file`]). Shared
    /// with fetches in flight (they keep an unlinked file alive). The write
    /// side (io_uring) is the log's, for its active segment only.
    active_file: Option<Arc<File>>,
    /// The owning log's cache of open sealed-segment files.
    sealed_files: Arc<SealedFiles>,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Largest batch maxTimestamp in the segment, -1 if none.
    pub max_timestamp: i64,
    rel_offset_of_max_timestamp: u32,
    /// Wall-clock ms of the last append (or the file's mtime after a restart);
    /// retention falls back to it when records carry no timestamps.
    pub last_modified_ms: u64,
    /// Wall-clock ms the segment was created, for `segment.ms`: its file's
    /// birth time after a restart (so a restart does not make an old segment
    /// young again), or the first batch's timestamp where the filesystem keeps
    /// no birth time, or the time of the open as a last resort.
    pub created_ms: u64,
    bytes_since_index: u64,
    /// `index.interval.bytes` of the owning log.
    pub index_interval_bytes: u64,
    dir: PathBuf,
}

/// A segment's indexes, detached from it so they can be written on a
/// blocking thread.
pub struct IndexFiles {
    offset_path: PathBuf,
    offset_index: OffsetIndex,
    time_path: PathBuf,
    time_index: TimeIndex,
}

impl IndexFiles {
    /// Both files, then one directory sync for their names.
    pub fn write(&self) -> io::Result<()> {
        self.offset_index.write(&self.offset_path)?;
        self.time_index.write(&self.time_path)?;
        durable::sync_dir(self.offset_path.parent().unwrap_or(Path::new(".")))
    }
}

/// What the recovery scan of one segment found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Valid indexes were found: the scan only covered what follows their last entry.
    pub indexed: bool,
    pub bytes_scanned: u64,
    pub batches: u64,
    pub truncated_bytes: u64,
    pub reason: Option<String>,
}

impl Segment {
    pub fn log_path(dir: &Path, base: u64) -> PathBuf {
        dir.join(format!("{}.log", file_stem(base)))
    }
    fn index_path(&self) -> PathBuf {
        Self::index_paths(&self.dir, self.base_offset)[0].clone()
    }
    fn time_index_path(&self) -> PathBuf {
        Self::index_paths(&self.dir, self.base_offset)[1].clone()
    }
    /// The offset index and the time index of the segment at `base`.
    fn index_paths(dir: &Path, base: u64) -> [PathBuf; 2] {
        let stem = file_stem(base);
        [dir.join(format!("{stem}.index")), dir.join(format!("{stem}.timeindex"))]
    }

    /// Creates a new empty segment starting at `base_offset`, and makes its
    /// name durable (a directory fsync).
    pub fn create(
        dir: &Path,
        base_offset: u64,
        now_ms: u64,
        index_interval_bytes: u64,
        sealed_files: &Arc<SealedFiles>,
    ) -> io::Result<Segment> {
        let seg = Self::create_unsynced(dir, base_offset, now_ms, index_interval_bytes, sealed_files)?;
        durable::sync_dir(dir)?; // make the new name durable
        Ok(seg)
    }

    /// Creates a new empty segment without syncing the directory: the caller
    /// must fsync `dir` before anything in this segment is acknowledged as
    /// durable (a roll does it off the shard's thread; see `log::writer`).
    pub fn create_unsynced(
        dir: &Path,
        base_offset: u64,
        now_ms: u64,
        index_interval_bytes: u64,
        sealed_files: &Arc<SealedFiles>,
    ) -> io::Result<Segment> {
        let path = Self::log_path(dir, base_offset);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        // A file of the same name deleted earlier (a truncated tail) must not be served from the cache.
        sealed_files.forget(base_offset);
        Ok(Segment {
            base_offset,
            next_offset: base_offset,
            size: 0,
            active_file: Some(Arc::new(file)),
            sealed_files: sealed_files.clone(),
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            max_timestamp: -1,
            rel_offset_of_max_timestamp: 0,
            last_modified_ms: now_ms,
            created_ms: now_ms,
            bytes_since_index: 0,
            index_interval_bytes,
            dir: dir.to_path_buf(),
        })
    }

    /// Opens an existing segment. The part of the log not covered by a valid
    /// index is scanned batch by batch (CRC-checked), and a torn or corrupt
    /// tail is truncated — unless the segment is sealed (not `last`) and has
    /// valid indexes: those are written only once its data is synced, so damage
    /// there is damage to durable data, reported as an error.
    ///
    /// The segment holds its file open as an active one does; the caller
    /// seals a segment that is not the last ([`Segment::seal_file`]).
    pub fn open(
        dir: &Path,
        base_offset: u64,
        last: bool,
        now_ms: u64,
        index_interval_bytes: u64,
        sealed_files: &Arc<SealedFiles>,
    ) -> Result<(Segment, ScanReport)> {
        let path = Self::log_path(dir, base_offset);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let meta = file.metadata()?;
        let file_len = meta.len();
        let mtime_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(now_ms, |d| d.as_millis() as u64);
        let mut seg = Segment {
            base_offset,
            next_offset: base_offset,
            size: 0,
            active_file: Some(Arc::new(file)),
            sealed_files: sealed_files.clone(),
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            max_timestamp: -1,
            rel_offset_of_max_timestamp: 0,
            last_modified_ms: mtime_ms,
            created_ms: now_ms,
            bytes_since_index: 0,
            index_interval_bytes,
            dir: dir.to_path_buf(),
        };
        let loaded = OffsetIndex::load(&seg.index_path(), file_len)
            .and_then(|oi| TimeIndex::load(&seg.time_index_path(), oi.last()).map(|ti| (oi, ti)));
        // Resume the scan at the last indexed batch; everything before it was
        // indexed, so it was whole when the index was written.
        let mut start = 0u64;
        let indexed = loaded.is_some();
        if let Some((oi, ti)) = loaded {
            if let Some(last) = oi.last() {
                start = last.position as u64;
                seg.next_offset = base_offset + last.relative_offset as u64;
                seg.offset_index = oi;
                seg.time_index = ti;
                seg.offset_index.truncate_to_position(start); // re-added by the scan
                let rel = seg.next_offset - base_offset;
                seg.time_index.truncate_to_offset(rel as u32);
                if let Some(e) = seg.time_index.lookup_before(i64::MAX) {
                    seg.max_timestamp = e.timestamp;
                    seg.rel_offset_of_max_timestamp = e.relative_offset;
                }
            }
        }
        seg.size = start;
        let file = seg.file()?;
        let mut report = seg.scan_from(&file, start, file_len)?;
        report.indexed = indexed;
        let birth_ms = meta.created().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        seg.created_ms = match birth_ms {
            Some(d) => (d.as_millis() as u64).min(now_ms),
            None => match seg.header_in(&file, 0)?.filter(|h| h.max_timestamp >= 0) {
                Some(h) => (h.max_timestamp as u64).min(now_ms),
                None => now_ms,
            },
        };
        if report.truncated_bytes > 0 {
            if !last && indexed {
                return Err(EngineError::Recovery {
                    dir: dir.display().to_string(),
                    reason: format!(
                        "sealed segment {} is damaged at byte {}: {}",
                        base_offset,
                        seg.size,
                        report.reason.clone().unwrap_or_default()
                    ),
                });
            }
            file.set_len(seg.size)?;
            durable::sync_all(&file)?;
        }
        Ok((seg, report))
    }

    /// The segment's file for reading: the active segment's own, a sealed
    /// one's through the log's cache (opened if no read touched it lately).
    /// The descriptor stays open while the caller holds it.
    pub fn file(&self) -> io::Result<Arc<File>> {
        match &self.active_file {
            Some(f) => Ok(f.clone()),
            None => self.sealed_files.get(self.base_offset),
        }
    }

    /// The active segment's file (the log writes, syncs and cuts it).
    pub fn active_file(&self) -> &Arc<File> {
        self.active_file.as_ref().expect("the log's last segment holds its file open")
    }

    /// The segment is sealed: its file moves to the log's cache of sealed
    /// files, which closes it once other sealed segments were read since.
    pub fn seal_file(&mut self) {
        if let Some(f) = self.active_file.take() {
            self.sealed_files.keep(self.base_offset, f);
        }
    }

    /// A sealed segment becomes the active one again (a follower cut the
    /// log back into it): it holds its file open, writable.
    pub fn make_active(&mut self) -> io::Result<()> {
        if self.active_file.is_none() {
            let file = OpenOptions::new().read(true).write(true).open(Self::log_path(&self.dir, self.base_offset))?;
            self.sealed_files.forget(self.base_offset);
            self.active_file = Some(Arc::new(file));
        }
        Ok(())
    }

    /// Walks whole batches from `start` to `file_len`, re-indexing them. Stops at
    /// the first torn, corrupt or out-of-sequence batch; `self.size` ends at the
    /// last good byte.
    fn scan_from(&mut self, file: &File, start: u64, file_len: u64) -> Result<ScanReport> {
        let mut report = ScanReport::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_start = start;
        let mut pos = start;
        let reason = loop {
            if pos == file_len {
                break None;
            }
            if file_len - pos < HEADER_LEN as u64 {
                break Some(format!("{} bytes of a torn batch header", file_len - pos));
            }
            if !ensure_buffered(file, &mut buf, &mut buf_start, pos, HEADER_LEN, file_len)? {
                break Some("short read".into());
            }
            let off = (pos - buf_start) as usize;
            let h = BatchHeader::parse(&buf[off..]).expect("buffered a header");
            let total = h.total_len() as u64;
            if h.batch_length < (HEADER_LEN - batch::LOG_OVERHEAD) as i32 || pos + total > file_len {
                break Some(format!("batch at {pos} claims {total} bytes, file has {}", file_len - pos));
            }
            if !ensure_buffered(file, &mut buf, &mut buf_start, pos, total as usize, file_len)? {
                break Some("short read".into());
            }
            let off = (pos - buf_start) as usize;
            let bytes = &buf[off..off + total as usize];
            if let Err(e) = batch::check_stored(bytes) {
                break Some(format!("batch at {pos}: {e}"));
            }
            if h.base_offset < 0 || h.base_offset as u64 != self.next_offset || h.last_offset_delta < 0 {
                break Some(format!("batch at {pos} has base offset {}, expected {}", h.base_offset, self.next_offset));
            }
            self.note_batch(&h, pos, total);
            pos += total;
            report.batches += 1;
        };
        report.bytes_scanned = pos - start;
        report.truncated_bytes = file_len - pos;
        report.reason = reason;
        Ok(report)
    }

    /// Updates size, offsets and indexes for a batch now whole at `pos`. As in
    /// Kafka, both indexes get an entry every `index.interval.bytes`; the time
    /// entry records the largest timestamp so far and the batch that holds it.
    pub fn note_batch(&mut self, h: &BatchHeader, pos: u64, len: u64) {
        debug_assert_eq!(pos, self.size, "batches are contiguous");
        let rel = (h.base_offset as u64 - self.base_offset) as u32;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.rel_offset_of_max_timestamp = rel;
        }
        if self.offset_index.is_empty() || self.bytes_since_index >= self.index_interval_bytes {
            if self.offset_index.last().is_none_or(|l| l.relative_offset < rel) {
                self.offset_index.push(rel, pos as u32);
                if self.max_timestamp >= 0 {
                    self.time_index.push(self.max_timestamp, self.rel_offset_of_max_timestamp);
                }
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
        self.size = pos + len;
        self.next_offset = h.last_offset() as u64 + 1;
    }

    /// Forgets everything from byte `position` on (the file was cut there);
    /// `next_offset` is the offset the segment now ends at.
    pub fn cut_to(&mut self, position: u64, next_offset: u64) {
        self.size = position;
        self.next_offset = next_offset;
        self.offset_index.truncate_to_position(position);
        let rel = next_offset.saturating_sub(self.base_offset).min(u32::MAX as u64) as u32;
        self.time_index.truncate_to_offset(rel);
        match self.time_index.lookup_before(i64::MAX) {
            Some(e) => {
                self.max_timestamp = e.timestamp;
                self.rel_offset_of_max_timestamp = e.relative_offset;
            }
            None => {
                self.max_timestamp = -1;
                self.rel_offset_of_max_timestamp = 0;
            }
        }
        self.bytes_since_index = 0;
    }

    /// Reads the header of the batch at `pos`, or `None` at the end of the data.
    pub fn header_at(&self, pos: u64) -> io::Result<Option<BatchHeader>> {
        self.header_in(&*self.file()?, pos)
    }

    /// [`Segment::header_at`] through a file the caller already holds.
    fn header_in(&self, file: &File, pos: u64) -> io::Result<Option<BatchHeader>> {
        if pos + HEADER_LEN as u64 > self.size {
            return Ok(None);
        }
        let mut b = [0u8; HEADER_LEN];
        file.read_exact_at(&mut b, pos)?;
        Ok(BatchHeader::parse(&b))
    }

    /// Calls `f` with the header of every batch from byte `start` to the end of
    /// the data, reading only headers: one read per [`HEADER_SCAN_CHUNK_BYTES`]
    /// of small batches, one per batch for batches larger than that. Returns
    /// how many headers were read.
    pub fn for_each_header(&self, start: u64, mut f: impl FnMut(&BatchHeader)) -> io::Result<u64> {
        let file = self.file()?;
        let mut buf = vec![0u8; HEADER_SCAN_CHUNK_BYTES];
        let (mut buf_start, mut buf_len) = (start, 0usize);
        let mut pos = start;
        let mut n = 0;
        while pos + HEADER_LEN as u64 <= self.size {
            if pos < buf_start || pos + HEADER_LEN as u64 > buf_start + buf_len as u64 {
                buf_len = (self.size - pos).min(HEADER_SCAN_CHUNK_BYTES as u64) as usize;
                file.read_exact_at(&mut buf[..buf_len], pos)?;
                buf_start = pos;
            }
            let at = (pos - buf_start) as usize;
            let h = BatchHeader::parse(&buf[at..buf_len]).expect("buffered a whole header");
            f(&h);
            n += 1;
            pos += h.total_len() as u64;
        }
        Ok(n)
    }

    /// Position and header of the batch holding `offset`, or `None` if `offset` is
    /// at or past the segment's end.
    pub fn locate(&self, offset: u64) -> io::Result<Option<(u64, BatchHeader)>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let rel = offset.saturating_sub(self.base_offset) as u32;
        let mut pos = self.offset_index.lookup(rel).map_or(0, |e| e.position as u64);
        let file = self.file()?;
        while let Some(h) = self.header_in(&file, pos)? {
            if h.last_offset() as u64 >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// First batch whose maxTimestamp ≥ `target`: (position, header).
    pub fn find_timestamp(&self, target: i64) -> io::Result<Option<(u64, BatchHeader)>> {
        if self.max_timestamp < target {
            return Ok(None);
        }
        let mut pos = match self.time_index.lookup_before(target) {
            Some(e) => self.locate(self.base_offset + e.relative_offset as u64)?.map_or(0, |(p, _)| p),
            None => 0,
        };
        let file = self.file()?;
        while let Some(h) = self.header_in(&file, pos)? {
            if h.max_timestamp >= target {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Reads the bytes of the batch at `pos` (for exact timestamp lookups).
    pub fn read_batch(&self, pos: u64, h: &BatchHeader) -> io::Result<Vec<u8>> {
        let mut b = vec![0u8; h.total_len()];
        self.file()?.read_exact_at(&mut b, pos)?;
        Ok(b)
    }

    /// Persists the indexes (segment sealed, or clean shutdown): both files,
    /// then one directory sync for their names.
    pub fn write_indexes(&self) -> io::Result<()> {
        self.index_files().write()
    }

    /// A copy of the indexes with their paths, to be written off the shard's
    /// thread ([`IndexFiles::write`]).
    pub fn index_files(&self) -> IndexFiles {
        IndexFiles {
            offset_path: self.index_path(),
            offset_index: self.offset_index.clone(),
            time_path: self.time_index_path(),
            time_index: self.time_index.clone(),
        }
    }

    /// Wall-clock ms of the segment's newest data: its largest record
    /// timestamp, or its last write when records carry none. Retention ages
    /// segments by it.
    pub fn newest_ms(&self) -> u64 {
        if self.max_timestamp >= 0 {
            self.max_timestamp as u64
        } else {
            self.last_modified_ms
        }
    }

    /// Removes the segment's files; readers holding its file keep their data.
    pub fn delete_files(&self) -> io::Result<()> {
        self.sealed_files.forget(self.base_offset);
        Self::delete_files_at(&self.dir, self.base_offset)
    }

    /// Removes the files of the segment at `base` in `dir`.
    pub fn delete_files_at(dir: &Path, base: u64) -> io::Result<()> {
        durable::remove_file(&Self::log_path(dir, base))?;
        Self::delete_indexes_at(dir, base)
    }

    /// Removes the segment's index files, if any: before it is sealed, those
    /// a clean close wrote while it was active (stale since it grew). On disk
    /// a sealed segment with indexes must be one whose data was synced
    /// (`log::writer::seal`); the next segment's creation syncs the directory,
    /// so the removal is durable before the segment counts as sealed.
    pub fn delete_indexes(&self) -> io::Result<()> {
        Self::delete_indexes_at(&self.dir, self.base_offset)
    }

    fn delete_indexes_at(dir: &Path, base: u64) -> io::Result<()> {
        for p in Self::index_paths(dir, base) {
            match durable::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Makes `buf` hold bytes [pos, pos+need) of `file`. Returns false on a short read.
fn ensure_buffered(
    file: &File,
    buf: &mut Vec<u8>,
    buf_start: &mut u64,
    pos: u64,
    need: usize,
    file_len: u64,
) -> io::Result<bool> {
    let have_end = *buf_start + buf.len() as u64;
    if pos >= *buf_start && pos + need as u64 <= have_end {
        return Ok(true);
    }
    let want = need.max(SCAN_CHUNK_BYTES).min((file_len - pos) as usize);
    buf.resize(want, 0);
    file.read_exact_at(buf, pos)?;
    *buf_start = pos;
    Ok(want >= need)
}
