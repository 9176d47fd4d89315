//! What replication asks of a partition log. The engine knows nothing of
//! brokers, leaders or fetch requests; it offers the operations replication
//! is made of:
//!
//! - a high watermark set from outside (`set_replicated`,
//!   `set_high_watermark`): what every in-sync replica has, the only part
//!   consumers read, and distinct from the log end a follower reads to;
//! - the leader-epoch cache (`become_leader`, `end_offset_for_epoch`), made
//!   durable before any batch of a new epoch is appended;
//! - appending a leader's batches as they are (`append_replicated`: offsets
//!   and epochs as the leader assigned them, byte for byte);
//! - cutting a divergent tail (`truncate_to`) and starting over behind a
//!   leader's log start (`restart_at`).

use std::io;

use bytes::{Bytes, BytesMut};

use super::{
    now_ms, read_checkpoint, wait_for_removals, write_checkpoint, PartitionLog, HW_CHECKPOINT, OWNED_HEAD_BYTES,
};
use crate::batch;
use crate::epoch_cache::EpochCache;
use crate::error::{EngineError, Result};
use crate::producer_snapshot;
use crate::producer_state::ProducerStates;
use crate::segment::Segment;
use crate::{durable, index};

impl PartitionLog {
    /// Whether other replicas hold this log: then the high watermark moves
    /// only by `set_high_watermark`, starting from its checkpoint (or the
    /// log start). Off, it follows the log end.
    pub fn set_replicated(&self, replicated: bool) {
        let mut st = self.st.borrow_mut();
        if st.replicated == replicated {
            return;
        }
        st.replicated = replicated;
        let hw = if replicated { st.hw_checkpointed.min(st.log_end) } else { st.log_end };
        st.place_high_watermark(hw);
        st.publish();
    }

    pub fn is_replicated(&self) -> bool {
        self.st.borrow().replicated
    }

    /// Moves a replicated log's high watermark (clamped to the log end).
    /// Returns whether it moved. It may move back only by a truncation.
    pub fn set_high_watermark(&self, hw: u64) -> bool {
        let mut st = self.st.borrow_mut();
        let hw = hw.min(st.log_end);
        if !st.replicated || hw <= st.high_watermark {
            return false;
        }
        st.place_high_watermark(hw);
        st.publish();
        true
    }

    /// Writes the high watermark's checkpoint if it moved since the last one
    /// (the broker calls it every few seconds, and at close).
    pub async fn checkpoint_high_watermark(&self) -> Result<()> {
        let (dir, hw) = {
            let st = self.st.borrow();
            if !st.replicated || st.high_watermark == st.hw_checkpointed {
                return Ok(());
            }
            (st.dir.clone(), st.high_watermark)
        };
        let path = dir.join(HW_CHECKPOINT);
        let written = tokio::task::spawn_blocking(move || index::write_synced(&path, hw.to_string().as_bytes())).await;
        written.map_err(io::Error::other).and_then(|r| r)?;
        let mut st = self.st.borrow_mut();
        st.hw_checkpointed = st.hw_checkpointed.max(hw);
        Ok(())
    }

    pub fn leader_epoch(&self) -> i32 {
        self.st.borrow().leader_epoch
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.st.borrow().epochs.latest_epoch()
    }

