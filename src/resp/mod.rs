//! RESP, the protocol Redis speaks: encoding commands with exact lengths (no `format!`,
//! integers through `itoa`), walking our own encoded commands, and reading replies.

pub mod encode;
pub mod reply;

/// One of our own encoded commands, found by [`command_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandAt<'a> {
    /// Where the command ends.
    pub end: usize,
    pub name: &'a [u8],
    /// The first argument, when there is one (the key, for most commands).
    pub key: Option<&'a [u8]>,
}

/// The well-formed RESP command (`*N` of `$len` bulks) that starts at `pos`; `None` when
/// the bytes there are not one whole command.
pub fn command_at(buf: &[u8], pos: usize) -> Option<CommandAt<'_>> {
    let (n, mut at) = header(buf, pos, b'*')?;
    let mut args: [Option<&[u8]>; 2] = [None, None];
    for i in 0..n {
        let (len, start) = header(buf, at, b'$')?;
        let end = start.checked_add(len)?;
        if buf.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        if let Some(slot) = args.get_mut(i) {
            *slot = Some(&buf[start..end]);
        }
        at = end + 2;
    }
    Some(CommandAt { end: at, name: args[0]?, key: args[1] })
}

/// `<kind><number>\r\n` at `pos`: the number and where the line ends.
fn header(buf: &[u8], pos: usize, kind: u8) -> Option<(usize, usize)> {
    if *buf.get(pos)? != kind {
        return None;
    }
    let mut n = 0usize;
    let mut at = pos + 1;
    loop {
        match *buf.get(at)? {
            d @ b'0'..=b'9' => n = n.checked_mul(10)?.checked_add((d - b'0') as usize)?,
            b'\r' if at > pos + 1 => break,
            _ => return None,
        }
        at += 1;
    }
    (*buf.get(at + 1)? == b'\n').then_some((n, at + 2))
}

#[cfg(test)]
mod tests {
    #[test]
    fn walks_commands() {
        let buf = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n*1\r\n$4\r\nPING\r\n";
        let c = super::command_at(buf, 0).unwrap();
        assert_eq!((c.end, c.name, c.key), (28, &b"SET"[..], Some(&b"k"[..])));
        let p = super::command_at(buf, c.end).unwrap();
        assert_eq!((p.end, p.name, p.key), (buf.len(), &b"PING"[..], None));
        assert_eq!(super::command_at(&buf[..27], 0), None);
        assert_eq!(super::command_at(b"*1\r\n$4\r\nPINGxx", 0), None);
    }
}
