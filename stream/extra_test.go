package stream

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// Complete mode outputs the whole result every batch; the console sink
// prints it.
func TestCompleteModeAndConsoleSink(t *testing.T) {
	ctx := context.Background()
	src := NewMemorySource[click]("clicks", 3)
	want := clicks(4, src, 120)
	var out bytes.Buffer
	plan := func(b *Batch, in *dataset.Dataset[click]) (*dataset.Dataset[dataset.Pair[string, int64]], error) {
		pairs := dataset.Map(in, func(c click) dataset.Pair[string, int64] { return dataset.KV(c.User, c.Amount) })
		return AggregateByKeyComplete(b, 1, pairs, func(a, b int64) int64 { return a + b }, state.StringCodec{}, state.Int64Codec{})
	}
	mem := NewMemorySink[dataset.Pair[string, int64]]("out")
	opts := testOptions(storage.NewMem())
	opts.MaxOffsetsPerPartition = 30
	q, err := Start(ctx, src, plan, ForEachBatch("tee", func(ctx context.Context, id int64, d *dataset.Dataset[dataset.Pair[string, int64]]) error {
		if err := (ConsoleSink[dataset.Pair[string, int64]]{W: &out}).AddBatch(ctx, id, d); err != nil {
			return err
		}
		return mem.AddBatch(ctx, id, d)
	}), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	ids := mem.Batches()
	last := map[string]int64{}
	for _, kv := range mem.Batch(ids[len(ids)-1]) {
		last[kv.Key] = kv.Value
	}
	if !maps.Equal(last, want) {
		t.Fatalf("the last batch of complete mode is not the whole result: %d keys, want %d", len(last), len(want))
	}
	if !strings.Contains(out.String(), "-- batch 0:") || !strings.Contains(out.String(), `"key":"u`) {
		t.Fatalf("console output:\n%.300s", out.String())
	}
}

// A stream joined with a static dataset, inside the plan.
func TestStreamStaticJoin(t *testing.T) {
	ctx := context.Background()
	static, _ := dataset.NewSession(dataset.Options{})
	defer static.Close(ctx)
	regions := dataset.FromSlice(static, []dataset.Pair[string, string]{dataset.KV("u1", "EU"), dataset.KV("u2", "US")}, 1)
	src := NewMemorySource[click]("clicks", 1)
	src.Add(0, click{"u1", 5}, click{"u2", 7}, click{"u3", 9}, click{"u1", 1})
	plan := func(b *Batch, in *dataset.Dataset[click]) (*dataset.Dataset[dataset.Pair[string, int64]], error) {
		keyed := dataset.Map(in, func(c click) dataset.Pair[string, int64] { return dataset.KV(c.User, c.Amount) })
		joined := dataset.Join(keyed, regions, 2)
		byRegion := dataset.Map(joined, func(j dataset.Pair[string, dataset.Joined[int64, string]]) dataset.Pair[string, int64] {
			return dataset.KV(j.Value.Right, j.Value.Left)
		})
		return AggregateByKey(b, 1, byRegion, func(a, b int64) int64 { return a + b }, state.StringCodec{}, state.Int64Codec{})
	}
	sink := NewMemorySink[dataset.Pair[string, int64]]("out")
	q, err := Start(ctx, src, plan, sink, testOptions(storage.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, kv := range sink.All() {
		got[kv.Key] = kv.Value
	}
	if want := map[string]int64{"EU": 6, "US": 7}; !maps.Equal(got, want) {
		t.Fatalf("stream-static join = %v, want %v (u3 has no region: inner join)", got, want)
	}
}

// Dead letters are reported in the progress of the batch that met them.
func TestDeadLettersPerBatch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.jsonl"), []byte(`{"User":"u1","Amount":1}`+"\n"+"garbage\n"+`{"User":"u2","Amount":2}`+"\n"), 0o644)
	src, err := NewFileSource[click](dir, FileSourceOptions{Format: "jsonl", DeadLetter: true, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	sink := NewMemorySink[dataset.Pair[string, int64]]("out")
	q, err := Start(ctx, src, sumPerUser, sink, testOptions(storage.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	p := q.Progress()
	if len(p) != 1 || p[0].DeadLetters != 1 || p[0].InputRows != 2 {
		t.Fatalf("progress = %+v, want one batch with one dead letter and 2 input rows", p)
	}
	if got := final(sink); !maps.Equal(got, map[string]int64{"u1": 1, "u2": 2}) {
		t.Fatalf("sums = %v", got)
	}
}
