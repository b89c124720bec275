//! `migrate`: the live source captured as a replica ([`crate::replica`]) and applied to
//! the destination ([`crate::replay`]) at once: the original redis-migration's job.
//!
//! Two threads. The capture reads the source and spools: the snapshot to the `-rdb`
//! file, then the command stream to the `-aof` file, whole units only, written as soon
//! as they are read ([`replica::Following`] says how far). This thread waits for the
//! snapshot, replays it through the same engine as `replay` (verified first: a snapshot
//! whose checksum is wrong writes nothing), then follows the `-aof` file as it grows
//! ([`Follower`], a [`replay::Follow`]): its units go to the engine with the position they
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
    /// Progress lines on stderr.
    pub progress: bool,
}

/// What a migration did.
#[derive(Debug)]
pub struct Report {
    pub capture: replica::Report,
    pub replay: replay::Report,
    /// `--until-synced` saw the lag at zero after this long.
    pub synced_after: Option<Duration>,
    /// Log units handed to the engine.
    pub log_units: u64,
    /// The followed log could not be read (it names the place).
    pub log_error: Option<String>,
    /// `--resync`: destination keys the new snapshot no longer has, deleted.
    pub stale_deleted: Option<u64>,
    pub wall: Duration,
}

impl Report {
    /// 0 everything applied and the capture ended as asked; 1 the source went away or the
    /// destination rejected commands; 2 the replay could not go on.
    pub fn exit_code(&self) -> i32 {
        let r = self.replay.exit_code();
        if r == 2 || self.log_error.is_some() {
            2
        } else if r == 1 || self.capture.failed {
            1
        } else {
            0
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let mut v = self.replay.json();
        if let Some(o) = v.as_object_mut() {
            o.insert("source".into(), self.capture.to_json());
            o.insert("log_units".into(), self.log_units.into());
            o.insert("synced_after_s".into(), self.synced_after.map(|d| d.as_secs_f64()).into());
            o.insert("log_error".into(), self.log_error.clone().into());
            o.insert("stale_deleted".into(), self.stale_deleted.into());
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
}

/// Where the replay's checkpoint of a migration lives: beside the `-aof` spool and its
/// state (`<aof>.applied`).
pub fn checkpoint_path(aof: &std::path::Path) -> PathBuf {
    let mut s = aof.as_os_str().to_owned();
    s.push(".applied");
    PathBuf::from(s)
}

/// Runs a migration (see the module's documentation).
pub fn run(cfg: &Config) -> Result<Report, Error> {
    let started = Instant::now();
    let following = Arc::new(Following::default());
    let mut ccfg = cfg.capture.clone();
    ccfg.follow = Some(following.clone());
    ccfg.resume = !cfg.resync;
    let checkpoint = checkpoint_path(&cfg.capture.aof);
    let mut rcfg = cfg.replay.clone();
    rcfg.checkpoint = Some(checkpoint.clone());
    rcfg.keep_marks = true;
    let stop_capture = AtomicBool::new(false);
    let capture_done = AtomicBool::new(false);
    let show = cfg.progress;
    let result = std::thread::scope(|s| {
        let capture = s.spawn(|| {
            let r = replica::capture(&ccfg, &stop_capture, &mut |m| {
                if show {
                    eprintln!("migrate: capture: {m}");
                }
            });
            capture_done.store(true, Ordering::Release);
            r
        });
        // The snapshot first, whole (its checksum is checked before anything is written).
        while !following.snapshot_ready.load(Ordering::Acquire) && !capture.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let replayed = if following.snapshot_ready.load(Ordering::Acquire) {
            Some(apply(cfg, &rcfg, &checkpoint, &following, &capture_done, &stop_capture, started))
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
            (Some(Ok(_)), Err(e)) => Err(e.into()),
            (Some(Ok((replay, f))), Ok(capture)) => Ok(Report {
                capture,
                replay,
                synced_after: f.synced_after,
                log_units: f.units,
                log_error: f.error,
                stale_deleted: f.stale_deleted,
                wall: started.elapsed(),
            }),
        }
    });
    result
}

/// The snapshot and the stream applied (the capture has the snapshot, or continued).
fn apply<'a>(
    cfg: &Config,
    rcfg: &replay::Config,
    checkpoint: &std::path::Path,
    following: &'a Following,
    capture_done: &'a AtomicBool,
    stop_capture: &'a AtomicBool,
    started: Instant,
) -> Result<(replay::Report, Follower<'a>), Error> {
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
        // A new snapshot: an older checkpoint is of other files.
        match std::fs::remove_file(checkpoint) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Resume(format!("{}: {e}", checkpoint.display())))
            }
            _ => {}
        }
    }
    let spec = Spec { rdb: vec![cfg.capture.rdb.clone()], ..Spec::default() };
    let inputs = Inputs::open(&spec).map_err(|e| Error::Input(e.to_string()))?;
    let mut follower = Follower::new(cfg, following, capture_done, stop_capture, started);
    if cfg.resync && !following.continued.load(Ordering::Acquire) {
        follower.stale_deleted = Some(remove_stale(rcfg, &inputs)?);
    }
    let report = replay::run_following(rcfg, &inputs, Some(&mut follower))?;
    Ok((report, follower))
}

