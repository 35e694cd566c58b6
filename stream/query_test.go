package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

type click struct {
	User   string
	Amount int64
}

// sumPerUser is the test query: the running sum of amounts per user.
func sumPerUser(b *Batch, in *dataset.Dataset[click]) (*dataset.Dataset[dataset.Pair[string, int64]], error) {
	pairs := dataset.Map(in, func(c click) dataset.Pair[string, int64] { return dataset.KV(c.User, c.Amount) })
	return AggregateByKey(b, 1, pairs, func(a, b int64) int64 { return a + b }, state.StringCodec{}, state.Int64Codec{})
}

// clicks fills a source with a seeded workload and returns the oracle.
func clicks(seed uint64, src *MemorySource[click], n int) map[string]int64 {
	rng := rand.New(rand.NewPCG(seed, 0))
	want := map[string]int64{}
	for range n {
		c := click{User: fmt.Sprint("u", rng.IntN(40)), Amount: int64(rng.IntN(100))}
		src.Add(rng.IntN(3), c)
		want[c.User] += c.Amount
	}
	return want
}

// final is the last value the sink reported for each key.
func final(sink *MemorySink[dataset.Pair[string, int64]]) map[string]int64 {
	out := map[string]int64{}
	for _, kv := range sink.All() {
		out[kv.Key] = kv.Value
	}
	return out
}

func testOptions(st storage.Storage) Options {
	return Options{CheckpointStorage: st, Partitions: 3, MaxOffsetsPerPartition: 25, Trigger: Trigger{UntilIdle: true}, Parallelism: 2,
		Logger: slog.New(slog.DiscardHandler)}
}

func TestQueryAggregatesExactlyOnceAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	src := NewMemorySource[click]("clicks", 3)
	sink := NewMemorySink[dataset.Pair[string, int64]]("out")
	want := clicks(7, src, 300)
	q, err := Start(ctx, src, sumPerUser, sink, testOptions(st))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // three batches, then a restart
		if _, err := q.RunBatch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	q.Close(ctx)
	q, err = Start(ctx, src, sumPerUser, sink, testOptions(st))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := final(sink); !maps.Equal(got, want) {
		t.Fatalf("final sums differ from the oracle:\n got %v\nwant %v", got, want)
	}
	p := q.Progress()
	if len(p) == 0 || p[len(p)-1].State[0].Keys != int64(len(want)) {
		t.Fatalf("progress does not report the state's keys: %+v", p)
	}
	if last := p[len(p)-1]; last.Phases.StateCommit <= 0 || last.Phases.Sink <= 0 || last.Phases.Execute < last.Phases.Sink || last.InputRows == 0 {
		t.Fatalf("progress phases are not filled in: %+v", last.Phases)
	}
}

// restartAfterCrash simulates the death of the process of q: its lease is
// left behind as a dead process's would be, and taken over.
func restartAfterCrash(ctx context.Context, q interface{ Close(context.Context) error }, st storage.Storage) {
	q.Close(ctx)
	objs, _ := st.List(ctx, metalog.LeasePrefix+"/")
	for _, o := range objs {
		st.Delete(ctx, o.Name)
	}
}

// For every k, crash the storage at the k-th operation of a run of several
// batches, restart, and run to the end: the sink must hold exactly what a
// run without faults writes, batch by batch.
func TestQueryCrashAtEveryOperation(t *testing.T) {
	src := NewMemorySource[click]("clicks", 3)
	want := clicks(11, src, 200)
	clean := crashEveryOperation(t, src, sumPerUser, testOptions, 150, bothLandings)
	got := map[string]int64{}
	for _, id := range sortedKeys(clean) {
		for _, kv := range clean[id] {
			got[kv.Key] = kv.Value
		}
	}
	if !maps.Equal(got, want) {
		t.Fatal("the run without faults is wrong")
	}
}

type nopCloser struct{}

func (nopCloser) Close(context.Context) error { return nil }

func TestSecondQueryOnALocationIsRefused(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	src := NewMemorySource[click]("clicks", 3)
	sink := NewMemorySink[dataset.Pair[string, int64]]("out")
	q, err := Start(ctx, src, sumPerUser, sink, testOptions(st))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	_, err = Start(ctx, src, sumPerUser, sink, testOptions(st))
	if !errors.Is(err, metalog.ErrLeaseHeld) {
		t.Fatalf("second query: err = %v, want ErrLeaseHeld", err)
	}
}

func TestChangedPinnedSettingIsRefused(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	src := NewMemorySource[click]("clicks", 3)
	sink := NewMemorySink[dataset.Pair[string, int64]]("out")
	q, err := Start(ctx, src, sumPerUser, sink, testOptions(st))
	if err != nil {
		t.Fatal(err)
	}
	q.Close(ctx)
	opts := testOptions(st)
	opts.Partitions = 8
	_, err = Start(ctx, src, sumPerUser, sink, opts)
	var pe *PinnedSettingError
	if !errors.As(err, &pe) || pe.Setting != "partitions" || pe.Old != "3" || pe.New != "8" || !strings.Contains(err.Error(), "new checkpoint location") {
		t.Fatalf("err = %v, want a PinnedSettingError for partitions 3 -> 8", err)
	}
	otherOp := func(b *Batch, in *dataset.Dataset[click]) (*dataset.Dataset[dataset.Pair[string, int64]], error) {
		pairs := dataset.Map(in, func(c click) dataset.Pair[string, int64] { return dataset.KV(c.User, c.Amount) })
		return AggregateByKey(b, 2, pairs, func(a, b int64) int64 { return max(a, b) }, state.StringCodec{}, state.Int64Codec{})
	}
	if _, err := Start(ctx, src, otherOp, sink, testOptions(st)); !errors.Is(err, ErrPinnedSetting) || !strings.Contains(err.Error(), "stateful operators") {
		t.Fatalf("changed operators: err = %v", err)
	}
	if _, err := Start(ctx, NewMemorySource[click]("other", 3), sumPerUser, sink, testOptions(st)); !errors.Is(err, ErrPinnedSetting) {
		t.Fatalf("changed source: err = %v", err)
	}
}

func TestCorruptOffsetsEntryIsNamed(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	src := NewMemorySource[click]("clicks", 3)
	clicks(3, src, 100)
	sink := NewMemorySink[dataset.Pair[string, int64]]("out")
	q, _ := Start(ctx, src, sumPerUser, sink, testOptions(st))
	q.RunBatch(ctx)
	q.RunBatch(ctx)
	q.Close(ctx)
	st.Corrupt("offsets/1", func(b []byte) []byte { b[len(b)-9] ^= 0x20; return b })
	q, err := Start(ctx, src, sumPerUser, sink, testOptions(st))
	if err == nil {
		defer q.Close(ctx)
		_, err = q.RunBatch(ctx)
	}
	var ce *storage.CorruptError
	if !errors.As(err, &ce) || ce.Object != "offsets/1" {
		t.Fatalf("err = %v, want a CorruptError naming offsets/1", err)
	}
}
