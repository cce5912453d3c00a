//! The deterministic simulator (filled in by a later change).
