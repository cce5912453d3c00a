//! Model-based property tests of `storage::tree`: random txn sequences (every kind, multis,
//! sessions opening and closing, both prep-valid and arbitrary txns) applied to the tree and to
//! a simple reference model agree on every result, trigger, read and Stat; and replaying any
//! suffix of applied txns leaves the tree exactly as it was.

mod tree_common;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use zinc_protocol::txn::{Txn, TxnHeader};
use zinc_storage::snapshot;
use zinc_storage::tree::Tree;

use tree_common::{
    assert_same_reads, dump, header_for, prep, universe, Model, Step, SESSIONS, STEP_KINDS,
    SUB_KINDS,
};

fn step() -> impl Strategy<Value = Step> {
    let subs = vec((0..SUB_KINDS, any::<u32>(), any::<u32>()), 1..4);
    (0..STEP_KINDS, any::<u32>(), any::<u32>(), 0u8..3, subs).prop_map(
        |(kind, target, value, session, subs)| Step {
            kind,
            target,
            value,
            session,
            subs,
        },
    )
}

/// Applies `steps` (prep-valid, or arbitrary where `raw` says so) to a tree and a model,
/// checking they agree after each; returns the tree and the applied txns.
fn run(
    steps: &[Step],
    raw: impl Fn(usize) -> bool,
    check_reads: bool,
) -> (Tree, Vec<(TxnHeader, Txn)>) {
    let mut tree = Tree::new();
    let mut model = Model::new();
    let universe = universe();
    let mut applied = Vec::new();
    for (at, step) in steps.iter().enumerate() {
        let (session, txn) = prep(&model, step, raw(at));
        let mut header = header_for(session, at as i64 + 1);
        header.op_type = txn.op().as_i32();
        let got = tree.apply(&header, &txn).into_owned();
        let want = model.apply(&header, &txn);
        assert_eq!(got, want, "step {at}: {txn:?}");
        if check_reads {
            assert_same_reads(&tree, &model, &universe);
        }
        applied.push((header, txn));
    }
    assert_same_reads(&tree, &model, &universe);
    (tree, applied)
}

/// Cases per property: `PROPTEST_CASES` when set (for long runs), else a quick default.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn tree_agrees_with_model(steps in vec(step(), 1..150), raw_bits in any::<u64>()) {
        run(&steps, |at| at.is_multiple_of(3) && (raw_bits >> (at % 64)) & 1 == 1, true);
    }

    #[test]
    fn replaying_a_suffix_changes_nothing(steps in vec(step(), 1..150), start in any::<Index>()) {
        let (mut tree, applied) = run(&steps, |_| false, false);
        let before = dump(&tree);
        let digest = tree.digest();
        let count = tree.node_count();
        let ephemerals: Vec<_> = SESSIONS.iter().map(|s| {
            let mut paths = tree.ephemerals(*s, "/");
            paths.sort();
            paths
        }).collect();
        let last = tree.last_zxid();
        for (header, txn) in &applied[start.index(applied.len())..] {
            tree.apply(header, txn);
        }
        prop_assert_eq!(dump(&tree), before);
        prop_assert_eq!(tree.digest(), digest);
        prop_assert_eq!(tree.node_count(), count);
        prop_assert_eq!(tree.last_zxid(), last);
        for (at, session) in SESSIONS.iter().enumerate() {
            let mut paths = tree.ephemerals(*session, "/");
            paths.sort();
            prop_assert_eq!(&paths, &ephemerals[at]);
        }
    }

    /// A snapshot (bulk restore) gives back the same tree: nodes, stats, data, ACLs, sessions,
    /// digest, the ephemeral index and the container/TTL candidates.
    #[test]
    fn a_snapshot_restores_the_same_tree(steps in vec(step(), 1..150), now in any::<u32>()) {
        let (tree, _) = run(&steps, |_| false, false);
        let bytes = snapshot::encode(&tree).expect("encode");
        let restored = snapshot::decode(&bytes).expect("decode");
        prop_assert_eq!(dump(&restored), dump(&tree));
        prop_assert_eq!(restored.digest(), tree.digest());
        prop_assert_eq!(restored.node_count(), tree.node_count());
        prop_assert_eq!(restored.last_zxid(), tree.last_zxid());
        for session in SESSIONS {
            let mut want = tree.ephemerals(session, "/");
            let mut got = restored.ephemerals(session, "/");
            want.sort();
            got.sort();
            prop_assert_eq!(got, want);
        }
        let now = i64::from(now);
        let mut want = tree.deletion_candidates(now);
        let mut got = restored.deletion_candidates(now);
        want.sort();
        got.sort();
        prop_assert_eq!(got, want);
    }
}
