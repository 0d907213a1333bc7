//! Listing jobs, pending instances, results and failures.
//!
//! A [`Cursor`] pages through a table by keyset pagination: each page is one short read
//! transaction, and no transaction stays open between pages or while the caller holds a row.
//! A row present for the whole iteration is seen exactly once, even while others write.

use crate::error::Result;
use crate::row::{ListKind, ListRow, Row};
use crate::shared::Shared;
use crate::store::Pos;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;

/// Rows fetched per page.
const PAGE: usize = 256;

/// An iterator over one table's rows, fetched a page at a time.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let db = batchdb::Db::open(dir.path().join("q.db"), Default::default())?;
/// db.add(&b"echo hi"[..])?;
/// for row in db.pending() {
///     let row = row?;
///     println!("{} {}", row.job, row.created);
/// }
/// # Ok::<(), batchdb::Error>(())
/// ```
pub struct Cursor<T = Row> {
    inner: Arc<Shared>,
    kind: ListKind,
    pos: Pos,
    page: VecDeque<(Row, Pos)>,
    done: bool,
    _row: PhantomData<fn() -> T>,
}

impl<T: ListRow> Cursor<T> {
    pub(crate) fn new(inner: Arc<Shared>, kind: ListKind) -> Cursor<T> {
        debug_assert!(T::KIND.is_none() || T::KIND == Some(kind));
        Cursor { inner, kind, pos: Pos::default(), page: VecDeque::new(), done: false, _row: PhantomData }
    }

    /// The kind of rows this cursor yields.
    pub fn kind(&self) -> ListKind {
        self.kind
    }
}

impl<T: ListRow> Iterator for Cursor<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some((row, pos)) = self.page.pop_front() {
                self.pos = pos;
                match T::from_row(row) {
                    Some(r) => return Some(Ok(r)),
                    None => continue,
                }
            }
            if self.done {
                return None;
            }
            match self.inner.store.list(self.kind, &self.pos, PAGE) {
                Ok(rows) => {
                    self.done = rows.len() < PAGE;
                    self.page.extend(rows);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
