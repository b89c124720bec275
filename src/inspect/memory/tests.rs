//! Whole records against what real servers reported for the same keys (`MEMORY USAGE
//! key SAMPLES 0` on redis-server 6.2.5, Debian's 7.0.15 with the system jemalloc, and
//! 8.2.3); the integration tests (`tests/memory.rs`) compare every fixture live.

use super::*;
use crate::rdb::constants::*;
use crate::rdb::{HashField, Stream, StreamEntry, StreamId};

fn rec<'a>(key: &'a [u8], rdb_type: u8, value: Value<'a>, expire_at_ms: Option<i64>) -> Record<'a> {
    Record {
        db: 0,
        key: Str::Borrowed(key),
        expire_at_ms,
        idle_s: None,
        freq: None,
        rdb_type,
        value,
        raw_value: &[],
        key_meta: None,
    }
}

/// The three servers the figures were measured on.
fn v62() -> Target {
    Target { patch: Some(5), ..Target::new(Version(6, 2)) }
}

fn v70() -> Target {
    Target { allocator: Allocator::SystemJemalloc, patch: Some(15), ..Target::new(Version(7, 0)) }
}

fn v82() -> Target {
    Target::new(Version(8, 2))
}

fn string_usage(t: &Target, key_len: usize, value: &[u8], expire: Option<i64>) -> Usage {
    let key = vec![b'k'; key_len];
    usage(&rec(&key, RDB_TYPE_STRING, Value::String(Str::Borrowed(value)), expire), t)
}

#[test]
fn strings_on_each_version() {
    let x = |n| vec![b'x'; n];
    // (key length, value, MEMORY USAGE, OBJECT ENCODING)
    let cases_62 = [
        (1, x(1), 51, "embstr"),
        (10, x(45), 112, "raw"),
        (40, x(44), 134, "embstr"),
        (1, b"12345".to_vec(), 48, "int"),
    ];
    for (k, v, bytes, enc) in cases_62 {
        let u = string_usage(&v62(), k, &v, None);
        assert_eq!((u.bytes, u.encoding), (bytes, enc), "6.2 key {k} value {}", v.len());
    }
    let cases_70 =
        [(1, x(1), 64, "embstr"), (1, x(20), 80, "embstr"), (20, x(44), 120, "embstr"), (40, x(100), 200, "raw")];
    for (k, v, bytes, enc) in cases_70 {
        let u = string_usage(&v70(), k, &v, None);
        assert_eq!((u.bytes, u.encoding), (bytes, enc), "7.0 key {k} value {}", v.len());
    }
    // 8.2 embeds the value with the key while the kvobj fits 64 bytes by its reckoning.
    let cases_82 = [
        (1, x(1), 32, "embstr"),
        (1, x(40), 64, "embstr"),
        (1, x(44), 72, "raw"),
        (5, x(30), 64, "embstr"),
        (5, x(40), 72, "raw"),
        (40, x(1), 80, "embstr"),
        (40, x(10), 80, "raw"),
        (1, b"12345".to_vec(), 24, "int"),
    ];
    for (k, v, bytes, enc) in cases_82 {
        let u = string_usage(&v82(), k, &v, None);
        assert_eq!((u.bytes, u.encoding), (bytes, enc), "8.2 key {k} value {}", v.len());
    }
    // With an expiry: 6.2 and 7.0 count nothing more; 8.2's kvobj holds it.
    assert_eq!(string_usage(&v62(), 1, b"hello", Some(1)).bytes, 55);
    assert_eq!(string_usage(&v70(), 1, b"hello", Some(1)).bytes, 64);
    assert_eq!(string_usage(&v82(), 1, b"hello", Some(1)).bytes, 40);
    assert_eq!(string_usage(&v82(), 4, &x(10), Some(1)).bytes, 48);
    let u = string_usage(&v82(), 1, &x(7), None);
    assert_eq!((u.elements, u.largest_element), (7, 7));
}

