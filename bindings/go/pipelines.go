package batchdb

/*
#include <stdlib.h>
#include "batchdb.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"unsafe"
)

// The content-addressed pipelines of API.md section 10: memoized pushes and upstreams are
// PushOptions (Memo, After; Submit and SubmitAdd report a memo hit), the runner's inputs are
// Job.After, and lineage is Why.

// Lineage is one line of Why, in the contract's JSON shapes: {"job": K} when the blob is the
// payload of job K, or {"result": [K, C], "after": [[K2, C2], ...]} for a result row (K, C)
// whose output the blob is, with the upstream instances it waited for.
type Lineage struct {
	// Job is set on a job line: the job's key (the blob's own hash).
	Job string
	// Result is set on a result line: the instance that produced the blob.
	Result *Instance
	// After lists the upstreams of a result line's instance; empty when it had none.
	After []Instance
}

// MarshalJSON encodes the line in its contract shape; a result line always has "after".
func (l Lineage) MarshalJSON() ([]byte, error) {
	if l.Result == nil {
		return json.Marshal(struct {
			Job string `json:"job"`
		}{l.Job})
	}
	after := l.After
	if after == nil {
		after = []Instance{}
	}
	return json.Marshal(struct {
		Result Instance   `json:"result"`
		After  []Instance `json:"after"`
	}{*l.Result, after})
}

// UnmarshalJSON decodes either shape: exactly one of "job" and "result", and "after" with a
// result.
func (l *Lineage) UnmarshalJSON(b []byte) error {
	const row = "lineage line"
	m, err := members(b, row)
	if m == nil {
		return err
	}
	_, isJob := m["job"]
	_, isResult := m["result"]
	if isJob == isResult {
		return fmt.Errorf("batchdb: %s: want exactly one of \"job\" and \"result\"", row)
	}
	var out Lineage
	if isJob {
		if err := member(m, row, "job", &out.Job, false); err != nil {
			return err
		}
		*l = out
		return nil
	}
	var result Instance
	if err := member(m, row, "result", &result, false); err != nil {
		return err
	}
	out.Result = &result
	var after []json.RawMessage
	if err := member(m, row, "after", &after, false); err != nil {
		return err
	}
	out.After = make([]Instance, len(after))
	for i, e := range after {
		if isNull(e) {
			return fmt.Errorf("batchdb: %s: \"after\"[%d] is null", row, i)
		}
		if err := json.Unmarshal(e, &out.After[i]); err != nil {
			return fmt.Errorf("batchdb: %s: \"after\"[%d]: %w", row, i, err)
		}
	}
	*l = out
	return nil
}

// Why says where the blob hash came from: a job line when it is a job's payload, then one
// result line per result row whose output it is, each with the upstream instances that row's
// instance waited for. A hash the database does not hold is ErrNotFound, a malformed one
// ErrInvalid. The lines are read at once (a blob has few of them).
func (db *DB) Why(hash string) ([]Lineage, error) {
	const op = "Why"
	chash, err := cString(op, hash)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(chash))
	p, err := db.acquire(op)
	if err != nil {
		return nil, err
	}
	defer db.release()
	var e C.batchdb_error
	var c *C.batchdb_cursor
	if rc := C.batchdb_why(p, chash, &c, &e); rc != C.BATCHDB_OK {
		return nil, errorOf(op, rc, &e)
	}
	defer C.batchdb_cursor_free(c)
	var lines []Lineage
	for {
		var r C.batchdb_row
		switch rc := C.batchdb_cursor_next(c, &r, &e); rc {
		case C.BATCHDB_OK:
		case C.BATCHDB_DONE:
			return lines, nil
		default:
			return nil, errorOf(op, rc, &e)
		}
		var l Lineage
		if err := json.Unmarshal([]byte(C.GoString(r.json)), &l); err != nil {
			return nil, fmt.Errorf("batchdb: %s: decoding a line: %w", op, err)
		}
		// The C fields are authoritative for the instance; the JSON adds the upstreams.
		key := C.GoString(&r.job[0])
		switch {
		case r.kind == C.BATCHDB_LIST_JOB && l.Result == nil:
			l.Job = key
		case r.kind == C.BATCHDB_LIST_RESULT && l.Result != nil:
			l.Result = &Instance{Key: key, Created: int64(r.created)}
		default:
			return nil, fmt.Errorf("batchdb: %s: a line of kind %d does not match its JSON %s", op, int(r.kind), C.GoString(r.json))
		}
		lines = append(lines, l)
	}
}

// CopyReport says what CopyTo did.
type CopyReport struct {
	// BlobsSent counts the blobs the target did not hold; BytesSent their bytes.
	BlobsSent, BytesSent int64
	// Rows counts the rows applied (the target keeps the ones it had).
	Rows int64
}

// Backup writes a consistent copy of the whole database, as of one instant, to the new file
// dest, while other handles and processes keep working. An existing dest is refused
// (ErrInvalid) and left alone; the copy appears at dest only when complete. A database on
// PostgreSQL is copied into the new file with CopyTo.
func (db *DB) Backup(dest string) error {
	const op = "Backup"
	cdest, err := cString(op, dest)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cdest))
	p, err := db.acquire(op)
	if err != nil {
		return err
	}
	defer db.release()
	var e C.batchdb_error
	if rc := C.batchdb_backup(p, cdest, &e); rc != C.BATCHDB_OK {
		return errorOf(op, rc, &e)
	}
	return nil
}

// CopyTo copies every job, blob, instance, result and fail row, queue setting and schedule
// into target (a file or a server, opened with Open), keeping keys and created times. Blobs
// the target holds are not sent again; a second copy changes nothing, and an interrupted one
// is finished by calling CopyTo again. The target must be empty or an earlier copy (or a
// backup) of db; anything else is ErrInvalid and nothing is written.
func (db *DB) CopyTo(target *DB) (CopyReport, error) {
	const op = "CopyTo"
	if target == nil {
		return CopyReport{}, invalidError(op, "target is nil")
	}
	p, err := db.acquire(op)
	if err != nil {
		return CopyReport{}, err
	}
	defer db.release()
	t, err := target.acquire(op)
	if err != nil {
		return CopyReport{}, err
	}
	defer target.release()
	var e C.batchdb_error
	var r C.batchdb_copy_report
	if rc := C.batchdb_copy(p, t, &r, &e); rc != C.BATCHDB_OK {
		return CopyReport{}, errorOf(op, rc, &e)
	}
	return CopyReport{BlobsSent: int64(r.blobs_sent), BytesSent: int64(r.bytes_sent), Rows: int64(r.rows)}, nil
}
