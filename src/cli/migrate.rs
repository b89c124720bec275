//! `redis-migration migrate --from redis://SOURCE --to redis://DESTINATION` (or the
//! original tool's `-sip -sport -sauth -dip -dport -dauth -rdb -aof -client`, with no
//! subcommand): capture the source as a replica and apply what arrives (see
//! [`crate::migrate`]).

use std::path::PathBuf;
use std::time::Duration;

use super::capture::{FormatArg, SourceArgs};
use super::replay::DestArgs;
use crate::migrate::{self, Config};
use crate::replica::{self, CaptureError};

/// Capture a live source as a replica and apply its snapshot and command stream to the destination as they arrive
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
redis-migration migrate --from redis://10.0.0.4:6379 --to redis://10.0.0.5:6379 --until-synced\n  \
redis-migration -sip 10.0.0.4 -sport 6379 -sauth secret -dip 10.0.0.9 -dport 22121 -dauth secret \
-rdb dump.rdb -aof appendonly.aof -client 100\n\n\
The second form is the original redis-migration's command line: with no subcommand, its flags run \
migrate.\n\n\
The source's snapshot is spooled to -rdb, verified, and applied through replay's engine (RESTORE \
where it can); the command stream is spooled to -aof as it arrives and applied from there, so a \
slow destination never stalls the source (its output buffer for us stays empty). Without -rdb or \
-aof the spool goes to a temporary directory, removed at the end (--keep-spool keeps it).\n\n\
It follows the source until SIGTERM or SIGINT (Ctrl-C), --duration, or with --until-synced until \
the snapshot is applied and nothing received is left to apply (the source's offset reached, where \
it allows INFO). Then what is spooled is applied and a report printed.\n\n\
The source user needs PSYNC, REPLCONF and PING (ACL: +psync +replconf +ping). The source's \
password is taken from --from, -sauth, --source-password-file or REDISMIGRATION_SOURCE_PASSWORD; \
the destination's from --to, -dauth, --target-password-file or REDISMIGRATION_TARGET_PASSWORD. \
Neither is ever printed.\n\n\
Exit status: 0 everything received was applied; 1 the source went away, or the destination \
rejected commands (see the report); 2 it could not be done (authentication, a refused PSYNC, a \
damaged snapshot, a destination that cannot be used).")]
pub struct Args {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub dest: DestArgs,
    /// Spool the snapshot to FILE, kept (the original tool's -rdb) [default: a temporary file]
    #[arg(long = "rdb", value_name = "FILE", help_heading = "Spool")]
    pub rdb: Option<PathBuf>,
    /// Spool the command stream to FILE, kept, with its state in FILE.state (the original
    /// tool's -aof) [default: a temporary file]
    #[arg(long = "aof", value_name = "FILE", help_heading = "Spool")]
    pub aof: Option<PathBuf>,
    /// Keep the temporary spool files (their directory is printed)
    #[arg(long, help_heading = "Spool")]
    pub keep_spool: bool,
    /// Stop once the snapshot is applied and the lag is zero
    #[arg(long)]
    pub until_synced: bool,
    /// Stop after this many seconds
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Apply PUBLISH and SPUBLISH from the source (Sentinel's hellos never)
    #[arg(long)]
    pub publish: bool,
    /// The source is gone when it sends nothing for this many seconds (Redis's repl-timeout)
    #[arg(long, value_name = "SECONDS", default_value_t = 60, help_heading = "Source")]
    pub source_timeout: u64,
    /// Port announced with REPLCONF listening-port (shown in the source's INFO replication)
    #[arg(long, value_name = "PORT", default_value_t = 0, help_heading = "Source")]
    pub listening_port: u16,
    /// Format of the final report (json goes to stdout)
    #[arg(long, short = 'f', value_enum, default_value = "text")]
    pub format: FormatArg,
    /// No progress and no report unless something went wrong
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub filter: super::FilterArgs,
    #[command(flatten)]
    pub threads: super::ThreadArgs,
    #[command(flatten)]
    pub translate: super::TranslateArgs,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let source = args.source.endpoint()?;
    let mut replay = super::replay::config(&args.dest, &args.filter, &args.threads, &args.translate)?;
    // Keys of the snapshot already past their time are the source's to delete: it sends
    // the DEL (a replica keeps them too, rdb.c `rdbLoadRioWithLoadingCtx`); a RESTORE with
    // an expiry in the past leaves nothing meanwhile.
    replay.translate.keep_expired = true;
    replay.progress = !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());

    // The destination is tried before the source is asked for a snapshot: a wrong
    // password there should not cost a full synchronization.
    crate::net::Link::open(&replay.endpoint, Duration::from_secs(10).min(replay.timeout.max(Duration::from_secs(1))))
        .map_err(|e| anyhow::anyhow!("cannot use the destination {}: {e}", replay.endpoint))?;

    let mut temp = None;
    let mut spool_file = |given: &Option<PathBuf>, name: &str| -> anyhow::Result<(PathBuf, bool)> {
        if let Some(p) = given {
            return Ok((p.clone(), false));
        }
        if temp.is_none() {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!("redis-migration-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            temp = Some(dir);
        }
        Ok((temp.as_ref().map(|d| d.join(name)).unwrap_or_default(), !args.keep_spool))
    };
    let (rdb, rdb_temp) = spool_file(&args.rdb, "dump.rdb")?;
    let (aof, aof_temp) = spool_file(&args.aof, "appendonly.aof")?;
    let mut remove_at_end = Vec::new();
    if rdb_temp {
        remove_at_end.push(rdb.clone());
    }
    if aof_temp {
        remove_at_end.push(replica::spool::state_path(&aof));
        remove_at_end.push(aof.clone());
    }
    let cfg = Config {
        capture: replica::Config {
            source,
            rdb,
            aof,
            duration: args.duration.map(|s| Duration::from_secs_f64(s.max(0.0))),
            stop_after_snapshot: false,
            timeout: Duration::from_secs(args.source_timeout.max(1)),
            listening_port: args.listening_port,
            publish: args.publish,
            follow: None,
        },
        replay,
        until_synced: args.until_synced,
        remove_at_end,
        progress: !args.quiet,
    };
    let result = migrate::run(&cfg);
    if let Some(dir) = &temp {
        if args.keep_spool {
            eprintln!("migrate: the spool is in {}", dir.display());
        } else {
            let _ = std::fs::remove_dir(dir);
        }
    }
    let report = match result {
        Ok(r) => r,
        Err(migrate::Error::Capture(e @ CaptureError::Stopped)) => {
            eprintln!("migrate: {e}; nothing was written to the destination");
            return Ok(super::EXIT_PROBLEMS);
        }
        Err(e) => return Err(e.into()),
    };
    let code = report.exit_code();
    match args.format {
        FormatArg::Json => println!("{}", report.json()),
        FormatArg::Text if !args.quiet || code != 0 => eprintln!("{}", report.text()),
        FormatArg::Text => {}
    }
    Ok(code)
}
