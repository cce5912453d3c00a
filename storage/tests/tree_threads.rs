//! Readers holding an old tree see exactly the old state while a writer on another thread
//! keeps applying txns to its own copy.

mod tree_common;

use std::sync::mpsc::sync_channel;
use std::thread;

use bytes::Bytes;
use zinc_protocol::txn::{CreateTxn, DeleteTxn, SetDataTxn, Txn, TxnHeader};
use zinc_protocol::Acl;
use zinc_storage::tree::Tree;

use tree_common::dump;

const BATCHES: usize = 40;
const TXNS_PER_BATCH: usize = 150;

/// The txn number `at` of a deterministic create / setData / delete workload.
fn workload(at: usize) -> Txn {
    let node = at / 3 % 97;
    let path = format!("/d{}/n{node}", node % 7);
    match at % 3 {
        0 if at.is_multiple_of(2) => Txn::Create(CreateTxn {
            path: format!("/d{}", node % 7),
            data: None,
            acl: Acl::open_unsafe(),
            ephemeral: false,
            parent_cversion: -1,
        }),
        0 => Txn::Create(CreateTxn {
            path,
            data: Some(Bytes::from(format!("v{at}"))),
            acl: Acl::open_unsafe(),
            ephemeral: false,
            parent_cversion: -1,
        }),
        1 => Txn::SetData(SetDataTxn {
            path,
            data: Some(Bytes::from(format!("w{at}"))),
            version: at as i32,
        }),
        _ if at.is_multiple_of(5) => Txn::Delete(DeleteTxn { path }),
        _ => Txn::SetData(SetDataTxn {
            path: format!("/d{}", node % 7),
            data: Some(Bytes::from(format!("p{at}"))),
            version: at as i32,
        }),
    }
}

fn apply_batch(tree: &mut Tree, batch: usize) {
    for at in batch * TXNS_PER_BATCH..(batch + 1) * TXNS_PER_BATCH {
        let txn = workload(at);
        let header = TxnHeader {
            client_id: 1,
            cxid: at as i32,
            zxid: at as i64 + 1,
            time: at as i64,
            op_type: txn.op().as_i32(),
        };
        tree.apply(&header, &txn);
    }
}

#[test]
fn old_roots_stay_unchanged_while_writes_continue() {
    let (publish, published) = sync_channel::<Tree>(2);
    let writer = thread::spawn(move || {
        let mut tree = Tree::new();
        for batch in 0..BATCHES {
            apply_batch(&mut tree, batch);
            if publish.send(tree.clone()).is_err() {
                return;
            }
        }
    });
    let mut held = Vec::new();
    for root in published {
        // Read the root while the writer goes on with the next batches.
        let first = dump(&root);
        let digest = root.digest();
        assert_eq!(first.0.len() as u64, root.node_count());
        held.push((root, first, digest));
        for (root, first, digest) in &held {
            assert_eq!(&dump(root), first);
            assert_eq!(root.digest(), *digest);
        }
    }
    writer.join().expect("writer thread");
    assert_eq!(held.len(), BATCHES);
    // Each held root is exactly the state after its batch, rebuilt on one thread.
    let mut replayed = Tree::new();
    for (batch, (root, first, digest)) in held.iter().enumerate() {
        apply_batch(&mut replayed, batch);
        assert_eq!(&dump(&replayed), first, "batch {batch}");
        assert_eq!(replayed.digest(), *digest);
        assert_eq!(root.last_zxid(), replayed.last_zxid());
    }
}
