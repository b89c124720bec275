//! `--cutover`: the last minute of a migration. One coordinator for every source (one
//! server, or each master of a cluster): it waits until every follower's lag is small,
//! pauses every source's writes (`CLIENT PAUSE <ms> WRITE`, lifting by itself if we
//! die), reads each source's offset after the pause and hands it to its follower as the
//! target, waits until every follower has applied its target and removed its marks,
//! verifies the destination against the source with the diff engine, and prints one
//! verdict: go (the followers go on until the pause has lifted and a second passed) or
//! no-go (every source unpaused first). Never `FAILOVER` or `REPLICAOF`, never a pause
//! without a timeout.
//!
//! The followers and the coordinator meet on a [`Board`]: each follower publishes its lag
//! and whether it is quiet, reads its target, says when it is drained, and reads the
//! verdict.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Cutover, Verify};
use crate::net::{Answer, Endpoint, Link};

/// One source's part of the board.
#[derive(Debug)]
pub struct Lane {
    /// The source now (its follower updates it after a failover).
    source: Mutex<Endpoint>,
    /// Bytes behind the source (received but not applied, and not yet received); MAX
    /// until known.
    pub lag: AtomicU64,
    /// Everything received is applied and the source's offset reached.
    pub quiet: AtomicBool,
    /// The offset to apply, read after the pause (valid once `Board::targets_set`).
    pub target: AtomicU64,
    /// The target is applied and the follower's marks are removed.
    pub drained: AtomicBool,
    /// `--verify touched`: the keys this source's stream touched (set once drained);
    /// `None`: too many, or unknown.
    pub touched: Mutex<Option<Touched>>,
}

/// Keys a stream touched: (db, key).
pub type Touched = std::collections::HashSet<(u64, Vec<u8>)>;

/// Most keys a follower notes for `--verify touched` (about 100 bytes each); past it every
/// key is compared.
pub const MAX_TOUCHED: usize = 500_000;

impl Lane {
    pub fn source(&self) -> Endpoint {
        self.source.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_source(&self, to: &Endpoint) {
        let mut s = self.source.lock().unwrap_or_else(|p| p.into_inner());
        if s.host != to.host || s.port != to.port {
            *s = to.clone();
        }
    }
}

/// The verdict, once known.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub go: bool,
    /// Go with a pause: when it lifts (the followers go on until a second after).
    pub lifts_at: Option<Instant>,
    /// As printed.
    pub json: serde_json::Value,
}

/// Where the coordinator and the followers meet.
#[derive(Debug)]
pub struct Board {
    pub cfg: Cutover,
    pub lanes: Vec<Lane>,
    pub targets_set: AtomicBool,
    pub verdict: Mutex<Option<Verdict>>,
    /// The cutover could not be done (the message); the followers stop.
    pub error: Mutex<Option<String>>,
    /// Every follower has stopped: the coordinator gives up.
    pub gone: AtomicBool,
}

impl Board {
    pub fn new(cfg: Cutover, sources: Vec<Endpoint>) -> Board {
        Board {
            cfg,
            lanes: sources
                .into_iter()
                .map(|source| Lane {
                    source: Mutex::new(source),
                    lag: AtomicU64::new(u64::MAX),
                    quiet: AtomicBool::new(false),
                    target: AtomicU64::new(0),
                    drained: AtomicBool::new(false),
                    touched: Mutex::new(None),
                })
                .collect(),
            targets_set: AtomicBool::new(false),
            verdict: Mutex::new(None),
            error: Mutex::new(None),
            gone: AtomicBool::new(false),
        }
    }

    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn fail(&self, msg: String) {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(msg);
    }
}

