/// <reference types="node" />
import { EventEmitter } from 'node:events';
import { Duplex, Readable, Writable } from 'node:stream';

declare namespace batchdb {
  /** A job's key or a result's id: the lowercase hex SHA-256 of the bytes (64 characters). */
  type Hash = string;

  /**
   * Any stream the original batchdb took: an event emitter with pipe(). Classic (streams1)
   * ones such as duplexer@0.1 or through@2, streams2 ones (duplexer2, through2@0.6), Node's own.
   */
  interface StreamLike {
    on(event: string | symbol, listener: (...args: any[]) => void): unknown;
    pipe(...args: any[]): unknown;
  }

  /** An instance: [key, created], as push options' `after` and the JSON rows write it. */
  type Instance = [Hash, number];

  /** An upstream instance a job waited for, with its result: the job's input. */
  interface Upstream {
    readonly key: Hash;
    readonly created: number;
    /** The upstream result's output, readable with get(hash). */
    readonly hash: Hash;
  }

  /** The runner's third argument: the instance being run. */
  interface RunningJob {
    readonly key: Hash;
    readonly created: number;
    /** The upstream instances it waited for (push option `after`), in that order; [] when none. */
    readonly after: readonly Upstream[];
    /**
     * Reports progress: `done` from 0 to 1 and a short message (default ""). While the instance
     * runs its pending row carries `progress: {done, message}`, and the Compute emits
     * 'progress' (key, created, done, message). Resolves once recorded, or calls `cb`; rejects
     * with BATCHDB_ERR_INVALID for a fraction out of range or a message over 1000 bytes, and
     * BATCHDB_ERR_MISUSE once the instance is finished. The promise may be left unawaited: a
     * refusal is then dropped, never an unhandled rejection.
     */
    progress(done: number, message?: string): Promise<void>;
    progress(done: number, cb: Callback<void>): void;
    progress(done: number, message: string, cb: Callback<void>): void;
  }

  /**
   * Runs one instance: the payload is written into the returned stream (when it is writable),
   * its output is the result; an 'error' on it fails the instance. The third argument, which
   * the original's runners ignore, reports progress.
   */
  type Runner = (key: Hash, created: number, job: RunningJob) => Duplex | Readable | StreamLike;

  interface Options {
    /** The runner used by run(). */
    run?: Runner;
    /** The original's blob folder: accepted and ignored (blobs live in the database file). */
    path?: string;
    /** Jobs run at once by run(), 1 to 256. Default 1. */
    workers?: number;
    /** Processing order. Default 'newest' (most recent first). */
    order?: 'newest' | 'oldest';
    /** Lease of a claimed instance, in ms. Default 30000. */
    lease?: number;
    /** How many times an instance may be started. Default 3. */
    maxAttempts?: number;
    /** Re-queue an instance whose runner failed, with backoff, while attempts remain. */
    retryErrors?: boolean;
    /** 'full' (default): a returned add/push/result survives power loss; 'normal': faster. */
    durability?: 'full' | 'normal';
    /** Bytes per stored chunk, 1024 to 16777216. Default 262144. */
    chunkSize?: number;
    /**
     * Let a waiting run() keep the process alive (a dedicated worker waiting for jobs from other
     * processes). Default false: as in the original, an idle run() lets the process exit.
     */
    keepAlive?: boolean;
    /** The queues run() serves. Default (or []): every queue. */
    queues?: string[];
  }

