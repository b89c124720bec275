//! Intset (RDB type 11): `encoding u32` (2, 4 or 8 bytes per element), `length u32`,
//! then the elements, little-endian, strictly ascending (Redis rejects anything else).

use super::container::{le_bytes, ContainerError, ContainerResult};

pub fn parse(blob: &[u8], mut f: impl FnMut(i64)) -> ContainerResult<usize> {
    let width = u32::from_le_bytes(le_bytes(blob, 0, "intset encoding")?) as usize;
    let len = u32::from_le_bytes(le_bytes(blob, 4, "intset length")?) as usize;
    // `intset.c`, `intsetValidateIntegrity`: an empty intset is damage, not an empty key.
    if len == 0 {
        return Err(ContainerError::new(4, "intset holds no elements"));
    }
    if !matches!(width, 2 | 4 | 8) {
        return Err(ContainerError::new(0, format!("intset element width {width}, expected 2, 4 or 8")));
    }
    if (len as u64) * (width as u64) + 8 != blob.len() as u64 {
        return Err(ContainerError::new(
            4,
            format!("intset of {len} × {width} bytes does not fill its {} byte blob", blob.len()),
        ));
    }
    let mut prev: Option<i64> = None;
    for i in 0..len {
        let at = 8 + i * width;
        let v = match width {
            2 => i16::from_le_bytes(le_bytes(blob, at, "intset element")?) as i64,
            4 => i32::from_le_bytes(le_bytes(blob, at, "intset element")?) as i64,
            _ => i64::from_le_bytes(le_bytes(blob, at, "intset element")?),
        };
        if prev.is_some_and(|p| p >= v) {
            return Err(ContainerError::new(at, "intset elements are not strictly ascending"));
        }
        prev = Some(v);
        f(v);
    }
    Ok(len)
}
