//! One simulated server: the Zab core, its tree, its log device, and what it proposed for
//! clients. A crash drops the core and the tree (memory) and damages the disk's unsynced tail;
//! a restart rebuilds both from the disk.

use std::collections::BTreeMap;

use zinc_protocol::txn::TxnEntry;
use zinc_protocol::{ServerId, Zxid};
use zinc_storage::tree::Tree;

use super::disk::{CrashDamage, Disk};
use crate::zab::rng::Rng;
use crate::zab::{Config, LogEntry, Zab};

pub struct Server {
    pub id: ServerId,
    pub config: Config,
    pub zab: Option<Zab>,
    pub tree: Tree,
    pub disk: Disk,
    /// Bumped on every crash: completions scheduled for an earlier life are ignored.
    pub incarnation: u64,
    /// Client writes this server proposed as leader, by zxid: acknowledged when it commits them.
    pub client_writes: BTreeMap<Zxid, u64>,
    /// `sync` requests in progress here: the newest zxid committed anywhere when each began.
    pub syncs: BTreeMap<i64, Zxid>,
}

impl Server {
    pub fn new(config: Config) -> Server {
        let disk = Disk::new();
        let zab = Zab::new(config.clone(), disk.load());
        Server {
            id: config.id,
            config,
            zab: Some(zab),
            tree: Tree::new(),
            disk,
            incarnation: 0,
            client_writes: BTreeMap::new(),
            syncs: BTreeMap::new(),
        }
    }

    pub fn up(&self) -> bool {
        self.zab.is_some()
    }

    pub fn crash(&mut self, rng: &mut Rng) -> CrashDamage {
        self.zab = None;
        self.incarnation += 1;
        self.client_writes.clear();
        self.syncs.clear();
        self.disk.crash(rng)
    }

    /// Reloads the tree from the snapshot and starts a fresh core on the recovered log.
    pub fn restart(&mut self) {
        self.tree = self.disk.snapshot.clone();
        let mut config = self.config.clone();
        config.seed = config.seed.wrapping_add(self.incarnation << 32);
        self.zab = Some(Zab::new(config, self.disk.load()));
    }

    /// Applies one committed entry to the tree.
    pub fn apply(&mut self, entry: &LogEntry) -> Result<(), String> {
        let decoded = TxnEntry::from_bytes(&entry.txn)
            .map_err(|error| format!("committed entry {} does not decode: {error}", entry.zxid))?;
        if decoded.header.zxid != entry.zxid.0 {
            return Err(format!(
                "entry {} carries header zxid {:#x}",
                entry.zxid, decoded.header.zxid
            ));
        }
        let before = self.tree.last_zxid();
        if entry.zxid <= before {
            return Err(format!("tree at {before} asked to apply {}", entry.zxid));
        }
        self.tree.apply(&decoded.header, &decoded.txn);
        Ok(())
    }
}
