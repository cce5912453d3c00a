//! Three-server ensembles of real `zinc` processes on loopback, configured as Apache ZooKeeper
//! ensembles are (`myid` in each dataDir, `server.N=host:quorumPort:electionPort` lines): writes
//! through any member reach every member, a leader's death loses no acknowledged write and a
//! restarted member catches up, and a minority never serves.
//!
//! Clients are `common::raw` sessions, each pinned to one member (real clients would move to
//! another member on a closed connection, and these tests must know which member answered).
//! Reads on one member of writes made through another follow a `sync`, as ZooKeeper requires.
//! Roles come from `srvr` (`Mode: leader` / `Mode: follower`; a member that is not serving
//! answers "This ZooKeeper instance is not currently serving requests"). Each member's stdout
//! and stderr go to `server.log` in its directory; a failing test prints the logs.
//!
//! `ZINC_ENSEMBLE_SERVER=zookeeper` runs the same tests on Apache ZooKeeper ensembles (Debian's
//! package), to check the tests against the reference; `ZINC_ENSEMBLE_KEEP_DIRS=1` keeps the
//! members' directories (data, config, log) of a failed test.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::raw::{
    buffer, create_body, frame, path_and_flag, read_frame, RawClient, OP_CLOSE_SESSION, OP_EXISTS,
    XID_NOTIFICATION,
};
use common::{four_letter_word, free_port, listens_on};

const TICK_TIME_MS: u32 = 200;
const INIT_LIMIT_TICKS: u32 = 10;
const SYNC_LIMIT_TICKS: u32 = 5;
/// How long members may take to start, elect a leader and sync with it.
const ROLES_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a member that lost its quorum may keep serving: syncLimit (1 s) plus slack for a
/// loaded machine.
const STOP_SERVING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a member without a quorum is watched to see that it does not serve again.
const NOT_SERVING_WATCH: Duration = Duration::from_secs(2);
/// Lines of each member's log printed when a test fails.
const LOG_LINES_SHOWN: usize = 300;

const OP_SET_DATA: i32 = 5;
const OP_SYNC: i32 = 9;
const OP_GET_CHILDREN2: i32 = 12;
const OP_CREATE2: i32 = 15;
const OP_GET_DATA: i32 = 4;
const ERR_NO_NODE: i32 = -101;
const EPHEMERAL: i32 = 1;
const SEQUENTIAL: i32 = 2;

const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// One ensemble at a time in this binary: each is three servers with 200 ms ticks, and on the
/// 2-CPU CI machines several at once would miss their own deadlines.
fn one_ensemble_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A member's role as `srvr` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Leader,
    Follower,
    Observer,
    /// "not currently serving requests".
    NotServing,
    /// Any other `Mode:` value ("standalone"), or the whole answer when it has no `Mode:` line
    /// ("" when nothing answered).
    Other(String),
}

fn parse_mode(answer: &str) -> Mode {
    if answer.contains(NOT_SERVING) {
        return Mode::NotServing;
    }
    match answer.lines().find_map(|line| line.strip_prefix("Mode: ")) {
        Some("leader") => Mode::Leader,
        Some("follower") => Mode::Follower,
        Some("observer") => Mode::Observer,
        Some(other) => Mode::Other(other.to_owned()),
        None => Mode::Other(answer.trim().to_owned()),
    }
}

/// Which server the members run: `zinc`, or Apache ZooKeeper when `ZINC_ENSEMBLE_SERVER` says
/// `zookeeper`.
fn runs_zookeeper() -> bool {
    std::env::var("ZINC_ENSEMBLE_SERVER").is_ok_and(|server| server == "zookeeper")
}

/// One server of the ensemble. Its directory holds `data/` (the dataDir, with `myid`),
/// `zoo.cfg` and `server.log`; it outlives restarts.
struct Member {
    id: u64,
    /// Configured as an observer (`:observer`): it learns commits and never votes.
    observer: bool,
    dir: tempfile::TempDir,
    client_address: SocketAddr,
    child: Option<Child>,
    starts: usize,
}

impl Member {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("zoo.cfg")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts `zinc --config zoo.cfg` (on the same data, config and ports at every start),
    /// without waiting for it to serve.
    fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "server {} is already running",
            self.id
        );
        self.starts += 1;
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open server.log");
        io::Write::write_all(
            &mut log,
            format!(
                "=== test harness: start {} of server {}\n",
                self.starts, self.id
            )
            .as_bytes(),
        )
        .expect("write server.log");
        let mut command = if runs_zookeeper() {
            let mut java = Command::new("java");
            java.args([
                "-Xmx256m",
                "-cp",
                "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            ]);
            java
        } else {
            let mut zinc = Command::new(env!("CARGO_BIN_EXE_zinc"));
            zinc.arg("--config");
            zinc
        };
        let child = command
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start zinc");
        self.child = Some(child);
    }

    /// SIGKILL, and waits for the process to be gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process keeps its sockets open but goes silent, as behind a partition
    /// (SIGKILL closes its connections, which peers notice at once). Returns once every thread
    /// of it is stopped. Drop's SIGKILL ends it.
    fn freeze(&mut self) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        assert_eq!(sent, 0, "SIGSTOP server {}", self.id);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_threads_stopped(pid) {
            assert!(Instant::now() < deadline, "server {} did not stop", self.id);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGCONT after `freeze`.
    fn thaw(&mut self) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
        assert_eq!(sent, 0, "SIGCONT server {}", self.id);
    }

    fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Panics if the process exited by itself.
    fn assert_alive(&mut self) {
        if let Some(child) = &mut self.child {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server {} exited by itself: {status}", self.id);
            }
        }
    }

    /// `srvr`'s answer, or "" when the server is down or another process holds its port.
    fn srvr(&self) -> String {
        match &self.child {
            Some(child) if listens_on(child.id(), self.client_address.port()) => {
                four_letter_word(self.client_address, "srvr")
            }
            _ => String::new(),
        }
    }

    fn mode(&self) -> Mode {
        parse_mode(&self.srvr())
    }

    /// The last lines of the server's log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let first = lines.len().saturating_sub(LOG_LINES_SHOWN);
        lines[first..].join("\n")
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in /proc).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|task| {
        // The state follows the parenthesized command name, which may itself hold spaces.
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        })
    })
}

