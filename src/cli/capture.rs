//! `redis-migration capture --from redis://HOST:PORT -rdb dump.rdb -aof appendonly.aof`:
//! attach to a source as a replica and spool its snapshot and command stream to files
//! (see [`crate::replica`]).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::ValueEnum;

use crate::net::Endpoint;
use crate::replica::{self, CaptureError, Config};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatArg {
    Text,
    Json,
}

/// Attach to a source as a replica (PSYNC) and spool its snapshot to -rdb and its command stream to -aof
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  redis-migration capture --from redis://10.0.0.4:6379 -rdb dump.rdb -aof appendonly.aof\n  \
redis-migration replay -rdb dump.rdb -aof appendonly.aof --to redis://10.0.0.5:6379\n\n\
The capture runs until SIGTERM or SIGINT (Ctrl-C), --duration or --stop-after-snapshot: then the \
-aof ends after the last complete command (never inside a MULTI block), the state file <aof>.state \
(replication id, offset, db) is written, a report is printed and the exit status is 0. It is 1 when \
the source went away after the snapshot (the files hold everything before), 2 when nothing could be \
captured (a wrong password, a refused PSYNC).\n\
The source user needs PSYNC, REPLCONF and PING (ACL: +psync +replconf +ping). \
The password is taken from --from, -sauth, --source-password-file or \
REDISMIGRATION_SOURCE_PASSWORD, in that order, and never printed.\n\
From sources before 7.0 (snapshots of RDB version 9 and older), relative expirations (EXPIRE, \
PEXPIRE, SETEX, PSETEX, SET and GETEX with EX or PX) are made absolute (PEXPIREAT, PXAT) by this \
host's clock as they arrive."
)]
pub struct Args {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Where the snapshot goes (the original tool's -rdb)
    #[arg(long = "rdb", value_name = "FILE", default_value = "dump.rdb")]
    pub rdb: PathBuf,
    /// Where the command stream goes (the original tool's -aof); its state file is FILE.state
    #[arg(long = "aof", value_name = "FILE", default_value = "appendonly.aof")]
    pub aof: PathBuf,
    /// Stop after this many seconds
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Stop once the snapshot is spooled (the -aof stays empty)
    #[arg(long)]
    pub stop_after_snapshot: bool,
    /// Keep the state (replication id, offset, db, log length) in FILE [default: the -aof
    /// file's name with .state]
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Continue where the -aof's state file says (PSYNC with its replication id and offset), appending to
    /// -aof; exit 2 when the source cannot continue from there
    #[arg(long)]
    pub resume: bool,
    /// The source is gone when it sends nothing for this many seconds (Redis's repl-timeout)
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
    /// Port announced with REPLCONF listening-port (shown in the source's INFO replication)
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub listening_port: u16,
    /// Report format
    #[arg(long, short = 'f', value_enum, default_value = "text")]
    pub format: FormatArg,
    /// No progress on stderr
    #[arg(short, long)]
    pub quiet: bool,
}

/// The source of `capture` and `migrate`: a URL or the seed's flags.
#[derive(clap::Args, Debug)]
pub struct SourceArgs {
    /// Source URL: redis://USER:PASSWORD@HOST:PORT, all but HOST optional (rediss:// for TLS)
    #[arg(long, value_name = "URL", help_heading = "Source")]
    pub from: Option<String>,
    /// Source host (the original tool's -sip)
    #[arg(long = "sip", value_name = "HOST", default_value = "127.0.0.1", help_heading = "Source")]
    pub sip: String,
    /// Source port (the original tool's -sport)
    #[arg(long = "sport", value_name = "PORT", default_value_t = 6379, help_heading = "Source")]
    pub sport: u16,
    /// Source password (the original tool's -sauth)
    #[arg(long = "sauth", value_name = "PASSWORD", hide_default_value = true, help_heading = "Source")]
    pub sauth: Option<String>,
    /// ACL user for the source
    #[arg(long = "source-user", id = "source_user", value_name = "USER", help_heading = "Source")]
    pub user: Option<String>,
    /// Read the source password from this file (first line)
    #[arg(long, value_name = "FILE", help_heading = "Source")]
    pub source_password_file: Option<PathBuf>,
    /// CA certificate (PEM) for a rediss:// source [default: the Mozilla roots]
    #[arg(long = "source-tls-ca", id = "source_tls_ca", value_name = "FILE", help_heading = "Source TLS")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for a source with tls-auth-clients
    #[arg(
        long = "source-tls-cert",
        id = "source_tls_cert",
        value_name = "FILE",
        requires = "source_tls_key",
        help_heading = "Source TLS"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM)
    #[arg(
        long = "source-tls-key",
        id = "source_tls_key",
        value_name = "FILE",
        requires = "source_tls_cert",
        help_heading = "Source TLS"
    )]
    pub tls_key: Option<PathBuf>,
    /// Do not verify the source's certificate
    #[arg(long = "source-insecure", id = "source_insecure", help_heading = "Source TLS")]
    pub insecure: bool,
}

