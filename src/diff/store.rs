//! One side's digests, partitioned by key and spilled to temporary files past a memory
//! budget: the join then holds one partition of each side at a time.
//!
//! An entry is serialized as it is kept (in memory and on disk alike): db and key length
//! as varints, the key, the logical type, the RDB type byte, a byte saying which of the
//! next three are there, the 16-byte logical digest, the 16-byte stored bytes' digest
//! (left out when zero: not worked out), the expiry, and then where the value can be
//! read again (a file's index and offset; unused for a server, which is asked again).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::digest::{self, Digest};

/// Partitions per side: a 1 GB snapshot's ~9 M keys make partitions of a few MB.
pub const PARTITIONS: usize = 256;

/// Which optional parts an entry has (its flags byte).
const HAS_LOGICAL: u8 = 1;
const HAS_RAW: u8 = 2;
const HAS_EXPIRY: u8 = 4;

/// What a side says of a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sum {
    /// [`crate::rdb::ValueType`] as its index (see `kind_of`).
    pub kind: u8,
    pub rdb_type: u8,
    /// The digest of the logical value, when it was worked out.
    pub logical: Option<Digest>,
    /// The digest of the value's stored bytes (with its type byte and vendor): equal
    /// stored bytes are equal values, whatever the logical digest would say.
    pub raw: Digest,
    pub expire_at_ms: Option<i64>,
    /// A file's index (high 24 bits) and the value's offset in it (low 40 bits).
    pub loc: u64,
}

/// One key as a side saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'b> {
    pub db: u64,
    pub key: &'b [u8],
    pub sum: Sum,
}

/// Most bytes of an entry after its key.
const TAIL_MAX: usize = 1 + 1 + 1 + 16 + 16 + 8 + 8;

/// Which partition a key falls in.
pub fn partition(db: u64, key: &[u8]) -> usize {
    (digest::bytes(key, 0x1000 ^ db).0 >> 56) as usize % PARTITIONS
}

fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// A varint into `buf` at `at`; returns where it ends.
fn varint_into(buf: &mut [u8; 20], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        buf[at] = v as u8 | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
    at + 1
}

impl Entry<'_> {
    /// Appends the entry's serialized form.
    pub fn put(&self, out: &mut Vec<u8>) {
        let (head, n, tail, t) = self.parts();
        out.reserve(n + self.key.len() + t);
        out.extend_from_slice(&head[..n]);
        out.extend_from_slice(self.key);
        out.extend_from_slice(&tail[..t]);
    }

    /// The serialized form in three pieces, built on the stack: db and key length (the
    /// first `n` bytes of the first), the key (not copied), and what follows it (the
    /// first `t` bytes of the last).
    #[inline]
    fn parts(&self) -> ([u8; 20], usize, [u8; TAIL_MAX], usize) {
        let e = &self.sum;
        let mut head = [0u8; 20];
        let n = varint_into(&mut head, 0, self.db);
        let n = varint_into(&mut head, n, self.key.len() as u64);
        let mut tail = [0u8; TAIL_MAX];
        tail[0] = e.kind;
        tail[1] = e.rdb_type;
        let mut flags = 0;
        let mut t = 3;
        let mut word = |w: u64, t: &mut usize| {
            tail[*t..*t + 8].copy_from_slice(&w.to_le_bytes());
            *t += 8;
        };
        if let Some(l) = e.logical {
            flags |= HAS_LOGICAL;
            word(l.0, &mut t);
            word(l.1, &mut t);
        }
        if e.raw != Digest::default() {
            flags |= HAS_RAW;
            word(e.raw.0, &mut t);
            word(e.raw.1, &mut t);
        }
        if let Some(x) = e.expire_at_ms {
            flags |= HAS_EXPIRY;
            word(x as u64, &mut t);
        }
        word(e.loc, &mut t);
        tail[2] = flags;
        (head, n, tail, t)
    }

    /// The entry at `pos` (our own bytes: `None` only if they were cut short).
    pub fn get<'b>(b: &'b [u8], pos: &mut usize) -> Option<Entry<'b>> {
        let db = get_varint(b, pos)?;
        let len = get_varint(b, pos)? as usize;
        let key = b.get(*pos..pos.checked_add(len)?)?;
        *pos += len;
        let f = b.get(*pos..*pos + 3)?;
        let (kind, rdb_type, flags) = (f[0], f[1], f[2]);
        *pos += 3;
        let mut word = || -> Option<u64> {
            let w = b.get(*pos..*pos + 8)?;
            *pos += 8;
            Some(u64::from_le_bytes(w.try_into().ok()?))
        };
        let logical = if flags & HAS_LOGICAL != 0 { Some(Digest(word()?, word()?)) } else { None };
        let raw = if flags & HAS_RAW != 0 { Digest(word()?, word()?) } else { Digest::default() };
        let expire_at_ms = if flags & HAS_EXPIRY != 0 { Some(word()? as i64) } else { None };
        let loc = word()?;
        Some(Entry { db, key, sum: Sum { kind, rdb_type, logical, raw, expire_at_ms, loc } })
    }

    /// Every entry of `b`.
    pub fn all(b: &[u8]) -> impl Iterator<Item = Entry<'_>> {
        let mut pos = 0;
        std::iter::from_fn(move || if pos < b.len() { Entry::get(b, &mut pos) } else { None })
    }
}

