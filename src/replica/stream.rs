//! The replication stream a master sends after the snapshot, cut into whole commands:
//! pure, over a byte buffer, so that it can be fuzzed and tested without a server.
//!
//! What arrives (replication.c, the comments above `replicationFeedSlaves` and
//! `replicationCron`): RESP arrays, the same commands an AOF holds, plus the master's
//! housekeeping: `PING` every `repl-ping-replica-period` and `REPLCONF GETACK *`. Every
//! byte of it counts toward the replication offset, housekeeping included. A bare newline
//! between commands is a keepalive: Redis's replica skips it in `processInlineBuffer`
//! (an empty line from the master only refreshes its last interaction) and counts its
//! bytes like any other, so we do too.
//!
//! [`next_item`] returns `Ok(None)` when the buffer holds only part of a command ("read
//! more and call again") and `Err` for bytes that cannot be a replication stream. The
//! command's headers are walked by [`crate::aof::scan`], so lengths are checked against
//! what the buffer holds before anything is sized by them.

use crate::aof::scan::{Entry, Scanner};
use crate::resp::encode::command;

/// One item of the stream, borrowing from the buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'a> {
    /// A bare `\n` or `\r\n`.
    Keepalive,
    /// A command: its arguments (never empty).
    Command(Vec<&'a [u8]>),
}

/// Bytes that are not a replication stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the replication stream is unreadable at offset {offset}: {msg}")]
pub struct StreamError {
    /// The replication offset of the bad item.
    pub offset: u64,
    pub msg: String,
}

/// The next item at the start of `buf` and the bytes it takes; `None` when `buf` holds
/// only part of one. `offset` (the replication offset of `buf[0]`) only names the place
/// in an error.
pub fn next_item(buf: &[u8], offset: u64) -> Result<Option<(Item<'_>, usize)>, StreamError> {
    match buf.first() {
        None => return Ok(None),
        Some(b'\n') => return Ok(Some((Item::Keepalive, 1))),
        Some(b'\r') => {
            return match buf.get(1) {
                None => Ok(None),
                Some(b'\n') => Ok(Some((Item::Keepalive, 2))),
                Some(_) => Err(StreamError { offset, msg: "a carriage return not followed by a newline".into() }),
            }
        }
        Some(b'*') => {}
        Some(&b) => {
            return Err(StreamError { offset, msg: format!("expected '*' (a command), found byte {b:#04x}") });
        }
    }
    let mut argv = Vec::new();
    match Scanner::new(buf).next_entry(&mut argv) {
        Ok(Some(Entry::Command { end, .. })) => Ok(Some((Item::Command(argv), end))),
        Ok(_) => Err(StreamError { offset, msg: "expected a command".into() }),
        Err(e) if e.truncated => Ok(None),
        Err(e) => Err(StreamError { offset: offset + e.at as u64, msg: e.msg }),
    }
}

/// What a command of the stream is to the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `PING`, `REPLCONF …` but GETACK: counted, not written.
    Housekeeping,
    /// `REPLCONF GETACK …`: counted, not written, answered with an ACK.
    GetAck,
    /// `SELECT db` (an unreadable db is an ordinary command, for the log reader to judge).
    Select(u64),
    Multi,
    Exec,
    /// `PUBLISH` / `SPUBLISH`: a message, not data (an AOF never holds one); written only
    /// when asked for, never Sentinel's `__sentinel__:hello`.
    Publish,
    /// Anything else: written to the log.
    Data,
}

/// Classifies a command (argv non-empty, as [`next_item`] gives it).
pub fn kind(argv: &[&[u8]]) -> Kind {
    let name = argv[0];
    if name.eq_ignore_ascii_case(b"PING") {
        Kind::Housekeeping
    } else if name.eq_ignore_ascii_case(b"REPLCONF") {
        if argv.get(1).is_some_and(|a| a.eq_ignore_ascii_case(b"GETACK")) {
            Kind::GetAck
        } else {
            Kind::Housekeeping
        }
    } else if name.eq_ignore_ascii_case(b"SELECT") && argv.len() == 2 {
        match parse_i64(argv[1]).and_then(|d| u64::try_from(d).ok()) {
            Some(db) => Kind::Select(db),
            None => Kind::Data,
        }
    } else if name.eq_ignore_ascii_case(b"MULTI") && argv.len() == 1 {
        Kind::Multi
    } else if name.eq_ignore_ascii_case(b"EXEC") && argv.len() == 1 {
        Kind::Exec
    } else if name.eq_ignore_ascii_case(b"PUBLISH") || name.eq_ignore_ascii_case(b"SPUBLISH") {
        Kind::Publish
    } else {
        Kind::Data
    }
}

