package memstate_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/internal/statecheck"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/storage"
)

var (
	testID     = state.StoreID{Operator: 0, Partition: 3}
	testSchema = state.Schema{Key: "string", Value: "bytes"}
	manual     = state.Options{MaintenanceInterval: -1} // tests call Maintain themselves
)

func open(t testing.TB, s storage.Storage, opts state.Options) state.Provider {
	t.Helper()
	p, err := state.Open(context.Background(), memstate.Name, s, testID, testSchema, opts)
	if err != nil {
		t.Fatalf("state.Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// seed returns a random seed, or CAIRN_SEED when set, and logs it.
func seed(t testing.TB) uint64 {
	s := rand.Uint64()
	if env := os.Getenv("CAIRN_SEED"); env != "" {
		var err error
		if s, err = strconv.ParseUint(env, 10, 64); err != nil {
			t.Fatalf("CAIRN_SEED=%q: %v", env, err)
		}
	}
	t.Logf("seed %d (replay with CAIRN_SEED=%d)", s, s)
	return s
}

func commit(t testing.TB, p state.Provider, v int64, ops []statecheck.Op) int64 {
	t.Helper()
	ctx := context.Background()
	st, err := p.GetStore(ctx, v)
	if err != nil {
		t.Fatalf("GetStore(%d): %v", v, err)
	}
	if err := statecheck.Write(st, ops); err != nil {
		t.Fatal(err)
	}
	next, err := st.Commit(ctx)
	if err != nil {
		t.Fatalf("Commit of version %d: %v", v+1, err)
	}
	return next
}

func checkVersion(t testing.TB, p state.Provider, v int64, want map[string][]byte) {
	t.Helper()
	rs, err := p.GetReadStore(context.Background(), v)
	if err != nil {
		t.Fatalf("GetReadStore(%d): %v", v, err)
	}
	defer rs.Abort()
	if err := statecheck.Compare(rs, want); err != nil {
		t.Fatal(err)
	}
}

func TestReadsOwnWritesAndIsolation(t *testing.T) {
	ctx := context.Background()
	p := open(t, storage.NewMem(), manual)
	commit(t, p, 0, []statecheck.Op{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}})
	st, err := p.GetStore(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	st.Put([]byte("c"), []byte("3"))
	st.Delete([]byte("a"))
	if v, ok, _ := st.Get([]byte("c")); !ok || string(v) != "3" {
		t.Fatalf("store does not read its own write: %q %v", v, ok)
	}
	if _, ok, _ := st.Get([]byte("a")); ok {
		t.Fatal("store still sees a key it deleted")
	}
	// A reader of version 1 does not see uncommitted writes.
	checkVersion(t, p, 1, map[string][]byte{"a": []byte("1"), "b": []byte("2")})
	if _, err := p.GetStore(ctx, 1); !errors.Is(err, state.ErrWriterOpen) {
		t.Fatalf("second writable store: err = %v, want ErrWriterOpen", err)
	}
	st.Abort()
	if err := st.Put([]byte("x"), nil); !errors.Is(err, state.ErrStoreClosed) {
		t.Fatalf("Put after Abort: err = %v, want ErrStoreClosed", err)
	}
	if v, _ := p.LatestVersion(ctx); v != 1 {
		t.Fatalf("LatestVersion after Abort = %d, want 1", v)
	}
	checkVersion(t, p, 1, map[string][]byte{"a": []byte("1"), "b": []byte("2")})
}

func TestRangeMergesPendingWrites(t *testing.T) {
	ctx := context.Background()
	p := open(t, storage.NewMem(), manual)
	commit(t, p, 0, []statecheck.Op{{Key: "a1", Value: []byte("x")}, {Key: "a3", Value: []byte("x")}, {Key: "b1", Value: []byte("x")}, {Key: "c", Value: []byte("x")}})
	st, _ := p.GetStore(ctx, 1)
	defer st.Abort()
	st.Put([]byte("a2"), []byte("new"))
	st.Put([]byte("a3"), []byte("changed"))
	st.Delete([]byte("b1"))
	st.Put([]byte("b2"), []byte("y"))
	st.Put([]byte("d"), []byte("z"))
	collect := func(seq func(func(state.KV, error) bool)) string {
		var out []string
		for kv, err := range seq {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(kv.Key)+"="+string(kv.Value))
		}
		return strings.Join(out, ",")
	}
	if got, want := collect(st.Range(nil, nil)), "a1=x,a2=new,a3=changed,b2=y,c=x,d=z"; got != want {
		t.Errorf("Range(all) = %s, want %s", got, want)
	}
	if got, want := collect(st.PrefixScan([]byte("a"))), "a1=x,a2=new,a3=changed"; got != want {
		t.Errorf("PrefixScan(a) = %s, want %s", got, want)
	}
	if got, want := collect(st.Range([]byte("a3"), []byte("c"))), "a3=changed,b2=y"; got != want {
		t.Errorf("Range(a3, c) = %s, want %s", got, want)
	}
	n := 0
	for range st.Range(nil, nil) {
		n++
		break
	}
	if n != 1 {
		t.Errorf("break in a Range loop did not stop it")
	}
}

func TestDeletedKeyStaysDeletedWhenRebuiltFromDeltas(t *testing.T) {
	s := storage.NewMem()
	p := open(t, s, manual)
	commit(t, p, 0, []statecheck.Op{{Key: "k", Value: []byte("v1")}})
	for v := int64(1); v < 8; v++ {
		commit(t, p, v, []statecheck.Op{{Key: fmt.Sprint("other", v), Value: []byte("x")}})
	}
	commit(t, p, 8, []statecheck.Op{{Key: "k", Delete: true}})
	p.Close()
	p2 := open(t, s, manual) // a new process: rebuilds from the 9 deltas
	rs, err := p2.GetReadStore(context.Background(), 9)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := rs.Get([]byte("k")); ok {
		t.Fatalf("key deleted at version 9 came back with value %q", v)
	}
}

// TestRandomAgainstOracle runs random puts, deletes, commits, aborts,
// reopenings, maintenance and loads of old versions, and compares every
// version with a plain Go map.
func TestRandomAgainstOracle(t *testing.T) {
	sd := seed(t)
	rng := rand.New(rand.NewPCG(sd, 1))
	ctx := context.Background()
	s := storage.NewMem()
	opts := state.Options{MaintenanceInterval: -1, SnapshotInterval: 1 + rng.IntN(6), RetainVersions: 5 + rng.IntN(20)}
	t.Logf("options %+v", opts)
	p := open(t, s, opts)
	oracle := map[int64]map[string][]byte{0: {}}
	opsOf := map[int64][]statecheck.Op{} // the writes that made each version
	latest := int64(0)
	steps := 400
	if testing.Short() {
		steps = 100
	}
	for step := 0; step < steps; step++ {
		switch r := rng.IntN(100); {
		case r < 60: // a batch of writes, committed or aborted
			from := latest
			if rng.IntN(10) == 0 && latest > 0 { // replay an earlier version's successor exactly
				from = latest - 1 - int64(rng.IntN(int(min(latest, 3))))
				if from < latest-int64(opts.RetainVersions)+1 {
					from = latest
				}
			}
			st, err := p.GetStore(ctx, from)
			if err != nil {
				t.Fatalf("step %d: GetStore(%d): %v", step, from, err)
			}
			want := maps.Clone(oracle[from])
			var ops []statecheck.Op
			if from < latest { // replay: must write what version from+1 holds
				ops = opsOf[from+1]
			} else {
				for range rng.IntN(30) {
					k := fmt.Sprintf("k%03d", rng.IntN(200))
					if rng.IntN(3) == 0 {
						ops = append(ops, statecheck.Op{Key: k, Delete: true})
					} else {
						ops = append(ops, statecheck.Op{Key: k, Value: []byte(fmt.Sprint(step, rng.IntN(1000)))})
					}
				}
			}
			if err := statecheck.Write(st, ops); err != nil {
				t.Fatal(err)
			}
			statecheck.Apply(want, ops)
			if err := statecheck.Compare(st, want); err != nil {
				t.Fatalf("step %d: uncommitted store: %v", step, err)
			}
			if rng.IntN(8) == 0 {
				st.Abort()
				continue
			}
			v, err := st.Commit(ctx)
			if err != nil {
				t.Fatalf("step %d: Commit: %v", step, err)
			}
			if v != from+1 {
				t.Fatalf("step %d: Commit returned %d, want %d", step, v, from+1)
			}
			if from == latest {
				oracle[v] = want
				opsOf[v] = ops
				latest = v
			}
		case r < 70:
			if err := p.Maintain(ctx); err != nil {
				t.Fatalf("step %d: Maintain: %v", step, err)
			}
		case r < 80: // reopen, as a restarted process would
			p.Close()
			p = open(t, s, opts)
			if got, _ := p.LatestVersion(ctx); got != latest {
				t.Fatalf("step %d: after reopen LatestVersion = %d, want %d", step, got, latest)
			}
		default: // read a retained version
			v := latest - int64(rng.IntN(opts.RetainVersions))
			if v < 0 {
				v = 0
			}
			rs, err := p.GetReadStore(ctx, v)
			if err != nil {
				t.Fatalf("step %d: GetReadStore(%d) with latest %d: %v", step, v, latest, err)
			}
			if err := statecheck.Compare(rs, oracle[v]); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			rs.Abort()
		}
	}
	checkVersion(t, p, latest, oracle[latest])
}

// Commit leaves the ordered index behind the map until something needs
// order; a batch larger than the state makes it catch up at once. Either
// way Range, read stores and snapshots see every committed change.
func TestOrderedIndexCatchesUp(t *testing.T) {
	ctx := context.Background()
	p := open(t, storage.NewMem(), manual)
	want := map[string][]byte{}
	var ops []statecheck.Op
	for i := range 70_000 { // written and deleted in one batch: 70k no-op changes
		k := fmt.Sprintf("tmp-%05d", i)
		ops = append(ops, statecheck.Op{Key: k, Value: []byte("x")}, statecheck.Op{Key: k, Delete: true})
	}
	ops = append(ops, statecheck.Op{Key: "kept", Value: []byte("1")})
	statecheck.Apply(want, ops)
	v := commit(t, p, 0, ops)
	for i := range 3 {
		batch := []statecheck.Op{{Key: fmt.Sprint("k", i), Value: []byte{byte(i)}}, {Key: "kept", Value: []byte{byte(i)}}}
		statecheck.Apply(want, batch)
		v = commit(t, p, v, batch)
	}
	checkVersion(t, p, v, want) // a read store of the latest version syncs the index
	st, _ := p.GetStore(ctx, v)
	defer st.Abort()
	if err := statecheck.Compare(st, want); err != nil { // Range of the writable store
		t.Fatal(err)
	}
	if err := p.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
}
