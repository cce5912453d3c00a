//! The Zinc server: the sans-IO Zab core, request prep, sessions, watches, and the glommio shell
//! around them.

/// Writes one line to stderr and ignores failure: `eprintln!` panics when stderr is closed
/// (a log pipe gone), and a server must neither crash nor hang on that (a panic in the signal
/// thread would leave SIGTERM unable to stop it).
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod acl;
pub mod config;
pub mod exec;
pub mod session;
pub mod shell;
pub mod signals;
pub mod sim;
pub mod watch;
pub mod zab;

use config::Config;
use zinc_storage::tree::Tree;

/// Why the server could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Shell(#[from] shell::ShellError),
    #[error(transparent)]
    Snapshot(#[from] zinc_storage::snapshot::SnapshotError),
}

/// Starts a server with `config` and serves until the process is stopped.
pub fn start(config: Config) -> Result<(), ServerError> {
    for dir in [&config.data_dir, &config.data_log_dir] {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::DataDir {
            path: dir.clone(),
            source,
        })?;
    }
    // The snapshot is decoded on its own thread while the core reads the log after the zxid
    // the newest snapshot's name announces; both take a large part of a start.
    let expected_zxid = zinc_storage::snapshot::list(&config.snapshot_dir())?
        .first()
        .map_or(zinc_protocol::Zxid(0), |(zxid, _)| *zxid);
    let for_loader = config.clone();
    let thread = std::thread::Builder::new()
        .name("zinc-snapshot-load".into())
        .spawn(move || load_snapshot(&for_loader).map_err(|error| error.to_string()))
        .map_err(|source| ServerError::DataDir {
            path: config.snapshot_dir(),
            source,
        })?;
    let loading = shell::LoadingSnapshot {
        expected_zxid,
        thread,
    };
    shell::run(config, loading)?;
    Ok(())
}

/// The newest valid snapshot's tree (the log is replayed after it), or an empty tree when there
/// is none. Snapshots that fail validation are reported and skipped for older ones; if there
/// are snapshots and none is valid, the start fails naming them.
fn load_snapshot(config: &Config) -> Result<Tree, ServerError> {
    let dir = config.snapshot_dir();
    let started = std::time::Instant::now();
    let loaded = zinc_storage::snapshot::load_newest(&dir)?;
    for skipped in &loaded.skipped {
        log_line!("zinc: skipped {skipped}");
    }
    Ok(match loaded.newest {
        Some((tree, zxid, path)) => {
            log_line!(
                "zinc: loaded {} (zxid 0x{:x}, {} znodes) in {} ms",
                path.display(),
                zxid.0,
                tree.node_count(),
                started.elapsed().as_millis()
            );
            tree
        }
        None => Tree::new(),
    })
}
