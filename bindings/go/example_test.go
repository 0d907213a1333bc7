package batchdb_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	batchdb "github.com/batchdb/batchdb/bindings/go"
)

// tempDB opens a database in a fresh temporary directory; the returned func closes it and
// removes the directory.
func tempDB() (*batchdb.DB, func()) {
	dir, err := os.MkdirTemp("", "batchdb-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err := batchdb.Open(filepath.Join(dir, "compute.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	return db, func() { db.Close(); os.RemoveAll(dir) }
}

func ExampleDB_Add() {
	db, done := tempDB()
	defer done()

	key, first, err := db.Add(strings.NewReader("sleep 5; date"))
	if err != nil {
		log.Fatal(err)
	}
	again, second, err := db.Add(strings.NewReader("sleep 5; date"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(key)
	fmt.Println(again == key, second > first)
	// Output:
	// ce6cc4e7fcb4a902f7c836cb93a32ae02cb47679c86e3d99c811233bf6f258c0
	// true true
}

func ExampleDB_Run() {
	db, done := tempDB()
	defer done()

	for _, p := range []string{"hello", "world"} {
		if _, _, err := db.Add(strings.NewReader(p)); err != nil {
			log.Fatal(err)
		}
	}
	err := db.Run(context.Background(), batchdb.RunOptions{Workers: 2, UntilEmpty: true},
		func(ctx context.Context, j *batchdb.Job) error {
			in, err := io.ReadAll(j)
			if err != nil {
				return err
			}
			_, err = j.Write(bytes.ToUpper(in))
			return err
		})
	if err != nil {
		log.Fatal(err)
	}
	for r, err := range db.Results() {
		if err != nil {
			log.Fatal(err)
		}
		out, err := db.Get(r.Hash)
		if err != nil {
			log.Fatal(err)
		}
		b, err := io.ReadAll(out)
		out.Close()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(b))
	}
	// Unordered output:
	// HELLO
	// WORLD
}

func ExampleDB_Claim() {
	db, done := tempDB()
	defer done()

	if _, _, err := db.Add(strings.NewReader("ping")); err != nil {
		log.Fatal(err)
	}
	j, err := db.Claim()
	if err != nil {
		log.Fatal(err)
	}
	io.Copy(j, j) // echo the payload as the output
	hash, err := j.Complete()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(hash)
	j, err = db.Claim()
	fmt.Println(j, err)
	// Output:
	// 758d61f26a44448384e5c4468a0dcb7a2abe456067b0f7b505bc28b9411fe931
	// <nil> <nil>
}

func ExampleDB_Failures() {
	db, done := tempDB()
	defer done()

	if _, _, err := db.Add(strings.NewReader("exit 1")); err != nil {
		log.Fatal(err)
	}
	err := db.Run(context.Background(), batchdb.RunOptions{UntilEmpty: true},
		func(ctx context.Context, j *batchdb.Job) error {
			return fmt.Errorf("job %.8s: exit status 1", j.Key())
		})
	if err != nil {
		log.Fatal(err)
	}
	for f, err := range db.Failures() {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(f.Message, f.Attempts)
	}
	// Output:
	// job 1a21be8b: exit status 1 1
}

// A fan-in: "merge" waits for two upstream instances and concatenates their outputs, read
// through Job.After; a memoized push of a finished job reuses its result; Why says where the
// merged output came from.
func ExamplePushOptions_after() {
	db, done := tempDB()
	defer done()

	var ups []batchdb.Instance
	for _, p := range []string{"left", "right"} {
		key, created, err := db.Add(strings.NewReader(p))
		if err != nil {
			log.Fatal(err)
		}
		ups = append(ups, batchdb.Instance{Key: key, Created: created})
	}
	merge, _, err := db.AddWith(strings.NewReader("merge"), batchdb.PushOptions{After: ups})
	if err != nil {
		log.Fatal(err)
	}
	err = db.Run(context.Background(), batchdb.RunOptions{UntilEmpty: true},
		func(ctx context.Context, j *batchdb.Job) error {
			in, err := io.ReadAll(j)
			if err != nil {
				return err
			}
			if len(j.After()) == 0 {
				_, err = j.Write(bytes.ToUpper(in))
				return err
			}
			for _, up := range j.After() { // merge: its inputs, in the push's order
				r, err := db.Get(up.Hash)
				if err != nil {
					return err
				}
				_, err = io.Copy(j, r)
				r.Close()
				if err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		log.Fatal(err)
	}
	p, err := db.Submit(merge, batchdb.PushOptions{Memo: true}) // done already: nothing queued
	if err != nil {
		log.Fatal(err)
	}
	out, err := db.Get(p.Cached)
	if err != nil {
		log.Fatal(err)
	}
	defer out.Close()
	merged, _ := io.ReadAll(out)
	lines, err := db.Why(p.Cached)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(merged))
	fmt.Println(len(lines), lines[0].Result.Key == merge, len(lines[0].After))
	// Output:
	// LEFTRIGHT
	// 1 true 2
}
