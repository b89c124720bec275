//! Streams (types 15, 19, 21, 26; `rdb.c`, `rdbLoadObject`): listpack nodes keyed by a
//! master ID (each checked as `t_stream.c`, `streamValidateListpackIntegrity` does), the
//! stream metadata, consumer groups with their PEL and consumers, and (v4) the
//! idempotent-producer state.

use super::constants::{
    RDB_TYPE_STREAM_LISTPACKS_2, RDB_TYPE_STREAM_LISTPACKS_3, RDB_TYPE_STREAM_LISTPACKS_4, STREAM_ITEM_FLAG_DELETED,
    STREAM_ITEM_FLAG_SAMEFIELDS,
};
use super::container::{parse_canonical_i64, Entry};
use super::cursor::{bounded_capacity, Cursor};
use super::error::{Error, Result};
use super::listpack;
use super::string::{read_blob, read_len, read_str, Blob};
use super::types::{Consumer, ConsumerGroup, PendingEntry, Str, Stream, StreamEntry, StreamId, StreamIdmp};

/// Reads a stream; with `keep_entries` false its entries are validated, not kept.
pub fn read_stream<'a>(cur: &mut Cursor<'a>, t: u8, keep_entries: bool) -> Result<Stream<'a>> {
    let version = match t {
        RDB_TYPE_STREAM_LISTPACKS_2 => 2,
        RDB_TYPE_STREAM_LISTPACKS_3 => 3,
        RDB_TYPE_STREAM_LISTPACKS_4 => 4,
        _ => 1,
    };
    let nodes_at = cur.offset();
    let nodes = read_len(cur, "stream node count")?;
    let mut entries = Vec::new();
    let mut scratch = Vec::new();
    // Master IDs with where each was read: Redis refuses a stream that repeats one
    // (`rdb.c`, `rdbLoadObject`: "Listpack re-added with existing key").
    let mut masters: Vec<(StreamId, u64)> = Vec::with_capacity(bounded_capacity(nodes, cur.remaining(), 18));
    for _ in 0..nodes {
        let at = cur.offset();
        let node_key = read_str(cur)?;
        let node_key = node_key.bytes();
        if node_key.len() != 16 {
            return Err(Error::corrupt(
                at,
                format!("stream node key of {} bytes, expected a 16-byte ID", node_key.len()),
            ));
        }
        let master = raw_id(&node_key);
        masters.push((master, at));
        let blob = read_blob(cur, "stream listpack")?;
        read_node(&blob, master, keep_entries.then_some(&mut entries), &mut scratch)?;
    }
    masters.sort_unstable();
    if let Some(w) = masters.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::corrupt(w[0].1.max(w[1].1), format!("stream node master ID {} appears twice", w[0].0)));
    }
    let length_at = cur.offset();
    let length = read_len(cur, "stream length")?;
    if nodes == 0 && length != 0 {
        return Err(Error::corrupt(length_at, format!("stream length {length} with no nodes (at {nodes_at})")));
    }
    let last_id = read_id(cur)?;
    let (first_id, max_deleted_id, entries_added) = if version >= 2 {
        let first = read_id(cur)?;
        let max_deleted = read_id(cur)?;
        let added = read_len(cur, "stream entries-added")?;
        (Some(first), Some(max_deleted), Some(added))
    } else {
        (None, None, None)
    };
    let ngroups = read_len(cur, "consumer group count")?;
    let mut groups = Vec::with_capacity(bounded_capacity(ngroups, cur.remaining(), 4));
    let mut names = Vec::with_capacity(groups.capacity());
    for _ in 0..ngroups {
        names.push(cur.offset());
        groups.push(read_group(cur, version)?);
    }
    // `t_stream.c`, `streamCreateCG`: one group per name.
    if let Some((i, name)) = first_repeat(groups.iter().map(|g| &g.name)) {
        return Err(Error::corrupt(names[i], format!("consumer group \"{name}\" appears twice")));
    }
    let idmp = if version >= 4 { Some(read_idmp(cur)?) } else { None };
    Ok(Stream { entries, length, last_id, first_id, max_deleted_id, entries_added, groups, idmp })
}

/// The index of the first name equal to an earlier one, and that name (as text).
fn first_repeat<'s, 'a: 's>(names: impl Iterator<Item = &'s Str<'a>>) -> Option<(usize, String)> {
    let mut seen: Vec<(std::borrow::Cow<'s, [u8]>, usize)> = names.map(Str::bytes).zip(0..).collect();
    // By name, then position: in a run of equal names, each but the first repeats one.
    seen.sort_unstable();
    let (i, name) = seen.windows(2).filter(|w| w[0].0 == w[1].0).map(|w| (w[1].1, &w[1].0)).min_by_key(|r| r.0)?;
    Some((i, crate::rdb::escape_key(name)))
}

