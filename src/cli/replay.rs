//! `redis-migration replay -rdb dump.rdb -aof appendonly.aof -dip HOST -dport PORT`:
//! load snapshots and command logs into a standalone Redis or twemproxy over N
//! pipelined connections. Arguments become a `replay::Config`; the work is in
//! `crate::replay`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use crate::net::parse_url;
use crate::replay::{self, DestKind, Endpoint, OnExisting};
use crate::source::display_name;
use crate::translate::Mode;

use super::{ModeArg, TranslateArgs};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindArg {
    /// Ask the destination (SELECT 0: Redis answers, twemproxy closes the connection;
    /// a cluster node answers the probe key with MOVED, or INFO with redis_mode:cluster)
    Auto,
    Standalone,
    Twemproxy,
    /// Redis Cluster, found from any one node: connections to every master, keys by slot
    Cluster,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingArg {
    /// The key ends equal to the source's
    Replace,
    /// Leave the destination's key alone, and the AOF's commands on it
    Skip,
    /// Refuse the key and report it (exit 1)
    Error,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
}

/// Load RDB snapshots and AOFs into Redis, twemproxy or Redis Cluster over N pipelined connections
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
redis-migration replay -rdb dump.rdb -aof appendonly.aof -dip 10.0.0.5 -dport 6379 -client 8\n  \
redis-migration replay dump.rdb --to redis://default:secret@127.0.0.1:6380 --dry-run\n\n\
The destination is probed before anything is written (SET/DUMP/DEL of a probe key gives its \
RDB version; SELECT 0 tells Redis from twemproxy). The input is verified first (checksum, \
structure, AOF tail; --no-precheck skips it). Keys are sharded over the connections by hash \
slot, so each key's commands stay in order; AOF commands whose keys span connections run alone.\n\n\
A Redis Cluster is found from any one of its nodes (--to or -dip/-dport); -n connections go to \
each master, keys by slot. It holds db 0 only (--db-map N:0, or --db 0); AOF commands on keys \
of several slots are split by slot where that keeps their meaning (DEL, UNLINK, EXISTS, TOUCH, \
MSET) and refused up front otherwise; MULTI blocks across slots run unwrapped (counted); \
FUNCTION and SCRIPT LOAD go to every master (SCRIPT LOAD to replicas too).\n\n\
The password is taken from --to, -dauth, --target-password-file or \
REDISMIGRATION_TARGET_PASSWORD, in that order, and never printed.\n\n\
Exit status: 0 everything applied; 1 the replay ran to its end but the destination rejected \
commands or keys were refused (see the report); 2 it could not be done.")]
pub struct Args {
    #[command(flatten)]
    pub input: super::InputArgs,
    #[command(flatten)]
    pub dest: DestArgs,
    /// Keep the resume point in FILE while replaying; when FILE exists, resume from it
    /// (it is refused for other inputs or options, and removed when the replay completes)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// How often the checkpoint moves, in ms (tests move it often)
    #[arg(long, value_name = "MS", default_value_t = 1000, hide = true)]
    pub checkpoint_every_ms: u64,
    /// Skip verifying the input before the first write
    #[arg(long)]
    pub no_precheck: bool,
    /// Report what would be created, replaced, skipped or refused; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Format of the final report (json goes to stdout)
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// No progress and no report unless something went wrong
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub filter: super::FilterArgs,
    #[command(flatten)]
    pub threads: super::ThreadArgs,
    #[command(flatten)]
    pub translate: TranslateArgs,
}

/// Where the data goes and how it is sent: `replay`'s and `migrate`'s destination.
#[derive(clap::Args, Debug)]
pub struct DestArgs {
    /// Destination URL: redis://USER:PASSWORD@HOST:PORT/DB, all but HOST optional (DB: where
    /// source db 0 goes); rediss:// for TLS
    #[arg(long, value_name = "URL", help_heading = "Destination")]
    pub to: Option<String>,
    /// Destination host (the original tool's -dip)
    #[arg(long = "dip", value_name = "HOST", default_value = "127.0.0.1", help_heading = "Destination")]
    pub dip: String,
    /// Destination port (the original tool's -dport)
    #[arg(long = "dport", value_name = "PORT", default_value_t = 6379, help_heading = "Destination")]
    pub dport: u16,
    /// Destination password (the original tool's -dauth)
    #[arg(long = "dauth", value_name = "PASSWORD", hide_default_value = true, help_heading = "Destination")]
    pub dauth: Option<String>,
    /// ACL user name for AUTH
    #[arg(long, value_name = "USER", help_heading = "Destination")]
    pub user: Option<String>,
    /// Read the destination password from this file (first line)
    #[arg(long, value_name = "FILE", help_heading = "Destination")]
    pub target_password_file: Option<PathBuf>,
    /// What the destination is
    #[arg(long, value_enum, default_value = "auto", help_heading = "Destination")]
    pub dest_kind: KindArg,
    /// Connect with TLS (as rediss:// does)
    #[arg(long, help_heading = "TLS")]
    pub tls: bool,
    /// CA certificates (PEM) to check the destination's certificate with [default: Mozilla's roots]
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for a server with tls-auth-clients
    #[arg(long, value_name = "FILE", requires = "tls_key", help_heading = "TLS")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert", help_heading = "TLS")]
    pub tls_key: Option<PathBuf>,
    /// The name the destination's certificate must carry [default: the host]
    #[arg(long, value_name = "NAME", help_heading = "TLS")]
    pub tls_server_name: Option<String>,
    /// Accept any certificate (encrypted, not authenticated): only when you must
    #[arg(long, help_heading = "TLS")]
    pub insecure: bool,
    /// Connections to the destination (the original tool's -client) [default: 1 to Redis,
    /// 4 to twemproxy, 1 to each master of a cluster]
    #[arg(short = 'n', long = "connections", visible_alias = "client", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024), help_heading = "Destination")]
    pub connections: Option<u16>,
    /// Most commands sent and not yet answered, per connection [default: 5000 to Redis,
    /// 1000 to twemproxy]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Destination")]
    pub pipeline: Option<u64>,
    /// Keep trying a lost connection this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 60, help_heading = "Destination")]
    pub retry_for: u64,
    /// Seconds to wait to connect, and for the destination to take or answer commands;
    /// longer is a lost connection (healed as one). 0: wait as long as it takes
    #[arg(long, value_name = "SECS", default_value_t = 60, help_heading = "Destination")]
    pub timeout: u64,
    /// Send source db SRC to destination db DST (repeat or comma-separate); twemproxy and
    /// Redis Cluster have only db 0
    #[arg(long, value_name = "SRC:DST", value_delimiter = ',')]
    pub db_map: Vec<String>,
    /// What to do with keys the destination already has
    #[arg(long, value_enum, default_value = "replace")]
    pub on_existing: ExistingArg,
    /// Send the AOF's FLUSHALL / FLUSHDB / SWAPDB (refused by default)
    #[arg(long)]
    pub allow_flush: bool,
}

pub fn parse_db_map(items: &[String]) -> anyhow::Result<BTreeMap<u64, u64>> {
    let mut map = BTreeMap::new();
    for it in items {
        let (a, b) = it
            .split_once(':')
            .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("--db-map {it:?}: expected SRC:DST, like 3:0"))?;
        if map.insert(a, b).is_some() {
            anyhow::bail!("--db-map maps db {a} twice");
        }
    }
    Ok(map)
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    let mut cfg = config(&args.dest, &args.filter, &args.threads, &args.translate)?;
    cfg.precheck = !args.no_precheck;
    cfg.dry_run = args.dry_run;
    cfg.progress = !args.quiet && std::io::stderr().is_terminal();
    cfg.checkpoint = args.checkpoint.clone();
    cfg.checkpoint_every = Duration::from_millis(args.checkpoint_every_ms);

    let inputs = crate::input::Inputs::open(&args.input.spec())?;
    let report = replay::run(&cfg, &inputs).map_err(|e| anyhow::anyhow!("{e}"))?;
    let code = report.exit_code();
    match args.format {
        ReportFormat::Json => println!("{}", report.json()),
        ReportFormat::Text if !args.quiet || code != 0 => eprintln!("{}", report.text()),
        ReportFormat::Text => {}
    }
    Ok(code)
}

