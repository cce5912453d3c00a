//! Snapshots: a tree (znodes, ACLs, sessions) at one zxid, as an rkyv archive on disk.
//!
//! The tree is copy-on-write, so the writer encodes a clone while the Zab core keeps applying;
//! encoding and writing are blocking calls the server runs off its cores' hot paths (a
//! low-priority queue or a blocking thread). The file is written at a bounded rate, its
//! writeback started chunk by chunk (see `Paced`), so that the log's flushes, which share the
//! disk's cache flush, do not wait behind a burst of snapshot bytes. A snapshot is written to
//! `<name>.tmp`, fsynced, renamed to `snap/<zxid as 16 hex digits>.rkyv` and the directory
//! fsynced, so a crash at any point leaves the previous snapshots intact (a stray `.tmp` is
//! removed later).
//!
//! File layout: the rkyv archive, then a 24-byte trailer: magic `ZINCSNP2`, the archive's
//! length (u64 LE), its CRC32C (u32 LE) and 4 zero bytes. Loading maps the file, checks the
//! trailer and the CRC (bit rot), validates the archive with rkyv's checker (no unchecked
//! access to bytes from disk), rebuilds the tree bottom-up from the archived data in place (each
//! node lists its parent's index, so no path lookups; no intermediate copies), and checks the rebuilt node count and digest against the recorded
//! ones. A snapshot that fails any check is skipped for the next older one.
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

use crate::tree::{NodeRef, RestoredNode, Tree};

pub use trigger::SnapshotTrigger;

/// Bytes of the trailer after the archive.
pub const TRAILER_BYTES: usize = 24;
const MAGIC: &[u8; 8] = b"ZINCSNP2";
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
#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
struct AclRecord {
    perms: i32,
    scheme: String,
    id: String,
}

/// One znode, parents before children.
#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
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

/// The file's layout. Only its archived form is used: decode reads `ArchivedSnapshotRecord`,
/// and `SnapshotOf` writes one.
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

/// What the writer serializes for a `SnapshotRecord`: the same archived type, with the nodes
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
    node_count: usize,
    sessions: VecResolver,
}

impl Archive for SnapshotOf<'_> {
    type Archived = ArchivedSnapshotRecord;
    type Resolver = SnapshotOfResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        munge!(let ArchivedSnapshotRecord { zxid, node_count, digest, acls, nodes, sessions } = out);
        self.tree.last_zxid().0.resolve((), zxid);
        self.tree.node_count().resolve((), node_count);
        self.tree.digest().resolve((), digest);
        ArchivedVec::resolve_from_len(resolver.acl_count, resolver.acls, acls);
        ArchivedVec::resolve_from_len(resolver.node_count, resolver.nodes, nodes);
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
        let (nodes, node_count) = serialize_nodes(self.tree, &ids, serializer)?;
        let sessions = ArchivedVec::serialize_from_slice(&self.sessions, serializer)?;
        Ok(SnapshotOfResolver {
            acls,
            acl_count: acl_records.len(),
            nodes,
            node_count,
            sessions,
        })
    }
}

/// A node's ACL list is not among the tree's interned lists (a bug, reported, never written).
#[derive(Debug, thiserror::Error)]
#[error("node {0} uses an ACL list the tree has not interned")]
struct UnknownAcl(String);

/// Writes the tree's nodes as the archive's node array, in two walks of the tree (which a
/// `&Tree` cannot change between them): the first writes each node's path and data and keeps
/// only their positions, the second writes the fixed-size records that point at them. Each
/// record indexes `acl_ids` (the ACL lists' ids in archive order). Returns the array and its
/// length.
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
    let mut resolvers = Vec::with_capacity(tree.node_count() as usize);
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
        match node_record(path, parent, &node, acl, false).serialize(serializer) {
            Ok(resolver) => resolvers.push((resolver, acl)),
            Err(error) => failed = Some(error),
        }
    });
    if let Some(error) = failed {
        return Err(error);
    }
    let count = resolvers.len();
    let pos = serializer.align_for::<ArchivedNodeRecord>()?;
    let mut resolvers = resolvers.into_iter();
    tree.for_each_node_with_parent(|path, parent, node| {
        if failed.is_some() {
            return;
        }
        let Some((resolver, acl)) = resolvers.next() else {
            return;
        };
        let record = node_record(path, parent, &node, acl, true);
        // SAFETY: the second walk visits the same nodes in the same order with the same paths
        // and data as the first (the tree is borrowed immutably throughout), so `resolver` is
        // what serializing this very record returned; the array started aligned for the
        // records, and each record is written right after the previous one.
        if let Err(error) = unsafe { serializer.resolve_aligned(&record, resolver) } {
            failed = Some(error);
        }
    });
    match failed {
        Some(error) => Err(error),
        None => Ok((VecResolver::from_pos(pos), count)),
    }
}

