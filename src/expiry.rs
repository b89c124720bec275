//! Expiry as Redis applies it when it loads data, for every consumer of the stream.
//!
//! - **A snapshot alone.** A master skips keys whose expiry has passed as it loads an RDB
//!   (`rdb.c`, `rdbLoadRioWithLoadingCtx`). A hash field whose expiry has passed is loaded
//!   but never seen again: reads hide it (`t_hash.c`, `hashTypeGetValue`) and active expiry
//!   deletes it, and the hash with its last field. So both are left out by default.
//! - **A snapshot followed by a command log** (an AOF's preamble or base, `-rdb` with
//!   `-aof`). Redis expires nothing while it loads (`db.c`, `keyIsExpired` and
//!   `t_hash.c`, `hashTypeGetValue`, both under `server.loading`), so a log command may
//!   still write to a key or field whose time has passed and keep its past expiry
//!   (APPEND, INCR, HINCRBY…); it vanishes once loading ends. Leaving such a key out up
//!   front would let the APPEND create it anew, without expiry. So the keys that a later
//!   log command names ([`LogKeys`]) keep what has expired: printed as they are, and sent
//!   to a live destination (which, unlike a loading server, expires at once) with
//!   [`SENTINEL_MS`] in place of every past expiry; once the log is applied, a script
//!   ([`encode_cleanup`]) deletes the key, or the fields, whose expiry is still the
//!   sentinel: exactly those whose past expiry no log command replaced.
//!
//! Keys follow Redis exactly this way. Hash fields nearly: while it loads, Redis hides a
//! field whose expiry has passed instead of keeping it alive, so HSETNX sets it anew,
//! and HPERSIST or an HPEXPIRE family command leaves it to expire; a live destination
//! sees the kept field, so HSETNX leaves it (and the cleanup deletes it), and HPERSIST or
//! a new expiry keeps it.

use std::collections::HashSet;

use crate::aof::keys::{keys, Keys};
use crate::aof::select::{select, Tally};
use crate::aof::{self, Command, Unit, Until};
use crate::filter::Filter;
use crate::rdb::value::{RDB_TYPE_HASH_LISTPACK_EX, RDB_TYPE_HASH_METADATA_PRE_GA};
use crate::rdb::{Record, Value};
use crate::resp::encode::{array_header, bulk, bulk_int, bulk_u64};

/// The expiry that stands for "passed, but kept while a log is applied": the latest that
/// HPEXPIREAT takes (`t_hash.c`, `HFE_MAX_ABS_TIME_MSEC`: `EB_EXPIRE_TIME_MAX >> 2`, in
/// the year 4199), and PEXPIREAT takes it too.
pub const SENTINEL_MS: i64 = crate::rdb::EB_EXPIRE_TIME_MAX >> 2;

/// The keys that log commands of the job name, per db: the snapshot keys whose expired
/// parts must be kept.
#[derive(Debug, Default)]
pub enum LogKeys {
    /// No log follows a snapshot.
    #[default]
    None,
    Some(HashSet<(u64, Vec<u8>)>),
    /// A command whose keys cannot be known (a script with no keys, a module's command,
    /// SWAPDB, MOVE…) may touch any key.
    All,
}

impl LogKeys {
    /// Notes the keys of one unit of a log (already selected by the job's filters).
    pub fn add_unit(&mut self, unit: &Unit<'_>) {
        match unit {
            Unit::One(c) => self.add(c),
            Unit::Multi(block) => block.iter().for_each(|c| self.add(c)),
            Unit::Timestamp(_) => {}
        }
    }

    fn add(&mut self, c: &Command<'_>) {
        let set = match self {
            LogKeys::All => return,
            LogKeys::None => {
                *self = LogKeys::Some(HashSet::new());
                let LogKeys::Some(set) = self else { return };
                set
            }
            LogKeys::Some(set) => set,
        };
        match keys(&c.argv) {
            Keys::Some(ks) => {
                for k in ks {
                    set.insert((c.db, k.to_vec()));
                }
            }
            Keys::None => {}
            // Commands that empty whole databases, or load code: no key keeps its past.
            Keys::Global
                if ["FLUSHALL", "FLUSHDB", "FUNCTION", "SCRIPT", "PUBLISH", "SPUBLISH"].iter().any(|n| c.is(n)) => {}
            Keys::Global | Keys::Unknown => *self = LogKeys::All,
        }
    }

