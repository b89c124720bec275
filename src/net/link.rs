//! One connection to a server: our own RESP writer and reply reader over a plain TCP or
//! TLS socket (no client library: redis-rs sends CLIENT SETINFO, which twemproxy answers
//! by closing the connection).
//!
//! [`Link`] is the socket with a read buffer: [`Link::open`] connects within a timeout
//! and logs in (`AUTH [user] password`); [`Link::call`] sends one command and waits for its
//! reply (set-up work: AUTH, probes, EXISTS); [`Link::send`] and [`Link::replies`] let a
//! pipelining caller write and read on its own schedule; [`Link::read_line`] reads the
//! bare lines of the replication handshake, and `read_bulk_payload` (in `bulk.rs`) a
//! snapshot transfer. Replies are decoded by [`crate::resp::reply`]; the link only
//! buffers bytes and hands them over.
//!
//! The timeout given to `open` bounds every later read and write too: a server that
//! takes or answers nothing for that long is [`LinkError::Timeout`].

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::endpoint::Endpoint;
use crate::resp::encode::command;
use crate::resp::reply::{self, Reply};

/// Why a link failed. [`LinkError::is_connection`] tells a lost connection (worth
/// reconnecting) from a refusal or garbage. The messages still speak of "the
/// destination" and `--timeout`, as replay's reports always have; other users wrap them.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("the server did not answer within the timeout (--timeout)")]
    Timeout,
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("unreadable reply: {0}")]
    Protocol(String),
    #[error("TLS: {0}")]
    Tls(String),
}

impl LinkError {
    /// A fault of the connection (as opposed to a refusal or garbage).
    pub fn is_connection(&self) -> bool {
        matches!(self, LinkError::Io(_) | LinkError::Closed | LinkError::Timeout)
    }
}

impl From<std::io::Error> for LinkError {
    /// A socket's read or write timeout shows as `WouldBlock` (or `TimedOut`).
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => LinkError::Timeout,
            _ => LinkError::Io(e),
        }
    }
}

/// A reply to a set-up command, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    /// An array: only its length is kept.
    Array(usize),
}

impl Answer {
    fn from(r: &Reply<'_>) -> Answer {
        match r {
            Reply::Simple(s) => Answer::Simple(String::from_utf8_lossy(s).into_owned()),
            Reply::Error(s) => Answer::Error(String::from_utf8_lossy(s).into_owned()),
            Reply::Int(i) => Answer::Int(*i),
            Reply::Bulk(b) => Answer::Bulk(b.map(<[u8]>::to_vec)),
            Reply::Array(a) => Answer::Array(a.as_ref().map_or(0, Vec::len)),
        }
    }
}

/// A plain or TLS socket.
enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.sock,
        }
    }

    fn shutdown(&self) {
        let _ = self.socket().shutdown(Shutdown::Both);
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(t) => t.flush(),
        }
    }
}

/// A socket to a server and the bytes read from it that nobody has taken yet.
pub struct Link {
    stream: Transport,
    buf: Vec<u8>,
    /// Unread bytes start at `buf[start..]`.
    start: usize,
    /// Longest reply taken ([`Link::set_max_reply`]).
    max_reply: usize,
}

/// Read at least this much at a time.
const READ_CHUNK: usize = 64 << 10;
/// Longest reply read (replies to RESTORE, SET, EXISTS, DUMP of the probe key are short).
const MAX_REPLY: usize = 64 << 20;

