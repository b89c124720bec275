//! LZF decompression (the format of liblzf, which Redis uses for strings longer than 20
//! bytes). Bounded: output never grows past the declared length, and every back-reference
//! is checked against what has been produced. Written from the format description, not
//! from liblzf's code.

/// Why a compressed block could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LzfError {
    /// A literal run or back-reference reads past the end of the input.
    #[error("LZF data ends inside an instruction at +{at}")]
    InputTruncated { at: usize },
    /// A back-reference points before the start of the output.
    #[error("LZF back-reference before the start of the output at +{at}")]
    BadBackReference { at: usize },
    /// The output would exceed (or, at the end, not reach) the declared length.
    #[error("LZF data expands to {produced} bytes, the header declared {declared}")]
    LengthMismatch { produced: usize, declared: usize },
}

/// Expands `input` into `out` (cleared first); the result must be exactly `declared`
/// bytes. `out` grows with the output actually produced, so a hostile declared length
/// does not reserve memory by itself.
pub fn decompress_into(input: &[u8], declared: usize, out: &mut Vec<u8>) -> Result<(), LzfError> {
    out.clear();
    decompress_append(input, declared, out)
}

/// Expands `input` at the end of `out` (back-references reach only what this call wrote).
pub fn decompress_append(input: &[u8], declared: usize, out: &mut Vec<u8>) -> Result<(), LzfError> {
    let base = out.len();
    // The output is sized up front when the input could expand to the declared length
    // (an instruction of 3 bytes yields at most 264) and that length is modest; a
    // larger or impossible one grows with what is produced, as hostile input may claim
    // anything.
    if declared <= input.len().saturating_mul(88) && declared <= PRESIZE_MAX {
        out.resize(base + declared, 0);
        let r = expand(input, &mut out[base..]);
        if r.is_err() {
            out.truncate(base);
        }
        return r;
    }
    out.reserve(declared.min(input.len().saturating_mul(4)).max(16));
    let result = walk(input, declared, |op| match op {
        Op::Literal(bytes) => out.extend_from_slice(bytes),
        Op::Copy { back, len } => {
            let start = out.len() - back;
            if back >= len {
                out.extend_from_within(start..start + len);
            } else {
                // Overlapping copy: each byte may be one this copy just wrote.
                for k in 0..len {
                    let b = out[start + k];
                    out.push(b);
                }
            }
        }
    });
    debug_assert!(result.is_err() || out.len() - base == declared);
    result
}

/// Largest output sized before expanding.
const PRESIZE_MAX: usize = 64 << 20;

/// Expands `input` into `dst`, whose length is the declared length, checked as
/// [`decompress_append`] checks (for a caller that keeps its own buffer: the bytes of
/// `dst` are overwritten, never read first, so it need not be zeroed).
pub fn decompress_slice(input: &[u8], dst: &mut [u8]) -> Result<(), LzfError> {
    expand(input, dst)
}

/// Input bytes every instruction fits in: a control byte and a 32-byte literal, or a
/// back-reference's 3 bytes.
const FAST_IN: usize = 1 + 32;
/// Output bytes every instruction fits in, with its copy rounded up to 16-byte moves: a
/// literal of 32 bytes, a back-reference of 264 (7 + 255 + 2).
const FAST_OUT: usize = 264 + 16;

/// Expands `input` into `dst`, whose length is the declared length: the checks of
/// [`walk`], in the same order with the same errors, with copies done as fixed 32-, 16-
/// or 8-byte moves where both sides have room (the bytes past a run are written again by
/// what follows, or are past the end of the input and output, never read).
fn expand(input: &[u8], dst: &mut [u8]) -> Result<(), LzfError> {
    let (n, end) = (input.len(), dst.len());
    let (mut i, mut o) = (0usize, 0usize);
    // Far from both ends no instruction can run past the input or the output: only a
    // back-reference before the start of the output is left to check.
    while i + FAST_IN < n && o + FAST_OUT <= end {
        let ctrl = input[i] as usize;
        if ctrl < 32 {
            let run = ctrl + 1;
            dst[o..o + 32].copy_from_slice(&input[i + 1..i + 33]);
            i += 1 + run;
            o += run;
        } else {
            let at = i;
            let mut len = (ctrl >> 5) + 2;
            i += 1;
            if len == 9 {
                len += input[i] as usize;
                i += 1;
            }
            let back = ((ctrl & 0x1f) << 8) + input[i] as usize + 1;
            i += 1;
            if back > o {
                return Err(LzfError::BadBackReference { at });
            }
            copy_back(dst, o, back, len);
            o += len;
        }
    }
    while i < n {
        let ctrl = input[i] as usize;
        let at = i;
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            if i + run > n {
                return Err(LzfError::InputTruncated { at });
            }
            if o + run > end {
                return Err(LzfError::LengthMismatch { produced: o + run, declared: end });
            }
            if i + 32 <= n && o + 32 <= end {
                dst[o..o + 32].copy_from_slice(&input[i..i + 32]);
            } else {
                dst[o..o + run].copy_from_slice(&input[i..i + run]);
            }
            i += run;
            o += run;
        } else {
            let (back, len) = back_reference(input, &mut i, ctrl, at)?;
            if back > o {
                return Err(LzfError::BadBackReference { at });
            }
            if o + len > end {
                return Err(LzfError::LengthMismatch { produced: o + len, declared: end });
            }
            let from = o - back;
            if back >= 16 && len <= 16 && o + 16 <= end {
                let (done, rest) = dst.split_at_mut(o);
                rest[..16].copy_from_slice(&done[from..from + 16]);
            } else if back >= len {
                dst.copy_within(from..from + len, o);
            } else {
                // Overlapping: each byte may be one this copy just wrote.
                for k in 0..len {
                    dst[o + k] = dst[from + k];
                }
            }
            o += len;
        }
    }
    if o != end {
        return Err(LzfError::LengthMismatch { produced: o, declared: end });
    }
    Ok(())
}

