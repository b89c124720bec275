//! The RESP command log as `aof.c`, `loadSingleAppendOnlyFile` reads it: `*<argc>\r\n`
//! then argc × `$<len>\r\n<bytes>\r\n`, with `#…\r\n` annotation lines between commands
//! (`#TS:<unix>` when `aof-timestamp-enabled`: `genAofTimestampAnnotationIfNeeded`).
//! Headers are walked and payloads skipped by their length: values are binary, so nothing
//! is ever found by searching for `*`.

/// Most arguments in one command (Redis caps a multibulk at 1024 × 1024 × 1024 too).
const MAX_ARGC: u64 = 1 << 30;
/// Longest bulk argument (Redis's `proto-max-bulk-len` cannot exceed 512 MB by default;
/// anything larger must be a damaged header).
const MAX_BULK: u64 = 1 << 40;
/// Annotation lines are short in Redis (at most 1024 bytes read by `fgets`).
const MAX_LINE: usize = 1 << 16;

/// One entry of the log, borrowing from the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    /// A command (its arguments are in the vector given to `next_entry`) and its byte
    /// span `start..end` in the data scanned.
    Command { start: usize, end: usize },
    /// A `#TS:<unix seconds>` annotation.
    Timestamp { unix: u64, start: usize },
    /// Any other `#` line.
    Annotation { text: &'a [u8], start: usize },
}

/// Why scanning stopped before the end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct ScanError {
    /// Start of the entry that could not be read: everything before it is complete.
    pub entry_start: usize,
    /// Where exactly the problem is.
    pub at: usize,
    /// The data ends inside this entry (a crash or a copy cut short), as opposed to
    /// bytes that are not an AOF at all.
    pub truncated: bool,
    pub msg: String,
}

/// Walks the entries of a RESP log held in memory.
pub struct Scanner<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(data: &'a [u8]) -> Scanner<'a> {
        Scanner { data, pos: 0 }
    }

    /// A scanner whose next entry starts at `pos` (an entry boundary of `data`).
    pub fn at(data: &'a [u8], pos: usize) -> Scanner<'a> {
        Scanner { data, pos }
    }

    /// Offset of the next entry.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The next entry; `Ok(None)` at the end of the data. A command's arguments replace
    /// the contents of `argv` (one vector reused for every command: no allocation each).
    pub fn next_entry(&mut self, argv: &mut Vec<&'a [u8]>) -> Result<Option<Entry<'a>>, ScanError> {
        let start = self.pos;
        let Some(&first) = self.data.get(start) else { return Ok(None) };
        match first {
            b'#' => {
                let (line, next) = self.line(start, start + 1, "an annotation line")?;
                self.pos = next;
                if let Some(ts) = line.strip_prefix(b"TS:") {
                    if let Some(unix) = parse_u64(ts) {
                        return Ok(Some(Entry::Timestamp { unix, start }));
                    }
                }
                Ok(Some(Entry::Annotation { text: line, start }))
            }
            b'*' => {
                let (argc, mut p) = self.number_line(start, start + 1, "a command header")?;
                let argc = Some(argc)
                    .filter(|&n| (1..=MAX_ARGC).contains(&n))
                    .ok_or_else(|| self.corrupt(start, start, format!("bad argument count {argc}")))?;
                argv.clear();
                for _ in 0..argc {
                    match self.data.get(p) {
                        None => return Err(self.truncated(start, p, "the data ends inside a command")),
                        Some(b'$') => {}
                        Some(&b) => {
                            return Err(self.corrupt(
                                start,
                                p,
                                format!("expected '$' (a bulk argument), found {:?}", b as char),
                            ))
                        }
                    }
                    let (len, body) = self.number_line(start, p + 1, "an argument length")?;
                    let len = Some(len)
                        .filter(|&n| n <= MAX_BULK)
                        .ok_or_else(|| self.corrupt(start, p, format!("bad argument length {len}")))?
                        as usize;
                    let end = body.checked_add(len).filter(|&e| e <= self.data.len());
                    let Some(end) = end else {
                        return Err(self.truncated(start, body, "the data ends inside an argument"));
                    };
                    match self.data.get(end..end + 2) {
                        Some(b"\r\n") => {}
                        Some(_) => return Err(self.corrupt(start, end, "an argument is not followed by CRLF".into())),
                        None => return Err(self.truncated(start, end, "the data ends inside an argument")),
                    }
                    argv.push(&self.data[body..end]);
                    p = end + 2;
                }
                self.pos = p;
                Ok(Some(Entry::Command { start, end: p }))
            }
            b => Err(self.corrupt(start, start, format!("expected '*' (a command) or '#', found byte {b:#04x}"))),
        }
    }

    /// A header line that holds a decimal number (`*3`, `$5` after the marker), parsed as
    /// it is walked: the number and the offset after its CRLF. Falls back to the general
    /// line reader for the error when the line is anything else.
    #[inline]
    fn number_line(&self, entry: usize, from: usize, what: &str) -> Result<(u64, usize), ScanError> {
        let mut v: u64 = 0;
        let mut i = from;
        while let Some(&d) = self.data.get(i) {
            if !d.is_ascii_digit() || i - from >= 19 {
                break;
            }
            v = v * 10 + (d - b'0') as u64;
            i += 1;
        }
        if i > from && self.data.get(i..i + 2) == Some(b"\r\n") {
            return Ok((v, i + 2));
        }
        let (line, _) = self.line(entry, from, what)?;
        Err(self.corrupt(entry, from, format!("{what} {:?} is not a number", lossy(line))))
    }

    /// The text of the CRLF-terminated line whose text starts at `from`, and the offset
    /// after its CRLF.
    fn line(&self, entry: usize, from: usize, what: &str) -> Result<(&'a [u8], usize), ScanError> {
        let limit = self.data.len().min(from.saturating_add(MAX_LINE));
        let rest = &self.data[from.min(limit)..limit];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) if i > 0 && rest[i - 1] == b'\r' => Ok((&rest[..i - 1], from + i + 1)),
            Some(i) => Err(self.corrupt(entry, from + i, format!("{what} ends with a bare LF, not CRLF"))),
            None if limit < self.data.len() => Err(self.corrupt(entry, from, format!("{what} is too long"))),
            None => Err(self.truncated(entry, self.data.len(), "the data ends inside a line")),
        }
    }

    fn corrupt(&self, entry_start: usize, at: usize, msg: String) -> ScanError {
        ScanError { entry_start, at, truncated: false, msg }
    }

    fn truncated(&self, entry_start: usize, at: usize, msg: &str) -> ScanError {
        ScanError { entry_start, at, truncated: true, msg: msg.to_string() }
    }
}

