//! Four-letter words on the client port, printed in ZooKeeper's formats so existing monitoring
//! keeps working. Connection listings cover the shard that accepted the asking connection.

use std::fmt::Write;

use zinc_protocol::fourlw::FourLetterWord;

use crate::shell::shard::Shard;

/// The version line monitoring tools parse.
pub const VERSION: &str = concat!("3.9.0-zinc-", env!("CARGO_PKG_VERSION"), ", built on zinc");

/// The reply to a four-letter word (the connection is closed after it).
pub(crate) fn four_letter_word(shard: &Shard, word: FourLetterWord) -> String {
    let name = word.name();
    if !shard.config.four_letter_word_enabled(name) {
        return format!("{name} is not executed because it is not in the whitelist.\n");
    }
    let mut out = String::new();
    match name {
        "ruok" => out.push_str("imok"),
        "srvr" => server_summary(shard, &mut out, false),
        "stat" => server_summary(shard, &mut out, true),
        "conf" => configuration(shard, &mut out),
        "cons" => connections(shard, &mut out),
        "crst" | "srst" => {
            shard.stats.reset();
            out.push_str(if name == "crst" {
                "Connection stats reset.\n"
            } else {
                "Server stats reset.\n"
            });
        }
        "envi" => environment(&mut out),
        "mntr" => monitoring(shard, &mut out),
        "wchs" => watch_summary(shard, &mut out),
        "wchc" => watches_by_session(shard, &mut out),
        "wchp" => watches_by_path(shard, &mut out),
        "dump" => dump(shard, &mut out),
        "isro" => out.push_str("rw"),
        "dirs" => directories(shard, &mut out),
        _ => out.push_str(&format!("{name} is not supported by Zinc.\n")),
    }
    out
}

fn server_summary(shard: &Shard, out: &mut String, with_clients: bool) {
    let view = shard.stats.view();
    let _ = writeln!(out, "Zookeeper version: {VERSION}");
    if with_clients {
        out.push_str("Clients:\n");
        for conn in shard.connections.borrow().values() {
            let _ = writeln!(
                out,
                " /{}[1](queued={},recved={},sent={})",
                conn.peer,
                conn.queued(),
                conn.packets_received.get(),
                conn.packets_sent.get()
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Latency min/avg/max: {}/{:.1}/{}",
        view.latency_min_ms, view.latency_avg_ms, view.latency_max_ms
    );
    let _ = writeln!(out, "Received: {}", view.packets_received);
    let _ = writeln!(out, "Sent: {}", view.packets_sent);
    let _ = writeln!(out, "Connections: {}", view.connections);
    let _ = writeln!(out, "Outstanding: 0");
    let _ = writeln!(out, "Zxid: 0x{:x}", view.last_zxid);
    let _ = writeln!(out, "Mode: standalone");
    let _ = writeln!(out, "Node count: {}", view.node_count);
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

fn connections(shard: &Shard, out: &mut String) {
    for conn in shard.connections.borrow().values() {
        let session = conn.session.get().map_or(0, |s| s.0);
        let op = conn
            .last_op
            .get()
            .map_or("NA".to_owned(), |op| format!("{op:?}"));
        let _ = writeln!(
            out,
            " /{}[1](queued={},recved={},sent={},sid=0x{:x},lop={},to={},lzxid=0x{:x})",
            conn.peer,
            conn.queued(),
            conn.packets_received.get(),
            conn.packets_sent.get(),
            session,
            op.to_uppercase(),
            conn.timeout_ms.get(),
            conn.last_zxid.get()
        );
    }
    out.push('\n');
}

fn environment(out: &mut String) {
    out.push_str("Environment:\n");
    let _ = writeln!(out, "zookeeper.version={VERSION}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let _ = writeln!(out, "host.name={}", host.trim());
    let _ = writeln!(out, "os.name={}", std::env::consts::OS);
    let _ = writeln!(out, "os.arch={}", std::env::consts::ARCH);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let _ = writeln!(out, "os.version={}", release.trim());
    let _ = writeln!(
        out,
        "user.name={}",
        std::env::var("USER").unwrap_or_default()
    );
    let dir = std::env::current_dir().unwrap_or_default();
    let _ = writeln!(out, "user.dir={}", dir.display());
}

fn monitoring(shard: &Shard, out: &mut String) {
    let view = shard.stats.view();
    let watches = shard.watches.borrow().watch_count();
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count());
    let rows: Vec<(&str, String)> = vec![
        ("zk_version", VERSION.to_owned()),
        ("zk_server_state", "standalone".to_owned()),
        ("zk_ephemerals_count", view.ephemeral_count.to_string()),
        ("zk_num_alive_connections", view.connections.to_string()),
        ("zk_avg_latency", format!("{:.4}", view.latency_avg_ms)),
        ("zk_min_latency", view.latency_min_ms.to_string()),
        ("zk_max_latency", view.latency_max_ms.to_string()),
        ("zk_outstanding_requests", "0".to_owned()),
        ("zk_znode_count", view.node_count.to_string()),
        ("zk_global_sessions", view.session_count.to_string()),
        ("zk_local_sessions", "0".to_owned()),
        ("zk_packets_sent", view.packets_sent.to_string()),
        ("zk_packets_received", view.packets_received.to_string()),
        ("zk_watch_count", watches.to_string()),
        ("zk_approximate_data_size", view.data_bytes.to_string()),
        ("zk_open_file_descriptor_count", open_fds.to_string()),
        ("zk_max_file_descriptor_count", max_fds().to_string()),
        ("zk_uptime", view.uptime_ms.to_string()),
    ];
    for (key, value) in rows {
        let _ = writeln!(out, "{key}\t{value}");
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

fn watch_summary(shard: &Shard, out: &mut String) {
    let watches = shard.watches.borrow();
    let sessions = watches.by_session().len();
    let _ = writeln!(
        out,
        "{} connections watching {} paths\nTotal watches:{}",
        sessions,
        watches.path_count(),
        watches.watch_count()
    );
}

fn watches_by_session(shard: &Shard, out: &mut String) {
    for (session, paths) in shard.watches.borrow().by_session() {
        let _ = writeln!(out, "0x{:x}", session.0);
        for path in paths {
            let _ = writeln!(out, "\t{path}");
        }
    }
    out.push('\n');
}

fn watches_by_path(shard: &Shard, out: &mut String) {
    for (path, sessions) in shard.watches.borrow().by_path() {
        let _ = writeln!(out, "{path}");
        for session in sessions {
            let _ = writeln!(out, "\t0x{:x}", session.0);
        }
    }
    out.push('\n');
}

fn dump(shard: &Shard, out: &mut String) {
    let root = shard.root.borrow().clone();
    let sessions = root.sessions();
    out.push_str("SessionTracker dump:\n");
    let _ = writeln!(out, "Session Sets ({}):", sessions.len());
    for (session, timeout_ms) in &sessions {
        let _ = writeln!(out, "\t0x{session:x} (timeout {timeout_ms} ms)");
    }
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
    out.push_str("Connections dump:\n");
    let connections = shard.connections.borrow();
    let _ = writeln!(out, "Connections Sets (1)/({}):", connections.len());
    for conn in connections.values() {
        let session = conn.session.get().map_or(0, |s| s.0);
        let _ = writeln!(out, "\tip: /{} sessionId: 0x{:x}", conn.peer, session);
    }
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
