package statetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-data/cairn/internal/statecheck"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// copyStorage returns a new in-memory storage holding the objects of s.
func copyStorage(t *testing.T, s storage.Storage) *storage.Mem {
	t.Helper()
	ctx := context.Background()
	objs, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	out := storage.NewMem()
	for _, o := range objs {
		data, err := storage.GetBytes(ctx, s, o.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := storage.PutBytes(ctx, out, o.Name, data, storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// testCorruption damages each object of a store in turn (one byte flipped,
// or the end cut off) and loads the latest version on a fresh machine:
// the load either fails with a *storage.CorruptError naming the damaged
// object, or (for an object the version does not need) gives exactly the
// right contents. The latest version's changes and the snapshot it is
// rebuilt from must be among the objects detected.
func testCorruption(t *testing.T, h Harness) {
	ctx := context.Background()
	w := statecheck.Workload{Seed: 9, Keys: 100, PerBatch: 30}
	built := storage.NewMem()
	p := h.open(t, built, state.Options{MaintenanceInterval: -1, SnapshotInterval: 5})
	for v := int64(0); v < 8; v++ {
		commit(t, p, v, w.Changes(v+1))
		if v+1 == 5 {
			if err := p.Maintain(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.Close()
	objs, err := built.List(ctx, testID.Dir()+"/")
	if err != nil {
		t.Fatal(err)
	}
	damage := map[string]func(b []byte) []byte{
		"flipped byte": func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b },
		"truncated":    func(b []byte) []byte { return b[:len(b)-7] },
	}
	detected := map[string]bool{}
	for _, o := range objs {
		if path.Base(o.Name) == state.MetaObject {
			continue // the state package's own; see its tests
		}
		for _, how := range []string{"flipped byte", "truncated"} {
			t.Run(path.Base(o.Name)+" "+how, func(t *testing.T) {
				s := copyStorage(t, built)
				b, err := storage.GetBytes(ctx, s, o.Name)
				if err != nil {
					t.Fatal(err)
				}
				if err := storage.PutBytes(ctx, s, o.Name, damage[how](b), storage.PutOptions{}); err != nil {
					t.Fatal(err)
				}
				p := h.openOn(t, s, manual, true)
				st, err := p.GetStore(ctx, 8)
				if err == nil {
					defer st.Abort()
					if err := statecheck.Compare(st, w.Oracle(8)); err != nil {
						t.Fatalf("version 8 loaded with %s damaged, and is wrong: %v", o.Name, err)
					}
					return
				}
				var ce *storage.CorruptError
				if !errors.As(err, &ce) || ce.Object != o.Name {
					t.Fatalf("load of version 8: err = %v, want a CorruptError naming %s", err, o.Name)
				}
				if !strings.Contains(err.Error(), o.Name) {
					t.Fatalf("error message %q does not name %s", err, o.Name)
				}
				detected[o.Name] = true
			})
		}
	}
	for _, name := range []string{h.DeltaName(testID.Dir(), 8), h.SnapshotName(testID.Dir(), 5)} {
		if !detected[name] {
			t.Errorf("damage to %s, which version 8 needs, went unnoticed", name)
		}
	}
}

// testRetention commits 300 versions with maintenance after each, and
// checks what the API shows: the last RetainVersions versions load, older
// ones are reported as cleaned up, naming the oldest available.
func testRetention(t *testing.T, h Harness) {
	ctx := context.Background()
	s := storage.NewMem()
	opts := state.Options{MaintenanceInterval: -1} // defaults otherwise: snapshot every 10, retain 100
	p := h.open(t, s, opts)
	w := statecheck.Workload{Seed: 3, Keys: 500, PerBatch: 10}
	for v := int64(0); v < 300; v++ {
		commit(t, p, v, w.Changes(v+1))
		if err := p.Maintain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Get(ctx, h.DeltaName(testID.Dir(), 200)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the changes of version 200, which no retained version needs, were not deleted: %v", err)
	}
	if _, err := s.Get(ctx, h.DeltaName(testID.Dir(), 201)); err != nil {
		t.Errorf("the changes of version 201, which version 201 needs, are gone: %v", err)
	}
	p.Close()
	for _, fresh := range []bool{false, true} {
		p = h.openOn(t, s, opts, fresh)
		for _, v := range []int64{201, 250, 300} {
			checkVersion(t, p, v, w.Oracle(v))
		}
		_, err := p.GetReadStore(ctx, 150)
		var ve *state.VersionError
		if !errors.As(err, &ve) || !ve.CleanedUp || ve.Oldest != 200 || ve.Latest != 300 {
			t.Fatalf("GetReadStore(150): err = %v, want a VersionError saying it was cleaned up, oldest 200", err)
		}
		for _, s := range []string{"cleaned up", "oldest version available is 200"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not say %q", err, s)
			}
		}
		if _, err := p.GetReadStore(ctx, 301); !errors.Is(err, state.ErrVersionUnavailable) {
			t.Fatalf("GetReadStore(301): err = %v, want ErrVersionUnavailable", err)
		}
		if oldest, err := p.OldestVersion(ctx); err != nil || oldest != 200 {
			t.Fatalf("OldestVersion = %d, %v; want 200", oldest, err)
		}
		p.Close()
	}
}

// With no snapshot and the changes of version 1 gone, no version can be
// rebuilt; the store says so instead of naming a version that does not
// load.
func testNothingLoadable(t *testing.T, h Harness) {
	ctx := context.Background()
	s := storage.NewMem()
	p := h.open(t, s, manual)
	for v := int64(0); v < 3; v++ {
		commit(t, p, v, []statecheck.Op{{Key: fmt.Sprint(v), Value: []byte("x")}})
	}
	p.Close()
	s.Delete(ctx, h.DeltaName(testID.Dir(), 1))
	p = h.openOn(t, s, manual, true)
	if _, err := p.OldestVersion(ctx); !errors.Is(err, state.ErrVersionUnavailable) || !strings.Contains(err.Error(), "no version can be rebuilt") {
		t.Fatalf("OldestVersion: err = %v, want ErrVersionUnavailable saying no version can be rebuilt", err)
	}
	if _, err := p.GetReadStore(ctx, 3); err == nil {
		t.Fatal("version 3 loaded without the changes of version 1")
	}
}

func testConfigChangeRefused(t *testing.T, h Harness) {
	ctx := context.Background()
	s := storage.NewMem()
	p := h.open(t, s, manual)
	commit(t, p, 0, []statecheck.Op{{Key: "a", Value: []byte("1")}})
	p.Close()
	cases := []struct {
		provider string
		schema   state.Schema
		setting  string
		old, new string
	}{
		{otherProvider, testSchema, "provider", h.Name, otherProvider},
		{h.Name, state.Schema{Key: "int64", Value: "bytes"}, "key schema", "string", "int64"},
		{h.Name, state.Schema{Key: "string", Value: "json:main.Event"}, "value schema", "bytes", "json:main.Event"},
	}
	for _, c := range cases {
		_, err := state.Open(ctx, c.provider, s, testID, c.schema, h.options(t, s, manual, false))
		var ce *state.ConfigError
		if !errors.As(err, &ce) || ce.Setting != c.setting || ce.Old != c.old || ce.New != c.new {
			t.Fatalf("open with changed %s: err = %v, want ConfigError %s %q -> %q", c.setting, err, c.setting, c.old, c.new)
		}
		if !strings.Contains(err.Error(), c.old) || !strings.Contains(err.Error(), c.new) || !strings.Contains(err.Error(), "new checkpoint location") {
			t.Errorf("message does not name old and new values and what to do: %v", err)
		}
	}
	// The refusal changed nothing: the original configuration still opens.
	p = h.open(t, s, manual)
	checkVersion(t, p, 1, map[string][]byte{"a": []byte("1")})
}

// Two providers of one location in one process: the second writer's
// commit of a version the first one committed is refused, naming the
// object; a deterministic replay of the same batch is accepted.
func testSecondWriterRefused(t *testing.T, h Harness) {
	ctx := context.Background()
	s := storage.NewMem()
	p1 := h.open(t, s, manual)
	p2 := h.open(t, s, manual)
	a, _ := p1.GetStore(ctx, 0)
	b, _ := p2.GetStore(ctx, 0)
	c, _ := h.open(t, s, manual).GetStore(ctx, 0)
	a.Put([]byte("k"), []byte("from p1"))
	b.Put([]byte("k"), []byte("from p2"))
	c.Put([]byte("k"), []byte("from p1"))
	if _, err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := b.Commit(ctx)
	name := h.DeltaName(testID.Dir(), 1)
	if !errors.Is(err, state.ErrConcurrentWriter) || !strings.Contains(err.Error(), name) {
		t.Fatalf("second writer's commit: err = %v, want ErrConcurrentWriter naming %s", err, name)
	}
	if v, err := c.Commit(ctx); err != nil || v != 1 {
		t.Fatalf("replay of the same batch: v=%d err=%v, want 1, nil", v, err)
	}
	checkVersion(t, h.open(t, s, manual), 1, map[string][]byte{"k": []byte("from p1")})
}

func testStoreAbortedWhenItsTaskEnds(t *testing.T, h Harness) {
	p := h.open(t, storage.NewMem(), manual)
	task, cancel := context.WithCancel(context.Background())
	st, err := p.GetStore(task, 0)
	if err != nil {
		t.Fatal(err)
	}
	st.Put([]byte("k"), []byte("v"))
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st2, err := p.GetStore(context.Background(), 0)
		if err == nil {
			st2.Abort()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store still open 10s after its task ended: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := st.Commit(context.Background()); !errors.Is(err, state.ErrStoreClosed) {
		t.Fatalf("Commit after the task ended: err = %v, want ErrStoreClosed", err)
	}
	if v, _ := p.LatestVersion(context.Background()); v != 0 {
		t.Fatalf("an aborted store committed: latest version %d", v)
	}
}

func testBackgroundMaintenance(t *testing.T, h Harness) {
	ctx := context.Background()
	s := storage.NewMem()
	p := h.open(t, s, state.Options{MaintenanceInterval: time.Hour, SnapshotInterval: 5})
	w := statecheck.Workload{Seed: 5, Keys: 50, PerBatch: 5}
	for v := int64(0); v < 5; v++ {
		commit(t, p, v, w.Changes(v+1))
	}
	// The fifth commit asks the maintenance goroutine for a snapshot at
	// once, not after the hour.
	name := h.SnapshotName(testID.Dir(), 5)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if rc, err := s.Get(ctx, name); err == nil {
			io.Copy(io.Discard, rc)
			rc.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot %s ten seconds after the fifth commit", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Closing stops the goroutine; nothing is written after Close returns.
	p.Close()
	before, _ := s.List(ctx, "")
	time.Sleep(20 * time.Millisecond)
	after, _ := s.List(ctx, "")
	if !slices.Equal(before, after) {
		t.Fatalf("objects changed after Close: %v -> %v", before, after)
	}
}
