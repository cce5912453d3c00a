//! A persistent hash trie (a compressed HAMT): the one collection the tree is built from
//! (children of a znode, sessions, ephemeral owners, container and TTL sets).
//!
//! Cloning is O(1) (one reference count); a write copies only the branches on the path to the
//! changed leaf that are still shared with a clone, so a published tree costs its writer in
//! proportion to what changes afterwards. A branch is one allocation holding a bitmap of the
//! occupied slots and exactly those slots, which keeps sparse levels small and costs one cache
//! miss per level.
//!
//! Hashing is SipHash with fixed keys: deterministic (every server lays out the same trie) and
//! costly to flood with colliding names. Full 64-bit collisions end in a bucket.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use triomphe::ThinArc;

use super::thin;

/// Bits of the hash consumed per level.
const LEVEL_BITS: u32 = 5;
const LEVEL_MASK: u64 = (1 << LEVEL_BITS) - 1;
/// Levels until the 64 hash bits are used up; below that, equal hashes share a bucket.
const DEPTH_MAX: u32 = 64_u32.div_ceil(LEVEL_BITS);
const _: () = assert!(1 << LEVEL_BITS == u32::BITS);

/// What a trie stores: a value that carries its own key.
pub(crate) trait Leaf: Clone {
    type Key: ?Sized + Eq + Hash;
    fn key(&self) -> &Self::Key;
}

/// Hashes a key the way every trie in the tree does.
pub(crate) fn hash_key<K: ?Sized + Hash>(key: &K) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

#[derive(Clone, Copy, Default)]
struct Header {
    /// Bit i set: slot for hash chunk i is present, at index popcount(bitmap below i).
    bitmap: u32,
    /// Leaves in this branch and below.
    leaves: u32,
}

/// A branch: header and occupied slots in one allocation.
type Branch<L> = ThinArc<Header, Slot<L>>;

pub(crate) struct Trie<L> {
    root: Option<Branch<L>>,
}

enum Slot<L> {
    Leaf(L),
    Branch(Branch<L>),
    /// Leaves whose 64-bit hashes are all equal (only at `DEPTH_MAX`).
    Bucket(Arc<Vec<L>>),
    /// What is left in a branch whose slots were moved out just before it is dropped (moving
    /// spares touching every child's reference count); never visible to readers.
    Moved,
}

impl<L> Clone for Trie<L> {
    fn clone(&self) -> Self {
        Trie {
            root: self.root.clone(),
        }
    }
}

