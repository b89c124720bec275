//! The destination seam: what a destination can do, and where each command goes.
//!
//! A replay asks the destination three things and nothing else: its capabilities
//! ([`Caps`]: SELECT, MULTI, function libraries), which databases it holds (`db`), whether
//! it takes a command at all (`takes`), and where a command on some keys goes (`route`: a
//! connection, a barrier that runs alone, or a refusal with its reason). Standalone Redis,
//! twemproxy and Redis Cluster (slots of the keys, one set of connections per master)
//! implement it here.

use std::collections::BTreeMap;

use crate::aof::keys::{keys, slot, Keys};
use crate::net::cluster::Topology;
use crate::net::Endpoint;

/// What the destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    Standalone,
    Twemproxy,
    Cluster,
}

impl std::fmt::Display for DestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DestKind::Standalone => "standalone Redis",
            DestKind::Twemproxy => "twemproxy",
            DestKind::Cluster => "Redis Cluster",
        })
    }
}

impl DestKind {
    /// The name in the JSON report.
    pub fn json_name(self) -> &'static str {
        match self {
            DestKind::Standalone => "standalone",
            DestKind::Twemproxy => "twemproxy",
            DestKind::Cluster => "cluster",
        }
    }
}

/// What a destination can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// SELECT moves a connection between databases.
    pub select: bool,
    /// MULTI … EXEC runs commands all or nothing (log commands go as transactions that
    /// record how far they got; MULTI blocks of the log stay blocks).
    pub multi: bool,
    /// FUNCTION LOAD and SCRIPT LOAD reach every node that runs them.
    pub functions: bool,
}

/// Where a command goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// On this connection, in order with the other commands of its keys.
    Conn(usize),
    /// Alone: everything before it is applied first, everything after waits for it
    /// (keys on several connections, or keys that cannot be known).
    Barrier,
    /// Not sent: the kind of refusal (a report heading) and why.
    Refuse(&'static str, String),
    /// Once on every node (a cluster's FUNCTION LOAD, SCRIPT LOAD, FLUSHALL), alone.
    Everywhere,
    /// As one command per group of arguments, each group's keys in one slot (a cluster's
    /// DEL, UNLINK, EXISTS, TOUCH, MSET across slots): the argv indices of each group
    /// (after the name), and the group's connection.
    Split(Vec<(usize, Vec<usize>)>),
}

/// A destination as a replay sees it.
pub trait Destination: Sync + Send {
    fn kind(&self) -> DestKind;
    fn caps(&self) -> Caps;
    /// Connections commands are spread over.
    fn connections(&self) -> usize;
    /// The destination db for source db `db` (after `--db-map`); `None` when the
    /// destination cannot hold it.
    fn db(&self, db: u64) -> Option<u64>;
    /// True when the destination takes command `argv` at all.
    fn takes(&self, argv: &[&[u8]]) -> bool;
    /// True when it takes every command (no need to ask [`Destination::takes`]).
    fn takes_every_command(&self) -> bool;
    /// The connection of a key's commands: by its slot, so that a key stays on one (and
    /// the keys of one hash tag with it).
    fn conn_of(&self, key: &[u8]) -> usize {
        slot(key) as usize % self.connections()
    }
    /// Where command `argv` goes (by its keys, unless the destination looks closer).
    fn route_command(&self, argv: &[&[u8]]) -> Route {
        self.route(&keys(argv))
    }
    /// The servers the connections reach (one for standalone Redis and twemproxy, the
    /// masters of a cluster), logging in as `base` does.
    fn nodes(&self, base: &Endpoint) -> Vec<Endpoint> {
        vec![base.clone()]
    }
    /// Which of [`Destination::nodes`] connection `conn` reaches.
    fn node_of_conn(&self, _conn: usize) -> usize {
        0
    }
    /// The first connection to node `node`.
    fn first_conn(&self, _node: usize) -> usize {
        0
    }
    /// A cluster's connections: a slot of their master, for the applied key of log
    /// transactions that touch no key (`None`: not a cluster, one applied key per
    /// connection will do).
    fn home_slot(&self, _conn: usize) -> Option<u16> {
        None
    }
    /// Replicas, which a cluster's SCRIPT LOAD reaches too (scripts are not replicated
    /// since 7.0).
    fn replicas(&self, _base: &Endpoint) -> Vec<Endpoint> {
        Vec::new()
    }
    /// Replicas of node `node` (a cluster's master), which WAIT asks for.
    fn replica_count(&self, _node: usize) -> usize {
        0
    }
    /// Plain strings of the snapshot go in MSET batches per group (and db): the
    /// connection, or the slot where one MSET must hold keys of one slot.
    fn batch_group(&self, key: &[u8]) -> usize {
        self.conn_of(key)
    }
    /// Where a command of db `db` on `keys` goes.
    fn route(&self, keys: &Keys<'_>) -> Route {
        match keys {
            Keys::Some(ks) => {
                let first = self.conn_of(ks[0]);
                if ks[1..].iter().all(|k| self.conn_of(k) == first) {
                    Route::Conn(first)
                } else {
                    Route::Barrier
                }
            }
            Keys::None => Route::Conn(0),
            // SWAPDB / MOVE / FLUSHALL change what other dbs hold, not which db is
            // selected; scripts and module commands touch what they like.
            Keys::Global | Keys::Unknown => Route::Barrier,
        }
    }
}

