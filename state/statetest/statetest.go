package statetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-data/cairn/internal/statecheck"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/faulty"
)

// Harness describes the provider under test.
type Harness struct {
	// Name is the name the provider is registered under.
	Name string
	// Options returns the provider's own options (state.Options.Provider)
	// for an Open of the location s. With fresh false they are those of the
	// machine that opened s before (a provider with a local cache may reuse
	// it); with fresh true, those of a machine that never did (an empty
	// local cache). Nil gives nil options.
	Options func(t testing.TB, s storage.Storage, fresh bool) any
	// DeltaName returns the name of the object that holds the changes of
	// version v of the store in dir.
	DeltaName func(dir string, v int64) string
	// SnapshotName returns the name of the object Maintain writes for a
	// snapshot of version v.
	SnapshotName func(dir string, v int64) string
	// CrashStride runs the crash and failure tests at every CrashStride-th
	// storage operation (and the last) rather than at every one, for
	// providers whose runs are slow. 0 or 1: every operation.
	CrashStride int
	// Backends adds checkpoint storages to the crash test, beside mem and
	// local (an S3-compatible server, say). Each setup runs once, in the
	// backend's subtest, and returns the storage for crash point k; those
	// backends are crashed at every fifth crash point, with the
	// interrupted Put landing, since each operation is a request.
	Backends map[string]func(t *testing.T) func(k int) storage.Storage
	// Verify, if set, checks one object of a store as a verifier would
	// (memstate.VerifyObject): the suite expects it to refuse an object
	// copied over another with a *storage.CorruptError naming it.
	Verify func(ctx context.Context, s storage.Storage, object string) error
}

// The store every test uses.
var (
	testID     = state.StoreID{Operator: 0, Partition: 3}
	testSchema = state.Schema{Key: "string", Value: "bytes"}
	manual     = state.Options{MaintenanceInterval: -1} // tests call Maintain themselves
)

// otherProvider is registered so that a test can ask for a provider other
// than the one a store was created with.
const otherProvider = "statetest-other"

var registerOther sync.Once

type refusingProvider struct{ state.Provider }

func (refusingProvider) Init(context.Context, storage.Storage, string, state.StoreID, state.Schema, state.Options) error {
	return errors.New("statetest: the other provider is never meant to open")
}

// machineKey is the storage a machine's cache is keyed by: the inner
// storage of a fault-injecting one.
func machineKey(s storage.Storage) storage.Storage {
	if f, ok := s.(*faulty.Storage); ok {
		return f.Inner()
	}
	return s
}

func (h Harness) options(t testing.TB, s storage.Storage, opts state.Options, fresh bool) state.Options {
	if h.Options != nil {
		opts.Provider = h.Options(t, machineKey(s), fresh)
	}
	return opts
}

// open opens the test store on the machine that opened s before.
func (h Harness) open(t testing.TB, s storage.Storage, opts state.Options) state.Provider {
	t.Helper()
	return h.openOn(t, s, opts, false)
}

