//! [`EtcdStore`]: the [`MetaStore`] on an etcd cluster (v3 API, etcd 3.4 or
//! newer), one-to-one: a store revision is etcd's revision, `Versioned.version`
//! is `mod_revision`, a txn is one etcd Txn. How each call maps, the error
//! mapping and the watch rules are in `README.md` beside `src/`.
//!
//! The client lives on a runtime of its own (one thread, `laminar-etcd`): tonic
//! channels spawn their connection tasks on the runtime that creates them, and
//! the broker calls the store from many shard threads, each with its own
//! current-thread runtime that may not be polled while it waits on something
//! else. Every call is spawned onto the store's runtime and its result awaited,
//! so a call works from any runtime, and the connections and watches keep
//! running whatever the callers' runtimes do.

mod errors;
mod members;
mod watcher;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, DeleteOptions, GetOptions, KeyValue, KvClient, PutOptions, Txn, TxnOp,
};
use tokio::sync::oneshot;

use self::errors::{is_compacted, is_lease_not_found, is_response_too_large, Sent};
use self::members::Members;
use crate::limits::{check_key, check_prefix, check_txn, check_value};
use crate::watch::{self, WatchStream};
use crate::{Compare, CoordError, Lease, LeaseId, MetaStore, Op, TxnResult, Versioned};

/// Tuning of an [`EtcdStore`]; [`EtcdOptions::default`] suits a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Longest wait for a TCP connection to an endpoint, and for
    /// [`EtcdStore::connect`]'s first answer from the cluster.
    pub dial_timeout: Duration,
    /// Longest wait for any one call (a get, a txn, one page of a list, a lease
    /// keep-alive) before it fails with [`CoordError::Unavailable`]. Also how
    /// long an HTTP/2 ping and a watch's progress request may go unanswered
    /// before the connection or the watch is given up and made anew.
    pub request_timeout: Duration,
    /// HTTP/2 ping interval while streams (watches) are open; it finds a dead
    /// or partitioned connection that TCP alone would hold for many minutes.
    /// etcd drops a client that pings more often than its
    /// `--grpc-keepalive-min-time` (5 s by default), so keep it above that.
    pub keep_alive_interval: Duration,
    /// A watch that heard nothing from etcd for this long asks for a progress
    /// report; one not answered within `request_timeout` means the stream is
    /// dead, and the watch reconnects.
    pub watch_check_interval: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            keep_alive_interval: Duration::from_secs(10),
            watch_check_interval: Duration::from_secs(5),
        }
    }
}

/// Keys asked for per page of a list; halved while a page's response is over
/// [`KV_RESPONSE_BYTES_MAX`] (values may be up to 1 MiB each).
const LIST_PAGE_KEYS_MAX: i64 = 1024;
/// Largest response the client decodes (tonic's default is 4 MiB). A list page
/// that would be larger is asked for again with fewer keys; a single key of
/// etcd's largest request size always fits.
const KV_RESPONSE_BYTES_MAX: usize = 16 << 20;
/// A list whose pinned revision is compacted between two pages starts over, at
/// most this many times (each start reads at the newest revision).
const LIST_ATTEMPTS_MAX: usize = 3;
/// Granted TTLs remembered for leases granted here, so a keep-alive can answer
/// the lease's TTL after one round trip (etcd-client reads the keep-alive answer
/// itself and keeps only whether the lease lives). Leases granted elsewhere, or
/// beyond this bound, cost a second round trip (`LeaseTimeToLive`).
const LEASE_TTLS_MAX: usize = 1024;

/// The metadata store on etcd. `Send + Sync`; share it as `Arc<dyn MetaStore>`.
pub struct EtcdStore {
    members: Arc<Members>,
    options: EtcdOptions,
    endpoints: Vec<String>,
    /// Granted TTL of leases granted by this store and not yet known to be dead;
    /// at most [`LEASE_TTLS_MAX`] entries.
    lease_ttls: Mutex<HashMap<LeaseId, Duration>>,
    /// Last field: dropped after the clients, ending the runtime's thread,
    /// which drops every watch task (their streams then end).
    runtime: Runtime,
}

