//! Bulk restore from a snapshot: the whole tree is built bottom-up from the node list (parents
//! before children, each with its parent's position, as snapshots list them). Each node and
//! each trie branch is allocated once, at its final size, instead of being inserted by a walk
//! from the root (which copies every node on the way down while the tree is being built).

use zinc_protocol::{Acl, StatPersisted, Zxid};

use super::acl::AclRef;
use super::node::Node;
use super::trie::Trie;
use super::{joined, split_parent, Tree};

/// One node as a snapshot lists it.
pub struct RestoredNode<'a> {
    pub path: &'a str,
    /// The parent's position in the list (the root's is 0, itself).
    pub parent: u32,
    pub stat: StatPersisted,
    pub data: Option<&'a [u8]>,
    /// Index into the ACL lists given to [`Tree::restore_all`].
    pub acl: usize,
}

/// Below this many nodes (in the list, at one depth for the tries, or under one parent for
/// that parent's trie) a restore runs on the calling thread only.
const PARALLEL_MIN: usize = 1 << 16;
/// Threads a restore uses at most.
const THREADS_MAX: usize = 4;

/// What one thread finds in its range of the list besides the nodes themselves.
struct Part {
    digest: u64,
    last_zxid: i64,
    /// Positions of the nodes with an ephemeral owner (ephemeral, container or TTL).
    kinds: Vec<usize>,
}

impl Tree {
    /// Builds a tree from `count` nodes, `node_at(i)` being the i-th (the root first, every
    /// parent before its children), and the ACL lists they refer to. Sessions and the zxid
    /// are restored separately. A list that does not describe a tree (a parent that does not
    /// come first or does not hold the path's parent, a path twice, a missing ACL list) is an
    /// error, never a panic.
    ///
    /// Two passes, each on up to `THREADS_MAX` threads for a large list: every node is checked
    /// and allocated (with its digest), without children; then, from the deepest level up,
    /// each parent gets the trie of its children, which lie in one array with a region per
    /// parent (the parents of one level are independent, so their tries are built in
    /// parallel; a parent that holds most of a large level has its one trie built on the
    /// threads instead).
    pub fn restore_all<'a>(
        acls: &[Vec<Acl>],
        count: usize,
        node_at: impl Fn(usize) -> RestoredNode<'a> + Sync,
    ) -> Result<Tree, String> {
        if count == 0 || node_at(0).path != "/" {
            return Err("the first node is not the root".to_string());
        }
        if u32::try_from(count).is_err() {
            return Err(format!("{count} nodes: more than positions can name"));
        }
        let mut tree = Tree::new();
        let acl_refs: Vec<_> = acls.iter().map(|list| tree.acls.intern(list)).collect();
        // Each thread writes its range's nodes and parents in place.
        let mut built: Vec<Option<Node>> = (0..count).map(|_| None).collect();
        let mut parents: Vec<u32> = vec![0; count];
        let parts = in_parts(&mut built, &mut parents, |start, nodes, parents| {
            build_part(start, nodes, parents, &acl_refs, &node_at)
        });
        tree.digest = 0;
        let mut last_zxid = 0;
        for part in parts {
            let part = part?;
            tree.digest = tree.digest.wrapping_add(part.digest);
            last_zxid = last_zxid.max(part.last_zxid);
            for index in part.kinds {
                let node = node_at(index);
                tree.index_kind(node.path, node.stat.ephemeral_owner);
            }
        }

        let Layout {
            starts,
            slot,
            level_starts,
            by_depth,
        } = Layout::of(&parents);
        drop(parents);
        let mut placed: Vec<Option<Node>> = (0..starts[count] as usize).map(|_| None).collect();
        for level in (1..level_starts.len() - 1).rev() {
            for index in &by_depth[level_starts[level]..level_starts[level + 1]] {
                let index = *index as usize;
                placed[slot[index] as usize] = built[index].take();
            }
            let level_parents = &by_depth[level_starts[level - 1]..level_starts[level]];
            let children = level_starts[level + 1] - level_starts[level];
            for (parent, trie) in level_tries(level_parents, &starts, &mut placed, children) {
                let parent = parent as usize;
                let trie = trie.map_err(|child| {
                    let name = String::from_utf8_lossy(child.name());
                    let path = node_at(parent).path;
                    let slash = if path == "/" { "" } else { "/" };
                    format!("node {path}{slash}{name} is listed twice")
                })?;
                let node = built[parent].as_mut().ok_or("a parent was placed early")?;
                *node.children_mut() = trie;
            }
        }
        tree.root = built[0].take().ok_or("the root was not built")?;
        tree.node_count = count as u64;
        tree.restore_last_zxid(Zxid(last_zxid));
        Ok(tree)
    }
}