/// A standalone Redis: every command, every db.
pub struct Standalone {
    pub n: usize,
    pub db_map: BTreeMap<u64, u64>,
}

impl Destination for Standalone {
    fn kind(&self) -> DestKind {
        DestKind::Standalone
    }

    fn caps(&self) -> Caps {
        Caps { select: true, multi: true, functions: true }
    }

    fn connections(&self) -> usize {
        self.n
    }

    fn db(&self, db: u64) -> Option<u64> {
        Some(self.db_map.get(&db).copied().unwrap_or(db))
    }

    fn takes(&self, _argv: &[&[u8]]) -> bool {
        true
    }

    fn takes_every_command(&self) -> bool {
        true
    }
}

/// twemproxy (nutcracker): db 0 only, no SELECT, no MULTI, no function libraries, and
/// only the commands of its table ([`super::proxy::takes`]); a command it does not take
/// closes the connection instead of an error reply.
pub struct Twemproxy {
    pub n: usize,
    pub db_map: BTreeMap<u64, u64>,
}

impl Destination for Twemproxy {
    fn kind(&self) -> DestKind {
        DestKind::Twemproxy
    }

    fn caps(&self) -> Caps {
        Caps { select: false, multi: false, functions: false }
    }

    fn connections(&self) -> usize {
        self.n
    }

    fn db(&self, db: u64) -> Option<u64> {
        let d = self.db_map.get(&db).copied().unwrap_or(db);
        (d == 0).then_some(d)
    }

    fn takes(&self, argv: &[&[u8]]) -> bool {
        super::proxy::takes(argv)
    }

    fn takes_every_command(&self) -> bool {
        false
    }
}

/// A Redis Cluster: db 0 only, no SELECT; `clients` connections to each master, a key's
/// commands on one of its slot's master by the slot; a MULTI only when all its keys
/// share a slot (`getNodeByQuery` in cluster.c answers CROSSSLOT otherwise).
pub struct Cluster {
    pub clients: usize,
    pub db_map: BTreeMap<u64, u64>,
    pub topology: Topology,
}

/// How a cluster takes a command, by its keys (cluster.c, `getNodeByQuery`: every key
/// of a command in one slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterCommand {
    /// Keys of one slot (`None`: no key at all).
    Slot(Option<u16>),
    /// Keys of several slots in a command that means the same split by slot.
    Split,
    /// A command on the whole server: sent to every master.
    Everywhere,
    /// Not sent, and why.
    Refused(&'static str),
}

impl ClusterCommand {
    pub fn of(argv: &[&[u8]]) -> ClusterCommand {
        let name = argv.first().copied().unwrap_or_default();
        match keys(argv) {
            Keys::None => ClusterCommand::Slot(None),
            Keys::Some(ks) => {
                let first = slot(ks[0]);
                if ks[1..].iter().all(|k| slot(k) == first) {
                    ClusterCommand::Slot(Some(first))
                } else if split_groups(argv).is_some() {
                    ClusterCommand::Split
                } else {
                    ClusterCommand::Refused("keys in several slots")
                }
            }
            Keys::Global => {
                let every = [&b"FUNCTION"[..], b"SCRIPT", b"FLUSHALL", b"FLUSHDB"];
                if every.iter().any(|n| name.eq_ignore_ascii_case(n)) {
                    ClusterCommand::Everywhere
                } else {
                    ClusterCommand::Refused("acts on other databases or on keys it does not name")
                }
            }
            Keys::Unknown => ClusterCommand::Refused("its keys cannot be known"),
        }
    }
}