impl<L: Clone> Clone for Slot<L> {
    fn clone(&self) -> Self {
        match self {
            Slot::Leaf(leaf) => Slot::Leaf(leaf.clone()),
            Slot::Branch(branch) => Slot::Branch(branch.clone()),
            Slot::Bucket(bucket) => Slot::Bucket(bucket.clone()),
            Slot::Moved => Slot::Moved,
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

/// The slot index for `chunk`: `Ok` if present, `Err` with the insertion index if not.
fn position(bitmap: u32, chunk: u32) -> Result<usize, usize> {
    let bit = 1u32 << chunk;
    let index = (bitmap & (bit - 1)).count_ones() as usize;
    if bitmap & bit == 0 {
        Err(index)
    } else {
        Ok(index)
    }
}

fn header<L>(branch: &Branch<L>) -> Header {
    branch.header.header
}

fn new_branch<L>(header: Header, slots: Vec<Slot<L>>) -> Branch<L> {
    ThinArc::from_header_and_iter(header, slots.into_iter())
}

/// The branch for writing, copied first if a clone shares it.
fn unshare<L: Clone>(
    branch: &mut Branch<L>,
) -> &mut triomphe::HeaderSliceWithLengthProtected<Header, Slot<L>> {
    if !thin::is_unique(branch) {
        *branch = ThinArc::from_header_and_iter(header(branch), branch.slice.iter().cloned());
    }
    match thin::get_mut(branch) {
        Some(inner) => inner,
        None => unreachable!("a branch is unique right after it is copied"),
    }
}

/// The slots of `branch`, moved out if no clone shares it (the branch is replaced next).
fn take_slots<L: Clone>(branch: &mut Branch<L>) -> Vec<Slot<L>> {
    match thin::get_mut(branch) {
        Some(inner) => inner
            .slice_mut()
            .iter_mut()
            .map(|slot| std::mem::replace(slot, Slot::Moved))
            .collect(),
        None => branch.slice.to_vec(),
    }
}

/// Replaces `branch` by a copy with `slot` added at `index` for `chunk` (branches are
/// exact-size, so a new slot means a new allocation).
fn add_slot<L: Clone>(branch: &mut Branch<L>, index: usize, chunk: u32, slot: Slot<L>) {
    let old = header(branch);
    let mut slots = take_slots(branch);
    slots.insert(index, slot);
    let header = Header {
        bitmap: old.bitmap | 1 << chunk,
        leaves: old.leaves + 1,
    };
    *branch = new_branch(header, slots);
}

/// Replaces `branch` by a copy without the slot at `index` for `chunk`; returns that slot.
fn remove_slot<L: Clone>(branch: &mut Branch<L>, index: usize, chunk: u32) -> Slot<L> {
    let old = header(branch);
    let mut slots = take_slots(branch);
    let removed = slots.remove(index);
    let header = Header {
        bitmap: old.bitmap & !(1 << chunk),
        leaves: old.leaves - 1,
    };
    *branch = new_branch(header, slots);
    removed
}

impl<L: Leaf> Trie<L> {
    pub(crate) fn len(&self) -> usize {
        self.root
            .as_ref()
            .map_or(0, |root| header(root).leaves as usize)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    pub(crate) fn get(&self, key: &L::Key) -> Option<&L> {
        let hash = hash_key(key);
        let mut branch = self.root.as_ref()?;
        let mut depth = 0;
        loop {
            let index = position(header(branch).bitmap, chunk(hash, depth)).ok()?;
            match &branch.slice[index] {
                Slot::Leaf(leaf) => return (leaf.key() == key).then_some(leaf),
                Slot::Branch(next) => branch = next,
                Slot::Bucket(bucket) => return bucket.iter().find(|leaf| leaf.key() == key),
                Slot::Moved => return None,
            }
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
            let inner = unshare(branch);
            let index = position(inner.header().bitmap, chunk(hash, depth)).ok()?;
            match &mut inner.slice_mut()[index] {
                Slot::Leaf(leaf) => return (leaf.key() == key).then_some(leaf),
                Slot::Branch(next) => branch = next,
                Slot::Bucket(bucket) => {
                    return Arc::make_mut(bucket)
                        .iter_mut()
                        .find(|leaf| leaf.key() == key)
                }
                Slot::Moved => return None,
            }
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
                let header = Header {
                    bitmap: 1 << chunk(hash, 0),
                    leaves: 1,
                };
                self.root = Some(new_branch(header, vec![Slot::Leaf(leaf)]));
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
        if header(root).leaves == 0 {
            self.root = None;
        }
        Some(removed)
    }

    /// Calls `visit` on every leaf, in trie order (stable for a given set of keys).
    pub(crate) fn for_each(&self, mut visit: impl FnMut(&L)) {
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
    pub(crate) fn from_leaves(leaves: Vec<L>) -> Result<Trie<L>, L> {
        let hashed = leaves
            .into_iter()
            .map(|leaf| (hash_key(leaf.key()), leaf))
            .collect();
        Trie::from_hashed(hashed)
    }

    fn from_hashed(hashed: Vec<(u64, L)>) -> Result<Trie<L>, L> {
        if hashed.is_empty() {
            return Ok(Trie::default());
        }
        // Ordered by the chunks in the order the levels use them, every branch's leaves are
        // one run, and within it every slot's. The sort key is computed once per leaf.
        let mut keyed: Vec<(u128, u64, L)> = hashed
            .into_iter()
            .map(|(hash, leaf)| (level_order(hash), hash, leaf))
            .collect();
        keyed.sort_unstable_by_key(|(key, _, _)| *key);
        let sorted = keyed
            .into_iter()
            .map(|(_, hash, leaf)| (hash, leaf))
            .collect();
        Ok(Trie {
            root: Some(build_branch(sorted, 0)?),
        })
    }
}

/// `hash` with its chunks reordered so that comparing two keys compares chunk 0 first, then
/// chunk 1, and so on.
fn level_order(hash: u64) -> u128 {
    (0..DEPTH_MAX).fold(0u128, |key, depth| {
        key << LEVEL_BITS | u128::from(chunk(hash, depth))
    })
}

/// The branch at `depth` holding `leaves` (sorted by `level_order`, all with the same chunks
/// above `depth`).
fn build_branch<L: Leaf>(leaves: Vec<(u64, L)>, depth: u32) -> Result<Branch<L>, L> {
    let count = leaves.len() as u32;
    let mut bitmap = 0u32;
    let mut slots = Vec::new();
    let mut rest = leaves.into_iter().peekable();
    while let Some((hash, leaf)) = rest.next() {
        let slot_chunk = chunk(hash, depth);
        let mut group = vec![(hash, leaf)];
        while let Some(next) = rest.next_if(|(next, _)| chunk(*next, depth) == slot_chunk) {
            group.push(next);
        }
        bitmap |= 1 << slot_chunk;
        slots.push(build_slot(group, depth + 1)?);
    }
    Ok(new_branch(
        Header {
            bitmap,
            leaves: count,
        },
        slots,
    ))
}

/// The slot for `group` (leaves whose hashes agree below `depth`), as `split` would make it.
fn build_slot<L: Leaf>(mut group: Vec<(u64, L)>, depth: u32) -> Result<Slot<L>, L> {
    if group.len() == 1 {
        let (_, leaf) = group.remove(0);
        return Ok(Slot::Leaf(leaf));
    }
    if depth < DEPTH_MAX {
        return Ok(Slot::Branch(build_branch(group, depth)?));
    }
    let mut bucket: Vec<L> = Vec::with_capacity(group.len());
    for (_, leaf) in group {
        if bucket.iter().any(|old| old.key() == leaf.key()) {
            return Err(leaf);
        }
        bucket.push(leaf);
    }
    Ok(Slot::Bucket(Arc::new(bucket)))
}

impl<L: Clone> Trie<L> {
    /// Empties the trie, moving into `out` the leaves that no clone shares (the rest are only
    /// released), so that dropping nested structures can proceed without recursion.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<L>) {
        if let Some(mut root) = self.root.take() {
            drain_branch(&mut root, out);
        }
    }
}

fn drain_branch<L: Clone>(branch: &mut Branch<L>, out: &mut Vec<L>) {
    let Some(inner) = thin::get_mut(branch) else {
        return;
    };
    for slot in inner.slice_mut() {
        match std::mem::replace(slot, Slot::Moved) {
            Slot::Leaf(leaf) => out.push(leaf),
            Slot::Branch(mut next) => drain_branch(&mut next, out),
            Slot::Bucket(bucket) => {
                if let Ok(leaves) = Arc::try_unwrap(bucket) {
                    out.extend(leaves);
                }
            }
            Slot::Moved => {}
        }
    }
}

fn for_each_in<L>(branch: &Branch<L>, visit: &mut impl FnMut(&L)) {
    for slot in &branch.slice {
        match slot {
            Slot::Leaf(leaf) => visit(leaf),
            Slot::Branch(next) => for_each_in(next, visit),
            Slot::Bucket(bucket) => bucket.iter().for_each(&mut *visit),
            Slot::Moved => {}
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
    let chunk = chunk(hash, depth);
    let index = match position(header(branch).bitmap, chunk) {
        Err(index) => {
            add_slot(branch, index, chunk, Slot::Leaf(leaf));
            return Ok(None);
        }
        Ok(index) => index,
    };
    let inner = unshare(branch);
    let outcome = match &mut inner.slice_mut()[index] {
        Slot::Branch(next) => put_in(next, leaf, hash, depth + 1, replace),
        Slot::Bucket(bucket) => {
            let found = bucket.iter().position(|old| old.key() == leaf.key());
            match found {
                Some(_) if !replace => Err(leaf),
                Some(at) => Ok(Some(std::mem::replace(
                    &mut Arc::make_mut(bucket)[at],
                    leaf,
                ))),
                None => {
                    Arc::make_mut(bucket).push(leaf);
                    Ok(None)
                }
            }
        }
        Slot::Moved => Err(leaf),
        Slot::Leaf(old) if old.key() == leaf.key() => match replace {
            true => Ok(Some(std::mem::replace(old, leaf))),
            false => Err(leaf),
        },
        Slot::Leaf(old) => {
            let old = old.clone();
            let old_hash = hash_key(old.key());
            inner.slice_mut()[index] = split(old, old_hash, leaf, hash, depth + 1);
            Ok(None)
        }
    };
    if let Ok(None) = outcome {
        inner.header_mut().leaves += 1;
    }
    outcome
}

/// A slot holding two leaves with different keys whose hashes agree up to `depth`.
fn split<L: Leaf>(a: L, a_hash: u64, b: L, b_hash: u64, depth: u32) -> Slot<L> {
    if depth >= DEPTH_MAX {
        return Slot::Bucket(Arc::new(vec![a, b]));
    }
    let (a_chunk, b_chunk) = (chunk(a_hash, depth), chunk(b_hash, depth));
    let (bitmap, slots) = if a_chunk == b_chunk {
        (1 << a_chunk, vec![split(a, a_hash, b, b_hash, depth + 1)])
    } else if a_chunk < b_chunk {
        (
            (1 << a_chunk) | (1 << b_chunk),
            vec![Slot::Leaf(a), Slot::Leaf(b)],
        )
    } else {
        (
            (1 << a_chunk) | (1 << b_chunk),
            vec![Slot::Leaf(b), Slot::Leaf(a)],
        )
    };
    Slot::Branch(new_branch(Header { bitmap, leaves: 2 }, slots))
}

fn remove_in<L: Leaf>(branch: &mut Branch<L>, key: &L::Key, hash: u64, depth: u32) -> Option<L> {
    let chunk = chunk(hash, depth);
    let index = position(header(branch).bitmap, chunk).ok()?;
    if let Slot::Leaf(leaf) = &branch.slice[index] {
        if leaf.key() != key {
            return None;
        }
        return match remove_slot(branch, index, chunk) {
            Slot::Leaf(leaf) => Some(leaf),
            _ => None,
        };
    }
    let inner = unshare(branch);
    let slot = &mut inner.slice_mut()[index];
    let removed = match slot {
        Slot::Leaf(_) | Slot::Moved => None,
        Slot::Branch(next) => remove_in(next, key, hash, depth + 1),
        Slot::Bucket(bucket) => {
            let at = bucket.iter().position(|leaf| leaf.key() == key)?;
            Some(Arc::make_mut(bucket).swap_remove(at))
        }
    }?;
    // Keep the trie canonical: a branch or bucket left with one leaf becomes that leaf.
    if let Some(single) = single_leaf(slot) {
        *slot = Slot::Leaf(single);
    }
    inner.header_mut().leaves -= 1;
    Some(removed)
}

fn single_leaf<L: Clone>(slot: &Slot<L>) -> Option<L> {
    match slot {
        Slot::Branch(branch) if branch.slice.len() == 1 => match &branch.slice[0] {
            Slot::Leaf(leaf) => Some(leaf.clone()),
            _ => None,
        },
        Slot::Bucket(bucket) if bucket.len() == 1 => Some(bucket[0].clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Entry(u64, u32);

    impl Leaf for Entry {
        type Key = u64;
        fn key(&self) -> &u64 {
            &self.0
        }
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
            let built = Trie::from_leaves(keys.iter().map(|k| Entry(*k, 1)).collect())
                .expect("distinct keys");
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
        let Slot::Branch(mut branch) = split(a.clone(), 0, b.clone(), 0, 0) else {
            panic!("two leaves make a branch");
        };
        let mut depth_seen = 0;
        let mut cursor = &branch;
        while let Slot::Branch(next) = &cursor.slice[0] {
            cursor = next;
            depth_seen += 1;
        }
        assert_eq!(depth_seen, DEPTH_MAX - 1);
        assert!(matches!(&cursor.slice[0], Slot::Bucket(bucket) if bucket.len() == 2));
        let removed = remove_in(&mut branch, &1, 0, 0);
        assert_eq!(removed, Some(a));
        // The deepest bucket collapsed to a leaf, then each one-leaf branch above it too.
        assert!(matches!(&branch.slice[0], Slot::Leaf(leaf) if *leaf == b));
    }
}
