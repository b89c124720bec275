//! The live source, as a replica: `capture` attaches to a master with `PSYNC`, spools the
//! snapshot to the `-rdb` file and the command stream to the `-aof` file, and keeps the
//! state a resume needs (replication ID, offset, db) beside the log.
//!
//! Where it sits: on [`crate::net`] (the link, the raw snapshot transfer) and
//! [`crate::aof::scan`] (commands cut by their headers). It knows nothing of replaying:
//! the files it writes are read by `check`, `print` and `replay` like any others.
//!
//! - [`stream`]: the replication stream cut into commands; relative expiries made absolute.
//! - [`spool`]: the log file (whole units only), the held-back MULTI block, the state file.
//! - [`capture`]: the session: handshake, snapshot, stream, acknowledgements, stop.
//!
//! The protocol is Redis's replica side (replication.c): `syncWithMaster` for the
//! handshake, `readSyncBulkPayload` for the snapshot, `replicationSendAck` and
//! `replicationCron` for the acknowledgements. *Invariant:* the socket is always drained
//! (the master drops a replica whose output buffer passes `client-output-buffer-limit
//! replica`), and an acknowledged offset is never past what is durable in the spool.

pub mod spool;
pub mod stream;

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::net::bulk::{copy_payload, parse_header, BulkError, Framing};
use crate::net::{Answer, Endpoint, Link, LinkError};
use spool::{Spool, State};
use stream::{absolute_expiry, kind, next_item, Item, Kind};

/// Set by SIGTERM/SIGINT (the binary installs the handlers): the capture stops at the
/// next read, writes what it has, and reports.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// What to capture, and where to.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Endpoint,
    pub rdb: PathBuf,
    pub aof: PathBuf,
    /// Stop after this long (from the start).
    pub duration: Option<Duration>,
    /// Stop as soon as the snapshot is spooled (the log stays empty).
    pub stop_after_snapshot: bool,
    /// The master is gone when it sends nothing for this long (Redis's `repl-timeout`
    /// default; the master PINGs every 10 s and sends newlines while it prepares the
    /// snapshot).
    pub timeout: Duration,
    /// Sent as `REPLCONF listening-port` (the master shows it in `INFO replication`; it
    /// never connects to it).
    pub listening_port: u16,
    /// Keep `PUBLISH`/`SPUBLISH` in the log (Sentinel's hellos never).
    pub publish: bool,
    /// The source is a master of a Redis Cluster: a key migrating into it (a reshard)
    /// stops the capture.
    pub cluster: bool,
    /// Continue from the `-aof`'s state file when there is one (`PSYNC <replid>
    /// <offset+1>`); a source that cannot continue is [`CaptureError::CannotContinue`].
    pub resume: bool,
    /// Where the state is kept (`None`: `<aof>.state`).
    pub state: Option<PathBuf>,
    /// How often the log is fsynced, its state written and the durable offset
    /// acknowledged (Redis's replica: once a second).
    pub sync_every: Duration,
    /// A reader follows the files as they grow (`migrate`): every whole unit reaches the
    /// `-aof` file as soon as it is read, and what is there is published here.
    pub follow: Option<Arc<Following>>,
}

impl Config {
    /// The state file: `state`, or `<aof>.state`.
    pub fn state_file(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| spool::state_path(&self.aof))
    }
}

/// What a reader following a capture sees of it (`migrate`).
#[derive(Debug, Default)]
pub struct Following {
    /// The snapshot is whole in the `-rdb` file, and the `-aof` spool begun.
    pub snapshot_ready: AtomicBool,
    /// The snapshot's bytes as they come into the `-rdb` file (the follower applies them
    /// while they come): begun once the transfer's framing is read, whole once its last
    /// byte is written, broken if the transfer fails.
    pub snapshot: Arc<crate::source::Growth>,
    /// Bytes of whole units in the `-aof` file (written, maybe not yet durable).
    pub written: AtomicU64,
    /// The replication offset read and taken apart so far (housekeeping included).
    pub received: AtomicU64,
    /// Part of a command, or a MULTI block without its EXEC, waits for more bytes.
    pub partial: AtomicBool,
    /// Bytes of the `-aof` file that are durable (fsynced, and named by the state file).
    pub durable: AtomicU64,
    /// The replication offset those durable bytes reach.
    pub durable_offset: AtomicU64,
    /// The source continued from the state file (`+CONTINUE`): no new snapshot.
    pub continued: AtomicBool,
    /// The source the capture is linked to now (after a failover, the new master).
    pub source: std::sync::Mutex<Option<Endpoint>>,
}

