//! The command log being captured: the `-aof` file, the MULTI block held back until its
//! EXEC, and the state file beside it.
//!
//! *Invariant:* the file only ever grows by whole units (a command, or a MULTI…EXEC
//! block), so whenever it stops (a signal, a lost source) it ends after the last
//! complete command, as an AOF Redis can load; the state file names the replication
//! offset and db at the end of what was last made durable (written and fsynced), never
//! past it. Writes go to an in-memory buffer that reaches the file at least once a
//! second and past [`WRITE_BYTES`]; fsyncs are grouped once a second ([`Spool::sync`]),
//! as Redis's `appendfsync everysec` groups its own, and run on a thread of their own
//! (as Redis's `bioCreateFsyncJob`): an fsync can take seconds on a busy disk, and the
//! thread that drains the socket must never wait for one, or the master's output buffer
//! for us fills and it drops the link.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

/// Buffered log bytes are written to the file past this size.
pub const WRITE_BYTES: usize = 1 << 20;

/// What a restart needs to go on where the capture stopped (`PSYNC <replid> <offset+1>`
/// from the resume issue), written as JSON to `<aof>.state` after every grouped fsync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The master's replication ID (from `+FULLRESYNC`).
    pub replid: String,
    /// The offset the snapshot was taken at (`+FULLRESYNC`'s).
    pub snapshot_offset: u64,
    /// The replication offset just after the last complete command in the file.
    pub offset: u64,
    /// The db selected at that offset (a `+CONTINUE` does not repeat the SELECT).
    pub db: u64,
    /// The file's length at that offset: anything past it (a crash between write and
    /// state) is to be cut off before appending again.
    pub aof_bytes: u64,
}

impl State {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "replid": self.replid,
            "snapshot_offset": self.snapshot_offset,
            "offset": self.offset,
            "db": self.db,
            "aof_bytes": self.aof_bytes,
        })
    }

    /// Reads a state file's JSON.
    pub fn from_json(v: &serde_json::Value) -> Option<State> {
        Some(State {
            replid: v.get("replid")?.as_str()?.to_string(),
            snapshot_offset: v.get("snapshot_offset")?.as_u64()?,
            offset: v.get("offset")?.as_u64()?,
            db: v.get("db")?.as_u64()?,
            aof_bytes: v.get("aof_bytes")?.as_u64()?,
        })
    }
}

/// The state file of an `-aof` file by default: `<aof>.state`.
pub fn state_path(aof: &Path) -> PathBuf {
    let mut s = aof.as_os_str().to_owned();
    s.push(".state");
    PathBuf::from(s)
}

/// The log being written.
pub struct Spool {
    file: File,
    path: PathBuf,
    /// Whole units not yet written to the file.
    out: Vec<u8>,
    /// The open MULTI block (from its MULTI), if any.
    block: Option<Vec<u8>>,
    /// Bytes in the file.
    written: u64,
    /// The state at the end of `out` (what the file holds once `out` is written).
    pub at: State,
    /// States to make durable, to the fsync thread (`None` once finished).
    to_sync: Option<mpsc::Sender<State>>,
    fsyncs: Option<std::thread::JoinHandle<()>>,
    /// The state last made durable, and the first error of the fsync thread.
    durable: Arc<Mutex<(State, Option<String>)>>,
    /// The db the stream is in (inside an open block, it may differ from `at.db`).
    db: u64,
    /// Data commands in the file or `out` (MULTI, EXEC and SELECT not counted).
    pub commands: u64,
    /// Data commands in the open block.
    block_commands: u64,
}

impl Spool {
    /// Creates (truncates) the log at `path`, its state kept in `state_file`; the stream
    /// starts at `offset` in db 0. The fsync thread first makes `snapshot` (the `-rdb`
    /// file) durable, then the log, and writes the first state file: once it exists, the
    /// snapshot is safe.
    pub fn create(path: &Path, state_file: &Path, replid: &str, offset: u64, snapshot: File) -> std::io::Result<Spool> {
        let file = File::create(path)?;
        let at = State { replid: replid.to_string(), snapshot_offset: offset, offset, db: 0, aof_bytes: 0 };
        Spool::open(path, state_file, file, at, Some(snapshot))
    }

