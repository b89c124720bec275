//! Snapshots: records translated on the workers, each key's commands put in the place
//! of its connection (its slot), and the batches joined in input order into the engine.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::chunk::{Errors, CHUNK_BYTES};
use super::dest::{DestKind, Destination};
use super::engine::Origin;
use super::{existing_key, Config, OnExisting, Position, Run};
use crate::expiry::{self, LogKeysOnce};
use crate::filter::Filter;
use crate::input::{Batch, Flow, Map};
use crate::rdb::{self, Item};
use crate::translate::{self, Stats, Translator};

/// A snapshot batch, translated and split by connection.
#[derive(Default)]
pub(super) struct SnapBatch {
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
    end_offset: u64,
    error: Option<rdb::Error>,
    /// Keys sent with the expiry sentinel, for the cleanup after the last log.
    kept: Vec<expiry::Kept>,
}

#[cfg(test)]
impl SnapBatch {
    /// The commands and the counts, for tests.
    pub(super) fn parts(&self) -> (&[u8], &[usize], &Stats) {
        (&self.buf, &self.ends, &self.stats)
    }
}

/// Buffers of a batch the engine is done with, for the next batches.
type Buffers = (Vec<u8>, Vec<usize>, Vec<(usize, Option<u64>, usize, usize, u64)>);

/// The workers' half of a replay: records into commands, per connection.
pub(super) struct SnapshotMap<'r, 'd> {
    pub(super) cfg: &'r Config,
    pub(super) dest: &'r dyn Destination,
    pub(super) tcfg: translate::Config,
    pub(super) existing: &'r HashSet<Vec<u8>>,
    pub(super) log_keys: &'r LogKeysOnce<'d>,
    /// The job's filter, with expiry left to the translator (it knows --expire-margin).
    pub(super) filter: Filter,
    pub(super) spare: Mutex<Vec<Buffers>>,
}

impl<'d> Map<'d> for SnapshotMap<'_, 'd> {
    type Part = SnapBatch;

