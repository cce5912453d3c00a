//! Server configuration: defaults, a ZooKeeper `zoo.cfg` file, and command-line overrides.
//!
//! `zinc` alone runs with the embedded defaults (127.0.0.1:2181, data in `./zinc-data`).
//! `zinc --config zoo.cfg` reads ZooKeeper's keys plus Zinc's own `zinc.*` keys; flags override
//! the file. Keys Zinc does not know are reported, never ignored silently.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Check(String),
}

/// Everything the server needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub tick_time_ms: u32,
    pub init_limit_ticks: u32,
    pub sync_limit_ticks: u32,
    pub data_dir: PathBuf,
    pub data_log_dir: PathBuf,
    pub client_address: SocketAddr,
    /// Connections allowed from one IP address; 0 means no limit.
    pub max_client_connections_per_ip: u32,
    pub session_timeout_ms_min: u32,
    pub session_timeout_ms_max: u32,
    /// Largest frame accepted from a client (`jute.maxbuffer`).
    pub frame_bytes_max: usize,
    /// Enabled four-letter words; `None` means all of them (`*`).
    pub four_letter_words: Option<Vec<String>>,
    /// Snapshots kept (`autopurge.snapRetainCount`, at least 3 as in ZooKeeper); the log is
    /// purged up to the oldest one kept after every snapshot.
    pub snap_retain_count: u32,
    pub purge_interval_hours: u32,
    /// A snapshot is taken after about this many txns (`snapCount`; each period is drawn in
    /// [half, full)).
    pub snap_txn_count: u64,
    /// ... or this many bytes of log (`snapSizeLimitInKb`).
    pub snap_log_bytes: u64,
    /// Size of each pre-allocated log segment (`preAllocSize`, in KiB there).
    pub wal_segment_bytes: u64,
    /// Least time between the starts of two small group commits, in microseconds
    /// (`zinc.commitIntervalMicros`; see `WalConfig::commit_interval`).
    pub commit_interval_us: u32,
    /// Records waiting that start a group commit at once (`zinc.commitRecords`).
    pub commit_records: usize,
    /// TTL and container nodes (`extendedTypesEnabled`).
    pub extended_types_enabled: bool,
    /// How often empty containers and expired TTL nodes are looked for and removed.
    pub reap_interval_ms: u32,
    /// `server.N=...` lines as written; [`Config::peers`] parses them. Two or more make an
    /// ensemble.
    pub servers: BTreeMap<u64, String>,
    pub server_id: u64,
    /// Super user, as `zookeeper.DigestAuthenticationProvider.superDigest`: `user:base64(sha1)`.
    pub super_digest: Option<String>,
    pub shard_count: usize,
    pub pin_cores: bool,
    /// Run the first shard on the Zab core's executor (`zinc.coreWithShard`); by default on
    /// machines with 2 CPUs or fewer, where handing each batch between threads costs more than
    /// the batch's work.
    pub core_with_shard: bool,
    /// Per-session limit on requests read but not yet answered; beyond it the connection is not
    /// read until replies drain.
    pub session_requests_in_flight_max: usize,
    /// Bytes of replies queued for one connection before it stops being read.
    pub connection_outbound_bytes_max: usize,
}

/// What the configuration file said that Zinc did not use, for the operator to see.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ConfigReport {
    /// Keys Zinc does not know at all.
    pub unknown_keys: Vec<String>,
    /// ZooKeeper keys Zinc accepts but has no use for.
    pub ignored_keys: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        let tick_time_ms = 2000;
        Config {
            tick_time_ms,
            init_limit_ticks: 10,
            sync_limit_ticks: 5,
            data_dir: PathBuf::from("zinc-data"),
            data_log_dir: PathBuf::from("zinc-data"),
            client_address: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2181),
            max_client_connections_per_ip: 60,
            session_timeout_ms_min: 2 * tick_time_ms,
            session_timeout_ms_max: 20 * tick_time_ms,
            frame_bytes_max: 0xfffff,
            four_letter_words: Some(vec!["srvr".to_owned()]),
            snap_retain_count: 3,
            snap_txn_count: 100_000,
            snap_log_bytes: 4 << 30,
            wal_segment_bytes: 64 << 20,
            commit_interval_us: COMMIT_INTERVAL_US,
            commit_records: 4,
            purge_interval_hours: 0,
            extended_types_enabled: true,
            reap_interval_ms: 60_000,
            servers: BTreeMap::new(),
            server_id: 0,
            super_digest: None,
            shard_count: default_shard_count(),
            core_with_shard: cpu_count() <= 2,
            pin_cores: false,
            session_requests_in_flight_max: 1000,
            connection_outbound_bytes_max: 4 << 20,
        }
    }
}

fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One shard core per CPU beyond the Zab core, at least one.
fn default_shard_count() -> usize {
    cpu_count().saturating_sub(1).max(1)
}

