//! Byte sizes of the packed encodings a server builds from elements: listpack entries
//! (`listpack.c`, `lpEncodeGetType`, `lpEncodeBacklen`), ziplist entries (`ziplist.c`,
//! `zipTryEncoding`, `zipStorePrevEntryLength`), intsets (`intset.c`), and the text a
//! zset score takes in a listpack or ziplist (`util.c`, `d2string`; `t_zset.c`,
//! `zzlInsertAt`).

use crate::rdb::container::parse_canonical_i64;
use crate::rdb::listpack::backlen_size;
use crate::rdb::Str;

/// An element as the packed encodings see it: an integer (a string that `string2ll`
/// reads exactly) or bytes of a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Int(i64),
    Bytes(u64),
}

impl Item {
    /// The element's length as a string (`sdslen` of it).
    pub fn len(self) -> u64 {
        match self {
            Item::Int(i) => itoa::Buffer::new().format(i).len() as u64,
            Item::Bytes(n) => n,
        }
    }
}

/// How a packed encoding sees `s`. Integer-encoded strings of the file are integers;
/// others are when `string2ll` takes them (at most 20 bytes, canonical decimal). An LZF
/// string is longer than 20 bytes (`rdb.c`, `rdbSaveRawString` compresses only those).
pub fn item(s: &Str<'_>) -> Item {
    match s {
        Str::Int(i) => Item::Int(*i),
        Str::Lzf { len, .. } => Item::Bytes(*len as u64),
        _ => match s.as_slice() {
            Some(b) => parse_canonical_i64(b).map_or(Item::Bytes(b.len() as u64), Item::Int),
            None => Item::Bytes(s.len() as u64),
        },
    }
}

/// A listpack's header (`LP_HDR_SIZE`: total bytes u32, count u16) and end byte.
pub const LP_EMPTY: u64 = 7;

/// Bytes of one listpack entry: encoding and data (`lpEncodeGetType`,
/// `lpEncodeString`), then the backlen (`lpEncodeBacklen`).
pub fn lp_entry(it: Item) -> u64 {
    let body = match it {
        Item::Int(v) => lp_int_body(v),
        Item::Bytes(n) if n < 64 => 1 + n,
        Item::Bytes(n) if n < 4096 => 2 + n,
        Item::Bytes(n) => 5 + n,
    };
    body + backlen_size(body as usize) as u64
}

fn lp_int_body(v: i64) -> u64 {
    if (0..=127).contains(&v) {
        1
    } else if (-4096..=4095).contains(&v) {
        2
    } else if (-32768..=32767).contains(&v) {
        3
    } else if (-8_388_608..=8_388_607).contains(&v) {
        4
    } else if (i32::MIN as i64..=i32::MAX as i64).contains(&v) {
        5
    } else {
        9
    }
}

/// Bytes of a listpack of `items`.
pub fn listpack<I: IntoIterator<Item = Item>>(items: I) -> u64 {
    LP_EMPTY + items.into_iter().map(lp_entry).sum::<u64>()
}

/// A ziplist's header (`ZIPLIST_HEADER_SIZE`: bytes, tail offset, count) and end byte.
pub const ZL_EMPTY: u64 = 11;

/// A ziplist being built entry by entry, as `ziplistPush` at the tail does: each entry
/// stores the previous entry's length in 1 byte, or 5 from 254 on.
#[derive(Debug, Clone, Copy)]
pub struct Ziplist {
    pub bytes: u64,
    prev: u64,
    pub count: u64,
}

impl Default for Ziplist {
    fn default() -> Self {
        Ziplist { bytes: ZL_EMPTY, prev: 0, count: 0 }
    }
}

impl Ziplist {
    /// Bytes the entry for `it` would take after the current last one.
    pub fn entry_len(&self, it: Item) -> u64 {
        let prevlen = if self.prev < 254 { 1 } else { 5 };
        prevlen + zl_body(it)
    }