struct Ensemble {
    members: Vec<Member>,
}

impl Ensemble {
    /// Writes the configuration of `size` members on free ports and starts them all.
    fn start(size: u64) -> Ensemble {
        Ensemble::start_with_observers(size, 0)
    }

    /// `voters` participants, then `observers` observers.
    fn start_with_observers(voters: u64, observers: u64) -> Ensemble {
        let size = voters + observers;
        let ports: Vec<(u16, u16, u16)> = (0..size)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let server_lines: String = ports
            .iter()
            .zip(1..)
            .map(|((_, quorum, election), id)| {
                let role = if id > voters { ":observer" } else { "" };
                format!("server.{id}=127.0.0.1:{quorum}:{election}{role}\n")
            })
            .collect();
        let mut members = Vec::new();
        for (id, (client_port, _, _)) in (1..).zip(&ports) {
            let dir = tempfile::tempdir().expect("temp dir");
            let data = dir.path().join("data");
            std::fs::create_dir_all(&data).expect("data dir");
            std::fs::write(data.join("myid"), format!("{id}\n")).expect("write myid");
            // The raw clients send no pings: maxSessionTimeout lets their sessions ask for 10 s.
            let mut config = format!(
                "tickTime={TICK_TIME_MS}\ninitLimit={INIT_LIMIT_TICKS}\n\
                 syncLimit={SYNC_LIMIT_TICKS}\ndataDir={}\nclientPort={client_port}\n\
                 clientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\n\
                 maxSessionTimeout=10000\n{server_lines}",
                data.display()
            );
            if runs_zookeeper() {
                config.push_str("admin.enableServer=false\n");
                if id > voters {
                    config.push_str("peerType=observer\n");
                }
            }
            std::fs::write(dir.path().join("zoo.cfg"), config).expect("write zoo.cfg");
            members.push(Member {
                id,
                observer: id > voters,
                dir,
                client_address: SocketAddr::from(([127, 0, 0, 1], *client_port)),
                child: None,
                starts: 0,
            });
        }
        let mut ensemble = Ensemble { members };
        for member in &mut ensemble.members {
            member.start();
        }
        ensemble
    }

    fn member(&self, index: usize) -> &Member {
        &self.members[index]
    }

