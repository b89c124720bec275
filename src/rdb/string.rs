//! RDB lengths and strings, as `rdb.c` reads them: the length encoding
//! (`rdbLoadLenByRef`), the three integer string forms and LZF-compressed strings
//! (`rdbGenericLoadStringObject`), and the two double encodings (`rdbLoadDoubleValue`,
//! `rdbLoadBinaryDoubleValue`).

use std::rc::Rc;

use super::constants::*;
use super::container::Entry;
use super::cursor::Cursor;
use super::error::{Error, Result};
use super::lzf;
use super::types::Str;

/// A length, or the marker of a specially encoded string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Len {
    Plain(u64),
    Encoded(u8),
}

#[inline(always)]
pub fn read_len_or_enc(cur: &mut Cursor<'_>) -> Result<Len> {
    match cur.peek_u8() {
        Some(b) if b < 0x40 => {
            cur.skip(1, "a length")?;
            Ok(Len::Plain(b as u64))
        }
        _ => read_long_len_or_enc(cur),
    }
}

#[inline(never)]
fn read_long_len_or_enc(cur: &mut Cursor<'_>) -> Result<Len> {
    let at = cur.offset();
    let b = cur.read_u8("a length")?;
    // `rdb.c`, `rdbLoadLenByRef`: the two high bits say which form follows.
    Ok(match b >> 6 {
        RDB_6BITLEN => Len::Plain((b & 0x3f) as u64),
        RDB_14BITLEN => Len::Plain((((b & 0x3f) as u64) << 8) | cur.read_u8("a 14-bit length")? as u64),
        RDB_ENCVAL => Len::Encoded(b & 0x3f),
        _ => match b {
            RDB_32BITLEN => Len::Plain(cur.read_u32_be("a 32-bit length")? as u64),
            RDB_64BITLEN => Len::Plain(cur.read_u64_be("a 64-bit length")?),
            _ => return Err(Error::corrupt(at, format!("length byte {b:#04x} is not a valid length encoding"))),
        },
    })
}

/// Reads a length; a string encoding marker here is corruption.
pub fn read_len(cur: &mut Cursor<'_>, what: &'static str) -> Result<u64> {
    let at = cur.offset();
    match read_len_or_enc(cur)? {
        Len::Plain(n) => Ok(n),
        Len::Encoded(e) => Err(Error::corrupt(at, format!("expected {what} (a length), found string encoding {e}"))),
    }
}

/// Reads an RDB string. Plain strings borrow from the input; LZF strings are validated
/// here and kept compressed (`Str::Lzf`) until their bytes are asked for.
#[inline(always)]
pub fn read_str<'a>(cur: &mut Cursor<'a>) -> Result<Str<'a>> {
    match cur.take_short_str() {
        Some(s) => Ok(Str::Borrowed(s)),
        None => read_any_str(cur),
    }
}

#[inline(never)]
fn read_any_str<'a>(cur: &mut Cursor<'a>) -> Result<Str<'a>> {
    let at = cur.offset();
    match read_len_or_enc(cur)? {
        Len::Plain(n) => Ok(Str::Borrowed(cur.read_bytes(n, "string data")?)),
        Len::Encoded(RDB_ENC_INT8) => Ok(Str::Int(cur.read_u8("an 8-bit integer string")? as i8 as i64)),
        Len::Encoded(RDB_ENC_INT16) => Ok(Str::Int(cur.read_u16_le("a 16-bit integer string")? as i16 as i64)),
        Len::Encoded(RDB_ENC_INT32) => Ok(Str::Int(cur.read_i32_le("a 32-bit integer string")? as i64)),
        Len::Encoded(RDB_ENC_LZF) => {
            if cur.expands_strings() {
                return Ok(Str::Owned(read_lzf(cur, at)?));
            }
            let (data, ulen) = read_lzf_header(cur, at)?;
            lzf::validate(data, ulen).map_err(|e| Error::corrupt(at, e.to_string()))?;
            Ok(Str::Lzf { data, len: ulen })
        }
        Len::Encoded(e) => Err(Error::corrupt(at, format!("unknown string encoding {e}"))),
    }
}

/// The compressed bytes of an LZF string and the length they expand to.
fn read_lzf_header<'a>(cur: &mut Cursor<'a>, at: u64) -> Result<(&'a [u8], usize)> {
    let clen = read_len(cur, "LZF compressed length")?;
    let ulen = read_len(cur, "LZF uncompressed length")?;
    let data = cur.read_bytes(clen, "LZF compressed data")?;
    // An LZF instruction of 3 bytes yields at most 264: anything claiming more than that
    // ratio is damaged, and refusing it keeps hostile lengths from sizing allocations.
    if ulen > clen.saturating_mul(88).saturating_add(8) {
        return Err(Error::corrupt(at, format!("LZF string claims {ulen} bytes from {clen} compressed bytes")));
    }
    Ok((data, ulen as usize))
}

fn read_lzf(cur: &mut Cursor<'_>, at: u64) -> Result<Vec<u8>> {
    let (data, ulen) = read_lzf_header(cur, at)?;
    let mut out = Vec::new();
    lzf::decompress_into(data, ulen, &mut out).map_err(|e| Error::corrupt(at, e.to_string()))?;
    Ok(out)
}

/// Advances past a string without expanding it (for skims and skipped values).
#[inline(always)]
pub fn skip_str(cur: &mut Cursor<'_>) -> Result<()> {
    match cur.take_short_str() {
        Some(_) => Ok(()),
        None => skip_any_str(cur),
    }
}

