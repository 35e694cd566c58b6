package stream

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

type event struct {
	User   string
	TS     time.Time
	Amount int64
}

type totals struct {
	Events int64 `json:"events"`
	Amount int64 `json:"amount"`
}

func perUserMinute(b *Batch, in *dataset.Dataset[event]) (*dataset.Dataset[Windowed[string, totals]], error) {
	return WindowAggregate(b, 1, in, Window{Size: time.Minute}, 30*time.Second,
		func(e event) time.Time { return e.TS },
		func(e event) string { return e.User },
		func(e event) totals { return totals{1, e.Amount} },
		func(a, b totals) totals { return totals{a.Events + b.Events, a.Amount + b.Amount} },
		state.StringCodec{}, state.JSONCodec[totals]{})
}

type windowRow struct {
	User  string
	Start time.Time
}

// events fills two partitions evenly in time, with disorder under 20 s,
// and returns the plain group-by the query must reproduce.
func events(seed uint64, src *MemorySource[event], n int) map[windowRow]totals {
	rng := rand.New(rand.NewPCG(seed, 0))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	want := map[windowRow]totals{}
	for i := range n {
		ts := base.Add(time.Duration(i)*200*time.Millisecond + time.Duration(rng.IntN(20_000))*time.Millisecond)
		e := event{User: fmt.Sprint("u", rng.IntN(5)), TS: ts, Amount: int64(rng.IntN(100))}
		src.Add(i%2, e)
		k := windowRow{e.User, ts.Truncate(time.Minute)}
		t := want[k]
		want[k] = totals{t.Events + 1, t.Amount + e.Amount}
	}
	return want
}

func windowOptions(st storage.Storage) Options {
	o := testOptions(st)
	o.MaxOffsetsPerPartition = 150
	o.Trigger = Trigger{Drain: true}
	return o
}

func collectWindows(t *testing.T, rows []Windowed[string, totals]) map[windowRow]totals {
	t.Helper()
	got := map[windowRow]totals{}
	for _, r := range rows {
		k := windowRow{r.Key, r.Start}
		if _, dup := got[k]; dup {
			t.Fatalf("window %v of %s output twice: append mode outputs a window once", r.Start, r.Key)
		}
		if r.End.Sub(r.Start) != time.Minute {
			t.Fatalf("window %v..%v is not one minute", r.Start, r.End)
		}
		got[k] = r.Value
	}
	return got
}

func TestTumblingWindowsEqualAPlainGroupBy(t *testing.T) {
	ctx := context.Background()
	src := NewMemorySource[event]("events", 2)
	want := events(5, src, 3000)
	sink := NewMemorySink[Windowed[string, totals]]("out")
	q, err := Start(ctx, src, perUserMinute, sink, windowOptions(storage.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	got := collectWindows(t, sink.All())
	if !maps.Equal(got, want) {
		t.Fatalf("windows differ from the plain group-by: %d windows, want %d", len(got), len(want))
	}
	p := q.Progress()
	var late int64
	for _, b := range p {
		late += b.LateRows
	}
	if late != 0 {
		t.Fatalf("%d rows counted late although disorder stayed under the delay", late)
	}
	// Windows close as the watermark moves: batches before the drain batch
	// already output some.
	ids := sink.Batches()
	early := 0
	for _, id := range ids[:len(ids)-1] {
		early += len(sink.Batch(id))
	}
	if early == 0 || early == len(got) {
		t.Fatalf("%d of %d windows were output before the drain batch; want some, not all", early, len(got))
	}
}

func TestLateEventsAreDroppedAndCounted(t *testing.T) {
	ctx := context.Background()
	src := NewMemorySource[event]("events", 1)
	base := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	src.Add(0, event{"a", base, 1}, event{"a", base.Add(5 * time.Minute), 1})
	sink := NewMemorySink[Windowed[string, totals]]("out")
	opts := windowOptions(storage.NewMem())
	opts.Trigger = Trigger{UntilIdle: true}
	q, err := Start(ctx, src, perUserMinute, sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	q.Run(ctx)
	src.Add(0, event{"a", base.Add(time.Minute), 100}) // 4 minutes behind the newest: late
	if _, err := q.RunBatch(ctx); err != nil {
		t.Fatal(err)
	}
	p := q.Progress()
	if last := p[len(p)-1]; last.LateRows != 1 {
		t.Fatalf("LateRows = %d, want 1 (watermark %v)", last.LateRows, time.UnixMilli(last.Watermark).UTC())
	}
	for _, r := range sink.All() {
		if r.Value.Amount >= 100 {
			t.Fatalf("a late event reached the output: %+v", r)
		}
	}
}

func TestWindowQueryCrashAtEveryOperation(t *testing.T) {
	src := NewMemorySource[event]("events", 2)
	want := events(9, src, 900)
	clean := crashEveryOperation(t, src, perUserMinute, windowOptions, 120,
		func(k int) []bool { return []bool{k%2 == 0} })
	var rows []Windowed[string, totals]
	for _, id := range sortedKeys(clean) {
		rows = append(rows, clean[id]...)
	}
	if got := collectWindows(t, rows); !maps.Equal(got, want) {
		t.Fatal("the run without faults differs from the plain group-by")
	}
}

func TestWindowStarts(t *testing.T) {
	w := Window{Size: 10 * time.Second, Slide: 5 * time.Second}
	if got := w.starts(12_000); !reflect.DeepEqual(got, []int64{5_000, 10_000}) {
		t.Fatalf("sliding starts of 12s = %v", got)
	}
	if got := (Window{Size: time.Minute}).starts(-1); !reflect.DeepEqual(got, []int64{-60_000}) {
		t.Fatalf("tumbling start of -1ms = %v", got)
	}
}
