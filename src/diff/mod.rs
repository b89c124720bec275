//! `diff`: two datasets compared key by key, element by element, with a patch that turns
//! the first into the second.
//!
//! A side is snapshots (RDB files, a folder of shard snapshots taken as one dataset) or a
//! live server. Every key a side holds becomes an entry: its db, key, type, a 128-bit
//! digest of its logical value ([`digest`]), its expiry, and where its value can be read
//! again. Files are digested on the workers of the input stream, batch by batch; a
//! server's keys (SCAN, then DUMP and PEXPIRETIME) are decoded by the same RDB decoder.
//! Entries are partitioned by key and spilled to temporary files past a memory budget
//! ([`store`]); the join then takes one partition of each side at a time. Only keys whose
//! entries differ are read again, from both sides, for the element-level detail and the
//! patch ([`detail`]).
//!
//! What is compared is what a client reads: encodings never matter; keys whose expiry
//! has passed at `now` are left out (unless `--keep-expired`), and so are hash fields
//! whose TTL has passed (a hash left with none is an expired key).

pub mod detail;
pub mod digest;
pub mod store;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use crate::filter::Filter;
use crate::input::{Batch, Flow, Input, InputError, Inputs, LogEnd, Map, Sink};
use crate::pipeline::Plan;
use crate::rdb::{self, Function, Header, Item, Record, Str, ValueType};

use digest::{Digest, StreamRules};
use store::{Entry, Store, Sum, TempDir, PARTITIONS};

/// One side of a comparison, as given.
#[derive(Debug, Clone)]
pub enum SideSpec {
    /// Snapshots: files and folders (read as one dataset, in order; a key in two files
    /// takes the later file's value, as loading both would).
    Files(crate::input::Spec),
    /// A live server (SCAN, DUMP, PEXPIRETIME).
    Live(crate::live::LiveSpec),
}

impl SideSpec {
    pub fn describe(&self) -> String {
        match self {
            SideSpec::Files(s) => s.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" "),
            SideSpec::Live(l) => format!("{}:{}", l.endpoint.host, l.endpoint.port),
        }
    }
}

/// How the differences are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A summary and the first `show` differences, for people.
    Text,
    /// One JSON object per differing key, then the summary.
    Json,
}

/// How the patch rebuilds a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchMode {
    /// Commands (element-level where a value changed).
    Commands,
    /// RESTORE … REPLACE ABSTTL for every key rebuilt.
    Restore,
}

/// A diff job.
pub struct Job {
    pub a: SideSpec,
    pub b: SideSpec,
    /// Keys selected (db, match, regex, type), expiry at `filter.now_ms`.
    pub filter: Filter,
    /// Expiries this close count as equal.
    pub ttl_tolerance_ms: i64,
    pub rules: StreamRules,
    /// Passes over the keys that differ (live sides only).
    pub rounds: u32,
    pub interval: std::time::Duration,
    pub format: Format,
    /// How many differences text output shows.
    pub show: usize,
    pub patch: Option<PathBuf>,
    pub patch_mode: PatchMode,
    pub plan: Plan,
    /// Bytes of entries each side holds in memory before spilling.
    pub side_budget: usize,
    pub temp_dir: PathBuf,
    /// Work out every key's logical digest as it is read, even where both sides' files
    /// are of one RDB version (where equal stored bytes would settle most keys).
    pub logical: bool,
}

/// What a key's comparison found, most significant first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Added,
    Removed,
    Type,
    Value,
    Ttl,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Added => "added",
            Kind::Removed => "removed",
            Kind::Type => "type",
            Kind::Value => "value",
            Kind::Ttl => "ttl",
        }
    }
}

/// Totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Keys of either side (each once).
    pub compared: u64,
    pub same: u64,
    pub added: u64,
    pub removed: u64,
    pub type_: u64,
    pub value: u64,
    pub ttl: u64,
    /// Keys left out as expired, per side.
    pub expired: [u64; 2],
    /// Hash fields left out as expired, per side.
    pub expired_fields: [u64; 2],
    /// Keys found twice on one side (a folder with a key in two files; SCAN may also
    /// return a key twice), per side: the later one counts.
    pub duplicates: [u64; 2],
    /// Keys that differed at first and then changed between rounds: written to while
    /// the check ran, reported apart from the differences.
    pub changing: u64,
    /// Function libraries only one side has, or with different code.
    pub functions: u64,
    /// Bytes of entries written to temporary files.
    pub spilled_bytes: u64,
    /// Values decoded after the join because their stored bytes differed (files read raw).
    pub decoded_late: u64,
    /// Commands written to the patch.
    pub patch_commands: u64,
}

impl Summary {
    pub fn differences(&self) -> u64 {
        self.added + self.removed + self.type_ + self.value + self.ttl + self.functions
    }

