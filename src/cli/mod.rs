//! The command line: one file per subcommand (an `Args` struct and `run`), shared
//! argument groups here. Arguments become plain config structs (`Filter`) before work.

pub mod capture;
pub mod check;
pub mod diff;
pub mod docs;
pub mod inspect;
pub mod migrate;
pub mod print;
pub mod replay;

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::filter::{now_ms, Filter};
use crate::glob::Glob;
use crate::rdb::ValueType;

/// Exit codes, as scripts rely on them.
pub const EXIT_OK: i32 = 0;
/// The job ran but found or caused problems (`check` found damage).
pub const EXIT_PROBLEMS: i32 = 1;
/// The job could not be done (usage, I/O, unreadable input).
pub const EXIT_FAILED: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "redis-migration",
    version,
    about = "Move, print, check and inspect Redis data: RDB snapshots decoded exactly, every version and encoding",
    long_about = "Move, print, check and inspect Redis data.\n\nReads Redis RDB snapshots of every version \
(REDIS0001 to REDIS0013, Redis 2.x to 8.x) and Valkey's VALKEY080, every encoding, streams with \
consumer groups, modules, functions and hash-field TTLs.\n\nExit codes: 0 success; 1 the job ran \
but found problems (check: damage); 2 the job could not be done.",
    after_help = "The original tool's flags -rdb and -aof (single dash) are accepted where they make sense."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Replay(Box<replay::Args>),
    Capture(Box<capture::Args>),
    Migrate(Box<migrate::Args>),
    Check(check::Args),
    Print(print::Args),
    Inspect(Box<inspect::Args>),
    Diff(Box<diff::Args>),
    Man(docs::ManArgs),
    Completions(docs::CompletionArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Replay(a) => replay::run(*a),
        Command::Capture(a) => capture::run(*a),
        Command::Migrate(a) => migrate::run(*a),
        Command::Check(a) => check::run(a),
        Command::Print(a) => print::run(a),
        Command::Inspect(a) => inspect::run(*a),
        Command::Diff(a) => diff::run(*a),
        Command::Man(a) => docs::run_man(a),
        Command::Completions(a) => docs::run_completions(a),
    }
}

/// The original tool's single-dash flags, rewritten to their double-dash forms.
const SEED_FLAGS: [&str; 9] = ["-sip", "-sport", "-sauth", "-dip", "-dport", "-dauth", "-rdb", "-aof", "-client"];

/// The original tool's command line made ours: its single-dash flags get their second
/// dash; with no subcommand, its flags run `migrate`; `-v` alone prints the version.
pub fn normalize_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = args
        .into_iter()
        .map(|a| match a.to_str() {
            Some(s) if SEED_FLAGS.contains(&s) => format!("-{s}").into(),
            _ => a,
        })
        .collect();
    match out.get(1).and_then(|a| a.to_str()) {
        Some("-v") if out.len() == 2 => out[1] = "--version".into(),
        Some(first) if SEED_FLAGS.iter().any(|f| first.strip_prefix('-') == Some(f)) => {
            out.insert(1, "migrate".into());
        }
        _ => {}
    }
    out
}

/// Where the input comes from.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// RDB files to read (`-` for stdin); a directory stands for the .rdb files under it, at
    /// any depth, in path order (or for the AOF whose manifest it holds)
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// An RDB file (the original tool's -rdb flag)
    #[arg(long = "rdb", value_name = "FILE")]
    pub rdb: Vec<PathBuf>,
    /// An AOF: a file, an appendonlydir or its manifest (the original tool's -aof flag);
    /// read after the snapshots
    #[arg(long = "aof", value_name = "FILE|DIR")]
    pub aof: Vec<PathBuf>,
    /// Read files into memory instead of mapping them (for files that may change while read)
    #[arg(long)]
    pub no_mmap: bool,
    /// Load an AOF whose last file ends inside a command (or an open MULTI) up to its last
    /// complete command, as Redis does with aof-load-truncated
    #[arg(long)]
    pub allow_truncated: bool,
    /// Read -aof after -rdb even when the AOF holds its own snapshot (base or preamble)
    #[arg(long)]
    pub force: bool,
    /// Leave out AOF commands after the first #TS annotation later than this unix time
    /// (never inside a MULTI; the AOF needs aof-timestamp-enabled)
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub until: Option<u64>,
    /// A key found in two snapshot files (a folder of shard snapshots holding a master's
    /// and its replica's): which file's copy wins, in path order (replay, check) [default:
    /// refuse, naming the key and both files]. Finding them keeps a 128-bit hash of every
    /// key: about 30-60 bytes a key
    #[arg(long, value_enum, value_name = "WHICH")]
    pub on_duplicate: Option<DuplicateArg>,
}

