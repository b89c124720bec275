//! A cluster that changes under the replay, as one connection meets it: a command
//! answered `MOVED` (its slot is served elsewhere now), `ASK` (its key is being migrated:
//! ask the importing node once, after `ASKING`), `TRYAGAIN` (a command on several keys,
//! or an MSET batch, while their slot migrates) or `CLUSTERDOWN` (a failover under way)
//! is sent on to the node that serves it, on a side link, and the outcome is what the
//! connection records for it. When the connection's own master is no longer a master
//! (a failover), the connection moves to the new one instead (see `Worker::heal`).
//!
//! Redirections follow cluster.c, `getNodeByQuery` and `clusterRedirectClient`.

use std::time::{Duration, Instant};

use crate::net::cluster::{Redirect, Topology};
use crate::net::{Endpoint, Link, LinkError};
use crate::resp::reply::Reply;

/// What a connection into a cluster needs to follow it.
#[derive(Debug, Clone)]
pub struct ClusterLink {
    /// Every node known at the start (any of them can tell the topology).
    pub seeds: Vec<Endpoint>,
    /// A slot of the connection's master: whoever serves it is the connection's master.
    pub home_slot: u16,
    /// Replicas of that master: what `WAIT` asks for before the answered commands count
    /// as applied (0: at once).
    pub replicas: usize,
}

/// Redirections met, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClusterCounts {
    pub moved: u64,
    pub ask: u64,
    pub tryagain: u64,
    pub refreshes: u64,
    /// Snapshot keys sent again after a lost connection or a failover.
    pub resent_keys: u64,
}

impl ClusterCounts {
    pub fn merge(&mut self, o: ClusterCounts) {
        self.moved += o.moved;
        self.ask += o.ask;
        self.tryagain += o.tryagain;
        self.refreshes += o.refreshes;
        self.resent_keys += o.resent_keys;
    }
}

/// The kinds of answer a cluster gives instead of running a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Detour {
    Go(Redirect),
    TryAgain,
    Down,
}

impl Detour {
    /// `None` for an answer that is not a redirection (an ordinary error).
    pub(super) fn of(msg: &[u8]) -> Option<Detour> {
        if let Some(r) = Redirect::parse(msg) {
            return Some(Detour::Go(r));
        }
        if msg.starts_with(b"TRYAGAIN") {
            return Some(Detour::TryAgain);
        }
        // CLUSTERDOWN: the cluster is down or the slot unbound; also a node that lost
        // its master's link and is read-only.
        if msg.starts_with(b"CLUSTERDOWN") {
            return Some(Detour::Down);
        }
        None
    }
}

/// The outcome of a command sent on.
pub(super) enum Outcome {
    /// It ran: the error messages its replies hold (none: all well).
    Done(Vec<String>),
    /// The connection's own master has changed: move the connection there.
    Repoint(Endpoint),
}

/// A connection's side links and what it knows of the topology.
pub(super) struct Redirector {
    pub(super) cfg: ClusterLink,
    timeout: Duration,
    retry_for: Duration,
    side: Vec<(Endpoint, Link)>,
    topology: Option<Topology>,
    refreshed_at: Option<Instant>,
    pub(super) counts: ClusterCounts,
}

impl Redirector {
    pub(super) fn new(cfg: ClusterLink, timeout: Duration, retry_for: Duration) -> Redirector {
        Redirector {
            cfg,
            timeout,
            retry_for,
            side: Vec::new(),
            topology: None,
            refreshed_at: None,
            counts: ClusterCounts::default(),
        }
    }

