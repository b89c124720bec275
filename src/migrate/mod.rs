//! `migrate`: the live source captured as a replica ([`crate::replica`]) and applied to
//! the destination ([`crate::replay`]) at once: the original redis-migration's job.
//!
//! Two threads. The capture reads the source and spools: the snapshot to the `-rdb`
//! file, then the command stream to the `-aof` file, whole units only, written as soon
//! as they are read ([`replica::Following`] says how far). This thread waits for the
//! snapshot, replays it through the same engine as `replay` (verified first: a snapshot
//! whose checksum is wrong writes nothing), then follows the `-aof` file as it grows
//! (`Follower`, a [`replay::Follow`]): its units go to the engine with the position they
//! have in the file, so the low-water mark is a place in the spool. The socket is read by
//! the capture alone, so a slow destination only makes the spool longer, never the
//! source's output buffer for us.
//!
//! It ends when the capture ends (a signal, `--duration`, a lost source) and everything
//! spooled is applied, or with `--until-synced` once the lag is zero.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod cutover;

use crate::aof::LogReader;
use crate::input::{Flow, Inputs, Spec};
use crate::net::{Answer, Link};
use crate::replay::{self, Follow, Followed};
use crate::replica::{self, CaptureError, Following};

/// A migration, fully decided.
#[derive(Debug, Clone)]
pub struct Config {
    /// The capture (`follow` is set by [`run`]).
    pub capture: replica::Config,
    /// The replay (its inputs are the spooled snapshot).
    pub replay: replay::Config,
    /// Stop once the snapshot is applied and nothing received is left to apply, with the
    /// source's offset reached where `INFO` tells it.
    pub until_synced: bool,
    /// Start over with a new snapshot even where the spool's state could continue.
    pub resync: bool,
    /// `--cutover`: pause, drain, verify, go/no-go.
    pub cutover: Option<Cutover>,
    /// The spool is the tool's own (no `-aof` given): the applied part of it is freed
    /// (a hole punched) each time this many more bytes are applied and checkpointed.
    pub trim_every: Option<u64>,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// `--cutover`, decided.
#[derive(Debug, Clone)]
pub struct Cutover {
    /// `CLIENT PAUSE … WRITE` (else a quiet period of `quiet_ms`).
    pub pause: bool,
    /// Pause once the lag is at most this many bytes.
    pub lag_bytes: u64,
    pub pause_ms: u64,
    pub quiet_ms: u64,
    /// What is compared before the verdict.
    pub verify: Verify,
    /// `CLIENT KILL TYPE normal SKIPME yes` on the source just before the pause lifts.
    pub kill_clients: bool,
    /// The verdict as one JSON line.
    pub json: bool,
    /// Which keys are compared (the migration's own filters).
    pub filter: crate::filter::Filter,
    pub plan: crate::pipeline::Plan,
    pub destination: crate::net::Endpoint,
}

/// What a cutover compares, destination against source, before its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Every key the filters select (the diff engine, live to live).
    All,
    /// The keys the stream touched during this run, and `sample` keys more picked at
    /// random on the source (`RANDOMKEY`); every key when more were touched than
    /// [`cutover::MAX_TOUCHED`] or a command's keys could not be known.
    Touched {
        sample: usize,
    },
    None,
}

/// What a migration did.
#[derive(Debug)]
pub struct Report {
    pub capture: replica::Report,
    pub replay: replay::Report,
    /// Of a cluster source: which master's migration (`slot<first slot>`).
    pub shard: Option<String>,
    /// Links to the source this run (more than one after a lost link).
    pub source_links: u32,
    /// `--until-synced` saw the lag at zero after this long.
    pub synced_after: Option<Duration>,
    /// Log units handed to the engine.
    pub log_units: u64,
    /// The followed log could not be read (it names the place).
    pub log_error: Option<String>,
    /// `--resync`: destination keys the new snapshot no longer has, deleted.
    pub stale_deleted: Option<u64>,
    /// `--cutover`: the verdict, as printed.
    pub verdict: Option<serde_json::Value>,
    /// Log units applied after a go while the pause lifted.
    pub after_pause_units: Option<u64>,
    pub wall: Duration,
}

impl Report {
    /// 0 everything applied and the capture ended as asked; 1 the source went away (and
    /// did not come back), the destination rejected commands, or a cutover said no-go; 2
    /// the replay or the capture could not go on (bad bytes, a file, a resharded source).
    pub fn exit_code(&self) -> i32 {
        let r = self.replay.exit_code();
        let no_go = self.verdict.as_ref().is_some_and(|v| v["verdict"] != "go");
        if r == 2 || self.log_error.is_some() || (self.capture.failed && !self.capture.lost_source) {
            2
        } else if r == 1 || self.capture.failed || no_go {
            1
        } else {
            0
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let mut v = self.replay.json();
        if let Some(o) = v.as_object_mut() {
            o.insert("source".into(), self.capture.to_json());
            o.insert("shard".into(), self.shard.clone().into());
            o.insert("source_links".into(), self.source_links.into());
            o.insert("log_units".into(), self.log_units.into());
            o.insert("synced_after_s".into(), self.synced_after.map(|d| d.as_secs_f64()).into());
            o.insert("log_error".into(), self.log_error.clone().into());
            o.insert("stale_deleted".into(), self.stale_deleted.into());
            o.insert("verdict".into(), self.verdict.clone().unwrap_or(serde_json::Value::Null));
            o.insert("after_pause_units".into(), self.after_pause_units.into());
            o.insert("wall_s".into(), self.wall.as_secs_f64().into());
        }
        v
    }

    pub fn text(&self) -> String {
        let c = &self.capture;
        let s = &c.state;
        let how = match c.continued_from {
            Some(o) => format!("continued from offset {o} (+CONTINUE, no new snapshot)"),
            None => format!("full synchronization, snapshot {} bytes ({})", c.snapshot_bytes, c.framing),
        };
        let mut o = format!(
            "source: replication id {}, {how}, snapshot at offset {}, stream to offset {} (db {}), {} commands; \
             stopped: {}\n",
            s.replid, s.snapshot_offset, s.offset, s.db, c.commands, c.stopped
        );
        if self.replay.snapshot_streamed {
            o.push_str("the snapshot was applied while it arrived\n");
        }
        if let Some(n) = self.stale_deleted {
            o.push_str(&format!("--resync: {n} destination keys the new snapshot no longer has were deleted\n"));
        }
        if let Some(d) = self.synced_after {
            o.push_str(&format!("in sync after {:.2} s\n", d.as_secs_f64()));
        }
        if let Some(e) = &self.log_error {
            o.push_str(&format!("the spooled log: {e}\n"));
        }
        o.push_str(&self.replay.text());
        o
    }
}

/// Why a migration could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Replay(#[from] replay::Error),
    #[error("the spooled snapshot: {0}")]
    Input(String),
    #[error("{0}")]
    Resume(String),
    #[error("the capture thread panicked")]
    Panicked,
    /// Applying the snapshot as it came failed (the message says how many keys were
    /// written); the capture was stopped.
    #[error("{0}")]
    Applying(String),
    /// The capture ended before the snapshot was whole, which was being applied as it
    /// came: some of its keys are written.
    #[error(
        "{cause}; {keys} keys of the snapshot, applied as it came, were already written to the destination \
         (the next run takes a new snapshot; with --resync it also deletes what the source no longer has)"
    )]
    SnapshotCut { cause: CaptureError, keys: u64 },
}

