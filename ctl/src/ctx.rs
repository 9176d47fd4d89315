//! What every command may need: etcd and the brokers, each connected on
//! first use, with the errors that say which flag is missing.

use tokio::sync::OnceCell;

use crate::error::{CtlError, Result};
use crate::etcd::Etcd;
use crate::kafka::Kafka;
use crate::output::Format;

#[derive(Debug, Clone)]
pub struct Globals {
    pub etcd: Vec<String>,
    pub etcd_prefix: String,
    pub bootstrap: Option<String>,
    pub output: Format,
    pub request_timeout_ms: u64,
}

pub struct Ctx {
    pub g: Globals,
    etcd: OnceCell<Etcd>,
    kafka: OnceCell<Kafka>,
}

impl Ctx {
    pub fn new(g: Globals) -> Ctx {
        Ctx { g, etcd: OnceCell::new(), kafka: OnceCell::new() }
    }

    pub fn has_etcd(&self) -> bool {
        !self.g.etcd.is_empty()
    }

    /// etcd, for `command`, which cannot work without it.
    pub async fn etcd(&self, command: &str) -> Result<&Etcd> {
        if !self.has_etcd() {
            return Err(CtlError::usage(format!(
                "`{command}` reads the cluster's records in etcd: pass --etcd http://HOST:2379 \
                 (a single node without etcd keeps them in its embedded store, which laminarctl does not open)"
            )));
        }
        self.etcd
            .get_or_try_init(|| async {
                let (endpoints, prefix, timeout) =
                    (self.g.etcd.clone(), self.g.etcd_prefix.clone(), self.g.request_timeout_ms);
                // Connecting blocks for at most the dial timeout; keep it off the runtime's thread.
                tokio::task::spawn_blocking(move || Etcd::connect(&endpoints, &prefix, timeout))
                    .await
                    .map_err(|e| CtlError::failed(format!("connecting to etcd: {e}")))?
            })
            .await
    }

    /// etcd if `--etcd` was given, for commands that show more with it.
    pub async fn etcd_if_given(&self, command: &str) -> Result<Option<&Etcd>> {
        if self.has_etcd() {
            Ok(Some(self.etcd(command).await?))
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
                    None if self.has_etcd() => {
                        let etcd = self.etcd("this command").await?;
                        let live = etcd.live_listeners().await?;
                        if live.is_empty() {
                            return Err(CtlError::unreachable(format!(
                                "no broker is registered under {} in etcd at {} (all stopped?): start one, or pass --bootstrap-server",
                                etcd.prefix_shown(),
                                etcd.endpoints
                            )));
                        }
                        live.join(",")
                    }
                    None => {
                        return Err(CtlError::usage(
                            "this command talks to the brokers: pass --bootstrap-server HOST:PORT (or --etcd URL to find them)",
                        ))
                    }
                };
                Kafka::connect(&bootstrap, self.g.request_timeout_ms).await
            })
            .await
    }
}
