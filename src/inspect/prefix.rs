//! Memory by key prefix, as a tree whose size stays bounded whatever the key count.
//!
//! A key is cut into segments after each separator byte (`--prefix-sep`, or by default
//! any of `:` `/` `|` `.`), at most [`MAX_DEPTH`] deep; a segment of digits (a number, or
//! a hex or UUID-like id with at least one digit) stands as `{n}`, so `user:1:name` and
//! `user:2:name` are one path, `user:` → `{n}:` → `name`. A node counts the keys below it,
//! their memory, and the memory of those without an expiry. The tree holds at most a
//! budget of nodes: once it is spent, a key whose path needs a new node is counted in
//! the `(other)` child of the deepest node it has. Batches build trees of their own,
//! joined in input order, so the tree is the same for any number of threads.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A quick hash for short segments (the tree's own keys, not attacker-chosen in a way
/// that matters: a snapshot's owner picks its keys): 8 bytes at a time, multiplied and
/// rotated (the scheme of rustc's FxHasher).
#[derive(Default, Clone, Copy)]
pub struct QuickHasher(u64);

impl Hasher for QuickHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().unwrap_or_default());
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(tail) ^ bytes.len() as u64).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Children = HashMap<Vec<u8>, Node, BuildHasherDefault<QuickHasher>>;

/// How deep a key is cut.
pub const MAX_DEPTH: usize = 4;

/// The name of the child that holds what did not get a node of its own.
pub const OTHER: &[u8] = b"(other)";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub keys: u64,
    pub memory_bytes: u64,
    pub no_ttl_bytes: u64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.keys += o.keys;
        self.memory_bytes += o.memory_bytes;
        self.no_ttl_bytes += o.no_ttl_bytes;
    }
}

#[derive(Debug, Default)]
pub struct Node {
    pub totals: Totals,
    pub children: Children,
}

/// How keys are cut: the bytes that end a segment.
#[derive(Debug, Clone)]
pub struct Cut {
    separator: [bool; 256],
}

impl Default for Cut {
    fn default() -> Cut {
        Cut::new(b":/|.")
    }
}

impl Cut {
    /// Cuts after any byte of `separators`.
    pub fn new(separators: &[u8]) -> Cut {
        let mut separator = [false; 256];
        for &b in separators {
            separator[b as usize] = true;
        }
        Cut { separator }
    }

    /// The segments of `key`, each with its separator, digits as `{n}`.
    pub fn segments<'k>(&'k self, key: &'k [u8]) -> impl Iterator<Item = Segment<'k>> + 'k {
        let seps = &self.separator;
        let mut rest = key;
        let mut depth = 0;
        std::iter::from_fn(move || {
            if rest.is_empty() || depth == MAX_DEPTH {
                return None;
            }
            depth += 1;
            // The last level takes the rest of the key.
            let end = if depth == MAX_DEPTH {
                rest.len()
            } else {
                rest.iter().position(|&b| seps[b as usize]).map_or(rest.len(), |i| i + 1)
            };
            let (seg, tail) = rest.split_at(end);
            rest = tail;
            Some(normalize(seg))
        })
    }
}

/// A segment of a key: its bytes, or `{n}` and the separator after it.
#[derive(Debug, Clone, Copy)]
pub enum Segment<'k> {
    Bytes(&'k [u8]),
    /// `{n}` with (`len` 4) or without (`len` 3) a separator.
    Id {
        text: [u8; 4],
        len: usize,
    },
}

impl AsRef<[u8]> for Segment<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Segment::Bytes(b) => b,
            Segment::Id { text, len } => &text[..*len],
        }
    }
}

/// A segment of digits (possibly a hex or UUID-like id holding a digit) as `{n}`, its
/// separator kept.
fn normalize(seg: &[u8]) -> Segment<'_> {
    let (body, sep) = match seg.last() {
        Some(b) if !b.is_ascii_alphanumeric() && seg.len() > 1 => (&seg[..seg.len() - 1], &seg[seg.len() - 1..]),
        _ => (seg, &seg[..0]),
    };
    let digits = body.iter().filter(|b| b.is_ascii_digit()).count();
    let id_like = !body.is_empty()
        && digits > 0
        && body.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-')
        && (digits == body.len() || body.len() >= 8);
    if id_like {
        let mut text = *b"{n}\0";
        text[3] = sep.first().copied().unwrap_or(0);
        Segment::Id { text, len: 3 + sep.len() }
    } else {
        Segment::Bytes(seg)
    }
}

