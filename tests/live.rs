//! Reading live servers (`live::scan`, `fetch`, `functions`): real servers of each
//! fixture's version, loaded from the fixture; what SCAN + DUMP + PEXPIRETIME (PTTL on
//! 6.2) give must be the file's keys as a loading server keeps them (expired keys and hash
//! fields left out), with the same logical values and expiries.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use redis_migration::expiry::{drop_expired_fields, Expired};
use redis_migration::live::{self, LiveError, LiveKey, LiveSpec};
use redis_migration::output::json::write_record;
use redis_migration::rdb::{Function, Item, Parser, Record};
use redis_migration::version::Version;

use crate::util::{falkordb_module, testdata, RedisServer, FIXTURES};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A record as comparable JSON: set members, hash fields and zset pairs sorted (a
/// server's hashtable gives them in its own order), no idle time or LFU counter (a DUMP
/// has neither), a module value's bytes left out, the expiry apart.
pub(crate) fn normalized(rec: &Record<'_>) -> (serde_json::Value, Option<i64>) {
    let mut rec = rec.clone();
    rec.idle_s = None;
    rec.freq = None;
    let expiry = rec.expire_at_ms.take();
    let mut out = Vec::new();
    write_record(&mut out, &rec);
    let mut v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    // A module serializes its value afresh for DUMP: FalkorDB's bytes differ from the
    // file's for the same graph, so only the module and its encoding version compare.
    if v["type"] == "module" {
        v["value"]["raw"] = serde_json::Value::Null;
    }
    if matches!(v["type"].as_str(), Some("set" | "hash" | "zset")) {
        if let Some(items) = v["value"].as_array_mut() {
            items.sort_by_key(|i| i.to_string());
        }
    }
    (v, expiry)
}

pub(crate) type Keys = BTreeMap<(u64, Vec<u8>), (serde_json::Value, Option<i64>)>;

/// The file's keys as a server that loaded it at `now` keeps them.
fn file_keys(name: &str, now: i64) -> Keys {
    let data = std::fs::read(testdata(name)).unwrap();
    let mut p = Parser::new(&data).unwrap();
    let mut out = Keys::new();
    while let Some(item) = p.next_item().unwrap() {
        if let Item::Record(mut rec) = item {
            if Expired::of(&rec, now).whole() {
                continue;
            }
            drop_expired_fields(&mut rec, now);
            out.insert((rec.db, rec.key.bytes().into_owned()), normalized(&rec));
        }
    }
    out
}

/// The file's function libraries' code, sorted.
fn file_functions(name: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(testdata(name)).unwrap();
    let mut p = Parser::new(&data).unwrap();
    let mut out = Vec::new();
    while let Some(item) = p.next_item().unwrap() {
        if let Item::Function(Function::Library { code }) = item {
            out.push(code.bytes().into_owned());
        }
    }
    out.sort();
    out
}

pub(crate) fn live_keys(batches: Vec<LiveKey>) -> Keys {
    let mut out = Keys::new();
    for k in batches {
        let rec = k.record().unwrap_or_else(|e| panic!("key {:?}: {e}", String::from_utf8_lossy(&k.key)));
        let rec = rec.expect("no key vanishes from an idle server");
        let n = normalized(&rec);
        out.insert((k.db, k.key.clone()), n);
    }
    out
}

pub(crate) fn spec(server: &RedisServer) -> LiveSpec {
    LiveSpec::from_url(&server.url(), None).unwrap()
}

pub(crate) fn scan_all(spec: &LiveSpec) -> (Vec<LiveKey>, live::ScanStats) {
    let mut all = Vec::new();
    let stats = live::scan(spec, |batch| {
        assert!(batch.windows(2).all(|w| w[0].db == w[1].db), "a batch holds one db");
        all.extend(batch);
        true
    })
    .unwrap();
    (all, stats)
}

/// Same keys, same values; expiries equal (PEXPIRETIME) or within a second (PTTL and
/// the local clock).
pub(crate) fn assert_same(file: &Keys, live: &Keys, exact_expiry: bool, what: &str) {
    let fk: Vec<_> = file.keys().collect();
    let lk: Vec<_> = live.keys().collect();
    assert_eq!(fk, lk, "{what}: the keys");
    for (k, (fv, fe)) in file {
        let (lv, le) = &live[k];
        assert_eq!(fv, lv, "{what}: key {:?}", String::from_utf8_lossy(&k.1));
        match (fe, le) {
            (Some(f), Some(l)) if !exact_expiry => assert!((f - l).abs() < 1000, "{what}: expiry {f} vs {l}"),
            _ => assert_eq!(fe, le, "{what}: expiry of {:?}", String::from_utf8_lossy(&k.1)),
        }
    }
}

/// Each fixture loaded by a server of its version: SCAN + DUMP + PEXPIRETIME (PTTL on
/// 6.2) give exactly the keys of the file, in every db, with the same values and
/// expiries (hash field expiries included); the version is learned; functions too.
#[test]
fn live_scan_equals_the_file_it_loaded() {
    for (name, version) in FIXTURES {
        let extra: Vec<String> = if name.contains("module") {
            vec!["--loadmodule".into(), falkordb_module().to_str().unwrap().into()]
        } else {
            vec![]
        };
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let server = RedisServer::start(version, Some(&testdata(name)), &extra);
        let now = now_ms();
        let (batches, stats) = scan_all(&spec(&server));
        let file = file_keys(name, now);
        let live = live_keys(batches);
        assert_same(&file, &live, version != "6.2", name);
        let mut dbs: Vec<u64> = file.keys().map(|(db, _)| *db).collect();
        dbs.dedup();
        assert_eq!(stats.dbs, dbs, "{name}");
        assert_eq!((stats.keys, stats.vanished), (file.len() as u64, 0), "{name}");
        assert_eq!(stats.server.version, Version::parse(version), "{name}");
        assert!(!stats.server.version_guessed);
        assert_eq!(stats.server.pexpiretime, version != "6.2", "{name}");
        assert_eq!(live::functions(&spec(&server)).unwrap(), file_functions(name), "{name}");
    }
}

/// Hash fields with their own expiries come back from DUMP with them (8.2).
#[test]
fn live_hash_field_ttls() {
    let server = RedisServer::start("8.2", Some(&testdata("redis-8.2.rdb")), &[]);
    let got = live::fetch(&spec(&server), 0, &[b"hfe:small".to_vec(), b"hfe:big".to_vec()]).unwrap();
    for k in &got {
        let rec = k.record().unwrap().unwrap();
        let redis_migration::rdb::Value::Hash(fields) = &rec.value else { panic!("not a hash") };
        assert!(fields.iter().any(|f| f.expire_at_ms.is_some()), "{:?}", String::from_utf8_lossy(&k.key));
        assert!(fields.iter().any(|f| f.expire_at_ms.is_none()));
    }
}

/// A URL's /db reads that db alone; MATCH is applied by the server.
#[test]
fn live_db_and_match() {
    let server = RedisServer::start("7.0", Some(&testdata("redis-7.0.rdb")), &[]);
    let file = file_keys("redis-7.0.rdb", now_ms());
    let db = *file.keys().map(|(db, _)| db).max().unwrap();
    assert!(db > 0, "the fixture has a db other than 0");
    let one = LiveSpec::from_url(&format!("{}{db}", server.url()), None).unwrap();
    let (batches, stats) = scan_all(&one);
    assert_eq!(stats.dbs, vec![db]);
    let want: Keys = file.iter().filter(|((d, _), _)| *d == db).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_same(&want, &live_keys(batches), true, "one db");

    let mut matching = spec(&server);
    matching.pattern = Some(b"ttl:*".to_vec());
    matching.scan_count = 3;
    let (batches, _) = scan_all(&matching);
    let want: Keys =
        file.iter().filter(|((_, k), _)| k.starts_with(b"ttl:")).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(!want.is_empty());
    assert_same(&want, &live_keys(batches), true, "MATCH ttl:*");
}

/// A key gone by the time it is asked for comes back with no payload, the others with
/// theirs, in the order asked; on 6.2 (PTTL) too.
#[test]
fn live_vanished_keys_have_no_payload() {
    for version in ["6.2", "8.2"] {
        let server = RedisServer::start(version, None, &[]);
        let mut c = server.conn();
        redis::cmd("SET").arg("here").arg("v").exec(&mut c).unwrap();
        redis::cmd("SET").arg("ttl").arg("v").arg("PX").arg(100_000).exec(&mut c).unwrap();
        let keys = [b"here".to_vec(), b"gone".to_vec(), b"ttl".to_vec()];
        let got = live::fetch(&spec(&server), 0, &keys).unwrap();
        assert_eq!(got.iter().map(|k| k.key.clone()).collect::<Vec<_>>(), keys);
        assert!(got[0].payload.is_some() && got[0].expire_at_ms.is_none());
        assert_eq!((got[1].payload.as_ref(), got[1].expire_at_ms), (None, None));
        let at = got[2].expire_at_ms.expect("an expiry");
        assert!((at - (now_ms() + 100_000)).abs() < 5_000, "{version}: {at}");

        // During a scan: the callback deletes every key of the server after the first
        // batch. Whether a deleted key was listed before (and comes without a payload) or
        // not at all depends on how far SCAN had gone: either is right; what is listed
        // is counted, and what has a payload decodes.
        let mut pipe = redis::pipe();
        for i in 0..5000 {
            pipe.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
        }
        pipe.exec(&mut c).unwrap();
        let mut s = spec(&server);
        s.connections = 1;
        s.scan_count = 200;
        let mut first = true;
        let (mut vanished, mut listed) = (0, 0);
        let stats = live::scan(&s, |batch| {
            if first {
                redis::cmd("FLUSHALL").exec(&mut c).unwrap();
                first = false;
            }
            for k in &batch {
                listed += 1;
                match k.record().unwrap() {
                    None => vanished += 1,
                    Some(rec) => assert_eq!(rec.value.value_type().name(), "string"),
                }
            }
            true
        })
        .unwrap();
        assert_eq!((stats.vanished, stats.keys), (vanished, listed), "{version}");
        assert!((1..=5003).contains(&listed), "{version}: {listed}");
    }
}

/// Calls of the commands a scan sends, from INFO commandstats.
fn scan_calls(c: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(c).unwrap();
    info.lines()
        .filter(|l| {
            ["cmdstat_scan:", "cmdstat_dump:", "cmdstat_pexpiretime:", "cmdstat_select:"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

/// With --qps, the server never sees more than qps × the time since the start (counted
/// by the server itself); every key still comes.
#[test]
fn live_qps_limits_the_rate() {
    let server = RedisServer::start("7.0", None, &[]);
    let mut c = server.conn();
    let mut pipe = redis::pipe();
    for i in 0..600 {
        pipe.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
    }
    pipe.exec(&mut c).unwrap();
    let mut s = spec(&server);
    s.qps = Some(400);
    s.connections = 2;
    s.scan_count = 50;
    let before = scan_calls(&mut c);
    let start = Instant::now();
    let mut checks = 0;
    let mut keys = 0;
    let stats = live::scan(&s, |batch| {
        keys += batch.len();
        let calls = scan_calls(&mut c) - before;
        let elapsed = start.elapsed().as_secs_f64();
        // The probe's PEXPIRETIME is not rate-limited.
        assert!(calls as f64 <= 400.0 * elapsed + 2.0, "{calls} commands in {elapsed} s");
        checks += 1;
        true
    })
    .unwrap();
    assert_eq!(keys, 600);
    assert!(checks > 3);
    assert!(stats.commands >= 1200);
    assert!(scan_calls(&mut c) - before >= 1200);
}

/// A wrong password, no password, and a user the ACL refuses DUMP: clear errors that
/// name the server; a user refused INFO still reads (version guessed, dbs probed).
#[test]
fn live_errors_and_acl() {
    let server = RedisServer::start("7.0", Some(&testdata("redis-7.0.rdb")), &["--requirepass", "s3cret"]);
    let addr = format!("127.0.0.1:{}", server.port);
    let url = |auth: &str| format!("redis://{auth}127.0.0.1:{}/", server.port);
    let err = |auth: &str| live::scan(&LiveSpec::from_url(&url(auth), None).unwrap(), |_| true).unwrap_err();

    let e = err(":wrong@");
    assert!(matches!(e, LiveError::Auth { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with(&addr) && msg.contains("wrong user or password"), "{msg}");
    assert!(!msg.contains("wrong@"));
    let msg = err("").to_string();
    assert!(msg.starts_with(&addr) && msg.contains("wants a password"), "{msg}");

    let mut c = redis::Client::open(url(":s3cret@")).unwrap().get_connection().unwrap();
    redis::cmd("ACL").arg(&["SETUSER", "nodump", "on", ">pw", "~*", "+@all", "-dump"]).exec(&mut c).unwrap();
    redis::cmd("ACL").arg(&["SETUSER", "noinfo", "on", ">pw", "~*", "+@all", "-info"]).exec(&mut c).unwrap();
    let e = err("nodump:pw@");
    assert!(matches!(e, LiveError::Refused { command: "DUMP", .. }), "{e:?}");
    assert!(e.to_string().contains("refuses DUMP"), "{e}");

    let noinfo = LiveSpec::from_url(&url("noinfo:pw@"), None).unwrap();
    let (batches, stats) = scan_all(&noinfo);
    assert!(stats.server.version_guessed);
    assert_eq!(stats.server.version, Some(Version(7, 0)));
    assert_eq!(stats.server.version_text, None);
    let file = file_keys("redis-7.0.rdb", now_ms());
    assert_same(&file, &live_keys(batches), true, "dbs probed with SELECT");
}

/// A value whose DUMP is longer than a reply may be is an error naming the key; the
/// default bound takes big values.
#[test]
fn live_too_big_a_value_is_named() {
    let server = RedisServer::start("7.0", None, &[]);
    let mut c = server.conn();
    // Bytes LZF cannot shrink (DUMP compresses what it can).
    let mut x = 0x9e3779b97f4a7c15u64;
    let big: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    redis::cmd("SET").arg("big:one").arg(&big).exec(&mut c).unwrap();
    let mut s = spec(&server);
    s.max_reply_bytes = 2 << 20;
    let e = live::fetch(&s, 0, &[b"big:one".to_vec()]).map(|_| ()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("DUMP") && msg.contains("2 MB") && msg.contains("big:one"), "{msg}");
    let got = live::fetch(&spec(&server), 0, &[b"big:one".to_vec()]).unwrap();
    let rec = got[0].record().unwrap().unwrap();
    let redis_migration::rdb::Value::String(v) = rec.value else { panic!("not a string") };
    assert!(v.bytes() == big);
}

/// Over TLS (`rediss://`, our CA and a client certificate): the fixture read whole; the
/// Mozilla roots do not know our CA, and the error says it is the certificate.
#[test]
fn live_over_tls() {
    use redis_migration::net::tls::TlsOptions;
    let certs = tempfile::tempdir().unwrap();
    crate::replay::make_certs(certs.path());
    let p = |f: &str| certs.path().join(f);
    let tls_port = crate::util::free_port();
    let (crt, key, ca) = (p("server.crt"), p("server.key"), p("ca.crt"));
    let _server = RedisServer::start(
        "7.0",
        Some(&testdata("redis-7.0.rdb")),
        &[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            crt.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--tls-ca-cert-file",
            ca.to_str().unwrap(),
            "--tls-auth-clients",
            "yes",
        ],
    );
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let client = TlsOptions { cert: Some(p("client.crt")), key: Some(p("client.key")), ..TlsOptions::default() };
    let e = live::scan(&LiveSpec::from_url(&url, Some(&client)).unwrap(), |_| true).unwrap_err();
    assert!(matches!(e, LiveError::Connect { .. }) && e.to_string().contains("certificate"), "{e}");
    let ours = TlsOptions { ca: Some(ca.clone()), ..client };
    let (batches, _) = scan_all(&LiveSpec::from_url(&url, Some(&ours)).unwrap());
    let file = file_keys("redis-7.0.rdb", now_ms());
    assert_same(&file, &live_keys(batches), true, "over TLS");
}

/// `false` from the callback stops the scan: it returns at once, says so, and has handed
/// over only part of the keys.
#[test]
fn live_callback_stops_the_scan() {
    let server = RedisServer::start("7.0", None, &[]);
    let mut c = server.conn();
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        pipe.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
    }
    pipe.exec(&mut c).unwrap();
    let mut s = spec(&server);
    s.scan_count = 100;
    let mut calls = 0;
    let stats = live::scan(&s, |_| {
        calls += 1;
        false
    })
    .unwrap();
    assert_eq!(calls, 1);
    assert!(stats.stopped);
    assert!(stats.keys > 0 && stats.keys < 3000, "{}", stats.keys);
    // Its connections are closed: only ours is left, once the server has seen them go.
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
        if clients.lines().count() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{clients}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
