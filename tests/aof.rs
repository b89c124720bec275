//! AOF input against real servers: a redis-server loading a copy of each AOF fixture and an
//! empty one filled by `print --format resp | redis-cli --pipe` hold the same keys and
//! functions; truncated tails behave as Redis's aof-load-truncated; the corpus AOFs are read
//! or refused with a reason.

use std::path::{Path, PathBuf};

use crate::oracle::{dump_server, server_version, KeyView};
use crate::translate::{assert_same, functions, pipe_args};
use crate::util::{run, testdata, RedisServer};

/// Loads `input` into `version` itself, and pipes our translation of `args` into an empty
/// server of the same version; the two must be equal.
fn compare(version: &str, loaded: &RedisServer, args: &[&str], what: &str) {
    let empty = RedisServer::start(version, None, &[]);
    let (mut a, mut b) = (loaded.conn(), empty.conn());
    let ver = server_version(&mut a);
    let target = format!("{}.{}", ver.0, ver.1);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--mode", "restore", "--target-version", &target]);
    let (report, code) = pipe_args(&empty, &all);
    assert_eq!(code, 0, "{what}: {report}");
    let mut want = dump_server(&mut a, ver);
    let mut got = dump_server(&mut b, ver);
    assert!(want.len() > 10, "{what}: the loaded server has only {} keys", want.len());
    // XCLAIM and XREADGROUP in a log stamp consumers with the clock of whoever replays
    // them (the loading server as much as us): those two times are not the log's content.
    for map in [&mut want, &mut got] {
        for (view, _) in map.values_mut() {
            if let KeyView::Stream(s) = view {
                for c in s.groups.iter_mut().flat_map(|g| g.consumers.iter_mut()) {
                    c.seen_time = 0;
                    c.active_time = c.active_time.map(|_| 0);
                }
            }
        }
    }
    assert_same(&want, &got, ver, what);
    if ver >= (7, 0) {
        assert_eq!(functions(&mut a), functions(&mut b), "{what}: functions");
    }
}

fn fixture(rel: &str) -> PathBuf {
    testdata(&format!("aof/{rel}"))
}

#[test]
fn plain_aof_6_2() {
    let f = fixture("plain-6.2/appendonly.aof");
    let loaded = RedisServer::start_aof("6.2", &f, &[]);
    compare("6.2", &loaded, &[f.to_str().unwrap()], "plain 6.2 AOF");
}

#[test]
fn preamble_aof_6_2() {
    let f = fixture("preamble-6.2/appendonly.aof");
    let loaded = RedisServer::start_aof("6.2", &f, &[]);
    compare("6.2", &loaded, &[f.to_str().unwrap()], "RDB-preamble 6.2 AOF");
}

#[test]
fn multipart_aof_7_0() {
    let dir = fixture("multipart-7.0/appendonlydir");
    let loaded = RedisServer::start_aof("7.0", &dir, &[]);
    compare("7.0", &loaded, &[dir.to_str().unwrap()], "multi-part 7.0 AOF dir");
    let manifest = dir.join("appendonly.aof.manifest");
    compare("7.0", &loaded, &[manifest.to_str().unwrap()], "multi-part 7.0 AOF manifest");
}

