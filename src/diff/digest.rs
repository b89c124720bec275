//! A 128-bit digest of a key's logical value: equal values give equal digests whatever
//! their encodings (a listpack hash and a hashtable hash with the same fields; an integer
//! string stored as an integer or as text). Sets, hashes and zsets are digested without
//! order (the sum of their elements' digests), lists and streams in order.
//!
//! The hash is a multiply-fold over 16-byte blocks in two independent lanes (in the
//! manner of wyhash: a 64×64→128-bit product, its halves folded). It is not
//! cryptographic: two different values of one key collide with a chance near 2^-128,
//! which is what a comparison of non-adversarial data needs; equal digests skip the
//! element-level comparison.

use crate::rdb::{Str, Stream, Value};

const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;
const K2: u64 = 0x8ebc_6af0_9c88_c6e3;
const K3: u64 = 0x5899_65cc_7537_4cc3;
const K4: u64 = 0x1d8e_4e27_c47d_124f;

/// 128 bits, as two lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub u64, pub u64);

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

#[inline]
fn read8(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// The 0..=8 bytes of a short tail as one word, without a call to `memcpy`: two
/// overlapping 4-byte reads for 4 to 8 bytes, the first, middle and last bytes for 1 to
/// 3. Together with the length (which the caller mixes in) every tail gives its own word.
#[inline]
fn read_short(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 4 {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64;
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]) as u64;
        lo | (hi << 32)
    } else if n > 0 {
        ((b[0] as u64) << 16) | ((b[n >> 1] as u64) << 8) | b[n - 1] as u64
    } else {
        0
    }
}

/// The digest of a byte string, under a tag (what the bytes are: a key, a field, a
/// member…), so that equal bytes in different roles differ. Up to 16 bytes (most
/// elements) take one multiply-fold per lane, inline; longer strings go through the
/// block loop.
#[inline]
pub fn bytes(data: &[u8], tag: u64) -> Digest {
    let len = data.len() as u64;
    let a = K0 ^ tag.wrapping_mul(K3) ^ len;
    let b = K1 ^ tag ^ len.rotate_left(32);
    if data.len() <= 16 {
        let (x, y) = if data.len() > 8 { (read8(data), read_short(&data[8..])) } else { (read_short(data), len) };
        return Digest(fold(x ^ a ^ K2, y ^ K1 ^ len), fold(y ^ b ^ K4, x ^ K3 ^ len));
    }
    long(data, a, b)
}

/// [`bytes`] past 16 bytes: 32-byte blocks in four independent lanes (two per output
/// lane, so that the multiplies of a block do not wait on each other), folded together
/// at the end, then the last 1 to 32 bytes.
#[inline(never)]
fn long(data: &[u8], mut a: u64, mut b: u64) -> Digest {
    let len = data.len() as u64;
    let (mut c, mut d) = (a ^ K4, b ^ K2);
    // Whole blocks, keeping at least one byte for the tail.
    let mut blocks = data[..data.len() - 1].chunks_exact(32);
    for w in &mut blocks {
        let (x0, x1, x2, x3) = (read8(w), read8(&w[8..]), read8(&w[16..]), read8(&w[24..]));
        a = fold(x0 ^ a ^ K2, x1 ^ K1);
        b = fold(x1 ^ b ^ K4, x0 ^ K3);
        c = fold(x2 ^ c ^ K2, x3 ^ K1);
        d = fold(x3 ^ d ^ K4, x2 ^ K3);
    }
    a = fold(a ^ K0, c ^ K3);
    b = fold(b ^ K1, d ^ K2);
    // The rest (1 to 32 bytes): a 16-byte block if there are more than 16, then the
    // last 16 bytes of the string (overlapping what came before: the length, mixed in
    // at the start, tells the strings apart).
    let rest = &data[data.len() - 1 - blocks.remainder().len()..];
    if rest.len() > 16 {
        let (x, y) = (read8(rest), read8(&rest[8..]));
        a = fold(x ^ a ^ K2, y ^ K1);
        b = fold(y ^ b ^ K4, x ^ K3);
    }
    let last = &data[data.len() - 16..];
    let (x, y) = (read8(last), read8(&last[8..]));
    Digest(fold(x ^ a ^ K2, y ^ K1 ^ len), fold(y ^ b ^ K4, x ^ K3 ^ len))
}

/// A number under a tag.
#[inline]
pub fn number(n: u64, tag: u64) -> Digest {
    bytes(&n.to_le_bytes(), tag ^ 0x5a5a)
}

