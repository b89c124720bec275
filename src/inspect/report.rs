//! An inspection's report as people and machines read it: aligned tables, one JSON
//! document (schema `redis-migration-inspect/1`, documented in the README), CSV of each
//! table, folded stacks of memory by prefix, and the per-key rows of `--keys`.

use std::fmt::Write as _;

use serde_json::{json, Value as J};

use super::prefix::NodeRef;
use super::{BigKey, KeyRow, Report, Tally, TTL_BINS};
use crate::output::json::write_bytes;

/// The schema of the JSON document.
pub const SCHEMA: &str = "redis-migration-inspect/1";

/// How many children of a prefix node are shown; the rest, and those under 0.5% of their
/// parent's memory, are folded into `(other)`.
const SHOWN_CHILDREN: usize = 50;

/// A key as JSON: a string when it is UTF-8, else `{"base64": …}` (as `print` writes it).
fn key_json(key: &[u8]) -> J {
    let mut buf = Vec::new();
    write_bytes(&mut buf, key);
    serde_json::from_slice(&buf).unwrap_or(J::Null)
}

fn tally_json(t: &Tally) -> J {
    json!({"keys": t.keys, "elements": t.elements, "memory_bytes": t.memory_bytes})
}

fn big_json(k: &BigKey) -> J {
    json!({
        "db": k.db, "key": key_json(&k.key), "type": k.kind, "encoding": k.encoding,
        "elements": k.elements, "memory_bytes": k.memory_bytes, "largest_element": k.largest_element,
        "expire_at_ms": k.expire_at_ms,
    })
}

/// The children of `node` as shown: the biggest first, small ones folded into `(other)`.
fn shown_children(node: NodeRef<'_>) -> Vec<(String, NodeRef<'_>, Option<super::prefix::Totals>)> {
    let mut kids: Vec<NodeRef<'_>> = node.children().collect();
    kids.sort_by(|a, b| b.totals().memory_bytes.cmp(&a.totals().memory_bytes).then(a.name().cmp(b.name())));
    let floor = node.totals().memory_bytes / 200;
    let mut out = Vec::new();
    let mut other = super::prefix::Totals::default();
    for (i, n) in kids.into_iter().enumerate() {
        let t = n.totals();
        if n.name() == super::prefix::OTHER || i >= SHOWN_CHILDREN || t.memory_bytes < floor {
            other.keys += t.keys;
            other.memory_bytes += t.memory_bytes;
            other.no_ttl_bytes += t.no_ttl_bytes;
        } else {
            out.push((crate::rdb::escape_key(n.name()), n, None));
        }
    }
    if other.keys > 0 {
        out.push(("(other)".to_string(), node, Some(other)));
    }
    out
}

/// A node as JSON: `prefix` is the whole path from the root (`user:{n}:`), or the
/// parent's path and `(other)`.
fn prefix_json(name: &str, node: NodeRef<'_>, folded: Option<super::prefix::Totals>, depth: usize) -> J {
    let t = folded.unwrap_or(node.totals());
    let children: Vec<J> = if folded.is_some() || depth > super::prefix::MAX_DEPTH {
        Vec::new()
    } else {
        shown_children(node).into_iter().map(|(n, c, f)| prefix_json(&format!("{name}{n}"), c, f, depth + 1)).collect()
    };
    json!({"prefix": name, "keys": t.keys, "memory_bytes": t.memory_bytes, "no_ttl_bytes": t.no_ttl_bytes, "children": children})
}

/// The TTL bins' names, in order.
fn ttl_labels() -> Vec<&'static str> {
    let mut l: Vec<&str> = TTL_BINS.iter().map(|(n, _)| *n).collect();
    l.push("no expiry");
    l
}

impl Report {
    /// Keys and memory of the live keys.
    pub fn totals(&self) -> Tally {
        let mut t = Tally::default();
        for ty in self.types.values() {
            t.add(&ty.all);
        }
        t
    }

