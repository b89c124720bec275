//! `inspect`: what a snapshot holds and what it costs in memory on a target server;
//! the page of `inspect --html` ([`html`]).

pub mod html;
pub mod memory;