/// What a capture did.
#[derive(Debug, Clone)]
pub struct Report {
    /// What the state file holds at the end.
    pub state: State,
    /// Bytes of the snapshot in the `-rdb` file.
    pub snapshot_bytes: u64,
    /// `length` (`$<len>`) or `eof-mark` (diskless).
    pub framing: &'static str,
    /// The snapshot's RDB version (from its header).
    pub rdb_version: Option<u32>,
    /// Data commands spooled (MULTI, EXEC, SELECT not counted).
    pub commands: u64,
    /// Relative expiries made absolute (sources before 7.0).
    pub expiries_made_absolute: u64,
    /// Why it stopped: `signal`, `duration`, `snapshot`, `requested` (by the caller), or
    /// the error that ended the stream.
    pub stopped: String,
    /// The stream ended with an error (the files hold everything before it).
    pub failed: bool,
    /// The source continued from the state file's offset (`+CONTINUE`), with no snapshot.
    pub continued_from: Option<u64>,
    /// The stream ended because the link to the source broke or went silent (it, or a
    /// successor, may be asked to continue).
    pub lost_source: bool,
}

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "replid": self.state.replid,
            "snapshot_offset": self.state.snapshot_offset,
            "offset": self.state.offset,
            "db": self.state.db,
            "snapshot_bytes": self.snapshot_bytes,
            "framing": self.framing,
            "rdb_version": self.rdb_version,
            "commands": self.commands,
            "aof_bytes": self.state.aof_bytes,
            "expiries_made_absolute": self.expiries_made_absolute,
            "stopped": self.stopped,
            "failed": self.failed,
            "continued_from": self.continued_from,
            "lost_source": self.lost_source,
        })
    }
}

/// Why a capture could not run (nothing usable was spooled).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{endpoint}: {error}")]
    Connect { endpoint: String, error: LinkError },
    #[error("{endpoint}: {what} refused: {msg}")]
    Refused { endpoint: String, what: &'static str, msg: String },
    #[error("{endpoint}: unexpected answer to PSYNC: {line}")]
    Psync { endpoint: String, line: String },
    #[error("{endpoint}: the snapshot: {error}")]
    Snapshot { endpoint: String, error: BulkError },
    #[error("{}: {error}", .path.display())]
    File { path: PathBuf, error: std::io::Error },
    #[error("stopped before the snapshot was complete")]
    Stopped,
    #[error("{0}")]
    State(String),
    /// The source answered a `PSYNC` to continue with a full resynchronization.
    #[error(
        "{endpoint} cannot continue from offset {offset} of replication id {replid} (it answered {line}): \
         its backlog no longer holds that offset, or it restarted or was replaced and has a new replication id; \
         run again with --resync to take a new snapshot"
    )]
    CannotContinue { endpoint: String, replid: String, offset: u64, line: String },
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The source's topology when it is a Redis Cluster (`CLUSTER SHARDS`/`SLOTS` answered
/// with every slot served); `Ok(None)` for a standalone server, or a user allowed neither
/// `CLUSTER` nor `INFO` (then it cannot be told). A node that says `cluster_enabled:1`
/// but whose topology cannot be read (slots not served during a failover, no right to
/// `CLUSTER`) is an error: taking it for a standalone server would move one master only.
pub fn cluster_of(source: &Endpoint, timeout: Duration) -> Result<Option<crate::net::cluster::Topology>, String> {
    let timeout = timeout.max(Duration::from_secs(1));
    let why = match crate::net::cluster::Topology::refresh(std::iter::once(source), timeout) {
        Ok(t) => return Ok(Some(t)),
        Err(e) => e,
    };
    let Ok(mut link) = Link::open(source, timeout) else { return Ok(None) };
    let enabled = match link.call(&[b"INFO", b"cluster"]) {
        Ok(Answer::Bulk(Some(t))) => String::from_utf8_lossy(&t).contains("cluster_enabled:1"),
        _ => false,
    };
    link.close();
    if enabled {
        Err(format!("{source} is a Redis Cluster node, but its masters cannot be read: {why}"))
    } else {
        Ok(None)
    }
}

