package memstate_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/internal/s3test"
	"github.com/cairn-data/cairn/internal/statecheck"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/state/statetest"
	"github.com/cairn-data/cairn/storage"
)

var harness = statetest.Harness{
	Name:         memstate.Name,
	DeltaName:    memstate.DeltaName,
	SnapshotName: memstate.SnapshotName,
	Backends:     map[string]func(t *testing.T) func(k int) storage.Storage{"s3": s3Backend},
	Verify:       memstate.VerifyObject,
}

func TestMain(m *testing.M) { statetest.Main(m, harness) }

// TestSuite runs the provider-independent state store tests.
func TestSuite(t *testing.T) { statetest.Run(t, harness) }

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
	v := statetest.Commit(t, p, 0, ops)
	for i := range 3 {
		batch := []statecheck.Op{{Key: fmt.Sprint("k", i), Value: []byte{byte(i)}}, {Key: "kept", Value: []byte{byte(i)}}}
		statecheck.Apply(want, batch)
		v = statetest.Commit(t, p, v, batch)
	}
	statetest.CheckVersion(t, p, v, want) // a read store of the latest version syncs the index
	st, _ := p.GetStore(ctx, v)
	defer st.Abort()
	if err := statecheck.Compare(st, want); err != nil { // Range of the writable store
		t.Fatal(err)
	}
	if err := p.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
}

// After 300 commits with maintenance after each (snapshot every 10, retain
// 100), the store holds exactly the files version 201 onwards need: the
// snapshots from 200 and the deltas from 201. (The suite checks what the
// API shows.)
func TestRetentionFiles(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	p := open(t, s, state.Options{MaintenanceInterval: -1})
	w := statecheck.Workload{Seed: 3, Keys: 500, PerBatch: 10}
	for v := int64(0); v < 300; v++ {
		statetest.Commit(t, p, v, w.Changes(v+1))
		if err := p.Maintain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := s.List(ctx, testID.Dir()+"/")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, strings.TrimPrefix(o.Name, testID.Dir()+"/"))
	}
	want := []string{"_meta"}
	for v := 200; v <= 300; v += 10 {
		want = append(want, fmt.Sprintf("%d.snapshot", v))
	}
	for v := 201; v <= 300; v++ {
		want = append(want, fmt.Sprintf("%d.delta", v))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after 300 commits the store holds\n%v\nwant\n%v", got, want)
	}
}

// s3Backend runs the crash test on a real S3-compatible server (MinIO):
// a bucket for the subtest, a prefix per crash point.
func s3Backend(t *testing.T) func(k int) storage.Storage {
	open := s3test.Bucket(t)
	return func(k int) storage.Storage { return open(fmt.Sprintf("k%d", k)) }
}
