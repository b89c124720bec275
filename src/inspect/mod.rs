//! `inspect`: what a snapshot holds and what it costs in memory on a target server.

pub mod memory;
