package batchdb

/*
// By default the library comes from an installed batchdb (scripts/install.sh PREFIX), found by
// pkg-config, so that a module outside the checkout needs no flags. Inside the checkout,
// -tags batchdb_dev links the static library that `cargo build --release` just built.
#cgo !batchdb_dev pkg-config: --static batchdb
#cgo batchdb_dev CFLAGS: -I${SRCDIR}/../../include
#cgo batchdb_dev LDFLAGS: ${SRCDIR}/../../target/release/libbatchdb.a -lm -ldl -lpthread
#include <stdlib.h>
#include "batchdb.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Durability says what a returned Add, Push or result survives.
type Durability int

const (
	// DurabilityFull (the default): a returned add, push or result survives power loss.
	DurabilityFull Durability = iota
	// DurabilityNormal: survives a process crash, may be lost on power loss; faster.
	DurabilityNormal
)

// Order is the processing order of pending instances (after priority).
type Order int

const (
	// NewestFirst (the default): the most recently pushed instance runs first.
	NewestFirst Order = iota
	// OldestFirst: first in, first out.
	OldestFirst
)

// Options configure Open. The zero value (or a nil *Options) means the defaults.
type Options struct {
	// ChunkSize is the bytes per stored chunk, 1024 to 16 MiB; 0 means 256 KiB.
	ChunkSize int
	// Durability defaults to DurabilityFull.
	Durability Durability
	// Lease is how long a claimed instance is held without renewal (the library renews it
	// while the job is held), 50ms to 24h; 0 means 30s.
	Lease time.Duration
	// MaxAttempts bounds how often an instance is started, 1 to 1000; 0 means 3.
	MaxAttempts int
	// RetryErrors re-queues an instance whose runner failed, with exponential backoff,
	// while attempts remain. By default a runner failure is final.
	RetryErrors bool
	// Order defaults to NewestFirst.
	Order Order
}

// PushOptions set the priority, delay, queue, uniqueness, memoization and upstreams of a
// pushed instance. The zero value means priority 0, no delay, the queue "default", always a
// new instance and no upstream.
type PushOptions struct {
	// Priority: higher runs first. Default 0.
	Priority int
	// Delay: the instance is not claimed before its created time plus Delay.
	Delay time.Duration
	// Queue names the queue: 1 to 64 characters of [A-Za-z0-9_.-]; "" is "default".
	Queue string
	// Unique: when an instance of the job is already pending, waiting or running in the
	// queue, nothing is queued and that instance's created time is returned.
	Unique bool
	// Memo: when the job already has a result, nothing is queued and that result is reused
	// (Submit and SubmitAdd say so in Pushed.Cached; the created time returned is the newest
	// result's). Otherwise as Unique: a live instance of the job in the queue is joined.
	Memo bool
	// After names upstream instances: the new instance waits, unclaimed, until each has a
	// result (its PendingRow.After lists them meanwhile), and the runner reads their outputs
	// through Job.After. Each must exist: an unknown one is ErrNotFound and nothing is queued;
	// a malformed key is ErrInvalid. When one ends as a fail row, or is cancelled, the new
	// instance becomes a fail row too ("upstream K C failed" / "upstream K C cancelled"). An
	// upstream that is a fail row already does not make the push fail: it succeeds, and the
	// new instance is a fail row at once.
	After []Instance
}

// Instance names an instance of a job: its key and created time. It marshals to JSON as the
// contract's pair [K, C].
type Instance struct {
	Key     string
	Created int64
}

// MarshalJSON encodes the instance as [K, C].
func (i Instance) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{i.Key, i.Created})
}

// UnmarshalJSON decodes [K, C]: exactly a string and an integer.
func (i *Instance) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return nil
	}
	var pair []json.RawMessage
	if err := json.Unmarshal(b, &pair); err != nil {
		return fmt.Errorf("batchdb: instance: %w", err)
	}
	if len(pair) != 2 || isNull(pair[0]) || isNull(pair[1]) {
		return fmt.Errorf("batchdb: instance must be [key, created], got %s", b)
	}
	var in Instance
	if err := json.Unmarshal(pair[0], &in.Key); err != nil {
		return fmt.Errorf("batchdb: instance key: %w", err)
	}
	if err := json.Unmarshal(pair[1], &in.Created); err != nil {
		return fmt.Errorf("batchdb: instance created: %w", err)
	}
	*i = in
	return nil
}

// Pushed is what Submit and SubmitAdd did.
type Pushed struct {
	// Created is the instance's created time: the new one's, or that of the live instance a
	// Unique or Memo push joined, or, when Cached is set, that of the newest result reused.
	Created int64
	// Cached is set when a Memo push reused a result: the output's hash (of the job's newest
	// result), readable with Get. "" when an instance was queued or joined.
	Cached string
}

// DB is an open batchdb database. It is safe for concurrent use by many goroutines.
type DB struct {
	s *dbState
}

// dbState is what a DB's cleanup closes: it must not point back to the DB.
type dbState struct {
	mu       sync.Mutex
	idle     sync.Cond // signalled when refs drops to 0
	p        *C.batchdb
	refs     int // calls in flight that use p
	closed   bool
	children map[child]struct{}
	stopGen  atomic.Uint64 // counts batchdb_stop calls made through this handle
	origin   string        // where it was opened, for the leak check
}

// child is a handle opened from a DB (reader, cursor, claimed job) that Close releases.
type child interface{ release() }

// copyBufSize is the size of the buffer that streams a payload into the library; a payload
// is never held whole.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// Open opens the database at path, creating it when the file is missing or empty. opts may
// be nil for the defaults. The DB must be closed with Close.
func Open(path string, opts *Options) (*DB, error) {
	var o C.batchdb_options
	if opts != nil {
		if err := opts.toC(&o); err != nil {
			return nil, err
		}
	}
	cpath, err := cString("Open", path)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cpath))
	var e C.batchdb_error
	var p *C.batchdb
	if rc := C.batchdb_open(cpath, &o, &p, &e); rc != C.BATCHDB_OK {
		return nil, errorOf("Open", rc, &e)
	}
	s := &dbState{p: p, children: make(map[child]struct{}), origin: origin()}
	s.idle.L = &s.mu
	db := &DB{s: s}
	// A safety net only: a DB that is dropped without Close is closed by the GC.
	runtime.AddCleanup(db, func(s *dbState) {
		if !s.isClosed() {
			leaked("DB", s.origin)
		}
		s.close()
	}, s)
	return db, nil
}

func (o *Options) toC(c *C.batchdb_options) error {
	const op = "Open"
	if o.ChunkSize < 0 || o.ChunkSize > math.MaxUint32 {
		return invalidError(op, fmt.Sprintf("chunk size %d is out of range", o.ChunkSize))
	}
	if o.MaxAttempts < 0 || o.MaxAttempts > math.MaxUint32 {
		return invalidError(op, fmt.Sprintf("max attempts %d is out of range", o.MaxAttempts))
	}
	lease := o.Lease.Milliseconds()
	if o.Lease > 0 && lease == 0 {
		lease = 1 // below the minimum: let the library reject it rather than take the default
	}
	if o.Lease < 0 || lease > math.MaxUint32 {
		return invalidError(op, fmt.Sprintf("lease %v is out of range", o.Lease))
	}
	c.chunk_size = C.uint32_t(o.ChunkSize)
	c.durability = C.int32_t(o.Durability)
	c.lease_ms = C.uint32_t(lease)
	c.max_attempts = C.uint32_t(o.MaxAttempts)
	if o.RetryErrors {
		c.retry_errors = 1
	}
	c.order = C.int32_t(o.Order)
	if o.Durability < 0 || o.Durability > DurabilityNormal {
		return invalidError(op, fmt.Sprintf("durability %d is out of range", o.Durability))
	}
	if o.Order < 0 || o.Order > OldestFirst {
		return invalidError(op, fmt.Sprintf("order %d is out of range", o.Order))
	}
	return nil
}

// toC converts the options; the queue name is copied to C memory, which the caller frees
// with freePushOptions once the call that reads it has returned.
func (o PushOptions) toC(op string) (C.batchdb_push_options, error) {
	if o.Priority < math.MinInt32 || o.Priority > math.MaxInt32 {
		return C.batchdb_push_options{}, invalidError(op, fmt.Sprintf("priority %d is out of range", o.Priority))
	}
	if o.Delay < 0 {
		return C.batchdb_push_options{}, invalidError(op, fmt.Sprintf("delay %v is negative", o.Delay))
	}
	delay := o.Delay.Milliseconds()
	if o.Delay > 0 && delay == 0 {
		delay = 1 // round a sub-millisecond delay up rather than drop it
	}
	for i, up := range o.After {
		// C reads the key up to its NUL within 65 bytes: a longer key must not be cut to a
		// valid one.
		if len(up.Key) > 64 {
			return C.batchdb_push_options{}, invalidError(op, fmt.Sprintf("After[%d].Key is %d bytes long, not a 64-character key", i, len(up.Key)))
		}
	}
	c := C.batchdb_push_options{priority: C.int32_t(o.Priority), delay_ms: C.int64_t(delay)}
	if o.Unique {
		c.unique = 1
	}
	if o.Memo {
		c.memo = 1
	}
	if o.Queue != "" {
		q, err := cString(op, o.Queue)
		if err != nil {
			return C.batchdb_push_options{}, err
		}
		c.queue = q
	}
	// The upstreams and the cached_out buffer live in C memory: the options struct is passed
	// to C by pointer and must hold no Go pointer.
	if len(o.After) > 0 {
		arr := (*C.batchdb_instance)(C.calloc(C.size_t(len(o.After)), C.size_t(unsafe.Sizeof(C.batchdb_instance{}))))
		slots := unsafe.Slice(arr, len(o.After))
		for i, up := range o.After {
			for j := 0; j < len(up.Key); j++ { // calloc'ed: the NUL follows
				slots[i].key[j] = C.char(up.Key[j])
			}
			slots[i].created = C.int64_t(up.Created)
		}
		c.after = arr
		c.after_len = C.size_t(len(o.After))
	}
	c.cached_out = (*C.char)(C.calloc(65, 1))
	return c, nil
}

// cached reads the options' cached_out after a call: the reused result's hash, or "".
func cached(c *C.batchdb_push_options) string {
	if c == nil || c.cached_out == nil {
		return ""
	}
	return C.GoString(c.cached_out)
}

func freePushOptions(c *C.batchdb_push_options) {
	if c == nil {
		return
	}
	if c.queue != nil {
		C.free(unsafe.Pointer(c.queue))
		c.queue = nil
	}
	if c.after != nil {
		C.free(unsafe.Pointer(c.after))
		c.after = nil
		c.after_len = 0
	}
	if c.cached_out != nil {
		C.free(unsafe.Pointer(c.cached_out))
		c.cached_out = nil
	}
}

// acquire returns the C handle for one call and counts the call as in flight; every
// successful acquire is paired with release.
func (db *DB) acquire(op string) (*C.batchdb, error) {
	s := db.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, closedError(op, "database")
	}
	s.refs++
	return s.p, nil
}

// release ends a call begun by acquire. As a method on *DB it also keeps the DB reachable
// (so its cleanup cannot start) until the call is over.
func (db *DB) release() {
	s := db.s
	s.mu.Lock()
	s.refs--
	if s.refs == 0 {
		s.idle.Broadcast()
	}
	s.mu.Unlock()
}

// register records a child so that Close releases it. It is called with a reference held,
// so the DB cannot be closing.
func (db *DB) register(c child) {
	db.s.mu.Lock()
	db.s.children[c] = struct{}{}
	db.s.mu.Unlock()
}

func (s *dbState) unregister(c child) {
	s.mu.Lock()
	delete(s.children, c)
	s.mu.Unlock()
}

// stop makes every batchdb_run on the handle return once its workers finish their jobs.
// The generation lets a Run tell a stop meant for another Run from the end of its own.
func (s *dbState) stop(p *C.batchdb) {
	s.stopGen.Add(1)
	C.batchdb_stop(p)
}

func (s *dbState) close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	p := s.p
	s.stop(p) // running Runs return once their current jobs are done
	for s.refs > 0 {
		s.idle.Wait()
	}
	children := make([]child, 0, len(s.children))
	for c := range s.children {
		children = append(children, c)
	}
	s.mu.Unlock()
	for _, c := range children {
		c.release()
	}
	s.mu.Lock()
	s.p = nil
	s.mu.Unlock()
	C.batchdb_close(p)
	return nil
}

// Close stops any Run on the DB (each returns once its workers have finished the jobs they
// hold), waits for the calls in flight to return, releases the readers, cursors and
// claimed jobs still open (a claimed job goes back to pending), and closes the file.
// Calls made after Close fail with an error matching ErrClosed. A second Close does nothing
// and returns nil. Close must not be called from inside a Run callback.
func (db *DB) Close() error {
	return db.s.close()
}

// Create stores the payload read from r until io.EOF and registers it as a job; it returns
// the job's key, the payload's SHA-256 in lowercase hex. The payload is streamed in chunks,
// never held whole. The same payload always gives the same key and one job.
func (db *DB) Create(r io.Reader) (key string, err error) {
	key, _, err = db.write("Create", r, nil, false)
	return key, err
}

// Add is Create and Push in one transaction: it returns the job's key and the new
// instance's created time (epoch milliseconds).
func (db *DB) Add(r io.Reader) (key string, created int64, err error) {
	key, p, err := db.write("Add", r, nil, true)
	return key, p.Created, err
}

// AddWith is Add with push options (priority, delay, queue, Unique, Memo, After), in one
// transaction. With Unique or Memo, when an instance of the job is already live in the queue,
// its created time is returned and nothing is queued; with Memo, when the job has a result,
// the newest result's created time (SubmitAdd tells that case apart).
func (db *DB) AddWith(r io.Reader, opts PushOptions) (key string, created int64, err error) {
	key, p, err := db.submitAdd("AddWith", r, opts)
	return key, p.Created, err
}

// SubmitAdd is AddWith that also says what the push did: with Memo, Pushed.Cached holds the
// output hash of the result that was reused instead of queueing an instance.
func (db *DB) SubmitAdd(r io.Reader, opts PushOptions) (key string, pushed Pushed, err error) {
	return db.submitAdd("SubmitAdd", r, opts)
}

func (db *DB) submitAdd(op string, r io.Reader, opts PushOptions) (string, Pushed, error) {
	co, err := opts.toC(op)
	if err != nil {
		return "", Pushed{}, err
	}
	defer freePushOptions(&co)
	return db.write(op, r, &co, true)
}

func (db *DB) write(op string, r io.Reader, opts *C.batchdb_push_options, add bool) (string, Pushed, error) {
	if r == nil {
		return "", Pushed{}, invalidError(op, "nil reader")
	}
	p, err := db.acquire(op)
	if err != nil {
		return "", Pushed{}, err
	}
	defer db.release()
	var e C.batchdb_error
	var w *C.batchdb_writer
	if rc := C.batchdb_writer_open(p, &w, &e); rc != C.BATCHDB_OK {
		return "", Pushed{}, errorOf(op, rc, &e)
	}
	consumed := false
	defer func() {
		if !consumed { // a read error, a write error or a panic in r
			C.batchdb_writer_abort(w)
		}
	}()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if rc := C.batchdb_writer_write(w, (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.size_t(n), &e); rc != C.BATCHDB_OK {
				return "", Pushed{}, errorOf(op, rc, &e)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return "", Pushed{}, fmt.Errorf("batchdb: %s: reading the payload: %w", op, rerr)
		}
	}
	consumed = true
	var key [65]C.char
	var created C.int64_t
	var rc C.int32_t
	switch {
	case !add:
		rc = C.batchdb_writer_create(w, &key[0], &e)
	case opts == nil:
		rc = C.batchdb_writer_add(w, &key[0], &created, &e)
	default:
		rc = C.batchdb_writer_add_with(w, opts, &key[0], &created, &e)
	}
	if rc != C.BATCHDB_OK {
		return "", Pushed{}, errorOf(op, rc, &e)
	}
	return C.GoString(&key[0]), Pushed{Created: int64(created), Cached: cached(opts)}, nil
}

// Push queues a new instance of the job key and returns its created time (epoch
// milliseconds, unique in the file). An unknown key is ErrNotFound, a malformed one
// ErrInvalid.
func (db *DB) Push(key string) (created int64, err error) {
	p, err := db.push("Push", key, nil)
	return p.Created, err
}

// PushWith is Push with push options (priority, delay, queue, Unique, Memo, After). With
// Unique or Memo, when an instance of the job is already pending, waiting or running in the
// queue, nothing is queued and that instance's created time is returned; with Memo, when the
// job has a result, the newest result's created time (Submit tells that case apart). An
// unknown upstream in After is ErrNotFound.
func (db *DB) PushWith(key string, opts PushOptions) (created int64, err error) {
	p, err := db.submit("PushWith", key, opts)
	return p.Created, err
}

// Submit is PushWith that also says what the push did: with Memo, Pushed.Cached holds the
// output hash of the result that was reused instead of queueing an instance.
//
//	p, err := db.Submit(key, batchdb.PushOptions{Memo: true})
//	if err == nil && p.Cached != "" {
//		out, err := db.Get(p.Cached) // computed before: no instance was queued
//	}
func (db *DB) Submit(key string, opts PushOptions) (Pushed, error) {
	return db.submit("Submit", key, opts)
}

func (db *DB) submit(op, key string, opts PushOptions) (Pushed, error) {
	co, err := opts.toC(op)
	if err != nil {
		return Pushed{}, err
	}
	defer freePushOptions(&co)
	return db.push(op, key, &co)
}

func (db *DB) push(op, key string, opts *C.batchdb_push_options) (Pushed, error) {
	p, err := db.acquire(op)
	if err != nil {
		return Pushed{}, err
	}
	defer db.release()
	ckey, err := cString(op, key)
	if err != nil {
		return Pushed{}, err
	}
	defer C.free(unsafe.Pointer(ckey))
	var e C.batchdb_error
	var created C.int64_t
	if rc := C.batchdb_push_with(p, ckey, opts, &created, &e); rc != C.BATCHDB_OK {
		return Pushed{}, errorOf(op, rc, &e)
	}
	return Pushed{Created: int64(created), Cached: cached(opts)}, nil
}

// Retry re-queues the failed instance (key, created) as a new instance, removes its fail
// row, and returns the new instance's created time. No such fail row is ErrNotFound.
func (db *DB) Retry(key string, created int64) (int64, error) {
	p, err := db.acquire("Retry")
	if err != nil {
		return 0, err
	}
	defer db.release()
	ckey, err := cString("Retry", key)
	if err != nil {
		return 0, err
	}
	defer C.free(unsafe.Pointer(ckey))
	var e C.batchdb_error
	var out C.int64_t
	if rc := C.batchdb_retry(p, ckey, C.int64_t(created), &out, &e); rc != C.BATCHDB_OK {
		return 0, errorOf("Retry", rc, &e)
	}
	return int64(out), nil
}

// Cancel removes the pending instance (key, created). An unknown instance is ErrNotFound; a
// running one is ErrBusy. The job and its payload stay.
func (db *DB) Cancel(key string, created int64) error {
	p, err := db.acquire("Cancel")
	if err != nil {
		return err
	}
	defer db.release()
	ckey, err := cString("Cancel", key)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(ckey))
	var e C.batchdb_error
	if rc := C.batchdb_cancel(p, ckey, C.int64_t(created), &e); rc != C.BATCHDB_OK {
		return errorOf("Cancel", rc, &e)
	}
	return nil
}

// Prune removes the result and fail rows that ended before olderThan and returns how many it
// removed. A following GC reclaims their blobs.
func (db *DB) Prune(olderThan time.Time) (int, error) {
	p, err := db.acquire("Prune")
	if err != nil {
		return 0, err
	}
	defer db.release()
	var e C.batchdb_error
	var n C.uint64_t
	if rc := C.batchdb_prune(p, C.int64_t(olderThan.UnixMilli()), &n, &e); rc != C.BATCHDB_OK {
		return 0, errorOf("Prune", rc, &e)
	}
	return int(n), nil
}

// GC removes the blobs that no job or result references, and leftovers of interrupted
// writes, and returns how many blobs it removed.
func (db *DB) GC() (int, error) {
	p, err := db.acquire("GC")
	if err != nil {
		return 0, err
	}
	defer db.release()
	var e C.batchdb_error
	var n C.uint64_t
	if rc := C.batchdb_gc(p, &n, &e); rc != C.BATCHDB_OK {
		return 0, errorOf("GC", rc, &e)
	}
	return int(n), nil
}

// cString copies s to C memory, which the caller frees. A NUL byte inside s would silently
// cut it short in C, so it is rejected.
func cString(op, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, invalidError(op, fmt.Sprintf("%q holds a NUL byte", s))
	}
	return C.CString(s), nil
}

// Version returns the version of the linked library, e.g. "0.1.0".
func Version() string {
	return C.GoString(C.batchdb_version())
}
