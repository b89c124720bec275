//! Memory by key prefix, as a tree whose size stays bounded whatever the key count.
//!
//! A key is cut into segments after each separator byte (`--prefix-sep`, or by default
//! any of `:` `/` `|` `.`), at most [`MAX_DEPTH`] deep; a segment of digits (a number, or
//! a hex or UUID-like id with at least one digit) stands as `{n}`, so `user:1:name` and
//! `user:2:name` are one path, `user:` → `{n}:` → `name`. A node counts the keys below it,
//! their memory, and the memory of those without an expiry.
//!
//! The report's tree holds at most a budget of nodes, given out in input order: the first
//! keys to need a node get it; once the budget is spent, a key whose path needs a new
//! node is counted in the `(other)` child of the deepest node it has. Each batch builds a
//! tree of its own with no budget (its size is bounded by the batch's), and the joiner
//! merges them in input order, taking each batch's nodes in the order they were created,
//! that is in the order of the keys that first needed them: the result is the tree one
//! pass over every key would build, the same for any thread count and batch size.
//! Once the joiner's budget is spent its tree gains no node but `(other)` ones: batches
//! begun after that count their keys against a frozen copy of it ([`Ends`]: where each
//! key's path ends in it, and whether in that node's `(other)`), which is what merging
//! their own trees would have added, without building them.
//!
//! Nodes live in one vector (children linked from their parent), their names in one byte
//! buffer, and a single open-addressed table finds a child by (parent, name): one probe
//! per level, no allocation per key. The last key's path is remembered, so keys sharing
//! it (`user:{n}:name` after `user:{n}:name`) compare bytes instead of hashing.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

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
    // Most segments are words: the first byte that is no hex digit settles it, before
    // any digit is counted.
    let id_like = !body.is_empty() && body.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-') && {
        let digits = body.iter().filter(|b| b.is_ascii_digit()).count();
        digits > 0 && (digits == body.len() || body.len() >= 8)
    };
    if id_like {
        let mut text = *b"{n}\0";
        text[3] = sep.first().copied().unwrap_or(0);
        Segment::Id { text, len: 3 + sep.len() }
    } else {
        Segment::Bytes(seg)
    }
}

/// "No node": the root is never anyone's child, so 0 ends a sibling list.
const NONE: u32 = 0;

/// A node of the tree, in [`Tree::nodes`] (0 is the root).
#[derive(Debug, Clone)]
struct Node {
    totals: Totals,
    parent: u32,
    /// Its name: `names[name_at..name_at + name_len]`.
    name_at: usize,
    name_len: usize,
    /// Its hash in the child table (kept for growing the table).
    hash: u64,
    first_child: u32,
    next_sibling: u32,
    /// An `(other)` node (a key segment named "(other)" is a node of its own).
    other: bool,
}

/// The tree, with its node budget.
#[derive(Debug, Clone)]
pub struct Tree {
    nodes: Vec<Node>,
    names: Vec<u8>,
    /// Open addressing, linear probing: the high half of a node's hash and its index
    /// ([`slot_of`]), 0 for an empty slot; a power-of-two length, at most half full.
    slots: Vec<u64>,
    budget: usize,
    /// The path of the last key added: `path[..path_len]` node indices, level by level.
    path: [u32; MAX_DEPTH],
    path_len: usize,
}

/// A node as the report reads it.
#[derive(Clone, Copy)]
pub struct NodeRef<'t> {
    tree: &'t Tree,
    id: u32,
}

impl<'t> NodeRef<'t> {
    pub fn totals(&self) -> Totals {
        self.tree.node(self.id).totals
    }

    pub fn name(&self) -> &'t [u8] {
        self.tree.name(self.id)
    }

    /// Its children, in no particular order (the report sorts them).
    pub fn children(&self) -> impl Iterator<Item = NodeRef<'t>> + 't {
        let tree = self.tree;
        let mut next = tree.node(self.id).first_child;
        std::iter::from_fn(move || {
            (next != NONE).then(|| {
                let id = next;
                next = tree.node(id).next_sibling;
                NodeRef { tree, id }
            })
        })
    }
}

/// A table slot: the hash's high half (compared before the node is read) and the index
/// (never 0: the root is in no slot).
fn slot_of(hash: u64, id: u32) -> u64 {
    (hash >> 32 << 32) | u64::from(id)
}

fn hash_of(parent: u32, name: &[u8]) -> u64 {
    let mut h = QuickHasher(u64::from(parent));
    h.write(name);
    // The multiply leaves the low bits weak, and they pick the slot: fold the high in.
    let h = h.finish();
    h ^ (h >> 32)
}