/// Default least time between the starts of two small group commits, in microseconds.
const COMMIT_INTERVAL_US: u32 = 500;

/// Largest `zinc.commitIntervalMicros`: a write waits at most this long for company.
const COMMIT_INTERVAL_US_MAX: u32 = 100_000;

/// ZooKeeper keeps at least this many snapshots.
const SNAP_RETAIN_COUNT_MIN: u32 = 3;

/// Smallest `preAllocSize` in KiB: a log segment holds at least one largest group commit.
const WAL_SEGMENT_KIB_MIN: u64 = 4096;

/// ZooKeeper keys that Zinc accepts and does not use.
const IGNORED_ZOOKEEPER_KEYS: &[&str] = &[
    "admin.enableServer",
    "admin.serverPort",
    "admin.serverAddress",
    "standaloneEnabled",
    "reconfigEnabled",
    "globalOutstandingLimit",
    "syncEnabled",
    "leaderServes",
    "cnxTimeout",
    "electionAlg",
    "quorumListenOnAllIPs",
    "metricsProvider.className",
    "metricsProvider.httpPort",
    "forceSync",
    "dynamicConfigFile",
    "localSessionsEnabled",
    "localSessionsUpgradingEnabled",
    "clientPortListenBacklog",
    "secureClientPort",
    "authProvider.1",
    "audit.enable",
    "digest.enabled",
];