/// The tree, with its node budget.
#[derive(Debug)]
pub struct Tree {
    pub root: Node,
    nodes: usize,
    budget: usize,
}

impl Tree {
    pub fn new(budget: usize) -> Tree {
        Tree { root: Node::default(), nodes: 1, budget: budget.max(1) }
    }

    /// Counts one key (its segments) with `t`.
    pub fn add<S: AsRef<[u8]>>(&mut self, segments: impl Iterator<Item = S>, t: &Totals) {
        let (mut node, mut nodes, budget) = (&mut self.root, self.nodes, self.budget);
        node.totals.add(t);
        for seg in segments {
            if !node.children.contains_key(seg.as_ref()) {
                let fits = nodes < budget;
                let name = if fits { seg.as_ref().to_vec() } else { OTHER.to_vec() };
                if !node.children.contains_key(&name) {
                    nodes += 1;
                }
                node = node.children.entry(name).or_default();
                node.totals.add(t);
                if !fits {
                    break;
                }
                continue;
            }
            node = node.children.get_mut(seg.as_ref()).unwrap_or_else(|| unreachable!("checked above"));
            node.totals.add(t);
        }
        self.nodes = nodes;
    }

    /// Adds a later batch's tree, node by node (its paths, in the order of the budget).
    pub fn merge(&mut self, other: Tree) {
        fn walk(into: &mut Tree, path: &mut Vec<Vec<u8>>, node: Node) {
            // The node's own share (keys that end here) goes in with its path.
            let mut own = node.totals;
            let mut children: Vec<(Vec<u8>, Node)> = node.children.into_iter().collect();
            // Same order for any hash seed: by name.
            children.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, c) in &children {
                own.keys -= c.totals.keys;
                own.memory_bytes -= c.totals.memory_bytes;
                own.no_ttl_bytes -= c.totals.no_ttl_bytes;
            }
            if own != Totals::default() {
                into.add(path.iter(), &own);
            }
            for (name, c) in children {
                path.push(name);
                walk(into, path, c);
                path.pop();
            }
        }
        walk(self, &mut Vec::new(), other.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(cut: &Cut, k: &str) -> Vec<String> {
        cut.segments(k.as_bytes()).map(|s| String::from_utf8_lossy(s.as_ref()).into_owned()).collect()
    }

    #[test]
    fn keys_are_cut_at_separators_with_ids_folded() {
        let cut = Cut::default();
        assert_eq!(segs(&cut, "user:1000:profile"), ["user:", "{n}:", "profile"]);
        assert_eq!(segs(&cut, "session/9f86d081884c7d65/data"), ["session/", "{n}/", "data"]);
        assert_eq!(segs(&cut, "a:b:c:d:e:f"), ["a:", "b:", "c:", "d:e:f"]);
        assert_eq!(segs(&cut, "plain"), ["plain"]);
        assert_eq!(segs(&cut, "v2:beef"), ["v2:", "beef"]);
        assert_eq!(segs(&Cut::new(b"_"), "a_12_b"), ["a_", "{n}_", "b"]);
    }

    #[test]
    fn the_budget_folds_new_paths_into_other_and_totals_hold() {
        let cut = Cut::default();
        let mut t = Tree::new(4);
        let one = Totals { keys: 1, memory_bytes: 10, no_ttl_bytes: 10 };
        for k in ["a:1", "a:2", "b:x", "c:y", "d:z"] {
            t.add(cut.segments(k.as_bytes()), &one);
        }
        assert_eq!(t.root.totals.keys, 5);
        let sum: u64 = t.root.children.values().map(|c| c.totals.keys).sum();
        assert_eq!(sum, 5, "every key below the root");
        assert!(t.root.children.contains_key(OTHER), "{:?}", t.root.children.keys());
        // Merging batch trees gives the tree of the whole.
        let mut whole = Tree::new(1000);
        let (mut x, mut y) = (Tree::new(1000), Tree::new(1000));
        for (i, k) in ["a:1", "a:2", "b:x", "a:3:q"].iter().enumerate() {
            let tree = if i < 2 { &mut x } else { &mut y };
            tree.add(cut.segments(k.as_bytes()), &one);
            whole.add(cut.segments(k.as_bytes()), &one);
        }
        x.merge(y);
        assert_eq!(x.root.totals, whole.root.totals);
        assert_eq!(x.root.children[&b"a:"[..]].totals, whole.root.children[&b"a:"[..]].totals);
    }
}