    /// Kafka's OffsetForLeaderEpoch answer for this log: the largest epoch ≤
    /// `epoch` it has and where that epoch ends here (see `EpochCache`).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let st = self.st.borrow();
        st.epochs.end_offset_for(epoch, st.log_end)
    }

    /// (epoch, start offset) of every epoch this log holds.
    pub fn epochs(&self) -> Vec<(i32, u64)> {
        self.st.borrow().epochs.entries().to_vec()
    }

    /// This replica leads from now on, in `epoch`: batches appended from here
    /// carry it, and the epoch cache says it starts here, durably, before this
    /// returns (appends must not run before).
    pub async fn become_leader(&self, epoch: i32) -> Result<()> {
        let lock = self.st.borrow().epoch_lock.clone();
        let _serial = lock.lock().await;
        let changed = {
            let mut st = self.st.borrow_mut();
            st.leader_epoch = st.leader_epoch.max(epoch);
            let start = st.next_offset;
            st.epochs.assign(epoch, start)
        };
        if changed {
            self.persist_epochs().await?;
        }
        Ok(())
    }

    async fn persist_epochs(&self) -> Result<()> {
        let (path, bytes) = {
            let st = self.st.borrow();
            (EpochCache::path(&st.dir), st.epochs.encode())
        };
        let written = tokio::task::spawn_blocking(move || index::write_synced(&path, &bytes)).await;
        written.map_err(io::Error::other).and_then(|r| r)?;
        Ok(())
    }

    /// Appends batches a leader wrote, as they are: their offsets must
    /// continue this log exactly, their epochs never go back. New epochs are
    /// entered in the epoch cache, durably, before the batches are queued.
    /// Resolves with the new log end once written (not synced: see `flush`).
    pub async fn append_replicated(&self, batches: Vec<Bytes>) -> Result<u64> {
        if batches.is_empty() {
            return Ok(self.log_end_offset());
        }
        let lock = self.st.borrow().epoch_lock.clone();
        let _serial = lock.lock().await;
        let (headers, new_epochs, start) = {
            let st = self.st.borrow();
            if let Some(why) = &st.offline {
                return Err(EngineError::Storage(io::Error::other(format!("log is offline: {why}"))));
            }
            let mut expected = st.next_offset;
            let mut last_epoch = st.epochs.latest_epoch().unwrap_or(-1);
            let mut headers = Vec::with_capacity(batches.len());
            let mut new_epochs = Vec::new();
            for b in &batches {
                let h = batch::check_stored(b)?;
                if h.base_offset < 0 || h.base_offset as u64 != expected || h.last_offset_delta < 0 {
                    return Err(EngineError::InvalidBatch(format!(
                        "replicated batch at offset {} does not continue the log at {expected}",
                        h.base_offset
                    )));
                }
                if h.partition_leader_epoch < last_epoch {
                    return Err(EngineError::InvalidBatch(format!(
                        "replicated batch of epoch {} after epoch {last_epoch}",
                        h.partition_leader_epoch
                    )));
                }
                if h.partition_leader_epoch > last_epoch {
                    last_epoch = h.partition_leader_epoch;
                    new_epochs.push((last_epoch, expected));
                }
                expected = h.last_offset() as u64 + 1;
                headers.push(h);
            }
            (headers, new_epochs, st.next_offset)
        };
        if !new_epochs.is_empty() {
            {
                let mut st = self.st.borrow_mut();
                for &(e, s) in &new_epochs {
                    st.epochs.assign(e, s);
                }
                st.leader_epoch = st.leader_epoch.max(new_epochs.last().expect("non-empty").0);
            }
            self.persist_epochs().await?;
        }
        let rx = {
            let mut st = self.st.borrow_mut();
            if st.next_offset != start {
                return Err(EngineError::Storage(io::Error::other("the log changed under a replicated append")));
            }
            let mut heads = BytesMut::with_capacity(OWNED_HEAD_BYTES * batches.len());
            let mut bodies = Vec::with_capacity(batches.len());
            for b in &batches {
                heads.extend_from_slice(&b[..OWNED_HEAD_BYTES]);
                bodies.push(b.slice(OWNED_HEAD_BYTES..));
            }
            st.next_offset = headers.last().expect("non-empty").last_offset() as u64 + 1;
            st.stats.appends += 1;
            let heads = heads.freeze();
            self.enqueue_as(&mut st, heads, OWNED_HEAD_BYTES, bodies, headers, false, true)
        };
        match rx.await {
            Ok(Ok(())) => Ok(self.log_end_offset()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(EngineError::Storage(io::Error::other("log writer stopped"))),
        }
    }

    /// Waits until nothing is queued or being written.
    async fn idle(&self) {
        while self.st.borrow().writer_running || !self.st.borrow().queue.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        wait_for_removals(&self.st).await;
    }

    /// Cuts the log back to end at `offset` (a follower dropping a divergent
    /// tail). A cut inside a batch drops that whole batch. Durable before it
    /// returns: the cut segment is synced, later ones deleted and the
    /// directory synced, so a crash never brings the tail back.
    pub async fn truncate_to(&self, offset: u64) -> Result<()> {
        self.idle().await;
        let lock = self.st.borrow().epoch_lock.clone();
        let _serial = lock.lock().await;
        let (log_end, log_start) = {
            let st = self.st.borrow();
            (st.log_end, st.log_start_offset)
        };
        if offset >= log_end {
            // Nothing to cut from the log, but its epoch cache may still end
            // in an epoch with no batch (this broker led it briefly and
            // appended nothing before another leader was elected). Reported
            // as our last fetched epoch, that entry would make the leader
            // answer "diverging" at our log end forever: drop it (Kafka's
            // truncateTo does the same, for the same reason).
            let dropped = {
                let mut st = self.st.borrow_mut();
                let dropped = st.epochs.truncate_from(offset.min(log_end));
                if dropped {
                    st.leader_epoch = st.epochs.latest_epoch().unwrap_or(0);
                }
                dropped
            };
            if dropped {
                self.persist_epochs().await?;
                tracing::info!(dir = %self.dir().display(), end = log_end, "dropped epochs with no batch at the log end");
            }
            return Ok(());
        }
        if offset <= log_start {
            drop(_serial);
            return self.restart_at(offset).await;
        }
        let end = {
            let mut st = self.st.borrow_mut();
            let dir = st.dir.clone();
            let (&base, seg) = st.segments.range(..=offset).next_back().expect("offset above the log start");
            let (position, end) = if offset >= seg.next_offset {
                (seg.size, seg.next_offset)
            } else {
                match seg.locate(offset)? {
                    Some((pos, h)) => (pos, h.base_offset as u64),
                    None => (seg.size, seg.next_offset),
                }
            };
            let doomed: Vec<u64> = st.segments.range(base + 1..).map(|(b, _)| *b).collect();
            for b in &doomed {
                st.segments.remove(b);
                st.sealed_files.forget(*b);
                Segment::delete_files_at(&dir, *b)?;
            }
            st.unsynced_sealed.retain(|b| !doomed.contains(b));
            let seg = st.segments.get_mut(&base).expect("kept");
            // The cut segment is the last one now, which holds its file open.
            seg.make_active()?;
            seg.active_file().set_len(position)?;
            durable::sync_all(seg.active_file())?;
            // Its indexes (if it was sealed) describe what was cut.
            seg.delete_indexes()?;
            seg.cut_to(position, end);
            durable::sync_dir(&dir)?;
            st.active_writer = None;
            st.next_offset = end;
            st.log_end = end;
            let hw = st.high_watermark.min(end);
            st.place_high_watermark(hw);
            if !st.replicated {
                st.place_high_watermark(end);
            }
            // Producer state as of the new end: the newest snapshot at or
            // below it, then the headers after it.
            let (producers, _) = producer_snapshot::recover(&dir, &st.segments, end, now_ms())?;
            st.producers = producers;
            st.epochs.truncate_from(end);
            st.leader_epoch = st.epochs.latest_epoch().unwrap_or(0);
            st.publish();
            end
        };
        self.persist_epochs().await?;
        tracing::info!(dir = %self.dir().display(), end, "truncated a divergent tail");
        Ok(())
    }

    /// Empties the log and starts it again at `offset` (a follower whose log
    /// ends before the leader's log start: what it has can never be
    /// continued). Durable before it returns.
    pub async fn restart_at(&self, offset: u64) -> Result<()> {
        self.idle().await;
        let lock = self.st.borrow().epoch_lock.clone();
        let _serial = lock.lock().await;
        let dir = self.dir();
        {
            let mut st = self.st.borrow_mut();
            let bases: Vec<u64> = st.segments.keys().copied().collect();
            for b in &bases {
                Segment::delete_files_at(&dir, *b)?;
            }
            st.segments.clear();
            st.sealed_files.clear();
            st.unsynced_sealed.clear();
            st.active_writer = None;
            producer_snapshot::remove_all(&dir)?;
            let seg = Segment::create(&dir, offset, now_ms(), st.config.index_interval_bytes, &st.sealed_files)?;
            st.segments.insert(offset, seg);
            st.log_start_offset = offset;
            st.next_offset = offset;
            st.log_end = offset;
            st.place_high_watermark(offset);
            st.producers = ProducerStates::default();
            st.epochs.clear();
            st.publish();
        }
        if read_checkpoint(&dir)?.is_some_and(|c| c != offset) || offset > 0 {
            let d = dir.clone();
            let written = tokio::task::spawn_blocking(move || write_checkpoint(&d, offset)).await;
            written.map_err(io::Error::other).and_then(|r| r)?;
        }
        self.persist_epochs().await?;
        tracing::info!(dir = %dir.display(), offset, "log restarted at the leader's log start");
        Ok(())
    }

    /// A follower adopts its leader's log start (DeleteRecords and retention
    /// on the leader): like `delete_records`, but bounded by the log end,
    /// since a follower's high watermark may lag its leader's.
    pub async fn follow_log_start(&self, offset: u64) -> Result<u64> {
        let target = offset.min(self.log_end_offset());
        if target <= self.log_start_offset() {
            return Ok(self.log_start_offset());
        }
        self.advance_log_start(target).await
    }
}
