//! Snapshots: a tree (znodes, ACLs, sessions) at one zxid, as an rkyv archive on disk.
//!
//! The tree is copy-on-write, so the writer encodes a clone while the Zab core keeps applying;
//! encoding and writing are blocking calls the server runs off its cores' hot paths (a
//! low-priority queue or a blocking thread). The file is written at a bounded rate, its
//! writeback started chunk by chunk (see `Paced`), so that the log's flushes, which share the
//! disk's cache flush, do not wait behind a burst of snapshot bytes. A snapshot is written to
//! `<name>.tmp`, fsynced, renamed to `snap/<zxid as 16 hex digits>.rkyv` and the directory
//! fsynced, so a crash at any point leaves the previous snapshots intact (a stray `.tmp` is
//! removed later). The server writes each snapshot over the file of the oldest one it retires
//! ([`write_reusing`]: that one is renamed to the temp name first), so retention deletes no
//! large file.
//!
//! File layout: the rkyv archive of a `SnapshotChunks` (the nodes, parents first, in chunks of
//! 4,096 records, each chunk right after its nodes' paths and data, so the writer serializes
//! straight from one walk of the tree), then a 24-byte trailer: magic `ZINCSNP3`, the
//! archive's length (u64 LE), its CRC32C (u32 LE) and 4 zero bytes. Files of the previous
//! layout (magic `ZINCSNP2`: one array of all nodes) are still read. Loading maps the file,
//! checks the trailer and the CRC (bit rot), validates the archive with rkyv's checker (no
//! unchecked access to bytes from disk), rebuilds the tree bottom-up from the archived data in
//! place (each node lists its parent's index, so no path lookups; no intermediate copies), and
//! checks the rebuilt node count and digest against the recorded ones. A snapshot that fails
//! any check is skipped for the next older one.
//!
//! Retention keeps the newest K snapshots; the WAL may then be purged through the oldest kept
//! snapshot's zxid. [`SnapshotTrigger`] decides when to take one (pure, seeded jitter so the
//! servers of an ensemble do not all snapshot at once).

mod trigger;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rkyv::munge::munge;
use rkyv::rancor::{self, Fallible};
use rkyv::ser::writer::IoWriter;
use rkyv::ser::{Allocator, Writer, WriterExt};
use rkyv::string::{ArchivedString, StringResolver};
use rkyv::util::AlignedVec;
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::{Archive, Place, Serialize};
use zinc_protocol::{Acl, Id, StatPersisted, Zxid};

use crate::tree::{RestoredNode, Tree};

pub use trigger::SnapshotTrigger;

/// Bytes of the trailer after the archive.
pub const TRAILER_BYTES: usize = 24;
/// The trailer's magic: the archive is a `SnapshotChunks`.
const MAGIC: &[u8; 8] = b"ZINCSNP3";
/// The magic of the previous layout, still read: the archive is a `SnapshotRecord`.
const MAGIC_V2: &[u8; 8] = b"ZINCSNP2";
const SUFFIX: &str = ".rkyv";
const TMP_SUFFIX: &str = ".rkyv.tmp";

/// What can go wrong with snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O error during {op} on {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a valid snapshot (truncated, bit rot, bad archive, wrong digest).
    #[error("invalid snapshot {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// Snapshots exist but none is valid: starting empty would lose data.
    #[error("none of the {count} snapshots in {dir} is valid (newest error: {newest})")]
    NoValidSnapshot {
        dir: PathBuf,
        count: usize,
        newest: String,
    },
    #[error("snapshot encoding failed: {0}")]
    Encode(String),
}

/// One interned ACL entry.
#[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone)]
struct AclRecord {
    perms: i32,
    scheme: String,
    id: String,
}

/// One znode, parents before children.
#[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone)]
struct NodeRecord {
    path: String,
    czxid: i64,
    mzxid: i64,
    ctime: i64,
    mtime: i64,
    version: i32,
    cversion: i32,
    aversion: i32,
    ephemeral_owner: i64,
    pzxid: i64,
    data: Option<Vec<u8>>,
    /// Index into `SnapshotRecord::acls`.
    acl: u32,
    /// The parent's index in `SnapshotRecord::nodes` (0, itself, for the root).
    parent: u32,
}

/// What the writer serializes for a `NodeRecord` (the same archived type): the path and the
/// data borrowed from the tree, no copy of either before they are written into the archive.
struct NodeOut<'a> {
    path: PathStr<'a>,
    stat: StatPersisted,
    data: Option<DataSlice<'a>>,
    acl: u32,
    parent: u32,
}

/// Where a node's path and data went in the archive.
struct NodeOutResolver {
    path: StringResolver,
    data: Option<VecResolver>,
}

impl Archive for NodeOut<'_> {
    type Archived = ArchivedNodeRecord;
    type Resolver = NodeOutResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        munge!(let ArchivedNodeRecord {
            path,
            czxid,
            mzxid,
            ctime,
            mtime,
            version,
            cversion,
            aversion,
            ephemeral_owner,
            pzxid,
            data,
            acl,
            parent,
        } = out);
        self.path.resolve(resolver.path, path);
        self.stat.czxid.resolve((), czxid);
        self.stat.mzxid.resolve((), mzxid);
        self.stat.ctime.resolve((), ctime);
        self.stat.mtime.resolve((), mtime);
        self.stat.version.resolve((), version);
        self.stat.cversion.resolve((), cversion);
        self.stat.aversion.resolve((), aversion);
        self.stat.ephemeral_owner.resolve((), ephemeral_owner);
        self.stat.pzxid.resolve((), pzxid);
        self.data.resolve(resolver.data, data);
        self.acl.resolve((), acl);
        self.parent.resolve((), parent);
    }
}

impl<S> Serialize<S> for NodeOut<'_>
where
    S: Fallible + Writer + Allocator + ?Sized,
    S::Error: rancor::Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        Ok(NodeOutResolver {
            path: self.path.serialize(serializer)?,
            data: self.data.serialize(serializer)?,
        })
    }
}

