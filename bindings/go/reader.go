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

// Get opens the blob hash (a job payload or a result) for reading. The content is verified
// against the hash as it is read: the final Read reports ErrCorrupt instead of io.EOF when it
// does not match. A malformed hash is ErrInvalid, an unknown one ErrNotFound. The caller must
// Close the reader.
func (db *DB) Get(hash string) (io.ReadCloser, error) {
	p, err := db.acquire("Get")
	if err != nil {
		return nil, err
	}
	defer db.release()
	chash, err := cString("Get", hash)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(chash))
	var e C.batchdb_error
	var r *C.batchdb_reader
	if rc := C.batchdb_reader_open(p, chash, &r, &e); rc != C.BATCHDB_OK {
		return nil, errorOf("Get", rc, &e)
	}
	s := &readerState{p: r, db: db.s, origin: origin()}
	db.register(s)
	rd := &blobReader{s: s, db: db}
	runtime.AddCleanup(rd, func(s *readerState) {
		if s.open() {
			leaked("reader", s.origin)
		}
		s.release()
	}, s)
	return rd, nil
}

// blobReader is the io.ReadCloser that Get returns.
type blobReader struct {
	s  *readerState
	db *DB // keeps the DB alive while the reader is
}

type readerState struct {
	mu     sync.Mutex
	p      *C.batchdb_reader
	db     *dbState
	origin string
}

func (s *readerState) open() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p != nil
}

func (s *readerState) release() {
	s.mu.Lock()
	p := s.p
	s.p = nil
	s.mu.Unlock()
	if p != nil {
		C.batchdb_reader_close(p)
		s.db.unregister(s)
	}
}

// Read reads the next bytes of the blob; io.EOF once all of it was read and verified.
func (r *blobReader) Read(p []byte) (int, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return 0, closedError("Read", "reader")
	}
	if len(p) == 0 {
		return 0, nil
	}
	var e C.batchdb_error
	var n C.size_t
	if rc := C.batchdb_reader_read(s.p, (*C.uint8_t)(unsafe.Pointer(&p[0])), C.size_t(len(p)), &n, &e); rc != C.BATCHDB_OK {
		return 0, errorOf("Read", rc, &e)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return int(n), nil
}

// Close releases the reader. A second Close does nothing.
func (r *blobReader) Close() error {
	r.s.release()
	return nil
}
