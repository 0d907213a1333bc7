package batchdb

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRowJSON decodes arbitrary bytes as each row type and holds the decoder to a reference
// model written independently over a generic parse: it accepts exactly the inputs that have
// every field of the contract's shape, with the right JSON types, matched by exact name, and
// decodes them to what the input says; anything else is an error, never a half-filled row.
// Whatever it accepts marshals back to the contract's shape and decodes to the same row.
func FuzzRowJSON(f *testing.F) {
	k := seedKey
	for _, s := range []string{
		`{"key":"` + k + `","running":[]}`,
		`{"key":"` + k + `","running":[5,6]}`,
		`{"job":"` + k + `","created":7,"running":false}`,
		`{"job":"` + k + `","created":7,"running":true,"priority":2,"run_at":9}`,
		`{"job":"` + k + `","created":7,"running":true,"queue":"q.1","progress":{"done":0.5,"message":"half"}}`,
		`{"job":"` + k + `","created":7,"running":false,"queue":"default"}`,
		`{"job":"` + k + `","created":7,"running":true,"progress":{"done":1}}`,
		`{"job":"` + k + `","created":7,"running":true,"progress":[0.5,"x"]}`,
		`{"job":"` + k + `","created":7,"running":false,"after":[["` + k + `",3],["` + k + `",4]]}`,
		`{"job":"` + k + `","created":7,"running":false,"after":[]}`,
		`{"job":"` + k + `","created":7,"running":false,"after":[null]}`,
		`{"job":"` + k + `","created":7,"running":false,"after":[["` + k + `"]]}`,
		`{"job":"` + k + `","created":7,"running":false,"after":[["` + k + `",null]]}`,
		`{"job":"` + k + `","created":7,"running":false,"after":[[3,"` + k + `"]]}`,
		`{"key":["` + k + `",7],"value":{"hash":"h","start":8,"end":9,"created":7}}`,
		`{"key":["` + k + `",7],"value":{"message":"m \"q\" \u00e9","start":8,"end":9,"attempts":3}}`,
		`null`,
		`{}`,
		// Each of these decoded to a row before the decoders became strict.
		`{"KEY":"` + k + `","running":[]}`,
		`{"key":"` + k + `","running":[1,null]}`,
		`{"key":["` + k + `",7],"value":{"hash":"h","start":8,"end":9,"created":5}}`,
		`{"key":["` + k + `",null],"value":{"message":"m","start":8,"end":9,"attempts":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRowJSON(t, data, refJobRow)
		checkRowJSON(t, data, refPendingRow)
		checkRowJSON(t, data, refResultRow)
		checkRowJSON(t, data, refFailRow)
	})
}

func checkRowJSON[T any](t *testing.T, data []byte, ref func(map[string]any) (T, bool)) {
	t.Helper()
	var got T
	err := json.Unmarshal(data, &got)
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		// encoding/json's convention: null leaves the value as it is.
		if err != nil || !reflect.ValueOf(got).IsZero() {
			t.Fatalf("%T from null: %+v, %v; want the zero row and no error", got, got, err)
		}
		return
	}
	want, ok := T(*new(T)), false
	var generic any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if json.Valid(data) && d.Decode(&generic) == nil {
		if m, isObj := generic.(map[string]any); isObj {
			want, ok = ref(m)
		}
	}
	if !ok {
		if err == nil {
			t.Fatalf("%T accepted %q as %+v; want an error", got, data, got)
		}
		return
	}
	if err != nil {
		t.Fatalf("%T rejected %q: %v; want %+v", got, data, err, want)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%T decoded %q as\n %+v\nwant\n %+v", got, data, got, want)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("%T: marshal %+v: %v", got, got, err)
	}
	var back T
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%T: decoding its own %s: %v", got, b, err)
	}
	if !reflect.DeepEqual(back, got) {
		t.Fatalf("%T round trip: %+v became %+v through %s", got, got, back, b)
	}
	if again, _ := json.Marshal(back); !bytes.Equal(again, b) {
		t.Fatalf("%T marshals %s, then %s", got, b, again)
	}
}

// The reference model: each field is looked up by its exact name, and null counts as absent.

func refMember(m map[string]any, name string) (any, bool) {
	v, ok := m[name]
	return v, ok && v != nil
}

func refString(m map[string]any, name string) (string, bool) {
	v, _ := refMember(m, name)
	s, ok := v.(string)
	return s, ok
}

func refInt(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	return i, err == nil
}

func refIntMember(m map[string]any, name string) (int64, bool) {
	v, _ := refMember(m, name)
	return refInt(v)
}

func refJobRow(m map[string]any) (JobRow, bool) {
	key, ok := refString(m, "key")
	v, _ := refMember(m, "running")
	list, isList := v.([]any)
	if !ok || !isList {
		return JobRow{}, false
	}
	running := make([]int64, 0, len(list))
	for _, e := range list {
		c, ok := refInt(e)
		if !ok {
			return JobRow{}, false
		}
		running = append(running, c)
	}
	return JobRow{Key: key, Running: running}, true
}

func refPendingRow(m map[string]any) (PendingRow, bool) {
	job, ok1 := refString(m, "job")
	created, ok2 := refIntMember(m, "created")
	v, _ := refMember(m, "running")
	running, ok3 := v.(bool)
	r := PendingRow{Job: job, Created: created, Running: running}
	if !ok1 || !ok2 || !ok3 {
		return r, false
	}
	// priority and run_at are optional: absent (or null) means 0.
	if _, present := refMember(m, "priority"); present {
		p, ok := refIntMember(m, "priority")
		if !ok {
			return r, false
		}
		r.Priority = int(p)
	}
	if _, present := refMember(m, "run_at"); present {
		at, ok := refIntMember(m, "run_at")
		if !ok {
			return r, false
		}
		r.RunAt = at
	}
	// queue is optional; "default" is the zero value's queue.
	if v, present := refMember(m, "queue"); present {
		q, ok := v.(string)
		if !ok {
			return r, false
		}
		if q != "default" {
			r.Queue = q
		}
	}
	// progress is optional, and when present an object with both members.
	if v, present := refMember(m, "progress"); present {
		pm, isObj := v.(map[string]any)
		if !isObj {
			return r, false
		}
		d, _ := refMember(pm, "done")
		n, isNum := d.(json.Number)
		msg, ok := refString(pm, "message")
		if !isNum || !ok {
			return r, false
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil {
			return r, false
		}
		r.Progress = &Progress{Done: f, Message: msg}
	}
	// after is optional, and when present a list of [string, integer] pairs; [] is none.
	if v, present := refMember(m, "after"); present {
		list, isList := v.([]any)
		if !isList {
			return r, false
		}
		for _, e := range list {
			pair, isPair := e.([]any)
			if !isPair || len(pair) != 2 {
				return r, false
			}
			key, isString := pair[0].(string)
			created, isInt := refInt(pair[1])
			if !isString || !isInt {
				return r, false
			}
			r.After = append(r.After, Instance{Key: key, Created: created})
		}
	}
	return r, true
}

// refInstance reads "key": [job, created] and the "value" object.
func refInstance(m map[string]any) (job string, created int64, value map[string]any, ok bool) {
	k, _ := refMember(m, "key")
	pair, isList := k.([]any)
	v, _ := refMember(m, "value")
	value, isObj := v.(map[string]any)
	if !isList || len(pair) != 2 || !isObj {
		return "", 0, nil, false
	}
	job, ok1 := pair[0].(string)
	created, ok2 := refInt(pair[1])
	return job, created, value, ok1 && ok2
}

func refResultRow(m map[string]any) (ResultRow, bool) {
	job, created, v, ok := refInstance(m)
	if !ok {
		return ResultRow{}, false
	}
	hash, ok1 := refString(v, "hash")
	start, ok2 := refIntMember(v, "start")
	end, ok3 := refIntMember(v, "end")
	// value.created repeats the key's created: a row where they differ is not one row.
	vc, ok4 := refIntMember(v, "created")
	r := ResultRow{Job: job, Created: created, Hash: hash, Start: start, End: end}
	return r, ok1 && ok2 && ok3 && ok4 && vc == created
}

func refFailRow(m map[string]any) (FailRow, bool) {
	job, created, v, ok := refInstance(m)
	if !ok {
		return FailRow{}, false
	}
	msg, ok1 := refString(v, "message")
	start, ok2 := refIntMember(v, "start")
	end, ok3 := refIntMember(v, "end")
	attempts, ok4 := refIntMember(v, "attempts")
	r := FailRow{Job: job, Created: created, Message: msg, Start: start, End: end, Attempts: int(attempts)}
	return r, ok1 && ok2 && ok3 && ok4
}

// FuzzRowsFromC drives the rows through the C library: a payload, a priority and a fail
// message go in through the API, and the four listings must give them back, decoded from the
// C rows (Results, Failures) and from the library's JSON (Jobs, Pending), with start <= end
// and a JSON round trip. (Start may precede created: created is a unique id in epoch ms that
// runs ahead of the clock when pushes share a millisecond.) A message with a NUL byte is refused and changes nothing; an
// invalid UTF-8 message comes back as valid UTF-8.
func FuzzRowsFromC(f *testing.F) {
	f.Add([]byte("sleep 5; date"), int64(0), "exit status 1")
	f.Add([]byte{}, int64(-3), "")
	f.Add([]byte("x"), int64(1<<40), "caf\u00e9 \"quoted\"\n\ttab")
	f.Add([]byte{0, 0xff}, int64(7), "bad \xff\xfe utf-8")
	f.Add([]byte("nul"), int64(2), "a\x00b")
	f.Add(bytes.Repeat([]byte("0123456789"), 50), int64(-1<<40), strings.Repeat("long message ", 60))
	f.Fuzz(func(t *testing.T, payload []byte, priority int64, message string) {
		db, err := Open(filepath.Join(t.TempDir(), "fuzz.db"), &Options{Durability: DurabilityNormal})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()

		key, created, err := db.AddWith(bytes.NewReader(payload), PushOptions{Priority: int(priority)})
		if err != nil {
			// A priority outside the C ABI's int32 is refused; that is the only reason.
			if priority == int64(int32(priority)) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("AddWith(priority %d): %v", priority, err)
			}
			return
		}
		if sum := sha256.Sum256(payload); key != hex.EncodeToString(sum[:]) {
			t.Fatalf("key %s is not the payload's SHA-256", key)
		}
		wantRows(t, db.Jobs(), JobRow{Key: key, Running: []int64{}})
		wantRows(t, db.Pending(), PendingRow{Job: key, Created: created, Priority: int(priority)})

		j, err := db.Claim()
		if err != nil || j == nil {
			t.Fatalf("Claim: %v, %v", j, err)
		}
		wantRows(t, db.Jobs(), JobRow{Key: key, Running: []int64{created}})
		wantRows(t, db.Pending(), PendingRow{Job: key, Created: created, Running: true, Priority: int(priority)})
		in, err := io.ReadAll(j)
		if err != nil || !bytes.Equal(in, payload) {
			t.Fatalf("payload read back as %q, %v", in, err)
		}

		failWith := message
		if strings.IndexByte(message, 0) >= 0 {
			wantIs(t, j.Fail(message), ErrInvalid)
			wantRows[FailRow](t, db.Failures())
			failWith = strings.ReplaceAll(message, "\x00", "")
		}
		if err := j.Fail(failWith); err != nil {
			t.Fatalf("Fail: %v", err)
		}
		wantRows(t, db.Jobs(), JobRow{Key: key, Running: []int64{}})
		wantRows[PendingRow](t, db.Pending())
		fails := listed(t, db.Failures())
		if len(fails) != 1 {
			t.Fatalf("%d fail rows, want 1: %+v", len(fails), fails)
		}
		fr := fails[0]
		if fr.Job != key || fr.Created != created || fr.Attempts != 1 || fr.Start > fr.End {
			t.Fatalf("fail row %+v for %s/%d", fr, key, created)
		}
		if !utf8.ValidString(fr.Message) || (utf8.ValidString(failWith) && fr.Message != failWith) {
			t.Fatalf("failed with %q, the row says %q", failWith, fr.Message)
		}
		roundTrip(t, fr)

		// A result: the payload reversed is the output.
		again, err := db.Push(key)
		if err != nil {
			t.Fatal(err)
		}
		if j, err = db.Claim(); err != nil || j == nil {
			t.Fatalf("Claim: %v, %v", j, err)
		}
		out := bytes.Clone(payload)
		for a, b := 0, len(out)-1; a < b; a, b = a+1, b-1 {
			out[a], out[b] = out[b], out[a]
		}
		if _, err := j.Write(out); err != nil {
			t.Fatal(err)
		}
		hash, err := j.Complete()
		if err != nil {
			t.Fatal(err)
		}
		results := listed(t, db.Results())
		if len(results) != 1 {
			t.Fatalf("%d results, want 1: %+v", len(results), results)
		}
		rr := results[0]
		if sum := sha256.Sum256(out); rr.Hash != hash || hash != hex.EncodeToString(sum[:]) ||
			rr.Job != key || rr.Created != again || rr.Start > rr.End {
			t.Fatalf("result row %+v for %s/%d, output hash %s", rr, key, again, hash)
		}
		roundTrip(t, rr)
		if got := readAll(t, db, hash); got != string(out) {
			t.Fatalf("output read back as %q", got)
		}
	})
}

func listed[T any](t *testing.T, seq func(func(T, error) bool)) []T {
	t.Helper()
	rows := collect(t, seq)
	for _, r := range rows {
		roundTrip(t, r)
	}
	return rows
}

func wantRows[T any](t *testing.T, seq func(func(T, error) bool), want ...T) {
	t.Helper()
	got := listed(t, seq)
	if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
		t.Fatalf("%T rows:\n got %+v\nwant %+v", want, got, want)
	}
}

// roundTrip checks that a listed row survives its JSON shape unchanged.
func roundTrip[T any](t *testing.T, row T) {
	t.Helper()
	b, err := json.Marshal(row)
	if err != nil {
		t.Fatalf("%T: marshal %+v: %v", row, row, err)
	}
	var back T
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%T: decoding %s: %v", row, b, err)
	}
	if !reflect.DeepEqual(back, row) {
		t.Fatalf("%T: %+v came back from %s as %+v", row, row, b, back)
	}
}
