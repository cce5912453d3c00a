//! The copy-on-write znode tree (filled in by a later change).