  interface PushOptions {
    /** Higher runs first. Default 0. */
    priority?: number;
    /** Not claimed before created + delay (ms). Default 0. */
    delay?: number;
    /** The queue: 1 to 64 characters of [A-Za-z0-9_.-]. Default (or ''): 'default'. */
    queue?: string;
    /**
     * When an instance of the job is already pending, waiting or running in the queue, queue
     * nothing and resolve to that instance's created (the push event carries it too).
     */
    unique?: boolean;
    /**
     * Memoized: when the job already has a result, queue nothing and reuse it: push() resolves
     * to the newest result's created, its callback's third argument is {cached: HASH} (the
     * output's hash), submit() resolves to {created, cached}, and add()'s stream gets `cached`.
     * No push event fires then. Otherwise as `unique`: a live instance of the job is joined.
     */
    memo?: boolean;
    /**
     * Upstream instances, [[key, created], ...] (or {key, created} objects): the new instance
     * waits, unclaimed, until each has a result (its pending row shows `after` meanwhile), and
     * its runner gets them as job.after. Each must exist: an unknown one rejects with
     * BATCHDB_ERR_NOT_FOUND and nothing is queued; a malformed key with BATCHDB_ERR_INVALID.
     * When one ends as a fail row (or is cancelled) the new instance becomes a fail row too
     * ('upstream K C failed' / 'upstream K C cancelled'). A push after an upstream that failed
     * already succeeds: the instance is a fail row at once.
     */
    after?: Array<Instance | { key: Hash; created: number }>;
  }

  /** What a push did: submit()'s value. */
  interface Pushed {
    /** The new or joined instance's created; for a memo hit, the newest result's. */
    created: number;
    /** A memo hit: the reused result's output hash (nothing was queued); else null. */
    cached: Hash | null;
  }

  /** The third argument of push()'s callback (the fourth of add()'s). */
  interface PushInfo {
    /** A memo hit: the reused result's output hash; else null. */
    cached: Hash | null;
  }

  /**
   * One line of why(): {job: K} when the blob is a job's payload, then one
   * {result: [K, C], after: [[K2, C2], ...]} per result row whose output it is.
   */
  type LineageLine = { job: Hash } | { result: Instance; after: Instance[] };

  /** schedule()'s options: the queue and priority of the instances it pushes (no delay, unique, memo or after). */
  type ScheduleOptions = Pick<PushOptions, 'queue' | 'priority'>;

  interface RunOptions {
    /**
     * Resolve once nothing is pending, delayed or running, instead of waiting for new work.
     * Ready instances of paused queues, and of queues this run does not serve, do not hold it.
     */
    untilEmpty?: boolean;
    /** Overrides the constructor's keepAlive for this run. */
    keepAlive?: boolean;
    /** Overrides the constructor's queues for this run. */
    queues?: string[];
  }

  interface JobRow {
    key: Hash;
    running: number[];
  }
  interface PendingRow {
    job: Hash;
    created: number;
    running: boolean;
    /** Present only when the push set a priority. */
    priority?: number;
    /** Present only when the push set a delay: epoch ms. */
    run_at?: number;
    /** Present only when the instance is not in the queue 'default'. */
    queue?: string;
    /** Present only while it runs and has reported progress. */
    progress?: { done: number; message: string };
    /** Present only while it waits for upstream instances (push option `after`): those still running. */
    after?: Instance[];
  }
  /** A recurring schedule, as schedule() returns it and schedules() lists it. */
  interface ScheduleRow {
    name: string;
    /** 'every DURATION' or a 5-field cron expression (UTC). */
    spec: string;
    queue: string;
    /** The key of the job each slot pushes an instance of. */
    job: Hash;
    /** The next slot, epoch ms. */
    next_run: number;
  }
  interface ResultRow {
    key: [Hash, number];
    value: { hash: Hash; start: number; end: number; created: number };
  }
  interface FailRow {
    key: [Hash, number];
    /**
     * The original's {message}. start, end (epoch ms) and attempts are non-enumerable: readable
     * by name, unseen by deep equality, Object.keys and JSON.stringify.
     */
    value: { message: string; readonly start: number; readonly end: number; readonly attempts: number };
  }
  interface Rows {
    job: JobRow;
    pending: PendingRow;
    result: ResultRow;
    fail: FailRow;
    schedule: ScheduleRow;
  }
  type ListType = keyof Rows;