impl Tree {
    /// A tree of at most `budget` nodes (`usize::MAX`: as many as the keys need).
    pub fn new(budget: usize) -> Tree {
        let root = Node {
            totals: Totals::default(),
            parent: NONE,
            name_at: 0,
            name_len: 0,
            hash: 0,
            first_child: NONE,
            next_sibling: NONE,
            other: false,
        };
        Tree {
            nodes: vec![root],
            names: Vec::new(),
            slots: Vec::new(),
            budget: budget.max(1),
            path: [NONE; MAX_DEPTH],
            path_len: 0,
        }
    }

    /// A tree whose size only the keys bound (a batch's own).
    pub fn unbounded() -> Tree {
        Tree::new(usize::MAX)
    }

    pub fn root(&self) -> NodeRef<'_> {
        NodeRef { tree: self, id: 0 }
    }

    /// How many nodes it holds (the root included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    fn node(&self, id: u32) -> &Node {
        &self.nodes[id as usize]
    }

    fn name(&self, id: u32) -> &[u8] {
        let n = self.node(id);
        &self.names[n.name_at..n.name_at + n.name_len]
    }

    /// The child of `parent` named `name`: `Ok(its index)`, or `Err(the empty slot where
    /// it would go)`. The table must have room (see [`Tree::reserve`]).
    fn find(&self, parent: u32, name: &[u8], hash: u64, other: bool) -> Result<u32, usize> {
        let mask = self.slots.len() - 1;
        let tag = hash >> 32;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return Err(i);
            }
            let id = slot as u32;
            let n = self.node(id);
            if slot >> 32 == tag && n.parent == parent && n.other == other && self.name(id) == name {
                return Ok(id);
            }
            i = (i + 1) & mask;
        }
    }

    /// Room in the table for one more node.
    fn reserve(&mut self) {
        if 2 * (self.nodes.len() + 1) > self.slots.len() {
            let len = (self.slots.len() * 2).max(64);
            self.slots = vec![0; len];
            let mask = len - 1;
            for (id, n) in self.nodes.iter().enumerate().skip(1) {
                let mut i = n.hash as usize & mask;
                while self.slots[i] != 0 {
                    i = (i + 1) & mask;
                }
                self.slots[i] = slot_of(n.hash, id as u32);
            }
        }
    }

    /// Adds the child `name` of `parent` in `slot` (where [`Tree::find`] found no such
    /// child).
    fn insert(&mut self, parent: u32, name: &[u8], hash: u64, slot: usize, other: bool) -> u32 {
        let id = u32::try_from(self.nodes.len()).unwrap_or_else(|_| unreachable!("a tree of 4 G nodes"));
        self.slots[slot] = slot_of(hash, id);
        let p = &mut self.nodes[parent as usize];
        let next_sibling = p.first_child;
        p.first_child = id;
        self.nodes.push(Node {
            totals: Totals::default(),
            parent,
            name_at: self.names.len(),
            name_len: name.len(),
            hash,
            first_child: NONE,
            next_sibling,
            other,
        });
        self.names.extend_from_slice(name);
        id
    }

    /// The child `name` of `parent`, added when missing; `None` when missing and the
    /// budget is spent.
    fn child(&mut self, parent: u32, name: &[u8]) -> Option<u32> {
        self.reserve();
        let hash = hash_of(parent, name);
        match self.find(parent, name, hash, false) {
            Ok(id) => Some(id),
            Err(slot) if self.nodes.len() < self.budget => Some(self.insert(parent, name, hash, slot, false)),
            Err(_) => None,
        }
    }

    /// The `(other)` child of `parent` (made whatever the budget: one per parent at most).
    fn other(&mut self, parent: u32) -> u32 {
        self.reserve();
        let hash = hash_of(parent, OTHER);
        match self.find(parent, OTHER, hash, true) {
            Ok(id) => id,
            Err(slot) => self.insert(parent, OTHER, hash, slot, true),
        }
    }

    /// Counts one key (its segments) with `t`.
    pub fn add<S: AsRef<[u8]>>(&mut self, segments: impl Iterator<Item = S>, t: &Totals) {
        self.nodes[0].totals.add(t);
        let mut node = 0;
        for (depth, seg) in segments.enumerate() {
            let seg = seg.as_ref();
            // The last key's path, as long as this one follows it.
            let cached = depth < self.path_len && self.name(self.path[depth]) == seg;
            let next = if cached {
                self.path[depth]
            } else {
                self.path_len = depth;
                match self.child(node, seg) {
                    Some(id) => {
                        self.path[depth] = id;
                        self.path_len = depth + 1;
                        id
                    }
                    None => {
                        let o = self.other(node);
                        self.nodes[o as usize].totals.add(t);
                        return;
                    }
                }
            };
            node = next;
            self.nodes[node as usize].totals.add(t);
        }
    }

    /// Adds a later batch's tree. Its nodes are taken in the order they were made (a
    /// parent before its children, and in the order of the keys that first needed them),
    /// so the budget goes to the same nodes as if every key had been added here one by
    /// one. A node that finds no room goes whole, its subtree's totals, into its parent's
    /// `(other)`, and nothing below it is looked at.
    pub fn merge(&mut self, other: &Tree) {
        // Where each of `other`'s nodes went: a node here, or [`NONE`] (folded away).
        let mut into = vec![NONE; other.nodes.len()];
        self.nodes[0].totals.add(&other.nodes[0].totals);
        for (id, n) in other.nodes.iter().enumerate().skip(1) {
            // The root maps to the root (0); any other node mapped to 0 was folded away,
            // and so is everything below it.
            let parent = into[n.parent as usize];
            if parent == NONE && n.parent != 0 {
                continue;
            }
            let name = other.name(id as u32);
            let hash = if parent == n.parent { n.hash } else { hash_of(parent, name) };
            self.reserve();
            let to = match self.find(parent, name, hash, n.other) {
                Ok(to) => to,
                Err(slot) if n.other || self.nodes.len() < self.budget => {
                    self.insert(parent, name, hash, slot, n.other)
                }
                Err(_) => {
                    let o = self.other(parent);
                    self.nodes[o as usize].totals.add(&n.totals);
                    continue;
                }
            };
            self.nodes[to as usize].totals.add(&n.totals);
            into[id] = to;
        }
        // The remembered path may name nodes of a shape this merge changed: forget it.
        self.path_len = 0;
    }

    /// No node can be added but `(other)` ones: the budget is spent.
    pub fn full(&self) -> bool {
        self.nodes.len() >= self.budget
    }

    /// The child of `parent` named `name`, if there is one (never an `(other)` node).
    fn lookup(&self, parent: u32, name: &[u8]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        self.find(parent, name, hash_of(parent, name), false).ok()
    }

    /// Adds the keys a batch counted against a frozen copy of this tree (see [`Ends`]):
    /// each key to the nodes of its path, and to the `(other)` of the last when a
    /// segment found no node.
    pub fn add_ends(&mut self, ends: &Ends) {
        let mut all: Vec<(&(u32, bool), &Totals)> = ends.ends.iter().collect();
        // In node order, so that the `(other)` nodes made here come in the same order
        // whatever the map's.
        all.sort_unstable_by_key(|(k, _)| **k);
        for (&(node, other), t) in all {
            let mut id = node;
            loop {
                self.nodes[id as usize].totals.add(t);
                if id == 0 {
                    break;
                }
                id = self.nodes[id as usize].parent;
            }
            if other {
                let o = self.other(node);
                self.nodes[o as usize].totals.add(t);
            }
        }
    }
}

