package pebblestate_test

import (
	"context"
	"fmt"
	"os"

	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/pebblestate"
	"github.com/cairn-data/cairn/storage"
)

// A running count per word in a Pebble store, committed once per batch;
// a second machine with an empty working directory restores it from the
// checkpoint location.
func Example() {
	ctx := context.Background()
	location := storage.NewMem() // in production: storage.Open(ctx, "s3://bucket/checkpoints/q1")
	id := state.StoreID{Operator: 0, Partition: 0}
	schema := state.SchemaOf(state.StringCodec{}, state.Int64Codec{})
	work, _ := os.MkdirTemp("", "cairn-example-")
	defer os.RemoveAll(work)

	runBatch := func(dir string, words ...string) {
		p, err := state.Open(ctx, pebblestate.Name, location, id, schema, state.Options{
			MaintenanceInterval: -1,
			Provider:            pebblestate.Options{Dir: dir, BlockCacheSize: 8 << 20},
		})
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
	runBatch(work+"/machine-a", "cairn", "stone", "cairn")
	runBatch(work+"/machine-b", "cairn") // another machine: restores version 1 first

	p, _ := state.Open(ctx, pebblestate.Name, location, id, schema, state.Options{
		MaintenanceInterval: -1, Provider: pebblestate.Options{Dir: work + "/machine-c"}})
	defer p.Close()
	rs, _ := p.GetReadStore(ctx, 2)
	defer rs.Abort()
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
