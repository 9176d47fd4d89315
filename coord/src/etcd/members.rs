//! The cluster's members as the store reaches them: one etcd-client `Client`
//! (one HTTP/2 connection) per endpoint; calls go to one member, the current
//! one, and move on to the next member when it fails, as etcd's own Go client
//! does. etcd-client's balanced channel over all endpoints was not enough: it
//! keeps sending a share of calls to a dead member (measured: with one of
//! three members killed, a quarter of puts failed).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};

use super::errors::{map_err, never_sent, Sent};
use super::EtcdOptions;
use crate::CoordError;

pub(super) struct Members {
    /// One per endpoint, in the order given.
    clients: Vec<Client>,
    endpoints: Vec<String>,
    /// Index into `clients` of the member calls go to.
    current: AtomicUsize,
}

impl Members {
    /// A client per endpoint. Dials nothing yet: see [`Members::probe`].
    pub(super) async fn new(endpoints: &[String], options: &EtcdOptions) -> Result<Members, CoordError> {
        let connect_options = ConnectOptions::new()
            .with_connect_timeout(options.dial_timeout)
            .with_keep_alive(options.keep_alive_interval, options.request_timeout)
            // etcd counts pings on a connection without open streams against
            // the client (and drops it after two), so ping only while a watch
            // or a call is open.
            .with_keep_alive_while_idle(false);
        let mut clients = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let client = Client::connect([endpoint], Some(connect_options.clone()))
                .await
                .map_err(|e| map_err(&format!("etcd endpoint {endpoint:?}"), e, None))?;
            clients.push(client);
        }
        Ok(Members { clients, endpoints: endpoints.to_vec(), current: AtomicUsize::new(0) })
    }

    /// Asks every member at once for a linearizable read (it needs the
    /// cluster's quorum); the first to answer becomes the current member.
    /// Fails with every member's error if none answers within `timeout`.
    pub(super) async fn probe(&self, timeout: Duration) -> Result<(), CoordError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(self.clients.len());
        for (index, client) in self.clients.iter().enumerate() {
            let (tx, mut kv) = (tx.clone(), client.kv_client());
            tokio::spawn(async move {
                let result =
                    tokio::time::timeout(timeout, kv.get(vec![0u8], Some(GetOptions::new().with_count_only())));
                let _ = tx.send((index, result.await)).await;
            });
        }
        drop(tx);
        let mut errors = Vec::new();
        while let Some((index, result)) = rx.recv().await {
            let endpoint = &self.endpoints[index];
            match result {
                Ok(Ok(_)) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(Err(e)) => errors.push(map_err(&format!("etcd at {endpoint}"), e, None)),
                Err(_) => errors.push(CoordError::Unavailable(format!(
                    "etcd at {endpoint}: no answer within the dial timeout of {timeout:?}"
                ))),
            }
        }
        // Every member failed: name each failure; a refusal (say, an
        // authentication error) matters more than an unreachable member.
        let message = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
        Err(match errors.into_iter().find(|e| !matches!(e, CoordError::Unavailable(_))) {
            Some(CoordError::Rejected(_)) => CoordError::Rejected(message),
            Some(other) => other,
            None => CoordError::Unavailable(message),
        })
    }

    /// The current member and its client.
    pub(super) fn current(&self) -> (usize, Client) {
        let index = self.current.load(Ordering::Relaxed) % self.clients.len();
        (index, self.clients[index].clone())
    }

    pub(super) fn endpoint(&self, index: usize) -> &str {
        &self.endpoints[index]
    }

    /// Member `index` failed a call (unreachable, or no answer in time): later
    /// calls go to the next member, unless another failure moved on already.
    pub(super) fn failed(&self, index: usize) {
        let next = (index + 1) % self.clients.len();
        if next != index && self.current.compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(
                failed = %self.endpoints[index],
                next = %self.endpoints[next],
                "etcd member did not answer; using the next one"
            );
        }
    }

    /// Runs `op` against the current member, bounded by `timeout` in all. A
    /// member that fails is left for the next one; an attempt that never
    /// reached a member (no connection could be made) is tried again on the
    /// next, at most once per member, which is safe for writes too. An attempt
    /// that timed out or failed after it was sent is not repeated: a write may
    /// have been applied.
    pub(super) async fn run<T, F, Fut>(
        &self,
        what: &str,
        sent: Option<Sent>,
        timeout: Duration,
        op: F,
    ) -> Result<T, CoordError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut attempts = 0;
        loop {
            let (index, client) = self.current();
            attempts += 1;
            let error = match tokio::time::timeout_at(deadline, op(client)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => e,
                Err(_) => {
                    self.failed(index);
                    return Err(CoordError::Unavailable(format!(
                        "{what}: no answer from etcd at {} within {timeout:?}",
                        self.endpoints[index]
                    )));
                }
            };
            let retry = never_sent(&error) && attempts < self.clients.len();
            let error = map_err(what, error, sent);
            if matches!(error, CoordError::Unavailable(_)) {
                self.failed(index);
                if retry {
                    continue;
                }
            }
            return Err(error);
        }
    }
}
