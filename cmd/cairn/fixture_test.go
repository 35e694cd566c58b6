package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/storage"
)

// op is a put, or a delete when del is set.
type op struct {
	key, value string
	del        bool
}

// fixtureVersions are the changes of versions 1 to 6 of state/0/0 in the
// fixture: UTF-8 and non-UTF-8 keys and values, an empty value, characters
// JSON escapes, a delete.
var fixtureVersions = [][]op{
	1: {
		{key: "alpha", value: "one"},
		{key: "beta", value: "two"},
		{key: "café", value: "crème brûlée"},
		{key: "\xff\xfe-binary-key", value: "binary key, text value"},
		{key: "text-key-binary-value", value: "\x00\x01\xfe\xff"},
		{key: "html", value: `<b>"a" & 'b'</b>`},
		{key: "empty-value", value: ""},
		{key: "tab\tand\nnewline", value: "€"},
	},
	2: {{key: "gamma", value: "three"}, {key: "beta", del: true}},
	3: {{key: "alpha", value: "uno"}},
	4: {{key: "delta", value: "four"}, {key: "\xc3\x28", value: "\xe2\x82\xac euro"}},
	5: {{key: "gamma", del: true}},
	6: {{key: "zeta", value: "six"}, {key: "alpha", value: "eins"}},
}

var fixtureSchema = state.Schema{Key: "string", Value: "bytes"}

// fixtureCreated replaces the creation time in the stores' metadata, so
// that object sizes, and so the golden files, do not depend on the clock.
var fixtureCreated = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// commitOps commits one version of ops on top of version v.
func commitOps(t *testing.T, p state.Provider, v int64, ops []op) {
	t.Helper()
	ctx := context.Background()
	st, err := p.GetStore(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		if o.del {
			err = st.Delete([]byte(o.key))
		} else {
			err = st.Put([]byte(o.key), []byte(o.value))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// fixedMeta rewrites a store's metadata with fixtureCreated.
func fixedMeta(t *testing.T, s storage.Storage, id state.StoreID, provider string, schema state.Schema) {
	t.Helper()
	old, err := state.ReadMeta(context.Background(), s, id)
	if err != nil {
		t.Fatal(err)
	}
	// The store's UID stays: its objects record it.
	payload, err := json.Marshal(state.Meta{Provider: provider, Schema: schema, Created: fixtureCreated, UID: old.UID})
	if err != nil {
		t.Fatal(err)
	}
	if err := frame.PutBytes(context.Background(), s, id.Dir()+"/"+state.MetaObject, frame.KindStoreMeta, 1, payload, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// buildFixture makes a checkpoint location with
//
//   - state/0/0: versions 1 to 6 of fixtureVersions, a snapshot every 3
//     versions, the last 3 retained, maintenance after each commit: the
//     files left are snapshots 3 and 6 and deltas 4 to 6, so versions 3 to
//     6 load and 0 to 2 were cleaned up;
//   - state/1/2/counts: a named store with int64 keys, 2 versions;
//   - offsets/0, offsets/1, commits/0: log entries, as a streaming query
//     writes them.
func buildFixture(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "checkpoint")
	s, err := storage.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	id := state.StoreID{Operator: 0, Partition: 0}
	p, err := state.Open(ctx, memstate.Name, s, id, fixtureSchema,
		state.Options{MaintenanceInterval: -1, SnapshotInterval: 3, RetainVersions: 3})
	if err != nil {
		t.Fatal(err)
	}
	for v := int64(1); v < int64(len(fixtureVersions)); v++ {
		commitOps(t, p, v-1, fixtureVersions[v])
		if err := p.Maintain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	fixedMeta(t, s, id, memstate.Name, fixtureSchema)

	counts := state.StoreID{Operator: 1, Partition: 2, Name: "counts"}
	countsSchema := state.SchemaOf[int64, int64](state.Int64Codec{}, state.JSONCodec[int64]{})
	p, err = state.Open(ctx, memstate.Name, s, counts, countsSchema, state.Options{MaintenanceInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	commitOps(t, p, 0, []op{{key: string(state.Int64Codec{}.Append(nil, 7)), value: "1"}})
	commitOps(t, p, 1, []op{{key: string(state.Int64Codec{}.Append(nil, -3)), value: "2"}})
	p.Close()
	fixedMeta(t, s, counts, memstate.Name, countsSchema)

	for _, name := range []string{"offsets/0", "offsets/1", "commits/0"} {
		if err := frame.PutBytes(ctx, s, name, frame.KindLogEntry, 1, []byte(`{"batch":0}`), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// buildWorkloadLocation makes the location the corruption tests damage:
// state/0/0 with 6 versions of a random workload and a snapshot of
// version 3, so that version 6 loads from snapshot 3 and deltas 4 to 6.
func buildWorkloadLocation(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "checkpoint")
	s, err := storage.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := state.Open(ctx, memstate.Name, s, state.StoreID{}, fixtureSchema,
		state.Options{MaintenanceInterval: -1, SnapshotInterval: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	wl := demoWorkload(11)
	wl.Keys, wl.PerBatch = 300, 60
	for v := int64(1); v <= 6; v++ {
		st, err := p.GetStore(ctx, v-1)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range wl.Changes(v) {
			if o.Delete {
				err = st.Delete([]byte(o.Key))
			} else {
				err = st.Put([]byte(o.Key), o.Value)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if v == 3 {
			if err := p.Maintain(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "state/0/0/3.snapshot")); err != nil {
		t.Fatalf("the fixture has no snapshot of version 3: %v", err)
	}
	return dir
}
