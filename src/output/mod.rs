//! Renderers for decoded records: JSON lines (lossless, for machines) and text (for
//! people). Both append to a caller's buffer; the caller decides when to write it out.

pub mod json;
pub mod text;

/// A score as text: the shortest decimal that reads back as the same double, or `inf`,
/// `-inf`, `nan` (the forms Redis itself accepts).
pub fn score_text(v: f64, buf: &mut ryu::Buffer) -> &str {
    if v.is_finite() {
        buf.format_finite(v)
    } else if v.is_nan() {
        "nan"
    } else if v > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}
