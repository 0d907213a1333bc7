package batchdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// The content-addressed pipelines of API.md section 10: memoized pushes, upstreams, lineage.

func claimOne(t *testing.T, db *DB) *Job {
	t.Helper()
	j, err := db.Claim()
	if err != nil {
		t.Fatal(err)
	}
	if j == nil {
		t.Fatal("nothing to claim")
	}
	return j
}

func completeWith(t *testing.T, j *Job, output string) string {
	t.Helper()
	if _, err := j.Write([]byte(output)); err != nil {
		t.Fatal(err)
	}
	h, err := j.Complete()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestMemoSubmit(t *testing.T) {
	db := openTemp(t, nil)
	memo := PushOptions{Memo: true}
	key, p, err := db.SubmitAdd(strings.NewReader("memo me"), memo)
	if err != nil || p.Cached != "" || p.Created == 0 {
		t.Fatalf("first memo add: %+v, %v", p, err)
	}
	first := p.Created
	// Pending, then running: joined.
	if p := must[Pushed](t)(db.Submit(key, memo)); p != (Pushed{Created: first}) {
		t.Fatalf("memo push of a pending job: %+v", p)
	}
	j := claimOne(t, db)
	if c := must[int64](t)(db.PushWith(key, memo)); c != first {
		t.Fatalf("memo push of a running job: created %d, want %d", c, first)
	}
	hash := completeWith(t, j, "memo result")
	// A result: reused, nothing queued.
	p = must[Pushed](t)(db.Submit(key, memo))
	if p != (Pushed{Created: first, Cached: hash}) {
		t.Fatalf("memo hit: %+v, want created %d cached %s", p, first, hash)
	}
	k2, p2, err := db.SubmitAdd(strings.NewReader("memo me"), memo)
	if err != nil || k2 != key || p2 != p {
		t.Fatalf("memo add hit: %s %+v %v", k2, p2, err)
	}
	if _, c, err := db.AddWith(strings.NewReader("memo me"), memo); err != nil || c != first {
		t.Fatalf("AddWith memo hit: %d %v", c, err)
	}
	if got := readAll(t, db, p.Cached); got != "memo result" {
		t.Fatalf("cached output %q", got)
	}
	if n := len(collect(t, db.Pending())); n != 0 {
		t.Fatalf("%d pending after memo hits", n)
	}
	// Without Memo, Submit queues and reports no cache.
	p = must[Pushed](t)(db.Submit(key, PushOptions{}))
	if p.Cached != "" || p.Created <= first {
		t.Fatalf("plain submit: %+v", p)
	}
	newest := completeWith(t, claimOne(t, db), "newer")
	if p := must[Pushed](t)(db.Submit(key, memo)); p.Cached != newest {
		t.Fatalf("memo hit after two results: %+v, want the newest %s", p, newest)
	}
}

func TestMemoConcurrentSubmitsRunOnce(t *testing.T) {
	db := openTemp(t, nil)
	var wg sync.WaitGroup
	created := make([]int64, 16)
	for i := range created {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, p, err := db.SubmitAdd(strings.NewReader("once"), PushOptions{Memo: true})
			if err != nil {
				t.Error(err)
			}
			created[i] = p.Created
		}()
	}
	wg.Wait()
	for _, c := range created {
		if c != created[0] {
			t.Fatalf("memo adds got different instances: %v", created)
		}
	}
	if n := len(collect(t, db.Pending())); n != 1 {
		t.Fatalf("%d pending, want 1", n)
	}
}

