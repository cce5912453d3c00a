//! The simulated network's state: one connection per pair of servers (FIFO, as TCP), broken by
//! loss, corruption, partitions or either side closing it; and the partitions in force.
//!
//! A broken connection drops everything in flight. Each end is told once (`disconnected`) that
//! it broke; until an end is told it keeps writing into the dead connection and those frames are
//! lost. An end that has been told opens a fresh connection (a new generation) on its next send,
//! and its peer learns of the old connection's end before the new one's first frame, as the
//! core's contract for shells requires (`Zab::disconnected`). Election notifications travel as
//! datagrams: lost, duplicated or reordered freely.

use std::collections::{BTreeMap, BTreeSet};

use zinc_protocol::ServerId;

#[derive(Debug, Clone, Copy, Default)]
struct Link {
    generation: u64,
    /// Per end (lower server id first): not yet told that the current connection broke.
    untold: [bool; 2],
}

#[derive(Debug, Default)]
pub struct Net {
    links: BTreeMap<(ServerId, ServerId), Link>,
    /// Per direction: the time the last message on the connection is delivered (FIFO).
    delivered_ms: BTreeMap<(ServerId, ServerId), u64>,
    /// Active partitions: id -> blocked directions.
    partitions: BTreeMap<u64, BTreeSet<(ServerId, ServerId)>>,
    next_partition: u64,
}

fn key(a: ServerId, b: ServerId) -> (ServerId, ServerId) {
    (a.min(b), a.max(b))
}

/// `server`'s end of its link with `peer`, as an index into `Link::untold`.
fn end(server: ServerId, peer: ServerId) -> usize {
    usize::from(server > peer)
}

impl Net {
    pub fn generation(&self, a: ServerId, b: ServerId) -> u64 {
        self.links.get(&key(a, b)).map_or(0, |link| link.generation)
    }

    /// Whether a message can travel on the connection now: both ends know of its last break.
    pub fn usable(&self, a: ServerId, b: ServerId) -> bool {
        self.links
            .get(&key(a, b))
            .is_none_or(|link| link.untold == [false, false])
    }

    /// Whether `server` has not yet been told that its connection with `peer` broke.
    pub fn untold(&self, server: ServerId, peer: ServerId) -> bool {
        self.links
            .get(&key(server, peer))
            .is_some_and(|link| link.untold[end(server, peer)])
    }

    /// Breaks the connection; the ends in `tell` must be told before it carries traffic again.
    /// Returns false when it was already broken (nobody new needs telling).
    pub fn break_link(&mut self, a: ServerId, b: ServerId, tell: &[ServerId]) -> bool {
        let link = self.links.entry(key(a, b)).or_default();
        if link.untold != [false, false] {
            return false;
        }
        link.generation += 1;
        for server in tell {
            let peer = if *server == a { b } else { a };
            link.untold[end(*server, peer)] = true;
        }
        self.delivered_ms.remove(&(a, b));
        self.delivered_ms.remove(&(b, a));
        true
    }

    /// Records that `server` was told that connection `generation` with `peer` broke; false when
    /// it had been told already (each break is reported once).
    pub fn noticed(&mut self, server: ServerId, peer: ServerId, generation: u64) -> bool {
        match self.links.get_mut(&key(server, peer)) {
            Some(link) if link.generation == generation && link.untold[end(server, peer)] => {
                link.untold[end(server, peer)] = false;
                true
            }
            _ => false,
        }
    }

    pub fn blocked(&self, from: ServerId, to: ServerId) -> bool {
        self.partitions
            .values()
            .any(|blocked| blocked.contains(&(from, to)))
    }

    /// Delivery time for a connection message: not before `at`, not before the previous one.
    pub fn fifo_delivery(&mut self, from: ServerId, to: ServerId, at_ms: u64) -> u64 {
        let last = self.delivered_ms.entry((from, to)).or_insert(0);
        *last = (*last).max(at_ms);
        *last
    }

    /// Blocks traffic from `side` to the rest (and back unless `one_way`); returns its id.
    pub fn partition(&mut self, side: &[ServerId], rest: &[ServerId], one_way: bool) -> u64 {
        let mut blocked = BTreeSet::new();
        for a in side {
            for b in rest {
                blocked.insert((*a, *b));
                if !one_way {
                    blocked.insert((*b, *a));
                }
            }
        }
        self.next_partition += 1;
        self.partitions.insert(self.next_partition, blocked);
        self.next_partition
    }

    pub fn heal(&mut self, id: u64) {
        self.partitions.remove(&id);
    }

    pub fn heal_all(&mut self) {
        self.partitions.clear();
    }
}