    fn count(&mut self, k: Kind) {
        match k {
            Kind::Added => self.added += 1,
            Kind::Removed => self.removed += 1,
            Kind::Type => self.type_ += 1,
            Kind::Value => self.value += 1,
            Kind::Ttl => self.ttl += 1,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "compared": self.compared, "same": self.same, "added": self.added, "removed": self.removed,
            "type": self.type_, "value": self.value, "ttl": self.ttl, "functions": self.functions,
            "changing": self.changing,
            "expired": {"a": self.expired[0], "b": self.expired[1]},
            "expired_fields": {"a": self.expired_fields[0], "b": self.expired_fields[1]},
            "duplicates": {"a": self.duplicates[0], "b": self.duplicates[1]},
            "spilled_bytes": self.spilled_bytes, "decoded_late": self.decoded_late,
            "patch_commands": self.patch_commands,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{0}")]
    Input(#[from] InputError),
    #[error("{0}")]
    Live(#[from] crate::live::LiveError),
    #[error("{server}: key {key}: {error}")]
    Payload { server: String, key: String, error: rdb::Error },
    #[error("{name}: {msg}")]
    Usage { name: String, msg: String },
    #[error("temporary files under {dir}: {error}")]
    Temp { dir: String, error: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// `ValueType` ↔ its index in entries.
const KINDS: [ValueType; 7] = [
    ValueType::String,
    ValueType::List,
    ValueType::Set,
    ValueType::ZSet,
    ValueType::Hash,
    ValueType::Stream,
    ValueType::Module,
];

pub fn kind_index(t: ValueType) -> u8 {
    KINDS.iter().position(|&k| k == t).unwrap_or(0) as u8
}

pub fn kind_of(i: u8) -> ValueType {
    KINDS.get(i as usize).copied().unwrap_or(ValueType::String)
}

/// What becomes of a record on its way to an entry.
pub enum Taken {
    /// Not selected by the filters.
    Skipped,
    /// Expired at `now` (with so many hash fields).
    Expired(u64),
    /// Kept, after leaving out so many expired hash fields.
    Kept(u64),
}

/// Applies the filters and expiry to `rec` (as a client at `filter.now_ms` would read it).
pub fn take_record(rec: &mut Record<'_>, filter: &Filter) -> Taken {
    if !filter.selects(rec) {
        return Taken::Skipped;
    }
    if filter.keep_expired {
        return Taken::Kept(0);
    }
    let expired = crate::expiry::Expired::of(rec, filter.now_ms);
    if expired.whole() {
        return Taken::Expired(expired.fields);
    }
    // Hash fields are looked at again only when some have expired.
    Taken::Kept(if expired.fields > 0 { crate::expiry::drop_expired_fields(rec, filter.now_ms) } else { 0 })
}

/// What a kept record says: its logical digest and, when `stored`, its stored bytes'
/// digest (else left zero: only a side read raw is ever compared by stored bytes, and a
/// value with a logical digest on both sides is compared by that alone).
pub fn sum_of(rec: &Record<'_>, vendor: rdb::Vendor, rules: StreamRules, loc: u64, stored: bool) -> Sum {
    Sum {
        kind: kind_index(rec.value.value_type()),
        rdb_type: rec.rdb_type,
        logical: Some(digest::value(&rec.value, rules)),
        raw: if stored { digest::raw(vendor, rec.rdb_type, rec.raw_value) } else { Digest::default() },
        expire_at_ms: rec.expire_at_ms,
        loc,
    }
}

/// Type bytes whose values carry hash-field TTLs: their expired fields must be left out,
/// so they are always decoded.
fn has_field_ttls(vendor: rdb::Vendor, t: u8) -> bool {
    match vendor {
        rdb::Vendor::Redis => (rdb::RDB_TYPE_HASH_METADATA_PRE_GA..=rdb::RDB_TYPE_HASH_LISTPACK_EX).contains(&t),
        rdb::Vendor::Valkey => t == rdb::VALKEY_RDB_TYPE_HASH_2,
    }
}

/// A file's index and a value's offset, packed.
fn loc(file: usize, offset: usize) -> u64 {
    ((file as u64) << 40) | (offset as u64 & ((1 << 40) - 1))
}

fn unloc(l: u64) -> (usize, usize) {
    ((l >> 40) as usize, (l & ((1 << 40) - 1)) as usize)
}

/// A batch's entries, tagged by partition, and what it saw.
#[derive(Default)]
pub struct Part {
    pub tagged: Vec<u8>,
    pub expired: u64,
    pub expired_fields: u64,
    pub functions: Vec<Vec<u8>>,
    pub error: Option<rdb::Error>,
    /// The stored bytes' digest is not needed: every value of the comparison is decoded
    /// (no side read raw), so values are compared by their logical digests alone.
    pub logical_only: bool,
}

impl Part {
    /// A kept record (filters and expiry applied by the caller).
    fn keep(&mut self, rec: &Record<'_>, sum: Sum) {
        let key = rec.key.bytes();
        store::put_tagged(&mut self.tagged, &Entry { db: rec.db, key: &key, sum });
    }

    /// A record through the filters and expiry into the part.
    fn record(&mut self, mut rec: Record<'_>, filter: &Filter, vendor: rdb::Vendor, rules: StreamRules, at: u64) {
        match take_record(&mut rec, filter) {
            Taken::Skipped => {}
            Taken::Expired(f) => {
                self.expired += 1;
                self.expired_fields += f;
            }
            Taken::Kept(f) => {
                self.expired_fields += f;
                let sum = sum_of(&rec, vendor, rules, at, !self.logical_only);
                self.keep(&rec, sum);
            }
        }
    }
}

/// How a side's files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Every value decoded and digested logically.
    Decoded,
    /// Files of one RDB version on both sides: every record raw, the stored bytes'
    /// digest only (but for hashes with field TTLs); values whose bytes differ are
    /// decoded after the join.
    Raw,
    /// Files of different RDB versions of one vendor: strings (RDB type 0, stored alike
    /// by every version) raw, everything else decoded.
    RawStrings,
}

/// The workers' half over snapshots.
struct DigestMap<'j> {
    filter: &'j Filter,
    rules: StreamRules,
    functions: bool,
    reading: Reading,
}

impl<'d> Map<'d> for DigestMap<'_> {
    type Part = Part;

    fn snapshot(&self, batch: &Batch<'d, '_>) -> Part {
        // Decoded values are compared by their logical digests alone unless the other
        // side may have read the same key raw.
        let mut part = Part { logical_only: self.reading != Reading::Raw, ..Part::default() };
        let data = batch.data();
        let vendor = batch.header.vendor;
        let offset = |b: &[u8]| loc(batch.file, b.as_ptr() as usize - data.as_ptr() as usize);
        // A string read raw is not expanded: damage in a compressed one is found by the
        // file's CRC-64, verified at its end, when it has one (RDB 5 on, not disabled:
        // `rdb.c`, `rdbLoadRioWithLoadingCtx`, the checksum after RDB_OPCODE_EOF; read
        // here as the file's last 8 bytes).
        let crc_covers = batch.header.version >= 5 && data.len() >= 8 && data[data.len() - 8..] != [0u8; 8];
        let each = |item: Item<'d>, _| {
            match item {
                Item::Record(rec) => {
                    let at = offset(rec.raw_value);
                    part.record(rec, self.filter, vendor, self.rules, at);
                }
                Item::Raw(r) => {
                    let at = offset(r.raw_value);
                    let t = rdb::value::value_type_of(vendor, r.rdb_type).unwrap_or(ValueType::Module);
                    if !self.filter.selects_parts(r.db, t, &r.key) {
                        return Ok(());
                    }
                    let decode = match self.reading {
                        Reading::Raw => has_field_ttls(vendor, r.rdb_type),
                        _ => r.rdb_type != rdb::RDB_TYPE_STRING,
                    };
                    if decode {
                        // Over the whole file, so that an error gives the file's offset.
                        let mut cur = rdb::cursor::Cursor::new(data);
                        cur.skip((r.raw_value.as_ptr() as usize - data.as_ptr() as usize) as u64, "a value")?;
                        cur.expand_strings(true);
                        let value = rdb::value::read_value(&mut cur, vendor, r.rdb_type, true)
                            .map_err(|e| e.with_key(&r.key.bytes()))?;
                        if let Some(value) = value {
                            let rec = Record {
                                db: r.db,
                                key: r.key,
                                expire_at_ms: r.expire_at_ms,
                                idle_s: None,
                                freq: None,
                                rdb_type: r.rdb_type,
                                value,
                                raw_value: r.raw_value,
                                key_meta: None,
                            };
                            part.record(rec, self.filter, vendor, self.rules, at);
                        }
                        return Ok(());
                    }
                    if !self.filter.keep_expired
                        && r.expire_at_ms.is_some_and(|t| crate::expiry::passed(t, self.filter.now_ms))
                    {
                        part.expired += 1;
                        return Ok(());
                    }
                    if self.reading == Reading::RawStrings && !crc_covers {
                        // With no checksum to find damage, checked as a decoding read
                        // checks it (a compressed string validated, not expanded).
                        let mut cur = rdb::cursor::Cursor::new(data);
                        cur.skip((r.raw_value.as_ptr() as usize - data.as_ptr() as usize) as u64, "a value")?;
                        rdb::string::read_str(&mut cur).map_err(|e| e.with_key(&r.key.bytes()))?;
                    }
                    let key = r.key.bytes();
                    let sum = Sum {
                        kind: kind_index(t),
                        rdb_type: r.rdb_type,
                        logical: None,
                        raw: digest::raw(vendor, r.rdb_type, r.raw_value),
                        expire_at_ms: r.expire_at_ms,
                        loc: at,
                    };
                    store::put_tagged(&mut part.tagged, &Entry { db: r.db, key: &key, sum });
                }
                Item::Function(f) if self.functions => part.functions.push(function_code(&f)),
                _ => {}
            }
            Ok(())
        };
        // Every string of a decoded record is digested, its bytes read: compressed ones
        // are expanded once, as they are read, rather than checked then expanded.
        let r = match self.reading {
            Reading::Decoded => batch.decode_expanded(each),
            Reading::Raw => batch.decode_raw(each),
            Reading::RawStrings => batch.decode_strings_raw(each),
        };
        part.error = r.err();
        // Grouped by partition here, on the worker, so that the joining thread appends
        // each partition's share of the batch at once.
        part.tagged = store::grouped(&part.tagged);
        part
    }
}

/// A library's code (a 7.0-rc single function as its name and code).
fn function_code(f: &Function<'_>) -> Vec<u8> {
    match f {
        Function::Library { code } => code.bytes().into_owned(),
        Function::PreGa { name, code, .. } => [name.bytes().as_ref(), b"\n", code.bytes().as_ref()].concat(),
    }
}

/// The joining half over snapshots.
struct DigestSink<'s> {
    store: &'s mut Store,
    side: usize,
    summary: &'s mut Summary,
    functions: &'s mut Vec<Vec<u8>>,
    error: Option<DiffError>,
    name: String,
}

impl DigestSink<'_> {
    fn refuse_log(&mut self, input: &Input) -> Flow {
        self.error = Some(DiffError::Usage {
            name: input.name.clone(),
            msg: "holds AOF commands: diff compares snapshots and servers; load the AOF into a server \
                  (replay) and compare that server (redis://host:port)"
                .into(),
        });
        Flow::Stop
    }
}

