//! The reply reader on arbitrary bytes (a destination's replies are not ours to trust),
//! and the command walker. Never a panic; a reply parsed from a buffer is parsed the same
//! from any longer buffer, and every shorter prefix of it is incomplete.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_migration::resp::{command_at, reply::parse};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((reply, used))) = parse(data) {
        assert!(used <= data.len());
        let mut longer = data[..used].to_vec();
        longer.extend_from_slice(b"+OK\r\n");
        let again = parse(&longer).expect("a reply parses again").expect("whole");
        assert_eq!((&again.0, again.1), (&reply, used));
        for cut in 0..used {
            assert_eq!(parse(&data[..cut]), Ok(None), "a prefix of a reply is incomplete, not a reply or an error");
        }
    }
    let mut at = 0;
    while let Some(c) = command_at(data, at) {
        assert!(c.end > at && c.end <= data.len());
        at = c.end;
    }
});
