//! Paged reads: how a long read is cut into pages, each bounded by a count of events and
//! by a byte budget of stored payloads; how the next page loads while the current one is
//! consumed; and where large decoding runs.
//!
//! Every read that pages (`read_stream`, `read_all`, an aggregate's replay, the log windows
//! of projections and the outbox) stops a page at the event whose stored payload brings it
//! to the budget, as the rows stream in (`WindowLimit`, `sql::cut_at_budget`): a page
//! holds at least one event, so an event larger than the budget still reads. The next
//! page starts after the last event the page returned.
//!
//! - [`StreamCursor`]: a read of one stream's versions. Each page asks for a range of
//!   versions; one the budget cut ends at its last event, any other at the range's end
//!   (so versions removed by retention, and a range whose read failed, are passed).
//! - [`RowsHint`]: on a backend that sends a statement's every row (PostgreSQL), how many
//!   rows a page with a byte budget asks for, learned from the pages before it.
//! - [`prefetched`]: pages fetched one after another, each on a task of its own as soon
//!   as the one before it is taken.
//! - [`off_runtime`] and [`decode_work`]: a page's decoding runs on a blocking thread
//!   when it is large.
//!
//! Not here: what a page holds and how it is decoded (the `Store`), and the statements
//! (the backends).

use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{Stream, stream};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::backend::WindowLimit;
use crate::codec;
use crate::error::{Error, Result};
use crate::stream::Direction;

/// Above this many bytes of decoding work, a page is decoded on a blocking thread
/// (`spawn_blocking`), off the runtime's workers: about a millisecond of work (zstd
/// decompresses, XChaCha20-Poly1305 decrypts and serde parses JSON at around a GiB/s);
/// below it, the hop would cost more than it saves.
pub(crate) const OFFLOAD_DECODE_BYTES: usize = 1 << 20;

/// The rows the first window of the log with a byte budget asks for on a backend that
/// sends every row (see [`RowsHint`]): a window of large events sends no more than these,
/// and windows of small events reach their full count at the next one.
pub(crate) const FIRST_WINDOW_ROWS: usize = 256;

/// How many rows a page with a byte budget asks for, on a backend that sends every row a
/// statement selects (PostgreSQL): the rows past the budget are read off the connection
/// and dropped, so a page asks for about as many rows as the budget holds at the bytes
/// per event of the last page, and a quarter more. After a page the budget cut, that is
/// how many it held; after a page that ended by count, more (at least twice as many as it
/// asked for, so pages of events without bytes to go by grow back). That keeps the surplus
/// to about a quarter of a budget when events are large, and costs nothing when they are
/// small. One hint is shared by the reads it serves (a store keeps one for the log's
/// windows, one for stream pages), as the sizes of recent events are the best guess at
/// the next ones'; before any, a first guess ([`FIRST_WINDOW_ROWS`],
/// [`RowsHint::first_stream_rows`]). On other backends, which stop the statement where
/// the reader stops, pages ask for their full count.
#[derive(Debug)]
pub(crate) struct RowsHint {
    rows: Option<AtomicUsize>,
}

impl RowsHint {
    /// A hint that caps pages when `enabled` (the backend sends every row), at `first`
    /// rows until it learns from a page.
    pub(crate) fn new(enabled: bool, first: usize) -> Self {
        RowsHint {
            rows: enabled.then(|| AtomicUsize::new(first.max(1))),
        }
    }

    /// The first guess for the pages of one stream: the rows that reach `budget` even
    /// when every event is as large as an append accepts (`largest` bytes), so the first
    /// page of a stream of large events sends next to nothing past the budget (a load's
    /// first statement would otherwise send a page of the store's count at once), and one
    /// of small events ends by count, which teaches the hint their size.
    pub(crate) fn first_stream_rows(budget: usize, largest: usize) -> usize {
        (budget / largest.max(1)).saturating_add(1)
    }

    /// `limit` with at most as many events as the hint (at least one), when it has a
    /// byte budget.
    pub(crate) fn ask(&self, limit: WindowLimit) -> WindowLimit {
        match (&self.rows, limit.bytes) {
            (Some(rows), Some(_)) => WindowLimit {
                events: limit.events.min(rows.load(Ordering::Relaxed)).max(1),
                ..limit
            },
            _ => limit,
        }
    }

