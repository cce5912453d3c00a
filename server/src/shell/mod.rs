//! The glommio shell: one executor per shard core plus the Zab core executor, bounded channels
//! between them, client listeners on every shard. It only moves bytes and calls the pure code.

pub(crate) mod admin;
pub(crate) mod core;
pub(crate) mod ensemble;
pub(crate) mod link;
pub mod messages;
pub(crate) mod peers;
pub(crate) mod shard;
pub(crate) mod snapshots;
pub mod stats;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::{LocalExecutorBuilder, Placement};
use zinc_protocol::txn::TxnEntry;
use zinc_storage::tree::Tree;
use zinc_storage::wal::{DmaDevice, Wal, WalConfig};

use crate::config::Config;
use crate::exec::Preparer;
use messages::{ToCore, ToShard};
use stats::ServerStats;

/// Capacity of each shard-to-core and core-to-shard channel, in messages.
const CHANNEL_CAPACITY: usize = 1024;

/// Memory glommio registers for I/O per executor; small so executors start under the default
/// memlock limit.
const IO_MEMORY_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Wal(#[from] zinc_storage::wal::WalError),
    #[error("recovery failed: {0}")]
    Recovery(String),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// Loading the snapshot failed (the message names the files).
    #[error("{0}")]
    Snapshot(String),
    #[error("cannot start executor {name}: {message}")]
    Executor { name: String, message: String },
}

/// A listener on the client address for one shard. Each shard listens on the same port
/// (SO_REUSEPORT: the kernel spreads connections); SO_REUSEADDR lets a restarted server listen
/// while connections of the previous one are still in TIME_WAIT, as ZooKeeper can.
fn listen(address: SocketAddr) -> std::io::Result<glommio::net::TcpListener> {
    use std::os::fd::IntoRawFd;
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    // SAFETY: the descriptor is a bound, listening TCP socket that nothing else owns.
    Ok(unsafe {
        <glommio::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(socket.into_raw_fd())
    })
}

/// Connections waiting to be accepted, per shard.
const LISTEN_BACKLOG: i32 = 1024;

/// Checks the client address is free (glommio's listeners use SO_REUSEPORT, which would let a
/// second server share the port silently) and resolves port 0 to a real port. A server killed
/// just before may still hold its listener for a moment (its I/O ring is torn down after the
/// process), so a busy address is retried for a while before it is reported.
fn reserve_address(address: SocketAddr) -> Result<SocketAddr, ShellError> {
    let deadline = std::time::Instant::now() + LISTEN_RETRY;
    loop {
        match std::net::TcpListener::bind(address).and_then(|probe| probe.local_addr()) {
            Ok(bound) => return Ok(bound),
            Err(source)
                if source.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(source) => return Err(ShellError::Listen { address, source }),
        }
    }
}

/// How long a busy client address is retried at start.
const LISTEN_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