/// DEL, UNLINK, EXISTS, TOUCH and MSET over keys of several slots, as groups of
/// argument indices, one group per slot in the order of their first key; `None` for
/// any other command (its meaning would change split).
fn split_groups(argv: &[&[u8]]) -> Option<Vec<(u16, Vec<usize>)>> {
    let name = argv.first()?;
    let step = if [&b"DEL"[..], b"UNLINK", b"EXISTS", b"TOUCH"].iter().any(|n| name.eq_ignore_ascii_case(n)) {
        1
    } else if name.eq_ignore_ascii_case(b"MSET") && argv.len() % 2 == 1 {
        2
    } else {
        return None;
    };
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    for i in (1..argv.len()).step_by(step) {
        let s = slot(argv[i]);
        let g = match groups.iter().position(|g| g.0 == s) {
            Some(g) => g,
            None => {
                groups.push((s, Vec::new()));
                groups.len() - 1
            }
        };
        groups[g].1.extend(i..i + step);
    }
    (argv.len() > 1).then_some(groups)
}

impl Cluster {
    fn conn_of_slot(&self, slot: u16) -> usize {
        let master = self.topology.master_of(slot).unwrap_or(0);
        master * self.clients + slot as usize % self.clients
    }
}

impl Destination for Cluster {
    fn kind(&self) -> DestKind {
        DestKind::Cluster
    }

    fn caps(&self) -> Caps {
        Caps { select: false, multi: true, functions: true }
    }

    fn connections(&self) -> usize {
        self.topology.masters.len() * self.clients
    }

    fn db(&self, db: u64) -> Option<u64> {
        let d = self.db_map.get(&db).copied().unwrap_or(db);
        (d == 0).then_some(d)
    }

    fn takes(&self, _argv: &[&[u8]]) -> bool {
        true
    }

    fn takes_every_command(&self) -> bool {
        true
    }

    fn conn_of(&self, key: &[u8]) -> usize {
        self.conn_of_slot(slot(key))
    }

    fn route_command(&self, argv: &[&[u8]]) -> Route {
        match ClusterCommand::of(argv) {
            ClusterCommand::Slot(Some(s)) => Route::Conn(self.conn_of_slot(s)),
            ClusterCommand::Slot(None) => Route::Conn(0),
            ClusterCommand::Everywhere => Route::Everywhere,
            ClusterCommand::Split => Route::Split(
                split_groups(argv)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(s, args)| (self.conn_of_slot(s), args))
                    .collect(),
            ),
            ClusterCommand::Refused(why) => {
                Route::Refuse("CROSSSLOT", format!("{} cannot take it: {why}", self.kind()))
            }
        }
    }

    fn route(&self, keys: &Keys<'_>) -> Route {
        match keys {
            Keys::Some(ks) if ks[1..].iter().all(|k| slot(k) == slot(ks[0])) => Route::Conn(self.conn_of(ks[0])),
            Keys::None => Route::Conn(0),
            _ => Route::Refuse("CROSSSLOT", format!("{} cannot take it: keys in several slots", self.kind())),
        }
    }

    fn nodes(&self, base: &Endpoint) -> Vec<Endpoint> {
        self.topology.masters.iter().map(|m| m.node.endpoint(base)).collect()
    }

    fn node_of_conn(&self, conn: usize) -> usize {
        conn / self.clients
    }

    fn first_conn(&self, node: usize) -> usize {
        node * self.clients
    }

    fn home_slot(&self, conn: usize) -> Option<u16> {
        self.topology.first_slot(conn / self.clients)
    }

    fn replicas(&self, base: &Endpoint) -> Vec<Endpoint> {
        self.topology.masters.iter().flat_map(|m| m.replicas.iter().map(|r| r.endpoint(base))).collect()
    }

    fn batch_group(&self, key: &[u8]) -> usize {
        slot(key) as usize
    }

    fn replica_count(&self, node: usize) -> usize {
        self.topology.masters.get(node).map_or(0, |m| m.replicas.len())
    }
}

/// A key in slot `s`: `{tag}` hash-tagged into it, the shortest decimal tag there is
/// (a cluster's applied keys live in the slot of the commands they vouch for).
pub fn slot_tag(s: u16) -> &'static str {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        // One pass over 0, 1, 2…: each slot gets the first number that lands in it.
        let mut tags = vec![String::new(); crate::net::cluster::SLOTS];
        let mut left = tags.len();
        for i in 0u32.. {
            let t = i.to_string();
            let s = slot(t.as_bytes()) as usize;
            if tags[s].is_empty() {
                tags[s] = t;
                left -= 1;
                if left == 0 {
                    break;
                }
            }
        }
        tags
    });
    &tags[s as usize % tags.len()]
}

