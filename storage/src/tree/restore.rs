//! Bulk restore from a snapshot: the whole tree is built bottom-up in one pass over the node
//! list (parents before children, each with its parent's position, as snapshots list them).
//! Each node is allocated once, with its children trie already complete, instead of being
//! inserted by a walk from the root (which copies every node on the way down while the tree is
//! being built).

use zinc_protocol::{Acl, StatPersisted, Zxid};

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

impl Tree {
    /// Builds a tree from `count` nodes, `node_at(i)` being the i-th (the root first, every
    /// parent before its children), and the ACL lists they refer to. Sessions and the zxid
    /// are restored separately. A list that does not describe a tree (a parent that does not
    /// come first or does not hold the path's parent, a path twice, a missing ACL list) is an
    /// error, never a panic.
    pub fn restore_all<'a>(
        acls: &[Vec<Acl>],
        count: usize,
        node_at: impl Fn(usize) -> RestoredNode<'a>,
    ) -> Result<Tree, String> {
        if count == 0 || node_at(0).path != "/" {
            return Err("the first node is not the root".to_string());
        }
        let mut tree = Tree::new();
        let acl_refs: Vec<_> = acls.iter().map(|list| tree.acls.intern(list)).collect();
        tree.digest = 0;
        let mut last_zxid = 0;
        let mut pending: Vec<Vec<Node>> = (0..count).map(|_| Vec::new()).collect();
        for index in (0..count).rev() {
            let node = node_at(index);
            let acl = acl_refs
                .get(node.acl)
                .ok_or_else(|| format!("node {} names a missing ACL list", node.path))?
                .clone();
            let children =
                Trie::from_leaves(std::mem::take(&mut pending[index])).map_err(|child| {
                    let name = String::from_utf8_lossy(child.name());
                    format!("node {}/{name} is listed twice", node.path)
                })?;
            let built = Node::restored(node.path, &node.stat, node.data, acl, children);
            tree.digest = tree.digest.wrapping_add(u64::from(built.digest()));
            tree.index_kind(node.path, node.stat.ephemeral_owner);
            last_zxid = last_zxid.max(node.stat.czxid).max(node.stat.mzxid);
            if index == 0 {
                tree.root = built;
                continue;
            }
            let parent = node.parent as usize;
            let parent_path = split_parent(node.path).map(|(parent_path, _)| parent_path);
            if parent >= index || parent_path != Some(node_at(parent).path) {
                return Err(format!("node {} does not follow its parent", node.path));
            }
            pending[parent].push(built);
        }
        tree.node_count = count as u64;
        tree.restore_last_zxid(Zxid(last_zxid));
        Ok(tree)
    }
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
