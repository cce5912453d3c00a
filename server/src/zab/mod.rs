//! The Zab core, sans-IO (filled in by a later change).
