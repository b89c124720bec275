//! `replay` when things go wrong on the way: connections killed under it, a durable
//! destination killed and restarted, a frozen destination, a replay killed and resumed
//! from its checkpoint. Every case ends with the destination equal to the source.

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::oracle::{dump_server, server_version};
use crate::replay::{json, replay, text};
use crate::translate::assert_same;
use crate::util::{bin, testdata, RedisServer};

/// A source server filled with `n` lists of 12 elements, saved; returns it and its RDB.
fn big_source(n: usize) -> (RedisServer, PathBuf) {
    let src = RedisServer::start("7.0", None, &[]);
    let mut c = src.conn();
    let script = "for i=1,tonumber(ARGV[1]) do \
        local k='list:'..i; for j=1,12 do redis.call('RPUSH', k, 'item-'..j..'-'..i) end \
        redis.call('SET', 'str:'..i, string.rep('x', 50)..i) end return 1";
    redis::cmd("EVAL").arg(script).arg(0).arg(n).query::<i64>(&mut c).unwrap();
    redis::cmd("SAVE").query::<()>(&mut c).unwrap();
    let path = src.dir.path().join("dump.rdb");
    (src, path)
}

/// Kills the destination's client connections every `every` until stopped.
/// Kills the destination's client connections each time it has processed `every` more
/// commands, until `stop`: interruptions that follow the replay's progress, not the
/// clock (a fast machine finishes a small replay between two timed kills). Returns how
/// many kills found connections to kill.
fn killer(port: u16, every: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap().get_connection().unwrap();
        let processed = |c: &mut redis::Connection| -> u64 {
            let info: String = redis::cmd("INFO").arg("stats").query(c).unwrap_or_default();
            info.lines().find_map(|l| l.strip_prefix("total_commands_processed:")?.trim().parse().ok()).unwrap_or(0)
        };
        let mut next = processed(&mut c) + every;
        let mut kills = 0;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(2));
            if processed(&mut c) < next {
                continue;
            }
            let n: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query(&mut c).unwrap_or(0);
            if n > 0 {
                kills += 1;
            }
            next = processed(&mut c) + every;
        }
        kills
    })
}

#[test]
fn killed_connections_heal() {
    let (src, path) = big_source(20_000);
    let dest = RedisServer::start("7.0", None, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let k = killer(dest.port, 15_000, stop.clone());
    // Commands mode, 5 elements per command: each list is DEL + 3 RPUSH, and a
    // connection lost between them must resend the key from its DEL.
    let out = replay(
        dest.port,
        &[
            "--format",
            "json",
            "--mode",
            "commands",
            "--max-args",
            "5",
            "--pipeline",
            "4",
            "-n",
            "2",
            path.to_str().unwrap(),
        ],
    );
    stop.store(true, Ordering::Relaxed);
    let kills = k.join().unwrap();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(kills >= 2, "the replay ended before it was interrupted twice ({kills} kills): {report}");
    assert!(report["reconnects"].as_u64() >= Some(2), "{report}");
    let mut a = src.conn();
    let ver = server_version(&mut a);
    assert_same(&dump_server(&mut a, ver), &dump_server(&mut dest.conn(), ver), ver, "after killed connections");
}

#[test]
fn a_durable_destination_killed_and_restarted() {
    let (src, path) = big_source(20_000);
    let mut dest = RedisServer::start("7.0", None, &["--appendonly", "yes", "--appendfsync", "always"]);
    let child = std::thread::spawn({
        let port = dest.port;
        let path = path.clone();
        move || {
            replay(
                port,
                &["--format", "json", "--pipeline", "2", "-n", "2", "--retry-for", "30", path.to_str().unwrap()],
            )
        }
    });
    std::thread::sleep(Duration::from_millis(400));
    dest.kill();
    std::thread::sleep(Duration::from_millis(300));
    dest.restart();
    let out = child.join().unwrap();
    // The strings went in MSET batches (restore mode), and those heal as RESTOREs do.
    assert_eq!(json(&out)["batched_strings"], 20000, "{}", text(&out));
    assert_healed(&out, &src, &dest, "after a restart");
}

/// A replay that lost its connections on the way: it ended with exit 0 after at least
/// one reconnect, and `dest` holds what `src` holds.
fn assert_healed(out: &Output, src: &RedisServer, dest: &RedisServer, what: &str) {
    let report = json(out);
    assert_eq!(out.status.code(), Some(0), "{what}: {report}");
    assert!(
        report["reconnects"].as_u64() > Some(0),
        "{what}: the replay ended before its connections were lost: {report}"
    );
    let mut a = src.conn();
    let ver = server_version(&mut a);
    assert_same(&dump_server(&mut a, ver), &dump_server(&mut dest.conn(), ver), ver, what);
}

/// Freezes `dest` (SIGSTOP) once a replay has written a few hundred keys into it.
fn freeze_once_busy(dest: &RedisServer) {
    let mut c = dest.conn();
    let t0 = std::time::Instant::now();
    while redis::cmd("DBSIZE").query::<u64>(&mut c).unwrap() < 300 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(2));
    }
    dest.signal("STOP");
}

