//! The oracle: a real redis-server loads each fixture, and every key it holds (type,
//! value, TTL, field TTLs, stream entries, groups, consumers, PEL) must equal what
//! `print --format json` says of the same file; and no key may exist on one side only.

use std::collections::{BTreeMap, BTreeSet};

use redis::Value as R;
use serde_json::Value as J;

use crate::util::{json_bytes, run, testdata, RedisServer, FIXTURES};

pub(crate) type Bytes = Vec<u8>;
/// (db, key) → (value, expiry).
pub(crate) type KeyMap = BTreeMap<(u64, Bytes), (KeyView, Option<i64>)>;

#[derive(Debug, PartialEq)]
pub(crate) struct StreamView {
    pub(crate) entries: Vec<(String, Vec<Bytes>)>,
    pub(crate) length: u64,
    pub(crate) last_id: String,
    /// Only compared where the server reports them (7.0+).
    pub(crate) max_deleted_id: Option<String>,
    pub(crate) entries_added: Option<u64>,
    pub(crate) first_id: Option<String>,
    pub(crate) groups: Vec<GroupView>,
}

#[derive(Debug, PartialEq)]
pub(crate) struct GroupView {
    pub(crate) name: Bytes,
    pub(crate) last_delivered_id: String,
    pub(crate) entries_read: Option<Option<u64>>,
    /// (id, consumer, delivery time, delivery count)
    pub(crate) pending: Vec<(String, Bytes, i64, u64)>,
    pub(crate) consumers: Vec<ConsumerView>,
}

#[derive(Debug, PartialEq)]
pub(crate) struct ConsumerView {
    pub(crate) name: Bytes,
    pub(crate) seen_time: i64,
    pub(crate) active_time: Option<i64>,
    pub(crate) pending: Vec<String>,
}

#[derive(Debug, PartialEq)]
pub(crate) enum KeyView {
    String(Bytes),
    List(Vec<Bytes>),
    Set(BTreeSet<Bytes>),
    ZSet(Vec<(Bytes, u64)>),
    /// field → (value, field expiry when the server reports field TTLs)
    Hash(BTreeMap<Bytes, (Bytes, Option<i64>)>),
    Stream(Box<StreamView>),
    Module(String),
}

fn score_bits(v: f64) -> u64 {
    v.to_bits()
}

fn parse_score_text(s: &str) -> f64 {
    match s {
        "inf" | "+inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap(),
    }
}

/// Our side: `print --format json` of the fixture, keyed by (db, key).
fn ours(file: &str, server_version: (u32, u32)) -> (KeyMap, Vec<J>) {
    let out = run(&["print", "--format", "json", "-q", testdata(file).to_str().unwrap()]);
    assert!(out.status.success(), "print failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut keys = BTreeMap::new();
    let mut extras = Vec::new();
    for line in out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let j: J = serde_json::from_slice(line).expect("each line is JSON");
        if j.get("key").is_none() {
            extras.push(j);
            continue;
        }
        let db = j["db"].as_u64().unwrap();
        let key = json_bytes(&j["key"]);
        let v = &j["value"];
        let view = match j["type"].as_str().unwrap() {
            "string" => KeyView::String(json_bytes(v)),
            "list" => KeyView::List(v.as_array().unwrap().iter().map(json_bytes).collect()),
            "set" => KeyView::Set(v.as_array().unwrap().iter().map(json_bytes).collect()),
            "zset" => {
                let mut z: Vec<(Bytes, u64)> = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        let s = match &p[1] {
                            J::String(s) => parse_score_text(s),
                            n => n.as_f64().unwrap(),
                        };
                        (json_bytes(&p[0]), score_bits(s))
                    })
                    .collect();
                z.sort();
                KeyView::ZSet(z)
            }
            "hash" => KeyView::Hash(
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        let ttl = if server_version >= (7, 4) {
                            Some(p.get(2).and_then(J::as_i64).unwrap_or(-1))
                        } else {
                            None
                        };
                        (json_bytes(&p[0]), (json_bytes(&p[1]), ttl))
                    })
                    .collect(),
            ),
            "stream" => KeyView::Stream(Box::new(stream_from_json(v, server_version))),
            "module" => KeyView::Module(v["module"].as_str().unwrap().to_string()),
            t => panic!("unknown type {t}"),
        };
        assert!(keys.insert((db, key), (view, j["expire_at_ms"].as_i64())).is_none(), "a key printed twice");
    }
    (keys, extras)
}