    /// Continues the log at `path` from `state` (a `+CONTINUE`): anything past its
    /// `aof_bytes` (written after the last durable state) is cut off, and the stream goes
    /// on in its db.
    pub fn resume(path: &Path, state_file: &Path, state: &State) -> std::io::Result<Spool> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        let len = file.metadata()?.len();
        if len < state.aof_bytes {
            return Err(std::io::Error::other(format!(
                "{} holds {len} bytes, fewer than the {} its state names",
                path.display(),
                state.aof_bytes
            )));
        }
        file.set_len(state.aof_bytes)?;
        let mut spool = Spool::open(path, state_file, file, state.clone(), None)?;
        spool.written = state.aof_bytes;
        Ok(spool)
    }

    fn open(
        path: &Path,
        state_file: &Path,
        mut file: File,
        at: State,
        snapshot: Option<File>,
    ) -> std::io::Result<Spool> {
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))?;
        let durable = Arc::new(Mutex::new((at.clone(), None)));
        let (tx, rx) = mpsc::channel::<State>();
        let log = file.try_clone()?;
        let at_db = at.db;
        let state_path = state_file.to_path_buf();
        let fsyncs = {
            let durable = durable.clone();
            let state_path = state_path.clone();
            std::thread::Builder::new().name("capture-fsync".into()).spawn(move || {
                let fail = |e: String| {
                    let mut d = durable.lock().unwrap_or_else(|p| p.into_inner());
                    d.1.get_or_insert(e);
                };
                if let Err(e) = snapshot.map_or(Ok(()), |f| f.sync_all()) {
                    return fail(format!("the snapshot: {e}"));
                }
                while let Ok(mut state) = rx.recv() {
                    // Only the newest state matters: one fsync covers every write before it.
                    while let Ok(newer) = rx.try_recv() {
                        state = newer;
                    }
                    match log.sync_data().and_then(|()| write_state(&state_path, &state)) {
                        Ok(()) => durable.lock().unwrap_or_else(|p| p.into_inner()).0 = state,
                        Err(e) => return fail(e.to_string()),
                    }
                }
            })?
        };
        let mut spool = Spool {
            file,
            path: path.to_path_buf(),
            out: Vec::new(),
            block: None,
            written: 0,
            at,
            to_sync: Some(tx),
            fsyncs: Some(fsyncs),
            durable,
            db: at_db,
            commands: 0,
            block_commands: 0,
        };
        spool.sync()?;
        Ok(spool)
    }

    /// The state last made durable (what may be acknowledged).
    pub fn synced(&self) -> State {
        self.durable.lock().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the stream consumed without a unit to write (housekeeping, keepalives):
    /// the offset moves on unless a block is open (then it moves at EXEC).
    pub fn skip(&mut self, end_offset: u64) {
        if self.block.is_none() {
            self.at.offset = end_offset;
        }
    }

    /// A command of the stream: `raw` its bytes to write, `kind` what it is, `end_offset`
    /// the replication offset after it.
    pub fn command(&mut self, raw: &[u8], kind: super::stream::Kind, end_offset: u64) -> std::io::Result<()> {
        use super::stream::Kind;
        match kind {
            Kind::Housekeeping | Kind::GetAck | Kind::Publish => {
                self.skip(end_offset);
                return Ok(());
            }
            Kind::Multi => {
                // A MULTI inside a block cannot come from a master; keep the first.
                if let Some(b) = &mut self.block {
                    b.extend_from_slice(raw);
                } else {
                    self.block = Some(raw.to_vec());
                    self.block_commands = 0;
                }
                return Ok(());
            }
            Kind::Exec => match self.block.take() {
                Some(mut b) => {
                    b.extend_from_slice(raw);
                    self.out.extend_from_slice(&b);
                    self.commands += self.block_commands;
                }
                // An EXEC with no MULTI: nothing to close; written as the master sent it.
                None => self.out.extend_from_slice(raw),
            },
            Kind::Select(db) => {
                self.db = db;
                match &mut self.block {
                    Some(b) => b.extend_from_slice(raw),
                    None => self.out.extend_from_slice(raw),
                }
            }
            Kind::Data => match &mut self.block {
                Some(b) => {
                    b.extend_from_slice(raw);
                    self.block_commands += 1;
                }
                None => {
                    self.out.extend_from_slice(raw);
                    self.commands += 1;
                }
            },
        }
        if self.block.is_none() {
            self.at.offset = end_offset;
            self.at.db = self.db;
            self.at.aof_bytes = self.written + self.out.len() as u64;
            if self.out.len() >= WRITE_BYTES {
                self.write_out()?;
            }
        }
        Ok(())
    }

    /// Whether a MULTI block is open (held back).
    pub fn in_block(&self) -> bool {
        self.block.is_some()
    }

    /// Bytes in the file (whole units; a reader may take them before they are durable).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes the whole units buffered so far to the file (not fsynced): for a reader
    /// that follows the file as it grows.
    pub fn write_out(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.file.write_all(&self.out)?;
            self.written += self.out.len() as u64;
            self.out.clear();
        }
        Ok(())
    }

    /// Writes what is buffered and asks the fsync thread to make it durable and write
    /// the state file; returns at once. An error of an earlier fsync is returned here.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.write_out()?;
        if let Some(e) = &self.durable.lock().unwrap_or_else(|p| p.into_inner()).1 {
            return Err(std::io::Error::other(e.clone()));
        }
        if let Some(tx) = &self.to_sync {
            // The thread only stops on an error, which the next call reports.
            let _ = tx.send(self.at.clone());
        }
        Ok(())
    }

    /// Writes what is buffered, waits until it is durable and the state file says so, and
    /// returns that state.
    pub fn finish(&mut self) -> std::io::Result<State> {
        self.sync()?;
        self.to_sync = None;
        if let Some(t) = self.fsyncs.take() {
            let _ = t.join();
        }
        let d = self.durable.lock().unwrap_or_else(|p| p.into_inner());
        match &d.1 {
            Some(e) => Err(std::io::Error::other(e.clone())),
            None => Ok(d.0.clone()),
        }
    }
}

