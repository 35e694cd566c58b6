package stream

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/storage"
)

// A location whose metadata object is gone, but which holds a query's
// logs, is refused at Start, naming the object and what to do; it never
// becomes a new query over the old logs.
func TestMissingMetadataIsRefused(t *testing.T) {
	ctx := context.Background()
	src := NewMemorySource[click]("clicks", 3)
	clicks(2, src, 200)
	st := storage.NewMem()
	runBatches(t, st, src, 3)
	old, err := ReadMetadata(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	st.Delete(ctx, MetadataObject)
	q, err := Start(ctx, src, sumPerUser, NewMemorySink[dataset.Pair[string, int64]]("out"), testOptions(st))
	if err == nil {
		q.Close(ctx)
		m, _ := ReadMetadata(ctx, st)
		t.Fatalf("Start over logs without metadata succeeded: query %s replaced query %s", m.QueryID, old.QueryID)
	}
	if !errors.Is(err, ErrMetadataMissing) {
		t.Fatalf("err = %v, want ErrMetadataMissing", err)
	}
	for _, want := range []string{`"metadata"`, "offsets/0", "new, empty checkpoint location", "Restore"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v; it does not say %q", err, want)
		}
	}
	if _, err := storage.GetBytes(ctx, st, MetadataObject); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the refused Start wrote a metadata object (err %v)", err)
	}
}

// A state provider that the program does not register is refused at
// Start, naming the package to import, before the location is touched.
func TestUnregisteredStateProviderIsRefusedAtStart(t *testing.T) {
	ctx := context.Background()
	src := NewMemorySource[click]("clicks", 3)
	clicks(2, src, 10)
	st := storage.NewMem()
	opts := testOptions(st)
	opts.StateProvider = "rocksdb"
	q, err := Start(ctx, src, sumPerUser, NewMemorySink[dataset.Pair[string, int64]]("out"), opts)
	if err == nil {
		q.Close(ctx)
		t.Fatal("Start with an unregistered state provider succeeded; the first batch would fail")
	}
	if !strings.Contains(err.Error(), `"rocksdb"`) || !strings.Contains(err.Error(), "memstate") {
		t.Fatalf("err = %v; want it to name the provider and the registered ones", err)
	}
	if objs, _ := st.List(ctx, ""); len(objs) != 0 {
		t.Fatalf("the refused Start wrote %v", objs)
	}
	// The test binary registers pebble (pebble_test.go imports it), so the
	// hint for a program that does not is checked directly.
	if h := providerHint("pebble"); !strings.Contains(h, "github.com/cairn-data/cairn/state/pebblestate") {
		t.Fatalf("hint for pebble = %q; want the import path", h)
	}
}
