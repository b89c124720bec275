//! A snapshot transfer read raw into a file: what a master sends a replica after
//! `+FULLRESYNC <replid> <offset>`, in bounded memory whatever its size.
//!
//! The framings, as Redis's replica reads them (src/replication.c, `readSyncBulkPayload`,
//! and the comments above `syncWithMaster` and in `replicationCron`):
//! - while the master prepares the snapshot it sends bare newlines, keepalives that
//!   carry nothing and are skipped;
//! - a line starting with `-` is the master giving up (`-ERR …`);
//! - `$<len>\r\n`, then exactly `len` bytes: the snapshot was written to disk first. The
//!   command stream may follow at once, so not a byte past `len` is read;
//! - `$EOF:<40-byte mark>\r\n`, then the payload, then the same 40 bytes: a diskless
//!   transfer (`repl-diskless-sync yes`, to a replica that sent `REPLCONF capa eof`),
//!   whose length nobody knows in advance. Like Redis, we compare the last 40 bytes
//!   received with the mark after every read: the master sends nothing after the mark
//!   until the replica's first `REPLCONF ACK` (replication.c, where
//!   `repl_start_cmd_stream_on_ack` is set), so the mark always ends a read. The last 40
//!   bytes received are held back from the file until more arrive, so the mark is never
//!   written (Redis writes it and truncates the file afterwards).
//!
//! Memory: one buffer of [`BUF_BYTES`], whatever the payload's size.

use std::io::Write;

use super::link::{Link, LinkError};

/// The length of a diskless transfer's end mark: Redis makes it a random run ID
/// (replication.c: `CONFIG_RUN_ID_SIZE`, 40 hex characters).
pub const CONFIG_RUN_ID_SIZE: usize = 40;

/// The payload moves through one buffer of this size.
pub const BUF_BYTES: usize = 256 << 10;

/// The longest header line accepted (Redis reads it into a 1024-byte buffer).
const MAX_HEADER_LINE: usize = 1024;

/// How the payload's end is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `$<len>`: exactly this many bytes.
    Length(u64),
    /// `$EOF:<mark>`: the payload ends with this mark, which is not part of it.
    EofMark([u8; CONFIG_RUN_ID_SIZE]),
}

/// A payload read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// Bytes written to the file (for an EOF-marked payload, the mark left out).
    pub bytes: u64,
    pub framing: Framing,
}

/// Why a payload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    /// The master sent an error line in place of the payload.
    #[error("the server aborted the transfer: {0}")]
    Aborted(String),
    /// A line that is neither `$…` nor a keepalive newline (shown cut to 64 bytes).
    #[error("expected $<length> or $EOF:<mark> before the payload, got {0:?}")]
    Unexpected(String),
    /// A `$` line whose length cannot be read, or whose mark is too short.
    #[error("bad payload length in {0:?}")]
    BadLength(String),
    /// The connection closed early.
    #[error("the connection closed after {received} bytes of the payload{}", of_expected(*.expected))]
    Closed { received: u64, expected: Option<u64> },
    /// Nothing arrived within the link's timeout.
    #[error("nothing arrived within the timeout, after {received} bytes of the payload")]
    Timeout { received: u64 },
    /// Any other fault of the connection.
    #[error("after {received} bytes of the payload: {source}")]
    Read { received: u64, source: LinkError },
    /// The file could not take the bytes.
    #[error("writing the payload after {written} bytes: {source}")]
    Write { written: u64, source: std::io::Error },
}

fn of_expected(expected: Option<u64>) -> String {
    expected.map(|n| format!(" (of {n})")).unwrap_or_default()
}

impl BulkError {
    fn from_link(e: LinkError, received: u64, expected: Option<u64>) -> BulkError {
        match e {
            LinkError::Closed => BulkError::Closed { received, expected },
            LinkError::Timeout => BulkError::Timeout { received },
            source => BulkError::Read { received, source },
        }
    }
}

/// A line, readable and short, for a message.
fn shown(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned()
}

/// Reads one header line (without its line end): `None` for a keepalive (an empty line),
/// else the framing it announces.
pub fn parse_header(line: &[u8]) -> Result<Option<Framing>, BulkError> {
    let Some((&first, rest)) = line.split_first() else { return Ok(None) };
    match first {
        b'$' => {}
        b'-' => return Err(BulkError::Aborted(String::from_utf8_lossy(rest).into_owned())),
        _ => return Err(BulkError::Unexpected(shown(line))),
    }
    if let Some(mark) = rest.strip_prefix(b"EOF:") {
        // Redis takes the first 40 bytes and ignores what follows them.
        return match mark.get(..CONFIG_RUN_ID_SIZE).and_then(|m| <[u8; CONFIG_RUN_ID_SIZE]>::try_from(m).ok()) {
            Some(mark) => Ok(Some(Framing::EofMark(mark))),
            None => Err(BulkError::BadLength(shown(line))),
        };
    }
    let len = std::str::from_utf8(rest)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok());
    len.map(|n| Some(Framing::Length(n))).ok_or_else(|| BulkError::BadLength(shown(line)))
}

