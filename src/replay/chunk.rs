//! What the engine hands a connection: chunks of whole units (a key's commands, a log
//! command, a MULTI block), all in one db; and the errors a destination answered, by kind.

use std::collections::BTreeMap;

pub use crate::input::Position;

/// Commands for one connection: whole units (a key's commands, an AOF command or MULTI
/// block), all in one db.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The db the commands run in; `None` for commands that need no db (FUNCTION LOAD).
    pub db: Option<u64>,
    /// The db the connection is on after the chunk (a MULTI block may SELECT inside).
    pub exit_db: Option<u64>,
    pub buf: Vec<u8>,
    /// End offset of each command in `buf`.
    pub ends: Vec<usize>,
    /// Units: the index of the first command of each, and its position in the input.
    pub units: Vec<(usize, Position)>,
    /// Snapshot units can be sent again after a lost connection (each rebuilds its key
    /// from scratch); log commands cannot (INCR, APPEND…).
    pub resendable: bool,
    /// The chunk's number on its connection (the engine's low-water mark counts them).
    pub seq: u64,
    /// Bytes the engine counts as held until the chunk is answered.
    pub weight: u64,
    /// For log commands on a server that has MULTI: the chunk is MULTI … SET applied-key
    /// MARK … EXEC, so that after a lost connection the applied key says whether it ran
    /// (all of it) or not (none of it). The mark is the encoded position of its last unit.
    pub transaction: Option<u64>,
    /// Into a cluster: the slot of the log commands in the chunk (a transaction runs
    /// only on keys of one slot, its applied key included).
    pub slot: Option<u16>,
    /// The key a transaction chunk records its mark in.
    pub applied_key: Vec<u8>,
}

/// Commands for one connection are sent in chunks of about this size.
pub const CHUNK_BYTES: usize = 256 << 10;

impl Chunk {
    /// An empty chunk with room for `CHUNK_BYTES` of commands.
    pub fn with_room() -> Chunk {
        Chunk { buf: Vec::with_capacity(CHUNK_BYTES), ends: Vec::with_capacity(4096), ..Chunk::default() }
    }

    /// Empties the chunk for reuse, keeping its buffers.
    pub(super) fn reset(&mut self) {
        self.db = None;
        self.exit_db = None;
        self.buf.clear();
        self.ends.clear();
        self.units.clear();
        self.resendable = false;
        self.seq = 0;
        self.weight = 0;
        self.transaction = None;
        self.slot = None;
        self.applied_key.clear();
    }

    pub fn start_of(&self, cmd: usize) -> usize {
        if cmd == 0 {
            0
        } else {
            self.ends[cmd - 1]
        }
    }

    /// Adds one whole command.
    pub fn push_command(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.ends.push(self.buf.len());
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The same chunk without the commands at `drop` (sorted): for a transaction the
    /// server aborted because of them.
    pub(super) fn without(&self, drop: &[usize]) -> Chunk {
        let mut c = Chunk {
            db: self.db,
            exit_db: self.exit_db,
            resendable: self.resendable,
            seq: self.seq,
            weight: self.weight,
            transaction: self.transaction,
            slot: self.slot,
            applied_key: self.applied_key.clone(),
            ..Chunk::default()
        };
        let mut unit = 0;
        for i in 0..self.ends.len() {
            while unit < self.units.len() && self.units[unit].0 == i {
                c.units.push((c.ends.len(), self.units[unit].1));
                unit += 1;
            }
            if drop.binary_search(&i).is_err() {
                c.push_command(&self.buf[self.start_of(i)..self.ends[i]]);
            }
        }
        c.units.dedup_by_key(|u| u.0);
        c.units.retain(|u| u.0 < c.ends.len());
        c
    }

    /// The unit holding command `cmd`.
    pub(super) fn unit_of(&self, cmd: usize) -> usize {
        self.units.partition_point(|&(first, _)| first <= cmd).saturating_sub(1)
    }
}

/// Errors the destination answered, by kind (the error's first word).
#[derive(Debug, Default, Clone)]
pub struct Errors {
    pub by_kind: BTreeMap<String, (u64, Vec<String>)>,
}

impl Errors {
    pub const EXAMPLES: usize = 5;

    pub fn total(&self) -> u64 {
        self.by_kind.values().map(|(n, _)| n).sum()
    }

    pub fn add(&mut self, kind: String, n: u64, example: impl FnOnce() -> String) {
        let e = self.by_kind.entry(kind).or_default();
        e.0 += n;
        if e.1.len() < Errors::EXAMPLES {
            e.1.push(example());
        }
    }

    pub fn merge(&mut self, o: Errors) {
        for (kind, (n, ex)) in o.by_kind {
            let e = self.by_kind.entry(kind).or_default();
            e.0 += n;
            let room = Errors::EXAMPLES.saturating_sub(e.1.len());
            e.1.extend(ex.into_iter().take(room));
        }
    }
}
