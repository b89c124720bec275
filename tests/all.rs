//! The one integration-test binary: real servers, the real binary, real fixtures.

mod util;

mod aof;
mod bad_input;
mod capture;
mod cli;
mod cluster;
mod diff;
mod faults;
mod folders;
mod golden;
mod html;
mod inspect;
mod live;
mod memory;
mod memory_data;
mod migrate;
mod net;
mod oracle;
mod replay;
mod sanitize;
mod translate;
