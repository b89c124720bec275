//! The engine: units (a key's commands, a log command, a MULTI block) routed to the
//! connections in input order, so that each key's commands keep their order; back
//! pressure when too much is unanswered; barriers that run alone; and the checkpoint's
//! low-water mark (every unit before it has its reply).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::chunk::{Chunk, CHUNK_BYTES};
use super::dest::Destination;
use super::report::Report;
use super::worker::{ConnReport, Fatal, Msg, Worker, WorkerConfig};
use super::{checkpoint, Config, Error, Position};
use crate::expiry::Kept;
use crate::input::Inputs;
use crate::net::{Link, LinkError};

/// Most bytes of commands sent and not yet answered, over all connections (a key larger
/// than this goes alone).
const HELD_BYTES: u64 = 16 << 20;

/// Where a unit comes from, and whether it may be sent twice.
#[derive(Clone, Copy)]
pub(super) struct Origin {
    pub pos: Position,
    pub resendable: bool,
    /// Into a cluster: the slot of a log unit's keys (its transaction holds that slot only).
    pub slot: Option<u16>,
}

pub(super) struct Engine<'c> {
    pub(super) cfg: &'c Config,
    pub(super) dest: &'c dyn Destination,
    senders: Vec<SyncSender<Msg>>,
    handles: Vec<JoinHandle<Result<ConnReport, Fatal>>>,
    builders: Vec<Chunk>,
    pub(super) report: Report,
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
    pub(super) sent_commands: Arc<AtomicU64>,
    released: Arc<AtomicU64>,
    /// Everything before this was routed (the next unit starts here or later).
    pub(super) routed_to: Position,
    /// Applied keys' prefix, and (resuming) the mark each connection's key held.
    pub(super) applied_prefix: String,
    pub(super) applied: Vec<Option<u64>>,
    /// The furthest of them (units before it were in doubt).
    pub(super) max_applied: Option<u64>,
    /// Applied keys written so far, with the node each lives on (deleted at the end).
    pub(super) applied_keys: std::collections::BTreeMap<Vec<u8>, usize>,
    checkpoint: Option<(std::path::PathBuf, checkpoint::Checkpoint)>,
    last_checkpoint: Instant,
    /// No checkpoint is written while an input is still being written: it could not name
    /// the input (its size and checksum), and until the input is whole nothing of the
    /// run can be resumed anyway (see [`Engine::whole`]).
    pub(super) checkpoint_held: bool,
    /// Keys sent with the expiry sentinel (see [`crate::expiry`]).
    pub(super) kept: Vec<Kept>,
    /// At a complete end, keep the applied keys and the checkpoint (`Config::keep_marks`,
    /// until a cutover says the migration is done).
    pub(super) keep_marks: bool,
}

