//! When to take a snapshot: after about `txn_count` txns or `log_bytes` of log since the last
//! one, each threshold drawn in [half, full) from a seeded PRNG every time, so the servers of an
//! ensemble (seeded differently) do not all snapshot at the same moment. Pure.

/// Counts logged txns and says when a snapshot is due.
#[derive(Debug, Clone)]
pub struct SnapshotTrigger {
    txn_count: u64,
    log_bytes: u64,
    txn_threshold: u64,
    bytes_threshold: u64,
    txns: u64,
    bytes: u64,
    rng: u64,
}

impl SnapshotTrigger {
    /// `txn_count` and `log_bytes` are the full periods (like zoo.cfg's snapCount and
    /// snapSizeLimitInKb); `seed` comes from the server's config.
    pub fn new(txn_count: u64, log_bytes: u64, seed: u64) -> Self {
        assert!(
            txn_count >= 2 && log_bytes >= 2,
            "periods too small to jitter"
        );
        let mut trigger = Self {
            txn_count,
            log_bytes,
            txn_threshold: 0,
            bytes_threshold: 0,
            txns: 0,
            bytes: 0,
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
        };
        trigger.reset();
        trigger
    }

    /// Counts one logged txn of `txn_bytes`; true when a snapshot is due, after which the
    /// counts start over with new thresholds.
    #[must_use]
    pub fn on_txn(&mut self, txn_bytes: u64) -> bool {
        self.txns += 1;
        self.bytes += txn_bytes;
        let due = self.txns >= self.txn_threshold || self.bytes >= self.bytes_threshold;
        if due {
            self.reset();
        }
        due
    }

    fn reset(&mut self) {
        self.txns = 0;
        self.bytes = 0;
        self.txn_threshold = self.txn_count / 2 + self.next() % (self.txn_count / 2).max(1);
        self.bytes_threshold = self.log_bytes / 2 + self.next() % (self.log_bytes / 2).max(1);
    }

    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intervals(seed: u64, count: usize) -> Vec<u64> {
        let mut t = SnapshotTrigger::new(1000, u64::MAX, seed);
        let mut out = Vec::new();
        let mut since = 0;
        while out.len() < count {
            since += 1;
            if t.on_txn(10) {
                out.push(since);
                since = 0;
            }
        }
        out
    }

    #[test]
    fn txn_intervals_are_jittered_within_half_to_full() {
        let a = intervals(1, 50);
        assert!(a.iter().all(|&n| (500..=1000).contains(&n)), "{a:?}");
        assert!(a.iter().any(|&n| n != a[0]), "no jitter: {a:?}");
        assert_eq!(a, intervals(1, 50), "same seed, same intervals");
        assert_ne!(a, intervals(2, 50), "other seed, other intervals");
    }

    #[test]
    fn log_bytes_trigger_too() {
        let mut t = SnapshotTrigger::new(u64::MAX, 10_000, 3);
        let n = (1..).find(|_| t.on_txn(1000)).unwrap_or(0);
        assert!((5..=10).contains(&n), "{n} txns of 1000 bytes");
    }
}