/// The dedicated runtime: a current-thread tokio runtime driven by one thread
/// until the store is dropped.
struct Runtime {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl Runtime {
    fn start() -> Result<Runtime, CoordError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CoordError::io("starting the etcd client runtime"))?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("laminar-etcd".into())
            .spawn(move || {
                // Drives every call, connection and watch task until the store
                // is dropped; dropping `rt` here (a plain thread, not async
                // context) then cancels whatever is left.
                rt.block_on(async move {
                    let _ = stopped.await;
                });
            })
            .map_err(CoordError::io("starting the etcd client thread"))?;
        Ok(Runtime { handle, stop: Some(stop) })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (`http://host:port` or
    /// `host:port`, one per member; TLS and auth are not supported yet) and
    /// checks that some member answers a linearizable read, so a broker
    /// pointed at a dead or quorum-less cluster fails at startup. Blocks the
    /// calling thread for at most `options.dial_timeout`; call it at startup,
    /// not on a shard.
    pub fn connect(endpoints: &[String], options: EtcdOptions) -> Result<EtcdStore, CoordError> {
        if endpoints.is_empty() {
            return Err(CoordError::InvalidArgument("no etcd endpoints given".into()));
        }
        let runtime = Runtime::start()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let eps = endpoints.to_vec();
        runtime.handle.spawn(async move {
            let members = async {
                let members = Members::new(&eps, &options).await?;
                members.probe(options.dial_timeout).await?;
                Ok(members)
            };
            let _ = tx.send(members.await);
        });
        // The task answers within the dial timeout (the probe's bound).
        let members = rx
            .recv()
            .map_err(|_| CoordError::Unavailable("the etcd client runtime stopped while connecting".into()))??;
        Ok(EtcdStore {
            members: Arc::new(members),
            options,
            endpoints: endpoints.to_vec(),
            lease_ttls: Mutex::new(HashMap::new()),
            runtime,
        })
    }

    pub fn options(&self) -> &EtcdOptions {
        &self.options
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The member calls go to now (for logs and tests): the first to answer
    /// at connect, then the next one each time it fails.
    pub fn current_endpoint(&self) -> &str {
        self.members.endpoint(self.members.current().0)
    }

    /// Runs `op` on the store's runtime against the current member (moving on
    /// to the next one as [`Members::run`] says), bounded by the request
    /// timeout, and waits for it from whatever runtime (or none) the caller is
    /// on. If the caller stops waiting, the call still runs to its end (a
    /// write may or may not apply, as the trait says).
    async fn call<T, F, Fut>(&self, what: String, sent: Option<Sent>, op: F) -> Result<T, CoordError>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let members = self.members.clone();
        let timeout = self.options.request_timeout;
        self.spawn(async move { members.run(&what, sent, timeout, op).await }).await
    }

    async fn spawn<T, F>(&self, fut: F) -> Result<T, CoordError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, CoordError>> + Send + 'static,
    {
        match self.runtime.handle.spawn(fut).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(CoordError::Unavailable("the etcd client runtime has stopped".into())),
        }
    }

    fn remember_lease(&self, id: LeaseId, ttl: Duration) {
        if let Ok(mut ttls) = self.lease_ttls.lock() {
            if ttls.len() < LEASE_TTLS_MAX {
                ttls.insert(id, ttl);
            }
        }
    }

    fn forget_lease(&self, id: LeaseId) {
        if let Ok(mut ttls) = self.lease_ttls.lock() {
            ttls.remove(&id);
        }
    }

    fn granted_ttl(&self, id: LeaseId) -> Option<Duration> {
        self.lease_ttls.lock().ok()?.get(&id).copied()
    }
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore").field("endpoints", &self.endpoints).field("options", &self.options).finish()
    }
}

/// A KV client that takes list pages up to [`KV_RESPONSE_BYTES_MAX`].
fn kv(client: &Client) -> KvClient {
    client.kv_client().max_decoding_message_size(KV_RESPONSE_BYTES_MAX)
}

/// The key range of every key starting with `prefix`, as etcd takes it:
/// `[prefix, prefix with its last byte raised)`, or `["\0", "\0")` (every key)
/// for the empty prefix.
fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let mut end = prefix.as_bytes().to_vec();
    match end.last_mut() {
        None => (vec![0], vec![0]),
        Some(last) => {
            // UTF-8 never contains 0xFF, so the last byte can always be raised.
            assert!(*last < 0xFF, "a str's bytes are below 0xFF");
            *last += 1;
            (prefix.as_bytes().to_vec(), end)
        }
    }
}

/// A key as a string. Laminar writes only UTF-8 keys; a foreign key that is not
/// is shown lossily rather than failing every list of its prefix.
fn key_string(key: Vec<u8>) -> String {
    String::from_utf8(key).unwrap_or_else(|e| {
        let key = String::from_utf8_lossy(e.as_bytes()).into_owned();
        tracing::warn!(%key, "etcd key is not UTF-8; shown lossily");
        key
    })
}