fn info_field(link: &mut Link, section: &[u8], field: &str) -> Result<Option<String>, String> {
    match link.call(&[b"INFO", section]) {
        Ok(Answer::Bulk(Some(t))) => Ok(String::from_utf8_lossy(&t)
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())),
        Ok(other) => Err(format!("INFO answered {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Checked before anything is written: `INFO` on every source, and for the pause a
/// version with `CLIENT PAUSE … WRITE` (6.2).
pub fn possible(cfg: &Cutover, sources: &[Endpoint]) -> Result<(), String> {
    for source in sources {
        let mut link = Link::open(source, Duration::from_secs(10)).map_err(|e| format!("--cutover: {source}: {e}"))?;
        let version = info_field(&mut link, b"server", "redis_version").map_err(|e| {
            format!("--cutover needs INFO on the source {source} (to read its offset): {e}; give the user +info")
        })?;
        link.close();
        if cfg.pause {
            let version = version.unwrap_or_default();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < (6, 2) {
                return Err(format!(
                    "the source {source} is Redis {version}: CLIENT PAUSE … WRITE needs 6.2 or later; use \
                     --cutover=no-pause (a quiet period instead of a pause)"
                ));
            }
        }
    }
    Ok(())
}

/// How often the coordinator looks.
const TICK: Duration = Duration::from_millis(20);

/// The coordinator (see the module's documentation), until a verdict or an error;
/// `stopped` says the migration is ending anyway (a signal, a failed follower).
pub fn coordinate(board: &Board, stopped: &dyn Fn() -> bool, progress: bool) {
    if let Err(e) = run(board, stopped, progress) {
        board.fail(e);
    }
}

fn run(board: &Board, stopped: &dyn Fn() -> bool, progress: bool) -> Result<(), String> {
    let c = &board.cfg;
    // 1. Every follower close enough (or quiet long enough, without a pause).
    let mut quiet_since: Option<Instant> = None;
    loop {
        if stopped() || board.gone.load(Ordering::Acquire) {
            return Ok(());
        }
        let ready = if c.pause {
            board.lanes.iter().all(|l| l.lag.load(Ordering::Acquire) <= c.lag_bytes)
        } else if board.lanes.iter().all(|l| l.quiet.load(Ordering::Acquire)) {
            quiet_since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_millis(c.quiet_ms)
        } else {
            quiet_since = None;
            false
        };
        if ready {
            break;
        }
        std::thread::sleep(TICK);
    }
    // 2. Pause every source, then read each one's offset: later ones move with PINGs
    // alone (and a paused master sends none).
    let mut links = Vec::new();
    for lane in &board.lanes {
        links.push(Link::open(&lane.source(), Duration::from_secs(10)).map_err(|e| format!("--cutover: {e}"))?);
    }
    let unpause = |links: &mut [Link]| {
        for l in links.iter_mut() {
            let _ = l.call(&[b"CLIENT", b"UNPAUSE"]);
        }
    };
    let mut paused_at = None;
    if c.pause {
        let ms = c.pause_ms.to_string();
        for i in 0..links.len() {
            let refused = match links[i].call(&[b"CLIENT", b"PAUSE", ms.as_bytes(), b"WRITE"]) {
                Ok(Answer::Simple(_)) => None,
                Ok(Answer::Error(e)) => Some(e),
                Ok(other) => Some(format!("{other:?}")),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = refused {
                unpause(&mut links[..i]);
                return Err(format!(
                    "the source {} refused CLIENT PAUSE ({e}): give the user +client|pause, or use \
                     --cutover=no-pause (a quiet period instead of a pause); nothing is paused",
                    board.lanes[i].source()
                ));
            }
        }
        paused_at = Some(Instant::now());
    }
    for (lane, link) in board.lanes.iter().zip(links.iter_mut()) {
        let offset =
            info_field(link, b"replication", "master_repl_offset").ok().flatten().and_then(|o| o.parse::<u64>().ok());
        let Some(offset) = offset else {
            unpause(&mut links);
            return Err(format!("--cutover: {} gave no offset (INFO replication); unpaused", lane.source()));
        };
        lane.target.store(offset, Ordering::Release);
    }
    board.targets_set.store(true, Ordering::Release);
    let targets_at = paused_at.unwrap_or_else(Instant::now);
    if progress {
        let what = if c.pause { "paused" } else { "quiet" };
        let targets: Vec<String> = board.lanes.iter().map(|l| l.target.load(Ordering::Acquire).to_string()).collect();
        eprintln!("migrate: cutover: the source's writes are {what} at offset {}; draining", targets.join(", "));
    }
    // 3. Every follower drained (its marks removed), within the pause.
    while !board.lanes.iter().all(|l| l.drained.load(Ordering::Acquire)) {
        if stopped() || board.gone.load(Ordering::Acquire) {
            unpause(&mut links);
            return Err("--cutover: the migration stopped while draining; unpaused".into());
        }
        // Without a pause the wait is bounded the same way (the source stayed quiet).
        if targets_at.elapsed() >= Duration::from_millis(c.pause_ms) {
            return Err(format!(
                "--cutover: the offsets read at the cutover were not applied within {} ms (any pause has \
                 lifted); the migration stopped: run again to try once more",
                c.pause_ms
            ));
        }
        std::thread::sleep(TICK);
    }
    // 4. Verify, and say it at once.
    let checked = verify(c, board);
    if checked.is_err() {
        unpause(&mut links);
    }
    let (summary, differing, verified) = checked?;
    // A verification that outlived the pause proves nothing: writes went on meanwhile.
    let outlived = paused_at.is_some_and(|p| p.elapsed() >= Duration::from_millis(c.pause_ms));
    let go = summary.as_ref().is_none_or(|s| s.differences() == 0) && !outlived;
    if !go {
        unpause(&mut links);
    }
    let remaining = paused_at.map(|p| (c.pause_ms as i64 - p.elapsed().as_millis() as i64).max(0));
    let offsets: Vec<u64> = board.lanes.iter().map(|l| l.target.load(Ordering::Acquire)).collect();
    let json = serde_json::json!({
        "verdict": if go { "go" } else { "no-go" },
        "offset": if offsets.len() == 1 { serde_json::json!(offsets[0]) } else { serde_json::json!(offsets) },
        "paused": paused_at.is_some(),
        "pause_remaining_ms": remaining,
        "verified": verified,
        "diff": summary.as_ref().map(|s| s.to_json()),
        "differing": differing,
        "why": if outlived {
            serde_json::json!(format!(
                "the pause ({} ms) lifted before the verification ended: use a longer --pause-timeout, or --verify \
                 touched or none",
                c.pause_ms
            ))
        } else {
            serde_json::Value::Null
        },
    });
    print_verdict(&json, c.json);
    let lifts_at = paused_at.filter(|_| go).map(|p| p + Duration::from_millis(c.pause_ms));
    *board.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(Verdict { go, lifts_at, json });
    // 5. --kill-clients: just before the pause lifts, on every source.
    if let (Some(lifts_at), true) = (lifts_at, c.kill_clients) {
        let at = lifts_at.checked_sub(Duration::from_millis(300)).unwrap_or(lifts_at);
        while Instant::now() < at {
            std::thread::sleep(TICK);
        }
        let mut killed = 0;
        for l in &mut links {
            if let Ok(Answer::Int(n)) = l.call(&[b"CLIENT", b"KILL", b"TYPE", b"normal", b"SKIPME", b"yes"]) {
                killed += n;
            }
        }
        if let Some(v) = board.verdict.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            v.json["clients_killed"] = killed.into();
        }
    }
    Ok(())
}

/// The destination against the source (a server, or a whole cluster from one of its
/// nodes), live ↔ live, with the diff engine: every key, or the keys the followers saw
/// touched plus a sample. The summary, the first differing keys, and what was verified
/// (`all`, `touched`, `none`).
#[allow(clippy::type_complexity)]
fn verify(c: &Cutover, board: &Board) -> Result<(Option<crate::diff::Summary>, Vec<String>, &'static str), String> {
    let sample = match c.verify {
        Verify::None => return Ok((None, Vec::new(), "none")),
        Verify::All => None,
        Verify::Touched { sample } => Some(sample),
    };
    let mut filter = c.filter.clone();
    filter.keep_expired = false;
    filter.now_ms = crate::filter::now_ms();
    let job = crate::diff::Job {
        a: crate::diff::SideSpec::Live(crate::live::LiveSpec::new(board.lanes[0].source())),
        b: crate::diff::SideSpec::Live(crate::live::LiveSpec::new(c.destination.clone())),
        filter,
        ttl_tolerance_ms: 2000,
        rules: crate::diff::digest::StreamRules { strict: false },
        rounds: 1,
        interval: Duration::from_secs(1),
        format: crate::diff::Format::Json,
        show: 0,
        patch: None,
        patch_mode: crate::diff::PatchMode::Commands,
        plan: c.plan,
        side_budget: 32 << 20,
        temp_dir: std::env::temp_dir(),
        logical: false,
    };
    // The keys touched, when every follower kept them.
    let touched: Option<Vec<(u64, Vec<u8>)>> = sample.and_then(|_| {
        let mut all = Vec::new();
        for lane in &board.lanes {
            all.extend(lane.touched.lock().unwrap_or_else(|p| p.into_inner()).take()?);
        }
        Some(all)
    });
    let err = |e: crate::diff::DiffError| format!("--cutover: verify: {e}");
    let Some(mut keys) = touched else {
        let mut out = Vec::new();
        let summary = crate::diff::run(&job, &mut out, &mut |_| {}).map_err(err)?;
        let differing = String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("key").is_some())
            .take(10)
            .map(|v| format!("{} ({})", v["key"].as_str().unwrap_or("?"), v["kind"].as_str().unwrap_or("?")))
            .collect();
        return Ok((Some(summary), differing, "all"));
    };
    // A sample of both sides: a key only the destination has is found only there. A db
    // no bigger than the sample is read whole.
    let n = sample.unwrap_or(0);
    for lane in &board.lanes {
        keys.extend(random_keys(&lane.source(), n)?);
    }
    let dest_nodes: Vec<Endpoint> = match crate::replica::cluster_of(&c.destination, Duration::from_secs(10))? {
        Some(t) => t.masters.iter().map(|m| m.node.endpoint(&c.destination)).collect(),
        None => vec![c.destination.clone()],
    };
    for node in &dest_nodes {
        keys.extend(random_keys(node, n)?);
    }
    keys.retain(|(db, k)| job.filter.accepts_db(*db) && job.filter.accepts_key(k));
    let (summary, differ) = crate::diff::compare_keys(&job, &keys).map_err(err)?;
    let differing = differ
        .iter()
        .take(10)
        .map(|(db, k, kind)| {
            let db = if *db == 0 { String::new() } else { format!("db {db}: ") };
            format!("{db}{} ({})", crate::rdb::escape_key(k), kind.name())
        })
        .collect();
    Ok((Some(summary), differing, "touched"))
}

/// About `n` keys of `source` picked at random (`RANDOMKEY`), over its dbs by their
/// sizes; every key (`SCAN`) of a db no bigger than its share. The tool's own marks are
/// left out.
fn random_keys(source: &Endpoint, n: usize) -> Result<Vec<(u64, Vec<u8>)>, String> {
    use crate::resp::reply::Reply;
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut link = Link::open(source, Duration::from_secs(10)).map_err(|e| format!("--cutover: {e}"))?;
    let dbs: Vec<(u64, u64)> = match link.call(&[b"INFO", b"keyspace"]) {
        Ok(Answer::Bulk(Some(t))) => String::from_utf8_lossy(&t)
            .lines()
            .filter_map(|l| {
                let (db, rest) = l.strip_prefix("db")?.split_once(':')?;
                let keys = rest.split(',').find_map(|f| f.strip_prefix("keys="))?.parse().ok()?;
                Some((db.parse().ok()?, keys))
            })
            .collect(),
        _ => vec![(0, n as u64)],
    };
    let total: u64 = dbs.iter().map(|d| d.1).sum::<u64>().max(1);
    let mut out = Vec::new();
    for (db, size) in dbs {
        let want = (n as u64).saturating_mul(size).div_ceil(total).min(size) as usize;
        if want == 0 {
            continue;
        }
        let e = |e: crate::net::LinkError| format!("--cutover: {e}");
        if db != 0 {
            link.call(&[b"SELECT", db.to_string().as_bytes()]).map_err(e)?;
        }
        if want as u64 >= size {
            let mut cursor = b"0".to_vec();
            loop {
                link.send_command(&[b"SCAN", &cursor, b"COUNT", b"1000"]).map_err(e)?;
                let page = link.next_reply(crate::live::read_scan_reply).map_err(e)?;
                let Ok((next, page)) = page else { return Err(format!("--cutover: SCAN on {source} failed")) };
                out.extend(page.into_iter().map(|k| (db, k)));
                if next == b"0" {
                    break;
                }
                cursor = next;
            }
            continue;
        }
        let mut cmds = Vec::new();
        for _ in 0..want {
            crate::resp::encode::command(&mut cmds, &[b"RANDOMKEY"]);
        }
        link.send(&cmds).map_err(e)?;
        for _ in 0..want {
            let key = link
                .next_reply(|r| match r {
                    Reply::Bulk(Some(k)) => Some(k.to_vec()),
                    _ => None,
                })
                .map_err(|e| format!("--cutover: {e}"))?;
            out.extend(key.map(|k| (db, k)));
        }
    }
    link.close();
    out.retain(|(_, k)| !k.starts_with(b"redis-migration:"));
    Ok(out)
}

/// The verdict, on stdout at once (before the tool goes on following).
fn print_verdict(v: &serde_json::Value, json: bool) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{v}");
    } else if v["verdict"] == "go" {
        let verified = match (v["diff"]["compared"].as_u64(), v["verified"].as_str()) {
            (Some(n), Some("touched")) => format!(" equal ({n} keys compared: those the stream touched and a sample)"),
            (Some(n), _) => format!(" equal ({n} keys compared)"),
            (None, _) => " (not verified: --verify none)".to_string(),
        };
        let _ = writeln!(
            out,
            "cutover: GO — the source's offset {} is applied and the destination verified{verified}.",
            v["offset"]
        );
        let _ = match v["pause_remaining_ms"].as_i64() {
            Some(ms) => writeln!(
                out,
                "The source's writes stay paused for another {ms} ms: point the clients at the destination now."
            ),
            None => writeln!(out, "Point the clients at the destination now."),
        };
    } else {
        let differences: u64 = ["added", "removed", "type", "value", "ttl", "functions"]
            .iter()
            .map(|k| v["diff"][k].as_u64().unwrap_or(0))
            .sum();
        let first: Vec<&str> =
            v["differing"].as_array().map_or(Vec::new(), |a| a.iter().filter_map(|x| x.as_str()).collect());
        let why = v["why"].as_str().map_or(String::new(), |w| format!(" {w}."));
        let _ = writeln!(
            out,
            "cutover: NO-GO — {differences} differences (first: {}); the source was unpaused.{why}",
            first.join(", ")
        );
    }
    let _ = out.flush();
}
