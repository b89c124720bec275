//! redis-migration: read Redis snapshots and command logs, and move their data.
//!
//! - [`check`] is the deep check of inputs, a consumer of the input stream.
//! - [`diff`](mod@diff) compares two datasets (files, folders, live servers) key by key, with a patch.
//! - [`duplicates`] finds keys in more than one snapshot file of a job (a folder of shard snapshots).
//! - [`aof`] reads AOF command logs (plain, RDB-preamble, multi-part).
//! - [`rdb`] decodes RDB files (every version, every encoding) into records.
//! - [`expiry`] applies expiry as Redis does when it loads a snapshot, or a snapshot and a log.
//! - [`filter`] selects records by db, key pattern, type and expiry.
//! - [`output`] renders records as JSON lines or text.
//! - [`glob`] is Redis's own glob matcher, over bytes.
//! - [`inspect`](mod@inspect) says what snapshots hold and what they cost in memory, a consumer of the input stream.
//! - [`live`] reads a live server as a dataset: SCAN, DUMP (decoded as a file's value is), expiries.
//! - [`input`] is the ordered input stream: every input of a job, in load order, to a consumer.
//! - [`translate`] turns records into the commands that recreate them (RESP).
//! - [`version`] maps server versions to the RDB versions they write, and back.
//! - [`resp`] encodes RESP.
//! - [`print`](mod@print) writes the stream as JSON lines, text or RESP, a consumer of the input stream.
//! - [`pipeline`] splits a file into batches decoded in parallel, delivered in order.
//! - [`net`] talks to servers: endpoints and URLs, TLS, links, raw snapshot transfers.
//! - [`replica`] is the live source: `capture` spools a master's snapshot and command stream (PSYNC).
//! - [`replay`] loads the stream into Redis or twemproxy over N pipelined connections.

pub mod aof;
pub mod check;
pub mod cli;
pub mod diff;
pub mod duplicates;
pub mod expiry;
pub mod filter;
pub mod glob;
pub mod input;
pub mod inspect;
pub mod live;
pub mod migrate;
pub mod net;
pub mod output;
pub mod pipeline;
pub mod print;
pub mod rdb;
pub mod replay;
pub mod replica;
pub mod resp;
pub mod source;
pub mod translate;
pub mod version;
