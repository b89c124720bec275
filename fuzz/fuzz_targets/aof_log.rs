//! The AOF readers on arbitrary bytes: the RESP command log (strict and with truncated
//! tails allowed), the resumable reader fed in two pieces, the key filter on its
//! commands, and the multi-part manifest. Never a panic; a truncated tail is cut no later
//! than the data ends, and the strict reader fails exactly when the tolerant one cuts;
//! the resumable reader gives the units, the error and the end of a one-shot read; a
//! command the filter narrows names only selected keys and reads back as one command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_migration::aof::{keys, manifest, read_log, select, LogReader, Unit};
use redis_migration::filter::Filter;
use redis_migration::glob::Glob;

fuzz_target!(|data: &[u8]| {
    // The key filter on whatever commands the bytes hold: a narrowed command keeps its
    // name and only selected keys, and re-reads as one command.
    let filter = Filter { globs: vec![Glob::new(b"*a*")], ..Filter::default() };
    let mut tally = select::Tally::default();
    let _ = read_log(data, true, |u| {
        if let Some(Unit::One(c)) = select::select(u, &filter, &mut tally).as_deref() {
            if let Some(bytes) = &c.narrowed {
                match keys::keys(&c.argv) {
                    keys::Keys::Some(ks) => assert!(ks.iter().all(|k| filter.accepts_key(k))),
                    other => panic!("a narrowed command names {other:?}"),
                }
                let mut n = 0;
                assert_eq!(read_log(bytes, false, |_| n += 1), Ok(None));
                assert_eq!(n, 1);
            }
        }
    });
    let strict = read_log(data, false, |_| {});
    let tolerant = read_log(data, true, |_| {});
    match (&strict, &tolerant) {
        (Ok(None), Ok(None)) => {}
        (Err(e), Ok(Some(cut))) => {
            assert!(e.truncated, "a cut log must fail strictly as truncated");
            assert_eq!(e.last_good, cut.at);
            assert!(cut.at + cut.dropped == data.len());
        }
        (Err(a), Err(b)) => assert!(!a.truncated && a == b),
        other => panic!("strict and tolerant readers disagree: {other:?}"),
    }
    // The resumable reader, given the data in two pieces (the first byte says where the
    // first ends), then asked to judge the end.
    let cut = data.first().map_or(0, |&b| b as usize * data.len() / 255);
    for allow in [false, true] {
        let mut units = Vec::new();
        let one_shot = read_log(data, allow, |u| units.push(u.clone()));
        let mut reader = LogReader::new();
        let mut pieces = Vec::new();
        let mut error = None;
        'feed: for part in [&data[..cut], data] {
            loop {
                match reader.next(part) {
                    Ok(Some(unit)) => pieces.push(unit),
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(e);
                        break 'feed;
                    }
                }
            }
        }
        let end = match error {
            Some(e) => Err(e),
            None => reader.finish(data, allow),
        };
        assert_eq!((&pieces, &end), (&units, &one_shot), "fed in two pieces cut at {cut}");
    }
    let _ = manifest::parse(data);
});
