//! The ordered input stream: whatever a job reads (RDB files, folders of them, every AOF
//! form, `-rdb` with `-aof`) as one stream, in load order, handed to a consumer.
//!
//! Each input file is a snapshot, a command log, or a snapshot followed by a log (an
//! RDB-preamble AOF). A snapshot is cut into batches by [`crate::pipeline`] and decoded on
//! the workers; a log is read on this thread, unit by unit (a command, or a whole MULTI
//! block), or, when the consumer asks, in batches of units that the workers render.
//! Positions are absolute: an input's index and a byte offset in that file. `--until`
//! is applied here. Errors name the file and the offset and format themselves here
//! ([`InputError`]).
//!
//! A consumer comes in two halves (the split a shared borrow on the workers and a
//! mutable one on the joining thread need):
//! - [`Map`] runs on the workers, shared, read-only: one snapshot batch (or one batch of
//!   log units) in, one `Part` out. It never sees another batch.
//! - [`Sink`] runs on the calling thread and receives, strictly in input order: `begin`
//!   of each input, the parts of its batches, its log units, and `end` with how the input
//!   ended. Its answers ([`Flow`]) go on, skip the rest of the input, or stop the job.
//!
//! The stream promises: parts arrive in input order whatever the number of threads, and
//! batches depend only on the bytes and the batch size (so output is the same for any
//! number of threads); nothing of an input is read before `begin`, nothing after `end`.

use std::path::PathBuf;
use std::sync::mpsc;

use crate::aof::{self, Cut, LogError, Unit, Until};
use crate::pipeline::{self, Plan, Span};
use crate::rdb::{self, Header, Item};
use crate::source::{display_name, InputFile, Source};

/// What a job reads, as the command line gave it.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// `-rdb FILE` arguments, read first.
    pub rdb: Vec<PathBuf>,
    /// FILE arguments: snapshots, logs, folders of snapshots, AOF directories or manifests.
    pub files: Vec<PathBuf>,
    /// `-aof FILE|DIR` arguments, read last.
    pub aof: Vec<PathBuf>,
    pub no_mmap: bool,
    /// Load an AOF whose last file ends inside a command up to its last whole command.
    pub allow_truncated: bool,
    /// Read `-aof` after `-rdb` even when the AOF holds a snapshot of its own.
    pub force: bool,
    /// `--until`: log commands after the first `#TS:` later than this are left out.
    pub until: Option<u64>,
    /// `--on-duplicate`: a key in two snapshot files (see [`crate::duplicates`]).
    pub on_duplicate: crate::duplicates::OnDuplicate,
}

/// A place in the input: which file, and a byte offset in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub file: usize,
    pub offset: u64,
}

/// One input file, open.
pub struct Input {
    /// As messages show it (`<stdin>` for `-`).
    pub name: String,
    pub path: PathBuf,
    source: Source,
    /// The last file of its set: only there may a log end inside a command.
    pub last_of_set: bool,
    /// Given with `-aof`.
    pub from_aof_flag: bool,
}

impl Input {
    fn open(f: InputFile, no_mmap: bool) -> Result<Input, InputError> {
        let name = display_name(&f.path);
        let source = Source::open(&f.path, no_mmap).map_err(|e| InputError::Open { name: name.clone(), error: e })?;
        Ok(Input { name, path: f.path, source, last_of_set: f.last_of_set, from_aof_flag: f.from_aof_flag })
    }

    /// The file's bytes; of a file still being written, those written so far.
    pub fn data(&self) -> &[u8] {
        self.source.bytes()
    }

    /// Starts with an RDB header (a snapshot, or an RDB-preamble AOF); a growing input
    /// is a snapshot.
    pub fn is_snapshot(&self) -> bool {
        self.growing() || aof::is_rdb(self.data())
    }

    /// A snapshot that is not whole (see [`Inputs::growing`]): still being written, or
    /// cut short by its writer. Its length is not known, and `data()` holds part of it.
    pub fn growing(&self) -> bool {
        self.source.growth().is_some_and(|g| !matches!(g.now(), crate::source::Grown::Whole(_)))
    }