/// A temporary folder, removed with what it holds when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(parent: &Path) -> std::io::Result<TempDir> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let p = parent.join(format!("redis-migration-diff-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One side's entries.
pub struct Store {
    name: &'static str,
    parts: Vec<Vec<u8>>,
    held: usize,
    budget: usize,
    /// Where partitions spill: one file (`<dir>/<name>`), created at the first spill,
    /// holding each spill's partitions one after the other.
    dir: PathBuf,
    file: Option<std::fs::File>,
    /// Per partition, where its spilled pieces are in the file (offset, length).
    pieces: Vec<Vec<(u64, usize)>>,
    pub spilled_bytes: u64,
}

impl Store {
    /// A store named `name` ("a" or "b") holding at most `budget` bytes in memory before
    /// it writes its partitions to files under `dir`.
    pub fn new(name: &'static str, budget: usize, dir: &Path) -> Store {
        Store {
            name,
            parts: vec![Vec::new(); PARTITIONS],
            held: 0,
            budget,
            dir: dir.to_path_buf(),
            file: None,
            pieces: vec![Vec::new(); PARTITIONS],
            spilled_bytes: 0,
        }
    }

    /// Takes serialized entries, each preceded by its partition byte and its length
    /// (see [`put_tagged`]).
    pub fn take(&mut self, tagged: &[u8]) -> std::io::Result<()> {
        let mut pos = 0;
        while pos + 5 <= tagged.len() {
            let p = tagged[pos] as usize;
            let len = u32::from_le_bytes(tagged[pos + 1..pos + 5].try_into().unwrap_or([0; 4])) as usize;
            let Some(e) = tagged.get(pos + 5..pos + 5 + len) else { break };
            let part = &mut self.parts[p];
            if part.capacity() == 0 {
                part.reserve((self.budget / PARTITIONS).clamp(4096, 1 << 20));
            }
            part.extend_from_slice(e);
            self.held += len;
            pos += 5 + len;
        }
        if self.held > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Appends every partition held in memory to the spill file (one file: creating
    /// hundreds of small files costs the file system more than the writes).
    fn spill(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            let path = self.dir.join(self.name);
            self.file =
                Some(std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path)?);
        }
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        for p in 0..PARTITIONS {
            let part = &mut self.parts[p];
            if part.is_empty() {
                continue;
            }
            out.write_all(part)?;
            self.pieces[p].push((self.spilled_bytes, part.len()));
            self.spilled_bytes += part.len() as u64;
            // Its room is given back: what held a partition's share of one spill is not
            // needed again until the next fills it.
            *part = Vec::new();
        }
        out.flush()?;
        self.held = 0;
        Ok(())
    }

    /// Partition `p` whole (what was spilled, then what is held), leaving it empty here.
    pub fn partition(&mut self, p: usize) -> std::io::Result<Vec<u8>> {
        let held = std::mem::take(&mut self.parts[p]);
        self.held -= held.len();
        let pieces = std::mem::take(&mut self.pieces[p]);
        let Some(file) = self.file.as_ref().filter(|_| !pieces.is_empty()) else { return Ok(held) };
        use std::os::unix::fs::FileExt;
        let mut out = vec![0u8; pieces.iter().map(|&(_, len)| len).sum::<usize>()];
        let mut at = 0;
        for (offset, len) in pieces {
            file.read_exact_at(&mut out[at..at + len], offset)?;
            at += len;
        }
        out.extend_from_slice(&held);
        Ok(out)
    }
}

/// The tagged entries of `tagged` (see [`put_tagged`]) regrouped: one run per partition
/// that has any, tagged as one entry is (partition byte, length), holding its entries one
/// after the other as a partition holds them, in their order. [`Store::take`] then
/// appends a partition's share at once instead of entry by entry.
pub fn grouped(tagged: &[u8]) -> Vec<u8> {
    let runs = || {
        let mut pos = 0;
        std::iter::from_fn(move || {
            let p = *tagged.get(pos)? as usize;
            let len = u32::from_le_bytes(tagged.get(pos + 1..pos + 5)?.try_into().ok()?) as usize;
            let e = tagged.get(pos + 5..pos + 5 + len)?;
            pos += 5 + len;
            Some((p, e))
        })
    };
    let mut sizes = [0usize; PARTITIONS];
    for (p, e) in runs() {
        sizes[p] += e.len();
    }
    let total: usize = sizes.iter().map(|&n| if n > 0 { 5 + n } else { 0 }).sum();
    let mut out = vec![0u8; total];
    let mut at = [0usize; PARTITIONS];
    let mut o = 0;
    for (p, &n) in sizes.iter().enumerate().filter(|(_, &n)| n > 0) {
        out[o] = p as u8;
        out[o + 1..o + 5].copy_from_slice(&(n as u32).to_le_bytes());
        at[p] = o + 5;
        o += 5 + n;
    }
    for (p, e) in runs() {
        out[at[p]..at[p] + e.len()].copy_from_slice(e);
        at[p] += e.len();
    }
    out
}

