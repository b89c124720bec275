//! `print --format resp | redis-cli --pipe` against real servers: an empty server filled
//! with our commands must hold what a server that loaded the same RDB holds.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use crate::oracle::{dump_server, server_version, KeyMap, KeyView};
use crate::util::{bin, testdata, RedisServer};

/// Runs `print --format resp ARGS FILE`, pipes it into `server` with redis-cli; returns
/// print's stderr (its report) and its exit code.
pub(crate) fn pipe_into(server: &RedisServer, file: &std::path::Path, args: &[&str]) -> (String, i32) {
    let mut all: Vec<&str> = args.to_vec();
    all.push(file.to_str().unwrap());
    pipe_args(server, &all)
}

/// Runs `print --format resp ARGS` (inputs among the ARGS) into `server` with redis-cli.
pub(crate) fn pipe_args(server: &RedisServer, args: &[&str]) -> (String, i32) {
    let dir = tempfile::tempdir().unwrap();
    let resp = dir.path().join("out.resp");
    let out = bin()
        .args(["print", "--format", "resp"])
        .args(args)
        .stdout(std::fs::File::create(&resp).unwrap())
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    assert!(code == 0 || code == 1, "print failed: {}", String::from_utf8_lossy(&out.stderr));
    let cli = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &server.port.to_string(), "--pipe"])
        .stdin(std::fs::File::open(&resp).unwrap())
        .stderr(Stdio::piped())
        .output()
        .expect("redis-cli");
    let report = String::from_utf8_lossy(&cli.stdout).into_owned();
    assert!(report.contains("errors: 0,"), "redis-cli --pipe: {report}{}", String::from_utf8_lossy(&cli.stderr));
    (String::from_utf8_lossy(&out.stderr).into_owned(), code)
}

