package batchdb

/*
#include "batchdb.h"
*/
import "C"

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"sync"
)

// JobRow is a listed job: {"key": K, "running": [C, ...]}, where Running holds the created
// times of its running instances.
type JobRow struct {
	Key     string
	Running []int64
}

// PendingRow is a pending (or running) instance: {"job": K, "created": C, "running": false},
// plus "priority" and "run_at" when its push set them, "queue" when it is not the default
// queue, and "progress" while it runs and has reported some.
type PendingRow struct {
	Job     string
	Created int64
	Running bool
	// Priority is the push's priority; 0 (the default) is left out of the JSON.
	Priority int
	// RunAt is when a delayed (or backed-off) instance may run, epoch ms; 0 when not
	// delayed, and then left out of the JSON.
	RunAt int64
	// Queue is the instance's queue; "" stands for "default" (left out of the JSON, as the
	// contract's shape has it).
	Queue string
	// Progress is what a running instance last reported with Job.Progress; nil when it
	// reported nothing or is not running.
	Progress *Progress
	// After lists the upstream instances it still waits for (PushOptions.After); nil when it
	// waits for none (then left out of the JSON).
	After []Instance
}

// Progress is a running job's report: {"done": F, "message": M}.
type Progress struct {
	Done    float64 `json:"done"`    // 0 to 1
	Message string  `json:"message"` // a short text, maybe empty
}

// ResultRow is a completed instance:
// {"key": [K, C], "value": {"hash": H, "start": S, "end": E, "created": C}}.
type ResultRow struct {
	Job     string
	Created int64
	Hash    string // the output blob, readable with Get
	Start   int64  // epoch ms
	End     int64  // epoch ms
}

// FailRow is a failed instance:
// {"key": [K, C], "value": {"message": M, "start": S, "end": E, "attempts": N}}.
type FailRow struct {
	Job      string
	Created  int64
	Message  string
	Start    int64 // epoch ms, of the last attempt
	End      int64 // epoch ms
	Attempts int
}

// The decoders accept exactly the contract's shapes: every field present (priority and
// run_at are optional), with its JSON type, matched by exact name (encoding/json alone would
// take "KEY" for "key" and fill a missing field with zero). Anything else is an error, never a
// half-filled row; a null row leaves the value unchanged, as encoding/json's convention has it.
// FuzzRowJSON holds them to that.

// members splits a JSON object into its members; null members count as absent. It returns nil
// and no error for null.
func members(b []byte, row string) (map[string]json.RawMessage, error) {
	if isNull(b) {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("batchdb: %s: %w", row, err)
	}
	for name, v := range m {
		if isNull(v) {
			delete(m, name)
		}
	}
	return m, nil
}

func isNull(b []byte) bool { return string(bytes.TrimSpace(b)) == "null" }

// member decodes m[name] into dst; a missing member is an error unless optional.
func member[T any](m map[string]json.RawMessage, row, name string, dst *T, optional bool) error {
	v, ok := m[name]
	if !ok {
		if optional {
			return nil
		}
		return fmt.Errorf("batchdb: %s: missing %q", row, name)
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("batchdb: %s: %q: %w", row, name, err)
	}
	return nil
}

type jobJSON struct {
	Key     string  `json:"key"`
	Running []int64 `json:"running"`
}

// MarshalJSON encodes the row in the contract's shape; Running is [] (not null) when empty.
func (r JobRow) MarshalJSON() ([]byte, error) {
	running := r.Running
	if running == nil {
		running = []int64{}
	}
	return json.Marshal(jobJSON{r.Key, running})
}

// UnmarshalJSON decodes the shape that MarshalJSON writes; Running is [] (not nil) when empty.
func (r *JobRow) UnmarshalJSON(b []byte) error {
	m, err := members(b, "job row")
	if m == nil {
		return err
	}
	var j JobRow
	var running []json.RawMessage
	if err := member(m, "job row", "key", &j.Key, false); err != nil {
		return err
	}
	if err := member(m, "job row", "running", &running, false); err != nil {
		return err
	}
	j.Running = make([]int64, len(running))
	for i, c := range running {
		// encoding/json would read null as 0.
		if isNull(c) {
			return fmt.Errorf("batchdb: job row: \"running\"[%d] is null", i)
		}
		if err := json.Unmarshal(c, &j.Running[i]); err != nil {
			return fmt.Errorf("batchdb: job row: \"running\"[%d]: %w", i, err)
		}
	}
	*r = j
	return nil
}

type pendingJSON struct {
	Job      string     `json:"job"`
	Created  int64      `json:"created"`
	Running  bool       `json:"running"`
	Priority int        `json:"priority,omitempty"`
	RunAt    int64      `json:"run_at,omitempty"`
	Queue    string     `json:"queue,omitempty"`
	Progress *Progress  `json:"progress,omitempty"`
	After    []Instance `json:"after,omitempty"`
}

// MarshalJSON encodes the row in the contract's shape.
func (r PendingRow) MarshalJSON() ([]byte, error) {
	return json.Marshal(pendingJSON(r))
}

