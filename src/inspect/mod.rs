//! `inspect`: what a snapshot holds and what it will cost in memory. For now only the
//! page of `inspect --html` ([`html`]), drawn from the inspect report's JSON document.

pub mod html;