fn placement(config: &Config, core_index: usize) -> Placement {
    if !config.pin_cores {
        return Placement::Unbound;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Placement::Fixed(core_index % cpus)
}

/// The tree a start begins from, being loaded on its own thread.
pub struct LoadingSnapshot {
    /// The zxid the newest snapshot's file name announces: the log is read after it while the
    /// snapshot loads (and read again from the right place if an older one had to be used).
    pub expected_zxid: zinc_protocol::Zxid,
    pub thread: std::thread::JoinHandle<Result<Tree, String>>,
}

impl LoadingSnapshot {
    /// Waits for the tree (blocking: at start the executor has nothing else to do).
    fn join(self) -> Result<Tree, ShellError> {
        match self.thread.join() {
            Ok(loaded) => loaded.map_err(ShellError::Snapshot),
            Err(_) => Err(ShellError::Snapshot(
                "the snapshot loader stopped unexpectedly".into(),
            )),
        }
    }
}

/// Opens the log while the snapshot loads; returns the snapshot's tree, the log, and the log's
/// records after the tree's zxid.
async fn open_wal_and_snapshot(
    config: &Config,
    loading: LoadingSnapshot,
) -> Result<(Tree, Wal<DmaDevice>, Vec<zinc_storage::wal::WalRecord>), ShellError> {
    let expected = loading.expected_zxid;
    let (wal, mut records) = open_wal(config, expected).await?;
    let root = loading.join()?;
    if root.last_zxid() != expected {
        // The newest snapshot failed its checks and an older one was loaded.
        records = wal.read_after(root.last_zxid()).await?;
    }
    Ok((root, wal, records))
}

/// Opens the log on the core's executor and returns it with the records after `after`.
pub(crate) async fn open_wal(
    config: &Config,
    after: zinc_protocol::Zxid,
) -> Result<(Wal<DmaDevice>, Vec<zinc_storage::wal::WalRecord>), ShellError> {
    let dir = config.data_log_dir.join("wal");
    let device = DmaDevice::open(&dir).await?;
    let wal_config = WalConfig {
        segment_bytes: config.wal_segment_bytes,
        commit_interval: std::time::Duration::from_micros(config.commit_interval_us.into()),
        commit_records: config.commit_records,
        ..WalConfig::default()
    };
    let (wal, recovered) = Wal::open(device, wal_config, after).await?;
    if let Some((file, offset)) = &recovered.torn_tail {
        crate::log_line!("zinc: {file}: torn last write cut off at byte {offset}");
    }
    Ok((wal, recovered.records))
}

/// Opens the log and replays it over the snapshot's tree (or an empty tree); returns the tree,
/// the log and how many txns were replayed.
async fn recover(
    config: &Config,
    loading: LoadingSnapshot,
) -> Result<(Tree, Wal<DmaDevice>, usize), ShellError> {
    let dir = config.data_log_dir.join("wal");
    let started = std::time::Instant::now();
    let (mut root, wal, records) = open_wal_and_snapshot(config, loading).await?;
    let read_ms = started.elapsed().as_millis();
    let count = records.len();
    for record in records {
        let entry = TxnEntry::decode_shared(record.payload).map_err(|error| {
            ShellError::Recovery(format!(
                "{}: record for zxid {} does not decode: {error}",
                dir.display(),
                record.zxid
            ))
        })?;
        let _ = root.apply(&entry.header, &entry.txn);
    }
    if count > 0 {
        crate::log_line!(
            "zinc: replayed {count} txns from {} (read, with the snapshot loading meanwhile: \
             {read_ms} ms; applied {} ms)",
            dir.display(),
            started.elapsed().as_millis() - read_ms
        );
    }
    Ok((root, wal, count))
}

/// What the core executor of an ensemble member starts with.
struct EnsembleParts {
    config: Arc<Config>,
    stats: Arc<ServerStats>,
    shared: Arc<shard::CrossShard>,
    peers: Vec<crate::config::PeerSpec>,
    colocated: Option<ShardStart>,
    to_shard_senders: Vec<SharedSender<ToShard>>,
    to_core_receivers: Vec<SharedReceiver<ToCore>>,
}

/// The core executor of an ensemble member: opens the log without applying it (the Zab core
/// decides what of it is committed), listens for peers, and runs the ensemble loop.
async fn run_ensemble_core(
    parts: EnsembleParts,
    loading: LoadingSnapshot,
    recovered: std::sync::mpsc::Sender<Result<Tree, ShellError>>,
) {
    use zinc_protocol::ServerId;
    let config = parts.config;
    let opened = open_wal_and_snapshot(&config, loading)
        .await
        .and_then(|(root, wal, records)| {
            let persisted = ensemble::persisted(&config, root.last_zxid(), records)
                .map_err(ShellError::Recovery)?;
            Ok((root, wal, persisted))
        });
    let (root, wal, persisted) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            let _ = recovered.send(Err(error));
            return;
        }
    };
    let me = ServerId(config.server_id);
    let own = parts.peers.iter().find(|peer| peer.id == config.server_id);
    let Some(address) = own.map(|peer| peer.quorum_address) else {
        let _ = recovered.send(Err(ShellError::Recovery(
            "myid is not in the ensemble".into(),
        )));
        return;
    };
    let listener = match glommio::net::TcpListener::bind(address) {
        Ok(listener) => listener,
        Err(error) => {
            let source = std::io::Error::other(error.to_string());
            let _ = recovered.send(Err(ShellError::Listen { address, source }));
            return;
        }
    };
    let mut addresses = ensemble::peer_addresses(&parts.peers);
    addresses.remove(&me);
    let zab = crate::zab::Zab::new(ensemble::zab_config(&config, &parts.peers), persisted);
    crate::log_line!(
        "zinc: server {} of an ensemble of {}, listening for peers on {address}",
        me.0,
        parts.peers.len()
    );
    let _ = recovered.send(Ok(root.clone()));
    let (senders, from_shards) = connect_shards(
        parts.colocated,
        &root,
        parts.to_shard_senders,
        parts.to_core_receivers,
    )
    .await;
    let wal = std::rc::Rc::new(wal);
    glommio::spawn_local(core::wal_loop(wal.clone(), parts.shared.clone())).detach();
    let (publish, pending) = core::publish_queue_unbounded();
    glommio::spawn_local(core::publish_loop(wal.clone(), senders, pending)).detach();
    let (snapshots, roots) = snapshots::Snapshots::new(&config);
    glommio::spawn_local(snapshots::snapshot_loop(wal.clone(), config.clone(), roots)).detach();
    let (peers, peer_events) = peers::Peers::start(me, addresses, listener);
    let start = ensemble::EnsembleStart {
        config,
        stats: parts.stats,
        shared: parts.shared,
        zab,
        peers,
        peer_events,
        wal,
        snapshots,
        publish,
        root,
        from_shards,
    };
    ensemble::run(start).await;
}

