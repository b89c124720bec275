//! Before the first write: the inputs verified (snapshots by their structure and CRC-64,
//! a full decode where there is no checksum; logs read to their end), what the
//! destination cannot take refused, and (when asked) the keys it already has found.
//! Both passes are consumers of the ordered input stream.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::dest::{ClusterCommand, DestKind, Destination};
use super::report::Report;
use super::{existing_key, Config, Error};
use crate::aof::keys::{keys, Keys};
use crate::aof::{self, Command, Unit};
use crate::duplicates::{Duplicates, OnDuplicate};
use crate::input::{self, Batch, Flow, Input, InputError, Inputs, LogEnd, Map, Reader, Sink};
use crate::net::{Link, LinkError};
use crate::rdb::{self, ErrorKind, Header, Item};

/// Keys found in two snapshot files of the inputs (a folder of shard snapshots): refused,
/// naming the first few and their files, before anything is written, unless
/// `--on-duplicate` says which copy wins (then the copies to leave out, and a warning).
pub(super) fn duplicates(
    cfg: &Config,
    inputs: &Inputs,
    report: &mut Report,
) -> Result<Option<std::sync::Arc<Duplicates>>, Error> {
    let found = crate::duplicates::find(inputs, &cfg.plan, &cfg.filter, inputs.on_duplicate)
        .map_err(|e| Error::Input(format!("{e} (nothing was written)")))?;
    if found.is_empty() {
        return Ok(None);
    }
    let which = match inputs.on_duplicate {
        OnDuplicate::Refuse => {
            return Err(Error::Refused(format!(
                "{} keys are in more than one snapshot file: {}; nothing was written \
                 (--on-duplicate first|last says which file's copy wins)",
                found.count,
                found.message()
            )))
        }
        OnDuplicate::First => "first",
        OnDuplicate::Last => "last",
    };
    report.warnings.push(format!(
        "{} keys are in more than one snapshot file; the {which} file's copy is kept, {} copies left out \
         (counted as filtered): {}",
        found.count,
        found.skipped(),
        found.message()
    ));
    Ok(Some(std::sync::Arc::new(found)))
}

/// What the inputs hold, as the up-front refusals need it.
#[derive(Default)]
pub(super) struct InputFacts {
    /// Databases with data (after the filters).
    dbs: BTreeSet<u64>,
    functions: u64,
    /// The first FLUSHALL / FLUSHDB / SWAPDB commands, where they are.
    flushes: Vec<String>,
    /// AOF commands twemproxy cannot take, by name.
    not_for_proxy: BTreeMap<String, u64>,
    /// AOF commands a Redis Cluster cannot take (keys of several slots that no split
    /// keeps the meaning of, other dbs, keys unknown), by name and why; commands of a
    /// MULTI block whose keys span slots count one by one (the block is unwrapped).
    not_for_cluster: BTreeMap<String, (u64, &'static str)>,
}

/// Verifies every input before the first write: snapshots by their structure (a skim of
/// the length headers) and their bytes by the CRC-64 (GB/s, against the deep decode's
/// hundreds of MB/s: every value decoded later is then the bytes Redis wrote), or by a
/// full decode when the file has no checksum (RDB < 5, or saved with `rdbchecksum no`);
/// logs read to their end. Notes what [`refuse_up_front`] needs.
pub(super) fn verify_inputs(cfg: &Config, inputs: &Inputs) -> Result<InputFacts, Error> {
    let mut sink = Verify { cfg, facts: InputFacts::default(), failure: None, base: 0, name: String::new(), end: None };
    let opts =
        input::Options { plan: cfg.plan, from: input::Position::default(), reader: Reader::Replay { written: false } };
    input::run(inputs, &opts, &Skim, &mut sink);
    match sink.failure {
        Some(f) => Err(f),
        None => Ok(sink.facts),
    }
}

/// The workers' half of the verification: each batch skimmed for the dbs and code it holds.
struct Skim;

impl<'d> Map<'d> for Skim {
    type Part = (BTreeSet<u64>, u64, rdb::Result<()>);

