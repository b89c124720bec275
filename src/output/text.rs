//! Human-readable rendering: one line per key, strings quoted the way `redis-cli` quotes
//! them (printable ASCII as is, `\n`, `\r`, `\t`, `\"`, `\\`, other bytes as `\xHH`).

use crate::rdb::{Record, Str, Value};

pub fn write_record(out: &mut Vec<u8>, rec: &Record<'_>) {
    out.extend_from_slice(b"db=");
    out.extend_from_slice(itoa::Buffer::new().format(rec.db).as_bytes());
    out.extend_from_slice(b" type=");
    out.extend_from_slice(rec.value.value_type().name().as_bytes());
    out.extend_from_slice(b" key=");
    write_quoted(out, &rec.key.bytes());
    if let Some(t) = rec.expire_at_ms {
        out.extend_from_slice(b" expire_at_ms=");
        out.extend_from_slice(itoa::Buffer::new().format(t).as_bytes());
    }
    out.extend_from_slice(b" value=");
    match &rec.value {
        Value::String(s) => write_quoted(out, &s.bytes()),
        Value::List(items) | Value::Set(items) => write_list(out, items.iter()),
        Value::ZSet(items) => {
            out.push(b'{');
            for (i, (m, score)) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_quoted(out, &m.bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(super::score_text(*score, &mut ryu::Buffer::new()).as_bytes());
            }
            out.push(b'}');
        }
        Value::Hash(fields) => {
            out.push(b'{');
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_quoted(out, &f.field.bytes());
                out.extend_from_slice(b": ");
                write_quoted(out, &f.value.bytes());
                if let Some(t) = f.expire_at_ms {
                    out.extend_from_slice(b" (expire_at_ms=");
                    out.extend_from_slice(itoa::Buffer::new().format(t).as_bytes());
                    out.push(b')');
                }
            }
            out.push(b'}');
        }
        Value::Stream(s) => {
            out.extend_from_slice(
                format!("stream of {} entries, last id {}, {} groups", s.entries.len(), s.last_id, s.groups.len())
                    .as_bytes(),
            );
        }
        Value::Module(m) => {
            out.extend_from_slice(format!("module {} (encver {}, {} bytes)", m.name, m.encver, m.raw.len()).as_bytes());
        }
    }
    out.push(b'\n');
}

fn write_list<'s, 'a: 's>(out: &mut Vec<u8>, items: impl Iterator<Item = &'s Str<'a>>) {
    out.push(b'[');
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        write_quoted(out, &s.bytes());
    }
    out.push(b']');
}

pub fn write_quoted(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &c in b {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x20..=0x7e => out.push(c),
            _ => out.extend_from_slice(&[b'\\', b'x', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]),
        }
    }
    out.push(b'"');
}
