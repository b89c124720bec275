//! The workers' half of `print`: snapshot records and log units rendered into a buffer,
//! as JSON lines, text, or RESP commands. A batch of RESP selects the databases its
//! records move between; the db it starts on is selected by the writer, which knows
//! where the stream before it ended (the module's `Printer`).

use crate::aof::{self, Unit};
use crate::expiry::{self, LogKeysOnce};
use crate::input::{Batch, LogBatch, Map};
use crate::output::{json, text};
use crate::rdb::{Item, Record};
use crate::resp::encode;
use crate::translate::{Stats, Translator};

use super::{Counts, Format, Job};

/// One batch's output.
pub struct Part {
    pub buf: Vec<u8>,
    pub counts: Counts,
    /// RESP of a snapshot: the translator's counts.
    pub stats: Option<Stats>,
    /// RESP: the db its first command needs selected, and the db it leaves selected.
    pub dbs: Option<(u64, u64)>,
    pub tally: aof::select::Tally,
    /// A snapshot batch's damage: what comes before it was rendered.
    pub error: Option<crate::rdb::Error>,
    /// RESP: keys sent with the expiry sentinel (see [`crate::expiry`]).
    pub kept: Vec<expiry::Kept>,
}

/// The workers' half of a print job.
pub struct Render<'j, 'd> {
    pub(super) job: &'j Job,
    pub(super) log_keys: &'j LogKeysOnce<'d>,
    /// Output buffers go back and forth between the writer and the workers.
    pub(super) spare: &'j std::sync::Mutex<Vec<Vec<u8>>>,
    /// Functions and scripts are printed too (no key filter, not text).
    pub(super) extras: bool,
}

impl<'d> Map<'d> for Render<'_, 'd> {
    type Part = Part;

    fn snapshot(&self, batch: &Batch<'d, '_>) -> Part {
        let buf = self
            .spare
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_else(|| Vec::with_capacity(self.job.plan.batch_bytes.min(64 << 20).saturating_mul(2)));
        let mut out = Writer::new(self.job, buf);
        let mut translator = self
            .job
            .translate
            .as_ref()
            .map(|cfg| Translator::new(cfg.clone(), batch.header.vendor, batch.header.version));
        let r = batch.decode(true, |item, _| {
            self.item(item, translator.as_mut(), &mut out);
            Ok(())
        });
        let mut part = out.finish();
        part.stats = translator.map(|t| t.stats);
        part.error = r.err();
        part
    }

    fn log_in_batches(&self) -> bool {
        // RESP of unfiltered commands is a copy: reading is all its work, and handing it
        // to workers measured slower. JSON, text and filters have work to share.
        self.job.format != Format::Resp || !self.job.filter.selects_everything()
    }

    fn log(&self, data: &'d [u8], batch: &LogBatch) -> Option<Part> {
        let buf = self.spare.lock().ok().and_then(|mut v| v.pop()).unwrap_or_default();
        let mut out = Writer::new(self.job, buf);
        batch.each(data, |unit| out.unit(unit));
        Some(out.finish())
    }
}

impl Render<'_, '_> {
    /// Renders one item of a snapshot.
    fn item(&self, item: Item<'_>, translator: Option<&mut Translator>, out: &mut Writer<'_>) {
        match item {
            Item::Record(rec) => match (self.job.format, translator) {
                (Format::Resp, Some(t)) => self.command_record(rec, t, out),
                _ => self.record(rec, out),
            },
            Item::EmptyKey { .. } => out.counts.empty += 1,
            Item::Function(f) if self.extras => match translator {
                Some(t) => t.function(&f, &mut out.buf),
                None => json::write_function(&mut out.buf, &f),
            },
            Item::Aux { key, value } if self.extras && key.bytes().as_ref() == b"lua" => match translator {
                Some(t) => t.script(&value, &mut out.buf),
                None => json::write_script(&mut out.buf, &value),
            },
            _ => {}
        }
    }

    /// A key as JSON or text: what has expired is left out (keys, then hash fields), but
    /// for keys that a log command of the job writes to (see [`crate::expiry`]).
    fn record(&self, mut rec: Record<'_>, out: &mut Writer<'_>) {
        let filter = &self.job.filter;
        let mut drop_fields = false;
        if !filter.keep_expired {
            let expired = expiry::Expired::of(&rec, filter.now_ms);
            if !expired.none() {
                if self.log_keys.get().contains(rec.db, &rec.key.bytes()) {
                    out.counts.kept += filter.selects(&rec) as u64;
                } else if expired.whole() {
                    out.counts.expired += 1;
                    out.counts.expired_fields += expired.fields;
                    return;
                } else {
                    drop_fields = true;
                }
            }
        }
        if !filter.selects(&rec) {
            out.counts.filtered += 1;
            return;
        }
        if drop_fields {
            out.counts.expired_fields += expiry::drop_expired_fields(&mut rec, filter.now_ms);
        }
        match self.job.format {
            Format::Text => text::write_record(&mut out.buf, &rec),
            _ => json::write_record(&mut out.buf, &rec),
        }
        out.counts.printed += 1;
    }

