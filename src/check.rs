//! The deep check: a consumer of the ordered input stream that walks every value of a
//! snapshot (LZF expanded to its declared length, every ziplist/listpack/intset/zipmap
//! validated, duplicate members refused, what Redis's deep sanitization refuses refused)
//! and verifies the CRC-64, reads a log to its end, and says what the input holds.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::aof;
use crate::filter::now_ms;
use crate::input::{self, Batch, Flow, Input, InputError, LogEnd, Map, Sink};
use crate::pipeline::{self, Plan};
use crate::rdb::{self, escape_key, Checksum, Function, Item, Record, Str, Value};

/// What `check` found in one input file, as a report and a verdict.
#[derive(Debug)]
pub struct FileReport {
    /// The report for people (empty with `quiet`).
    pub text: String,
    /// The damage found, worded for the user (file, offset, what was expected).
    pub problem: Option<InputError>,
}

/// Checks one input (already open), on `plan.threads` threads: the report and verdict.
pub fn check_input(inputs: &input::Inputs, plan: &Plan, quiet: bool) -> FileReport {
    let mut plan = *plan;
    // A batch's result is a small summary: keep more batches going, so that one with a
    // large record does not leave the other workers waiting behind it.
    plan.in_flight = Some(plan.threads * 6);
    let opts = input::Options { plan, from: input::Position::default(), reader: input::Reader::Check };
    let mut sink = CheckSink { quiet, summary: None, log: None, problem: None, report: None };
    input::run(inputs, &opts, &CheckMap { now: now_ms() }, &mut sink);
    sink.report.unwrap_or(FileReport { text: String::new(), problem: None })
}

/// The workers' half: one batch of a snapshot into a summary of it.
struct CheckMap {
    now: i64,
}

impl<'d> Map<'d> for CheckMap {
    type Part = (Summary, rdb::Result<()>);

    fn snapshot(&self, batch: &Batch<'d, '_>) -> Self::Part {
        let mut part = Summary::default();
        let mut dups = Dups::default();
        // List elements and stream entries are validated; check has no use for them kept.
        let r = batch.decode(false, |item, offset| part.add(&item, offset, self.now, &mut dups));
        (part, r)
    }
}

/// The joining half: one input's summary, log summary and verdict.
struct CheckSink {
    quiet: bool,
    /// The input being checked: its snapshot summary (for a snapshot), its log summary,
    /// the snapshot's damage.
    summary: Option<Summary>,
    log: Option<LogSummary>,
    problem: Option<rdb::Error>,
    report: Option<FileReport>,
}

impl<'d> Sink<'d, (Summary, rdb::Result<()>)> for CheckSink {
    fn begin(&mut self, _file: usize, input: &'d Input) -> Flow {
        self.summary = input.is_snapshot().then(|| {
            let mut s = Summary::default();
            if let Ok(h) = rdb::parse_header(input.data()) {
                s.version = format!("{} ({:?} RDB {})", h.magic(), h.vendor, h.version);
                s.vendor = Some(h.vendor);
            }
            s
        });
        (self.log, self.problem) = (None, None);
        Flow::Continue
    }

    fn part(&mut self, (part, r): (Summary, rdb::Result<()>)) -> Flow {
        if let Some(s) = self.summary.as_mut() {
            s.merge(part);
        }
        match r {
            Ok(()) => Flow::Continue,
            Err(e) => {
                self.problem = Some(e);
                Flow::SkipInput
            }
        }
    }

    fn unit(&mut self, unit: &aof::Unit<'d>, _at: input::Position, _end: u64) -> Flow {
        self.log.get_or_insert_with(LogSummary::default).add(unit);
        Flow::Continue
    }

