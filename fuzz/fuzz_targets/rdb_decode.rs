//! The whole RDB decoder, as `check` drives it, on arbitrary bytes. Inputs that start
//! without a valid header are given one, so the fuzzer spends its time past the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_migration::cli::check::{walk, Summary};

fuzz_target!(|data: &[u8]| {
    let _ = walk(data, &mut Summary::default());
    if data.len() > 1 {
        // The same bytes behind each header family, version picked by the first byte.
        let version = 1 + (data[0] % 13) as u32;
        let mut with_header = format!("REDIS{version:04}").into_bytes();
        with_header.extend_from_slice(&data[1..]);
        let _ = walk(&with_header, &mut Summary::default());
        let mut valkey = b"VALKEY080".to_vec();
        valkey.extend_from_slice(&data[1..]);
        let _ = walk(&valkey, &mut Summary::default());
    }
});
