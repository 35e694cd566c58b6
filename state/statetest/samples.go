package statetest

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/internal/statecheck"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// The workload of the checked-in format samples: versions 1 to
// sampleVersions, a snapshot at sampleSnapshot.
var sampleWorkload = statecheck.Workload{Seed: 42, Keys: 20, PerBatch: 8}

const (
	sampleVersions = 4
	sampleSnapshot = 2
)

// WriteSamples writes, with the provider's current code, a small store
// (versions 1 to 4, a snapshot at version 2) and copies its objects into
// dir, one file per object under its object name. A provider's test calls
// it behind an -update flag to record a sample of its current format
// (testdata/format-v<N>); CheckSamples reads such samples back forever
// after.
func WriteSamples(t *testing.T, h Harness, dir string) {
	t.Helper()
	ctx := context.Background()
	s := storage.NewMem()
	p := h.openOn(t, s, state.Options{MaintenanceInterval: -1, SnapshotInterval: sampleSnapshot, RetainVersions: 100}, true)
	for v := int64(0); v < sampleVersions; v++ {
		commit(t, p, v, sampleWorkload.Changes(v+1))
		if v+1 == sampleSnapshot {
			if err := p.Maintain(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.Close()
	objs, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		data, err := storage.GetBytes(ctx, s, o.Name)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.FromSlash(o.Name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// CheckSamples loads every store sample under the directories matching
// pattern (as written by WriteSamples, e.g. "testdata/format-v*") and
// checks that each of its versions holds exactly what was committed, that
// a replay of its last version is accepted, that a new version can be
// committed on top, and that the whole store
// (samples and new version) loads again on a fresh machine. A provider
// must keep reading the objects its older releases wrote (DESIGN.md,
// "Compatibility of durable formats").
func CheckSamples(t *testing.T, h Harness, pattern string) {
	t.Helper()
	dirs, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatalf("no samples match %s", pattern)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			ctx := context.Background()
			s := storage.NewMem()
			var names []string
			err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(dir, path)
				names = append(names, filepath.ToSlash(rel))
				return storage.PutBytes(ctx, s, filepath.ToSlash(rel), data, storage.PutOptions{})
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, testID.Dir()+"/") }) {
				t.Fatalf("%s holds no object of store %s", dir, testID.Dir())
			}
			p := h.openOn(t, s, manual, true)
			for v := int64(1); v <= sampleVersions; v++ {
				checkVersion(t, p, v, sampleWorkload.Oracle(v))
			}
			// A replay of the last batch (its commit record lost) rewrites
			// the sample's last version with the current code: the same
			// changes, so it must be accepted, whatever the format.
			if v := commit(t, p, sampleVersions-1, sampleWorkload.Changes(sampleVersions)); v != sampleVersions {
				t.Fatalf("replay committed version %d, want %d", v, sampleVersions)
			}
			commit(t, p, sampleVersions, sampleWorkload.Changes(sampleVersions+1))
			p.Close()
			p = h.openOn(t, s, manual, true)
			for v := int64(1); v <= sampleVersions+1; v++ {
				checkVersion(t, p, v, sampleWorkload.Oracle(v))
			}
		})
	}
}
