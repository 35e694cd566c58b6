package memstate_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cairn-data/cairn/internal/statecheck"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/faulty"
)

var crashWorkload = statecheck.Workload{Seed: 42, Keys: 60, PerBatch: 25}

var crashOpts = state.Options{MaintenanceInterval: -1, SnapshotInterval: 3, RetainVersions: 4}

const crashVersions = 12

// runWorkload commits crashVersions versions, with maintenance after every
// second commit, stopping at the first error as a dying process would. It
// returns the last version whose Commit returned nil.
func runWorkload(ctx context.Context, s storage.Storage) (acked int64, err error) {
	p, err := state.Open(ctx, memstate.Name, s, testID, testSchema, crashOpts)
	if err != nil {
		return 0, err
	}
	defer p.Close()
	for v := int64(1); v <= crashVersions; v++ {
		st, err := p.GetStore(ctx, v-1)
		if err != nil {
			return acked, err
		}
		if err := statecheck.Write(st, crashWorkload.Changes(v)); err != nil {
			return acked, err
		}
		if _, err := st.Commit(ctx); err != nil {
			return acked, err
		}
		acked = v
		if v%2 == 0 {
			if err := p.Maintain(ctx); err != nil {
				return acked, err
			}
		}
	}
	return acked, nil
}

// recoverAndCheck reopens the location as a new process, checks that it is
// at the last acknowledged version (or one more, when the interrupted
// commit's delta landed) with exactly the oracle's contents, and that the
// job can go on from there.
func recoverAndCheck(t *testing.T, s storage.Storage, acked int64, label string) {
	t.Helper()
	ctx := context.Background()
	p, err := state.Open(ctx, memstate.Name, s, testID, testSchema, crashOpts)
	if err != nil {
		t.Fatalf("%s: reopen: %v", label, err)
	}
	defer p.Close()
	latest, _ := p.LatestVersion(ctx)
	if latest != acked && latest != acked+1 {
		t.Fatalf("%s: reopened at version %d, want %d (last acknowledged) or %d", label, latest, acked, acked+1)
	}
	st, err := p.GetStore(ctx, latest)
	if err != nil {
		t.Fatalf("%s: GetStore(%d) after recovery: %v", label, latest, err)
	}
	if err := statecheck.Compare(st, crashWorkload.Oracle(latest)); err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	if err := statecheck.Write(st, crashWorkload.Changes(latest+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(ctx); err != nil {
		t.Fatalf("%s: the recovered job cannot commit version %d: %v", label, latest+1, err)
	}
	checkVersion(t, p, latest+1, crashWorkload.Oracle(latest+1))
}

func countOps(t *testing.T) int {
	f := faulty.New(storage.NewMem())
	if acked, err := runWorkload(context.Background(), f); err != nil || acked != crashVersions {
		t.Fatalf("workload without faults: acked %d, err %v", acked, err)
	}
	return f.Ops()
}

// TestCrashAtEveryOperation crashes the storage at the k-th operation for
// every k, with the interrupted Put landing or not, over the in-memory and
// the local backend.
func TestCrashAtEveryOperation(t *testing.T) {
	n := countOps(t)
	t.Logf("the workload issues %d storage operations", n)
	backends := map[string]func(t *testing.T) storage.Storage{
		"mem": func(t *testing.T) storage.Storage { return storage.NewMem() },
		"local": func(t *testing.T) storage.Storage {
			s, err := storage.OpenLocal(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, newStorage := range backends {
		t.Run(name, func(t *testing.T) {
			for k := 1; k <= n; k++ {
				for _, lands := range []bool{false, true} {
					inner := newStorage(t)
					f := faulty.New(inner)
					f.PutLandsOnCrash = lands
					f.CrashAt(k, nil)
					acked, err := runWorkload(context.Background(), f)
					label := fmt.Sprintf("crash at operation %d (put lands: %v)", k, lands)
					if err == nil {
						t.Fatalf("%s: workload succeeded after a crash", label)
					}
					if !errors.Is(err, faulty.ErrCrashed) {
						t.Fatalf("%s: error does not say the storage failed: %v", label, err)
					}
					recoverAndCheck(t, inner, acked, label)
				}
			}
		})
	}
}

// TestFailAtEveryOperation fails the k-th operation once (a transient
// error such as a full disk): the workload stops with that error and the
// location recovers.
func TestFailAtEveryOperation(t *testing.T) {
	n := countOps(t)
	for k := 1; k <= n; k++ {
		inner := storage.NewMem()
		f := faulty.New(inner)
		f.FailAt(k, nil)
		acked, err := runWorkload(context.Background(), f)
		label := fmt.Sprintf("failure of operation %d", k)
		if err != nil && !errors.Is(err, faulty.ErrInjected) {
			t.Fatalf("%s: error does not carry the cause: %v", label, err)
		}
		if err == nil {
			t.Fatalf("%s: workload ignored a failed storage operation", label)
		}
		recoverAndCheck(t, inner, acked, label)
	}
}

// A failed commit leaves the provider usable: the same process retries.
func TestRetryAfterFailedCommit(t *testing.T) {
	ctx := context.Background()
	f := faulty.New(storage.NewMem())
	p := open(t, f, manual)
	commit(t, p, 0, crashWorkload.Changes(1))
	f.FailAt(1, faulty.Writes)
	st, _ := p.GetStore(ctx, 1)
	statecheck.Write(st, crashWorkload.Changes(2))
	if _, err := st.Commit(ctx); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("Commit: err = %v, want the injected failure", err)
	}
	if v, _ := p.LatestVersion(ctx); v != 1 {
		t.Fatalf("LatestVersion after failed commit = %d, want 1", v)
	}
	commit(t, p, 1, crashWorkload.Changes(2))
	checkVersion(t, p, 2, crashWorkload.Oracle(2))
}
