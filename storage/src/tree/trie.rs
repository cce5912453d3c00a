//! A persistent hash trie (a compressed HAMT in the CHAMP layout): the one collection the tree
//! is built from (children of a znode, sessions, ephemeral owners, container and TTL sets).
//!
//! Cloning is O(1) (one reference count); a write copies only the branches on the path to the
//! changed leaf that are still shared with a clone, so a published tree costs its writer in
//! proportion to what changes afterwards. A branch is one allocation: a 16-byte header (a
//! 4-byte reference count, a bitmap of the chunks that hold a leaf, one of the chunks that hold
//! a branch, and the number of leaves below), then exactly the leaves present and then exactly
//! the branches present. Which is which is in the bitmaps, so a slot is as large as a leaf (one
//! pointer for a znode), with no tag; sparse levels stay small and a level costs one cache miss.
//!
//! Hashing is a fixed multiply-rotate hash (`TrieHasher`): deterministic, so every server lays
//! out the same trie. Full 64-bit collisions end in a bucket: a branch at
//! `DEPTH_MAX` with both bitmaps empty whose leaves are all the leaves with that hash.

use std::alloc::{self, Layout};
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{self, AtomicU32, Ordering};

/// Bits of the hash consumed per level.
const LEVEL_BITS: u32 = 5;
const LEVEL_MASK: u64 = (1 << LEVEL_BITS) - 1;
/// Levels until the 64 hash bits are used up; below that, equal hashes share a bucket.
const DEPTH_MAX: u32 = 64_u32.div_ceil(LEVEL_BITS);
const _: () = assert!(1 << LEVEL_BITS == u32::BITS);
/// Clones of one branch beyond this panic, so its count cannot wrap.
const COUNT_MAX: u32 = u32::MAX / 2;

/// Asks the CPU to start loading the cache line at `address`. Only a hint: it does not fault
/// or change memory, whatever the address.
pub(crate) fn prefetch_address(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch neither faults nor writes, for any address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// What a trie stores: a value that carries its own key.
pub(crate) trait Leaf: Clone {
    type Key: ?Sized + Eq + Hash;
    fn key(&self) -> &Self::Key;

    /// Asks the CPU to start loading what the leaf points to, for a walk that visits many
    /// leaves or before many leaves' reference counts change (a branch copied or released):
    /// requested together, their cache misses overlap instead of following one another.
    /// Nothing by default.
    fn prefetch(&self) {}
}

/// Hashes a key the way every trie in the tree does.
pub(crate) fn hash_key<K: ?Sized + Hash>(key: &K) -> u64 {
    let mut hasher = TrieHasher(0);
    key.hash(&mut hasher);
    hasher.finish()
}

/// The tries' hash: eight bytes at a time, each mixed in by a rotate, xor and multiply, then
/// the murmur3 finalizer so that every input bit reaches the low bits the first levels use.
/// Fixed (no per-process key), so every server lays out the same trie; keys are short names
/// and ids, for which this is several times cheaper than SipHash. Names chosen to collide
/// cost a linear scan in a bucket, never a wrong answer.
struct TrieHasher(u64);

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl TrieHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(MIX);
    }
}

/// The 1 to 7 bytes of `tail` as a little-endian word, zero above them (as if copied into a
/// zeroed word), from overlapping loads instead of a copy of variable length.
fn load_tail(tail: &[u8]) -> u64 {
    let len = tail.len();
    if len >= 4 {
        let low = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let high = u32::from_le_bytes([tail[len - 4], tail[len - 3], tail[len - 2], tail[len - 1]]);
        // The two loads overlap when `len` < 8; the shared bytes are the same in both.
        u64::from(low) | u64::from(high) << (8 * (len - 4))
    } else {
        u64::from(tail[0])
            | u64::from(tail[len / 2]) << (8 * (len / 2))
            | u64::from(tail[len - 1]) << (8 * (len - 1))
    }
}

impl Hasher for TrieHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut eight = [0; 8];
            eight.copy_from_slice(word);
            self.add(u64::from_le_bytes(eight));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            self.add(load_tail(tail));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

pub(crate) struct Trie<L> {
    root: Option<Branch<L>>,
}

impl<L> Clone for Trie<L> {
    fn clone(&self) -> Self {
        Trie {
            root: self.root.clone(),
        }
    }
}

impl<L> Default for Trie<L> {
    fn default() -> Self {
        Trie { root: None }
    }
}

fn chunk(hash: u64, depth: u32) -> u32 {
    ((hash >> (depth * LEVEL_BITS)) & LEVEL_MASK) as u32
}

/// Index among the entries of `map` below `chunk`.
fn index(map: u32, chunk: u32) -> usize {
    (map & ((1u32 << chunk) - 1)).count_ones() as usize
}

// ----- branches -----

/// The fixed start of a branch's allocation.
#[repr(C)]
struct Header {
    count: AtomicU32,
    maps: Maps,
}

/// What a branch holds where.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
struct Maps {
    /// Bit i set: chunk i holds a leaf, at `index(leafmap, i)` among the leaves.
    leafmap: u32,
    /// Bit i set: chunk i holds a branch, at `index(branchmap, i)` among the branches.
    branchmap: u32,
    /// Leaves in this branch and below.
    total: u32,
}

impl Maps {
    /// A bucket: both maps empty, `total` leaves with one full hash, in insertion order.
    fn bucket(total: usize) -> Maps {
        Maps {
            leafmap: 0,
            branchmap: 0,
            total: total as u32,
        }
    }

    fn is_bucket(self) -> bool {
        self.leafmap | self.branchmap == 0
    }

    fn leaf_len(self) -> usize {
        if self.is_bucket() {
            self.total as usize
        } else {
            self.leafmap.count_ones() as usize
        }
    }

    fn branch_len(self) -> usize {
        self.branchmap.count_ones() as usize
    }
}

/// A shared, immutable-while-shared branch: header, leaves and branches in one allocation.
struct Branch<L> {
    header: NonNull<Header>,
    owns: PhantomData<L>,
}

// SAFETY: a branch owns its leaves and child branches like an `Arc<([L], [Branch<L>])>` would:
// the count is atomic and the contents are written only through `&mut` with a count of 1.
unsafe impl<L: Send + Sync> Send for Branch<L> {}
// SAFETY: as for `Send` above.
unsafe impl<L: Send + Sync> Sync for Branch<L> {}

