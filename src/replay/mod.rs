//! `replay`: the ordered input stream loaded into a destination over N pipelined
//! connections. This module only orchestrates; the rooms:
//! - [`precheck`]: the inputs verified before the first write, what the destination
//!   cannot take refused up front, the keys it already has;
//! - [`probe`](mod@probe): what the destination is; [`dest`]: what it can do and where each command
//!   goes (standalone Redis, twemproxy, Redis Cluster);
//! - `snapshot` (records translated on the workers, routed in input order), `log` (log
//!   units admitted and routed), `engine` (routing, back pressure, barriers, the
//!   low-water mark), `txn` (log commands applied exactly once);
//! - [`chunk`]: what a connection is handed; [`worker`]: the connections' threads; [`checkpoint`]: where a stopped run resumes;
//!   [`report`]: what it did, and the progress line.
//!
//! Each key's commands go to the connection its slot picks, so per-key order holds; a
//! log command whose keys span connections (or cannot be known) is a barrier: every
//! connection drains, it runs alone, the rest follows. Every reply is matched to its
//! command; refusals are counted and reported.

pub mod checkpoint;
pub mod chunk;
pub mod dest;
mod engine;
mod log;
pub mod precheck;
pub mod probe;
pub mod proxy;
pub mod redirect;
pub mod report;
mod snapshot;
#[cfg(test)]
mod tests;
mod txn;
pub mod worker;

pub use crate::net::tls;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub use crate::net::{Endpoint, Link, LinkError};
pub use crate::version::version_of_rdb;
pub use chunk::Errors;
pub use dest::DestKind;
pub use probe::{probe, Probe};
pub use report::Report;

pub use crate::input::Position;

use crate::aof::Unit;
use crate::expiry::LogKeysOnce;
use crate::filter::Filter;
use crate::input::{self, Flow, Input, InputError, Inputs, LogEnd, Reader, Sink};
use crate::pipeline::Plan;
use crate::translate::{self, Mode, Version};
use engine::{Engine, Origin};
use report::Progress;
use snapshot::{SnapBatch, SnapshotMap};

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
    /// How often the checkpoint moves (at most).
    pub checkpoint_every: Duration,
    /// At the end of a complete run, keep the applied keys and the checkpoint (`migrate`:
    /// the next run goes on from them) instead of deleting them.
    pub keep_marks: bool,
    /// The dbs the inputs hold, when known before they are read (a cluster node's
    /// snapshot: db 0; a live source's `INFO keyspace`): a snapshot still being written
    /// can then be applied as it comes into a destination that takes those dbs.
    pub source_dbs: Option<Vec<u64>>,
}

/// Why a replay did not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the destination cannot take, found before writing.
    #[error("{0}")]
    Refused(String),
    /// Damaged or unreadable input, found before writing (the message names the file).
    #[error("{0}")]
    Input(String),
    #[error("{0}: {1}")]
    Destination(String, LinkError),
}

/// The key of `key` in db `db` for the set of existing keys.
fn existing_key(db: u64, key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&db.to_le_bytes());
    out.extend_from_slice(key);
}

/// A command log that keeps growing after the inputs (`migrate`'s spool), applied after
/// them by the same engine.
pub trait Follow {
    /// Hands the log's units to `log` in order until the log is done (its writer has
    /// stopped and everything written was handed over) or `log` says stop.
    fn follow(&mut self, log: &mut dyn Followed);
}

/// The engine as a followed log sees it.
pub trait Followed {
    /// One unit of the followed log: `base` is the log offset of the slice the unit
    /// borrows from (its commands' offsets are relative to it), `end` the log offset just
    /// after it.
    fn unit(&mut self, unit: &Unit<'_>, base: u64, end: u64) -> Flow;
    /// Sends what the connections hold unsent (a quiet log waits for nothing).
    fn flush(&mut self);
    /// Everything of the followed log before `offset` has been handed over (the reader
    /// walked over SELECTs with no unit after them): the engine's mark may pass it.
    fn passed(&mut self, offset: u64);
    /// Everything before this log offset has its reply.
    fn applied(&mut self) -> u64;
    /// The replay has stopped (a failure, a lost connection).
    fn stopped(&self) -> bool;
    /// Where in the followed log this run starts: a resumed run's checkpoint may be
    /// there (everything before it was applied); else 0.
    fn start(&self) -> u64;
    /// Waits until everything handed over has its reply, then deletes the applied keys
    /// written so far (a cutover: the destination is to hold the source's keys only).
    fn remove_marks(&mut self) -> Result<(), String>;
    /// Whether the applied keys and the checkpoint outlive a complete run (see
    /// [`Config::keep_marks`]).
    fn keep_marks(&mut self, keep: bool);
}

impl Followed for Run<'_, '_> {
    fn unit(&mut self, unit: &Unit<'_>, base: u64, end: u64) -> Flow {
        self.file = self.inputs.files.len();
        self.base = base as usize;
        self.log_unit(unit, end)
    }

