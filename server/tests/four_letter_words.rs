//! Four-letter words against Zinc and Apache ZooKeeper in the same run, after the same known
//! setup (two sessions, a few nodes, one ephemeral, data, exist, child and persistent watches).
//! Values that are the server's own (versions, ports, latencies, counters, paths) differ; the
//! tests compare line structure and keys, and exact values where they are deterministic: node
//! and ephemeral counts, watch listings, `imok`, `rw`, `Mode: standalone`, the whitelist refusal.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{four_letter_word, Server, Zinc, ZooKeeper};
use zookeeper_client as zk;

/// Clients that hold the watches while the words are asked.
struct Held {
    _clients: Vec<zk::Client>,
    _oneshots: Vec<zk::OneshotWatcher>,
    _persistent: Vec<zk::PersistentWatcher>,
}

struct Setup {
    runtime: tokio::runtime::Runtime,
    held: Option<Held>,
    /// Session id (as ZooKeeper prints it, `0x` + hex) to the client's name.
    names: BTreeMap<String, String>,
}

async fn connect(server: &dyn Server) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&server.hosts())
        .await
        .expect("connect")
}

/// `one` creates /a, /a/b and the ephemeral /a/e, watches /a's data and children and /a/none's
/// existence; `two` watches /a's data and /a/b recursively.
async fn prepare(server: &dyn Server) -> (Held, BTreeMap<String, String>) {
    let one = connect(server).await;
    let two = connect(server).await;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    one.create("/a", b"data", &persistent).await.expect("/a");
    one.create("/a/b", b"", &persistent).await.expect("/a/b");
    one.create("/a/e", b"", &ephemeral).await.expect("/a/e");
    let mut oneshots = Vec::new();
    oneshots.push(one.get_and_watch_data("/a").await.expect("watch /a").2);
    oneshots.push(one.list_and_watch_children("/a").await.expect("children").1);
    oneshots.push(one.check_and_watch_stat("/a/none").await.expect("exists").1);
    oneshots.push(two.get_and_watch_data("/a").await.expect("watch /a").2);
    let recursive = two
        .watch("/a/b", zk::AddWatchMode::PersistentRecursive)
        .await
        .expect("recursive");
    let names = [(&one, "one"), (&two, "two")]
        .into_iter()
        .map(|(client, name)| (format!("0x{:x}", client.session_id().0), name.to_owned()))
        .collect();
    let held = Held {
        _clients: vec![one, two],
        _oneshots: oneshots,
        _persistent: vec![recursive],
    };
    (held, names)
}

fn start_setup(server: &dyn Server) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (held, names) = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), prepare(server))
            .await
            .expect("setup timed out")
    });
    Setup {
        runtime,
        held: Some(held),
        names,
    }
}

impl Setup {
    /// Replaces the session ids of this setup's clients by their names.
    fn name_sessions(&self, text: &str) -> String {
        self.names
            .iter()
            .fold(text.to_owned(), |text, (id, name)| text.replace(id, name))
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Clients close their sessions on drop; their tasks need the runtime.
        let held = self.held.take();
        self.runtime.block_on(async move { drop(held) });
    }
}

/// The words asked, in this order (`crst` last but one so earlier counters are untouched).
const WORDS: &[&str] = &[
    "ruok", "isro", "srvr", "stat", "conf", "cons", "envi", "mntr", "wchs", "wchc", "wchp", "dump",
    "dirs", "crst", "cons",
];

fn ask_all(server: &dyn Server, setup: &Setup) -> Vec<(String, String)> {
    WORDS
        .iter()
        .map(|word| {
            let answer = four_letter_word(server.address(), word);
            (word.to_string(), setup.name_sessions(&answer))
        })
        .collect()
}

/// `key: value` or `key=value` or `key<TAB>value` lines as a map.
fn keyed(text: &str, separator: char) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once(separator))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// The keys of a connection line ` /ip:port[n](k=v,k=v,...)`, with the interest digit.
fn connection_shape(line: &str) -> String {
    let Some((address, rest)) = line.split_once('[') else {
        return format!("not a connection line: {line}");
    };
    let interest = rest.split(']').next().unwrap_or("");
    let fields = rest
        .split_once('(')
        .map_or("", |(_, fields)| fields.trim_end_matches(')'));
    let keys: Vec<&str> = fields
        .split(',')
        .map(|field| field.split('=').next().unwrap_or(""))
        .collect();
    let address_ok = address.trim_start().starts_with("/127.0.0.1:");
    format!("{address_ok} [{interest}] {}", keys.join(","))
}

