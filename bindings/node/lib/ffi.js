'use strict';
// The only file that touches koffi. Everything above it sees classes holding the C handles
// (private fields, closed flags) whose methods return promises, run through koffi's `.async`
// so that no disk access ever blocks the event loop.

const fs = require('node:fs');
const path = require('node:path');
const koffi = require('koffi');

const { LIB_NAMES, platformDir } = require('./platform');

// BATCHDB_LIB, else a build of the repository this package sits in (so that a checkout never
// loads a stale packed copy), else the library the tarball carries for this platform.
function findLibrary() {
  if (process.env.BATCHDB_LIB) return process.env.BATCHDB_LIB;
  const name = LIB_NAMES[process.platform] || 'libbatchdb.so';
  const pkg = path.join(__dirname, '..');
  const repo = path.join(pkg, '..', '..');
  const candidates = [];
  if (fs.existsSync(path.join(repo, 'include', 'batchdb.h'))) candidates.push(path.join(repo, 'target', 'release', name));
  candidates.push(path.join(pkg, 'native', platformDir(), name)); // shipped with the package
  for (const c of candidates) if (fs.existsSync(c)) return c;
  throw new Error(
    `batchdb: no ${name} for ${platformDir()}; looked in ${candidates.join(', ')}. ` +
      'Install the package built for this platform, build it with `cargo build --release`, or set BATCHDB_LIB.',
  );
}

const lib = koffi.load(findLibrary());

// Status codes (include/batchdb.h).
const OK = 0;
const DONE = 1;
const CODE_NAMES = {
  [-1]: 'BATCHDB_ERR_INVALID',
  [-2]: 'BATCHDB_ERR_NOT_FOUND',
  [-3]: 'BATCHDB_ERR_IO',
  [-4]: 'BATCHDB_ERR_CORRUPT',
  [-5]: 'BATCHDB_ERR_BUSY',
  [-6]: 'BATCHDB_ERR_ABORTED',
  [-7]: 'BATCHDB_ERR_PANIC',
  [-8]: 'BATCHDB_ERR_MISUSE',
  [-9]: 'BATCHDB_ERR_STALE',
};
const ERR_INVALID = -1;
const ERR_MISUSE = -8;

const LIST_KINDS = { job: 0, pending: 1, result: 2, fail: 3, schedule: 4 };

koffi.opaque('batchdb');
koffi.opaque('batchdb_writer');
koffi.opaque('batchdb_reader');
koffi.opaque('batchdb_cursor');
koffi.opaque('batchdb_job');

koffi.struct('batchdb_options', {
  chunk_size: 'uint32_t',
  durability: 'int32_t',
  lease_ms: 'uint32_t',
  max_attempts: 'uint32_t',
  retry_errors: 'int32_t',
  order: 'int32_t',
});
koffi.struct('batchdb_instance', {
  key: koffi.array('char', 65, 'String'),
  created: 'int64_t',
});
koffi.struct('batchdb_push_options', {
  priority: 'int32_t',
  delay_ms: 'int64_t',
  queue: 'const char *',
  unique: 'int32_t',
  memo: 'int32_t',
  after: 'const batchdb_instance *',
  after_len: 'size_t',
  // A Buffer of 65 bytes that the C side fills (the reused result's hash, or "").
  cached_out: 'uint8_t *',
});
koffi.struct('batchdb_row', {
  kind: 'int32_t',
  job: koffi.array('char', 65, 'String'),
  created: 'int64_t',
  running: 'int32_t',
  hash: koffi.array('char', 65, 'String'),
  start: 'int64_t',
  end: 'int64_t',
  attempts: 'uint32_t',
  message: 'const char *',
  json: 'const char *',
  queue: 'const char *',
  progress: 'double',
});