/// A borrowed path, archived as the `String` of a `NodeRecord`.
struct PathStr<'a>(&'a str);

impl Archive for PathStr<'_> {
    type Archived = ArchivedString;
    type Resolver = StringResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        ArchivedString::resolve_from_str(self.0, resolver, out);
    }
}

impl<S> Serialize<S> for PathStr<'_>
where
    S: Fallible + Writer + ?Sized,
    S::Error: rancor::Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        ArchivedString::serialize_from_str(self.0, serializer)
    }
}

/// Borrowed data, archived as the `Vec<u8>` of a `NodeRecord`.
struct DataSlice<'a>(&'a [u8]);

impl Archive for DataSlice<'_> {
    type Archived = ArchivedVec<u8>;
    type Resolver = VecResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(self.0.len(), resolver, out);
    }
}

impl<S> Serialize<S> for DataSlice<'_>
where
    S: Fallible + Writer + Allocator + ?Sized,
    S::Error: rancor::Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        ArchivedVec::<u8>::serialize_from_slice(self.0, serializer)
    }
}

#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
struct SessionRecord {
    id: i64,
    timeout_ms: i32,
}

/// The file's layout (trailer magic `ZINCSNP3`). Only its archived form is used: decode reads
/// `ArchivedSnapshotChunks`, and `SnapshotOf` writes one.
#[allow(dead_code)]
#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
struct SnapshotChunks {
    zxid: i64,
    node_count: u64,
    digest: i64,
    acls: Vec<Vec<AclRecord>>,
    /// The nodes in order (parents first), [`NODE_CHUNK`] to a chunk but the last: the writer
    /// writes each chunk's records right after the chunk's paths and data, in one walk of the
    /// tree and with one chunk in memory.
    nodes: Vec<Vec<NodeRecord>>,
    sessions: Vec<SessionRecord>,
}

/// Nodes to a chunk of `SnapshotChunks::nodes`.
const NODE_CHUNK: usize = 4096;

/// Path bytes per node a chunk's path buffer starts with (it grows for longer paths).
const CHUNK_PATH_BYTES: usize = 64;

/// The previous layout (trailer magic `ZINCSNP2`), still read: one array of all nodes.
#[allow(dead_code)]
#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
struct SnapshotRecord {
    zxid: i64,
    node_count: u64,
    digest: i64,
    acls: Vec<Vec<AclRecord>>,
    nodes: Vec<NodeRecord>,
    sessions: Vec<SessionRecord>,
}

/// What the writer serializes for a `SnapshotChunks`: the same archived type, with the nodes
/// read from the tree while they are written (see its `Serialize`), never listed first.
struct SnapshotOf<'t> {
    tree: &'t Tree,
    sessions: Vec<SessionRecord>,
}

impl<'t> SnapshotOf<'t> {
    fn new(tree: &'t Tree) -> Self {
        let sessions = tree
            .sessions()
            .into_iter()
            .map(|(id, timeout_ms)| SessionRecord { id, timeout_ms })
            .collect();
        SnapshotOf { tree, sessions }
    }
}

struct SnapshotOfResolver {
    acls: VecResolver,
    acl_count: usize,
    nodes: VecResolver,
    chunk_count: usize,
    sessions: VecResolver,
}

impl Archive for SnapshotOf<'_> {
    type Archived = ArchivedSnapshotChunks;
    type Resolver = SnapshotOfResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        munge!(let ArchivedSnapshotChunks { zxid, node_count, digest, acls, nodes, sessions } = out);
        self.tree.last_zxid().0.resolve((), zxid);
        self.tree.node_count().resolve((), node_count);
        self.tree.digest().resolve((), digest);
        ArchivedVec::resolve_from_len(resolver.acl_count, resolver.acls, acls);
        ArchivedVec::resolve_from_len(resolver.chunk_count, resolver.nodes, nodes);
        ArchivedVec::resolve_from_len(self.sessions.len(), resolver.sessions, sessions);
    }
}

impl<S> Serialize<S> for SnapshotOf<'_>
where
    S: Fallible + Writer + Allocator + ?Sized,
    S::Error: rancor::Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        // The archive's fields point forward in field order (rkyv's validation requires it),
        // so the ACL lists are written before the nodes: all the tree's interned lists.
        let lists = self.tree.acl_lists();
        let acl_records: Vec<Vec<AclRecord>> = lists
            .iter()
            .map(|(_, list)| list.iter().map(acl_record).collect())
            .collect();
        let acls = ArchivedVec::serialize_from_slice(&acl_records, serializer)?;
        let ids: Vec<usize> = lists.iter().map(|(id, _)| *id).collect();
        let (nodes, chunk_count) = serialize_nodes(self.tree, &ids, serializer)?;
        let sessions = ArchivedVec::serialize_from_slice(&self.sessions, serializer)?;
        Ok(SnapshotOfResolver {
            acls,
            acl_count: acl_records.len(),
            nodes,
            chunk_count,
            sessions,
        })
    }
}

/// A node's ACL list is not among the tree's interned lists (a bug, reported, never written).
#[derive(Debug, thiserror::Error)]
#[error("node {0} uses an ACL list the tree has not interned")]
struct UnknownAcl(String);

