//! Unit tests of the tree: exact Stats and results for each op, triggers, multi, sessions.

use bytes::Bytes;
use zinc_protocol::txn::{
    CheckVersionTxn, CloseSessionTxn, CreateContainerTxn, CreateSessionTxn, CreateTtlTxn,
    CreateTxn, DeleteTxn, ErrorTxn, SetAclTxn, SetDataTxn, Txn, TxnHeader,
};
use zinc_protocol::{Acl, ErrorCode, Stat};

use super::*;

const SESSION: i64 = 0x0100_0000_0000_0001;

fn header(zxid: i64, txn: &Txn) -> TxnHeader {
    TxnHeader {
        client_id: SESSION,
        cxid: 1,
        zxid,
        time: 1000 + zxid,
        op_type: txn.op().as_i32(),
    }
}

fn apply(tree: &mut Tree, zxid: i64, txn: Txn) -> ApplyOutcome<'static> {
    tree.apply(&header(zxid, &txn), &txn).into_owned()
}

fn create(path: &str, data: &[u8], parent_cversion: i32) -> Txn {
    Txn::Create(CreateTxn {
        path: path.into(),
        data: Some(Bytes::copy_from_slice(data)),
        acl: Acl::open_unsafe(),
        ephemeral: false,
        parent_cversion,
    })
}

fn ephemeral(path: &str, parent_cversion: i32) -> Txn {
    Txn::Create2(CreateTxn {
        path: path.into(),
        data: None,
        acl: Acl::open_unsafe(),
        ephemeral: true,
        parent_cversion,
    })
}

fn delete(path: &str) -> Txn {
    Txn::Delete(DeleteTxn { path: path.into() })
}

