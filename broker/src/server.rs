//! Starting and stopping the broker. The main thread is the control plane:
//! it opens the metadata store (embedded, or etcd with `--etcd`), registers
//! the broker, follows the cluster view, campaigns for and runs the
//! controller, and reconciles the view into the shards. One pinned shard
//! thread per core is the data plane, each its own tokio-uring runtime with a
//! SO_REUSEPORT listener (the kernel spreads connections). Shards accept
//! connections only once the first view is applied: a client never meets a
//! broker that has not opened its partitions yet. SIGTERM/SIGINT leave the
//! cluster (the lease is revoked, so leadership moves at once) and close every
//! log.

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use anyhow::Context as _;
use laminar_coord::cluster::{BrokerRecord, Keys, ListenerRecord};
use laminar_coord::{EmbeddedStore, MetaStore};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{mpsc, oneshot, watch};

use crate::budget::{Budget, RequestBudgets};
use crate::cluster::admin::Admin;
use crate::cluster::reconciler::Reconciler;
use crate::cluster::{controller, format, membership, metadata, Cluster, ClusterConfig};
use crate::conn_caps::{self, ConnectionCaps};
use crate::context::{BrokerConfig, Ctx};
use crate::group::state::GroupTiming;
use crate::group::{GroupManager, OffsetWriter};
use crate::log_limit;
use crate::router::Router;
use crate::security::{Listener, ListenerSpec, SecurityState};
use crate::shard::{self, Shard, ShardMsg};

/// Which metadata store backs the broker.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// The single node's own store, in `<data-dir>/meta`.
    Embedded,
    /// A cluster's etcd.
    Etcd { endpoints: Vec<String>, prefix: String },
}

