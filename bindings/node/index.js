'use strict';
// The original batchdb's API (streams, events, callbacks) with promise forms, over lib/ffi.js.

const { EventEmitter } = require('node:events');
const { Readable, Writable } = require('node:stream');
const ffi = require('./lib/ffi');

const { BatchdbError } = ffi;
const READ_CHUNK = 256 * 1024;
const WAIT_MS = 500;
// Without keepAlive, an idle run waits in slices this long with a gap between them that does not
// hold the event loop, so a process with nothing else to do exits within one slice.
const IDLE_SLICE_MS = 250;
// Output pieces queued for the database before the runner's stream is paused.
const OUTPUT_HIGH_WATER = 16;
// Output bytes gathered before they are written to the job (fewer calls into C).
const OUTPUT_FLUSH = 64 * 1024;
// A run worker claims ahead of the runner about this much work (ms), judged by its last job,
// and at most MANY_AHEAD instances: see #runLoop.
const AHEAD_MS = 5;
const MANY_AHEAD = ffi.MANY_HEADS;
const noop = () => {};
// The words in the message of every lost-connection error (BATCHDB_ERR_IO), as the library's
// batchdb::CONNECTION_LOST: the one test of "the server went away" (see #rideOut).
const CONNECTION_LOST = 'connection to PostgreSQL lost';
const lostConnection = (err) =>
  !!err && err.code === 'BATCHDB_ERR_IO' && typeof err.message === 'string' && err.message.includes(CONNECTION_LOST);

// Calls `cb(err, ...values)` outside the promise chain when given, else returns the promise.
// `spread` turns an array result into several callback arguments.
function settle(promise, cb, spread = false) {
  if (typeof cb !== 'function') return promise;
  promise.then(
    (v) => process.nextTick(() => (spread ? cb(null, ...v) : cb(null, v))),
    (e) => process.nextTick(() => cb(e)),
  );
  return undefined;
}

function closedError() {
  return new BatchdbError(ffi.codes.BATCHDB_ERR_MISUSE, 'batchdb: the database is closed');
}

// A writable stream whose bytes become a job payload (create) or a job and an instance (add).
class PayloadStream extends Writable {
  #compute;
  #push;
  #pushOpts;
  #writer = null;
  #promise = null;
  #turn = null; // {prev, done}: commits of one Compute happen in the order end() was called
  key = undefined;
  created = undefined;
  cached = null;

  constructor(compute, push, pushOpts, cb) {
    super({ highWaterMark: 1024 * 1024 });
    this.#compute = compute;
    this.#push = push;
    this.#pushOpts = pushOpts;
    if (typeof cb === 'function') {
      let called = false;
      const once = (...args) => {
        if (!called) {
          called = true;
          cb(...args);
        }
      };
      this.on('error', (err) => once(err));
      this.on('finish', () => (push ? once(null, this.key, this.created, { cached: this.cached }) : once(null, this.key)));
    }
  }

  // Resolves to the key (create) or {key, created, cached} (add) once the payload is stored.
  get promise() {
    if (!this.#promise) {
      const value = () => (this.#push ? { key: this.key, created: this.created, cached: this.cached } : this.key);
      this.#promise = new Promise((resolve, reject) => {
        if (this.errored) reject(this.errored);
        else if (this.writableFinished) resolve(value());
        else {
          this.once('error', reject);
          this.once('finish', () => resolve(value()));
          this.once('close', () => reject(this.errored || new Error('batchdb: the stream was destroyed')));
        }
      });
      this.#promise.catch(noop); // a stream used only through its callback must not reject unseen
    }
    return this.#promise;
  }

  // Takes this stream's place in the commit order when the user ends it, so that the `create` and
  // `push` events (and the `created` times) of add().end(a); add().end(b) come in that order.
  end(...args) {
    if (!this.#turn && !this.destroyed && !this.writableEnded) this.#turn = this.#compute._commitTurn();
    return super.end(...args);
  }

  _construct(done) {
    this.#compute._database().then((db) => db.writer()).then((w) => {
      this.#writer = w;
      done();
    }, done);
  }

  _write(chunk, _enc, done) {
    this.#writer.write(chunk).then(() => done(), done);
  }

  _writev(chunks, done) {
    const buf = chunks.length === 1 ? chunks[0].chunk : Buffer.concat(chunks.map((c) => c.chunk));
    this.#writer.write(buf).then(() => done(), done);
  }

  _final(done) {
    const turn = this.#turn || this.#compute._commitTurn();
    this.#turn = turn;
    turn.prev
      .then(() => this.#finish())
      .finally(turn.done)
      .then(() => done(), done);
  }

  async #finish() {
    const compute = this.#compute;
    if (this.#push) {
      // Stored, registered and pushed (with its push options) in one transaction.
      const { key, created, cached } = await this.#writer.add(this.#pushOpts);
      this.key = key;
      this.created = created;
      this.cached = cached;
      compute.emit('create', key);
      // A memo hit queued nothing: no push event.
      if (!cached) compute.emit('push', key, created);
    } else {
      this.key = await this.#writer.create();
      compute.emit('create', this.key);
    }
  }

  _destroy(err, done) {
    if (this.#turn && !this.writableFinished) this.#turn.done();
    const w = this.#writer;
    if (w && !w.closed) w.abort().then(() => done(err), () => done(err));
    else done(err);
  }
}

