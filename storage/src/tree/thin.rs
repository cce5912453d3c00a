//! Write access to a uniquely owned `triomphe::ThinArc` (a header and a slice in one
//! allocation behind an 8-byte pointer). Znodes and trie branches are stored this way: one
//! allocation each and the smallest pointer in the parent, which is what keeps the tree compact.

use triomphe::{Arc, HeaderSliceWithLengthProtected, ThinArc};

/// The header and slice of `arc` for writing, if no clone shares the allocation.
pub(crate) fn get_mut<H, T>(
    arc: &mut ThinArc<H, T>,
) -> Option<&mut HeaderSliceWithLengthProtected<H, T>> {
    let inner = arc.with_arc_mut(|fat| Arc::get_mut(fat).map(|inner| inner as *mut _))?;
    // SAFETY: `Arc::get_mut` succeeded, so this is the only reference to the allocation, and
    // the closure did not replace the Arc, so `arc` still points to that same allocation
    // (`with_arc_mut` writes the unchanged pointer back). The returned borrow is tied to the
    // `&mut` borrow of `arc`, so nothing can clone, drop or read the ThinArc while it lives.
    Some(unsafe { &mut *inner })
}

/// Whether `arc` is the only reference to its allocation.
pub(crate) fn is_unique<H, T>(arc: &ThinArc<H, T>) -> bool {
    ThinArc::strong_count(arc) == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_when_unique() {
        let mut arc = ThinArc::from_header_and_slice(1u32, &[1u8, 2, 3]);
        if let Some(inner) = get_mut(&mut arc) {
            *inner.header_mut() = 7;
            inner.slice_mut()[0] = 9;
        }
        assert_eq!((arc.header.header, &arc.slice), (7, &[9u8, 2, 3][..]));
        let shared = arc.clone();
        assert!(!is_unique(&arc));
        assert!(get_mut(&mut arc).is_none());
        drop(shared);
        assert!(is_unique(&arc));
    }
}
