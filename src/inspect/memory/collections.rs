//! Sets, sorted sets and hashes: the encoding a target ends with after loading the record
//! (`rdb.c`, `rdbLoadObject`) or running the commands that recreate it (SADD, ZADD,
//! HSET), and what `objectComputeSize` counts for it.

use super::alloc::{self, DictSim};
use super::encode::{self, Item};
use super::{raw, Model, Sized};
use crate::rdb::constants::*;
use crate::rdb::{HashField, Record, Str};

/// `print` sends SADD with this many members, ZADD and HSET with half as many pairs.
const CHUNK: usize = 256;

/// A listpack's allocation as `listpack.c` keeps it: `lpNew(capacity)` allocates at least
/// the capacity, and `lpInsert` reallocates only when the bytes outgrow the allocation
/// (`lp_malloc_size`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Lp {
    pub bytes: u64,
    pub alloc: u64,
}

impl Lp {
    pub fn new(m: &Model, capacity: u64) -> Lp {
        Lp { bytes: encode::LP_EMPTY, alloc: m.class(capacity.max(encode::LP_EMPTY)) }
    }

    pub fn push(&mut self, m: &Model, it: Item) {
        self.grow(m, encode::lp_entry(it) as i64);
    }

    /// The listpack grows (or shrinks, in place) by `delta` bytes.
    pub fn grow(&mut self, m: &Model, delta: i64) {
        self.bytes = self.bytes.saturating_add_signed(delta);
        if self.bytes > self.alloc {
            self.alloc = m.class(self.bytes);
        }
    }
}

/// `listpack.c`, `lpEstimateBytesRepeatedInteger`.
fn lp_estimate_ints(v: i64, rep: u64) -> u64 {
    6 + encode::lp_entry(Item::Int(v)) * rep + 1
}

/// The `dict` of a hash table value, its buckets, and each entry's `dictEntry` plus
/// what it points to (`elesize`), averaged and multiplied back as `objectComputeSize`
/// does.
fn ht_cost(m: &Model, base: u64, d: &DictSim, entries: impl Iterator<Item = u64>) -> u64 {
    let mut elesize = 0u64;
    let mut n = 0u64;
    for e in entries {
        elesize += e;
        n += 1;
    }
    let asize = (base + m.dict_struct()) as f64 + 8.0 * d.expected_buckets();
    m.add_average_f(asize, elesize as f64, n, n)
}

fn presized(n: u64) -> DictSim {
    let mut d = DictSim::new();
    d.expand(n);
    d.add_n(n);
    d
}