/// Connects the core's ends of the channels to the shards and starts the shard that runs on
/// the core's executor, if one does, on local channels. Returns the senders to the shards in
/// shard order and the core's inbox, which merges what every shard sends.
async fn connect_shards(
    colocated: Option<ShardStart>,
    root: &Tree,
    to_shard_senders: Vec<SharedSender<ToShard>>,
    to_core_receivers: Vec<SharedReceiver<ToCore>>,
) -> (Vec<link::Sender<ToShard>>, LocalReceiver<ToCore>) {
    let mut senders = Vec::new();
    let mut local = None;
    if colocated.is_some() {
        let (to_shard, from_core) = local_channel::new_bounded(CHANNEL_CAPACITY);
        senders.push(link::Sender::Local(Rc::new(to_shard)));
        local = Some(from_core);
    }
    for sender in to_shard_senders {
        senders.push(link::Sender::Shared(sender.connect().await));
    }
    let mut receivers = Vec::new();
    for receiver in to_core_receivers {
        receivers.push(receiver.connect().await);
    }
    let (inbox_sender, inbox) = core::merge_inbox(receivers);
    if let (Some(shard), Some(from_core)) = (colocated, local) {
        let links = ShardLinks::Local {
            to_core: inbox_sender,
            from_core,
        };
        glommio::spawn_local(serve_shard(shard, root.clone(), links)).detach();
    }
    (senders, inbox)
}

/// What one shard needs to start serving.
struct ShardStart {
    index: usize,
    address: SocketAddr,
    config: Arc<Config>,
    stats: Arc<ServerStats>,
    shared: Arc<shard::CrossShard>,
    view_receiver: async_channel::Receiver<shard::ViewRequest>,
    /// Told whether the shard listens.
    bound: std::sync::mpsc::Sender<Result<(), ShellError>>,
}

/// A shard's ends of its shared channels with the core (they cross to its executor).
struct SharedLinks {
    to_core: SharedSender<ToCore>,
    from_core: SharedReceiver<ToShard>,
}

/// A shard's channels with the core, as it starts.
enum ShardLinks {
    Shared(SharedLinks),
    Local {
        to_core: Rc<LocalSender<ToCore>>,
        from_core: LocalReceiver<ToShard>,
    },
}

/// Listens and runs one shard, starting from `root`, until the process ends.
async fn serve_shard(start: ShardStart, root: Tree, links: ShardLinks) {
    let address = start.address;
    let listener = match listen(address) {
        Ok(listener) => listener,
        Err(source) => {
            let _ = start
                .bound
                .send(Err(ShellError::Listen { address, source }));
            return;
        }
    };
    let _ = start.bound.send(Ok(()));
    let (to_core, from_core) = match links {
        ShardLinks::Shared(SharedLinks { to_core, from_core }) => {
            // Same order as the core: its senders to the shards first, then its receivers.
            let from_core = from_core.connect().await;
            let to_core = to_core.connect().await;
            (
                link::Sender::Shared(to_core),
                link::Receiver::Shared(from_core),
            )
        }
        ShardLinks::Local { to_core, from_core } => (
            link::Sender::Local(to_core),
            link::Receiver::Local(from_core),
        ),
    };
    let shard = shard::Shard::new(
        start.index as u16,
        start.config,
        start.stats,
        root,
        start.shared,
        to_core,
    );
    shard::run(shard, listener, from_core, start.view_receiver).await;
}