    fn snapshot(&self, batch: &Batch<'d, '_>) -> SnapBatch {
        let (cfg, dest) = (self.cfg, self.dest);
        let everything = cfg.filter.selects_everything();
        // Plain strings in MSET batches, keys of one connection and db, overwriting what
        // is there as RESTORE … REPLACE does (twemproxy splits an MSET across its backends).
        let batch_strings = self.tcfg.mode == translate::Mode::Restore && cfg.on_existing == OnExisting::Replace;
        let mut b = SnapBatch::default();
        // Buffers of an earlier batch, when there is one: no allocation per batch.
        if let Some((buf, ends, pieces)) = self.spare.lock().ok().and_then(|mut v| v.pop()) {
            (b.buf, b.ends, b.pieces) = (buf, ends, pieces);
        }
        let mut t = Translator::new(self.tcfg.clone(), batch.header.vendor, batch.header.version).keep_ends();
        let mut msets = MsetBatches::default();
        let mut lookup = Vec::new();
        let mut item_start = batch.start();
        b.end_offset = batch.end();
        let r = batch.decode(true, |item, end| {
            let item_at = std::mem::replace(&mut item_start, end);
            match item {
                Item::Record(rec) => {
                    if !self.filter.accepts(&rec) || self.filter.leaves_out(batch.file, &rec) {
                        b.filtered += 1;
                        return Ok(());
                    }
                    let key = rec.key.bytes();
                    let Some(db) = dest.db(rec.db) else {
                        b.refused.add("DB".into(), 1, || {
                            format!(
                                "\"{}\" in db {}: {} has only db 0 (--db-map)",
                                rdb::escape_key(&key),
                                rec.db,
                                dest.kind()
                            )
                        });
                        return Ok(());
                    };
                    let exists = !self.existing.is_empty() && {
                        existing_key(db, &key, &mut lookup);
                        self.existing.contains(&lookup)
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
                    let conn = dest.conn_of(&key);
                    if batch_strings {
                        if let Some(value) = t.batchable_string(&rec) {
                            if exists {
                                b.replaced += 1;
                            } else {
                                b.created += 1;
                            }
                            let group = dest.batch_group(&key);
                            msets.add(&mut b, &mut t, (conn, group), db, &rec.key, value, item_at);
                            return Ok(());
                        }
                    }
                    let (start, first, before) = (b.buf.len(), b.ends.len(), t.stats.commands);
                    // A key a later log command writes to keeps what has expired.
                    let kept = t.expiry_now().is_some_and(|now| {
                        !expiry::Expired::of(&rec, now).none() && self.log_keys.get().contains(rec.db, &key)
                    });
                    if kept {
                        match t.record_kept(&rec, &mut b.buf) {
                            Some(k) => b.kept.push(k),
                            None => return Ok(()),
                        }
                    } else if !t.record(&rec, &mut b.buf) {
                        return Ok(());
                    }
                    b.ends.extend(t.take_ends());
                    if let Some(name) = refused_command(dest, &b.buf, start, &b.ends[first..]) {
                        b.buf.truncate(start);
                        b.ends.truncate(first);
                        let why = format!("{} does not take {name} (--mode restore carries this key)", dest.kind());
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
                    b.pieces.push((conn, Some(db), first, b.ends.len(), item_at));
                }
                Item::EmptyKey { .. } => b.empty += 1,
                Item::Function(_) | Item::Aux { .. } if everything && !dest.caps().functions && is_code(&item) => {
                    b.refused.add("FUNCTION".into(), 1, || {
                        format!("{} cannot load functions or scripts: load them on each backend", dest.kind())
                    });
                }
                Item::Function(f) if everything => {
                    let first = b.ends.len();
                    t.function(&f, &mut b.buf);
                    b.ends.extend(t.take_ends());
                    b.pieces.push((0, None, first, b.ends.len(), item_at));
                }
                Item::Aux { key, value } if everything && key.bytes().as_ref() == b"lua" => {
                    let first = b.ends.len();
                    t.script(&value, &mut b.buf);
                    b.ends.extend(t.take_ends());
                    b.pieces.push((0, None, first, b.ends.len(), item_at));
                }
                _ => {}
            }
            Ok(())
        });
        msets.finish(&mut b, &mut t);
        b.stats = t.stats;
        if let Err(e) = r {
            // The batch holds the commands of the records before the damaged one: a
            // checkpoint resumes at that record, never past it.
            b.end_offset = item_start;
            b.error = Some(e);
        }
        b
    }
}

/// The first command among those ending at `ends` (the first starting at `start`) that
/// the destination does not take, by name; `None` when it takes them all.
fn refused_command(dest: &dyn Destination, buf: &[u8], start: usize, ends: &[usize]) -> Option<String> {
    if dest.takes_every_command() {
        return None;
    }
    let mut at = start;
    for &end in ends {
        let name = crate::resp::command_at(buf, at).map(|c| c.name)?;
        if !dest.takes(&[name]) {
            return Some(String::from_utf8_lossy(name).to_ascii_uppercase());
        }
        at = end;
    }
    None
}

impl Run<'_, '_> {
    /// Joins one snapshot batch, in input order: its commands routed, its counts added.
    pub(super) fn snapshot_part(&mut self, mut b: SnapBatch) -> Flow {
        if self.growing && b.pieces.is_empty() {
            // A snapshot still arriving has stalled (an empty batch): what the
            // connections hold goes now, not once a chunk is full.
            for c in 0..self.engine.dest.connections() {
                self.engine.flush(c);
            }
        }
        let e = &mut self.engine;
        self.progress.keys.fetch_add(b.stats.keys, Ordering::Relaxed);
        if let Some(f) = e.report.files.get_mut(self.file) {
            f.keys += b.stats.keys;
            f.left_out += b.filtered + b.empty + b.skipped_existing;
        }
        e.report.stats.merge(std::mem::take(&mut b.stats));
        e.report.filtered += b.filtered;
        e.report.empty += b.empty;
        e.report.skipped_existing += b.skipped_existing;
        e.report.created += b.created;
        e.report.replaced += b.replaced;
        e.report.refused.merge(std::mem::take(&mut b.refused));
        e.kept.append(&mut b.kept);
        let file = self.file;
        for &(conn, db, first, end, at) in &b.pieces {
            if first == end {
                continue;
            }
            let start = if first == 0 { 0 } else { b.ends[first - 1] };
            let pos = Position { file, offset: at };
            let origin = Origin { pos, resendable: true, slot: None };
            if db.is_none() && e.dest.kind() == DestKind::Cluster {
                // Functions and scripts: on every master (and scripts on every replica).
                let ends: Vec<usize> = b.ends[first..end].iter().map(|x| x - start).collect();
                e.everywhere(None, &b.buf[start..b.ends[end - 1]], &ends, origin);
                continue;
            }
            e.route(conn, db, &b.buf, start, &b.ends[first..end], origin);
        }
        e.routed_to = Position { file, offset: b.end_offset };
        self.progress.done.store(self.done_before + b.end_offset, Ordering::Relaxed);
        if let Some(error) = b.error.take() {
            let name = self.inputs.files[file].name.clone();
            e.report.failure.get_or_insert(crate::input::InputError::Snapshot { name, error }.to_string());
            return Flow::Stop;
        }
        // Ordinary buffers go back for the next batches; one a huge key grew does not.
        let (cfg, map) = (e.cfg, self.map);
        if b.buf.capacity() <= 4 * cfg.plan.batch_bytes.max(CHUNK_BYTES) {
            b.buf.clear();
            b.ends.clear();
            b.pieces.clear();
            if let Ok(mut v) = map.spare.lock() {
                if v.len() <= cfg.plan.threads + 1 {
                    v.push((b.buf, b.ends, b.pieces));
                }
            }
        }
        if e.stopped() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

/// The keys of snapshot `data` that end before byte `upto` and a run sends with the
/// expiry sentinel: on resume, those an earlier run sent still need their cleanup.
pub(super) fn kept_before(
    cfg: &Config,
    dest: &dyn Destination,
    now: i64,
    data: &[u8],
    upto: usize,
    log_keys: &LogKeysOnce<'_>,
) -> Vec<expiry::Kept> {
    let mut kept = Vec::new();
    let _ = crate::pipeline::run(
        data,
        &cfg.plan,
        |header, span| {
            let mut found = Vec::new();
            let _ = Batch::new(0, header, span).decode(true, |item, end| {
                if let Item::Record(rec) = item {
                    if end as usize <= upto
                        && cfg.filter.selects(&rec)
                        && dest.db(rec.db).is_some()
                        && !expiry::Expired::of(&rec, now).none()
                        && log_keys.get().contains(rec.db, &rec.key.bytes())
                    {
                        found.push(expiry::Kept::of(&rec, now));
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
    kept
}

/// A function library, or a Lua script of the `lua` AUX field.
fn is_code(item: &Item<'_>) -> bool {
    match item {
        Item::Function(_) => true,
        Item::Aux { key, .. } => key.bytes().as_ref() == b"lua",
        _ => false,
    }
}

/// MSET commands being filled by a snapshot batch, one per connection, group (the
/// destination's `batch_group`: a cluster's MSET holds keys of one slot) and db. Each
/// holds the place (a piece) of its first key, so that its keys reach their connection
/// no later than that key would have: the checkpoint's low-water mark, taken from the
/// first unit of each chunk, never passes a key that is not applied.
#[derive(Default)]
pub(super) struct MsetBatches {
    /// By connection, group and db (a cluster's batch may hold thousands of slots).
    open: std::collections::HashMap<(usize, usize, u64), OpenMset>,
    /// Argument buffers of written MSETs, for the next ones.
    spare: Vec<Vec<u8>>,
}

struct OpenMset {
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
        (conn, group): (usize, usize),
        db: u64,
        key: &rdb::Str<'_>,
        value: &rdb::Str<'_>,
        at: u64,
    ) {
        let id = (conn, group, db);
        let m = self.open.entry(id).or_insert_with(|| {
            b.pieces.push((conn, Some(db), 0, 0, at));
            let args = self.spare.pop().unwrap_or_default();
            OpenMset { piece: b.pieces.len() - 1, keys: 0, args }
        });
        crate::resp::encode::bulk_str(&mut m.args, key);
        crate::resp::encode::bulk_str(&mut m.args, value);
        m.keys += 1;
        if m.keys >= Self::KEYS || m.args.len() >= Self::BYTES {
            if let Some(m) = self.open.remove(&id) {
                self.spare.push(Self::write(b, t, m));
            }
        }
    }

    /// Writes every MSET still open (at the end of the batch).
    fn finish(&mut self, b: &mut SnapBatch, t: &mut Translator) {
        for (_, m) in self.open.drain() {
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