fn items_of(elems: &[Str<'_>]) -> Vec<Item> {
    elems.iter().map(encode::item).collect()
}

/// Whether the file's blob is what the target keeps: the element count in its header
/// matches the record (a hash left without its expired fields no longer does).
fn file_blob(rec: &Record<'_>, entries: u64) -> Option<u64> {
    let (bytes, count) = raw::blob_len_count(rec.raw_value, rec.rdb_type)?;
    (count == entries).then_some(bytes)
}

// ---- Sets ------------------------------------------------------------------------------

enum SetEnc {
    /// An intset of these bytes.
    Intset(u64),
    Listpack(u64),
    Ht(DictSim),
}

/// The bytes of an intset of these members (all integers).
fn intset_of(items: &[Item]) -> u64 {
    let ints = items.iter().filter_map(|i| if let Item::Int(v) = i { Some(*v) } else { None });
    let (min, max) = ints.fold((i64::MAX, i64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    encode::intset_bytes(items.len() as u64, min, max)
}

pub(super) fn set(m: &Model, rec: &Record<'_>, elems: &[Str<'_>]) -> Sized {
    let lens: Vec<u64> = elems.iter().map(|s| s.len() as u64).collect();
    let n = lens.len() as u64;
    let largest = lens.iter().copied().max().unwrap_or(0);
    let base = m.base(rec.key.len() as u64, rec.expire_at_ms.is_some());
    let enc = if m.commands() { sadd(m, &items_of(elems), &lens) } else { load_set(m, rec, elems, &lens) };
    let (bytes, encoding) = match enc {
        // 6.2: `sizeof(*is) + encoding * length`, the bytes; 7.0: `zmalloc_size`.
        SetEnc::Intset(is) => (base + if m.listpacks() { m.class(is) } else { is }, "intset"),
        SetEnc::Listpack(alloc) => (base + alloc, "listpack"),
        SetEnc::Ht(d) => (ht_cost(m, base, &d, lens.iter().map(|&l| 24 + m.sds(l))), "hashtable"),
    };
    Sized { bytes, encoding, elements: n, largest }
}

fn intset_max(m: &Model) -> u64 {
    m.th.set_max_intset_entries.min(1 << 30)
}

/// `rdbLoadObject` for the three set types.
fn load_set(m: &Model, rec: &Record<'_>, elems: &[Str<'_>], lens: &[u64]) -> SetEnc {
    let n = lens.len() as u64;
    let th = &m.th;
    match rec.rdb_type {
        // Too many for the target: `setTypeConvert`, presized.
        RDB_TYPE_SET_INTSET if n > th.set_max_intset_entries => SetEnc::Ht(presized(n)),
        RDB_TYPE_SET_INTSET => SetEnc::Intset(file_blob(rec, n).unwrap_or_else(|| intset_of(&items_of(elems)))),
        RDB_TYPE_SET_LISTPACK if m.at_least(7, 2) => {
            if n > th.set_max_listpack_entries {
                SetEnc::Ht(presized(n))
            } else {
                let bytes = file_blob(rec, n).unwrap_or_else(|| encode::listpack(elems.iter().map(encode::item)));
                SetEnc::Listpack(m.class(bytes))
            }
        }
        _ => load_set_members(m, &items_of(elems), lens),
    }
}

/// `rdbLoadObject`, `RDB_TYPE_SET`: an intset while the members are integers (when the
/// set is small enough for one); at the first other member a hash table presized for
/// all (from 7.2 a listpack while members stay within its limits).
fn load_set_members(m: &Model, items: &[Item], lens: &[u64]) -> SetEnc {
    let n = items.len() as u64;
    let th = &m.th;
    if n > intset_max(m) {
        return SetEnc::Ht(presized(n));
    }
    let Some(first) = items.iter().position(|i| !matches!(i, Item::Int(_))) else {
        return SetEnc::Intset(intset_of(items));
    };
    let i = first as u64;
    if !m.at_least(7, 2) {
        // `setTypeConvert` presizes for the intset's members, then `dictTryExpand(len)`.
        let mut d = DictSim::new();
        d.expand(i);
        d.add_n(i);
        d.expand(n);
        d.add_n(n - i);
        return SetEnc::Ht(d);
    }
    let maxlen = lens[..=first].iter().copied().max().unwrap_or(0);
    if !(i < th.set_max_listpack_entries && maxlen <= th.set_max_listpack_value) {
        return SetEnc::Ht(presized(n));
    }
    // `setTypeConvert(o, OBJ_ENCODING_LISTPACK)`: a listpack estimated for the intset's
    // members (`setTypeConvertAndExpand`), the members appended, then the rest.
    let ints = items[..first].iter().filter_map(|it| if let Item::Int(v) = it { Some(*v) } else { None });
    let (min, max) = ints.fold((i64::MAX, i64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let capacity = if i > 0 { lp_estimate_ints(min, i).max(lp_estimate_ints(max, i)) } else { 0 };
    let mut lp = Lp::new(m, capacity);
    for &it in &items[..first] {
        lp.push(m, it);
    }
    for (k, (&it, &len)) in items.iter().zip(lens).enumerate().skip(first) {
        if (k as u64) < th.set_max_listpack_entries && len <= th.set_max_listpack_value {
            lp.push(m, it);
        } else {
            return SetEnc::Ht(presized(n));
        }
    }
    SetEnc::Listpack(lp.alloc)
}

/// SADD in chunks (`t_set.c`, `saddCommand`, `setTypeCreate`, `setTypeAdd`).
fn sadd(m: &Model, items: &[Item], lens: &[u64]) -> SetEnc {
    let th = &m.th;
    let n = items.len();
    let mut enc: Option<SetEnc> = None;
    let mut count = 0u64;
    let mut ints: Vec<i64> = Vec::new();
    let mut lp = Lp::new(m, 0);
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        let hint = (end - start) as u64;
        let first_is_int = matches!(items[start], Item::Int(_));
        enc = Some(match enc {
            None if m.at_least(7, 2) => {
                if first_is_int && hint <= th.set_max_intset_entries {
                    SetEnc::Intset(0)
                } else if hint <= th.set_max_listpack_entries {
                    SetEnc::Listpack(0)
                } else {
                    let mut d = DictSim::new();
                    d.expand(hint);
                    SetEnc::Ht(d)
                }
            }
            None => {
                if first_is_int {
                    SetEnc::Intset(0)
                } else {
                    SetEnc::Ht(DictSim::new())
                }
            }
            // `setTypeMaybeConvert` (7.2): a big enough command converts first.
            Some(SetEnc::Listpack(_)) if m.at_least(7, 2) && hint > th.set_max_listpack_entries => {
                let mut d = DictSim::new();
                d.expand(hint);
                d.add_n(count);
                SetEnc::Ht(d)
            }
            Some(SetEnc::Intset(_)) if m.at_least(7, 2) && hint > th.set_max_intset_entries => {
                let mut d = DictSim::new();
                d.expand(hint);
                d.add_n(count);
                SetEnc::Ht(d)
            }
            Some(e) => e,
        });
        for (&it, &len) in items[start..end].iter().zip(&lens[start..end]) {
            let e = enc.take().unwrap_or(SetEnc::Intset(0));
            enc = Some(match e {
                SetEnc::Ht(mut d) => {
                    d.add();
                    SetEnc::Ht(d)
                }
                SetEnc::Intset(_) => match it {
                    Item::Int(v) => {
                        ints.push(v);
                        if ints.len() as u64 > intset_max(m) {
                            let mut d = DictSim::new();
                            d.expand(ints.len() as u64);
                            d.add_n(ints.len() as u64);
                            SetEnc::Ht(d)
                        } else {
                            SetEnc::Intset(0)
                        }
                    }
                    Item::Bytes(_) => {
                        let k = ints.len() as u64;
                        let maxint = ints.iter().map(|v| Item::Int(*v).len()).max().unwrap_or(0);
                        if m.at_least(7, 2)
                            && k < th.set_max_listpack_entries
                            && len <= th.set_max_listpack_value
                            && maxint <= th.set_max_listpack_value
                        {
                            // Converted with room for one more, then shrunk to fit.
                            let mut l = Lp::new(m, 0);
                            for &v in &ints {
                                l.push(m, Item::Int(v));
                            }
                            l.push(m, it);
                            lp = Lp { bytes: l.bytes, alloc: m.class(l.bytes) };
                            SetEnc::Listpack(0)
                        } else {
                            let mut d = DictSim::new();
                            d.expand(if m.at_least(7, 2) { k + 1 } else { k });
                            d.add_n(k);
                            d.add();
                            SetEnc::Ht(d)
                        }
                    }
                },
                SetEnc::Listpack(_) => {
                    if count < th.set_max_listpack_entries && len <= th.set_max_listpack_value {
                        lp.push(m, it);
                        SetEnc::Listpack(0)
                    } else {
                        let mut d = DictSim::new();
                        d.expand(count + 1);
                        d.add_n(count + 1);
                        SetEnc::Ht(d)
                    }
                }
            });
            count += 1;
        }
    }
    match enc {
        Some(SetEnc::Listpack(_)) => SetEnc::Listpack(lp.alloc),
        Some(SetEnc::Intset(_)) | None => SetEnc::Intset(intset_of(items)),
        Some(e) => e,
    }
}

// ---- Sorted sets -----------------------------------------------------------------------

enum ZEnc {
    /// A listpack (7.0) or ziplist (6.2) of these bytes, and its allocation.
    Packed {
        bytes: u64,
        alloc: u64,
    },
    Skiplist(DictSim),
}

pub(super) fn zset(m: &Model, rec: &Record<'_>, pairs: &[(Str<'_>, f64)]) -> Sized {
    let n = pairs.len() as u64;
    let lens: Vec<u64> = pairs.iter().map(|(s, _)| s.len() as u64).collect();
    let largest = lens.iter().copied().max().unwrap_or(0);
    let base = m.base(rec.key.len() as u64, rec.expire_at_ms.is_some());
    let enc = if m.commands() { zadd(m, pairs, &lens) } else { load_zset(m, rec, pairs, &lens) };
    let (bytes, encoding) = match enc {
        // 6.2 counts a ziplist's bytes (`ziplistBlobLen`), 7.0 the allocation.
        ZEnc::Packed { bytes, alloc } => {
            (base + if m.listpacks() { alloc } else { bytes }, if m.listpacks() { "listpack" } else { "ziplist" })
        }
        ZEnc::Skiplist(d) => {
            // `objectComputeSize`: zset, zskiplist, dict, buckets, the header node; per
            // member its sds, its dict entry (8.2: a `dictEntryNoValue` of 16) and its
            // node at the expected level.
            let entry = if m.kvobj() { 16.0 } else { 24.0 };
            let node = alloc::expected_skiplist_node(m.q);
            let elesize: f64 = lens.iter().map(|&l| m.sds(l) as f64 + entry + node).sum();
            let asize =
                (base + 16 + 32 + m.dict_struct() + alloc::skiplist_header(m.q)) as f64 + 8.0 * d.expected_buckets();
            (m.add_average_f(asize, elesize, n, n), "skiplist")
        }
    };
    Sized { bytes, encoding, elements: n, largest }
}

