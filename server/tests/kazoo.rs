//! The kazoo scenarios (tests/clients/kazoo_scenarios.py) against Zinc and against Apache
//! ZooKeeper in the same run: the transcripts must be identical, and must show the behaviour
//! each scenario exists for.

mod common;

use common::{kazoo_transcript, Zinc, ZooKeeper};

fn first_difference(zinc: &[String], zookeeper: &[String]) -> Option<String> {
    let length = zinc.len().max(zookeeper.len());
    (0..length).find_map(|index| {
        let left = zinc.get(index).map_or("<end>", String::as_str);
        let right = zookeeper.get(index).map_or("<end>", String::as_str);
        (left != right).then(|| format!("line {index}:\n  zinc:      {left}\n  zookeeper: {right}"))
    })
}

#[test]
fn kazoo_scenarios_match_zookeeper() {
    compare_with_zookeeper(&Zinc::start());
}

/// Connections spread over three shard cores: watches, expiry and ordering hold across them.
#[test]
fn kazoo_scenarios_match_zookeeper_on_three_shards() {
    compare_with_zookeeper(&Zinc::start_with(&["--shards", "3"]));
}

/// The Zab core on an executor of its own, as on machines with more than 2 CPUs (on smaller
/// ones, the default, it shares the first shard's).
#[test]
fn kazoo_scenarios_match_zookeeper_with_a_dedicated_core() {
    let config_dir = tempfile::tempdir().expect("temp dir");
    let config = config_dir.path().join("zoo.cfg");
    std::fs::write(&config, "zinc.coreWithShard=false\n").expect("write zoo.cfg");
    let config = config.to_str().expect("utf-8 path");
    compare_with_zookeeper(&Zinc::start_with(&["--config", config, "--shards", "2"]));
}

fn compare_with_zookeeper(zinc: &Zinc) {
    let zookeeper = ZooKeeper::start();
    let (zinc_lines, zookeeper_lines) = std::thread::scope(|scope| {
        let zinc_run = scope.spawn(|| kazoo_transcript(zinc, &[]));
        let zookeeper_run = scope.spawn(|| kazoo_transcript(&zookeeper, &[]));
        (
            zinc_run.join().expect("zinc run"),
            zookeeper_run.join().expect("zookeeper run"),
        )
    });
    if let Some(difference) = first_difference(&zinc_lines, &zookeeper_lines) {
        panic!(
            "Zinc and ZooKeeper disagree at {difference}\n\nzinc transcript:\n{}",
            zinc_lines.join("\n")
        );
    }
    // The transcript shows what the scenarios test (so agreeing on nothing cannot pass).
    for expected in [
        "set /crud version=7 -> BadVersionError",
        "create /crud again -> NodeExistsError",
        "delete /crud non-empty -> NotEmptyError",
        "sequential /kinds/seq-0000000000",
        "child of ephemeral -> NoChildrenForEphemeralsError",
        "event CHANGED /w",
        "event CHILD /w",
        "event CREATED /w/later",
        "event DELETED /w/later",
        "other get -> NoAuthError",
        "ephemeral removed after expiry True",
        "== done",
    ] {
        assert!(
            zinc_lines.iter().any(|line| line.starts_with(expected)),
            "transcript lacks {expected:?}:\n{}",
            zinc_lines.join("\n")
        );
    }
}