/// Where the replay's checkpoint of a migration lives: `<state>.applied` with `--state`,
/// else beside the `-aof` spool (`<aof>.applied`).
pub fn checkpoint_path(capture: &replica::Config) -> PathBuf {
    let mut s = capture.state.as_ref().unwrap_or(&capture.aof).as_os_str().to_owned();
    s.push(".applied");
    PathBuf::from(s)
}

/// Runs a migration (see the module's documentation).
pub fn run(cfg: &Config) -> Result<Vec<Report>, Error> {
    let topology = replica::cluster_of(&cfg.capture.source, cfg.replay.timeout).map_err(Error::Resume)?;
    let sources: Vec<crate::net::Endpoint> = match &topology {
        Some(t) => t.masters.iter().map(|m| m.node.endpoint(&cfg.capture.source)).collect(),
        None => vec![cfg.capture.source.clone()],
    };
    if let Some(c) = &cfg.cutover {
        cutover::possible(c, &sources).map_err(Error::Resume)?;
    }
    if cfg.resync {
        // Before any source's new snapshot: the marks of earlier runs are of no use now.
        remove_old_marks(&cfg.replay)?;
    }
    let board = cfg.cutover.clone().map(|c| cutover::Board::new(c, sources));
    // One source failing for good stops them all: half a cluster is no migration.
    let abort = AtomicBool::new(false);
    let mut reports = std::thread::scope(|s| {
        let coordinator = board.as_ref().map(|b| {
            let stopped = || abort.load(Ordering::Acquire) || replica::STOP.load(Ordering::Relaxed);
            s.spawn(move || cutover::coordinate(b, &stopped, cfg.progress))
        });
        let result = match &topology {
            Some(t) => run_cluster(cfg, t, &abort, board.as_ref()),
            None => run_shard(cfg, None, &abort, board.as_ref().map(|b| (b, 0))).map(|r| vec![r]),
        };
        if let Some(b) = &board {
            b.gone.store(true, Ordering::Release);
        }
        if let Some(h) = coordinator {
            let _ = h.join();
        }
        result
    })?;
    if let Some(v) = board.as_ref().and_then(|b| b.verdict()) {
        for r in &mut reports {
            r.verdict = Some(v.json.clone());
        }
    }
    Ok(reports)
}

/// A master of a source cluster, as one migration of its own.
#[derive(Debug, Clone)]
struct Shard {
    /// How its files and lines are named: `slot<first slot>` (the shard's first slot
    /// stays with it across failovers, where the master's id and address change).
    name: String,
    first_slot: u16,
    /// Nodes to ask for the topology when its master is lost.
    seeds: Vec<crate::net::Endpoint>,
    /// The slots it served when the migration started, by slot.
    owned: Vec<bool>,
}

/// A cluster source: one migration per master, in parallel, each with its own link,
/// spool, state and checkpoint, into the one destination.
fn run_cluster(
    cfg: &Config,
    t: &crate::net::cluster::Topology,
    abort: &AtomicBool,
    board: Option<&cutover::Board>,
) -> Result<Vec<Report>, Error> {
    let template = &cfg.capture.source;
    let seeds: Vec<crate::net::Endpoint> = t.nodes().map(|n| n.endpoint(template)).collect();
    let shards: Vec<(Config, Shard)> = (0..t.masters.len())
        .map(|m| {
            let first_slot = t.first_slot(m).unwrap_or(0);
            let name = format!("slot{first_slot}");
            let mut c = cfg.clone();
            c.capture.source = t.masters[m].node.endpoint(template);
            c.capture.rdb = replica::tagged(&cfg.capture.rdb, &name);
            c.capture.aof = replica::tagged(&cfg.capture.aof, &name);
            c.capture.state = cfg.capture.state.as_ref().map(|p| replica::tagged(p, &name));
            c.capture.cluster = true;
            let owned = (0..crate::net::cluster::SLOTS as u16).map(|s| t.master_of(s) == Some(m)).collect();
            (c, Shard { name, first_slot, seeds: seeds.clone(), owned })
        })
        .collect();
    if cfg.progress {
        let names: Vec<String> = shards.iter().map(|(c, s)| format!("{} ({})", s.name, c.capture.source)).collect();
        eprintln!("migrate: a Redis Cluster of {} masters: {}", shards.len(), names.join(", "));
    }
    let results: Vec<Result<Report, Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = shards
            .iter()
            .enumerate()
            .map(|(i, (c, shard))| s.spawn(move || run_shard(c, Some(shard), abort, board.map(|b| (b, i)))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Err(Error::Panicked))).collect()
    });
    let mut reports = Vec::new();
    for (r, (_, shard)) in results.into_iter().zip(&shards) {
        match r {
            Ok(mut r) => {
                r.shard = Some(shard.name.clone());
                reports.push(r);
            }
            Err(e) => return Err(Error::Resume(format!("{}: {e}", shard.name))),
        }
    }
    Ok(reports)
}