fn raw_id(b: &[u8]) -> StreamId {
    let mut ms = [0u8; 8];
    let mut seq = [0u8; 8];
    ms.copy_from_slice(&b[..8]);
    seq.copy_from_slice(&b[8..16]);
    StreamId { ms: u64::from_be_bytes(ms), seq: u64::from_be_bytes(seq) }
}

fn read_raw_id(cur: &mut Cursor<'_>) -> Result<StreamId> {
    Ok(raw_id(cur.read_bytes(16, "a 16-byte stream ID")?))
}

fn read_id(cur: &mut Cursor<'_>) -> Result<StreamId> {
    let ms = read_len(cur, "a stream ID (ms)")?;
    let seq = read_len(cur, "a stream ID (seq)")?;
    Ok(StreamId { ms, seq })
}

/// Walks one node's listpack: the master entry, then entries relative to it, into
/// `out` when given. `fields`: a vector reused from entry to entry.
fn read_node<'a>(
    blob: &Blob<'a>,
    master: StreamId,
    mut out: Option<&mut Vec<StreamEntry<'a>>>,
    fields: &mut Vec<(usize, Entry)>,
) -> Result<()> {
    let lp = listpack::collect_entries(blob)?;
    if lp.is_empty() {
        return Err(blob.error("stream listpack", 0, "empty listpack inside a stream"));
    }
    let data = &blob.data;
    let int_at = |i: usize, what: &str| -> Result<i64> {
        match lp.get(i) {
            Some(Entry::Int(v)) => Ok(*v),
            Some(Entry::Bytes(r)) => parse_canonical_i64(&data[r.clone()])
                .ok_or_else(|| blob.error("stream listpack", 0, &format!("{what} (element {i}) is not an integer"))),
            None => Err(blob.error("stream listpack", 0, &format!("ends before {what} (element {i})"))),
        }
    };
    let count_at = |i: usize, what: &str| -> Result<usize> {
        let v = int_at(i, what)?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v <= lp.len())
            .ok_or_else(|| blob.error("stream listpack", 0, &format!("{what} {v} is out of range")))
    };
    let elem = |i: usize| -> Result<&Entry> {
        lp.get(i).ok_or_else(|| blob.error("stream listpack", 0, &format!("ends inside an entry (element {i})")))
    };
    // Master entry: live count, deleted count, master field count, fields, terminator 0.
    let live = count_at(0, "live entry count")?;
    let deleted = count_at(1, "deleted entry count")?;
    let nmaster = count_at(2, "master field count")?;
    let master_fields: Vec<usize> = (3..3 + nmaster).collect();
    let mut i = 3 + nmaster;
    if int_at(i, "master entry terminator")? != 0 {
        return Err(blob.error("stream listpack", 0, "master entry terminator is not 0"));
    }
    i += 1;
    let mut found = 0usize;
    while i < lp.len() {
        found += 1;
        let start = i;
        let flags = int_at(i, "entry flags")?;
        let ms_delta = int_at(i + 1, "entry ID ms delta")?;
        let seq_delta = int_at(i + 2, "entry ID seq delta")?;
        i += 3;
        let id = StreamId {
            ms: master
                .ms
                .checked_add_signed(ms_delta)
                .ok_or_else(|| blob.error("stream listpack", 0, "entry ID overflows"))?,
            seq: master
                .seq
                .checked_add_signed(seq_delta)
                .ok_or_else(|| blob.error("stream listpack", 0, "entry ID overflows"))?,
        };
        fields.clear();
        if flags & STREAM_ITEM_FLAG_SAMEFIELDS != 0 {
            for (k, &fi) in master_fields.iter().enumerate() {
                let v = elem(i + k)?.clone();
                fields.push((fi, v));
            }
            i += nmaster;
        } else {
            let n = count_at(i, "entry field count")?;
            i += 1;
            for k in 0..n {
                elem(i + 2 * k + 1)?;
                fields.push((i + 2 * k, lp[i + 2 * k + 1].clone()));
            }
            i += 2 * n;
        }
        let lp_count = int_at(i, "entry element count")?;
        i += 1;
        // lp-count counts the entry's elements without itself (for backward walks).
        if lp_count != (i - start - 1) as i64 {
            return Err(blob.error(
                "stream listpack",
                0,
                &format!("entry lp-count {lp_count}, entry has {} elements", i - start - 1),
            ));
        }
        if let (0, Some(out)) = (flags & STREAM_ITEM_FLAG_DELETED, out.as_mut()) {
            let fields = fields.drain(..).map(|(fi, v)| (blob.lift(lp[fi].clone()), blob.lift(v))).collect();
            out.push(StreamEntry { id, fields });
        }
    }
    // `t_stream.c`, `streamValidateListpackIntegrity`: the node holds exactly the live
    // and deleted entries its master entry counts.
    if found != live + deleted {
        return Err(blob.error(
            "stream listpack",
            0,
            &format!("{found} entries, the master entry counts {live} live and {deleted} deleted"),
        ));
    }
    Ok(())
}

