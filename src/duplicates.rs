//! Keys found in more than one snapshot of a job: a folder of shard snapshots (a cluster
//! backup) is one dataset, and a key in two of its files (a master's snapshot beside its
//! replica's) means the folder is not what the user thinks. Such keys are refused and
//! named, unless `--on-duplicate first|last` says which file wins.
//!
//! [`find`] is a consumer of the ordered input stream: each batch's selected keys hashed
//! on the workers (128 bits of SipHash, db included), the hashes gathered in input order
//! on the calling thread. Its memory is the set of every key hash: about 30 to 60 bytes a
//! key (16 for the hash, 4 for the file, the hash table's own slack), so 3 to 6 GB for
//! 100 million keys. Only snapshot files take part (`.rdb` files that are not part of an
//! AOF), and only when there are at least two; a key twice in one file is `check`'s
//! business, not this one's.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use crate::filter::Filter;
use crate::input::{self, Batch, Flow, Input, InputError, Inputs, LogEnd, Map, Reader, Sink};
use crate::pipeline::Plan;
use crate::rdb::{self, Item};

/// What to do with a key found in two snapshot files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDuplicate {
    /// Refuse the job, naming the keys and files.
    #[default]
    Refuse,
    /// The first file's key wins (in path order); later copies are left out.
    First,
    /// The last file's key wins; earlier copies are left out.
    Last,
}

/// Keys shown by name in a message; the rest are counted.
const SHOWN: usize = 5;

/// One key found in two files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub db: u64,
    pub key: Vec<u8>,
    /// The file that had it first, and the one that has it again.
    pub first: String,
    pub second: String,
}

/// What [`find`] found.
#[derive(Debug, Default)]
pub struct Duplicates {
    /// Copies found (a key in three files counts twice).
    pub count: u64,
    /// The first few, by name.
    pub shown: Vec<Duplicate>,
    /// The copies to leave out: input index and key hash.
    skip: HashSet<(usize, u128)>,
}

impl Duplicates {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the copy of `key` (db `db`) in input `file` is to be left out. Cheap when
    /// there is nothing to leave out (no hashing).
    pub fn skips(&self, file: usize, db: u64, key: &[u8]) -> bool {
        !self.skip.is_empty() && self.skip.contains(&(file, key_hash(db, key)))
    }

    /// Copies left out.
    pub fn skipped(&self) -> usize {
        self.skip.len()
    }

    /// `key "k" (db 0) is in a.rdb and again in b.rdb; key … (and 12 more)`.
    pub fn message(&self) -> String {
        let mut s = String::new();
        for (i, d) in self.shown.iter().enumerate() {
            if i > 0 {
                s.push_str("; ");
            }
            s.push_str(&format!(
                "key \"{}\" (db {}) is in {} and again in {}",
                rdb::escape_key(&d.key),
                d.db,
                d.first,
                d.second
            ));
        }
        if self.count > self.shown.len() as u64 {
            s.push_str(&format!(" (and {} more)", self.count - self.shown.len() as u64));
        }
        s
    }
}

/// 128 bits of a key and its db: two SipHash-1-3 runs (std's, fixed keys, so the same in
/// every run) over differently salted input.
pub fn key_hash(db: u64, key: &[u8]) -> u128 {
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        db.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (half(0x5a) as u128) << 64 | half(0xa5) as u128
}

/// Whether input `i` takes part: a snapshot file of its own (`.rdb`, not read with
/// `-aof`, not a part of a multi-part AOF).
fn takes_part(input: &Input) -> bool {
    input.last_of_set
        && !input.from_aof_flag
        && input.path.extension().is_some_and(|x| x == "rdb")
        && input.is_snapshot()
}

/// The inputs that take part, when at least two do.
pub fn participants(inputs: &Inputs) -> Vec<bool> {
    let part: Vec<bool> = inputs.files.iter().map(takes_part).collect();
    if part.iter().filter(|&&p| p).count() >= 2 {
        part
    } else {
        vec![false; part.len()]
    }
}

/// Finds the keys (those `filter` selects, whatever their expiry) found in more than one
/// snapshot file of `inputs`, and which copies `on` leaves out. Reads nothing when fewer
/// than two snapshot files take part. A damaged file is an error.
pub fn find(inputs: &Inputs, plan: &Plan, filter: &Filter, on: OnDuplicate) -> Result<Duplicates, InputError> {
    let part = participants(inputs);
    if !part.contains(&true) {
        return Ok(Duplicates::default());
    }
    let map = Hashes { filter, part: &part };
    let mut sink = Finder {
        part: &part,
        on,
        file: 0,
        names: Vec::new(),
        seen: HashMap::new(),
        out: Duplicates::default(),
        failure: None,
    };
    let opts = input::Options { plan: *plan, from: input::Position::default(), reader: Reader::Check };
    input::run(inputs, &opts, &map, &mut sink);
    match sink.failure {
        Some(e) => Err(e),
        None => Ok(sink.out),
    }
}

/// A batch's selected keys: hash, db, and the key's bytes in `bytes`.
#[derive(Default)]
struct Part {
    keys: Vec<(u128, u64, std::ops::Range<usize>)>,
    bytes: Vec<u8>,
    error: Option<rdb::Error>,
}

struct Hashes<'a> {
    filter: &'a Filter,
    part: &'a [bool],
}

