//! Zinc storage: the copy-on-write znode tree, the write-ahead log and snapshots.

pub mod snapshot;
pub mod tree;
pub mod wal;
