//! redis-migration: read Redis snapshots and command logs, and move their data.
//!
//! - [`rdb`] decodes RDB files (every version, every encoding) into records.
//! - [`filter`] selects records by db, key pattern, type and expiry.
//! - [`output`] renders records as JSON lines or text.
//! - [`glob`] is Redis's own glob matcher, over bytes.

pub mod cli;
pub mod filter;
pub mod glob;
pub mod output;
pub mod rdb;
pub mod source;
