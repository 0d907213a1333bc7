//! Streaming, content-addressed blobs.
//!
//! A [`Writer`] hashes bytes as they arrive and stores them a chunk at a time, each chunk in
//! its own short transaction under a staging row, with a digest of its bytes; the blob becomes
//! visible in one small commit when the writer finishes. A [`Reader`] fetches one chunk at a
//! time and hands out no byte of a chunk before that chunk has been checked: a chunk row
//! against its digest, and the last chunk (a small blob's only one) also against the blob's
//! SHA-256, so that the whole content matches its address before its last byte is read.
//!
//! The chunk digest is XXH3-64, not a second SHA-256: it exists to catch damage (a flipped
//! bit, a torn or misplaced page) before a byte reaches a reader, and XXH3 does that at a
//! small fraction of SHA-256's cost, so a verified read keeps its speed. Someone who can write
//! the file could forge any digest stored in it, cryptographic or not, and could as well queue
//! jobs of their own: a per-chunk digest kept beside the data cannot stop them, and the
//! blob's SHA-256, its identity, is still checked over the whole content.

use crate::error::{Error, Result};
use crate::events::Event;
use crate::hash::Hash;
use crate::options::PushOptions;
use crate::shared::Shared;
use crate::store::{chunk_digest, BlobId, Chunk, Finished, PushSpec, Pushed, Register};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;

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

    /// Whether storing a chunk failed because the connection to the server was lost.
    pub(crate) fn lost_connection(&self) -> bool {
        self.failed.as_ref().is_some_and(Error::is_connection_lost)
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
        let digest = chunk_digest(stage, self.next_seq, &data);
        let mut back = self.inner.store.stage_write(stage, self.next_seq, data, digest, lease)?;
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
        let tail = std::mem::take(&mut self.buf);
        Ok(Finished {
            stage: self.stage,
            next_seq: self.next_seq,
            tail,
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
            let _ = crate::gc::stage_clear(&*self.inner.store, stage);
        }
    }

    fn register(mut self, push: Option<PushSpec>) -> Result<(Hash, Option<Pushed>)> {
        let blob = self.finish()?;
        let key = blob.hash;
        let out = self.inner.store.publish(blob, Register::Job { push })?;
        self.published(out.duplicate_stage);
        self.inner.events.emit(Event::Create { key });
        if let Some(p) = &out.created {
            self.inner.pushed(key, p);
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
        self.add_with(&PushOptions::default()).map(|(k, p)| (k, p.created))
    }

    /// [`Writer::add`] with push options (priority, delay, queue, unique).
    pub fn add_with(self, opts: &PushOptions) -> Result<(Hash, Pushed)> {
        let spec = PushSpec::from_options(opts)?;
        let (key, created) = self.register(Some(spec))?;
        created.map(|c| (key, c)).ok_or_else(|| Error::io("push recorded no instance"))
    }

    /// Stores the blob without registering a job (an output that `copy` brings over before
    /// its result row); returns its hash.
    pub(crate) fn store_blob(mut self) -> Result<Hash> {
        let blob = self.finish()?;
        let key = blob.hash;
        let out = self.inner.store.publish(blob, Register::Blob)?;
        self.published(out.duplicate_stage);
        Ok(key)
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
            let _ = crate::gc::stage_clear(&*self.inner.store, stage);
        }
    }
}

/// Reads a blob as a stream, one chunk in memory at a time. No byte of a chunk is returned
/// before the chunk has been checked against its stored digest, and the last chunk's bytes
/// only once the whole content matches the blob's hash; a mismatch, a missing chunk or a
/// stored row that cannot be decoded is [`Error::Corrupt`] naming the blob.
pub struct Reader {
    inner: Arc<Shared>,
    hash: Hash,
    blob: BlobId,
    size: u64,
    fetched: u64,
    seq: i64,
    whole: WholeHash,
    chunk: Arc<Vec<u8>>,
    pos: usize,
    failed: Option<Error>,
    prefetched: Option<Result<Chunk>>,
}

/// Chunks queued for the hashing thread: enough to ride out a moment when one of the two
/// threads waits for a core, and with the one it hashes, the one the reader hands out and the
/// one it fetches, seven chunks in memory at most (1.75 MiB at the default chunk size).
const HASH_QUEUE: usize = 4;

/// The SHA-256 of the content read so far. For a blob of more than one chunk it runs on a
/// thread of its own while the reader fetches, checks and hands out the next chunks (each
/// already checked against its digest), so that a verified read costs about the slower of
/// SQLite's read and SHA-256, not their sum; the reader collects it before the last chunk.
enum WholeHash {
    Here(Sha256),
    Beside { feed: SyncSender<Arc<Vec<u8>>>, done: JoinHandle<Sha256> },
}

