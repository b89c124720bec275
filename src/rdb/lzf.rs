//! LZF decompression (the format of liblzf, which Redis uses for strings longer than 20
//! bytes). Bounded: output never grows past the declared length, and every back-reference
//! is checked against what has been produced. Written from the format description, not
//! from liblzf's code.

/// Why a compressed block could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LzfError {
    /// A literal run or back-reference reads past the end of the input.
    InputTruncated { at: usize },
    /// A back-reference points before the start of the output.
    BadBackReference { at: usize },
    /// The output would exceed (or, at the end, not reach) the declared length.
    LengthMismatch { produced: usize, declared: usize },
}

impl std::fmt::Display for LzfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LzfError::InputTruncated { at } => {
                write!(f, "LZF data ends inside an instruction at +{at}")
            }
            LzfError::BadBackReference { at } => {
                write!(f, "LZF back-reference before the start of the output at +{at}")
            }
            LzfError::LengthMismatch { produced, declared } => {
                write!(f, "LZF data expands to {produced} bytes, the header declared {declared}")
            }
        }
    }
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
    // Reserve what the input can plausibly expand to, never the declared length blindly.
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

/// Checks that `input` expands to exactly `declared` bytes without producing them: the
/// same walk as [`decompress_append`], counting instead of copying. After it succeeds,
/// expanding the same input cannot fail.
pub fn validate(input: &[u8], declared: usize) -> Result<(), LzfError> {
    walk(input, declared, |_| {})
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
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(i).ok_or(LzfError::InputTruncated { at })? as usize;
                i += 1;
            }
            let low = *input.get(i).ok_or(LzfError::InputTruncated { at })? as usize;
            i += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            if back > produced {
                return Err(LzfError::BadBackReference { at });
            }
            (Op::Copy { back, len: len + 2 }, len + 2)
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

    #[test]
    fn append_keeps_what_was_there() {
        let mut out = b"xyz".to_vec();
        decompress_append(&[2, b'a', b'b', b'c', (4 << 5), 2], 9, &mut out).unwrap();
        assert_eq!(out, b"xyzabcabcabc");
        // A back-reference cannot reach the bytes that were there before.
        assert!(decompress_append(&[0, b'a', 0x20, 2], 4, &mut out).is_err());
    }
}
