package main

import (
	"context"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
)

// benchEnvInt returns the integer in environment variable name, or def.
func benchEnvInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// BenchmarkPageRank runs 50 iterations over a generated graph of 1M edges,
// with a checkpoint every 10 iterations and without, in the same run.
//
//   - progress=on: with a progress callback. It reports the first and last
//     iteration's time, their ratio, and the final lineage depth; with -v
//     it logs every iteration's time and lineage depth.
//   - progress=off: no progress callback, so PageRank does not call
//     LineageDepth; it reports the mean time per iteration and the heap
//     still live after the last iteration (live-heap-MB).
//
// Run it with:
//
//	go test -run '^$' -bench PageRank/progress=off -benchtime 1x ./examples/pagerank/
//
// CAIRN_PAGERANK_ITERS and CAIRN_PAGERANK_EDGES change the number of
// iterations and edges (the nodes stay 100,000).
//
// lineage-ms is the time PageRank's progress call spent outside the
// iteration (LineageDepth, which walks every path of the lineage DAG) in
// the last iteration; the iteration times do not include it. Without
// checkpoints it about doubles with every iteration (0.1 s at iteration
// 20), so progress=on/checkpoint=never does not finish 50 iterations:
// select progress=off, or set CAIRN_PAGERANK_ITERS to 25 or fewer.
func BenchmarkPageRank(b *testing.B) {
	iters := benchEnvInt(b, "CAIRN_PAGERANK_ITERS", 50)
	edges := randomGraph(1, 100_000, benchEnvInt(b, "CAIRN_PAGERANK_EDGES", 1_000_000))
	cases := []struct {
		name  string
		every int
	}{{"checkpoint=every10", 10}, {"checkpoint=never", 0}}
	for _, c := range cases {
		b.Run("progress=off/"+c.name, func(b *testing.B) {
			for range b.N {
				s, err := dataset.NewSession(dataset.Options{CheckpointLocation: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				ranks, err := PageRank(context.Background(), s, edges, iters, c.every, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(iters), "ms/iter")
				// The heap the result's lineage keeps alive (shuffle outputs
				// stay in memory while a dataset that reads them is reachable).
				b.StopTimer()
				var ms runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms)
				b.ReportMetric(float64(ms.HeapAlloc)/1e6, "live-heap-MB")
				runtime.KeepAlive(ranks)
				b.StartTimer()
				s.Close(context.Background())
			}
		})
	}
	for _, c := range cases {
		b.Run("progress=on/"+c.name, func(b *testing.B) {
			for range b.N {
				s, err := dataset.NewSession(dataset.Options{CheckpointLocation: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				var times, outside []time.Duration
				depth := 0
				iterStart := time.Now()
				_, err = PageRank(context.Background(), s, edges, iters, c.every, func(st IterationStats) {
					// Called after LineageDepth; the iteration ended st.Duration
					// after it started.
					now := time.Now()
					outside = append(outside, now.Sub(iterStart)-st.Duration)
					times = append(times, st.Duration)
					depth = st.LineageDepth
					b.Logf("%s iteration %d: %v, lineage depth %d (LineageDepth took %v), checkpointed %v",
						c.name, st.Iteration, st.Duration.Round(time.Millisecond), st.LineageDepth,
						outside[len(outside)-1].Round(time.Millisecond), st.Checkpointed)
					iterStart = time.Now()
				})
				if err != nil {
					b.Fatal(err)
				}
				first, last := times[0], times[len(times)-1]
				// Average of the first and last five, so one slow iteration
				// (a checkpoint, a GC) does not decide the ratio.
				avg := func(ts []time.Duration) float64 {
					var sum time.Duration
					for _, t := range ts {
						sum += t
					}
					return float64(sum.Milliseconds()) / float64(len(ts))
				}
				b.ReportMetric(float64(first.Milliseconds()), "first-iter-ms")
				b.ReportMetric(float64(last.Milliseconds()), "last-iter-ms")
				b.ReportMetric(avg(times[len(times)-5:])/avg(times[:5]), "last5/first5")
				// Median of the first and last ten: iteration 1 does about half
				// the work (the ranks it makes are computed by the next
				// iteration's action), and a checkpointing iteration also
				// writes, so averages of five mix in those.
				med := func(ts []time.Duration) float64 {
					ts = slices.Clone(ts)
					slices.Sort(ts)
					return float64((ts[(len(ts)-1)/2] + ts[len(ts)/2]).Microseconds()) / 2e3
				}
				if k := min(10, len(times)); k > 0 {
					b.ReportMetric(med(times[len(times)-k:])/med(times[:k]), "last10/first10-median")
				}
				b.ReportMetric(float64(depth), "final-depth")
				b.ReportMetric(float64(outside[len(outside)-1].Microseconds())/1e3, "lineage-ms")
				s.Close(context.Background())
			}
		})
	}
}