impl Digest {
    /// The ordered combination: `self` followed by `next`.
    #[inline]
    pub fn then(self, next: Digest) -> Digest {
        Digest(fold(self.0 ^ next.0 ^ K0, next.1 ^ K1), fold(self.1 ^ next.1 ^ K2, next.0 ^ K3))
    }

    /// The unordered combination (a sum: the same elements in any order give the same).
    #[inline]
    pub fn plus(self, other: Digest) -> Digest {
        let s = (((self.0 as u128) << 64) | self.1 as u128).wrapping_add(((other.0 as u128) << 64) | other.1 as u128);
        Digest((s >> 64) as u64, s as u64)
    }
}

/// The digest of a value's stored bytes, under its type byte and vendor (type bytes
/// mean different things to Redis and Valkey). Long values are digested with two CRC-64s
/// of different polynomials (Jones and ECMA-182), which the CPU computes at many bytes a
/// cycle: stored bytes are compared, not hashed against an adversary, and a difference
/// escapes both only by a multiple of both polynomials.
pub fn raw(vendor: crate::rdb::Vendor, rdb_type: u8, body: &[u8]) -> Digest {
    let v = match vendor {
        crate::rdb::Vendor::Redis => 1u64,
        crate::rdb::Vendor::Valkey => 2,
    };
    let tag = 0x7000 ^ (u64::from(rdb_type) << 8) ^ (v << 16);
    if body.len() < 256 {
        return bytes(body, tag);
    }
    let len = body.len() as u64;
    let a = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Redis, body);
    let b = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Xz, body);
    Digest(fold(a ^ K0, tag ^ K1 ^ len), fold(b ^ K2, tag ^ K3 ^ len.rotate_left(32)))
}

/// Tags, one per role.
mod tag {
    pub const STRING: u64 = 1;
    pub const LIST: u64 = 2;
    pub const SET: u64 = 3;
    pub const ZSET: u64 = 4;
    pub const HASH: u64 = 5;
    pub const STREAM: u64 = 6;
    pub const MODULE: u64 = 7;
    pub const ELEM: u64 = 11;
    pub const FIELD: u64 = 12;
    pub const VALUE: u64 = 13;
    pub const SCORE: u64 = 14;
    pub const TTL: u64 = 15;
    pub const ID: u64 = 16;
    pub const META: u64 = 17;
    pub const GROUP: u64 = 18;
    pub const PEL: u64 = 19;
    pub const CONSUMER: u64 = 20;
    pub const COUNT: u64 = 21;
}

thread_local! {
    /// Where compressed strings are expanded to be digested, reused.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The digest of a string's logical bytes (an integer as its decimal text). Bytes at
/// hand (most elements) are digested inline, the tag a constant at each call site;
/// integers and compressed strings go out of line.
#[inline(always)]
pub fn str(s: &Str<'_>, tag: u64) -> Digest {
    match s {
        Str::Borrowed(b) => bytes(b, tag),
        Str::Shared(v, r) => bytes(&v[r.clone()], tag),
        _ => str_other(s, tag),
    }
}

#[inline(never)]
fn str_other(s: &Str<'_>, tag: u64) -> Digest {
    match s {
        Str::Int(i) => bytes(itoa::Buffer::new().format(*i).as_bytes(), tag),
        Str::Lzf { data, len } => SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            // The buffer only grows: expansion overwrites what it needs, so the bytes
            // need not be cleared first.
            if scratch.len() < *len {
                scratch.resize(*len, 0);
            }
            let out = &mut scratch[..*len];
            // Validated when read, so expansion succeeds; should it not, the digest is
            // the empty string's, as `Str::append_to` would leave it.
            let d = match crate::rdb::lzf::decompress_slice(data, out) {
                Ok(()) => bytes(out, tag),
                Err(_) => bytes(&[], tag),
            };
            if scratch.len() > 16 << 20 {
                *scratch = Vec::new();
            }
            d
        }),
        _ => bytes(s.as_slice().unwrap_or_default(), tag),
    }
}

/// A zset score, exactly: the same double (0.0 and -0.0 differ, as they do in a
/// snapshot; every NaN is one).
pub fn score_bits(v: f64) -> u64 {
    if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

/// What the digest of a stream leaves out unless asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamRules {
    /// Consumers' seen and active times are compared (`--strict-streams`).
    pub strict: bool,
}

