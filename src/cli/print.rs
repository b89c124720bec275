//! `redis-migration print FILE…`: every selected key as JSON lines (lossless) or text,
//! written to stdout through one buffer.

use std::io::Write;

use clap::ValueEnum;

use std::sync::{mpsc, Mutex};

use crate::aof;
use crate::filter::Filter;
use crate::output::{json, text};
use crate::pipeline::{self, decode_span, Plan};
use crate::rdb::Item;
use crate::resp::encode::{array_header, bulk, bulk_u64};
use crate::source::{display_name, Source};
use crate::translate::{Stats, Translator};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per key (see the README for the shapes)
    Json,
    /// One line per key, for people
    Text,
    /// Commands that recreate the keys, as RESP (for `redis-cli --pipe`)
    Resp,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeArg {
    /// replay: RESTORE where the destination takes the payload, commands for the rest;
    /// print: commands
    Auto,
    /// SET/RPUSH/SADD/ZADD/HSET/XADD… chunked; works everywhere
    Commands,
    /// RESTORE of the raw value: fastest and exact (PEL, consumer times, modules); replay
    /// sends short strings with nothing else to carry in MSET batches
    Restore,
}

/// Print the keys of RDB files as JSON lines, text, or RESP commands for redis-cli --pipe
#[derive(clap::Args, Debug)]
#[command(after_help = "Functions and Lua scripts (the `lua` AUX field) are printed as \
{\"function\":…} and {\"script\":…} lines in JSON when no key filter is given.\n\
Exit status: 0 success, 2 a file could not be read or decoded.")]
pub struct Args {
    #[command(flatten)]
    pub input: super::InputArgs,
    #[command(flatten)]
    pub filter: super::FilterArgs,
    /// Output format [default: text on a terminal, json otherwise]
    #[arg(long, short = 'f', value_enum)]
    pub format: Option<Format>,
    /// No summary on stderr
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub threads: super::ThreadArgs,
    #[command(flatten)]
    pub translate: TranslateArgs,
}

/// How records become commands (`--format resp`).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Commands (--format resp)")]
pub struct TranslateArgs {
    /// How keys travel [default: commands for print, auto for replay]
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Redis version of the destination (decides ENTRIESREAD, field TTLs, RESTORE versions)
    /// [default: print: the newest known; replay: asked of the destination]
    #[arg(long, value_name = "X.Y")]
    pub target_version: Option<String>,
    /// Most elements in one command
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_args: usize,
    /// Most bytes in one command (longer strings go as SET then APPENDs)
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub max_bytes: usize,
    /// RESTORE payloads larger than this go as commands
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub restore_max_bytes: usize,
    /// Treat keys expiring within this many milliseconds as expired
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub expire_margin: i64,
    /// Send hashes with field TTLs to destinations older than 7.4 without their TTLs
    #[arg(long)]
    pub drop_field_ttl: bool,
}

impl TranslateArgs {
    /// `--target-version`, when given.
    pub fn target(&self) -> anyhow::Result<Option<crate::translate::Version>> {
        self.target_version
            .as_ref()
            .map(|t| {
                crate::translate::Version::parse(t)
                    .ok_or_else(|| anyhow::anyhow!("--target-version {t:?}: expected a version like 7.2"))
            })
            .transpose()
    }

