//! zinc-bench: a load generator for ZooKeeper-compatible servers.
