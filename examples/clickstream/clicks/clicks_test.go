package clicks

import (
	"context"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-data/cairn/stream"
)

func TestJobEqualsPlainGroupBy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	in := filepath.Join(dir, "input")
	events, err := Generate(in, 1, 12, 400, 20*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Input: in, Output: filepath.Join(dir, "output"), Checkpoint: filepath.Join(dir, "checkpoint"),
		MaxFilesPerBatch: 3, Trigger: stream.Trigger{Drain: true}}
	if err := Run(ctx, o); err != nil {
		t.Fatal(err)
	}
	got := map[Key]Row{}
	for r, err := range stream.ReadFileSink[Row](ctx, o.Output) {
		if err != nil {
			t.Fatal(err)
		}
		k := Key{r.User, r.WindowStart}
		if _, dup := got[k]; dup {
			t.Fatalf("row %v output twice", k)
		}
		got[k] = r
	}
	if want := Oracle(events); !maps.Equal(got, want) {
		t.Fatalf("%d rows, want %d: the job differs from a plain group-by", len(got), len(want))
	}
}