// A readable byte stream over a stored blob, verified when its last byte is delivered.
class BlobStream extends Readable {
  #compute;
  #hash;
  #reader = null;

  constructor(compute, hash) {
    super({ highWaterMark: 1024 * 1024 });
    this.#compute = compute;
    this.#hash = hash;
  }

  _construct(done) {
    this.#compute._database().then((db) => db.reader(this.#hash)).then((r) => {
      this.#reader = r;
      done();
    }, done);
  }

  _read() {
    this.#reader.read(READ_CHUNK).then(
      (buf) => this.push(buf.length ? buf : null),
      (err) => this.destroy(err),
    );
  }

  _destroy(err, done) {
    const r = this.#reader;
    if (r && !r.closed) r.close().then(() => done(err), () => done(err));
    else done(err);
  }
}

// The original's fail row is {key, value: {message}}, and its users compare it whole (its own
// test deep-equals the value with {message}). start, end and attempts stay readable as
// row.value.start etc., but are not enumerable: deep equality, Object.keys, JSON.stringify
// and console.log see the original's shape.
const FAIL_EXTRAS = ['start', 'end', 'attempts'];
function hideFailExtras(row) {
  const v = row.value;
  if (v && typeof v === 'object') {
    for (const k of FAIL_EXTRAS) {
      if (Object.hasOwn(v, k)) Object.defineProperty(v, k, { enumerable: false });
    }
  }
  return row;
}

// A readable object stream of the rows of one list.
class RowStream extends Readable {
  #compute;
  #type;
  #cursor = null;

  constructor(compute, type) {
    super({ objectMode: true, highWaterMark: 64 });
    this.#compute = compute;
    this.#type = type;
  }

  _construct(done) {
    this.#compute._database().then((db) => db.list(this.#type)).then((c) => {
      this.#cursor = c;
      done();
    }, done);
  }

  _read() {
    this.#cursor.next().then(
      (row) => this.push(this.#type === 'fail' && row ? hideFailExtras(row) : row),
      (err) => this.destroy(err),
    );
  }

  _destroy(err, done) {
    const c = this.#cursor;
    if (c && !c.closed) c.close().then(() => done(err), () => done(err));
    else done(err);
  }
}

// The runner's stream: anything the original accepted, i.e. an event emitter with pipe():
// classic (streams1) streams such as duplexer@0.1 or through@2, streams2 ones (readable-stream,
// duplexer2, through2) and Node's own streams.
function isStream(s) {
  return s !== null && typeof s === 'object' && typeof s.on === 'function' && typeof s.pipe === 'function';
}

function describe(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return `an object without ${typeof v.on !== 'function' ? 'on()' : 'pipe()'}`;
  if (typeof v === 'string') return `a string (${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)})`;
  return typeof v === 'undefined' ? 'undefined' : `a ${typeof v}`;
}

function asError(e, fallback) {
  if (e instanceof Error) return e;
  if (e === undefined || e === null) return new Error(fallback);
  return new Error(typeof e === 'string' ? e : `${fallback}: ${String(e)}`);
}

function toBuffer(chunk) {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk);
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return null;
}

