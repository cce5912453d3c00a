//! Snapshots on disk: round trip of a tree with data, ACLs, ephemerals and sessions; damaged
//! or truncated files fall back to an older snapshot; a crash mid-write leaves the previous one
//! usable; retention.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::PathBuf;

use bytes::Bytes;
use zinc_protocol::txn::{CreateSessionTxn, CreateTxn, SetAclTxn, Txn, TxnHeader};
use zinc_protocol::{perms, Acl, ErrorCode, Id, Zxid};
use zinc_storage::snapshot::{self, snapshot_name, SnapshotError, TRAILER_BYTES};
use zinc_storage::tree::Tree;

const SESSION: i64 = 0x0100_0000_0000_0001;

fn apply(tree: &mut Tree, zxid: i64, client: i64, txn: Txn) {
    let header = TxnHeader {
        client_id: client,
        cxid: 1,
        zxid,
        time: 1000 + zxid,
        op_type: txn.op().as_i32(),
    };
    let outcome = tree.apply(&header, &txn);
    assert_eq!(outcome.err, ErrorCode::Ok, "txn {zxid}");
}

fn create(path: &str, data: Option<&[u8]>, acl: Vec<Acl>, ephemeral: bool) -> Txn {
    Txn::Create(CreateTxn {
        path: path.into(),
        data: data.map(Bytes::copy_from_slice),
        acl,
        ephemeral,
        parent_cversion: 0,
    })
}

/// A tree with nested nodes, null and binary data, two ACL lists, a session and an ephemeral.
fn sample_tree(extra: i64) -> Tree {
    let mut tree = Tree::new();
    let mut z = 0;
    let mut next = || {
        z += 1;
        z
    };
    apply(
        &mut tree,
        next(),
        SESSION,
        Txn::CreateSession(CreateSessionTxn { time_out: 30_000 }),
    );
    let digest_acl = vec![Acl {
        perms: perms::READ | perms::WRITE,
        id: Id {
            scheme: "digest".into(),
            id: "alice:hash".into(),
        },
    }];
    apply(
        &mut tree,
        next(),
        SESSION,
        create("/app", Some(b"config"), Acl::open_unsafe(), false),
    );
    apply(
        &mut tree,
        next(),
        SESSION,
        create("/app/null", None, digest_acl.clone(), false),
    );
    apply(
        &mut tree,
        next(),
        SESSION,
        create("/app/eph", Some(&[0, 255, 7]), Acl::open_unsafe(), true),
    );
    for i in 0..(50 + extra) {
        let path = format!("/app/n{i:04}");
        apply(
            &mut tree,
            next(),
            SESSION,
            create(&path, Some(path.as_bytes()), Acl::open_unsafe(), false),
        );
    }
    let set_acl = Txn::SetAcl(SetAclTxn {
        path: "/app/n0001".into(),
        acl: digest_acl,
        version: 1,
    });
    apply(&mut tree, next(), SESSION, set_acl);
    tree
}

fn assert_same(a: &Tree, b: &Tree) {
    assert_eq!(a.last_zxid(), b.last_zxid());
    assert_eq!(a.node_count(), b.node_count());
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.sessions(), b.sessions());
    let mut nodes_a = Vec::new();
    a.for_each_node(|p, n| {
        nodes_a.push((
            p.to_string(),
            n.persisted_stat(),
            n.data().map(<[u8]>::to_vec),
            n.acl().to_vec(),
        ))
    });
    let mut nodes_b = Vec::new();
    b.for_each_node(|p, n| {
        nodes_b.push((
            p.to_string(),
            n.persisted_stat(),
            n.data().map(<[u8]>::to_vec),
            n.acl().to_vec(),
        ))
    });
    nodes_a.sort_by(|x, y| x.0.cmp(&y.0));
    nodes_b.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(nodes_a, nodes_b);
    assert_eq!(a.ephemerals(SESSION, "/"), b.ephemerals(SESSION, "/"));
}

#[test]
fn round_trip_keeps_every_node_acl_and_session() {
    let tree = sample_tree(0);
    let restored = snapshot::decode(&snapshot::encode(&tree).unwrap()).unwrap();
    assert_same(&tree, &restored);
    assert_eq!(
        restored.ephemerals(SESSION, "/"),
        vec!["/app/eph".to_string()]
    );
    assert_eq!(restored.session_timeout_ms(SESSION), Some(30_000));
    assert_eq!(restored.acl_list_count(), tree.acl_list_count());
}