impl<'d> Sink<'d, Part> for DigestSink<'_> {
    fn begin(&mut self, _file: usize, input: &'d Input) -> Flow {
        self.name = input.name.clone();
        if !input.is_snapshot() {
            return self.refuse_log(input);
        }
        Flow::Continue
    }

    /// Commands after a snapshot (an RDB-preamble AOF) are found where the read of the
    /// snapshot ends, by the skim that cuts it into batches, rather than by a skim of
    /// the whole file of its own before reading starts.
    fn log_begin(&mut self, _file: usize, input: &'d Input, _base: usize) -> Flow {
        self.refuse_log(input)
    }

    fn part(&mut self, part: Part) -> Flow {
        if let Err(e) = self.store.take(&part.tagged) {
            self.error = Some(DiffError::Io(e));
            return Flow::Stop;
        }
        self.summary.expired[self.side] += part.expired;
        self.summary.expired_fields[self.side] += part.expired_fields;
        self.functions.extend(part.functions);
        if let Some(e) = part.error {
            self.error = Some(InputError::Snapshot { name: self.name.clone(), error: e }.into());
            return Flow::Stop;
        }
        Flow::Continue
    }

    fn end(&mut self, _file: usize, _input: &'d Input, how: Result<LogEnd, InputError>) -> Flow {
        if let Err(e) = how {
            self.error.get_or_insert(e.into());
            return Flow::Stop;
        }
        Flow::Continue
    }
}

