//! One connection to the destination: our own RESP writer and reply reader over a plain
//! TCP socket (no client library: redis-rs sends CLIENT SETINFO, which twemproxy answers
//! by closing the connection).
//!
//! [`Link`] is the socket with a read buffer, and a synchronous `call` for set-up work
//! (AUTH, the probe, EXISTS). [`Worker`] is a connection's thread: it writes the chunks it
//! is given, keeping at most `window` commands (and `window_bytes`) unanswered, matches
//! every reply to its command, and heals a lost connection when what was unanswered can
//! safely be sent again (see `Worker::heal`).

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::resp::encode::{array_header, bulk, bulk_u64, command};
use crate::resp::reply::{self, Reply};

/// Where to connect and how to log in.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls: Option<super::tls::Tls>,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("the destination closed the connection")]
    Closed,
    #[error("the destination did not answer within --timeout")]
    Timeout,
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("unreadable reply: {0}")]
    Protocol(String),
    #[error("TLS: {0}")]
    Tls(String),
}

impl LinkError {
    /// A fault of the connection (as opposed to a refusal or garbage).
    pub fn is_connection(&self) -> bool {
        matches!(self, LinkError::Io(_) | LinkError::Closed | LinkError::Timeout)
    }
}

impl From<std::io::Error> for LinkError {
    /// A socket's read or write timeout shows as `WouldBlock` (or `TimedOut`).
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => LinkError::Timeout,
            _ => LinkError::Io(e),
        }
    }
}

/// A reply to a set-up command, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(usize),
}

impl Answer {
    fn from(r: &Reply<'_>) -> Answer {
        match r {
            Reply::Simple(s) => Answer::Simple(String::from_utf8_lossy(s).into_owned()),
            Reply::Error(s) => Answer::Error(String::from_utf8_lossy(s).into_owned()),
            Reply::Int(i) => Answer::Int(*i),
            Reply::Bulk(b) => Answer::Bulk(b.map(<[u8]>::to_vec)),
            Reply::Array(a) => Answer::Array(a.as_ref().map_or(0, Vec::len)),
        }
    }
}

/// A plain or TLS socket.
enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    fn shutdown(&self) {
        let sock = match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.sock,
        };
        let _ = sock.shutdown(Shutdown::Both);
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(t) => t.flush(),
        }
    }
}

/// A socket to the destination and the replies read from it so far.
pub struct Link {
    stream: Transport,
    buf: Vec<u8>,
    /// Replies start at `buf[start..]`.
    start: usize,
}

/// Read at least this much at a time.
const READ_CHUNK: usize = 64 << 10;
/// Longest reply read (replies to RESTORE, SET, EXISTS, DUMP of the probe key are short).
const MAX_REPLY: usize = 64 << 20;

