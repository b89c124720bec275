//! `redis-migration diff A B`: two datasets compared key by key (see [`crate::diff`]).

use std::path::PathBuf;

use clap::ValueEnum;

use crate::diff::{self, digest::StreamRules, Format, Job, PatchMode, SideSpec};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatArg {
    /// A summary and the first differences, for people
    Text,
    /// One JSON object per differing key, then {"summary":…}
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchModeArg {
    /// Commands: element-level edits where a value changed (HSET/HDEL, SADD/SREM,
    /// ZADD/ZREM, LTRIM with RPUSH/LPUSH), keys rebuilt where not
    Commands,
    /// RESTORE … REPLACE ABSTTL for every key rebuilt or changed
    Restore,
}

/// Compare two datasets (RDB files, folders of shard snapshots, live servers) key by key, with a patch
#[derive(clap::Args, Debug)]
#[command(after_help = "A side is an RDB file, a folder of them (its .rdb files read as one dataset), or a live \
server redis://[user[:password]@]host[:port][/db] (rediss:// for TLS), read with SCAN, DUMP \
and PEXPIRETIME (PTTL and this host's clock before 7.0) — never KEYS, never DEBUG.\n\
What is compared is what a client reads: logical values, never encodings (a listpack hash \
equals a hashtable hash with the same fields); sets, hashes and zsets without order, lists \
and streams in order; zset scores exactly; TTLs as absolute times within --ttl-tolerance; \
keys whose TTL has passed at --now are left out on both sides, and so are hash fields whose \
TTL has passed. Function libraries are compared when no key filter is given.\n\
A key is counted once, under its most significant kind (type, then value, then TTL).\n\
Exit status: 0 identical, 1 different, 2 could not compare.")]
pub struct Args {
    /// The first dataset: an RDB file, a folder of shard snapshots, or redis://…
    #[arg(value_name = "A")]
    pub a: String,
    /// The second dataset; the patch turns A into B
    #[arg(value_name = "B")]
    pub b: String,
    #[command(flatten)]
    pub filter: super::FilterArgs,
    /// Expiries are judged at this time (unix seconds) [default: now]
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub now: Option<String>,
    /// TTLs this close (milliseconds) count as equal: absolute expiry times read from two
    /// hosts differ by their clocks' skew, and tools that copy TTLs as remaining times add
    /// the time the copy took
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub ttl_tolerance: i64,
    /// Also compare stream consumers' seen and active times
    #[arg(long)]
    pub strict_streams: bool,
    /// Output [default: text on a terminal, json otherwise]
    #[arg(long, short = 'f', value_enum)]
    pub format: Option<FormatArg>,
    /// Differences shown in text output
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub show: usize,
    /// Write RESP commands that turn A into B (for redis-cli --pipe or replay) to FILE, or
    /// `-` for stdout (the report then goes to stderr)
    #[arg(long, value_name = "FILE|-")]
    pub patch: Option<PathBuf>,
    /// How the patch rebuilds keys
    #[arg(long, value_enum, default_value = "commands")]
    pub patch_mode: PatchModeArg,
    /// Memory for key digests, in MB; past it they are spilled to --temp-dir (48: two
    /// 100 MB snapshots are joined without spilling, two 1 GB ones within 128 MB in all)
    #[arg(long, value_name = "MB", default_value_t = 48)]
    pub memory: usize,
    /// Where spilled digests go [default: the system's temporary folder]
    #[arg(long, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,
    /// Passes over the keys that differ, when a side is a live server: keys that became
    /// equal or changed between passes were being written to, and are reported apart
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Seconds between rounds
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub interval: f64,
    /// Connections reading a live server (DUMP, PEXPIRETIME), besides the one that SCANs
    #[arg(long, value_name = "N", default_value_t = crate::live::DEFAULT_CONNECTIONS, help_heading = "Live servers")]
    pub connections: usize,
    /// At most this many commands a second to a live server, to spare production
    #[arg(long, value_name = "N", help_heading = "Live servers")]
    pub qps: Option<u32>,
    /// CA certificate (PEM) for rediss:// servers [default: the Mozilla roots]
    #[arg(long, value_name = "FILE", help_heading = "Live servers")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for a server with tls-auth-clients
    #[arg(long, value_name = "FILE", requires = "tls_key", help_heading = "Live servers")]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert", help_heading = "Live servers")]
    pub tls_key: Option<PathBuf>,
    /// Do not verify the server's certificate
    #[arg(long, help_heading = "Live servers")]
    pub insecure: bool,
    /// No progress on stderr
    #[arg(short, long)]
    pub quiet: bool,
    /// Decode every value as it is read, even where both sides' files are of one RDB
    /// version and equal stored bytes would settle most keys (for measurements)
    #[arg(long, hide = true)]
    pub logical: bool,
    #[command(flatten)]
    pub threads: super::ThreadArgs,
}

fn side(s: &str, args: &Args) -> anyhow::Result<SideSpec> {
    if s.starts_with("redis://") || s.starts_with("rediss://") {
        let tls = crate::net::tls::TlsOptions {
            ca: args.tls_ca.clone(),
            cert: args.tls_cert.clone(),
            key: args.tls_key.clone(),
            server_name: None,
            insecure: args.insecure,
        };
        let mut spec = crate::live::LiveSpec::from_url(s, Some(&tls))?;
        spec.connections = args.connections.max(1);
        spec.qps = args.qps;
        return Ok(SideSpec::Live(spec));
    }
    Ok(SideSpec::Files(crate::input::Spec { files: vec![PathBuf::from(s)], ..Default::default() }))
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let mut filter = args.filter.to_filter()?;
    if let Some(n) = &args.now {
        filter.now_ms = super::inspect::now_arg(n)?;
    }
    let patch_to_stdout = args.patch.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let format = args.format.map_or_else(
        || {
            use std::io::IsTerminal;
            let report_to_terminal =
                if patch_to_stdout { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() };
            if report_to_terminal {
                Format::Text
            } else {
                Format::Json
            }
        },
        |f| match f {
            FormatArg::Text => Format::Text,
            FormatArg::Json => Format::Json,
        },
    );
    let job = Job {
        a: side(&args.a, &args)?,
        b: side(&args.b, &args)?,
        filter,
        ttl_tolerance_ms: args.ttl_tolerance.max(0),
        rules: StreamRules { strict: args.strict_streams },
        rounds: args.rounds,
        interval: std::time::Duration::from_secs_f64(args.interval.max(0.0)),
        format,
        show: args.show,
        patch: args.patch.clone(),
        patch_mode: match args.patch_mode {
            PatchModeArg::Commands => PatchMode::Commands,
            PatchModeArg::Restore => PatchMode::Restore,
        },
        plan: args.threads.plan(),
        side_budget: (args.memory << 20) / 2,
        temp_dir: args.temp_dir.clone().unwrap_or_else(std::env::temp_dir),
        logical: args.logical,
    };
    let quiet = args.quiet;
    let mut progress = |msg: &str| {
        if !quiet {
            eprintln!("diff: {msg}");
        }
    };
    let summary = if patch_to_stdout {
        diff::run(&job, &mut std::io::stderr().lock(), &mut progress)?
    } else {
        diff::run(&job, &mut std::io::stdout().lock(), &mut progress)?
    };
    Ok(if summary.differences() == 0 { super::EXIT_OK } else { super::EXIT_PROBLEMS })
}