/// A side, open.
pub enum Side {
    Files {
        inputs: Inputs,
        headers: Vec<Option<Header>>,
    },
    Live(crate::live::LiveSpec),
    /// A whole Redis Cluster, found from one node: every master read as a live server.
    Cluster {
        masters: Vec<crate::live::LiveSpec>,
        topology: crate::net::cluster::Topology,
    },
}

/// A key's value read again, for the detail and the patch.
pub struct Fetched<'d> {
    pub db: u64,
    pub key: Vec<u8>,
    pub rdb_type: u8,
    /// The value's bytes (after the key in a file; after the type byte in a DUMP payload).
    pub body: std::borrow::Cow<'d, [u8]>,
    pub expire_at_ms: Option<i64>,
    pub vendor: rdb::Vendor,
    /// The RDB version the bytes are of.
    pub version: u32,
}

impl Fetched<'_> {
    /// The key as a client reads it now (`None`: expired, empty or no longer selected).
    pub fn record(&self, filter: &Filter) -> Option<Record<'_>> {
        let mut cur = rdb::cursor::Cursor::new(&self.body);
        let value = rdb::value::read_value(&mut cur, self.vendor, self.rdb_type, true).ok()??;
        let mut rec = Record {
            db: self.db,
            key: Str::Borrowed(&self.key),
            expire_at_ms: self.expire_at_ms,
            idle_s: None,
            freq: None,
            rdb_type: self.rdb_type,
            value,
            raw_value: &self.body,
            key_meta: None,
        };
        match take_record(&mut rec, filter) {
            Taken::Kept(_) => Some(rec),
            _ => None,
        }
    }

    /// What it says now (`None`: expired, empty or no longer selected).
    pub fn sum(&self, filter: &Filter, rules: StreamRules, loc: u64) -> Option<Sum> {
        let rec = self.record(filter)?;
        Some(sum_of(&rec, self.vendor, rules, loc, true))
    }
}

impl Side {
    fn open(spec: &SideSpec) -> Result<Side, DiffError> {
        match spec {
            SideSpec::Files(s) => {
                let inputs = Inputs::open(s)?;
                let headers = inputs.files.iter().map(|f| rdb::parse_header(f.data()).ok()).collect();
                Ok(Side::Files { inputs, headers })
            }
            SideSpec::Live(l) => {
                // Connect and log in now: a wrong password stops the job before anything
                // is read from the other side.
                crate::live::probe(l)?;
                match cluster_of(l)? {
                    Some(side) => Ok(side),
                    None => Ok(Side::Live(l.clone())),
                }
            }
        }
    }

    fn is_live(&self) -> bool {
        matches!(self, Side::Live(_) | Side::Cluster { .. })
    }

    /// The (vendor, RDB version) of every file, when the side is files.
    fn versions(&self) -> Option<Vec<(rdb::Vendor, u32)>> {
        match self {
            Side::Files { headers, .. } => headers.iter().map(|h| h.map(|h| (h.vendor, h.version))).collect(),
            Side::Live(_) | Side::Cluster { .. } => None,
        }
    }

    /// Every selected key into `store`.
    fn digest(
        &self,
        job: &Job,
        reading: Reading,
        side: usize,
        store: &mut Store,
        summary: &mut Summary,
        functions: &mut Vec<Vec<u8>>,
    ) -> Result<(), DiffError> {
        let with_functions = job.filter.selects_everything();
        match self {
            Side::Files { inputs, .. } => {
                let map = DigestMap { filter: &job.filter, rules: job.rules, functions: with_functions, reading };
                let mut sink = DigestSink { store, side, summary, functions, error: None, name: String::new() };
                let opts = crate::input::Options {
                    plan: job.plan,
                    from: Default::default(),
                    reader: crate::input::Reader::Check,
                };
                crate::input::run(inputs, &opts, &map, &mut sink);
                match sink.error {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            }
            Side::Live(spec) => {
                digest_live(job, spec, side, store, summary)?;
                if with_functions {
                    functions.extend(crate::live::functions(spec)?);
                }
                Ok(())
            }
            Side::Cluster { masters, .. } => {
                for m in masters {
                    digest_live(job, m, side, store, summary)?;
                }
                // Functions are on every master (FUNCTION LOAD goes to each): one says.
                if with_functions {
                    if let Some(m) = masters.first() {
                        functions.extend(crate::live::functions(m)?);
                    }
                }
                Ok(())
            }
        }
    }

    /// The values of `keys` of db `db`, read again (`None`: gone).
    fn fetch(&self, db: u64, keys: &[(&[u8], Sum)]) -> Result<Vec<Option<Fetched<'_>>>, DiffError> {
        match self {
            Side::Files { inputs, headers } => {
                Ok(keys.iter().map(|&(key, sum)| file_value(inputs, headers, db, key, sum)).collect())
            }
            Side::Live(spec) => {
                let names: Vec<Vec<u8>> = keys.iter().map(|k| k.0.to_vec()).collect();
                let got = crate::live::fetch(spec, db, &names)?;
                Ok(got.iter().map(live_value).collect())
            }
            Side::Cluster { masters, topology } => {
                // Each key asked of the master serving its slot, the answers put back in
                // the order asked.
                let mut by_master: Vec<Vec<usize>> = vec![Vec::new(); masters.len()];
                for (i, (key, _)) in keys.iter().enumerate() {
                    if let Some(m) = topology.master_of(crate::aof::keys::slot(key)) {
                        by_master[m].push(i);
                    }
                }
                let mut out: Vec<Option<Fetched<'_>>> = (0..keys.len()).map(|_| None).collect();
                for (m, idx) in by_master.iter().enumerate().filter(|(_, idx)| !idx.is_empty()) {
                    let names: Vec<Vec<u8>> = idx.iter().map(|&i| keys[i].0.to_vec()).collect();
                    let got = crate::live::fetch(&masters[m], db, &names)?;
                    for (&i, k) in idx.iter().zip(&got) {
                        out[i] = live_value(k);
                    }
                }
                Ok(out)
            }
        }
    }

