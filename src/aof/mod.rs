//! AOF input: plain RESP command logs, RDB-preamble files (a snapshot, then commands),
//! and Redis 7 multi-part directories with their manifest (`aof.c`: `loadAppendOnlyFiles`
//! loads the base, then the incr files; `loadSingleAppendOnlyFile` loads one file).
//!
//! [`read_log`] turns a command log into units: one command, or a whole MULTI…EXEC
//! block, each command carrying the db its SELECTs put it in. A log that ends inside a
//! command, or inside a MULTI that never reached EXEC, is truncated: an error naming the
//! offset of the last complete unit, or (when allowed) the end of what is loaded, as
//! Redis's `aof-load-truncated` does. [`LogReader`] reads the same units one at a time
//! from a log that may still be growing (the end of the data is "call again", not a
//! truncation), and judges the end of a finished one apart.

pub mod keys;
pub mod manifest;
mod reader;
pub mod scan;
pub mod select;

pub use reader::{read_log, LogReader};

/// One command of a log, borrowing from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Command<'a> {
    /// The db the command runs in (0 until the log SELECTs another).
    pub db: u64,
    pub argv: Vec<&'a [u8]>,
    /// The command's bytes as written in the log.
    pub raw: &'a [u8],
    /// Offset of the command in the data read.
    pub offset: usize,
    /// The command re-encoded, when a filter narrowed its arguments to some of its keys.
    pub narrowed: Option<Vec<u8>>,
}

impl Command<'_> {
    /// The bytes to send: the log's own, or the narrowed command's.
    pub fn bytes(&self) -> &[u8] {
        self.narrowed.as_deref().unwrap_or(self.raw)
    }

    /// The command name, upper-cased (ASCII).
    pub fn name(&self) -> String {
        String::from_utf8_lossy(self.argv[0]).to_ascii_uppercase()
    }

    pub fn is(&self, name: &str) -> bool {
        self.argv[0].eq_ignore_ascii_case(name.as_bytes())
    }

    /// Commands that wipe or swap whole databases: replay refuses them by default.
    pub fn is_flush(&self) -> bool {
        self.is("FLUSHALL") || self.is("FLUSHDB") || self.is("SWAPDB")
    }
}

/// What the log holds, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Unit<'a> {
    /// One command (never SELECT: that only changes the db of the commands after it).
    One(Command<'a>),
    /// MULTI, the commands, EXEC: to be applied together.
    Multi(Vec<Command<'a>>),
    /// A `#TS:` annotation: the unix time at this point of the log.
    Timestamp(u64),
}

/// A log read up to a truncated tail that was allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Offset where loading stopped: the end of the last complete unit.
    pub at: usize,
    /// Bytes left out after it.
    pub dropped: usize,
    /// Why: an unfinished command, or a MULTI without EXEC.
    pub why: String,
}

/// Why a log could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {at}: {msg} (the last complete command ends at byte {last_good})")]
pub struct LogError {
    /// Where the problem is.
    pub at: usize,
    /// End of the last complete unit before it.
    pub last_good: usize,
    /// The data ends early (a crash, a copy cut short), as opposed to damaged bytes.
    pub truncated: bool,
    pub msg: String,
}

/// `--until`: where a log is cut by time. Commands after the first `#TS:` annotation later
/// than `until_s` are left out (MULTI blocks stay whole: the reader never reports an
/// annotation inside one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Until {
    pub until_s: u64,
    /// An annotation past `until_s` was met: everything from there on is out.
    pub reached: bool,
    /// Commands left out since.
    pub left_out: u64,
}

impl Until {
    pub fn new(until_s: u64) -> Until {
        Until { until_s, reached: false, left_out: 0 }
    }

    /// Sees one unit; true when it is to be used.
    pub fn admits(&mut self, unit: &Unit<'_>) -> bool {
        if let Unit::Timestamp(t) = unit {
            if *t > self.until_s {
                self.reached = true;
            }
        }
        if self.reached {
            self.left_out += match unit {
                Unit::One(_) => 1,
                Unit::Multi(b) => b.len() as u64 - 2,
                Unit::Timestamp(_) => 0,
            };
        }
        !self.reached
    }

    /// A line for the report.
    pub fn report(&self) -> String {
        if self.reached {
            format!("--until {}: {} AOF commands after it left out", self.until_s, self.left_out)
        } else {
            format!("--until {}: the AOF ends before it, nothing left out", self.until_s)
        }
    }
}

/// True when the log holds at least one `#TS:` annotation (Redis writes them only with
/// `aof-timestamp-enabled yes`).
pub fn has_timestamps(data: &[u8]) -> bool {
    let mut found = false;
    let _ = read_log(data, true, |u| found |= matches!(u, Unit::Timestamp(_)));
    found
}

/// Where an input's commands start: 0 for a plain log, just after the snapshot of an
/// RDB-preamble file; `None` for a snapshot alone (or one whose end cannot be found).
pub fn log_start(data: &[u8]) -> Option<usize> {
    if !is_rdb(data) {
        return Some(0);
    }
    let mut p = crate::rdb::Parser::new(data).ok()?.skim(true);
    while let Some(item) = p.next_item().ok()? {
        if let crate::rdb::Item::End { trailing, .. } = item {
            let at = data.len() - trailing;
            return matches!(data.get(at), Some(b'*' | b'#')).then_some(at);
        }
    }
    None
}

/// True for bytes that start with an RDB header (a snapshot, or an RDB-preamble AOF).
pub fn is_rdb(data: &[u8]) -> bool {
    data.starts_with(b"REDIS") || data.starts_with(b"VALKEY")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        out
    }

    fn log(cmds: &[&[&str]]) -> Vec<u8> {
        cmds.iter().flat_map(|c| cmd(c)).collect()
    }

    #[test]
    fn selects_and_transactions() {
        let data = log(&[&["SET", "a", "1"], &["SELECT", "3"], &["MULTI"], &["INCR", "b"], &["EXEC"], &["DEL", "a"]]);
        let mut units = Vec::new();
        assert_eq!(read_log(&data, false, |u| units.push(u.clone())), Ok(None));
        assert!(matches!(&units[0], Unit::One(c) if c.db == 0 && c.is("SET")));
        assert!(matches!(&units[1], Unit::Multi(b) if b.len() == 3 && b.iter().all(|c| c.db == 3)));
        assert!(matches!(&units[2], Unit::One(c) if c.db == 3 && c.is("DEL")));
    }

    #[test]
    fn an_open_multi_at_the_end_is_a_truncation() {
        let data = log(&[&["SET", "a", "1"], &["MULTI"], &["INCR", "b"]]);
        let err = read_log(&data, false, |_| {}).unwrap_err();
        assert!(err.truncated);
        let first_end = cmd(&["SET", "a", "1"]).len();
        assert_eq!(err.last_good, first_end);
        let mut n = 0;
        let cut = read_log(&data, true, |_| n += 1).unwrap().unwrap();
        assert_eq!((n, cut.at, cut.dropped), (1, first_end, data.len() - first_end));
    }

    #[test]
    fn a_cut_inside_a_command_loads_up_to_the_one_before() {
        let data = log(&[&["SET", "a", "1"], &["SET", "b", "2"]]);
        let first_end = cmd(&["SET", "a", "1"]).len();
        for cut in first_end + 1..data.len() {
            let err = read_log(&data[..cut], false, |_| {}).unwrap_err();
            assert!(err.truncated && err.last_good == first_end, "cut {cut}: {err}");
            let got = read_log(&data[..cut], true, |_| {}).unwrap().unwrap();
            assert_eq!(got.at, first_end);
        }
    }
}
