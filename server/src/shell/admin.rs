//! Four-letter words on the client port, printed in ZooKeeper's formats so existing monitoring
//! keeps working. Connections and watches live on every shard: the words that list them are
//! printed from a `ShardView` of each shard, the asking shard's first.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use zinc_protocol::fourlw::FourLetterWord;
use zinc_protocol::{OpCode, SessionId};

use crate::shell::shard::{Conn, Shard};
use crate::shell::stats::Mode;

/// The version line monitoring tools parse.
pub const VERSION: &str = concat!("3.9.0-zinc-", env!("CARGO_PKG_VERSION"), ", built on zinc");

/// What one shard holds for the words that list connections and watches.
pub(crate) struct ShardView {
    /// Per connection: `stat`'s line and `cons`'s line.
    clients: Vec<String>,
    connections: Vec<String>,
    /// Per connection: `dump`'s expiry time and item.
    dump_connections: Vec<(u64, String)>,
    watch_count: usize,
    data_watch_count: usize,
    data_by_session: Vec<(SessionId, Vec<String>)>,
    data_by_path: Vec<(String, Vec<SessionId>)>,
}

/// Whether printing `word` needs every shard's view (and whether it resets connections).
pub(crate) fn needs_views(word: FourLetterWord) -> Option<bool> {
    match word.name() {
        "crst" => Some(true),
        "stat" | "cons" | "mntr" | "wchs" | "wchc" | "wchp" | "dump" => Some(false),
        _ => None,
    }
}

/// This shard's view; `reset` first resets its connections' statistics (`crst`).
pub(crate) fn shard_view(shard: &Shard, reset: bool) -> ShardView {
    let connections = shard.connections.borrow();
    if reset {
        connections.values().for_each(|conn| reset_connection(conn));
    }
    let watches = shard.watches.borrow();
    ShardView {
        clients: connections.values().map(|conn| client_line(conn)).collect(),
        connections: connections
            .values()
            .map(|conn| connection_line(conn))
            .collect(),
        dump_connections: dump_connections(shard),
        watch_count: watches.watch_count(),
        data_watch_count: watches.data_watch_count(),
        data_by_session: watches.data_by_session(),
        data_by_path: watches.data_by_path(),
    }
}

/// The reply to a four-letter word (the connection is closed after it). `views` holds every
/// shard's view when `needs_views` asked for them.
pub(crate) fn four_letter_word(shard: &Shard, word: FourLetterWord, views: &[ShardView]) -> String {
    let name = word.name();
    if !shard.config.four_letter_word_enabled(name) {
        return format!("{name} is not executed because it is not in the whitelist.\n");
    }
    let mut out = String::new();
    let serving = shard.stats.mode() != Mode::NotServing;
    if !serving && !matches!(name, "ruok" | "conf" | "envi" | "isro" | "dirs") {
        out.push_str("This ZooKeeper instance is not currently serving requests\n");
        return out;
    }
    match name {
        "ruok" => out.push_str("imok"),
        "srvr" => server_summary(shard, &mut out, &[]),
        "stat" => server_summary(shard, &mut out, views),
        "conf" => configuration(shard, &mut out),
        "cons" => connections(views, &mut out),
        "crst" => out.push_str("Connection stats reset.\n"),
        "srst" => {
            shard.stats.reset();
            out.push_str("Server stats reset.\n");
        }
        "envi" => environment(&mut out),
        "mntr" => monitoring(shard, views, &mut out),
        "wchs" => watch_summary(views, &mut out),
        "wchc" => watches_by_session(views, &mut out),
        "wchp" => watches_by_path(views, &mut out),
        "dump" => dump(shard, views, &mut out),
        "isro" => out.push_str("rw"),
        "dirs" => directories(shard, &mut out),
        _ => out.push_str(&format!("{name} is not supported by Zinc.\n")),
    }
    out
}

/// Counts taken from the tree root the shard holds, as ZooKeeper counts them.
struct TreeCounts {
    /// ZooKeeper's node table holds the root under both "" and "/", so it counts it twice.
    nodes: u64,
    ephemerals: usize,
    sessions: usize,
    /// Sum of path lengths and data lengths (`zk_approximate_data_size`).
    data_bytes: u64,
}

