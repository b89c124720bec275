//! Redis Cluster as a replay destination: real clusters on loopback (see
//! `util::RedisCluster`).

use std::time::Duration;

use redis_migration::net::cluster::Topology;
use redis_migration::net::Endpoint;

use crate::oracle::{dump_dbs, dump_server, server_version, KeyMap, KeyView};
use crate::replay::{json, replay, text};
use crate::translate::{assert_same, forget_what_commands_cannot_carry, functions};
use crate::util::{testdata, RedisCluster, RedisServer, FIXTURES};

fn endpoint(port: u16) -> Endpoint {
    Endpoint { host: "127.0.0.1".into(), port, user: None, password: None, tls: None }
}

#[test]
fn cluster_topology_from_any_node() {
    let c = RedisCluster::start(3, 1);
    let masters: Vec<u16> = c.master_nodes().iter().map(|s| s.port).collect();
    assert_eq!(masters.len(), 3);
    for node in &c.nodes {
        let t = Topology::refresh([&endpoint(node.port)], Duration::from_secs(5)).unwrap();
        assert!(t.uncovered().is_empty());
        let mut got: Vec<u16> = t.masters.iter().map(|m| m.node.port).collect();
        got.sort_unstable();
        let mut want = masters.clone();
        want.sort_unstable();
        assert_eq!(got, want, "asked {}", node.port);
        assert!(t.masters.iter().all(|m| m.replicas.len() == 1 && m.node.id.len() == 40));
        // Where the cluster itself says a key lives.
        let mut con = node.conn();
        for key in ["a", "b", "{user}:1", "zzz"] {
            let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut con).unwrap();
            let m = &t.masters[t.master_of(slot).unwrap()];
            let mut on =
                redis::Client::open(format!("redis://127.0.0.1:{}/", m.node.port)).unwrap().get_connection().unwrap();
            let n: i64 = redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot).query(&mut on).unwrap();
            assert!(n >= 0, "slot {slot} served by {}", m.node.port);
        }
    }
    // A dead node is passed over for the next one.
    let dead = crate::util::free_port();
    let t = Topology::refresh([&endpoint(dead), &endpoint(c.nodes[1].port)], Duration::from_secs(2)).unwrap();
    assert_eq!(t.masters.len(), 3);
}

/// The keys of db 0 on every master of `c`, each on one master only.
fn union_of_masters(c: &RedisCluster, ver: (u32, u32)) -> KeyMap {
    let mut all = KeyMap::new();
    for m in c.master_nodes() {
        for (k, v) in dump_dbs(&mut m.conn(), ver, 0..1) {
            assert!(all.insert(k.clone(), v).is_none(), "key {:?} on two masters", String::from_utf8_lossy(&k.1));
        }
    }
    all
}

/// `assert_same`, after a short account of the keys missing and extra (the full key
/// lists of a big map are too long to read).
fn assert_same_keys(want: &KeyMap, got: &KeyMap, what: &str) {
    let name = |k: &(u64, Vec<u8>)| String::from_utf8_lossy(&k.1).into_owned();
    let missing: Vec<String> = want.keys().filter(|k| !got.contains_key(*k)).take(5).map(name).collect();
    let extra: Vec<String> = got.keys().filter(|k| !want.contains_key(*k)).take(5).map(name).collect();
    assert!(missing.is_empty() && extra.is_empty(), "{what}: missing {missing:?}, extra {extra:?}");
    for (k, (v, _)) in want {
        assert!(got[k].0 == *v, "{what}: key {:?} differs", name(k));
    }
    assert_same(want, got, (7, 0), what);
}

/// Empties every master (keys and functions) for the next replay.
fn empty(c: &RedisCluster, ver: (u32, u32)) {
    for m in c.master_nodes() {
        redis::cmd("FLUSHALL").query::<()>(&mut m.conn()).unwrap();
        if ver >= (7, 0) {
            redis::cmd("FUNCTION").arg("FLUSH").query::<()>(&mut m.conn()).unwrap();
        }
    }
}