impl Link {
    /// Connects and logs in (`AUTH [user] password`) when a password is set. `timeout`
    /// bounds the connection and then every read and write (`Duration::ZERO`: connect
    /// within 10 s, then wait as long as it takes).
    pub fn open(ep: &Endpoint, timeout: Duration) -> Result<Link, LinkError> {
        let mut last = None;
        let addrs = (ep.host.as_str(), ep.port).to_socket_addrs()?;
        let (connect, io) = match timeout {
            Duration::ZERO => (Duration::from_secs(10), None),
            t => (t, Some(t)),
        };
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, connect) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(io)?;
                    stream.set_write_timeout(io)?;
                    let stream = match &ep.tls {
                        None => Transport::Plain(stream),
                        Some(tls) => {
                            let conn = rustls::ClientConnection::new(tls.config.clone(), tls.name.clone())
                                .map_err(|e| LinkError::Tls(e.to_string()))?;
                            Transport::Tls(Box::new(rustls::StreamOwned::new(conn, stream)))
                        }
                    };
                    let mut stream = stream;
                    // The handshake now, so that a certificate problem is named as one.
                    if let Transport::Tls(t) = &mut stream {
                        while t.conn.is_handshaking() {
                            t.conn.complete_io(&mut t.sock).map_err(|e| LinkError::Tls(e.to_string()))?;
                        }
                    }
                    let mut link = Link { stream, buf: Vec::with_capacity(READ_CHUNK), start: 0, max_reply: MAX_REPLY };
                    link.auth(ep)?;
                    return Ok(link);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(LinkError::Io(last.unwrap_or_else(|| std::io::Error::other("the host name resolves to no address"))))
    }

    fn auth(&mut self, ep: &Endpoint) -> Result<(), LinkError> {
        let Some(pass) = &ep.password else { return Ok(()) };
        let answer = match &ep.user {
            Some(user) => self.call(&[b"AUTH", user.as_bytes(), pass.as_bytes()])?,
            None => self.call(&[b"AUTH", pass.as_bytes()])?,
        };
        match answer {
            Answer::Simple(_) => Ok(()),
            Answer::Error(e) => Err(LinkError::Auth(e)),
            other => Err(LinkError::Protocol(format!("AUTH answered {other:?}"))),
        }
    }

    /// Bounds every later read and write by `timeout` (`Duration::ZERO`: no bound), in
    /// place of the one given to [`Link::open`].
    pub fn set_timeout(&self, timeout: Duration) -> Result<(), LinkError> {
        let io = (timeout != Duration::ZERO).then_some(timeout);
        let sock = self.stream.socket();
        sock.set_read_timeout(io)?;
        sock.set_write_timeout(io)?;
        Ok(())
    }

    /// Takes replies of up to `bytes` (64 MB unless set): a reader of values (`DUMP` of a
    /// big key) needs more than the short replies of a replay. The buffer grows with the
    /// bytes that arrive, never by a length the server announces.
    pub fn set_max_reply(&mut self, bytes: usize) {
        self.max_reply = bytes;
    }

    /// Sends one command and waits for its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Answer, LinkError> {
        self.send_command(args)?;
        self.next_reply(Answer::from)
    }

    /// Sends one command without waiting for a reply.
    pub fn send_command(&mut self, args: &[&[u8]]) -> Result<(), LinkError> {
        let mut out = Vec::new();
        command(&mut out, args);
        self.send(&out)
    }

    /// Sends bytes holding whole commands.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        self.stream.write_all(bytes).map_err(LinkError::from)
    }

    /// Reads until one whole reply is there; hands it to `f`.
    pub fn next_reply<T>(&mut self, f: impl FnOnce(&Reply<'_>) -> T) -> Result<T, LinkError> {
        loop {
            if let Some((r, used)) =
                reply::parse(&self.buf[self.start..]).map_err(|e| LinkError::Protocol(e.to_string()))?
            {
                let t = f(&r);
                self.start += used;
                return Ok(t);
            }
            self.fill()?;
        }
    }

    /// Reads once, then hands every whole reply in the buffer to `f` (which may stop
    /// early by returning false).
    pub fn replies(&mut self, mut f: impl FnMut(&Reply<'_>) -> bool) -> Result<(), LinkError> {
        self.fill()?;
        while let Some((r, used)) =
            reply::parse(&self.buf[self.start..]).map_err(|e| LinkError::Protocol(e.to_string()))?
        {
            let go_on = f(&r);
            self.start += used;
            if !go_on {
                break;
            }
        }
        Ok(())
    }

    /// Reads one line, up to its `\n`, and returns it without its `\n` or `\r\n`: the way
    /// a replica reads the master's answers during the handshake (replication.c,
    /// `receiveSynchronousResponse` and `connSyncReadLine`), where a bare newline is a
    /// keepalive the caller skips. A line of more than `max` bytes is an error.
    pub fn read_line(&mut self, max: usize) -> Result<Vec<u8>, LinkError> {
        let mut searched = 0;
        loop {
            let unread = &self.buf[self.start..];
            if let Some(nl) = unread[searched..].iter().position(|&b| b == b'\n') {
                let nl = searched + nl;
                let line = unread[..nl].strip_suffix(b"\r").unwrap_or(&unread[..nl]).to_vec();
                self.start += nl + 1;
                return Ok(line);
            }
            if unread.len() > max {
                let shown = String::from_utf8_lossy(&unread[..unread.len().min(32)]).into_owned();
                return Err(LinkError::Protocol(format!("a line longer than {max} bytes, starting {shown:?}")));
            }
            searched = unread.len();
            self.fill()?;
        }
    }

    /// Raw bytes, at most `into.len()`: first those already read into the buffer, else
    /// what one read of the socket gives (blocking, within the timeout). `Closed` when the
    /// server has closed the connection; never `Ok(0)` unless `into` is empty.
    pub fn read_raw(&mut self, into: &mut [u8]) -> Result<usize, LinkError> {
        if into.is_empty() {
            return Ok(0);
        }
        let unread = &self.buf[self.start..];
        if !unread.is_empty() {
            let n = unread.len().min(into.len());
            into[..n].copy_from_slice(&unread[..n]);
            self.start += n;
            if self.start == self.buf.len() {
                self.buf.clear();
                self.start = 0;
            }
            return Ok(n);
        }
        loop {
            match self.stream.read(into) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LinkError::from(e)),
            }
        }
    }

    /// Reads what the socket has (blocking until something comes). Our commands get short
    /// replies: one that grows past `max_reply` (`MAX_REPLY` by default) unfinished is not
    /// a reply to them.
    fn fill(&mut self) -> Result<(), LinkError> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.len() - self.start > self.max_reply {
            return Err(LinkError::Protocol(format!("a reply longer than {} MB", self.max_reply >> 20)));
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK, 0);
        let n = loop {
            match self.stream.read(&mut self.buf[len..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.buf.truncate(len + *n.as_ref().unwrap_or(&0));
        match n {
            Ok(0) => Err(LinkError::Closed),
            Ok(_) => Ok(()),
            Err(e) => Err(LinkError::from(e)),
        }
    }

    /// Shuts the socket down both ways (a thread blocked reading it wakes up).
    pub fn close(&self) {
        self.stream.shutdown();
    }
}
