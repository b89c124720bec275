//! JSON lines as README.md ("JSON lines") describes them: one object per key,
//! `{"db":0,"key":K,"type":"hash","expire_at_ms":null,"value":V}`. Byte strings are JSON
//! strings when valid UTF-8, else `{"base64":"…"}`; scores JSON cannot hold and stream
//! IDs are strings. Written by hand into one buffer: no intermediate tree, no allocation
//! per field.

use base64::Engine;

use crate::rdb::{ConsumerGroup, Function, Record, Str, Stream, StreamId, Value};

pub fn write_record(out: &mut Vec<u8>, rec: &Record<'_>) {
    out.extend_from_slice(b"{\"db\":");
    write_u64(out, rec.db);
    out.extend_from_slice(b",\"key\":");
    write_str(out, &rec.key);
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(rec.value.value_type().name().as_bytes());
    out.extend_from_slice(b"\",\"expire_at_ms\":");
    write_opt_i64(out, rec.expire_at_ms);
    if let Some(idle) = rec.idle_s {
        out.extend_from_slice(b",\"idle_s\":");
        write_u64(out, idle);
    }
    if let Some(freq) = rec.freq {
        out.extend_from_slice(b",\"freq\":");
        write_u64(out, freq as u64);
    }
    out.extend_from_slice(b",\"value\":");
    write_value(out, &rec.value);
    out.extend_from_slice(b"}\n");
}

/// A function library (or pre-GA function) line: `{"function":{...}}`.
pub fn write_function(out: &mut Vec<u8>, f: &Function<'_>) {
    out.extend_from_slice(b"{\"function\":{");
    match f {
        Function::Library { code } => {
            out.extend_from_slice(b"\"code\":");
            write_str(out, code);
        }
        Function::PreGa { name, engine, description, code } => {
            out.extend_from_slice(b"\"name\":");
            write_str(out, name);
            out.extend_from_slice(b",\"engine\":");
            write_str(out, engine);
            out.extend_from_slice(b",\"description\":");
            match description {
                Some(d) => write_str(out, d),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"code\":");
            write_str(out, code);
        }
    }
    out.extend_from_slice(b"}}\n");
}

/// A Lua script from the `lua` AUX field (Redis 5.0–6.2 script cache): `{"script":"…"}`.
pub fn write_script(out: &mut Vec<u8>, body: &Str<'_>) {
    out.extend_from_slice(b"{\"script\":");
    write_str(out, body);
    out.extend_from_slice(b"}\n");
}

fn write_value(out: &mut Vec<u8>, v: &Value<'_>) {
    match v {
        Value::String(s) => write_str(out, s),
        Value::List(items) | Value::Set(items) => {
            out.push(b'[');
            for (i, s) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, s);
            }
            out.push(b']');
        }
        Value::ZSet(items) => {
            out.push(b'[');
            for (i, (m, score)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                write_str(out, m);
                out.push(b',');
                write_score(out, *score);
                out.push(b']');
            }
            out.push(b']');
        }
        Value::Hash(fields) => {
            out.push(b'[');
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                write_str(out, &f.field);
                out.push(b',');
                write_str(out, &f.value);
                if let Some(t) = f.expire_at_ms {
                    out.push(b',');
                    write_i64(out, t);
                }
                out.push(b']');
            }
            out.push(b']');
        }
        Value::Stream(s) => write_stream(out, s),
        Value::Module(m) => {
            out.extend_from_slice(b"{\"module\":");
            write_text(out, m.name.as_bytes());
            out.extend_from_slice(b",\"encver\":");
            write_u64(out, m.encver);
            out.extend_from_slice(b",\"raw\":\"");
            write_base64(out, m.raw);
            out.extend_from_slice(b"\"}");
        }
    }
}

