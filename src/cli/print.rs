//! `redis-migration print FILE…`: every selected key as JSON lines (lossless) or text,
//! written to stdout through one buffer.

use std::io::Write;

use clap::ValueEnum;

use std::sync::Mutex;

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
    /// SET/RPUSH/SADD/ZADD/HSET/XADD… chunked; works everywhere
    Commands,
    /// RESTORE of the raw value: fastest and exact (PEL, consumer times, modules)
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
    /// commands: per-type commands; restore: RESTORE payloads
    #[arg(long, value_enum, default_value = "commands")]
    pub mode: ModeArg,
    /// Redis version of the destination (decides ENTRIESREAD, field TTLs, RESTORE versions)
    #[arg(long, value_name = "X.Y", default_value_t = crate::translate::Version::LATEST.to_string())]
    pub target_version: String,
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
    pub fn to_config(&self, keep_expired: bool, now_ms: i64) -> anyhow::Result<crate::translate::Config> {
        use crate::translate::{Config, Mode, Version};
        let target = Version::parse(&self.target_version).ok_or_else(|| {
            anyhow::anyhow!("--target-version {:?}: expected a version like 7.2", self.target_version)
        })?;
        Ok(Config {
            mode: match self.mode {
                ModeArg::Commands => Mode::Commands,
                ModeArg::Restore => Mode::Restore,
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
}

impl Counts {
    fn merge(&mut self, o: Counts) {
        self.printed += o.printed;
        self.filtered += o.filtered;
        self.expired += o.expired;
        self.empty += o.empty;
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let paths = args.input.paths()?;
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
    let stdout = std::io::stdout();
    let mut out = Output::new(stdout.lock());
    for path in &paths {
        let name = display_name(path);
        let source = Source::open(path, args.input.no_mmap).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        if let Err(e) = print_rdb(source.bytes(), &job, &mut out) {
            match e {
                PrintError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(super::EXIT_OK),
                PrintError::Io(e) => return Err(anyhow::anyhow!("writing output: {e}")),
                PrintError::Decode(e) => {
                    let _ = out.sink.flush();
                    return Err(anyhow::anyhow!("{name}: {e}"));
                }
            }
        }
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
        if stats.refused > 0 {
            code = super::EXIT_PROBLEMS;
        }
        if !args.quiet || stats.refused > 0 {
            eprintln!("{}", stats.report());
        }
    }
    if !args.quiet {
        eprintln!(
            "printed {} keys; left out: {} by filters, {} expired{}, {} empty collections (Redis skips them too)",
            counts.printed,
            counts.filtered,
            counts.expired,
            if job.filter.keep_expired { "" } else { " (--keep-expired keeps them)" },
            counts.empty
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
}

impl<W: Write> Output<W> {
    pub fn new(sink: W) -> Output<W> {
        Output { sink, counts: Counts::default(), stats: Stats::default(), selected: 0 }
    }
}

pub enum PrintError {
    Io(std::io::Error),
    Decode(crate::rdb::Error),
}

impl From<crate::rdb::Error> for PrintError {
    fn from(e: crate::rdb::Error) -> Self {
        PrintError::Decode(e)
    }
}

/// One batch's output.
struct Batch {
    buf: Vec<u8>,
    counts: Counts,
    stats: Option<Stats>,
    dbs: Option<(u64, u64)>,
    error: Option<crate::rdb::Error>,
}

/// Decodes one RDB (in parallel batches) and writes what the filter selects to the
/// output, in file order.
pub fn print_rdb<W: Write>(data: &[u8], job: &Job, out: &mut Output<W>) -> Result<(), PrintError> {
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
            let r = decode_span(data, header, span, |item, _| {
                render(item, job, extras, translator.as_mut(), &mut buf, &mut counts);
                Ok(())
            });
            let dbs = translator.as_ref().and_then(Translator::batch_dbs);
            Batch { buf, counts, stats: translator.map(|t| t.stats), dbs, error: r.err() }
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
            let written = out.sink.write_all(&batch.buf);
            out.counts.merge(batch.counts);
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
    failure.map_or(Ok(()), Err)
}

/// Renders one item of the file into `buf`.
fn render(
    item: Item<'_>,
    job: &Job,
    extras: bool,
    translator: Option<&mut Translator>,
    buf: &mut Vec<u8>,
    counts: &mut Counts,
) {
    let filter = &job.filter;
    match item {
        Item::Record(rec) => {
            if !filter.keep_expired && filter.is_expired(&rec) {
                counts.expired += 1;
            } else if filter.accepts(&rec) {
                match (job.format, translator) {
                    (Format::Resp, Some(t)) => {
                        if t.record(&rec, buf) {
                            counts.printed += 1;
                        }
                    }
                    (Format::Text, _) => {
                        text::write_record(buf, &rec);
                        counts.printed += 1;
                    }
                    _ => {
                        json::write_record(buf, &rec);
                        counts.printed += 1;
                    }
                }
            } else {
                counts.filtered += 1;
            }
        }
        Item::EmptyKey { .. } => counts.empty += 1,
        Item::Function(f) if extras => match translator {
            Some(t) => t.function(&f, buf),
            None => json::write_function(buf, &f),
        },
        Item::Aux { key, value } if extras && key.bytes().as_ref() == b"lua" => match translator {
            Some(t) => t.script(&value, buf),
            None => json::write_script(buf, &value),
        },
        _ => {}
    }
}
