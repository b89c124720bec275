//! The network layer: how we reach a Redis server (or a proxy in front of one) and move
//! bytes to and from it. `replay` writes through it, and so will the live source (a
//! PSYNC replica client) and `diff` (reading live servers with SCAN and DUMP).
//!
//! It owns sockets, TLS, logging in, buffering, RESP framing on the wire (through
//! [`crate::resp`]) and raw transfers. It must not know what the bytes mean: no RDB or
//! AOF decoding, no replay logic (chunks, routing, retries, reports), no clap.
//!
//! - [`endpoint`]: [`Endpoint`] (host, port, user, password, TLS; shown without the
//!   password) and `redis://` / `rediss://` URLs ([`parse_url`]).
//! - [`tls`]: the rustls client configuration ([`tls::Tls`]) from CA, client certificate
//!   and server-name options.
//! - [`link`]: [`Link`], one connection (plain or TLS): connect within a timeout, AUTH,
//!   `call`, `send`, `replies`, `read_line`, `close`; [`LinkError`], [`Answer`].
//! - [`bulk`]: a snapshot transfer (`$<len>` or `$EOF:<mark>`, after keepalive newlines)
//!   read raw into any `Write` in bounded memory: [`Link::read_bulk_payload`].

pub mod bulk;
pub mod endpoint;
pub mod link;
pub mod tls;

pub use bulk::{BulkError, Framing, Payload};
pub use endpoint::{parse_url, Endpoint, Url, UrlError};
pub use link::{Answer, Link, LinkError};