    pub fn push(&mut self, it: Item) {
        let e = self.entry_len(it);
        self.bytes += e;
        self.prev = e;
        self.count += 1;
    }
}

/// Encoding and data of a ziplist entry (`zipTryEncoding`: strings of 1 to 31 bytes that
/// `string2ll` reads become integers, 0 to 12 stored in the encoding byte itself).
fn zl_body(it: Item) -> u64 {
    match it {
        Item::Int(v) => {
            if (0..=12).contains(&v) {
                1
            } else if (i8::MIN as i64..=i8::MAX as i64).contains(&v) {
                2
            } else if (i16::MIN as i64..=i16::MAX as i64).contains(&v) {
                3
            } else if (-8_388_608..=8_388_607).contains(&v) {
                4
            } else if (i32::MIN as i64..=i32::MAX as i64).contains(&v) {
                5
            } else {
                9
            }
        }
        Item::Bytes(n) => zl_str(n),
    }
}

fn zl_str(n: u64) -> u64 {
    if n <= 0x3f {
        1 + n
    } else if n <= 0x3fff {
        2 + n
    } else {
        5 + n
    }
}

/// Bytes of a ziplist of `items`.
pub fn ziplist<I: IntoIterator<Item = Item>>(items: I) -> u64 {
    let mut z = Ziplist::default();
    for it in items {
        z.push(it);
    }
    z.bytes
}

/// Bytes of an intset of these integers (`intset.c`: a header of 8, then every value in
/// the smallest width that holds them all).
pub fn intset_bytes(count: u64, min: i64, max: i64) -> u64 {
    let width = |v: i64| {
        if (i16::MIN as i64..=i16::MAX as i64).contains(&v) {
            2
        } else if (i32::MIN as i64..=i32::MAX as i64).contains(&v) {
            4
        } else {
            8
        }
    };
    8 + count * width(min).max(width(max))
}

/// How a version writes a score as text (`util.c`, `d2string`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreText {
    /// 6.2: integers between ±2^52 as integers, others `%.17g`.
    V6,
    /// 7.0: integers within ±2^62 (`double2ll`) as integers, others `%.17g`.
    V7,
    /// 7.2 on: as 7.0, but the shortest text that reads back (`fpconv_dtoa`).
    V72,
}

/// How a score is stored next to its member in a ziplist or listpack (`t_zset.c`,
/// `zzlInsertAt`). On 6.2 as the text of `d2string`, which the ziplist stores as an
/// integer when it reads as one; from 7.0 an integral score within ±2^62 (`double2ll`)
/// as an integer, else the text of `d2string`.
pub fn score_item(score: f64, text: ScoreText) -> Item {
    if text != ScoreText::V6 {
        if let Some(i) = double2ll(score) {
            return Item::Int(i);
        }
    }
    let s = d2string(score, text);
    match parse_canonical_i64(s.as_bytes()) {
        Some(i) => Item::Int(i),
        None => Item::Bytes(s.len() as u64),
    }
}

/// `util.c`, `double2ll`: an integral double within ±(LLONG_MAX/2).
fn double2ll(d: f64) -> Option<i64> {
    let limit = (i64::MAX / 2) as f64;
    (d >= -limit && d <= limit && d == d.trunc()).then_some(d as i64)
}

/// `util.c`, `d2string`.
pub fn d2string(v: f64, text: ScoreText) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf".into() } else { "inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let int = match text {
        ScoreText::V6 => {
            (v > -4_503_599_627_370_495.0 && v < 4_503_599_627_370_496.0 && v == v.trunc()).then_some(v as i64)
        }
        _ => double2ll(v),
    };
    if let Some(i) = int {
        return i.to_string();
    }
    if text == ScoreText::V72 {
        fpconv_dtoa(v)
    } else {
        printf_g17(v)
    }
}

