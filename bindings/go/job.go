package batchdb

/*
#include <stdlib.h>
#include "batchdb.h"
*/
import "C"

import (
	"io"
	"runtime"
	"sync"
	"unsafe"
)

// Job is a claimed instance. It reads as the job's payload (io.Reader) and writes as the
// instance's output (io.Writer). A job from Claim is owned: finish it with Complete or Fail.
// A job passed to a Run callback is lent: it is valid only during the callback, and Run
// completes or fails it from the callback's return value.
//
// A Job must be used by one goroutine at a time.
type Job struct {
	s  *jobState
	db *DB // keeps the DB alive while an owned job is held
}

type jobState struct {
	mu       sync.Mutex
	p        *C.batchdb_job // nil once finished, released, or (lent) once the callback returned
	key      string
	created  int64
	after    []Upstream
	lent     bool
	db       *dbState // owned jobs only: where the job is registered
	finished string   // why p is nil, for the error message
	origin   string   // where it was claimed, for the leak check
}

func newJobState(p *C.batchdb_job, lent bool) *jobState {
	return &jobState{
		p:       p,
		key:     C.GoString(C.batchdb_job_key(p)),
		created: int64(C.batchdb_job_created(p)),
		after:   upstreams(p),
		lent:    lent,
	}
}

// Upstream is an instance a job waited for (its push's PushOptions.After), with the result
// it produced: the job's input. It marshals to {"key", "created", "hash"}.
type Upstream struct {
	Key     string `json:"key"`
	Created int64  `json:"created"`
	// Hash is the upstream result's output, readable with Get.
	Hash string `json:"hash"`
}

// upstreams reads a claimed job's upstreams (held in the handle: no file access).
func upstreams(p *C.batchdb_job) []Upstream {
	n := int(C.batchdb_job_after_count(p))
	if n == 0 {
		return nil
	}
	out := make([]Upstream, 0, n)
	for i := range n {
		var key, hash [65]C.char
		var created C.int64_t
		var e C.batchdb_error
		if C.batchdb_job_after(p, C.size_t(i), &key[0], &created, &hash[0], &e) != C.BATCHDB_OK {
			break // only an index out of range can fail, and i is below the count
		}
		out = append(out, Upstream{Key: C.GoString(&key[0]), Created: int64(created), Hash: C.GoString(&hash[0])})
	}
	return out
}

// release gives an owned job that was never finished back to the queue (a fail with a NULL
// message releases it to pending).
func (s *jobState) release() {
	s.mu.Lock()
	p := s.p
	s.p = nil
	if s.finished == "" {
		s.finished = "job was released when its DB was closed"
	}
	s.mu.Unlock()
	if p != nil && !s.lent {
		C.batchdb_job_fail(p, nil, nil)
		s.db.unregister(s)
	}
}

// Claim takes the next ready instance (highest priority first, then in the processing
// order) and holds it with a lease that the library renews while the job is held. It
// returns nil, nil when nothing is ready. The caller must finish the job with Complete or
// Fail; a job that is dropped is released back to pending by the garbage collector, and
// Close releases the jobs still held.
func (db *DB) Claim() (*Job, error) {
	return db.claim("Claim", nil)
}

// ClaimFrom is Claim from the named queues only; with no names it serves every queue, as
// Claim does. Paused queues and queues at their limit are skipped. A malformed queue name is
// ErrInvalid.
func (db *DB) ClaimFrom(queues ...string) (*Job, error) {
	return db.claim("ClaimFrom", queues)
}

func (db *DB) claim(op string, queues []string) (*Job, error) {
	p, err := db.acquire(op)
	if err != nil {
		return nil, err
	}
	defer db.release()
	names, n, err := cStrings(op, queues)
	if err != nil {
		return nil, err
	}
	defer freeCStrings(names, n)
	var e C.batchdb_error
	var j *C.batchdb_job
	switch rc := C.batchdb_claim_from(p, names, n, &j, &e); rc {
	case C.BATCHDB_OK:
	case C.BATCHDB_DONE:
		return nil, nil
	default:
		return nil, errorOf(op, rc, &e)
	}
	s := newJobState(j, false)
	s.db = db.s
	s.origin = origin()
	db.register(s)
	job := &Job{s: s, db: db}
	runtime.AddCleanup(job, func(s *jobState) {
		s.mu.Lock()
		held := s.p != nil
		s.mu.Unlock()
		if held {
			leaked("claimed job", s.origin)
		}
		s.release()
	}, s)
	return job, nil
}

// Key returns the job's key (the payload's hash).
func (j *Job) Key() string { return j.s.key }

// Created returns the instance's created time, epoch milliseconds.
func (j *Job) Created() int64 { return j.s.created }

