//! `diff`: real servers write the two snapshots (one a known edit of the other), the tool
//! must find exactly those edits, and its patch, piped into a server holding A, must leave
//! it equal to B (the oracle: every key read back with plain commands).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value as J;

use crate::oracle::{dump_server, server_version};
use crate::util::{run, testdata, RedisServer};

fn q(con: &mut redis::Connection, args: &[&str]) {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query::<redis::Value>(con).unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

/// Saves the server's dataset and copies it to `to`.
fn save_to(server: &RedisServer, to: &Path) {
    let mut con = server.conn();
    q(&mut con, &["SAVE"]);
    std::fs::copy(server.dir.path().join("dump.rdb"), to).unwrap();
}

/// The keys the edit test adds to the 8.2 fixture before saving A.
fn seed(con: &mut redis::Connection) {
    q(con, &["SET", "d:str", "hello"]);
    q(con, &["SET", "d:gone", "x"]);
    q(con, &["SET", "d:retype", "x"]);
    q(con, &["RPUSH", "d:list", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    q(con, &["RPUSH", "d:list2", "a", "b", "c"]);
    q(con, &["SADD", "d:set", "a", "b", "c", "10", "20"]);
    q(con, &["ZADD", "d:zset", "1", "a", "2", "b", "3", "c"]);
    q(con, &["HSET", "d:hash", "f1", "v1", "f2", "v2", "f3", "v3"]);
    q(con, &["HSET", "d:hashttl", "f1", "v1", "f2", "v2"]);
    q(con, &["HPEXPIRE", "d:hashttl", "36000000", "FIELDS", "1", "f1"]);
    q(con, &["XADD", "d:stream", "1-1", "a", "1"]);
    q(con, &["XADD", "d:stream", "2-1", "b", "2"]);
    q(con, &["XGROUP", "CREATE", "d:stream", "g", "0"]);
    q(con, &["XREADGROUP", "GROUP", "g", "c1", "COUNT", "1", "STREAMS", "d:stream", ">"]);
    q(con, &["SET", "d:ttl1", "x", "PX", "36000000"]);
    q(con, &["SET", "d:ttl2", "x"]);
    q(con, &["SET", "d:ttl3", "x", "PX", "36000000"]);
    q(con, &["SET", "d:same", "unchanged", "PX", "36000000"]);
}

/// The known edits, and the kind each key must be reported as.
fn edit(con: &mut redis::Connection) -> BTreeMap<&'static str, &'static str> {
    q(con, &["SET", "d:new", "fresh"]);
    q(con, &["DEL", "d:gone"]);
    q(con, &["DEL", "d:retype"]);
    q(con, &["SADD", "d:retype", "now-a-set"]);
    q(con, &["SET", "d:str", "hello, world", "KEEPTTL"]);
    q(con, &["LSET", "d:list", "3", "three"]);
    q(con, &["RPUSH", "d:list2", "d", "e"]);
    q(con, &["SREM", "d:set", "b", "20"]);
    q(con, &["SADD", "d:set", "z", "30"]);
    q(con, &["ZADD", "d:zset", "2.5", "b", "4", "d"]);
    q(con, &["ZREM", "d:zset", "a"]);
    q(con, &["HSET", "d:hash", "f2", "changed", "f4", "v4"]);
    q(con, &["HDEL", "d:hash", "f1"]);
    q(con, &["HPEXPIRE", "d:hashttl", "72000000", "FIELDS", "1", "f1"]);
    q(con, &["XADD", "d:stream", "3-1", "c", "3"]);
    q(con, &["PEXPIRE", "d:ttl1", "72000000"]);
    q(con, &["PEXPIRE", "d:ttl2", "36000000"]);
    q(con, &["PERSIST", "d:ttl3"]);
    q(con, &["FUNCTION", "LOAD", "#!lua name=difflib\nredis.register_function('difffn', function() return 1 end)"]);
    BTreeMap::from([
        ("d:new", "added"),
        ("d:gone", "removed"),
        ("d:retype", "type"),
        ("d:str", "value"),
        ("d:list", "value"),
        ("d:list2", "value"),
        ("d:set", "value"),
        ("d:zset", "value"),
        ("d:hash", "value"),
        ("d:hashttl", "value"),
        ("d:stream", "value"),
        ("d:ttl1", "ttl"),
        ("d:ttl2", "ttl"),
        ("d:ttl3", "ttl"),
    ])
}

/// A and B written by a real 8.2 server: the fixture plus the seed keys, then the edits.
fn edited_pair(dir: &Path) -> (PathBuf, PathBuf, BTreeMap<&'static str, &'static str>) {
    let server = RedisServer::start("8.2", Some(&testdata("redis-8.2.rdb")), &[]);
    let mut con = server.conn();
    seed(&mut con);
    let a = dir.join("a.rdb");
    save_to(&server, &a);
    let edits = edit(&mut con);
    let b = dir.join("b.rdb");
    save_to(&server, &b);
    (a, b, edits)
}

fn json_lines(stdout: &[u8]) -> (Vec<J>, J) {
    let mut lines: Vec<J> = std::str::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let summary = lines.pop().expect("a summary line")["summary"].clone();
    assert!(summary.is_object(), "last line is the summary");
    (lines, summary)
}

/// Two servers' keys equal; else the keys that differ, named.
fn assert_same(got: &crate::oracle::KeyMap, want: &crate::oracle::KeyMap, what: &str) {
    let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .map(|(db, k)| {
            format!(
                "{db}:{} got {:?} want {:?}",
                String::from_utf8_lossy(k),
                got.get(&(*db, k.clone())),
                want.get(&(*db, k.clone()))
            )
        })
        .collect();
    assert!(differ.is_empty(), "{what}: {differ:#?}");
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Pipes a RESP file into a server as `redis-cli --pipe` does; every reply must be OK.
fn pipe(server: &RedisServer, patch: &Path) {
    let out = Command::new("redis-cli")
        .args(["-p", &server.port.to_string(), "--pipe"])
        .stdin(Stdio::from(std::fs::File::open(patch).unwrap()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("errors: 0"), "redis-cli --pipe: {text}");
}

#[test]
fn diff_finds_exactly_the_known_edits_and_the_patch_makes_a_into_b() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, edits) = edited_pair(dir.path());

    // Both ways of reading: stored bytes first (files of one RDB version), and every
    // value decoded as it is read.
    for how in ["--raw-first", "--logical"] {
        let patch = dir.path().join("patch.resp");
        let mut args = vec!["diff", path(&a), path(&b), "--format", "json", "-q", "--patch", path(&patch)];
        if how == "--logical" {
            args.push(how);
        }
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        let (lines, summary) = json_lines(&out.stdout);
        let found: BTreeMap<String, String> = lines
            .iter()
            .filter(|l| l.get("key").is_some())
            .map(|l| (l["key"].as_str().unwrap().to_string(), l["kind"].as_str().unwrap().to_string()))
            .collect();
        let want: BTreeMap<String, String> = edits.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(found, want, "{how}");
        let count = |k: &str| edits.values().filter(|v| **v == k).count() as u64;
        for k in ["added", "removed", "type", "value", "ttl"] {
            assert_eq!(summary[k], count(k), "{k} in {summary}");
        }
        assert_eq!(summary["compared"].as_u64().unwrap(), summary["same"].as_u64().unwrap() + edits.len() as u64);
        // The function library loaded by the edit.
        let libs: Vec<&J> = lines.iter().filter(|l| l.get("function").is_some()).collect();
        assert_eq!(libs.len(), 1, "{libs:?}");
        assert_eq!(libs[0]["function"], "difflib");
        assert_eq!(libs[0]["kind"], "added");
        assert_eq!(summary["functions"], 1);

        // Element detail: the hash says which fields.
        let hash = lines.iter().find(|l| l["key"] == "d:hash").unwrap();
        assert_eq!(hash["value"]["added_sample"], serde_json::json!(["f4"]), "{hash}");
        assert_eq!(hash["value"]["removed_sample"], serde_json::json!(["f1"]));
        assert_eq!(hash["value"]["changed"], 1);
        let set = lines.iter().find(|l| l["key"] == "d:set").unwrap();
        assert_eq!(set["value"]["added_sample"], serde_json::json!(["30", "z"]), "{set}");
        assert_eq!(set["value"]["removed_sample"], serde_json::json!(["20", "b"]));
        let ttl = lines.iter().find(|l| l["key"] == "d:hashttl").unwrap();
        assert_eq!(ttl["value"]["field_ttl_changed"], 1, "{ttl}");
    }

    // The patch, piped into a server holding A, leaves it equal to one holding B.
    for mode in ["commands", "restore"] {
        let patch = dir.path().join(format!("patch-{mode}.resp"));
        let out =
            run(&["diff", path(&a), path(&b), "--format", "json", "-q", "--patch", path(&patch), "--patch-mode", mode]);
        assert_eq!(out.status.code(), Some(1));
        let target = RedisServer::start("8.2", Some(&a), &[]);
        pipe(&target, &patch);
        let want = RedisServer::start("8.2", Some(&b), &[]);
        let (mut ct, mut cw) = (target.conn(), want.conn());
        let ver = server_version(&mut ct);
        let (mut got, mut want) = (dump_server(&mut ct, ver), dump_server(&mut cw, ver));
        if mode == "commands" {
            // Commands recreate consumers with XCLAIM, which stamps them with the time it
            // runs: as diff itself, compare consumers' times only from a RESTORE.
            for m in [&mut got, &mut want] {
                for (v, _) in m.values_mut() {
                    if let crate::oracle::KeyView::Stream(s) = v {
                        for g in &mut s.groups {
                            for c in &mut g.consumers {
                                c.seen_time = 0;
                                c.active_time = None;
                            }
                        }
                    }
                }
            }
        }
        assert_same(&got, &want, mode);
        // The patched server, saved, diffs as identical to B.
        let saved = dir.path().join(format!("patched-{mode}.rdb"));
        save_to(&target, &saved);
        let out = run(&["diff", path(&saved), path(&b), "--format", "json", "-q"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn a_snapshot_equals_itself_and_its_other_encodings() {
    let dir = tempfile::tempdir().unwrap();
    for (fixture, _) in crate::util::FIXTURES {
        let f = testdata(fixture);
        let out = run(&["diff", path(&f), path(&f), "--format", "json", "-q"]);
        assert_eq!(out.status.code(), Some(0), "{fixture}: {}", String::from_utf8_lossy(&out.stdout));
    }
    // The same keys saved by a server that keeps every small collection in its big
    // encoding (hashtable, skiplist, quicklist nodes of one entry, hashtable sets).
    let a = dir.path().join("listpacks.rdb");
    let server = RedisServer::start("8.2", Some(&testdata("redis-8.2.rdb")), &[]);
    save_to(&server, &a);
    let big = RedisServer::start(
        "8.2",
        Some(&a),
        &[
            "--hash-max-listpack-entries",
            "0",
            "--zset-max-listpack-entries",
            "0",
            "--set-max-intset-entries",
            "0",
            "--set-max-listpack-entries",
            "0",
            "--list-max-listpack-size",
            "1",
        ],
    );
    let mut con = big.conn();
    let enc: String = redis::cmd("OBJECT").arg("ENCODING").arg("hash:small").query(&mut con).unwrap_or_default();
    let b = dir.path().join("hashtables.rdb");
    save_to(&big, &b);
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "the encodings differ ({enc})");
    let out = run(&["diff", path(&a), path(&b), "--format", "json", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let (_, summary) = json_lines(&out.stdout);
    assert!(summary["same"].as_u64().unwrap() > 20, "{summary}");
}

#[test]
fn ttls_within_the_tolerance_are_equal_and_expired_keys_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start("8.2", None, &[]);
    let mut con = server.conn();
    q(&mut con, &["SET", "k", "v", "PX", "3600000"]);
    q(&mut con, &["SET", "soon", "v", "PX", "3600000"]);
    let a = dir.path().join("a.rdb");
    save_to(&server, &a);
    // Moved by ~1.5 s: within the default 2 s tolerance, outside a 100 ms one.
    q(&mut con, &["PEXPIRE", "k", "3601500"]);
    let b = dir.path().join("b.rdb");
    save_to(&server, &b);
    let out = run(&["diff", path(&a), path(&b), "--format", "json", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let out = run(&["diff", path(&a), path(&b), "--format", "json", "-q", "--ttl-tolerance", "100"]);
    assert_eq!(out.status.code(), Some(1));
    let (lines, _) = json_lines(&out.stdout);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["kind"], "ttl");
    // Two hours on, every key has expired on both sides: nothing to compare.
    let later =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 7200).to_string();
    let out = run(&["diff", path(&a), path(&b), "--format", "json", "-q", "--ttl-tolerance", "100", "--now", &later]);
    assert_eq!(out.status.code(), Some(0));
    let (_, summary) = json_lines(&out.stdout);
    assert_eq!(summary["compared"], 0);
    assert_eq!(summary["expired"]["a"], 2);
    // ... unless asked to keep them.
    let out = run(&[
        "diff",
        path(&a),
        path(&b),
        "--format",
        "json",
        "-q",
        "--ttl-tolerance",
        "100",
        "--now",
        &later,
        "--keep-expired",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn spilled_digests_give_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, edits) = edited_pair(dir.path());
    // A budget of 1 MB spills the fixture's digests many times over with small batches.
    let out = run(&[
        "diff",
        path(&a),
        path(&b),
        "--format",
        "json",
        "-q",
        "--memory",
        "0",
        "--temp-dir",
        path(dir.path()),
        "--batch-bytes",
        "512",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let (lines, summary) = json_lines(&out.stdout);
    assert_eq!(lines.iter().filter(|l| l.get("key").is_some()).count(), edits.len());
    assert!(summary["spilled_bytes"].as_u64().unwrap() > 0, "{summary}");
    // Nothing is left behind in the temporary folder.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("redis-migration-diff"))
        .collect();
    assert!(left.is_empty());
}

#[test]
fn damaged_input_and_aof_sides_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = crate::util::damaged_copy(dir.path());
    let good = testdata("redis-7.0.rdb");
    let out = run(&["diff", path(&good), path(&bad), "-q"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.rdb"), "{}", String::from_utf8_lossy(&out.stderr));
    let aof = testdata("aof").join("plain-6.2").join("appendonly.aof");
    let out = run(&["diff", path(&good), path(&aof), "-q"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AOF"), "{}", String::from_utf8_lossy(&out.stderr));
    // An RDB-preamble AOF: found where its snapshot ends.
    let preamble = testdata("aof").join("preamble-6.2").join("appendonly.aof");
    let out = run(&["diff", path(&preamble), path(&good), "-q"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AOF"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_file_equals_the_server_that_loaded_it() {
    let module = crate::util::falkordb_module();
    for (fixture, version) in crate::util::FIXTURES {
        let f = testdata(fixture);
        let extra: Vec<&str> =
            if fixture.contains("module") { vec!["--loadmodule", module.to_str().unwrap()] } else { vec![] };
        let server = RedisServer::start(version, Some(&f), &extra);
        let out = run(&["diff", path(&f), &server.url(), "--format", "json", "-q"]);
        let (lines, summary) = json_lines(&out.stdout);
        if fixture.contains("module") {
            // A module value is opaque: compared by its serialized bytes, and FalkorDB
            // writes a graph it loaded in other bytes than it read. That key, and only it,
            // is reported.
            assert_eq!(out.status.code(), Some(1));
            assert!(lines.iter().all(|l| l["type"] == "module" && l["kind"] == "value"), "{lines:?}");
            assert_eq!(summary["value"].as_u64(), Some(lines.len() as u64));
            assert!(summary["same"].as_u64().unwrap() >= 1, "{summary}");
            continue;
        }
        assert_eq!(out.status.code(), Some(0), "{fixture}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(summary["same"].as_u64().unwrap() > 5, "{fixture}: {summary}");
    }
}

/// What a diff found: key → kind.
fn kinds(lines: &[J]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter(|l| l.get("key").is_some())
        .map(|l| (l["key"].as_str().unwrap().to_string(), l["kind"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn file_to_live_and_live_to_live_find_the_edits_and_the_patch_applies() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, edits) = edited_pair(dir.path());
    let want: BTreeMap<String, String> = edits.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let sa = RedisServer::start("8.2", Some(&a), &[]);
    let sb = RedisServer::start("8.2", Some(&b), &[]);
    // file ↔ live, live ↔ file, live ↔ live.
    for (x, y) in [(path(&a).to_string(), sb.url()), (sa.url(), path(&b).to_string()), (sa.url(), sb.url())] {
        let out = run(&["diff", &x, &y, "--format", "json", "-q", "--connections", "2"]);
        assert_eq!(out.status.code(), Some(1), "{x} {y}: {}", String::from_utf8_lossy(&out.stderr));
        let (lines, _) = json_lines(&out.stdout);
        assert_eq!(kinds(&lines), want, "{x} {y}");
    }
    // The live ↔ live patch, piped into A, makes it equal to B.
    let patch = dir.path().join("live.resp");
    let out = run(&["diff", &sa.url(), &sb.url(), "--format", "json", "-q", "--patch", path(&patch)]);
    assert_eq!(out.status.code(), Some(1));
    pipe(&sa, &patch);
    let out = run(&["diff", &sa.url(), &sb.url(), "--format", "json", "-q", "--strict-streams"]);
    // Commands rebuild stream consumers with fresh seen-times: equal unless strict.
    let (lines, _) = json_lines(&out.stdout);
    assert!(lines.iter().all(|l| l["key"] == "d:stream"), "{lines:?}");
    let out = run(&["diff", &sa.url(), &sb.url(), "--format", "json", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn keys_written_during_a_live_check_are_reported_apart() {
    let a = RedisServer::start("7.0", None, &[]);
    let mut con = a.conn();
    for i in 0..200 {
        q(&mut con, &["SET", &format!("k:{i}"), "v"]);
    }
    for i in 0..5 {
        q(&mut con, &["SET", &format!("hot:{i}"), "0"]);
    }
    q(&mut con, &["SET", "static", "a-value"]);
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("a.rdb");
    save_to(&a, &snap);
    let b = RedisServer::start("7.0", Some(&snap), &[]);
    q(&mut b.conn(), &["SET", "static", "another-value"]);
    // A writer keeps changing the hot keys on A for the whole check.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut con = a.conn();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for i in 0..5 {
                    redis::cmd("INCR").arg(format!("hot:{i}")).query::<i64>(&mut con).unwrap();
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    let out = run(&["diff", &a.url(), &b.url(), "--format", "json", "-q", "--rounds", "3", "--interval", "0.2"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let (lines, summary) = json_lines(&out.stdout);
    let found = kinds(&lines);
    assert_eq!(found.get("static").map(String::as_str), Some("value"), "{found:?}");
    for i in 0..5 {
        assert_eq!(found.get(&format!("hot:{i}")).map(String::as_str), Some("changing"), "{found:?}");
    }
    assert_eq!(summary["value"], 1, "{summary}");
    assert_eq!(summary["changing"], 5, "{summary}");
}

#[test]
fn a_wrong_password_is_named_and_exits_2() {
    let server = RedisServer::start("7.0", None, &["--requirepass", "right"]);
    let url = format!("redis://:wrong@127.0.0.1:{}/", server.port);
    let out = run(&["diff", &url, path(&testdata("redis-7.0.rdb")), "-q"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&server.port.to_string()) && !err.contains("wrong@"), "{err}");
}

#[test]
fn a_whole_cluster_is_one_side_found_from_any_node() {
    let f = testdata("redis-7.0.rdb");
    let c = crate::util::RedisCluster::start(3, 1);
    let port = c.nodes[0].port.to_string();
    let out = run(&["replay", "--db", "0", "-dport", &port, "-q", path(&f)]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // Every key of db 0 is on some master: the cluster, read from a replica or a master,
    // equals the file's db 0, and a standalone server that loaded the file.
    let single = RedisServer::start("7.0", Some(&f), &[]);
    for node in [&c.nodes[0], c.nodes.last().unwrap()] {
        let out = run(&["diff", path(&f), &node.url(), "--db", "0", "--format", "json", "-q"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
        let (_, summary) = json_lines(&out.stdout);
        assert!(summary["same"].as_u64().unwrap() > 10, "{summary}");
        let out = run(&["diff", &single.url(), &node.url(), "--db", "0", "--format", "json", "-q"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    }
    // A key changed on its master is found, and its detail read from that master.
    let masters = c.master_nodes();
    let mut changed = None;
    for m in &masters {
        let mut mc = m.conn();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut mc).unwrap();
        if let Some(k) = keys
            .into_iter()
            .find(|k| redis::cmd("TYPE").arg(k.as_slice()).query::<String>(&mut mc).unwrap() == "string")
        {
            redis::cmd("SET").arg(k.as_slice()).arg("changed in the cluster").arg("KEEPTTL").exec(&mut mc).unwrap();
            changed = Some(k);
            break;
        }
    }
    let changed = changed.expect("a string key on some master");
    let out = run(&["diff", path(&f), &c.url(), "--db", "0", "--format", "json", "-q"]);
    assert_eq!(out.status.code(), Some(1));
    let (lines, summary) = json_lines(&out.stdout);
    assert_eq!(summary["value"], 1, "{summary}");
    assert_eq!(lines[0]["key"], String::from_utf8_lossy(&changed).as_ref());
    assert_eq!(lines[0]["value"]["b"], "changed in the cluster", "{}", lines[0]);
}

/// Where the LZF block of the string value of `key` starts in `rdb` (the value right
/// after the key: encoding byte 0xC3, then the compressed and expanded lengths).
fn lzf_block_of(rdb: &[u8], key: &[u8]) -> usize {
    let at = rdb.windows(key.len()).position(|w| w == key).expect("the key is in the file") + key.len();
    assert_eq!(rdb[at], 0xC3, "the value is stored compressed");
    let len_bytes = |b: u8| if b >> 6 == 0 { 1 } else { 2 };
    let clen_at = at + 1;
    let ulen_at = clen_at + len_bytes(rdb[clen_at]);
    ulen_at + len_bytes(rdb[ulen_at])
}

/// Files of two RDB versions: strings are compared by their stored bytes and decoded
/// only where those differ; every other value is decoded. Equal data is equal, edits are
/// found, and a damaged compressed string is an error (with no checksum to find it, as
/// much as with one), on one side only or on both.
#[test]
fn files_of_two_versions_compare_strings_by_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let old = testdata("redis-6.2.rdb");
    let server = RedisServer::start("8.2", Some(&old), &["--rdbchecksum", "no"]);
    let same = dir.path().join("same.rdb");
    save_to(&server, &same);
    let out = run(&["diff", path(&old), path(&same), "--format", "json", "-q"]);
    let (lines, summary) = json_lines(&out.stdout);
    assert!(summary["same"].as_u64().unwrap() > 20, "{summary}");
    // Only a stream group's entries-read, which 8.2 fills in on loading a v1 stream.
    assert!(lines.iter().filter(|l| l.get("key").is_some()).all(|l| l["type"] == "stream"), "{lines:?}");

    // A string edited in place (compressed, so its bytes differ) and one added.
    let mut con = server.conn();
    let long = "ab".repeat(200);
    let string_key = "str:lzf".to_string();
    q(&mut con, &["SET", &string_key, &long]);
    q(&mut con, &["SET", "v:added", &long]);
    let edited = dir.path().join("edited.rdb");
    save_to(&server, &edited);
    let out = run(&["diff", path(&old), path(&edited), "--format", "json", "-q"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let (lines, summary) = json_lines(&out.stdout);
    let got = kinds(&lines);
    assert_eq!(got.get(&string_key).map(String::as_str), Some("value"), "{got:?}");
    assert_eq!(got.get("v:added").map(String::as_str), Some("added"), "{got:?}");
    assert!(summary["decoded_late"].as_u64().unwrap() >= 2, "{summary}");

    // The file with a compressed string's first instruction made a reference to before
    // the start: damage the decoder finds, in a string both sides have and in one only
    // B has, with no checksum; and the same damage in a file with its checksum.
    let clean = std::fs::read(&edited).unwrap();
    assert_eq!(&clean[clean.len() - 8..], &[0; 8], "saved without a checksum");
    let with_checksum = RedisServer::start("8.2", Some(&edited), &[]);
    let summed = dir.path().join("summed.rdb");
    save_to(&with_checksum, &summed);
    let summed = std::fs::read(&summed).unwrap();
    let cases = [(&clean, string_key.as_bytes()), (&clean, b"v:added".as_slice()), (&summed, b"v:added".as_slice())];
    for (n, (file, key)) in cases.into_iter().enumerate() {
        let mut bytes = file.clone();
        let block = lzf_block_of(&bytes, key);
        bytes[block] = 0xE0;
        let damaged = dir.path().join(format!("damaged-{n}.rdb"));
        std::fs::write(&damaged, &bytes).unwrap();
        let out = run(&["diff", path(&old), path(&damaged), "--format", "json", "-q"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{n}: {err} {}", String::from_utf8_lossy(&out.stdout));
        assert!(err.contains(&format!("damaged-{n}.rdb")), "{err}");
    }
}
