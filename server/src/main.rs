//! `zinc`: the Zinc server. With no arguments it serves 127.0.0.1:2181 with data in
//! `./zinc-data`; `--config zoo.cfg` reads a ZooKeeper configuration; flags override both.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use zinc_server::config::{Config, ConfigError};

/// mimalloc: the tree allocates and frees a node per write and a branch per copied trie
/// level, on several threads (shard cores, the snapshot decoder's workers); glibc's malloc
/// took 15-25% of the server's CPU there (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "zinc",
    version,
    about = "Zinc: a ZooKeeper-compatible coordination service"
)]
struct Args {
    /// A ZooKeeper zoo.cfg (plus Zinc's zinc.* keys).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Client port (clientPort).
    #[arg(long)]
    port: Option<u16>,
    /// Client address (clientPortAddress).
    #[arg(long)]
    address: Option<IpAddr>,
    /// Data directory (dataDir; also dataLogDir unless that is set).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of shard cores serving clients.
    #[arg(long)]
    shards: Option<usize>,
    /// Pin executors to CPUs.
    #[arg(long)]
    pin: bool,
    /// Tick length in milliseconds (tickTime).
    #[arg(long)]
    tick_time: Option<u32>,
    /// Enabled four-letter words, comma separated, or `*` (4lw.commands.whitelist).
    #[arg(long)]
    four_letter_words: Option<String>,
    /// Connections allowed from one IP address, 0 for no limit (maxClientCnxns).
    #[arg(long)]
    max_client_cnxns: Option<u32>,
    /// How often empty containers and expired TTL nodes are removed, in milliseconds
    /// (znode.container.checkIntervalMs).
    #[arg(long)]
    reap_interval_ms: Option<u32>,
}

fn load(args: &Args) -> Result<Config, ConfigError> {
    let mut config = match &args.config {
        Some(path) => {
            let (config, report) = Config::from_file(path)?;
            for key in &report.unknown_keys {
                zinc_server::log_line!("zinc: {}: unknown key {key:?} (ignored)", path.display());
            }
            for key in &report.ignored_keys {
                zinc_server::log_line!("zinc: {}: {key} has no effect in Zinc", path.display());
            }
            config
        }
        None => Config::default(),
    };
    if let Some(port) = args.port {
        config.client_address.set_port(port);
    }
    if let Some(address) = args.address {
        config.client_address.set_ip(address);
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
        config.data_log_dir = dir.clone();
    }
    if let Some(shards) = args.shards {
        config.shard_count = shards;
    }
    config.pin_cores |= args.pin;
    if let Some(tick) = args.tick_time {
        // Session bounds derived from the tick (not set on their own) follow the new tick.
        if config.session_timeout_ms_min == 2 * config.tick_time_ms {
            config.session_timeout_ms_min = 2 * tick;
        }
        if config.session_timeout_ms_max == 20 * config.tick_time_ms {
            config.session_timeout_ms_max = 20 * tick;
        }
        config.tick_time_ms = tick;
    }
    if let Some(words) = &args.four_letter_words {
        config.four_letter_words =
            (words.trim() != "*").then(|| words.split(',').map(|w| w.trim().to_owned()).collect());
    }
    if let Some(limit) = args.max_client_cnxns {
        config.max_client_connections_per_ip = limit;
    }
    if let Some(interval) = args.reap_interval_ms {
        config.reap_interval_ms = interval.max(1);
    }
    config.check()?;
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load(&args) {
        Ok(config) => config,
        Err(error) => {
            zinc_server::log_line!("zinc: {error}");
            return ExitCode::from(2);
        }
    };
    zinc_server::signals::exit_on_termination();
    match zinc_server::start(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            zinc_server::log_line!("zinc: {error}");
            ExitCode::FAILURE
        }
    }
}
