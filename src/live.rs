//! Reading a live server as a dataset, for `diff`: every key with `SCAN`, its value with
//! `DUMP` and its expiry with `PEXPIRETIME` (`PTTL` and the local clock before 7.0),
//! pipelined over a few connections, at most `--qps` commands a second. The DUMP payload
//! is decoded by our own RDB decoder ([`decode_dump`]), so a file's key and a server's
//! key go through one code path. Never `KEYS` (it blocks the server for the whole
//! keyspace), never `DEBUG`.
//!
//! Where it sits: beside [`crate::input`], on [`crate::net`] (links) and [`crate::rdb`]
//! (the payload). It knows nothing of diffing: it hands batches of [`LiveKey`]s to a
//! callback, on the calling thread.
//!
//! - [`scan`]: every key of the selected dbs, in batches (each batch from one db).
//! - [`fetch`]: the given keys of one db again (the re-checks of `--rounds`).
//! - [`probe`]: what the server is (version, whether it has `PEXPIRETIME`).
//! - [`functions`]: the code of its function libraries.
//! - [`decode_dump`]: a DUMP payload → its type byte and logical value.
//!
//! What a reader of a live server must accept: the data moves while it is read. `SCAN`
//! returns every key that exists for the whole scan at least once, may return a key
//! more than once (when the server resizes its table meanwhile: `db.c`, `scanGenericCommand`
//! and the comment above `dictScan` in `dict.c`), and may or may not return keys written
//! during the scan; a key deleted between its `SCAN` and its `DUMP` comes back with no
//! payload. `scan` does not remove repeats (that would take a set of every key): a
//! consumer that keys by name sees the same key twice, with the same or a newer value.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::net::tls::{Tls, TlsOptions};
use crate::net::{parse_url, Endpoint, Link, LinkError, UrlError};
use crate::rdb::constants::{RDB_OPCODE_KEY_META, RDB_VERSION_MAX, VALKEY_RDB_VERSION};
use crate::rdb::cursor::Cursor;
use crate::rdb::error::{Error, ErrorKind};
use crate::rdb::string::read_len;
use crate::rdb::value::{read_value, type_name};
use crate::rdb::{self, Record, Str, Value, Vendor};
use crate::resp::encode::command;
use crate::resp::reply::Reply;
use crate::version::Version;

/// Connections used by default ([`LiveSpec::connections`]).
pub const DEFAULT_CONNECTIONS: usize = 4;
/// `SCAN … COUNT` by default ([`LiveSpec::scan_count`]).
pub const DEFAULT_SCAN_COUNT: usize = 1000;
/// Longest `DUMP` reply taken by default ([`LiveSpec::max_reply_bytes`]): a 512 MB
/// string (Redis's `proto-max-bulk-len`) and then some.
pub const DEFAULT_MAX_REPLY: usize = 1 << 30;
/// Port when the URL names none.
pub const DEFAULT_PORT: u16 = 6379;
/// Most keys a connection asks for in one round trip (two commands each).
const PIPELINE_KEYS: usize = 256;
/// Highest db index probed with `SELECT` when `INFO keyspace` is refused (Redis's
/// `databases` is 16 by default; `SELECT` past the last one fails, which ends the probe).
const MAX_PROBED_DBS: u64 = 1 << 16;
/// A key no one uses, for probing which commands exist (read-only commands only).
const PROBE_KEY: &[u8] = b"redis-migration:live-probe";

/// What to read from which server.
#[derive(Debug, Clone)]
pub struct LiveSpec {
    /// Where the server is and how to log in (TLS, user, password).
    pub endpoint: Endpoint,
    /// The dbs to read. `None`: every db holding keys (from `INFO keyspace`, or, when the
    /// user may not run `INFO`, `SELECT 0..n` with `DBSIZE` until `SELECT` fails). A URL's
    /// `/db` sets it to that one db ([`LiveSpec::from_url`]).
    pub dbs: Option<Vec<u64>>,
    /// `SCAN … MATCH pattern` (Redis's glob; the server applies it).
    pub pattern: Option<Vec<u8>>,
    /// Connections that run `DUMP` (the scan itself runs on one more). At least 1.
    pub connections: usize,
    /// Commands per second over all connections (`SCAN`, `SELECT`, `DUMP`, the expiry
    /// commands), to spare a production server; `None`: as fast as it answers.
    pub qps: Option<u32>,
    /// `SCAN … COUNT`: how much work the server does per `SCAN` (at least 1).
    pub scan_count: usize,
    /// Connecting, and then every read and write, must take less than this
    /// (`Duration::ZERO`: wait as long as it takes once connected).
    pub timeout: Duration,
    /// Longest reply taken: a key whose `DUMP` is longer is an error naming it. Memory
    /// grows with the bytes that arrive, never by a length the server announces.
    pub max_reply_bytes: usize,
}

impl LiveSpec {
    /// Every db, every key, the default connections and `COUNT`, no rate limit, a 30 s
    /// timeout.
    pub fn new(endpoint: Endpoint) -> LiveSpec {
        LiveSpec {
            endpoint,
            dbs: None,
            pattern: None,
            connections: DEFAULT_CONNECTIONS,
            qps: None,
            scan_count: DEFAULT_SCAN_COUNT,
            timeout: Duration::from_secs(30),
            max_reply_bytes: DEFAULT_MAX_REPLY,
        }
    }

