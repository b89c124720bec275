//! The exact memory model: what `MEMORY USAGE key SAMPLES 0` reports for a key on a
//! target server, computed from a decoded record, without a server.
//!
//! What the command counts differs by version (`object.c`, `memoryCommand`):
//! - **6.2 to 8.0**: `objectComputeSize` of the value (the `robj` header and the value's
//!   structures), plus the key's sds allocation and one `dictEntry` of the keyspace
//!   (7.0 in cluster mode adds the entry's slot-list metadata, 7.2 the dict's).
//! - **8.2 on**: `kvobjComputeSize`: one allocation holds the object header, the key, the
//!   expire when there is one, and a short string value; then the value's structures. No
//!   dict entry.
//!
//! With `SAMPLES 0` every element is looked at, so the figures are sums, which this model
//! reproduces from the elements and, where the target keeps the file's encoding, from the
//! sizes of the file's own blobs (`rdb.c`, `rdbLoadObject` keeps ziplists, listpacks,
//! intsets, quicklist nodes and stream listpacks as they are stored). Every allocation
//! is rounded to its jemalloc size class (`zmalloc_size`).
//!
//! A key reaches the target by loading ([`Load::Rdb`]: the file, or RESTORE of the
//! record's bytes) or as the commands `print --format resp` writes for it
//! ([`Load::Commands`], how an older destination takes types it cannot RESTORE); the two
//! build different structures (hash tables grown by inserts, XADD's preallocated stream
//! node). The encoding is the one the target ends with: the file's when it fits the
//! target's [`Thresholds`] (and the target has it), converted as `rdbLoadObject`
//! converts otherwise.
//!
//! What is not exact: skiplist node levels are random in Redis (a node costs its expected
//! size here); a hash table being grown by inserts may be caught mid-rehash (both bucket
//! arrays count), which depends on the server's random hash seed (an expected figure
//! here); with `list-compress-depth`, a node whose compressed length the file does not
//! give is counted uncompressed; module values are estimated from their serialized size
//! (the module's own `mem_usage` callback is what the server reports). Versions measured:
//! 6.2.5, 7.0.15, 8.2.3; 7.2, 7.4 and 8.0 follow their sources; 8.4 and later are sized as
//! 8.2 (8.4 counts allocations it tracks itself, `kvobjAllocSize`).
//!
//! Neither the expires dict nor the keyspace's buckets are in `MEMORY USAGE`: see
//! [`db_overhead`].

mod alloc;
mod collections;
mod config;
mod encode;
mod list;
mod raw;
mod rax;
mod stream;

pub use config::ConfigError;

use crate::rdb::{Record, Str, Value};
use crate::version::Version;
use alloc::{dict_table_size, sds_request, size_class};

/// The oldest server version the model sizes for (`--target-version` refuses older).
pub const OLDEST_MODELLED: Version = Version(6, 2);

/// The newest server version modelled: a newer target is sized as this one (every
/// version test of the model is "at least").
pub const NEWEST_MODELLED: Version = Version(8, 2);

/// The server a snapshot is sized for: its version and the thresholds that decide
/// encodings on load.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub version: Version,
    /// The patch release, where it matters (6.2.12 and 7.0.10 began to count a stream's
    /// listpacks by their allocation); `None`: the newest of `version`.
    pub patch: Option<u32>,
    pub thresholds: Thresholds,
    /// Cluster mode (7.0 and 7.2 count keyspace metadata per key).
    pub cluster: bool,
    /// The allocator's size classes.
    pub allocator: Allocator,
}

impl Target {
    /// A standalone server of `version` with the default thresholds and Redis's own
    /// build of jemalloc.
    pub fn new(version: Version) -> Target {
        Target {
            version,
            patch: None,
            thresholds: Thresholds::defaults(version),
            cluster: false,
            allocator: Allocator::Jemalloc,
        }
    }
}

/// Which jemalloc build the server runs with: its size classes differ below 64 bytes.
/// `INFO` says `mem_allocator:jemalloc-5.x` for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allocator {
    /// The jemalloc Redis builds itself (`make`, the official images; `deps/Makefile`
    /// configures it `--with-lg-quantum=3`): classes 8, 16, 24, … 64, then four per
    /// doubling.
    #[default]
    Jemalloc,
    /// A distribution's shared jemalloc (Debian's and Ubuntu's `redis-server` packages):
    /// the default 16-byte quantum, classes 8, 16, 32, 48, 64, then four per doubling.
    SystemJemalloc,
}

impl Allocator {
    fn quantum(self) -> u64 {
        match self {
            Allocator::Jemalloc => 8,
            Allocator::SystemJemalloc => 16,
        }
    }
}