/// The allocation's layout and the offsets of the leaves and the branches.
fn layout<L>(leaves: usize, branches: usize) -> (Layout, usize, usize) {
    let leaf_array = Layout::array::<L>(leaves).expect("a branch's leaves fit in memory");
    let branch_array = Layout::array::<Branch<L>>(branches).expect("at most 32 branches");
    let (head, leaves_at) = Layout::new::<Header>()
        .extend(leaf_array)
        .expect("a branch's leaves fit in memory");
    let (whole, branches_at) = head.extend(branch_array).expect("a branch fits in memory");
    (whole.pad_to_align(), leaves_at, branches_at)
}

/// A new allocation of `layout` starting with `header`; what follows the header is left for
/// the caller to write. Znodes and branches are both made this way.
pub(super) fn allocate_with_header<H>(layout: Layout, header: H) -> NonNull<H> {
    assert!(
        layout.size() >= std::mem::size_of::<H>() && layout.align() >= std::mem::align_of::<H>(),
        "the layout holds the header"
    );
    // SAFETY: the layout has a non-zero size (at least the header, which is never zero-sized
    // here: it holds a reference count).
    let raw = unsafe { alloc::alloc(layout) };
    let Some(start) = NonNull::new(raw.cast::<H>()) else {
        alloc::handle_alloc_error(layout)
    };
    // SAFETY: the allocation is fresh, large and aligned enough for `H` (asserted above).
    unsafe { start.as_ptr().write(header) };
    start
}

/// The offsets `layout` gives the leaves and the branches, computed without building the
/// layout (every read of a branch needs them): each array starts at the end of what precedes
/// it, rounded up to its alignment, as `Layout::extend` places it.
fn offsets<L>(leaves: usize) -> (usize, usize) {
    let leaves_at = std::mem::size_of::<Header>().next_multiple_of(std::mem::align_of::<L>());
    let after_leaves = leaves_at + leaves * std::mem::size_of::<L>();
    let branches_at = after_leaves.next_multiple_of(std::mem::align_of::<Branch<L>>());
    (leaves_at, branches_at)
}

impl<L> Branch<L> {
    /// A new branch holding `leaves` and `branches` in the order `maps` gives them.
    fn new(maps: Maps, leaves: Vec<L>, branches: Vec<Branch<L>>) -> Branch<L> {
        assert_eq!(leaves.len(), maps.leaf_len(), "leaves match the leaf map");
        assert_eq!(
            branches.len(),
            maps.branch_len(),
            "branches match the branch map"
        );
        let (branch, leaf_array, branch_array) = Branch::allocate(maps);
        // SAFETY: `allocate` made room for exactly these numbers of leaves and branches. The
        // values are moved in: the vectors give up their elements (`set_len(0)`) before they
        // are dropped.
        unsafe {
            let mut leaves = leaves;
            let mut branches = branches;
            std::ptr::copy_nonoverlapping(leaves.as_ptr(), leaf_array, leaves.len());
            leaves.set_len(0);
            std::ptr::copy_nonoverlapping(branches.as_ptr(), branch_array, branches.len());
            branches.set_len(0);
        }
        branch
    }

    /// A branch with the header for `maps` and room for its leaves and branches, which the
    /// caller must write (at the two pointers returned) before the branch is used or dropped.
    fn allocate(maps: Maps) -> (Branch<L>, *mut L, *mut Branch<L>) {
        let (layout, leaves_at, branches_at) = layout::<L>(maps.leaf_len(), maps.branch_len());
        assert_eq!(
            (leaves_at, branches_at),
            offsets::<L>(maps.leaf_len()),
            "reads find the arrays where they are written"
        );
        let header = allocate_with_header(
            layout,
            Header {
                count: AtomicU32::new(1),
                maps,
            },
        );
        let raw = header.as_ptr().cast::<u8>();
        // SAFETY: the allocation is laid out by `layout` for a header and the two arrays at
        // these offsets.
        unsafe {
            let branch = Branch {
                header,
                owns: PhantomData,
            };
            (
                branch,
                raw.add(leaves_at).cast::<L>(),
                raw.add(branches_at).cast::<Branch<L>>(),
            )
        }
    }

    fn maps(&self) -> Maps {
        // SAFETY: the allocation lives while `self` holds a count; the maps are written only
        // through `&mut self` with a count of 1.
        unsafe { self.header.as_ref().maps }
    }

    /// Pointers to the leaves and to the branches, and their numbers.
    fn arrays(&self) -> (*mut L, usize, *mut Branch<L>, usize) {
        let maps = self.maps();
        let (leaf_len, branch_len) = (maps.leaf_len(), maps.branch_len());
        let (leaves_at, branches_at) = offsets::<L>(leaf_len);
        let raw = self.header.as_ptr().cast::<u8>();
        // SAFETY: both offsets lie within the allocation, which `layout` sized for these
        // numbers of leaves and branches when it was made (the maps have not changed them).
        unsafe {
            (
                raw.add(leaves_at).cast::<L>(),
                leaf_len,
                raw.add(branches_at).cast::<Branch<L>>(),
                branch_len,
            )
        }
    }

    fn leaves(&self) -> &[L] {
        let (leaves, len, _, _) = self.arrays();
        // SAFETY: `len` initialized leaves live there, unchanged while `self` is borrowed.
        unsafe { std::slice::from_raw_parts(leaves, len) }
    }

    fn branches(&self) -> &[Branch<L>] {
        let (_, _, branches, len) = self.arrays();
        // SAFETY: `len` initialized branches live there, unchanged while `self` is borrowed.
        unsafe { std::slice::from_raw_parts(branches, len) }
    }

    /// Asks the CPU to start loading the branch's header (its count), so that the cache
    /// misses of several branches about to be cloned or released overlap.
    fn prefetch(&self) {
        prefetch_address(self.header.as_ptr().cast::<u8>());
    }

    fn is_unique(&self) -> bool {
        // SAFETY: the allocation lives while `self` holds a count.
        unsafe { self.header.as_ref().count.load(Ordering::Acquire) == 1 }
    }

