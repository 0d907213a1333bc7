package batchdb

/*
#include <stdlib.h>
#include "batchdb.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"strings"
	"unsafe"
)

// The queue operations of API.md section 9: limits, pause and resume, recurring schedules.

// ScheduleRow is a recurring schedule, as Schedule returns it and Schedules lists it:
// {"name", "spec", "queue", "job", "next_run"}.
type ScheduleRow struct {
	// Name is the schedule's name (the queue-name alphabet).
	Name string `json:"name"`
	// Spec is `every DURATION` or a 5-field cron expression in UTC.
	Spec string `json:"spec"`
	// Queue is the queue its instances go to ("default" when none was named).
	Queue string `json:"queue"`
	// Job is the key of the job each slot pushes an instance of.
	Job string `json:"job"`
	// NextRun is the next slot, epoch ms.
	NextRun int64 `json:"next_run"`
}

// Limit sets the most instances of queue that may run at once, counting every process and
// handle on the database (the limit is stored in it); n = 0 removes the limit. A malformed
// queue name or n below 0 (or above 4294967295) is ErrInvalid and changes nothing.
func (db *DB) Limit(queue string, n int) error {
	return db.queueCall("Limit", queue, func(p *C.batchdb, q *C.char, e *C.batchdb_error) C.int32_t {
		return C.batchdb_limit(p, q, C.int64_t(n), e)
	})
}

// Pause stops every process from claiming the instances of queue until Resume; running ones
// finish, and pushes (also by schedules) still queue. Stored in the database.
func (db *DB) Pause(queue string) error {
	return db.queueCall("Pause", queue, func(p *C.batchdb, q *C.char, e *C.batchdb_error) C.int32_t {
		return C.batchdb_pause(p, q, e)
	})
}

// Resume lets the instances of a paused queue be claimed again. Resuming a queue that is
// not paused does nothing.
func (db *DB) Resume(queue string) error {
	return db.queueCall("Resume", queue, func(p *C.batchdb, q *C.char, e *C.batchdb_error) C.int32_t {
		return C.batchdb_resume(p, q, e)
	})
}

// Unschedule removes the schedule name; the instances it pushed stay. An unknown name is
// ErrNotFound.
func (db *DB) Unschedule(name string) error {
	return db.queueCall("Unschedule", name, func(p *C.batchdb, n *C.char, e *C.batchdb_error) C.int32_t {
		return C.batchdb_unschedule(p, n, e)
	})
}

// queueCall runs one C call that takes the handle and one name.
func (db *DB) queueCall(op, name string, call func(*C.batchdb, *C.char, *C.batchdb_error) C.int32_t) error {
	if name == "" {
		// C's NULL-or-empty would mean "default" nowhere here: these calls need a name.
		return invalidError(op, "empty name")
	}
	p, err := db.acquire(op)
	if err != nil {
		return err
	}
	defer db.release()
	cname, err := cString(op, name)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cname))
	var e C.batchdb_error
	if rc := call(p, cname, &e); rc != C.BATCHDB_OK {
		return errorOf(op, rc, &e)
	}
	return nil
}

// maxSchedulePayload bounds the payload Schedule reads: the C call takes it in one piece.
const maxSchedulePayload = 64 << 20

// Schedule creates or replaces the recurring schedule name. The payload read from r (held in
// memory, at most 64 MiB: schedules carry small payloads) is stored as a job, and each slot of
// spec pushes one instance of it with opts' Queue and Priority, however many processes run.
// spec is "every DURATION" (500ms, 30s, 15m, 2h, 7d: the slots are the multiples of it since
// the Unix epoch) or a 5-field cron expression in UTC. Slots are produced by the Runs and
// claims active on the database; after downtime one instance is pushed for the latest
// missed slot only. A malformed name, spec or queue is ErrInvalid and stores nothing.
func (db *DB) Schedule(name, spec string, r io.Reader, opts PushOptions) (ScheduleRow, error) {
	const op = "Schedule"
	if r == nil {
		return ScheduleRow{}, invalidError(op, "nil reader")
	}
	co, err := opts.toC(op)
	if err != nil {
		return ScheduleRow{}, err
	}
	defer freePushOptions(&co)
	payload, err := io.ReadAll(io.LimitReader(r, maxSchedulePayload+1))
	if err != nil {
		return ScheduleRow{}, fmt.Errorf("batchdb: %s: reading the payload: %w", op, err)
	}
	if len(payload) > maxSchedulePayload {
		return ScheduleRow{}, invalidError(op, "the payload is larger than 64 MiB")
	}
	cname, err := cString(op, name)
	if err != nil {
		return ScheduleRow{}, err
	}
	defer C.free(unsafe.Pointer(cname))
	cspec, err := cString(op, spec)
	if err != nil {
		return ScheduleRow{}, err
	}
	defer C.free(unsafe.Pointer(cspec))
	p, err := db.acquire(op)
	if err != nil {
		return ScheduleRow{}, err
	}
	defer db.release()
	// The payload is copied to C memory: a Go pointer to it would be fine for the call, but C
	// memory keeps the empty payload's pointer valid too.
	data := C.CBytes(payload)
	defer C.free(data)
	var e C.batchdb_error
	var key [65]C.char
	var next C.int64_t
	if rc := C.batchdb_schedule(p, cname, cspec, (*C.uint8_t)(data), C.size_t(len(payload)), &co, &key[0], &next, &e); rc != C.BATCHDB_OK {
		return ScheduleRow{}, errorOf(op, rc, &e)
	}
	queue := opts.Queue
	if queue == "" {
		queue = "default"
	}
	// The library stores the spec trimmed.
	return ScheduleRow{Name: name, Spec: strings.TrimSpace(spec), Queue: queue, Job: C.GoString(&key[0]), NextRun: int64(next)}, nil
}

// Schedules lists the recurring schedules, sorted by name. Like the other listings it is an
// iterator; an error is yielded once, as the last element.
func (db *DB) Schedules() iter.Seq2[ScheduleRow, error] {
	return func(yield func(ScheduleRow, error) bool) {
		list(db, "Schedules", C.BATCHDB_LIST_SCHEDULE, yield, func(row *C.batchdb_row) (ScheduleRow, error) {
			var r ScheduleRow
			if err := json.Unmarshal([]byte(C.GoString(row.json)), &r); err != nil {
				return r, err
			}
			// The C fields are authoritative; the JSON adds the spec.
			r.Name = C.GoString(row.message)
			r.Queue = C.GoString(row.queue)
			r.Job = C.GoString(&row.job[0])
			r.NextRun = int64(row.created)
			return r, nil
		})
	}
}

// cStrings copies names to a C array of C strings (nil, 0 for none); freeCStrings frees it.
func cStrings(op string, names []string) (**C.char, C.size_t, error) {
	if len(names) == 0 {
		return nil, 0, nil
	}
	arr := (**C.char)(C.malloc(C.size_t(len(names)) * C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	slots := unsafe.Slice(arr, len(names))
	for i, name := range names {
		c, err := cString(op, name)
		if err != nil {
			freeCStrings(arr, C.size_t(i))
			return nil, 0, err
		}
		slots[i] = c
	}
	return arr, C.size_t(len(names)), nil
}

func freeCStrings(arr **C.char, n C.size_t) {
	if arr == nil {
		return
	}
	for _, c := range unsafe.Slice(arr, int(n)) {
		C.free(unsafe.Pointer(c))
	}
	C.free(unsafe.Pointer(arr))
}

// IsIdle reports whether a run serving queues (none: every queue) with UntilEmpty would end
// now: nothing is ready in a served queue that is not paused, and nothing is running,
// delayed, backing off or waiting for an upstream. It is the rule Run itself ends by, for
// callers that drive ClaimFrom themselves.
func (db *DB) IsIdle(queues ...string) (bool, error) {
	const op = "IsIdle"
	p, err := db.acquire(op)
	if err != nil {
		return false, err
	}
	defer db.release()
	names, n, err := cStrings(op, queues)
	if err != nil {
		return false, err
	}
	defer freeCStrings(names, n)
	var e C.batchdb_error
	var idle C.int32_t
	if rc := C.batchdb_is_idle(p, names, n, &idle, &e); rc != C.BATCHDB_OK {
		return false, errorOf(op, rc, &e)
	}
	return idle == 1, nil
}