// Ends a runner's stream that is no longer wanted: destroy() where it has one, else end() its
// writable side, so that a child process behind it sees end of input and exits.
function stopStream(s, err) {
  try {
    if (typeof s.destroy === 'function') s.destroy(err);
    else if (typeof s.end === 'function' && s.writable !== false) s.end();
  } catch {
    // a stream that throws while being torn down has nothing more to give
  }
}

// Feeds the payload into the runner's stream and stores what it outputs. Resolves, once its
// output has ended, to the output's last bytes (under OUTPUT_FLUSH), which are for complete(); rejects on an 'error' event (either
// side of a duplexer re-emits there), a stream destroyed before its output ended, a chunk that
// is not bytes, or a failed write. `ctl.cancel(err)` rejects it from outside.
function pump(job, s, ctl) {
  return new Promise((resolve, reject) => {
    let settled = false;
    let outputEnded = false;
    let paused = false;
    let queued = 0;
    let writes = Promise.resolve();
    let wakeInput = null; // resolves the feeder's wait for 'drain'

    const settle = (err, tail) => {
      if (settled) return;
      settled = true;
      s.removeListener('data', onData);
      s.removeListener('end', onEnd);
      s.removeListener('close', onClose);
      s.removeListener('drain', onDrain);
      if (wakeInput) wakeInput();
      if (err) reject(err);
      else resolve(tail);
    };
    const onError = (e) => settle(asError(e, "batchdb: the runner's stream emitted an error"));
    // Output is gathered here and written in pieces of OUTPUT_FLUSH bytes; what is left at the
    // end goes to the database with the complete call itself (one call into C for a small one).
    let held = [];
    let heldBytes = 0;
    const onData = (chunk) => {
      if (settled) return;
      const buf = toBuffer(chunk);
      if (!buf) {
        settle(new TypeError(`batchdb: the runner's stream emitted ${describe(chunk)}, not bytes or a string`));
        return;
      }
      if (!buf.length) return;
      held.push(buf);
      heldBytes += buf.length;
      if (heldBytes < OUTPUT_FLUSH) return;
      const piece = held.length === 1 ? held[0] : Buffer.concat(held, heldBytes);
      held = [];
      heldBytes = 0;
      queued++;
      if (queued >= OUTPUT_HIGH_WATER && !paused && typeof s.pause === 'function') {
        paused = true;
        s.pause();
      }
      writes = writes.then(async () => {
        if (settled) return;
        await job.write(piece);
        queued--;
        if (paused && queued < OUTPUT_HIGH_WATER / 2 && !settled) {
          paused = false;
          s.resume();
        }
      });
      writes.catch(onError);
    };
    const onEnd = () => {
      if (outputEnded) return;
      outputEnded = true;
      writes.then(() => settle(null, held.length === 1 ? held[0] : Buffer.concat(held, heldBytes)), onError);
    };
    const onClose = () => {
      // Some duplexers re-emit a side's 'close' early: only a stream that says it was destroyed
      // before its output ended (given a turn for a racing 'end') has failed.
      setImmediate(() => {
        if (!outputEnded && s.destroyed === true) {
          settle(new Error("batchdb: the runner's stream was closed before its output ended"));
        }
      });
    };
    const onDrain = () => {
      if (wakeInput) wakeInput();
    };

    ctl.cancel = (err) => settle(err);
    s.on('error', noop); // stays after the instance is done: a late error must not crash the process
    s.on('error', onError);
    s.on('data', onData);
    s.on('end', onEnd);
    s.on('close', onClose);
    s.on('drain', onDrain);
    if (typeof s.resume === 'function' && s.readable !== false && !s.readableFlowing) {
      try {
        s.resume(); // streams2: 'data' alone may not start the flow (readable-stream 1.0)
      } catch {
        // classic streams need no resume
      }
    }

    // The input side: the payload, chunk by chunk, honouring write()'s backpressure.
    if (typeof s.write !== 'function' || s.writable === false) return;
    (async () => {
      for (;;) {
        if (settled || outputEnded) return;
        const buf = await job.read(READ_CHUNK);
        if (settled || outputEnded) return;
        if (!buf.length) {
          s.end();
          return;
        }
        if (s.write(buf) === false) {
          await new Promise((r) => {
            wakeInput = r;
          });
          wakeInput = null;
        }
      }
    })().catch(onError);
  });
}