    /// Where the input's log starts ([`aof::log_start`]); a growing input has none.
    pub fn log_start(&self) -> Option<usize> {
        if self.source.growth().is_some() {
            return None;
        }
        aof::log_start(self.data())
    }
}

/// The inputs of a job, every one open (a missing part of a multi-part AOF stops the job
/// before it starts).
pub struct Inputs {
    pub files: Vec<Input>,
    pub allow_truncated: bool,
    /// `--until`, checked against the logs.
    pub until: Option<Until>,
    /// What a job does with a key found in two snapshot files.
    pub on_duplicate: crate::duplicates::OnDuplicate,
}

/// Why input could not be read, where, and (for a log) what the user can do.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("no input: give RDB or AOF files (or -rdb FILE, -aof FILE|DIR)")]
    Nothing,
    #[error("{name}: {error}")]
    Open { name: String, error: std::io::Error },
    /// A snapshot's damage; the decoder's error carries the offset and the key.
    #[error("{name}: {error}")]
    Snapshot { name: String, error: rdb::Error },
    /// A log's damage, offsets absolute in the file.
    #[error("{name}: at byte {at}: {msg} (the last complete command ends at byte {last_good}){advice}")]
    Log { name: String, at: u64, last_good: u64, msg: String, truncated: bool, advice: String },
    /// Something asked that these inputs cannot do.
    #[error("{0}")]
    Usage(String),
}

/// Who reads an input error: what a truncated log's message suggests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// `check`: names the flag that loads such a file.
    Check,
    /// `print`: the flag that would load it.
    Print,
    /// `replay`: as `print`, and whether anything was written.
    Replay { written: bool },
}

impl InputError {
    /// A log error of file `input` whose data started at byte `base`, worded for `reader`.
    pub fn log(input: &Input, base: usize, e: &LogError, allow_truncated: bool, reader: Reader) -> InputError {
        let advice = match reader {
            Reader::Check if e.truncated && input.last_of_set => {
                "; a truncated tail: print/replay --allow-truncated load up to that command"
            }
            Reader::Check if e.truncated => {
                "; a truncated file that is not the last of its AOF: Redis refuses to load it"
            }
            Reader::Check => "",
            Reader::Print | Reader::Replay { .. } if e.truncated && input.last_of_set && !allow_truncated => {
                "; --allow-truncated loads up to it"
            }
            Reader::Print | Reader::Replay { .. } if e.truncated && !input.last_of_set => {
                "; only the last file of an AOF may be cut short"
            }
            _ => "",
        };
        let advice = match reader {
            Reader::Replay { written: false } => format!("{advice}; nothing was written"),
            Reader::Replay { written: true } => format!("{advice}; commands before it were sent"),
            _ => advice.to_string(),
        };
        InputError::Log {
            name: input.name.clone(),
            at: (base + e.at) as u64,
            last_good: (base + e.last_good) as u64,
            msg: e.msg.clone(),
            truncated: e.truncated,
            advice,
        }
    }

    /// The damage is in the input (as opposed to a file that could not be opened).
    pub fn is_damage(&self) -> bool {
        matches!(self, InputError::Snapshot { .. } | InputError::Log { .. })
    }
}

impl Inputs {
    /// Opens every input of `spec`: `-rdb` files, FILE arguments, then `-aof` inputs; a
    /// folder stands for its AOF manifest's files, or else for its `.rdb` files.
    pub fn open(spec: &Spec) -> Result<Inputs, InputError> {
        let mut files = Vec::new();
        for f in Inputs::list(spec)? {
            files.push(Input::open(f, spec.no_mmap)?);
        }
        let inputs =
            Inputs { files, allow_truncated: spec.allow_truncated, until: None, on_duplicate: spec.on_duplicate };
        inputs.check_pairing(spec)?;
        let until = inputs.check_until(spec.until)?;
        Ok(Inputs { until, ..inputs })
    }

