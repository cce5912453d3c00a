//! A full disk: Zinc's data directory is on a small loop-mounted ext4 file system that a filler
//! file fills. When the log cannot roll to a new segment, new writes are refused with
//! ThrottledOp (-127) instead of hanging, reads go on, and once space is freed the stuck writes
//! complete and new writes succeed. After SIGKILL and a restart every acknowledged write is
//! there.
//!
//! Needs root and loop devices (as CI has); without them it says so and passes.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::raw::{self, create_body, path_and_flag, RawClient};
use common::{Server, Zinc};

const OP_CREATE: i32 = 1;
const OP_GET_DATA: i32 = 4;
const THROTTLED_OP: i32 = -127;
const VALUE_BYTES: usize = 4_000;
/// Space left free after the filler: less than one 4 MiB segment.
const LEFT_FREE_BYTES: u64 = 2 << 20;
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const DEADLINE: Duration = Duration::from_secs(120);
const PROBE_SESSIONS: usize = 40;
const SESSION_TIMEOUT_MS: i32 = 120_000;

/// The mounted file system; unmounted (lazily) when dropped.
struct SmallDisk {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn create() -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = dir.path().join("fs.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
        let run = |program: &str, args: &[&str]| -> Result<(), String> {
            let output = Command::new(program)
                .args(args)
                .output()
                .map_err(|e| format!("{program}: {e}"))?;
            match output.status.success() {
                true => Ok(()),
                false => Err(format!(
                    "{program}: {}",
                    String::from_utf8_lossy(&output.stderr)
                )),
            }
        };
        let image_str = image.to_str().ok_or("path")?;
        run("truncate", &["-s", "48M", image_str])?;
        run("mkfs.ext4", &["-q", "-F", image_str])?;
        run(
            "mount",
            &["-o", "loop", image_str, mount.to_str().ok_or("path")?],
        )?;
        Ok(SmallDisk { mount, _dir: dir })
    }

    fn available_bytes(&self) -> u64 {
        let output = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.mount)
            .output()
            .expect("df");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .expect("df output")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn fill(disk: &SmallDisk, filler: &Path) {
    let size = disk.available_bytes().saturating_sub(LEFT_FREE_BYTES);
    let status = Command::new("fallocate")
        .args(["-l", &size.to_string()])
        .arg(filler)
        .status()
        .expect("fallocate");
    assert!(status.success(), "fallocate failed");
}

/// Sends a create on `stream` with `xid` and waits up to `PROBE_TIMEOUT` for its answer,
/// skipping notifications and late answers to earlier probes. `None` on timeout.
fn probe(stream: &mut TcpStream, xid: i32, path: &str) -> Option<i32> {
    let mut request = xid.to_be_bytes().to_vec();
    request.extend_from_slice(&OP_CREATE.to_be_bytes());
    request.extend_from_slice(&create_body(path, b"probe", 0));
    stream.write_all(&raw::frame(&request)).expect("send probe");
    let deadline = Instant::now() + PROBE_TIMEOUT;
    while Instant::now() < deadline {
        let Ok(reply) = raw::read_frame(stream) else {
            continue;
        };
        if i32::from_be_bytes(reply[..4].try_into().expect("xid")) == xid {
            return Some(i32::from_be_bytes(reply[12..16].try_into().expect("err")));
        }
    }
    None
}

/// Writes 4 KB nodes until told to stop; a write stuck on the full disk just waits.
fn writer(address: SocketAddr, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) {
    let mut client =
        RawClient::open(address, 0, &[0u8; 16], 0, SESSION_TIMEOUT_MS).expect("writer");
    client
        .stream
        .set_read_timeout(Some(DEADLINE))
        .expect("timeout");
    let value = vec![b'v'; VALUE_BYTES];
    let mut index = 0;
    while !stop.load(Ordering::Acquire) {
        let path = format!("/w{index}");
        let reply = client
            .request(OP_CREATE, &create_body(&path, &value, 0))
            .expect("write answered");
        match reply.err {
            0 => acked.lock().expect("lock").push(path),
            THROTTLED_OP => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("create {path}: error {other}"),
        }
        index += 1;
    }
}

/// Probes until a create gets `wanted` (ThrottledOp or success). A session whose probe got
/// stuck (sent just before the log blocked) is dropped: its later writes would rightly wait
/// behind the stuck one.
fn wait_for_answer(probers: &mut Vec<RawClient>, xid: &mut i32, wanted: i32, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        *xid += 1;
        let mut prober = probers
            .pop()
            .unwrap_or_else(|| panic!("{what}: out of probe sessions"));
        match probe(&mut prober.stream, *xid, &format!("/probe{xid}")) {
            Some(answer) if answer == wanted => {
                probers.push(prober);
                return;
            }
            Some(_) => probers.push(prober),
            None => {}
        }
        assert!(Instant::now() < deadline, "{what}: never answered {wanted}");
    }
}

#[test]
fn a_full_disk_refuses_writes_and_recovers() {
    let disk = match SmallDisk::create() {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("skipped: no loop-mounted file system here ({why})");
            return;
        }
    };
    let data = tempfile::tempdir_in(&disk.mount).expect("data dir");
    let config = disk.mount.join("zoo.cfg");
    std::fs::write(&config, "preAllocSize=4096\nmaxSessionTimeout=120000\n")
        .expect("write zoo.cfg");
    let args = ["--config", config.to_str().expect("utf-8 path")];
    let zinc = Zinc::start_in(data, &args);
    let address = zinc.address();
    // Sessions opened now, while new sessions can still be logged; long timeouts, since they
    // do not ping.
    let mut probers: Vec<RawClient> = (0..PROBE_SESSIONS)
        .map(|_| RawClient::open(address, 0, &[0u8; 16], 0, SESSION_TIMEOUT_MS).expect("prober"))
        .collect();
    let mut reader =
        RawClient::open(address, 0, &[0u8; 16], 0, SESSION_TIMEOUT_MS).expect("reader");
    let filler = disk.mount.join("filler");
    fill(&disk, &filler);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writing = {
        let (stop, acked) = (stop.clone(), acked.clone());
        std::thread::spawn(move || writer(address, stop, acked))
    };
    let mut xid = 1000;
    wait_for_answer(&mut probers, &mut xid, THROTTLED_OP, "disk full");
    // Reads go on while writes are refused.
    let first = acked
        .lock()
        .expect("lock")
        .first()
        .cloned()
        .expect("a write before");
    let reply = reader
        .request(OP_GET_DATA, &path_and_flag(&first, false))
        .expect("getData");
    assert_eq!(reply.err, 0, "read while the disk is full");

    std::fs::remove_file(&filler).expect("free space");
    wait_for_answer(&mut probers, &mut xid, 0, "space freed");
    stop.store(true, Ordering::Release);
    writing.join().expect("writer");

    let acked = acked.lock().expect("lock").clone();
    let zinc = Zinc::start_in(zinc.kill(), &args);
    let mut client = RawClient::connect(zinc.address()).expect("after restart");
    for path in &acked {
        assert_eq!(
            client.exists(path, false).expect("exists"),
            0,
            "{path} lost"
        );
    }
    assert!(acked.len() > 100, "too few writes: {}", acked.len());
}