/// A zset as a listpack or ziplist built from its members in score order
/// (`zsetConvert`, `zzlInsertAt`), scores as the version writes them; `text` for scores
/// that come as text from an old ziplist.
fn packed_zset(m: &Model, pairs: &[(Str<'_>, f64)], text: encode::ScoreText) -> ZEnc {
    let entries = pairs.iter().flat_map(|(s, score)| [encode::item(s), encode::score_item(*score, text)]);
    if m.listpacks() {
        let bytes = encode::listpack(entries);
        ZEnc::Packed { bytes, alloc: m.class(bytes) }
    } else {
        // A ziplist's bytes depend on the order (each entry stores the previous one's
        // length): the skiplist's, by score then member.
        let mut sorted: Vec<&(Str<'_>, f64)> = pairs.iter().collect();
        sorted.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.bytes().cmp(&b.0.bytes())));
        let bytes =
            encode::ziplist(sorted.iter().flat_map(|(s, score)| [encode::item(s), encode::score_item(*score, text)]));
        ZEnc::Packed { bytes, alloc: m.class(bytes) }
    }
}

/// The skiplist's dict after `zsetConvert` from a listpack: presized from 7.2, grown by
/// inserts before.
fn converted_dict(m: &Model, n: u64) -> DictSim {
    if m.at_least(7, 2) {
        presized(n)
    } else {
        let mut d = DictSim::new();
        d.add_n(n);
        d
    }
}

fn load_zset(m: &Model, rec: &Record<'_>, pairs: &[(Str<'_>, f64)], lens: &[u64]) -> ZEnc {
    let n = pairs.len() as u64;
    let th = &m.th;
    let fits_count = n <= th.zset_max_listpack_entries;
    match rec.rdb_type {
        RDB_TYPE_ZSET_ZIPLIST if !fits_count => ZEnc::Skiplist(converted_dict(m, n)),
        RDB_TYPE_ZSET_ZIPLIST if !m.listpacks() => {
            let bytes = file_blob(rec, 2 * n).unwrap_or_else(|| match packed_zset(m, pairs, encode::ScoreText::V6) {
                ZEnc::Packed { bytes, .. } => bytes,
                ZEnc::Skiplist(_) => 0,
            });
            ZEnc::Packed { bytes, alloc: m.class(bytes) }
        }
        // 7.0 converts the ziplist's entries as they are: the scores as 6.2 wrote them.
        RDB_TYPE_ZSET_ZIPLIST => packed_zset(m, pairs, encode::ScoreText::V6),
        RDB_TYPE_ZSET_LISTPACK if m.listpacks() => {
            if !fits_count {
                ZEnc::Skiplist(converted_dict(m, n))
            } else {
                match file_blob(rec, 2 * n) {
                    Some(bytes) => ZEnc::Packed { bytes, alloc: m.class(bytes) },
                    None => packed_zset(m, pairs, m.score_text()),
                }
            }
        }
        // A skiplist in the file (or a listpack 6.2 cannot read): loaded into a skiplist,
        // presized, then converted when small enough.
        _ => {
            let maxlen = lens.iter().copied().max().unwrap_or(0);
            if fits_count && maxlen <= th.zset_max_listpack_value {
                packed_zset(m, pairs, m.score_text())
            } else {
                ZEnc::Skiplist(presized(n))
            }
        }
    }
}

