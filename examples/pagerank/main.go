// Command pagerank runs PageRank over an edge list with cairn's batch
// engine, optionally checkpointing the ranks every C iterations to cut the
// lineage. See README.md.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"

	"github.com/cairn-data/cairn/dataset"
)

func main() {
	edgesPath := flag.String("edges", "", "edge list `FILE`: one \"src dst\" pair of integer node IDs a line")
	iterations := flag.Int("iterations", 10, "number of iterations")
	every := flag.Int("checkpoint-every", 0, "checkpoint the ranks every `C` iterations (0: never)")
	ckptDir := flag.String("checkpoint-dir", "", "checkpoint location `URL` or path (default: a temporary directory)")
	output := flag.String("output", "", "write the ranks to `FILE` as JSON lines {\"node\": ID, \"rank\": R} (default: standard output)")
	flag.Parse()
	if *edgesPath == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: pagerank -edges FILE [-iterations K] [-checkpoint-every C] [-checkpoint-dir URL] [-output FILE]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *edgesPath, *iterations, *every, *ckptDir, *output); err != nil {
		fmt.Fprintln(os.Stderr, "pagerank:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, edgesPath string, iterations, every int, ckptDir, output string) error {
	edges, err := readEdges(edgesPath)
	if err != nil {
		return err
	}
	if every > 0 && ckptDir == "" {
		tmp, err := os.MkdirTemp("", "pagerank-checkpoints-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		ckptDir = tmp
	}
	s, err := dataset.NewSession(dataset.Options{CheckpointLocation: ckptDir})
	if err != nil {
		return err
	}
	defer s.Close(context.Background())
	fmt.Fprintf(os.Stderr, "%d edges, %d iterations, checkpoint every %d\n", len(edges), iterations, every)
	ranks, err := PageRank(ctx, s, edges, iterations, every, func(st IterationStats) {
		mark := ""
		if st.Checkpointed {
			mark = "  (checkpointed)"
		}
		fmt.Fprintf(os.Stderr, "iteration %3d  %8.1f ms  lineage depth %3d%s\n", st.Iteration, float64(st.Duration.Microseconds())/1000, st.LineageDepth, mark)
	})
	if err != nil {
		return err
	}
	out, err := ranks.Collect(ctx)
	if err != nil {
		return err
	}
	slices.SortFunc(out, func(a, b Rank) int { return int(min(max(a.Key-b.Key, -1), 1)) })
	w := os.Stdout
	if output != "" {
		f, err := os.Create(output)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, r := range out {
		if err := enc.Encode(struct {
			Node int64   `json:"node"`
			Rank float64 `json:"rank"`
		}{r.Key, r.Value}); err != nil {
			return err
		}
	}
	return bw.Flush()
}
