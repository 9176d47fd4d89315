//! Connecting to the cluster's etcd (`--etcd`). An etcd that is not up yet
//! (the broker started first, etcd is restarting) is waited for: each failed
//! attempt is one log line, with a growing pause, until etcd answers or the
//! operator stops the broker.

use std::sync::Arc;
use std::time::Duration;

use laminar_coord::{CoordError, EtcdOptions, EtcdStore, MetaStore};

/// Longest pause between two connection attempts.
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(5);

pub fn connect(endpoints: &[String]) -> anyhow::Result<Arc<dyn MetaStore>> {
    let mut pause = Duration::from_millis(200);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match EtcdStore::connect(endpoints, EtcdOptions::default()) {
            Ok(store) => {
                if attempt > 1 {
                    tracing::info!(attempt, "connected to etcd");
                }
                return Ok(Arc::new(store));
            }
            Err(e @ CoordError::Unavailable(_)) => {
                tracing::warn!(?endpoints, attempt, "etcd is not reachable ({e}); retrying in {pause:?}");
                std::thread::sleep(pause);
                pause = (pause * 2).min(RETRY_PAUSE_MAX);
            }
            Err(e) => anyhow::bail!("cannot use etcd at {endpoints:?}: {e}"),
        }
    }
}
