package statecheck

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/cairn-data/cairn/state"
)

// Op is one write: a put, or a delete when Delete is set.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
}

// Workload generates the changes of each version.
type Workload struct {
	Seed     uint64
	Keys     int // key space size
	PerBatch int // writes per version
}

// Changes returns the writes that version v (v >= 1) applies to v-1.
func (w Workload) Changes(v int64) []Op {
	rng := rand.New(rand.NewPCG(w.Seed, uint64(v)))
	ops := make([]Op, 0, w.PerBatch)
	for range w.PerBatch {
		k := fmt.Sprintf("key-%06d", rng.IntN(w.Keys))
		if rng.IntN(4) == 0 {
			ops = append(ops, Op{Key: k, Delete: true})
			continue
		}
		n := rng.IntN(40)
		if rng.IntN(10) == 0 {
			n = 0 // empty values are values too
		}
		val := make([]byte, n)
		for i := range val {
			val[i] = byte(rng.Uint32()) // not always valid UTF-8
		}
		ops = append(ops, Op{Key: k, Value: val})
	}
	return ops
}

// Apply applies ops to a map.
func Apply(m map[string][]byte, ops []Op) {
	for _, op := range ops {
		if op.Delete {
			delete(m, op.Key)
		} else {
			m[op.Key] = op.Value
		}
	}
}

// Oracle returns the expected contents at version v.
func (w Workload) Oracle(v int64) map[string][]byte {
	m := map[string][]byte{}
	for i := int64(1); i <= v; i++ {
		Apply(m, w.Changes(i))
	}
	return m
}

// Write applies ops to a store.
func Write(s state.Store, ops []Op) error {
	for _, op := range ops {
		var err error
		if op.Delete {
			err = s.Delete([]byte(op.Key))
		} else {
			err = s.Put([]byte(op.Key), op.Value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Compare checks that a store holds exactly the oracle's contents, through
// both Range and Get, and says how they differ.
func Compare(s state.ReadStore, want map[string][]byte) error {
	got := map[string][]byte{}
	var prev string
	first := true
	for kv, err := range s.Range(nil, nil) {
		if err != nil {
			return err
		}
		k := string(kv.Key)
		if !first && k <= prev {
			return fmt.Errorf("Range out of order: %q after %q", k, prev)
		}
		first, prev = false, k
		got[k] = bytes.Clone(kv.Value)
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing %q", k))
		case !bytes.Equal(g, want[k]):
			diffs = append(diffs, fmt.Sprintf("%q = %x, want %x", k, g, want[k]))
		}
		if v, ok, err := s.Get([]byte(k)); err != nil || !ok || !bytes.Equal(v, want[k]) {
			diffs = append(diffs, fmt.Sprintf("Get(%q) = %x, %v, %v; want %x", k, v, ok, err, want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %q", k))
		}
	}
	if n := s.Metrics().Keys; n != int64(len(want)) && len(diffs) == 0 {
		diffs = append(diffs, fmt.Sprintf("Metrics().Keys = %d, want %d", n, len(want)))
	}
	if len(diffs) > 0 {
		if len(diffs) > 10 {
			diffs = append(diffs[:10], fmt.Sprintf("... and %d more", len(diffs)-10))
		}
		return fmt.Errorf("version %d differs from the oracle: %s", s.Version(), strings.Join(diffs, "; "))
	}
	return nil
}