    /// Leaves and branches for writing, if no clone shares this branch.
    fn contents_mut(&mut self) -> Option<Contents<'_, L>> {
        if !self.is_unique() {
            return None;
        }
        let (leaves, leaf_len, branches, branch_len) = self.arrays();
        // SAFETY: the count is 1 and `self` is borrowed mutably: these are the only
        // references to the allocation's contents while the borrow lives.
        unsafe {
            Some(Contents {
                maps: &mut (*self.header.as_ptr()).maps,
                leaves: std::slice::from_raw_parts_mut(leaves, leaf_len),
                branches: std::slice::from_raw_parts_mut(branches, branch_len),
            })
        }
    }

    /// The leaves and branches as vectors: moved out if no clone shares this branch (which is
    /// then freed), cloned otherwise.
    fn into_parts(self) -> (Maps, Vec<L>, Vec<Branch<L>>)
    where
        L: Clone,
    {
        let maps = self.maps();
        if !self.is_unique() {
            return (maps, self.leaves().to_vec(), self.branches().to_vec());
        }
        let this = std::mem::ManuallyDrop::new(self);
        let (leaves, leaf_len, branches, branch_len) = this.arrays();
        let (layout, _, _) = layout::<L>(leaf_len, branch_len);
        // SAFETY: the count is 1 and `this` is consumed: the contents are moved out exactly
        // once (read into the vectors), then the memory is freed with the layout it was
        // allocated with, without dropping the moved contents or running `Drop` for `this`.
        unsafe {
            let mut leaf_vec = Vec::with_capacity(leaf_len);
            std::ptr::copy_nonoverlapping(leaves, leaf_vec.as_mut_ptr(), leaf_len);
            leaf_vec.set_len(leaf_len);
            let mut branch_vec = Vec::with_capacity(branch_len);
            std::ptr::copy_nonoverlapping(branches, branch_vec.as_mut_ptr(), branch_len);
            branch_vec.set_len(branch_len);
            alloc::dealloc(this.header.as_ptr().cast::<u8>(), layout);
            (maps, leaf_vec, branch_vec)
        }
    }
}

/// The writable contents of a branch no clone shares.
struct Contents<'a, L> {
    maps: &'a mut Maps,
    leaves: &'a mut [L],
    branches: &'a mut [Branch<L>],
}

impl<L> Clone for Branch<L> {
    fn clone(&self) -> Self {
        // SAFETY: the allocation lives while `self` holds a count.
        let count = unsafe { &self.header.as_ref().count };
        if count.fetch_add(1, Ordering::Relaxed) > COUNT_MAX {
            count.fetch_sub(1, Ordering::Relaxed);
            panic!("trie branch cloned more than {COUNT_MAX} times");
        }
        Branch {
            header: self.header,
            owns: PhantomData,
        }
    }
}

impl<L> Drop for Branch<L> {
    fn drop(&mut self) {
        // SAFETY: `self` holds a count until this decrement.
        let count = unsafe { &self.header.as_ref().count };
        if count.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        atomic::fence(Ordering::Acquire);
        let (leaves, leaf_len, branches, branch_len) = self.arrays();
        let (layout, _, _) = layout::<L>(leaf_len, branch_len);
        // SAFETY: that was the last count: the contents are dropped once and the memory freed
        // with the layout it was allocated with. Nested branches drop recursively, at most
        // `DEPTH_MAX + 1` deep.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(leaves, leaf_len));
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(branches, branch_len));
            alloc::dealloc(self.header.as_ptr().cast::<u8>(), layout);
        }
    }
}

impl<L: Leaf> Branch<L> {
    /// The contents for writing, copying the branch first if a clone shares it.
    fn make_mut(&mut self) -> Contents<'_, L> {
        if !self.is_unique() {
            self.reshape(self.maps(), Edit::Keep, Edit::Keep);
        }
        match self.contents_mut() {
            Some(contents) => contents,
            None => unreachable!("a branch is unique right after it is copied"),
        }
    }

    /// Replaces the branch by one with `maps` and its arrays changed by the two edits
    /// (branches are exact-size, so adding or removing a slot means a new allocation); the
    /// contents are moved if no clone shares the branch, cloned otherwise. Returns what the
    /// edits removed.
    fn reshape(
        &mut self,
        maps: Maps,
        leaf: Edit<L>,
        branch: Edit<Branch<L>>,
    ) -> (Option<L>, Option<Branch<L>>) {
        let old_maps = self.maps();
        assert_eq!(
            leaf.new_len(old_maps.leaf_len()),
            maps.leaf_len(),
            "leaf edit fits"
        );
        assert_eq!(
            branch.new_len(old_maps.branch_len()),
            maps.branch_len(),
            "branch edit fits"
        );
        assert!(leaf.fits(old_maps.leaf_len()), "leaf edit within the array");
        assert!(
            branch.fits(old_maps.branch_len()),
            "branch edit within the array"
        );
        let moving = self.is_unique();
        let (old_leaves, leaf_len, old_branches, branch_len) = self.arrays();
        let (new, new_leaves, new_branches) = Branch::allocate(maps);
        // Not dropped until its arrays are filled: a clone that panics half way leaks it.
        let new = std::mem::ManuallyDrop::new(new);
        // SAFETY: the new arrays have room for the edited lengths and the edits' indexes are in
        // range (asserted above). When moving, `self` is the only reference to the old
        // allocation: its contents are moved out once each and its memory is freed without
        // dropping them; the new branch is written over `self` without dropping the old one.
        // When cloning, the old branch is only read and then released by the assignment.
        unsafe {
            let removed = (
                fill(old_leaves, leaf_len, new_leaves, leaf, moving, L::prefetch),
                fill(
                    old_branches,
                    branch_len,
                    new_branches,
                    branch,
                    moving,
                    Branch::prefetch,
                ),
            );
            let new = std::mem::ManuallyDrop::into_inner(new);
            if moving {
                let (layout, _, _) = layout::<L>(leaf_len, branch_len);
                alloc::dealloc(self.header.as_ptr().cast::<u8>(), layout);
                std::ptr::write(self, new);
            } else {
                *self = new;
            }
            removed
        }
    }
}

/// A change to one array of a branch.
enum Edit<T> {
    Keep,
    Insert(usize, T),
    Remove(usize),
}

impl<T> Edit<T> {
    /// Whether the edit's index is in range for an array of `len`.
    fn fits(&self, len: usize) -> bool {
        match self {
            Edit::Keep => true,
            Edit::Insert(at, _) => *at <= len,
            Edit::Remove(at) => *at < len,
        }
    }

    fn new_len(&self, old: usize) -> usize {
        match self {
            Edit::Keep => old,
            Edit::Insert(..) => old + 1,
            Edit::Remove(_) => old - 1,
        }
    }
}

