//! Redis Cluster topology: which master serves each of the 16384 slots, where it is,
//! its node id and how many replicas it has; read from `CLUSTER SHARDS` (Redis 7.0+) or
//! `CLUSTER SLOTS` (older), and read again from any reachable known node. Also the
//! redirections a node answers (`-MOVED slot host:port`, `-ASK slot host:port`).
//!
//! Shared by whoever talks to a whole cluster (replay's destination; later `diff` and the
//! live source). It knows nodes and slots, never chunks, retries or reports.

use std::time::Duration;

use super::endpoint::Endpoint;
use super::link::{Link, LinkError};
use crate::resp::reply::Reply;

/// Slots of a Redis Cluster (`CLUSTER_SLOTS` in cluster.h).
pub const SLOTS: usize = 16384;

/// A node's address and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub host: String,
    pub port: u16,
    /// The 40-character node id (empty when the reply did not give one).
    pub id: String,
}

impl Node {
    /// The endpoint of this node, logging in and encrypting as `template` does.
    pub fn endpoint(&self, template: &Endpoint) -> Endpoint {
        Endpoint { host: self.host.clone(), port: self.port, ..template.clone() }
    }
}

/// A master and its replicas (those the node answering does not see failing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    pub node: Node,
    pub replicas: Vec<Node>,
}

/// The slot map of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Masters that serve slots, in the order the reply listed them.
    pub masters: Vec<Master>,
    /// Per slot, the index of its master in `masters` (`u16::MAX`: nobody serves it).
    owner: Vec<u16>,
}

const NOBODY: u16 = u16::MAX;

impl Topology {
    /// The index in `masters` of the master serving `slot`.
    pub fn master_of(&self, slot: u16) -> Option<usize> {
        self.owner.get(slot as usize).copied().filter(|&m| m != NOBODY).map(usize::from)
    }

    /// Slots no master serves, as inclusive ranges.
    pub fn uncovered(&self) -> Vec<(u16, u16)> {
        let mut out: Vec<(u16, u16)> = Vec::new();
        for (s, &m) in self.owner.iter().enumerate() {
            if m != NOBODY {
                continue;
            }
            let s = s as u16;
            match out.last_mut() {
                Some(r) if r.1 + 1 == s => r.1 = s,
                _ => out.push((s, s)),
            }
        }
        out
    }

    /// The first slot each master serves (a slot to put a master's own keys in).
    pub fn first_slot(&self, master: usize) -> Option<u16> {
        self.owner.iter().position(|&m| m as usize == master).map(|s| s as u16)
    }