/// Copies `len` bytes from `back` bytes before `o` to `o`, where `dst` has room for the
/// length rounded up to 16. Each move reads only bytes already written: a move of `w`
/// bytes with `back >= w` reads bytes before its own start.
#[inline(always)]
fn copy_back(dst: &mut [u8], o: usize, back: usize, len: usize) {
    let from = o - back;
    if back >= 16 {
        let mut k = 0;
        while k < len {
            dst.copy_within(from + k..from + k + 16, o + k);
            k += 16;
        }
    } else if back >= 8 {
        let mut k = 0;
        while k < len {
            dst.copy_within(from + k..from + k + 8, o + k);
            k += 8;
        }
    } else if back == 1 {
        let b = dst[from];
        dst[o..o + len].fill(b);
    } else {
        for k in 0..len {
            dst[o + k] = dst[from + k];
        }
    }
}

/// Checks that `input` expands to exactly `declared` bytes without producing them: the
/// same walk as [`decompress_append`], counting instead of copying. After it succeeds,
/// expanding the same input cannot fail.
pub fn validate(input: &[u8], declared: usize) -> Result<(), LzfError> {
    walk(input, declared, |_| {})
}

/// The rest of a back-reference instruction whose control byte `ctrl` (at `at`) has
/// been read: its distance (1-based) and length, with `i` moved past it.
#[inline(always)]
fn back_reference(input: &[u8], i: &mut usize, ctrl: usize, at: usize) -> Result<(usize, usize), LzfError> {
    let mut len = ctrl >> 5;
    if len == 7 {
        len += *input.get(*i).ok_or(LzfError::InputTruncated { at })? as usize;
        *i += 1;
    }
    let low = *input.get(*i).ok_or(LzfError::InputTruncated { at })? as usize;
    *i += 1;
    Ok((((ctrl & 0x1f) << 8) + low + 1, len + 2))
}

/// One LZF instruction, already checked against the input and the output so far.
enum Op<'a> {
    Literal(&'a [u8]),
    /// Copy `len` bytes starting `back` bytes before the end of the output.
    Copy {
        back: usize,
        len: usize,
    },
}