/// A destination that stops answering (SIGSTOP) is a lost connection after --timeout:
/// frozen for a while, the replay reconnects once it answers again and ends with equal
/// data; frozen for good, the replay stops with exit 2 and says why, instead of waiting
/// forever.
#[test]
fn a_frozen_destination_times_out() {
    let (src, path) = big_source(6_000);
    let file = path.to_str().unwrap().to_string();
    let args = ["--format", "json", "--pipeline", "2", "-n", "2", "--timeout", "1"];

    let dest = RedisServer::start("7.0", None, &[]);
    let child = std::thread::spawn({
        let (port, file) = (dest.port, file.clone());
        move || replay(port, &[&args[..], &["--retry-for", "30", &file]].concat())
    });
    freeze_once_busy(&dest);
    std::thread::sleep(Duration::from_millis(2500));
    dest.signal("CONT");
    assert_healed(&child.join().unwrap(), &src, &dest, "after a freeze");

    let dest = RedisServer::start("7.0", None, &[]);
    let child = std::thread::spawn({
        let (port, file) = (dest.port, file.clone());
        move || replay(port, &[&args[..], &["--retry-for", "2", &file]].concat())
    });
    freeze_once_busy(&dest);
    let started = std::time::Instant::now();
    let out = child.join().unwrap();
    let waited = started.elapsed();
    dest.signal("CONT");
    let report = text(&out);
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(report.contains("did not answer within the timeout"), "{report}");
    assert!(waited < Duration::from_secs(20), "gave up after {waited:?}");
}

