// Command lineage shows how an iterative job's lineage grows by one level
// a transformation, and how a checkpoint cuts it back to a single scan.
// See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/cairn-data/cairn/dataset"
)

func main() {
	iterations := flag.Int("iterations", 6, "number of filter-and-multiply iterations")
	every := flag.Int("checkpoint-every", 3, "checkpoint every `N` iterations (0: never)")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *iterations, *every); err != nil {
		fmt.Fprintln(os.Stderr, "lineage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w *os.File, iterations, every int) error {
	dir, err := os.MkdirTemp("", "cairn-lineage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s, err := dataset.NewSession(dataset.Options{Partitions: 4, CheckpointLocation: dir})
	if err != nil {
		return err
	}
	defer s.Close(ctx)

	nums := make([]int64, 1000)
	for i := range nums {
		nums[i] = int64(i + 1)
	}
	d := dataset.FromSlice(s, nums, 4)
	for i := 1; i <= iterations; i++ {
		d = dataset.Map(d.Filter(func(x int64) bool { return x%7 != 0 }), func(x int64) int64 { return x * 3 % 1_000_003 })
		if every > 0 && i%every == 0 {
			fmt.Fprintf(w, "--- after iteration %d, before the checkpoint: lineage depth %d\n%s", i, d.LineageDepth(), d.Explain())
			if d, err = d.Checkpoint(ctx, true); err != nil {
				return err
			}
			fmt.Fprintf(w, "--- after the checkpoint: lineage depth %d\n%s", d.LineageDepth(), d.Explain())
		}
	}
	n, err := d.Count(ctx)
	if err != nil {
		return err
	}
	sum, _, err := d.Reduce(ctx, func(a, b int64) int64 { return a + b })
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "--- result: %d records, sum %d, final lineage depth %d\n", n, sum, d.LineageDepth())
	return nil
}
