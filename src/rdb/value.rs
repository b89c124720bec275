//! Value decoders, one per family of RDB type bytes (`rdb.c`, `rdbLoadObject`), the
//! packed containers validated as `ziplistValidateIntegrity`, `lpValidateIntegrity`,
//! `intsetValidateIntegrity` and `zipmapValidateIntegrity` do. Every encoding is turned
//! into its logical value; empty collections come back as `None`, because Redis skips
//! them when loading.

use super::cursor::{bounded_capacity, Cursor};
use super::error::{Error, Result};
use super::string::{read_blob, read_len, read_str, read_string_double, Blob};
use super::types::{HashField, Str, Value};
use super::{intset, listpack, module, stream, ziplist, zipmap, Vendor};

// The type bytes were defined here before `constants.rs`: `rdb::value::RDB_TYPE_*`
// keeps naming them.
pub use super::constants::*;

/// The encoding a type byte stands for, as `check` reports it.
pub fn type_name(vendor: Vendor, t: u8) -> Option<&'static str> {
    Some(match (vendor, t) {
        (Vendor::Valkey, VALKEY_RDB_TYPE_HASH_2) => "hash (hashtable with field TTLs, Valkey HASH_2)",
        (_, RDB_TYPE_STRING) => "string",
        (_, RDB_TYPE_LIST) => "list (linked list)",
        (_, RDB_TYPE_SET) => "set (hashtable)",
        (_, RDB_TYPE_ZSET) => "zset (skiplist, string scores)",
        (_, RDB_TYPE_HASH) => "hash (hashtable)",
        (_, RDB_TYPE_ZSET_2) => "zset (skiplist)",
        (_, RDB_TYPE_MODULE_PRE_GA) => "module (pre-GA)",
        (_, RDB_TYPE_MODULE_2) => "module",
        (_, RDB_TYPE_HASH_ZIPMAP) => "hash (zipmap)",
        (_, RDB_TYPE_LIST_ZIPLIST) => "list (ziplist)",
        (_, RDB_TYPE_SET_INTSET) => "set (intset)",
        (_, RDB_TYPE_ZSET_ZIPLIST) => "zset (ziplist)",
        (_, RDB_TYPE_HASH_ZIPLIST) => "hash (ziplist)",
        (_, RDB_TYPE_LIST_QUICKLIST) => "list (quicklist)",
        (_, RDB_TYPE_STREAM_LISTPACKS) => "stream (v1)",
        (_, RDB_TYPE_HASH_LISTPACK) => "hash (listpack)",
        (_, RDB_TYPE_ZSET_LISTPACK) => "zset (listpack)",
        (_, RDB_TYPE_LIST_QUICKLIST_2) => "list (quicklist 2)",
        (_, RDB_TYPE_STREAM_LISTPACKS_2) => "stream (v2)",
        (_, RDB_TYPE_SET_LISTPACK) => "set (listpack)",
        (_, RDB_TYPE_STREAM_LISTPACKS_3) => "stream (v3)",
        (Vendor::Redis, RDB_TYPE_HASH_METADATA_PRE_GA) => "hash (hashtable with field TTLs, 7.4-rc)",
        (Vendor::Redis, RDB_TYPE_HASH_LISTPACK_EX_PRE_GA) => "hash (listpack with field TTLs, 7.4-rc)",
        (Vendor::Redis, RDB_TYPE_HASH_METADATA) => "hash (hashtable with field TTLs)",
        (Vendor::Redis, RDB_TYPE_HASH_LISTPACK_EX) => "hash (listpack with field TTLs)",
        (Vendor::Redis, RDB_TYPE_STREAM_LISTPACKS_4) => "stream (v4)",
        _ => return None,
    })
}

/// The logical type a type byte stores.
pub fn value_type_of(vendor: Vendor, t: u8) -> Option<super::ValueType> {
    use super::ValueType as V;
    let name = type_name(vendor, t)?;
    let word = name.split(' ').next().unwrap_or("");
    Some(match word {
        "string" => V::String,
        "list" => V::List,
        "set" => V::Set,
        "zset" => V::ZSet,
        "hash" => V::Hash,
        "stream" => V::Stream,
        _ => V::Module,
    })
}

