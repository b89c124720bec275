//! `capture` against real sources: a writer busy before and during the snapshot, the
//! capture stopped by SIGTERM once it has caught up, its files replayed into a fresh
//! server, which must then hold what the source holds, key by key.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::oracle::{dump_server, server_version, KeyMap, KeyView};
use crate::replay::replay;
use crate::util::{bin, RedisServer};

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Starts `capture` from `url` into `dir`'s dump.rdb and appendonly.aof.
fn start_capture(url: &str, dir: &Path, extra: &[&str]) -> Child {
    bin()
        .arg("capture")
        .args(["--from", url, "-rdb", path(&dir.join("dump.rdb")), "-aof", path(&dir.join("appendonly.aof"))])
        .args(["--format", "json"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start capture")
}

pub(crate) fn info_field(con: &mut redis::Connection, section: &str, field: &str) -> String {
    let info: String = redis::cmd("INFO").arg(section).query(con).unwrap();
    info.lines().find_map(|l| l.strip_prefix(&format!("{field}:"))).unwrap_or("").trim().to_string()
}

/// The offset in the capture's state file, once there is one.
pub(crate) fn spooled_offset(aof: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(format!("{}.state", aof.display())).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["offset"].as_u64()
}

/// Waits until the spool's durable offset is the source's replication offset.
fn wait_caught_up(source: &RedisServer, aof: &Path, capture: &mut Child) {
    let mut con = source.conn();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let master: u64 = info_field(&mut con, "replication", "master_repl_offset").parse().unwrap();
        if spooled_offset(aof) == Some(master) {
            return;
        }
        if let Ok(Some(status)) = capture.try_wait() {
            panic!("capture exited early ({status}): {:?}\n{}", capture_output(capture), source.log());
        }
        assert!(Instant::now() < deadline, "capture never caught up with offset {master}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn capture_output(capture: &mut Child) -> (String, String) {
    use std::io::Read;
    let mut out = String::new();
    let mut err = String::new();
    capture.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    capture.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (out, err)
}

/// SIGTERM; the exit status and the JSON report.
fn terminate(mut capture: Child) -> (i32, serde_json::Value, String) {
    let ok = Command::new("kill").arg("-TERM").arg(capture.id().to_string()).status().unwrap();
    assert!(ok.success());
    let status = capture.wait().unwrap();
    let (out, err) = capture_output(&mut capture);
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not a JSON report ({e}): {out}{err}"));
    (status.code().unwrap_or(-1), report, err)
}

/// A writer of every type until `stop`: strings, hashes, lists, sets, zsets, a stream
/// read by a consumer group, MULTI blocks, expiries (relative ones, and short ones that
/// fire during the run), a Lua script, renames, a 512 KB value now and then.
pub(crate) fn writer(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    writer_with(url, stop, true, true)
}

/// [`writer`], with or without its big values (a source whose replica output buffer is
/// limited to 2 MB drops any replica when a few are written in one event loop round), and
/// paced (at most about 2,000 rounds a second: a disk-based snapshot slowed by
/// `rdb-key-save-delay` on a busy 2-core machine takes seconds, and the master holds every
/// write meanwhile in its output buffer for the replica, 256 MB at most) or at full speed.
pub(crate) fn writer_with(
    url: String,
    stop: Arc<AtomicBool>,
    big_values: bool,
    paced: bool,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: () =
            redis::cmd("XGROUP").arg("CREATE").arg("s").arg("g").arg("0").arg("MKSTREAM").query(&mut con).unwrap();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) || i < 200 {
            let n = i % 50;
            let mut p = redis::pipe();
            p.cmd("SET").arg(format!("str:{n}")).arg(i).ignore();
            p.cmd("HSET").arg(format!("hash:{}", n % 7)).arg(format!("f{n}")).arg(i).ignore();
            p.cmd("RPUSH").arg("list").arg(i).ignore();
            p.cmd("SADD").arg(format!("set:{}", n % 5)).arg(i).ignore();
            p.cmd("ZADD").arg("zset").arg(i as f64 / 3.0).arg(format!("m{n}")).ignore();
            p.cmd("XADD").arg("s").arg("*").arg("i").arg(i).ignore();
            p.cmd("SETEX").arg(format!("ttl:{n}")).arg(1000 + n).arg(i).ignore();
            p.cmd("EXPIRE").arg(format!("str:{n}")).arg(2000 + n).ignore();
            p.cmd("SET").arg(format!("px:{n}")).arg(i).arg("PX").arg(900_000).ignore();
            p.cmd("SET").arg(format!("short:{n}")).arg(i).arg("PX").arg(300).ignore();
            p.cmd("APPEND").arg("appended").arg(format!("{i},")).ignore();
            p.cmd("SET").arg("ren:from").arg(i).ignore();
            p.cmd("RENAME").arg("ren:from").arg(format!("ren:to:{}", n % 3)).ignore();
            if big_values && i % 500 == 0 {
                p.cmd("SET").arg(format!("big:{}", (i / 500) % 3)).arg(vec![b'a' + (i % 26) as u8; 512 << 10]).ignore();
            }
            p.query::<()>(&mut con).unwrap();
            if i % 3 == 0 {
                let _: redis::Value = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("g")
                    .arg(format!("c{}", i % 2))
                    .arg("COUNT")
                    .arg(2)
                    .arg("STREAMS")
                    .arg("s")
                    .arg(">")
                    .query(&mut con)
                    .unwrap();
            }
            if i % 4 == 0 {
                let mut t = redis::pipe();
                t.atomic().cmd("INCR").arg("counter").ignore().cmd("LPUSH").arg("list").arg("tx").ignore();
                t.cmd("SELECT").arg(2).ignore().cmd("SET").arg(format!("db2:{n}")).arg(i).ignore();
                t.query::<()>(&mut con).unwrap();
                let _: () = redis::cmd("SELECT").arg(0).query(&mut con).unwrap();
            }
            if i % 5 == 0 {
                let _: () = redis::cmd("EVAL")
                    .arg("redis.call('INCRBY', KEYS[1], 2); redis.call('HSET', KEYS[2], 'lua', ARGV[1])")
                    .arg(2)
                    .arg("lua:n")
                    .arg("lua:h")
                    .arg(i)
                    .query(&mut con)
                    .unwrap();
            }
            i += 1;
            if paced && i % 2 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // The short-lived keys expire (and their DELs go out) before the caller compares
        // offsets.
        std::thread::sleep(Duration::from_millis(1500));
        i
    })
}

/// Consumer seen/active times are stamped by the replica's clock when it applies XCLAIM.
/// Before 7.2 a group's entries-read is not replicated at all: XREADGROUP goes to replicas
/// as `XCLAIM … LASTID` without it (a real `REPLICAOF` replica of 7.0.15 shows the value
/// of its snapshot too), so it is left out of the comparison there.
pub(crate) fn without_consumer_times(mut map: KeyMap, ver: (u32, u32)) -> KeyMap {
    for (view, _) in map.values_mut() {
        if let KeyView::Stream(s) = view {
            if ver < (7, 2) {
                for g in &mut s.groups {
                    g.entries_read = None;
                }
            }
            for c in s.groups.iter_mut().flat_map(|g| g.consumers.iter_mut()) {
                c.seen_time = 0;
                c.active_time = c.active_time.map(|_| 0);
            }
        }
    }
    map
}

/// Equal values; expiries within 2 s (before 7.0 they are read as PTTL plus the clock).
pub(crate) fn assert_same(got: &KeyMap, want: &KeyMap, what: &str) {
    let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| match (got.get(*k), want.get(*k)) {
            (Some((a, ta)), Some((b, tb))) => {
                a != b
                    || match (ta, tb) {
                        (Some(x), Some(y)) => (x - y).abs() > 2000,
                        (None, None) => false,
                        _ => true,
                    }
            }
            _ => true,
        })
        .map(|(db, k)| {
            format!(
                "{db}:{} got {:?} want {:?}",
                String::from_utf8_lossy(k),
                got.get(&(*db, k.clone())),
                want.get(&(*db, k.clone()))
            )
        })
        .collect();
    assert!(differ.is_empty(), "{what}: {} keys differ: {differ:#?}", differ.len());
    assert!(want.len() > 100, "{what}: the source holds {} keys", want.len());
}

