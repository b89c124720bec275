//! A folder of shard snapshots as one dataset: three servers each holding a third of a
//! fixture's keys save into nested subfolders of one folder; `replay DIR` into one
//! server gives the union, which is the fixture. A replica-like copy of one shard with a
//! changed value is refused and named (nothing written), and with `--on-duplicate
//! last|first` the last or first file's value wins; `check DIR` reports the duplicates.

use std::path::{Path, PathBuf};

use redis_migration::live;

use crate::live::{assert_same, live_keys, scan_all, spec, Keys};
use crate::util::{run, testdata, RedisServer};

const FIXTURE: &str = "redis-7.0.rdb";

/// The fixture's keys as a 7.0 server holds them.
fn full() -> (RedisServer, Keys) {
    let server = RedisServer::start("7.0", Some(&testdata(FIXTURE)), &[]);
    let keys = live_keys(scan_all(&spec(&server)).0);
    (server, keys)
}

/// A server loaded with the fixture, keeping only the keys of part `part` of 3 (by
/// their place in key order), saved to `to`.
fn shard(all: &Keys, part: usize, to: &Path) -> RedisServer {
    let server = RedisServer::start("7.0", Some(&testdata(FIXTURE)), &[]);
    let mut c = server.conn();
    for (i, (db, key)) in all.keys().enumerate() {
        if i % 3 != part {
            redis::cmd("SELECT").arg(*db).exec(&mut c).unwrap();
            redis::cmd("DEL").arg(key.as_slice()).exec(&mut c).unwrap();
        }
    }
    save_to(&server, to);
    server
}

fn save_to(server: &RedisServer, to: &Path) {
    redis::cmd("SAVE").exec(&mut server.conn()).unwrap();
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(server.dir.path().join("dump.rdb"), to).unwrap();
}

fn replay(dir: &Path, dest: &RedisServer, extra: &[&str]) -> std::process::Output {
    let port = dest.port.to_string();
    let mut args = vec!["replay", dir.to_str().unwrap(), "-dport", &port];
    args.extend(extra);
    run(&args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn folders_of_shard_snapshots_are_one_dataset() {
    let (_full, all) = full();
    let root = tempfile::tempdir().unwrap();
    let files: [PathBuf; 3] = [
        root.path().join("shard-a/node-1/dump.rdb"),
        root.path().join("shard-b/dump.rdb"),
        root.path().join("shard-c/x/y/dump.rdb"),
    ];
    let shards: Vec<RedisServer> = files.iter().enumerate().map(|(i, f)| shard(&all, i, f)).collect();
    // Things that are not snapshots of their own: an AOF folder (its base is an RDB).
    std::fs::create_dir_all(root.path().join("shard-b/appendonlydir")).unwrap();
    std::fs::write(root.path().join("shard-b/appendonlydir/appendonly.aof.manifest"), "garbage").unwrap();
    std::fs::copy(&files[1], root.path().join("shard-b/appendonlydir/appendonly.aof.1.base.rdb")).unwrap();
    std::fs::write(root.path().join("shard-b/notes.txt"), "not an rdb").unwrap();

    // The union, into one server.
    let dest = RedisServer::start("7.0", None, &[]);
    let out = replay(root.path(), &dest, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_same(&all, &live_keys(scan_all(&spec(&dest)).0), true, "the union of the shards");
    // The report, per file and in total.
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let per_file = report["files"].as_array().unwrap();
    let names: Vec<&str> = per_file.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, files.iter().map(|f| f.to_str().unwrap()).collect::<Vec<_>>());
    let keys: Vec<u64> = per_file.iter().map(|f| f["keys"].as_u64().unwrap()).collect();
    assert_eq!(keys.iter().sum::<u64>(), report["keys"].as_u64().unwrap());
    assert_eq!(keys.iter().sum::<u64>(), all.len() as u64);
    assert!(keys.iter().all(|&k| k > 0), "{keys:?}");
    let out = run(&["check", root.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("no key is in more than one snapshot file"));
    // diff takes the folder as one dataset: equal to the server holding the whole fixture.
    let out = run(&["diff", root.path().to_str().unwrap(), &_full.url(), "--format", "json", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // A replica's snapshot of shard a, one value changed since: sorted after the others.
    let (db, key) = all
        .iter()
        .enumerate()
        .find(|(i, (_, (v, _)))| i % 3 == 0 && v["type"] == "string")
        .map(|(_, (k, _))| k.clone())
        .unwrap();
    let mut c = shards[0].conn();
    redis::cmd("SELECT").arg(db).exec(&mut c).unwrap();
    redis::cmd("SET").arg(key.as_slice()).arg("the replica's value").arg("KEEPTTL").exec(&mut c).unwrap();
    let replica = root.path().join("zz-replica/dump.rdb");
    save_to(&shards[0], &replica);

    let dest = RedisServer::start("7.0", None, &[]);
    let out = replay(root.path(), &dest, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    // Every key of shard a is in the replica's file: counted, the first few named.
    let in_a: Vec<String> = all
        .keys()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, (_, k))| redis_migration::rdb::escape_key(k))
        .collect();
    assert!(err.contains(&format!("{} keys are in more than one snapshot file", in_a.len())), "{err}");
    assert!(in_a.iter().any(|k| err.contains(&format!("key \"{k}\""))), "{err}");
    assert!(err.contains(files[0].to_str().unwrap()) && err.contains(replica.to_str().unwrap()), "{err}");
    assert!(err.contains("nothing was written") && err.contains("--on-duplicate"), "{err}");
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut dest.conn()).unwrap();
    assert!(!info.contains("keys="), "nothing written: {info}");
    let out = run(&["check", root.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("{} keys are in more than one", in_a.len())));

    for (which, value) in [("last", &b"the replica's value"[..]), ("first", b"")] {
        let dest = RedisServer::start("7.0", None, &[]);
        let out = replay(root.path(), &dest, &["--on-duplicate", which]);
        assert_eq!(out.status.code(), Some(0), "{which}: {}", text(&out.stderr));
        let got = live_keys(scan_all(&spec(&dest)).0);
        let mut want = all.clone();
        if which == "last" {
            let rec = live::fetch(&spec(&shards[0]), db, std::slice::from_ref(&key)).unwrap();
            want.extend(live_keys(rec));
            let v: Vec<u8> = redis::cmd("GET")
                .arg(key.as_slice())
                .query(&mut {
                    let mut c = dest.conn();
                    redis::cmd("SELECT").arg(db).exec(&mut c).unwrap();
                    c
                })
                .unwrap();
            assert_eq!(v, value);
        }
        assert_same(&want, &got, true, which);
    }
}