    /// The entries of `keys` of db `db` as they are now (a file's do not change).
    fn again(&self, job: &Job, db: u64, keys: &[(&[u8], Option<Sum>)]) -> Result<Vec<Option<Sum>>, DiffError> {
        if !self.is_live() {
            return Ok(keys.iter().map(|k| k.1).collect());
        }
        let blank = Sum { kind: 0, rdb_type: 0, logical: None, raw: Digest::default(), expire_at_ms: None, loc: 0 };
        let ask: Vec<(&[u8], Sum)> = keys.iter().map(|&(k, s)| (k, s.unwrap_or(blank))).collect();
        let got = self.fetch(db, &ask)?;
        Ok(got.iter().map(|f| f.as_ref().and_then(|f| f.sum(&job.filter, job.rules, 0))).collect())
    }
}

/// A file's value at an entry's place.
fn file_value<'d>(
    inputs: &'d Inputs,
    headers: &[Option<Header>],
    db: u64,
    key: &[u8],
    sum: Sum,
) -> Option<Fetched<'d>> {
    let (file, at) = unloc(sum.loc);
    let data = inputs.files.get(file)?.data();
    let header = (*headers.get(file)?)?;
    let mut cur = rdb::cursor::Cursor::new(data);
    cur.skip(at as u64, "value").ok()?;
    crate::rdb::skim::skip_value(&mut cur, header.vendor, sum.rdb_type).ok()?;
    Some(Fetched {
        db,
        key: key.to_vec(),
        rdb_type: sum.rdb_type,
        body: std::borrow::Cow::Borrowed(&data[at..cur.pos()]),
        expire_at_ms: sum.expire_at_ms,
        vendor: header.vendor,
        version: header.version,
    })
}

/// Every key of one live server into `store`.
fn digest_live(
    job: &Job,
    spec: &crate::live::LiveSpec,
    side: usize,
    store: &mut Store,
    summary: &mut Summary,
) -> Result<(), DiffError> {
    let spec = live_spec(spec, &job.filter);
    let server = format!("{}:{}", spec.endpoint.host, spec.endpoint.port);
    let mut error: Option<DiffError> = None;
    crate::live::scan(&spec, |batch| {
        use rayon::prelude::*;
        let parts: Vec<Result<Part, DiffError>> = batch
            .par_chunks(64)
            .map(|keys| {
                // A server's values are always decoded, and a side read raw is files only.
                let mut part = Part { logical_only: true, ..Part::default() };
                for k in keys {
                    live_key(k, &job.filter, job.rules, &mut part).map_err(|error| DiffError::Payload {
                        server: server.clone(),
                        key: rdb::escape_key(&k.key),
                        error,
                    })?;
                }
                Ok(part)
            })
            .collect();
        for part in parts {
            let r = part.and_then(|p| {
                store.take(&p.tagged)?;
                summary.expired[side] += p.expired;
                summary.expired_fields[side] += p.expired_fields;
                Ok(())
            });
            if let Err(e) = r {
                error = Some(e);
                return false;
            }
        }
        true
    })?;
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The whole cluster a node is part of, when it is a cluster node (`None`: a standalone
/// server, or a user not allowed `CLUSTER`, read as one server). Its masters are read as
/// live servers, db 0 (a cluster has no other).
fn cluster_of(spec: &crate::live::LiveSpec) -> Result<Option<Side>, DiffError> {
    use crate::net::cluster::Topology;
    let found = Topology::refresh([&spec.endpoint], spec.timeout.max(std::time::Duration::from_secs(5)));
    let topology = match found {
        Ok(t) => t,
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("cluster support disabled") || msg.contains("NOPERM") || msg.contains("unknown command") {
                return Ok(None);
            }
            return Err(DiffError::Usage {
                name: format!("{}:{}", spec.endpoint.host, spec.endpoint.port),
                msg: format!("a cluster node whose cluster cannot be read: {msg}"),
            });
        }
    };
    let masters = topology
        .masters
        .iter()
        .map(|m| {
            let mut s = spec.clone();
            s.endpoint = m.node.endpoint(&spec.endpoint);
            s.dbs = Some(vec![0]);
            s
        })
        .collect();
    Ok(Some(Side::Cluster { masters, topology }))
}

/// The server's read, narrowed by the filters where the server can apply them (a single
/// `--match` pattern as SCAN's MATCH; `--db`).
fn live_spec(spec: &crate::live::LiveSpec, filter: &Filter) -> crate::live::LiveSpec {
    let mut s = spec.clone();
    if !filter.dbs.is_empty() {
        s.dbs = Some(match &spec.dbs {
            Some(d) => d.iter().copied().filter(|db| filter.dbs.contains(db)).collect(),
            None => filter.dbs.clone(),
        });
    }
    if let [g] = filter.globs.as_slice() {
        s.pattern = Some(g.pattern().to_vec());
    }
    s
}

/// The vendor and RDB version of a DUMP payload (its footer).
fn payload_version(payload: &[u8]) -> (rdb::Vendor, u32) {
    let n = payload.len();
    let v = if n >= 10 { u16::from_le_bytes([payload[n - 10], payload[n - 9]]) as u32 } else { 0 };
    let vendor = if v == rdb::VALKEY_RDB_VERSION { rdb::Vendor::Valkey } else { rdb::Vendor::Redis };
    (vendor, v)
}

/// A server's key into `part`, through the filters and expiry.
fn live_key(k: &crate::live::LiveKey, filter: &Filter, rules: StreamRules, part: &mut Part) -> Result<(), rdb::Error> {
    let Some(payload) = &k.payload else { return Ok(()) };
    let (vendor, _) = payload_version(payload);
    if let Some(rec) = k.record()? {
        part.record(rec, filter, vendor, rules, 0);
    }
    Ok(())
}

/// A server's key, for the detail and the patch (`None`: gone, or a payload that does not
/// decode, which the first read would have reported).
fn live_value(k: &crate::live::LiveKey) -> Option<Fetched<'static>> {
    let payload = k.payload.as_ref()?;
    let (vendor, version) = payload_version(payload);
    let rec = k.record().ok()??;
    Some(Fetched {
        db: k.db,
        key: k.key.clone(),
        rdb_type: rec.rdb_type,
        body: std::borrow::Cow::Owned(rec.raw_value.to_vec()),
        expire_at_ms: k.expire_at_ms,
        vendor,
        version,
    })
}