/// Decodes the value of type `t` at the cursor. `Ok(None)`: an empty collection. With
/// `contents` false, list elements past the first and stream entries are validated but
/// not kept (see `Parser::contents`).
pub fn read_value<'a>(cur: &mut Cursor<'a>, vendor: Vendor, t: u8, contents: bool) -> Result<Option<Value<'a>>> {
    let v = match (vendor, t) {
        (Vendor::Valkey, VALKEY_RDB_TYPE_HASH_2) => Value::Hash(read_valkey_hash_2(cur)?),
        (_, RDB_TYPE_STRING) => Value::String(read_str(cur)?),
        (_, RDB_TYPE_LIST) => {
            let n = read_len(cur, "list length")?;
            let mut out = ListElems::new(contents, bounded_capacity(n, cur.remaining(), 1));
            for _ in 0..n {
                out.push(read_str(cur)?);
            }
            Value::List(out.items)
        }
        (_, RDB_TYPE_SET) => Value::Set(read_str_seq(cur, "set size")?),
        (_, RDB_TYPE_ZSET | RDB_TYPE_ZSET_2) => Value::ZSet(read_zset(cur, t == RDB_TYPE_ZSET_2)?),
        (_, RDB_TYPE_HASH) => {
            let n = read_len(cur, "hash size")?;
            let mut out = Vec::with_capacity(bounded_capacity(n, cur.remaining(), 2));
            for _ in 0..n {
                let field = read_str(cur)?;
                let value = read_str(cur)?;
                out.push(HashField { field, value, expire_at_ms: None });
            }
            Value::Hash(out)
        }
        (_, RDB_TYPE_MODULE_PRE_GA) => return Err(Error::unsupported(
            cur.offset(),
            "module value in the pre-GA format (type 6): it has no item tags, so it cannot be read without the module",
        )),
        (_, RDB_TYPE_MODULE_2) => Value::Module(module::read_module_value(cur)?),
        (_, RDB_TYPE_HASH_ZIPMAP) => {
            let blob = read_blob(cur, "zipmap")?;
            let mut out = Vec::new();
            zipmap::parse(&blob.data, |f, v| {
                out.push(HashField { field: blob.lift(f), value: blob.lift(v), expire_at_ms: None })
            })
            .map_err(|e| blob.error("zipmap", e.at, &e.msg))?;
            Value::Hash(out)
        }
        (_, RDB_TYPE_LIST_ZIPLIST) => {
            let blob = read_blob(cur, "ziplist")?;
            let mut out = ListElems::new(contents, 0);
            out.add_ziplist(&blob)?;
            Value::List(out.items)
        }
        (_, RDB_TYPE_SET_INTSET) => {
            let blob = read_blob(cur, "intset")?;
            let mut out = Vec::new();
            intset::parse(&blob.data, |v| out.push(Str::Int(v))).map_err(|e| blob.error("intset", e.at, &e.msg))?;
            Value::Set(out)
        }
        (_, RDB_TYPE_ZSET_ZIPLIST) => {
            let blob = read_blob(cur, "ziplist")?;
            Value::ZSet(zset_pairs(&blob, collect_ziplist(&blob)?)?)
        }
        (_, RDB_TYPE_HASH_ZIPLIST) => {
            let blob = read_blob(cur, "ziplist")?;
            Value::Hash(hash_pairs(&blob, collect_ziplist(&blob)?)?)
        }
        (_, RDB_TYPE_LIST_QUICKLIST) => {
            let n = read_len(cur, "quicklist node count")?;
            let mut out = ListElems::new(contents, 0);
            for _ in 0..n {
                let blob = read_blob(cur, "quicklist ziplist node")?;
                quicklist_node_not_empty(&blob)?;
                // A node holding an empty ziplist is skipped, as Redis skips it.
                out.add_ziplist(&blob)?;
            }
            Value::List(out.items)
        }
        (_, RDB_TYPE_LIST_QUICKLIST_2) => {
            let n = read_len(cur, "quicklist node count")?;
            let mut out = ListElems::new(contents, 0);
            for _ in 0..n {
                let at = cur.offset();
                match read_len(cur, "quicklist node container")? {
                    QUICKLIST_NODE_CONTAINER_PLAIN => {
                        let node_at = cur.offset();
                        let s = read_str(cur)?;
                        if s.is_empty() {
                            return Err(Error::corrupt(node_at, "quicklist plain node of 0 bytes"));
                        }
                        out.push(s)
                    }
                    QUICKLIST_NODE_CONTAINER_PACKED => {
                        let blob = read_blob(cur, "quicklist listpack node")?;
                        quicklist_node_not_empty(&blob)?;
                        out.add_listpack(&blob)?;
                    }
                    c => {
                        return Err(Error::corrupt(
                            at,
                            format!("quicklist node container {c}, expected 1 (plain) or 2 (packed)"),
                        ))
                    }
                }
            }
            Value::List(out.items)
        }
        (_, RDB_TYPE_HASH_LISTPACK) => {
            let blob = read_blob(cur, "listpack")?;
            Value::Hash(hash_pairs(&blob, collect_listpack(&blob)?)?)
        }
        (_, RDB_TYPE_ZSET_LISTPACK) => {
            let blob = read_blob(cur, "listpack")?;
            Value::ZSet(zset_pairs(&blob, collect_listpack(&blob)?)?)
        }
        (_, RDB_TYPE_SET_LISTPACK) => {
            let blob = read_blob(cur, "listpack")?;
            Value::Set(collect_listpack(&blob)?)
        }
        (_, RDB_TYPE_STREAM_LISTPACKS | RDB_TYPE_STREAM_LISTPACKS_2 | RDB_TYPE_STREAM_LISTPACKS_3) => {
            Value::Stream(Box::new(stream::read_stream(cur, t, contents)?))
        }
        (Vendor::Redis, RDB_TYPE_STREAM_LISTPACKS_4) => Value::Stream(Box::new(stream::read_stream(cur, t, contents)?)),
        (Vendor::Redis, RDB_TYPE_HASH_METADATA_PRE_GA) => {
            let n = read_len(cur, "hash size")?;
            let mut out = Vec::with_capacity(bounded_capacity(n, cur.remaining(), 3));
            for _ in 0..n {
                let at = cur.offset();
                let ttl = read_len(cur, "field expiry")?;
                let field = read_str(cur)?;
                let value = read_str(cur)?;
                out.push(HashField { field, value, expire_at_ms: field_expiry(at, ttl)? });
            }
            Value::Hash(out)
        }
        (Vendor::Redis, RDB_TYPE_HASH_METADATA) => {
            let at = cur.offset();
            let min_expire = cur.read_i64_le("the hash minimum field expiry")?;
            // `rdb.c`, `rdbLoadObject`: at most EB_EXPIRE_TIME_INVALID (2^48), which
            // stands for "no field has an expiry".
            if min_expire as u64 > EB_EXPIRE_TIME_MAX as u64 + 1 {
                return Err(Error::corrupt(at, format!("hash minimum field expiry {min_expire} is out of range")));
            }
            let n = read_len(cur, "hash size")?;
            let mut out = Vec::with_capacity(bounded_capacity(n, cur.remaining(), 3));
            for _ in 0..n {
                let at = cur.offset();
                let ttl = read_len(cur, "field expiry")?;
                let field = read_str(cur)?;
                let value = read_str(cur)?;
                // Stored relative to the minimum, plus one so that 0 can mean "none".
                let expire = if ttl == 0 {
                    None
                } else {
                    let abs = (ttl as i64).checked_add(min_expire).and_then(|v| v.checked_sub(1));
                    Some(abs.filter(|&v| (0..=EB_EXPIRE_TIME_MAX).contains(&v)).ok_or_else(|| {
                        Error::corrupt(at, format!("field expiry {ttl} + {min_expire} is out of range"))
                    })?)
                };
                out.push(HashField { field, value, expire_at_ms: expire });
            }
            Value::Hash(out)
        }
        (Vendor::Redis, RDB_TYPE_HASH_LISTPACK_EX_PRE_GA | RDB_TYPE_HASH_LISTPACK_EX) => {
            if t == RDB_TYPE_HASH_LISTPACK_EX {
                cur.read_i64_le("the hash minimum field expiry")?;
            }
            let blob = read_blob(cur, "listpack")?;
            let entries = collect_listpack(&blob)?;
            if entries.len() % 3 != 0 {
                return Err(blob.error(
                    "listpack",
                    0,
                    &format!("{} elements, expected field/value/expiry triplets", entries.len()),
                ));
            }
            let mut out = Vec::with_capacity(entries.len() / 3);
            let mut it = entries.into_iter();
            // `rdb.c`, `_lpEntryValidation`: each expiry an integer entry in range, in
            // ascending order, and the fields without one (0) last.
            let mut last = -1i64;
            while let (Some(field), Some(value), Some(ttl)) = (it.next(), it.next(), it.next()) {
                let Str::Int(ttl) = ttl else {
                    return Err(blob.error("listpack", 0, "a field expiry is stored as a string, not an integer"));
                };
                if !(0..=EB_EXPIRE_TIME_MAX).contains(&ttl) {
                    return Err(blob.error("listpack", 0, &format!("field expiry {ttl} is out of range")));
                }
                if ttl != 0 && (last == 0 || ttl < last) {
                    let why = if last == 0 {
                        format!("field expiry {ttl} after a field without one (those come last)")
                    } else {
                        format!("field expiry {ttl} after {last} (they are kept in ascending order)")
                    };
                    return Err(blob.error("listpack", 0, &why));
                }
                last = ttl;
                out.push(HashField { field, value, expire_at_ms: (ttl != 0).then_some(ttl) });
            }
            Value::Hash(out)
        }
        _ => return Err(Error::unsupported(cur.offset().saturating_sub(1), format!("value type {t}"))),
    };
    Ok(if is_empty(&v) { None } else { Some(v) })
}