    /// Learns from a page asked for with `asked` that returned `kept` events of `bytes`
    /// stored bytes (it was cut when they reach the budget), or was `full` by count, how
    /// many rows the next one asks for. A page that ended short of both (the end of what
    /// was read) teaches nothing.
    pub(crate) fn learn(&self, asked: WindowLimit, kept: usize, bytes: usize, full: bool) {
        let (Some(rows), Some(budget)) = (&self.rows, asked.bytes) else {
            return;
        };
        // Events of this page's mean size that fill the budget, and a quarter more.
        let fill = match (kept, bytes) {
            (0, _) => 0,
            (_, 0) => usize::MAX,
            _ => {
                let fill = kept as u128 * budget as u128 / bytes as u128;
                let fill = fill.saturating_add(fill / 4).saturating_add(1);
                usize::try_from(fill).unwrap_or(usize::MAX)
            }
        };
        let hint = if asked.bytes_reached(bytes) {
            fill
        } else if full {
            fill.max(asked.events.saturating_mul(2))
        } else {
            return;
        };
        rows.store(hint.max(1), Ordering::Relaxed);
    }
}

/// The event counts of a read's pages: `first`, then each twice the last, up to `max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageSizes {
    next: usize,
    max: usize,
}

impl PageSizes {
    pub(crate) fn growing(first: usize, max: usize) -> Self {
        let first = first.max(1);
        PageSizes {
            next: first,
            max: max.max(first),
        }
    }

    pub(crate) fn take(&mut self) -> usize {
        let size = self.next;
        self.next = size.saturating_mul(2).min(self.max);
        size
    }
}

/// Where a read of one stream's versions stands: the version its next page starts at, in
/// its direction, up to the version it ends at.
#[derive(Debug, Clone)]
pub(crate) struct StreamCursor {
    next: Option<u64>,
    end: u64,
    direction: Direction,
}

impl StreamCursor {
    /// A read from `from` in `direction` over a stream whose last version is `last`.
    pub(crate) fn new(from: u64, last: u64, direction: Direction) -> Self {
        let (next, end) = match direction {
            Direction::Forward => (from.max(1), last),
            Direction::Backward => (from.min(last), 1),
        };
        StreamCursor {
            next: Some(next),
            end,
            direction,
        }
    }

    /// The versions of the next page, `rows` of them at most (at least one); `None` once
    /// the read is done.
    pub(crate) fn range(&self, rows: usize) -> Option<RangeInclusive<u64>> {
        let start = self.next?;
        let span = u64::try_from(rows.max(1)).unwrap_or(u64::MAX) - 1;
        match self.direction {
            Direction::Forward if start <= self.end => {
                Some(start..=start.saturating_add(span).min(self.end))
            }
            Direction::Backward if start >= self.end && start > 0 => {
                Some(start.saturating_sub(span).max(self.end)..=start)
            }
            _ => None,
        }
    }

    /// Moves past a page of `range`: past the whole range, or, when the byte budget cut
    /// the page, past `cut_at` (the last version it returned) only.
    pub(crate) fn advance(&mut self, range: &RangeInclusive<u64>, cut_at: Option<u64>) {
        let (low, high) = (*range.start(), *range.end());
        self.next = match self.direction {
            Direction::Forward => cut_at.unwrap_or(high).clamp(low, high).checked_add(1),
            Direction::Backward => cut_at.unwrap_or(low).clamp(low, high).checked_sub(1),
        };
    }
}

/// What a page's rows reached, as the backend returned them (before retention hid any):
/// how many, their stored bytes, and the last one's version.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reach {
    pub rows: usize,
    pub bytes: usize,
    pub last: Option<u64>,
}

impl Reach {
    /// The reach of rows given as (version, stored payload length), in the page's order.
    pub(crate) fn of(rows: impl Iterator<Item = (u64, usize)>) -> Self {
        rows.fold(Reach::default(), |reach, (version, bytes)| Reach {
            rows: reach.rows + 1,
            bytes: reach.bytes.saturating_add(bytes),
            last: Some(version),
        })
    }
}

