package stream

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/storage"
)

// input_rows is the number of records the batch read, for every source:
// a file is one offset of the file source, but 400 rows.
func TestInputRowsCountsRecordsNotOffsets(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		var b strings.Builder
		for i := range 400 {
			fmt.Fprintf(&b, `{"User":"u%d","Amount":1}`+"\n", i%7)
		}
		if err := os.WriteFile(filepath.Join(dir, "a.jsonl"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := NewFileSource[click](dir, FileSourceOptions{Format: "jsonl", Partitions: 2})
		if err != nil {
			t.Fatal(err)
		}
		if got := runAndCountInput(t, src); got != 400 {
			t.Fatalf("input_rows = %d after reading one file of 400 rows; want 400", got)
		}
	})
	t.Run("generator", func(t *testing.T) {
		src := &GeneratorSource[click]{Name: "g", Partitions: 3, Limit: 70,
			Make: func(p int, i int64) click { return click{User: fmt.Sprint("u", i%5), Amount: 1} }}
		if got := runAndCountInput(t, src); got != 210 {
			t.Fatalf("input_rows = %d; want 210 (3 partitions of 70)", got)
		}
	})
	t.Run("memory", func(t *testing.T) {
		src := NewMemorySource[click]("clicks", 3)
		clicks(5, src, 123)
		if got := runAndCountInput(t, src); got != 123 {
			t.Fatalf("input_rows = %d; want 123", got)
		}
	})
}

// runAndCountInput runs sumPerUser over src until idle and returns the sum
// of input_rows over its batches, checking that the sink saw as many.
func runAndCountInput(t *testing.T, src Source[click]) int64 {
	t.Helper()
	ctx := context.Background()
	var seen int64
	count := func(b *Batch, in *dataset.Dataset[click]) (*dataset.Dataset[dataset.Pair[string, int64]], error) {
		pairs := dataset.Map(in, func(c click) dataset.Pair[string, int64] { return dataset.KV("all", int64(1)) })
		return dataset.ReduceByKey(pairs, func(a, b int64) int64 { return a + b }, 1), nil
	}
	sink := ForEachBatch("count", func(ctx context.Context, id int64, d *dataset.Dataset[dataset.Pair[string, int64]]) error {
		recs, err := d.Collect(ctx)
		for _, r := range recs {
			seen += r.Value
		}
		return err
	})
	opts := testOptions(storage.NewMem())
	opts.MaxOffsetsPerPartition = 0
	q, err := Start(ctx, src, count, sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var rows int64
	for _, p := range q.Progress() {
		rows += p.InputRows
	}
	if rows != seen {
		t.Fatalf("input_rows = %d, but the plan saw %d records", rows, seen)
	}
	return rows
}