/// How long a lost source (or, in a cluster, its shard's successor) is waited for.
const SOURCE_RETRY_FOR: Duration = Duration::from_secs(60);

/// One source (a standalone server, or one master of a cluster) migrated.
/// `abort` is raised when this source's capture fails for good, and stops this one when
/// another raises it.
fn run_shard(
    cfg: &Config,
    shard: Option<&Shard>,
    abort: &AtomicBool,
    board: Option<(&cutover::Board, usize)>,
) -> Result<Report, Error> {
    let started = Instant::now();
    let following = Arc::new(Following::default());
    let mut ccfg = cfg.capture.clone();
    ccfg.follow = Some(following.clone());
    ccfg.resume = !cfg.resync;
    let checkpoint = checkpoint_path(&cfg.capture);
    let mut rcfg = cfg.replay.clone();
    rcfg.checkpoint = Some(checkpoint.clone());
    rcfg.keep_marks = true;
    // The dbs the snapshot will hold: of a cluster node, db 0; else as the source's
    // `INFO keyspace` says now, where it may be asked (see `replay::Config::source_dbs`).
    rcfg.source_dbs = if shard.is_some() { Some(vec![0]) } else { dbs_with_keys(&cfg.capture.source) };
    let stop_capture = AtomicBool::new(false);
    let capture_done = AtomicBool::new(false);
    let show = cfg.progress;
    let prefix = shard.map_or("migrate".to_string(), |s| format!("migrate[{}]", s.name));
    let result = std::thread::scope(|s| {
        let capture = s.spawn(|| {
            let mut progress = |m: &str| {
                if show {
                    eprintln!("{prefix}: capture: {m}");
                }
            };
            let r = capture_following(ccfg, shard, &stop_capture, &following, &mut progress);
            if !matches!(&r, Ok((report, _)) if !report.failed) && !stop_capture.load(Ordering::Acquire) {
                abort.store(true, Ordering::Release);
            }
            capture_done.store(true, Ordering::Release);
            r
        });
        // The snapshot as it comes (a full synchronization), or the spool as it was (the
        // source continued).
        let begun = || following.snapshot_ready.load(Ordering::Acquire) || following.snapshot.begun().is_some();
        while !begun() && !capture.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let replayed = if begun() {
            let flags = Flags {
                following: &following,
                capture_done: &capture_done,
                stop_capture: &stop_capture,
                abort,
                board,
                owned: shard.map(|s| s.owned.as_slice()),
            };
            Some(apply(cfg, &rcfg, &checkpoint, flags, started, &prefix))
        } else {
            None
        };
        // Whatever happened here, the capture stops and says how it ended.
        stop_capture.store(true, Ordering::Release);
        let captured = capture.join().map_err(|_| Error::Panicked)?;
        match (replayed, captured) {
            (None, Err(e)) => Err(e.into()),
            (None, Ok(_)) => Err(Error::Capture(CaptureError::Stopped)),
            (Some(Err(e)), _) => Err(e),
            // The replay failed while the snapshot came (and so stopped the capture):
            // its failure says why, and what was written.
            (Some(Ok((replay, _))), Err(CaptureError::Stopped))
                if replay.failure.is_some() && !replica::STOP.load(Ordering::Relaxed) =>
            {
                Err(Error::Applying(replay.failure.unwrap_or_default()))
            }
            // The capture failed (or a signal stopped it) while the snapshot came, after
            // some of it was applied.
            (Some(Ok((replay, _))), Err(e))
                if replay.snapshot_streamed
                    && replay.stats.keys > 0
                    && matches!(following.snapshot.now(), crate::source::Grown::Broken(_)) =>
            {
                Err(Error::SnapshotCut { cause: e, keys: replay.stats.keys })
            }
            (Some(Ok(_)), Err(e)) => Err(e.into()),
            (Some(Ok((replay, f))), Ok((capture, links))) => Ok(Report {
                capture,
                replay,
                shard: None,
                source_links: links,
                synced_after: f.synced_after,
                log_units: f.units,
                log_error: f.error,
                stale_deleted: f.stale_deleted,
                verdict: None,
                after_pause_units: f.after_pause_units,
                wall: started.elapsed(),
            }),
        }
    });
    result
}