    pub fn to_config(&self, keep_expired: bool, now_ms: i64) -> anyhow::Result<crate::translate::Config> {
        use crate::translate::{Config, Mode, Version};
        let target = self.target()?.unwrap_or(Version::LATEST);
        Ok(Config {
            mode: match self.mode {
                None | Some(ModeArg::Auto | ModeArg::Commands) => Mode::Commands,
                Some(ModeArg::Restore) => Mode::Restore,
            },
            target,
            max_args: self.max_args.max(1),
            max_bytes: self.max_bytes.max(1),
            restore_max_bytes: self.restore_max_bytes,
            keep_expired,
            expire_margin_ms: self.expire_margin,
            drop_field_ttl: self.drop_field_ttl,
            now_ms,
        })
    }
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

pub fn run(args: Args) -> anyhow::Result<i32> {
    let files = args.input.files()?;
    let mut filter = args.filter.to_filter()?;
    let format = args.format.unwrap_or_else(|| {
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() {
            Format::Text
        } else {
            Format::Json
        }
    });
    let mut translate = None;
    if format == Format::Resp {
        translate = Some(args.translate.to_config(filter.keep_expired, filter.now_ms)?);
        // The translator decides about expired keys (it knows --expire-margin).
        filter.keep_expired = true;
    }
    let job = Job { format, filter, translate, plan: args.threads.plan() };
    // Every file is opened before anything is printed: a missing part of a multi-part AOF
    // stops the job before it starts.
    let mut sources = Vec::with_capacity(files.len());
    for f in &files {
        let name = display_name(&f.path);
        sources.push(Source::open(&f.path, args.input.no_mmap).map_err(|e| anyhow::anyhow!("{name}: {e}"))?);
    }
    let aof_snapshot = files.iter().zip(&sources).any(|(f, s)| f.from_aof_flag && aof::is_rdb(s.bytes()));
    args.input.check_pairing(aof_snapshot)?;
    let until = args.input.check_until(|| {
        sources.iter().filter_map(|s| aof::log_start(s.bytes()).map(|at| &s.bytes()[at..])).collect()
    })?;
    let inputs = files.iter().zip(&sources).map(|(f, s)| (s.bytes(), args.input.allow_truncated && f.last_of_set));
    let log_keys = crate::expiry::LogKeysOnce::new(inputs.collect(), &job.filter, until);
    let stdout = std::io::stdout();
    let mut out = Output::new(stdout.lock());
    out.until = until;
    for (file, source) in files.iter().zip(&sources) {
        let name = display_name(&file.path);
        let allow_truncated = args.input.allow_truncated && file.last_of_set;
        let data = source.bytes();
        let result = if aof::is_rdb(data) {
            print_rdb(data, &job, &log_keys, &mut out).and_then(|trailing| {
                let tail = &data[data.len() - trailing..];
                match tail.first() {
                    Some(b'*' | b'#') => print_log(tail, data.len() - trailing, &job, &mut out, allow_truncated),
                    _ => Ok(None),
                }
            })
        } else {
            print_log(data, 0, &job, &mut out, allow_truncated)
        };
        match result {
            Ok(Some(cut)) => eprintln!(
                "{name}: the AOF ends inside a command ({}): loaded up to byte {}, left out the last {} bytes",
                cut.why, cut.at, cut.dropped
            ),
            Ok(None) => {}
            Err(PrintError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(super::EXIT_OK),
            Err(PrintError::Io(e)) => return Err(anyhow::anyhow!("writing output: {e}")),
            Err(PrintError::Decode(e)) => {
                let _ = out.sink.flush();
                return Err(anyhow::anyhow!("{name}: {e}"));
            }
            Err(PrintError::Log(e, base)) => {
                let _ = out.sink.flush();
                let hint = if e.truncated && file.last_of_set && !args.input.allow_truncated {
                    "; --allow-truncated loads up to it"
                } else if e.truncated && !file.last_of_set {
                    "; only the last file of an AOF may be cut short"
                } else {
                    ""
                };
                return Err(anyhow::anyhow!(
                    "{name}: at byte {}: {} (the last complete command ends at byte {}){hint}",
                    base + e.at,
                    e.msg,
                    base + e.last_good
                ));
            }
            Err(PrintError::Usage(msg)) => return Err(anyhow::anyhow!("{name}: {msg}")),
        }
    }
    if let Err(e) = out.write_cleanup() {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(super::EXIT_OK);
        }
        return Err(anyhow::anyhow!("writing output: {e}"));
    }
    match out.sink.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(super::EXIT_OK),
        other => other?,
    }
    let mut code = super::EXIT_OK;
    let mut counts = out.counts;
    if job.translate.is_some() {
        let stats = &out.stats;
        counts.expired += stats.skipped_expired;
        counts.expired_fields += stats.skipped_expired_fields;
        if stats.refused > 0 {
            code = super::EXIT_PROBLEMS;
        }
        if !args.quiet || stats.refused > 0 {
            eprintln!("{}", stats.report());
        }
    }
    if let (false, Some(u)) = (args.quiet, &out.until) {
        eprintln!("{}", u.report());
    }
    let tally = &out.tally;
    if !args.quiet && (counts.commands > 0 || counts.flushes > 0 || tally.filtered > 0) {
        eprintln!(
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
        );
    }
    if tally.doubtful() > 0 {
        code = super::EXIT_PROBLEMS;
    }
    if !args.quiet || tally.doubtful() > 0 {
        tally.report().iter().for_each(|l| eprintln!("{l}"));
    }
    let keys_seen = counts.printed + counts.filtered + counts.expired + counts.empty;
    if !args.quiet && (keys_seen > 0 || counts.commands + tally.filtered == 0) {
        eprintln!(
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
        );
    }
    if !args.quiet && counts.kept > 0 && job.translate.is_none() {
        eprintln!(
            "kept {} keys whose expiry (or some of whose fields' expiry) has passed: AOF commands write to them, \
             and Redis expires nothing while it loads an AOF",
            counts.kept
        );
    }
    Ok(code)
}

