//! `inspect`: what snapshots hold and what they will cost in memory — a consumer of the
//! ordered input stream. Each batch is sized on a worker ([`memory`]: what `MEMORY USAGE`
//! reports on the target), folded into a small part (counts per db, type and encoding,
//! the batch's biggest keys, its prefix tree, histograms), and the parts are joined in
//! input order into one [`Report`]; nothing grows with the key count but the bounded
//! top-N list and the prefix tree's node budget (a batch's tree has none: it is bounded
//! by the batch's size, and the budget is applied as the joiner merges them in order).
//! The log part of an AOF is not applied.

pub mod html;
pub mod memory;
pub mod prefix;
mod report;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use crate::expiry;
use crate::filter::Filter;
use crate::input::{self, Batch, Flow, Input, InputError, Inputs, LogEnd, Map, Sink};
use crate::pipeline::Plan;
use crate::rdb::{self, Header, Item, Record, Str, Value};
use crate::translate::{self, Translator};
use crate::version::{type_min_rdb_version, version_of_rdb, Version};

pub use report::{human, iso_time, KEYS_HEADER, SCHEMA};

/// An inspection, fully decided (the CLI builds it from its arguments).
#[derive(Debug, Clone)]
pub struct Job {
    pub filter: Filter,
    /// Expiry is judged at this time (ms); `None`: each file's `ctime`.
    pub now_ms: Option<i64>,
    /// The server to size for (and its patch level, when given); `None`: the version that
    /// wrote each file.
    pub target_version: Option<(Version, Option<u32>)>,
    /// The target's jemalloc build (Redis's own, or a distribution's).
    pub allocator: memory::Allocator,
    /// Encoding thresholds of the target (`--config`), instead of its defaults.
    pub config: Option<String>,
    pub top: usize,
    pub prefix: prefix::Cut,
    /// Most nodes of the prefix tree.
    pub prefix_budget: usize,
    /// Keys at or over these are listed as big keys.
    pub big_bytes: u64,
    pub big_elements: u64,
    /// Most elements in one command, as `replay` chunks big keys (`--max-args`).
    pub max_args: u64,
    /// One CSV row per key instead of the report (`--keys`).
    pub keys_csv: bool,
    pub plan: Plan,
}

/// The TTL histogram's bins, by the time left (ms, exclusive upper bounds).
pub const TTL_BINS: [(&str, i64); 6] = [
    ("< 1 min", 60_000),
    ("< 1 h", 3_600_000),
    ("< 1 day", 86_400_000),
    ("< 1 week", 7 * 86_400_000),
    ("< 30 days", 30 * 86_400_000),
    ("≥ 30 days", i64::MAX),
];

/// Counts and memory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub keys: u64,
    pub elements: u64,
    pub memory_bytes: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.keys += o.keys;
        self.elements += o.elements;
        self.memory_bytes += o.memory_bytes;
    }
}

/// A key as the report and the `--keys` rows show it, its key borrowed.
#[derive(Debug, Clone, Copy)]
pub struct KeyRow<'k> {
    pub db: u64,
    pub key: &'k [u8],
    pub kind: &'static str,
    pub encoding: &'static str,
    pub elements: u64,
    pub memory_bytes: u64,
    pub largest_element: u64,
    pub expire_at_ms: Option<i64>,
}

impl KeyRow<'_> {
    fn to_big(self, at: (usize, u64)) -> BigKey {
        BigKey {
            db: self.db,
            key: self.key.to_vec(),
            kind: self.kind,
            encoding: self.encoding,
            elements: self.elements,
            memory_bytes: self.memory_bytes,
            largest_element: self.largest_element,
            expire_at_ms: self.expire_at_ms,
            at,
        }
    }
}

/// A key among the biggest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigKey {
    pub db: u64,
    pub key: Vec<u8>,
    pub kind: &'static str,
    pub encoding: &'static str,
    pub elements: u64,
    pub memory_bytes: u64,
    pub largest_element: u64,
    pub expire_at_ms: Option<i64>,
    /// Where it stands in the input (ties are broken by it: the same list whatever the
    /// number of threads).
    pub at: (usize, u64),
}