/// Writes the `len` elements at `src`, changed by `edit`, to `dst`: moved when `moving`,
/// cloned otherwise. Returns the removed element (moved out, or a clone).
///
/// # Safety
/// `src` holds `len` initialized elements and `dst` room for `edit.new_len(len)`, not
/// overlapping; `edit.fits(len)`. When `moving`, the caller must not use or
/// drop the elements at `src` afterwards.
unsafe fn fill<T: Clone>(
    src: *const T,
    len: usize,
    dst: *mut T,
    edit: Edit<T>,
    moving: bool,
    prefetch: impl Fn(&T),
) -> Option<T> {
    // SAFETY: the ranges below are within `src[..len]` and `dst[..new_len]` by the caller's
    // guarantees.
    unsafe {
        if !moving {
            // Each clone counts one more reference in what the element points to: requested
            // together, those cache misses overlap instead of following one another (each
            // count is an atomic add, which waits for its own line).
            for at in 0..len {
                prefetch(&*src.add(at));
            }
        }
        let copy = |from: usize, to: usize, count: usize| {
            if moving {
                std::ptr::copy_nonoverlapping(src.add(from), dst.add(to), count);
            } else {
                for at in 0..count {
                    dst.add(to + at).write((*src.add(from + at)).clone());
                }
            }
        };
        match edit {
            Edit::Keep => {
                copy(0, 0, len);
                None
            }
            Edit::Insert(at, value) => {
                copy(0, 0, at);
                dst.add(at).write(value);
                copy(at, at + 1, len - at);
                None
            }
            Edit::Remove(at) => {
                copy(0, 0, at);
                copy(at + 1, at, len - at - 1);
                Some(if moving {
                    src.add(at).read()
                } else {
                    (*src.add(at)).clone()
                })
            }
        }
    }
}

// ----- the trie -----

impl<L: Leaf> Trie<L> {
    pub(crate) fn len(&self) -> usize {
        self.root
            .as_ref()
            .map_or(0, |root| root.maps().total as usize)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    pub(crate) fn get(&self, key: &L::Key) -> Option<&L> {
        let hash = hash_key(key);
        let mut branch = self.root.as_ref()?;
        let mut depth = 0;
        loop {
            let maps = branch.maps();
            if maps.is_bucket() {
                return branch.leaves().iter().find(|leaf| leaf.key() == key);
            }
            let chunk = chunk(hash, depth);
            let bit = 1u32 << chunk;
            if maps.leafmap & bit != 0 {
                let leaf = &branch.leaves()[index(maps.leafmap, chunk)];
                return (leaf.key() == key).then_some(leaf);
            }
            if maps.branchmap & bit == 0 {
                return None;
            }
            branch = &branch.branches()[index(maps.branchmap, chunk)];
            depth += 1;
        }
    }

    /// A mutable reference to the leaf under `key`, unsharing the branches on its path (also
    /// when the key is absent: the contents stay the same either way).
    pub(crate) fn get_mut(&mut self, key: &L::Key) -> Option<&mut L> {
        let hash = hash_key(key);
        let mut branch = self.root.as_mut()?;
        let mut depth = 0;
        loop {
            let contents = branch.make_mut();
            let maps = *contents.maps;
            if maps.is_bucket() {
                return contents.leaves.iter_mut().find(|leaf| leaf.key() == key);
            }
            let chunk = chunk(hash, depth);
            let bit = 1u32 << chunk;
            if maps.leafmap & bit != 0 {
                let leaf = &mut contents.leaves[index(maps.leafmap, chunk)];
                return (leaf.key() == key).then_some(leaf);
            }
            if maps.branchmap & bit == 0 {
                return None;
            }
            branch = &mut contents.branches[index(maps.branchmap, chunk)];
            depth += 1;
        }
    }

    /// Inserts `leaf`, returning the leaf it replaced (same key), if any.
    pub(crate) fn insert(&mut self, leaf: L) -> Option<L> {
        // With `replace`, `put` never hands the leaf back.
        self.put(leaf, true).unwrap_or_default()
    }

    /// Inserts `leaf` unless its key is present, in which case `leaf` comes back unused.
    pub(crate) fn insert_new(&mut self, leaf: L) -> Result<(), L> {
        self.put(leaf, false).map(|_| ())
    }

    fn put(&mut self, leaf: L, replace: bool) -> Result<Option<L>, L> {
        let hash = hash_key(leaf.key());
        match &mut self.root {
            None => {
                let maps = Maps {
                    leafmap: 1 << chunk(hash, 0),
                    branchmap: 0,
                    total: 1,
                };
                self.root = Some(Branch::new(maps, vec![leaf], Vec::new()));
                Ok(None)
            }
            Some(root) => put_in(root, leaf, hash, 0, replace),
        }
    }

    /// Removes and returns the leaf under `key`.
    pub(crate) fn remove(&mut self, key: &L::Key) -> Option<L> {
        let hash = hash_key(key);
        let root = self.root.as_mut()?;
        let removed = remove_in(root, key, hash, 0)?;
        if root.maps().total == 0 {
            self.root = None;
        }
        Some(removed)
    }

    /// Calls `visit` on every leaf, in trie order (by chunk, level by level; stable for a
    /// given set of keys).
    pub(crate) fn for_each<'a>(&'a self, mut visit: impl FnMut(&'a L)) {
        if let Some(root) = &self.root {
            for_each_in(root, &mut visit);
        }
    }

    /// Every leaf, cloned, in trie order.
    pub(crate) fn to_vec(&self) -> Vec<L> {
        let mut out = Vec::with_capacity(self.len());
        self.for_each(|leaf| out.push(leaf.clone()));
        out
    }
}

impl<L: Leaf> Trie<L> {
    /// A trie holding `leaves`, built in one pass with every branch allocated once at its
    /// final size (inserting one by one reallocates a branch per insert). The same set of
    /// leaves gives the same trie either way. A key given twice comes back as `Err`.
    pub(crate) fn from_leaves(leaves: impl IntoIterator<Item = L>) -> Result<Trie<L>, L> {
        Trie::from_hashed(leaves.into_iter().map(|leaf| (hash_key(leaf.key()), leaf)))
    }

    fn from_hashed(hashed: impl IntoIterator<Item = (u64, L)>) -> Result<Trie<L>, L> {
        let keyed = hashed
            .into_iter()
            .map(|(hash, leaf)| (level_order(hash), Some(leaf)))
            .collect();
        Trie::from_keyed(keyed, |keyed| build_branch(keyed, 0))
    }