    /// From `redis://[user[:password]@]host[:port][/db]` (`rediss://` for TLS, with
    /// `tls` for the CA and certificates; the Mozilla roots when `tls` is `None`). A `/db`
    /// restricts the read to that db; the port defaults to 6379.
    pub fn from_url(url: &str, tls: Option<&TlsOptions>) -> Result<LiveSpec, LiveError> {
        let u = parse_url(url)?;
        let tls = if u.tls {
            let opts = tls.cloned().unwrap_or_default();
            Some(Tls::new(&opts, &u.host).map_err(|e| LiveError::Tls(e.to_string()))?)
        } else {
            None
        };
        let endpoint =
            Endpoint { host: u.host, port: u.port.unwrap_or(DEFAULT_PORT), user: u.user, password: u.password, tls };
        let mut spec = LiveSpec::new(endpoint);
        spec.dbs = u.db.map(|db| vec![db]);
        Ok(spec)
    }
}

/// One key as the server had it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveKey {
    pub db: u64,
    pub key: Vec<u8>,
    /// The `DUMP` reply (type byte, value, RDB version, CRC-64: [`decode_dump`] reads
    /// it); `None` when the key was gone by the time it was asked for (deleted or expired
    /// after `SCAN` listed it, or before its expiry was read).
    pub payload: Option<Vec<u8>>,
    /// Absolute expiry in Unix milliseconds; `None`: no expiry. From `PEXPIRETIME`; on a
    /// server without it (before 7.0), the local clock plus `PTTL` as the reply was read,
    /// so off by the round trip and the clocks' difference.
    pub expire_at_ms: Option<i64>,
}

impl LiveKey {
    /// The key as a record, as a file's key is decoded: `Ok(None)` when it vanished. The
    /// record's `raw_value` is the payload's value bytes (no type byte, no footer); no
    /// idle time or LFU counter (a `DUMP` carries neither).
    pub fn record(&self) -> Result<Option<Record<'_>>, rdb::Error> {
        let Some(payload) = &self.payload else { return Ok(None) };
        let d = parse_dump(payload).map_err(|e| e.with_key(&self.key))?;
        Ok(Some(Record {
            db: self.db,
            key: Str::Borrowed(&self.key),
            expire_at_ms: self.expire_at_ms,
            idle_s: None,
            freq: None,
            rdb_type: d.rdb_type,
            value: d.value,
            raw_value: d.raw_value,
            key_meta: d.key_meta,
        }))
    }
}

/// What was learned of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `host:port`, as messages name it.
    pub address: String,
    /// `redis_version` from `INFO server` (`7.2.4`; Valkey says the Redis version it is
    /// compatible with); `None` when the user may not run `INFO`.
    pub version_text: Option<String>,
    /// `major.minor`: from `INFO`, else guessed from which commands exist
    /// (`HPEXPIRETIME` 7.4, `PEXPIRETIME` 7.0, `GETEX` 6.2); `None` when older than all.
    pub version: Option<Version>,
    /// `version` was guessed (the user may not run `INFO`).
    pub version_guessed: bool,
    /// `PEXPIRETIME` answers (7.0+, and the user may run it): expiries are exact; else
    /// they come from `PTTL` and the local clock.
    pub pexpiretime: bool,
}

/// What a [`scan`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanStats {
    pub server: Server,
    /// The dbs scanned, in order.
    pub dbs: Vec<u64>,
    /// Keys handed to the callback (repeats of `SCAN` included), vanished ones too.
    pub keys: u64,
    /// Keys with no payload: gone between `SCAN` and `DUMP`.
    pub vanished: u64,
    /// Commands sent (on every connection, the set-up ones included).
    pub commands: u64,
    /// The callback returned false before the end.
    pub stopped: bool,
    pub elapsed: Duration,
}

