//! Log commands applied exactly once: on a destination with MULTI, each chunk of log
//! commands is one transaction that also records, in the connection's applied key, the
//! position of its last unit; after a lost connection (or a resumed run) that key says
//! what ran. Snapshot units need none of this: each rebuilds its key from scratch.

use super::chunk::Chunk;
use super::engine::Engine;
use super::Position;
use crate::net::cluster::Topology;
use crate::net::{Answer, Link, LinkError};

/// A position as one number, ordered like positions (the applied keys hold these).
pub(super) fn mark(p: Position) -> u64 {
    ((p.file as u64) << 40) | p.offset
}

impl Engine<'_> {
    /// Log commands as one transaction that also records, in the connection's applied
    /// key (db 0), the position of its last unit: MULTI, the commands, [SELECT 0], SET
    /// key mark, [SELECT db], EXEC. Into a cluster the applied key is the slot's
    /// (`…:{tag}`, hash-tagged into the slot of the chunk's commands), since a cluster
    /// runs a MULTI only on keys of one slot.
    pub(super) fn transaction(&mut self, conn: usize, c: Chunk) -> Chunk {
        use crate::resp::encode::{command, select};
        let Some(&(_, last)) = c.units.last() else { return c };
        let m = mark(last);
        let key = match c.slot.or_else(|| self.dest.home_slot(conn)) {
            Some(s) => {
                format!("{}{{{}}}", self.applied_prefix, super::dest::slot_tag(s))
            }
            None => format!("{}{conn}", self.applied_prefix),
        };
        self.applied_keys.entry(key.clone().into_bytes()).or_insert(self.dest.node_of_conn(conn));
        let mut t = Chunk {
            db: c.db,
            exit_db: c.exit_db,
            transaction: Some(m),
            slot: c.slot,
            applied_key: key.clone().into_bytes(),
            ..Chunk::default()
        };
        let mut cmd = Vec::with_capacity(96);
        command(&mut cmd, &[b"MULTI"]);
        t.push_command(&cmd);
        t.units = c.units.iter().map(|&(first, pos)| (first + 1, pos)).collect();
        let base = t.buf.len();
        t.buf.extend_from_slice(&c.buf);
        t.ends.extend(c.ends.iter().map(|e| e + base));
        // The applied key lives in db 0: SELECT 0 before its SET and back after it.
        let exit = c.exit_db.unwrap_or(0);
        let mut push = |write: &dyn Fn(&mut Vec<u8>)| {
            cmd.clear();
            write(&mut cmd);
            t.push_command(&cmd);
        };
        if exit != 0 {
            push(&|o| select(o, 0));
        }
        push(&|o| command(o, &[b"SET", key.as_bytes(), m.to_string().as_bytes()]));
        if exit != 0 {
            push(&|o| select(o, exit));
        }
        push(&|o| command(o, &[b"EXEC"]));
        t
    }

    /// At the end of a complete run: the applied keys deleted, each on its node (one DEL
    /// per key: a cluster's are in different slots).
    /// A cluster may have moved slots since (a reshard, a failover): each key goes to the
    /// master serving its slot now.
    pub(super) fn delete_applied_keys(&mut self) -> Result<(), LinkError> {
        let mut nodes = self.dest.nodes(&self.cfg.endpoint);
        let mut owner: Vec<(usize, &Vec<u8>)> = self.applied_keys.iter().map(|(k, &n)| (n, k)).collect();
        if self.dest.home_slot(0).is_some() {
            let seeds: Vec<_> = nodes.iter().cloned().chain(self.dest.replicas(&self.cfg.endpoint)).collect();
            let t = Topology::refresh(seeds.iter(), self.cfg.timeout)?;
            nodes = t.masters.iter().map(|m| m.node.endpoint(&self.cfg.endpoint)).collect();
            for (n, k) in &mut owner {
                *n = t.master_of(crate::aof::keys::slot(k)).unwrap_or(0);
            }
        }
        for (node, ep) in nodes.iter().enumerate() {
            let keys: Vec<&Vec<u8>> = owner.iter().filter(|(n, _)| *n == node).map(|(_, k)| *k).collect();
            if keys.is_empty() {
                continue;
            }
            let mut link = Link::open(ep, self.cfg.timeout)?;
            let mut out = Vec::new();
            for k in &keys {
                crate::resp::encode::command(&mut out, &[b"DEL", k]);
            }
            link.send(&out)?;
            for k in &keys {
                if let Some(e) =
                    link.next_reply(|r| r.first_error().map(|e| String::from_utf8_lossy(e).into_owned()))?
                {
                    let key = String::from_utf8_lossy(k);
                    return Err(LinkError::Protocol(format!("DEL {key} on {ep} answered {e}")));
                }
            }
            link.close();
        }
        Ok(())
    }

    /// Resuming: what each connection's applied key says its transactions reached (into
    /// a cluster: each slot's, asked of the master serving the slot now).
    pub(super) fn read_applied(&mut self) -> Result<(), LinkError> {
        let read = if self.dest.home_slot(0).is_some() { self.read_applied_slots() } else { self.read_applied_conns() };
        self.max_applied = self.applied.iter().flatten().max().copied();
        read
    }

    fn read_applied_conns(&mut self) -> Result<(), LinkError> {
        let mut link = Link::open(&self.cfg.endpoint, self.cfg.timeout)?;
        for conn in 0..self.dest.connections() {
            let key = format!("{}{conn}", self.applied_prefix);
            if let Answer::Bulk(Some(v)) = link.call(&[b"GET", key.as_bytes()])? {
                self.applied[conn] = std::str::from_utf8(&v).ok().and_then(|v| v.parse().ok());
                // The earlier run's key: deleted at the end like this run's.
                self.applied_keys.insert(key.into_bytes(), 0);
            }
        }
        link.close();
        Ok(())
    }

    fn read_applied_slots(&mut self) -> Result<(), LinkError> {
        let nodes = self.dest.nodes(&self.cfg.endpoint);
        let seeds: Vec<_> = nodes.iter().cloned().chain(self.dest.replicas(&self.cfg.endpoint)).collect();
        let t = Topology::refresh(seeds.iter(), self.cfg.timeout)?;
        for (m, master) in t.masters.iter().enumerate() {
            let slots: Vec<u16> =
                (0..crate::net::cluster::SLOTS as u16).filter(|&s| t.master_of(s) == Some(m)).collect();
            let mut link = Link::open(&master.node.endpoint(&self.cfg.endpoint), self.cfg.timeout)?;
            let mut out = Vec::new();
            for &s in &slots {
                let key = format!("{}{{{}}}", self.applied_prefix, super::dest::slot_tag(s));
                crate::resp::encode::command(&mut out, &[b"GET", key.as_bytes()]);
            }
            link.send(&out)?;
            for &s in &slots {
                let got = link.next_reply(|r| match r {
                    crate::resp::reply::Reply::Bulk(b) => Ok(b.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())),
                    crate::resp::reply::Reply::Error(e) => Err(String::from_utf8_lossy(e).into_owned()),
                    other => Err(format!("{other:?}")),
                })?;
                // A slot moving while we read: its fate cannot be known, so stop.
                let got =
                    got.map_err(|e| LinkError::Protocol(format!("GET of the applied key of slot {s} answered {e}")))?;
                if got.is_some() {
                    let key = format!("{}{{{}}}", self.applied_prefix, super::dest::slot_tag(s));
                    self.applied_keys.insert(key.into_bytes(), m);
                }
                self.applied[s as usize] = got;
            }
            link.close();
        }
        Ok(())
    }

    /// Which applied mark vouches for a log unit on connection `conn` whose keys are in
    /// `slot`: the connection's, or into a cluster the slot's (the connection's home
    /// slot for a unit with no key).
    pub(super) fn applied_index(&self, conn: usize, slot: Option<u16>) -> usize {
        match self.dest.home_slot(conn) {
            Some(home) => slot.unwrap_or(home) as usize,
            None => conn,
        }
    }

    /// True when a resumed run finds this log unit applied (`index`: see
    /// `applied_index`).
    pub(super) fn applied_before(&mut self, index: usize, pos: Position) -> bool {
        if self.applied.get(index).copied().flatten().is_some_and(|a| mark(pos) <= a) {
            self.report.already_applied += 1;
            return true;
        }
        // Before the furthest mark of any connection: it was in doubt, and is sent.
        if self.max_applied.is_some_and(|a| mark(pos) <= a) {
            self.report.in_doubt_sent += 1;
        }
        false
    }
}