fn read_group<'a>(cur: &mut Cursor<'a>, version: u8) -> Result<ConsumerGroup<'a>> {
    let name = read_str(cur)?;
    let last_delivered_id = read_id(cur)?;
    let entries_read = if version >= 2 {
        // -1 ("unknown") is stored as the 64-bit length 0xFFFF_FFFF_FFFF_FFFF.
        Some(read_len(cur, "group entries-read")?).filter(|&v| v != u64::MAX)
    } else {
        None
    };
    let pel_at = cur.offset();
    let npel = read_len(cur, "group PEL size")?;
    let mut pending = Vec::with_capacity(bounded_capacity(npel, cur.remaining(), 25));
    for _ in 0..npel {
        let id = read_raw_id(cur)?;
        let delivery_time_ms = cur.read_i64_le("a PEL delivery time")?;
        let delivery_count = read_len(cur, "a PEL delivery count")?;
        pending.push(PendingEntry { id, delivery_time_ms, delivery_count });
    }
    let mut pel_ids: Vec<StreamId> = pending.iter().map(|p| p.id).collect();
    pel_ids.sort_unstable();
    if let Some(w) = pel_ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::corrupt(pel_at, format!("group PEL holds entry {} twice", w[0])));
    }
    // Which group PEL entries a consumer owns (`rdb.c`, `rdbLoadObject`: with deep
    // sanitization, an entry no consumer owns is refused).
    let mut owned_any = vec![false; pel_ids.len()];
    let nconsumers = read_len(cur, "consumer count")?;
    let mut consumers = Vec::with_capacity(bounded_capacity(nconsumers, cur.remaining(), 10));
    let mut consumer_at = Vec::with_capacity(consumers.capacity());
    for _ in 0..nconsumers {
        consumer_at.push(cur.offset());
        let cname = read_str(cur)?;
        let seen_time_ms = cur.read_i64_le("a consumer seen time")?;
        let active_time_ms = if version >= 3 { Some(cur.read_i64_le("a consumer active time")?) } else { None };
        let n = read_len(cur, "consumer PEL size")?;
        let mut owned = Vec::with_capacity(bounded_capacity(n, cur.remaining(), 16));
        for _ in 0..n {
            let at = cur.offset();
            let id = read_raw_id(cur)?;
            // Redis refuses a consumer PEL entry that is not in the group PEL.
            match pel_ids.binary_search(&id) {
                Ok(k) => owned_any[k] = true,
                Err(_) => return Err(Error::corrupt(at, format!("consumer PEL entry {id} is not in the group PEL"))),
            }
            owned.push(id);
        }
        let mut sorted = owned.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::corrupt(
                *consumer_at.last().unwrap_or(&0),
                format!("consumer PEL holds entry {} twice", w[0]),
            ));
        }
        consumers.push(Consumer { name: cname, seen_time_ms, active_time_ms, pending: owned });
    }
    // `t_stream.c`, `streamCreateConsumer`: one consumer per name in a group.
    if let Some((i, name)) = first_repeat(consumers.iter().map(|c| &c.name)) {
        return Err(Error::corrupt(consumer_at[i], format!("consumer \"{name}\" appears twice in its group")));
    }
    if let Some(k) = owned_any.iter().position(|&o| !o) {
        return Err(Error::corrupt(pel_at, format!("group PEL entry {} has no consumer", pel_ids[k])));
    }
    Ok(ConsumerGroup { name, last_delivered_id, entries_read, pending, consumers })
}

fn read_idmp<'a>(cur: &mut Cursor<'a>) -> Result<StreamIdmp<'a>> {
    let duration_s = read_len(cur, "IDMP duration")?;
    let max_entries = read_len(cur, "IDMP max entries")?;
    let n = read_len(cur, "IDMP producer count")?;
    let mut producers = Vec::with_capacity(bounded_capacity(n, cur.remaining(), 2));
    for _ in 0..n {
        let pid = read_str(cur)?;
        let m = read_len(cur, "IDMP entry count")?;
        let mut iids = Vec::with_capacity(bounded_capacity(m, cur.remaining(), 3));
        for _ in 0..m {
            let iid = read_str(cur)?;
            let id = read_id(cur)?;
            iids.push((iid, id));
        }
        producers.push((pid, iids));
    }
    let iids_added = read_len(cur, "IDMP iids added")?;
    let iids_duplicates = read_len(cur, "IDMP iids duplicates")?;
    Ok(StreamIdmp { duration_s, max_entries, producers, iids_added, iids_duplicates })
}