    /// The trie of the leaves in `keyed` (each with its `level_order` key; empty entries are
    /// skipped), its root built by `build` from the entries sorted. Ordered by the chunks in
    /// the order the levels use them, every branch's leaves are one run, and within it every
    /// slot's. The key holds the whole hash, so it is all a leaf carries besides itself (16
    /// bytes for a znode: a restore sorts a million-child directory's leaves in 16 MB).
    fn from_keyed(
        mut keyed: Vec<(u64, Option<L>)>,
        build: impl FnOnce(&mut [(u64, Option<L>)]) -> Result<Branch<L>, L>,
    ) -> Result<Trie<L>, L> {
        keyed.retain(|(_, leaf)| leaf.is_some());
        if keyed.is_empty() {
            return Ok(Trie::default());
        }
        keyed.sort_unstable_by_key(|(key, _)| *key);
        Ok(Trie {
            root: Some(build(&mut keyed)?),
        })
    }
}

/// Bits of the hash the level at `depth` uses: `LEVEL_BITS`, and what is left for the last.
fn level_bits(depth: u32) -> u32 {
    LEVEL_BITS.min(u64::BITS.saturating_sub(depth * LEVEL_BITS))
}

/// `hash` with its chunks reordered so that comparing two keys compares chunk 0 first, then
/// chunk 1, and so on: chunk 0 in the top bits. The levels use the 64 bits exactly once, so
/// the key holds all of the hash.
fn level_order(hash: u64) -> u64 {
    (0..DEPTH_MAX).fold(0, |key, depth| {
        key << level_bits(depth) | u64::from(chunk(hash, depth))
    })
}

/// The chunk of level `depth` in a `level_order` key (equal to `chunk` of the hash).
fn key_chunk(key: u64, depth: u32) -> u32 {
    // The chunks of levels 0..=depth take the top bits: `LEVEL_BITS` each, the last fewer.
    let below = u64::BITS.saturating_sub((depth + 1) * LEVEL_BITS);
    ((key >> below) & ((1 << level_bits(depth)) - 1)) as u32
}

/// The branch at `depth` holding `keyed`'s leaves (sorted by their `level_order` keys, all
/// with the same chunks above `depth`), as inserting them one by one would make it. The
/// leaves are taken out of `keyed`.
fn build_branch<L: Leaf>(keyed: &mut [(u64, Option<L>)], depth: u32) -> Result<Branch<L>, L> {
    let total = keyed.len();
    // Each entry is taken once: the runs below partition the slice.
    let take = |entry: &mut (u64, Option<L>)| entry.1.take().expect("a leaf per entry");
    if depth >= DEPTH_MAX {
        let mut bucket: Vec<L> = Vec::with_capacity(total);
        for entry in keyed.iter_mut() {
            let leaf = take(entry);
            if bucket.iter().any(|old| old.key() == leaf.key()) {
                return Err(leaf);
            }
            bucket.push(leaf);
        }
        return Ok(Branch::new(Maps::bucket(total), bucket, Vec::new()));
    }
    let mut slots = Slots::default();
    slots.fill(keyed, depth)?;
    Ok(slots.into_branch(total))
}

/// A branch's slots as they are gathered, in chunk order.
struct Slots<L: Leaf> {
    leafmap: u32,
    branchmap: u32,
    own: Vec<L>,
    below: Vec<Branch<L>>,
}

impl<L: Leaf> Default for Slots<L> {
    fn default() -> Self {
        Slots {
            leafmap: 0,
            branchmap: 0,
            own: Vec::new(),
            below: Vec::new(),
        }
    }
}

impl<L: Leaf> Slots<L> {
    /// Adds the slots of `keyed` (sorted, all with the same chunks above `depth`, after the
    /// chunks of the slots already added) at `depth`, building the branches below; the leaves
    /// are taken out of `keyed`.
    fn fill(&mut self, keyed: &mut [(u64, Option<L>)], depth: u32) -> Result<(), L> {
        let mut rest = keyed;
        while let Some((first, _)) = rest.first() {
            let slot_chunk = key_chunk(*first, depth);
            let run = rest
                .iter()
                .take_while(|(key, _)| key_chunk(*key, depth) == slot_chunk)
                .count();
            let (slot, after) = std::mem::take(&mut rest).split_at_mut(run);
            if run == 1 {
                self.leafmap |= 1 << slot_chunk;
                self.own
                    .push(slot[0].1.take().expect("each entry is taken once"));
            } else {
                self.branchmap |= 1 << slot_chunk;
                self.below.push(build_branch(slot, depth + 1)?);
            }
            rest = after;
        }
        Ok(())
    }

    /// Appends `later`, whose slots all come after this one's.
    fn append(&mut self, later: Slots<L>) {
        self.leafmap |= later.leafmap;
        self.branchmap |= later.branchmap;
        self.own.extend(later.own);
        self.below.extend(later.below);
    }

    fn into_branch(self, total: usize) -> Branch<L> {
        let maps = Maps {
            leafmap: self.leafmap,
            branchmap: self.branchmap,
            total: total as u32,
        };
        Branch::new(maps, self.own, self.below)
    }
}

impl<L: Leaf + Send + Sync> Trie<L> {
    /// As [`Trie::from_leaves`] for the leaves in `places` (taken out of them), on up to
    /// `threads` threads: the leaves are hashed in parallel, and the first level's slots are
    /// split among the threads, each building the branches below its slots. For a restore's
    /// largest directories, whose one trie would otherwise be built on one thread.
    pub(crate) fn from_places_parallel(
        places: &mut [Option<L>],
        threads: usize,
    ) -> Result<Trie<L>, L> {
        let threads = threads.clamp(1, places.len().max(1));
        let per_thread = places.len().div_ceil(threads).max(1);
        let mut keyed: Vec<(u64, Option<L>)> = Vec::new();
        keyed.resize_with(places.len(), || (0, None));
        std::thread::scope(|scope| {
            for (from, to) in places
                .chunks_mut(per_thread)
                .zip(keyed.chunks_mut(per_thread))
            {
                scope.spawn(move || {
                    for (place, entry) in from.iter_mut().zip(to) {
                        if let Some(leaf) = place.take() {
                            *entry = (level_order(hash_key(leaf.key())), Some(leaf));
                        }
                    }
                });
            }
        });
        Trie::from_keyed(keyed, |keyed| first_level_on_threads(keyed, threads))
    }
}

/// The root branch of the sorted `keyed` (as `build_branch` at depth 0 makes it), its slots
/// split among up to `threads` threads at changes of the first level's chunk, so that each
/// slot's run stays on one thread.
fn first_level_on_threads<L: Leaf + Send + Sync>(
    keyed: &mut [(u64, Option<L>)],
    threads: usize,
) -> Result<Branch<L>, L> {
    let total = keyed.len();
    // Split where the first level's chunk changes, near equal parts.
    let mut parts: Vec<&mut [(u64, Option<L>)]> = Vec::with_capacity(threads);
    let mut rest = keyed;
    for part in 1..threads {
        let wanted = (total * part / threads).saturating_sub(total - rest.len());
        let Some((at, _)) = rest
            .iter()
            .enumerate()
            .skip(wanted.max(1))
            .find(|(at, (key, _))| key_chunk(*key, 0) != key_chunk(rest[at - 1].0, 0))
        else {
            break;
        };
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(at);
        parts.push(head);
        rest = tail;
    }
    parts.push(rest);
    let built: Vec<Result<Slots<L>, L>> = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    let mut slots = Slots::default();
                    slots.fill(part, 0).map(|()| slots)
                })
            })
            .collect::<Vec<_>>();
        super::joined(handles)
    });
    let mut slots = Slots::default();
    for part in built {
        slots.append(part?);
    }
    Ok(slots.into_branch(total))
}

