package statetest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/internal/statecheck"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// testMisplacedObjectRefused copies an object of a store over another
// one, as a mistaken restore or a hand-made repair would: the previous
// version's changes over the latest's, an older snapshot over a newer one,
// another partition's changes, another location's changes of the same
// name. Each copy is whole (its checksums hold), and each must be refused
// by a load of the version that needs it, with a *storage.CorruptError
// naming the object, never loaded as wrong state; Harness.Verify must
// refuse it too.
func testMisplacedObjectRefused(t *testing.T, h Harness) {
	ctx := context.Background()
	other := state.StoreID{Operator: testID.Operator, Partition: testID.Partition + 1}
	build := func(s storage.Storage, id state.StoreID, seed uint64) {
		w := statecheck.Workload{Seed: seed, Keys: 50, PerBatch: 10}
		p, err := state.Open(ctx, h.Name, s, id, testSchema, h.options(t, s, state.Options{MaintenanceInterval: -1, SnapshotInterval: 3}, true))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for v := int64(0); v < 7; v++ {
			commit(t, p, v, w.Changes(v+1))
			if v+1 == 3 || v+1 == 6 {
				if err := p.Maintain(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	built := storage.NewMem()
	build(built, testID, 11)
	build(built, other, 12)
	elsewhere := storage.NewMem() // another checkpoint location, same layout
	build(elsewhere, testID, 13)

	dir := testID.Dir()
	for _, tc := range []struct {
		name     string
		from     storage.Storage
		src, dst string
	}{
		{"previous version's changes over the latest's", built, h.DeltaName(dir, 6), h.DeltaName(dir, 7)},
		{"older snapshot over the newer", built, h.SnapshotName(dir, 3), h.SnapshotName(dir, 6)},
		{"another partition's changes", built, h.DeltaName(other.Dir(), 7), h.DeltaName(dir, 7)},
		{"another location's changes of the same name", elsewhere, h.DeltaName(dir, 7), h.DeltaName(dir, 7)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := copyStorage(t, built)
			data, err := storage.GetBytes(ctx, tc.from, tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if err := storage.PutBytes(ctx, s, tc.dst, data, storage.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			p := h.openOn(t, s, manual, true)
			st, err := p.GetStore(ctx, 7)
			if err == nil {
				st.Abort()
				t.Fatalf("version 7 loaded with %s copied over %s", tc.src, tc.dst)
			}
			checkNamed(t, "load of version 7", err, tc.dst)
			if h.Verify != nil {
				checkNamed(t, "Verify", h.Verify(ctx, s, tc.dst), tc.dst)
				if err := h.Verify(ctx, built, tc.dst); err != nil {
					t.Fatalf("Verify of the untouched %s: %v", tc.dst, err)
				}
			}
		})
	}
}

func checkNamed(t *testing.T, what string, err error, object string) {
	t.Helper()
	var ce *storage.CorruptError
	if !errors.As(err, &ce) || ce.Object != object {
		t.Fatalf("%s: err = %v, want a CorruptError naming %s", what, err, object)
	}
	if !strings.Contains(err.Error(), "not what its name says") {
		t.Fatalf("%s: error %q does not say the object is misplaced", what, err)
	}
}