fn write_stream(out: &mut Vec<u8>, s: &Stream<'_>) {
    out.extend_from_slice(b"{\"entries\":[");
    for (i, e) in s.entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        write_id(out, e.id);
        out.extend_from_slice(b",\"fields\":[");
        for (k, (f, v)) in e.fields.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.push(b'[');
            write_str(out, f);
            out.push(b',');
            write_str(out, v);
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"],\"length\":");
    write_u64(out, s.length);
    out.extend_from_slice(b",\"last_id\":");
    write_id(out, s.last_id);
    out.extend_from_slice(b",\"first_id\":");
    write_opt_id(out, s.first_id);
    out.extend_from_slice(b",\"max_deleted_id\":");
    write_opt_id(out, s.max_deleted_id);
    out.extend_from_slice(b",\"entries_added\":");
    write_opt_u64(out, s.entries_added);
    out.extend_from_slice(b",\"groups\":[");
    for (i, g) in s.groups.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_group(out, g);
    }
    out.push(b']');
    if let Some(idmp) = &s.idmp {
        out.extend_from_slice(b",\"idmp\":{\"duration_s\":");
        write_u64(out, idmp.duration_s);
        out.extend_from_slice(b",\"max_entries\":");
        write_u64(out, idmp.max_entries);
        out.extend_from_slice(b",\"producers\":[");
        for (i, (pid, iids)) in idmp.producers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"producer\":");
            write_str(out, pid);
            out.extend_from_slice(b",\"iids\":[");
            for (k, (iid, id)) in iids.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                write_str(out, iid);
                out.push(b',');
                write_id(out, *id);
                out.push(b']');
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"],\"iids_added\":");
        write_u64(out, idmp.iids_added);
        out.extend_from_slice(b",\"iids_duplicates\":");
        write_u64(out, idmp.iids_duplicates);
        out.push(b'}');
    }
    out.push(b'}');
}

fn write_group(out: &mut Vec<u8>, g: &ConsumerGroup<'_>) {
    out.extend_from_slice(b"{\"name\":");
    write_str(out, &g.name);
    out.extend_from_slice(b",\"last_delivered_id\":");
    write_id(out, g.last_delivered_id);
    out.extend_from_slice(b",\"entries_read\":");
    write_opt_u64(out, g.entries_read);
    let owner: std::collections::HashMap<StreamId, &Str<'_>> =
        g.consumers.iter().flat_map(|c| c.pending.iter().map(move |id| (*id, &c.name))).collect();
    out.extend_from_slice(b",\"pending\":[");
    for (i, p) in g.pending.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        write_id(out, p.id);
        out.extend_from_slice(b",\"consumer\":");
        match owner.get(&p.id) {
            Some(name) => write_str(out, name),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"delivery_time_ms\":");
        write_i64(out, p.delivery_time_ms);
        out.extend_from_slice(b",\"delivery_count\":");
        write_u64(out, p.delivery_count);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"consumers\":[");
    for (i, c) in g.consumers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        write_str(out, &c.name);
        out.extend_from_slice(b",\"seen_time_ms\":");
        write_i64(out, c.seen_time_ms);
        out.extend_from_slice(b",\"active_time_ms\":");
        write_opt_i64(out, c.active_time_ms);
        out.extend_from_slice(b",\"pending\":[");
        for (k, id) in c.pending.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            write_id(out, *id);
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
}

thread_local! {
    /// Where compressed strings are expanded before escaping, reused from one to the next.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A Redis string: JSON text if valid UTF-8, else `{"base64":"…"}`.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &Str<'_>) {
    match s {
        Str::Borrowed(b) => write_bytes(out, b),
        Str::Owned(v) => write_bytes(out, v),
        Str::Shared(v, r) => write_bytes(out, &v[r.clone()]),
        Str::Lzf { .. } => SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            s.append_to(&mut scratch);
            write_bytes(out, &scratch);
            if scratch.capacity() > 16 << 20 {
                *scratch = Vec::new(); // do not keep a huge value's buffer for the rest of the run
            }
        }),
        Str::Int(i) => {
            out.push(b'"');
            out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes());
            out.push(b'"');
        }
    }
}

#[inline]
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    if plain_ascii(b) {
        // The common case: printable ASCII needs neither UTF-8 validation nor escapes.
        out.reserve(b.len() + 2);
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
    } else if std::str::from_utf8(b).is_ok() {
        write_text(out, b);
    } else {
        out.extend_from_slice(b"{\"base64\":\"");
        write_base64(out, b);
        out.extend_from_slice(b"\"}");
    }
}

