//! RDB decoding as `rdb.c` loads a file: the header and the opcode loop
//! (`rdbLoadRioWithLoadingCtx`), one decoder per value family (`rdbLoadObject`), the
//! CRC-64 trailer (`crc64.c`). Pure: no threads, no I/O beyond the byte slice it is
//! given. Records borrow from that slice (usually an mmapped file) wherever the encoding
//! allows.

pub mod constants;
pub mod container;
pub mod cursor;
pub mod error;
pub mod intset;
pub mod listpack;
pub mod lzf;
pub mod module;
pub mod skim;
pub mod stream;
pub mod string;
pub mod types;
pub mod value;
pub mod ziplist;
pub mod zipmap;

mod parser;

pub use constants::*;
pub use error::{Error, ErrorKind, Result};
pub use parser::{parse_header, Header, Parser, State, Vendor};
pub use types::*;

/// CRC-64/Jones as Redis computes it ("123456789" → 0xe9c6d914c4b8d9ca), with the
/// carry-less-multiply folding of `crc-fast` (several GB/s) where the CPU has it.
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Redis, data)
}

/// [`crc64`] of the concatenation of `parts`, without concatenating them.
pub fn crc64_parts(parts: &[&[u8]]) -> u64 {
    let mut d = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Redis);
    for p in parts {
        d.update(p);
    }
    d.finalize()
}

/// Key bytes as printable text for messages: printable ASCII as is, the rest as `\xHH`.
pub fn escape_key(key: &[u8]) -> String {
    let mut s = String::with_capacity(key.len().min(64));
    for &b in key.iter().take(200) {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if key.len() > 200 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc64_is_jones() {
        assert_eq!(super::crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    /// The SIMD folding agrees with the plain table algorithm at every length around its
    /// block sizes and at odd alignments.
    #[test]
    fn crc64_matches_table_algorithm() {
        let table = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);
        let data: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for len in (0..600).chain([1023, 1024, 1025, 4095, 4096, 4097, 4999]) {
            for start in [0, 1, 3] {
                let s = &data[start..start + len.min(data.len() - start)];
                assert_eq!(super::crc64(s), table.checksum(s), "len {} start {start}", s.len());
            }
        }
    }

    /// In parts, as RESTORE payloads are checksummed: type byte, value, version.
    #[test]
    fn crc64_of_parts_is_crc64_of_the_whole() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i.wrapping_mul(40503) >> 7) as u8).collect();
        for cut in [0, 1, 7, 64, 129, 1000, 2999, 3000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                super::crc64_parts(&[&[9], a, b, &[12, 0]]),
                super::crc64(&[&[9], &data[..], &[12, 0]].concat())
            );
        }
    }
}
