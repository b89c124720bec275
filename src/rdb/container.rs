//! Shared pieces of the packed encodings (ziplist, listpack, intset, zipmap): an element
//! is either a byte range inside the blob or an integer, and errors say where in the
//! blob the walk stopped.

use std::ops::Range;

/// One element of a packed container, located inside the blob it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Bytes(Range<usize>),
    Int(i64),
}

/// A structural error at an offset inside a container blob (placed in the file by
/// `string::Blob::error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at +{at} in the blob: {msg}")]
pub struct ContainerError {
    pub at: usize,
    pub msg: String,
}

impl ContainerError {
    pub fn new(at: usize, msg: impl Into<String>) -> ContainerError {
        ContainerError { at, msg: msg.into() }
    }
}

pub type ContainerResult<T> = Result<T, ContainerError>;

#[inline]
pub(crate) fn le_bytes<const N: usize>(blob: &[u8], at: usize, what: &str) -> ContainerResult<[u8; N]> {
    let s = blob
        .get(at..at.saturating_add(N))
        .ok_or_else(|| ContainerError::new(at, format!("{what} runs past the end of the blob")))?;
    let mut out = [0u8; N];
    out.copy_from_slice(s);
    Ok(out)
}

/// Parses a decimal integer the way Redis's `string2ll` accepts it (canonical form only:
/// no leading zeros or '+', no spaces), used to tell integers apart from strings.
pub fn parse_canonical_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let (neg, digits) = if s[0] == b'-' { (true, &s[1..]) } else { (false, s) };
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = (d - b'0') as i64;
        v = if neg { v.checked_mul(10)?.checked_sub(d)? } else { v.checked_mul(10)?.checked_add(d)? };
    }
    Some(v)
}
