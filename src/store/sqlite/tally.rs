//! The totals `stats` reports for the history tables (jobs, published blobs and their bytes,
//! result and fail rows), kept in `meta` so that `stats` reads them instead of counting
//! millions of rows.
//!
//! Not triggers: a trigger runs a sub-program and an `UPDATE` of `meta` for every row it
//! counts (measured: +24% instructions an add). Instead each statement that changes a total
//! notes its change here, in the writer thread, and the writer adds the whole transaction's
//! change to `meta` just before its `COMMIT` (`conn::Conns::run_batch`): one small `UPDATE`
//! for each total that changed. Measured with callgrind: +13% instructions an add and +4% a
//! claim+complete, where one statement updating all five rows cost +24% to +55% an add.
//! An operation rolled back to its savepoint has its notes dropped with it.
//!
//! `check` compares the kept totals with the tables, so a statement that forgot to note its
//! change is found by every test that checks a file.

use std::cell::Cell;

/// A change to the kept totals. Published blobs are counted as jobs and others (a job is
/// always published), so that a new job changes two totals, not three.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub jobs: i64,
    pub others: i64,
    pub blob_bytes: i64,
    pub results: i64,
    pub fails: i64,
}

impl Tally {
    pub fn is_zero(&self) -> bool {
        *self == Tally::default()
    }

    pub fn add(&mut self, o: Tally) {
        self.jobs += o.jobs;
        self.others += o.others;
        self.blob_bytes += o.blob_bytes;
        self.results += o.results;
        self.fails += o.fails;
    }
}

thread_local! {
    /// The running operation's change. Write closures run on the thread that leads the
    /// batch, one at a time, so a thread-local is the operation's.
    static OP: Cell<Tally> = const { Cell::new(Tally { jobs: 0, others: 0, blob_bytes: 0, results: 0, fails: 0 }) };
}

/// Notes a change made by the running write operation.
pub(crate) fn note(f: impl FnOnce(&mut Tally)) {
    OP.with(|c| {
        let mut t = c.get();
        f(&mut t);
        c.set(t);
    })
}

/// Takes what the running operation noted, leaving nothing.
pub(crate) fn take() -> Tally {
    OP.with(|c| c.replace(Tally::default()))
}
