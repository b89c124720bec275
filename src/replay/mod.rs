//! `replay`: the ordered stream of a snapshot and its command log, loaded into a
//! destination (standalone Redis or twemproxy) over N pipelined connections
//! (DESIGN.md, step 4).
//!
//! Set-up happens before the first write: the input is verified (checksum, structure, the
//! log's tail), the destination probed (SET/DUMP/DEL of a probe key: the DUMP footer is
//! its RDB version; `SELECT 0` tells Redis, which answers, from twemproxy, which closes the
//! connection), and what the destination cannot take is refused up front. Then snapshot
//! records are translated in parallel batches and each key's commands go to the connection
//! its slot picks, so per-key order holds; a log command whose keys span connections (or
//! cannot be known) is a barrier: every connection drains, it runs alone, the rest follows.
//! Every reply is matched to its command; refusals are counted and reported.

pub mod checkpoint;
pub mod conn;
pub mod proxy;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use conn::{Chunk, ConnReport, Fatal, Msg, Worker, WorkerConfig, CHUNK_BYTES};
pub use conn::{Endpoint, Errors, Link, LinkError, Position};

use crate::aof::keys::{keys, slot, Keys};
use crate::aof::{self, Command, Unit};
use crate::filter::Filter;
use crate::pipeline::{self, decode_span, Plan};
use crate::rdb::{self, Item};
use crate::translate::{self, Mode, Stats, Translator, Version};
use crate::version::version_of_rdb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    Standalone,
    Twemproxy,
}

impl std::fmt::Display for DestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DestKind::Standalone => "standalone Redis",
            DestKind::Twemproxy => "twemproxy",
        })
    }
}

/// What to do with keys the destination already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExisting {
    /// The key ends equal to the source's.
    Replace,
    /// The key is left alone, and so are the log's commands on it.
    Skip,
    /// The key is refused and reported.
    Error,
}

/// A replay, fully decided (the CLI builds it from its arguments).
#[derive(Debug, Clone)]
pub struct Config {
    pub endpoint: Endpoint,
    /// `None`: 1 to standalone Redis (a single-threaded server does least work, and a
    /// 2-core box measured fastest, with one deep pipeline), 4 to twemproxy.
    pub connections: Option<usize>,
    /// Most commands unanswered per connection; `None`: 5000 to Redis, 1000 to twemproxy
    /// (deeper pipelines grow nutcracker: 131 MB at 1000, 596 MB at 5000).
    pub window: Option<usize>,
    pub window_bytes: usize,
    /// `None`: ask the destination.
    pub kind: Option<DestKind>,
    /// `None`: ask the destination (its DUMP version).
    pub target_version: Option<Version>,
    /// `None`: auto (RESTORE, with commands for what the destination's payload version
    /// cannot carry).
    pub mode: Option<Mode>,
    /// Translation settings (mode and target are filled in from the above).
    pub translate: translate::Config,
    pub filter: Filter,
    pub plan: Plan,
    pub db_map: BTreeMap<u64, u64>,
    pub on_existing: OnExisting,
    pub allow_flush: bool,
    pub precheck: bool,
    pub dry_run: bool,
    pub retry_for: Duration,
    pub timeout: Duration,
    /// Progress lines on stderr.
    pub progress: bool,
    /// Keep the resume point here; resume from it when it exists.
    pub checkpoint: Option<std::path::PathBuf>,
    /// `--until`: AOF commands after this point in time are left out.
    pub until: Option<aof::Until>,
}

/// One input file, mapped.
pub struct Input<'a> {
    pub name: String,
    pub data: &'a [u8],
    /// Only the last file of an AOF set may end inside a command.
    pub allow_truncated: bool,
}

/// Why a replay did not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the destination cannot take, found before writing.
    #[error("{0}")]
    Refused(String),
    #[error("{0}: {1}")]
    Input(String, String),
    #[error("{0}: {1}")]
    Destination(String, LinkError),
}

/// What the destination is.
#[derive(Debug, Clone)]
pub struct Probe {
    pub kind: DestKind,
    /// The RDB version of its DUMP payloads.
    pub rdb_version: Option<u32>,
    /// `redis_version` of INFO (asked only of a standalone server: INFO closes a
    /// twemproxy connection; Valkey reports the Redis version it is compatible with).
    pub version: Option<Version>,
}

impl Probe {
    /// The version to make commands and payloads for: the more precise of the two answers
    /// (RDB 9 was written from Redis 5.0 to 6.2).
    pub fn target(&self) -> Option<Version> {
        let from_dump = self.rdb_version.map(version_of_rdb);
        match (from_dump, self.version) {
            (Some(d), Some(v)) if v.rdb_version() == d.rdb_version() => Some(v.max(d)),
            (Some(d), _) => Some(d),
            (None, v) => v,
        }
    }
}

/// Asks the destination what it is. `write`: SET/DUMP/DEL a probe key for the payload
/// version (a dry run only PINGs).
pub fn probe(ep: &Endpoint, timeout: Duration, write: bool, kind: Option<DestKind>) -> Result<Probe, LinkError> {
    let mut link = Link::open(ep, timeout)?;
    match link.call(&[b"PING"])? {
        conn::Answer::Error(e) if e.starts_with("NOAUTH") => {
            return Err(LinkError::Auth(format!(
                "{e} (give the password with -dauth, --to or REDISMIGRATION_TARGET_PASSWORD)"
            )))
        }
        conn::Answer::Error(e) => return Err(LinkError::Protocol(format!("PING answered {e}"))),
        _ => {}
    }
    let mut rdb_version = None;
    if write {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let key = format!("redis-migration:probe:{}:{nanos}", std::process::id());
        let set = link.call(&[b"SET", key.as_bytes(), b"1"])?;
        if let conn::Answer::Error(e) = set {
            return Err(LinkError::Protocol(format!("SET of a probe key answered {e}")));
        }
        if let conn::Answer::Bulk(Some(p)) = link.call(&[b"DUMP", key.as_bytes()])? {
            if p.len() >= 10 {
                rdb_version = Some(u16::from_le_bytes([p[p.len() - 10], p[p.len() - 9]]) as u32);
            }
        }
        link.call(&[b"DEL", key.as_bytes()])?;
    }
    let kind = match kind {
        Some(k) => k,
        None => match link.call(&[b"SELECT", b"0"]) {
            Ok(conn::Answer::Simple(_)) => DestKind::Standalone,
            Ok(_) => DestKind::Twemproxy,
            Err(e) if e.is_connection() => DestKind::Twemproxy,
            Err(e) => return Err(e),
        },
    };
    let mut version = None;
    if kind == DestKind::Standalone {
        if let Ok(conn::Answer::Bulk(Some(info))) = link.call(&[b"INFO", b"server"]) {
            version = String::from_utf8_lossy(&info)
                .lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .and_then(Version::parse);
        }
    }
    link.close();
    Ok(Probe { kind, rdb_version, version })
}

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub destination: String,
    pub kind: Option<DestKind>,
    pub mode: Option<Mode>,
    pub target: Option<Version>,
    pub connections: usize,
    pub dry_run: bool,
    /// Translation counts (keys, commands, RESTOREs, refusals of the translator).
    pub stats: Stats,
    pub filtered: u64,
    pub empty: u64,
    pub skipped_existing: u64,
    /// Dry run: keys that would be created, and replaced.
    pub created: u64,
    pub replaced: u64,
    /// Log commands routed, barriers run, MULTI blocks unwrapped (twemproxy), log
    /// commands skipped because they touch a skipped key.
    pub log_commands: u64,
    pub barriers: u64,
    pub multi_unwrapped: u64,
    pub log_skipped: u64,
    /// What the filters did to AOF commands.
    pub log_filter: aof::select::Tally,
    /// What we refused to send, by reason.
    pub refused: Errors,
    /// Commands answered, bytes written, errors the destination answered.
    pub answered: u64,
    pub bytes: u64,
    pub errors: Errors,
    pub reconnects: u64,
    /// Commands and bytes a dry run would have sent.
    pub would_send: (u64, u64),
    pub input_bytes: u64,
    pub wall: Duration,
    pub warnings: Vec<String>,
    /// Why the replay stopped before its end.
    pub failure: Option<String>,
    /// Where a resumed replay started, and log commands it found already applied.
    pub resumed_at: Option<String>,
    pub already_applied: u64,
    /// `--until`, as it ended.
    pub until: Option<aof::Until>,
}

impl Report {
    /// Keys and commands not applied: refused by us or by the translator, module keys
    /// commands cannot carry, functions the destination cannot load.
    pub fn refused_total(&self) -> u64 {
        self.refused.total()
            + self.stats.refused
            + self.stats.skipped_modules
            + self.stats.functions_skipped
            + self.log_filter.doubtful()
    }

