//! What differs in a key, element by element, written for people (text) or machines
//! (JSON lines), and the patch that turns side A's key into side B's.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::Write;

use serde_json::{json, Map as JsonMap, Value as Json};

use super::{kind_of, Fetched, Format, Found, Job, Kind, PatchMode, Summary, Verdict};
use crate::rdb::{HashField, Record, Str, Stream, Value};
use crate::resp::encode::{array_header, bulk, bulk_score, select};
use crate::translate::{self, Translator};

/// Elements named in a detail, at most, per list (the counts are always whole).
const SAMPLE: usize = 10;
/// Bytes of a string value shown.
const PREVIEW: usize = 64;
/// Elements in one patch command, at most.
const MAX_ARGS: usize = 256;

/// A byte string as JSON: text if valid UTF-8, else `{"base64":…}` (as `print` writes).
pub fn jbytes(b: &[u8]) -> Json {
    let mut out = Vec::new();
    crate::output::json::write_bytes(&mut out, b);
    serde_json::from_slice(&out).unwrap_or(Json::Null)
}

fn preview(s: &Str<'_>) -> Json {
    let b = s.bytes();
    let cut = &b[..b.len().min(PREVIEW)];
    // A cut inside a UTF-8 sequence would turn the preview into base64: back off to a
    // character boundary when the rest is text.
    let cut = match std::str::from_utf8(cut) {
        Ok(_) => cut,
        Err(e) if e.error_len().is_none() => &cut[..e.valid_up_to()],
        Err(_) => cut,
    };
    jbytes(cut)
}

/// Where the differences and the patch go.
pub struct Writer<'o> {
    out: &'o mut dyn Write,
    format: Format,
    show: usize,
    shown: usize,
    patch: Option<Patch>,
    now_ms: i64,
    tolerance: i64,
}