/// What to print and how.
pub struct Job {
    pub format: Format,
    pub filter: Filter,
    /// Set for `--format resp`.
    pub translate: Option<crate::translate::Config>,
    pub plan: Plan,
}

/// Where batches are joined: the sink, the counts, and the db the command stream is on.
pub struct Output<W: Write> {
    pub sink: W,
    pub counts: Counts,
    pub stats: Stats,
    /// The db the RESP stream has selected (a fresh connection starts on 0).
    selected: u64,
    /// `--until`, and whether it was reached.
    pub until: Option<aof::Until>,
    /// What the filters did to AOF commands.
    pub tally: aof::select::Tally,
    /// RESP: keys sent with the expiry sentinel, to clean up after the last log.
    kept: Vec<crate::expiry::Kept>,
}

impl<W: Write> Output<W> {
    /// RESP: the scripts that end the kept keys (see [`crate::expiry`]), after everything.
    fn write_cleanup(&mut self) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for k in std::mem::take(&mut self.kept) {
            if k.db != self.selected {
                array_header(&mut buf, 2);
                bulk(&mut buf, b"SELECT");
                bulk_u64(&mut buf, k.db);
                self.selected = k.db;
                self.stats.commands += 1;
            }
            self.stats.commands += crate::expiry::encode_cleanup(&mut buf, &k);
        }
        self.sink.write_all(&buf)
    }

    pub fn new(sink: W) -> Output<W> {
        Output {
            sink,
            counts: Counts::default(),
            stats: Stats::default(),
            selected: 0,
            until: None,
            tally: Default::default(),
            kept: Vec::new(),
        }
    }
}

pub enum PrintError {
    Io(std::io::Error),
    Decode(crate::rdb::Error),
    /// A command log that could not be read, and the file offset of the data given.
    Log(aof::LogError, usize),
    /// Something asked that this input cannot do.
    Usage(String),
}

impl From<crate::rdb::Error> for PrintError {
    fn from(e: crate::rdb::Error) -> Self {
        PrintError::Decode(e)
    }
}

/// One batch's output.
struct Batch {
    buf: Vec<u8>,
    /// Bytes after the RDB's checksum, when the batch held the end.
    trailing: Option<usize>,
    counts: Counts,
    stats: Option<Stats>,
    dbs: Option<(u64, u64)>,
    error: Option<crate::rdb::Error>,
    kept: Vec<crate::expiry::Kept>,
}

/// Decodes one RDB (in parallel batches) and writes what the filter selects to the
/// output, in file order. Returns how many bytes follow the RDB (an AOF's commands after
/// an RDB preamble).
pub fn print_rdb<W: Write>(
    data: &[u8],
    job: &Job,
    log_keys: &crate::expiry::LogKeysOnce<'_>,
    out: &mut Output<W>,
) -> Result<usize, PrintError> {
    let mut trailing = 0;
    let extras = job.filter.selects_everything() && job.format != Format::Text;
    // Output buffers go back and forth between the writer and the workers.
    let spare: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let mut failure: Option<PrintError> = None;
    pipeline::run(
        data,
        &job.plan,
        |header, span| {
            let mut buf = spare
                .lock()
                .ok()
                .and_then(|mut v| v.pop())
                .unwrap_or_else(|| Vec::with_capacity(job.plan.batch_bytes.min(64 << 20).saturating_mul(2)));
            let mut counts = Counts::default();
            let mut translator =
                job.translate.as_ref().map(|cfg| Translator::for_batch(cfg.clone(), header.vendor, header.version));
            let mut trailing = None;
            let mut kept = Vec::new();
            let r = decode_span(data, header, span, |item, _| {
                if let Item::End { trailing: t, .. } = item {
                    trailing = Some(t);
                }
                let mut r = Render { job, extras, log_keys, buf: &mut buf, counts: &mut counts, kept: &mut kept };
                r.item(item, translator.as_mut());
                Ok(())
            });
            let dbs = translator.as_ref().and_then(Translator::batch_dbs);
            Batch { buf, trailing, counts, stats: translator.map(|t| t.stats), dbs, error: r.err(), kept }
        },
        |mut batch| {
            if let Some((entry, exit)) = batch.dbs {
                if entry != out.selected {
                    let mut select = Vec::with_capacity(32);
                    array_header(&mut select, 2);
                    bulk(&mut select, b"SELECT");
                    bulk_u64(&mut select, entry);
                    out.stats.commands += 1;
                    if let Err(e) = out.sink.write_all(&select) {
                        failure = Some(PrintError::Io(e));
                        return false;
                    }
                }
                out.selected = exit;
            }
            if let Some(t) = batch.trailing {
                trailing = t;
            }
            let written = out.sink.write_all(&batch.buf);
            out.counts.merge(batch.counts);
            out.kept.append(&mut batch.kept);
            if let Some(stats) = batch.stats {
                out.stats.merge(stats);
            }
            batch.buf.clear();
            // Keep a few ordinary buffers; one a huge value grew goes back to the allocator.
            if batch.buf.capacity() <= job.plan.batch_bytes.saturating_mul(4) {
                if let Ok(mut v) = spare.lock() {
                    if v.len() < job.plan.threads + 1 {
                        v.push(batch.buf);
                    }
                }
            }
            failure = match (written, batch.error) {
                (Err(e), _) => Some(PrintError::Io(e)),
                (Ok(()), Some(e)) => Some(PrintError::Decode(e)),
                (Ok(()), None) => None,
            };
            failure.is_none()
        },
    )?;
    failure.map_or(Ok(trailing), Err)
}

