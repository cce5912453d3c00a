//! Crash test: a client writes with many requests in flight and records every acknowledged
//! create with its zxid; the server is killed with SIGKILL after a random number of
//! acknowledgements, restarted on the same data directory, and every acknowledged write must be
//! there with the zxid it was acknowledged with. Snapshots are taken every 100-200 txns with
//! small log segments, so kills also land while snapshots are written and the log is purged.
//! Rounds: 5, or `ZINC_CRASH_ROUNDS`.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, Zinc};
use zookeeper_client as zk;

/// Requests in flight at once.
const IN_FLIGHT: usize = 64;

/// A small deterministic generator, so a failing round can be replayed from its seed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Writes until killed; returns what was acknowledged (path -> czxid).
async fn write_until_killed(hosts: String, round: usize, acked: Arc<Mutex<BTreeMap<String, i64>>>) {
    let Ok(client) = zk::Client::connect(&hosts).await else {
        return;
    };
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let _ = client
        .create(&format!("/round-{round}"), b"", &options)
        .await;
    let mut tasks = Vec::new();
    for lane in 0..IN_FLIGHT {
        let client = client.clone();
        let acked = acked.clone();
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let path = format!("/round-{round}/w-{lane}-{n}");
                match client.create(&path, &[7u8; 100], &options).await {
                    Ok((stat, _)) => {
                        acked.lock().expect("lock").insert(path, stat.czxid);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn verify(hosts: &str, acked: &BTreeMap<String, i64>) -> i64 {
    let client = zk::Client::connect(hosts)
        .await
        .expect("connect after restart");
    let mut last = 0;
    for (path, czxid) in acked {
        let stat = client
            .check_stat(path)
            .await
            .expect("stat")
            .unwrap_or_else(|| panic!("acknowledged {path} (zxid {czxid:#x}) lost in the crash"));
        assert_eq!(
            stat.czxid, *czxid,
            "{path} has another zxid after the restart"
        );
        last = last.max(stat.czxid);
    }
    // New writes continue after every recovered zxid.
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let (stat, _) = client
        .create("/after-restart-probe", b"", &options)
        .await
        .expect("write after restart");
    assert!(stat.czxid > last, "zxids went back after recovery");
    client
        .delete("/after-restart-probe", None)
        .await
        .expect("delete probe");
    last
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let rounds: usize = std::env::var("ZINC_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("ZINC_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_2026);
    let mut random = seed | 1;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config_dir = tempfile::tempdir().expect("temp dir");
    let config = config_dir.path().join("zoo.cfg");
    std::fs::write(&config, "snapCount=200\npreAllocSize=4096\n").expect("write zoo.cfg");
    let args = ["--config", config.to_str().expect("utf-8 path")];
    let mut zinc = Zinc::start_with(&args);
    let mut all_acked = BTreeMap::new();
    for round in 0..rounds {
        let kill_after = 50 + (next_random(&mut random) % 2000) as usize;
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let writer = runtime.spawn(write_until_killed(zinc.hosts(), round, acked.clone()));
        runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while acked.lock().expect("lock").len() < kill_after {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "round {round} (seed {seed}): writes stalled"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let dir = zinc.kill();
        writer.abort();
        let acked = acked.lock().expect("lock").clone();
        all_acked.extend(acked);
        zinc = Zinc::start_in(dir, &args);
        runtime.block_on(verify(&zinc.hosts(), &all_acked));
    }
    assert!(
        all_acked.len() >= rounds * 50,
        "too few writes acknowledged"
    );
}