#[test]
fn a_tree_large_enough_to_restore_on_several_threads_round_trips() {
    // 80,000 extra nodes: above the size from which a restore builds nodes on several threads
    // (on a machine with more than one CPU), with the sample's ACLs, null data and ephemeral.
    let tree = sample_tree(80_000);
    let encoded = snapshot::encode(&tree).unwrap();
    let restored = snapshot::decode(&encoded).unwrap();
    assert_same(&tree, &restored);
    assert_eq!(restored.children("/app").unwrap().len(), 80_052);
    // Written to disk and loaded back, byte for byte.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = snapshot::write(dir.path(), &tree).unwrap();
    assert!(std::fs::read(&path).unwrap() == encoded[..]);
    let (loaded, _, _) = snapshot::load_newest(dir.path()).unwrap().newest.unwrap();
    assert_same(&tree, &loaded);
}

/// tmpfs refuses O_DIRECT: there the file goes through the page cache, with the same bytes.
#[test]
fn a_snapshot_on_tmpfs_is_written_through_the_page_cache() {
    let shm = std::path::Path::new("/dev/shm");
    assert!(shm.is_dir(), "this test needs the tmpfs at /dev/shm");
    let tree = sample_tree(20_000);
    let dir = tempfile::tempdir_in(shm).unwrap();
    let path = snapshot::write(dir.path(), &tree).unwrap();
    assert!(std::fs::read(&path).unwrap() == snapshot::encode(&tree).unwrap()[..]);
}

#[test]
fn bytes_at_any_alignment_decode() {
    // A snapshot received from a leader sits wherever the network buffer put it.
    let tree = sample_tree(0);
    let archive = snapshot::encode(&tree).unwrap();
    let mut shifted = vec![0u8; archive.len() + 1];
    shifted[1..].copy_from_slice(&archive);
    let restored = snapshot::decode(&shifted[1..]).unwrap();
    assert_same(&tree, &restored);
}

#[test]
fn write_then_load_newest_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let old = sample_tree(0);
    let new = sample_tree(10);
    let old_path = snapshot::write(dir.path(), &old).unwrap();
    let new_path = snapshot::write(dir.path(), &new).unwrap();
    assert_eq!(
        new_path.file_name().unwrap().to_str().unwrap(),
        snapshot_name(new.last_zxid())
    );
    assert!(old_path != new_path);
    let loaded = snapshot::load_newest(dir.path()).unwrap();
    let (tree, zxid, path) = loaded.newest.unwrap();
    assert_eq!((zxid, path), (new.last_zxid(), new_path));
    assert!(loaded.skipped.is_empty());
    assert_same(&new, &tree);
}

/// A way to damage a snapshot file's bytes.
type Damage = fn(&mut Vec<u8>);

#[test]
fn damaged_newest_falls_back_to_the_previous_snapshot() {
    let damages: [(&str, Damage); 6] = [
        ("archive damage under a valid checksum", |b| {
            let archive_len = b.len() - TRAILER_BYTES;
            b[archive_len - 40] ^= 0xff;
            let crc = crc32c::crc32c(&b[..archive_len]);
            b[archive_len + 16..archive_len + 20].copy_from_slice(&crc.to_le_bytes());
        }),
        ("data changed under a valid checksum", |b| {
            let archive_len = b.len() - TRAILER_BYTES;
            let at = b.windows(6).position(|w| w == b"config").unwrap();
            b[at] = b'C';
            let crc = crc32c::crc32c(&b[..archive_len]);
            b[archive_len + 16..archive_len + 20].copy_from_slice(&crc.to_le_bytes());
        }),
        ("bit flip in the archive", |b| b[100] ^= 0x10),
        ("truncated", |b| b.truncate(b.len() / 2)),
        ("trailer gone", |b| b.truncate(b.len() - TRAILER_BYTES)),
        ("empty", |b| b.clear()),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let old = sample_tree(0);
        snapshot::write(dir.path(), &old).unwrap();
        let new_path = snapshot::write(dir.path(), &sample_tree(5)).unwrap();
        let mut bytes = std::fs::read(&new_path).unwrap();
        damage(&mut bytes);
        std::fs::write(&new_path, &bytes).unwrap();
        let loaded = snapshot::load_newest(dir.path()).unwrap();
        let (tree, zxid, _) = loaded.newest.unwrap();
        assert_eq!(zxid, old.last_zxid(), "{what}");
        assert_same(&old, &tree);
        assert_eq!(loaded.skipped.len(), 1, "{what}");
        assert!(
            matches!(loaded.skipped[0], SnapshotError::Invalid { .. }),
            "{what}"
        );
    }
}

