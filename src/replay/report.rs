//! What a replay did, for people (text) and machines (JSON), and the progress line on
//! stderr while it runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::chunk::Errors;
use super::dest::DestKind;
use crate::aof;
use crate::translate::{Mode, Stats, Version};

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub destination: String,
    pub kind: Option<DestKind>,
    pub mode: Option<Mode>,
    pub target: Option<Version>,
    pub connections: usize,
    pub dry_run: bool,
    /// Translation counts (keys, commands, RESTOREs, refusals of the translator).
    pub stats: Stats,
    pub filtered: u64,
    pub empty: u64,
    pub skipped_existing: u64,
    /// Dry run: keys that would be created, and replaced.
    pub created: u64,
    pub replaced: u64,
    /// Log commands routed, barriers run, MULTI blocks unwrapped (twemproxy; keys of
    /// several slots in a cluster), log
    /// commands skipped because they touch a skipped key.
    pub log_commands: u64,
    pub barriers: u64,
    pub multi_unwrapped: u64,
    pub log_skipped: u64,
    /// What the filters did to AOF commands.
    pub log_filter: aof::select::Tally,
    /// What we refused to send, by reason.
    pub refused: Errors,
    /// Commands answered, bytes written, errors the destination answered.
    pub answered: u64,
    pub bytes: u64,
    pub errors: Errors,
    pub reconnects: u64,
    /// Commands and bytes a dry run would have sent.
    pub would_send: (u64, u64),
    pub input_bytes: u64,
    pub wall: Duration,
    pub warnings: Vec<String>,
    /// Why the replay stopped before its end.
    pub failure: Option<String>,
    /// Where a resumed replay started, and log commands it found already applied.
    pub resumed_at: Option<String>,
    pub already_applied: u64,
    /// Log commands of a resumed replay in doubt (between the checkpoint and the furthest
    /// applied mark) that their connection's mark showed not applied: sent.
    pub in_doubt_sent: u64,
    /// `--until`, as it ended.
    pub until: Option<aof::Until>,
    /// Each input file, in load order (a folder of shard snapshots: one per file).
    pub files: Vec<FileReport>,
    /// Into a Redis Cluster: its shape.
    pub cluster: Option<ClusterReport>,
    /// A snapshot still being written was applied as its bytes came (`migrate`).
    pub snapshot_streamed: bool,
}

/// What a replay did with one input file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub name: String,
    pub bytes: u64,
    /// Snapshot keys translated (sent, or refused by the translator).
    pub keys: u64,
    /// Snapshot keys left out: by the filters (and `--on-duplicate`), empty, or kept
    /// by the destination (`--on-existing skip`).
    pub left_out: u64,
}

/// What a replay into a Redis Cluster met.
#[derive(Debug, Default, Clone)]
pub struct ClusterReport {
    /// Masters serving slots, and how many of them have no replica (their data lives on
    /// one node only).
    pub masters: usize,
    pub without_replica: usize,
    /// Commands of several slots sent as one command per slot (DEL, UNLINK, EXISTS,
    /// TOUCH, MSET).
    pub split: u64,
    /// Commands sent to every master (FUNCTION, SCRIPT, FLUSHALL).
    pub everywhere: u64,
    /// Redirections followed, topology refreshes, keys sent again.
    pub counts: super::redirect::ClusterCounts,
}

impl Report {
    /// Keys and commands not applied: refused by us or by the translator, module keys
    /// commands cannot carry, functions the destination cannot load.
    pub fn refused_total(&self) -> u64 {
        self.refused.total()
            + self.stats.refused
            + self.stats.skipped_modules
            + self.stats.functions_skipped
            + self.log_filter.doubtful()
    }

    /// 0 all applied, 1 ran to the end with rejected commands or refused keys, 2 stopped.
    pub fn exit_code(&self) -> i32 {
        if self.failure.is_some() {
            2
        } else if self.errors.total() > 0 || self.refused_total() > 0 {
            1
        } else {
            0
        }
    }