    fn end(&mut self, _file: usize, input: &'d Input, how: Result<LogEnd, InputError>) -> Flow {
        let mut text = String::new();
        let mut problem = self.problem.take().map(|error| InputError::Snapshot { name: input.name.clone(), error });
        let log_read = matches!(how, Ok(LogEnd::Whole { .. } | LogEnd::Cut { .. }) | Err(InputError::Log { .. }));
        let after_preamble = self.summary.is_some();
        match self.summary.take() {
            Some(mut s) => {
                if log_read {
                    s.trailing = 0; // the bytes after the snapshot are its log
                }
                text.push_str(&report(&input.name, &s));
            }
            None => {
                let _ = writeln!(text, "file: {}", input.name);
            }
        }
        if let Err(e) = how {
            problem.get_or_insert(e);
        }
        if log_read {
            text.push_str(&self.log.take().unwrap_or_default().report(after_preamble));
        }
        text.push_str(if problem.is_none() { "status: OK\n" } else { "status: DAMAGED\n" });
        if self.quiet {
            text.clear();
        }
        self.report = Some(FileReport { text, problem });
        Flow::Continue
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    version: String,
    aux: Vec<(String, String)>,
    /// db → (keys, with expiry, expired, hash fields expired). A hash whose fields have
    /// all expired counts as an expired key.
    dbs: BTreeMap<u64, (u64, u64, u64, u64)>,
    /// Keys per RDB type byte.
    types: Vec<u64>,
    vendor: Option<rdb::Vendor>,
    functions: Vec<String>,
    scripts: u64,
    modules: BTreeMap<String, u64>,
    module_aux: Vec<String>,
    empty_keys: u64,
    checksum: Option<Checksum>,
    trailing: usize,
    slot_info: u64,
}

/// What a command log holds.
#[derive(Debug, Default)]
pub struct LogSummary {
    commands: u64,
    dbs: BTreeMap<u64, u64>,
    multi: u64,
    flushes: u64,
    first_ts: Option<u64>,
    last_ts: Option<u64>,
    timestamps: u64,
    /// Command names (upper-cased) and counts; few distinct ones, so a list scanned from
    /// the last one found beats hashing every name.
    names: Vec<(Vec<u8>, u64)>,
    last_name: usize,
}

impl LogSummary {
    pub fn add(&mut self, unit: &aof::Unit<'_>) {
        let mut one = |c: &aof::Command<'_>| {
            self.commands += 1;
            *self.dbs.entry(c.db).or_default() += 1;
            self.flushes += c.is_flush() as u64;
            let name = c.argv[0];
            let hit = |(n, _): &(Vec<u8>, u64)| n.len() == name.len() && n.eq_ignore_ascii_case(name);
            if self.names.get(self.last_name).is_some_and(hit) {
                self.names[self.last_name].1 += 1;
            } else if let Some(i) = self.names.iter().position(hit) {
                self.names[i].1 += 1;
                self.last_name = i;
            } else if self.names.len() < 4096 {
                self.names.push((name.to_ascii_uppercase(), 1));
                self.last_name = self.names.len() - 1;
            }
        };
        match unit {
            aof::Unit::One(c) => one(c),
            aof::Unit::Multi(block) => {
                self.multi += 1;
                block.iter().for_each(one);
            }
            aof::Unit::Timestamp(t) => {
                self.timestamps += 1;
                self.first_ts.get_or_insert(*t);
                self.last_ts = Some(*t);
            }
        }
    }

    pub fn report(&self, after_preamble: bool) -> String {
        let mut o = String::new();
        let what = if after_preamble { "AOF commands after the RDB preamble" } else { "format: AOF (RESP commands)" };
        let _ = writeln!(o, "{what}");
        let _ = writeln!(o, "commands: {} ({} MULTI/EXEC blocks)", self.commands, self.multi);
        for (db, n) in &self.dbs {
            let _ = writeln!(o, "  db {db}: {n} commands");
        }
        let mut names: Vec<(&Vec<u8>, &u64)> = self.names.iter().map(|(n, c)| (n, c)).collect();
        names.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top: Vec<String> =
            names.iter().take(10).map(|(n, c)| format!("{}×{c}", String::from_utf8_lossy(n))).collect();
        if !top.is_empty() {
            let _ = writeln!(o, "  most used: {}", top.join(" "));
        }
        if self.flushes > 0 {
            let _ =
                writeln!(o, "FLUSHALL/FLUSHDB/SWAPDB: {} (replay refuses them without --allow-flush)", self.flushes);
        }
        match (self.first_ts, self.last_ts) {
            (Some(a), Some(b)) => {
                let _ = writeln!(o, "timestamps (#TS): {} from {a} to {b} (unix seconds)", self.timestamps);
            }
            _ => {
                let _ = writeln!(o, "timestamps (#TS): none (aof-timestamp-enabled is off)");
            }
        }
        o
    }
}