impl WholeHash {
    /// Moves hashing to a thread; stays here if no thread can be started.
    fn beside(self) -> WholeHash {
        let WholeHash::Here(mut hasher) = self else { return self };
        let (feed, chunks) = std::sync::mpsc::sync_channel::<Arc<Vec<u8>>>(HASH_QUEUE);
        let started = std::thread::Builder::new().name("batchdb-hash".into()).spawn(move || {
            for chunk in chunks {
                hasher.update(&chunk[..]);
            }
            hasher
        });
        match started {
            Ok(done) => WholeHash::Beside { feed, done },
            // Not started: the closure, and with it the hasher, came back dropped; nothing
            // was hashed yet, since this runs before the first chunk.
            Err(_) => WholeHash::Here(Sha256::new()),
        }
    }

    fn update(&mut self, chunk: &Arc<Vec<u8>>) -> Result<()> {
        match self {
            WholeHash::Here(h) => h.update(&chunk[..]),
            WholeHash::Beside { feed, .. } => {
                feed.send(chunk.clone()).map_err(|_| Error::io("the hashing thread of a blob read ended"))?
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Hash> {
        match self {
            WholeHash::Here(h) => Ok(Hash::from_digest(h)),
            WholeHash::Beside { feed, done } => {
                drop(feed);
                let h = done.join().map_err(|_| Error::io("the hashing thread of a blob read failed"))?;
                Ok(Hash::from_digest(h))
            }
        }
    }
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
            whole: WholeHash::Here(Sha256::new()),
            chunk: Arc::new(Vec::new()),
            pos: 0,
            failed: None,
            prefetched: None,
        }
    }

    /// Hands the reader its first chunk, already read by the caller's transaction (or the
    /// error of decoding it); it is verified like any other.
    pub(crate) fn prefetched(&mut self, chunk: Result<Chunk>) {
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

    fn corrupt(&self, what: impl std::fmt::Display) -> Error {
        Error::corrupt(format!("blob {} is corrupt: {what}", self.hash.short()))
    }

    /// A chunk that is not there: damage if the blob still is, or else the blob was removed
    /// while it was read (`prune` then `gc` of an unreferenced blob), which is not damage.
    fn missing(&self) -> Error {
        match self.inner.store.blob(&self.hash) {
            Ok(Some((id, _))) if id == self.blob => self.corrupt(format_args!(
                "chunk {} is missing ({} of {} bytes read)",
                self.seq, self.fetched, self.size
            )),
            Ok(_) => Error::not_found(format!(
                "blob {} was removed by gc while it was being read ({} of {} bytes read)",
                self.hash.short(),
                self.fetched,
                self.size
            )),
            Err(e) => e,
        }
    }

    fn verify(&mut self) -> Result<()> {
        let whole = std::mem::replace(&mut self.whole, WholeHash::Here(Sha256::new()));
        let got = whole.finish()?;
        if got != self.hash {
            return Err(self.corrupt(format_args!("its content hashes to {}", got.short())));
        }
        Ok(())
    }

    /// Fetches and checks the next chunk; false at the end. Checks the whole content as soon
    /// as the last chunk is in, before any of its bytes is handed out.
    fn fill(&mut self) -> Result<bool> {
        if self.fetched == self.size {
            if self.seq == 0 && self.size == 0 {
                self.seq = 1;
                self.verify()?;
            }
            return Ok(false);
        }
        let stored = match self.prefetched.take() {
            Some(chunk) if self.seq == 0 => chunk.map(Some),
            _ => self.inner.store.chunk(self.blob, self.seq),
        };
        // The store describes a damaged row; the reader names the blob it belongs to.
        let stored = stored.map_err(|e| match e {
            Error::Corrupt(m) => self.corrupt(m),
            e => e,
        })?;
        let Some(Chunk { data, digest }) = stored else { return Err(self.missing()) };
        let fetched = self.fetched + data.len() as u64;
        if fetched > self.size || data.is_empty() {
            return Err(self.corrupt(format_args!("its chunks do not add up to its size {}", self.size)));
        }
        match digest {
            Some(d) if d != chunk_digest(self.blob, self.seq, &data) => {
                return Err(self.corrupt(format_args!("chunk {} does not match its digest", self.seq)));
            }
            Some(_) => {}
            // Inline bytes are a small blob's only chunk: the hash check below covers them.
            None if self.seq == 0 && fetched == self.size => {}
            None => return Err(self.corrupt("its inline data is not the whole blob")),
        }
        if self.seq == 0 && fetched < self.size {
            self.whole = std::mem::replace(&mut self.whole, WholeHash::Here(Sha256::new())).beside();
        }
        let data = Arc::new(data);
        self.whole.update(&data)?;
        self.seq += 1;
        self.fetched = fetched;
        self.chunk = data;
        self.pos = 0;
        if self.fetched == self.size {
            self.verify()?;
        }
        Ok(true)
    }

    /// Whether reading failed because the connection to the server was lost.
    pub(crate) fn lost_connection(&self) -> bool {
        self.failed.as_ref().is_some_and(Error::is_connection_lost)
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
                    self.chunk = Arc::new(Vec::new());
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
