//! `check`: the engine's integrity check, every blob re-hashed, orphans and dangling
//! references.

use crate::blob::Reader;
use crate::db::Db;
use crate::error::{Error, Result};

/// Blobs re-hashed per page.
const PAGE: usize = 128;

/// What [`Db::check`] found.
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

impl Db {
    /// Checks the whole file: SQLite's integrity check, every blob re-hashed against its
    /// address, chunks that belong to no blob, and rows that refer to missing ones. Problems
    /// are reported, not repaired; an I/O error ends the check.
    pub fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        match self.inner.store.check_structure() {
            Ok(p) => report.problems.extend(p),
            Err(Error::Corrupt(m)) => report.problems.push(m),
            Err(e) => return Err(e),
        }
        let mut after = 0;
        loop {
            let page = match self.inner.store.blobs_after(after, PAGE) {
                Ok(p) => p,
                Err(Error::Corrupt(m)) => {
                    report.problems.push(m);
                    break;
                }
                Err(e) => return Err(e),
            };
            let Some(last) = page.last() else { break };
            after = last.id;
            for b in page {
                let reader = Reader::at(self.inner.clone(), b.hash, b.id, b.size);
                match reader.verify_all() {
                    Ok(n) => report.bytes_checked += n,
                    // A concurrent gc may have removed an unreferenced blob mid-read: only
                    // a blob that is still there is corrupt.
                    Err(Error::Corrupt(m)) => {
                        if self.inner.store.blob(&b.hash)?.is_some_and(|(id, _)| id == b.id) {
                            report.problems.push(format!("blob {}: {m}", b.hash));
                        } else {
                            continue;
                        }
                    }
                    Err(e) => return Err(e),
                }
                report.blobs_checked += 1;
            }
        }
        Ok(report)
    }
}
