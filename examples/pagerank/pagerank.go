package main

import (
	"bufio"
	"context"
	"fmt"
	"iter"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-data/cairn/dataset"
)

// Edge is one directed edge.
type Edge = dataset.Pair[int64, int64]

// Rank is the rank of one node.
type Rank = dataset.Pair[int64, float64]

const damping = 0.85

// readEdges reads "src dst" pairs of integer node IDs, one a line,
// whitespace-separated. Blank lines and lines starting with # are skipped.
func readEdges(path string) ([]Edge, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var edges []Edge
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s line %d: want two node IDs \"src dst\", got %d fields: %q", path, line, len(fields), text)
		}
		src, err1 := strconv.ParseInt(fields[0], 10, 64)
		dst, err2 := strconv.ParseInt(fields[1], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s line %d: node IDs must be integers: %q", path, line, text)
		}
		edges = append(edges, Edge{Key: src, Value: dst})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return edges, nil
}

// IterationStats describes one iteration, for the progress line.
type IterationStats struct {
	Iteration    int
	Duration     time.Duration
	LineageDepth int
	Checkpointed bool
}

// PageRank runs the iterations over the edges and returns the final ranks,
// one per node. With checkpointEvery > 0 it checkpoints the ranks every
// that many iterations, which keeps the lineage from growing.
func PageRank(ctx context.Context, s *dataset.Session, edges []Edge, iterations, checkpointEvery int, progress func(IterationStats)) (*dataset.Dataset[Rank], error) {
	parts := s.Options().Partitions
	edgeDS := dataset.FromSlice(s, edges, parts)
	// Every ID that appears is a node.
	ids := dataset.Distinct(dataset.FlatMap(edgeDS, func(e Edge) iter.Seq[int64] {
		return func(yield func(int64) bool) { _ = yield(e.Key) && yield(e.Value) }
	}), parts)
	nodes, err := ids.Collect(ctx)
	if err != nil {
		return nil, err
	}
	n := float64(len(nodes))
	if n == 0 {
		return nil, fmt.Errorf("pagerank: the edge list is empty")
	}
	// The out-links of each node, reused by every iteration.
	links, err := dataset.GroupByKey(edgeDS, parts).LocalCheckpoint(ctx, true)
	if err != nil {
		return nil, err
	}
	ranks := dataset.Map(dataset.FromSlice(s, nodes, parts), func(id int64) Rank { return Rank{Key: id, Value: 1 / n} })

	var cached *dataset.Dataset[Rank]
	var pc *dataset.PeriodicCheckpointer[Rank]
	if checkpointEvery > 0 {
		if pc, err = dataset.NewPeriodicCheckpointer[Rank](checkpointEvery); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= iterations; i++ {
		start := time.Now()
		// Rank held by nodes with no out-links is spread over all nodes.
		withLinks := dataset.LeftOuterJoin(ranks, links, parts)
		dangling, _, err := dataset.Map(withLinks.Filter(func(r dataset.Pair[int64, dataset.LeftJoined[float64, []int64]]) bool {
			return !r.Value.Matched
		}), func(r dataset.Pair[int64, dataset.LeftJoined[float64, []int64]]) float64 { return r.Value.Left }).
			Reduce(ctx, func(a, b float64) float64 { return a + b })
		if err != nil {
			return nil, err
		}
		contribs := dataset.FlatMap(withLinks, func(r dataset.Pair[int64, dataset.LeftJoined[float64, []int64]]) iter.Seq[Rank] {
			return func(yield func(Rank) bool) {
				share := r.Value.Left / float64(len(r.Value.Right))
				for _, dst := range r.Value.Right {
					if !yield(Rank{Key: dst, Value: share}) {
						return
					}
				}
			}
		})
		sums := dataset.ReduceByKey(contribs, func(a, b float64) float64 { return a + b }, parts)
		base := (1-damping)/n + damping*dangling/n
		ranks = dataset.Map(dataset.LeftOuterJoin(ranks, sums, parts), func(r dataset.Pair[int64, dataset.LeftJoined[float64, float64]]) Rank {
			return Rank{Key: r.Key, Value: base + damping*r.Value.Right}
		})
		checkpointed := false
		if pc != nil {
			before := ranks
			if ranks, err = pc.Update(ctx, ranks); err != nil {
				return nil, err
			}
			if checkpointed = ranks != before; checkpointed {
				// Each iteration reads the ranks several times: keep the
				// checkpoint's records in memory rather than decode its
				// Parquet files each time (Spark's checkpoint + cache).
				if cached != nil {
					cached.Unpersist()
				}
				ranks = ranks.Cache()
				cached = ranks
			}
		}
		if progress != nil {
			progress(IterationStats{Iteration: i, Duration: time.Since(start), LineageDepth: ranks.LineageDepth(), Checkpointed: checkpointed})
		}
	}
	return ranks, nil
}
