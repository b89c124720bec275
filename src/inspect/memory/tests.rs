//! Whole-record figures checked against what the servers reported.
