//go:build !batchdb_leakcheck

package batchdb

// leakCheck: see leakcheck_on.go. Off by default: an unclosed handle is released by the
// garbage collector.
const leakCheck = false
