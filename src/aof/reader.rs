//! Reading a command log unit by unit, from a finished file or from one still growing.
//!
//! [`LogReader`] keeps offsets and state only (the position, the db the log's SELECTs
//! have chosen, the end of the last complete unit), never the bytes: each call is given
//! the whole log as far as it exists now, which may have grown since the call before.
//! As mini-redis's `Frame::check` tells "incomplete" from "invalid", the end of the data
//! is `Ok(None)` (call again when more bytes exist) and bad bytes are `Err`; whether a
//! finished file's end is a truncation is judged apart, by [`LogReader::finish`], as
//! Redis judges the end of an AOF it loads (`aof.c`, `loadSingleAppendOnlyFile`: a
//! command cut short is `aof-load-truncated`'s business, a MULTI left open without EXEC
//! too).
//!
//! A MULTI…EXEC block is one unit: it is returned once its EXEC is there. Until then the
//! reader rests at the MULTI and reads the block again from its start with more data, so
//! nothing it returns is ever taken back.

use super::scan::{Entry, ScanError, Scanner};
use super::{Command, Cut, LogError, Unit};

/// Why a finished log that ends inside a MULTI is cut there.
const OPEN_MULTI: &str = "the log ends inside a MULTI that has no EXEC";

/// A resumable reader of a RESP command log (see the module's documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogReader {
    /// Offset of the next entry to read: a unit boundary, never inside a MULTI.
    pos: usize,
    /// The db the log's SELECTs have chosen at `pos`.
    db: u64,
    /// End of the last complete unit (or SELECT) before `pos`.
    last_good: usize,
    /// Start of the MULTI that was still without its EXEC when the data last ended
    /// (`pos` is there).
    open_multi: Option<usize>,
}

/// How the data ends where a read stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tail {
    /// At a unit boundary: a finished log is whole.
    Whole,
    /// Inside a command, or inside a MULTI without EXEC: `at` is where, `last_good`
    /// where loading a finished log would stop.
    Open { at: usize, last_good: usize, msg: String },
}

impl Tail {
    /// The end of a finished log of `len` bytes: whole, cut where allowed, else an error.
    fn judge(self, len: usize, allow_truncated: bool) -> Result<Option<Cut>, LogError> {
        match self {
            Tail::Whole => Ok(None),
            Tail::Open { last_good, msg, .. } if allow_truncated => {
                Ok(Some(Cut { at: last_good, dropped: len.saturating_sub(last_good), why: msg }))
            }
            Tail::Open { at, last_good, msg } => Err(LogError { at, last_good, truncated: true, msg }),
        }
    }
}

impl LogReader {
    /// A reader at the start of a log (db 0).
    pub fn new() -> LogReader {
        LogReader::default()
    }

    /// A reader at the start of data that continues a log whose SELECTs chose `db`
    /// (a log followed in windows: each window is read from its start).
    pub fn continuing_in(db: u64) -> LogReader {
        LogReader { db, ..LogReader::default() }
    }

    /// Offset of the next byte to read: everything before it has been returned.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The db the log has selected at [`position`](Self::position).
    pub fn db(&self) -> u64 {
        self.db
    }

    /// End of the last complete unit: where loading a log cut here would stop.
    pub fn last_good(&self) -> usize {
        self.last_good
    }

    /// Start of a MULTI whose EXEC was not there yet when the data last ended.
    pub fn open_multi(&self) -> Option<usize> {
        self.open_multi
    }