/// Tries being emptied one branch at a time, so that a caller can stop between branches: the
/// branches still to free, each holding one count. Emptying a trie allocates no more than
/// freeing its branches already does: the first branch waits in its own slot, and the branch
/// list of a freed branch becomes the stack when that is empty.
pub(crate) struct Drain<L> {
    next: Option<Branch<L>>,
    rest: Vec<Branch<L>>,
}

impl<L> Default for Drain<L> {
    fn default() -> Self {
        Drain {
            next: None,
            rest: Vec::new(),
        }
    }
}

/// Branches or leaves ahead of the one being released whose counts are requested early, so
/// that their cache misses overlap.
pub(crate) const PREFETCH_AHEAD: usize = 8;

impl<L: Leaf> Drain<L> {
    /// Adds `trie`'s branches, leaving it empty.
    pub(crate) fn take(&mut self, trie: &mut Trie<L>) {
        if let Some(root) = trie.root.take() {
            self.rest.extend(self.next.replace(root));
        }
    }

    /// Frees one branch if no clone shares it, moving its leaves into `out` and keeping its
    /// branches for later steps; a shared one only gives up its count. False when no branch
    /// was left.
    pub(crate) fn step(&mut self, out: &mut Vec<L>) -> bool {
        let Some(branch) = self.next.take().or_else(|| self.rest.pop()) else {
            return false;
        };
        if let Some(ahead) = self.rest.len().checked_sub(PREFETCH_AHEAD) {
            self.rest[ahead].prefetch();
        }
        if branch.is_unique() {
            let (_, leaves, branches) = branch.into_parts();
            // `out` is released from its end once no branch is left: when that is soon (a
            // release of a few branches, the common case), the last few leaves are in the
            // cache by then; the releasing loop requests the others a few ahead of itself.
            leaves
                .iter()
                .rev()
                .take(PREFETCH_AHEAD)
                .for_each(L::prefetch);
            out.extend(leaves);
            if self.rest.is_empty() {
                self.rest = branches;
            } else {
                self.rest.extend(branches);
            }
        }
        true
    }
}

fn for_each_in<'a, L: Leaf>(branch: &'a Branch<L>, visit: &mut impl FnMut(&'a L)) {
    let maps = branch.maps();
    let leaves = branch.leaves();
    leaves.iter().for_each(L::prefetch);
    if maps.is_bucket() {
        leaves.iter().for_each(visit);
        return;
    }
    let branches = branch.branches();
    let (mut next_leaf, mut next_branch) = (0, 0);
    let mut occupied = maps.leafmap | maps.branchmap;
    while occupied != 0 {
        let bit = occupied & occupied.wrapping_neg();
        occupied &= occupied - 1;
        if maps.leafmap & bit != 0 {
            visit(&leaves[next_leaf]);
            next_leaf += 1;
        } else {
            for_each_in(&branches[next_branch], visit);
            next_branch += 1;
        }
    }
}

/// Puts `leaf` below `branch`: `Ok(None)` when added, `Ok(Some(old))` when it replaced a leaf
/// (only with `replace`), `Err(leaf)` when the key was present and `replace` is false.
fn put_in<L: Leaf>(
    branch: &mut Branch<L>,
    leaf: L,
    hash: u64,
    depth: u32,
    replace: bool,
) -> Result<Option<L>, L> {
    let maps = branch.maps();
    if maps.is_bucket() {
        let found = branch
            .leaves()
            .iter()
            .position(|old| old.key() == leaf.key());
        return match found {
            Some(_) if !replace => Err(leaf),
            Some(at) => Ok(Some(std::mem::replace(
                &mut branch.make_mut().leaves[at],
                leaf,
            ))),
            None => {
                let grown = Maps::bucket(maps.total as usize + 1);
                let at = maps.total as usize;
                branch.reshape(grown, Edit::Insert(at, leaf), Edit::Keep);
                Ok(None)
            }
        };
    }
    let chunk = chunk(hash, depth);
    let bit = 1u32 << chunk;
    if maps.branchmap & bit != 0 {
        let contents = branch.make_mut();
        let outcome = put_in(
            &mut contents.branches[index(maps.branchmap, chunk)],
            leaf,
            hash,
            depth + 1,
            replace,
        );
        if let Ok(None) = outcome {
            contents.maps.total += 1;
        }
        return outcome;
    }
    if maps.leafmap & bit == 0 {
        let grown = Maps {
            leafmap: maps.leafmap | bit,
            total: maps.total + 1,
            ..maps
        };
        let at = index(maps.leafmap, chunk);
        branch.reshape(grown, Edit::Insert(at, leaf), Edit::Keep);
        return Ok(None);
    }
    let at = index(maps.leafmap, chunk);
    if branch.leaves()[at].key() == leaf.key() {
        return match replace {
            true => Ok(Some(std::mem::replace(
                &mut branch.make_mut().leaves[at],
                leaf,
            ))),
            false => Err(leaf),
        };
    }
    // Two keys in one slot: the leaf there and the new one move into a new branch below.
    let old = branch.leaves()[at].clone();
    let old_hash = hash_key(old.key());
    let below = split(old, old_hash, leaf, hash, depth + 1);
    let grown = Maps {
        leafmap: maps.leafmap & !bit,
        branchmap: maps.branchmap | bit,
        total: maps.total + 1,
    };
    let branch_at = index(maps.branchmap, chunk);
    branch.reshape(grown, Edit::Remove(at), Edit::Insert(branch_at, below));
    Ok(None)
}

/// A branch at `depth` holding two leaves with different keys whose hashes agree above it.
fn split<L: Leaf>(a: L, a_hash: u64, b: L, b_hash: u64, depth: u32) -> Branch<L> {
    if depth >= DEPTH_MAX {
        return Branch::new(Maps::bucket(2), vec![a, b], Vec::new());
    }
    let (a_chunk, b_chunk) = (chunk(a_hash, depth), chunk(b_hash, depth));
    if a_chunk == b_chunk {
        let maps = Maps {
            leafmap: 0,
            branchmap: 1 << a_chunk,
            total: 2,
        };
        let below = split(a, a_hash, b, b_hash, depth + 1);
        return Branch::new(maps, Vec::new(), vec![below]);
    }
    let maps = Maps {
        leafmap: (1 << a_chunk) | (1 << b_chunk),
        branchmap: 0,
        total: 2,
    };
    let leaves = if a_chunk < b_chunk {
        vec![a, b]
    } else {
        vec![b, a]
    };
    Branch::new(maps, leaves, Vec::new())
}