/// Log units as offsets into the log: gathered by the reading thread, rendered by a
/// worker (which rebuilds each command's arguments from them, with no second scan).
#[derive(Default)]
struct Units {
    /// Per command: db, byte span, and its arguments' range in `args`.
    cmds: Vec<(u64, usize, usize, std::ops::Range<usize>)>,
    args: Vec<(usize, usize)>,
    /// Per unit: its commands' range in `cmds`, and whether it is a MULTI block.
    units: Vec<(std::ops::Range<usize>, bool)>,
    /// Log bytes the units span.
    bytes: usize,
}

impl Units {
    fn push(&mut self, unit: &aof::Unit<'_>, data: &[u8]) {
        let base = data.as_ptr() as usize;
        let first = self.cmds.len();
        let mut add = |c: &aof::Command<'_>| {
            let first = self.args.len();
            self.args.extend(c.argv.iter().map(|a| (a.as_ptr() as usize - base, a.len())));
            self.cmds.push((c.db, c.offset, c.offset + c.raw.len(), first..self.args.len()));
            self.bytes += c.raw.len();
        };
        match unit {
            aof::Unit::One(c) => add(c),
            aof::Unit::Multi(block) => block.iter().for_each(&mut add),
            aof::Unit::Timestamp(_) => return,
        }
        self.units.push((first..self.cmds.len(), matches!(unit, aof::Unit::Multi(_))));
    }

    /// Hands each unit, rebuilt, to `f`.
    fn each<'a>(&self, data: &'a [u8], mut f: impl FnMut(&aof::Unit<'a>)) {
        // One argument vector serves every single command (a block's commands own theirs).
        let mut spare: Vec<&'a [u8]> = Vec::new();
        let command = |i: usize, mut argv: Vec<&'a [u8]>| {
            let (db, start, end, ref args) = self.cmds[i];
            argv.clear();
            argv.extend(self.args[args.clone()].iter().map(|&(at, len)| &data[at..at + len]));
            aof::Command { db, argv, raw: &data[start..end], offset: start, narrowed: None }
        };
        for (cmds, multi) in &self.units {
            if *multi {
                f(&aof::Unit::Multi(cmds.clone().map(|i| command(i, Vec::new())).collect()));
            } else {
                let unit = aof::Unit::One(command(cmds.start, std::mem::take(&mut spare)));
                f(&unit);
                if let aof::Unit::One(c) = unit {
                    spare = c.argv;
                }
            }
        }
    }
}

/// A log's rendered output, whole or one batch of it.
#[derive(Default)]
struct LogBatch {
    buf: Vec<u8>,
    /// RESP: the db its first command needs selected, and the db it leaves selected.
    dbs: Option<(u64, u64)>,
    /// The db this batch's output has selected so far.
    selected: Option<u64>,
    counts: Counts,
    tally: aof::select::Tally,
}