impl Link {
    /// Reads a snapshot transfer into `out`: skips keepalive newlines, reads the `$` line,
    /// then copies the payload through one buffer of [`BUF_BYTES`], calling `progress`
    /// with the bytes written so far after every write. Returns the bytes written (for
    /// `$EOF:` the mark is left out) and the framing. Every read is bounded by the link's
    /// timeout; nothing past the payload is read, so the link goes on with what follows
    /// (the replication stream). `out` is flushed at the end.
    pub fn read_bulk_payload<W: Write + ?Sized>(
        &mut self,
        out: &mut W,
        progress: impl FnMut(u64),
    ) -> Result<Payload, BulkError> {
        let framing = loop {
            let line = self.read_line(MAX_HEADER_LINE).map_err(|e| BulkError::from_link(e, 0, None))?;
            if let Some(framing) = parse_header(&line)? {
                break framing;
            }
        };
        let bytes = copy_payload(|into| self.read_raw(into), framing, out, progress)?;
        Ok(Payload { bytes, framing })
    }
}

/// Copies the payload that follows a header announcing `framing` from `read` (which
/// fills part of the slice it is given, or fails) to `out`.
pub fn copy_payload<W: Write + ?Sized>(
    mut read: impl FnMut(&mut [u8]) -> Result<usize, LinkError>,
    framing: Framing,
    out: &mut W,
    mut progress: impl FnMut(u64),
) -> Result<u64, BulkError> {
    let mut buf = vec![0u8; BUF_BYTES];
    let mut received = 0u64;
    let mut written = 0u64;
    let mut write = |bytes: &[u8], written: &mut u64| -> Result<(), BulkError> {
        if bytes.is_empty() {
            return Ok(());
        }
        out.write_all(bytes).map_err(|source| BulkError::Write { written: *written, source })?;
        *written += bytes.len() as u64;
        progress(*written);
        Ok(())
    };
    match framing {
        Framing::Length(len) => {
            // replication.c: the read is cut to what is left, so the command stream
            // that may follow stays unread.
            while received < len {
                let want = usize::try_from(len - received).map_or(buf.len(), |left| left.min(buf.len()));
                let n = read(&mut buf[..want]).map_err(|e| BulkError::from_link(e, received, Some(len)))?;
                received += n as u64;
                write(&buf[..n], &mut written)?;
            }
        }
        Framing::EofMark(mark) => {
            // buf[..held]: the last bytes received, not yet written (they may be the
            // start of the mark).
            let mut held = 0;
            loop {
                let n = read(&mut buf[held..]).map_err(|e| BulkError::from_link(e, received, None))?;
                received += n as u64;
                let have = held + n;
                if have >= CONFIG_RUN_ID_SIZE && buf[have - CONFIG_RUN_ID_SIZE..have] == mark {
                    write(&buf[..have - CONFIG_RUN_ID_SIZE], &mut written)?;
                    break;
                }
                let keep = have.min(CONFIG_RUN_ID_SIZE);
                write(&buf[..have - keep], &mut written)?;
                buf.copy_within(have - keep..have, 0);
                held = keep;
            }
        }
    }
    out.flush().map_err(|source| BulkError::Write { written, source })?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: [u8; CONFIG_RUN_ID_SIZE] = *b"0123456789abcdef0123456789abcdef01234567";

    /// A reader that hands out `data` in pieces of the given sizes (cycled), then reports
    /// a closed connection. It also checks that no read asks for more than `limit`.
    fn pieces<'a>(
        data: &'a [u8],
        sizes: &'a [usize],
        limit: Option<usize>,
    ) -> impl FnMut(&mut [u8]) -> Result<usize, LinkError> + 'a {
        let mut at = 0;
        let mut i = 0;
        move |into: &mut [u8]| {
            if let Some(limit) = limit {
                assert!(at + into.len() <= limit, "a read past the payload: {at} + {}", into.len());
            }
            if at == data.len() {
                return Err(LinkError::Closed);
            }
            let n = sizes[i % sizes.len()].min(into.len()).min(data.len() - at).max(1);
            i += 1;
            into[..n].copy_from_slice(&data[at..at + n]);
            at += n;
            Ok(n)
        }
    }

    fn payload(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn headers() {
        assert_eq!(parse_header(b"").unwrap(), None);
        assert_eq!(parse_header(b"$0").unwrap(), Some(Framing::Length(0)));
        assert_eq!(parse_header(b"$123456789012").unwrap(), Some(Framing::Length(123456789012)));
        let eof = [&b"$EOF:"[..], &MARK].concat();
        assert_eq!(parse_header(&eof).unwrap(), Some(Framing::EofMark(MARK)));
        let longer = [&eof[..], b"xyz"].concat();
        assert_eq!(parse_header(&longer).unwrap(), Some(Framing::EofMark(MARK)));
        assert!(matches!(parse_header(&eof[..eof.len() - 1]), Err(BulkError::BadLength(_))));
        for bad in [&b"$"[..], b"$-1", b"$12x", b"$ 12", b"$99999999999999999999999"] {
            assert!(matches!(parse_header(bad), Err(BulkError::BadLength(_))), "{bad:?}");
        }
        match parse_header(b"-ERR no") {
            Err(e @ BulkError::Aborted(_)) => assert_eq!(e.to_string(), "the server aborted the transfer: ERR no"),
            other => panic!("{other:?}"),
        }
        match parse_header(b"+FULLRESYNC x 1") {
            Err(e @ BulkError::Unexpected(_)) => {
                assert_eq!(
                    e.to_string(),
                    "expected $<length> or $EOF:<mark> before the payload, got \"+FULLRESYNC x 1\""
                )
            }
            other => panic!("{other:?}"),
        }
    }

    /// Every payload length around the mark's, cut into reads of every size from 1 to 50:
    /// the file holds the payload, never the mark.
    #[test]
    fn eof_mark_split_anywhere() {
        for len in [0, 1, 17, 39, 40, 41, 79, 80, 81, 200] {
            let mut data = payload(len, len as u64 + 7);
            // Bytes that look like the mark's start, just before the real mark.
            if len >= 60 {
                data[len - 60..len - 21].copy_from_slice(&MARK[..39]);
                data[len - 20..].copy_from_slice(&MARK[..20]);
            }
            let stream = [&data[..], &MARK].concat();
            for size in 1..=50 {
                let mut out = Vec::new();
                let mut last = 0;
                let n = copy_payload(pieces(&stream, &[size], None), Framing::EofMark(MARK), &mut out, |w| last = w)
                    .unwrap();
                assert_eq!((n, out.len()), (len as u64, len), "len {len}, reads of {size}");
                assert_eq!(out, data, "len {len}, reads of {size}");
                assert_eq!(last, len as u64);
            }
        }
    }

    #[test]
    fn length_never_reads_past_the_payload() {
        let data = payload(3 * BUF_BYTES + 5, 3);
        let stream = [&data[..], b"*1\r\n$4\r\nPING\r\n"].concat();
        for sizes in [&[1 << 20][..], &[1, 7, 4096, 65536]] {
            let mut out = Vec::new();
            let read = pieces(&stream, sizes, Some(data.len()));
            let n = copy_payload(read, Framing::Length(data.len() as u64), &mut out, |_| {}).unwrap();
            assert_eq!(n, data.len() as u64);
            assert!(out == data);
        }
        let mut out = Vec::new();
        assert_eq!(copy_payload(pieces(b"", &[1], Some(0)), Framing::Length(0), &mut out, |_| {}).unwrap(), 0);
    }

    #[test]
    fn early_close_says_how_much_came() {
        let data = payload(1000, 5);
        let e = copy_payload(pieces(&data, &[100], None), Framing::Length(5000), &mut Vec::new(), |_| {}).unwrap_err();
        assert!(matches!(e, BulkError::Closed { received: 1000, expected: Some(5000) }), "{e:?}");
        assert_eq!(e.to_string(), "the connection closed after 1000 bytes of the payload (of 5000)");
        let e = copy_payload(pieces(&data, &[100], None), Framing::EofMark(MARK), &mut Vec::new(), |_| {}).unwrap_err();
        assert!(matches!(e, BulkError::Closed { received: 1000, expected: None }), "{e:?}");
    }

    /// A file that takes `room` bytes, then fails.
    struct Full {
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::other("no space left"));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_is_named() {
        let data = payload(10_000, 9);
        let mut out = Full { room: 2500 };
        let e = copy_payload(pieces(&data, &[1000], None), Framing::Length(10_000), &mut out, |_| {}).unwrap_err();
        assert!(matches!(e, BulkError::Write { written: 2000, .. }), "{e:?}");
        assert_eq!(e.to_string(), "writing the payload after 2000 bytes: no space left");
    }
}