    /// 0 all applied, 1 ran to the end with rejected commands or refused keys, 2 stopped.
    pub fn exit_code(&self) -> i32 {
        if self.failure.is_some() {
            2
        } else if self.errors.total() > 0 || self.refused_total() > 0 {
            1
        } else {
            0
        }
    }

    pub fn text(&self) -> String {
        let mut o = Vec::new();
        let mode = match self.mode {
            Some(Mode::Restore) => "restore mode",
            Some(Mode::Commands) => "commands mode",
            None => "",
        };
        let target = self.target.map_or(String::new(), |v| format!(", payloads for Redis {v}+"));
        o.push(format!(
            "{} {} ({}, {mode}{target}, {} connections)",
            if self.dry_run { "dry run against" } else { "replayed into" },
            self.destination,
            self.kind.map_or("?".to_string(), |k| k.to_string()),
            self.connections
        ));
        if let Some(r) = &self.resumed_at {
            o.push(format!(
                "resumed from the checkpoint at {r}; {} AOF commands were already applied",
                self.already_applied
            ));
        }
        o.push(self.stats.report());
        if self.filtered + self.empty + self.skipped_existing > 0 {
            o.push(format!(
                "left out: {} keys by filters, {} empty collections, {} keys the destination had (--on-existing skip)",
                self.filtered, self.empty, self.skipped_existing
            ));
        }
        if self.log_commands + self.log_skipped + self.log_filter.filtered > 0 {
            o.push(format!(
                "AOF: {} commands ({} run alone as barriers, {} MULTI blocks unwrapped for twemproxy, {} skipped: they touch skipped keys, {} left out by filters)",
                self.log_commands, self.barriers, self.multi_unwrapped, self.log_skipped, self.log_filter.filtered
            ));
        }
        o.extend(self.log_filter.report());
        if self.dry_run {
            o.push(format!(
                "would send {} commands ({} bytes): {} keys created, {} replaced",
                self.would_send.0, self.would_send.1, self.created, self.replaced
            ));
        } else {
            let secs = self.wall.as_secs_f64().max(1e-9);
            o.push(format!(
                "sent {} commands, {:.1} MB in {:.2} s ({:.1} MB/s, {:.0} commands/s); {} reconnects",
                self.answered,
                self.bytes as f64 / 1e6,
                secs,
                self.bytes as f64 / 1e6 / secs,
                self.answered as f64 / secs,
                self.reconnects
            ));
        }
        let mut errors = |title: &str, e: &Errors| {
            for (kind, (n, examples)) in &e.by_kind {
                o.push(format!("{title} {kind}: {n}"));
                for ex in examples {
                    o.push(format!("  {ex}"));
                }
            }
        };
        errors("rejected by the destination,", &self.errors);
        errors("refused before sending,", &self.refused);
        if let Some(u) = &self.until {
            o.push(u.report());
        }
        for w in &self.warnings {
            o.push(format!("warning: {w}"));
        }
        if let Some(f) = &self.failure {
            o.push(format!("STOPPED: {f}"));
        }
        o.join("\n")
    }

    pub fn json(&self) -> serde_json::Value {
        let errors = |e: &Errors| {
            serde_json::Value::Object(
                e.by_kind
                    .iter()
                    .map(|(k, (n, ex))| (k.clone(), serde_json::json!({"count": n, "examples": ex})))
                    .collect(),
            )
        };
        let s = &self.stats;
        serde_json::json!({
            "destination": self.destination,
            "kind": self.kind.map(|k| match k { DestKind::Standalone => "standalone", DestKind::Twemproxy => "twemproxy" }),
            "mode": self.mode.map(|m| match m { Mode::Restore => "restore", Mode::Commands => "commands" }),
            "target_version": self.target.map(|v| v.to_string()),
            "connections": self.connections,
            "dry_run": self.dry_run,
            "keys": s.keys,
            "commands": s.commands,
            "restores": s.restores,
            "restore_fallbacks": s.restore_fallbacks,
            "batched_strings": s.batched_strings,
            "skipped": {
                "expired": s.skipped_expired,
                "modules": s.skipped_modules,
                "filtered": self.filtered,
                "empty": self.empty,
                "existing": self.skipped_existing,
                "log_commands": self.log_skipped,
                "log_commands_filtered": self.log_filter.filtered,
            },
            "log_commands_narrowed": self.log_filter.narrowed,
            "log_commands_mixed_keys": {"count": self.log_filter.mixed, "examples": self.log_filter.mixed_examples},
            "log_commands_unknown_keys": {"count": self.log_filter.unknown, "examples": self.log_filter.unknown_examples},
            "refused_keys": s.refused,
            "refused_examples": s.refused_examples.iter().map(|(k, why)| serde_json::json!({"key": k, "why": why})).collect::<Vec<_>>(),
            "refused": errors(&self.refused),
            "errors": errors(&self.errors),
            "log_commands": self.log_commands,
            "barriers": self.barriers,
            "multi_unwrapped": self.multi_unwrapped,
            "answered": self.answered,
            "bytes": self.bytes,
            "reconnects": self.reconnects,
            "would_send": {"commands": self.would_send.0, "bytes": self.would_send.1, "created": self.created, "replaced": self.replaced},
            "input_bytes": self.input_bytes,
            "wall_s": self.wall.as_secs_f64(),
            "warnings": self.warnings,
            "resumed_at": self.resumed_at,
            "until": self.until.map(|u| serde_json::json!({"unix": u.until_s, "reached": u.reached, "left_out": u.left_out})),
            "already_applied": self.already_applied,
            "failure": self.failure,
            "exit_code": self.exit_code(),
        })
    }
}

/// Most bytes of commands sent and not yet answered, over all connections (a key larger
/// than this goes alone).
const HELD_BYTES: u64 = 16 << 20;

/// Where a unit comes from, and whether it may be sent twice.
#[derive(Clone, Copy)]
struct Origin {
    pos: Position,
    resendable: bool,
}

/// The key of `key` in db `db` for the set of existing keys.
fn existing_key(db: u64, key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&db.to_le_bytes());
    out.extend_from_slice(key);
}

