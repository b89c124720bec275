//! Getting a file's bytes: memory-mapped by default, read into a buffer with `--no-mmap`
//! or for `-` (stdin). The one `unsafe` block of the project lives here.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub enum Source {
    Mapped(memmap2::Mmap),
    Buffer(Vec<u8>),
    /// A file another thread is still writing (see [`Growth`]): mapped at the length it
    /// will have, read only up to what is written.
    Growing(memmap2::Mmap, Arc<Growth>),
}

/// A file that one thread writes front to back while another reads what is written so
/// far (`migrate` applies a snapshot while its bytes arrive). The writer says how far it
/// has written after each write, and at last whether the file is whole or never will be.
#[derive(Debug)]
pub struct Growth {
    /// Bytes written so far; the reader may read below this.
    written: AtomicU64,
    /// The length announced up front (`u64::MAX`: unknown), once the writer has begun.
    expected: AtomicU64,
    /// [`Growth::GROWING`], [`Growth::WHOLE`] or [`Growth::BROKEN`]; `NOT_BEGUN` before.
    end: AtomicU8,
}

/// What a reader waiting for more bytes of a [`Growth`] finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grown {
    /// This many bytes are written, and more may come.
    To(u64),
    /// The file is whole at this length.
    Whole(u64),
    /// The writer gave up at this length: the rest never comes.
    Broken(u64),
}

impl Default for Growth {
    fn default() -> Growth {
        Growth { written: AtomicU64::new(0), expected: AtomicU64::new(u64::MAX), end: AtomicU8::new(Growth::NOT_BEGUN) }
    }
}

impl Growth {
    const NOT_BEGUN: u8 = 0;
    const GROWING: u8 = 1;
    const WHOLE: u8 = 2;
    const BROKEN: u8 = 3;

    /// The writer has created the (empty) file; it will be `expected` bytes long when known.
    pub fn begin(&self, expected: Option<u64>) {
        self.written.store(0, Ordering::Release);
        self.expected.store(expected.unwrap_or(u64::MAX), Ordering::Release);
        self.end.store(Growth::GROWING, Ordering::Release);
    }

    /// The first `total` bytes are in the file (written with `write(2)`, so a mapping sees
    /// them).
    pub fn wrote(&self, total: u64) {
        self.written.fetch_max(total, Ordering::AcqRel);
    }

    /// The file is whole.
    pub fn whole(&self) {
        self.end.store(Growth::WHOLE, Ordering::Release);
    }

    /// The writer gave up (unless the file is whole already).
    pub fn broken(&self) {
        let _ = self.end.compare_exchange(Growth::GROWING, Growth::BROKEN, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Whether the writer has begun, and the length it announced.
    pub fn begun(&self) -> Option<Option<u64>> {
        (self.end.load(Ordering::Acquire) != Growth::NOT_BEGUN)
            .then(|| Some(self.expected.load(Ordering::Acquire)).filter(|&e| e != u64::MAX))
    }

    /// How far the file is now.
    pub fn now(&self) -> Grown {
        // The end first: once it says whole, the length read after it is the last one.
        let end = self.end.load(Ordering::Acquire);
        let written = self.written.load(Ordering::Acquire);
        match end {
            Growth::WHOLE => Grown::Whole(written),
            Growth::BROKEN => Grown::Broken(written),
            _ => Grown::To(written),
        }
    }

    /// Waits until the file has ended, whole or broken.
    pub fn wait_end(&self) {
        while matches!(self.now(), Grown::To(_)) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits up to `timeout` until more than `beyond` bytes are written or the file has
    /// ended, and says how far it is.
    pub fn wait(&self, beyond: u64, timeout: Duration) -> Grown {
        let until = Instant::now() + timeout;
        loop {
            let now = self.now();
            match now {
                Grown::To(n) if n <= beyond && Instant::now() < until => std::thread::sleep(Duration::from_millis(1)),
                _ => return now,
            }
        }
    }
}

impl Source {
    /// Opens `path` (`-` is stdin). I/O errors name the file.
    pub fn open(path: &Path, no_mmap: bool) -> std::io::Result<Source> {
        if path == Path::new("-") {
            let mut buf = Vec::new();
            std::io::stdin().lock().read_to_end(&mut buf)?;
            return Ok(Source::Buffer(buf));
        }
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(std::io::Error::other("is a directory, expected an RDB file"));
        }
        if no_mmap || meta.len() == 0 {
            let mut buf = Vec::with_capacity(meta.len() as usize);
            file.read_to_end(&mut buf)?;
            return Ok(Source::Buffer(buf));
        }
        // SAFETY: the map is read-only and private to this process. If another process
        // truncates the file while it is mapped, reading the lost pages raises SIGBUS and
        // the process dies: we accept that (the input is a snapshot that nobody should
        // rewrite in place; Redis itself writes RDBs to a temp file and renames it), and
        // `--no-mmap` exists for inputs that may change under us. Writers that append
        // (a growing AOF) do not invalidate pages already mapped.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        // Read front to back: let the kernel read ahead and map pages in large runs.
        let _ = map.advise(memmap2::Advice::Sequential);
        let _ = map.advise(memmap2::Advice::WillNeed);
        Ok(Source::Mapped(map))
    }

    /// A file that `growth`'s writer has begun and is still writing, mapped at the length
    /// it announced, or at [`GROWING_RESERVE`] when it gave none (a diskless transfer).
    pub fn growing(path: &Path, growth: Arc<Growth>) -> std::io::Result<Source> {
        let file = File::open(path)?;
        let len = growth.begun().flatten().unwrap_or(GROWING_RESERVE);
        let len = usize::try_from(len).map_err(|_| std::io::Error::other("too large to map"))?;
        // SAFETY: as in `open`, and: pages past the file's end are never read, because
        // `bytes` ends where the writer has written (a `write(2)` the mapping sees, as both
        // are the page cache), and the writer only appends. A reservation past the end is
        // address space only: nothing is allocated for it.
        let map = unsafe { memmap2::MmapOptions::new().len(len.max(1)).map(&file)? };
        Ok(Source::Growing(map, growth))
    }

    /// The bytes; of a growing file, those written so far.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Source::Mapped(m) => m,
            Source::Buffer(b) => b,
            Source::Growing(m, g) => {
                let n = match g.now() {
                    Grown::To(n) | Grown::Whole(n) | Grown::Broken(n) => n,
                };
                &m[..(n as usize).min(m.len())]
            }
        }
    }