    /// Waits until the running members serve with exactly one leader and every other running
    /// member a follower; returns the leader's index.
    fn wait_for_roles(&mut self) -> usize {
        let deadline = Instant::now() + ROLES_TIMEOUT;
        loop {
            self.members.iter_mut().for_each(Member::assert_alive);
            let modes: Vec<(usize, Mode)> = self
                .members
                .iter()
                .enumerate()
                .filter(|(_, member)| member.is_running())
                .map(|(index, member)| (index, member.mode()))
                .collect();
            let leaders: Vec<usize> = modes
                .iter()
                .filter(|(_, mode)| *mode == Mode::Leader)
                .map(|(index, _)| *index)
                .collect();
            let followers = modes
                .iter()
                .filter(|(index, mode)| match self.members[*index].observer {
                    true => *mode == Mode::Observer,
                    false => *mode == Mode::Follower,
                })
                .count();
            if leaders.len() == 1 && followers + 1 == modes.len() {
                return leaders[0];
            }
            let standalone = modes
                .iter()
                .any(|(_, mode)| *mode == Mode::Other("standalone".to_owned()));
            assert!(
                !standalone,
                "a member with server.N lines runs standalone: {}",
                self.describe_modes()
            );
            assert!(
                Instant::now() < deadline,
                "no leader with all others following in {ROLES_TIMEOUT:?}: {}",
                self.describe_modes()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The indexes of the running members other than `leader`.
    fn others(&self, leader: usize) -> Vec<usize> {
        (0..self.members.len())
            .filter(|index| *index != leader && self.members[*index].is_running())
            .collect()
    }

    fn describe_modes(&self) -> String {
        let mut out = String::new();
        for member in &self.members {
            let mode = if member.is_running() {
                format!("{:?}", member.mode())
            } else {
                "killed".to_owned()
            };
            let _ = write!(out, "[server {}: {mode}] ", member.id);
        }
        out
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
        if !std::thread::panicking() {
            return;
        }
        for member in &self.members {
            eprintln!(
                "----- server {} ({}, last {LOG_LINES_SHOWN} lines) -----\n{}",
                member.id,
                member.log_path().display(),
                member.log_tail()
            );
        }
        if std::env::var_os("ZINC_ENSEMBLE_KEEP_DIRS").is_some() {
            for member in std::mem::take(&mut self.members) {
                eprintln!("kept {}", member.dir.keep().display());
            }
        }
    }
}

/// A znode's Stat, as the jute record lays it out.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    czxid: i64,
    mzxid: i64,
    ctime: i64,
    mtime: i64,
    version: i32,
    cversion: i32,
    aversion: i32,
    ephemeral_owner: i64,
    data_length: i32,
    num_children: i32,
    pzxid: i64,
}

/// Reads jute fields from a reply body; a short body panics (a malformed reply).
struct Fields<'a> {
    bytes: &'a [u8],
}

impl Fields<'_> {
    fn take(&mut self, count: usize) -> &[u8] {
        assert!(self.bytes.len() >= count, "reply too short");
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        head
    }
    fn int(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    fn long(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    fn buffer(&mut self) -> Vec<u8> {
        let length = self.int();
        if length < 0 {
            return Vec::new();
        }
        self.take(length as usize).to_vec()
    }
    fn string(&mut self) -> String {
        String::from_utf8(self.buffer()).expect("utf-8 string")
    }
    fn stat(&mut self) -> Stat {
        Stat {
            czxid: self.long(),
            mzxid: self.long(),
            ctime: self.long(),
            mtime: self.long(),
            version: self.int(),
            cversion: self.int(),
            aversion: self.int(),
            ephemeral_owner: self.long(),
            data_length: self.int(),
            num_children: self.int(),
            pzxid: self.long(),
        }
    }
}

/// Why a request got no successful answer.
#[derive(Debug)]
enum Failure {
    /// The server answered with this error code.
    Code(i32),
    /// No answer: the connection failed, was closed, or timed out.
    Connection(io::Error),
}

type Answer<T> = Result<T, Failure>;

/// A session on one member.
struct Client {
    raw: RawClient,
    server_id: u64,
    /// The xid of the last request (`RawClient` numbers them 1, 2, ...).
    last_xid: i32,
}

impl Client {
    fn connect(member: &Member) -> Answer<Client> {
        let raw = RawClient::connect(member.client_address).map_err(Failure::Connection)?;
        if raw.session.timeout_ms <= 0 {
            let refused = format!("session refused: {:?}", raw.session);
            return Err(Failure::Connection(io::Error::other(refused)));
        }
        Ok(Client {
            raw,
            server_id: member.id,
            last_xid: 0,
        })
    }

    /// Connects; panics if the member does not accept the session.
    fn open(member: &Member) -> Client {
        Client::connect(member)
            .unwrap_or_else(|failure| panic!("connect to server {}: {failure:?}", member.id))
    }

    fn session_id(&self) -> i64 {
        self.raw.session.session_id
    }

    /// Sends a request; the body of a successful answer.
    fn call(&mut self, op: i32, body: &[u8]) -> Answer<Vec<u8>> {
        self.last_xid += 1;
        let reply = self.raw.request(op, body).map_err(Failure::Connection)?;
        assert_eq!(
            reply.xid, self.last_xid,
            "server {}: a reply to another request (op {op})",
            self.server_id
        );
        if reply.err != 0 {
            return Err(Failure::Code(reply.err));
        }
        Ok(reply.body)
    }

    /// `create2`: the created path and the new node's Stat.
    fn create(&mut self, path: &str, data: &[u8], flags: i32) -> Answer<(String, Stat)> {
        let body = self.call(OP_CREATE2, &create_body(path, data, flags))?;
        let mut fields = Fields { bytes: &body };
        Ok((fields.string(), fields.stat()))
    }

    fn set_data(&mut self, path: &str, data: &[u8], version: i32) -> Answer<Stat> {
        let mut request = buffer(path.as_bytes());
        request.extend_from_slice(&buffer(data));
        request.extend_from_slice(&version.to_be_bytes());
        let body = self.call(OP_SET_DATA, &request)?;
        Ok(Fields { bytes: &body }.stat())
    }

    fn get_data(&mut self, path: &str) -> Answer<(Vec<u8>, Stat)> {
        let body = self.call(OP_GET_DATA, &path_and_flag(path, false))?;
        let mut fields = Fields { bytes: &body };
        Ok((fields.buffer(), fields.stat()))
    }

    /// `getChildren2`: the children, sorted, and the node's Stat.
    fn children(&mut self, path: &str) -> Answer<(Vec<String>, Stat)> {
        let body = self.call(OP_GET_CHILDREN2, &path_and_flag(path, false))?;
        let mut fields = Fields { bytes: &body };
        let count = fields.int();
        let mut children: Vec<String> = (0..count).map(|_| fields.string()).collect();
        children.sort();
        Ok((children, fields.stat()))
    }

    /// `exists`: the Stat, or None for no node.
    fn stat(&mut self, path: &str) -> Answer<Option<Stat>> {
        match self.call(OP_EXISTS, &path_and_flag(path, false)) {
            Ok(body) => Ok(Some(Fields { bytes: &body }.stat())),
            Err(Failure::Code(ERR_NO_NODE)) => Ok(None),
            Err(failure) => Err(failure),
        }
    }

    /// `sync`: once answered, this member has applied every write committed before it.
    fn sync(&mut self, path: &str) -> Answer<()> {
        self.call(OP_SYNC, &buffer(path.as_bytes())).map(drop)
    }

    fn close(mut self) -> Answer<()> {
        self.call(OP_CLOSE_SESSION, &[]).map(drop)
    }
}

/// Unwraps an answer that must be successful, naming the member and the request.
fn must<T>(answer: Answer<T>, server_id: u64, what: &str) -> T {
    answer.unwrap_or_else(|failure| panic!("server {server_id}: {what}: {failure:?}"))
}

/// Opens a session on `member` and syncs `path` on it.
fn synced_client(member: &Member, path: &str) -> Client {
    let mut client = Client::open(member);
    must(client.sync(path), member.id, &format!("sync {path}"));
    client
}

/// What a member holds under some paths: data, Stat and children of each.
type View = Vec<(String, Vec<u8>, Stat, Vec<String>)>;

fn view(client: &mut Client, paths: &[&str]) -> View {
    let id = client.server_id;
    paths
        .iter()
        .map(|path| {
            let (data, stat) = must(client.get_data(path), id, &format!("getData {path}"));
            let (children, _) = must(client.children(path), id, &format!("getChildren {path}"));
            ((*path).to_owned(), data, stat, children)
        })
        .collect()
}

#[test]
fn three_servers_replicate() {
    let _serial = one_ensemble_at_a_time();
    let mut ensemble = Ensemble::start(3);
    let leader = ensemble.wait_for_roles();
    let followers = ensemble.others(leader);
    assert_eq!(followers.len(), 2, "{}", ensemble.describe_modes());
    let writer_at = ensemble.member(followers[0]);
    let mut owner = Client::open(writer_at);
    let id = writer_at.id;

    let (_, created) = must(owner.create("/a", b"first", 0), id, "create /a");
    let set = must(owner.set_data("/a", b"second", 0), id, "setData /a");
    assert_eq!(set.version, 1);
    assert!(
        set.mzxid > created.czxid,
        "setData's zxid not after create's"
    );
    let (sequential, _) = must(
        owner.create("/a/seq-", b"s", SEQUENTIAL),
        id,
        "create /a/seq-",
    );
    assert_eq!(sequential, "/a/seq-0000000000");
    let (_, ephemeral) = must(owner.create("/a/eph", b"e", EPHEMERAL), id, "create /a/eph");
    assert_eq!(ephemeral.ephemeral_owner, owner.session_id());

    let paths = ["/a", sequential.as_str(), "/a/eph"];
    let expected = view(&mut owner, &paths);
    let (_, a_data, a_stat, a_children) = &expected[0];
    assert_eq!(a_data, b"second");
    assert_eq!(a_stat.version, 1);
    assert_eq!(a_children, &["eph", "seq-0000000000"]);
    for index in [leader, followers[1]] {
        let mut reader = synced_client(ensemble.member(index), "/a");
        assert_eq!(
            view(&mut reader, &paths),
            expected,
            "server {} differs from server {id}, where the writes were made",
            reader.server_id
        );
    }

    // Closing the session is a write: once it is answered, no member that synced after it may
    // show the ephemeral node.
    must(owner.close(), id, "closeSession");
    for member in &ensemble.members {
        let mut reader = synced_client(member, "/a");
        let (children, stat) = must(reader.children("/a"), member.id, "getChildren /a");
        assert_eq!(
            children,
            ["seq-0000000000"],
            "server {}: the ephemeral node outlived its closed session",
            member.id
        );
        assert_eq!(
            must(reader.stat("/a/eph"), member.id, "exists /a/eph"),
            None,
            "server {}",
            member.id
        );
        assert_eq!(stat.cversion, a_stat.cversion + 1, "server {}", member.id);
    }
}

/// What the writers of `leader_failover_keeps_acknowledged_writes` share.
#[derive(Default)]
struct Writes {
    /// Set just before the leader is killed: failures after it are expected.
    leader_killed: AtomicBool,
    stop: AtomicBool,
    /// Every acknowledged create: path -> czxid.
    acked: Mutex<BTreeMap<String, i64>>,
    /// Creates that failed before the leader was killed.
    failed_early: Mutex<Vec<String>>,
}

impl Writes {
    /// Creates nodes under `/w` through `client` until one fails or `stop` is set.
    fn run(&self, mut client: Client) {
        for n in 0.. {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let path = format!("/w/s{}-{n}", client.server_id);
            match client.create(&path, b"v", 0) {
                Ok((_, stat)) => {
                    let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
                    acked.insert(path, stat.czxid);
                }
                Err(failure) => {
                    if !self.leader_killed.load(Ordering::SeqCst) {
                        let mut failed =
                            self.failed_early.lock().unwrap_or_else(|e| e.into_inner());
                        failed.push(format!(
                            "server {}: create {path}: {failure:?}",
                            client.server_id
                        ));
                    }
                    return;
                }
            }
        }
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn failed_early(&self) -> Vec<String> {
        self.failed_early
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Every acknowledged node is on `member`, with the zxid its create was acknowledged with.
fn assert_has_all(member: &Member, acked: &BTreeMap<String, i64>, when: &str) {
    let mut client = synced_client(member, "/");
    for (path, czxid) in acked {
        let stat = must(client.stat(path), member.id, &format!("exists {path}"));
        match stat {
            Some(stat) => assert_eq!(
                stat.czxid, *czxid,
                "server {} {when}: {path} has another czxid",
                member.id
            ),
            None => panic!(
                "server {} {when}: acknowledged {path} (zxid {czxid:#x}) is missing",
                member.id
            ),
        }
    }
}

/// The members in `indexes` list the same children under each of `paths` (after a sync).
fn assert_same_children(ensemble: &Ensemble, indexes: &[usize], paths: &[&str]) {
    let listings: Vec<(u64, Vec<Vec<String>>)> = indexes
        .iter()
        .map(|index| {
            let member = ensemble.member(*index);
            let mut client = synced_client(member, "/");
            let listing = paths
                .iter()
                .map(|path| must(client.children(path), member.id, path).0)
                .collect();
            (member.id, listing)
        })
        .collect();
    for (id, listing) in &listings[1..] {
        assert!(
            listing == &listings[0].1,
            "servers {} and {id} list different children under {paths:?}",
            listings[0].0
        );
    }
}

#[test]
fn leader_failover_keeps_acknowledged_writes() {
    const ACKED_BEFORE_KILL: usize = 200;
    const WRITES_AFTER_FAILOVER: usize = 50;
    const WRITES_TIMEOUT: Duration = Duration::from_secs(30);
    let _serial = one_ensemble_at_a_time();
    let mut ensemble = Ensemble::start(3);
    let old_leader = ensemble.wait_for_roles();
    let mut setup = Client::open(ensemble.member(old_leader));
    must(setup.create("/w", b"", 0), setup.server_id, "create /w");
    must(
        setup.create("/after", b"", 0),
        setup.server_id,
        "create /after",
    );
    drop(setup);

    // Writers on all three members; the leader is killed while they write, so some creates
    // are in flight when it dies.
    let writes = Writes::default();
    let writers: Vec<Client> = ensemble.members.iter().map(Client::open).collect();
    std::thread::scope(|scope| {
        for client in writers {
            let writes = &writes;
            scope.spawn(move || writes.run(client));
        }
        let started = Instant::now();
        while writes.acked_count() < ACKED_BEFORE_KILL {
            let failed = writes.failed_early();
            let late = started.elapsed() > WRITES_TIMEOUT;
            if late || !failed.is_empty() {
                writes.stop.store(true, Ordering::SeqCst);
                panic!(
                    "{} creates acknowledged in {:?} (want {ACKED_BEFORE_KILL}) with the leader \
                     alive; failed: {failed:?}",
                    writes.acked_count(),
                    started.elapsed()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        writes.leader_killed.store(true, Ordering::SeqCst);
        ensemble.members[old_leader].kill();
        writes.stop.store(true, Ordering::SeqCst);
    });
    let mut acked = writes.acked.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(acked.len() >= ACKED_BEFORE_KILL);

    let new_leader = ensemble.wait_for_roles();
    let survivors = ensemble.others(old_leader);
    assert!(survivors.contains(&new_leader));
    for index in &survivors {
        assert_has_all(ensemble.member(*index), &acked, "after the leader died");
    }
    for index in &survivors {
        let member = ensemble.member(*index);
        let mut client = Client::open(member);
        for n in 0..WRITES_AFTER_FAILOVER {
            let path = format!("/after/s{}-{n}", member.id);
            let (_, stat) = must(client.create(&path, b"v", 0), member.id, &path);
            acked.insert(path, stat.czxid);
        }
    }
    assert_same_children(&ensemble, &survivors, &["/w", "/after"]);

    ensemble.members[old_leader].start();
    let leader = ensemble.wait_for_roles();
    assert_eq!(
        leader,
        new_leader,
        "the restarted server {} displaced the leader: {}",
        ensemble.member(old_leader).id,
        ensemble.describe_modes()
    );
    assert_has_all(ensemble.member(old_leader), &acked, "after its restart");
    assert_same_children(&ensemble, &[0, 1, 2], &["/w", "/after"]);
}

/// How the two other members of a minority are taken away.
#[derive(Debug, Clone, Copy)]
enum Loss {
    /// SIGKILL: their connections close.
    Kill,
    /// SIGSTOP: their connections stay open and silent; only timeouts tell.
    Freeze,
}

/// Takes two members of three away, keeping the one in `survivor_mode`, and checks the survivor
/// stops serving: `srvr` says so within `STOP_SERVING_TIMEOUT`, its open connection is closed,
/// a write sent just after the loss is not acknowledged, and new sessions are refused.
fn minority_stops_serving(survivor_mode: Mode, loss: Loss) {
    let _serial = one_ensemble_at_a_time();
    let mut ensemble = Ensemble::start(3);
    let leader = ensemble.wait_for_roles();
    let survivor = match survivor_mode {
        Mode::Leader => leader,
        _ => ensemble.others(leader)[0],
    };
    let mut client = Client::open(ensemble.member(survivor));
    let id = client.server_id;
    must(client.create("/before", b"", 0), id, "create /before");

    for index in ensemble.others(survivor) {
        match loss {
            Loss::Kill => ensemble.members[index].kill(),
            Loss::Freeze => ensemble.members[index].freeze(),
        }
    }
    let killed_at = Instant::now();
    let survivor = ensemble.member(survivor);
    std::thread::scope(|scope| {
        let attempt = scope.spawn(move || client.create("/during", b"", 0));
        loop {
            // The deadline applies to when srvr was asked: a loaded machine may answer late.
            let asked_after = killed_at.elapsed();
            let mode = survivor.mode();
            if mode == Mode::NotServing {
                break;
            }
            assert!(
                asked_after < STOP_SERVING_TIMEOUT,
                "server {id} still answers srvr with {mode:?} {asked_after:?} after losing its quorum \
                 ({loss:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        match attempt.join().expect("write attempt") {
            Ok((path, stat)) => panic!(
                "server {id} acknowledged a write without a quorum: {path} zxid {:#x}",
                stat.czxid
            ),
            Err(Failure::Connection(error))
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("server {id} neither answered nor closed the connection: {error}")
            }
            Err(_) => {}
        }
    });

    // It must stay that way: one member of three never makes a quorum.
    let watch_until = Instant::now() + NOT_SERVING_WATCH;
    while Instant::now() < watch_until {
        assert_eq!(survivor.mode(), Mode::NotServing, "server {id}");
        if let Ok(mut late) = Client::connect(survivor) {
            let answer = late.create("/late", b"", 0);
            panic!("server {id} opened a session without a quorum; create /late: {answer:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The leader is the survivor: it must notice that its followers are gone and step down.
#[test]
fn minority_does_not_serve() {
    minority_stops_serving(Mode::Leader, Loss::Kill);
}

/// A follower is the survivor: it loses its leader and must not elect itself.
#[test]
fn minority_of_a_follower_does_not_serve() {
    minority_stops_serving(Mode::Follower, Loss::Kill);
}

/// The leader's followers go silent with their connections open: only syncLimit tells it.
#[test]
fn minority_does_not_serve_when_the_others_go_silent() {
    minority_stops_serving(Mode::Leader, Loss::Freeze);
}

/// The follower's leader and fellow go silent: only syncLimit tells it.
#[test]
fn minority_of_a_follower_does_not_serve_when_the_others_go_silent() {
    minority_stops_serving(Mode::Follower, Loss::Freeze);
}

/// A leader that goes silent (SIGSTOP) while the others elect a new one, then wakes up with a
/// client's write waiting on its socket: it must not acknowledge that write (it no longer has a
/// quorum), it must rejoin as a follower, and it must then hold what the new leader committed.
#[test]
fn a_deposed_leader_that_wakes_up_acknowledges_nothing() {
    let _serial = one_ensemble_at_a_time();
    let mut ensemble = Ensemble::start(3);
    let old = ensemble.wait_for_roles();
    let mut stale = Client::open(ensemble.member(old));
    let old_id = stale.server_id;
    must(stale.create("/before", b"", 0), old_id, "create /before");

    ensemble.members[old].freeze();
    let others = ensemble.others(old);
    let deadline = Instant::now() + ROLES_TIMEOUT;
    let new = loop {
        let modes: Vec<Mode> = others.iter().map(|i| ensemble.member(*i).mode()).collect();
        if let Some(at) = modes.iter().position(|mode| *mode == Mode::Leader) {
            if modes.iter().filter(|mode| **mode == Mode::Follower).count() == 1 {
                break others[at];
            }
        }
        assert!(
            Instant::now() < deadline,
            "no new leader while server {old_id} is silent: {modes:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut fresh = Client::open(ensemble.member(new));
    let new_id = fresh.server_id;
    must(fresh.create("/new", b"", 0), new_id, "create /new");

    // Sent while the old leader is stopped: the request waits in its socket until it wakes up
    // (written straight to the connection, so it is there before SIGCONT, with no thread).
    let xid = stale.last_xid + 1;
    let mut request = xid.to_be_bytes().to_vec();
    request.extend_from_slice(&OP_CREATE2.to_be_bytes());
    request.extend_from_slice(&create_body("/stale", b"", 0));
    stale
        .raw
        .stream
        .write_all(&frame(&request))
        .expect("send create to the stopped leader");
    ensemble.members[old].thaw();
    let answer = loop {
        match read_frame(&mut stale.raw.stream) {
            Ok(reply) if reply.starts_with(&XID_NOTIFICATION.to_be_bytes()) => continue,
            other => break other,
        }
    };
    match answer {
        Ok(reply) => {
            let err = i32::from_be_bytes(reply[12..16].try_into().expect("reply header"));
            assert_ne!(
                err, 0,
                "deposed server {old_id} acknowledged /stale after server {new_id} took over"
            );
        }
        Err(error) => assert!(
            !matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "server {old_id} neither answered nor closed the connection: {error}"
        ),
    }

    let leader = ensemble.wait_for_roles();
    assert_eq!(leader, new, "{}", ensemble.describe_modes());
    let mut reader = synced_client(ensemble.member(old), "/");
    for path in ["/before", "/new"] {
        assert!(
            must(reader.stat(path), old_id, path).is_some(),
            "server {old_id} lacks {path} after rejoining"
        );
    }
}

/// What the writers of one round of `members_killed_in_turn_lose_no_acknowledged_write` share.
#[derive(Default)]
struct Round {
    victim_killed: AtomicBool,
    stop: AtomicBool,
    acked: Mutex<BTreeMap<String, i64>>,
    /// Failures before the kill, and acknowledgements out of session order.
    errors: Mutex<Vec<String>>,
}

impl Round {
    /// Creates `/r/{round}-s{server}-{n}` through `client` until a create fails or `stop` is
    /// set; each session's acknowledged zxids must increase (per-session FIFO order).
    fn write(&self, round: usize, mut client: Client) {
        let mut last_zxid = 0;
        for n in 0.. {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let path = format!("/r/{round}-s{}-{n}", client.server_id);
            match client.create(&path, b"v", 0) {
                Ok((_, stat)) => {
                    if stat.czxid <= last_zxid {
                        self.error(format!(
                            "server {}: {path} acknowledged with zxid {:#x} after {last_zxid:#x}",
                            client.server_id, stat.czxid
                        ));
                    }
                    last_zxid = stat.czxid;
                    let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
                    acked.insert(path, stat.czxid);
                }
                Err(failure) => {
                    if !self.victim_killed.load(Ordering::SeqCst) {
                        self.error(format!(
                            "server {}: create {path}: {failure:?}",
                            client.server_id
                        ));
                    }
                    return;
                }
            }
        }
    }

    fn error(&self, error: String) {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(error);
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Rounds of writes through every member while one member is killed (the leader, then a
/// follower, in turn) and restarted: every acknowledged create is on every member afterwards,
/// with the zxid it was acknowledged with, and each session's acknowledgements came in order.
#[test]
fn members_killed_in_turn_lose_no_acknowledged_write() {
    const ROUNDS: usize = 4;
    const ACKED_PER_ROUND: usize = 100;
    const WRITES_TIMEOUT: Duration = Duration::from_secs(30);
    let _serial = one_ensemble_at_a_time();
    let mut ensemble = Ensemble::start(3);
    let leader = ensemble.wait_for_roles();
    let mut setup = Client::open(ensemble.member(leader));
    must(setup.create("/r", b"", 0), setup.server_id, "create /r");
    drop(setup);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos() as usize);
    let mut acked = BTreeMap::new();
    for round in 0..ROUNDS {
        let leader = ensemble.wait_for_roles();
        let victim = match round % 2 {
            0 => leader,
            _ => {
                let followers = ensemble.others(leader);
                followers[(seed >> round) % followers.len()]
            }
        };
        let victim_id = ensemble.member(victim).id;
        let state = Round::default();
        let writers: Vec<Client> = ensemble.members.iter().map(Client::open).collect();
        std::thread::scope(|scope| {
            for client in writers {
                let state = &state;
                scope.spawn(move || state.write(round, client));
            }
            let started = Instant::now();
            while state.acked_count() < ACKED_PER_ROUND {
                let late = started.elapsed() > WRITES_TIMEOUT;
                let failed = !state
                    .errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty();
                if late || failed {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            state.victim_killed.store(true, Ordering::SeqCst);
            ensemble.members[victim].kill();
            state.stop.store(true, Ordering::SeqCst);
        });
        let errors = state.errors.into_inner().unwrap_or_else(|e| e.into_inner());
        let round_acked = state.acked.into_inner().unwrap_or_else(|e| e.into_inner());
        assert!(
            errors.is_empty() && round_acked.len() >= ACKED_PER_ROUND,
            "round {round} (seed {seed}, server {victim_id} killed): {} acknowledged, errors: \
             {errors:?}",
            round_acked.len()
        );
        acked.extend(round_acked);
        ensemble.wait_for_roles();
        for index in ensemble.others(victim) {
            let when = format!("in round {round} with server {victim_id} down (seed {seed})");
            assert_has_all(ensemble.member(index), &acked, &when);
        }
        ensemble.members[victim].start();
        ensemble.wait_for_roles();
        let when = format!("after its restart in round {round} (seed {seed})");
        assert_has_all(ensemble.member(victim), &acked, &when);
    }
    assert_same_children(&ensemble, &[0, 1, 2], &["/r"]);
}

/// Watches set on one member fire for writes made through another: the member applies the
/// committed txn, fires the watch, and only then answers from the new state.
#[test]
fn watches_fire_on_a_follower_for_writes_through_other_members() {
    const NODE_CREATED: i32 = 1;
    const NODE_DATA_CHANGED: i32 = 3;
    const NODE_CHILDREN_CHANGED: i32 = 4;
    let _serial = one_ensemble_at_a_time();
    let mut ensemble = Ensemble::start(3);
    let leader = ensemble.wait_for_roles();
    let followers = ensemble.others(leader);
    let mut watcher = Client::open(ensemble.member(followers[0]));
    let id = watcher.server_id;
    assert_eq!(
        must(watcher.stat("/watched"), id, "exists /watched"),
        None,
        "a fresh ensemble"
    );
    // exists with a watch on a missing node, then a child watch on the root.
    let reply = watcher
        .raw
        .request(OP_EXISTS, &path_and_flag("/watched", true))
        .expect("exists with watch");
    assert_eq!(reply.err, ERR_NO_NODE);
    let reply = watcher
        .raw
        .request(OP_GET_CHILDREN2, &path_and_flag("/", true))
        .expect("getChildren with watch");
    assert_eq!(reply.err, 0);
    watcher.last_xid += 2;

    for (index, path) in [(leader, "/watched"), (followers[1], "/watched")] {
        let mut writer = Client::open(ensemble.member(index));
        let wid = writer.server_id;
        if must(writer.stat(path), wid, "exists").is_none() {
            must(writer.create(path, b"one", 0), wid, "create");
        } else {
            // A data watch set now fires for the set through the other follower.
            let reply = watcher
                .raw
                .request(OP_GET_DATA, &path_and_flag(path, true))
                .expect("getData with watch");
            assert_eq!(reply.err, 0);
            watcher.last_xid += 1;
            must(writer.set_data(path, b"two", 0), wid, "setData");
        }
        must(watcher.sync(path), id, "sync");
    }
    let events: Vec<(i32, String)> = watcher
        .raw
        .events
        .iter()
        .map(|event| {
            let mut fields = Fields { bytes: event };
            let kind = fields.int();
            let _state = fields.int();
            (kind, fields.string())
        })
        .collect();
    for expected in [
        (NODE_CREATED, "/watched".to_owned()),
        (NODE_CHILDREN_CHANGED, "/".to_owned()),
        (NODE_DATA_CHANGED, "/watched".to_owned()),
    ] {
        assert!(
            events.contains(&expected),
            "server {id} did not deliver {expected:?}; got {events:?}"
        );
    }
}

/// A new leader that has not written anything in its epoch yet still answers a `sync` from a
/// session that moved to it (no txn is needed for that), with a zxid that exists.
#[test]
fn a_new_leader_answers_sync_before_its_first_write() {
    let _serial = one_ensemble_at_a_time();
    let mut ensemble = Ensemble::start(3);
    let old = ensemble.wait_for_roles();
    let mut client = Client::open(ensemble.member(ensemble.others(old)[0]));
    let (_, created) = must(client.create("/x", b"", 0), client.server_id, "create /x");
    let (session, password) = (
        client.raw.session.session_id,
        client.raw.session.password.clone(),
    );
    drop(client);
    ensemble.members[old].kill();
    let new = ensemble.wait_for_roles();
    let member = ensemble.member(new);
    let raw = RawClient::resume(member.client_address, session, &password, created.czxid)
        .expect("resume on the new leader");
    assert!(
        raw.session.timeout_ms > 0,
        "server {}: session lost: {:?}",
        member.id,
        raw.session
    );
    let mut resumed = Client {
        raw,
        server_id: member.id,
        last_xid: 0,
    };
    must(resumed.sync("/"), member.id, "sync on the new leader");
    // The reply's zxid must be one this member has: it answers a read from the same session.
    let (_, stat) = must(resumed.get_data("/x"), member.id, "getData /x");
    assert_eq!(stat.czxid, created.czxid);
}

/// An observer (`server.4=...:observer`) serves reads and forwards writes like a follower, and
/// learns every commit, but its vote does not count: with two of the three voters gone the
/// ensemble stops, observer included.
#[test]
fn an_observer_serves_and_does_not_vote() {
    let _serial = one_ensemble_at_a_time();
    let mut ensemble = Ensemble::start_with_observers(3, 1);
    let leader = ensemble.wait_for_roles();
    let observer = 3;
    assert_eq!(ensemble.member(observer).mode(), Mode::Observer);
    let mut client = Client::open(ensemble.member(observer));
    let id = client.server_id;
    let (_, created) = must(client.create("/o", b"via observer", 0), id, "create /o");
    let mut reader = synced_client(ensemble.member(leader), "/o");
    let (data, stat) = must(reader.get_data("/o"), reader.server_id, "getData /o");
    assert_eq!(
        (data.as_slice(), stat.czxid),
        (&b"via observer"[..], created.czxid)
    );
    let mut writer = Client::open(ensemble.member(leader));
    let set = must(
        writer.set_data("/o", b"via leader", 0),
        writer.server_id,
        "setData",
    );
    must(client.sync("/o"), id, "sync on the observer");
    let (data, stat) = must(client.get_data("/o"), id, "getData on the observer");
    assert_eq!(
        (data.as_slice(), stat.mzxid),
        (&b"via leader"[..], set.mzxid)
    );

    // Two voters gone: the leader and the observer make no quorum.
    let follower = ensemble
        .others(leader)
        .into_iter()
        .find(|index| *index != observer)
        .expect("a follower");
    ensemble.members[follower].kill();
    ensemble.members[leader].kill();
    let deadline = Instant::now() + STOP_SERVING_TIMEOUT;
    while ensemble.member(observer).mode() != Mode::NotServing {
        assert!(
            Instant::now() < deadline,
            "the observer still serves without a quorum of voters"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