/// redis.conf settings that decide encodings (defaults per version; names as in
/// redis.conf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub hash_max_listpack_entries: u64,
    pub hash_max_listpack_value: u64,
    pub set_max_intset_entries: u64,
    /// 7.2 on.
    pub set_max_listpack_entries: u64,
    /// 7.2 on.
    pub set_max_listpack_value: u64,
    pub zset_max_listpack_entries: u64,
    pub zset_max_listpack_value: u64,
    pub list_max_listpack_size: i64,
    pub list_compress_depth: u64,
    /// How streams built by XADD fill their nodes (a loaded stream keeps the file's).
    pub stream_node_max_bytes: u64,
    pub stream_node_max_entries: u64,
}

/// What `MEMORY USAGE key SAMPLES 0` reports for a key, and what `OBJECT ENCODING` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    /// As `OBJECT ENCODING` names it on the target.
    pub encoding: &'static str,
    /// STRLEN, LLEN, SCARD, ZCARD, HLEN or XLEN (1 for a module value).
    pub elements: u64,
    /// Bytes of the largest element (string length for a string; for a hash, the longest
    /// field or value; for a stream, the longest field or value of an entry).
    pub largest_element: u64,
}

/// How a key reaches the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Load {
    /// The target loads the record: the RDB file, or a RESTORE of the record's bytes
    /// (`rdb.c`, `rdbLoadObject`, both ways).
    #[default]
    Rdb,
    /// The target runs the commands `print --format resp` writes for the key (SET and
    /// APPEND, RPUSH, SADD, ZADD, HSET and HPEXPIREAT, XADD … in their default chunks),
    /// as a destination older than the file must take types it cannot RESTORE: values
    /// are built up by inserts, hash tables grow as they go, a stream's last node keeps
    /// XADD's preallocation.
    Commands,
}

/// `MEMORY USAGE key SAMPLES 0` for `rec` on `target`, the target having loaded the
/// record (see [`Load::Rdb`]).
pub fn usage(rec: &Record<'_>, target: &Target) -> Usage {
    usage_with(rec, target, Load::Rdb)
}

/// `MEMORY USAGE key SAMPLES 0` for `rec` on `target`, the key having reached it by `load`.
pub fn usage_with(rec: &Record<'_>, target: &Target, load: Load) -> Usage {
    let m = Model::new(target, load);
    let key_len = rec.key.len() as u64;
    let expires = rec.expire_at_ms.is_some();
    let sized = match &rec.value {
        Value::String(s) => string(&m, key_len, expires, s),
        Value::List(items) => list::list(&m, rec, items),
        Value::Set(items) => collections::set(&m, rec, items),
        Value::ZSet(items) => collections::zset(&m, rec, items),
        Value::Hash(fields) => collections::hash(&m, rec, fields),
        Value::Stream(s) => stream::stream(&m, rec, s),
        Value::Module(mv) => {
            // No module runs here: its `mem_usage` callback (`moduleGetMemUsage`) is
            // estimated as the value's serialized size. Before 8.2 that callback is all
            // `objectComputeSize` counts; from 8.2 the kvobj is added.
            let raw = mv.raw.len() as u64;
            let header = if m.kvobj() { m.base(key_len, expires) } else { 0 };
            Sized { bytes: header + raw, encoding: "raw", elements: 1, largest: raw }
        }
    };
    Usage {
        bytes: sized.bytes + m.key_entry(key_len),
        encoding: sized.encoding,
        elements: sized.elements,
        largest_element: sized.largest,
    }
}

/// What a db costs beyond its keys' `MEMORY USAGE`: the keyspace's bucket array and the
/// expires dict (its buckets and one entry per key with an expiry); from 8.2 also the
/// keyspace's own entries (the key lives in the object; the dict holds a
/// `dictEntryNoValue` of 16 bytes per key) and the two dicts with their metadata.
/// Reported per db, not per key; the tables sized for the keys they hold.
pub fn db_overhead(keys: u64, expires: u64, target: &Target) -> u64 {
    db_overhead_sized(keys, expires, None, target)
}

