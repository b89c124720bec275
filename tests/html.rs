//! `inspect --html`: the page rendered in a real headless Chromium (Debian's `chromium`).
//!
//! Each page is written to a temp dir and opened twice: `--dump-dom` gives the DOM after
//! the page's script ran (it marks `<body data-rendered="1">` when everything is drawn and
//! writes any error, thrown or blocked, to `data-errors`), and `--screenshot` a PNG whose
//! size must be plausible. The pages and screenshots are copied to
//! `target/tmp/inspect-html/` for a person to look at.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis_migration::inspect::html::render;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// A realistic report: two files, several types and encodings, a 3-level prefix tree with
/// `(other)` nodes, keys that are not UTF-8, `top_n` top entries.
fn realistic(top_n: usize) -> Value {
    let mut top = Vec::with_capacity(top_n);
    let mut memory = 4_000_000u64;
    for i in 0..top_n {
        let (key, kind, encoding) = match i % 10 {
            0 => (json!({"base64": base64(&[0xff, 0x00, b'k', b'e', b'y', b':', (i % 251) as u8])}), "string", "raw"),
            1..=3 => (json!(format!("user:{i}:profile")), "hash", if i % 3 == 0 { "hashtable" } else { "listpack" }),
            4 | 5 => (json!(format!("user:{i}:cart")), "zset", "skiplist"),
            6 => (json!(format!("session:{i:08x}")), "string", "embstr"),
            7 => (json!(format!("queue:jobs:{i}")), "list", "quicklist"),
            8 => (json!(format!("cache:page:/a/b?x={i}&y=<b>")), "string", "raw"),
            _ => (json!(format!("tags:{i}")), "set", "intset"),
        };
        let expire = if i % 4 == 0 { json!(1_795_978_600_000u64 + (i as u64) * 60_000) } else { Value::Null };
        top.push(json!({"db": i % 3, "key": key, "type": kind, "encoding": encoding,
            "elements": (i * 7919) % 5000 + 1, "memory_bytes": memory,
            "largest_element": (i * 31) % 4096 + 8, "expire_at_ms": expire}));
        memory = memory.saturating_sub(memory / 900 + 1).max(64);
    }
    let leaf = |prefix: &str, keys: u64, mem: u64| json!({"prefix": prefix, "keys": keys, "memory_bytes": mem, "no_ttl_bytes": mem / 3, "children": []});
    let node = |prefix: &str, keys: u64, mem: u64, children: Vec<Value>| json!({"prefix": prefix, "keys": keys, "memory_bytes": mem, "no_ttl_bytes": mem / 2, "children": children});
    let user_n = node(
        "user:{n}:",
        900_000,
        50_000_000,
        vec![
            leaf("user:{n}:profile", 500_000, 30_000_000),
            leaf("user:{n}:cart", 300_000, 15_000_000),
            leaf("(other)", 100_000, 5_000_000),
        ],
    );
    let user = node("user:", 1_000_000, 60_000_000, vec![user_n, leaf("(other)", 100_000, 10_000_000)]);
    let session = node(
        "session:",
        200_000,
        20_000_000,
        vec![leaf("session:{n}", 190_000, 19_000_000), leaf("(other)", 10_000, 1_000_000)],
    );
    let queue =
        node("queue:", 40, 8_000_000, vec![leaf("queue:jobs:", 30, 7_000_000), leaf("queue:mail:", 10, 1_000_000)]);
    let prefixes = node("", 1_300_040, 100_000_000, vec![user, session, queue, leaf("(other)", 99_999, 12_000_000)]);

    let enc = |keys: u64, elements: u64, mem: u64| json!({"keys": keys, "elements": elements, "memory_bytes": mem});
    let le_bins = |first: u64, counts: &[u64]| {
        counts.iter().enumerate().map(|(i, &keys)| json!({"bin": first << i, "keys": keys})).collect::<Vec<_>>()
    };
    json!({
        "schema": "redis-migration-inspect/1",
        "files": [
            {"name": "backup/node-1/dump.rdb", "format": "REDIS0012",
             "aux": {"redis-ver": "8.2.3", "ctime": "1795978517", "used-mem": "123456789", "aof-base": "0"},
             "bytes": 99_397_173u64, "log_not_applied": false},
            {"name": "backup/node-2/appendonly.aof", "format": "REDIS0011",
             "aux": {"redis-ver": "7.2.4", "ctime": "1795970000"}, "bytes": 1_234_567, "log_not_applied": true}
        ],
        "target_version": "8.2", "now_ms": 1_795_978_600_000u64,
        "keys": 1_300_040, "memory_bytes": 100_000_000,
        "expired": {"keys": 1234, "memory_bytes": 400_000}, "expired_fields": 297,
        "dbs": {
            "0": {"keys": 1_000_000, "expires": 300_000, "expired": 1000, "memory_bytes": 80_000_000, "overhead_bytes": 24_000_000},
            "1": {"keys": 250_000, "expires": 0, "expired": 0, "memory_bytes": 15_000_000, "overhead_bytes": 6_000_000},
            "10": {"keys": 40, "expires": 40, "expired": 34, "memory_bytes": 3_000, "overhead_bytes": 960},
            "2": {"keys": 50_000, "expires": 10, "expired": 200, "memory_bytes": 4_997_000, "overhead_bytes": 1_200_000}
        },
        "types": {
            "hash": {"keys": 600_000, "elements": 6_000_000, "memory_bytes": 45_000_000,
                     "encodings": {"listpack": enc(590_000, 4_000_000, 35_000_000), "hashtable": enc(9_000, 1_900_000, 9_000_000),
                                   "listpackex": enc(1_000, 100_000, 1_000_000)}},
            "string": {"keys": 500_000, "elements": 500_000, "memory_bytes": 30_000_000,
                       "encodings": {"embstr": enc(300_000, 300_000, 12_000_000), "raw": enc(150_000, 150_000, 17_000_000),
                                     "int": enc(50_000, 50_000, 1_000_000)}},
            "zset": {"keys": 150_000, "elements": 3_000_000, "memory_bytes": 15_000_000,
                     "encodings": {"listpack": enc(149_000, 2_000_000, 9_000_000), "skiplist": enc(1_000, 1_000_000, 6_000_000)}},
            "list": {"keys": 40_000, "elements": 2_000_000, "memory_bytes": 8_000_000,
                     "encodings": {"quicklist": enc(40_000, 2_000_000, 8_000_000)}},
            "set": {"keys": 10_000, "elements": 90_000, "memory_bytes": 1_900_000,
                    "encodings": {"intset": enc(6_000, 30_000, 300_000), "listpack": enc(3_900, 40_000, 800_000),
                                  "hashtable": enc(100, 20_000, 800_000)}},
            "stream": {"keys": 40, "elements": 20_000, "memory_bytes": 100_000,
                       "encodings": {"stream": enc(40, 20_000, 100_000)}}
        },
        "top": top,
        "prefixes": prefixes,
        "ttl": {"bins": [
            {"label": "expired", "keys": 1234, "memory_bytes": 400_000},
            {"label": "< 1 min", "keys": 500, "memory_bytes": 50_000},
            {"label": "< 1 h", "keys": 20_000, "memory_bytes": 2_000_000},
            {"label": "< 1 day", "keys": 200_000, "memory_bytes": 15_000_000},
            {"label": "< 1 week", "keys": 80_000, "memory_bytes": 9_000_000},
            {"label": "< 30 days", "keys": 0, "memory_bytes": 0},
            {"label": "≥ 30 days", "keys": 50, "memory_bytes": 5_000},
            {"label": "no expiry", "keys": 999_490, "memory_bytes": 73_945_000}
        ]},
        "sizes": {
            "elements": le_bins(1, &[500_000, 20_000, 90_000, 150_000, 300_000, 200_000, 30_000, 9_000, 900, 90, 40, 9, 1, 0, 0, 0]),
            "value_bytes": le_bins(8, &[0, 0, 50_000, 200_000, 400_000, 300_000, 250_000, 90_000, 9_000, 900, 100, 30, 9, 1, 0])
        },
        "big_keys": [
            {"db": 0, "key": "queue:jobs:big", "type": "list", "elements": 2_000_000, "memory_bytes": 30_000_000, "commands": 7813},
            {"db": 1, "key": {"base64": base64(&[0xc3, 0x28, b'b', b'i', b'g'])}, "type": "hash", "elements": 300_000,
             "memory_bytes": 12_000_000, "commands": 1172},
            {"db": 0, "key": "</script><script>alert(1)</script>", "type": "string", "elements": 1,
             "memory_bytes": 600_000_000, "commands": 150}
        ]
    })
}

