//! Which records a job takes: `--db`, `--match` (Redis glob, bytes), `--regex`, `--type`,
//! and expiry (expired keys are left out unless `--keep-expired`). Plain data, built by
//! the CLI from its arguments before any work starts.

use crate::glob::Glob;
use crate::rdb::{Record, ValueType};

#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these databases (empty: all).
    pub dbs: Vec<u64>,
    /// Keys matching any of these globs (empty: all).
    pub globs: Vec<Glob>,
    pub regex: Option<regex::bytes::Regex>,
    /// Only these types (empty: all).
    pub types: Vec<ValueType>,
    pub keep_expired: bool,
    /// "Now" for expiry decisions, fixed once per job.
    pub now_ms: i64,
    /// Copies of keys found in two snapshot files that `--on-duplicate` leaves out.
    pub duplicates: Option<std::sync::Arc<crate::duplicates::Duplicates>>,
}

impl Filter {
    /// True when no key filter is set (db, glob, regex, type).
    pub fn selects_everything(&self) -> bool {
        self.dbs.is_empty() && self.globs.is_empty() && self.regex.is_none() && self.types.is_empty()
    }

    pub fn accepts_db(&self, db: u64) -> bool {
        self.dbs.is_empty() || self.dbs.contains(&db)
    }

    pub fn accepts_key(&self, key: &[u8]) -> bool {
        (self.globs.is_empty() || self.globs.iter().any(|g| g.is_match(key)))
            && self.regex.as_ref().is_none_or(|r| r.is_match(key))
    }

    pub fn is_expired(&self, rec: &Record<'_>) -> bool {
        rec.expire_at_ms.is_some_and(|t| crate::expiry::passed(t, self.now_ms))
    }

    /// The record's db, type and key are selected (whatever its expiry).
    pub fn selects(&self, rec: &Record<'_>) -> bool {
        self.selects_parts(rec.db, rec.value.value_type(), &rec.key)
    }

    /// A key of `db` and type `t` is selected.
    pub fn selects_parts(&self, db: u64, t: ValueType, key: &crate::rdb::Str<'_>) -> bool {
        self.accepts_db(db)
            && (self.types.is_empty() || self.types.contains(&t))
            // The key is decoded only when a pattern needs it.
            && ((self.globs.is_empty() && self.regex.is_none()) || self.accepts_key(&key.bytes()))
    }

    /// The copy of `rec` in input `file` is one that `--on-duplicate` leaves out (another
    /// file's copy wins).
    pub fn leaves_out(&self, file: usize, rec: &Record<'_>) -> bool {
        self.duplicates.as_ref().is_some_and(|d| d.skips(file, rec.db, &rec.key.bytes()))
    }

    pub fn accepts(&self, rec: &Record<'_>) -> bool {
        (self.keep_expired || !self.is_expired(rec)) && self.selects(rec)
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
