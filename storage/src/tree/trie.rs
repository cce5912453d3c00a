//! A persistent hash trie (a compressed HAMT): the one collection the tree is built from
//! (children of a znode, sessions, ephemeral owners, container and TTL sets).
//!
//! Cloning is O(1) (one reference count); a write copies only the branches on the path to the
//! changed leaf that are still shared with a clone (`Arc::make_mut`), so a published tree costs
//! its writer in proportion to what changes afterwards. Branches store only the occupied slots
//! (bitmap + exact-size vector), which keeps large, sparse levels small.
//!
//! Hashing is SipHash with fixed keys: deterministic (every server lays out the same trie) and
//! costly to flood with colliding names. Full 64-bit collisions end in a collision bucket.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

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

pub(crate) struct Trie<L> {
    root: Option<Arc<Branch<L>>>,
    len: u32,
}

struct Branch<L> {
    /// Bit i set: slot for hash chunk i is present, at index popcount(bitmap below i).
    bitmap: u32,
    slots: Vec<Slot<L>>,
}

enum Slot<L> {
    Leaf(L),
    Branch(Arc<Branch<L>>),
    /// Leaves whose 64-bit hashes are all equal (only at `DEPTH_MAX`).
    Bucket(Arc<Vec<L>>),
}

impl<L> Clone for Trie<L> {
    fn clone(&self) -> Self {
        Trie {
            root: self.root.clone(),
            len: self.len,
        }
    }
}

impl<L: Clone> Clone for Branch<L> {
    fn clone(&self) -> Self {
        Branch {
            bitmap: self.bitmap,
            slots: self.slots.clone(),
        }
    }
}

impl<L: Clone> Clone for Slot<L> {
    fn clone(&self) -> Self {
        match self {
            Slot::Leaf(leaf) => Slot::Leaf(leaf.clone()),
            Slot::Branch(branch) => Slot::Branch(branch.clone()),
            Slot::Bucket(bucket) => Slot::Bucket(bucket.clone()),
        }
    }
}

impl<L> Default for Trie<L> {
    fn default() -> Self {
        Trie { root: None, len: 0 }
    }
}

fn chunk(hash: u64, depth: u32) -> u32 {
    ((hash >> (depth * LEVEL_BITS)) & LEVEL_MASK) as u32
}

impl<L> Branch<L> {
    /// The slot index for `chunk`, if present.
    fn position(&self, chunk: u32) -> Result<usize, usize> {
        let bit = 1u32 << chunk;
        let index = (self.bitmap & (bit - 1)).count_ones() as usize;
        if self.bitmap & bit == 0 {
            Err(index)
        } else {
            Ok(index)
        }
    }
}

impl<L: Leaf> Trie<L> {
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn get(&self, key: &L::Key) -> Option<&L> {
        let hash = hash_key(key);
        let mut branch = self.root.as_deref()?;
        let mut depth = 0;
        loop {
            let index = branch.position(chunk(hash, depth)).ok()?;
            match &branch.slots[index] {
                Slot::Leaf(leaf) => return (leaf.key() == key).then_some(leaf),
                Slot::Branch(next) => branch = next,
                Slot::Bucket(bucket) => return bucket.iter().find(|leaf| leaf.key() == key),
            }
            depth += 1;
        }
    }

    pub(crate) fn contains(&self, key: &L::Key) -> bool {
        self.get(key).is_some()
    }

    /// A mutable reference to the leaf under `key`, unsharing the branches on its path.
    pub(crate) fn get_mut(&mut self, key: &L::Key) -> Option<&mut L> {
        if !self.contains(key) {
            return None;
        }
        let hash = hash_key(key);
        let mut branch = self.root.as_mut()?;
        let mut depth = 0;
        loop {
            let inner = Arc::make_mut(branch);
            let index = inner.position(chunk(hash, depth)).ok()?;
            match &mut inner.slots[index] {
                Slot::Leaf(leaf) => return (leaf.key() == key).then_some(leaf),
                Slot::Branch(next) => branch = next,
                Slot::Bucket(bucket) => {
                    return Arc::make_mut(bucket)
                        .iter_mut()
                        .find(|leaf| leaf.key() == key)
                }
            }
            depth += 1;
        }
    }

    /// Inserts `leaf`, returning the leaf it replaced (same key), if any.
    pub(crate) fn insert(&mut self, leaf: L) -> Option<L> {
        let hash = hash_key(leaf.key());
        let root = self.root.get_or_insert_with(|| {
            Arc::new(Branch {
                bitmap: 0,
                slots: Vec::new(),
            })
        });
        let replaced = insert_in(Arc::make_mut(root), leaf, hash, 0);
        if replaced.is_none() {
            self.len += 1;
        }
        replaced
    }