fn parse_i64(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A relative expiry turned into an absolute one, `now_ms` being the time it arrived:
/// what Redis 7.0 does itself before it propagates (`expireGenericCommand` and
/// `setGenericCommand` in expire.c / t_string.c rewrite to PEXPIREAT and SET … PXAT), for
/// sources before 7.0, which send the command as the client wrote it. Replaying it later
/// would otherwise give the key a new lease of life. `None`: the command is kept as it is
/// (not a relative expiry, or one whose numbers do not read: the server refused those).
pub fn absolute_expiry(argv: &[&[u8]], now_ms: i64) -> Option<Vec<u8>> {
    let name = argv[0];
    let at = |n: &[u8], unit_ms: i64| -> Option<Vec<u8>> {
        let v = parse_i64(n)?;
        let t = v.checked_mul(unit_ms)?.checked_add(now_ms)?;
        Some(t.to_string().into_bytes())
    };
    let mut out = Vec::new();
    if (name.eq_ignore_ascii_case(b"EXPIRE") || name.eq_ignore_ascii_case(b"PEXPIRE")) && argv.len() >= 3 {
        let unit = if name.eq_ignore_ascii_case(b"EXPIRE") { 1000 } else { 1 };
        let t = at(argv[2], unit)?;
        let mut args: Vec<&[u8]> = vec![b"PEXPIREAT", argv[1], &t];
        args.extend_from_slice(&argv[3..]);
        command(&mut out, &args);
        return Some(out);
    }
    if (name.eq_ignore_ascii_case(b"SETEX") || name.eq_ignore_ascii_case(b"PSETEX")) && argv.len() == 4 {
        let unit = if name.eq_ignore_ascii_case(b"SETEX") { 1000 } else { 1 };
        let t = at(argv[2], unit)?;
        command(&mut out, &[b"SET", argv[1], argv[3], b"PXAT", &t]);
        return Some(out);
    }
    // SET key value [… EX s | PX ms …], GETEX key [EX s | PX ms]: the option in place.
    let first_option = if name.eq_ignore_ascii_case(b"SET") {
        3
    } else if name.eq_ignore_ascii_case(b"GETEX") {
        2
    } else {
        return None;
    };
    let mut i = first_option;
    while i + 1 < argv.len() {
        let opt = argv[i];
        let unit = if opt.eq_ignore_ascii_case(b"EX") {
            1000
        } else if opt.eq_ignore_ascii_case(b"PX") {
            1
        } else {
            i += 1;
            continue;
        };
        let t = at(argv[i + 1], unit)?;
        let mut args: Vec<&[u8]> = argv.to_vec();
        args[i] = b"PXAT";
        args[i + 1] = &t;
        command(&mut out, &args);
        return Some(out);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        command(&mut out, args);
        out
    }

    #[test]
    fn items_and_partial_input() {
        let set = cmd(&[b"SET", b"k", b"v"]);
        let data = [&b"\n\r\n"[..], &set, &cmd(&[b"PING"])].concat();
        let mut at = 0;
        let mut items = Vec::new();
        while let Some((item, n)) = next_item(&data[at..], at as u64).unwrap() {
            items.push(item);
            at += n;
        }
        assert_eq!(at, data.len());
        assert_eq!(
            items,
            vec![
                Item::Keepalive,
                Item::Keepalive,
                Item::Command(vec![b"SET", b"k", b"v"]),
                Item::Command(vec![b"PING"])
            ]
        );
        // Every proper prefix of a command is "read more".
        for cut in 0..set.len() {
            assert_eq!(next_item(&set[..cut], 0).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(next_item(b"\r", 0).unwrap(), None);
    }

    #[test]
    fn bad_bytes_are_errors() {
        for bad in [&b"+OK\r\n"[..], b"\rx", b"*x\r\n", b"*1\r\n+PING\r\n", b"#TS:1\r\n"] {
            assert!(next_item(bad, 7).is_err(), "{bad:?}");
        }
        let e = next_item(b"+OK\r\n", 7).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the replication stream is unreadable at offset 7: expected '*' (a command), found byte 0x2b"
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(&[b"ping"]), Kind::Housekeeping);
        assert_eq!(kind(&[b"REPLCONF", b"GETACK", b"*"]), Kind::GetAck);
        assert_eq!(kind(&[b"REPLCONF", b"ACK", b"1"]), Kind::Housekeeping);
        assert_eq!(kind(&[b"SELECT", b"3"]), Kind::Select(3));
        assert_eq!(kind(&[b"SELECT", b"-1"]), Kind::Data);
        assert_eq!(kind(&[b"multi"]), Kind::Multi);
        assert_eq!(kind(&[b"EXEC"]), Kind::Exec);
        assert_eq!(kind(&[b"SET", b"a", b"b"]), Kind::Data);
        assert_eq!(kind(&[b"publish", b"news", b"hi"]), Kind::Publish);
    }

    #[test]
    fn relative_expiries_become_absolute() {
        let now = 1_000_000;
        let t = |a: &[&[u8]]| absolute_expiry(a, now);
        assert_eq!(t(&[b"EXPIRE", b"k", b"10"]), Some(cmd(&[b"PEXPIREAT", b"k", b"1010000"])));
        assert_eq!(t(&[b"pexpire", b"k", b"10", b"NX"]), Some(cmd(&[b"PEXPIREAT", b"k", b"1000010", b"NX"])));
        assert_eq!(t(&[b"SETEX", b"k", b"2", b"v"]), Some(cmd(&[b"SET", b"k", b"v", b"PXAT", b"1002000"])));
        assert_eq!(t(&[b"PSETEX", b"k", b"2", b"v"]), Some(cmd(&[b"SET", b"k", b"v", b"PXAT", b"1000002"])));
        assert_eq!(
            t(&[b"SET", b"k", b"v", b"NX", b"ex", b"3"]),
            Some(cmd(&[b"SET", b"k", b"v", b"NX", b"PXAT", b"1003000"]))
        );
        assert_eq!(t(&[b"SET", b"k", b"v", b"PX", b"3"]), Some(cmd(&[b"SET", b"k", b"v", b"PXAT", b"1000003"])));
        assert_eq!(t(&[b"GETEX", b"k", b"PX", b"5"]), Some(cmd(&[b"GETEX", b"k", b"PXAT", b"1000005"])));
        // A value spelled "EX" is not an option; absolute forms and bad numbers stay.
        assert_eq!(t(&[b"SET", b"k", b"EX"]), None);
        assert_eq!(t(&[b"SET", b"k", b"v", b"PXAT", b"5"]), None);
        assert_eq!(t(&[b"EXPIRE", b"k", b"soon"]), None);
        assert_eq!(t(&[b"EXPIRE", b"k", b"9223372036854775807"]), None);
        assert_eq!(t(&[b"HSET", b"k", b"EX", b"1"]), None);
    }
}