/// The capture, and again after a lost link once the snapshot is in: the same source
/// (a restart, a network cut), or in a cluster the master serving the shard's first slot
/// now (a failover), asked to continue (`PSYNC` with the old id: a promoted replica
/// accepts it up to its offset), for up to [`SOURCE_RETRY_FOR`]. The report is the last
/// link's, with the commands of all; the number of links comes with it.
fn capture_following(
    mut ccfg: replica::Config,
    shard: Option<&Shard>,
    stop: &AtomicBool,
    following: &Following,
    progress: &mut dyn FnMut(&str),
) -> Result<(replica::Report, u32), CaptureError> {
    let mut links = 1;
    let mut commands = 0;
    let mut linked_at = Instant::now();
    let mut report = replica::capture(&ccfg, stop, progress)?;
    let mut seeds: Vec<crate::net::Endpoint> = shard.map_or(Vec::new(), |s| s.seeds.clone());
    while report.lost_source && following.snapshot_ready.load(Ordering::Acquire) {
        commands += report.commands;
        progress(&format!("lost the source ({}); asking it again to continue", report.stopped));
        let deadline = Instant::now() + SOURCE_RETRY_FOR;
        // At once the first time (the backlog keeps only so much), unless the link that
        // broke had lasted only moments: a source that continues and drops us again.
        let mut first = linked_at.elapsed() >= Duration::from_secs(5);
        let next = loop {
            if stop.load(Ordering::Acquire) || replica::STOP.load(Ordering::Relaxed) {
                break None;
            }
            if !std::mem::take(&mut first) {
                std::thread::sleep(Duration::from_millis(500));
            }
            if let Some(shard) = shard {
                // The master serving the shard now, from any node that answers.
                match crate::net::cluster::Topology::refresh(seeds.iter(), Duration::from_secs(2)) {
                    Ok(t) => {
                        if let Some(m) = t.master_of(shard.first_slot) {
                            ccfg.source = t.masters[m].node.endpoint(&ccfg.source);
                        }
                        let template = ccfg.source.clone();
                        seeds = t.nodes().map(|n| n.endpoint(&template)).collect();
                    }
                    Err(_) if Instant::now() < deadline => continue,
                    Err(_) => break None,
                }
                // A node that has not heard of the failover yet names the old master,
                // which now replicates the new one: it would serve us as a chained
                // replica. Wait until the master named is one by its own account.
                if is_replica(&ccfg.source) && Instant::now() < deadline {
                    continue;
                }
            }
            ccfg.resume = true;
            linked_at = Instant::now();
            match replica::capture(&ccfg, stop, progress) {
                Err(CaptureError::Connect { .. }) if Instant::now() < deadline => continue,
                Err(CaptureError::Stopped) => break None,
                r => break Some(r),
            }
        };
        match next {
            Some(r) => {
                report = r?;
                links += 1;
            }
            None => break,
        }
    }
    report.commands += commands;
    Ok((report, links))
}

/// What the capture and the follower of one source share.
#[derive(Clone, Copy)]
struct Flags<'a> {
    following: &'a Following,
    /// The capture has ended for good (its last link's report is on the way).
    capture_done: &'a AtomicBool,
    /// The follower asks the capture to stop.
    stop_capture: &'a AtomicBool,
    /// Another source of the same cluster failed for good.
    abort: &'a AtomicBool,
    /// `--cutover`: the board, and this source's lane on it.
    board: Option<(&'a cutover::Board, usize)>,
    /// Of a cluster source: the slots this source serves (`--resync` looks at those only).
    owned: Option<&'a [bool]>,
}

/// The dbs that hold keys on `node`, from `INFO keyspace` (`None` when it cannot be asked).
/// A key written to another db before the snapshot is taken is refused as it comes
/// (counted and reported), not up front.
fn dbs_with_keys(node: &crate::net::Endpoint) -> Option<Vec<u64>> {
    let mut link = Link::open(node, Duration::from_secs(2)).ok()?;
    let answer = link.call(&[b"INFO", b"keyspace"]);
    link.close();
    let Ok(Answer::Bulk(Some(text))) = answer else { return None };
    let text = String::from_utf8_lossy(&text);
    // `db<N>:keys=…,expires=…,avg_ttl=…`
    Some(text.lines().filter_map(|l| l.strip_prefix("db")?.split(':').next()?.parse().ok()).collect())
}

/// Whether `node` says it is a replica (`INFO replication`; `false` when it cannot be
/// asked).
fn is_replica(node: &crate::net::Endpoint) -> bool {
    let Ok(mut link) = Link::open(node, Duration::from_secs(2)) else { return false };
    let role = match link.call(&[b"INFO", b"replication"]) {
        Ok(Answer::Bulk(Some(t))) => String::from_utf8_lossy(&t).contains("role:slave"),
        _ => false,
    };
    link.close();
    role
}

/// The snapshot and the stream applied (the capture has the snapshot, or continued).
fn apply<'a>(
    cfg: &Config,
    rcfg: &replay::Config,
    checkpoint: &std::path::Path,
    flags: Flags<'a>,
    started: Instant,
    prefix: &str,
) -> Result<(replay::Report, Follower<'a>), Error> {
    let Flags { following, capture_done, stop_capture, abort, board, owned } = flags;
    if following.continued.load(Ordering::Acquire) {
        // The replay's checkpoint says what of the spool was applied; without it nothing
        // can be known, and going on could apply commands twice.
        if !checkpoint.exists() {
            return Err(Error::Resume(format!(
                "the source can continue, but {} (what was applied) is missing: run again with --resync",
                checkpoint.display()
            )));
        }
    } else {
        // A new snapshot: an older checkpoint, or trim, is of other files.
        let _ = std::fs::remove_file(trim_path(&cfg.capture.aof));
        match std::fs::remove_file(checkpoint) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Resume(format!("{}: {e}", checkpoint.display())))
            }
            _ => {}
        }
    }
    // A new snapshot is applied while its bytes arrive: its structure is checked as it
    // comes and its checksum at its end (damage stops the run, and the report says how
    // many keys came before it); a spool the source continues is read as a whole file.
    let spec = Spec { rdb: vec![cfg.capture.rdb.clone()], ..Spec::default() };
    let inputs = if following.continued.load(Ordering::Acquire) {
        Inputs::open(&spec)
    } else {
        // A file that cannot be mapped ahead of its bytes (address space limited, as
        // under `ulimit -v`) is opened once whole.
        Inputs::growing(cfg.capture.rdb.clone(), following.snapshot.clone()).or_else(|_| {
            following.snapshot.wait_end();
            Inputs::open(&spec)
        })
    }
    .map_err(|e| Error::Input(e.to_string()))?;
    let mut follower = Follower::new(cfg, following, capture_done, stop_capture, started);
    follower.prefix = prefix.to_string();
    follower.abort = Some(abort);
    follower.board = board;
    if cfg.resync && !following.continued.load(Ordering::Acquire) {
        // The stale keys are those the whole new snapshot does not have.
        inputs.wait_whole();
        follower.stale_deleted = Some(remove_stale(rcfg, &inputs, owned)?);
    }
    let report = replay::run_following(rcfg, &inputs, Some(&mut follower))?;
    Ok((report, follower))
}