fn tree_counts(shard: &Shard) -> TreeCounts {
    let root = shard.root.borrow().clone();
    let sessions = root.sessions();
    let ephemerals = sessions
        .iter()
        .map(|(session, _)| root.ephemerals(*session, "/").len())
        .sum();
    let mut data_bytes = 0u64;
    root.for_each_node(|path, node| {
        data_bytes += (path.len() + node.data().map_or(0, <[u8]>::len)) as u64;
    });
    TreeCounts {
        nodes: root.node_count() + 1,
        ephemerals,
        sessions: sessions.len(),
        data_bytes,
    }
}

/// A double as Java prints one after rounding to 4 decimals (`0.0`, `1.5`, `23.0323`), the way
/// ZooKeeper prints average latencies.
fn java_double(value: f64) -> String {
    let rounded = (value * 10_000.0).round() / 10_000.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.1}")
    } else {
        format!("{rounded}")
    }
}

/// `[1]` while the connection is read, `[0]` once it is not (a four-letter-word connection).
fn interest(conn: &Conn) -> &'static str {
    if conn.closing.get() {
        "0"
    } else {
        "1"
    }
}

/// The start of a connection's line, as `stat` and `cons` print it.
fn brief_connection(out: &mut String, conn: &Conn) {
    let _ = write!(
        out,
        " /{}[{}](queued={},recved={},sent={}",
        conn.peer,
        interest(conn),
        conn.queued(),
        conn.packets_received.get(),
        conn.packets_sent.get()
    );
}

fn client_line(conn: &Conn) -> String {
    let mut line = String::new();
    brief_connection(&mut line, conn);
    line.push_str(")\n");
    line
}

/// `srvr` (no views) or `stat` (with every shard's client lines).
fn server_summary(shard: &Shard, out: &mut String, views: &[ShardView]) {
    let view = shard.stats.view();
    let _ = writeln!(out, "Zookeeper version: {VERSION}");
    if !views.is_empty() {
        out.push_str("Clients:\n");
        views
            .iter()
            .flat_map(|view| &view.clients)
            .for_each(|line| out.push_str(line));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Latency min/avg/max: {}/{}/{}",
        view.latency_min_ms,
        java_double(view.latency_avg_ms),
        view.latency_max_ms
    );
    let _ = writeln!(out, "Received: {}", view.packets_received);
    let _ = writeln!(out, "Sent: {}", view.packets_sent);
    let _ = writeln!(out, "Connections: {}", view.connections);
    let _ = writeln!(out, "Outstanding: 0");
    let _ = writeln!(out, "Zxid: 0x{:x}", view.last_zxid);
    let _ = writeln!(out, "Mode: {}", shard.stats.mode().name());
    let _ = writeln!(out, "Node count: {}", tree_counts(shard).nodes);
}

fn configuration(shard: &Shard, out: &mut String) {
    let config = &shard.config;
    let _ = writeln!(out, "clientPort={}", config.client_address.port());
    let _ = writeln!(out, "secureClientPort=-1");
    let _ = writeln!(out, "dataDir={}", config.data_dir.display());
    let _ = writeln!(out, "dataDirSize={}", dir_size(&config.data_dir));
    let _ = writeln!(out, "dataLogDir={}", config.data_log_dir.display());
    let _ = writeln!(out, "dataLogSize={}", dir_size(&config.data_log_dir));
    let _ = writeln!(out, "tickTime={}", config.tick_time_ms);
    let _ = writeln!(
        out,
        "maxClientCnxns={}",
        config.max_client_connections_per_ip
    );
    let _ = writeln!(out, "minSessionTimeout={}", config.session_timeout_ms_min);
    let _ = writeln!(out, "maxSessionTimeout={}", config.session_timeout_ms_max);
    let _ = writeln!(out, "clientPortListenBacklog=-1");
    let _ = writeln!(out, "serverId={}", config.server_id);
}

fn connections(views: &[ShardView], out: &mut String) {
    views
        .iter()
        .flat_map(|view| &view.connections)
        .for_each(|line| out.push_str(line));
    out.push('\n');
}