/// Runs a replay. `Err` when it could not start; a report otherwise (its `failure` says
/// when it stopped early).
pub fn run(cfg: &Config, inputs: &[Input<'_>]) -> Result<Report, Error> {
    let started = Instant::now();
    let dest = cfg.endpoint.to_string();
    let mut report = Report {
        destination: dest.clone(),
        dry_run: cfg.dry_run,
        input_bytes: inputs.iter().map(|i| i.data.len() as u64).sum(),
        ..Report::default()
    };
    if !cfg.filter.types.is_empty() {
        if let Some(i) = inputs.iter().find(|i| aof::log_start(i.data).is_some()) {
            return Err(Error::Refused(format!(
                "{}: --type selects keys of snapshots; AOF commands can be selected by --db, --match and --regex; \
                 nothing was written",
                i.name
            )));
        }
    }
    // The inputs are verified before the probe, which writes (and deletes) a key.
    let found = if cfg.precheck { Some(verify_inputs(cfg, inputs)?) } else { None };
    let probe = probe(&cfg.endpoint, cfg.timeout, !cfg.dry_run, cfg.kind)
        .map_err(|e| Error::Destination(format!("cannot use {dest}"), e))?;
    let kind = probe.kind;
    report.kind = Some(kind);
    let target = cfg.target_version.or(probe.target()).unwrap_or(Version::LATEST);
    if cfg.target_version.is_none() && probe.target().is_none() {
        report.warnings.push(format!("the destination's version is unknown (dry run): payloads are made for {target}"));
    }
    let mode = cfg.mode.unwrap_or(Mode::Restore);
    report.mode = Some(mode);
    report.target = Some(target);
    let proxy = kind == DestKind::Twemproxy;
    let n = cfg.connections.unwrap_or(if proxy { 4 } else { 1 }).max(1);
    let window = cfg.window.unwrap_or(if proxy { 1000 } else { 5000 }).max(1);
    report.connections = n;
    let shape = Shape { proxy, n, window, db_map: &cfg.db_map };

    if let Some(found) = &found {
        refuse_up_front(cfg, found, &shape, &mut report)?;
    }

    let mut existing = HashSet::new();
    if cfg.on_existing != OnExisting::Replace || cfg.dry_run {
        existing = find_existing(cfg, inputs, &shape).map_err(|e| match e {
            Found::Link(e) => Error::Destination(format!("checking which keys {dest} has"), e),
            Found::Input(name, msg) => Error::Input(name, msg),
        })?;
    }

    let mut tcfg = cfg.translate.clone();
    tcfg.mode = mode;
    tcfg.target = target;

    // A checkpoint of this very job: resume from it; of another one: refuse.
    let ids: Vec<checkpoint::InputId> = inputs.iter().map(|i| checkpoint::InputId::of(&i.name, i.data)).collect();
    let options = options_id(cfg, &tcfg);
    let mut resume = None;
    if let Some(path) = &cfg.checkpoint {
        if cfg.on_existing != OnExisting::Replace {
            return Err(Error::Refused(
                "--checkpoint works with --on-existing replace only (a resumed run would find its own keys)".into(),
            ));
        }
        if proxy && inputs.iter().any(|i| aof::log_start(i.data).is_some()) {
            return Err(Error::Refused(
                "--checkpoint through twemproxy covers snapshots only: without MULTI, which AOF commands \
                 ran before a stop cannot be known"
                    .into(),
            ));
        }
        let shown = crate::source::display_name(path);
        if let Some(ck) = checkpoint::Checkpoint::load(path).map_err(|e| Error::Input(shown.clone(), e.to_string()))? {
            if let Some(why) = ck.mismatch(&ids, &options, shape.n) {
                return Err(Error::Refused(format!(
                    "the checkpoint {shown} cannot resume this replay: {why}; remove it to start over"
                )));
            }
            resume = Some(ck);
        }
    }
    let run_id = resume.as_ref().map_or_else(fresh_run_id, |ck| ck.run);
    let from = resume.as_ref().map_or(Position::default(), |ck| ck.resume);
    if resume.is_some() {
        let name = inputs.get(from.file).map_or("?", |i| i.name.as_str());
        report.resumed_at = Some(format!("byte {} of {name}", from.offset));
    }
    let ck = cfg.checkpoint.as_ref().map(|path| {
        (path.clone(), checkpoint::Checkpoint { run: run_id, connections: shape.n, inputs: ids, options, resume: from })
    });

    let log_keys = crate::expiry::LogKeysOnce::new(
        inputs.iter().map(|i| (i.data, i.allow_truncated)).collect(),
        &cfg.filter,
        cfg.until,
    );
    let progress = Progress::start(cfg.progress, report.input_bytes);
    let mut engine = Engine::start(cfg, &shape, tcfg, report, run_id, ck)?;
    engine.sent_commands = progress.commands.clone();
    // At once: a replay stopped in its first second can resume too.
    engine.write_checkpoint(true);
    if resume.is_some() && !cfg.dry_run {
        engine.read_applied().map_err(|e| Error::Destination(format!("reading the applied keys of {dest}"), e))?;
    }
    let mut done_before = 0u64;
    for (file, input) in inputs.iter().enumerate() {
        if engine.stopped() {
            break;
        }
        let skip_to = if file == from.file { from.offset as usize } else { 0 };
        if (file < from.file || skip_to > 0) && aof::is_rdb(input.data) {
            // Resuming: the keys an earlier run sent with the expiry sentinel still
            // need their cleanup.
            let upto = if file < from.file { input.data.len() } else { skip_to };
            engine.kept_before(input, upto, &log_keys);
        }
        if file < from.file {
            done_before += input.data.len() as u64;
            continue;
        }
        let mut tail = Some(0);
        if aof::is_rdb(input.data) {
            tail = engine.snapshot(file, input, skip_to, &existing, &log_keys, &progress, done_before);
            if let Some(t) = tail {
                let at = input.data.len() - t;
                tail = matches!(input.data.get(at), Some(b'*' | b'#')).then_some(at);
            }
        }
        if let (Some(at), false) = (tail, engine.stopped()) {
            engine.log(file, input, at, skip_to, &existing);
        }
        done_before += input.data.len() as u64;
        progress.done.store(done_before, Ordering::Relaxed);
        // Everything of one file is applied before the next starts (a FUNCTION LOAD of
        // the snapshot before an FCALL of the log).
        engine.drain_all();
    }
    if !engine.stopped() {
        engine.cleanup(inputs);
    }
    drop(progress);
    let mut report = engine.finish(inputs);
    report.wall = started.elapsed();
    Ok(report)
}

/// A new run's id (it names the applied keys of its log transactions).
fn fresh_run_id() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ ((std::process::id() as u64) << 40)
}

/// What decides the commands sent, for the checkpoint (not the time of day).
fn options_id(cfg: &Config, t: &translate::Config) -> String {
    let f = &cfg.filter;
    format!(
        "mode={:?} target={} max_args={} max_bytes={} restore_max_bytes={} keep_expired={} margin={} \
         drop_field_ttl={} dbs={:?} globs={} regex={:?} types={:?} db_map={:?} on_existing={:?} allow_flush={} \
         until={:?}",
        t.mode,
        t.target,
        t.max_args,
        t.max_bytes,
        t.restore_max_bytes,
        t.keep_expired,
        t.expire_margin_ms,
        t.drop_field_ttl,
        f.dbs,
        f.globs.len(),
        f.regex.as_ref().map(|r| r.as_str().to_string()),
        f.types,
        cfg.db_map,
        cfg.on_existing,
        cfg.allow_flush,
        cfg.until.map(|u| u.until_s)
    )
}

/// A position as one number, ordered like positions (the applied keys hold these).
fn mark(p: Position) -> u64 {
    ((p.file as u64) << 40) | p.offset
}

/// The destination's shape, as routing needs it.
struct Shape<'a> {
    proxy: bool,
    n: usize,
    /// Commands unanswered per connection.
    window: usize,
    db_map: &'a BTreeMap<u64, u64>,
}

impl Shape<'_> {
    /// The destination db for source db `db`; `None` when twemproxy cannot hold it.
    fn db(&self, db: u64) -> Option<u64> {
        let d = self.db_map.get(&db).copied().unwrap_or(db);
        (!self.proxy || d == 0).then_some(d)
    }

    fn conn(&self, key: &[u8]) -> usize {
        slot(key) as usize % self.n
    }
}

/// What the inputs hold, as the up-front refusals need it.
#[derive(Default)]
struct InputFacts {
    /// Databases with data (after the filters).
    dbs: BTreeSet<u64>,
    functions: u64,
    /// The first FLUSHALL / FLUSHDB / SWAPDB commands, where they are.
    flushes: Vec<String>,
    /// AOF commands twemproxy cannot take, by name.
    not_for_proxy: BTreeMap<String, u64>,
}

/// Verifies every input before the first write: snapshots by their structure and
/// checksum (a full decode when there is no checksum), AOFs read to their end; and notes
/// what [`refuse_up_front`] needs.
fn verify_inputs(cfg: &Config, inputs: &[Input<'_>]) -> Result<InputFacts, Error> {
    let mut found = InputFacts::default();
    let mut until = cfg.until;
    for input in inputs {
        let data = input.data;
        let mut log_at = Some(0);
        if aof::is_rdb(data) {
            let bad = |e: rdb::Error| Error::Input(input.name.clone(), format!("{e} (nothing was written)"));
            let shape = skim_rdb(data).map_err(bad)?;
            let (trailing, rdb) = match shape {
                s if s.verified => (s.trailing, s),
                _ => {
                    // No checksum to trust: the whole decode is the check.
                    let mut summary = crate::cli::check::Summary::default();
                    crate::cli::check::walk(data, &mut summary, &cfg.plan).map_err(bad)?;
                    let rdb = RdbShape {
                        dbs: summary.dbs().collect(),
                        functions: summary.functions_and_scripts(),
                        trailing: summary.trailing(),
                        verified: true,
                    };
                    (summary.trailing(), rdb)
                }
            };
            found.dbs.extend(rdb.dbs.into_iter().filter(|&d| cfg.filter.accepts_db(d)));
            found.functions += rdb.functions;
            let at = data.len() - trailing;
            log_at = matches!(data.get(at), Some(b'*' | b'#')).then_some(at);
        }
        let Some(base) = log_at else { continue };
        let mut note = |c: &Command<'_>| {
            found.dbs.insert(c.db);
            if c.is_flush() && found.flushes.len() < 3 {
                found.flushes.push(format!("{} at byte {} of {}", c.name(), base + c.offset, input.name));
            }
            if !proxy::takes(&c.argv) {
                *found.not_for_proxy.entry(c.name()).or_default() += 1;
            }
        };
        let mut tally = aof::select::Tally::default();
        let r = aof::read_log(&data[base..], input.allow_truncated, |u| {
            if until.as_mut().is_some_and(|t| !t.admits(u)) {
                return; // past --until: neither sent nor refused
            }
            let Some(u) = aof::select::select(u, &cfg.filter, &mut tally) else { return };
            match u.as_ref() {
                Unit::One(c) => note(c),
                Unit::Multi(b) => b[1..b.len() - 1].iter().for_each(&mut note),
                Unit::Timestamp(_) => {}
            }
        });
        if let Err(e) = r {
            let hint = if e.truncated && !input.allow_truncated { "; --allow-truncated loads up to it" } else { "" };
            return Err(Error::Input(
                input.name.clone(),
                format!(
                    "at byte {}: {} (the last complete command ends at byte {}){hint}; nothing was written",
                    base + e.at,
                    e.msg,
                    base + e.last_good
                ),
            ));
        }
    }
    Ok(found)
}

