//! The whole RDB decoder, as `check` drives it, on arbitrary bytes. Inputs that start
//! without a valid header are given one, so the fuzzer spends its time past the header.
//! Each input is also walked cut into one batch per item (the skim finding boundaries):
//! the result must be the same as the sequential walk's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_migration::check::{walk, Summary};
use redis_migration::pipeline::Plan;

fn both_ways(data: &[u8]) {
    let mut seq = Summary::default();
    let a = walk(data, &mut seq, &Plan::sequential());
    let mut batched = Summary::default();
    let b = walk(data, &mut batched, &Plan { threads: 1, batch_bytes: 1, in_flight: None });
    assert_eq!(a, b, "batched walk reports another error");
    assert_eq!(seq, batched, "batched walk found other things");
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