/// C's `printf("%.17g")`: 17 significant digits, fixed notation for exponents from -4 to
/// 16, else scientific with at least two exponent digits; trailing zeros dropped.
fn printf_g17(v: f64) -> String {
    let sci = format!("{:.16e}", v.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    if digits.is_empty() {
        return sci; // not finite: `d2string` answers those before
    }
    let mut out = String::new();
    if v < 0.0 {
        out.push('-');
    }
    let trim = |s: &[u8]| -> String {
        let end = s.iter().rposition(|&d| d != b'0').map_or(0, |p| p + 1);
        String::from_utf8_lossy(&s[..end]).into_owned()
    };
    if !(-4..17).contains(&exp) {
        out.push(digits[0] as char);
        let frac = trim(&digits[1..]);
        if !frac.is_empty() {
            out.push('.');
            out.push_str(&frac);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        out.push_str(&String::from_utf8_lossy(&digits[..int_len]));
        let frac = trim(&digits[int_len..]);
        if !frac.is_empty() {
            out.push('.');
            out.push_str(&frac);
        }
    } else {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&trim(&digits));
    }
    out
}

/// `deps/fpconv/fpconv_dtoa.c`: the shortest digits that read back exactly (grisu2,
/// shortest in all but rare cases), laid out by `emit_digits`.
fn fpconv_dtoa(v: f64) -> String {
    let sci = format!("{:e}", v.abs());
    let (mant, e) = sci.split_once('e').unwrap_or((&sci, "0"));
    let e: i64 = e.parse().unwrap_or(0);
    let digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    if digits.is_empty() {
        return sci; // not finite: `d2string` answers those before
    }
    let nd = digits.len() as i64;
    // K: the exponent of the last digit.
    let k = e - (nd - 1);
    let exp = (k + nd - 1).abs();
    let neg = v < 0.0;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let text = |d: &[u8]| String::from_utf8_lossy(d).into_owned();
    if k >= 0 && exp < nd + 7 {
        out.push_str(&text(&digits));
        for _ in 0..k {
            out.push('0');
        }
    } else if k < 0 && (k > -7 || exp < 4) {
        let offset = nd - k.abs();
        if offset <= 0 {
            out.push_str("0.");
            for _ in 0..-offset {
                out.push('0');
            }
            out.push_str(&text(&digits));
        } else {
            out.push_str(&text(&digits[..offset as usize]));
            out.push('.');
            out.push_str(&text(&digits[offset as usize..]));
        }
    } else {
        let nd = nd.min(18 - neg as i64) as usize;
        out.push(digits[0] as char);
        if nd > 1 {
            out.push('.');
            out.push_str(&text(&digits[1..nd]));
        }
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        out.push_str(&exp.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listpack_entries() {
        assert_eq!(lp_entry(Item::Int(0)), 2);
        assert_eq!(lp_entry(Item::Int(127)), 2);
        assert_eq!(lp_entry(Item::Int(128)), 3);
        assert_eq!(lp_entry(Item::Int(-4096)), 3);
        assert_eq!(lp_entry(Item::Int(4096)), 4);
        assert_eq!(lp_entry(Item::Int(40000)), 5);
        assert_eq!(lp_entry(Item::Int(1 << 30)), 6);
        assert_eq!(lp_entry(Item::Int(1 << 40)), 10);
        assert_eq!(lp_entry(Item::Bytes(0)), 2);
        assert_eq!(lp_entry(Item::Bytes(10)), 12);
        assert_eq!(lp_entry(Item::Bytes(63)), 65);
        assert_eq!(lp_entry(Item::Bytes(64)), 67);
        assert_eq!(lp_entry(Item::Bytes(125)), 128);
        assert_eq!(lp_entry(Item::Bytes(200)), 204);
        assert_eq!(lp_entry(Item::Bytes(5000)), 5007);
        // 10 strings of 10 bytes: 7 + 10 * 12 (measured: 127 bytes, class 128, on 8.2).
        assert_eq!(listpack((0..10).map(|_| Item::Bytes(10))), 127);
    }

    #[test]
    fn items_of_strings() {
        assert_eq!(item(&Str::Borrowed(b"123")), Item::Int(123));
        assert_eq!(item(&Str::Borrowed(b"0123")), Item::Bytes(4));
        assert_eq!(item(&Str::Borrowed(b"-0")), Item::Bytes(2));
        assert_eq!(item(&Str::Int(-5)), Item::Int(-5));
        assert_eq!(Item::Int(-5).len(), 2);
    }

    #[test]
    fn ziplist_entries_and_prevlen() {
        // Header 10 + end 1; "a" is 1 prevlen + 1 encoding + 1 byte; 7 an immediate.
        assert_eq!(ziplist([Item::Bytes(1), Item::Int(7)]), 11 + 3 + 2);
        // An entry of 254 bytes or more makes the next entry's prevlen 5 bytes.
        assert_eq!(ziplist([Item::Bytes(300), Item::Int(1)]), 11 + (1 + 2 + 300) + (5 + 1));
        assert_eq!(
            ziplist([Item::Int(100), Item::Int(1000), Item::Int(100000), Item::Int(1 << 40)]),
            11 + 3 + 4 + 5 + 10
        );
    }

    #[test]
    fn intsets() {
        assert_eq!(intset_bytes(10, 0, 9), 28);
        assert_eq!(intset_bytes(3, -5, 100000), 20);
        assert_eq!(intset_bytes(2, 1, 1 << 40), 24);
    }

    #[test]
    fn scores_as_text() {
        assert_eq!(printf_g17(0.1), "0.10000000000000001");
        assert_eq!(printf_g17(2.5), "2.5");
        assert_eq!(printf_g17(1e300), "1.0000000000000001e+300");
        assert_eq!(printf_g17(-1.5e-7), "-1.4999999999999999e-07");
        assert_eq!(printf_g17(123456.789), "123456.789");
        assert_eq!(fpconv_dtoa(0.1), "0.1");
        assert_eq!(fpconv_dtoa(1e300), "1e+300");
        assert_eq!(fpconv_dtoa(-2.5), "-2.5");
        assert_eq!(fpconv_dtoa(1.5e-7), "1.5e-7");
        assert_eq!(fpconv_dtoa(0.000123), "0.000123");
        assert_eq!(fpconv_dtoa(56.857142857142854), "56.857142857142854");
        assert_eq!(d2string(3.0, ScoreText::V6), "3");
        assert_eq!(d2string(-0.0, ScoreText::V72), "-0");
        assert_eq!(d2string(f64::NEG_INFINITY, ScoreText::V72), "-inf");
        assert_eq!(d2string(1e17, ScoreText::V6), "1e+17");
        assert_eq!(d2string(1e17, ScoreText::V7), "100000000000000000");
        assert_eq!(score_item(9007199254740992.0, ScoreText::V72), Item::Int(9007199254740992));
        // 6.2 prints 2^53 with %.17g, and the ziplist reads the text back as an integer.
        assert_eq!(score_item(9007199254740992.0, ScoreText::V6), Item::Int(9007199254740992));
        assert_eq!(score_item(0.1, ScoreText::V7), Item::Bytes(19));
        assert_eq!(score_item(0.1, ScoreText::V72), Item::Bytes(3));
        assert_eq!(score_item(2.0, ScoreText::V6), Item::Int(2));
        assert_eq!(score_item(-0.0, ScoreText::V6), Item::Bytes(2));
        assert_eq!(score_item(-0.0, ScoreText::V7), Item::Int(0));
        // Never reached with these, but no panic either.
        assert_eq!(fpconv_dtoa(f64::NAN), "NaN");
        assert_eq!(printf_g17(f64::INFINITY), "inf");
    }
}
