//! The Redis 7 multi-part AOF manifest, read as `aof.c`, `aofLoadManifestFromFile` reads
//! it: one line per file, `file <name> seq <n> type <b|h|i>` as key/value pairs in any
//! order (unknown keys are ignored), `#` comments, names quoted with C escapes when they
//! hold special characters. Load order: the base (at most one), then the incr files in manifest order with
//! strictly increasing seqs; history files are left out.

use std::path::{Path, PathBuf};

/// Longest manifest line Redis reads.
const MAX_LINE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Base,
    History,
    Incr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub seq: u64,
    pub kind: Kind,
}

/// A parsed manifest: the files to load, in load order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub base: Option<Part>,
    pub incr: Vec<Part>,
}

impl Manifest {
    /// Paths of the files to load, in order, next to the manifest in `dir`.
    pub fn load_order(&self, dir: &Path) -> Vec<PathBuf> {
        self.base.iter().chain(&self.incr).map(|p| dir.join(&p.name)).collect()
    }
}

/// Why a manifest was refused: which line, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is empty")]
    Empty,
    #[error("line {line} is longer than {} bytes", MAX_LINE)]
    LineTooLong { line: usize },
    #[error("line {line} is blank")]
    BlankLine { line: usize },
    #[error("line {line}: unbalanced quotes")]
    UnbalancedQuotes { line: usize },
    #[error("line {line}: {fields} fields, expected key/value pairs with file, seq and type")]
    FieldCount { line: usize, fields: usize },
    /// A `type` other than `b`, `h` or `i` (lossy text).
    #[error("line {line}: unknown file type {kind:?}")]
    UnknownType { line: usize, kind: String },
    #[error("line {line}: needs file, seq (a number) and type")]
    Incomplete { line: usize },
    #[error("line {line}: the file name is not UTF-8")]
    NameNotUtf8 { line: usize },
    /// Empty, `.`, `..` or holding a `/`: the files live next to the manifest.
    #[error("line {line}: {name:?} is not a plain file name")]
    NotPlainName { line: usize, name: String },
    #[error("line {line}: a second base file")]
    SecondBase { line: usize },
    #[error("line {line}: incr seq {seq} does not increase")]
    SeqNotIncreasing { line: usize, seq: u64 },
    #[error("the manifest names no base or incr file")]
    NoFiles,
}

/// Parses manifest text; the error says which line and why.
pub fn parse(text: &[u8]) -> Result<Manifest, ManifestError> {
    if text.is_empty() {
        return Err(ManifestError::Empty);
    }
    let mut base: Option<Part> = None;
    let mut incr: Vec<Part> = Vec::new();
    for (i, raw) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        if raw.len() > MAX_LINE {
            return Err(ManifestError::LineTooLong { line: n });
        }
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'#') {
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return Err(ManifestError::BlankLine { line: n });
        }
        let tokens = split_args(line).ok_or(ManifestError::UnbalancedQuotes { line: n })?;
        if tokens.len() < 6 || tokens.len() % 2 != 0 {
            return Err(ManifestError::FieldCount { line: n, fields: tokens.len() });
        }
        let (mut name, mut seq, mut kind) = (None, None, None);
        for pair in tokens.chunks(2) {
            match pair[0].as_slice() {
                b"file" => name = Some(pair[1].clone()),
                b"seq" => seq = std::str::from_utf8(&pair[1]).ok().and_then(|s| s.parse::<u64>().ok()),
                b"type" => {
                    kind = match pair[1].as_slice() {
                        b"b" => Some(Kind::Base),
                        b"h" => Some(Kind::History),
                        b"i" => Some(Kind::Incr),
                        other => {
                            let kind = String::from_utf8_lossy(other).into_owned();
                            return Err(ManifestError::UnknownType { line: n, kind });
                        }
                    }
                }
                _ => {} // later Redis versions may add keys
            }
        }
        let (Some(name), Some(seq), Some(kind)) = (name, seq, kind) else {
            return Err(ManifestError::Incomplete { line: n });
        };
        let name = String::from_utf8(name).map_err(|_| ManifestError::NameNotUtf8 { line: n })?;
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(ManifestError::NotPlainName { line: n, name });
        }
        let part = Part { name, seq, kind };
        match kind {
            Kind::Base if base.is_some() => return Err(ManifestError::SecondBase { line: n }),
            Kind::Base => base = Some(part),
            Kind::Incr => {
                if incr.last().is_some_and(|p| p.seq >= seq) {
                    return Err(ManifestError::SeqNotIncreasing { line: n, seq });
                }
                incr.push(part);
            }
            Kind::History => {}
        }
    }
    if base.is_none() && incr.is_empty() {
        return Err(ManifestError::NoFiles);
    }
    Ok(Manifest { base, incr })
}