/// The base RDB given with -rdb and the incr files with -aof: the same as the whole dir.
#[test]
fn rdb_then_aof_pair() {
    let dir = fixture("multipart-7.0/appendonlydir");
    let loaded = RedisServer::start_aof("7.0", &dir, &[]);
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let (base, i2, i3, i4) = (
        p("appendonly.aof.2.base.rdb"),
        p("appendonly.aof.2.incr.aof"),
        p("appendonly.aof.3.incr.aof"),
        p("appendonly.aof.4.incr.aof"),
    );
    compare("7.0", &loaded, &["-rdb", &base, "-aof", &i2, "-aof", &i3, "-aof", &i4], "-rdb base -aof incr…");
    // The whole dir after -rdb would load the snapshot twice: refused unless --force.
    let out = run(&["print", "--format", "resp", "-rdb", &base, "-aof", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["print", "--format", "resp", "--force", "-rdb", &base, "-aof", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Cut inside a MULTI, inside an argument and inside a header: without --allow-truncated an
/// error naming the offset of the last complete command; with it, exactly what a real
/// redis-server with aof-load-truncated yes loads from the same cut file.
#[test]
fn truncated_tails_load_like_redis() {
    let full = std::fs::read(fixture("plain-6.2/appendonly.aof")).unwrap();
    let multi = full.windows(15).position(|w| w == b"*1\r\n$5\r\nMULTI\r\n").expect("the fixture has a MULTI");
    let last_cmd = full.len() - 1 - full.iter().rev().position(|&b| b == b'*').unwrap();
    for cut in [multi + 40, full.len() - 3, last_cmd + 2] {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("appendonly.aof");
        std::fs::write(&f, &full[..cut]).unwrap();
        let out = run(&["print", "--format", "resp", f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "cut {cut}: {err}");
        assert!(err.contains("--allow-truncated") && err.contains("the last complete command ends at byte"), "{err}");
        let loaded = RedisServer::start_aof("6.2", &f, &["--aof-load-truncated", "yes"]);
        assert!(loaded.log().contains("truncated"), "cut {cut}: redis did not see a truncation");
        compare("6.2", &loaded, &["--allow-truncated", f.to_str().unwrap()], &format!("cut at {cut}"));
    }
}

fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("REDISMIGRATION_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    dir.is_dir().then_some(dir)
}

/// Every AOF of the shared corpus is read whole, or refused with an offset; the one whose
/// line endings were rewritten to LF by its origin is refused, not half-read.
#[test]
fn corpus_aofs_are_read_or_refused() {
    let Some(corpus) = corpus() else {
        eprintln!("no corpus at ../shared/corpus (set REDISMIGRATION_CORPUS): skipped");
        return;
    };
    let mut stack = vec![corpus.clone()];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "aof") {
                continue;
            }
            seen += 1;
            let out = run(&["check", "-q", p.to_str().unwrap()]);
            let err = String::from_utf8_lossy(&out.stderr);
            let lf_damaged =
                p.ends_with("tair-opensource_RedisShake/test/aof_test/appendonlydir/appendonly.aof.2.incr.aof");
            if lf_damaged {
                assert_eq!(out.status.code(), Some(1), "{}: {err}", p.display());
                assert!(err.contains("bare LF") && err.contains("at byte"), "{err}");
            } else {
                assert_eq!(out.status.code(), Some(0), "{}: {err}", p.display());
            }
        }
    }
    assert!(seen >= 15, "only {seen} AOFs in the corpus");
}

/// Redis's own manifest test vectors: those Redis refuses for their text are refused; the
/// others parse (some then name files that are not there, as in Redis's tests).
#[test]
fn manifest_vectors() {
    let Some(corpus) = corpus() else {
        eprintln!("no corpus: skipped");
        return;
    };
    let dir = corpus.join("redis_redis/aof-manifest-vectors");
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    for v in index.as_array().unwrap() {
        let file = v["file"].as_str().unwrap();
        let test = v["test"].as_str().unwrap();
        let text = std::fs::read(dir.join(file)).unwrap();
        let parsed = redis_migration::aof::manifest::parse(&text);
        // Refused for a missing file, not for the text: Redis's test removes the file.
        let missing_file_case = test.contains("file missing") || test.contains("does not exist");
        let want_ok = v["expect_load_ok"].as_bool().unwrap() || missing_file_case;
        assert_eq!(parsed.is_ok(), want_ok, "{file} ({test}): {parsed:?}");
    }
}

/// For `--until`: the multi-part fixture, the time of its one `#TS` annotation (it opens
/// the last incr file), and the files before it (base and incr files, in order).
pub(crate) fn until_fixture() -> (PathBuf, u64, Vec<String>) {
    let dir = fixture("multipart-7.0/appendonlydir");
    let ts: u64 = std::fs::read_to_string(dir.join("appendonly.aof.4.incr.aof"))
        .unwrap()
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#TS:"))
        .and_then(|t| t.parse().ok())
        .expect("a #TS annotation first in the last incr file");
    let before = ["appendonly.aof.2.base.rdb", "appendonly.aof.2.incr.aof", "appendonly.aof.3.incr.aof"]
        .iter()
        .map(|f| dir.join(f).to_str().unwrap().to_string())
        .collect();
    (dir, ts, before)
}

#[test]
fn until_cuts_at_the_first_later_annotation() {
    let (dir, ts, files) = until_fixture();
    let d = dir.to_str().unwrap();
    let print = |args: &[&str]| {
        let out = run(&[&["print", "--format", "json", "-q"], args].concat());
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let before = (ts - 1).to_string();
    let first_files: Vec<&str> = files.iter().map(String::as_str).collect();
    assert_eq!(print(&["-aof", d, "--until", &before]), print(&first_files), "cut before the annotation");
    assert_eq!(print(&["-aof", d, "--until", &ts.to_string()]), print(&["-aof", d]), "nothing after it is later");
    let out = run(&["print", "-aof", fixture("plain-6.2/appendonly.aof").to_str().unwrap(), "--until", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("aof-timestamp-enabled"));
}

/// `--match` on AOF commands, print and replay: a real server writes a log mixing
/// selected and other keys; what we load from it must equal the source's selected keys,
/// except those written by the commands we report as left out.
#[test]
fn key_filters_select_aof_commands() {
    let src = RedisServer::start("7.0", None, &["--appendonly", "yes", "--appendfsync", "always"]);
    let mut c = src.conn();
    let run_cmd = |c: &mut redis::Connection, args: &[&str]| {
        let mut cmd = redis::cmd(args[0]);
        args[1..].iter().for_each(|a| {
            cmd.arg(*a);
        });
        cmd.query::<redis::Value>(c).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    };
    for args in [
        &["SET", "user:1", "a"][..],
        &["SET", "other:1", "b"],
        &["MSET", "user:2", "x", "other:2", "y", "user:3", "z"],
        &["RPUSH", "user:list", "3", "1", "2"],
        &["SADD", "other:set", "m"],
        &["DEL", "user:1", "other:1"],
        &["HSET", "user:h", "f", "v"],
        &["EXPIRE", "user:h", "1000"],
        &["RENAME", "other:2", "user:renamed"],
        &["SORT", "user:list", "STORE", "user:sorted"],
        &["SELECT", "1"],
        &["SET", "user:db1", "v"],
        &["SET", "other:db1", "w"],
        &["SELECT", "0"],
    ] {
        run_cmd(&mut c, args);
    }
    redis::pipe().atomic().cmd("INCR").arg("user:n").cmd("INCR").arg("other:n").query::<()>(&mut c).unwrap();
    let ver = server_version(&mut c);
    let mut want = dump_server(&mut c, ver);
    let reported_keys: [&[u8]; 2] = [b"user:renamed", b"user:sorted"];
    for k in reported_keys {
        assert!(want.contains_key(&(0, k.to_vec())), "the source has {}", String::from_utf8_lossy(k));
    }
    want.retain(|(_, k), _| k.starts_with(b"user:") && !reported_keys.contains(&k.as_slice()));
    assert_eq!(want.len(), 6, "{:?}", want.keys().collect::<Vec<_>>());
    let aof = src.dir.path().join("appendonlydir");
    let aof = aof.to_str().unwrap();

    let check_report = |report: &str, what: &str| {
        assert!(report.contains("narrowed 2 AOF commands"), "{what}: {report}");
        assert!(report.contains("left out 1 AOF commands that name keys the filter selects"), "{what}: {report}");
        assert!(report.contains("RENAME \"other:2\" \"user:renamed\""), "{what}: {report}");
        assert!(report.contains("left out 1 AOF commands whose keys cannot be known"), "{what}: {report}");
        assert!(report.contains("SORT \"user:list\" \"STORE\""), "{what}: {report}");
    };
    let printed = RedisServer::start("7.0", None, &[]);
    let (report, code) = pipe_args(&printed, &["--match", "user:*", aof]);
    assert_eq!(code, 1, "commands left out that a user must look at: {report}");
    check_report(&report, "print");
    assert_same(&want, &dump_server(&mut printed.conn(), ver), ver, "print --match");

    // A filter that selects none of the log: nothing is printed, and what it left out is
    // still reported, with the exit status of commands a user must look at.
    for format in ["resp", "json"] {
        let out = crate::util::run(&["print", "--format", format, "--match", "none:*", aof]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{format}: {err}");
        assert!(out.stdout.is_empty(), "{format}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(err.contains("left out 1 AOF commands whose keys cannot be known"), "{format}: {err}");
        assert!(err.contains("by filters"), "{format}: {err}");
    }

    let replayed = RedisServer::start("7.0", None, &[]);
    let out = crate::util::bin()
        .args(["replay", "-dport", &replayed.port.to_string(), "--match", "user:*", aof])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{report}");
    check_report(&report, "replay");
    assert_same(&want, &dump_server(&mut replayed.conn(), ver), ver, "replay --match");

    // --type cannot select commands: refused, nothing written.
    let out = run(&["print", "--type", "string", aof]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--type selects keys of snapshots"));
}

/// AOF output does not depend on the number of threads: every AOF fixture, in every
/// format, with and without filters and `--until`, cut into batches of a few hundred
/// bytes (so that SELECTs and MULTI blocks fall on batch edges), prints the same bytes
/// and the same report with 1, 2 and 3 threads.
#[test]
fn aof_output_is_the_same_for_any_thread_count() {
    let (until_dir, ts, _) = until_fixture();
    let before = (ts - 1).to_string();
    let inputs = [
        fixture("plain-6.2/appendonly.aof"),
        fixture("preamble-6.2/appendonly.aof"),
        fixture("multipart-7.0/appendonlydir"),
    ];
    let variants: [&[&str]; 7] = [
        &["--format", "json"],
        &["--format", "text"],
        &["--format", "resp"],
        &["--format", "resp", "--db", "0", "--match", "*a*"],
        &["--format", "json", "--regex", "^[a-m]"],
        &["--format", "resp", "--until", &before],
        &["--format", "json", "--until", &before],
    ];
    for input in &inputs {
        for variant in variants {
            let is_until = variant.contains(&"--until");
            let input = if is_until { &until_dir } else { input };
            let mut outputs = Vec::new();
            for extra in [&["-j", "1"][..], &["-j", "2", "--batch-bytes", "300"], &["-j", "3", "--batch-bytes", "700"]]
            {
                let args: Vec<&str> =
                    ["print", input.to_str().unwrap()].iter().chain(variant).chain(extra).copied().collect();
                let out = run(&args);
                assert!(matches!(out.status.code(), Some(0 | 1)), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
                assert!(!out.stdout.is_empty(), "{args:?} printed nothing");
                outputs.push((args.join(" "), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned()));
            }
            for (args, o, report) in &outputs[1..] {
                assert!(o == &outputs[0].1, "`{args}` differs from `{}`", outputs[0].0);
                assert_eq!(report, &outputs[0].2, "`{args}`: report");
            }
        }
    }
}