/// Why a live server could not be read. Every message names the server (`host:port`,
/// never the password) and, for a reply, the command.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("TLS: {0}")]
    Tls(String),
    /// Could not connect (refused, unreachable, TLS handshake).
    #[error("{server}: cannot connect: {msg}")]
    Connect { server: String, msg: String },
    /// The password or user was refused, or the server wants one that was not given.
    #[error("{server}: {msg}")]
    Auth { server: String, msg: String },
    /// The connection failed during `command` (closed, timed out, garbage).
    #[error("{server}: {command}: {msg}")]
    Link { server: String, command: &'static str, msg: String },
    /// The server's ACL does not let this user run `command` (`-NOPERM`).
    #[error("{server}: the server refuses {command} to this user ({msg}); reading a live server needs SCAN, DUMP, PEXPIRETIME or PTTL, and SELECT for dbs other than 0")]
    Refused { server: String, command: &'static str, msg: String },
    /// Another error reply.
    #[error("{server}: {command} answered an error: {msg}")]
    Reply { server: String, command: &'static str, msg: String },
    /// A reply of a shape the command never gives.
    #[error("{server}: {command} answered {got}, expected {expected}")]
    Unexpected { server: String, command: &'static str, got: String, expected: &'static str },
}

/// `Reply` shown in a message: its kind and the start of its text.
fn describe(r: &Reply<'_>) -> String {
    let text = |b: &[u8]| {
        let s = String::from_utf8_lossy(&b[..b.len().min(60)]).into_owned();
        if b.len() > 60 {
            format!("{s:?}…")
        } else {
            format!("{s:?}")
        }
    };
    match r {
        Reply::Simple(s) => format!("+{}", text(s)),
        Reply::Error(s) => format!("error {}", text(s)),
        Reply::Int(i) => format!("integer {i}"),
        Reply::Bulk(None) => "a null bulk".into(),
        Reply::Bulk(Some(b)) => format!("bulk {}", text(b)),
        Reply::Array(None) => "a null array".into(),
        Reply::Array(Some(a)) => format!("an array of {}", a.len()),
    }
}

/// One connection to the server, with the db it has selected.
struct Conn {
    link: Link,
    server: String,
    timeout: Duration,
    db: u64,
    /// Commands sent on this connection.
    sent: u64,
}

impl Conn {
    fn open(spec: &LiveSpec) -> Result<Conn, LiveError> {
        let server = spec.endpoint.to_string();
        let mut link = Link::open(&spec.endpoint, spec.timeout).map_err(|e| match e {
            LinkError::Auth(msg) => LiveError::Auth { server: server.clone(), msg: auth_message(&msg) },
            e => LiveError::Connect { server: server.clone(), msg: link_message(&e, spec.timeout) },
        })?;
        link.set_max_reply(spec.max_reply_bytes);
        let sent = spec.endpoint.password.is_some() as u64;
        Ok(Conn { link, server, timeout: spec.timeout, db: 0, sent })
    }

    fn link_error(&self, command: &'static str, e: LinkError) -> LiveError {
        LiveError::Link { server: self.server.clone(), command, msg: link_message(&e, self.timeout) }
    }

    /// An error reply to `command` as the error it is.
    fn error_reply(&self, command: &'static str, msg: &[u8]) -> LiveError {
        let msg = String::from_utf8_lossy(msg).into_owned();
        let server = self.server.clone();
        if msg.starts_with("NOAUTH") || msg.starts_with("WRONGPASS") {
            LiveError::Auth { server, msg: auth_message(&msg) }
        } else if msg.starts_with("NOPERM") {
            LiveError::Refused { server, command, msg }
        } else {
            LiveError::Reply { server, command, msg }
        }
    }

    /// Sends one command and hands its reply to `f` (error replies included).
    fn call<T>(
        &mut self,
        command: &'static str,
        args: &[&[u8]],
        f: impl FnOnce(&Reply<'_>) -> T,
    ) -> Result<T, LiveError> {
        self.sent += 1;
        self.link.send_command(args).map_err(|e| self.link_error(command, e))?;
        self.link.next_reply(f).map_err(|e| self.link_error(command, e))
    }

    /// `INFO section`'s text; `None` when the user may not run it (or the server has no
    /// such command).
    fn info(&mut self, section: &'static str) -> Result<Option<String>, LiveError> {
        let r = self.call("INFO", &[b"INFO", section.as_bytes()], |r| match r {
            Reply::Bulk(Some(b)) => Ok(Ok(String::from_utf8_lossy(b).into_owned())),
            Reply::Error(m) => Ok(Err(m.to_vec())),
            other => Err(describe(other)),
        })?;
        match r {
            Ok(Ok(text)) => Ok(Some(text)),
            Ok(Err(m)) if m.starts_with(b"NOAUTH") || m.starts_with(b"WRONGPASS") => Err(self.error_reply("INFO", &m)),
            Ok(Err(_)) => Ok(None),
            Err(got) => {
                Err(LiveError::Unexpected { server: self.server.clone(), command: "INFO", got, expected: "a bulk" })
            }
        }
    }

    /// Whether `args` runs (any reply but an error). Authentication errors are errors.
    fn answers(&mut self, command: &'static str, args: &[&[u8]]) -> Result<bool, LiveError> {
        match self.call(command, args, |r| if let Reply::Error(m) = r { Some(m.to_vec()) } else { None })? {
            None => Ok(true),
            Some(m) if m.starts_with(b"NOAUTH") || m.starts_with(b"WRONGPASS") => Err(self.error_reply(command, &m)),
            Some(_) => Ok(false),
        }
    }

    /// `SELECT db` unless it is the selected one; `Ok(false)` when the server has no
    /// such db.
    fn select(&mut self, db: u64) -> Result<bool, LiveError> {
        if self.db == db {
            return Ok(true);
        }
        let mut buf = itoa::Buffer::new();
        let r = self.call("SELECT", &[b"SELECT", buf.format(db).as_bytes()], |r| match r {
            Reply::Simple(_) => Ok(None),
            Reply::Error(m) => Ok(Some(m.to_vec())),
            other => Err(describe(other)),
        })?;
        match r {
            Ok(None) => {
                self.db = db;
                Ok(true)
            }
            // `db.c`, `selectCommand`: "DB index is out of range".
            Ok(Some(m)) if m.windows(12).any(|w| w == b"out of range") => Ok(false),
            Ok(Some(m)) => Err(self.error_reply("SELECT", &m)),
            Err(got) => {
                Err(LiveError::Unexpected { server: self.server.clone(), command: "SELECT", got, expected: "+OK" })
            }
        }
    }

    /// Like [`Conn::select`], but a missing db is an error.
    fn select_existing(&mut self, db: u64) -> Result<(), LiveError> {
        if self.select(db)? {
            Ok(())
        } else {
            Err(LiveError::Reply {
                server: self.server.clone(),
                command: "SELECT",
                msg: format!("the server has no db {db}"),
            })
        }
    }
}

/// A link error in words that fit reading a source (the link's own speak of the
/// destination of a replay).
fn link_message(e: &LinkError, timeout: Duration) -> String {
    match e {
        LinkError::Closed => "the server closed the connection".into(),
        LinkError::Timeout => format!("no answer within {} s", timeout.as_secs_f64()),
        LinkError::Io(e) => e.to_string(),
        LinkError::Auth(m) => auth_message(m),
        LinkError::Protocol(m) => format!("unreadable reply: {m}"),
        LinkError::Tls(m) => format!("TLS: {m}"),
    }
}

/// An authentication error as the user can act on it.
fn auth_message(msg: &str) -> String {
    if msg.starts_with("NOAUTH") {
        format!("the server wants a password and none was given: redis://[user]:PASSWORD@host ({msg})")
    } else if msg.starts_with("WRONGPASS") || msg.contains("invalid password") {
        format!("authentication failed: wrong user or password ({msg})")
    } else {
        format!("authentication failed: {msg}")
    }
}

/// At most `qps` commands a second over every connection that shares it: a token bucket
/// that starts empty, refills at `qps` a second, holds at most one second's worth, and
/// lends: a caller taking more than there is sleeps until the debt is paid, so that by
/// any time `t` after the start at most `qps × t` commands have been sent.
struct Limiter(Option<Mutex<Bucket>>);

struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Limiter {
    fn new(qps: Option<u32>) -> Limiter {
        Limiter(qps.map(|q| Mutex::new(Bucket { rate: q.max(1) as f64, tokens: 0.0, last: Instant::now() })))
    }

    /// Waits until `n` commands may be sent.
    fn take(&self, n: usize) {
        let Some(bucket) = &self.0 else { return };
        let wait = {
            let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * b.rate).min(b.rate);
            b.last = now;
            b.tokens -= n as f64;
            (b.tokens < 0.0).then(|| Duration::from_secs_f64(-b.tokens / b.rate))
        };
        if let Some(wait) = wait {
            std::thread::sleep(wait);
        }
    }

    /// Keys one round trip may ask for, so that a slow rate is not spent in bursts.
    fn pipeline_keys(&self, connections: usize) -> usize {
        match &self.0 {
            None => PIPELINE_KEYS,
            Some(b) => {
                let rate = b.lock().unwrap_or_else(|e| e.into_inner()).rate as usize;
                (rate / 2 / connections.max(1)).clamp(1, PIPELINE_KEYS)
            }
        }
    }
}

/// What the server is: `INFO server` when allowed, else which commands answer.
pub fn probe(spec: &LiveSpec) -> Result<Server, LiveError> {
    let mut conn = Conn::open(spec)?;
    probe_on(&mut conn)
}

fn probe_on(conn: &mut Conn) -> Result<Server, LiveError> {
    let version_text = conn
        .info("server")?
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("redis_version:")).map(|v| v.trim().to_string()));
    let pexpiretime = conn.answers("PEXPIRETIME", &[b"PEXPIRETIME", PROBE_KEY])?;
    let mut version = version_text.as_deref().and_then(Version::parse);
    let version_guessed = version.is_none();
    if version.is_none() {
        // `HPEXPIRETIME` came with 7.4, `PEXPIRETIME` with 7.0, `GETEX` with 6.2: each
        // is read-only and answers for a key that does not exist.
        version = if pexpiretime {
            if conn.answers("HPEXPIRETIME", &[b"HPEXPIRETIME", PROBE_KEY, b"FIELDS", b"1", b"f"])? {
                Some(Version(7, 4))
            } else {
                Some(Version(7, 0))
            }
        } else if conn.answers("GETEX", &[b"GETEX", PROBE_KEY])? {
            Some(Version(6, 2))
        } else {
            None
        };
    }
    Ok(Server { address: conn.server.clone(), version_text, version, version_guessed, pexpiretime })
}