/// Every fixture's db 0, in restore and commands mode, into a 3-master cluster of the
/// version that wrote it, found from one node: the union of the masters equals a server
/// that loaded the file. (`--db 0` selects part of the file, so its functions stay
/// behind, as into any destination: see `cluster_splits_and_refuses_aof_commands`.)
#[test]
fn cluster_fixtures_db0_restore_and_commands() {
    for (file, version) in FIXTURES {
        let path = testdata(file);
        let module = crate::util::falkordb_module();
        let extra: Vec<&str> =
            if file.contains("module") { vec!["--loadmodule", module.to_str().unwrap()] } else { vec![] };
        let loaded = RedisServer::start(version, Some(&path), &extra);
        let mut a = loaded.conn();
        let ver = server_version(&mut a);
        let c = RedisCluster::start_version(version, 3, 0, &extra);
        for mode in ["restore", "commands"] {
            empty(&c, ver);
            let from = c.nodes[1].port;
            let out =
                replay(from, &["--format", "json", "--db", "0", "--mode", mode, "-n", "2", path.to_str().unwrap()]);
            let report = json(&out);
            let mut want = dump_dbs(&mut a, ver, 0..1);
            let mut got = union_of_masters(&c, ver);
            let modules = want.values().filter(|(v, _)| matches!(v, KeyView::Module(_))).count();
            if mode == "commands" {
                forget_what_commands_cannot_carry(&mut want, &mut got);
                want.retain(|_, (v, _)| !matches!(v, KeyView::Module(_)));
            }
            let code = if mode == "commands" && modules > 0 { 1 } else { 0 };
            assert_eq!(out.status.code(), Some(code), "{file} {mode}: {report}");
            assert_eq!(report["kind"], "cluster", "{report}");
            assert_eq!(report["connections"], 6, "{report}");
            assert_eq!(report["cluster"]["masters"], 3, "{report}");
            assert_eq!(report["cluster"]["without_replica"], 3, "{report}");
            assert_same(&want, &got, ver, &format!("{file} into a cluster, {mode}"));
            let held: Vec<u64> =
                c.master_nodes().iter().map(|m| redis::cmd("DBSIZE").query(&mut m.conn()).unwrap()).collect();
            if want.len() >= 10 {
                assert!(held.iter().all(|&n| n > 0), "{file}: every master holds keys: {held:?}");
            }
        }
    }
}

