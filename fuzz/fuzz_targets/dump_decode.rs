//! `live::decode_dump` on arbitrary bytes: as they come (the footer checks), and with a
//! valid footer appended (RDB version picked by the first byte, the CRC-64 computed), so
//! the fuzzer spends its time in the type byte and the value. It must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_migration::live::decode_dump;
use redis_migration::rdb::crc64;

fuzz_target!(|data: &[u8]| {
    let _ = decode_dump(data);
    if let Some((&first, body)) = data.split_first() {
        // Redis's 1..=13, or Valkey's 80.
        let version: u16 = if first == 0xff { 80 } else { 1 + (first % 13) as u16 };
        let mut p = body.to_vec();
        p.extend_from_slice(&version.to_le_bytes());
        let crc = crc64(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        let _ = decode_dump(&p);
    }
});
