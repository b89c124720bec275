//! Server versions and the RDB versions they write, in one table read both ways: which
//! RDB version a destination of a given version takes (the payloads `--mode restore`
//! stamps), which version a destination that writes a given RDB version is (what the
//! probe learns from a DUMP footer), and the oldest RDB version that knows each type byte.
//! Plain data over `rdb`'s constants: no I/O.

use crate::rdb::constants::*;

/// A Redis server version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

/// Each RDB version with the first Redis release that writes it (`RDB_VERSION` in
/// `rdb.h` of each release branch, `REDIS_RDB_VERSION` before 3.2), newest first. A release writes the RDB version of the
/// newest row at or below it, and loads no newer one. RDB 6 was first written by 2.6.0;
/// its row says 2.8, the version a destination that writes RDB 6 (or older) is taken for.
const RELEASES: [(Version, u32); 8] = [
    (Version(8, 6), 13),
    (Version(7, 4), 12),
    (Version(7, 2), 11),
    (Version(7, 0), 10),
    (Version(5, 0), 9),
    (Version(4, 0), 8),
    (Version(3, 2), 7),
    (Version(2, 8), 6),
];

/// The oldest row: where a version or RDB version older than every row lands.
const OLDEST: (Version, u32) = RELEASES[RELEASES.len() - 1];

/// The Redis version Valkey 9 (RDB 80 and later) says it is compatible with
/// (`redis_version:7.2.4` in its INFO).
const VALKEY_AS_REDIS: Version = Version(7, 2);

impl Version {
    /// The newest version this tool knows.
    pub const LATEST: Version = RELEASES[0].0;

    /// `7.2`, `7.2.4` (the patch level is ignored) or `7` (minor 0).
    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.trim().split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next().map_or(Some(0), |m| m.parse().ok())?;
        Some(Version(major, minor))
    }

    /// The RDB version a server of this version writes (and the newest it accepts).
    pub fn rdb_version(self) -> u32 {
        RELEASES.iter().find(|(v, _)| self >= *v).map_or(OLDEST.1, |&(_, rdb)| rdb)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The oldest Redis version that writes RDB version `rdb` (Valkey 9's 80 and later count
/// as 7.2).
pub fn version_of_rdb(rdb: u32) -> Version {
    if rdb >= VALKEY_RDB_VERSION {
        return VALKEY_AS_REDIS;
    }
    RELEASES.iter().find(|&&(_, r)| rdb >= r).map_or(OLDEST.0, |&(v, _)| v)
}

/// The oldest RDB version that has type byte `t` (Redis layouts; `rdb.h`, where each
/// type was added).
pub fn type_min_rdb_version(t: u8) -> u32 {
    match t {
        RDB_TYPE_STRING..=RDB_TYPE_HASH => 1,
        RDB_TYPE_ZSET_2 | RDB_TYPE_MODULE_2 => 8,
        RDB_TYPE_HASH_ZIPMAP..=RDB_TYPE_ZSET_ZIPLIST => 2,
        RDB_TYPE_HASH_ZIPLIST => 4,
        RDB_TYPE_LIST_QUICKLIST => 7,
        RDB_TYPE_STREAM_LISTPACKS => 9,
        RDB_TYPE_HASH_LISTPACK..=RDB_TYPE_STREAM_LISTPACKS_2 => 10,
        RDB_TYPE_SET_LISTPACK | RDB_TYPE_STREAM_LISTPACKS_3 => 11,
        RDB_TYPE_HASH_METADATA_PRE_GA..=RDB_TYPE_HASH_LISTPACK_EX => 12,
        _ => 13,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_reads_the_same_both_ways() {
        for (v, rdb) in RELEASES {
            assert_eq!(v.rdb_version(), rdb, "{v}");
            assert_eq!(version_of_rdb(rdb), v, "RDB {rdb}");
            assert_eq!(version_of_rdb(v.rdb_version()), v, "{v}");
        }
        // Newest first, with no two rows alike.
        assert!(RELEASES.windows(2).all(|w| w[0].0 > w[1].0 && w[0].1 > w[1].1));
        assert_eq!(Version::LATEST.rdb_version(), RDB_VERSION_MAX);
    }

    #[test]
    fn rdb_9_is_5_0_to_6_2() {
        assert_eq!(version_of_rdb(9), Version(5, 0));
        for v in [Version(5, 0), Version(6, 0), Version(6, 2)] {
            assert_eq!(v.rdb_version(), 9, "{v}");
        }
        assert_eq!(Version(4, 0).rdb_version(), 8);
        assert_eq!(Version(7, 0).rdb_version(), 10);
    }

    #[test]
    fn between_and_beyond_the_rows() {
        let cases =
            [(Version(2, 6), 6), (Version(3, 0), 6), (Version(8, 0), 12), (Version(8, 4), 12), (Version(9, 0), 13)];
        for (v, rdb) in cases {
            assert_eq!(v.rdb_version(), rdb, "{v}");
        }
        for rdb in 0..=6 {
            assert_eq!(version_of_rdb(rdb), Version(2, 8), "RDB {rdb}");
        }
        for rdb in 13..80 {
            assert_eq!(version_of_rdb(rdb), Version(8, 6), "RDB {rdb}");
        }
    }

    #[test]
    fn valkey_80_is_7_2() {
        assert_eq!(version_of_rdb(VALKEY_RDB_VERSION), Version(7, 2));
        assert_eq!(version_of_rdb(81), Version(7, 2));
    }

    #[test]
    fn types_are_known_from_the_rdb_version_that_added_them() {
        assert_eq!(type_min_rdb_version(RDB_TYPE_SET_INTSET), 2);
        assert_eq!(type_min_rdb_version(RDB_TYPE_ZSET_2), 8);
        assert_eq!(type_min_rdb_version(RDB_TYPE_LIST_QUICKLIST_2), 10);
        assert_eq!(type_min_rdb_version(RDB_TYPE_HASH_LISTPACK_EX), 12);
        assert_eq!(type_min_rdb_version(RDB_TYPE_STREAM_LISTPACKS_4), 13);
    }

    #[test]
    fn parses_major_minor() {
        assert_eq!(Version::parse("7.2.4"), Some(Version(7, 2)));
        assert_eq!(Version::parse(" 8 "), Some(Version(8, 0)));
        assert_eq!(Version::parse("x.1"), None);
        assert_eq!(Version(6, 2).to_string(), "6.2");
    }
}
