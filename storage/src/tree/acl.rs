//! ACL lists stored once: every node holds a pointer to a shared, interned list, so a million
//! nodes with `world:anyone` share one allocation. The reference count of that pointer is the
//! usage count; the interner drops lists no node uses any more when it has grown.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use triomphe::Arc as ThinArc;
use zinc_protocol::Acl;

/// A shared ACL list. Equality and hashing compare contents.
pub(crate) type AclRef = ThinArc<Vec<Acl>>;

/// An interned list, looked up by its contents.
#[derive(PartialEq, Eq)]
struct Interned(AclRef);

impl Hash for Interned {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_slice().hash(state);
    }
}

impl Borrow<[Acl]> for Interned {
    fn borrow(&self) -> &[Acl] {
        self.0.as_slice()
    }
}

/// Distinct ACL lists seen by the writer. Only a cache: losing it changes no tree contents.
#[derive(Default)]
pub(crate) struct AclInterner {
    lists: HashSet<Interned, BuildHasherDefault<DefaultHasher>>,
    /// Size after the last sweep; the next sweep runs when the set has doubled.
    swept_len: usize,
}

/// Lists the interner keeps before it first sweeps unused ones.
const SWEEP_LEN_MIN: usize = 1024;

impl AclInterner {
    pub(crate) fn intern(&mut self, acl: &[Acl]) -> AclRef {
        if let Some(found) = self.lists.get(acl) {
            return found.0.clone();
        }
        if self.lists.len() >= SWEEP_LEN_MIN.max(self.swept_len * 2) {
            // Only the interner holds a list whose count is 1: no node uses it.
            self.lists.retain(|list| !list.0.is_unique());
            self.swept_len = self.lists.len();
        }
        let list = AclRef::new(acl.to_vec());
        self.lists.insert(Interned(list.clone()));
        list
    }

    pub(crate) fn len(&self) -> usize {
        self.lists.len()
    }
}

/// The interner shared by a tree and its clones (all writers of one lineage).
#[derive(Default)]
pub(crate) struct SharedInterner(Mutex<AclInterner>);

impl SharedInterner {
    pub(crate) fn intern(&self, acl: &[Acl]) -> AclRef {
        // A poisoned lock only means a panic elsewhere; the cache itself stays valid.
        let mut interner = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        interner.intern(acl)
    }

    pub(crate) fn len(&self) -> usize {
        let interner = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        interner.len()
    }

    /// Every list interned and not swept: each list a node of the lineage uses is among them
    /// (a used list is never swept).
    pub(crate) fn lists(&self) -> Vec<AclRef> {
        let interner = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        interner.lists.iter().map(|list| list.0.clone()).collect()
    }
}