impl<'d> Map<'d> for Hashes<'_> {
    type Part = Part;

    fn snapshot(&self, batch: &Batch<'d, '_>) -> Part {
        let mut p = Part::default();
        if !self.part.get(batch.file).copied().unwrap_or(false) {
            return p;
        }
        let r = batch.decode(false, |item, _| {
            if let Item::Record(rec) = item {
                if self.filter.selects(&rec) {
                    let start = p.bytes.len();
                    rec.key.append_to(&mut p.bytes);
                    let key = &p.bytes[start..];
                    p.keys.push((key_hash(rec.db, key), rec.db, start..p.bytes.len()));
                }
            }
            Ok(())
        });
        p.error = r.err();
        p
    }
}

struct Finder<'a> {
    part: &'a [bool],
    on: OnDuplicate,
    file: usize,
    /// Input names, by index.
    names: Vec<String>,
    /// Each key hash and the input it was last seen in.
    seen: HashMap<u128, u32>,
    out: Duplicates,
    failure: Option<InputError>,
}

impl<'d> Sink<'d, Part> for Finder<'_> {
    fn begin(&mut self, file: usize, input: &'d Input) -> Flow {
        if self.names.len() <= file {
            self.names.resize(file + 1, String::new());
        }
        self.names[file].clone_from(&input.name);
        self.file = file;
        if self.part.get(file).copied().unwrap_or(false) {
            Flow::Continue
        } else {
            Flow::SkipInput
        }
    }

    fn part(&mut self, p: Part) -> Flow {
        if let Some(error) = p.error {
            self.failure = Some(InputError::Snapshot { name: self.names[self.file].clone(), error });
            return Flow::Stop;
        }
        let file = self.file;
        for (h, db, range) in p.keys {
            match self.seen.entry(h) {
                Entry::Vacant(v) => {
                    v.insert(file as u32);
                }
                Entry::Occupied(mut o) => {
                    let prev = *o.get() as usize;
                    if prev == file {
                        continue;
                    }
                    self.out.count += 1;
                    if self.out.shown.len() < SHOWN {
                        self.out.shown.push(Duplicate {
                            db,
                            key: p.bytes[range].to_vec(),
                            first: self.names[prev].clone(),
                            second: self.names[file].clone(),
                        });
                    }
                    match self.on {
                        OnDuplicate::Refuse => {}
                        OnDuplicate::First => {
                            self.out.skip.insert((file, h));
                        }
                        OnDuplicate::Last => {
                            self.out.skip.insert((prev, h));
                            o.insert(file as u32);
                        }
                    }
                }
            }
        }
        Flow::Continue
    }

    fn end(&mut self, _file: usize, _input: &'d Input, how: Result<LogEnd, InputError>) -> Flow {
        end_of_input(&mut self.failure, how)
    }
}

/// Every key of the snapshot files of `inputs` that `filter` selects (whatever their
/// expiry), as [`key_hash`]es: what `migrate --resync` keeps on the destination.
pub fn key_set(inputs: &Inputs, plan: &Plan, filter: &Filter) -> Result<HashSet<u128>, InputError> {
    let part: Vec<bool> = inputs.files.iter().map(Input::is_snapshot).collect();
    let map = Hashes { filter, part: &part };
    let mut sink = Collect { names: Vec::new(), file: 0, keys: HashSet::new(), failure: None };
    let opts = input::Options { plan: *plan, from: input::Position::default(), reader: Reader::Check };
    input::run(inputs, &opts, &map, &mut sink);
    match sink.failure {
        Some(e) => Err(e),
        None => Ok(sink.keys),
    }
}

struct Collect {
    names: Vec<String>,
    file: usize,
    keys: HashSet<u128>,
    failure: Option<InputError>,
}

impl<'d> Sink<'d, Part> for Collect {
    fn begin(&mut self, file: usize, input: &'d Input) -> Flow {
        self.names.push(input.name.clone());
        self.file = file;
        if input.is_snapshot() {
            Flow::Continue
        } else {
            Flow::SkipInput
        }
    }

    fn part(&mut self, p: Part) -> Flow {
        if let Some(error) = p.error {
            let name = self.names.get(self.file).cloned().unwrap_or_default();
            self.failure = Some(InputError::Snapshot { name, error });
            return Flow::Stop;
        }
        self.keys.extend(p.keys.iter().map(|k| k.0));
        Flow::Continue
    }

    fn end(&mut self, _file: usize, _input: &'d Input, how: Result<LogEnd, InputError>) -> Flow {
        end_of_input(&mut self.failure, how)
    }
}

/// The end of an input: a damaged one stops the walk (its error kept).
fn end_of_input(failure: &mut Option<InputError>, how: Result<LogEnd, InputError>) -> Flow {
    match how {
        Err(e) => {
            failure.get_or_insert(e);
            Flow::Stop
        }
        Ok(_) => Flow::Continue,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_differ_by_db_and_key() {
        use super::key_hash;
        assert_eq!(key_hash(0, b"a"), key_hash(0, b"a"));
        assert_ne!(key_hash(0, b"a"), key_hash(1, b"a"));
        assert_ne!(key_hash(0, b"a"), key_hash(0, b"b"));
        // The length is part of what is hashed: "ab" + db is not "a" + …
        assert_ne!(key_hash(0, b""), key_hash(0, b"\0"));
    }
}