// UnmarshalJSON decodes the shape that MarshalJSON writes.
func (r *PendingRow) UnmarshalJSON(b []byte) error {
	const row = "pending row"
	m, err := members(b, row)
	if m == nil {
		return err
	}
	var p PendingRow
	var after []json.RawMessage
	for _, err := range []error{
		member(m, row, "job", &p.Job, false),
		member(m, row, "created", &p.Created, false),
		member(m, row, "running", &p.Running, false),
		member(m, row, "priority", &p.Priority, true),
		member(m, row, "run_at", &p.RunAt, true),
		member(m, row, "queue", &p.Queue, true),
		member(m, row, "after", &after, true),
	} {
		if err != nil {
			return err
		}
	}
	if v, ok := m["progress"]; ok {
		pm, err := members(v, row+" progress")
		if err != nil {
			return err
		}
		if pm == nil {
			return fmt.Errorf("batchdb: %s: \"progress\" is not an object", row)
		}
		var pr Progress
		for _, err := range []error{
			member(pm, row+" progress", "done", &pr.Done, false),
			member(pm, row+" progress", "message", &pr.Message, false),
		} {
			if err != nil {
				return err
			}
		}
		p.Progress = &pr
	}
	// "default" is the zero value's queue: the shape leaves it out.
	if p.Queue == "default" {
		p.Queue = ""
	}
	// An empty list is no upstream, as the shape writes it (left out).
	for i, e := range after {
		var in Instance
		if isNull(e) { // encoding/json would leave a zero Instance
			return fmt.Errorf("batchdb: %s: \"after\"[%d] is null", row, i)
		}
		if err := json.Unmarshal(e, &in); err != nil {
			return fmt.Errorf("batchdb: %s: \"after\"[%d]: %w", row, i, err)
		}
		p.After = append(p.After, in)
	}
	*r = p
	return nil
}

// instanceKey is the [K, C] pair of result and fail rows.
type instanceKey struct {
	Job     string
	Created int64
}

func (k instanceKey) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{k.Job, k.Created})
}

// instance decodes the "key" pair and the "value" members of a result or fail row.
func instance(b []byte, row string) (k instanceKey, value map[string]json.RawMessage, err error) {
	m, err := members(b, row)
	if m == nil {
		return k, nil, err
	}
	var pair []json.RawMessage
	if err := member(m, row, "key", &pair, false); err != nil {
		return k, nil, err
	}
	if len(pair) != 2 || isNull(pair[0]) || isNull(pair[1]) {
		return k, nil, fmt.Errorf("batchdb: %s: \"key\" must be [job, created], got %d elements", row, len(pair))
	}
	if err := json.Unmarshal(pair[0], &k.Job); err != nil {
		return k, nil, fmt.Errorf("batchdb: %s: \"key\" job: %w", row, err)
	}
	if err := json.Unmarshal(pair[1], &k.Created); err != nil {
		return k, nil, fmt.Errorf("batchdb: %s: \"key\" created: %w", row, err)
	}
	var v json.RawMessage
	if err := member(m, row, "value", &v, false); err != nil {
		return k, nil, err
	}
	if value, err = members(v, row+" value"); err == nil && value == nil {
		err = fmt.Errorf("batchdb: %s: missing %q", row, "value")
	}
	return k, value, err
}

type resultValue struct {
	Hash    string `json:"hash"`
	Start   int64  `json:"start"`
	End     int64  `json:"end"`
	Created int64  `json:"created"`
}

type resultJSON struct {
	Key   instanceKey `json:"key"`
	Value resultValue `json:"value"`
}

// MarshalJSON encodes the row in the contract's shape.
func (r ResultRow) MarshalJSON() ([]byte, error) {
	return json.Marshal(resultJSON{instanceKey{r.Job, r.Created}, resultValue{r.Hash, r.Start, r.End, r.Created}})
}

// UnmarshalJSON decodes the shape that MarshalJSON writes. The value's "created" must equal
// the key's.
func (r *ResultRow) UnmarshalJSON(b []byte) error {
	const row = "result row"
	k, v, err := instance(b, row)
	if v == nil {
		return err
	}
	res := ResultRow{Job: k.Job, Created: k.Created}
	var created int64
	for _, err := range []error{
		member(v, row, "hash", &res.Hash, false),
		member(v, row, "start", &res.Start, false),
		member(v, row, "end", &res.End, false),
		member(v, row, "created", &created, false),
	} {
		if err != nil {
			return err
		}
	}
	if created != k.Created {
		return fmt.Errorf("batchdb: %s: value created %d differs from key created %d", row, created, k.Created)
	}
	*r = res
	return nil
}

type failValue struct {
	Message  string `json:"message"`
	Start    int64  `json:"start"`
	End      int64  `json:"end"`
	Attempts int    `json:"attempts"`
}

type failJSON struct {
	Key   instanceKey `json:"key"`
	Value failValue   `json:"value"`
}

// MarshalJSON encodes the row in the contract's shape.
func (r FailRow) MarshalJSON() ([]byte, error) {
	return json.Marshal(failJSON{instanceKey{r.Job, r.Created}, failValue{r.Message, r.Start, r.End, r.Attempts}})
}

