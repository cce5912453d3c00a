//! Bulk restore from a snapshot: the whole tree is built bottom-up from the node list (parents
//! before children, each with its parent's position, as snapshots list them). Each node and
//! each trie branch is allocated once, at its final size, instead of being inserted by a walk
//! from the root (which copies every node on the way down while the tree is being built).

use zinc_protocol::{Acl, StatPersisted, Zxid};

use super::acl::AclRef;
use super::node::Node;
use super::trie::Trie;
use super::{split_parent, Tree};

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

/// Below this many nodes a restore runs on the calling thread only.
const PARALLEL_MIN: usize = 1 << 16;
/// Threads that build nodes at most.
const THREADS_MAX: usize = 4;

impl Tree {
    /// Builds a tree from `count` nodes, `node_at(i)` being the i-th (the root first, every
    /// parent before its children), and the ACL lists they refer to. Sessions and the zxid
    /// are restored separately. A list that does not describe a tree (a parent that does not
    /// come first or does not hold the path's parent, a path twice, a missing ACL list) is an
    /// error, never a panic.
    ///
    /// Three passes: the list is checked and each parent's children counted; the nodes are
    /// allocated (with their digests) on up to `THREADS_MAX` threads; then, from the last
    /// node back, each node gets its children's trie and is placed among its parent's
    /// children, in one array with a region per parent.
    pub fn restore_all<'a>(
        acls: &[Vec<Acl>],
        count: usize,
        node_at: impl Fn(usize) -> RestoredNode<'a> + Sync,
    ) -> Result<Tree, String> {
        if count == 0 || node_at(0).path != "/" {
            return Err("the first node is not the root".to_string());
        }
        let mut tree = Tree::new();
        let acl_refs: Vec<_> = acls.iter().map(|list| tree.acls.intern(list)).collect();
        let mut last_zxid = 0;
        // Each node's parent, and where each parent's children start in `placed` (the
        // children of node i end where those of node i + 1 start).
        let mut parents = vec![0u32; count];
        let mut starts = vec![0usize; count + 1];
        for (index, parent_slot) in parents.iter_mut().enumerate() {
            let node = node_at(index);
            if node.acl >= acl_refs.len() {
                return Err(format!("node {} names a missing ACL list", node.path));
            }
            tree.index_kind(node.path, node.stat.ephemeral_owner);
            last_zxid = last_zxid.max(node.stat.czxid).max(node.stat.mzxid);
            if index == 0 {
                continue;
            }
            let parent = node.parent as usize;
            let parent_path = split_parent(node.path).map(|(parent_path, _)| parent_path);
            if parent >= index || parent_path != Some(node_at(parent).path) {
                return Err(format!("node {} does not follow its parent", node.path));
            }
            *parent_slot = node.parent;
            starts[parent + 1] += 1;
        }
        for index in 0..count {
            starts[index + 1] += starts[index];
        }

        let (mut built, digest) = build_nodes(&acl_refs, count, &node_at);
        tree.digest = digest;

        let mut placed: Vec<Option<Node>> = (0..starts[count]).map(|_| None).collect();
        let mut filled = starts.clone();
        for index in (0..count).rev() {
            let mut node = built.pop().ok_or("a node was not built")?;
            let children = &mut placed[starts[index]..starts[index + 1]];
            if !children.is_empty() {
                let leaves = children.iter_mut().filter_map(Option::take);
                *node.children_mut() = Trie::from_leaves(leaves).map_err(|child| {
                    let name = String::from_utf8_lossy(child.name());
                    format!("node {}/{name} is listed twice", node_at(index).path)
                })?;
            }
            if index == 0 {
                tree.root = node;
            } else {
                let parent = parents[index] as usize;
                placed[filled[parent]] = Some(node);
                filled[parent] += 1;
            }
        }
        tree.node_count = count as u64;
        tree.restore_last_zxid(Zxid(last_zxid));
        Ok(tree)
    }
}

/// Every node of the list, without children, in list order, and the sum of their digests;
/// on several threads for a large list. ACL indexes are checked by the caller.
fn build_nodes<'a>(
    acl_refs: &[AclRef],
    count: usize,
    node_at: &(impl Fn(usize) -> RestoredNode<'a> + Sync),
) -> (Vec<Node>, u64) {
    let build = |range: std::ops::Range<usize>| {
        let mut digest = 0u64;
        let nodes: Vec<Node> = range
            .map(|index| {
                let node = node_at(index);
                let built = Node::restored(
                    node.path,
                    &node.stat,
                    node.data,
                    acl_refs[node.acl].clone(),
                    Trie::default(),
                );
                digest = digest.wrapping_add(u64::from(built.digest()));
                built
            })
            .collect();
        (nodes, digest)
    };
    let threads = if count < PARALLEL_MIN {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(THREADS_MAX))
    };
    if threads == 1 {
        return build(0..count);
    }
    let per_thread = count.div_ceil(threads);
    let parts: Vec<(Vec<Node>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|part| {
                let range = part * per_thread..count.min((part + 1) * per_thread);
                scope.spawn(move || build(range))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut nodes = Vec::with_capacity(count);
    let mut digest = 0u64;
    for (part, part_digest) in parts {
        nodes.extend(part);
        digest = digest.wrapping_add(part_digest);
    }
    (nodes, digest)
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
                "node //a is listed twice",
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
}