/// What a db holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Db {
    /// Every key stored in the files (expired ones included).
    pub keys: u64,
    pub expires: u64,
    pub expired: u64,
    /// Of the keys with an expiry, those not expired: with `keys - expired`, what `INFO
    /// keyspace` of a server that loaded the files shows.
    pub live_expires: u64,
    /// Memory of its live keys.
    pub memory_bytes: u64,
}

/// Per type: totals and per encoding.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TypeTally {
    pub all: Tally,
    pub encodings: BTreeMap<&'static str, Tally>,
}

/// One file's header and totals.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    pub name: String,
    pub format: String,
    pub aux: Vec<(String, String)>,
    pub bytes: u64,
    /// An AOF whose commands (after the snapshot, if it has one) are not applied.
    pub log_not_applied: bool,
    /// It holds a snapshot (an RDB, an RDB-preamble AOF, a multi-part AOF's base); false
    /// for a command log alone (a plain AOF, an incr file) or an empty file.
    pub snapshot: bool,
    pub target: Option<Version>,
    pub keys: u64,
    pub memory_bytes: u64,
}

/// What the inputs hold.
#[derive(Debug)]
pub struct Report {
    pub files: Vec<FileReport>,
    /// What the user should know about how the files were read (on stderr).
    pub notes: Vec<String>,
    pub now_ms: Option<i64>,
    pub dbs: BTreeMap<u64, Db>,
    pub types: BTreeMap<&'static str, TypeTally>,
    /// Keys whose expiry (or every field's) has passed: counted apart, memory included.
    pub expired: Tally,
    pub expired_fields: u64,
    pub top: Vec<BigKey>,
    pub prefixes: prefix::Tree,
    /// Live keys by time left: the bins of [`TTL_BINS`], then "no expiry".
    pub ttl: Vec<Tally>,
    /// Elements per collection and bytes per string: by power-of-two bin (the bins of
    /// Redis 8's `INFO KEYSIZES`: 0, 1, 2, 4 … each holding sizes from it to the next).
    pub elements: BTreeMap<u64, u64>,
    pub value_bytes: BTreeMap<u64, u64>,
    /// The same per db and type, as `INFO KEYSIZES` lists them.
    pub keysizes: BTreeMap<u64, BTreeMap<&'static str, BTreeMap<u64, u64>>>,
    /// The biggest of the keys over the `--big-*` thresholds (at most
    /// [`BIG_KEYS_LISTED`]), with the commands `replay` would send for each; and how many
    /// there are in all.
    pub big_keys: Vec<(BigKey, u64)>,
    pub big_keys_total: u64,
    /// Memory a db costs beyond its keys (the expires entries, the keyspace's buckets).
    pub overhead: BTreeMap<u64, u64>,
    /// Keys left out by the filters; empty collections skipped.
    pub filtered: u64,
    pub empty: u64,
}

/// The power-of-two bin of `n` as `INFO KEYSIZES` labels it (`db.c`,
/// `updateKeysizesHist`; `server.c`, `genRedisInfoString`): 0 for 0, else the largest
/// power of two at or below it (the bin labelled 4 holds 4 to 7).
pub fn keysizes_bin(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        1 << (63 - n.leading_zeros())
    }
}

/// Power-of-two bins: 0, then one per bit.
const BINS: usize = 65;

/// The index of a size's bin in a [`BINS`] array (see [`keysizes_bin`]).
fn bin_index(n: u64) -> usize {
    if n == 0 {
        0
    } else {
        64 - n.leading_zeros() as usize
    }
}

/// The size a bin index stands for.
fn bin_of(i: usize) -> u64 {
    if i == 0 {
        0
    } else {
        1 << (i - 1)
    }
}

/// The types, in the order of [`TYPES`] indices.
const TYPES: [&str; 7] = ["string", "list", "set", "zset", "hash", "stream", "module"];

