package pebblestate_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/pebblestate"
	"github.com/cairn-data/cairn/state/statetest"
	"github.com/cairn-data/cairn/storage"
)

// snapshotted leaves a store with two snapshots (versions 1 and 3) and
// changelogs 1 to 4, and returns the SST objects of the snapshots.
func snapshotted(t *testing.T) (storage.Storage, []string) {
	t.Helper()
	ctx := context.Background()
	s := storage.NewMem()
	p := open(t, s, state.Options{SnapshotInterval: 1, RetainVersions: 10}, pebblestate.Options{})
	var v int64
	for round := range 4 {
		v = statetest.Commit(t, p, v, bulk("k", 2000, round))
		if round%2 == 0 {
			if err := p.Maintain(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	ssts := make([]string, 0)
	for name := range referenced(t, s) {
		ssts = append(ssts, name)
	}
	slices.Sort(ssts)
	if len(ssts) == 0 {
		t.Fatal("the snapshots reference no SST")
	}
	return s, ssts
}

func verifier(t *testing.T) state.Verifier {
	t.Helper()
	v, ok := state.VerifierFor(pebblestate.Name)
	if !ok {
		t.Fatal("the pebble provider does not implement state.Verifier")
	}
	return v
}

func TestVerifyStoreSound(t *testing.T) {
	ctx := context.Background()
	s, ssts := snapshotted(t)
	c, err := verifier(t).VerifyStore(ctx, s, testID.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Problems {
		t.Errorf("problem in a sound store: %v", p)
	}
	for _, sst := range ssts {
		if !slices.Contains(c.Owned, sst) {
			t.Errorf("%s is not among the objects VerifyStore checked: %v", sst, c.Owned)
		}
	}
	for _, name := range []string{pebblestate.ChangelogName(testID.Dir(), 4), pebblestate.CheckpointName(testID.Dir(), 3)} {
		if !slices.Contains(c.Owned, name) {
			t.Errorf("%s is not among the objects VerifyStore checked: %v", name, c.Owned)
		}
	}
	if slices.Contains(c.Owned, testID.Dir()+"/"+state.MetaObject) {
		t.Errorf("VerifyStore claims %s, which belongs to package state", state.MetaObject)
	}
	for _, b := range []string{"notes.txt", "_meta", "5.delta"} {
		if verifier(t).Owns(b) {
			t.Errorf("Owns(%q) = true", b)
		}
	}
}

func TestVerifyStoreFindsDamage(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		damage  func(t *testing.T, s storage.Storage, ssts []string) string
		says    string
		missing bool
	}{
		{
			name: "SST with bytes appended",
			damage: func(t *testing.T, s storage.Storage, ssts []string) string {
				rewriteObject(t, s, ssts[0], func(b []byte) []byte { return append(b, 0) })
				return ssts[0]
			},
			says: "bytes, and",
		},
		{
			name: "byte flipped in an SST",
			damage: func(t *testing.T, s storage.Storage, ssts []string) string {
				rewriteObject(t, s, ssts[len(ssts)-1], func(b []byte) []byte { b[len(b)/3] ^= 0x08; return b })
				return ssts[len(ssts)-1]
			},
			says: "CRC32C",
		},
		{
			name: "SST deleted",
			damage: func(t *testing.T, s storage.Storage, ssts []string) string {
				if err := s.Delete(ctx, ssts[0]); err != nil {
					t.Fatal(err)
				}
				return ssts[0]
			},
			says:    ".checkpoint lists it as",
			missing: true,
		},
		{
			name: "byte flipped in a changelog",
			damage: func(t *testing.T, s storage.Storage, ssts []string) string {
				name := pebblestate.ChangelogName(testID.Dir(), 2)
				rewriteObject(t, s, name, func(b []byte) []byte { b[len(b)/2] ^= 0x08; return b })
				return name
			},
			says: "checksum",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, ssts := snapshotted(t)
			object := c.damage(t, s, ssts)
			check, err := verifier(t).VerifyStore(ctx, s, testID.Dir())
			if err != nil {
				t.Fatal(err)
			}
			if len(check.Problems) != 1 {
				t.Fatalf("%d problems, want 1 naming %s: %v", len(check.Problems), object, check.Problems)
			}
			p := check.Problems[0]
			if p.Object != object || !strings.Contains(p.Err.Error(), c.says) {
				t.Errorf("problem %v; want one naming %s and saying %q", p, object, c.says)
			}
			if errors.Is(p.Err, storage.ErrNotFound) != c.missing {
				t.Errorf("problem %v matches storage.ErrNotFound: %v, want %v", p, !c.missing, c.missing)
			}
		})
	}
}

// rewriteObject replaces the bytes of an object.
func rewriteObject(t *testing.T, s storage.Storage, name string, f func([]byte) []byte) {
	t.Helper()
	ctx := context.Background()
	b, err := storage.GetBytes(ctx, s, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := storage.PutBytes(ctx, s, name, f(b), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}