  interface RowStream<T> extends Readable {
    [Symbol.asyncIterator](): AsyncIterableIterator<T>;
  }

  /** The writable stream of create(): the bytes written become the job's payload. */
  interface CreateStream extends Writable {
    /** Set once the payload is stored. */
    readonly key: Hash | undefined;
    /** Resolves to the key once the payload is stored. */
    readonly promise: Promise<Hash>;
  }

  /** The writable stream of add(): the bytes become a job, and one instance is queued. */
  interface AddStream extends Writable {
    readonly key: Hash | undefined;
    readonly created: number | undefined;
    /** Set once stored: the reused result's hash of a memo hit, else null. */
    readonly cached: Hash | null;
    readonly promise: Promise<{ key: Hash; created: number; cached: Hash | null }>;
  }

  /** The error of a fail event. */
  interface FailError extends Error {
    job: Hash;
    created: number;
  }

  type Callback<T> = (err: Error | null, value?: T) => void;

  /** What copyTo() did. */
  interface CopyReport {
    /** Blobs the target did not hold, sent; and their bytes. */
    blobsSent: number;
    bytesSent: number;
    /** Rows applied (the target keeps the ones it had). */
    rows: number;
  }

  class BatchdbError extends Error {
    /** 'BATCHDB_ERR_INVALID', 'BATCHDB_ERR_NOT_FOUND', ... */
    code: string;
    /** The C status code (negative). */
    errno: number;
    op?: string;
  }

  class Compute extends EventEmitter {
    constructor(path: string, opts?: Options);
    /** Resolves once the file is open; rejects with the open error. */
    readonly ready: Promise<this>;

    create(cb?: (err: Error | null, key?: Hash) => void): CreateStream;
    add(cb?: (err: Error | null, key?: Hash, created?: number, info?: PushInfo) => void): AddStream;
    add(opts: PushOptions, cb?: (err: Error | null, key?: Hash, created?: number, info?: PushInfo) => void): AddStream;

    /** Resolves to the instance's created (a memo hit: the newest result's; see submit()). */
    push(key: Hash, opts?: PushOptions): Promise<number>;
    push(key: Hash, cb: (err: Error | null, created?: number, info?: PushInfo) => void): void;
    push(key: Hash, opts: PushOptions, cb: (err: Error | null, created?: number, info?: PushInfo) => void): void;

    /** push() that resolves to {created, cached}, telling a memo hit apart. */
    submit(key: Hash, opts?: PushOptions): Promise<Pushed>;
    submit(key: Hash, cb: Callback<Pushed>): void;
    submit(key: Hash, opts: PushOptions, cb: Callback<Pushed>): void;

    /** The lineage of a blob; a hash the database does not hold: BATCHDB_ERR_NOT_FOUND. */
    why(hash: Hash): Promise<LineageLine[]>;
    why(hash: Hash, cb: Callback<LineageLine[]>): void;

    get(hash: Hash): Readable;
    getJob(hash: Hash): Readable;
    getResult(hash: Hash): Readable;

    list<T extends ListType>(type: T): RowStream<Rows[T]>;

    /** Throws a TypeError when the constructor was given no runner (opts.run). */
    run(opts?: RunOptions): Promise<void>;
    run(cb: Callback<void>): void;
    run(opts: RunOptions, cb: Callback<void>): void;

    stop(): Promise<void>;
    stop(cb: Callback<void>): void;

    retry(key: Hash, created: number): Promise<number>;
    retry(key: Hash, created: number, cb: Callback<number>): void;

    cancel(key: Hash, created: number): Promise<void>;
    cancel(key: Hash, created: number, cb: Callback<void>): void;

    /** Removes result and fail rows that ended before the given epoch ms; resolves to how many. */
    prune(olderThanMs: number | Date): Promise<number>;
    prune(olderThanMs: number | Date, cb: Callback<number>): void;

