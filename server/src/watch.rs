//! Watch bookkeeping for one shard: which sessions watch which paths, and who is notified when a
//! committed txn triggers an event. Pure: no I/O; the shard turns the returned sessions into
//! notification frames.
//!
//! Two tables, as in ZooKeeper: data watches (getData and exists, plus persistent and
//! persistent-recursive watches) and child watches (getChildren, plus persistent watches). A
//! standard watch fires once and is removed; persistent ones stay. Recursive watches also fire
//! for events below their path, except NodeChildrenChanged.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use zinc_protocol::records::{EventType, WatcherType};
use zinc_protocol::SessionId;

/// Bits of a (path, session) registration.
const STANDARD: u8 = 1;
const PERSISTENT: u8 = 2;
const RECURSIVE: u8 = 4;

/// How a watch was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// One-shot (getData, exists, getChildren with watch=true).
    Standard,
    /// addWatch PERSISTENT.
    Persistent,
    /// addWatch PERSISTENT_RECURSIVE.
    PersistentRecursive,
}

impl WatchMode {
    fn bit(self) -> u8 {
        match self {
            WatchMode::Standard => STANDARD,
            WatchMode::Persistent => PERSISTENT,
            WatchMode::PersistentRecursive => RECURSIVE,
        }
    }
}

/// Which table a registration lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchTableKind {
    Data,
    Child,
}

type Registrations = HashMap<String, HashMap<SessionId, u8>>;

/// All watches of the sessions a shard owns.
#[derive(Debug, Default)]
pub struct WatchManager {
    data: Registrations,
    child: Registrations,
    /// Number of (path, session) pairs with the recursive bit, so the ancestor walk is skipped
    /// when there are none.
    recursive_count: usize,
}

impl WatchManager {
    pub fn new() -> Self {
        WatchManager::default()
    }

    fn table(&mut self, kind: WatchTableKind) -> &mut Registrations {
        match kind {
            WatchTableKind::Data => &mut self.data,
            WatchTableKind::Child => &mut self.child,
        }
    }

    /// Registers a one-shot watch in `kind`'s table.
    pub fn add(&mut self, kind: WatchTableKind, path: &str, session: SessionId) {
        self.add_bits(kind, path, session, STANDARD);
    }

    /// addWatch: persistent watches go in both tables, recursive ones in the data table only.
    pub fn add_persistent(&mut self, path: &str, session: SessionId, mode: WatchMode) {
        self.add_bits(WatchTableKind::Data, path, session, mode.bit());
        if mode == WatchMode::Persistent {
            self.add_bits(WatchTableKind::Child, path, session, mode.bit());
        }
    }

    fn add_bits(&mut self, kind: WatchTableKind, path: &str, session: SessionId, bits: u8) {
        let entry = self
            .table(kind)
            .entry(path.to_owned())
            .or_default()
            .entry(session)
            .or_insert(0);
        let added_recursive = bits & RECURSIVE != 0 && *entry & RECURSIVE == 0;
        *entry |= bits;
        if added_recursive {
            self.recursive_count += 1;
        }
    }