    fn snapshot(&self, batch: &Batch<'d, '_>) -> Self::Part {
        let (mut dbs, mut functions) = (BTreeSet::new(), 0);
        let r = batch.skim(|item, db| match item {
            Item::Skimmed => {
                dbs.insert(db);
            }
            Item::Function(_) => functions += 1,
            Item::Aux { key, .. } if key.bytes().as_ref() == b"lua" => functions += 1,
            _ => {}
        });
        (dbs, functions, r)
    }
}

struct Verify<'c> {
    cfg: &'c Config,
    facts: InputFacts,
    failure: Option<Error>,
    /// Where the current input's log starts, and the input's name.
    base: usize,
    name: String,
    /// The current snapshot's header and the bytes after its trailer, once skimmed.
    end: Option<(Header, usize)>,
}

impl Verify<'_> {
    fn damaged(&mut self, error: rdb::Error) -> Flow {
        let e = InputError::Snapshot { name: self.name.clone(), error };
        self.failure.get_or_insert(Error::Input(format!("{e} (nothing was written)")));
        Flow::Stop
    }

    fn note(&mut self, c: &Command<'_>) {
        let f = &mut self.facts;
        f.dbs.insert(c.db);
        if c.is_flush() && f.flushes.len() < 3 {
            f.flushes.push(format!("{} at byte {} of {}", c.name(), self.base + c.offset, self.name));
        }
        if !super::proxy::takes(&c.argv) {
            *f.not_for_proxy.entry(c.name()).or_default() += 1;
        }
        if let ClusterCommand::Refused(why) = ClusterCommand::of(&c.argv) {
            f.not_for_cluster.entry(c.name()).or_insert((0, why)).0 += 1;
        }
    }
}

impl<'d> Sink<'d, (BTreeSet<u64>, u64, rdb::Result<()>)> for Verify<'_> {
    fn begin(&mut self, _file: usize, input: &'d Input) -> Flow {
        self.name.clone_from(&input.name);
        self.end = None;
        Flow::Continue
    }

    fn part(&mut self, (dbs, functions, r): (BTreeSet<u64>, u64, rdb::Result<()>)) -> Flow {
        if let Err(e) = r {
            return self.damaged(e);
        }
        self.facts.dbs.extend(dbs.into_iter().filter(|&d| self.cfg.filter.accepts_db(d)));
        self.facts.functions += functions;
        Flow::Continue
    }

    fn snapshot_end(&mut self, _file: usize, header: Header, trailing: usize) -> Flow {
        self.end = Some((header, trailing));
        Flow::Continue
    }

    fn log_begin(&mut self, _file: usize, _input: &'d Input, base: usize) -> Flow {
        self.base = base;
        Flow::Continue
    }

    fn unit(&mut self, unit: &Unit<'d>, _at: input::Position, _end: u64) -> Flow {
        let mut tally = aof::select::Tally::default();
        let Some(u) = aof::select::select(unit, &self.cfg.filter, &mut tally) else { return Flow::Continue };
        match u.as_ref() {
            Unit::One(c) => self.note(c),
            Unit::Multi(b) => b[1..b.len() - 1].iter().for_each(|c| self.note(c)),
            Unit::Timestamp(_) => {}
        }
        Flow::Continue
    }

    fn end(&mut self, _file: usize, input: &'d Input, how: Result<LogEnd, InputError>) -> Flow {
        match how {
            Err(e) => {
                self.failure.get_or_insert(Error::Input(e.to_string()));
                Flow::Stop
            }
            Ok(_) if self.failure.is_some() => Flow::Stop,
            Ok(_) => match self.end.take().map(|(h, trailing)| verify_checksum(self.cfg, input.data(), h, trailing)) {
                Some(Err(e)) => self.damaged(e),
                _ => Flow::Continue,
            },
        }
    }
}

/// The snapshot's CRC-64 against its bytes (`trailing` bytes follow the trailer); a
/// snapshot with none (RDB < 5, or saved with `rdbchecksum no`: stored as 0) is decoded
/// whole instead.
fn verify_checksum(cfg: &Config, data: &[u8], header: Header, trailing: usize) -> rdb::Result<()> {
    let end = data.len() - trailing;
    let stored = (header.version >= 5)
        .then(|| data.get(end.saturating_sub(8)..end).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())))
        .flatten()
        .filter(|&c| c != 0);
    match stored {
        Some(stored) => {
            let computed = rdb::crc64(&data[..end - 8]);
            if computed != stored {
                return Err(rdb::Error::new((end - 8) as u64, ErrorKind::Checksum { stored, computed }));
            }
            Ok(())
        }
        None => crate::check::walk(data, &mut crate::check::Summary::default(), &cfg.plan),
    }
}