/// `--resync`: the destination keys (of those the filters select) that the new snapshot
/// no longer has, deleted before it is applied, so that nothing stale is left silently.
/// Keys are found with `SCAN` on the destination (each master of a cluster) and looked up
/// among the snapshot's key hashes ([`crate::duplicates::key_set`]); a destination db
/// takes the keys of every source db `--db-map` sends to it. Of a cluster source, each
/// master's migration looks only at the keys of the slots it serves (`owned`). The tool's
/// own keys are left to [`remove_old_marks`].
fn remove_stale(rcfg: &replay::Config, inputs: &Inputs, owned: Option<&[bool]>) -> Result<u64, Error> {
    let keys = crate::duplicates::key_set(inputs, &rcfg.plan, &rcfg.filter).map_err(|e| Error::Input(e.to_string()))?;
    // The source dbs whose keys a destination db holds.
    let sources_of = |db: u64| -> Vec<u64> {
        let mut v: Vec<u64> = rcfg.db_map.iter().filter(|(_, &d)| d == db).map(|(&s, _)| s).collect();
        if !rcfg.db_map.contains_key(&db) {
            v.push(db);
        }
        v
    };
    scan_delete(rcfg, &|db, k| {
        if k.starts_with(b"redis-migration:") || !rcfg.filter.accepts_key(k) {
            return false;
        }
        if owned.is_some_and(|o| !o[crate::aof::keys::slot(k) as usize]) {
            return false;
        }
        let sources: Vec<u64> = sources_of(db).into_iter().filter(|&s| rcfg.filter.accepts_db(s)).collect();
        !sources.is_empty() && !sources.iter().any(|&s| keys.contains(&crate::duplicates::key_hash(s, k)))
    })
}

/// `--resync`: the applied marks of earlier runs (`redis-migration:applied:*`), deleted
/// before any source's new snapshot is applied.
fn remove_old_marks(rcfg: &replay::Config) -> Result<u64, Error> {
    scan_delete(rcfg, &|_, k| k.starts_with(b"redis-migration:applied:"))
}

