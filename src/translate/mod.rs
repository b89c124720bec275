//! Records → commands that leave a server holding exactly the snapshot.
//!
//! Two modes. `commands` (the `commands` file): SET / RPUSH / SADD / ZADD / HSET / XADD …
//! chunked, the way a loading server would rebuild the key. `restore`: one RESTORE per
//! key with the record's raw bytes as the DUMP payload (`cluster.c`, `restoreCommand`),
//! stamped with the destination's RDB version when it is older than the file's but knows
//! the type.
//!
//! Output is RESP, appended to a caller's buffer; the translator counts what it could
//! not carry over so the caller can report it.

use crate::rdb::constants::VALKEY_RDB_TYPE_HASH_2;
mod commands;
mod stats;

pub use stats::Stats;

use crate::rdb::{crc64_parts, Record, Str, Value, Vendor};
use crate::resp::encode::{array_header, bulk, bulk_int, bulk_str, bulk_u64};
use crate::version::type_min_rdb_version;
pub use crate::version::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Commands,
    Restore,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub target: Version,
    /// Most elements (list items, members, field/value pairs…) in one command.
    pub max_args: usize,
    /// Most payload bytes in one command; longer strings go as SET then APPENDs.
    pub max_bytes: usize,
    /// Payloads larger than this go as commands instead of RESTORE.
    pub restore_max_bytes: usize,
    pub keep_expired: bool,
    /// Keys expiring within this many ms of `now_ms` are skipped like expired ones.
    pub expire_margin_ms: i64,
    pub drop_field_ttl: bool,
    pub now_ms: i64,
}

impl Config {
    /// The time up to which an expiry counts as passed (`None` with `--keep-expired`).
    pub fn expiry_now(&self) -> Option<i64> {
        (!self.keep_expired).then(|| self.now_ms.saturating_add(self.expire_margin_ms))
    }
}

/// Most elements in one command, by default (`--max-args`).
pub const MAX_ARGS: usize = 256;

/// Most payload bytes in one command, by default (`--max-bytes`).
pub const MAX_BYTES: usize = 4 << 20;

impl Default for Config {
    fn default() -> Config {
        Config {
            mode: Mode::Commands,
            target: Version::LATEST,
            max_args: MAX_ARGS,
            max_bytes: MAX_BYTES,
            restore_max_bytes: 64 << 20,
            keep_expired: false,
            expire_margin_ms: 0,
            drop_field_ttl: false,
            now_ms: 0,
        }
    }
}

/// Largest bulk string a Redis server accepts by default (`proto-max-bulk-len`).
pub const PROTO_MAX_BULK_LEN: usize = 512 << 20;

pub struct Translator {
    pub cfg: Config,
    pub stats: Stats,
    /// The file's vendor and RDB version (set per input).
    pub vendor: Vendor,
    pub file_rdb_version: u32,
    /// Where each command written ends in the output, when asked (see
    /// [`Translator::keep_ends`]).
    ends: Option<Vec<usize>>,
    /// Commands are counted, not kept (see [`Translator::counting`]).
    counting: bool,
}

impl Translator {
    /// A translator for records of a file of `vendor` and `rdb_version`. It never selects a
    /// database: whoever writes its output out puts each record's commands on a stream
    /// (or a connection) that is on the record's db.
    pub fn new(cfg: Config, vendor: Vendor, rdb_version: u32) -> Translator {
        Translator { cfg, stats: Stats::default(), vendor, file_rdb_version: rdb_version, ends: None, counting: false }
    }

    /// Count the commands, keep none: the output buffer is cleared after each command,
    /// so it never holds more than one (for `inspect`, which says how many commands a big
    /// key takes without writing them). Give it an empty buffer.
    pub fn counting(mut self) -> Translator {
        self.counting = true;
        self
    }

    /// Keep where each command ends (offsets in the output buffer), for a caller that
    /// routes commands one by one; see [`Translator::take_ends`].
    pub fn keep_ends(mut self) -> Translator {
        self.ends = Some(Vec::new());
        self
    }

