//! The probe: what the destination is, asked before anything of the input is written.
//! SET/DUMP/DEL of a probe key gives its RDB version (the DUMP footer); `SELECT 0` tells
//! Redis, which answers, from twemproxy, which closes the connection; INFO (standalone
//! only: it closes a twemproxy connection) gives `redis_version`.

use std::time::Duration;

use super::dest::DestKind;
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
    if write {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let key = format!("redis-migration:probe:{}:{nanos}", std::process::id());
        let set = link.call(&[b"SET", key.as_bytes(), b"1"])?;
        if let Answer::Error(e) = set {
            return Err(LinkError::Protocol(format!("SET of a probe key answered {e}")));
        }
        if let Answer::Bulk(Some(p)) = link.call(&[b"DUMP", key.as_bytes()])? {
            if p.len() >= 10 {
                rdb_version = Some(u16::from_le_bytes([p[p.len() - 10], p[p.len() - 9]]) as u32);
            }
        }
        link.call(&[b"DEL", key.as_bytes()])?;
    }
    let kind = match kind {
        Some(k) => k,
        None => match link.call(&[b"SELECT", b"0"]) {
            Ok(Answer::Simple(_)) => DestKind::Standalone,
            Ok(_) => DestKind::Twemproxy,
            Err(e) if e.is_connection() => DestKind::Twemproxy,
            Err(e) => return Err(e),
        },
    };
    let mut version = None;
    if kind == DestKind::Standalone {
        if let Ok(Answer::Bulk(Some(info))) = link.call(&[b"INFO", b"server"]) {
            version = String::from_utf8_lossy(&info)
                .lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .and_then(Version::parse);
        }
    }
    link.close();
    Ok(Probe { kind, rdb_version, version })
}