/// A connection's line in `cons`.
fn connection_line(conn: &Conn) -> String {
    let mut out = String::new();
    brief_connection(&mut out, conn);
    if let Some(session) = conn.session.get().filter(|session| session.0 != 0) {
        let stats = &conn.stats;
        let _ = write!(
            out,
            ",sid=0x{:x},lop={},est={},to={}",
            session.0,
            operation_name(conn.last_op.get()),
            stats.established_ms,
            conn.timeout_ms.get()
        );
        if stats.last_cxid.get() >= 0 {
            let _ = write!(out, ",lcxid=0x{:x}", stats.last_cxid.get());
        }
        let _ = write!(
            out,
            ",lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={}",
            conn.last_zxid.get(),
            stats.last_response_ms.get(),
            stats.last_latency_ms.get(),
            stats.latency_min_ms(),
            stats.latency_avg_ms(),
            stats.latency_max_ms.get()
        );
    }
    out.push_str(")\n");
    out
}

/// `crst` for one connection: counters back to their initial values.
fn reset_connection(conn: &Conn) {
    conn.packets_received.set(0);
    conn.packets_sent.set(0);
    conn.last_op.set(None);
    conn.last_zxid.set(-1);
    conn.stats.reset();
}

/// The four-letter operation names `cons` prints as `lop`.
fn operation_name(op: Option<OpCode>) -> &'static str {
    let Some(op) = op else { return "NA" };
    match op {
        OpCode::Ping => "PING",
        OpCode::CreateSession => "SESS",
        OpCode::CloseSession => "CLOS",
        OpCode::Multi => "MULT",
        OpCode::MultiRead => "MLTR",
        OpCode::Create | OpCode::Create2 | OpCode::CreateTtl | OpCode::CreateContainer => "CREA",
        OpCode::Delete | OpCode::DeleteContainer => "DELE",
        OpCode::SetData => "SETD",
        OpCode::Reconfig => "RECO",
        OpCode::SetAcl => "SETA",
        OpCode::Sync => "SYNC",
        OpCode::Check => "CHEC",
        OpCode::Exists => "EXIS",
        OpCode::GetData => "GETD",
        OpCode::SetWatches => "SETW",
        OpCode::SetWatches2 => "STW2",
        OpCode::AddWatch => "ADDW",
        OpCode::GetAcl => "GETA",
        OpCode::GetChildren | OpCode::GetChildren2 => "GETC",
        OpCode::GetAllChildrenNumber => "GETACN",
        OpCode::CheckWatches => "CHKW",
        OpCode::RemoveWatches => "REMW",
        OpCode::WhoAmI => "HOMI",
        OpCode::GetEphemerals => "GETE",
        _ => "NA",
    }
}

/// `envi` with ZooKeeper's keys, less the `java.*` ones; names and values in the JVM's spelling
/// (`os.name=Linux`, `os.arch=amd64`). `os.memory.*` describe the process and the machine: the
/// resident size as `total`, available memory as `free`, physical memory as `max`.
fn environment(out: &mut String) {
    out.push_str("Environment:\n");
    let _ = writeln!(out, "zookeeper.version={VERSION}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let _ = writeln!(out, "host.name={}", host.trim());
    let os_name = match std::env::consts::OS {
        "linux" => "Linux",
        other => other,
    };
    let _ = writeln!(out, "os.name={os_name}");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        other => other,
    };
    let _ = writeln!(out, "os.arch={arch}");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let _ = writeln!(out, "os.version={}", release.trim());
    let (user, home) = user_and_home();
    let _ = writeln!(out, "user.name={user}");
    let _ = writeln!(out, "user.home={home}");
    let dir = std::env::current_dir().unwrap_or_default();
    let _ = writeln!(out, "user.dir={}", dir.display());
    let megabytes = |file: &str, key: &str| proc_kilobytes(file, key) / 1024;
    let _ = writeln!(
        out,
        "os.memory.free={}MB",
        megabytes("/proc/meminfo", "MemAvailable:")
    );
    let _ = writeln!(
        out,
        "os.memory.max={}MB",
        megabytes("/proc/meminfo", "MemTotal:")
    );
    let _ = writeln!(
        out,
        "os.memory.total={}MB",
        megabytes("/proc/self/status", "VmRSS:")
    );
}

/// The process owner's name and home directory, from /etc/passwd.
fn user_and_home() -> (String, String) {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() }.to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() >= 6 && fields[2] == uid)
        .map_or_else(
            || (uid.clone(), String::new()),
            |fields| (fields[0].to_owned(), fields[5].to_owned()),
        )
}

/// A `Key:   123 kB` value from a /proc file, 0 if absent.
fn proc_kilobytes(file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0)
}

