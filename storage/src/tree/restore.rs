//! Bulk restore from a snapshot: the whole tree is built bottom-up in one pass over the node
//! list (parents before children, as snapshots list them). Each node is allocated once, with
//! its children trie already complete, instead of being inserted by a walk from the root (which
//! copies every node on the way down while the tree is being built).

use std::collections::HashMap;

use zinc_protocol::{Acl, StatPersisted, Zxid};

use super::node::Node;
use super::trie::Trie;
use super::{split_parent, Tree};

/// One node as a snapshot lists it.
pub struct RestoredNode<'a> {
    pub path: &'a str,
    pub stat: StatPersisted,
    pub data: Option<&'a [u8]>,
    /// Index into the ACL lists given to [`Tree::restore_all`].
    pub acl: usize,
}

impl Tree {
    /// Builds a tree from `nodes` (the root first, every parent before its children) and the
    /// ACL lists they refer to. Sessions and the zxid are restored separately. A list that
    /// does not describe a tree (a node before its parent, a path twice, a malformed path, a
    /// missing ACL list) is an error, never a panic.
    pub fn restore_all(acls: &[Vec<Acl>], nodes: &[RestoredNode<'_>]) -> Result<Tree, String> {
        let parents = parent_indexes(nodes)?;
        let mut tree = Tree::new();
        let acl_refs: Vec<_> = acls.iter().map(|list| tree.acls.intern(list)).collect();
        tree.digest = 0;
        let mut last_zxid = 0;
        let mut pending: Vec<Vec<Node>> = (0..nodes.len()).map(|_| Vec::new()).collect();
        for (index, node) in nodes.iter().enumerate().rev() {
            let acl = acl_refs
                .get(node.acl)
                .ok_or_else(|| format!("node {} names a missing ACL list", node.path))?
                .clone();
            let mut children = Trie::default();
            for child in std::mem::take(&mut pending[index]) {
                // Paths are unique (checked above), so names under one parent are too.
                let _ = children.insert_new(child);
            }
            let built = Node::restored(node.path, &node.stat, node.data, acl, children);
            tree.digest = tree.digest.wrapping_add(u64::from(built.meta().digest));
            tree.index_kind(node.path, node.stat.ephemeral_owner);
            last_zxid = last_zxid.max(node.stat.czxid).max(node.stat.mzxid);
            match index {
                0 => tree.root = built,
                _ => pending[parents[index] as usize].push(built),
            }
        }
        tree.node_count = nodes.len() as u64;
        tree.restore_last_zxid(Zxid(last_zxid));
        Ok(tree)
    }
}

/// Each node's parent's index (0 for the root itself), checking the list's shape.
fn parent_indexes(nodes: &[RestoredNode<'_>]) -> Result<Vec<u32>, String> {
    if nodes.first().map(|node| node.path) != Some("/") {
        return Err("the first node is not the root".to_string());
    }
    let count = u32::try_from(nodes.len()).map_err(|_| "too many nodes".to_string())?;
    let mut index: HashMap<&str, u32> = HashMap::with_capacity(nodes.len());
    index.insert("/", 0);
    let mut parents = vec![0u32; count as usize];
    for (at, node) in (1..count).zip(&nodes[1..]) {
        let (parent_path, _) =
            split_parent(node.path).ok_or_else(|| format!("malformed path {:?}", node.path))?;
        let parent = *index
            .get(parent_path)
            .ok_or_else(|| format!("node {} is listed before its parent", node.path))?;
        if index.insert(node.path, at).is_some() {
            return Err(format!("node {} is listed twice", node.path));
        }
        parents[at as usize] = parent;
    }
    Ok(parents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &str) -> RestoredNode<'_> {
        RestoredNode {
            path,
            stat: StatPersisted::default(),
            data: Some(b"x"),
            acl: 0,
        }
    }

    fn restore(paths: &[&str]) -> Result<Tree, String> {
        let nodes: Vec<_> = paths.iter().map(|path| node(path)).collect();
        Tree::restore_all(&[Acl::open_unsafe()], &nodes)
    }

    #[test]
    fn lists_that_are_not_trees_are_errors() {
        for (paths, why) in [
            (&["/a", "/"][..], "the first node is not the root"),
            (
                &["/", "/a/b", "/a"][..],
                "node /a/b is listed before its parent",
            ),
            (&["/", "/a", "/a"][..], "node /a is listed twice"),
            (&["/", "/a/"][..], "malformed path \"/a/\""),
            (&[][..], "the first node is not the root"),
        ] {
            assert_eq!(restore(paths).err().as_deref(), Some(why), "{paths:?}");
        }
        let nodes = [
            node("/"),
            RestoredNode {
                acl: 7,
                ..node("/a")
            },
        ];
        let error = Tree::restore_all(&[Acl::open_unsafe()], &nodes).err();
        assert_eq!(error.as_deref(), Some("node /a names a missing ACL list"));
    }

    #[test]
    fn a_small_tree_comes_back_whole() {
        let tree = restore(&["/", "/a", "/b", "/a/c", "/a/c/d"]).expect("a tree");
        assert_eq!(tree.node_count(), 5);
        let mut children = tree.children("/a").expect("children of /a");
        children.sort();
        assert_eq!(children, ["c"]);
        assert!(tree.stat("/a/c/d").is_some());
        assert!(
            tree.stat("/zookeeper").is_none(),
            "only what the list holds"
        );
    }
}
