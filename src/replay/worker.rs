//! One connection to the destination, as replay drives it. The socket itself is a
//! [`Link`] of [`crate::net`].
//!
//! [`Worker`] is a connection's thread: it writes the chunks it is given, keeping at most
//! `window` commands (and `window_bytes`) unanswered, matches every reply to its command,
//! and heals a lost connection when what was unanswered can safely be sent again (see
//! `Worker::heal`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chunk::{Chunk, Errors, Position, CHUNK_BYTES};
use super::redirect::{Detour, Outcome, Redirector};
use crate::net::{Answer, Endpoint, Link, LinkError};
use crate::resp::reply::Reply;

/// What a connection is told.
pub enum Msg {
    Chunk(Chunk),
    /// Answer once every command sent before has its reply.
    Drain(Sender<()>),
}

/// What one connection did.
#[derive(Debug, Default, Clone)]
pub struct ConnReport {
    pub commands: u64,
    pub bytes: u64,
    pub errors: Errors,
    pub reconnects: u64,
    /// Into a cluster: redirections followed, topology refreshes, keys sent again.
    pub cluster: Box<super::redirect::ClusterCounts>,
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
    /// Into a cluster: how to follow it when it changes.
    pub cluster: Option<super::redirect::ClusterLink>,
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

// A SELECT is rare and the queue short (one entry per chunk): its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Pending {
    Select,
    Chunk(Flight),
    /// `WAIT n`, covering the first `covers` chunks of `unconfirmed`.
    Wait {
        covers: usize,
    },
}