/// Writes the tree's nodes as the archive's chunks of node records, in one walk of the tree:
/// each node's path and data are written as it is visited, and every [`NODE_CHUNK`] nodes the
/// chunk's fixed-size records that point at them (rkyv's layout puts what a record points at
/// before it). Each record indexes `acl_ids` (the ACL lists' ids in archive order). Returns
/// the array of chunks and its length.
fn serialize_nodes<S>(
    tree: &Tree,
    acl_ids: &[usize],
    serializer: &mut S,
) -> Result<(VecResolver, usize), S::Error>
where
    S: Fallible + Writer + Allocator + ?Sized,
    S::Error: rancor::Source,
{
    let index_of: std::collections::HashMap<usize, u32> = acl_ids
        .iter()
        .enumerate()
        .map(|(index, id)| (*id, index as u32))
        .collect();
    // Most nodes share one list: the last one found is checked before the map.
    let mut last = None;
    // Full size from the start: grown by doubling, each growth copied the chunk and touched
    // fresh memory at once (transparent huge pages cleared 2 MiB at a time), a burst of CPU
    // of several milliseconds at the start of every snapshot; filled in place, the new memory
    // is touched a node at a time between the writer's waits for the disk.
    let mut chunk = Chunk {
        paths: String::with_capacity(NODE_CHUNK * CHUNK_PATH_BYTES),
        nodes: Vec::with_capacity(NODE_CHUNK),
    };
    let mut chunks: Vec<(usize, usize)> = Vec::new();
    let mut failed = None;
    tree.for_each_node_with_parent(|path, parent, node| {
        if failed.is_some() {
            return;
        }
        let id = node.acl_id();
        let acl = match last {
            Some((last_id, index)) if last_id == id => index,
            _ => match index_of.get(&id) {
                Some(index) => {
                    last = Some((id, *index));
                    *index
                }
                None => {
                    failed = Some(<S::Error as rancor::Source>::new(UnknownAcl(
                        path.to_string(),
                    )));
                    return;
                }
            },
        };
        let data = node.data();
        let record = NodeOut {
            path: PathStr(path),
            stat: node.persisted_stat(),
            data: data.map(DataSlice),
            acl,
            parent,
        };
        let written = record.serialize(serializer).and_then(|resolver| {
            chunk.push(&record, data, resolver);
            if chunk.nodes.len() < NODE_CHUNK {
                return Ok(());
            }
            chunks.push(chunk.write(serializer)?);
            Ok(())
        });
        if let Err(error) = written {
            failed = Some(error);
        }
    });
    if let Some(error) = failed {
        return Err(error);
    }
    if !chunk.nodes.is_empty() {
        chunks.push(chunk.write(serializer)?);
    }
    let pos = serializer.align_for::<ArchivedVec<ArchivedNodeRecord>>()?;
    for (chunk_pos, len) in &chunks {
        let resolver = VecResolver::from_pos(*chunk_pos);
        // SAFETY: a `ChunkOut`'s only out-of-line data is its records, written by
        // `Chunk::write` at `chunk_pos`, which `resolver` holds; the array of chunks started
        // aligned for its elements, and each is written right after the previous one.
        unsafe { serializer.resolve_aligned(&ChunkOut(*len), resolver)? };
    }
    Ok((VecResolver::from_pos(pos), chunks.len()))
}

/// The nodes of the chunk being written, their records waiting until the chunk is full, with
/// where their paths and data went. Paths are copied (the walk reuses its path buffer); data
/// stays borrowed from the tree.
struct Chunk<'t> {
    paths: String,
    nodes: Vec<PendingNode<'t>>,
}

struct PendingNode<'t> {
    path: std::ops::Range<usize>,
    stat: StatPersisted,
    data: Option<&'t [u8]>,
    acl: u32,
    parent: u32,
    resolver: NodeOutResolver,
}

impl<'t> Chunk<'t> {
    /// Adds `record` (whose data is `data`) and where serializing it put its path and data.
    fn push(&mut self, record: &NodeOut<'_>, data: Option<&'t [u8]>, resolver: NodeOutResolver) {
        let start = self.paths.len();
        self.paths.push_str(record.path.0);
        self.nodes.push(PendingNode {
            path: start..self.paths.len(),
            stat: record.stat,
            data,
            acl: record.acl,
            parent: record.parent,
            resolver,
        });
    }

    /// Writes the chunk's records (an `ArchivedNodeRecord` array) and empties it; returns
    /// the array's position and length.
    fn write<S>(&mut self, serializer: &mut S) -> Result<(usize, usize), S::Error>
    where
        S: Fallible + Writer + ?Sized,
    {
        let pos = serializer.align_for::<ArchivedNodeRecord>()?;
        let len = self.nodes.len();
        for node in self.nodes.drain(..) {
            let record = NodeOut {
                path: PathStr(&self.paths[node.path]),
                stat: node.stat,
                data: node.data.map(DataSlice),
                acl: node.acl,
                parent: node.parent,
            };
            // SAFETY: `node.resolver` is what serializing this same record (same path, data,
            // and so lengths) returned; the array started aligned for the records, and each is
            // written right after the previous one.
            unsafe { serializer.resolve_aligned(&record, node.resolver)? };
        }
        self.paths.clear();
        Ok((pos, len))
    }
}

/// A chunk of node records already written, archived as the `Vec<NodeRecord>` it is.
struct ChunkOut(usize);

impl Archive for ChunkOut {
    type Archived = ArchivedVec<ArchivedNodeRecord>;
    type Resolver = VecResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(self.0, resolver, out);
    }
}

/// `<zxid as 16 lowercase hex digits>.rkyv`.
pub fn snapshot_name(zxid: Zxid) -> String {
    format!("{:016x}{SUFFIX}", zxid.0 as u64)
}

/// The zxid of a snapshot file name, or `None` for other names.
pub fn parse_snapshot_name(name: &str) -> Option<Zxid> {
    let hex = name.strip_suffix(SUFFIX)?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(|v| Zxid(v as i64))
}

/// Encodes `tree` as a snapshot file's bytes (archive + trailer). Pure CPU work.
pub fn encode(tree: &Tree) -> Result<AlignedVec, SnapshotError> {
    // The archive is serialized into a buffer of about its final size and the trailer is
    // appended to it: growing the buffer by doubling, or copying the archive into another one,
    // would copy and fault in the whole snapshot (hundreds of MB for a large tree).
    let estimate = archive_estimate(tree) + TRAILER_BYTES;
    let mut bytes = rkyv::api::high::to_bytes_in::<_, rancor::Error>(
        &SnapshotOf::new(tree),
        AlignedVec::with_capacity(estimate),
    )
    .map_err(|e| SnapshotError::Encode(e.to_string()))?;
    let crc = crc32c::crc32c(&bytes);
    let trailer = trailer(bytes.len(), crc);
    bytes.extend_from_slice(&trailer);
    Ok(bytes)
}