/// A quicklist node's blob may not be empty (`rdb.c`, `rdbLoadObject`: an encoded length
/// of 0 is refused, for ziplist and listpack nodes alike).
fn quicklist_node_not_empty(blob: &Blob<'_>) -> Result<()> {
    if blob.data.is_empty() {
        return Err(blob.error("quicklist node", 0, "node of 0 bytes"));
    }
    Ok(())
}

fn field_expiry(at: u64, ttl: u64) -> Result<Option<i64>> {
    match ttl {
        0 => Ok(None),
        v if v <= EB_EXPIRE_TIME_MAX as u64 => Ok(Some(v as i64)),
        v => Err(Error::corrupt(at, format!("field expiry {v} is out of range"))),
    }
}

fn is_empty(v: &Value<'_>) -> bool {
    match v {
        Value::List(l) | Value::Set(l) => l.is_empty(),
        Value::ZSet(z) => z.is_empty(),
        Value::Hash(h) => h.is_empty(),
        Value::String(_) | Value::Stream(_) | Value::Module(_) => false,
    }
}

/// A list's elements as they are decoded: every one, or with `keep` false only the
/// first (the rest validated and dropped: the list is known not to be empty).
struct ListElems<'a> {
    keep: bool,
    items: Vec<Str<'a>>,
}