    /// A key as commands: the translator leaves out what has expired, but for keys that
    /// a log command of the job writes to, which it sends with the expiry sentinel. The
    /// commands go on the key's db: a SELECT first where the batch moves to another.
    fn command_record(&self, rec: Record<'_>, t: &mut Translator, out: &mut Writer<'_>) {
        if !self.job.filter.selects(&rec) {
            out.counts.filtered += 1;
            return;
        }
        let kept = t.expiry_now().is_some_and(|now| {
            !expiry::Expired::of(&rec, now).none() && self.log_keys.get().contains(rec.db, &rec.key.bytes())
        });
        let mark = out.select(rec.db);
        let sent = if kept {
            match t.record_kept(&rec, &mut out.buf) {
                Some(k) => {
                    out.kept.push(k);
                    true
                }
                None => false,
            }
        } else {
            t.record(&rec, &mut out.buf)
        };
        if sent {
            out.counts.printed += 1;
            if mark.selected {
                t.stats.commands += 1;
            }
        } else {
            // Nothing of a skipped key stays in the stream, not even its SELECT.
            out.unselect(mark);
        }
    }
}

/// What [`Writer::select`] did, to take it back.
#[derive(Clone, Copy)]
struct SelectMark {
    len: usize,
    state: (Option<u64>, Option<(u64, u64)>),
    selected: bool,
}

/// One batch's output as it is written.
struct Writer<'j> {
    job: &'j Job,
    buf: Vec<u8>,
    counts: Counts,
    tally: aof::select::Tally,
    /// The db this batch's output is on so far (`None`: nothing written yet).
    db: Option<u64>,
    /// The db its first command needs, and the db it is on.
    dbs: Option<(u64, u64)>,
    kept: Vec<expiry::Kept>,
}

impl<'j> Writer<'j> {
    fn new(job: &'j Job, buf: Vec<u8>) -> Writer<'j> {
        Writer { job, buf, counts: Counts::default(), tally: Default::default(), db: None, dbs: None, kept: Vec::new() }
    }

    /// Puts the output on db `db`: a SELECT where it moves from another; none before the
    /// batch's first command (its db is the batch's entry db, which the writer joining
    /// the batches selects when the stream is not already on it).
    fn select(&mut self, db: u64) -> SelectMark {
        let mark = SelectMark { len: self.buf.len(), state: (self.db, self.dbs), selected: false };
        if self.db == Some(db) {
            return mark;
        }
        let selected = self.db.is_some();
        if selected {
            encode::select(&mut self.buf, db);
        }
        self.db = Some(db);
        self.dbs = Some((self.dbs.map_or(db, |(entry, _)| entry), db));
        SelectMark { selected, ..mark }
    }

    fn unselect(&mut self, mark: SelectMark) {
        self.buf.truncate(mark.len);
        (self.db, self.dbs) = mark.state;
    }

    /// Filters and renders one log unit.
    fn unit(&mut self, unit: &Unit<'_>) {
        if let (true, Unit::One(c)) = (self.job.filter.selects_everything(), unit) {
            return self.command(c); // the common case, without the filter's work
        }
        let Some(unit) = aof::select::select(unit, &self.job.filter, &mut self.tally) else { return };
        match unit.as_ref() {
            Unit::Timestamp(_) => {}
            Unit::One(c) => self.command(c),
            Unit::Multi(block) => block.iter().for_each(|c| self.command(c)),
        }
    }

    /// Writes one log command in the job's format.
    fn command(&mut self, c: &aof::Command<'_>) {
        match self.job.format {
            Format::Resp => {
                // MULTI and EXEC stay where they are: SELECTs inside a block land inside it.
                if !(c.is("MULTI") || c.is("EXEC")) {
                    self.select(c.db);
                }
                self.buf.extend_from_slice(c.bytes());
            }
            Format::Json => {
                let buf = &mut self.buf;
                buf.extend_from_slice(b"{\"db\":");
                buf.extend_from_slice(itoa::Buffer::new().format(c.db).as_bytes());
                buf.extend_from_slice(b",\"argv\":[");
                for (i, a) in c.argv.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    json::write_bytes(buf, a);
                }
                buf.extend_from_slice(b"]}\n");
            }
            Format::Text => {
                let buf = &mut self.buf;
                buf.extend_from_slice(b"db ");
                buf.extend_from_slice(itoa::Buffer::new().format(c.db).as_bytes());
                buf.extend_from_slice(b" command:");
                for a in &c.argv {
                    buf.push(b' ');
                    text::write_quoted(buf, a);
                }
                buf.push(b'\n');
            }
        }
        self.counts.commands += 1;
        self.counts.flushes += c.is_flush() as u64;
    }

    fn finish(self) -> Part {
        Part {
            buf: self.buf,
            counts: self.counts,
            stats: None,
            dbs: self.dbs,
            tally: self.tally,
            error: None,
            kept: self.kept,
        }
    }
}

/// The sequential path of a log (RESP of unfiltered commands, or one thread): units
/// rendered on the joining thread into one growing batch, written out by the printer
/// every `batch_bytes`.
pub struct Sequential<'j> {
    out: Writer<'j>,
}

impl<'j> Sequential<'j> {
    pub fn new(job: &'j Job) -> Sequential<'j> {
        Sequential { out: Writer::new(job, Vec::new()) }
    }

    pub fn unit(&mut self, unit: &Unit<'_>) {
        self.out.unit(unit)
    }

    pub fn rendered_bytes(&self) -> usize {
        self.out.buf.len()
    }

    /// What is rendered so far, as a part; the renderer starts anew, on a buffer given
    /// back with [`Sequential::recycle`].
    pub fn take(&mut self) -> Part {
        let job = self.out.job;
        std::mem::replace(&mut self.out, Writer::new(job, Vec::new())).finish()
    }

    /// Gives back a written part's buffer, to render into again.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        if self.out.buf.is_empty() && self.out.buf.capacity() < buf.capacity() {
            self.out.buf = buf;
        }
    }
}