fn sorted_shapes(text: &str) -> Vec<String> {
    let mut shapes: Vec<String> = text
        .lines()
        .filter(|line| line.starts_with(' '))
        .map(connection_shape)
        .collect();
    shapes.sort();
    shapes
}

/// Groups `header` lines with the tab-indented lines under them, both sorted (wchc, wchp).
fn grouped(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        match line.strip_prefix('\t') {
            Some(item) => {
                groups
                    .entry(current.clone())
                    .or_default()
                    .insert(item.to_owned());
            }
            None => current = line.to_owned(),
        }
    }
    groups
}

/// Masks digits, so lines compare by shape.
fn shape(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect::<String>()
}

fn answer<'a>(answers: &'a [(String, String)], word: &str, nth: usize) -> &'a str {
    answers
        .iter()
        .filter(|(asked, _)| asked == word)
        .nth(nth)
        .map(|(_, text)| text.as_str())
        .unwrap_or_else(|| panic!("{word} was not asked"))
}

fn check_server_summary(zinc: &str, zookeeper: &str, word: &str) {
    let keys = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.starts_with(' ') && !line.is_empty())
            .map(|line| line.split(':').next().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(
        keys(zinc),
        keys(zookeeper),
        "{word}:\n{zinc}\n---\n{zookeeper}"
    );
    let (zinc_map, zookeeper_map) = (keyed(zinc, ':'), keyed(zookeeper, ':'));
    for key in ["Mode", "Node count", "Outstanding", "Connections"] {
        assert_eq!(zinc_map.get(key), zookeeper_map.get(key), "{word} {key}");
    }
    assert_eq!(zinc_map["Mode"], "standalone");
    // /, /zookeeper, /zookeeper/quota, /zookeeper/config (the root counted twice) + 3 created.
    assert_eq!(zinc_map["Node count"], "8", "{word}:\n{zinc}");
    let latency = &zinc_map["Latency min/avg/max"];
    assert_eq!(latency.split('/').count(), 3, "{word}: {latency}");
}

fn check_mntr(zinc: &str, zookeeper: &str) {
    let (zinc_map, zookeeper_map) = (keyed(zinc, '\t'), keyed(zookeeper, '\t'));
    for key in zinc_map.keys() {
        assert!(
            zookeeper_map.contains_key(key),
            "mntr: zinc prints {key}, ZooKeeper does not"
        );
    }
    for key in [
        "zk_version",
        "zk_avg_latency",
        "zk_max_latency",
        "zk_min_latency",
        "zk_packets_received",
        "zk_packets_sent",
        "zk_num_alive_connections",
        "zk_outstanding_requests",
        "zk_server_state",
        "zk_znode_count",
        "zk_watch_count",
        "zk_ephemerals_count",
        "zk_approximate_data_size",
        "zk_open_file_descriptor_count",
        "zk_max_file_descriptor_count",
        "zk_global_sessions",
        "zk_uptime",
    ] {
        assert!(zinc_map.contains_key(key), "mntr: zinc lacks {key}");
    }
    for key in [
        "zk_server_state",
        "zk_znode_count",
        "zk_watch_count",
        "zk_ephemerals_count",
        "zk_num_alive_connections",
        "zk_outstanding_requests",
        "zk_global_sessions",
        "zk_approximate_data_size",
    ] {
        assert_eq!(zinc_map.get(key), zookeeper_map.get(key), "mntr {key}");
    }
    assert_eq!(zinc_map["zk_ephemerals_count"], "1");
    assert!(zinc_map["zk_packets_sent"].parse::<u64>().expect("number") > 0);
}

fn check_dump(zinc: &str, zookeeper: &str) {
    let shapes = |text: &str| -> Vec<String> {
        let mut lines: Vec<String> = text
            .lines()
            .map(|line| {
                let line = line.replace("one", "<s>").replace("two", "<s>");
                // The date of an expiry bucket.
                match line.split_once(" expire at ") {
                    Some((count, _)) => format!("{} expire at <date>:", shape(count)),
                    None => shape(&line),
                }
            })
            .filter(|line| !line.contains("sessionId: 0x#"))
            .collect();
        lines.sort();
        lines.dedup();
        lines
    };
    assert_eq!(
        shapes(zinc),
        shapes(zookeeper),
        "dump:\n{zinc}\n---\n{zookeeper}"
    );
    let ephemerals = |text: &str| -> String {
        let start = text
            .find("Sessions with Ephemerals")
            .expect("ephemerals section");
        let end = text.find("Connections dump").expect("connections section");
        text[start..end].to_owned()
    };
    assert_eq!(ephemerals(zinc), ephemerals(zookeeper));
    assert!(ephemerals(zinc).contains("one:\n\t/a/e\n"), "{zinc}");
}