// Keys, hashes and int64 outputs go through plain Buffers: the C side writes into them
// and we decode after the call, which works the same for sync and async calls.
const C = {
  open: lib.func('int32_t batchdb_open(const char *path, const batchdb_options *opts, _Out_ batchdb **out, uint8_t *err)'),
  close: lib.func('void batchdb_close(batchdb *db)'),
  stop: lib.func('void batchdb_stop(batchdb *db)'),
  wait: lib.func('int32_t batchdb_wait(batchdb *db, uint32_t timeout_ms, uint8_t *err)'),
  waitFrom: lib.func('int32_t batchdb_wait_from(batchdb *db, const char *const *queues, size_t queues_len, uint32_t timeout_ms, uint8_t *err)'),
  isIdle: lib.func('int32_t batchdb_is_idle(batchdb *db, const char *const *queues, size_t queues_len, _Out_ int32_t *idle_out, uint8_t *err)'),
  why: lib.func('int32_t batchdb_why(batchdb *db, const char *hash, _Out_ batchdb_cursor **out, uint8_t *err)'),
  pushWith: lib.func('int32_t batchdb_push_with(batchdb *db, const char *key, const batchdb_push_options *opts, uint8_t *created_out, uint8_t *err)'),
  retry: lib.func('int32_t batchdb_retry(batchdb *db, const char *key, int64_t created, uint8_t *created_out, uint8_t *err)'),
  cancel: lib.func('int32_t batchdb_cancel(batchdb *db, const char *key, int64_t created, uint8_t *err)'),
  prune: lib.func('int32_t batchdb_prune(batchdb *db, int64_t older_than_ms, uint8_t *rows_removed, uint8_t *err)'),
  gc: lib.func('int32_t batchdb_gc(batchdb *db, uint8_t *blobs_removed, uint8_t *err)'),
  backup: lib.func('int32_t batchdb_backup(batchdb *db, const char *dest, uint8_t *err)'),
  copy: lib.func('int32_t batchdb_copy(batchdb *db, batchdb *target, uint8_t *report_out, uint8_t *err)'),
  limit: lib.func('int32_t batchdb_limit(batchdb *db, const char *queue, int64_t n, uint8_t *err)'),
  pause: lib.func('int32_t batchdb_pause(batchdb *db, const char *queue, uint8_t *err)'),
  resume: lib.func('int32_t batchdb_resume(batchdb *db, const char *queue, uint8_t *err)'),
  schedule: lib.func('int32_t batchdb_schedule(batchdb *db, const char *name, const char *spec, const uint8_t *data, size_t len, const batchdb_push_options *opts, uint8_t *key_out, uint8_t *next_run_out, uint8_t *err)'),
  unschedule: lib.func('int32_t batchdb_unschedule(batchdb *db, const char *name, uint8_t *err)'),
  version: lib.func('const char *batchdb_version()'),

  writerOpen: lib.func('int32_t batchdb_writer_open(batchdb *db, _Out_ batchdb_writer **out, uint8_t *err)'),
  writerWrite: lib.func('int32_t batchdb_writer_write(batchdb_writer *w, const uint8_t *data, size_t len, uint8_t *err)'),
  writerCreate: lib.func('int32_t batchdb_writer_create(batchdb_writer *w, uint8_t *key_out, uint8_t *err)'),
  writerAdd: lib.func('int32_t batchdb_writer_add(batchdb_writer *w, uint8_t *key_out, uint8_t *created_out, uint8_t *err)'),
  writerAddWith: lib.func('int32_t batchdb_writer_add_with(batchdb_writer *w, const batchdb_push_options *opts, uint8_t *key_out, uint8_t *created_out, uint8_t *err)'),
  writerAbort: lib.func('void batchdb_writer_abort(batchdb_writer *w)'),

  readerOpen: lib.func('int32_t batchdb_reader_open(batchdb *db, const char *hash, _Out_ batchdb_reader **out, uint8_t *err)'),
  readerRead: lib.func('int32_t batchdb_reader_read(batchdb_reader *r, uint8_t *buf, size_t cap, uint8_t *n_out, uint8_t *err)'),
  readerClose: lib.func('void batchdb_reader_close(batchdb_reader *r)'),

  list: lib.func('int32_t batchdb_list(batchdb *db, int32_t kind, _Out_ batchdb_cursor **out, uint8_t *err)'),
  cursorNext: lib.func('int32_t batchdb_cursor_next(batchdb_cursor *c, _Out_ batchdb_row *row, uint8_t *err)'),
  cursorFree: lib.func('void batchdb_cursor_free(batchdb_cursor *c)'),

  claim: lib.func('int32_t batchdb_claim(batchdb *db, _Out_ batchdb_job **out, uint8_t *err)'),
  claimRead: lib.func('int32_t batchdb_claim_read(batchdb *db, uint8_t *buf, size_t cap, uint8_t *n_out, _Out_ batchdb_job **out, uint8_t *err)'),
  claimReadFrom: lib.func('int32_t batchdb_claim_read_from(batchdb *db, const char *const *queues, size_t queues_len, uint8_t *buf, size_t cap, uint8_t *n_out, _Out_ batchdb_job **out, uint8_t *err)'),
  jobKey: lib.func('const char *batchdb_job_key(const batchdb_job *j)'),
  jobCreated: lib.func('int64_t batchdb_job_created(const batchdb_job *j)'),
  jobAfterCount: lib.func('size_t batchdb_job_after_count(const batchdb_job *j)'),
  jobAfter: lib.func('int32_t batchdb_job_after(const batchdb_job *j, size_t i, uint8_t *key_out, uint8_t *created_out, uint8_t *hash_out, uint8_t *err)'),
  jobRead: lib.func('int32_t batchdb_job_read(batchdb_job *j, uint8_t *buf, size_t cap, uint8_t *n_out, uint8_t *err)'),
  jobProgress: lib.func('int32_t batchdb_job_progress(batchdb_job *j, double done, const char *message, uint8_t *err)'),
  jobWrite: lib.func('int32_t batchdb_job_write(batchdb_job *j, const uint8_t *data, size_t len, uint8_t *err)'),
  jobComplete: lib.func('int32_t batchdb_job_complete(batchdb_job *j, uint8_t *hash_out, uint8_t *err)'),
  jobCompleteClaim: lib.func('int32_t batchdb_job_complete_claim(batchdb *db, batchdb_job *j, const uint8_t *data, size_t len, uint8_t *hash_out, uint8_t *buf, size_t cap, uint8_t *n_out, _Out_ batchdb_job **next_out, uint8_t *err)'),
  jobsCompleteClaim: lib.func('int32_t batchdb_jobs_complete_claim(batchdb *db, batchdb_job *const *done, size_t done_len, const uint8_t *data, uint8_t *lens, uint8_t *hashes_out, uint8_t *status_out, size_t want, uint8_t *buf, size_t cap, uint8_t *n_out, _Out_ batchdb_job **jobs_out, uint8_t *claimed_out, uint8_t *err)'),
  jobCompleteWith: lib.func('int32_t batchdb_job_complete_with(batchdb_job *j, const uint8_t *data, size_t len, uint8_t *hash_out, uint8_t *err)'),
  jobFail: lib.func('int32_t batchdb_job_fail(batchdb_job *j, const char *message, uint8_t *err)'),
};

