//! One znode as stored: a single allocation holding a reference count, the node's digest, the
//! ACL reference, the children trie, and a byte body with the stat, the node's own name and its
//! data. The full path is not stored; it is known from the walk that reached the node.
//!
//! The body packs the stat's fields in as few bytes as each needs, the zxids and times after
//! the first as differences (`mzxid - czxid`, `pzxid - czxid`, `mtime - ctime`): a node that
//! was created and never changed stores its stat in about 16 bytes instead of 60, one changed
//! since in a few bytes more. The fields' lengths come first, so each field is read or written
//! with one word load or store and a mask, not byte by byte. With a 4-byte reference count this
//! keeps a znode with a short name and 100 bytes of data in one 160-byte heap block.
//!
//! Layout of the allocation (8-byte aligned):
//!
//! ```text
//! Header { count: u32, digest: u32, acl: 8 bytes, children: 8 bytes }
//! varint rest            length of everything after this varint
//! varint name_len << 1 | data_is_null
//! name                   name_len bytes (first: trie lookups compare names)
//! stat                   nine 4-bit byte lengths (5 bytes), then nine zigzag-mapped fields in
//!                        those lengths, little endian: czxid, mzxid - czxid, pzxid - czxid,
//!                        ctime, mtime - ctime, version, cversion, aversion, ephemeralOwner
//! data                   the rest
//! ```

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{self, AtomicU32, Ordering};

use bytes::Bytes;
use zinc_protocol::{Stat, StatPersisted};

use super::acl::AclRef;
use super::trie::{allocate_with_header, prefetch_address, Drain, Leaf, Trie, PREFETCH_AHEAD};

/// Longest child name the layout can hold (the body length is a `u32`).
pub(crate) const NAME_BYTES_MAX: usize = (u32::MAX >> 2) as usize;
/// Most bytes a body (stat, name and data) can take.
const BODY_BYTES_MAX: usize = u32::MAX as usize;
/// Fields of a stored stat.
const STAT_FIELDS: usize = 9;
/// Bytes at the start of a stored stat holding its fields' lengths, four bits each.
const STAT_LENGTHS_BYTES: usize = 5;
/// Most bytes of an encoded stat: the lengths and nine fields of at most eight bytes.
const STAT_BYTES_MAX: usize = STAT_LENGTHS_BYTES + STAT_FIELDS * 8;
/// A buffer for a stat: room for eight bytes past the longest one, so every field is read
/// and written with one eight-byte load or store.
const STAT_BUFFER_BYTES: usize = STAT_BYTES_MAX + 8;
/// Clones beyond this panic, so the count cannot wrap.
const COUNT_MAX: u32 = u32::MAX / 2;

/// The fixed part at the start of every node's allocation.
#[repr(C)]
struct Header {
    count: AtomicU32,
    /// This node's contribution to the tree digest (see `node_digest`).
    digest: u32,
    acl: AclRef,
    children: Trie<Node>,
}

const HEADER_BYTES: usize = std::mem::size_of::<Header>();

/// A znode: cheap to clone (one reference count), copied only when written while shared.
pub(crate) struct Node(NonNull<Header>);

// SAFETY: a node is immutable while shared (every write goes through `&mut Node` and copies the
// allocation unless the count is 1), the count is atomic, and the header's fields are Send and
// Sync; so sharing and sending nodes across threads is as safe as for `Arc<Header>`.
unsafe impl Send for Node {}
// SAFETY: as for `Send` above.
unsafe impl Sync for Node {}

impl Leaf for Node {
    type Key = [u8];
    fn key(&self) -> &[u8] {
        self.name()
    }

    /// The first cache line: the header (with the count), the name and the stat (what walks
    /// read).
    fn prefetch(&self) {
        prefetch_address(self.0.as_ptr().cast::<u8>());
    }
}

/// A new node: its full path (for the digest; the name is its last component) and the stat
/// fields it starts with.
pub(crate) struct NewNode<'a> {
    pub(crate) path: &'a str,
    pub(crate) data: Option<&'a [u8]>,
    pub(crate) acl: AclRef,
    pub(crate) ephemeral_owner: i64,
    pub(crate) zxid: i64,
    pub(crate) time: i64,
}

/// Where the parts of a node's body are.
struct Parts<'a> {
    stat: &'a [u8],
    /// The stat and what follows it (for reading the stat a word at a time).
    from_stat: &'a [u8],
    name: &'a [u8],
    data: Option<&'a [u8]>,
}

impl Node {
    pub(crate) fn new(fields: NewNode<'_>) -> Node {
        Node::created(fields).0
    }

    /// A new node and its client stat.
    pub(crate) fn created(fields: NewNode<'_>) -> (Node, Stat) {
        let stat = StatPersisted {
            czxid: fields.zxid,
            mzxid: fields.zxid,
            pzxid: fields.zxid,
            ctime: fields.time,
            mtime: fields.time,
            ephemeral_owner: fields.ephemeral_owner,
            version: 0,
            cversion: 0,
            aversion: 0,
        };
        let data_len = fields.data.map_or(0, <[u8]>::len);
        let node = Node::restored(fields.path, &stat, fields.data, fields.acl, Trie::default());
        (node, client_stat(&stat, data_len, 0))
    }