impl<'o> Writer<'o> {
    pub fn new(job: &Job, out: &'o mut dyn Write) -> std::io::Result<Writer<'o>> {
        let patch = match &job.patch {
            None => None,
            Some(p) if p.as_os_str() == "-" => Some(Patch::new(Box::new(std::io::stdout()), job.patch_mode)),
            Some(p) => Some(Patch::new(Box::new(std::fs::File::create(p)?), job.patch_mode)),
        };
        Ok(Writer {
            out,
            format: job.format,
            show: job.show,
            shown: 0,
            patch,
            now_ms: job.filter.now_ms,
            tolerance: job.ttl_tolerance_ms,
        })
    }

    /// A patch is being written (added keys need their values).
    pub fn patching(&self) -> bool {
        self.patch.is_some()
    }

    /// One differing key: its detail written, its patch written, counted.
    #[allow(clippy::too_many_arguments)]
    pub fn key(
        &mut self,
        job: &Job,
        f: &Found,
        v: Verdict,
        a: Option<&Record<'_>>,
        b: Option<&Record<'_>>,
        fetched_b: Option<&Fetched<'_>>,
        summary: &mut Summary,
    ) -> std::io::Result<()> {
        let mut obj = JsonMap::new();
        obj.insert("db".into(), json!(f.db));
        obj.insert("key".into(), jbytes(&f.key));
        let ta = f.a.map(|s| kind_of(s.kind).name());
        let tb = f.b.map(|s| kind_of(s.kind).name());
        let mut kind = v.kind;
        match kind {
            Kind::Type => {
                obj.insert("type".into(), json!({"a": ta, "b": tb}));
            }
            _ => {
                obj.insert("type".into(), json!(tb.or(ta)));
            }
        }
        if kind == Kind::Value {
            match (a, b) {
                (Some(ra), Some(rb)) => match value_detail(&ra.value, &rb.value, self.tolerance) {
                    Some(d) => {
                        obj.insert("value".into(), d);
                    }
                    // Equal within the TTL tolerance (hash-field TTLs): not a value change.
                    None if v.ttl => kind = Kind::Ttl,
                    None => {
                        summary.same += 1;
                        return Ok(());
                    }
                },
                _ => {
                    obj.insert(
                        "value".into(),
                        json!({"unavailable": "the key changed or vanished while it was read again"}),
                    );
                }
            }
        }
        if v.ttl || matches!(kind, Kind::Added | Kind::Type) {
            let ea = f.a.and_then(|s| s.expire_at_ms);
            let eb = f.b.and_then(|s| s.expire_at_ms);
            if v.ttl || kind == Kind::Type {
                obj.insert("expire_at_ms".into(), json!({"a": ea, "b": eb}));
            } else {
                obj.insert("expire_at_ms".into(), json!(eb));
            }
        }
        obj.insert("kind".into(), json!(kind.name()));
        summary.count(kind);
        if let Some(p) = &mut self.patch {
            p.key(job, f, kind, v.ttl, a, b, fetched_b, self.tolerance)?;
        }
        self.write(Json::Object(obj))
    }

    /// A key that kept changing between rounds.
    pub fn changing(&mut self, f: &Found) -> std::io::Result<()> {
        self.write(json!({"db": f.db, "key": jbytes(&f.key), "kind": "changing"}))
    }

    fn write(&mut self, line: Json) -> std::io::Result<()> {
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut *self.out, &line)?;
                self.out.write_all(b"\n")
            }
            Format::Text => {
                if self.shown < self.show {
                    self.shown += 1;
                    self.out.write_all(text_line(&line).as_bytes())?;
                }
                Ok(())
            }
        }
    }

    /// The last line (JSON) or the summary (text); the patch flushed.
    pub fn finish(mut self, s: &Summary) -> std::io::Result<()> {
        let commands = self.patch.as_mut().map_or(Ok(0), |p| p.finish())?;
        let mut s = s.clone();
        s.patch_commands = commands;
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut *self.out, &json!({"summary": s.to_json()}))?;
                self.out.write_all(b"\n")?;
            }
            Format::Text => {
                let more = s.differences().saturating_sub(self.shown as u64);
                if more > 0 && self.shown > 0 {
                    writeln!(self.out, "… and {more} more (--show N shows more; --format json lists all)")?;
                }
                writeln!(self.out, "{}", summary_text(&s, self.now_ms))?;
            }
        }
        self.out.flush()
    }
}