/// Refuses up front what the destination cannot take (nothing of the input is written
/// yet): data in dbs twemproxy lacks, AOF commands it cannot take, flushes without
/// `--allow-flush`.
fn refuse_up_front(cfg: &Config, found: &InputFacts, shape: &Shape<'_>, report: &mut Report) -> Result<(), Error> {
    let InputFacts { dbs, functions, flushes, not_for_proxy: unsupported } = found;
    if shape.proxy {
        let bad: Vec<String> = dbs.iter().filter(|&&d| shape.db(d).is_none()).map(u64::to_string).collect();
        if !bad.is_empty() {
            return Err(Error::Refused(format!(
                "twemproxy has only db 0, and the input has data in db {}: map them with --db-map N:0 \
                 (or select dbs with --db); nothing was written",
                bad.join(", ")
            )));
        }
        if !unsupported.is_empty() {
            let list: Vec<String> = unsupported.iter().map(|(n, c)| format!("{n} ×{c}")).collect();
            return Err(Error::Refused(format!(
                "twemproxy cannot take these commands of the AOF (it closes the connection on them, or runs \
                 multi-key ones on one backend): {}; nothing was written",
                list.join(", ")
            )));
        }
        if *functions > 0 && cfg.filter.selects_everything() {
            report.warnings.push(format!(
                "{functions} function libraries / Lua scripts cannot pass through twemproxy: they are not sent"
            ));
        }
    }
    if !flushes.is_empty() && !cfg.allow_flush {
        return Err(Error::Refused(format!(
            "the AOF wipes or swaps databases ({}{}): replaying it would empty the destination's data, \
             not just the source's; --allow-flush sends them; nothing was written",
            flushes.join(", "),
            if flushes.len() == 3 { ", …" } else { "" }
        )));
    }
    Ok(())
}

/// What the precheck needs of a snapshot.
struct RdbShape {
    dbs: BTreeSet<u64>,
    functions: u64,
    trailing: usize,
    /// The checksum was there and matched.
    verified: bool,
}

/// Verifies a snapshot's structure by its length headers and its bytes by the CRC-64
/// (GB/s, against the deep decode's hundreds of MB/s): every value decoded later is
/// then the bytes Redis wrote. Not `verified` when the file has no checksum (RDB < 5, or
/// saved with `rdbchecksum no`): then only a full decode can check it.
fn skim_rdb(data: &[u8]) -> rdb::Result<RdbShape> {
    let mut parser = rdb::Parser::new(data)?.skim(true).verify_checksum(true);
    let mut shape = RdbShape { dbs: BTreeSet::new(), functions: 0, trailing: 0, verified: false };
    while let Some(item) = parser.next_item()? {
        match item {
            Item::Skimmed => {
                shape.dbs.insert(parser.state().db);
            }
            Item::Function(_) => shape.functions += 1,
            Item::Aux { key, .. } if key.bytes().as_ref() == b"lua" => shape.functions += 1,
            Item::End { checksum, trailing } => {
                shape.trailing = trailing;
                shape.verified = matches!(checksum, rdb::Checksum::Ok(_));
                break;
            }
            _ => {}
        }
    }
    Ok(shape)
}

enum Found {
    Link(LinkError),
    Input(String, String),
}

/// The keys of the snapshots that the destination already has (EXISTS, pipelined).
fn find_existing(cfg: &Config, inputs: &[Input<'_>], shape: &Shape<'_>) -> Result<HashSet<Vec<u8>>, Found> {
    let mut link = Link::open(&cfg.endpoint, cfg.timeout).map_err(Found::Link)?;
    let mut found = HashSet::new();
    let mut selected = 0u64;
    for input in inputs.iter().filter(|i| aof::is_rdb(i.data)) {
        let mut failure: Option<Found> = None;
        let r = pipeline::run(
            input.data,
            &cfg.plan,
            |header, span| {
                let mut keys: Vec<(u64, Vec<u8>)> = Vec::new();
                let r = decode_span(input.data, header, span, |item, _| {
                    if let Item::Record(rec) = item {
                        if cfg.filter.accepts(&rec) {
                            if let Some(db) = shape.db(rec.db) {
                                keys.push((db, rec.key.bytes().into_owned()));
                            }
                        }
                    }
                    Ok(())
                });
                (keys, r.err())
            },
            |(keys, err)| {
                if let Some(e) = err {
                    failure = Some(Found::Input(input.name.clone(), e.to_string()));
                    return false;
                }
                if let Err(e) = exists(&mut link, &keys, &mut selected, shape.proxy, &mut found) {
                    failure = Some(Found::Link(e));
                    return false;
                }
                true
            },
        );
        if let Err(e) = r {
            return Err(Found::Input(input.name.clone(), e.to_string()));
        }
        if let Some(f) = failure {
            return Err(f);
        }
    }
    // The keys the AOF commands touch (those it creates itself are not there yet).
    for (input, base) in inputs.iter().filter_map(|i| aof::log_start(i.data).map(|at| (i, at))) {
        let mut seen: HashSet<(u64, Vec<u8>)> = HashSet::new();
        let mut note = |c: &Command<'_>| {
            if let (Some(db), Keys::Some(ks)) = (shape.db(c.db), keys(&c.argv)) {
                for k in ks {
                    seen.insert((db, k.to_vec()));
                }
            }
        };
        let mut tally = aof::select::Tally::default();
        let r = aof::read_log(&input.data[base..], input.allow_truncated, |u| {
            match aof::select::select(u, &cfg.filter, &mut tally).as_deref() {
                Some(Unit::One(c)) => note(c),
                Some(Unit::Multi(b)) => b.iter().for_each(&mut note),
                Some(Unit::Timestamp(_)) | None => {}
            }
        });
        if let Err(e) = r {
            return Err(Found::Input(input.name.clone(), format!("at byte {}: {}", base + e.at, e.msg)));
        }
        let all: Vec<(u64, Vec<u8>)> = seen.into_iter().collect();
        for batch in all.chunks(1000) {
            exists(&mut link, batch, &mut selected, shape.proxy, &mut found).map_err(Found::Link)?;
        }
    }
    link.close();
    Ok(found)
}

/// EXISTS for each of `keys` (db, key), pipelined; the ones there go into `found`.
fn exists(
    link: &mut Link,
    keys: &[(u64, Vec<u8>)],
    selected: &mut u64,
    proxy: bool,
    found: &mut HashSet<Vec<u8>>,
) -> Result<(), LinkError> {
    let mut out = Vec::new();
    let mut expect = Vec::with_capacity(keys.len());
    for (i, (db, key)) in keys.iter().enumerate() {
        if !proxy && *db != *selected {
            crate::resp::encode::command(&mut out, &[b"SELECT", db.to_string().as_bytes()]);
            expect.push(None);
            *selected = *db;
        }
        crate::resp::encode::command(&mut out, &[b"EXISTS", key]);
        expect.push(Some(i));
    }
    link.send(&out)?;
    for e in &expect {
        let hit = link.next_reply(|r| matches!(r, crate::resp::reply::Reply::Int(1)))?;
        if let (Some(i), true) = (e, hit) {
            let mut k = Vec::new();
            existing_key(keys[*i].0, &keys[*i].1, &mut k);
            found.insert(k);
        }
    }
    Ok(())
}

/// Progress on stderr, when asked: input read, keys, commands sent and their rate, time left.
struct Progress {
    done: Arc<AtomicU64>,
    keys: Arc<AtomicU64>,
    commands: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    fn start(show: bool, total: u64) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let keys = Arc::new(AtomicU64::new(0));
        let commands = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = show.then(|| {
            let (done, keys, commands, stop) = (done.clone(), keys.clone(), commands.clone(), stop.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    let d = done.load(Ordering::Relaxed);
                    let secs = start.elapsed().as_secs_f64();
                    let eta = if d > 0 { secs * (total.saturating_sub(d)) as f64 / d as f64 } else { 0.0 };
                    let pct = if total > 0 { 100.0 * d as f64 / total as f64 } else { 100.0 };
                    let c = commands.load(Ordering::Relaxed);
                    eprint!(
                        "\rreplay: {pct:5.1}% of {:.1} MB, {} keys, {} commands ({:.0}/s), {secs:.0} s, about {eta:.0} s left   ",
                        total as f64 / 1e6,
                        keys.load(Ordering::Relaxed),
                        c,
                        c as f64 / secs.max(1e-3),
                    );
                }
                eprint!("\r{:100}\r", "");
            })
        });
        Progress { done, keys, commands, stop, thread }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// MSET commands being filled by a snapshot batch, one per connection and db. Each
