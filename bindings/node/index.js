'use strict';
// The original batchdb's API (streams, events, callbacks) with promise forms, over lib/ffi.js.

const { EventEmitter } = require('node:events');
const { Readable, Writable } = require('node:stream');
const ffi = require('./lib/ffi');

const { BatchdbError } = ffi;
const READ_CHUNK = 256 * 1024;
const WAIT_MS = 500;
const noop = () => {};

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
  key = undefined;
  created = undefined;

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
      this.on('finish', () => (push ? once(null, this.key, this.created) : once(null, this.key)));
    }
  }

  // Resolves to the key (create) or {key, created} (add) once the payload is stored.
  get promise() {
    if (!this.#promise) {
      const value = () => (this.#push ? { key: this.key, created: this.created } : this.key);
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
    this.#finish().then(() => done(), done);
  }

  async #finish() {
    const compute = this.#compute;
    if (this.#push) {
      // Stored, registered and pushed (with its priority and delay) in one transaction.
      const { key, created } = await this.#writer.add(this.#pushOpts);
      this.key = key;
      this.created = created;
      compute.emit('create', key);
      compute.emit('push', key, created);
    } else {
      this.key = await this.#writer.create();
      compute.emit('create', this.key);
    }
  }

  _destroy(err, done) {
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
      (row) => this.push(row),
      (err) => this.destroy(err),
    );
  }

  _destroy(err, done) {
    const c = this.#cursor;
    if (c && !c.closed) c.close().then(() => done(err), () => done(err));
    else done(err);
  }
}

// Waits until `stream` can take more data, or has failed or closed.
function drained(stream) {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      stream.off('error', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
    stream.on('error', done);
  });
}

function isWritable(s) {
  return typeof s.write === 'function' && !s.destroyed && !s.writableEnded;
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

  constructor(file, opts = {}) {
    super();
    if (typeof file !== 'string' || file === '') throw new TypeError('batchdb: path must be a non-empty string');
    if (opts === null || typeof opts !== 'object') throw new TypeError('batchdb: opts must be an object');
    // opts.path (the original's blob folder) is accepted and ignored: blobs live in the file.
    if (opts.run !== undefined && typeof opts.run !== 'function') throw new TypeError('batchdb: opts.run must be a function');
    const workers = opts.workers === undefined ? 1 : opts.workers;
    if (!Number.isInteger(workers) || workers < 1 || workers > 256) throw new TypeError('batchdb: opts.workers must be an integer from 1 to 256');
    this.#runner = opts.run;
    this.#workers = workers;
    ffi.Database.validate(opts);
    this.#dbPromise = ffi.Database.open(file, opts);
    this.#dbPromise.catch(noop); // reported by every call, and by `ready`
  }

  /** Resolves to this instance once the file is open; rejects with the open error. */
  get ready() {
    return this.#dbPromise.then(() => this);
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
    const p = this._database()
      .then((db) => db.push(key, opts))
      .then((created) => {
        this.emit('push', key, created);
        return created;
      });
    return settle(p, cb);
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

  /**
   * Processes the queue with opts.run. Without untilEmpty it waits for new work (also from
   * other processes) until stop() or close(); with it, it resolves once nothing is pending or
   * running. Resolves when the loop ends; rejects when the queue cannot be read.
   */
  run(options = {}, cb) {
    if (typeof options === 'function') {
      cb = options;
      options = {};
    }
    if (!this.#runPromise) {
      if (typeof this.#runner !== 'function') {
        return settle(Promise.reject(new TypeError('batchdb: run() needs opts.run, the runner')), cb);
      }
      this.#stopping = false;
      const p = this.#runLoop(Boolean(options && options.untilEmpty)).finally(() => {
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
      this.#closing = (async () => {
        this.#stopping = true;
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

  async #runLoop(untilEmpty) {
    const db = await this._database();
    const worker = async () => {
      while (!this.#stopping) {
        let job;
        try {
          job = await db.claim();
        } catch (err) {
          if (err.code === 'BATCHDB_ERR_BUSY') {
            await this.#waitForWork(db);
            continue;
          }
          if (this.#stopping) return;
          throw err;
        }
        if (this.#stopping) {
          if (job) await job.release();
          return;
        }
        if (job) {
          await this.#drive(job);
        } else if (untilEmpty && (await this.#empty(db))) {
          return;
        } else {
          await this.#waitForWork(db);
        }
      }
    };
    await Promise.all(Array.from({ length: this.#workers }, worker));
  }

  // Nothing pending, delayed or running (running instances are listed as pending rows).
  async #empty(db) {
    const cursor = await db.list('pending');
    try {
      return (await cursor.next()) === null;
    } finally {
      await cursor.close();
    }
  }

  // One waiter per instance, shared by the idle workers.
  #waitForWork(db) {
    if (!this.#waitPromise) {
      this.#waitPromise = db.wait(WAIT_MS).finally(() => {
        this.#waitPromise = null;
      });
    }
    return this.#waitPromise;
  }

  // Runs one claimed instance through the runner's duplex stream.
  async #drive(job) {
    const { key, created } = job;
    let duplex = null;
    const ctl = {
      aborted: false,
      abort() {
        this.aborted = true;
        if (duplex) duplex.destroy(new Error('batchdb: closed while the job ran'));
      },
    };
    this.#jobs.add(ctl);
    try {
      this.emit('start', key, created);
      let hash;
      try {
        duplex = this.#runner(key, created);
        if (!duplex || typeof duplex.on !== 'function' || typeof duplex[Symbol.asyncIterator] !== 'function') {
          throw new TypeError('batchdb: opts.run must return a duplex (or readable) stream');
        }
        duplex.on('error', noop); // errors are seen by the loops below
        if (ctl.aborted) throw new Error('batchdb: closed while the job ran');
        const state = { outputDone: false };
        const input = this.#feed(job, duplex, state);
        input.catch((err) => duplex.destroy(err));
        for await (const chunk of duplex) {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          if (buf.length) await job.write(buf);
        }
        state.outputDone = true;
        await input.catch(noop);
        if (ctl.aborted) throw new Error('batchdb: closed while the job ran');
        hash = await job.complete();
      } catch (err) {
        if (ctl.aborted) {
          await job.release().catch(noop);
          return;
        }
        const fail = err instanceof Error ? err : new Error(String(err));
        if (job.closed) {
          // complete itself failed (e.g. the lease was lost): nothing more to record here.
          if (this.listenerCount('error')) this.emit('error', fail);
          return;
        }
        try {
          await job.fail(fail.message);
        } catch (e) {
          if (this.listenerCount('error')) this.emit('error', e);
          return;
        }
        fail.job = key;
        fail.created = created;
        this.emit('fail', fail);
        return;
      }
      this.emit('result', key, hash, created);
    } finally {
      this.#jobs.delete(ctl);
    }
  }

  // Streams the payload into the runner, respecting its backpressure.
  async #feed(job, duplex, state) {
    if (typeof duplex.write !== 'function') return;
    for (;;) {
      if (state.outputDone || !isWritable(duplex)) return;
      const buf = await job.read(READ_CHUNK);
      if (state.outputDone || !isWritable(duplex)) return;
      if (!buf.length) {
        duplex.end();
        return;
      }
      if (!duplex.write(buf)) await drained(duplex);
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