/// `--resync`: the destination keys (of those the filters select) that the new snapshot
/// no longer has, deleted before it is applied, so that nothing stale is left silently;
/// and the applied marks of earlier runs (`redis-migration:applied:*`). Keys are found
/// with `SCAN` on the destination (each master of a cluster) and looked up among the
/// snapshot's key hashes ([`crate::duplicates::key_set`]); a destination db takes the
/// keys of every source db `--db-map` sends to it.
fn remove_stale(rcfg: &replay::Config, inputs: &Inputs) -> Result<u64, Error> {
    use crate::resp::reply::Reply;
    let keys = crate::duplicates::key_set(inputs, &rcfg.plan, &rcfg.filter).map_err(|e| Error::Input(e.to_string()))?;
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
    // The source dbs whose keys a destination db holds.
    let sources_of = |db: u64| -> Vec<u64> {
        let mut v: Vec<u64> = rcfg.db_map.iter().filter(|(_, &d)| d == db).map(|(&s, _)| s).collect();
        if !rcfg.db_map.contains_key(&db) {
            v.push(db);
        }
        v
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
            let sources: Vec<u64> = sources_of(db).into_iter().filter(|&s| rcfg.filter.accepts_db(s)).collect();
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
                let stale: Vec<&Vec<u8>> = page
                    .iter()
                    .filter(|k| {
                        if k.starts_with(b"redis-migration:applied:") {
                            return true;
                        }
                        let selected = !sources.is_empty() && rcfg.filter.accepts_key(k);
                        selected && !sources.iter().any(|&s| keys.contains(&crate::duplicates::key_hash(s, k)))
                    })
                    .collect();
                if !stale.is_empty() {
                    let mut out = Vec::new();
                    for k in &stale {
                        crate::resp::encode::command(&mut out, &[b"DEL", k]);
                    }
                    link.send(&out).map_err(dest_err)?;
                    for _ in &stale {
                        if let Some(e) = link
                            .next_reply(|r| r.first_error().map(|e| String::from_utf8_lossy(e).into_owned()))
                            .map_err(dest_err)?
                        {
                            return Err(Error::Resume(format!("--resync: DEL on {node} answered {e}")));
                        }
                    }
                    deleted += stale.len() as u64;
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
        let mut argv = Vec::new();
        while self.base < offset {
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

    /// The source's replication offset, where `INFO replication` is allowed.
    fn source_offset(&mut self) -> Option<u64> {
        if self.info.is_none() {
            self.info = Link::open(&self.source, Duration::from_secs(5)).ok();
        }
        let link = self.info.as_mut()?;
        match link.call(&[b"INFO", b"replication"]) {
            Ok(Answer::Bulk(Some(text))) => {
                let text = String::from_utf8_lossy(&text);
                text.lines().find_map(|l| l.strip_prefix("master_repl_offset:")?.trim().parse().ok())
            }
            _ => None,
        }
    }
}

impl Follow for Follower<'_> {
    fn follow(&mut self, log: &mut dyn Followed) {
        if let Err(e) = self.skip_to(log.start()) {
            self.error = Some(e);
            return;
        }
        let mut last_shown = Instant::now();
        let mut last_info = Instant::now() - Duration::from_secs(1);
        let mut source_offset = None;
        let mut info_allowed = true;
        loop {
            // Read `done` first: once the capture has ended, the file is whole.
            let done = self.capture_done.load(Ordering::Acquire);
            // Only what is durable is applied: a restart cuts the spool back to its state,
            // and must find everything applied still there.
            let written = self.following.durable.load(Ordering::Acquire);
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
            if log.stopped() {
                return;
            }
            if came {
                continue;
            }
            log.flush();
            let at = self.base + self.buf.len() as u64;
            if done && at >= upto {
                return;
            }
            let applied = log.applied();
            let wants_info = (self.until_synced && self.synced_after.is_none()) || self.progress;
            if wants_info && info_allowed && last_info.elapsed() >= Duration::from_secs(1) {
                last_info = Instant::now();
                source_offset = self.source_offset();
                info_allowed = source_offset.is_some();
            }
            let received = self.following.received.load(Ordering::Acquire);
            let behind_source = source_offset.map_or(0, |o: u64| o.saturating_sub(received));
            if self.until_synced && self.synced_after.is_none() {
                let partial = self.following.partial.load(Ordering::Acquire);
                if applied >= written && at >= written && !partial && behind_source == 0 {
                    self.synced_after = Some(self.started.elapsed());
                    self.stop_capture.store(true, Ordering::Release);
                }
            }
            if self.progress && last_shown.elapsed() >= Duration::from_secs(5) {
                last_shown = Instant::now();
                let source = source_offset.map_or(String::new(), |o| format!(", source at {o}"));
                eprintln!(
                    "migrate: {} log units, {} bytes spooled, {} not yet applied; received to offset {received}{source}",
                    self.units,
                    written,
                    written.saturating_sub(applied)
                );
            }
            std::thread::sleep(IDLE);
        }
    }
}
