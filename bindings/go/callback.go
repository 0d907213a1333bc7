package batchdb

/*
#include <stdint.h>
#include "batchdb.h"
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"unicode/utf8"
	"unsafe"
)

// batchdbGoRunJob is the batchdb_run_fn of Run (through the C shim in run.go). It runs on a
// library worker thread, with the job lent for the duration of the call.
//
//export batchdbGoRunJob
func batchdbGoRunJob(handle C.uintptr_t, job *C.batchdb_job, failOut *C.batchdb_error) (rc C.int32_t) {
	rs := cgo.Handle(handle).Value().(*runState)
	s := newJobState(job, true)
	defer func() {
		// The job pointer dies with this call: later use of the Job is an error.
		s.mu.Lock()
		s.p = nil
		s.finished = "job was lent to a Run callback that has returned"
		s.mu.Unlock()
	}()
	defer func() {
		if r := recover(); r != nil {
			setFailMessage(failOut, fmt.Sprintf("panic: %v", r))
			rc = 1
		}
	}()
	if err := rs.fn(rs.ctx, &Job{s: s}); err != nil {
		msg := err.Error()
		if msg == "" {
			msg = fmt.Sprintf("runner returned an empty %T error", err)
		}
		setFailMessage(failOut, msg)
		return 1
	}
	return 0
}

// setFailMessage copies msg into fail_out->message, cut to 511 bytes at a UTF-8 boundary
// (and at a NUL byte, which C would stop at anyway), NUL-terminated.
func setFailMessage(failOut *C.batchdb_error, msg string) {
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&failOut.message[0])), len(failOut.message))
	n := truncateUTF8(msg, len(buf)-1)
	copy(buf, msg[:n])
	buf[n] = 0
}

// truncateUTF8 returns the length of the longest prefix of s that is at most max bytes,
// does not split a UTF-8 sequence and holds no NUL.
func truncateUTF8(s string, max int) int {
	for i := 0; i < len(s) && i < max; i++ {
		if s[i] == 0 {
			return i
		}
	}
	if len(s) <= max {
		return len(s)
	}
	n := max
	// A UTF-8 sequence is at most 4 bytes: back off over at most 3 continuation bytes.
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return n
}
