//! Zipmap (RDB type 9, Redis ≤ 2.4 small hashes): `zmlen u8`, then `len key, len value,
//! free u8, value, free junk bytes` pairs and an `0xFF` end. Lengths are one byte below
//! 254, else 0xFE and a u32 (host order; little-endian in every real file).

use super::container::{le_bytes, ContainerError, ContainerResult, Entry};

const ZIPMAP_END: u8 = 0xFF;

/// Calls `f(field, value)` for every pair; returns the number of pairs.
pub fn parse(blob: &[u8], mut f: impl FnMut(Entry, Entry)) -> ContainerResult<usize> {
    let zmlen = *blob.first().ok_or_else(|| ContainerError::new(0, "empty zipmap"))?;
    let mut pos = 1usize;
    let mut count = 0usize;
    loop {
        let b = *blob.get(pos).ok_or_else(|| ContainerError::new(pos, "zipmap has no 0xFF end byte"))?;
        if b == ZIPMAP_END {
            break;
        }
        let (klen, n) = read_len(blob, pos)?;
        pos += n;
        let key = span(blob, pos, klen)?;
        pos += klen;
        let (vlen, n) = read_len(blob, pos)?;
        pos += n;
        let free = *blob.get(pos).ok_or_else(|| ContainerError::new(pos, "zipmap free byte past the end"))? as usize;
        pos += 1;
        let value = span(blob, pos, vlen)?;
        pos += vlen + free;
        if pos >= blob.len() {
            return Err(ContainerError::new(pos, "zipmap entry runs past the end"));
        }
        count += 1;
        f(key, value);
    }
    if pos != blob.len() - 1 {
        return Err(ContainerError::new(pos, "zipmap end byte before the end of the blob"));
    }
    // `zipmap.c`, `zipmapValidateIntegrity`: a zipmap with no pair is damage, not an empty
    // key; the count byte is exact or 254 ("count unknown").
    if count == 0 {
        return Err(ContainerError::new(0, "zipmap holds no pairs"));
    }
    if zmlen != 254 && zmlen as usize != count {
        return Err(ContainerError::new(0, format!("zipmap header counts {zmlen} pairs, found {count}")));
    }
    Ok(count)
}

fn read_len(blob: &[u8], pos: usize) -> ContainerResult<(usize, usize)> {
    match blob.get(pos) {
        Some(&b) if b < 254 => Ok((b as usize, 1)),
        Some(&254) => Ok((u32::from_le_bytes(le_bytes(blob, pos + 1, "zipmap length")?) as usize, 5)),
        Some(_) => Err(ContainerError::new(pos, "zipmap length byte 0xFF inside an entry")),
        None => Err(ContainerError::new(pos, "zipmap length past the end")),
    }
}

fn span(blob: &[u8], pos: usize, len: usize) -> ContainerResult<Entry> {
    match pos.checked_add(len) {
        Some(end) if end <= blob.len() => Ok(Entry::Bytes(pos..end)),
        _ => Err(ContainerError::new(pos, format!("zipmap string of {len} bytes runs past the end"))),
    }
}
