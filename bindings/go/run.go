package batchdb

/*
#include <stdint.h>
#include "batchdb.h"

// The Go trampoline, exported from callback.go.
extern int32_t batchdbGoRunJob(uintptr_t handle, batchdb_job *job, batchdb_error *fail_out);

// batchdb_go_run_job adapts the trampoline to batchdb_run_fn, carrying the cgo.Handle as
// the userdata pointer (an integer on the Go side, so no Go pointer crosses into C).
static int32_t batchdb_go_run_job(void *userdata, batchdb_job *job, batchdb_error *fail_out) {
	return batchdbGoRunJob((uintptr_t)userdata, job, fail_out);
}

static int32_t batchdb_go_run(batchdb *db, const batchdb_run_options *opts, uintptr_t handle, batchdb_error *err) {
	return batchdb_run(db, opts, batchdb_go_run_job, (void *)handle, err);
}
*/
import "C"

import (
	"context"
	"fmt"
	"runtime/cgo"
	"sync"
	"time"
)

// RunOptions configure Run.
type RunOptions struct {
	// Workers is the number of worker threads, at most 1024; 0 means 1.
	Workers int
	// UntilEmpty makes Run return once nothing is pending, waiting or running in the served
	// queues (instances of paused queues do not hold it). Without it, Run waits for new work
	// (also from other processes, and schedules falling due) until ctx is cancelled.
	UntilEmpty bool
	// Queues are the queues to serve; none means every queue.
	Queues []string
}

// runState is what the trampoline finds behind the cgo.Handle.
type runState struct {
	ctx context.Context
	fn  func(ctx context.Context, j *Job) error
}

// Run processes the queue on opts.Workers threads: each claims an instance and calls fn with
// it, concurrently. When fn returns nil the instance completes with the output fn wrote;
// when it returns an error, the instance fails with err.Error() as its message (at most 511
// bytes); when it panics, the panic is recovered and the instance fails with the panic's
// text. The loop goes on either way.
//
// The Job passed to fn is lent: it is valid only until fn returns, and its Complete and
// Fail return ErrMisuse. fn receives ctx; an instance whose fn gives up because ctx was
// cancelled fails like any other.
//
// Run returns ctx.Err() once ctx is cancelled and the workers have finished the jobs they
// hold; nil when UntilEmpty is set and the queue is empty; an error matching ErrClosed when
// the DB was closed; or the library's error when the queue itself could not be read or
// written. Cancelling one Run briefly pauses the other Runs on the same DB (the library's
// stop is per handle): they finish their current jobs and go on.
func (db *DB) Run(ctx context.Context, opts RunOptions, fn func(ctx context.Context, j *Job) error) error {
	if fn == nil {
		return invalidError("Run", "nil runner")
	}
	if opts.Workers < 0 || opts.Workers > 1024 {
		return invalidError("Run", fmt.Sprintf("workers %d is out of range (0 to 1024)", opts.Workers))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := db.acquire("Run")
	if err != nil {
		return err
	}
	defer db.release()

	h := cgo.NewHandle(&runState{ctx: ctx, fn: fn})
	defer h.Delete()

	// The watcher stops the run when ctx is done. It must be gone before release, since it
	// uses p. A stop that lands before the library entered batchdb_run would be missed, so
	// it is repeated, more and more rarely, until the run returns.
	finished := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		select {
		case <-finished:
			return
		case <-ctx.Done():
		}
		for delay := 50 * time.Millisecond; ; delay = min(delay*4, 5*time.Second) {
			db.s.stop(p)
			select {
			case <-finished:
				return
			case <-time.After(delay):
			}
		}
	}()
	defer watcher.Wait()
	defer close(finished)

	names, n, err := cStrings("Run", opts.Queues)
	if err != nil {
		return err
	}
	defer freeCStrings(names, n)
	o := C.batchdb_run_options{workers: C.uint32_t(opts.Workers), queues: names, queues_len: n}
	if opts.UntilEmpty {
		o.until_empty = 1
	}
	for {
		gen := db.s.stopGen.Load()
		var e C.batchdb_error
		if rc := C.batchdb_go_run(p, &o, C.uintptr_t(h), &e); rc != C.BATCHDB_OK {
			return errorOf("Run", rc, &e)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if db.isClosed() {
			return closedError("Run", "database")
		}
		if db.s.stopGen.Load() == gen {
			return nil // UntilEmpty and the queue is empty
		}
		// Stopped for another Run's cancellation: go on.
	}
}

func (db *DB) isClosed() bool { return db.s.isClosed() }

func (s *dbState) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