class Compute extends EventEmitter {
  #dbPromise;
  #runner;
  #workers;
  #closing = null;
  #stopping = false;
  #runPromise = null;
  #waitPromise = null;
  #jobs = new Set();
  #keepAlive;
  #queues = null;
  #commitTail = Promise.resolve();
  #endGap = null;

  constructor(file, opts = {}) {
    super();
    if (typeof file !== 'string' || file === '') throw new TypeError('batchdb: path must be a non-empty string');
    if (opts === null || typeof opts !== 'object') throw new TypeError('batchdb: opts must be an object');
    // opts.path (the original's blob folder) is accepted and ignored: blobs live in the file.
    if (opts.run !== undefined && typeof opts.run !== 'function') throw new TypeError('batchdb: opts.run must be a function');
    const workers = opts.workers === undefined ? 1 : opts.workers;
    if (!Number.isInteger(workers) || workers < 1 || workers > 256) throw new TypeError('batchdb: opts.workers must be an integer from 1 to 256');
    if (opts.keepAlive !== undefined && typeof opts.keepAlive !== 'boolean') throw new TypeError('batchdb: opts.keepAlive must be a boolean');
    this.#queues = ffi.queueList(opts.queues, 'open');
    this.#runner = opts.run;
    this.#workers = workers;
    this.#keepAlive = Boolean(opts.keepAlive);
    ffi.Database.validate(opts);
    this.#dbPromise = ffi.Database.open(file, opts);
    this.#dbPromise.catch(noop); // reported by every call, and by `ready`
  }

  /** Resolves to this instance once the file is open; rejects with the open error. */
  get ready() {
    return this.#dbPromise.then(() => this);
  }

  /**
   * @internal A place in this instance's commit order: `prev` settles when the commit before it
   * is done, `done()` lets the next one go.
   */
  _commitTurn() {
    let done;
    const mine = new Promise((resolve) => {
      done = resolve;
    });
    const prev = this.#commitTail;
    this.#commitTail = mine;
    return { prev, done };
  }

