//! `redis-migration print FILE…`: every selected key as JSON lines (lossless) or text,
//! written to stdout through one buffer.

use std::io::Write;

use clap::ValueEnum;

use crate::filter::Filter;
use crate::output::{json, text};
use crate::rdb::{Item, Parser};
use crate::source::{display_name, Source};
use crate::translate::Translator;

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

const FLUSH_AT: usize = 1 << 20;

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
    let mut translator = None;
    if format == Format::Resp {
        let cfg = args.translate.to_config(filter.keep_expired, filter.now_ms)?;
        translator = Some(Translator::new(cfg));
        // The translator decides about expired keys (it knows --expire-margin).
        filter.keep_expired = true;
    }
    let stdout = std::io::stdout();
    let mut sink = stdout.lock();
    let mut counts = Counts::default();
    let mut buf = Vec::with_capacity(FLUSH_AT + (64 << 10));
    for path in &paths {
        let name = display_name(path);
        let source = Source::open(path, args.input.no_mmap).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let mut render = Render { format, translator: translator.as_mut() };
        let result = print_rdb(source.bytes(), &filter, &mut render, &mut buf, &mut counts, &mut sink);
        if let Err(e) = result {
            match e {
                PrintError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(super::EXIT_OK),
                PrintError::Io(e) => return Err(anyhow::anyhow!("writing output: {e}")),
                PrintError::Decode(e) => {
                    let _ = sink.write_all(&buf);
                    let _ = sink.flush();
                    return Err(anyhow::anyhow!("{name}: {e}"));
                }
            }
        }
    }
    match sink.write_all(&buf).and_then(|_| sink.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(super::EXIT_OK),
        other => other?,
    }
    let mut code = super::EXIT_OK;
    if let Some(t) = &translator {
        counts.expired += t.stats.skipped_expired;
        if t.stats.refused > 0 {
            code = super::EXIT_PROBLEMS;
        }
        if !args.quiet || t.stats.refused > 0 {
            eprintln!("{}", t.stats.report());
        }
    }
    if !args.quiet {
        eprintln!(
            "printed {} keys; left out: {} by filters, {} expired{}, {} empty collections (Redis skips them too)",
            counts.printed,
            counts.filtered,
            counts.expired,
            if filter.keep_expired { "" } else { " (--keep-expired keeps them)" },
            counts.empty
        );
    }
    Ok(code)
}

/// Where records go: a renderer, or the translator for RESP.
pub struct Render<'t> {
    pub format: Format,
    pub translator: Option<&'t mut Translator>,
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

/// Decodes one RDB and renders what the filter selects into `buf`, flushing it to `sink`
/// whenever it grows past a megabyte.
pub fn print_rdb(
    data: &[u8],
    filter: &Filter,
    render: &mut Render<'_>,
    buf: &mut Vec<u8>,
    counts: &mut Counts,
    sink: &mut impl Write,
) -> Result<(), PrintError> {
    let mut parser = Parser::new(data)?;
    let header = parser.header();
    if let Some(t) = render.translator.as_deref_mut() {
        t.set_source(header.vendor, header.version);
    }
    let extras = filter.selects_everything() && render.format != Format::Text;
    while let Some(item) = parser.next_item()? {
        match item {
            Item::Record(rec) => {
                if !filter.keep_expired && filter.is_expired(&rec) {
                    counts.expired += 1;
                } else if filter.accepts(&rec) {
                    match (render.format, render.translator.as_deref_mut()) {
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
            Item::Function(f) if extras => match render.translator.as_deref_mut() {
                Some(t) => t.function(&f, buf),
                None => json::write_function(buf, &f),
            },
            Item::Aux { key, value } if extras && key.bytes().as_ref() == b"lua" => {
                match render.translator.as_deref_mut() {
                    Some(t) => t.script(&value, buf),
                    None => json::write_script(buf, &value),
                }
            }
            _ => {}
        }
        if buf.len() >= FLUSH_AT {
            sink.write_all(buf).map_err(PrintError::Io)?;
            buf.clear();
        }
    }
    Ok(())
}