    /// Every node: masters, then replicas.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.masters.iter().map(|m| &m.node).chain(self.masters.iter().flat_map(|m| m.replicas.iter()))
    }

    fn empty() -> Topology {
        Topology { masters: Vec::new(), owner: vec![NOBODY; SLOTS] }
    }

    /// Serves `from..=to` by `master`, added when new (by address).
    fn assign(&mut self, master: Master, from: i64, to: i64) -> Result<(), LinkError> {
        if !(0..SLOTS as i64).contains(&from) || !(from..SLOTS as i64).contains(&to) {
            return Err(bad(format!("slot range {from}-{to} outside 0-{}", SLOTS - 1)));
        }
        let i = match self
            .masters
            .iter()
            .position(|m| m.node.host == master.node.host && m.node.port == master.node.port)
        {
            Some(i) => i,
            None => {
                self.masters.push(master);
                self.masters.len() - 1
            }
        };
        for s in from..=to {
            self.owner[s as usize] = i as u16;
        }
        Ok(())
    }

    /// Parses a `CLUSTER SHARDS` reply (cluster.c, `clusterCommandShards` and
    /// `addShardReplyForClusterShards`): per shard a map of `slots` (start, end pairs)
    /// and `nodes` (maps with `id`, `ip`, `endpoint`, `port`/`tls-port`, `role`,
    /// `health`). `asked`: the host of the node that answered, for an endpoint it gives
    /// as `""`. The master is the node whose role is `master` and not failing; its
    /// replicas count unless failing (`loading` only means its offset, as gossip last
    /// told it, was 0: `addNodeDetailsToShardReply` in cluster.c).
    pub fn parse_shards(r: &Reply<'_>, asked: &str, tls: bool) -> Result<Topology, LinkError> {
        let shards = array(r, "CLUSTER SHARDS")?;
        let mut t = Topology::empty();
        for shard in shards {
            let shard = map(shard, "a shard")?;
            let slots = array(get(&shard, "slots")?, "slots")?;
            let nodes = array(get(&shard, "nodes")?, "nodes")?;
            let mut master = None;
            let mut replicas = Vec::new();
            for n in nodes {
                let n = map(n, "a node")?;
                let text = |k: &str| get(&n, k).ok().and_then(text);
                let int = |k: &str| match get(&n, k) {
                    Ok(Reply::Int(i)) => Some(*i),
                    _ => None,
                };
                let port = if tls { int("tls-port") } else { int("port") }
                    .or_else(|| int("port"))
                    .ok_or_else(|| bad("a node without a port".into()))?;
                let host = match text("endpoint") {
                    Some(e) if !e.is_empty() && e != "?" => e,
                    _ => text("ip").filter(|i| !i.is_empty()).unwrap_or_else(|| asked.to_string()),
                };
                let node = Node { host, port: port_of(port)?, id: text("id").unwrap_or_default() };
                match (text("role").as_deref(), text("health").as_deref()) {
                    (Some("master"), Some("fail")) => {}
                    (Some("master"), _) => master = Some(node),
                    (_, Some("fail")) => {}
                    _ => replicas.push(node),
                }
            }
            if slots.len() % 2 != 0 {
                return Err(bad("an odd number of slot bounds".into()));
            }
            let Some(node) = master else { continue };
            let master = Master { node, replicas };
            for pair in slots.chunks(2) {
                match (&pair[0], &pair[1]) {
                    (Reply::Int(a), Reply::Int(b)) => t.assign(master.clone(), *a, *b)?,
                    _ => return Err(bad("slot bounds that are not integers".into())),
                }
            }
        }
        Ok(t)
    }

    /// Parses a `CLUSTER SLOTS` reply (cluster.c, `clusterCommandSlots`): per range
    /// start, end, the master (`[host, port, id, …]`), then its replicas (only those not
    /// failing are listed). A host `""` is the node that answered (`asked`).
    pub fn parse_slots(r: &Reply<'_>, asked: &str) -> Result<Topology, LinkError> {
        let ranges = array(r, "CLUSTER SLOTS")?;
        let mut t = Topology::empty();
        for range in ranges {
            let items = array(range, "a slot range")?;
            let (Some(Reply::Int(from)), Some(Reply::Int(to))) = (items.first(), items.get(1)) else {
                return Err(bad("a slot range without integer bounds".into()));
            };
            let mut nodes = items[2..].iter().map(|n| {
                let f = array(n, "a node")?;
                let host = f.first().and_then(text).ok_or_else(|| bad("a node without a host".into()))?;
                let Some(Reply::Int(port)) = f.get(1) else { return Err(bad("a node without a port".into())) };
                let host = if host.is_empty() { asked.to_string() } else { host };
                Ok(Node { host, port: port_of(*port)?, id: f.get(2).and_then(text).unwrap_or_default() })
            });
            let node = nodes.next().ok_or_else(|| bad("a slot range without a master".into()))??;
            let replicas = nodes.collect::<Result<Vec<_>, _>>()?;
            t.assign(Master { node, replicas }, *from, *to)?;
        }
        Ok(t)
    }

    /// Reads the topology from the node at the other end of `link`: `CLUSTER SHARDS`,
    /// or `CLUSTER SLOTS` where a server older than 7.0 does not know it.
    pub fn read(link: &mut Link, asked: &str, tls: bool) -> Result<Topology, LinkError> {
        link.send_command(&[b"CLUSTER", b"SHARDS"])?;
        let shards = link.next_reply(|r| match r {
            Reply::Error(e) => Err(String::from_utf8_lossy(e).into_owned()),
            r => Ok(Topology::parse_shards(r, asked, tls)),
        })?;
        match shards {
            Ok(t) => t,
            Err(e) if e.contains("unknown subcommand") || e.starts_with("ERR Unknown") => {
                link.send_command(&[b"CLUSTER", b"SLOTS"])?;
                link.next_reply(|r| match r {
                    Reply::Error(e) => Err(bad(format!("CLUSTER SLOTS answered {}", String::from_utf8_lossy(e)))),
                    r => Topology::parse_slots(r, asked),
                })?
            }
            Err(e) => Err(bad(format!("CLUSTER SHARDS answered {e}"))),
        }
    }

    /// Reads the topology from the first of `nodes` that answers and serves every slot
    /// (a node that has not heard of a failover yet may still show a dead master, and
    /// one of a cluster still forming may lack slots: the next is asked).
    pub fn refresh<'n>(
        nodes: impl IntoIterator<Item = &'n Endpoint>,
        timeout: Duration,
    ) -> Result<Topology, LinkError> {
        let mut last = None;
        for ep in nodes {
            let got = Link::open(ep, timeout).and_then(|mut l| {
                let t = Topology::read(&mut l, &ep.host, ep.tls.is_some());
                l.close();
                t
            });
            match got {
                Ok(t) if t.uncovered().is_empty() => return Ok(t),
                Ok(t) => {
                    let (a, b) = t.uncovered()[0];
                    last = Some(bad(format!("{ep} serves no master for slots {a}-{b} (cluster down?)")));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| bad("no cluster node to ask".into())))
    }
}