fn monitoring(shard: &Shard, views: &[ShardView], out: &mut String) {
    let view = shard.stats.view();
    let tree = tree_counts(shard);
    let watches: usize = views.iter().map(|view| view.watch_count).sum();
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count());
    let rows: Vec<(&str, String)> = vec![
        ("zk_version", VERSION.to_owned()),
        ("zk_server_state", shard.stats.mode().name().to_owned()),
        ("zk_ephemerals_count", tree.ephemerals.to_string()),
        ("zk_num_alive_connections", view.connections.to_string()),
        ("zk_avg_latency", java_double(view.latency_avg_ms)),
        ("zk_min_latency", view.latency_min_ms.to_string()),
        ("zk_max_latency", view.latency_max_ms.to_string()),
        ("zk_outstanding_requests", "0".to_owned()),
        ("zk_znode_count", tree.nodes.to_string()),
        ("zk_global_sessions", tree.sessions.to_string()),
        ("zk_local_sessions", "0".to_owned()),
        ("zk_packets_sent", view.packets_sent.to_string()),
        ("zk_packets_received", view.packets_received.to_string()),
        ("zk_watch_count", watches.to_string()),
        ("zk_approximate_data_size", tree.data_bytes.to_string()),
        ("zk_open_file_descriptor_count", open_fds.to_string()),
        ("zk_max_file_descriptor_count", max_fds().to_string()),
        ("zk_uptime", view.uptime_ms.to_string()),
    ];
    for (key, value) in rows {
        let _ = writeln!(out, "{key}\t{value}");
    }
    if shard.stats.mode() == Mode::Leader {
        // The rows ZooKeeper's leader adds, which ensemble health checks read.
        let [learners, followers, observers] = shard.stats.learners();
        let _ = writeln!(out, "zk_learners\t{learners}");
        let _ = writeln!(out, "zk_synced_followers\t{followers}");
        let _ = writeln!(out, "zk_synced_non_voting_followers\t0");
        let _ = writeln!(out, "zk_synced_observers\t{observers}");
        let _ = writeln!(out, "zk_pending_syncs\t0");
    }
}

fn max_fds() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if result == 0 {
        limit.rlim_cur
    } else {
        0
    }
}

fn watch_summary(views: &[ShardView], out: &mut String) {
    let _ = writeln!(
        out,
        "{} connections watching {} paths\nTotal watches:{}",
        views
            .iter()
            .map(|view| view.data_by_session.len())
            .sum::<usize>(),
        merged_by_path(views).len(),
        views
            .iter()
            .map(|view| view.data_watch_count)
            .sum::<usize>()
    );
}

/// Every shard's `data_by_path`, merged and sorted (a path may be watched on several shards).
fn merged_by_path(views: &[ShardView]) -> BTreeMap<&str, Vec<SessionId>> {
    let mut merged: BTreeMap<&str, Vec<SessionId>> = BTreeMap::new();
    for (path, sessions) in views.iter().flat_map(|view| &view.data_by_path) {
        merged.entry(path).or_default().extend(sessions);
    }
    merged.values_mut().for_each(|sessions| sessions.sort());
    merged
}

fn watches_by_session(views: &[ShardView], out: &mut String) {
    // A session lives on one shard: the lists do not overlap.
    let merged: BTreeMap<SessionId, &Vec<String>> = views
        .iter()
        .flat_map(|view| &view.data_by_session)
        .map(|(session, paths)| (*session, paths))
        .collect();
    for (session, paths) in merged {
        let _ = writeln!(out, "0x{:x}", session.0);
        for path in paths {
            let _ = writeln!(out, "\t{path}");
        }
    }
    out.push('\n');
}

fn watches_by_path(views: &[ShardView], out: &mut String) {
    for (path, sessions) in merged_by_path(views) {
        let _ = writeln!(out, "{path}");
        for session in sessions {
            let _ = writeln!(out, "\t0x{:x}", session.0);
        }
    }
    out.push('\n');
}