/// The digest of a logical value (expired hash fields already left out).
pub fn value(v: &Value<'_>, rules: StreamRules) -> Digest {
    match v {
        Value::String(s) => str(s, tag::STRING),
        Value::List(items) => {
            let mut d = number(items.len() as u64, tag::LIST);
            for i in items {
                d = d.then(str(i, tag::ELEM));
            }
            d
        }
        Value::Set(members) => {
            let mut sum = Digest::default();
            for m in members {
                sum = sum.plus(str(m, tag::ELEM));
            }
            number(members.len() as u64, tag::SET).then(sum)
        }
        Value::ZSet(pairs) => {
            let mut sum = Digest::default();
            for (m, s) in pairs {
                sum = sum.plus(str(m, tag::ELEM).then(number(score_bits(*s), tag::SCORE)));
            }
            number(pairs.len() as u64, tag::ZSET).then(sum)
        }
        Value::Hash(fields) => {
            let mut sum = Digest::default();
            for f in fields {
                let mut d = str(&f.field, tag::FIELD).then(str(&f.value, tag::VALUE));
                if let Some(t) = f.expire_at_ms {
                    d = d.then(number(t as u64, tag::TTL));
                }
                sum = sum.plus(d);
            }
            number(fields.len() as u64, tag::HASH).then(sum)
        }
        Value::Stream(s) => stream(s, rules),
        Value::Module(m) => bytes(m.name.as_bytes(), tag::MODULE).then(bytes(m.raw, tag::MODULE)),
    }
}

/// What a stream's metadata is once normalized: a v1 stream (RDB 9) stores no deleted
/// ID, no added count and no entries-read, and a loading server fills them in as 0-0,
/// the entry count, and "unknown".
pub struct StreamMeta {
    pub last_id: crate::rdb::StreamId,
    pub max_deleted_id: crate::rdb::StreamId,
    pub entries_added: u64,
}

impl StreamMeta {
    pub fn of(s: &Stream<'_>) -> StreamMeta {
        StreamMeta {
            last_id: s.last_id,
            max_deleted_id: s.max_deleted_id.unwrap_or_default(),
            entries_added: s.entries_added.unwrap_or(s.entries.len() as u64),
        }
    }
}

fn id(i: crate::rdb::StreamId) -> Digest {
    number(i.ms, tag::ID).then(number(i.seq, tag::ID))
}