fn ttl_equal(a: Option<i64>, b: Option<i64>, tolerance: i64) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x.abs_diff(y) <= tolerance.max(0) as u64,
        _ => false,
    }
}

/// Whether two sides' values of a key are equal: by their logical digests, or by their
/// stored bytes where those are equal (`None`: not known until a logical digest is
/// worked out).
fn values_equal(a: &Sum, b: &Sum) -> Option<bool> {
    match (a.logical, b.logical) {
        (Some(x), Some(y)) => Some(x == y),
        _ if a.rdb_type == b.rdb_type && a.raw == b.raw => Some(true),
        _ => None,
    }
}

/// A key that differs: what each side has.
#[derive(Debug, Clone)]
pub struct Found {
    pub db: u64,
    pub key: Vec<u8>,
    pub a: Option<Sum>,
    pub b: Option<Sum>,
}

/// How a key differs.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub kind: Kind,
    pub value: bool,
    pub ttl: bool,
}

/// Compares what two sides have of one key (`None`: the same). Values not settled by
/// their stored bytes must have their logical digests.
pub fn classify(a: Option<Sum>, b: Option<Sum>, tolerance: i64) -> Option<Verdict> {
    match (a, b) {
        (Some(x), Some(y)) => {
            let ttl = !ttl_equal(x.expire_at_ms, y.expire_at_ms, tolerance);
            if x.kind != y.kind {
                return Some(Verdict { kind: Kind::Type, value: true, ttl });
            }
            let value = !values_equal(&x, &y).unwrap_or(false);
            let kind = match (value, ttl) {
                (false, false) => return None,
                (true, _) => Kind::Value,
                (false, true) => Kind::Ttl,
            };
            Some(Verdict { kind, value, ttl })
        }
        (None, Some(_)) => Some(Verdict { kind: Kind::Added, value: false, ttl: false }),
        (Some(_), None) => Some(Verdict { kind: Kind::Removed, value: false, ttl: false }),
        (None, None) => None,
    }
}

/// A key that differs: db, key, how.
pub type Differing = (u64, Vec<u8>, Kind);

/// Only `keys` (db, key), read from both sides (live ones read now) and compared: a
/// check of the keys a migration touched, without reading the rest. The summary, and the
/// keys that differ with how.
pub fn compare_keys(job: &Job, keys: &[(u64, Vec<u8>)]) -> Result<(Summary, Vec<Differing>), DiffError> {
    let a = Side::open(&job.a)?;
    let b = Side::open(&job.b)?;
    let mut sorted: Vec<&(u64, Vec<u8>)> = keys.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut summary = Summary::default();
    let mut differ = Vec::new();
    for group in sorted.chunk_by(|x, y| x.0 == y.0) {
        let db = group[0].0;
        for chunk in group.chunks(1000) {
            let ask: Vec<(&[u8], Option<Sum>)> = chunk.iter().map(|k| (k.1.as_slice(), None)).collect();
            let na = a.again(job, db, &ask)?;
            let nb = b.again(job, db, &ask)?;
            for ((k, x), y) in chunk.iter().zip(na).zip(nb) {
                if x.is_none() && y.is_none() {
                    continue;
                }
                summary.compared += 1;
                match classify(x, y, job.ttl_tolerance_ms) {
                    None => summary.same += 1,
                    Some(v) => {
                        summary.count(v.kind);
                        differ.push((db, k.1.clone(), v.kind));
                    }
                }
            }
        }
    }
    Ok((summary, differ))
}

