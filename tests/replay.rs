//! `replay` against real servers: an empty redis-server (or nutcracker in front of two)
//! filled by our replay must hold what a server that loaded the same input itself holds;
//! faults (killed connections, a killed and restarted durable destination), refusals and
//! reports as a user sees them.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::oracle::{dump_server, server_version, KeyMap, KeyView};
use crate::translate::{assert_same, forget_what_commands_cannot_carry, functions};
use crate::util::{bin, damaged_copy, testdata, RedisServer, Twemproxy, FIXTURES};

/// Runs `replay ARGS` against port `port`.
pub(crate) fn replay(port: u16, args: &[&str]) -> Output {
    bin()
        .arg("replay")
        .args(["-dport", &port.to_string()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run replay")
}

/// The JSON report of a replay run with `--format json`.
pub(crate) fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", text(o)))
}

pub(crate) fn text(o: &Output) -> String {
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

pub(crate) fn aof(rel: &str) -> PathBuf {
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
    let bad = damaged_copy(dir.path());
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

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl.
pub(crate) fn make_certs(dir: &Path) {
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
    let printed = String::from_utf8_lossy(&out.stdout);
    let appended = printed.lines().find(|l| l.contains("\"exp:appended\"")).expect("exp:appended is printed");
    let v: serde_json::Value = serde_json::from_str(appended).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(v["expire_at_ms"].as_i64().is_some_and(|t| t < now), "{appended}");
    assert!(!printed.contains("\"exp:untouched\""), "{printed}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("kept 8 keys"), "{}", String::from_utf8_lossy(&out.stderr));
    // Toward 7.0 with --drop-field-ttl: the fields that had expired stay out (sent
    // without a TTL they would live for good), the rest arrive without TTLs.
    let old = RedisServer::start("7.0", None, &[]);
    let out = replay(old.port, &["--format", "json", "--drop-field-ttl", "-aof", path]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    let mut want_7_0 = want;
    for (view, _) in want_7_0.values_mut() {
        if let KeyView::Hash(fields) = view {
            fields.values_mut().for_each(|(_, ttl)| *ttl = None);
        }
    }
    // The difference the README names: the log's `HINCRBY exp:hash-all g 1` and
    // `HINCRBY exp:hash f 5` find no field (8.2 increments the expired fields while it
    // loads, and expires them after).
    let hash_all = KeyView::Hash([(b"g".to_vec(), (b"1".to_vec(), None))].into());
    want_7_0.insert((0, b"exp:hash-all".to_vec()), (hash_all, None));
    if let Some((KeyView::Hash(fields), _)) = want_7_0.get_mut(&(0, b"exp:hash".to_vec())) {
        fields.insert(b"f".to_vec(), (b"5".to_vec(), None));
    }
    assert_same(&want_7_0, &dump_server(&mut old.conn(), (7, 0)), (7, 0), "replay --drop-field-ttl into 7.0");
}