/// Deletes the destination's keys that `pick(db, key)` picks: SCAN on each node (every
/// master of a cluster), DEL pipelined page by page. Twemproxy has no SCAN: refused.
fn scan_delete(rcfg: &replay::Config, pick: &dyn Fn(u64, &[u8]) -> bool) -> Result<u64, Error> {
    use crate::resp::reply::Reply;
    let dest_err =
        |e: crate::net::LinkError| Error::Resume(format!("--resync, finding stale keys on {}: {e}", rcfg.endpoint));
    let probe = replay::probe(&rcfg.endpoint, rcfg.timeout, false, rcfg.kind).map_err(dest_err)?;
    let (nodes, selects) = match probe.kind {
        replay::DestKind::Twemproxy => {
            return Err(Error::Resume(
                "--resync through twemproxy: it has no SCAN, so the keys the new snapshot no longer has cannot be \
                 found; resynchronize into the servers behind it"
                    .into(),
            ))
        }
        replay::DestKind::Cluster => {
            let t = probe.topology.as_ref();
            (t.map_or(Vec::new(), |t| t.masters.iter().map(|m| m.node.endpoint(&rcfg.endpoint)).collect()), false)
        }
        _ => (vec![rcfg.endpoint.clone()], true),
    };
    let mut deleted = 0u64;
    for node in nodes {
        let mut link = Link::open(&node, rcfg.timeout).map_err(dest_err)?;
        let dbs: Vec<u64> = if selects {
            match link.call(&[b"INFO", b"keyspace"]).map_err(dest_err)? {
                Answer::Bulk(Some(text)) => String::from_utf8_lossy(&text)
                    .lines()
                    .filter_map(|l| l.strip_prefix("db")?.split(':').next()?.parse().ok())
                    .collect(),
                _ => vec![0],
            }
        } else {
            vec![0]
        };
        for db in dbs {
            if selects {
                link.call(&[b"SELECT", db.to_string().as_bytes()]).map_err(dest_err)?;
            }
            let mut cursor = b"0".to_vec();
            loop {
                link.send_command(&[b"SCAN", &cursor, b"COUNT", b"1000"]).map_err(dest_err)?;
                let page = link.next_reply(|r: &Reply<'_>| crate::live::read_scan_reply(r)).map_err(dest_err)?;
                let (next, page) = page.map_err(|e| {
                    let msg = match e {
                        Ok(m) => String::from_utf8_lossy(&m).into_owned(),
                        Err(what) => what,
                    };
                    Error::Resume(format!("--resync: SCAN on {node} answered {msg}"))
                })?;
                let doomed: Vec<&Vec<u8>> = page.iter().filter(|k| pick(db, k)).collect();
                if !doomed.is_empty() {
                    let mut out = Vec::new();
                    for k in &doomed {
                        crate::resp::encode::command(&mut out, &[b"DEL", k]);
                    }
                    link.send(&out).map_err(dest_err)?;
                    for _ in &doomed {
                        let answer = link
                            .next_reply(|r| r.first_error().map(|e| String::from_utf8_lossy(e).into_owned()))
                            .map_err(dest_err)?;
                        if let Some(e) = answer {
                            return Err(Error::Resume(format!("--resync: DEL on {node} answered {e}")));
                        }
                    }
                    deleted += doomed.len() as u64;
                }
                if next == b"0" {
                    break;
                }
                cursor = next;
            }
        }
        link.close();
    }
    Ok(deleted)
}

/// Most bytes of the spool read at once.
const READ_BYTES: usize = 8 << 20;
/// How often a quiet follower looks again.
const IDLE: Duration = Duration::from_millis(2);

/// The `-aof` spool read as it grows, unit by unit, into the engine.
struct Follower<'a> {
    path: PathBuf,
    file: Option<File>,
    /// Bytes of the log from `base` on, not yet handed over (at most a unit's start).
    buf: Vec<u8>,
    base: u64,
    reader: LogReader,
    following: &'a Following,
    capture_done: &'a AtomicBool,
    stop_capture: &'a AtomicBool,
    until_synced: bool,
    progress: bool,
    started: Instant,
    /// The source, asked `INFO replication` for its offset (`None`: not allowed).
    info: Option<Link>,
    source: crate::net::Endpoint,
    synced_after: Option<Duration>,
    units: u64,
    error: Option<String>,
    /// `--resync`: stale destination keys deleted before the new snapshot.
    stale_deleted: Option<u64>,
    /// `--cutover`: the board, and this source's lane on it.
    board: Option<(&'a cutover::Board, usize)>,
    /// `--verify touched`: the keys the units of this run touched (db, key); `None` once
    /// there are too many or one command's keys are unknown.
    touched: Option<cutover::Touched>,
    after_pause_units: Option<u64>,
    /// How its progress lines start (`migrate`, or `migrate[slot0]` for a cluster's master).
    prefix: String,
    /// Raised when another master's capture of the same cluster failed for good.
    abort: Option<&'a AtomicBool>,
    /// See [`Config::trim_every`]; the spool is freed up to `trimmed`.
    trim_every: Option<u64>,
    trimmed: u64,
    /// Unit boundaries passed and the db there, a few per `trim_every`: where a trim may
    /// cut, and the db a resume starts in there.
    boundaries: std::collections::VecDeque<(u64, u64)>,
    /// The replay's checkpoint (what a resume starts from: nothing before it is freed).
    checkpoint: PathBuf,
}

impl<'a> Follower<'a> {
    fn new(
        cfg: &Config,
        following: &'a Following,
        capture_done: &'a AtomicBool,
        stop_capture: &'a AtomicBool,
        started: Instant,
    ) -> Follower<'a> {
        Follower {
            path: cfg.capture.aof.clone(),
            file: None,
            buf: Vec::new(),
            base: 0,
            reader: LogReader::new(),
            following,
            capture_done,
            stop_capture,
            until_synced: cfg.until_synced,
            progress: cfg.progress,
            started,
            info: None,
            source: cfg.capture.source.clone(),
            synced_after: None,
            units: 0,
            error: None,
            stale_deleted: None,
            board: None,
            touched: match &cfg.cutover {
                Some(c) if matches!(c.verify, Verify::Touched { .. }) => Some(std::collections::HashSet::new()),
                _ => None,
            },
            after_pause_units: None,
            prefix: "migrate".into(),
            abort: None,
            trim_every: cfg.trim_every,
            trimmed: 0,
            boundaries: std::collections::VecDeque::new(),
            checkpoint: checkpoint_path(&cfg.capture),
        }
    }

    /// Reads what the spool has beyond the buffer, up to `upto`; whether anything came.
    fn read_more(&mut self, upto: u64) -> Result<bool, String> {
        let have = self.base + self.buf.len() as u64;
        if upto <= have {
            return Ok(false);
        }
        if self.file.is_none() {
            self.file = Some(File::open(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?);
        }
        let Some(file) = &self.file else { return Ok(false) };
        let want = (upto - have).min(READ_BYTES as u64) as usize;
        let len = self.buf.len();
        self.buf.resize(len + want, 0);
        let n = file.read_at(&mut self.buf[len..], have).map_err(|e| format!("{}: {e}", self.path.display()));
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(len);
                return Err(e);
            }
        };
        self.buf.truncate(len + n);
        Ok(n > 0)
    }

    /// Hands every whole unit in the buffer to `log`; `false`: stop.
    fn hand_over(&mut self, log: &mut dyn Followed) -> Result<bool, String> {
        let mut go_on = true;
        let mut argv = Vec::new();
        loop {
            match self.reader.next_with(&self.buf, &mut argv) {
                Ok(Some(unit)) => {
                    let end = self.base + self.reader.position() as u64;
                    self.units += 1;
                    if self.touched.is_some() {
                        touch(&mut self.touched, &unit);
                    }
                    let flow = log.unit(&unit, self.base, end);
                    if let crate::aof::Unit::One(c) = unit {
                        argv = c.argv;
                        argv.clear();
                    }
                    if flow == Flow::Stop {
                        go_on = false;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(format!("{} at byte {}: {}", self.path.display(), self.base + e.at as u64, e.msg))
                }
            }
        }
        let pos = self.reader.position();
        if pos > 0 {
            self.buf.drain(..pos);
            self.base += pos as u64;
            self.reader = LogReader::continuing_in(self.reader.db());
        }
        Ok(go_on)
    }

    /// Walks the log up to `offset` (a unit boundary a resumed run starts at) without
    /// applying it: the db selected there is the reader's.
    fn skip_to(&mut self, offset: u64) -> Result<(), String> {
        // The part before a trim is holes: start at the trim's boundary, in its db.
        if let Some((from, db)) = read_trim(&trim_path(&self.path)).filter(|&(from, _)| from <= offset) {
            self.base = from;
            self.trimmed = from;
            self.buf.clear();
            self.reader = LogReader::continuing_in(db);
        }
        let mut argv = Vec::new();
        while self.base < offset {
            if replica::STOP.load(Ordering::Relaxed) {
                return Err("stopped while finding where to resume".into());
            }
            let upto = offset.min(self.base + self.buf.len() as u64 + READ_BYTES as u64);
            if !self.read_more(upto)? && self.base + (self.buf.len() as u64) < offset {
                return Err(format!("{} ends before byte {offset}, where the checkpoint resumes", self.path.display()));
            }
            loop {
                let at = self.base + self.reader.position() as u64;
                if at >= offset {
                    break;
                }
                match self.reader.next_with(&self.buf, &mut argv) {
                    Ok(Some(crate::aof::Unit::One(c))) => {
                        argv = c.argv;
                        argv.clear();
                    }
                    Ok(Some(_)) => {}
                    // The data reaches the checkpoint but the unit around it does not end
                    // there: a MULTI block whose commands were applied one by one (into a
                    // cluster, across slots). It is handed over again from its start; the
                    // applied marks skip what already ran.
                    Ok(None) if self.base + self.buf.len() as u64 >= offset => {
                        let pos = self.reader.position();
                        self.buf.drain(..pos);
                        self.base += pos as u64;
                        self.reader = LogReader::continuing_in(self.reader.db());
                        return Ok(());
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Err(format!("{} at byte {}: {}", self.path.display(), self.base + e.at as u64, e.msg))
                    }
                }
            }
            let pos = self.reader.position();
            argv = Vec::new();
            if pos > 0 {
                self.buf.drain(..pos);
                self.base += pos as u64;
                self.reader = LogReader::continuing_in(self.reader.db());
            }
            if self.base > offset {
                return Err(format!(
                    "{}: byte {offset}, where the checkpoint resumes, is inside a command",
                    self.path.display()
                ));
            }
        }
        Ok(())
    }

    /// Frees the applied part of the tool's own spool (see [`Config::trim_every`]): up to
    /// the last boundary passed that the replay's checkpoint is past, once that is
    /// `trim_every` beyond the last trim. The boundary and its db are written first
    /// (`<aof>.trimmed`), so that a resume starts there.
    fn trim(&mut self) {
        let Some(every) = self.trim_every else { return };
        if self.boundaries.back().is_none_or(|&(b, _)| self.base >= b + (every / 4).max(1)) {
            self.boundaries.push_back((self.base, self.reader.db()));
        }
        let Some(&(last, _)) = self.boundaries.back() else { return };
        if last < self.trimmed + every {
            return;
        }
        let Ok(Some(ck)) = crate::replay::checkpoint::Checkpoint::load(&self.checkpoint) else { return };
        if ck.resume.file == 0 {
            return;
        }
        let Some(&(cut, db)) = self.boundaries.iter().rev().find(|(b, _)| *b <= ck.resume.offset) else { return };
        if cut < self.trimmed + every {
            return;
        }
        if write_trim(&trim_path(&self.path), cut, db).is_ok() && replica::spool::punch_hole(&self.path, cut).is_ok() {
            self.trimmed = cut;
            while self.boundaries.front().is_some_and(|&(b, _)| b < cut) {
                self.boundaries.pop_front();
            }
        }
    }

    /// The source's replication offset, where `INFO replication` is allowed: `Ok(None)`
    /// when the link failed (it is opened again next time), `Err` when the source refuses
    /// INFO. The source is the one the capture is linked to now (after a failover, the
    /// new master).
    fn source_offset(&mut self) -> Result<Option<u64>, ()> {
        let now = self.following.source.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(now) = now.filter(|n| n.host != self.source.host || n.port != self.source.port) {
            self.source = now;
            self.info = None;
        }
        if self.info.is_none() {
            self.info = Link::open(&self.source, Duration::from_secs(5)).ok();
        }
        let Some(link) = self.info.as_mut() else { return Ok(None) };
        match link.call(&[b"INFO", b"replication"]) {
            Ok(Answer::Bulk(Some(text))) => {
                let text = String::from_utf8_lossy(&text);
                Ok(text.lines().find_map(|l| l.strip_prefix("master_repl_offset:")?.trim().parse().ok()))
            }
            Ok(Answer::Error(_)) => Err(()),
            _ => {
                self.info = None;
                Ok(None)
            }
        }
    }
}

