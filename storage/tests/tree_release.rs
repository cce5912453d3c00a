//! A copy of the tree released in steps frees what only it held, a bounded amount of work
//! between two calls of the caller's function, and leaves the live tree as it was.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use zinc_protocol::txn::{CreateTxn, SetDataTxn, Txn, TxnHeader};
use zinc_protocol::{Acl, ErrorCode};
use zinc_storage::tree::Tree;

/// Counts the bytes each thread frees, so that a test sees what its own drops gave back.
struct CountingFrees;

thread_local! {
    static FREED_BYTES: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingFrees {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = FREED_BYTES.try_with(|freed| freed.set(freed.get() + layout.size()));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingFrees = CountingFrees;

fn freed_bytes() -> usize {
    FREED_BYTES.with(Cell::get)
}

fn apply(tree: &mut Tree, zxid: i64, txn: Txn) {
    let header = TxnHeader {
        client_id: 1,
        cxid: 1,
        zxid,
        time: 1000 + zxid,
        op_type: txn.op().as_i32(),
    };
    assert_eq!(tree.apply(&header, &txn).err, ErrorCode::Ok, "zxid {zxid}");
}

fn create(path: &str, data: &[u8]) -> Txn {
    Txn::Create(CreateTxn {
        path: path.into(),
        data: Some(Bytes::copy_from_slice(data)),
        acl: Acl::open_unsafe(),
        ephemeral: false,
        parent_cversion: -1,
    })
}

const CHILDREN: usize = 3000;
const REPLACED: usize = 1000;
const DATA_BYTES: usize = 200;

#[test]
fn a_copy_released_in_steps_frees_what_only_it_held() {
    let mut tree = Tree::new();
    let mut zxid = 1;
    apply(&mut tree, zxid, create("/p", b""));
    for child in 0..CHILDREN {
        zxid += 1;
        apply(
            &mut tree,
            zxid,
            create(&format!("/p/c{child}"), &[0; DATA_BYTES]),
        );
    }
    let copy = tree.clone();
    for child in 0..REPLACED {
        zxid += 1;
        let txn = Txn::SetData(SetDataTxn {
            path: format!("/p/c{child}"),
            data: Some(Bytes::from(vec![1; DATA_BYTES])),
            // A txn carries the version it sets.
            version: 1,
        });
        apply(&mut tree, zxid, txn);
    }

    let step = 16;
    let mut between = 0;
    let before = freed_bytes();
    copy.release_in_steps(step, || between += 1);
    let freed = freed_bytes() - before;

    // Each replaced node, with its data inline, is freed by the copy, which held it last.
    assert!(
        freed >= REPLACED * DATA_BYTES,
        "freed {freed} bytes, expected the {REPLACED} replaced nodes' at least"
    );
    assert!(
        between >= REPLACED / step,
        "{between} pauses for at least {REPLACED} nodes freed {step} at a time"
    );
    for child in 0..CHILDREN {
        let (data, stat) = tree.get_data(&format!("/p/c{child}")).expect("child");
        let expected = if child < REPLACED { 1 } else { 0 };
        assert_eq!(
            data.as_deref(),
            Some(&[expected; DATA_BYTES][..]),
            "/p/c{child}"
        );
        assert_eq!(stat.version, expected as i32);
    }
}