/// `path` with `.tag` before its extension (`dump.rdb` → `dump.slot0.rdb`): the files of
/// one master of a cluster source.
pub fn tagged(path: &std::path::Path, tag: &str) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{tag}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{tag}"),
    };
    path.with_file_name(name)
}

/// Polling interval of reads: how soon a stop, an ACK or an fsync is seen to.
const TICK: Duration = Duration::from_millis(100);
/// The first ACK repeated this often, until the stream starts (see `stream_loop`).
const EARLY_ACK: Duration = Duration::from_millis(5);
const EARLY_ACKS_FOR: Duration = Duration::from_secs(2);
/// Longest command taken from the stream (Redis's `proto-max-bulk-len` is 512 MB, and
/// a command holds a few).
const MAX_COMMAND: usize = 2 << 30;

/// Whether to stop now.
fn stopping(cfg: &Config, started: Instant, external: &AtomicBool) -> Option<&'static str> {
    if STOP.load(Ordering::Relaxed) {
        return Some("signal");
    }
    if external.load(Ordering::Relaxed) {
        return Some("requested");
    }
    if cfg.duration.is_some_and(|d| started.elapsed() >= d) {
        return Some("duration");
    }
    None
}

/// Runs a capture until a stop (`STOP`, `stop`, the duration, the end of the snapshot
/// with `stop_after_snapshot`) or until the source goes away. `progress` gets a line now
/// and then.
pub fn capture(cfg: &Config, stop: &AtomicBool, progress: &mut dyn FnMut(&str)) -> Result<Report, CaptureError> {
    let started = Instant::now();
    let endpoint = cfg.source.to_string();
    if let Some(f) = &cfg.follow {
        *f.source.lock().unwrap_or_else(|p| p.into_inner()) = Some(cfg.source.clone());
    }
    let connect = |error| CaptureError::Connect { endpoint: endpoint.clone(), error };
    let mut link = Link::open(&cfg.source, Duration::from_secs(10)).map_err(connect)?;

    // syncWithMaster: PING first; then (our AUTH went with the connection) REPLCONF
    // listening-port and capa, whose errors are not fatal (old masters), then PSYNC.
    match link.call(&[b"PING"]).map_err(connect)? {
        Answer::Error(e) if !e.starts_with("NOPERM") => {
            return Err(CaptureError::Refused { endpoint, what: "PING", msg: e })
        }
        _ => {}
    }
    let port = cfg.listening_port.to_string();
    link.call(&[b"REPLCONF", b"listening-port", port.as_bytes()]).map_err(connect)?;
    link.call(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"]).map_err(connect)?;

    // The state is read only now, once the source has taken our password: a wrong one
    // is reported as such, whatever the files hold.
    let resume = if cfg.resume { spool::read_state(&cfg.state_file()).map_err(CaptureError::State)? } else { None };
    let (ask_id, ask_offset) = match &resume {
        Some(s) => (s.replid.clone(), (s.offset + 1).to_string()),
        None => ("?".to_string(), "-1".to_string()),
    };
    link.set_timeout(TICK).map_err(connect)?;
    let (replid, offset) = loop {
        link.send_command(&[b"PSYNC", ask_id.as_bytes(), ask_offset.as_bytes()]).map_err(connect)?;
        // Newlines may come before the answer (the master is busy): keepalives.
        let line = loop {
            let line = read_line(&mut link, cfg, started, stop).map_err(|e| match e {
                Waited::Link(e) => connect(e),
                Waited::Stopped => CaptureError::Stopped,
            })?;
            if !line.is_empty() {
                break line;
            }
        };
        let text = String::from_utf8_lossy(&line).into_owned();
        if let Some(state) = &resume {
            // masterTryPartialResynchronization: `+CONTINUE`, with the master's current
            // replication id when it speaks PSYNC2 (a new one after a failover).
            if text == "+CONTINUE" || text.starts_with("+CONTINUE ") {
                let mut state = state.clone();
                if let Some(id) = text.strip_prefix("+CONTINUE ").map(str::trim).filter(|id| !id.is_empty()) {
                    state.replid = id.to_string();
                }
                return continue_stream(cfg, link, state, started, stop, progress);
            }
            if text.starts_with("+FULLRESYNC") {
                return Err(CaptureError::CannotContinue {
                    endpoint,
                    replid: state.replid.clone(),
                    offset: state.offset,
                    line: text,
                });
            }
        }
        if let Some(rest) = text.strip_prefix("+FULLRESYNC ") {
            // `+FULLRESYNC <replid> <offset>`; later fields, if any, are not ours.
            let mut f = rest.split(' ');
            let replid = f.next().unwrap_or("").to_string();
            let offset = f.next().and_then(|o| o.parse::<u64>().ok());
            match offset {
                Some(o) if !replid.is_empty() => break (replid, o),
                _ => return Err(CaptureError::Psync { endpoint, line: text }),
            }
        }
        // replicaTryPartialResynchronization: a master loading its data, or a replica
        // without its own master, is asked again later.
        if text.starts_with("-LOADING") || text.starts_with("-NOMASTERLINK") {
            progress(&format!("the source is not ready ({text}); asking again in a second"));
            sleep_unless_stopped(Duration::from_secs(1), cfg, started, stop).map_err(|_| CaptureError::Stopped)?;
            continue;
        }
        if let Some(msg) = text.strip_prefix('-') {
            return Err(CaptureError::Refused { endpoint, what: "PSYNC", msg: msg.to_string() });
        }
        return Err(CaptureError::Psync { endpoint, line: text });
    };
    progress(&format!("full resynchronization: replication id {replid}, offset {offset}"));

    // The snapshot, through the same copy as `read_bulk_payload`, with reads that give
    // way to a stop and count silence against the timeout.
    let rdb_file = |error| CaptureError::File { path: cfg.rdb.clone(), error };
    let snapshot_err = |error| CaptureError::Snapshot { endpoint: endpoint.clone(), error };
    let mut out = std::fs::File::create(&cfg.rdb).map_err(rdb_file)?;
    let framing = loop {
        let line = read_line(&mut link, cfg, started, stop).map_err(|e| match e {
            Waited::Link(e) => connect(e),
            Waited::Stopped => CaptureError::Stopped,
        })?;
        if let Some(framing) = parse_header(&line).map_err(snapshot_err)? {
            break framing;
        }
    };
    let mut stopped_early = false;
    let mut quiet_since = Instant::now();
    let mut last_shown = Instant::now();
    // The follower reads the file as it grows: told of every write, and of the end,
    // whole or broken (the guard says broken on every way out before `whole`).
    struct Broken<'g>(Option<&'g crate::source::Growth>);
    impl Drop for Broken<'_> {
        fn drop(&mut self) {
            if let Some(g) = self.0 {
                g.broken();
            }
        }
    }
    let growth = cfg.follow.as_ref().map(|f| &*f.snapshot);
    if let Some(g) = growth {
        g.begin(match framing {
            Framing::Length(len) => Some(len),
            Framing::EofMark(_) => None,
        });
    }
    let _broken = Broken(growth);
    let bytes = copy_payload(
        |into| loop {
            match link.read_raw(into) {
                Err(LinkError::Timeout) => {
                    if stopping(cfg, started, stop).is_some() {
                        stopped_early = true;
                        return Err(LinkError::Closed);
                    }
                    if quiet_since.elapsed() >= cfg.timeout {
                        return Err(LinkError::Timeout);
                    }
                }
                Ok(n) => {
                    quiet_since = Instant::now();
                    return Ok(n);
                }
                Err(e) => return Err(e),
            }
        },
        framing,
        &mut out,
        |written| {
            if let Some(g) = growth {
                g.wrote(written);
            }
            if last_shown.elapsed() >= Duration::from_secs(5) {
                last_shown = Instant::now();
                progress(&format!("snapshot: {} MB", written >> 20));
            }
        },
    );
    if stopped_early {
        return Err(CaptureError::Stopped);
    }
    let snapshot_bytes = bytes.map_err(snapshot_err)?;
    if let Some(g) = growth {
        g.whole();
    }
    let rdb_version = rdb_version(&cfg.rdb);
    progress(&format!("snapshot: {snapshot_bytes} bytes in {}", cfg.rdb.display()));

    // The snapshot is made durable by the spool's fsync thread, before its first state.
    let mut spool = Spool::create(&cfg.aof, &cfg.state_file(), &replid, offset, out)
        .map_err(|error| CaptureError::File { path: cfg.aof.clone(), error })?;
    if let Some(f) = &cfg.follow {
        f.received.store(offset, Ordering::Release);
        f.durable_offset.store(offset, Ordering::Release);
        f.snapshot_ready.store(true, Ordering::Release);
    }
    let mut report = Report {
        state: spool.at.clone(),
        snapshot_bytes,
        framing: match framing {
            Framing::Length(_) => "length",
            Framing::EofMark(_) => "eof-mark",
        },
        rdb_version,
        commands: 0,
        expiries_made_absolute: 0,
        stopped: String::new(),
        failed: false,
        continued_from: None,
        lost_source: false,
    };
    if cfg.stop_after_snapshot {
        report.state = spool.finish().map_err(|error| CaptureError::File { path: cfg.aof.clone(), error })?;
        report.stopped = "snapshot".into();
        return Ok(report);
    }
    // replication.c: after an `$EOF:` transfer the master streams nothing until the
    // replica's first ACK (`repl_start_cmd_stream_on_ack`), so the snapshot's offset is
    // acknowledged as soon as its last byte is read, while it is still being fsynced;
    // every later ACK names only what is durable.
    let ack = |link: &mut Link, offset: u64| {
        let o = offset.to_string();
        link.send_command(&[b"REPLCONF", b"ACK", o.as_bytes()])
    };
    if let Err(e) = ack(&mut link, offset) {
        report.stopped = format!("{endpoint}: {e}");
        report.failed = true;
        report.lost_source = true;
        if let Ok(state) = spool.finish() {
            report.state = state;
        }
        return Ok(report);
    }

    follow_stream(cfg, link, spool, report, started, stop, progress)
}