    fn flush(&mut self) {
        for c in 0..self.engine.dest.connections() {
            self.engine.flush(c);
        }
        self.engine.write_checkpoint(false);
    }

    fn passed(&mut self, offset: u64) {
        let at = Position { file: self.inputs.files.len(), offset };
        self.engine.routed_to = self.engine.routed_to.max(at);
    }

    fn applied(&mut self) -> u64 {
        let followed = self.inputs.files.len();
        let low = self.engine.low_water();
        if low.file >= followed {
            low.offset
        } else {
            0
        }
    }

    fn stopped(&self) -> bool {
        self.engine.stopped()
    }

    fn start(&self) -> u64 {
        if self.from.file >= self.inputs.files.len() {
            self.from.offset
        } else {
            0
        }
    }

    fn remove_marks(&mut self) -> Result<(), String> {
        self.engine.drain_all();
        if self.engine.stopped() {
            return Err("the replay stopped".into());
        }
        // Everything is applied: the checkpoint says so before the marks go, so that a
        // restart from here has nothing in doubt.
        self.engine.write_checkpoint(true);
        if self.engine.stopped() {
            return Err("the checkpoint could not be written: the marks stay".into());
        }
        if self.engine.cfg.dry_run || !self.engine.dest.caps().multi {
            return Ok(());
        }
        self.engine.delete_applied_keys().map_err(|e| e.to_string())?;
        self.engine.applied_keys.clear();
        Ok(())
    }

