//! Damage that Redis's deep sanitization refuses: each class made here byte by byte (our
//! own small encoders of the formats), wrapped into an RDB file that `check` must call
//! damaged at the right offset, and sent to a real redis-server 8.2 with
//! `sanitize-dump-payload yes` as a RESTORE payload, which it must refuse too. Redis's
//! corrupt-dump tests (`tests/integration/corrupt-dump.tcl`) are the model for the
//! classes; the bytes are our own.

use crate::util::{run, RedisServer};

/// An RDB length.
fn len(n: usize) -> Vec<u8> {
    match n {
        0..=63 => vec![n as u8],
        64..=16383 => vec![0x40 | (n >> 8) as u8, n as u8],
        _ => [&[0x80][..], &(n as u32).to_be_bytes()].concat(),
    }
}

/// An RDB string (raw).
fn rstr(b: &[u8]) -> Vec<u8> {
    [len(b.len()), b.to_vec()].concat()
}

enum Lp<'a> {
    Int(i64),
    Str(&'a [u8]),
}

/// A listpack of `entries` (`listpack.c`'s encodings: 7-bit and 13-bit integers, int16,
/// int32, int64, 6-bit and 12-bit strings; backlens of one or two bytes).
fn listpack(entries: &[Lp<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in entries {
        let enc = match *e {
            Lp::Int(v @ 0..=127) => vec![v as u8],
            Lp::Int(v @ -4096..=4095) => vec![0xC0 | ((v >> 8) & 0x1f) as u8, v as u8],
            Lp::Int(v) if i32::try_from(v).is_ok() => [&[0xF3][..], &(v as i32).to_le_bytes()].concat(),
            Lp::Int(v) => [&[0xF4][..], &v.to_le_bytes()].concat(),
            Lp::Str(s) if s.len() < 64 => [&[0x80 | s.len() as u8][..], s].concat(),
            Lp::Str(s) => [&[0xE0 | (s.len() >> 8) as u8, s.len() as u8][..], s].concat(),
        };
        let n = enc.len();
        body.extend_from_slice(&enc);
        if n < 128 {
            body.push(n as u8);
        } else {
            body.extend_from_slice(&[(n >> 7) as u8, (n & 127) as u8 | 128]);
        }
    }
    let total = 6 + body.len() + 1;
    [&(total as u32).to_le_bytes()[..], &(entries.len() as u16).to_le_bytes(), &body, &[0xFF]].concat()
}

/// A ziplist of short strings.
fn ziplist(entries: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut prev = 0usize;
    let mut tail = 10;
    for e in entries {
        tail = 10 + body.len();
        let entry = [&[prev as u8, e.len() as u8][..], e].concat();
        prev = entry.len();
        body.extend_from_slice(&entry);
    }
    let total = 10 + body.len() + 1;
    [
        &(total as u32).to_le_bytes()[..],
        &(tail as u32).to_le_bytes(),
        &(entries.len() as u16).to_le_bytes(),
        &body,
        &[0xFF],
    ]
    .concat()
}

/// One stream node: master entry with `fields`, then entries with the same fields
/// (`t_stream.c`'s layout), the first at the master ID.
fn stream_node(fields: &[&[u8]], values: &[&[&[u8]]]) -> Vec<u8> {
    let mut e = vec![Lp::Int(values.len() as i64), Lp::Int(0), Lp::Int(fields.len() as i64)];
    e.extend(fields.iter().map(|f| Lp::Str(f)));
    e.push(Lp::Int(0));
    for (i, vals) in values.iter().enumerate() {
        e.extend([Lp::Int(2), Lp::Int(0), Lp::Int(i as i64)]); // SAMEFIELDS, ms delta, seq delta
        e.extend(vals.iter().map(|v| Lp::Str(v)));
        e.push(Lp::Int(vals.len() as i64 + 3));
    }
    listpack(&e)
}

fn raw_id(ms: u64, seq: u64) -> Vec<u8> {
    [ms.to_be_bytes(), seq.to_be_bytes()].concat()
}

/// A stream value (type 21, RDB 11+): nodes keyed by master ID, metadata, and consumer
/// groups given as (name, PEL IDs, consumers (name, owned IDs)). Returns the bytes and
/// the offsets (inside the value) of each node key and each consumer name.
struct StreamValue {
    bytes: Vec<u8>,
    node_at: Vec<usize>,
    consumer_at: Vec<usize>,
    group_at: Vec<usize>,
    pel_at: Vec<usize>,
}

type Group<'a> = (&'a [u8], Vec<(u64, u64)>, Vec<(&'a [u8], Vec<(u64, u64)>)>);

fn stream(nodes: &[((u64, u64), Vec<u8>)], length: usize, groups: &[Group<'_>]) -> StreamValue {
    let mut v = len(nodes.len());
    let mut s =
        StreamValue { bytes: Vec::new(), node_at: vec![], consumer_at: vec![], group_at: vec![], pel_at: vec![] };
    for ((ms, seq), lp) in nodes {
        s.node_at.push(v.len());
        v.extend(rstr(&raw_id(*ms, *seq)));
        v.extend(rstr(lp));
    }
    let last = nodes.last().map_or((0, 0), |n| n.0);
    v.extend([len(length), len(last.0 as usize), len(last.1 as usize)].concat());
    v.extend([len(0), len(0), len(0), len(0), len(length)].concat()); // first id, max deleted id, entries added
    v.extend(len(groups.len()));
    for (name, pel, consumers) in groups {
        s.group_at.push(v.len());
        v.extend(rstr(name));
        v.extend([len(last.0 as usize), len(last.1 as usize), len(length)].concat());
        s.pel_at.push(v.len());
        v.extend(len(pel.len()));
        for (ms, seq) in pel {
            v.extend(raw_id(*ms, *seq));
            v.extend(1_700_000_000_000i64.to_le_bytes());
            v.extend(len(1));
        }
        v.extend(len(consumers.len()));
        for (cname, owned) in consumers {
            s.consumer_at.push(v.len());
            v.extend(rstr(cname));
            v.extend(1_700_000_000_000i64.to_le_bytes());
            v.extend(1_700_000_000_000i64.to_le_bytes());
            v.extend(len(owned.len()));
            for (ms, seq) in owned {
                v.extend(raw_id(*ms, *seq));
            }
        }
    }
    s.bytes = v;
    s
}

/// Where a value starts in the file [`rdb_file`] makes.
const VALUE_AT: usize = 9 + 2 + 1 + 1 + 3;

/// An RDB 12 file holding `key` (in db 0) with type `t` and `value`.
fn rdb_file(t: u8, value: &[u8]) -> Vec<u8> {
    let mut f = b"REDIS0012".to_vec();
    f.extend([0xFE, 0x00, t]);
    f.extend(rstr(b"key"));
    f.extend_from_slice(value);
    f.push(0xFF);
    let crc = crc::Crc::<u64>::new(&crc::CRC_64_REDIS).checksum(&f);
    f.extend(crc.to_le_bytes());
    f
}

/// A DUMP payload of `value` with type `t`: version 12 and the CRC-64.
fn payload(t: u8, value: &[u8]) -> Vec<u8> {
    let mut p = vec![t];
    p.extend_from_slice(value);
    p.extend(12u16.to_le_bytes());
    let crc = crc::Crc::<u64>::new(&crc::CRC_64_REDIS).checksum(&p);
    p.extend(crc.to_le_bytes());
    p
}

struct Case {
    name: &'static str,
    t: u8,
    value: Vec<u8>,
    /// Where in the file the damage is named (`None`: the value is healthy).
    at: Option<usize>,
    /// What check says of it.
    says: &'static str,
}

/// `check` of the file, and RESTORE of the payload into `server`.
fn try_case(server: &RedisServer, dir: &std::path::Path, c: &Case) {
    let path = dir.join(format!("{}.rdb", c.name.replace(' ', "-")));
    std::fs::write(&path, rdb_file(c.t, &c.value)).unwrap();
    let out = run(&["check", path.to_str().unwrap()]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let restored: redis::RedisResult<()> =
        redis::cmd("RESTORE").arg(c.name).arg(0).arg(payload(c.t, &c.value)).arg("REPLACE").query(&mut server.conn());
    match c.at {
        Some(at) => {
            assert_eq!(out.status.code(), Some(1), "{}: {said}", c.name);
            assert!(
                said.contains(&format!("at byte {} ", VALUE_AT + at)),
                "{}: expected byte {}: {said}",
                c.name,
                VALUE_AT + at
            );
            assert!(said.contains(c.says), "{}: {said}", c.name);
            let e = restored.expect_err(&format!("{}: redis-server 8.2 took the payload", c.name));
            assert!(e.to_string().contains("Bad data format"), "{}: {e}", c.name);
        }
        None => {
            assert_eq!(out.status.code(), Some(0), "{}: {said}", c.name);
            restored.unwrap_or_else(|e| panic!("{}: redis-server 8.2 refused the healthy payload: {e}", c.name));
        }
    }
}

fn sanitizing_server() -> RedisServer {
    RedisServer::start("8.2", None, &["--sanitize-dump-payload", "yes"])
}

/// A hash with field TTLs (type 25: min expiry, then a listpack of field, value, expiry
/// triplets) whose expiries are out of the order Redis keeps them in, or where a field
/// without one stands before one with one.
#[test]
fn hash_field_ttls_out_of_order() {
    let server = sanitizing_server();
    let dir = tempfile::tempdir().unwrap();
    let t1 = 4_102_444_800_000i64;
    let value = |triplets: &[(&[u8], i64)]| {
        let mut e = Vec::new();
        for (f, ttl) in triplets {
            e.extend([Lp::Str(f), Lp::Str(b"v"), Lp::Int(*ttl)]);
        }
        [t1.to_le_bytes().to_vec(), rstr(&listpack(&e))].concat()
    };
    let cases = [
        Case { name: "ordered", t: 25, value: value(&[(b"a", t1), (b"b", t1 + 5), (b"c", 0)]), at: None, says: "" },
        Case {
            name: "descending",
            t: 25,
            value: value(&[(b"a", t1 + 5), (b"b", t1)]),
            at: Some(9),
            says: "field expiry 4102444800000 after 4102444800005",
        },
        Case {
            name: "ttl after none",
            t: 25,
            value: value(&[(b"a", 0), (b"b", t1)]),
            at: Some(9),
            says: "after a field without one",
        },
    ];
    for c in &cases {
        try_case(&server, dir.path(), c);
    }
    // An expiry stored as a string, not an integer entry.
    let e = [Lp::Str(b"a"), Lp::Str(b"v"), Lp::Str(b"4102444800000")];
    let bad = Case {
        name: "string ttl",
        t: 25,
        value: [t1.to_le_bytes().to_vec(), rstr(&listpack(&e))].concat(),
        at: Some(9),
        says: "stored as a string",
    };
    try_case(&server, dir.path(), &bad);
}

/// Quicklist nodes whose encoded length is 0: a plain or packed node of quicklist 2, a
/// ziplist node of quicklist 1.
#[test]
fn quicklist_nodes_of_zero_bytes() {
    let server = sanitizing_server();
    let dir = tempfile::tempdir().unwrap();
    let packed = listpack(&[Lp::Str(b"a"), Lp::Str(b"b")]);
    let cases = [
        Case {
            name: "healthy quicklist 2",
            t: 18,
            value: [len(2), len(2), rstr(&packed), len(1), rstr(b"plain")].concat(),
            at: None,
            says: "",
        },
        Case {
            name: "plain node of 0 bytes",
            t: 18,
            value: [len(2), len(2), rstr(&packed), len(1), rstr(b"")].concat(),
            at: Some(2 + 1 + packed.len() + 1),
            says: "quicklist plain node of 0 bytes",
        },
        Case {
            name: "packed node of 0 bytes",
            t: 18,
            value: [len(2), len(2), rstr(&packed), len(2), rstr(b"")].concat(),
            at: Some(2 + 1 + packed.len() + 1 + 1),
            says: "node of 0 bytes",
        },
        Case {
            name: "ziplist node of 0 bytes",
            t: 14,
            value: [len(2), rstr(&ziplist(&[b"a"])), rstr(b"")].concat(),
            at: Some(1 + 1 + ziplist(&[b"a"]).len() + 1),
            says: "node of 0 bytes",
        },
    ];
    for c in &cases {
        try_case(&server, dir.path(), c);
    }
}

/// A quicklist 1 whose only node is an empty ziplist: not damage, an empty key, which
/// Redis skips when it loads a file (and RESTORE refuses, as every empty key).
#[test]
fn quicklist_of_empty_ziplists_is_a_skipped_empty_key() {
    let dir = tempfile::tempdir().unwrap();
    let value = [len(2), rstr(&ziplist(&[])), rstr(&ziplist(&[]))].concat();
    let path = dir.path().join("empty-quicklist.rdb");
    std::fs::write(&path, rdb_file(14, &value)).unwrap();
    let out = run(&["check", path.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("empty keys (skipped, as Redis skips them): 1"), "{said}");
    let loaded = RedisServer::start("8.2", Some(&path), &[]);
    let n: u64 = redis::cmd("DBSIZE").query(&mut loaded.conn()).unwrap();
    assert_eq!(n, 0, "redis-server 8.2 skips the empty key when it loads the file");
    let server = sanitizing_server();
    let restored: redis::RedisResult<()> =
        redis::cmd("RESTORE").arg("k").arg(0).arg(payload(14, &value)).query(&mut server.conn());
    assert!(restored.is_err(), "RESTORE refuses an empty key");
}

/// A zipmap hash with no pair, and an intset with no element: damage, not empty keys.
#[test]
fn empty_zipmap_and_intset() {
    let server = sanitizing_server();
    let dir = tempfile::tempdir().unwrap();
    let intset = |vals: &[i16]| -> Vec<u8> {
        let mut b = 2u32.to_le_bytes().to_vec();
        b.extend((vals.len() as u32).to_le_bytes());
        for v in vals {
            b.extend(v.to_le_bytes());
        }
        b
    };
    let cases = [
        Case { name: "healthy zipmap", t: 9, value: rstr(&[1, 1, b'f', 1, 0, b'v', 0xFF]), at: None, says: "" },
        Case { name: "empty zipmap", t: 9, value: rstr(&[0, 0xFF]), at: Some(1), says: "zipmap holds no pairs" },
        Case { name: "healthy intset", t: 11, value: rstr(&intset(&[1, 5])), at: None, says: "" },
        Case { name: "empty intset", t: 11, value: rstr(&intset(&[])), at: Some(5), says: "intset holds no elements" },
    ];
    for c in &cases {
        try_case(&server, dir.path(), c);
    }
}

/// Streams: two consumers of one name, a repeated master ID, and the other group and
/// node rules Redis enforces.
#[test]
fn stream_damage() {
    let server = sanitizing_server();
    let dir = tempfile::tempdir().unwrap();
    let node = |n: usize| stream_node(&[b"f"], &vec![&[&b"x"[..]][..]; n]);
    let ms = 1_700_000_000_000u64;
    let (n1, n2) = (((ms, 0), node(2)), ((ms + 10, 0), node(1)));
    let healthy = stream(
        &[n1.clone(), n2.clone()],
        3,
        &[(b"g", vec![(ms, 0), (ms, 1)], vec![(b"alice", vec![(ms, 0)]), (b"bob", vec![(ms, 1)])])],
    );
    try_case(&server, dir.path(), &Case { name: "healthy stream", t: 21, value: healthy.bytes, at: None, says: "" });

    let s = stream(
        &[n1.clone(), n2.clone()],
        3,
        &[(b"g", vec![(ms, 0), (ms, 1)], vec![(b"alice", vec![(ms, 0)]), (b"alice", vec![(ms, 1)])])],
    );
    let c = Case {
        name: "duplicate consumers",
        t: 21,
        at: Some(s.consumer_at[1]),
        value: s.bytes,
        says: "consumer \"alice\" appears twice in its group",
    };
    try_case(&server, dir.path(), &c);

    let s = stream(&[n1.clone(), ((ms, 0), node(1))], 3, &[]);
    let c = Case {
        name: "repeated master ID",
        t: 21,
        at: Some(s.node_at[1]),
        value: s.bytes,
        says: "stream node master ID 1700000000000-0 appears twice",
    };
    try_case(&server, dir.path(), &c);

    let s = stream(std::slice::from_ref(&n1), 2, &[(b"g", vec![], vec![]), (b"g", vec![], vec![])]);
    let c = Case {
        name: "duplicate groups",
        t: 21,
        at: Some(s.group_at[1]),
        value: s.bytes,
        says: "group \"g\" appears twice",
    };
    try_case(&server, dir.path(), &c);

    let s = stream(std::slice::from_ref(&n1), 2, &[(b"g", vec![(ms, 0), (ms, 0)], vec![(b"a", vec![(ms, 0)])])]);
    let c =
        Case { name: "PEL entry twice", t: 21, at: Some(s.pel_at[0]), value: s.bytes, says: "group PEL holds entry" };
    try_case(&server, dir.path(), &c);

    let s = stream(std::slice::from_ref(&n1), 2, &[(b"g", vec![(ms, 0), (ms, 1)], vec![(b"a", vec![(ms, 0)])])]);
    let c = Case { name: "PEL entry unowned", t: 21, at: Some(s.pel_at[0]), value: s.bytes, says: "has no consumer" };
    try_case(&server, dir.path(), &c);

    let s = stream(std::slice::from_ref(&n1), 2, &[(b"g", vec![(ms, 0)], vec![(b"a", vec![(ms, 0), (ms, 0)])])]);
    let c = Case {
        name: "consumer PEL twice",
        t: 21,
        at: Some(s.consumer_at[0]),
        value: s.bytes,
        says: "consumer PEL holds entry",
    };
    try_case(&server, dir.path(), &c);

    let s = stream(&[], 5, &[]);
    let c = Case {
        name: "length without nodes",
        t: 21,
        at: Some(1),
        value: s.bytes,
        says: "stream length 5 with no nodes",
    };
    try_case(&server, dir.path(), &c);

    // A node whose master entry counts one entry more than it holds.
    let mut lp_entries = vec![Lp::Int(3), Lp::Int(0), Lp::Int(1), Lp::Str(b"f"), Lp::Int(0)];
    for i in 0..2 {
        lp_entries.extend([Lp::Int(2), Lp::Int(0), Lp::Int(i), Lp::Str(b"x"), Lp::Int(4)]);
    }
    let s = stream(&[((ms, 0), listpack(&lp_entries))], 2, &[]);
    let c = Case {
        name: "node count",
        t: 21,
        at: Some(1 + 17 + 1),
        value: s.bytes,
        says: "2 entries, the master entry counts 3 live and 0 deleted",
    };
    try_case(&server, dir.path(), &c);
}