fn stream_from_json(v: &J, ver: (u32, u32)) -> StreamView {
    let s = |x: &J| x.as_str().unwrap().to_string();
    let seven = ver >= (7, 0);
    StreamView {
        entries: v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let flat = e["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|p| [json_bytes(&p[0]), json_bytes(&p[1])])
                    .collect();
                (s(&e["id"]), flat)
            })
            .collect(),
        length: v["length"].as_u64().unwrap(),
        last_id: s(&v["last_id"]),
        max_deleted_id: seven.then(|| s(&v["max_deleted_id"])),
        entries_added: seven.then(|| v["entries_added"].as_u64().unwrap()),
        first_id: seven.then(|| s(&v["first_id"])),
        groups: v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| GroupView {
                name: json_bytes(&g["name"]),
                last_delivered_id: s(&g["last_delivered_id"]),
                entries_read: seven.then(|| g["entries_read"].as_u64()),
                pending: g["pending"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            s(&p["id"]),
                            json_bytes(&p["consumer"]),
                            p["delivery_time_ms"].as_i64().unwrap(),
                            p["delivery_count"].as_u64().unwrap(),
                        )
                    })
                    .collect(),
                consumers: g["consumers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| ConsumerView {
                        name: json_bytes(&c["name"]),
                        seen_time: c["seen_time_ms"].as_i64().unwrap(),
                        active_time: if ver >= (7, 2) { c["active_time_ms"].as_i64() } else { None },
                        pending: c["pending"].as_array().unwrap().iter().map(s).collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn bulk(v: &R) -> Bytes {
    match v {
        R::BulkString(b) => b.clone(),
        R::SimpleString(s) => s.as_bytes().to_vec(),
        R::Int(i) => i.to_string().into_bytes(),
        other => panic!("expected a string, got {other:?}"),
    }
}

fn text(v: &R) -> String {
    String::from_utf8(bulk(v)).unwrap()
}

fn int(v: &R) -> i64 {
    match v {
        R::Int(i) => *i,
        other => text(other).parse().unwrap(),
    }
}

fn arr(v: &R) -> &[R] {
    match v {
        R::Array(a) => a,
        other => panic!("expected an array, got {other:?}"),
    }
}

/// A flat `[name, value, name, value…]` reply as a map.
fn fields(v: &R) -> BTreeMap<String, &R> {
    arr(v).chunks(2).map(|p| (text(&p[0]), &p[1])).collect()
}

pub(crate) fn stream_from_server(con: &mut redis::Connection, key: &[u8], ver: (u32, u32)) -> StreamView {
    let info: R = redis::cmd("XINFO").arg("STREAM").arg(key).arg("FULL").arg("COUNT").arg(0).query(con).unwrap();
    let f = fields(&info);
    let seven = ver >= (7, 0);
    let opt_id = |name: &str| f.get(name).map(|v| text(v));
    StreamView {
        entries: arr(f["entries"])
            .iter()
            .map(|e| {
                let e = arr(e);
                (text(&e[0]), arr(&e[1]).iter().map(bulk).collect())
            })
            .collect(),
        length: int(f["length"]) as u64,
        last_id: text(f["last-generated-id"]),
        max_deleted_id: if seven { opt_id("max-deleted-entry-id") } else { None },
        entries_added: if seven { f.get("entries-added").map(|v| int(v) as u64) } else { None },
        first_id: if seven { opt_id("recorded-first-entry-id") } else { None },
        groups: arr(f["groups"])
            .iter()
            .map(|g| {
                let g = fields(g);
                GroupView {
                    name: bulk(g["name"]),
                    last_delivered_id: text(g["last-delivered-id"]),
                    entries_read: if seven {
                        Some(match g["entries-read"] {
                            R::Nil => None,
                            v => Some(int(v) as u64),
                        })
                    } else {
                        None
                    },
                    pending: arr(g["pending"])
                        .iter()
                        .map(|p| {
                            let p = arr(p);
                            (text(&p[0]), bulk(&p[1]), int(&p[2]), int(&p[3]) as u64)
                        })
                        .collect(),
                    consumers: arr(g["consumers"])
                        .iter()
                        .map(|c| {
                            let c = fields(c);
                            ConsumerView {
                                name: bulk(c["name"]),
                                seen_time: int(c["seen-time"]),
                                active_time: if ver >= (7, 2) { Some(int(c["active-time"])) } else { None },
                                pending: arr(c["pending"]).iter().map(|p| text(&arr(p)[0])).collect(),
                            }
                        })
                        .collect(),
                }
            })
            .collect(),
    }
}

pub(crate) fn server_key(con: &mut redis::Connection, key: &[u8], ver: (u32, u32)) -> KeyView {
    let t: String = redis::cmd("TYPE").arg(key).query(con).unwrap();
    match t.as_str() {
        "string" => KeyView::String(redis::cmd("GET").arg(key).query(con).unwrap()),
        "list" => KeyView::List(redis::cmd("LRANGE").arg(key).arg(0).arg(-1).query(con).unwrap()),
        "set" => KeyView::Set(redis::cmd("SMEMBERS").arg(key).query(con).unwrap()),
        "zset" => {
            let flat: Vec<Bytes> = redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES").query(con).unwrap();
            let mut z: Vec<(Bytes, u64)> = flat
                .chunks(2)
                .map(|p| (p[0].clone(), score_bits(parse_score_text(std::str::from_utf8(&p[1]).unwrap()))))
                .collect();
            z.sort();
            KeyView::ZSet(z)
        }
        "hash" => {
            let flat: Vec<Bytes> = redis::cmd("HGETALL").arg(key).query(con).unwrap();
            let mut out = BTreeMap::new();
            for p in flat.chunks(2) {
                let ttl = if ver >= (7, 4) {
                    let r: Vec<i64> =
                        redis::cmd("HPEXPIRETIME").arg(key).arg("FIELDS").arg(1).arg(&p[0]).query(con).unwrap();
                    Some(r[0])
                } else {
                    None
                };
                out.insert(p[0].clone(), (p[1].clone(), ttl));
            }
            KeyView::Hash(out)
        }
        "stream" => KeyView::Stream(Box::new(stream_from_server(con, key, ver))),
        module => KeyView::Module(module.to_string()),
    }
}

pub(crate) fn server_version(con: &mut redis::Connection) -> (u32, u32) {
    let info: String = redis::cmd("INFO").arg("server").query(con).unwrap();
    let v = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap();
    let mut it = v.trim().split('.').map(|x| x.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Every key of every db of a live server, read back with plain commands.
pub(crate) fn dump_server(con: &mut redis::Connection, ver: (u32, u32)) -> KeyMap {
    dump_dbs(con, ver, 0..16)
}

/// The keys of databases `dbs` (a cluster node has db 0 only).
pub(crate) fn dump_dbs(con: &mut redis::Connection, ver: (u32, u32), dbs: std::ops::Range<u64>) -> KeyMap {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut theirs = BTreeMap::new();
    for db in dbs {
        redis::cmd("SELECT").arg(db).query::<()>(con).unwrap();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<Bytes>) =
                redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query(con).unwrap();
            for key in keys {
                let view = server_key(con, &key, ver);
                if matches!(&view, KeyView::Hash(h) if h.is_empty()) {
                    // Every field has expired: no client sees the hash, which the server
                    // deletes with its last field (active expiry may not have run yet).
                    continue;
                }
                let expire = if ver >= (7, 0) {
                    let t: i64 = redis::cmd("PEXPIRETIME").arg(&key).query(con).unwrap();
                    (t >= 0).then_some(t)
                } else {
                    let t: i64 = redis::cmd("PTTL").arg(&key).query(con).unwrap();
                    (t >= 0).then_some(now_ms + t)
                };
                theirs.insert((db, key), (view, expire));
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    theirs
}

fn check_fixture(file: &str, version: &str) {
    let module = crate::util::falkordb_module();
    let extra: Vec<&str> =
        if file.contains("module") { vec!["--loadmodule", module.to_str().unwrap()] } else { vec![] };
    let server = RedisServer::start(version, Some(&testdata(file)), &extra);
    let mut con = server.conn();
    let ver = server_version(&mut con);
    let (ours, extras) = ours(file, ver);
    let theirs = dump_server(&mut con, ver);
    assert!(!theirs.is_empty(), "{file}: the server loaded no keys");
    let our_keys: BTreeSet<_> = ours.keys().collect();
    let their_keys: BTreeSet<_> = theirs.keys().collect();
    assert_eq!(our_keys, their_keys, "{file}: key sets differ");
    for (k, (view, expire)) in &ours {
        let (tview, texpire) = &theirs[k];
        assert_eq!(view, tview, "{file}: db {} key {:?}", k.0, String::from_utf8_lossy(&k.1));
        match (expire, texpire, ver >= (7, 0)) {
            (a, b, true) => assert_eq!(a, b, "{file}: expiry of {:?}", String::from_utf8_lossy(&k.1)),
            // 6.2 has no PEXPIRETIME: PTTL is relative, compare within a few seconds.
            (Some(a), Some(b), false) => assert!((a - b).abs() < 5000, "{file}: expiry {a} vs {b}"),
            (a, b, false) => assert_eq!(a.is_some(), b.is_some(), "{file}: expiry presence"),
        }
    }
    // Functions (7.0+): the same libraries, code for code.
    if ver >= (7, 0) {
        let list: R = redis::cmd("FUNCTION").arg("LIST").arg("WITHCODE").query(&mut con).unwrap();
        let theirs: BTreeSet<Bytes> = arr(&list).iter().map(|l| bulk(fields(l)["library_code"])).collect();
        let ours: BTreeSet<Bytes> =
            extras.iter().filter_map(|e| e.get("function")).map(|f| json_bytes(&f["code"])).collect();
        assert_eq!(ours, theirs, "{file}: function libraries");
    }
    // Lua scripts from the `lua` AUX field: each one we print is in the server's cache.
    let scripts: Vec<Bytes> = extras.iter().filter_map(|e| e.get("script")).map(json_bytes).collect();
    if file == "redis-6.2.rdb" {
        assert_eq!(scripts.len(), 2, "{file}: the fixture saved two scripts");
    }
    for body in scripts {
        let sha: String =
            redis::cmd("EVAL").arg("return redis.sha1hex(ARGV[1])").arg(0).arg(&body).query(&mut con).unwrap();
        let exists: Vec<i64> = redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).query(&mut con).unwrap();
        assert_eq!(exists, vec![1], "{file}: script {sha} not in the server's cache");
    }
}

#[test]
fn oracle_redis_6_2() {
    check_fixture(FIXTURES[0].0, FIXTURES[0].1);
}

#[test]
fn oracle_redis_7_0() {
    check_fixture(FIXTURES[1].0, FIXTURES[1].1);
}

#[test]
fn oracle_redis_8_2() {
    check_fixture(FIXTURES[2].0, FIXTURES[2].1);
}

#[test]
fn oracle_redis_8_2_module() {
    check_fixture(FIXTURES[3].0, FIXTURES[3].1);
}

#[test]
fn oracle_redis_8_2_field_ttl() {
    check_fixture(FIXTURES[4].0, FIXTURES[4].1);
}

/// Fields whose expiry has passed: left out (and a hash left with none, as a whole) and
/// counted; `--keep-expired` prints them with their times.
#[test]
fn expired_hash_fields_are_left_out() {
    let file = testdata("redis-8.2-field-ttl.rdb");
    type Fields = BTreeMap<String, Vec<(String, Option<i64>)>>;
    let fields = |args: &[&str]| -> (Fields, String) {
        let mut all = vec!["print", "--format", "json"];
        all.extend_from_slice(args);
        all.push(file.to_str().unwrap());
        let out = run(&all);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut keys = BTreeMap::new();
        for line in out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let j: J = serde_json::from_slice(line).unwrap();
            let Some(J::Array(value)) = j.get("value") else { continue };
            let fields = value
                .iter()
                .filter_map(|f| Some((f.get(0)?.as_str()?.to_string(), f.get(2).and_then(J::as_i64))))
                .collect();
            keys.insert(j["key"].as_str().unwrap().to_string(), fields);
        }
        (keys, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (live, report) = fields(&[]);
    let (all, _) = fields(&["--keep-expired"]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut expired_fields = 0;
    for (key, every) in &all {
        let passed: Vec<&String> = every.iter().filter(|(_, t)| t.is_some_and(|t| t <= now)).map(|(f, _)| f).collect();
        expired_fields += passed.len();
        match live.get(key) {
            Some(kept) => {
                assert!(kept.iter().all(|(f, _)| !passed.contains(&f)), "{key}: an expired field is printed");
                assert_eq!(kept.len() + passed.len(), every.len(), "{key}: a live field is missing");
            }
            None => assert!(passed.len() == every.len() || key == "soon:gone-with-key", "{key}: left out"),
        }
    }
    assert!(expired_fields > 250, "the fixture's fields have expired: {expired_fields}");
    // soon:all, soon:big-all (every field) and soon:gone-with-key (its own expiry).
    assert!(!live.contains_key("soon:all") && !live.contains_key("soon:big-all"), "{live:?}");
    assert!(report.contains("3 expired (and "), "{report}");
}
