package state_test

import (
	"bytes"
	"context"
	"math"
	"slices"
	"testing"

	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/storage"
)

func TestInt64CodecPreservesOrder(t *testing.T) {
	vals := []int64{math.MinInt64, -1 << 40, -2, -1, 0, 1, 2, 1 << 40, math.MaxInt64}
	var c state.Int64Codec
	for i := 1; i < len(vals); i++ {
		a, b := c.Append(nil, vals[i-1]), c.Append(nil, vals[i])
		if bytes.Compare(a, b) >= 0 {
			t.Fatalf("encoding of %d is not below that of %d", vals[i-1], vals[i])
		}
		if got, err := c.Decode(b); err != nil || got != vals[i] {
			t.Fatalf("Decode(Append(%d)) = %d, %v", vals[i], got, err)
		}
	}
	if _, err := c.Decode([]byte{1, 2, 3}); err == nil {
		t.Fatal("Decode of 3 bytes succeeded")
	}
}

type event struct {
	User  string `json:"user"`
	Count int    `json:"count"`
}

func TestTypedStore(t *testing.T) {
	ctx := context.Background()
	kc, vc := state.Int64Codec{}, state.JSONCodec[event]{}
	p, err := state.Open(ctx, memstate.Name, storage.NewMem(), state.StoreID{}, state.SchemaOf(kc, vc), state.Options{MaintenanceInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	st, _ := p.GetStore(ctx, 0)
	typed := state.NewTyped(st, kc, vc)
	for _, k := range []int64{5, -3, 100} {
		typed.Put(k, event{User: "u", Count: int(k)})
	}
	typed.Delete(100)
	if v, ok, err := typed.Get(-3); err != nil || !ok || v.Count != -3 {
		t.Fatalf("Get(-3) = %+v, %v, %v", v, ok, err)
	}
	if _, ok, _ := typed.Get(100); ok {
		t.Fatal("deleted key still present")
	}
	var keys []int64
	for e, err := range typed.All() {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, e.Key)
	}
	if !slices.Equal(keys, []int64{-3, 5}) {
		t.Fatalf("All() keys = %v, want [-3 5] in numeric order", keys)
	}
	// A value that does not decode is reported, not skipped.
	st.Put(kc.Append(nil, 7), []byte("{not json"))
	var sawErr bool
	for _, err := range typed.All() {
		if err != nil {
			sawErr = true
		}
	}
	if !sawErr {
		t.Fatal("All() skipped a value that does not decode")
	}
	if vc.Schema() != "json:state_test.event" {
		t.Fatalf("JSONCodec schema = %q", vc.Schema())
	}
}
