package metalog

import (
	"context"
	"errors"
	"testing"

	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/faulty"
)

const workloadAdds = 12

// progress is what the workload had acknowledged when it stopped.
type progress struct {
	acked   int64 // last Add that returned nil, -1 for none
	purged  int64 // every entry below it is gone: the last Purge that returned nil
	purging int64 // no entry at or above it may be gone: the bound of the last Purge begun
}

// workload opens the log and adds entries 0..workloadAdds-1, purging all
// but the last two after every fourth.
func workload(ctx context.Context, s storage.Storage, p *progress) error {
	*p = progress{acked: -1}
	l, err := Open(ctx, s, "offsets")
	if err != nil {
		return err
	}
	for id := int64(0); id < workloadAdds; id++ {
		if err := l.Add(ctx, id, entryFor(id)); err != nil {
			return err
		}
		p.acked = id
		if id%4 == 3 {
			p.purging = id - 1
			if err := l.Purge(ctx, id-1); err != nil {
				return err
			}
			p.purged = id - 1
		}
	}
	return nil
}

func countOps(t *testing.T) int {
	f := faulty.New(storage.NewMem())
	var p progress
	if err := workload(context.Background(), f, &p); err != nil {
		t.Fatalf("workload without faults: %v", err)
	}
	if p.acked != workloadAdds-1 {
		t.Fatalf("workload acknowledged up to %d", p.acked)
	}
	return f.Ops()
}

// For every operation k and both outcomes of a Put cut by the crash, a
// restarted process finds a contiguous log holding exactly what was
// written, ending at the last acknowledged Add or the one in flight, and
// can carry on.
func TestCrashAtEveryOperation(t *testing.T) {
	ctx := context.Background()
	n := countOps(t)
	for _, lands := range []bool{false, true} {
		for k := 1; k <= n; k++ {
			f := faulty.New(storage.NewMem())
			f.PutLandsOnCrash = lands
			f.CrashAt(k, nil)
			var p progress
			if err := workload(ctx, f, &p); !errors.Is(err, faulty.ErrCrashed) {
				t.Fatalf("k=%d lands=%v: workload err = %v, want ErrCrashed", k, lands, err)
			}
			l, err := Open(ctx, f.Inner(), "offsets") // the restarted process
			if err != nil {
				t.Fatalf("k=%d lands=%v: reopen after crash: %v", k, lands, err)
			}
			latest, ok := l.Latest()
			if !ok {
				latest = -1
			}
			if latest != p.acked && !(lands && latest == p.acked+1) {
				t.Fatalf("k=%d lands=%v: Latest = %d, last acknowledged Add was %d", k, lands, latest, p.acked)
			}
			if !ok {
				continue
			}
			earliest, _ := l.Earliest()
			if earliest < p.purged || earliest > max(p.purging, 0) {
				t.Fatalf("k=%d lands=%v: Earliest = %d, want between %d (purged) and %d (purge begun)", k, lands, earliest, p.purged, p.purging)
			}
			checkRange(t, l, earliest, latest) // every entry present and intact
			mustAdd(t, l, latest+1)
			checkRange(t, mustOpen(t, f.Inner(), "offsets"), earliest, latest+1)
		}
	}
}

// A transient failure at any operation is returned to the caller and
// leaves the Log usable: the failed call, retried, succeeds, and the run
// ends where a run without faults does.
func TestFailAtEveryOperation(t *testing.T) {
	ctx := context.Background()
	n := countOps(t)
	ref := storage.NewMem()
	var p progress
	if err := workload(ctx, ref, &p); err != nil {
		t.Fatal(err)
	}
	refLog := mustOpen(t, ref, "offsets")
	wantEarliest, _ := refLog.Earliest()

	for k := 1; k <= n; k++ {
		mem := storage.NewMem()
		f := faulty.New(mem)
		f.FailAt(k, nil)
		failures := 0
		failed := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, faulty.ErrInjected) {
				t.Fatalf("k=%d: %s: err = %v, want ErrInjected", k, what, err)
			}
			failures++
		}
		l, err := Open(ctx, f, "offsets")
		if err != nil {
			failed("Open", err)
			if l, err = Open(ctx, f, "offsets"); err != nil {
				t.Fatalf("k=%d: Open retry: %v", k, err)
			}
		}
		for id := int64(0); id < workloadAdds; id++ {
			if err := l.Add(ctx, id, entryFor(id)); err != nil {
				failed("Add", err)
				if latest, ok := l.Latest(); ok && latest != id-1 || !ok && id != 0 {
					t.Fatalf("k=%d: Latest = %d, %v after a failed Add(%d)", k, latest, ok, id)
				}
				if _, err := Open(ctx, mem, "offsets"); err != nil {
					t.Fatalf("k=%d: log inconsistent after a failed Add: %v", k, err)
				}
				if err := l.Add(ctx, id, entryFor(id)); err != nil {
					t.Fatalf("k=%d: retry of Add(%d): %v", k, id, err)
				}
			}
			if id%4 == 3 {
				if err := l.Purge(ctx, id-1); err != nil {
					failed("Purge", err)
					if _, err := Open(ctx, mem, "offsets"); err != nil {
						t.Fatalf("k=%d: log inconsistent after a failed Purge: %v", k, err)
					}
					if err := l.Purge(ctx, id-1); err != nil {
						t.Fatalf("k=%d: retry of Purge(%d): %v", k, id-1, err)
					}
				}
			}
		}
		if failures != 1 {
			t.Fatalf("k=%d: %d failures reached the caller, want exactly 1", k, failures)
		}
		checkRange(t, l, wantEarliest, workloadAdds-1)
		checkRange(t, mustOpen(t, mem, "offsets"), wantEarliest, workloadAdds-1)
	}
}
