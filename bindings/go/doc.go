// Package batchdb is the Go binding of batchdb, an embedded job queue and content-addressed
// blob store in one SQLite file.
//
// A job is a payload stored as a blob; its key is the payload's SHA-256 in lowercase hex.
// Pushing a job queues an instance, identified by (key, created), where created is a unique
// epoch-millisecond time. A worker claims an instance, reads the payload, writes output, and
// completes it (a result row whose output is a blob too) or fails it (a fail row).
// Payloads and outputs are streamed in chunks: their size does not bound memory.
//
// # Building
//
// By default the package builds against an installed batchdb, found with
// `pkg-config --static batchdb`: run scripts/install.sh PREFIX from a checkout (set
// PKG_CONFIG_PATH=PREFIX/lib/pkgconfig for a prefix that pkg-config does not search). It links
// PREFIX/lib/libbatchdb.so, or the archive when the prefix has no shared library
// (scripts/install.sh --static PREFIX).
//
// Inside the checkout, the batchdb_dev build tag links the static library that Cargo just
// built instead; from the repository root:
//
//	cargo build --release
//	cd bindings/go && go test -tags batchdb_dev -race ./...
//
// cgo must be enabled (the default with a C compiler installed).
//
// # Example
//
// The seed flow: add "sleep 5; date" twice, run both instances with a runner that pipes the
// payload to bash, list the results and read one.
//
//	db, err := batchdb.Open("/tmp/compute.db", nil)
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer db.Close()
//
//	for range 2 {
//		key, created, err := db.Add(strings.NewReader("sleep 5; date"))
//		if err != nil {
//			log.Fatal(err)
//		}
//		fmt.Println("queued", key, created) // the same key twice: ce6cc4e7...
//	}
//
//	err = db.Run(context.Background(), batchdb.RunOptions{Workers: 2, UntilEmpty: true},
//		func(ctx context.Context, j *batchdb.Job) error {
//			cmd := exec.CommandContext(ctx, "bash")
//			cmd.Stdin = j  // the payload
//			cmd.Stdout = j // the result
//			return cmd.Run()
//		})
//	if err != nil {
//		log.Fatal(err)
//	}
//
//	var hash string
//	for r, err := range db.Results() {
//		if err != nil {
//			log.Fatal(err)
//		}
//		line, _ := json.Marshal(r) // {"key":[K,C],"value":{"hash":H,"start":S,"end":E,"created":C}}
//		fmt.Println(string(line))
//		hash = r.Hash
//	}
//
//	out, err := db.Get(hash)
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer out.Close()
//	io.Copy(os.Stdout, out) // the date, verified against its hash
//
// # Queues, limits, schedules and progress
//
// PushOptions.Queue puts an instance in a named queue ("" is "default"), and PushOptions.Unique
// queues nothing when an instance of the job is already live in that queue. ClaimFrom and
// RunOptions.Queues serve a set of queues. Limit, Pause and Resume are stored in the database
// and hold for every process on it. Schedule creates a recurring schedule ("every 30s", or
// 5-field cron in UTC) whose slots the active Runs and claims push, one instance per slot;
// Schedules lists them as an iterator, like the other listings, and Unschedule removes one. A
// runner reports progress with Job.Progress, which shows on its PendingRow.
//
//	db.Limit("emails", 2)
//	db.AddWith(strings.NewReader(payload), batchdb.PushOptions{Queue: "emails", Unique: true})
//	db.Schedule("nightly", "0 3 * * *", strings.NewReader("backup"), batchdb.PushOptions{})
//	db.Run(ctx, batchdb.RunOptions{Queues: []string{"emails"}}, func(ctx context.Context, j *batchdb.Job) error {
//		return j.Progress(0.5, "half way")
//	})
//
// # Pipelines: memoized runs, dependencies and lineage
//
// PushOptions.Memo reuses a job's result instead of queueing it again (a live instance is
// joined, as with Unique); Submit and SubmitAdd return a Pushed whose Cached field holds the
// reused output's hash, while PushWith and AddWith keep returning the created time only (the
// newest result's, for a hit). PushOptions.After makes an instance wait for upstream
// instances (Instance{Key, Created}, JSON [K, C]); an upstream that fails or is cancelled
// fails its dependents, and a push after one that failed already succeeds with a fail row.
// The runner reads its inputs with Job.After (Upstream{Key, Created, Hash}; Get(Hash) reads
// one). Why lists where a blob came from, as Lineage lines that marshal to the contract's
// {"job": K} and {"result": [K, C], "after": [...]}.
//
//	a, ca, _ := db.Add(strings.NewReader("fetch"))
//	b, cb, _ := db.Add(strings.NewReader("fetch more"))
//	_, _, _ = db.AddWith(strings.NewReader("merge"), batchdb.PushOptions{After: []batchdb.Instance{{a, ca}, {b, cb}}})
//	db.Run(ctx, batchdb.RunOptions{UntilEmpty: true}, func(ctx context.Context, j *batchdb.Job) error {
//		for _, in := range j.After() { // the merge job's inputs
//			r, _ := db.Get(in.Hash)
//			io.Copy(j, r)
//			r.Close()
//		}
//		return nil
//	})
//	p, _ := db.Submit(a, batchdb.PushOptions{Memo: true}) // p.Cached: a's output, nothing queued
//	lines, _ := db.Why(p.Cached)                          // [{Result: &{a ca}, After: []}]
//
// # Concurrency and lifetimes
//
// A *DB is safe for concurrent use by many goroutines, and many processes may open one
// file. Readers from Get, the iterators' cursors and claimed jobs are each used by one
// goroutine at a time. Close waits for the calls in flight, stops Run, and releases what is
// still open; the garbage collector closes what was dropped unclosed, as a safety net only.
//
// # Errors
//
// Errors from the library are *Error values carrying the C status code and message. Match
// them with errors.Is against ErrInvalid, ErrNotFound, ErrIO, ErrCorrupt, ErrBusy,
// ErrAborted, ErrPanic, ErrMisuse and ErrStale, and calls on a closed DB against ErrClosed.
package batchdb
