//! Lists: a quicklist of ziplist nodes (6.2), of listpack or plain nodes (7.0), and from
//! 7.2 a single listpack while the list is small (`t_list.c`,
//! `listTypeTryConversionRaw`).

use super::encode::{self, Item, Ziplist};
use super::{raw, Model, Sized};
use crate::rdb::constants::*;
use crate::rdb::{Record, Str};

/// `quicklist.c`, `optimization_level`: the node size limits of fill -1 to -5.
const OPTIMIZATION_LEVEL: [u64; 5] = [4096, 8192, 16384, 32768, 65536];
/// `SIZE_SAFETY_LIMIT`: no node grows past this under a count limit.
const SIZE_SAFETY_LIMIT: u64 = 8192;
/// `packed_threshold`: an element this large gets a plain node of its own (7.0 on).
const PACKED_THRESHOLD: u64 = 1 << 30;
/// `sizeof(quicklist)`.
const QUICKLIST: u64 = 40;
/// `print` sends lists in RPUSH commands of this many elements.
const CHUNK: usize = 256;

/// A quicklist node as the target holds it.
#[derive(Debug, Clone, Copy)]
struct QNode {
    plain: bool,
    /// `node->sz`: the bytes of its ziplist or listpack (or the plain element).
    sz: u64,
    count: u64,
    /// Its LZF-compressed length, when known (the file stores it compressed).
    lzf: Option<u64>,
}

/// `quicklist.c`, `MIN_COMPRESS_BYTES` and `MIN_COMPRESS_IMPROVE`: a node is compressed
/// from 48 bytes, when that saves more than 8.
const MIN_COMPRESS_BYTES: u64 = 48;
const MIN_COMPRESS_IMPROVE: u64 = 8;

pub(super) fn list(m: &Model, rec: &Record<'_>, elems: &[Str<'_>]) -> Sized {
    let lens: Vec<u64> = elems.iter().map(|s| s.len() as u64).collect();
    let elements = lens.len() as u64;
    let largest = lens.iter().copied().max().unwrap_or(0);
    // How the packed encodings see each element, worked out only when needed.
    let items = || -> Vec<Item> { elems.iter().map(encode::item).collect() };
    let key_len = rec.key.len() as u64;
    let base = m.base(key_len, rec.expire_at_ms.is_some());
    let sized = |bytes, encoding| Sized { bytes, encoding, elements, largest };

    if m.commands() && m.at_least(7, 2) {
        if let Some(lp) = rpush_listpack(m, &items(), &lens) {
            return sized(base + m.class(lp), "listpack");
        }
    }
    let nodes =
        if m.commands() { None } else { file_nodes(m, rec, elems) }.unwrap_or_else(|| pushed(m, &items(), &lens));

    // 7.2: a list left as one small packed node becomes a listpack
    // (`listTypeTryConvertQuicklist`), except one read from an old ziplist (type 10),
    // which `rdbLoadObject` leaves a quicklist.
    if m.at_least(7, 2) && !m.commands() && rec.rdb_type != RDB_TYPE_LIST_ZIPLIST && nodes.len() == 1 && !nodes[0].plain
    {
        let (sz_limit, count_limit) = node_limit(m.th.list_max_listpack_size);
        if nodes[0].sz <= sz_limit && nodes[0].count <= count_limit {
            return sized(base + m.class(nodes[0].sz), "listpack");
        }
    }
    // `object.c`, `objectComputeSize`: the quicklist, then every node's struct and its
    // entry: the ziplist's bytes on 6.2 (`ziplistBlobLen`), the allocation from 7.0
    // (`zmalloc_size`); averaged per node (7.x) or per element (8.0) and multiplied back.
    // With `list-compress-depth` d, every node but the first and last d is kept
    // LZF-compressed (`__quicklistCompress`): a `quicklistLZF` of 4 bytes and the
    // compressed bytes, which are the file's when it stores the node compressed (RDB
    // and quicklist compress with the same LZF); 6.2 counts `ziplistBlobLen` of it,
    // which reads the compressed length. A node whose compressed length is not known
    // is counted uncompressed.
    let depth = usize::try_from(m.th.list_compress_depth).unwrap_or(usize::MAX);
    let inner = |i: usize| depth > 0 && nodes.len() > depth.saturating_mul(2) && i >= depth && i < nodes.len() - depth;
    let node_struct = if m.listpacks() { 40 } else { 32 };
    let entry = |i: usize, n: &QNode| -> u64 {
        let lzf = n.lzf.filter(|&c| inner(i) && n.sz >= MIN_COMPRESS_BYTES && c + MIN_COMPRESS_IMPROVE < n.sz);
        match (lzf, m.listpacks()) {
            (Some(c), true) => m.class(4 + c),
            (Some(c), false) => c,
            (None, true) => m.class(n.sz),
            (None, false) => n.sz,
        }
    };
    let elesize: u64 = nodes.iter().enumerate().map(|(i, n)| node_struct + entry(i, n)).sum();
    let asize = base + QUICKLIST;
    let bytes = if m.at_least(8, 0) {
        m.add_average(asize, elesize as f64, elements, elements)
    } else {
        m.add_average(asize, elesize as f64, nodes.len() as u64, nodes.len() as u64)
    };
    sized(bytes, "quicklist")
}