    /// The JSON document.
    pub fn json(&self) -> J {
        let totals = self.totals();
        let files: Vec<J> = self
            .files
            .iter()
            .map(|f| {
                json!({
                    "name": f.name, "format": f.format,
                    "aux": f.aux.iter().map(|(k, v)| (k.clone(), J::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
                    "bytes": f.bytes, "snapshot": f.snapshot, "log_not_applied": f.log_not_applied,
                    "target_version": f.target.map(|v| v.to_string()),
                    "keys": f.keys, "memory_bytes": f.memory_bytes,
                })
            })
            .collect();
        let dbs: serde_json::Map<String, J> = self
            .dbs
            .iter()
            .map(|(db, d)| {
                let overhead = self.overhead.get(db).copied().unwrap_or(0);
                (
                    db.to_string(),
                    json!({
                        "keys": d.keys, "expires": d.expires, "expired": d.expired,
                        "live": {"keys": d.keys - d.expired, "expires": d.live_expires},
                        "memory_bytes": d.memory_bytes, "overhead_bytes": overhead,
                    }),
                )
            })
            .collect();
        let types: serde_json::Map<String, J> = self
            .types
            .iter()
            .map(|(k, t)| {
                let mut v = tally_json(&t.all);
                v["encodings"] = t.encodings.iter().map(|(e, x)| (e.to_string(), tally_json(x))).collect();
                (k.to_string(), v)
            })
            .collect();
        let bins = |h: &std::collections::BTreeMap<u64, u64>| -> Vec<J> {
            h.iter().map(|(bin, n)| json!({"bin": bin, "keys": n})).collect()
        };
        let keysizes: serde_json::Map<String, J> = self
            .keysizes
            .iter()
            .map(|(db, kinds)| {
                let kinds: serde_json::Map<String, J> = kinds
                    .iter()
                    .map(|(k, h)| (k.to_string(), h.iter().map(|(b, n)| (b.to_string(), J::from(*n))).collect()))
                    .collect();
                (db.to_string(), J::Object(kinds))
            })
            .collect();
        json!({
            "schema": SCHEMA,
            "files": files,
            "target_version": self.files.first().and_then(|f| f.target).map(|v| v.to_string()),
            "now_ms": self.now_ms,
            "keys": totals.keys,
            "memory_bytes": totals.memory_bytes,
            "expired": {"keys": self.expired.keys, "memory_bytes": self.expired.memory_bytes},
            "expired_fields": self.expired_fields,
            "filtered": self.filtered,
            "empty": self.empty,
            "dbs": dbs,
            "types": types,
            "top": self.top.iter().map(big_json).collect::<Vec<_>>(),
            "prefixes": prefix_json("", self.prefixes.root(), None, 0),
            "ttl": {"bins": ttl_labels().iter().zip(&self.ttl).map(|(l, t)| json!({"label": l, "keys": t.keys, "memory_bytes": t.memory_bytes})).collect::<Vec<_>>()},
            "sizes": {"elements": bins(&self.elements), "value_bytes": bins(&self.value_bytes)},
            "keysizes": keysizes,
            "big_keys_total": self.big_keys_total,
            "big_keys": self.big_keys.iter().map(|(k, c)| { let mut v = big_json(k); v["commands"] = (*c).into(); v }).collect::<Vec<_>>(),
        })
    }

    /// Aligned tables for people.
    pub fn text(&self) -> String {
        let mut o = String::new();
        for f in &self.files {
            let _ = writeln!(
                o,
                "file: {} ({}, {}), sized for Redis {}",
                f.name,
                f.format,
                human(f.bytes),
                f.target.map_or("?".into(), |v| v.to_string())
            );
            let keep = ["redis-ver", "ctime", "used-mem", "aof-base", "repl-id"];
            for (k, v) in f.aux.iter().filter(|(k, _)| keep.contains(&k.as_str())) {
                let _ = writeln!(o, "  {k}: {v}");
            }
            if !f.snapshot {
                let _ = writeln!(o, "  no snapshot part (a command log, or empty): its commands are not applied");
            } else if f.log_not_applied {
                let _ = writeln!(o, "  the AOF commands after the snapshot are not applied");
            }
        }
        let t = self.totals();
        let _ = writeln!(
            o,
            "\nkeys: {} live ({}), {} expired ({}), {} hash fields expired; left out: {} by filters, {} empty",
            t.keys,
            human(t.memory_bytes),
            self.expired.keys,
            human(self.expired.memory_bytes),
            self.expired_fields,
            self.filtered,
            self.empty
        );
        let mut rows = vec![vec![
            "db".into(),
            "keys".into(),
            "expires".into(),
            "expired".into(),
            "memory".into(),
            "overhead".into(),
        ]];
        for (db, d) in &self.dbs {
            let oh = self.overhead.get(db).copied().unwrap_or(0);
            rows.push(vec![
                db.to_string(),
                d.keys.to_string(),
                d.expires.to_string(),
                d.expired.to_string(),
                human(d.memory_bytes),
                human(oh),
            ]);
        }
        table(&mut o, &rows);
        let mut rows = vec![vec!["type".into(), "encoding".into(), "keys".into(), "elements".into(), "memory".into()]];
        for (k, ty) in &self.types {
            rows.push(vec![
                k.to_string(),
                String::new(),
                ty.all.keys.to_string(),
                ty.all.elements.to_string(),
                human(ty.all.memory_bytes),
            ]);
            for (e, x) in &ty.encodings {
                rows.push(vec![
                    String::new(),
                    e.to_string(),
                    x.keys.to_string(),
                    x.elements.to_string(),
                    human(x.memory_bytes),
                ]);
            }
        }
        table(&mut o, &rows);
        let mut rows = vec![vec![
            "biggest keys".into(),
            "db".into(),
            "type".into(),
            "encoding".into(),
            "elements".into(),
            "memory".into(),
            "expiry".into(),
        ]];
        for k in &self.top {
            rows.push(vec![
                crate::rdb::escape_key(&k.key),
                k.db.to_string(),
                k.kind.to_string(),
                k.encoding.to_string(),
                k.elements.to_string(),
                human(k.memory_bytes),
                k.expire_at_ms.map_or(String::new(), iso_time),
            ]);
        }
        table(&mut o, &rows);
        let mut rows = vec![vec!["prefix".into(), "keys".into(), "memory".into(), "without ttl".into()]];
        prefix_rows(self.prefixes.root(), "", 0, &mut rows);
        table(&mut o, &rows);
        let mut rows = vec![vec!["time to live".into(), "keys".into(), "memory".into()]];
        for (l, x) in ttl_labels().iter().zip(&self.ttl) {
            rows.push(vec![l.to_string(), x.keys.to_string(), human(x.memory_bytes)]);
        }
        table(&mut o, &rows);
        if !self.big_keys.is_empty() {
            let mut rows = vec![vec![
                "big keys".into(),
                "db".into(),
                "type".into(),
                "elements".into(),
                "memory".into(),
                "commands".into(),
            ]];
            for (k, c) in &self.big_keys {
                rows.push(vec![
                    crate::rdb::escape_key(&k.key),
                    k.db.to_string(),
                    k.kind.into(),
                    k.elements.to_string(),
                    human(k.memory_bytes),
                    c.to_string(),
                ]);
            }
            table(&mut o, &rows);
        }
        o
    }

    /// Each table as CSV, one after the other, each row led by its table's name: `db`,
    /// `type`, `encoding`, `top`, `big_key`, `prefix` (every node of the tree, its path as
    /// the keys' bytes), `ttl`, `elements`, `value_bytes`, `keysizes`. Keys and prefixes are
    /// written as their bytes, quoted as `--keys` quotes them (`csv_field`).
    pub fn csv(&self) -> Vec<u8> {
        let mut o = b"table,name,detail,keys,elements,memory_bytes\n".to_vec();
        let line = |o: &mut Vec<u8>, table: &str, name: &[u8], rest: std::fmt::Arguments<'_>| {
            o.extend_from_slice(table.as_bytes());
            o.push(b',');
            csv_field(o, name);
            o.extend_from_slice(std::fmt::format(rest).as_bytes());
            o.push(b'\n');
        };
        for (db, d) in &self.dbs {
            let name = db.to_string();
            line(
                &mut o,
                "db",
                name.as_bytes(),
                format_args!(",expires={} expired={},{},,{}", d.expires, d.expired, d.keys, d.memory_bytes),
            );
        }
        for (k, ty) in &self.types {
            line(
                &mut o,
                "type",
                k.as_bytes(),
                format_args!(",,{},{},{}", ty.all.keys, ty.all.elements, ty.all.memory_bytes),
            );
            for (e, x) in &ty.encodings {
                line(
                    &mut o,
                    "encoding",
                    k.as_bytes(),
                    format_args!(",{e},{},{},{}", x.keys, x.elements, x.memory_bytes),
                );
            }
        }
        for k in &self.top {
            line(
                &mut o,
                "top",
                &k.key,
                format_args!(",{} {} {},1,{},{}", k.db, k.kind, k.encoding, k.elements, k.memory_bytes),
            );
        }
        for (k, c) in &self.big_keys {
            line(
                &mut o,
                "big_key",
                &k.key,
                format_args!(",{} {} {} commands={},1,{},{}", k.db, k.kind, k.encoding, c, k.elements, k.memory_bytes),
            );
        }
        fn prefixes(node: NodeRef<'_>, path: &mut Vec<u8>, rows: &mut Vec<(Vec<u8>, super::prefix::Totals)>) {
            let mut kids: Vec<NodeRef<'_>> = node.children().collect();
            kids.sort_by(|a, b| a.name().cmp(b.name()));
            for c in kids {
                let at = path.len();
                path.extend_from_slice(c.name());
                rows.push((path.clone(), c.totals()));
                prefixes(c, path, rows);
                path.truncate(at);
            }
        }
        let mut rows = Vec::new();
        prefixes(self.prefixes.root(), &mut Vec::new(), &mut rows);
        for (path, t) in rows {
            line(
                &mut o,
                "prefix",
                &path,
                format_args!(",no_ttl_bytes={},{},,{}", t.no_ttl_bytes, t.keys, t.memory_bytes),
            );
        }
        for (l, x) in ttl_labels().iter().zip(&self.ttl) {
            line(&mut o, "ttl", l.as_bytes(), format_args!(",,{},{},{}", x.keys, x.elements, x.memory_bytes));
        }
        for (le, n) in &self.elements {
            line(&mut o, "elements", le.to_string().as_bytes(), format_args!(",,{n},,"));
        }
        for (le, n) in &self.value_bytes {
            line(&mut o, "value_bytes", le.to_string().as_bytes(), format_args!(",,{n},,"));
        }
        for (db, kinds) in &self.keysizes {
            for (kind, bins) in kinds {
                for (bin, n) in bins {
                    line(&mut o, "keysizes", kind.as_bytes(), format_args!(",db={db} bin={bin},{n},,"));
                }
            }
        }
        o
    }

    /// Folded stacks of memory by prefix (`a;b;c bytes`), for flamegraph.pl and inferno:
    /// each node's own share (keys that end there, or folded into it).
    pub fn folded(&self, out: &mut String) {
        fn walk(node: NodeRef<'_>, path: &mut Vec<String>, out: &mut String) {
            let below: u64 = node.children().map(|c| c.totals().memory_bytes).sum();
            let own = node.totals().memory_bytes.saturating_sub(below);
            if own > 0 {
                // The empty key ends at the root.
                let frames = if path.is_empty() { "(empty key)".to_string() } else { path.join(";") };
                let _ = writeln!(out, "{frames} {own}");
            }
            let mut kids: Vec<NodeRef<'_>> = node.children().collect();
            kids.sort_by(|a, b| a.name().cmp(b.name()));
            for c in kids {
                path.push(crate::rdb::escape_key(c.name()).replace([';', ' '], "_"));
                walk(c, path, out);
                path.pop();
            }
        }
        walk(self.prefixes.root(), &mut Vec::new(), out);
    }
}

fn prefix_rows(node: NodeRef<'_>, path: &str, depth: usize, rows: &mut Vec<Vec<String>>) {
    for (name, child, folded) in shown_children(node).into_iter().take(12) {
        let t = folded.unwrap_or(child.totals());
        let full = format!("{path}{name}");
        rows.push(vec![
            format!("{}{full}", "  ".repeat(depth)),
            t.keys.to_string(),
            human(t.memory_bytes),
            human(t.no_ttl_bytes),
        ]);
        if folded.is_none() && depth < 2 {
            prefix_rows(child, &full, depth + 1, rows);
        }
    }
}

/// Writes `rows` as columns aligned (numbers to the right), with a blank line before.
fn table(o: &mut String, rows: &[Vec<String>]) {
    if rows.len() < 2 {
        return;
    }
    let cols = rows[0].len();
    let width: Vec<usize> = (0..cols).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    o.push('\n');
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let pad = width[c] - cell.chars().count();
            let numeric = c > 0 && cell.chars().next().is_some_and(|ch| ch.is_ascii_digit());
            if c > 0 {
                line.push_str("  ");
            }
            if numeric {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
        }
        o.push_str(line.trim_end());
        o.push('\n');
    }
}

