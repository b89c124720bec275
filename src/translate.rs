//! Records → commands that leave a server holding exactly the snapshot (DESIGN.md, step 3).
//!
//! Two modes. `commands`: SET / RPUSH / SADD / ZADD / HSET / XADD … chunked by argument
//! count and bytes; DEL before the first chunk; the key's TTL as PEXPIREAT after the last
//! chunk (an expired deadline set earlier would delete the key and let later chunks
//! recreate it without one); field TTLs as HPEXPIREAT; streams rebuilt with XSETID,
//! XGROUP and XCLAIM the way Redis's own AOF rewrite does. `restore`: one RESTORE per key
//! with the record's raw bytes as the DUMP payload, stamped with the destination's RDB
//! version when it is older than the file's but knows the type.
//!
//! Output is RESP, appended to a caller's buffer; the translator counts what it could
//! not carry over so the caller can report it.

use std::collections::{BTreeMap, HashMap};

use crate::rdb::constants::VALKEY_RDB_TYPE_HASH_2;
use crate::rdb::{crc64_parts, Function, HashField, Record, Str, Stream, StreamId, Value, Vendor};
use crate::resp::encode::{array_header, bulk, bulk_id, bulk_int, bulk_score, bulk_str, bulk_u64, command};
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

impl Default for Config {
    fn default() -> Config {
        Config {
            mode: Mode::Commands,
            target: Version::LATEST,
            max_args: 256,
            max_bytes: 4 << 20,
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

/// What the translation carried over and what it could not.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub keys: u64,
    pub commands: u64,
    pub restores: u64,
    /// Keys that went as commands in restore mode (too big, or a type the target lacks).
    pub restore_fallbacks: u64,
    /// Plain strings that `replay --mode restore` sent in MSET batches instead of one
    /// RESTORE each (see [`Translator::batchable_string`]).
    pub batched_strings: u64,
    pub skipped_expired: u64,
    /// Hash fields left out because their expiry had passed (hashes left with none are
    /// counted in `skipped_expired`).
    pub skipped_expired_fields: u64,
    /// Keys with a past expiry (theirs or their fields') kept because a log command of
    /// the job writes to them (see [`crate::expiry`]).
    pub kept_for_log: u64,
    pub skipped_modules: u64,
    /// Keys refused: nothing was written for them.
    pub refused: u64,
    /// The first refused keys, with the reason.
    pub refused_examples: Vec<(String, String)>,
    pub field_ttls_dropped: u64,
    /// Pending entries whose message was deleted: no command recreates them.
    pub pel_deleted: u64,
    /// Consumers whose seen/active times restart when recreated by commands.
    pub consumer_times_reset: u64,
    pub functions: u64,
    pub functions_skipped: u64,
    pub scripts: u64,
}

impl Stats {
    /// Adds the counts of a later batch.
    pub fn merge(&mut self, o: Stats) {
        // Destructured so that a new field cannot be forgotten here.
        let Stats {
            keys,
            commands,
            restores,
            restore_fallbacks,
            batched_strings,
            skipped_expired,
            skipped_expired_fields,
            kept_for_log,
            skipped_modules,
            refused,
            refused_examples,
            field_ttls_dropped,
            pel_deleted,
            consumer_times_reset,
            functions,
            functions_skipped,
            scripts,
        } = o;
        self.keys += keys;
        self.commands += commands;
        self.restores += restores;
        self.restore_fallbacks += restore_fallbacks;
        self.batched_strings += batched_strings;
        self.skipped_expired += skipped_expired;
        self.skipped_expired_fields += skipped_expired_fields;
        self.kept_for_log += kept_for_log;
        self.skipped_modules += skipped_modules;
        self.refused += refused;
        let room = 10usize.saturating_sub(self.refused_examples.len());
        self.refused_examples.extend(refused_examples.into_iter().take(room));
        self.field_ttls_dropped += field_ttls_dropped;
        self.pel_deleted += pel_deleted;
        self.consumer_times_reset += consumer_times_reset;
        self.functions += functions;
        self.functions_skipped += functions_skipped;
        self.scripts += scripts;
    }

    fn refuse(&mut self, key: &Str<'_>, why: String) {
        self.refused += 1;
        if self.refused_examples.len() < 10 {
            self.refused_examples.push((crate::rdb::escape_key(&key.bytes()), why));
        }
    }

    /// The report, one line per non-zero count, for stderr.
    pub fn report(&self) -> String {
        let mut lines = vec![format!(
            "{} keys as {} commands ({} RESTORE, {} fell back to commands)",
            self.keys, self.commands, self.restores, self.restore_fallbacks
        )];
        let mut add = |n: u64, what: &str| {
            if n > 0 {
                lines.push(format!("{n} {what}"));
            }
        };
        add(self.batched_strings, "plain strings without expiry sent in MSET batches (less work for the destination)");
        add(self.skipped_expired, "keys skipped: expired (or within --expire-margin); --keep-expired sends them");
        add(self.skipped_expired_fields, "hash fields left out: expired (or within --expire-margin)");
        add(
            self.kept_for_log,
            "expired keys kept for the AOF commands that write to them (Redis expires nothing while it loads an AOF): \
             removed after the log unless it gave them a new expiry",
        );
        add(self.skipped_modules, "module keys skipped: commands cannot carry module values (use --mode restore)");
        add(self.field_ttls_dropped, "hash field TTLs dropped (--drop-field-ttl)");
        add(
            self.pel_deleted,
            "pending entries not recreated: their messages were deleted (only restore mode keeps them)",
        );
        add(
            self.consumer_times_reset,
            "stream consumers recreated with fresh seen/active times (only restore mode keeps them)",
        );
        add(self.functions, "function libraries (FUNCTION LOAD REPLACE)");
        add(self.functions_skipped, "functions skipped: 7.0-rc single functions or a destination older than 7.0");
        add(self.scripts, "Lua scripts (SCRIPT LOAD)");
        add(self.refused, "keys refused (nothing sent for them)");
        for (k, why) in &self.refused_examples {
            lines.push(format!("  refused \"{k}\": {why}"));
        }
        lines.join("\n")
    }
}

pub struct Translator {
    pub cfg: Config,
    pub stats: Stats,
    /// The file's vendor and RDB version (set per input).
    pub vendor: Vendor,
    pub file_rdb_version: u32,
    /// Where each command written ends in the output, when asked (see
    /// [`Translator::keep_ends`]).
    ends: Option<Vec<usize>>,
}

impl Translator {
    /// A translator for records of a file of `vendor` and `rdb_version`. It never selects a
    /// database: whoever writes its output out puts each record's commands on a stream
    /// (or a connection) that is on the record's db.
    pub fn new(cfg: Config, vendor: Vendor, rdb_version: u32) -> Translator {
        Translator { cfg, stats: Stats::default(), vendor, file_rdb_version: rdb_version, ends: None }
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
    fn done(&mut self, out: &[u8]) {
        self.stats.commands += 1;
        if let Some(e) = &mut self.ends {
            e.push(out.len());
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
            crate::expiry::Kept::of(rec, now)
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

    fn commands(&mut self, rec: &Record<'_>, out: &mut Vec<u8>) -> bool {
        let key = &rec.key;
        match &rec.value {
            Value::String(s) => self.string(key, s, out),
            Value::List(items) => {
                self.del(key, out);
                self.chunked(b"RPUSH", key, items, 1, |s| s.len(), |o, s| bulk_str(o, s), out);
            }
            Value::Set(items) => {
                self.del(key, out);
                self.chunked(b"SADD", key, items, 1, |s| s.len(), |o, s| bulk_str(o, s), out);
            }
            Value::ZSet(items) => {
                self.del(key, out);
                let write = |o: &mut Vec<u8>, (m, score): &(Str<'_>, f64)| {
                    bulk_score(o, *score);
                    bulk_str(o, m);
                };
                self.chunked(b"ZADD", key, items, 2, |(m, _)| m.len() + 24, write, out);
            }
            Value::Hash(fields) => {
                if !self.hash(key, fields, out) {
                    return false;
                }
            }
            Value::Stream(s) => self.stream(key, s, out),
            Value::Module(_) => {
                self.stats.skipped_modules += 1;
                return false;
            }
        }
        if let Some(t) = rec.expire_at_ms {
            array_header(out, 3);
            bulk(out, b"PEXPIREAT");
            bulk_str(out, key);
            bulk_int(out, t);
            self.done(out);
        }
        true
    }

    fn del(&mut self, key: &Str<'_>, out: &mut Vec<u8>) {
        array_header(out, 2);
        bulk(out, b"DEL");
        bulk_str(out, key);
        self.done(out);
    }

    fn string(&mut self, key: &Str<'_>, s: &Str<'_>, out: &mut Vec<u8>) {
        let bytes = s.bytes();
        let step = self.cfg.max_bytes.max(1);
        // SET replaces whatever the key held, type and TTL included: no DEL needed.
        let mut chunks = bytes.chunks(step);
        let first = chunks.next().unwrap_or(&[]);
        command(out, &[b"SET", &key.bytes(), first]);
        self.done(out);
        for c in chunks {
            command(out, &[b"APPEND", &key.bytes(), c]);
            self.done(out);
        }
    }

    /// Writes `cmd key item…` commands, each with at most `max_args` arguments and about
    /// `max_bytes` of payload (at least one item per command).
    #[allow(clippy::too_many_arguments)]
    fn chunked<T>(
        &mut self,
        cmd: &[u8],
        key: &Str<'_>,
        items: &[T],
        args_per_item: usize,
        size: impl Fn(&T) -> usize,
        write: impl Fn(&mut Vec<u8>, &T),
        out: &mut Vec<u8>,
    ) {
        let max_items = (self.cfg.max_args / args_per_item).max(1);
        let mut i = 0;
        while i < items.len() {
            let mut n = 0;
            let mut bytes = 0;
            while i + n < items.len() && n < max_items && (n == 0 || bytes + size(&items[i + n]) <= self.cfg.max_bytes)
            {
                bytes += size(&items[i + n]);
                n += 1;
            }
            array_header(out, 2 + n * args_per_item);
            bulk(out, cmd);
            bulk_str(out, key);
            for item in &items[i..i + n] {
                write(out, item);
            }
            self.done(out);
            i += n;
        }
    }

    fn hash(&mut self, key: &Str<'_>, fields: &[HashField<'_>], out: &mut Vec<u8>) -> bool {
        let with_ttl = fields.iter().filter(|f| f.expire_at_ms.is_some()).count() as u64;
        let ttls_ok = self.cfg.target >= Version(7, 4);
        if with_ttl > 0 && !ttls_ok {
            if !self.cfg.drop_field_ttl {
                self.stats.refuse(
                    key,
                    format!("{with_ttl} hash fields have TTLs and Redis {} has no field TTLs (--drop-field-ttl sends them without)", self.cfg.target),
                );
                return false;
            }
            self.stats.field_ttls_dropped += with_ttl;
        }
        self.del(key, out);
        let write = |o: &mut Vec<u8>, f: &HashField<'_>| {
            bulk_str(o, &f.field);
            bulk_str(o, &f.value);
        };
        self.chunked(b"HSET", key, fields, 2, |f| f.field.len() + f.value.len(), write, out);
        if with_ttl > 0 && ttls_ok {
            let mut by_time: BTreeMap<i64, Vec<&Str<'_>>> = BTreeMap::new();
            for f in fields {
                if let Some(t) = f.expire_at_ms {
                    by_time.entry(t).or_default().push(&f.field);
                }
            }
            for (t, names) in by_time {
                for chunk in names.chunks(self.cfg.max_args.max(1)) {
                    array_header(out, 5 + chunk.len());
                    bulk(out, b"HPEXPIREAT");
                    bulk_str(out, key);
                    bulk_int(out, t);
                    bulk(out, b"FIELDS");
                    bulk_u64(out, chunk.len() as u64);
                    for f in chunk {
                        bulk_str(out, f);
                    }
                    self.done(out);
                }
            }
        }
        true
    }

    fn stream(&mut self, key: &Str<'_>, s: &Stream<'_>, out: &mut Vec<u8>) {
        let seven = self.cfg.target >= Version(7, 0);
        self.del(key, out);
        for e in &s.entries {
            array_header(out, 3 + 2 * e.fields.len());
            bulk(out, b"XADD");
            bulk_str(out, key);
            bulk_id(out, e.id);
            for (f, v) in &e.fields {
                bulk_str(out, f);
                bulk_str(out, v);
            }
            self.done(out);
        }
        if s.entries.is_empty() {
            // Create the key with one entry trimmed away at once: an empty stream.
            let id = if s.last_id > StreamId::default() { s.last_id } else { StreamId { ms: 0, seq: 1 } };
            array_header(out, 7);
            bulk(out, b"XADD");
            bulk_str(out, key);
            bulk(out, b"MAXLEN");
            bulk(out, b"0");
            bulk_id(out, id);
            bulk(out, b"x");
            bulk(out, b"y");
            self.done(out);
        }
        // XSETID restores the last ID (and, on 7.0+, the counters XADD cannot).
        let full = seven && s.entries_added.is_some() && s.max_deleted_id.is_some();
        array_header(out, if full { 7 } else { 3 });
        bulk(out, b"XSETID");
        bulk_str(out, key);
        bulk_id(out, s.last_id);
        if let (true, Some(added), Some(max_deleted)) = (full, s.entries_added, s.max_deleted_id) {
            bulk(out, b"ENTRIESADDED");
            bulk_u64(out, added);
            bulk(out, b"MAXDELETEDID");
            bulk_id(out, max_deleted);
        }
        self.done(out);
        let live: std::collections::HashSet<StreamId> = if s.groups.iter().any(|g| !g.pending.is_empty()) {
            s.entries.iter().map(|e| e.id).collect()
        } else {
            Default::default()
        };
        for g in &s.groups {
            let entries_read = g.entries_read.filter(|_| seven);
            array_header(out, if entries_read.is_some() { 7 } else { 5 });
            bulk(out, b"XGROUP");
            bulk(out, b"CREATE");
            bulk_str(out, key);
            bulk_str(out, &g.name);
            bulk_id(out, g.last_delivered_id);
            if let Some(n) = entries_read {
                bulk(out, b"ENTRIESREAD");
                bulk_u64(out, n);
            }
            self.done(out);
            let mut owner: HashMap<StreamId, &Str<'_>> = HashMap::new();
            for c in &g.consumers {
                self.stats.consumer_times_reset += 1;
                for id in &c.pending {
                    owner.insert(*id, &c.name);
                }
                if c.pending.is_empty() && self.cfg.target >= Version(6, 2) {
                    array_header(out, 5);
                    bulk(out, b"XGROUP");
                    bulk(out, b"CREATECONSUMER");
                    bulk_str(out, key);
                    bulk_str(out, &g.name);
                    bulk_str(out, &c.name);
                    self.done(out);
                }
            }
            for p in &g.pending {
                let Some(consumer) = owner.get(&p.id) else {
                    continue; // Redis refuses such files; nothing owns it
                };
                if !live.contains(&p.id) {
                    self.stats.pel_deleted += 1;
                    continue;
                }
                array_header(out, 12);
                bulk(out, b"XCLAIM");
                bulk_str(out, key);
                bulk_str(out, &g.name);
                bulk_str(out, consumer);
                bulk(out, b"0");
                bulk_id(out, p.id);
                bulk(out, b"TIME");
                bulk_int(out, p.delivery_time_ms);
                bulk(out, b"RETRYCOUNT");
                bulk_u64(out, p.delivery_count);
                bulk(out, b"FORCE");
                bulk(out, b"JUSTID");
                self.done(out);
            }
        }
    }

    /// FUNCTION LOAD REPLACE for a library (a rerun replaces instead of failing).
    pub fn function(&mut self, f: &Function<'_>, out: &mut Vec<u8>) {
        match f {
            Function::Library { code } if self.cfg.target >= Version(7, 0) => {
                array_header(out, 4);
                bulk(out, b"FUNCTION");
                bulk(out, b"LOAD");
                bulk(out, b"REPLACE");
                bulk_str(out, code);
                self.done(out);
                self.stats.functions += 1;
            }
            _ => self.stats.functions_skipped += 1,
        }
    }

    /// SCRIPT LOAD for a script of the `lua` AUX field.
    pub fn script(&mut self, body: &Str<'_>, out: &mut Vec<u8>) {
        array_header(out, 3);
        bulk(out, b"SCRIPT");
        bulk(out, b"LOAD");
        bulk_str(out, body);
        self.done(out);
        self.stats.scripts += 1;
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
