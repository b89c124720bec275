//! skim → rayon batches → ordered delivery.
//!
//! RDB has no index, so one thread skims the file (opcodes and length headers only, see
//! `rdb::skim`) and cuts it into spans of about `batch_bytes` at item boundaries. Workers
//! decode the spans in parallel, each from the parser state the skim had at its start,
//! and the calling thread receives their results strictly in file order. Spans depend only
//! on the bytes and the batch size, never on the number of threads, so the output is the
//! same whatever `threads` is.
//!
//! Errors: when the skim fails, the rest of the file becomes one last span and the full
//! decoder runs over it, so the error reported is the decoder's, exactly as a sequential
//! read would report it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use crate::rdb::{self, Header, Item, Parser, State};

/// How to split the work.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Worker threads; 1 decodes on the calling thread.
    pub threads: usize,
    /// Target input bytes per batch (a record larger than this is a batch of its own).
    pub batch_bytes: usize,
    /// Most batches started and not yet delivered; `None`: one beyond the workers.
    pub in_flight: Option<usize>,
}

impl Plan {
    pub const DEFAULT_BATCH: usize = 1 << 20;

    /// One worker per core.
    pub fn with_threads(threads: Option<usize>) -> Plan {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Plan { threads: threads.unwrap_or(cores).max(1), batch_bytes: Plan::DEFAULT_BATCH, in_flight: None }
    }

    /// The plain sequential read: one thread, one batch.
    pub fn sequential() -> Plan {
        Plan { threads: 1, batch_bytes: usize::MAX, in_flight: None }
    }
}

/// A run of whole items: `data[start..end]`, to be decoded from `state`.
#[derive(Debug, Clone)]
pub struct Span<'a> {
    pub start: usize,
    pub end: usize,
    pub state: State<'a>,
    /// Where the skim stopped, if it failed inside this span (the last one).
    skim_error: Option<rdb::Error>,
}

/// Cuts an RDB into spans.
struct Skimmer<'a, 'e> {
    parser: Parser<'a>,
    len: usize,
    batch: usize,
    done: bool,
    /// Set when the skim reaches the EOF opcode: the bytes after the trailer.
    trailing: &'e std::cell::Cell<Option<usize>>,
}

impl<'a> Iterator for Skimmer<'a, '_> {
    type Item = Span<'a>;

    fn next(&mut self) -> Option<Span<'a>> {
        if self.done {
            return None;
        }
        let start = self.parser.offset() as usize;
        let state = self.parser.state();
        loop {
            match self.parser.next_item() {
                Ok(Some(Item::End { trailing, .. })) => {
                    self.trailing.set(Some(trailing));
                    self.done = true;
                    return Some(Span { start, end: self.len, state, skim_error: None });
                }
                Ok(None) => {
                    self.done = true;
                    return Some(Span { start, end: self.len, state, skim_error: None });
                }
                Ok(Some(_)) => {
                    let at = self.parser.offset() as usize;
                    if at - start >= self.batch {
                        return Some(Span { start, end: at, state, skim_error: None });
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Span { start, end: self.len, state, skim_error: Some(e) });
                }
            }
        }
    }
}

/// Decodes one span, handing each item to `each` with the offset just after it. Stops at
/// the first error, the decoder's or one `each` returns.
pub fn decode_span<'a>(
    data: &'a [u8],
    header: Header,
    span: &Span<'a>,
    each: impl FnMut(Item<'a>, u64) -> rdb::Result<()>,
) -> rdb::Result<()> {
    decode_span_with(data, header, span, true, each)
}

/// [`decode_span`]; with `contents` false, values come as [`Parser::contents`] says
/// (validated all the same, some parts not kept).
pub fn decode_span_with<'a>(
    data: &'a [u8],
    header: Header,
    span: &Span<'a>,
    contents: bool,
    each: impl FnMut(Item<'a>, u64) -> rdb::Result<()>,
) -> rdb::Result<()> {
    decode_span_raw(data, header, span, contents, false, false, each)
}

/// [`decode_span_with`], with records in raw mode when `raw` (see [`Parser::raw`]), and
/// LZF strings expanded as they are read when `expand` (see [`Parser::expand_strings`]).
pub fn decode_span_raw<'a>(
    data: &'a [u8],
    header: Header,
    span: &Span<'a>,
    contents: bool,
    raw: bool,
    expand: bool,
    each: impl FnMut(Item<'a>, u64) -> rdb::Result<()>,
) -> rdb::Result<()> {
    let parser =
        Parser::resume(data, header, span.start, span.state).contents(contents).raw(raw).expand_strings(expand);
    decode_span_by(parser, data, span, each)
}

