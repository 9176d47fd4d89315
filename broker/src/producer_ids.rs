//! Producer ids for InitProducerId. Ids are reserved in blocks in the metadata
//! store (one compare-and-swap per block, at `<P>/producer-ids/next-block`),
//! so an id is never handed out twice, across restarts or by the brokers of a
//! cluster; a crash wastes at most the rest of one block. Shared by all shards
//! (`Send + Sync`).

use std::sync::Arc;

use laminar_coord::{Compare, CoordError, MetaStore, Op};
use tokio::sync::Mutex;

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
    /// The key holding the first id of the next unreserved block, in decimal.
    key: String,
    block_size: i64,
    /// An async mutex: refilling awaits the store, and InitProducerId is rare.
    block: Mutex<Block>,
}

impl ProducerIds {
    pub fn new(store: Arc<dyn MetaStore>, key: String) -> Self {
        Self::with_block_size(store, key, BLOCK_SIZE)
    }

    pub fn with_block_size(store: Arc<dyn MetaStore>, key: String, block_size: i64) -> Self {
        assert!(block_size > 0);
        ProducerIds { store, key, block_size, block: Mutex::new(Block::default()) }
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

    /// InitProducerId's answer for an idempotent (non-transactional)
    /// producer: always a fresh id at epoch 0, as Kafka answers. Bumping the
    /// epoch of whatever id a request names (KIP-360's path for
    /// transactional producers) would let any client fence any other client's
    /// producer; without a transactional id there is no owner to check, so a
    /// producer recovering from a sequence error simply starts over.
    pub async fn init(&self) -> Result<(i64, i16), ProducerIdError> {
        Ok((self.next_id().await?, 0))
    }

    /// (first id of the next unreserved block, key version; 0 if absent).
    async fn read_next_block(&self) -> Result<(i64, u64), ProducerIdError> {
        match self.store.get(&self.key).await? {
            None => Ok((0, 0)),
            Some(v) => {
                let s = String::from_utf8_lossy(&v.value);
                let start = s
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| ProducerIdError::Other(format!("{} holds '{s}', not an id", self.key)))?;
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
            let guard = Compare::version(self.key.clone(), version);
            if self.store.txn(vec![guard], vec![Op::put(self.key.clone(), end.to_string())]).await?.applied {
                tracing::debug!(start, end, "reserved a block of producer ids");
                return Ok(Block { next: start, end });
            }
        }
        Err(ProducerIdError::Other(format!("{} kept changing under {CAS_ATTEMPTS} attempts", self.key)))
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

    const KEY: &str = "/producer-ids/next-block";

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn ids_are_unique_across_restarts_with_one_write_per_block() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        rt().block_on(async {
            let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            let ids = ProducerIds::with_block_size(store.clone(), KEY.into(), 10);
            for _ in 0..25 {
                assert!(seen.insert(ids.next_id().await.unwrap()));
            }
            let v = store.get(KEY).await.unwrap().unwrap();
            assert_eq!(v.value, b"30");
        });
        // A restart (the store reopened) starts from the next unreserved block.
        rt().block_on(async {
            let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            let ids = ProducerIds::with_block_size(store.clone(), KEY.into(), 10);
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
            let a = Arc::new(ProducerIds::with_block_size(store.clone(), KEY.into(), 3));
            let b = Arc::new(ProducerIds::with_block_size(store.clone(), KEY.into(), 3));
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

    /// Regression (hardening issue, item 14): naming another producer's id no
    /// longer bumps (and so fences) it; every request gets a fresh id.
    #[test]
    fn init_always_hands_out_a_fresh_id() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            let ids = ProducerIds::with_block_size(store, KEY.into(), 10);
            let (a, ea) = ids.init().await.unwrap();
            let (b, eb) = ids.init().await.unwrap();
            assert_ne!(a, b);
            assert_eq!((ea, eb), (0, 0));
        });
    }
}