/// A page loading on a task of its own; dropping it aborts the task.
struct Prefetch<T>(JoinHandle<T>);

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The pages `next` makes, one after another from `first`: `next` returns a page and the
/// state the following page starts from, or `None` at the end. Each page loads on a task
/// of its own (in `span`): the first at once (so this is called on the runtime), each
/// next one as soon as the page before it is taken, so the next page loads, and decodes,
/// while the caller consumes the current one: about two pages are held. Dropping the
/// stream aborts the page loading. A panic in `next` ends the pages with
/// [`Error::TaskPanicked`].
pub(crate) fn prefetched<S, T, F, Fut>(
    first: S,
    span: tracing::Span,
    next: F,
) -> impl Stream<Item = Result<T>> + Send + 'static
where
    S: Send + 'static,
    T: Send + 'static,
    F: Fn(S) -> Fut + Send + 'static,
    Fut: Future<Output = Option<(Result<T>, S)>> + Send + 'static,
{
    let load =
        move |next: &F, state: S| Prefetch(tokio::spawn(next(state).instrument(span.clone())));
    let loading = load(&next, first);
    stream::unfold(
        (Some(loading), next, load),
        |(loading, next, load)| async move {
            let mut loading = loading?;
            match joined("reading a page", (&mut loading.0).await) {
                Err(error) => Some((Err(error), (None, next, load))),
                Ok(None) => None,
                Ok(Some((page, state))) => {
                    let loading = load(&next, state);
                    Some((page, (Some(loading), next, load)))
                }
            }
        },
    )
}

/// A task's result, or [`Error::TaskPanicked`] naming `what` it did when it panicked (or
/// was cancelled).
pub(crate) fn joined<T>(
    what: &str,
    result: std::result::Result<T, tokio::task::JoinError>,
) -> Result<T> {
    result.map_err(|error| Error::TaskPanicked {
        task: what.to_owned(),
        message: error.to_string(),
    })
}

/// The decoding work of payloads: the bytes the codec decompresses or decrypts, and when
/// they are also decoded into typed events (`typed`), every payload's, which serde
/// parses. Plain JSON read as it is costs nothing.
pub(crate) fn decode_work<'a>(payloads: impl IntoIterator<Item = &'a [u8]>, typed: bool) -> usize {
    payloads
        .into_iter()
        .filter(|payload| typed || codec::is_framed(payload))
        .map(<[u8]>::len)
        .sum()
}

