//! `redis-migration print FILE…`: every selected key as JSON lines (lossless) or text,
//! written to stdout through one buffer.

use std::io::Write;

use clap::ValueEnum;

use crate::filter::Filter;
use crate::output::{json, text};
use crate::rdb::{Function, Item, Parser};
use crate::source::{display_name, Source};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per key (see the README for the shapes)
    Json,
    /// One line per key, for people
    Text,
}

/// Print the keys of RDB files as JSON lines or text
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Functions and Lua scripts (the `lua` AUX field) are printed as \
{\"function\":…} and {\"script\":…} lines in JSON when no key filter is given.\n\
Exit status: 0 success, 2 a file could not be read or decoded."
)]
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
    let filter = args.filter.to_filter()?;
    let format = args.format.unwrap_or_else(|| {
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() {
            Format::Text
        } else {
            Format::Json
        }
    });
    let stdout = std::io::stdout();
    let mut sink = stdout.lock();
    let mut counts = Counts::default();
    let mut buf = Vec::with_capacity(FLUSH_AT + (64 << 10));
    for path in &paths {
        let name = display_name(path);
        let source =
            Source::open(path, args.input.no_mmap).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let result = print_rdb(
            source.bytes(),
            &filter,
            format,
            &mut buf,
            &mut counts,
            &mut sink,
        );
        if let Err(e) = result {
            match e {
                PrintError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Ok(super::EXIT_OK)
                }
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
    Ok(super::EXIT_OK)
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
    format: Format,
    buf: &mut Vec<u8>,
    counts: &mut Counts,
    sink: &mut impl Write,
) -> Result<(), PrintError> {
    let mut parser = Parser::new(data)?;
    let extras = filter.selects_everything() && format == Format::Json;
    while let Some(item) = parser.next_item()? {
        match item {
            Item::Record(rec) => {
                if !filter.keep_expired && filter.is_expired(&rec) {
                    counts.expired += 1;
                } else if filter.accepts(&rec) {
                    counts.printed += 1;
                    match format {
                        Format::Json => json::write_record(buf, &rec),
                        Format::Text => text::write_record(buf, &rec),
                    }
                } else {
                    counts.filtered += 1;
                }
            }
            Item::EmptyKey { .. } => counts.empty += 1,
            Item::Function(f) if extras => json::write_function(buf, &f),
            Item::Function(Function::Library { .. } | Function::PreGa { .. }) => {}
            Item::Aux { key, value } if extras && key.bytes().as_ref() == b"lua" => {
                json::write_script(buf, &value)
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