class BatchdbError extends Error {
  constructor(status, message, op) {
    super(message || CODE_NAMES[status] || `batchdb error ${status}`);
    this.name = 'BatchdbError';
    this.code = CODE_NAMES[status] || 'BATCHDB_ERR_UNKNOWN';
    this.errno = status;
    if (op) this.op = op;
  }
}

function misuse(what) {
  return new BatchdbError(ERR_MISUSE, `batchdb: ${what}`);
}

// koffi's async queue is bounded (max_async_calls, 256 by default) and throws when full,
// so every async call goes through this gate, which queues the excess in JS.
const MAX_ASYNC = 32;
let running = 0;
const waiting = [];

function callAsync(fn, args) {
  return new Promise((resolve, reject) => {
    const go = () => {
      running++;
      try {
        fn.async(...args, (err, res) => {
          running--;
          if (waiting.length) waiting.shift()();
          if (err) reject(err);
          else resolve(res);
        });
      } catch (e) {
        running--;
        if (waiting.length) waiting.shift()();
        reject(e);
      }
    };
    if (running < MAX_ASYNC) go();
    else waiting.push(go);
  });
}

// The C error (struct batchdb_error: int32_t code, char message[512]) goes into a plain
// Buffer, decoded only when a call failed: koffi would otherwise turn the 512 bytes into a JS
// string after every call.
const ERROR_SIZE = 4 + 512;
function errorMessage(buf) {
  const end = buf.indexOf(0, 4);
  return buf.toString('utf8', 4, end < 0 ? ERROR_SIZE : end);
}

// Runs one fallible C call asynchronously; `args` excludes the trailing error object.
async function status(op, fn, args, allowDone = false) {
  const err = Buffer.allocUnsafe(ERROR_SIZE);
  const rc = await callAsync(fn, [...args, err]);
  if (rc === OK || (allowDone && rc === DONE)) return rc;
  throw new BatchdbError(rc, errorMessage(err), op);
}

const hex = (buf) => buf.toString('latin1', 0, 64);
const i64 = (buf) => Number(buf.readBigInt64LE(0));
const u64 = (buf) => Number(buf.readBigUInt64LE(0));

// A handle whose calls run one at a time (C handles other than the database may be used
// by one thread at a time) and which, once released, refuses every further call.
class Handle {
  #ptr;
  #closed = false;
  #chain = Promise.resolve();
  #what;

  constructor(ptr, what) {
    this.#ptr = ptr;
    this.#what = what;
  }

  get closed() {
    return this.#closed;
  }

  // Queues `body(ptr)` after the calls already queued on this handle. With `consume`, the
  // handle is marked released as soon as the call is queued, so nothing runs after it.
  _use(body, consume = false) {
    if (this.#closed) return Promise.reject(misuse(`${this.#what} is closed`));
    const ptr = this.#ptr;
    if (consume) {
      this.#closed = true;
      this.#ptr = null;
    }
    const p = this.#chain.then(() => body(ptr));
    this.#chain = p.then(
      () => {},
      () => {},
    );
    return p;
  }

