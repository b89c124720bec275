//! RESP, the protocol Redis speaks: encoding commands with exact lengths (no `format!`,
//! integers through `itoa`).

pub mod encode;
