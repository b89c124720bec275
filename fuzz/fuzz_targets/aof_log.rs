//! The AOF readers on arbitrary bytes: the RESP command log (strict and with truncated
//! tails allowed) and the multi-part manifest. Never a panic; a truncated tail is cut no
//! later than the data ends, and the strict reader fails exactly when the tolerant one cuts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_migration::aof::{manifest, read_log};

fuzz_target!(|data: &[u8]| {
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
    let _ = manifest::parse(data);
});