    pub fn contains(&self, db: u64, key: &[u8]) -> bool {
        match self {
            LogKeys::None => false,
            LogKeys::All => true,
            // Asked only of keys with something expired.
            LogKeys::Some(set) => set.contains(&(db, key.to_vec())),
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, LogKeys::None)
    }
}

/// The [`LogKeys`] of a job's inputs, found the first time a record with something
/// expired asks (so a job whose keys have nothing expired reads its logs only once).
pub struct LogKeysOnce<'a> {
    cell: std::sync::OnceLock<LogKeys>,
    /// Each input's bytes, and whether its log may end inside a command.
    inputs: Vec<(&'a [u8], bool)>,
    filter: Filter,
    until: Option<Until>,
}

impl<'a> LogKeysOnce<'a> {
    /// `inputs` in the job's order; `filter` and `until` select log commands as the job does.
    pub fn new(inputs: Vec<(&'a [u8], bool)>, filter: &Filter, until: Option<Until>) -> LogKeysOnce<'a> {
        LogKeysOnce { cell: std::sync::OnceLock::new(), inputs, filter: filter.clone(), until }
    }

    /// The keys named by log commands that follow a snapshot: a preamble's or a base's
    /// own log, or a later input's. A log that cannot be read to its end counts up to
    /// where it can (the job itself reports the damage).
    pub fn get(&self) -> &LogKeys {
        self.cell.get_or_init(|| {
            let mut found = LogKeys::None;
            let mut until = self.until;
            let mut tally = Tally::default();
            let mut after_snapshot = false;
            for &(data, allow_truncated) in &self.inputs {
                after_snapshot |= aof::is_rdb(data);
                let Some(base) = after_snapshot.then(|| aof::log_start(data)).flatten() else { continue };
                let _ = aof::read_log(&data[base..], allow_truncated, |u| {
                    if until.as_mut().is_some_and(|t| !t.admits(u)) {
                        return;
                    }
                    if let Some(u) = select(u, &self.filter, &mut tally) {
                        found.add_unit(&u);
                    }
                });
            }
            found
        })
    }
}

/// An expiry at `at_ms` has passed at `now_ms`: strictly before it, as Redis judges both
/// keys (`db.c`, `keyIsExpired`; `rdb.c`, `rdbLoadRioWithLoadingCtx`, which drops a key
/// on load only when its time is below now) and hash fields (`t_hash.c`,
/// `hashTypeIsExpired`). A key whose time is this very millisecond still lives.
pub fn passed(at_ms: i64, now_ms: i64) -> bool {
    at_ms < now_ms
}

/// What of a record has expired at `now_ms`: the key itself, or some of its hash fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expired {
    pub key: bool,
    /// Hash fields whose expiry has passed.
    pub fields: u64,
    /// Hash fields in all.
    pub of: u64,
}

impl Expired {
    pub fn of(rec: &Record<'_>, now_ms: i64) -> Expired {
        let key = rec.expire_at_ms.is_some_and(|t| passed(t, now_ms));
        let (fields, of) = match &rec.value {
            // Only the encodings with field TTLs have fields to look at (Valkey's HASH_2 is
            // type 22 too).
            Value::Hash(fs) if (RDB_TYPE_HASH_METADATA_PRE_GA..=RDB_TYPE_HASH_LISTPACK_EX).contains(&rec.rdb_type) => (
                fs.iter().filter(|f| f.expire_at_ms.is_some_and(|t| passed(t, now_ms))).count() as u64,
                fs.len() as u64,
            ),
            _ => (0, 0),
        };
        Expired { key, fields, of }
    }

    /// Nothing has expired.
    pub fn none(&self) -> bool {
        !self.key && self.fields == 0
    }