fn set_data(path: &str, data: &[u8], version: i32) -> Txn {
    Txn::SetData(SetDataTxn {
        path: path.into(),
        data: Some(Bytes::copy_from_slice(data)),
        version,
    })
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

#[test]
fn initial_tree_matches_zookeeper() {
    let tree = Tree::new();
    assert_eq!(tree.node_count(), 4);
    assert_eq!(sorted(tree.children("/").expect("root")), ["zookeeper"]);
    assert_eq!(
        sorted(tree.children("/zookeeper").expect("/zookeeper")),
        ["config", "quota"]
    );
    let root = tree.stat("/").expect("root");
    // Observed on Apache ZooKeeper 3.8: cversion shows creates + deletes = 2 * 0 - children.
    assert_eq!(
        root,
        Stat {
            num_children: 1,
            cversion: -1,
            ..Stat::default()
        }
    );
    assert_eq!(tree.stat("/zookeeper").expect("/zookeeper").cversion, -2);
    let (acl, config) = tree.acl("/zookeeper/config").expect("config");
    assert_eq!(acl, Acl::read_unsafe());
    assert_eq!(config.aversion, -1);
    let (data, _) = tree.get_data("/").expect("root");
    assert_eq!(data, Some(Bytes::new()));
    assert_eq!(tree.all_children_number("/"), Some(3));
    assert_eq!(tree.all_children_number("/zookeeper"), Some(2));
    assert_eq!(tree.last_zxid(), Zxid(0));
}

#[test]
fn create_sets_stats_and_parent_cversion() {
    let mut tree = Tree::new();
    let outcome = apply(&mut tree, 5, create("/a", b"hello", 1));
    assert_eq!(outcome.err, ErrorCode::Ok);
    let stat = Stat {
        czxid: 5,
        mzxid: 5,
        ctime: 1005,
        mtime: 1005,
        version: 0,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: 5,
        num_children: 0,
        pzxid: 5,
    };
    assert_eq!(
        outcome.result,
        OpResult::Created {
            path: "/a".into(),
            stat
        }
    );
    assert_eq!(
        outcome.triggers.to_vec(),
        vec![
            WatchTrigger {
                path: "/a".into(),
                event: WatchEvent::NodeCreated
            },
            WatchTrigger {
                path: "/".into(),
                event: WatchEvent::NodeChildrenChanged
            },
        ]
    );
    let root = tree.stat("/").expect("root");
    assert_eq!((root.cversion, root.pzxid, root.num_children), (0, 5, 2));
    assert_eq!(tree.persisted_stat("/").expect("root").cversion, 1);
    assert_eq!(root.mzxid, 0);
    let (data, got) = tree.get_data("/a").expect("/a");
    assert_eq!(data.as_deref(), Some(&b"hello"[..]));
    assert_eq!(got, stat);
    assert_eq!(tree.last_zxid(), Zxid(5));
}

#[test]
fn delete_moves_pzxid_not_cversion() {
    let mut tree = Tree::new();
    apply(&mut tree, 1, create("/a", b"", 1));
    apply(&mut tree, 2, create("/a/b", b"", 1));
    let outcome = apply(&mut tree, 3, delete("/a/b"));
    assert_eq!(outcome.result, OpResult::Deleted);
    assert_eq!(
        outcome.triggers.to_vec(),
        vec![
            WatchTrigger {
                path: "/a/b".into(),
                event: WatchEvent::NodeDeleted
            },
            WatchTrigger {
                path: "/a".into(),
                event: WatchEvent::NodeChildrenChanged
            },
        ]
    );
    // As observed on Apache ZooKeeper 3.8: create then delete a child shows cversion 2.
    let a = tree.stat("/a").expect("/a");
    assert_eq!((a.cversion, a.pzxid, a.num_children), (2, 3, 0));
    let stored = tree.persisted_stat("/a").expect("/a").cversion;
    assert_eq!(sequential_path("/a/s-", stored), "/a/s-0000000001");
    assert_eq!(apply(&mut tree, 4, delete("/a/b")).err, ErrorCode::NoNode);
    assert_eq!(tree.stat("/a").expect("/a").pzxid, 4);
    assert_eq!(apply(&mut tree, 5, delete("/x/y")).err, ErrorCode::NoNode);
}

#[test]
fn set_data_and_acl_are_absolute() {
    let mut tree = Tree::new();
    apply(&mut tree, 1, create("/a", b"x", 1));
    let outcome = apply(&mut tree, 2, set_data("/a", b"yz", 7));
    let OpResult::DataSet { stat } = outcome.result else {
        panic!("expected DataSet, got {:?}", outcome.result);
    };
    assert_eq!(
        (stat.version, stat.mzxid, stat.mtime, stat.czxid),
        (7, 2, 1002, 1)
    );
    assert_eq!(stat.data_length, 2);
    assert_eq!(
        outcome.triggers.to_vec(),
        vec![WatchTrigger {
            path: "/a".into(),
            event: WatchEvent::NodeDataChanged
        }]
    );
    let acl = vec![Acl {
        perms: zinc_protocol::perms::READ,
        id: zinc_protocol::Id::new("digest", "u:p"),
    }];
    let txn = Txn::SetAcl(SetAclTxn {
        path: "/a".into(),
        acl: acl.clone(),
        version: 3,
    });
    let outcome = apply(&mut tree, 3, txn);
    assert!(outcome.triggers.is_empty());
    let (got, stat) = tree.acl("/a").expect("/a");
    assert_eq!(got, acl);
    assert_eq!((stat.aversion, stat.mzxid), (3, 2));
    assert_eq!(
        apply(&mut tree, 4, set_data("/nope", b"", 1)).err,
        ErrorCode::NoNode
    );
}

#[test]
fn null_data_differs_from_empty() {
    let mut tree = Tree::new();
    apply(&mut tree, 1, ephemeral("/e", 1));
    let (data, stat) = tree.get_data("/e").expect("/e");
    assert_eq!(data, None);
    assert_eq!(stat.data_length, 0);
    assert_eq!(stat.ephemeral_owner, SESSION);
}

#[test]
fn replayed_create_changes_nothing() {
    let mut tree = Tree::new();
    apply(&mut tree, 1, create("/a", b"x", 1));
    apply(&mut tree, 2, set_data("/a", b"y", 1));
    let digest = tree.digest();
    let outcome = apply(&mut tree, 1, create("/a", b"x", 1));
    assert_eq!(outcome.err, ErrorCode::NodeExists);
    assert!(outcome.triggers.is_empty());
    assert_eq!(tree.digest(), digest);
    assert_eq!(tree.last_zxid(), Zxid(2));
}

#[test]
fn ephemerals_are_indexed_and_closed_with_the_session() {
    let mut tree = Tree::new();
    let open = Txn::CreateSession(CreateSessionTxn { time_out: 30_000 });
    assert_eq!(apply(&mut tree, 1, open).result, OpResult::SessionCreated);
    assert_eq!(tree.session_timeout_ms(SESSION), Some(30_000));
    apply(&mut tree, 2, create("/app", b"", 1));
    apply(&mut tree, 3, ephemeral("/app/e1", 1));
    apply(&mut tree, 4, ephemeral("/app/e2", 2));
    apply(&mut tree, 5, ephemeral("/e3", 2));
    assert_eq!(
        sorted(tree.ephemerals(SESSION, "/")),
        ["/app/e1", "/app/e2", "/e3"]
    );
    assert_eq!(
        sorted(tree.ephemerals(SESSION, "/app")),
        ["/app/e1", "/app/e2"]
    );
    let close = Txn::CloseSession(CloseSessionTxn {
        paths_to_delete: vec!["/app/e1".into(), "/e3".into()],
    });
    let outcome = apply(&mut tree, 6, close);
    assert_eq!(outcome.result, OpResult::SessionClosed);
    // The listed paths go first, then whatever else the session still owned.
    let deleted: Vec<_> = outcome
        .triggers
        .iter()
        .filter(|t| t.event == WatchEvent::NodeDeleted)
        .map(|t| t.path.as_ref())
        .collect();
    assert_eq!(deleted, ["/app/e1", "/e3", "/app/e2"]);
    assert!(tree.ephemerals(SESSION, "/").is_empty());
    assert_eq!(tree.session_timeout_ms(SESSION), None);
    assert_eq!(tree.children("/app"), Some(vec![]));
}

#[test]
fn multi_failed_in_prep_changes_nothing() {
    let mut tree = Tree::new();
    apply(&mut tree, 1, create("/a", b"", 1));
    let digest = tree.digest();
    let prep_failed = Txn::Multi(vec![
        create("/b", b"", 2),
        Txn::Error(ErrorTxn { err: -110 }),
        Txn::Error(ErrorTxn { err: -2 }),
    ]);
    let outcome = apply(&mut tree, 2, prep_failed);
    assert_eq!(outcome.err, ErrorCode::NodeExists);
    assert_eq!(
        outcome.result,
        OpResult::Multi(vec![
            OpResult::Error(ErrorCode::Ok),
            OpResult::Error(ErrorCode::NodeExists),
            OpResult::Error(ErrorCode::RuntimeInconsistency),
        ])
    );
    assert!(outcome.triggers.is_empty());
    assert_eq!(tree.stat("/b"), None);
    assert_eq!(tree.digest(), digest);
}

#[test]
fn multi_applies_every_op() {
    let mut tree = Tree::new();
    apply(&mut tree, 1, create("/a", b"", 1));
    let good = Txn::Multi(vec![
        create("/b", b"", 2),
        Txn::Check(CheckVersionTxn {
            path: "/a".into(),
            version: 0,
        }),
        set_data("/a", b"z", 1),
    ]);
    let outcome = apply(&mut tree, 2, good);
    assert_eq!(outcome.err, ErrorCode::Ok);
    assert!(matches!(&outcome.result, OpResult::Multi(r) if r.len() == 3));
    assert_eq!(outcome.triggers.len(), 3);
    assert_eq!(tree.stat("/a").expect("/a").version, 1);
    assert_eq!(tree.stat("/b").expect("/b").czxid, 2);
}

#[test]
fn replayed_multi_skips_only_the_ops_that_cannot_apply() {
    // Applied once: /x and /y created by one multi, then /y deleted and /a deleted.
    let mut tree = Tree::new();
    let multi = Txn::Multi(vec![create("/x", b"", 1), create("/y", b"", 2)]);
    apply(&mut tree, 1, multi.clone());
    apply(&mut tree, 2, delete("/y"));
    let state = tree.digest();
    // Replaying from the multi: /x exists, /y is created again and deleted again.
    let outcome = apply(&mut tree, 1, multi);
    assert_eq!(outcome.err, ErrorCode::NodeExists);
    assert!(tree.stat("/y").is_some());
    apply(&mut tree, 2, delete("/y"));
    assert_eq!(tree.digest(), state);
}

#[test]
fn containers_and_ttls_are_reported_for_deletion() {
    let mut tree = Tree::new();
    let container = Txn::CreateContainer(CreateContainerTxn {
        path: "/c".into(),
        data: None,
        acl: Acl::open_unsafe(),
        parent_cversion: 1,
    });
    let outcome = apply(&mut tree, 1, container);
    let OpResult::Created { stat, .. } = outcome.result else {
        panic!("container create failed");
    };
    assert_eq!(stat.ephemeral_owner, CONTAINER_EPHEMERAL_OWNER);
    let ttl = Txn::CreateTtl(CreateTtlTxn {
        path: "/t".into(),
        data: None,
        acl: Acl::open_unsafe(),
        parent_cversion: 2,
        ttl: 100,
    });
    apply(&mut tree, 2, ttl);
    // A never-used container stays; the TTL node expires 100 ms after its mtime (1002).
    assert!(tree.deletion_candidates(1102).is_empty());
    assert_eq!(tree.deletion_candidates(1103), ["/t"]);
    apply(&mut tree, 3, create("/c/x", b"", 1));
    assert_eq!(tree.deletion_candidates(0), Vec::<String>::new());
    apply(&mut tree, 4, delete("/c/x"));
    assert_eq!(tree.deletion_candidates(0), ["/c"]);
    let outcome = apply(
        &mut tree,
        5,
        Txn::DeleteContainer(DeleteTxn { path: "/c".into() }),
    );
    assert_eq!(outcome.err, ErrorCode::Ok);
    assert!(tree.deletion_candidates(0).is_empty());
    let bad_ttl = Txn::CreateTtl(CreateTtlTxn {
        path: "/t2".into(),
        data: None,
        acl: Acl::open_unsafe(),
        parent_cversion: 4,
        ttl: 0,
    });
    assert_eq!(apply(&mut tree, 6, bad_ttl).err, ErrorCode::BadArguments);
}

#[test]
fn clones_keep_their_state() {
    let mut tree = Tree::new();
    apply(&mut tree, 1, create("/a", b"1", 1));
    let published = tree.clone();
    let digest = published.digest();
    apply(&mut tree, 2, set_data("/a", b"2", 1));
    apply(&mut tree, 3, create("/a/b", b"", 1));
    apply(&mut tree, 4, create("/c", b"", 2));
    let (data, stat) = published.get_data("/a").expect("/a");
    assert_eq!(data.as_deref(), Some(&b"1"[..]));
    assert_eq!((stat.version, stat.num_children), (0, 0));
    assert_eq!(published.stat("/c"), None);
    assert_eq!(published.digest(), digest);
    assert_ne!(tree.digest(), digest);
    assert_eq!(tree.all_children_number("/a"), Some(1));
}

#[test]
fn digest_matches_a_fresh_recount() {
    let mut tree = Tree::new();
    apply(&mut tree, 1, create("/a", b"1", 1));
    apply(&mut tree, 2, create("/a/b", b"22", 1));
    apply(&mut tree, 3, set_data("/a", b"333", 1));
    apply(&mut tree, 4, delete("/a/b"));
    // Build the same state along another path: the digest depends on contents only.
    let mut other = Tree::new();
    apply(&mut other, 1, create("/a", b"1", 1));
    apply(&mut other, 3, set_data("/a", b"333", 1));
    let mut changed = other.clone();
    apply(&mut changed, 2, create("/a/b", b"22", 1));
    apply(&mut changed, 4, delete("/a/b"));
    assert_eq!(changed.digest(), tree.digest());
    assert_ne!(other.digest(), tree.digest());
}

#[test]
fn bad_paths_fail_cleanly() {
    let mut tree = Tree::new();
    apply(&mut tree, 1, create("/a", b"", 1));
    for path in ["", "a", "/a/", "//", "/a//b", "//a", "/a/b/", "a/b"] {
        let outcome = apply(&mut tree, 1, create(path, b"", 1));
        assert_ne!(outcome.err, ErrorCode::Ok, "{path:?}");
        assert_eq!(tree.stat(path), None, "{path:?}");
    }
    assert_eq!(
        apply(&mut tree, 2, create("/", b"", 1)).err,
        ErrorCode::NodeExists
    );
    assert_eq!(
        apply(&mut tree, 3, delete("/")).err,
        ErrorCode::BadArguments
    );
    assert_eq!(tree.node_count(), 5);
}

#[test]
fn snapshot_walk_restores_an_equal_tree() {
    let mut tree = Tree::new();
    apply(&mut tree, 1, create("/a", b"1", 1));
    apply(&mut tree, 2, create("/a/b", b"22", 1));
    apply(&mut tree, 3, ephemeral("/a/e", 2));
    apply(
        &mut tree,
        4,
        Txn::CreateSession(CreateSessionTxn { time_out: 5000 }),
    );
    let mut restored = Tree::new();
    let mut visited = Vec::new();
    tree.for_each_node(|path, node| {
        visited.push(path.to_owned());
        let stat = node.persisted_stat();
        let result = restored.restore_node(path, &stat, node.data(), node.acl());
        assert_eq!(result, Ok(()), "{path}");
    });
    for (session, timeout_ms) in tree.sessions() {
        restored.restore_session(session, timeout_ms);
    }
    restored.restore_last_zxid(tree.last_zxid());
    assert_eq!(visited.len() as u64, tree.node_count());
    assert_eq!(restored.node_count(), tree.node_count());
    assert_eq!(restored.digest(), tree.digest());
    for path in &visited {
        assert_eq!(restored.get_data(path), tree.get_data(path), "{path}");
        assert_eq!(restored.acl(path), tree.acl(path), "{path}");
    }
    assert_eq!(restored.ephemerals(SESSION, "/"), ["/a/e"]);
    assert_eq!(restored.session_timeout_ms(SESSION), Some(5000));
    assert_eq!(restored.last_zxid(), Zxid(4));
}

#[test]
fn tree_is_send_and_sync() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Tree>();
}

