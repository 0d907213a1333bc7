//! Streaming, content-addressed blobs.
//!
//! A [`Writer`] hashes bytes as they arrive and stores them a chunk at a time, each chunk in
//! its own short transaction under a staging row; the blob becomes visible in one small
//! commit when the writer finishes. A [`Reader`] fetches one chunk at a time and checks the
//! hash before it hands out the last byte.

use crate::error::{Error, Result};
use crate::events::Event;
use crate::hash::Hash;
use crate::options::PushOptions;
use crate::shared::Shared;
use crate::store::{BlobId, Finished, PushSpec, Register};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// Writes a job payload (or a job's output) as a stream. Finish it with [`Writer::create`] or
/// [`Writer::add`]; dropping it unfinished discards what was written.
///
/// ```
/// use std::io::Write;
/// # let dir = tempfile::tempdir().unwrap();
/// let db = batchdb::Db::open(dir.path().join("q.db"), Default::default())?;
/// let mut w = db.writer();
/// w.write_all(b"sleep 5; ")?;
/// w.write_all(b"date")?;
/// let (key, created) = w.add()?;
/// assert_eq!(key, batchdb::Hash::of(b"sleep 5; date"));
/// # let _ = created;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Writer {
    inner: Arc<Shared>,
    hasher: Sha256,
    buf: Vec<u8>,
    stage: Option<BlobId>,
    next_seq: i64,
    size: u64,
    failed: Option<Error>,
}

impl Writer {
    pub(crate) fn new(inner: Arc<Shared>) -> Writer {
        let cap = inner.opts.chunk_size;
        Writer {
            inner,
            hasher: Sha256::new(),
            buf: Vec::with_capacity(cap),
            stage: None,
            next_seq: 0,
            size: 0,
            failed: None,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether storing a chunk failed: the error came from the store, not from the input.
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    fn spill(&mut self) -> Result<()> {
        let lease = self.inner.opts.lease_ms();
        let stage = match self.stage {
            Some(s) => s,
            None => {
                let s = self.inner.store.stage_begin(lease)?;
                self.inner.live_stage(s, true);
                self.stage = Some(s);
                s
            }
        };
        let data = std::mem::take(&mut self.buf);
        let mut back = self.inner.store.stage_write(stage, self.next_seq, data, lease)?;
        back.clear();
        self.buf = back;
        self.next_seq += 1;
        Ok(())
    }

    fn write_some(&mut self, data: &[u8]) -> Result<usize> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let room = self.inner.opts.chunk_size - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.hasher.update(&data[..n]);
        self.size += n as u64;
        if self.buf.len() == self.inner.opts.chunk_size {
            if let Err(e) = self.spill() {
                self.failed = Some(e.clone());
                return Err(e);
            }
        }
        Ok(n)
    }

    /// Takes the finished blob out, leaving the writer empty (its drop then does nothing).
    pub(crate) fn finish(&mut self) -> Result<Finished> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let hasher = std::mem::take(&mut self.hasher);
        Ok(Finished {
            stage: self.stage,
            next_seq: self.next_seq,
            tail: std::mem::take(&mut self.buf),
            hash: Hash::from_digest(hasher),
            size: self.size,
        })
    }

    /// After publication: forget the staging area, clearing it if the content was a
    /// duplicate.
    pub(crate) fn published(&mut self, duplicate: Option<BlobId>) {
        if let Some(stage) = self.stage.take() {
            self.inner.live_stage(stage, false);
        }
        if let Some(stage) = duplicate {
            // Best effort: what stays behind is a leftover that gc removes.
            let _ = self.inner.store.stage_clear(stage);
        }
    }

    fn register(mut self, push: Option<PushSpec>) -> Result<(Hash, Option<i64>)> {
        let blob = self.finish()?;
        let key = blob.hash;
        let out = self.inner.store.publish(blob, Register::Job { push })?;
        self.published(out.duplicate_stage);
        self.inner.events.emit(Event::Create { key });
        if let Some(created) = out.created {
            self.inner.events.emit(Event::Push { key, created });
            self.inner.wake_workers();
        }
        Ok((key, out.created))
    }

    /// Stores the payload and registers it as a job; returns its key. Event `create`.
    pub fn create(self) -> Result<Hash> {
        self.register(None).map(|(k, _)| k)
    }