    /// The key is gone: its own expiry passed, or that of every field of the hash.
    pub fn whole(&self) -> bool {
        self.key || (self.fields > 0 && self.fields == self.of)
    }
}

/// Leaves out of `rec` the hash fields whose expiry has passed at `now_ms`; returns how
/// many.
pub fn drop_expired_fields(rec: &mut Record<'_>, now_ms: i64) -> u64 {
    let Value::Hash(fields) = &mut rec.value else { return 0 };
    let before = fields.len();
    fields.retain(|f| f.expire_at_ms.is_none_or(|t| !passed(t, now_ms)));
    (before - fields.len()) as u64
}

/// Puts [`SENTINEL_MS`] in place of every expiry of `rec` that has passed at `now_ms`;
/// returns how many hash fields got it.
pub fn keep_for_log(rec: &mut Record<'_>, now_ms: i64) -> u64 {
    if rec.expire_at_ms.is_some_and(|t| passed(t, now_ms)) {
        rec.expire_at_ms = Some(SENTINEL_MS);
    }
    let mut n = 0;
    if let Value::Hash(fields) = &mut rec.value {
        for f in fields.iter_mut().filter(|f| f.expire_at_ms.is_some_and(|t| passed(t, now_ms))) {
            f.expire_at_ms = Some(SENTINEL_MS);
            n += 1;
        }
    }
    n
}

/// A key a log may still write to, sent with [`SENTINEL_MS`] in place of past expiries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub db: u64,
    pub key: Vec<u8>,
    /// The hash fields sent with the sentinel (named even when the key's own expiry is
    /// the sentinel too: should the log give the key a new expiry, they still expire).
    pub fields: Vec<Vec<u8>>,
}

impl Kept {
    /// What the cleanup of `rec` names, when its past expiries (at `now_ms`) are kept.
    pub fn of(rec: &Record<'_>, now_ms: i64) -> Kept {
        let fields = match &rec.value {
            Value::Hash(fs) => fs
                .iter()
                .filter(|f| f.expire_at_ms.is_some_and(|t| passed(t, now_ms)))
                .map(|f| f.field.bytes().into_owned())
                .collect(),
            _ => Vec::new(),
        };
        Kept { db: rec.db, key: rec.key.bytes().into_owned(), fields }
    }
}

/// Deletes `KEYS[1]` when its expiry is still the sentinel (its remaining time over
/// `ARGV[1]` ms: a thousand years short of the sentinel), else the fields among
/// `ARGV[3…]` whose expiry is still `ARGV[2]`. PTTL rather than PEXPIRETIME, which only
/// 7.0 has; field expiries exist only where HPEXPIRETIME does (7.4).
const CLEANUP_SCRIPT: &[u8] = b"if redis.call('PTTL', KEYS[1]) > tonumber(ARGV[1]) then \
return redis.call('DEL', KEYS[1]) end \
if #ARGV < 3 or redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end \
local f = {} for i = 3, #ARGV do f[#f + 1] = ARGV[i] end \
local t = redis.call('HPEXPIRETIME', KEYS[1], 'FIELDS', #f, unpack(f)) \
local n = 0 for i = 1, #f do if t[i] == tonumber(ARGV[2]) then n = n + redis.call('HDEL', KEYS[1], f[i]) end end \
return n";

/// Most fields named by one cleanup script (Lua's `unpack` has a limit of its own).
const CLEANUP_FIELDS: usize = 1000;

/// The scripts that finish what the log left of a kept key (see the module's text):
/// EVALs with one key each, which every destination kind takes (twemproxy routes them
/// by that key). Pushes the end of each command written on `ends`.
pub fn encode_cleanup(out: &mut Vec<u8>, k: &Kept, ends: &mut Vec<usize>) {
    const THOUSAND_YEARS_MS: i64 = 1000 * 365 * 86_400_000;
    let chunks: Vec<&[Vec<u8>]> =
        if k.fields.is_empty() { vec![&[][..]] } else { k.fields.chunks(CLEANUP_FIELDS).collect() };
    for fields in chunks {
        array_header(out, 6 + fields.len());
        bulk(out, b"EVAL");
        bulk(out, CLEANUP_SCRIPT);
        bulk_u64(out, 1);
        bulk(out, &k.key);
        bulk_int(out, SENTINEL_MS - crate::filter::now_ms() - THOUSAND_YEARS_MS);
        bulk_int(out, SENTINEL_MS);
        for f in fields {
            bulk(out, f);
        }
        ends.push(out.len());
    }
}
