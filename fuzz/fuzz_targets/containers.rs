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
        // Expansion (sized up front) and validation (the instruction walk alone) must
        // agree, error for error; a success produces exactly the declared length.
        let declared = n as usize * 64;
        let mut out = Vec::new();
        let expanded = lzf::decompress_into(rest, declared, &mut out);
        assert_eq!(expanded, lzf::validate(rest, declared));
        assert!(expanded.is_err() || out.len() == declared);
    }
});