/// Serializes the snapshot of `tree` straight into `file` (buffered, from its start) and
/// appends the trailer: the same bytes as [`encode`], without holding the archive in memory
/// (for a large tree that buffer was the size of the tree again, faulted in for every
/// snapshot). Returns the file and the bytes written.
fn encode_into(
    tree: &Tree,
    (file, direct): (File, bool),
    path: &Path,
) -> Result<(File, u64), SnapshotError> {
    // The checksum runs over the buffer's flushes (a chunk at a time), not over each of the
    // small writes the serializer makes (several per node).
    let out = BufWriter::with_capacity(
        WRITE_BUFFER_BYTES,
        Checksummed {
            inner: Paced::new(file, direct),
            crc: 0,
            len: 0,
        },
    );
    let out = rkyv::api::high::to_bytes_in::<_, rancor::Error>(
        &SnapshotOf::new(tree),
        IoWriter::new(out),
    )
    .map_err(|e| SnapshotError::Encode(format!("{}: {e}", path.display())))?
    .into_inner();
    let checksummed = out
        .into_inner()
        .map_err(|e| io_error("write", path)(e.into_error()))?;
    let trailer = trailer(checksummed.len, checksummed.crc);
    let mut paced = checksummed.inner;
    let file = paced
        .write_all(&trailer)
        .and_then(|()| paced.finish())
        .map_err(io_error("write", path))?;
    Ok((file, (checksummed.len + TRAILER_BYTES) as u64))
}

/// Snapshot bytes written to disk per second at most.
const WRITE_BYTES_PER_S: f64 = 64e6;

/// Bytes handed to writeback at a time. A log flush that comes after a chunk was handed over
/// waits for it: at 128 KiB a chunk costs a flush a fraction of a millisecond (with 1 MiB
/// chunks, write p99 at 10,000 setData/s was 3.5-9 ms while snapshots were written, against
/// 2.1-3 ms with these and 1.4-3 ms without snapshots).
const WRITEBACK_CHUNK_BYTES: usize = 128 << 10;

/// Spreads a snapshot's writes to the disk over time. The disk's cache flush is shared: a log
/// write that waits for one waits for whatever the snapshot has handed the disk before it. So
/// the file is written [`WRITEBACK_CHUNK_BYTES`] at a time and the writer sleeps while it is
/// ahead of `WRITE_BYTES_PER_S`: the snapshot never floods the disk between two log flushes.
///
/// Where the file system allows it the file is opened with O_DIRECT and each chunk is written
/// straight to the disk from an aligned buffer (the last one padded with zeros, which the
/// caller cuts off with `set_len`). Otherwise each chunk goes through the page cache, is handed
/// to writeback as soon as it is written (`sync_file_range`) and the chunk before it is waited
/// for. O_DIRECT also keeps ext4 from allocating the blocks of a growing file as unwritten
/// extents at writeback and converting them one chunk at a time: when a snapshot overwrote an
/// older, smaller file, that conversion freed and reallocated an extent block hundreds of times
/// per snapshot, each free a discard on a file system mounted with `discard`.
struct Paced {
    file: File,
    mode: Mode,
    /// Bytes written to the file.
    written: u64,
    started: std::time::Instant,
}

/// How [`Paced`] reaches the disk.
enum Mode {
    /// O_DIRECT: the aligned chunk being filled, and how much of it is.
    Direct { chunk: AlignedChunk, filled: usize },
    /// The page cache: the bytes before `waited` are known to be on their way to the disk.
    Buffered { waited: u64 },
}

/// Alignment of O_DIRECT buffers, offsets and lengths.
const DIRECT_ALIGN: usize = 4096;

/// A [`WRITEBACK_CHUNK_BYTES`] buffer at a [`DIRECT_ALIGN`]-aligned address (inside a larger
/// vector).
struct AlignedChunk {
    bytes: Vec<u8>,
    start: usize,
}

impl AlignedChunk {
    fn new() -> AlignedChunk {
        let bytes = vec![0; WRITEBACK_CHUNK_BYTES + DIRECT_ALIGN];
        let address = bytes.as_ptr() as usize;
        let start = (DIRECT_ALIGN - address % DIRECT_ALIGN) % DIRECT_ALIGN;
        AlignedChunk { bytes, start }
    }

    fn get_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + WRITEBACK_CHUNK_BYTES]
    }
}

impl Paced {
    fn new(file: File, direct: bool) -> Paced {
        let mode = if direct {
            Mode::Direct {
                chunk: AlignedChunk::new(),
                filled: 0,
            }
        } else {
            Mode::Buffered { waited: 0 }
        };
        Paced {
            file,
            mode,
            written: 0,
            started: std::time::Instant::now(),
        }
    }

    /// Sleeps while the bytes written are ahead of `WRITE_BYTES_PER_S`.
    fn pace(&self) {
        let due = std::time::Duration::from_secs_f64(self.written as f64 / WRITE_BYTES_PER_S);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }

    /// Writes what is left of an O_DIRECT chunk, padded with zeros to whole blocks, and returns
    /// the file (longer than the bytes given by that padding).
    fn finish(mut self) -> std::io::Result<File> {
        use std::os::unix::fs::FileExt;
        if let Mode::Direct { chunk, filled } = &mut self.mode {
            if *filled > 0 {
                let padded = filled.next_multiple_of(DIRECT_ALIGN);
                let block = &mut chunk.get_mut()[..padded];
                block[*filled..].fill(0);
                self.file.write_all_at(block, self.written)?;
            }
        }
        Ok(self.file)
    }
}