pub struct ServerOptions {
    /// Listeners, SASL, TLS, ACLs (`security/`).
    pub security: crate::security::args::SecurityOptions,
    pub data_dir: PathBuf,
    pub shards: usize,
    /// Pin shard threads to cores (off when asked to, e.g. sharing a machine).
    pub pin: bool,
    pub retention_check_interval: Duration,
    /// `--max-partitions`: a cap on replicas below the open-file budget.
    pub max_partitions: Option<u32>,
    pub group_timing: GroupTiming,
    pub config: BrokerConfig,
    pub store: StoreChoice,
    pub cluster: ClusterConfig,
    pub replication: crate::replication::ReplicationConfig,
    /// Window of the log rate limiter (`log_limit.rs`).
    pub log_limit_interval: Duration,
    /// Where to serve Prometheus metrics (`metrics/`), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

/// File descriptors kept for everything but partition logs and client
/// connections (those are set aside as `max.connections`).
const FDS_RESERVED: u64 = 1024;
/// Descriptors one partition replica holds open, whatever its segment
/// count: its active segment twice (read side and io_uring write side) and
/// at most `SEALED_FILES_OPEN_MAX` (1) sealed segments' (the engine opens
/// sealed segments when they are read, through a per-log cache of that
/// bound). Files of fetches in flight come on top, bounded by the
/// connections' in-flight limits.
const FDS_PER_PARTITION: u64 = laminar_engine::log::FILES_OPEN_MAX;

/// Runs the broker until SIGTERM or SIGINT.
pub fn run(opts: ServerOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating data directory {}", opts.data_dir.display()))?;
    let _lock = lock_data_dir(&opts.data_dir)?;
    let fd_limit = raise_fd_limit();
    let mut config = opts.config.clone();
    let max_connections = conn_caps::fit_fd_limit(config.limits.max_connections, fd_limit, FDS_RESERVED);
    config.limits.max_connections = Some(max_connections);
    let partition_fds = fd_limit.saturating_sub(FDS_RESERVED + max_connections as u64);
    let mut partition_capacity = (partition_fds / FDS_PER_PARTITION).min(u32::MAX as u64) as u32;
    if let Some(n) = opts.max_partitions {
        partition_capacity = partition_capacity.min(n);
    }
    log_limit::set_interval(opts.log_limit_interval);

    crate::metrics::init(opts.shards);
    let metrics_listener = opts.metrics_listen.map(crate::metrics::bind).transpose()?;

    let control = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (store, keys): (Arc<dyn MetaStore>, Keys) = match &opts.store {
        StoreChoice::Embedded => (
            crate::metrics::store::timed(
                Arc::new(EmbeddedStore::open(&opts.data_dir.join("meta")).context("opening the metadata store")?),
                "embedded",
            ),
            Keys::new(""),
        ),
        StoreChoice::Etcd { endpoints, prefix } => {
            (crate::metrics::store::timed(crate::etcd::connect(endpoints)?, "etcd"), Keys::new(prefix))
        }
    };
    let prepared = control.block_on(format::prepare(&*store, &keys, &opts.data_dir, opts.config.node_id))?;

    // Followers fetch over the inter-broker listener, with TLS and SASL as it needs.
    let inter_broker_protocol = opts.security.listeners[opts.security.inter_broker].protocol;
    let configured = crate::security::inter_broker::configure(
        inter_broker_protocol,
        opts.security.tls.as_ref(),
        opts.security.inter_broker_sasl.clone(),
    );
    // A single node has no followers: only a cluster needs the client side.
    if matches!(opts.store, StoreChoice::Etcd { .. }) {
        configured?;
    }
    let tls = match &opts.security.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(crate::security::tls::server_config(files)?)),
        None => None,
    };
    let (mut per_shard, advertised, bound_addrs) = bind_all(&opts.security.listeners, tls.as_ref(), opts.shards)?;
    let bound = bound_addrs[0];
    config.cluster_id = prepared.cluster_id;
    let inter_broker = &advertised[opts.security.inter_broker];
    (config.advertised_host, config.advertised_port) = (inter_broker.host.clone(), inter_broker.port);
    let config = Arc::new(config);
    let cluster = Cluster::new(store.clone(), keys.clone(), opts.cluster.clone(), opts.shards);
    let record = BrokerRecord {
        node_id: config.node_id,
        host: config.advertised_host.clone(),
        port: config.advertised_port,
        rack: opts.cluster.rack.clone(),
        shards: opts.shards as u16,
        started_ms: laminar_engine::log::now_ms(),
        data_dir_id: prepared.data_dir_id,
        partition_capacity,
        build: env!("CARGO_PKG_VERSION").to_string(),
        shutting_down: false,
        listeners: advertised.clone(),
    };
    control.block_on(membership::register(&cluster, &record, Duration::from_secs(60)))?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (serving_tx, serving_rx) = watch::channel(false);
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..opts.shards).map(|_| mpsc::unbounded_channel()).unzip();
    let router = Router::new(senders);
    let admin = Arc::new(Admin {
        cluster: cluster.clone(),
        topic_defaults: config.topic_defaults.clone(),
        default_replication_factor: config.default_replication_factor,
    });
    let producer_ids = Arc::new(crate::producer_ids::ProducerIds::new(store.clone(), keys.producer_ids()));
    let budgets = config.limits.budgets;
    let broker_budget = Arc::new(Budget::new(budgets.broker_bytes));
    let security = Arc::new(SecurityState {
        sasl_mechanisms: opts.security.sasl_mechanisms.clone(),
        failures: Default::default(),
        fake_salts: Default::default(),
        authorizer: crate::security::authz::Authorizer::new(opts.security.authorizer, opts.security.policy.clone()),
    });
    let conn_caps = Arc::new(ConnectionCaps::new(max_connections, config.limits.max_connections_per_ip));
    if let Some(listener) = metrics_listener {
        crate::metrics::serve(listener, router.clone(), cluster.clone())?;
    }

    let cores = if opts.pin { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
    let (started_tx, started_rx) = std_mpsc::channel::<anyhow::Result<()>>();
    let mut threads = Vec::new();
    for (id, rx) in receivers.into_iter().enumerate() {
        let listeners = std::mem::take(&mut per_shard[id]);
        let core = if cores.is_empty() { None } else { Some(cores[id % cores.len()]) };
        let ctx = Ctx {
            router: router.clone(),
            cluster: cluster.clone(),
            admin: admin.clone(),
            config: config.clone(),
            producer_ids: producer_ids.clone(),
            budgets: RequestBudgets {
                shard: Arc::new(Budget::new(budgets.shard_bytes)),
                broker: broker_budget.clone(),
            },
            conn_caps: conn_caps.clone(),
            security: security.clone(),
        };
        let (data_dir, shard_cluster, retention) =
            (opts.data_dir.clone(), cluster.clone(), opts.retention_check_interval);
        let replication = opts.replication;
        let (started, timing, serving) = (started_tx.clone(), opts.group_timing, serving_rx.clone());
        let (store, keys) = (store.clone(), keys.clone());
        let t = std::thread::Builder::new().name(format!("shard-{id}")).spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            // Runtimes start one at a time, so each shard finds its own ring.
            let ring_start = crate::metrics::ring_start_lock();
            tokio_uring::start(async move {
                crate::metrics::enter_shard(id);
                crate::metrics::set_ring_fd(id, crate::metrics::claim_ring());
                drop(ring_start);
                // Rc state is made here, on the shard's own thread.
                let writer = OffsetWriter::new(store, keys);
                tokio_uring::spawn(writer.clone().run());
                let groups = Rc::new(RefCell::new(GroupManager::new(timing, writer)));
                let shard = Shard::new(id, data_dir, shard_cluster, replication, retention);
                run_shard(ctx, shard, groups, rx, listeners, started, serving).await
            });
        })?;
        threads.push(t);
    }
    drop(started_tx);
    for _ in 0..opts.shards {
        match started_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = shutdown_shards(&control, &router);
                return Err(e);
            }
            Err(_) => anyhow::bail!("a shard thread died while starting"),
        }
    }

    let reconciler =
        Reconciler::new(cluster.clone(), router.clone(), opts.data_dir.clone(), config.topic_defaults.clone());
    let (ready_tx, ready_rx) = oneshot::channel();
    let result = control.block_on(async {
        tokio::spawn(membership::maintain(cluster.clone(), record, shutdown_rx.clone()));
        tokio::spawn(metadata::follow(cluster.clone(), config.cluster_id.clone()));
        tokio::spawn(controller::run(cluster.clone(), shutdown_rx.clone()));
        tokio::spawn(reconciler.run(ready_tx, shutdown_rx.clone()));
        tokio::spawn(log_limit::run_summaries());
        tokio::spawn(crate::security::authz::follow(store.clone(), keys.clone(), security.clone()));
        let signal = wait_for_signal();
        tokio::pin!(signal);
        tokio::select! {
            r = ready_rx => r.context("the reconciler stopped before the broker was ready")?,
            r = &mut signal => {
                r?;
                return anyhow::Ok(false);
            }
        }
        let _ = serving_tx.send(true);
        // Tests and scripts read this line to learn the port.
        println!("listening on {bound}");
        // Then every listener by name (the first line stays the first
        // listener's). Readers may have closed stdout after the first line:
        // a failed write is no error.
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            for (l, addr) in opts.security.listeners.iter().zip(&bound_addrs) {
                let _ = writeln!(out, "listener {}://{addr}", l.name);
            }
            let _ = out.flush();
        }
        tracing::info!(%bound, shards = opts.shards, data_dir = %opts.data_dir.display(),
            node_id = config.node_id, incarnation = cluster.incarnation(), "laminar is serving");
        signal.await?;
        anyhow::Ok(true)
    });
    if matches!(result, Ok(true)) && !opts.cluster.controlled_shutdown.is_zero() {
        control.block_on(membership::hand_over(&cluster, opts.cluster.controlled_shutdown));
    }
    tracing::info!("shutting down: leaving the cluster and flushing logs");
    let _ = shutdown_tx.send(true);
    control.block_on(membership::leave(&cluster));
    let mut report = shutdown_shards(&control, &router);
    let panicked = threads.into_iter().map(|t| t.join()).filter(Result::is_err).count();
    // A shard that died before shutdown is counted there already.
    report.shards_failed = report.shards_failed.max(panicked);
    // Nothing may follow the verdict: it is the last line.
    log_limit::flush_summaries(true);
    match (result, report.verdict()) {
        (Ok(_), Ok(())) => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
        (Ok(_), Err(verdict)) => Err(anyhow::Error::msg(verdict)),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(verdict)) => Err(e.context(verdict)),
    }
}

