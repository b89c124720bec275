//! `inspect` against the servers that wrote the fixtures: keys and expires per db equal
//! `INFO keyspace`, keys per type equal `TYPE` over `SCAN`, the size histograms equal
//! Redis 8's `INFO keysizes`, the server's biggest keys (`MEMORY USAGE`) are in our top
//! list, `--keys` rows read as CSV; the same report for any number of threads; the log
//! of an AOF is not applied; damage is exit 2 with its offset.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as J;

use crate::util::{damaged_copy, json_bytes, run, testdata, RedisServer, FIXTURES};

fn inspect_json(args: &[&str]) -> J {
    let mut all = vec!["inspect", "--format", "json"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn info(con: &mut redis::Connection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query(con).unwrap()
}

fn module_args(file: &str) -> Vec<String> {
    if file.contains("module") {
        vec!["--loadmodule".into(), crate::util::falkordb_module().to_str().unwrap().into()]
    } else {
        vec![]
    }
}

#[test]
fn counts_equal_what_the_server_that_loaded_the_file_holds() {
    for (file, version) in FIXTURES {
        let path = testdata(file);
        let extra = module_args(file);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let server = RedisServer::start(version, Some(&path), &extra);
        let mut con = server.conn();
        let report = inspect_json(&[path.to_str().unwrap()]);
        settle(&mut con);
        // INFO keyspace: dbN:keys=…,expires=… counts the live keys (expired ones were
        // dropped when the server loaded the file, hashes whose fields all expired deleted
        // by its active expiry).
        let keyspace = info(&mut con, "keyspace");
        let mut theirs: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for line in keyspace.lines().filter_map(|l| l.strip_prefix("db")) {
            let (db, rest) = line.split_once(':').unwrap();
            let field = |name: &str| rest.split(',').find_map(|kv| kv.strip_prefix(name)?.parse::<u64>().ok()).unwrap();
            theirs.insert(db.parse().unwrap(), (field("keys="), field("expires=")));
        }
        let ours: BTreeMap<u64, (u64, u64)> = report["dbs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(db, d)| {
                (db.parse().unwrap(), (d["live"]["keys"].as_u64().unwrap(), d["live"]["expires"].as_u64().unwrap()))
            })
            .filter(|(_, (keys, _))| *keys > 0)
            .collect();
        assert_eq!(ours, theirs, "{file}: live keys and expires per db (INFO keyspace)");
        // TYPE over every key.
        let mut types: BTreeMap<String, u64> = BTreeMap::new();
        for db in ours.keys() {
            redis::cmd("SELECT").arg(db).query::<()>(&mut con).unwrap();
            let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
            for k in keys {
                let t: String = redis::cmd("TYPE").arg(&k).query(&mut con).unwrap();
                *types
                    .entry(
                        if file.contains("module")
                            && !["string", "list", "set", "zset", "hash", "stream"].contains(&t.as_str())
                        {
                            "module".into()
                        } else {
                            t
                        },
                    )
                    .or_default() += 1;
            }
        }
        let ours_types: BTreeMap<String, u64> = report["types"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v["keys"].as_u64().unwrap()))
            .collect();
        assert_eq!(ours_types, types, "{file}: keys per type");
        // Redis 8's INFO keysizes: the same power-of-two histograms, per db and type.
        // (Not on the fixture whose fields have expired: the server counts them until its
        // active expiry deletes them.)
        if version == "8.2" && !file.contains("field-ttl") {
            let text = info(&mut con, "keysizes");
            let mut theirs: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
            for line in text.lines().filter(|l| l.starts_with("db")) {
                let (name, bins) = line.split_once(':').unwrap();
                let bins = bins
                    .split(',')
                    .map(|b| {
                        let (k, v) = b.split_once('=').unwrap();
                        (k.to_string(), v.parse().unwrap())
                    })
                    .collect();
                theirs.insert(name.to_string(), bins);
            }
            let mut ours: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
            for (db, kinds) in report["keysizes"].as_object().unwrap() {
                for (kind, bins) in kinds.as_object().unwrap() {
                    let bins: BTreeMap<String, u64> = bins
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(b, n)| (keysizes_label(b.parse().unwrap()), n.as_u64().unwrap()))
                        .collect();
                    ours.insert(format!("db{db}_{kind}"), bins);
                }
            }
            assert_eq!(ours, theirs, "{file}: INFO keysizes");
        }
    }
}