func TestAfterWaitsAndListsInputs(t *testing.T) {
	db := openTemp(t, nil)
	ka, ca := addString(t, db, "up a")
	kb, cb := addString(t, db, "up b")
	ups := []Instance{{ka, ca}, {kb, cb}}
	kd, cd, err := db.AddWith(strings.NewReader("down"), PushOptions{After: ups})
	if err != nil {
		t.Fatal(err)
	}
	rows := pendingByCreated(t, db)
	if !reflect.DeepEqual(rows[cd].After, ups) {
		t.Fatalf("waiting row's After %+v, want %+v", rows[cd].After, ups)
	}
	b, _ := json.Marshal(rows[cd])
	if want := fmt.Sprintf(`"after":[["%s",%d],["%s",%d]]`, ka, ca, kb, cb); !strings.Contains(string(b), want) {
		t.Fatalf("pending JSON %s lacks %s", b, want)
	}
	j1, j2 := claimOne(t, db), claimOne(t, db)
	if j1.After() != nil || j2.After() != nil {
		t.Fatal("upstreams without After list inputs")
	}
	if j, err := db.Claim(); j != nil || err != nil {
		t.Fatalf("the dependent was claimable before its inputs: %v %v", j, err)
	}
	hashes := map[int64]string{}
	hashes[j1.Created()] = completeWith(t, j1, "out "+fmt.Sprint(j1.Created()))
	if j, _ := db.Claim(); j != nil {
		t.Fatal("claimable with one input of two")
	}
	hashes[j2.Created()] = completeWith(t, j2, "out "+fmt.Sprint(j2.Created()))
	if after := pendingByCreated(t, db)[cd].After; after != nil {
		t.Fatalf("ready row still shows After %+v", after)
	}
	j := claimOne(t, db)
	want := []Upstream{{ka, ca, hashes[ca]}, {kb, cb, hashes[cb]}}
	if j.Key() != kd || !reflect.DeepEqual(j.After(), want) {
		t.Fatalf("job %s after %+v, want %s after %+v", j.Key(), j.After(), kd, want)
	}
	if got := readAll(t, db, j.After()[1].Hash); got != fmt.Sprint("out ", cb) {
		t.Fatalf("input b reads %q", got)
	}
	ub, _ := json.Marshal(j.After()[0])
	if string(ub) != fmt.Sprintf(`{"key":"%s","created":%d,"hash":"%s"}`, ka, ca, hashes[ca]) {
		t.Fatalf("Upstream JSON %s", ub)
	}
	completeWith(t, j, "joined")

	// A lent job in Run lists them too.
	if _, err := db.PushWith(kd, PushOptions{After: ups[:1]}); err != nil {
		t.Fatal(err)
	}
	var seen []Upstream
	err = db.Run(context.Background(), RunOptions{UntilEmpty: true}, func(ctx context.Context, j *Job) error {
		seen = j.After()
		return nil
	})
	if err != nil || !reflect.DeepEqual(seen, want[:1]) {
		t.Fatalf("Run saw %+v (%v), want %+v", seen, err, want[:1])
	}
}