/// Splits a line into arguments as Redis's `sdssplitargs` does: spaces separate,
/// "double quotes" take C escapes (\n \r \t \b \a \\ \" \xHH), 'single quotes' take \'.
/// `None` for unbalanced quotes or a closing quote not followed by a space.
fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return Some(out);
        }
        let mut cur = Vec::new();
        match line[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                loop {
                    let c = *line.get(i)?;
                    if c == q {
                        i += 1;
                        if i < line.len() && !line[i].is_ascii_whitespace() {
                            return None;
                        }
                        break;
                    }
                    let (byte, used) = if c == b'\\' { unescape(&line[i..], q) } else { (c, 1) };
                    cur.push(byte);
                    i += used;
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    cur.push(line[i]);
                    i += 1;
                }
            }
        }
        out.push(cur);
    }
}

/// The byte a backslash sequence at the start of `s` stands for inside quotes `q`, and how
/// many bytes it takes. Single quotes know only `\'`; double quotes know `\xHH` and the
/// C letters. An unknown escape stands for the escaped byte; a lone backslash for itself.
fn unescape(s: &[u8], q: u8) -> (u8, usize) {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    match (q, s.get(1).copied()) {
        (b'\'', Some(b'\'')) => (b'\'', 2),
        (b'\'', _) | (_, None) => (b'\\', 1),
        (_, Some(b'x')) => match (s.get(2).copied().and_then(hex), s.get(3).copied().and_then(hex)) {
            (Some(h), Some(l)) => (h << 4 | l, 4),
            _ => (b'x', 2),
        },
        (_, Some(c)) => (
            match c {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'b' => 8,
                b'a' => 7,
                other => other,
            },
            2,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typical_manifest() {
        let m = parse(
            b"file appendonly.aof.2.base.rdb seq 2 type b\n\
              file appendonly.aof.1.incr.aof seq 1 type h\n\
              file appendonly.aof.3.incr.aof seq 3 type i\n\
              file appendonly.aof.5.incr.aof seq 5 type i newkey x\n",
        )
        .unwrap();
        assert_eq!(m.base.as_ref().unwrap().name, "appendonly.aof.2.base.rdb");
        assert_eq!(m.incr.iter().map(|p| p.seq).collect::<Vec<_>>(), [3, 5]);
    }

    #[test]
    fn quoted_names() {
        let m = parse(b"file \" file seq \\n\\n.aof .2.base.rdb\" seq 2 type b\n").unwrap();
        assert_eq!(m.base.unwrap().name, " file seq \n\n.aof .2.base.rdb");
    }

    #[test]
    fn escapes() {
        let args = split_args(br#"a "b\x41\n\"c" 'd\'e\n' "\q""#).unwrap();
        assert_eq!(args, [&b"a"[..], b"bA\n\"c", b"d'e\\n", b"q"]);
        assert!(split_args(br#""open"#).is_none());
        assert!(split_args(br#""a"b"#).is_none());
    }

    #[test]
    fn refusals() {
        for bad in [
            &b""[..],
            b"file a seq 1 type i\n\nfile b seq 2 type i\n",
            b"file a seq 1 type b\nfile b seq 2 type b\n",
            b"file a seq 1 type x\n",
            b"file a seq 1 typo i\n",
            b"file a seq 1\n",
            b"file a seq 1 type i odd\n",
            b"file a seq 2 type i\nfile b seq 2 type i\n",
            b"file ../a seq 1 type i\n",
        ] {
            assert!(parse(bad).is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
        }
        let long = format!("file {} seq 1 type i\n", "a".repeat(1100));
        assert!(parse(long.as_bytes()).is_err());
    }

    /// The messages are part of the output (`check` and `replay` print them).
    #[test]
    fn messages() {
        let said = |text: &[u8]| parse(text).unwrap_err().to_string();
        assert_eq!(said(b""), "the manifest is empty");
        assert_eq!(said(b"file a seq 1 type i\n\n"), "line 2 is blank");
        assert_eq!(said(b"file \"a seq 1 type i\n"), "line 1: unbalanced quotes");
        assert_eq!(said(b"file a seq 1\n"), "line 1: 4 fields, expected key/value pairs with file, seq and type");
        assert_eq!(said(b"file a seq 1 type \xffx\n"), "line 1: unknown file type \"\u{fffd}x\"");
        assert_eq!(said(b"file a seq x type i\n"), "line 1: needs file, seq (a number) and type");
        assert_eq!(said(b"file \"\\xff\" seq 1 type i\n"), "line 1: the file name is not UTF-8");
        assert_eq!(said(b"file .. seq 1 type i\n"), "line 1: \"..\" is not a plain file name");
        assert_eq!(said(b"file a seq 1 type b\nfile b seq 2 type b\n"), "line 2: a second base file");
        assert_eq!(said(b"file a seq 2 type i\nfile b seq 2 type i\n"), "line 2: incr seq 2 does not increase");
        assert_eq!(said(b"file a seq 1 type h\n"), "the manifest names no base or incr file");
        let long = format!("file {} seq 1 type i\n", "a".repeat(1100));
        assert_eq!(said(long.as_bytes()), "line 1 is longer than 1024 bytes");
    }
}