/// Frees the disk blocks of the first `len` bytes of the file at `path` (rounded down to
/// 4 KB) while its size and offsets stay: the part of a spool that is applied and that
/// no resume will read again. Linux (`fallocate` with `FALLOC_FL_PUNCH_HOLE`); elsewhere,
/// or on a file system without holes, nothing is freed.
pub fn punch_hole(path: &Path, len: u64) -> std::io::Result<()> {
    let len = len & !4095;
    if len == 0 {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        extern "C" {
            fn fallocate(fd: i32, mode: i32, offset: i64, len: i64) -> i32;
        }
        const FALLOC_FL_KEEP_SIZE: i32 = 1;
        const FALLOC_FL_PUNCH_HOLE: i32 = 2;
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        // SAFETY: fallocate takes the descriptor of a file that stays open for the call
        // and two integers; no memory is passed.
        let r = unsafe { fallocate(file.as_raw_fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, len as i64) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Reads the state file at `path`; `Ok(None)` when there is none.
pub fn read_state(path: &Path) -> Result<Option<State>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| State::from_json(&v))
        .map(Some)
        .ok_or_else(|| format!("{}: not a state file of this tool", path.display()))
}

/// Writes the state file whole: a temporary file, fsynced, renamed over it.
fn write_state(path: &Path, state: &State) -> std::io::Result<()> {
    let tmp = {
        let mut s = path.as_os_str().to_owned();
        s.push(".tmp");
        PathBuf::from(s)
    };
    let mut f = File::create(&tmp)?;
    f.write_all(state.to_json().to_string().as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_data()?;
    crate::source::replace_durably(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::super::stream::{kind, next_item, Item};
    use super::*;
    use crate::resp::encode::command;

    fn cmd(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        command(&mut out, args);
        out
    }

    /// Feeds `data` (starting at replication offset 100) to a spool.
    fn feed(spool: &mut Spool, data: &[u8]) {
        let mut at = 0;
        while let Some((item, n)) = next_item(&data[at..], 100 + at as u64).unwrap() {
            let end = 100 + (at + n) as u64;
            match item {
                Item::Keepalive => spool.skip(end),
                Item::Command(argv) => spool.command(&data[at..at + n], kind(&argv), end).unwrap(),
            }
            at += n;
        }
    }

    #[test]
    fn the_file_holds_whole_units_and_no_housekeeping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("appendonly.aof");
        let snapshot = File::create(dir.path().join("dump.rdb")).unwrap();
        let mut spool = Spool::create(&path, &state_path(&path), "abc", 100, snapshot).unwrap();
        let select = cmd(&[b"SELECT", b"2"]);
        let set = cmd(&[b"SET", b"a", b"1"]);
        let ping = cmd(&[b"PING"]);
        let getack = cmd(&[b"REPLCONF", b"GETACK", b"*"]);
        let multi = cmd(&[b"MULTI"]);
        let incr = cmd(&[b"INCR", b"n"]);
        let exec = cmd(&[b"EXEC"]);
        let whole = [&select[..], &set, &ping, b"\n", &multi, &incr, &incr, &exec, &getack].concat();
        feed(&mut spool, &whole);
        let open = [&multi[..], &cmd(&[b"SELECT", b"5"]), &incr].concat();
        feed(&mut spool, &open);
        assert!(spool.in_block());
        let synced = spool.finish().unwrap();
        let want = [&select[..], &set, &multi, &incr, &incr, &exec].concat();
        assert_eq!(std::fs::read(&path).unwrap(), want);
        // The offset stops before the open block; the db is the one selected there.
        let end = 100 + whole.len() as u64;
        assert_eq!(
            synced,
            State { replid: "abc".into(), snapshot_offset: 100, offset: end, db: 2, aof_bytes: want.len() as u64 }
        );
        assert_eq!(spool.commands, 3);
        let text = std::fs::read_to_string(state_path(&path)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(State::from_json(&v), Some(synced));
    }
}