/// Keys counted against a frozen copy of the joiner's tree, taken once its budget was
/// spent: no node is made, a key's totals are kept by where its path ends (the node, and
/// whether a segment was left over, for that node's `(other)`), and the joiner adds them
/// up the path ([`Tree::add_ends`]). That is what the merge of the batch's own tree would
/// add: a path the frozen tree lacks would find no room in the joiner's either.
pub struct Ends {
    base: Arc<Tree>,
    ends: HashMap<(u32, bool), Totals, BuildHasherDefault<QuickHasher>>,
    path: [u32; MAX_DEPTH],
    path_len: usize,
}

impl Ends {
    pub fn new(base: Arc<Tree>) -> Ends {
        Ends { base, ends: HashMap::default(), path: [NONE; MAX_DEPTH], path_len: 0 }
    }

    /// Counts one key (its segments) with `t`.
    pub fn add<S: AsRef<[u8]>>(&mut self, segments: impl Iterator<Item = S>, t: &Totals) {
        let (mut node, mut other) = (0, false);
        for (depth, seg) in segments.enumerate() {
            let seg = seg.as_ref();
            // The last key's path, as long as this one follows it.
            if depth < self.path_len && self.base.name(self.path[depth]) == seg {
                node = self.path[depth];
                continue;
            }
            self.path_len = depth;
            match self.base.lookup(node, seg) {
                Some(id) => {
                    self.path[depth] = id;
                    self.path_len = depth + 1;
                    node = id;
                }
                None => {
                    other = true;
                    break;
                }
            }
        }
        self.ends.entry((node, other)).or_default().add(t);
    }
}

