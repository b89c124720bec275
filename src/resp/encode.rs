//! Encoding commands as RESP arrays of bulk strings, straight into a caller's buffer.
//! The caller knows the argument count before it writes the first argument.

use crate::rdb::{Str, StreamId};

/// `*<n>\r\n`
#[inline]
pub fn array_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `$<len>\r\n<bytes>\r\n`
#[inline]
pub fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(itoa::Buffer::new().format(b.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

#[inline]
pub fn bulk_int(out: &mut Vec<u8>, v: i64) {
    bulk(out, itoa::Buffer::new().format(v).as_bytes());
}

#[inline]
pub fn bulk_u64(out: &mut Vec<u8>, v: u64) {
    bulk(out, itoa::Buffer::new().format(v).as_bytes());
}

#[inline]
pub fn bulk_str(out: &mut Vec<u8>, s: &Str<'_>) {
    match s {
        Str::Borrowed(b) => bulk(out, b),
        Str::Owned(v) => bulk(out, v),
        Str::Shared(v, r) => bulk(out, &v[r.clone()]),
        Str::Int(i) => bulk_int(out, *i),
        Str::Lzf { len, .. } => {
            out.push(b'$');
            out.extend_from_slice(itoa::Buffer::new().format(*len).as_bytes());
            out.extend_from_slice(b"\r\n");
            s.append_to(out);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A score in the shortest form that reads back as the same double (`inf`, `-inf` too).
#[inline]
pub fn bulk_score(out: &mut Vec<u8>, v: f64) {
    bulk(out, crate::output::score_text(v, &mut ryu::Buffer::new()).as_bytes());
}

pub fn bulk_id(out: &mut Vec<u8>, id: StreamId) {
    let mut buf = [0u8; 41];
    let mut n = 0;
    for part in [itoa::Buffer::new().format(id.ms).as_bytes(), b"-", itoa::Buffer::new().format(id.seq).as_bytes()] {
        buf[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    bulk(out, &buf[..n]);
}

/// A whole command from plain arguments.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    array_header(out, args.len());
    for a in args {
        bulk(out, a);
    }
}

/// `SELECT db`: the one place a database switch is encoded.
pub fn select(out: &mut Vec<u8>, db: u64) {
    array_header(out, 2);
    bulk(out, b"SELECT");
    bulk_u64(out, db);
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_exactly() {
        let mut out = Vec::new();
        super::command(&mut out, &[b"SET", b"k", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        out.clear();
        super::bulk_score(&mut out, 0.1);
        super::bulk_score(&mut out, f64::NEG_INFINITY);
        super::bulk_id(&mut out, crate::rdb::StreamId { ms: 12, seq: 3 });
        assert_eq!(out, b"$3\r\n0.1\r\n$4\r\n-inf\r\n$4\r\n12-3\r\n");
    }
}