/// Refuses up front what the destination cannot take (nothing of the input is written
/// yet): data in dbs it lacks, AOF commands it cannot take, flushes without
/// `--allow-flush`.
pub(super) fn refuse_up_front(
    cfg: &Config,
    found: &InputFacts,
    dest: &dyn Destination,
    report: &mut Report,
) -> Result<(), Error> {
    let InputFacts { dbs, functions, flushes, not_for_proxy: unsupported, not_for_cluster } = found;
    let kind = dest.kind();
    let bad: Vec<String> = dbs.iter().filter(|&&d| dest.db(d).is_none()).map(u64::to_string).collect();
    if !bad.is_empty() {
        return Err(Error::Refused(format!(
            "{kind} has only db 0, and the input has data in db {}: map them with --db-map N:0 \
             (or select dbs with --db); nothing was written",
            bad.join(", ")
        )));
    }
    if !dest.takes_every_command() && !unsupported.is_empty() {
        let list: Vec<String> = unsupported.iter().map(|(n, c)| format!("{n} ×{c}")).collect();
        return Err(Error::Refused(format!(
            "{kind} cannot take these commands of the AOF (it closes the connection on them, or runs \
             multi-key ones on one backend): {}; nothing was written",
            list.join(", ")
        )));
    }
    if dest.kind() == DestKind::Cluster && !not_for_cluster.is_empty() {
        let list: Vec<String> = not_for_cluster.iter().map(|(n, (c, why))| format!("{n} ×{c} ({why})")).collect();
        return Err(Error::Refused(format!(
            "{kind} cannot take these commands of the AOF (a command runs on keys of one slot): {}; \
             nothing was written",
            list.join(", ")
        )));
    }
    if !dest.caps().functions && *functions > 0 && cfg.filter.selects_everything() {
        report.warnings.push(format!(
            "{functions} function libraries / Lua scripts cannot pass through {kind}: they are not sent"
        ));
    }
    if !flushes.is_empty() && !cfg.allow_flush {
        return Err(Error::Refused(format!(
            "the AOF wipes or swaps databases ({}{}): replaying it would empty the destination's data, \
             not just the source's; --allow-flush sends them; nothing was written",
            flushes.join(", "),
            if flushes.len() == 3 { ", …" } else { "" }
        )));
    }
    Ok(())
}

/// The keys of the inputs that the destination already has (EXISTS, pipelined): those
/// of the snapshots, and those the logs' commands touch (before they create them).
pub(super) fn find_existing(cfg: &Config, inputs: &Inputs, dest: &dyn Destination) -> Result<HashSet<Vec<u8>>, Error> {
    let dest_name = cfg.endpoint.to_string();
    let link_err = |e| Error::Destination(format!("checking which keys {dest_name} has"), e);
    // One link per node (a cluster's masters: each key asked where its slot is served).
    let links = dest
        .nodes(&cfg.endpoint)
        .iter()
        .map(|ep| Link::open(ep, cfg.timeout))
        .collect::<Result<Vec<_>, _>>()
        .map_err(link_err)?;
    let mut sink = Existing {
        cfg,
        dest,
        links,
        selected: 0,
        found: HashSet::new(),
        seen: HashSet::new(),
        failure: None,
        name: String::new(),
    };
    let opts =
        input::Options { plan: cfg.plan, from: input::Position::default(), reader: Reader::Replay { written: false } };
    input::run(inputs, &opts, &Keys2 { cfg, dest }, &mut sink);
    if let Some(f) = sink.failure {
        return Err(f);
    }
    // The keys the AOF commands touch (those it creates itself are not there yet).
    let all: Vec<(u64, Vec<u8>)> = sink.seen.drain().collect();
    for batch in all.chunks(1000) {
        sink.exists(batch).map_err(link_err)?;
    }
    sink.links.iter().for_each(Link::close);
    Ok(sink.found)
}

/// The workers' half of the existing-key lookup: a batch's selected keys.
struct Keys2<'c> {
    cfg: &'c Config,
    dest: &'c dyn Destination,
}

