package batchdb

/*
#include "batchdb.h"
*/
import "C"

import (
	"errors"
	"fmt"
)

// Status codes of the C ABI, as carried in [Error.Code]. They equal the BATCHDB_ERR_*
// constants of batchdb.h and are never renumbered.
const (
	CodeInvalid  = -1 // BATCHDB_ERR_INVALID
	CodeNotFound = -2 // BATCHDB_ERR_NOT_FOUND
	CodeIO       = -3 // BATCHDB_ERR_IO
	CodeCorrupt  = -4 // BATCHDB_ERR_CORRUPT
	CodeBusy     = -5 // BATCHDB_ERR_BUSY
	CodeAborted  = -6 // BATCHDB_ERR_ABORTED
	CodePanic    = -7 // BATCHDB_ERR_PANIC
	CodeMisuse   = -8 // BATCHDB_ERR_MISUSE
	CodeStale    = -9 // BATCHDB_ERR_STALE
)

// Error is a failure reported by the library. errors.Is matches it against the sentinel
// of its code (ErrNotFound, ErrCorrupt, ...), so callers rarely need to look inside.
type Error struct {
	Code int    // one of the Code* constants
	Op   string // the method that failed, e.g. "Push"; empty for the sentinels
	Msg  string // the library's description

	cause error // an extra error that errors.Is/As should see, e.g. ErrClosed
}

// Error formats the error as "batchdb: Op: Msg".
func (e *Error) Error() string {
	if e.Op == "" {
		return "batchdb: " + e.Msg
	}
	return "batchdb: " + e.Op + ": " + e.Msg
}

// Is reports whether target is the sentinel (or any *Error) with the same code and no
// operation, so that errors.Is(err, ErrNotFound) works for every not-found error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Op == "" && t.Code == e.Code
}

// Unwrap returns the error's cause, if any (ErrClosed for a closed handle).
func (e *Error) Unwrap() error { return e.cause }

// The sentinels, one per status code. Match them with errors.Is.
var (
	// ErrInvalid: bad input (malformed hash, option out of range, a file that is not a
	// batchdb database, ...). Nothing was changed.
	ErrInvalid = &Error{Code: CodeInvalid, Msg: "invalid argument"}
	// ErrNotFound: unknown job, blob or instance.
	ErrNotFound = &Error{Code: CodeNotFound, Msg: "not found"}
	// ErrIO: the operating system or SQLite could not read or write the file.
	ErrIO = &Error{Code: CodeIO, Msg: "i/o error"}
	// ErrCorrupt: stored data does not match its hash, or the file is damaged.
	ErrCorrupt = &Error{Code: CodeCorrupt, Msg: "corrupt data"}
	// ErrBusy: the file stayed locked too long, or a running instance was asked to change.
	ErrBusy = &Error{Code: CodeBusy, Msg: "busy"}
	// ErrAborted: a callback said stop.
	ErrAborted = &Error{Code: CodeAborted, Msg: "aborted"}
	// ErrPanic: a panic inside the library was caught at the boundary.
	ErrPanic = &Error{Code: CodePanic, Msg: "panic in the library"}
	// ErrMisuse: the API was used out of order, e.g. Complete on the job lent to a Run
	// callback, or any call on a closed DB.
	ErrMisuse = &Error{Code: CodeMisuse, Msg: "misuse"}
	// ErrStale: a late Complete or Fail of a worker that lost its lease; nothing changed.
	ErrStale = &Error{Code: CodeStale, Msg: "stale: the lease was lost"}
)

// ErrClosed is matched (with errors.Is) by the error of every call on a closed DB, or on a
// reader, cursor or job whose DB was closed. Such errors also match ErrMisuse.
var ErrClosed = errors.New("batchdb: closed")

// errorOf turns a C status and its filled error object into an *Error.
func errorOf(op string, rc C.int32_t, e *C.batchdb_error) error {
	msg := C.GoString(&e.message[0])
	if msg == "" {
		msg = fmt.Sprintf("status %d", int(rc))
	}
	return &Error{Code: int(rc), Op: op, Msg: msg}
}

func closedError(op, what string) error {
	return &Error{Code: CodeMisuse, Op: op, Msg: what + " is closed", cause: ErrClosed}
}

func invalidError(op, msg string) error {
	return &Error{Code: CodeInvalid, Op: op, Msg: msg}
}
