//! The cluster's records as laminarctl reads (and for a few commands
//! writes) them, through `laminar-coord`: in etcd (`--etcd`), or in a
//! stopped single node's embedded store (`--data-dir`). Reading them
//! directly is what makes `cluster status` work with every broker down.
//! Writes are compare-and-swap on each record's version, as the
//! controller's are.

use std::path::Path;
use std::sync::Arc;

use laminar_coord::cluster::{ClusterView, FormatRecord, Keys, FORMAT_VERSION};
use laminar_coord::{Compare, CoordError, EmbeddedStore, EtcdOptions, EtcdStore, MetaStore, Op, Versioned, WatchItem};

use crate::error::{CtlError, Result};

/// Longest wait for a TCP connection to an etcd endpoint.
const ETCD_DIAL_TIMEOUT_MS: u64 = 3_000;

enum Kind {
    /// As given to `--etcd`.
    Etcd { endpoints: String },
    /// The directory given to `--data-dir`.
    Embedded { dir: String },
}

pub struct Store {
    store: Arc<dyn MetaStore>,
    kind: Kind,
    pub keys: Keys,
}

impl Store {
    /// Connects (blocking for at most the dial timeout) and checks that some
    /// member answers.
    pub fn connect_etcd(endpoints: &[String], prefix: &str, request_timeout_ms: u64) -> Result<Store> {
        let shown = endpoints.join(",");
        let options = EtcdOptions {
            dial_timeout: std::time::Duration::from_millis(ETCD_DIAL_TIMEOUT_MS),
            request_timeout: std::time::Duration::from_millis(request_timeout_ms),
            ..EtcdOptions::default()
        };
        let store = EtcdStore::connect(endpoints, options).map_err(|e| etcd_error(&shown, e))?;
        Ok(Store { store: Arc::new(store), kind: Kind::Etcd { endpoints: shown }, keys: Keys::new(prefix) })
    }

    /// Opens a single node's embedded store, `<data_dir>/meta` (blocking),
    /// creating an empty one if `create` (restoring a backup into a new
    /// data directory). Refused while the broker runs: it holds the lock.
    pub fn open_embedded(data_dir: &Path, prefix: &str, create: bool) -> Result<Store> {
        let shown = data_dir.display().to_string();
        let meta = data_dir.join("meta");
        if !meta.is_dir() && !create {
            return Err(CtlError::not_found(format!(
                "no metadata store in {shown} (expected {}): check --data-dir (the broker's --data-dir)",
                meta.display()
            )));
        }
        let store = EmbeddedStore::open(&meta).map_err(|e| match e {
            CoordError::Locked { holder, .. } => CtlError::failed(format!(
                "the metadata store in {shown} is in use{} (the broker runs): stop the broker to read it here, \
                 or use --bootstrap-server for what the running broker serves",
                holder.map(|p| format!(" by pid {}", p.trim())).unwrap_or_default()
            )),
            e => CtlError::failed(format!("cannot open the metadata store in {shown}: {e}")),
        })?;
        Ok(Store { store: Arc::new(store), kind: Kind::Embedded { dir: shown }, keys: Keys::new(prefix) })
    }

    /// Where the records are, for messages: `etcd at URL` or `the store in DIR`.
    pub fn source(&self) -> String {
        match &self.kind {
            Kind::Etcd { endpoints } => format!("etcd at {endpoints}"),
            Kind::Embedded { dir } => format!("the metadata store in {dir}"),
        }
    }

    pub fn is_etcd(&self) -> bool {
        matches!(self.kind, Kind::Etcd { .. })
    }

    fn err(&self, e: CoordError) -> CtlError {
        match &self.kind {
            Kind::Etcd { endpoints } => etcd_error(endpoints, e),
            Kind::Embedded { dir } => CtlError::failed(format!("the metadata store in {dir}: {e}")),
        }
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
    /// `/`, so `/laminar` does not take in `/laminar2`), and the revision read at.
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

    /// Whether every compare held (and so the ops were applied).
    pub async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool> {
        Ok(self.store.txn(compares, ops).await.map_err(|e| self.err(e))?.applied)
    }

    /// Fails with [`crate::error::Exit::NotFound`] unless a Laminar cluster
    /// (its format record) lives under the prefix, and refuses a format this
    /// build does not know.
    pub async fn require_cluster(&self) -> Result<()> {
        match self.get(&self.keys.format()).await? {
            None => Err(CtlError::not_found(format!(
                "no Laminar cluster under prefix {} in {}: check --etcd-prefix (brokers use --etcd-prefix too; default /laminar)",
                self.prefix_shown(),
                self.source()
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

/// An etcd call's failure, naming the endpoints the operator gave.
pub fn etcd_error(endpoints: &str, e: CoordError) -> CtlError {
    match e {
        CoordError::Unavailable(detail) => {
            CtlError::unreachable(format!("etcd at {endpoints} unreachable ({detail}): check --etcd"))
        }
        e => CtlError::failed(format!("etcd at {endpoints}: {e}")),
    }
}

pub fn listener(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