fn entry(kv: KeyValue) -> (String, Versioned) {
    let (version, create_revision, lease) = (kv.mod_revision(), kv.create_revision(), kv.lease());
    let (key, value) = kv.into_key_value();
    (
        key_string(key),
        Versioned { value, version: revision(version), create_revision: revision(create_revision), lease },
    )
}

/// etcd's revisions are positive `i64`s.
fn revision(rev: i64) -> u64 {
    u64::try_from(rev).unwrap_or(0)
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> u64 {
    header.map_or(0, |h| revision(h.revision()))
}

/// One page of a list, or why it must be asked for differently.
enum Page {
    Keys(etcd_client::GetResponse),
    /// Over [`KV_RESPONSE_BYTES_MAX`]: ask for fewer keys.
    TooLarge,
    /// The pinned revision was compacted between pages: start over.
    Compacted,
}

/// Every key of `prefix` at one revision, page by page (pages pinned to the
/// first page's revision), each page bounded by `page_timeout`.
async fn list(
    members: &Members,
    prefix: &str,
    page_timeout: Duration,
) -> Result<(Vec<(String, Versioned)>, u64), CoordError> {
    let what = format!("listing etcd prefix {prefix:?}");
    let (start, end) = prefix_range(prefix);
    let mut page_keys = LIST_PAGE_KEYS_MAX;
    let mut attempts = 0;
    'attempt: loop {
        attempts += 1;
        let mut entries = Vec::new();
        let mut from = start.clone();
        let mut pinned: i64 = 0;
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(page_keys);
            if pinned > 0 {
                options = options.with_revision(pinned);
            }
            let page = members
                .run(&what, None, page_timeout, |client| {
                    let (from, options) = (from.clone(), options.clone());
                    async move {
                        match kv(&client).get(from, Some(options)).await {
                            Ok(page) => Ok(Page::Keys(page)),
                            Err(e) if is_response_too_large(&e) => Ok(Page::TooLarge),
                            Err(e) if is_compacted(&e) => Ok(Page::Compacted),
                            Err(e) => Err(e),
                        }
                    }
                })
                .await?;
            let mut page = match page {
                Page::Keys(page) => page,
                Page::TooLarge if page_keys > 1 => {
                    page_keys /= 2;
                    continue;
                }
                Page::TooLarge => {
                    return Err(CoordError::Rejected(format!(
                        "{what}: one key's response is over {KV_RESPONSE_BYTES_MAX} bytes"
                    )))
                }
                Page::Compacted if attempts < LIST_ATTEMPTS_MAX => continue 'attempt,
                Page::Compacted => {
                    return Err(CoordError::Unavailable(format!(
                        "{what}: etcd compacted the revision being listed {LIST_ATTEMPTS_MAX} times in a row"
                    )))
                }
            };
            if pinned == 0 {
                pinned = page.header().map_or(0, |h| h.revision());
            }
            let more = page.more();
            let kvs = page.take_kvs();
            if let Some(last) = kvs.last() {
                // The next page starts just after the last key.
                from = last.key().to_vec();
                from.push(0);
            }
            let empty = kvs.is_empty();
            entries.extend(kvs.into_iter().map(entry));
            if !more || empty {
                return Ok((entries, revision(pinned)));
            }
        }
    }
}

/// A compare that never holds: etcd's revisions are never negative.
fn never(key: &str) -> EtcdCompare {
    EtcdCompare::create_revision(key, CompareOp::Less, 0)
}

fn compare(c: &Compare) -> EtcdCompare {
    match c {
        // etcd compares a missing key as all-zero revisions.
        Compare::Version { key, version: 0 } | Compare::Absent { key } => {
            EtcdCompare::create_revision(key.as_str(), CompareOp::Equal, 0)
        }
        Compare::Version { key, version } => match i64::try_from(*version) {
            Ok(v) => EtcdCompare::mod_revision(key.as_str(), CompareOp::Equal, v),
            Err(_) => never(key),
        },
        // `create_revision == 0` would hold for a missing key; the trait's
        // Created means "exists", so revision 0 can never match.
        Compare::Created { key, revision: 0 } => never(key),
        Compare::Created { key, revision } => match i64::try_from(*revision) {
            Ok(r) => EtcdCompare::create_revision(key.as_str(), CompareOp::Equal, r),
            Err(_) => never(key),
        },
    }
}