/// What went wrong while stopping; the process's last line and exit status
/// say it.
#[derive(Debug, Default, PartialEq, Eq)]
struct ShutdownReport {
    /// Partition logs whose close (flush, fsync, index write) failed.
    logs_failed: usize,
    /// Shards that stopped without reporting (their thread died).
    shards_failed: usize,
}

impl ShutdownReport {
    /// `Err` with the line to end on when anything failed.
    fn verdict(&self) -> Result<(), String> {
        let mut failed = Vec::new();
        if self.logs_failed > 0 {
            failed.push(format!("{} logs failed to close", self.logs_failed));
        }
        if self.shards_failed > 0 {
            failed.push(format!("{} shards did not stop cleanly", self.shards_failed));
        }
        if failed.is_empty() {
            return Ok(());
        }
        Err(format!("stopped with errors: {}", failed.join(", ")))
    }
}

/// Asks every shard to close its logs (flush + fsync), and waits for them.
fn shutdown_shards(rt: &tokio::runtime::Runtime, router: &Router) -> ShutdownReport {
    rt.block_on(async {
        let mut report = ShutdownReport::default();
        let mut waits = Vec::new();
        for shard in 0..router.shards() {
            let (tx, rx) = oneshot::channel();
            match router.send(shard, ShardMsg::Shutdown { reply: tx }) {
                Ok(()) => waits.push(rx),
                Err(_) => report.shards_failed += 1,
            }
        }
        for w in waits {
            match w.await {
                Ok(logs_failed) => report.logs_failed += logs_failed,
                Err(_) => report.shards_failed += 1,
            }
        }
        report
    })
}

