//! Producer ids for InitProducerId. Ids are reserved in blocks in the metadata
//! store (one compare-and-swap per block), so an id is never handed out twice,
//! across restarts or by two brokers sharing the store; a crash wastes at most
//! the rest of one block. Shared by all shards (`Send + Sync`).

use std::sync::Arc;

use laminar_coord::{Compare, CoordError, MetaStore, Op};
use tokio::sync::Mutex;

/// Store key holding the first id of the next unreserved block, in decimal.
pub const NEXT_BLOCK_KEY: &str = "/producer-ids/next-block";
/// Ids per reservation: one store write per this many producers.
pub const BLOCK_SIZE: i64 = 1000;
/// Compare-and-swap attempts before giving up (only contention makes one fail).
const CAS_ATTEMPTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("metadata store: {0}")]
    Store(#[from] CoordError),
    #[error("{0}")]
    Other(String),
}

/// The block being handed out: ids `next..end`.
#[derive(Debug, Default)]
struct Block {
    next: i64,
    end: i64,
}

pub struct ProducerIds {
    store: Arc<dyn MetaStore>,
    block_size: i64,
    /// An async mutex: refilling awaits the store, and InitProducerId is rare.
    block: Mutex<Block>,
}

impl ProducerIds {
    pub fn new(store: Arc<dyn MetaStore>) -> Self {
        Self::with_block_size(store, BLOCK_SIZE)
    }

    pub fn with_block_size(store: Arc<dyn MetaStore>, block_size: i64) -> Self {
        assert!(block_size > 0);
        ProducerIds { store, block_size, block: Mutex::new(Block::default()) }
    }

    /// A producer id never handed out before.
    pub async fn next_id(&self) -> Result<i64, ProducerIdError> {
        let mut block = self.block.lock().await;
        if block.next >= block.end {
            *block = self.reserve_block().await?;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }

    /// InitProducerId's answer: `(producer_id, epoch)`. A new producer
    /// (`current` is `None`) gets a fresh id at epoch 0. A producer that sends
    /// its id and epoch (KIP-360, v3+) gets the next epoch of the same id, which
    /// fences its older epoch in every partition; a fresh id if the epoch is
    /// exhausted or the id was never handed out by this cluster.
    pub async fn init(&self, current: Option<(i64, i16)>) -> Result<(i64, i16), ProducerIdError> {
        if let Some((id, epoch)) = current {
            // Kafka's `isEpochExhausted`: the last epoch is kept for fencing.
            if id >= 0 && (0..i16::MAX - 1).contains(&epoch) && self.was_issued(id).await? {
                return Ok((id, epoch + 1));
            }
        }
        Ok((self.next_id().await?, 0))
    }

    /// True if `id` lies below the reserved blocks (by us or anyone else).
    async fn was_issued(&self, id: i64) -> Result<bool, ProducerIdError> {
        if id < self.block.lock().await.end {
            return Ok(true);
        }
        let (reserved_end, _) = self.read_next_block().await?;
        Ok(id < reserved_end)
    }

    /// (first id of the next unreserved block, key version; 0 if absent).
    async fn read_next_block(&self) -> Result<(i64, u64), ProducerIdError> {
        match self.store.get(NEXT_BLOCK_KEY).await? {
            None => Ok((0, 0)),
            Some(v) => {
                let s = String::from_utf8_lossy(&v.value);
                let start = s
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| ProducerIdError::Other(format!("{NEXT_BLOCK_KEY} holds '{s}', not an id")))?;
                Ok((start, v.version))
            }
        }
    }

    async fn reserve_block(&self) -> Result<Block, ProducerIdError> {
        for _ in 0..CAS_ATTEMPTS {
            let (start, version) = self.read_next_block().await?;
            let end = start
                .checked_add(self.block_size)
                .ok_or_else(|| ProducerIdError::Other("producer ids exhausted".into()))?;
            let guard = Compare::version(NEXT_BLOCK_KEY, version);
            if self.store.txn(vec![guard], vec![Op::put(NEXT_BLOCK_KEY, end.to_string())]).await?.applied {
                tracing::debug!(start, end, "reserved a block of producer ids");
                return Ok(Block { next: start, end });
            }
        }
        Err(ProducerIdError::Other(format!("{NEXT_BLOCK_KEY} kept changing under {CAS_ATTEMPTS} attempts")))
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<ProducerIds>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use laminar_coord::EmbeddedStore;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn ids_are_unique_across_restarts_with_one_write_per_block() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        rt().block_on(async {
            let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            let ids = ProducerIds::with_block_size(store.clone(), 10);
            for _ in 0..25 {
                assert!(seen.insert(ids.next_id().await.unwrap()));
            }
            let v = store.get(NEXT_BLOCK_KEY).await.unwrap().unwrap();
            assert_eq!(v.value, b"30");
        });
        // A restart (the store reopened) starts from the next unreserved block.
        rt().block_on(async {
            let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            let ids = ProducerIds::with_block_size(store.clone(), 10);
            let id = ids.next_id().await.unwrap();
            assert_eq!(id, 30);
            assert!(!seen.contains(&id));
        });
    }

    #[test]
    fn two_allocators_on_one_store_never_overlap() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            let a = Arc::new(ProducerIds::with_block_size(store.clone(), 3));
            let b = Arc::new(ProducerIds::with_block_size(store.clone(), 3));
            let mut all = Vec::new();
            for _ in 0..10 {
                let (x, y) = tokio::join!(a.next_id(), b.next_id());
                all.push(x.unwrap());
                all.push(y.unwrap());
            }
            let n = all.len();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), n);
        });
    }

    #[test]
    fn init_bumps_known_producers_and_renews_exhausted_or_unknown_ones() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            let ids = ProducerIds::with_block_size(store, 10);
            let (id, epoch) = ids.init(None).await.unwrap();
            assert_eq!((id, epoch), (0, 0));
            assert_eq!(ids.init(Some((id, 0))).await.unwrap(), (id, 1));
            assert_eq!(ids.init(Some((id, 7))).await.unwrap(), (id, 8));
            let (fresh, e) = ids.init(Some((id, i16::MAX - 1))).await.unwrap();
            assert!(fresh != id && e == 0);
            let (fresh2, e) = ids.init(Some((1_000_000, 3))).await.unwrap();
            assert!(fresh2 != id && fresh2 != fresh && e == 0, "never issued: a new id");
        });
    }
}