impl<'c> Engine<'c> {
    pub(super) fn start(
        cfg: &'c Config,
        dest: &'c dyn Destination,
        window: usize,
        report: Report,
        run_id: u64,
        checkpoint: Option<(std::path::PathBuf, checkpoint::Checkpoint)>,
    ) -> Result<Engine<'c>, Error> {
        let n = dest.connections();
        let (recycle, spare) = mpsc::channel();
        let mut e = Engine {
            cfg,
            dest,
            senders: Vec::new(),
            handles: Vec::new(),
            builders: (0..n).map(|_| Chunk::default()).collect(),
            report,
            dead: false,
            spare,
            recycle,
            pool: Vec::new(),
            next_seq: vec![0; n],
            outstanding: (0..n).map(|_| VecDeque::new()).collect(),
            done: (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect(),
            sent_bytes: 0,
            sent_commands: Arc::new(AtomicU64::new(0)),
            released: Arc::new(AtomicU64::new(0)),
            routed_to: Position::default(),
            applied_prefix: format!("redis-migration:applied:{run_id:016x}:"),
            // Into a cluster, applied keys are per slot.
            applied: vec![None; if dest.home_slot(0).is_some() { crate::net::cluster::SLOTS } else { n }],
            max_applied: None,
            applied_keys: std::collections::BTreeMap::new(),
            checkpoint,
            last_checkpoint: Instant::now(),
            checkpoint_held: false,
            kept: Vec::new(),
            keep_marks: cfg.keep_marks,
        };
        if cfg.dry_run {
            return Ok(e);
        }
        let wcfg = WorkerConfig {
            endpoint: cfg.endpoint.clone(),
            window,
            window_bytes: cfg.window_bytes.max(1),
            select: dest.caps().select,
            retry_for: cfg.retry_for,
            timeout: cfg.timeout,
            recycle: Some(e.recycle.clone()),
            cluster: None,
        };
        let nodes = dest.nodes(&cfg.endpoint);
        let seeds: Vec<_> = nodes.iter().cloned().chain(dest.replicas(&cfg.endpoint)).collect();
        for id in 0..n {
            let endpoint = nodes[dest.node_of_conn(id)].clone();
            let cluster = dest.home_slot(id).map(|home_slot| super::redirect::ClusterLink {
                seeds: seeds.clone(),
                home_slot,
                replicas: dest.replica_count(dest.node_of_conn(id)),
            });
            let link = Link::open(&endpoint, cfg.timeout)
                .map_err(|err| Error::Destination(format!("connection {id} to {endpoint}"), err))?;
            let (tx, rx) = mpsc::sync_channel(2);
            let wcfg = WorkerConfig { endpoint, cluster, ..wcfg.clone() };
            let w = Worker::new(id, wcfg, link, e.done[id].clone(), e.released.clone());
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

    pub(super) fn stopped(&self) -> bool {
        self.dead || self.report.failure.is_some()
    }

    /// Appends whole commands `buf[start..ends.last]` as one unit for connection `conn`.
    pub(super) fn route(
        &mut self,
        conn: usize,
        db: Option<u64>,
        buf: &[u8],
        start: usize,
        ends: &[usize],
        origin: Origin,
    ) {
        let Origin { pos, resendable, slot } = origin;
        let Some(&last) = ends.last() else { return };
        let b = &self.builders[conn];
        // A chunk holds one db (and, into a cluster, one slot), and never grows past its
        // room (unless one unit is larger).
        if !b.is_empty()
            && (b.db != db
                || b.resendable != resendable
                || b.slot != slot
                || b.buf.len() + (last - start) > CHUNK_BYTES)
        {
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
            b.slot = slot;
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

    pub(super) fn flush(&mut self, conn: usize) {
        if self.builders[conn].is_empty() {
            return;
        }
        let c = std::mem::take(&mut self.builders[conn]);
        self.send(conn, c);
    }

    pub(super) fn send(&mut self, conn: usize, mut c: Chunk) {
        if !c.resendable && self.dest.caps().multi && c.transaction.is_none() && !self.cfg.dry_run {
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

    /// The low-water mark: every unit before it has its reply.
    pub(super) fn low_water(&mut self) -> Position {
        let mut low = self.routed_to;
        for conn in 0..self.dest.connections() {
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

    /// Input `file`, which was still being written, is whole: named in the checkpoint by
    /// what it holds now, and the checkpoint written again.
    pub(super) fn whole(&mut self, file: usize, id: checkpoint::InputId) {
        if let Some((_, ck)) = &mut self.checkpoint {
            if let Some(slot) = ck.inputs.get_mut(file) {
                *slot = id;
            }
        }
        self.checkpoint_held = false;
        self.write_checkpoint(true);
    }

    /// Writes the checkpoint, at most once a second (`force`: now).
    pub(super) fn write_checkpoint(&mut self, force: bool) {
        if self.checkpoint.is_none()
            || self.checkpoint_held
            || self.cfg.dry_run
            || (!force && self.last_checkpoint.elapsed() < self.cfg.checkpoint_every)
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

    /// Waits until every connection has the replies of everything sent so far.
    pub(super) fn drain(&mut self, conns: std::ops::Range<usize>) {
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

    pub(super) fn drain_all(&mut self) {
        self.drain(0..self.dest.connections());
    }

    /// Runs `chunk` alone: everything before it is applied first, everything after it
    /// waits for its reply.
    pub(super) fn barrier(&mut self, chunk: Chunk) {
        self.report.barriers += 1;
        self.drain_all();
        self.send(0, chunk);
        self.drain(0..1);
    }

    /// Runs whole commands `buf[..ends.last]` once on every node the connections reach
    /// (a cluster's masters: FUNCTION LOAD, SCRIPT LOAD, FLUSHALL), alone: everything
    /// before is applied first. A SCRIPT LOAD reaches the replicas too: it is no write, so
    /// it is not propagated (`commands/script-load.json`: no WRITE flag, request policy
    /// ALL_NODES).
    pub(super) fn everywhere(&mut self, db: Option<u64>, buf: &[u8], ends: &[usize], origin: Origin) {
        if let Some(r) = &mut self.report.cluster {
            r.everywhere += 1;
        }
        self.drain_all();
        let nodes = self.dest.nodes(&self.cfg.endpoint);
        for node in 0..nodes.len() {
            let conn = self.dest.first_conn(node);
            // A resumed run: a log command some masters ran already.
            if !origin.resendable && self.applied_before(self.applied_index(conn, None), origin.pos) {
                continue;
            }
            let mut c = Chunk { db, exit_db: db, resendable: origin.resendable, ..Chunk::default() };
            c.units.push((0, origin.pos));
            let mut at = 0;
            for &end in ends {
                c.push_command(&buf[at..end]);
                at = end;
            }
            self.send(conn, c);
        }
        self.drain_all();
        if self.cfg.dry_run {
            return;
        }
        let mut at = 0;
        for &end in ends {
            let cmd = &buf[at..end];
            at = end;
            let is_script_load = crate::resp::command_at(cmd, 0).is_some_and(|c| {
                c.name.eq_ignore_ascii_case(b"SCRIPT") && c.key.is_some_and(|k| k.eq_ignore_ascii_case(b"LOAD"))
            });
            if !is_script_load {
                continue;
            }
            for ep in self.dest.replicas(&self.cfg.endpoint) {
                let answer = Link::open(&ep, self.cfg.timeout).and_then(|mut l| {
                    l.send(cmd)?;
                    let a = l.next_reply(|r| r.first_error().map(|e| String::from_utf8_lossy(e).into_owned()));
                    l.close();
                    a
                });
                let msg = match answer {
                    Ok(None) => continue,
                    Ok(Some(e)) => e,
                    Err(e) => e.to_string(),
                };
                let kind = msg.split(' ').next().unwrap_or("ERR").to_string();
                self.report.errors.add(kind, 1, || format!("SCRIPT LOAD on the replica {ep}: {msg}"));
            }
        }
    }

    pub(super) fn finish(mut self, inputs: &Inputs) -> Report {
        for c in 0..self.dest.connections() {
            self.flush(c);
        }
        self.senders.clear();
        let handles = std::mem::take(&mut self.handles);
        let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        let complete = self.report.failure.is_none() && results.iter().all(|r| matches!(r, Ok(Ok(_))));
        if complete && !self.cfg.dry_run && self.keep_marks {
            // A migration stopped cleanly: its marks stay for the next run to go on from.
            if let Some((_, ck)) = &mut self.checkpoint {
                ck.clean = true;
            }
            self.write_checkpoint(true);
        } else if complete && !self.cfg.dry_run {
            // The applied keys have done their job; the checkpoint too.
            if self.dest.caps().multi {
                if let Err(e) = self.delete_applied_keys() {
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
                        let name = inputs.files.get(p.file).map_or("?", |i| i.name.as_str());
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
            if let Some(c) = &mut report.cluster {
                c.counts.merge(*conn.cluster);
            }
            report.errors.merge(conn.errors);
        }
        report
    }
}