    /// A node as a snapshot recorded it, with its children already built and its digest
    /// computed for `path`.
    pub(crate) fn restored(
        path: &str,
        stat: &StatPersisted,
        data: Option<&[u8]>,
        acl: AclRef,
        children: Trie<Node>,
    ) -> Node {
        let digest = node_digest(path, data, stat);
        Node::build(digest, acl, children, stat, last_component(path), data)
    }

    /// One new allocation holding all of a node's parts, with a count of 1.
    fn build(
        digest: u32,
        acl: AclRef,
        children: Trie<Node>,
        stat: &StatPersisted,
        name: &[u8],
        data: Option<&[u8]>,
    ) -> Node {
        assert!(name.len() <= NAME_BYTES_MAX, "znode name too long");
        let mut stat_bytes = [0u8; STAT_BUFFER_BYTES];
        let stat_len = encode_stat(stat, &mut stat_bytes);
        let data_bytes = data.unwrap_or_default();
        let tag = (name.len() as u64) << 1 | u64::from(data.is_none());
        let rest = varint_len(tag) + stat_len + name.len() + data_bytes.len();
        assert!(rest <= BODY_BYTES_MAX, "znode too large");
        let header = allocate_with_header(
            layout_for(rest),
            Header {
                count: AtomicU32::new(1),
                digest,
                acl,
                children,
            },
        );
        // SAFETY: the allocation is sized by `layout_for(rest)` for the header followed by the
        // varint of `rest` and `rest` bytes; every byte written below lies in it.
        unsafe {
            let mut at = header.as_ptr().cast::<u8>().add(HEADER_BYTES);
            for part in [
                &varint(rest as u64)[..],
                &varint(tag)[..],
                name,
                &stat_bytes[..stat_len],
                data_bytes,
            ] {
                std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
        }
        Node(header)
    }

    fn header(&self) -> &Header {
        // SAFETY: the pointer is to a live allocation while `self` holds a count.
        unsafe { self.0.as_ref() }
    }

    /// Everything after the header: the `rest` varint's bytes excluded.
    fn body(&self) -> &[u8] {
        // SAFETY: the allocation holds, after the header, the varint of `rest` (written by
        // `build`, at most five bytes as `rest` fits in a u32) and then `rest` bytes; nothing
        // writes them while `&self` is borrowed (writes need `&mut self` and a count of 1).
        unsafe {
            let start = self.0.as_ptr().cast::<u8>().add(HEADER_BYTES);
            let (rest, skip) = read_raw_varint(start);
            std::slice::from_raw_parts(start.add(skip), rest as usize)
        }
    }

    fn parts(&self) -> Parts<'_> {
        let body = self.body();
        let (tag, tag_len) = read_varint(body);
        let (name, after) = body[tag_len..].split_at((tag >> 1) as usize);
        let (stat, data) = after.split_at(stat_len(after));
        Parts {
            stat,
            from_stat: after,
            name,
            data: (tag & 1 == 0).then_some(data),
        }
    }

    pub(crate) fn name(&self) -> &[u8] {
        let body = self.body();
        let (tag, tag_len) = read_varint(body);
        &body[tag_len..tag_len + (tag >> 1) as usize]
    }

    /// The data, `None` when the node holds null data.
    pub(crate) fn data(&self) -> Option<&[u8]> {
        self.parts().data
    }

    pub(crate) fn data_bytes(&self) -> Option<Bytes> {
        self.data().map(Bytes::copy_from_slice)
    }

    pub(crate) fn digest(&self) -> u32 {
        self.header().digest
    }

    pub(crate) fn acl(&self) -> &AclRef {
        &self.header().acl
    }

    pub(crate) fn children(&self) -> &Trie<Node> {
        &self.header().children
    }

    /// The stat as ZooKeeper persists it; `cversion` is children ever created (what txns and
    /// sequential names use); clients see `2 * cversion - numChildren`.
    pub(crate) fn persisted_stat(&self) -> StatPersisted {
        decode_stat(self.parts().from_stat)
    }

    /// The ephemeral owner alone (the stat's last field), without decoding the others.
    pub(crate) fn ephemeral_owner(&self) -> i64 {
        let stat = self.parts().stat;
        let lengths = stat_lengths(stat);
        let len = ((lengths >> (4 * (STAT_FIELDS - 1))) & 0xf) as usize;
        let mut bytes = [0u8; 8];
        bytes[..len].copy_from_slice(&stat[stat.len() - len..]);
        unzigzag(u64::from_le_bytes(bytes))
    }

    pub(crate) fn stat(&self) -> Stat {
        let parts = self.parts();
        client_stat(
            &decode_stat(parts.from_stat),
            parts.data.map_or(0, <[u8]>::len),
            self.children().len(),
        )
    }

    fn is_unique(&self) -> bool {
        self.header().count.load(Ordering::Acquire) == 1
    }

    /// A new allocation with this node's name, ACL and children and the given digest, stat
    /// and data (how a shared node is written: the clone keeps the old one).
    fn copy_with(&self, digest: u32, stat: &StatPersisted, data: Option<&[u8]>) -> Node {
        Node::build(
            digest,
            self.acl().clone(),
            self.children().clone(),
            stat,
            self.name(),
            data,
        )
    }