// UnmarshalJSON decodes the shape that MarshalJSON writes.
func (r *FailRow) UnmarshalJSON(b []byte) error {
	const row = "fail row"
	k, v, err := instance(b, row)
	if v == nil {
		return err
	}
	f := FailRow{Job: k.Job, Created: k.Created}
	for _, err := range []error{
		member(v, row, "message", &f.Message, false),
		member(v, row, "start", &f.Start, false),
		member(v, row, "end", &f.End, false),
		member(v, row, "attempts", &f.Attempts, false),
	} {
		if err != nil {
			return err
		}
	}
	*r = f
	return nil
}

// Jobs lists the jobs, sorted by key. The rows are read a page at a time; ending the loop
// early frees the cursor. An error is yielded once, as the last element.
func (db *DB) Jobs() iter.Seq2[JobRow, error] {
	return func(yield func(JobRow, error) bool) {
		list(db, "Jobs", C.BATCHDB_LIST_JOB, yield, func(row *C.batchdb_row) (JobRow, error) {
			var r JobRow
			err := json.Unmarshal([]byte(C.GoString(row.json)), &r)
			return r, err
		})
	}
}

// Pending lists the pending and running instances, sorted by created. Ending the loop early
// frees the cursor. An error is yielded once, as the last element.
func (db *DB) Pending() iter.Seq2[PendingRow, error] {
	return func(yield func(PendingRow, error) bool) {
		list(db, "Pending", C.BATCHDB_LIST_PENDING, yield, func(row *C.batchdb_row) (PendingRow, error) {
			// The JSON carries priority and run_at, which the C row does not.
			var r PendingRow
			err := json.Unmarshal([]byte(C.GoString(row.json)), &r)
			return r, err
		})
	}
}

// Results lists the results, sorted by job key, then created. Ending the loop early frees
// the cursor. An error is yielded once, as the last element.
func (db *DB) Results() iter.Seq2[ResultRow, error] {
	return func(yield func(ResultRow, error) bool) {
		list(db, "Results", C.BATCHDB_LIST_RESULT, yield, func(row *C.batchdb_row) (ResultRow, error) {
			return ResultRow{
				Job:     C.GoString(&row.job[0]),
				Created: int64(row.created),
				Hash:    C.GoString(&row.hash[0]),
				Start:   int64(row.start),
				End:     int64(row.end),
			}, nil
		})
	}
}

// Failures lists the fail rows, sorted by job key, then created. Ending the loop early frees
// the cursor. An error is yielded once, as the last element.
func (db *DB) Failures() iter.Seq2[FailRow, error] {
	return func(yield func(FailRow, error) bool) {
		list(db, "Failures", C.BATCHDB_LIST_FAIL, yield, func(row *C.batchdb_row) (FailRow, error) {
			return FailRow{
				Job:      C.GoString(&row.job[0]),
				Created:  int64(row.created),
				Message:  C.GoString(row.message),
				Start:    int64(row.start),
				End:      int64(row.end),
				Attempts: int(row.attempts),
			}, nil
		})
	}
}

type cursorState struct {
	mu sync.Mutex
	p  *C.batchdb_cursor
	db *dbState
}

func (s *cursorState) release() {
	s.mu.Lock()
	p := s.p
	s.p = nil
	s.mu.Unlock()
	if p != nil {
		C.batchdb_cursor_free(p)
		s.db.unregister(s)
	}
}

// next fetches one row and converts it while its strings are valid. ok is false at the end.
func next[T any](s *cursorState, op string, conv func(*C.batchdb_row) (T, error)) (row T, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return row, false, closedError(op, "cursor")
	}
	var e C.batchdb_error
	var r C.batchdb_row
	rc := C.batchdb_cursor_next(s.p, &r, &e)
	switch rc {
	case C.BATCHDB_OK:
		row, err = conv(&r)
		if err != nil {
			err = fmt.Errorf("batchdb: %s: decoding a row: %w", op, err)
		}
		return row, err == nil, err
	case C.BATCHDB_DONE:
		return row, false, nil
	default:
		return row, false, errorOf(op, rc, &e)
	}
}

func list[T any](db *DB, op string, kind C.int32_t, yield func(T, error) bool, conv func(*C.batchdb_row) (T, error)) {
	var zero T
	p, err := db.acquire(op)
	if err != nil {
		yield(zero, err)
		return
	}
	var e C.batchdb_error
	var c *C.batchdb_cursor
	rc := C.batchdb_list(p, kind, &c, &e)
	if rc != C.BATCHDB_OK {
		db.release()
		yield(zero, errorOf(op, rc, &e))
		return
	}
	s := &cursorState{p: c, db: db.s}
	db.register(s)
	db.release()
	// The loop body may panic or break: the cursor is freed either way.
	defer s.release()
	for {
		row, ok, err := next(s, op, conv)
		if err != nil {
			yield(zero, err)
			return
		}
		if !ok {
			return
		}
		if !yield(row, nil) {
			return
		}
	}
}
