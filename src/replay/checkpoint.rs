//! `--checkpoint FILE`: where a replay can resume, kept on disk while it runs.
//!
//! The file holds the input files' identity (name, size, CRC-64 of their first and last
//! MB), the options that decide what is sent, the number of connections (routing depends
//! on it), the run's id (it names the applied keys of log transactions) and the
//! low-water mark: every unit before it has its reply. Snapshot units from the mark on
//! are sent again (each rebuilds its key); log units are sent again only when the
//! applied key of their connection shows that their transaction did not run. The file is
//! replaced atomically (write, fsync, rename) and removed when the replay completes.

use std::io::Write;
use std::path::Path;

use super::Position;

/// One input, as the checkpoint knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputId {
    pub name: String,
    pub size: u64,
    pub crc: u64,
}

impl InputId {
    pub fn of(name: &str, data: &[u8]) -> InputId {
        const MB: usize = 1 << 20;
        let head = crate::rdb::crc64(&data[..data.len().min(MB)]);
        let tail = crate::rdb::crc64(&data[data.len().saturating_sub(MB)..]);
        InputId { name: name.to_string(), size: data.len() as u64, crc: head ^ tail.rotate_left(1) }
    }
}

/// Why a checkpoint file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The file is not JSON.
    #[error("not a checkpoint: {0}")]
    NotJson(serde_json::Error),
    /// JSON without the fields this tool writes.
    #[error("not a checkpoint of this tool (fields missing)")]
    FieldsMissing,
}

/// Two errors are equal when they are of one kind and say the same (I/O and JSON errors
/// do not compare themselves).
impl PartialEq for CheckpointError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other) && self.to_string() == other.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub run: u64,
    pub connections: usize,
    pub inputs: Vec<InputId>,
    pub options: String,
    pub resume: Position,
    /// Written at a clean stop: everything routed had its reply, nothing is in doubt
    /// (`migrate`, which keeps its checkpoint when it stops).
    pub clean: bool,
}

impl Checkpoint {
    /// Reads a checkpoint; `Ok(None)` when there is no file.
    pub fn load(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(CheckpointError::NotJson)?;
        let bad = || CheckpointError::FieldsMissing;
        let num = |v: &serde_json::Value| v.as_u64().ok_or_else(bad);
        let hex = |v: &serde_json::Value| v.as_str().and_then(|s| u64::from_str_radix(s, 16).ok()).ok_or_else(bad);
        let mut inputs = Vec::new();
        for i in v["inputs"].as_array().ok_or_else(bad)? {
            inputs.push(InputId {
                name: i["name"].as_str().ok_or_else(bad)?.to_string(),
                size: num(&i["size"])?,
                crc: hex(&i["crc"])?,
            });
        }
        Ok(Some(Checkpoint {
            run: hex(&v["run"])?,
            connections: num(&v["connections"])? as usize,
            inputs,
            options: v["options"].as_str().ok_or_else(bad)?.to_string(),
            resume: Position { file: num(&v["resume"]["file"])? as usize, offset: num(&v["resume"]["offset"])? },
            clean: v["clean"].as_bool().unwrap_or(false),
        }))
    }

    /// Writes the checkpoint: to a temporary file next to it, synced, then renamed over it.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let v = serde_json::json!({
            "tool": "redis-migration replay",
            "run": format!("{:016x}", self.run),
            "connections": self.connections,
            "inputs": self.inputs.iter().map(|i| serde_json::json!({
                "name": i.name, "size": i.size, "crc": format!("{:016x}", i.crc)
            })).collect::<Vec<_>>(),
            "options": self.options,
            "resume": {"file": self.resume.file, "offset": self.resume.offset},
            "clean": self.clean,
        });
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("{v:#}\n").as_bytes())?;
        f.sync_all()?;
        crate::source::replace_durably(&tmp, path)
    }

    /// Why this checkpoint cannot resume a replay of `inputs` with `options` over
    /// `connections` connections.
    pub fn mismatch(&self, inputs: &[InputId], options: &str, connections: usize) -> Option<String> {
        if self.inputs != inputs {
            let list = |v: &[InputId]| v.iter().map(|i| format!("{} ({} bytes)", i.name, i.size)).collect::<Vec<_>>();
            return Some(format!(
                "it was written for other input files ({:?}; now {:?}, or their content changed)",
                list(&self.inputs),
                list(inputs)
            ));
        }
        if self.options != options {
            return Some(format!("it was written with other options ({}; now {options})", self.options));
        }
        if self.connections != connections {
            return Some(format!("it was written with -n {} (now {connections})", self.connections));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.json");
        assert_eq!(Checkpoint::load(&path), Ok(None));
        let ck = Checkpoint {
            run: 0xfeed_beef_0000_0001,
            connections: 3,
            inputs: vec![InputId::of("dump.rdb", b"REDIS0012 data")],
            options: "mode=restore".into(),
            resume: Position { file: 0, offset: 123_456 },
            clean: true,
        };
        ck.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(ck.clone()));
        assert!(ck.mismatch(&ck.inputs, "mode=restore", 3).is_none());
        assert!(ck.mismatch(&ck.inputs, "mode=commands", 3).unwrap().contains("other options"));
        assert!(ck.mismatch(&[InputId::of("dump.rdb", b"REDIS0012 datX")], "mode=restore", 3).is_some());
        assert!(ck.mismatch(&ck.inputs, "mode=restore", 4).unwrap().contains("-n 3"));
        std::fs::write(&path, "{}").unwrap();
        assert!(Checkpoint::load(&path).is_err());
    }
}
