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

  /**
   * Runs one instance: the payload is written into the returned stream (when it is writable),
   * its output is the result; an 'error' on it fails the instance.
   */
  type Runner = (key: Hash, created: number) => Duplex | Readable | StreamLike;

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
  }

  interface PushOptions {
    /** Higher runs first. Default 0. */
    priority?: number;
    /** Not claimed before created + delay (ms). Default 0. */
    delay?: number;
  }

  interface RunOptions {
    /** Resolve once nothing is pending, delayed or running, instead of waiting for new work. */
    untilEmpty?: boolean;
    /** Overrides the constructor's keepAlive for this run. */
    keepAlive?: boolean;
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
    readonly promise: Promise<{ key: Hash; created: number }>;
  }

  /** The error of a fail event. */
  interface FailError extends Error {
    job: Hash;
    created: number;
  }

  type Callback<T> = (err: Error | null, value?: T) => void;

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
    add(cb?: (err: Error | null, key?: Hash, created?: number) => void): AddStream;
    add(opts: PushOptions, cb?: (err: Error | null, key?: Hash, created?: number) => void): AddStream;

    push(key: Hash, opts?: PushOptions): Promise<number>;
    push(key: Hash, cb: Callback<number>): void;
    push(key: Hash, opts: PushOptions, cb: Callback<number>): void;

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

    close(): Promise<void>;
    close(cb: Callback<void>): void;

    on(event: 'create', listener: (key: Hash) => void): this;
    on(event: 'push', listener: (key: Hash, created: number) => void): this;
    on(event: 'start', listener: (key: Hash, created: number) => void): this;
    on(event: 'result', listener: (key: Hash, hash: Hash, created: number) => void): this;
    on(event: 'fail', listener: (err: FailError) => void): this;
    on(event: 'error', listener: (err: Error) => void): this;
    on(event: 'close', listener: () => void): this;
    on(event: string | symbol, listener: (...args: any[]) => void): this;
    once(event: 'create', listener: (key: Hash) => void): this;
    once(event: 'push', listener: (key: Hash, created: number) => void): this;
    once(event: 'start', listener: (key: Hash, created: number) => void): this;
    once(event: 'result', listener: (key: Hash, hash: Hash, created: number) => void): this;
    once(event: 'fail', listener: (err: FailError) => void): this;
    once(event: string | symbol, listener: (...args: any[]) => void): this;
  }

  /** Opens the file; resolves to the instance or rejects with the open error. */
  function open(path: string, opts?: Options): Promise<Compute>;
  function version(): string;
  const codes: Record<string, number>;
}

declare function batchdb(path: string, opts?: batchdb.Options): batchdb.Compute;

export = batchdb;
