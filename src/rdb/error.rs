//! Decoder errors: every error carries the byte offset in the file where the reader
//! stopped and says what it expected there, so `check` can point at the damage.

use std::fmt;

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ended while `what` was being read.
    Truncated { what: &'static str },
    /// The bytes do not follow the format; the message says what was expected.
    Corrupt(String),
    /// Well-formed, but a version, type or opcode this reader does not handle.
    Unsupported(String),
    /// The CRC-64 trailer does not match the file's contents.
    Checksum { stored: u64, computed: u64 },
}

/// A decoding error at a byte offset of the input. Boxed: every `Result` of the
/// decoder's small readers stays two words wide on the success path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error(Box<ErrorAt>);

/// What an [`Error`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAt {
    /// Offset in the file (for values inside an LZF-compressed blob: the blob's offset).
    pub offset: u64,
    pub kind: ErrorKind,
    /// The key being decoded, when the error is inside a key's value (lossy text).
    pub key: Option<String>,
}

impl std::ops::Deref for Error {
    type Target = ErrorAt;

    fn deref(&self) -> &ErrorAt {
        &self.0
    }
}

impl Error {
    pub fn new(offset: u64, kind: ErrorKind) -> Error {
        Error(Box::new(ErrorAt { offset, kind, key: None }))
    }

    pub fn truncated(offset: u64, what: &'static str) -> Error {
        Error::new(offset, ErrorKind::Truncated { what })
    }

    pub fn corrupt(offset: u64, msg: impl Into<String>) -> Error {
        Error::new(offset, ErrorKind::Corrupt(msg.into()))
    }

    pub fn unsupported(offset: u64, msg: impl Into<String>) -> Error {
        Error::new(offset, ErrorKind::Unsupported(msg.into()))
    }

    /// True when the input is damaged (as opposed to valid but unsupported).
    pub fn is_damage(&self) -> bool {
        !matches!(self.kind, ErrorKind::Unsupported(_))
    }

    /// Names the key of `rec` in the error.
    pub fn with_key_text(self, rec: &crate::rdb::Record<'_>) -> Error {
        self.with_key(&rec.key.bytes())
    }

    pub(crate) fn with_key(mut self, key: &[u8]) -> Error {
        if self.0.key.is_none() {
            self.0.key = Some(crate::rdb::escape_key(key));
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}", self.offset)?;
        if let Some(key) = &self.key {
            write!(f, " (key \"{key}\")")?;
        }
        match &self.kind {
            ErrorKind::Truncated { what } => write!(f, ": file ends while reading {what}"),
            ErrorKind::Corrupt(msg) => write!(f, ": {msg}"),
            ErrorKind::Unsupported(msg) => write!(f, ": unsupported: {msg}"),
            ErrorKind::Checksum { stored, computed } => {
                write!(f, ": CRC-64 mismatch: file says {stored:#018x}, contents give {computed:#018x}")
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