/// Runs a diff: the differences to `out`, the patch where the job says; `progress` hears
/// what is being done.
pub fn run(job: &Job, out: &mut dyn Write, progress: &mut dyn FnMut(&str)) -> Result<Summary, DiffError> {
    let a = Side::open(&job.a)?;
    let b = Side::open(&job.b)?;
    // Files of one RDB version on both sides store equal values alike (but for the
    // choices a server makes by its thresholds): they are read raw, and only values whose
    // stored bytes differ are decoded. Files of different versions of one vendor still
    // store strings alike (type 0 is read the same by every version, `rdb.c`,
    // `rdbGenericLoadStringObject`): those are read raw, the rest decoded.
    let reading = match (a.versions(), b.versions()) {
        _ if job.logical => Reading::Decoded,
        (Some(x), Some(y)) => {
            let mut all = x.iter().chain(&y);
            let first = all.clone().next().copied();
            match first {
                Some(f) if all.clone().all(|v| *v == f) => Reading::Raw,
                Some(f) if all.all(|v| v.0 == f.0) => Reading::RawStrings,
                _ => Reading::Decoded,
            }
        }
        _ => Reading::Decoded,
    };
    let tmp = TempDir::new(&job.temp_dir)
        .map_err(|error| DiffError::Temp { dir: job.temp_dir.display().to_string(), error })?;
    let mut summary = Summary::default();
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    let mut sa = Store::new("a", job.side_budget, tmp.path());
    let mut sb = Store::new("b", job.side_budget, tmp.path());
    progress(&format!("reading A: {} and B: {}", job.a.describe(), job.b.describe()));
    // Both sides at once: each has a thread of its own that walks its input (the skim
    // that cuts a file into batches, the SCAN of a server) and joins its parts, and the
    // workers serve both.
    let (mut ca, mut cb) = (Summary::default(), Summary::default());
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| a.digest(job, reading, 0, &mut sa, &mut ca, &mut fa));
        let rb = b.digest(job, reading, 1, &mut sb, &mut cb, &mut fb);
        (ta.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), rb)
    });
    ra?;
    rb?;
    for (side, c) in [(0, &ca), (1, &cb)] {
        summary.expired[side] += c.expired[side];
        summary.expired_fields[side] += c.expired_fields[side];
    }
    summary.spilled_bytes = sa.spilled_bytes + sb.spilled_bytes;

    let mut w = detail::Writer::new(job, out)?;
    let rounds = (a.is_live() || b.is_live()) && job.rounds > 1;
    let mut pending: Vec<Found> = Vec::new();
    progress("comparing");
    // Partitions are joined a group at a time on the workers (each on its own), and
    // their differences written in partition order.
    let group = (job.plan.threads * 2).clamp(1, PARTITIONS);
    for first in (0..PARTITIONS).step_by(group) {
        let mut loaded = Vec::with_capacity(group);
        for p in first..(first + group).min(PARTITIONS) {
            loaded.push((sa.partition(p)?, sb.partition(p)?));
        }
        let joined: Vec<(Vec<Found>, Summary)> = {
            use rayon::prelude::*;
            loaded
                .par_iter()
                .map(|(pa, pb)| {
                    let mut counts = Summary::default();
                    let mut found = join(job, [&a, &b], pa, pb, &mut counts)?;
                    found.sort_by(|x, y| (x.db, &x.key).cmp(&(y.db, &y.key)));
                    Ok((found, counts))
                })
                .collect::<Result<_, DiffError>>()?
        };
        drop(loaded);
        for (mut found, counts) in joined {
            summary.compared += counts.compared;
            summary.same += counts.same;
            summary.decoded_late += counts.decoded_late;
            summary.duplicates[0] += counts.duplicates[0];
            summary.duplicates[1] += counts.duplicates[1];
            if rounds {
                pending.append(&mut found);
            } else {
                emit(job, &a, &b, &found, &mut w, &mut summary)?;
            }
        }
    }
    if rounds {
        let (real, changing) = settle(job, &a, &b, pending, &mut summary, progress)?;
        emit(job, &a, &b, &real, &mut w, &mut summary)?;
        for f in &changing {
            w.changing(f)?;
        }
    }
    detail::functions(&fa, &fb, &mut w, &mut summary)?;
    w.finish(&summary)?;
    Ok(summary)
}

/// Both sides' entries of a partition, by key: `[A's, B's]`.
type Index<'b> = HashMap<(u64, &'b [u8]), [Option<Sum>; 2], store::KeyHash>;

/// One partition of each side joined: the keys that differ. Where stored bytes differ
/// and a side has no logical digest yet, it is worked out (in parallel) first.
fn join(job: &Job, sides: [&Side; 2], pa: &[u8], pb: &[u8], summary: &mut Summary) -> Result<Vec<Found>, DiffError> {
    // One map of both sides' entries by key (a key found twice on one side: the later
    // one stands). Entries take about 40 bytes or more (a short key, one digest, where
    // the value is): room for them all, no rehashing.
    let mut idx: Index<'_> = Index::with_capacity_and_hasher((pa.len() + pb.len()) / 40, Default::default());
    for (s, part) in [pa, pb].into_iter().enumerate() {
        for e in Entry::all(part) {
            let both = idx.entry((e.db, e.key)).or_default();
            if both[s].replace(e.sum).is_some() {
                summary.duplicates[s] += 1;
            }
        }
    }
    // Logical digests to work out: (side, db, key, what it has).
    let mut todo: Vec<(usize, u64, &[u8], Sum)> = Vec::new();
    for (k, both) in &idx {
        if let [Some(a), Some(b)] = both {
            if a.kind == b.kind && values_equal(a, b).is_none() {
                for (s, sum) in [(0, a), (1, b)] {
                    if sum.logical.is_none() {
                        todo.push((s, k.0, k.1, *sum));
                    }
                }
            }
        }
    }
    summary.decoded_late += todo.len() as u64;
    if !todo.is_empty() {
        use rayon::prelude::*;
        let done: Vec<Option<Sum>> = todo
            .par_iter()
            .map(|&(s, db, key, sum)| match sides[s] {
                Side::Files { inputs, headers } => late_sum(job, inputs, headers, db, key, sum),
                // A server's entries always have their logical digest.
                Side::Live(_) | Side::Cluster { .. } => Ok(Some(sum)),
            })
            .collect::<Result<_, _>>()?;
        for ((s, db, key, _), now) in todo.into_iter().zip(done) {
            // `None`: empty once decoded, which a server would not hold.
            if let Some(both) = idx.get_mut(&(db, key)) {
                both[s] = now;
            }
        }
    }
    let mut found = Vec::new();
    for (k, [a, b]) in idx {
        if a.is_none() && b.is_none() {
            continue;
        }
        summary.compared += 1;
        if classify(a, b, job.ttl_tolerance_ms).is_some() {
            found.push(Found { db: k.0, key: k.1.to_vec(), a, b });
        } else {
            summary.same += 1;
        }
    }
    Ok(found)
}