/// A type's counts within a batch: all, and per encoding (a few each).
#[derive(Default, Clone)]
struct TypeAcc {
    all: Tally,
    encodings: Vec<(&'static str, Tally)>,
}

/// One db's counts within a batch (kept in arrays: a record touches each once).
#[derive(Clone)]
struct DbAcc {
    db: u64,
    counts: Db,
    /// `INFO keysizes` histograms of the five basic types.
    keysizes: [[u64; BINS]; 5],
}

/// The part of one batch.
#[derive(Default)]
pub struct Part {
    dbs: Vec<DbAcc>,
    types: [TypeAcc; 7],
    expired: Tally,
    expired_fields: u64,
    top: Vec<BigKey>,
    prefixes: Option<prefix::Counted>,
    ttl: Vec<Tally>,
    elements: Vec<u64>,
    value_bytes: Vec<u64>,
    big_keys: Vec<(BigKey, u64)>,
    big_keys_total: u64,
    filtered: u64,
    empty: u64,
    /// `--keys`: the CSV rows of the batch.
    rows: Vec<u8>,
    /// Once the batch's top list is full: its smallest; a key must be bigger to enter
    /// (an equal one came later and loses the tie).
    top_floor: Option<u64>,
    error: Option<rdb::Error>,
}

/// What a file is sized for.
struct FileTarget {
    /// The server to size for.
    target: memory::Target,
    /// The RDB version it loads (computed once, not per key).
    target_rdb: u32,
    /// The time expiry is judged at (ms).
    now: i64,
}

/// The workers' half: each record sized and counted.
struct Sizer<'j> {
    job: &'j Job,
    /// Per input.
    files: Vec<FileTarget>,
    /// The joiner's prefix tree, frozen once its budget is spent (see `prefix`).
    frozen: &'j OnceLock<Arc<prefix::Tree>>,
}

impl<'d> Map<'d> for Sizer<'_> {
    type Part = Part;

    fn snapshot(&self, batch: &Batch<'d, '_>) -> Part {
        let file = &self.files[batch.file];
        let mut part = Part {
            ttl: vec![Tally::default(); TTL_BINS.len() + 1],
            elements: vec![0; BINS],
            value_bytes: vec![0; BINS],
            ..Part::default()
        };
        // The budget is the joiner's: a batch counts every prefix it meets (see
        // `prefix`), or which prefixes got nodes would depend on where batches are cut;
        // once that budget is spent, against the joiner's tree as it stands.
        let mut tree = prefix::Counted::new(self.frozen.get());
        let r = batch.decode(true, |item, end| {
            match item {
                Item::Record(rec) => self.record(rec, file, &batch.header, (batch.file, end), &mut part, &mut tree),
                Item::EmptyKey { .. } => part.empty += 1,
                _ => {}
            }
            Ok(())
        });
        part.prefixes = Some(tree);
        part.error = r.err();
        part
    }
}

