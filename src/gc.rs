//! Garbage collection and the removal of staging areas: one algorithm for every backend,
//! written over the store's one-transaction primitives, so that no step holds the write lock
//! for long and a crash at any point leaves only what the next run removes.
//!
//! 1. Staging areas whose lease ran out (writers that died) are expired, re-checked in the
//!    expiring transaction because the writer may have renewed the lease meanwhile; their
//!    chunks go [`CHUNK_BATCH`] at a time, then their row.
//! 2. Published blobs that no job or result references are turned back into abandoned staging
//!    areas first (the backend takes whatever lock makes this safe against a writer
//!    publishing the same content), then removed like any stage: a crash part way leaves an
//!    abandoned stage, never chunks without a blob.
//!    Where the store keeps a window ([`Store::gc_window`]), only the blobs published since
//!    the last gc (ids above its mark) and those a prune left without a result (`loose`)
//!    are looked at, so that a gc costs what it may remove, not the size of the database;
//!    the mark moves up once both are done. Whichever blobs are looked at, the store
//!    re-checks that a blob is unreferenced in the transaction that unpublishes it.
//! 3. Chunks whose blob row is missing (left by older versions or by damage) are removed.

use crate::clock::now_ms;
use crate::error::Result;
use crate::hash::Hash;
use crate::store::{BlobId, GcReport, Store, CHUNK_BATCH};

/// Deletes a blob's chunks [`CHUNK_BATCH`] at a time, one transaction each; returns the
/// chunks and bytes removed.
fn clear_chunks(store: &dyn Store, blob: BlobId) -> Result<(u64, u64)> {
    let (mut chunks, mut bytes) = (0, 0);
    loop {
        let (n, b) = store.chunks_delete_some(blob)?;
        chunks += n;
        bytes += b;
        if n < CHUNK_BATCH as u64 {
            return Ok((chunks, bytes));
        }
    }
}

/// Removes a staging area that its writer gives up (an aborted or duplicate write): marks it
/// abandoned, clears its chunks, deletes its row. Returns the chunks removed.
pub(crate) fn stage_clear(store: &dyn Store, stage: BlobId) -> Result<u64> {
    store.stage_abandon(stage)?;
    let (chunks, _) = clear_chunks(store, stage)?;
    store.stage_delete(stage)?;
    Ok(chunks)
}

/// Removes a published blob if nothing references it by now.
fn remove_if_unreferenced(store: &dyn Store, blob: BlobId, hash: &Hash, report: &mut GcReport) -> Result<()> {
    if let Some(inline) = store.blob_unpublish_unreferenced(blob, hash)? {
        let (n, b) = clear_chunks(store, blob)?;
        store.stage_delete(blob)?;
        report.blobs_removed += 1;
        report.chunks_removed += n;
        report.bytes_removed += b + inline;
    }
    Ok(())
}

/// Removes expired staging areas, unreferenced blobs and orphan chunks (see the module docs).
pub(crate) fn gc(store: &dyn Store) -> Result<GcReport> {
    let mut report = GcReport::default();
    loop {
        let now = now_ms();
        let stale = store.stale_stages(now)?;
        if stale.is_empty() {
            break;
        }
        for stage in stale {
            if store.stage_expire_if_stale(stage, now)? {
                let (n, b) = clear_chunks(store, stage)?;
                store.stage_delete(stage)?;
                report.stages_removed += 1;
                report.chunks_removed += n;
                report.bytes_removed += b;
            }
        }
    }
    let window = store.gc_window()?;
    let mut after: BlobId = window.map_or(0, |(mark, _)| mark);
    loop {
        let page = store.unreferenced_blobs(after)?;
        let Some(&(last, _)) = page.last() else { break };
        after = last;
        for (blob, hash) in page {
            remove_if_unreferenced(store, blob, &hash, &mut report)?;
        }
    }
    if let Some((_, top)) = window {
        let mut after: BlobId = 0;
        loop {
            let page = store.loose_blobs(after)?;
            let Some(&(last, _)) = page.last() else { break };
            after = last;
            for (blob, hash) in page {
                match hash {
                    Some(hash) => remove_if_unreferenced(store, blob, &hash, &mut report)?,
                    None => store.loose_forget(blob)?,
                }
            }
        }
        store.set_gc_mark(top)?;
    }
    for owner in store.orphan_chunk_owners()? {
        let (n, b) = clear_chunks(store, owner)?;
        report.chunks_removed += n;
        report.bytes_removed += b;
    }
    store.after_gc()?;
    Ok(report)
}
