//! The whole RDB decoder, as `check` drives it, on arbitrary bytes. Inputs that start
//! without a valid header are given one, so the fuzzer spends its time past the header.
//! Each input is also walked cut into one batch per item (the skim finding boundaries):
//! the result must be the same as the sequential walk's. And the parser's raw mode (values
//! stepped over, for `diff`) must never panic, and must find the same keys, in the same
//! order, with the same stored bytes, wherever the full decode succeeds. And the bytes
//! read as a file still being written (`run_growing`, handed over a few bytes at a time)
//! give the same keys and the same error as the whole file read at once.
#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use redis_migration::check::{walk, Summary};
use redis_migration::pipeline::{self, decode_span, Grow, Plan};
use redis_migration::rdb::{Item, Parser};

/// The keys of a span's records, up to its error.
fn span_keys(header: redis_migration::rdb::Header, span: &pipeline::Span<'_>) -> (Vec<Vec<u8>>, Option<String>) {
    let mut keys = Vec::new();
    let r = decode_span(header, span, |item, _| {
        if let Item::Record(r) = item {
            keys.push(r.key.bytes().into_owned());
        }
        Ok(())
    });
    (keys, r.err().map(|e| e.to_string()))
}

/// The records' keys and the first error, read whole or growing by `step` bytes a call
/// (and, when `cut`, broken off there).
fn read(data: &[u8], step: Option<usize>, cut: Option<usize>) -> (Vec<Vec<u8>>, Option<String>) {
    let plan = Plan { threads: 1, batch_bytes: 64, in_flight: None };
    let (mut keys, mut err) = (Vec::new(), None);
    let deliver = |(k, e): (Vec<Vec<u8>>, Option<String>)| {
        keys.extend(k);
        err = e;
        err.is_none()
    };
    let end = match step {
        None => pipeline::run(data, &plan, span_keys, deliver).map(|_| ()),
        Some(step) => {
            let last = cut.unwrap_or(data.len()).min(data.len());
            let shown = AtomicUsize::new(0);
            let more = |_want: usize, _wait: std::time::Duration| {
                let n = (shown.load(Ordering::Relaxed) + step).min(last);
                shown.store(n, Ordering::Relaxed);
                match (n == last, cut.is_some()) {
                    (true, true) => Grow::Broken(&data[..n]),
                    (true, false) => Grow::Whole(data),
                    _ => Grow::More(&data[..n]),
                }
            };
            pipeline::run_growing(&more, &plan, span_keys, deliver).map(|_| ())
        }
    };
    (keys, err.or(end.err().map(|e| e.to_string())))
}

fn growing_agrees(data: &[u8]) {
    let whole = read(data, None, None);
    for step in [1, 7, 100] {
        assert_eq!(read(data, Some(step), None), whole, "read growing by {step} bytes");
    }
    // Broken off short of its end: never a panic, and the keys found are the first keys
    // of the whole read (as many as end before the cut); without an error only when the
    // bytes before the cut hold the snapshot's end (the rest was after it).
    if data.len() > 2 {
        let cut = data.len() / 2;
        let (keys, err) = read(data, Some(13), Some(cut));
        assert!(keys.len() <= whole.0.len() && keys[..] == whole.0[..keys.len()], "cut at {cut}");
        if err.is_none() {
            assert_eq!(keys, whole.0, "a file cut at {cut} read without an error");
            assert_eq!(read(&data[..cut], None, None), (keys, None), "cut at {cut}");
        }
    }
}

/// (db, key, type byte, stored value bytes) of every key, as the parser in `raw` mode or
/// not finds them; `None` on an error.
fn keys(data: &[u8], raw: bool) -> Option<Vec<(u64, Vec<u8>, u8, Vec<u8>)>> {
    let mut p = Parser::new(data).ok()?.raw(raw);
    let mut out = Vec::new();
    loop {
        match p.next_item().ok()? {
            None => return Some(out),
            Some(Item::Record(r)) => out.push((r.db, r.key.bytes().into_owned(), r.rdb_type, r.raw_value.to_vec())),
            Some(Item::Raw(r)) => out.push((r.db, r.key.bytes().into_owned(), r.rdb_type, r.raw_value.to_vec())),
            Some(Item::EmptyKey { db, key, rdb_type }) => out.push((db, key.bytes().into_owned(), rdb_type, Vec::new())),
            Some(_) => {}
        }
    }
}

fn raw_agrees(data: &[u8]) {
    let raw = keys(data, true);
    if let Some(full) = keys(data, false) {
        let raw = raw.expect("raw mode fails where the full decode succeeds");
        assert_eq!(raw.len(), full.len());
        for (r, f) in raw.iter().zip(&full) {
            // An empty collection has no record in the full decode to compare bytes with.
            assert_eq!((r.0, &r.1, r.2), (f.0, &f.1, f.2));
            if !f.3.is_empty() {
                assert_eq!(r.3, f.3);
            }
        }
    }
}

fn both_ways(data: &[u8]) {
    let mut seq = Summary::default();
    let a = walk(data, &mut seq, &Plan::sequential());
    let mut batched = Summary::default();
    let b = walk(data, &mut batched, &Plan { threads: 1, batch_bytes: 1, in_flight: None });
    assert_eq!(a, b, "batched walk reports another error");
    assert_eq!(seq, batched, "batched walk found other things");
    raw_agrees(data);
    growing_agrees(data);
}

fuzz_target!(|data: &[u8]| {
    both_ways(data);
    if data.len() > 1 {
        // The same bytes behind each header family, version picked by the first byte.
        let version = 1 + (data[0] % 13) as u32;
        let mut with_header = format!("REDIS{version:04}").into_bytes();
        with_header.extend_from_slice(&data[1..]);
        both_ways(&with_header);
        let mut valkey = b"VALKEY080".to_vec();
        valkey.extend_from_slice(&data[1..]);
        both_ways(&valkey);
    }
});