/// What a file's value says, decoded after the join because its stored bytes differed
/// from the other side's (`None`: empty once decoded, expired or no longer selected). A
/// value that does not decode is the file's damage, reported at its offset: read raw,
/// it had been stepped over by its framing alone.
fn late_sum(
    job: &Job,
    inputs: &Inputs,
    headers: &[Option<Header>],
    db: u64,
    key: &[u8],
    sum: Sum,
) -> Result<Option<Sum>, DiffError> {
    let (file, at) = unloc(sum.loc);
    let (Some(input), Some(Some(header))) = (inputs.files.get(file), headers.get(file)) else { return Ok(None) };
    let data = input.data();
    let damage = |error: rdb::Error| DiffError::from(InputError::Snapshot { name: input.name.clone(), error });
    let mut cur = rdb::cursor::Cursor::new(data);
    cur.skip(at as u64, "a value").map_err(damage)?;
    let value =
        rdb::value::read_value(&mut cur, header.vendor, sum.rdb_type, true).map_err(|e| damage(e.with_key(key)))?;
    let Some(value) = value else { return Ok(None) };
    let mut rec = Record {
        db,
        key: Str::Borrowed(key),
        expire_at_ms: sum.expire_at_ms,
        idle_s: None,
        freq: None,
        rdb_type: sum.rdb_type,
        value,
        raw_value: &data[at..cur.pos()],
        key_meta: None,
    };
    match take_record(&mut rec, &job.filter) {
        Taken::Kept(_) => Ok(Some(sum_of(&rec, header.vendor, job.rules, sum.loc, true))),
        _ => Ok(None),
    }
}

/// Rounds: after `interval`, the differing keys are read again from the live sides. A
/// key now equal was being written to; one whose value moved between rounds kept
/// changing; the rest are differences. Returns (differences, keys that kept changing).
fn settle(
    job: &Job,
    a: &Side,
    b: &Side,
    mut pending: Vec<Found>,
    summary: &mut Summary,
    progress: &mut dyn FnMut(&str),
) -> Result<(Vec<Found>, Vec<Found>), DiffError> {
    let mut changing = Vec::new();
    for round in 2..=job.rounds {
        if pending.is_empty() {
            break;
        }
        progress(&format!("round {round}: checking the {} keys that differ again", pending.len()));
        std::thread::sleep(job.interval);
        let mut next = Vec::new();
        for group in pending.chunk_by(|x, y| x.db == y.db) {
            let db = group[0].db;
            let now_a = a.again(job, db, &group.iter().map(|f| (f.key.as_slice(), f.a)).collect::<Vec<_>>())?;
            let now_b = b.again(job, db, &group.iter().map(|f| (f.key.as_slice(), f.b)).collect::<Vec<_>>())?;
            for ((f, na), nb) in group.iter().zip(now_a).zip(now_b) {
                let moved = !same_sum(f.a, na, job.ttl_tolerance_ms) || !same_sum(f.b, nb, job.ttl_tolerance_ms);
                let f = Found { db, key: f.key.clone(), a: na, b: nb };
                match (classify(na, nb, job.ttl_tolerance_ms).is_some(), moved) {
                    // Equal now, or moved since: written to while the check ran.
                    (false, _) | (true, true) => changing.push(f),
                    (true, false) => next.push(f),
                }
            }
        }
        pending = next;
    }
    summary.changing = changing.len() as u64;
    Ok((pending, changing))
}

/// One side's view of a key did not move between rounds.
fn same_sum(x: Option<Sum>, y: Option<Sum>, tolerance: i64) -> bool {
    match (x, y) {
        (Some(x), Some(y)) => {
            x.kind == y.kind
                && values_equal(&x, &y).unwrap_or(false)
                && ttl_equal(x.expire_at_ms, y.expire_at_ms, tolerance)
        }
        (None, None) => true,
        _ => false,
    }
}

/// Reads the differing keys' values from both sides and writes their detail and patch.
fn emit(
    job: &Job,
    a: &Side,
    b: &Side,
    found: &[Found],
    w: &mut detail::Writer<'_>,
    summary: &mut Summary,
) -> Result<(), DiffError> {
    for group in found.chunk_by(|x, y| x.db == y.db) {
        let db = group[0].db;
        // Every found key differs; one that would not is left out rather than trusted.
        let group: Vec<(&Found, Verdict)> =
            group.iter().filter_map(|f| classify(f.a, f.b, job.ttl_tolerance_ms).map(|v| (f, v))).collect();
        let verdicts: Vec<Verdict> = group.iter().map(|(_, v)| *v).collect();
        let group: Vec<&Found> = group.into_iter().map(|(f, _)| f).collect();
        // A's value where the value or type differs; B's also to rebuild an added key.
        let patching = w.patching();
        let want_a = |v: &Verdict| v.value;
        let want_b = |v: &Verdict| v.value || (v.kind == Kind::Added && patching);
        let ask = |want: &dyn Fn(&Verdict) -> bool, side: fn(&Found) -> Option<Sum>| -> Vec<(&[u8], Sum)> {
            group
                .iter()
                .zip(&verdicts)
                .filter(|(_, v)| want(v))
                .filter_map(|(f, _)| side(f).map(|s| (f.key.as_slice(), s)))
                .collect()
        };
        let mut va = a.fetch(db, &ask(&want_a, |f| f.a))?.into_iter();
        let mut vb = b.fetch(db, &ask(&want_b, |f| f.b))?.into_iter();
        for (f, v) in group.iter().zip(&verdicts) {
            let fa = if want_a(v) && f.a.is_some() { va.next().flatten() } else { None };
            let fb = if want_b(v) && f.b.is_some() { vb.next().flatten() } else { None };
            let ra = fa.as_ref().and_then(|x| x.record(&job.filter));
            let rb = fb.as_ref().and_then(|x| x.record(&job.filter));
            w.key(job, f, *v, ra.as_ref(), rb.as_ref(), fb.as_ref(), summary)?;
        }
    }
    Ok(())
}
