package batchdb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

const seedKey = "ce6cc4e7fcb4a902f7c836cb93a32ae02cb47679c86e3d99c811233bf6f258c0"

func openTemp(t *testing.T, opts *Options) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "test.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func collect[T any](t *testing.T, seq func(func(T, error) bool)) []T {
	t.Helper()
	var rows []T
	for r, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	return rows
}

func readAll(t *testing.T, db *DB, hash string) string {
	t.Helper()
	r, err := db.Get(hash)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantIs(t *testing.T, err error, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want one matching %v", err, target)
	}
}

func TestCreateAddPushGet(t *testing.T) {
	db := openTemp(t, nil)
	key := must[string](t)(db.Create(strings.NewReader("sleep 5; date")))
	if key != seedKey {
		t.Fatalf("key %s, want %s", key, seedKey)
	}
	k1, c1, err := db.Add(strings.NewReader("sleep 5; date"))
	if err != nil {
		t.Fatal(err)
	}
	k2, c2, err := db.Add(strings.NewReader("sleep 5; date"))
	if err != nil {
		t.Fatal(err)
	}
	if k1 != seedKey || k2 != seedKey || c2 <= c1 {
		t.Fatalf("add gave %s %d, %s %d", k1, c1, k2, c2)
	}
	c3 := must[int64](t)(db.Push(seedKey))
	if c3 <= c2 {
		t.Fatalf("push created %d after %d", c3, c2)
	}
	if got := readAll(t, db, seedKey); got != "sleep 5; date" {
		t.Fatalf("payload %q", got)
	}
	jobs := collect(t, db.Jobs())
	if len(jobs) != 1 || jobs[0].Key != seedKey || jobs[0].Running == nil || len(jobs[0].Running) != 0 {
		t.Fatalf("jobs %#v", jobs)
	}
	pending := collect(t, db.Pending())
	if len(pending) != 3 {
		t.Fatalf("pending %#v", pending)
	}
	for i, p := range pending {
		if p.Job != seedKey || p.Created != []int64{c1, c2, c3}[i] || p.Running {
			t.Fatalf("pending[%d] = %#v", i, p)
		}
	}
	// An empty payload is a job too.
	empty := must[string](t)(db.Create(strings.NewReader("")))
	if empty != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatalf("empty key %s", empty)
	}
	if got := readAll(t, db, empty); got != "" {
		t.Fatalf("empty payload read as %q", got)
	}
}

