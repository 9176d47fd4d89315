//! What every command may need: the cluster's records (etcd, or a stopped
//! single node's embedded store) and the brokers, each connected on first
//! use, with errors that say which flag is missing.

use std::path::PathBuf;

use tokio::sync::OnceCell;

use crate::error::{CtlError, Result};
use crate::kafka::Kafka;
use crate::output::Format;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct Globals {
    pub etcd: Vec<String>,
    /// `--etcd-prefix` as given; `None`: `/laminar` for etcd, empty for an
    /// embedded store (a single node's keys have no prefix).
    pub etcd_prefix: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub bootstrap: Option<String>,
    pub output: Format,
    pub request_timeout_ms: u64,
}

pub struct Ctx {
    pub g: Globals,
    store: OnceCell<Store>,
    kafka: OnceCell<Kafka>,
}

impl Ctx {
    pub fn new(g: Globals) -> Ctx {
        Ctx { g, store: OnceCell::new(), kafka: OnceCell::new() }
    }

    /// `--etcd` or `--data-dir` was given.
    pub fn has_store(&self) -> bool {
        !self.g.etcd.is_empty() || self.g.data_dir.is_some()
    }

    /// The cluster's records, for `command`, which cannot work without them.
    pub async fn store(&self, command: &str) -> Result<&Store> {
        self.store_with(command, false).await
    }

    /// [`Ctx::store`]; `create`: a `--data-dir` without a store gets an
    /// empty one (restoring a backup into a new data directory).
    pub async fn store_with(&self, command: &str, create: bool) -> Result<&Store> {
        if !self.has_store() {
            return Err(CtlError::usage(format!(
                "`{command}` reads the cluster's records: pass --etcd http://HOST:2379 for a cluster, \
                 or --data-dir DIR for a stopped single node's embedded store"
            )));
        }
        if !self.g.etcd.is_empty() && self.g.data_dir.is_some() {
            return Err(CtlError::usage("--etcd and --data-dir name two different stores: pass one"));
        }
        self.store
            .get_or_try_init(|| async {
                let g = self.g.clone();
                // Connecting and opening block (bounded by the dial timeout, or
                // the store's recovery): keep them off the runtime's thread.
                tokio::task::spawn_blocking(move || match &g.data_dir {
                    Some(dir) => Store::open_embedded(dir, g.etcd_prefix.as_deref().unwrap_or(""), create),
                    None => Store::connect_etcd(
                        &g.etcd,
                        g.etcd_prefix.as_deref().unwrap_or("/laminar"),
                        g.request_timeout_ms,
                    ),
                })
                .await
                .map_err(|e| CtlError::failed(format!("opening the metadata store: {e}")))?
            })
            .await
    }

    /// The store if `--etcd` or `--data-dir` was given, for commands that
    /// show more with it.
    pub async fn store_if_given(&self, command: &str) -> Result<Option<&Store>> {
        if self.has_store() {
            Ok(Some(self.store(command).await?))
        } else {
            Ok(None)
        }
    }

    /// The brokers: `--bootstrap-server`, else the listeners registered in
    /// etcd when `--etcd` is given.
    pub async fn kafka(&self) -> Result<&Kafka> {
        self.kafka
            .get_or_try_init(|| async {
                let bootstrap = match &self.g.bootstrap {
                    Some(b) => b.clone(),
                    None if !self.g.etcd.is_empty() => {
                        let store = self.store("this command").await?;
                        let live = store.live_listeners().await?;
                        if live.is_empty() {
                            return Err(CtlError::unreachable(format!(
                                "no broker is registered under {} in {} (all stopped?): start one, or pass --bootstrap-server",
                                store.prefix_shown(),
                                store.source()
                            )));
                        }
                        live.join(",")
                    }
                    None if self.g.data_dir.is_some() => {
                        return Err(CtlError::usage(
                            "this command talks to the running broker: pass --bootstrap-server HOST:PORT \
                             (--data-dir only reads a stopped broker's store)",
                        ))
                    }
                    None => crate::DEFAULT_BOOTSTRAP.to_string(),
                };
                Kafka::connect(&bootstrap, self.g.request_timeout_ms).await
            })
            .await
    }
}