/// `sync_file_range` on `file`.
fn sync_range(file: &File, from: u64, len: u64, flags: libc::c_uint) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: sync_file_range on an open descriptor; no memory is passed.
    let result = unsafe { libc::sync_file_range(file.as_raw_fd(), from as i64, len as i64, flags) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Write for Paced {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let start = self.written;
        let taken = match &mut self.mode {
            Mode::Direct { chunk, filled } => {
                let taken = buf.len().min(WRITEBACK_CHUNK_BYTES - *filled);
                chunk.get_mut()[*filled..*filled + taken].copy_from_slice(&buf[..taken]);
                *filled += taken;
                if *filled < WRITEBACK_CHUNK_BYTES {
                    return Ok(taken);
                }
                *filled = 0;
                self.file.write_all_at(chunk.get_mut(), start)?;
                self.written += WRITEBACK_CHUNK_BYTES as u64;
                taken
            }
            Mode::Buffered { waited } => {
                let len = buf.len().min(WRITEBACK_CHUNK_BYTES);
                let written = self.file.write(&buf[..len])?;
                self.written += written as u64;
                // Only pacing: the fsync after the last write is what makes the file durable
                // and reports any write error, so a file system without sync_file_range loses
                // nothing.
                let _ = sync_range(
                    &self.file,
                    start,
                    written as u64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
                if start > *waited {
                    let all = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
                    let _ = sync_range(&self.file, *waited, start - *waited, all);
                    *waited = start;
                }
                written
            }
        };
        self.pace();
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Bytes of the write buffer between the serializer and a snapshot file: one chunk, so that
/// the writer waits for the disk (and perhaps sleeps in [`Paced::pace`]) after every chunk's
/// worth of serializing, a fraction of a millisecond of CPU. With 1 MiB it ran for 2-3 ms and
/// more between waits, and a kernel worker that woke on its CPU meanwhile, the one that
/// completes the log's O_DSYNC writes, could wait up to a scheduler tick (4 ms) to run.
const WRITE_BUFFER_BYTES: usize = WRITEBACK_CHUNK_BYTES;

/// A writer that counts and checksums the bytes that pass through it.
struct Checksummed<W> {
    inner: W,
    crc: u32,
    len: usize,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..written]);
        self.len += written;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The trailer after an archive of `archive_len` bytes with checksum `crc` (module doc).
fn trailer(archive_len: usize, crc: u32) -> [u8; TRAILER_BYTES] {
    let mut trailer = [0; TRAILER_BYTES];
    trailer[..8].copy_from_slice(MAGIC);
    trailer[8..16].copy_from_slice(&(archive_len as u64).to_le_bytes());
    trailer[16..20].copy_from_slice(&crc.to_le_bytes());
    trailer
}

/// About the archive's size for `tree`.
fn archive_estimate(tree: &Tree) -> usize {
    let mut bytes = 4096 + tree.sessions().len() * std::mem::size_of::<ArchivedSessionRecord>();
    tree.for_each_node(|path, node| {
        let data = node.data().map_or(0, |data| data.len());
        bytes += std::mem::size_of::<ArchivedNodeRecord>() + path.len() + data;
    });
    bytes
}

fn acl_record(acl: &Acl) -> AclRecord {
    AclRecord {
        perms: acl.perms,
        scheme: acl.id.scheme.clone(),
        id: acl.id.id.clone(),
    }
}

/// The alignment rkyv's validation requires of an archive's first byte.
const ARCHIVE_ALIGN: usize = AlignedVec::<16>::ALIGNMENT;

/// Checks a snapshot file's bytes without rebuilding the tree (trailer, checksum, archive
/// validation); returns the zxid and node count it records. For `snapshot verify` tools.
pub fn verify(bytes: &[u8]) -> Result<(Zxid, u64), String> {
    let recorded = access(bytes)?.recorded();
    Ok((Zxid(recorded.zxid), recorded.node_count))
}

/// A validated archive, in the layout its trailer names.
enum Archived<'a> {
    Chunks(&'a ArchivedSnapshotChunks),
    V2(&'a ArchivedSnapshotRecord),
}

fn access(bytes: &[u8]) -> Result<Archived<'_>, String> {
    let (archive, crc, chunked) = check_trailer(bytes)?;
    let validate = || {
        let validated = if chunked {
            rkyv::access::<ArchivedSnapshotChunks, rancor::Error>(archive).map(Archived::Chunks)
        } else {
            rkyv::access::<ArchivedSnapshotRecord, rancor::Error>(archive).map(Archived::V2)
        };
        validated.map_err(|e| format!("archive fails validation: {e}"))
    };
    // The checksum and the validation each read the whole archive: for a large one they run
    // side by side. A checksum mismatch is reported before what validation found.
    let (sum, validated) = if archive.len() >= PARALLEL_CHECK_MIN {
        std::thread::scope(|scope| {
            let sum = scope.spawn(|| crc32c::crc32c(archive));
            let validated = validate();
            let sum = sum
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (sum, validated)
        })
    } else {
        (crc32c::crc32c(archive), validate())
    };
    if sum != crc {
        return Err("checksum mismatch".to_string());
    }
    validated
}

/// Archives from this size on are checksummed on a thread of their own while rkyv validates.
const PARALLEL_CHECK_MIN: usize = 4 << 20;

/// Decodes and checks a snapshot file's bytes into a tree. Bytes that are not aligned for the
/// archive (a snapshot received over the network) are copied into an aligned buffer first.
pub fn decode(bytes: &[u8]) -> Result<Tree, String> {
    if !(bytes.as_ptr() as usize).is_multiple_of(ARCHIVE_ALIGN) {
        let mut aligned: AlignedVec = AlignedVec::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        return decode(&aligned);
    }
    let archived = access(bytes)?;
    let recorded = archived.recorded();
    match archived {
        Archived::Chunks(record) => {
            let chunks = &record.nodes;
            let count = chunked_node_count(chunks)?;
            let node_at = |index: usize| &chunks[index / NODE_CHUNK][index % NODE_CHUNK];
            rebuild(&record.acls, count, node_at, &record.sessions, recorded)
        }
        Archived::V2(record) => {
            let nodes = &record.nodes;
            let node_at = |index: usize| &nodes[index];
            rebuild(
                &record.acls,
                nodes.len(),
                node_at,
                &record.sessions,
                recorded,
            )
        }
    }
}

/// The number of nodes in `chunks`, which must all hold [`NODE_CHUNK`] records but the last
/// (one to `NODE_CHUNK`), as the writer makes them: `index / NODE_CHUNK` then finds a node.
fn chunked_node_count(
    chunks: &ArchivedVec<ArchivedVec<ArchivedNodeRecord>>,
) -> Result<usize, String> {
    let Some((last, full)) = chunks.split_last() else {
        return Ok(0);
    };
    if full.iter().any(|chunk| chunk.len() != NODE_CHUNK) || !(1..=NODE_CHUNK).contains(&last.len())
    {
        return Err(format!(
            "node chunks are not of {NODE_CHUNK} records each but the last"
        ));
    }
    Ok(full.len() * NODE_CHUNK + last.len())
}

/// What a snapshot records beside its nodes, checked against the rebuilt tree.
struct Recorded {
    zxid: i64,
    node_count: u64,
    digest: i64,
}

impl Archived<'_> {
    fn recorded(&self) -> Recorded {
        let (zxid, node_count, digest) = match self {
            Archived::Chunks(record) => (record.zxid, record.node_count, record.digest),
            Archived::V2(record) => (record.zxid, record.node_count, record.digest),
        };
        Recorded {
            zxid: zxid.to_native(),
            node_count: node_count.to_native(),
            digest: digest.to_native(),
        }
    }
}

/// Rebuilds the tree from an archive's ACL lists, `count` nodes (`node_at`) and sessions, and
/// checks it against what the archive recorded.
fn rebuild<'a>(
    acls: &ArchivedVec<ArchivedVec<ArchivedAclRecord>>,
    count: usize,
    node_at: impl Fn(usize) -> &'a ArchivedNodeRecord + Sync,
    sessions: &ArchivedVec<ArchivedSessionRecord>,
    recorded: Recorded,
) -> Result<Tree, String> {
    let acls: Vec<Vec<Acl>> = acls
        .iter()
        .map(|list| list.iter().map(acl_from_archive).collect())
        .collect();
    let mut tree = Tree::restore_all(&acls, count, |index| {
        let node = node_at(index);
        RestoredNode {
            path: node.path.as_str(),
            parent: node.parent.to_native(),
            stat: stat_from_archive(node),
            data: node.data.as_ref().map(|d| d.as_slice()),
            acl: node.acl.to_native() as usize,
        }
    })?;
    for session in sessions.iter() {
        tree.restore_session(session.id.to_native(), session.timeout_ms.to_native());
    }
    tree.restore_last_zxid(Zxid(recorded.zxid));
    if tree.node_count() != recorded.node_count || tree.digest() != recorded.digest {
        return Err(format!(
            "rebuilt tree differs: {} nodes digest {:x}, recorded {} nodes digest {:x}",
            tree.node_count(),
            tree.digest(),
            recorded.node_count,
            recorded.digest
        ));
    }
    Ok(tree)
}