    /// The header for writing, copying the node first if a clone still shares it.
    fn header_mut(&mut self) -> &mut Header {
        if !self.is_unique() {
            let parts = self.parts();
            *self = self.copy_with(self.digest(), &decode_stat(parts.from_stat), parts.data);
        }
        // SAFETY: the count is 1 and `self` is borrowed mutably, so no other reference to the
        // allocation exists while the returned borrow lives.
        unsafe { self.0.as_mut() }
    }

    /// The children, for writing (the node is copied first if shared).
    pub(crate) fn children_mut(&mut self) -> &mut Trie<Node> {
        &mut self.header_mut().children
    }

    pub(crate) fn set_acl(&mut self, acl: AclRef) {
        self.header_mut().acl = acl;
    }

    /// Changes the stat of the node at `path` and its digest with it, returning the (old, new)
    /// digest: in place when the node is not shared (the allocation resized if the stat's
    /// length changes), otherwise in a new allocation.
    pub(crate) fn update_stat(
        &mut self,
        path: &str,
        change: impl FnOnce(&mut StatPersisted),
    ) -> (u32, u32) {
        let old = self.digest();
        let parts = self.parts();
        let before = decode_stat(parts.from_stat);
        let mut stat = before;
        change(&mut stat);
        let new = stat_digest_change(path, old, &before, &stat);
        let mut encoded = [0u8; STAT_BUFFER_BYTES];
        let len = encode_stat(&stat, &mut encoded);
        let offset = parts.stat.as_ptr() as usize - self.0.as_ptr() as usize;
        if !self.is_unique() {
            *self = self.copy_with(new, &stat, parts.data);
        } else if parts.stat.len() == len {
            // SAFETY: the node is unique and borrowed mutably, and its stat occupies `len` bytes
            // at `offset` in its allocation.
            unsafe {
                let at = self.0.as_ptr().cast::<u8>().add(offset);
                std::ptr::copy_nonoverlapping(encoded.as_ptr(), at, len);
                (*self.0.as_ptr()).digest = new;
            }
        } else {
            self.rewrite_unique(new, &encoded[..len], NewData::Keep);
        }
        (old, new)
    }

    /// Gives the node at `path` new data and the stat `change` makes, returning the (old, new)
    /// digest and the client stat: in place when the node is not shared (the allocation
    /// resized when the body's length changes, which the allocator mostly does without
    /// moving it), otherwise in a new allocation.
    pub(crate) fn set_data(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        change: impl FnOnce(&mut StatPersisted),
    ) -> (u32, u32, Stat) {
        let old = self.digest();
        let parts = self.parts();
        let mut stat = decode_stat(parts.from_stat);
        change(&mut stat);
        let new = node_digest(path, data, &stat);
        let client = client_stat(&stat, data.map_or(0, <[u8]>::len), self.children().len());
        if self.is_unique() {
            let mut encoded = [0u8; STAT_BUFFER_BYTES];
            let len = encode_stat(&stat, &mut encoded);
            self.rewrite_unique(new, &encoded[..len], NewData::Set(data));
        } else {
            *self = self.copy_with(new, &stat, data);
        }
        (old, new, client)
    }

    /// Rewrites the body of a node no clone shares for an encoded stat and new (or the same)
    /// data, keeping the name: the allocation is resized to the new body (grown before the
    /// parts move, shrunk after) and the parts moved to their new offsets.
    fn rewrite_unique(&mut self, digest: u32, stat: &[u8], data: NewData<'_>) {
        debug_assert!(self.is_unique());
        let parts = self.parts();
        let base = self.0.as_ptr().cast::<u8>();
        let offset = |bytes: &[u8]| bytes.as_ptr() as usize - base as usize;
        let old_rest = self.body().len();
        let name_len = parts.name.len();
        let old_name_at = offset(parts.name);
        let old_data_at = offset(parts.stat) + parts.stat.len();
        let old_data_len = HEADER_BYTES + varint_len(old_rest as u64) + old_rest - old_data_at;
        let (data_is_null, data_len) = match data {
            NewData::Keep => (parts.data.is_none(), old_data_len),
            NewData::Set(new) => (new.is_none(), new.map_or(0, <[u8]>::len)),
        };
        let tag = (name_len as u64) << 1 | u64::from(data_is_null);
        let rest = varint_len(tag) + name_len + stat.len() + data_len;
        assert!(rest <= BODY_BYTES_MAX, "znode too large");
        let (old_layout, new_layout) = (layout_for(old_rest), layout_for(rest));
        let rest_varint = varint(rest as u64);
        let tag_varint = varint(tag);
        let name_at = HEADER_BYTES + rest_varint.len() + tag_varint.len();
        let stat_at = name_at + name_len;
        let data_at = stat_at + stat.len();
        let resize = |base: *mut u8| {
            // SAFETY: `base` is this node's allocation, made with `old_layout` (a node's layout
            // depends only on its body's length); nothing else refers to it (count 1).
            let moved = unsafe { alloc::realloc(base, old_layout, new_layout.size()) };
            if moved.is_null() {
                alloc::handle_alloc_error(new_layout);
            }
            moved
        };
        // SAFETY: the node is unique and borrowed mutably, so this is the only access to its
        // allocation. Every copy below lies within the allocation as sized at that point: it
        // is grown before any part moves and shrunk only after they have; the name and kept
        // data move with `ptr::copy` (overlap allowed), in the order that does not overwrite
        // one's source with the other (when the stat grows both move right, data first; when
        // it shrinks both move left, name first). New data comes from the txn, never from the
        // node.
        unsafe {
            let mut base = base;
            if new_layout.size() > old_layout.size() {
                base = resize(base);
            }
            let move_name = |base: *mut u8| {
                std::ptr::copy(base.add(old_name_at), base.add(name_at), name_len);
            };
            match data {
                NewData::Keep if data_at > old_data_at => {
                    std::ptr::copy(base.add(old_data_at), base.add(data_at), data_len);
                    move_name(base);
                }
                NewData::Keep => {
                    move_name(base);
                    std::ptr::copy(base.add(old_data_at), base.add(data_at), data_len);
                }
                NewData::Set(new) => {
                    move_name(base);
                    let new = new.unwrap_or_default();
                    std::ptr::copy_nonoverlapping(new.as_ptr(), base.add(data_at), new.len());
                }
            }
            if new_layout.size() < old_layout.size() {
                base = resize(base);
            }
            for (at, part) in [
                (HEADER_BYTES, &rest_varint[..]),
                (HEADER_BYTES + rest_varint.len(), &tag_varint[..]),
                (stat_at, stat),
            ] {
                std::ptr::copy_nonoverlapping(part.as_ptr(), base.add(at), part.len());
            }
            (*base.cast::<Header>()).digest = digest;
            self.0 = NonNull::new_unchecked(base.cast::<Header>());
        }
    }
}

