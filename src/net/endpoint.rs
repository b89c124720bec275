//! Where a server is and how to log in to it: [`Endpoint`], and the URLs operators write
//! for it, `redis://[user[:password]@]host[:port][/db]` (`rediss://` for TLS), read by
//! [`parse_url`].
//!
//! A password is never shown: not by `Display`, not by `Debug`.

use super::tls::Tls;

/// Where to connect and how to log in.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls: Option<Tls>,
}

/// `host:port` (`[host]:port` for an IPv6 address): never the user or the password.
impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Every field but the password, which shows as `"***"` when there is one.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// `redis://[user[:password]@]host[:port][/db]`, percent-decoded.
#[derive(Default, PartialEq)]
pub struct Url {
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: Option<u64>,
    /// `rediss://`.
    pub tls: bool,
}

/// Every field but the password, which shows as `"***"` when there is one.
impl std::fmt::Debug for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Url")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Why a URL could not be read. The messages name the URL as given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("{0}: expected redis://[user[:password]@]host[:port][/db] (rediss:// for TLS)")]
    Scheme(String),
    #[error("{0}: the db after / must be a number")]
    Db(String),
    #[error("{0}: unclosed [ in the host")]
    UnclosedBracket(String),
    #[error("{url}: bad port {port:?}")]
    Port { url: String, port: String },
    #[error("bad %-escape in the URL")]
    Escape,
    #[error("the URL's user or password is not UTF-8 once decoded")]
    NotUtf8,
}

/// Reads `redis://[user[:password]@]host[:port][/db]` or `rediss://…`. A missing host is
/// 127.0.0.1; a missing port stays `None` (the caller's default); `redis://password@host`
/// is a password, as `redis-cli -u` reads it.
pub fn parse_url(s: &str) -> Result<Url, UrlError> {
    let mut url = Url::default();
    let rest = if let Some(r) = s.strip_prefix("redis://") {
        r
    } else if let Some(r) = s.strip_prefix("rediss://") {
        url.tls = true;
        r
    } else {
        return Err(UrlError::Scheme(s.into()));
    };
    let (auth, hostpart) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    if let Some(auth) = auth {
        let (user, pass) = match auth.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (auth, None),
        };
        // redis://:password@host (no user) and redis://user:password@host
        if !user.is_empty() {
            url.user = Some(percent_decode(user)?);
        }
        url.password = pass.map(percent_decode).transpose()?;
        if url.password.is_none() && url.user.is_some() {
            // redis://password@host, as redis-cli -u reads it
            url.password = url.user.take();
        }
    }
    let (hostport, db) = match hostpart.split_once('/') {
        Some((h, d)) if !d.is_empty() => (h, Some(d.parse::<u64>().map_err(|_| UrlError::Db(s.into()))?)),
        Some((h, _)) => (h, None),
        None => (hostpart, None),
    };
    url.db = db;
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (h, after) = inner.split_once(']').ok_or_else(|| UrlError::UnclosedBracket(s.into()))?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    url.host = if host.is_empty() { "127.0.0.1".into() } else { host.into() };
    url.port =
        port.map(|p| p.parse::<u16>().map_err(|_| UrlError::Port { url: s.into(), port: p.into() })).transpose()?;
    Ok(url)
}

/// Decodes `%XX` escapes; the result must be UTF-8.
pub fn percent_decode(s: &str) -> Result<String, UrlError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            // Two hex digits exactly (`from_str_radix` alone would take "+1").
            let hex = b.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            let hex = hex.and_then(|h| std::str::from_utf8(h).ok());
            let v = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or(UrlError::Escape)?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("redis://alice:p%40ss@10.0.0.1:6380/2").unwrap();
        assert_eq!(
            u,
            Url {
                host: "10.0.0.1".into(),
                port: Some(6380),
                user: Some("alice".into()),
                password: Some("p@ss".into()),
                db: Some(2),
                tls: false
            }
        );
        let u = parse_url("redis://:secret@host").unwrap();
        assert_eq!((u.user, u.password.as_deref(), u.port), (None, Some("secret"), None));
        let u = parse_url("redis://[::1]:7000").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", Some(7000)));
        assert!(parse_url("rediss://h").unwrap().tls);
        assert!(parse_url("http://h").is_err());
        assert!(parse_url("redis://h:99999").is_err());
    }

    /// The messages the CLI has always printed.
    #[test]
    fn error_messages() {
        let msg = |s: &str| parse_url(s).map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            msg("http://h"),
            "http://h: expected redis://[user[:password]@]host[:port][/db] (rediss:// for TLS)"
        );
        assert_eq!(msg("redis://h/x"), "redis://h/x: the db after / must be a number");
        assert_eq!(msg("redis://[::1:7000"), "redis://[::1:7000: unclosed [ in the host");
        assert_eq!(msg("redis://h:99999"), "redis://h:99999: bad port \"99999\"");
        assert_eq!(msg("redis://a%4@h"), "bad %-escape in the URL");
        assert_eq!(msg("redis://a%+1@h"), "bad %-escape in the URL");
        assert_eq!(msg("redis://a%ff@h"), "the URL's user or password is not UTF-8 once decoded");
    }

    #[test]
    fn passwords_are_never_shown() {
        let u = parse_url("redis://alice:s3cr3t@h:1").unwrap();
        assert!(!format!("{u:?}").contains("s3cr3t"));
        let ep = Endpoint { host: u.host, port: 1, user: u.user, password: u.password, tls: None };
        assert_eq!(ep.to_string(), "h:1");
        assert!(!format!("{ep:?}").contains("s3cr3t"));
        let v6 = Endpoint { host: "::1".into(), port: 7000, user: None, password: None, tls: None };
        assert_eq!(v6.to_string(), "[::1]:7000");
    }
}