/// Only db 0: other dbs are refused before anything is written, unless mapped.
#[test]
fn cluster_has_db_0_only() {
    let path = testdata("redis-7.0.rdb");
    let c = RedisCluster::start(3, 0);
    let out = replay(c.nodes[0].port, &[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("Redis Cluster has only db 0"), "{}", text(&out));
    assert!(text(&out).contains("nothing was written"), "{}", text(&out));
    let ver = (7, 0);
    assert!(union_of_masters(&c, ver).is_empty());
    // --db-map 1:0 brings db 1 over as db 0.
    let loaded = RedisServer::start("7.0", Some(&path), &[]);
    let mut want: KeyMap = dump_server(&mut loaded.conn(), ver)
        .into_iter()
        .filter(|(k, _)| k.0 == 1)
        .map(|((_, key), v)| ((0, key), v))
        .collect();
    assert!(!want.is_empty());
    let out =
        replay(c.nodes[0].port, &["--db", "1", "--db-map", "1:0", "--dest-kind", "cluster", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut got = union_of_masters(&c, ver);
    forget_what_commands_cannot_carry(&mut want, &mut got);
    assert_same(&want, &got, ver, "db 1 mapped to 0");
}

fn write_aof(path: &std::path::Path, cmds: &[Vec<&str>]) {
    let mut out = Vec::new();
    for c in cmds {
        out.extend_from_slice(format!("*{}\r\n", c.len()).as_bytes());
        for a in c {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
    }
    std::fs::write(path, out).unwrap();
}

/// AOF commands across slots: DEL/UNLINK/EXISTS/TOUCH/MSET split by slot, a MULTI block
/// of one slot runs as one, one across slots runs unwrapped and is counted; the result
/// equals a server that loaded the AOF. A RENAME across slots is refused up front.
#[test]
fn cluster_splits_and_refuses_aof_commands() {
    let dir = tempfile::tempdir().unwrap();
    let aof = dir.path().join("appendonly.aof");
    let mut cmds: Vec<Vec<&str>> = vec![vec!["SELECT", "0"]];
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    for k in &keys {
        cmds.push(vec!["SET", k, "v"]);
        cmds.push(vec!["INCR", "counter"]);
    }
    let mut mset = vec!["MSET"];
    for k in &keys {
        mset.extend([k.as_str(), "m"]);
    }
    cmds.push(mset);
    cmds.push(vec!["DEL", "k1", "k2", "k3", "k4", "k5", "nothing"]);
    cmds.push(vec!["UNLINK", "k6", "k7", "k8"]);
    cmds.push(vec!["TOUCH", "k9", "k10"]);
    cmds.extend([vec!["MULTI"], vec!["INCR", "{u}a"], vec!["APPEND", "{u}b", "x"], vec!["EXEC"]]);
    cmds.extend([
        vec!["MULTI"],
        vec!["INCR", "n20"],
        vec!["APPEND", "k21", "x"],
        vec!["DEL", "k22", "k23"],
        vec!["EXEC"],
    ]);
    cmds.push(vec!["RPUSH", "{u}list", "a", "b", "c"]);
    let lib = "#!lua name=clusterlib\nredis.register_function('one', function() return 1 end)";
    cmds.push(vec!["FUNCTION", "LOAD", lib]);
    write_aof(&aof, &cmds);

    let loaded = RedisServer::start_aof("7.0", &aof, &[]);
    let ver = (7, 0);
    let want = dump_dbs(&mut loaded.conn(), ver, 0..1);
    assert!(want.len() > 30);
    let c = RedisCluster::start(3, 0);
    let out = replay(c.nodes[2].port, &["--format", "json", "-n", "2", "-aof", aof.to_str().unwrap()]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    // MSET, DEL, UNLINK, TOUCH, and the DEL of the block across slots.
    assert_eq!(report["cluster"]["split"], 5, "{report}");
    assert_eq!(report["cluster"]["everywhere"], 1, "{report}");
    assert_eq!(report["multi_unwrapped"], 1, "{report}");
    assert_same(&want, &union_of_masters(&c, ver), ver, "AOF across slots");
    let f = functions(&mut loaded.conn());
    assert_eq!(f.len(), 1);
    for m in c.master_nodes() {
        assert_eq!(functions(&mut m.conn()), f, "functions on {}", m.port);
    }
    // The applied keys are gone.
    for m in c.master_nodes() {
        let left: Vec<String> = redis::cmd("KEYS").arg("redis-migration:*").query(&mut m.conn()).unwrap();
        assert!(left.is_empty(), "{left:?}");
    }

    // A RENAME across slots cannot be split: refused before anything is written.
    empty(&c, ver);
    cmds.push(vec!["RENAME", "k30", "k31"]);
    cmds.push(vec!["SUNIONSTORE", "k32", "k33", "k34"]);
    write_aof(&aof, &cmds);
    let out = replay(c.nodes[0].port, &["-aof", aof.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("RENAME ×1 (keys in several slots)") && t.contains("SUNIONSTORE ×1"), "{t}");
    assert!(union_of_masters(&c, ver).is_empty(), "nothing may be written");
}

/// The AOF fixtures' db 0 into a cluster: the 6.2 and 7.0 ones hold RENAMEs (and an
/// EVAL) across slots, refused up front; the 8.2 one (expiring keys and fields) arrives
/// equal to a server that loaded it.
#[test]
fn cluster_aof_fixtures_db0() {
    let c = RedisCluster::start(3, 0);
    for (rel, refused) in [
        ("plain-6.2/appendonly.aof", "EVAL ×1 (keys in several slots), RENAME ×1"),
        ("preamble-6.2/appendonly.aof", "RENAME ×1 (keys in several slots)"),
        ("multipart-7.0/appendonlydir", "RENAME ×4 (keys in several slots)"),
    ] {
        let path = crate::replay::aof(rel);
        let out = replay(c.nodes[0].port, &["--db", "0", "--allow-flush", "-aof", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(refused), "{}", text(&out));
        assert!(union_of_masters(&c, (7, 0)).is_empty(), "nothing may be written");
    }
    drop(c);
    let c = RedisCluster::start_version("8.2", 3, 0, &[]);
    let path = crate::replay::aof("expiring-8.2/appendonlydir");
    let loaded = RedisServer::start_aof("8.2", &path, &[]);
    let ver = server_version(&mut loaded.conn());
    for mode in ["restore", "commands"] {
        let mut want = dump_dbs(&mut loaded.conn(), ver, 0..1);
        empty(&c, ver);
        let out = replay(c.nodes[0].port, &["--db", "0", "--mode", mode, "-aof", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", text(&out));
        let mut got = union_of_masters(&c, ver);
        assert!(!want.is_empty());
        forget_what_commands_cannot_carry(&mut want, &mut got);
        assert_same(&want, &got, ver, &format!("expiring-8.2 {mode}"));
    }
}

fn node_id(s: &RedisServer) -> String {
    redis::cmd("CLUSTER").arg("MYID").query(&mut s.conn()).unwrap()
}

/// A slot half migrated when the replay starts: its keys that moved are asked of the
/// importing node after ASKING; an MSET batch holding keys of both nodes (TRYAGAIN) goes
/// one SET per key. Counted in the report; the data ends equal to the source's.
#[test]
fn cluster_follows_ask_and_tryagain() {
    let src = RedisServer::start("7.0", None, &[]);
    let mut s = src.conn();
    for i in 0..20 {
        redis::cmd("SET").arg(format!("{{s}}{i}")).arg(format!("v{i}")).query::<()>(&mut s).unwrap();
        redis::cmd("SET").arg(format!("other{i}")).arg(i).query::<()>(&mut s).unwrap();
    }
    redis::cmd("RPUSH").arg("{s}list").arg("a").arg("b").query::<()>(&mut s).unwrap();
    redis::cmd("SAVE").query::<()>(&mut s).unwrap();
    let rdb = src.dir.path().join("dump.rdb");
    let ver = (7, 0);
    let want = dump_dbs(&mut s, ver, 0..1);

    let c = RedisCluster::start(3, 0);
    let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg("{s}").query(&mut c.nodes[0].conn()).unwrap();
    let masters = c.master_nodes();
    let owner = *masters
        .iter()
        .find(|m| {
            redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot).query::<i64>(&mut m.conn()).is_ok() && {
                let r: redis::RedisResult<()> = redis::cmd("SET").arg("{s}0").arg("old").query(&mut m.conn());
                r.is_ok()
            }
        })
        .expect("the slot's owner");
    let target = *masters.iter().find(|m| m.port != owner.port).unwrap();
    let (owner_id, target_id) = (node_id(owner), node_id(target));
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("IMPORTING")
        .arg(&owner_id)
        .query::<()>(&mut target.conn())
        .unwrap();
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("MIGRATING")
        .arg(&target_id)
        .query::<()>(&mut owner.conn())
        .unwrap();

    let out = replay(c.nodes[0].port, &["--format", "json", "-n", "2", rdb.to_str().unwrap()]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    // {s}0 is on the migrating node, the other {s} keys are not: their MSET is refused
    // with TRYAGAIN, and the SETs of the missing keys are answered with ASK.
    assert!(report["cluster"]["tryagain"].as_u64() >= Some(1), "{report}");
    assert!(report["cluster"]["ask"].as_u64() >= Some(20), "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");

    // Finish the migration, as redis-cli --cluster reshard does, and compare.
    let keys: Vec<String> =
        redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(100).query(&mut owner.conn()).unwrap();
    if !keys.is_empty() {
        let mut m = redis::cmd("MIGRATE");
        m.arg("127.0.0.1").arg(target.port).arg("").arg(0).arg(5000).arg("REPLACE").arg("KEYS").arg(&keys);
        m.query::<()>(&mut owner.conn()).unwrap();
    }
    for n in &masters {
        redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("NODE").arg(&target_id).query::<()>(&mut n.conn()).unwrap();
    }
    assert_same(&want, &union_of_masters(&c, ver), ver, "a slot migrating during the replay");
}

/// An AOF of `n` commands on many keys (strings, counters, lists) and what a server that
/// loaded it holds.
fn big_aof(dir: &std::path::Path, n: usize) -> (std::path::PathBuf, KeyMap) {
    let path = dir.join("big.aof");
    let mut cmds: Vec<Vec<String>> = vec![vec!["SELECT".into(), "0".into()]];
    for i in 0..n {
        cmds.push(match i % 4 {
            0 => vec!["SET".into(), format!("key:{i}"), format!("value {i}")],
            1 => vec!["INCR".into(), format!("counter:{}", i % 997)],
            2 => vec!["RPUSH".into(), format!("list:{}", i % 1009), i.to_string()],
            _ => vec!["HSET".into(), format!("hash:{}", i % 499), format!("f{i}"), "x".into()],
        });
    }
    let refs: Vec<Vec<&str>> = cmds.iter().map(|c| c.iter().map(String::as_str).collect()).collect();
    write_aof(&path, &refs);
    let loaded = RedisServer::start_aof("7.0", &path, &[]);
    let want = dump_dbs(&mut loaded.conn(), (7, 0), 0..1);
    (path, want)
}

/// While the replay runs: 1000 slots resharded from one master to another
/// (`redis-cli --cluster reshard`: ASK and MOVED on the way) and a replica promoted with
/// `CLUSTER FAILOVER`. The replay ends with exit 0 and the data equal.
#[test]
fn cluster_reshard_and_failover_during_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (aof, want) = big_aof(dir.path(), 60_000);
    let c = RedisCluster::start(3, 1);
    let masters = c.master_nodes();
    let (from, to) = (node_id(masters[0]), node_id(masters[1]));
    let child = crate::util::bin()
        .args(["replay", "--format", "json", "--pipeline", "50", "-dport", &c.nodes[0].port.to_string()])
        .args(["-aof", aof.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reshard = std::process::Command::new("redis-cli")
        .args(["--cluster", "reshard", &format!("127.0.0.1:{}", c.nodes[0].port)])
        .args(["--cluster-from", &from, "--cluster-to", &to, "--cluster-slots", "1000", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(reshard.status.success(), "{}", String::from_utf8_lossy(&reshard.stdout));
    // Promote the replica of the third master.
    let third = masters[2].port;
    let replica = c
        .nodes
        .iter()
        .find(|n| {
            let info: String = redis::cmd("INFO").arg("replication").query(&mut n.conn()).unwrap();
            info.contains(&format!("master_port:{third}"))
        })
        .expect("a replica of the third master");
    redis::cmd("CLUSTER").arg("FAILOVER").query::<()>(&mut replica.conn()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    c.wait_ok();
    assert_same_keys(&want, &union_of_masters(&c, (7, 0)), "resharded and failed over during the replay");
    println!("{}", report["cluster"]);
}

/// A master SIGKILLed while the replay writes to it: its replica takes over, the
/// connection moves there, and what the dead master answered but no replica had
/// confirmed (WAIT) is sent again. Exit 0 and the data equal.
#[test]
fn cluster_master_killed_during_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (aof, want) = big_aof(dir.path(), 60_000);
    let mut c = RedisCluster::start(3, 1);
    let victim = c.master_nodes()[0].port;
    let child = crate::util::bin()
        .args(["replay", "--format", "json", "--pipeline", "50", "-dport", &c.nodes[1].port.to_string()])
        .args(["-aof", aof.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the replay has written some keys to it.
    let mut victim_conn =
        redis::Client::open(format!("redis://127.0.0.1:{victim}/")).unwrap().get_connection().unwrap();
    while redis::cmd("DBSIZE").query::<u64>(&mut victim_conn).unwrap() < 100 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    c.nodes.iter_mut().find(|n| n.port == victim).unwrap().kill();
    let out = child.wait_with_output().unwrap();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    // The replica that took over, and the other masters.
    let masters = c.master_nodes();
    assert_eq!(masters.len(), 3, "a replica took over");
    let mut got = KeyMap::new();
    for m in masters {
        got.extend(dump_dbs(&mut m.conn(), (7, 0), 0..1));
    }
    assert_same_keys(&want, &got, "a master killed during the replay");
    println!("{}", report["cluster"]);
}

/// SCRIPT LOAD reaches every node, replicas included (scripts are not replicated), and
/// FUNCTION LOAD every master; keys the cluster already has are found on their master
/// (`--on-existing skip` leaves them alone).
#[test]
fn cluster_scripts_everywhere_and_existing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let aof = dir.path().join("appendonly.aof");
    let script = "return 'from the log'";
    let lib = "#!lua name=everywhere\nredis.register_function('two', function() return 2 end)";
    let mut cmds: Vec<Vec<&str>> =
        vec![vec!["SELECT", "0"], vec!["SCRIPT", "LOAD", script], vec!["FUNCTION", "LOAD", lib]];
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    for k in &keys {
        cmds.push(vec!["SET", k, "new"]);
    }
    write_aof(&aof, &cmds);
    let c = RedisCluster::start(3, 1);
    // Keys the destination has, spread over the masters.
    for m in c.master_nodes() {
        for k in &keys {
            let _: redis::RedisResult<()> = redis::cmd("SET").arg(k).arg("old").query(&mut m.conn());
        }
    }
    let out = replay(c.nodes[0].port, &["--format", "json", "--on-existing", "skip", "-aof", aof.to_str().unwrap()]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["skipped"]["log_commands"], 30, "{report}");
    assert_eq!(report["cluster"]["everywhere"], 2, "{report}");
    let sha: String =
        redis::cmd("SCRIPT").arg("LOAD").arg(script).query(&mut RedisServer::start("7.0", None, &[]).conn()).unwrap();
    for n in &c.nodes {
        let there: Vec<bool> = redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).query(&mut n.conn()).unwrap();
        assert_eq!(there, [true], "SCRIPT LOAD on {}", n.port);
    }
    for m in c.master_nodes() {
        assert_eq!(functions(&mut m.conn()).len(), 1, "FUNCTION LOAD on {}", m.port);
    }
    let got = union_of_masters(&c, (7, 0));
    assert_eq!(got.len(), 30);
    assert!(got.values().all(|(v, _)| *v == KeyView::String(b"old".to_vec())));
}

/// A replay of an AOF into a cluster, killed once its checkpoint has moved, resumes with
/// the same command: each slot's applied key says which transactions ran, so no INCR or
/// RPUSH runs twice or never.
#[test]
fn cluster_killed_replay_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (aof, want) = big_aof(dir.path(), 30_000);
    let c = RedisCluster::start(3, 0);
    let ck = dir.path().join("replay.checkpoint");
    let port = c.nodes[0].port.to_string();
    let args = [
        "replay",
        "-dport",
        &port,
        "--pipeline",
        "1",
        "--checkpoint-every-ms",
        "20",
        "--checkpoint",
        ck.to_str().unwrap(),
        "-aof",
        aof.to_str().unwrap(),
    ];
    let mut child = crate::util::bin()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let moved = || {
        let text = std::fs::read_to_string(&ck).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        (v["resume"]["offset"].as_u64()? > 0).then_some(())
    };
    let t0 = std::time::Instant::now();
    while moved().is_none() && t0.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ck.exists(), "the killed replay left no checkpoint");
    let out = crate::util::bin().args(args).output().unwrap();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("resumed from the checkpoint"), "{report}");
    assert!(!report.contains("resumed from the checkpoint at byte 0 of"), "{report}");
    assert!(!ck.exists(), "a completed replay removes its checkpoint");
    let got = union_of_masters(&c, (7, 0));
    let left: Vec<String> = got
        .keys()
        .filter(|k| k.1.starts_with(b"redis-migration:"))
        .map(|k| String::from_utf8_lossy(&k.1).into())
        .collect();
    assert!(left.is_empty(), "applied keys left behind: {left:?}");
    assert_same_keys(&want, &got, "after a resumed replay into a cluster");
}
