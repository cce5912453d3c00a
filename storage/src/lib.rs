//! Zinc storage: the copy-on-write znode tree, the write-ahead log and snapshots.
