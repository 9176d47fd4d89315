//! Starting and stopping the broker: the metadata store, one pinned shard
//! thread per core (each its own tokio-uring runtime with a SO_REUSEPORT
//! listener, so the kernel spreads connections), and a clean shutdown that
//! flushes every log on SIGTERM/SIGINT.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use laminar_coord::{EmbeddedStore, MetaStore};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{mpsc, oneshot};

use crate::catalog::Catalog;
use crate::context::{BrokerConfig, Ctx};
use crate::controller::Controller;
use crate::group::offsets::GroupOffsets;
use crate::group::state::GroupTiming;
use crate::group::{GroupManager, OffsetWriter};
use crate::router::Router;
use crate::shard::{self, Shard, ShardMsg};

pub struct ServerOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub shards: usize,
    /// Pin shard threads to cores (off when asked to, e.g. sharing a machine).
    pub pin: bool,
    pub retention_check_interval: Duration,
    pub group_timing: GroupTiming,
    pub config: BrokerConfig,
}

const CLUSTER_ID_KEY: &str = "/cluster/id";

/// Runs the broker until SIGTERM or SIGINT. `on_listening` gets the bound
/// address once every shard is accepting.
pub fn run(opts: ServerOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating data directory {}", opts.data_dir.display()))?;
    let _lock = lock_data_dir(&opts.data_dir)?;
    raise_fd_limit();

    let setup = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store: Arc<dyn MetaStore> =
        Arc::new(EmbeddedStore::open(&opts.data_dir.join("meta")).context("opening the metadata store")?);
    let mut config = opts.config.clone();
    let defaults = config.topic_defaults.clone();
    let (catalog, cluster_id, committed) = setup.block_on(async {
        let catalog = Controller::load_catalog(&store, &defaults).await?;
        let id = cluster_id(&store).await?;
        let committed = crate::group::offsets::load_all(&store).await?;
        anyhow::Ok((catalog, id, committed))
    })?;
    // Each shard gets the committed offsets of the groups it coordinates.
    let mut committed_by_shard: Vec<HashMap<String, GroupOffsets>> = (0..opts.shards).map(|_| HashMap::new()).collect();
    for (group, offsets) in committed {
        committed_by_shard[crate::group::owner_shard(&group, opts.shards)].insert(group, offsets);
    }
    config.cluster_id = cluster_id;

    let listeners = bind_listeners(opts.listen, opts.shards)?;
    let bound = listeners[0].local_addr()?;
    if config.advertised_port == 0 {
        config.advertised_port = bound.port();
    }
    let config = Arc::new(config);

    let (senders, receivers): (Vec<_>, Vec<_>) = (0..opts.shards).map(|_| mpsc::unbounded_channel()).unzip();
    let router = Router::new(senders);
    let catalog = Arc::new(ArcSwap::from_pointee(catalog));
    let controller = Arc::new(Controller::new(store.clone(), catalog.clone(), router.clone(), defaults));
    let producer_ids = Arc::new(crate::producer_ids::ProducerIds::new(store.clone()));

    let cores = if opts.pin { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
    let (ready_tx, ready_rx) = std_mpsc::channel::<anyhow::Result<()>>();
    let mut threads = Vec::new();
    let shard_inputs = receivers.into_iter().zip(listeners).zip(committed_by_shard);
    for (id, ((rx, listener), committed)) in shard_inputs.enumerate() {
        let core = if cores.is_empty() { None } else { Some(cores[id % cores.len()]) };
        let ctx = Ctx {
            shard_id: id,
            router: router.clone(),
            catalog: catalog.clone(),
            controller: controller.clone(),
            config: config.clone(),
            producer_ids: producer_ids.clone(),
        };
        let data_dir = opts.data_dir.clone();
        let retention = opts.retention_check_interval;
        let ready = ready_tx.clone();
        let shards = opts.shards;
        let (store, timing) = (store.clone(), opts.group_timing);
        let t = std::thread::Builder::new().name(format!("shard-{id}")).spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            tokio_uring::start(async move {
                // Rc state is made here, on the shard's own thread.
                let writer = OffsetWriter::new(store);
                tokio_uring::spawn(writer.clone().run());
                let groups = Rc::new(RefCell::new(GroupManager::new(timing, writer, committed)));
                let shard = Shard::new(id, shards, data_dir, retention);
                run_shard(ctx, shard, groups, rx, listener, ready).await
            });
        })?;
        threads.push(t);
    }
    drop(ready_tx);
    for _ in 0..opts.shards {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                shutdown(&setup, &router);
                return Err(e);
            }
            Err(_) => anyhow::bail!("a shard thread died while starting"),
        }
    }
    // Tests and scripts read this line to learn the port.
    println!("listening on {bound}");
    tracing::info!(%bound, shards = opts.shards, data_dir = %opts.data_dir.display(), "laminar is serving");

    setup.block_on(wait_for_signal())?;
    tracing::info!("shutting down: flushing logs");
    shutdown(&setup, &router);
    for t in threads {
        let _ = t.join();
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Asks every shard to close its logs (flush + fsync), and waits for them.
fn shutdown(rt: &tokio::runtime::Runtime, router: &Router) {
    rt.block_on(async {
        let mut waits = Vec::new();
        for shard in 0..router.shards() {
            let (tx, rx) = oneshot::channel();
            if router.send(shard, ShardMsg::Shutdown { reply: tx }).is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.await;
        }
    });
}

async fn run_shard(
    ctx: Ctx,
    shard: Shard,
    groups: crate::group::manager::SharedGroups,
    rx: mpsc::UnboundedReceiver<ShardMsg>,
    listener: TcpListener,
    ready: std_mpsc::Sender<anyhow::Result<()>>,
) {
    let shard = Rc::new(RefCell::new(shard));
    // Open this shard's partitions (recovery runs here, per partition).
    let opened = {
        let catalog = ctx.catalog.load();
        let mut s = shard.borrow_mut();
        catalog
            .topics
            .values()
            .try_for_each(|meta| s.open_partitions(meta, 0..meta.record.partitions))
            .map_err(|e| anyhow::anyhow!("opening partitions on shard {}: {}", ctx.shard_id, e.message))
    };
    let listener = match opened.and_then(|()| {
        listener.set_nonblocking(true)?;
        Ok(tokio::net::TcpListener::from_std(listener)?)
    }) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let ctx = Rc::new(ctx);
    tokio_uring::spawn(shard::run_upkeep(shard.clone()));
    tokio_uring::spawn(crate::group::manager::run_ticker(groups.clone()));
    tokio_uring::spawn(accept_loop(listener, ctx.clone()));
    let _ = ready.send(Ok(()));
    // The shard lives as long as its mailbox loop; returning ends the runtime
    // and with it every connection task of this shard.
    shard::run_mailbox(shard, groups, rx).await;
}

async fn accept_loop(listener: tokio::net::TcpListener, ctx: Rc<Ctx>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio_uring::spawn(crate::connection::serve(stream, ctx.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
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

/// Many client connections each need a descriptor; take the hard limit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on our own process.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The cluster id is made once and kept in the metadata store.
async fn cluster_id(store: &Arc<dyn MetaStore>) -> anyhow::Result<String> {
    if let Some(v) = store.get(CLUSTER_ID_KEY).await? {
        return Ok(String::from_utf8(v.value)?);
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    store.put(CLUSTER_ID_KEY, id.clone().into_bytes()).await?;
    Ok(id)
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

/// Parses `key=value` pairs given as broker-level topic defaults.
pub fn parse_topic_defaults(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let (k, v) = p.split_once('=').with_context(|| format!("'{p}' is not key=value"))?;
        let k = k.trim().trim_start_matches("log.").to_string();
        anyhow::ensure!(crate::topic_config::is_supported(&k), "'{k}' is not a topic config Laminar honours");
        out.insert(k, v.trim().to_string());
    }
    crate::topic_config::log_config(&BTreeMap::new(), &out).map_err(|e| anyhow::anyhow!("topic defaults: {e}"))?;
    Ok(out)
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Controller>();
    is::<Catalog>();
}