    /** Removes unreferenced blobs; resolves to how many. */
    gc(): Promise<number>;
    gc(cb: Callback<number>): void;

    /** A consistent copy of the whole database, as of one instant, in the new file `dest` (an existing one is refused). */
    backup(dest: string): Promise<void>;
    backup(dest: string, cb: Callback<void>): void;

    /** Copies everything into `target` (another handle: a file or a server); idempotent and resumable. */
    copyTo(target: Compute): Promise<CopyReport>;
    copyTo(target: Compute, cb: Callback<CopyReport>): void;

    /** At most `n` instances of `queue` run at once, across every process; 0 removes the limit. */
    limit(queue: string, n: number): Promise<void>;
    limit(queue: string, n: number, cb: Callback<void>): void;

    /** No process claims the instances of `queue` until resume(); running ones finish. */
    pause(queue: string): Promise<void>;
    pause(queue: string, cb: Callback<void>): void;
    resume(queue: string): Promise<void>;
    resume(queue: string, cb: Callback<void>): void;

    /**
     * Creates or replaces the schedule `name`: each slot of `spec` ('every 30s', or a 5-field
     * cron expression in UTC) pushes one instance of `payload`, whatever the number of processes.
     */
    schedule(name: string, spec: string, payload: Buffer | Uint8Array | string, opts?: ScheduleOptions): Promise<ScheduleRow>;
    schedule(name: string, spec: string, payload: Buffer | Uint8Array | string, cb: Callback<ScheduleRow>): void;
    schedule(name: string, spec: string, payload: Buffer | Uint8Array | string, opts: ScheduleOptions, cb: Callback<ScheduleRow>): void;

    /** The schedules, by name. */
    schedules(): Promise<ScheduleRow[]>;
    schedules(cb: Callback<ScheduleRow[]>): void;

    /** Removes a schedule (the instances it pushed stay); an unknown name is BATCHDB_ERR_NOT_FOUND. */
    unschedule(name: string): Promise<void>;
    unschedule(name: string, cb: Callback<void>): void;

    close(): Promise<void>;
    close(cb: Callback<void>): void;

    on(event: 'create', listener: (key: Hash) => void): this;
    on(event: 'push', listener: (key: Hash, created: number) => void): this;
    on(event: 'start', listener: (key: Hash, created: number) => void): this;
    on(event: 'result', listener: (key: Hash, hash: Hash, created: number) => void): this;
    on(event: 'fail', listener: (err: FailError) => void): this;
    on(event: 'progress', listener: (key: Hash, created: number, done: number, message: string) => void): this;
    on(event: 'error', listener: (err: Error) => void): this;
    /** A run lost its connection to the server; it waits and tries again. Once per outage. */
    on(event: 'disconnect', listener: (err: Error) => void): this;
    /** The run reached the server again after a 'disconnect'; `outageMs` is how long it was away. */
    on(event: 'reconnect', listener: (outageMs: number) => void): this;
    on(event: 'close', listener: () => void): this;
    on(event: string | symbol, listener: (...args: any[]) => void): this;
    once(event: 'create', listener: (key: Hash) => void): this;
    once(event: 'push', listener: (key: Hash, created: number) => void): this;
    once(event: 'start', listener: (key: Hash, created: number) => void): this;
    once(event: 'result', listener: (key: Hash, hash: Hash, created: number) => void): this;
    once(event: 'fail', listener: (err: FailError) => void): this;
    once(event: 'progress', listener: (key: Hash, created: number, done: number, message: string) => void): this;
    once(event: string | symbol, listener: (...args: any[]) => void): this;
  }

  /** Opens the file; resolves to the instance or rejects with the open error. */
  function open(path: string, opts?: Options): Promise<Compute>;
  function version(): string;
  const codes: Record<string, number>;
}

declare function batchdb(path: string, opts?: batchdb.Options): batchdb.Compute;

export = batchdb;