/// A batch's prefix counts: a tree of its own while the joiner's has room, else [`Ends`].
pub enum Counted {
    Tree(Tree),
    Ends(Ends),
}

impl Counted {
    /// A tree of its own, or counts against `frozen` when the joiner's tree is full.
    pub fn new(frozen: Option<&Arc<Tree>>) -> Counted {
        match frozen {
            Some(t) => Counted::Ends(Ends::new(Arc::clone(t))),
            None => Counted::Tree(Tree::unbounded()),
        }
    }

    pub fn add<S: AsRef<[u8]>>(&mut self, segments: impl Iterator<Item = S>, t: &Totals) {
        match self {
            Counted::Tree(tree) => tree.add(segments, t),
            Counted::Ends(ends) => ends.add(segments, t),
        }
    }

    /// Joins the batch's counts into the joiner's tree.
    pub fn join_into(&self, into: &mut Tree) {
        match self {
            Counted::Tree(tree) => into.merge(tree),
            Counted::Ends(ends) => into.add_ends(ends),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(cut: &Cut, k: &str) -> Vec<String> {
        cut.segments(k.as_bytes()).map(|s| String::from_utf8_lossy(s.as_ref()).into_owned()).collect()
    }

    /// The tree as sorted (path, totals) lines.
    fn dump(t: &Tree) -> Vec<(String, Totals)> {
        fn walk(n: NodeRef<'_>, path: String, out: &mut Vec<(String, Totals)>) {
            out.push((path.clone(), n.totals()));
            for c in n.children() {
                walk(c, format!("{path}/{}", String::from_utf8_lossy(c.name())), out);
            }
        }
        let mut out = Vec::new();
        walk(t.root(), String::new(), &mut out);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
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
        assert_eq!(t.root().totals().keys, 5);
        let sum: u64 = t.root().children().map(|c| c.totals().keys).sum();
        assert_eq!(sum, 5, "every key below the root");
        assert!(t.root().children().any(|c| c.name() == OTHER));
    }

    /// Batches joined in order give the tree one pass over the keys gives, for any cut
    /// of the keys into batches, budget or not, before and after the budget is spent.
    #[test]
    fn merged_batches_are_the_tree_of_the_whole() {
        let cut = Cut::default();
        let mut keys = Vec::new();
        for i in 0..300 {
            keys.push(format!("user:{i}:name"));
            keys.push(format!("sess:{}", (b'a' + (i % 26) as u8) as char).repeat(1 + i as usize / 26));
            if i % 7 == 0 {
                keys.push(format!("q:{}:x:y:z", i % 5));
            }
            // A segment named like the node of what got none is a node of its own.
            if i % 11 == 0 {
                keys.push(format!("(other):{}", i % 4));
            }
        }
        for budget in [1, 2, 5, 12, 40, 1000] {
            let mut whole = Tree::new(budget);
            for (i, k) in keys.iter().enumerate() {
                let t = Totals { keys: 1, memory_bytes: i as u64, no_ttl_bytes: (i % 3) as u64 };
                whole.add(cut.segments(k.as_bytes()), &t);
            }
            for batch in [1, 3, 17, 100, keys.len()] {
                // As the joiner does: batch trees merged until the budget is spent, then
                // batches counted against a frozen copy.
                let mut joined = Tree::new(budget);
                let mut frozen: Option<Arc<Tree>> = None;
                for (b, chunk) in keys.chunks(batch).enumerate() {
                    let mut part = Counted::new(frozen.as_ref());
                    for (j, k) in chunk.iter().enumerate() {
                        let i = b * batch + j;
                        let t = Totals { keys: 1, memory_bytes: i as u64, no_ttl_bytes: (i % 3) as u64 };
                        part.add(cut.segments(k.as_bytes()), &t);
                    }
                    part.join_into(&mut joined);
                    if joined.full() && frozen.is_none() {
                        frozen = Some(Arc::new(joined.clone()));
                    }
                }
                assert_eq!(dump(&joined), dump(&whole), "budget {budget}, batches of {batch}");
                let real = dump(&joined).iter().filter(|(p, _)| !p.ends_with("(other)")).count();
                assert!(real <= budget, "budget {budget}: {real} nodes");
            }
        }
    }
}