fn write_base64(out: &mut Vec<u8>, b: &[u8]) {
    let start = out.len();
    let n = base64::encoded_len(b.len(), true).unwrap_or(0);
    out.resize(start + n, 0);
    let written = base64::engine::general_purpose::STANDARD.encode_slice(b, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

/// True when every byte is ASCII that JSON takes as is (no control, quote or backslash).
/// Eight bytes at a time, as one word.
fn plain_ascii(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        if care_bits(u64::from_le_bytes(a), true) != 0 {
            return false;
        }
    }
    !words.remainder().iter().any(|&c| (c < 0x20) | (c == b'"') | (c == b'\\') | (c >= 0x80))
}

/// The first byte at or after `from` that JSON must escape (a control byte, quote or
/// backslash), or `b.len()`: eight bytes at a time, the lowest flagged byte of a word
/// being exactly the first such byte in it.
fn next_special(b: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(w) = b.get(i..i + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let hits = care_bits(u64::from_le_bytes(a), false);
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !((b[i] < 0x20) | (b[i] == b'"') | (b[i] == b'\\')) {
        i += 1;
    }
    i
}

/// Bit 7 of each byte of `w` that is below 0x20, a quote or a backslash (or, with
/// `high`, 0x80 or above), by the zero-byte tricks: a byte above a flagged one may be
/// flagged too (a borrow), but the lowest flag is always exact, and so is "none".
#[inline(always)]
fn care_bits(w: u64, high: bool) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte below n: (byte - n) borrows into bit 7 where bit 7 of the byte was clear.
    let below = |n: u8| w.wrapping_sub(ONES * n as u64) & !w & HIGH;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let hits = below(0x20) | zero(w ^ (ONES * b'"' as u64)) | zero(w ^ (ONES * b'\\' as u64));
    if high {
        hits | (w & HIGH)
    } else {
        hits
    }
}

/// Writes valid UTF-8 as a JSON string, escaping what JSON requires.
fn write_text(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(b.len() + 2);
    out.push(b'"');
    // Runs between the bytes that need escaping are copied whole (most strings are one
    // such run).
    let mut run = 0;
    let mut i = next_special(b, 0);
    while i < b.len() {
        let c = b[i];
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => b"",
        };
        out.extend_from_slice(&b[run..i]);
        if esc.is_empty() {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
        } else {
            out.extend_from_slice(esc);
        }
        run = i + 1;
        i = next_special(b, run);
    }
    out.extend_from_slice(&b[run..]);
    out.push(b'"');
}

/// A score: the shortest decimal that reads back as the same double; `inf`, `-inf`,
/// `nan` as strings.
pub fn write_score(out: &mut Vec<u8>, v: f64) {
    let mut buf = ryu::Buffer::new();
    let text = super::score_text(v, &mut buf);
    if v.is_finite() {
        out.extend_from_slice(text.as_bytes());
    } else {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

fn write_id(out: &mut Vec<u8>, id: StreamId) {
    out.push(b'"');
    out.extend_from_slice(itoa::Buffer::new().format(id.ms).as_bytes());
    out.push(b'-');
    out.extend_from_slice(itoa::Buffer::new().format(id.seq).as_bytes());
    out.push(b'"');
}

fn write_opt_id(out: &mut Vec<u8>, id: Option<StreamId>) {
    match id {
        Some(id) => write_id(out, id),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn write_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn write_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => write_u64(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_opt_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => write_i64(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn strings_are_escaped_or_base64() {
        let mut out = Vec::new();
        super::write_bytes(&mut out, b"plain");
        super::write_bytes(&mut out, b"a\"b\\c\nd\x01");
        super::write_bytes(&mut out, b"\xff\x00");
        assert_eq!(out, br#""plain""a\"b\\c\nd\u0001"{"base64":"/wA="}"#);
        let back: Vec<serde_json::Value> =
            serde_json::Deserializer::from_slice(&out).into_iter().map(Result::unwrap).collect();
        assert_eq!(back[1], "a\"b\\c\nd\u{1}");
    }

    /// The word-at-a-time scans agree with byte-by-byte ones, wherever the byte is.
    #[test]
    fn word_scans_agree_with_bytes() {
        let special = |c: u8| (c < 0x20) | (c == b'"') | (c == b'\\');
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = (rng % 21) as usize;
            let mut b: Vec<u8> = (0..len).map(|i| b'a' + ((rng >> (i % 8)) % 26) as u8).collect();
            if len > 0 {
                let at = (rng >> 24) as usize % len;
                b[at] = (rng >> 32) as u8;
                if rng & (1 << 40) != 0 {
                    b[(rng >> 44) as usize % len] = (rng >> 52) as u8;
                }
            }
            assert_eq!(super::plain_ascii(&b), !b.iter().any(|&c| special(c) || c >= 0x80), "{b:?}");
            for from in 0..=b.len() {
                let want = (from..b.len()).find(|&i| special(b[i])).unwrap_or(b.len());
                assert_eq!(super::next_special(&b, from), want, "{b:?} from {from}");
            }
        }
    }
}
