//! `redis-migration check FILE…`: a deep walk of every file (every value decoded, LZF
//! expanded to its declared length, every ziplist/listpack/intset validated, duplicate
//! members refused as Redis refuses them) plus the CRC-64, and a report of what is in it.
//! Exit 0 healthy, 1 damaged, 2 could not run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::filter::now_ms;
use crate::pipeline::{self, decode_span, Plan};
use crate::rdb::{self, escape_key, Checksum, Function, Item, Record, Value};
use crate::source::{display_name, Source};

/// Check the integrity of RDB files and summarize their contents
#[derive(clap::Args, Debug)]
#[command(after_help = "Exit status: 0 every file is healthy, 1 damage found (file, byte offset and what was \
expected are printed), 2 a file could not be read.")]
pub struct Args {
    #[command(flatten)]
    pub input: super::InputArgs,
    /// Print only problems
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub threads: super::ThreadArgs,
}

#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    version: String,
    aux: Vec<(String, String)>,
    /// db → (keys, with expiry, expired)
    dbs: BTreeMap<u64, (u64, u64, u64)>,
    encodings: BTreeMap<&'static str, u64>,
    functions: Vec<String>,
    scripts: u64,
    modules: BTreeMap<String, u64>,
    module_aux: Vec<String>,
    empty_keys: u64,
    checksum: Option<Checksum>,
    trailing: usize,
    slot_info: u64,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let paths = args.input.paths()?;
    let mut worst = super::EXIT_OK;
    for path in &paths {
        let code = check_file(path, &args);
        worst = worst.max(code);
    }
    Ok(worst)
}

fn check_file(path: &std::path::Path, args: &Args) -> i32 {
    let name = display_name(path);
    let source = match Source::open(path, args.input.no_mmap) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {name}: {e}");
            return super::EXIT_FAILED;
        }
    };
    let mut summary = Summary::default();
    let result = walk(source.bytes(), &mut summary, &args.threads.plan());
    if !args.quiet {
        print!("{}", report(&name, &summary));
    }
    match result {
        Ok(()) => {
            if !args.quiet {
                println!("status: OK");
            }
            super::EXIT_OK
        }
        Err(e) => {
            if !args.quiet {
                println!("status: DAMAGED");
            }
            eprintln!("error: {name}: {e}");
            super::EXIT_PROBLEMS
        }
    }
}

/// Walks the whole file, on `plan.threads` threads, filling `s` with what is in it up to
/// the first problem (returned).
pub fn walk(data: &[u8], s: &mut Summary, plan: &Plan) -> rdb::Result<()> {
    let h = rdb::parse_header(data)?;
    s.version = format!("{} ({:?} RDB {})", h.magic(), h.vendor, h.version);
    let now = now_ms();
    let mut failure = None;
    pipeline::run(
        data,
        plan,
        |header, span| {
            let mut part = Summary::default();
            let r = decode_span(data, header, span, |item, offset| part.add(item, offset, header.vendor, now));
            (part, r)
        },
        |(part, r)| {
            s.merge(part);
            failure = r.err();
            failure.is_none()
        },
    )?;
    failure.map_or(Ok(()), Err)
}

impl Summary {
    fn add(&mut self, item: Item<'_>, offset: u64, vendor: rdb::Vendor, now: i64) -> rdb::Result<()> {
        let s = self;
        match item {
            Item::Aux { key, value } => {
                let k = String::from_utf8_lossy(&key.bytes()).into_owned();
                if k == "lua" {
                    s.scripts += 1;
                } else {
                    s.aux.push((k, String::from_utf8_lossy(&value.bytes()).into_owned()));
                }
            }
            Item::Record(rec) => {
                check_unique(&rec).map_err(|msg| rdb::Error::corrupt(offset, msg).with_key_text(&rec))?;
                let e = s.dbs.entry(rec.db).or_default();
                e.0 += 1;
                if let Some(t) = rec.expire_at_ms {
                    e.1 += 1;
                    if t <= now {
                        e.2 += 1;
                    }
                }
                *s.encodings.entry(rdb::value::type_name(vendor, rec.rdb_type).unwrap_or("?")).or_default() += 1;
                if let Value::Module(m) = &rec.value {
                    *s.modules.entry(m.name.clone()).or_default() += 1;
                }
            }
            Item::EmptyKey { .. } => s.empty_keys += 1,
            Item::Function(f) => s.functions.push(function_name(&f)),
            Item::ModuleAux { name, .. } => s.module_aux.push(name),
            Item::SlotInfo { .. } => s.slot_info += 1,
            Item::End { checksum, trailing } => {
                s.checksum = Some(checksum);
                s.trailing = trailing;
            }
            Item::SelectDb(_) | Item::ResizeDb { .. } | Item::SlotImport { .. } | Item::Skimmed => {}
        }
        Ok(())
    }

