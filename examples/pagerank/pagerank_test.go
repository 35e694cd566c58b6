package main

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/dataset"
)

// oracle is PageRank as a plain single-threaded loop over a map.
func oracle(edges []Edge, iterations int) map[int64]float64 {
	out := map[int64][]int64{}
	nodes := map[int64]bool{}
	for _, e := range edges {
		out[e.Key] = append(out[e.Key], e.Value)
		nodes[e.Key], nodes[e.Value] = true, true
	}
	n := float64(len(nodes))
	rank := map[int64]float64{}
	for v := range nodes {
		rank[v] = 1 / n
	}
	for range iterations {
		dangling := 0.0
		for v := range nodes {
			if len(out[v]) == 0 {
				dangling += rank[v]
			}
		}
		next := map[int64]float64{}
		for v := range nodes {
			next[v] = (1-damping)/n + damping*dangling/n
		}
		for u, dsts := range out {
			for _, v := range dsts {
				next[v] += damping * rank[u] / float64(len(dsts))
			}
		}
		rank = next
	}
	return rank
}

func randomGraph(seed uint64, nodes, edges int) []Edge {
	rng := rand.New(rand.NewPCG(seed, 0))
	out := make([]Edge, edges)
	for i := range out {
		// Nodes above nodes*9/10 never link out: dangling nodes.
		out[i] = Edge{Key: int64(rng.IntN(nodes * 9 / 10)), Value: int64(rng.IntN(nodes))}
	}
	return out
}

func TestPageRankWithAndWithoutCheckpointsMatchesOracle(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	ctx := context.Background()
	edges := randomGraph(seed, 300, 1500)
	const iterations = 12
	want := oracle(edges, iterations)
	for _, every := range []int{0, 3, 5} {
		s, err := dataset.NewSession(dataset.Options{Parallelism: 3, CheckpointLocation: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		maxDepth := 0
		ranks, err := PageRank(ctx, s, edges, iterations, every, func(st IterationStats) {
			maxDepth = max(maxDepth, st.LineageDepth)
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := ranks.Collect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("checkpoint every %d: %d ranks, want one per node (%d)", every, len(got), len(want))
		}
		sum := 0.0
		for _, r := range got {
			if math.Abs(r.Value-want[r.Key]) > 1e-9 {
				t.Fatalf("checkpoint every %d: node %d rank %.12f, oracle %.12f", every, r.Key, r.Value, want[r.Key])
			}
			sum += r.Value
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Fatalf("checkpoint every %d: ranks sum to %v", every, sum)
		}
		if every > 0 && maxDepth > 5*every+2 {
			t.Fatalf("checkpoint every %d: lineage depth reached %d; the checkpoints do not cut it", every, maxDepth)
		}
		if every == 0 && maxDepth < iterations {
			t.Fatalf("without checkpoints the lineage should grow; max depth %d", maxDepth)
		}
		s.Close(ctx)
	}
}

func TestRunWritesOneLinePerNode(t *testing.T) {
	dir := t.TempDir()
	edges := filepath.Join(dir, "edges.txt")
	os.WriteFile(edges, []byte("# a comment\n1 2\n2 3\n\n3 1\n4 1\n"), 0o644)
	out := filepath.Join(dir, "ranks.jsonl")
	if err := run(context.Background(), edges, 5, 2, "", out); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], `{"node":1,"rank":`) {
		t.Fatalf("output:\n%s", data)
	}
	os.WriteFile(edges, []byte("1 2\n2 x\n"), 0o644)
	if err := run(context.Background(), edges, 5, 0, "", out); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad edge list: err = %v, want one naming line 2", err)
	}
}