/// Runs `decode`, whose work is `work` bytes (see [`decode_work`]), here when that is at
/// most [`OFFLOAD_DECODE_BYTES`], else on a blocking thread, off the runtime's workers.
///
/// # Errors
/// [`Error::TaskPanicked`] naming `what` when `decode` panicked on the blocking thread.
pub(crate) async fn off_runtime<T: Send + 'static>(
    work: usize,
    what: &'static str,
    decode: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    if work <= OFFLOAD_DECODE_BYTES {
        return Ok(decode());
    }
    let span = tracing::debug_span!("chronicle.decode", what, bytes = work);
    joined(
        what,
        tokio::task::spawn_blocking(move || span.in_scope(decode)).await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The version ranges of a read whose pages are never cut.
    fn ranges(from: u64, last: u64, mut sizes: PageSizes, direction: Direction) -> Vec<(u64, u64)> {
        let mut cursor = StreamCursor::new(from, last, direction);
        let mut ranges = Vec::new();
        while let Some(range) = cursor.range(sizes.take()) {
            ranges.push((*range.start(), *range.end()));
            cursor.advance(&range, None);
        }
        ranges
    }

    fn fixed(size: usize) -> PageSizes {
        PageSizes::growing(size, size)
    }

    #[test]
    fn pages_cover_the_versions_once() {
        let forward = Direction::Forward;
        let backward = Direction::Backward;
        assert_eq!(ranges(1, 7, fixed(3), forward), [(1, 3), (4, 6), (7, 7)]);
        assert_eq!(ranges(0, 3, fixed(3), forward), [(1, 3)]);
        assert_eq!(ranges(5, 4, fixed(3), forward), []);
        assert_eq!(
            ranges(u64::MAX, 7, fixed(3), backward),
            [(5, 7), (2, 4), (1, 1)]
        );
        assert_eq!(ranges(2, 7, fixed(3), backward), [(1, 2)]);
        assert_eq!(ranges(0, 7, fixed(3), backward), []);
        assert_eq!(ranges(1, 0, fixed(3), forward), []);
        assert_eq!(ranges(u64::MAX, 0, fixed(3), backward), []);
        assert_eq!(
            ranges(u64::MAX - 1, u64::MAX, fixed(usize::MAX), forward),
            [(u64::MAX - 1, u64::MAX)]
        );
    }

    #[test]
    fn growing_pages_double_up_to_the_bound() {
        assert_eq!(
            ranges(1, 40, PageSizes::growing(3, 12), Direction::Forward),
            [(1, 3), (4, 9), (10, 21), (22, 33), (34, 40)]
        );
    }

    #[test]
    fn a_cut_page_is_followed_from_its_last_event() {
        let mut forward = StreamCursor::new(1, 10, Direction::Forward);
        let range = forward.range(8).expect("a page");
        assert_eq!(range, 1..=8);
        forward.advance(&range, Some(3));
        assert_eq!(forward.range(8), Some(4..=10));

        let mut backward = StreamCursor::new(u64::MAX, 10, Direction::Backward);
        let range = backward.range(8).expect("a page");
        assert_eq!(range, 3..=10);
        backward.advance(&range, Some(9));
        assert_eq!(backward.range(8), Some(1..=8));

        // A version outside the range (never returned) still moves the cursor on.
        let mut odd = StreamCursor::new(5, 10, Direction::Forward);
        let range = odd.range(2).expect("a page");
        odd.advance(&range, Some(1));
        assert_eq!(odd.range(2), Some(6..=7));
    }

    #[test]
    fn the_hint_fills_the_budget_at_the_last_size() {
        let budget = WindowLimit {
            events: 1000,
            bytes: Some(100),
        };
        let hint = RowsHint::new(true, FIRST_WINDOW_ROWS);
        assert_eq!(hint.ask(budget).events, FIRST_WINDOW_ROWS);
        // Cut at 8 events of 13 bytes: 7 fill the budget, and a quarter more.
        hint.learn(hint.ask(budget), 8, 104, false);
        assert_eq!(hint.ask(budget).events, 9);
        // Full by count, bytes to spare: as many as the budget holds at that size.
        hint.learn(hint.ask(budget), 9, 18, true);
        assert_eq!(hint.ask(budget).events, 63);
        // Full by count of events without bytes: twice as many.
        hint.learn(hint.ask(budget), 0, 0, true);
        assert_eq!(hint.ask(budget).events, 126);
        // Short: nothing learned.
        hint.learn(hint.ask(budget), 3, 3, false);
        assert_eq!(hint.ask(budget).events, 126);
        let hint = RowsHint::new(true, 4);
        assert_eq!(hint.ask(budget).events, 4);
        assert_eq!(
            hint.ask(WindowLimit {
                events: 1000,
                bytes: None
            })
            .events,
            1000
        );
        // Cut by one event of a hundred times the budget.
        hint.learn(hint.ask(budget), 1, 10_000, false);
        assert_eq!(hint.ask(budget).events, 1);
        hint.learn(
            WindowLimit {
                events: 1,
                bytes: Some(usize::MAX),
            },
            usize::MAX,
            1,
            true,
        );
        assert_eq!(hint.ask(budget).events, 1000);

        assert_eq!(RowsHint::first_stream_rows(32 << 20, 1 << 20), 33);
        assert_eq!(RowsHint::first_stream_rows(100, 1000), 1);

        let off = RowsHint::new(false, 4);
        off.learn(budget, 1, 1000, true);
        assert_eq!(off.ask(budget), budget);
    }

    #[test]
    fn the_work_counts_what_is_decoded() {
        let plain: &[u8] = b"{\"a\":1}";
        let framed: &[u8] = &[0xC7, 1, 0, 0, 5];
        assert_eq!(decode_work([plain, framed], false), framed.len());
        assert_eq!(
            decode_work([plain, framed], true),
            plain.len() + framed.len()
        );
    }
}