/// How often a connection into a cluster asks WAIT (at most), and after how many bytes
/// answered and not confirmed (at least).
const WAIT_EVERY: Duration = Duration::from_millis(300);
const WAIT_BYTES: usize = 4 << 20;

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
    /// Into a cluster: side links for redirected commands, the topology.
    redirect: Option<Redirector>,
    /// The connection's master changed (a failover): reconnect there.
    repoint: Option<Endpoint>,
    /// Into a cluster whose master has replicas: chunks answered, not yet confirmed by
    /// WAIT to have reached a replica (sent again if the master is lost), their bytes,
    /// and when WAIT was last asked.
    unconfirmed: VecDeque<Flight>,
    unconfirmed_bytes: usize,
    waited_at: Instant,
    waiting: bool,
    /// Since when WAIT has answered fewer replicas than the master has.
    short_since: Option<Instant>,
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
        let redirect = cfg.cluster.clone().map(|c| Redirector::new(c, cfg.timeout, cfg.retry_for));
        Worker {
            redirect,
            repoint: None,
            unconfirmed: VecDeque::new(),
            unconfirmed_bytes: 0,
            waited_at: Instant::now(),
            waiting: false,
            short_since: None,
            done,
            released,
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
        self.end_redirects();
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
            let idle = self.inflight.is_empty() && self.queued.is_empty() && self.unconfirmed.is_empty();
            if idle {
                if let Some(tx) = drain.take() {
                    let _ = tx.send(());
                }
                if closed {
                    if let Some(l) = &self.link {
                        l.close();
                    }
                    self.end_redirects();
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
            let result = if self.wait_due() {
                self.send_wait()
            } else if self.can_write() {
                self.write_some()
            } else {
                self.read_replies()
            };
            if let Err(e) = result {
                match e {
                    Step::Link(e) if e.is_connection() => self.heal(e)?,
                    Step::Repoint(why) => self.heal(LinkError::Protocol(why))?,
                    Step::Link(e) => return Err(self.fatal(e.to_string(), None)),
                    Step::Fatal(f) => return Err(f),
                }
            }
        }
    }

    /// Closes the side links; their counts go into the report.
    fn end_redirects(&mut self) {
        if let Some(rd) = &self.redirect {
            rd.close();
            self.report.cluster.merge(rd.counts);
            self.redirect = None;
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
                    crate::resp::encode::select(&mut sel, db);
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
            Some(l) => l.send(bytes).map_err(Step::Link),
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
            Ok(()) => self.repoint.is_none(),
            Err(f) => {
                failure = Some(f);
                false
            }
        });
        self.link = Some(link);
        if let Some(f) = failure {
            return Err(Step::Fatal(f));
        }
        if let Some(ep) = self.repoint.take() {
            // A failover: the master this connection wrote to is a replica now. What it
            // did not answer goes to the new master, as after a lost connection.
            let why = format!("the slots of {} moved to {ep}", self.cfg.endpoint);
            self.cfg.endpoint = ep;
            return Err(Step::Repoint(why));
        }
        r.map_err(Step::Link)
    }

    /// Matches one reply to the oldest unanswered command.
    fn answer(&mut self, r: &Reply<'_>) -> Result<(), Fatal> {
        self.progress_since_fault = true;
        match self.inflight.front_mut() {
            Some(&mut Pending::Wait { covers }) => {
                self.inflight.pop_front();
                self.unanswered -= 1;
                self.answer_wait(covers, r)?;
            }
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
                // Into a cluster: a redirection is followed; its outcome is the command's.
                let mut forwarded = None;
                if let (Some(rd), Reply::Error(e)) = (self.redirect.as_mut(), r) {
                    if Detour::of(e).is_some() {
                        let cmd = &f.chunk.buf[start..end];
                        let slot = crate::resp::command_at(cmd, 0).and_then(|c| c.key).map(crate::aof::keys::slot);
                        match rd.forward(cmd, 1, e, &self.cfg.endpoint, slot) {
                            Ok(Outcome::Done(errors)) => forwarded = Some(errors),
                            Ok(Outcome::Repoint(ep)) => {
                                self.repoint = Some(ep);
                                return Ok(());
                            }
                            Err(msg) => return Err(self.fatal(msg, None)),
                        }
                    }
                }
                let Some(Pending::Chunk(f)) = self.inflight.front_mut() else { unreachable!("the front is a chunk") };
                if let (Some(errors), true) = (&forwarded, i >= f.recorded) {
                    for msg in errors {
                        let kind = msg.split(' ').next().unwrap_or("ERR").to_string();
                        let (name, key) = match crate::resp::command_at(&f.chunk.buf[start..end], 0) {
                            Some(c) => (c.name, c.key),
                            None => (&b"?"[..], None),
                        };
                        self.report.errors.add(kind, 1, || describe(name, key, msg));
                    }
                    f.recorded = i + 1;
                }
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
        if let Some(Pending::Chunk(done)) = self.inflight.pop_front() {
            // An answer is not durability: where the master has replicas, the chunk
            // counts as applied once WAIT says a replica has it.
            if self.redirect.as_ref().is_some_and(|r| r.cfg.replicas > 0) {
                self.unconfirmed_bytes += done.chunk.buf.len();
                self.unconfirmed.push_back(done);
                return;
            }
            self.release(done);
        }
    }

    /// A chunk applied for good: the low-water mark may pass it; its buffers go back.
    fn release(&mut self, mut done: Flight) {
        self.done.store(done.chunk.seq + 1, Ordering::Release);
        self.released.fetch_add(done.chunk.weight, Ordering::Release);
        if let Some(tx) = &self.cfg.recycle {
            if done.chunk.buf.capacity() <= 2 * CHUNK_BYTES {
                done.chunk.reset();
                let _ = tx.send(done.chunk);
            }
        }
    }

    /// True when WAIT is to be asked now: chunks wait for it, none is asked, and it is
    /// time, or they hold many bytes, or nothing else is left to send or read.
    fn wait_due(&self) -> bool {
        !self.unconfirmed.is_empty()
            && !self.waiting
            && (self.waited_at.elapsed() >= WAIT_EVERY
                || self.unconfirmed_bytes >= WAIT_BYTES
                || (self.inflight.is_empty() && !self.can_write()))
    }

    /// `WAIT n 1000`: n replicas of this master have every write this connection made.
    fn send_wait(&mut self) -> Result<(), Step> {
        let n = self.redirect.as_ref().map_or(0, |r| r.cfg.replicas).to_string();
        let mut cmd = Vec::with_capacity(32);
        crate::resp::encode::command(&mut cmd, &[b"WAIT", n.as_bytes(), b"1000"]);
        self.link_mut()?.send(&cmd)?;
        self.inflight.push_back(Pending::Wait { covers: self.unconfirmed.len() });
        self.unanswered += 1;
        self.waiting = true;
        self.waited_at = Instant::now();
        Ok(())
    }

    /// WAIT's answer: the chunks it covers are confirmed when enough replicas have them,
    /// or when the master has fewer replicas now (a fresh topology says how many).
    fn answer_wait(&mut self, covers: usize, r: &Reply<'_>) -> Result<(), Fatal> {
        self.waiting = false;
        let got = match r {
            Reply::Int(n) => *n,
            _ => -1,
        };
        let mut want = self.redirect.as_ref().map_or(0, |rd| rd.cfg.replicas) as i64;
        if got >= 0 && got < want {
            if let Some(rd) = self.redirect.as_mut() {
                // The replica count of this master now (failed_over notes it).
                rd.failed_over(&self.cfg.endpoint);
                want = rd.cfg.replicas as i64;
            }
        }
        if got >= want {
            self.short_since = None;
            for _ in 0..covers.min(self.unconfirmed.len()) {
                if let Some(f) = self.unconfirmed.pop_front() {
                    self.unconfirmed_bytes -= f.chunk.buf.len();
                    self.release(f);
                }
            }
        } else if self.short_since.get_or_insert_with(Instant::now).elapsed() >= self.cfg.retry_for {
            let msg = format!(
                "WAIT on {} confirmed {got} of its {want} replicas for longer than --retry-for ({:?}): \
                 what it answered may not survive its loss",
                self.cfg.endpoint, self.cfg.retry_for
            );
            return Err(self.fatal(msg, None));
        }
        Ok(())
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
        // Into a cluster: a transaction redirected (a queued command, or EXEC, answered
        // MOVED, ASK, TRYAGAIN or CLUSTERDOWN) ran nothing; it goes whole to the node that
        // serves its slot (after ASKING, which holds through a MULTI: networking.c,
        // `resetClient`).
        let redirected =
            f.refused.iter().map(|(_, m)| m.clone()).find(|m| Detour::of(m.as_bytes()).is_some()).or(match r {
                Reply::Error(e) if Detour::of(e).is_some() => Some(String::from_utf8_lossy(e).into_owned()),
                _ => None,
            });
        if let (Some(msg), Some(rd)) = (redirected, self.redirect.as_mut()) {
            f.refused.clear();
            match rd.forward(&f.chunk.buf, f.chunk.ends.len(), msg.as_bytes(), &self.cfg.endpoint, f.chunk.slot) {
                Ok(Outcome::Done(errors)) => {
                    for msg in errors {
                        let kind = msg.split(' ').next().unwrap_or("ERR").to_string();
                        self.report.errors.add(kind, 1, || format!("a transaction of AOF commands: {msg}"));
                    }
                    self.finish_front();
                    return Ok(());
                }
                Ok(Outcome::Repoint(ep)) => {
                    self.repoint = Some(ep);
                    return Ok(());
                }
                Err(msg) => return Err(self.fatal(msg, None)),
            }
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
        // Answered and not confirmed by WAIT: the master may have lost them (its replica
        // took over without them), so they go again too, first, whole.
        self.waiting = false;
        self.unconfirmed_bytes = 0;
        let mut resent = 0;
        let unconfirmed: Vec<Pending> = self
            .unconfirmed
            .drain(..)
            .map(|mut f| {
                if f.chunk.resendable {
                    resent += f.chunk.units.len() as u64;
                }
                (f.written, f.answered) = (0, 0);
                Pending::Chunk(f)
            })
            .collect();
        self.report.cluster.resent_keys += resent;
        let pending: Vec<Pending> = unconfirmed.into_iter().chain(self.inflight.drain(..)).collect();
        for p in pending {
            let Pending::Chunk(mut f) = p else { continue };
            if f.answered < f.written {
                first.get_or_insert((f.id, f.answered));
                if !f.chunk.resendable && f.chunk.transaction.is_none() && unknown_log.is_none() {
                    let u = f.chunk.unit_of(f.answered);
                    unknown_log = Some(f.chunk.units.get(u).map_or(Position::default(), |x| x.1));
                }
            }
            if f.chunk.resendable && f.answered < f.written && self.redirect.is_some() {
                let units = f.chunk.unit_of(f.written - 1) + 1 - f.chunk.unit_of(f.answered);
                self.report.cluster.resent_keys += units as u64;
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
        // (Each chunk names its key: a cluster keeps one per slot.)
        let mut marks: Vec<(Vec<u8>, Option<u64>)> = Vec::new();
        for f in chunks.iter().filter(|f| f.chunk.transaction.is_some()) {
            let key = &f.chunk.applied_key;
            if marks.iter().any(|(k, _)| k == key) {
                continue;
            }
            let applied = match self.link.as_mut().map(|l| l.call(&[b"GET", key])) {
                Some(Ok(Answer::Bulk(Some(v)))) => std::str::from_utf8(&v).ok().and_then(|v| v.parse::<u64>().ok()),
                // Into a cluster, the key's slot may be served elsewhere now: ask there.
                // Any other error leaves the transaction's fate unknown: stop.
                Some(Ok(Answer::Error(e))) => {
                    let current = self.cfg.endpoint.clone();
                    let got = match self.redirect.as_mut() {
                        Some(rd) => rd.get(key, e.as_bytes(), &current),
                        None => Err(e),
                    };
                    match got {
                        Ok(v) => v.and_then(|v| std::str::from_utf8(&v).ok().and_then(|v| v.parse::<u64>().ok())),
                        Err(e) => {
                            let msg = format!("reading the applied key after a reconnect: {e}");
                            return Err(self.fatal(msg, None));
                        }
                    }
                }
                Some(Ok(_)) => None,
                Some(Err(e)) => return Err(self.fatal(format!("reading the applied key after a reconnect: {e}"), None)),
                None => None,
            };
            marks.push((key.clone(), applied));
        }
        if !marks.is_empty() {
            chunks.retain(|f| {
                let applied = marks.iter().find(|(k, _)| *k == f.chunk.applied_key).and_then(|x| x.1);
                match (f.chunk.transaction, applied) {
                    (Some(mark), Some(a)) if mark <= a => {
                        self.done.store(f.chunk.seq + 1, Ordering::Release);
                        self.released.fetch_add(f.chunk.weight, Ordering::Release);
                        let before = counted.iter().find(|c| c.0 == f.id).map_or(0, |c| c.1);
                        self.report.commands += (f.chunk.ends.len() - before) as u64;
                        false
                    }
                    _ => true,
                }
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

    /// Into a cluster: true when a fresh topology shows another master serving this
    /// connection's slots (the endpoint is then that master's).
    fn moved_master(&mut self) -> bool {
        let current = self.cfg.endpoint.clone();
        let Some(home) = self.redirect.as_mut().and_then(|r| r.failed_over(&current)) else { return false };
        self.cfg.endpoint = home;
        true
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
                // Into a cluster: a master that does not answer may have been failed over;
                // whoever serves its slots now is where this connection goes.
                Err(_) if self.moved_master() => pause = Duration::from_millis(20),
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
    /// The connection's master changed: heal on the new one.
    Repoint(String),
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