#[test]
fn a_crash_mid_write_leaves_the_previous_snapshot_usable() {
    let dir = tempfile::tempdir().unwrap();
    let old = sample_tree(0);
    snapshot::write(dir.path(), &old).unwrap();
    // What a crash during `write` leaves: a partial temp file, never a partial `.rkyv`.
    let partial = snapshot::encode(&sample_tree(5)).unwrap();
    std::fs::write(
        dir.path().join("00000000000000aa.rkyv.tmp"),
        &partial[..partial.len() / 3],
    )
    .unwrap();
    let (tree, zxid, _) = snapshot::load_newest(dir.path()).unwrap().newest.unwrap();
    assert_eq!(zxid, old.last_zxid());
    assert_same(&old, &tree);
    snapshot::retain_newest(dir.path(), 1).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "temp file removed"
    );
}

#[test]
fn no_valid_snapshot_is_an_error_and_an_empty_directory_is_not() {
    let dir = tempfile::tempdir().unwrap();
    assert!(snapshot::load_newest(dir.path()).unwrap().newest.is_none());
    assert!(snapshot::load_newest(&dir.path().join("missing"))
        .unwrap()
        .newest
        .is_none());
    let path = snapshot::write(dir.path(), &sample_tree(0)).unwrap();
    std::fs::write(&path, b"not a snapshot").unwrap();
    let err = snapshot::load_newest(dir.path()).err().unwrap();
    assert!(
        matches!(err, SnapshotError::NoValidSnapshot { count: 1, .. }),
        "{err}"
    );
}

#[test]
fn retention_keeps_the_newest_k_and_reports_the_purge_point() {
    let dir = tempfile::tempdir().unwrap();
    let zxids: Vec<Zxid> = (0..5)
        .map(|i| {
            let tree = sample_tree(i * 3);
            snapshot::write(dir.path(), &tree).unwrap();
            tree.last_zxid()
        })
        .collect();
    assert_eq!(
        snapshot::retain_newest(dir.path(), 3).unwrap(),
        Some(zxids[2])
    );
    let left: Vec<Zxid> = snapshot::list(dir.path())
        .unwrap()
        .into_iter()
        .map(|(z, _)| z)
        .collect();
    assert_eq!(left, vec![zxids[4], zxids[3], zxids[2]]);
    assert_eq!(
        snapshot::retain_newest(dir.path(), 10).unwrap(),
        Some(zxids[2])
    );
}

#[test]
fn a_new_snapshot_overwrites_the_file_of_the_one_it_retires() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    // The retired snapshot's file is longer than the snapshot written over it (here: bytes
    // appended to it), so the file must be cut to size.
    let big_path = snapshot::write(dir.path(), &sample_tree(0)).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&big_path)
        .unwrap();
    std::io::Write::write_all(&mut file, &[0x5a; 100_000]).unwrap();
    drop(file);
    let big_inode = std::fs::metadata(&big_path).unwrap().ino();
    let mut paths = vec![big_path];
    for i in 1..3 {
        paths.push(snapshot::write_reusing(dir.path(), &sample_tree(i * 3), 3).unwrap());
    }
    // Three snapshots, none retired yet: the next one retires the oldest (the big one).
    assert_eq!(snapshot::list(dir.path()).unwrap().len(), 3);
    let small = sample_tree(9);
    let path = snapshot::write_reusing(dir.path(), &small, 3).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), big_inode);
    assert!(!paths[0].exists());
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes == snapshot::encode(&small).unwrap()[..]);
    let listed: Vec<PathBuf> = snapshot::list(dir.path())
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(listed, vec![path, paths[2].clone(), paths[1].clone()]);
    assert_same(
        &small,
        &snapshot::load_newest(dir.path()).unwrap().newest.unwrap().0,
    );
    // With fewer than `keep` snapshots nothing is retired: a new file.
    let fresh = tempfile::tempdir().unwrap();
    snapshot::write_reusing(fresh.path(), &sample_tree(1), 3).unwrap();
    assert_eq!(snapshot::list(fresh.path()).unwrap().len(), 1);
}