async fn run_shard(
    ctx: Ctx,
    shard: Shard,
    groups: crate::group::manager::SharedGroups,
    rx: mpsc::UnboundedReceiver<ShardMsg>,
    listeners: Vec<(Arc<Listener>, TcpListener)>,
    started: std_mpsc::Sender<anyhow::Result<()>>,
    serving: watch::Receiver<bool>,
) {
    let shard = Rc::new(RefCell::new(shard));
    let mut accepting = Vec::with_capacity(listeners.len());
    for (listener, socket) in listeners {
        match socket.set_nonblocking(true).and_then(|()| tokio::net::TcpListener::from_std(socket)) {
            Ok(l) => accepting.push((listener, l)),
            Err(e) => {
                let _ = started.send(Err(e.into()));
                return;
            }
        }
    }
    let ctx = Rc::new(ctx);
    tokio_uring::spawn(shard::run_upkeep(shard.clone()));
    tokio_uring::spawn(crate::group::manager::run_ticker(groups.clone()));
    for (listener, socket) in accepting {
        tokio_uring::spawn(accept_loop(socket, listener, ctx.clone(), serving.clone()));
    }
    let _ = started.send(Ok(()));
    // The shard lives as long as its mailbox loop; returning ends the runtime
    // and with it every connection task of this shard.
    shard::run_mailbox(shard, groups, rx).await;
}