impl Link {
    /// Connects and logs in (`AUTH [user] password`) when a password is set. `timeout`
    /// bounds the connection and then every read and write (`Duration::ZERO`: connect
    /// within 10 s, then wait as long as it takes).
    pub fn open(ep: &Endpoint, timeout: Duration) -> Result<Link, LinkError> {
        let mut last = None;
        let addrs = (ep.host.as_str(), ep.port).to_socket_addrs()?;
        let (connect, io) = match timeout {
            Duration::ZERO => (Duration::from_secs(10), None),
            t => (t, Some(t)),
        };
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, connect) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(io)?;
                    stream.set_write_timeout(io)?;
                    let stream = match &ep.tls {
                        None => Transport::Plain(stream),
                        Some(tls) => {
                            let conn = rustls::ClientConnection::new(tls.config.clone(), tls.name.clone())
                                .map_err(|e| LinkError::Tls(e.to_string()))?;
                            Transport::Tls(Box::new(rustls::StreamOwned::new(conn, stream)))
                        }
                    };
                    let mut stream = stream;
                    // The handshake now, so that a certificate problem is named as one.
                    if let Transport::Tls(t) = &mut stream {
                        while t.conn.is_handshaking() {
                            t.conn.complete_io(&mut t.sock).map_err(|e| LinkError::Tls(e.to_string()))?;
                        }
                    }
                    let mut link = Link { stream, buf: Vec::with_capacity(READ_CHUNK), start: 0 };
                    link.auth(ep)?;
                    return Ok(link);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(LinkError::Io(last.unwrap_or_else(|| std::io::Error::other("the host name resolves to no address"))))
    }

    fn auth(&mut self, ep: &Endpoint) -> Result<(), LinkError> {
        let Some(pass) = &ep.password else { return Ok(()) };
        let answer = match &ep.user {
            Some(user) => self.call(&[b"AUTH", user.as_bytes(), pass.as_bytes()])?,
            None => self.call(&[b"AUTH", pass.as_bytes()])?,
        };
        match answer {
            Answer::Simple(_) => Ok(()),
            Answer::Error(e) => Err(LinkError::Auth(e)),
            other => Err(LinkError::Protocol(format!("AUTH answered {other:?}"))),
        }
    }

    /// Sends one command and waits for its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Answer, LinkError> {
        let mut out = Vec::new();
        command(&mut out, args);
        self.stream.write_all(&out)?;
        self.next_reply(Answer::from)
    }

    /// Sends bytes holding whole commands.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        self.stream.write_all(bytes).map_err(LinkError::from)
    }

    /// Reads until one whole reply is there; hands it to `f`.
    pub fn next_reply<T>(&mut self, f: impl FnOnce(&Reply<'_>) -> T) -> Result<T, LinkError> {
        loop {
            if let Some((r, used)) =
                reply::parse(&self.buf[self.start..]).map_err(|e| LinkError::Protocol(e.to_string()))?
            {
                let t = f(&r);
                self.start += used;
                return Ok(t);
            }
            self.fill()?;
        }
    }

    /// Reads once, then hands every whole reply in the buffer to `f` (which may stop
    /// early by returning false).
    fn replies(&mut self, mut f: impl FnMut(&Reply<'_>) -> bool) -> Result<(), LinkError> {
        self.fill()?;
        while let Some((r, used)) =
            reply::parse(&self.buf[self.start..]).map_err(|e| LinkError::Protocol(e.to_string()))?
        {
            let go_on = f(&r);
            self.start += used;
            if !go_on {
                break;
            }
        }
        Ok(())
    }

    /// Reads what the socket has (blocking until something comes). Our commands get short
    /// replies: one that grows past `MAX_REPLY` unfinished is not a reply to them.
    fn fill(&mut self) -> Result<(), LinkError> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.len() - self.start > MAX_REPLY {
            return Err(LinkError::Protocol(format!("a reply longer than {} MB", MAX_REPLY >> 20)));
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK, 0);
        let n = loop {
            match self.stream.read(&mut self.buf[len..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.buf.truncate(len + *n.as_ref().unwrap_or(&0));
        match n {
            Ok(0) => Err(LinkError::Closed),
            Ok(_) => Ok(()),
            Err(e) => Err(LinkError::from(e)),
        }
    }

    pub fn close(&self) {
        self.stream.shutdown();
    }
}

/// Commands for one connection: whole units (a key's commands, an AOF command or MULTI
/// block), all in one db.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The db the commands run in; `None` for commands that need no db (FUNCTION LOAD).
    pub db: Option<u64>,
    /// The db the connection is on after the chunk (a MULTI block may SELECT inside).
    pub exit_db: Option<u64>,
    pub buf: Vec<u8>,
    /// End offset of each command in `buf`.
    pub ends: Vec<usize>,
    /// Units: the index of the first command of each, and its position in the input.
    pub units: Vec<(usize, Position)>,
    /// Snapshot units can be sent again after a lost connection (each rebuilds its key
    /// from scratch); log commands cannot (INCR, APPEND…).
    pub resendable: bool,
    /// The chunk's number on its connection (the engine's low-water mark counts them).
    pub seq: u64,
    /// Bytes the engine counts as held until the chunk is answered.
    pub weight: u64,
    /// For log commands on a server that has MULTI: the chunk is MULTI … SET applied-key
    /// MARK … EXEC, so that after a lost connection the applied key says whether it ran
    /// (all of it) or not (none of it). The mark is the encoded position of its last unit.
    pub transaction: Option<u64>,
}

/// Where a unit came from: input file index and byte offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub file: usize,
    pub offset: u64,
}

/// Commands for one connection are sent in chunks of about this size.
pub const CHUNK_BYTES: usize = 256 << 10;

impl Chunk {
    /// An empty chunk with room for `CHUNK_BYTES` of commands.
    pub fn with_room() -> Chunk {
        Chunk { buf: Vec::with_capacity(CHUNK_BYTES), ends: Vec::with_capacity(4096), ..Chunk::default() }
    }

    /// Empties the chunk for reuse, keeping its buffers.
    fn reset(&mut self) {
        self.db = None;
        self.exit_db = None;
        self.buf.clear();
        self.ends.clear();
        self.units.clear();
        self.resendable = false;
        self.seq = 0;
        self.weight = 0;
        self.transaction = None;
    }

    pub fn start_of(&self, cmd: usize) -> usize {
        if cmd == 0 {
            0
        } else {
            self.ends[cmd - 1]
        }
    }

    /// Adds one whole command.
    pub fn push_command(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.ends.push(self.buf.len());
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The same chunk without the commands at `drop` (sorted): for a transaction the
    /// server aborted because of them.
    fn without(&self, drop: &[usize]) -> Chunk {
        let mut c = Chunk {
            db: self.db,
            exit_db: self.exit_db,
            resendable: self.resendable,
            seq: self.seq,
            weight: self.weight,
            transaction: self.transaction,
            ..Chunk::default()
        };
        let mut unit = 0;
        for i in 0..self.ends.len() {
            while unit < self.units.len() && self.units[unit].0 == i {
                c.units.push((c.ends.len(), self.units[unit].1));
                unit += 1;
            }
            if drop.binary_search(&i).is_err() {
                c.push_command(&self.buf[self.start_of(i)..self.ends[i]]);
            }
        }
        c.units.dedup_by_key(|u| u.0);
        c.units.retain(|u| u.0 < c.ends.len());
        c
    }

    /// The unit holding command `cmd`.
    fn unit_of(&self, cmd: usize) -> usize {
        self.units.partition_point(|&(first, _)| first <= cmd).saturating_sub(1)
    }
}

/// What a connection is told.
pub enum Msg {
    Chunk(Chunk),
    /// Answer once every command sent before has its reply.
    Drain(Sender<()>),
}

/// Errors the destination answered, by kind (the error's first word).
#[derive(Debug, Default, Clone)]
pub struct Errors {
    pub by_kind: BTreeMap<String, (u64, Vec<String>)>,
}

impl Errors {
    pub const EXAMPLES: usize = 5;

    pub fn total(&self) -> u64 {
        self.by_kind.values().map(|(n, _)| n).sum()
    }

    pub fn add(&mut self, kind: String, n: u64, example: impl FnOnce() -> String) {
        let e = self.by_kind.entry(kind).or_default();
        e.0 += n;
        if e.1.len() < Errors::EXAMPLES {
            e.1.push(example());
        }
    }

    pub fn merge(&mut self, o: Errors) {
        for (kind, (n, ex)) in o.by_kind {
            let e = self.by_kind.entry(kind).or_default();
            e.0 += n;
            let room = Errors::EXAMPLES.saturating_sub(e.1.len());
            e.1.extend(ex.into_iter().take(room));
        }
    }
}

/// What one connection did.
#[derive(Debug, Default, Clone)]
pub struct ConnReport {
    pub commands: u64,
    pub bytes: u64,
    pub errors: Errors,
    pub reconnects: u64,
}

/// How a connection behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub endpoint: Endpoint,
    /// Most commands sent and not answered.
    pub window: usize,
    /// Most bytes sent and not answered (a larger single command goes alone).
    pub window_bytes: usize,
    /// SELECT before commands of another db (not through twemproxy).
    pub select: bool,
    /// How long a lost connection is retried.
    pub retry_for: Duration,
    pub timeout: Duration,
    /// Answered chunks of ordinary size go back here to be filled again (steady memory,
    /// no allocator churn between threads).
    pub recycle: Option<std::sync::mpsc::Sender<Chunk>>,
    /// Transactions of log commands SET `<prefix><connection>` in db 0 (see `Chunk`).
    pub applied_prefix: String,
}

/// A chunk on its way: `written` commands sent, `answered` of them replied to.
struct Flight {
    /// The chunk's number on this connection.
    id: usize,
    chunk: Chunk,
    written: usize,
    answered: usize,
    /// Errors are recorded for commands from here on (a resent command's error was
    /// recorded the first time).
    recorded: usize,
    /// Commands of a transaction the server refused to queue, with its message.
    refused: Vec<(usize, String)>,
}

enum Pending {
    Select,
    Chunk(Flight),
}

/// A connection's thread.
pub struct Worker {
    pub id: usize,
    cfg: WorkerConfig,
    link: Option<Link>,
    selected: Option<u64>,
    queued: VecDeque<Flight>,
    inflight: VecDeque<Pending>,
    unanswered: usize,
    unanswered_bytes: usize,
    report: ConnReport,
    /// The first unanswered command when the connection was last lost, and whether any
    /// reply came since: a second loss at the same command means the destination
    /// refuses it (twemproxy closes the connection instead of answering an error).
    last_fault: Option<(usize, usize)>,
    progress_since_fault: bool,
    /// How many faults in a row came at `last_fault` with no reply between.
    same_fault: u32,
    /// How many chunks this worker has taken (names them in `last_fault`).
    taken: usize,
    /// The sequence number after the last chunk fully answered (read by the engine).
    done: Arc<AtomicU64>,
    /// Bytes of chunks answered (the engine holds back while too many are unanswered).
    released: Arc<AtomicU64>,
    applied_key: Vec<u8>,
}

/// Why a connection gave up.
#[derive(Debug, thiserror::Error)]
#[error("connection {conn}: {msg}")]
pub struct Fatal {
    pub conn: usize,
    pub msg: String,
    /// For a stop in the command log: the first command whose fate is unknown.
    pub unknown_from: Option<Position>,
    pub report: ConnReport,
}

impl Worker {
    pub fn new(id: usize, cfg: WorkerConfig, link: Link, done: Arc<AtomicU64>, released: Arc<AtomicU64>) -> Worker {
        let applied_key = format!("{}{id}", cfg.applied_prefix).into_bytes();
        Worker {
            done,
            released,
            applied_key,
            id,
            cfg,
            link: Some(link),
            selected: Some(0),
            queued: VecDeque::new(),
            inflight: VecDeque::new(),
            unanswered: 0,
            unanswered_bytes: 0,
            report: ConnReport::default(),
            last_fault: None,
            progress_since_fault: true,
            same_fault: 0,
            taken: 0,
        }
    }

    fn fatal(&mut self, msg: String, unknown_from: Option<Position>) -> Fatal {
        if let Some(l) = &self.link {
            l.close();
        }
        Fatal { conn: self.id, msg, unknown_from, report: std::mem::take(&mut self.report) }
    }

    /// Runs until the sender hangs up and every command has its reply.
    pub fn run(mut self, rx: Receiver<Msg>) -> Result<ConnReport, Fatal> {
        let mut drain: Option<Sender<()>> = None;
        let mut closed = false;
        loop {
            if self.link.is_none() {
                self.reconnect()?;
            }
            let idle = self.inflight.is_empty() && self.queued.is_empty();
            if idle {
                if let Some(tx) = drain.take() {
                    let _ = tx.send(());
                }
                if closed {
                    if let Some(l) = &self.link {
                        l.close();
                    }
                    return Ok(self.report);
                }
                match rx.recv() {
                    Ok(Msg::Chunk(c)) => self.take(c),
                    Ok(Msg::Drain(tx)) => drain = Some(tx),
                    Err(_) => closed = true,
                }
                continue;
            }
            // Take more work while there is room and no drain is waiting.
            if drain.is_none() && !closed && self.queued.len() < 2 {
                match rx.try_recv() {
                    Ok(Msg::Chunk(c)) => {
                        self.take(c);
                        continue;
                    }
                    Ok(Msg::Drain(tx)) => drain = Some(tx),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => closed = true,
                }
            }
            let result = if self.can_write() { self.write_some() } else { self.read_replies() };
            if let Err(e) = result {
                match e {
                    Step::Link(e) if e.is_connection() => self.heal(e)?,
                    Step::Link(e) => return Err(self.fatal(e.to_string(), None)),
                    Step::Fatal(f) => return Err(f),
                }
            }
        }
    }

    fn take(&mut self, chunk: Chunk) {
        self.queued.push_back(Flight {
            id: self.taken,
            chunk,
            written: 0,
            answered: 0,
            recorded: 0,
            refused: Vec::new(),
        });
        self.taken += 1;
    }

    /// True when there is something unsent and the window has room for it. Nothing is
    /// sent after an unanswered transaction: if the server aborts it, it is sent again
    /// before anything that follows it.
    fn can_write(&self) -> bool {
        let unsent = match self.inflight.back() {
            Some(Pending::Chunk(f)) if f.written < f.chunk.ends.len() => true,
            _ => {
                !self.queued.is_empty()
                    && !self.inflight.iter().any(|p| matches!(p, Pending::Chunk(f) if f.chunk.transaction.is_some()))
            }
        };
        unsent
            && (self.unanswered == 0
                || (self.unanswered < self.cfg.window && self.unanswered_bytes < self.cfg.window_bytes))
    }

    fn write_some(&mut self) -> Result<(), Step> {
        let needs_start = !matches!(self.inflight.back(), Some(Pending::Chunk(f)) if f.written < f.chunk.ends.len());
        if needs_start {
            let flight = self.queued.pop_front().expect("can_write saw a queued chunk");
            if let Some(db) = flight.chunk.db {
                if self.cfg.select && self.selected != Some(db) {
                    let mut sel = Vec::with_capacity(24);
                    array_header(&mut sel, 2);
                    bulk(&mut sel, b"SELECT");
                    bulk_u64(&mut sel, db);
                    self.link_mut()?.send(&sel)?;
                    self.inflight.push_back(Pending::Select);
                    self.unanswered += 1;
                }
            }
            if flight.chunk.exit_db.is_some() {
                self.selected = flight.chunk.exit_db;
            }
            self.inflight.push_back(Pending::Chunk(flight));
        }
        let (window, window_bytes) = (self.cfg.window, self.cfg.window_bytes);
        let (unanswered, unanswered_bytes) = (self.unanswered, self.unanswered_bytes);
        let Some(Pending::Chunk(f)) = self.inflight.back_mut() else { unreachable!("a chunk was just queued") };
        let from = f.written;
        let start = f.chunk.start_of(from);
        let mut to = from;
        // At least one command; then as many as the window holds.
        while to < f.chunk.ends.len()
            && (to == from
                || (unanswered + (to - from) < window && unanswered_bytes + (f.chunk.ends[to] - start) <= window_bytes))
        {
            to += 1;
        }
        let end = f.chunk.ends[to - 1];
        f.written = to;
        self.unanswered += to - from;
        self.unanswered_bytes += end - start;
        self.report.bytes += (end - start) as u64;
        let bytes = &f.chunk.buf[start..end];
        match &mut self.link {
            Some(l) => l.stream.write_all(bytes).map_err(|e| Step::Link(LinkError::from(e))),
            None => Err(Step::Link(LinkError::Closed)),
        }
    }

    fn link_mut(&mut self) -> Result<&mut Link, Step> {
        self.link.as_mut().ok_or(Step::Link(LinkError::Closed))
    }

    fn read_replies(&mut self) -> Result<(), Step> {
        let mut link = self.link.take().ok_or(Step::Link(LinkError::Closed))?;
        let mut failure = None;
        let r = link.replies(|r| match self.answer(r) {
            Ok(()) => true,
            Err(f) => {
                failure = Some(f);
                false
            }
        });
        self.link = Some(link);
        if let Some(f) = failure {
            return Err(Step::Fatal(f));
        }
        r.map_err(Step::Link)
    }

    /// Matches one reply to the oldest unanswered command.
    fn answer(&mut self, r: &Reply<'_>) -> Result<(), Fatal> {
        self.progress_since_fault = true;
        match self.inflight.front_mut() {
            Some(Pending::Select) => {
                self.inflight.pop_front();
                self.unanswered -= 1;
                if let Some(e) = r.first_error() {
                    let msg = format!("SELECT failed: {}", String::from_utf8_lossy(e));
                    return Err(self.fatal(msg, None));
                }
            }
            Some(Pending::Chunk(f)) if f.chunk.transaction.is_some() => return self.answer_transaction(r),
            Some(Pending::Chunk(f)) => {
                let i = f.answered;
                let (start, end) = (f.chunk.start_of(i), f.chunk.ends[i]);
                if i >= f.recorded {
                    let n = r.errors();
                    if n > 0 {
                        let msg = String::from_utf8_lossy(r.first_error().unwrap_or_default()).into_owned();
                        let kind = msg.split(' ').next().unwrap_or("ERR").to_string();
                        let (name, key) = match crate::resp::command_at(&f.chunk.buf[start..end], 0) {
                            Some(c) => (c.name, c.key),
                            None => (&b"?"[..], None),
                        };
                        self.report.errors.add(kind, n as u64, || describe(name, key, &msg));
                    }
                    f.recorded = i + 1;
                }
                f.answered += 1;
                self.unanswered -= 1;
                self.unanswered_bytes -= end - f.chunk.start_of(i);
                self.report.commands += 1;
                if f.answered == f.chunk.ends.len() {
                    self.finish_front();
                }
            }
            None => {
                let msg = "a reply came for no command (the connection is out of step)".to_string();
                return Err(self.fatal(msg, None));
            }
        }
        Ok(())
    }

    /// The front chunk has all its replies: count it done and hand its buffers back.
    fn finish_front(&mut self) {
        if let Some(Pending::Chunk(mut done)) = self.inflight.pop_front() {
            self.done.store(done.chunk.seq + 1, Ordering::Release);
            self.released.fetch_add(done.chunk.weight, Ordering::Release);
            if let Some(tx) = &self.cfg.recycle {
                if done.chunk.buf.capacity() <= 2 * CHUNK_BYTES {
                    done.chunk.reset();
                    let _ = tx.send(done.chunk);
                }
            }
        }
    }

    /// A reply within a transaction chunk: MULTI's OK, a QUEUED (or a refusal) per
    /// command, then EXEC's array of results, matched to the commands one by one. An
    /// aborted transaction ran nothing: it goes again without the refused commands.
    fn answer_transaction(&mut self, r: &Reply<'_>) -> Result<(), Fatal> {
        let Some(Pending::Chunk(f)) = self.inflight.front_mut() else { return Ok(()) };
        let i = f.answered;
        let last = f.chunk.ends.len() - 1;
        f.answered += 1;
        self.unanswered -= 1;
        self.unanswered_bytes -= f.chunk.ends[i] - f.chunk.start_of(i);
        self.report.commands += 1;
        let describe_at = |f: &Flight, k: usize, msg: &str| {
            let (start, end) = (f.chunk.start_of(k), f.chunk.ends[k]);
            match crate::resp::command_at(&f.chunk.buf[start..end], 0) {
                Some(c) => describe(c.name, c.key, msg),
                None => msg.to_string(),
            }
        };
        if i == 0 {
            if let Some(e) = r.first_error() {
                let msg = format!("MULTI failed: {}", String::from_utf8_lossy(e));
                return Err(self.fatal(msg, None));
            }
            return Ok(());
        }
        if i < last {
            if let Reply::Error(e) = r {
                f.refused.push((i, String::from_utf8_lossy(e).into_owned()));
            }
            return Ok(());
        }
        match r {
            Reply::Array(Some(results)) => {
                for (j, res) in results.iter().enumerate() {
                    if let Some(e) = res.first_error() {
                        let msg = String::from_utf8_lossy(e).into_owned();
                        let kind = msg.split(' ').next().unwrap_or("ERR").to_string();
                        let text = describe_at(f, j + 1, &msg);
                        self.report.errors.add(kind, 1, || text);
                    }
                }
                self.finish_front();
                Ok(())
            }
            _ if !f.refused.is_empty() => {
                // EXECABORT: the refused commands are reported, the rest goes again alone.
                let refused = std::mem::take(&mut f.refused);
                for (k, msg) in &refused {
                    let kind = msg.split(' ').next().unwrap_or("ERR").to_string();
                    let text = describe_at(f, *k, msg);
                    self.report.errors.add(kind, 1, || text);
                }
                let drop: Vec<usize> = refused.iter().map(|x| x.0).collect();
                let again = f.chunk.without(&drop);
                let id = f.id;
                self.inflight.pop_front();
                // Its SELECTs did not run either: the db is the one before it, or unknown.
                self.selected = None;
                self.queued.push_front(Flight {
                    id,
                    chunk: again,
                    written: 0,
                    answered: 0,
                    recorded: 0,
                    refused: Vec::new(),
                });
                Ok(())
            }
            other => {
                let msg = format!("a transaction of log commands failed: EXEC answered {other:?}");
                Err(self.fatal(msg, None))
            }
        }
    }

    /// After a lost connection: reconnect, and send again what may not have been applied.
    /// A snapshot key is sent again from the first command of its unit (it is rebuilt
    /// from its DEL or RESTORE … REPLACE, so sending it twice leaves it the same; sending
    /// only the unanswered commands would not). A transaction of log commands ran whole or
    /// not at all: the applied key tells which. Unanswered log commands outside a
    /// transaction (twemproxy has no MULTI) cannot be proven either way: stop, naming the
    /// first of them.
    fn heal(&mut self, why: LinkError) -> Result<(), Fatal> {
        if let Some(l) = self.link.take() {
            l.close();
        }
        // The first unanswered command, by chunk id and index.
        let mut first: Option<(usize, usize)> = None;
        let mut unknown_log: Option<Position> = None;
        let mut chunks = Vec::new();
        // Transactions' replies counted so far.
        let mut counted: Vec<(usize, usize)> = Vec::new();
        for p in self.inflight.drain(..) {
            let Pending::Chunk(mut f) = p else { continue };
            if f.answered < f.written {
                first.get_or_insert((f.id, f.answered));
                if !f.chunk.resendable && f.chunk.transaction.is_none() && unknown_log.is_none() {
                    let u = f.chunk.unit_of(f.answered);
                    unknown_log = Some(f.chunk.units.get(u).map_or(Position::default(), |x| x.1));
                }
            }
            let back_to = if f.chunk.transaction.is_some() {
                counted.push((f.id, f.answered));
                0
            } else {
                match f.chunk.units.get(f.chunk.unit_of(f.answered)) {
                    Some(&(first_cmd, _)) if f.chunk.resendable => first_cmd,
                    _ => f.answered,
                }
            };
            f.written = back_to;
            f.answered = back_to;
            f.refused.clear();
            chunks.push(f);
        }
        if let Some(pos) = unknown_log {
            let msg = format!(
                "lost the connection ({why}) with log commands unanswered: they may or may not have been applied, \
                 so they are not sent again"
            );
            return Err(self.fatal(msg, Some(pos)));
        }
        // Losing the connection again and again at the same command, with no reply
        // between (after reconnects that a PING proved sound): the destination refuses
        // that command by closing the connection. Once could be a server going down.
        if first.is_some() && first == self.last_fault && !self.progress_since_fault {
            self.same_fault += 1;
        } else {
            self.same_fault = 0;
        }
        self.last_fault = first;
        if let (Some((id, at)), true) = (first, self.same_fault >= 2) {
            if let Some(f) = chunks.iter_mut().find(|f| f.id == id && f.chunk.transaction.is_none()) {
                let (start, end) = (f.chunk.start_of(at), f.chunk.ends[at]);
                let (name, key) = match crate::resp::command_at(&f.chunk.buf[start..end], 0) {
                    Some(c) => (c.name, c.key),
                    None => (&b"?"[..], None),
                };
                let msg = "the destination closed the connection on this command, three times (a proxy refusing it?)";
                self.report.errors.add("CLOSED".into(), 1, || describe(name, key, msg));
                // Skip the rest of that unit: its key stays as far as it got.
                let u = f.chunk.unit_of(at);
                let next = f.chunk.units.get(u + 1).map_or(f.chunk.ends.len(), |x| x.0);
                f.written = next;
                f.answered = next;
                f.recorded = f.recorded.max(next);
            }
            self.last_fault = None;
            self.same_fault = 0;
        }
        self.progress_since_fault = false;
        self.unanswered = 0;
        self.unanswered_bytes = 0;
        self.selected = None;
        self.report.reconnects += 1;
        self.reconnect()?;
        // Transactions the applied key shows as run are done (their replies are lost).
        if chunks.iter().any(|f| f.chunk.transaction.is_some()) {
            let key = self.applied_key.clone();
            let applied = match self.link.as_mut().map(|l| l.call(&[b"GET", &key])) {
                Some(Ok(Answer::Bulk(Some(v)))) => std::str::from_utf8(&v).ok().and_then(|v| v.parse::<u64>().ok()),
                Some(Ok(_)) => None,
                Some(Err(e)) => return Err(self.fatal(format!("reading the applied key after a reconnect: {e}"), None)),
                None => None,
            };
            chunks.retain(|f| match (f.chunk.transaction, applied) {
                (Some(mark), Some(a)) if mark <= a => {
                    self.done.store(f.chunk.seq + 1, Ordering::Release);
                    self.released.fetch_add(f.chunk.weight, Ordering::Release);
                    let before = counted.iter().find(|c| c.0 == f.id).map_or(0, |c| c.1);
                    self.report.commands += (f.chunk.ends.len() - before) as u64;
                    false
                }
                _ => true,
            });
        }
        // Put the chunks back in front of the queue, each resuming at its `written`.
        while let Some(f) = chunks.pop() {
            if f.written < f.chunk.ends.len() {
                self.queued.push_front(f);
            }
        }
        Ok(())
    }

    /// Connects again, once the server answers PING (not LOADING, not a socket a dying
    /// server still accepted on).
    fn reconnect(&mut self) -> Result<(), Fatal> {
        let deadline = Instant::now() + self.cfg.retry_for;
        let mut pause = Duration::from_millis(20);
        loop {
            std::thread::sleep(pause);
            let attempt =
                Link::open(&self.cfg.endpoint, self.cfg.timeout).and_then(|mut l| match l.call(&[b"PING"])? {
                    Answer::Simple(_) => Ok(l),
                    Answer::Error(e) if e.starts_with("NOAUTH") || e.starts_with("WRONGPASS") => {
                        Err(LinkError::Auth(e))
                    }
                    Answer::Error(e) => Err(LinkError::Protocol(format!("PING answered {e}"))),
                    other => Err(LinkError::Protocol(format!("PING answered {other:?}"))),
                });
            match attempt {
                Ok(l) => {
                    self.link = Some(l);
                    self.selected = Some(0);
                    return Ok(());
                }
                Err(LinkError::Auth(e)) => return Err(self.fatal(format!("authentication failed: {e}"), None)),
                Err(e) if Instant::now() >= deadline => {
                    let msg = format!(
                        "lost the connection to {} and could not reconnect within {:?}: {e}",
                        self.cfg.endpoint, self.cfg.retry_for
                    );
                    return Err(self.fatal(msg, None));
                }
                Err(_) => pause = (pause * 2).min(Duration::from_millis(500)),
            }
        }
    }
}

enum Step {
    Link(LinkError),
    Fatal(Fatal),
}

impl From<LinkError> for Step {
    fn from(e: LinkError) -> Step {
        Step::Link(e)
    }
}

/// `SET "key": message` for a report.
pub fn describe(name: &[u8], key: Option<&[u8]>, msg: &str) -> String {
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    match key {
        Some(k) => format!("{name} \"{}\": {msg}", crate::rdb::escape_key(k)),
        None => format!("{name}: {msg}"),
    }
}