impl<'d> Map<'d> for Keys2<'_> {
    type Part = (Vec<(u64, Vec<u8>)>, rdb::Result<()>);

    fn snapshot(&self, batch: &Batch<'d, '_>) -> Self::Part {
        let mut keys = Vec::new();
        let r = batch.decode(true, |item, _| {
            if let Item::Record(rec) = item {
                if self.cfg.filter.accepts(&rec) {
                    if let Some(db) = self.dest.db(rec.db) {
                        keys.push((db, rec.key.bytes().into_owned()));
                    }
                }
            }
            Ok(())
        });
        (keys, r)
    }
}

struct Existing<'c> {
    cfg: &'c Config,
    dest: &'c dyn Destination,
    links: Vec<Link>,
    /// The db selected on the (standalone) link.
    selected: u64,
    found: HashSet<Vec<u8>>,
    /// Keys the logs touch.
    seen: HashSet<(u64, Vec<u8>)>,
    failure: Option<Error>,
    name: String,
}

impl Existing<'_> {
    /// EXISTS for each of `keys` (db, key), pipelined; the ones there go into `found`.
    fn exists(&mut self, keys: &[(u64, Vec<u8>)]) -> Result<(), LinkError> {
        let n = self.links.len();
        let mut out = vec![Vec::new(); n];
        let mut expect: Vec<Vec<Option<usize>>> = vec![Vec::new(); n];
        for (i, (db, key)) in keys.iter().enumerate() {
            let node = if n > 1 { self.dest.node_of_conn(self.dest.conn_of(key)) } else { 0 };
            if self.dest.caps().select && *db != self.selected {
                crate::resp::encode::select(&mut out[node], *db);
                expect[node].push(None);
                self.selected = *db;
            }
            crate::resp::encode::command(&mut out[node], &[b"EXISTS", key]);
            expect[node].push(Some(i));
        }
        for (node, link) in self.links.iter_mut().enumerate() {
            if out[node].is_empty() {
                continue;
            }
            link.send(&out[node])?;
            for e in &expect[node] {
                let hit = link.next_reply(|r| match r {
                    crate::resp::reply::Reply::Int(1) => Ok(true),
                    crate::resp::reply::Reply::Error(e) => Err(String::from_utf8_lossy(e).into_owned()),
                    _ => Ok(false),
                })?;
                let Some(i) = e else { continue };
                // A key asked where it is not served (a cluster changing) cannot be known.
                let hit = hit.map_err(|e| LinkError::Protocol(format!("EXISTS answered {e}")))?;
                if hit {
                    let mut k = Vec::new();
                    existing_key(keys[*i].0, &keys[*i].1, &mut k);
                    self.found.insert(k);
                }
            }
        }
        Ok(())
    }

    fn note(&mut self, c: &Command<'_>) {
        if let (Some(db), Keys::Some(ks)) = (self.dest.db(c.db), keys(&c.argv)) {
            for k in ks {
                self.seen.insert((db, k.to_vec()));
            }
        }
    }
}

impl<'d> Sink<'d, (Vec<(u64, Vec<u8>)>, rdb::Result<()>)> for Existing<'_> {
    fn begin(&mut self, _file: usize, input: &'d Input) -> Flow {
        self.name.clone_from(&input.name);
        Flow::Continue
    }

    fn part(&mut self, (keys, r): (Vec<(u64, Vec<u8>)>, rdb::Result<()>)) -> Flow {
        if let Err(error) = r {
            self.failure = Some(Error::Input(InputError::Snapshot { name: self.name.clone(), error }.to_string()));
            return Flow::Stop;
        }
        if let Err(e) = self.exists(&keys) {
            self.failure = Some(Error::Destination(format!("checking which keys {} has", self.cfg.endpoint), e));
            return Flow::Stop;
        }
        Flow::Continue
    }

    fn unit(&mut self, unit: &Unit<'d>, _at: input::Position, _end: u64) -> Flow {
        let mut tally = aof::select::Tally::default();
        match aof::select::select(unit, &self.cfg.filter, &mut tally).as_deref() {
            Some(Unit::One(c)) => self.note(c),
            Some(Unit::Multi(b)) => b.iter().for_each(|c| self.note(c)),
            Some(Unit::Timestamp(_)) | None => {}
        }
        Flow::Continue
    }

    fn end(&mut self, _file: usize, _input: &'d Input, how: Result<LogEnd, InputError>) -> Flow {
        if let Err(e) = how {
            self.failure.get_or_insert(Error::Input(e.to_string()));
            return Flow::Stop;
        }
        Flow::Continue
    }
}
