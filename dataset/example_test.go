package dataset_test

import (
	"context"
	"fmt"
	"os"

	"github.com/cairn-data/cairn/dataset"
)

// An iterative loop whose lineage a checkpoint cuts.
func ExampleDataset_Checkpoint() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)
	s, _ := dataset.NewSession(dataset.Options{CheckpointLocation: dir})
	defer s.Close(ctx)

	d := dataset.FromSlice(s, []int{1, 2, 3, 4, 5, 6}, 2)
	for range 3 {
		d = dataset.Map(d, func(x int) int { return x * 2 })
	}
	fmt.Println("depth before:", d.LineageDepth())
	d, err := d.Checkpoint(ctx, true)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("depth after:", d.LineageDepth())
	out, _ := d.Collect(ctx)
	fmt.Println(out)
	// Output:
	// depth before: 4
	// depth after: 1
	// [8 16 24 32 40 48]
}

// Word counts with ReduceByKey.
func ExampleReduceByKey() {
	ctx := context.Background()
	s, _ := dataset.NewSession(dataset.Options{Parallelism: 2})
	defer s.Close(ctx)
	words := dataset.FromSlice(s, []string{"cairn", "stone", "cairn", "path", "cairn"}, 2)
	pairs := dataset.Map(words, func(w string) dataset.Pair[string, int] { return dataset.KV(w, 1) })
	counts, _ := dataset.SortBy(dataset.ReduceByKey(pairs, func(a, b int) int { return a + b }, 2),
		func(p dataset.Pair[string, int]) string { return p.Key }, true, 1).Collect(ctx)
	for _, c := range counts {
		fmt.Println(c.Key, c.Value)
	}
	// Output:
	// cairn 3
	// path 1
	// stone 1
}
