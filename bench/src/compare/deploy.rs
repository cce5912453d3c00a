//! The servers a comparison measures: Apache ZooKeeper (Debian's package) and Zinc, each either
//! standalone or as an ensemble of `--ensemble` members on loopback, started with equivalent
//! settings, waited for until they serve, and killed when dropped.
//!
//! An ensemble is configured as ZooKeeper ensembles are: each member has its own directory with
//! a dataDir holding `myid`, and a zoo.cfg naming every member
//! (`server.N=127.0.0.1:quorumPort:electionPort`). Both products read the same file layout;
//! Zinc listens for peers on the quorum port only, ZooKeeper on both. A standalone Zinc keeps the
//! flags it always had.

use std::fs::File;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{four_letter_word, CompareOptions};
use crate::proc_stats;
use crate::BenchError;

/// How long servers may take to start and, for an ensemble, elect a leader that every member
/// follows (three JVMs starting at once on 2 shared cores take a while).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The tick and the leader's limits (in ticks) both products run with.
pub const TICK_TIME_MS: u32 = 2000;
pub const INIT_LIMIT_TICKS: u32 = 10;
pub const SYNC_LIMIT_TICKS: u32 = 5;
/// Largest `--ensemble`: every member is a process on this one machine.
pub const ENSEMBLE_SIZE_MAX: usize = 7;
/// Bytes of a member's log quoted when it fails to start.
const LOG_TAIL_BYTES: u64 = 2_000;

/// Which server software a deployment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    ZooKeeper,
    Zinc,
}

impl Product {
    pub fn name(self) -> &'static str {
        match self {
            Product::ZooKeeper => "ZooKeeper",
            Product::Zinc => "Zinc",
        }
    }
}

/// The loopback ports of one ensemble member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberPorts {
    pub client: u16,
    pub quorum: u16,
    pub election: u16,
}

/// One server process this comparison started; killed when dropped.
struct ServerProcess {
    /// "ZooKeeper", or "ZooKeeper server 2" in an ensemble.
    name: String,
    child: Child,
    address: SocketAddr,
    /// Where its stdout and stderr go (ensemble members only).
    log: Option<PathBuf>,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// An error if the process has exited, with the end of its log.
    fn check_running(&mut self) -> Result<(), BenchError> {
        let Ok(Some(status)) = self.child.try_wait() else {
            return Ok(());
        };
        let log = self.log.as_deref().map(log_tail).unwrap_or_default();
        Err(BenchError::Invalid(format!(
            "{} exited before it was ready: {status}{log}",
            self.name
        )))
    }
}

/// The last bytes of a log, as "\n--- PATH ---\n..." ("" when unreadable).
fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let length = file.metadata().map_or(0, |m| m.len());
    let mut tail = Vec::new();
    if std::io::Seek::seek(
        &mut file,
        std::io::SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES)),
    )
    .is_err()
        || file.read_to_end(&mut tail).is_err()
    {
        return String::new();
    }
    format!(
        "\n--- {} ---\n{}",
        path.display(),
        String::from_utf8_lossy(&tail)
    )
}

/// The servers of one product: one standalone process or every member of its ensemble. Every
/// process is killed when this is dropped, also when starting fails half way.
pub struct Deployment {
    pub product: Product,
    members: Vec<ServerProcess>,
}

impl Deployment {
    /// Starts `product` in `dir` as `options.ensemble` says and waits until it serves.
    pub fn start(
        product: Product,
        options: &CompareOptions,
        dir: &Path,
    ) -> Result<Deployment, BenchError> {
        std::fs::create_dir_all(dir)?;
        let mut deployment = Deployment {
            product,
            members: Vec::new(),
        };
        if options.ensemble == 1 {
            let member = match product {
                Product::ZooKeeper => start_standalone_zookeeper(options, dir)?,
                Product::Zinc => start_standalone_zinc(options, dir)?,
            };
            deployment.members.push(member);
        } else {
            let ports = ensemble_ports(options.ensemble)?;
            for id in 1..=ports.len() {
                let member = start_member(product, options, dir, id, &ports)?;
                deployment.members.push(member);
            }
        }
        deployment.wait_serving()?;
        Ok(deployment)
    }

    /// "ZooKeeper" standalone, "ZooKeeper ensemble" otherwise.
    pub fn label(&self) -> String {
        if self.members.len() == 1 {
            self.product.name().to_owned()
        } else {
            format!("{} ensemble", self.product.name())
        }
    }

