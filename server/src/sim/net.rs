//! The simulated network's state: one connection per pair of servers (FIFO, as TCP), broken by
//! loss, corruption, partitions or either side closing it; and the partitions in force.
//!
//! A broken connection drops everything in flight and everything sent on it until both ends
//! have been told (`disconnected`), after which a fresh connection (a new generation) carries
//! new traffic. Election notifications travel as datagrams: lost, duplicated or reordered freely.

use std::collections::{BTreeMap, BTreeSet};

use zinc_protocol::ServerId;

#[derive(Debug, Clone, Copy, Default)]
struct Link {
    generation: u64,
    /// Ends not yet told that the current connection broke; traffic waits for zero.
    notices_pending: u8,
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

impl Net {
    pub fn generation(&self, a: ServerId, b: ServerId) -> u64 {
        self.links.get(&key(a, b)).map_or(0, |link| link.generation)
    }

    /// Whether a message can be put on the connection now.
    pub fn usable(&self, a: ServerId, b: ServerId) -> bool {
        self.links
            .get(&key(a, b))
            .is_none_or(|link| link.notices_pending == 0)
    }

    /// Breaks the connection; `notices` ends must be told before it carries traffic again.
    /// Returns false when it was already broken (nobody new needs telling).
    pub fn break_link(&mut self, a: ServerId, b: ServerId, notices: u8) -> bool {
        let link = self.links.entry(key(a, b)).or_default();
        if link.notices_pending > 0 {
            return false;
        }
        link.generation += 1;
        link.notices_pending = notices;
        self.delivered_ms.remove(&(a, b));
        self.delivered_ms.remove(&(b, a));
        true
    }

    pub fn noticed(&mut self, a: ServerId, b: ServerId) {
        if let Some(link) = self.links.get_mut(&key(a, b)) {
            link.notices_pending = link.notices_pending.saturating_sub(1);
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
