//! Streams: `objectComputeSize` counts the stream struct, its radix tree by
//! `streamRadixTreeMemoryUsage` (16 bytes per key, `sizeof(raxNode)` plus 30 words per
//! node), every listpack's allocation, and per consumer group its struct, PEL tree and
//! `streamNACK`s, per consumer its struct, name length and PEL tree.

use super::collections::Lp;
use super::encode::{self, Item};
use super::{raw, rax, Model, Sized};
use crate::rdb::{Record, Str, Stream, StreamId};
use std::collections::HashSet;

/// `t_stream.c`, `STREAM_LISTPACK_MAX_PRE_ALLOCATE`: what XADD allocates for a new node.
const MAX_PRE_ALLOCATE: u64 = 4096;
/// `STREAM_LISTPACK_MAX_SIZE`: the node size limit when `stream-node-max-bytes` is 0.
const LISTPACK_MAX_SIZE: u64 = 1 << 30;
/// `STREAM_ITEM_FLAG_SAMEFIELDS`.
const SAMEFIELDS: i64 = 2;

/// `object.c`, `streamRadixTreeMemoryUsage`.
fn tree(numele: u64, numnodes: u64) -> u64 {
    numele * 16 + numnodes * 4 + numnodes * 8 * 30
}

/// The struct sizes of a version: `stream`, `streamCG`, `streamConsumer`, `streamNACK`
/// (8.2's measured on 8.2.3: its sources are not at hand).
fn structs(m: &Model) -> (u64, u64, u64, u64) {
    if m.kvobj() {
        (112, 40, 32, 32)
    } else if m.at_least(7, 2) {
        (80, 40, 32, 24)
    } else if m.listpacks() {
        (80, 40, 24, 24)
    } else {
        (40, 32, 24, 24)
    }
}

pub(super) fn stream(m: &Model, rec: &Record<'_>, s: &Stream<'_>) -> Sized {
    let largest = s.entries.iter().flat_map(|e| e.fields.iter()).map(|(f, v)| f.len().max(v.len()) as u64).max();
    let (stream_struct, cg_struct, consumer_struct, nack) = structs(m);
    let base = m.base(rec.key.len() as u64, rec.expire_at_ms.is_some());

    // The nodes: the file's listpacks, or those XADD builds again. Each counts its
    // allocation (`zmalloc_size`) from 6.2.12 and 7.0.10, its bytes (`lpBytes`) before.
    let allocated = if m.listpacks() { m.at_least_patch(7, 0, 10) } else { m.at_least_patch(6, 2, 12) };
    let nodes: Vec<([u8; 16], u64)> = match (m.commands(), raw::stream_nodes(rec.raw_value)) {
        (false, Some(stored)) => {
            stored.into_iter().map(|(k, bytes)| (k, if allocated { m.class(bytes) } else { bytes })).collect()
        }
        _ => xadd(m, s, m.commands(), allocated),
    };
    let mut keys: Vec<[u8; 16]> = nodes.iter().map(|n| n.0).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut bytes = base + stream_struct + tree(nodes.len() as u64, rax::nodes(&keys));

    bytes += nodes.iter().map(|n| n.1).sum::<u64>();

    // Through commands a pending entry whose message is gone cannot be claimed, and a
    // consumer exists if XGROUP CREATECONSUMER made it (no pending entries in the file)
    // or XCLAIM gave it one.
    let live: HashSet<StreamId> = if m.commands() { s.entries.iter().map(|e| e.id).collect() } else { HashSet::new() };
    let kept = |id: &StreamId| !m.commands() || live.contains(id);
    for g in &s.groups {
        let owned: HashSet<StreamId> = g.consumers.iter().flat_map(|c| c.pending.iter().copied()).collect();
        let pel: Vec<[u8; 16]> =
            sorted_keys(g.pending.iter().map(|p| p.id).filter(|id| kept(id) && (!m.commands() || owned.contains(id))));
        bytes += cg_struct + tree(pel.len() as u64, rax::nodes(&pel)) + nack * pel.len() as u64;
        for c in &g.consumers {
            let mine = sorted_keys(c.pending.iter().copied().filter(|id| kept(id)));
            let exists = !m.commands() || c.pending.is_empty() || !mine.is_empty();
            if exists {
                // `sdslen(consumer->name)`: the name's length, not its allocation.
                bytes += consumer_struct + c.name.len() as u64 + tree(mine.len() as u64, rax::nodes(&mine));
            }
        }
    }
    Sized { bytes, encoding: "stream", elements: s.length, largest: largest.unwrap_or(0) }
}

