//! [`EmbeddedStore`]: the single-node [`MetaStore`]. All data lives in memory; every
//! write is first made durable in an append-only journal, which is compacted into
//! a snapshot once it outgrows the live data. Files in the directory:
//!
//! - `journal`: records of committed txns (see `journal.rs`);
//! - `snapshot`: all live keys at some revision (see `snapshot.rs`);
//! - `LOCK`: held with `flock` while a store has the directory open;
//! - `*.tmp`: a snapshot or journal being written; ignored and removed at open.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::codec::{self, Entries, JournalOp, TxnRecord};
use crate::files::{self, DirLock};
use crate::journal::{self, JOURNAL_FILE, JOURNAL_TMP};
use crate::limits::{check_key, check_prefix, check_txn};
use crate::snapshot::{self, SNAPSHOT_TMP};
use crate::watch::{self, WatchEvent, WatchSink, WatchStream};
use crate::{Compare, CoordError, Lease, LeaseId, MetaStore, Op, TxnResult, Versioned};

/// Shortest lease granted (etcd raises short TTLs to its minimum as well).
const LEASE_TTL_MIN: Duration = Duration::from_secs(1);

/// Tuning of an [`EmbeddedStore`]; [`Options::default`] suits production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The journal is compacted once it exceeds both this and 4× the live data.
    /// The floor keeps a small store from snapshotting on every few writes.
    pub compact_min_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { compact_min_bytes: 4 * 1024 * 1024 }
    }
}

/// What opening the store found and did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Revision of the snapshot loaded, 0 if there was none.
    pub snapshot_revision: u64,
    /// Journal records applied on top of the snapshot.
    pub records_replayed: u64,
    /// Journal records already in the snapshot: a crash fell between writing the
    /// snapshot and starting a fresh journal.
    pub records_skipped: u64,
    /// Bytes of a torn last record cut off the journal (a write never acknowledged).
    pub torn_bytes_truncated: u64,
    /// Keys bound to leases of the previous process, deleted at open: the
    /// leases died with it.
    pub leased_keys_deleted: usize,
    /// The store revision after recovery.
    pub revision: u64,
    pub keys: usize,
}

/// The single-node metadata store. See the module docs and `README.md`.
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    recovery: RecoveryReport,
}

struct Inner {
    dir: PathBuf,
    options: Options,
    /// Taken briefly by readers and by a writer applying a durable txn; never held
    /// across I/O, so reads on a shard thread never wait for a disk.
    state: Mutex<State>,
    /// Serializes writers. Held across the journal append and fsync; always taken
    /// before `state`.
    writer: Mutex<Writer>,
    _lock: DirLock,
    #[cfg(test)]
    fail_next_journal_reset: std::sync::atomic::AtomicBool,
}

struct State {
    entries: Entries,
    revision: u64,
    /// Size the entries would take in a snapshot; paces compaction.
    live_bytes: u64,
    /// Open watches; each applied txn is offered to every one.
    watchers: Vec<WatchSink>,
    /// Live leases and when each expires unless kept alive. In memory only:
    /// a lease dies with the process that holds it, as its keys do at open.
    leases: HashMap<LeaseId, (Duration, Instant)>,
    last_lease_id: LeaseId,
}

struct Writer {
    journal: File,
    /// End of the last acknowledged record; the next record is written here.
    journal_bytes: u64,
    /// Set when the on-disk state may no longer match memory; refuses writes.
    failed: Option<String>,
    /// After a failed compaction, do not retry before the journal reaches this.
    compact_retry_bytes: u64,
}