/// A 7.0 server with appendonly (multi-part, RDB base) holding a snapshot of `lists`
/// lists, then `writes` non-idempotent commands (INCR, APPEND, RPUSH, HINCRBY in dbs 0
/// and 1) in its incr file. Returns the server and a copy of its appendonlydir.
fn aof_source(lists: usize, writes: usize) -> (RedisServer, tempfile::TempDir, PathBuf) {
    let server = RedisServer::start("7.0", None, &["--appendonly", "yes", "--aof-use-rdb-preamble", "yes"]);
    let mut c = server.conn();
    let script = "for i=1,tonumber(ARGV[1]) do local k='list:'..i; \
        for j=1,12 do redis.call('RPUSH', k, 'item-'..j..'-'..i) end end return 1";
    redis::cmd("EVAL").arg(script).arg(0).arg(lists).query::<i64>(&mut c).unwrap();
    redis::cmd("BGREWRITEAOF").query::<()>(&mut c).unwrap();
    // Wait for the rewrite: the base now holds the lists.
    for _ in 0..200 {
        let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
        if info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c1 = redis::Client::open(format!("redis://127.0.0.1:{}/1", server.port)).unwrap().get_connection().unwrap();
    let mut p = redis::pipe();
    for i in 0..writes {
        p.cmd("INCR").arg(format!("counter:{}", i % 100)).ignore();
        p.cmd("APPEND").arg(format!("s:{}", i % 50)).arg("x").ignore();
        if i % 4 == 0 {
            p.cmd("RPUSH").arg(format!("log:{}", i % 20)).arg(i).ignore();
        }
        if i % 1000 == 999 {
            p.query::<()>(&mut c).unwrap();
            p = redis::pipe();
            redis::cmd("HINCRBY").arg("h").arg(format!("f{}", i % 7)).arg(1).query::<i64>(&mut c1).unwrap();
        }
    }
    p.query::<()>(&mut c).unwrap();
    let dir = server.dir.path().join("appendonlydir");
    // The files as they are now: the source keeps running.
    let keep = tempfile::tempdir().unwrap();
    let copy = keep.path().join("appendonlydir");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    (server, keep, copy)
}

#[test]
fn aof_commands_are_applied_once_through_killed_connections() {
    let (src, _files, dir) = aof_source(2_000, 30_000);
    let loaded = RedisServer::start_aof("7.0", &dir, &[]);
    let dest = RedisServer::start("7.0", None, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let k = killer(dest.port, 12_000, stop.clone());
    let out = replay(dest.port, &["--pipeline", "8", "-n", "3", "-aof", dir.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    let kills = k.join().unwrap();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(kills >= 2, "the replay ended before it was interrupted twice ({kills} kills): {report}");
    let mut a = loaded.conn();
    let ver = server_version(&mut a);
    // INCR and APPEND applied twice, or never, would show here.
    assert_same(&dump_server(&mut a, ver), &dump_server(&mut dest.conn(), ver), ver, "AOF through killed connections");
    drop(src);
}

#[test]
fn a_killed_replay_resumes_from_its_checkpoint() {
    let (src, _files, dir) = aof_source(3_000, 30_000);
    let loaded = RedisServer::start_aof("7.0", &dir, &[]);
    let dest = RedisServer::start("7.0", None, &[]);
    let work = tempfile::tempdir().unwrap();
    let ck = work.path().join("replay.checkpoint");
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = vec!["replay".into(), "-dport".into(), dest.port.to_string()];
        v.extend(
            [
                "--pipeline",
                "1",
                "-n",
                "2",
                "--checkpoint-every-ms",
                "20",
                "--checkpoint",
                ck.to_str().unwrap(),
                "-aof",
                dir.to_str().unwrap(),
            ]
            .map(String::from),
        );
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let mut child =
        bin().args(args(&[])).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Kill it once its checkpoint has moved past the start of the input.
    let t0 = std::time::Instant::now();
    let moved = || {
        let text = std::fs::read_to_string(&ck).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        (v["resume"]["file"].as_u64()? > 0 || v["resume"]["offset"].as_u64()? > 0).then_some(())
    };
    while moved().is_none() && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ck.exists(), "the killed replay left no checkpoint");
    // Other options: refused, nothing written.
    let other = bin().args(args(&["--mode", "commands"])).output().unwrap();
    assert_eq!(other.status.code(), Some(2), "{}", text(&other));
    assert!(text(&other).contains("cannot resume"), "{}", text(&other));
    // The same command resumes and completes.
    let out = bin().args(args(&[])).output().unwrap();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("resumed from the checkpoint"), "{report}");
    assert!(!report.contains("resumed from the checkpoint at byte 0 of"), "{report}");
    assert!(!ck.exists(), "a completed replay removes its checkpoint");
    let mut a = loaded.conn();
    let ver = server_version(&mut a);
    let mut b = dest.conn();
    let left: Vec<String> = redis::cmd("KEYS").arg("redis-migration:*").query(&mut b).unwrap();
    assert!(left.is_empty(), "applied keys left behind: {left:?}");
    assert_same(&dump_server(&mut a, ver), &dump_server(&mut b, ver), ver, "after a resumed replay");
    drop(src);
}

/// A checkpoint keeps the key patterns themselves: one written by a run with
/// `--match 'h*'` does not resume a run with `--match 's*'` (which would skip keys it
/// never sent), and does resume one with `--match 'h*'`.
#[test]
fn a_checkpoint_is_refused_for_other_key_patterns() {
    let dest = RedisServer::start("7.0", None, &[]);
    let work = tempfile::tempdir().unwrap();
    let ck = work.path().join("replay.checkpoint");
    // A log that stops the run (a FLUSHALL without --allow-flush, not caught before the
    // first write with --no-precheck): the checkpoint stays.
    let stop = work.path().join("stop.aof");
    std::fs::write(&stop, "*1\r\n$8\r\nFLUSHALL\r\n").unwrap();
    let rdb = testdata("redis-7.0.rdb");
    let run = |pattern: &str| {
        bin()
            .args(["replay", "-dport", &dest.port.to_string(), "--no-precheck", "--match", pattern])
            .args(["--checkpoint", ck.to_str().unwrap(), "-rdb", rdb.to_str().unwrap(), "-aof", stop.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let first = run("h*");
    assert_eq!(first.status.code(), Some(2), "{}", text(&first));
    assert!(text(&first).contains("--allow-flush"), "{}", text(&first));
    assert!(ck.exists(), "the stopped run left its checkpoint");
    let other = run("s*");
    assert_eq!(other.status.code(), Some(2), "{}", text(&other));
    assert!(text(&other).contains("cannot resume") && text(&other).contains("other options"), "{}", text(&other));
    let same = run("h*");
    assert!(text(&same).contains("resumed from the checkpoint"), "{}", text(&same));
}

/// A record damaged inside its value (the skim passes it, the decode does not) stops the
/// run; its checkpoint resumes at that record, never past it, so a resumed run meets the
/// damage again instead of calling the keys after it applied.
#[test]
fn a_checkpoint_stops_at_a_damaged_record() {
    let src = RedisServer::start("7.0", None, &["--rdbcompression", "no", "--rdbchecksum", "no"]);
    let mut c = src.conn();
    for i in 0..50 {
        let _: () = redis::cmd("SET").arg(format!("s{i}")).arg(i).query(&mut c).unwrap();
    }
    let _: () = redis::cmd("RPUSH").arg("damaged-list").arg(&["a", "b", "c"]).query(&mut c).unwrap();
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    let mut bytes = std::fs::read(src.dir.path().join("dump.rdb")).unwrap();
    // The quicklist's one listpack (`rdb.c`, RDB_TYPE_LIST_QUICKLIST_2: node count,
    // container, the listpack as a string): its element count says 4, it holds 3.
    let name = b"\x0cdamaged-list";
    let key_at = bytes.windows(name.len()).position(|w| w == name).expect("the list in the file") - 1;
    let lp = key_at + 1 + name.len() + 3;
    assert_eq!(bytes[lp + 4..lp + 6], [3, 0], "the listpack's count");
    bytes[lp + 4] = 4;
    let work = tempfile::tempdir().unwrap();
    let rdb = work.path().join("damaged.rdb");
    std::fs::write(&rdb, &bytes).unwrap();
    let ck = work.path().join("replay.checkpoint");
    let dest = RedisServer::start("7.0", None, &[]);
    let run = || {
        bin()
            .args(["replay", "-dport", &dest.port.to_string(), "--no-precheck", "--checkpoint", ck.to_str().unwrap()])
            .arg(&rdb)
            .output()
            .unwrap()
    };
    let first = run();
    assert_eq!(first.status.code(), Some(2), "{}", text(&first));
    assert!(text(&first).contains("(key \"damaged-list\"): listpack"), "{}", text(&first));
    let checkpoint: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ck).unwrap()).unwrap();
    let resume = checkpoint["resume"]["offset"].as_u64().unwrap();
    assert!(resume <= key_at as u64, "the checkpoint resumes at {resume}, past the damaged record at {key_at}");
    let again = run();
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("resumed from the checkpoint"), "{}", text(&again));
    assert!(text(&again).contains("(key \"damaged-list\"): listpack"), "{}", text(&again));
}