impl Sizer<'_> {
    fn record(
        &self,
        mut rec: Record<'_>,
        file: &FileTarget,
        header: &Header,
        at: (usize, u64),
        part: &mut Part,
        tree: &mut prefix::Counted,
    ) {
        let job = self.job;
        let (target, now) = (&file.target, file.now);
        if !job.filter.selects(&rec) {
            part.filtered += 1;
            return;
        }
        let expired = expiry::Expired::of(&rec, now);
        if expired.fields > 0 && !expired.whole() {
            part.expired_fields += expiry::drop_expired_fields(&mut rec, now);
        }
        // As replay would send it: RESTORE of the file's bytes when the target knows the
        // type, else the commands that rebuild it.
        let load = if type_min_rdb_version(rec.rdb_type) <= file.target_rdb {
            memory::Load::Rdb
        } else {
            memory::Load::Commands
        };
        let usage = memory::usage_with(&rec, target, load);
        // Records of a batch come db by db: the last one is nearly always the one.
        if part.dbs.last().is_none_or(|d| d.db != rec.db) {
            match part.dbs.iter().position(|d| d.db == rec.db) {
                Some(i) => {
                    let d = part.dbs.remove(i);
                    part.dbs.push(d);
                }
                None => part.dbs.push(DbAcc { db: rec.db, counts: Db::default(), keysizes: [[0; BINS]; 5] }),
            }
        }
        let acc = part.dbs.last_mut().unwrap_or_else(|| unreachable!("pushed above"));
        let db = &mut acc.counts;
        db.keys += 1;
        db.expires += rec.expire_at_ms.is_some() as u64;
        if expired.whole() {
            db.expired += 1;
            part.expired_fields += expired.fields;
            part.expired.add(&Tally { keys: 1, elements: usage.elements, memory_bytes: usage.bytes });
            return;
        }
        db.memory_bytes += usage.bytes;
        db.live_expires += rec.expire_at_ms.is_some() as u64;
        let ti = type_index(&rec.value);
        let kind = TYPES[ti];
        let one = Tally { keys: 1, elements: usage.elements, memory_bytes: usage.bytes };
        if ti < 5 {
            let size = if ti == 0 { usage.largest_element } else { usage.elements };
            acc.keysizes[ti][bin_index(size)] += 1;
        }
        let t = &mut part.types[ti];
        t.all.add(&one);
        match t.encodings.iter_mut().find(|(e, _)| *e == usage.encoding) {
            Some((_, x)) => x.add(&one),
            None => t.encodings.push((usage.encoding, one)),
        }
        // Decoded again after the filter's look (free unless the file stored the key as
        // an integer or compressed: `rec` was changed in between).
        let key = rec.key.bytes();
        tree.add(
            job.prefix.segments(&key),
            &prefix::Totals {
                keys: 1,
                memory_bytes: usage.bytes,
                no_ttl_bytes: if rec.expire_at_ms.is_none() { usage.bytes } else { 0 },
            },
        );
        let bin = match rec.expire_at_ms {
            None => TTL_BINS.len(),
            // Times from the file: a far past or future one saturates, never wraps.
            Some(t) => {
                TTL_BINS.iter().position(|&(_, upto)| t.saturating_sub(now) < upto).unwrap_or(TTL_BINS.len() - 1)
            }
        };
        part.ttl[bin].add(&one);
        let size = match kind {
            "string" => usage.largest_element,
            _ => usage.elements,
        };
        let hist = if kind == "string" { &mut part.value_bytes } else { &mut part.elements };
        hist[bin_index(size)] += 1;
        let row = KeyRow {
            db: rec.db,
            key: &key,
            kind,
            encoding: usage.encoding,
            elements: usage.elements,
            memory_bytes: usage.bytes,
            largest_element: usage.largest_element,
            expire_at_ms: rec.expire_at_ms,
        };
        if job.keys_csv {
            report::csv_row(&mut part.rows, &row);
        }
        if usage.bytes >= job.big_bytes || usage.elements >= job.big_elements {
            let commands = self.commands(&rec, file, header);
            part.big_keys.push((row.to_big(at), commands));
            part.big_keys_total += 1;
            if part.big_keys.len() >= 2 * BIG_KEYS_LISTED {
                keep_big(&mut part.big_keys);
            }
        }
        // Candidates pile up to twice the list and are cut back to it (sorting once per
        // `top` keys, not once per key); at or below the smallest kept, a key cannot enter
        // (ties go to the earlier key).
        if job.top > 0 && part.top_floor.is_none_or(|floor| usage.bytes > floor) {
            part.top.push(row.to_big(at));
            if part.top.len() >= 2 * job.top {
                keep_top(&mut part.top, job.top);
                part.top_floor = part.top.last().map(|k| k.memory_bytes);
            }
        }
    }
}