    /// The next unit of `data` (the whole log as far as it exists now). `Ok(None)`: the
    /// data ends inside a unit, or at a unit boundary; call again when more bytes exist.
    /// `Err`: bytes that are not a command log (the same error again if called again).
    pub fn next<'a>(&mut self, data: &'a [u8]) -> Result<Option<Unit<'a>>, LogError> {
        self.next_with(data, &mut Vec::new())
    }

    /// [`next`](Self::next), taking a single command's argument vector from `argv`: give
    /// the vector of a returned `Unit::One` back there, and reading a log allocates per
    /// MULTI block, not per command.
    pub fn next_with<'a>(&mut self, data: &'a [u8], argv: &mut Vec<&'a [u8]>) -> Result<Option<Unit<'a>>, LogError> {
        let mut unit = None;
        self.read::<false>(data, argv, &mut |_| {}, &mut unit)?;
        Ok(unit)
    }

    /// Judges the end of `data` as the end of a finished log, from where the reader is
    /// (complete units it has not returned yet are walked over): `Ok(None)` when the log
    /// ends at a unit boundary. A log that ends inside a command, or inside a MULTI
    /// without EXEC, is truncated: with `allow_truncated` a [`Cut`] at the end of its last
    /// complete unit, as Redis's `aof-load-truncated yes` loads it, else a [`LogError`]
    /// with `truncated` set. Bad bytes on the way are an error either way.
    pub fn finish(&self, data: &[u8], allow_truncated: bool) -> Result<Option<Cut>, LogError> {
        let mut reader = *self;
        let mut argv = Vec::new();
        loop {
            if let Some(tail) = reader.read::<true>(data, &mut argv, &mut |_| {}, &mut None)? {
                return tail.judge(data.len(), allow_truncated);
            }
        }
    }

    /// Reads entries from `pos` up to the next unit (`Ok(None)`, the unit in `out`), or
    /// to where the data ends (`Ok(Some)`: how it ends). With `LEND`, every unit up to
    /// the end is lent to `f` instead, built where `f` reads it, and a single command's
    /// vector goes back to `argv` for the next (inlined into `read_log`: nothing is moved
    /// or set up again per command). The reader's fields move past a unit, a SELECT or an
    /// annotation only once it is complete; inside a MULTI they stay at its start until
    /// its EXEC.
    #[inline(always)]
    fn read<'a, const LEND: bool>(
        &mut self,
        data: &'a [u8],
        argv: &mut Vec<&'a [u8]>,
        f: &mut impl FnMut(&Unit<'a>),
        out: &mut Option<Unit<'a>>,
    ) -> Result<Option<Tail>, LogError> {
        let mut scanner = Scanner::at(data, self.pos);
        // An open block: its start and its commands so far. `db` moves with the SELECTs
        // inside it too; the reader's own fields stay at its start until EXEC.
        let mut multi: Option<(usize, Vec<Command<'a>>)> = None;
        let mut db = self.db;
        loop {
            let entry = match scanner.next_entry(argv) {
                Ok(Some(entry)) => entry,
                Ok(None) => return Ok(Some(self.end_of_data(multi.map(|(start, _)| start)))),
                Err(e) => return self.scan_error(e, multi.map(|(start, _)| start)).map(Some),
            };
            let (start, end) = match entry {
                Entry::Command { start, end } => (start, end),
                // Redis writes `#TS:` only between transactions; one inside a block says nothing.
                Entry::Timestamp { unix, .. } if multi.is_none() => {
                    self.pos = scanner.pos();
                    if hand_over::<LEND>(Unit::Timestamp(unix), argv, f, out) {
                        return Ok(None);
                    }
                    continue;
                }
                Entry::Timestamp { .. } | Entry::Annotation { .. } => {
                    if multi.is_none() {
                        self.pos = scanner.pos();
                    }
                    continue;
                }
            };
            let cmd = Command { db, argv: std::mem::take(argv), raw: &data[start..end], offset: start, narrowed: None };
            let last_good = self.last_good;
            let bad = |msg: &str| LogError { at: start, last_good, truncated: false, msg: msg.into() };
            if cmd.is("SELECT") {
                db = select_db(&cmd.argv).ok_or_else(|| bad("SELECT without a valid database number"))?;
                *argv = cmd.argv;
                if multi.is_none() {
                    (self.pos, self.db, self.last_good) = (end, db, end);
                }
                continue;
            }
            if cmd.is("MULTI") {
                if multi.is_some() {
                    return Err(bad("MULTI inside MULTI"));
                }
                multi = Some((start, vec![cmd]));
                continue;
            }
            if cmd.is("EXEC") {
                let Some((_, mut block)) = multi.take() else {
                    return Err(bad("EXEC without MULTI"));
                };
                block.push(cmd);
                (self.pos, self.db, self.last_good, self.open_multi) = (end, db, end, None);
                if hand_over::<LEND>(Unit::Multi(block), argv, f, out) {
                    return Ok(None);
                }
                continue;
            }
            match &mut multi {
                Some((_, block)) => block.push(cmd),
                None => {
                    (self.pos, self.last_good) = (end, end);
                    if hand_over::<LEND>(Unit::One(cmd), argv, f, out) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The data ends at an entry boundary: whole, or inside the MULTI opened at `multi`
    /// (the reader rests there, to read the block again with more data).
    fn end_of_data(&mut self, multi: Option<usize>) -> Tail {
        self.open_multi = multi;
        match multi {
            None => Tail::Whole,
            Some(start) => Tail::Open { at: start, last_good: start, msg: OPEN_MULTI.to_string() },
        }
    }

    /// A scan error: the end of the data inside an entry (a tail, not an error), or bad
    /// bytes. Inside the MULTI opened at `multi`, loading would stop at that MULTI.
    fn scan_error(&mut self, e: ScanError, multi: Option<usize>) -> Result<Tail, LogError> {
        let last_good = multi.unwrap_or(self.last_good);
        if e.truncated {
            self.open_multi = multi;
            return Ok(Tail::Open { at: e.at, last_good, msg: e.msg });
        }
        Err(LogError { at: e.at, last_good, truncated: false, msg: e.msg })
    }
}

/// Reads a command log, handing each unit to `f` in order. With `allow_truncated`, a
/// truncated tail ends the log where its last complete unit ends (reported as a [`Cut`]);
/// damage is an error either way. Units are lent, so that a single command's argument
/// vector is reused for the next one.
pub fn read_log<'a>(
    data: &'a [u8],
    allow_truncated: bool,
    mut f: impl FnMut(&Unit<'a>),
) -> Result<Option<Cut>, LogError> {
    let mut reader = LogReader::new();
    let mut argv: Vec<&'a [u8]> = Vec::new();
    loop {
        if let Some(tail) = reader.read::<true>(data, &mut argv, &mut f, &mut None)? {
            return tail.judge(data.len(), allow_truncated);
        }
    }
}

/// A unit for the caller of `read`: into `out` (true: `read` returns), or (`LEND`)
/// lent to `f`, after which a single command's argument vector goes back to `argv` for
/// the next command, and `read` goes on.
#[inline(always)]
fn hand_over<'a, const LEND: bool>(
    unit: Unit<'a>,
    argv: &mut Vec<&'a [u8]>,
    f: &mut impl FnMut(&Unit<'a>),
    out: &mut Option<Unit<'a>>,
) -> bool {
    if !LEND {
        *out = Some(unit);
        return true;
    }
    f(&unit);
    if let Unit::One(cmd) = unit {
        *argv = cmd.argv;
    }
    false
}

/// The db of a `SELECT n` command.
fn select_db(argv: &[&[u8]]) -> Option<u64> {
    match argv {
        [_, n] => std::str::from_utf8(n).ok()?.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// A log with every kind of entry: SELECTs (one inside a MULTI), a MULTI block, `#TS`
    /// annotations (one inside the block, which says nothing), another annotation, and a
    /// value that holds `\r\n*` and `$`.
    fn sample() -> Vec<u8> {
        [
            cmd(&[b"SET", b"a", b"1"]),
            b"#TS:1700000000\r\n".to_vec(),
            cmd(&[b"SELECT", b"3"]),
            cmd(&[b"MULTI"]),
            cmd(&[b"INCR", b"b"]),
            b"#TS:1700000001\r\n".to_vec(),
            cmd(&[b"SELECT", b"5"]),
            cmd(&[b"SET", b"c", b"x\r\n*2\r\n$"]),
            cmd(&[b"EXEC"]),
            b"#an annotation\r\n".to_vec(),
            cmd(&[b"DEL", b"a"]),
            b"#TS:1700000002\r\n".to_vec(),
            cmd(&[b"SET", b"d", b""]),
        ]
        .concat()
    }

    fn one_shot(data: &[u8], allow_truncated: bool) -> (Vec<Unit<'_>>, Result<Option<Cut>, LogError>) {
        let mut units = Vec::new();
        let r = read_log(data, allow_truncated, |u| units.push(u.clone()));
        (units, r)
    }

    /// Feeds `data` to one reader in growing prefixes ending at each of `cuts`, then
    /// judges the end of the whole: the units, and the error or the end.
    fn in_pieces<'a>(
        data: &'a [u8],
        cuts: &[usize],
        allow_truncated: bool,
    ) -> (Vec<Unit<'a>>, Result<Option<Cut>, LogError>) {
        let mut reader = LogReader::new();
        let mut units = Vec::new();
        for &cut in cuts.iter().chain([&data.len()]) {
            loop {
                match reader.next(&data[..cut]) {
                    Ok(Some(unit)) => units.push(unit),
                    Ok(None) => break,
                    Err(e) => return (units, Err(e)),
                }
            }
        }
        (units, reader.finish(data, allow_truncated))
    }

    /// A deterministic stream of numbers (xorshift).
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn one_byte_at_a_time_gives_the_units_of_a_one_shot_read() {
        let data = sample();
        let (units, end) = one_shot(&data, false);
        assert_eq!(end, Ok(None));
        assert_eq!(units.len(), 6, "{units:?}");
        assert!(matches!(&units[2], Unit::Multi(b) if b.len() == 4 && b[1].db == 3 && b[2].db == 5));
        assert!(matches!(&units[3], Unit::One(c) if c.db == 5 && c.is("DEL")));
        let cuts: Vec<usize> = (0..data.len()).collect();
        assert_eq!(in_pieces(&data, &cuts, false), (units, end));
    }

    #[test]
    fn random_cuts_give_the_units_of_a_one_shot_read() {
        let data = sample();
        let whole = one_shot(&data, false);
        let mut next = rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let mut cuts: Vec<usize> = (0..next() % 6).map(|_| next() as usize % (data.len() + 1)).collect();
            cuts.sort_unstable();
            assert_eq!(in_pieces(&data, &cuts, false), whole, "cuts {cuts:?}");
        }
    }

    /// Until its EXEC arrives, a block is not returned, and the reader rests at its MULTI.
    #[test]
    fn an_open_multi_waits_for_its_exec() {
        let data = sample();
        let multi =
            [cmd(&[b"SET", b"a", b"1"]), b"#TS:1700000000\r\n".to_vec(), cmd(&[b"SELECT", b"3"])].concat().len();
        let exec_end = data.windows(7).position(|w| w == b"EXEC\r\n#").map(|p| p + 6).unwrap();
        let mut reader = LogReader::new();
        let part = &data[..exec_end - 1];
        assert!(matches!(reader.next(part), Ok(Some(Unit::One(_)))));
        assert_eq!(reader.next(part), Ok(Some(Unit::Timestamp(1_700_000_000))));
        assert_eq!(reader.next(part), Ok(None));
        assert_eq!((reader.position(), reader.db(), reader.open_multi()), (multi, 3, Some(multi)));
        assert_eq!(reader.last_good(), multi);
        assert_eq!(reader.next(part), Ok(None), "asked again, still waiting");
        assert!(matches!(reader.next(&data[..exec_end]), Ok(Some(Unit::Multi(b))) if b.len() == 4));
        assert_eq!((reader.position(), reader.db(), reader.open_multi()), (exec_end, 5, None));
    }

    /// Bad bytes are an error where a one-shot read finds them, whatever the pieces; the
    /// end of the data never is.
    #[test]
    fn bad_bytes_are_an_error_at_the_same_offset() {
        let good = sample();
        let set = cmd(&[b"SET", b"a", b"1"]).len();
        let mut lf = good.clone();
        lf[set + 16 + 6] = b'\n'; // `$6\r\n` of the SELECT becomes `$6\n\n`
        let cases: Vec<(Vec<u8>, usize, usize, &str)> = vec![
            ([&good[..set], b"?"].concat(), set, set, "expected '*' (a command) or '#', found byte 0x3f"),
            ([cmd(&[b"SELECT", b"x"]), cmd(&[b"PING"])].concat(), 0, 0, "SELECT without a valid database number"),
            ([&good[..set], &cmd(&[b"EXEC"])].concat(), set, set, "EXEC without MULTI"),
            (
                [cmd(&[b"PING"]), b"#x\r\n".to_vec(), cmd(&[b"MULTI"]), cmd(&[b"MULTI"])].concat(),
                14 + 4 + 15,
                14,
                "MULTI inside MULTI",
            ),
            (
                [cmd(&[b"MULTI"]), b"*1\r\n$4\r\nPINGxx".to_vec()].concat(),
                15 + 12,
                0,
                "an argument is not followed by CRLF",
            ),
            (lf, set + 16 + 6, set, "an argument length ends with a bare LF, not CRLF"),
        ];
        for (data, at, last_good, msg) in cases {
            let want = LogError { at, last_good, truncated: false, msg: msg.into() };
            for allow in [false, true] {
                let (units, end) = one_shot(&data, allow);
                assert_eq!(end, Err(want.clone()), "{:?}", String::from_utf8_lossy(&data));
                let cuts: Vec<usize> = (0..data.len()).collect();
                assert_eq!(in_pieces(&data, &cuts, allow), (units.clone(), end.clone()));
                assert_eq!(in_pieces(&data, &[data.len() / 2], allow), (units, end));
            }
        }
    }

    /// `finish` on a log cut anywhere says what a one-shot read says: the same error
    /// (truncated, with the same last complete unit) or, allowed, the same cut.
    #[test]
    fn finish_judges_a_cut_log_as_a_one_shot_read_does() {
        let data = sample();
        let set = cmd(&[b"SET", b"a", b"1"]).len();
        for cut in 0..=data.len() {
            let part = &data[..cut];
            for allow in [false, true] {
                let whole = one_shot(part, allow);
                let pieces: Vec<usize> = (0..cut).collect();
                assert_eq!(in_pieces(part, &pieces, allow), whole, "cut {cut}");
                assert_eq!(in_pieces(part, &[], allow), whole, "cut {cut}");
            }
            // Inside the first command: nothing complete yet; inside the block: loading
            // stops at its MULTI, whatever else is complete.
            if let Err(e) = one_shot(part, false).1 {
                assert!(e.truncated, "cut {cut}: {e}");
                if cut < set {
                    assert_eq!(e.last_good, 0);
                }
            }
        }
        let multi = data.windows(9).position(|w| w == b"$5\r\nMULTI").map(|p| p - 4).unwrap();
        let inside = multi + 20; // in `$4` of the INCR after the MULTI
        let want =
            LogError { at: inside, last_good: multi, truncated: true, msg: "the data ends inside a line".into() };
        let mut reader = LogReader::new();
        while let Ok(Some(_)) = reader.next(&data[..inside]) {}
        assert_eq!(reader.finish(&data[..inside], false), Err(want.clone()));
        let cut = Cut { at: multi, dropped: inside - multi, why: want.msg.clone() };
        assert_eq!(reader.finish(&data[..inside], true), Ok(Some(cut)));
        let exec_end = data.windows(7).position(|w| w == b"EXEC\r\n#").map(|p| p + 6).unwrap();
        let open = LogError { at: multi, last_good: multi, truncated: true, msg: OPEN_MULTI.into() };
        let before_exec = exec_end - cmd(&[b"EXEC"]).len();
        assert_eq!(reader.finish(&data[..before_exec], false), Err(open));
    }
}
