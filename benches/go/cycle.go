// P6: the P4 cycle (claim, read the payload, complete with an empty output) through the Go
// binding, on a database the harness filled. The same protocol as benches/c/cycle.c:
//
//	cycle DB full|normal SECONDS
//
// Claims until the queue is empty or SECONDS pass; prints {"jobs": N, "seconds": S}.
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	batchdb "github.com/batchdb/batchdb/bindings/go"
)

func die(what string, err error) {
	fmt.Fprintf(os.Stderr, "cycle: %s: %v\n", what, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: cycle DB full|normal SECONDS")
		os.Exit(2)
	}
	opts := &batchdb.Options{Durability: batchdb.DurabilityNormal}
	if os.Args[2] == "full" {
		opts.Durability = batchdb.DurabilityFull
	}
	limit, err := strconv.ParseFloat(os.Args[3], 64)
	if err != nil {
		die("seconds", err)
	}
	db, err := batchdb.Open(os.Args[1], opts)
	if err != nil {
		die("open", err)
	}
	buf := make([]byte, 4096)
	jobs := 0
	t0 := time.Now()
	elapsed := time.Duration(0)
	for elapsed.Seconds() < limit {
		job, err := db.Claim()
		if err != nil {
			die("claim", err)
		}
		if job == nil {
			break
		}
		for {
			if _, err := job.Read(buf); err == io.EOF {
				break
			} else if err != nil {
				die("read", err)
			}
		}
		if _, err := job.Complete(); err != nil {
			die("complete", err)
		}
		jobs++
		elapsed = time.Since(t0)
	}
	fmt.Printf("{\"jobs\": %d, \"seconds\": %.6f}\n", jobs, elapsed.Seconds())
	if err := db.Close(); err != nil {
		die("close", err)
	}
}
