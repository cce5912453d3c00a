//! Crash test on the real disk: a child process appends to a WAL with many writes in flight and
//! prints each zxid once it is durable; the parent kills it with SIGKILL at varying points,
//! reopens the log, and checks that every zxid the child reported is there, in order, with its
//! payload, and that the log is a gap-free prefix. Several rounds reuse the same directory, so
//! each child also recovers what the previous one left (torn tails, half-made spares).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod wal_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;

use wal_support::{on_glommio, payload};
use zinc_protocol::types::Zxid;
use zinc_storage::wal::{DmaDevice, Wal, WalConfig};

const DIR_ENV: &str = "ZINC_WAL_KILL_DIR";
const PAYLOAD_BYTES: usize = 300;

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: 256 * 1024,
        block_bytes: 4096,
        batch_bytes_max: 64 * 1024,
        batch_records_max: 256,
        record_bytes_max: 4096,
        pending_bytes_max: 1 << 20,
        ..WalConfig::default()
    }
}

/// The child: appends forever from where the log ends, printing `durable Z` lines.
#[test]
#[ignore = "run by wal_kill_survives_sigkill as its child process"]
fn wal_kill_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    on_glommio(async move {
        let dev = DmaDevice::open(&dir).await.unwrap();
        let (wal, rec) = Wal::open(dev, config(), Zxid::ZERO).await.unwrap();
        let wal = Rc::new(wal);
        let next = rec.last_zxid.map_or(1, |z| z.0 + 1);
        println!("start {next}");
        glommio::spawn_local({
            let wal = wal.clone();
            async move { panic!("WAL stopped: {}", wal.run().await) }
        })
        .detach();
        let mut writers = Vec::new();
        for _ in 0..16 {
            let wal = wal.clone();
            writers.push(glommio::spawn_local(async move {
                loop {
                    let z = wal.last_appended().map_or(1, |l| l.0 + 1);
                    wal.append(Zxid(z), &payload(z, PAYLOAD_BYTES)).unwrap();
                    wal.wait_durable(Zxid(z)).await.unwrap();
                    println!("durable {z}");
                }
            }));
        }
        for w in writers {
            w.await;
        }
    });
}

#[test]
fn wal_kill_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut acknowledged = 0i64;
    for round in 0..8u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "wal_kill_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill after a varying number of acknowledged writes (deterministic per round).
        let kill_after = 50 + round * 397 % 1500;
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.recv().expect("child exited before the kill");
            if let Some(z) = line.strip_prefix("durable ") {
                acknowledged = acknowledged.max(z.parse().unwrap());
                seen += 1;
            } else if let Some(start) = line.strip_prefix("start ") {
                assert_eq!(
                    start.parse::<i64>().unwrap(),
                    acknowledged + 1,
                    "round {round}: lost writes"
                );
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        // Lines printed before the kill are acknowledged too.
        for line in lines.try_iter() {
            if let Some(z) = line.strip_prefix("durable ") {
                acknowledged = acknowledged.max(z.parse().unwrap());
            }
        }
        let dir = dir.clone();
        let last = on_glommio(async move {
            let dev = DmaDevice::open(&dir).await.unwrap();
            let (_, rec) = Wal::open(dev, config(), Zxid::ZERO).await.unwrap();
            for (i, r) in rec.records.iter().enumerate() {
                assert_eq!(r.zxid, Zxid(i as i64 + 1), "gap in the log");
                assert!(
                    r.payload == payload(r.zxid.0, PAYLOAD_BYTES),
                    "payload of {}",
                    r.zxid
                );
            }
            rec.last_zxid.map_or(0, |z| z.0)
        });
        assert!(
            last >= acknowledged,
            "round {round}: acknowledged {acknowledged}, log ends at {last}"
        );
        // What was durable but not yet reported counts as acknowledged from here on.
        acknowledged = last;
    }
}