    /// The files `spec` names, in load order (folders and manifests expanded), not yet
    /// open.
    pub fn list(spec: &Spec) -> Result<Vec<InputFile>, InputError> {
        let all: Vec<PathBuf> = spec.rdb.iter().chain(spec.files.iter()).cloned().collect();
        if all.is_empty() && spec.aof.is_empty() {
            return Err(InputError::Nothing);
        }
        let expand =
            |paths: &[PathBuf]| crate::source::expand_inputs(paths).map_err(|e| InputError::Usage(e.to_string()));
        let mut listed = expand(&all)?;
        listed.extend(expand(&spec.aof)?.into_iter().map(|mut f| {
            f.from_aof_flag = true;
            f
        }));
        Ok(listed)
    }

    /// A snapshot that another thread is writing and `growth` follows (`migrate`'s spool):
    /// read as its bytes come, in one pass, by [`run`]. It has no log of its own.
    pub fn growing(path: PathBuf, growth: std::sync::Arc<crate::source::Growth>) -> Result<Inputs, InputError> {
        let name = display_name(&path);
        let source = Source::growing(&path, growth).map_err(|e| InputError::Open { name: name.clone(), error: e })?;
        let input = Input { name, path, source, last_of_set: true, from_aof_flag: false };
        Ok(Inputs { files: vec![input], allow_truncated: false, until: None, on_duplicate: Default::default() })
    }

    /// Blocks until no input is still being written (a growing one is whole or broken).
    pub fn wait_whole(&self) {
        for f in &self.files {
            if let Some(g) = f.source.growth() {
                g.wait_end();
            }
        }
    }

    /// The bytes of all inputs once whole: of one still being written, as its writer
    /// announced them (`None` when it did not).
    pub fn expected_bytes(&self) -> Option<u64> {
        self.files.iter().map(|f| f.source.growth().map_or(Some(f.data().len() as u64), |g| g.begun().flatten())).sum()
    }

    /// Whether an input is not whole (still being written, or cut short).
    pub fn any_growing(&self) -> bool {
        self.files.iter().any(Input::growing)
    }

    /// One file alone (`check` reads each file for itself).
    pub fn single(f: InputFile, no_mmap: bool) -> Result<Inputs, InputError> {
        Ok(Inputs {
            files: vec![Input::open(f, no_mmap)?],
            allow_truncated: false,
            until: None,
            on_duplicate: Default::default(),
        })
    }

    /// Whether the log of input `file` may end inside a command.
    pub fn allow_truncated(&self, file: usize) -> bool {
        self.allow_truncated && self.files.get(file).is_some_and(|f| f.last_of_set)
    }

    /// Refuses `-rdb X -aof Y` when Y starts with a snapshot of its own: X would be loaded,
    /// then replaced key by key by Y's snapshot, and Y's commands applied on top of both.
    fn check_pairing(&self, spec: &Spec) -> Result<(), InputError> {
        let aof_snapshot = self.files.iter().any(|f| f.from_aof_flag && f.is_snapshot());
        if !spec.rdb.is_empty() && !spec.aof.is_empty() && aof_snapshot && !spec.force {
            return Err(InputError::Usage(
                "the AOF given with -aof starts with its own snapshot (a base RDB or an RDB preamble), \
                 so -rdb would be loaded as well and commands like INCR applied twice; \
                 give the AOF alone, or --force"
                    .into(),
            ));
        }
        Ok(())
    }

    /// `--until` needs `#TS:` annotations in the logs: refused when there are none,
    /// rather than silently taking everything. Finding the logs skims every snapshot to
    /// its end: only when asked.
    fn check_until(&self, until: Option<u64>) -> Result<Option<Until>, InputError> {
        let Some(t) = until else { return Ok(None) };
        let logs: Vec<&[u8]> =
            self.files.iter().filter_map(|f| aof::log_start(f.data()).map(|at| &f.data()[at..])).collect();
        if logs.is_empty() {
            return Err(InputError::Usage(
                "--until cuts AOF commands by time, and the input has no AOF commands".into(),
            ));
        }
        if !logs.iter().any(|l| aof::has_timestamps(l)) {
            return Err(InputError::Usage(
                "--until needs #TS annotations, and this AOF has none (Redis writes them only with \
                 aof-timestamp-enabled yes)"
                    .into(),
            ));
        }
        Ok(Some(Until::new(t)))
    }

