//! The packed encodings on their own: ziplist, listpack, intset, zipmap and LZF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_migration::rdb::{intset, listpack, lzf, ziplist, zipmap};

fuzz_target!(|data: &[u8]| {
    let _ = ziplist::parse(data, |_| {});
    let _ = listpack::parse(data, |_| {});
    let _ = intset::parse(data, |_| {});
    let _ = zipmap::parse(data, |_, _| {});
    if let Some((&n, rest)) = data.split_first() {
        let mut out = Vec::new();
        let _ = lzf::decompress_into(rest, n as usize * 64, &mut out);
    }
});