/// Checks the trailer; returns the archive bytes, the CRC the trailer records for them, and
/// whether the archive has the current layout (`false`: the previous one, `ZINCSNP2`).
fn check_trailer(bytes: &[u8]) -> Result<(&[u8], u32, bool), String> {
    let Some(archive_len) = bytes.len().checked_sub(TRAILER_BYTES) else {
        return Err("shorter than the trailer".to_string());
    };
    let (archive, trailer) = bytes.split_at(archive_len);
    let chunked = &trailer[..8] == MAGIC;
    if !chunked && &trailer[..8] != MAGIC_V2 {
        return Err("missing trailer magic (truncated or not a snapshot)".to_string());
    }
    let mut len = [0; 8];
    len.copy_from_slice(&trailer[8..16]);
    if u64::from_le_bytes(len) != archive_len as u64 {
        return Err("archive length in the trailer does not match the file".to_string());
    }
    let mut crc = [0; 4];
    crc.copy_from_slice(&trailer[16..20]);
    Ok((archive, u32::from_le_bytes(crc), chunked))
}

fn acl_from_archive(acl: &ArchivedAclRecord) -> Acl {
    Acl {
        perms: acl.perms.to_native(),
        id: Id {
            scheme: acl.scheme.to_string(),
            id: acl.id.to_string(),
        },
    }
}

fn stat_from_archive(node: &ArchivedNodeRecord) -> StatPersisted {
    StatPersisted {
        czxid: node.czxid.to_native(),
        mzxid: node.mzxid.to_native(),
        ctime: node.ctime.to_native(),
        mtime: node.mtime.to_native(),
        version: node.version.to_native(),
        cversion: node.cversion.to_native(),
        aversion: node.aversion.to_native(),
        ephemeral_owner: node.ephemeral_owner.to_native(),
        pzxid: node.pzxid.to_native(),
    }
}

fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `tree` into `dir` durably (temp file, fsync, rename, directory fsync); returns the
/// snapshot's path. Blocking.
pub fn write(dir: &Path, tree: &Tree) -> Result<PathBuf, SnapshotError> {
    write_over(dir, tree, None)
}

