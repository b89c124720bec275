//! Log commands applied exactly once: on a destination with MULTI, each chunk of log
//! commands is one transaction that also records, in the connection's applied key, the
//! position of its last unit; after a lost connection (or a resumed run) that key says
//! what ran. Snapshot units need none of this: each rebuilds its key from scratch.

use super::chunk::Chunk;
use super::engine::Engine;
use super::Position;
use crate::net::{Answer, Link, LinkError};

/// A position as one number, ordered like positions (the applied keys hold these).
pub(super) fn mark(p: Position) -> u64 {
    ((p.file as u64) << 40) | p.offset
}

impl Engine<'_> {
    /// Log commands as one transaction that also records, in the connection's applied
    /// key (db 0), the position of its last unit: MULTI, the commands, [SELECT 0], SET
    /// key mark, [SELECT db], EXEC.
    pub(super) fn transaction(&self, conn: usize, c: Chunk) -> Chunk {
        use crate::resp::encode::command;
        let Some(&(_, last)) = c.units.last() else { return c };
        let m = mark(last);
        let mut t = Chunk { db: c.db, exit_db: c.exit_db, transaction: Some(m), ..Chunk::default() };
        let mut cmd = Vec::with_capacity(96);
        command(&mut cmd, &[b"MULTI"]);
        t.push_command(&cmd);
        t.units = c.units.iter().map(|&(first, pos)| (first + 1, pos)).collect();
        let base = t.buf.len();
        t.buf.extend_from_slice(&c.buf);
        t.ends.extend(c.ends.iter().map(|e| e + base));
        let exit = c.exit_db.unwrap_or(0);
        let key = format!("{}{conn}", self.applied_prefix);
        let tail: [Option<Vec<Vec<u8>>>; 4] = [
            (exit != 0).then(|| vec![b"SELECT".to_vec(), b"0".to_vec()]),
            Some(vec![b"SET".to_vec(), key.into_bytes(), m.to_string().into_bytes()]),
            (exit != 0).then(|| vec![b"SELECT".to_vec(), exit.to_string().into_bytes()]),
            Some(vec![b"EXEC".to_vec()]),
        ];
        for args in tail.into_iter().flatten() {
            cmd.clear();
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            command(&mut cmd, &refs);
            t.push_command(&cmd);
        }
        t
    }

    /// Resuming: what each connection's applied key says its transactions reached.
    pub(super) fn read_applied(&mut self) -> Result<(), LinkError> {
        let mut link = Link::open(&self.cfg.endpoint, self.cfg.timeout)?;
        for conn in 0..self.dest.connections() {
            let key = format!("{}{conn}", self.applied_prefix);
            if let Answer::Bulk(Some(v)) = link.call(&[b"GET", key.as_bytes()])? {
                self.applied[conn] = std::str::from_utf8(&v).ok().and_then(|v| v.parse().ok());
            }
        }
        link.close();
        Ok(())
    }

    /// True when a resumed run finds this log unit applied on its connection.
    pub(super) fn applied_before(&mut self, conn: usize, pos: Position) -> bool {
        if self.applied[conn].is_some_and(|a| mark(pos) <= a) {
            self.report.already_applied += 1;
            return true;
        }
        false
    }
}