    /// The inputs' bytes in load order, with whether each log may end inside a command
    /// (a growing input, which has no log, as no bytes).
    pub fn logs_view(&self) -> Vec<(&[u8], bool)> {
        fn bytes(f: &Input) -> &[u8] {
            if f.source.growth().is_some() {
                &[]
            } else {
                f.data()
            }
        }
        (0..self.files.len()).map(|i| (bytes(&self.files[i]), self.allow_truncated(i))).collect()
    }

    /// Bytes in all.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.data().len() as u64).sum()
    }
}

/// What a consumer answers to each thing the stream hands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Leave the rest of this input (its `end` still comes).
    SkipInput,
    /// Stop the job: no other part, unit or input follows (`end` of this input comes).
    Stop,
}

/// One batch of a snapshot, on a worker: whole records, to decode from the parser state
/// the skim had at its start.
pub struct Batch<'d, 's> {
    /// Index of the input.
    pub file: usize,
    pub header: Header,
    span: &'s Span<'d>,
}

impl<'d, 's> Batch<'d, 's> {
    /// A batch of input `file`, for code that drives [`pipeline`] itself.
    pub fn new(file: usize, header: Header, span: &'s Span<'d>) -> Batch<'d, 's> {
        Batch { file, header, span }
    }

    /// Decodes the batch, handing each item to `each` with the offset just after it; with
    /// `contents` false, some parts of values are validated but not kept (see
    /// [`rdb::Parser::contents`]). Stops at the first error, the decoder's or `each`'s.
    pub fn decode(&self, contents: bool, each: impl FnMut(Item<'d>, u64) -> rdb::Result<()>) -> rdb::Result<()> {
        pipeline::decode_span_with(self.header, self.span, contents, each)
    }

    /// Reads the batch's records raw (`Item::Raw`: the values' stored bytes, not
    /// decoded); other items as `decode` gives them.
    pub fn decode_raw(&self, each: impl FnMut(Item<'d>, u64) -> rdb::Result<()>) -> rdb::Result<()> {
        pipeline::decode_span_raw(self.header, self.span, true, true, false, each)
    }

    /// Decodes the batch's records whole, their LZF-compressed strings expanded as they
    /// are read (see [`rdb::Parser::expand_strings`]): for a consumer that reads the bytes
    /// of every string.
    pub fn decode_expanded(&self, each: impl FnMut(Item<'d>, u64) -> rdb::Result<()>) -> rdb::Result<()> {
        pipeline::decode_span_raw(self.header, self.span, true, false, true, each)
    }

    /// Reads the batch's string records raw (`Item::Raw`) and decodes every other record
    /// whole, its compressed strings expanded as they are read.
    pub fn decode_strings_raw(&self, each: impl FnMut(Item<'d>, u64) -> rdb::Result<()>) -> rdb::Result<()> {
        let parser = rdb::Parser::resume(self.span.data, self.header, self.span.start, self.span.state)
            .raw_strings(true)
            .expand_strings(true);
        pipeline::decode_span_by(parser, self.span, each)
    }

    /// Steps over the batch's items by their length headers (no value decoded, no
    /// checksum), handing each one and the db it is in to `each`.
    pub fn skim(&self, mut each: impl FnMut(&Item<'d>, u64)) -> rdb::Result<()> {
        let mut p = rdb::Parser::resume(self.span.data, self.header, self.span.start, self.span.state).skim(true);
        while (p.offset() as usize) < self.span.end {
            match p.next_item()? {
                Some(item) => each(&item, p.state().db),
                None => break,
            }
        }
        Ok(())
    }

    /// The input file the batch is part of, up to the batch's end at least (of a file
    /// still being written, what was written when the batch was cut); records' slices
    /// point into it.
    pub fn data(&self) -> &'d [u8] {
        self.span.data
    }

    /// Where the batch starts in its file.
    pub fn start(&self) -> u64 {
        self.span.start as u64
    }

    /// Where the batch ends in its file.
    pub fn end(&self) -> u64 {
        self.span.end as u64
    }
}

/// A batch of log units, as offsets into the log: gathered by the reading thread,
/// rebuilt on a worker without a second scan.
#[derive(Default)]
pub struct LogBatch {
    /// Index of the input, and where its log starts in the file.
    pub file: usize,
    base: usize,
    /// Per command: db, byte span, and its arguments' range in `args`.
    cmds: Vec<(u64, usize, usize, std::ops::Range<usize>)>,
    args: Vec<(usize, usize)>,
    /// Per unit: its commands' range in `cmds`, and whether it is a MULTI block.
    units: Vec<(std::ops::Range<usize>, bool)>,
    /// Log bytes the units span.
    bytes: usize,
}

impl LogBatch {
    fn push(&mut self, unit: &Unit<'_>, data: &[u8]) {
        let base = data.as_ptr() as usize;
        let first = self.cmds.len();
        let mut add = |c: &aof::Command<'_>| {
            let first = self.args.len();
            self.args.extend(c.argv.iter().map(|a| (a.as_ptr() as usize - base, a.len())));
            self.cmds.push((c.db, c.offset, c.offset + c.raw.len(), first..self.args.len()));
            self.bytes += c.raw.len();
        };
        match unit {
            Unit::One(c) => add(c),
            Unit::Multi(block) => block.iter().for_each(&mut add),
            Unit::Timestamp(_) => return,
        }
        self.units.push((first..self.cmds.len(), matches!(unit, Unit::Multi(_))));
    }

    /// Hands each unit, rebuilt from the log's bytes `data` (offsets relative to the
    /// log's start), to `f`.
    pub fn each<'a>(&self, data: &'a [u8], mut f: impl FnMut(&Unit<'a>)) {
        let data = &data[self.base..];
        // One argument vector serves every single command (a block's commands own theirs).
        let mut spare: Vec<&'a [u8]> = Vec::new();
        let command = |i: usize, mut argv: Vec<&'a [u8]>| {
            let (db, start, end, ref args) = self.cmds[i];
            argv.clear();
            argv.extend(self.args[args.clone()].iter().map(|&(at, len)| &data[at..at + len]));
            aof::Command { db, argv, raw: &data[start..end], offset: start, narrowed: None }
        };
        for (cmds, multi) in &self.units {
            if *multi {
                f(&Unit::Multi(cmds.clone().map(|i| command(i, Vec::new())).collect()));
            } else {
                let unit = Unit::One(command(cmds.start, std::mem::take(&mut spare)));
                f(&unit);
                if let Unit::One(c) = unit {
                    spare = c.argv;
                }
            }
        }
    }
}

/// The workers' half of a consumer: shared, read-only.
pub trait Map<'d>: Sync {
    /// What one batch becomes.
    type Part: Send;

    /// One batch of a snapshot.
    fn snapshot(&self, batch: &Batch<'d, '_>) -> Self::Part;

    /// True to have a log's units rendered in batches by [`Map::log`] (on the workers,
    /// while a reading thread walks the log) instead of handed one by one to
    /// [`Sink::unit`] on the joining thread.
    fn log_in_batches(&self) -> bool {
        false
    }

    /// One batch of log units (`data` is the whole input file); only asked when
    /// [`Map::log_in_batches`] says so.
    fn log(&self, _data: &'d [u8], _batch: &LogBatch) -> Option<Self::Part> {
        None
    }
}

/// How a log ended.
#[derive(Debug)]
pub enum LogEnd {
    /// The input has no log.
    None,
    /// Read to its end; where it started in the file.
    Whole { base: usize },
    /// A truncated tail allowed and left out.
    Cut { base: usize, cut: Cut },
}

/// The joining half of a consumer, on the calling thread.
pub trait Sink<'d, P> {
    /// Input `file` begins.
    fn begin(&mut self, _file: usize, _input: &'d Input) -> Flow {
        Flow::Continue
    }