    /// All the bytes mapped: of a growing file, past what is written too (never to be read
    /// beyond what [`Growth`] says is written).
    pub fn reserved(&self) -> &[u8] {
        match self {
            Source::Mapped(m) | Source::Growing(m, _) => m,
            Source::Buffer(b) => b,
        }
    }

    /// The growth of a file still being written, if it is one.
    pub fn growth(&self) -> Option<&Growth> {
        match self {
            Source::Growing(_, g) => Some(g),
            _ => None,
        }
    }
}

/// Address space reserved for a growing file of unknown length: 1 TiB (nothing is
/// allocated for it; a longer file is read only up to it).
pub const GROWING_RESERVE: u64 = 1 << 40;

/// A display name for a path (`-` shows as `<stdin>`).
pub fn display_name(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".into()
    } else {
        path.display().to_string()
    }
}

/// One file to read, with where it sits in its set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub path: PathBuf,
    /// The last file of its set (a single file is a set of one): only there may a
    /// truncated AOF tail be tolerated.
    pub last_of_set: bool,
    /// Given with -aof.
    pub from_aof_flag: bool,
}

impl InputFile {
    fn single(path: PathBuf) -> InputFile {
        InputFile { path, last_of_set: true, from_aof_flag: false }
    }
}

/// Expands inputs: a directory holding a `*.manifest` (or a manifest itself) stands for
/// the files of that multi-part AOF, in load order; another directory stands for every
/// RDB file under it, at any depth (a cluster backup: one folder per shard), in path
/// order, leaving out the folders that hold an AOF manifest (their `.base.rdb` is part of
/// an AOF, not a snapshot of its own).
pub fn expand_inputs(paths: &[PathBuf]) -> std::io::Result<Vec<InputFile>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let manifests = manifests_in(p)?;
            match manifests.len() {
                0 => {}
                1 => {
                    out.extend(multipart(&manifests[0])?);
                    continue;
                }
                _ => {
                    return Err(std::io::Error::other(format!(
                        "{}: more than one .manifest file; name the one to read",
                        p.display()
                    )))
                }
            }
            let files = rdb_files_under(p)?;
            if files.is_empty() {
                return Err(std::io::Error::other(format!(
                    "{}: directory has no .rdb files (at any depth) and no AOF manifest",
                    p.display()
                )));
            }
            out.extend(files.into_iter().map(InputFile::single));
        } else if p.extension().is_some_and(|x| x == "manifest") {
            out.extend(multipart(p)?);
        } else {
            out.push(InputFile::single(p.clone()));
        }
    }
    Ok(out)
}

/// The `.manifest` files directly in `dir`.
fn manifests_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        if path.is_file() && path.extension().is_some_and(|x| x == "manifest") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Every `*.rdb` file under `dir` (symbolic links to files followed, to folders not),
/// sorted by path; folders holding an AOF manifest left out. Errors name the path.
fn rdb_files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let walk = walkdir::WalkDir::new(dir).sort_by_file_name().into_iter().filter_entry(|e| {
        // The top folder was looked at by the caller.
        e.depth() == 0 || !e.file_type().is_dir() || manifests_in(e.path()).map_or(true, |m| m.is_empty())
    });
    for e in walk {
        let e = e.map_err(|e| {
            let at = e.path().map(|p| p.display().to_string()).unwrap_or_else(|| dir.display().to_string());
            std::io::Error::other(format!("{at}: {e}"))
        })?;
        if e.path().extension().is_some_and(|x| x == "rdb") && e.path().is_file() {
            files.push(e.into_path());
        }
    }
    files.sort();
    Ok(files)
}

/// The files a manifest lists, in load order; every one must exist.
fn multipart(manifest: &Path) -> std::io::Result<Vec<InputFile>> {
    // A manifest is a few lines; a huge file under that name is not one to read whole.
    const MAX_MANIFEST: u64 = 4 << 20;
    if std::fs::metadata(manifest)?.len() > MAX_MANIFEST {
        return Err(std::io::Error::other(format!(
            "{}: larger than {MAX_MANIFEST} bytes, not an AOF manifest",
            manifest.display()
        )));
    }
    let text = std::fs::read(manifest)?;
    let m = crate::aof::manifest::parse(&text)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", manifest.display())))?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let files = m.load_order(dir);
    let n = files.len();
    let mut out = Vec::with_capacity(n);
    for (i, path) in files.into_iter().enumerate() {
        if !path.is_file() {
            return Err(std::io::Error::other(format!(
                "{}: lists {}, which does not exist",
                manifest.display(),
                path.display()
            )));
        }
        out.push(InputFile { path, last_of_set: i + 1 == n, from_aof_flag: false });
    }
    Ok(out)
}

/// Replaces `path` with `tmp` (written and synced by the caller) and syncs the directory,
/// so that after a power loss the file is the new one, not the old (rename(2) alone is
/// durable only once its directory is).
pub fn replace_durably(tmp: &std::path::Path, path: &std::path::Path) -> std::io::Result<()> {
    std::fs::rename(tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}
