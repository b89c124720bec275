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
//!
//! A snapshot still being written ([`run_growing`]) is skimmed as its bytes come: an item
//! that does not end within what is written yet is waited for, and spans then follow the
//! bytes' arrival as well as the batch size.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

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
    /// The file's bytes as the skim saw them (of a growing file, those written then).
    pub data: &'a [u8],
    /// Where the skim stopped, if it failed inside this span (the last one).
    skim_error: Option<rdb::Error>,
}

/// How far a snapshot still being written has come (see [`run_growing`]): its bytes so
/// far, and whether more may come.
#[derive(Debug, Clone, Copy)]
pub enum Grow<'a> {
    /// What is written now; more may come.
    More(&'a [u8]),
    /// The file is whole.
    Whole(&'a [u8]),
    /// The writer gave up: nothing more comes, and the file is cut short.
    Broken(&'a [u8]),
}

/// Waits until at least the given length is written (or the file has ended, or the time
/// is up) and says how far it is.
pub type MoreBytes<'m, 'a> = &'m (dyn Fn(usize, Duration) -> Grow<'a> + Sync);

/// How long the skim of a growing file waits for bytes before it hands over an empty
/// span, so that the batches decoded meanwhile are delivered.
const GROW_WAIT: Duration = Duration::from_millis(20);

/// Cuts an RDB into spans.
struct Skimmer<'a, 'e> {
    parser: Parser<'a>,
    header: Header,
    /// The bytes skimmed over (of a growing file, those written so far).
    data: &'a [u8],
    batch: usize,
    done: bool,
    /// Set when the skim reaches the EOF opcode: the bytes after the trailer.
    trailing: &'e std::cell::Cell<Option<usize>>,
    /// Of a growing file: how to wait for more bytes.
    more: Option<MoreBytes<'e, 'a>>,
    /// Of a growing file, the item that did not fit in what was written (where it starts,
    /// the parser state there), and the length its next try waits for: twice what the
    /// last try had past the item's start (a byte more at least), so that a huge item is
    /// skimmed a few times as it comes, not once per write.
    pending: Option<(usize, State<'a>)>,
    want: usize,
}

impl<'a> Skimmer<'a, '_> {
    /// Waits for the bytes the pending item needs (see [`Skimmer::pending`]). `Some` (an
    /// empty span, which lets the parts decoded meanwhile be delivered) when they are
    /// not there yet; `None` once the item can be tried again, from a fresh parser over
    /// the longer bytes. Once the file is whole or broken, `more` is gone and the item's
    /// outcome is final.
    fn wait_for_item(&mut self, at: usize, at_state: State<'a>) -> Option<Span<'a>> {
        let more = self.more?;
        if self.want == 0 {
            let have = self.data.len();
            self.want = have + (have - at).max(1);
        }
        match more(self.want, GROW_WAIT) {
            Grow::More(d) if d.len() < self.want => {
                self.data = d;
                return Some(Span { start: at, end: at, state: at_state, data: self.data, skim_error: None });
            }
            Grow::More(d) => self.data = d,
            Grow::Whole(d) => (self.data, self.more) = (d, None),
            Grow::Broken(d) => (self.data, self.more) = (d, None),
        }
        self.want = 0;
        self.pending = None;
        self.parser = Parser::resume(self.data, self.header, at, at_state).skim(true);
        None
    }
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
            if let Some((at, at_state)) = self.pending {
                match self.wait_for_item(at, at_state) {
                    Some(empty) => return Some(empty),
                    None => continue,
                }
            }
            let (at, at_state) = (self.parser.offset() as usize, self.parser.state());
            let item = self.parser.next_item();
            // A growing file: an item that fails may only be cut by the end of what is
            // written; the end of the snapshot is taken only once the file is whole. The
            // whole items before it are handed over first.
            if self.more.is_some() && matches!(item, Err(_) | Ok(None) | Ok(Some(Item::End { .. }))) {
                self.pending = Some((at, at_state));
                self.parser = Parser::resume(self.data, self.header, at, at_state).skim(true);
                if at > start {
                    return Some(Span { start, end: at, state, data: self.data, skim_error: None });
                }
                continue;
            }
            let len = self.data.len();
            match item {
                Ok(Some(Item::End { trailing, .. })) => {
                    self.trailing.set(Some(trailing));
                    self.done = true;
                    return Some(Span { start, end: len, state, data: self.data, skim_error: None });
                }
                Ok(None) => {
                    self.done = true;
                    return Some(Span { start, end: len, state, data: self.data, skim_error: None });
                }
                Ok(Some(_)) => {
                    let at = self.parser.offset() as usize;
                    if at - start >= self.batch {
                        return Some(Span { start, end: at, state, data: self.data, skim_error: None });
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Span { start, end: len, state, data: self.data, skim_error: Some(e) });
                }
            }
        }
    }
}