/// Where each node goes while the tries are built, from each node's parent (the root's is 0).
/// Positions are `u32` (a list has fewer than 2^32 nodes): a million-node restore's layout
/// takes 20 MB of new memory instead of 32.
struct Layout {
    /// Each parent's children occupy `placed[starts[p]..starts[p + 1]]`.
    starts: Vec<u32>,
    /// Where node i goes among its parent's children.
    slot: Vec<u32>,
    /// `by_depth[level_starts[d]..level_starts[d + 1]]` are the nodes at depth d.
    level_starts: Vec<usize>,
    /// The nodes level by level, each level in list order.
    by_depth: Vec<u32>,
}

impl Layout {
    /// Parents must come before their children (checked by the caller).
    fn of(parents: &[u32]) -> Layout {
        let count = parents.len();
        // Children per parent, then (after the prefix sum) where each parent's run starts.
        let mut starts = vec![0u32; count + 1];
        let mut depth = vec![0u32; count];
        for index in 1..count {
            let parent = parents[index] as usize;
            starts[parent + 1] += 1;
            depth[index] = depth[parent] + 1;
        }
        for index in 0..count {
            starts[index + 1] += starts[index];
        }
        // Each parent's next free place, counted up from its start as its children come.
        let mut slot = vec![0u32; count];
        let mut filled = starts[..count].to_vec();
        for index in 1..count {
            let parent = parents[index] as usize;
            slot[index] = filled[parent];
            filled[parent] += 1;
        }
        drop(filled);
        let levels = depth
            .iter()
            .max()
            .map_or(0, |deepest| *deepest as usize + 1);
        let mut level_starts = vec![0usize; levels + 1];
        for level in &depth {
            level_starts[*level as usize + 1] += 1;
        }
        for level in 0..levels {
            level_starts[level + 1] += level_starts[level];
        }
        let mut by_depth = vec![0u32; count];
        let mut next = level_starts.clone();
        for (index, level) in depth.iter().enumerate() {
            by_depth[next[*level as usize]] = index as u32;
            next[*level as usize] += 1;
        }
        Layout {
            starts,
            slot,
            level_starts,
            by_depth,
        }
    }
}

/// Threads for `items` of work.
fn threads_for(items: usize) -> usize {
    if items < PARALLEL_MIN {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(THREADS_MAX))
    }
}

/// `work` over `nodes` and `parents` split into contiguous ranges, one per thread, each given
/// its range's start and its parts of the two slices; results in order.
fn in_parts<T: Send>(
    nodes: &mut [Option<Node>],
    parents: &mut [u32],
    work: impl Fn(usize, &mut [Option<Node>], &mut [u32]) -> T + Sync,
) -> Vec<T> {
    let count = nodes.len();
    let threads = threads_for(count);
    if threads == 1 {
        return vec![work(0, nodes, parents)];
    }
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = nodes
            .chunks_mut(per_thread)
            .zip(parents.chunks_mut(per_thread))
            .enumerate()
            .map(|(part, (nodes, parents))| {
                scope.spawn(move || work(part * per_thread, nodes, parents))
            })
            .collect::<Vec<_>>();
        joined(handles)
    })
}