/// A `+CONTINUE`: the log appended to from `state`, the snapshot left as it is.
fn continue_stream(
    cfg: &Config,
    link: Link,
    state: State,
    started: Instant,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, CaptureError> {
    progress(&format!("continuing: replication id {}, from offset {}", state.replid, state.offset));
    let spool = Spool::resume(&cfg.aof, &cfg.state_file(), &state)
        .map_err(|error| CaptureError::File { path: cfg.aof.clone(), error })?;
    if let Some(f) = &cfg.follow {
        f.received.store(state.offset, Ordering::Release);
        f.written.store(state.aof_bytes, Ordering::Release);
        f.durable.store(state.aof_bytes, Ordering::Release);
        f.durable_offset.store(state.offset, Ordering::Release);
        f.continued.store(true, Ordering::Release);
        f.snapshot_ready.store(true, Ordering::Release);
    }
    let report = Report {
        state: state.clone(),
        snapshot_bytes: std::fs::metadata(&cfg.rdb).map_or(0, |m| m.len()),
        framing: "none",
        rdb_version: rdb_version(&cfg.rdb),
        commands: 0,
        expiries_made_absolute: 0,
        stopped: String::new(),
        failed: false,
        continued_from: Some(state.offset),
        lost_source: false,
    };
    follow_stream(cfg, link, spool, report, started, stop, progress)
}

/// The command stream into the spool until a stop; the report completed.
fn follow_stream(
    cfg: &Config,
    mut link: Link,
    mut spool: Spool,
    mut report: Report,
    started: Instant,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, CaptureError> {
    // Relative expiries are made absolute for sources that send them (RDB < 10: before
    // 7.0; the snapshot's header tells, where INFO might not be allowed).
    let make_absolute = report.rdb_version.is_some_and(|v| v < 10);
    let ended = stream_loop(&mut link, &mut spool, cfg, started, stop, make_absolute, &mut report, progress);
    let file_err = match spool.finish() {
        Ok(state) => {
            report.state = state;
            None
        }
        Err(e) => {
            report.state = spool.synced();
            Some(e)
        }
    };
    report.commands = spool.commands;
    match (ended, file_err) {
        (Ok(why), None) => report.stopped = why.to_string(),
        (Ok(_), Some(e)) => {
            report.stopped = format!("{}: {e}", spool.path().display());
            report.failed = true;
        }
        (Err(Ended::Lost(msg)), _) => {
            report.stopped = msg;
            report.failed = true;
            report.lost_source = true;
        }
        (Err(Ended::Failed(msg)), _) => {
            report.stopped = msg;
            report.failed = true;
        }
    }
    Ok(report)
}

/// How a stream ended that was not stopped.
enum Ended {
    /// The link to the source broke or went silent: the source may come back (or its
    /// successor), and a resume may continue.
    Lost(String),
    /// Anything else: bad bytes, a file error, a resharded source.
    Failed(String),
}

impl From<String> for Ended {
    fn from(msg: String) -> Ended {
        Ended::Failed(msg)
    }
}

/// The stream into the spool until a stop (`Ok(why)`) or an error.
#[allow(clippy::too_many_arguments)]
fn stream_loop(
    link: &mut Link,
    spool: &mut Spool,
    cfg: &Config,
    started: Instant,
    stop: &AtomicBool,
    make_absolute: bool,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<&'static str, Ended> {
    let endpoint = cfg.source.to_string();
    let file = |e: std::io::Error| format!("{}: {e}", spool_path(cfg));
    let lost = |e: LinkError| Ended::Lost(format!("{endpoint}: {e}"));
    let ack = |link: &mut Link, offset: u64| -> Result<(), Ended> {
        let o = offset.to_string();
        link.send_command(&[b"REPLCONF", b"ACK", o.as_bytes()]).map_err(lost)
    };
    let mut buf: Vec<u8> = Vec::with_capacity(256 << 10);
    let mut start = 0usize;
    // The replication offset of buf[start].
    let mut offset = spool.at.offset;
    let mut last_cron = Instant::now();
    let mut last_byte = Instant::now();
    let mut last_shown = Instant::now();
    // replication.c: a diskless master waits for the first ACK before it streams, but
    // only once it has seen its snapshot child exit; an ACK that arrives before (we read
    // the last byte as soon as the child wrote it) is not taken for that one. So until
    // the first byte of the stream comes, the ACK is repeated every few ms (for a while:
    // an idle master sends nothing until its next PING): writes meanwhile pile up in the
    // master's output buffer for us, which `client-output-buffer-limit replica` bounds.
    let first_ack = Instant::now();
    let mut streaming = false;
    link.set_timeout(EARLY_ACK).map_err(lost)?;
    loop {
        // What a follower may read: every iteration (after each read, and at least every
        // TICK while nothing comes: an fsync completes on its own thread).
        if let Some(f) = &cfg.follow {
            spool.write_out().map_err(file)?;
            let synced = spool.synced();
            f.durable.store(synced.aof_bytes, Ordering::Release);
            f.durable_offset.store(synced.offset, Ordering::Release);
            f.written.store(spool.written(), Ordering::Release);
            f.partial.store(start < buf.len() || spool.in_block(), Ordering::Release);
            f.received.store(offset, Ordering::Release);
        }
        if !streaming && first_ack.elapsed() >= EARLY_ACKS_FOR {
            streaming = true;
            link.set_timeout(TICK).map_err(lost)?;
        }
        if let Some(why) = stopping(cfg, started, stop) {
            return Ok(why);
        }
        if last_cron.elapsed() >= cfg.sync_every {
            last_cron = Instant::now();
            spool.sync().map_err(file)?;
            ack(link, spool.synced().offset)?;
            if last_shown.elapsed() >= Duration::from_secs(10) {
                last_shown = Instant::now();
                progress(&format!("offset {}, {} commands", spool.synced().offset, spool.commands));
            }
        }
        if start > 0 && start * 2 >= buf.len() {
            buf.drain(..start);
            start = 0;
        }
        let len = buf.len();
        if len - start > MAX_COMMAND {
            return Err(Ended::Failed(format!(
                "a command of the stream longer than {} MB at offset {offset}",
                MAX_COMMAND >> 20
            )));
        }
        buf.resize(len + (256 << 10), 0);
        match link.read_raw(&mut buf[len..]) {
            Ok(n) => {
                buf.truncate(len + n);
                last_byte = Instant::now();
                if !streaming {
                    streaming = true;
                    link.set_timeout(TICK).map_err(lost)?;
                }
            }
            Err(LinkError::Timeout) => {
                buf.truncate(len);
                if !streaming {
                    ack(link, spool.at.offset)?;
                }
                if last_byte.elapsed() >= cfg.timeout {
                    return Err(Ended::Lost(format!("{endpoint}: nothing arrived for {} s", cfg.timeout.as_secs())));
                }
                continue;
            }
            Err(e) => {
                buf.truncate(len);
                return Err(lost(e));
            }
        }
        while let Some((item, n)) = next_item(&buf[start..], offset).map_err(|e| Ended::Failed(e.to_string()))? {
            let raw = &buf[start..start + n];
            let end = offset + n as u64;
            match item {
                Item::Keepalive => spool.skip(end),
                Item::Command(argv) => {
                    // cluster.c: a slot migrating into this master arrives as
                    // RESTORE-ASKING (MIGRATE's other half is a DEL on the master it
                    // leaves, on another link, in no order with this one).
                    if cfg.cluster && argv[0].eq_ignore_ascii_case(b"RESTORE-ASKING") {
                        return Err(Ended::Failed(format!(
                            "the source cluster is being resharded (RESTORE-ASKING at offset {offset}: a key moving \
                             into {endpoint}); resharding the source during a migration is not supported: finish or \
                             cancel the resharding, then run again with --resync"
                        )));
                    }
                    let k = match kind(&argv) {
                        Kind::Publish if cfg.publish && argv.get(1).is_none_or(|c| c != b"__sentinel__:hello") => {
                            Kind::Data
                        }
                        k => k,
                    };
                    let rewritten =
                        if make_absolute && k == Kind::Data { absolute_expiry(&argv, now_ms()) } else { None };
                    if rewritten.is_some() {
                        report.expiries_made_absolute += 1;
                    }
                    spool.command(rewritten.as_deref().unwrap_or(raw), k, end).map_err(file)?;
                    if k == Kind::GetAck {
                        // replconfCommand answers GETACK with the processed offset; ours
                        // is what is durable (an fsync is asked for; the next second's
                        // ACK names it).
                        spool.sync().map_err(file)?;
                        ack(link, spool.synced().offset)?;
                    }
                }
            }
            start += n;
            offset = end;
        }
    }
}

fn spool_path(cfg: &Config) -> String {
    cfg.aof.display().to_string()
}

/// Why a wait ended early.
enum Waited {
    Link(LinkError),
    Stopped,
}

/// A line of the handshake (the link's timeout is [`TICK`]): timeouts are polls for a
/// stop, until `cfg.timeout` of silence.
fn read_line(link: &mut Link, cfg: &Config, started: Instant, stop: &AtomicBool) -> Result<Vec<u8>, Waited> {
    let quiet = Instant::now();
    loop {
        match link.read_line(1024) {
            Ok(line) => return Ok(line),
            Err(LinkError::Timeout) => {
                if stopping(cfg, started, stop).is_some() {
                    return Err(Waited::Stopped);
                }
                if quiet.elapsed() >= cfg.timeout {
                    return Err(Waited::Link(LinkError::Timeout));
                }
            }
            Err(e) => return Err(Waited::Link(e)),
        }
    }
}

fn sleep_unless_stopped(d: Duration, cfg: &Config, started: Instant, stop: &AtomicBool) -> Result<(), ()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stopping(cfg, started, stop).is_some() {
            return Err(());
        }
        std::thread::sleep(TICK);
    }
    Ok(())
}

/// The RDB version in a snapshot file's header (`REDIS0011`), if it reads.
fn rdb_version(path: &std::path::Path) -> Option<u32> {
    let mut head = [0u8; 9];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    let digits = head.strip_prefix(b"REDIS").or_else(|| head.strip_prefix(b"VALKEY"))?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}