fn sorted_keys(ids: impl Iterator<Item = StreamId>) -> Vec<[u8; 16]> {
    let mut v: Vec<[u8; 16]> = ids.map(rax::key).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The nodes XADD makes of the stream's entries, one XADD each in ID order
/// (`t_stream.c`, `streamAppendItem`): a node is full when its bytes plus the new
/// entry's fields and values reach `stream-node-max-bytes`, or it holds
/// `stream-node-max-entries`; a full node is shrunk to fit, a new one allocated with
/// `lpNew(4096)` (`prealloc`; else, with the preallocation of none, as a loaded stream
/// would hold the same entries). Each node's master ID and allocation.
fn xadd(m: &Model, s: &Stream<'_>, prealloc: bool, allocated: bool) -> Vec<([u8; 16], u64)> {
    let th = &m.th;
    let node_max = if th.stream_node_max_bytes == 0 || th.stream_node_max_bytes > LISTPACK_MAX_SIZE {
        LISTPACK_MAX_SIZE
    } else {
        th.stream_node_max_bytes
    };
    let pre =
        if th.stream_node_max_bytes > 0 { MAX_PRE_ALLOCATE.min(th.stream_node_max_bytes) } else { MAX_PRE_ALLOCATE };
    let mut out = Vec::new();
    // The current node: master ID, master fields, entries, listpack.
    let mut cur: Option<(StreamId, Vec<&Str<'_>>, u64, Lp)> = None;
    for e in &s.entries {
        let total: u64 = e.fields.iter().map(|(f, v)| (f.len() + v.len()) as u64).sum();
        if let Some((master, _, count, lp)) = &cur {
            let full = lp.bytes + total >= node_max
                || (th.stream_node_max_entries > 0 && *count >= th.stream_node_max_entries);
            if full {
                out.push((rax::key(*master), if allocated { m.class(lp.bytes) } else { lp.bytes }));
                cur = None;
            }
        }
        let fields: Vec<&Str<'_>> = e.fields.iter().map(|(f, _)| f).collect();
        match &mut cur {
            Some((master, mfields, count, lp)) => {
                // The master entry's count, rewritten in place (`lpReplaceInteger`).
                let old = encode::lp_entry(Item::Int(*count as i64));
                *count += 1;
                let new = encode::lp_entry(Item::Int(*count as i64));
                lp.grow(m, new as i64 - old as i64);
                let same = *mfields == fields;
                let (ms, seq) = (e.id.ms.wrapping_sub(master.ms) as i64, e.id.seq.wrapping_sub(master.seq) as i64);
                append_entry(m, lp, e, same, ms, seq);
            }
            None => {
                let mut lp = Lp::new(m, if prealloc { pre } else { 0 });
                for it in [Item::Int(1), Item::Int(0), Item::Int(fields.len() as i64)] {
                    lp.push(m, it);
                }
                for f in &fields {
                    lp.push(m, encode::item(f));
                }
                lp.push(m, Item::Int(0));
                append_entry(m, &mut lp, e, true, 0, 0);
                cur = Some((e.id, fields, 1, lp));
            }
        }
    }
    if let Some((master, _, _, lp)) = cur {
        let counted = match (allocated, prealloc) {
            (false, _) => lp.bytes,
            (true, true) => lp.alloc,
            (true, false) => m.class(lp.bytes),
        };
        out.push((rax::key(master), counted));
    }
    out
}

/// One entry after the master entry: flags, the ID's distance from the master ID, the
/// fields unless they are the master's, the values, and the count of its parts.
fn append_entry(m: &Model, lp: &mut Lp, e: &crate::rdb::StreamEntry<'_>, same: bool, ms: i64, seq: i64) {
    let n = e.fields.len() as i64;
    lp.push(m, Item::Int(if same { SAMEFIELDS } else { 0 }));
    lp.push(m, Item::Int(ms));
    lp.push(m, Item::Int(seq));
    if !same {
        lp.push(m, Item::Int(n));
    }
    for (f, v) in &e.fields {
        if !same {
            lp.push(m, encode::item(f));
        }
        lp.push(m, encode::item(v));
    }
    lp.push(m, Item::Int(n + 3 + if same { 0 } else { n + 1 }));
}
