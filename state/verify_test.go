package state_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/internal/statecheck"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/state/pebblestate"
	"github.com/cairn-data/cairn/state/statetest"
	"github.com/cairn-data/cairn/storage"
)

// plainProvider is a provider that does not implement state.Verifier.
type plainProvider struct{ state.Provider }

func init() {
	state.Register("plain-for-verify-test", func() state.Provider { return plainProvider{} })
}

// Tools find whose files a store directory holds, and check them, through
// the providers' Verifier capability.
func TestVerifierCapability(t *testing.T) {
	sst := strings.Repeat("ab", 32) + ".sst"
	for base, want := range map[string][]string{
		"5.delta":      {memstate.Name},
		"12.snapshot":  {memstate.Name},
		"7.changelog":  {pebblestate.Name},
		"8.checkpoint": {pebblestate.Name},
		sst:            {pebblestate.Name},
		"notes.txt":    nil,
		"_meta":        nil,
		"05.delta":     nil,
		"abc.sst":      nil,
	} {
		if got := state.Owners(base); !slices.Equal(got, want) {
			t.Errorf("Owners(%q) = %v, want %v", base, got, want)
		}
	}
	if _, ok := state.VerifierFor("plain-for-verify-test"); ok {
		t.Error("VerifierFor finds a Verifier in a provider that has none")
	}
	if _, ok := state.VerifierFor("no-such-provider"); ok {
		t.Error("VerifierFor finds a Verifier for a provider that is not registered")
	}
}

// memstate's VerifyStore checks every delta and snapshot of the store's
// own directory, and nothing of a named store below it.
func TestMemstateVerifyStore(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	schema := state.Schema{Key: "string", Value: "bytes"}
	for _, id := range []state.StoreID{{Operator: 1, Partition: 0}, {Operator: 1, Partition: 0, Name: "other"}} {
		p, err := state.Open(ctx, memstate.Name, s, id, schema, state.Options{MaintenanceInterval: -1, SnapshotInterval: 2})
		if err != nil {
			t.Fatal(err)
		}
		var v int64
		for i := range 3 {
			v = statetest.Commit(t, p, v, []statecheck.Op{{Key: "k" + string(rune('a'+i)), Value: []byte("v")}})
			if err := p.Maintain(ctx); err != nil {
				t.Fatal(err)
			}
		}
		p.Close()
	}
	v, ok := state.VerifierFor(memstate.Name)
	if !ok {
		t.Fatal("memstate does not implement state.Verifier")
	}
	c, err := v.VerifyStore(ctx, s, "state/1/0")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"state/1/0/1.delta", "state/1/0/2.delta", "state/1/0/2.snapshot", "state/1/0/3.delta"}
	if !slices.Equal(c.Owned, want) || len(c.Problems) > 0 {
		t.Fatalf("VerifyStore: owned %v, problems %v; want owned %v and no problem", c.Owned, c.Problems, want)
	}

	b, err := storage.GetBytes(ctx, s, "state/1/0/2.delta")
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := storage.PutBytes(ctx, s, "state/1/0/2.delta", b, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err = v.VerifyStore(ctx, s, "state/1/0")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Problems) != 1 || c.Problems[0].Object != "state/1/0/2.delta" {
		t.Fatalf("VerifyStore of a store with a damaged delta: problems %v, want one naming state/1/0/2.delta", c.Problems)
	}
}