/// The replay's configuration from the destination, filter, thread and translation
/// arguments (precheck on, no dry run, no progress, no checkpoint: the caller decides).
pub fn config(
    dest: &DestArgs,
    filter: &super::FilterArgs,
    threads: &super::ThreadArgs,
    translate: &TranslateArgs,
) -> anyhow::Result<replay::Config> {
    let args = dest;
    let mut db_map = parse_db_map(&args.db_map)?;
    let mut endpoint =
        Endpoint { host: args.dip.clone(), port: args.dport, user: args.user.clone(), password: None, tls: None };
    let mut password = None;
    let mut tls = args.tls;
    if let Some(to) = &args.to {
        let url = parse_url(to)?;
        tls |= url.tls;
        endpoint.host = url.host;
        endpoint.port = url.port.unwrap_or(6379);
        if url.user.is_some() {
            endpoint.user = url.user;
        }
        password = url.password;
        if let Some(db) = url.db {
            db_map.entry(0).or_insert(db);
        }
    }
    if password.is_none() {
        password = args.dauth.clone();
    }
    if password.is_none() {
        if let Some(f) = &args.target_password_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("--target-password-file {}: {e}", display_name(f)))?;
            password = Some(text.lines().next().unwrap_or("").to_string());
        }
    }
    if password.is_none() {
        password = std::env::var("REDISMIGRATION_TARGET_PASSWORD").ok().filter(|p| !p.is_empty());
    }
    endpoint.password = password;
    if tls {
        let opts = crate::replay::tls::TlsOptions {
            ca: args.tls_ca.clone(),
            cert: args.tls_cert.clone(),
            key: args.tls_key.clone(),
            server_name: args.tls_server_name.clone(),
            insecure: args.insecure,
        };
        endpoint.tls =
            Some(crate::replay::tls::Tls::new(&opts, &endpoint.host).map_err(|e| anyhow::anyhow!("TLS: {e}"))?);
    } else if args.tls_ca.is_some() || args.tls_cert.is_some() || args.insecure {
        anyhow::bail!("--tls-ca, --tls-cert and --insecure need TLS: use rediss:// or --tls");
    }

    let mut filter_cfg = filter.to_filter()?;
    let tcfg = translate.to_config(filter_cfg.keep_expired, filter_cfg.now_ms)?;
    filter_cfg.keep_expired = true;
    let mode = match translate.mode {
        None | Some(ModeArg::Auto) => None,
        Some(ModeArg::Commands) => Some(Mode::Commands),
        Some(ModeArg::Restore) => Some(Mode::Restore),
    };
    let cfg = replay::Config {
        endpoint,
        connections: args.connections.map(usize::from),
        window: args.pipeline.map(|p| p as usize),
        window_bytes: 32 << 20,
        kind: match args.dest_kind {
            KindArg::Auto => None,
            KindArg::Standalone => Some(DestKind::Standalone),
            KindArg::Twemproxy => Some(DestKind::Twemproxy),
            KindArg::Cluster => Some(DestKind::Cluster),
        },
        target_version: translate.target()?,
        mode,
        translate: tcfg,
        filter: filter_cfg,
        plan: threads.plan(),
        db_map,
        on_existing: match args.on_existing {
            ExistingArg::Replace => OnExisting::Replace,
            ExistingArg::Skip => OnExisting::Skip,
            ExistingArg::Error => OnExisting::Error,
        },
        allow_flush: args.allow_flush,
        precheck: true,
        dry_run: false,
        retry_for: Duration::from_secs(args.retry_for),
        timeout: Duration::from_secs(args.timeout),
        progress: false,
        checkpoint: None,
        checkpoint_every: Duration::from_secs(1),
        keep_marks: false,
        source_dbs: None,
    };
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_maps() {
        assert_eq!(parse_db_map(&["3:0".into(), "1:2".into()]).unwrap(), BTreeMap::from([(3, 0), (1, 2)]));
        assert!(parse_db_map(&["3".into()]).is_err());
        assert!(parse_db_map(&["3:0".into(), "3:1".into()]).is_err());
    }
}