/// The data a rewritten node body holds.
#[derive(Clone, Copy)]
enum NewData<'a> {
    /// The node's own data, moved to its new offset.
    Keep,
    /// Data from a txn (`None`: null data).
    Set(Option<&'a [u8]>),
}

/// The stat a client sees for a node with this persisted stat, data length and children.
pub(crate) fn client_stat(stat: &StatPersisted, data_len: usize, num_children: usize) -> Stat {
    let num_children = num_children as i32;
    Stat {
        czxid: stat.czxid,
        mzxid: stat.mzxid,
        ctime: stat.ctime,
        mtime: stat.mtime,
        version: stat.version,
        cversion: stat.cversion.wrapping_mul(2).wrapping_sub(num_children),
        aversion: stat.aversion,
        ephemeral_owner: stat.ephemeral_owner,
        data_length: data_len as i32,
        num_children,
        pzxid: stat.pzxid,
    }
}

/// The last component of `path` (empty for the root).
fn last_component(path: &str) -> &[u8] {
    // A byte loop from the end: names are short, and `rfind`'s general search costs more to
    // set up than the few bytes it would skip.
    let bytes = path.as_bytes();
    match bytes.iter().rposition(|byte| *byte == b'/') {
        Some(slash) => &bytes[slash + 1..],
        None => b"",
    }
}

impl Clone for Node {
    fn clone(&self) -> Node {
        let count = &self.header().count;
        if count.fetch_add(1, Ordering::Relaxed) > COUNT_MAX {
            // Undone before panicking, so the count stays far from wrapping even if the panic
            // is caught and cloning goes on.
            count.fetch_sub(1, Ordering::Relaxed);
            panic!("znode cloned more than {COUNT_MAX} times");
        }
        Node(self.0)
    }
}

impl Drop for Node {
    /// Releases a subtree with explicit stacks: dropping a very deep path of nodes recursively
    /// could overflow the thread's stack.
    fn drop(&mut self) {
        let mut freeing = Freeing::default();
        // SAFETY: `self` holds one count, given up here and never used again.
        unsafe { release(self.0, &mut freeing.branches) };
        while freeing.step(usize::MAX) {}
    }
}

/// A subtree being freed a bounded amount of work at a time: the nodes whose counts are still
/// to give up (one count each) and the children tries' branches still to free.
#[derive(Default)]
pub(crate) struct Freeing {
    nodes: Vec<Node>,
    branches: Drain<Node>,
}

impl Freeing {
    /// Gives up `node`'s count, in the steps that follow.
    pub(crate) fn new(node: Node) -> Freeing {
        Freeing {
            nodes: vec![node],
            branches: Drain::default(),
        }
    }

    /// Gives up at most `budget` nodes' counts or trie branches (freeing those nothing else
    /// holds). False once nothing is left.
    pub(crate) fn step(&mut self, budget: usize) -> bool {
        for _ in 0..budget {
            if self.branches.step(&mut self.nodes) {
                continue;
            }
            let Some(node) = self.nodes.pop() else {
                return false;
            };
            if let Some(ahead) = self.nodes.len().checked_sub(PREFETCH_AHEAD) {
                self.nodes[ahead].prefetch();
            }
            let node = std::mem::ManuallyDrop::new(node);
            // SAFETY: `node` held one count; it is given up here and the `ManuallyDrop` keeps
            // `Drop` from giving it up again.
            unsafe { release(node.0, &mut self.branches) };
        }
        true
    }
}

