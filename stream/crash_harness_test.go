package stream

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/faulty"
)

// crashEveryOperation is the exactly-once check shared by the query
// tests. It runs the query once on storage without faults, to count its
// storage operations and record its output, then for every k (at most
// about maxRuns values, spread evenly) crashes the storage at operation k,
// with the interrupted write taking effect or not (landings), restarts on
// what survived (as a new process would), runs to the end, and requires
// the sink to hold exactly the output of the run without faults, batch by
// batch. It returns that output for the caller's own checks. newStorage
// makes the storage of each crash run (default: in memory).
func crashEveryOperation[In, Out any](t *testing.T, src Source[In], plan Plan[In, Out], opts func(storage.Storage) Options,
	maxRuns int, landings func(k int) []bool, newStorage ...func(label string) storage.Storage) map[int64][]Out {
	t.Helper()
	fresh := func(string) storage.Storage { return storage.NewMem() }
	if len(newStorage) > 0 {
		fresh = newStorage[0]
	}
	ctx := context.Background()
	clean := NewMemorySink[Out]("out")
	probe := faulty.New(storage.NewMem())
	q, err := Start(ctx, src, plan, clean, opts(probe))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	n := probe.Ops() // Start and Run; Close's lease release comes after
	q.Close(ctx)
	t.Logf("a run issues %d storage operations over %d batches", n, len(clean.Batches()))
	for k := 1; k <= n; k += 1 + n/maxRuns {
		for _, lands := range landings(k) {
			inner := fresh(fmt.Sprintf("k%d-%v", k, lands))
			f := faulty.New(inner)
			f.PutLandsOnCrash = lands
			f.CrashAt(k, nil)
			sink := NewMemorySink[Out]("out")
			label := fmt.Sprintf("crash at operation %d (write lands: %v)", k, lands)
			q, err := Start(ctx, src, plan, sink, opts(f))
			if err == nil {
				err = q.Run(ctx)
				restartAfterCrash(ctx, q, inner)
			} else {
				restartAfterCrash(ctx, nopCloser{}, inner)
			}
			if err == nil {
				t.Fatalf("%s: the run succeeded on crashed storage", label)
			}
			q2, err := Start(ctx, src, plan, sink, opts(inner))
			if err != nil {
				t.Fatalf("%s: restart: %v", label, err)
			}
			if err := q2.Run(ctx); err != nil {
				t.Fatalf("%s: run after restart: %v", label, err)
			}
			q2.Close(ctx)
			if !reflect.DeepEqual(sink.batches, clean.batches) {
				t.Fatalf("%s: the sink differs from the run without faults (batches %v vs %v)", label, sink.Batches(), clean.Batches())
			}
		}
	}
	return clean.batches
}

// bothLandings tries every crash point with the interrupted write landing
// and not.
func bothLandings(int) []bool { return []bool{false, true} }

func sortedKeys[V any](m map[int64]V) []int64 {
	return slices.Sorted(maps.Keys(m))
}

// oneLanding tries each crash point once, with the interrupted write
// landing (the slower S3 runs).
func oneLanding(int) []bool { return []bool{true} }