/// `dump` in ZooKeeper's layout. The shard does not hold the core's expiry buckets: each
/// session and connection is listed under the time it expires if it goes silent now (its
/// timeout from now, rounded up to a tick), grouped by that time.
fn dump(shard: &Shard, views: &[ShardView], out: &mut String) {
    let root = shard.root.borrow().clone();
    let sessions = root.sessions();
    let tick_ms = u64::from(shard.config.tick_time_ms.max(1));
    out.push_str("SessionTracker dump:\nSession ");
    let session_items = sessions
        .iter()
        .map(|(session, timeout_ms)| {
            let expires_ms = expires_at_ms(tick_ms, u64::try_from(*timeout_ms).unwrap_or(0));
            (expires_ms, format!("0x{session:x}"))
        })
        .collect();
    expiry_sets(out, session_items);
    out.push_str("ephemeral nodes dump:\n");
    let owners: Vec<_> = sessions
        .iter()
        .map(|(session, _)| (*session, root.ephemerals(*session, "/")))
        .filter(|(_, paths)| !paths.is_empty())
        .collect();
    let _ = writeln!(out, "Sessions with Ephemerals ({}):", owners.len());
    for (session, paths) in owners {
        let _ = writeln!(out, "0x{session:x}:");
        for path in paths {
            let _ = writeln!(out, "\t{path}");
        }
    }
    out.push_str("Connections dump:\nConnections ");
    let connection_items = views
        .iter()
        .flat_map(|view| view.dump_connections.iter().cloned())
        .collect();
    expiry_sets(out, connection_items);
}

/// When something with `timeout_ms` expires if it goes silent now, rounded up to a tick.
fn expires_at_ms(tick_ms: u64, timeout_ms: u64) -> u64 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    (now_ms + timeout_ms).div_ceil(tick_ms) * tick_ms
}

/// This shard's connections for `dump`: each under the time it expires if it goes silent now.
fn dump_connections(shard: &Shard) -> Vec<(u64, String)> {
    let tick_ms = u64::from(shard.config.tick_time_ms.max(1));
    shard
        .connections
        .borrow()
        .values()
        .map(|conn| {
            let session = conn.session.get().map_or(0, |s| s.0);
            let timeout_ms = u64::from(conn.timeout_ms.get()).max(tick_ms);
            let expires_ms = expires_at_ms(tick_ms, timeout_ms);
            (
                expires_ms,
                format!("ip: /{} sessionId: 0x{session:x}", conn.peer),
            )
        })
        .collect()
}

/// `Sets (buckets)/(items):` then each bucket, oldest first: `n expire at <date>:` and its items.
fn expiry_sets(out: &mut String, mut items: Vec<(u64, String)>) {
    items.sort();
    let mut buckets: Vec<(u64, Vec<String>)> = Vec::new();
    for (expires_ms, item) in items {
        match buckets.last_mut() {
            Some((last, members)) if *last == expires_ms => members.push(item),
            _ => buckets.push((expires_ms, vec![item])),
        }
    }
    let total: usize = buckets.iter().map(|(_, members)| members.len()).sum();
    let _ = writeln!(out, "Sets ({})/({}):", buckets.len(), total);
    for (expires_ms, members) in buckets {
        let _ = writeln!(
            out,
            "{} expire at {}:",
            members.len(),
            java_date(expires_ms)
        );
        for member in members {
            let _ = writeln!(out, "\t{member}");
        }
    }
}

/// A UTC time as Java's `Date.toString` prints it: `Sun Nov 22 08:00:08 UTC 2026`.
fn java_date(epoch_ms: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = epoch_ms / 1000;
    let days = seconds / 86_400;
    let (year, month, day) = civil_from_days(days);
    let of_day = seconds % 86_400;
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {year}",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn directories(shard: &Shard, out: &mut String) {
    let _ = writeln!(out, "datadir_size: {}", dir_size(&shard.config.data_dir));
    let _ = writeln!(out, "logdir_size: {}", dir_size(&shard.config.data_log_dir));
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_as_java_prints_them() {
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        // 2026-11-22 08:00:08 UTC, a Sunday.
        assert_eq!(java_date(1_795_334_408_000), "Sun Nov 22 08:00:08 UTC 2026");
        // 2024-02-29 23:59:59 UTC, a Thursday (leap day).
        assert_eq!(java_date(1_709_251_199_000), "Thu Feb 29 23:59:59 UTC 2024");
    }

    #[test]
    fn doubles_print_as_java_prints_them() {
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(2.0), "2.0");
        assert_eq!(java_double(1.5), "1.5");
        assert_eq!(java_double(23.032_258), "23.0323");
    }
}