fn compare(zinc: &[(String, String)], zookeeper: &[(String, String)]) {
    let both = |word: &str| (answer(zinc, word, 0), answer(zookeeper, word, 0));
    assert_eq!(both("ruok"), ("imok", "imok"));
    assert_eq!(both("isro"), ("rw", "rw"));
    for word in ["srvr", "stat"] {
        let (z, k) = both(word);
        check_server_summary(z, k, word);
    }
    let (z, k) = both("stat");
    assert_eq!(sorted_shapes(z), sorted_shapes(k), "stat clients");
    let (z, k) = both("conf");
    let keys = |text: &str| keyed(text, '=').into_keys().collect::<Vec<_>>();
    assert_eq!(keys(z), keys(k), "conf");
    assert_eq!(keyed(z, '=')["tickTime"], keyed(k, '=')["tickTime"]);
    assert_eq!(keyed(z, '=')["minSessionTimeout"], "1000");
    assert_eq!(keyed(z, '=')["maxSessionTimeout"], "10000");
    let (z, k) = both("cons");
    assert_eq!(sorted_shapes(z), sorted_shapes(k), "cons:\n{z}\n---\n{k}");
    let (z, k) = both("envi");
    let envi_keys = |text: &str| {
        keyed(text, '=')
            .into_keys()
            .filter(|key| !key.starts_with("java."))
            .collect::<Vec<_>>()
    };
    assert_eq!(envi_keys(z), envi_keys(k), "envi:\n{z}\n---\n{k}");
    assert_eq!(z.lines().next(), Some("Environment:"));
    let (z, k) = both("mntr");
    check_mntr(z, k);
    let (z, k) = both("wchs");
    assert_eq!(z, k, "wchs");
    assert_eq!(z, "2 connections watching 3 paths\nTotal watches:4\n");
    for word in ["wchc", "wchp"] {
        let (z, k) = both(word);
        assert_eq!(grouped(z), grouped(k), "{word}:\n{z}\n---\n{k}");
    }
    let wchp = grouped(answer(zinc, "wchp", 0));
    let expected_paths: Vec<&str> = vec!["/a", "/a/b", "/a/none"];
    assert_eq!(
        wchp.keys().map(String::as_str).collect::<Vec<_>>(),
        expected_paths
    );
    let (z, k) = both("dump");
    check_dump(z, k);
    let (z, k) = both("dirs");
    assert_eq!(
        keyed(z, ':').into_keys().collect::<Vec<_>>(),
        ["datadir_size", "logdir_size"]
    );
    assert_eq!(
        keyed(z, ':').into_keys().collect::<Vec<_>>(),
        keyed(k, ':').into_keys().collect::<Vec<_>>()
    );
    assert_eq!(
        both("crst"),
        ("Connection stats reset.\n", "Connection stats reset.\n")
    );
    // After crst the clients' connections show no operation and no counts.
    let (z, k) = (answer(zinc, "cons", 1), answer(zookeeper, "cons", 1));
    assert_eq!(
        sorted_shapes(z),
        sorted_shapes(k),
        "cons after crst:\n{z}\n---\n{k}"
    );
    assert!(z.contains("recved=0,sent=0") && z.contains("lop=NA"), "{z}");
}

#[test]
fn four_letter_words_match_zookeeper() {
    let zinc = Zinc::start();
    let zookeeper = ZooKeeper::start();
    let zinc_setup = start_setup(&zinc);
    let zookeeper_setup = start_setup(&zookeeper);
    let zinc_answers = ask_all(&zinc, &zinc_setup);
    let zookeeper_answers = ask_all(&zookeeper, &zookeeper_setup);
    compare(&zinc_answers, &zookeeper_answers);
}

#[test]
fn words_outside_the_whitelist_are_refused_as_zookeeper_refuses_them() {
    let zinc = Zinc::start_with(&["--four-letter-words", "ruok,srvr"]);
    let zookeeper = ZooKeeper::start_with_whitelist("ruok,srvr");
    for word in [
        "stat", "mntr", "cons", "wchs", "dump", "envi", "conf", "isro",
    ] {
        let zinc_answer = four_letter_word(zinc.address(), word);
        let zookeeper_answer = four_letter_word(zookeeper.address(), word);
        assert_eq!(zinc_answer, zookeeper_answer, "{word}");
        assert_eq!(
            zinc_answer,
            format!("{word} is not executed because it is not in the whitelist.\n")
        );
    }
    for word in ["ruok", "srvr"] {
        let zinc_answer = four_letter_word(zinc.address(), word);
        assert!(!zinc_answer.contains("whitelist"), "{word}: {zinc_answer}");
    }
}