impl<'a> ListElems<'a> {
    fn new(keep: bool, capacity: usize) -> Self {
        ListElems { keep, items: Vec::with_capacity(if keep { capacity } else { 1 }) }
    }

    #[inline]
    fn wants(&self) -> bool {
        self.keep || self.items.is_empty()
    }

    #[inline]
    fn push(&mut self, s: Str<'a>) {
        if self.wants() {
            self.items.push(s);
        }
    }

    fn add_ziplist(&mut self, blob: &Blob<'a>) -> Result<()> {
        ziplist::parse(&blob.data, |e| {
            if self.wants() {
                self.items.push(blob.lift(e))
            }
        })
        .map(|_| ())
        .map_err(|e| blob.error("ziplist", e.at, &e.msg))
    }

    fn add_listpack(&mut self, blob: &Blob<'a>) -> Result<()> {
        if self.keep {
            self.items.reserve(listpack::count_hint(&blob.data));
        }
        listpack::parse(&blob.data, |e| {
            if self.wants() {
                self.items.push(blob.lift(e))
            }
        })
        .map(|_| ())
        .map_err(|e| blob.error("listpack", e.at, &e.msg))
    }
}

fn read_str_seq<'a>(cur: &mut Cursor<'a>, what: &'static str) -> Result<Vec<Str<'a>>> {
    let n = read_len(cur, what)?;
    let mut out = Vec::with_capacity(bounded_capacity(n, cur.remaining(), 1));
    for _ in 0..n {
        out.push(read_str(cur)?);
    }
    Ok(out)
}