    /// The client addresses, comma separated (as `zinc-bench --servers` takes them).
    pub fn servers(&self) -> String {
        let addresses: Vec<String> = self.members.iter().map(|m| m.address.to_string()).collect();
        addresses.join(",")
    }

    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.child.id()).collect()
    }

    /// Each member's peak resident memory (VmHWM), in member order.
    pub fn peak_rss_kib(&self) -> Result<Vec<u64>, BenchError> {
        let mut peaks = Vec::new();
        for member in &self.members {
            peaks.push(proc_stats::usage(member.child.id())?.peak_rss_kib);
        }
        Ok(peaks)
    }

    /// Each member's mode as `srvr` tells it now, e.g. "1 follower, 2 leader, 3 follower"
    /// ("standalone" for one server; "-" for a member that does not serve).
    pub fn roles(&self) -> String {
        let modes = self.modes();
        if let [mode] = modes.as_slice() {
            return mode.clone().unwrap_or_else(|| "-".to_owned());
        }
        let roles: Vec<String> = modes
            .iter()
            .enumerate()
            .map(|(index, mode)| format!("{} {}", index + 1, mode.as_deref().unwrap_or("-")))
            .collect();
        roles.join(", ")
    }

    fn modes(&self) -> Vec<Option<String>> {
        self.members
            .iter()
            .map(|member| mode(&four_letter_word(member.address, "srvr")))
            .collect()
    }

    /// Waits until every member serves: `srvr` shows a mode only then (ZooKeeper answers
    /// `ruok` earlier, and a member without a leader answers "not currently serving requests").
    fn wait_serving(&mut self) -> Result<(), BenchError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let modes = self.modes();
            if serves(&modes) {
                eprintln!("[{}] serving: {}", self.label(), self.roles());
                return Ok(());
            }
            for member in &mut self.members {
                member.check_running()?;
            }
            if Instant::now() > deadline {
                return Err(BenchError::Invalid(format!(
                    "{} did not serve on {} within {READY_TIMEOUT:?} (modes: {modes:?})",
                    self.label(),
                    self.servers()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The mode in a `srvr` answer ("leader", "follower", "standalone"), if it has one.
fn mode(srvr: &str) -> Option<String> {
    srvr.lines()
        .find_map(|line| line.strip_prefix("Mode: "))
        .map(|mode| mode.trim().to_owned())
}

/// Whether a deployment with these members' modes serves: one server with any mode, or an
/// ensemble whose members all follow one leader.
fn serves(modes: &[Option<String>]) -> bool {
    if let [mode] = modes {
        return mode.is_some();
    }
    let count = |wanted: &str| {
        modes
            .iter()
            .filter(|m| m.as_deref() == Some(wanted))
            .count()
    };
    count("leader") == 1 && count("leader") + count("follower") == modes.len()
}

/// Ports nothing listens on right now, all distinct: every listener is held until all are
/// bound.
pub fn free_ports(count: usize) -> Result<Vec<u16>, BenchError> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

/// Client, quorum and election ports for every member of an ensemble of `size`.
fn ensemble_ports(size: usize) -> Result<Vec<MemberPorts>, BenchError> {
    let ports = free_ports(3 * size)?;
    Ok(ports
        .chunks_exact(3)
        .map(|chunk| MemberPorts {
            client: chunk[0],
            quorum: chunk[1],
            election: chunk[2],
        })
        .collect())
}

/// The zoo.cfg both products' settings follow: ticks of 2 s, no connection limit, every
/// four-letter word, no admin server; with `members`, the `server.N` lines of an ensemble
/// (member N at index N - 1).
pub fn zoo_cfg(data_dir: &Path, port: u16, force_sync: &str, members: &[MemberPorts]) -> String {
    let mut cfg = format!(
        "tickTime={TICK_TIME_MS}\ninitLimit={INIT_LIMIT_TICKS}\nsyncLimit={SYNC_LIMIT_TICKS}\n\
         dataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n\
         4lw.commands.whitelist=*\nadmin.enableServer=false\nforceSync={force_sync}\n",
        data_dir.display()
    );
    for (index, member) in members.iter().enumerate() {
        cfg.push_str(&format!(
            "server.{}=127.0.0.1:{}:{}\n",
            index + 1,
            member.quorum,
            member.election
        ));
    }
    cfg
}

/// `java ... QuorumPeerMain CONFIG`, as Debian's zkServer.sh runs it, with the heap limit.
fn zookeeper_command(options: &CompareOptions, config: &Path) -> Command {
    let mut java = Command::new("java");
    java.arg(format!("-Xmx{}", options.zookeeper_heap))
        .args(["-cp", &options.zookeeper_classpath])
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
        .arg(config);
    java
}

fn spawn(mut command: Command, what: &str) -> Result<Child, BenchError> {
    command
        .spawn()
        .map_err(|error| BenchError::Invalid(format!("cannot start {what}: {error}")))
}

fn start_standalone_zookeeper(
    options: &CompareOptions,
    dir: &Path,
) -> Result<ServerProcess, BenchError> {
    let port = free_ports(1)?[0];
    let data = dir.join("zookeeper-data");
    std::fs::create_dir_all(&data)?;
    let config = dir.join("zoo.cfg");
    let cfg = zoo_cfg(&data, port, &options.zookeeper_force_sync, &[]);
    std::fs::write(&config, cfg)?;
    let mut command = zookeeper_command(options, &config);
    command
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(ServerProcess {
        name: Product::ZooKeeper.name().to_owned(),
        child: spawn(command, "java")?,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        log: None,
    })
}

fn start_standalone_zinc(
    options: &CompareOptions,
    dir: &Path,
) -> Result<ServerProcess, BenchError> {
    let port = free_ports(1)?[0];
    let data = dir.join("zinc-data");
    std::fs::create_dir_all(&data)?;
    let mut command = Command::new(&options.zinc);
    command
        .args(["--port", &port.to_string()])
        .arg("--data-dir")
        .arg(&data)
        .args(["--four-letter-words", "*"])
        .args(["--tick-time", &TICK_TIME_MS.to_string()])
        .args(["--max-client-cnxns", "0"])
        .args(options.zinc_args.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(ServerProcess {
        name: Product::Zinc.name().to_owned(),
        child: spawn(command, &options.zinc.display().to_string())?,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        log: None,
    })
}

/// Starts member `id` (1-based) of an ensemble in `dir/serverN/`: `data/` (the dataDir, with
/// `myid`), `zoo.cfg` and `server.log`; does not wait for it.
fn start_member(
    product: Product,
    options: &CompareOptions,
    dir: &Path,
    id: usize,
    members: &[MemberPorts],
) -> Result<ServerProcess, BenchError> {
    let member_dir = dir.join(format!("server{id}"));
    let data = member_dir.join("data");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("myid"), format!("{id}\n"))?;
    let config = member_dir.join("zoo.cfg");
    let client_port = members[id - 1].client;
    let cfg = zoo_cfg(&data, client_port, &options.zookeeper_force_sync, members);
    std::fs::write(&config, cfg)?;
    let log_path = member_dir.join("server.log");
    let log = File::create(&log_path)?;
    let (mut command, what) = match product {
        Product::ZooKeeper => (zookeeper_command(options, &config), "java".to_owned()),
        Product::Zinc => {
            let mut zinc = Command::new(&options.zinc);
            zinc.arg("--config")
                .arg(&config)
                .args(options.zinc_args.split_whitespace());
            (zinc, options.zinc.display().to_string())
        }
    };
    command
        .current_dir(&member_dir)
        .stdout(log.try_clone()?)
        .stderr(log);
    Ok(ServerProcess {
        name: format!("{} server {id}", product.name()),
        child: spawn(command, &what)?,
        address: SocketAddr::from(([127, 0, 0, 1], client_port)),
        log: Some(log_path),
    })
}

/// CPU time of several processes together, or `None` if one cannot be read.
pub fn cpu_us_sum(pids: &[u32]) -> Option<u64> {
    pids.iter()
        .map(|&pid| proc_stats::usage(pid).ok().map(|usage| usage.cpu_us))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Vec<MemberPorts> {
        (0..3)
            .map(|index| MemberPorts {
                client: 3000 + index,
                quorum: 4000 + index,
                election: 5000 + index,
            })
            .collect()
    }

    #[test]
    fn zoo_cfg_is_equivalent_to_zincs_flags() {
        let cfg = zoo_cfg(Path::new("/d"), 2999, "yes", &[]);
        assert!(cfg.contains("clientPort=2999\n"));
        assert!(cfg.contains("tickTime=2000\n"));
        assert!(cfg.contains("maxClientCnxns=0\n"));
        assert!(cfg.contains("forceSync=yes\n"));
        assert!(!cfg.contains("server."), "standalone: {cfg}");
    }

    #[test]
    fn ensemble_zoo_cfg_names_every_member_by_its_ports() {
        let cfg = zoo_cfg(Path::new("/e/server2/data"), 3001, "yes", &ports());
        let expected = "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/e/server2/data\n\
                        clientPort=3001\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n\
                        4lw.commands.whitelist=*\nadmin.enableServer=false\nforceSync=yes\n\
                        server.1=127.0.0.1:4000:5000\nserver.2=127.0.0.1:4001:5001\n\
                        server.3=127.0.0.1:4002:5002\n";
        assert_eq!(cfg, expected);
    }

    #[test]
    fn ensemble_ports_are_distinct() {
        let members = ensemble_ports(3).expect("free ports");
        assert_eq!(members.len(), 3);
        let mut all: Vec<u16> = members
            .iter()
            .flat_map(|m| [m.client, m.quorum, m.election])
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 9);
    }

    #[test]
    fn modes_come_from_srvr() {
        let srvr = "Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nMode: follower\n";
        assert_eq!(mode(srvr).as_deref(), Some("follower"));
        assert_eq!(
            mode("This ZooKeeper instance is not currently serving requests\n"),
            None
        );
        assert_eq!(mode(""), None);
    }

    #[test]
    fn an_ensemble_serves_once_all_follow_one_leader() {
        let modes = |list: &[Option<&str>]| -> Vec<Option<String>> {
            list.iter().map(|m| m.map(str::to_owned)).collect()
        };
        assert!(serves(&modes(&[Some("standalone")])));
        assert!(!serves(&modes(&[None])));
        assert!(serves(&modes(&[
            Some("follower"),
            Some("leader"),
            Some("follower")
        ])));
        assert!(!serves(&modes(&[Some("follower"), Some("leader"), None])));
        assert!(!serves(&modes(&[
            Some("leader"),
            Some("leader"),
            Some("follower")
        ])));
        assert!(!serves(&modes(&[
            Some("follower"),
            Some("follower"),
            Some("follower")
        ])));
    }
}
