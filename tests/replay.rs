//! `replay` against real servers: an empty redis-server (or nutcracker in front of two)
//! filled by our replay must hold what a server that loaded the same input itself holds;
//! faults (killed connections, a killed and restarted durable destination), refusals and
//! reports as a user sees them.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::oracle::{dump_server, server_version, KeyMap, KeyView};
use crate::translate::{assert_same, forget_what_commands_cannot_carry, functions};
use crate::util::{bin, testdata, RedisServer, Twemproxy, FIXTURES};

/// Runs `replay ARGS` against port `port`.
fn replay(port: u16, args: &[&str]) -> Output {
    bin()
        .arg("replay")
        .args(["-dport", &port.to_string()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run replay")
}

/// The JSON report of a replay run with `--format json`.
fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", text(o)))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Zeroes consumer seen/active times: a replayed XCLAIM stamps them with the replayer's clock.
fn forget_consumer_times(map: &mut KeyMap) {
    for (view, _) in map.values_mut() {
        if let KeyView::Stream(s) = view {
            for c in s.groups.iter_mut().flat_map(|g| g.consumers.iter_mut()) {
                c.seen_time = 0;
                c.active_time = c.active_time.map(|_| 0);
            }
        }
    }
}

fn module_args(file: &str) -> Vec<String> {
    if file.contains("module") {
        vec!["--loadmodule".into(), crate::util::falkordb_module().to_str().unwrap().into()]
    } else {
        vec![]
    }
}

/// Every RDB fixture, replayed in `mode` into an empty server of the version that wrote it,
/// equals that server loading the file.
fn fixtures_in(mode: &str) {
    for (file, version) in FIXTURES {
        let path = testdata(file);
        let extra = module_args(file);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let loaded = RedisServer::start(version, Some(&path), &extra);
        let empty = RedisServer::start(version, None, &extra);
        let out = replay(empty.port, &["--format", "json", "--mode", mode, "-n", "3", "-rdb", path.to_str().unwrap()]);
        let report = json(&out);
        let (mut a, mut b) = (loaded.conn(), empty.conn());
        let ver = server_version(&mut a);
        let mut want = dump_server(&mut a, ver);
        let mut got = dump_server(&mut b, ver);
        let modules = want.values().filter(|(v, _)| matches!(v, KeyView::Module(_))).count();
        if mode == "commands" {
            forget_what_commands_cannot_carry(&mut want, &mut got);
            want.retain(|_, (v, _)| !matches!(v, KeyView::Module(_)));
        }
        // Module keys cannot go as commands: not applied, so exit 1 and said so.
        let code = if mode == "commands" && modules > 0 { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(code), "{file} {mode}: {report}");
        assert_eq!(report["skipped"]["modules"], if code == 1 { modules as u64 } else { 0 }, "{report}");
        assert_eq!(report["exit_code"], code, "{report}");
        assert_same(&want, &got, ver, &format!("{file} replay {mode}"));
        if ver >= (7, 0) {
            assert_eq!(functions(&mut a), functions(&mut b), "{file} {mode}: functions");
        }
    }
}

#[test]
fn fixtures_restore_mode() {
    fixtures_in("restore");
}

#[test]
fn fixtures_commands_mode() {
    fixtures_in("commands");
}

fn aof(rel: &str) -> PathBuf {
    testdata(&format!("aof/{rel}"))
}

/// A server started on a copy of the AOF equals an empty one filled by `replay ARGS`.
fn aof_case(version: &str, aof_path: &Path, args: &[&str]) {
    let loaded = RedisServer::start_aof(version, aof_path, &[]);
    let empty = RedisServer::start(version, None, &[]);
    let out = replay(empty.port, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    let (mut a, mut b) = (loaded.conn(), empty.conn());
    let ver = server_version(&mut a);
    let mut want = dump_server(&mut a, ver);
    let mut got = dump_server(&mut b, ver);
    assert!(want.len() > 10, "the loaded server has only {} keys", want.len());
    forget_consumer_times(&mut want);
    forget_consumer_times(&mut got);
    if args.contains(&"commands") {
        forget_what_commands_cannot_carry(&mut want, &mut got);
    }
    assert_same(&want, &got, ver, &format!("{args:?}"));
    if ver >= (7, 0) {
        assert_eq!(functions(&mut a), functions(&mut b), "{args:?}: functions");
    }
}

#[test]
fn aof_fixtures() {
    // The fixtures hold a FLUSHDB: sent only when allowed.
    let plain = aof("plain-6.2/appendonly.aof");
    aof_case("6.2", &plain, &["--allow-flush", "-n", "3", "-aof", plain.to_str().unwrap()]);
    let pre = aof("preamble-6.2/appendonly.aof");
    aof_case("6.2", &pre, &["--allow-flush", "-aof", pre.to_str().unwrap()]);
    let dir = aof("multipart-7.0/appendonlydir");
    aof_case("7.0", &dir, &["--allow-flush", "--mode", "commands", "-aof", dir.to_str().unwrap()]);
}

#[test]
fn rdb_and_aof_pair() {
    let dir = aof("multipart-7.0/appendonlydir");
    let base = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_str().unwrap().ends_with(".base.rdb"))
        .expect("a base RDB");
    let mut incr: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(".incr.aof"))
        .collect();
    incr.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        name.split('.').rev().nth(2).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0)
    });
    let mut args = vec!["--allow-flush".to_string(), "-rdb".into(), base.to_str().unwrap().into()];
    for i in &incr {
        args.extend(["-aof".into(), i.to_str().unwrap().into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    aof_case("7.0", &dir, &args);
}

#[test]
fn flushes_are_refused_up_front() {
    let plain = aof("plain-6.2/appendonly.aof");
    let empty = RedisServer::start("7.0", None, &[]);
    let out = replay(empty.port, &["-aof", plain.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--allow-flush"), "{}", text(&out));
    let n: u64 = redis::cmd("DBSIZE").query(&mut empty.conn()).unwrap();
    assert_eq!(n, 0, "nothing may be written");
}

/// Commands the server ran that write, from INFO commandstats (the probe's SET, RESTORE…).
fn writes_seen(server: &RedisServer) -> Vec<String> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut server.conn()).unwrap();
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .map(|l| l.split(':').next().unwrap().to_string())
        .filter(|c| !["info", "ping", "select", "auth", "client", "hello", "command", "exists"].contains(&c.as_str()))
        .collect()
}

/// A damaged snapshot is refused before anything is written, the probe key included.
#[test]
fn damaged_input_is_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(testdata("redis-7.0.rdb")).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    let bad = dir.path().join("bad.rdb");
    std::fs::write(&bad, &bytes).unwrap();
    let empty = RedisServer::start("7.0", None, &[]);
    let out = replay(empty.port, &[bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bad.rdb") && text(&out).contains("nothing was written"), "{}", text(&out));
    assert_eq!(writes_seen(&empty), Vec::<String>::new(), "commands the destination ran");
}

/// The union of the backends' keys.
fn union(backends: &[&RedisServer], ver: (u32, u32)) -> KeyMap {
    let mut all = KeyMap::new();
    for b in backends {
        let part = dump_server(&mut b.conn(), ver);
        for (k, v) in part {
            assert!(all.insert(k.clone(), v).is_none(), "key {:?} on two backends", String::from_utf8_lossy(&k.1));
        }
    }
    all
}

#[test]
fn through_twemproxy() {
    let path = testdata("redis-7.0.rdb");
    let file = path.to_str().unwrap();
    let loaded = RedisServer::start("7.0", Some(&path), &[]);
    let (b1, b2) = (RedisServer::start("7.0", None, &[]), RedisServer::start("7.0", None, &[]));
    let proxy = Twemproxy::start(&[&b1, &b2]);

    // Keys in dbs other than 0 are refused before anything is written.
    let out = replay(proxy.port, &["-rdb", file]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("only db 0"), "{}", text(&out));
    let written: u64 = [&b1, &b2].iter().map(|b| redis::cmd("DBSIZE").query::<u64>(&mut b.conn()).unwrap()).sum();
    assert_eq!(written, 0);

    // db 0 in auto mode (RESTORE: streams too), onto both backends.
    let out = replay(proxy.port, &["--format", "json", "--db", "0", "-n", "3", "-rdb", file]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["kind"], "twemproxy", "{report}");
    // Strings in MSET batches, which twemproxy splits across its backends.
    assert!(report["batched_strings"].as_u64() > Some(0), "{report}");
    let mut a = loaded.conn();
    let ver = server_version(&mut a);
    let mut want = dump_server(&mut a, ver);
    want.retain(|k, _| k.0 == 0);
    assert!(want.values().any(|(v, _)| matches!(v, KeyView::Stream(_))), "the fixture has streams");
    let got = union(&[&b1, &b2], ver);
    assert_same(&want, &got, ver, "twemproxy restore");
    let n1: u64 = redis::cmd("DBSIZE").query(&mut b1.conn()).unwrap();
    let n2: u64 = redis::cmd("DBSIZE").query(&mut b2.conn()).unwrap();
    assert!(n1 > 0 && n2 > 0, "both backends hold keys ({n1}, {n2})");

    // In commands mode streams cannot pass (XADD would close the connection): refused,
    // reported, exit 1; every other key arrives.
    for b in [&b1, &b2] {
        redis::cmd("FLUSHALL").query::<()>(&mut b.conn()).unwrap();
    }
    let out = replay(proxy.port, &["--format", "json", "--db", "0", "--mode", "commands", "-rdb", file]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let streams = want.values().filter(|(v, _)| matches!(v, KeyView::Stream(_))).count() as u64;
    assert_eq!(report["refused_keys"], streams, "{report}");
    let why = report["refused_examples"][0]["why"].as_str().unwrap_or_default();
    assert!(why.contains("twemproxy does not take XADD"), "{report}");
    let mut got = union(&[&b1, &b2], ver);
    want.retain(|_, (v, _)| !matches!(v, KeyView::Stream(_)));
    forget_what_commands_cannot_carry(&mut want, &mut got);
    assert_same(&want, &got, ver, "twemproxy commands");

    // --db-map sends db 1 to db 0.
    for b in [&b1, &b2] {
        redis::cmd("FLUSHALL").query::<()>(&mut b.conn()).unwrap();
    }
    let out = replay(proxy.port, &["--db", "1", "--db-map", "1:0", "-rdb", file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut want = dump_server(&mut a, ver);
    want = want.into_iter().filter(|(k, _)| k.0 == 1).map(|((_, key), v)| ((0, key), v)).collect();
    assert!(!want.is_empty());
    assert_same(&want, &union(&[&b1, &b2], ver), ver, "twemproxy db-map");
}

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
    assert!(report.contains("did not answer within --timeout"), "{report}");
    assert!(waited < Duration::from_secs(20), "gave up after {waited:?}");
}

#[test]
fn wrong_password_is_exit_2() {
    let dest = RedisServer::start("7.0", None, &["--requirepass", "right"]);
    let file = testdata("redis-7.0.rdb");
    let out = replay(dest.port, &["-dauth", "wrong", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("authentication"), "{}", text(&out));
    assert!(!text(&out).contains("wrong"), "the password is never printed: {}", text(&out));
    let out = replay(dest.port, &[file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // The seed flags, and the password from the environment.
    let out = bin()
        .args(["replay", "-dip", "127.0.0.1", "-dport", &dest.port.to_string(), "-client", "2"])
        .args(["-rdb", file.to_str().unwrap()])
        .env("REDISMIGRATION_TARGET_PASSWORD", "right")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// Writes commands as a plain AOF.
fn write_aof(path: &Path, cmds: &[&[&str]]) {
    let mut out = Vec::new();
    for c in cmds {
        out.extend_from_slice(format!("*{}\r\n", c.len()).as_bytes());
        for a in c.iter() {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn rejected_commands_are_reported_with_their_key() {
    let dest = RedisServer::start("7.0", None, &[]);
    let mut c = dest.conn();
    redis::cmd("SET").arg("text").arg("x").query::<()>(&mut c).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("appendonly.aof");
    write_aof(
        &path,
        &[&["RPUSH", "text", "a"], &["SET", "ok", "1"], &["SELECT", "2"], &["INCR", "counter"], &["INCR", "counter"]],
    );
    let out = replay(dest.port, &["--format", "json", "-aof", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["errors"]["WRONGTYPE"]["count"], 1, "{report}");
    let example = report["errors"]["WRONGTYPE"]["examples"][0].as_str().unwrap();
    assert!(example.contains("RPUSH \"text\""), "{example}");
    assert_eq!(report["log_commands"], 4);
    assert_eq!(report["exit_code"], 1);
    let v: String = redis::cmd("GET").arg("ok").query(&mut c).unwrap();
    assert_eq!(v, "1");
    redis::cmd("SELECT").arg(2).query::<()>(&mut c).unwrap();
    let n: i64 = redis::cmd("GET").arg("counter").query(&mut c).unwrap();
    assert_eq!(n, 2);
}

#[test]
fn existing_keys_dry_run_skip_and_error() {
    let path = testdata("redis-7.0.rdb");
    let file = path.to_str().unwrap();
    let dest = RedisServer::start("7.0", None, &[]);
    let mut c = dest.conn();
    let source = RedisServer::start("7.0", Some(&path), &[]);
    let mut src = source.conn();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut src).unwrap();
    let taken = keys[0].clone();
    redis::cmd("SET").arg(&taken).arg("mine").query::<()>(&mut c).unwrap();

    let out = replay(dest.port, &["--db", "0", "--dry-run", "--format", "json", file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent = r["keys"].as_u64().unwrap();
    assert_eq!(r["would_send"]["replaced"], 1, "{r}");
    assert_eq!(r["would_send"]["created"].as_u64().unwrap(), sent - 1, "{r}");
    let n: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 1, "a dry run writes nothing");

    let out = replay(dest.port, &["--db", "0", "--on-existing", "error", file]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--on-existing error"), "{}", text(&out));
    let v: Vec<u8> = redis::cmd("GET").arg(&taken).query(&mut c).unwrap();
    assert_eq!(v, b"mine");
    let n: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, sent, "every other key was written");

    redis::cmd("FLUSHALL").query::<()>(&mut c).unwrap();
    redis::cmd("SET").arg(&taken).arg("mine").query::<()>(&mut c).unwrap();
    let out = replay(dest.port, &["--db", "0", "--on-existing", "skip", file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Vec<u8> = redis::cmd("GET").arg(&taken).query(&mut c).unwrap();
    assert_eq!(v, b"mine");
    let n: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, sent);
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

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl.
fn make_certs(dir: &Path) {
    let sh = |script: &str| {
        let out = std::process::Command::new("sh").arg("-c").arg(script).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    sh(&format!("openssl req -x509 {ec} -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca"));
    for (name, san) in [("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")] {
        sh(&format!("openssl req {ec} -keyout {name}.key -out {name}.csr -subj /CN={name}"));
        sh(&format!("printf '{san}\\n' > {name}.ext"));
        sh(&format!(
            "openssl x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out {name}.crt -days 2 -extfile {name}.ext"
        ));
    }
}

#[test]
fn over_tls_with_client_certificates() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let p = |f: &str| certs.path().join(f).to_str().unwrap().to_string();
    let tls_port = crate::util::free_port().to_string();
    let (crt, key, ca) = (p("server.crt"), p("server.key"), p("ca.crt"));
    let dest = RedisServer::start(
        "7.0",
        None,
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &crt,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "yes",
        ],
    );
    let path = testdata("redis-7.0.rdb");
    let file = path.to_str().unwrap();
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let run = |extra: &[&str]| bin().args(["replay", "--to", &url]).args(extra).arg(file).output().unwrap();
    // The Mozilla roots do not know our CA: refused, and said why.
    let out = run(&["--tls-cert", &p("client.crt"), "--tls-key", &p("client.key")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("certificate"), "{}", text(&out));
    let n: u64 = redis::cmd("DBSIZE").query(&mut dest.conn()).unwrap();
    assert_eq!(n, 0);
    // Our CA and a client certificate: everything arrives.
    let out =
        run(&["--tls-ca", &p("ca.crt"), "--tls-cert", &p("client.crt"), "--tls-key", &p("client.key"), "-n", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let loaded = RedisServer::start("7.0", Some(&path), &[]);
    let (mut a, mut b) = (loaded.conn(), dest.conn());
    let ver = server_version(&mut a);
    assert_same(&dump_server(&mut a, ver), &dump_server(&mut b, ver), ver, "over TLS");
    // --insecure skips the check (still encrypted).
    redis::cmd("FLUSHALL").query::<()>(&mut b).unwrap();
    let out = run(&["--insecure", "--tls-cert", &p("client.crt"), "--tls-key", &p("client.key"), "--mode", "commands"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let n: u64 = redis::cmd("DBSIZE").query(&mut dest.conn()).unwrap();
    assert!(n > 10, "{n} keys in db 0");
}

#[test]
fn aof_commands_on_keys_the_destination_had() {
    let dest = RedisServer::start("7.0", None, &[]);
    let mut c = dest.conn();
    redis::cmd("SET").arg("mine").arg("x").query::<()>(&mut c).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("appendonly.aof");
    write_aof(&path, &[&["APPEND", "mine", "y"], &["SET", "theirs", "1"], &["INCR", "theirs"]]);
    let file = path.to_str().unwrap();
    let out = replay(dest.port, &["--on-existing", "skip", "--format", "json", "-aof", file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["skipped"]["log_commands"].as_u64(), r["log_commands"].as_u64()), (Some(1), Some(2)), "{r}");
    let v: String = redis::cmd("GET").arg("mine").query(&mut c).unwrap();
    assert_eq!(v, "x");
    let n: i64 = redis::cmd("GET").arg("theirs").query(&mut c).unwrap();
    assert_eq!(n, 2);
    redis::cmd("DEL").arg("theirs").query::<()>(&mut c).unwrap();
    let out = replay(dest.port, &["--on-existing", "error", "-aof", file]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("APPEND \"mine\""), "{}", text(&out));
    let v: String = redis::cmd("GET").arg("mine").query(&mut c).unwrap();
    assert_eq!(v, "x");
}

#[test]
fn until_stops_the_aof_at_a_point_in_time() {
    let (dir, ts, files) = crate::aof::until_fixture();
    let (cut, whole) = (RedisServer::start("7.0", None, &[]), RedisServer::start("7.0", None, &[]));
    let until = (ts - 1).to_string();
    let out =
        replay(cut.port, &["--format", "json", "--allow-flush", "--until", &until, "-aof", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = json(&out);
    assert!(
        report["until"]["reached"].as_bool() == Some(true) && report["until"]["left_out"].as_u64() > Some(0),
        "{report}"
    );
    let mut args: Vec<&str> = vec!["--allow-flush"];
    args.extend(files.iter().map(String::as_str));
    let out = replay(whole.port, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (mut a, mut b) = (cut.conn(), whole.conn());
    let ver = server_version(&mut a);
    let (mut x, mut y) = (dump_server(&mut a, ver), dump_server(&mut b, ver));
    forget_consumer_times(&mut x);
    forget_consumer_times(&mut y);
    assert_same(&y, &x, ver, "--until");
}

/// An AOF whose base holds keys and hash fields whose expiry has passed, and whose log
/// still writes to them: Redis expires nothing while it loads, so APPEND, INCR or HINCRBY
/// keep the past expiry (gone once loaded) while PERSIST, SET, HSET or a new PEXPIREAT
/// make them live. `replay` in both modes and `print --format resp | redis-cli --pipe`
/// end with what the server that loaded the AOF holds; JSON prints the kept keys as the
/// file has them.
#[test]
fn expired_keys_that_the_log_writes_to() {
    let dir = aof("expiring-8.2/appendonlydir");
    let loaded = RedisServer::start_aof("8.2", &dir, &[]);
    let mut a = loaded.conn();
    let ver = server_version(&mut a);
    let want = dump_server(&mut a, ver);
    let has = |k: &str| want.contains_key(&(0, k.as_bytes().to_vec()));
    assert!(has("exp:persisted") && has("exp:overwritten") && has("exp:re-expired") && has("exp:hash"), "{want:?}");
    assert!(!has("exp:appended") && !has("exp:counter") && !has("exp:list") && !has("exp:untouched"), "{want:?}");
    let path = dir.to_str().unwrap();
    for mode in ["restore", "commands"] {
        let empty = RedisServer::start("8.2", None, &[]);
        let out = replay(empty.port, &["--format", "json", "--mode", mode, "-aof", path]);
        let report = json(&out);
        assert_eq!(out.status.code(), Some(0), "{mode}: {report}");
        assert_eq!(
            (report["kept_for_log"].as_u64(), report["skipped"]["expired"].as_u64()),
            (Some(8), Some(1)),
            "{mode}: {report}"
        );
        assert_same(&want, &dump_server(&mut empty.conn(), ver), ver, &format!("replay {mode}"));
    }
    let empty = RedisServer::start("8.2", None, &[]);
    let (report, code) = crate::translate::pipe_args(&empty, &[path]);
    assert_eq!(code, 0, "{report}");
    assert_same(&want, &dump_server(&mut empty.conn(), ver), ver, "print --format resp");
    // JSON: the kept keys with their past expiry, the untouched one left out.
    let out = crate::util::run(&["print", "--format", "json", path]);
    let json = String::from_utf8_lossy(&out.stdout);
    let appended = json.lines().find(|l| l.contains("\"exp:appended\"")).expect("exp:appended is printed");
    let v: serde_json::Value = serde_json::from_str(appended).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(v["expire_at_ms"].as_i64().is_some_and(|t| t < now), "{appended}");
    assert!(!json.contains("\"exp:untouched\""), "{json}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("kept 8 keys"), "{}", String::from_utf8_lossy(&out.stderr));
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