    /// Sessions to notify of `event` at `path`; one-shot watches that fire are removed.
    pub fn trigger(&mut self, event: EventType, path: &str) -> Vec<SessionId> {
        let mut notified = HashSet::new();
        match event {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                self.fire(WatchTableKind::Data, path, &mut notified);
                self.fire_recursive_ancestors(path, &mut notified);
            }
            EventType::NodeDeleted => {
                self.fire(WatchTableKind::Data, path, &mut notified);
                self.fire(WatchTableKind::Child, path, &mut notified);
                self.fire_recursive_ancestors(path, &mut notified);
            }
            EventType::NodeChildrenChanged => {
                self.fire(WatchTableKind::Child, path, &mut notified);
            }
            _ => {}
        }
        let mut sessions: Vec<SessionId> = notified.into_iter().collect();
        sessions.sort();
        sessions
    }

    fn fire(&mut self, kind: WatchTableKind, path: &str, notified: &mut HashSet<SessionId>) {
        let Some(watchers) = self.table(kind).get_mut(path) else {
            return;
        };
        watchers.retain(|session, bits| {
            notified.insert(*session);
            *bits &= !STANDARD;
            *bits != 0
        });
        if watchers.is_empty() {
            self.table(kind).remove(path);
        }
    }

    fn fire_recursive_ancestors(&mut self, path: &str, notified: &mut HashSet<SessionId>) {
        if self.recursive_count == 0 {
            return;
        }
        let mut ancestor = path;
        while let Some(parent) = parent_path(ancestor) {
            if let Some(watchers) = self.data.get(parent) {
                for (session, bits) in watchers {
                    if bits & RECURSIVE != 0 {
                        notified.insert(*session);
                    }
                }
            }
            ancestor = parent;
        }
    }

    /// Whether `session` has a watch of `watcher_type` on `path` (checkWatches).
    pub fn contains(&self, path: &str, session: SessionId, watcher_type: WatcherType) -> bool {
        let (data_bits, child_bits) = type_bits(watcher_type);
        let has = |table: &Registrations, bits: u8| {
            bits != 0
                && table
                    .get(path)
                    .and_then(|watchers| watchers.get(&session))
                    .is_some_and(|have| have & bits != 0)
        };
        has(&self.data, data_bits) || has(&self.child, child_bits)
    }

    /// removeWatches: drops the matching registrations; false when there were none.
    pub fn remove(&mut self, path: &str, session: SessionId, watcher_type: WatcherType) -> bool {
        let (data_bits, child_bits) = type_bits(watcher_type);
        let removed_data = self.clear_bits(WatchTableKind::Data, path, session, data_bits);
        let removed_child = self.clear_bits(WatchTableKind::Child, path, session, child_bits);
        removed_data || removed_child
    }

    fn clear_bits(
        &mut self,
        kind: WatchTableKind,
        path: &str,
        session: SessionId,
        bits: u8,
    ) -> bool {
        let Entry::Occupied(mut watchers) = self.table(kind).entry(path.to_owned()) else {
            return false;
        };
        let Some(have) = watchers.get_mut().get_mut(&session) else {
            return false;
        };
        let cleared = *have & bits;
        *have &= !bits;
        if *have == 0 {
            watchers.get_mut().remove(&session);
        }
        if watchers.get().is_empty() {
            watchers.remove();
        }
        if cleared & RECURSIVE != 0 {
            self.recursive_count -= 1;
        }
        cleared != 0
    }

    /// Forgets every watch of a session (closed, expired or moved away).
    pub fn remove_session(&mut self, session: SessionId) {
        let mut recursive_removed = 0;
        for table in [&mut self.data, &mut self.child] {
            table.retain(|_, watchers| {
                if let Some(bits) = watchers.remove(&session) {
                    recursive_removed += usize::from(bits & RECURSIVE != 0);
                }
                !watchers.is_empty()
            });
        }
        self.recursive_count -= recursive_removed;
    }

    /// Number of (path, session) registrations over both tables, counted as ZooKeeper counts
    /// them for `zk_watch_count`: it files a persistent-recursive watch in both tables (and
    /// filters child events at delivery), so each one counts twice.
    pub fn watch_count(&self) -> usize {
        let registered: usize = self
            .data
            .values()
            .chain(self.child.values())
            .map(HashMap::len)
            .sum();
        registered + self.recursive_count
    }

    /// Registrations in the data table (getData, exists, persistent), which is what `wchs`,
    /// `wchc` and `wchp` report, as ZooKeeper's do; child watches are not listed there.
    pub fn data_watch_count(&self) -> usize {
        self.data.values().map(HashMap::len).sum()
    }

    /// Distinct paths in the data table (`wchs`).
    pub fn data_path_count(&self) -> usize {
        self.data.len()
    }

    /// Paths each session watches in the data table (`wchc`), sorted.
    pub fn data_by_session(&self) -> Vec<(SessionId, Vec<String>)> {
        let mut map: HashMap<SessionId, HashSet<&str>> = HashMap::new();
        for (path, watchers) in self.data.iter() {
            for session in watchers.keys() {
                map.entry(*session).or_default().insert(path);
            }
        }
        let mut out: Vec<(SessionId, Vec<String>)> = map
            .into_iter()
            .map(|(session, paths)| {
                let mut paths: Vec<String> = paths.into_iter().map(str::to_owned).collect();
                paths.sort();
                (session, paths)
            })
            .collect();
        out.sort();
        out
    }

    /// Sessions watching each path in the data table (`wchp`), sorted.
    pub fn data_by_path(&self) -> Vec<(String, Vec<SessionId>)> {
        let mut map: HashMap<&str, HashSet<SessionId>> = HashMap::new();
        for (path, watchers) in self.data.iter() {
            map.entry(path).or_default().extend(watchers.keys());
        }
        let mut out: Vec<(String, Vec<SessionId>)> = map
            .into_iter()
            .map(|(path, sessions)| {
                let mut sessions: Vec<SessionId> = sessions.into_iter().collect();
                sessions.sort();
                (path.to_owned(), sessions)
            })
            .collect();
        out.sort();
        out
    }

    /// Paths with any watch of `session`, with the kind, for setWatches-style listings.
    pub fn session_watch_count(&self, session: SessionId) -> usize {
        self.data
            .values()
            .chain(self.child.values())
            .filter(|watchers| watchers.contains_key(&session))
            .count()
    }
}

