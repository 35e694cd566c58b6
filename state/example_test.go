package state_test

import (
	"context"
	"fmt"

	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/storage"
)

// A running count per key, committed once per batch, survives a restart.
func ExampleOpen() {
	ctx := context.Background()
	location := storage.NewMem() // in production: storage.Open(ctx, "/path/to/checkpoint")
	id := state.StoreID{Operator: 0, Partition: 0}
	schema := state.SchemaOf(state.StringCodec{}, state.Int64Codec{})

	runBatch := func(words ...string) {
		p, err := state.Open(ctx, memstate.Name, location, id, schema, state.Options{})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer p.Close()
		v, _ := p.LatestVersion(ctx)
		st, _ := p.GetStore(ctx, v)
		counts := state.NewTyped(st, state.StringCodec{}, state.Int64Codec{})
		for _, w := range words {
			n, _, _ := counts.Get(w)
			counts.Put(w, n+1)
		}
		v, err = counts.Commit(ctx)
		fmt.Println("committed version", v, err)
	}
	runBatch("cairn", "stone", "cairn")
	runBatch("cairn") // a new provider: as after a restart

	p, _ := state.Open(ctx, memstate.Name, location, id, schema, state.Options{})
	defer p.Close()
	rs, _ := p.GetReadStore(ctx, 2)
	for kv, err := range rs.Range(nil, nil) {
		if err != nil {
			fmt.Println(err)
			return
		}
		n, _ := state.Int64Codec{}.Decode(kv.Value)
		fmt.Printf("%s=%d\n", kv.Key, n)
	}
	// Output:
	// committed version 1 <nil>
	// committed version 2 <nil>
	// cairn=3
	// stone=1
}

// Reopening a store with another schema is refused, naming both.
func ExampleConfigError() {
	ctx := context.Background()
	location := storage.NewMem()
	id := state.StoreID{Operator: 1, Partition: 0}
	p, _ := state.Open(ctx, memstate.Name, location, id, state.SchemaOf(state.StringCodec{}, state.Int64Codec{}), state.Options{})
	p.Close()
	_, err := state.Open(ctx, memstate.Name, location, id, state.SchemaOf(state.StringCodec{}, state.JSONCodec[map[string]int]{}), state.Options{})
	fmt.Println(err)
	// Output:
	// state: value schema of state/1/0 was "int64" when the store was created, and this run asks for "json:map[string]int"; changing it for existing state is not supported: run with the old value schema, or start a new query with a new checkpoint location
}