/// holds the place (a piece) of its first key, so that its keys reach their connection
/// no later than that key would have: the checkpoint's low-water mark, taken from the
/// first unit of each chunk, never passes a key that is not applied.
#[derive(Default)]
struct MsetBatches {
    open: Vec<OpenMset>,
    /// Argument buffers of written MSETs, for the next ones.
    spare: Vec<Vec<u8>>,
}

struct OpenMset {
    conn: usize,
    db: u64,
    /// Index in `SnapBatch::pieces` of its place.
    piece: usize,
    keys: u64,
    /// The key and value bulk strings so far.
    args: Vec<u8>,
}

impl MsetBatches {
    const KEYS: u64 = 128;
    const BYTES: usize = 64 << 10;

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        b: &mut SnapBatch,
        t: &mut Translator,
        conn: usize,
        db: u64,
        key: &rdb::Str<'_>,
        value: &rdb::Str<'_>,
        at: u64,
    ) {
        let i = match self.open.iter().position(|m| m.conn == conn && m.db == db) {
            Some(i) => i,
            None => {
                b.pieces.push((conn, Some(db), 0, 0, at));
                let args = self.spare.pop().unwrap_or_default();
                self.open.push(OpenMset { conn, db, piece: b.pieces.len() - 1, keys: 0, args });
                self.open.len() - 1
            }
        };
        let m = &mut self.open[i];
        crate::resp::encode::bulk_str(&mut m.args, key);
        crate::resp::encode::bulk_str(&mut m.args, value);
        m.keys += 1;
        if m.keys >= Self::KEYS || m.args.len() >= Self::BYTES {
            let m = self.open.swap_remove(i);
            self.spare.push(Self::write(b, t, m));
        }
    }

    /// Writes every MSET still open (at the end of the batch).
    fn finish(&mut self, b: &mut SnapBatch, t: &mut Translator) {
        for m in self.open.drain(..) {
            Self::write(b, t, m);
        }
    }

    /// Writes `m` into the batch; gives back its emptied argument buffer.
    fn write(b: &mut SnapBatch, t: &mut Translator, mut m: OpenMset) -> Vec<u8> {
        crate::resp::encode::array_header(&mut b.buf, 1 + 2 * m.keys as usize);
        crate::resp::encode::bulk(&mut b.buf, b"MSET");
        b.buf.extend_from_slice(&m.args);
        b.ends.push(b.buf.len());
        let piece = &mut b.pieces[m.piece];
        (piece.2, piece.3) = (b.ends.len() - 1, b.ends.len());
        t.count_batch(m.keys);
        m.args.clear();
        m.args
    }
}

/// A snapshot batch, translated and split by connection.
#[derive(Default)]
struct SnapBatch {
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// (connection, db, first command, end command, offset of the unit in the file)
    pieces: Vec<(usize, Option<u64>, usize, usize, u64)>,
    stats: Stats,
    filtered: u64,
    empty: u64,
    skipped_existing: u64,
    created: u64,
    replaced: u64,
    refused: Errors,
    trailing: Option<usize>,
    end_offset: u64,
    error: Option<rdb::Error>,
    /// Keys sent with the expiry sentinel, for the cleanup after the last log.
    kept: Vec<crate::expiry::Kept>,
}

struct Engine<'c> {
    cfg: &'c Config,
    shape: &'c Shape<'c>,
    tcfg: translate::Config,
    senders: Vec<SyncSender<Msg>>,
    handles: Vec<JoinHandle<Result<ConnReport, Fatal>>>,
    builders: Vec<Chunk>,
    report: Report,
    /// A connection gave up.
    dead: bool,
    /// Chunks the connections are done with.
    spare: mpsc::Receiver<Chunk>,
    recycle: mpsc::Sender<Chunk>,
    pool: Vec<Chunk>,
    /// Per connection: the next chunk number, the chunks sent and not known answered
    /// (number, first unit), and the number after the last chunk answered.
    next_seq: Vec<u64>,
    outstanding: Vec<VecDeque<(u64, Position)>>,
    done: Vec<Arc<AtomicU64>>,
    /// Bytes of chunks sent, and (counted by the connections) answered.
    sent_bytes: u64,
    /// Commands sent, for the progress line.
    sent_commands: Arc<AtomicU64>,
    released: Arc<AtomicU64>,
    /// Everything before this was routed (the next unit starts here or later).
    routed_to: Position,
    /// Applied keys' prefix, and (resuming) the mark each connection's key held.
    applied_prefix: String,
    applied: Vec<Option<u64>>,
    checkpoint: Option<(std::path::PathBuf, checkpoint::Checkpoint)>,
    last_checkpoint: Instant,
    until: Option<aof::Until>,
    /// Keys sent with the expiry sentinel (see [`crate::expiry`]).
    kept: Vec<crate::expiry::Kept>,
}

