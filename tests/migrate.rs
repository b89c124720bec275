//! `migrate` against real sources and destinations: a writer busy before, during and
//! after the snapshot; the destination must end equal to the source, key by key.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capture::{
    assert_same, busy_source, capture_output, info_field, path, spooled_offset, without_consumer_times, writer,
    writer_with,
};
use crate::oracle::{dump_server, server_version, KeyMap, KeyView};
use crate::util::{bin, RedisServer, Twemproxy};

/// The source's keys but the tool's own bookkeeping (`redis-migration:applied:*`).
fn dataset(con: &mut redis::Connection, ver: (u32, u32)) -> KeyMap {
    let mut map = without_consumer_times(dump_server(con, ver), ver);
    map.retain(|(_, k), _| !k.starts_with(b"redis-migration:"));
    map
}

fn start_migrate(args: &[&str]) -> Child {
    bin()
        .arg("migrate")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start migrate")
}

/// Waits for the exit of `m` (at most `secs`): its status and JSON report.
fn finish(mut m: Child, secs: u64) -> (i32, serde_json::Value, String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = m.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = m.kill();
            panic!("migrate did not end in {secs} s: {:?}", capture_output(&mut m));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = capture_output(&mut m);
    let report = serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null);
    (status.code().unwrap_or(-1), report, format!("{out}{err}"))
}

/// Waits until `n` spools in `dir` have their state file (their snapshot is spooled),
/// failing with migrate's output if it exits first.
fn wait_snapshots(m: &mut Child, dir: &std::path::Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let states = || {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().is_ok_and(|e| e.path().to_string_lossy().ends_with(".aof.state")))
            .count()
    };
    while states() < n {
        if let Ok(Some(status)) = m.try_wait() {
            panic!("migrate exited early ({status}): {:?}", capture_output(m));
        }
        assert!(Instant::now() < deadline, "the snapshots never came");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn terminate(m: &Child) {
    assert!(Command::new("kill").arg("-TERM").arg(m.id().to_string()).status().unwrap().success());
}

/// The whole job: a writer before and during the snapshot and after it; migrate follows
/// until the writer stops and the spool has caught up; SIGTERM; equal.
fn follows_a_busy_source(version: &str, diskless: &str) {
    let what = format!("{version}, repl-diskless-sync {diskless}");
    let source = busy_source(version, diskless);
    let mut con = source.conn();
    let dest = RedisServer::start(version, None, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(source.url(), stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let (rdb, aof) = (dir.path().join("dump.rdb"), dir.path().join("appendonly.aof"));
    let mut m = start_migrate(&[
        "--from",
        &source.url(),
        "--to",
        &dest.url(),
        "-rdb",
        path(&rdb),
        "-aof",
        path(&aof),
        "--format",
        "json",
    ]);
    let deadline = Instant::now() + Duration::from_secs(120);
    // Diskless, the source's fork writes the snapshot into the link as it goes (slowed
    // here key by key): keys reach the destination while it is still being written.
    let mut applied_while_saving = false;
    let mut dest_con = dest.conn();
    while diskless == "yes" && !applied_while_saving && !aof.with_extension("aof.state").exists() {
        let keys: u64 = redis::cmd("DBSIZE").query(&mut dest_con).unwrap();
        applied_while_saving = keys > 0 && info_field(&mut con, "persistence", "rdb_bgsave_in_progress") == "1";
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_snapshots(&mut m, dir.path(), 1);
    // Writes after the snapshot, while it is being applied and after.
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let written = writing.join().unwrap();
    assert!(written > 200, "{what}: {written} rounds written");
    // Everything the source sent is in the spool (its state moves once a second).
    let master: u64 = info_field(&mut con, "replication", "master_repl_offset").parse().unwrap();
    while spooled_offset(&aof) < Some(master) {
        assert!(Instant::now() < deadline, "{what}: the spool never reached offset {master}");
        std::thread::sleep(Duration::from_millis(100));
    }
    terminate(&m);
    let (code, report, text) = finish(m, 120);
    assert_eq!(code, 0, "{what}: {text}");
    assert_eq!(report["source"]["stopped"], "signal", "{what}: {report}");
    let framing = if diskless == "yes" { "eof-mark" } else { "length" };
    assert_eq!(report["source"]["framing"], framing, "{what}: {report}");
    assert!(report["log_units"].as_u64().unwrap() > 100, "{what}: log units applied: {report}");
    if diskless == "yes" {
        // (A disk-based transfer of this small snapshot is over before it is looked at.)
        assert_eq!(report["snapshot_streamed"], true, "{what}: {report}");
        assert!(applied_while_saving, "{what}: no key reached the destination before the source's snapshot ended");
    }
    // (Keys of the writer still expiring send DELs after it stopped.)
    assert!(report["source"]["offset"].as_u64() >= Some(master), "{what}: {report}");

    let ver = server_version(&mut con);
    let want = dataset(&mut con, ver);
    let got = dataset(&mut dest.conn(), ver);
    assert_same(&got, &want, &what);
    // The spool files are the user's: a valid snapshot and a valid AOF.
    let check = crate::util::run(&["check", "-rdb", path(&rdb), "-aof", path(&aof)]);
    assert_eq!(check.status.code(), Some(0), "{what}: {}", crate::replay::text(&check));
}

#[test]
fn migrate_7_0_diskless_follows_a_busy_source() {
    follows_a_busy_source("7.0", "yes");
}

#[test]
fn migrate_8_2_disk_follows_a_busy_source() {
    follows_a_busy_source("8.2", "no");
}

#[test]
fn migrate_6_2_follows_a_busy_source() {
    follows_a_busy_source("6.2", "no");
}

/// The original tool's command line, with no subcommand, and --until-synced.
#[test]
fn the_seed_command_line_migrates() {
    let source = RedisServer::start("7.0", None, &["--requirepass", "src-pw", "--repl-diskless-sync-delay", "0"]);
    let dest = RedisServer::start("7.0", None, &["--requirepass", "dst-pw"]);
    let mut con =
        redis::Client::open(format!("redis://:src-pw@127.0.0.1:{}", source.port)).unwrap().get_connection().unwrap();
    let mut p = redis::pipe();
    for k in 0..3000 {
        p.cmd("SET").arg(format!("k:{k}")).arg(k).ignore();
        p.cmd("HSET").arg(format!("h:{}", k % 10)).arg(k).arg(k).ignore();
    }
    p.cmd("SELECT").arg(4).ignore().cmd("RPUSH").arg("l").arg(1).arg(2).ignore().cmd("SELECT").arg(0).ignore();
    p.query::<()>(&mut con).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (sport, dport) = (source.port.to_string(), dest.port.to_string());
    let out = bin()
        .current_dir(dir.path())
        .args(["-sip", "127.0.0.1", "-sport", &sport, "-sauth", "src-pw"])
        .args(["-dip", "127.0.0.1", "-dport", &dport, "-dauth", "dst-pw"])
        .args(["-rdb", "dump.rdb", "-aof", "appendonly.aof", "-client", "4", "--until-synced", "--format", "json"])
        .output()
        .unwrap();
    let text = crate::replay::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("src-pw") && !text.contains("dst-pw"), "passwords are never shown: {text}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["synced_after_s"].as_f64().is_some(), "{report}");
    assert_eq!(report["source"]["stopped"], "requested", "{report}");
    let mut dcon =
        redis::Client::open(format!("redis://:dst-pw@127.0.0.1:{}", dest.port)).unwrap().get_connection().unwrap();
    let ver = server_version(&mut con);
    assert_same(&dataset(&mut dcon, ver), &dataset(&mut con, ver), "the seed's command line");
    assert!(dir.path().join("dump.rdb").exists() && dir.path().join("appendonly.aof").exists());
    let v = bin().arg("-v").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("redis-migration "), "{:?}", v);
}

/// Into twemproxy, the original tool's usual destination, with its command line: the
/// source's keys are all in db 0 (its `INFO keyspace` says so), so the snapshot is applied
/// while it arrives; a source with a key in another db is refused before anything is
/// written (twemproxy has db 0 only), its snapshot verified whole first.
#[test]
fn the_seed_command_line_into_twemproxy() {
    let source = RedisServer::start("7.0", None, &["--repl-diskless-sync-delay", "0"]);
    let mut con = source.conn();
    let mut p = redis::pipe();
    for k in 0..3000 {
        p.cmd("SET").arg(format!("k:{k}")).arg(k).ignore();
        p.cmd("HSET").arg(format!("h:{}", k % 10)).arg(k).arg(k).ignore();
    }
    p.query::<()>(&mut con).unwrap();
    // A snapshot that takes a while to make (0.1 ms a key): it is applied while it comes.
    let _: () = redis::cmd("CONFIG").arg("SET").arg("rdb-key-save-delay").arg("100").query(&mut con).unwrap();
    let (b1, b2) = (RedisServer::start("7.0", None, &[]), RedisServer::start("7.0", None, &[]));
    let proxy = Twemproxy::start(&[&b1, &b2]);
    let run = |dir: &std::path::Path| {
        bin()
            .current_dir(dir)
            .args(["-sip", "127.0.0.1", "-sport", &source.port.to_string()])
            .args(["-dip", "127.0.0.1", "-dport", &proxy.port.to_string()])
            .args(["-rdb", "dump.rdb", "-aof", "appendonly.aof", "-client", "4", "--until-synced", "--format", "json"])
            .output()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path());
    let text = crate::replay::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kind"], "twemproxy", "{report}");
    assert_eq!(report["snapshot_streamed"], true, "{report}");
    let ver = server_version(&mut con);
    let mut got = KeyMap::new();
    for b in [&b1, &b2] {
        got.extend(dataset(&mut b.conn(), ver));
    }
    assert_same(&got, &dataset(&mut con, ver), "into twemproxy");

    for b in [&b1, &b2] {
        redis::cmd("FLUSHALL").query::<()>(&mut b.conn()).unwrap();
    }
    redis::pipe().cmd("SELECT").arg(2).cmd("SET").arg("elsewhere").arg(1).query::<()>(&mut con).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path());
    let text = crate::replay::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("only db 0") && text.contains("nothing was written"), "{text}");
    let written: u64 = [&b1, &b2].iter().map(|b| redis::cmd("DBSIZE").query::<u64>(&mut b.conn()).unwrap()).sum();
    assert_eq!(written, 0, "{text}");
}

/// A user that may only replicate: no INFO, so in sync means nothing received is left.
#[test]
fn migrate_with_an_acl_user_that_may_only_replicate() {
    let source = RedisServer::start("7.0", None, &["--repl-diskless-sync-delay", "0"]);
    let mut con = source.conn();
    let mut p = redis::pipe();
    for k in 0..500 {
        p.cmd("SADD").arg(format!("s:{}", k % 7)).arg(k).ignore();
        p.cmd("SET").arg(format!("t:{k}")).arg(k).arg("EX").arg(1000).ignore();
    }
    p.query::<()>(&mut con).unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "rep", "on", ">s3cret", "-@all", "+psync", "+replconf", "+ping"])
        .query(&mut con)
        .unwrap();
    let dest = RedisServer::start("7.0", None, &[]);
    let state = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["migrate", "--from", &format!("redis://127.0.0.1:{}", source.port), "--to", &dest.url()])
        .args(["--source-user", "rep"])
        .args(["--until-synced", "-q"])
        .env("REDISMIGRATION_SOURCE_PASSWORD", "s3cret")
        .env("XDG_STATE_HOME", state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", crate::replay::text(&out));
    let ver = server_version(&mut con);
    assert_same(&dataset(&mut dest.conn(), ver), &dataset(&mut con, ver), "an ACL user");
    // With no -rdb or -aof the spool and its state are in the state directory.
    let spool = state.path().join("redis-migration").join(format!("127.0.0.1_{}-127.0.0.1_{}", source.port, dest.port));
    for f in ["dump.rdb", "appendonly.aof", "appendonly.aof.state", "appendonly.aof.applied"] {
        assert!(spool.join(f).exists(), "{} missing", spool.join(f).display());
    }
}

