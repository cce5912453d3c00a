//! The storage the WAL runs on, as a trait: the glommio DMA directory in production
//! ([`super::DmaDevice`]) and an in-memory disk with fault injection for tests and the
//! simulator ([`super::MemDevice`]).
//!
//! Contract: writes and reads are at block-aligned offsets with block-aligned lengths (O_DIRECT
//! rules); a write is durable only after `sync_data` returns Ok; `create_zeroed` returns a file
//! whose every byte is zero, allocated and durable, directory entry included, so appending to
//! it needs no metadata sync; `remove` is durable when it returns.

use std::io;

/// A buffer the device can write from (for DMA: aligned memory from the executor's pool).
pub trait DeviceBuf {
    /// The buffer's bytes, to fill before writing.
    fn as_mut_bytes(&mut self) -> &mut [u8];
}

/// The directory holding the WAL's segment files.
// The WAL runs on one executor thread, so the futures need not be Send.
#[allow(async_fn_in_trait)]
pub trait Device {
    /// An open segment file.
    type File: SegmentFile;
    /// File names in the directory (not paths), in no particular order.
    async fn list(&self) -> io::Result<Vec<String>>;
    /// Creates `name` with `len_bytes` zero bytes, all allocated and durable.
    async fn create_zeroed(&self, name: &str, len_bytes: u64) -> io::Result<Self::File>;
    /// Opens an existing file for reading and writing.
    async fn open(&self, name: &str) -> io::Result<Self::File>;
    /// Renames a file durably (replacing `to` if it exists); open handles stay valid.
    async fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file durably.
    async fn remove(&self, name: &str) -> io::Result<()>;
    /// A human-readable path for error messages.
    fn describe(&self, name: &str) -> String;
}

/// One open file.
#[allow(async_fn_in_trait)]
pub trait SegmentFile {
    /// The buffer type `write_at` takes.
    type Buf: DeviceBuf;
    /// What a read returns.
    type Read: std::ops::Deref<Target = [u8]>;
    /// A buffer of exactly `len_bytes` (a multiple of the block size) to fill and write.
    fn alloc_buf(&self, len_bytes: usize) -> Self::Buf;
    /// Writes the whole buffer at `offset_bytes`; returns the bytes written (may be short).
    async fn write_at(&self, buf: Self::Buf, offset_bytes: u64) -> io::Result<usize>;
    /// Reads up to `len_bytes` at `offset_bytes`; may return fewer (0 at end of file). The
    /// bytes stay in the device's buffer (no copy until the caller makes one).
    async fn read_at(&self, offset_bytes: u64, len_bytes: usize) -> io::Result<Self::Read>;
    /// fdatasync: everything written so far becomes durable.
    async fn sync_data(&self) -> io::Result<()>;
    /// The file's length.
    async fn len_bytes(&self) -> io::Result<u64>;
}
