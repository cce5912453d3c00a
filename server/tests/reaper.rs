//! Containers are removed once their last child goes, TTL nodes once untouched and childless
//! for their TTL: the reaper on the Zab core issues the deletes, and watchers see NodeDeleted.

mod common;

use std::time::Duration;

use common::{Server, Zinc};
use zookeeper_client as zk;

#[test]
fn empty_containers_and_expired_ttl_nodes_are_removed() {
    let zinc = Zinc::start_with(&["--reap-interval-ms", "50"]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = zk::Client::connect(&zinc.hosts()).await.expect("connect");
        let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
        let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        let ttl = zk::CreateMode::Persistent
            .with_acls(zk::Acls::anyone_all())
            .with_ttl(Duration::from_millis(3000));

        client
            .create("/box", b"", &container)
            .await
            .expect("container");
        client
            .create("/box/item", b"", &persistent)
            .await
            .expect("child");

        // A container that never had a child stays; one whose last child went is removed.
        client
            .create("/never-filled", b"", &container)
            .await
            .expect("container");
        let (_, box_watch) = client.check_and_watch_stat("/box").await.expect("watch");
        client
            .delete("/box/item", None)
            .await
            .expect("delete child");
        let event = tokio::time::timeout(Duration::from_secs(20), box_watch.changed())
            .await
            .expect("container removed in time");
        assert_eq!(event.event_type, zk::EventType::NodeDeleted);
        assert_eq!(event.path, "/box");

        client.create("/short", b"", &ttl).await.expect("ttl node");
        let (_, short_watch) = match client.check_and_watch_stat("/short").await.expect("watch") {
            (Some(stat), watcher) => (stat, watcher),
            (None, _) => panic!("ttl node vanished before its ttl"),
        };
        let event = tokio::time::timeout(Duration::from_secs(20), short_watch.changed())
            .await
            .expect("ttl node removed in time");
        assert_eq!(event.event_type, zk::EventType::NodeDeleted);
        assert!(client
            .check_stat("/never-filled")
            .await
            .expect("stat")
            .is_some());
    });
}