impl Follow for Follower<'_> {
    fn follow(&mut self, log: &mut dyn Followed) {
        // The snapshot was applied as it came: the spool begins once it is whole.
        while !self.following.snapshot_ready.load(Ordering::Acquire) {
            if self.capture_done.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Err(e) = self.skip_to(log.start()) {
            self.error = Some(e);
            return;
        }
        let mut last_shown = Instant::now();
        let mut last_check = Instant::now();
        let mut last_info = Instant::now() - Duration::from_secs(1);
        let mut source_offset = None;
        let mut info_allowed = true;
        // When each durable length was first seen: how old the oldest unapplied byte is.
        let mut seen: std::collections::VecDeque<(u64, Instant)> = std::collections::VecDeque::new();
        let mut phase = Phase::Following;
        loop {
            // Read `done` first: once the capture has ended, the file is whole.
            let done = self.capture_done.load(Ordering::Acquire);
            // Only what is durable is applied: a restart cuts the spool back to its state,
            // and must find everything applied still there.
            let written = self.following.durable.load(Ordering::Acquire);
            if seen.back().is_none_or(|&(w, _)| w < written) {
                seen.push_back((written, Instant::now()));
            }
            let upto = if done { std::fs::metadata(&self.path).map_or(written, |m| m.len()) } else { written };
            let came = match self.read_more(upto) {
                Ok(came) => came,
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            };
            match self.hand_over(log) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
            // What the reader walked over without a unit (a SELECT whose command was left
            // out of the spool) is behind the engine too.
            log.passed(self.base);
            if log.stopped() {
                return;
            }
            // While data keeps coming, the checks below still run now and then.
            if came && last_check.elapsed() < CHECK_EVERY {
                continue;
            }
            last_check = Instant::now();
            if self.abort.is_some_and(|a| a.load(Ordering::Acquire)) {
                self.stop_capture.store(true, Ordering::Release);
            }
            log.flush();
            self.trim();
            let at = self.base + self.buf.len() as u64;
            if done && at >= upto {
                return;
            }
            let applied = log.applied();
            while seen.front().is_some_and(|&(w, _)| w <= applied) {
                seen.pop_front();
            }
            let lag_s = seen.front().map_or(0.0, |(_, t)| t.elapsed().as_secs_f64());
            let info_every = if self.board.is_some() { CHECK_EVERY } else { Duration::from_secs(1) };
            let wants_info = (self.until_synced && self.synced_after.is_none())
                || self.progress
                || matches!(phase, Phase::Following) && self.board.is_some();
            if wants_info && info_allowed && last_info.elapsed() >= info_every {
                last_info = Instant::now();
                match self.source_offset() {
                    Ok(o) => source_offset = o,
                    Err(()) => {
                        source_offset = None;
                        info_allowed = false;
                    }
                }
            }
            let received = self.following.received.load(Ordering::Acquire);
            let partial = self.following.partial.load(Ordering::Acquire);
            // The pair read in the order it is published (length, then offset, each
            // Release): the offset first, then a length at least as new.
            let durable_offset = self.following.durable_offset.load(Ordering::Acquire);
            let written = self.following.durable.load(Ordering::Acquire);
            let behind_source = source_offset.map_or(0, |o: u64| o.saturating_sub(durable_offset));
            // Everything received is durable, and everything durable applied.
            let caught_up = applied >= written && at >= written && !partial && durable_offset >= received;
            if self.until_synced && self.synced_after.is_none() && caught_up && behind_source == 0 {
                self.synced_after = Some(self.started.elapsed());
                self.stop_capture.store(true, Ordering::Release);
            }
            if let Some((board, lane)) = self.board {
                let lane = &board.lanes[lane];
                lane.set_source(&self.source);
                let lag =
                    if source_offset.is_some() { behind_source + written.saturating_sub(applied) } else { u64::MAX };
                lane.lag.store(lag, Ordering::Release);
                lane.quiet.store(source_offset.is_some() && caught_up && behind_source == 0, Ordering::Release);
                if let Err(e) = self.cutover_step(log, board, lane, &mut phase, caught_up) {
                    self.error = Some(e);
                    self.stop_capture.store(true, Ordering::Release);
                }
            }
            if self.progress && last_shown.elapsed() >= Duration::from_secs(5) {
                last_shown = Instant::now();
                let source = source_offset.map_or(String::new(), |o| format!(", source at {o}"));
                eprintln!(
                    "{}: {} log units, {} bytes spooled, {} not yet applied ({lag_s:.1} s); received to offset \
                     {received}{source}",
                    self.prefix,
                    self.units,
                    written,
                    written.saturating_sub(applied)
                );
            }
            std::thread::sleep(IDLE);
        }
    }
}