    fn keep_marks(&mut self, keep: bool) {
        self.engine.keep_marks = keep;
    }
}

/// Runs a replay. `Err` when it could not start; a report otherwise (its `failure` says
/// when it stopped early).
pub fn run(cfg: &Config, inputs: &Inputs) -> Result<Report, Error> {
    run_following(cfg, inputs, None)
}

/// [`run`], then the units of `follow` (a log that grows while it is applied) after the
/// inputs, before the cleanup and the report.
pub fn run_following(cfg: &Config, inputs: &Inputs, follow: Option<&mut dyn Follow>) -> Result<Report, Error> {
    let started = Instant::now();
    let name = cfg.endpoint.to_string();
    let mut report = Report {
        destination: name.clone(),
        dry_run: cfg.dry_run,
        input_bytes: inputs.total_bytes(),
        files: inputs
            .files
            .iter()
            .map(|i| report::FileReport { name: i.name.clone(), bytes: i.data().len() as u64, ..Default::default() })
            .collect(),
        ..Report::default()
    };
    if !cfg.filter.types.is_empty() {
        if let Some(i) = inputs.files.iter().find(|i| i.log_start().is_some()) {
            return Err(Error::Refused(format!(
                "{}: --type selects keys of snapshots; AOF commands can be selected by --db, --match and --regex; \
                 nothing was written",
                i.name
            )));
        }
    }
    // The inputs are verified before the probe, which writes (and deletes) a key; a
    // snapshot still being written is verified as it comes (its checksum last), or, where
    // it cannot be applied as it comes, once it is whole.
    let growing = inputs.any_growing();
    let mut found = if cfg.precheck && !growing { Some(precheck::verify_inputs(cfg, inputs)?) } else { None };
    let duplicates = precheck::duplicates(cfg, inputs, &mut report)?;
    let probe = probe(&cfg.endpoint, cfg.timeout, !cfg.dry_run, cfg.kind)
        .map_err(|e| Error::Destination(format!("cannot use {name}"), e))?;
    report.kind = Some(probe.kind);
    let target = cfg.target_version.or(probe.target()).unwrap_or(Version::LATEST);
    if cfg.target_version.is_none() && probe.target().is_none() {
        report.warnings.push(format!("the destination's version is unknown (dry run): payloads are made for {target}"));
    }
    let mode = cfg.mode.unwrap_or(Mode::Restore);
    report.mode = Some(mode);
    report.target = Some(target);
    let proxy = probe.kind == DestKind::Twemproxy;
    // To a cluster: this many connections to each master.
    let n = cfg.connections.unwrap_or(if proxy { 4 } else { 1 }).max(1);
    let window = cfg.window.unwrap_or(if proxy { 1000 } else { 5000 }).max(1);
    if probe.kind == DestKind::Cluster {
        let t = probe.topology.as_ref();
        report.cluster = Some(report::ClusterReport {
            masters: t.map_or(0, |t| t.masters.len()),
            without_replica: t.map_or(0, |t| t.masters.iter().filter(|m| m.replicas.is_empty()).count()),
            ..Default::default()
        });
    }
    let dest = dest::of(probe.kind, n, &cfg.db_map, probe.topology);
    let dest = dest.as_ref();
    let n = dest.connections();
    report.connections = n;

    if growing {
        match streams(cfg, dest) {
            Ok(()) => report.snapshot_streamed = true,
            Err(why) => {
                report.warnings.push(format!("the snapshot was applied once whole, not as it came: {why}"));
                inputs.wait_whole();
                if cfg.precheck {
                    found = Some(precheck::verify_inputs(cfg, inputs)?);
                }
            }
        }
    }
    if let Some(found) = &found {
        precheck::refuse_up_front(cfg, found, dest, &mut report)?;
    }
    let mut existing = HashSet::new();
    if cfg.on_existing != OnExisting::Replace || cfg.dry_run {
        existing = precheck::find_existing(cfg, inputs, dest)?;
    }
    let mut tcfg = cfg.translate.clone();
    tcfg.mode = mode;
    tcfg.target = target;

    // A checkpoint of this very job: resume from it; of another one: refuse.
    let ids: Vec<checkpoint::InputId> =
        inputs.files.iter().map(|i| checkpoint::InputId::of(&i.name, i.data())).collect();
    let options = options_id(cfg, &tcfg, inputs.until);
    let mut resume = None;
    if let Some(path) = &cfg.checkpoint {
        if cfg.on_existing != OnExisting::Replace {
            return Err(Error::Refused(
                "--checkpoint works with --on-existing replace only (a resumed run would find its own keys)".into(),
            ));
        }
        if !dest.caps().multi && inputs.files.iter().any(|i| i.log_start().is_some()) {
            return Err(Error::Refused(format!(
                "--checkpoint through {} covers snapshots only: without MULTI, which AOF commands \
                 ran before a stop cannot be known",
                dest.kind()
            )));
        }
        let shown = crate::source::display_name(path);
        if let Some(ck) = checkpoint::Checkpoint::load(path).map_err(|e| Error::Input(format!("{shown}: {e}")))? {
            if let Some(why) = ck.mismatch(&ids, &options, n) {
                return Err(Error::Refused(format!(
                    "the checkpoint {shown} cannot resume this replay: {why}; remove it to start over"
                )));
            }
            if follow.is_some() && !dest.caps().multi && !ck.clean && ck.resume.file >= inputs.files.len() {
                return Err(Error::Refused(format!(
                    "the checkpoint {shown} was not written at a clean stop: through {} (no MULTI) the log \
                     commands from byte {} of the spool on may have been applied or not; nothing was written",
                    dest.kind(),
                    ck.resume.offset
                )));
            }
            resume = Some(ck);
        }
    }
    let run_id = resume.as_ref().map_or_else(fresh_run_id, |ck| ck.run);
    let from = resume.as_ref().map_or(Position::default(), |ck| ck.resume);
    if resume.is_some() {
        let at = inputs.files.get(from.file).map_or("?", |i| i.name.as_str());
        report.resumed_at = Some(format!("byte {} of {at}", from.offset));
    }
    let ck = cfg.checkpoint.as_ref().map(|path| {
        let resume = from;
        (
            path.clone(),
            checkpoint::Checkpoint { run: run_id, connections: n, inputs: ids, options, resume, clean: false },
        )
    });

    let log_keys = LogKeysOnce::new(inputs.logs_view(), &cfg.filter, inputs.until);
    let names = inputs.files.iter().map(|f| f.name.clone()).collect();
    // A snapshot still arriving counts by the length its transfer announced, if any.
    let total = if growing { inputs.expected_bytes().unwrap_or(0) } else { report.input_bytes };
    let progress = Progress::start(cfg.progress, total, names);
    let mut engine = Engine::start(cfg, dest, window, report, run_id, ck)?;
    engine.sent_commands = progress.commands.clone();
    engine.checkpoint_held = growing;
    // At once, before the first command of the input is sent: a replay stopped at any
    // moment can resume (or be refused) from it.
    engine.write_checkpoint(true);
    if resume.is_some() && !cfg.dry_run {
        engine.read_applied().map_err(|e| Error::Destination(format!("reading the applied keys of {name}"), e))?;
    }
    // Resuming: the keys an earlier run sent with the expiry sentinel still need their
    // cleanup at the end.
    if let Some(now) = tcfg.expiry_now() {
        for (file, input) in inputs.files.iter().enumerate().take(from.file + 1) {
            let upto = if file < from.file { input.data().len() } else { from.offset as usize };
            if upto > 0 && input.is_snapshot() {
                engine.kept.extend(snapshot::kept_before(cfg, dest, now, input.data(), upto, &log_keys));
            }
        }
    }
    let mut filter = cfg.filter.clone();
    // The translator decides about expired keys (it knows --expire-margin).
    filter.keep_expired = true;
    filter.duplicates = duplicates;
    let map = SnapshotMap {
        cfg,
        dest,
        tcfg,
        existing: &existing,
        log_keys: &log_keys,
        filter,
        spare: std::sync::Mutex::new(Vec::new()),
    };
    let done_before: u64 = inputs.files.iter().take(from.file).map(|i| i.data().len() as u64).sum();
    let mut run = Run {
        engine,
        map: &map,
        inputs,
        progress: &progress,
        existing: &existing,
        file: 0,
        base: 0,
        done_before,
        from,
        growing,
    };
    let opts = input::Options { plan: cfg.plan, from, reader: Reader::Replay { written: true } };
    let until = input::run(inputs, &opts, &map, &mut run);
    run.whole();
    let e = &mut run.engine;
    if e.report.snapshot_streamed && e.report.stats.keys > 0 {
        if let Some(f) = &mut e.report.failure {
            // The snapshot was applied as it came: what came before the damage is written.
            f.push_str(&format!(
                "; {} keys of the snapshot, those before that point, were already written to the destination \
                 (a new full synchronization with --resync replaces them and deletes what the source no longer has)",
                e.report.stats.keys
            ));
        }
    }
    if let Some(follow) = follow {
        if !run.engine.stopped() {
            follow.follow(&mut run);
            run.engine.drain_all();
        }
    }
    let Run { mut engine, .. } = run;
    engine.report.until = until;
    if !engine.stopped() {
        engine.cleanup(inputs);
    }
    drop(progress);
    let mut report = engine.finish(inputs);
    report.wall = started.elapsed();
    Ok(report)
}

/// The joining half of a replay: the engine, and where in the input it is.
struct Run<'c, 'r> {
    engine: Engine<'c>,
    map: &'r SnapshotMap<'r, 'r>,
    inputs: &'r Inputs,
    progress: &'r Progress,
    existing: &'r HashSet<Vec<u8>>,
    /// The input being read, and where its log starts.
    file: usize,
    base: usize,
    /// Bytes of the inputs before it.
    done_before: u64,
    /// Where this run started (a resumed run: its checkpoint).
    from: Position,
    /// An input is still being written (the checkpoint waits until it is whole).
    growing: bool,
}

impl Run<'_, '_> {
    /// Once no input is still being written: the checkpoint names them as they are, and
    /// is written from now on.
    fn whole(&mut self) {
        if !self.growing || self.inputs.any_growing() {
            return;
        }
        self.growing = false;
        for (file, i) in self.inputs.files.iter().enumerate() {
            self.engine.whole(file, checkpoint::InputId::of(&i.name, i.data()));
        }
        // The files' sizes, now known.
        self.engine.report.input_bytes = self.inputs.total_bytes();
        for (f, i) in self.engine.report.files.iter_mut().zip(&self.inputs.files) {
            f.bytes = i.data().len() as u64;
        }
    }
}

impl<'d> Sink<'d, SnapBatch> for Run<'_, '_> {
    fn begin(&mut self, file: usize, _input: &'d Input) -> Flow {
        self.file = file;
        self.progress.file.store(file, Ordering::Relaxed);
        if self.engine.stopped() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    fn part(&mut self, part: SnapBatch) -> Flow {
        self.whole();
        self.snapshot_part(part)
    }

    fn log_begin(&mut self, _file: usize, _input: &'d Input, base: usize) -> Flow {
        self.base = base;
        Flow::Continue
    }

    fn unit(&mut self, unit: &Unit<'d>, _at: Position, end: u64) -> Flow {
        self.log_unit(unit, end)
    }

    fn end(&mut self, _file: usize, input: &'d Input, how: Result<LogEnd, InputError>) -> Flow {
        let e = &mut self.engine;
        match how {
            Ok(LogEnd::Cut { base, cut }) => e.report.warnings.push(format!(
                "{}: the AOF ends inside a command ({}): replayed up to byte {}, left out the last {} bytes",
                input.name,
                cut.why,
                base + cut.at,
                cut.dropped
            )),
            Ok(_) => {}
            Err(err) => {
                e.report.failure.get_or_insert(err.to_string());
            }
        }
        self.done_before += input.data().len() as u64;
        self.progress.done.store(self.done_before, Ordering::Relaxed);
        // Everything of one file is applied before the next starts (a FUNCTION LOAD of
        // the snapshot before an FCALL of the log).
        e.drain_all();
        if e.stopped() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

impl Engine<'_> {
    /// After the last log: the scripts that delete what the kept keys still hold with
    /// the expiry sentinel (see [`crate::expiry`]), each on its key's connection. They
    /// may run twice (a resumed run sends them again): they only delete what still has
    /// the sentinel.
    fn cleanup(&mut self, inputs: &Inputs) {
        let Some(last) = inputs.files.len().checked_sub(1) else { return };
        let pos = Position { file: last, offset: inputs.files[last].data().len() as u64 };
        let (mut buf, mut ends) = (Vec::new(), Vec::new());
        for k in std::mem::take(&mut self.kept) {
            let Some(db) = self.dest.db(k.db) else { continue };
            buf.clear();
            ends.clear();
            crate::expiry::encode_cleanup(&mut buf, &k, &mut ends);
            self.report.stats.commands += ends.len() as u64;
            let conn = self.dest.conn_of(&k.key);
            self.route(conn, Some(db), &buf, 0, &ends, Origin { pos, resendable: true, slot: None });
        }
        self.drain_all();
    }
}

/// Whether a snapshot still being written can be applied as its bytes come, or why not:
/// what is otherwise found before the first write (the dbs a destination with db 0 only
/// refuses, the keys it already has) would be found too late.
fn streams(cfg: &Config, dest: &dyn dest::Destination) -> Result<(), String> {
    if cfg.dry_run {
        return Err("--dry-run".into());
    }
    if cfg.on_existing != OnExisting::Replace {
        return Err(format!("--on-existing {:?} looks up the snapshot's keys first", cfg.on_existing).to_lowercase());
    }
    // Every db the snapshot may hold, as the filters leave them: those known up front,
    // or any (the first few stand for all: a destination with db 0 only refuses every
    // other db that --db-map leaves alone).
    let selected = |d: &u64| cfg.filter.dbs.is_empty() || cfg.filter.dbs.contains(d);
    let dbs: Vec<u64> = match &cfg.source_dbs {
        Some(dbs) => dbs.iter().copied().filter(selected).collect(),
        None if !cfg.filter.dbs.is_empty() => cfg.filter.dbs.clone(),
        None => (0..16).chain([u32::MAX as u64]).collect(),
    };
    match dbs.iter().find(|&&d| dest.db(d).is_none()) {
        Some(d) => Err(format!(
            "{} has only db 0 and the source may have data in db {d} (--db or --db-map decides up front)",
            dest.kind()
        )),
        None => Ok(()),
    }
}

/// A new run's id (it names the applied keys of its log transactions).
fn fresh_run_id() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ ((std::process::id() as u64) << 40)
}

/// What decides the commands sent, for the checkpoint (not the time of day).
fn options_id(cfg: &Config, t: &translate::Config, until: Option<crate::aof::Until>) -> String {
    let f = &cfg.filter;
    format!(
        "destination={}:{} mode={:?} target={} max_args={} max_bytes={} restore_max_bytes={} keep_expired={} margin={} \
         drop_field_ttl={} dbs={:?} globs={:?} regex={:?} types={:?} db_map={:?} on_existing={:?} allow_flush={} \
         until={:?}",
        cfg.endpoint.host,
        cfg.endpoint.port,
        t.mode,
        t.target,
        t.max_args,
        t.max_bytes,
        t.restore_max_bytes,
        t.keep_expired,
        t.expire_margin_ms,
        t.drop_field_ttl,
        f.dbs,
        f.globs.iter().map(|g| crate::rdb::escape_key(g.pattern())).collect::<Vec<_>>(),
        f.regex.as_ref().map(|r| r.as_str().to_string()),
        f.types,
        cfg.db_map,
        cfg.on_existing,
        cfg.allow_flush,
        until.map(|u| u.until_s)
    )
}