/// Appends `e` to `out` preceded by its partition byte and its length (4 bytes).
pub fn put_tagged(out: &mut Vec<u8>, e: &Entry<'_>) {
    let (head, n, tail, t) = e.parts();
    let len = n + e.key.len() + t;
    let mut tag = [0u8; 5];
    tag[0] = partition(e.db, e.key) as u8;
    tag[1..].copy_from_slice(&(len as u32).to_le_bytes());
    out.reserve(5 + len);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(e.key);
    out.extend_from_slice(&tail[..t]);
}

/// A hasher for the join's maps: keys are digested with [`digest::bytes`] (much faster
/// than SipHash on short keys; the input is not adversarial to this process's memory, a
/// partition holding a few MB).
#[derive(Default)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = self.0.rotate_left(29) ^ digest::bytes(bytes, 0x33).0;
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// Builds [`KeyHasher`]s.
pub type KeyHash = std::hash::BuildHasherDefault<KeyHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &[u8], db: u64, expire: Option<i64>) -> Entry<'_> {
        let logical = (db % 2 == 0).then_some(Digest(7, u64::MAX));
        // Without a stored bytes' digest (left zero) for a db divisible by 3.
        let raw = if db % 3 == 0 { Digest::default() } else { Digest(9, 1) };
        let sum = Sum { kind: 4, rdb_type: 16, logical, raw, expire_at_ms: expire, loc: 1 << 41 | 5 };
        Entry { db, key, sum }
    }

    #[test]
    fn entries_round_trip() {
        let mut b = Vec::new();
        let es = [
            entry(b"a", 0, None),
            entry(&[0xff; 300], 70_000, Some(-5)),
            entry(b"", 3, Some(i64::MAX)),
            entry(b"k", 2, None),
            entry(b"m", 1, Some(i64::MIN)),
        ];
        for e in &es {
            e.put(&mut b);
        }
        assert_eq!(Entry::all(&b).collect::<Vec<_>>(), es);
    }

    /// A batch grouped by partition leaves every partition as the entries one by one do:
    /// the same entries, in the same order.
    #[test]
    fn grouped_batches_fill_partitions_as_entries_do() {
        let parent = std::env::temp_dir();
        let dir = TempDir::new(&parent).unwrap();
        let (mut one, mut batched) = (Store::new("a", 1 << 30, dir.path()), Store::new("b", 1 << 30, dir.path()));
        let keys: Vec<Vec<u8>> = (0..3000u32).map(|i| format!("key:{i}").into_bytes()).collect();
        for batch in keys.chunks(700) {
            let mut t = Vec::new();
            for (i, k) in batch.iter().enumerate() {
                let mut single = Vec::new();
                put_tagged(&mut single, &entry(k, i as u64 % 5, Some(i as i64)));
                one.take(&single).unwrap();
                t.extend_from_slice(&single);
            }
            let g = grouped(&t);
            assert!(g.len() < t.len(), "one tag per partition, not per entry");
            batched.take(&g).unwrap();
        }
        for p in 0..PARTITIONS {
            assert_eq!(one.partition(p).unwrap(), batched.partition(p).unwrap(), "partition {p}");
        }
    }

    #[test]
    fn spilled_partitions_come_back_whole() {
        let parent = std::env::temp_dir();
        let dir = TempDir::new(&parent).unwrap();
        let mut s = Store::new("a", 100, dir.path());
        let keys: Vec<Vec<u8>> = (0..2000u32).map(|i| format!("key:{i}").into_bytes()).collect();
        for k in &keys {
            let mut t = Vec::new();
            put_tagged(&mut t, &entry(k, 0, None));
            s.take(&t).unwrap();
        }
        assert!(s.spilled_bytes > 0);
        let mut back = Vec::new();
        for p in 0..PARTITIONS {
            let part = s.partition(p).unwrap();
            back.extend(Entry::all(&part).map(|e| {
                assert_eq!(partition(e.db, e.key), p);
                e.key.to_vec()
            }));
        }
        back.sort();
        let mut want = keys.clone();
        want.sort();
        assert_eq!(back, want);
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }
}