/// A redirection a cluster node answers instead of running a command
/// (cluster.c, `clusterRedirectClient`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// `MOVED slot host:port`: the slot is served there now, for good.
    Moved { slot: u16, host: String, port: u16 },
    /// `ASK slot host:port`: this key is being imported there; ask once, after `ASKING`.
    Ask { slot: u16, host: String, port: u16 },
}

impl Redirect {
    /// Reads `MOVED …` / `ASK …` from an error message (without its `-`); `None` for
    /// any other error.
    pub fn parse(msg: &[u8]) -> Option<Redirect> {
        let msg = std::str::from_utf8(msg).ok()?;
        let mut words = msg.split(' ');
        let kind = words.next()?;
        let slot: u16 = words.next()?.parse().ok().filter(|&s: &u16| (s as usize) < SLOTS)?;
        let addr = words.next()?;
        // An IPv6 host holds colons: the port is after the last one.
        let (host, port) = addr.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        match kind {
            "MOVED" => Some(Redirect::Moved { slot, host, port }),
            "ASK" => Some(Redirect::Ask { slot, host, port }),
            _ => None,
        }
    }
}

fn bad(msg: String) -> LinkError {
    LinkError::Protocol(format!("cluster topology: {msg}"))
}

fn port_of(p: i64) -> Result<u16, LinkError> {
    u16::try_from(p).ok().filter(|&p| p != 0).ok_or_else(|| bad(format!("port {p} out of range")))
}

fn array<'r, 'a>(r: &'r Reply<'a>, what: &str) -> Result<&'r [Reply<'a>], LinkError> {
    match r {
        Reply::Array(Some(items)) => Ok(items),
        other => Err(bad(format!("{what} is not an array: {other:?}"))),
    }
}

/// A RESP2 map: an array of alternating names and values.
fn map<'r, 'a>(r: &'r Reply<'a>, what: &str) -> Result<Vec<(&'r [u8], &'r Reply<'a>)>, LinkError> {
    let items = array(r, what)?;
    if items.len() % 2 != 0 {
        return Err(bad(format!("{what} is a map of an odd length")));
    }
    items
        .chunks(2)
        .map(|kv| match &kv[0] {
            Reply::Bulk(Some(k)) | Reply::Simple(k) => Ok((*k, &kv[1])),
            other => Err(bad(format!("{what} has a field name that is not a string: {other:?}"))),
        })
        .collect()
}

