package batchdb

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The queue features of API.md section 9. Waits are for conditions, with generous deadlines:
// the suite runs on loaded machines and never asserts speed.

func addIn(t *testing.T, db *DB, payload, queue string) (string, int64) {
	t.Helper()
	k, c, err := db.AddWith(strings.NewReader(payload), PushOptions{Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	return k, c
}

func claimFrom(t *testing.T, db *DB, queues ...string) *Job {
	t.Helper()
	j, err := db.ClaimFrom(queues...)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func complete(t *testing.T, j *Job) {
	t.Helper()
	if _, err := j.Complete(); err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls cond every 20 ms until it holds or the deadline passes.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pendingByCreated(t *testing.T, db *DB) map[int64]PendingRow {
	t.Helper()
	rows := map[int64]PendingRow{}
	for _, r := range listed(t, db.Pending()) {
		rows[r.Created] = r
	}
	return rows
}

func TestQueuesAndClaimFrom(t *testing.T) {
	db := openTemp(t, nil)
	_, ca := addIn(t, db, "in alpha", "alpha")
	_, cb := addIn(t, db, "in beta", "beta")
	_, cd := addIn(t, db, "in default", "")

	rows := pendingByCreated(t, db)
	if rows[ca].Queue != "alpha" || rows[cb].Queue != "beta" || rows[cd].Queue != "" {
		t.Fatalf("queues of the pending rows: %+v", rows)
	}
	b, _ := json.Marshal(rows[ca])
	if !strings.Contains(string(b), `"queue":"alpha"`) {
		t.Fatalf("pending row JSON %s lacks its queue", b)
	}
	if b, _ := json.Marshal(rows[cd]); strings.Contains(string(b), "queue") {
		t.Fatalf("a default-queue row's JSON names its queue: %s", b)
	}

	j := claimFrom(t, db, "beta")
	if j == nil || j.Created() != cb {
		t.Fatalf("ClaimFrom(beta) = %+v", j)
	}
	complete(t, j)
	if j := claimFrom(t, db, "beta", "gamma"); j != nil {
		t.Fatalf("ClaimFrom(beta, gamma) took %d", j.Created())
	}
	j = claimFrom(t, db) // every queue, newest first
	if j == nil || j.Created() != cd {
		t.Fatalf("ClaimFrom() = %+v", j)
	}
	complete(t, j)

	// A Run serves its queues only.
	_, cg := addIn(t, db, "in gamma", "gamma")
	var ran []int64
	err := db.Run(context.Background(), RunOptions{UntilEmpty: true, Queues: []string{"gamma"}}, func(_ context.Context, j *Job) error {
		ran = append(ran, j.Created())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ran, []int64{cg}) {
		t.Fatalf("Run(gamma) ran %v, want [%d]", ran, cg)
	}
	if rows := pendingByCreated(t, db); len(rows) != 1 || rows[ca].Queue != "alpha" {
		t.Fatalf("pending after Run(gamma): %+v", rows)
	}
}

func TestLimitHoldsAcrossHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "limit.db")
	open := func() *DB {
		db, err := Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	a, b := open(), open()
	for i := range 6 {
		addIn(t, a, "job "+string(rune('0'+i)), "lim")
	}
	if err := a.Limit("lim", 2); err != nil {
		t.Fatal(err)
	}
	j1, j2 := claimFrom(t, a, "lim"), claimFrom(t, b, "lim")
	if j1 == nil || j2 == nil {
		t.Fatal("two claims under a limit of 2 failed")
	}
	if j := claimFrom(t, b, "lim"); j != nil {
		t.Fatal("a third claim passed the limit of 2")
	}
	if j, err := a.Claim(); err != nil || j != nil {
		t.Fatalf("Claim past the limit: %v, %v", j, err)
	}
	complete(t, j1) // frees a slot, for the other handle too
	j3 := claimFrom(t, b, "lim")
	if j3 == nil {
		t.Fatal("no claim after a slot was freed")
	}
	if j := claimFrom(t, a, "lim"); j != nil {
		t.Fatal("a claim passed the limit after a slot was reused")
	}
	complete(t, j2)
	complete(t, j3)

	// Two Runs of 3 workers each, one per handle: never more than 2 at once.
	var inFlight, most, done atomic.Int32
	runner := func(_ context.Context, j *Job) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(50 * time.Millisecond)
		done.Add(1)
		return nil
	}
	for i := range 8 {
		addIn(t, a, "more "+string(rune('a'+i)), "lim")
	}
	var wg sync.WaitGroup
	for _, db := range []*DB{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.Run(context.Background(), RunOptions{Workers: 3, UntilEmpty: true, Queues: []string{"lim"}}, runner); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if done.Load() != 11 || most.Load() > 2 {
		t.Fatalf("%d jobs ran, at most %d at once (limit 2)", done.Load(), most.Load())
	}

	// 0 removes the limit.
	if err := b.Limit("lim", 0); err != nil {
		t.Fatal(err)
	}
	addIn(t, a, "x", "lim")
	addIn(t, a, "y", "lim")
	j1, j2 = claimFrom(t, a, "lim"), claimFrom(t, b, "lim")
	if j1 == nil || j2 == nil {
		t.Fatal("claims failed without a limit")
	}
	complete(t, j1)
	complete(t, j2)
}

func TestPauseResumeAcrossHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pause.db")
	worker, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	admin, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	if err := admin.Pause("p"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ranP, ranOther atomic.Int32
	errc := make(chan error, 1)
	go func() {
		errc <- worker.Run(ctx, RunOptions{Workers: 2}, func(_ context.Context, j *Job) error {
			b, _ := io.ReadAll(j)
			if strings.HasPrefix(string(b), "paused") {
				ranP.Add(1)
			} else {
				ranOther.Add(1)
			}
			return nil
		})
	}()
	_, cp := addIn(t, admin, "paused one", "p")
	addIn(t, admin, "other one", "o")
	// The other queue runs; once it has, the paused one has had its chances too.
	waitUntil(t, 10*time.Second, "the unpaused queue's job ran", func() bool { return ranOther.Load() == 1 })
	time.Sleep(300 * time.Millisecond)
	if ranP.Load() != 0 {
		t.Fatal("an instance of a paused queue ran")
	}
	if r, ok := pendingByCreated(t, admin)[cp]; !ok || r.Running || r.Queue != "p" {
		t.Fatalf("the paused instance's row: %+v, %v", r, ok)
	}
	// An until-empty run is not held by the paused queue.
	if err := admin.Run(context.Background(), RunOptions{UntilEmpty: true}, func(context.Context, *Job) error {
		return errors.New("must not run")
	}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Resume("p"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the resumed queue's job ran", func() bool { return ranP.Load() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if err := admin.Resume("never-paused"); err != nil {
		t.Fatal(err)
	}
}

func TestUniquePush(t *testing.T) {
	db := openTemp(t, nil)
	uq := PushOptions{Queue: "uq", Unique: true}
	key, c1, err := db.AddWith(strings.NewReader("only once"), uq)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := db.PushWith(key, uq); err != nil || c != c1 {
		t.Fatalf("unique push of a pending job: %d, %v; want %d", c, err, c1)
	}
	if _, c, err := db.AddWith(strings.NewReader("only once"), uq); err != nil || c != c1 {
		t.Fatalf("unique add of a pending job: %d, %v; want %d", c, err, c1)
	}
	// Another queue is looked at on its own.
	c2, err := db.PushWith(key, PushOptions{Queue: "other", Unique: true})
	if err != nil || c2 == c1 {
		t.Fatalf("unique push into another queue: %d, %v", c2, err)
	}
	// A running instance counts too.
	j := claimFrom(t, db, "uq")
	if j == nil || j.Created() != c1 {
		t.Fatal("claim from uq")
	}
	if c, err := db.PushWith(key, uq); err != nil || c != c1 {
		t.Fatalf("unique push of a running job: %d, %v; want %d", c, err, c1)
	}
	if n := len(listed(t, db.Pending())); n != 2 {
		t.Fatalf("%d pending rows, want 2", n)
	}
	complete(t, j)
	c3, err := db.PushWith(key, uq)
	if err != nil || c3 <= c1 {
		t.Fatalf("unique push after the instance finished: %d, %v", c3, err)
	}
	// Without Unique a second instance is queued.
	if c, err := db.PushWith(key, PushOptions{Queue: "uq"}); err != nil || c == c3 {
		t.Fatalf("plain push: %d, %v", c, err)
	}
}

func TestScheduleEverySecond(t *testing.T) {
	db := openTemp(t, nil)
	before := time.Now().UnixMilli()
	s, err := db.Schedule("ticker", "every 1s", strings.NewReader("tick"), PushOptions{Queue: "sched"})
	if err != nil {
		t.Fatal(err)
	}
	want, err := db.Create(strings.NewReader("tick"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "ticker" || s.Spec != "every 1s" || s.Queue != "sched" || s.Job != want ||
		s.NextRun%1000 != 0 || s.NextRun < before-1000 || s.NextRun > time.Now().UnixMilli()+1000 {
		t.Fatalf("Schedule returned %+v", s)
	}
	nightly, err := db.Schedule("nightly", " 0 3 * * * ", strings.NewReader("nightly"), PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rows := listed(t, db.Schedules())
	if len(rows) != 2 || rows[0] != nightly || rows[1] != s {
		t.Fatalf("Schedules: %+v; want %+v, then %+v", rows, nightly, s)
	}
	if rows[0].Queue != "default" || rows[0].Spec != "0 3 * * *" || rows[0].NextRun%86_400_000 != 3*3_600_000 {
		t.Fatalf("the cron schedule's row: %+v", rows[0])
	}
	b, _ := json.Marshal(rows[1])
	var shape map[string]any
	if err := json.Unmarshal(b, &shape); err != nil || len(shape) != 5 || shape["name"] != "ticker" ||
		shape["spec"] != "every 1s" || shape["queue"] != "sched" || shape["job"] != want || shape["next_run"] == nil {
		t.Fatalf("schedule row JSON %s", b)
	}

	// A waiting Run serving the queue gets the slot's instance.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ran atomic.Int32
	errc := make(chan error, 1)
	go func() {
		errc <- db.Run(ctx, RunOptions{Queues: []string{"sched"}}, func(_ context.Context, j *Job) error {
			if j.Key() != want {
				return errors.New("not the schedule's job")
			}
			ran.Add(1)
			return nil
		})
	}()
	waitUntil(t, 5*time.Second, "an instance of the every-1s schedule ran", func() bool { return ran.Load() >= 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if len(listed(t, db.Failures())) != 0 {
		t.Fatal("the scheduled instance failed")
	}

	// Replace, then remove; an unknown name is ErrNotFound.
	if r, err := db.Schedule("ticker", "*/5 * * * *", strings.NewReader("tock"), PushOptions{}); err != nil || r.NextRun%300_000 != 0 {
		t.Fatalf("replacing: %+v, %v", r, err)
	}
	if n := len(listed(t, db.Schedules())); n != 2 {
		t.Fatalf("%d schedules after a replace, want 2", n)
	}
	for _, name := range []string{"ticker", "nightly"} {
		if err := db.Unschedule(name); err != nil {
			t.Fatal(err)
		}
	}
	wantIs(t, db.Unschedule("ticker"), ErrNotFound)
	if n := len(listed(t, db.Schedules())); n != 0 {
		t.Fatalf("%d schedules after removing both", n)
	}
}

func TestProgress(t *testing.T) {
	db := openTemp(t, nil)
	_, created := addString(t, db, "long job")
	j := claimFrom(t, db)
	if r := pendingByCreated(t, db)[created]; !r.Running || r.Progress != nil {
		t.Fatalf("running row before any report: %+v", r)
	}
	if err := j.Progress(0.5, "half way"); err != nil {
		t.Fatal(err)
	}
	r := pendingByCreated(t, db)[created]
	if r.Progress == nil || *r.Progress != (Progress{Done: 0.5, Message: "half way"}) {
		t.Fatalf("row after a report: %+v", r)
	}
	b, _ := json.Marshal(r)
	if !strings.Contains(string(b), `"progress":{"done":0.5,"message":"half way"}`) {
		t.Fatalf("row JSON %s", b)
	}
	for _, bad := range []struct {
		done float64
		msg  string
	}{{-0.1, "x"}, {1.5, "x"}, {math.NaN(), "x"}, {math.Inf(1), "x"}, {0.6, strings.Repeat("x", 1001)}, {0.6, "a\x00b"}, {0.6, "\xff"}} {
		wantIs(t, j.Progress(bad.done, bad.msg), ErrInvalid)
	}
	if r := pendingByCreated(t, db)[created]; *r.Progress != (Progress{Done: 0.5, Message: "half way"}) {
		t.Fatalf("a refused report changed the row: %+v", r.Progress)
	}
	complete(t, j)
	if err := j.Progress(1, "late"); !errors.Is(err, ErrMisuse) {
		t.Fatalf("Progress on a finished job: %v", err)
	}

	// From a Run callback, on the lent job.
	addString(t, db, "in a run")
	seen := make(chan PendingRow, 1)
	err := db.Run(context.Background(), RunOptions{UntilEmpty: true}, func(_ context.Context, j *Job) error {
		if err := j.Progress(0.25, "a quarter"); err != nil {
			return err
		}
		for r := range db.Pending() {
			if r.Created == j.Created() {
				seen <- r
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := <-seen; r.Progress == nil || *r.Progress != (Progress{Done: 0.25, Message: "a quarter"}) {
		t.Fatalf("row seen from the callback: %+v", r)
	}
	if n := len(listed(t, db.Failures())); n != 0 {
		t.Fatalf("%d failures", n)
	}
}

// snapshotRows is every listing as JSON: what "nothing changed" compares.
func snapshotRows(t *testing.T, db *DB) string {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, r := range listed(t, db.Jobs()) {
		enc.Encode(r)
	}
	for _, r := range listed(t, db.Pending()) {
		enc.Encode(r)
	}
	for _, r := range listed(t, db.Schedules()) {
		enc.Encode(r)
	}
	return b.String()
}

func TestQueueBadInput(t *testing.T) {
	db := openTemp(t, nil)
	key, _ := addIn(t, db, "job", "q")
	if err := db.Limit("q", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Schedule("nightly", "0 3 * * *", strings.NewReader("job"), PushOptions{Queue: "q"}); err != nil {
		t.Fatal(err)
	}
	before := snapshotRows(t, db)

	for _, name := range []string{"has space", "a/b", "été", strings.Repeat("a", 65), "tab\there", "nul\x00", "\xff"} {
		_, err := db.PushWith(key, PushOptions{Queue: name})
		wantIs(t, err, ErrInvalid)
		_, _, err = db.AddWith(strings.NewReader("new"), PushOptions{Queue: name})
		wantIs(t, err, ErrInvalid)
		wantIs(t, db.Limit(name, 1), ErrInvalid)
		wantIs(t, db.Pause(name), ErrInvalid)
		wantIs(t, db.Resume(name), ErrInvalid)
		_, err = db.ClaimFrom("q", name)
		wantIs(t, err, ErrInvalid)
		err = db.Run(context.Background(), RunOptions{UntilEmpty: true, Queues: []string{name}}, func(context.Context, *Job) error { return nil })
		wantIs(t, err, ErrInvalid)
		_, err = db.Schedule(name, "every 1s", strings.NewReader("new"), PushOptions{})
		wantIs(t, err, ErrInvalid)
		_, err = db.Schedule("fine", "every 1s", strings.NewReader("new"), PushOptions{Queue: name})
		wantIs(t, err, ErrInvalid)
		wantIs(t, db.Unschedule(name), ErrInvalid)
	}
	for _, name := range []string{""} {
		wantIs(t, db.Limit(name, 1), ErrInvalid)
		wantIs(t, db.Pause(name), ErrInvalid)
		wantIs(t, db.Unschedule(name), ErrInvalid)
		_, err := db.Schedule(name, "every 1s", strings.NewReader("new"), PushOptions{})
		wantIs(t, err, ErrInvalid)
	}
	wantIs(t, db.Limit("q", -1), ErrInvalid)
	wantIs(t, db.Limit("q", 1<<32), ErrInvalid)
	for _, spec := range []string{"", "every", "every 0s", "every -1s", "every soon", "* * * *", "* * * * * *",
		"61 * * * *", "0 25 * * *", "@daily", "0 0 30 2 *"} {
		_, err := db.Schedule("nightly", spec, strings.NewReader("new"), PushOptions{})
		wantIs(t, err, ErrInvalid)
	}
	_, err := db.Schedule("s", "every 1s", nil, PushOptions{})
	wantIs(t, err, ErrInvalid)
	_, err = db.Schedule("s", "every 1s", strings.NewReader("x"), PushOptions{Delay: -time.Second})
	wantIs(t, err, ErrInvalid)
	wantIs(t, db.Unschedule("unknown"), ErrNotFound)

	if after := snapshotRows(t, db); after != before {
		t.Fatalf("bad input changed the database:\n%s\nbecame\n%s", before, after)
	}
	// The limit of 1 still holds.
	addIn(t, db, "second", "q")
	j := claimFrom(t, db, "q")
	if j == nil {
		t.Fatal("no claim")
	}
	if j2 := claimFrom(t, db, "q"); j2 != nil {
		t.Fatal("the limit of 1 was changed by bad input")
	}
	complete(t, j)
}

func TestIsIdle(t *testing.T) {
	db := openTemp(t, nil)
	if idle, err := db.IsIdle(); err != nil || !idle {
		t.Fatalf("empty database: %v %v", idle, err)
	}
	if _, err := db.PushWith(mustAdd(t, db, "p"), PushOptions{Queue: "p"}); err != nil {
		t.Fatal(err)
	}
	if idle, _ := db.IsIdle(); idle {
		t.Fatal("ready work, yet idle")
	}
	if idle, _ := db.IsIdle("other"); !idle {
		t.Fatal("a queue not served counted")
	}
	if err := db.Pause("p"); err != nil {
		t.Fatal(err)
	}
	if idle, _ := db.IsIdle(); !idle {
		t.Fatal("a paused queue counted")
	}
	if _, err := db.IsIdle("bad name"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad queue name: %v", err)
	}
}

func mustAdd(t *testing.T, db *DB, payload string) string {
	t.Helper()
	key, err := db.Create(strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	return key
}