#[inline(never)]
fn skip_any_str(cur: &mut Cursor<'_>) -> Result<()> {
    let at = cur.offset();
    match read_len_or_enc(cur)? {
        Len::Plain(n) => cur.skip(n, "string data"),
        Len::Encoded(RDB_ENC_INT8) => cur.skip(1, "an 8-bit integer string"),
        Len::Encoded(RDB_ENC_INT16) => cur.skip(2, "a 16-bit integer string"),
        Len::Encoded(RDB_ENC_INT32) => cur.skip(4, "a 32-bit integer string"),
        Len::Encoded(RDB_ENC_LZF) => {
            let clen = read_len(cur, "LZF compressed length")?;
            read_len(cur, "LZF uncompressed length")?;
            cur.skip(clen, "LZF compressed data")
        }
        Len::Encoded(e) => Err(Error::corrupt(at, format!("unknown string encoding {e}"))),
    }
}

/// A container blob (ziplist, listpack, intset, zipmap) and where it came from, so
/// errors inside it can be placed in the file.
pub struct Blob<'a> {
    pub data: BlobData<'a>,
    /// File offset of the string header.
    pub offset: u64,
    /// File offset of the first data byte (meaningful when not compressed).
    pub data_offset: u64,
    pub compressed: bool,
}

/// A blob's bytes: the file's, or an LZF expansion that the strings lifted from it
/// share (one buffer for a whole container, not one copy per element).
pub enum BlobData<'a> {
    File(&'a [u8]),
    Expanded(Rc<Vec<u8>>),
}

impl std::ops::Deref for BlobData<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            BlobData::File(b) => b,
            BlobData::Expanded(v) => v,
        }
    }
}

impl<'a> Blob<'a> {
    /// Turns a container entry into a string that borrows from the file, or shares the
    /// expanded blob.
    #[inline]
    pub fn lift(&self, e: Entry) -> Str<'a> {
        match (e, &self.data) {
            (Entry::Int(i), _) => Str::Int(i),
            (Entry::Bytes(r), BlobData::File(b)) => Str::Borrowed(&b[r]),
            (Entry::Bytes(r), BlobData::Expanded(v)) => Str::Shared(v.clone(), r),
        }
    }

    /// Places an error found at `at` inside the blob.
    pub fn error(&self, what: &str, at: usize, msg: &str) -> Error {
        if self.compressed {
            Error::corrupt(self.offset, format!("{what} (LZF-compressed, at +{at} after expansion): {msg}"))
        } else {
            Error::corrupt(self.data_offset + at as u64, format!("{what}: {msg}"))
        }
    }
}

pub fn read_blob<'a>(cur: &mut Cursor<'a>, what: &'static str) -> Result<Blob<'a>> {
    let offset = cur.offset();
    match read_len_or_enc(cur)? {
        Len::Plain(n) => {
            let data_offset = cur.offset();
            Ok(Blob { data: BlobData::File(cur.read_bytes(n, what)?), offset, data_offset, compressed: false })
        }
        Len::Encoded(RDB_ENC_LZF) => {
            let data = read_lzf(cur, offset)?;
            Ok(Blob { data: BlobData::Expanded(Rc::new(data)), offset, data_offset: offset, compressed: true })
        }
        Len::Encoded(e) => {
            Err(Error::corrupt(offset, format!("{what} stored with string encoding {e}, expected raw bytes")))
        }
    }
}

/// A score in the old string form (ZSET type 3): a length byte, then ASCII; 253, 254
/// and 255 stand for NaN, +inf and -inf.
pub fn read_string_double(cur: &mut Cursor<'_>) -> Result<f64> {
    let at = cur.offset();
    let len = cur.read_u8("a score length")?;
    match len {
        253 => Ok(f64::NAN),
        254 => Ok(f64::INFINITY),
        255 => Ok(f64::NEG_INFINITY),
        n => {
            let text = cur.read_bytes(n as u64, "a score")?;
            parse_score(text)
                .ok_or_else(|| Error::corrupt(at, format!("score {:?} is not a number", String::from_utf8_lossy(text))))
        }
    }
}

/// Parses a score as Redis's strtod would accept it.
pub fn parse_score(text: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(text).ok()?;
    match s {
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    s.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An LZF string (encoding byte 0xC3, compressed and expanded lengths, the block),
    /// then a byte that must be left unread.
    fn lzf_string(block: &[u8], expanded: u8) -> Vec<u8> {
        let mut b = vec![0xC3, block.len() as u8, expanded];
        b.extend_from_slice(block);
        b.push(0x7f);
        b
    }

    #[test]
    fn expanding_as_read_gives_the_same_bytes_and_errors() {
        let good = lzf_string(&[2, b'a', b'b', b'c', 4 << 5, 2], 9);
        let bad = lzf_string(&[2, b'a', b'b', b'c', 4 << 5, 9], 9);
        for expand in [false, true] {
            let mut cur = Cursor::new(&good);
            cur.expand_strings(expand);
            let s = read_str(&mut cur).unwrap();
            assert_eq!(matches!(s, Str::Owned(_)), expand);
            assert_eq!(s.bytes().as_ref(), b"abcabcabc");
            assert_eq!(cur.pos(), good.len() - 1);
        }
        let errors: Vec<String> = [false, true]
            .into_iter()
            .map(|expand| {
                let mut cur = Cursor::new(&bad);
                cur.expand_strings(expand);
                read_str(&mut cur).unwrap_err().to_string()
            })
            .collect();
        assert_eq!(errors[0], errors[1]);
    }
}