impl SourceArgs {
    /// The source as the library takes it (the password from the URL, -sauth, the
    /// password file or the environment, in that order).
    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        endpoint(self)
    }
}

fn endpoint(args: &SourceArgs) -> anyhow::Result<Endpoint> {
    let mut ep =
        Endpoint { host: args.sip.clone(), port: args.sport, user: args.user.clone(), password: None, tls: None };
    let mut tls = false;
    if let Some(from) = &args.from {
        let url = crate::net::parse_url(from)?;
        tls = url.tls;
        ep.host = url.host;
        ep.port = url.port.unwrap_or(6379);
        if url.user.is_some() {
            ep.user = url.user;
        }
        ep.password = url.password;
    }
    if ep.password.is_none() {
        ep.password = args.sauth.clone();
    }
    if ep.password.is_none() {
        if let Some(f) = &args.source_password_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("--source-password-file {}: {e}", f.display()))?;
            ep.password = Some(text.lines().next().unwrap_or("").to_string());
        }
    }
    if ep.password.is_none() {
        ep.password = std::env::var("REDISMIGRATION_SOURCE_PASSWORD").ok().filter(|p| !p.is_empty());
    }
    if tls {
        let opts = crate::net::tls::TlsOptions {
            ca: args.tls_ca.clone(),
            cert: args.tls_cert.clone(),
            key: args.tls_key.clone(),
            server_name: None,
            insecure: args.insecure,
        };
        ep.tls = Some(crate::net::tls::Tls::new(&opts, &ep.host).map_err(|e| anyhow::anyhow!("TLS: {e}"))?);
    } else if args.tls_ca.is_some() || args.tls_cert.is_some() || args.insecure {
        anyhow::bail!("--source-tls-ca, --source-tls-cert and --source-insecure need a rediss:// source");
    }
    Ok(ep)
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let cfg = Config {
        source: args.source.endpoint()?,
        rdb: args.rdb.clone(),
        aof: args.aof.clone(),
        duration: args.duration.map(|s| Duration::from_secs_f64(s.max(0.0))),
        stop_after_snapshot: args.stop_after_snapshot,
        timeout: Duration::from_secs(args.timeout.max(1)),
        listening_port: args.listening_port,
        publish: false,
        cluster: false,
        resume: args.resume,
        state: args.state.clone(),
        sync_every: Duration::from_secs(1),
        follow: None,
    };
    let quiet = args.quiet;
    // A cluster: one capture per master, each to its own pair of files.
    let shards: Vec<(Option<String>, Config)> =
        match replica::cluster_of(&cfg.source, Duration::from_secs(10)).map_err(anyhow::Error::msg)? {
            Some(t) => (0..t.masters.len())
                .map(|m| {
                    let name = format!("slot{}", t.first_slot(m).unwrap_or(0));
                    let mut c = cfg.clone();
                    c.source = t.masters[m].node.endpoint(&cfg.source);
                    c.rdb = replica::tagged(&cfg.rdb, &name);
                    c.aof = replica::tagged(&cfg.aof, &name);
                    c.state = cfg.state.as_ref().map(|p| replica::tagged(p, &name));
                    c.cluster = true;
                    (Some(name), c)
                })
                .collect(),
            None => vec![(None, cfg.clone())],
        };
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = shards
            .iter()
            .map(|(name, c)| {
                s.spawn(move || {
                    let prefix = name.as_ref().map_or("capture".to_string(), |n| format!("capture[{n}]"));
                    let mut progress = |msg: &str| {
                        if !quiet {
                            eprintln!("{prefix}: {msg}");
                        }
                    };
                    replica::capture(c, &AtomicBool::new(false), &mut progress)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Err(CaptureError::Stopped))).collect()
    });
    if shards.len() > 1 {
        let mut all = Vec::new();
        let mut code = super::EXIT_OK;
        for ((name, c), r) in shards.iter().zip(results) {
            match r {
                Ok(r) => {
                    if r.failed {
                        code = code.max(super::EXIT_PROBLEMS);
                    }
                    let mut v = r.to_json();
                    v["shard"] = name.clone().into();
                    v["source"] = c.source.to_string().into();
                    v["rdb"] = c.rdb.display().to_string().into();
                    v["aof"] = c.aof.display().to_string().into();
                    all.push(v);
                }
                Err(e) => {
                    eprintln!("capture[{}]: {e}", name.as_deref().unwrap_or(""));
                    code = super::EXIT_FAILED;
                }
            }
        }
        match args.format {
            FormatArg::Json => println!("{}", serde_json::json!({"shards": all, "exit_code": code})),
            FormatArg::Text => {
                for v in &all {
                    println!(
                        "{} ({}): snapshot {} bytes in {}, {} commands to offset {} in {}; stopped: {}",
                        v["shard"].as_str().unwrap_or(""),
                        v["source"].as_str().unwrap_or(""),
                        v["snapshot_bytes"],
                        v["rdb"].as_str().unwrap_or(""),
                        v["commands"],
                        v["offset"],
                        v["aof"].as_str().unwrap_or(""),
                        v["stopped"].as_str().unwrap_or("")
                    );
                }
            }
        }
        return Ok(code);
    }
    let report = match results.into_iter().next().unwrap_or(Err(CaptureError::Stopped)) {
        Ok(r) => r,
        Err(e @ CaptureError::Stopped) => {
            eprintln!("capture: {e}: {} is not a whole snapshot", cfg.rdb.display());
            return Ok(super::EXIT_PROBLEMS);
        }
        Err(e) => return Err(e.into()),
    };
    match args.format {
        FormatArg::Json => println!("{}", report.to_json()),
        FormatArg::Text => {
            let s = &report.state;
            println!("source:          {}", cfg.source);
            println!("replication id:  {}", s.replid);
            println!(
                "snapshot:        {} bytes ({}, RDB version {}) at offset {} in {}",
                report.snapshot_bytes,
                report.framing,
                report.rdb_version.map_or("?".to_string(), |v| v.to_string()),
                s.snapshot_offset,
                cfg.rdb.display()
            );
            println!(
                "stream:          {} commands, {} bytes in {}, to offset {} (db {})",
                report.commands,
                s.aof_bytes,
                cfg.aof.display(),
                s.offset,
                s.db
            );
            if report.expiries_made_absolute > 0 {
                println!("expiries:        {} relative expirations made absolute", report.expiries_made_absolute);
            }
            println!("stopped:         {}", report.stopped);
        }
    }
    Ok(if report.failed { super::EXIT_PROBLEMS } else { super::EXIT_OK })
}