/// Runs the server until the process is stopped. Returns only on a startup error.
pub fn run(config: Config, loading: LoadingSnapshot) -> Result<(), ShellError> {
    let address = reserve_address(config.client_address)?;
    let config = Arc::new(Config {
        client_address: address,
        ..config
    });
    let stats = Arc::new(ServerStats::default());
    let (view_requests, view_receivers): (Vec<_>, Vec<_>) = (0..config.shard_count)
        .map(|_| async_channel::bounded(shard::VIEW_REQUESTS_QUEUED_MAX))
        .unzip();
    let shared = Arc::new(shard::CrossShard {
        acknowledged_zxid: std::sync::atomic::AtomicI64::new(0),
        log_blocked: std::sync::atomic::AtomicBool::new(false),
        serving: std::sync::atomic::AtomicBool::new(!config.is_ensemble()),
        view_requests,
    });
    let (bound_sender, bound_receiver) = std::sync::mpsc::channel::<Result<(), ShellError>>();
    let mut to_core_receivers = Vec::new();
    let mut to_shard_senders = Vec::new();
    let mut shard_starts = Vec::new();
    let mut shard_channels = Vec::new();
    for (index, view_receiver) in view_receivers.into_iter().enumerate() {
        // The first shard runs on the core's executor when configured so (below), on local
        // channels the core makes; the others get shared channels.
        if index > 0 || !config.core_with_shard {
            let (to_core, from_shard) = shared_channel::new_bounded::<ToCore>(CHANNEL_CAPACITY);
            let (to_shard, from_core) = shared_channel::new_bounded::<ToShard>(CHANNEL_CAPACITY);
            to_core_receivers.push(from_shard);
            to_shard_senders.push(to_shard);
            shard_channels.push(SharedLinks { to_core, from_core });
        }
        shard_starts.push(ShardStart {
            index,
            address,
            config: config.clone(),
            stats: stats.clone(),
            shared: shared.clone(),
            view_receiver,
            bound: bound_sender.clone(),
        });
    }
    // On a small machine the first shard runs on the core's executor: a batch then crosses no
    // thread between the shard and the core (hand-offs cost more than the work there).
    let colocated = config.core_with_shard.then(|| shard_starts.remove(0));
    let (recovered_sender, recovered_receiver) = std::sync::mpsc::channel();
    let mut handles = Vec::new();
    {
        let config = config.clone();
        let stats = stats.clone();
        let shared = shared.clone();
        let ensemble_peers = match config.is_ensemble() {
            true => Some(config.peers()?),
            false => None,
        };
        let handle = LocalExecutorBuilder::new(placement(&config, 0))
            .name("zinc-core")
            .io_memory(IO_MEMORY_BYTES)
            .spawn(move || async move {
                if let Some(peers) = ensemble_peers {
                    let start = EnsembleParts {
                        config,
                        stats,
                        shared,
                        peers,
                        colocated,
                        to_shard_senders,
                        to_core_receivers,
                    };
                    run_ensemble_core(start, loading, recovered_sender).await;
                    return;
                }
                let (root, wal, replayed) = match recover(&config, loading).await {
                    Ok(recovered) => recovered,
                    Err(error) => {
                        let _ = recovered_sender.send(Err(error));
                        return;
                    }
                };
                let _ = recovered_sender.send(Ok(root.clone()));
                let (senders, inbox) =
                    connect_shards(colocated, &root, to_shard_senders, to_core_receivers).await;
                let wal = std::rc::Rc::new(wal);
                glommio::spawn_local(core::wal_loop(wal.clone(), shared)).detach();
                let (publish, pending) = core::publish_queue();
                glommio::spawn_local(core::publish_loop(wal.clone(), senders, pending)).detach();
                let (mut snapshots, roots) = snapshots::Snapshots::new(&config);
                if replayed > 0 {
                    // As ZooKeeper does at start: the next restart need not replay it all again.
                    snapshots.request();
                }
                let snapshot_loop = snapshots::snapshot_loop(wal.clone(), config.clone(), roots);
                glommio::spawn_local(snapshot_loop).detach();
                let preparer = Preparer::new(root, config.extended_types_enabled);
                let sink = core::Sink::Wal(wal);
                let core = core::Core::new(
                    config,
                    stats,
                    preparer,
                    sink,
                    Some(publish),
                    Some(snapshots),
                );
                core::run(core, inbox).await;
            })
            .map_err(|e| ShellError::Executor {
                name: "zinc-core".into(),
                message: e.to_string(),
            })?;
        handles.push(handle);
    }
    let root = match recovered_receiver.recv() {
        Ok(Ok(root)) => root,
        Ok(Err(error)) => return Err(error),
        Err(_) => {
            return Err(ShellError::Executor {
                name: "zinc-core".into(),
                message: "the core stopped during recovery".into(),
            })
        }
    };
    for (shard, links) in shard_starts.into_iter().zip(shard_channels) {
        let name = format!("zinc-shard-{}", shard.index);
        let root = root.clone();
        let handle = LocalExecutorBuilder::new(placement(&config, shard.index + 1))
            .name(&name)
            .io_memory(IO_MEMORY_BYTES)
            .spawn(move || serve_shard(shard, root, ShardLinks::Shared(links)))
            .map_err(|e| ShellError::Executor {
                name: name.clone(),
                message: e.to_string(),
            })?;
        handles.push(handle);
    }
    for _ in 0..config.shard_count {
        match bound_receiver.recv() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                return Err(ShellError::Executor {
                    name: "zinc-shard".into(),
                    message: "a shard stopped before listening".into(),
                })
            }
        }
    }
    crate::log_line!("zinc: serving clients on {address}");
    for handle in handles {
        let _ = handle.join();
    }
    Ok(())
}