/// Checks and builds the nodes from `start` on, one for each place in `nodes` (children come
/// later), with their parents' positions in `parents`.
fn build_part<'a>(
    start: usize,
    nodes: &mut [Option<Node>],
    parents: &mut [u32],
    acl_refs: &[AclRef],
    node_at: &impl Fn(usize) -> RestoredNode<'a>,
) -> Result<Part, String> {
    let mut part = Part {
        digest: 0,
        last_zxid: 0,
        kinds: Vec::new(),
    };
    for (offset, (place, parent_place)) in nodes.iter_mut().zip(parents.iter_mut()).enumerate() {
        let index = start + offset;
        let node = node_at(index);
        let acl = acl_refs
            .get(node.acl)
            .ok_or_else(|| format!("node {} names a missing ACL list", node.path))?;
        if index > 0 {
            let parent = node.parent as usize;
            let parent_path = split_parent(node.path).map(|(parent_path, _)| parent_path);
            if parent >= index || parent_path != Some(node_at(parent).path) {
                return Err(format!("node {} does not follow its parent", node.path));
            }
        }
        if node.stat.ephemeral_owner != 0 {
            part.kinds.push(index);
        }
        part.last_zxid = part.last_zxid.max(node.stat.czxid).max(node.stat.mzxid);
        let built = Node::restored(
            node.path,
            &node.stat,
            node.data,
            acl.clone(),
            Trie::default(),
        );
        part.digest = part.digest.wrapping_add(u64::from(built.digest()));
        *place = Some(built);
        *parent_place = node.parent;
    }
    Ok(part)
}