    pub fn text(&self) -> String {
        let mut o = Vec::new();
        let mode = match self.mode {
            Some(Mode::Restore) => "restore mode",
            Some(Mode::Commands) => "commands mode",
            None => "",
        };
        let target = self.target.map_or(String::new(), |v| format!(", payloads for Redis {v}+"));
        o.push(format!(
            "{} {} ({}, {mode}{target}, {} connections)",
            if self.dry_run { "dry run against" } else { "replayed into" },
            self.destination,
            self.kind.map_or("?".to_string(), |k| k.to_string()),
            self.connections
        ));
        if let Some(r) = &self.resumed_at {
            o.push(format!(
                "resumed from the checkpoint at {r}; of the log commands in doubt, {} were already applied \
                 (skipped) and {} were not (sent)",
                self.already_applied, self.in_doubt_sent
            ));
        }
        o.push(self.stats.report());
        if self.filtered + self.empty + self.skipped_existing > 0 {
            o.push(format!(
                "left out: {} keys by filters, {} empty collections, {} keys the destination had (--on-existing skip)",
                self.filtered, self.empty, self.skipped_existing
            ));
        }
        if self.log_commands + self.log_skipped + self.log_filter.filtered > 0 {
            o.push(format!(
                "AOF: {} commands ({} run alone as barriers, {} MULTI blocks unwrapped (no MULTI through twemproxy, keys of several slots in a cluster), {} skipped: they touch skipped keys, {} left out by filters)",
                self.log_commands, self.barriers, self.multi_unwrapped, self.log_skipped, self.log_filter.filtered
            ));
        }
        o.extend(self.log_filter.report());
        if let Some(c) = &self.cluster {
            let alone = match c.without_replica {
                0 => String::new(),
                n if n == c.masters => ": no master has a replica, the data lives on one node each".to_string(),
                n => format!(": {n} without a replica, their data lives on one node"),
            };
            let k = &c.counts;
            o.push(format!(
                "cluster: {} masters{alone}; {} commands split by slot, {} sent to every master; \
                 redirections followed: {} MOVED, {} ASK, {} TRYAGAIN; {} topology refreshes, {} keys sent again",
                c.masters, c.split, c.everywhere, k.moved, k.ask, k.tryagain, k.refreshes, k.resent_keys
            ));
        }
        if self.dry_run {
            o.push(format!(
                "would send {} commands ({} bytes): {} keys created, {} replaced",
                self.would_send.0, self.would_send.1, self.created, self.replaced
            ));
        } else {
            let secs = self.wall.as_secs_f64().max(1e-9);
            o.push(format!(
                "sent {} commands, {:.1} MB in {:.2} s ({:.1} MB/s, {:.0} commands/s); {} reconnects",
                self.answered,
                self.bytes as f64 / 1e6,
                secs,
                self.bytes as f64 / 1e6 / secs,
                self.answered as f64 / secs,
                self.reconnects
            ));
        }
        let mut errors = |title: &str, e: &Errors| {
            for (kind, (n, examples)) in &e.by_kind {
                o.push(format!("{title} {kind}: {n}"));
                for ex in examples {
                    o.push(format!("  {ex}"));
                }
            }
        };
        errors("rejected by the destination,", &self.errors);
        errors("refused before sending,", &self.refused);
        if let Some(u) = &self.until {
            o.push(u.report());
        }
        if self.files.len() > 1 {
            for f in &self.files {
                o.push(format!(
                    "  {}: {} keys, {} left out, {:.1} MB",
                    f.name,
                    f.keys,
                    f.left_out,
                    f.bytes as f64 / 1e6
                ));
            }
        }
        for w in &self.warnings {
            o.push(format!("warning: {w}"));
        }
        if let Some(f) = &self.failure {
            o.push(format!("STOPPED: {f}"));
        }
        o.join("\n")
    }

