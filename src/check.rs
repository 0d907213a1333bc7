//! `check`: the engine's integrity check, every blob re-hashed, orphans and dangling
//! references.

use crate::blob::Reader;
use crate::error::{Error, Result};
use crate::list::Cursor;
use crate::row::{ListKind, Row};
use crate::shared::Shared;
use std::sync::Arc;

/// Blobs re-hashed per page.
const PAGE: usize = 128;

/// What [`Db::check`](crate::Db::check) found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// One line per problem, naming the object.
    pub problems: Vec<String>,
    /// Blobs re-hashed.
    pub blobs_checked: u64,
    /// Bytes re-hashed.
    pub bytes_checked: u64,
}

impl CheckReport {
    /// No problem found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// [`Db::check`](crate::Db::check): the structure, every listing, every blob.
pub(crate) fn check(shared: &Arc<Shared>) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    match shared.store.check_structure() {
        Ok(p) => report.problems.extend(p),
        Err(Error::Corrupt(m)) => report.problems.push(m),
        Err(e) => return Err(e),
    }
    let mut after = 0;
    loop {
        let page = match shared.store.blobs_after(after, PAGE) {
            Ok(p) => p,
            Err(Error::Corrupt(m)) => {
                report.problems.push(m);
                break;
            }
            Err(e) => return Err(e),
        };
        // Ids come back in order from an intact table; a damaged one may return them in
        // any order, so the next page starts after the largest id seen, and a page that
        // does not move past `after` ends the walk (it would repeat forever).
        let Some(largest) = page.iter().map(|b| b.id).max() else { break };
        if largest <= after {
            report.problems.push(format!("the blob table returns ids out of order after blob {after}"));
            break;
        }
        after = largest;
        for b in page {
            let (hash, size) = match b.row {
                Ok(row) => row,
                Err(Error::Corrupt(m)) => {
                    report.problems.push(m);
                    report.blobs_checked += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let reader = Reader::at(shared.clone(), hash, b.id, size);
            match reader.verify_all() {
                Ok(n) => report.bytes_checked += n,
                // A concurrent gc may have removed an unreferenced blob mid-read: only
                // a blob that is still there is corrupt.
                Err(Error::Corrupt(m)) => {
                    let still = match shared.store.blob(&hash) {
                        Ok(found) => found.is_some_and(|(id, _)| id == b.id),
                        Err(Error::Corrupt(_)) => true,
                        Err(e) => return Err(e),
                    };
                    if still {
                        report.problems.push(format!("blob {hash}: {m}"));
                    } else {
                        continue;
                    }
                }
                // Removed by a concurrent gc before its first chunk was read.
                Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
            report.blobs_checked += 1;
        }
    }
    // The reads users do: every listing to its end, and the counts. The integrity check
    // can pass a damaged index that these reads go through (a partial index's root page
    // overwritten by another page was seen to: fuzz target `damage`).
    for kind in [ListKind::Job, ListKind::Pending, ListKind::Result, ListKind::Fail] {
        for row in Cursor::<Row>::new(shared.clone(), kind) {
            match row {
                Ok(_) => {}
                Err(Error::Corrupt(m)) => {
                    // A damaged blob row that the walk above named already is not news.
                    if !report.problems.iter().any(|p| p.ends_with(&m)) {
                        report.problems.push(format!("listing {kind:?}: {m}"));
                    }
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    match shared.store.stats() {
        Ok(_) => {}
        Err(Error::Corrupt(m)) if !report.problems.iter().any(|p| p.ends_with(&m)) => {
            report.problems.push(format!("stats: {m}"))
        }
        Err(Error::Corrupt(_)) => {}
        Err(e) => return Err(e),
    }
    Ok(report)
}
