//! Getting a file's bytes: memory-mapped by default, read into a buffer with `--no-mmap`
//! or for `-` (stdin). The one `unsafe` block of the project lives here.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

pub enum Source {
    Mapped(memmap2::Mmap),
    Buffer(Vec<u8>),
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

    pub fn bytes(&self) -> &[u8] {
        match self {
            Source::Mapped(m) => m,
            Source::Buffer(b) => b,
        }
    }
}

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