    /// Reads the topology again, at most every 100 ms (a burst of MOVED asks once).
    pub(super) fn refresh(&mut self) -> Option<&Topology> {
        if self.refreshed_at.is_none_or(|t| t.elapsed() >= Duration::from_millis(100)) {
            self.refreshed_at = Some(Instant::now());
            self.counts.refreshes += 1;
            // Known masters first: a dead one is passed over.
            let mut order: Vec<Endpoint> = Vec::new();
            if let Some(t) = &self.topology {
                let template = &self.cfg.seeds[0];
                order.extend(t.nodes().map(|n| n.endpoint(template)));
            }
            order.extend(self.cfg.seeds.iter().cloned());
            if let Ok(t) = Topology::refresh(order.iter(), self.timeout.min(Duration::from_secs(2))) {
                self.topology = Some(t);
            }
        }
        self.topology.as_ref()
    }

    /// Where the connection to `current` belongs now, by a fresh topology (`None`: it
    /// could not be read, or `current` is still a master: a reshard moves slots, not the
    /// connection). A master that is gone or a replica now was failed over: the
    /// connection goes to the master serving its home slot, whose replica count becomes
    /// the one `WAIT` asks for.
    pub(super) fn failed_over(&mut self, current: &Endpoint) -> Option<Endpoint> {
        let slot = self.cfg.home_slot;
        let template = self.cfg.seeds[0].clone();
        let t = self.refresh()?;
        let is = |n: &crate::net::cluster::Node| n.host == current.host && n.port == current.port;
        if let Some(m) = t.masters.iter().find(|m| is(&m.node)) {
            self.cfg.replicas = m.replicas.len();
            return None;
        }
        let m = &t.masters[t.master_of(slot)?];
        let (ep, replicas) = (m.node.endpoint(&template), m.replicas.len());
        self.cfg.replicas = replicas;
        Some(ep)
    }

    fn link(&mut self, to: &Endpoint) -> Result<&mut Link, LinkError> {
        let i = match self.side.iter().position(|(ep, _)| ep.host == to.host && ep.port == to.port) {
            Some(i) => i,
            None => {
                self.side.push((to.clone(), Link::open(to, self.timeout)?));
                self.side.len() - 1
            }
        };
        Ok(&mut self.side[i].1)
    }

    fn drop_link(&mut self, to: &Endpoint) {
        self.side.retain(|(ep, l)| {
            let same = ep.host == to.host && ep.port == to.port;
            if same {
                l.close();
            }
            !same
        });
    }

    /// Sends `cmds` (whole commands, `replies` of them: one command, or MULTI … EXEC)
    /// on from the connection to `current`, which answered `first`. `slot`: the slot of
    /// their keys, to find its owner when the cluster is down. Gives up after
    /// `--retry-for`.
    pub(super) fn forward(
        &mut self,
        cmds: &[u8],
        replies: usize,
        first: &[u8],
        current: &Endpoint,
        slot: Option<u16>,
    ) -> Result<Outcome, String> {
        self.forward_from(cmds, replies, first, current, slot, true)
    }