#[test]
fn deep_paths_drop_without_recursion() {
    // Deep enough that a recursive drop would overflow the 256 KiB stack it runs on.
    let depth = 4_000;
    let run = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            // A chain `depth` deep that only the returned copy still holds.
            let chain_held_by_a_copy = || {
                let mut tree = Tree::new();
                let mut path = String::new();
                for zxid in 1..=depth {
                    path.push_str("/d");
                    let outcome = apply(&mut tree, zxid, create(&path, b"", -1));
                    assert_eq!(outcome.err, ErrorCode::Ok);
                }
                assert_eq!(tree.all_children_number("/d"), Some(depth as u64 - 1));
                let published = tree.clone();
                // Deleting the top removes the whole chain (replay semantics).
                assert_eq!(apply(&mut tree, depth + 1, delete("/d")).err, ErrorCode::Ok);
                assert_eq!(tree.node_count(), 4);
                assert_eq!(published.node_count(), 4 + depth as u64);
                published
            };
            drop(chain_held_by_a_copy());
            let mut pauses = 0;
            chain_held_by_a_copy().release_in_steps(1, || pauses += 1);
            assert!(
                pauses >= depth,
                "{pauses} pauses for {depth} nodes freed one at a time"
            );
        })
        .expect("spawn");
    run.join().expect("deep tree dropped");
}
