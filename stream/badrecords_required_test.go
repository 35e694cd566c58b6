package stream

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// reqClick is examples/clickstream/clicks's Event: user and time are required.
type reqClick struct {
	User   string    `json:"user" cairn:"required"`
	TS     time.Time `json:"ts" cairn:"required"`
	Amount int64     `json:"amount"`
}

type reqTotals struct {
	Events int64 `json:"events"`
	Amount int64 `json:"amount"`
}

// reqPlan is examples/clickstream/clicks's plan: per user and one-minute window
// of event time, the number of events and the sum of their amounts.
func reqPlan(b *Batch, in *dataset.Dataset[reqClick]) (*dataset.Dataset[Windowed[string, reqTotals]], error) {
	return WindowAggregate(b, 1, in, Window{Size: time.Minute}, 30*time.Second,
		func(e reqClick) time.Time { return e.TS },
		func(e reqClick) string { return e.User },
		func(e reqClick) reqTotals { return reqTotals{1, e.Amount} },
		func(a, b reqTotals) reqTotals { return reqTotals{a.Events + b.Events, a.Amount + b.Amount} },
		state.StringCodec{}, state.JSONCodec[reqTotals]{})
}

// A record without its key or its event time is not aggregated under ""
// or dropped as late: the file source takes the required tags from the
// record type on its own and sets such records aside in the dead-letter
// object, with their lines, and counts them.
func TestFileSourceDeadLettersRecordsMissingRequiredFields(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	empty := `{}`
	keyless := `{"ts":"2026-01-01T00:00:05Z","amount":5}`
	good := `{"user":"u1","ts":"2026-01-01T00:00:03Z","amount":7}`
	fsWriteInput(t, dir, "a.jsonl", empty+"\n"+keyless+"\n"+good+"\n")
	src, err := NewFileSource[reqClick](dir, FileSourceOptions{Format: "jsonl", DeadLetter: true, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := storage.NewMem()
	sink := NewMemorySink[Windowed[string, reqTotals]]("out")
	opts := testOptions(st)
	opts.Trigger = Trigger{Drain: true}
	q, err := Start(ctx, src, reqPlan, sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}

	out := sink.All()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if len(out) != 1 || out[0].Key != "u1" || !out[0].Start.Equal(start) || out[0].Value != (reqTotals{1, 7}) {
		t.Fatalf("output %+v, want only u1's window at %v with 1 event of 7", out, start)
	}

	data, err := storage.GetBytes(ctx, st, src.DeadLetterObject("a.jsonl"))
	if err != nil {
		t.Fatalf("dead-letter object: %v", err)
	}
	letters := fsDecodeLetters(t, data)
	if len(letters) != 2 {
		t.Fatalf("dead letters %+v, want 2", letters)
	}
	for i, w := range []struct {
		line           int64
		record, column string
	}{{1, empty, "user"}, {2, keyless, "user"}} {
		l := letters[i]
		if l.File != filepath.Join(dir, "a.jsonl") || l.Line != w.line || l.Record != w.record || l.Column != w.column ||
			!strings.Contains(l.Error, "missing or null") {
			t.Errorf("dead letter %d: %+v, want line %d column %s record %q, missing field", i, l, w.line, w.column, w.record)
		}
	}
	if n := src.DeadLetters(); n != 2 {
		t.Fatalf("DeadLetters() = %d, want 2", n)
	}
	var dead, late, in int64
	for _, p := range q.Progress() {
		dead += p.DeadLetters
		late += p.LateRows
		in += p.InputRows
	}
	if dead != 2 || late != 0 {
		t.Fatalf("progress: %d dead letters and %d late rows (input rows %d), want 2 and 0", dead, late, in)
	}
}

// Without DeadLetter, the record without its key fails the batch, naming
// the file, the line and the field.
func TestFileSourceMissingRequiredFieldFails(t *testing.T) {
	dir := t.TempDir()
	fsWriteInput(t, dir, "a.jsonl", `{"user":"u1","ts":"2026-01-01T00:00:03Z"}`+"\n"+`{"ts":"2026-01-01T00:00:05Z"}`+"\n")
	src := fsAttached[reqClick](t, dir, FileSourceOptions{Format: "jsonl", Partitions: 1}, storage.NewMem())
	fsAvailable(t, src)
	err := src.Read(context.Background(), 0, 0, 1, func(reqClick) error { return nil })
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "a.jsonl")+` line 2 column user: required field "user" is missing or null`) {
		t.Fatalf("err = %v, want one naming a.jsonl line 2 and the field user", err)
	}
}