fn parse_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 19 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(t.iter().fold(0u64, |v, d| v * 10 + (d - b'0') as u64))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry and its arguments (empty for annotations).
    type Scanned<'a> = (Entry<'a>, Vec<&'a [u8]>);

    /// Every entry, with the arguments of each.
    fn all(data: &[u8]) -> Result<Vec<Scanned<'_>>, ScanError> {
        let mut s = Scanner::new(data);
        let mut out = Vec::new();
        let mut argv = Vec::new();
        while let Some(e) = s.next_entry(&mut argv)? {
            let args = if matches!(e, Entry::Command { .. }) { argv.clone() } else { Vec::new() };
            out.push((e, args));
        }
        Ok(out)
    }

    #[test]
    fn commands_annotations_and_binary_values() {
        let data = b"#TS:1700000000\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n*\r\n$\r\n";
        let e = all(data).unwrap();
        assert_eq!(e[0].0, Entry::Timestamp { unix: 1_700_000_000, start: 0 });
        assert!(matches!(&e[1], (Entry::Command { .. }, argv) if argv == &[&b"SELECT"[..], b"0"]));
        assert!(matches!(&e[2], (Entry::Command { end, .. }, argv) if argv[2] == b"*\r\n$" && *end == data.len()));
    }

    #[test]
    fn truncation_and_damage_are_told_apart() {
        let data = b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nab";
        let err = all(data).unwrap_err();
        assert!(err.truncated);
        assert_eq!(err.entry_start, 14);
        // Line endings turned into LF: damage, not truncation.
        let err = all(b"*1\n$4\nPING\n").unwrap_err();
        assert!(!err.truncated, "{err}");
        let err = all(b"*1\r\n$4\r\nPINGxx").unwrap_err();
        assert!(!err.truncated, "{err}");
        // Every prefix of a good log is either complete or truncated, never damaged.
        for cut in 0..data.len() - 2 {
            if let Err(e) = all(&data[..cut]) {
                assert!(e.truncated, "cut {cut}: {e}");
                assert!(e.entry_start <= cut);
            }
        }
    }
}