    /// The ends of the commands written since the last call.
    pub fn take_ends(&mut self) -> impl Iterator<Item = usize> + '_ {
        self.ends.iter_mut().flat_map(|e| e.drain(..))
    }

    /// A command was written whole, up to `out.len()`.
    fn done(&mut self, out: &mut Vec<u8>) {
        self.stats.commands += 1;
        if let Some(e) = &mut self.ends {
            e.push(out.len());
        }
        if self.counting {
            out.clear();
        }
    }

    /// The time up to which an expiry counts as passed (`None` with `--keep-expired`).
    pub fn expiry_now(&self) -> Option<i64> {
        self.cfg.expiry_now()
    }

    /// Appends the commands that recreate `rec`; returns false when the key was skipped
    /// or refused (see `stats`). A key whose expiry has passed is skipped, and so are
    /// hash fields whose expiry has passed (in commands mode: a RESTORE payload carries
    /// the file's bytes, and the destination drops them itself); a hash left with no
    /// field is skipped as an expired key.
    pub fn record(&mut self, rec: &Record<'_>, out: &mut Vec<u8>) -> bool {
        if let Some(now) = self.expiry_now() {
            let expired = crate::expiry::Expired::of(rec, now);
            if expired.whole() {
                self.stats.skipped_expired += 1;
                self.stats.skipped_expired_fields += expired.fields;
                return false;
            }
            if expired.fields > 0 && !self.goes_as_restore(rec) {
                let mut live = rec.clone();
                self.stats.skipped_expired_fields += crate::expiry::drop_expired_fields(&mut live, now);
                return self.record_now(&live, out);
            }
        }
        self.record_now(rec, out)
    }

    /// [`Translator::record`] of a key with a past expiry (its own or its fields') that a
    /// later log command writes to: sent with [`crate::expiry::SENTINEL_MS`] in place of
    /// every past expiry (as commands when fields carry it: a payload holds the past
    /// times). Returns what the log's end must clean up, `None` when nothing was sent.
    pub fn record_kept(&mut self, rec: &Record<'_>, out: &mut Vec<u8>) -> Option<crate::expiry::Kept> {
        let now = self.expiry_now()?;
        let mut kept = rec.clone();
        if self.cfg.drop_field_ttl {
            // Fields go without their TTLs: an expired one would come back for good, and
            // the cleanup could not tell it (the target may not know HPEXPIRETIME).
            // They are left out, as `record` leaves them out.
            let expired = crate::expiry::Expired::of(rec, now);
            if !expired.key && expired.whole() {
                self.stats.skipped_expired += 1;
                self.stats.skipped_expired_fields += expired.fields;
                return None;
            }
            self.stats.skipped_expired_fields += crate::expiry::drop_expired_fields(&mut kept, now);
        }
        let cleanup = crate::expiry::Kept::of(&kept, now);
        let fields = crate::expiry::keep_for_log(&mut kept, now);
        let mode = self.cfg.mode;
        if fields > 0 && mode == Mode::Restore {
            self.cfg.mode = Mode::Commands;
            self.stats.restore_fallbacks += 1;
        }
        let sent = self.record_now(&kept, out);
        self.cfg.mode = mode;
        sent.then(|| {
            self.stats.kept_for_log += 1;
            cleanup
        })
    }

    /// True when `rec` would go as one RESTORE of the file's bytes.
    fn goes_as_restore(&self, rec: &Record<'_>) -> bool {
        self.cfg.mode == Mode::Restore
            && self.restore_version(rec).is_some()
            && rec.raw_value.len() + 11 <= self.cfg.restore_max_bytes
    }

    fn record_now(&mut self, rec: &Record<'_>, out: &mut Vec<u8>) -> bool {
        if let Some(why) = self.unsendable(rec) {
            self.stats.refuse(&rec.key, why);
            return false;
        }
        let start = out.len();
        let commands_before = self.stats.commands;
        let ends_before = self.ends.as_ref().map_or(0, Vec::len);
        let ok = match self.cfg.mode {
            Mode::Restore => match self.restore_version(rec) {
                Some(ver) if self.goes_as_restore(rec) => {
                    self.restore(rec, ver, out);
                    true
                }
                _ => {
                    self.stats.restore_fallbacks += 1;
                    self.commands(rec, out)
                }
            },
            Mode::Commands => self.commands(rec, out),
        };
        if ok {
            self.stats.keys += 1;
        } else {
            // Nothing of a skipped key stays in the stream.
            out.truncate(start);
            self.stats.commands = commands_before;
            if let Some(e) = &mut self.ends {
                e.truncate(ends_before);
            }
        }
        ok
    }

    /// In restore mode, a key that is a short string (≤ 4 KB) with nothing but its value to
    /// carry (no expiry, no LRU/LFU data, no key metadata): its value, which an MSET sets
    /// as RESTORE would, for much less work on the destination's side (no payload to
    /// check and parse, one command for many keys). `None`: the key goes by `record`.
    pub fn batchable_string<'r, 'a>(&self, rec: &'r Record<'a>) -> Option<&'r Str<'a>> {
        const MAX: usize = 4096;
        if self.cfg.mode != Mode::Restore
            || rec.expire_at_ms.is_some()
            || rec.idle_s.is_some()
            || rec.freq.is_some()
            || rec.key_meta.is_some()
        {
            return None;
        }
        match &rec.value {
            // A compressed one is expanded as it is written, where the destination would
            // expand it.
            Value::String(s) if s.len() <= MAX => Some(s),
            _ => None,
        }
    }

    /// Counts an MSET of `keys` keys that the caller wrote for keys `batchable_string`
    /// accepted.
    pub fn count_batch(&mut self, keys: u64) {
        self.stats.keys += keys;
        self.stats.batched_strings += keys;
        self.stats.commands += 1;
    }

    /// Takes back a key whose `commands` commands (already written by [`Translator::record`])
    /// the caller could not send, and counts it as refused.
    pub fn retract(&mut self, key: &Str<'_>, commands: u64, why: String) {
        self.stats.keys -= 1;
        self.stats.commands -= commands;
        self.stats.refuse(key, why);
    }

    /// A reason the key cannot be sent at all: an element over the 512 MB bulk limit.
    fn unsendable(&self, rec: &Record<'_>) -> Option<String> {
        let too_big = |s: &Str<'_>| s.len() > PROTO_MAX_BULK_LEN;
        let big = match &rec.value {
            Value::String(_) => false, // strings are split into APPENDs
            Value::List(v) | Value::Set(v) => v.iter().any(too_big),
            Value::ZSet(v) => v.iter().any(|(m, _)| too_big(m)),
            Value::Hash(v) => v.iter().any(|f| too_big(&f.field) || too_big(&f.value)),
            Value::Stream(s) => s.entries.iter().any(|e| e.fields.iter().any(|(f, v)| too_big(f) || too_big(v))),
            Value::Module(_) => false,
        };
        big.then(|| "an element is larger than the destination's 512 MB bulk limit".to_string())
    }

    /// The DUMP payload version to use, or `None` when the key must go as commands.
    fn restore_version(&self, rec: &Record<'_>) -> Option<u32> {
        let target = self.cfg.target.rdb_version();
        if self.vendor == Vendor::Valkey && rec.rdb_type == VALKEY_RDB_TYPE_HASH_2 {
            return None;
        }
        if rec.key_meta.is_some() && target < 13 {
            return None;
        }
        let file = if self.vendor == Vendor::Valkey { target } else { self.file_rdb_version };
        if file <= target {
            Some(file)
        } else if type_min_rdb_version(rec.rdb_type) <= target {
            Some(target)
        } else {
            None
        }
    }

    fn restore(&mut self, rec: &Record<'_>, version: u32, out: &mut Vec<u8>) {
        // The payload (type byte, value, RDB version, CRC-64 of those) is written straight
        // into the output: no copy of the value on the way.
        let ver = (version as u16).to_le_bytes();
        let crc = crc64_parts(&[&[rec.rdb_type], rec.raw_value, &ver]);
        let extra = if rec.idle_s.is_some() || rec.freq.is_some() { 2 } else { 0 };
        array_header(out, 6 + extra);
        bulk(out, b"RESTORE");
        bulk_str(out, &rec.key);
        bulk_int(out, rec.expire_at_ms.unwrap_or(0).max(0));
        out.push(b'$');
        out.extend_from_slice(itoa::Buffer::new().format(1 + rec.raw_value.len() + 2 + 8).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.push(rec.rdb_type);
        out.extend_from_slice(rec.raw_value);
        out.extend_from_slice(&ver);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(b"\r\n");
        bulk(out, b"REPLACE");
        bulk(out, b"ABSTTL");
        if let Some(idle) = rec.idle_s {
            bulk(out, b"IDLETIME");
            bulk_u64(out, idle);
        } else if let Some(freq) = rec.freq {
            bulk(out, b"FREQ");
            bulk_u64(out, freq as u64);
        }
        self.done(out);
        self.stats.restores += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(db: u64, key: &'a [u8], value: Value<'a>) -> Record<'a> {
        Record {
            db,
            key: Str::Borrowed(key),
            expire_at_ms: None,
            idle_s: None,
            freq: None,
            rdb_type: 0,
            value,
            raw_value: b"",
            key_meta: None,
        }
    }

    #[test]
    fn chunks_respect_max_args_and_ttl_comes_last() {
        let cfg = Config { max_args: 2, ..Config::default() };
        let mut t = Translator::new(cfg, Vendor::Redis, 12);
        let mut out = Vec::new();
        let items = vec![Str::Int(1), Str::Int(2), Str::Int(3)];
        let mut r = rec(0, b"l", Value::List(items));
        r.expire_at_ms = Some(i64::MAX);
        assert!(t.record(&r, &mut out));
        let text = String::from_utf8(out).unwrap().replace("\r\n", " ");
        assert_eq!(
            text,
            "*2 $3 DEL $1 l *4 $5 RPUSH $1 l $1 1 $1 2 *3 $5 RPUSH $1 l $1 3 *3 $9 PEXPIREAT $1 l $19 9223372036854775807 "
        );
    }
}