#[test]
fn migrate_with_a_wrong_password_writes_nothing() {
    let source = RedisServer::start("7.0", None, &["--requirepass", "right"]);
    let dest = RedisServer::start("7.0", None, &[]);
    let state = tempfile::tempdir().unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(
            &mut redis::Client::open(format!("redis://:right@127.0.0.1:{}", source.port))
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .unwrap();
    let out = bin()
        .args(["migrate", "-sport", &source.port.to_string(), "-sauth", "wrong", "--to", &dest.url()])
        .env("XDG_STATE_HOME", state.path())
        .output()
        .unwrap();
    let text = crate::replay::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("authentication"), "{text}");
    assert!(!text.contains("wrong"), "the password is never shown: {text}");
    let n: u64 = redis::cmd("DBSIZE").query(&mut dest.conn()).unwrap();
    assert_eq!(n, 0, "nothing written to the destination");
}

/// A destination that stops answering for seconds (SIGSTOP) under a busy source whose
/// output buffer for replicas is small: the source never drops us (everything goes to
/// the spool), and the destination ends equal.
#[test]
fn a_stalled_destination_never_stalls_the_source() {
    let source = RedisServer::start("7.0", None, &["--repl-diskless-sync-delay", "0"]);
    let mut con = source.conn();
    let dest = RedisServer::start("7.0", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let aof = dir.path().join("appendonly.aof");
    let mut m = start_migrate(&[
        "--from",
        &source.url(),
        "--to",
        &dest.url(),
        "-rdb",
        path(&dir.path().join("dump.rdb")),
        "-aof",
        path(&aof),
        "--format",
        "json",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    wait_snapshots(&mut m, dir.path(), 1);
    // After the snapshot: a replica more than 2 MB behind for 5 s, or 1 MB… is dropped.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg("replica 2mb 1mb 5")
        .query(&mut con)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer_with(source.url(), stop.clone(), false, false);
    std::thread::sleep(Duration::from_millis(500));
    dest.signal("STOP");
    std::thread::sleep(Duration::from_secs(4));
    let spooled_while_stopped = std::fs::metadata(&aof).unwrap().len();
    dest.signal("CONT");
    stop.store(true, Ordering::Relaxed);
    let written = writing.join().unwrap();
    assert!(written > 200, "{written} rounds written");
    let master: u64 = info_field(&mut con, "replication", "master_repl_offset").parse().unwrap();
    while spooled_offset(&aof) < Some(master) {
        if Instant::now() > deadline + Duration::from_secs(60) || m.try_wait().unwrap().is_some() {
            let _ = m.kill();
            panic!(
                "the spool never reached offset {master} (at {:?}): {:?}\n{}",
                spooled_offset(&aof),
                capture_output(&mut m),
                source.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    terminate(&m);
    let (code, report, text) = finish(m, 120);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["source"]["stopped"], "signal", "{report}");
    assert!(spooled_while_stopped > 4 << 20, "the writer outran the limit: {spooled_while_stopped} bytes spooled");
    // One full synchronization, never dropped for its output buffer.
    assert_eq!(info_field(&mut con, "stats", "sync_full"), "1");
    assert!(!source.log().contains("output buffer limits"), "{}", source.log());
    let ver = server_version(&mut con);
    assert_same(&dataset(&mut dest.conn(), ver), &dataset(&mut con, ver), "a stalled destination");
}

/// The spool's files in `dir`, as the arguments of one migrate command.
fn spool_args(dir: &std::path::Path) -> [String; 4] {
    [
        "-rdb".into(),
        dir.join("dump.rdb").display().to_string(),
        "-aof".into(),
        dir.join("appendonly.aof").display().to_string(),
    ]
}

/// Waits until `field` of the source's `INFO stats` reads `want`.
fn wait_stat(con: &mut redis::Connection, field: &str, want: &str, m: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while info_field(con, "stats", field) != want {
        if let Ok(Some(status)) = m.try_wait() {
            panic!("migrate exited ({status}) before {field} was {want}: {:?}", capture_output(m));
        }
        assert!(Instant::now() < deadline, "{field} never reached {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the spool's state names the source's offset (the writer has stopped).
fn wait_spooled(con: &mut redis::Connection, aof: &std::path::Path) {
    let master: u64 = info_field(con, "replication", "master_repl_offset").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while spooled_offset(aof) < Some(master) {
        assert!(Instant::now() < deadline, "the spool never reached offset {master}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The same command after SIGTERM, then after SIGKILL, while a writer goes on: each run
/// continues (a partial resynchronization, never a second full one), and the destination
/// ends equal, counters (INCR, INCRBY, APPEND, LPUSH) included.
#[test]
fn migrate_continues_after_sigterm_and_sigkill() {
    let source = RedisServer::start("7.0", None, &["--repl-diskless-sync-delay", "0", "--repl-backlog-size", "64mb"]);
    let mut con = source.conn();
    let dest = RedisServer::start("7.0", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    // The state in a file of its own (--state): `<state>` and `<state>.applied`.
    let state = dir.path().join("mig.state");
    let spool = spool_args(dir.path());
    let (from, to) = (source.url(), dest.url());
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--format", "json"];
    args.extend(spool.iter().map(String::as_str));
    args.extend(["--state", state.to_str().unwrap()]);
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(source.url(), stop.clone());

    let mut m = start_migrate(&args);
    wait_stat(&mut con, "sync_full", "1", &mut m);
    std::thread::sleep(Duration::from_millis(1500));
    terminate(&m);
    let (code, first, text) = finish(m, 60);
    assert_eq!(code, 0, "{text}");
    assert!(first["source"]["continued_from"].is_null(), "{first}");
    assert!(first["log_units"].as_u64().unwrap() > 0, "{first}");
    assert!(state.exists() && dir.path().join("mig.state.applied").exists());
    assert!(!dir.path().join("appendonly.aof.state").exists());
    std::thread::sleep(Duration::from_millis(500));

    let mut m = start_migrate(&args);
    wait_stat(&mut con, "sync_partial_ok", "1", &mut m);
    std::thread::sleep(Duration::from_millis(1500));
    m.kill().unwrap();
    m.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let mut m = start_migrate(&args);
    wait_stat(&mut con, "sync_partial_ok", "2", &mut m);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    writing.join().unwrap();
    wait_spooled(&mut con, &dir.path().join("mig"));
    terminate(&m);
    let (code, last, text) = finish(m, 60);
    assert_eq!(code, 0, "{text}");
    assert!(last["source"]["continued_from"].as_u64().is_some(), "{last}");
    // Resumed from the checkpoint the killed run left, the commands in doubt settled.
    assert!(last["resumed_at"].is_string(), "{last}");
    assert!(last["already_applied"].is_u64() && last["in_doubt_sent"].is_u64(), "{last}");
    assert_eq!(info_field(&mut con, "stats", "sync_full"), "1");
    assert_eq!(info_field(&mut con, "stats", "sync_partial_err"), "0");
    let ver = server_version(&mut con);
    assert_same(&dataset(&mut dest.conn(), ver), &dataset(&mut con, ver), "after SIGTERM and SIGKILL");
    // The bookkeeping stays on the destination while the migration is stopped.
    let marks: Vec<String> = redis::cmd("KEYS").arg("redis-migration:applied:*").query(&mut dest.conn()).unwrap();
    assert!(!marks.is_empty());
}

/// The destination SIGKILLed and restarted (appendonly, fsync always) in the middle of the
/// stream: the connection heals, nothing is applied twice.
#[test]
fn migrate_survives_a_destination_restart() {
    let source = RedisServer::start("7.0", None, &["--repl-diskless-sync-delay", "0"]);
    let mut con = source.conn();
    let mut dest = RedisServer::start("7.0", None, &["--appendonly", "yes", "--appendfsync", "always"]);
    let dir = tempfile::tempdir().unwrap();
    let aof = dir.path().join("appendonly.aof");
    let spool = spool_args(dir.path());
    let (from, to) = (source.url(), dest.url());
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--format", "json"];
    args.extend(spool.iter().map(String::as_str));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(source.url(), stop.clone());
    let mut m = start_migrate(&args);
    wait_stat(&mut con, "sync_full", "1", &mut m);
    std::thread::sleep(Duration::from_millis(1500));
    dest.kill();
    std::thread::sleep(Duration::from_millis(1000));
    dest.restart();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    writing.join().unwrap();
    wait_spooled(&mut con, &aof);
    terminate(&m);
    let (code, report, text) = finish(m, 120);
    assert_eq!(code, 0, "{text}");
    assert!(report["reconnects"].as_u64().unwrap() > 0, "{report}");
    let ver = server_version(&mut con);
    assert_same(&dataset(&mut dest.conn(), ver), &dataset(&mut con, ver), "a destination restarted");
}

/// A source whose backlog no longer holds the offset: exit 2 and why; a run with other
/// options is refused; `--resync` starts over and deletes the destination keys the new
/// snapshot no longer has, among those the filters select (here db 0), and no others.
#[test]
fn migrate_that_cannot_continue_says_so() {
    let source = RedisServer::start("7.0", None, &["--repl-diskless-sync-delay", "0", "--repl-backlog-size", "16kb"]);
    let mut con = source.conn();
    let dest = RedisServer::start("7.0", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let aof = dir.path().join("appendonly.aof");
    let spool = spool_args(dir.path());
    let (from, to) = (source.url(), dest.url());
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--format", "json", "--db", "0"];
    args.extend(spool.iter().map(String::as_str));
    for k in 0..300 {
        let _: () = redis::cmd("SET").arg(format!("k:{k}")).arg(k).query(&mut con).unwrap();
    }
    let mut m = start_migrate(&args);
    wait_stat(&mut con, "sync_full", "1", &mut m);
    std::thread::sleep(Duration::from_millis(500));
    terminate(&m);
    assert_eq!(finish(m, 60).0, 0);
    let mut dcon = dest.conn();
    let got: Option<String> = redis::cmd("GET").arg("k:7").query(&mut dcon).unwrap();
    assert_eq!(got.as_deref(), Some("7"));

    // Other options: refused before anything is written.
    let mut other = args.clone();
    other.extend(["--mode", "commands"]);
    let (code, _, text) = finish(start_migrate(&other), 60);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("other options"), "{text}");

    // More than the backlog holds, written while the migration is stopped; a key deleted
    // meanwhile; keys outside the filters on the destination alone.
    let _: () = redis::cmd("SET").arg("filler").arg(vec![b'x'; 64 << 10]).query(&mut con).unwrap();
    let _: () = redis::cmd("DEL").arg("k:7").query(&mut con).unwrap();
    let _: () = redis::pipe()
        .cmd("SELECT")
        .arg(1)
        .cmd("SET")
        .arg("outside")
        .arg("kept")
        .cmd("SELECT")
        .arg(0)
        .query(&mut dcon)
        .unwrap();
    let (code, _, text) = finish(start_migrate(&args), 60);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("cannot continue") && text.contains("--resync"), "{text}");
    assert_eq!(info_field(&mut con, "stats", "sync_partial_err"), "1");

    let mut again = args.clone();
    again.extend(["--resync", "--until-synced"]);
    let (code, report, text) = finish(start_migrate(&again), 60);
    assert_eq!(code, 0, "{text}");
    assert!(report["source"]["continued_from"].is_null(), "{report}");
    assert!(report["stale_deleted"].as_u64() >= Some(1), "{report}");
    wait_spooled(&mut con, &aof);
    let ver = server_version(&mut con);
    let mut got = dataset(&mut dcon, ver);
    let outside = got.remove(&(1, b"outside".to_vec()));
    assert!(outside.is_some(), "a key outside the filters was deleted");
    assert_same(&got, &dataset(&mut con, ver), "after --resync");
}

/// `--cutover` under a writer: pause, drain, verify equal, go; the writes the clients had
/// queued during the pause are applied after it lifts; the destination ends equal.
#[test]
fn cutover_goes_under_a_writer() {
    use std::io::BufRead;
    let source = RedisServer::start("8.2", None, &["--repl-diskless-sync-delay", "0"]);
    let mut con = source.conn();
    let dest = RedisServer::start("8.2", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_args(dir.path());
    let (from, to) = (source.url(), dest.url());
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--format", "json", "--cutover"];
    args.extend(["--pause-timeout", "8000", "-q"]);
    args.extend(spool.iter().map(String::as_str));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(source.url(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let mut m = start_migrate(&args);
    let mut lines = std::io::BufReader::new(m.stdout.take().unwrap()).lines();
    let verdict: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    // The verdict comes while the pause is on: the writer is held, and stops after it.
    stop.store(true, Ordering::Relaxed);
    assert_eq!(verdict["verdict"], "go", "{verdict}");
    assert_eq!(verdict["verified"], "touched", "{verdict}");
    // Right after it, the source still paused, the two are equal key by key (but keys
    // about to expire: a paused source expires nothing, the destination goes on).
    let ver = server_version(&mut con);
    let soon = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 + 1500;
    // (A paused source deletes no expired key: SCAN still lists it, TYPE says none.)
    let lasting = |mut m: KeyMap| {
        m.retain(|_, (v, t)| t.is_none_or(|t| t > soon) && !matches!(v, KeyView::Module(n) if n == "none"));
        m
    };
    assert!(verdict["pause_remaining_ms"].as_i64().unwrap() > 1000, "{verdict}");
    assert_same(&lasting(dataset(&mut dest.conn(), ver)), &lasting(dataset(&mut con, ver)), "during the pause");
    assert!(verdict["pause_remaining_ms"].as_i64().unwrap() > 0, "{verdict}");
    assert_eq!(verdict["diff"]["added"], 0, "{verdict}");
    assert!(verdict["diff"]["compared"].as_u64().unwrap() > 100, "{verdict}");
    let report: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let status = m.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{report}");
    assert!(report["after_pause_units"].as_u64().unwrap() > 0, "the writes queued during the pause: {report}");
    writing.join().unwrap();
    // The writer's last round went out as the pause lifted, within the second the tool
    // went on following: the destination holds it too.
    let ver = server_version(&mut con);
    assert_same(&dataset(&mut dest.conn(), ver), &dataset(&mut con, ver), "after a go");
    let marks: Vec<String> = redis::cmd("KEYS").arg("redis-migration:*").query(&mut dest.conn()).unwrap();
    assert!(marks.is_empty(), "the tool's keys are gone after a go: {marks:?}");
    assert!(!dir.path().join("appendonly.aof.applied").exists(), "a finished migration keeps no checkpoint");
}

/// A destination holding a key the source lacks: no-go, exit 1, the key named, and the
/// source unpaused at once.
#[test]
fn cutover_says_no_go_and_unpauses() {
    let source = RedisServer::start("8.2", None, &["--repl-diskless-sync-delay", "0"]);
    let mut con = source.conn();
    let dest = RedisServer::start("8.2", None, &[]);
    let mut p = redis::pipe();
    for k in 0..300 {
        p.cmd("SET").arg(format!("k:{k}")).arg(k).ignore();
    }
    p.query::<()>(&mut con).unwrap();
    let _: () = redis::cmd("SET").arg("only-here").arg("x").query(&mut dest.conn()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_args(dir.path());
    let (from, to) = (source.url(), dest.url());
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--format", "json", "--cutover", "-q"];
    args.extend(["--pause-timeout", "20000"]);
    args.extend(spool.iter().map(String::as_str));
    let out = bin().arg("migrate").args(&args).output().unwrap();
    let text = crate::replay::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let verdict: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(verdict["verdict"], "no-go", "{verdict}");
    assert!(verdict["differing"].to_string().contains("only-here"), "{verdict}");
    let t = Instant::now();
    let _: () = redis::cmd("SET").arg("after").arg(1).query(&mut con).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "the source stayed paused");
    // Not done: the marks stay for the next run.
    assert!(dir.path().join("appendonly.aof.applied").exists());
}

/// A user without CLIENT PAUSE: refused before any pause, with the way out; then
/// `--cutover=no-pause` on a quiet source goes.
#[test]
fn cutover_without_the_right_to_pause() {
    let source = RedisServer::start("8.2", None, &["--repl-diskless-sync-delay", "0"]);
    let mut con = source.conn();
    let mut p = redis::pipe();
    for k in 0..300 {
        p.cmd("HSET").arg(format!("h:{k}")).arg(k).arg(k).ignore();
    }
    p.query::<()>(&mut con).unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "mover", "on", ">pw", "~*", "+@all", "-client|pause"])
        .query(&mut con)
        .unwrap();
    let dest = RedisServer::start("8.2", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_args(dir.path());
    let from = format!("redis://mover:pw@127.0.0.1:{}", source.port);
    let to = dest.url();
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "-q"];
    args.extend(spool.iter().map(String::as_str));
    let mut paused = args.clone();
    paused.push("--cutover");
    let out = bin().arg("migrate").args(&paused).output().unwrap();
    let text = crate::replay::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("CLIENT PAUSE") && text.contains("--cutover=no-pause"), "{text}");
    let mut quiet = args.clone();
    quiet.extend(["--cutover=no-pause", "--quiet-ms", "500"]);
    let out = bin().arg("migrate").args(&quiet).output().unwrap();
    let text = crate::replay::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("cutover: GO"), "{text}");
    let ver = server_version(&mut con);
    assert_same(&dataset(&mut dest.conn(), ver), &dataset(&mut con, ver), "--cutover=no-pause");
}

/// The README's first set-up command: the whole job, and everything it started stopped.
#[test]
fn the_demo_script_runs_the_whole_job() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("scripts/demo.sh"))
        .env("BIN", env!("CARGO_BIN_EXE_redis-migration"))
        .output()
        .unwrap();
    let text = crate::replay::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("cutover: GO"), "{text}");
    assert!(text.contains("0 added, 0 removed, 0 type changed, 0 value changed, 0 TTL changed"), "{text}");
    assert!(text.contains("biggest keys"), "{text}");
}

/// A writer into a Redis Cluster that knows no cluster protocol: each command goes to the
/// master serving its slot by a map read from the cluster, read again after any error
/// (a failover, a moved slot); a failed command is left out (the source never had it).
/// Strings, counters, lists, hashes, sets, expiries, and multi-key commands on hash-tagged
/// keys (MSET, RENAME, SUNIONSTORE, MULTI blocks).
fn cluster_writer(nodes: Vec<String>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    use redis_migration::aof::keys::slot;
    std::thread::spawn(move || {
        let map = || -> Option<Vec<(u16, u16, String)>> {
            for url in &nodes {
                let Ok(mut c) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) else { continue };
                let Ok(slots) = redis::cmd("CLUSTER").arg("SLOTS").query::<redis::Value>(&mut c) else { continue };
                let mut out = Vec::new();
                if let redis::Value::Array(ranges) = slots {
                    for r in ranges {
                        let redis::Value::Array(r) = r else { continue };
                        let (redis::Value::Int(a), redis::Value::Int(b), redis::Value::Array(m)) =
                            (&r[0], &r[1], &r[2])
                        else {
                            continue;
                        };
                        let port = match &m[1] {
                            redis::Value::Int(p) => *p,
                            _ => continue,
                        };
                        out.push((*a as u16, *b as u16, format!("redis://127.0.0.1:{port}")));
                    }
                }
                return Some(out);
            }
            None
        };
        let mut ranges = map().unwrap();
        let mut conns: std::collections::HashMap<String, redis::Connection> = std::collections::HashMap::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) || i < 300 {
            let n = i % 40;
            let tag = format!("{{u{}}}", i % 17);
            let mut cmds: Vec<(String, redis::Pipeline)> = Vec::new();
            let mut one = |key: &str, f: &dyn Fn(&mut redis::Pipeline)| {
                let mut p = redis::pipe();
                f(&mut p);
                cmds.push((key.to_string(), p));
            };
            one(&format!("str:{n}"), &|p| {
                p.cmd("SET").arg(format!("str:{n}")).arg(i).ignore();
            });
            one("counter", &|p| {
                p.cmd("INCR").arg("counter").ignore();
            });
            one(&format!("list:{}", n % 4), &|p| {
                p.cmd("RPUSH").arg(format!("list:{}", n % 4)).arg(i).ignore();
            });
            one(&format!("hash:{}", n % 6), &|p| {
                p.cmd("HSET").arg(format!("hash:{}", n % 6)).arg(format!("f{n}")).arg(i).ignore();
            });
            one(&format!("ttl:{n}"), &|p| {
                p.cmd("SET").arg(format!("ttl:{n}")).arg(i).arg("EX").arg(1000).ignore();
            });
            one(&format!("{tag}a"), &|p| {
                p.cmd("MSET").arg(format!("{tag}a")).arg(i).arg(format!("{tag}b")).arg(i + 1).ignore();
                p.cmd("SADD").arg(format!("{tag}s1")).arg(n).ignore();
                p.cmd("SADD").arg(format!("{tag}s2")).arg(n + 100).ignore();
                p.cmd("SUNIONSTORE").arg(format!("{tag}su")).arg(format!("{tag}s1")).arg(format!("{tag}s2")).ignore();
                p.cmd("SET").arg(format!("{tag}from")).arg(i).ignore();
                p.cmd("RENAME").arg(format!("{tag}from")).arg(format!("{tag}to")).ignore();
            });
            one(&format!("{tag}x"), &|p| {
                p.atomic()
                    .cmd("INCR")
                    .arg(format!("{tag}x"))
                    .ignore()
                    .cmd("LPUSH")
                    .arg(format!("{tag}y"))
                    .arg(i)
                    .ignore();
            });
            for (key, p) in cmds {
                let s = slot(key.as_bytes());
                let Some(url) = ranges.iter().find(|r| r.0 <= s && s <= r.1).map(|r| r.2.clone()) else { continue };
                let ok = match conns.entry(url.clone()) {
                    std::collections::hash_map::Entry::Occupied(mut c) => p.query::<()>(c.get_mut()).is_ok(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        match redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) {
                            Ok(c) => p.query::<()>(v.insert(c)).is_ok(),
                            Err(_) => false,
                        }
                    }
                };
                if !ok {
                    if std::env::var("DEBUG_WRITER").is_ok() {
                        eprintln!("writer: {key} slot {s} to {url} failed");
                    }
                    conns.clear();
                    std::thread::sleep(Duration::from_millis(50));
                    if let Some(m) = map() {
                        ranges = m;
                    }
                }
            }
            i += 1;
            if i % 2 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        i
    })
}

/// Every master's keys (by its own INFO role), as one map.
fn union_of(cluster: &crate::util::RedisCluster) -> KeyMap {
    let mut all = KeyMap::new();
    for m in cluster.master_nodes() {
        let mut c = m.conn();
        let ver = server_version(&mut c);
        let mut keys = crate::oracle::dump_dbs(&mut c, ver, 0..1);
        keys.retain(|(_, k), _| !k.starts_with(b"redis-migration:"));
        all.extend(keys);
    }
    all
}

/// Waits until every master's spool state names that master's offset.
fn wait_cluster_spooled(cluster: &crate::util::RedisCluster, dir: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut behind = Vec::new();
        let masters = cluster.master_nodes();
        for m in masters {
            let mut c = m.conn();
            let offset: u64 = info_field(&mut c, "replication", "master_repl_offset").parse().unwrap();
            // The shard's spool: named by the first slot this master serves.
            let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
            let port = m.port as i64;
            let first = slots
                .iter()
                .filter(|r| matches!(&r[2], redis::Value::Array(n) if n[1] == redis::Value::Int(port)))
                .filter_map(|r| if let redis::Value::Int(a) = r[0] { Some(a) } else { None })
                .min()
                .unwrap();
            let aof = dir.join(format!("appendonly.slot{first}.aof"));
            if spooled_offset(&aof) < Some(offset) {
                behind.push((m.port, offset, spooled_offset(&aof)));
            }
        }
        if behind.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "spools behind: {behind:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A 3-master cluster under a writer (hash-tagged multi-key commands too), one
/// replication link per master, into `dest` (a server's URL): it ends holding the union
/// of the masters. Returns migrate's JSON report.
fn migrate_a_cluster(source: &crate::util::RedisCluster, dest_url: &str, dest: &dyn Fn() -> KeyMap) {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_args(dir.path());
    let from = source.url();
    let mut args: Vec<&str> = vec!["--from", &from, "--to", dest_url, "--format", "json"];
    args.extend(spool.iter().map(String::as_str));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = cluster_writer(source.nodes.iter().map(|n| n.url()).collect(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let mut m = start_migrate(&args);
    // Every master's snapshot spooled (its state file written), then writes after it.
    wait_snapshots(&mut m, dir.path(), 3);
    std::thread::sleep(Duration::from_millis(1500));
    let offsets = |s: &crate::util::RedisCluster| -> Vec<String> {
        s.master_nodes().iter().map(|m| info_field(&mut m.conn(), "replication", "master_repl_offset")).collect()
    };
    let before = offsets(source);
    stop.store(true, Ordering::Relaxed);
    let written = writing.join().unwrap();
    eprintln!("written {written} rounds; offsets {before:?} then {:?}", offsets(source));
    wait_cluster_spooled(source, dir.path());
    terminate(&m);
    let (code, report, text) = finish(m, 120);
    assert_eq!(code, 0, "{text}");
    let shards = report["shards"].as_array().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(shards.len(), 3, "{report}");
    assert!(shards.iter().all(|s| s["log_units"].as_u64().unwrap() > 0), "{report}");
    assert_same(&dest(), &union_of(source), "a cluster source");
}

#[test]
fn migrate_from_a_cluster_into_one_server() {
    let source = crate::util::RedisCluster::start_version("7.0", 3, 0, &["--repl-diskless-sync-delay", "0"]);
    let dest = RedisServer::start("7.0", None, &[]);
    migrate_a_cluster(&source, &dest.url(), &|| dataset(&mut dest.conn(), (7, 0)));
    assert!(dataset(&mut dest.conn(), (7, 0)).len() > 100);
}

#[test]
fn migrate_from_a_cluster_into_a_cluster() {
    let source = crate::util::RedisCluster::start_version("7.0", 3, 0, &["--repl-diskless-sync-delay", "0"]);
    let dest = crate::util::RedisCluster::start(3, 0);
    migrate_a_cluster(&source, &dest.url(), &|| union_of(&dest));
}

/// The node ids of a cluster's masters and the master serving slot 0, with its replica.
fn node_id(s: &RedisServer) -> String {
    redis::cmd("CLUSTER").arg("MYID").query(&mut s.conn()).unwrap()
}

/// A `CLUSTER FAILOVER` on one source shard while migrating: the link moves to the
/// promoted replica and continues (no full sync of that shard), and the end is equal.
#[test]
fn migrate_follows_a_source_failover() {
    let source = crate::util::RedisCluster::start_version("7.0", 3, 1, &["--repl-diskless-sync-delay", "0"]);
    let dest = RedisServer::start("7.0", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_args(dir.path());
    let (from, to) = (source.url(), dest.url());
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--format", "json"];
    args.extend(spool.iter().map(String::as_str));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = cluster_writer(source.nodes.iter().map(|n| n.url()).collect(), stop.clone());
    let mut m = start_migrate(&args);
    let deadline = Instant::now() + Duration::from_secs(60);
    wait_snapshots(&mut m, dir.path(), 3);
    std::thread::sleep(Duration::from_millis(1000));
    // The replica of the master serving slot 0 takes over.
    let masters: Vec<String> = source.master_nodes().iter().map(|s| node_id(s)).collect();
    let replica = source
        .nodes
        .iter()
        .find(|s| {
            let repl: String = redis::cmd("INFO").arg("replication").query(&mut s.conn()).unwrap();
            let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut s.conn()).unwrap();
            let owner_of_0 = slots.iter().find(|r| r[0] == redis::Value::Int(0)).map(|r| match &r[2] {
                redis::Value::Array(n) => n[2].clone(),
                _ => redis::Value::Nil,
            });
            let master_of_me: String = repl
                .lines()
                .find_map(|l| l.strip_prefix("master_port:"))
                .map(|p| p.trim().to_string())
                .unwrap_or_default();
            repl.contains("role:slave")
                && source.nodes.iter().any(|n| {
                    n.port.to_string() == master_of_me
                        && owner_of_0 == Some(redis::Value::BulkString(node_id(n).into_bytes()))
                })
        })
        .expect("the replica of slot 0's master");
    assert!(!masters.contains(&node_id(replica)));
    let _: () = redis::cmd("CLUSTER").arg("FAILOVER").query(&mut replica.conn()).unwrap();
    while !info_field(&mut replica.conn(), "replication", "role").contains("master") {
        assert!(Instant::now() < deadline, "the failover did not happen");
        std::thread::sleep(Duration::from_millis(50));
    }
    source.wait_ok();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    writing.join().unwrap();
    wait_cluster_spooled(&source, dir.path());
    terminate(&m);
    let (code, report, text) = finish(m, 120);
    assert_eq!(code, 0, "{text}");
    let slot0 = report["shards"].as_array().unwrap().iter().find(|s| s["shard"] == "slot0").unwrap().clone();
    assert_eq!(slot0["source_links"], 2, "{slot0}");
    assert!(slot0["source"]["continued_from"].as_u64().is_some(), "{slot0}");
    // The promoted replica served no full synchronization: we, and its old master,
    // continued.
    let mut rc = replica.conn();
    assert_eq!(info_field(&mut rc, "stats", "sync_full"), "0");
    assert!(info_field(&mut rc, "stats", "sync_partial_ok").parse::<u32>().unwrap() >= 2);
    assert_same(&dataset(&mut dest.conn(), (7, 0)), &union_of(&source), "after a source failover");
}

/// Slots moved on the source while migrating: every shard stops, exit 2, and says why.
#[test]
fn migrate_stops_when_the_source_is_resharded() {
    let source = crate::util::RedisCluster::start_version("7.0", 3, 0, &["--repl-diskless-sync-delay", "0"]);
    // A key for every 7th slot, each written to the master serving it.
    let mut key_of = std::collections::HashMap::new();
    let mut i = 0u64;
    while key_of.len() < 16384 {
        let k = format!("k{i}");
        key_of.entry(redis_migration::aof::keys::slot(k.as_bytes())).or_insert(k);
        i += 1;
    }
    for node in source.master_nodes() {
        let mut c = node.conn();
        let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
        let port = redis::Value::Int(node.port as i64);
        let mut p = redis::pipe();
        for r in slots.iter().filter(|r| matches!(&r[2], redis::Value::Array(n) if n[1] == port)) {
            let (redis::Value::Int(a), redis::Value::Int(b)) = (&r[0], &r[1]) else { continue };
            for s in (*a as u16..=*b as u16).step_by(7) {
                p.cmd("SET").arg(&key_of[&s]).arg(s).ignore();
            }
        }
        p.query::<()>(&mut c).unwrap();
    }
    let dest = RedisServer::start("7.0", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_args(dir.path());
    let (from, to) = (source.url(), dest.url());
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--format", "json"];
    args.extend(spool.iter().map(String::as_str));
    let mut m = start_migrate(&args);
    wait_snapshots(&mut m, dir.path(), 3);
    let masters = source.master_nodes();
    let out = Command::new("redis-cli")
        .args(["--cluster", "reshard", &format!("127.0.0.1:{}", masters[0].port)])
        .args(["--cluster-from", &node_id(masters[1]), "--cluster-to", &node_id(masters[0])])
        .args(["--cluster-slots", "50", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let (code, _, text) = finish(m, 60);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("resharded") && text.contains("not supported"), "{text}");
}

/// `capture` of a cluster: one snapshot and log per master, named by its first slot,
/// each a valid RDB holding that master's keys.
#[test]
fn capture_of_a_cluster_writes_a_pair_per_master() {
    let source = crate::util::RedisCluster::start_version("7.0", 3, 0, &["--repl-diskless-sync-delay", "0"]);
    let stop = Arc::new(AtomicBool::new(true));
    cluster_writer(source.nodes.iter().map(|n| n.url()).collect(), stop).join().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_args(dir.path());
    let out = bin()
        .args(["capture", "--from", &source.url(), "--stop-after-snapshot", "--format", "json", "-q"])
        .args(&spool)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", crate::replay::text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shards = report["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3, "{report}");
    let mut keys = 0;
    for s in shards {
        let rdb = s["rdb"].as_str().unwrap();
        assert!(rdb.contains(&format!("dump.{}.rdb", s["shard"].as_str().unwrap())), "{s}");
        let check = crate::util::run(&["check", rdb]);
        let text = crate::replay::text(&check);
        assert_eq!(check.status.code(), Some(0), "{text}");
        keys += text
            .lines()
            .find_map(|l| l.strip_prefix("keys: ")?.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{text}"));
    }
    let want: u64 =
        source.master_nodes().iter().map(|m| redis::cmd("DBSIZE").query::<u64>(&mut m.conn()).unwrap()).sum();
    assert_eq!(keys, want);
}

/// `--cutover` of a cluster source under a writer: every master paused, every link
/// drained, the whole cluster verified against the destination, one verdict; the
/// writes the clients had queued are applied after the pause lifts.
#[test]
fn cutover_of_a_cluster_source() {
    use std::io::BufRead;
    let source = crate::util::RedisCluster::start_version("7.0", 3, 0, &["--repl-diskless-sync-delay", "0"]);
    let dest = RedisServer::start("7.0", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_args(dir.path());
    let (from, to) = (source.url(), dest.url());
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--format", "json", "--cutover", "-q"];
    args.extend(["--pause-timeout", "5000", "--verify", "all"]);
    args.extend(spool.iter().map(String::as_str));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = cluster_writer(source.nodes.iter().map(|n| n.url()).collect(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let mut m = start_migrate(&args);
    let mut lines = std::io::BufReader::new(m.stdout.take().unwrap()).lines();
    let verdict: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(verdict["verdict"], "go", "{verdict}");
    assert_eq!(verdict["offset"].as_array().map(Vec::len), Some(3), "one offset per master: {verdict}");
    assert_eq!(verdict["verified"], "all", "{verdict}");
    assert!(verdict["diff"]["compared"].as_u64().unwrap() > 100, "{verdict}");
    let report: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(m.wait().unwrap().code(), Some(0), "{report}");
    assert_eq!(report["shards"].as_array().unwrap().len(), 3, "{report}");
    writing.join().unwrap();
    assert_same(&dataset(&mut dest.conn(), (7, 0)), &union_of(&source), "a cluster after a go");
}

/// The tool killed (SIGKILL) while the source is paused: the pause lifts by itself.
#[test]
fn cutover_pause_lifts_when_the_tool_dies() {
    use std::io::BufRead;
    let source = RedisServer::start("8.2", None, &["--repl-diskless-sync-delay", "0"]);
    let mut con = source.conn();
    let mut p = redis::pipe();
    for k in 0..20_000 {
        p.cmd("HSET").arg(format!("h:{k}")).arg("a").arg(k).arg("b").arg(k + 1).ignore();
    }
    p.query::<()>(&mut con).unwrap();
    let dest = RedisServer::start("8.2", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_args(dir.path());
    let (from, to) = (source.url(), dest.url());
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--cutover", "--pause-timeout", "3000"];
    args.extend(spool.iter().map(String::as_str));
    let mut m = start_migrate(&args);
    let mut err = std::io::BufReader::new(m.stderr.take().unwrap()).lines();
    // Killed as soon as it says the source is paused (it is then draining or verifying).
    let line = err.find(|l| l.as_ref().is_ok_and(|l| l.contains("paused at offset"))).expect("the pause").unwrap();
    m.kill().unwrap();
    m.wait().unwrap();
    let t = Instant::now();
    let _: () = redis::cmd("SET").arg("after").arg(1).query(&mut con).unwrap();
    let waited = t.elapsed();
    assert!(waited > Duration::from_millis(300), "the source was paused ({line}): the write waited {waited:?}");
    assert!(waited < Duration::from_secs(5), "the pause lifted by itself: the write waited {waited:?}");
}

/// The link to a standalone source cut (`CLIENT KILL TYPE replica`) under a writer: the
/// source is asked again and continues, no second full sync, equal at the end.
#[test]
fn migrate_continues_after_the_source_drops_the_link() {
    let source = RedisServer::start("7.0", None, &["--repl-diskless-sync-delay", "0", "--repl-backlog-size", "64mb"]);
    let mut con = source.conn();
    let dest = RedisServer::start("7.0", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let aof = dir.path().join("appendonly.aof");
    let spool = spool_args(dir.path());
    let (from, to) = (source.url(), dest.url());
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--format", "json"];
    args.extend(spool.iter().map(String::as_str));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(source.url(), stop.clone());
    let mut m = start_migrate(&args);
    wait_stat(&mut con, "sync_full", "1", &mut m);
    std::thread::sleep(Duration::from_millis(1000));
    let killed: u64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica").query(&mut con).unwrap();
    assert_eq!(killed, 1);
    wait_stat(&mut con, "sync_partial_ok", "1", &mut m);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    writing.join().unwrap();
    wait_spooled(&mut con, &aof);
    terminate(&m);
    let (code, report, text) = finish(m, 60);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["source_links"], 2, "{report}");
    assert_eq!(info_field(&mut con, "stats", "sync_full"), "1");
    let ver = server_version(&mut con);
    assert_same(&dataset(&mut dest.conn(), ver), &dataset(&mut con, ver), "after a dropped link");
}

/// `--kill-clients`: just before the pause lifts, the source's normal clients are
/// disconnected (ours is not).
#[test]
fn cutover_kills_the_clients_before_the_pause_lifts() {
    let source = RedisServer::start("8.2", None, &["--repl-diskless-sync-delay", "0"]);
    let mut con = source.conn();
    let mut p = redis::pipe();
    for k in 0..300 {
        p.cmd("SET").arg(format!("k:{k}")).arg(k).ignore();
    }
    p.query::<()>(&mut con).unwrap();
    let dest = RedisServer::start("8.2", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_args(dir.path());
    let (from, to) = (source.url(), dest.url());
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--format", "json", "-q"];
    args.extend(["--cutover", "--pause-timeout", "2000", "--kill-clients"]);
    args.extend(spool.iter().map(String::as_str));
    let out = bin().arg("migrate").args(&args).output().unwrap();
    let text = crate::replay::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert!(report["verdict"]["clients_killed"].as_i64() >= Some(1), "{report}");
    // This connection was one of them.
    assert!(redis::cmd("PING").query::<String>(&mut con).is_err(), "the client is still connected");
}

/// A stream that ends with a SELECT whose command is left out of the spool (a PUBLISH in
/// another db): `--until-synced` still sees everything applied and ends.
#[test]
fn until_synced_ends_after_a_select_with_nothing_after_it() {
    let source = RedisServer::start("7.0", None, &["--repl-diskless-sync-delay", "0"]);
    let mut con = source.conn();
    let mut p = redis::pipe();
    for k in 0..500 {
        p.cmd("SET").arg(format!("k:{k}")).arg(k).ignore();
    }
    p.query::<()>(&mut con).unwrap();
    // A snapshot slow enough for the writes below to follow it in the stream.
    let _: () = redis::cmd("CONFIG").arg("SET").arg("rdb-key-save-delay").arg("2000").query(&mut con).unwrap();
    let dest = RedisServer::start("7.0", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_args(dir.path());
    let (from, to) = (source.url(), dest.url());
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--format", "json", "--until-synced"];
    args.extend(spool.iter().map(String::as_str));
    let mut m = start_migrate(&args);
    wait_stat(&mut con, "sync_full", "1", &mut m);
    let mut other = source.conn();
    let _: () = redis::pipe().cmd("SELECT").arg(1).cmd("SET").arg("in-db1").arg(1).query(&mut other).unwrap();
    let _: i64 = redis::cmd("PUBLISH").arg("news").arg("hello").query(&mut con).unwrap();
    let (code, report, text) = finish(m, 60);
    assert_eq!(code, 0, "{text}");
    assert!(report["synced_after_s"].as_f64().is_some(), "{report}");
    let got: Option<String> = redis::pipe()
        .cmd("SELECT")
        .arg(1)
        .ignore()
        .cmd("GET")
        .arg("in-db1")
        .query::<(Option<String>,)>(&mut dest.conn())
        .unwrap()
        .0;
    assert_eq!(got.as_deref(), Some("1"));
}

/// `--resync` of a cluster source whose backlogs were overrun: every master takes a new
/// snapshot, each deletes only the stale keys of its own slots, and the destination ends
/// equal to the union of the masters (no master's keys deleted by another's resync).
#[test]
fn resync_of_a_cluster_source() {
    let source = crate::util::RedisCluster::start_version(
        "7.0",
        3,
        0,
        &["--repl-diskless-sync-delay", "0", "--repl-backlog-size", "16kb"],
    );
    let stop = Arc::new(AtomicBool::new(true));
    cluster_writer(source.nodes.iter().map(|n| n.url()).collect(), stop.clone()).join().unwrap();
    let dest = RedisServer::start("7.0", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_args(dir.path());
    let (from, to) = (source.url(), dest.url());
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--format", "json", "-q"];
    args.extend(spool.iter().map(String::as_str));
    let mut synced = args.clone();
    synced.push("--until-synced");
    let (code, _, text) = finish(start_migrate(&synced), 60);
    assert_eq!(code, 0, "{text}");
    // While stopped: a key deleted on its master, more than every backlog holds.
    let stale = "str:7";
    let owner = redis_migration::aof::keys::slot(stale.as_bytes());
    for m in source.master_nodes() {
        let mut c = m.conn();
        let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
        let port = redis::Value::Int(m.port as i64);
        let mine = slots.iter().any(|r| {
            matches!((&r[0], &r[1], &r[2]), (redis::Value::Int(a), redis::Value::Int(b), redis::Value::Array(n))
                if *a <= owner as i64 && owner as i64 <= *b && n[1] == port)
        });
        if mine {
            let _: i64 = redis::cmd("DEL").arg(stale).query(&mut c).unwrap();
        }
        // A key of this master's own slots, 64 KB: past its 16 KB backlog.
        let tag: String = redis::cmd("CLUSTER").arg("MYID").query(&mut c).unwrap();
        let key = (0..100_000)
            .map(|i| format!("filler:{tag}:{i}"))
            .find(|k| {
                let s = redis_migration::aof::keys::slot(k.as_bytes()) as i64;
                slots.iter().any(|r| {
                    matches!((&r[0], &r[1], &r[2]), (redis::Value::Int(a), redis::Value::Int(b), redis::Value::Array(n))
                        if *a <= s && s <= *b && n[1] == port)
                })
            })
            .unwrap();
        let _: () = redis::cmd("SET").arg(key).arg(vec![b'x'; 64 << 10]).query(&mut c).unwrap();
    }
    let (code, _, text) = finish(start_migrate(&synced), 60);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("cannot continue"), "{text}");
    synced.push("--resync");
    let (code, report, text) = finish(start_migrate(&synced), 60);
    assert_eq!(code, 0, "{text}");
    let deleted: u64 = report["shards"].as_array().unwrap().iter().map(|s| s["stale_deleted"].as_u64().unwrap()).sum();
    assert_eq!(deleted, 1, "{report}");
    assert_same(&dataset(&mut dest.conn(), (7, 0)), &union_of(&source), "a cluster after --resync");
}

/// A source reached over TLS (its CA and a client certificate): the snapshot and the
/// stream come through, the destination ends equal.
#[test]
fn migrate_from_a_source_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    crate::replay::make_certs(certs.path());
    let p = |f: &str| certs.path().join(f).to_str().unwrap().to_string();
    let tls_port = crate::util::free_port().to_string();
    let (crt, key, ca) = (p("server.crt"), p("server.key"), p("ca.crt"));
    let source = RedisServer::start(
        "7.0",
        Some(&crate::util::testdata("redis-7.0.rdb")),
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
            "--repl-diskless-sync-delay",
            "0",
        ],
    );
    let mut con = source.conn();
    let mut pipe = redis::pipe();
    for k in 0..200 {
        pipe.cmd("SET").arg(format!("k:{k}")).arg(k).ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
    let dest = RedisServer::start("7.0", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_args(dir.path());
    let from = format!("rediss://127.0.0.1:{tls_port}");
    let to = dest.url();
    let (ca, cert, key) = (p("ca.crt"), p("client.crt"), p("client.key"));
    let mut args: Vec<&str> = vec!["--from", &from, "--to", &to, "--until-synced", "-q"];
    args.extend(["--source-tls-ca", &ca, "--source-tls-cert", &cert, "--source-tls-key", &key]);
    args.extend(spool.iter().map(String::as_str));
    let out = bin().arg("migrate").args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", crate::replay::text(&out));
    let ver = server_version(&mut con);
    assert_same(&dataset(&mut dest.conn(), ver), &dataset(&mut con, ver), "over TLS");
}

/// The tool's own spool (no -aof) is freed as it is applied: holes punched in the applied
/// part, and a resume after SIGTERM starts from the recorded trim and continues.
#[test]
fn the_own_spool_is_trimmed_and_still_resumes() {
    use std::os::unix::fs::MetadataExt;
    let source = RedisServer::start("7.0", None, &["--repl-diskless-sync-delay", "0", "--repl-backlog-size", "64mb"]);
    let mut con = source.conn();
    let dest = RedisServer::start("7.0", None, &[]);
    let state = tempfile::tempdir().unwrap();
    let spool = state.path().join("redis-migration").join(format!("127.0.0.1_{}-127.0.0.1_{}", source.port, dest.port));
    let aof = spool.join("appendonly.aof");
    let (from, to) = (source.url(), dest.url());
    let args = ["migrate", "--from", &from, "--to", &to, "--format", "json", "--trim-every", "65536"];
    let start = || {
        bin()
            .args(args)
            .env("XDG_STATE_HOME", state.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(source.url(), stop.clone());
    let mut m = start();
    wait_stat(&mut con, "sync_full", "1", &mut m);
    std::thread::sleep(Duration::from_millis(3000));
    terminate(&m);
    let (code, _, text) = finish(m, 60);
    assert_eq!(code, 0, "{text}");
    let meta = std::fs::metadata(&aof).unwrap();
    let allocated = meta.blocks() * 512;
    assert!(meta.len() > 1 << 20, "{} bytes spooled", meta.len());
    assert!(allocated < meta.len() / 2, "{allocated} bytes allocated of {}", meta.len());
    assert!(spool.join("appendonly.aof.trimmed").exists());
    // Again: it continues from the trim.
    let mut m = start();
    wait_stat(&mut con, "sync_partial_ok", "1", &mut m);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    writing.join().unwrap();
    wait_spooled(&mut con, &aof);
    terminate(&m);
    let (code, report, text) = finish(m, 60);
    assert_eq!(code, 0, "{text}");
    assert!(report["source"]["continued_from"].as_u64().is_some(), "{report}");
    assert_eq!(info_field(&mut con, "stats", "sync_full"), "1");
    let ver = server_version(&mut con);
    assert_same(&dataset(&mut dest.conn(), ver), &dataset(&mut con, ver), "a trimmed spool resumed");

    // With --keep-spool, what this run spools stays allocated.
    let before = std::fs::metadata(&aof).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (stop, mut w) = (stop.clone(), source.conn());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut p = redis::pipe();
                for _ in 0..100 {
                    p.cmd("SET").arg(format!("kept:{}", i % 5000)).arg(i).ignore();
                    i += 1;
                }
                p.query::<()>(&mut w).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut m = bin()
        .args(args)
        .arg("--keep-spool")
        .env("XDG_STATE_HOME", state.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_stat(&mut con, "sync_partial_ok", "2", &mut m);
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::Relaxed);
    writing.join().unwrap();
    wait_spooled(&mut con, &aof);
    terminate(&m);
    let (code, _, text) = finish(m, 60);
    assert_eq!(code, 0, "{text}");
    let after = std::fs::metadata(&aof).unwrap();
    let (grew, kept) = (after.len() - before.len(), (after.blocks() - before.blocks()) * 512);
    assert!(grew > 256 << 10, "{grew} bytes spooled");
    assert!(kept + (64 << 10) >= grew, "{kept} bytes more allocated for {grew} more spooled");
    assert_same(&dataset(&mut dest.conn(), ver), &dataset(&mut con, ver), "--keep-spool");
}

/// What [`relay`] does to the snapshot it carries (`$<len>` framing).
#[derive(Clone, Copy)]
enum Fault {
    /// Flips the payload's last byte (the checksum's).
    FlipChecksum,
    /// Closes both ends once half the payload has passed.
    CutHalfway,
}

/// A TCP relay on a free loopback port to the server on `port`, every connection relayed
/// as it is, except that a snapshot transfer (the `$<len>` line after `+FULLRESYNC`) is
/// slowed and meets `fault`: a slow network that damages or drops a transfer.
fn relay(port: u16, fault: Fault) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut server = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
                let _ = s2.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                // Lines until the snapshot's header, then the payload counted down.
                let (mut line, mut after_fullresync, mut left, mut len) = (Vec::new(), false, None::<u64>, 0u64);
                let mut buf = vec![0u8; 16 << 10];
                loop {
                    let n = match server.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &mut buf[..n];
                    let mut cut_at = None;
                    for (i, b) in chunk.iter_mut().enumerate() {
                        match left {
                            Some(0) => {}
                            Some(l) => {
                                match fault {
                                    Fault::FlipChecksum if l == 1 => *b ^= 0x5a,
                                    Fault::CutHalfway if l == len / 2 => cut_at = cut_at.or(Some(i)),
                                    _ => {}
                                }
                                left = Some(l - 1);
                            }
                            None => {
                                line.push(*b);
                                if *b == b'\n' {
                                    let text = String::from_utf8_lossy(&line).trim().to_string();
                                    if text.starts_with("+FULLRESYNC") {
                                        after_fullresync = true;
                                    } else if let (true, Some(n)) = (after_fullresync, text.strip_prefix('$')) {
                                        len = n.parse().expect("a $<len> transfer");
                                        left = Some(len);
                                    }
                                    line.clear();
                                }
                            }
                        }
                    }
                    if let Some(i) = cut_at {
                        let _ = client.write_all(&chunk[..i]);
                        let _ = client.shutdown(std::net::Shutdown::Both);
                        let _ = server.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    if client.write_all(chunk).is_err() {
                        break;
                    }
                    // A slow network while the snapshot passes (about 1.6 MB/s): the
                    // tool begins to apply it before its end.
                    if left.is_some_and(|l| l > 0) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    at
}

/// A source of `keys` string keys, its snapshots sent with a length (disk-based).
fn source_of(keys: u32) -> RedisServer {
    let source = RedisServer::start("7.0", None, &["--repl-diskless-sync", "no"]);
    let mut con = source.conn();
    let mut p = redis::pipe();
    for k in 0..keys {
        p.cmd("SET").arg(format!("key:{k}")).arg(format!("value-{k}-{}", "x".repeat(40))).ignore();
    }
    p.query::<()>(&mut con).unwrap();
    source
}

/// A snapshot whose checksum comes wrong, after its keys were applied as they came: exit
/// 2, and the report says how many keys were written, which the destination holds.
#[test]
fn a_snapshot_with_a_bad_checksum_stops_and_says_what_was_written() {
    let source = source_of(20_000);
    let dest = RedisServer::start("7.0", None, &[]);
    let port = relay(source.port, Fault::FlipChecksum);
    let dir = tempfile::tempdir().unwrap();
    let [a, b, c, d] = spool_args(dir.path());
    let m = start_migrate(&[
        "--from",
        &format!("redis://127.0.0.1:{port}"),
        "--to",
        &dest.url(),
        &a,
        &b,
        &c,
        &d,
        "--until-synced",
        "--format",
        "json",
    ]);
    let (code, report, text) = finish(m, 120);
    assert_eq!(code, 2, "{text}");
    let failure = report["failure"].as_str().unwrap_or_else(|| panic!("no failure: {text}"));
    assert!(failure.contains("CRC-64 mismatch"), "{failure}");
    assert!(failure.contains("keys of the snapshot") && failure.contains("already written"), "{failure}");
    assert_eq!(report["snapshot_streamed"], true, "{report}");
    // The keys the report counts as written are on the destination.
    let written = report["keys"].as_u64().unwrap();
    assert!(failure.contains(&format!("{written} keys")), "{failure}");
    let on_dest: u64 = redis::cmd("DBSIZE").query(&mut dest.conn()).unwrap();
    assert_eq!(on_dest, written, "{text}");
    assert!(written > 0, "{text}");
}

/// A transfer that breaks halfway: exit 2, naming the keys already written, which are
/// exactly those the destination holds; nothing after the cut.
#[test]
fn a_snapshot_cut_halfway_stops_and_says_what_was_written() {
    let source = source_of(20_000);
    let dest = RedisServer::start("7.0", None, &[]);
    let port = relay(source.port, Fault::CutHalfway);
    let dir = tempfile::tempdir().unwrap();
    let [a, b, c, d] = spool_args(dir.path());
    let m = start_migrate(&["--from", &format!("redis://127.0.0.1:{port}"), "--to", &dest.url(), &a, &b, &c, &d]);
    let (code, _, text) = finish(m, 120);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("already written"), "{text}");
    let on_dest: u64 = redis::cmd("DBSIZE").query(&mut dest.conn()).unwrap();
    assert!(on_dest > 0 && on_dest < 20_000, "{on_dest} keys: {text}");
    assert!(text.contains(&format!("{on_dest} keys of the snapshot")), "{on_dest} keys on the destination: {text}");
}
