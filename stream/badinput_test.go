package stream

import (
	"context"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/storage"
)

// runBatches runs n batches of the test query on st and closes it.
func runBatches(t *testing.T, st storage.Storage, src Source[click], n int) {
	t.Helper()
	ctx := context.Background()
	q, err := Start(ctx, src, sumPerUser, NewMemorySink[dataset.Pair[string, int64]]("out"), testOptions(st))
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if _, err := q.RunBatch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	q.Close(ctx)
}

// A damaged location is refused at Start, naming what is wrong, and never
// run on.
func TestDamagedLogsAreRefused(t *testing.T) {
	ctx := context.Background()
	src := NewMemorySource[click]("clicks", 3)
	clicks(2, src, 200)
	cases := map[string]struct {
		damage func(st *storage.Mem)
		want   string
	}{
		"commit without offsets": {func(st *storage.Mem) { st.Delete(ctx, "offsets/2") }, "its offsets entry is missing"},
		"two pending batches": {func(st *storage.Mem) {
			st.Delete(ctx, "commits/2")
			log, _ := metalog.Open(ctx, st, OffsetsLog)
			log.Add(ctx, 3, []byte(`{"batch":3,"start":[0,0,0],"end":[0,0,0]}`))
		}, "more than one batch is pending"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			st := storage.NewMem()
			runBatches(t, st, src, 3)
			c.damage(st)
			_, err := Start(ctx, src, sumPerUser, NewMemorySink[dataset.Pair[string, int64]]("out"), testOptions(st))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "damaged") {
				t.Fatalf("err = %v, want one saying %q and that the location is damaged", err, c.want)
			}
		})
	}
}

// shrinking is a source whose partitions or offsets change under the query.
type shrinking struct {
	*MemorySource[click]
	avail Offsets
}

func (s *shrinking) Available(context.Context) (Offsets, error) { return s.avail, nil }

func TestSourceChangesAreRefused(t *testing.T) {
	ctx := context.Background()
	for name, c := range map[string]struct {
		avail Offsets
		want  string
	}{
		"partition count":   {Offsets{100, 100}, "had 3 partitions and now has 2"},
		"offsets went back": {Offsets{1, 100, 100}, "went back"},
	} {
		t.Run(name, func(t *testing.T) {
			mem := NewMemorySource[click]("clicks", 3)
			clicks(3, mem, 300)
			src := &shrinking{MemorySource: mem}
			st := storage.NewMem()
			src.avail, _ = mem.Available(ctx)
			runBatches(t, st, src, 1)
			src.avail = c.avail
			q, err := Start(ctx, src, sumPerUser, NewMemorySink[dataset.Pair[string, int64]]("out"), testOptions(st))
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close(ctx)
			_, err = q.RunBatch(ctx)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one saying %q", err, c.want)
			}
		})
	}
}
