//! The sizes of what a record's bytes hold as they are stored: a packed blob (ziplist,
//! listpack, intset), the nodes of a quicklist, the listpacks of a stream. A server that
//! keeps the file's encoding keeps these very blobs (`rdb.c`, `rdbLoadObject` loads them
//! with `RDB_LOAD_PLAIN`: one allocation of the blob's length). An LZF-compressed blob's
//! length is in its header; its contents (a node's element count) are expanded only when
//! its header is needed. Every reader answers `None` on bytes it cannot follow (the record
//! decoded, so that does not happen; the caller then sizes from the elements).

use crate::rdb::constants::*;
use crate::rdb::cursor::Cursor;
use crate::rdb::string::{read_len, read_len_or_enc, Len};
use crate::rdb::{listpack, lzf, ziplist};

/// An RDB string as stored: its bytes, or LZF data and the length it expands to.
enum Stored<'a> {
    Plain(&'a [u8]),
    Lzf(&'a [u8], usize),
}

impl Stored<'_> {
    fn len(&self) -> u64 {
        match self {
            Stored::Plain(b) => b.len() as u64,
            Stored::Lzf(_, n) => *n as u64,
        }
    }

    /// The first `n` bytes (the whole blob when compressed, expanded).
    fn head(&self, n: usize) -> Option<std::borrow::Cow<'_, [u8]>> {
        match self {
            Stored::Plain(b) => Some(std::borrow::Cow::Borrowed(&b[..n.min(b.len())])),
            Stored::Lzf(data, len) => {
                let mut out = Vec::new();
                lzf::decompress_into(data, *len, &mut out).ok()?;
                Some(std::borrow::Cow::Owned(out))
            }
        }
    }

    fn whole(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        self.head(usize::MAX)
    }
}

fn read_stored<'a>(cur: &mut Cursor<'a>) -> Option<Stored<'a>> {
    match read_len_or_enc(cur).ok()? {
        Len::Plain(n) => Some(Stored::Plain(cur.read_bytes(n, "blob").ok()?)),
        Len::Encoded(RDB_ENC_LZF) => {
            let clen = read_len(cur, "LZF compressed length").ok()?;
            let ulen = read_len(cur, "LZF uncompressed length").ok()?;
            // LZF expands at most 88-fold (as the decoder checks): a larger claim is
            // damage, and no size is computed from it.
            if ulen > clen.saturating_mul(88).saturating_add(8) {
                return None;
            }
            Some(Stored::Lzf(cur.read_bytes(clen, "LZF data").ok()?, usize::try_from(ulen).ok()?))
        }
        Len::Encoded(_) => None,
    }
}

/// The length of the one blob a packed value is, and the elements its header counts
/// (a ziplist's or listpack's entries, an intset's integers; a walk when a 16-bit count
/// says 65535).
pub fn blob_len_count(raw: &[u8], rdb_type: u8) -> Option<(u64, u64)> {
    let mut cur = Cursor::new(raw);
    if rdb_type == RDB_TYPE_HASH_LISTPACK_EX {
        cur.skip(8, "minimum field expiry").ok()?;
    }
    let s = read_stored(&mut cur)?;
    let count = match rdb_type {
        RDB_TYPE_LIST_ZIPLIST | RDB_TYPE_ZSET_ZIPLIST | RDB_TYPE_HASH_ZIPLIST => ziplist_count(&s)?,
        RDB_TYPE_SET_INTSET => {
            let h = s.head(8)?;
            u32::from_le_bytes([*h.get(4)?, *h.get(5)?, *h.get(6)?, *h.get(7)?]) as u64
        }
        RDB_TYPE_HASH_ZIPMAP => return None,
        _ => listpack_count(&s)?,
    };
    Some((s.len(), count))
}

/// How many fields a hash with field TTLs (types 22 and 24) was stored with.
pub fn hash_metadata_len(raw: &[u8], rdb_type: u8) -> Option<u64> {
    let mut cur = Cursor::new(raw);
    match rdb_type {
        RDB_TYPE_HASH_METADATA => cur.skip(8, "minimum field expiry").ok()?,
        RDB_TYPE_HASH_METADATA_PRE_GA => {}
        _ => return None,
    }
    read_len(&mut cur, "hash size").ok()
}

/// A quicklist node as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// A plain node: one element kept as its bytes (`QUICKLIST_NODE_CONTAINER_PLAIN`).
    pub plain: bool,
    /// The blob's length (a ziplist or listpack, or the plain element).
    pub bytes: u64,
    /// Elements in the node: always when `counts` is asked for, else when the header is
    /// at hand without expanding LZF (most nodes of a file are compressed).
    pub count: Option<u64>,
    /// The LZF-compressed length, when the file stores the node compressed.
    pub lzf: Option<u64>,
}