/// The result of one committed (or refused) txn.
struct Outcome {
    applied: bool,
    revision: u64,
    deleted: usize,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`, recovering from its files.
    pub fn open(dir: &Path) -> Result<EmbeddedStore, CoordError> {
        Self::open_with(dir, Options::default())
    }

    /// [`EmbeddedStore::open`] with explicit [`Options`] (tests use a small
    /// compaction threshold).
    pub fn open_with(dir: &Path, options: Options) -> Result<EmbeddedStore, CoordError> {
        fs::create_dir_all(dir).map_err(CoordError::io(format!("creating directory {}", dir.display())))?;
        let lock = DirLock::acquire(dir)?;
        files::remove_stale(&dir.join(SNAPSHOT_TMP))?;
        files::remove_stale(&dir.join(JOURNAL_TMP))?;

        let snapshot = snapshot::read(dir)?;
        let had_snapshot = snapshot.is_some();
        let (snapshot_revision, entries) = snapshot.unwrap_or_default();
        let mut state = State::from_snapshot(snapshot_revision, entries);
        let (journal, bytes) = open_journal(dir, had_snapshot)?;

        let journal_path = dir.join(JOURNAL_FILE);
        let mut report = RecoveryReport {
            snapshot_revision,
            records_replayed: 0,
            records_skipped: 0,
            torn_bytes_truncated: 0,
            leased_keys_deleted: 0,
            revision: 0,
            keys: 0,
        };
        let scanned = journal::scan(&journal_path, &bytes, |offset, record| {
            replay(&mut state, &mut report, &journal_path, offset, record)
        })?;
        if let Some(reason) = scanned.torn {
            report.torn_bytes_truncated = bytes.len() as u64 - scanned.valid_bytes;
            tracing::warn!(
                path = %journal_path.display(),
                valid_bytes = scanned.valid_bytes,
                dropped_bytes = report.torn_bytes_truncated,
                %reason,
                "truncating the torn tail of the metadata journal (a write that was never acknowledged)"
            );
            journal
                .set_len(scanned.valid_bytes)
                .and_then(|()| journal.sync_data())
                .map_err(CoordError::io(format!("truncating {}", journal_path.display())))?;
        }
        drop(bytes);
        report.revision = state.revision;
        report.keys = state.entries.len();
        tracing::info!(dir = %dir.display(), ?report, "metadata store opened");

        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            options,
            state: Mutex::new(state),
            writer: Mutex::new(Writer {
                journal,
                journal_bytes: scanned.valid_bytes,
                failed: None,
                compact_retry_bytes: 0,
            }),
            _lock: lock,
            #[cfg(test)]
            fail_next_journal_reset: std::sync::atomic::AtomicBool::new(false),
        });
        // Leases do not outlive the process that held them, so neither do the
        // keys bound to them (a broker's registration, the controller's claim).
        let leased: Vec<JournalOp> = lock_or_fail(&inner.state)?
            .entries
            .iter()
            .filter(|(_, v)| v.lease != 0)
            .map(|(k, _)| JournalOp::Delete { key: k.clone() })
            .collect();
        if !leased.is_empty() {
            report.leased_keys_deleted = leased.len();
            inner.commit(&[], leased)?;
        }
        // A crash right after a snapshot leaves a long journal of skipped records;
        // compacting now resets it instead of replaying it at every open.
        inner.maybe_compact(&mut *lock_or_fail(&inner.writer)?);
        Ok(EmbeddedStore { inner, recovery: report })
    }

    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Makes the next compaction stop after the snapshot rename, as a crash there
    /// would (the store keeps running and appending to the old journal).
    #[cfg(test)]
    pub(crate) fn fail_next_journal_reset(&self) {
        self.inner.fail_next_journal_reset.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Runs one txn on a blocking thread when inside a tokio runtime, else inline.
    ///
    /// Why a blocking thread: the broker calls this from tokio-uring shard threads,
    /// each serving many partitions; an fdatasync takes milliseconds (far more on a
    /// busy disk) and would stall every one of them. Writes are rare (metadata
    /// changes, batched offset commits), so the hop costs nothing that matters.
    /// Outside a runtime (tools, plain tests) there is nothing to stall.
    async fn write(&self, compares: Vec<Compare>, ops: Vec<JournalOp>) -> Result<Outcome, CoordError> {
        let inner = Arc::clone(&self.inner);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(move || inner.commit(&compares, ops))
                .await
                .map_err(|e| CoordError::Failed(format!("metadata write task did not complete: {e}")))?,
            Err(_) => inner.commit(&compares, ops),
        }
    }
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

/// Opens the journal and reads it whole (it is bounded by compaction), creating an
/// empty one in a fresh directory.
fn open_journal(dir: &Path, had_snapshot: bool) -> Result<(File, Vec<u8>), CoordError> {
    let path = dir.join(JOURNAL_FILE);
    match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(mut file) => {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(CoordError::io(format!("reading {}", path.display())))?;
            Ok((file, bytes))
        }
        // The journal is only ever replaced by rename, never removed: missing
        // beside a snapshot, it was deleted by hand and writes may be lost.
        Err(e) if e.kind() == io::ErrorKind::NotFound && had_snapshot => {
            Err(CoordError::Corrupt { path, offset: 0, reason: "journal is missing although a snapshot exists".into() })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let file = journal::create_empty(dir)?;
            files::sync_dir(dir).map_err(CoordError::io(format!("syncing directory {}", dir.display())))?;
            Ok((file, Vec::new()))
        }
        Err(e) => Err(CoordError::io(format!("opening {}", path.display()))(e)),
    }
}

/// Applies one journal record during recovery, skipping those the snapshot holds.
fn replay(
    state: &mut State,
    report: &mut RecoveryReport,
    path: &Path,
    offset: u64,
    record: TxnRecord,
) -> Result<(), CoordError> {
    if record.revision <= report.snapshot_revision {
        report.records_skipped += 1;
        return Ok(());
    }
    if record.revision != state.revision + 1 {
        return Err(CoordError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: format!("record revision {} does not follow revision {}", record.revision, state.revision),
        });
    }
    state.apply(record.revision, record.ops);
    report.records_replayed += 1;
    Ok(())
}

impl Inner {
    /// Checks the compares, journals the ops durably, then applies them. Holding the
    /// writer lock throughout makes check-then-write atomic; applying only after the
    /// fsync means no reader ever sees a write that a crash could take back.
    fn commit(&self, compares: &[Compare], ops: Vec<JournalOp>) -> Result<Outcome, CoordError> {
        let mut writer = lock_or_fail(&self.writer)?;
        if let Some(reason) = &writer.failed {
            return Err(CoordError::Failed(reason.clone()));
        }
        self.expire_leases(&mut writer)?;
        self.commit_locked(&mut writer, compares, ops)
    }

    fn commit_locked(
        &self,
        writer: &mut Writer,
        compares: &[Compare],
        ops: Vec<JournalOp>,
    ) -> Result<Outcome, CoordError> {
        if let Some(reason) = &writer.failed {
            return Err(CoordError::Failed(reason.clone()));
        }
        let revision = {
            let state = lock_or_fail(&self.state)?;
            if !state.compares_hold(compares) {
                return Ok(Outcome { applied: false, revision: state.revision, deleted: 0 });
            }
            // Like etcd, a write that changes nothing takes no revision.
            if !state.changes_anything(&ops) {
                return Ok(Outcome { applied: true, revision: state.revision, deleted: 0 });
            }
            if let Some(lease) = state.unknown_lease(&ops) {
                return Err(CoordError::LeaseNotFound(lease));
            }
            state.revision + 1
        };
        self.append(writer, &codec::encode_txn(revision, &ops))?;
        let deleted = {
            let mut state = lock_or_fail(&self.state)?;
            let (deleted, events) = state.apply(revision, ops);
            state.notify_watchers(revision, &events);
            deleted
        };
        self.maybe_compact(writer);
        Ok(Outcome { applied: true, revision, deleted })
    }

    /// Deletes the keys of leases whose time is up (one journaled txn). Runs
    /// before every write and keep-alive: expiry is lazy, which is enough in one
    /// process, where the only holder of a lease is this process itself.
    fn expire_leases(&self, writer: &mut Writer) -> Result<(), CoordError> {
        let now = Instant::now();
        let ops: Vec<JournalOp> = {
            let mut state = lock_or_fail(&self.state)?;
            let expired: Vec<LeaseId> =
                state.leases.iter().filter(|(_, (_, deadline))| *deadline <= now).map(|(id, _)| *id).collect();
            if expired.is_empty() {
                return Ok(());
            }
            for id in &expired {
                state.leases.remove(id);
                tracing::info!(lease = id, "metadata store lease expired");
            }
            state.keys_of_leases(&expired)
        };
        if !ops.is_empty() {
            self.commit_locked(writer, &[], ops)?;
        }
        Ok(())
    }

    fn append(&self, writer: &mut Writer, payload: &[u8]) -> Result<(), CoordError> {
        let offset = writer.journal_bytes;
        match journal::append(&writer.journal, offset, payload) {
            Ok(end) => {
                writer.journal_bytes = end;
                Ok(())
            }
            Err(e) => {
                // Cut the partial record so the journal again ends at the last
                // acknowledged one. If even that fails the tail is unknown, and a
                // later record could land behind garbage: stop writing.
                if let Err(undo) = writer.journal.set_len(offset).and_then(|()| writer.journal.sync_data()) {
                    writer.failed = Some(format!("journal append failed ({e}) and undoing it failed ({undo})"));
                }
                Err(CoordError::Io {
                    context: format!("appending to {}", self.dir.join(JOURNAL_FILE).display()),
                    source: e,
                })
            }
        }
    }

    /// Compacts once the journal exceeds max(`compact_min_bytes`, 4× live data), so
    /// the journal stays within a constant factor of the data and recovery time
    /// stays bounded.
    fn maybe_compact(&self, writer: &mut Writer) {
        let Ok(live_bytes) = lock_or_fail(&self.state).map(|s| s.live_bytes) else { return };
        let threshold_bytes =
            self.options.compact_min_bytes.max(live_bytes.saturating_mul(4)).max(writer.compact_retry_bytes);
        if writer.journal_bytes <= threshold_bytes {
            return;
        }
        match self.compact(writer) {
            Ok(()) => writer.compact_retry_bytes = 0,
            Err(e) => {
                // The write that got here is durable already; a failed compaction
                // only leaves a longer journal. Retry after more growth, not on
                // every write.
                writer.compact_retry_bytes = writer.journal_bytes.saturating_add(self.options.compact_min_bytes);
                tracing::warn!(dir = %self.dir.display(), error = %e, "metadata journal compaction failed");
            }
        }
    }

    /// Writes a snapshot of everything, then starts an empty journal. Each step is
    /// a synced temporary file renamed into place, so a crash anywhere leaves either
    /// the old snapshot with the whole old journal, or the new snapshot with the old
    /// journal (whose records recovery skips, all being at or below the snapshot's
    /// revision), or the new snapshot with the new, empty journal.
    fn compact(&self, writer: &mut Writer) -> Result<(), CoordError> {
        let (revision, keys, payload) = {
            let state = lock_or_fail(&self.state)?;
            (state.revision, state.entries.len(), codec::encode_snapshot(state.revision, &state.entries))
        };
        snapshot::write(&self.dir, &payload)?;
        #[cfg(test)]
        if self.fail_next_journal_reset.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(CoordError::Io {
                context: "resetting the journal".into(),
                source: io::Error::other("injected failure after the snapshot rename"),
            });
        }
        let journal = journal::create_empty(&self.dir)?;
        // The directory now names the new journal: the old handle must never be
        // written again, or acknowledged writes would go to an unlinked file.
        let old_journal_bytes = writer.journal_bytes;
        writer.journal = journal;
        writer.journal_bytes = 0;
        if let Err(e) = files::sync_dir(&self.dir) {
            // Unsynced, a crash could bring the old journal back and drop what is
            // appended to the new one after this point.
            let reason = format!("syncing {} after replacing the journal failed: {e}", self.dir.display());
            writer.failed = Some(reason.clone());
            return Err(CoordError::Failed(reason));
        }
        tracing::info!(
            dir = %self.dir.display(),
            revision,
            keys,
            snapshot_bytes = payload.len(),
            old_journal_bytes,
            "compacted the metadata journal into a snapshot"
        );
        Ok(())
    }
}

impl State {
    fn from_snapshot(revision: u64, entries: Entries) -> State {
        let live_bytes = entries.iter().map(|(k, v)| codec::entry_bytes(k, &v.value)).sum();
        State { entries, revision, live_bytes, watchers: Vec::new(), leases: HashMap::new(), last_lease_id: 0 }
    }

    fn compares_hold(&self, compares: &[Compare]) -> bool {
        compares.iter().all(|c| c.holds(self.entries.get(c.key())))
    }

    /// A lease a put names that is not alive (only checked for new writes:
    /// replayed records name leases of earlier processes).
    fn unknown_lease(&self, ops: &[JournalOp]) -> Option<LeaseId> {
        ops.iter().find_map(|op| match op {
            JournalOp::Put { lease, .. } if *lease != 0 && !self.leases.contains_key(lease) => Some(*lease),
            _ => None,
        })
    }

    fn keys_of_leases(&self, leases: &[LeaseId]) -> Vec<JournalOp> {
        self.entries
            .iter()
            .filter(|(_, v)| v.lease != 0 && leases.contains(&v.lease))
            .map(|(k, _)| JournalOp::Delete { key: k.clone() })
            .collect()
    }

    /// Offers one applied txn's events to every watcher, resetting those that
    /// fell behind, and forgets watchers whose consumer is gone.
    fn notify_watchers(&mut self, revision: u64, events: &[WatchEvent]) {
        let entries = &self.entries;
        self.watchers.retain(|sink| {
            if sink.is_closed() {
                return false;
            }
            let mine: Vec<WatchEvent> = events.iter().filter(|e| e.key().starts_with(sink.prefix())).cloned().collect();
            if !sink.changes(revision, mine) {
                sink.reset(revision, prefixed(entries, sink.prefix()).map(|(k, v)| (k.clone(), v.clone())).collect());
            }
            true
        });
    }

    /// Whether `ops` would change anything. A delete of a key put earlier in the
    /// same txn is covered by that put.
    fn changes_anything(&self, ops: &[JournalOp]) -> bool {
        ops.iter().any(|op| match op {
            JournalOp::Put { .. } => true,
            JournalOp::Delete { key } => self.entries.contains_key(key),
            JournalOp::DeletePrefix { prefix } => self.prefixed(prefix).next().is_some(),
        })
    }

    fn prefixed<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Versioned)> + 'a {
        prefixed(&self.entries, prefix)
    }

    /// Applies a durable txn in order; returns how many keys it deleted and the
    /// events watchers see.
    fn apply(&mut self, revision: u64, ops: Vec<JournalOp>) -> (usize, Vec<WatchEvent>) {
        assert!(revision > self.revision, "revisions only grow: {revision} after {}", self.revision);
        let mut deleted = 0;
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                JournalOp::Put { key, value, lease } => {
                    self.live_bytes += codec::entry_bytes(&key, &value);
                    let create_revision = self.entries.get(&key).map_or(revision, |old| old.create_revision);
                    let v = Versioned { value, version: revision, create_revision, lease };
                    if !self.watchers.is_empty() {
                        events.push(WatchEvent::Put { key: key.clone(), value: v.clone() });
                    }
                    if let Some(old) = self.entries.insert(key.clone(), v) {
                        self.live_bytes -= codec::entry_bytes(&key, &old.value);
                    }
                }
                JournalOp::Delete { key } => {
                    if self.remove(&key) {
                        deleted += 1;
                        events.push(WatchEvent::Delete { key });
                    }
                }
                JournalOp::DeletePrefix { prefix } => {
                    let keys: Vec<String> = self.prefixed(&prefix).map(|(k, _)| k.clone()).collect();
                    for key in keys {
                        if self.remove(&key) {
                            deleted += 1;
                            events.push(WatchEvent::Delete { key });
                        }
                    }
                }
            }
        }
        self.revision = revision;
        (deleted, events)
    }

    fn remove(&mut self, key: &str) -> bool {
        match self.entries.remove(key) {
            Some(old) => {
                self.live_bytes -= codec::entry_bytes(key, &old.value);
                true
            }
            None => false,
        }
    }
}

/// A poisoned lock means a thread panicked mid-update; memory may be inconsistent,
/// so report it instead of serving possibly half-applied state.
fn lock_or_fail<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>, CoordError> {
    mutex.lock().map_err(|_| CoordError::Failed("a metadata store thread panicked while holding a lock".into()))
}

fn prefixed<'a>(entries: &'a Entries, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Versioned)> + 'a {
    entries
        .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(key, _)| key.starts_with(prefix))
}

impl EmbeddedStore {
    /// Runs `f` with the writer lock on a blocking thread when inside a tokio
    /// runtime (see [`EmbeddedStore::write`]), inline otherwise.
    async fn with_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &mut Writer) -> Result<T, CoordError> + Send + 'static,
    ) -> Result<T, CoordError> {
        let inner = Arc::clone(&self.inner);
        let run = move || {
            let mut writer = lock_or_fail(&inner.writer)?;
            f(&inner, &mut writer)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(run)
                .await
                .map_err(|e| CoordError::Failed(format!("metadata write task did not complete: {e}")))?,
            Err(_) => run(),
        }
    }
}

#[async_trait::async_trait]
impl MetaStore for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, CoordError> {
        check_key(key)?;
        Ok(lock_or_fail(&self.inner.state)?.entries.get(key).cloned())
    }

    async fn list_with_revision(&self, prefix: &str) -> Result<(Vec<(String, Versioned)>, u64), CoordError> {
        check_prefix(prefix)?;
        let state = lock_or_fail(&self.inner.state)?;
        Ok((state.prefixed(prefix).map(|(k, v)| (k.clone(), v.clone())).collect(), state.revision))
    }

    async fn delete(&self, key: &str) -> Result<bool, CoordError> {
        check_key(key)?;
        let outcome = self.write(Vec::new(), vec![JournalOp::Delete { key: key.to_string() }]).await?;
        Ok(outcome.deleted > 0)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<usize, CoordError> {
        check_prefix(prefix)?;
        let outcome = self.write(Vec::new(), vec![JournalOp::DeletePrefix { prefix: prefix.to_string() }]).await?;
        Ok(outcome.deleted)
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResult, CoordError> {
        check_txn(&compares, &ops)?;
        let ops = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => JournalOp::Put { key, value, lease },
                Op::Delete { key } => JournalOp::Delete { key },
                Op::DeletePrefix { prefix } => JournalOp::DeletePrefix { prefix },
            })
            .collect();
        let outcome = self.write(compares, ops).await?;
        Ok(TxnResult { applied: outcome.applied, revision: outcome.revision })
    }

    fn watch(&self, prefix: &str) -> WatchStream {
        let (sink, stream) = watch::channel(prefix);
        match self.inner.state.lock() {
            Ok(mut state) => {
                let entries = state.prefixed(prefix).map(|(k, v)| (k.clone(), v.clone())).collect();
                sink.reset(state.revision, entries);
                state.watchers.push(sink);
            }
            // A poisoned store can only end the watch (the sink is dropped).
            Err(_) => drop(sink),
        }
        stream
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<Lease, CoordError> {
        let ttl = ttl.max(LEASE_TTL_MIN);
        let mut state = lock_or_fail(&self.inner.state)?;
        // Ids only grow, within and across processes (time-based start), so a
        // key bound to a lease of an earlier process never names a live one.
        let now_id =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_micros() as LeaseId);
        let id = now_id.max(state.last_lease_id + 1);
        state.last_lease_id = id;
        state.leases.insert(id, (ttl, Instant::now() + ttl));
        Ok(Lease { id, ttl })
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Option<Duration>, CoordError> {
        // Expire first: a lease whose deadline passed is dead even if this
        // keep-alive arrives a moment later, as in etcd.
        self.with_writer(|inner, writer| inner.expire_leases(writer)).await?;
        let mut state = lock_or_fail(&self.inner.state)?;
        Ok(state.leases.get_mut(&id).map(|(ttl, deadline)| {
            *deadline = Instant::now() + *ttl;
            *ttl
        }))
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<(), CoordError> {
        self.with_writer(move |inner, writer| {
            let ops = {
                let mut state = lock_or_fail(&inner.state)?;
                if state.leases.remove(&id).is_none() {
                    return Ok(());
                }
                state.keys_of_leases(&[id])
            };
            if !ops.is_empty() {
                inner.commit_locked(writer, &[], ops)?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests;