/// Gives up one count of the node at `header`; when it was the last, frees the node, handing
/// its children trie to `branches` (which frees the branches and children no other trie
/// shares in later steps).
///
/// # Safety
/// The caller owns one count of a live node at `header` and does not use it afterwards.
unsafe fn release(header: NonNull<Header>, branches: &mut Drain<Node>) {
    // SAFETY: the caller's count keeps the allocation alive until the decrement below.
    let count = unsafe { &header.as_ref().count };
    if count.fetch_sub(1, Ordering::Release) != 1 {
        return;
    }
    atomic::fence(Ordering::Acquire);
    // SAFETY: that was the last count: nothing else refers to the allocation any more. The
    // body's length is read before the header's fields are dropped and the memory freed with
    // the layout it was allocated with.
    unsafe {
        let raw = header.as_ptr();
        let (rest, _) = read_raw_varint(raw.cast::<u8>().add(HEADER_BYTES));
        branches.take(&mut (*raw).children);
        std::ptr::drop_in_place(raw);
        alloc::dealloc(raw.cast::<u8>(), layout_for(rest as usize));
    }
}

fn layout_for(rest: usize) -> Layout {
    let size = HEADER_BYTES + varint_len(rest as u64) + rest;
    match Layout::from_size_align(size, std::mem::align_of::<Header>()) {
        Ok(layout) => layout,
        Err(_) => unreachable!("a body of at most 4 GiB has a valid layout"),
    }
}

// ----- variable-length integers (LEB128; signed values zigzag-mapped) -----

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros()).div_ceil(7) as usize
}

fn varint(value: u64) -> VarInt {
    let mut out = VarInt {
        bytes: [0; 10],
        len: 0,
    };
    out.len = put_varint(value, &mut out.bytes);
    out
}

struct VarInt {
    bytes: [u8; 10],
    len: usize,
}

impl std::ops::Deref for VarInt {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn put_varint(mut value: u64, out: &mut [u8]) -> usize {
    let mut at = 0;
    while value >= 0x80 {
        out[at] = value as u8 | 0x80;
        value >>= 7;
        at += 1;
    }
    out[at] = value as u8;
    at + 1
}

fn read_varint(bytes: &[u8]) -> (u64, usize) {
    let mut value = 0u64;
    for (at, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * at);
        if byte & 0x80 == 0 {
            return (value, at + 1);
        }
    }
    unreachable!("a node body holds only complete varints")
}