/// Which copy of a key found in two snapshot files wins.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateArg {
    /// The first file's, in path order
    First,
    /// The last file's
    Last,
}

impl InputArgs {
    /// The inputs as the library takes them.
    pub fn spec(&self) -> crate::input::Spec {
        crate::input::Spec {
            rdb: self.rdb.clone(),
            files: self.files.clone(),
            aof: self.aof.clone(),
            no_mmap: self.no_mmap,
            allow_truncated: self.allow_truncated,
            force: self.force,
            until: self.until,
            on_duplicate: match self.on_duplicate {
                None => crate::duplicates::OnDuplicate::Refuse,
                Some(DuplicateArg::First) => crate::duplicates::OnDuplicate::First,
                Some(DuplicateArg::Last) => crate::duplicates::OnDuplicate::Last,
            },
        }
    }
}

/// How many threads decode.
#[derive(clap::Args, Debug, Clone)]
pub struct ThreadArgs {
    /// Decoding threads [default: one per core]; the output is the same for any number
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Input bytes per batch (tests use small batches to cut fixtures into many)
    #[arg(long, value_name = "BYTES", hide = true)]
    pub batch_bytes: Option<usize>,
}

impl ThreadArgs {
    pub fn plan(&self) -> crate::pipeline::Plan {
        let mut plan = crate::pipeline::Plan::with_threads(self.threads.map(usize::from));
        if let Some(b) = self.batch_bytes {
            plan.batch_bytes = b.max(1);
        }
        plan
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeArg {
    String,
    List,
    Set,
    Zset,
    Hash,
    Stream,
    Module,
}

impl From<TypeArg> for ValueType {
    fn from(t: TypeArg) -> ValueType {
        match t {
            TypeArg::String => ValueType::String,
            TypeArg::List => ValueType::List,
            TypeArg::Set => ValueType::Set,
            TypeArg::Zset => ValueType::ZSet,
            TypeArg::Hash => ValueType::Hash,
            TypeArg::Stream => ValueType::Stream,
            TypeArg::Module => ValueType::Module,
        }
    }
}

/// Which keys a job takes; the same on every subcommand.
#[derive(Args, Debug, Clone)]
pub struct FilterArgs {
    /// Only keys of these databases (repeat or comma-separate)
    #[arg(long, value_name = "N", value_delimiter = ',')]
    pub db: Vec<u64>,
    /// Only keys matching this glob, with Redis's rules (* ? [a-z] [^x] \x); repeatable.
    /// AOF commands are selected by their keys: DEL/UNLINK/EXISTS/TOUCH/MSET are narrowed
    /// to the selected keys; other commands naming selected and other keys, or keys that
    /// cannot be known, are left out and reported (exit code 1)
    #[arg(long = "match", value_name = "GLOB", value_parser = clap::value_parser!(std::ffi::OsString))]
    pub patterns: Vec<std::ffi::OsString>,
    /// Only keys matching this regular expression (over the key's bytes)
    #[arg(long, value_name = "REGEX")]
    pub regex: Option<String>,
    /// Only keys of these types (repeat or comma-separate); snapshots only
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    pub types: Vec<TypeArg>,
    /// Keep keys whose expiry time has passed (they are left out by default, as Redis drops them on load)
    #[arg(long)]
    pub keep_expired: bool,
}

impl FilterArgs {
    pub fn to_filter(&self) -> anyhow::Result<Filter> {
        let regex = match &self.regex {
            Some(r) => Some(
                regex::bytes::Regex::new(r)
                    .map_err(|e| anyhow::anyhow!("--regex {r:?} is not a valid regular expression: {e}"))?,
            ),
            None => None,
        };
        Ok(Filter {
            dbs: self.db.clone(),
            // Key patterns are bytes: the argument's bytes as they are, UTF-8 or not.
            globs: self.patterns.iter().map(|p| Glob::new(p.as_bytes())).collect(),
            regex,
            types: self.types.iter().map(|&t| t.into()).collect(),
            keep_expired: self.keep_expired,
            now_ms: now_ms(),
            duplicates: None,
        })
    }
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