/// A difference as one line for people.
fn text_line(line: &Json) -> String {
    let kind = line["kind"].as_str().unwrap_or("");
    let key = match &line["key"] {
        Json::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    let mut rest = JsonMap::new();
    if let Json::Object(o) = line {
        for (k, v) in o {
            if !matches!(k.as_str(), "kind" | "key" | "db") {
                rest.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(f) = line.get("function") {
        return format!("{kind:<8} function {f}\n");
    }
    format!("{kind:<8} db {} {key} {}\n", line["db"], Json::Object(rest))
}

fn summary_text(s: &Summary, _now: i64) -> String {
    let mut t = format!(
        "{} keys compared: {} same, {} added, {} removed, {} type changed, {} value changed, {} TTL changed",
        s.compared, s.same, s.added, s.removed, s.type_, s.value, s.ttl
    );
    if s.functions > 0 {
        t += &format!("; {} function libraries differ", s.functions);
    }
    if s.changing > 0 {
        t += &format!("; {} keys changed while checked (not counted as differences)", s.changing);
    }
    if s.expired != [0, 0] {
        t += &format!("; expired keys left out: {} in A, {} in B", s.expired[0], s.expired[1]);
    }
    if s.duplicates != [0, 0] {
        t += &format!("; keys seen twice: {} in A, {} in B (the later counts)", s.duplicates[0], s.duplicates[1]);
    }
    if s.patch_commands > 0 {
        t += &format!("; patch: {} commands", s.patch_commands);
    }
    t
}

/// The element-level difference of two values of one type (`None`: equal, within the
/// tolerance for hash-field TTLs).
pub fn value_detail(a: &Value<'_>, b: &Value<'_>, tolerance: i64) -> Option<Json> {
    let d = match (a, b) {
        (Value::String(x), Value::String(y)) => {
            if x == y {
                return None;
            }
            let (xb, yb) = (x.bytes(), y.bytes());
            let first = xb.iter().zip(yb.iter()).position(|(p, q)| p != q).unwrap_or(xb.len().min(yb.len()));
            json!({"a_len": xb.len(), "b_len": yb.len(), "first_difference": first, "a": preview(x), "b": preview(y)})
        }
        (Value::List(x), Value::List(y)) => {
            let p = common_prefix(x, y);
            if p == x.len() && p == y.len() {
                return None;
            }
            let s = common_suffix(&x[p..], &y[p..]);
            json!({"a_len": x.len(), "b_len": y.len(), "common_prefix": p, "common_suffix": s,
                   "first_difference": p, "a": x.get(p).map(preview), "b": y.get(p).map(preview)})
        }
        (Value::Set(x), Value::Set(y)) => {
            let (added, removed) = set_delta(x, y);
            if added.is_empty() && removed.is_empty() {
                return None;
            }
            json!({"added": added.len(), "removed": removed.len(),
                   "added_sample": sample(&refs(&added)), "removed_sample": sample(&refs(&removed))})
        }
        (Value::ZSet(x), Value::ZSet(y)) => {
            let ax: HashMap<Cow<'_, [u8]>, f64> = x.iter().map(|(m, s)| (m.bytes(), *s)).collect();
            let by: HashMap<Cow<'_, [u8]>, f64> = y.iter().map(|(m, s)| (m.bytes(), *s)).collect();
            let added: Vec<&[u8]> = by.keys().filter(|m| !ax.contains_key(*m)).map(|m| m.as_ref()).collect();
            let removed: Vec<&[u8]> = ax.keys().filter(|m| !by.contains_key(*m)).map(|m| m.as_ref()).collect();
            let mut changed: Vec<(&[u8], f64, f64)> = ax
                .iter()
                .filter_map(|(m, s)| by.get(m).filter(|t| t.to_bits() != s.to_bits()).map(|t| (m.as_ref(), *s, *t)))
                .collect();
            if added.is_empty() && removed.is_empty() && changed.is_empty() {
                return None;
            }
            changed.sort_by(|p, q| p.0.cmp(q.0));
            json!({"added": added.len(), "removed": removed.len(), "score_changed": changed.len(),
                   "added_sample": sample(&added), "removed_sample": sample(&removed),
                   "score_changed_sample": changed.iter().take(SAMPLE)
                        .map(|(m, s, t)| json!({"member": jbytes(m), "a": score_json(*s), "b": score_json(*t)}))
                        .collect::<Vec<_>>()})
        }
        (Value::Hash(x), Value::Hash(y)) => {
            let h = hash_delta(x, y, tolerance);
            if h.is_empty() {
                return None;
            }
            json!({"added": h.added.len(), "removed": h.removed.len(), "changed": h.changed.len(),
                   "field_ttl_changed": h.ttl.len(),
                   "added_sample": sample(&h.added.iter().map(|f| f.field.as_ref()).collect::<Vec<_>>()),
                   "removed_sample": sample(&refs(&h.removed)),
                   "changed_sample": h.changed.iter().take(SAMPLE)
                        .map(|f| json!({"field": jbytes(&f.field), "a": preview(&Str::Borrowed(&f.old)), "b": preview(&Str::Borrowed(&f.value))}))
                        .collect::<Vec<_>>(),
                   "field_ttl_changed_sample": h.ttl.iter().take(SAMPLE)
                        .map(|(f, a, b)| json!({"field": jbytes(f), "a": a, "b": b}))
                        .collect::<Vec<_>>()})
        }
        (Value::Stream(x), Value::Stream(y)) => stream_detail(x, y)?,
        (Value::Module(x), Value::Module(y)) => {
            if x == y {
                return None;
            }
            json!({"module": {"a": x.name, "b": y.name}, "a_len": x.raw.len(), "b_len": y.raw.len()})
        }
        _ => json!({"note": "types differ"}),
    };
    Some(d)
}

fn score_json(v: f64) -> Json {
    if v.is_finite() {
        json!(v)
    } else {
        json!(v.to_string())
    }
}

fn sample(items: &[&[u8]]) -> Vec<Json> {
    let mut s: Vec<&[u8]> = items.to_vec();
    s.sort();
    s.iter().take(SAMPLE).map(|b| jbytes(b)).collect()
}

fn common_prefix(x: &[Str<'_>], y: &[Str<'_>]) -> usize {
    x.iter().zip(y).take_while(|(p, q)| p == q).count()
}

fn common_suffix(x: &[Str<'_>], y: &[Str<'_>]) -> usize {
    x.iter().rev().zip(y.iter().rev()).take_while(|(p, q)| p == q).count()
}

/// Members of `y` not in `x`, and of `x` not in `y`.
fn set_delta(x: &[Str<'_>], y: &[Str<'_>]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let xs: Vec<Cow<'_, [u8]>> = x.iter().map(|s| s.bytes()).collect();
    let ys: Vec<Cow<'_, [u8]>> = y.iter().map(|s| s.bytes()).collect();
    let hx: HashSet<&[u8]> = xs.iter().map(|c| c.as_ref()).collect();
    let hy: HashSet<&[u8]> = ys.iter().map(|c| c.as_ref()).collect();
    let added = ys.iter().filter(|m| !hx.contains(m.as_ref())).map(|m| m.to_vec()).collect();
    let removed = xs.iter().filter(|m| !hy.contains(m.as_ref())).map(|m| m.to_vec()).collect();
    (added, removed)
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

fn singles(v: &[Vec<u8>]) -> Vec<Vec<&[u8]>> {
    v.iter().map(|m| vec![m.as_slice()]).collect()
}

struct ChangedField {
    field: Vec<u8>,
    old: Vec<u8>,
    value: Vec<u8>,
}

struct AddedField {
    field: Vec<u8>,
}

#[derive(Default)]
struct HashDelta {
    added: Vec<AddedField>,
    removed: Vec<Vec<u8>>,
    changed: Vec<ChangedField>,
    /// Fields whose TTL differs (beyond the tolerance), with A's and B's.
    ttl: Vec<(Vec<u8>, Option<i64>, Option<i64>)>,
}

impl HashDelta {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() && self.ttl.is_empty()
    }
}

fn ttl_close(a: Option<i64>, b: Option<i64>, tolerance: i64) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x.abs_diff(y) <= tolerance.max(0) as u64,
        _ => false,
    }
}

fn hash_delta(x: &[HashField<'_>], y: &[HashField<'_>], tolerance: i64) -> HashDelta {
    let ax: HashMap<Cow<'_, [u8]>, &HashField<'_>> = x.iter().map(|f| (f.field.bytes(), f)).collect();
    let by: HashMap<Cow<'_, [u8]>, &HashField<'_>> = y.iter().map(|f| (f.field.bytes(), f)).collect();
    let mut d = HashDelta::default();
    for f in y {
        let name = f.field.bytes();
        match ax.get(&name) {
            None => d.added.push(AddedField { field: name.into_owned() }),
            Some(old) => {
                if old.value != f.value {
                    d.changed.push(ChangedField {
                        field: name.to_vec(),
                        old: old.value.bytes().into_owned(),
                        value: f.value.bytes().into_owned(),
                    });
                }
                if !ttl_close(old.expire_at_ms, f.expire_at_ms, tolerance) {
                    d.ttl.push((name.into_owned(), old.expire_at_ms, f.expire_at_ms));
                }
            }
        }
    }
    for f in x {
        if !by.contains_key(&f.field.bytes()) {
            d.removed.push(f.field.bytes().into_owned());
        }
    }
    d.added.sort_by(|p, q| p.field.cmp(&q.field));
    d.changed.sort_by(|p, q| p.field.cmp(&q.field));
    d.ttl.sort();
    d
}

fn stream_detail(x: &Stream<'_>, y: &Stream<'_>) -> Option<Json> {
    let mut d = JsonMap::new();
    let first = x.entries.iter().zip(&y.entries).position(|(p, q)| p != q);
    if x.entries.len() != y.entries.len() || first.is_some() {
        let at = first.unwrap_or(x.entries.len().min(y.entries.len()));
        d.insert("entries".into(), json!({"a": x.entries.len(), "b": y.entries.len(),
            "first_difference": {"a": x.entries.get(at).map(|e| e.id.to_string()), "b": y.entries.get(at).map(|e| e.id.to_string())}}));
    }
    let (mx, my) = (super::digest::StreamMeta::of(x), super::digest::StreamMeta::of(y));
    if mx.last_id != my.last_id {
        d.insert("last_id".into(), json!({"a": mx.last_id.to_string(), "b": my.last_id.to_string()}));
    }
    if mx.max_deleted_id != my.max_deleted_id {
        d.insert(
            "max_deleted_id".into(),
            json!({"a": mx.max_deleted_id.to_string(), "b": my.max_deleted_id.to_string()}),
        );
    }
    if mx.entries_added != my.entries_added {
        d.insert("entries_added".into(), json!({"a": mx.entries_added, "b": my.entries_added}));
    }
    let gx: HashMap<Cow<'_, [u8]>, _> = x.groups.iter().map(|g| (g.name.bytes(), g)).collect();
    let gy: HashMap<Cow<'_, [u8]>, _> = y.groups.iter().map(|g| (g.name.bytes(), g)).collect();
    let mut groups: Vec<Json> = Vec::new();
    let mut names: Vec<&Cow<'_, [u8]>> = gx.keys().chain(gy.keys()).collect();
    names.sort();
    names.dedup();
    for n in names {
        match (gx.get(n), gy.get(n)) {
            (Some(_), None) => groups.push(json!({"group": jbytes(n), "kind": "removed"})),
            (None, Some(_)) => groups.push(json!({"group": jbytes(n), "kind": "added"})),
            (Some(a), Some(b)) => {
                let mut what = Vec::new();
                if a.last_delivered_id != b.last_delivered_id {
                    what.push("last_delivered_id");
                }
                if a.entries_read != b.entries_read {
                    what.push("entries_read");
                }
                if a.pending != b.pending {
                    what.push("pel");
                }
                let cons = |g: &crate::rdb::ConsumerGroup<'_>| {
                    let mut c: Vec<(Vec<u8>, Vec<crate::rdb::StreamId>)> =
                        g.consumers.iter().map(|c| (c.name.bytes().into_owned(), c.pending.clone())).collect();
                    c.sort();
                    c
                };
                if cons(a) != cons(b) {
                    what.push("consumers");
                }
                if !what.is_empty() {
                    groups.push(json!({"group": jbytes(n), "kind": "changed", "what": what}));
                }
            }
            (None, None) => {}
        }
    }
    if !groups.is_empty() {
        d.insert("groups".into(), Json::Array(groups));
    }
    if d.is_empty() {
        // What differs is left out of this summary (consumer times with --strict-streams).
        d.insert("note".into(), json!("consumers' seen or active times differ"));
    }
    Some(Json::Object(d))
}

/// The patch: RESP commands that turn A into B.
struct Patch {
    out: std::io::BufWriter<Box<dyn Write>>,
    mode: PatchMode,
    db: Option<u64>,
    buf: Vec<u8>,
    commands: u64,
}

impl Patch {
    fn new(out: Box<dyn Write>, mode: PatchMode) -> Patch {
        Patch { out: std::io::BufWriter::with_capacity(1 << 20, out), mode, db: None, buf: Vec::new(), commands: 0 }
    }

    fn cmd(&mut self, args: &[&[u8]]) {
        crate::resp::encode::command(&mut self.buf, args);
        self.commands += 1;
    }

    /// Commands of `name key` with elements in groups (one group: one member, or a score
    /// and its member…), at most [`MAX_ARGS`] groups per command.
    fn chunked(&mut self, head: &[&[u8]], groups: &[Vec<&[u8]>]) {
        for chunk in groups.chunks(MAX_ARGS) {
            let n: usize = chunk.iter().map(Vec::len).sum();
            array_header(&mut self.buf, head.len() + n);
            for h in head {
                bulk(&mut self.buf, h);
            }
            for g in chunk {
                for a in g {
                    bulk(&mut self.buf, a);
                }
            }
            self.commands += 1;
        }
    }

    fn flush_buf(&mut self) -> std::io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    fn on_db(&mut self, db: u64) {
        if self.db != Some(db) {
            select(&mut self.buf, db);
            self.commands += 1;
            self.db = Some(db);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn key(
        &mut self,
        job: &Job,
        f: &Found,
        kind: Kind,
        ttl_differs: bool,
        a: Option<&Record<'_>>,
        b: Option<&Record<'_>>,
        fetched_b: Option<&Fetched<'_>>,
        tolerance: i64,
    ) -> std::io::Result<()> {
        self.on_db(f.db);
        let key = f.key.as_slice();
        match kind {
            Kind::Removed => self.cmd(&[b"DEL", key]),
            Kind::Added | Kind::Type => {
                if kind == Kind::Type {
                    self.cmd(&[b"DEL", key]);
                }
                if let (Some(rb), Some(fb)) = (b, fetched_b) {
                    self.rebuild(job, rb, fb);
                }
            }
            Kind::Value => match (a, b, fetched_b) {
                (Some(ra), Some(rb), Some(fb)) => {
                    if self.mode == PatchMode::Restore || !self.edit(key, ra, rb, tolerance) {
                        self.rebuild(job, rb, fb);
                    } else if ttl_differs {
                        self.ttl(key, rb.expire_at_ms);
                    }
                }
                (_, Some(rb), Some(fb)) => self.rebuild(job, rb, fb),
                _ => {}
            },
            Kind::Ttl => self.ttl(key, b.map_or(f.b.and_then(|s| s.expire_at_ms), |r| r.expire_at_ms)),
        }
        self.flush_buf()
    }

    fn ttl(&mut self, key: &[u8], at: Option<i64>) {
        match at {
            Some(t) => self.cmd(&[b"PEXPIREAT", key, itoa::Buffer::new().format(t).as_bytes()]),
            None => self.cmd(&[b"PERSIST", key]),
        }
    }

    /// The key rebuilt from B's value, as `print --format resp` would write it.
    fn rebuild(&mut self, job: &Job, rb: &Record<'_>, fb: &Fetched<'_>) {
        let mode = match self.mode {
            PatchMode::Restore => translate::Mode::Restore,
            PatchMode::Commands => translate::Mode::Commands,
        };
        let cfg = translate::Config {
            mode,
            keep_expired: job.filter.keep_expired,
            now_ms: job.filter.now_ms,
            ..translate::Config::default()
        };
        let mut t = Translator::new(cfg.clone(), fb.vendor, fb.version);
        let before = self.buf.len();
        if !t.record(rb, &mut self.buf) {
            // Commands cannot carry it (a module value): its payload can.
            self.buf.truncate(before);
            let mut t =
                Translator::new(translate::Config { mode: translate::Mode::Restore, ..cfg }, fb.vendor, fb.version);
            t.record(rb, &mut self.buf);
            self.commands += t.stats.commands;
            return;
        }
        self.commands += t.stats.commands;
    }

    /// Element-level edits from A's value to B's, keeping the key's TTL; false when the
    /// key is better rebuilt.
    fn edit(&mut self, key: &[u8], ra: &Record<'_>, rb: &Record<'_>, tolerance: i64) -> bool {
        match (&ra.value, &rb.value) {
            (Value::Set(x), Value::Set(y)) => {
                let (added, removed) = set_delta(x, y);
                self.chunked(&[b"SREM", key], &singles(&removed));
                self.chunked(&[b"SADD", key], &singles(&added));
                true
            }
            (Value::ZSet(x), Value::ZSet(y)) => {
                let ax: HashMap<Cow<'_, [u8]>, f64> = x.iter().map(|(m, s)| (m.bytes(), *s)).collect();
                let by: HashSet<Cow<'_, [u8]>> = y.iter().map(|(m, _)| m.bytes()).collect();
                let removed: Vec<Vec<&[u8]>> =
                    ax.keys().filter(|m| !by.contains(*m)).map(|m| vec![m.as_ref()]).collect();
                let ys: Vec<(Cow<'_, [u8]>, Vec<u8>)> = y
                    .iter()
                    .filter(|(m, s)| ax.get(&m.bytes()).is_none_or(|old| old.to_bits() != s.to_bits()))
                    .map(|(m, s)| {
                        let mut score = Vec::new();
                        bulk_score(&mut score, *s);
                        (m.bytes(), score_arg(&score))
                    })
                    .collect();
                let set: Vec<Vec<&[u8]>> = ys.iter().map(|(m, s)| vec![s.as_slice(), m.as_ref()]).collect();
                self.chunked(&[b"ZREM", key], &removed);
                self.chunked(&[b"ZADD", key], &set);
                true
            }
            (Value::Hash(x), Value::Hash(y)) => {
                let d = hash_delta(x, y, tolerance);
                let bf: HashMap<Cow<'_, [u8]>, &HashField<'_>> = y.iter().map(|f| (f.field.bytes(), f)).collect();
                self.chunked(&[b"HDEL", key], &singles(&d.removed));
                let values: Vec<(Vec<u8>, Vec<u8>)> = d
                    .added
                    .iter()
                    .map(|f| f.field.clone())
                    .chain(d.changed.iter().map(|f| f.field.clone()))
                    .filter_map(|f| bf.get(f.as_slice()).map(|h| (f.clone(), h.value.bytes().into_owned())))
                    .collect();
                self.chunked(
                    &[b"HSET", key],
                    &values.iter().map(|(f, v)| vec![f.as_slice(), v.as_slice()]).collect::<Vec<_>>(),
                );
                // HSET drops a field's TTL: set again every TTL of a field just written, and
                // those that moved.
                let mut expire: Vec<(&[u8], Option<i64>)> = values
                    .iter()
                    .filter_map(|(f, _)| {
                        bf.get(f.as_slice()).and_then(|h| h.expire_at_ms).map(|t| (f.as_slice(), Some(t)))
                    })
                    .collect();
                expire.extend(d.ttl.iter().map(|(f, _, b)| (f.as_slice(), *b)));
                for (field, at) in expire {
                    match at {
                        Some(t) => self.cmd(&[
                            b"HPEXPIREAT",
                            key,
                            itoa::Buffer::new().format(t).as_bytes(),
                            b"FIELDS",
                            b"1",
                            field,
                        ]),
                        None => self.cmd(&[b"HPERSIST", key, b"FIELDS", b"1", field]),
                    }
                }
                true
            }
            (Value::List(x), Value::List(y)) => {
                let p = common_prefix(x, y);
                let s = common_suffix(&x[p..], &y[p..]);
                let (la, lb) = (x.len(), y.len());
                // Keep the common prefix (LTRIM, then RPUSH the rest) or the common suffix
                // (LTRIM, then LPUSH the rest, reversed), whichever sends fewer elements;
                // with neither, rebuild. A list trimmed to nothing is deleted with its TTL:
                // only a non-empty part is kept.
                let by_prefix = (p > 0).then(|| lb - p);
                let by_suffix = (s > 0).then(|| lb - s);
                let items = |r: &[Str<'_>]| r.iter().map(|e| e.bytes().into_owned()).collect::<Vec<_>>();
                match (by_prefix, by_suffix) {
                    (Some(cp), cs) if cs.is_none_or(|cs| cp <= cs) => {
                        if p < la {
                            self.cmd(&[b"LTRIM", key, b"0", itoa::Buffer::new().format(p - 1).as_bytes()]);
                        }
                        let rest = items(&y[p..]);
                        self.chunked(&[b"RPUSH", key], &singles(&rest));
                        true
                    }
                    (_, Some(_)) => {
                        if s < la {
                            let from = la - s;
                            self.cmd(&[b"LTRIM", key, itoa::Buffer::new().format(from).as_bytes(), b"-1"]);
                        }
                        let mut rest = items(&y[..lb - s]);
                        rest.reverse();
                        self.chunked(&[b"LPUSH", key], &singles(&rest));
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }

    fn finish(&mut self) -> std::io::Result<u64> {
        self.flush_buf()?;
        self.out.flush()?;
        Ok(self.commands)
    }

    /// Function libraries: loaded (replacing) where B's differ, deleted where only A has
    /// them.
    fn functions(&mut self, load: &[&[u8]], delete: &[Vec<u8>]) -> std::io::Result<()> {
        for name in delete {
            self.cmd(&[b"FUNCTION", b"DELETE", name]);
        }
        for code in load {
            self.cmd(&[b"FUNCTION", b"LOAD", b"REPLACE", code]);
        }
        self.flush_buf()
    }
}

/// A score as the argument `bulk_score` wrote (its bulk header stripped).
fn score_arg(encoded: &[u8]) -> Vec<u8> {
    let body = encoded.iter().position(|&c| c == b'\n').map_or(encoded, |i| &encoded[i + 1..]);
    body.strip_suffix(b"\r\n").unwrap_or(body).to_vec()
}

/// A library's name, from its code's first line (`#!lua name=mylib`).
pub fn library_name(code: &[u8]) -> Vec<u8> {
    let first = code.split(|&c| c == b'\n').next().unwrap_or(b"");
    first
        .split(|c| c.is_ascii_whitespace())
        .find_map(|w| w.strip_prefix(b"name="))
        .map_or_else(|| first.to_vec(), |n| n.to_vec())
}

/// Function libraries compared by name and code.
pub fn functions(fa: &[Vec<u8>], fb: &[Vec<u8>], w: &mut Writer<'_>, summary: &mut Summary) -> std::io::Result<()> {
    let la: HashMap<Vec<u8>, &[u8]> = fa.iter().map(|c| (library_name(c), c.as_slice())).collect();
    let lb: HashMap<Vec<u8>, &[u8]> = fb.iter().map(|c| (library_name(c), c.as_slice())).collect();
    let mut names: Vec<&Vec<u8>> = la.keys().chain(lb.keys()).collect();
    names.sort();
    names.dedup();
    let mut load = Vec::new();
    let mut delete = Vec::new();
    for n in names {
        let kind = match (la.get(n), lb.get(n)) {
            (Some(_), None) => {
                delete.push(n.clone());
                "removed"
            }
            (None, Some(code)) => {
                load.push(*code);
                "added"
            }
            (Some(x), Some(y)) if x != y => {
                load.push(*y);
                "value"
            }
            _ => continue,
        };
        summary.functions += 1;
        w.write(json!({"function": jbytes(n), "kind": kind}))?;
    }
    if let Some(p) = &mut w.patch {
        p.functions(&load, &delete)?;
    }
    Ok(())
}