/// Walks the snapshot `data` whole (as [`check_input`] does), on `plan.threads` threads,
/// filling `s` with what is in it up to the first problem (returned).
pub fn walk(data: &[u8], s: &mut Summary, plan: &Plan) -> rdb::Result<()> {
    let h = rdb::parse_header(data)?;
    s.version = format!("{} ({:?} RDB {})", h.magic(), h.vendor, h.version);
    s.vendor = Some(h.vendor);
    let map = CheckMap { now: now_ms() };
    let mut failure = None;
    pipeline::run(
        data,
        plan,
        |header, span| map.snapshot(&Batch::new(0, header, span)),
        |(part, r)| {
            s.merge(part);
            failure = r.err();
            failure.is_none()
        },
    )?;
    failure.map_or(Ok(()), Err)
}

impl Summary {
    fn add(&mut self, item: &Item<'_>, offset: u64, now: i64, dups: &mut Dups) -> rdb::Result<()> {
        let s = self;
        match item {
            Item::Aux { key, value } => {
                let k = String::from_utf8_lossy(&key.bytes()).into_owned();
                if k == "lua" {
                    s.scripts += 1;
                } else {
                    s.aux.push((k, String::from_utf8_lossy(&value.bytes()).into_owned()));
                }
            }
            Item::Record(rec) => {
                check_unique(rec, dups).map_err(|msg| rdb::Error::corrupt(offset, msg).with_key_text(rec))?;
                let e = s.dbs.entry(rec.db).or_default();
                e.0 += 1;
                e.1 += rec.expire_at_ms.is_some() as u64;
                let expired = crate::expiry::Expired::of(rec, now);
                e.2 += expired.whole() as u64;
                e.3 += expired.fields;
                if s.types.is_empty() {
                    s.types = vec![0; 256];
                }
                s.types[rec.rdb_type as usize] += 1;
                if let Value::Module(m) = &rec.value {
                    *s.modules.entry(m.name.clone()).or_default() += 1;
                }
            }
            Item::EmptyKey { .. } => s.empty_keys += 1,
            Item::Function(f) => s.functions.push(function_name(f)),
            Item::ModuleAux { name, .. } => s.module_aux.push(name.clone()),
            Item::SlotInfo { .. } => s.slot_info += 1,
            Item::End { checksum, trailing } => {
                s.checksum = Some(*checksum);
                s.trailing = *trailing;
            }
            Item::SelectDb(_) | Item::ResizeDb { .. } | Item::SlotImport { .. } | Item::Skimmed | Item::Raw(_) => {}
        }
        Ok(())
    }

    /// Adds what a later part of the file holds.
    fn merge(&mut self, part: Summary) {
        self.aux.extend(part.aux);
        for (db, (k, e, x, f)) in part.dbs {
            let d = self.dbs.entry(db).or_default();
            d.0 += k;
            d.1 += e;
            d.2 += x;
            d.3 += f;
        }
        if self.types.is_empty() {
            self.types = part.types;
        } else {
            for (t, n) in part.types.into_iter().enumerate() {
                self.types[t] += n;
            }
        }
        self.functions.extend(part.functions);
        self.scripts += part.scripts;
        for (m, n) in part.modules {
            *self.modules.entry(m).or_default() += n;
        }
        self.module_aux.extend(part.module_aux);
        self.empty_keys += part.empty_keys;
        if part.checksum.is_some() {
            self.checksum = part.checksum;
            self.trailing = part.trailing;
        }
        self.slot_info += part.slot_info;
    }
}

/// Redis refuses sets, hashes and zsets with a member twice; so does `check`. Intsets
/// are left out: their parser already requires strictly ascending elements.
fn check_unique(rec: &Record<'_>, dups: &mut Dups) -> Result<(), String> {
    let found = match &rec.value {
        Value::Set(_) if rec.rdb_type == rdb::RDB_TYPE_SET_INTSET => None,
        Value::Set(items) => dups.find(items.len(), |i| &items[i]).map(|i| ("set member", &items[i])),
        Value::ZSet(items) => dups.find(items.len(), |i| &items[i].0).map(|i| ("zset member", &items[i].0)),
        Value::Hash(fields) => dups.find(fields.len(), |i| &fields[i].field).map(|i| ("hash field", &fields[i].field)),
        _ => None,
    };
    match found {
        Some((what, member)) => Err(format!("duplicate {what} \"{}\"", escape_key(&member.bytes()))),
        None => Ok(()),
    }
}

