//! The network layer: how we reach a Redis server (or a proxy in front of one) and move
//! bytes to and from it. `replay` writes through it, and so will the live source (a
//! PSYNC replica client) and `diff` (reading live servers with SCAN and DUMP).
//!
//! It owns sockets, TLS, logging in, buffering, RESP framing on the wire (through
//! [`crate::resp`]) and raw transfers. It must not know what the bytes mean: no RDB or
//! AOF decoding, no replay logic (chunks, routing, retries, reports), no clap.
//!
//! - [`endpoint`]: where a server is ([`Endpoint`], never shown with its password) and `redis://` URLs.
//! - [`tls`]: the rustls client configuration, from CA, client certificate and server-name options.
//! - [`link`]: one connection ([`Link`]): connect, AUTH, call, pipeline, read lines and replies.
//! - [`cluster`]: a Redis Cluster's slot map (CLUSTER SHARDS / SLOTS) and its redirections (MOVED, ASK).
//! - [`bulk`]: a snapshot transfer (`$<len>` or `$EOF:<mark>`) read raw into a file in bounded memory.

pub mod bulk;
pub mod cluster;
pub mod endpoint;
pub mod link;
pub mod tls;

pub use bulk::{BulkError, Framing, Payload};
pub use endpoint::{parse_url, Endpoint, Url, UrlError};
pub use link::{Answer, Link, LinkError};
