//! The command line as a user meets it: exit codes, filters, formats, man pages.

use crate::util::{run, testdata};

fn stdout(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn check_reports_a_healthy_file() {
    let f = testdata("redis-7.0.rdb");
    let out = stdout(&["check", f.to_str().unwrap()]);
    assert!(out.contains("format: REDIS0010"), "{out}");
    assert!(out.contains("checksum: ok"), "{out}");
    assert!(out.contains("functions: 2"), "{out}");
    assert!(out.contains("db 5: 1 keys"), "{out}");
    assert!(out.contains("status: OK"), "{out}");
}

#[test]
fn check_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(testdata("redis-8.2.rdb")).unwrap();
    let cut = dir.path().join("cut.rdb");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    let out = run(&["check", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut.rdb") && err.contains("at byte"), "{err}");
    let missing = dir.path().join("missing.rdb");
    assert_eq!(run(&["check", missing.to_str().unwrap()]).status.code(), Some(2));
    // A bad CRC is damage.
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n - 3] ^= 0x40;
    let bad = dir.path().join("crc.rdb");
    std::fs::write(&bad, &flipped).unwrap();
    let out = run(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CRC-64 mismatch"));
    // Unknown subcommand or flag: usage error.
    assert_eq!(run(&["check", "--bogus"]).status.code(), Some(2));
}

#[test]
fn print_filters() {
    let f = testdata("redis-7.0.rdb");
    let f = f.to_str().unwrap();
    let lines = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut a = vec!["print", "--format", "json", "-q", f];
        a.extend_from_slice(args);
        stdout(&a).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let keys = |v: &[serde_json::Value]| -> Vec<String> {
        let mut k: Vec<String> = v.iter().filter_map(|j| j["key"].as_str().map(str::to_string)).collect();
        k.sort();
        k
    };
    assert_eq!(keys(&lines(&["--match", "set:*", "--type", "set"])), ["set:big", "set:bin", "set:intset", "set:small"]);
    assert_eq!(keys(&lines(&["--match", "str:int[0-9]*"])), ["str:int16", "str:int32", "str:int64", "str:int8"]);
    assert_eq!(keys(&lines(&["--db", "1"])), ["db1:key", "db1:set"]);
    assert_eq!(keys(&lines(&["--regex", "^db[15]:key$"])), ["db1:key", "db5:key"]);
    assert_eq!(keys(&lines(&["--type", "stream"])), ["stream:big", "stream:empty", "stream:small"]);
    // Expired keys are left out unless asked for, and carry their expiry.
    assert!(keys(&lines(&["--match", "ttl:*"])).iter().all(|k| !k.starts_with("ttl:expired")));
    let expired = lines(&["--match", "ttl:expired*", "--keep-expired"]);
    assert_eq!(keys(&expired), ["ttl:expired", "ttl:expired-hash"]);
    assert!(expired.iter().all(|j| j["expire_at_ms"].as_i64().is_some()));
    // With no key filter, functions come along; with one, they do not.
    assert_eq!(lines(&[]).iter().filter(|j| j.get("function").is_some()).count(), 2);
    assert_eq!(lines(&["--db", "0"]).iter().filter(|j| j.get("function").is_some()).count(), 0);
}

#[test]
fn print_json_shapes() {
    let f = testdata("redis-8.2.rdb");
    let out = stdout(&["print", "--format", "json", "-q", f.to_str().unwrap(), "--match", "zset:inf"]);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let mut scores: Vec<String> = j["value"].as_array().unwrap().iter().map(|p| p[1].to_string()).collect();
    scores.sort();
    assert_eq!(scores, ["\"-inf\"", "\"inf\"", "0.0"]);
    let out = stdout(&["print", "--format", "json", "-q", f.to_str().unwrap(), "--match", "bin:*"]);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(j["key"]["base64"].is_string() && j["value"]["base64"].is_string(), "{j}");
    assert_eq!(crate::util::json_bytes(&j["key"]), b"bin:\x00\xff\xfe\r\n");
    assert_eq!(crate::util::json_bytes(&j["value"]), (0..=255u8).collect::<Vec<u8>>());
    let out = stdout(&["print", "--format", "json", "-q", f.to_str().unwrap(), "--match", "hfe:small"]);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let with_ttl = j["value"].as_array().unwrap().iter().filter(|p| p.get(2).is_some()).count();
    assert_eq!(with_ttl, 2, "{j}");
}

#[test]
fn print_text_and_seed_flag() {
    let f = testdata("redis-6.2.rdb");
    let out = stdout(&["print", "--format", "text", "-rdb", f.to_str().unwrap(), "--match", "str:raw"]);
    assert_eq!(out, "db=0 type=string key=\"str:raw\" value=\"hello world\"\n");
}

#[test]
fn print_stops_cleanly_on_damage() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(testdata("redis-6.2.rdb")).unwrap();
    let cut = dir.path().join("cut.rdb");
    std::fs::write(&cut, &good[..good.len() - 100]).unwrap();
    let out = run(&["print", "--format", "json", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut.rdb: at byte"), "{err}");
}

#[test]
fn man_pages_are_current() {
    for (name, page) in redis_migration::cli::docs::man_pages().unwrap() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(&name);
        let checked_in = std::fs::read(&path).unwrap_or_default();
        assert!(checked_in == page, "man/{name} is stale: run `cargo run -- man --dir man` and commit it");
    }
}

#[test]
fn match_takes_binary_patterns() {
    use std::os::unix::ffi::OsStrExt;
    let f = testdata("redis-8.2.rdb");
    let out = crate::util::bin()
        .args(["print", "--format", "json", "-q"])
        .arg(&f)
        .arg("--match")
        .arg(std::ffi::OsStr::from_bytes(b"bin:?\xff*"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(crate::util::json_bytes(&j["key"]), b"bin:\x00\xff\xfe\r\n");
}

/// The output does not depend on the number of threads: every fixture, every format, cut
/// into the default batches and into batches of a few hundred bytes (so that SELECTs,
/// functions and scripts fall on batch edges), is byte-identical with 1 and 2 threads.
#[test]
fn output_is_the_same_for_any_thread_count() {
    let formats: [&[&str]; 5] = [
        &["--format", "json"],
        &["--format", "text"],
        &["--format", "resp", "--mode", "commands"],
        &["--format", "resp", "--mode", "restore"],
        &["--format", "json", "--db", "1", "--match", "*a*"],
    ];
    for (file, _) in crate::util::FIXTURES {
        let f = testdata(file);
        let f = f.to_str().unwrap();
        for format in formats {
            let mut outputs = Vec::new();
            for extra in [&["--threads", "1"][..], &["--threads", "2"], &["--threads", "2", "--batch-bytes", "300"]] {
                let args: Vec<&str> = ["print", f, "-q"].iter().chain(format).chain(extra).copied().collect();
                let out = run(&args);
                assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
                assert!(!out.stdout.is_empty() || format.len() > 2, "{args:?} printed nothing");
                outputs.push((args.join(" "), out.stdout));
            }
            for (args, o) in &outputs[1..] {
                assert!(o == &outputs[0].1, "{file}: `{args}` differs from `{}`", outputs[0].0);
            }
        }
        let mut reports = Vec::new();
        for extra in [&["--threads", "1"][..], &["--threads", "2", "--batch-bytes", "300"]] {
            let args: Vec<&str> = ["check", f].iter().chain(extra).copied().collect();
            let out = run(&args);
            assert!(out.status.success(), "{args:?}");
            reports.push(out.stdout);
        }
        assert_eq!(String::from_utf8_lossy(&reports[0]), String::from_utf8_lossy(&reports[1]), "{file}: check");
    }
}
