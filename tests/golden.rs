//! Golden files: what `check`, `print --format json`, `print --format text` and
//! `inspect --format json` write for every fixture, byte for byte, kept in
//! `tests/golden/`. A change of output shows up here as a diff to read;
//! `UPDATE_GOLDEN=1 cargo test golden` writes the new files.

use std::path::Path;

use crate::util::bin;

/// The fixtures as paths relative to the crate (the outputs name them).
const INPUTS: [&str; 9] = [
    "testdata/redis-6.2.rdb",
    "testdata/redis-7.0.rdb",
    "testdata/redis-8.2.rdb",
    "testdata/redis-8.2-module.rdb",
    "testdata/redis-8.2-field-ttl.rdb",
    "testdata/aof/plain-6.2/appendonly.aof",
    "testdata/aof/preamble-6.2/appendonly.aof",
    "testdata/aof/multipart-7.0/appendonlydir",
    "testdata/aof/expiring-8.2/appendonlydir",
];

const OUTPUTS: [(&str, &[&str]); 4] = [
    ("check", &["check"]),
    ("json", &["print", "--format", "json"]),
    ("text", &["print", "--format", "text"]),
    // The inspect document, its schema and figures (expiry judged at a fixed time).
    ("inspect", &["inspect", "--format", "json", "--now", "1800000000"]),
];

#[test]
fn outputs_match_the_golden_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let golden = root.join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut differ = Vec::new();
    for input in INPUTS {
        for (kind, args) in OUTPUTS {
            let out = bin().args(args).arg(input).current_dir(root).output().unwrap();
            let mut got = out.stdout;
            got.extend_from_slice(format!("-- stderr, exit {:?}\n", out.status.code()).as_bytes());
            got.extend_from_slice(&out.stderr);
            let name = format!("{}.{kind}", input.trim_start_matches("testdata/").replace('/', "_"));
            let path = golden.join(&name);
            if update {
                std::fs::create_dir_all(&golden).unwrap();
                std::fs::write(&path, &got).unwrap();
            } else if std::fs::read(&path).ok().as_deref() != Some(&got[..]) {
                differ.push(name);
            }
        }
    }
    assert!(differ.is_empty(), "outputs differ from tests/golden/ (UPDATE_GOLDEN=1 rewrites them): {differ:?}");
}