/// What inspect prints for a snapshot with no key.
fn empty() -> Value {
    let bins: Vec<Value> =
        ["expired", "< 1 min", "< 1 h", "< 1 day", "< 1 week", "< 30 days", "≥ 30 days", "no expiry"]
            .iter()
            .map(|label| json!({"label": label, "keys": 0, "memory_bytes": 0}))
            .collect();
    json!({
        "schema": "redis-migration-inspect/1",
        "files": [{"name": "empty.rdb", "format": "REDIS0012", "aux": {"redis-ver": "8.2.3", "ctime": "1795978517"},
                   "bytes": 88, "log_not_applied": false}],
        "target_version": "8.2", "now_ms": 1_795_978_600_000u64,
        "keys": 0, "memory_bytes": 0, "expired": {"keys": 0, "memory_bytes": 0}, "expired_fields": 0,
        "dbs": {}, "types": {}, "top": [],
        "prefixes": {"prefix": "", "keys": 0, "memory_bytes": 0, "no_ttl_bytes": 0, "children": []},
        "ttl": {"bins": bins},
        "sizes": {"elements": [{"bin": 1, "keys": 0}, {"bin": 2, "keys": 0}], "value_bytes": []},
        "big_keys": []
    })
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn count_nodes(node: &Value) -> usize {
    1 + node["children"].as_array().map_or(0, |c| c.iter().map(count_nodes).sum())
}

/// Headless Chromium, or a clear failure.
fn chromium() -> PathBuf {
    let path = PathBuf::from(CHROMIUM);
    assert!(
        path.exists(),
        "{CHROMIUM} not found: the HTML tests need Debian's headless Chromium \
         (as root: apt-get install -y chromium; scripts/setup-servers.sh installs it)"
    );
    path
}

/// Runs Chromium on `url` with `args` in `dir`, with a new profile, killed after
/// `TIME_LIMIT`; returns its stdout.
fn run_chromium(dir: &Path, tag: &str, url: &str, args: &[&str]) -> String {
    let profile = dir.join(format!("profile-{tag}"));
    let out_path = dir.join(format!("{tag}.stdout"));
    let err_path = dir.join(format!("{tag}.stderr"));
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .current_dir(dir)
    .stdin(Stdio::null())
    .stdout(File::create(&out_path).unwrap())
    .stderr(File::create(&err_path).unwrap());
    // Its own process group, so a timeout ends the renderer and helpers too.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {CHROMIUM}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIME_LIMIT {
            let _ = Command::new("kill").args(["-KILL", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            panic!("chromium ({tag}) did not finish in {TIME_LIMIT:?}; stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "chromium ({tag}) failed: {status}; stderr:\n{stderr}");
    std::fs::read_to_string(&out_path).unwrap()
}

/// The value of attribute `name` on the first element `<tag …>` of `dom`.
fn attr(dom: &str, tag: &str, name: &str) -> Option<String> {
    let start = dom.find(&format!("<{tag} "))?;
    let head = &dom[start..start + dom[start..].find('>')?];
    let needle = format!(" {name}=\"");
    let rest = &head[head.find(&needle)? + needle.len()..];
    Some(rest[..rest.find('"')?].to_string())
}

/// The part of `dom` from the element with id `from` to the one with id `to`.
fn between<'a>(dom: &'a str, from: &str, to: &str) -> &'a str {
    let a = dom.find(&format!("id=\"{from}\"")).unwrap_or_else(|| panic!("no #{from} in the DOM"));
    let b = dom[a..].find(&format!("id=\"{to}\"")).map_or(dom.len(), |b| a + b);
    &dom[a..b]
}

struct Rendered {
    dom: String,
    cells: usize,
    top_rows: usize,
    render_ms: f64,
}

/// Writes the page of `report`, dumps its DOM (with `fragment` after `#`) and checks the
/// page says it rendered with no error.
fn open_page(dir: &Path, tag: &str, report: &Value, fragment: &str) -> Rendered {
    let page = dir.join(format!("{tag}.html"));
    std::fs::write(&page, render(report)).unwrap();
    let url = format!("file://{}{}", page.display(), fragment);
    let dom = run_chromium(dir, tag, &url, &["--dump-dom", "--window-size=1280,1000"]);
    let body = attr(&dom, "body", "data-rendered");
    assert_eq!(
        body.as_deref(),
        Some("1"),
        "{tag}: the page did not finish drawing; DOM starts:\n{}",
        &dom[..dom.len().min(3000)]
    );
    let errors = attr(&dom, "body", "data-errors");
    assert!(errors.is_none(), "{tag}: the page recorded errors: {errors:?}");
    let icicle = between(&dom, "icicle", "icicle-empty");
    let cells = icicle.matches("class=\"cell\"").count();
    assert_eq!(attr(&dom, "svg", "data-cells"), Some(cells.to_string()), "{tag}: the icicle's own count");
    let top_rows = between(&dom, "top", "sec-dbs").matches("<tr class=\"row\"").count();
    let render_ms = attr(&dom, "body", "data-render-ms").and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    Rendered { dom, cells, top_rows, render_ms }
}

/// Takes a 1280×1000 screenshot of the page already written for `tag`, checks it is a PNG
/// of plausible size, keeps a copy under target/tmp; returns its size.
fn screenshot(dir: &Path, tag: &str, min_bytes: u64) -> u64 {
    let page = dir.join(format!("{tag}.html"));
    let png = dir.join(format!("{tag}.png"));
    run_chromium(
        dir,
        &format!("{tag}-shot"),
        &format!("file://{}", page.display()),
        &[&format!("--screenshot={}", png.display()), "--window-size=1280,1000"],
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{tag}: no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{tag}: the screenshot is not a PNG");
    let size = bytes.len() as u64;
    assert!(size > min_bytes && size < 5 << 20, "{tag}: screenshot of {size} bytes (expected {min_bytes} B .. 5 MiB)");
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("inspect-html");
    if std::fs::create_dir_all(&keep).is_ok() {
        let _ = std::fs::copy(&png, keep.join(format!("{tag}.png")));
        let _ = std::fs::copy(&page, keep.join(format!("{tag}.html")));
    }
    eprintln!("{tag}: screenshot {size} bytes");
    size
}

#[test]
fn a_realistic_report_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let report = realistic(2000);
    let r = open_page(dir.path(), "realistic", &report, "");
    // Every prefix node is wide enough to draw at 1280 px; the table shows its first page.
    assert_eq!(r.cells, count_nodes(&report["prefixes"]), "icicle cells");
    assert_eq!(r.top_rows, 200, "top-keys rows on the first page");
    assert!(r.dom.contains("Show 200 more"), "a show-more button");
    assert!(r.dom.contains("Showing 200 of 2,000"));
    // Keys that are not UTF-8 show escaped; a key that looks like markup stays text.
    assert!(r.dom.contains(r"\xff\x00key:"), "a base64 key shows as \\xHH escapes");
    assert!(r.dom.contains(r"\xc3(big"));
    assert!(r.dom.contains("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(r.dom.contains("cache:page:/a/b?x=8&amp;y=&lt;b&gt;"));
    // Header, charts and tables are there.
    for text in [
        "backup/node-1/dump.rdb",
        "REDIS0012",
        "2026-11-29 18:55:17 UTC",
        "(the log part is not applied)",
        "Redis 8.2",
        "listpackex",
    ] {
        assert!(r.dom.contains(text), "the page shows {text:?}");
    }
    assert_eq!(between(&r.dom, "dbs", "sec-big").matches("<tr class=\"row\"").count(), 4);
    assert_eq!(between(&r.dom, "big", "tip").matches("<tr class=\"row\"").count(), 3);
    eprintln!("realistic: drawn in {:.0} ms", r.render_ms);
    screenshot(dir.path(), "realistic", 20 << 10);
}

#[test]
fn an_empty_report_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let r = open_page(dir.path(), "empty", &empty(), "");
    assert_eq!((r.cells, r.top_rows), (0, 0));
    assert!(r.dom.contains("No keys."));
    screenshot(dir.path(), "empty", 20 << 10);
    // Not even the parts of a report: the page still draws, with nothing in it.
    for (tag, doc) in
        [("bare", json!({})), ("null", Value::Null), ("wrong", json!({"top": 3, "prefixes": [], "types": "x"}))]
    {
        let r = open_page(dir.path(), tag, &doc, "");
        assert_eq!((r.cells, r.top_rows), (0, 0), "{tag}");
    }
}

#[test]
fn a_link_opens_a_filtered_sorted_zoomed_view() {
    let dir = tempfile::tempdir().unwrap();
    let report = realistic(2000);
    // Keys holding the byte 0xff: every tenth entry, shown as `\xff…`.
    let r = open_page(dir.path(), "view", &report, "#q=%5Cxff&sort=elements&zoom=user%3A&zoom=user%3A%7Bn%7D%3A");
    assert_eq!(r.top_rows, 200);
    assert!(r.dom.contains("Showing 200 of 200 matching (2,000 in all)"), "filtered to the 200 binary keys");
    let keys = between(&r.dom, "top", "sec-dbs");
    assert_eq!(keys.matches("class=\"key binary\"").count(), 200);
    assert!(keys.contains("aria-sort=\"descending\"><button type=\"button\" title=\"Sort by Elements\""));
    // Zoomed into user:{n}: — it and its three children.
    assert_eq!(r.cells, 4);
    let crumbs = between(&r.dom, "crumbs", "icicle-box");
    assert!(crumbs.contains("all keys") && crumbs.contains("user:{n}:"));
}

#[test]
fn a_hundred_thousand_top_keys_do_not_freeze_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let r = open_page(dir.path(), "large", &realistic(100_000), "#q=user");
    assert_eq!(r.top_rows, 200);
    assert!(r.dom.contains("Showing 200 of 50,000 matching (100,000 in all)"));
    eprintln!("100k top keys: drawn in {:.0} ms", r.render_ms);
    assert!(r.render_ms < 10_000.0, "drawing took {} ms", r.render_ms);
}

/// The page `inspect --html` writes for real fixtures (every type and encoding, binary
/// keys, expired keys and fields) renders in Chromium with no error, its numbers those
/// of `inspect --format json`.
#[test]
fn inspect_html_of_the_fixtures_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["redis-8.2.rdb", "redis-8.2-field-ttl.rdb"] {
        let path = crate::util::testdata(file);
        let page = dir.path().join(format!("{file}.html"));
        let out = crate::util::run(&[
            "inspect",
            "--format",
            "json",
            "--html",
            page.to_str().unwrap(),
            path.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let html = std::fs::read_to_string(&page).unwrap();
        // The page embeds the same document.
        let tag = file.trim_end_matches(".rdb");
        let rendered = open_page(dir.path(), tag, &report, "");
        assert_eq!(html, render(&report), "{file}: --html writes the page of the JSON report");
        let shown = report["top"].as_array().unwrap().len();
        assert_eq!(rendered.top_rows, shown, "{file}: top rows");
        assert!(rendered.cells > 1, "{file}: the icicle has blocks");
        screenshot(dir.path(), tag, 20 << 10);
    }
}
