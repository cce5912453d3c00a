//! Test harness: start a real `zinc` or Apache ZooKeeper on a free port, wait until it answers
//! `ruok`, and kill it when dropped.

#![allow(dead_code)]

pub mod raw;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start answering.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A port nobody listens on now, below the kernel's ephemeral range, and never handed out
/// before by this process. Tests in one binary start servers concurrently, so a port must not
/// go to two servers before either binds it; and a port in the ephemeral range can be taken
/// by any outgoing connection before the server binds it, even by a readiness probe that
/// connects to itself (a TCP self-connect).
pub fn free_port() -> u16 {
    const PORT_MIN: u16 = 10_000;
    static STATE: std::sync::Mutex<(Vec<u16>, u64)> = std::sync::Mutex::new((Vec::new(), 0));
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768)
        .max(PORT_MIN + 1_000);
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let (handed_out, seed) = &mut *state;
    if *seed == 0 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        *seed = nanos ^ u64::from(std::process::id()) << 32 | 1;
    }
    loop {
        // xorshift64
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let port = PORT_MIN + (*seed % u64::from(ephemeral_low - PORT_MIN)) as u16;
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
}

/// Whether process `pid` holds a listening TCP socket on `port` (any address, IPv4 or IPv6),
/// from /proc: so that readiness is never taken from another server on the same port.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for fields in text
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
        {
            // local_address, rem_address, st (0A = LISTEN), ..., inode (field 9).
            if fields.len() > 9 && fields[1].ends_with(&suffix) && fields[3] == "0A" {
                inodes.push(format!("socket:[{}]", fields[9]));
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
}

/// Sends a four-letter word and returns the whole answer ("" when the server is not up).
pub fn four_letter_word(address: SocketAddr, word: &str) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    if stream.write_all(word.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

fn wait_ready(address: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if listens_on(child.id(), address.port()) && four_letter_word(address, "ruok") == "imok" {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it was ready: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} not ready on {address} in time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Which server a scenario runs against.
pub trait Server {
    fn address(&self) -> SocketAddr;
    fn name(&self) -> &'static str;
    fn hosts(&self) -> String {
        self.address().to_string()
    }
}

pub struct Zinc {
    child: Child,
    address: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Zinc {
    pub fn start() -> Zinc {
        Zinc::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> Zinc {
        let dir = tempfile::tempdir().expect("temp dir");
        Zinc::start_in(dir, extra_args)
    }

    /// Starts on an existing data directory (restart tests).
    pub fn start_in(dir: tempfile::TempDir, extra_args: &[&str]) -> Zinc {
        Zinc::start_at(dir, free_port(), extra_args)
    }

    /// Starts on an existing data directory and a given port (restarts in place).
    pub fn start_at(dir: tempfile::TempDir, port: u16, extra_args: &[&str]) -> Zinc {
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let mut child = Command::new(env!("CARGO_BIN_EXE_zinc"))
            .args(["--port", &port.to_string()])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--tick-time", "500"])
            .args(if extra_args.contains(&"--four-letter-words") {
                &[][..]
            } else {
                &["--four-letter-words", "*"][..]
            })
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start zinc");
        wait_ready(address, &mut child, "zinc");
        Zinc {
            child,
            address,
            dir,
        }
    }

    /// Kills the server with SIGKILL and hands back its data directory.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Server for Zinc {
    fn address(&self) -> SocketAddr {
        self.address
    }
    fn name(&self) -> &'static str {
        "zinc"
    }
}

impl Drop for Zinc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `zinc` on `data` and `port` with stderr piped and no readiness wait (for tests that
/// watch it fail or stop).
pub fn spawn_zinc_piped(data: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_zinc"))
        .args(["--port", &port.to_string()])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start zinc")
}

pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";

/// Apache ZooKeeper from Debian's package, standalone, same tick time as `Zinc`.
pub struct ZooKeeper {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl ZooKeeper {
    pub fn start() -> ZooKeeper {
        ZooKeeper::start_with_whitelist("*")
    }

    /// Starts with `4lw.commands.whitelist` set to `words` (`ruok` and `srvr` must be among
    /// them: readiness is checked with them).
    pub fn start_with_whitelist(words: &str) -> ZooKeeper {
        assert!(
            Path::new(ZOOKEEPER_JAR).exists(),
            "Apache ZooKeeper is not installed (Debian package `zookeeper`; .ci/run installs it)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let config = format!(
            "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             4lw.commands.whitelist={words}\nadmin.enableServer=false\nextendedTypesEnabled=true\n",
            data.display()
        );
        let config_path = dir.path().join("zoo.cfg");
        std::fs::write(&config_path, config).expect("write zoo.cfg");
        let mut child = Command::new("java")
            .args([
                "-Xmx512m",
                "-cp",
                "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            ])
            .arg(&config_path)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start java");
        wait_ready(address, &mut child, "zookeeper");
        // ZooKeeper answers `ruok` before it serves sessions (connections then fail with
        // "ZooKeeperServer not running"); `srvr` says when it serves.
        let deadline = Instant::now() + READY_TIMEOUT;
        while !four_letter_word(address, "srvr").contains("Mode: ") {
            assert!(Instant::now() < deadline, "zookeeper never started serving");
            std::thread::sleep(Duration::from_millis(50));
        }
        ZooKeeper {
            child,
            address,
            _dir: dir,
        }
    }
}

impl Server for ZooKeeper {
    fn address(&self) -> SocketAddr {
        self.address
    }
    fn name(&self) -> &'static str {
        "zookeeper"
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that Zinc's and ZooKeeper's transcripts of one scenario are equal, and that they
/// hold each `expected` line (so the scenario did what it claims).
pub fn assert_same_transcripts(zinc: &[String], zookeeper: &[String], expected: &[&str]) {
    assert_eq!(
        zinc,
        zookeeper,
        "zinc:\n{}\nzookeeper:\n{}",
        zinc.join("\n"),
        zookeeper.join("\n")
    );
    for line in expected {
        assert!(
            zinc.iter().any(|seen| seen == line),
            "lacks {line:?}:\n{}",
            zinc.join("\n")
        );
    }
}

pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Runs a command with a time limit; panics with its output if it fails or hangs.
pub fn run_checked(command: &mut Command, limit: Duration) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    run_checked_child(child, limit)
}

/// Runs the kazoo scenarios against `server` and returns the transcript lines.
pub fn kazoo_transcript(server: &dyn Server, scenarios: &[&str]) -> Vec<String> {
    let output = run_checked(
        Command::new("python3")
            .arg(clients_dir().join("kazoo_scenarios.py"))
            .arg(server.hosts())
            .args(scenarios),
        Duration::from_secs(180),
    );
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "kazoo scenarios failed against {}:\nstdout:\n{stdout}\nstderr:\n{}",
        server.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// Waits for an already started child with a time limit, draining its pipes meanwhile; panics
/// with its output on a hang.
pub fn run_checked_child(mut child: Child, limit: Duration) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().expect("wait client") {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let Some(status) = status else {
        panic!(
            "client timed out after {limit:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}