/// The nodes as the file has them, when the target keeps them: quicklist 2 from 7.0,
/// quicklist 1 on 6.2 as is and from 7.0 each node converted to a listpack
/// (`_ziplistEntryConvertAndValidate`, then `lpShrinkToFit`). `None`: build by pushing.
/// A node's element count is read (expanding it when LZF-compressed) only where it
/// matters: to convert its elements, or for a count limit (a positive fill).
fn file_nodes(m: &Model, rec: &Record<'_>, elems: &[Str<'_>]) -> Option<Vec<QNode>> {
    let t = rec.rdb_type;
    let keeps = match t {
        RDB_TYPE_LIST_QUICKLIST => true,
        RDB_TYPE_LIST_QUICKLIST_2 => m.listpacks(),
        _ => false,
    };
    if !keeps {
        return None;
    }
    let convert = t == RDB_TYPE_LIST_QUICKLIST && m.listpacks();
    let need_counts = convert || m.th.list_max_listpack_size >= 0;
    let stored = raw::quicklist_nodes(rec.raw_value, t, need_counts)?;
    let known: Option<u64> = stored.iter().map(|n| n.count).sum();
    if known.is_some_and(|k| k != elems.len() as u64) {
        return None;
    }
    let mut out = Vec::with_capacity(stored.len());
    let mut at = 0usize;
    for n in stored {
        let count = n.count.unwrap_or(0);
        let (sz, lzf) = if convert {
            let mine = elems.get(at..at + count as usize)?;
            at += count as usize;
            let sz = encode::listpack(mine.iter().map(encode::item));
            // The listpack's compressed length, as the ziplist's ratio: an estimate.
            (sz, n.lzf.map(|c| (c as f64 * sz as f64 / n.bytes.max(1) as f64).round() as u64))
        } else {
            (n.bytes, n.lzf)
        };
        out.push(QNode { plain: n.plain, sz, count, lzf });
    }
    Some(out)
}

/// The nodes `quicklistPushTail` makes of the elements in order (`rdbLoadObject` for
/// linked and ziplist lists, and RPUSH).
fn pushed(m: &Model, items: &[Item], lens: &[u64]) -> Vec<QNode> {
    let fill = m.th.list_max_listpack_size;
    let mut nodes: Vec<QNode> = Vec::new();
    let mut zl = Ziplist::default();
    for (&it, &sz) in items.iter().zip(lens) {
        if m.listpacks() && sz >= PACKED_THRESHOLD {
            nodes.push(QNode { plain: true, sz, count: 1, lzf: None });
            continue;
        }
        let entry = if m.listpacks() { encode::lp_entry(it) } else { zl.entry_len(it) };
        match nodes.last_mut() {
            Some(tail) if allow_insert(m, tail, fill, sz) => {
                if m.listpacks() {
                    tail.sz += entry;
                } else {
                    zl.push(it);
                    tail.sz = zl.bytes;
                }
                tail.count += 1;
            }
            _ => {
                let sz = if m.listpacks() {
                    encode::LP_EMPTY + entry
                } else {
                    zl = Ziplist::default();
                    zl.push(it);
                    zl.bytes
                };
                nodes.push(QNode { plain: false, sz, count: 1, lzf: None });
            }
        }
    }
    nodes
}