impl LogBatch {
    /// Filters and renders one unit.
    fn unit(&mut self, unit: &aof::Unit<'_>, job: &Job) {
        if let (true, aof::Unit::One(c)) = (job.filter.selects_everything(), unit) {
            return self.command(c, job.format); // the common case, without the filter's work
        }
        let Some(unit) = aof::select::select(unit, &job.filter, &mut self.tally) else { return };
        match unit.as_ref() {
            aof::Unit::Timestamp(_) => {}
            aof::Unit::One(c) => self.command(c, job.format),
            aof::Unit::Multi(block) => block.iter().for_each(|c| self.command(c, job.format)),
        }
    }

    /// Writes one command in the job's format. In RESP, the batch's first command needs
    /// no SELECT of its own: its db is the batch's entry db, which the writer selects
    /// when the stream is elsewhere.
    fn command(&mut self, c: &aof::Command<'_>, format: Format) {
        let buf = &mut self.buf;
        match format {
            Format::Resp => {
                let wrapper = c.is("MULTI") || c.is("EXEC");
                if !wrapper && self.selected != Some(c.db) {
                    if self.selected.is_some() {
                        array_header(buf, 2);
                        bulk(buf, b"SELECT");
                        bulk_u64(buf, c.db);
                    }
                    self.selected = Some(c.db);
                    self.dbs = Some((self.dbs.map_or(c.db, |(entry, _)| entry), c.db));
                }
                buf.extend_from_slice(c.bytes());
            }
            Format::Json => {
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

    /// Writes the batch out (selecting its entry db first) and empties it.
    fn write_to<W: Write>(&mut self, out: &mut Output<W>) -> std::io::Result<()> {
        if let Some((entry, exit)) = self.dbs.take() {
            if entry != out.selected {
                let mut select = Vec::with_capacity(32);
                array_header(&mut select, 2);
                bulk(&mut select, b"SELECT");
                bulk_u64(&mut select, entry);
                out.sink.write_all(&select)?;
            }
            out.selected = exit;
        }
        self.selected = None;
        out.counts.merge(std::mem::take(&mut self.counts));
        out.tally.merge(std::mem::take(&mut self.tally));
        let r = out.sink.write_all(&self.buf);
        self.buf.clear();
        r
    }
}

/// Prints the commands of an AOF log (`data` starts at file offset `base`), with SELECTs
/// where the db changes, keeping MULTI…EXEC blocks whole. This thread reads the log
/// (one pass over its headers); with more threads, batches of about `batch_bytes` of
/// commands are filtered and rendered by workers and written in order. Returns the cut,
/// when a truncated tail was allowed.
pub fn print_log<W: Write>(
    data: &[u8],
    base: usize,
    job: &Job,
    out: &mut Output<W>,
    allow_truncated: bool,
) -> Result<Option<aof::Cut>, PrintError> {
    if !job.filter.types.is_empty() {
        return Err(PrintError::Usage(
            "--type selects keys of snapshots; AOF commands can be selected by --db, --match and --regex".into(),
        ));
    }
    let batch_bytes = job.plan.batch_bytes.clamp(1, 64 << 20);
    let mut until = out.until.take();
    // RESP of unfiltered commands is a copy: reading is all its work, and handing it
    // to workers measured slower. JSON, text and filters have work to share.
    let shared = job.format != Format::Resp || !job.filter.selects_everything();
    let r = if shared && job.plan.threads > 1 && data.len() > batch_bytes {
        print_log_parallel(data, job, out, allow_truncated, &mut until, batch_bytes)
    } else {
        let mut b = LogBatch::default();
        let mut io = Ok(());
        let r = aof::read_log(data, allow_truncated, |unit| {
            if io.is_err() || until.as_mut().is_some_and(|u| !u.admits(unit)) {
                return;
            }
            b.unit(unit, job);
            if b.buf.len() >= batch_bytes {
                io = b.write_to(out);
            }
        });
        io.and_then(|()| b.write_to(out)).map(|()| r)
    };
    out.until = until;
    r.map_err(PrintError::Io)?.map_err(|e| PrintError::Log(e, base))
}

/// [`print_log`] with workers: a scoped thread reads the log and batches its units;
/// the batches are filtered and rendered by the other threads (with two in all, by
/// this one) and written in order by this one.
fn print_log_parallel<W: Write>(
    data: &[u8],
    job: &Job,
    out: &mut Output<W>,
    allow_truncated: bool,
    until: &mut Option<aof::Until>,
    batch_bytes: usize,
) -> std::io::Result<Result<Option<aof::Cut>, aof::LogError>> {
    let (tx, rx) = mpsc::sync_channel::<Units>(job.plan.threads + 1);
    let spare: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let mut io = Ok(());
    let read = std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut batch = Units::default();
            let mut open = true;
            let r = aof::read_log(data, allow_truncated, |unit| {
                if !open || until.as_mut().is_some_and(|u| !u.admits(unit)) {
                    return;
                }
                batch.push(unit, data);
                if batch.bytes >= batch_bytes {
                    open = tx.send(std::mem::take(&mut batch)).is_ok();
                }
            });
            if open {
                let _ = tx.send(batch);
            }
            r
        });
        // The reader has a core of its own; the others render.
        let workers = job.plan.threads - 1;
        pipeline::ordered(
            rx.into_iter(),
            workers,
            None,
            workers > 1,
            |units| {
                let mut b = LogBatch {
                    buf: spare.lock().ok().and_then(|mut v| v.pop()).unwrap_or_default(),
                    ..Default::default()
                };
                units.each(data, |unit| b.unit(unit, job));
                b
            },
            |mut b| {
                io = b.write_to(out);
                if b.buf.capacity() <= batch_bytes.saturating_mul(4) {
                    if let Ok(mut v) = spare.lock() {
                        v.push(b.buf);
                    }
                }
                io.is_ok()
            },
        );
        reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    io?;
    Ok(read)
}

/// Renders the items of one batch.
struct Render<'r, 'k> {
    job: &'r Job,
    /// Functions and scripts are printed too (no key filter, not text).
    extras: bool,
    log_keys: &'r crate::expiry::LogKeysOnce<'k>,
    buf: &'r mut Vec<u8>,
    counts: &'r mut Counts,
    /// RESP: keys sent with the expiry sentinel.
    kept: &'r mut Vec<crate::expiry::Kept>,
}

impl Render<'_, '_> {
    /// Renders one item of the file into `buf`.
    fn item(&mut self, item: Item<'_>, translator: Option<&mut Translator>) {
        let (job, extras) = (self.job, self.extras);
        match item {
            Item::Record(rec) => match (job.format, translator) {
                (Format::Resp, Some(t)) => self.command_record(rec, t),
                _ => self.record(rec),
            },
            Item::EmptyKey { .. } => self.counts.empty += 1,
            Item::Function(f) if extras => match translator {
                Some(t) => t.function(&f, self.buf),
                None => json::write_function(self.buf, &f),
            },
            Item::Aux { key, value } if extras && key.bytes().as_ref() == b"lua" => match translator {
                Some(t) => t.script(&value, self.buf),
                None => json::write_script(self.buf, &value),
            },
            _ => {}
        }
    }