  // Releases the handle after the calls already queued; safe to call twice.
  _release(freeFn) {
    if (this.#closed) return this.#chain;
    return this._use((ptr) => freeFn(ptr), true);
  }
}

class Writer extends Handle {
  constructor(ptr) {
    super(ptr, 'writer');
  }
  write(buf) {
    return this._use((w) => status('write', C.writerWrite, [w, buf, buf.length]));
  }
  async create() {
    const key = Buffer.alloc(65);
    await this._use((w) => status('create', C.writerCreate, [w, key]), true);
    return hex(key);
  }
  // Resolves to {key, created, cached}: `cached` is the reused result's hash of a memo hit,
  // else null.
  async add(opts) {
    const key = Buffer.alloc(65);
    const created = Buffer.alloc(8);
    const native = pushOptions(opts);
    await this._use((w) => status('add', C.writerAddWith, [w, native, key, created]), true);
    return { key: hex(key), created: i64(created), cached: cachedOf(native) };
  }
  abort() {
    return this._release((w) => callAsync(C.writerAbort, [w]));
  }
}

class Reader extends Handle {
  constructor(ptr) {
    super(ptr, 'reader');
  }
  // Resolves to a Buffer of up to `cap` bytes; an empty Buffer at the end (verified).
  async read(cap) {
    const buf = Buffer.allocUnsafe(cap);
    const n = Buffer.alloc(8);
    await this._use((r) => status('get', C.readerRead, [r, buf, cap, n]));
    return buf.subarray(0, u64(n));
  }
  close() {
    return this._release((r) => callAsync(C.readerClose, [r]));
  }
}

class Cursor extends Handle {
  constructor(ptr) {
    super(ptr, 'cursor');
  }
  // Resolves to the next row object (section 2 shape), or null at the end.
  next() {
    return this._use(async (c) => {
      const row = {};
      const rc = await status('list', C.cursorNext, [c, row], true);
      if (rc === DONE) return null;
      // `json` was decoded to a JS string right after the call, while still valid.
      return JSON.parse(row.json);
    });
  }
  close() {
    return this._release((c) => callAsync(C.cursorFree, [c]));
  }
}

class Job extends Handle {
  #key;
  #created;
  #after;
  #head; // payload bytes read by the claim itself, not yet handed out
  #headIsAll;
  constructor(ptr, head = null, headIsAll = false) {
    super(ptr, 'job');
    // Plain field reads of the handle, no disk access.
    this.#key = C.jobKey(ptr);
    this.#created = Number(C.jobCreated(ptr));
    this.#after = upstreams(ptr);
    this.#head = head;
    this.#headIsAll = headIsAll;
  }
  // The upstream instances it waited for, [{key, created, hash}, ...] (frozen).
  get after() {
    return this.#after;
  }
  get key() {
    return this.#key;
  }
  get created() {
    return this.#created;
  }
  // Resolves to the next bytes of the payload, an empty Buffer at the end (verified). What the
  // claim already read comes first, without a call into C.
  async read(cap) {
    if (this.#head) {
      const head = this.#head;
      this.#head = null;
      if (head.length) return head;
    }
    if (this.#headIsAll) return Buffer.alloc(0);
    const buf = Buffer.allocUnsafe(cap);
    const n = Buffer.alloc(8);
    await this._use((j) => status('run', C.jobRead, [j, buf, cap, n]));
    return buf.subarray(0, u64(n));
  }
  write(buf) {
    return this._use((j) => status('run', C.jobWrite, [j, buf, buf.length]));
  }
  // Reports progress (0 to 1, and a message); the C side checks the range and the length.
  progress(done, message) {
    return this._use((j) => status('progress', C.jobProgress, [j, done, message]));
  }
  // Records the result; `tail`, output not yet written, is written in the same call.
  async complete(tail) {
    const hash = Buffer.alloc(65);
    if (tail && tail.length) {
      await this._use((j) => status('complete', C.jobCompleteWith, [j, tail, tail.length, hash]), true);
    } else {
      await this._use((j) => status('complete', C.jobComplete, [j, hash]), true);
    }
    return hex(hash);
  }
  fail(message) {
    const msg = String(message || 'runner failed');
    return this._use((j) => status('fail', C.jobFail, [j, msg]), true);
  }
  // Gives the instance back to the queue without a fail row (a NULL message releases it).
  async release() {
    if (this.closed) return;
    try {
      await this._use((j) => status('release', C.jobFail, [j, null]), true);
    } catch (e) {
      if (e.errno !== ERR_INVALID) throw e; // INVALID is the documented answer to NULL
    }
  }
}

// A claimed job's upstreams (push option `after`) with their results' hashes, read from the
// handle (no disk access): [{key, created, hash}, ...], frozen.
function upstreams(ptr) {
  const n = Number(C.jobAfterCount(ptr));
  const out = [];
  const key = Buffer.alloc(65);
  const created = Buffer.alloc(8);
  const hash = Buffer.alloc(65);
  const err = Buffer.alloc(ERROR_SIZE);
  for (let i = 0; i < n; i++) {
    const rc = C.jobAfter(ptr, i, key, created, hash, err);
    if (rc !== OK) throw new BatchdbError(rc, errorMessage(err), 'claim');
    out.push(Object.freeze({ key: hex(key), created: i64(created), hash: hex(hash) }));
  }
  return Object.freeze(out);
}

// Payload bytes a claim reads along with the job.
const CLAIM_HEAD = 16 * 1024;

// The claims' buffers of CLAIM_HEAD bytes, kept for reuse: a fresh one per claim cost an
// allocation of fresh pages per job. A buffer is taken for one call into C and given back when
// it returns; the payload's bytes are copied out of it (copyHead), so nothing handed to the
// runner aliases it.
const heads = [];
function takeHead() {
  return heads.length ? heads.pop() : Buffer.allocUnsafeSlow(CLAIM_HEAD);
}
function giveHead(buf) {
  if (heads.length < 8) heads.push(buf);
}
// The same for a call that claims several instances: MANY_HEADS buffers of CLAIM_HEAD bytes
// each, one after the other.
const MANY_HEADS = 16;
const manyHeads = [];
function takeHeads(want) {
  if (want > MANY_HEADS) return Buffer.allocUnsafeSlow(want * CLAIM_HEAD);
  return manyHeads.length ? manyHeads.pop() : Buffer.allocUnsafeSlow(MANY_HEADS * CLAIM_HEAD);
}
function giveHeads(buf) {
  if (buf.length === MANY_HEADS * CLAIM_HEAD && manyHeads.length < 4) manyHeads.push(buf);
}
function copyHead(buf, n) {
  return n ? Buffer.from(buf.subarray(0, n)) : Buffer.alloc(0);
}

const ORDERS = { newest: 0, oldest: 1 };
const DURABILITIES = { full: 0, normal: 1 };

function nativeOptions(opts) {
  const o = opts || {};
  const pick = (table, value, name) => {
    if (value === undefined || value === null) return 0;
    if (!(value in table)) throw new TypeError(`batchdb: ${name} must be one of ${Object.keys(table).join(', ')}`);
    return table[value];
  };
  const uint = (value, name) => {
    if (value === undefined || value === null) return 0;
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new TypeError(`batchdb: ${name} must be a non-negative integer`);
    return value;
  };
  return {
    chunk_size: uint(o.chunkSize, 'chunkSize'),
    durability: pick(DURABILITIES, o.durability, 'durability'),
    lease_ms: uint(o.lease, 'lease'),
    max_attempts: uint(o.maxAttempts, 'maxAttempts'),
    retry_errors: o.retryErrors ? 1 : 0,
    order: pick(ORDERS, o.order, 'order'),
  };
}

// A name (queue, schedule) or spec for C: a string without NUL bytes, which C would cut it at
// (a queue "a\0b" must not become the queue "a"). The C side checks the alphabet and length.
function cName(value, what, op) {
  if (typeof value !== 'string') throw new TypeError(`batchdb: ${what} must be a string`);
  if (value.includes('\0')) throw new BatchdbError(ERR_INVALID, `batchdb: ${what} ${JSON.stringify(value)} holds a NUL byte`, op);
  return value;
}

function pushOptions(opts, op = 'push') {
  const o = opts || {};
  const priority = o.priority === undefined ? 0 : o.priority;
  const delay = o.delay === undefined ? 0 : o.delay;
  if (!Number.isInteger(priority) || priority < -0x80000000 || priority > 0x7fffffff) throw new TypeError('batchdb: priority must be a 32-bit integer');
  if (!Number.isInteger(delay) || delay < 0) throw new TypeError('batchdb: delay must be a non-negative integer (ms)');
  if (o.unique !== undefined && o.unique !== null && typeof o.unique !== 'boolean') throw new TypeError('batchdb: unique must be a boolean');
  if (o.memo !== undefined && o.memo !== null && typeof o.memo !== 'boolean') throw new TypeError('batchdb: memo must be a boolean');
  // undefined, null and '' are the queue "default" (NULL for C).
  const queue = o.queue === undefined || o.queue === null || o.queue === '' ? null : cName(o.queue, 'queue', op);
  const after = afterList(o.after, op);
  return {
    priority,
    delay_ms: delay,
    queue,
    unique: o.unique ? 1 : 0,
    memo: o.memo ? 1 : 0,
    after: after.length ? after : null,
    after_len: after.length,
    // Filled by C with the reused result's hash on a memo hit, else "".
    cached_out: Buffer.alloc(65),
  };
}

// The hash a memo push reused, from its options' cached_out; null when it reused none.
function cachedOf(native) {
  return native.cached_out[0] === 0 ? null : hex(native.cached_out);
}

// The push option `after`: upstream instances as [key, created] pairs (or {key, created}),
// for C's batchdb_instance array. The C side checks that each key is 64 hex characters; here
// only what koffi would change: a key longer than the 64 characters the struct holds (it
// would be cut) or holding a NUL byte.
function afterList(after, op) {
  if (after === undefined || after === null) return [];
  if (!Array.isArray(after)) throw new TypeError('batchdb: after must be an array of [key, created] pairs');
  return after.map((up, i) => {
    const [key, created] = Array.isArray(up) ? up : up && typeof up === 'object' ? [up.key, up.created] : [];
    if (typeof key !== 'string' || !Number.isSafeInteger(created)) {
      throw new TypeError(`batchdb: after[${i}] must be a [key, created] pair (a string and an integer)`);
    }
    if (Buffer.byteLength(key) > 64 || key.includes('\0')) {
      throw new BatchdbError(ERR_INVALID, `batchdb: after[${i}]: malformed key ${JSON.stringify(key.slice(0, 80))}: expected 64 hex characters`, op);
    }
    return { key, created };
  });
}

// The queues a claim serves, for C: null (every queue) or a non-empty array of names.
function queueList(queues, op) {
  if (queues === undefined || queues === null) return null;
  if (!Array.isArray(queues)) throw new TypeError('batchdb: queues must be an array of queue names');
  const list = queues.map((q) => cName(q, 'queue', op));
  return list.length ? list : null;
}

// The database handle. Calls on it may run concurrently (it is thread-safe in C); close()
// waits for every call in flight, and for every child handle to be released, first.
class Database {
  #ptr;
  #closed = false;
  #inflight = new Set();
  #children = new Set();
  #closing = null;