/// The destination of `kind` over `n` connections (to each master, for a cluster, whose
/// topology is `topology`).
pub fn of(kind: DestKind, n: usize, db_map: &BTreeMap<u64, u64>, topology: Option<Topology>) -> Box<dyn Destination> {
    let db_map = db_map.clone();
    match (kind, topology) {
        (DestKind::Twemproxy, _) => Box::new(Twemproxy { n, db_map }),
        (DestKind::Cluster, Some(topology)) => Box::new(Cluster { clients: n, db_map, topology }),
        _ => Box::new(Standalone { n, db_map }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ks: &[&'static str]) -> Keys<'static> {
        Keys::Some(ks.iter().map(|k| k.as_bytes()).collect())
    }

    #[test]
    fn routes_keep_a_key_on_one_connection() {
        let d = Standalone { n: 4, db_map: BTreeMap::new() };
        let one = d.route(&keys(&["user:1"]));
        assert_eq!(one, Route::Conn(slot(b"user:1") as usize % 4));
        // Keys of one hash tag share a slot, so a connection.
        assert_eq!(d.route(&keys(&["{u}.a", "{u}.b"])), Route::Conn(slot(b"u") as usize % 4));
        let spread = (0..64).map(|i| format!("k{i}")).collect::<Vec<_>>();
        let spread: Vec<&str> = spread.iter().map(String::as_str).collect();
        assert_eq!(d.route(&Keys::Some(spread.iter().map(|k| k.as_bytes()).collect())), Route::Barrier);
        assert_eq!(d.route(&Keys::Global), Route::Barrier);
        assert_eq!(d.route(&Keys::Unknown), Route::Barrier);
        assert_eq!(d.route(&Keys::None), Route::Conn(0));
    }

    #[test]
    fn twemproxy_holds_db_0_only() {
        let mut db_map = BTreeMap::new();
        db_map.insert(3, 0);
        let t = Twemproxy { n: 2, db_map };
        assert_eq!((t.db(0), t.db(3), t.db(1)), (Some(0), Some(0), None));
        assert!(t.takes(&[b"SET", b"k", b"v"]) && !t.takes(&[b"XADD", b"s", b"*", b"f", b"v"]));
        assert!(!t.caps().multi && !t.caps().select);
        let s = Standalone { n: 1, db_map: BTreeMap::new() };
        assert_eq!(s.db(7), Some(7));
    }

    #[test]
    fn cluster_commands_by_slot() {
        let c = |args: &[&str]| {
            let argv: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            ClusterCommand::of(&argv)
        };
        assert_eq!(c(&["SET", "{u}a", "1"]), ClusterCommand::Slot(Some(slot(b"u"))));
        assert_eq!(c(&["RENAME", "{u}a", "{u}b"]), ClusterCommand::Slot(Some(slot(b"u"))));
        assert_eq!(c(&["PING"]), ClusterCommand::Slot(None));
        assert_eq!(c(&["DEL", "a", "b"]), ClusterCommand::Split);
        assert_eq!(c(&["MSET", "a", "1", "b", "2"]), ClusterCommand::Split);
        assert!(matches!(c(&["RENAME", "a", "b"]), ClusterCommand::Refused(_)));
        assert!(matches!(c(&["MSETNX", "a", "1", "b", "2"]), ClusterCommand::Refused(_)));
        assert!(matches!(c(&["SWAPDB", "0", "1"]), ClusterCommand::Refused(_)));
        assert!(matches!(c(&["EVAL", "return 1", "0"]), ClusterCommand::Refused(_)));
        assert_eq!(c(&["FUNCTION", "LOAD", "x"]), ClusterCommand::Everywhere);
        assert_eq!(c(&["FLUSHALL"]), ClusterCommand::Everywhere);
        // MSET pairs stay together, groups in the order of their first key.
        let argv: Vec<&[u8]> = ["MSET", "a", "1", "b", "2", "{a}x", "3"].iter().map(|a| a.as_bytes()).collect();
        assert_eq!(split_groups(&argv), Some(vec![(slot(b"a"), vec![1, 2, 5, 6]), (slot(b"b"), vec![3, 4])]));
    }

    #[test]
    fn slot_tags_land_in_their_slot() {
        for s in [0u16, 1, 5460, 5461, 12182, 16383] {
            let tag = slot_tag(s);
            assert_eq!(slot(format!("redis-migration:applied:1:{{{tag}}}").as_bytes()), s);
        }
    }
}
