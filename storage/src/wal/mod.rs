//! The write-ahead log (filled in by a later change).
