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

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutoverArg {
    /// CLIENT PAUSE … WRITE on the source, for --pause-timeout
    Pause,
    /// No pause: wait for a quiet period
    NoPause,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyArg {
    /// The keys the stream touched during this run, and a sample of the rest
    Touched,
    /// Every key the filters select, source against destination
    All,
    /// Nothing (the verdict says so)
    None,
}

/// Capture a live source as a replica and apply its snapshot and command stream to the destination as they arrive
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
redis-migration migrate --from redis://10.0.0.4:6379 --to redis://10.0.0.5:6379 --until-synced\n  \
redis-migration -sip 10.0.0.4 -sport 6379 -sauth secret -dip 10.0.0.9 -dport 22121 -dauth secret \
-rdb dump.rdb -aof appendonly.aof -client 100\n\n\
The second form is the original redis-migration's command line: with no subcommand, its flags run \
migrate.\n\n\
The source's snapshot is spooled to -rdb, verified, and applied through replay's engine (RESTORE \
where it can); the command stream is spooled to -aof as it arrives and applied from there once \
it is durable, so a slow destination never stalls the source (its output buffer for us stays \
empty). Without -rdb or -aof the spool goes to $XDG_STATE_HOME/redis-migration/SRC-DST/ \
(~/.local/state when unset).\n\n\
Run again, the same command continues where it stopped (a signal, a crash, a lost source or \
destination): PSYNC from the offset in FILE.state, the source answers +CONTINUE, and the spool is \
applied from where FILE.applied and the destination's keys redis-migration:applied:* say (they \
stay on the destination while the migration runs or is stopped). Nothing is applied twice, \
nothing skipped. A source that cannot continue (its backlog overrun, a restart) stops the run \
with exit 2; --resync then takes a new snapshot.\n\n\
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
    /// Spool the snapshot to FILE (the original tool's -rdb) [default: dump.rdb in the
    /// state directory]
    #[arg(long = "rdb", value_name = "FILE", help_heading = "Spool")]
    pub rdb: Option<PathBuf>,
    /// Spool the command stream to FILE, with the capture's state in FILE.state and what
    /// was applied in FILE.applied (the original tool's -aof) [default: appendonly.aof in
    /// the state directory]
    #[arg(long = "aof", value_name = "FILE", help_heading = "Spool")]
    pub aof: Option<PathBuf>,
    /// Keep the capture's state in FILE and what was applied in FILE.applied [default: beside
    /// the -aof, as FILE.state and FILE.applied]
    #[arg(long, value_name = "FILE", help_heading = "Spool")]
    pub state: Option<PathBuf>,
    /// With no -aof: free the applied part of the spool each time this many more bytes are
    /// applied (tests make it small)
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, hide = true)]
    pub trim_every: u64,
    /// With no -aof: keep the whole spool (by default its applied part is freed as the
    /// migration goes; a file named by -aof is always kept whole)
    #[arg(long, help_heading = "Spool")]
    pub keep_spool: bool,
    /// Take a new snapshot even where the spool's state could continue
    #[arg(long)]
    pub resync: bool,
    /// Stop once the snapshot is applied and the lag is zero
    #[arg(long)]
    pub until_synced: bool,
    /// Stop after this many seconds
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Once the lag is small: pause the source's writes (CLIENT PAUSE … WRITE, 6.2+), apply
    /// everything to the offset read after the pause, verify, and print the verdict: go
    /// (exit 0) or no-go (exit 1, the source unpaused). no-pause: wait for a quiet period
    /// (--quiet-ms of zero lag) instead
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "pause", value_name = "HOW",
          help_heading = "Cutover")]
    pub cutover: Option<CutoverArg>,
    /// Pause once the lag is at most this many bytes
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, help_heading = "Cutover")]
    pub cutover_lag: u64,
    /// The pause lifts by itself after this many ms (also if the tool dies)
    #[arg(long, value_name = "MS", default_value_t = 30_000, help_heading = "Cutover")]
    pub pause_timeout: u64,
    /// --cutover=no-pause: the lag must stay zero this long
    #[arg(long, value_name = "MS", default_value_t = 2000, help_heading = "Cutover")]
    pub quiet_ms: u64,
    /// What is compared before the verdict: the keys the stream touched during this run and
    /// --verify-sample keys more, every key (the diff engine, live to live), or nothing
    #[arg(long, value_enum, default_value = "touched", help_heading = "Cutover")]
    pub verify: VerifyArg,
    /// --verify touched: keys picked at random on the source (RANDOMKEY) compared too
    #[arg(long, value_name = "N", default_value_t = 1000, help_heading = "Cutover")]
    pub verify_sample: usize,
    /// Just before the pause lifts, disconnect the source's normal clients (CLIENT KILL TYPE
    /// normal SKIPME yes), so that nothing more is written there
    #[arg(long, help_heading = "Cutover")]
    pub kill_clients: bool,
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
    if !args.filter.types.is_empty() {
        anyhow::bail!(
            "--type selects keys of snapshots; the command stream can be selected by --db, --match and --regex"
        );
    }
    let source = args.source.endpoint()?;
    if args.cutover.is_some() && args.verify != VerifyArg::None && !args.dest.db_map.is_empty() {
        anyhow::bail!("--cutover verifies db by db: with --db-map use --verify none (or diff the dbs yourself)");
    }
    if args.cutover.is_some() && args.until_synced {
        anyhow::bail!("--cutover and --until-synced both decide when to stop: give one");
    }
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

    let dir = spool_dir(&source, &replay.endpoint);
    let rdb = args.rdb.clone().unwrap_or_else(|| dir.join("dump.rdb"));
    let aof = args.aof.clone().unwrap_or_else(|| dir.join("appendonly.aof"));
    if args.rdb.is_none() || args.aof.is_none() {
        std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    }
    let cutover = args.cutover;
    let cutover = cutover.map(|how| (how, replay.filter.clone(), replay.plan, replay.endpoint.clone()));
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
            cluster: false,
            resume: true,
            state: args.state.clone(),
            sync_every: Duration::from_millis(50),
            follow: None,
        },
        replay,
        until_synced: args.until_synced,
        resync: args.resync,
        // The tool's own spool is freed as it is applied; a file named by -aof is the user's.
        trim_every: (args.aof.is_none() && !args.keep_spool).then_some(args.trim_every.max(1 << 12)),
        cutover: cutover.map(|(how, filter, plan, destination)| migrate::Cutover {
            pause: how == CutoverArg::Pause,
            lag_bytes: args.cutover_lag,
            pause_ms: args.pause_timeout.max(100),
            quiet_ms: args.quiet_ms,
            verify: match args.verify {
                VerifyArg::All => migrate::Verify::All,
                VerifyArg::Touched => migrate::Verify::Touched { sample: args.verify_sample },
                VerifyArg::None => migrate::Verify::None,
            },
            kill_clients: args.kill_clients,
            json: args.format == FormatArg::Json,
            filter,
            plan,
            destination,
        }),
        progress: !args.quiet,
    };
    let report = match migrate::run(&cfg) {
        Ok(r) => r,
        Err(migrate::Error::Capture(e @ CaptureError::Stopped)) => {
            eprintln!("migrate: {e}; nothing was written to the destination");
            return Ok(super::EXIT_PROBLEMS);
        }
        Err(e @ migrate::Error::SnapshotCut { cause: CaptureError::Stopped, .. }) => {
            eprintln!("migrate: {e}");
            return Ok(super::EXIT_PROBLEMS);
        }
        Err(e) => return Err(e.into()),
    };
    let code = report.iter().map(|r| r.exit_code()).max().unwrap_or(0);
    match (args.format, report.as_slice()) {
        (FormatArg::Json, [one]) => println!("{}", one.json()),
        (FormatArg::Json, all) => {
            let shards: Vec<serde_json::Value> = all.iter().map(|r| r.json()).collect();
            let verdict = all.first().and_then(|r| r.verdict.clone());
            println!("{}", serde_json::json!({"shards": shards, "verdict": verdict, "exit_code": code}));
        }
        (FormatArg::Text, all) if !args.quiet || code != 0 => {
            for r in all {
                if let Some(name) = &r.shard {
                    eprintln!("== {name}");
                }
                eprintln!("{}", r.text());
            }
        }
        (FormatArg::Text, _) => {}
    }
    Ok(code)
}

/// The spool's directory when -rdb or -aof is not given:
/// `$XDG_STATE_HOME/redis-migration/<source host_port>-<destination host_port>`
/// (`~/.local/state` when the variable is unset).
fn spool_dir(source: &crate::net::Endpoint, dest: &crate::net::Endpoint) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("state")))
        .unwrap_or_else(std::env::temp_dir);
    let name = |e: &crate::net::Endpoint| format!("{}_{}", e.host.replace(['/', ':'], "_"), e.port);
    base.join("redis-migration").join(format!("{}-{}", name(source), name(dest)))
}