/// ZADD in chunks (`t_zset.c`, `zaddGenericCommand`, `zsetAdd`).
fn zadd(m: &Model, pairs: &[(Str<'_>, f64)], lens: &[u64]) -> ZEnc {
    let th = &m.th;
    let per = CHUNK / 2;
    let mut skiplist: Option<DictSim> = None;
    let mut count = 0u64;
    for (ci, chunk) in lens.chunks(per).enumerate() {
        let hint = chunk.len() as u64;
        if ci == 0 {
            // 7.2: `zsetTypeCreate(elements, len)`; before, by the first member alone.
            let packed = if m.at_least(7, 2) {
                hint <= th.zset_max_listpack_entries && chunk[0] <= th.zset_max_listpack_value
            } else {
                th.zset_max_listpack_entries > 0 && chunk[0] <= th.zset_max_listpack_value
            };
            if !packed {
                let mut d = DictSim::new();
                if m.at_least(7, 2) {
                    d.expand(hint);
                }
                skiplist = Some(d);
            }
        } else if skiplist.is_none() && m.at_least(7, 2) && hint > th.zset_max_listpack_entries {
            // `zsetTypeMaybeConvert`.
            let mut d = DictSim::new();
            d.expand(hint);
            d.add_n(count);
            skiplist = Some(d);
        }
        for &len in chunk {
            if skiplist.is_none() && (count + 1 > th.zset_max_listpack_entries || len > th.zset_max_listpack_value) {
                let mut d = if m.at_least(7, 2) {
                    let mut d = DictSim::new();
                    d.expand(count + 1);
                    d
                } else {
                    DictSim::new()
                };
                d.add_n(count);
                skiplist = Some(d);
            }
            if let Some(d) = skiplist.as_mut() {
                d.find();
                d.add();
            }
            count += 1;
        }
    }
    match skiplist {
        Some(d) => ZEnc::Skiplist(d),
        None => packed_zset(m, pairs, m.score_text()),
    }
}

// ---- Hashes ----------------------------------------------------------------------------

enum HEnc {
    /// A listpack (ziplist on 6.2): its bytes and allocation.
    Packed {
        bytes: u64,
        alloc: u64,
    },
    /// A listpack with field TTLs (7.4): `listpackEx` and its listpack's allocation.
    PackedEx(u64),
    Ht(DictSim),
}

pub(super) fn hash(m: &Model, rec: &Record<'_>, fields: &[HashField<'_>]) -> Sized {
    let n = fields.len() as u64;
    let largest = fields.iter().map(|f| f.field.len().max(f.value.len()) as u64).max().unwrap_or(0);
    let base = m.base(rec.key.len() as u64, rec.expire_at_ms.is_some());
    // Field TTLs exist from 7.4; an older target gets the fields without them.
    let ttls = m.at_least(7, 4);
    let with_ttl = ttls
        && (fields.iter().any(|f| f.expire_at_ms.is_some())
            || (RDB_TYPE_HASH_METADATA_PRE_GA..=RDB_TYPE_HASH_LISTPACK_EX).contains(&rec.rdb_type));
    let enc = if m.commands() { hset(m, fields, with_ttl) } else { load_hash(m, rec, fields, with_ttl) };
    let (bytes, encoding) = match enc {
        HEnc::Packed { bytes, alloc } => {
            (base + if m.listpacks() { alloc } else { bytes }, if m.listpacks() { "listpack" } else { "ziplist" })
        }
        // `sizeof(listpackEx)`: its expire meta, (7.4 the key,) the listpack pointer.
        HEnc::PackedEx(lp) => (base + m.class(if m.kvobj() { 24 } else { 32 }) + lp, "listpackex"),
        HEnc::Ht(d) => {
            let entries = fields.iter().map(|f| {
                let flen = f.field.len() as u64;
                let field = if ttls { hfield(m, flen, f.expire_at_ms.is_some()) } else { m.sds(flen) };
                field + m.sds(f.value.len() as u64) + 24
            });
            (ht_cost(m, base, &d, entries), "hashtable")
        }
    };
    Sized { bytes, encoding, elements: n, largest }
}

/// A hash field from 7.4 (`t_hash.c`, `hfieldNew`; `mstr.c`): an mstr (header 1 byte
/// below 32 bytes, 3 below 65536, else 9), with an `ExpireMeta` (16) and the flags (2)
/// in front when the field has a TTL.
fn hfield(m: &Model, len: u64, ttl: bool) -> u64 {
    let hdr = if len < 32 {
        1
    } else if len < 65536 {
        3
    } else {
        9
    };
    m.class(if ttl { 18 } else { 0 } + hdr + len + 1)
}

/// The listpack entries of the fields: field and value; with TTLs a third entry, the
/// expiry or 0 (`HASH_LP_NO_TTL`).
fn hash_entries<'a>(fields: &'a [HashField<'a>], with_ttl: bool) -> impl Iterator<Item = Item> + 'a {
    fields.iter().flat_map(move |f| {
        let ttl = with_ttl.then(|| Item::Int(f.expire_at_ms.unwrap_or(0)));
        [Some(encode::item(&f.field)), Some(encode::item(&f.value)), ttl].into_iter().flatten()
    })
}

fn packed_hash(m: &Model, fields: &[HashField<'_>], with_ttl: bool) -> HEnc {
    if with_ttl {
        return HEnc::PackedEx(m.class(encode::listpack(hash_entries(fields, true))));
    }
    let bytes = if m.listpacks() {
        encode::listpack(hash_entries(fields, false))
    } else {
        encode::ziplist(hash_entries(fields, false))
    };
    HEnc::Packed { bytes, alloc: m.class(bytes) }
}

/// The dict of a listpack converted by `hashTypeConvert`: grown by inserts on 6.2,
/// presized from 7.0.
fn hash_converted(m: &Model, n: u64) -> DictSim {
    if m.listpacks() {
        presized(n)
    } else {
        let mut d = DictSim::new();
        d.add_n(n);
        d
    }
}

fn load_hash(m: &Model, rec: &Record<'_>, fields: &[HashField<'_>], with_ttl: bool) -> HEnc {
    let n = fields.len() as u64;
    let th = &m.th;
    let too_many = n > th.hash_max_listpack_entries;
    let per = if with_ttl { 3 } else { 2 };
    let t = rec.rdb_type;
    let kept_blob = match t {
        RDB_TYPE_HASH_ZIPLIST => !m.listpacks(),
        RDB_TYPE_HASH_LISTPACK => m.listpacks() && !with_ttl,
        RDB_TYPE_HASH_LISTPACK_EX | RDB_TYPE_HASH_LISTPACK_EX_PRE_GA => with_ttl,
        _ => false,
    };
    if matches!(
        t,
        RDB_TYPE_HASH_ZIPLIST | RDB_TYPE_HASH_LISTPACK | RDB_TYPE_HASH_LISTPACK_EX | RDB_TYPE_HASH_LISTPACK_EX_PRE_GA
    ) || (t == RDB_TYPE_HASH_ZIPMAP && !too_many)
    {
        // Packed in the file: only the count is checked (`rdbLoadObject`: "we only
        // check the length and not max element size"); a zipmap also by its longest
        // element.
        let maxlen = fields.iter().map(|f| f.field.len().max(f.value.len()) as u64).max().unwrap_or(0);
        if too_many || (t == RDB_TYPE_HASH_ZIPMAP && maxlen > th.hash_max_listpack_value) {
            return HEnc::Ht(hash_converted(m, n));
        }
        if kept_blob {
            if let Some(bytes) = file_blob(rec, per * n) {
                return if with_ttl {
                    HEnc::PackedEx(m.class(bytes))
                } else {
                    HEnc::Packed { bytes, alloc: m.class(bytes) }
                };
            }
        }
        return packed_hash(m, fields, with_ttl);
    }
    if t == RDB_TYPE_HASH_ZIPMAP {
        return HEnc::Ht(hash_converted(m, n));
    }
    // A hash table in the file (types 4, 22, 24): a hash table presized when there are
    // too many fields; else a listpack filled pair by pair until a field or value is too
    // long, then a hash table (`hashTypeConvert`, then `dictTryExpand` for what is left).
    if too_many {
        // Type 4 is presized; 22 and 24 go through `hashTypeConvert` of an empty
        // listpack and grow by inserts.
        let d = if t == RDB_TYPE_HASH {
            presized(n)
        } else {
            let mut d = DictSim::new();
            d.expand(0);
            d.add_n(n);
            d
        };
        return HEnc::Ht(after_expiry(m, rec, d));
    }
    let long = fields.iter().position(|f| {
        f.field.len() as u64 > th.hash_max_listpack_value || f.value.len() as u64 > th.hash_max_listpack_value
    });
    let Some(i) = long else {
        return packed_hash(m, fields, with_ttl);
    };
    let i = i as u64;
    let mut d = hash_converted(m, i);
    d.add();
    let left = n - i - 1;
    if left > 4 {
        d.expand(left);
    }
    d.add_n(left);
    HEnc::Ht(after_expiry(m, rec, d))
}

/// A hash table whose expired fields the record no longer has: the server loaded them
/// (presized for all) and deleted them since, shrinking the table as it went (7.4,
/// `dict.c`, `dictShrinkIfNeeded` after each delete).
fn after_expiry(m: &Model, rec: &Record<'_>, d: DictSim) -> DictSim {
    let Some(loaded) = raw::hash_metadata_len(rec.raw_value, rec.rdb_type) else { return d };
    let now = d.used();
    if loaded <= now || !m.at_least(7, 4) || loaded - now > 1 << 24 {
        return d;
    }
    let mut full = DictSim::new();
    if loaded <= m.th.hash_max_listpack_entries {
        full.expand(loaded);
    }
    full.add_n(loaded);
    for _ in now..loaded {
        full.delete();
    }
    full
}

/// HSET in chunks (`t_hash.c`, `hsetCommand`, `hashTypeTryConversion`, `hashTypeSet`),
/// then HPEXPIREAT for field TTLs, which turns a listpack into a `listpackEx`.
fn hset(m: &Model, fields: &[HashField<'_>], with_ttl: bool) -> HEnc {
    let th = &m.th;
    let per = CHUNK / 2;
    let mut ht: Option<DictSim> = None;
    let mut count = 0u64;
    // 7.4: the field lookup and insert are one `dictAddRaw`; before, `dictFind` then
    // `dictAdd`.
    let one_op = m.at_least(7, 4);
    for chunk in fields.chunks(per) {
        if ht.is_none() {
            let new_fields = chunk.len() as u64;
            let long = chunk.iter().any(|f| {
                f.field.len() as u64 > th.hash_max_listpack_value || f.value.len() as u64 > th.hash_max_listpack_value
            });
            if m.at_least(7, 4) && new_fields > th.hash_max_listpack_entries {
                let mut d = hash_converted(m, count);
                d.expand(new_fields);
                ht = Some(d);
            } else if long {
                ht = Some(hash_converted(m, count));
            }
        }
        for _ in chunk {
            match ht.as_mut() {
                Some(d) => {
                    if !one_op {
                        d.find();
                    }
                    d.add();
                }
                // Appended, then converted once the listpack holds too many
                // (`hashTypeSet`).
                None if count + 1 > th.hash_max_listpack_entries => ht = Some(hash_converted(m, count + 1)),
                None => {}
            }
            count += 1;
        }
    }
    match ht {
        Some(d) => HEnc::Ht(d),
        None => packed_hash(m, fields, with_ttl),
    }
}
