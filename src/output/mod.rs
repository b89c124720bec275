//! Renderers for decoded records: JSON lines (lossless, for machines) and text (for
//! people). Both append to a caller's buffer; the caller decides when to write it out.

pub mod json;
pub mod text;
