//! The cluster as etcd holds it: laminarctl reads (and for a few commands
//! writes) the records of `coord::cluster` directly, so `cluster status`
//! works with every broker down. Writes are compare-and-swap on each
//! record's version, as the controller's are.

use laminar_coord::cluster::{ClusterView, FormatRecord, Keys, FORMAT_VERSION};
use laminar_coord::{Compare, EtcdOptions, EtcdStore, MetaStore, Op, Versioned, WatchItem};

use crate::error::{self, CtlError, Result};

pub struct Etcd {
    store: EtcdStore,
    pub keys: Keys,
    /// As given to `--etcd`, for messages.
    pub endpoints: String,
}

impl Etcd {
    /// Connects (blocking for at most `dial_timeout`) and checks that some
    /// member answers.
    pub fn connect(endpoints: &[String], prefix: &str, request_timeout_ms: u64) -> Result<Etcd> {
        let shown = endpoints.join(",");
        let options = EtcdOptions {
            dial_timeout: std::time::Duration::from_secs(3),
            request_timeout: std::time::Duration::from_millis(request_timeout_ms),
            ..EtcdOptions::default()
        };
        let store = EtcdStore::connect(endpoints, options).map_err(|e| error::etcd(&shown, e))?;
        Ok(Etcd { store, keys: Keys::new(prefix), endpoints: shown })
    }

    fn err(&self, e: laminar_coord::CoordError) -> CtlError {
        error::etcd(&self.endpoints, e)
    }

    /// The prefix as written in messages (`/` for the empty one).
    pub fn prefix_shown(&self) -> String {
        let p = self.keys.prefix();
        if p.is_empty() {
            "/".into()
        } else {
            p.to_string()
        }
    }

    /// Every key under the cluster's prefix (the prefix itself followed by
    /// `/`, so `/laminar` does not take in `/laminar2`).
    pub async fn list_all(&self) -> Result<(Vec<(String, Versioned)>, u64)> {
        let prefix = format!("{}/", self.keys.prefix());
        self.store.list_with_revision(&prefix).await.map_err(|e| self.err(e))
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>> {
        self.store.list(prefix).await.map_err(|e| self.err(e))
    }

    pub async fn get(&self, key: &str) -> Result<Option<Versioned>> {
        self.store.get(key).await.map_err(|e| self.err(e))
    }

    pub async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool> {
        Ok(self.store.txn(compares, ops).await.map_err(|e| self.err(e))?.applied)
    }

    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        self.store.delete_prefix(prefix).await.map_err(|e| self.err(e))
    }

    /// Fails with [`crate::error::Exit::NotFound`] unless a Laminar cluster
    /// (its format record) lives under the prefix, and refuses a format this
    /// build does not know.
    pub async fn require_cluster(&self) -> Result<()> {
        match self.get(&self.keys.format()).await? {
            None => Err(CtlError::not_found(format!(
                "no Laminar cluster under prefix {} in etcd at {}: check --etcd-prefix (brokers use --etcd-prefix too; default /laminar)",
                self.prefix_shown(),
                self.endpoints
            ))),
            Some(v) => match serde_json::from_slice::<FormatRecord>(&v.value) {
                Ok(f) if f.version <= FORMAT_VERSION => Ok(()),
                Ok(f) => Err(CtlError::failed(format!(
                    "the cluster under {} has metadata format {}; this laminarctl reads up to {FORMAT_VERSION}: use a newer laminarctl",
                    self.prefix_shown(),
                    f.version
                ))),
                Err(e) => Err(CtlError::failed(format!("{} is not a format record: {e}", self.keys.format()))),
            },
        }
    }

    /// The cluster's records as one consistent view (one read at one revision).
    pub async fn view(&self) -> Result<ClusterView> {
        self.require_cluster().await?;
        let (entries, revision) = self.store.list_with_revision(&self.keys.meta()).await.map_err(|e| self.err(e))?;
        Ok(ClusterView::empty().apply(&self.keys, &WatchItem::Reset { revision, entries }))
    }

    /// `host:port` of every registered broker, for Kafka-protocol commands
    /// given `--etcd` but no `--bootstrap-server`.
    pub async fn live_listeners(&self) -> Result<Vec<String>> {
        let view = self.view().await?;
        Ok(view.brokers.values().map(|b| listener(&b.record.host, b.record.port)).collect())
    }
}

pub fn listener(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