fn txn_op(op: Op) -> TxnOp {
    match op {
        Op::Put { key, value, lease: 0 } => TxnOp::put(key, value, None),
        Op::Put { key, value, lease } => TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease))),
        Op::Delete { key } => TxnOp::delete(key, None),
        Op::DeletePrefix { prefix } => {
            let (key, end) = prefix_range(&prefix);
            TxnOp::delete(key, Some(DeleteOptions::new().with_range(end)))
        }
    }
}

fn sent(ops: &[Op]) -> Sent {
    let mut sent = Sent { ops: ops.len(), ..Sent::default() };
    for op in ops {
        match op {
            Op::Put { key, value, lease } => {
                sent.key_value_bytes += key.len() + value.len();
                if sent.lease == 0 {
                    sent.lease = *lease;
                }
            }
            Op::Delete { key } | Op::DeletePrefix { prefix: key } => sent.key_value_bytes += key.len(),
        }
    }
    sent
}

/// etcd refuses a txn that puts one key twice, or puts a key that one of its
/// deletes covers ("duplicate key given in txn request"). Refused here with a
/// clear message instead, before anything is sent.
fn check_no_duplicate_keys(ops: &[Op]) -> Result<(), CoordError> {
    let mut puts: Vec<&str> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Put { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    puts.sort_unstable();
    if let Some(w) = puts.windows(2).find(|w| w[0] == w[1]) {
        return Err(CoordError::InvalidArgument(format!("txn puts key {:?} twice (etcd refuses that)", w[0])));
    }
    for op in ops {
        let covered = |key: &str| match op {
            Op::Delete { key: deleted } => key == deleted,
            Op::DeletePrefix { prefix } => key.starts_with(prefix.as_str()),
            Op::Put { .. } => false,
        };
        if let Some(key) = puts.iter().find(|k| covered(k)) {
            return Err(CoordError::InvalidArgument(format!(
                "txn both puts and deletes key {key:?} (etcd refuses that)"
            )));
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl MetaStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, CoordError> {
        check_key(key)?;
        let key = key.to_string();
        self.call(format!("etcd get {key:?}"), None, move |client| {
            let key = key.clone();
            async move {
                let mut resp = kv(&client).get(key, None).await?;
                Ok(resp.take_kvs().into_iter().next().map(|kv| entry(kv).1))
            }
        })
        .await
    }

    async fn list_with_revision(&self, prefix: &str) -> Result<(Vec<(String, Versioned)>, u64), CoordError> {
        check_prefix(prefix)?;
        let (members, prefix) = (self.members.clone(), prefix.to_string());
        // Each page is bounded by the request timeout, not the whole list.
        let page_timeout = self.options.request_timeout;
        self.spawn(async move { list(&members, &prefix, page_timeout).await }).await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, CoordError> {
        check_key(key)?;
        check_value(&value)?;
        let key = key.to_string();
        let sent = Sent { key_value_bytes: key.len() + value.len(), ops: 1, lease: 0 };
        self.call(format!("etcd put {key:?}"), Some(sent), move |client| {
            let (key, value) = (key.clone(), value.clone());
            async move { Ok(header_revision(kv(&client).put(key, value, None).await?.header())) }
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool, CoordError> {
        check_key(key)?;
        let key = key.to_string();
        self.call(format!("etcd delete {key:?}"), None, move |client| {
            let key = key.clone();
            async move { Ok(kv(&client).delete(key, None).await?.deleted() > 0) }
        })
        .await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<usize, CoordError> {
        check_prefix(prefix)?;
        let (key, end) = prefix_range(prefix);
        self.call(format!("etcd delete prefix {prefix:?}"), None, move |client| {
            let (key, options) = (key.clone(), DeleteOptions::new().with_range(end.clone()));
            async move { Ok(usize::try_from(kv(&client).delete(key, Some(options)).await?.deleted()).unwrap_or(0)) }
        })
        .await
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResult, CoordError> {
        check_txn(&compares, &ops)?;
        check_no_duplicate_keys(&ops)?;
        let sent = sent(&ops);
        let what = format!("etcd txn of {} compares and {} ops", compares.len(), ops.len());
        let txn = Txn::new()
            .when(compares.iter().map(compare).collect::<Vec<_>>())
            .and_then(ops.into_iter().map(txn_op).collect::<Vec<_>>());
        self.call(what, Some(sent), move |client| {
            let txn = txn.clone();
            async move {
                let resp = kv(&client).txn(txn).await?;
                Ok(TxnResult { applied: resp.succeeded(), revision: header_revision(resp.header()) })
            }
        })
        .await
    }

    fn watch(&self, prefix: &str) -> WatchStream {
        let (sink, stream) = watch::channel(prefix);
        self.runtime.handle.spawn(watcher::run(self.members.clone(), sink, self.options));
        stream
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<Lease, CoordError> {
        // etcd counts TTLs in whole seconds: round up, at least 1.
        let ttl_s = i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).unwrap_or(i64::MAX).max(1);
        let what = format!("etcd lease grant of {ttl_s} s");
        let resp = self
            .call(what.clone(), None, move |client| async move { client.lease_client().grant(ttl_s, None).await })
            .await?;
        if !resp.error().is_empty() {
            return Err(CoordError::Rejected(format!("{what}: {}", resp.error())));
        }
        let lease = Lease { id: resp.id(), ttl: Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(0)) };
        self.remember_lease(lease.id, lease.ttl);
        Ok(lease)
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Option<Duration>, CoordError> {
        let granted = self.granted_ttl(id);
        let sent = Sent { lease: id, ..Sent::default() };
        let ttl = self
            .call(format!("etcd lease keep-alive of {id}"), Some(sent), move |client| async move {
                let mut leases = client.lease_client();
                // One request and its answer on a keep-alive stream, closed after.
                match leases.keep_alive(id).await {
                    Ok(_) => {}
                    // etcd answers TTL 0 for an expired or unknown lease.
                    Err(etcd_client::Error::LeaseKeepAliveError(e)) if e.contains("not found") => return Ok(None),
                    Err(e) => return Err(e),
                }
                if let Some(ttl) = granted {
                    return Ok(Some(ttl));
                }
                // A lease granted elsewhere: ask for its granted TTL.
                let resp = leases.time_to_live(id, None).await?;
                Ok((resp.ttl() > 0).then(|| Duration::from_secs(u64::try_from(resp.granted_ttl()).unwrap_or(0))))
            })
            .await?;
        if ttl.is_none() {
            self.forget_lease(id);
        }
        Ok(ttl)
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<(), CoordError> {
        let sent = Sent { lease: id, ..Sent::default() };
        self.call(format!("etcd lease revoke of {id}"), Some(sent), move |client| async move {
            match client.lease_client().revoke(id).await {
                Ok(_) => Ok(()),
                Err(e) if is_lease_not_found(&e) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await?;
        self.forget_lease(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_cover_exactly_the_prefix() {
        assert_eq!(prefix_range(""), (vec![0], vec![0]));
        assert_eq!(prefix_range("a/"), (b"a/".to_vec(), b"a0".to_vec()));
        let (start, end) = prefix_range("é");
        assert!(start.as_slice() < "é\u{10FFFF}".as_bytes() && "é\u{10FFFF}".as_bytes() < end.as_slice());
    }

    #[test]
    fn duplicate_keys_are_refused_before_sending() {
        assert!(check_no_duplicate_keys(&[Op::put("a", "1"), Op::put("b", "2"), Op::delete("c")]).is_ok());
        assert!(check_no_duplicate_keys(&[Op::put("a", "1"), Op::put("a", "2")]).is_err());
        assert!(check_no_duplicate_keys(&[Op::delete("a"), Op::put("a", "2")]).is_err());
        assert!(check_no_duplicate_keys(&[Op::put("x/1", "1"), Op::delete_prefix("x/")]).is_err());
        assert!(check_no_duplicate_keys(&[Op::delete_prefix("x/"), Op::put("y", "1"), Op::delete("x/1")]).is_ok());
    }

    #[test]
    fn compares_map_onto_etcd_revisions() {
        let c = |c: Compare| format!("{:?}", compare(&c));
        assert_eq!(c(Compare::absent("k")), c(Compare::version("k", 0)));
        assert!(c(Compare::version("k", 7)).contains("ModRevision(7)"), "{}", c(Compare::version("k", 7)));
        assert!(c(Compare::created("k", 7)).contains("CreateRevision(7)"), "{}", c(Compare::created("k", 7)));
        assert_eq!(c(Compare::created("k", 0)), format!("{:?}", never("k")));
        assert_eq!(c(Compare::version("k", u64::MAX)), format!("{:?}", never("k")));
    }
}
