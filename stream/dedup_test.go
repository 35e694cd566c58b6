package stream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

type msg struct {
	ID string
	TS time.Time
}

func dedupPlan(b *Batch, in *dataset.Dataset[msg]) (*dataset.Dataset[msg], error) {
	return DropDuplicates(b, 1, in, time.Minute, func(m msg) time.Time { return m.TS }, func(m msg) string { return m.ID }, state.StringCodec{})
}

func TestDropDuplicatesWithinWatermark(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	src := NewMemorySource[msg]("msgs", 2)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Every ID three times, in both partitions, within ten seconds.
	for i := range 100 {
		for d := range 3 {
			src.Add((i+d)%2, msg{fmt.Sprint("m", i), base.Add(time.Duration(i)*5*time.Second + time.Duration(d)*2*time.Second)})
		}
	}
	sink := NewMemorySink[msg]("out")
	opts := testOptions(st)
	opts.MaxOffsetsPerPartition = 40
	q, err := Start(ctx, src, dedupPlan, sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range sink.All() {
		seen[m.ID]++
	}
	for i := range 100 {
		if n := seen[fmt.Sprint("m", i)]; n != 1 {
			t.Fatalf("m%d output %d times, want once", i, n)
		}
	}
	// State is bounded: keys older than the watermark are forgotten.
	last := q.Progress()[len(q.Progress())-1]
	if keys := last.State[0].Keys; keys >= 200 {
		t.Fatalf("state holds %d entries after the watermark passed most keys: nothing was evicted", keys)
	}
}