  constructor(ptr) {
    this.#ptr = ptr;
  }

  // Throws a TypeError for an option out of range, before anything is opened.
  static validate(opts) {
    nativeOptions(opts);
  }

  static async open(file, opts) {
    const native = nativeOptions(opts);
    const out = [null];
    const err = Buffer.alloc(ERROR_SIZE);
    const rc = await callAsync(C.open, [file, native, out, err]);
    if (rc !== OK) throw new BatchdbError(rc, errorMessage(err), 'open');
    return new Database(out[0]);
  }

  get closed() {
    return this.#closed;
  }

  #track(p) {
    this.#inflight.add(p);
    const done = () => this.#inflight.delete(p);
    p.then(done, done);
    return p;
  }

  #call(body) {
    if (this.#closed || this.#closing) return Promise.reject(misuse('the database is closed'));
    return this.#track(body(this.#ptr));
  }

  #child(handle) {
    this.#children.add(handle);
    return handle;
  }

  // Forget children that released themselves, so the set stays small.
  #prune() {
    for (const h of this.#children) if (h.closed) this.#children.delete(h);
  }

  // Resolves to {created, cached}: `cached` is the reused result's hash of a memo hit, else
  // null.
  async push(key, opts) {
    if (typeof key !== 'string') throw new TypeError('batchdb: key must be a string');
    const native = pushOptions(opts);
    const created = Buffer.alloc(8);
    await this.#call((db) => status('push', C.pushWith, [db, key, native, created]));
    return { created: i64(created), cached: cachedOf(native) };
  }