/// Decodes one span (from the bytes the skim saw), handing each item to `each` with the offset just after it. Stops at
/// the first error, the decoder's or one `each` returns.
pub fn decode_span<'a>(
    header: Header,
    span: &Span<'a>,
    each: impl FnMut(Item<'a>, u64) -> rdb::Result<()>,
) -> rdb::Result<()> {
    decode_span_with(header, span, true, each)
}

/// [`decode_span`]; with `contents` false, values come as [`Parser::contents`] says
/// (validated all the same, some parts not kept).
pub fn decode_span_with<'a>(
    header: Header,
    span: &Span<'a>,
    contents: bool,
    each: impl FnMut(Item<'a>, u64) -> rdb::Result<()>,
) -> rdb::Result<()> {
    decode_span_raw(header, span, contents, false, false, each)
}

/// [`decode_span_with`], with records in raw mode when `raw` (see [`Parser::raw`]), and
/// LZF strings expanded as they are read when `expand` (see [`Parser::expand_strings`]).
pub fn decode_span_raw<'a>(
    header: Header,
    span: &Span<'a>,
    contents: bool,
    raw: bool,
    expand: bool,
    each: impl FnMut(Item<'a>, u64) -> rdb::Result<()>,
) -> rdb::Result<()> {
    let parser =
        Parser::resume(span.data, header, span.start, span.state).contents(contents).raw(raw).expand_strings(expand);
    decode_span_by(parser, span, each)
}

/// Decodes one span with `parser` (resumed at the span's start, set up as its caller
/// needs), as [`decode_span`] does.
pub fn decode_span_by<'a>(
    mut parser: Parser<'a>,
    span: &Span<'a>,
    mut each: impl FnMut(Item<'a>, u64) -> rdb::Result<()>,
) -> rdb::Result<()> {
    let data = span.data;
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
    let skimmer = Skimmer {
        parser,
        header,
        data,
        batch: plan.batch_bytes.max(1),
        done: false,
        trailing: &trailing,
        more: None,
        pending: None,
        want: 0,
    };
    let parallel = plan.threads > 1 && data.len() > plan.batch_bytes;
    ordered(skimmer, plan.threads, plan.in_flight, parallel, |span| work(header, &span), deliver);
    Ok(trailing.get().map(|t| (header, t)))
}