    /// The part of one batch, in input order.
    fn part(&mut self, part: P) -> Flow;

    /// The snapshot of the input has been read (`header`), and how many bytes follow it.
    fn snapshot_end(&mut self, _file: usize, _header: Header, _trailing: usize) -> Flow {
        Flow::Continue
    }

    /// The log of input `file` begins at byte `base` (0 for a log file, after the
    /// snapshot for a preamble).
    fn log_begin(&mut self, _file: usize, _input: &'d Input, _base: usize) -> Flow {
        Flow::Continue
    }

    /// One log unit, with its span in the file (absolute offsets), in order. Units after
    /// `--until` are not handed over.
    fn unit(&mut self, _unit: &Unit<'d>, _at: Position, _end: u64) -> Flow {
        Flow::Continue
    }

    /// Input `file` ended: with its log read whole, cut, or not read (an error, or the
    /// consumer skipped or stopped it: `Ok(LogEnd::None)`).
    fn end(&mut self, _file: usize, _input: &'d Input, _how: Result<LogEnd, InputError>) -> Flow {
        Flow::Continue
    }
}

/// How to read.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub plan: Plan,
    /// Start here (a resumed job): earlier inputs are skipped, and so are the items of
    /// this input before the offset (skimmed, not decoded, for their parser state).
    pub from: Position,
    /// How log errors are worded.
    pub reader: Reader,
}