/// Reads the varint at `start` (the `rest` length, at most five bytes).
///
/// # Safety
/// `start` points to a complete varint written by `build`.
unsafe fn read_raw_varint(start: *const u8) -> (u64, usize) {
    let mut value = 0u64;
    let mut at = 0;
    loop {
        // SAFETY: the caller guarantees a complete varint at `start`; `at` stays within it.
        let byte = unsafe { *start.add(at) };
        value |= u64::from(byte & 0x7f) << (7 * at);
        at += 1;
        if byte & 0x80 == 0 {
            return (value, at);
        }
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    (value >> 1) as i64 ^ -((value & 1) as i64)
}

/// The stat's nine fields as stored: zigzag-mapped, the later zxids and times as differences.
fn stored_fields(stat: &StatPersisted) -> [u64; STAT_FIELDS] {
    [
        stat.czxid,
        stat.mzxid.wrapping_sub(stat.czxid),
        stat.pzxid.wrapping_sub(stat.czxid),
        stat.ctime,
        stat.mtime.wrapping_sub(stat.ctime),
        i64::from(stat.version),
        i64::from(stat.cversion),
        i64::from(stat.aversion),
        stat.ephemeral_owner,
    ]
    .map(zigzag)
}

/// Encodes `stat` at the start of `out` and returns its length: the nine fields' byte
/// lengths (0 to 8, four bits each, in five bytes), then each field's low bytes, little
/// endian. Each field is written with one eight-byte store (the buffer has room past the
/// longest stat for the last one).
fn encode_stat(stat: &StatPersisted, out: &mut [u8; STAT_BUFFER_BYTES]) -> usize {
    let mut lengths = 0u64;
    let mut at = STAT_LENGTHS_BYTES;
    for (index, value) in stored_fields(stat).into_iter().enumerate() {
        let len = (64 - value.leading_zeros() as usize).div_ceil(8);
        out[at..at + 8].copy_from_slice(&value.to_le_bytes());
        lengths |= (len as u64) << (4 * index);
        at += len;
    }
    out[..STAT_LENGTHS_BYTES].copy_from_slice(&lengths.to_le_bytes()[..STAT_LENGTHS_BYTES]);
    at
}

/// The nine four-bit field lengths at the start of an encoded stat.
fn stat_lengths(bytes: &[u8]) -> u64 {
    let mut lengths = [0u8; 8];
    lengths[..STAT_LENGTHS_BYTES].copy_from_slice(&bytes[..STAT_LENGTHS_BYTES]);
    u64::from_le_bytes(lengths)
}

/// Length of the encoded stat at the start of `bytes`.
fn stat_len(bytes: &[u8]) -> usize {
    stat_len_of(stat_lengths(bytes))
}

/// Length of an encoded stat with these field lengths.
fn stat_len_of(lengths: u64) -> usize {
    // Add the nibbles: pairs into bytes, then the five bytes into the top one of the product.
    let pairs = (lengths & 0x0f_0f0f_0f0f) + ((lengths >> 4) & 0x0f_0f0f_0f0f);
    STAT_LENGTHS_BYTES + ((pairs.wrapping_mul(0x01_0101_0101) >> 32) & 0xff) as usize
}

/// Decodes the stat at the start of `bytes` (which may go on past it).
fn decode_stat(bytes: &[u8]) -> StatPersisted {
    // Each field is one eight-byte load: from `bytes` when eight bytes follow the stat (the
    // node's data), otherwise from a copy with room after it.
    let lengths = stat_lengths(bytes);
    let len = stat_len_of(lengths);
    let mut buffer = [0u8; STAT_BUFFER_BYTES];
    let bytes = if bytes.len() >= len + 8 {
        bytes
    } else {
        buffer[..len].copy_from_slice(&bytes[..len]);
        &buffer[..]
    };
    let mut fields = [0i64; STAT_FIELDS];
    let mut at = STAT_LENGTHS_BYTES;
    for (index, field) in fields.iter_mut().enumerate() {
        let field_len = ((lengths >> (4 * index)) & 0xf) as usize;
        let word = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        // The low `field_len` bytes (two shifts: one of 64 would overflow).
        let mask = ((1u64 << (4 * field_len)) << (4 * field_len)).wrapping_sub(1);
        *field = unzigzag(word & mask);
        at += field_len;
    }
    let [czxid, mzxid, pzxid, ctime, mtime, version, cversion, aversion, owner] = fields;
    StatPersisted {
        czxid,
        mzxid: czxid.wrapping_add(mzxid),
        pzxid: czxid.wrapping_add(pzxid),
        ctime,
        mtime: ctime.wrapping_add(mtime),
        version: version as i32,
        cversion: cversion as i32,
        aversion: aversion as i32,
        ephemeral_owner: owner,
    }
}

/// The stat's bytes as the digest reads them: ZooKeeper's order, big endian.
fn digest_stat_bytes(stat: &StatPersisted) -> [u8; DIGEST_STAT_BYTES] {
    let mut bytes = [0u8; DIGEST_STAT_BYTES];
    let longs = [stat.czxid, stat.mzxid, stat.pzxid, stat.ctime, stat.mtime];
    for (at, value) in longs.iter().enumerate() {
        bytes[at * 8..at * 8 + 8].copy_from_slice(&value.to_be_bytes());
    }
    let ints = [stat.version, stat.cversion, stat.aversion];
    for (at, value) in ints.iter().enumerate() {
        bytes[40 + at * 4..44 + at * 4].copy_from_slice(&value.to_be_bytes());
    }
    bytes[52..60].copy_from_slice(&stat.ephemeral_owner.to_be_bytes());
    bytes
}

/// Bytes of a stat in the digest.
const DIGEST_STAT_BYTES: usize = 60;
/// CRC-32 of as many zero bytes as a stat takes in the digest (`stat_digest_change`).
const ZERO_STAT_CRC: u32 = 0x0412_8908;

/// The digest of the node at `path` after its stat changed from `old` to `new` (path and
/// data unchanged), from its digest before, without reading the path or data again. CRC-32 is
/// affine: for messages of one length, crc(a) ^ crc(b) is the CRC without the initial and
/// final inversions of a ^ b, and leading zero bytes leave that unchanged; a ^ b is zero but
/// in the stat at the end, so crc(a) ^ crc(b) = crc(stat delta) ^ crc(zero stat). A parent's
/// digest therefore costs the same whatever the size of its data.
fn stat_digest_change(path: &str, digest: u32, old: &StatPersisted, new: &StatPersisted) -> u32 {
    if path.starts_with("/zookeeper/") {
        return 0;
    }
    let mut delta = digest_stat_bytes(old);
    for (byte, changed) in delta.iter_mut().zip(digest_stat_bytes(new)) {
        *byte ^= changed;
    }
    digest ^ crc32fast::hash(&delta) ^ ZERO_STAT_CRC
}

/// The per-node digest: CRC-32 of path, data and the persisted stat, the same function Apache
/// ZooKeeper uses (digest version 2), so equal trees have equal digests on either server. Nodes
/// under `/zookeeper/` count as zero, and the root is hashed under the empty path.
pub(crate) fn node_digest(path: &str, data: Option<&[u8]>, stat: &StatPersisted) -> u32 {
    if path.starts_with("/zookeeper/") {
        return 0;
    }
    let path = if path == "/" { "" } else { path };
    let data = data.unwrap_or_default();
    let bytes = digest_stat_bytes(stat);
    // One pass over one buffer when the node is small: each separate update of the hasher
    // ends in its own reduction, which costs more than the bytes of a small node.
    // The buffer is not zeroed first: only the bytes copied into it are read.
    let mut small = std::mem::MaybeUninit::<[u8; DIGEST_BUFFER]>::uninit();
    let total = path.len() + data.len() + bytes.len();
    if total <= DIGEST_BUFFER {
        let start = small.as_mut_ptr().cast::<u8>();
        // SAFETY: the three parts fill the first `total` bytes of the buffer, which holds
        // `DIGEST_BUFFER` >= `total`; only those bytes are read, after they are written.
        let all = unsafe {
            let mut at = start;
            for part in [path.as_bytes(), data, &bytes[..]] {
                std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
            std::slice::from_raw_parts(start, total)
        };
        return crc32fast::hash(all);
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(path.as_bytes());
    crc.update(data);
    crc.update(&bytes);
    crc.finalize()
}

/// Nodes whose path, data and stat fit in this many bytes are digested in one pass.
const DIGEST_BUFFER: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;
    use zinc_protocol::Acl;

    fn acl() -> AclRef {
        AclRef::new(Acl::open_unsafe())
    }

    fn stat_with(seed: i64) -> StatPersisted {
        StatPersisted {
            czxid: seed,
            mzxid: seed.wrapping_mul(7),
            pzxid: i64::MIN.wrapping_add(seed),
            ctime: i64::MAX.wrapping_sub(seed),
            mtime: seed.wrapping_neg(),
            version: seed as i32,
            cversion: i32::MIN,
            aversion: -1,
            ephemeral_owner: seed.wrapping_mul(-3),
        }
    }

    #[test]
    fn parts_come_back_as_built() {
        for seed in [0, 1, -1, 63, 64, 1 << 40, i64::MAX, i64::MIN, 0x1_0000_0001] {
            for data in [
                None,
                Some(&b""[..]),
                Some(&b"value"[..]),
                Some(&[7u8; 300][..]),
            ] {
                for name in [&b""[..], b"n", &[b'x'; 200][..]] {
                    let node = Node::build(9, acl(), Trie::default(), &stat_with(seed), name, data);
                    assert_eq!(node.name(), name);
                    assert_eq!(node.data(), data);
                    assert_eq!(node.persisted_stat(), stat_with(seed));
                    assert_eq!(node.digest(), 9);
                }
            }
        }
    }

    #[test]
    fn stats_come_back_at_every_field_length() {
        let mut values = vec![0i64, -1, i64::MAX, i64::MIN];
        for bits in 0..63 {
            values.extend([1i64 << bits, -(1i64 << bits), (1i64 << bits) - 1]);
        }
        for (at, value) in values.iter().enumerate() {
            let other = values[(at * 7 + 3) % values.len()];
            let stat = StatPersisted {
                czxid: *value,
                mzxid: other,
                pzxid: value.wrapping_add(other),
                ctime: other,
                mtime: *value,
                version: *value as i32,
                cversion: other as i32,
                aversion: (*value >> 32) as i32,
                ephemeral_owner: other.wrapping_neg(),
            };
            let mut encoded = [0xa5u8; STAT_BUFFER_BYTES];
            let len = encode_stat(&stat, &mut encoded);
            assert!(len <= STAT_BYTES_MAX);
            assert_eq!(stat_len(&encoded), len, "{stat:?}");
            // Alone (no bytes after it) and followed by other bytes.
            assert_eq!(decode_stat(&encoded[..len]), stat, "{stat:?}");
            assert_eq!(decode_stat(&encoded), stat, "{stat:?}");
            let node = Node::build(0, acl(), Trie::default(), &stat, b"n", None);
            assert_eq!(node.ephemeral_owner(), stat.ephemeral_owner, "{stat:?}");
        }
    }

    #[test]
    fn a_fresh_node_is_small() {
        let node = Node::new(NewNode {
            path: "/d/n000123",
            data: Some(&[0u8; 100]),
            acl: acl(),
            ephemeral_owner: 0,
            zxid: (1 << 32) + 123_456,
            time: 1_764_547_200_000,
        });
        // The stat: five bytes of lengths, czxid in five bytes, ctime in six, zero fields in
        // none.
        assert_eq!(node.body().len(), 1 + 16 + 7 + 100);
        assert_eq!(layout_for(node.body().len()).size(), 149);
    }

    #[test]
    fn stat_updates_in_place_or_by_copy() {
        let digest = node_digest("/a", Some(b"d"), &stat_with(5));
        let mut node = Node::build(
            digest,
            acl(),
            Trie::default(),
            &stat_with(5),
            b"a",
            Some(b"d"),
        );
        let before = node.0;
        let (_, digest) = node.update_stat("/a", |stat| stat.version = 6);
        assert_eq!(node.0, before, "same length, unique: in place");
        assert_eq!(
            digest,
            node_digest("/a", Some(b"d"), &node.persisted_stat())
        );
        assert_eq!(node.digest(), digest);
        let shared = node.clone();
        node.update_stat("/a", |stat| stat.version = 7);
        assert_ne!(node.0, shared.0, "shared: copied");
        assert_eq!(shared.persisted_stat().version, 6);
        assert_eq!(node.persisted_stat().version, 7);
        node.update_stat("/a", |stat| stat.mzxid = i64::MAX);
        assert_eq!(node.persisted_stat().mzxid, i64::MAX);
        assert_eq!((node.name(), node.data()), (&b"a"[..], Some(&b"d"[..])));
        assert_eq!(
            node.digest(),
            node_digest("/a", Some(b"d"), &node.persisted_stat())
        );
    }

    /// Stats whose encodings range from the shortest (all fields zero but czxid) to long.
    fn stats_of_every_length() -> Vec<StatPersisted> {
        let small = StatPersisted {
            czxid: 1,
            mzxid: 1,
            pzxid: 1,
            ctime: 0,
            mtime: 0,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
        };
        let mut stats = vec![small];
        stats.extend((0..6).map(|seed| stat_with(1 << (seed * 11))));
        stats
    }

    #[test]
    fn a_unique_node_is_rewritten_in_place_for_every_change_of_length() {
        // Names across the one-byte tag limit, data across the one-byte body-length limit,
        // null data, and stats that grow and shrink.
        let names: [&[u8]; 3] = [b"", b"n", &[b'x'; 70]];
        let data: Vec<Option<Vec<u8>>> = [None, Some(0), Some(1), Some(90), Some(130), Some(300)]
            .into_iter()
            .map(|len| len.map(|len| (0..len).map(|i| i as u8 ^ 0x5a).collect()))
            .collect();
        let stats = stats_of_every_length();
        for name in names {
            let path = format!("/p/{}", String::from_utf8_lossy(name));
            for from in &data {
                for to in &data {
                    for (at, stat) in stats.iter().enumerate() {
                        let first = stats[(at + 3) % stats.len()];
                        let mut node =
                            Node::build(7, acl(), Trie::default(), &first, name, from.as_deref());
                        node.children_mut().insert(Node::build(
                            0,
                            acl(),
                            Trie::default(),
                            &first,
                            b"child",
                            None,
                        ));
                        let (old, new, client) =
                            node.set_data(&path, to.as_deref(), |each| *each = *stat);
                        assert_eq!(old, 7);
                        assert_eq!(new, node_digest(&path, to.as_deref(), stat));
                        assert_eq!(node.digest(), new);
                        assert_eq!(node.name(), name);
                        assert_eq!(node.data(), to.as_deref());
                        assert_eq!(node.persisted_stat(), *stat);
                        assert_eq!(client, node.stat());
                        assert_eq!(node.children().len(), 1);
                        // The stat alone, back to the first one: the data is kept.
                        node.update_stat(&path, |each| *each = first);
                        assert_eq!(node.persisted_stat(), first);
                        assert_eq!((node.name(), node.data()), (name, to.as_deref()));
                        assert_eq!(node.digest(), node_digest(&path, to.as_deref(), &first));
                        assert_eq!(node.children().len(), 1);
                    }
                }
            }
        }
    }

    #[test]
    fn a_shared_node_is_copied_for_new_data_and_the_clone_keeps_the_old() {
        let mut node = Node::build(0, acl(), Trie::default(), &stat_with(3), b"a", Some(b"old"));
        let shared = node.clone();
        let (_, digest, _) = node.set_data("/a", Some(b"new data"), |stat| stat.version = 9);
        assert_ne!(node.0, shared.0);
        assert_eq!(
            (shared.data(), shared.persisted_stat()),
            (Some(&b"old"[..]), stat_with(3))
        );
        assert_eq!(node.data(), Some(&b"new data"[..]));
        assert_eq!(node.persisted_stat().version, 9);
        assert_eq!(node.digest(), digest);
        // Unique again: the next change is made in place, without a new allocation.
        drop(shared);
        let before = node.0;
        node.set_data("/a", Some(b"new_data"), |stat| stat.version = 10);
        assert_eq!(node.0, before, "same length, unique: in place");
        assert_eq!(node.data(), Some(&b"new_data"[..]));
    }

    #[test]
    fn a_stat_change_updates_the_digest_as_a_full_recompute_would() {
        assert_eq!(crc32fast::hash(&[0u8; DIGEST_STAT_BYTES]), ZERO_STAT_CRC);
        let stats = stats_of_every_length();
        for data_len in [0usize, 3, 100, 5000] {
            let data: Vec<u8> = (0..data_len).map(|i| (i * 13) as u8).collect();
            for path in ["/", "/a", "/a/b/c", "/zookeeper/quota"] {
                for old in &stats {
                    for new in &stats {
                        let before = node_digest(path, Some(&data), old);
                        assert_eq!(
                            stat_digest_change(path, before, old, new),
                            node_digest(path, Some(&data), new),
                            "{path} {data_len}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn digest_is_the_crc_of_path_data_and_stat_small_or_large() {
        let stat = stat_with(12_345);
        let mut stat_bytes = Vec::new();
        for long in [stat.czxid, stat.mzxid, stat.pzxid, stat.ctime, stat.mtime] {
            stat_bytes.extend_from_slice(&long.to_be_bytes());
        }
        for int in [stat.version, stat.cversion, stat.aversion] {
            stat_bytes.extend_from_slice(&int.to_be_bytes());
        }
        stat_bytes.extend_from_slice(&stat.ephemeral_owner.to_be_bytes());
        // Below, at and above the size digested in one pass.
        for data_len in [0, 100, DIGEST_BUFFER - 60 - 7, DIGEST_BUFFER, 5000] {
            let data: Vec<u8> = (0..data_len).map(|i| (i * 7) as u8).collect();
            let mut crc = crc32fast::Hasher::new();
            crc.update(b"/a/node");
            crc.update(&data);
            crc.update(&stat_bytes);
            let expected = crc.finalize();
            assert_eq!(
                node_digest("/a/node", Some(&data), &stat),
                expected,
                "{data_len}"
            );
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&stat_bytes);
        assert_eq!(
            node_digest("/", None, &stat),
            crc.finalize(),
            "root: empty path"
        );
        assert_eq!(node_digest("/zookeeper/quota", None, &stat), 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "200,000 levels take too long under Miri")]
    fn a_deep_path_drops_without_recursion() {
        let mut node = Node::build(0, acl(), Trie::default(), &stat_with(1), b"leaf", None);
        for _ in 0..200_000 {
            let mut parent = Node::build(0, acl(), Trie::default(), &stat_with(1), b"p", None);
            parent.children_mut().insert(node);
            node = parent;
        }
        drop(node);
    }
}