/// A source with keys enough, each saved slowly, for writes to land during the snapshot.
pub(crate) fn busy_source(version: &str, diskless: &str) -> RedisServer {
    let source = RedisServer::start(version, None, &["--repl-diskless-sync", diskless]);
    let mut con = source.conn();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("repl-diskless-sync-delay").arg("0").query(&mut con).unwrap();
    let mut p = redis::pipe();
    for k in 0..2000 {
        p.cmd("SET").arg(format!("pre:{k}")).arg(k).ignore();
    }
    p.query::<()>(&mut con).unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("rdb-key-save-delay").arg("200").query(&mut con).unwrap();
    source
}

/// The whole path: writer, capture, SIGTERM, check, replay, compare.
fn round_trip(version: &str, diskless: &str) {
    let what = format!("{version}, repl-diskless-sync {diskless}");
    let source = busy_source(version, diskless);
    let mut con = source.conn();

    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(source.url(), stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let aof = dir.path().join("appendonly.aof");
    let rdb = dir.path().join("dump.rdb");
    let mut capture = start_capture(&source.url(), dir.path(), &[]);
    // Writes during the snapshot, and after it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while spooled_offset(&aof).is_none() {
        if let Ok(Some(status)) = capture.try_wait() {
            panic!("{what}: capture exited early ({status}): {:?}\n{}", capture_output(&mut capture), source.log());
        }
        assert!(Instant::now() < deadline, "{what}: the snapshot never completed");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let written = writing.join().unwrap();
    assert!(written > 200, "{what}: {written} rounds written");
    wait_caught_up(&source, &aof, &mut capture);
    let (code, report, err) = terminate(capture);
    assert_eq!(code, 0, "{what}: {report} {err}");
    assert_eq!(report["stopped"], "signal", "{what}: {report}");
    let framing = if diskless == "yes" { "eof-mark" } else { "length" };
    assert_eq!(report["framing"], framing, "{what}: {report}");
    assert!(
        report["commands"].as_u64().unwrap() > 100,
        "{what}: commands spooled during and after the snapshot: {report}"
    );
    let master: u64 = info_field(&mut con, "replication", "master_repl_offset").parse().unwrap();
    assert_eq!(report["offset"].as_u64(), Some(master), "{what}: {report}");
    let replid = info_field(&mut con, "replication", "master_replid");
    assert_eq!(report["replid"].as_str(), Some(replid.as_str()), "{what}");

    // The spooled files are a valid snapshot and a valid AOF.
    let check = crate::util::run(&["check", "-rdb", path(&rdb), "-aof", path(&aof)]);
    assert_eq!(check.status.code(), Some(0), "{what}: {}", crate::replay::text(&check));
    let aof_bytes = std::fs::read(&aof).unwrap();
    assert_eq!(aof_bytes.len() as u64, report["aof_bytes"].as_u64().unwrap(), "{what}");
    let has = |needle: &[u8]| aof_bytes.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle));
    assert!(!has(b"\r\nREPLCONF\r\n") && !has(b"\r\nPING\r\n"), "{what}: replication housekeeping in the AOF");
    if version == "6.2" {
        assert!(report["expiries_made_absolute"].as_u64().unwrap() > 0, "{what}: {report}");
        assert!(!has(b"\r\nSETEX\r\n") && !has(b"\r\nEXPIRE\r\n"), "{what}: relative expiries left in the AOF");
    }

    // Replayed into a fresh server, it holds what the source holds.
    let dest = RedisServer::start(version, None, &[]);
    let out = replay(dest.port, &["-rdb", path(&rdb), "-aof", path(&aof), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{what}: {}", crate::replay::text(&out));
    let ver = server_version(&mut con);
    let want = without_consumer_times(dump_server(&mut con, ver), ver);
    let got = without_consumer_times(dump_server(&mut dest.conn(), ver), ver);
    assert_same(&got, &want, &what);

    // And redis-server itself loads them, as an AOF with an RDB preamble (the snapshot,
    // then the log): the same keys again.
    let preamble = dir.path().join("preamble.aof");
    std::fs::write(&preamble, [std::fs::read(&rdb).unwrap(), aof_bytes].concat()).unwrap();
    let loaded = RedisServer::start_aof(version, &preamble, &[]);
    let got = without_consumer_times(dump_server(&mut loaded.conn(), ver), ver);
    assert_same(&got, &want, &format!("{what}, loaded by redis-server"));
}

#[test]
fn capture_7_0_diskless_replays_to_the_source() {
    round_trip("7.0", "yes");
}

#[test]
fn capture_7_0_disk_replays_to_the_source() {
    round_trip("7.0", "no");
}

#[test]
fn capture_8_2_diskless_replays_to_the_source() {
    round_trip("8.2", "yes");
}

#[test]
fn capture_6_2_makes_relative_expiries_absolute() {
    round_trip("6.2", "no");
}

#[test]
fn capture_with_an_acl_user_that_may_only_replicate() {
    let source = RedisServer::start("7.0", None, &["--repl-diskless-sync-delay", "0"]);
    let mut con = source.conn();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "cap", "on", ">s3cret", "-@all", "+psync", "+replconf", "+ping"])
        .query(&mut con)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{}", source.port);
    let out = bin()
        .arg("capture")
        .args(["--from", &url, "--source-user", "cap", "--stop-after-snapshot", "--format", "json", "-q"])
        .args(["-rdb", path(&dir.path().join("dump.rdb")), "-aof", path(&dir.path().join("appendonly.aof"))])
        .env("REDISMIGRATION_SOURCE_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", crate::replay::text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["stopped"], "snapshot");
    let check = crate::util::run(&["check", path(&dir.path().join("dump.rdb"))]);
    assert_eq!(check.status.code(), Some(0), "{}", crate::replay::text(&check));
    assert!(crate::replay::text(&check).contains("keys: 1"), "{}", crate::replay::text(&check));
}

#[test]
fn capture_with_a_wrong_password_cannot_run() {
    let source = RedisServer::start("7.0", None, &["--requirepass", "right"]);
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["capture", "-sport", &source.port.to_string(), "-sauth", "wrong", "--stop-after-snapshot"])
        .output()
        .unwrap();
    let text = crate::replay::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("authentication"), "{text}");
    assert!(!text.contains("wrong"), "the password is never shown: {text}");
}