    /// Adds what a later part of the file holds.
    fn merge(&mut self, part: Summary) {
        self.aux.extend(part.aux);
        for (db, (k, e, x)) in part.dbs {
            let d = self.dbs.entry(db).or_default();
            d.0 += k;
            d.1 += e;
            d.2 += x;
        }
        for (enc, n) in part.encodings {
            *self.encodings.entry(enc).or_default() += n;
        }
        self.functions.extend(part.functions);
        self.scripts += part.scripts;
        for (m, n) in part.modules {
            *self.modules.entry(m).or_default() += n;
        }
        self.module_aux.extend(part.module_aux);
        self.empty_keys += part.empty_keys;
        if part.checksum.is_some() {
            self.checksum = part.checksum;
            self.trailing = part.trailing;
        }
        self.slot_info += part.slot_info;
    }
}

/// Redis refuses sets, hashes and zsets with a member twice; so does `check`. Sorting
/// and comparing neighbours is cheaper than hashing every member.
fn check_unique(rec: &Record<'_>) -> Result<(), String> {
    fn dup<'s>(mut members: Vec<std::borrow::Cow<'s, [u8]>>, what: &str) -> Result<(), String> {
        members.sort_unstable();
        match members.windows(2).find(|w| w[0] == w[1]) {
            Some(w) => Err(format!("duplicate {what} \"{}\"", escape_key(&w[0]))),
            None => Ok(()),
        }
    }
    match &rec.value {
        Value::Set(items) => dup(items.iter().map(|s| s.bytes()).collect(), "set member"),
        Value::ZSet(items) => dup(items.iter().map(|(m, _)| m.bytes()).collect(), "zset member"),
        Value::Hash(fields) => dup(fields.iter().map(|f| f.field.bytes()).collect(), "hash field"),
        _ => Ok(()),
    }
}

/// The name a function library declares in its `#!lua name=…` shebang.
pub fn function_name(f: &Function<'_>) -> String {
    match f {
        Function::Library { code } => {
            let code = code.bytes();
            let first = code.split(|&b| b == b'\n').next().unwrap_or_default();
            let first = String::from_utf8_lossy(first);
            first
                .split_whitespace()
                .find_map(|w| w.strip_prefix("name="))
                .map(str::to_string)
                .unwrap_or_else(|| "(unnamed library)".into())
        }
        Function::PreGa { name, .. } => format!("{} (7.0-rc function)", String::from_utf8_lossy(&name.bytes())),
    }
}

fn report(name: &str, s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "file: {name}");
    if s.version.is_empty() {
        return o;
    }
    let _ = writeln!(o, "format: {}", s.version);
    for (k, v) in &s.aux {
        let _ = writeln!(o, "aux: {k} = {v}");
    }
    let total: u64 = s.dbs.values().map(|d| d.0).sum();
    let _ = writeln!(o, "keys: {total}");
    for (db, (keys, with_ttl, expired)) in &s.dbs {
        let _ = writeln!(o, "  db {db}: {keys} keys, {with_ttl} with expiry, {expired} already expired");
    }
    for (enc, n) in &s.encodings {
        let _ = writeln!(o, "  type {enc}: {n}");
    }
    if s.empty_keys > 0 {
        let _ = writeln!(o, "empty keys (skipped, as Redis skips them): {}", s.empty_keys);
    }
    if !s.functions.is_empty() {
        let _ = writeln!(o, "functions: {} ({})", s.functions.len(), s.functions.join(", "));
    }
    if s.scripts > 0 {
        let _ = writeln!(o, "lua scripts (aux): {}", s.scripts);
    }
    for (m, n) in &s.modules {
        let _ = writeln!(o, "module values: {m}: {n}");
    }
    if !s.module_aux.is_empty() {
        let _ = writeln!(o, "module aux data: {}", s.module_aux.join(", "));
    }
    if s.slot_info > 0 {
        let _ = writeln!(o, "slot info records: {}", s.slot_info);
    }
    match s.checksum {
        Some(Checksum::Ok(c)) => {
            let _ = writeln!(o, "checksum: ok ({c:#018x})");
        }
        Some(Checksum::Disabled) => {
            let _ = writeln!(o, "checksum: disabled (stored as 0: saved with rdbchecksum no)");
        }
        Some(Checksum::Absent) => {
            let _ = writeln!(o, "checksum: none (RDB versions before 5 have none)");
        }
        Some(Checksum::Skipped(_)) => {
            let _ = writeln!(o, "checksum: not verified");
        }
        None => {}
    }
    if s.trailing > 0 {
        let _ = writeln!(o, "trailing bytes after the RDB: {}", s.trailing);
    }
    o
}