fn stream(s: &Stream<'_>, rules: StreamRules) -> Digest {
    let meta = StreamMeta::of(s);
    let mut d = number(s.entries.len() as u64, tag::STREAM)
        .then(id(meta.last_id))
        .then(id(meta.max_deleted_id))
        .then(number(meta.entries_added, tag::META));
    for e in &s.entries {
        d = d.then(id(e.id)).then(number(e.fields.len() as u64, tag::COUNT));
        for (f, v) in &e.fields {
            d = d.then(str(f, tag::FIELD)).then(str(v, tag::VALUE));
        }
    }
    // Groups and consumers: by name, in any order; a PEL in ID order as stored.
    let mut groups = Digest::default();
    for g in &s.groups {
        let mut gd = str(&g.name, tag::GROUP)
            .then(id(g.last_delivered_id))
            .then(number(g.entries_read.map_or(u64::MAX, |n| n), tag::META));
        for p in &g.pending {
            gd = gd
                .then(id(p.id))
                .then(number(p.delivery_time_ms as u64, tag::PEL))
                .then(number(p.delivery_count, tag::PEL));
        }
        let mut consumers = Digest::default();
        for c in &g.consumers {
            let mut cd = str(&c.name, tag::CONSUMER);
            if rules.strict {
                cd = cd
                    .then(number(c.seen_time_ms as u64, tag::CONSUMER))
                    .then(number(c.active_time_ms.map_or(u64::MAX, |t| t as u64), tag::CONSUMER));
            }
            for p in &c.pending {
                cd = cd.then(id(*p));
            }
            consumers = consumers.plus(cd);
        }
        groups = groups.plus(gd.then(consumers));
    }
    d.then(number(s.groups.len() as u64, tag::GROUP)).then(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::HashField;

    fn s(b: &[u8]) -> Str<'_> {
        Str::Borrowed(b)
    }

    #[test]
    fn bytes_differ_by_content_length_and_tag() {
        let all: Vec<Vec<u8>> = (0..40).map(|n| vec![b'a'; n]).chain([b"a\0".to_vec(), b"b".to_vec()]).collect();
        let ds: std::collections::HashSet<Digest> = all.iter().map(|b| bytes(b, 1)).collect();
        assert_eq!(ds.len(), all.len());
        assert_ne!(bytes(b"x", 1), bytes(b"x", 2));
        assert_eq!(bytes(b"0123456789abcdefXYZ", 3), bytes(b"0123456789abcdefXYZ", 3));
    }

    #[test]
    fn every_byte_counts_at_every_length() {
        for n in [1usize, 8, 9, 16, 17, 31, 32, 33, 48, 49, 64, 65, 100, 1000] {
            let base: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            let d = bytes(&base, 1);
            for at in 0..n {
                let mut changed = base.clone();
                changed[at] ^= 1;
                assert_ne!(bytes(&changed, 1), d, "length {n}, byte {at}");
            }
            // A longer string that starts with the same bytes differs too.
            let mut longer = base.clone();
            longer.push(0);
            assert_ne!(bytes(&longer, 1), d, "length {n}");
        }
    }

    #[test]
    fn integers_equal_their_text() {
        assert_eq!(str(&Str::Int(-42), 1), str(&s(b"-42"), 1));
    }

    /// Hash fields and zset members digest by their logical bytes whatever their form:
    /// short or long, integer, compressed, borrowed.
    #[test]
    fn pairs_ignore_how_strings_are_stored() {
        let r = StreamRules::default();
        let lzf = Str::Lzf { data: &[2, b'a', b'b', b'c', 4 << 5, 2], len: 9 };
        let long = b"-9223372036854775808";
        let forms: [(Str<'_>, Str<'_>); 4] = [
            (Str::Int(12345), s(b"12345")),
            (Str::Int(i64::MIN), s(long)),
            (lzf, s(b"abcabcabc")),
            (Str::Owned(b"a field longer than sixteen".to_vec()), s(b"a field longer than sixteen")),
        ];
        let h = |f: &Str<'static>, v: &Str<'static>| {
            Value::Hash(vec![HashField { field: f.clone(), value: v.clone(), expire_at_ms: None }])
        };
        for (x, y) in &forms {
            for (a, b) in &forms {
                assert_eq!(value(&h(x, a), r), value(&h(y, b), r));
            }
            assert_eq!(value(&Value::ZSet(vec![(x.clone(), 2.5)]), r), value(&Value::ZSet(vec![(y.clone(), 2.5)]), r));
            assert_ne!(value(&Value::ZSet(vec![(x.clone(), 2.5)]), r), value(&Value::ZSet(vec![(y.clone(), 3.5)]), r));
        }
        // A field and value swapped, or moved between the two, differ.
        assert_ne!(value(&h(&s(b"ab"), &s(b"c")), r), value(&h(&s(b"a"), &s(b"bc")), r));
        assert_ne!(value(&h(&s(b"ab"), &s(b"c")), r), value(&h(&s(b"c"), &s(b"ab")), r));
    }

    #[test]
    fn sets_ignore_order_lists_do_not() {
        let a = Value::Set(vec![s(b"x"), s(b"y"), s(b"z")]);
        let b = Value::Set(vec![s(b"z"), s(b"x"), s(b"y")]);
        let r = StreamRules::default();
        assert_eq!(value(&a, r), value(&b, r));
        let la = Value::List(vec![s(b"x"), s(b"y")]);
        let lb = Value::List(vec![s(b"y"), s(b"x")]);
        assert_ne!(value(&la, r), value(&lb, r));
        // A set and a list of the same members differ.
        assert_ne!(value(&Value::Set(vec![s(b"x"), s(b"y")]), r), value(&la, r));
    }

    #[test]
    fn hash_field_ttls_and_zset_scores_count() {
        let r = StreamRules::default();
        let h = |t| Value::Hash(vec![HashField { field: s(b"f"), value: s(b"v"), expire_at_ms: t }]);
        assert_ne!(value(&h(None), r), value(&h(Some(5)), r));
        assert_ne!(value(&h(Some(6)), r), value(&h(Some(5)), r));
        let z = |v: f64| Value::ZSet(vec![(s(b"m"), v)]);
        assert_ne!(value(&z(0.0), r), value(&z(-0.0), r));
        assert_eq!(value(&z(1.5), r), value(&z(1.5), r));
        // Swapping field and value changes the digest.
        let fv = Value::Hash(vec![HashField { field: s(b"a"), value: s(b"b"), expire_at_ms: None }]);
        let vf = Value::Hash(vec![HashField { field: s(b"b"), value: s(b"a"), expire_at_ms: None }]);
        assert_ne!(value(&fv, r), value(&vf, r));
    }
}
