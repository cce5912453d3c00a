//! The `zookeeper-client` crate (a Rust ZooKeeper client from crates.io) against Zinc: every node
//! kind, multi with a failing op, multiRead, persistent and persistent-recursive watches,
//! whoAmI, getEphemerals and getAllChildrenNumber. Each expectation is also run against Apache
//! ZooKeeper in the same test, so it is checked against the reference.

mod common;

use std::time::Duration;

use common::{Server, Zinc, ZooKeeper};
use zookeeper_client as zk;

async fn connect(server: &dyn Server) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&server.hosts())
        .await
        .expect("connect")
}

/// Runs the scenario and returns a transcript of observations.
async fn scenario(server: &dyn Server) -> Vec<String> {
    let client = connect(server).await;
    let mut seen = Vec::new();
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let sequential = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
    let ttl = zk::CreateMode::Persistent
        .with_acls(zk::Acls::anyone_all())
        .with_ttl(Duration::from_secs(60));

    let (stat, _) = client
        .create("/r", b"root", &persistent)
        .await
        .expect("create /r");
    seen.push(format!(
        "create /r version={} dataLength={}",
        stat.version, stat.data_length
    ));
    let mut recursive = client
        .watch("/r", zk::AddWatchMode::PersistentRecursive)
        .await
        .expect("recursive watch");
    let (_, sequence) = client.create("/r/s-", b"", &sequential).await.expect("seq");
    seen.push(format!("sequential /r/s-{sequence}"));
    client
        .create("/r/e", b"", &ephemeral)
        .await
        .expect("ephemeral");
    client
        .create("/r/c", b"", &container)
        .await
        .expect("container");
    client.create("/r/t", b"", &ttl).await.expect("ttl");
    for _ in 0..4 {
        let event = recursive.changed().await;
        seen.push(format!("recursive {:?} {}", event.event_type, event.path));
    }
    let ephemerals = client.list_ephemerals("/").await.expect("ephemerals");
    seen.push(format!("ephemerals {ephemerals:?}"));
    let count = client.count_descendants_number("/r").await.expect("count");
    seen.push(format!("descendants {count}"));

    let mut writer = client.new_multi_writer();
    writer.add_create("/r/m1", b"", &persistent).expect("op");
    writer.add_check_version("/r", 5).expect("op");
    writer.add_delete("/r/e", None).expect("op");
    match writer.commit().await {
        Ok(results) => seen.push(format!("multi unexpectedly ok {}", results.len())),
        Err(zk::MultiWriteError::OperationFailed { index, source }) => {
            seen.push(format!("multi failed at {index}: {source}"))
        }
        Err(other) => seen.push(format!("multi error {other}")),
    }
    let mut reader = client.new_multi_reader();
    reader.add_get_data("/r").expect("op");
    reader.add_get_children("/missing").expect("op");
    reader.add_get_children("/r").expect("op");
    let results = reader.commit().await.expect("multi read");
    for result in results {
        seen.push(match result {
            zk::MultiReadResult::Data { data, stat } => {
                format!(
                    "read data {:?} version={}",
                    String::from_utf8_lossy(&data),
                    stat.version
                )
            }
            zk::MultiReadResult::Children { mut children } => {
                children.sort();
                format!("read children {children:?}")
            }
            zk::MultiReadResult::Error { err } => format!("read error {err}"),
            other => format!("read other {other:?}"),
        });
    }
    let users = client.list_auth_users().await.expect("whoami");
    seen.push(format!("whoami {}", users.len()));
    match client.delete("/r", None).await {
        Ok(()) => seen.push("delete /r ok".into()),
        Err(error) => seen.push(format!("delete /r: {error}")),
    }
    seen
}

fn run(server: &dyn Server) -> Vec<String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), scenario(server))
                .await
                .expect("scenario timed out")
        })
}

#[test]
fn rust_client_matches_zookeeper() {
    let zinc = Zinc::start();
    let zookeeper = ZooKeeper::start();
    let zinc_lines = run(&zinc);
    let zookeeper_lines = run(&zookeeper);
    assert_eq!(zinc_lines, zookeeper_lines);
    assert!(
        zinc_lines.contains(&"sequential /r/s-0000000000".to_owned()),
        "{zinc_lines:?}"
    );
    assert!(
        zinc_lines
            .iter()
            .any(|line| line.starts_with("multi failed at 1")),
        "{zinc_lines:?}"
    );
    assert!(zinc_lines
        .iter()
        .any(|line| line.starts_with("recursive NodeCreated /r/t")));
}