/// The dbs holding keys: `INFO keyspace` (`db3:keys=…`), else `SELECT` + `DBSIZE` from
/// db 0 until `SELECT` fails. Leaves db 0 selected.
fn find_dbs(conn: &mut Conn) -> Result<Vec<u64>, LiveError> {
    if let Some(text) = conn.info("keyspace")? {
        let mut dbs: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("db")?.split_once(':').and_then(|(n, _)| n.parse().ok()))
            .collect();
        dbs.sort_unstable();
        dbs.dedup();
        return Ok(dbs);
    }
    let mut dbs = Vec::new();
    for db in 0..MAX_PROBED_DBS {
        if !conn.select(db)? {
            break;
        }
        let n = conn.call("DBSIZE", &[b"DBSIZE"], |r| match r {
            Reply::Int(n) => Ok(*n),
            Reply::Error(m) => Err(Ok(m.to_vec())),
            other => Err(Err(describe(other))),
        })?;
        match n {
            Ok(n) if n > 0 => dbs.push(db),
            Ok(_) => {}
            Err(Ok(m)) => return Err(conn.error_reply("DBSIZE", &m)),
            Err(Err(got)) => {
                return Err(LiveError::Unexpected {
                    server: conn.server.clone(),
                    command: "DBSIZE",
                    got,
                    expected: "an integer",
                })
            }
        }
    }
    conn.select(0)?;
    Ok(dbs)
}