/// The nodes of a quicklist record (type 14: ziplists; 18: a container before each
/// node). Empty nodes (a ziplist of 11 bytes, a listpack of 7), which Redis skips when it
/// loads, are left out.
pub fn quicklist_nodes(raw: &[u8], rdb_type: u8, counts: bool) -> Option<Vec<Node>> {
    let mut cur = Cursor::new(raw);
    let n = read_len(&mut cur, "node count").ok()?;
    let mut out = Vec::new();
    let ziplists = rdb_type == RDB_TYPE_LIST_QUICKLIST;
    for _ in 0..n {
        let plain = if rdb_type == RDB_TYPE_LIST_QUICKLIST_2 {
            read_len(&mut cur, "container").ok()? == QUICKLIST_NODE_CONTAINER_PLAIN
        } else {
            false
        };
        let s = read_stored(&mut cur)?;
        let count = match (&s, plain, counts) {
            (_, true, _) => Some(1),
            (Stored::Lzf(..), false, false) => None,
            _ if ziplists => Some(ziplist_count(&s)?),
            _ => Some(listpack_count(&s)?),
        };
        let empty = if plain { false } else { s.len() == if ziplists { 11 } else { 7 } };
        let lzf = match &s {
            Stored::Lzf(data, _) => Some(data.len() as u64),
            Stored::Plain(_) => None,
        };
        if count != Some(0) && !empty {
            out.push(Node { plain, bytes: s.len(), count, lzf });
        }
    }
    Some(out)
}

/// A ziplist's element count: its header's `zllen`, or a walk when that says 65535.
fn ziplist_count(s: &Stored<'_>) -> Option<u64> {
    let head = s.head(10)?;
    let n = u16::from_le_bytes([*head.get(8)?, *head.get(9)?]);
    if n < u16::MAX {
        return Some(n as u64);
    }
    let all = s.whole()?;
    ziplist::parse(&all, |_| {}).ok().map(|n| n as u64)
}

/// A listpack's element count: its header's, or a walk when that says 65535.
fn listpack_count(s: &Stored<'_>) -> Option<u64> {
    let head = s.head(6)?;
    let n = u16::from_le_bytes([*head.get(4)?, *head.get(5)?]);
    if n < u16::MAX {
        return Some(n as u64);
    }
    let all = s.whole()?;
    listpack::parse(&all, |_| {}).ok().map(|n| n as u64)
}

/// The listpacks of a stream record: each node's master ID (its rax key, 16 bytes) and
/// the listpack's length, in file order.
pub fn stream_nodes(raw: &[u8]) -> Option<Vec<([u8; 16], u64)>> {
    let mut cur = Cursor::new(raw);
    let n = read_len(&mut cur, "stream node count").ok()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let stored = read_stored(&mut cur)?;
        let key: [u8; 16] = stored.whole()?.as_ref().try_into().ok()?;
        let lp = read_stored(&mut cur)?;
        out.push((key, lp.len()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_compressed_blob_lengths() {
        // A listpack of two entries, 7 and "a", as a plain string.
        let lp = [12u8, 0, 0, 0, 2, 0, 7, 1, 0x81, b'a', 2, 0xff];
        let mut raw = vec![lp.len() as u8];
        raw.extend(lp);
        assert_eq!(blob_len_count(&raw, RDB_TYPE_SET_LISTPACK), Some((12, 2)));
        // A listpack hash with field TTLs starts with the minimum expiry.
        let mut ex = vec![0u8; 8];
        ex.extend(&raw);
        assert_eq!(blob_len_count(&ex, RDB_TYPE_HASH_LISTPACK_EX), Some((12, 2)));
        // An intset of three 16-bit integers.
        let is = [14u8, 2, 0, 0, 0, 3, 0, 0, 0, 1, 0, 2, 0, 3, 0];
        assert_eq!(blob_len_count(&is, RDB_TYPE_SET_INTSET), Some((14, 3)));
        assert_eq!(blob_len_count(&[], RDB_TYPE_SET_LISTPACK), None);
        assert_eq!(blob_len_count(&[9, 1], RDB_TYPE_SET_LISTPACK), None);
    }

    #[test]
    fn hash_with_ttl_lengths() {
        let mut raw = vec![0u8; 8];
        raw.push(5);
        assert_eq!(hash_metadata_len(&raw, RDB_TYPE_HASH_METADATA), Some(5));
        assert_eq!(hash_metadata_len(&[7], RDB_TYPE_HASH_METADATA_PRE_GA), Some(7));
        assert_eq!(hash_metadata_len(&[7], RDB_TYPE_HASH), None);
    }

    #[test]
    fn quicklist_2_nodes() {
        // Two nodes: a listpack of one element "a", and a plain node "zz".
        let lp = [9u8, 0, 0, 0, 1, 0, 0x81, b'a', 2, 0xff];
        let mut raw = vec![2u8, 2, lp.len() as u8];
        raw.extend(lp);
        raw.extend([1, 2, b'z', b'z']);
        let nodes = quicklist_nodes(&raw, RDB_TYPE_LIST_QUICKLIST_2, true).unwrap();
        assert_eq!(
            nodes,
            vec![
                Node { plain: false, bytes: 10, count: Some(1), lzf: None },
                Node { plain: true, bytes: 2, count: Some(1), lzf: None }
            ]
        );
        assert_eq!(quicklist_nodes(&raw[..5], RDB_TYPE_LIST_QUICKLIST_2, true), None);
    }

    #[test]
    fn stream_node_keys_and_sizes() {
        let mut raw = vec![1u8, 16];
        raw.extend([0u8; 15]);
        raw.push(7);
        raw.extend([3, 1, 2, 3]);
        assert_eq!(stream_nodes(&raw), Some(vec![([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7], 3)]));
    }
}
