package stream

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/cairn-data/cairn/storage"
)

// A drained query is finished: a later start that finds new input refuses,
// naming the drain and what to do, instead of dropping every new row as
// late; one that finds none is done at once.
func TestDrainedQueryIsSealed(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	src := NewMemorySource[event]("events", 2)
	want := events(3, src, 600)
	sink := NewMemorySink[Windowed[string, totals]]("out")
	run := func(trigger Trigger) (int, error) {
		opts := windowOptions(st)
		opts.Trigger = trigger
		q, err := Start(ctx, src, perUserMinute, sink, opts)
		if err != nil {
			return 0, err
		}
		defer q.Close(ctx)
		err = q.Run(ctx)
		return len(q.Progress()), err
	}
	if _, err := run(Trigger{Drain: true}); err != nil {
		t.Fatal(err)
	}
	if got := collectWindows(t, sink.All()); !maps.Equal(got, want) {
		t.Fatal("the drained run differs from the plain group-by")
	}
	drainBatch := sink.Batches()[len(sink.Batches())-1]

	// Nothing new: every trigger finds the query done, and runs nothing.
	for _, trigger := range []Trigger{{Drain: true}, {UntilIdle: true}, {Interval: time.Millisecond}} {
		if n, err := run(trigger); err != nil || n != 0 {
			t.Fatalf("trigger %+v on a drained query without new input: %d batches, err %v; want none and nil", trigger, n, err)
		}
	}

	// New input, later than everything before: refused at Start.
	base := time.Date(2026, 1, 1, 5, 0, 0, 0, time.UTC)
	src.Add(0, event{"late-comer", base, 1}, event{"late-comer", base.Add(time.Minute), 2})
	for _, trigger := range []Trigger{{Drain: true}, {UntilIdle: true}} {
		_, err := run(trigger)
		var de *DrainedError
		if !errors.As(err, &de) || !errors.Is(err, ErrDrained) || de.Batch != drainBatch {
			t.Fatalf("trigger %+v with new input after a drain: err = %v; want a DrainedError naming batch %d", trigger, err, drainBatch)
		}
		for _, say := range []string{"drained by batch", "Trigger.UntilIdle", "new checkpoint location", src.Identity()} {
			if !strings.Contains(err.Error(), say) {
				t.Errorf("err = %v; it does not say %q", err, say)
			}
		}
	}
	for _, r := range sink.All() {
		if r.Key == "late-comer" {
			t.Fatalf("a row after the drain reached the output: %+v", r)
		}
	}
	if n := len(sink.Batches()); sink.Batches()[n-1] != drainBatch {
		t.Fatalf("batches ran after the drain: %v", sink.Batches())
	}
}

// Input that arrives after Start, while a query on a drained location
// polls, fails the query the same way.
func TestDrainedQueryRefusesInputThatArrivesLater(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	src := NewMemorySource[event]("events", 2)
	events(4, src, 100)
	sink := NewMemorySink[Windowed[string, totals]]("out")
	q, err := Start(ctx, src, perUserMinute, sink, windowOptions(st))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	q.Close(ctx)
	opts := windowOptions(st)
	opts.Trigger = Trigger{}
	q, err = Start(ctx, src, perUserMinute, sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	if ran, err := q.RunBatch(ctx); ran || err != nil {
		t.Fatalf("RunBatch on a drained query without new input: ran %v, err %v", ran, err)
	}
	src.Add(1, event{"x", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), 1})
	if _, err := q.RunBatch(ctx); !errors.Is(err, ErrDrained) {
		t.Fatalf("RunBatch with new input after the drain: err = %v; want ErrDrained", err)
	}
}