/// Finds a member that occurs twice: pairwise for a few members, through an
/// open-addressing table (kept from key to key) for more. A slot holds a member's index
/// and the high half of its hash, so that members are compared only when their hashes
/// agree.
#[derive(Default)]
pub struct Dups {
    slots: Vec<u64>,
    /// Every member's hash, computed before any goes into the table: the table's cache
    /// misses then overlap from member to member instead of waiting behind each hash.
    hashes: Vec<u64>,
}

impl Dups {
    const EMPTY: u64 = u64::MAX;

    /// The index of the first member equal to an earlier one.
    fn find<'s, 'a: 's>(&mut self, n: usize, get: impl Fn(usize) -> &'s Str<'a>) -> Option<usize> {
        if n <= 4 {
            return (1..n).find(|&i| (0..i).any(|j| same(get(i), get(j))));
        }
        let n32 = u32::try_from(n).ok().filter(|&v| v != u32::MAX)?;
        let size = (n * 2).next_power_of_two();
        let mask = size - 1;
        if self.slots.len() > (1 << 20) && size <= (1 << 20) {
            // Do not keep a huge key's tables for the rest of the file.
            self.slots = Vec::new();
            self.hashes = Vec::new();
        }
        self.slots.clear();
        self.slots.resize(size, Self::EMPTY);
        self.hashes.clear();
        self.hashes.extend((0..n).map(|i| hash(get(i))));
        for i in 0..n32 {
            let h = self.hashes[i as usize];
            let tag = h & 0xffff_ffff_0000_0000;
            let mut at = h as usize & mask;
            loop {
                match self.slots[at] {
                    Self::EMPTY => {
                        self.slots[at] = tag | i as u64;
                        break;
                    }
                    s if s & 0xffff_ffff_0000_0000 == tag && same(get(s as u32 as usize), get(i as usize)) => {
                        return Some(i as usize)
                    }
                    _ => at = (at + 1) & mask,
                }
            }
        }
        None
    }
}

/// Equal logical bytes (an integer equals its decimal text).
#[inline]
fn same(a: &Str<'_>, b: &Str<'_>) -> bool {
    if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) {
        return x == y;
    }
    match (a, b) {
        (Str::Int(x), Str::Int(y)) => x == y,
        (Str::Int(x), s) | (s, Str::Int(x)) => itoa::Buffer::new().format(*x).as_bytes() == s.bytes().as_ref(),
        _ => a.bytes() == b.bytes(),
    }
}

/// A 64-bit hash of the logical bytes (an integer hashes as its decimal text).
#[inline(always)]
fn hash(s: &Str<'_>) -> u64 {
    let mut int_text = itoa::Buffer::new();
    let expanded;
    let bytes: &[u8] = match s {
        Str::Int(i) => int_text.format(*i).as_bytes(),
        Str::Borrowed(b) => b,
        Str::Owned(v) => v,
        Str::Shared(v, r) => &v[r.clone()],
        Str::Lzf { .. } => {
            expanded = s.bytes();
            &expanded
        }
    };
    hash_bytes(bytes)
}

/// The first and last 8 bytes (overlapping when shorter; 4-byte halves or three single
/// bytes below 8) and every word between, folded with 128-bit multiplies: a few
/// instructions for the short members most containers hold.
#[inline]
fn hash_bytes(b: &[u8]) -> u64 {
    const K0: u64 = 0xa076_1d64_78bd_642f;
    const K1: u64 = 0xe703_7ed1_a0b4_28db;
    let fold = |x: u64, y: u64| {
        let m = x as u128 * y as u128;
        m as u64 ^ (m >> 64) as u64
    };
    let n = b.len();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
    let half = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default()) as u64;
    let (first, last) = match n {
        0 => (0, 0),
        1..=3 => ((b[0] as u64) << 16 | (b[n / 2] as u64) << 8 | b[n - 1] as u64, 0),
        4..=7 => (half(0), half(n - 4)),
        _ => (word(0), word(n - 8)),
    };
    let mut h = n as u64 ^ K0;
    let mut at = 8;
    while at + 8 < n {
        h = fold(h ^ word(at), K1);
        at += 8;
    }
    fold(first ^ h ^ K1, last ^ K0)
}

