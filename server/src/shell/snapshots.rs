//! Snapshots in the running server. The core counts logged txns with a seeded
//! [`SnapshotTrigger`]; when one is due it hands the current tree root (an O(1) clone of the
//! copy-on-write tree, so writes go on) to `snapshot_loop`. A snapshot that falls due while the
//! previous one is still being written is skipped, as ZooKeeper skips it ("Too busy to snap"):
//! the trigger counts again from there, so under a write load that outpaces the writer,
//! snapshots are spaced by the trigger's period instead of following one another back to back
//! (each one is a walk of the whole tree on a CPU the cores share). `snapshot_loop` waits until
//! the log is durable through the root's zxid (a snapshot never holds a txn the log could still
//! lose), then a writer thread at low CPU priority encodes and writes it (temp file, fsync,
//! rename, directory fsync) and keeps the newest `snap_retain_count`; the core then purges the
//! log segments that only older snapshots needed. A failed snapshot is reported and costs
//! nothing else: the log still holds every txn since the last good one.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{mpsc, Arc};

use event_listener::Event;
use zinc_protocol::Zxid;
use zinc_storage::snapshot::{self, SnapshotError, SnapshotTrigger};
use zinc_storage::tree::Tree;
use zinc_storage::wal::{DmaDevice, Wal};

use crate::config::Config;

/// Nice value of the writer thread: it yields the CPU to the cores but still progresses.
const WRITER_NICE: libc::c_int = 10;

/// Nodes or trie branches the writer frees between two yields of the CPU, about 0.2 ms of work.
const RELEASE_STEP: usize = 2048;

type WriteResult = Result<Option<Zxid>, SnapshotError>;

/// The root waiting for the snapshot writer, shared by the core and `snapshot_loop`.
#[derive(Default)]
pub(crate) struct Waiting {
    root: RefCell<Option<Tree>>,
    filled: Event,
    /// From the moment `snapshot_loop` takes a root until its snapshot is written (or failed).
    busy: Cell<bool>,
}

impl Waiting {
    /// Resolves with the waiting root once there is one.
    async fn take(&self) -> Tree {
        loop {
            if let Some(root) = self.root.borrow_mut().take() {
                return root;
            }
            let listener = self.filled.listen();
            if let Some(root) = self.root.borrow_mut().take() {
                return root;
            }
            listener.await;
        }
    }
}

/// The core's side: counts txns and offers the root when a snapshot is due.
pub(crate) struct Snapshots {
    trigger: SnapshotTrigger,
    due: bool,
    waiting: Rc<Waiting>,
}

impl Snapshots {
    /// The trigger and the slot `snapshot_loop` takes roots from (one snapshot at a time).
    pub(crate) fn new(config: &Config) -> (Snapshots, Rc<Waiting>) {
        let waiting = Rc::new(Waiting::default());
        let trigger = SnapshotTrigger::new(
            config.snap_txn_count,
            config.snap_log_bytes,
            config.server_id,
        );
        let snapshots = Snapshots {
            trigger,
            due: false,
            waiting: waiting.clone(),
        };
        (snapshots, waiting)
    }

    /// Counts one logged txn of `txn_bytes`.
    pub(crate) fn on_txn(&mut self, txn_bytes: u64) {
        if self.trigger.on_txn(txn_bytes) {
            self.due = true;
        }
    }

    /// Makes a snapshot due now (after a start that replayed the log).
    pub(crate) fn request(&mut self) {
        self.due = true;
    }

    /// Hands `root` over if a snapshot is due and the writer is free; a snapshot due while
    /// the writer is busy is skipped (see the module doc).
    pub(crate) fn offer(&mut self, root: &Tree) {
        if !std::mem::take(&mut self.due) || self.waiting.busy.get() {
            return;
        }
        *self.waiting.root.borrow_mut() = Some(root.clone());
        self.waiting.filled.notify(1);
    }
}

/// Takes each offered root to disk and purges the log behind the snapshots kept.
pub(crate) async fn snapshot_loop(
    wal: Rc<Wal<DmaDevice>>,
    config: Arc<Config>,
    waiting: Rc<Waiting>,
) {
    let keep = config.snap_retain_count as usize;
    let (to_writer, results) = match spawn_writer(config.snapshot_dir(), keep) {
        Ok(writer) => writer,
        Err(error) => {
            crate::log_line!("zinc: no snapshots: cannot start the snapshot writer: {error}");
            return;
        }
    };
    loop {
        waiting.busy.set(false);
        let root = waiting.take().await;
        waiting.busy.set(true);
        let zxid = root.last_zxid();
        if wal.wait_durable(zxid).await.is_err() {
            // The log failed; the core stops the process.
            return;
        }
        if to_writer.send(root).is_err() {
            return;
        }
        match results.recv().await {
            Ok(Ok(Some(oldest_kept))) => {
                if let Err(error) = wal.purge_through(oldest_kept).await {
                    crate::log_line!(
                        "zinc: purging the log through 0x{:x}: {error}",
                        oldest_kept.0
                    );
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                crate::log_line!("zinc: snapshot at zxid 0x{:x} failed: {error}", zxid.0)
            }
            Err(_) => return,
        }
    }
}

/// Starts the writer thread: it takes roots, writes each as a snapshot and keeps the newest
/// `keep`, answering with the oldest zxid kept.
fn spawn_writer(
    dir: PathBuf,
    keep: usize,
) -> std::io::Result<(mpsc::Sender<Tree>, async_channel::Receiver<WriteResult>)> {
    let (to_writer, roots) = mpsc::channel::<Tree>();
    let (answer, results) = async_channel::bounded(1);
    std::thread::Builder::new()
        .name("zinc-snapshot".into())
        .spawn(move || {
            // SAFETY: setpriority on this thread's id; no memory is passed.
            unsafe {
                libc::setpriority(
                    libc::PRIO_PROCESS,
                    libc::gettid() as libc::id_t,
                    WRITER_NICE,
                );
            }
            for root in roots {
                // The file of the snapshot this one retires is overwritten, not deleted.
                let written = snapshot::write_reusing(&dir, &root, keep);
                // Dropping the root here frees the nodes only it still holds, off the core, a
                // step at a time (see `Tree::release_in_steps`).
                root.release_in_steps(RELEASE_STEP, std::thread::yield_now);
                // The nodes only the root held are freed on this thread. The `zinc` binary
                // allocates with mimalloc, which returns freed pages by itself; where this
                // library runs on glibc's malloc, glibc keeps them resident in this thread's
                // arena without a trim.
                // SAFETY: malloc_trim only returns free memory of the C allocator.
                unsafe { libc::malloc_trim(0) };
                let result = written.and_then(|_| snapshot::retain_newest(&dir, keep));
                if answer.send_blocking(result).is_err() {
                    return;
                }
            }
        })?;
    Ok((to_writer, results))
}