    fn forward_from(
        &mut self,
        cmds: &[u8],
        replies: usize,
        first: &[u8],
        current: &Endpoint,
        slot: Option<u16>,
        mut from_connection: bool,
    ) -> Result<Outcome, String> {
        let deadline = Instant::now() + self.retry_for;
        let mut answer = first.to_vec();
        let mut at = current.clone();
        let mut asking = false;
        loop {
            let Some(detour) = Detour::of(&answer) else {
                return Ok(Outcome::Done(vec![String::from_utf8_lossy(&answer).into_owned()]));
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "still redirected after --retry-for ({:?}): {}",
                    self.retry_for,
                    String::from_utf8_lossy(&answer)
                ));
            }
            match detour {
                Detour::Go(Redirect::Moved { host, port, .. }) => {
                    self.counts.moved += 1;
                    // The connection's own master gone (a failover)? Move the connection.
                    if from_connection {
                        if let Some(home) = self.failed_over(current) {
                            return Ok(Outcome::Repoint(home));
                        }
                    }
                    at = Endpoint { host, port, ..current.clone() };
                    asking = false;
                }
                Detour::Go(Redirect::Ask { host, port, .. }) => {
                    self.counts.ask += 1;
                    at = Endpoint { host, port, ..current.clone() };
                    asking = true;
                }
                Detour::TryAgain => {
                    // The slot is being migrated and the keys are split between the two
                    // nodes. An MSET batch goes as one SET per key (each key is on one
                    // node or the other, which lasts until the slot has moved); anything
                    // else asks again (of the same node) until the slot has moved.
                    self.counts.tryagain += 1;
                    if replies == 1 {
                        if let Some(sets) = split_mset(cmds) {
                            let mut errors = Vec::new();
                            for set in sets {
                                let answer = match self.send(&at, &set, 1, asking) {
                                    Ok(Sent::Ran(e)) => {
                                        errors.extend(e);
                                        continue;
                                    }
                                    Ok(Sent::Redirected(msg)) => msg,
                                    Err(e) if e.is_connection() => {
                                        self.drop_link(&at);
                                        b"CLUSTERDOWN the node did not answer".to_vec()
                                    }
                                    Err(e) => return Err(format!("sending a redirected command to {at}: {e}")),
                                };
                                match self.forward_from(&set, 1, &answer, &at, slot, false)? {
                                    Outcome::Done(e) => errors.extend(e),
                                    Outcome::Repoint(_) => unreachable!("only the connection's own answer repoints"),
                                }
                            }
                            return Ok(Outcome::Done(errors));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Detour::Down => {
                    std::thread::sleep(Duration::from_millis(100));
                    let template = current.clone();
                    if let Some(t) = self.refresh() {
                        if let Some(m) = slot.and_then(|s| t.master_of(s)) {
                            at = t.masters[m].node.endpoint(&template);
                        }
                    }
                    asking = false;
                }
            }
            from_connection = false;
            match self.send(&at, cmds, replies, asking) {
                Ok(Sent::Redirected(msg)) => answer = msg,
                Ok(Sent::Ran(errors)) => return Ok(Outcome::Done(errors)),
                Err(e) if e.is_connection() => {
                    // The node is gone: learn who serves the slot now.
                    self.drop_link(&at);
                    answer = b"CLUSTERDOWN the node did not answer".to_vec();
                }
                Err(e) => return Err(format!("sending a redirected command to {at}: {e}")),
            }
        }
    }

    /// `cmds` on a side link to `to` (after ASKING when asked): their replies' errors, or
    /// the first redirection among them.
    fn send(&mut self, to: &Endpoint, cmds: &[u8], replies: usize, asking: bool) -> Result<Sent, LinkError> {
        let link = self.link(to)?;
        if asking {
            link.send_command(&[b"ASKING"])?;
        }
        link.send(cmds)?;
        if asking {
            link.next_reply(|_| ())?;
        }
        let mut redirected = None;
        let mut errors = Vec::new();
        for _ in 0..replies {
            link.next_reply(|r| {
                if let Reply::Error(e) = r {
                    if redirected.is_none() && Detour::of(e).is_some() {
                        redirected = Some(e.to_vec());
                    }
                    // EXECABORT follows a refused queued command: not an error of its own.
                    if !e.starts_with(b"EXECABORT") {
                        errors.push(String::from_utf8_lossy(e).into_owned());
                    }
                } else if let Reply::Array(Some(items)) = r {
                    for item in items {
                        if let Some(e) = item.first_error() {
                            errors.push(String::from_utf8_lossy(e).into_owned());
                        }
                    }
                }
            })?;
        }
        Ok(match redirected {
            Some(r) => Sent::Redirected(r),
            None => Sent::Ran(errors),
        })
    }

    /// `GET key` where `first` (a node's answer to it) sends it: MOVED or ASK followed.
    pub(super) fn get(&mut self, key: &[u8], first: &[u8], current: &Endpoint) -> Result<Option<Vec<u8>>, String> {
        let mut answer = first.to_vec();
        for _ in 0..16 {
            let (to, asking) = match Detour::of(&answer) {
                Some(Detour::Go(Redirect::Moved { host, port, .. })) => {
                    (Endpoint { host, port, ..current.clone() }, false)
                }
                Some(Detour::Go(Redirect::Ask { host, port, .. })) => {
                    (Endpoint { host, port, ..current.clone() }, true)
                }
                _ => break,
            };
            let link = self.link(&to).map_err(|e| e.to_string())?;
            if asking {
                link.send_command(&[b"ASKING"]).map_err(|e| e.to_string())?;
                link.next_reply(|_| ()).map_err(|e| e.to_string())?;
            }
            link.send_command(&[b"GET", key]).map_err(|e| e.to_string())?;
            let got = link
                .next_reply(|r| match r {
                    Reply::Bulk(b) => Ok(b.map(<[u8]>::to_vec)),
                    Reply::Error(e) => Err(e.to_vec()),
                    other => Err(format!("{other:?}").into_bytes()),
                })
                .map_err(|e| e.to_string())?;
            match got {
                Ok(v) => return Ok(v),
                Err(e) => answer = e,
            }
        }
        Err(String::from_utf8_lossy(&answer).into_owned())
    }

    pub(super) fn close(&self) {
        for (_, l) in &self.side {
            l.close();
        }
    }
}

/// An MSET of several keys as one SET per key; `None` for anything else.
fn split_mset(cmd: &[u8]) -> Option<Vec<Vec<u8>>> {
    let Ok(Some((Reply::Array(Some(argv)), _))) = crate::resp::reply::parse(cmd) else { return None };
    let args: Vec<&[u8]> = argv
        .iter()
        .map(|a| match a {
            Reply::Bulk(Some(b)) => Some(*b),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if !args.first()?.eq_ignore_ascii_case(b"MSET") || args.len() < 5 || args.len() % 2 == 0 {
        return None;
    }
    Some(
        args[1..]
            .chunks(2)
            .map(|kv| {
                let mut out = Vec::new();
                crate::resp::encode::command(&mut out, &[b"SET", kv[0], kv[1]]);
                out
            })
            .collect(),
    )
}

enum Sent {
    Redirected(Vec<u8>),
    Ran(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detours_and_ordinary_errors() {
        assert_eq!(
            Detour::of(b"MOVED 3999 127.0.0.1:7002"),
            Some(Detour::Go(Redirect::Moved { slot: 3999, host: "127.0.0.1".into(), port: 7002 }))
        );
        assert!(matches!(Detour::of(b"ASK 1 h:2"), Some(Detour::Go(Redirect::Ask { .. }))));
        assert_eq!(Detour::of(b"TRYAGAIN Multiple keys request during rehashing of slot"), Some(Detour::TryAgain));
        assert_eq!(Detour::of(b"CLUSTERDOWN The cluster is down"), Some(Detour::Down));
        assert_eq!(Detour::of(b"WRONGTYPE Operation against a key holding the wrong kind of value"), None);
        assert_eq!(Detour::of(b"MOVED nonsense"), None);
    }

    #[test]
    fn an_mset_splits_into_sets() {
        let mut mset = Vec::new();
        crate::resp::encode::command(&mut mset, &[b"MSET", b"{a}1", b"x", b"{a}2", b"y"]);
        let mut want = Vec::new();
        crate::resp::encode::command(&mut want, &[b"SET", b"{a}1", b"x"]);
        let mut second = Vec::new();
        crate::resp::encode::command(&mut second, &[b"SET", b"{a}2", b"y"]);
        assert_eq!(split_mset(&mset), Some(vec![want, second]));
        let mut one = Vec::new();
        crate::resp::encode::command(&mut one, &[b"MSET", b"k", b"v"]);
        assert_eq!(split_mset(&one), None);
        let mut other = Vec::new();
        crate::resp::encode::command(&mut other, &[b"DEL", b"a", b"b"]);
        assert_eq!(split_mset(&other), None);
        assert_eq!(split_mset(b"garbage"), None);
    }
}
