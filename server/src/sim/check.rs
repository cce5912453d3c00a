//! The invariants the simulator checks after every step, against a global record of what every
//! server has logged, committed and reported:
//!
//! - at most one established leader per epoch;
//! - a zxid names the same txn on every server that logs or commits it;
//! - committed sequences are prefixes of one global sequence;
//! - zxids increase in every log and every tree;
//! - every txn acknowledged to a client is in the log (or snapshot) of every later leader;
//! - trees at the same zxid have the same digest;
//! - a `sync` completes only once its server has applied everything committed anywhere before
//!   the sync began.

use std::collections::BTreeMap;

use zinc_protocol::{Epoch, ServerId, Zxid};

use crate::zab::{LogEntry, Zab};

/// FNV-1a, 64 bits: a stable fingerprint of a txn's bytes.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ *byte as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Debug, Default)]
pub struct Checker {
    leaders: BTreeMap<Epoch, ServerId>,
    txns: BTreeMap<Zxid, u64>,
    committed: Vec<Zxid>,
    committed_index: BTreeMap<Zxid, usize>,
    /// Per server: how many entries of `committed` its tree holds.
    positions: BTreeMap<ServerId, usize>,
    digests: BTreeMap<Zxid, i64>,
    /// Txns acknowledged to clients: zxid and fingerprint.
    pub acked: Vec<(Zxid, u64)>,
}

pub type Check = Result<(), String>;

impl Checker {
    pub fn on_established(&mut self, server: ServerId, epoch: Epoch, zab: &Zab) -> Check {
        if let Some(other) = self.leaders.insert(epoch, server) {
            if other != server {
                return Err(format!(
                    "two leaders established in epoch {}: {} and {}",
                    epoch.0, other.0, server.0
                ));
            }
        }
        for (zxid, print) in &self.acked {
            if *zxid <= zab.log_base() {
                continue;
            }
            match zab.log_entry(*zxid) {
                Some(txn) if fingerprint(txn) == *print => {}
                _ => {
                    return Err(format!(
                        "acknowledged txn {zxid} missing from the log of leader {} (epoch {})",
                        server.0, epoch.0
                    ))
                }
            }
        }
        Ok(())
    }

    /// A txn logged or committed somewhere: its zxid must always name these bytes.
    pub fn on_txn(&mut self, server: ServerId, entry: &LogEntry) -> Check {
        let print = fingerprint(&entry.txn);
        match self.txns.insert(entry.zxid, print) {
            Some(old) if old != print => Err(format!(
                "zxid {} names two different txns (seen again on server {})",
                entry.zxid, server.0
            )),
            _ => Ok(()),
        }
    }

    pub fn on_commit(&mut self, server: ServerId, entry: &LogEntry) -> Check {
        self.on_txn(server, entry)?;
        let position = self.positions.entry(server).or_insert(0);
        match self.committed.get(*position) {
            Some(expected) if *expected != entry.zxid => {
                return Err(format!(
                    "server {} committed {} where the committed sequence has {} (position {})",
                    server.0, entry.zxid, expected, position
                ))
            }
            Some(_) => {}
            None => {
                if let Some(last) = self.committed.last() {
                    if *last >= entry.zxid {
                        return Err(format!(
                            "committed zxids decrease: {} after {last}",
                            entry.zxid
                        ));
                    }
                }
                self.committed_index
                    .insert(entry.zxid, self.committed.len());
                self.committed.push(entry.zxid);
            }
        }
        *position += 1;
        Ok(())
    }

    /// The server's tree was replaced by a snapshot at `zxid` (restart or SNAP).
    pub fn on_tree_reset(&mut self, server: ServerId, zxid: Zxid) -> Check {
        let position = match zxid == Zxid::ZERO {
            true => 0,
            false => match self.committed_index.get(&zxid) {
                Some(index) => index + 1,
                None => {
                    return Err(format!(
                        "server {} holds a snapshot at uncommitted {zxid}",
                        server.0
                    ))
                }
            },
        };
        self.positions.insert(server, position);
        Ok(())
    }

    /// The newest zxid committed anywhere.
    pub fn last_committed(&self) -> Zxid {
        self.committed.last().copied().unwrap_or(Zxid::ZERO)
    }

    pub fn on_digest(&mut self, server: ServerId, zxid: Zxid, digest: i64) -> Check {
        match self.digests.insert(zxid, digest) {
            Some(old) if old != digest => Err(format!(
                "server {} tree digest {digest:#x} at {zxid} differs from {old:#x}",
                server.0
            )),
            _ => Ok(()),
        }
    }
}