/// The children's trie of each of `parents` (one level, in list order), taking the children
/// out of their regions of `placed`; on several threads when the level has many children:
/// split by parents, or, when one parent holds most of them, within that parent's trie.
fn level_tries(
    parents: &[u32],
    starts: &[u32],
    placed: &mut [Option<Node>],
    children: usize,
) -> Vec<(u32, Result<Trie<Node>, Node>)> {
    let region_len = |parent: u32| {
        let p = parent as usize;
        (starts[p + 1] - starts[p]) as usize
    };
    // `trie_threads`: threads for one trie, for a parent with many children.
    let build = |parents: &[u32], placed: &mut [Option<Node>], offset: usize, trie_threads| {
        parents
            .iter()
            .filter(|parent| region_len(**parent) > 0)
            .map(|parent| {
                let p = *parent as usize;
                let region =
                    &mut placed[starts[p] as usize - offset..starts[p + 1] as usize - offset];
                let trie = if trie_threads > 1 && region.len() >= PARALLEL_MIN {
                    Trie::from_places_parallel(region, trie_threads)
                } else {
                    Trie::from_leaves(region.iter_mut().filter_map(Option::take))
                };
                (*parent, trie)
            })
            .collect::<Vec<_>>()
    };
    let threads = threads_for(children);
    if threads == 1 {
        return build(parents, placed, 0, 1);
    }
    let largest = parents.iter().map(|parent| region_len(*parent)).max();
    let largest = largest.unwrap_or(0);
    if parents.len() == 1 || (largest >= PARALLEL_MIN && largest * 2 > children) {
        // One parent holds most of the level: its trie gets the threads.
        return build(parents, placed, 0, threads);
    }
    // Parents in list order have their regions in the same order: split both at the same
    // parents, so each thread owns its parents' regions.
    let per_thread = parents.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut rest = placed;
        let mut offset = 0;
        let mut handles = Vec::new();
        for group in parents.chunks(per_thread) {
            let first = group[0] as usize;
            let last = group[group.len() - 1] as usize;
            let (first_start, end) = (starts[first] as usize, starts[last + 1] as usize);
            let (_, from_first) = std::mem::take(&mut rest).split_at_mut(first_start - offset);
            let (mine, after) = from_first.split_at_mut(end - first_start);
            rest = after;
            let group_offset = first_start;
            offset = end;
            handles.push(scope.spawn(move || build(group, mine, group_offset, 1)));
        }
        joined(handles).into_iter().flatten().collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Restores (path, parent, ACL list) triples with one ACL list available.
    fn restore_nodes(nodes: &[(&str, u32, usize)]) -> Result<Tree, String> {
        let at = |i: usize| RestoredNode {
            path: nodes[i].0,
            parent: nodes[i].1,
            stat: StatPersisted::default(),
            data: Some(b"x"),
            acl: nodes[i].2,
        };
        Tree::restore_all(&[Acl::open_unsafe()], nodes.len(), at)
    }

    fn restore(nodes: &[(&str, u32)]) -> Result<Tree, String> {
        let nodes: Vec<_> = nodes
            .iter()
            .map(|(path, parent)| (*path, *parent, 0))
            .collect();
        restore_nodes(&nodes)
    }

    #[test]
    fn lists_that_are_not_trees_are_errors() {
        for (nodes, why) in [
            (&[("/a", 0), ("/", 0)][..], "the first node is not the root"),
            (
                &[("/", 0), ("/a/b", 2), ("/a", 0)][..],
                "node /a/b does not follow its parent",
            ),
            (
                &[("/", 0), ("/a", 0), ("/b/c", 1)][..],
                "node /b/c does not follow its parent",
            ),
            (
                &[("/", 0), ("/a", 0), ("/a", 0)][..],
                "node /a is listed twice",
            ),
            (
                &[("/", 0), ("/a/", 0)][..],
                "node /a/ does not follow its parent",
            ),
            (&[][..], "the first node is not the root"),
        ] {
            assert_eq!(restore(nodes).err().as_deref(), Some(why), "{nodes:?}");
        }
        let error = restore_nodes(&[("/", 0, 0), ("/a", 0, 7)]).err();
        assert_eq!(error.as_deref(), Some("node /a names a missing ACL list"));
    }

    #[test]
    fn a_small_tree_comes_back_whole() {
        let tree =
            restore(&[("/", 0), ("/a", 0), ("/b", 0), ("/a/c", 1), ("/a/c/d", 3)]).expect("a tree");
        assert_eq!(tree.node_count(), 5);
        assert_eq!(tree.children("/a").expect("children of /a"), ["c"]);
        assert!(tree.stat("/a/c/d").is_some());
        assert!(
            tree.stat("/zookeeper").is_none(),
            "only what the list holds"
        );
    }

    #[test]
    fn a_directory_larger_than_a_thread_share_comes_back_whole() {
        // One parent holds most of the list: its trie is built on several threads (on a
        // machine with more than one CPU), the other parent's on the calling thread.
        let many = PARALLEL_MIN + 1000;
        let mut paths = vec!["/".to_string(), "/big".to_string(), "/small".to_string()];
        paths.extend((0..many).map(|i| format!("/big/n{i:07}")));
        paths.extend((0..3).map(|i| format!("/small/s{i}")));
        let parent_of = |path: &str| {
            if path.starts_with("/big/") {
                1
            } else if path.starts_with("/small/") {
                2
            } else {
                0
            }
        };
        let nodes: Vec<(&str, u32)> = paths
            .iter()
            .map(|path| (path.as_str(), parent_of(path)))
            .collect();
        let tree = restore(&nodes).expect("a tree");
        assert_eq!(tree.node_count(), paths.len() as u64);
        let mut children = tree.children("/big").expect("children of /big");
        children.sort();
        let expected: Vec<String> = (0..many).map(|i| format!("n{i:07}")).collect();
        assert_eq!(children, expected);
        assert_eq!(
            tree.children("/small").expect("children of /small").len(),
            3
        );

        // Four directories of a quarter each: the level is split among threads by parents.
        let quarter = PARALLEL_MIN / 4 + 100;
        let mut even = vec!["/".to_string()];
        even.extend((0..4).map(|d| format!("/d{d}")));
        for d in 0..4 {
            even.extend((0..quarter).map(|i| format!("/d{d}/n{i:07}")));
        }
        let parent_in = |path: &str| match path.get(..3) {
            Some(dir) if path.len() > 3 => dir[2..].parse::<u32>().map_or(0, |d| d + 1),
            _ => 0,
        };
        let mut even_nodes: Vec<(&str, u32)> = even
            .iter()
            .map(|path| (path.as_str(), parent_in(path)))
            .collect();
        let tree = restore(&even_nodes).expect("a tree");
        assert_eq!(tree.node_count(), even.len() as u64);
        for d in 0..4 {
            let children = tree.children(&format!("/d{d}")).expect("children");
            assert_eq!(children.len(), quarter, "/d{d}");
        }
        even_nodes.push(("/d2/n0000007", 3));
        assert_eq!(
            restore(&even_nodes).err().as_deref(),
            Some("node /d2/n0000007 is listed twice")
        );

        // The same list with one name twice among the many.
        let mut twice = nodes.clone();
        twice.push(("/big/n0012345", 1));
        assert_eq!(
            restore(&twice).err().as_deref(),
            Some("node /big/n0012345 is listed twice")
        );
    }
}
