//! `redis-migration inspect FILE…`: what snapshots hold and what they will cost in memory
//! (see [`crate::inspect`]).

use std::io::Write;
use std::path::PathBuf;

use clap::ValueEnum;

use crate::input::Inputs;
use crate::inspect::{self, Job};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatArg {
    /// Aligned tables with human sizes
    Text,
    /// One JSON document (schema redis-migration-inspect/1, see the README)
    Json,
    /// Each table as CSV rows, led by the table's name
    Csv,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorArg {
    Jemalloc,
    SystemJemalloc,
}

/// Say what snapshots hold and what they will cost in memory: keys per db, type and
/// encoding, the biggest keys, memory by key prefix, TTLs and sizes
#[derive(clap::Args, Debug)]
#[command(after_help = "Memory is what MEMORY USAGE key SAMPLES 0 reports on the target server (by default \
the version that wrote each file, from its redis-ver). Expired keys and hash fields (at --now) are counted apart. \
Only the snapshot part of an AOF is read.\n\
Exit status: 0 success, 2 the input could not be read (a damaged file: the offset, as check says it).")]
pub struct Args {
    #[command(flatten)]
    pub input: super::InputArgs,
    #[command(flatten)]
    pub filter: super::FilterArgs,
    /// Output format [default: text]
    #[arg(long, short = 'f', value_enum)]
    pub format: Option<FormatArg>,
    /// Instead of the report, one CSV row per key (redis-rdb-tools' memory report columns)
    #[arg(long)]
    pub keys: bool,
    /// Judge expiry at this unix time (seconds, 0 or more), or `snapshot` for each file's
    /// ctime (a ctime that is no time: the clock, with a note) [default: now, as a server
    /// loading the file would]
    #[arg(long, value_name = "UNIX_SECONDS|snapshot", allow_hyphen_values = true)]
    pub now: Option<String>,
    /// Size keys for this Redis version, 6.2 or newer (a version newer than the newest
    /// model, 8.2, is sized as 8.2, with a note) [default: the version that wrote the file]
    #[arg(long, value_name = "X.Y[.Z]")]
    pub target_version: Option<String>,
    /// The target's jemalloc: Redis's own build (make, the official images) or a
    /// distribution's shared one (Debian's and Ubuntu's redis-server packages)
    #[arg(long, value_enum, default_value = "jemalloc")]
    pub allocator: AllocatorArg,
    /// Read the target's encoding thresholds (hash-max-listpack-entries…) from this redis.conf
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How many of the biggest keys to list
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Cut key prefixes at this separator [default: any of : / | .]
    #[arg(long, value_name = "SEP")]
    pub prefix_sep: Option<String>,
    /// Most nodes of the prefix tree (the rest is counted in "(other)")
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub prefix_budget: usize,
    /// List keys of at least this many bytes as big keys
    #[arg(long, value_name = "BYTES", default_value_t = 10 << 20)]
    pub big_bytes: u64,
    /// List keys of at least this many elements as big keys
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub big_elements: u64,
    /// Most elements in one command, as replay would chunk big keys
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_args: u64,
    /// Also write folded stacks of memory by prefix here (for flamegraph.pl and inferno)
    #[arg(long, value_name = "FILE")]
    pub folded: Option<PathBuf>,
    /// Also write a self-contained HTML picture of the report here
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub threads: super::ThreadArgs,
}

/// `--now UNIX_SECONDS` in milliseconds: a time from 1970 on whose milliseconds fit.
pub(super) fn now_arg(s: &str) -> anyhow::Result<i64> {
    let secs: i64 =
        s.trim().parse().map_err(|_| anyhow::anyhow!("--now {s:?}: expected unix seconds or `snapshot`"))?;
    if secs < 0 {
        anyhow::bail!("--now {s}: a time before 1970 (unix seconds are counted from 1970-01-01)");
    }
    secs.checked_mul(1000)
        .ok_or_else(|| anyhow::anyhow!("--now {s}: too far in the future to be a time in milliseconds"))
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let filter = args.filter.to_filter()?;
    let now_ms = match args.now.as_deref() {
        None => Some(filter.now_ms),
        Some("snapshot") => None,
        Some(s) => Some(now_arg(s)?),
    };
    let target_version = match &args.target_version {
        None => None,
        Some(t) => {
            let (v, patch) = inspect::parse_version(t)
                .ok_or_else(|| anyhow::anyhow!("--target-version {t:?}: expected a version like 7.2 or 7.0.15"))?;
            if v < inspect::memory::OLDEST_MODELLED {
                anyhow::bail!(
                    "--target-version {t}: memory is modelled from Redis {} on; nothing older can be predicted",
                    inspect::memory::OLDEST_MODELLED
                );
            }
            if v > inspect::memory::NEWEST_MODELLED {
                eprintln!(
                    "note: --target-version {t} is newer than the newest memory model: keys are sized as on Redis {}",
                    inspect::memory::NEWEST_MODELLED
                );
            }
            Some((v, patch))
        }
    };
    let config = match &args.config {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("--config {}: {e}", crate::source::display_name(p)))?,
        ),
        None => None,
    };
    let job = Job {
        filter,
        now_ms,
        target_version,
        allocator: match args.allocator {
            AllocatorArg::Jemalloc => inspect::memory::Allocator::Jemalloc,
            AllocatorArg::SystemJemalloc => inspect::memory::Allocator::SystemJemalloc,
        },
        config,
        top: args.top,
        prefix: match &args.prefix_sep {
            Some(sep) if !sep.is_empty() => inspect::prefix::Cut::new(sep.as_bytes()),
            _ => inspect::prefix::Cut::default(),
        },
        prefix_budget: args.prefix_budget,
        big_bytes: args.big_bytes,
        big_elements: args.big_elements,
        max_args: args.max_args.max(1),
        keys_csv: args.keys,
        plan: args.threads.plan(),
    };
    if args.input.on_duplicate.is_some() {
        anyhow::bail!(
            "--on-duplicate is for replay and check; this command reads every file's keys as they are \
             (a key in two files shows twice)"
        );
    }
    let inputs = Inputs::open(&args.input.spec())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.keys {
        out.write_all(inspect::KEYS_HEADER.as_bytes())?;
    }
    let report = match inspect::run(&inputs, &job, &mut out) {
        Ok(r) => r,
        Err(inspect::InspectError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(super::EXIT_OK),
        Err(e) => return Err(e.into()),
    };
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    let format = args.format.unwrap_or(FormatArg::Text);
    let doc = (format == FormatArg::Json || args.html.is_some()).then(|| report.json());
    if !args.keys {
        let bytes = match (format, &doc) {
            (FormatArg::Json, Some(doc)) => format!("{doc:#}\n").into_bytes(),
            (FormatArg::Csv, _) => report.csv(),
            _ => report.text().into_bytes(),
        };
        match out.write_all(&bytes).and_then(|()| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(super::EXIT_OK),
            other => other?,
        }
    }
    out.flush()?;
    if let Some(path) = &args.folded {
        let mut stacks = String::new();
        report.folded(&mut stacks);
        std::fs::write(path, stacks).map_err(|e| anyhow::anyhow!("{}: {e}", crate::source::display_name(path)))?;
    }
    if let (Some(path), Some(doc)) = (&args.html, &doc) {
        std::fs::write(path, inspect::html::render(doc))
            .map_err(|e| anyhow::anyhow!("{}: {e}", crate::source::display_name(path)))?;
    }
    Ok(super::EXIT_OK)
}