  async retry(key, created) {
    if (typeof key !== 'string') throw new TypeError('batchdb: key must be a string');
    const out = Buffer.alloc(8);
    await this.#call((db) => status('retry', C.retry, [db, key, created, out]));
    return i64(out);
  }

  async cancel(key, created) {
    if (typeof key !== 'string') throw new TypeError('batchdb: key must be a string');
    await this.#call((db) => status('cancel', C.cancel, [db, key, created]));
  }

  async prune(olderThanMs) {
    const out = Buffer.alloc(8);
    await this.#call((db) => status('prune', C.prune, [db, olderThanMs, out]));
    return u64(out);
  }

  async gc() {
    const out = Buffer.alloc(8);
    await this.#call((db) => status('gc', C.gc, [db, out]));
    return u64(out);
  }

  async backup(dest) {
    const d = cName(dest, 'dest', 'backup');
    await this.#call((db) => status('backup', C.backup, [db, d]));
  }

  // Both handles stay open (tracked as in flight) until the copy returns.
  async copyTo(target) {
    if (!(target instanceof Database)) throw new TypeError('batchdb: copyTo needs another open database');
    const report = Buffer.alloc(24);
    await this.#call((db) => target.#call((t) => status('copy', C.copy, [db, t, report])));
    return {
      blobsSent: Number(report.readBigUInt64LE(0)),
      bytesSent: Number(report.readBigUInt64LE(8)),
      rows: Number(report.readBigUInt64LE(16)),
    };
  }

  async limit(queue, n) {
    const q = cName(queue, 'queue', 'limit');
    if (!Number.isSafeInteger(n)) throw new TypeError('batchdb: limit must be an integer (0 removes the limit)');
    await this.#call((db) => status('limit', C.limit, [db, q, n]));
  }

  async pause(queue) {
    const q = cName(queue, 'queue', 'pause');
    await this.#call((db) => status('pause', C.pause, [db, q]));
  }