  /** @internal the open database handle, or a rejection when closed or not open. */
  _database() {
    if (this.#closing) return Promise.reject(closedError());
    return this.#dbPromise;
  }

  create(cb) {
    return new PayloadStream(this, false, undefined, cb);
  }

  add(opts, cb) {
    if (typeof opts === 'function') {
      cb = opts;
      opts = undefined;
    }
    return new PayloadStream(this, true, opts, cb);
  }

  push(key, opts, cb) {
    if (typeof opts === 'function') {
      cb = opts;
      opts = undefined;
    }
    const p = this.#submit(key, opts);
    if (typeof cb !== 'function') return p.then((r) => r.created);
    // The callback's third argument says whether a memo push reused a result.
    settle(p.then((r) => [r.created, { cached: r.cached }]), cb, true);
    return undefined;
  }

  /**
   * push() that resolves to {created, cached}: `cached` is the output hash of the result a memo
   * push reused (nothing was queued), else null.
   */
  submit(key, opts, cb) {
    if (typeof opts === 'function') {
      cb = opts;
      opts = undefined;
    }
    return settle(this.#submit(key, opts), cb);
  }

  #submit(key, opts) {
    return this._database()
      .then((db) => db.push(key, opts))
      .then((r) => {
        // A memo hit queued nothing: no push event.
        if (!r.cached) this.emit('push', key, r.created);
        return r;
      });
  }

  /**
   * Where the blob `hash` came from: resolves to its lineage lines, {job: K} when it is a job's
   * payload, then {result: [K, C], after: [[K2, C2], ...]} per result row that produced it. A
   * hash the database does not hold rejects with BATCHDB_ERR_NOT_FOUND.
   */
  why(hash, cb) {
    return settle(this._database().then((db) => db.why(hash)), cb);
  }

  get(hash) {
    return new BlobStream(this, hash);
  }

  getJob(hash) {
    return this.get(hash);
  }

  getResult(hash) {
    return this.get(hash);
  }

  list(type) {
    return new RowStream(this, type);
  }

  retry(key, created, cb) {
    const p = this._database()
      .then((db) => db.retry(key, created))
      .then((c) => {
        this.emit('push', key, c);
        return c;
      });
    return settle(p, cb);
  }

  cancel(key, created, cb) {
    return settle(this._database().then((db) => db.cancel(key, created)), cb);
  }

  prune(olderThanMs, cb) {
    const ms = olderThanMs instanceof Date ? olderThanMs.getTime() : olderThanMs;
    if (!Number.isInteger(ms)) {
      return settle(Promise.reject(new TypeError('batchdb: prune takes epoch milliseconds or a Date')), cb);
    }
    return settle(this._database().then((db) => db.prune(ms)), cb);
  }

  gc(cb) {
    return settle(this._database().then((db) => db.gc()), cb);
  }

  /** A consistent copy of the whole database, as of one instant, in the new file `dest`. */
  backup(dest, cb) {
    return settle(this._database().then((db) => db.backup(dest)), cb);
  }

  /**
   * Copies everything into `target` (another batchdb() handle, a file or a server): resolves
   * to {blobsSent, bytesSent, rows}. Idempotent and resumable; the target must be empty or an
   * earlier copy of this database.
   */
  copyTo(target, cb) {
    const p = Promise.resolve().then(() => {
      if (!target || typeof target._database !== 'function') {
        throw new TypeError('batchdb: copyTo needs another batchdb() handle');
      }
      return Promise.all([this._database(), target._database()]);
    }).then(([db, t]) => db.copyTo(t));
    return settle(p, cb);
  }

  /** At most `n` instances of `queue` run at once, across every process; 0 removes the limit. */
  limit(queue, n, cb) {
    return settle(this._database().then((db) => db.limit(queue, n)), cb);
  }

  /** No process claims the instances of `queue` until resume(); running ones finish. */
  pause(queue, cb) {
    return settle(this._database().then((db) => db.pause(queue)), cb);
  }

  resume(queue, cb) {
    return settle(this._database().then((db) => db.resume(queue)), cb);
  }

  /**
   * Creates or replaces the recurring schedule `name`: each slot of `spec` ('every 30s', or a
   * 5-field cron expression in UTC) pushes one instance of `payload` (a Buffer or a string) with
   * opts' queue and priority. Resolves to its row {name, spec, queue, job, next_run}.
   */
  schedule(name, spec, payload, opts, cb) {
    if (typeof opts === 'function') {
      cb = opts;
      opts = undefined;
    }
    return settle(this._database().then((db) => db.schedule(name, spec, payload, opts)), cb);
  }

  /** Resolves to the schedules, by name: [{name, spec, queue, job, next_run}, ...]. */
  schedules(cb) {
    const p = this._database().then(async (db) => {
      const cursor = await db.list('schedule');
      const rows = [];
      try {
        for (let row = await cursor.next(); row !== null; row = await cursor.next()) rows.push(row);
      } finally {
        await cursor.close();
      }
      return rows;
    });
    return settle(p, cb);
  }

  /** Removes the schedule `name` (the instances it pushed stay); unknown: BATCHDB_ERR_NOT_FOUND. */
  unschedule(name, cb) {
    return settle(this._database().then((db) => db.unschedule(name)), cb);
  }

  /**
   * Processes the queue with opts.run. Without untilEmpty it waits for new work (also from
   * other processes) until stop() or close(); that waiting does not keep the process alive
   * unless keepAlive is set (here or in the constructor's opts). With untilEmpty it resolves
   * once nothing is pending or running. Resolves when the loop ends; rejects when the queue
   * cannot be read. Without a runner it throws a TypeError (or calls `cb` with it).
   */
  run(options = {}, cb) {
    if (typeof options === 'function') {
      cb = options;
      options = {};
    }
    if (options === null || options === undefined) options = {};
    if (typeof options !== 'object') throw new TypeError('batchdb: run() takes an options object');
    if (options.keepAlive !== undefined && typeof options.keepAlive !== 'boolean') {
      throw new TypeError('batchdb: keepAlive must be a boolean');
    }
    const queues = options.queues === undefined ? this.#queues : ffi.queueList(options.queues, 'run');
    if (!this.#runPromise) {
      if (typeof this.#runner !== 'function') {
        const err = new TypeError('batchdb: run() needs a runner: batchdb(path, { run: function (key, created) { return stream } })');
        if (typeof cb === 'function') {
          process.nextTick(() => cb(err));
          return undefined;
        }
        throw err;
      }
      this.#stopping = false;
      const keepAlive = options.keepAlive === undefined ? this.#keepAlive : options.keepAlive;
      const p = this.#runLoop(Boolean(options.untilEmpty), keepAlive, queues).finally(() => {
        this.#runPromise = null;
      });
      p.catch((err) => {
        if (this.listenerCount('error')) this.emit('error', err);
      });
      this.#runPromise = p;
    }
    return settle(this.#runPromise, cb);
  }