/// Where a trim of the spool at `aof` is recorded: `<aof>.trimmed`.
fn trim_path(aof: &std::path::Path) -> PathBuf {
    let mut s = aof.as_os_str().to_owned();
    s.push(".trimmed");
    PathBuf::from(s)
}

/// A trim's boundary and the db there, if one was recorded.
fn read_trim(path: &std::path::Path) -> Option<(u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some((v["from"].as_u64()?, v["db"].as_u64()?))
}

/// Records a trim durably, before the hole is punched.
fn write_trim(path: &std::path::Path, from: u64, db: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp)?;
    f.write_all(serde_json::json!({"from": from, "db": db}).to_string().as_bytes())?;
    f.sync_all()?;
    crate::source::replace_durably(&tmp, path)
}

/// Notes the keys `unit` touches for `--verify touched`; gives up (every key will be
/// compared) past [`cutover::MAX_TOUCHED`] keys or at a command whose keys are not
/// known (FLUSHALL, FUNCTION, a module's).
fn touch(touched: &mut Option<cutover::Touched>, unit: &crate::aof::Unit<'_>) {
    use crate::aof::keys::{keys, Keys};
    let commands: &[crate::aof::Command<'_>] = match unit {
        crate::aof::Unit::One(c) => std::slice::from_ref(c),
        crate::aof::Unit::Multi(block) => block,
        crate::aof::Unit::Timestamp(_) => return,
    };
    let Some(set) = touched else { return };
    for c in commands {
        if c.is("MULTI") || c.is("EXEC") {
            continue;
        }
        match keys(&c.argv) {
            Keys::None => {}
            Keys::Some(ks) => set.extend(ks.iter().map(|k| (c.db, k.to_vec()))),
            Keys::Global | Keys::Unknown => {
                *touched = None;
                return;
            }
        }
    }
    if set.len() > cutover::MAX_TOUCHED {
        *touched = None;
    }
}

/// How often the follower looks at the lag and the cutover while data keeps coming.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Where this source's follower stands in a cutover (the coordinator does the rest).
enum Phase {
    Following,
    /// The source is paused (or quiet) at `target`: applying up to it.
    Draining {
        target: u64,
    },
    /// Drained, marks removed: waiting for the verdict.
    Waiting,
    /// Go, with the pause still on: following until it has lifted and a second passed.
    Lifting {
        lifts_at: Instant,
        units_at_go: u64,
    },
    /// The verdict is out; the rest is applied as the capture stops.
    Done,
}

impl Follower<'_> {
    /// One look at the cutover (see [`Phase`] and [`cutover`]).
    fn cutover_step(
        &mut self,
        log: &mut dyn Followed,
        board: &cutover::Board,
        lane: &cutover::Lane,
        phase: &mut Phase,
        caught_up: bool,
    ) -> Result<(), String> {
        if let Some(e) = board.error() {
            return Err(e);
        }
        match phase {
            Phase::Following => {
                if board.targets_set.load(Ordering::Acquire) {
                    *phase = Phase::Draining { target: lane.target.load(Ordering::Acquire) };
                }
            }
            Phase::Draining { target } => {
                let durable = self.following.durable_offset.load(Ordering::Acquire);
                if durable >= *target && caught_up {
                    log.remove_marks()?;
                    *lane.touched.lock().unwrap_or_else(|p| p.into_inner()) = self.touched.take();
                    lane.drained.store(true, Ordering::Release);
                    *phase = Phase::Waiting;
                }
            }
            Phase::Waiting => {
                if let Some(v) = board.verdict() {
                    // Go: the migration is done, its checkpoint and marks go at the end.
                    // No-go (or no verdict): they stay for the next run.
                    log.keep_marks(!v.go);
                    *phase = match (v.go, v.lifts_at) {
                        (true, Some(lifts_at)) => Phase::Lifting { lifts_at, units_at_go: self.units },
                        _ => {
                            self.stop_capture.store(true, Ordering::Release);
                            Phase::Done
                        }
                    };
                }
            }
            Phase::Lifting { lifts_at, units_at_go } => {
                if Instant::now() >= *lifts_at + Duration::from_secs(1) {
                    self.after_pause_units = Some(self.units - *units_at_go);
                    self.stop_capture.store(true, Ordering::Release);
                    *phase = Phase::Done;
                }
            }
            Phase::Done => {}
        }
        Ok(())
    }
}