/// Reads `inputs` in order into `map` and `sink`. Returns `--until` as it ended.
pub fn run<'d, M: Map<'d>, S: Sink<'d, M::Part>>(
    inputs: &'d Inputs,
    opts: &Options,
    map: &M,
    sink: &mut S,
) -> Option<Until> {
    let mut until = inputs.until;
    for (file, input) in inputs.files.iter().enumerate().skip(opts.from.file) {
        let skip_to = if file == opts.from.file { opts.from.offset as usize } else { 0 };
        let mut flow = sink.begin(file, input);
        let how = if flow == Flow::Continue {
            read_input(inputs, file, skip_to, opts, map, sink, &mut until, &mut flow)
        } else {
            Ok(LogEnd::None)
        };
        let after = sink.end(file, input, how);
        if flow == Flow::Stop || after == Flow::Stop {
            break;
        }
    }
    until
}

#[allow(clippy::too_many_arguments)]
fn read_input<'d, M: Map<'d>, S: Sink<'d, M::Part>>(
    inputs: &'d Inputs,
    file: usize,
    skip_to: usize,
    opts: &Options,
    map: &M,
    sink: &mut S,
    until: &mut Option<Until>,
    flow: &mut Flow,
) -> Result<LogEnd, InputError> {
    let input = &inputs.files[file];
    let data = input.data();
    let mut base = 0;
    if let Some(growth) = input.source.growth() {
        // A snapshot still being written: read once, as its bytes come.
        if skip_to > 0 {
            return Err(InputError::Usage(format!(
                "{}: a snapshot still being written is read from its start",
                input.name
            )));
        }
        let full = input.source.reserved();
        let more = |want: usize, wait: std::time::Duration| {
            let grown = growth.wait(want.saturating_sub(1) as u64, wait);
            use crate::source::Grown;
            let (Grown::To(n) | Grown::Whole(n) | Grown::Broken(n)) = grown;
            let d = &full[..(n as usize).min(full.len())];
            match grown {
                Grown::To(_) => pipeline::Grow::More(d),
                Grown::Whole(_) => pipeline::Grow::Whole(d),
                Grown::Broken(_) => pipeline::Grow::Broken(d),
            }
        };
        let end = pipeline::run_growing(
            &more,
            &opts.plan,
            |header, span| map.snapshot(&Batch { file, header, span }),
            |part| {
                *flow = sink.part(part);
                *flow == Flow::Continue
            },
        );
        let end = end.map_err(|error| InputError::Snapshot { name: input.name.clone(), error })?;
        if *flow != Flow::Continue {
            return Ok(LogEnd::None);
        }
        let Some((header, trailing)) = end else { return Ok(LogEnd::None) };
        *flow = sink.snapshot_end(file, header, trailing);
        return Ok(LogEnd::None);
    }
    if input.is_snapshot() {
        let end = pipeline::run_from(
            data,
            skip_to,
            &opts.plan,
            |header, span| map.snapshot(&Batch { file, header, span }),
            |part| {
                *flow = sink.part(part);
                *flow == Flow::Continue
            },
        )
        .map_err(|error| InputError::Snapshot { name: input.name.clone(), error })?;
        if *flow != Flow::Continue {
            return Ok(LogEnd::None);
        }
        let Some((header, trailing)) = end else { return Ok(LogEnd::None) };
        *flow = sink.snapshot_end(file, header, trailing);
        base = data.len() - trailing;
        if *flow != Flow::Continue || !matches!(data.get(base), Some(b'*' | b'#')) {
            return Ok(LogEnd::None);
        }
    }
    *flow = sink.log_begin(file, input, base);
    if *flow != Flow::Continue {
        return Ok(LogEnd::None);
    }
    let allow_truncated = inputs.allow_truncated(file);
    // Batches start at the log's first unit: a resume point inside the log reads it here.
    let r = if map.log_in_batches()
        && opts.plan.threads > 1
        && data.len() - base > opts.plan.batch_bytes
        && skip_to <= base
    {
        log_in_batches(data, base, file, allow_truncated, opts, map, sink, until, flow)
    } else {
        let mut last_end = base;
        aof::read_log(&data[base..], allow_truncated, |unit| {
            if *flow != Flow::Continue || until.as_mut().is_some_and(|u| !u.admits(unit)) {
                return;
            }
            // A timestamp has no bytes of its own in the unit: it stands where the last
            // unit ended.
            let (start, end) = span_of(unit).map_or((last_end, last_end), |(s, e)| (base + s, base + e));
            last_end = end;
            if start < skip_to {
                return; // before the resume point: done by an earlier run
            }
            *flow = sink.unit(unit, Position { file, offset: start as u64 }, end as u64);
        })
    };
    match r {
        Ok(None) => Ok(LogEnd::Whole { base }),
        Ok(Some(cut)) => Ok(LogEnd::Cut { base, cut }),
        Err(e) => Err(InputError::log(input, base, &e, allow_truncated, opts.reader)),
    }
}