/// [`db_overhead`] of a db loaded from a file whose `RESIZEDB` gave `resize_db` (keys,
/// expires): `rdb.c`, `RDB_OPCODE_RESIZEDB`, `dictExpand`s both tables to those counts,
/// which include the keys that had expired and were not loaded (before 8.2 the expires
/// table even when its count is 0). In cluster mode from 7.4 the keyspace is one dict per
/// slot; this counts it as one.
pub fn db_overhead_sized(keys: u64, expires: u64, resize_db: Option<(u64, u64)>, target: &Target) -> u64 {
    let m = Model::new(target, Load::Rdb);
    let buckets = |n: u64, sized: Option<u64>| match sized {
        // 8.2 creates a slot's dict with its first key (`kvstoreExpand` skips empty ones).
        Some(s) if !m.kvobj() || n > 0 => 8 * dict_table_size(n.max(s)),
        _ if n > 0 => 8 * dict_table_size(n),
        _ => 0,
    };
    let main = buckets(keys, resize_db.map(|r| r.0));
    let exp = buckets(expires, resize_db.map(|r| r.1));
    if m.kvobj() {
        // `object.c`, `getMemoryOverheadData`, `kvstoreMemUsage`: no_value dicts of
        // kvobj keys (`server.c`, `dbDictType`), an entry {key, next} per key; the main
        // dict with its key-size histogram (measured on 8.2.3: 2464 bytes with the dict),
        // the expires dict with its base metadata (64).
        let main_dict = if keys > 0 { 2464 } else { 0 };
        let exp_dict = if expires > 0 { 64 } else { 0 };
        main_dict + main + 16 * keys + exp_dict + exp + 16 * expires
    } else {
        main + exp + m.class(24) * expires
    }
}

/// A value's size and what the target calls its encoding.
pub(crate) struct Sized {
    /// `objectComputeSize` (6.2 to 8.0: the header and the value) or `kvobjComputeSize`
    /// (8.2 on: the kvobj allocation and the value).
    pub bytes: u64,
    pub encoding: &'static str,
    pub elements: u64,
    pub largest: u64,
}

/// The target's facts: version, allocator, thresholds, how keys arrive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Model {
    pub v: Version,
    pub patch: Option<u32>,
    pub q: u64,
    pub cluster: bool,
    pub th: Thresholds,
    pub load: Load,
}

impl Model {
    fn new(t: &Target, load: Load) -> Model {
        Model { v: t.version, patch: t.patch, q: t.allocator.quantum(), cluster: t.cluster, th: t.thresholds, load }
    }

    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.v >= Version(major, minor)
    }

    /// At least `major.minor.patch` (an unknown patch is the newest).
    pub fn at_least_patch(&self, major: u32, minor: u32, patch: u32) -> bool {
        self.v > Version(major, minor) || (self.v == Version(major, minor) && self.patch.is_none_or(|p| p >= patch))
    }

    /// `zmalloc_size` of a request.
    pub fn class(&self, n: u64) -> u64 {
        size_class(n, self.q)
    }

    /// `sdsZmallocSize` of a string of `len` bytes made by `sdsnewlen`.
    pub fn sds(&self, len: u64) -> u64 {
        self.class(sds_request(len, self.at_least(8, 2)))
    }

    /// 7.0 replaced ziplists with listpacks.
    pub fn listpacks(&self) -> bool {
        self.at_least(7, 0)
    }

    /// 8.2 embeds the key in the object (`kvobj`).
    pub fn kvobj(&self) -> bool {
        self.at_least(8, 2)
    }

    pub fn commands(&self) -> bool {
        self.load == Load::Commands
    }

    /// `sizeof(dict)`: 96 on 6.2 (two `dictht` and privdata), 56 from 7.0.
    pub fn dict_struct(&self) -> u64 {
        if self.listpacks() {
            56
        } else {
            96
        }
    }

    /// What `MEMORY USAGE` adds after the value on 6.2 to 8.0 (`memoryCommand`): the
    /// key's sds (`sdsZmallocSize`), `sizeof(dictEntry)` (`dictEntryMemUsage`), and in
    /// cluster mode 7.0's per-entry slot list (`dictMetadataSize`: two pointers) or 7.2's
    /// dict metadata (one pointer). Nothing from 8.2.
    pub fn key_entry(&self, key_len: u64) -> u64 {
        if self.kvobj() {
            return 0;
        }
        let meta = match (self.cluster, self.v) {
            (true, Version(7, 0)) => 16,
            (true, Version(7, 1)) | (true, Version(7, 2)) | (true, Version(7, 3)) => 8,
            _ => 0,
        };
        self.sds(key_len) + 24 + meta
    }

    /// Where `objectComputeSize` starts for every value but an embedded string: the
    /// `robj` (16 bytes); from 8.2 the kvobj allocation of the key (`kvobjCreate`).
    pub fn base(&self, key_len: u64, expires: bool) -> u64 {
        if self.kvobj() {
            self.kvobj_alloc(key_len, expires, None)
        } else {
            16
        }
    }

    /// `object.c`, `kvobjCreate` / `kvobjCreateEmbedString`: the robj (16), the expire
    /// (8) when the key has one (and, in `kvobjCreate`, for keys of 128 bytes or more), a
    /// byte holding the key's sds header size, the key's sds (its exact
    /// `sdsReqSize`), and an embedded value as a type-8 sds; one allocation.
    pub fn kvobj_alloc(&self, key_len: u64, expires: bool, embedded: Option<u64>) -> u64 {
        let key_sds = alloc::sds_header(key_len, true) + key_len + 1;
        let expire = expires || (embedded.is_none() && key_len >= 128);
        let value = embedded.map_or(0, |len| 3 + len + 1);
        self.class(16 + 8 * expire as u64 + 1 + key_sds + value)
    }

    /// How this version writes a score as text.
    pub fn score_text(&self) -> encode::ScoreText {
        if self.at_least(7, 2) {
            encode::ScoreText::V72
        } else if self.listpacks() {
            encode::ScoreText::V7
        } else {
            encode::ScoreText::V6
        }
    }

    /// `asize += (double)elesize/samples*count`: the average of the sampled elements
    /// times their number, in doubles, truncated back to an integer as C does.
    pub fn add_average(&self, asize: u64, elesize: f64, samples: u64, count: u64) -> u64 {
        self.add_average_f(asize as f64, elesize, samples, count)
    }

    /// [`Model::add_average`] from a size that is an expectation (a bucket count).
    pub fn add_average_f(&self, asize: f64, elesize: f64, samples: u64, count: u64) -> u64 {
        if samples == 0 {
            return asize as u64;
        }
        (asize + elesize / samples as f64 * count as f64) as u64
    }
}