func TestFailedUpstreamCascades(t *testing.T) {
	db := openTemp(t, nil)
	ku, cu := addString(t, db, "will fail")
	kd, cd, err := db.AddWith(strings.NewReader("dependent"), PushOptions{After: []Instance{{ku, cu}}})
	if err != nil {
		t.Fatal(err)
	}
	_, ce, err := db.AddWith(strings.NewReader("grandchild"), PushOptions{After: []Instance{{kd, cd}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := claimOne(t, db).Fail("boom"); err != nil {
		t.Fatal(err)
	}
	msgs := map[int64]string{}
	for _, f := range collect(t, db.Failures()) {
		msgs[f.Created] = f.Message
	}
	if msgs[cd] != fmt.Sprintf("upstream %s %d failed", ku, cu) || msgs[ce] != fmt.Sprintf("upstream %s %d failed", kd, cd) {
		t.Fatalf("fail rows: %v", msgs)
	}
	// A push after a failed upstream succeeds and is a fail row at once.
	p, err := db.Submit(kd, PushOptions{After: []Instance{{ku, cu}}})
	if err != nil || p.Cached != "" {
		t.Fatalf("push after a failed upstream: %+v %v", p, err)
	}
	if n := len(collect(t, db.Pending())); n != 0 {
		t.Fatalf("%d pending", n)
	}
	found := false
	for _, f := range collect(t, db.Failures()) {
		found = found || (f.Created == p.Created && strings.HasPrefix(f.Message, "upstream "))
	}
	if !found {
		t.Fatal("no fail row for the push after a failed upstream")
	}
}

func TestAfterBadInput(t *testing.T) {
	db := openTemp(t, nil)
	key, created := addString(t, db, "up")
	before := collect(t, db.Pending())
	_, err := db.PushWith(key, PushOptions{After: []Instance{{key, created + 1}}})
	wantIs(t, err, ErrNotFound)
	_, _, err = db.AddWith(strings.NewReader("new"), PushOptions{After: []Instance{{strings.Repeat("0", 64), created}}})
	wantIs(t, err, ErrNotFound)
	_, err = db.Submit(key, PushOptions{After: []Instance{{"abc", created}}})
	wantIs(t, err, ErrInvalid)
	// A key longer than 64 characters is not cut to a valid one.
	_, err = db.Submit(key, PushOptions{After: []Instance{{key + "00", created}}})
	wantIs(t, err, ErrInvalid)
	if after := collect(t, db.Pending()); !reflect.DeepEqual(after, before) {
		t.Fatalf("pending changed: %+v -> %+v", before, after)
	}
	_, err = db.Why("xyz")
	wantIs(t, err, ErrInvalid)
	_, err = db.Why(strings.Repeat("0", 64))
	wantIs(t, err, ErrNotFound)
}

func TestWhy(t *testing.T) {
	db := openTemp(t, nil)
	ka, ca := addString(t, db, "same")
	completeWith(t, claimOne(t, db), "same") // output = payload: one blob, two lines
	kd, cd, err := db.AddWith(strings.NewReader("derived"), PushOptions{After: []Instance{{ka, ca}}})
	if err != nil {
		t.Fatal(err)
	}
	hd := completeWith(t, claimOne(t, db), "derived output")

	lines := must[[]Lineage](t)(db.Why(ka))
	want := []Lineage{{Job: ka}, {Result: &Instance{ka, ca}, After: []Instance{}}}
	if !reflect.DeepEqual(lines, want) {
		t.Fatalf("why payload+output: %+v, want %+v", lines, want)
	}
	lines = must[[]Lineage](t)(db.Why(hd))
	want = []Lineage{{Result: &Instance{kd, cd}, After: []Instance{{ka, ca}}}}
	if !reflect.DeepEqual(lines, want) {
		t.Fatalf("why output: %+v, want %+v", lines, want)
	}
	b, _ := json.Marshal(lines[0])
	if string(b) != fmt.Sprintf(`{"result":["%s",%d],"after":[["%s",%d]]}`, kd, cd, ka, ca) {
		t.Fatalf("lineage JSON %s", b)
	}
	var back Lineage
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, lines[0]) {
		t.Fatalf("lineage round trip: %+v %v", back, err)
	}
	jb, _ := json.Marshal(Lineage{Job: ka})
	if string(jb) != fmt.Sprintf(`{"job":"%s"}`, ka) {
		t.Fatalf("job line JSON %s", jb)
	}
	rb, _ := json.Marshal(Lineage{Result: &Instance{ka, ca}})
	if !strings.Contains(string(rb), `"after":[]`) {
		t.Fatalf("a result line without upstreams must carry \"after\": [] (%s)", rb)
	}
	for _, bad := range []string{`{}`, `{"job":"a","result":["a",1],"after":[]}`, `{"result":["a",1]}`, `{"result":["a"],"after":[]}`, `{"result":["a",1],"after":[null]}`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("Lineage accepted %s", bad)
		}
	}
}

func TestBackupAndCopyTo(t *testing.T) {
	db := openTemp(t, nil)
	key, _, err := db.Add(strings.NewReader("echo copied"))
	if err != nil {
		t.Fatal(err)
	}
	j := claimOne(t, db)
	out := completeWith(t, j, "copied output")
	if _, err := db.Push(key); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dest := dir + "/backup.db"
	if err := db.Backup(dest); err != nil {
		t.Fatal(err)
	}
	if err := db.Backup(dest); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a second backup to the same file: %v", err)
	}
	target, err := Open(dir+"/copy.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	r, err := db.CopyTo(target)
	if err != nil {
		t.Fatal(err)
	}
	if r.BlobsSent != 2 || r.Rows == 0 {
		t.Fatalf("first copy: %+v", r)
	}
	r, err = db.CopyTo(target)
	if err != nil || r.BlobsSent != 0 {
		t.Fatalf("second copy: %+v %v", r, err)
	}
	for _, d := range []*DB{target} {
		rc, err := d.Get(out)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != "copied output" {
			t.Fatalf("copied blob: %q", b)
		}
		n := 0
		for _, err := range d.Pending() {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != 1 {
			t.Fatalf("pending rows in the copy: %d", n)
		}
	}
	stranger := openTemp(t, nil)
	if _, _, err := stranger.Add(strings.NewReader("mine")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CopyTo(stranger); !errors.Is(err, ErrInvalid) {
		t.Fatalf("copy into a stranger: %v", err)
	}
	if _, err := db.CopyTo(nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("copy into nil: %v", err)
	}
}