/// Decodes one span with `parser` (resumed at the span's start, set up as its caller
/// needs), as [`decode_span`] does.
pub fn decode_span_by<'a>(
    mut parser: Parser<'a>,
    data: &'a [u8],
    span: &Span<'a>,
    mut each: impl FnMut(Item<'a>, u64) -> rdb::Result<()>,
) -> rdb::Result<()> {
    while (parser.offset() as usize) < span.end {
        // Matched in place rather than with `?`, which moves the 160-byte item once more.
        match parser.next_item() {
            Ok(Some(item)) => each(item, parser.offset())?,
            Ok(None) => break,
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = &span.skim_error {
        // The decoder read further than the skim could: trust the skim's error.
        return Err(e.clone());
    }
    let at = parser.offset() as usize;
    if at != span.end && span.end != data.len() {
        return Err(rdb::Error::corrupt(
            span.end as u64,
            format!("record boundary mismatch: the decoder stopped at {at}, the skim at {}", span.end),
        ));
    }
    Ok(())
}

/// A pool of `threads` workers, started once per process and size.
fn pool(threads: usize) -> Option<Arc<rayon::ThreadPool>> {
    type Pools = Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>>;
    static POOLS: OnceLock<Pools> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().ok()?;
    if let Some((_, p)) = pools.iter().find(|(n, _)| *n == threads) {
        return Some(p.clone());
    }
    let p = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok()?);
    pools.push((threads, p.clone()));
    Some(p)
}

/// Runs `work` over every span of `data` (on `plan.threads` threads) and hands the results
/// to `deliver` in file order. `deliver` returns false to stop early (an error, a closed
/// pipe); spans not yet started are then skipped. Returns the header error, if any; else
/// when the skim reached the EOF opcode, the header and the bytes after the trailer.
pub fn run<'a, T: Send>(
    data: &'a [u8],
    plan: &Plan,
    work: impl Fn(Header, &Span<'a>) -> T + Sync,
    deliver: impl FnMut(T) -> bool,
) -> rdb::Result<Option<(Header, usize)>> {
    run_from(data, 0, plan, work, deliver)
}

/// [`run`] over the items from offset `from` on (a resumed job): the items before it are
/// skimmed, not decoded, so the parser state (db, a pending expiry…) is the one `from`
/// needs. `from` must be where an item starts; past the file's records it leaves only
/// the end (and what follows it).
pub fn run_from<'a, T: Send>(
    data: &'a [u8],
    from: usize,
    plan: &Plan,
    work: impl Fn(Header, &Span<'a>) -> T + Sync,
    deliver: impl FnMut(T) -> bool,
) -> rdb::Result<Option<(Header, usize)>> {
    let parser = Parser::new(data)?;
    let header = parser.header();
    let mut parser = parser.skim(true);
    while (parser.offset() as usize) < from {
        let (at, state) = (parser.offset() as usize, parser.state());
        match parser.next_item()? {
            Some(Item::End { .. }) | None => {
                parser = Parser::resume(data, header, at, state).skim(true);
                break;
            }
            Some(_) if parser.offset() as usize > from => {
                return Err(rdb::Error::corrupt(
                    from as u64,
                    format!("no item starts at byte {from} (the one at {at} runs past it)"),
                ));
            }
            Some(_) => {}
        }
    }
    let trailing = std::cell::Cell::new(None);
    let skimmer = Skimmer { parser, len: data.len(), batch: plan.batch_bytes.max(1), done: false, trailing: &trailing };
    let parallel = plan.threads > 1 && data.len() > plan.batch_bytes;
    ordered(skimmer, plan.threads, plan.in_flight, parallel, |span| work(header, &span), deliver);
    Ok(trailing.get().map(|t| (header, t)))
}

/// Runs `work` over every span (on `threads` threads when `parallel`) and hands the
/// results to `deliver` in the order of the spans, with at most `in_flight` spans
/// started and not yet delivered (default: one more than the workers). `deliver`
/// returns false to stop early (an error, a closed pipe); spans not yet started are
/// then skipped.
pub fn ordered<S: Send, T: Send>(
    spans: impl Iterator<Item = S>,
    threads: usize,
    in_flight: Option<usize>,
    parallel: bool,
    work: impl Fn(S) -> T + Sync,
    mut deliver: impl FnMut(T) -> bool,
) {
    // One thread, a file that fits in one batch, or no threads to be had: the same
    // work, on this thread.
    let Some(pool) = (parallel && threads > 1).then(|| pool(threads)).flatten() else {
        for span in spans {
            if !deliver(work(span)) {
                break;
            }
        }
        return;
    };
    // By default one batch beyond the workers, so that none waits while the writer
    // writes; more would only hold more output in memory. A caller whose results are
    // small asks for more, so that a batch that takes long (one large record) does not
    // leave the other workers idle behind it.
    let max_in_flight = in_flight.unwrap_or(threads + 1).max(1);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Option<T>)>();
    pool.in_place_scope(|scope| {
        let mut spans = spans;
        let mut issued = 0usize;
        let mut next = 0usize;
        let mut ready: BTreeMap<usize, Option<T>> = BTreeMap::new();
        let mut spans_done = false;
        let mut stopped = false;
        loop {
            while !spans_done && !stopped && issued - next < max_in_flight {
                match spans.next() {
                    Some(span) => {
                        let (tx, work, stop) = (tx.clone(), &work, &stop);
                        let seq = issued;
                        scope.spawn(move |_| {
                            let out = (!stop.load(Ordering::Relaxed)).then(|| work(span));
                            let _ = tx.send((seq, out));
                        });
                        issued += 1;
                    }
                    None => spans_done = true,
                }
            }
            if next == issued {
                break;
            }
            let Ok((seq, out)) = rx.recv() else { break };
            ready.insert(seq, out);
            while let Some(out) = ready.remove(&next) {
                next += 1;
                if let (false, Some(out)) = (stopped, out) {
                    if !deliver(out) {
                        stopped = true;
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    });
}
