//! Command logs: each unit (a command, or a MULTI block) checked against the destination
//! and the options, then routed by its keys: to the connection of its keys, or alone as
//! a barrier; a MULTI block runs whole, alone, or unwrapped where the destination has no
//! MULTI.

use super::chunk::Chunk;
use super::dest::{ClusterCommand, DestKind, Route};
use super::engine::Origin;
use super::worker::describe;
use super::{existing_key, OnExisting, Position, Run};
use crate::aof::keys::{keys, slot, Keys};
use crate::aof::{self, Command, Unit};
use crate::input::Flow;

impl Run<'_, '_> {
    /// One unit of a log, in order; `end` is where it ends in its file.
    pub(super) fn log_unit(&mut self, unit: &Unit<'_>, end: u64) -> Flow {
        let file = self.file;
        if self.engine.stopped() {
            return Flow::Stop;
        }
        let e = &mut self.engine;
        let Some(unit) = aof::select::select(unit, &e.cfg.filter, &mut e.report.log_filter) else {
            e.routed_to = Position { file, offset: end };
            return Flow::Continue;
        };
        match unit.as_ref() {
            Unit::Timestamp(_) => return Flow::Continue,
            Unit::One(c) => self.log_command(c),
            Unit::Multi(block) if !self.engine.dest.caps().multi => {
                self.engine.report.multi_unwrapped += 1;
                for c in &block[1..block.len() - 1] {
                    self.log_command(c);
                }
            }
            Unit::Multi(block) => self.log_multi(block),
        }
        self.engine.routed_to = Position { file, offset: end };
        if self.engine.stopped() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// Checks a log command against the destination and the options: its db, or `None`
    /// when it is not to be sent (counted).
    fn admit(&mut self, c: &Command<'_>) -> Option<u64> {
        let (file, base, existing) = (self.file, self.base, self.existing);
        let e = &mut self.engine;
        let Some(db) = e.dest.db(c.db) else {
            let kind = e.dest.kind();
            e.report
                .refused
                .add("DB".into(), 1, || format!("{} in db {}: {kind} has only db 0 (--db-map)", c.name(), c.db));
            return None;
        };
        if c.is_flush() && !e.cfg.allow_flush {
            let f = format!(
                "{} at byte {} of file {}: the AOF wipes or swaps databases; --allow-flush sends it",
                c.name(),
                base + c.offset,
                file + 1
            );
            e.report.failure.get_or_insert(f);
            return None;
        }
        if !e.dest.takes(&c.argv) {
            let key = c.argv.get(1).copied();
            let why = format!("{} does not take it", e.dest.kind());
            e.report.refused.add("PROXY".into(), 1, || describe(c.argv[0], key, &why));
            return None;
        }
        // A key the destination had is left alone by the log too (skip), or refused (error).
        if e.cfg.on_existing != OnExisting::Replace && !existing.is_empty() {
            if let Keys::Some(ks) = keys(&c.argv) {
                let mut k = Vec::new();
                if ks.iter().any(|key| {
                    existing_key(db, key, &mut k);
                    existing.contains(&k)
                }) {
                    if e.cfg.on_existing == OnExisting::Skip {
                        e.report.log_skipped += 1;
                    } else {
                        let key = c.argv.get(1).copied();
                        e.report.refused.add("EXISTS".into(), 1, || {
                            describe(c.argv[0], key, "touches a key the destination had (--on-existing error)")
                        });
                    }
                    return None;
                }
            }
        }
        Some(db)
    }

    fn log_command(&mut self, c: &Command<'_>) {
        if let Some(db) = self.admit(c) {
            self.send_log_command(db, c);
        }
    }

    /// An admitted log command, routed.
    fn send_log_command(&mut self, db: u64, c: &Command<'_>) {
        let pos = Position { file: self.file, offset: (self.base + c.offset) as u64 };
        let e = &mut self.engine;
        let route = e.dest.route_command(&c.argv);
        // Into a cluster, a transaction holds the commands of one slot.
        let cluster = e.dest.kind() == DestKind::Cluster;
        let slot_of = |k: Option<&&[u8]>| k.filter(|_| cluster).map(|k| slot(k));
        let slot = match keys(&c.argv) {
            Keys::Some(ks) => slot_of(ks.first()),
            _ => None,
        };
        let conn = match &route {
            Route::Conn(conn) => *conn,
            _ => 0,
        };
        // (A split command and one on every node are checked part by part.)
        let whole = !matches!(route, Route::Split(_) | Route::Everywhere);
        if whole && e.applied_before(e.applied_index(conn, slot), pos) {
            return;
        }
        match route {
            Route::Conn(conn) => {
                e.report.log_commands += 1;
                let bytes = c.bytes();
                e.route(conn, Some(db), bytes, 0, &[bytes.len()], Origin { pos, resendable: false, slot })
            }
            Route::Split(groups) => {
                e.report.log_commands += 1;
                if let Some(r) = &mut e.report.cluster {
                    r.split += 1;
                }
                let mut bytes = Vec::new();
                for (conn, args) in groups {
                    bytes.clear();
                    let mut argv: Vec<&[u8]> = vec![c.argv[0]];
                    argv.extend(args.iter().map(|&i| c.argv[i]));
                    crate::resp::encode::command(&mut bytes, &argv);
                    let slot = slot_of(argv.get(1));
                    if e.applied_before(e.applied_index(conn, slot), pos) {
                        continue;
                    }
                    e.route(conn, Some(db), &bytes, 0, &[bytes.len()], Origin { pos, resendable: false, slot });
                }
            }
            Route::Everywhere => {
                e.report.log_commands += 1;
                let bytes = c.bytes();
                e.everywhere(Some(db), bytes, &[bytes.len()], Origin { pos, resendable: false, slot: None });
            }
            Route::Barrier => {
                e.report.log_commands += 1;
                let mut chunk = Chunk { db: Some(db), exit_db: Some(db), ..Chunk::default() };
                chunk.units.push((0, pos));
                chunk.push_command(c.bytes());
                e.barrier(chunk);
            }
            Route::Refuse(kind, why) => {
                let key = c.argv.get(1).copied();
                e.report.refused.add(kind.into(), 1, || describe(c.argv[0], key, &why));
            }
        }
    }

    /// A MULTI…EXEC block runs whole, alone, with SELECTs inside where its db changes.
    fn log_multi(&mut self, block: &[Command<'_>]) {
        let inner = &block[1..block.len() - 1];
        let mut admitted = Vec::new();
        for c in inner {
            if let Some(db) = self.admit(c) {
                admitted.push((db, c));
            }
        }
        let Some(&(first_db, _)) = admitted.first() else { return };
        let pos = Position { file: self.file, offset: (self.base + block[0].offset) as u64 };
        if self.engine.dest.kind() == DestKind::Cluster {
            return self.cluster_multi(&admitted, pos);
        }
        let e = &mut self.engine;
        if e.applied_before(0, pos) {
            return;
        }
        e.report.log_commands += admitted.len() as u64;
        // The block's own MULTI and EXEC are left out: `send` makes every chunk of log
        // commands one transaction (with its applied key).
        let mut chunk = Chunk { db: Some(first_db), ..Chunk::default() };
        chunk.units.push((0, pos));
        let mut cur = first_db;
        for (db, c) in admitted {
            if db != cur {
                let mut sel = Vec::new();
                crate::resp::encode::select(&mut sel, db);
                chunk.push_command(&sel);
                cur = db;
            }
            chunk.push_command(c.bytes());
        }
        chunk.exit_db = Some(cur);
        e.barrier(chunk);
    }

    /// A MULTI block into a cluster: one transaction on its slot's master when all its
    /// keys share a slot (cluster.c, `getNodeByQuery`, refuses a MULTI across slots);
    /// otherwise its commands go one by one, each by its own keys, and the block is
    /// counted as unwrapped.
    fn cluster_multi(&mut self, admitted: &[(u64, &Command<'_>)], pos: Position) {
        let mut slot = None;
        let mut one = true;
        for (_, c) in admitted {
            match ClusterCommand::of(&c.argv) {
                ClusterCommand::Slot(None) => {}
                ClusterCommand::Slot(Some(s)) if *slot.get_or_insert(s) == s => {}
                _ => one = false,
            }
        }
        if !one {
            self.engine.report.multi_unwrapped += 1;
            for &(db, c) in admitted {
                self.send_log_command(db, c);
            }
            return;
        }
        let e = &mut self.engine;
        let conn = admitted
            .iter()
            .find_map(|(_, c)| match (keys(&c.argv), e.dest.route_command(&c.argv)) {
                (Keys::Some(_), Route::Conn(conn)) => Some(conn),
                _ => None,
            })
            .unwrap_or(0);
        if e.applied_before(e.applied_index(conn, slot), pos) {
            return;
        }
        e.report.log_commands += admitted.len() as u64;
        let (mut buf, mut ends) = (Vec::new(), Vec::new());
        for (_, c) in admitted {
            buf.extend_from_slice(c.bytes());
            ends.push(buf.len());
        }
        e.route(conn, Some(0), &buf, 0, &ends, Origin { pos, resendable: false, slot });
    }
}