/// The count on the report line that ends with `what`.
pub(crate) fn reported(report: &str, what: &str) -> u64 {
    report.lines().find(|l| l.contains(what)).and_then(|l| l.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

pub(crate) fn functions(con: &mut redis::Connection) -> BTreeSet<Vec<u8>> {
    let list: redis::Value = redis::cmd("FUNCTION").arg("LIST").arg("WITHCODE").query(con).unwrap();
    let mut out = BTreeSet::new();
    if let redis::Value::Array(libs) = list {
        for lib in libs {
            if let redis::Value::Array(kv) = lib {
                for p in kv.chunks(2) {
                    if let (redis::Value::BulkString(k), redis::Value::BulkString(v)) = (&p[0], &p[1]) {
                        if k == b"library_code" {
                            out.insert(v.clone());
                        }
                    }
                }
            }
        }
    }
    out
}

/// What commands cannot carry: consumer times, and PEL entries of deleted messages.
/// Returns how many such PEL entries `loaded` had.
pub(crate) fn forget_what_commands_cannot_carry(loaded: &mut KeyMap, piped: &mut KeyMap) -> u64 {
    let mut removed = 0;
    for (map, count) in [(loaded, true), (piped, false)] {
        for (view, _) in map.values_mut() {
            if let KeyView::Stream(s) = view {
                let live: BTreeSet<String> = s.entries.iter().map(|e| e.0.clone()).collect();
                for g in &mut s.groups {
                    let before = g.pending.len();
                    g.pending.retain(|p| live.contains(&p.0));
                    if count {
                        removed += (before - g.pending.len()) as u64;
                    }
                    for c in &mut g.consumers {
                        c.pending.retain(|id| live.contains(id));
                        c.seen_time = 0;
                        c.active_time = c.active_time.map(|_| 0);
                    }
                }
            }
        }
    }
    removed
}

/// Same keys, values and expiries (6.2 has no PEXPIRETIME: its expiries come from PTTL
/// and are compared within a second).
pub(crate) fn assert_same(want: &KeyMap, got: &KeyMap, ver: (u32, u32), what: &str) {
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>(), "{what}: key sets");
    for (k, (view, expire)) in want {
        let (gview, gexpire) = &got[k];
        let name = String::from_utf8_lossy(&k.1);
        assert_eq!(view, gview, "{what}: key {name:?}");
        match (expire, gexpire) {
            (Some(a), Some(b)) if ver < (7, 0) => assert!((a - b).abs() < 1000, "{what}: {name:?} expiry {a} vs {b}"),
            (a, b) => assert_eq!(a, b, "{what}: {name:?} expiry"),
        }
    }
}

fn roundtrip(file: &str, version: &str, mode: &str) {
    let path = testdata(file);
    let module = crate::util::falkordb_module();
    let extra: Vec<&str> =
        if file.contains("module") { vec!["--loadmodule", module.to_str().unwrap()] } else { vec![] };
    let loaded = RedisServer::start(version, Some(&path), &extra);
    let empty = RedisServer::start(version, None, &extra);
    let (mut a, mut b) = (loaded.conn(), empty.conn());
    let ver = server_version(&mut a);
    let target = format!("{}.{}", ver.0, ver.1);
    let (report, code) = pipe_into(&empty, &path, &["--mode", mode, "--target-version", &target]);
    assert_eq!(code, 0, "{report}");
    let mut want = dump_server(&mut a, ver);
    let mut got = dump_server(&mut b, ver);
    if mode == "commands" {
        let lost = forget_what_commands_cannot_carry(&mut want, &mut got);
        assert_eq!(lost, reported(&report, "pending entries not recreated"), "{report}");
        if file.contains("module") {
            // Commands cannot carry module values: skipped and counted.
            let modules = want.iter().filter(|(_, (v, _))| matches!(v, KeyView::Module(_))).count() as u64;
            assert_eq!(modules, reported(&report, "module keys skipped"), "{report}");
            want.retain(|_, (v, _)| !matches!(v, KeyView::Module(_)));
        }
    }
    assert_same(&want, &got, ver, &format!("{file} {mode}"));
    if ver >= (7, 0) {
        assert_eq!(functions(&mut a), functions(&mut b), "{file} {mode}: functions");
    }
}

#[test]
fn commands_redis_6_2() {
    roundtrip("redis-6.2.rdb", "6.2", "commands");
}

#[test]
fn commands_redis_7_0() {
    roundtrip("redis-7.0.rdb", "7.0", "commands");
}

#[test]
fn commands_redis_8_2() {
    roundtrip("redis-8.2.rdb", "8.2", "commands");
}

#[test]
fn commands_redis_8_2_module() {
    roundtrip("redis-8.2-module.rdb", "8.2", "commands");
}

#[test]
fn restore_redis_6_2() {
    roundtrip("redis-6.2.rdb", "6.2", "restore");
}

#[test]
fn restore_redis_7_0() {
    roundtrip("redis-7.0.rdb", "7.0", "restore");
}

#[test]
fn restore_redis_8_2() {
    roundtrip("redis-8.2.rdb", "8.2", "restore");
}

#[test]
fn restore_redis_8_2_module() {
    roundtrip("redis-8.2-module.rdb", "8.2", "restore");
}

#[test]
fn commands_redis_8_2_field_ttl() {
    roundtrip("redis-8.2-field-ttl.rdb", "8.2", "commands");
}

#[test]
fn restore_redis_8_2_field_ttl() {
    roundtrip("redis-8.2-field-ttl.rdb", "8.2", "restore");
}

/// Lua scripts from the `lua` AUX field arrive in the destination's script cache.
#[test]
fn scripts_are_loaded() {
    let empty = RedisServer::start("6.2", None, &[]);
    let (report, _) = pipe_into(&empty, &testdata("redis-6.2.rdb"), &["--target-version", "6.2"]);
    assert_eq!(reported(&report, "Lua scripts"), 2, "{report}");
    let mut con = empty.conn();
    let sha: String = redis::cmd("EVAL")
        .arg("return redis.sha1hex(ARGV[1])")
        .arg(0)
        .arg("return 'hello from the script cache'")
        .query(&mut con)
        .unwrap();
    let exists: Vec<i64> = redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).query(&mut con).unwrap();
    assert_eq!(exists, vec![1]);
}

