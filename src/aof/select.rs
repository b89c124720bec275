//! Filters on AOF commands: `--db` by the db each command runs in, `--match` / `--regex`
//! by the keys the key table finds. A command whose keys are all selected is kept, one
//! with none is left out; DEL, UNLINK, EXISTS, TOUCH and MSET that name both kinds are
//! narrowed to the selected keys (each key is its own effect); any other command that
//! names both kinds, or whose keys cannot be known (a module's command, EVAL with no
//! keys, SORT … STORE), is left out and reported: guessing could write keys the filter
//! excludes or lose writes to keys it selects.

use super::keys::{keys, Keys};
use super::{Command, Unit};
use crate::filter::Filter;
use std::borrow::Cow;

/// What the filters left out or changed, with the first commands of each kind reported.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Commands not selected (db or keys).
    pub filtered: u64,
    /// Commands sent with only their selected keys.
    pub narrowed: u64,
    /// Commands naming selected and other keys that cannot be narrowed.
    pub mixed: u64,
    pub mixed_examples: Vec<String>,
    /// Commands whose keys cannot be known.
    pub unknown: u64,
    pub unknown_examples: Vec<String>,
}

impl Tally {
    const EXAMPLES: usize = 3;

    pub fn merge(&mut self, o: Tally) {
        self.filtered += o.filtered;
        self.narrowed += o.narrowed;
        self.mixed += o.mixed;
        self.unknown += o.unknown;
        let room = Tally::EXAMPLES.saturating_sub(self.mixed_examples.len());
        self.mixed_examples.extend(o.mixed_examples.into_iter().take(room));
        let room = Tally::EXAMPLES.saturating_sub(self.unknown_examples.len());
        self.unknown_examples.extend(o.unknown_examples.into_iter().take(room));
    }

    /// Commands left out that a user must look at (not simply unselected).
    pub fn doubtful(&self) -> u64 {
        self.mixed + self.unknown
    }

    /// Lines for a report; empty when no key filter acted.
    pub fn report(&self) -> Vec<String> {
        let mut o = Vec::new();
        if self.narrowed > 0 {
            o.push(format!(
                "narrowed {} AOF commands (DEL/UNLINK/EXISTS/TOUCH/MSET) to the keys the filter selects",
                self.narrowed
            ));
        }
        if self.mixed > 0 {
            o.push(format!(
                "left out {} AOF commands that name keys the filter selects and keys it does not: {}",
                self.mixed,
                examples(&self.mixed_examples, self.mixed)
            ));
        }
        if self.unknown > 0 {
            o.push(format!(
                "left out {} AOF commands whose keys cannot be known, so a key filter cannot select them: {}",
                self.unknown,
                examples(&self.unknown_examples, self.unknown)
            ));
        }
        o
    }

    fn note(count: &mut u64, list: &mut Vec<String>, argv: &[&[u8]]) {
        *count += 1;
        if list.len() < Tally::EXAMPLES {
            list.push(show(argv));
        }
    }
}

fn examples(list: &[String], n: u64) -> String {
    let more = if n as usize > list.len() { ", …" } else { "" };
    format!("{}{more}", list.join(", "))
}

/// A command for a report: its name and first few arguments, quoted.
pub fn show(argv: &[&[u8]]) -> String {
    let mut s = String::from_utf8_lossy(argv.first().copied().unwrap_or_default()).to_ascii_uppercase();
    for a in argv.iter().skip(1).take(3) {
        s.push_str(&format!(" \"{}\"", crate::rdb::escape_key(&a[..a.len().min(40)])));
    }
    if argv.len() > 4 {
        s.push_str(" …");
    }
    s
}

/// What the key filter makes of one command.
#[derive(Debug, PartialEq)]
enum Pick<'a> {
    Keep,
    Drop,
    /// These arguments instead (name and selected keys, with MSET's values).
    Narrow(Vec<&'a [u8]>),
    Mixed,
    Unknown,
}

fn is_script(name: &[u8]) -> bool {
    [&b"EVAL"[..], b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

fn pick<'a>(filter: &Filter, argv: &[&'a [u8]]) -> Pick<'a> {
    let name = argv[0];
    let named = match keys(argv) {
        Keys::None => return Pick::Keep,
        Keys::Some(ks) => ks,
        Keys::Unknown => return Pick::Unknown,
        // MOVE key db and COPY src dst DB n name their keys, though they reach another db.
        Keys::Global if name.eq_ignore_ascii_case(b"MOVE") && argv.len() == 3 => vec![argv[1]],
        Keys::Global if name.eq_ignore_ascii_case(b"COPY") && argv.len() >= 3 => argv[1..3].to_vec(),
        Keys::Global if is_script(name) => return Pick::Unknown,
        // FLUSHALL, FLUSHDB, SWAPDB, FUNCTION, SCRIPT: whole databases, kept as the source had them.
        Keys::Global => return Pick::Keep,
    };
    let hits = named.iter().filter(|k| filter.accepts_key(k)).count();
    if hits == named.len() {
        return Pick::Keep;
    }
    if hits == 0 {
        return Pick::Drop;
    }
    let each = [&b"DEL"[..], b"UNLINK", b"EXISTS", b"TOUCH"];
    if each.iter().any(|n| name.eq_ignore_ascii_case(n)) {
        let mut v = vec![name];
        v.extend(argv[1..].iter().filter(|k| filter.accepts_key(k)));
        return Pick::Narrow(v);
    }
    if name.eq_ignore_ascii_case(b"MSET") && argv.len() % 2 == 1 {
        let mut v = vec![name];
        for pair in argv[1..].chunks(2) {
            if filter.accepts_key(pair[0]) {
                v.extend_from_slice(pair);
            }
        }
        return Pick::Narrow(v);
    }
    Pick::Mixed
}