  /** Stops claiming; jobs in flight finish first. Resolves when run() has returned. */
  stop(cb) {
    this.#stopping = true;
    if (this.#endGap) this.#endGap();
    const p = this.#dbPromise.then(
      async (db) => {
        db.stop();
        if (this.#runPromise) await this.#runPromise.catch(noop);
      },
      noop,
    );
    return settle(p, cb);
  }

  /**
   * Stops running (jobs in flight go back to pending), waits for every call in flight, and
   * closes the file. Later calls fail with BATCHDB_ERR_MISUSE.
   */
  close(cb) {
    if (!this.#closing) {
      this.#stopping = true;
      if (this.#endGap) this.#endGap();
        this.#closing = (async () => {
        let db;
        try {
          db = await this.#dbPromise;
        } catch {
          return; // never opened: nothing to close
        }
        db.stop();
        for (const job of this.#jobs) job.abort();
        if (this.#runPromise) await this.#runPromise.catch(noop);
        await db.close();
        this.emit('close');
      })();
    }
    return settle(this.#closing, cb);
  }

  async #runLoop(untilEmpty, keepAlive, queues) {
    const db = await this._database();
    // untilEmpty ends by itself, so its waits may hold the event loop like keepAlive's.
    const hold = untilEmpty || keepAlive;
    // This run's outage, shared by its workers so that it is reported once (see #rideOut).
    const outage = { since: 0, pause: 0 };
    const worker = async () => {
      // The calls into C overlap the runner, and one call serves several jobs. The jobs the
      // runner finished (`done`) are completed, and the next instances claimed, in one call
      // (batchdb_jobs_complete_claim) that runs on koffi's thread pool while the runner works
      // on instances an earlier call claimed (`ready`). While that call runs, finished jobs
      // gather for the next one, so the slower the calls, the more jobs each serves. `inflight`
      // is the one call of this worker in flight; it never rejects. An instance claimed ahead
      // waits for the jobs before it, and it cannot be given back for free (a release counts as
      // an attempt), so a worker claims ahead only about AHEAD_MS of work, judged by its last
      // job; after a job as long as that, the next claim is made when the worker is free, as
      // without the overlap. With queues, that call only completes (it claims from every
      // queue), and claims are made apart.
      const ready = [];
      let done = [];
      let inflight = null;
      let lastMs = Infinity; // the last job's time: nothing is claimed ahead before one ran
      const ahead = () =>
        queues || this.#stopping ? 0 : Math.min(MANY_AHEAD, Math.floor(AHEAD_MS / Math.max(lastMs, 0.01)));
      // One call: completes `done` and claims up to `want`; what it claims joins `ready`.
      const cross = (want) => {
        const finished = done;
        done = [];
        const p = this.#cycle(db, finished, want).then((jobs) => {
          if (jobs.length) this.#backOnline(outage);
          for (const j of jobs) ready.push(j);
          if (inflight === p) inflight = null;
        });
        inflight = p;
        return p;
      };
      try {
        // After stop() the instances already claimed ahead still run (a release would cost
        // each an attempt); after close() they go back to pending.
        while (!this.#stopping || (ready.length && !this.#closing)) {
          if (!ready.length) {
            if (inflight) {
              await inflight;
              continue;
            }
            if (done.length) {
              await cross(queues || this.#stopping ? 0 : Math.max(1, ahead()));
              continue;
            }
            let job;
            try {
              job = queues ? await db.claimFrom(queues) : await db.claim();
            } catch (err) {
              if (err.code === 'BATCHDB_ERR_BUSY') {
                await this.#waitForWork(db, hold, queues);
                continue;
              }
              if (this.#stopping) return;
              if (await this.#rideOut(err, outage)) continue;
              throw err;
            }
            this.#backOnline(outage);
            if (job) ready.push(job);
            if (this.#stopping) break;
            if (!job) {
              if (untilEmpty && (await this.#idle(db, queues))) return;
              if (this.#stopping) break;
              try {
                await this.#waitForWork(db, hold, queues);
              } catch (err) {
                if (this.#stopping || !(await this.#rideOut(err, outage))) throw err;
              }
            }
            continue;
          }
          const job = ready.shift();
          if (!inflight && (done.length || ready.length < ahead())) cross(Math.max(0, ahead() - ready.length));
          const t0 = performance.now();
          const tail = await this.#drive(job);
          lastMs = performance.now() - t0;
          if (tail !== null) done.push([job, tail]); // else failed or given back: recorded
          if (!inflight && done.length) {
            // Claims what the worker will need: ahead when jobs are short, else only the next
            // one when none is claimed yet.
            const want = ahead();
            cross(Math.max(want - ready.length, !queues && !ready.length && !this.#stopping ? 1 : 0));
          }
        }
      } finally {
        // Calls in flight finish, and jobs the runner finished are completed (their result
        // events included); claimed instances not started go back to pending.
        while (inflight) await inflight;
        if (done.length) await cross(0);
        for (const j of ready) await j.release().catch(noop);
      }
    };
    await Promise.all(Array.from({ length: this.#workers }, worker));
  }

  // Whether an untilEmpty run is done, after a claim found nothing: the library's rule
  // (batchdb_is_idle), the one batchdb_run, the Rust run and the CLI end by.
  async #idle(db, queues) {
    try {
      return await db.isIdle(queues);
    } catch (err) {
      // A lost connection: not idle as far as anyone knows; the wait that follows rides it out.
      if (err.code === 'BATCHDB_ERR_BUSY' || lostConnection(err)) return false;
      throw err;
    }
  }

  // A lost connection to the server (the library's Error::is_connection_lost) does not end a
  // run: the worker waits (100 ms doubling to 5 s, jittered, as the library's own run loop) and
  // tries again, and the outage is reported once: 'disconnect' (err), then 'reconnect'
  // (outageMs). Resolves true when it waited, false for any other error (the caller throws it).
  async #rideOut(err, outage) {
    if (!lostConnection(err)) return false;
    if (!outage.since) {
      outage.since = Date.now();
      outage.pause = 100;
      this.emit('disconnect', err);
    }
    const step = outage.pause;
    outage.pause = Math.min(step * 2, 5000);
    await new Promise((resolve) => setTimeout(resolve, step / 2 + Math.random() * (step / 2)));
    return true;
  }

  #backOnline(outage) {
    if (!outage.since) return;
    const ms = Date.now() - outage.since;
    outage.since = 0;
    this.emit('reconnect', ms);
  }

  // One waiter per instance, shared by the idle workers (of one run: they serve the same queues).
  // batchdb_wait (batchdb_wait_from for a run that serves some queues: work in other queues does
  // not wake it) returns at once when work is claimable, and wakes on new work from any process
  // and when a delay ends. With `hold` it
  // waits in one call; without, it waits in short slices separated by an unref'd timer, so that
  // the event loop sees, between two slices, that nothing but this wait is left and the process
  // exits, as the original's did.
  #waitForWork(db, hold, queues) {
    if (!this.#waitPromise) {
      // The gap only follows a slice that timed out (false): after a wake-up (true) work may be
      // claimable and the loop must not be left empty before the claim is made.
      const slice = hold
        ? db.wait(WAIT_MS, queues)
        : db.wait(IDLE_SLICE_MS, queues).then((woke) =>
            woke || this.#stopping
              ? woke
              : new Promise((resolve) => {
                  const gap = setTimeout(() => {
                    this.#endGap = null;
                    resolve(woke);
                  }, 0);
                  gap.unref();
                  // stop() and close() end the gap at once: their promises must not wait on
                  // a timer that does not keep the process alive.
                  this.#endGap = () => {
                    clearTimeout(gap);
                    this.#endGap = null;
                    resolve(woke);
                  };
                }),
          );
      this.#waitPromise = slice.finally(() => {
        this.#waitPromise = null;
      });
    }
    return this.#waitPromise;
  }

  // The runner's third argument: the instance, with its upstreams `after` ([{key, created,
  // hash}, ...]: its inputs, readable with get(hash)) and progress(done, message[, cb]), which
  // records the report on its pending row and emits 'progress' (key, created, done, message).
  #handle(job) {
    const { key, created, after } = job;
    const progress = (done, message, cb) => {
      if (typeof message === 'function') {
        cb = message;
        message = undefined;
      }
      const p = (async () => {
        if (typeof done !== 'number') throw new TypeError('batchdb: progress takes a number from 0 to 1');
        const text = message === undefined || message === null ? '' : String(message);
        if (text.includes('\0')) {
          throw new BatchdbError(ffi.codes.BATCHDB_ERR_INVALID, 'batchdb: a progress message must not hold a NUL byte', 'progress');
        }
        await job.progress(done, text);
        this.emit('progress', key, created, done, text);
      })();
      // A runner may report and not wait: a refused report must not be an unhandled rejection.
      p.catch(noop);
      return settle(p, cb);
    };
    return Object.freeze({ key, created, after, progress });
  }

  // One call into C for a run worker: completes `finished` ([job, tail] pairs) and claims up
  // to `want` instances; emits result (or error, for a complete that failed, e.g. on a lost
  // lease) per finished job, in order. Resolves to the claimed Jobs; never rejects.
  async #cycle(db, finished, want) {
    let r;
    try {
      r = await db.completeClaimMany(finished, want);
    } catch (err) {
      if (this.listenerCount('error')) this.emit('error', err);
      return [];
    }
    for (let i = 0; i < finished.length; i++) {
      const job = finished[i][0];
      if (r.errors[i]) {
        if (this.listenerCount('error')) this.emit('error', r.errors[i]);
      } else {
        this.emit('result', job.key, r.hashes[i], job.created);
      }
    }
    return r.jobs;
  }

  // Runs one claimed instance through the runner's stream. Resolves to the output's last bytes
  // (for #complete), or null when the instance failed (its fail row and event are recorded
  // here) or was given back (close).
  async #drive(job) {
    const { key, created } = job;
    let stream = null;
    const ctl = {
      aborted: false,
      cancel: null,
      abort() {
        this.aborted = true;
        const err = new Error('batchdb: closed while the job ran');
        if (this.cancel) this.cancel(err);
        if (stream) stopStream(stream, err);
      },
    };
    this.#jobs.add(ctl);
    try {
      this.emit('start', key, created);
      try {
        let ret;
        try {
          ret = this.#runner(key, created, this.#handle(job));
        } catch (e) {
          throw asError(e, 'batchdb: opts.run threw');
        }
        if (!isStream(ret)) {
          throw new TypeError(`batchdb: opts.run must return a stream (a duplex, or a readable), not ${describe(ret)}`);
        }
        stream = ret;
        if (ctl.aborted) throw new Error('batchdb: closed while the job ran');
        let tail;
        try {
          tail = await pump(job, stream, ctl);
        } catch (e) {
          stopStream(stream);
          throw e;
        }
        if (ctl.aborted) throw new Error('batchdb: closed while the job ran');
        return tail;
      } catch (err) {
        if (ctl.aborted) {
          await job.release().catch(noop);
          return null;
        }
        const fail = err instanceof Error ? err : new Error(String(err));
        if (lostConnection(fail) && !job.closed) {
          // The payload or output could not be moved: that says nothing about the job, and a
          // lost connection never makes a fail row. Back to pending (or, while the server is
          // away, when its lease runs out).
          await job.release().catch(noop);
          if (this.listenerCount('error')) this.emit('error', fail);
          return null;
        }
        if (job.closed) {
          // a write into the job consumed it (e.g. the lease was lost): nothing more to record.
          if (this.listenerCount('error')) this.emit('error', fail);
          return null;
        }
        try {
          await job.fail(fail.message || 'runner failed');
        } catch (e) {
          if (this.listenerCount('error')) this.emit('error', e);
          return null;
        }
        fail.job = key;
        fail.created = created;
        this.emit('fail', fail);
        return null;
      }
    } finally {
      this.#jobs.delete(ctl);
    }
  }
}

function batchdb(file, opts) {
  return new Compute(file, opts);
}

/** Opens the file and resolves to the instance, or rejects with the open error. */
batchdb.open = (file, opts) => new Compute(file, opts).ready;
batchdb.Compute = Compute;
batchdb.BatchdbError = BatchdbError;
batchdb.codes = ffi.codes;
batchdb.version = ffi.version;
batchdb.default = batchdb;

module.exports = batchdb;