    /// A key as JSON or text: what has expired is left out (keys, then hash fields), but
    /// for keys that a log command of the job writes to (see [`crate::expiry`]).
    fn record(&mut self, mut rec: crate::rdb::Record<'_>) {
        let filter = &self.job.filter;
        let mut drop_fields = false;
        if !filter.keep_expired {
            let expired = crate::expiry::Expired::of(&rec, filter.now_ms);
            if !expired.none() {
                if self.log_keys.get().contains(rec.db, &rec.key.bytes()) {
                    self.counts.kept += filter.selects(&rec) as u64;
                } else if expired.whole() {
                    self.counts.expired += 1;
                    self.counts.expired_fields += expired.fields;
                    return;
                } else {
                    drop_fields = true;
                }
            }
        }
        if !filter.selects(&rec) {
            self.counts.filtered += 1;
            return;
        }
        if drop_fields {
            self.counts.expired_fields += crate::expiry::drop_expired_fields(&mut rec, filter.now_ms);
        }
        match self.job.format {
            Format::Text => text::write_record(self.buf, &rec),
            _ => json::write_record(self.buf, &rec),
        }
        self.counts.printed += 1;
    }

    /// A key as commands: the translator leaves out what has expired, but for keys that
    /// a log command of the job writes to, which it sends with the expiry sentinel.
    fn command_record(&mut self, rec: crate::rdb::Record<'_>, t: &mut Translator) {
        if !self.job.filter.selects(&rec) {
            self.counts.filtered += 1;
            return;
        }
        let kept = t.expiry_now().is_some_and(|now| {
            !crate::expiry::Expired::of(&rec, now).none() && self.log_keys.get().contains(rec.db, &rec.key.bytes())
        });
        if kept {
            if let Some(k) = t.record_kept(&rec, self.buf) {
                self.kept.push(k);
                self.counts.printed += 1;
            }
        } else if t.record(&rec, self.buf) {
            self.counts.printed += 1;
        }
    }
}