    pub fn json(&self) -> serde_json::Value {
        let errors = |e: &Errors| {
            serde_json::Value::Object(
                e.by_kind
                    .iter()
                    .map(|(k, (n, ex))| (k.clone(), serde_json::json!({"count": n, "examples": ex})))
                    .collect(),
            )
        };
        let cluster = self.cluster.as_ref().map(|c| {
            serde_json::json!({
                "masters": c.masters,
                "without_replica": c.without_replica,
                "split": c.split,
                "everywhere": c.everywhere,
                "moved": c.counts.moved,
                "ask": c.counts.ask,
                "tryagain": c.counts.tryagain,
                "refreshes": c.counts.refreshes,
                "resent_keys": c.counts.resent_keys,
            })
        });
        let s = &self.stats;
        serde_json::json!({
            "destination": self.destination,
            "kind": self.kind.map(DestKind::json_name),
            "mode": self.mode.map(|m| match m { Mode::Restore => "restore", Mode::Commands => "commands" }),
            "target_version": self.target.map(|v| v.to_string()),
            "connections": self.connections,
            "dry_run": self.dry_run,
            "keys": s.keys,
            "commands": s.commands,
            "restores": s.restores,
            "restore_fallbacks": s.restore_fallbacks,
            "batched_strings": s.batched_strings,
            "kept_for_log": s.kept_for_log,
            "skipped": {
                "expired": s.skipped_expired,
                "expired_fields": s.skipped_expired_fields,
                "modules": s.skipped_modules,
                "filtered": self.filtered,
                "empty": self.empty,
                "existing": self.skipped_existing,
                "log_commands": self.log_skipped,
                "log_commands_filtered": self.log_filter.filtered,
            },
            "log_commands_narrowed": self.log_filter.narrowed,
            "log_commands_mixed_keys": {"count": self.log_filter.mixed, "examples": self.log_filter.mixed_examples},
            "log_commands_unknown_keys": {"count": self.log_filter.unknown, "examples": self.log_filter.unknown_examples},
            "refused_keys": s.refused,
            "refused_examples": s.refused_examples.iter().map(|(k, why)| serde_json::json!({"key": k, "why": why})).collect::<Vec<_>>(),
            "refused": errors(&self.refused),
            "errors": errors(&self.errors),
            "log_commands": self.log_commands,
            "barriers": self.barriers,
            "multi_unwrapped": self.multi_unwrapped,
            "answered": self.answered,
            "bytes": self.bytes,
            "reconnects": self.reconnects,
            "would_send": {"commands": self.would_send.0, "bytes": self.would_send.1, "created": self.created, "replaced": self.replaced},
            "input_bytes": self.input_bytes,
            "wall_s": self.wall.as_secs_f64(),
            "warnings": self.warnings,
            "resumed_at": self.resumed_at,
            "until": self.until.map(|u| serde_json::json!({"unix": u.until_s, "reached": u.reached, "left_out": u.left_out})),
            "already_applied": self.already_applied,
            "in_doubt_sent": self.in_doubt_sent,
            "files": self.files.iter().map(|f| serde_json::json!({"name": f.name, "bytes": f.bytes, "keys": f.keys, "left_out": f.left_out})).collect::<Vec<_>>(),
            "cluster": cluster,
            "snapshot_streamed": self.snapshot_streamed,
            "failure": self.failure,
            "exit_code": self.exit_code(),
        })
    }
}

/// Progress on stderr, when asked: input read, keys, commands sent and their rate, time left.
pub(super) struct Progress {
    pub(super) done: Arc<AtomicU64>,
    /// The input file being read (shown when there are several: a folder of shards).
    pub(super) file: Arc<std::sync::atomic::AtomicUsize>,
    pub(super) keys: Arc<AtomicU64>,
    pub(super) commands: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// A progress line over `total` input bytes, naming the file being read among
    /// `names` when there are several.
    pub(super) fn start(show: bool, total: u64, names: Vec<String>) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let file = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let keys = Arc::new(AtomicU64::new(0));
        let commands = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = show.then(|| {
            let (done, keys, commands, stop) = (done.clone(), keys.clone(), commands.clone(), stop.clone());
            let file = file.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    let d = done.load(Ordering::Relaxed);
                    let secs = start.elapsed().as_secs_f64();
                    let eta = if d > 0 { secs * (total.saturating_sub(d)) as f64 / d as f64 } else { 0.0 };
                    let pct = if total > 0 { 100.0 * d as f64 / total as f64 } else { 100.0 };
                    let c = commands.load(Ordering::Relaxed);
                    let f = file.load(Ordering::Relaxed);
                    let which = match names.get(f) {
                        Some(name) if names.len() > 1 => format!("file {}/{} {name}, ", f + 1, names.len()),
                        _ => String::new(),
                    };
                    let (k, rate) = (keys.load(Ordering::Relaxed), c as f64 / secs.max(1e-3));
                    if total == 0 {
                        // A snapshot still arriving, of a length not announced.
                        eprint!(
                            "\rreplay: {which}{:.1} MB, {k} keys, {c} commands ({rate:.0}/s), {secs:.0} s   ",
                            d as f64 / 1e6
                        );
                        continue;
                    }
                    eprint!(
                        "\rreplay: {which}{pct:5.1}% of {:.1} MB, {k} keys, {c} commands ({rate:.0}/s), {secs:.0} s, about {eta:.0} s left   ",
                        total as f64 / 1e6,
                    );
                }
                eprint!("\r{:100}\r", "");
            })
        });
        Progress { done, file, keys, commands, stop, thread }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