/// The walk over the instructions that both expansion and validation use: every
/// instruction is checked (complete in the input, a back-reference inside what has been
/// produced, the output never past `declared`) before it is handed to `apply`.
#[inline(always)]
fn walk<'a>(input: &'a [u8], declared: usize, mut apply: impl FnMut(Op<'a>)) -> Result<(), LzfError> {
    let mut produced = 0usize;
    let mut i = 0usize;
    while i < input.len() {
        let ctrl = input[i] as usize;
        let at = i;
        i += 1;
        let (op, n) = if ctrl < 32 {
            // Literal run of ctrl + 1 bytes.
            let run = ctrl + 1;
            let lit = input.get(i..i + run).ok_or(LzfError::InputTruncated { at })?;
            i += run;
            (Op::Literal(lit), run)
        } else {
            let (back, len) = back_reference(input, &mut i, ctrl, at)?;
            if back > produced {
                return Err(LzfError::BadBackReference { at });
            }
            (Op::Copy { back, len }, len)
        };
        produced += n;
        if produced > declared {
            return Err(LzfError::LengthMismatch { produced, declared });
        }
        apply(op);
    }
    if produced != declared {
        return Err(LzfError::LengthMismatch { produced, declared });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_then_overlapping_reference() {
        // "abc" literal, then copy 6 bytes from 3 back: "abcabcabc".
        let input = [2, b'a', b'b', b'c', (4 << 5), 2];
        let mut out = Vec::new();
        decompress_into(&input, 9, &mut out).unwrap();
        assert_eq!(out, b"abcabcabc");
    }

    #[test]
    fn rejects_bad_input() {
        let mut out = Vec::new();
        assert!(matches!(decompress_into(&[5, b'a'], 6, &mut out), Err(LzfError::InputTruncated { .. })));
        assert!(matches!(decompress_into(&[0, b'a', 0x20, 5], 4, &mut out), Err(LzfError::BadBackReference { .. })));
        assert!(matches!(decompress_into(&[0, b'a'], 1 << 40, &mut out), Err(LzfError::LengthMismatch { .. })));
        assert!(out.capacity() < 1 << 20);
    }

    /// `validate` accepts exactly what `decompress_into` accepts, with the same error.
    #[test]
    fn validate_agrees_with_decompression() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut out = Vec::new();
        let good = [2, b'a', b'b', b'c', (4 << 5), 2, (7 << 5), 3, 1];
        for round in 0..20_000 {
            let mut input = good.to_vec();
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if round > 0 {
                let at = (rng % input.len() as u64) as usize;
                input[at] ^= (rng >> 8) as u8;
            }
            let declared = (rng >> 20) as usize % 24;
            for declared in [declared, 21] {
                assert_eq!(
                    validate(&input, declared),
                    decompress_into(&input, declared, &mut out),
                    "{input:?} {declared}"
                );
            }
        }
    }

    /// The sized expansion and the growing one agree on every input: random mutations
    /// of a block with literals and near, far and overlapping references.
    #[test]
    fn sized_and_growing_expansion_agree() {
        let mut text = Vec::new();
        for k in 0..400u32 {
            text.extend_from_slice(format!("field:{k}:value-{}|", k % 7).as_bytes());
            // Runs with short periods (1 to 15 bytes): overlapping references, which
            // copy bytes the same instruction wrote, far from the end and near it.
            if k % 50 == 7 {
                let period = 1 + (k as usize / 50 * 2) % 15;
                let unit: Vec<u8> = (0..period).map(|b| b'a' + (b + k as usize) as u8 % 26).collect();
                text.extend(unit.iter().cycle().take(40 + 37 * period));
            }
        }
        // Compress by hand: literals of up to 32 bytes and references to earlier text.
        let mut block = Vec::new();
        let mut p = 0;
        while p < text.len() {
            let window = p.saturating_sub(8000);
            let found =
                (window..p).rev().find(|&q| text[q..].iter().zip(&text[p..]).take_while(|(a, b)| a == b).count() >= 3);
            match found {
                Some(q) => {
                    let len = text[q..].iter().zip(&text[p..]).take_while(|(a, b)| a == b).count().min(264);
                    let back = p - q - 1;
                    let l = len - 2;
                    if l < 7 {
                        block.push(((l << 5) | (back >> 8)) as u8);
                    } else {
                        block.push(((7 << 5) | (back >> 8)) as u8);
                        block.push((l - 7) as u8);
                    }
                    block.push(back as u8);
                    p += len;
                }
                None => {
                    let run = (text.len() - p).min(1 + p % 32);
                    block.push((run - 1) as u8);
                    block.extend_from_slice(&text[p..p + run]);
                    p += run;
                }
            }
        }
        let mut out = Vec::new();
        decompress_into(&block, text.len(), &mut out).unwrap();
        assert_eq!(out, text);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            let mut input = block.clone();
            for _ in 0..1 + (rng % 3) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let at = (rng % input.len() as u64) as usize;
                input[at] ^= (rng >> 16) as u8;
            }
            let declared = text.len() - 8 + (rng >> 40) as usize % 16;
            let mut grown = Vec::new();
            let slow = walk_expand(&input, declared, &mut grown);
            let fast = decompress_into(&input, declared, &mut out);
            assert_eq!(fast, slow);
            if fast.is_ok() {
                assert_eq!(out, grown);
            }
        }
    }

    /// The growing expansion alone, for comparison.
    fn walk_expand(input: &[u8], declared: usize, out: &mut Vec<u8>) -> Result<(), LzfError> {
        walk(input, declared, |op| match op {
            Op::Literal(bytes) => out.extend_from_slice(bytes),
            Op::Copy { back, len } => {
                let start = out.len() - back;
                for k in 0..len {
                    let b = out[start + k];
                    out.push(b);
                }
            }
        })
    }

    #[test]
    fn append_keeps_what_was_there() {
        let mut out = b"xyz".to_vec();
        decompress_append(&[2, b'a', b'b', b'c', (4 << 5), 2], 9, &mut out).unwrap();
        assert_eq!(out, b"xyzabcabcabc");
        // A back-reference cannot reach the bytes that were there before.
        assert!(decompress_append(&[0, b'a', 0x20, 2], 4, &mut out).is_err());
    }
}