/// As [`write`], in the file of the oldest snapshot that keeping the newest `keep` (this one
/// included) retires, if there is one: that file is renamed to the temp name and overwritten
/// in place (then cut to the new length) instead of being deleted. Deleting a snapshot frees
/// hundreds of MB at once, and a file system that discards freed blocks (ext4 mounted with
/// `discard`) then trims them all in one journal commit, stalling the log's writes behind it
/// for a tenth of a second or more; an overwrite frees nothing and allocates little. Blocking.
pub fn write_reusing(dir: &Path, tree: &Tree, keep: usize) -> Result<PathBuf, SnapshotError> {
    assert!(keep >= 1, "keep at least one snapshot");
    let found = list(dir)?;
    let retired = found.get(keep - 1..).and_then(|old| old.last());
    write_over(dir, tree, retired.map(|(_, path)| path.as_path()))
}

fn write_over(dir: &Path, tree: &Tree, reuse: Option<&Path>) -> Result<PathBuf, SnapshotError> {
    std::fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
    let name = snapshot_name(tree.last_zxid());
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", &name[..16]));
    let path = dir.join(name);
    let opened = match reuse {
        Some(old) if old != path => std::fs::rename(old, &tmp)
            .and_then(|()| open_for_writing(&tmp, false))
            .map_err(io_error("reuse", old)),
        _ => open_for_writing(&tmp, true).map_err(io_error("create", &tmp)),
    };
    let written = opened
        .and_then(|file| encode_into(tree, file, &tmp))
        .and_then(|(file, len)| {
            // A reused file may be longer than this snapshot, and an O_DIRECT write ends
            // with padding to a whole block.
            file.set_len(len)
                .and_then(|()| file.sync_all())
                .map_err(io_error("fsync", &tmp))
        })
        .and_then(|()| std::fs::rename(&tmp, &path).map_err(io_error("rename", &tmp)));
    if let Err(error) = written {
        // A partial temp file could keep a full disk full.
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    sync_dir(dir)?;
    Ok(path)
}

/// Opens a snapshot file for writing from its start (created empty if `create`), with
/// O_DIRECT where the file system takes it (not tmpfs); says which.
fn open_for_writing(path: &Path, create: bool) -> std::io::Result<(File, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = |flags: libc::c_int| {
        std::fs::OpenOptions::new()
            .write(true)
            .create(create)
            .truncate(create)
            .custom_flags(flags)
            .open(path)
    };
    match open(libc::O_DIRECT) {
        Ok(file) => Ok((file, true)),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => Ok((open(0)?, false)),
        Err(error) => Err(error),
    }
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync directory", dir))
}

/// Snapshot files in `dir`, newest first.
pub fn list(dir: &Path) -> Result<Vec<(Zxid, PathBuf)>, SnapshotError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name();
        if let Some(zxid) = name.to_str().and_then(parse_snapshot_name) {
            found.push((zxid, entry.path()));
        }
    }
    found.sort_by_key(|(zxid, _)| std::cmp::Reverse(*zxid));
    Ok(found)
}

/// Maps and decodes one snapshot file.
pub fn load(path: &Path) -> Result<Tree, SnapshotError> {
    let file = File::open(path).map_err(io_error("open", path))?;
    // SAFETY: the file is only read through the map; snapshot files are never modified in
    // place (they are written under a temp name and renamed), so the bytes cannot change
    // under us short of another process breaking that rule.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error("mmap", path))?;
    decode(&map).map_err(|reason| SnapshotError::Invalid {
        path: path.to_path_buf(),
        reason,
    })
}

/// The newest valid snapshot in `dir`, with the invalid newer ones it skipped.
pub struct Loaded {
    /// The tree, its zxid and file; `None` if the directory holds no snapshot at all.
    pub newest: Option<(Tree, Zxid, PathBuf)>,
    /// Newer snapshots that failed validation, with why.
    pub skipped: Vec<SnapshotError>,
}

/// Loads the newest snapshot that passes every check, falling back to older ones. Fails if
/// snapshots exist but none is valid.
pub fn load_newest(dir: &Path) -> Result<Loaded, SnapshotError> {
    let found = list(dir)?;
    let mut skipped = Vec::new();
    for (zxid, path) in &found {
        match load(path) {
            Ok(tree) => {
                return Ok(Loaded {
                    newest: Some((tree, *zxid, path.clone())),
                    skipped,
                })
            }
            Err(e) => skipped.push(e),
        }
    }
    match skipped.first() {
        None => Ok(Loaded {
            newest: None,
            skipped,
        }),
        Some(newest) => Err(SnapshotError::NoValidSnapshot {
            dir: dir.to_path_buf(),
            count: found.len(),
            newest: newest.to_string(),
        }),
    }
}

/// Removes all but the newest `keep` snapshots (and leftover temp files); returns the zxid of
/// the oldest snapshot kept, through which the WAL may be purged.
pub fn retain_newest(dir: &Path, keep: usize) -> Result<Option<Zxid>, SnapshotError> {
    assert!(keep >= 1, "keep at least one snapshot");
    let found = list(dir)?;
    for (_, path) in found.iter().skip(keep) {
        std::fs::remove_file(path).map_err(io_error("remove", path))?;
    }
    remove_temp_files(dir)?;
    sync_dir(dir)?;
    Ok(found
        .get(..keep.min(found.len()))
        .and_then(|kept| kept.last())
        .map(|(z, _)| *z))
}

