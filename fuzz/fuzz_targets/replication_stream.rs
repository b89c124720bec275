//! What a replica reads after `+FULLRESYNC`, on arbitrary bytes arriving in pieces of
//! arbitrary sizes: keepalive newlines and the snapshot's header (`$<len>` or
//! `$EOF:<mark>`), the payload (the mark split anywhere), then the command stream cut
//! into items. Never a panic; the payload written is exactly the bytes before the mark
//! (or the `len` bytes); the stream read in pieces gives the items, and the error, of a
//! read of all of it at once; a relative expiry made absolute reads back as one command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_migration::net::bulk::{copy_payload, parse_header, Framing, CONFIG_RUN_ID_SIZE};
use redis_migration::net::LinkError;
use redis_migration::replica::stream::{absolute_expiry, kind, next_item, Item};

/// The items of `data` read at once: (length, argv) each, and whether it ended in an error.
fn at_once(data: &[u8]) -> (Vec<(usize, Vec<Vec<u8>>)>, bool) {
    let mut items = Vec::new();
    let mut at = 0;
    loop {
        match next_item(&data[at..], at as u64) {
            Ok(Some((item, n))) => {
                assert!(n > 0 && n <= data.len() - at);
                items.push((n, argv_of(&item)));
                at += n;
            }
            Ok(None) => return (items, false),
            Err(_) => return (items, true),
        }
    }
}

fn argv_of(item: &Item<'_>) -> Vec<Vec<u8>> {
    match item {
        Item::Keepalive => Vec::new(),
        Item::Command(argv) => argv.iter().map(|a| a.to_vec()).collect(),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&piece, data)) = input.split_first() else { return };
    let piece = usize::from(piece % 64) + 1;

    // The header: lines, keepalives skipped.
    let mut at = 0;
    let framing = loop {
        let Some(nl) = data[at..].iter().position(|&b| b == b'\n') else { return };
        let line = &data[at..at + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += nl + 1;
        match parse_header(line) {
            Ok(Some(f)) => break f,
            Ok(None) => continue,
            Err(_) => return,
        }
    };

    // The payload, in pieces of `piece` bytes (the mark split anywhere).
    let rest = &data[at..];
    let mut given = 0;
    let read = |into: &mut [u8]| -> Result<usize, LinkError> {
        if given == rest.len() {
            return Err(LinkError::Closed);
        }
        let n = piece.min(into.len()).min(rest.len() - given);
        into[..n].copy_from_slice(&rest[given..given + n]);
        given += n;
        Ok(n)
    };
    let mut out = Vec::new();
    let Ok(bytes) = copy_payload(read, framing, &mut out, |_| {}) else { return };
    assert_eq!(bytes as usize, out.len());
    assert_eq!(&rest[..out.len()], &out[..]);
    let stream = match framing {
        Framing::Length(len) => {
            assert_eq!(len, bytes);
            &rest[out.len()..]
        }
        Framing::EofMark(mark) => {
            let end = out.len() + CONFIG_RUN_ID_SIZE;
            assert_eq!(&rest[out.len()..end], &mark[..]);
            &rest[end..]
        }
    };

    // The stream, at once and in pieces.
    let (whole, failed) = at_once(stream);
    let mut buf = Vec::new();
    let mut start = 0;
    let mut got = Vec::new();
    let mut failed_in_pieces = false;
    'feed: for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match next_item(&buf[start..], start as u64) {
                Ok(Some((item, n))) => {
                    if let Item::Command(argv) = &item {
                        let _ = kind(argv);
                        if let Some(cmd) = absolute_expiry(argv, 1_700_000_000_000) {
                            match next_item(&cmd, 0) {
                                Ok(Some((Item::Command(_), n))) => assert_eq!(n, cmd.len()),
                                other => panic!("a rewritten expiry reads back as {other:?}"),
                            }
                        }
                    }
                    got.push((n, argv_of(&item)));
                    start += n;
                }
                Ok(None) => break,
                Err(_) => {
                    failed_in_pieces = true;
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(got, whole);
    assert_eq!(failed_in_pieces, failed);
});