/// Waits for the server's active expiry to delete the hashes whose fields have all
/// expired (a client never sees them; they are keys until then).
fn settle(con: &mut redis::Connection) {
    for _ in 0..200 {
        let mut empty = 0;
        for db in 0..16u64 {
            redis::cmd("SELECT").arg(db).query::<()>(con).unwrap();
            let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(con).unwrap();
            for k in keys {
                let t: String = redis::cmd("TYPE").arg(&k).query(con).unwrap();
                if t == "hash" && redis::cmd("HLEN").arg(&k).query::<u64>(con).unwrap() == 0 {
                    empty += 1;
                }
            }
        }
        if empty == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the server kept hashes whose fields have all expired");
}

/// A bin as `INFO keysizes` labels it: 0, 1, 2, 4 … 512, then 1K, 2K …
fn keysizes_label(n: u64) -> String {
    let units = ["", "K", "M", "G", "T", "P", "E"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024 && v % 1024 == 0 {
        v /= 1024;
        u += 1;
    }
    format!("{v}{}", units[u])
}

#[test]
fn the_biggest_keys_of_the_server_are_in_the_top_list() {
    for (file, version) in FIXTURES.iter().filter(|(f, _)| !f.contains("module")) {
        let path = testdata(file);
        let server = RedisServer::start(version, Some(&path), &[]);
        let mut con = server.conn();
        let report = inspect_json(&["--top", "20", path.to_str().unwrap()]);
        let top: BTreeSet<(u64, Vec<u8>)> = report["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["db"].as_u64().unwrap(), crate::util::json_bytes(&k["key"])))
            .collect();
        let mut sizes: Vec<(u64, u64, Vec<u8>)> = Vec::new();
        for db in 0..16u64 {
            redis::cmd("SELECT").arg(db).query::<()>(&mut con).unwrap();
            let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
            for k in keys {
                let m: Option<u64> =
                    redis::cmd("MEMORY").arg("USAGE").arg(&k).arg("SAMPLES").arg(0).query(&mut con).unwrap();
                sizes.push((m.unwrap_or(0), db, k));
            }
        }
        sizes.sort_by_key(|s| std::cmp::Reverse(s.0));
        for (m, db, k) in sizes.iter().take(10) {
            assert!(
                top.contains(&(*db, k.clone())),
                "{file}: {} ({m} bytes) is not in our top 20",
                String::from_utf8_lossy(k)
            );
        }
    }
}

#[test]
fn the_report_is_the_same_for_any_thread_count() {
    for (file, _) in FIXTURES {
        let path = testdata(file);
        let p = path.to_str().unwrap();
        let one = inspect_json(&["--now", "1800000000", "-j", "1", p]);
        let many = inspect_json(&["--now", "1800000000", "-j", "3", "--batch-bytes", "300", p]);
        assert_eq!(one, many, "{file}");
    }
}

#[test]
fn keys_rows_read_as_csv_and_add_up_to_the_report() {
    let path = testdata("redis-8.2.rdb");
    let p = path.to_str().unwrap();
    let out = run(&["inspect", "--keys", p]);
    assert_eq!(out.status.code(), Some(0));
    let rows = csv_rows(&out.stdout);
    assert_eq!(
        rows[0],
        ["database", "type", "key", "size_in_bytes", "encoding", "num_elements", "len_largest_element", "expiry"]
            .map(|s| s.as_bytes().to_vec())
    );
    let report = inspect_json(&[p]);
    let (mut n, mut bytes) = (0u64, 0u64);
    for row in &rows[1..] {
        assert_eq!(row.len(), 8, "{row:?}");
        bytes += std::str::from_utf8(&row[3]).unwrap().parse::<u64>().unwrap();
        n += 1;
    }
    // The key with a comma, quote, CR and LF in it reads back whole.
    assert!(rows.iter().any(|r| r[2] == b"bin:\x00\xff\xfe\r\n"), "{rows:?}");
    assert_eq!(n, report["keys"].as_u64().unwrap(), "one row per live key");
    assert_eq!(bytes, report["memory_bytes"].as_u64().unwrap(), "the rows add up to the report");
}

#[test]
fn an_aofs_log_is_not_applied_and_damage_is_exit_2() {
    let aof = testdata("aof/preamble-6.2/appendonly.aof");
    let report = inspect_json(&[aof.to_str().unwrap()]);
    assert_eq!(report["files"][0]["log_not_applied"], true, "{report}");
    assert!(report["keys"].as_u64() > Some(10));
    let dir = tempfile::tempdir().unwrap();
    let bad = damaged_copy(dir.path());
    let out = run(&["inspect", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.rdb") && err.contains("at byte"), "{err}");
}

/// RFC 4180: rows of fields, a quoted field holding commas, quotes (doubled) and line ends.
fn csv_rows(text: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), Vec::new());
    let (mut quoted, mut i) = (false, 0);
    while i < text.len() {
        let b = text[i];
        match (quoted, b) {
            (true, b'"') if text.get(i + 1) == Some(&b'"') => {
                field.push(b'"');
                i += 1;
            }
            (true, b'"') => quoted = false,
            (true, _) => field.push(b),
            (false, b'"') => quoted = true,
            (false, b',') => row.push(std::mem::take(&mut field)),
            (false, b'\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, _) => field.push(b),
        }
        i += 1;
    }
    rows
}

/// Median, 90th percentile and total of the relative error of `rows` (predicted, actual).
fn figures(rows: &[(u64, u64)]) -> (f64, f64, f64) {
    let mut errs: Vec<f64> = rows.iter().map(|&(p, a)| (p as f64 - a as f64).abs() / a.max(1) as f64).collect();
    errs.sort_by(f64::total_cmp);
    let at = |q: f64| errs.get(((errs.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    let (p, a): (u64, u64) = rows.iter().fold((0, 0), |(p, a), &(x, y)| (p + x, a + y));
    (at(0.5), at(0.9), (p as f64 - a as f64).abs() / a.max(1) as f64)
}

/// `--keys` rows as (db, key) → size_in_bytes.
fn keys_sizes(args: &[&str]) -> BTreeMap<(u64, Vec<u8>), u64> {
    let mut all = vec!["inspect", "--keys"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    csv_rows(&out.stdout)[1..]
        .iter()
        .map(|r| {
            let num = |f: &[u8]| std::str::from_utf8(f).unwrap().parse::<u64>().unwrap();
            ((num(&r[0]), r[2].clone()), num(&r[3]))
        })
        .collect()
}

/// Every key's `MEMORY USAGE key SAMPLES 0` next to our figure.
fn against(con: &mut redis::Connection, ours: &BTreeMap<(u64, Vec<u8>), u64>, what: &str) -> (f64, f64, f64) {
    let mut rows = Vec::new();
    for ((db, key), &size) in ours {
        redis::cmd("SELECT").arg(db).query::<()>(con).unwrap();
        let theirs: Option<u64> = redis::cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0).query(con).unwrap();
        let Some(theirs) = theirs else { continue };
        rows.push((size, theirs));
    }
    let (median, p90, total) = figures(&rows);
    eprintln!(
        "{what}: {} keys, error median {:.2}%, p90 {:.2}%, total {:.2}%",
        rows.len(),
        100.0 * median,
        100.0 * p90,
        100.0 * total
    );
    assert!(rows.len() >= ours.len().saturating_sub(2), "{what}: the server lacks our keys");
    (median, p90, total)
}

/// The jemalloc build a test server runs: Debian's package (7.0 here) links the shared
/// one, the pip packages Redis's own.
fn allocator_arg(version: &str) -> &'static str {
    if version == "7.0" {
        "system-jemalloc"
    } else {
        "jemalloc"
    }
}

/// Per key, `inspect --keys` against `MEMORY USAGE key SAMPLES 0` on the server that wrote
/// each fixture: median ≤ 3%, p90 ≤ 10%, total ≤ 3% (module values, which no module here
/// sizes, left out); redis-rdb-tools' memory report on the RDB 9 fixture, for comparison,
/// when it is installed.
#[test]
fn memory_per_key_against_memory_usage() {
    for (file, version) in FIXTURES.iter().filter(|(f, _)| !f.contains("module")) {
        let path = testdata(file);
        let server = RedisServer::start(version, Some(&path), &[]);
        let mut con = server.conn();
        settle(&mut con);
        let ours = keys_sizes(&["--allocator", allocator_arg(version), path.to_str().unwrap()]);
        let (median, p90, total) = against(&mut con, &ours, &format!("{file} on {version}"));
        assert!(median <= 0.03 && p90 <= 0.10 && total <= 0.03, "{file}: {median} {p90} {total}");
        if *file == "redis-6.2.rdb" {
            rdbtools_figures(&mut con, &path);
        }
    }
}

/// redis-rdb-tools' `rdb -c memory` CSV of `rdb` against the server, printed.
fn rdbtools_figures(con: &mut redis::Connection, rdb: &std::path::Path) {
    let Some(tool) = ["rdb"].iter().find_map(|t| which(t)) else {
        eprintln!("redis-rdb-tools is not installed: its figures are not shown");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("memory.csv");
    let out = std::process::Command::new(tool).args(["-c", "memory", "-f"]).arg(&csv).arg(rdb).output().unwrap();
    if !out.status.success() {
        eprintln!("redis-rdb-tools failed: {}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    let theirs: BTreeMap<(u64, Vec<u8>), u64> = csv_rows(&std::fs::read(&csv).unwrap())[1..]
        .iter()
        .filter(|r| r.len() >= 4)
        .filter_map(|r| {
            let db = std::str::from_utf8(&r[0]).ok()?.parse().ok()?;
            Some(((db, r[2].clone()), std::str::from_utf8(&r[3]).ok()?.parse().ok()?))
        })
        .collect();
    against(con, &theirs, "redis-rdb-tools' memory report on redis-6.2.rdb");
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(name)).find(|p| p.is_file())
}

/// `--target-version 7.0`: the RDB 12 fixture sized for 7.0, against a 7.0 server that
/// holds the same data (`print --format resp --target-version 7.0 | redis-cli --pipe`;
/// keys 7.0 cannot hold are refused by print, and absent on both sides).
#[test]
fn memory_predicted_for_another_version() {
    let path = testdata("redis-8.2.rdb");
    let server = RedisServer::start("7.0", None, &[]);
    let (report, _) = crate::translate::pipe_into(&server, &path, &["--target-version", "7.0"]);
    assert!(report.contains("keys refused"), "{report}");
    let mut con = server.conn();
    let ours = keys_sizes(&["--target-version", "7.0.15", "--allocator", "system-jemalloc", path.to_str().unwrap()]);
    let (median, p90, total) = against(&mut con, &ours, "redis-8.2.rdb sized for 7.0");
    assert!(median <= 0.03 && p90 <= 0.10 && total <= 0.03, "{median} {p90} {total}");
}

/// The other forms of the report say the same: the folded stacks add up to the live
/// memory, the CSV's type rows to the JSON's, the text names every type; a folder of
/// snapshots is one report with a line per file.
#[test]
fn folded_csv_text_and_folders_agree_with_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = testdata("redis-7.0.rdb");
    let p = path.to_str().unwrap();
    let folded = dir.path().join("stacks.txt");
    let report = inspect_json(&["--folded", folded.to_str().unwrap(), p]);
    let stacks = std::fs::read_to_string(&folded).unwrap();
    let sum: u64 = stacks.lines().map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap()).sum();
    assert_eq!(sum, report["memory_bytes"].as_u64().unwrap(), "folded stacks add up to the live memory");
    assert!(stacks.lines().all(|l| !l.rsplit_once(' ').unwrap().0.is_empty()));
    let csv = run(&["inspect", "--format", "csv", p]);
    let rows = csv_rows(&csv.stdout);
    for (kind, t) in report["types"].as_object().unwrap() {
        let row =
            rows.iter().find(|r| r[0] == b"type" && r[1] == kind.as_bytes()).unwrap_or_else(|| panic!("no {kind} row"));
        assert_eq!(row[5], t["memory_bytes"].to_string().into_bytes(), "{kind}");
    }
    let text = String::from_utf8(run(&["inspect", p]).stdout).unwrap();
    for kind in report["types"].as_object().unwrap().keys() {
        assert!(text.lines().any(|l| l.starts_with(kind.as_str())), "{kind} in:\n{text}");
    }
    // A folder: the two snapshots in it, per file and summed.
    let folder = dir.path().join("backup");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(testdata("redis-7.0.rdb"), folder.join("a.rdb")).unwrap();
    std::fs::copy(testdata("redis-6.2.rdb"), folder.join("b.rdb")).unwrap();
    let both = inspect_json(&["--target-version", "7.0", folder.to_str().unwrap()]);
    let files = both["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let per_file: u64 = files.iter().map(|f| f["memory_bytes"].as_u64().unwrap()).sum();
    assert_eq!(per_file, both["memory_bytes"].as_u64().unwrap());
}

/// An expiry is judged as Redis judges it: a key (or hash field) whose time is the very
/// millisecond of `--now` still lives; one millisecond later it has expired.
#[test]
fn an_expiry_at_now_itself_is_still_live() {
    let server = RedisServer::start("8.2", None, &[]);
    let mut con = server.conn();
    let at_s: i64 = 4_000_000_000;
    let _: () = redis::cmd("SET").arg("k").arg("v").arg("PXAT").arg(at_s * 1000).query(&mut con).unwrap();
    let _: () = redis::cmd("HSET").arg("h").arg("f").arg("1").arg("g").arg("2").query(&mut con).unwrap();
    let _: () =
        redis::cmd("HPEXPIREAT").arg("h").arg(at_s * 1000).arg("FIELDS").arg(1).arg("f").query(&mut con).unwrap();
    let _: () = redis::cmd("SAVE").query(&mut con).unwrap();
    let dump = server.dir.path().join("dump.rdb");
    let dump = dump.to_str().unwrap();
    let at = inspect_json(&["--now", &at_s.to_string(), dump]);
    assert_eq!((at["dbs"]["0"]["expired"].as_u64(), at["expired_fields"].as_u64()), (Some(0), Some(0)), "{at}");
    let after = inspect_json(&["--now", &(at_s + 1).to_string(), dump]);
    assert_eq!(
        (after["dbs"]["0"]["expired"].as_u64(), after["expired_fields"].as_u64()),
        (Some(1), Some(1)),
        "{after}"
    );
}

/// The prefix tree's budget goes to the first keys that need a node, in input order,
/// whatever the batches: a file mixing one common prefix with many unique keys (more than
/// the budget) gives the same tree in small batches and in one, on any thread count, and
/// the common prefix keeps every one of its keys (it got its node early).
#[test]
fn the_prefix_tree_does_not_depend_on_batches() {
    let src = RedisServer::start("8.2", None, &[]);
    let mut c = src.conn();
    let script = "for i=1,tonumber(ARGV[1]) do \
        redis.call('SET', 'user:'..i..':name', 'n'..i) \
        redis.call('SET', 'sess:'..string.char(97 + i % 26, 97 + (i*7) % 26)..string.rep('q', i % 5)..'x'..string.char(103 + i % 19, 103 + (i*3) % 19, 103 + i % 17), 'v') \
        redis.call('SET', 'sess:u'..string.format('%x', i * 2654435761 % 4294967296):gsub('%d', function(d) return string.char(103 + d) end), 'w') end return 1";
    redis::cmd("EVAL").arg(script).arg(0).arg(3000).query::<i64>(&mut c).unwrap();
    redis::cmd("SAVE").query::<()>(&mut c).unwrap();
    let path = src.dir.path().join("dump.rdb");
    let p = path.to_str().unwrap();
    let prefixes = |args: &[&str]| {
        let mut all = vec!["--now", "1", "--prefix-budget", "400"];
        all.extend_from_slice(args);
        all.push(p);
        inspect_json(&all)["prefixes"].clone()
    };
    let whole = prefixes(&["-j", "1", "--batch-bytes", "100000000"]);
    for args in
        [["-j", "1", "--batch-bytes", "200"], ["-j", "2", "--batch-bytes", "2000"], ["-j", "3", "--batch-bytes", "50"]]
    {
        assert_eq!(prefixes(&args), whole, "{args:?}");
    }
    let user = whole["children"].as_array().unwrap().iter().find(|c| c["prefix"] == "user:").expect("user:");
    assert_eq!(user["keys"], 3000, "{user}");
    let other = whole["children"].as_array().unwrap().iter().find(|c| c["prefix"] == "sess:").expect("sess:");
    assert!(other["children"].as_array().unwrap().iter().any(|c| c["prefix"] == "sess:(other)"), "{other}");
}

/// RESP arrays of bulk strings, as `print --format resp` writes them.
fn resp_commands(mut b: &[u8]) -> Vec<Vec<Vec<u8>>> {
    fn line<'a>(b: &mut &'a [u8]) -> &'a [u8] {
        let at = b.windows(2).position(|w| w == b"\r\n").expect("a CRLF");
        let l = &b[..at];
        *b = &b[at + 2..];
        l
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let head = line(&mut b);
        assert_eq!(head[0], b'*', "{:?}", String::from_utf8_lossy(head));
        let n: usize = std::str::from_utf8(&head[1..]).unwrap().parse().unwrap();
        let mut args = Vec::new();
        for _ in 0..n {
            let len: usize = std::str::from_utf8(&line(&mut b)[1..]).unwrap().parse().unwrap();
            args.push(b[..len].to_vec());
            b = &b[len + 2..];
        }
        out.push(args);
    }
    out
}

/// A big key's command count is what `print --format resp` writes for it: field TTLs as
/// HPEXPIREAT, the key's TTL, chunks of `--max-args`.
#[test]
fn big_keys_count_the_commands_print_writes() {
    let path = testdata("redis-8.2-field-ttl.rdb");
    let p = path.to_str().unwrap();
    for max_args in ["256", "3"] {
        let report =
            inspect_json(&["--big-elements", "1", "--big-bytes", "0", "--now", "1", "--max-args", max_args, p]);
        let out = run(&["print", "--format", "resp", "--keep-expired", "--max-args", max_args, p]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let mut per_key: BTreeMap<(u64, Vec<u8>), u64> = BTreeMap::new();
        let mut db = 0;
        for cmd in resp_commands(&out.stdout) {
            if cmd[0].eq_ignore_ascii_case(b"SELECT") {
                db = std::str::from_utf8(&cmd[1]).unwrap().parse().unwrap();
                continue;
            }
            let key = if cmd[0].eq_ignore_ascii_case(b"XGROUP") { &cmd[2] } else { &cmd[1] };
            *per_key.entry((db, key.clone())).or_default() += 1;
        }
        let big = report["big_keys"].as_array().unwrap();
        assert_eq!(big.len() as u64, report["keys"].as_u64().unwrap(), "every key is big here");
        let mut hpexpireat = false;
        for k in big {
            let key = (k["db"].as_u64().unwrap(), json_bytes(&k["key"]));
            let want = per_key.get(&key).copied().unwrap_or(0);
            assert_eq!(k["commands"].as_u64().unwrap(), want, "{k} with --max-args {max_args}");
            hpexpireat |= k["type"] == "hash" && want > 2;
        }
        assert!(hpexpireat, "a hash with field TTLs among them");
    }
}

/// Times and versions out of range are usage errors (exit 2, said plainly), not wrapped
/// numbers; a version newer than the model is sized as the newest, with a note; a plain
/// AOF says it has no snapshot part.
#[test]
fn out_of_range_arguments_are_refused_plainly() {
    let path = testdata("redis-7.0.rdb");
    let p = path.to_str().unwrap();
    for (args, says) in [
        (&["--now", "-5"][..], "before 1970"),
        (&["--now", "99999999999999999"][..], "too far in the future"),
        (&["--target-version", "1.0"][..], "from Redis 6.2 on"),
        (&["--target-version", "6.0"][..], "from Redis 6.2 on"),
    ] {
        let mut all = vec!["inspect"];
        all.extend_from_slice(args);
        all.push(p);
        let out = run(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    for v in ["99.99", "4294967295.1"] {
        let out = run(&["inspect", "--format", "json", "--target-version", v, p]);
        assert_eq!(out.status.code(), Some(0), "{v}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("sized as on Redis 8.2"), "{v}");
        let as_82: J = serde_json::from_slice(&out.stdout).unwrap();
        let report = inspect_json(&["--target-version", "8.2", p]);
        assert_eq!(as_82["memory_bytes"], report["memory_bytes"], "{v}");
    }
    let aof = testdata("aof/plain-6.2/appendonly.aof");
    let out = run(&["inspect", aof.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no snapshot part") && !text.contains("after the snapshot"), "{text}");
}
