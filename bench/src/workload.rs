//! What each session sends: the workload names, the tree they work on, and a per-session
//! generator that turns a seeded random stream into requests. Pure: no I/O and no clock, so the
//! requests a run sends are reproducible from its seed.

use bytes::Bytes;
use zinc_protocol::records::{
    CreateRequest, DeleteRequest, ExistsRequest, GetChildrenRequest, GetDataRequest, SetDataRequest,
};
use zinc_protocol::{Acl, CreateMode, MultiOp, MultiRequest, Request};

/// The workloads `--workload` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Create new znodes (unique names; `--sequential` for sequential ones under one parent).
    Create,
    /// setData on random keys of the key space.
    Set,
    /// getData on random keys.
    Get,
    /// exists on random keys.
    Exists,
    /// getChildren on random directories of the key space.
    Children,
    /// Delete pre-created znodes (`--keys` of them, created before the clock starts).
    Delete,
    /// getData and setData on random keys, `--read-percent` reads.
    Mixed,
    /// multi of `--multi-ops` setData ops on random keys.
    Multi,
    /// Ephemeral churn: connect, create an ephemeral znode, close the session; one op per cycle.
    Sessions,
    /// Watch fan-out: every session but one watches one znode, the other sets it; latency is from
    /// the write being sent to each notification arriving.
    Watch,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Set => "set",
            Workload::Get => "get",
            Workload::Exists => "exists",
            Workload::Children => "children",
            Workload::Delete => "delete",
            Workload::Mixed => "mixed",
            Workload::Multi => "multi",
            Workload::Sessions => "sessions",
            Workload::Watch => "watch",
        }
    }

    /// Whether the workload reads or writes the key space, which setup must then create.
    pub fn uses_keys(self) -> bool {
        matches!(
            self,
            Workload::Set
                | Workload::Get
                | Workload::Exists
                | Workload::Children
                | Workload::Mixed
                | Workload::Multi
        )
    }
}

/// The tree a run works under: `ROOT/keys/dNNNN/kNNNNNNN` (`fanout` keys per directory),
/// `ROOT/create`, `ROOT/seq`, `ROOT/delete/pNNNNNNN`, `ROOT/eph`, `ROOT/watch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    pub root: String,
    pub keys: u64,
    pub fanout: u64,
}

impl Tree {
    pub fn new(root: &str, keys: u64, fanout: u64) -> Tree {
        assert!(
            keys > 0 && fanout > 0,
            "key space and fanout must be positive"
        );
        Tree {
            root: root.trim_end_matches('/').to_owned(),
            keys,
            fanout,
        }
    }

    pub fn directories(&self) -> u64 {
        self.keys.div_ceil(self.fanout)
    }

    pub fn directory_path(&self, directory: u64) -> String {
        format!("{}/keys/d{directory:04}", self.root)
    }

    pub fn key_path(&self, key: u64) -> String {
        format!("{}/k{key:07}", self.directory_path(key / self.fanout))
    }

    pub fn delete_path(&self, index: u64) -> String {
        format!("{}/delete/p{index:07}", self.root)
    }

    pub fn watch_path(&self) -> String {
        format!("{}/watch", self.root)
    }

    /// The parents every run needs, parents before children.
    pub fn parents(&self) -> Vec<String> {
        let mut paths = vec![self.root.clone()];
        for child in ["keys", "create", "seq", "delete", "eph", "watch"] {
            paths.push(format!("{}/{child}", self.root));
        }
        paths
    }
}

/// xorshift64*: small, fast, and seeded, so a run's request stream is reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that nearby seeds give unrelated streams and 0 works.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..bound` (bound > 0); the modulo bias is negligible for key spaces.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The knobs of a request stream.
#[derive(Debug, Clone)]
pub struct Mix {
    pub workload: Workload,
    pub value: Bytes,
    pub read_percent: u64,
    pub multi_ops: usize,
    pub sequential: bool,
}

/// One session's request stream.
#[derive(Debug, Clone)]
pub struct Generator {
    mix: Mix,
    tree: Tree,
    rng: Rng,
    /// Unique per session and run: prefixes the names this session creates.
    tag: String,
    created: u64,
    /// The `delete` pool slice this session owns, `next..end`.
    delete_next: u64,
    delete_end: u64,
}

impl Generator {
    pub fn new(mix: Mix, tree: Tree, seed: u64, tag: String, delete_range: (u64, u64)) -> Self {
        Generator {
            mix,
            tree,
            rng: Rng::new(seed),
            tag,
            created: 0,
            delete_next: delete_range.0,
            delete_end: delete_range.1,
        }
    }

    fn random_key(&mut self) -> String {
        let key = self.rng.below(self.tree.keys);
        self.tree.key_path(key)
    }

    fn set_data(&mut self) -> SetDataRequest {
        SetDataRequest {
            path: self.random_key(),
            data: Some(self.mix.value.clone()),
            version: -1,
        }
    }

    /// A create of a new node under `parent` named after this session.
    pub fn create_under(&mut self, parent: &str, mode: CreateMode) -> Request {
        self.created += 1;
        let path = if mode.is_sequential() {
            format!("{}/{parent}/n-", self.tree.root)
        } else {
            format!("{}/{parent}/{}-{}", self.tree.root, self.tag, self.created)
        };
        Request::Create(CreateRequest {
            path,
            data: Some(self.mix.value.clone()),
            acl: Acl::open_unsafe(),
            flags: mode.to_flags(),
        })
    }