/// RDB 12 with field TTLs toward a 7.0 server: refused with a clear message, or sent
/// without the TTLs (and counted) with --drop-field-ttl.
#[test]
fn field_ttls_toward_7_0() {
    let path = testdata("redis-8.2.rdb");
    let empty = RedisServer::start("7.0", None, &[]);
    let (report, code) = pipe_into(&empty, &path, &["--target-version", "7.0"]);
    assert_eq!(code, 1, "refused keys make the exit status 1: {report}");
    assert_eq!(reported(&report, "keys refused"), 2, "{report}");
    assert!(report.contains("refused \"hfe:small\": 2 hash fields have TTLs"), "{report}");
    let mut con = empty.conn();
    let exists: i64 = redis::cmd("EXISTS").arg("hfe:small").arg("hfe:big").query(&mut con).unwrap();
    assert_eq!(exists, 0);
    let n: i64 = redis::cmd("HLEN").arg("hash:big").query(&mut con).unwrap();
    assert_eq!(n, 700, "the other keys arrive");
    let (report, code) = pipe_into(&empty, &path, &["--target-version", "7.0", "--drop-field-ttl"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(reported(&report, "hash field TTLs dropped"), 6, "{report}");
    let all: Vec<String> = redis::cmd("HGETALL").arg("hfe:small").query(&mut con).unwrap();
    assert_eq!(all.len(), 6);
}

/// RDB 9 (6.2) into an 8.2 server with RESTORE: every key equal to what 8.2 itself loads.
#[test]
fn rdb_9_restored_into_8_2() {
    let path = testdata("redis-6.2.rdb");
    let loaded = RedisServer::start("8.2", Some(&path), &[]);
    let empty = RedisServer::start("8.2", None, &[]);
    let (report, code) = pipe_into(&empty, &path, &["--mode", "restore", "--target-version", "8.2"]);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains(", 0 fell back"), "{report}");
    let want = dump_server(&mut loaded.conn(), (8, 2));
    let got = dump_server(&mut empty.conn(), (8, 2));
    assert_same(&want, &got, (8, 2), "RDB 9 into 8.2");
}

/// RDB 10 (7.0) listpacks stamped with a 6.2 version cannot load there; RDB 12 payloads
/// toward 7.0 are stamped with version 10 when 7.0 knows the type.
#[test]
fn restore_stamps_the_destination_version() {
    let path = testdata("redis-8.2.rdb");
    let loaded = RedisServer::start("8.2", Some(&path), &[]);
    let empty = RedisServer::start("7.0", None, &[]);
    let (report, code) =
        pipe_into(&empty, &path, &["--mode", "restore", "--target-version", "7.0", "--regex", "^(list|hash|zset):"]);
    assert_eq!(code, 0, "{report}");
    let mut want = dump_server(&mut loaded.conn(), (7, 0));
    want.retain(|k, _| [&b"list:"[..], b"hash:", b"zset:"].iter().any(|p| k.1.starts_with(p)));
    let got = dump_server(&mut empty.conn(), (7, 0));
    assert!(!want.is_empty());
    assert_same(&want, &got, (7, 0), "RDB 12 into 7.0");
}

/// A key whose TTL runs out while the stream is printed and loaded ends absent or with
/// its deadline, never without a TTL.
#[test]
fn a_key_expiring_during_the_load() {
    let source = RedisServer::start("7.0", None, &[]);
    let mut con = source.conn();
    let deadline =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 + 1500;
    let many: Vec<String> = (0..20000).map(|i| format!("e{i}")).collect();
    redis::cmd("RPUSH").arg("soon").arg(&many).query::<()>(&mut con).unwrap();
    redis::cmd("PEXPIREAT").arg("soon").arg(deadline).query::<()>(&mut con).unwrap();
    redis::cmd("SAVE").query::<()>(&mut con).unwrap();
    let rdb = source.dir.path().join("dump.rdb");
    for wait_ms in [0u64, 1400, 1600] {
        let dest = RedisServer::start("7.0", None, &[]);
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        pipe_into(&dest, &rdb, &["--max-args", "16", "--target-version", "7.0"]);
        let mut d = dest.conn();
        let t: i64 = redis::cmd("PEXPIRETIME").arg("soon").query(&mut d).unwrap();
        assert!(t == -2 || t == deadline, "after waiting {wait_ms} ms: PEXPIRETIME {t}, expected -2 or {deadline}");
    }
}

/// Big keys: a 100 MB string and a 2-million-element list, sent in small commands, and a
/// RESTORE cap smaller than one payload: both arrive intact.
#[test]
fn big_keys_arrive_intact() {
    let source = RedisServer::start("8.2", None, &["--enable-debug-command", "yes"]);
    let mut con = source.conn();
    // Incompressible bytes, so the RDB holds the string at its full 100 MB.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    redis::cmd("SET").arg("big:string").arg(b"head").query::<()>(&mut con).unwrap();
    for _ in 0..100 {
        let c: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        redis::cmd("APPEND").arg("big:string").arg(c).query::<()>(&mut con).unwrap();
    }
    for batch in 0..20 {
        let items: Vec<String> = (0..100_000).map(|i| format!("{}", batch * 100_000 + i)).collect();
        redis::cmd("RPUSH").arg("big:list").arg(&items).query::<()>(&mut con).unwrap();
    }
    redis::cmd("SAVE").query::<()>(&mut con).unwrap();
    let rdb = source.dir.path().join("dump.rdb");
    let digest = |c: &mut redis::Connection, k: &str| -> String {
        redis::cmd("DEBUG").arg("DIGEST-VALUE").arg(k).query::<Vec<String>>(c).unwrap().remove(0)
    };
    let (want_s, want_l) = (digest(&mut con, "big:string"), digest(&mut con, "big:list"));
    let dest = RedisServer::start("8.2", None, &["--enable-debug-command", "yes"]);
    let (report, _) = pipe_into(&dest, &rdb, &["--max-bytes", "65536", "--max-args", "1000"]);
    let mut d = dest.conn();
    assert_eq!(digest(&mut d, "big:string"), want_s, "{report}");
    assert_eq!(digest(&mut d, "big:list"), want_l, "{report}");
    let dest = RedisServer::start("8.2", None, &["--enable-debug-command", "yes"]);
    let (report, _) =
        pipe_into(&dest, &rdb, &["--mode", "restore", "--restore-max-bytes", "10000000", "--max-bytes", "1000000"]);
    assert_eq!(reported(&report, "keys as"), 2);
    assert!(report.contains("1 RESTORE, 1 fell back to commands"), "{report}");
    let mut d = dest.conn();
    assert_eq!(digest(&mut d, "big:string"), want_s, "{report}");
    assert_eq!(digest(&mut d, "big:list"), want_l, "{report}");
}

/// LFU counters (FREQ opcode) and LRU idle times (IDLE opcode) travel with RESTORE.
#[test]
fn restore_keeps_lfu_and_lru() {
    for (policy, probe) in [("allkeys-lfu", "FREQ"), ("allkeys-lru", "IDLETIME")] {
        let args = ["--maxmemory-policy", policy, "--maxmemory", "1gb"];
        let source = RedisServer::start("7.0", None, &args);
        let mut con = source.conn();
        redis::cmd("SET").arg("hot").arg("v").query::<()>(&mut con).unwrap();
        for _ in 0..200 {
            redis::cmd("GET").arg("hot").query::<String>(&mut con).unwrap();
        }
        if policy == "allkeys-lru" {
            std::thread::sleep(std::time::Duration::from_millis(2100));
        }
        let want: i64 = redis::cmd("OBJECT").arg(probe).arg("hot").query(&mut con).unwrap();
        assert!(want > 0, "{policy}: the source must have a non-zero {probe}");
        redis::cmd("SAVE").query::<()>(&mut con).unwrap();
        let dest = RedisServer::start("7.0", None, &args);
        let (report, _) =
            pipe_into(&dest, &source.dir.path().join("dump.rdb"), &["--mode", "restore", "--target-version", "7.0"]);
        let got: i64 = redis::cmd("OBJECT").arg(probe).arg("hot").query(&mut dest.conn()).unwrap();
        assert!((got - want).abs() <= 1, "{policy}: OBJECT {probe} {got}, source had {want}: {report}");
    }
}