/// One node's record, its path and data borrowed. The stat is read only for the record itself
/// (`with_stat`): serializing writes just the path and the data.
fn node_record<'a>(
    path: &'a str,
    parent: u32,
    node: &NodeRef<'a>,
    acl: u32,
    with_stat: bool,
) -> NodeOut<'a> {
    NodeOut {
        path: PathStr(path),
        stat: if with_stat {
            node.persisted_stat()
        } else {
            StatPersisted::default()
        },
        data: node.data().map(DataSlice),
        acl,
        parent,
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

/// Serializes the snapshot of `tree` straight into `file` (buffered) and appends the trailer:
/// the same bytes as [`encode`], without holding the archive in memory (for a large tree that
/// buffer was the size of the tree again, faulted in for every snapshot).
fn encode_into(tree: &Tree, file: File, path: &Path) -> Result<File, SnapshotError> {
    // The checksum runs over the buffer's flushes (1 MiB at a time), not over each of the
    // small writes the serializer makes (several per node).
    let out = BufWriter::with_capacity(
        WRITE_BUFFER_BYTES,
        Checksummed {
            inner: Paced::new(file),
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
    let mut file = checksummed.inner.file;
    file.write_all(&trailer).map_err(io_error("write", path))?;
    Ok(file)
}

/// Snapshot bytes written to disk per second at most.
const WRITE_BYTES_PER_S: f64 = 64e6;

/// Spreads a snapshot's writes to the disk over time. The disk's cache flush is shared: a log
/// write that waits for one waits for whatever the snapshot has handed the disk before it. So
/// each chunk is handed to writeback as soon as it is written (`sync_file_range`), the chunk
/// before it is waited for, and the writer sleeps while it is ahead of `WRITE_BYTES_PER_S`:
/// the snapshot never has more than two chunks in flight, nor floods the disk between two log
/// flushes.
struct Paced {
    file: File,
    written: u64,
    waited: u64,
    started: std::time::Instant,
}

impl Paced {
    fn new(file: File) -> Paced {
        Paced {
            file,
            written: 0,
            waited: 0,
            started: std::time::Instant::now(),
        }
    }

    fn sync_range(&self, from: u64, len: u64, flags: libc::c_uint) -> std::io::Result<()> {
        use std::os::unix::io::AsRawFd;
        // SAFETY: sync_file_range on an open descriptor this struct owns; no memory is passed.
        let result =
            unsafe { libc::sync_file_range(self.file.as_raw_fd(), from as i64, len as i64, flags) };
        if result == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

impl Write for Paced {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(buf)?;
        let start = self.written;
        self.written += written as u64;
        // Only pacing: the fsync after the last write is what makes the file durable and
        // reports any write error, so a file system without sync_file_range loses nothing.
        let _ = self.sync_range(start, written as u64, libc::SYNC_FILE_RANGE_WRITE);
        if start > self.waited {
            let all = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            let _ = self.sync_range(self.waited, start - self.waited, all);
            self.waited = start;
        }
        let due = std::time::Duration::from_secs_f64(self.written as f64 / WRITE_BYTES_PER_S);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Bytes of the write buffer between the serializer and a snapshot file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

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
    let record = access(bytes)?;
    Ok((Zxid(record.zxid.to_native()), record.node_count.to_native()))
}

fn access(bytes: &[u8]) -> Result<&ArchivedSnapshotRecord, String> {
    let (archive, crc) = check_trailer(bytes)?;
    let validate = || {
        rkyv::access::<ArchivedSnapshotRecord, rancor::Error>(archive)
            .map_err(|e| format!("archive fails validation: {e}"))
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
    let record = access(bytes)?;
    let acls: Vec<Vec<Acl>> = record
        .acls
        .iter()
        .map(|list| list.iter().map(acl_from_archive).collect())
        .collect();
    let nodes = &record.nodes;
    let mut tree = Tree::restore_all(&acls, nodes.len(), |index| {
        let node = &nodes[index];
        RestoredNode {
            path: node.path.as_str(),
            parent: node.parent.to_native(),
            stat: stat_from_archive(node),
            data: node.data.as_ref().map(|d| d.as_slice()),
            acl: node.acl.to_native() as usize,
        }
    })?;
    for session in record.sessions.iter() {
        tree.restore_session(session.id.to_native(), session.timeout_ms.to_native());
    }
    tree.restore_last_zxid(Zxid(record.zxid.to_native()));
    if tree.node_count() != record.node_count.to_native()
        || tree.digest() != record.digest.to_native()
    {
        return Err(format!(
            "rebuilt tree differs: {} nodes digest {:x}, recorded {} nodes digest {:x}",
            tree.node_count(),
            tree.digest(),
            record.node_count.to_native(),
            record.digest.to_native()
        ));
    }
    Ok(tree)
}

/// Checks the trailer; returns the archive bytes and the CRC the trailer records for them.
fn check_trailer(bytes: &[u8]) -> Result<(&[u8], u32), String> {
    let Some(archive_len) = bytes.len().checked_sub(TRAILER_BYTES) else {
        return Err("shorter than the trailer".to_string());
    };
    let (archive, trailer) = bytes.split_at(archive_len);
    if &trailer[..8] != MAGIC {
        return Err("missing trailer magic (truncated or not a snapshot)".to_string());
    }
    let mut len = [0; 8];
    len.copy_from_slice(&trailer[8..16]);
    if u64::from_le_bytes(len) != archive_len as u64 {
        return Err("archive length in the trailer does not match the file".to_string());
    }
    let mut crc = [0; 4];
    crc.copy_from_slice(&trailer[16..20]);
    Ok((archive, u32::from_le_bytes(crc)))
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
    std::fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
    let name = snapshot_name(tree.last_zxid());
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", &name[..16]));
    let path = dir.join(name);
    let written = File::create(&tmp)
        .map_err(io_error("create", &tmp))
        .and_then(|file| encode_into(tree, file, &tmp))
        .and_then(|file| file.sync_all().map_err(io_error("fsync", &tmp)))
        .and_then(|()| std::fs::rename(&tmp, &path).map_err(io_error("rename", &tmp)));
    if let Err(error) = written {
        // A partial temp file could keep a full disk full.
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    sync_dir(dir)?;
    Ok(path)
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