/// The name a function library declares in its `#!lua name=…` shebang.
pub fn function_name(f: &Function<'_>) -> String {
    match f {
        Function::Library { code } => {
            let code = code.bytes();
            let first = code.split(|&b| b == b'\n').next().unwrap_or_default();
            let first = String::from_utf8_lossy(first);
            first
                .split_whitespace()
                .find_map(|w| w.strip_prefix("name="))
                .map(str::to_string)
                .unwrap_or_else(|| "(unnamed library)".into())
        }
        Function::PreGa { name, .. } => format!("{} (7.0-rc function)", String::from_utf8_lossy(&name.bytes())),
    }
}

/// The report of a snapshot for people.
pub fn report(name: &str, s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "file: {name}");
    if s.version.is_empty() {
        return o;
    }
    let _ = writeln!(o, "format: {}", s.version);
    for (k, v) in &s.aux {
        let _ = writeln!(o, "aux: {k} = {v}");
    }
    let total: u64 = s.dbs.values().map(|d| d.0).sum();
    let _ = writeln!(o, "keys: {total}");
    for (db, (keys, with_ttl, expired, fields)) in &s.dbs {
        let fields = match fields {
            0 => String::new(),
            n => format!(", {n} hash fields already expired"),
        };
        let _ = writeln!(o, "  db {db}: {keys} keys, {with_ttl} with expiry, {expired} already expired{fields}");
    }
    let vendor = s.vendor.unwrap_or(rdb::Vendor::Redis);
    let encodings: BTreeMap<&str, u64> = (0..s.types.len())
        .filter(|&t| s.types[t] > 0)
        .map(|t| (rdb::value::type_name(vendor, t as u8).unwrap_or("?"), s.types[t]))
        .collect();
    for (enc, n) in &encodings {
        let _ = writeln!(o, "  type {enc}: {n}");
    }
    if s.empty_keys > 0 {
        let _ = writeln!(o, "empty keys (skipped, as Redis skips them): {}", s.empty_keys);
    }
    if !s.functions.is_empty() {
        let _ = writeln!(o, "functions: {} ({})", s.functions.len(), s.functions.join(", "));
    }
    if s.scripts > 0 {
        let _ = writeln!(o, "lua scripts (aux): {}", s.scripts);
    }
    for (m, n) in &s.modules {
        let _ = writeln!(o, "module values: {m}: {n}");
    }
    if !s.module_aux.is_empty() {
        let _ = writeln!(o, "module aux data: {}", s.module_aux.join(", "));
    }
    if s.slot_info > 0 {
        let _ = writeln!(o, "slot info records: {}", s.slot_info);
    }
    match s.checksum {
        Some(Checksum::Ok(c)) => {
            let _ = writeln!(o, "checksum: ok ({c:#018x})");
        }
        Some(Checksum::Disabled) => {
            let _ = writeln!(o, "checksum: disabled (stored as 0: saved with rdbchecksum no)");
        }
        Some(Checksum::Absent) => {
            let _ = writeln!(o, "checksum: none (RDB versions before 5 have none)");
        }
        Some(Checksum::Skipped(_)) => {
            let _ = writeln!(o, "checksum: not verified");
        }
        None => {}
    }
    if s.trailing > 0 {
        let _ = writeln!(o, "trailing bytes after the RDB: {}", s.trailing);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table finds the first member equal to an earlier one, as comparing every pair
    /// would: sets of many sizes with a duplicate (bytes, or an integer against its text)
    /// anywhere, and without one; the table is reused from set to set.
    #[test]
    fn duplicates_are_found_as_pairwise_comparison_finds_them() {
        let mut dups = Dups::default();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for round in 0..3000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let n = 1 + (rng % 300) as usize;
            let mut members: Vec<Str<'static>> = (0..n)
                .map(|i| match (rng >> (i % 40)) & 3 {
                    0 => Str::Int(i as i64 * 7),
                    1 => Str::Owned(format!("{}", i as i64 * 7 + 1).into_bytes()),
                    _ => Str::Owned(format!("member:{i}").into_bytes()),
                })
                .collect();
            if round % 3 != 0 && n > 1 {
                let (a, b) = ((rng >> 8) as usize % n, (rng >> 24) as usize % n);
                if a != b {
                    // An integer's text, or a copy of the bytes.
                    members[b] = match &members[a] {
                        Str::Int(v) => Str::Owned(v.to_string().into_bytes()),
                        other => other.clone(),
                    };
                }
            }
            let want = (1..n).find(|&i| (0..i).any(|j| members[i] == members[j]));
            assert_eq!(dups.find(n, |i| &members[i]), want, "round {round}, {n} members");
        }
    }
}