/// Shared by the connections of one job.
struct Shared<'s> {
    spec: &'s LiveSpec,
    limiter: Limiter,
    pexpiretime: bool,
    commands: AtomicU64,
}

/// Every key of the selected dbs (`spec.dbs`, else every db holding keys), handed to
/// `on_batch` in batches on the calling thread; `false` from it stops the scan (what is
/// in flight is dropped). Each batch holds keys of one db; batches come in no particular
/// order (the connections race). `SCAN` runs on one connection, db after db; the keys of
/// each of its replies go to one of `spec.connections` other connections, which ask for
/// each `DUMP` and `PEXPIRETIME` (or `PTTL` right after the `DUMP`) pipelined, up to
/// 256 keys a round trip. Every connection is open, and the server probed, before the
/// first `SCAN`, so a refused login or a missing permission stops it before any key.
pub fn scan(spec: &LiveSpec, mut on_batch: impl FnMut(Vec<LiveKey>) -> bool) -> Result<ScanStats, LiveError> {
    let started = Instant::now();
    let mut scanner = Conn::open(spec)?;
    let server = probe_on(&mut scanner)?;
    let dbs = match &spec.dbs {
        Some(dbs) => dbs.clone(),
        None => find_dbs(&mut scanner)?,
    };
    let connections = spec.connections.max(1);
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        workers.push(Conn::open(spec)?);
    }
    let setup = scanner.sent + workers.iter().map(|c| c.sent).sum::<u64>();
    let shared = Shared {
        spec,
        limiter: Limiter::new(spec.qps),
        pexpiretime: server.pexpiretime,
        commands: AtomicU64::new(setup),
    };
    let stop = AtomicBool::new(false);
    let mut stats = ScanStats {
        server,
        dbs: dbs.clone(),
        keys: 0,
        vanished: 0,
        commands: 0,
        stopped: false,
        elapsed: Duration::ZERO,
    };

    let (work_tx, work_rx) = mpsc::sync_channel::<(u64, Vec<Vec<u8>>)>(connections * 2);
    // Owned by the workers alone: once they are all gone, the scanner's send fails.
    let work_rx = Arc::new(Mutex::new(work_rx));
    // Fetched batches waiting for the caller hold their payloads: one per connection at
    // most, so that memory follows the connections, not the speed difference.
    let (done_tx, done_rx) = mpsc::sync_channel::<Result<Vec<LiveKey>, LiveError>>(connections);
    let result = std::thread::scope(|s| {
        let (shared, stop) = (&shared, &stop);
        let errors = done_tx.clone();
        s.spawn(move || {
            if let Err(e) = scan_dbs(&mut scanner, &dbs, shared, stop, &work_tx) {
                let _ = errors.send(Err(e));
            }
        });
        for mut conn in workers {
            let (work_rx, done) = (Arc::clone(&work_rx), done_tx.clone());
            s.spawn(move || loop {
                let job = work_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok((db, keys)) = job else { return };
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let got = fetch_on(&mut conn, shared, db, &keys);
                let failed = got.is_err();
                if done.send(got).is_err() || failed {
                    return;
                }
            });
        }
        drop((done_tx, work_rx));
        let mut result = Ok(());
        for got in done_rx.iter() {
            match got {
                Ok(batch) => {
                    stats.keys += batch.len() as u64;
                    stats.vanished += batch.iter().filter(|k| k.payload.is_none()).count() as u64;
                    if !on_batch(batch) {
                        stats.stopped = true;
                        break;
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        // The threads blocked sending to us wake up and end.
        drop(done_rx);
        result
    });
    result?;
    stats.commands = shared.commands.load(Ordering::Relaxed);
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// `SCAN` through each db in turn, every reply's keys sent on as one job.
fn scan_dbs(
    conn: &mut Conn,
    dbs: &[u64],
    shared: &Shared<'_>,
    stop: &AtomicBool,
    work: &mpsc::SyncSender<(u64, Vec<Vec<u8>>)>,
) -> Result<(), LiveError> {
    let count = shared.spec.scan_count.max(1).to_string();
    for &db in dbs {
        shared.limiter.take(1);
        let before = conn.sent;
        conn.select_existing(db)?;
        shared.commands.fetch_add(conn.sent - before, Ordering::Relaxed);
        let mut cursor = b"0".to_vec();
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut args: Vec<&[u8]> = vec![b"SCAN", &cursor];
            if let Some(p) = &shared.spec.pattern {
                args.extend([&b"MATCH"[..], p]);
            }
            args.extend([&b"COUNT"[..], count.as_bytes()]);
            shared.limiter.take(1);
            shared.commands.fetch_add(1, Ordering::Relaxed);
            let got = conn.call("SCAN", &args, read_scan_reply)?;
            let (next, keys) = match got {
                Ok(v) => v,
                Err(Ok(m)) => return Err(conn.error_reply("SCAN", &m)),
                Err(Err(got)) => {
                    return Err(LiveError::Unexpected {
                        server: conn.server.clone(),
                        command: "SCAN",
                        got,
                        expected: "[cursor, [keys…]]",
                    })
                }
            };
            if !keys.is_empty() && work.send((db, keys)).is_err() {
                // The workers are gone: stopped, or one failed (and said why).
                return Ok(());
            }
            if next == b"0" {
                break;
            }
            cursor = next;
        }
    }
    Ok(())
}

/// A `SCAN` reply: the next cursor and the keys. `Err(Ok(msg))`: an error reply;
/// `Err(Err(what))`: a reply of another shape.
#[allow(clippy::type_complexity)]
pub(crate) fn read_scan_reply(r: &Reply<'_>) -> Result<(Vec<u8>, Vec<Vec<u8>>), Result<Vec<u8>, String>> {
    let bad = || Err(Err(describe(r)));
    match r {
        Reply::Error(m) => Err(Ok(m.to_vec())),
        Reply::Array(Some(items)) if items.len() == 2 => {
            let Reply::Bulk(Some(cursor)) = &items[0] else { return bad() };
            if cursor.is_empty() || !cursor.iter().all(u8::is_ascii_digit) {
                return bad();
            }
            let Reply::Array(Some(keys)) = &items[1] else { return bad() };
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                let Reply::Bulk(Some(k)) = k else { return bad() };
                out.push(k.to_vec());
            }
            Ok((cursor.to_vec(), out))
        }
        _ => bad(),
    }
}

/// `DUMP` and the expiry of `keys` in db `db` on one connection, pipelined in round
/// trips of a bounded number of keys; the result in the order of `keys`.
fn fetch_on(conn: &mut Conn, shared: &Shared<'_>, db: u64, keys: &[Vec<u8>]) -> Result<Vec<LiveKey>, LiveError> {
    if conn.db != db {
        shared.limiter.take(1);
        let before = conn.sent;
        conn.select_existing(db)?;
        shared.commands.fetch_add(conn.sent - before, Ordering::Relaxed);
    }
    let expiry_command: &'static str = if shared.pexpiretime { "PEXPIRETIME" } else { "PTTL" };
    let per_trip = shared.limiter.pipeline_keys(shared.spec.connections);
    let mut out = Vec::with_capacity(keys.len());
    let mut buf = Vec::new();
    for chunk in keys.chunks(per_trip) {
        buf.clear();
        for k in chunk {
            command(&mut buf, &[b"DUMP", k]);
            command(&mut buf, &[expiry_command.as_bytes(), k]);
        }
        shared.limiter.take(chunk.len() * 2);
        shared.commands.fetch_add(chunk.len() as u64 * 2, Ordering::Relaxed);
        conn.sent += chunk.len() as u64 * 2;
        conn.link.send(&buf).map_err(|e| conn.link_error("DUMP", e))?;
        for k in chunk {
            let payload = conn.link.next_reply(|r| match r {
                Reply::Bulk(Some(b)) => Ok(Some(b.to_vec())),
                Reply::Bulk(None) => Ok(None),
                Reply::Error(m) => Err(Ok(m.to_vec())),
                other => Err(Err(describe(other))),
            });
            // A reply past `max_reply_bytes` is an error: name the key.
            let payload = payload.map_err(|e| {
                let msg = format!("{} (key \"{}\")", link_message(&e, conn.timeout), rdb::escape_key(k));
                LiveError::Link { server: conn.server.clone(), command: "DUMP", msg }
            });
            let payload = match payload? {
                Ok(p) => p,
                Err(Ok(m)) => return Err(conn.error_reply("DUMP", &m)),
                Err(Err(got)) => {
                    return Err(LiveError::Unexpected {
                        server: conn.server.clone(),
                        command: "DUMP",
                        got,
                        expected: "a bulk",
                    })
                }
            };
            let ttl = conn.link.next_reply(|r| match r {
                Reply::Int(i) => Ok(*i),
                Reply::Error(m) => Err(Ok(m.to_vec())),
                other => Err(Err(describe(other))),
            });
            let ttl = match ttl.map_err(|e| conn.link_error(expiry_command, e))? {
                Ok(t) => t,
                Err(Ok(m)) => return Err(conn.error_reply(expiry_command, &m)),
                Err(Err(got)) => {
                    return Err(LiveError::Unexpected {
                        server: conn.server.clone(),
                        command: expiry_command,
                        got,
                        expected: "an integer",
                    })
                }
            };
            // -2: no such key (gone since the DUMP, if it had a payload); -1: no expiry.
            let (payload, expire_at_ms) = match ttl {
                -2 => (None, None),
                -1 => (payload, None),
                t if t < 0 => {
                    return Err(LiveError::Unexpected {
                        server: conn.server.clone(),
                        command: expiry_command,
                        got: format!("integer {t}"),
                        expected: "-2, -1 or a time",
                    })
                }
                t if shared.pexpiretime => (payload, Some(t)),
                t => (payload, Some(now_ms().saturating_add(t))),
            };
            let expire_at_ms = if payload.is_some() { expire_at_ms } else { None };
            out.push(LiveKey { db, key: k.clone(), payload, expire_at_ms });
        }
    }
    Ok(out)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The given keys of db `db` again (`DUMP` and `PEXPIRETIME`, or `PTTL`), pipelined
/// over up to `spec.connections` connections, at most `spec.qps` commands a second; the
/// result in the order of `keys`, a key that no longer exists with no payload.
/// `spec.dbs` and `spec.pattern` play no part.
pub fn fetch(spec: &LiveSpec, db: u64, keys: &[Vec<u8>]) -> Result<Vec<LiveKey>, LiveError> {
    let mut first = Conn::open(spec)?;
    let server = probe_on(&mut first)?;
    let shared =
        Shared { spec, limiter: Limiter::new(spec.qps), pexpiretime: server.pexpiretime, commands: AtomicU64::new(0) };
    let per_conn = keys.len().div_ceil(spec.connections.max(1)).max(PIPELINE_KEYS);
    let mut parts = keys.chunks(per_conn.max(1));
    let Some(head) = parts.next() else { return Ok(Vec::new()) };
    let mut conns = vec![(first, head)];
    for part in parts {
        conns.push((Conn::open(spec)?, part));
    }
    let results: Vec<Result<Vec<LiveKey>, LiveError>> = std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .into_iter()
            .map(|(mut conn, part)| {
                s.spawn({
                    let shared = &shared;
                    move || fetch_on(&mut conn, shared, db, part)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut out = Vec::with_capacity(keys.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// The code of every function library on the server (`FUNCTION LIST WITHCODE`), sorted;
/// empty before 7.0 (no `FUNCTION` command). A user the ACL refuses `FUNCTION` is an
/// error, not an empty list.
pub fn functions(spec: &LiveSpec) -> Result<Vec<Vec<u8>>, LiveError> {
    let mut conn = Conn::open(spec)?;
    let got = conn.call("FUNCTION LIST", &[b"FUNCTION", b"LIST", b"WITHCODE"], |r| match r {
        Reply::Error(m) => Err(Ok(m.to_vec())),
        Reply::Array(Some(libs)) => {
            let mut codes = Vec::with_capacity(libs.len());
            for lib in libs {
                // RESP2: a flat list of names and values; `library_code` is the code.
                let Reply::Array(Some(fields)) = lib else { return Err(Err(describe(lib))) };
                let code = fields.chunks(2).find_map(|kv| match kv {
                    [Reply::Bulk(Some(b"library_code")) | Reply::Simple(b"library_code"), Reply::Bulk(Some(code))] => {
                        Some(code.to_vec())
                    }
                    _ => None,
                });
                codes.push(code.ok_or_else(|| Err("a library without library_code".to_string()))?);
            }
            Ok(codes)
        }
        other => Err(Err(describe(other))),
    })?;
    match got {
        Ok(mut codes) => {
            codes.sort();
            Ok(codes)
        }
        // Before 7.0: "ERR unknown command 'FUNCTION'…".
        Err(Ok(m)) if m.starts_with(b"ERR unknown command") => Ok(Vec::new()),
        Err(Ok(m)) => Err(conn.error_reply("FUNCTION LIST", &m)),
        Err(Err(got)) => Err(LiveError::Unexpected {
            server: conn.server,
            command: "FUNCTION LIST",
            got,
            expected: "an array of libraries",
        }),
    }
}

/// A DUMP payload, taken apart.
struct Dump<'a> {
    rdb_type: u8,
    value: Value<'a>,
    raw_value: &'a [u8],
    key_meta: Option<&'a [u8]>,
}

/// A `DUMP` payload → its RDB type byte and logical value, as `RESTORE` checks and reads
/// it (`cluster.c`, `verifyDumpPayload` and `restoreCommand`; the layout is
/// `createDumpPayload`'s): at least the 10-byte footer, its RDB version one this reader
/// knows (1 to 13 are Redis's, 80 is Valkey 9's: a newer one is refused as unsupported,
/// not misread), the CRC-64 of everything before it right, then (Redis 8.6) an optional
/// key metadata block, the type byte and the value, which must end exactly at the footer.
/// Offsets in errors are the payload's. Never panics, whatever the bytes.
pub fn decode_dump(payload: &[u8]) -> Result<(u8, Value<'_>), rdb::Error> {
    parse_dump(payload).map(|d| (d.rdb_type, d.value))
}

fn parse_dump(payload: &[u8]) -> Result<Dump<'_>, rdb::Error> {
    let len = payload.len();
    if len < 10 {
        return Err(Error::truncated(len as u64, "the 10-byte DUMP footer (RDB version, CRC-64)"));
    }
    let body_end = len - 10;
    let version = u16::from_le_bytes([payload[body_end], payload[body_end + 1]]) as u32;
    let vendor = match version {
        1..=RDB_VERSION_MAX => Vendor::Redis,
        VALKEY_RDB_VERSION => Vendor::Valkey,
        0 => return Err(Error::corrupt(body_end as u64, "DUMP payload of RDB version 0")),
        v => {
            return Err(Error::unsupported(
                body_end as u64,
                format!(
                    "DUMP payload of RDB version {v}: this reader knows 1-{RDB_VERSION_MAX} (Redis) and {VALKEY_RDB_VERSION} (Valkey); the server is newer than this tool"
                ),
            ))
        }
    };
    let mut stored = [0u8; 8];
    stored.copy_from_slice(&payload[len - 8..]);
    let stored = u64::from_le_bytes(stored);
    let computed = rdb::crc64(&payload[..len - 8]);
    if stored != computed {
        return Err(Error::new((len - 8) as u64, ErrorKind::Checksum { stored, computed }));
    }
    let mut cur = Cursor::new(&payload[..body_end]);
    let mut key_meta = None;
    if vendor == Vendor::Redis && cur.peek_u8() == Some(RDB_OPCODE_KEY_META) {
        // `rdb.c`, as the opcode loop reads a KEY_META block before a key.
        let at = cur.offset();
        cur.read_u8("the key metadata opcode")?;
        let start = cur.pos();
        let n = read_len(&mut cur, "a key metadata class count")?;
        if n > 7 {
            return Err(Error::corrupt(at, format!("{n} key metadata classes, at most 7 exist")));
        }
        for _ in 0..n {
            cur.skip(4, "a key metadata class spec")?;
            rdb::module::skip_items(&mut cur)?;
        }
        key_meta = Some(&payload[start..cur.pos()]);
    }
    let at = cur.offset();
    let t = cur.read_u8("the value type byte")?;
    if type_name(vendor, t).is_none() {
        return Err(Error::unsupported(at, format!("value type {t} (not a type this reader knows)")));
    }
    let start = cur.pos();
    let value = read_value(&mut cur, vendor, t, true)?
        .ok_or_else(|| Error::corrupt(at, "an empty collection, which no server dumps"))?;
    if cur.remaining() != 0 {
        return Err(Error::corrupt(
            cur.offset(),
            format!("{} bytes after the value, before the footer", cur.remaining()),
        ));
    }
    Ok(Dump { rdb_type: t, value, raw_value: &payload[start..body_end], key_meta })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload as `createDumpPayload` writes it.
    fn payload(body: &[u8], version: u16) -> Vec<u8> {
        let mut p = body.to_vec();
        p.extend_from_slice(&version.to_le_bytes());
        let crc = rdb::crc64(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        p
    }

    #[test]
    fn decodes_a_string() {
        // type 0, a 3-byte string.
        let p = payload(&[0, 3, b'a', b'b', b'c'], 9);
        let (t, v) = decode_dump(&p).unwrap();
        assert_eq!(t, 0);
        assert_eq!(v, Value::String(Str::Borrowed(b"abc")));
        // Redis 7.0's own DUMP of SET k 42 (an integer-encoded string).
        let p = payload(&[0, 0xc0, 42], 10);
        assert_eq!(decode_dump(&p).unwrap().1, Value::String(Str::Int(42)));
    }

    #[test]
    fn refuses_what_restore_refuses() {
        let good = payload(&[0, 3, b'a', b'b', b'c'], 9);
        let msg = |p: &[u8]| decode_dump(p).unwrap_err().to_string();
        assert!(msg(&good[..9]).contains("10-byte DUMP footer"), "{}", msg(&good[..9]));
        let mut bad_crc = good.clone();
        bad_crc[2] ^= 1;
        assert!(msg(&bad_crc).contains("CRC-64 mismatch"));
        let newer = payload(&[0, 3, b'a', b'b', b'c'], 14);
        let e = decode_dump(&newer).unwrap_err();
        assert!(!e.is_damage());
        assert!(e.to_string().contains("RDB version 14"), "{e}");
        assert!(msg(&payload(&[0, 2, b'a', b'b', b'c'], 9)).contains("1 bytes after the value"));
        assert!(msg(&payload(&[0, 9, b'a'], 9)).contains("ends while reading"));
        assert!(msg(&payload(&[200, 0], 9)).contains("value type 200"));
        assert!(msg(&payload(&[], 9)).contains("type byte"));
    }

    #[test]
    fn valkey_footer_is_valkey() {
        let p = payload(&[0, 1, b'x'], VALKEY_RDB_VERSION as u16);
        assert_eq!(decode_dump(&p).unwrap().1, Value::String(Str::Borrowed(b"x")));
    }

    #[test]
    fn never_panics_on_cut_or_flipped_payloads() {
        // A list of three strings (type 1), then every truncation and every byte flipped.
        let body = [1, 3, 1, b'a', 1, b'b', 1, b'c'];
        let p = payload(&body, 9);
        assert!(decode_dump(&p).is_ok());
        for cut in 0..p.len() {
            let _ = decode_dump(&p[..cut]);
        }
        for i in 0..body.len() {
            for bit in 0..8 {
                let mut b = body.to_vec();
                b[i] ^= 1 << bit;
                let _ = decode_dump(&payload(&b, 9));
            }
        }
    }

    #[test]
    fn round_trips_shrink_with_the_rate() {
        assert_eq!(Limiter::new(Some(1000)).pipeline_keys(4), 125);
        assert_eq!(Limiter::new(Some(3)).pipeline_keys(4), 1);
        assert_eq!(Limiter::new(None).pipeline_keys(4), PIPELINE_KEYS);
    }

    #[test]
    fn scan_replies() {
        let keys = vec![Reply::Bulk(Some(b"a")), Reply::Bulk(Some(b"b"))];
        let r = Reply::Array(Some(vec![Reply::Bulk(Some(b"17")), Reply::Array(Some(keys))]));
        assert_eq!(read_scan_reply(&r).unwrap(), (b"17".to_vec(), vec![b"a".to_vec(), b"b".to_vec()]));
        assert!(read_scan_reply(&Reply::Int(3)).is_err());
        let r = Reply::Array(Some(vec![Reply::Bulk(Some(b"x")), Reply::Array(Some(vec![]))]));
        assert!(read_scan_reply(&r).is_err());
    }
}
