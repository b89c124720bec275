//! Ziplist (RDB types 10, 12, 13 and quicklist v1 nodes): `zlbytes u32, zltail u32,
//! zllen u16`, entries of `prevlen, encoding, data`, and an `0xFF` end byte. The walk
//! validates what Redis's deep sanitization validates: total size, tail offset, every
//! prevlen, every encoding and the entry count.

use super::container::{le_bytes, ContainerError, ContainerResult, Entry};

const ZIP_END: u8 = 0xFF;
const HEADER_SIZE: usize = 10;

/// Calls `f` for every entry, in order; returns the number of entries.
pub fn parse(blob: &[u8], mut f: impl FnMut(Entry)) -> ContainerResult<usize> {
    if blob.len() < HEADER_SIZE + 1 {
        return Err(ContainerError::new(0, format!("ziplist of {} bytes is shorter than its header", blob.len())));
    }
    let zlbytes = u32::from_le_bytes(le_bytes(blob, 0, "zlbytes")?) as usize;
    let zltail = u32::from_le_bytes(le_bytes(blob, 4, "zltail")?) as usize;
    let zllen = u16::from_le_bytes(le_bytes(blob, 8, "zllen")?);
    if zlbytes != blob.len() {
        return Err(ContainerError::new(0, format!("ziplist header says {zlbytes} bytes, blob has {}", blob.len())));
    }
    if blob[blob.len() - 1] != ZIP_END {
        return Err(ContainerError::new(blob.len() - 1, "ziplist does not end with 0xFF"));
    }
    let mut pos = HEADER_SIZE;
    let mut count = 0usize;
    let mut prev_len = 0usize;
    let mut last_start = HEADER_SIZE;
    while pos < blob.len() && blob[pos] != ZIP_END {
        let start = pos;
        // prevlen: 1 byte, or 0xFE followed by a u32.
        let (stored_prev, prevlen_size) = if blob[pos] < 0xFE {
            (blob[pos] as usize, 1)
        } else if blob[pos] == 0xFE {
            (u32::from_le_bytes(le_bytes(blob, pos + 1, "prevlen")?) as usize, 5)
        } else {
            return Err(ContainerError::new(pos, "ziplist prevlen byte 0xFF inside the list"));
        };
        if stored_prev != prev_len {
            return Err(ContainerError::new(
                pos,
                format!("ziplist entry prevlen {stored_prev}, previous entry is {prev_len} bytes"),
            ));
        }
        pos += prevlen_size;
        let enc = *blob.get(pos).ok_or_else(|| ContainerError::new(pos, "ziplist entry encoding past the end"))?;
        let entry = match enc >> 6 {
            0 => {
                let len = (enc & 0x3f) as usize;
                pos += 1;
                string_entry(blob, pos, len)?
            }
            1 => {
                let b1 =
                    *blob.get(pos + 1).ok_or_else(|| ContainerError::new(pos, "ziplist 14-bit length past the end"))?;
                let len = (((enc & 0x3f) as usize) << 8) | b1 as usize;
                pos += 2;
                string_entry(blob, pos, len)?
            }
            2 => {
                if enc != 0x80 {
                    return Err(ContainerError::new(
                        pos,
                        format!("ziplist string encoding byte {enc:#04x} is not valid"),
                    ));
                }
                let len = u32::from_be_bytes(le_bytes(blob, pos + 1, "ziplist 32-bit length")?) as usize;
                pos += 5;
                string_entry(blob, pos, len)?
            }
            _ => {
                pos += 1;
                let (v, size) = match enc {
                    0xC0 => (i16::from_le_bytes(le_bytes(blob, pos, "int16")?) as i64, 2),
                    0xD0 => (i32::from_le_bytes(le_bytes(blob, pos, "int32")?) as i64, 4),
                    0xE0 => (i64::from_le_bytes(le_bytes(blob, pos, "int64")?), 8),
                    0xF0 => {
                        let b: [u8; 3] = le_bytes(blob, pos, "int24")?;
                        ((i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as i64, 3)
                    }
                    0xFE => (
                        blob.get(pos)
                            .map(|&b| b as i8 as i64)
                            .ok_or_else(|| ContainerError::new(pos, "int8 past the end"))?,
                        1,
                    ),
                    0xF1..=0xFD => (((enc & 0x0f) as i64) - 1, 0),
                    _ => {
                        return Err(ContainerError::new(
                            pos - 1,
                            format!("ziplist integer encoding byte {enc:#04x} is not valid"),
                        ))
                    }
                };
                (Entry::Int(v), size)
            }
        };
        let (entry, data_len) = entry;
        pos += data_len;
        if pos >= blob.len() {
            return Err(ContainerError::new(start, "ziplist entry runs into or past the end byte"));
        }
        prev_len = pos - start;
        last_start = start;
        count += 1;
        f(entry);
    }
    if pos != blob.len() - 1 {
        return Err(ContainerError::new(pos, "ziplist end byte 0xFF before the end of the blob"));
    }
    // Redis checks the tail against the last entry when there is one, else only that it
    // falls inside the blob (`ziplist.c`, `ziplistValidateIntegrity`).
    if (count > 0 && zltail != last_start) || zltail > blob.len() - 1 {
        return Err(ContainerError::new(4, format!("ziplist tail offset {zltail}, last entry starts at {last_start}")));
    }
    if zllen != u16::MAX && zllen as usize != count {
        return Err(ContainerError::new(8, format!("ziplist header counts {zllen} entries, found {count}")));
    }
    Ok(count)
}

fn string_entry(blob: &[u8], pos: usize, len: usize) -> ContainerResult<(Entry, usize)> {
    if pos.checked_add(len).is_none_or(|end| end > blob.len()) {
        return Err(ContainerError::new(pos, format!("ziplist string of {len} bytes runs past the end")));
    }
    Ok((Entry::Bytes(pos..pos + len), len))
}