/// A unit's byte span in its log (`None` for a timestamp).
pub fn span_of(unit: &Unit<'_>) -> Option<(usize, usize)> {
    match unit {
        Unit::One(c) => Some((c.offset, c.offset + c.raw.len())),
        Unit::Multi(b) => Some((b[0].offset, b[b.len() - 1].offset + b[b.len() - 1].raw.len())),
        Unit::Timestamp(_) => None,
    }
}

/// A log with workers: a scoped thread reads the log and batches its units; the batches
/// are rendered by the other threads (with two in all, by this one) and joined in order
/// by this one.
#[allow(clippy::too_many_arguments)]
fn log_in_batches<'d, M: Map<'d>, S: Sink<'d, M::Part>>(
    data: &'d [u8],
    base: usize,
    file: usize,
    allow_truncated: bool,
    opts: &Options,
    map: &M,
    sink: &mut S,
    until: &mut Option<Until>,
    flow: &mut Flow,
) -> Result<Option<Cut>, LogError> {
    let batch_bytes = opts.plan.batch_bytes.clamp(1, 64 << 20);
    let (tx, rx) = mpsc::sync_channel::<LogBatch>(opts.plan.threads + 1);
    let log = &data[base..];
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut batch = LogBatch { file, base, ..LogBatch::default() };
            let mut open = true;
            let r = aof::read_log(log, allow_truncated, |unit| {
                if !open || until.as_mut().is_some_and(|u| !u.admits(unit)) {
                    return;
                }
                batch.push(unit, log);
                if batch.bytes >= batch_bytes {
                    let next = LogBatch { file, base, ..LogBatch::default() };
                    open = tx.send(std::mem::replace(&mut batch, next)).is_ok();
                }
            });
            if open {
                let _ = tx.send(batch);
            }
            r
        });
        // The reader has a core of its own; the others render.
        let workers = opts.plan.threads - 1;
        pipeline::ordered(
            rx.into_iter(),
            workers,
            None,
            workers > 1,
            |batch| map.log(data, &batch),
            |part| {
                if let Some(part) = part {
                    *flow = sink.part(part);
                }
                *flow == Flow::Continue
            },
        );
        reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