fn remove_in<L: Leaf>(branch: &mut Branch<L>, key: &L::Key, hash: u64, depth: u32) -> Option<L> {
    let maps = branch.maps();
    if maps.is_bucket() {
        let at = branch.leaves().iter().position(|leaf| leaf.key() == key)?;
        let shrunk = Maps::bucket(maps.total as usize - 1);
        return branch.reshape(shrunk, Edit::Remove(at), Edit::Keep).0;
    }
    let chunk = chunk(hash, depth);
    let bit = 1u32 << chunk;
    if maps.leafmap & bit != 0 {
        let at = index(maps.leafmap, chunk);
        if branch.leaves()[at].key() != key {
            return None;
        }
        let shrunk = Maps {
            leafmap: maps.leafmap & !bit,
            total: maps.total - 1,
            ..maps
        };
        return branch.reshape(shrunk, Edit::Remove(at), Edit::Keep).0;
    }
    if maps.branchmap & bit == 0 {
        return None;
    }
    let at = index(maps.branchmap, chunk);
    let contents = branch.make_mut();
    let below = &mut contents.branches[at];
    let removed = remove_in(below, key, hash, depth + 1)?;
    contents.maps.total -= 1;
    // Keep the trie canonical: a branch or bucket left with one leaf becomes that leaf.
    if below.maps().total == 1 {
        let Some(single) = below.leaves().first().cloned() else {
            unreachable!("a branch with one leaf below holds it itself")
        };
        let maps = *contents.maps;
        let collapsed = Maps {
            leafmap: maps.leafmap | bit,
            branchmap: maps.branchmap & !bit,
            total: maps.total,
        };
        let leaf_at = index(maps.leafmap, chunk);
        branch.reshape(collapsed, Edit::Insert(leaf_at, single), Edit::Remove(at));
    }
    Some(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_load_as_if_copied_into_a_zeroed_word() {
        let bytes: Vec<u8> = (1..=7).map(|i| i * 0x11).collect();
        for len in 1..=7 {
            let mut eight = [0u8; 8];
            eight[..len].copy_from_slice(&bytes[..len]);
            assert_eq!(load_tail(&bytes[..len]), u64::from_le_bytes(eight), "{len}");
        }
    }

    #[derive(Clone, Debug, PartialEq)]
    struct Entry(u64, u32);

    impl Leaf for Entry {
        type Key = u64;
        fn key(&self) -> &u64 {
            &self.0
        }
    }

    /// A leaf that owns memory: every clone and drop shows in the token's count.
    #[derive(Clone, Debug)]
    struct Owned {
        key: u64,
        _token: std::sync::Arc<()>,
    }

    impl Owned {
        fn new(key: u64, token: &std::sync::Arc<()>) -> Owned {
            Owned {
                key,
                _token: token.clone(),
            }
        }
    }

    impl Leaf for Owned {
        type Key = u64;
        fn key(&self) -> &u64 {
            &self.key
        }
    }

    #[test]
    fn leaves_inserted_and_removed_in_place_are_each_dropped_once() {
        let token = std::sync::Arc::new(());
        let mut trie = Trie::default();
        for key in 0..3000u64 {
            assert!(trie.insert_new(Owned::new(key, &token)).is_ok());
        }
        assert_eq!(std::sync::Arc::strong_count(&token), 3001);
        for key in (0..3000u64).filter(|key| key % 3 != 0) {
            let removed = trie.remove(&key).expect("present");
            assert_eq!(removed.key, key);
        }
        assert_eq!(std::sync::Arc::strong_count(&token), 1001);
        assert!((0..3000u64).all(|key| trie.get(&key).is_some() == (key % 3 == 0)));
        // A shared trie: edits copy the branches on the path; the clone keeps its leaves.
        let shared = trie.clone();
        for key in 3000..3500u64 {
            assert!(trie.insert_new(Owned::new(key, &token)).is_ok());
        }
        trie.remove(&0);
        assert_eq!(shared.len(), 1000);
        assert_eq!(trie.len(), 1499);
        drop(shared);
        drop(trie);
        assert_eq!(std::sync::Arc::strong_count(&token), 1);
    }

    #[test]
    fn insert_get_remove_many() {
        let mut trie = Trie::default();
        for key in 0..5000u64 {
            assert_eq!(trie.insert(Entry(key, 1)), None);
        }
        assert_eq!(trie.len(), 5000);
        assert_eq!(trie.insert(Entry(7, 2)), Some(Entry(7, 1)));
        assert_eq!(trie.insert_new(Entry(7, 3)), Err(Entry(7, 3)));
        assert_eq!(trie.insert_new(Entry(9000, 3)), Ok(()));
        assert_eq!(trie.remove(&9000), Some(Entry(9000, 3)));
        assert_eq!(trie.remove(&9000), None);
        assert_eq!(trie.get(&7), Some(&Entry(7, 2)));
        let snapshot = trie.clone();
        for key in (0..5000u64).step_by(2) {
            assert_eq!(trie.remove(&key).map(|e| e.0), Some(key));
        }
        assert_eq!(trie.len(), 2500);
        assert_eq!(trie.get(&4), None);
        assert_eq!(trie.get(&5), Some(&Entry(5, 1)));
        assert_eq!(snapshot.len(), 5000);
        assert_eq!(snapshot.get(&4), Some(&Entry(4, 1)));
        let mut seen = 0;
        trie.for_each(|_| seen += 1);
        assert_eq!(seen, 2500);
        for key in (1..5000u64).step_by(2) {
            assert!(trie.remove(&key).is_some());
        }
        assert!(trie.is_empty());
        assert!(trie.root.is_none());
    }

    #[test]
    fn get_mut_unshares_only_the_path() {
        let mut trie = Trie::default();
        for key in 0..100u64 {
            trie.insert(Entry(key, 0));
        }
        let snapshot = trie.clone();
        if let Some(entry) = trie.get_mut(&42) {
            entry.1 = 9;
        }
        assert_eq!(trie.get(&42), Some(&Entry(42, 9)));
        assert_eq!(snapshot.get(&42), Some(&Entry(42, 0)));
        assert!(trie.get_mut(&1000).is_none());
    }

    fn order(trie: &Trie<Entry>) -> Vec<Entry> {
        trie.to_vec()
    }

    #[test]
    fn built_in_one_pass_equals_inserted_one_by_one() {
        for count in [0u64, 1, 2, 31, 32, 33, 1000, 5000] {
            let keys: Vec<u64> = (0..count)
                .map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .collect();
            let mut inserted = Trie::default();
            for key in &keys {
                inserted.insert(Entry(*key, 1));
            }
            let built =
                Trie::from_leaves(keys.iter().map(|k| Entry(*k, 1))).expect("distinct keys");
            assert_eq!(built.len(), inserted.len());
            assert_eq!(order(&built), order(&inserted), "{count} keys");
            for key in &keys {
                assert_eq!(built.get(key), Some(&Entry(*key, 1)));
            }
        }
        let twice = Trie::from_leaves(vec![Entry(1, 1), Entry(2, 2), Entry(1, 3)]);
        assert_eq!(twice.err(), Some(Entry(1, 3)));
    }

    #[test]
    fn built_on_threads_equals_built_on_one() {
        for count in [0u64, 1, 2, 33, 1000, 70_000] {
            let keys: Vec<u64> = (0..count)
                .map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .collect();
            let one = Trie::from_leaves(keys.iter().map(|k| Entry(*k, 1))).expect("distinct");
            for threads in 1..=4 {
                // Empty places among the leaves are skipped.
                let mut places: Vec<Option<Entry>> = keys
                    .iter()
                    .flat_map(|k| [Some(Entry(*k, 1)), None])
                    .collect();
                let built = Trie::from_places_parallel(&mut places, threads).expect("distinct");
                assert!(places.iter().all(Option::is_none), "every leaf taken");
                assert_eq!(built.len(), one.len());
                assert_eq!(
                    order(&built),
                    order(&one),
                    "{count} keys on {threads} threads"
                );
            }
        }
        let mut places: Vec<Option<Entry>> = (0..5000u64).map(|k| Some(Entry(k, 1))).collect();
        places.push(Some(Entry(4321, 2)));
        let twice = Trie::from_places_parallel(&mut places, 2);
        assert!(
            matches!(twice.err(), Some(Entry(4321, _))),
            "a key given twice comes back"
        );
    }

    #[test]
    fn sequential_names_spread_evenly_over_the_first_level() {
        // Names that differ only in their last digits (as sequential and generated names do)
        // must reach every chunk of the first level about equally: the finalizer's job.
        let mut per_chunk = [0usize; 32];
        for i in 0..32_000 {
            let name = format!("n{i:07}");
            per_chunk[chunk(hash_key(name.as_bytes()), 0) as usize] += 1;
        }
        for (at, count) in per_chunk.iter().enumerate() {
            assert!(
                (800..=1200).contains(count),
                "chunk {at}: {count} of 32,000"
            );
        }
        let ids: std::collections::HashSet<u64> = (0..10_000i64).map(|id| hash_key(&id)).collect();
        assert_eq!(ids.len(), 10_000, "distinct ids hash apart");
    }

    #[test]
    fn level_order_keys_hold_every_chunk_of_the_hash() {
        let mut hash = 0x0123_4567_89ab_cdef_u64;
        for _ in 0..1000 {
            hash = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ 0x5bd1_e995;
            let key = level_order(hash);
            for depth in 0..DEPTH_MAX {
                assert_eq!(
                    key_chunk(key, depth),
                    chunk(hash, depth),
                    "{hash:x} at {depth}"
                );
            }
        }
        assert_eq!(level_order(u64::MAX), u64::MAX);
        assert_eq!(key_chunk(level_order(1 << 63), DEPTH_MAX - 1), 8);
    }

    #[test]
    fn one_pass_build_puts_full_collisions_in_a_bucket() {
        let hashed = vec![(0, Entry(1, 1)), (0, Entry(2, 2)), (1, Entry(3, 3))];
        let trie = Trie::from_hashed(hashed).expect("distinct keys");
        let mut seen = Vec::new();
        trie.for_each(|entry| seen.push(entry.0));
        assert_eq!(seen, [1, 2, 3]);
        let duplicate = Trie::from_hashed(vec![(0, Entry(1, 1)), (0, Entry(1, 2))]);
        assert_eq!(duplicate.err(), Some(Entry(1, 2)));
    }

    #[test]
    fn full_hash_collisions_share_a_bucket() {
        // Leaves with one hash: exercise the bucket through `split` at the deepest level.
        let a = Entry(1, 1);
        let b = Entry(2, 2);
        let mut branch = split(a.clone(), 0, b.clone(), 0, 0);
        let mut depth_seen = 0;
        let mut cursor = &branch;
        while !cursor.maps().is_bucket() {
            assert_eq!(cursor.leaves().len(), 0);
            cursor = &cursor.branches()[0];
            depth_seen += 1;
        }
        assert_eq!(depth_seen, DEPTH_MAX);
        assert_eq!(cursor.leaves(), [a.clone(), b.clone()]);
        let removed = remove_in(&mut branch, &1, 0, 0);
        assert_eq!(removed, Some(a));
        // The deepest bucket collapsed to a leaf, then each one-leaf branch above it too.
        assert_eq!(branch.leaves(), [b]);
        assert!(branch.branches().is_empty());
    }

    /// Empties `trie` through a [`Drain`], moving the leaves no clone shares into `out`.
    fn drain_into<L: Leaf>(trie: &mut Trie<L>, out: &mut Vec<L>) {
        let mut drain = Drain::default();
        drain.take(trie);
        while drain.step(out) {}
    }

    #[test]
    fn a_shared_trie_keeps_its_contents_while_the_other_changes() {
        let mut trie = Trie::default();
        for key in 0..2000u64 {
            trie.insert(Entry(key, 0));
        }
        let snapshot = trie.clone();
        for key in 0..1000u64 {
            trie.remove(&key);
            trie.insert(Entry(key + 5000, 1));
        }
        let mut drained = Vec::new();
        let mut copy = snapshot.clone();
        drain_into(&mut copy, &mut drained);
        assert!(drained.is_empty(), "shared branches are only released");
        assert_eq!(snapshot.len(), 2000);
        assert!((0..2000).all(|key| snapshot.get(&key) == Some(&Entry(key, 0))));
        assert_eq!(trie.len(), 2000);
        assert!((0..1000).all(|key| trie.get(&key).is_none()));
        drop(snapshot);
        drain_into(&mut trie, &mut drained);
        assert_eq!(drained.len(), 2000, "unshared leaves are moved out");
    }
}
