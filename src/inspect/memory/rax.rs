//! How many nodes a radix tree (`rax.c`) has once it holds a set of stream IDs: what
//! `object.c`, `streamRadixTreeMemoryUsage`, multiplies its per-node estimate by.
//!
//! Inserting keys (`raxGenericInsert`) leaves a tree whose shape depends on the keys
//! only: a node where keys branch (one child per next byte), a node at the start of
//! every run of bytes that all keys below share (compressed when the run is longer than
//! one byte, `raxCompressNode`; split the same way when a later key branches inside it),
//! and an empty node where each key ends. So the count follows from the sorted keys.

use crate::rdb::StreamId;

/// A stream ID as a rax key: milliseconds then sequence, both big-endian
/// (`t_stream.c`, `streamEncodeID`).
pub fn key(id: StreamId) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.ms.to_be_bytes());
    k[8..].copy_from_slice(&id.seq.to_be_bytes());
    k
}

/// Nodes of a rax holding `keys` (sorted, distinct, all 16 bytes). An empty rax has its
/// head node (`raxNew`).
pub fn nodes(keys: &[[u8; 16]]) -> u64 {
    if keys.is_empty() {
        return 1;
    }
    count(keys, 0, true)
}

/// Nodes at and below the trie position shared by `keys` at `depth`; `starts` when a rax
/// node begins here (the head, or a child of a branching node).
fn count(keys: &[[u8; 16]], depth: usize, starts: bool) -> u64 {
    if depth == 16 {
        return 1; // where the key ends
    }
    // Children: runs of equal bytes at `depth`.
    let first = keys[0][depth];
    if keys.iter().all(|k| k[depth] == first) {
        // One child: part of a run (a compressed node, or a node of one byte).
        return starts as u64 + count(keys, depth + 1, false);
    }
    let mut total = 1; // the branching node
    let mut i = 0;
    while i < keys.len() {
        let b = keys[i][depth];
        let j = i + keys[i..].iter().take_while(|k| k[depth] == b).count();
        total += count(&keys[i..j], depth + 1, true);
        i = j;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[(u64, u64)]) -> Vec<[u8; 16]> {
        let mut v: Vec<_> = list.iter().map(|&(ms, seq)| key(StreamId { ms, seq })).collect();
        v.sort();
        v
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(nodes(&[]), 1);
        // The head compressed over all 16 bytes, and the node where the key ends.
        assert_eq!(nodes(&ids(&[(1, 1)])), 2);
    }

    #[test]
    fn two_keys_branching_at_the_last_byte() {
        // Head compressed over 15 bytes, a branching node, two end nodes.
        assert_eq!(nodes(&ids(&[(1, 1), (1, 2)])), 4);
    }

    #[test]
    fn two_keys_branching_earlier() {
        // (1,1) and (2,1) differ at byte 7: head run of 7 bytes, branch, then under each
        // child a run of 8 bytes and an end node.
        assert_eq!(nodes(&ids(&[(1, 1), (2, 1)])), 1 + 1 + 2 * 2);
    }

    #[test]
    fn a_child_that_branches_at_once_is_one_node() {
        // Under (1,·): 1 and 2 at the last byte. (1,1) (1,2) (2,1): branch at byte 7;
        // the 1-child runs 7 bytes then branches into two ends; the 2-child runs to its end.
        assert_eq!(nodes(&ids(&[(1, 1), (1, 2), (2, 1)])), 1 + 1 + (1 + 1 + 2) + 2);
    }
}