func TestTypedErrors(t *testing.T) {
	db := openTemp(t, nil)
	unknown := strings.Repeat("ab", 32)

	_, err := db.Push(unknown)
	wantIs(t, err, ErrNotFound)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeNotFound || e.Op != "Push" || e.Msg == "" {
		t.Fatalf("not an *Error with details: %#v", err)
	}
	if errors.Is(err, ErrInvalid) {
		t.Fatal("a not-found error matched ErrInvalid")
	}

	_, err = db.Push("nothex")
	wantIs(t, err, ErrInvalid)
	_, err = db.Push(seedKey + "\x00tail")
	wantIs(t, err, ErrInvalid)
	_, err = db.Get("xyz")
	wantIs(t, err, ErrInvalid)
	_, err = db.Get(strings.ToUpper(seedKey) + "0")
	wantIs(t, err, ErrInvalid)
	_, err = db.Get(unknown)
	wantIs(t, err, ErrNotFound)
	_, err = db.Retry(unknown, 1)
	wantIs(t, err, ErrNotFound)
	wantIs(t, db.Cancel(unknown, 1), ErrNotFound)
	_, err = db.PushWith(unknown, PushOptions{Delay: -time.Second})
	wantIs(t, err, ErrInvalid)
	err = db.Run(context.Background(), RunOptions{Workers: 5000}, func(context.Context, *Job) error { return nil })
	wantIs(t, err, ErrInvalid)

	// A running instance cannot be cancelled.
	key, created, err := db.Add(strings.NewReader("busy"))
	if err != nil {
		t.Fatal(err)
	}
	j := must[*Job](t)(db.Claim())
	wantIs(t, db.Cancel(key, created), ErrBusy)
	if _, err := j.Complete(); err != nil {
		t.Fatal(err)
	}
	// A finished job cannot be finished again.
	_, err = j.Complete()
	wantIs(t, err, ErrMisuse)
	wantIs(t, j.Fail("again"), ErrMisuse)
	_, err = j.Read(make([]byte, 8))
	wantIs(t, err, ErrMisuse)

	// Sentinels match by code only.
	for _, s := range []*Error{ErrInvalid, ErrNotFound, ErrIO, ErrCorrupt, ErrBusy, ErrAborted, ErrPanic, ErrMisuse, ErrStale} {
		err := fmt.Errorf("wrapped: %w", &Error{Code: s.Code, Op: "X", Msg: "m"})
		if !errors.Is(err, s) {
			t.Errorf("code %d does not match its sentinel", s.Code)
		}
		if errors.Is(err, ErrClosed) || (s != ErrInvalid && errors.Is(err, ErrInvalid)) {
			t.Errorf("code %d matches another sentinel", s.Code)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notdb := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notdb, bytes.Repeat([]byte("this is not a database\n"), 200), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(notdb, nil)
	wantIs(t, err, ErrInvalid)
	before, _ := os.ReadFile(notdb)
	if !bytes.Equal(before, bytes.Repeat([]byte("this is not a database\n"), 200)) {
		t.Fatal("opening a foreign file changed it")
	}
	_, err = Open(filepath.Join(dir, "missing", "dir", "x.db"), nil)
	wantIs(t, err, ErrIO)
	for _, o := range []Options{{ChunkSize: 10}, {ChunkSize: -1}, {Lease: time.Millisecond}, {MaxAttempts: 5000}, {Order: 7}, {Durability: -1}} {
		if _, err := Open(filepath.Join(dir, "o.db"), &o); !errors.Is(err, ErrInvalid) {
			t.Errorf("options %+v: %v, want ErrInvalid", o, err)
		}
	}
	db, err := Open(filepath.Join(dir, "ok.db"), &Options{ChunkSize: 4096, Durability: DurabilityNormal, Lease: time.Second, MaxAttempts: 2, RetryErrors: true, Order: OldestFirst})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	db, err := Open(path, &Options{ChunkSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 16<<10)
	var x uint32 = 2463534242
	for i := range payload {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		payload[i] = byte(x)
	}
	key, err := db.Create(bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	needle := payload[5000:5064]
	at := bytes.Index(file, needle)
	if at < 0 {
		t.Skip("chunk bytes not found verbatim in the file; cannot tamper")
	}
	file[at+10] ^= 0xff
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path, &Options{ChunkSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := db.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = io.ReadAll(r)
	wantIs(t, err, ErrCorrupt)
}

func TestClaimCompleteFailRetry(t *testing.T) {
	db := openTemp(t, nil)
	if j, err := db.Claim(); j != nil || err != nil {
		t.Fatalf("claim on an empty queue: %v, %v", j, err)
	}
	okKey, okCreated := addString(t, db, "shout")
	badKey, badCreated := addString(t, db, "bad")

	// Newest first: "bad" comes first.
	j := must[*Job](t)(db.Claim())
	if j.Key() != badKey || j.Created() != badCreated {
		t.Fatalf("claimed %s %d", j.Key(), j.Created())
	}
	jobs := collect(t, db.Jobs())
	for _, r := range jobs {
		if r.Key == badKey && (len(r.Running) != 1 || r.Running[0] != badCreated) {
			t.Fatalf("job row while running: %#v", r)
		}
	}
	for _, p := range collect(t, db.Pending()) {
		if p.Created == badCreated && !p.Running {
			t.Fatalf("claimed instance not listed as running: %#v", p)
		}
	}
	if err := j.Fail("it went wrong"); err != nil {
		t.Fatal(err)
	}

	j = must[*Job](t)(db.Claim())
	if j.Key() != okKey || j.Created() != okCreated {
		t.Fatalf("claimed %s %d", j.Key(), j.Created())
	}
	in, err := io.ReadAll(j)
	if err != nil || string(in) != "shout" {
		t.Fatalf("payload %q, %v", in, err)
	}
	if _, err := io.WriteString(j, strings.ToUpper(string(in))); err != nil {
		t.Fatal(err)
	}
	hash := must[string](t)(j.Complete())
	if sum := sha256.Sum256([]byte("SHOUT")); hash != hex.EncodeToString(sum[:]) {
		t.Fatalf("result hash %s", hash)
	}
	if got := readAll(t, db, hash); got != "SHOUT" {
		t.Fatalf("result %q", got)
	}
	results := collect(t, db.Results())
	if len(results) != 1 || results[0].Job != okKey || results[0].Created != okCreated || results[0].Hash != hash || results[0].Start == 0 || results[0].End < results[0].Start {
		t.Fatalf("results %#v", results)
	}
	fails := collect(t, db.Failures())
	if len(fails) != 1 || fails[0].Job != badKey || fails[0].Created != badCreated || fails[0].Message != "it went wrong" || fails[0].Attempts != 1 {
		t.Fatalf("failures %#v", fails)
	}
	if n := len(collect(t, db.Pending())); n != 0 {
		t.Fatalf("%d pending after both finished", n)
	}

	again := must[int64](t)(db.Retry(badKey, badCreated))
	if again <= badCreated {
		t.Fatalf("retry created %d", again)
	}
	if n := len(collect(t, db.Failures())); n != 0 {
		t.Fatal("retry left the fail row")
	}
	pending := collect(t, db.Pending())
	if len(pending) != 1 || pending[0].Job != badKey || pending[0].Created != again {
		t.Fatalf("pending after retry %#v", pending)
	}
}

func addString(t *testing.T, db *DB, s string) (string, int64) {
	t.Helper()
	k, c, err := db.Add(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return k, c
}

func TestPriorityDelayCancel(t *testing.T) {
	db := openTemp(t, nil)
	low, _ := addString(t, db, "low")
	high, highCreated, err := db.AddWith(strings.NewReader("high"), PushOptions{Priority: 5})
	if err != nil {
		t.Fatal(err)
	}
	_ = must[int64](t)(db.PushWith(low, PushOptions{Delay: time.Hour}))
	_ = must[int64](t)(db.Push(low)) // newest plain instance

	var sawPriority, sawDelay bool
	for _, p := range collect(t, db.Pending()) {
		if p.Job == high {
			sawPriority = p.Priority == 5 && p.Created == highCreated
		}
		if p.RunAt != 0 {
			sawDelay = p.RunAt >= p.Created+time.Hour.Milliseconds()
		}
	}
	if !sawPriority || !sawDelay {
		t.Fatalf("pending rows lack priority/run_at: %#v", collect(t, db.Pending()))
	}

	// Highest priority first, then newest; the delayed instance is never claimed.
	j := must[*Job](t)(db.Claim())
	if j.Key() != high {
		t.Fatalf("claimed %s first, want the high-priority job", j.Key())
	}
	must[string](t)(j.Complete())
	var claimed int
	for {
		j, err := db.Claim()
		if err != nil {
			t.Fatal(err)
		}
		if j == nil {
			break
		}
		claimed++
		must[string](t)(j.Complete())
	}
	if claimed != 2 {
		t.Fatalf("claimed %d low instances, want 2 (the delayed one waits)", claimed)
	}
	pending := collect(t, db.Pending())
	if len(pending) != 1 {
		t.Fatalf("pending %#v", pending)
	}
	if err := db.Cancel(pending[0].Job, pending[0].Created); err != nil {
		t.Fatal(err)
	}
	if n := len(collect(t, db.Pending())); n != 0 {
		t.Fatal("cancel left the instance")
	}
	wantIs(t, db.Cancel(pending[0].Job, pending[0].Created), ErrNotFound)
}

func TestPruneGC(t *testing.T) {
	db := openTemp(t, nil)
	addString(t, db, "work")
	j := must[*Job](t)(db.Claim())
	io.WriteString(j, "output")
	hash := must[string](t)(j.Complete())
	if n := must[int](t)(db.GC()); n != 0 {
		t.Fatalf("gc removed %d referenced blobs", n)
	}
	if n := must[int](t)(db.Prune(time.Now().Add(-time.Hour))); n != 0 {
		t.Fatalf("prune removed %d recent rows", n)
	}
	if n := must[int](t)(db.Prune(time.Now().Add(time.Hour))); n != 1 {
		t.Fatalf("prune removed %d rows, want 1", n)
	}
	if n := must[int](t)(db.GC()); n != 1 {
		t.Fatalf("gc removed %d blobs, want 1 (the output)", n)
	}
	_, err := db.Get(hash)
	wantIs(t, err, ErrNotFound)
}

// patternReader yields n pseudo-random bytes without allocating, hashing them as it goes.
type patternReader struct {
	left  int64
	state uint64
	sum   interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	for i := range p {
		r.state = r.state*6364136223846793005 + 1442695040888963407
		p[i] = byte(r.state >> 56)
	}
	r.left -= int64(len(p))
	r.sum.Write(p)
	return len(p), nil
}

func TestStream64MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB stream")
	}
	db := openTemp(t, &Options{Durability: DurabilityNormal})
	const size = 64 << 20
	src := &patternReader{left: size, state: 1, sum: sha256.New()}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // sample the Go heap while the payload streams
		defer close(sampled)
		var m runtime.MemStats
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()

	key, err := db.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(src.sum.Sum(nil)); key != want {
		t.Fatalf("key %s, want %s", key, want)
	}
	r, err := db.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, r, make([]byte, 64<<10))
	r.Close()
	if err != nil || n != size {
		t.Fatalf("read back %d bytes, %v", n, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != key {
		t.Fatalf("read back hash %s, want %s", got, key)
	}

	close(stopSampling)
	<-sampled
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	growth := int64(peak.Load()) - int64(before.HeapInuse)
	t.Logf("Go allocations during 2x64 MiB: %d KiB; peak heap-in-use growth %d KiB", allocated>>10, growth>>10)
	if allocated > 16<<20 {
		t.Errorf("the Go side allocated %d MiB while streaming: the payload is being buffered", allocated>>20)
	}
	if growth > 16<<20 {
		t.Errorf("heap in use grew by %d MiB while streaming", growth>>20)
	}
}

func TestIterationEndsEarly(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "i.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		addString(t, db, fmt.Sprintf("job %d", i))
	}
	seen := 0
	for _, err := range db.Jobs() {
		if err != nil {
			t.Fatal(err)
		}
		seen++
		break
	}
	for range db.Pending() {
		break
	}
	if seen != 1 {
		t.Fatal("loop did not run")
	}
	func() { // a panicking loop body frees the cursor too
		defer func() { recover() }()
		for range db.Results() {
		}
		for range db.Pending() {
			panic("stop")
		}
	}()
	db.s.mu.Lock()
	open := len(db.s.children)
	db.s.mu.Unlock()
	if open != 0 {
		t.Fatalf("%d cursors left open after the loops ended", open)
	}
	// The full listing still works, and the DB closes cleanly.
	if n := len(collect(t, db.Pending())); n != 5 {
		t.Fatalf("%d pending", n)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRunWorkersCancel(t *testing.T) {
	db := openTemp(t, nil)
	const jobs = 24
	for i := range jobs {
		addString(t, db, fmt.Sprintf("payload %02d", i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var done, inFlight, maxInFlight atomic.Int32
	errc := make(chan error, 1)
	go func() {
		errc <- db.Run(ctx, RunOptions{Workers: 4}, func(ctx context.Context, j *Job) error {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				m := maxInFlight.Load()
				if n <= m || maxInFlight.CompareAndSwap(m, n) {
					break
				}
			}
			in, err := io.ReadAll(j)
			if err != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond)
			if _, err := j.Write(bytes.ToUpper(in)); err != nil {
				return err
			}
			done.Add(1)
			return nil
		})
	}()
	deadline := time.After(30 * time.Second)
	for done.Load() < jobs {
		select {
		case err := <-errc:
			t.Fatalf("Run returned early: %v", err)
		case <-deadline:
			t.Fatalf("only %d of %d jobs done", done.Load(), jobs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancellation")
	}
	if maxInFlight.Load() < 2 {
		t.Errorf("at most %d jobs ran at once with 4 workers", maxInFlight.Load())
	}
	results := collect(t, db.Results())
	if len(results) != jobs {
		t.Fatalf("%d results", len(results))
	}
	if got := readAll(t, db, results[0].Hash); !strings.HasPrefix(got, "PAYLOAD ") {
		t.Fatalf("result %q", got)
	}
	// A Run with an already-cancelled context does not start.
	if err := db.Run(ctx, RunOptions{}, func(context.Context, *Job) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled context: %v", err)
	}
}

func TestRunFailuresAndPanics(t *testing.T) {
	db := openTemp(t, nil)
	long := strings.Repeat("é", 400) // 800 bytes: cut at 511 bytes, not inside a character
	keys := map[string]string{}
	for _, p := range []string{"ok", "error", "panic", "misuse", "long"} {
		k, _ := addString(t, db, p)
		keys[k] = p
	}
	var misuse error
	var lent *Job
	err := db.Run(context.Background(), RunOptions{Workers: 2, UntilEmpty: true}, func(ctx context.Context, j *Job) error {
		in, err := io.ReadAll(j)
		if err != nil {
			return err
		}
		switch string(in) {
		case "error":
			return errors.New("runner said no")
		case "panic":
			panic("runner exploded")
		case "misuse":
			_, misuse = j.Complete()
			if err := j.Fail("x"); !errors.Is(err, ErrMisuse) {
				return fmt.Errorf("Fail on a lent job: %v", err)
			}
			lent = j
			return nil
		case "long":
			return errors.New(long)
		}
		_, err = j.Write([]byte("fine"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	wantIs(t, misuse, ErrMisuse)
	if _, err := lent.Write([]byte("late")); !errors.Is(err, ErrMisuse) {
		t.Fatalf("a lent job used after its callback: %v", err)
	}

	results := collect(t, db.Results())
	if len(results) != 2 {
		t.Fatalf("results %#v", results)
	}
	for _, r := range results {
		if p := keys[r.Job]; p != "ok" && p != "misuse" {
			t.Fatalf("unexpected result for %q", p)
		}
	}
	fails := map[string]FailRow{}
	for _, f := range collect(t, db.Failures()) {
		fails[keys[f.Job]] = f
	}
	if f := fails["error"]; f.Message != "runner said no" || f.Attempts != 1 {
		t.Fatalf("error fail row %#v", f)
	}
	if f := fails["panic"]; !strings.Contains(f.Message, "runner exploded") {
		t.Fatalf("panic fail row %#v", f)
	}
	f := fails["long"]
	if len(f.Message) != 510 || !utf8.ValidString(f.Message) || f.Message != long[:510] {
		t.Fatalf("long message cut to %d bytes (valid UTF-8: %v)", len(f.Message), utf8.ValidString(f.Message))
	}
}

func TestTruncateUTF8(t *testing.T) {
	for _, c := range []struct {
		s    string
		max  int
		want int
	}{
		{"abc", 5, 3}, {"abcdef", 3, 3}, {"aé", 2, 1}, {"aé", 3, 3}, {"a€b", 3, 1}, {"a\x00b", 5, 1}, {"😀😀", 7, 4}, {"", 3, 0},
	} {
		if got := truncateUTF8(c.s, c.max); got != c.want {
			t.Errorf("truncateUTF8(%q, %d) = %d, want %d", c.s, c.max, got, c.want)
		}
	}
}

func TestSeedFlowWithBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	db := openTemp(t, nil)
	for range 2 {
		addString(t, db, "echo hello; echo world")
	}
	err := db.Run(context.Background(), RunOptions{Workers: 2, UntilEmpty: true}, func(ctx context.Context, j *Job) error {
		cmd := exec.CommandContext(ctx, "bash")
		cmd.Stdin = j
		cmd.Stdout = j
		return cmd.Run()
	})
	if err != nil {
		t.Fatal(err)
	}
	results := collect(t, db.Results())
	if len(results) != 2 || results[0].Hash != results[1].Hash {
		t.Fatalf("results %#v", results)
	}
	if got := readAll(t, db, results[0].Hash); got != "hello\nworld\n" {
		t.Fatalf("result %q", got)
	}
}

func TestConcurrentGoroutines(t *testing.T) {
	db := openTemp(t, &Options{Durability: DurabilityNormal})
	const goroutines, each = 8, 10
	var wg sync.WaitGroup
	var completed atomic.Int32
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, _, err := db.Add(strings.NewReader(fmt.Sprintf("g%d i%d", g, i))); err != nil {
					errs <- err
					return
				}
			}
			for {
				j, err := db.Claim()
				if err != nil {
					errs <- err
					return
				}
				if j == nil {
					return
				}
				if _, err := io.Copy(j, j); err != nil {
					errs <- err
					return
				}
				if _, err := j.Complete(); err != nil {
					errs <- err
					return
				}
				completed.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Claims may run dry while other goroutines still add: finish the rest.
	for {
		j := must[*Job](t)(db.Claim())
		if j == nil {
			break
		}
		must[string](t)(j.Complete())
		completed.Add(1)
	}
	if n := len(collect(t, db.Results())); n != goroutines*each || completed.Load() != goroutines*each {
		t.Fatalf("%d results, %d completed, want %d", n, completed.Load(), goroutines*each)
	}
	if n := len(collect(t, db.Jobs())); n != goroutines*each {
		t.Fatalf("%d jobs", n)
	}
}

func TestJSONShapes(t *testing.T) {
	k := seedKey
	cases := []struct {
		row  any
		want string
	}{
		{JobRow{Key: k}, `{"key":"` + k + `","running":[]}`},
		{JobRow{Key: k, Running: []int64{5, 6}}, `{"key":"` + k + `","running":[5,6]}`},
		{PendingRow{Job: k, Created: 7}, `{"job":"` + k + `","created":7,"running":false}`},
		{PendingRow{Job: k, Created: 7, Running: true, Priority: 2, RunAt: 9}, `{"job":"` + k + `","created":7,"running":true,"priority":2,"run_at":9}`},
		{ResultRow{Job: k, Created: 7, Hash: "h", Start: 8, End: 9}, `{"key":["` + k + `",7],"value":{"hash":"h","start":8,"end":9,"created":7}}`},
		{FailRow{Job: k, Created: 7, Message: "m \"q\"", Start: 8, End: 9, Attempts: 3}, `{"key":["` + k + `",7],"value":{"message":"m \"q\"","start":8,"end":9,"attempts":3}}`},
	}
	for _, c := range cases {
		got, err := json.Marshal(c.row)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("%T:\n got %s\nwant %s", c.row, got, c.want)
		}
		// Round trip.
		back := newLike(c.row)
		if err := json.Unmarshal(got, back); err != nil {
			t.Fatal(err)
		}
		again, _ := json.Marshal(back)
		if string(again) != c.want {
			t.Errorf("%T round trip: %s", c.row, again)
		}
	}
	// Pointers marshal the same, and the rows listed from a real file match the shapes.
	db := openTemp(t, nil)
	key, created := addString(t, db, "x")
	for p, err := range db.Pending() {
		if err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(&p)
		if want := fmt.Sprintf(`{"job":"%s","created":%d,"running":false}`, key, created); string(got) != want {
			t.Fatalf("got %s want %s", got, want)
		}
	}
}

func newLike(v any) any {
	switch v.(type) {
	case JobRow:
		return new(JobRow)
	case PendingRow:
		return new(PendingRow)
	case ResultRow:
		return new(ResultRow)
	case FailRow:
		return new(FailRow)
	}
	panic("unknown row type")
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "close.db")
	db, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, created := addString(t, db, "held")
	r, err := db.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	j := must[*Job](t)(db.Claim())
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err = db.Push(key)
	wantIs(t, err, ErrClosed)
	wantIs(t, err, ErrMisuse)
	_, err = r.Read(make([]byte, 4))
	wantIs(t, err, ErrClosed)
	r.Close()
	_, err = j.Complete()
	wantIs(t, err, ErrClosed)
	for _, err := range db.Jobs() {
		wantIs(t, err, ErrClosed)
	}
	err = db.Run(context.Background(), RunOptions{}, func(context.Context, *Job) error { return nil })
	wantIs(t, err, ErrClosed)

	// The held job went back to pending when the DB closed.
	db, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pending := collect(t, db.Pending())
	if len(pending) != 1 || pending[0].Created != created || pending[0].Running {
		t.Fatalf("pending after close %#v", pending)
	}
}

func TestCloseWhileInUse(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "busy.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() {
		runDone <- db.Run(context.Background(), RunOptions{Workers: 2}, func(ctx context.Context, j *Job) error {
			_, err := io.Copy(j, j)
			return err
		})
	}()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				_, _, err := db.Add(strings.NewReader(fmt.Sprintf("%d-%d", g, i)))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				for _, err := range db.Pending() {
					if err != nil && !errors.Is(err, ErrClosed) {
						t.Error(err)
					}
					break
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	select {
	case err := <-runDone:
		wantIs(t, err, ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return when the DB was closed")
	}
}

func TestVersion(t *testing.T) {
	if v := Version(); v == "" || strings.Count(v, ".") < 2 {
		t.Fatalf("version %q", v)
	}
}

func TestDroppedJobAndReaderAreReleased(t *testing.T) {
	if leakCheck {
		t.Skip("the leak check turns a dropped handle into a panic")
	}
	db := openTemp(t, nil)
	key, created := addString(t, db, "dropped")
	func() {
		if j := must[*Job](t)(db.Claim()); j.Created() != created {
			t.Fatal("claimed the wrong instance")
		}
		if _, err := db.Get(key); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		db.s.mu.Lock()
		open := len(db.s.children)
		db.s.mu.Unlock()
		pending := collect(t, db.Pending())
		if open == 0 && len(pending) == 1 && !pending[0].Running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dropped handles not released: %d open, pending %#v", open, pending)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cpuTime is the CPU (user + system) this process has used so far, and how many times its
// threads went to sleep (voluntary context switches).
func cpuTime(t *testing.T) (time.Duration, int64) {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Nvcsw
}

func TestWaitingRunIdlesCheaplyAndStartsDelayedOnTime(t *testing.T) {
	db := openTemp(t, nil)
	// Queued, but not due for an hour: the waiting Run must sleep, not spin.
	if _, _, err := db.AddWith(strings.NewReader("much later"), PushOptions{Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- db.Run(ctx, RunOptions{Workers: 2}, func(ctx context.Context, j *Job) error {
			_, err := io.Copy(j, j)
			return err
		})
	}()
	time.Sleep(300 * time.Millisecond)
	before, sleptBefore := cpuTime(t)
	time.Sleep(3 * time.Second)
	after, sleptAfter := cpuTime(t)
	used, sleeps := after-before, sleptAfter-sleptBefore
	t.Logf("idle Run with a delay an hour away: %v of CPU and %d sleeps over 3 s", used, sleeps)
	// Counts a loaded machine does not push past the bound (a 30 ms CPU bound failed the
	// Rust twin of this test at 32 ms once): a spinning Run uses the whole core, and a
	// polling one wakes thousands of times. About 80 sleeps measured; the Go runtime's own
	// monitor thread may add up to 100 a second when idle, hence 1000.
	if used > 300*time.Millisecond { // 10% of a core
		t.Errorf("an idle Run used %v of CPU in 3 s: it spins", used)
	}
	if sleeps > 1000 {
		t.Errorf("an idle Run's process slept and woke %d times in 3 s: it polls", sleeps)
	}

	_, created, err := db.AddWith(strings.NewReader("soon"), PushOptions{Delay: 600 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var start int64
	for deadline := time.Now().Add(5 * time.Second); start == 0 && time.Now().Before(deadline); {
		for r, err := range db.Results() {
			if err != nil {
				t.Fatal(err)
			}
			if r.Created == created {
				start = r.Start
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	late := start - (created + 600)
	t.Logf("the delayed instance started %d ms after its run_at", late)
	// Quiet runs measure 0-6 ms; the bound leaves a loaded machine a second of scheduling
	// delay, and still fails a Run that polls every few seconds or never wakes for the delay.
	if start == 0 || late < 0 || late >= 1000 {
		t.Errorf("the delayed instance started %d ms after its run_at (start %d)", late, start)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
}