/// How a loaded string is encoded (`object.c`, `tryObjectEncoding`): a canonical integer
/// of at most 20 characters is `int`; up to 44 bytes an `embstr`, else `raw`. The file's
/// integer-encoded strings load as `int` (`rdbLoadIntegerObject`).
enum StrEnc {
    Int,
    Emb(u64),
    Raw(u64),
}

fn str_encoding(s: &Str<'_>) -> StrEnc {
    match encode::item(s) {
        encode::Item::Int(_) => StrEnc::Int,
        encode::Item::Bytes(n) if n <= 44 => StrEnc::Emb(n),
        encode::Item::Bytes(n) => StrEnc::Raw(n),
    }
}

/// `print` and `replay` send strings in chunks of this many bytes (their `--max-bytes`
/// default): SET, then APPEND.
const COMMAND_CHUNK: u64 = crate::translate::MAX_BYTES as u64;

fn string(m: &Model, key_len: u64, expires: bool, s: &Str<'_>) -> Sized {
    let len = s.len() as u64;
    let enc = str_encoding(s);
    let (bytes, encoding) = match enc {
        StrEnc::Int => (m.base(key_len, expires), "int"),
        StrEnc::Emb(n) if m.kvobj() => {
            // `kvobjSet`: embedded when key, expire and value fit a cache line, by its own
            // reckoning (the key's sds header taken as one byte); else a raw sds.
            let reckoned = 16 + (key_len + 3) + 8 * expires as u64 + 4 + n;
            if reckoned <= 64 {
                (m.kvobj_alloc(key_len, expires, Some(n)), "embstr")
            } else {
                (m.base(key_len, expires) + m.sds(n), "raw")
            }
        }
        // 6.2: `sdslen(o->ptr)+2+sizeof(*o)`, not the allocation; 7.0: the allocation
        // of robj and the type-8 sds together (`createEmbeddedStringObject`).
        StrEnc::Emb(n) if m.listpacks() => (m.class(16 + 3 + n + 1), "embstr"),
        StrEnc::Emb(n) => (n + 2 + 16, "embstr"),
        StrEnc::Raw(n) => (m.base(key_len, expires) + raw_sds(m, n), "raw"),
    };
    Sized { bytes, encoding, elements: len, largest: len }
}

/// The sds of a raw string value. Loaded: `sdsnewlen` of its length. Through commands, a
/// string over a chunk is SET then APPENDed to, and `sdsMakeRoomFor` grows it greedily
/// (`sds.c`: to twice the new length below `SDS_MAX_PREALLOC`, 1 MB, else by 1 MB more).
fn raw_sds(m: &Model, len: u64) -> u64 {
    if !m.commands() || len <= COMMAND_CHUNK {
        return m.sds(len);
    }
    const SDS_MAX_PREALLOC: u64 = 1 << 20;
    let tight = m.at_least(8, 2);
    let mut cur = COMMAND_CHUNK;
    let mut alloc = m.sds(cur);
    while cur < len {
        let add = COMMAND_CHUNK.min(len - cur);
        let hdr = alloc::sds_header(cur, tight);
        let avail = alloc.saturating_sub(hdr + 1 + cur);
        if avail < add {
            let mut newlen = cur + add;
            newlen = if newlen < SDS_MAX_PREALLOC { newlen * 2 } else { newlen + SDS_MAX_PREALLOC };
            alloc = m.class(alloc::sds_header(newlen, tight) + newlen + 1);
        }
        cur += add;
    }
    alloc
}

#[cfg(test)]
mod tests;
