//! Commands mode: a record as SET / RPUSH / SADD / ZADD / HSET / XADD … chunked by
//! argument count and bytes; DEL before the first chunk; the key's TTL as PEXPIREAT after
//! the last (an expired deadline set earlier would delete the key and let later chunks
//! recreate it without one); field TTLs as HPEXPIREAT; streams rebuilt with XSETID,
//! XGROUP and XCLAIM the way Redis's own AOF rewrite does (`aof.c`,
//! `rewriteStreamObject`); functions and scripts.

use std::collections::{BTreeMap, HashMap};

use super::{Translator, Version};
use crate::rdb::{Function, HashField, Record, Str, Stream, StreamId, Value};
use crate::resp::encode::{array_header, bulk, bulk_id, bulk_int, bulk_score, bulk_str, bulk_u64, command};

impl Translator {
    pub(super) fn commands(&mut self, rec: &Record<'_>, out: &mut Vec<u8>) -> bool {
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
        let step = self.cfg.max_bytes.max(1);
        if self.counting {
            // The SET and APPENDs a string of this length takes, without decompressing it.
            for _ in 0..s.len().div_ceil(step).max(1) {
                self.done(out);
            }
            return;
        }
        let bytes = s.bytes();
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
            // Counting (see `Translator::counting`): the chunk's bounds are all it takes.
            if !self.counting {
                array_header(out, 2 + n * args_per_item);
                bulk(out, cmd);
                bulk_str(out, key);
                for item in &items[i..i + n] {
                    write(out, item);
                }
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
            if !self.counting {
                array_header(out, 3 + 2 * e.fields.len());
                bulk(out, b"XADD");
                bulk_str(out, key);
                bulk_id(out, e.id);
                for (f, v) in &e.fields {
                    bulk_str(out, f);
                    bulk_str(out, v);
                }
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