/// Applies the filter to one command: `None` when it is left out (tallied), or the
/// command to send, narrowed when only some of its keys are selected.
fn select_command<'c, 'a>(c: &'c Command<'a>, filter: &Filter, tally: &mut Tally) -> Option<Cow<'c, Command<'a>>> {
    if !filter.accepts_db(c.db) {
        tally.filtered += 1;
        return None;
    }
    if filter.globs.is_empty() && filter.regex.is_none() {
        return Some(Cow::Borrowed(c));
    }
    match pick(filter, &c.argv) {
        Pick::Keep => Some(Cow::Borrowed(c)),
        Pick::Drop => {
            tally.filtered += 1;
            None
        }
        Pick::Narrow(argv) => {
            tally.narrowed += 1;
            let mut bytes = Vec::new();
            crate::resp::encode::command(&mut bytes, &argv);
            Some(Cow::Owned(Command { argv, narrowed: Some(bytes), ..c.clone() }))
        }
        Pick::Mixed => {
            Tally::note(&mut tally.mixed, &mut tally.mixed_examples, &c.argv);
            None
        }
        Pick::Unknown => {
            Tally::note(&mut tally.unknown, &mut tally.unknown_examples, &c.argv);
            None
        }
    }
}

/// Applies the filter to one unit of a log: `None` when nothing of it is selected. A
/// MULTI block keeps the commands selected (narrowed where need be) between its MULTI
/// and EXEC. Timestamps pass.
pub fn select<'u, 'a>(unit: &'u Unit<'a>, filter: &Filter, tally: &mut Tally) -> Option<Cow<'u, Unit<'a>>> {
    match unit {
        Unit::Timestamp(_) => Some(Cow::Borrowed(unit)),
        Unit::One(c) => match select_command(c, filter, tally)? {
            Cow::Borrowed(_) => Some(Cow::Borrowed(unit)),
            Cow::Owned(n) => Some(Cow::Owned(Unit::One(n))),
        },
        Unit::Multi(block) => {
            let inner = &block[1..block.len() - 1];
            let picked: Vec<Option<Cow<'_, Command<'a>>>> =
                inner.iter().map(|c| select_command(c, filter, tally)).collect();
            if picked.iter().all(|p| matches!(p, Some(Cow::Borrowed(_)))) {
                return Some(Cow::Borrowed(unit));
            }
            if picked.iter().all(Option::is_none) {
                return None;
            }
            let mut kept = vec![block[0].clone()];
            kept.extend(picked.into_iter().flatten().map(Cow::into_owned));
            kept.push(block[block.len() - 1].clone());
            Some(Cow::Owned(Unit::Multi(kept)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glob::Glob;

    fn filter(glob: &str) -> Filter {
        Filter { globs: vec![Glob::new(glob.as_bytes())], ..Filter::default() }
    }

    fn argv(s: &str) -> Vec<&[u8]> {
        s.split(' ').map(str::as_bytes).collect()
    }

    #[test]
    fn picks_by_the_keys_a_command_names() {
        let f = filter("user:*");
        assert_eq!(pick(&f, &argv("SET user:1 x")), Pick::Keep);
        assert_eq!(pick(&f, &argv("SET other x")), Pick::Drop);
        assert_eq!(pick(&f, &argv("DEL a user:1 b user:2")), Pick::Narrow(argv("DEL user:1 user:2")));
        assert_eq!(pick(&f, &argv("mset a 1 user:1 2 b 3")), Pick::Narrow(argv("mset user:1 2")));
        assert_eq!(pick(&f, &argv("MSETNX a 1 user:1 2")), Pick::Mixed);
        assert_eq!(pick(&f, &argv("RENAME user:1 other")), Pick::Mixed);
        assert_eq!(pick(&f, &argv("EVAL s 0")), Pick::Unknown);
        assert_eq!(pick(&f, &argv("EVAL s 1 user:1")), Pick::Keep);
        assert_eq!(pick(&f, &argv("graph.QUERY user:1 q")), Pick::Unknown);
        assert_eq!(pick(&f, &argv("FLUSHDB")), Pick::Keep);
        assert_eq!(pick(&f, &argv("MOVE other 3")), Pick::Drop);
        assert_eq!(pick(&f, &argv("PING")), Pick::Keep);
    }

    #[test]
    fn a_transaction_keeps_what_is_selected() {
        let raw: &[u8] = b"";
        let c = |s: &'static str| Command { db: 0, argv: argv(s), raw, offset: 0, narrowed: None };
        let block = Unit::Multi(vec![c("MULTI"), c("SET a 1"), c("DEL a user:1"), c("INCR user:2"), c("EXEC")]);
        let mut tally = Tally::default();
        let Some(Cow::Owned(Unit::Multi(kept))) = select(&block, &filter("user:*"), &mut tally) else {
            panic!("expected a narrower block")
        };
        let names: Vec<String> = kept.iter().map(|c| show(&c.argv)).collect();
        assert_eq!(names, ["MULTI", "DEL \"user:1\"", "INCR \"user:2\"", "EXEC"]);
        assert_eq!(kept[1].bytes(), b"*2\r\n$3\r\nDEL\r\n$6\r\nuser:1\r\n");
        assert_eq!((tally.filtered, tally.narrowed), (1, 1));
        assert!(select(&block, &filter("none"), &mut tally).is_none());
    }
}