    /// The next request of a request/response workload; `None` once a finite workload (delete)
    /// has nothing left. `sessions` and `watch` are driven by the worker, not from here.
    pub fn next_request(&mut self) -> Option<Request> {
        Some(match self.mix.workload {
            Workload::Create if self.mix.sequential => {
                self.create_under("seq", CreateMode::PersistentSequential)
            }
            Workload::Create => self.create_under("create", CreateMode::Persistent),
            Workload::Set => Request::SetData(self.set_data()),
            Workload::Get => self.get_data(),
            Workload::Exists => Request::Exists(ExistsRequest {
                path: self.random_key(),
                watch: false,
            }),
            Workload::Children => {
                let directory = self.rng.below(self.tree.directories());
                Request::GetChildren(GetChildrenRequest {
                    path: self.tree.directory_path(directory),
                    watch: false,
                })
            }
            Workload::Delete => {
                if self.delete_next >= self.delete_end {
                    return None;
                }
                self.delete_next += 1;
                Request::Delete(DeleteRequest {
                    path: self.tree.delete_path(self.delete_next - 1),
                    version: -1,
                })
            }
            Workload::Mixed if self.rng.below(100) < self.mix.read_percent => self.get_data(),
            Workload::Mixed => Request::SetData(self.set_data()),
            Workload::Multi => Request::Multi(MultiRequest {
                ops: (0..self.mix.multi_ops)
                    .map(|_| MultiOp::SetData(self.set_data()))
                    .collect(),
            }),
            Workload::Sessions => self.create_under("eph", CreateMode::Ephemeral),
            Workload::Watch => Request::SetData(SetDataRequest {
                path: self.tree.watch_path(),
                data: Some(self.mix.value.clone()),
                version: -1,
            }),
        })
    }

    fn get_data(&mut self) -> Request {
        Request::GetData(GetDataRequest {
            path: self.random_key(),
            watch: false,
        })
    }

    /// The getData that (re)arms a watcher of the watch workload.
    pub fn watch_arm(&self) -> Request {
        Request::GetData(GetDataRequest {
            path: self.tree.watch_path(),
            watch: true,
        })
    }
}

/// Splits `0..total` into `parts` contiguous slices, the first ones one longer when uneven.
pub fn split_range(total: u64, parts: u64, index: u64) -> (u64, u64) {
    assert!(parts > 0 && index < parts, "slice {index} of {parts}");
    let base = total / parts;
    let extra = total % parts;
    let start = index * base + index.min(extra);
    let length = base + u64::from(index < extra);
    (start, start + length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zinc_protocol::OpCode;

    fn generator(workload: Workload, delete_range: (u64, u64)) -> Generator {
        let mix = Mix {
            workload,
            value: Bytes::from_static(b"0123456789"),
            read_percent: 90,
            multi_ops: 3,
            sequential: false,
        };
        Generator::new(mix, Tree::new("/zb/", 50, 10), 7, "s1".into(), delete_range)
    }

    #[test]
    fn key_paths_spread_over_directories() {
        let tree = Tree::new("/zb", 25, 10);
        assert_eq!(tree.directories(), 3);
        assert_eq!(tree.key_path(0), "/zb/keys/d0000/k0000000");
        assert_eq!(tree.key_path(24), "/zb/keys/d0002/k0000024");
        assert_eq!(tree.parents()[0], "/zb");
        assert!(tree.parents().contains(&"/zb/watch".to_owned()));
    }

    #[test]
    fn mixed_reads_follow_the_percentage() {
        let mut generator = generator(Workload::Mixed, (0, 0));
        let reads = (0..10_000)
            .filter(|_| generator.next_request().map(|r| r.op()) == Some(OpCode::GetData))
            .count();
        assert!((8_700..9_300).contains(&reads), "{reads} reads of 10000");
    }

    #[test]
    fn keys_stay_in_the_key_space_and_cover_it() {
        let mut generator = generator(Workload::Set, (0, 0));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let Some(Request::SetData(body)) = generator.next_request() else {
                panic!("set workload sends setData");
            };
            assert_eq!(body.data.as_deref(), Some(&b"0123456789"[..]));
            seen.insert(body.path);
        }
        assert_eq!(seen.len(), 50);
        assert!(seen.contains("/zb/keys/d0004/k0000049"));
    }

    #[test]
    fn delete_ends_with_its_slice() {
        let mut generator = generator(Workload::Delete, (3, 5));
        let paths: Vec<_> = std::iter::from_fn(|| generator.next_request())
            .map(|r| r.path().map(str::to_owned))
            .collect();
        assert_eq!(
            paths,
            vec![
                Some("/zb/delete/p0000003".to_owned()),
                Some("/zb/delete/p0000004".to_owned())
            ]
        );
    }

    #[test]
    fn creates_are_unique_and_multi_has_its_ops() {
        let mut generator = generator(Workload::Create, (0, 0));
        let first = generator.next_request().expect("create");
        let second = generator.next_request().expect("create");
        assert_ne!(first.path(), second.path());
        assert_eq!(first.path(), Some("/zb/create/s1-1"));
        let mut multi = super::tests::generator(Workload::Multi, (0, 0));
        let Some(Request::Multi(body)) = multi.next_request() else {
            panic!("multi workload sends multi");
        };
        assert_eq!(body.ops.len(), 3);
    }

    #[test]
    fn same_seed_same_stream() {
        let mut a = generator(Workload::Mixed, (0, 0));
        let mut b = generator(Workload::Mixed, (0, 0));
        for _ in 0..100 {
            assert_eq!(a.next_request(), b.next_request());
        }
    }

    #[test]
    fn ranges_split_evenly() {
        let slices: Vec<_> = (0..3).map(|i| split_range(10, 3, i)).collect();
        assert_eq!(slices, vec![(0, 4), (4, 7), (7, 10)]);
        assert_eq!(split_range(2, 4, 3), (2, 2));
    }
}