fn get<'r, 'a>(m: &[(&'r [u8], &'r Reply<'a>)], name: &str) -> Result<&'r Reply<'a>, LinkError> {
    m.iter().find(|(k, _)| *k == name.as_bytes()).map(|x| x.1).ok_or_else(|| bad(format!("no field {name:?}")))
}

fn text(r: &Reply<'_>) -> Option<String> {
    match r {
        Reply::Bulk(Some(b)) | Reply::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::reply::parse;

    /// `CLUSTER SHARDS` of a 7.0.15 cluster of 3 masters and 3 replicas just created,
    /// trimmed: the first master's replica online, the second's still loading, the
    /// third's left out.
    const SHARDS: &[u8] = b"*3\r\n*4\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\nid\r\n$40\r\ne36f93637c5412f5b833c417cc7b902559d78fa5\r\n$4\r\nport\r\n:7102\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*14\r\n$2\r\nid\r\n$40\r\ndfe68d4ad20f2d8e9d37fcc50fa2f5a1c31fae42\r\n$4\r\nport\r\n:7105\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\nid\r\n$40\r\na37470facb8ce860f27d43565cfb9a3fc6e0f0ea\r\n$4\r\nport\r\n:7101\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*14\r\n$2\r\nid\r\n$40\r\nf34eec03175f801bf3074582ca38a7302b98c7c4\r\n$4\r\nport\r\n:7104\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$7\r\nloading\r\n*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\nfae17fb79880c2a22a7760da716921b69c282642\r\n$4\r\nport\r\n:7103\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";

    /// `CLUSTER SLOTS` of the same cluster (7.0.15), a moment later: the third master's
    /// replica not yet listed.
    const SLOTS_REPLY: &[u8] = b"*3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:7101\r\n$40\r\na37470facb8ce860f27d43565cfb9a3fc6e0f0ea\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n:7104\r\n$40\r\nf34eec03175f801bf3074582ca38a7302b98c7c4\r\n*0\r\n*4\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:7102\r\n$40\r\ne36f93637c5412f5b833c417cc7b902559d78fa5\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n:7105\r\n$40\r\ndfe68d4ad20f2d8e9d37fcc50fa2f5a1c31fae42\r\n*0\r\n*3\r\n:10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:7103\r\n$40\r\nfae17fb79880c2a22a7760da716921b69c282642\r\n*0\r\n";

    fn reply(bytes: &[u8]) -> Reply<'_> {
        parse(bytes).unwrap().unwrap().0
    }

    #[test]
    fn shards_give_masters_slots_and_online_replicas() {
        let t = Topology::parse_shards(&reply(SHARDS), "127.0.0.1", false).unwrap();
        assert!(t.uncovered().is_empty());
        let ports: Vec<u16> = t.masters.iter().map(|m| m.node.port).collect();
        assert_eq!(ports, [7102, 7101, 7103]);
        let at = |s| t.masters[t.master_of(s).unwrap()].node.port;
        assert_eq!((at(0), at(5460), at(5461), at(10922), at(10923), at(16383)), (7101, 7101, 7102, 7102, 7103, 7103));
        let replicas: Vec<usize> = t.masters.iter().map(|m| m.replicas.len()).collect();
        assert_eq!(replicas, [1, 1, 0]);
        assert_eq!(t.masters[0].replicas[0].port, 7105);
        assert_eq!(t.masters[1].node.id, "a37470facb8ce860f27d43565cfb9a3fc6e0f0ea");
        assert_eq!(t.first_slot(2), Some(10923));
        assert_eq!(t.nodes().count(), 5);
    }

    #[test]
    fn slots_give_the_same_map() {
        let t = Topology::parse_slots(&reply(SLOTS_REPLY), "127.0.0.1").unwrap();
        let s = Topology::parse_shards(&reply(SHARDS), "127.0.0.1", false).unwrap();
        for slot in [0u16, 100, 5460, 5461, 9000, 10922, 10923, 16383] {
            let port = |t: &Topology| t.masters[t.master_of(slot).unwrap()].node.port;
            assert_eq!(port(&t), port(&s), "slot {slot}");
        }
        assert_eq!(t.masters.iter().map(|m| m.replicas.len()).collect::<Vec<_>>(), [1, 1, 0]);
        assert_eq!(t.masters[0].replicas[0].id, "f34eec03175f801bf3074582ca38a7302b98c7c4");
    }

    #[test]
    fn gaps_and_empty_hosts() {
        // One range only, with the host left empty (the node that answered).
        let r = b"*1\r\n*3\r\n:0\r\n:99\r\n*3\r\n$0\r\n\r\n:7001\r\n$3\r\nabc\r\n";
        let t = Topology::parse_slots(&reply(r), "10.0.0.9").unwrap();
        assert_eq!(t.masters[0].node, Node { host: "10.0.0.9".into(), port: 7001, id: "abc".into() });
        assert_eq!(t.uncovered(), vec![(100, 16383)]);
        assert_eq!(t.master_of(100), None);
    }

    #[test]
    fn bad_replies_are_errors_not_panics() {
        for r in [
            &b"*1\r\n*2\r\n:0\r\n:99\r\n"[..],                      // no master
            b"*1\r\n*3\r\n:0\r\n:99999\r\n*2\r\n$1\r\nh\r\n:1\r\n", // slot out of range
            b"*1\r\n*3\r\n:9\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n",     // backwards
            b"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:70000\r\n", // port out of range
            b":1\r\n",
            b"*1\r\n:1\r\n",
        ] {
            assert!(Topology::parse_slots(&reply(r), "h").is_err(), "{}", String::from_utf8_lossy(r));
        }
        for r in [&b"*1\r\n*1\r\n$5\r\nslots\r\n"[..], b"*1\r\n*2\r\n$5\r\nslots\r\n:1\r\n", b"$2\r\nno\r\n"] {
            assert!(Topology::parse_shards(&reply(r), "h", false).is_err(), "{}", String::from_utf8_lossy(r));
        }
    }

    #[test]
    fn redirections() {
        assert_eq!(
            Redirect::parse(b"MOVED 15495 127.0.0.1:7103"),
            Some(Redirect::Moved { slot: 15495, host: "127.0.0.1".into(), port: 7103 })
        );
        assert_eq!(
            Redirect::parse(b"ASK 3999 [::1]:7001"),
            Some(Redirect::Ask { slot: 3999, host: "::1".into(), port: 7001 })
        );
        assert_eq!(Redirect::parse(b"MOVED 16384 h:1"), None);
        assert_eq!(Redirect::parse(b"TRYAGAIN Multiple keys request during rehashing of slot"), None);
        assert_eq!(Redirect::parse(b"ERR wrong"), None);
    }
}