impl Config {
    /// Reads `path` (ZooKeeper `zoo.cfg` syntax) over the defaults.
    pub fn from_file(path: &Path) -> Result<(Config, ConfigReport), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::default();
        let mut report = ConfigReport::default();
        let mut session_min_set = false;
        let mut session_max_set = false;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let invalid = |message: String| ConfigError::Invalid {
                path: path.to_owned(),
                line: index + 1,
                message,
            };
            let Some((key, value)) = line.split_once('=') else {
                return Err(invalid(format!("expected key=value, found {line:?}")));
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "minSessionTimeout" => session_min_set = true,
                "maxSessionTimeout" => session_max_set = true,
                _ => {}
            }
            config
                .set(key, value, &mut report)
                .map_err(|message| invalid(format!("{key}: {message}")))?;
        }
        if !session_min_set {
            config.session_timeout_ms_min = 2 * config.tick_time_ms;
        }
        if !session_max_set {
            config.session_timeout_ms_max = 20 * config.tick_time_ms;
        }
        config.read_myid();
        Ok((config, report))
    }

    /// `myid` in the data directory names this server in an ensemble.
    fn read_myid(&mut self) {
        if let Ok(text) = std::fs::read_to_string(self.data_dir.join("myid")) {
            if let Ok(id) = text.trim().parse() {
                self.server_id = id;
            }
        }
    }

    /// Applies one `key=value`; the error says what is wrong with the value.
    fn set(&mut self, key: &str, value: &str, report: &mut ConfigReport) -> Result<(), String> {
        match key {
            "tickTime" => self.tick_time_ms = parse_positive(value)?,
            "initLimit" => self.init_limit_ticks = parse_positive(value)?,
            "syncLimit" => self.sync_limit_ticks = parse_positive(value)?,
            "dataDir" => {
                self.data_dir = PathBuf::from(value);
                self.data_log_dir = PathBuf::from(value);
            }
            "dataLogDir" => self.data_log_dir = PathBuf::from(value),
            "clientPort" => self.client_address.set_port(parse_num(value)?),
            "clientPortAddress" => {
                let ip: IpAddr = value
                    .parse()
                    .map_err(|_| format!("bad address {value:?}"))?;
                self.client_address.set_ip(ip);
            }
            "maxClientCnxns" => self.max_client_connections_per_ip = parse_num(value)?,
            "minSessionTimeout" => self.session_timeout_ms_min = parse_positive(value)?,
            "maxSessionTimeout" => self.session_timeout_ms_max = parse_positive(value)?,
            "jute.maxbuffer" => self.frame_bytes_max = parse_positive::<u32>(value)? as usize,
            "4lw.commands.whitelist" => self.four_letter_words = parse_whitelist(value),
            "autopurge.snapRetainCount" => {
                // ZooKeeper raises a smaller count to 3.
                self.snap_retain_count = parse_positive::<u32>(value)?.max(SNAP_RETAIN_COUNT_MIN)
            }
            "snapCount" => self.snap_txn_count = parse_positive::<u64>(value)?.max(2),
            "snapSizeLimitInKb" => {
                self.snap_log_bytes = parse_positive::<u64>(value)?.saturating_mul(1024).max(2)
            }
            "preAllocSize" => {
                let kib: u64 = parse_positive(value)?;
                if kib < WAL_SEGMENT_KIB_MIN {
                    return Err(format!(
                        "must be at least {WAL_SEGMENT_KIB_MIN} (KiB): a group commit must fit in \
                         a log segment, not {value:?}"
                    ));
                }
                // Whole blocks: segments are written with O_DIRECT.
                self.wal_segment_bytes = kib.saturating_mul(1024).next_multiple_of(4096)
            }
            "autopurge.purgeInterval" => self.purge_interval_hours = parse_num(value)?,
            "extendedTypesEnabled" => self.extended_types_enabled = parse_bool(value)?,
            "znode.container.checkIntervalMs" => self.reap_interval_ms = parse_positive(value)?,
            "zookeeper.DigestAuthenticationProvider.superDigest" | "zinc.superDigest" => {
                self.super_digest = Some(value.to_owned())
            }
            "zinc.shards" => self.shard_count = parse_positive::<u32>(value)? as usize,
            "zinc.pinCores" => self.pin_cores = parse_bool(value)?,
            "zinc.coreWithShard" => self.core_with_shard = parse_bool(value)?,
            "zinc.commitIntervalMicros" => {
                let micros = parse_num::<u32>(value)?;
                if micros > COMMIT_INTERVAL_US_MAX {
                    return Err(format!(
                        "must be at most {COMMIT_INTERVAL_US_MAX} (microseconds), not {value:?}"
                    ));
                }
                self.commit_interval_us = micros
            }
            "zinc.commitRecords" => self.commit_records = parse_positive::<u32>(value)? as usize,
            "zinc.sessionRequestsInFlightMax" => {
                self.session_requests_in_flight_max = parse_positive::<u32>(value)? as usize
            }
            _ if key.starts_with("server.") => {
                let id = key["server.".len()..]
                    .parse()
                    .map_err(|_| format!("bad server id in {key:?}"))?;
                self.servers.insert(id, value.to_owned());
            }
            _ if IGNORED_ZOOKEEPER_KEYS.contains(&key) || key.starts_with("group.") => {
                report.ignored_keys.push(key.to_owned())
            }
            _ if key.starts_with("weight.") || key.starts_with("ssl.") => {
                report.ignored_keys.push(key.to_owned())
            }
            _ => report.unknown_keys.push(key.to_owned()),
        }
        Ok(())
    }

    /// Where snapshots are kept: `snap/` in the data directory.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.data_dir.join("snap")
    }

    /// Checks relations between values once every source has been applied.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.session_timeout_ms_min > self.session_timeout_ms_max {
            return Err(ConfigError::Check(format!(
                "minSessionTimeout {} is larger than maxSessionTimeout {}",
                self.session_timeout_ms_min, self.session_timeout_ms_max
            )));
        }
        if self.shard_count == 0 || self.shard_count > 256 {
            return Err(ConfigError::Check(format!(
                "zinc.shards must be within 1..=256, not {}",
                self.shard_count
            )));
        }
        if self.server_id > 254 {
            return Err(ConfigError::Check(format!(
                "server id {} does not fit the session id's high byte (at most 254)",
                self.server_id
            )));
        }
        Ok(())
    }

    /// The session timeout a client asking for `requested_ms` gets (within the configured
    /// minimum and maximum).
    pub fn session_timeout_ms(&self, requested_ms: i32) -> u32 {
        crate::session::negotiate_timeout_ms(
            requested_ms,
            self.session_timeout_ms_min,
            self.session_timeout_ms_max,
        )
    }

    /// Whether this server runs in an ensemble (two or more `server.N` lines), as opposed to
    /// standalone. One line alone is standalone, as in ZooKeeper.
    pub fn is_ensemble(&self) -> bool {
        self.servers.len() > 1
    }

    /// The ensemble's members from the `server.N` lines, checked: this server (`myid`) among
    /// them, addresses that resolve, at least one participant.
    pub fn peers(&self) -> Result<Vec<PeerSpec>, ConfigError> {
        let mut peers = Vec::new();
        for (id, spec) in &self.servers {
            let peer = parse_peer(*id, spec)
                .map_err(|message| ConfigError::Check(format!("server.{id}={spec}: {message}")))?;
            peers.push(peer);
        }
        if !peers.iter().any(|peer| peer.id == self.server_id) {
            return Err(ConfigError::Check(format!(
                "myid {} is not among the server.N lines ({})",
                self.server_id,
                peers
                    .iter()
                    .map(|peer| peer.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if peers.iter().all(|peer| peer.observer) {
            return Err(ConfigError::Check(
                "every server.N line is an observer: an ensemble needs participants".into(),
            ));
        }
        Ok(peers)
    }

    /// Whether a four-letter word is enabled (`4lw.commands.whitelist`).
    pub fn four_letter_word_enabled(&self, word: &str) -> bool {
        match &self.four_letter_words {
            None => true,
            Some(words) => words.iter().any(|w| w == word),
        }
    }
}

/// One member of the ensemble, from `server.N=host:quorumPort:electionPort[:role][;client]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub id: u64,
    /// Where the member listens for the other servers (Zab and election traffic both).
    pub quorum_address: SocketAddr,
    /// Accepted for compatibility with ZooKeeper's format; Zinc's election messages travel
    /// over the quorum port.
    pub election_port: u16,
    pub observer: bool,
}

fn parse_peer(id: u64, spec: &str) -> Result<PeerSpec, String> {
    use std::net::ToSocketAddrs;
    // The client address after ';' is this member's own business (clientPort covers it).
    let spec = spec.split(';').next().unwrap_or_default().trim();
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() < 3 || parts.len() > 4 {
        return Err("expected host:quorumPort:electionPort[:participant|observer]".into());
    }
    let port = |text: &str, what: &str| -> Result<u16, String> {
        text.parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("{what} {text:?} is not a port number"))
    };
    let quorum_port = port(parts[1], "quorum port")?;
    let election_port = port(parts[2], "election port")?;
    let observer = match parts.get(3).copied() {
        None | Some("participant") => false,
        Some("observer") => true,
        Some(other) => return Err(format!("unknown role {other:?}")),
    };
    let quorum_address = (parts[0], quorum_port)
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {:?}: {error}", parts[0]))?
        .next()
        .ok_or_else(|| format!("{:?} resolves to no address", parts[0]))?;
    Ok(PeerSpec {
        id,
        quorum_address,
        election_port,
        observer,
    })
}

fn parse_num<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("not a number: {value:?}"))
}