impl Sizer<'_> {
    /// The commands `replay --mode commands` sends for a (big) key: counted by the
    /// translator itself, with `--max-args` and the translator's other defaults, for the
    /// target version (a hash's field TTLs on a target without them: as sent with
    /// `--drop-field-ttl`). Expired fields were left out already; a module value, which
    /// commands cannot carry, counts 0.
    fn commands(&self, rec: &Record<'_>, file: &FileTarget, header: &Header) -> u64 {
        let cfg = translate::Config {
            target: file.target.version,
            max_args: usize::try_from(self.job.max_args).unwrap_or(usize::MAX),
            keep_expired: true,
            drop_field_ttl: true,
            now_ms: file.now,
            ..translate::Config::default()
        };
        let mut t = Translator::new(cfg, header.vendor, header.version).counting();
        let mut out = Vec::new();
        t.record(rec, &mut out);
        t.stats.commands
    }
}

/// Most big keys listed (the count says how many there are).
pub const BIG_KEYS_LISTED: usize = 10_000;

fn keep_big(v: &mut Vec<(BigKey, u64)>) {
    v.sort_by(|a, b| b.0.memory_bytes.cmp(&a.0.memory_bytes).then(a.0.at.cmp(&b.0.at)));
    v.truncate(BIG_KEYS_LISTED);
}

/// The biggest first, ties in input order; at most `n`.
fn keep_top(top: &mut Vec<BigKey>, n: usize) {
    top.sort_by(|a, b| b.memory_bytes.cmp(&a.memory_bytes).then(a.at.cmp(&b.at)));
    top.truncate(n);
}

/// The type's index in [`TYPES`] (the names `TYPE` gives).
fn type_index(v: &Value<'_>) -> usize {
    match v {
        Value::String(_) => 0,
        Value::List(_) => 1,
        Value::Set(_) => 2,
        Value::ZSet(_) => 3,
        Value::Hash(_) => 4,
        Value::Stream(_) => 5,
        Value::Module(_) => 6,
    }
}

/// The names of the basic types' histograms in `INFO KEYSIZES`, in [`TYPES`] order.
const KEYSIZES_NAMES: [&str; 5] = [
    "distrib_strings_sizes",
    "distrib_lists_items",
    "distrib_sets_items",
    "distrib_zsets_items",
    "distrib_hashes_items",
];

/// The joining half: parts folded in input order.
struct Joiner<'j, W: std::io::Write> {
    job: &'j Job,
    report: Report,
    file: usize,
    /// `--keys`: where the rows go.
    rows: W,
    failure: Option<InspectError>,
    /// Per file and db: the live keys and live expires (what a loading server keeps).
    live: BTreeMap<(usize, u64), (u64, u64)>,
    /// Set once the prefix tree's budget is spent: the workers count against it.
    frozen: &'j OnceLock<Arc<prefix::Tree>>,
}

/// Why an inspection stopped.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error("--config: {0}")]
    Config(String),
}