/// Which bits of the data and child tables a `WatcherType` names.
fn type_bits(watcher_type: WatcherType) -> (u8, u8) {
    match watcher_type {
        WatcherType::Children => (0, STANDARD),
        WatcherType::Data => (STANDARD, 0),
        WatcherType::Any => (STANDARD | PERSISTENT | RECURSIVE, STANDARD | PERSISTENT),
        WatcherType::Persistent => (PERSISTENT, PERSISTENT),
        WatcherType::PersistentRecursive => (RECURSIVE, 0),
    }
}

/// The parent of an absolute path; `None` for the root.
fn parent_path(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(index) => Some(&path[..index]),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SessionId = SessionId(1);
    const B: SessionId = SessionId(2);

    #[test]
    fn standard_watches_fire_once() {
        let mut watches = WatchManager::new();
        watches.add(WatchTableKind::Data, "/a", A);
        watches.add(WatchTableKind::Child, "/a", B);
        assert_eq!(watches.trigger(EventType::NodeDataChanged, "/a"), vec![A]);
        assert_eq!(watches.trigger(EventType::NodeDataChanged, "/a"), vec![]);
        assert_eq!(watches.trigger(EventType::NodeDeleted, "/a"), vec![B]);
        assert_eq!(watches.watch_count(), 0);
    }

    #[test]
    fn persistent_and_recursive_watches_stay() {
        let mut watches = WatchManager::new();
        watches.add_persistent("/a", A, WatchMode::Persistent);
        watches.add_persistent("/a", B, WatchMode::PersistentRecursive);
        assert_eq!(
            watches.trigger(EventType::NodeDataChanged, "/a"),
            vec![A, B]
        );
        assert_eq!(
            watches.trigger(EventType::NodeChildrenChanged, "/a"),
            vec![A]
        );
        assert_eq!(watches.trigger(EventType::NodeCreated, "/a/b/c"), vec![B]);
        assert_eq!(
            watches.trigger(EventType::NodeDataChanged, "/a"),
            vec![A, B]
        );
        assert!(watches.contains("/a", B, WatcherType::PersistentRecursive));
        assert!(watches.remove("/a", B, WatcherType::Any));
        assert!(!watches.remove("/a", B, WatcherType::Any));
        assert_eq!(watches.trigger(EventType::NodeCreated, "/a/b"), vec![]);
        watches.remove_session(A);
        assert_eq!(watches.watch_count(), 0);
    }

    #[test]
    fn remove_by_type_touches_only_that_type() {
        let mut watches = WatchManager::new();
        watches.add(WatchTableKind::Data, "/x", A);
        watches.add(WatchTableKind::Child, "/x", A);
        assert!(watches.remove("/x", A, WatcherType::Children));
        assert!(!watches.contains("/x", A, WatcherType::Children));
        assert!(watches.contains("/x", A, WatcherType::Data));
        assert_eq!(watches.data_by_path(), vec![("/x".to_owned(), vec![A])]);
        assert_eq!(watches.data_by_session(), vec![(A, vec!["/x".to_owned()])]);
    }

    #[test]
    fn listings_show_the_data_table_only() {
        let mut watches = WatchManager::new();
        watches.add(WatchTableKind::Child, "/c", A);
        watches.add(WatchTableKind::Data, "/d", B);
        watches.add_persistent("/p", A, WatchMode::Persistent);
        let c = SessionId(3);
        watches.add_persistent("/r", c, WatchMode::PersistentRecursive);
        assert_eq!(watches.watch_count(), 6);
        assert_eq!(watches.data_watch_count(), 3);
        watches.remove_session(c);
        assert_eq!(watches.data_watch_count(), 2);
        assert_eq!(watches.data_path_count(), 2);
        assert_eq!(
            watches.data_by_path(),
            vec![("/d".to_owned(), vec![B]), ("/p".to_owned(), vec![A])]
        );
        assert_eq!(
            watches.data_by_session(),
            vec![(A, vec!["/p".to_owned()]), (B, vec!["/d".to_owned()])]
        );
    }

    #[test]
    fn parents() {
        assert_eq!(parent_path("/"), None);
        assert_eq!(parent_path("/a"), Some("/"));
        assert_eq!(parent_path("/a/b"), Some("/a"));
    }
}
