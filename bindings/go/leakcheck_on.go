//go:build batchdb_leakcheck

package batchdb

// leakCheck is set by the batchdb_leakcheck build tag: a DB, reader or claimed job that is
// garbage collected without being closed or finished panics with where it was opened,
// instead of being quietly released.
const leakCheck = true