/// Bytes for people: B, KB, MB, GB (powers of 1024, one decimal).
pub fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A time as Python's `datetime.isoformat()` writes a UTC time: `2024-05-01T12:00:00`,
/// with `.ffffff` when there are microseconds (the form redis-rdb-tools' CSV has).
pub fn iso_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let micros = ms.rem_euclid(1000) * 1000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    let mut s = format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    if micros > 0 {
        let _ = write!(s, ".{micros:06}");
    }
    s
}

/// A CSV field: the bytes as they are, quoted (RFC 4180) when they hold a comma, a quote,
/// CR or LF, a quote doubled inside; the one quoting of `--keys` rows and `--format csv`.
pub fn csv_field(out: &mut Vec<u8>, b: &[u8]) {
    if b.iter().any(|c| matches!(c, b',' | b'"' | b'\r' | b'\n')) {
        out.push(b'"');
        for &c in b {
            if c == b'"' {
                out.push(b'"');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(b);
    }
}

/// The header of `--keys`: redis-rdb-tools' memory report columns.
pub const KEYS_HEADER: &str = "database,type,key,size_in_bytes,encoding,num_elements,len_largest_element,expiry\n";

/// One `--keys` row: the key as its bytes, RFC 4180-quoted when it holds a comma, a
/// quote, CR or LF.
pub fn csv_row(out: &mut Vec<u8>, k: &KeyRow<'_>) {
    out.extend_from_slice(itoa::Buffer::new().format(k.db).as_bytes());
    out.push(b',');
    out.extend_from_slice(k.kind.as_bytes());
    out.push(b',');
    csv_field(out, k.key);
    out.push(b',');
    out.extend_from_slice(itoa::Buffer::new().format(k.memory_bytes).as_bytes());
    out.push(b',');
    out.extend_from_slice(k.encoding.as_bytes());
    for n in [k.elements, k.largest_element] {
        out.push(b',');
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
    out.push(b',');
    if let Some(t) = k.expire_at_ms {
        out.extend_from_slice(iso_time(t).as_bytes());
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_python_writes_them() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00");
        assert_eq!(iso_time(4_102_444_800_000), "2100-01-01T00:00:00");
        assert_eq!(iso_time(1_717_199_860_607), "2024-05-31T23:57:40.607000");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00");
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KB");
        assert_eq!(human(5 << 30), "5.0 GB");
    }
}