/// [`run`] over a snapshot still being written: `more` gives its bytes as they come.
/// Spans hold whole items only, each decoded from the bytes written when it was cut
/// ([`Span::data`]), so nothing past what is written is ever read; an empty span now and
/// then, while the bytes are slow, lets the parts decoded meanwhile be delivered. The
/// snapshot's end (and its checksum, which the last span's decoder checks) is taken
/// only once the file is whole; a file that ends cut short gives a truncation error in
/// its last span. Returns what [`run`] returns.
pub fn run_growing<'a, T: Send>(
    more: MoreBytes<'_, 'a>,
    plan: &Plan,
    work: impl Fn(Header, &Span<'a>) -> T + Sync,
    deliver: impl FnMut(T) -> bool,
) -> rdb::Result<Option<(Header, usize)>> {
    // The header first: wait until it is there (or the file has ended).
    let mut want = 16;
    let (parser, data, more) = loop {
        let (data, open) = match more(want, Duration::from_secs(1)) {
            Grow::More(d) => (d, true),
            Grow::Whole(d) | Grow::Broken(d) => (d, false),
        };
        match Parser::new(data) {
            Ok(p) => break (p, data, open.then_some(more)),
            Err(e) if open && matches!(e.kind, rdb::ErrorKind::Truncated { .. }) => want = want.max(data.len() + 1),
            Err(e) => return Err(e),
        }
    };
    let header = parser.header();
    let trailing = std::cell::Cell::new(None);
    let mut skimmer = Skimmer {
        parser: parser.skim(true),
        header,
        data,
        batch: plan.batch_bytes.max(1),
        done: false,
        trailing: &trailing,
        more,
        pending: None,
        want: 0,
    };
    ordered(&mut skimmer, plan.threads, plan.in_flight, plan.threads > 1, |span| work(header, &span), deliver);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// The keys of a span's records, up to its error if it has one (as replay applies
    /// the records of a batch before its damage).
    fn keys_of(header: Header, span: &Span<'_>) -> (Vec<Vec<u8>>, Option<rdb::Error>) {
        let mut keys = Vec::new();
        let r = decode_span(header, span, |item, _| {
            if let Item::Record(r) = item {
                keys.push(r.key.bytes().to_vec());
            }
            Ok(())
        });
        (keys, r.err())
    }

    fn plain(data: &[u8], plan: &Plan) -> (Vec<Vec<u8>>, Option<rdb::Error>) {
        let (mut keys, mut err) = (Vec::new(), None);
        let end = run(data, plan, keys_of, |(k, e)| {
            keys.extend(k);
            err = e;
            err.is_none()
        });
        (keys, err.or(end.err()))
    }

    /// `data` written by another thread in pieces of `step` bytes, read by
    /// `run_growing`; ends whole, or broken after `cut` bytes.
    fn growing(data: &[u8], step: usize, cut: Option<usize>, plan: &Plan) -> (Vec<Vec<u8>>, Option<rdb::Error>) {
        let written = AtomicUsize::new(0);
        let ended = AtomicBool::new(false);
        let last = cut.unwrap_or(data.len());
        let more = |want: usize, wait: Duration| {
            let until = std::time::Instant::now() + wait;
            loop {
                let ended = ended.load(Ordering::Acquire);
                let n = written.load(Ordering::Acquire);
                let d = &data[..n];
                if ended && cut.is_some() {
                    return Grow::Broken(d);
                }
                if ended {
                    return Grow::Whole(d);
                }
                if n >= want || std::time::Instant::now() >= until {
                    return Grow::More(d);
                }
                std::thread::yield_now();
            }
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut n = 0;
                while n < last {
                    n = (n + step).min(last);
                    written.store(n, Ordering::Release);
                    std::thread::sleep(Duration::from_micros(20));
                }
                ended.store(true, Ordering::Release);
            });
            let (mut keys, mut err) = (Vec::new(), None);
            let end = run_growing(&more, plan, keys_of, |(k, e)| {
                keys.extend(k);
                err = e;
                err.is_none()
            });
            (keys, err.or(end.err()))
        })
    }

    fn fixture() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/redis-7.0.rdb")).unwrap()
    }

    #[test]
    fn a_growing_snapshot_reads_as_the_whole_file() {
        let data = fixture();
        for threads in [1, 2] {
            let plan = Plan { threads, batch_bytes: 512, in_flight: None };
            let (want, err) = plain(&data, &plan);
            assert!(err.is_none() && want.len() > 10, "{err:?}");
            for step in [13, 301, 5000, data.len()] {
                let (got, err) = growing(&data, step, None, &plan);
                assert!(err.is_none(), "step {step}: {err:?}");
                assert_eq!(got, want, "step {step}, threads {threads}");
            }
        }
    }

    /// Records are handed over as their bytes come, not once the file is whole: here the
    /// file grows by 301 bytes each time the reader asks for more.
    #[test]
    fn a_growing_snapshot_is_delivered_before_it_is_whole() {
        let data = fixture();
        let shown = AtomicUsize::new(0);
        let more = |_want: usize, _wait: Duration| {
            let n = (shown.load(Ordering::Relaxed) + 301).min(data.len());
            shown.store(n, Ordering::Relaxed);
            if n == data.len() {
                Grow::Whole(&data[..])
            } else {
                Grow::More(&data[..n])
            }
        };
        let mut first = None;
        let plan = Plan { threads: 1, batch_bytes: 1 << 20, in_flight: None };
        let r = run_growing(&more, &plan, keys_of, |(k, e)| {
            if !k.is_empty() && first.is_none() {
                first = Some(shown.load(Ordering::Relaxed));
            }
            e.is_none()
        });
        assert!(r.is_ok(), "{r:?}");
        let first = first.expect("no records");
        assert!(first < data.len() / 4, "the first records came with {first} of {} bytes", data.len());
    }

    #[test]
    fn a_growing_snapshot_cut_short_is_a_truncation_after_its_whole_records() {
        let data = fixture();
        let plan = Plan { threads: 2, batch_bytes: 256, in_flight: None };
        let (all, _) = plain(&data, &plan);
        for cut in [0, 5, 9, data.len() / 2, data.len() - 3] {
            let (got, err) = growing(&data, 97, Some(cut), &plan);
            let err = err.unwrap_or_else(|| panic!("cut at {cut}: no error"));
            assert!(matches!(err.kind, rdb::ErrorKind::Truncated { .. }), "cut at {cut}: {err}");
            assert!(err.offset as usize <= cut, "cut at {cut}: {err}");
            // The records before the cut, in order, and none after it.
            assert_eq!(got, all[..got.len()], "cut at {cut}");
            // Exactly the records that end before the cut.
            let mut whole = 0;
            if let Ok(p) = Parser::new(&data[..cut]) {
                let mut p = p;
                while let Ok(Some(item)) = p.next_item() {
                    whole += matches!(item, Item::Record(_)) as usize;
                }
            }
            assert_eq!(got.len(), whole, "cut at {cut}");
        }
    }

    #[test]
    fn damage_in_a_growing_snapshot_is_the_error_of_the_whole_file() {
        let mut data = fixture();
        // A bad checksum: found once the file is whole, by the last span's decoder.
        let n = data.len();
        data[n - 1] ^= 0xff;
        let plan = Plan { threads: 2, batch_bytes: 256, in_flight: None };
        let (_, want) = plain(&data, &plan);
        let (_, got) = growing(&data, 33, None, &plan);
        assert_eq!(got.map(|e| e.to_string()), want.map(|e| e.to_string()));
    }
}