// After returns the upstream instances this one waited for (PushOptions.After), in the push's
// order, each with its result's hash: the runner's inputs, readable with Get. Empty for an
// instance pushed without After. The slice is the caller's.
func (j *Job) After() []Upstream {
	if len(j.s.after) == 0 {
		return nil
	}
	return append([]Upstream(nil), j.s.after...)
}

// Read reads the job's payload; io.EOF at its end, once it has been verified against the
// key (ErrCorrupt if it does not match).
func (j *Job) Read(p []byte) (int, error) {
	s := j.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return 0, s.gone("Read")
	}
	if len(p) == 0 {
		return 0, nil
	}
	var e C.batchdb_error
	var n C.size_t
	if rc := C.batchdb_job_read(s.p, (*C.uint8_t)(unsafe.Pointer(&p[0])), C.size_t(len(p)), &n, &e); rc != C.BATCHDB_OK {
		return 0, errorOf("Read", rc, &e)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return int(n), nil
}

// Progress reports how far the job is: done from 0 to 1 and a short message (at most 1000
// bytes of UTF-8). While the instance runs, its pending row carries them (PendingRow.Progress)
// and the library's progress event fires. A fraction out of range, NaN or a message too long,
// not UTF-8 or holding a NUL byte is ErrInvalid and changes nothing; ErrStale means this worker
// lost its lease. Works on owned jobs and on jobs lent to a Run callback.
func (j *Job) Progress(done float64, message string) error {
	cmsg, err := cString("Progress", message)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cmsg))
	s := j.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return s.gone("Progress")
	}
	var e C.batchdb_error
	if rc := C.batchdb_job_progress(s.p, C.double(done), cmsg, &e); rc != C.BATCHDB_OK {
		return errorOf("Progress", rc, &e)
	}
	return nil
}

// Write appends p to the instance's output, which becomes its result on completion.
func (j *Job) Write(p []byte) (int, error) {
	s := j.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return 0, s.gone("Write")
	}
	if len(p) == 0 {
		return 0, nil
	}
	var e C.batchdb_error
	if rc := C.batchdb_job_write(s.p, (*C.uint8_t)(unsafe.Pointer(&p[0])), C.size_t(len(p)), &e); rc != C.BATCHDB_OK {
		return 0, errorOf("Write", rc, &e)
	}
	return len(p), nil
}

// Complete records the output written so far as the instance's result, removes the
// instance from the queue, and returns the output's hash. ErrStale means this worker lost
// its lease and nothing changed. On a job lent to a Run callback it returns ErrMisuse and
// does nothing: return nil from the callback instead.
func (j *Job) Complete() (hash string, err error) {
	s, err := j.take("Complete")
	if err != nil {
		return "", err
	}
	defer s.db.unregister(s)
	var e C.batchdb_error
	var h [65]C.char
	rc := C.batchdb_job_complete(s.p, &h[0], &e) // consumes the job, even on failure
	s.p = nil
	s.mu.Unlock()
	if rc != C.BATCHDB_OK {
		return "", errorOf("Complete", rc, &e)
	}
	return C.GoString(&h[0]), nil
}

// Fail fails the instance with message: a fail row, or with Options.RetryErrors and
// attempts left, back to pending after a backoff. ErrStale means this worker lost its lease.
// On a job lent to a Run callback it returns ErrMisuse and does nothing: return an error
// from the callback instead. A message holding a NUL byte (which C would cut it at) is
// ErrInvalid and changes nothing; invalid UTF-8 in it is replaced.
func (j *Job) Fail(message string) error {
	// Checked before take: a refused message leaves the job claimed and usable.
	cmsg, err := cString("Fail", message)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cmsg))
	s, err := j.take("Fail")
	if err != nil {
		return err
	}
	defer s.db.unregister(s)
	var e C.batchdb_error
	rc := C.batchdb_job_fail(s.p, cmsg, &e) // consumes the job, even on failure
	s.p = nil
	s.mu.Unlock()
	if rc != C.BATCHDB_OK {
		return errorOf("Fail", rc, &e)
	}
	return nil
}

// take locks an owned, unfinished job for Complete or Fail; the caller unlocks.
func (j *Job) take(op string) (*jobState, error) {
	s := j.s
	if s.lent {
		return nil, &Error{Code: CodeMisuse, Op: op, Msg: "the job is lent to a Run callback: return nil to complete it or an error to fail it"}
	}
	s.mu.Lock()
	if s.p == nil {
		err := s.gone(op)
		s.mu.Unlock()
		return nil, err
	}
	s.finished = "job is already finished"
	return s, nil
}

func (s *jobState) gone(op string) error {
	if s.finished == "job was released when its DB was closed" {
		return closedError(op, "database")
	}
	return &Error{Code: CodeMisuse, Op: op, Msg: s.finished}
}
