//! The skim: advancing past a value by its length headers alone, without expanding LZF or
//! walking listpacks, so that a sequential pass can find where each record ends and hand
//! the spans to parallel decoders. It accepts every layout `value::read_value` accepts and
//! stops with an error where the bytes run out; the full decoder, run afterwards on the
//! same bytes, names the precise problem.

use super::constants::*;
use super::cursor::Cursor;
use super::error::{Error, Result};
use super::module::skip_items;
use super::string::{read_len, skip_str};
use super::Vendor;

/// Advances the cursor past a value of type `t`.
pub fn skip_value(cur: &mut Cursor<'_>, vendor: Vendor, t: u8) -> Result<()> {
    match (vendor, t) {
        (Vendor::Valkey, VALKEY_RDB_TYPE_HASH_2) => {
            let n = read_len(cur, "hash size")?;
            for _ in 0..n {
                skip_str(cur)?;
                skip_str(cur)?;
                cur.skip(8, "a field expiry")?;
            }
        }
        (
            _,
            RDB_TYPE_STRING
            | RDB_TYPE_HASH_ZIPMAP
            | RDB_TYPE_LIST_ZIPLIST
            | RDB_TYPE_SET_INTSET
            | RDB_TYPE_ZSET_ZIPLIST
            | RDB_TYPE_HASH_ZIPLIST
            | RDB_TYPE_HASH_LISTPACK
            | RDB_TYPE_ZSET_LISTPACK
            | RDB_TYPE_SET_LISTPACK,
        ) => skip_str(cur)?,
        (_, RDB_TYPE_LIST | RDB_TYPE_SET | RDB_TYPE_LIST_QUICKLIST) => {
            let n = read_len(cur, "element count")?;
            for _ in 0..n {
                skip_str(cur)?;
            }
        }
        (_, RDB_TYPE_ZSET) => {
            let n = read_len(cur, "zset size")?;
            for _ in 0..n {
                skip_str(cur)?;
                let len = cur.read_u8("a score length")?;
                if len < 253 {
                    cur.skip(len as u64, "a score")?;
                }
            }
        }
        (_, RDB_TYPE_ZSET_2) => {
            let n = read_len(cur, "zset size")?;
            for _ in 0..n {
                skip_str(cur)?;
                cur.skip(8, "a binary score")?;
            }
        }
        (_, RDB_TYPE_HASH) => {
            let n = read_len(cur, "hash size")?;
            for _ in 0..n {
                skip_str(cur)?;
                skip_str(cur)?;
            }
        }
        (_, RDB_TYPE_MODULE_2) => {
            read_len(cur, "a module type id")?;
            skip_items(cur)?;
        }
        (_, RDB_TYPE_LIST_QUICKLIST_2) => {
            let n = read_len(cur, "quicklist node count")?;
            for _ in 0..n {
                read_len(cur, "quicklist node container")?;
                skip_str(cur)?;
            }
        }
        (_, RDB_TYPE_STREAM_LISTPACKS | RDB_TYPE_STREAM_LISTPACKS_2 | RDB_TYPE_STREAM_LISTPACKS_3) => {
            skip_stream(cur, t)?
        }
        (Vendor::Redis, RDB_TYPE_STREAM_LISTPACKS_4) => skip_stream(cur, t)?,
        (Vendor::Redis, RDB_TYPE_HASH_METADATA_PRE_GA | RDB_TYPE_HASH_METADATA) => {
            if t == RDB_TYPE_HASH_METADATA {
                cur.skip(8, "the hash minimum field expiry")?;
            }
            let n = read_len(cur, "hash size")?;
            for _ in 0..n {
                read_len(cur, "field expiry")?;
                skip_str(cur)?;
                skip_str(cur)?;
            }
        }
        (Vendor::Redis, RDB_TYPE_HASH_LISTPACK_EX_PRE_GA | RDB_TYPE_HASH_LISTPACK_EX) => {
            if t == RDB_TYPE_HASH_LISTPACK_EX {
                cur.skip(8, "the hash minimum field expiry")?;
            }
            skip_str(cur)?;
        }
        _ => return Err(Error::unsupported(cur.offset().saturating_sub(1), format!("value type {t}"))),
    }
    Ok(())
}

fn skip_stream(cur: &mut Cursor<'_>, t: u8) -> Result<()> {
    let version = match t {
        RDB_TYPE_STREAM_LISTPACKS_2 => 2,
        RDB_TYPE_STREAM_LISTPACKS_3 => 3,
        RDB_TYPE_STREAM_LISTPACKS_4 => 4,
        _ => 1,
    };
    let nodes = read_len(cur, "stream node count")?;
    for _ in 0..nodes {
        skip_str(cur)?; // node key (master ID)
        skip_str(cur)?; // listpack
    }
    read_len(cur, "stream length")?;
    let ids = if version >= 2 { 3 } else { 1 }; // last, then first and max-deleted
    for _ in 0..ids * 2 {
        read_len(cur, "a stream ID part")?;
    }
    if version >= 2 {
        read_len(cur, "stream entries-added")?;
    }
    let groups = read_len(cur, "consumer group count")?;
    for _ in 0..groups {
        skip_str(cur)?;
        read_len(cur, "a stream ID (ms)")?;
        read_len(cur, "a stream ID (seq)")?;
        if version >= 2 {
            read_len(cur, "group entries-read")?;
        }
        let pel = read_len(cur, "group PEL size")?;
        for _ in 0..pel {
            cur.skip(16 + 8, "a PEL entry")?;
            read_len(cur, "a PEL delivery count")?;
        }
        let consumers = read_len(cur, "consumer count")?;
        for _ in 0..consumers {
            skip_str(cur)?;
            cur.skip(if version >= 3 { 16 } else { 8 }, "consumer times")?;
            let n = read_len(cur, "consumer PEL size")?;
            // Each entry is a 16-byte ID; check the total fits before skipping it.
            cur.skip(n.saturating_mul(16), "a consumer PEL")?;
        }
    }
    if version >= 4 {
        read_len(cur, "IDMP duration")?;
        read_len(cur, "IDMP max entries")?;
        let producers = read_len(cur, "IDMP producer count")?;
        for _ in 0..producers {
            skip_str(cur)?;
            let m = read_len(cur, "IDMP entry count")?;
            for _ in 0..m {
                skip_str(cur)?;
                read_len(cur, "a stream ID (ms)")?;
                read_len(cur, "a stream ID (seq)")?;
            }
        }
        read_len(cur, "IDMP iids added")?;
        read_len(cur, "IDMP iids duplicates")?;
    }
    Ok(())
}
