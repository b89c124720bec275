//! `print`: a consumer of the ordered input stream that writes every selected key as
//! JSON lines (lossless), text, or the RESP commands that recreate it, and every log
//! command as JSON, text or RESP; the workers render batches ([`render`]), this module's
//! `Printer` writes them out in input order through one buffer.

pub mod render;

use std::io::Write;
use std::sync::Mutex;

use crate::aof::{self, Until};
use crate::expiry::{self, LogKeysOnce};
use crate::filter::Filter;
use crate::input::{self, Flow, Input, InputError, Inputs, LogEnd, Sink};
use crate::pipeline::Plan;
use crate::rdb::Header;
use crate::resp::encode;
use crate::translate::Stats;

use render::{Part, Render, Sequential};

/// What the output looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per key or command.
    Json,
    /// One line per key or command, for people.
    Text,
    /// Commands that recreate the keys, as RESP (for `redis-cli --pipe`).
    Resp,
}

/// What to print and how.
pub struct Job {
    pub format: Format,
    pub filter: Filter,
    /// Set for `--format resp`.
    pub translate: Option<crate::translate::Config>,
    pub plan: Plan,
}

/// What a print run did, reported on stderr.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub printed: u64,
    pub filtered: u64,
    pub expired: u64,
    pub empty: u64,
    /// Commands printed from AOFs.
    pub commands: u64,
    /// FLUSHALL / FLUSHDB / SWAPDB among them.
    pub flushes: u64,
    /// Hash fields left out because their expiry had passed.
    pub expired_fields: u64,
    /// Keys with something expired, kept for the log commands that write to them.
    pub kept: u64,
}

impl Counts {
    fn merge(&mut self, o: Counts) {
        self.printed += o.printed;
        self.filtered += o.filtered;
        self.expired += o.expired;
        self.empty += o.empty;
        self.commands += o.commands;
        self.flushes += o.flushes;
        self.expired_fields += o.expired_fields;
        self.kept += o.kept;
    }
}

/// Why a print stopped.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Input(#[from] InputError),
}

/// What a print run did.
#[derive(Debug, Default)]
pub struct Printed {
    pub counts: Counts,
    /// `--format resp`: what the translator did.
    pub stats: Stats,
    /// What the filters did to AOF commands.
    pub tally: aof::select::Tally,
    pub until: Option<Until>,
    /// Things to say as they happened (a truncated tail left out).
    pub notes: Vec<String>,
}

impl Printed {
    /// The exit code: 1 when keys were refused or commands left out that a user must look
    /// at, else 0.
    pub fn exit_code(&self, job: &Job) -> i32 {
        let refused = job.translate.is_some() && self.stats.refused > 0;
        i32::from(refused || self.tally.doubtful() > 0)
    }

    /// The summary for stderr (`quiet`: only what must be looked at).
    pub fn report(&self, job: &Job, quiet: bool) -> Vec<String> {
        let mut lines = Vec::new();
        let mut counts = self.counts;
        if job.translate.is_some() {
            counts.expired += self.stats.skipped_expired;
            counts.expired_fields += self.stats.skipped_expired_fields;
            if !quiet || self.stats.refused > 0 {
                lines.push(self.stats.report());
            }
        }
        if let (false, Some(u)) = (quiet, &self.until) {
            lines.push(u.report());
        }
        let tally = &self.tally;
        if !quiet && (counts.commands > 0 || counts.flushes > 0 || tally.filtered > 0) {
            lines.push(format!(
                "printed {} commands from AOFs{}{}",
                counts.commands,
                match counts.flushes {
                    0 => String::new(),
                    n => format!(", {n} of them FLUSHALL/FLUSHDB/SWAPDB"),
                },
                match tally.filtered {
                    0 => String::new(),
                    n => format!("; left out {n} by filters"),
                }
            ));
        }
        if !quiet || tally.doubtful() > 0 {
            lines.extend(tally.report());
        }
        let keys_seen = counts.printed + counts.filtered + counts.expired + counts.empty;
        if !quiet && (keys_seen > 0 || counts.commands + tally.filtered == 0) {
            lines.push(format!(
                "printed {} keys; left out: {} by filters, {} expired{}{}, {} empty collections (Redis skips them too)",
                counts.printed,
                counts.filtered,
                counts.expired,
                match counts.expired_fields {
                    0 => String::new(),
                    n => format!(" (and {n} expired hash fields)"),
                },
                if job.filter.keep_expired { "" } else { " (--keep-expired keeps them)" },
                counts.empty
            ));
        }
        if !quiet && counts.kept > 0 && job.translate.is_none() {
            lines.push(format!(
                "kept {} keys whose expiry (or some of whose fields' expiry) has passed: AOF commands write to them, \
                 and Redis expires nothing while it loads an AOF",
                counts.kept
            ));
        }
        lines
    }
}

/// Prints `inputs` to `out`, in input order. The output so far is flushed before an
/// error returns.
pub fn run<W: Write>(inputs: &Inputs, job: &Job, out: W) -> Result<Printed, PrintError> {
    let log_keys = LogKeysOnce::new(inputs.logs_view(), &job.filter, inputs.until);
    let spare = Mutex::new(Vec::new());
    let render = Render {
        job,
        log_keys: &log_keys,
        spare: &spare,
        extras: job.filter.selects_everything() && job.format != Format::Text,
    };
    let mut printer = Printer {
        job,
        out,
        spare: &spare,
        printed: Printed::default(),
        selected: 0,
        kept: Vec::new(),
        seq: Sequential::new(job),
        name: String::new(),
        failure: None,
    };
    let opts = input::Options { plan: job.plan, from: input::Position::default(), reader: input::Reader::Print };
    printer.printed.until = input::run(inputs, &opts, &render, &mut printer);
    if let Some(e) = printer.failure.take() {
        let _ = printer.out.flush();
        return Err(e);
    }
    printer.write_cleanup()?;
    printer.out.flush()?;
    Ok(printer.printed)
}