fn read_zset<'a>(cur: &mut Cursor<'a>, binary: bool) -> Result<Vec<(Str<'a>, f64)>> {
    let n = read_len(cur, "zset size")?;
    let mut out = Vec::with_capacity(bounded_capacity(n, cur.remaining(), 2));
    for _ in 0..n {
        let member = read_str(cur)?;
        let at = cur.offset();
        let score = if binary { cur.read_f64_le("a binary score")? } else { read_string_double(cur)? };
        if score.is_nan() {
            // Redis refuses NaN scores when loading.
            return Err(Error::corrupt(at, "zset score is NaN"));
        }
        out.push((member, score));
    }
    Ok(out)
}

fn read_valkey_hash_2<'a>(cur: &mut Cursor<'a>) -> Result<Vec<HashField<'a>>> {
    let n = read_len(cur, "hash size")?;
    let mut out = Vec::with_capacity(bounded_capacity(n, cur.remaining(), 10));
    for _ in 0..n {
        let field = read_str(cur)?;
        let value = read_str(cur)?;
        let expire = cur.read_i64_le("a field expiry")?;
        // -1 means no expiry; 0 is a real (past) time.
        out.push(HashField { field, value, expire_at_ms: (expire != -1).then_some(expire) });
    }
    Ok(out)
}

fn collect_ziplist<'a>(blob: &Blob<'a>) -> Result<Vec<Str<'a>>> {
    let mut out = Vec::new();
    ziplist::parse(&blob.data, |e| out.push(blob.lift(e))).map_err(|e| blob.error("ziplist", e.at, &e.msg))?;
    Ok(out)
}

fn collect_listpack<'a>(blob: &Blob<'a>) -> Result<Vec<Str<'a>>> {
    let mut out = Vec::with_capacity(listpack::count_hint(&blob.data));
    listpack::parse(&blob.data, |e| out.push(blob.lift(e))).map_err(|e| blob.error("listpack", e.at, &e.msg))?;
    Ok(out)
}

fn hash_pairs<'a>(blob: &Blob<'a>, elems: Vec<Str<'a>>) -> Result<Vec<HashField<'a>>> {
    if elems.len() % 2 != 0 {
        return Err(blob.error("hash", 0, &format!("{} elements, expected field/value pairs", elems.len())));
    }
    let mut out = Vec::with_capacity(elems.len() / 2);
    let mut it = elems.into_iter();
    while let (Some(field), Some(value)) = (it.next(), it.next()) {
        out.push(HashField { field, value, expire_at_ms: None });
    }
    Ok(out)
}

fn zset_pairs<'a>(blob: &Blob<'a>, elems: Vec<Str<'a>>) -> Result<Vec<(Str<'a>, f64)>> {
    if elems.len() % 2 != 0 {
        return Err(blob.error("zset", 0, &format!("{} elements, expected member/score pairs", elems.len())));
    }
    let mut out = Vec::with_capacity(elems.len() / 2);
    let mut it = elems.into_iter();
    while let (Some(member), Some(score)) = (it.next(), it.next()) {
        let score = match &score {
            Str::Int(i) => *i as f64,
            s => super::string::parse_score(&s.bytes())
                .filter(|v| !v.is_nan())
                .ok_or_else(|| blob.error("zset", 0, "a score is not a number"))?,
        };
        out.push((member, score));
    }
    Ok(out)
}