    /// Stores the payload, registers the job and queues an instance, in one transaction.
    /// Events `create`, `push`.
    pub fn add(self) -> Result<(Hash, i64)> {
        self.add_with(PushOptions::default())
    }

    /// [`Writer::add`] with a priority or delay.
    pub fn add_with(self, opts: PushOptions) -> Result<(Hash, i64)> {
        let spec = PushSpec { priority: opts.priority, delay_ms: opts.delay_ms()? };
        let (key, created) = self.register(Some(spec))?;
        created.map(|c| (key, c)).ok_or_else(|| Error::io("push recorded no instance"))
    }

    /// Discards what was written.
    pub fn abort(self) {}
}

impl Write for Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.write_some(data).map_err(io::Error::from)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(stage) = self.stage.take() {
            self.inner.live_stage(stage, false);
            let _ = self.inner.store.stage_clear(stage);
        }
    }
}

/// Reads a blob as a stream, one chunk in memory at a time. The bytes are checked against
/// the hash before the last of them is returned; a mismatch is [`Error::Corrupt`].
pub struct Reader {
    inner: Arc<Shared>,
    hash: Hash,
    blob: BlobId,
    size: u64,
    fetched: u64,
    seq: i64,
    hasher: Sha256,
    chunk: Vec<u8>,
    pos: usize,
    failed: Option<Error>,
    prefetched: Option<Vec<u8>>,
}

impl Reader {
    pub(crate) fn open(inner: Arc<Shared>, hash: &Hash) -> Result<Reader> {
        let (blob, size) = inner
            .store
            .blob(hash)?
            .ok_or_else(|| Error::not_found(format!("blob {} not found", hash.short())))?;
        Ok(Reader::at(inner, *hash, blob, size))
    }

    pub(crate) fn at(inner: Arc<Shared>, hash: Hash, blob: BlobId, size: u64) -> Reader {
        Reader {
            inner,
            hash,
            blob,
            size,
            fetched: 0,
            seq: 0,
            hasher: Sha256::new(),
            chunk: Vec::new(),
            pos: 0,
            failed: None,
            prefetched: None,
        }
    }

    /// Hands the reader its first chunk, already read by the caller's transaction; it is
    /// verified like any other.
    pub(crate) fn prefetched(&mut self, chunk: Vec<u8>) {
        self.prefetched = Some(chunk);
    }

    /// The blob's hash.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn verify(&self) -> Result<()> {
        let got = Hash::from_digest(self.hasher.clone());
        if got != self.hash {
            return Err(Error::corrupt(format!(
                "blob {} is corrupt: its content hashes to {}",
                self.hash.short(),
                got.short()
            )));
        }
        Ok(())
    }

    /// Fetches the next chunk; false at the end. Verifies as soon as the last chunk is in.
    fn fill(&mut self) -> Result<bool> {
        if self.fetched == self.size {
            if self.seq == 0 && self.size == 0 {
                self.seq = 1;
                self.verify()?;
            }
            return Ok(false);
        }
        let stored = match self.prefetched.take() {
            Some(chunk) if self.seq == 0 => Some(chunk),
            _ => self.inner.store.chunk(self.blob, self.seq)?,
        };
        let data = stored.ok_or_else(|| {
            Error::corrupt(format!(
                "blob {} is corrupt: chunk {} is missing ({} of {} bytes read)",
                self.hash.short(),
                self.seq,
                self.fetched,
                self.size
            ))
        })?;
        self.fetched += data.len() as u64;
        if self.fetched > self.size || data.is_empty() {
            return Err(Error::corrupt(format!(
                "blob {} is corrupt: its chunks do not add up to its size {}",
                self.hash.short(),
                self.size
            )));
        }
        self.hasher.update(&data);
        self.seq += 1;
        self.chunk = data;
        self.pos = 0;
        if self.fetched == self.size {
            self.verify()?;
        }
        Ok(true)
    }

    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while self.pos == self.chunk.len() {
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => {
                    self.chunk.clear();
                    self.pos = 0;
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    /// Reads to the end, discarding the bytes: verifies the blob.
    pub fn verify_all(mut self) -> Result<u64> {
        let mut total = 0;
        loop {
            self.pos = self.chunk.len();
            if !self.fill().inspect_err(|e| {
                self.failed = Some(e.clone());
            })? {
                return Ok(total);
            }
            total += self.chunk.len() as u64;
        }
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.read_some(buf).map_err(io::Error::from)
    }
}