/// The joining half: writes parts in order, selecting each one's entry db.
struct Printer<'j, W: Write> {
    job: &'j Job,
    out: W,
    spare: &'j Mutex<Vec<Vec<u8>>>,
    printed: Printed,
    /// The db the RESP stream has selected (a fresh connection starts on 0).
    selected: u64,
    /// RESP: keys sent with the expiry sentinel, to clean up after the last log.
    kept: Vec<expiry::Kept>,
    /// A log rendered on this thread.
    seq: Sequential<'j>,
    /// The input being read, as messages name it.
    name: String,
    failure: Option<PrintError>,
}

impl<W: Write> Printer<'_, W> {
    /// Writes one part (selecting its entry db first) and keeps its buffer for reuse.
    fn write(&mut self, mut part: Part) -> Flow {
        if let Some((entry, exit)) = part.dbs {
            if entry != self.selected {
                let mut select = Vec::with_capacity(32);
                encode::select(&mut select, entry);
                if part.stats.is_some() {
                    self.printed.stats.commands += 1;
                }
                if let Err(e) = self.out.write_all(&select) {
                    self.failure = Some(e.into());
                    return Flow::Stop;
                }
            }
            self.selected = exit;
        }
        let written = self.out.write_all(&part.buf);
        self.printed.counts.merge(part.counts);
        self.printed.tally.merge(std::mem::take(&mut part.tally));
        if let Some(stats) = part.stats.take() {
            self.printed.stats.merge(stats);
        }
        self.kept.append(&mut part.kept);
        // Keep a few ordinary buffers; one a huge value grew goes back to the allocator.
        if part.buf.capacity() <= self.job.plan.batch_bytes.saturating_mul(4) {
            part.buf.clear();
            if let Ok(mut v) = self.spare.lock() {
                if v.len() < self.job.plan.threads + 1 {
                    v.push(part.buf);
                }
            }
        }
        if let Err(e) = written {
            self.failure = Some(e.into());
            return Flow::Stop;
        }
        Flow::Continue
    }

    /// Writes what the sequential log renderer holds, and merges what it counted: the
    /// commands the filters left out write no byte but are reported all the same.
    fn flush_log(&mut self) -> Flow {
        let part = self.seq.take();
        let flow = self.write(part);
        if let Some(buf) = self.spare.lock().ok().and_then(|mut v| v.pop()) {
            self.seq.recycle(buf);
        }
        flow
    }

    /// RESP: the scripts that end the kept keys (see [`crate::expiry`]), after everything.
    fn write_cleanup(&mut self) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for k in std::mem::take(&mut self.kept) {
            if k.db != self.selected {
                encode::select(&mut buf, k.db);
                self.selected = k.db;
                self.printed.stats.commands += 1;
            }
            let mut ends = Vec::new();
            expiry::encode_cleanup(&mut buf, &k, &mut ends);
            self.printed.stats.commands += ends.len() as u64;
        }
        self.out.write_all(&buf)
    }
}

impl<'d, W: Write> Sink<'d, Part> for Printer<'_, W> {
    fn begin(&mut self, _file: usize, input: &'d Input) -> Flow {
        self.name.clone_from(&input.name);
        Flow::Continue
    }

    fn part(&mut self, mut part: Part) -> Flow {
        let error = part.error.take();
        let flow = self.write(part);
        if let (Flow::Continue, Some(error)) = (flow, error) {
            self.failure = Some(InputError::Snapshot { name: self.name.clone(), error }.into());
            return Flow::Stop;
        }
        flow
    }

    fn log_begin(&mut self, _file: usize, input: &'d Input, _base: usize) -> Flow {
        if !self.job.filter.types.is_empty() {
            self.failure = Some(
                InputError::Usage(format!(
                    "{}: --type selects keys of snapshots; AOF commands can be selected by --db, --match and --regex",
                    input.name
                ))
                .into(),
            );
            return Flow::Stop;
        }
        Flow::Continue
    }

    fn snapshot_end(&mut self, _file: usize, _header: Header, _trailing: usize) -> Flow {
        Flow::Continue
    }

    fn unit(&mut self, unit: &aof::Unit<'d>, _at: input::Position, _end: u64) -> Flow {
        self.seq.unit(unit);
        if self.seq.rendered_bytes() >= self.job.plan.batch_bytes.clamp(1, 64 << 20) {
            return self.flush_log();
        }
        Flow::Continue
    }

    fn end(&mut self, _file: usize, input: &'d Input, how: Result<LogEnd, InputError>) -> Flow {
        if self.flush_log() == Flow::Stop {
            return Flow::Stop;
        }
        match how {
            Ok(LogEnd::Cut { base, cut }) => {
                self.printed.notes.push(format!(
                    "{}: the AOF ends inside a command ({}): loaded up to byte {}, left out the last {} bytes",
                    input.name,
                    cut.why,
                    base + cut.at,
                    cut.dropped
                ));
                Flow::Continue
            }
            Ok(_) => Flow::Continue,
            Err(e) => {
                self.failure.get_or_insert(e.into());
                Flow::Stop
            }
        }
    }
}
