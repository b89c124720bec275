//! Reading a server's replies: an incremental RESP2 decoder over a byte buffer.
//!
//! [`parse`] returns `Ok(None)` when the buffer holds only part of a reply (read more and
//! call again) and `Err` when the bytes cannot be RESP (the stream is lost). Replies borrow
//! from the buffer; only arrays (EXEC's result) allocate. Lengths are checked against
//! what the buffer holds before anything is sized by them, and nesting is bounded.

/// One reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<'a> {
    /// `+OK`, `+QUEUED`…
    Simple(&'a [u8]),
    /// `-ERR …`, `-WRONGTYPE …`: the whole message.
    Error(&'a [u8]),
    Int(i64),
    Bulk(Option<&'a [u8]>),
    Array(Option<Vec<Reply<'a>>>),
}

impl Reply<'_> {
    /// Error replies in this reply, counting those nested in an array (EXEC's result).
    pub fn errors(&self) -> usize {
        match self {
            Reply::Error(_) => 1,
            Reply::Array(Some(items)) => items.iter().map(Reply::errors).sum(),
            _ => 0,
        }
    }

    /// The first error message in this reply, nested ones included.
    pub fn first_error(&self) -> Option<&[u8]> {
        match self {
            Reply::Error(m) => Some(m),
            Reply::Array(Some(items)) => items.iter().find_map(Reply::first_error),
            _ => None,
        }
    }
}

/// Why bytes cannot be a reply: the stream is lost from there on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// An integer, bulk length or array length that is not a number (lossy text).
    #[error("expected a number in a reply, got {0:?}")]
    NotANumber(String),
    #[error("bulk length overflows")]
    BulkLengthOverflow,
    #[error("a reply header without an end of line")]
    HeaderTooLong,
    #[error("a bulk reply not followed by CRLF")]
    BulkWithoutCrlf,
    #[error("replies nested too deeply")]
    TooDeep,
    /// A first byte that starts no RESP2 reply.
    #[error("a reply starting with byte 0x{0:02x}")]
    BadStart(u8),
}

/// Deepest array nesting accepted (Redis's own replies to our commands nest at most 2).
const MAX_DEPTH: usize = 16;

/// Parses one reply at the start of `buf`: the reply and the bytes it took, `None` when
/// incomplete, an error when the bytes are not RESP.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ReplyError> {
    parse_at(buf, 0, 0)
}

fn line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let body = &rest[..nl];
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    Some((body, pos + nl + 1))
}

fn number(text: &[u8]) -> Result<i64, ReplyError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| ReplyError::NotANumber(String::from_utf8_lossy(text).into_owned()))
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Reply<'_>, usize)>, ReplyError> {
    let Some(&kind) = buf.get(pos) else { return Ok(None) };
    let Some((body, next)) = line(buf, pos + 1) else {
        // A header line longer than any real one is not RESP.
        if buf.len() - pos > 64 << 10 && kind != b'-' && kind != b'+' {
            return Err(ReplyError::HeaderTooLong);
        }
        return Ok(None);
    };
    let reply = match kind {
        b'+' => Reply::Simple(body),
        b'-' => Reply::Error(body),
        b':' => Reply::Int(number(body)?),
        b'$' => {
            let n = number(body)?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let n = n as usize;
                let end = next.checked_add(n).and_then(|e| e.checked_add(2)).ok_or(ReplyError::BulkLengthOverflow)?;
                if buf.len() < end {
                    return Ok(None);
                }
                if &buf[end - 2..end] != b"\r\n" {
                    return Err(ReplyError::BulkWithoutCrlf);
                }
                return Ok(Some((Reply::Bulk(Some(&buf[next..end - 2])), end - pos)));
            }
        }
        b'*' => {
            let n = number(body)?;
            if n < 0 {
                Reply::Array(None)
            } else {
                if depth >= MAX_DEPTH {
                    return Err(ReplyError::TooDeep);
                }
                // Every element takes at least 3 bytes: an array longer than that cannot be
                // complete yet, and is not sized before its elements arrive.
                let n = n as usize;
                let mut items = Vec::with_capacity(n.min((buf.len() - next) / 3));
                let mut at = next;
                for _ in 0..n {
                    match parse_at(buf, at, depth + 1)? {
                        Some((r, used)) => {
                            items.push(r);
                            at += used;
                        }
                        None => return Ok(None),
                    }
                }
                return Ok(Some((Reply::Array(Some(items)), at - pos)));
            }
        }
        other => return Err(ReplyError::BadStart(other)),
    };
    Ok(Some((reply, next - pos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_of_a_reply_is_incomplete() {
        let data = b"*3\r\n+OK\r\n-ERR bad\r\n*2\r\n:12\r\n$3\r\na\r\n\r\n";
        for cut in 0..data.len() {
            assert_eq!(parse(&data[..cut]), Ok(None), "cut at {cut}");
        }
        let (r, used) = parse(data).unwrap().unwrap();
        assert_eq!(used, data.len());
        assert_eq!(r.errors(), 1);
        assert_eq!(r.first_error(), Some(&b"ERR bad"[..]));
        match r {
            Reply::Array(Some(items)) => {
                assert_eq!(items[2], Reply::Array(Some(vec![Reply::Int(12), Reply::Bulk(Some(b"a\r\n"))])));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b":1x\r\n").is_err());
        assert!(parse(b"$1\r\nab\r\n").is_err());
        assert_eq!(parse(b"$-1\r\n"), Ok(Some((Reply::Bulk(None), 5))));
        assert_eq!(parse(b"*99999999999\r\n"), Ok(None));
    }

    /// The messages reach the report (a lost connection names its reason).
    #[test]
    fn messages() {
        let said = |b: &[u8]| parse(b).unwrap_err().to_string();
        assert_eq!(said(b"?x\r\n"), "a reply starting with byte 0x3f");
        assert_eq!(said(b":1x\r\n"), "expected a number in a reply, got \"1x\"");
        assert_eq!(said(b"$1\r\nab\r\n"), "a bulk reply not followed by CRLF");
        assert_eq!(said(&[b"*1\r\n".repeat(MAX_DEPTH + 1), b":1\r\n".to_vec()].concat()), "replies nested too deeply");
        assert_eq!(said(&[&b"$"[..], &[b'1'; 70_000]].concat()), "a reply header without an end of line");
    }
}