// openOn opens the test store; fresh: on a machine that never opened s.
func (h Harness) openOn(t testing.TB, s storage.Storage, opts state.Options, fresh bool) state.Provider {
	t.Helper()
	p, err := state.Open(context.Background(), h.Name, s, testID, testSchema, h.options(t, s, opts, fresh))
	if err != nil {
		t.Fatalf("state.Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Seed returns a random seed, or CAIRN_SEED when set, and logs it.
func Seed(t testing.TB) uint64 {
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

// Commit writes ops into version v of p and commits it, failing the test
// on any error; it returns the new version. For providers' own tests.
func Commit(t testing.TB, p state.Provider, v int64, ops []statecheck.Op) int64 {
	t.Helper()
	return commit(t, p, v, ops)
}

// CheckVersion fails the test unless version v of p holds exactly want.
func CheckVersion(t testing.TB, p state.Provider, v int64, want map[string][]byte) {
	t.Helper()
	checkVersion(t, p, v, want)
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

// Run runs the suite against the provider h describes.
func Run(t *testing.T, h Harness) {
	registerOther.Do(func() {
		state.Register(otherProvider, func() state.Provider { return refusingProvider{} })
	})
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"ReadsOwnWritesAndIsolation", testReadsOwnWritesAndIsolation},
		{"RangeMergesPendingWrites", testRangeMergesPendingWrites},
		{"EdgeKeysAndValues", testEdgeKeysAndValues},
		{"ReadStoreKeepsItsVersion", testReadStoreKeepsItsVersion},
		{"DeletedKeyStaysDeletedWhenRebuilt", testDeletedKeyStaysDeleted},
		{"RandomAgainstOracle", testRandomAgainstOracle},
		{"CrashAtEveryOperation", testCrashAtEveryOperation},
		{"FailAtEveryOperation", testFailAtEveryOperation},
		{"RetryAfterFailedCommit", testRetryAfterFailedCommit},
		{"CorruptionIsReportedWithTheObjectName", testCorruption},
		{"MisplacedObjectRefused", testMisplacedObjectRefused},
		{"RetentionAfter300Commits", testRetention},
		{"NothingLoadableIsReported", testNothingLoadable},
		{"ProviderOrSchemaChangeRefused", testConfigChangeRefused},
		{"SecondWriterRefused", testSecondWriterRefused},
		{"StoreAbortedWhenItsTaskEnds", testStoreAbortedWhenItsTaskEnds},
		{"BackgroundMaintenanceSnapshots", testBackgroundMaintenance},
		{"SIGKILLWhileCommitting", testSIGKILL},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func testReadsOwnWritesAndIsolation(t *testing.T, h Harness) {
	ctx := context.Background()
	p := h.open(t, storage.NewMem(), manual)
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
	if n := st.Metrics().Keys; n != 2 {
		t.Fatalf("Metrics().Keys with uncommitted writes = %d, want 2", n)
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
	if _, _, err := st.Get([]byte("b")); !errors.Is(err, state.ErrStoreClosed) {
		t.Fatalf("Get after Abort: err = %v, want ErrStoreClosed", err)
	}
	if _, err := st.Commit(ctx); !errors.Is(err, state.ErrStoreClosed) {
		t.Fatalf("Commit after Abort: err = %v, want ErrStoreClosed", err)
	}
	if v, _ := p.LatestVersion(ctx); v != 1 {
		t.Fatalf("LatestVersion after Abort = %d, want 1", v)
	}
	checkVersion(t, p, 1, map[string][]byte{"a": []byte("1"), "b": []byte("2")})
	if _, err := p.GetStore(ctx, 2); !errors.Is(err, state.ErrVersionUnavailable) {
		t.Fatalf("GetStore of a version never committed: err = %v, want ErrVersionUnavailable", err)
	}
}

func collect(t *testing.T, seq func(func(state.KV, error) bool)) string {
	t.Helper()
	var out []string
	for kv, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%q=%q", kv.Key, kv.Value))
	}
	return strings.Join(out, ",")
}

func testRangeMergesPendingWrites(t *testing.T, h Harness) {
	ctx := context.Background()
	p := h.open(t, storage.NewMem(), manual)
	commit(t, p, 0, []statecheck.Op{{Key: "a1", Value: []byte("x")}, {Key: "a3", Value: []byte("x")}, {Key: "b1", Value: []byte("x")}, {Key: "c", Value: []byte("x")}})
	st, _ := p.GetStore(ctx, 1)
	defer st.Abort()
	st.Put([]byte("a2"), []byte("new"))
	st.Put([]byte("a3"), []byte("changed"))
	st.Delete([]byte("b1"))
	st.Put([]byte("b2"), []byte("y"))
	st.Put([]byte("d"), []byte("z"))
	if got, want := collect(t, st.Range(nil, nil)), `"a1"="x","a2"="new","a3"="changed","b2"="y","c"="x","d"="z"`; got != want {
		t.Errorf("Range(all) = %s, want %s", got, want)
	}
	if got, want := collect(t, st.PrefixScan([]byte("a"))), `"a1"="x","a2"="new","a3"="changed"`; got != want {
		t.Errorf("PrefixScan(a) = %s, want %s", got, want)
	}
	if got, want := collect(t, st.Range([]byte("a3"), []byte("c"))), `"a3"="changed","b2"="y"`; got != want {
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
	// Reading inside a Range loop is allowed.
	for kv, err := range st.Range(nil, []byte("b")) {
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := st.Get(kv.Key); !ok || err != nil {
			t.Fatalf("Get(%q) inside a Range loop: %v %v", kv.Key, ok, err)
		}
	}
}

// Keys and values at the edges of the byte order, and empty ones, keep
// their place and contents, in the writable store and after a reload.
func testEdgeKeysAndValues(t *testing.T, h Harness) {
	ctx := context.Background()
	s := storage.NewMem()
	p := h.open(t, s, manual)
	ops := []statecheck.Op{
		{Key: "", Value: []byte("empty key")},
		{Key: "\x00", Value: []byte{}},
		{Key: "\x00\x00", Value: []byte{0}},
		{Key: "\xff", Value: []byte("ff")},
		{Key: "\xff\xff", Value: []byte("ffff")},
		{Key: "\x01meta", Value: []byte("not the provider's")},
		{Key: "k", Value: make([]byte, 1<<20)},
	}
	want := map[string][]byte{}
	statecheck.Apply(want, ops)
	commit(t, p, 0, ops)
	st, err := p.GetStore(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := statecheck.Compare(st, want); err != nil {
		t.Fatal(err)
	}
	if got, want := collect(t, st.PrefixScan([]byte("\xff"))), `"\xff"="ff","\xff\xff"="ffff"`; got != want {
		t.Errorf("PrefixScan(ff) = %s, want %s", got, want)
	}
	if got, want := collect(t, st.PrefixScan([]byte("\x00"))), `"\x00"="","\x00\x00"="\x00"`; got != want {
		t.Errorf("PrefixScan(00) = %s, want %s", got, want)
	}
	if got, want := collect(t, st.Range(nil, []byte("\x00"))), `""="empty key"`; got != want {
		t.Errorf("Range(nil, 00) = %s, want %s", got, want)
	}
	if v, ok, err := st.Get([]byte("\x00")); !ok || err != nil || v == nil || len(v) != 0 {
		t.Errorf("Get of an empty value = %q (nil: %v), %v, %v; want an empty non-nil slice", v, v == nil, ok, err)
	}
	st.Abort()
	p.Close()
	checkVersion(t, h.openOn(t, s, manual, true), 1, want)
}

// A read store keeps reading its version while the writer commits newer
// ones, and read stores of several versions coexist.
func testReadStoreKeepsItsVersion(t *testing.T, h Harness) {
	w := statecheck.Workload{Seed: 11, Keys: 300, PerBatch: 60}
	p := h.open(t, storage.NewMem(), state.Options{MaintenanceInterval: -1, SnapshotInterval: 2})
	ctx := context.Background()
	var readers []state.ReadStore
	for v := int64(0); v < 6; v++ {
		rs, err := p.GetReadStore(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, rs)
		commit(t, p, v, w.Changes(v+1))
		if err := p.Maintain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for v, rs := range readers {
		if err := statecheck.Compare(rs, w.Oracle(int64(v))); err != nil {
			t.Fatalf("read store of version %d after later commits: %v", v, err)
		}
		rs.Abort()
	}
	// An older version while a writer is open on the latest.
	st, err := p.GetStore(ctx, 6)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Abort()
	checkVersion(t, p, 3, w.Oracle(3))
	checkVersion(t, p, 6, w.Oracle(6))
}

func testDeletedKeyStaysDeleted(t *testing.T, h Harness) {
	s := storage.NewMem()
	p := h.open(t, s, manual)
	commit(t, p, 0, []statecheck.Op{{Key: "k", Value: []byte("v1")}})
	for v := int64(1); v < 8; v++ {
		commit(t, p, v, []statecheck.Op{{Key: fmt.Sprint("other", v), Value: []byte("x")}})
	}
	commit(t, p, 8, []statecheck.Op{{Key: "k", Delete: true}})
	p.Close()
	for _, fresh := range []bool{false, true} {
		p2 := h.openOn(t, s, manual, fresh) // a new process: rebuilds from the 9 changes
		rs, err := p2.GetReadStore(context.Background(), 9)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok, _ := rs.Get([]byte("k")); ok {
			t.Fatalf("fresh machine %v: key deleted at version 9 came back with value %q", fresh, v)
		}
		rs.Abort()
		p2.Close()
	}
}

// testRandomAgainstOracle runs random puts, deletes, commits, aborts,
// replays, reopenings (on the same machine or a fresh one), maintenance
// and loads of old versions, and compares every version with a plain Go
// map.
func testRandomAgainstOracle(t *testing.T, h Harness) {
	sd := Seed(t)
	rng := rand.New(rand.NewPCG(sd, 1))
	ctx := context.Background()
	s := storage.NewMem()
	opts := state.Options{MaintenanceInterval: -1, SnapshotInterval: 1 + rng.IntN(6), RetainVersions: 5 + rng.IntN(20)}
	t.Logf("options %+v", opts)
	p := h.open(t, s, opts)
	oracle := map[int64]map[string][]byte{0: {}}
	opsOf := map[int64][]statecheck.Op{} // the writes that made each version
	latest := int64(0)
	steps := 400
	if testing.Short() || raceEnabled {
		steps = 150
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
		case r < 80: // reopen, as a restarted process would, here or elsewhere
			p.Close()
			p = h.openOn(t, s, opts, rng.IntN(3) == 0)
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