async fn accept_loop(
    socket: tokio::net::TcpListener,
    listener: Arc<Listener>,
    ctx: Rc<Ctx>,
    mut serving: watch::Receiver<bool>,
) {
    // Connections wait in the listen backlog until the broker is ready.
    if serving.wait_for(|s| *s).await.is_err() {
        return;
    }
    loop {
        match socket.accept().await {
            Ok((stream, peer)) => crate::connection::accept(stream, peer, &listener, &ctx),
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                if log_limit::admit(log_limit::Cause::AcceptFailed) {
                    tracing::warn!("accept failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Binds every listener on every shard. Returns, per shard, its sockets of
/// each listener, and what each listener advertises (its configured address,
/// or where it bound: port 0 resolved), and where each bound.
type Bound = (Vec<Vec<(Arc<Listener>, TcpListener)>>, Vec<ListenerRecord>, Vec<SocketAddr>);
fn bind_all(specs: &[ListenerSpec], tls: Option<&tokio_rustls::TlsAcceptor>, shards: usize) -> anyhow::Result<Bound> {
    let mut per_shard: Vec<Vec<(Arc<Listener>, TcpListener)>> = (0..shards).map(|_| Vec::new()).collect();
    let mut advertised = Vec::with_capacity(specs.len());
    let mut bound_addrs = Vec::with_capacity(specs.len());
    for spec in specs {
        let sockets = bind_listeners(spec.bind, shards)?;
        let bound = sockets[0].local_addr()?;
        bound_addrs.push(bound);
        let (host, port) = spec.advertised.clone().unwrap_or_else(|| (bound.ip().to_string(), bound.port()));
        advertised.push(ListenerRecord {
            name: spec.name.clone(),
            host,
            port,
            security_protocol: spec.protocol.name().to_string(),
        });
        let tls = if spec.protocol.tls() { tls.cloned() } else { None };
        let listener = Arc::new(Listener { name: spec.name.clone(), protocol: spec.protocol, tls });
        for (shard, socket) in per_shard.iter_mut().zip(sockets) {
            shard.push((listener.clone(), socket));
        }
    }
    Ok((per_shard, advertised, bound_addrs))
}

/// One listener per shard on the same address (SO_REUSEPORT). The first binds
/// (port 0 picks a free port); the rest reuse its port.
fn bind_listeners(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<TcpListener>> {
    let mut out: Vec<TcpListener> = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        sock.set_reuse_address(true)?;
        sock.set_reuse_port(true)?;
        sock.bind(&addr.into()).with_context(|| format!("binding {addr}"))?;
        sock.listen(1024)?;
        let l: TcpListener = sock.into();
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// One broker per data directory: a second one would corrupt the logs.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join(".lock");
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!("data directory {} is in use by another laminar process", dir.display());
    }
    Ok(f)
}

/// Raises RLIMIT_NOFILE as far as allowed: to the system's ceiling
/// (`/proc/sys/fs/nr_open`) when privileged, else to the hard limit. Returns
/// the limit in force, which sizes the partition budget.
fn raise_fd_limit() -> u64 {
    let ceiling: u64 =
        std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1 << 20);
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on our own process.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        let want = libc::rlimit { rlim_cur: ceiling, rlim_max: ceiling.max(lim.rlim_max) };
        if want.rlim_cur > lim.rlim_cur && libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
            return want.rlim_cur;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ShutdownReport;

    #[test]
    fn the_last_line_says_what_failed() {
        assert_eq!(ShutdownReport::default().verdict(), Ok(()));
        let r = ShutdownReport { logs_failed: 3, shards_failed: 0 };
        assert_eq!(r.verdict(), Err("stopped with errors: 3 logs failed to close".into()));
        let r = ShutdownReport { logs_failed: 1, shards_failed: 1 };
        assert_eq!(
            r.verdict(),
            Err("stopped with errors: 1 logs failed to close, 1 shards did not stop cleanly".into())
        );
    }
}