    /// Removes and returns the leaf under `key`.
    pub(crate) fn remove(&mut self, key: &L::Key) -> Option<L> {
        if !self.contains(key) {
            return None;
        }
        let hash = hash_key(key);
        let root = self.root.as_mut()?;
        let removed = remove_in(Arc::make_mut(root), key, hash, 0);
        if removed.is_some() {
            self.len -= 1;
            if self.len == 0 {
                self.root = None;
            }
        }
        removed
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

fn for_each_in<L>(branch: &Branch<L>, visit: &mut impl FnMut(&L)) {
    for slot in &branch.slots {
        match slot {
            Slot::Leaf(leaf) => visit(leaf),
            Slot::Branch(next) => for_each_in(next, visit),
            Slot::Bucket(bucket) => bucket.iter().for_each(&mut *visit),
        }
    }
}

fn insert_in<L: Leaf>(branch: &mut Branch<L>, leaf: L, hash: u64, depth: u32) -> Option<L> {
    let chunk = chunk(hash, depth);
    let index = match branch.position(chunk) {
        Err(index) => {
            branch.bitmap |= 1 << chunk;
            branch.slots.insert(index, Slot::Leaf(leaf));
            return None;
        }
        Ok(index) => index,
    };
    match &mut branch.slots[index] {
        Slot::Branch(next) => insert_in(Arc::make_mut(next), leaf, hash, depth + 1),
        Slot::Bucket(bucket) => {
            let bucket = Arc::make_mut(bucket);
            match bucket.iter_mut().find(|old| old.key() == leaf.key()) {
                Some(old) => Some(std::mem::replace(old, leaf)),
                None => {
                    bucket.push(leaf);
                    None
                }
            }
        }
        Slot::Leaf(old) if old.key() == leaf.key() => Some(std::mem::replace(old, leaf)),
        Slot::Leaf(old) => {
            let old_hash = hash_key(old.key());
            let old = old.clone();
            branch.slots[index] = split(old, old_hash, leaf, hash, depth + 1);
            None
        }
    }
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
    Slot::Branch(Arc::new(Branch { bitmap, slots }))
}

fn remove_in<L: Leaf>(branch: &mut Branch<L>, key: &L::Key, hash: u64, depth: u32) -> Option<L> {
    let chunk = chunk(hash, depth);
    let index = branch.position(chunk).ok()?;
    let removed = match &mut branch.slots[index] {
        Slot::Leaf(leaf) if leaf.key() == key => {
            branch.bitmap &= !(1 << chunk);
            return match branch.slots.remove(index) {
                Slot::Leaf(leaf) => Some(leaf),
                _ => None,
            };
        }
        Slot::Leaf(_) => return None,
        Slot::Branch(next) => remove_in(Arc::make_mut(next), key, hash, depth + 1)?,
        Slot::Bucket(bucket) => {
            let bucket = Arc::make_mut(bucket);
            let at = bucket.iter().position(|leaf| leaf.key() == key)?;
            bucket.swap_remove(at)
        }
    };
    // Keep the trie canonical: a branch or bucket left with one leaf becomes that leaf.
    if let Some(single) = single_leaf(&branch.slots[index]) {
        branch.slots[index] = Slot::Leaf(single);
    }
    Some(removed)
}

fn single_leaf<L: Clone>(slot: &Slot<L>) -> Option<L> {
    match slot {
        Slot::Branch(branch) if branch.slots.len() == 1 => match &branch.slots[0] {
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

    #[test]
    fn full_hash_collisions_share_a_bucket() {
        // Leaves with one hash: exercise the bucket through `split` at the deepest level.
        let a = Entry(1, 1);
        let b = Entry(2, 2);
        let Slot::Branch(root) = split(a.clone(), 0, b.clone(), 0, 0) else {
            panic!("two leaves make a branch");
        };
        let mut branch = (*root).clone();
        let mut depth_seen = 0;
        let mut cursor = &branch;
        while let Slot::Branch(next) = &cursor.slots[0] {
            cursor = next;
            depth_seen += 1;
        }
        assert_eq!(depth_seen, DEPTH_MAX - 1);
        assert!(matches!(&cursor.slots[0], Slot::Bucket(bucket) if bucket.len() == 2));
        let removed = remove_in(&mut branch, &1, 0, 0);
        assert_eq!(removed, Some(a));
        // The deepest bucket collapsed to a leaf, then each one-leaf branch above it too.
        assert!(matches!(&branch.slots[0], Slot::Leaf(leaf) if *leaf == b));
    }
}
