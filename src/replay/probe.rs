//! The probe: what the destination is, asked before anything of the input is written.
//! SET/DUMP/DEL of a probe key gives its RDB version (the DUMP footer); `SELECT 0` tells
//! Redis, which answers, from twemproxy, which closes the connection; INFO (Redis only:
//! it closes a twemproxy connection) gives `redis_version`, and `redis_mode:cluster` (or
//! a probe key answered with MOVED) a Redis Cluster node, whose slot map is then read.

use std::time::Duration;

use super::dest::DestKind;
use crate::net::cluster::{Redirect, Topology};
use crate::net::{Answer, Endpoint, Link, LinkError};
use crate::version::{version_of_rdb, Version};

/// What the destination is.
#[derive(Debug, Clone)]
pub struct Probe {
    pub kind: DestKind,
    /// The RDB version of its DUMP payloads.
    pub rdb_version: Option<u32>,
    /// `redis_version` of INFO (asked only of a standalone server: INFO closes a
    /// twemproxy connection; Valkey reports the Redis version it is compatible with).
    pub version: Option<Version>,
    /// A cluster's slot map.
    pub topology: Option<Topology>,
}

impl Probe {
    /// The version to make commands and payloads for: the more precise of the two answers
    /// (RDB 9 was written from Redis 5.0 to 6.2).
    pub fn target(&self) -> Option<Version> {
        let from_dump = self.rdb_version.map(version_of_rdb);
        match (from_dump, self.version) {
            (Some(d), Some(v)) if v.rdb_version() == d.rdb_version() => Some(v.max(d)),
            (Some(d), _) => Some(d),
            (None, v) => v,
        }
    }
}

/// Asks the destination what it is. `write`: SET/DUMP/DEL a probe key for the payload
/// version (a dry run only PINGs).
pub fn probe(ep: &Endpoint, timeout: Duration, write: bool, kind: Option<DestKind>) -> Result<Probe, LinkError> {
    let mut link = Link::open(ep, timeout)?;
    match link.call(&[b"PING"])? {
        Answer::Error(e) if e.starts_with("NOAUTH") => {
            return Err(LinkError::Auth(format!(
                "{e} (give the password with -dauth, --to or REDISMIGRATION_TARGET_PASSWORD)"
            )))
        }
        Answer::Error(e) => return Err(LinkError::Protocol(format!("PING answered {e}"))),
        _ => {}
    }
    let mut rdb_version = None;
    let mut moved = false;
    if write {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let key = format!("redis-migration:probe:{}:{nanos}", std::process::id());
        let mut set = link.call(&[b"SET", key.as_bytes(), b"1"])?;
        // A cluster node that does not serve the probe key's slot names the one that does.
        let mut owner = None;
        if let Answer::Error(e) = &set {
            if let Some(Redirect::Moved { host, port, .. }) = Redirect::parse(e.as_bytes()) {
                moved = true;
                let mut l = Link::open(&Endpoint { host, port, ..ep.clone() }, timeout)?;
                set = l.call(&[b"SET", key.as_bytes(), b"1"])?;
                owner = Some(l);
            }
        }
        if let Answer::Error(e) = set {
            return Err(LinkError::Protocol(format!("SET of a probe key answered {e}")));
        }
        let on = owner.as_mut().unwrap_or(&mut link);
        if let Answer::Bulk(Some(p)) = on.call(&[b"DUMP", key.as_bytes()])? {
            if p.len() >= 10 {
                rdb_version = Some(u16::from_le_bytes([p[p.len() - 10], p[p.len() - 9]]) as u32);
            }
        }
        on.call(&[b"DEL", key.as_bytes()])?;
        if let Some(l) = owner {
            l.close();
        }
    }
    let forced = kind.is_some();
    let mut kind = match kind {
        Some(k) => k,
        None if moved => DestKind::Cluster,
        None => match link.call(&[b"SELECT", b"0"]) {
            Ok(Answer::Simple(_)) => DestKind::Standalone,
            Ok(_) => DestKind::Twemproxy,
            Err(e) if e.is_connection() => DestKind::Twemproxy,
            Err(e) => return Err(e),
        },
    };
    let mut version = None;
    if kind != DestKind::Twemproxy {
        if let Ok(Answer::Bulk(Some(info))) = link.call(&[b"INFO", b"server"]) {
            let info = String::from_utf8_lossy(&info);
            version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).and_then(Version::parse);
            if !forced && info.lines().any(|l| l.trim_end() == "redis_mode:cluster") {
                kind = DestKind::Cluster;
            }
        }
    }
    let mut topology = None;
    if kind == DestKind::Cluster {
        let t = Topology::read(&mut link, &ep.host, ep.tls.is_some())?;
        if let Some(&(a, b)) = t.uncovered().first() {
            return Err(LinkError::Protocol(format!(
                "the cluster serves no master for slots {a}-{b} (cluster_state not ok?)"
            )));
        }
        topology = Some(t);
    }
    link.close();
    Ok(Probe { kind, rdb_version, version, topology })
}