impl<'d, W: std::io::Write> Sink<'d, Part> for Joiner<'_, W> {
    fn begin(&mut self, file: usize, _input: &'d Input) -> Flow {
        self.file = file;
        Flow::Continue
    }

    fn part(&mut self, mut p: Part) -> Flow {
        let r = &mut self.report;
        let f = &mut r.files[self.file];
        for acc in &p.dbs {
            let d = &acc.counts;
            f.keys += d.keys;
            f.memory_bytes += d.memory_bytes;
            let into = r.dbs.entry(acc.db).or_default();
            into.keys += d.keys;
            into.expires += d.expires;
            into.expired += d.expired;
            into.live_expires += d.live_expires;
            into.memory_bytes += d.memory_bytes;
            let live = self.live.entry((self.file, acc.db)).or_default();
            live.0 += d.keys - d.expired;
            live.1 += d.live_expires;
            for (ti, bins) in acc.keysizes.iter().enumerate() {
                for (i, &n) in bins.iter().enumerate().filter(|(_, n)| **n > 0) {
                    *r.keysizes
                        .entry(acc.db)
                        .or_default()
                        .entry(KEYSIZES_NAMES[ti])
                        .or_default()
                        .entry(bin_of(i))
                        .or_default() += n;
                }
            }
        }
        for (ti, t) in std::mem::take(&mut p.types).into_iter().enumerate() {
            if t.all.keys == 0 {
                continue;
            }
            let into = r.types.entry(TYPES[ti]).or_default();
            into.all.add(&t.all);
            for (enc, e) in t.encodings {
                into.encodings.entry(enc).or_default().add(&e);
            }
        }
        r.expired.add(&p.expired);
        r.expired_fields += p.expired_fields;
        r.top.append(&mut p.top);
        keep_top(&mut r.top, self.job.top);
        if let Some(counted) = p.prefixes.take() {
            counted.join_into(&mut r.prefixes);
            if r.prefixes.full() && self.frozen.get().is_none() {
                let _ = self.frozen.set(Arc::new(r.prefixes.clone()));
            }
        }
        for (i, t) in p.ttl.iter().enumerate() {
            r.ttl[i].add(t);
        }
        for (i, &n) in p.elements.iter().enumerate().filter(|(_, n)| **n > 0) {
            *r.elements.entry(bin_of(i)).or_default() += n;
        }
        for (i, &n) in p.value_bytes.iter().enumerate().filter(|(_, n)| **n > 0) {
            *r.value_bytes.entry(bin_of(i)).or_default() += n;
        }
        r.big_keys.append(&mut p.big_keys);
        r.big_keys_total += p.big_keys_total;
        if r.big_keys.len() >= 2 * BIG_KEYS_LISTED {
            keep_big(&mut r.big_keys);
        }
        r.filtered += p.filtered;
        r.empty += p.empty;
        if let Err(e) = self.rows.write_all(&p.rows) {
            self.failure = Some(e.into());
            return Flow::Stop;
        }
        if let Some(error) = p.error {
            let name = self.report.files[self.file].name.clone();
            self.failure = Some(InputError::Snapshot { name, error }.into());
            return Flow::Stop;
        }
        Flow::Continue
    }

    fn snapshot_end(&mut self, file: usize, _header: Header, trailing: usize) -> Flow {
        // The log after a snapshot is not applied: say so, and read no further.
        self.report.files[file].log_not_applied = trailing > 0;
        self.report.files[file].snapshot = true;
        Flow::SkipInput
    }

    fn log_begin(&mut self, file: usize, _input: &'d Input, _base: usize) -> Flow {
        self.report.files[file].log_not_applied = true;
        Flow::SkipInput
    }

    fn end(&mut self, _file: usize, _input: &'d Input, how: Result<LogEnd, InputError>) -> Flow {
        match how {
            Err(e) => {
                self.failure.get_or_insert(e.into());
                Flow::Stop
            }
            Ok(_) if self.failure.is_some() => Flow::Stop,
            Ok(_) => Flow::Continue,
        }
    }
}

/// Reads the header of a snapshot: its format and AUX fields (the first items only).
fn header_of(data: &[u8]) -> (String, Vec<(String, String)>) {
    let Ok(mut p) = rdb::Parser::new(data) else { return (String::new(), Vec::new()) };
    let format = p.header().magic();
    let mut aux = Vec::new();
    while let Ok(Some(Item::Aux { key, value })) = p.next_item() {
        let text = |s: &Str<'_>| String::from_utf8_lossy(&s.bytes()).into_owned();
        aux.push((text(&key), text(&value)));
    }
    (format, aux)
}

/// The server version (and patch level) that wrote a snapshot: its `redis-ver` AUX
/// field, else the oldest that writes its RDB version.
fn writer_version(aux: &[(String, String)], data: &[u8]) -> Option<(Version, Option<u32>)> {
    aux.iter()
        .find(|(k, _)| k == "redis-ver")
        .and_then(|(_, v)| parse_version(v))
        .or_else(|| rdb::parse_header(data).ok().map(|h| (version_of_rdb(h.version), None)))
}

