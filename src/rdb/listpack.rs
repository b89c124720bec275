//! Listpack (RDB types 16, 17, 20, 23, 25, quicklist-2 packed nodes, stream nodes):
//! `total u32, count u16`, entries of `encoding+data, backlen`, and an `0xFF` end byte.
//! Every entry's backlen is decoded and checked, as Redis's deep sanitization does.

use super::container::{le_bytes, ContainerError, ContainerResult, Entry};
use super::error::Result;
use super::string::Blob;

const LP_EOF: u8 = 0xFF;
const HEADER_SIZE: usize = 6;

/// How many entries the header says the listpack holds, bounded by what its bytes can
/// hold (every entry takes at least two): a capacity to reserve, never trusted further.
pub fn count_hint(blob: &[u8]) -> usize {
    let declared = match blob.get(4..6) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]) as usize,
        None => 0,
    };
    let room = blob.len().saturating_sub(HEADER_SIZE + 1) / 2;
    if declared == u16::MAX as usize {
        0
    } else {
        declared.min(room)
    }
}

/// Calls `f` for every entry, in order; returns the number of entries.
pub fn parse(blob: &[u8], mut f: impl FnMut(Entry)) -> ContainerResult<usize> {
    if blob.len() < HEADER_SIZE + 1 {
        return Err(ContainerError::new(0, format!("listpack of {} bytes is shorter than its header", blob.len())));
    }
    let total = u32::from_le_bytes(le_bytes(blob, 0, "listpack size")?) as usize;
    let declared = u16::from_le_bytes(le_bytes(blob, 4, "listpack count")?);
    if total != blob.len() {
        return Err(ContainerError::new(0, format!("listpack header says {total} bytes, blob has {}", blob.len())));
    }
    let mut pos = HEADER_SIZE;
    let mut count = 0usize;
    loop {
        let enc = *blob.get(pos).ok_or_else(|| ContainerError::new(pos, "listpack has no 0xFF end byte"))?;
        if enc == LP_EOF {
            break;
        }
        // The two encodings of most entries (a 7-bit integer, a string under 64 bytes)
        // are read here; the others, and every fault, by `read_entry`.
        let (entry, size) = match enc {
            0..=0x7f => (Entry::Int(enc as i64), 1),
            0x80..=0xbf if pos + 1 + (enc & 0x3f) as usize + 1 < blob.len() => {
                let len = (enc & 0x3f) as usize;
                (Entry::Bytes(pos + 1..pos + 1 + len), 1 + len)
            }
            _ => read_entry(blob, pos, enc)?,
        };
        pos += size;
        // backlen: the entry size in 7-bit groups, most significant first, every byte
        // but the first with the high bit set. One byte, the size itself, below 128.
        if size < 128 && blob.get(pos) == Some(&(size as u8)) {
            pos += 1;
            count += 1;
            f(entry);
            continue;
        }
        let blen = backlen_size(size);
        if pos + blen > blob.len() {
            return Err(ContainerError::new(pos, "listpack backlen runs past the end"));
        }
        let value = decode_backlen(blob, pos + blen - 1);
        if value != Some(size) {
            let said = value.map_or_else(|| "more than 5 bytes".to_string(), |v| v.to_string());
            return Err(ContainerError::new(pos, format!("listpack backlen says {said}, entry is {size} bytes")));
        }
        pos += blen;
        count += 1;
        f(entry);
    }
    if pos != blob.len() - 1 {
        return Err(ContainerError::new(pos, "listpack end byte 0xFF before the end of the blob"));
    }
    if declared != u16::MAX && declared as usize != count {
        return Err(ContainerError::new(4, format!("listpack header counts {declared} entries, found {count}")));
    }
    Ok(count)
}

/// Every entry of a listpack blob, as positions in it (a stream node is read by index);
/// an error is placed in the file by the blob.
pub fn collect_entries(blob: &Blob<'_>) -> Result<Vec<Entry>> {
    let mut out = Vec::with_capacity(count_hint(&blob.data));
    parse(&blob.data, |e| out.push(e)).map_err(|e| blob.error("listpack", e.at, &e.msg))?;
    Ok(out)
}