impl<'c> Engine<'c> {
    fn start(
        cfg: &'c Config,
        shape: &'c Shape<'c>,
        tcfg: translate::Config,
        report: Report,
        run_id: u64,
        checkpoint: Option<(std::path::PathBuf, checkpoint::Checkpoint)>,
    ) -> Result<Engine<'c>, Error> {
        let (recycle, spare) = mpsc::channel();
        let mut e = Engine {
            cfg,
            shape,
            tcfg,
            senders: Vec::new(),
            handles: Vec::new(),
            builders: (0..shape.n).map(|_| Chunk::default()).collect(),
            report,
            dead: false,
            spare,
            recycle,
            pool: Vec::new(),
            next_seq: vec![0; shape.n],
            outstanding: (0..shape.n).map(|_| VecDeque::new()).collect(),
            done: (0..shape.n).map(|_| Arc::new(AtomicU64::new(0))).collect(),
            sent_bytes: 0,
            sent_commands: Arc::new(AtomicU64::new(0)),
            released: Arc::new(AtomicU64::new(0)),
            routed_to: Position::default(),
            applied_prefix: format!("redis-migration:applied:{run_id:016x}:"),
            applied: vec![None; shape.n],
            checkpoint,
            last_checkpoint: Instant::now(),
            until: cfg.until,
            kept: Vec::new(),
        };
        if cfg.dry_run {
            return Ok(e);
        }
        let wcfg = WorkerConfig {
            endpoint: cfg.endpoint.clone(),
            window: shape.window,
            window_bytes: cfg.window_bytes.max(1),
            select: !shape.proxy,
            retry_for: cfg.retry_for,
            timeout: cfg.timeout,
            recycle: Some(e.recycle.clone()),
            applied_prefix: e.applied_prefix.clone(),
        };
        for id in 0..shape.n {
            let link = Link::open(&cfg.endpoint, cfg.timeout)
                .map_err(|err| Error::Destination(format!("connection {id} to {}", cfg.endpoint), err))?;
            let (tx, rx) = mpsc::sync_channel(2);
            let w = Worker::new(id, wcfg.clone(), link, e.done[id].clone(), e.released.clone());
            e.handles.push(
                std::thread::Builder::new()
                    .name(format!("replay-{id}"))
                    .spawn(move || w.run(rx))
                    .map_err(|err| Error::Destination("starting a connection thread".into(), LinkError::Io(err)))?,
            );
            e.senders.push(tx);
        }
        Ok(e)
    }

    fn stopped(&self) -> bool {
        self.dead || self.report.failure.is_some()
    }

    /// Appends whole commands `buf[start..ends.last]` as one unit for connection `conn`.
    fn route(&mut self, conn: usize, db: Option<u64>, buf: &[u8], start: usize, ends: &[usize], origin: Origin) {
        let Origin { pos, resendable } = origin;
        let Some(&last) = ends.last() else { return };
        let b = &self.builders[conn];
        // A chunk holds one db, and never grows past its room (unless one unit is larger).
        if !b.is_empty() && (b.db != db || b.resendable != resendable || b.buf.len() + (last - start) > CHUNK_BYTES) {
            self.flush(conn);
        }
        if self.builders[conn].buf.capacity() == 0 {
            self.builders[conn] =
                self.pool.pop().or_else(|| self.spare.try_recv().ok()).unwrap_or_else(Chunk::with_room);
        }
        let b = &mut self.builders[conn];
        if b.is_empty() {
            b.db = db;
            b.exit_db = db;
            b.resendable = resendable;
        }
        b.units.push((b.ends.len(), pos));
        let base = b.buf.len();
        b.buf.extend_from_slice(&buf[start..last]);
        b.ends.extend(ends.iter().map(|e| base + e - start));
        // Log commands go as transactions, all or nothing: small ones, so that one
        // completes between two lost connections.
        let full = if b.resendable { CHUNK_BYTES } else { CHUNK_BYTES / 4 };
        if b.buf.len() >= full || (!b.resendable && b.ends.len() >= 512) {
            self.flush(conn);
        }
    }

    fn flush(&mut self, conn: usize) {
        if self.builders[conn].is_empty() {
            return;
        }
        let c = std::mem::take(&mut self.builders[conn]);
        self.send(conn, c);
    }

    fn send(&mut self, conn: usize, mut c: Chunk) {
        if !c.resendable && !self.shape.proxy && c.transaction.is_none() && !self.cfg.dry_run {
            c = self.transaction(conn, c);
        }
        c.seq = self.next_seq[conn];
        self.next_seq[conn] += 1;
        c.weight = c.buf.len() as u64;
        self.hold_back();
        self.sent_bytes += c.weight;
        self.sent_commands.fetch_add(c.ends.len() as u64, Ordering::Relaxed);
        if let Some(&(_, pos)) = c.units.first() {
            self.outstanding[conn].push_back((c.seq, pos));
        }
        self.write_checkpoint(false);
        if self.cfg.dry_run {
            self.report.would_send.0 += c.ends.len() as u64;
            self.report.would_send.1 += c.buf.len() as u64;
            return;
        }
        if self.senders[conn].send(Msg::Chunk(c)).is_err() {
            self.dead = true;
        }
    }

    /// Waits while the chunks sent and not yet answered hold more than `HELD_BYTES`, so that
    /// memory stays flat whatever the connections' speed and the keys' sizes.
    fn hold_back(&mut self) {
        if self.cfg.dry_run {
            return;
        }
        while self.sent_bytes.saturating_sub(self.released.load(Ordering::Acquire)) > HELD_BYTES {
            if self.handles.iter().any(|h| h.is_finished()) {
                return; // a connection gave up: the send will tell
            }
            match self.spare.recv_timeout(Duration::from_millis(5)) {
                Ok(c) => self.pool.push(c),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Log commands as one transaction that also records, in the connection's applied
    /// key (db 0), the position of its last unit: MULTI, the commands, [SELECT 0], SET
    /// key mark, [SELECT db], EXEC.
    fn transaction(&self, conn: usize, c: Chunk) -> Chunk {
        use crate::resp::encode::command;
        let Some(&(_, last)) = c.units.last() else { return c };
        let m = mark(last);
        let mut t = Chunk { db: c.db, exit_db: c.exit_db, transaction: Some(m), ..Chunk::default() };
        let mut cmd = Vec::with_capacity(96);
        command(&mut cmd, &[b"MULTI"]);
        t.push_command(&cmd);
        t.units = c.units.iter().map(|&(first, pos)| (first + 1, pos)).collect();
        let base = t.buf.len();
        t.buf.extend_from_slice(&c.buf);
        t.ends.extend(c.ends.iter().map(|e| e + base));
        let exit = c.exit_db.unwrap_or(0);
        let key = format!("{}{conn}", self.applied_prefix);
        let tail: [Option<Vec<Vec<u8>>>; 4] = [
            (exit != 0).then(|| vec![b"SELECT".to_vec(), b"0".to_vec()]),
            Some(vec![b"SET".to_vec(), key.into_bytes(), m.to_string().into_bytes()]),
            (exit != 0).then(|| vec![b"SELECT".to_vec(), exit.to_string().into_bytes()]),
            Some(vec![b"EXEC".to_vec()]),
        ];
        for args in tail.into_iter().flatten() {
            cmd.clear();
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            command(&mut cmd, &refs);
            t.push_command(&cmd);
        }
        t
    }

    /// The low-water mark: every unit before it has its reply.
    fn low_water(&mut self) -> Position {
        let mut low = self.routed_to;
        for conn in 0..self.shape.n {
            let done = self.done[conn].load(Ordering::Acquire);
            let q = &mut self.outstanding[conn];
            while q.front().is_some_and(|&(seq, _)| seq < done) {
                q.pop_front();
            }
            let first = q.front().map(|x| x.1).or_else(|| self.builders[conn].units.first().map(|u| u.1));
            if let Some(p) = first {
                low = low.min(p);
            }
        }
        low
    }

    /// Writes the checkpoint, at most once a second (`force`: now).
    fn write_checkpoint(&mut self, force: bool) {
        if self.checkpoint.is_none()
            || self.cfg.dry_run
            || (!force && self.last_checkpoint.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last_checkpoint = Instant::now();
        let low = self.low_water();
        if let Some((path, ck)) = &mut self.checkpoint {
            ck.resume = low;
            if let Err(e) = ck.save(path) {
                let msg = format!("writing the checkpoint {}: {e}", crate::source::display_name(path));
                self.report.failure.get_or_insert(msg);
            }
        }
    }

    /// Resuming: what each connection's applied key says its transactions reached.
    fn read_applied(&mut self) -> Result<(), LinkError> {
        let mut link = Link::open(&self.cfg.endpoint, self.cfg.timeout)?;
        for conn in 0..self.shape.n {
            let key = format!("{}{conn}", self.applied_prefix);
            if let conn::Answer::Bulk(Some(v)) = link.call(&[b"GET", key.as_bytes()])? {
                self.applied[conn] = std::str::from_utf8(&v).ok().and_then(|v| v.parse().ok());
            }
        }
        link.close();
        Ok(())
    }

    /// True when a resumed run finds this log unit applied on its connection.
    fn applied_before(&mut self, conn: usize, pos: Position) -> bool {
        if self.applied[conn].is_some_and(|a| mark(pos) <= a) {
            self.report.already_applied += 1;
            return true;
        }
        false
    }

    /// Waits until every connection has the replies of everything sent so far.
    fn drain(&mut self, conns: std::ops::Range<usize>) {
        for c in conns.clone() {
            self.flush(c);
        }
        if self.cfg.dry_run {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let mut asked = 0;
        for c in conns {
            if self.senders[c].send(Msg::Drain(tx.clone())).is_ok() {
                asked += 1;
            } else {
                self.dead = true;
            }
        }
        drop(tx);
        // The checkpoint moves on while the replies come in (a slow destination may take
        // long to answer what was routed).
        while asked > 0 {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(_) => asked -= 1,
                Err(mpsc::RecvTimeoutError::Timeout) => self.write_checkpoint(false),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.dead = true;
                    break;
                }
            }
        }
    }

    fn drain_all(&mut self) {
        self.drain(0..self.shape.n);
    }

    /// Runs `chunk` alone: everything before it is applied first, everything after it
    /// waits for its reply.
    fn barrier(&mut self, chunk: Chunk) {
        self.report.barriers += 1;
        self.drain_all();
        self.send(0, chunk);
        self.drain(0..1);
    }

    /// Replays a snapshot; returns the bytes after its end (a preamble AOF's commands),
    /// `None` when it stopped.
    #[allow(clippy::too_many_arguments)]
    fn snapshot(
        &mut self,
        file: usize,
        input: &Input<'_>,
        skip_to: usize,
        existing: &HashSet<Vec<u8>>,
        log_keys: &crate::expiry::LogKeysOnce<'_>,
        progress: &Progress,
        done_before: u64,
    ) -> Option<usize> {
        let data = input.data;
        let (cfg, shape, tcfg) = (self.cfg, self.shape, self.tcfg.clone());
        let everything = cfg.filter.selects_everything();
        let mut filter = cfg.filter.clone();
        // The translator decides about expired keys (it knows --expire-margin).
        filter.keep_expired = true;
        // Plain strings in MSET batches, keys of one connection and db, overwriting what
        // is there as RESTORE … REPLACE does (twemproxy splits an MSET across its backends).
        let batch_strings = tcfg.mode == translate::Mode::Restore && cfg.on_existing == OnExisting::Replace;
        let mut trailing = None;
        let mut failure = None;
        type Buffers = (Vec<u8>, Vec<usize>, Vec<(usize, Option<u64>, usize, usize, u64)>);
        let spare: std::sync::Mutex<Vec<Buffers>> = std::sync::Mutex::new(Vec::new());
        let r = pipeline::run_from(
            data,
            skip_to,
            &cfg.plan,
            |header, span| {
                let mut b = SnapBatch::default();
                // Buffers of an earlier batch, when there is one: no allocation per batch.
                if let Some((buf, ends, pieces)) = spare.lock().ok().and_then(|mut v| v.pop()) {
                    (b.buf, b.ends, b.pieces) = (buf, ends, pieces);
                }
                let mut t = Translator::unselected(tcfg.clone(), header.vendor, header.version);
                let mut msets = MsetBatches::default();
                let mut lookup = Vec::new();
                let mut item_start = span.start as u64;
                let r = decode_span(data, header, span, |item, end| {
                    let item_at = std::mem::replace(&mut item_start, end);
                    b.end_offset = end;
                    match item {
                        Item::Record(rec) => {
                            if !filter.accepts(&rec) {
                                b.filtered += 1;
                                return Ok(());
                            }
                            let key = rec.key.bytes();
                            let Some(db) = shape.db(rec.db) else {
                                b.refused.add("DB".into(), 1, || {
                                    format!(
                                        "\"{}\" in db {}: twemproxy has only db 0 (--db-map)",
                                        rdb::escape_key(&key),
                                        rec.db
                                    )
                                });
                                return Ok(());
                            };
                            let exists = !existing.is_empty() && {
                                existing_key(db, &key, &mut lookup);
                                existing.contains(&lookup)
                            };
                            if exists && cfg.on_existing == OnExisting::Skip {
                                b.skipped_existing += 1;
                                return Ok(());
                            }
                            if exists && cfg.on_existing == OnExisting::Error {
                                b.refused.add("EXISTS".into(), 1, || {
                                    format!(
                                        "\"{}\" in db {db}: the destination has it (--on-existing error)",
                                        rdb::escape_key(&key)
                                    )
                                });
                                return Ok(());
                            }
                            if batch_strings {
                                if let Some(value) = t.batchable_string(&rec) {
                                    if exists {
                                        b.replaced += 1;
                                    } else {
                                        b.created += 1;
                                    }
                                    msets.add(&mut b, &mut t, shape.conn(&key), db, &rec.key, value, item_at);
                                    return Ok(());
                                }
                            }
                            let (start, first, before) = (b.buf.len(), b.ends.len(), t.stats.commands);
                            // A key a later log command writes to keeps what has expired.
                            let kept = t.expiry_now().is_some_and(|now| {
                                !crate::expiry::Expired::of(&rec, now).none() && log_keys.get().contains(rec.db, &key)
                            });
                            if kept {
                                match t.record_kept(&rec, &mut b.buf) {
                                    Some(k) => b.kept.push(k),
                                    None => return Ok(()),
                                }
                            } else if !t.record(&rec, &mut b.buf) {
                                return Ok(());
                            }
                            let mut at = start;
                            let mut refused_name = None;
                            while at < b.buf.len() {
                                let Some(crate::resp::CommandAt { end, name, .. }) =
                                    crate::resp::command_at(&b.buf, at)
                                else {
                                    unreachable!("the translator writes whole RESP commands")
                                };
                                if shape.proxy && refused_name.is_none() && !proxy::takes(&[name]) {
                                    refused_name = Some(String::from_utf8_lossy(name).to_ascii_uppercase());
                                }
                                b.ends.push(end);
                                at = end;
                            }
                            if let Some(name) = refused_name {
                                b.buf.truncate(start);
                                b.ends.truncate(first);
                                let why = format!("twemproxy does not take {name} (--mode restore carries this key)");
                                t.retract(&rec.key, t.stats.commands - before, why);
                                if kept {
                                    b.kept.pop();
                                    t.stats.kept_for_log -= 1;
                                }
                                return Ok(());
                            }
                            if exists {
                                b.replaced += 1;
                            } else {
                                b.created += 1;
                            }
                            b.pieces.push((shape.conn(&key), Some(db), first, b.ends.len(), item_at));
                        }
                        Item::EmptyKey { .. } => b.empty += 1,
                        Item::Function(_) | Item::Aux { .. } if everything && shape.proxy && is_code(&item) => {
                            b.refused.add("FUNCTION".into(), 1, || {
                                "twemproxy cannot load functions or scripts: load them on each backend".to_string()
                            });
                        }
                        Item::Function(f) if everything && !shape.proxy => {
                            let first = b.ends.len();
                            let start = b.buf.len();
                            t.function(&f, &mut b.buf);
                            push_ends(&b.buf, start, &mut b.ends);
                            b.pieces.push((0, None, first, b.ends.len(), item_at));
                        }
                        Item::Aux { key, value } if everything && !shape.proxy && key.bytes().as_ref() == b"lua" => {
                            let first = b.ends.len();
                            let start = b.buf.len();
                            t.script(&value, &mut b.buf);
                            push_ends(&b.buf, start, &mut b.ends);
                            b.pieces.push((0, None, first, b.ends.len(), item_at));
                        }
                        Item::End { trailing, .. } => b.trailing = Some(trailing),
                        _ => {}
                    }
                    Ok(())
                });
                msets.finish(&mut b, &mut t);
                b.stats = t.stats;
                b.error = r.err();
                b
            },
            |mut b| {
                progress.keys.fetch_add(b.stats.keys, Ordering::Relaxed);
                self.report.stats.merge(b.stats);
                self.report.filtered += b.filtered;
                self.report.empty += b.empty;
                self.report.skipped_existing += b.skipped_existing;
                self.report.created += b.created;
                self.report.replaced += b.replaced;
                self.report.refused.merge(b.refused);
                self.kept.append(&mut b.kept);
                for &(conn, db, first, end, at) in &b.pieces {
                    if first == end {
                        continue;
                    }
                    let start = if first == 0 { 0 } else { b.ends[first - 1] };
                    let pos = Position { file, offset: at };
                    self.route(conn, db, &b.buf, start, &b.ends[first..end], Origin { pos, resendable: true });
                }
                self.routed_to = Position { file, offset: b.end_offset };
                progress.done.store(done_before + b.end_offset, Ordering::Relaxed);
                if b.trailing.is_some() {
                    trailing = b.trailing;
                }
                if let Some(e) = b.error.take() {
                    failure = Some(format!("{}: {e}", input.name));
                    return false;
                }
                // Ordinary buffers go back for the next batches; one a huge key grew does not.
                if b.buf.capacity() <= 4 * cfg.plan.batch_bytes.max(CHUNK_BYTES) {
                    b.buf.clear();
                    b.ends.clear();
                    b.pieces.clear();
                    if let Ok(mut v) = spare.lock() {
                        if v.len() <= cfg.plan.threads + 1 {
                            v.push((b.buf, b.ends, b.pieces));
                        }
                    }
                }
                !self.stopped()
            },
        );
        if let Err(e) = r {
            failure = Some(format!("{}: {e}", input.name));
        }
        if let Some(f) = failure {
            self.report.failure.get_or_insert(f);
            return None;
        }
        trailing
    }

    /// The keys of `input` before byte `upto` that a run sent with the expiry sentinel.
    fn kept_before(&mut self, input: &Input<'_>, upto: usize, log_keys: &crate::expiry::LogKeysOnce<'_>) {
        let Some(now) = self.tcfg.expiry_now() else { return };
        let (cfg, shape) = (self.cfg, self.shape);
        let mut kept = Vec::new();
        let _ = pipeline::run(
            input.data,
            &cfg.plan,
            |header, span| {
                let mut found = Vec::new();
                let _ = decode_span(input.data, header, span, |item, end| {
                    if let Item::Record(rec) = item {
                        if end as usize <= upto
                            && cfg.filter.accepts(&rec)
                            && shape.db(rec.db).is_some()
                            && !crate::expiry::Expired::of(&rec, now).none()
                            && log_keys.get().contains(rec.db, &rec.key.bytes())
                        {
                            found.push(crate::expiry::Kept::of(&rec, now));
                        }
                    }
                    Ok(())
                });
                found
            },
            |mut found| {
                kept.append(&mut found);
                true
            },
        );
        self.kept.append(&mut kept);
    }

    /// After the last log: the scripts that delete what the kept keys still hold with
    /// the expiry sentinel (see [`crate::expiry`]), each on its key's connection. They
    /// may run twice (a resumed run sends them again): they only delete what still has
    /// the sentinel.
    fn cleanup(&mut self, inputs: &[Input<'_>]) {
        let Some(last) = inputs.len().checked_sub(1) else { return };
        let pos = Position { file: last, offset: inputs[last].data.len() as u64 };
        let mut buf = Vec::new();
        for k in std::mem::take(&mut self.kept) {
            let Some(db) = self.shape.db(k.db) else { continue };
            buf.clear();
            let n = crate::expiry::encode_cleanup(&mut buf, &k);
            self.report.stats.commands += n;
            let mut ends = Vec::with_capacity(n as usize);
            push_ends(&buf, 0, &mut ends);
            let conn = self.shape.conn(&k.key);
            self.route(conn, Some(db), &buf, 0, &ends, Origin { pos, resendable: true });
        }
        self.drain_all();
    }

    /// Replays the command log at `data[base..]`.
    fn log(&mut self, file: usize, input: &Input<'_>, base: usize, skip_to: usize, existing: &HashSet<Vec<u8>>) {
        let data = &input.data[base..];
        let r = aof::read_log(data, input.allow_truncated, |unit| {
            if self.stopped() || self.until.as_mut().is_some_and(|u| !u.admits(unit)) {
                return;
            }
            let (start, end) = match unit {
                Unit::One(c) => (c.offset, c.offset + c.raw.len()),
                Unit::Multi(b) => (b[0].offset, b[b.len() - 1].offset + b[b.len() - 1].raw.len()),
                Unit::Timestamp(_) => return,
            };
            if base + start < skip_to {
                return; // before the checkpoint: applied
            }
            let Some(unit) = aof::select::select(unit, &self.cfg.filter, &mut self.report.log_filter) else {
                self.routed_to = Position { file, offset: (base + end) as u64 };
                return;
            };
            match unit.as_ref() {
                Unit::Timestamp(_) => {}
                Unit::One(c) => self.log_command(file, base, c, existing),
                Unit::Multi(block) if self.shape.proxy => {
                    self.report.multi_unwrapped += 1;
                    for c in &block[1..block.len() - 1] {
                        self.log_command(file, base, c, existing);
                    }
                }
                Unit::Multi(block) => self.log_multi(file, base, block, existing),
            }
            self.routed_to = Position { file, offset: (base + end) as u64 };
        });
        match r {
            Ok(Some(cut)) => self.report.warnings.push(format!(
                "{}: the AOF ends inside a command ({}): replayed up to byte {}, left out the last {} bytes",
                input.name,
                cut.why,
                base + cut.at,
                cut.dropped
            )),
            Ok(None) => {}
            Err(e) => {
                let f = format!(
                    "{}: at byte {}: {} (the last complete command ends at byte {}; commands before it were sent)",
                    input.name,
                    base + e.at,
                    e.msg,
                    base + e.last_good
                );
                self.report.failure.get_or_insert(f);
            }
        }
    }

    /// Checks a log command against the destination and the options: its db, or `None`
    /// when it is not to be sent (counted).
    fn admit(&mut self, file: usize, base: usize, c: &Command<'_>, existing: &HashSet<Vec<u8>>) -> Option<u64> {
        let Some(db) = self.shape.db(c.db) else {
            self.report
                .refused
                .add("DB".into(), 1, || format!("{} in db {}: twemproxy has only db 0 (--db-map)", c.name(), c.db));
            return None;
        };
        if c.is_flush() && !self.cfg.allow_flush {
            let f = format!(
                "{} at byte {} of file {}: the AOF wipes or swaps databases; --allow-flush sends it",
                c.name(),
                base + c.offset,
                file + 1
            );
            self.report.failure.get_or_insert(f);
            return None;
        }
        if self.shape.proxy && !proxy::takes(&c.argv) {
            let key = c.argv.get(1).copied();
            self.report.refused.add("PROXY".into(), 1, || conn::describe(c.argv[0], key, "twemproxy does not take it"));
            return None;
        }
        // A key the destination had is left alone by the log too (skip), or refused (error).
        if self.cfg.on_existing != OnExisting::Replace && !existing.is_empty() {
            if let Keys::Some(ks) = keys(&c.argv) {
                let mut k = Vec::new();
                if ks.iter().any(|key| {
                    existing_key(db, key, &mut k);
                    existing.contains(&k)
                }) {
                    if self.cfg.on_existing == OnExisting::Skip {
                        self.report.log_skipped += 1;
                    } else {
                        let key = c.argv.get(1).copied();
                        self.report.refused.add("EXISTS".into(), 1, || {
                            conn::describe(c.argv[0], key, "touches a key the destination had (--on-existing error)")
                        });
                    }
                    return None;
                }
            }
        }
        Some(db)
    }

    fn log_command(&mut self, file: usize, base: usize, c: &Command<'_>, existing: &HashSet<Vec<u8>>) {
        let Some(db) = self.admit(file, base, c, existing) else { return };
        let pos = Position { file, offset: (base + c.offset) as u64 };
        let conn = match keys(&c.argv) {
            Keys::Some(ks) => {
                let first = self.shape.conn(ks[0]);
                ks[1..].iter().all(|k| self.shape.conn(k) == first).then_some(first)
            }
            Keys::None => Some(0),
            Keys::Global | Keys::Unknown => None,
        };
        if self.applied_before(conn.unwrap_or(0), pos) {
            return;
        }
        self.report.log_commands += 1;
        match conn {
            Some(conn) => {
                let bytes = c.bytes();
                self.route(conn, Some(db), bytes, 0, &[bytes.len()], Origin { pos, resendable: false })
            }
            None => {
                let mut chunk = Chunk { db: Some(db), exit_db: Some(db), ..Chunk::default() };
                chunk.units.push((0, pos));
                chunk.push_command(c.bytes());
                // SWAPDB / MOVE / FLUSHALL change what other dbs hold, not which db is selected.
                self.barrier(chunk);
            }
        }
    }

    /// A MULTI…EXEC block runs whole, alone, with SELECTs inside where its db changes.
    fn log_multi(&mut self, file: usize, base: usize, block: &[Command<'_>], existing: &HashSet<Vec<u8>>) {
        let inner = &block[1..block.len() - 1];
        let mut admitted = Vec::new();
        for c in inner {
            if let Some(db) = self.admit(file, base, c, existing) {
                admitted.push((db, c));
            }
        }
        let Some(&(first_db, _)) = admitted.first() else { return };
        let pos = Position { file, offset: (base + block[0].offset) as u64 };
        if self.applied_before(0, pos) {
            return;
        }
        self.report.log_commands += admitted.len() as u64;
        // The block's own MULTI and EXEC are left out: `send` makes every chunk of log
        // commands one transaction (with its applied key).
        let mut chunk = Chunk { db: Some(first_db), ..Chunk::default() };
        chunk.units.push((0, pos));
        let mut cur = first_db;
        for (db, c) in admitted {
            if db != cur {
                let mut sel = Vec::new();
                crate::resp::encode::command(&mut sel, &[b"SELECT", db.to_string().as_bytes()]);
                chunk.push_command(&sel);
                cur = db;
            }
            chunk.push_command(c.bytes());
        }
        chunk.exit_db = Some(cur);
        self.barrier(chunk);
    }

    fn finish(mut self, inputs: &[Input<'_>]) -> Report {
        for c in 0..self.shape.n {
            self.flush(c);
        }
        self.senders.clear();
        self.report.until = self.until;
        let handles = std::mem::take(&mut self.handles);
        let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        let complete = self.report.failure.is_none() && results.iter().all(|r| matches!(r, Ok(Ok(_))));
        if complete && !self.cfg.dry_run {
            // The applied keys have done their job; the checkpoint too.
            if !self.shape.proxy {
                let keys: Vec<Vec<u8>> =
                    (0..self.shape.n).map(|c| format!("{}{c}", self.applied_prefix).into_bytes()).collect();
                let mut args: Vec<&[u8]> = vec![b"DEL"];
                args.extend(keys.iter().map(Vec::as_slice));
                if let Err(e) = Link::open(&self.cfg.endpoint, self.cfg.timeout).and_then(|mut l| l.call(&args)) {
                    self.report
                        .warnings
                        .push(format!("could not delete the applied keys {}*: {e}", self.applied_prefix));
                }
            }
            if let Some((path, _)) = &self.checkpoint {
                let _ = std::fs::remove_file(path);
            }
        } else {
            self.write_checkpoint(true);
        }
        let mut report = self.report;
        for r in results {
            let r = match r {
                Ok(r) => r,
                Err(_) => {
                    report.failure.get_or_insert("a connection thread panicked".into());
                    continue;
                }
            };
            let conn = match r {
                Ok(c) => c,
                Err(f) => {
                    let mut msg = f.to_string();
                    if let Some(p) = f.unknown_from {
                        let name = inputs.get(p.file).map_or("?", |i| i.name.as_str());
                        msg.push_str(&format!(
                            "; every AOF command before byte {} of {name} was applied on this connection, \
                             the one there and those after it on this connection are in doubt",
                            p.offset
                        ));
                    }
                    report.failure.get_or_insert(msg);
                    f.report
                }
            };
            report.answered += conn.commands;
            report.bytes += conn.bytes;
            report.reconnects += conn.reconnects;
            report.errors.merge(conn.errors);
        }
        report
    }
}

/// A function library, or a Lua script of the `lua` AUX field.
fn is_code(item: &Item<'_>) -> bool {
    match item {
        Item::Function(_) => true,
        Item::Aux { key, .. } => key.bytes().as_ref() == b"lua",
        _ => false,
    }
}

fn push_ends(buf: &[u8], start: usize, ends: &mut Vec<usize>) {
    let mut at = start;
    while let Some(c) = crate::resp::command_at(buf, at) {
        ends.push(c.end);
        at = c.end;
    }
}