/// `X.Y[.Z]`: the version and its patch level.
pub fn parse_version(s: &str) -> Option<(Version, Option<u32>)> {
    let v = Version::parse(s)?;
    let patch = s.trim().split('.').nth(2).and_then(|p| p.parse().ok());
    Some((v, patch))
}

/// Inspects `inputs`; with `--keys`, the rows go to `rows` as they come.
pub fn run<W: std::io::Write>(inputs: &Inputs, job: &Job, rows: W) -> Result<Report, InspectError> {
    let mut files = Vec::new();
    let mut targets = Vec::new();
    let mut notes = Vec::new();
    for input in &inputs.files {
        let (format, aux) = if input.is_snapshot() { header_of(input.data()) } else { (String::new(), Vec::new()) };
        let wrote = writer_version(&aux, input.data());
        let (version, patch) = job.target_version.or(wrote).unwrap_or((Version::LATEST, None));
        let thresholds = match &job.config {
            Some(text) => {
                memory::Thresholds::from_redis_conf(text, version).map_err(|e| InspectError::Config(e.to_string()))?
            }
            None => memory::Thresholds::defaults(version),
        };
        let now = match job.now_ms {
            Some(now) => now,
            None => {
                // `--now snapshot`: the file's ctime (`rdb.c`, `rdbSaveInfoAuxFields`: the
                // save time in seconds). One that is no time in milliseconds (its ms
                // overflow) is the file's error, not a reason to stop: the clock instead,
                // with a note.
                let ctime = aux.iter().find(|(k, _)| k == "ctime").map(|(_, v)| v);
                match ctime.map(|v| v.parse::<i64>().ok().and_then(|s| s.checked_mul(1000))) {
                    Some(Some(ms)) => ms,
                    Some(None) => {
                        notes.push(format!(
                            "{}: its ctime {:?} is not a time: expiry judged at the clock instead",
                            input.name,
                            ctime.map_or("", |v| v.as_str())
                        ));
                        crate::filter::now_ms()
                    }
                    None => crate::filter::now_ms(),
                }
            }
        };
        let target = memory::Target { thresholds, patch, allocator: job.allocator, ..memory::Target::new(version) };
        targets.push(FileTarget { target_rdb: version.rdb_version(), target, now });
        files.push(FileReport {
            name: input.name.clone(),
            format,
            aux,
            bytes: input.data().len() as u64,
            target: Some(version),
            ..FileReport::default()
        });
    }
    let report = Report {
        files,
        notes,
        now_ms: job.now_ms,
        dbs: BTreeMap::new(),
        types: BTreeMap::new(),
        expired: Tally::default(),
        expired_fields: 0,
        top: Vec::new(),
        prefixes: prefix::Tree::new(job.prefix_budget),
        ttl: vec![Tally::default(); TTL_BINS.len() + 1],
        elements: BTreeMap::new(),
        value_bytes: BTreeMap::new(),
        keysizes: BTreeMap::new(),
        big_keys: Vec::new(),
        big_keys_total: 0,
        overhead: BTreeMap::new(),
        filtered: 0,
        empty: 0,
    };
    let frozen = OnceLock::new();
    let sizer = Sizer { job, files: targets, frozen: &frozen };
    let mut joiner = Joiner { job, report, file: 0, rows, failure: None, live: BTreeMap::new(), frozen: &frozen };
    let opts = input::Options { plan: job.plan, from: input::Position::default(), reader: input::Reader::Print };
    input::run(inputs, &opts, &sizer, &mut joiner);
    if let Some(e) = joiner.failure {
        return Err(e);
    }
    let mut report = joiner.report;
    keep_big(&mut report.big_keys);
    // Each file is a server of its own (a cluster backup's nodes): its dbs' tables sized
    // for what it loads (the live keys and expires) on its own target, then added up.
    for ((file, db), (keys, expires)) in &joiner.live {
        let target = &sizer.files[*file].target;
        *report.overhead.entry(*db).or_default() += memory::db_overhead(*keys, *expires, target);
    }
    Ok(report)
}
