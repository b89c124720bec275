//! The destination seam: what a destination can do, and where each command goes.
//!
//! A replay asks the destination three things and nothing else: its capabilities
//! ([`Caps`]: SELECT, MULTI, function libraries), which databases it holds (`db`), whether
//! it takes a command at all (`takes`), and where a command on some keys goes (`route`: a
//! connection, a barrier that runs alone, or a refusal with its reason). Standalone Redis
//! and twemproxy implement it here; Redis Cluster will (slots of the keys, one set of
//! connections per master).

use std::collections::BTreeMap;

use crate::aof::keys::{slot, Keys};

/// What the destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    Standalone,
    Twemproxy,
}

impl std::fmt::Display for DestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DestKind::Standalone => "standalone Redis",
            DestKind::Twemproxy => "twemproxy",
        })
    }
}

impl DestKind {
    /// The name in the JSON report.
    pub fn json_name(self) -> &'static str {
        match self {
            DestKind::Standalone => "standalone",
            DestKind::Twemproxy => "twemproxy",
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

/// The destination of `kind` over `n` connections.
pub fn of(kind: DestKind, n: usize, db_map: &BTreeMap<u64, u64>) -> Box<dyn Destination> {
    let db_map = db_map.clone();
    match kind {
        DestKind::Standalone => Box::new(Standalone { n, db_map }),
        DestKind::Twemproxy => Box::new(Twemproxy { n, db_map }),
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
}