#[test]
fn collections_on_each_version() {
    let fields: Vec<String> = (0..10).map(|i| format!("f{i:05}")).collect();
    let hash = Value::Hash(
        fields
            .iter()
            .map(|f| HashField { field: Str::Borrowed(f.as_bytes()), value: Str::Borrowed(b"v"), expire_at_ms: None })
            .collect(),
    );
    let list = Value::List((0..10).map(|_| Str::Borrowed(b"xxxxxxxxxx")).collect());
    let ints = Value::Set((0..10).map(Str::Int).collect());
    let members: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let zset =
        Value::ZSet(members.iter().enumerate().map(|(i, m)| (Str::Borrowed(m.as_bytes()), i as f64 / 4.0)).collect());
    // (target, hash type, list type, zset type, expected h, l, si, z and encodings)
    let cases = [
        (
            v62(),
            RDB_TYPE_HASH_ZIPLIST,
            RDB_TYPE_LIST_QUICKLIST,
            RDB_TYPE_ZSET_ZIPLIST,
            [169, 251, 76, 145],
            ["ziplist", "quicklist", "intset", "ziplist"],
        ),
        (
            v70(),
            RDB_TYPE_HASH_LISTPACK,
            RDB_TYPE_LIST_QUICKLIST_2,
            RDB_TYPE_ZSET_LISTPACK,
            [176, 256, 80, 144],
            ["listpack", "quicklist", "intset", "listpack"],
        ),
        (
            v82(),
            RDB_TYPE_HASH_LISTPACK,
            RDB_TYPE_LIST_QUICKLIST_2,
            RDB_TYPE_ZSET_LISTPACK,
            [152, 152, 56, 120],
            ["listpack", "listpack", "intset", "listpack"],
        ),
    ];
    for (t, ht, lt, zt, bytes, encs) in cases {
        let got = [
            usage(&rec(b"h", ht, hash.clone(), None), &t),
            usage(&rec(b"l", lt, list.clone(), None), &t),
            usage(&rec(b"si", RDB_TYPE_SET_INTSET, ints.clone(), None), &t),
            usage(&rec(b"z", zt, zset.clone(), None), &t),
        ];
        assert_eq!(got.map(|u| u.bytes), bytes, "{}", t.version);
        assert_eq!(got.map(|u| u.encoding), encs, "{}", t.version);
        assert_eq!(got.map(|u| u.elements), [10; 4]);
    }
}

#[test]
fn hash_tables_presized_on_load_and_grown_by_commands() {
    let members: Vec<String> = (0..200).map(|i| format!("m{i:05}")).collect();
    let set = Value::Set(members.iter().map(|m| Str::Borrowed(m.as_bytes())).collect());
    let r = rec(b"ss", RDB_TYPE_SET, set, None);
    // One SADD of 200 members: 8.2 presizes the table from the command's size; 7.0 grows
    // it, and is caught mid-rehash from 128 into 256 buckets.
    assert_eq!(usage(&r, &v82()).bytes, 8528);
    assert_eq!(usage_with(&r, &v82(), Load::Commands).bytes, 8528);
    let on70 = usage_with(&r, &v70(), Load::Commands).bytes;
    assert!((9500..=9600).contains(&on70), "{on70} (measured: 9576)");
    // Loaded, the 7.0 table is presized: 256 buckets.
    assert_eq!(usage(&r, &v70()).bytes, 16 + 56 + 8 * 256 + 200 * 32 + 8 + 24);
}

#[test]
fn a_stream_of_one_entry_built_by_xadd() {
    let s = Stream {
        entries: vec![StreamEntry {
            id: StreamId { ms: 1, seq: 1 },
            fields: vec![(Str::Borrowed(b"a"), Str::Borrowed(b"1"))],
        }],
        length: 1,
        last_id: StreamId { ms: 1, seq: 1 },
        first_id: None,
        max_deleted_id: None,
        entries_added: None,
        groups: vec![],
        idmp: None,
    };
    let r = rec(b"s", RDB_TYPE_STREAM_LISTPACKS_3, Value::Stream(Box::new(s)), None);
    // XADD preallocates 4096 bytes for a node; 6.2.5 counted its bytes (28), not that.
    assert_eq!(usage_with(&r, &v62(), Load::Commands).bytes, 620);
    assert_eq!(usage_with(&r, &v70(), Load::Commands).bytes, 4728);
    assert_eq!(usage_with(&r, &v82(), Load::Commands).bytes, 4736);
    // Loaded, the node is the listpack's 28 bytes (a class of 32).
    assert_eq!(usage(&r, &v82()).bytes, 4736 - 4096 + 32);
}

#[test]
fn cluster_mode_adds_the_slot_list_on_7_0_only() {
    let r = rec(b"k", RDB_TYPE_STRING, Value::String(Str::Borrowed(b"v")), None);
    let plain = usage(&r, &v70()).bytes;
    assert_eq!(usage(&r, &Target { cluster: true, ..v70() }).bytes, plain + 16);
    assert_eq!(
        usage(&r, &Target { cluster: true, ..Target::new(Version(7, 2)) }).bytes,
        usage(&r, &Target::new(Version(7, 2))).bytes + 8
    );
    assert_eq!(usage(&r, &Target { cluster: true, ..v82() }).bytes, usage(&r, &v82()).bytes);
}