  async resume(queue) {
    const q = cName(queue, 'queue', 'resume');
    await this.#call((db) => status('resume', C.resume, [db, q]));
  }

  // Resolves to the schedule's row: {name, spec, queue, job, next_run}.
  async schedule(name, spec, payload, opts) {
    const n = cName(name, 'schedule name', 'schedule');
    const sp = cName(spec, 'schedule spec', 'schedule');
    const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
    if (!(data instanceof Uint8Array)) throw new TypeError('batchdb: a schedule payload must be a Buffer or a string');
    const native = pushOptions(opts, 'schedule');
    const key = Buffer.alloc(65);
    const next = Buffer.alloc(8);
    await this.#call((db) => status('schedule', C.schedule, [db, n, sp, data, data.length, native, key, next]));
    // The library stores the spec trimmed.
    return { name: n, spec: sp.trim(), queue: native.queue || 'default', job: hex(key), next_run: i64(next) };
  }

  async unschedule(name) {
    const n = cName(name, 'schedule name', 'unschedule');
    await this.#call((db) => status('unschedule', C.unschedule, [db, n]));
  }

  // true when work may be claimable, false on timeout. With `queues` (names, from
  // queueList), only work in those queues counts.
  async wait(timeoutMs, queues = null) {
    const rc = await this.#call((db) =>
      queues
        ? status('wait', C.waitFrom, [db, queues, queues.length, timeoutMs], true)
        : status('wait', C.wait, [db, timeoutMs], true),
    );
    return rc === OK;
  }

  // Whether an untilEmpty run would end now: the library's rule (batchdb_is_idle), the one its
  // own run loop ends by. With `queues` (names, from queueList), only those queues count.
  async isIdle(queues = null) {
    const out = [0];
    await this.#call((db) => status('isIdle', C.isIdle, [db, queues, queues ? queues.length : 0, out]));
    return out[0] === 1;
  }

  // Wakes waiters; a flag and a notification in C, no disk access.
  stop() {
    if (!this.#closed) C.stop(this.#ptr);
  }

  async writer() {
    this.#prune();
    const out = [null];
    await this.#call((db) => status('create', C.writerOpen, [db, out]));
    return this.#child(new Writer(out[0]));
  }

  async reader(hash) {
    if (typeof hash !== 'string') throw new TypeError('batchdb: hash must be a string');
    this.#prune();
    const out = [null];
    await this.#call((db) => status('get', C.readerOpen, [db, hash, out]));
    return this.#child(new Reader(out[0]));
  }

  async list(kind) {
    if (!Object.hasOwn(LIST_KINDS, kind)) {
      throw new BatchdbError(ERR_INVALID, `batchdb: unknown list type ${JSON.stringify(kind)} (job, pending, result, fail or schedule)`, 'list');
    }
    this.#prune();
    const out = [null];
    await this.#call((db) => status('list', C.list, [db, LIST_KINDS[kind], out]));
    return this.#child(new Cursor(out[0]));
  }

  // Resolves to the lineage of the blob `hash`: its JSON lines as objects, {job: K} then
  // {result: [K, C], after: [[K2, C2], ...]} per result row.
  async why(hash) {
    if (typeof hash !== 'string') throw new TypeError('batchdb: hash must be a string');
    this.#prune();
    const out = [null];
    await this.#call((db) => status('why', C.why, [db, hash, out]));
    const cursor = this.#child(new Cursor(out[0]));
    const lines = [];
    try {
      for (let row = await cursor.next(); row !== null; row = await cursor.next()) lines.push(row);
    } finally {
      await cursor.close();
    }
    return lines;
  }

  // Resolves to a Job, or null when nothing is ready. The claim reads up to `headCap` bytes of
  // the payload in the same call into C, so a small job's payload costs no further call.
  async claim(headCap = CLAIM_HEAD) {
    this.#prune();
    const out = [null];
    const buf = headCap === CLAIM_HEAD ? takeHead() : Buffer.allocUnsafe(headCap);
    const n = Buffer.alloc(8);
    try {
      const rc = await this.#call((db) => status('claim', C.claimRead, [db, buf, headCap, n, out], true));
      if (rc === DONE) return null;
      const got = u64(n);
      return this.#child(new Job(out[0], copyHead(buf, got), got < headCap));
    } finally {
      if (headCap === CLAIM_HEAD) giveHead(buf);
    }
  }

  // claim() from the named queues only (null: every queue), with the payload's start read in
  // the same call, as claim() does.
  async claimFrom(queues, headCap = CLAIM_HEAD) {
    const list = queueList(queues, 'claim');
    if (!list) return this.claim(headCap);
    this.#prune();
    const out = [null];
    const buf = Buffer.allocUnsafe(headCap);
    const n = Buffer.alloc(8);
    const rc = await this.#call((db) => status('claim', C.claimReadFrom, [db, list, list.length, buf, headCap, n, out], true));
    if (rc === DONE) return null;
    const got = u64(n);
    return this.#child(new Job(out[0], buf.subarray(0, got), got < headCap));
  }

  // Completes `job` (with `tail`, its output's last bytes) and claims the next instance, in one
  // call into C. Resolves to {hash, next}: `next` is a Job, or null when none was claimed.
  async completeClaim(job, tail) {
    this.#prune();
    const hash = Buffer.alloc(65);
    const buf = takeHead();
    const n = Buffer.alloc(8);
    const out = [null];
    const data = tail && tail.length ? tail : null;
    let next = null;
    try {
      await this.#call((db) =>
        job._use((j) => status('complete', C.jobCompleteClaim, [db, j, data, data ? data.length : 0, hash, buf, CLAIM_HEAD, n, out]), true),
      );
      if (out[0]) {
        const got = u64(n);
        next = this.#child(new Job(out[0], copyHead(buf, got), got < CLAIM_HEAD));
      }
    } finally {
      giveHead(buf);
    }
    return { hash: hex(hash), next };
  }

  // Completes the jobs of `finished` ([job, tail] pairs: a claimed Job and its output's last
  // bytes) and then claims up to `want` instances (from every queue), in one call into C
  // (batchdb_jobs_complete_claim). Every job is consumed. Resolves to {hashes, errors, jobs}:
  // per finished job its output's hash and null, or null and the BatchdbError of its failed
  // complete; and the Jobs claimed, in the processing order. Rejects only when the call could
  // not be made (a closed database).
  async completeClaimMany(finished, want) {
    this.#prune();
    const n = finished.length;
    const lens = Buffer.allocUnsafe(8 * n || 8);
    const tails = [];
    let total = 0;
    for (let i = 0; i < n; i++) {
      const tail = finished[i][1];
      const len = tail ? tail.length : 0;
      lens.writeBigUInt64LE(BigInt(len), 8 * i);
      if (len) tails.push(tail);
      total += len;
    }
    const data = total ? (tails.length === 1 ? tails[0] : Buffer.concat(tails, total)) : null;
    const hashes = Buffer.alloc(65 * n || 1);
    const statuses = Buffer.alloc(4 * n || 4);
    const heads = want ? takeHeads(want) : null;
    const counts = Buffer.alloc(8 * want || 8);
    const out = want ? new Array(want).fill(null) : null;
    const claimed = Buffer.alloc(8);
    // Each job is marked consumed now, and its pointer taken after the calls queued on it.
    const ptrs = finished.map(([job]) => job._use((j) => j, true));
    const jobs = [];
    try {
      await this.#call(async (db) => {
        const done = n ? await Promise.all(ptrs) : null;
        return status('complete', C.jobsCompleteClaim, [db, done, n, data, lens, hashes, statuses, want, heads, CLAIM_HEAD, counts, out, claimed]);
      });
      const got = u64(claimed);
      for (let k = 0; k < got; k++) {
        const len = Number(counts.readBigUInt64LE(8 * k));
        const head = copyHead(heads.subarray(k * CLAIM_HEAD), len);
        jobs.push(this.#child(new Job(out[k], head, len < CLAIM_HEAD)));
      }
    } finally {
      if (heads) giveHeads(heads);
    }
    const hashList = [];
    const errors = [];
    for (let i = 0; i < n; i++) {
      const rc = statuses.readInt32LE(4 * i);
      if (rc === OK) {
        hashList.push(hashes.toString('latin1', 65 * i, 65 * i + 64));
        errors.push(null);
      } else {
        hashList.push(null);
        errors.push(new BatchdbError(rc, `batchdb: the job's complete failed (${CODE_NAMES[rc] || rc})${rc === -9 ? ': this worker lost its lease' : ''}`, 'complete'));
      }
    }
    return { hashes: hashList, errors, jobs };
  }

  // Waits for calls in flight, releases children still open (jobs go back to pending),
  // then closes the file. Safe to call twice.
  close() {
    if (!this.#closing) this.#closing = this.#close();
    return this.#closing;
  }

  async #close() {
    for (;;) {
      if (this.#inflight.size) {
        await Promise.allSettled([...this.#inflight]);
        continue;
      }
      const open = [...this.#children].filter((h) => !h.closed);
      this.#children.clear();
      if (!open.length) break;
      await Promise.allSettled(
        open.map((h) => (h instanceof Writer ? h.abort() : h instanceof Job ? h.release() : h.close())),
      );
    }
    this.#closed = true;
    const ptr = this.#ptr;
    this.#ptr = null;
    await callAsync(C.close, [ptr]);
  }
}

module.exports = {
  Database,
  MANY_HEADS,
  BatchdbError,
  queueList,
  version: () => C.version(),
  codes: Object.fromEntries(Object.entries(CODE_NAMES).map(([k, v]) => [v, Number(k)])),
};