fn remove_temp_files(dir: &Path) -> Result<(), SnapshotError> {
    for entry in std::fs::read_dir(dir).map_err(io_error("list", dir))? {
        let path = entry.map_err(io_error("list", dir))?.path();
        if path.to_str().is_some_and(|p| p.ends_with(TMP_SUFFIX)) {
            std::fs::remove_file(&path).map_err(io_error("remove", &path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// A tree of `count` znodes under `/t` (100 per parent, some with data, one other ACL).
    fn tree_of(count: usize) -> Tree {
        let mut tree = Tree::new();
        let stat = |zxid: i64| StatPersisted {
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            ctime: 1_700_000_000_000 + zxid,
            mtime: 1_700_000_000_000 + zxid,
            ..StatPersisted::default()
        };
        let open = Acl::open_unsafe();
        let read_only = Acl::read_unsafe();
        tree.restore_node("/t", &stat(1), None, &open).unwrap();
        let mut zxid = 1;
        let mut made = 2; // the root and /t
        for parent in 0.. {
            if made >= count {
                break;
            }
            zxid += 1;
            let parent_path = format!("/t/p{parent}");
            tree.restore_node(&parent_path, &stat(zxid), None, &open)
                .unwrap();
            made += 1;
            for child in 0..100 {
                if made >= count {
                    break;
                }
                zxid += 1;
                let data = format!("data {child}").into_bytes();
                let acl = if child % 7 == 0 { &read_only } else { &open };
                let path = format!("{parent_path}/c{child}");
                let data = (child % 3 != 0).then_some(data.as_slice());
                tree.restore_node(&path, &stat(zxid), data, acl).unwrap();
                made += 1;
            }
        }
        tree.restore_session(0x1234, 30_000);
        tree
    }

    /// The tree's nodes as the owned records of the previous layout, in walk order.
    fn owned_records(tree: &Tree) -> (Vec<Vec<AclRecord>>, Vec<NodeRecord>) {
        let lists = tree.acl_lists();
        let acls = lists
            .iter()
            .map(|(_, list)| list.iter().map(acl_record).collect())
            .collect();
        let mut nodes = Vec::new();
        tree.for_each_node_with_parent(|path, parent, node| {
            let stat = node.persisted_stat();
            let acl = lists
                .iter()
                .position(|(id, _)| *id == node.acl_id())
                .unwrap();
            nodes.push(NodeRecord {
                path: path.to_string(),
                czxid: stat.czxid,
                mzxid: stat.mzxid,
                ctime: stat.ctime,
                mtime: stat.mtime,
                version: stat.version,
                cversion: stat.cversion,
                aversion: stat.aversion,
                ephemeral_owner: stat.ephemeral_owner,
                pzxid: stat.pzxid,
                data: node.data().map(<[u8]>::to_vec),
                acl: acl as u32,
                parent,
            });
        });
        (acls, nodes)
    }

    /// `archive` with a trailer of `magic`.
    fn file_of(archive: &[u8], magic: &[u8; 8]) -> AlignedVec {
        let mut bytes = AlignedVec::<16>::new();
        bytes.extend_from_slice(archive);
        let mut end = trailer(archive.len(), crc32c::crc32c(archive));
        end[..8].copy_from_slice(magic);
        bytes.extend_from_slice(&end);
        bytes
    }

    fn assert_same(a: &Tree, b: &Tree) {
        assert_eq!(
            (a.node_count(), a.digest(), a.last_zxid()),
            (b.node_count(), b.digest(), b.last_zxid())
        );
        assert_eq!(a.sessions(), b.sessions());
        a.for_each_node(|path, node| {
            let stat = b.persisted_stat(path).unwrap();
            assert_eq!(stat, node.persisted_stat(), "{path}");
            assert_eq!(b.acl(path).unwrap().0, node.acl(), "{path}");
        });
    }

    #[test]
    fn chunk_boundaries_round_trip() {
        for count in [
            1,
            2,
            NODE_CHUNK - 1,
            NODE_CHUNK,
            NODE_CHUNK + 1,
            2 * NODE_CHUNK + 5,
        ] {
            let tree = tree_of(count);
            // The initial nodes (/zookeeper and below) come on top of `count`.
            assert!(tree.node_count() as usize >= count);
            let restored = decode(&encode(&tree).unwrap()).unwrap();
            assert_same(&tree, &restored);
        }
    }

    #[test]
    fn files_of_the_previous_layout_still_load() {
        let tree = tree_of(NODE_CHUNK + 10);
        let (acls, nodes) = owned_records(&tree);
        let record = SnapshotRecord {
            zxid: tree.last_zxid().0,
            node_count: tree.node_count(),
            digest: tree.digest(),
            acls,
            nodes,
            sessions: vec![SessionRecord {
                id: 0x1234,
                timeout_ms: 30_000,
            }],
        };
        let archive = rkyv::to_bytes::<rancor::Error>(&record).unwrap();
        let file = file_of(&archive, MAGIC_V2);
        assert_eq!(
            verify(&file).unwrap(),
            (tree.last_zxid(), tree.node_count())
        );
        assert_same(&tree, &decode(&file).unwrap());
        // The same archive under the current magic is refused, not misread.
        let mislabeled = file_of(&archive, MAGIC);
        let error = decode(&mislabeled).err().unwrap();
        assert!(error.contains("validation"), "{error}");
    }

    #[test]
    fn chunks_of_uneven_length_are_refused() {
        let tree = tree_of(10);
        let (acls, nodes) = owned_records(&tree);
        let mut chunks = vec![nodes[..4].to_vec(), nodes[4..].to_vec()];
        let record = |nodes: Vec<Vec<NodeRecord>>| SnapshotChunks {
            zxid: tree.last_zxid().0,
            node_count: tree.node_count(),
            digest: tree.digest(),
            acls: acls.clone(),
            nodes,
            sessions: Vec::new(),
        };
        let archive = rkyv::to_bytes::<rancor::Error>(&record(chunks.clone())).unwrap();
        let error = decode(&file_of(&archive, MAGIC)).err().unwrap();
        assert!(error.contains("node chunks"), "{error}");
        // An empty last chunk too.
        chunks = vec![nodes.clone(), Vec::new()];
        let archive = rkyv::to_bytes::<rancor::Error>(&record(chunks)).unwrap();
        let error = decode(&file_of(&archive, MAGIC)).err().unwrap();
        assert!(error.contains("node chunks"), "{error}");
        // Written as the writer does, the same nodes load.
        let archive = rkyv::to_bytes::<rancor::Error>(&record(vec![nodes])).unwrap();
        let mut restored = decode(&file_of(&archive, MAGIC)).unwrap();
        restored.restore_session(0x1234, 30_000);
        assert_same(&tree, &restored);
    }
}