fn parse_positive<T: std::str::FromStr + PartialOrd + Default>(value: &str) -> Result<T, String> {
    let number: T = parse_num(value)?;
    if number <= T::default() {
        return Err(format!("must be positive: {value:?}"));
    }
    Ok(number)
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        _ => Err(format!("not a boolean: {value:?}")),
    }
}

fn parse_whitelist(value: &str) -> Option<Vec<String>> {
    let words: Vec<String> = value
        .split(',')
        .map(|word| word.trim().to_owned())
        .filter(|word| !word.is_empty())
        .collect();
    if words.iter().any(|word| word == "*") {
        return None;
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<(Config, ConfigReport), ConfigError> {
        let dir = std::env::temp_dir().join(format!("zinc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!(
            "{:x}.cfg",
            text.len() * 31 + text.as_bytes()[0] as usize
        ));
        std::fs::write(&path, text).expect("write cfg");
        let result = Config::from_file(&path);
        let _ = std::fs::remove_file(&path);
        result
    }

    #[test]
    fn zoo_cfg_keys_are_read_and_session_bounds_follow_tick_time() {
        let (config, report) = load(
            "# comment\ntickTime=1000\nclientPort=2999\ndataDir=/tmp/zd\n\
             4lw.commands.whitelist=ruok, stat\nmaxClientCnxns=5\nadmin.enableServer=false\n\
             mystery=1\nzinc.shards=3\nzinc.commitIntervalMicros=0\nzinc.commitRecords=7\n",
        )
        .expect("valid config");
        assert_eq!(config.tick_time_ms, 1000);
        assert_eq!(config.session_timeout_ms_min, 2000);
        assert_eq!(config.session_timeout_ms_max, 20000);
        assert_eq!(config.client_address.port(), 2999);
        assert_eq!(config.data_log_dir, PathBuf::from("/tmp/zd"));
        assert!(config.four_letter_word_enabled("stat"));
        assert!(!config.four_letter_word_enabled("mntr"));
        assert_eq!(config.max_client_connections_per_ip, 5);
        assert_eq!(config.shard_count, 3);
        assert_eq!(config.commit_interval_us, 0);
        assert_eq!(config.commit_records, 7);
        assert_eq!(report.unknown_keys, vec!["mystery".to_owned()]);
        assert_eq!(report.ignored_keys, vec!["admin.enableServer".to_owned()]);
    }

    #[test]
    fn bad_values_name_the_line() {
        let error = load("tickTime=2000\nclientPort=abc\n").expect_err("invalid");
        let message = error.to_string();
        assert!(message.contains(":2: clientPort"), "{message}");
        let error = load("just a line\n").expect_err("invalid");
        assert!(error.to_string().contains(":1: expected key=value"));
        let error = load("zinc.commitIntervalMicros=200000\n").expect_err("too long");
        assert!(error.to_string().contains("at most 100000"), "{error}");
    }

    #[test]
    fn whitelist_star_enables_everything() {
        let (config, _) = load("4lw.commands.whitelist=*\n").expect("valid");
        assert!(config.four_letter_word_enabled("dump"));
        let (config, _) = load("minSessionTimeout=9000\nmaxSessionTimeout=3000\n").expect("parses");
        assert!(config.check().is_err());
    }
}