/// Reads a backlen backwards from its last byte, as Redis does (`listpack.c`,
/// `lpDecodeBacklen`): 7 bits a byte, while the high bit says more precede; `None` past
/// five bytes.
fn decode_backlen(blob: &[u8], last: usize) -> Option<usize> {
    let mut value = 0usize;
    for k in 0..5 {
        let b = *blob.get(last.checked_sub(k)?)?;
        value |= ((b & 0x7f) as usize) << (7 * k);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Bytes of the backlen that follows an entry of `l` bytes (listpack.c, `lpEncodeBacklen`).
pub(crate) fn backlen_size(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

/// Reads one entry's encoding and data at `pos`; returns it and its size (without backlen).
#[inline(never)]
fn read_entry(blob: &[u8], pos: usize, enc: u8) -> ContainerResult<(Entry, usize)> {
    let str_entry = |hdr: usize, len: usize| -> ContainerResult<(Entry, usize)> {
        let start = pos + hdr;
        match start.checked_add(len) {
            Some(end) if end < blob.len() => Ok((Entry::Bytes(start..end), hdr + len)),
            _ => Err(ContainerError::new(pos, format!("listpack string of {len} bytes runs past the end"))),
        }
    };
    if enc & 0x80 == 0 {
        return Ok((Entry::Int((enc & 0x7f) as i64), 1));
    }
    if enc & 0xC0 == 0x80 {
        return str_entry(1, (enc & 0x3f) as usize);
    }
    if enc & 0xE0 == 0xC0 {
        let b1 = *blob.get(pos + 1).ok_or_else(|| ContainerError::new(pos, "13-bit int past the end"))?;
        let raw = (((enc & 0x1f) as i64) << 8) | b1 as i64;
        let v = if raw >= 1 << 12 { raw - (1 << 13) } else { raw };
        return Ok((Entry::Int(v), 2));
    }
    if enc & 0xF0 == 0xE0 {
        let b1 = *blob.get(pos + 1).ok_or_else(|| ContainerError::new(pos, "12-bit length past the end"))?;
        return str_entry(2, (((enc & 0x0f) as usize) << 8) | b1 as usize);
    }
    match enc {
        0xF0 => {
            let len = u32::from_le_bytes(le_bytes(blob, pos + 1, "32-bit length")?) as usize;
            str_entry(5, len)
        }
        0xF1 => Ok((Entry::Int(i16::from_le_bytes(le_bytes(blob, pos + 1, "int16")?) as i64), 3)),
        0xF2 => {
            let b: [u8; 3] = le_bytes(blob, pos + 1, "int24")?;
            Ok((Entry::Int((i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as i64), 4))
        }
        0xF3 => Ok((Entry::Int(i32::from_le_bytes(le_bytes(blob, pos + 1, "int32")?) as i64), 5)),
        0xF4 => Ok((Entry::Int(i64::from_le_bytes(le_bytes(blob, pos + 1, "int64")?)), 9)),
        _ => Err(ContainerError::new(pos, format!("listpack encoding byte {enc:#04x} is not valid"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(blob: &[u8]) -> ContainerResult<Vec<Entry>> {
        let mut v = Vec::new();
        parse(blob, |e| v.push(e))?;
        Ok(v)
    }

    #[test]
    fn small_listpack() {
        // total 15, count 3: int 5, "ab", 13-bit -1.
        let blob = [15, 0, 0, 0, 3, 0, 0x05, 0x01, 0x82, b'a', b'b', 0x03, 0xDF, 0xFF, 0x02, 0xFF];
        let mut blob = blob.to_vec();
        blob[0] = blob.len() as u8;
        assert_eq!(collect(&blob).unwrap(), vec![Entry::Int(5), Entry::Bytes(9..11), Entry::Int(-1)]);
        blob[7] = 0x02; // wrong backlen
        assert!(collect(&blob).is_err());
    }
}