#[test]
fn conversions_on_load() {
    // A 200-member listpack zset on a server with zset-max-listpack-entries 128 becomes
    // a skiplist; a 6.2 ziplist hash is a listpack on 7.0; an all-integer set over the
    // intset limit is a hash table; a small set of strings is a listpack from 7.2.
    let members: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    let zset = Value::ZSet(members.iter().map(|m| (Str::Borrowed(m.as_bytes()), 1.0)).collect());
    assert_eq!(usage(&rec(b"z", RDB_TYPE_ZSET_LISTPACK, zset, None), &v82()).encoding, "skiplist");
    let hash =
        Value::Hash(vec![HashField { field: Str::Borrowed(b"f"), value: Str::Borrowed(b"v"), expire_at_ms: None }]);
    assert_eq!(usage(&rec(b"h", RDB_TYPE_HASH_ZIPLIST, hash.clone(), None), &v70()).encoding, "listpack");
    assert_eq!(usage(&rec(b"h", RDB_TYPE_HASH_ZIPLIST, hash, None), &v62()).encoding, "ziplist");
    let ints = Value::Set((0..600).map(Str::Int).collect());
    assert_eq!(usage(&rec(b"s", RDB_TYPE_SET_INTSET, ints, None), &v70()).encoding, "hashtable");
    let small = Value::Set(vec![Str::Borrowed(b"a"), Str::Borrowed(b"b")]);
    assert_eq!(usage(&rec(b"s", RDB_TYPE_SET, small.clone(), None), &Target::new(Version(7, 2))).encoding, "listpack");
    assert_eq!(usage(&rec(b"s", RDB_TYPE_SET, small, None), &v70()).encoding, "hashtable");
    // Thresholds from redis.conf move the line.
    let t = Target {
        thresholds: Thresholds::from_redis_conf("zset-max-listpack-entries 300", Version(8, 2)).unwrap(),
        ..v82()
    };
    let zset = Value::ZSet(members.iter().map(|m| (Str::Borrowed(m.as_bytes()), 1.0)).collect());
    assert_eq!(usage(&rec(b"z", RDB_TYPE_ZSET_2, zset, None), &t).encoding, "listpack");
}

#[test]
fn db_overhead_per_version() {
    // 100 keys, 30 with an expiry (MEMORY STATS on each server, less what MEMORY USAGE
    // counts per key): buckets of 128 and 32, and the expires entries.
    assert_eq!(db_overhead(100, 30, &v62()), 128 * 8 + 32 * 8 + 30 * 24);
    assert_eq!(db_overhead(100, 30, &v70()), 128 * 8 + 32 * 8 + 30 * 32);
    assert_eq!(db_overhead(100, 30, &v82()), 2464 + 128 * 8 + 100 * 16 + 64 + 32 * 8 + 30 * 16);
    assert_eq!(db_overhead(0, 0, &v82()), 0);
}

#[test]
fn no_panic_on_odd_records() {
    // Bytes that do not parse as what the type says: sized from the elements.
    let mut r = rec(b"l", RDB_TYPE_LIST_QUICKLIST_2, Value::List(vec![Str::Borrowed(b"a")]), None);
    r.raw_value = &[0xff, 0x00, 0x13];
    for t in [v62(), v70(), v82()] {
        assert!(usage(&r, &t).bytes > 0);
    }
    let empty = rec(b"e", RDB_TYPE_SET, Value::Set(vec![]), None);
    assert!(usage(&empty, &v82()).bytes > 0);
    let s = Stream {
        entries: vec![],
        length: 0,
        last_id: StreamId::default(),
        first_id: None,
        max_deleted_id: None,
        entries_added: None,
        groups: vec![],
        idmp: None,
    };
    let stream = rec(b"x", RDB_TYPE_STREAM_LISTPACKS, Value::Stream(Box::new(s)), None);
    assert!(usage(&stream, &v70()).bytes > 0);
}

/// Every record of every fixture, on every version this models, both ways, with either
/// allocator and in cluster mode; then with its stored bytes cut short or altered: a
/// figure each time, never a panic.
#[test]
fn every_fixture_record_on_every_target() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let versions = [(5, 0), (6, 2), (7, 0), (7, 2), (7, 4), (8, 0), (8, 2), (8, 4), (9, 0)];
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rdb") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let mut p = crate::rdb::Parser::new(&data).unwrap();
        while let Some(item) = p.next_item().unwrap() {
            let crate::rdb::Item::Record(rec) = item else { continue };
            seen += 1;
            for (major, minor) in versions {
                for allocator in [Allocator::Jemalloc, Allocator::SystemJemalloc] {
                    for cluster in [false, true] {
                        let t = Target { allocator, cluster, ..Target::new(Version(major, minor)) };
                        for load in [Load::Rdb, Load::Commands] {
                            let u = usage_with(&rec, &t, load);
                            assert!(u.bytes > 0 && !u.encoding.is_empty(), "{path:?} {:?}", rec.key);
                        }
                    }
                }
            }
            let raw = rec.raw_value;
            let mut altered = raw.to_vec();
            for (i, b) in altered.iter_mut().enumerate().step_by(7) {
                *b ^= (i as u8).wrapping_mul(31) | 1;
            }
            for cut in [0, 1, 2, raw.len() / 3, raw.len() / 2, raw.len().saturating_sub(1)] {
                for bytes in [&raw[..cut.min(raw.len())], &altered[..]] {
                    let mut r = rec.clone();
                    r.raw_value = bytes;
                    for v in [Version(6, 2), Version(7, 0), Version(8, 2)] {
                        let t = Target {
                            thresholds: Thresholds { list_max_listpack_size: 5, ..Thresholds::defaults(v) },
                            ..Target::new(v)
                        };
                        assert!(usage(&r, &t).bytes > 0);
                    }
                }
            }
        }
    }
    assert!(seen > 80, "{seen} records");
}
