//! A panic-free reader over untrusted bytes: every read returns a `Result`, nothing
//! indexes a slice unchecked, and no length taken from the input is trusted before it is
//! compared with what remains.

use super::error::{Error, Result};

/// A position in the bytes it was given (a whole file, for the parser: its offsets are
/// the file's).
#[derive(Clone)]
pub struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    /// LZF-compressed strings are expanded as they are read (see
    /// [`Cursor::expand_strings`]).
    expand: bool,
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Cursor<'a> {
        Cursor { data, pos: 0, expand: false }
    }

    /// With `true`, an LZF-compressed string is expanded when it is read (checked as it
    /// expands) and comes as `Str::Owned`, instead of being validated and kept
    /// compressed: one pass over it for a caller that reads the bytes of every string,
    /// where a check and a later expansion would be two.
    pub fn expand_strings(&mut self, yes: bool) {
        self.expand = yes;
    }

    #[inline]
    pub fn expands_strings(&self) -> bool {
        self.expand
    }

    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Offset of the next byte (a file offset, for error messages).
    #[inline]
    pub fn offset(&self) -> u64 {
        self.pos as u64
    }

    #[inline]
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    #[inline]
    pub fn peek_u8(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    #[inline]
    pub fn read_u8(&mut self, what: &'static str) -> Result<u8> {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(Error::truncated(self.offset(), what)),
        }
    }

    /// The common case of an RDB string, taken without a call: a 6- or 14-bit length
    /// header (the top bit clear) and its bytes, when all of them are there. `None` leaves
    /// the cursor where it was, for the general reader.
    #[inline(always)]
    pub fn take_short_str(&mut self) -> Option<&'a [u8]> {
        let b = *self.data.get(self.pos)?;
        let (start, len) = match b {
            0..=0x3f => (self.pos + 1, b as usize),
            0x40..=0x7f => (self.pos + 2, ((b & 0x3f) as usize) << 8 | *self.data.get(self.pos + 1)? as usize),
            _ => return None,
        };
        let s = self.data.get(start..start + len)?;
        self.pos = start + len;
        Some(s)
    }

    /// Takes `n` bytes; fails (without allocating) if fewer remain.
    #[inline]
    pub fn read_bytes(&mut self, n: u64, what: &'static str) -> Result<&'a [u8]> {
        if n > self.remaining() as u64 {
            return Err(Error::truncated(self.offset(), what));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.data[start..self.pos])
    }

    #[inline]
    pub fn skip(&mut self, n: u64, what: &'static str) -> Result<()> {
        self.read_bytes(n, what).map(|_| ())
    }

    #[inline]
    pub fn read_array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let b = self.read_bytes(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub fn read_u16_le(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.read_array(what)?))
    }

    pub fn read_i32_le(&mut self, what: &'static str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.read_array(what)?))
    }

    pub fn read_u32_be(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.read_array(what)?))
    }

    pub fn read_u64_le(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.read_array(what)?))
    }

    pub fn read_i64_le(&mut self, what: &'static str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.read_array(what)?))
    }

    pub fn read_u64_be(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.read_array(what)?))
    }

    pub fn read_f64_le(&mut self, what: &'static str) -> Result<f64> {
        Ok(f64::from_le_bytes(self.read_array(what)?))
    }
}

/// Capacity to reserve up front for `declared` items when each needs at least
/// `min_item_bytes` of input: never more than the input could hold, and never more than
/// a few thousand items; past that the vector grows with the items actually decoded, so
/// a hostile count cannot size an allocation by itself.
#[inline]
pub fn bounded_capacity(declared: u64, remaining: usize, min_item_bytes: usize) -> usize {
    const MAX_RESERVE: u64 = 1024;
    let limit = (remaining / min_item_bytes.max(1)) as u64;
    declared.min(limit).min(MAX_RESERVE) as usize
}