/// `quicklist.c`, `_quicklistNodeAllowInsert`: the node's size after the element, as
/// estimated (6.2: the ziplist's entry overhead; 7.0: 8 bytes), within the fill's limit.
fn allow_insert(m: &Model, node: &QNode, fill: i64, sz: u64) -> bool {
    if node.plain {
        return false;
    }
    let new_sz = if m.listpacks() {
        node.sz + sz + 8
    } else {
        let prev = if sz < 254 { 1 } else { 5 };
        let enc = if sz < 64 {
            1
        } else if sz < 16384 {
            2
        } else {
            5
        };
        node.sz + sz + prev + enc
    };
    if m.at_least(7, 2) {
        // `quicklistNodeExceedsLimit`.
        let (sz_limit, count_limit) = node_limit(fill);
        if sz_limit != u64::MAX {
            return new_sz <= sz_limit;
        }
        return new_sz <= SIZE_SAFETY_LIMIT && node.count < count_limit;
    }
    // `_quicklistNodeSizeMeetsOptimizationRequirement`, then the safety limit, then the
    // count (a negative fill beyond -5 allows nothing more).
    if fill < 0 {
        let offset = (fill.unsigned_abs() - 1) as usize;
        if offset < OPTIMIZATION_LEVEL.len() && new_sz <= OPTIMIZATION_LEVEL[offset] {
            return true;
        }
    }
    new_sz <= SIZE_SAFETY_LIMIT && (node.count as i64) < fill
}

/// `quicklist.c`, `quicklistNodeLimit` (7.2): a negative fill limits bytes (beyond -5 as
/// -5), a positive one counts (at least one).
fn node_limit(fill: i64) -> (u64, u64) {
    if fill >= 0 {
        (u64::MAX, fill.max(1) as u64)
    } else {
        let offset = ((fill.unsigned_abs() - 1) as usize).min(OPTIMIZATION_LEVEL.len() - 1);
        (OPTIMIZATION_LEVEL[offset], u64::MAX)
    }
}

/// RPUSH in chunks on 7.2 on (`t_list.c`, `pushGenericCommand`): the list starts a
/// listpack and stays one while each command's elements fit
/// (`listTypeTryConvertListpack`: the listpack's bytes plus the arguments' lengths
/// within the limit). The listpack's bytes, or `None` once it became a quicklist (which
/// then fills its nodes as pushes do: the listpack its first node).
fn rpush_listpack(m: &Model, items: &[Item], lens: &[u64]) -> Option<u64> {
    let (sz_limit, count_limit) = node_limit(m.th.list_max_listpack_size);
    let mut bytes = encode::LP_EMPTY;
    let mut count = 0u64;
    for (its, ls) in items.chunks(CHUNK).zip(lens.chunks(CHUNK)) {
        let add: u64 = ls.iter().sum();
        let new_count = count + its.len() as u64;
        let exceeds = if sz_limit != u64::MAX {
            bytes + add > sz_limit
        } else {
            bytes + add > SIZE_SAFETY_LIMIT || new_count > count_limit
        };
        if exceeds {
            return None;
        }
        bytes += its.iter().map(|&i| encode::lp_entry(i)).sum::<u64>();
        count = new_count;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::memory::{Load, Thresholds};
    use crate::version::Version;

    fn model(v: Version) -> Model {
        Model { v, patch: None, q: 8, cluster: false, th: Thresholds::defaults(v), load: Load::Rdb }
    }

    #[test]
    fn ten_thousand_short_elements_fill_8kb_nodes() {
        // Measured on 8.2: 681 elements of 10 bytes per node (7 + 12 × 681 = 8179 bytes).
        let items = vec![Item::Bytes(10); 10_000];
        let lens = vec![10; 10_000];
        let nodes = pushed(&model(Version(8, 2)), &items, &lens);
        assert_eq!(nodes.len(), 15);
        assert_eq!(nodes[0].count, 681);
        assert_eq!(nodes[0].sz, 8179);
        assert_eq!(nodes[14].count, 10_000 - 14 * 681);
    }

    #[test]
    fn ziplist_nodes_on_6_2() {
        let items = vec![Item::Bytes(10); 1000];
        let lens = vec![10; 1000];
        let nodes = pushed(&model(Version(6, 2)), &items, &lens);
        // Each entry is 1 + 1 + 10 bytes, estimated as 10 + 2: 11 + 12k + 12 <= 8192.
        assert_eq!(nodes[0].count, 681);
        assert_eq!(nodes[0].sz, 11 + 12 * 681);
    }

    #[test]
    fn large_elements_get_their_own_nodes() {
        let items = vec![Item::Bytes(5000), Item::Bytes(5000), Item::Bytes(1)];
        let lens = vec![5000, 5000, 1];
        let nodes = pushed(&model(Version(7, 0)), &items, &lens);
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].count, 2);
    }
}
